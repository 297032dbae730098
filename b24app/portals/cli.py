"""Admin commands for portals, app credentials and keys (PRODUCT.md, "Admin command line")."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import NoReturn, ParamSpec, TypeVar

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app.bitrix.errors import BitrixError
from b24app.crypto import InvalidToken
from b24app.db import get_db
from b24app.models import AppCredentials, Portal
from b24app.portals import employees, mapping, originate_secret, pbx_keys, store
from b24app.portals import settings as portal_settings
from b24app.portals.reauth import authorization_url
from b24app.wiring import current_store


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


P = ParamSpec("P")
R = TypeVar("R")


def _decrypts(command: Callable[P, R]) -> Callable[P, R]:
    """For commands that decrypt stored secrets: a secret no configured key opens means
    B24APP_ENCRYPTION_KEYS is wrong (or a key was dropped before `keys rotate`); say that
    instead of an empty InvalidToken traceback. Nothing was written: the transaction rolled back."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except InvalidToken:
            _fail(
                "a stored secret cannot be decrypted with any key in B24APP_ENCRYPTION_KEYS "
                "(a wrong key, or an old key dropped before `keys rotate` finished)"
            )

    return wrapper


def _portal_or_fail(session: Session, name: str, *, for_update: bool = False) -> Portal:
    """The portal `name` names: its member_id or its domain (store.find_portals_named)."""
    found = store.find_portals_named(session, name, for_update=for_update)
    if len(found) > 1:
        ids = ", ".join(portal.member_id for portal in found)
        _fail(f"several portals have the domain {name!r}; name one by its member_id: {ids}")
    if not found:
        _fail(f"no portal with member_id or domain {name!r}")
    return found[0]


def _member_id_or_fail(name: str) -> str:
    """The member_id of the portal `name` names (its member_id or its domain)."""
    with get_db().read() as session:
        return _portal_or_fail(session, name).member_id


def _check_fallback_employee(member_id: str, user_id: int | None) -> None:
    """Exit 1 unless `user_id` (None: clearing the setting) is an active employee of the portal,
    asked with user.get (portals/employees.py)."""
    if user_id is None:
        return
    try:
        active = employees.is_active_employee(current_store().client(member_id), user_id)
    except BitrixError as error:
        _fail(
            f"fallback_user_id: could not ask the portal whether user {user_id} is an active "
            f"employee ({error.code}); nothing changed, try again later"
        )
    if not active:
        _fail(
            f"fallback_user_id: user {user_id} is not an active employee of this portal "
            "(user.get); nothing changed"
        )


@click.group(cls=AppGroup, name="portals")
def portals_group() -> None:
    """Portals the app is installed on."""


@portals_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@_decrypts
def list_portals(as_json: bool) -> None:
    """Every portal with its status and PBX key."""
    box = current_store().box
    with get_db().read() as session:
        rows = [
            {
                "member_id": p.member_id,
                "domain": p.domain,
                "status": p.status,
                "pbx_key": pbx_keys.reveal(p.settings, box) if p.settings else None,
                "installed_at": p.installed_at.isoformat(),
            }
            for p in session.scalars(select(Portal).order_by(Portal.id))
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['member_id']}  {row['status']:<16} {row['domain']}")


@portals_group.command("show")
@click.argument("member_id", metavar="MEMBER_ID_OR_DOMAIN")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_decrypts
def show_portal(member_id: str, as_json: bool) -> None:
    """One portal's settings."""
    box = current_store().box
    with get_db().write() as session:  # (a portal installed before it gets its originate secret)
        portal = _portal_or_fail(session, member_id, for_update=True)
        data = portal_settings.describe(portal)
        data["pbx_key"] = pbx_keys.reveal(portal.settings, box)
        data["originate_secret"] = originate_secret.reveal(portal.settings, box)
        data["extensions"] = len(mapping.load(session, portal))
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key}: {value}")


@portals_group.command("set")
@click.argument("member_id", metavar="MEMBER_ID_OR_DOMAIN")
@click.argument("assignments", nargs=-1, required=True)
def set_settings(member_id: str, assignments: tuple[str, ...]) -> None:
    """Change settings: currency=EUR add_to_chat=0|1 fallback_user_id=N timezone=Europe/Moscow
    show_card=0|1 originate_url=https://… enterprise_limits=0|1. Nothing changes unless every
    value is valid; fallback_user_id must be an active employee of the portal (asked)."""
    changes: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep:
            _fail(f"{item!r}: expected NAME=VALUE")
        if name.strip() in changes:
            _fail(f"{name.strip()}: given more than once")
        changes[name.strip()] = value
    member_id = _member_id_or_fail(member_id)
    try:
        parsed = portal_settings.validate(current_store(), member_id, changes)
    except portal_settings.SettingError as error:
        _fail(str(error))
    _check_fallback_employee(member_id, parsed.get("fallback_user_id"))
    with get_db().write() as session:
        portal_settings.apply(_portal_or_fail(session, member_id, for_update=True), parsed)
    click.echo(f"updated: {', '.join(sorted(parsed))}")


@portals_group.command("map")
@click.argument("member_id", metavar="MEMBER_ID_OR_DOMAIN")
@click.option("--import", "import_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--export", "export", is_flag=True, help="Print the mapping as CSV.")
def map_extensions(member_id: str, import_file: str | None, export: bool) -> None:
    """Extension → user mapping as CSV (header: extension,user_id)."""
    if bool(import_file) == export:
        _fail("give exactly one of --import FILE.csv or --export")
    if export:
        with get_db().read() as session:
            rows = mapping.load(session, _portal_or_fail(session, member_id))
        click.echo(mapping.to_csv(rows.items()), nl=False)
        return
    try:
        parsed = mapping.parse_csv(Path(str(import_file)).read_text(encoding="utf-8"))
    except (mapping.MappingError, UnicodeDecodeError) as error:
        _fail(f"{import_file}: {error}")
    with get_db().write() as session:
        mapping.replace(session, _portal_or_fail(session, member_id, for_update=True), parsed)
    click.echo(f"imported {len(parsed)} extensions")


@portals_group.command("rotate-key")
@click.argument("member_id", metavar="MEMBER_ID_OR_DOMAIN")
def rotate_pbx_key(member_id: str) -> None:
    """Give the portal a new PBX key; the old one stops working within 5 s in every web process."""
    with get_db().write() as session:
        portal = _portal_or_fail(session, member_id, for_update=True)
        key = pbx_keys.rotate(portal.settings, current_store().box)
    click.echo(key)


@portals_group.command("rotate-originate-secret")
@click.argument("member_id", metavar="MEMBER_ID_OR_DOMAIN")
def rotate_originate_secret(member_id: str) -> None:
    """Give the portal a new originate secret (click-to-call webhooks are signed with it from
    now on: give it to the PBX); prints it."""
    with get_db().write() as session:
        portal = _portal_or_fail(session, member_id, for_update=True)
        secret = originate_secret.rotate(portal.settings, current_store().box)
    click.echo(secret)


@portals_group.command("reauth-url")
@click.argument("member_id", metavar="MEMBER_ID_OR_DOMAIN")
def reauth_url(member_id: str) -> None:
    """A link for the portal's admin to re-authorise the app (valid ten minutes, once)."""
    url = authorization_url(current_store(), _member_id_or_fail(member_id))
    if url is None:
        _fail(f"no installed portal with member_id {member_id!r}")
    click.echo(url)


@click.group(cls=AppGroup, name="apps")
def apps_group() -> None:
    """Credentials of further applications (a portal's own local app)."""


@apps_group.command("add")
@click.option("--client-id", required=True)
@click.option("--client-secret", required=True, prompt=True, hide_input=True)
def add_app(client_id: str, client_secret: str) -> None:
    """Add (or replace) an application's client id and secret; the secret is stored encrypted."""
    if not client_id.strip() or not client_secret.strip():
        _fail("client id and secret must not be empty")
    box = current_store().box
    with get_db().write() as session:
        row = session.scalars(
            select(AppCredentials).where(AppCredentials.client_id == client_id)
        ).one_or_none()
        if row is None:
            row = AppCredentials(client_id=client_id)
            session.add(row)
        row.client_secret_encrypted = box.encrypt(client_secret)
    click.echo(f"credentials stored for {client_id}")


@click.group(cls=AppGroup, name="keys")
def keys_group() -> None:
    """Encryption keys."""


@keys_group.command("rotate")
@_decrypts
def rotate_keys() -> None:
    """Re-encrypt every stored secret under the newest B24APP_ENCRYPTION_KEYS key."""
    box = current_store().box
    count = 0
    with get_db().write() as session:
        for portal in session.scalars(select(Portal).with_for_update()):
            for column in (
                "access_token_encrypted",
                "refresh_token_encrypted",
                "application_token_encrypted",
            ):
                value = getattr(portal, column)
                if value:
                    setattr(portal, column, box.reencrypt(value))
                    count += 1
            if portal.settings:
                key = pbx_keys.reveal(portal.settings, box)
                portal.settings.pbx_key_encrypted = box.encrypt(key)
                portal.settings.pbx_key_hash = box.lookup_hash(key)
                count += 1
                if portal.settings.originate_secret_encrypted:
                    secret = portal.settings.originate_secret_encrypted
                    portal.settings.originate_secret_encrypted = box.reencrypt(secret)
                    count += 1
        for row in session.scalars(select(AppCredentials).with_for_update()):
            row.client_secret_encrypted = box.reencrypt(row.client_secret_encrypted)
            count += 1
    click.echo(f"re-encrypted {count} secrets under the newest key")


@click.group(cls=AppGroup, name="tokens")
def tokens_group() -> None:
    """OAuth tokens."""


@tokens_group.command("refresh-idle")
@click.option(
    "--days",
    default=30,
    show_default=True,
    type=click.IntRange(min=1),
    help="Refresh tokens older than this.",
)
@_decrypts
def refresh_idle(days: int) -> None:
    """Refresh portals idle for DAYS, well inside the 180-day refresh-token life (for cron)."""
    refreshed, failed = current_store().refresh_idle(timedelta(days=days))
    click.echo(f"refreshed {refreshed}, failed {failed}")


def init_app(app: Flask) -> None:
    for group in (portals_group, apps_group, keys_group, tokens_group):
        app.cli.add_command(group)
