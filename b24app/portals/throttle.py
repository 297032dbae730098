"""Where the portals' request schedules are kept: one `portal_throttle` row per portal.

The rule (GCRA, Bitrix24's limits) is bitrix/throttle.py's; this keeps its two numbers where every
thread, process and host sees them. Reserving a slot is one short write transaction, which works
the same on SQLite and PostgreSQL and needs no extra service. `book` does the same inside a
transaction the caller holds, for several portals at once, so the worker books a round's slots
in the transaction that claims its calls (delivery/outbox.claim_round): one transaction for
both, and the same three statements however many portals the round has.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from b24app.bitrix.throttle import Limits, free_slots, next_slot, next_slots, spare_slot
from b24app.db import Database, insert_for
from b24app.models import PortalThrottle


class Throttle:
    """The `bitrix.throttle.Schedule` of every portal, in the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def reserve(self, portal_id: int, limits: Limits, *, now: float | None = None) -> float:
        """Book the next request slot; return how many seconds to wait before sending."""
        now = time.time() if now is None else now
        with self.db.write() as session:
            row = self._row(session, portal_id)
            send_at, row.theoretical_arrival = next_slot(
                row.theoretical_arrival, row.blocked_until, now, limits
            )
        return send_at - now

    def reserve_spare(
        self, portal_id: int, limits: Limits, *, keep_free: int, now: float | None = None
    ) -> bool:
        """Book a slot only if one is free now with `keep_free` requests of the burst left over
        (bitrix.throttle.spare_slot); return whether it was booked. Never waits."""
        now = time.time() if now is None else now
        with self.db.write() as session:
            row = self._row(session, portal_id)
            arrival = spare_slot(
                row.theoretical_arrival, row.blocked_until, now, limits, keep_free=keep_free
            )
            if arrival is None:
                return False
            row.theoretical_arrival = arrival
        return True

    def block(self, portal_id: int, until: float) -> None:
        """Nobody sends to this portal before `until` (after QUERY_LIMIT_EXCEEDED)."""
        with self.db.write() as session:
            row = self._row(session, portal_id)
            row.blocked_until = max(row.blocked_until, until)

    def _row(self, session: Session, portal_id: int) -> PortalThrottle:
        return _row(session, portal_id, sqlite=self.db.is_sqlite)


def book(
    session: Session, wanted: Mapping[int, tuple[Limits, int]], *, now: float, sqlite: bool
) -> dict[int, list[float]]:
    """Book request slots of several portals in the caller's write transaction: `wanted` maps
    a portal id to (its limits, how many slots). Returns when each slot may be sent, per portal
    (epoch seconds, `next_slots`).

    Core statements, not ORM objects (the claim of every round books), three whatever the number
    of portals: the rows a portal lacks are inserted first, in portal id order (ON CONFLICT DO
    NOTHING: an existing row is neither written nor locked), then every row is locked in one
    SELECT … FOR UPDATE in portal id order and written in one UPDATE. Nothing is locked before
    the INSERT and every lock is taken in id order, so two claims, or a claim and a client's
    `Throttle.reserve`, never wait for each other in a cycle (PostgreSQL; SQLite's write
    transactions take turns)."""
    wanted = {portal_id: want for portal_id, want in sorted(wanted.items()) if want[1] > 0}
    if not wanted:
        return {}
    session.execute(
        insert_for(_TABLE, sqlite_db=sqlite)
        .values(
            [{"portal_id": p, "theoretical_arrival": 0.0, "blocked_until": 0.0} for p in wanted]
        )
        .on_conflict_do_nothing(index_elements=["portal_id"])
    )
    rows = _locked(session, wanted)
    booked, changes = {}, []
    for portal_id, (limits, count) in wanted.items():
        arrival, blocked = rows[portal_id]
        booked[portal_id], arrival = next_slots(arrival, blocked, now, limits, count)
        changes.append({"b_portal_id": portal_id, "b_arrival": arrival})
    session.execute(_SET_ARRIVAL, changes)
    return booked


_TABLE = cast(Table, PortalThrottle.__table__)
_SET_ARRIVAL = (  # on the table, not the entity: the ORM would take it for a bulk update
    update(_TABLE)
    .where(_TABLE.c.portal_id == bindparam("b_portal_id"))
    .values(theoretical_arrival=bindparam("b_arrival"))
)


def _locked(session: Session, portal_ids: Collection[int]) -> dict[int, tuple[float, float]]:
    """(theoretical_arrival, blocked_until) of these portals' rows, locked, in portal id order."""
    rows = session.execute(
        select(
            PortalThrottle.portal_id,
            PortalThrottle.theoretical_arrival,
            PortalThrottle.blocked_until,
        )
        .where(PortalThrottle.portal_id.in_(sorted(portal_ids)))
        .order_by(PortalThrottle.portal_id)
        .with_for_update()
    )
    return {portal_id: (arrival, blocked) for portal_id, arrival, blocked in rows}


def free_now(
    session: Session, limits_by_portal: dict[int, Limits], *, now: float
) -> dict[int, int]:
    """How many requests each of these portals could send at once now (`free_slots`), read
    without locking (a hint for sizing a claim: the booking decides). One query."""
    found = {portal_id: limits.burst for portal_id, limits in limits_by_portal.items()}
    if not found:
        return found
    rows = session.execute(
        select(
            PortalThrottle.portal_id,
            PortalThrottle.theoretical_arrival,
            PortalThrottle.blocked_until,
        ).where(PortalThrottle.portal_id.in_(list(found)))
    )
    for portal_id, arrival, blocked in rows:
        found[portal_id] = free_slots(arrival, blocked, now, limits_by_portal[portal_id])
    return found


def _row(session: Session, portal_id: int, *, sqlite: bool) -> PortalThrottle:
    session.execute(
        insert_for(PortalThrottle, sqlite_db=sqlite)
        .values(portal_id=portal_id, theoretical_arrival=0.0, blocked_until=0.0)
        .on_conflict_do_nothing(index_elements=["portal_id"])
    )
    return session.scalars(
        select(PortalThrottle).where(PortalThrottle.portal_id == portal_id).with_for_update()
    ).one()
