"""A per-portal request schedule shared by every thread, process and host.

Bitrix24 counts requests per portal in a leaky bucket (limits.md: +1 per request, draining 2/s,
503 QUERY_LIMIT_EXCEEDED above 50; Enterprise 5/s and 250). The browser's BX24.js calls on the
same portal share that bucket, so we aim below it: by default 1.8/s with a burst of 40 (4.5/s and
225 on Enterprise).

The schedule is GCRA (the "virtual scheduling" form of a leaky bucket): one row per portal holds
the theoretical arrival time; reserving a slot is one short write transaction, which works the
same on SQLite and PostgreSQL and needs no extra service. Written here because the maintained
rate-limit libraries limit *incoming* requests per key and reject; we need to *schedule* outgoing
ones (wait, don't fail) across processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from b24app import metrics
from b24app.db import Database
from b24app.models import PortalThrottle


@dataclass(frozen=True)
class Limits:
    rate: float  # requests per second, sustained
    burst: int  # requests that may go at once after a quiet spell


STANDARD = Limits(rate=1.8, burst=40)
ENTERPRISE = Limits(rate=4.5, burst=225)


class Throttle:
    def __init__(self, db: Database) -> None:
        self.db = db

    def reserve(self, portal_id: int, limits: Limits, *, now: float | None = None) -> float:
        """Book the next request slot; return how many seconds to wait before sending."""
        now = time.time() if now is None else now
        interval = 1.0 / limits.rate
        tolerance = (limits.burst - 1) * interval
        with self.db.write() as session:
            row = self._row(session, portal_id)
            arrival = max(row.theoretical_arrival, now)
            send_at = max(now, arrival - tolerance, row.blocked_until)
            row.theoretical_arrival = max(arrival, send_at) + interval
        return send_at - now

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

    def wait(self, portal_id: int, limits: Limits) -> float:
        """Reserve a slot and sleep until it; return the seconds waited."""
        delay = self.reserve(portal_id, limits)
        metrics.THROTTLE_WAIT.observe(max(delay, 0.0))
        if delay > 0:
            time.sleep(delay)
        return delay
