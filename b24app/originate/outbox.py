"""Requests to the PBX waiting to be sent: leased to workers, each attempt's end recorded.

The same rules as the calls' outbox (delivery/outbox.py): a worker leases a due request for
LEASE seconds (PostgreSQL `FOR UPDATE SKIP LOCKED`, so workers take different ones; SQLite one
claimer at a time), sends it once, and records the end only while the lease is its own; a worker
that dies leaves a lease that runs out, and another worker sends the request again (with the
same webhook-id). Requests of gone portals are not sent.

Tried again quickly while it can still help: 1 s, 2 s, 4 s … apart (at most RETRY_CAP for the
kind) until the request's `give_up_at` (inbox.GIVE_UP_AFTER: a minute for click-to-call, ten for
a callback), then failed with the last reason, shown in the settings page's journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from b24app.db import Database
from b24app.models import Origination, OriginationState, Portal
from b24app.originate.webhooks import Attempt
from b24app.portal_status import GONE

LEASE = 30.0  # seconds: far above one send (webhooks.TIMEOUT) and the extension look-up
FIRST_RETRY = 1.0  # seconds
RETRY_CAP = {"call.start": 4.0, "callback.start": 30.0}


@dataclass(frozen=True)
class Job:
    """One leased request: what a worker needs to send it."""

    id: int
    portal_id: int
    member_id: str
    kind: str
    webhook_id: str
    payload: dict[str, str]
    attempts: int  # this one included
    created_at: datetime


def claim(db: Database, *, worker_id: str, now: datetime, limit: int) -> list[Job]:
    """Lease up to `limit` due requests (oldest due first) to `worker_id` and count the attempt."""
    if limit <= 0:
        return []
    gone = select(Portal.id).where(Portal.status.in_(GONE))
    query = (
        select(Origination, Portal.member_id)
        .join(Portal, Portal.id == Origination.portal_id)
        .where(
            Origination.state == OriginationState.QUEUED,
            Origination.next_attempt_at <= now,
            (Origination.lease_until.is_(None)) | (Origination.lease_until < now),
            Origination.portal_id.not_in(gone),
        )
        .order_by(Origination.next_attempt_at, Origination.id)
        .limit(limit)
    )
    with db.read() as session:  # most looks find nothing: no write lock for them
        if session.scalar(query.with_only_columns(Origination.id)) is None:
            return []
    with db.write() as session:
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True, of=Origination)
        rows = session.execute(query).all()
        if not rows:
            return []
        session.execute(
            update(Origination)
            .where(Origination.id.in_([row.id for row, _ in rows]))
            .values(
                lease_until=now + timedelta(seconds=LEASE),
                leased_by=worker_id,
                attempts=Origination.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        return [
            Job(
                id=row.id,
                portal_id=row.portal_id,
                member_id=member_id,
                kind=row.kind,
                webhook_id=row.webhook_id,
                payload=dict(row.payload),
                attempts=row.attempts + 1,
                created_at=row.created_at,
            )
            for row, member_id in rows
        ]


def record(db: Database, job: Job, attempt: Attempt, *, worker_id: str, now: datetime) -> str:
    """Keep how `job`'s attempt ended (if its lease is still `worker_id`'s); returns the
    request's state now: delivered, queued (tried again at its next time) or failed."""
    with db.write() as session:
        row = session.scalars(
            select(Origination).where(Origination.id == job.id).with_for_update()
        ).one_or_none()
        if row is None or row.leased_by != worker_id or row.state != OriginationState.QUEUED:
            return row.state if row is not None else "gone"
        row.lease_until = None
        row.leased_by = None
        row.response_status = attempt.status
        row.response_body = attempt.body or None
        if attempt.ok:
            row.state, row.error, row.delivered_at = OriginationState.DELIVERED, None, now
            return row.state
        delay = min(FIRST_RETRY * 2 ** (job.attempts - 1), RETRY_CAP.get(job.kind, 4.0))
        next_at = now + timedelta(seconds=delay)
        if attempt.retry and next_at <= row.give_up_at:
            row.error, row.next_attempt_at = attempt.error, next_at
            return row.state
        row.state = OriginationState.FAILED
        row.error = _gave_up(attempt, job, now) if attempt.retry else attempt.error
        return row.state


def _gave_up(attempt: Attempt, job: Job, now: datetime) -> str:
    seconds = int((now - job.created_at).total_seconds())
    return f"{attempt.error}; gave up after {job.attempts} attempts in {seconds} s"


def recent(session: Session, portal_id: int, limit: int = 50) -> list[Origination]:
    """The portal's latest requests to its PBX, newest first (for the settings page)."""
    return list(
        session.scalars(
            select(Origination)
            .where(Origination.portal_id == portal_id)
            .order_by(Origination.created_at.desc(), Origination.id.desc())
            .limit(limit)
        )
    )
