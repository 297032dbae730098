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
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from b24app.db import Database
from b24app.models import Origination, OriginationState, Portal
from b24app.originate.webhooks import Attempt
from b24app.portal_status import GONE

LEASE = 30.0  # seconds: above an attempt's worst (webhooks.DEADLINE, confirmation, extension)
PER_PORTAL = 2  # a portal's requests in flight at once, across all workers
LOOK_AHEAD = 8  # due rows read per request wanted (the rest may be other portals' or late ones)
NOT_IN_TIME = "not sent in time: b24app's workers or the portal were away while it could help"
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
    """Lease up to `limit` due requests (oldest due first) to `worker_id` and count the attempt;
    at most PER_PORTAL of one portal in flight across all workers, so one portal's slow PBX or
    flood of clicks never holds every sending thread. A due request past its `give_up_at` (the
    workers or its portal were away) is failed here instead of sent: nobody waits for it now."""
    if limit <= 0:
        return []
    query = _due(now).limit(limit * LOOK_AHEAD)
    with db.read() as session:  # most looks find nothing: no write lock for them
        if session.scalar(query.with_only_columns(Origination.id)) is None:
            return []
    with db.write() as session:
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True, of=Origination)
        rows = session.execute(query).all()
        late = [row.id for row, _ in rows if row.give_up_at <= now]
        if late:
            session.execute(
                update(Origination)
                .where(Origination.id.in_(late))
                .values(state=OriginationState.FAILED, error=NOT_IN_TIME, lease_until=None)
                .execution_options(synchronize_session=False)
            )
        taken = _fair(
            [(row, m) for row, m in rows if row.give_up_at > now], _in_flight(session, now), limit
        )
        if not taken:
            return []
        session.execute(
            update(Origination)
            .where(Origination.id.in_([row.id for row, _ in taken]))
            .values(
                lease_until=now + timedelta(seconds=LEASE),
                leased_by=worker_id,
                attempts=Origination.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        return [_job(row, member_id) for row, member_id in taken]


def _due(now: datetime) -> Select[Origination, str]:
    gone = select(Portal.id).where(Portal.status.in_(GONE))
    return (
        select(Origination, Portal.member_id)
        .join(Portal, Portal.id == Origination.portal_id)
        .where(
            Origination.state == OriginationState.QUEUED,
            Origination.next_attempt_at <= now,
            (Origination.lease_until.is_(None)) | (Origination.lease_until < now),
            Origination.portal_id.not_in(gone),
        )
        .order_by(Origination.next_attempt_at, Origination.id)
    )


def _in_flight(session: Session, now: datetime) -> dict[int, int]:
    """Requests being sent now, by portal (a live lease)."""
    rows = session.execute(
        select(Origination.portal_id, func.count())
        .where(Origination.state == OriginationState.QUEUED, Origination.lease_until >= now)
        .group_by(Origination.portal_id)
    )
    return {portal_id: count for portal_id, count in rows}


def _fair(rows: list[Any], busy: dict[int, int], limit: int) -> list[Any]:
    """The first `limit` rows, skipping a portal's once it has PER_PORTAL in flight."""
    taken = []
    for row, member_id in rows:
        if busy.get(row.portal_id, 0) >= PER_PORTAL:
            continue
        busy[row.portal_id] = busy.get(row.portal_id, 0) + 1
        taken.append((row, member_id))
        if len(taken) == limit:
            break
    return taken


def _job(row: Origination, member_id: str) -> Job:
    return Job(
        id=row.id,
        portal_id=row.portal_id,
        member_id=member_id,
        kind=row.kind,
        webhook_id=row.webhook_id,
        payload=dict(row.payload),
        attempts=row.attempts + 1,
        created_at=row.created_at,
    )


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
