"""Delivering one portal's claimed calls: look up the uncertain ones, send the rest, record.

1. Calls whose previous attempt has an unknown outcome (retry.ENDINGS: an answer we could not
   read, a connection cut after sending, a timeout, a worker that stopped) and whose finish is
   still to be sent are looked up first, all in one batch of voximplant.statistic.get: one found
   finished has its finish (and the card events before it) settled, the others are sent again.
   finish is not idempotent, so this is what keeps a call from being finished twice.
2. Each call's queued events become commands in the call's order (lifecycle.plan: register,
   show, hide, finish), all calls in one batch (`PortalClient.batch`); each command's own answer
   decides its event's outcome (lifecycle.settle, retry.for_command). A register carrying a
   LINE_NUMBER the portal is not known to have is preceded in that batch by the line's add
   (external_lines.py), whose answer changes nothing for the call.
3. Recordings of finished calls are attached, one request each (recordings.attach), and their
   audio deleted.
4. A request that failed for the portal as a whole pauses the portal (portal_health.py): its
   calls wait, spending no attempt, until a probe finds it answering again.
5. All outcomes are written in one transaction (outbox.record).

A portal's round may hold several batches (outbox.claim_round numbers them in Claimed.batch
and books a throttle slot for each in the claim's transaction): they are planned together,
their leases renewed in one write (unless the claim is fresh), and sent side by side, each
batch from its own thread of the worker's request pool (Context.send_pool), each at its booked
slot. Each call is in exactly one of them, so a call's own commands still go in one request, in
the call's order.

The look-up happens as soon as the portal answers again, without waiting out the 60 s a cloud
request may still run after our timeout (limits.md), except for requests that may still be
running (retry.RUNNING_LIMIT). What the documentation guarantees makes a repeat safe otherwise:
a late finish and our repeated one cannot both succeed (the second answers "Call is not found",
which sends the call to another look-up, for_command `after_unknown`); a repeated register with
the same key fields within 30 minutes returns the CALL_ID of the first (lifecycle.py says why ours
are the same, and refuses to repeat one later than that); show and hide only set who sees the
card; attachRecord replaces an earlier recording (its page).

Nothing raises out of here: whatever goes wrong becomes the calls' outcome (retry.py says
which), and an unforeseen error leaves the calls leased, to be taken over and looked up once the
lease runs out.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import structlog
from flask import Flask
from sqlalchemy.orm import joinedload

from b24app.bitrix.client import BatchResult, PortalState
from b24app.db import Database
from b24app.delivery import batching, lifecycle, metrics, outbox, portal_health, recordings, retry
from b24app.delivery.batching import MAX_COMMANDS, Commands
from b24app.delivery.external_lines import BatchLines, KnownLines
from b24app.delivery.lifecycle import Change, Plan, Step
from b24app.delivery.outbox import CallOutcome, Claimed, Retry
from b24app.delivery.retry import OUTCOME_UNKNOWN, USER_NOT_FOUND, RetryPolicy, Verdict
from b24app.models import CallRecording, EventKind, EventState, Portal, PortalStatus, utcnow
from b24app.portal_status import GONE
from b24app.portals import currencies, mapping
from b24app.portals.settings import Preferences
from b24app.portals.store import InstallationStore
from b24app.wiring import store_of


@dataclass(frozen=True)
class PortalView:
    member_id: str
    status: str
    prefs: Preferences
    extensions: dict[str, int]
    currencies_fetched_at: datetime | None
    state: PortalState | None = None  # what the client needs (tokens), read in the same read


class Portal24(Protocol):
    """What delivery asks of a portal (bitrix/client.PortalClient has it; tests may hand in an
    in-process fake through Context.clients)."""

    def batch(
        self,
        commands: Commands,
        *,
        halt: bool = False,
        state: PortalState | None = None,
        send_at: float | None = None,
    ) -> BatchResult: ...

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def upload(self, url: str, field: str, filename: str, data: bytes) -> dict[str, Any]: ...

    def probe(self, *, timeout: float, revive: tuple[str, ...] = ()) -> dict[str, Any]: ...


@dataclass
class Context:
    """What every portal delivery of one worker shares."""

    app: Flask
    db: Database
    worker_id: str
    lease: float
    policy: RetryPolicy
    currencies_due: Callable[[str], bool] = lambda _member_id: False
    clock: Callable[[], datetime] = utcnow
    clients: Callable[[str], Portal24] | None = None  # member_id → client; default: the store's
    send_pool: Executor | None = None  # sends a round's further batches (None: one by one)
    _clients: dict[str, Portal24] = field(default_factory=dict)
    _clients_lock: threading.Lock = field(default_factory=threading.Lock)
    # member_id → extension → (Bitrix24 user id or None, when asked): profiles.py
    profiles: dict[str, dict[str, tuple[int | None, float]]] = field(default_factory=dict)
    lines: KnownLines = field(default_factory=KnownLines)  # each portal's known line numbers

    def client(self, member_id: str) -> Portal24:
        """One client per portal for the worker's life, so its HTTPS connections are reused
        (its session keeps a connection per batch in flight, safety.POOL_SIZE)."""
        with self._clients_lock:
            if member_id not in self._clients:
                make = self.clients or store_of(self.app).client
                self._clients[member_id] = make(member_id)
            return self._clients[member_id]


def load_portal(
    db: Database,
    portal_id: int,
    store: InstallationStore | None = None,
    *,
    lines: KnownLines | None = None,
    now: datetime | None = None,
) -> PortalView | None:
    """The portal as delivery needs it, in one read: the portal with its settings (one
    statement), the extension mapping and, with the installation `store`, the client's state and
    decrypted tokens (so the batches' requests do not read them again); with `lines`, its line
    numbers too when this worker's read of them is older than their TTL (at `now`). None if the
    portal row is gone."""
    with db.read() as session:
        portal = session.get(Portal, portal_id, options=[joinedload(Portal.settings)])
        if portal is None:
            return None
        s = portal.settings
        prefs = Preferences.of(s)
        if lines is not None:
            lines.read_if_stale(session, portal_id, now or utcnow())
        return PortalView(
            member_id=portal.member_id,
            status=portal.status,
            prefs=prefs,
            extensions=mapping.load(session, portal),
            currencies_fetched_at=s.currencies_fetched_at if s else None,
            state=store.state_of(portal) if store is not None else None,
        )


@dataclass
class _Batch:
    """One batch request of a portal's round: its calls and their plans, then its answer."""

    calls: list[Claimed]
    plans: dict[int, Plan] = field(default_factory=dict)
    lines: BatchLines | None = None  # the line numbers this batch adds (external_lines.py)
    sending: list[Claimed] = field(default_factory=list)  # the calls whose commands it carries
    commands: Commands = field(default_factory=dict)
    send_at: float | None = None  # its booked throttle slot (epoch seconds)
    result: BatchResult | None = None
    error: Exception | None = None


@dataclass
class PortalDelivery:
    """One portal's share of a round."""

    ctx: Context
    portal_id: int
    calls: Sequence[Claimed]
    outcomes: dict[int, CallOutcome] = field(default_factory=dict)
    reached: bool = False  # Bitrix24 answered a batch
    sent_at: dict[int, datetime] = field(default_factory=dict)  # call → its last request's time

    def __post_init__(self) -> None:
        self.was_unknown = {call.id for call in self.calls if call.unknown}
        self.unresolved = set(self.was_unknown)  # unknown and not yet looked up
        self.outcomes = {call.id: CallOutcome() for call in self.calls}

    def run(self) -> Counter[str]:
        started = time.monotonic()
        view = load_portal(
            self.ctx.db,
            self.portal_id,
            store_of(self.ctx.app),
            lines=self.ctx.lines,
            now=self.ctx.clock(),
        )
        if view is None:
            return Counter()  # the portal row is gone, and its calls with it (cascade)
        with structlog.contextvars.bound_contextvars(member_id=view.member_id):
            return self._run(view, started)

    def _run(self, view: PortalView, started: float) -> Counter[str]:
        client = self.ctx.client(view.member_id)
        calls = list(self.calls)
        if view.status in GONE:  # nothing can reach Bitrix24 any more: the plain reason
            verdict = retry.for_status(view.status)
            for call in calls:
                self._fail_queued(call, verdict.code, verdict.reason)
            calls = []
        uncertain = [c for c in calls if c.unknown and c.finish_pending]
        self.unresolved &= {c.id for c in uncertain}
        if uncertain:
            calls = self._look_up(client, view, uncertain, calls)
        if calls:
            self._send(client, view, calls)
        outbox.record(
            self.ctx.db,
            self.outcomes,
            {call.id: call for call in self.calls},
            worker_id=self.ctx.worker_id,
            now=self.ctx.clock(),
        )
        counts = self._report(view, time.monotonic() - started)
        self._refresh_currencies(view)
        return counts

    # --- 1. look up calls with an unknown outcome ------------------------------------------------
    def _look_up(
        self, client: Portal24, view: PortalView, uncertain: list[Claimed], calls: list[Claimed]
    ) -> list[Claimed]:
        """Settle the calls found finished; return the calls to send now (those found with
        their finish marked delivered, so only their recordings remain). One batch of
        look-ups per 50 uncertain calls; if one fails, nothing of the round is sent."""
        by_id = {call.id: call for call in calls}
        for start in range(0, len(uncertain), MAX_COMMANDS):
            chunk = uncertain[start : start + MAX_COMMANDS]
            commands = batching.lookup_commands(chunk)
            if not commands:  # nothing to look them up by (the intake always gives an id)
                self.unresolved -= {call.id for call in chunk}
                continue
            try:
                batch = self._batch(client, view, commands, "lookup", chunk)
            except Exception as error:  # every failure becomes the calls' outcome
                verdict = self._failed_request(error)
                for call in by_id.values():
                    mine = verdict if call.id in self.unresolved else retry.not_sent(verdict)
                    self.outcomes[call.id].retry = self._settle(call, mine)
                return []
            answers = batching.found(chunk, batch)
            for call in chunk:
                look = answers[call.id]
                if look.record is not None:
                    by_id[call.id] = self._found_finished(call, look.record)
                elif look.error is not None:
                    reason = (
                        "Could not read Bitrix24's call statistics to check whether the call was "
                        f"finished ({look.error.code}: {look.error.description})."
                    )
                    verdict = Verdict("retry", OUTCOME_UNKNOWN, reason, unknown=True)
                    self.outcomes[call.id].retry = self._settle(call, verdict)
                    del by_id[call.id]
                else:
                    self.unresolved.discard(call.id)
        return list(by_id.values())

    def _found_finished(self, call: Claimed, record: dict[str, Any]) -> Claimed:
        """The statistics show the call finished: its finish and the card events queued before
        it are settled; what is left (recordings) goes on with the CALL_ID found."""
        outcome = self.outcomes[call.id]
        call_id = str(record.get("CALL_ID") or call.call_id or "") or None
        outcome.finished = record
        outcome.bitrix_call_id = call_id
        outcome.shown_to = set()
        outcome.register_known = True
        self.unresolved.discard(call.id)
        events = []
        for event in call.events:
            if event.state == EventState.QUEUED and event.kind != EventKind.RECORD:
                is_finish = event.kind == EventKind.FINISH
                outcome.events[event.id] = Change(
                    EventState.DELIVERED,
                    note=None if is_finish else FOUND_FINISHED,
                    result=record if is_finish else None,
                )
                event = replace(event, state=EventState.DELIVERED)
            events.append(event)
        return replace(call, events=tuple(events), bitrix_call_id=call_id, shown_to=())

    # --- 2. send ---------------------------------------------------------------------------------
    def _send(self, client: Portal24, view: PortalView, calls: list[Claimed]) -> None:
        """Plan the round's batches, renew the leases, send the batches side by side (each at
        the slot its claim booked), and settle each call by its batch's answer; then attach
        recordings."""
        groups: dict[int, list[Claimed]] = {}
        for call in calls:
            groups.setdefault(call.batch, []).append(call)
        lookup = self._users_by_extension(client, view, calls)
        batches = [self._plan(view, group, lookup) for group in groups.values()]
        wanted = [
            call.id
            for batch in batches
            for call in batch.calls
            if batch.plans[call.id].steps or batch.plans[call.id].attach
        ]
        ours = self._renew(wanted, batches)
        sends = [batch for batch in batches if batch.commands]
        self._send_all(client, view, sends)
        for batch in sends:
            if batch.error is not None:
                self._request_failed(batch.error, batch, ours)
                continue
            assert batch.result is not None
            for call in batch.sending:
                self._settle_answers(call, batch.plans[call.id], batch.result, view)
            self._learn_lines(view, batch)
        plans = {call_id: plan for batch in batches for call_id, plan in batch.plans.items()}
        failed = {call.id for batch in sends if batch.error is not None for call in batch.calls}
        attach = [call for call in calls if call.id in ours and call.id not in failed]
        self._attach_all(client, view, attach, plans)
        for call in calls:
            if call.id not in failed:
                self._waiting(call, plans[call.id])

    def _renew(self, wanted: list[int], batches: list[_Batch]) -> set[int]:
        """Renew our lease on the calls about to go (outbox.extend_lease: those another worker
        took over are not sent by us); one write, skipped while the claim is fresh
        (outbox.FRESH_CLAIM). Returns the calls still ours; fills each batch's `sending`,
        `commands` and `send_at` (the slot its claim booked, if any)."""
        fresh = min(outbox.FRESH_CLAIM, self.ctx.lease / 4)
        claimed = {call.id: call.claimed_at for call in self.calls}
        if all(time.monotonic() - claimed[call_id] < fresh for call_id in wanted):
            ours = set(wanted)
        else:
            ours = outbox.extend_lease(
                self.ctx.db,
                wanted,
                worker_id=self.ctx.worker_id,
                now=self.ctx.clock(),
                lease=self.ctx.lease,
            )
        for batch in batches:
            batch.sending = [c for c in batch.calls if c.id in ours and batch.plans[c.id].steps]
            batch.commands = {
                step.key: (step.method, step.params)
                for call in batch.sending
                for step in batch.plans[call.id].steps
            }
            batch.send_at = batch.calls[0].send_at
        return ours

    def _send_all(self, client: Portal24, view: PortalView, sends: list[_Batch]) -> None:
        """Send the batches side by side: all but the first from the worker's request pool
        (each in a copy of this thread's context: app, log fields), the first from this thread;
        return when every one has its answer or its error."""
        pool = self.ctx.send_pool
        if pool is None or len(sends) < 2:
            for batch in sends:
                self._send_one(client, view, batch)
            return
        futures = [
            pool.submit(contextvars.copy_context().run, self._send_one, client, view, batch)
            for batch in sends[1:]
        ]
        self._send_one(client, view, sends[0])
        for future in futures:
            future.result()

    def _send_one(self, client: Portal24, view: PortalView, batch: _Batch) -> None:
        try:
            batch.result = self._batch(
                client, view, batch.commands, "deliver", batch.sending, send_at=batch.send_at
            )
        except Exception as error:  # every failure becomes the calls' outcome
            batch.error = error

    def _plan(self, view: PortalView, calls: list[Claimed], lookup: lifecycle.UserLookup) -> _Batch:
        """One batch's plans: each call's commands within the batch's 50, and what is settled
        or refused without sending."""
        batch = _Batch(calls)
        budget = MAX_COMMANDS
        now = self.ctx.clock()
        batch.lines = lines = self.ctx.lines.for_batch(self.ctx.db, self.portal_id, now)
        for call in calls:
            planned = lifecycle.plan(
                call.facts,
                call.events,
                view.prefs,
                lookup,
                now=now,
                budget=budget,
                add_line=lines.wanted,
            )
            lines.planned(planned)
            budget -= planned.cost
            batch.plans[call.id] = planned
            outcome = self.outcomes[call.id]
            outcome.events.update(planned.settled)
            if planned.refused is not None:
                for event in call.events:
                    if event.state == EventState.QUEUED and event.id not in planned.settled:
                        outcome.events[event.id] = Change(
                            EventState.FAILED,
                            error_code=planned.refused.code,
                            error=planned.refused.message,
                        )
        return batch

    def _learn_lines(self, view: PortalView, batch: _Batch) -> None:
        """What the batch's line adds answered (external_lines.py); never fails the calls."""
        if batch.lines is None or batch.result is None:
            return
        try:
            store = store_of(self.ctx.app)
            plans = [batch.plans[call.id] for call in batch.sending]
            batch.lines.learn(store, view.member_id, plans, batch.result, self.ctx.clock())
        except Exception as error:  # a line is a comfort: the next register adds it again
            metrics.worker_error("lines", error)

    def _users_by_extension(
        self, client: Portal24, view: PortalView, calls: list[Claimed]
    ) -> lifecycle.UserLookup:
        """Extension → Bitrix24 user: the portal's mapping, else the employee whose profile has
        that inner number (UF_PHONE_INNER), asked once per PROFILE_TTL per worker in one batch
        of user.get. show and hide take only USER_ID (their pages), so a PBX that knows only
        extensions gets the card to the right screens without the admin importing a mapping."""
        known = self.ctx.profiles.setdefault(view.member_id, {})
        now = time.monotonic()
        wanted = sorted(
            {
                str(extension)
                for call in calls
                for event in call.events
                if event.state == EventState.QUEUED
                for extension in lifecycle.extensions_of(event.request)
                if str(extension) not in view.extensions
                and now - known.get(str(extension), (None, -PROFILE_TTL))[1] >= PROFILE_TTL
            }
        )[:MAX_COMMANDS]
        if wanted:
            self._ask_profiles(client, view, wanted, known, now)

        def lookup(extension: str) -> int | None:
            mapped = view.extensions.get(extension)
            return mapped if mapped else known.get(extension, (None, 0.0))[0]

        return lookup

    def _ask_profiles(
        self,
        client: Portal24,
        view: PortalView,
        extensions: list[str],
        known: dict[str, tuple[int | None, float]],
        now: float,
    ) -> None:
        commands: Commands = {
            f"u{n}": (
                "user.get",
                {"FILTER": {"UF_PHONE_INNER": ext, "ACTIVE": True}, "select": ["ID"]},
            )
            for n, ext in enumerate(extensions)
        }
        try:
            batch = self._batch(client, view, commands, "profiles", ())
        except Exception as error:  # the card is a comfort: the calls go on without it
            metrics.worker_error("profiles", error)
            return
        for n, extension in enumerate(extensions):
            rows = batch.result.get(f"u{n}")
            ids = [
                int(row["ID"])
                for row in (rows if isinstance(rows, list) else [])
                if isinstance(row, dict) and str(row.get("ID") or "").isdigit()
            ]
            known[extension] = (ids[0] if len(ids) == 1 else None, now)

    def _request_failed(self, error: Exception, batch: _Batch, ours: set[int]) -> None:
        """The batch request failed as a whole: its calls' outcome (retry.for_exception)."""
        verdict = self._failed_request(error)
        for call in batch.calls:
            planned = batch.plans[call.id]
            if call.id in ours and planned.steps:
                self.outcomes[call.id].retry = self._settle(call, verdict)
                if verdict.unknown and planned.registers:
                    outcome = self.outcomes[call.id]
                    outcome.register_sent_at = self.sent_at.get(call.id)
                    outcome.register_user = planned.register_user
            elif planned.attach:
                self.outcomes[call.id].retry = self._settle(call, retry.not_sent(verdict))

    def _settle_answers(
        self, call: Claimed, planned: Plan, batch: BatchResult, view: PortalView
    ) -> None:
        settled = lifecycle.settle(call.facts, planned, batch)
        outcome = self.outcomes[call.id]
        outcome.events.update(settled.changes)
        outcome.bitrix_call_id = settled.bitrix_call_id or outcome.bitrix_call_id
        outcome.crm = settled.crm or outcome.crm
        outcome.shown_to = settled.shown_to
        outcome.register_known = outcome.register_known or planned.registers
        if settled.finished is not None:
            outcome.finished = settled.finished
            outcome.note = _fallback_note(call, view)
        for step, error in settled.errors:
            self._command_failed(call, step, error, view)

    def _command_failed(self, call: Claimed, step: Step, error: Any, view: PortalView) -> None:
        outcome = self.outcomes[call.id]
        after_unknown = call.id in self.was_unknown and step.role == "finish"
        verdict = retry.for_command(error, after_unknown=after_unknown)
        if verdict.code == USER_NOT_FOUND and step.role in ("register", "finish"):
            verdict = self._user_not_found(call, verdict, view)
        if verdict.kind != "fail":
            if outcome.retry is None:
                outcome.retry = self._settle(call, verdict)
                if outcome.retry is not None and verdict.code == USER_NOT_FOUND:
                    outcome.retry = replace(outcome.retry, use_fallback_user=True)
            return
        if step.role == "register":
            changes = lifecycle.failed_with_dependents(
                call.events, step.event_id, verdict.code, verdict.reason
            )
            outcome.events.update(changes)
        else:
            outcome.events[step.event_id] = Change(
                EventState.FAILED, error_code=verdict.code, error=verdict.reason
            )

    def _user_not_found(self, call: Claimed, verdict: Verdict, view: PortalView) -> Verdict:
        """A departed employee: send the call to the portal's fallback employee, at once."""
        fallback = view.prefs.fallback_user_id
        if fallback and not call.use_fallback_user:
            reason = (
                f"Bitrix24 has no active employee for {_named_user(call)}; sending the call to "
                f"the fallback employee (user {fallback})."
            )
            return Verdict("wait", USER_NOT_FOUND, reason)
        if fallback:
            words = (
                f"Neither {_named_user(call)} nor the fallback employee (user {fallback}) is an "
                "active employee in Bitrix24; choose an active fallback employee on the settings "
                "page, then deliver the call again."
            )
            return Verdict("fail", USER_NOT_FOUND, words)
        return verdict

    # --- 3. recordings ---------------------------------------------------------------------------
    def _attach_all(
        self, client: Portal24, view: PortalView, calls: list[Claimed], plans: dict[int, Plan]
    ) -> None:
        for call in calls:
            outcome = self.outcomes[call.id]
            planned = plans[call.id]
            if not planned.attach or outcome.retry is not None:
                continue
            finish = call.event(EventKind.FINISH)
            done = finish is not None and (
                finish.state == EventState.DELIVERED
                or outcome.events.get(finish.id, Change(EventState.QUEUED)).state
                == EventState.DELIVERED
            )
            call_id = outcome.bitrix_call_id or call.call_id
            if not done or not call_id:
                continue
            for event_id in planned.attach:
                if not self._attach(client, view, call, event_id, call_id):
                    break

    def _attach(
        self, client: Portal24, view: PortalView, call: Claimed, event_id: int, call_id: str
    ) -> bool:
        with self.ctx.db.read() as session:
            row = session.get(CallRecording, event_id)
            if row is None or not row.content:
                return True
            session.expunge(row)
        started = time.monotonic()
        outcome = "ok"
        try:
            answer = recordings.attach(client, call_id=call_id, recording=row)
        except Exception as error:  # every failure becomes the call's outcome
            outcome = getattr(error, "code", type(error).__name__)
            verdict = retry.for_exception(error)
            if verdict.pause:
                self._failed_request(error)
            if verdict.kind == "fail" and not verdict.pause:
                self.outcomes[call.id].events[event_id] = Change(
                    EventState.FAILED, error_code=verdict.code, error=verdict.reason
                )
            else:  # attachRecord replaces an earlier record: sending it again is safe
                self.outcomes[call.id].retry = self._settle(call, replace(verdict, unknown=False))
            return False
        finally:
            metrics.batch_sent(
                member_id=view.member_id,
                purpose="record",
                calls=1,
                commands=1,
                outcome=outcome,
                seconds=time.monotonic() - started,
            )
        now = self.ctx.clock()
        with self.ctx.db.write() as session:
            recordings.attached(session, event_id, answer.get("FILE_ID"), now)
        self.outcomes[call.id].events[event_id] = Change(
            EventState.DELIVERED, note=lifecycle.ATTACHED, result=answer
        )
        return True

    def _waiting(self, call: Claimed, planned: Plan) -> None:
        """Events that wait (for a start, a finish, a download) keep their reason as a note; the
        call is due again when the first may stop waiting, or at once if something else is left
        (a batch that was full)."""
        outcome = self.outcomes[call.id]
        for event_id, words in planned.waiting.items():
            if event_id not in outcome.events:
                outcome.events[event_id] = Change(EventState.QUEUED, note=words)
        left = [
            e
            for e in call.events
            if e.state == EventState.QUEUED
            and outcome.events.get(e.id, Change(EventState.QUEUED)).state == EventState.QUEUED
        ]
        if left and not planned.cut and all(e.id in planned.waiting for e in left):
            outcome.wait_until = planned.wait_until

    # --- shared ----------------------------------------------------------------------------------
    def _failed_request(self, error: Exception) -> Verdict:
        """The verdict for a request that failed as a whole; pause the portal if it failed for
        the portal rather than for these calls."""
        verdict = retry.for_exception(error)
        if verdict.pause:
            portal_health.pause(
                self.ctx.db,
                self.portal_id,
                code=getattr(error, "code", type(error).__name__),
                reason=verdict.reason,
                now=self.ctx.clock(),
            )
        return verdict

    def _batch(
        self,
        client: Portal24,
        view: PortalView,
        commands: Commands,
        purpose: str,
        calls: Sequence[Claimed],
        *,
        send_at: float | None = None,
    ) -> BatchResult:
        """One batch request (with the round's portal state; at `send_at` if a slot was booked),
        timed and counted; notes when it went out for each of `calls`. Raises as the client."""
        started = time.monotonic()
        sent_at = self.ctx.clock()
        for call in calls:
            self.sent_at[call.id] = sent_at
        outcome = "ok"
        try:
            result = client.batch(commands, state=view.state, send_at=send_at)
            self.reached = True
            return result
        except Exception as error:
            outcome = getattr(error, "code", type(error).__name__)
            raise
        finally:
            metrics.batch_sent(
                member_id=view.member_id,
                purpose=purpose,
                calls=len(calls),
                commands=len(commands),
                outcome=outcome,
                seconds=time.monotonic() - started,
            )

    def _settle(self, call: Claimed, verdict: Verdict) -> Retry | None:
        """A try that did not go through: when the call is tried again; or None when retrying
        cannot help (or the call was retried for its own troubles past the retention period),
        and its queued events fail with the reason."""
        policy = self.ctx.policy
        now = self.ctx.clock()
        if verdict.kind == "fail":
            self._fail_queued(call, verdict.code, verdict.reason)
            return None
        if retry.give_up(verdict, created_at=call.created_at, now=now, policy=policy):
            reason = retry.gave_up_reason(
                verdict, attempts=call.attempts, created_at=call.created_at, now=now
            )
            self._fail_queued(call, verdict.code, reason)
            return None
        at = retry.next_attempt(
            verdict,
            attempts=call.attempts,
            now=now,
            policy=policy,
            sent_at=self.sent_at.get(call.id),
        )
        unknown = verdict.unknown or call.id in self.unresolved
        code = OUTCOME_UNKNOWN if unknown else verdict.code
        attempts = call.attempts if verdict.counts else call.attempts - 1
        return Retry(code, verdict.reason, at, attempts=attempts)

    def _fail_queued(self, call: Claimed, code: str, reason: str) -> None:
        outcome = self.outcomes[call.id]
        for event in call.events:
            if event.state == EventState.QUEUED and event.id not in outcome.events:
                outcome.events[event.id] = Change(EventState.FAILED, error_code=code, error=reason)

    def _report(self, view: PortalView, seconds: float) -> Counter[str]:
        counts: Counter[str] = Counter()
        now = self.ctx.clock()
        for call in self.calls:
            outcome = self.outcomes[call.id]
            failed = [c for c in outcome.events.values() if c.state == EventState.FAILED]
            if outcome.finished is not None:
                counts["delivered"] += 1
                latency = (now - call.created_at).total_seconds()
                metrics.call_delivered(call=call.public_id, latency=latency)
            if failed:
                counts["failed"] += 1
                metrics.call_failed(call=call.public_id, code=failed[0].error_code or "UNKNOWN")
            elif outcome.retry is not None:
                counts["retrying"] += 1
                metrics.call_retried(call=call.public_id, code=outcome.retry.code)
        metrics.calls_recorded(member_id=view.member_id, counts=counts, seconds=seconds)
        return counts

    def _refresh_currencies(self, view: PortalView) -> None:
        """Keep the intake's currency list fresh for portals we reach anyway: at most once per
        currencies.MAX_AGE per portal and worker, never per call."""
        if not self.reached or view.status != PortalStatus.ACTIVE:
            return
        fetched = view.currencies_fetched_at
        if fetched is not None and fetched > self.ctx.clock() - currencies.MAX_AGE:
            return
        if not self.ctx.currencies_due(view.member_id):
            return
        try:
            currencies.refresh_currencies(store_of(self.ctx.app), view.member_id)
        except Exception as error:  # a stale list is no reason to stop
            metrics.worker_error("currencies", error)


PROFILE_TTL = 600.0  # seconds an employee's inner number is believed (a new hire shows up after)
FOUND_FINISHED = "Settled: Bitrix24's statistics show the call already finished."


def _named_user(call: Claimed) -> str:
    """How the call named its employee, for the admin's words (the finish's, else the start's)."""
    for kind in (EventKind.FINISH, EventKind.START):
        event = call.event(kind)
        if event is not None and (
            event.request.get("USER_ID") or event.request.get("USER_PHONE_INNER")
        ):
            return lifecycle.user_for_words(event.request)
    return "the call's employee"


def _fallback_note(call: Claimed, view: PortalView) -> str | None:
    if not call.use_fallback_user:
        return None
    return (
        f"Delivered to the fallback employee (user {view.prefs.fallback_user_id}): Bitrix24 has "
        f"no active employee for {_named_user(call)}."
    )
