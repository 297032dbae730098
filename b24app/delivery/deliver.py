"""Delivering one portal's claimed calls: look up the uncertain ones, send the rest, record.

1. Calls whose previous attempt has an unknown outcome (retry.ENDINGS: an answer we could not
   read, a connection cut after sending, a timeout, a worker that stopped) are looked up first,
   all in one batch of voximplant.statistic.get: one found finished is delivered (its result is
   the statistics record); the others are sent again. finish is not idempotent, so this is what
   keeps a call from being finished twice.
2. The calls to send become one batch (register + finish, or finish), sent with
   the portal's client (`PortalClient.batch`); each command's own answer decides its call's outcome.
3. A request that failed for the portal as a whole pauses the portal (portal_health.py): its
   calls wait, spending no attempt, until a probe finds it answering again.
4. All outcomes are written in one transaction (outbox.record).

The look-up happens as soon as the portal answers again, without waiting out the 60 s a cloud
request may still run after our timeout (limits.md). What the documentation guarantees makes that
safe: a late finish and our repeated one cannot both succeed (the second answers "Call is not
found", which sends the call to another look-up, for_command `after_unknown`), and a repeated
register with the same EXTERNAL_CALL_ID (= PBX_CALL_ID), PHONE_NUMBER, TYPE, user and LINE_NUMBER
within 30 minutes returns the CALL_ID of the first (register page, "Features of
Re-registration"), so a late register and ours name one call. What is inferred, not documented:
that this holds for a registration already finished; the look-up before resending is what
covers that case when the first attempt had completed.

Nothing raises out of here: whatever goes wrong becomes the calls' outcome (retry.py says
which), and an unforeseen error leaves the calls leased, to be taken over and looked up once the
lease runs out.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog
from flask import Flask

from b24app.bitrix.client import BatchResult
from b24app.db import Database
from b24app.delivery import batching, metrics, outbox, portal_health, retry
from b24app.delivery.batching import Answer, Commands
from b24app.delivery.outbox import Claimed, Delivered, Failed, Outcome, Retry
from b24app.delivery.retry import OUTCOME_UNKNOWN, USER_NOT_FOUND, RetryPolicy, Verdict
from b24app.models import Portal, PortalStatus, utcnow
from b24app.portals import currencies, mapping
from b24app.portals.settings import Preferences
from b24app.wiring import store_of


@dataclass(frozen=True)
class PortalView:
    member_id: str
    status: str
    prefs: Preferences
    extensions: dict[str, int]
    currencies_fetched_at: datetime | None


class Portal24(Protocol):
    """What delivery asks of a portal (bitrix/client.PortalClient has it; tests may hand in an
    in-process fake through Context.clients)."""

    def batch(self, commands: Commands, *, halt: bool = False) -> BatchResult: ...

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
    _clients: dict[str, Portal24] = field(default_factory=dict)
    _clients_lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, member_id: str) -> Portal24:
        """One client per portal for the worker's life, so its HTTPS connections are reused
        (a worker has at most one batch per portal in flight)."""
        with self._clients_lock:
            if member_id not in self._clients:
                make = self.clients or store_of(self.app).client
                self._clients[member_id] = make(member_id)
            return self._clients[member_id]


def load_portal(db: Database, portal_id: int) -> PortalView | None:
    with db.read() as session:
        portal = session.get(Portal, portal_id)
        if portal is None:
            return None
        s = portal.settings
        prefs = Preferences.of(s)
        return PortalView(
            member_id=portal.member_id,
            status=portal.status,
            prefs=prefs,
            extensions=mapping.load(session, portal),
            currencies_fetched_at=s.currencies_fetched_at if s else None,
        )


@dataclass
class PortalDelivery:
    """One portal's share of a round."""

    ctx: Context
    portal_id: int
    calls: Sequence[Claimed]
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    reached: bool = False  # Bitrix24 answered a batch
    sent_at: datetime | None = None  # when the last batch request went out

    def __post_init__(self) -> None:
        self.was_unknown = {call.id for call in self.calls if call.unknown}
        self.unresolved = set(self.was_unknown)  # unknown and not yet looked up

    def run(self) -> Counter[str]:
        started = time.monotonic()
        view = load_portal(self.ctx.db, self.portal_id)
        if view is None:
            return Counter()  # the portal row is gone, and its calls with it (cascade)
        with structlog.contextvars.bound_contextvars(member_id=view.member_id):
            return self._run(view, started)

    def _run(self, view: PortalView, started: float) -> Counter[str]:
        client = self.ctx.client(view.member_id)
        to_send = [call for call in self.calls if not call.unknown]
        unknown = [call for call in self.calls if call.unknown]
        if unknown:
            to_send = self._look_up(client, view, unknown, to_send)
        if to_send:
            self._send(client, view, to_send)
        outbox.record(
            self.ctx.db, self.outcomes, worker_id=self.ctx.worker_id, now=self.ctx.clock()
        )
        counts = self._report(view, time.monotonic() - started)
        self._refresh_currencies(view)
        return counts

    # --- 1. look up calls with an unknown outcome ------------------------------------------------
    def _look_up(
        self, client: Portal24, view: PortalView, unknown: list[Claimed], fresh: list[Claimed]
    ) -> list[Claimed]:
        """Settle the unknown calls found finished; return the calls to send now."""
        commands = batching.lookup_commands(unknown)
        if not commands:  # nothing to look them up by (the intake always gives an id)
            self.unresolved.clear()
            return [*fresh, *unknown]
        try:
            batch = self._batch(client, view, commands, "lookup", len(unknown))
        except Exception as error:  # every failure becomes the calls' outcome
            verdict = self._failed_request(error)
            for call in unknown:  # still unknown (self.unresolved), whatever the look-up met
                self.outcomes[call.id] = self._settle(call, verdict)
            for call in fresh:
                self.outcomes[call.id] = self._settle(call, retry.not_sent(verdict))
            return []
        to_send = list(fresh)
        answers = batching.found(unknown, batch)
        for call in unknown:
            look = answers[call.id]
            if look.record is not None:
                call_id = look.record.get("CALL_ID")
                self.outcomes[call.id] = Delivered(look.record, call_id or call.call_id)
            elif look.error is not None:
                reason = (
                    "Could not read Bitrix24's call statistics to check whether the call was "
                    f"finished ({look.error.code}: {look.error.description})."
                )
                self.outcomes[call.id] = self._settle(
                    call, Verdict("retry", OUTCOME_UNKNOWN, reason, unknown=True)
                )
            else:
                self.unresolved.discard(call.id)
                to_send.append(call)
        return to_send

    # --- 2. send ---------------------------------------------------------------------------------
    def _send(self, client: Portal24, view: PortalView, calls: list[Claimed]) -> None:
        plan = batching.plan(calls, view.prefs, view.extensions.get)
        for call_id, problem in plan.refused.items():
            self.outcomes[call_id] = Failed(problem.code, problem.message)
        ours = outbox.extend_lease(
            self.ctx.db,
            [call.id for call in plan.calls],
            worker_id=self.ctx.worker_id,
            now=self.ctx.clock(),
            lease=self.ctx.lease,
        )
        sendable = [call for call in plan.calls if call.id in ours]
        commands = {
            key: command
            for key, command in plan.commands.items()
            if int(key[1:]) in ours  # keys are r<id> and f<id>
        }
        if not commands:
            return
        try:
            batch = self._batch(client, view, commands, "deliver", len(sendable))
        except Exception as error:  # every failure becomes the calls' outcome
            verdict = self._failed_request(error)
            for call in sendable:
                self.outcomes[call.id] = self._settle(call, verdict)
            return
        for call in sendable:
            self.outcomes[call.id] = self._outcome(call, batching.answer(call, batch), view)

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

    def _outcome(self, call: Claimed, answer: Answer, view: PortalView) -> Outcome:
        if answer.result is not None:
            call_id = answer.result.get("CALL_ID") or answer.registered_call_id or call.call_id
            return Delivered(answer.result, call_id, _fallback_note(call, view))
        assert answer.error is not None
        after_unknown = call.id in self.was_unknown and answer.failed_step == "finish"
        verdict = retry.for_command(answer.error, after_unknown=after_unknown)
        if verdict.code == USER_NOT_FOUND:
            return self._user_not_found(call, verdict, view, answer.registered_call_id)
        return self._settle(call, verdict, bitrix_call_id=answer.registered_call_id)

    def _user_not_found(
        self, call: Claimed, verdict: Verdict, view: PortalView, bitrix_call_id: str | None
    ) -> Outcome:
        """A departed employee: send the call to the portal's fallback employee, at once."""
        fallback = view.prefs.fallback_user_id
        if fallback and not call.use_fallback_user:
            reason = (
                f"Bitrix24 has no active employee for {_named_user(call)}; sending the call to "
                f"the fallback employee (user {fallback})."
            )
            return Retry(
                USER_NOT_FOUND,
                reason,
                self.ctx.clock(),
                bitrix_call_id,
                attempts=call.attempts - 1,
                use_fallback_user=True,
            )
        if fallback:
            words = (
                f"Neither {_named_user(call)} nor the fallback employee (user {fallback}) is an "
                "active employee in Bitrix24; choose an active fallback employee on the settings "
                "page, then deliver the call again."
            )
            return Failed(USER_NOT_FOUND, words, bitrix_call_id)
        return Failed(USER_NOT_FOUND, verdict.reason, bitrix_call_id)

    def _batch(
        self, client: Portal24, view: PortalView, commands: Commands, purpose: str, calls: int
    ) -> BatchResult:
        started = time.monotonic()
        self.sent_at = self.ctx.clock()
        outcome = "ok"
        try:
            result = client.batch(commands)
            self.reached = True
            return result
        except Exception as error:
            outcome = getattr(error, "code", type(error).__name__)
            raise
        finally:
            metrics.batch_sent(
                member_id=view.member_id,
                purpose=purpose,
                calls=calls,
                commands=len(commands),
                outcome=outcome,
                seconds=time.monotonic() - started,
            )

    # --- outcomes --------------------------------------------------------------------------------
    def _settle(
        self, call: Claimed, verdict: Verdict, bitrix_call_id: str | None = None
    ) -> Outcome:
        """A failed try: fail the call, or schedule the next try (or give up on it)."""
        policy = self.ctx.policy
        now = self.ctx.clock()
        if verdict.kind == "fail":
            return Failed(verdict.code, verdict.reason, bitrix_call_id)
        if retry.give_up(verdict, created_at=call.created_at, now=now, policy=policy):
            reason = retry.gave_up_reason(
                verdict, attempts=call.attempts, created_at=call.created_at, now=now
            )
            return Failed(verdict.code, reason, bitrix_call_id)
        at = retry.next_attempt(
            verdict, attempts=call.attempts, now=now, policy=policy, sent_at=self.sent_at
        )
        unknown = verdict.unknown or call.id in self.unresolved
        code = OUTCOME_UNKNOWN if unknown else verdict.code
        attempts = call.attempts if verdict.counts else call.attempts - 1
        return Retry(code, verdict.reason, at, bitrix_call_id, attempts=attempts)

    def _report(self, view: PortalView, seconds: float) -> Counter[str]:
        counts: Counter[str] = Counter()
        now = self.ctx.clock()
        by_id = {call.id: call for call in self.calls}
        for call_id, outcome in self.outcomes.items():
            if isinstance(outcome, Delivered):
                counts["delivered"] += 1
                call = by_id[call_id]
                latency = (now - call.created_at).total_seconds()
                metrics.call_delivered(call=call.public_id, latency=latency)
            elif isinstance(outcome, Failed):
                counts["failed"] += 1
                metrics.call_failed(call=by_id[call_id].public_id, code=outcome.code)
            else:
                counts["retrying"] += 1
                metrics.call_retried(call=by_id[call_id].public_id, code=outcome.code)
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


def _named_user(call: Claimed) -> str:
    """How the call named its employee, for the admin's words."""
    if call.request.get("USER_ID"):
        return f"USER_ID {call.request['USER_ID']}"
    if call.request.get("USER_PHONE_INNER"):
        return f"extension {call.request['USER_PHONE_INNER']}"
    return "the call's employee"


def _fallback_note(call: Claimed, view: PortalView) -> str | None:
    if not call.use_fallback_user:
        return None
    return (
        f"Delivered to the fallback employee (user {view.prefs.fallback_user_id}): Bitrix24 has "
        f"no active employee for {_named_user(call)}."
    )
