"""The outbox: the `calls` table seen from the delivery side. Claiming, leases, outcomes.

A call is due when it is `queued` with `next_attempt_at` in the past, or `delivering` with an
expired lease (the worker that claimed it stopped), and its portal can be called: active and not
paused (portal_health.py). Calls of a portal waiting for its admin (needs_reauth, …) or paused
after an outage stay queued and are due the moment the portal is usable again; calls of a portal
that is gone (uninstalled, deleted) are due at once, to fail with the plain reason.
Claiming makes it `delivering`, leased to one worker until `lease_until`, and counts the
attempt. Whoever holds the lease records the outcome; a worker that lost its lease (it was too
slow and another worker took the call over) records nothing, except a confirmed delivery, which
is the truth whoever learns it.

A call taken over from a stopped worker may or may not have reached Bitrix24, so the claim
marks it OUTCOME_UNKNOWN: the worker looks it up in the statistics before sending it again.

Locking: on PostgreSQL the due rows are locked with `FOR UPDATE SKIP LOCKED`, so concurrent
claimers take different calls without waiting; on SQLite the write transaction (`BEGIN
IMMEDIATE`, db.py) lets one claimer at a time in. Either way any number of workers may run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from b24app.db import Database
from b24app.delivery.batching import MAX_COMMANDS, fit
from b24app.delivery.params import needs_register
from b24app.delivery.portal_health import paused_ids
from b24app.delivery.retry import OUTCOME_UNKNOWN, RUNNING_LIMIT
from b24app.logs import get_logger
from b24app.models import Call, CallState, Portal, PortalStatus
from b24app.portal_status import GONE

log = get_logger(__name__)

TAKEN_OVER = "The worker delivering this call stopped; checking Bitrix24 before sending it again."


@dataclass(frozen=True)
class Claimed:
    """A claimed call, detached from the session: what delivery needs to know of it."""

    id: int
    public_id: str  # the id the PBX and the admin know the call by
    portal_id: int
    request: Mapping[str, Any]
    attempts: int  # including this one
    created_at: datetime
    bitrix_call_id: str | None
    unknown: bool  # the previous attempt's outcome is unknown: look it up before sending
    use_fallback_user: bool = False  # Bitrix24 refused the call's employee as not active

    @property
    def call_id(self) -> str | None:
        """The CALL_ID to finish: the PBX's, or the one our earlier register returned."""
        return self.bitrix_call_id or self.request.get("CALL_ID") or None

    @property
    def external_call_id(self) -> str | None:
        """EXTERNAL_CALL_ID we register the call with (calls the PBX did not register)."""
        if not needs_register(self.request):
            return None
        return str(self.request.get("PBX_CALL_ID") or "") or None

    @property
    def cost(self) -> int:
        """Commands it takes: finish, or register + finish."""
        return 1 if self.call_id else 2


@dataclass(frozen=True)
class Delivered:
    result: dict[str, Any]  # Bitrix24's finish answer, or the statistics record found
    bitrix_call_id: str | None
    note: str | None = None  # what the admin should know (sent to the fallback employee, …)


@dataclass(frozen=True)
class Retry:
    code: str
    reason: str
    at: datetime
    bitrix_call_id: str | None = None
    attempts: int | None = None  # the attempts to keep (one less when this try did not count)
    use_fallback_user: bool = False  # send it to the portal's fallback employee next time


@dataclass(frozen=True)
class Failed:
    code: str
    reason: str
    bitrix_call_id: str | None = None


Outcome = Delivered | Retry | Failed


def due_condition(now: datetime) -> ColumnElement[bool]:
    """Due: queued and its time has come, or leased to a worker that stopped, for a portal that
    can be called (active, not paused); or queued for a portal that is gone (uninstalled,
    deleted): such calls fail at once with the plain reason (retry.for_portal)."""
    usable = select(Portal.id).where(
        Portal.status == PortalStatus.ACTIVE, Portal.id.not_in(paused_ids())
    )
    gone = select(Portal.id).where(Portal.status.in_(GONE))
    return or_(
        and_(
            Call.state == CallState.QUEUED,
            Call.next_attempt_at <= now,
            Call.portal_id.in_(usable),
        ),
        and_(Call.state == CallState.QUEUED, Call.portal_id.in_(gone)),
        and_(
            Call.state == CallState.DELIVERING,
            Call.lease_until < now,
            or_(Call.portal_id.in_(usable), Call.portal_id.in_(gone)),
        ),
    )


def claim(
    db: Database,
    *,
    worker_id: str,
    now: datetime,
    lease: float,
    max_portals: int,
    exclude: Collection[int] = (),
    max_commands: int = MAX_COMMANDS,
) -> dict[int, list[Claimed]]:
    """One round: for each portal with due calls (oldest due first, at most `max_portals`, none
    of `exclude`), its oldest due calls that fit one batch. A busy portal gets one batch per
    round like any other, so it never starves the rest."""
    if max_portals <= 0:
        return {}
    claimed: dict[int, list[Claimed]] = {}
    with db.write() as session:
        for portal_id in _due_portals(session, now, max_portals, exclude):
            rows = _lock_due(session, db, portal_id, now, max_commands)
            taken = fit(rows, key=_cost, budget=max_commands)
            if taken:
                claimed[portal_id] = _take(session, taken, worker_id, now, lease)
    return claimed


def _due_portals(
    session: Session, now: datetime, limit: int, exclude: Collection[int]
) -> list[int]:
    oldest = func.min(Call.next_attempt_at).label("oldest")
    query = select(Call.portal_id, oldest).where(due_condition(now))
    if exclude:
        query = query.where(Call.portal_id.not_in(list(exclude)))
    query = query.group_by(Call.portal_id).order_by(oldest, Call.portal_id).limit(limit)
    return [portal_id for portal_id, _ in session.execute(query)]


def _lock_due(
    session: Session, db: Database, portal_id: int, now: datetime, limit: int
) -> list[Call]:
    query = (
        select(Call)
        .where(Call.portal_id == portal_id, due_condition(now))
        .order_by(Call.next_attempt_at, Call.id)
        .limit(limit)
    )
    if not db.is_sqlite:
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def _cost(row: Call) -> int:
    return 1 if row.bitrix_call_id or not needs_register(row.request) else 2


def _take(
    session: Session, rows: list[Call], worker_id: str, now: datetime, lease: float
) -> list[Claimed]:
    """Lease the rows to us in one UPDATE (plus one for calls taken over from a stopped worker),
    not row by row through the ORM: a claim is on every batch's path."""
    ids = [row.id for row in rows]
    taken_over = {row.id for row in rows if row.state == CallState.DELIVERING}
    _update(
        session,
        ids,
        state=CallState.DELIVERING,
        lease_until=now + timedelta(seconds=lease),
        leased_by=worker_id,
        attempts=func.coalesce(Call.attempts, 0) + 1,
    )
    if taken_over:
        _update(session, taken_over, error_code=OUTCOME_UNKNOWN, error=TAKEN_OVER)
    return [
        Claimed(
            id=row.id,
            public_id=row.public_id,
            portal_id=row.portal_id,
            request=dict(row.request or {}),
            attempts=(row.attempts or 0) + 1,
            created_at=row.created_at,
            bitrix_call_id=row.bitrix_call_id,
            unknown=row.id in taken_over or row.error_code == OUTCOME_UNKNOWN,
            use_fallback_user=bool(row.use_fallback_user),
        )
        for row in rows
    ]


def _update(session: Session, ids: Collection[int], **values: Any) -> None:
    session.execute(
        update(Call)
        .where(Call.id.in_(list(ids)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def extend_lease(
    db: Database, ids: Iterable[int], *, worker_id: str, now: datetime, lease: float
) -> set[int]:
    """Renew our lease on these calls right before sending them; return those still ours (a
    call another worker took over after our lease ran out must not be sent by us too)."""
    wanted = list(ids)
    if not wanted:
        return set()
    with db.write() as session:
        ours = set(
            session.scalars(
                select(Call.id).where(
                    Call.id.in_(wanted),
                    Call.state == CallState.DELIVERING,
                    Call.leased_by == worker_id,
                )
            )
        )
        if ours:
            session.execute(
                update(Call)
                .where(Call.id.in_(ours))
                .values(lease_until=now + timedelta(seconds=lease))
            )
    return ours


def record(db: Database, outcomes: Mapping[int, Outcome], *, worker_id: str, now: datetime) -> int:
    """Write each call's outcome in one transaction; return how many were written.

    Reads only what decides whether an outcome may be written (state, lease holder), then
    writes them all as one bulk UPDATE by primary key."""
    if not outcomes:
        return 0
    changes = []
    with db.write() as session:
        query = (
            select(Call.id, Call.state, Call.leased_by)
            .where(Call.id.in_(list(outcomes)))
            .order_by(Call.id)
        )
        if not db.is_sqlite:
            query = query.with_for_update()
        for call_id, state, leased_by in session.execute(query):
            outcome = outcomes[call_id]
            if _still_ours(state, leased_by, worker_id) or _late_delivery(state, outcome):
                changes.append(_changes(call_id, outcome, now))
            else:
                log.warning("lease lost; outcome dropped", call=call_id, worker=worker_id)
        if changes:
            session.execute(update(Call), changes)
    return len(changes)


def _still_ours(state: str, leased_by: str | None, worker_id: str) -> bool:
    return state == CallState.DELIVERING and leased_by == worker_id


def _late_delivery(state: str, outcome: Outcome) -> bool:
    """We lost the lease but Bitrix24 confirmed the finish: record it, since it is true."""
    return isinstance(outcome, Delivered) and state != CallState.DELIVERED


def _changes(call_id: int, outcome: Outcome, now: datetime) -> dict[str, Any]:
    """The columns an outcome sets, keyed for a bulk UPDATE by primary key."""
    row: dict[str, Any] = {"id": call_id, "lease_until": None, "leased_by": None}
    if outcome.bitrix_call_id:
        row["bitrix_call_id"] = outcome.bitrix_call_id
    if isinstance(outcome, Delivered):
        row.update(
            state=CallState.DELIVERED,
            result=outcome.result,
            delivered_at=now,
            error_code=None,
            error=None,
            note=outcome.note,
        )
    elif isinstance(outcome, Retry):
        row.update(
            state=CallState.QUEUED,
            next_attempt_at=outcome.at,
            error_code=outcome.code,
            error=outcome.reason,
        )
        if outcome.attempts is not None:
            row["attempts"] = outcome.attempts
        if outcome.use_fallback_user:
            row["use_fallback_user"] = True
    else:
        row.update(state=CallState.FAILED, error_code=outcome.code, error=outcome.reason)
    return row


# --- delivering failed calls again (the journal's buttons, `flask calls redeliver`) -------------

# A failed call with one of these codes may have been finished in Bitrix24 after all: an attempt
# got no readable answer, or Bitrix24 said it no longer knows the call, which is what it answers
# for a call that is already finished (tutorials/telephony; issue 9 item 3).
MAY_HAVE_RUN = (OUTCOME_UNKNOWN, "CALL_NOT_FOUND")
CHECK_FIRST = (
    "Delivered again on request; an earlier attempt may have reached Bitrix24, so its statistics "
    "are checked before the call is sent again."
)


def requeue(
    session: Session,
    *,
    portal_id: int | None,
    public_ids: Collection[str] | None = None,
    error_code: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime,
    dry_run: bool = False,
) -> list[str]:
    """Put failed calls back in the outbox as if they had just arrived; return their public ids.

    In: `portal_id` (None: every portal), and optional filters: `public_ids`, the last
    `error_code`, `since` <= arrival (`created_at`) < `until` (aware datetimes). Only `failed`
    calls of portals that are not gone (uninstalled, deleted) move: to `queued`, due `now`, no
    lease, `attempts` 0 (the retry limits count anew). A call already queued, delivering or
    delivered is untouched, and the change is one conditional UPDATE, so two clicks or two
    commands at once never queue a call twice. `bitrix_call_id` is kept (a registered call is
    finished, not registered again), and a call that may have reached Bitrix24 (it has a
    `bitrix_call_id`, or its last error is one of MAY_HAVE_RUN) is marked OUTCOME_UNKNOWN, so the
    worker looks it up in voximplant.statistic.get before sending it (Claimed.unknown). `dry_run`
    changes nothing and returns the ids that would move. Raises ValueError when since >= until.
    """
    if since is not None and until is not None and since >= until:
        raise ValueError("since must be earlier than until")
    if public_ids is not None and not public_ids:
        return []
    conditions = _failed_matching(portal_id, public_ids, error_code, since, until)
    if dry_run:
        found = session.scalars(select(Call.public_id).where(*conditions).order_by(Call.id))
        return list(found)
    may_have_run = or_(Call.bitrix_call_id.is_not(None), Call.error_code.in_(MAY_HAVE_RUN))
    done = session.scalars(
        update(Call)
        .where(*conditions)
        .values(
            state=CallState.QUEUED,
            next_attempt_at=now,
            attempts=0,
            lease_until=None,
            leased_by=None,
            error_code=case((may_have_run, OUTCOME_UNKNOWN), else_=None),
            error=case((may_have_run, CHECK_FIRST), else_=None),
            updated_at=now,
        )
        .returning(Call.public_id)
        .execution_options(synchronize_session=False)
    )
    return sorted(done)


def _failed_matching(
    portal_id: int | None,
    public_ids: Collection[str] | None,
    error_code: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    gone = select(Portal.id).where(Portal.status.in_(GONE))
    conditions = [Call.state == CallState.FAILED, Call.portal_id.not_in(gone)]
    if portal_id is not None:
        conditions.append(Call.portal_id == portal_id)
    if public_ids is not None:
        conditions.append(Call.public_id.in_(list(public_ids)))
    if error_code is not None:
        conditions.append(Call.error_code == error_code)
    if since is not None:
        conditions.append(Call.created_at >= since)
    if until is not None:
        conditions.append(Call.created_at < until)
    return conditions


def release_dead_leases(
    db: Database,
    *,
    hostname: str,
    alive: Callable[[int], bool],
    now: datetime,
    lease: float,
    running_limit: float = RUNNING_LIMIT,
) -> int:
    """Shorten the leases of workers of this host whose process is gone (killed, crashed), so
    their calls are taken over (and looked up) as soon as Bitrix24 can no longer be running the
    batch they were in: `running_limit` seconds after it was sent (retry.RUNNING_LIMIT), not
    when the whole `lease` runs out. The lease was renewed right before sending (extend_lease),
    so it was sent at `lease_until - lease`. Worker ids are `host:pid:nonce`
    (worker.new_worker_id); a pid reused by another process only keeps a lease until it runs
    out, as before. Returns how many calls were released."""
    prefix = f"{hostname}:"
    shift = timedelta(seconds=lease - running_limit)
    if shift <= timedelta(0):
        return 0  # the lease ends no later than Bitrix24 can be running the batch anyway
    with db.write() as session:
        rows = session.execute(
            select(Call.id, Call.leased_by, Call.lease_until).where(
                Call.state == CallState.DELIVERING, Call.leased_by.startswith(prefix)
            )
        ).all()
        dead = {h for _, h, _ in rows if h and not alive(_pid_of(h))}
        changes = [
            {"id": call_id, "lease_until": max(now - timedelta(seconds=1), until - shift)}
            for call_id, holder, until in rows
            if holder in dead and until is not None
        ]
        if changes:
            session.execute(update(Call), changes)
    if changes:
        log.warning("leases of stopped workers shortened", workers=len(dead), calls=len(changes))
    return len(changes)


def _pid_of(worker_id: str) -> int:
    try:
        return int(worker_id.split(":")[1])
    except (IndexError, ValueError):
        return 0
