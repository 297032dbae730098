"""How long finished calls are kept at all (`B24APP_CALL_RETENTION_DAYS`, issue 10 item 7).

A call row holds what the PBX sent (phone numbers included) and Bitrix24's answer. Once it is
delivered or has failed, Bitrix24 keeps the call itself; our copy serves the journal, "deliver
again" and idempotency (a repeat of the same `PBX_CALL_ID` answers the same id). Past the
retention period it goes. Calls still `queued` or `delivering` are never purged, whatever their
age: they are work not yet done.

Deleted in chunks of `CHUNK` rows, each in its own short transaction, so a first purge of years
of history never holds a long lock (on SQLite, the whole database's write lock) against the PBX
intake and the workers. Rows hanging below a call go with it by the schema's ON DELETE CASCADE.

Click-to-call and callback requests to the PBX (`originations`, phone numbers too) go by the
same period once delivered or failed (`purge_finished_originations`).

`flask --app b24app calls purge` runs both once (cron, or the worker's daily housekeeping).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import ColumnElement, and_, delete, or_, select

from b24app.db import Database, get_db
from b24app.logs import get_logger
from b24app.models import Call, CallState, Origination, OriginationState, utcnow

log = get_logger(__name__)

CHUNK = 500  # rows per transaction
FINISHED = (CallState.DELIVERED, CallState.FAILED)


def purge_finished_calls(
    db: Database, now: datetime, retention: timedelta, *, chunk: int = CHUNK
) -> int:
    """Delete delivered and failed calls last touched more than `retention` before `now`.

    `now` is an aware UTC datetime; a call counts as old when it was received, last changed and
    (if delivered) delivered before `now - retention`. Returns how many calls were deleted.
    Raises ValueError for a retention or chunk that is not positive (that would purge calls
    finished a moment ago, or never end).
    """
    if retention <= timedelta(0):
        raise ValueError("retention must be positive")
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    old = _old_and_finished(now - retention)
    total = 0
    while True:
        with db.write() as session:
            ids = list(session.scalars(select(Call.id).where(old).order_by(Call.id).limit(chunk)))
            if ids:
                # `old` again: a call sent again ("deliver again") since the SELECT stays.
                gone = session.execute(
                    delete(Call).where(Call.id.in_(ids), old),
                    execution_options={"synchronize_session": False},
                )
                total += _rowcount(gone)
        if len(ids) < chunk:
            break
    if total:
        log.info("finished calls purged", calls=total, retention_days=retention.days)
    return total


def purge_finished_originations(db: Database, now: datetime, retention: timedelta) -> int:
    """Delete requests to PBXs delivered or failed, and created, more than `retention` before
    `now` (an aware UTC datetime); returns how many. Raises ValueError for a retention that is
    not positive. In chunks like the calls."""
    if retention <= timedelta(0):
        raise ValueError("retention must be positive")
    cutoff = now - retention
    old = and_(
        Origination.state.in_((OriginationState.DELIVERED, OriginationState.FAILED)),
        Origination.created_at < cutoff,
    )
    total = 0
    while True:
        with db.write() as session:
            ids = list(
                session.scalars(
                    select(Origination.id).where(old).order_by(Origination.id).limit(CHUNK)
                )
            )
            if ids:
                gone = session.execute(
                    delete(Origination).where(Origination.id.in_(ids)),
                    execution_options={"synchronize_session": False},
                )
                total += _rowcount(gone)
        if len(ids) < CHUNK:
            return total


def _old_and_finished(cutoff: datetime) -> ColumnElement[bool]:
    return and_(
        Call.state.in_(FINISHED),
        Call.created_at < cutoff,
        Call.updated_at < cutoff,
        or_(Call.delivered_at.is_(None), Call.delivered_at < cutoff),
    )


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


@click.command("purge")
@with_appcontext
def purge_command() -> None:
    """Delete delivered and failed calls older than B24APP_CALL_RETENTION_DAYS (for cron)."""
    settings = current_app.config["SETTINGS"]
    now = utcnow()
    purged = purge_finished_calls(get_db(), now, settings.call_retention)
    requests = purge_finished_originations(get_db(), now, settings.call_retention)
    click.echo(
        f"purged {purged} finished calls and {requests} requests to the PBX older than "
        f"{settings.call_retention_days} days"
    )


def init_app(app: Flask) -> None:
    """Add `purge` to the `calls` command group (delivery/cli.py's, when registered first)."""
    group = app.cli.commands.get("calls")
    if not isinstance(group, click.Group):
        group = AppGroup("calls", help="Calls in the outbox.")
        app.cli.add_command(group)
    group.add_command(purge_command)
