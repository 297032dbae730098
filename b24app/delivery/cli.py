"""`flask --app b24app calls …`: admin commands about the calls in the outbox.

`calls_group` is the one `calls` group; a further command joins it with
`@calls_group.command(...)` in this module (or `calls_group.add_command` from another).

    flask --app b24app calls redeliver [--portal MEMBER_ID_OR_DOMAIN] [--error CODE]
                                       [--since WHEN] [--until WHEN] [--dry-run]

puts failed calls back in the outbox, each at most once (delivery/outbox.py, `requeue`): a call
that may already be in Bitrix24 is looked up in its statistics before it is sent again.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import NoReturn

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from b24app.db import get_db
from b24app.delivery import outbox
from b24app.delivery.retry import OUTCOME_UNKNOWN
from b24app.models import Call, Portal, utcnow
from b24app.portals import store

calls_group = AppGroup("calls", help="Calls in the outbox.")
CHUNK = 500  # ids per IN (…) when summarising: well under SQLite's and PostgreSQL's limits


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def moment(value: str, *, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime; a time without an offset is UTC.

    A bare date is its midnight, or with `end_of_day` the next midnight (so `--until 2026-03-07`
    takes in all of that day). Raises ValueError for anything else."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(days=1) if end_of_day else start


def _moment_option(value: str | None, name: str, *, end_of_day: bool = False) -> datetime | None:
    if value is None:
        return None
    try:
        return moment(value, end_of_day=end_of_day)
    except ValueError:
        _fail(
            f"{name}: {value!r} is not an ISO 8601 date or date-time (2026-03-07, 2026-03-07T10:00)"
        )


def find_portal(session: Session, ref: str) -> Portal:
    """The portal named by its member_id or its domain (`https://` and a trailing `/` allowed)."""
    found = store.find_portals_named(session, ref)
    if len(found) > 1:
        ids = ", ".join(sorted(p.member_id for p in found))
        _fail(f"--portal: several portals have the domain {ref!r}; name one by member_id: {ids}")
    if not found:
        _fail(f"--portal: no portal with member_id or domain {ref!r}")
    return found[0]


@calls_group.command("redeliver")
@click.option("--portal", "portal_ref", metavar="MEMBER_ID_OR_DOMAIN", help="Only this portal.")
@click.option("--error", "error_code", metavar="CODE", help="Only calls failed with this code.")
@click.option("--since", metavar="WHEN", help="Only calls that arrived at or after WHEN (UTC).")
@click.option("--until", metavar="WHEN", help="Only calls that arrived before WHEN (UTC).")
@click.option("--dry-run", is_flag=True, help="List what would be delivered again; change nothing.")
def redeliver(
    portal_ref: str | None,
    error_code: str | None,
    since: str | None,
    until: str | None,
    dry_run: bool,
) -> None:
    """Deliver failed calls again (every portal unless --portal), each at most once.

    WHEN is an ISO 8601 date or date-time; a bare --until date includes that whole day. Calls
    that may already be in Bitrix24 are looked up in its statistics before being sent again.
    """
    start = _moment_option(since, "--since")
    end = _moment_option(until, "--until", end_of_day=True)
    with get_db().write() as session:
        portal_id = find_portal(session, portal_ref).id if portal_ref else None
        try:
            ids = outbox.requeue(
                session,
                portal_id=portal_id,
                error_code=error_code,
                since=start,
                until=end,
                now=utcnow(),
                dry_run=dry_run,
            )
        except ValueError as error:
            _fail(f"--since/--until: {error}")
        lines = _summary(session, ids, dry_run=dry_run)
    for line in lines:
        click.echo(line)


def _summary(session: Session, ids: list[str], *, dry_run: bool) -> list[str]:
    """Per call (dry run) or per portal: what went, and how many are looked up first."""
    rows = list(_rows(session, ids))
    lines = []
    if dry_run:
        lines = [f"{public_id}  {domain}  {code or '-'}" for public_id, domain, code in rows]
    per_portal = Counter(domain for _, domain, _ in rows)
    lines += [f"{domain}: {count}" for domain, count in sorted(per_portal.items())]
    if dry_run:
        lines.append(f"would deliver again: {len(ids)} failed calls")
    else:
        checked = sum(1 for _, _, code in rows if code == OUTCOME_UNKNOWN)
        lines.append(
            f"delivered again: {len(ids)} failed calls "
            f"({checked} checked in Bitrix24's statistics first)"
        )
    return lines


def _rows(session: Session, ids: list[str]) -> Iterable[Row[str, str, str | None]]:
    for index in range(0, len(ids), CHUNK):
        chunk = ids[index : index + CHUNK]
        query = (
            select(Call.public_id, Portal.domain, Call.error_code)
            .join(Portal, Portal.id == Call.portal_id)
            .where(Call.public_id.in_(chunk))
            .order_by(Call.id)
        )
        yield from session.execute(query)


def init_app(app: Flask) -> None:
    """Register the `calls` group."""
    app.cli.add_command(calls_group)
