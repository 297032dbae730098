"""The installation store: who is installed where, with which tokens, in which state.

Secrets (tokens, application_token, client secrets) are encrypted here and nowhere else; the
rest of the code asks the store for plaintext when it needs it. Token *refresh* is not here: it
lives in bitrix/tokens.py with its locking rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from b24app.config import Settings
from b24app.crypto import SecretBox
from b24app.models import (
    AppCredentials,
    Base,
    OAuthState,
    Portal,
    PortalSettings,
    PortalStatus,
    utcnow,
)
from b24app.portals import pbx_keys


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: datetime


@dataclass(frozen=True)
class Installation:
    """Facts about one install, already verified with the OAuth server."""

    member_id: str
    domain: str
    client_endpoint: str
    server_endpoint: str
    client_id: str
    scope: str
    user_id: int | None
    tokens: TokenPair | None
    application_token: str | None


def secret_box() -> SecretBox:
    return current_app.extensions["b24app.secrets"]


def app_settings() -> Settings:
    return current_app.config["SETTINGS"]


MEMBER_ID_LENGTH = 64  # portals.member_id


def find_portal(session: Session, member_id: str, *, for_update: bool = False) -> Portal | None:
    """The portal of `member_id` (a value from a request: a NUL or an overlong one cannot be
    stored, so it finds nothing, instead of becoming a PostgreSQL error)."""
    if "\x00" in member_id or len(member_id) > MEMBER_ID_LENGTH:
        return None
    query = select(Portal).where(Portal.member_id == member_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def client_secret_for(session: Session, client_id: str) -> str | None:
    """The secret of one of our applications: the main one or one added with `apps add`."""
    settings = app_settings()
    if client_id == settings.client_id:
        return settings.client_secret
    row = session.scalars(
        select(AppCredentials).where(AppCredentials.client_id == client_id)
    ).one_or_none()
    return secret_box().decrypt(row.client_secret_encrypted) if row else None


def save_installation(session: Session, facts: Installation) -> Portal:
    """Create or update the portal from a verified install. A reinstall keeps its settings."""
    box = secret_box()
    portal = find_portal(session, facts.member_id, for_update=True)
    if portal is None:
        portal = Portal(member_id=facts.member_id)
        session.add(portal)
    portal.domain = facts.domain
    portal.client_endpoint = facts.client_endpoint
    portal.server_endpoint = facts.server_endpoint
    portal.client_id = facts.client_id
    portal.scope = facts.scope
    portal.user_id = facts.user_id
    if facts.tokens:
        store_tokens(portal, facts.tokens)
        set_status(portal, PortalStatus.ACTIVE)
        portal.uninstalled_at = None
    elif portal.id is None:
        set_status(portal, PortalStatus.NEEDS_REAUTH, "Installed without tokens; open the app.")
    if facts.application_token:
        portal.application_token_encrypted = box.encrypt(facts.application_token)
    if portal.settings is None:
        portal.settings = new_settings()
    session.flush()
    return portal


def new_settings() -> PortalSettings:
    key = pbx_keys.generate()
    box = secret_box()
    return PortalSettings(
        pbx_key_encrypted=box.encrypt(key),
        pbx_key_hash=box.lookup_hash(key),
        pbx_key_rotated_at=utcnow(),
    )


def store_tokens(portal: Portal, tokens: TokenPair) -> None:
    box = secret_box()
    portal.access_token_encrypted = box.encrypt(tokens.access_token)
    portal.refresh_token_encrypted = box.encrypt(tokens.refresh_token)
    portal.access_expires_at = tokens.expires_at
    portal.refreshed_at = utcnow()


def read_tokens(portal: Portal) -> TokenPair | None:
    if not (portal.access_token_encrypted and portal.refresh_token_encrypted):
        return None
    box = secret_box()
    return TokenPair(
        box.decrypt(portal.access_token_encrypted),
        box.decrypt(portal.refresh_token_encrypted),
        portal.access_expires_at or utcnow(),
    )


def application_token(portal: Portal) -> str | None:
    if not portal.application_token_encrypted:
        return None
    return secret_box().decrypt(portal.application_token_encrypted)


def set_status(portal: Portal, status: PortalStatus, detail: str | None = None) -> None:
    portal.status = status
    portal.status_detail = detail


def mark_uninstalled(portal: Portal) -> None:
    """The app was removed: tokens erased, PBX key dead (status), call history kept."""
    portal.status = PortalStatus.UNINSTALLED
    portal.status_detail = "The application was uninstalled from the portal."
    portal.access_token_encrypted = None
    portal.refresh_token_encrypted = None
    portal.access_expires_at = None
    portal.application_token_encrypted = None
    portal.uninstalled_at = utcnow()


def erase_portal(session: Session, portal: Portal) -> dict[str, int]:
    """Erase the portal and everything it owns: the admin uninstalled with "Clear application
    data" (`data[CLEAN]=1`, api-reference/common/events/on-app-uninstall.md).

    Deletes, in the caller's transaction, the rows of every table with a foreign key to
    `portals` (settings with the PBX key, mapping, calls whatever their state, throttle, and any
    table added later; rows below those go by the schema's ON DELETE CASCADE), the portal's
    pending re-authorisation states, then the portal row with its tokens. A reinstall starts
    afresh. Returns the number of rows deleted per table (no secrets), for the log.
    """
    erased: dict[str, int] = {}
    for table in reversed(Base.metadata.sorted_tables):
        for key in table.foreign_keys:
            if key.column.table is Portal.__table__:
                result = session.execute(delete(table).where(key.parent == portal.id))
                erased[table.name] = erased.get(table.name, 0) + _rowcount(result)
    states = delete(OAuthState).where(OAuthState.member_id == portal.member_id)
    erased[OAuthState.__tablename__] = _rowcount(session.execute(states))
    session.expunge(portal)
    gone = delete(Portal).where(Portal.id == portal.id)
    erased[Portal.__tablename__] = _rowcount(
        session.execute(gone, execution_options={"synchronize_session": False})
    )
    return erased


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def expires_at(expires_in: int | float) -> datetime:
    return utcnow() + timedelta(seconds=float(expires_in))
