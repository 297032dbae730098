"""Where the portals' request schedules are kept: one `portal_throttle` row per portal.

The rule (GCRA, Bitrix24's limits) is bitrix/throttle.py's; this keeps its two numbers where every
thread, process and host sees them. Reserving a slot is one short write transaction, which works
the same on SQLite and PostgreSQL and needs no extra service. `book` does the same inside a
transaction the caller holds, so the worker books a portal round's slots in the transaction that
claims its calls (delivery/outbox.claim_round): one transaction for both.
"""

from __future__ import annotations

import time

from sqlalchemy import select
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
    session: Session, portal_id: int, limits: Limits, count: int, *, now: float, sqlite: bool
) -> list[float]:
    """Book `count` request slots of the portal in the caller's write transaction (the row is
    locked until it commits); return when each may be sent (epoch seconds, `next_slots`)."""
    if count <= 0:
        return []
    row = _row(session, portal_id, sqlite=sqlite)
    times, row.theoretical_arrival = next_slots(
        row.theoretical_arrival, row.blocked_until, now, limits, count
    )
    return times


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
