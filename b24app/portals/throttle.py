"""Where the portals' request schedules are kept: one `portal_throttle` row per portal.

The rule (GCRA, Bitrix24's limits) is bitrix/throttle.py's; this keeps its two numbers where every
thread, process and host sees them. Reserving a slot is one short write transaction, which works
the same on SQLite and PostgreSQL and needs no extra service.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from b24app.bitrix.throttle import Limits, next_slot, spare_slot
from b24app.db import Database
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
        insert = sqlite_insert if self.db.is_sqlite else pg_insert
        session.execute(
            insert(PortalThrottle)
            .values(portal_id=portal_id, theoretical_arrival=0.0, blocked_until=0.0)
            .on_conflict_do_nothing(index_elements=["portal_id"])
        )
        return session.scalars(
            select(PortalThrottle).where(PortalThrottle.portal_id == portal_id).with_for_update()
        ).one()
