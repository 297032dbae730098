"""The call journal: a portal's latest calls as the admin sees them, and "deliver again".

A call is what its events say (`CallEvent`: start, ring, answer, finish, record; PRODUCT.md
"The whole call"): the number, type and line come from the start, else from the finish's own
registration fields; the duration and status from the finish; the employee is Bitrix24's
PORTAL_USER_ID once finished, else the finish's user, the last answer's, the start's (the
delivery's order, delivery/params.py), else the portal's fallback employee. Each call opens
into its timeline: the events in the order they arrived, each with its own state, and the
recording's state.

"Deliver again" (one call, one event) and "Deliver all failed again" put failed events back in
the outbox with delivery/outbox.py's `requeue`, which says what changes: queued, due now,
attempts counted anew, each at most once; a call that may have reached Bitrix24 is looked up in
its statistics before it is sent again, so it is never finished twice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, false, func, or_, select, tuple_
from sqlalchemy.orm import Session, defer, selectinload
from sqlalchemy.sql.elements import ColumnElement

from b24app.delivery import call_index, outbox, portal_health
from b24app.delivery.params import ParamsError, user_params
from b24app.models import (
    Call,
    CallEvent,
    CallRecording,
    CallState,
    EventKind,
    EventState,
    PortalStatus,
    RecordingState,
)
from b24app.portals.settings import Preferences
from b24app.settings_page import messages

FILTERS = ("all", "failed", "waiting", "today")
SEARCH_BY = ("any", "phone", "extension", "pbx_call_id")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_QUERY = 100  # characters of a search
MAX_OFFSET = 1_000_000_000
ANY_PHONE_DIGITS = 5  # `by=any`: fewer digits are an extension, not part of a number
_PUBLIC_ID = re.compile(r"[0-9a-f]{32}")  # models.new_public_id
_MAX_ID = 2**63 - 1  # a larger number in a URL is no row of ours (and a PostgreSQL error)
ANSWER_FIELDS = (
    "CALL_ID",
    "PORTAL_USER_ID",
    "CALL_DURATION",
    "CALL_FAILED_CODE",
    "COST",
    "COST_CURRENCY",
    "CRM_ENTITY_TYPE",
    "CRM_ENTITY_ID",
)
# the registration fields: the start's, else the finish's own (a call the PBX never started)
REGISTER_FIELDS = ("PHONE_NUMBER", "TYPE", "LINE_NUMBER")

UserLookup = Callable[[str], int | None]  # extension -> Bitrix24 user id (the page's mapping)


def local_time(moment: datetime | None, tz: ZoneInfo) -> str | None:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if moment else None


def iso_time(moment: datetime | None, tz: ZoneInfo) -> str | None:
    """ISO 8601 to the second with the zone's offset at that moment: "2026-03-08T10:20:30+03:00"."""
    return moment.astimezone(tz).isoformat(timespec="seconds") if moment else None


# --- which calls: filter, search, page ----------------------------------------------------------


class BadCursor(ValueError):
    """A `cursor` the journal did not give out (or from an older version of it)."""


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the last call's (started_at, id); the next page is what sorts after
    it (older, or as old with a smaller id). Written "<microseconds since 1970>.<id>"."""

    started_at: datetime
    id: int

    _FORM = re.compile(r"(-?[0-9]{1,20})\.([0-9]{1,19})")

    def __str__(self) -> str:
        micros = (self.started_at - _EPOCH) // timedelta(microseconds=1)
        return f"{micros}.{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        match = cls._FORM.fullmatch(text)
        if match is None or not 0 < int(match.group(2)) <= _MAX_ID:
            raise BadCursor(text)
        try:
            moment = _EPOCH + timedelta(microseconds=int(match.group(1)))
        except OverflowError:
            raise BadCursor(text) from None
        return cls(moment, int(match.group(2)))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Query:
    """What the journal is asked for (views.py reads it from the URL; see `calls` there).

    `show` one of FILTERS; `q` a number, an extension or a PBX_CALL_ID, looked for as `by`
    (SEARCH_BY) says; `limit` calls per page (1–MAX_LIMIT); `cursor` the end of the previous
    page (stable while calls arrive), else `offset` calls skipped."""

    show: str = "all"
    q: str = ""
    by: str = "any"
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None
    offset: int = 0


@dataclass(frozen=True)
class Page:
    calls: list[Call]
    total: int  # calls matching the filter and search, on every page
    has_more: bool
    next_cursor: str | None  # None on the last page


def matching(
    portal_id: int, query: Query, *, tz: ZoneInfo, now: datetime
) -> list[ColumnElement[bool]]:
    """The portal's calls that `query.show` and `query.q` select.

    Indexes, for a portal with 100,000 calls: a page walks (portal_id, started_at, id) newest
    first and stops after `limit` + 1 matches, `today` is a range of it; `failed` and `waiting`
    are ranges of (portal_id, state, started_at); a PBX_CALL_ID (`by=pbx_call_id`) is found by
    the unique (portal_id, idempotency_key), and only then are its rows read. A number (digits
    contained in `phone_digits`) and an extension (one of `extensions`) cannot use a B-tree:
    they are matched row by row within the portal's calls in the page's index order, so a
    page of frequent matches stops early and a rare one reads the portal's calls once, and
    `total` once more."""
    q = query.q.strip()
    if q and query.by == "pbx_call_id":
        keys = Call.idempotency_key.in_([q, f"call:{q}"])
        mine = select(Call.id).where(Call.portal_id == portal_id, keys)
        conditions: list[ColumnElement[bool]] = [Call.id.in_(mine)]
    else:
        conditions = [Call.portal_id == portal_id]
    if query.show == "failed":
        conditions.append(Call.state == CallState.FAILED)
    elif query.show == "waiting":
        conditions.append(Call.state.in_([CallState.QUEUED, CallState.DELIVERING]))
    elif query.show == "today":
        midnight = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        conditions.append(Call.started_at >= midnight)
    found = _search(q, query.by) if q and query.by != "pbx_call_id" else None
    if found is not None:
        conditions.append(found)
    return conditions


def _search(q: str, by: str) -> ColumnElement[bool]:
    """`q` as a PBX_CALL_ID (or the CALL_ID of a call the PBX registered itself), an extension
    the call's events named, or the digits of its number (call_index.search_digits); `any`
    tries all three, a number there needs ANY_PHONE_DIGITS digits."""
    options: list[ColumnElement[bool]] = []
    if by == "any":
        options.append(Call.idempotency_key.in_([q, f"call:{q}"]))
    if by in ("any", "extension"):
        options.append(Call.extensions.contains(f"\n{q}\n", autoescape=True))
    number = call_index.search_digits(q)
    if number and (by == "phone" or (by == "any" and len(number) >= ANY_PHONE_DIGITS)):
        options.append(Call.phone_digits.contains(number))
    return or_(*options) if options else false()


_NEWEST_FIRST = (Call.started_at.desc(), Call.id.desc())


def _window(conditions: list[ColumnElement[bool]], query: Query) -> Select[Any]:
    """The page's rows (and one more, to know whether another page follows), newest first."""
    rows = select(Call).where(*conditions)
    if query.cursor is not None:
        cursor = query.cursor
        rows = rows.where(tuple_(Call.started_at, Call.id) < tuple_(cursor.started_at, cursor.id))
    elif query.offset:
        rows = rows.offset(query.offset)
    return rows.order_by(*_NEWEST_FIRST).limit(query.limit + 1)


@dataclass(frozen=True)
class Version:
    """What the journal would show now, in short: `digest` changes whenever the page could
    have; `total` the matching calls; `window` the page's (id, started_at), one more than
    `limit` when another page follows."""

    digest: str
    total: int
    window: tuple[tuple[int, datetime], ...]


def version(
    session: Session,
    portal_id: int,
    query: Query,
    *,
    tz: ZoneInfo,
    now: datetime,
    context: Sequence[Any] = (),
) -> Version:
    """Which calls the page holds and a digest of what it would say about them: the total,
    each call's state, attempts, events_version, updated_at and start, its events' and
    recording's states, and `context` (what the rows are described with: language, zone,
    settings, mapping). Reads ids and a few columns, never the events' requests: cheap enough
    to ask every few seconds. Read before the rows themselves (`page`), so that a change in
    between makes the next poll differ, never the reverse."""
    conditions = matching(portal_id, query, tz=tz, now=now)
    window = _window(conditions, query).with_only_columns(
        Call.id,
        Call.started_at,
        Call.state,
        Call.attempts,
        Call.events_version,
        Call.updated_at,
        maintain_column_froms=True,
    )
    rows = session.execute(window).all()
    ids = [row.id for row in rows]
    total = session.scalar(select(func.count()).select_from(Call).where(*conditions))
    events = session.execute(
        select(CallEvent.id, CallEvent.state, CallEvent.error_code, CallEvent.note)
        .where(CallEvent.call_id.in_(ids))
        .order_by(CallEvent.id)
    ).all()
    found = session.execute(
        select(
            CallRecording.event_id,
            CallRecording.state,
            CallRecording.size,
            CallRecording.file_id,
            CallRecording.error_code,
        )
        .join(CallEvent, CallEvent.id == CallRecording.event_id)
        .where(CallEvent.call_id.in_(ids))
        .order_by(CallRecording.event_id)
    ).all()
    seen = [total, [tuple(r) for r in rows], [tuple(e) for e in events], [tuple(r) for r in found]]
    said = repr([*seen, *context])
    digest = hashlib.sha256(said.encode()).hexdigest()[:20]
    return Version(digest, int(total or 0), tuple((row.id, row.started_at) for row in rows))


def page(session: Session, seen: Version, query: Query) -> Page:
    """The calls of the page `seen` found, with their events, newest start first; `total` over
    every page, and where the next page starts."""
    window = seen.window[: query.limit]
    ids = [id_ for id_, _ in window]
    found = session.scalars(select(Call).where(Call.id.in_(ids)).options(selectinload(Call.events)))
    by_id = {call.id: call for call in found}
    calls = [by_id[id_] for id_, _ in window if id_ in by_id]  # one may be gone (retention)
    more = len(seen.window) > query.limit
    last = window[-1] if more and window else None
    return Page(calls, seen.total, more, str(Cursor(last[1], last[0])) if last else None)


def recordings(session: Session, calls: Iterable[Call]) -> dict[int, CallRecording]:
    """The recordings of these calls' `record` events, by event id, without their audio (the
    page never needs the bytes, and they may be megabytes)."""
    ids = [e.id for call in calls for e in call.events if e.kind == EventKind.RECORD]
    if not ids:
        return {}
    found = session.scalars(
        select(CallRecording)
        .where(CallRecording.event_id.in_(ids))
        .options(defer(CallRecording.content, raiseload=True))
    )
    return {recording.event_id: recording for recording in found}


def _first(events: Sequence[CallEvent], kind: str) -> CallEvent | None:
    return next((e for e in events if e.kind == kind), None)


def _last(events: Sequence[CallEvent], kind: str) -> CallEvent | None:
    return next((e for e in reversed(events) if e.kind == kind), None)


def _field(events: Sequence[CallEvent | None], name: str) -> Any:
    """`name` from the first of `events` that has it."""
    for event in events:
        value = (event.request or {}).get(name) if event is not None else None
        if value not in (None, "", []):
            return value
    return None


def _values(value: Any) -> list[Any]:
    """A ring's employees are stored as lists, other events' as one value."""
    if value in (None, ""):
        return []
    return list(value) if isinstance(value, list) else [value]


def _user_fields(event: CallEvent | None) -> dict[str, Any]:
    """The one employee an event names (a finish, an answer, a start), as user_params reads it."""
    request = (event.request or {}) if event is not None else {}
    named = {k: _values(request.get(k)) for k in ("USER_ID", "USER_PHONE_INNER")}
    return {k: v[0] for k, v in named.items() if v}


def employee_of(call: Call, prefs: Preferences, lookup: UserLookup) -> tuple[int | None, str]:
    """(Bitrix24 user id or None, the extension the PBX named or ""): Bitrix24's PORTAL_USER_ID
    once finished, else whom the finish, the last answer or the start names, resolved as the
    delivery resolves it with today's settings (params.user_params: the mapping, then the
    fallback employee)."""
    events = call.events
    order = (
        _first(events, EventKind.FINISH),
        _last(events, EventKind.ANSWER),
        _first(events, EventKind.START),
    )
    named = next((fields for fields in map(_user_fields, order) if fields), {})
    extension = str(named.get("USER_PHONE_INNER") or "")
    confirmed = (call.result or {}).get("PORTAL_USER_ID")
    try:
        if confirmed:
            return int(confirmed), extension
        user_id = user_params(named, prefs, lookup).get("USER_ID")
    except (ParamsError, TypeError, ValueError):
        return None, extension
    return (int(user_id) if user_id else None), extension


def _employees(event: CallEvent, lookup: UserLookup) -> list[dict[str, Any]]:
    """The employees a ring or answer names: user ids, and extensions with their mapped user."""
    request = event.request or {}
    named: list[dict[str, Any]] = [
        {"user_id": _int(uid), "extension": ""} for uid in _values(request.get("USER_ID"))
    ]
    for inner in _values(request.get("USER_PHONE_INNER")):
        named.append({"user_id": lookup(str(inner)), "extension": str(inner)})
    return named


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def describe_recording(recording: CallRecording | None) -> dict[str, Any] | None:
    """A recording as the page shows it: state (fetching, stored, attached, failed) in words,
    why it failed, its size (bytes and in words) and format (mp3 or wav)."""
    if recording is None:
        return None
    failed = recording.state == RecordingState.FAILED
    return {
        "state": recording.state,
        "state_text": str(messages.RECORDING_STATES.get(recording.state, recording.state)),
        "audio": recording.audio or "",
        "size": recording.size,
        "size_text": messages.size(recording.size) if recording.size else "",
        "filename": recording.filename or "",
        "problem": messages.recording_problem(recording.error_code, recording.error)
        if failed
        else "",
        "file_id": recording.file_id,
    }


def _note(event: CallEvent) -> str:
    """The event's note in the page's language; a note that it waits (for the start, the
    finish, the download) only while it is queued: a failed or delivered event waits no more."""
    if event.note in messages.WAITING_NOTES and event.state != EventState.QUEUED:
        return ""
    return messages.note(event.note)


Refusal = Callable[[str], str]  # a state → why Bitrix24 refused the call's employee, in words


def refusal(call: Call, prefs: Preferences) -> Refusal:
    """USER_NOT_FOUND said as the delivery acts on it (messages.user_not_found): whether this
    call was already sent to the fallback employee, and whether one is set now."""

    def words(state: str) -> str:
        return messages.user_not_found(
            state,
            tried_fallback=bool(call.use_fallback_user),
            fallback_set=bool(prefs.fallback_user_id),
        )

    return words


def _problem(event: CallEvent, recording: CallRecording | None, refused: Refusal | None) -> str:
    """Why the event failed: the recording's reason when its download failed it (the same
    code), the refused employee's as the delivery acts on it, else the event's own
    (messages.problem)."""
    download_failed = (
        recording is not None
        and recording.state == RecordingState.FAILED
        and recording.error_code == event.error_code
    )
    if download_failed:
        return messages.recording_problem(event.error_code, event.error)
    if event.error_code == messages.USER_NOT_FOUND and refused is not None:
        return refused(event.state)
    return messages.problem(event.error_code, event.error)


def _download_problem(call: Call, found: Mapping[int, CallRecording]) -> str | None:
    """Why the call failed when a recording's failed download failed it (the same code)."""
    for event in call.events:
        recording = found.get(event.id)
        if (
            recording is not None
            and recording.state == RecordingState.FAILED
            and recording.error_code == call.error_code
        ):
            return messages.recording_problem(call.error_code, call.error)
    return None


def describe_event(
    event: CallEvent,
    *,
    tz: ZoneInfo,
    lookup: UserLookup,
    recording: CallRecording | None = None,
    refused: Refusal | None = None,
) -> dict[str, Any]:
    """One step of a call's timeline: what the PBX said, and what became of it (`refused`:
    how to say its call's USER_NOT_FOUND, `refusal`)."""
    failed = event.state == EventState.FAILED
    return {
        "id": event.id,
        "kind": event.kind,
        "kind_text": str(messages.EVENT_KINDS.get(event.kind, event.kind)),
        "created_at": local_time(event.created_at, tz),
        "delivered_at": local_time(event.delivered_at, tz),
        "state": event.state,
        "state_text": str(messages.EVENT_STATES.get(event.state, event.state)),
        "details": messages.event_details(event.kind, event.request or {}),
        "employees": _employees(event, lookup)
        if event.kind in (EventKind.RING, EventKind.ANSWER)
        else [],
        "note": _note(event),
        "problem": _problem(event, recording, refused) if failed or event.error_code else "",
        "error": event.error or "",
        "recording": describe_recording(recording) if event.kind == EventKind.RECORD else None,
        "can_retry": failed,
    }


def describe(
    call: Call,
    *,
    tz: ZoneInfo,
    prefs: Preferences,
    lookup: UserLookup,
    recordings: Mapping[int, CallRecording] | None = None,
) -> dict[str, Any]:
    """One journal row as the page shows it, with its timeline (`events`, in arrival order)."""
    events = call.events
    start, finish = _first(events, EventKind.START), _first(events, EventKind.FINISH)
    record = _first(events, EventKind.RECORD)
    found = recordings or {}
    register = {name: _field([start, finish], name) for name in REGISTER_FIELDS}
    status_code = str(_field([finish], "STATUS_CODE") or "")
    employee_id, extension = employee_of(call, prefs, lookup)
    call_type = str(register["TYPE"] or "")
    refused = refusal(call, prefs)
    return {
        "id": call.public_id,
        "started_at": iso_time(call.started_at, tz),
        "started_at_text": local_time(call.started_at, tz),
        "created_at": local_time(call.created_at, tz),
        "phone_number": register["PHONE_NUMBER"] or "",
        "type": call_type,
        "type_text": str(messages.CALL_TYPES.get(call_type, "")),
        "line_number": str(register["LINE_NUMBER"] or ""),
        "extension": extension,
        "employee_id": employee_id,
        "duration": _field([finish], "DURATION"),
        "status_code": status_code,
        "status_text": str(messages.STATUS_CODES.get(status_code, "")),
        "pbx_call_id": _field([start, finish, *events], "PBX_CALL_ID")
        or _field([finish], "CALL_ID")
        or "",
        "bitrix_call_id": call.bitrix_call_id or "",
        "crm": _crm(call),
        "state": call.state,
        "state_text": str(messages.STATES.get(call.state, call.state)),
        "outcome": messages.outcome(
            call.state,
            call.error_code,
            call.error,
            local_time(call.next_attempt_at, tz),
            finished=finish is not None,
            reason=_download_problem(call, found)
            or (refused(call.state) if call.error_code == messages.USER_NOT_FOUND else None),
        ),
        "error": call.error or "",
        "note": call.note or "",
        "attempts": call.attempts,
        "delivered_at": local_time(call.delivered_at, tz),
        "answer": {k: call.result[k] for k in ANSWER_FIELDS if call.result and k in call.result},
        "recording": describe_recording(found.get(record.id)) if record else None,
        "events": [
            describe_event(e, tz=tz, lookup=lookup, recording=found.get(e.id), refused=refused)
            for e in events
        ],
        "can_retry": call.state == CallState.FAILED,
    }


def _crm(call: Call) -> dict[str, Any] | None:
    """The CRM entity Bitrix24 bound the call to (register's answer, else finish's)."""
    entity_type = call.crm_entity_type or (call.result or {}).get("CRM_ENTITY_TYPE")
    entity_id = call.crm_entity_id or (call.result or {}).get("CRM_ENTITY_ID")
    if not entity_type or not entity_id:
        return None
    return {
        "type": str(entity_type),
        "type_text": str(messages.CRM_TYPES.get(str(entity_type), entity_type)),
        "id": _int(entity_id),
    }


def requeue(session: Session, portal_id: int, public_id: str, *, now: datetime) -> str:
    """Put one failed call (every failed event of it) back in the outbox; "requeued",
    "not_found" or "not_failed"."""
    if not _PUBLIC_ID.fullmatch(public_id):  # a NUL in an id is a PostgreSQL error, not a miss
        return "not_found"
    if outbox.requeue(session, portal_id=portal_id, public_ids=[public_id], now=now):
        return "requeued"
    exists = session.scalar(
        select(Call.id).where(Call.portal_id == portal_id, Call.public_id == public_id)
    )
    return "not_found" if exists is None else "not_failed"


def requeue_event(
    session: Session, portal_id: int, public_id: str, event_id: int, *, now: datetime
) -> str:
    """Put one failed event of one of the portal's calls back in the outbox (its call becomes
    queued; the call's other events stay as they are): "requeued", "not_found" (no such event
    of this portal's call) or "not_failed"."""
    if not _PUBLIC_ID.fullmatch(public_id) or not 0 < event_id <= _MAX_ID:
        return "not_found"
    state = session.scalar(
        select(CallEvent.state)
        .join(Call, Call.id == CallEvent.call_id)
        .where(Call.portal_id == portal_id, Call.public_id == public_id, CallEvent.id == event_id)
    )
    if state is None:
        return "not_found"
    if state != EventState.FAILED:
        return "not_failed"
    moved = outbox.requeue(
        session, portal_id=portal_id, public_ids=[public_id], event_ids=[event_id], now=now
    )
    return "requeued" if moved else "not_failed"  # another click got there first


def requeue_failed(session: Session, portal_id: int, *, now: datetime) -> int:
    """Put every failed call of the portal back in the outbox; how many went."""
    return len(outbox.requeue(session, portal_id=portal_id, now=now))


@dataclass(frozen=True)
class Failure:
    """The portal's failed calls that share one reason: how many, and the reason in words."""

    code: str
    count: int
    text: str

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "count": self.count, "text": self.text}


@dataclass(frozen=True)
class Health:
    status: str
    last_delivered_at: str | None
    queued: int
    failed_24h: int
    paused_since: str | None = None  # delivery paused after an outage (portal_health.py)
    paused_reason: str | None = None
    failed: int = 0  # calls failed now, whenever they failed (failed_24h of them in 24 hours)
    failures: tuple[Failure, ...] = ()  # the most common reasons, most common first

    def as_json(self) -> dict[str, Any]:
        """`action` is what the admin should do now: the portal's state's, and when calls have
        failed, to fix their most common cause and deliver them again — never "Nothing to do"
        beside failures."""
        cause = self.failures[0].text if self.failures else ""
        fixable = self.failed and not PortalStatus(self.status).gone
        to_fix = messages.failed_action(self.failed, cause) if fixable else ""
        shown = {
            "status": self.status,
            "status_label": str(messages.PORTAL_LABELS.get(self.status, self.status)),
            "status_text": str(messages.PORTAL_STATES.get(self.status, self.status)),
            "action": _action(str(messages.PORTAL_ACTIONS.get(self.status, "")), to_fix),
        }
        if self.status == "active":
            shown["action"] = to_fix or shown["action"]
        if self.paused_since is not None and self.status == "active":
            waiting = messages.PAUSED_WAITING if to_fix else messages.PAUSED_ACTION
            shown = {
                "status": "paused",
                "status_label": str(messages.PAUSED_LABEL),
                "status_text": str(messages.PAUSED_TEXT)
                % {"since": self.paused_since, "reason": self.paused_reason or "—"},
                "action": _action(to_fix, str(waiting) % {"count": self.queued}),
            }
        return {
            **shown,
            "can_reauthorize": self.status in ("needs_reauth", "access_denied"),
            "last_delivered_at": self.last_delivered_at,
            "queued": self.queued,
            "failed_24h": self.failed_24h,
            "failed": self.failed,
            "failures": [failure.as_json() for failure in self.failures],
        }


def _action(*parts: str) -> str:
    return " ".join(part for part in parts if part)


TOP_FAILURES = 3


def health(
    session: Session,
    portal_id: int,
    status: str,
    *,
    tz: ZoneInfo,
    now: datetime,
    prefs: Preferences | None = None,
) -> Health:
    """Token state, the last delivery, how many calls wait (queue depth), and the failed calls:
    how many now, how many in the last 24 hours, and their TOP_FAILURES most common reasons
    (USER_NOT_FOUND said with `prefs`' fallback employee, as `describe` says it)."""
    last = session.scalar(select(func.max(Call.delivered_at)).where(Call.portal_id == portal_id))
    waiting = session.scalar(
        select(func.count())
        .select_from(Call)
        .where(
            Call.portal_id == portal_id,
            Call.state.in_([CallState.QUEUED, CallState.DELIVERING]),
        )
    )
    failed_now = Call.portal_id == portal_id, Call.state == CallState.FAILED
    failed = session.scalar(
        select(func.count())
        .select_from(Call)
        .where(*failed_now, Call.updated_at >= now - timedelta(hours=24))
    )
    pause = portal_health.read(session, portal_id)
    failures = _failures(session, failed_now, prefs or Preferences())
    return Health(
        status,
        local_time(last, tz),
        int(waiting or 0),
        int(failed or 0),
        paused_since=local_time(pause.since, tz) if pause else None,
        paused_reason=pause.reason_code if pause else None,
        failed=sum(f.count for f in failures),
        failures=tuple(f for f in failures if f.count)[:TOP_FAILURES],
    )


def _failures(
    session: Session, failed_now: tuple[ColumnElement[bool], ...], prefs: Preferences
) -> list[Failure]:
    """Failed calls grouped by their reason, most common first (each group's words from one
    of its calls: the latest)."""
    groups = session.execute(
        select(
            Call.error_code,
            Call.use_fallback_user,
            func.count(),
            func.max(Call.id),
        )
        .where(*failed_now)
        .group_by(Call.error_code, Call.use_fallback_user)
    ).all()
    newest_ids = [group[3] for group in groups]
    latest_error = {
        row.id: row.error
        for row in session.execute(select(Call.id, Call.error).where(Call.id.in_(newest_ids)))
    }
    found: dict[str, Failure] = {}
    for code, tried_fallback, count, newest in sorted(groups, key=lambda g: -g[2]):
        key = code or ""
        if code == messages.USER_NOT_FOUND:
            text = messages.user_not_found(
                CallState.FAILED,
                tried_fallback=bool(tried_fallback),
                fallback_set=bool(prefs.fallback_user_id),
            )
        else:
            text = messages.problem(code, latest_error.get(newest)) or messages.failed()
        if key in found:  # USER_NOT_FOUND with and without the fallback tried: one reason
            found[key] = Failure(key, found[key].count + count, found[key].text)
        else:
            found[key] = Failure(key, int(count), text)
    return sorted(found.values(), key=lambda f: -f.count)
