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

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer, selectinload

from b24app.delivery import outbox, portal_health
from b24app.delivery.params import ParamsError, user_params
from b24app.models import (
    Call,
    CallEvent,
    CallRecording,
    CallState,
    EventKind,
    EventState,
    RecordingState,
)
from b24app.portals.settings import Preferences
from b24app.settings_page import messages

FILTERS = ("all", "failed", "today")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
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


def latest(
    session: Session,
    portal_id: int,
    *,
    show: str,
    tz: ZoneInfo,
    now: datetime,
    limit: int = DEFAULT_LIMIT,
) -> list[Call]:
    """The newest calls first, with their events; `failed` only failed ones, `today` those
    since local midnight; at most `limit` (1–MAX_LIMIT)."""
    query = select(Call).where(Call.portal_id == portal_id).options(selectinload(Call.events))
    if show == "failed":
        query = query.where(Call.state == CallState.FAILED)
    elif show == "today":
        midnight = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        query = query.where(Call.created_at >= midnight)
    limit = max(1, min(limit, MAX_LIMIT))
    return list(
        session.scalars(query.order_by(Call.created_at.desc(), Call.id.desc()).limit(limit))
    )


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


def _problem(event: CallEvent, recording: CallRecording | None) -> str:
    """Why the event failed: the recording's reason when its download failed it (the same
    code), else the event's own (messages.problem)."""
    download_failed = (
        recording is not None
        and recording.state == RecordingState.FAILED
        and recording.error_code == event.error_code
    )
    if download_failed:
        return messages.recording_problem(event.error_code, event.error)
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
) -> dict[str, Any]:
    """One step of a call's timeline: what the PBX said, and what became of it."""
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
        "problem": _problem(event, recording) if failed or event.error_code else "",
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
    return {
        "id": call.public_id,
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
            reason=_download_problem(call, found),
        ),
        "error": call.error or "",
        "note": call.note or "",
        "attempts": call.attempts,
        "delivered_at": local_time(call.delivered_at, tz),
        "answer": {k: call.result[k] for k in ANSWER_FIELDS if call.result and k in call.result},
        "recording": describe_recording(found.get(record.id)) if record else None,
        "events": [
            describe_event(e, tz=tz, lookup=lookup, recording=found.get(e.id)) for e in events
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
class Health:
    status: str
    last_delivered_at: str | None
    queued: int
    failed_24h: int
    paused_since: str | None = None  # delivery paused after an outage (portal_health.py)
    paused_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        shown = {
            "status": self.status,
            "status_label": str(messages.PORTAL_LABELS.get(self.status, self.status)),
            "status_text": str(messages.PORTAL_STATES.get(self.status, self.status)),
            "action": str(messages.PORTAL_ACTIONS.get(self.status, "")),
        }
        if self.paused_since is not None and self.status == "active":
            shown = {
                "status": "paused",
                "status_label": str(messages.PAUSED_LABEL),
                "status_text": str(messages.PAUSED_TEXT)
                % {"since": self.paused_since, "reason": self.paused_reason or "—"},
                "action": str(messages.PAUSED_ACTION) % {"count": self.queued},
            }
        return {
            **shown,
            "can_reauthorize": self.status in ("needs_reauth", "access_denied"),
            "last_delivered_at": self.last_delivered_at,
            "queued": self.queued,
            "failed_24h": self.failed_24h,
        }


def health(session: Session, portal_id: int, status: str, *, tz: ZoneInfo, now: datetime) -> Health:
    """Token state, the last delivery, and how many calls wait (queue depth)."""
    last = session.scalar(select(func.max(Call.delivered_at)).where(Call.portal_id == portal_id))
    waiting = session.scalar(
        select(func.count())
        .select_from(Call)
        .where(
            Call.portal_id == portal_id,
            Call.state.in_([CallState.QUEUED, CallState.DELIVERING]),
        )
    )
    failed = session.scalar(
        select(func.count())
        .select_from(Call)
        .where(
            Call.portal_id == portal_id,
            Call.state == CallState.FAILED,
            Call.updated_at >= now - timedelta(hours=24),
        )
    )
    pause = portal_health.read(session, portal_id)
    return Health(
        status,
        local_time(last, tz),
        int(waiting or 0),
        int(failed or 0),
        paused_since=local_time(pause.since, tz) if pause else None,
        paused_reason=pause.reason_code if pause else None,
    )
