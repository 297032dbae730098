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

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, ColumnElement, String, and_, bindparam, case, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import JSON as PG_JSON
from sqlalchemy.orm import Session

from b24app.bitrix.throttle import Limits, limits_of
from b24app.db import Database
from b24app.delivery.batching import MAX_COMMANDS, split
from b24app.delivery.lifecycle import CallFacts, Change, EventView, estimate_cost
from b24app.delivery.portal_health import paused_ids
from b24app.delivery.retry import OUTCOME_UNKNOWN, RUNNING_LIMIT
from b24app.logs import get_logger
from b24app.models import (
    Call,
    CallEvent,
    CallRecording,
    CallState,
    EventKind,
    EventState,
    Portal,
    PortalStatus,
    RecordingState,
)
from b24app.portal_status import GONE
from b24app.portals import throttle

log = get_logger(__name__)

# lifecycle.py's codes for "waited for an event that did not come"
WAITED_IN_VAIN = ("NO_START", "NOT_FINISHED")
TAKEN_OVER = "The worker delivering this call stopped; checking Bitrix24 before sending it again."
# A lease younger than this (and than a quarter of the lease) is not renewed before sending
# (deliver.py): nobody can have taken the calls over since the claim unless hosts' clocks
# disagree by most of the lease. Takeovers of a dead worker's calls allow for it: the batch may
# have gone out up to this long after the lease began (release_dead_leases).
FRESH_CLAIM = 2.0  # seconds


@dataclass(frozen=True)
class Claimed:
    """A claimed call with all its events, detached from the session: what delivery needs."""

    id: int
    public_id: str  # the id the PBX and the admin know the call by
    portal_id: int
    attempts: int  # including this one
    created_at: datetime
    bitrix_call_id: str | None
    unknown: bool  # the previous attempt's outcome is unknown: look it up before sending
    events: tuple[EventView, ...] = ()  # every event of the call, in arrival order
    events_version: int = 0
    use_fallback_user: bool = False  # Bitrix24 refused the call's employee as not active
    shown_to: tuple[int, ...] = ()
    register_sent_at: datetime | None = None
    register_user: Mapping[str, Any] | None = None  # the employee that register named
    started_at: datetime | None = None  # the journal's start instant (delivery/call_index.py)
    recordings: Mapping[int, str] = field(default_factory=dict)  # record event id → state
    recordings_since: Mapping[int, datetime] = field(default_factory=dict)  # … → being had since
    batch: int = 0  # which of its portal's batches of the round the call goes in (claim_round)
    send_at: float | None = None  # that batch's throttle slot, booked by the claim (epoch s)
    claimed_at: float = 0.0  # time.monotonic() of the claim (a fresh lease is not renewed)

    @property
    def facts(self) -> CallFacts:
        return CallFacts(
            id=self.id,
            bitrix_call_id=self.bitrix_call_id,
            shown_to=self.shown_to,
            register_sent_at=self.register_sent_at,
            register_user=self.register_user,
            use_fallback_user=self.use_fallback_user,
            recordings=self.recordings,
            recordings_since=self.recordings_since,
            started_at=self.started_at,
        )

    def event(self, kind: str) -> EventView | None:
        return next((e for e in self.events if e.kind == kind), None)

    @property
    def call_id(self) -> str | None:
        """Bitrix24's CALL_ID as far as we know it: registered by us, or given by the PBX."""
        if self.bitrix_call_id:
            return self.bitrix_call_id
        for kind in (EventKind.START, EventKind.FINISH):
            event = self.event(kind)
            if event is not None and event.request.get("CALL_ID"):
                return str(event.request["CALL_ID"])
        return None

    @property
    def external_call_id(self) -> str | None:
        """EXTERNAL_CALL_ID we register the call with: its PBX_CALL_ID."""
        for event in self.events:
            if event.request.get("PBX_CALL_ID"):
                return str(event.request["PBX_CALL_ID"])
        return None

    @property
    def finish_pending(self) -> bool:
        finish = self.event(EventKind.FINISH)
        return finish is not None and finish.state == EventState.QUEUED


@dataclass(frozen=True)
class Retry:
    """The call is tried again at `at` (its queued events stay queued)."""

    code: str
    reason: str
    at: datetime
    attempts: int | None = None  # the attempts to keep (one less when this try did not count)
    use_fallback_user: bool = False  # send it to the portal's fallback employee next time


@dataclass
class CallOutcome:
    """What one delivery attempt learnt about a call: each event's new state, what Bitrix24
    confirmed of the call, and whether to try again."""

    events: dict[int, Change] = field(default_factory=dict)
    retry: Retry | None = None
    bitrix_call_id: str | None = None
    crm: tuple[str | None, int | None] | None = None
    shown_to: set[int] | None = None
    finished: dict[str, Any] | None = None  # finish's answer, or the statistics record found
    note: str | None = None  # what the admin should know (sent to the fallback employee, …)
    register_sent_at: datetime | None = None  # a register of unknown outcome went at this time
    register_user: dict[str, Any] | None = None  # … naming this employee
    register_known: bool = False  # Bitrix24 answered the register readably: forget the above
    wait_until: datetime | None = None  # queued events wait until then (None: due at once)


def event_added(
    session: Session,
    call_id: int,
    now: datetime,
    *,
    kind: str | None = None,
    also: Mapping[str, Any] | None = None,
) -> None:
    """A new event of this call was stored (the intake, a finished download): make the call due
    now, unless a worker holds it; either way bump `events_version`, so that a worker that
    claimed it before cannot record it done (record() leaves it queued). A start (the event's
    `kind`) brings back the events that failed only because it had not come (NO_START, and the
    recording that then had no finish): one statement more, for starts only. `also`: more
    columns to set in the same UPDATE (the journal's, delivery/call_index.later_values)."""
    if kind == EventKind.START:
        _waited_in_vain(session, call_id)
    leased = Call.state == CallState.DELIVERING
    session.execute(
        update(Call)
        .where(Call.id == call_id)
        .values(
            events_version=Call.events_version + 1,
            state=case((leased, CallState.DELIVERING), else_=CallState.QUEUED),
            next_attempt_at=case((leased, Call.next_attempt_at), else_=now),
            updated_at=now,
            **(also or {}),
        )
        .execution_options(synchronize_session=False)
    )


def _waited_in_vain(session: Session, call_id: int) -> None:
    """What failed only for want of the start may go now."""
    session.execute(
        update(CallEvent)
        .where(
            CallEvent.call_id == call_id,
            CallEvent.state == EventState.FAILED,
            CallEvent.error_code.in_(WAITED_IN_VAIN),
        )
        .values(state=EventState.QUEUED, error_code=None, error=None, note=None)
        .execution_options(synchronize_session=False)
    )


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


@dataclass
class Round:
    """What one claim took: each portal's calls (Claimed.batch numbers their batches), and the
    portals that may have more calls due than they were given."""

    calls: dict[int, list[Claimed]] = field(default_factory=dict)
    more: set[int] = field(default_factory=set)


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
    """One round of one batch per portal (`claim_round` with max_batches=1): for each portal
    with due calls (oldest due first, at most `max_portals`, none of `exclude`), its oldest due
    calls whose commands fit one batch."""
    return claim_round(
        db,
        worker_id=worker_id,
        now=now,
        lease=lease,
        max_portals=max_portals,
        exclude=exclude,
        max_commands=max_commands,
    ).calls


def claim_round(
    db: Database,
    *,
    worker_id: str,
    now: datetime,
    lease: float,
    max_portals: int,
    exclude: Collection[int] = (),
    max_commands: int = MAX_COMMANDS,
    max_batches: int = 1,
    in_flight: Mapping[int, int] | None = None,
    book: bool = False,
) -> Round:
    """One round, in one write transaction: for each portal with due calls (oldest due first,
    at most `max_portals`, none of `exclude`), its oldest due calls that fit its share of
    batches of `max_commands` commands each, numbered in Claimed.batch; with `book`, one
    throttle slot booked per batch in the same transaction (Claimed.send_at).

    A portal's share: `max_batches`, but no more than the requests its throttle schedule lets go
    at once now (bitrix/throttle.free_slots: the burst less what the bucket holds, every slot
    booked so far counted); at least one when none of its batches is `in_flight` in this worker
    (that one waits for its slot), none while some are and the bucket is full. So K batches of
    one portal go side by side only while its bucket has room for all K at once. A busy portal
    gets one share per round like any other, so it never starves the rest."""
    taken_round = Round()
    if max_portals <= 0:
        return taken_round
    with db.write() as session:
        due = _due_portals(session, now, max_portals, exclude)
        if not due:
            return taken_round
        shares, limits = _shares(session, due, max_batches, in_flight or {}, book=book)
        locked = {
            portal_id: _lock_due(session, db, portal_id, now, shares[portal_id] * max_commands)
            for portal_id in due
            if shares[portal_id] > 0
        }
        events = _events_of(session, [row.id for rows in locked.values() for row in rows])
        planned: dict[int, list[list[Any]]] = {}
        cost = {
            row.id: min(estimate_cost(events.get(row.id, ())), max_commands)
            for rows in locked.values()
            for row in rows
        }
        for portal_id, rows in locked.items():
            share = shares[portal_id]
            batches = split(rows, key=lambda row: cost[row.id], budget=max_commands, limit=share)
            if batches:
                planned[portal_id] = batches
            if sum(map(len, batches)) < len(rows) or len(rows) >= share * max_commands:
                taken_round.more.add(portal_id)
        # booked: the calls go out now (a gone portal's calls are not sent: they fail)
        wanted = {p: (limits[p], len(batches)) for p, batches in planned.items() if p in limits}
        slots = throttle.book(session, wanted, now=time.time(), sqlite=db.is_sqlite)
        taken_round.calls = _take(session, planned, events, worker_id, now, lease, slots)
    return taken_round


def _shares(
    session: Session,
    portal_ids: list[int],
    max_batches: int,
    in_flight: Mapping[int, int],
    *,
    book: bool,
) -> tuple[dict[int, int], dict[int, Limits]]:
    """How many batches each portal may have in this round (claim_round's rule), and the
    limits of the portals whose slots are to be booked (active ones, when `book`)."""
    if max_batches <= 1 and not in_flight and not book:
        return dict.fromkeys(portal_ids, 1), {}
    rows = session.execute(
        select(Portal.id, Portal.enterprise_limits, Portal.status).where(Portal.id.in_(portal_ids))
    )
    limits, active = {}, {}
    for portal_id, enterprise, status in rows:
        limits[portal_id] = limits_of(bool(enterprise))
        if status not in GONE:
            active[portal_id] = limits[portal_id]
    free = throttle.free_now(session, limits, now=time.time())
    shares = {}
    for portal_id in portal_ids:
        busy = in_flight.get(portal_id, 0)
        room = min(max_batches, free.get(portal_id, 1))
        shares[portal_id] = max(room, 0 if busy else 1)
    return shares, active if book else {}


def _due_portals(
    session: Session, now: datetime, limit: int, exclude: Collection[int]
) -> list[int]:
    oldest = func.min(Call.next_attempt_at).label("oldest")
    query = select(Call.portal_id, oldest).where(due_condition(now))
    if exclude:
        query = query.where(Call.portal_id.not_in(list(exclude)))
    query = query.group_by(Call.portal_id).order_by(oldest, Call.portal_id).limit(limit)
    return [portal_id for portal_id, _ in session.execute(query)]


# The columns of a due call the claim needs (rows, not ORM objects: a claim is on every batch's
# path and may take thousands of calls).
CLAIM_COLUMNS = (
    Call.id,
    Call.public_id,
    Call.portal_id,
    Call.state,
    Call.attempts,
    Call.created_at,
    Call.bitrix_call_id,
    Call.error_code,
    Call.events_version,
    Call.use_fallback_user,
    Call.shown_to,
    Call.register_sent_at,
    Call.register_user,
    Call.started_at,
)


def _lock_due(
    session: Session, db: Database, portal_id: int, now: datetime, limit: int
) -> list[Any]:
    query = (
        select(*CLAIM_COLUMNS)
        .where(Call.portal_id == portal_id, due_condition(now))
        .order_by(Call.next_attempt_at, Call.id)
        .limit(limit)
    )
    if not db.is_sqlite:
        query = query.with_for_update(skip_locked=True)
    return list(session.execute(query))


def _events_of(session: Session, call_ids: Sequence[int]) -> dict[int, list[EventView]]:
    """Every event of these calls, in arrival order (one query)."""
    found: dict[int, list[EventView]] = {}
    for part in _parts(list(call_ids)):
        rows = session.execute(
            select(
                CallEvent.call_id,
                CallEvent.id,
                CallEvent.kind,
                CallEvent.request,
                CallEvent.state,
                CallEvent.created_at,
                CallEvent.error,
                CallEvent.error_code,
            )
            .where(CallEvent.call_id.in_(part))
            .order_by(CallEvent.id)
        )
        for call_id, *view in rows:
            found.setdefault(call_id, []).append(EventView(*view))
    return found


def _recordings_of(
    session: Session, events: Iterable[EventView]
) -> dict[int, tuple[str, datetime]]:
    """Record event id → its recording's state and since when it is being had (created_at)."""
    ids = [e.id for e in events if e.kind == EventKind.RECORD]
    found: dict[int, tuple[str, datetime]] = {}
    for part in _parts(ids):
        rows = session.execute(
            select(CallRecording.event_id, CallRecording.state, CallRecording.created_at).where(
                CallRecording.event_id.in_(part)
            )
        )
        found.update({event_id: (state, since) for event_id, state, since in rows})
    return found


def _take(
    session: Session,
    planned: Mapping[int, list[list[Any]]],
    events: Mapping[int, list[EventView]],
    worker_id: str,
    now: datetime,
    lease: float,
    slots: Mapping[int, Sequence[float]],
) -> dict[int, list[Claimed]]:
    """Lease the planned rows (each portal's batches) to us in one UPDATE (plus one for calls
    taken over from a stopped worker) for the whole round, not row by row through the ORM nor
    portal by portal: a claim is on every batch's path. Each call's Claimed.send_at is its
    batch's booked slot (`slots`, per portal), none for a portal not booked."""
    rows = [row for batches in planned.values() for batch in batches for row in batch]
    if not rows:
        return {}
    claimed_at = time.monotonic()
    taken_over = {row.id for row in rows if row.state == CallState.DELIVERING}
    _update(
        session,
        [row.id for row in rows],
        state=CallState.DELIVERING,
        lease_until=now + timedelta(seconds=lease),
        leased_by=worker_id,
        attempts=func.coalesce(Call.attempts, 0) + 1,
    )
    if taken_over:
        _update(session, taken_over, error_code=OUTCOME_UNKNOWN, error=TAKEN_OVER)
    recordings = _recordings_of(session, [e for row in rows for e in events.get(row.id, ())])
    taken: dict[int, list[Claimed]] = {}
    for portal_id, batches in planned.items():
        booked = slots.get(portal_id)
        taken[portal_id] = [
            _claimed(
                row, events.get(row.id, ()), recordings, taken_over, claimed_at, number, booked
            )
            for number, batch in enumerate(batches)
            for row in batch
        ]
    return taken


def _claimed(
    row: Any,
    events: Sequence[EventView],
    recordings: Mapping[int, tuple[str, datetime]],
    taken_over: Collection[int],
    claimed_at: float,
    batch: int,
    slots: Sequence[float] | None,
) -> Claimed:
    return Claimed(
        id=row.id,
        public_id=row.public_id,
        portal_id=row.portal_id,
        attempts=(row.attempts or 0) + 1,
        created_at=row.created_at,
        bitrix_call_id=row.bitrix_call_id,
        unknown=row.id in taken_over or row.error_code == OUTCOME_UNKNOWN,
        events=tuple(events),
        events_version=row.events_version or 0,
        use_fallback_user=bool(row.use_fallback_user),
        shown_to=tuple(row.shown_to or ()),
        register_sent_at=row.register_sent_at,
        register_user=row.register_user,
        started_at=row.started_at,
        recordings={e.id: recordings[e.id][0] for e in events if e.id in recordings},
        recordings_since={e.id: recordings[e.id][1] for e in events if e.id in recordings},
        batch=batch,
        send_at=slots[batch] if slots else None,
        claimed_at=claimed_at,
    )


def _update(session: Session, ids: Collection[int], **values: Any) -> None:
    for part in _parts(list(ids)):
        session.execute(
            update(Call)
            .where(Call.id.in_(part))
            .values(**values)
            .execution_options(synchronize_session=False)
        )


IN_MOST = 5_000  # ids in one IN list: a round may take 16 portals × 500 calls, and SQLite takes
# at most 32,766 bound values in a statement


def _parts(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), IN_MOST):
        yield ids[start : start + IN_MOST]


def extend_lease(
    db: Database, ids: Iterable[int], *, worker_id: str, now: datetime, lease: float
) -> set[int]:
    """Renew our lease on these calls right before sending them; return those still ours (a
    call another worker took over after our lease ran out must not be sent by us too)."""
    wanted = list(ids)
    if not wanted:
        return set()
    with db.write() as session:
        return renew_leases(session, wanted, worker_id=worker_id, now=now, lease=lease)


def renew_leases(
    session: Session, ids: Collection[int], *, worker_id: str, now: datetime, lease: float
) -> set[int]:
    """extend_lease inside the caller's write transaction (the worker books its throttle slots
    in the same one): one UPDATE … RETURNING of the calls still leased to us."""
    if not ids:
        return set()
    return set(
        session.scalars(
            update(Call)
            .where(
                Call.id.in_(list(ids)),
                Call.state == CallState.DELIVERING,
                Call.leased_by == worker_id,
            )
            .values(lease_until=now + timedelta(seconds=lease))
            .returning(Call.id)
            .execution_options(synchronize_session=False)
        )
    )


def record(
    db: Database,
    outcomes: Mapping[int, CallOutcome],
    claimed: Mapping[int, Claimed],
    *,
    worker_id: str,
    now: datetime,
) -> int:
    """Write each call's outcome in one transaction; return how many calls were written.

    Events change only from `queued` (a repeated or late answer never undoes a delivery). The
    call's own row is written only while we hold its lease; a worker that lost it (another took
    the call over) still records what Bitrix24 confirmed: delivered events and the CALL_ID. The
    call's new state follows from its events: something still queued → `queued` (due at once, or
    when a waiting event's time is up), else `failed` if an event failed, else `delivered`; and
    `queued` at once whenever an event arrived since the claim (`events_version` moved).
    The events' states are the claimed ones with this attempt's changes: whatever else changes
    an event (the intake, a download, a redelivery) moves `events_version` (event_added,
    requeue), and then the call is queued whatever its events say. A handful of statements
    whatever the number of calls: one read of the calls (locked on PostgreSQL), then UPDATEs by
    primary key grouped by what they set (_update_by_id)."""
    if not outcomes:
        return 0
    with db.write() as session:
        query = (
            select(
                Call.id,
                Call.state,
                Call.leased_by,
                Call.events_version,
                Call.bitrix_call_id,
                Call.register_sent_at,
            )
            .where(Call.id.in_(list(outcomes)))
            .order_by(Call.id)
        )
        if not db.is_sqlite:
            query = query.with_for_update()
        current = {row.id: row for row in session.execute(query)}
        ours = {
            call_id
            for call_id, row in current.items()
            if row.state == CallState.DELIVERING and row.leased_by == worker_id
        }
        for call_id in set(current) - ours:
            log.warning("lease lost; only confirmed facts kept", call=call_id, worker=worker_id)
        _write_events(session, outcomes, ours, now)
        rows = []
        for call_id in sorted(current):
            outcome, row = outcomes[call_id], current[call_id]
            if call_id in ours:
                call = claimed[call_id]
                moved = row.events_version != call.events_version
                rows.append(_call_row(row, outcome, _states_after(call, outcome), moved, now))
            elif outcome.bitrix_call_id and not row.bitrix_call_id:
                rows.append({"id": call_id, "bitrix_call_id": outcome.bitrix_call_id})
        _update_by_id(session, CALLS, rows)
    return len(ours)


CALLS = Call.__table__
EVENTS = CallEvent.__table__


def _write_events(
    session: Session, outcomes: Mapping[int, CallOutcome], ours: Collection[int], now: datetime
) -> None:
    """UPDATEs by primary key, each only from `queued`; a call no longer ours gets only its
    confirmed deliveries."""
    rows = [
        {
            "id": event_id,
            "state": change.state,
            "note": change.note,
            "result": change.result,
            "error_code": change.error_code,
            "error": change.error,
            "delivered_at": now if change.state == EventState.DELIVERED else None,
        }
        for call_id, outcome in outcomes.items()
        for event_id, change in outcome.events.items()
        if call_id in ours or change.state == EventState.DELIVERED
    ]
    _update_by_id(session, EVENTS, rows, EVENTS.c.state == EventState.QUEUED)


def _update_by_id(
    session: Session, table: Any, rows: Sequence[Mapping[str, Any]], *where: Any
) -> None:
    """`UPDATE table SET … WHERE id = :id [AND where]` for each row (its "id" and the columns it
    sets), in as few statements as the rows allow. Rows setting the same columns form a group;
    on PostgreSQL the whole group is one statement (`_update_unnested`); on SQLite the group's
    columns that differ from row to row go in one executemany, and those with one value in every
    row in one `UPDATE … WHERE id IN (…)`, so each such value is converted once, not per row —
    unless there is a `where`: then every column goes in the executemany, since its rows may
    no longer meet `where` once it has run (an event's state: tests/delivery/test_record_values).
    Core statements, not the ORM's unit of work: a record is on every batch's path."""
    postgres = session.get_bind().dialect.name == "postgresql"
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(key for key in row if key != "id")), []).append(row)
    for keys, group in groups.items():
        first = group[0]
        same = {key: first[key] for key in keys if all(r[key] == first[key] for r in group)}
        if where and not postgres:
            same = {}  # one statement: the first would move rows out of `where` (their state)
        varying = [key for key in keys if key not in same]
        if varying and postgres:
            _update_unnested(session, table, group, varying, same, where)
            continue
        if varying:
            statement = (
                update(table)
                .where(table.c.id == bindparam("b_id"), *where)
                .values({key: bindparam(f"b_{key}") for key in varying})
            )
            params = [
                {"b_id": row["id"], **{f"b_{key}": row[key] for key in varying}} for row in group
            ]
            session.execute(statement, params)
        if same:
            ids = [row["id"] for row in group]
            session.execute(update(table).where(table.c.id.in_(ids), *where).values(same))


def _update_unnested(
    session: Session,
    table: Any,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    same: Mapping[str, Any],
    where: Sequence[Any],
) -> None:
    """PostgreSQL: a group in one `UPDATE … SET <same values> FROM (SELECT unnest(:id),
    unnest(:col) …)`: the varying columns as one array each (a JSON column as one JSON array,
    expanded by json_array_elements: psycopg quotes each JSON text of an array in Python,
    character class by character class). psycopg's executemany runs one statement per row
    (Python per row, and a single-row UPDATE each on the server), and a second UPDATE for the
    shared values wrote every row twice (each version with its index entries: `calls` has
    eight); for a share of 500 calls that was most of the record's time. The statement's shape
    depends only on the columns, so it is compiled once."""
    names = ("id", *keys)
    values = select(*(_unnest(table.c[name]) for name in names)).subquery("v")
    statement = (
        update(table)
        .where(table.c.id == values.c.id, *where)
        .values({**{key: values.c[key] for key in keys}, **same})
    )
    session.execute(statement, {f"u_{name}": [row[name] for row in rows] for name in names})


def _unnest(column: Any) -> Any:
    """One row per element of the list bound as `u_<column>`, named like the column (a JSON
    column's list goes as one JSON array)."""
    name = f"u_{column.key}"
    if isinstance(column.type, JSON):
        return func.json_array_elements(bindparam(name, type_=PG_JSON)).label(column.key)
    # VARCHAR[] rather than VARCHAR(n)[]: that cast cuts a longer text silently, while the
    # column refuses it (as a single-row UPDATE did)
    item = String() if type(column.type) is String else column.type
    return func.unnest(bindparam(name, type_=ARRAY(item))).label(column.key)


def _states_after(call: Claimed, outcome: CallOutcome) -> list[tuple[str, str | None, str | None]]:
    """Each event's (state, error_code, error) once this attempt's changes are written (only
    queued events change)."""
    states = []
    for event in call.events:
        change = outcome.events.get(event.id) if event.state == EventState.QUEUED else None
        if change is not None:
            states.append((change.state, change.error_code, change.error))
        else:
            states.append((event.state, event.error_code, event.error))
    return states


def _call_row(
    row: Any,
    outcome: CallOutcome,
    states: Sequence[tuple[str, str | None, str | None]],
    moved: bool,
    now: datetime,
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": row.id,
        "lease_until": None,
        "leased_by": None,
        "note": outcome.note,
        "updated_at": now,
    }
    if outcome.bitrix_call_id:
        values["bitrix_call_id"] = outcome.bitrix_call_id
    if outcome.crm is not None:
        values["crm_entity_type"], values["crm_entity_id"] = outcome.crm
    if outcome.shown_to is not None:
        values["shown_to"] = sorted(outcome.shown_to)
    if outcome.finished is not None:
        values.update(result=outcome.finished, delivered_at=now)
    if outcome.register_known:
        values.update(register_sent_at=None, register_user=None)
    elif outcome.register_sent_at is not None and row.register_sent_at is None:
        values.update(
            register_sent_at=outcome.register_sent_at, register_user=outcome.register_user
        )
    values.update(_next_state(outcome, states, moved=moved, now=now))
    return values


def _next_state(
    outcome: CallOutcome,
    states: Sequence[tuple[str, str | None, str | None]],
    *,
    moved: bool,
    now: datetime,
) -> dict[str, Any]:
    retry = outcome.retry
    if retry is not None:
        values: dict[str, Any] = {
            "state": CallState.QUEUED,
            "next_attempt_at": now if moved else retry.at,
            "error_code": retry.code,
            "error": retry.reason,
        }
        if retry.attempts is not None:
            values["attempts"] = retry.attempts
        if retry.use_fallback_user:
            values["use_fallback_user"] = True
        return values
    if moved or any(state == EventState.QUEUED for state, _, _ in states):
        at = now if moved or outcome.wait_until is None else outcome.wait_until
        return {"state": CallState.QUEUED, "next_attempt_at": at, "error_code": None, "error": None}
    failed = [(code, error) for state, code, error in states if state == EventState.FAILED]
    if failed:
        return {"state": CallState.FAILED, "error_code": failed[0][0], "error": failed[0][1]}
    return {"state": CallState.DELIVERED, "error_code": None, "error": None}


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
    event_ids: Collection[int] | None = None,
) -> list[str]:
    """Put failed events back in the outbox as if they had just arrived; return the public ids
    of their calls.

    In: `portal_id` (None: every portal), and optional filters on the calls: `public_ids`, the
    call's last `error_code`, `since` <= arrival (`created_at`) < `until` (aware datetimes); or
    `event_ids`: only these events (of the portal's calls). Only `failed` events of calls of
    portals that are not gone (uninstalled, deleted) move: to `queued`; their call becomes
    `queued`, due `now`, `attempts` 0 (a call being delivered right now keeps its lease and is
    queued again when the worker records it). Each change is conditional on the event still being
    failed, so two clicks or two commands at once never queue an event twice. `bitrix_call_id` is
    kept (a registered call is finished, not registered again), and a call that may have reached
    Bitrix24 (it has a `bitrix_call_id`, or its last error is one of MAY_HAVE_RUN) is marked
    OUTCOME_UNKNOWN, so the worker looks it up in voximplant.statistic.get before sending its
    finish (Claimed.unknown). The mark that a register's outcome is unknown is cleared: the admin
    chose to register it again. A failed recording of a requeued `record` event is downloaded
    anew (_requeue_recordings). `dry_run` changes nothing and returns the ids that would move.
    Raises ValueError when since >= until.
    """
    if since is not None and until is not None and since >= until:
        raise ValueError("since must be earlier than until")
    if (public_ids is not None and not public_ids) or (event_ids is not None and not event_ids):
        return []
    failed_events = _failed_events(portal_id, public_ids, error_code, since, until, event_ids)
    found = session.execute(
        select(CallEvent.id, Call.id, Call.public_id, CallEvent.error_code, CallEvent.kind)
        .join(Call, Call.id == CallEvent.call_id)
        .where(*failed_events)
        .order_by(Call.id, CallEvent.id)
    ).all()
    if dry_run or not found:
        return sorted({row.public_id for row in found})
    moved = session.scalars(
        update(CallEvent)
        .where(
            CallEvent.id.in_([row[0] for row in found]),
            CallEvent.state == EventState.FAILED,
        )
        .values(state=EventState.QUEUED, error_code=None, error=None, note=None)
        .returning(CallEvent.call_id)
        .execution_options(synchronize_session=False)
    )
    call_ids = sorted(set(moved))
    if not call_ids:
        return []
    if event_ids is not None:
        starts = {(row[1], row.error_code) for row in found if row.kind == EventKind.START}
        _requeue_dependents(session, {(call_id, code) for call_id, code in starts if code})
    records = [row[0] for row in found if row.kind == EventKind.RECORD and row[1] in call_ids]
    _requeue_recordings(session, records, now)
    _requeue_calls(session, call_ids, now)
    return sorted({row.public_id for row in found if row[1] in call_ids})


def _requeue_recordings(session: Session, event_ids: Sequence[int], now: datetime) -> None:
    """The failed downloads of requeued `record` events start anew, as if RECORD_URL had just
    arrived (recordings.py: attempts, their 24 hours and the call's 25 hours count from now).
    Only a download fails a recording, so each has its RECORD_URL."""
    if not event_ids:
        return
    session.execute(
        update(CallRecording)
        .where(
            CallRecording.event_id.in_(list(event_ids)),
            CallRecording.state == RecordingState.FAILED,
        )
        .values(
            state=RecordingState.FETCHING,
            attempts=0,
            next_attempt_at=now,
            lease_until=None,
            leased_by=None,
            error_code=None,
            error=None,
            created_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def _requeue_dependents(session: Session, failed_with: Collection[tuple[int, str]]) -> None:
    """Events that failed with a requeued start (lifecycle.failed_with_dependents gives them its
    code: a start that could not be registered fails the ring, answer and finish too) go back
    with it."""
    for call_id, code in failed_with:
        session.execute(
            update(CallEvent)
            .where(
                CallEvent.call_id == call_id,
                CallEvent.state == EventState.FAILED,
                CallEvent.error_code == code,
            )
            .values(state=EventState.QUEUED, error_code=None, error=None, note=None)
            .execution_options(synchronize_session=False)
        )


def _requeue_calls(session: Session, call_ids: Sequence[int], now: datetime) -> None:
    may_have_run = or_(Call.bitrix_call_id.is_not(None), Call.error_code.in_(MAY_HAVE_RUN))
    leased = Call.state == CallState.DELIVERING
    session.execute(
        update(Call)
        .where(Call.id.in_(list(call_ids)))
        .values(
            state=case((leased, CallState.DELIVERING), else_=CallState.QUEUED),
            next_attempt_at=case((leased, Call.next_attempt_at), else_=now),
            events_version=Call.events_version + 1,
            attempts=case((leased, Call.attempts), else_=0),
            register_sent_at=None,
            register_user=None,
            error_code=case((leased, Call.error_code), (may_have_run, OUTCOME_UNKNOWN), else_=None),
            error=case((leased, Call.error), (may_have_run, CHECK_FIRST), else_=None),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def _failed_events(
    portal_id: int | None,
    public_ids: Collection[str] | None,
    error_code: str | None,
    since: datetime | None,
    until: datetime | None,
    event_ids: Collection[int] | None,
) -> list[ColumnElement[bool]]:
    gone = select(Portal.id).where(Portal.status.in_(GONE))
    conditions = [CallEvent.state == EventState.FAILED, Call.portal_id.not_in(gone)]
    if event_ids is None:
        conditions.append(Call.state == CallState.FAILED)
    else:
        conditions.append(CallEvent.id.in_(list(event_ids)))
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
    when the whole `lease` runs out. The lease was claimed or renewed right before sending
    (extend_lease; a claim at most FRESH_CLAIM seconds before), so it was sent no later than
    `lease_until - lease + FRESH_CLAIM`. Worker ids are `host:pid:nonce`
    (worker.new_worker_id); a pid reused by another process only keeps a lease until it runs
    out, as before. Returns how many calls were released."""
    prefix = f"{hostname}:"
    shift = timedelta(seconds=lease - running_limit - FRESH_CLAIM)
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
