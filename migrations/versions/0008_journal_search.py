"""the journal: calls ordered by their start, found by number, extension and PBX_CALL_ID

`calls` gains `started_at` (when the call started: the start's CALL_START_DATE, else the start's
arrival, else a registering finish's CALL_START_DATE, else the call's first arrival; a date
without an offset read in the portal's time zone of now), `phone_digits` (the digits of the
start's PHONE_NUMBER, else the finish's) and `extensions` (every USER_PHONE_INNER its events
named, "\\n101\\n102\\n"), filled here from the stored events, and the indexes the settings
page's journal and Health read, which it asks every few seconds while open:
`ix_calls_portal_started` (portal_id, started_at, id) pages newest first,
`ix_calls_portal_state` (portal_id, state, started_at) its failed and waiting calls and
Health's counts, `ix_calls_portal_delivered` (portal_id, delivered_at) Health's last delivery.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

import b24app.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

WHEN = b24app.models.UTCDateTime(timezone=True)
CHUNK = 1000
MAX_EXTENSIONS = 2000  # characters of `extensions`, as delivery/call_index.py keeps them

calls = sa.table(
    "calls",
    sa.column("id", sa.Integer),
    sa.column("portal_id", sa.Integer),
    sa.column("created_at", WHEN),
    sa.column("started_at", WHEN),
    sa.column("phone_digits", sa.String),
    sa.column("extensions", sa.Text),
)
events = sa.table(
    "call_events",
    sa.column("id", sa.Integer),
    sa.column("call_id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("request", sa.JSON),
    sa.column("created_at", WHEN),
)
settings = sa.table(
    "portal_settings", sa.column("portal_id", sa.Integer), sa.column("timezone", sa.String)
)


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("started_at", WHEN, nullable=True))
        batch.add_column(sa.Column("phone_digits", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("extensions", sa.Text(), nullable=True))
    _fill(op.get_bind())
    with op.batch_alter_table("calls") as batch:
        batch.alter_column("started_at", existing_type=WHEN, nullable=False)
    op.create_index("ix_calls_portal_started", "calls", ["portal_id", "started_at", "id"])
    op.create_index("ix_calls_portal_state", "calls", ["portal_id", "state", "started_at"])
    op.create_index("ix_calls_portal_delivered", "calls", ["portal_id", "delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_calls_portal_delivered", table_name="calls")
    op.drop_index("ix_calls_portal_state", table_name="calls")
    op.drop_index("ix_calls_portal_started", table_name="calls")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("extensions")
        batch.drop_column("phone_digits")
        batch.drop_column("started_at")


def _fill(connection: sa.Connection) -> None:
    """Every call's three columns from its events, CHUNK calls at a time."""
    zones = {row.portal_id: _zone(row.timezone) for row in connection.execute(sa.select(settings))}
    last = 0
    while True:
        chunk = connection.execute(
            sa.select(calls.c.id, calls.c.portal_id, calls.c.created_at)
            .where(calls.c.id > last)
            .order_by(calls.c.id)
            .limit(CHUNK)
        ).all()
        if not chunk:
            return
        last = chunk[-1].id
        found: dict[int, list[Any]] = {row.id: [] for row in chunk}
        for event in connection.execute(
            sa.select(events.c.call_id, events.c.kind, events.c.request, events.c.created_at)
            .where(events.c.call_id.in_(list(found)))
            .order_by(events.c.id)
        ):
            found[event.call_id].append(event)
        connection.execute(
            calls.update()
            .where(calls.c.id == sa.bindparam("call_id"))
            .values(
                started_at=sa.bindparam("started"),
                phone_digits=sa.bindparam("digits"),
                extensions=sa.bindparam("inner"),
            ),
            [
                _facts(row, found[row.id], zones.get(row.portal_id, ZoneInfo("UTC")))
                for row in chunk
            ],
        )


def _facts(call: Any, stored: list[Any], zone: ZoneInfo) -> dict[str, Any]:
    start = next((e for e in stored if e.kind == "start"), None)
    finish = next((e for e in stored if e.kind == "finish"), None)
    started = None
    if start is not None:
        started = _instant(start.request.get("CALL_START_DATE"), zone) or start.created_at
    elif finish is not None:
        started = _instant(finish.request.get("CALL_START_DATE"), zone)
    numbers = [e.request.get("PHONE_NUMBER") for e in (start, finish) if e is not None]
    digits = next((_digits(n) for n in numbers if n and _digits(n)), None)
    inner = _extensions(e.request.get("USER_PHONE_INNER") for e in stored)
    return {
        "call_id": call.id,
        "started": started or call.created_at,
        "digits": digits,
        "inner": inner,
    }


def _instant(value: Any, zone: ZoneInfo) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value).strip()) if value else None
    except ValueError:
        return None
    if moment is None:
        return None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _digits(value: Any) -> str:
    return re.sub(r"[^0-9]", "", str(value))[:32]


def _extensions(values: Iterable[Any]) -> str | None:
    """ "\n101\n102\n": each extension once, in the order named, while they fit."""
    text = "\n"
    for value in values:
        for one in value if isinstance(value, list) else [value]:
            if one in (None, "") or f"\n{one}\n" in text:
                continue
            if len(text) + len(str(one)) + 1 > MAX_EXTENSIONS:
                return text
            text += f"{one}\n"
    return text if text != "\n" else None


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ValueError, KeyError):
        return ZoneInfo("UTC")
