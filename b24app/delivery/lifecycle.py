"""One call's events in the call's order: what to send to Bitrix24 next, and what it answered.

A PBX reports a call as events (PRODUCT.md "The whole call"): start, ring, answer, finish, record,
which may arrive in any order, late or repeated. Bitrix24 must hear them in the call's order:
register, show, hide, finish, attachRecord (tutorials/telephony/index.md). `plan()` turns a
claimed call's events (all of them, delivered or not, as read at the claim) into the batch
commands still to send, in that order; `settle()` reads Bitrix24's answers back into each event's
outcome. Neither touches the database or the network (deliver.py does).

The rules, and why:
- CALL_ID. A call is registered once: from its start (EXTERNAL_CALL_ID = PBX_CALL_ID), else from
  a finish that carries PHONE_NUMBER/TYPE/CALL_START_DATE (the call was only reported at its end),
  unless the PBX gave Bitrix24's own CALL_ID (a call Bitrix24 registered, as in click-to-call).
  When the register travels in the same batch as later commands they name its CALL_ID as
  `$result[r<call>][CALL_ID]` (batch.md). Events that need a CALL_ID while none can be had wait
  for the start, at most START_WAIT, then fail with the reason.
- Repeating a register. A register whose outcome we do not know (timeout, cut connection) is sent
  again only within REREGISTER_SAFE of its first sending: the register page ("Features of
  Re-registration") returns the same CALL_ID for the same EXTERNAL_CALL_ID, PHONE_NUMBER, TYPE,
  user and LINE_NUMBER within 30 minutes, and the repeat sends exactly the same key fields: they
  come from the same stored event, and the employee the first named is kept with the call
  (`register_user`), since the fallback employee or the extension mapping it came from may have
  changed since (a fallback user because Bitrix24 refused the first's is a readable answer, so
  no repeat). Later than that, a start's register (sent alone, with the card shown) is not
  repeated: it could create a second call with a card that never closes, so the start fails with
  the reason and the admin decides ("deliver again" clears the mark). A register made from a
  finish always travels in the same batch as that finish, so the statistics look-up before any
  repeat (deliver.py) tells whether it ran: found → nothing is sent again; not found → the batch
  did not finish the call, and a repeat makes the one finished call (at worst beside a first
  registration that never finished: no card, SHOW=0, and no second lead, since that
  registration's lead matches the number).
- The card. The employees who should see the card follow from all events known: everyone rung,
  until someone answers; then only the one who answered last (a later answer by someone else is a
  transfer). show and hide send the difference from what Bitrix24 was last told
  (`calls.shown_to`). A ring that arrives after an answer and names the one who answered is that
  answer's own ring arriving late: it shows nothing (so a late ring never puts the card back on
  the others' screens); a ring naming others is a transfer ringing them, shown beside the current
  one. Users are Bitrix24 ids: USER_ID, or an extension through the portal's mapping (show and
  hide take only USER_ID); an extension nobody is mapped to is left out, with a note, and an
  answer by one leaves the card as it was (never hiding it from the one who answered).
- The finish's employee: the finish's own USER_ID/USER_PHONE_INNER, else the last answerer, else
  the start's, else the portal's fallback user (params.user_params).
- Recordings are attached (deliver.py, recordings.attach) once the finish is confirmed and the
  audio is stored; a record without a finish waits FINISH_WAIT for it.
- The line. A register carrying a LINE_NUMBER the portal is not known to have is preceded, in the
  same batch, by `telephony.externalLine.add` {NUMBER} (role "line", key `l<call>`), counted in
  the batch's room; whether to add is the caller's (`add_line`, deliver.py and external_lines.py),
  and its answer is read there too: `settle()` skips it, so its error never touches the call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from b24app.bitrix.client import BatchResult
from b24app.bitrix.errors import BitrixError
from b24app.delivery.params import (
    ParamsError,
    UserLookup,
    finish_params,
    register_params,
)
from b24app.models import EventKind, EventState, RecordingState
from b24app.portals.settings import Preferences, zone

REGISTER = "telephony.externalCall.register"
SHOW = "telephony.externalCall.show"
HIDE = "telephony.externalCall.hide"
FINISH = "telephony.externalCall.finish"
LINE_ADD = "telephony.externalLine.add"

START_WAIT = timedelta(hours=1)  # an event needing the CALL_ID waits this long for its start
FINISH_WAIT = timedelta(hours=24)  # a recording waits this long for its call's finish
# register page: the same key fields within 30 minutes return the same CALL_ID; 5 minutes spare
# for clocks and for the request's own time in flight.
REREGISTER_SAFE = timedelta(minutes=25)
# a finish with these registers its call (the intake also wants CALL_START_DATE with them; without
# one, the register says the event's arrival)
REGISTRATION_FIELDS = ("PHONE_NUMBER", "TYPE")

NEEDS_CALL_ID = (EventKind.RING, EventKind.ANSWER, EventKind.FINISH)
USER_FIELDS = ("USER_ID", "USER_PHONE_INNER")  # how a register names its employee


@dataclass(frozen=True)
class EventView:
    """One stored event, detached from the session."""

    id: int
    kind: str
    request: Mapping[str, Any]
    state: str
    created_at: datetime
    error: str | None = None
    error_code: str | None = None


@dataclass(frozen=True)
class CallFacts:
    """What delivery knows of a call besides its events (the `calls` row)."""

    id: int
    bitrix_call_id: str | None
    shown_to: tuple[int, ...]
    register_sent_at: datetime | None
    use_fallback_user: bool
    recordings: Mapping[int, str]  # record event id → its RecordingState
    # when the call started, as an instant worked out on arrival (delivery/call_index.py: an
    # offset-less CALL_START_DATE read in the portal's zone of that moment)
    started_at: datetime | None = None
    # the employee a register of unknown outcome named (USER_ID or USER_PHONE_INNER): its repeat
    # names the same one, whatever the fallback employee or the extension mapping says by now
    register_user: Mapping[str, Any] | None = None
    # record event id → since when its recording is being had (its download's start, anew when
    # delivered again): NO_AUDIO counts from then
    recordings_since: Mapping[int, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One batch command and the event it carries out."""

    key: str
    method: str
    params: dict[str, Any]
    event_id: int
    role: str  # "line", "register", "show", "hide" or "finish"
    users: tuple[int, ...] = ()  # show/hide: whom
    settles: bool = True  # its success delivers the event (not a register made from a finish)


@dataclass(frozen=True)
class Change:
    """An event's new state, decided by plan() (nothing to send) or by settle() (an answer)."""

    state: str
    note: str | None = None
    result: Any = None
    error_code: str | None = None
    error: str | None = None


@dataclass
class Plan:
    """A call's commands for this round, in the call's order, and what needs no sending."""

    steps: list[Step] = field(default_factory=list)
    settled: dict[int, Change] = field(default_factory=dict)
    waiting: dict[int, str] = field(default_factory=dict)  # event id → why it waits
    notes: dict[int, str] = field(default_factory=dict)  # event id → a note for its delivery
    wait_until: datetime | None = None  # when a waiting event must be looked at again
    attach: list[int] = field(default_factory=list)  # record events to attach after a finish
    finish_event: int | None = None
    registers: bool = False  # a register is among the steps
    cut: bool = False  # the batch had no room for everything: the rest goes next round
    refused: ParamsError | None = None  # the call cannot be sent as the portal is set up now

    @property
    def cost(self) -> int:
        return len(self.steps)

    @property
    def register_user(self) -> dict[str, Any] | None:
        """The employee its register names ({"USER_ID": n} or {"USER_PHONE_INNER": "…"}),
        None without a register."""
        for step in self.steps:
            if step.role == "register":
                return {k: v for k, v in step.params.items() if k in USER_FIELDS}
        return None


def dedupe_key(kind: str, request: Mapping[str, Any]) -> str:
    """ "" for the events a call has once; for ring and answer a digest of their fields, so the
    same employees again are a repeat and others are a new event (models.CallEvent)."""
    if kind not in (EventKind.RING, EventKind.ANSWER):
        return ""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


COMMANDS_PER_EVENT: dict[str, int] = {"start": 1, "ring": 1, "answer": 2}


def estimate_cost(events: Sequence[EventView]) -> int:
    """At most how many commands the call's queued events take (the claim fits calls into one
    batch by it): a register, one show per ring, a show and a hide per answer, the finish."""
    cost = 0
    for event in events:
        if event.state != EventState.QUEUED:
            continue
        cost += COMMANDS_PER_EVENT.get(event.kind, 0)
        if event.kind == EventKind.FINISH:
            cost += 1 + int(_registers(event))
    return max(cost, 1)


# --- planning ---------------------------------------------------------------------------------


@dataclass
class _Card:
    """The card's state as the plan goes: who is shown it, who answered last."""

    shown: set[int]
    answerer: int | None = None
    answered: bool = False


def plan(
    call: CallFacts,
    events: Sequence[EventView],
    prefs: Preferences,
    lookup: UserLookup,
    *,
    now: datetime,
    budget: int = 50,
    add_line: Callable[[str], bool] | None = None,
) -> Plan:
    """The commands still to send for this call (see the module docstring for the rules).

    In: the call's facts, ALL its events (any state, arrival order), the portal's preferences and
    extension lookup, the time, how many commands the batch still has room for (events that
    do not fit stay queued for the next round, and so does everything after them), and
    `add_line(LINE_NUMBER)`: whether a register carrying that line number is to be preceded by
    telephony.externalLine.add (None: never; the add and the register go together or the call
    waits for the next round). Out: a Plan; never raises (a setting that makes the call
    unsendable becomes `refused`)."""
    result = Plan()
    pending = [e for e in events if e.state == EventState.QUEUED]
    if not pending:
        return result
    if budget <= 0:
        return Plan(cut=True)  # the batch is full: next round
    start = _first(events, EventKind.START)
    finish = _first(events, EventKind.FINISH)
    try:
        call_id = _call_id(call, start, finish, events, prefs, lookup, now, result)
    except ParamsError as error:
        result.refused = error
        return result
    if call_id is None:
        _wait_for_start(pending, result, now)
        _plan_records(call, events, pending, finish, result, now)
        return result
    register = result.steps[0] if result.registers else None
    line = _line_step(call, register, add_line) if register and add_line else None
    if line is not None and budget < 2:
        return Plan(cut=True)  # the add and its register go next round, together
    if line is not None:
        result.steps.insert(0, line)
    card = _Card(shown=set(call.shown_to))
    if register is not None:  # the register in this batch opens the card (SHOW=1) for its user
        card.shown |= set(register.users)
    _replay_answers(events, card, lookup)
    finished = finish is not None and finish.state == EventState.DELIVERED
    for event in pending:
        if event.kind not in (EventKind.RING, EventKind.ANSWER) or event.id in result.settled:
            continue
        if len(result.steps) + 3 > budget:  # its show and hide, and room for the finish
            result.cut = True
            return result
        if finished:
            result.settled[event.id] = Change(EventState.DELIVERED, note=AFTER_FINISH)
        else:
            _plan_card(event, call_id, card, lookup, result)
    if finish is not None and finish.state == EventState.QUEUED and len(result.steps) < budget:
        try:
            params = finish_params(
                _finish_request(finish, start, events),
                prefs,
                lookup,
                call_id=call_id,
                fallback=call.use_fallback_user,
            )
        except ParamsError as error:
            result.refused = error
            return result
        result.steps.append(Step(f"e{finish.id}", FINISH, params, finish.id, "finish"))
        result.finish_event = finish.id
    elif finish is not None and finish.state == EventState.QUEUED:
        result.cut = True  # no room left for the finish in this batch
        return result
    _plan_records(call, events, pending, finish, result, now)
    return result


def _first(events: Sequence[EventView], kind: str) -> EventView | None:
    return next((e for e in events if e.kind == kind), None)


def _call_id(
    call: CallFacts,
    start: EventView | None,
    finish: EventView | None,
    events: Sequence[EventView],
    prefs: Preferences,
    lookup: UserLookup,
    now: datetime,
    result: Plan,
) -> str | None:
    """The CALL_ID later commands name (known, or a reference to a register in this batch), or
    None while nothing can register the call. Settles a start that needs no register, and fails
    the events that need a CALL_ID when the call cannot be registered any more."""
    known = call.bitrix_call_id or _given_call_id(start) or _given_call_id(finish)
    if known:
        if start is not None and start.state == EventState.QUEUED:
            note = _BOUND if _given_call_id(start) else ALREADY_REGISTERED
            result.settled[start.id] = Change(EventState.DELIVERED, note=note)
        return known
    source = start if start is not None else (finish if finish and _registers(finish) else None)
    if source is None:
        return None  # the events wait for a start (_wait_for_start)
    if source.state == EventState.FAILED:
        words = source.error or "its registration failed"
        result.settled.update(failed_with_dependents(events, source, "NOT_REGISTERED", words))
        return None
    late = call.register_sent_at is not None and now - call.register_sent_at > REREGISTER_SAFE
    if late and source.kind == EventKind.START:
        result.settled.update(
            failed_with_dependents(events, source, REGISTER_UNCERTAIN, REGISTER_UNCERTAIN_WORDS)
        )
        return None
    params = register_params(
        _register_request(source, prefs),
        prefs,
        lookup,
        fallback=call.use_fallback_user,
        started_at=call.started_at,
        user=call.register_user,  # a repeat: the register page matches it to the first by it
    )
    if source.request.get("CALL_START_DATE") is None:  # when we heard of it, in the portal's zone
        params["CALL_START_DATE"] = source.created_at.astimezone(zone(prefs.timezone)).isoformat()
    users = (params["USER_ID"],) if params.get("SHOW") and "USER_ID" in params else ()
    step = Step(f"r{call.id}", REGISTER, params, source.id, "register", users)
    result.steps.append(replace(step, settles=source.kind == EventKind.START))
    result.registers = True
    return f"$result[r{call.id}][CALL_ID]"


def _line_step(call: CallFacts, register: Step, add_line: Callable[[str], bool]) -> Step | None:
    """telephony.externalLine.add for the register's LINE_NUMBER, when the caller wants it."""
    number = str(register.params.get("LINE_NUMBER") or "").strip()
    if not number or not add_line(number):
        return None
    return Step(
        f"l{call.id}", LINE_ADD, {"NUMBER": number}, register.event_id, "line", settles=False
    )


_BOUND = "Nothing to register: the call carries Bitrix24's own CALL_ID."
ALREADY_REGISTERED = "Nothing to register: the call was registered already."
REGISTER_UNCERTAIN = "REGISTER_UNCERTAIN"
REGISTER_UNCERTAIN_WORDS = (
    "Bitrix24 may have registered this call more than 25 minutes ago without our learning its "
    "CALL_ID (the answer was lost). Registering it again now could make a second call, so it was "
    "not sent; deliver it again to register it anyway."
)


def _given_call_id(event: EventView | None) -> str | None:
    value = event.request.get("CALL_ID") if event is not None else None
    return str(value) if value else None


def _registers(event: EventView) -> bool:
    """A start always registers (unless it carries a CALL_ID); a finish only with the
    registration fields."""
    if event.request.get("CALL_ID"):
        return False
    if event.kind == EventKind.START:
        return True
    return all(event.request.get(name) is not None for name in REGISTRATION_FIELDS)


def _register_request(source: EventView, prefs: Preferences) -> dict[str, Any]:
    """The register's fields: a start's SHOW defaults to the portal's show_card; a finish's to
    0 (the call has ended: no card should pop up)."""
    request = dict(source.request)
    if request.get("SHOW") is None and source.kind == EventKind.START:
        request["SHOW"] = int(prefs.show_card)
    return request


def _wait_for_start(pending: Sequence[EventView], result: Plan, now: datetime) -> None:
    for event in pending:
        if event.kind not in NEEDS_CALL_ID or event.id in result.settled:
            continue
        deadline = event.created_at + START_WAIT
        if now >= deadline:
            result.settled[event.id] = Change(
                EventState.FAILED, error_code="NO_START", error=NO_START_WORDS
            )
        else:
            result.waiting[event.id] = WAITING_FOR_START
            _wake(result, deadline)


NO_START_WORDS = (
    "No start arrived for this PBX_CALL_ID within an hour, and no finish with PHONE_NUMBER, TYPE "
    "and CALL_START_DATE to register the call with; Bitrix24 has no call to show or finish."
)
WAITING_FOR_START = "Waiting for the call's start (its CALL_ID) before it can be sent."


def _wake(result: Plan, at: datetime) -> None:
    if result.wait_until is None or at < result.wait_until:
        result.wait_until = at


def _replay_answers(events: Sequence[EventView], card: _Card, lookup: UserLookup) -> None:
    """Who answered last among the answers already sent (the card's starting point)."""
    for event in events:
        if event.kind == EventKind.ANSWER and event.state == EventState.DELIVERED:
            answerer = _one_user(event.request, lookup)
            if answerer is not None:  # an unmapped answerer changed nothing (_plan_card)
                card.answered = True
                card.answerer = answerer


def _plan_card(
    event: EventView, call_id: str, card: _Card, lookup: UserLookup, result: Plan
) -> None:
    users, unmapped = _users(event.request, lookup)
    note = _unmapped_note(unmapped)
    if event.kind == EventKind.RING:
        if card.answered and card.answerer is not None and card.answerer in users:
            result.settled[event.id] = Change(EventState.DELIVERED, note=LATE_RING)
            return
        target = card.shown | set(users)
    elif not users:  # who answered is not known by a Bitrix24 id: leave the card as it is
        result.settled[event.id] = Change(EventState.DELIVERED, note=note or UNKNOWN_ANSWERER)
        return
    else:
        card.answered = True
        card.answerer = users[0]
        target = set(users)
    show = sorted(target - card.shown)
    hide = sorted(card.shown - target)
    if note:
        result.notes[event.id] = note
    if show:
        key = f"e{event.id}" if event.kind == EventKind.RING else f"e{event.id}s"
        params = {"CALL_ID": call_id, "USER_ID": show}
        result.steps.append(Step(key, SHOW, params, event.id, "show", tuple(show)))
    if hide:
        params = {"CALL_ID": call_id, "USER_ID": hide}
        result.steps.append(Step(f"e{event.id}h", HIDE, params, event.id, "hide", tuple(hide)))
    if not show and not hide:
        result.settled[event.id] = Change(EventState.DELIVERED, note=note or NOTHING_TO_CHANGE)
    card.shown = target


AFTER_FINISH = (
    "Arrived after the call was finished in Bitrix24 (which hides the card): nothing sent."
)
UNKNOWN_ANSWERER = "The employee who answered has no Bitrix24 id here: the card was left as it was."
LATE_RING = "Arrived after the answer by one of its employees: nothing shown."
NOTHING_TO_CHANGE = "The card was already where this event puts it: nothing to send."


def _users(request: Mapping[str, Any], lookup: UserLookup) -> tuple[list[int], list[str]]:
    """Bitrix24 user ids named by USER_ID (one or a list) and USER_PHONE_INNER through the
    mapping, in order, without repeats; and the extensions nobody is mapped to."""
    ids: list[int] = []
    unmapped: list[str] = []
    for value in _as_list(request.get("USER_ID")):
        ids.append(int(value))
    for extension in _as_list(request.get("USER_PHONE_INNER")):
        mapped = lookup(str(extension))
        if mapped:
            ids.append(int(mapped))
        else:
            unmapped.append(str(extension))
    return list(dict.fromkeys(ids)), unmapped


def extensions_of(request: Mapping[str, Any]) -> list[str]:
    """The extensions an event names (USER_PHONE_INNER, one or a list)."""
    return [str(value) for value in _as_list(request.get("USER_PHONE_INNER"))]


def _one_user(request: Mapping[str, Any], lookup: UserLookup) -> int | None:
    users, _ = _users(request, lookup)
    return users[0] if users else None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _unmapped_note(unmapped: Sequence[str]) -> str | None:
    if not unmapped:
        return None
    shown = ", ".join(unmapped[:10])
    return (
        f"Extension(s) {shown} are not mapped to an employee, so Bitrix24 could not be asked to "
        "show them the card; map them on the settings page."
    )


def _finish_request(
    finish: EventView, start: EventView | None, events: Sequence[EventView]
) -> dict[str, Any]:
    """The finish's fields, with the employee from the last answer or the start when the finish
    names none."""
    request = dict(finish.request)
    if request.get("USER_ID") or request.get("USER_PHONE_INNER"):
        return request
    answers = [e for e in events if e.kind == EventKind.ANSWER and e.state != EventState.FAILED]
    source = answers[-1] if answers else start
    if source is not None:
        for name in ("USER_ID", "USER_PHONE_INNER"):
            if source.request.get(name) is not None:
                request[name] = source.request[name]
                break
    return request


def _plan_records(
    call: CallFacts,
    events: Sequence[EventView],
    pending: Sequence[EventView],
    finish: EventView | None,
    result: Plan,
    now: datetime,
) -> None:
    for event in pending:
        if event.kind != EventKind.RECORD or event.id in result.settled:
            continue
        state = call.recordings.get(event.id)
        if state == RecordingState.FAILED:  # recordings.py fails the event with it: not queued
            result.settled[event.id] = Change(
                EventState.FAILED, error_code="NO_AUDIO", error=NO_AUDIO_WORDS
            )
            continue
        if state == RecordingState.ATTACHED:  # attached, then the worker stopped before recording
            result.settled[event.id] = Change(EventState.DELIVERED, note=ATTACHED)
            continue
        if finish is not None and finish.state == EventState.FAILED:
            result.settled[event.id] = Change(
                EventState.FAILED, error_code="NOT_FINISHED", error=NOT_FINISHED_WORDS
            )
            continue
        finishing = finish is not None and (
            finish.state == EventState.DELIVERED or result.finish_event == finish.id
        )
        if not finishing:
            deadline = event.created_at + FINISH_WAIT
            if now >= deadline:
                result.settled[event.id] = Change(
                    EventState.FAILED, error_code="NO_FINISH", error=NO_FINISH_WORDS
                )
            else:
                result.waiting[event.id] = WAITING_FOR_FINISH
                _wake(result, deadline)
        elif state == RecordingState.STORED:
            result.attach.append(event.id)
        elif state == RecordingState.FETCHING:
            since = call.recordings_since.get(event.id, event.created_at)
            deadline = since + FINISH_WAIT + START_WAIT
            if now >= deadline:
                result.settled[event.id] = Change(
                    EventState.FAILED, error_code="NO_AUDIO", error=NO_AUDIO_WORDS
                )
            else:
                result.waiting[event.id] = WAITING_FOR_AUDIO
                _wake(result, deadline)


ATTACHED = "Attached to the call in Bitrix24."
NOT_FINISHED_WORDS = "The call's finish failed, so Bitrix24 has no finished call to attach it to."
NO_FINISH_WORDS = "No finish arrived for this call within 24 hours; the recording was not attached."
WAITING_FOR_FINISH = (
    "Waiting for the call's finish: Bitrix24 attaches recordings to finished calls."
)
WAITING_FOR_AUDIO = "Waiting for the recording to be downloaded."
NO_AUDIO_WORDS = "The recording could not be downloaded within 25 hours."


# --- reading the answers ----------------------------------------------------------------------


@dataclass
class Settled:
    """What a batch's answers mean for one call."""

    changes: dict[int, Change] = field(default_factory=dict)
    errors: list[tuple[Step, BitrixError]] = field(default_factory=list)  # for retry.py to judge
    bitrix_call_id: str | None = None
    crm: tuple[str | None, int | None] | None = None
    shown_to: set[int] | None = None
    finished: dict[str, Any] | None = None  # finish's answer


def settle(call: CallFacts, planned: Plan, batch: BatchResult) -> Settled:
    """Each step's own answer (the batch runs every command: halt=0). A step that named a
    register which failed did not run for its own reasons: it stays queued, its error unjudged.
    A line's add is no event's: its answer is the caller's (deliver.py, external_lines.py)."""
    out = Settled(shown_to=set(call.shown_to))
    register_failed = False
    for step in planned.steps:
        if step.role == "line":
            continue
        error = batch.errors.get(step.key)
        answer = batch.result.get(step.key)
        if step.role != "register" and register_failed:
            continue
        if error is None and step.key not in batch.result:
            error = BitrixError("NO_ANSWER", f"the batch answered nothing for {step.key}")
        if error is not None:
            register_failed = register_failed or step.role == "register"
            out.errors.append((step, error))
            continue
        _took_effect(step, answer, out)
    for event_id, note in planned.notes.items():
        if event_id in out.changes:
            out.changes[event_id] = replace(out.changes[event_id], note=note)
    return out


def _took_effect(step: Step, answer: Any, out: Settled) -> None:
    assert out.shown_to is not None
    if step.role == "register":
        answer = answer if isinstance(answer, dict) else {}
        out.bitrix_call_id = _string(answer.get("CALL_ID"))
        out.crm = (_string(answer.get("CRM_ENTITY_TYPE")), _integer(answer.get("CRM_ENTITY_ID")))
        out.shown_to |= set(step.users)
        if step.settles:
            out.changes[step.event_id] = Change(EventState.DELIVERED, result=answer)
    elif step.role == "show":
        out.shown_to |= set(step.users)
        _merge(out, step.event_id, {"show": step.users, "answer": answer})
    elif step.role == "hide":
        out.shown_to -= set(step.users)
        _merge(out, step.event_id, {"hide": step.users, "answer": answer})
    else:
        out.finished = answer if isinstance(answer, dict) else {"answer": answer}
        out.bitrix_call_id = out.bitrix_call_id or _string(out.finished.get("CALL_ID"))
        out.shown_to = set()  # tutorials/telephony: finish hides the card
        out.changes[step.event_id] = Change(EventState.DELIVERED, result=out.finished)


def _merge(out: Settled, event_id: int, part: dict[str, Any]) -> None:
    """An answer event may take two commands (show the new employee, hide the others)."""
    before = out.changes.get(event_id)
    parts = list(before.result) if before is not None and before.result else []
    out.changes[event_id] = Change(EventState.DELIVERED, result=[*parts, part])


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _integer(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def failed_with_dependents(
    events: Sequence[EventView], failed_event: EventView | int, code: str, words: str
) -> dict[int, Change]:
    """A register that Bitrix24 refused for good: the event fails, and every queued event that
    needed its CALL_ID fails with it (the call does not exist in Bitrix24)."""
    failed_id = failed_event if isinstance(failed_event, int) else failed_event.id
    changes: dict[int, Change] = {}
    if isinstance(failed_event, int) or failed_event.state == EventState.QUEUED:
        changes[failed_id] = Change(EventState.FAILED, error_code=code, error=words)
    because = f"The call could not be registered in Bitrix24: {words}"
    for event in events:
        if event.id == failed_id or event.state != EventState.QUEUED:
            continue
        if event.kind in (*NEEDS_CALL_ID, EventKind.RECORD):
            changes[event.id] = Change(EventState.FAILED, error_code=code, error=because)
    return changes


def user_for_words(request: Mapping[str, Any]) -> str:
    """How an event named its employee, for the admin's words."""
    if request.get("USER_ID"):
        return f"USER_ID {request['USER_ID']}"
    if request.get("USER_PHONE_INNER"):
        return f"extension {request['USER_PHONE_INNER']}"
    return "the call's employee"
