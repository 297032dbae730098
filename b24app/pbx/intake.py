"""The PBX intake: read a body, validate an event, store it once. No Flask, no Bitrix24.

Every function answers with a `Result` carrying a machine-readable `Code`; the HTTP layer
(problems.py) turns codes into answers in one place. The intake is fast on purpose: one key lookup
(auth.py), then one short write transaction per event (design: "Accepting an event"). Delivery
happens later, in the worker, from the stored `Call` row and its `CallEvent`s.

Idempotency: a call is keyed per portal by PBX_CALL_ID, else (a finish of a call the PBX
registered itself) by "call:" + CALL_ID; an event within its call by (kind, dedupe_key), "" for
start, finish and record (once per call), a digest of the normalised fields for ring and answer.
Both rows are inserted with `INSERT … ON CONFLICT DO NOTHING` on PostgreSQL and SQLite, so
concurrent duplicates can race freely: exactly one row wins, and every loser reads the stored
event and compares its normalised request with its own: equal → the call's id (REPEATED),
different → CONFLICT naming the fields that differ. On PostgreSQL (READ COMMITTED) the losing
insert waits for the winner's commit, so the following read sees the row; on SQLite the write
transaction (`BEGIN IMMEDIATE`) serialises. A new event marks its call due
(delivery/outbox.event_added) in the same transaction.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from b24app import textbody
from b24app.config import Settings
from b24app.db import Database, insert_for
from b24app.delivery import call_index, outbox, recordings
from b24app.logs import get_logger
from b24app.models import (
    ONCE_PER_CALL,
    Call,
    CallEvent,
    CallRecording,
    CallState,
    EventKind,
    EventState,
    new_public_id,
    utcnow,
)
from b24app.pbx.prepared import PreparedInsert
from b24app.pbx.schemas import (
    FIELDS,
    FILE,
    AnswerRequest,
    FieldError,
    RecordRequest,
    RingRequest,
    StartRequest,
    validate_answer,
    validate_finish,
    validate_record,
    validate_ring,
    validate_start,
)
from b24app.portals.settings import zone

log = get_logger(__name__)


class Code(enum.StrEnum):
    """What happened to a PBX request; problems.py maps each code to an HTTP answer."""

    ACCEPTED = "accepted"  # stored now
    REPEATED = "repeated"  # the same call was stored before: same id, no second delivery
    FOUND = "found"  # GET of a call
    MISSING_KEY = "missing_key"
    MALFORMED_KEY = "malformed_key"
    UNKNOWN_KEY = "unknown_key"  # never issued, or rotated away
    UNINSTALLED = "uninstalled"
    PORTAL_DELETED = "portal_deleted"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNREADABLE_BODY = "unreadable_body"
    BODY_TOO_LARGE = "body_too_large"
    INVALID_FIELDS = "invalid_fields"
    CONFLICT = "conflict"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    RATE_LIMITED = "rate_limited"  # ratelimit.py's limits on the PBX API
    STORE_UNAVAILABLE = "store_unavailable"
    STORAGE_FULL = "storage_full"  # the portal's stored recordings are at their cap
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class Result:
    """`code` for machines, `detail` for the PBX's admin, `errors` per field, `call` when found."""

    code: Code
    detail: str = ""
    errors: tuple[FieldError, ...] = ()
    call: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.code in (Code.ACCEPTED, Code.REPEATED, Code.FOUND)


@dataclass(frozen=True)
class PortalContext:
    """What the intake needs to know about the key's portal, read once with the key."""

    portal_id: int
    member_id: str
    status: str
    currencies: Sequence[str] = field(default_factory=tuple)
    has_fallback_user: bool = False
    timezone: str = "UTC"  # IANA: a CALL_START_DATE without an offset is read in it


# --- reading the body ------------------------------------------------------------------------

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def read_fields(
    mimetype: str,
    *,
    body: Callable[[], bytes],
    form: Callable[[], Iterable[tuple[str, Any]]],
    charset: str | None = None,
) -> dict[str, Any] | Result:
    """The request's fields from a JSON object or a form, or why they cannot be read.

    `body` and `form` are called lazily (only the one the content type needs); `charset` is the
    content type's `charset=` parameter, if any. A form field given twice becomes a list, which
    validation refuses by name ("must be given once"). Text that is not valid in its charset is
    UNREADABLE_BODY naming the field, an unsupported charset UNSUPPORTED_MEDIA_TYPE
    (b24app/textbody.py: never repaired).
    """
    mimetype = mimetype.lower()
    try:
        if is_json(mimetype):
            return parse_json(body(), charset)
        if mimetype in FORM_TYPES:
            return _collect(form())
    except textbody.UndecodableText as error:
        named = (FieldError(error.field, error.message),) if error.field is not None else ()
        return Result(Code.UNREADABLE_BODY, str(error.description), named)
    except textbody.UnsupportedCharset as error:
        return Result(Code.UNSUPPORTED_MEDIA_TYPE, str(error.description))
    shown = mimetype or "none"
    return Result(
        Code.UNSUPPORTED_MEDIA_TYPE,
        f"Content-Type {shown[:100]} is not accepted: send application/json, "
        "application/x-www-form-urlencoded or multipart/form-data.",
    )


def _collect(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Form pairs as fields; a name given more than once becomes the list of its values (in
    order, appended in place: tens of thousands of repeats cost linear time)."""
    fields: dict[str, Any] = {}
    repeated: set[str] = set()
    for key, value in pairs:
        name = "" if key is None else str(key)  # a multipart part may come without a name
        if name in repeated:
            fields[name].append(value)
        elif name in fields:
            fields[name] = [fields[name], value]
            repeated.add(name)
        else:
            fields[name] = value
    return fields


class _Duplicates(dict[str, Any]):
    """A JSON object that remembers which of its keys were given more than once."""

    repeated: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Duplicates:
    obj = _Duplicates(pairs)  # built in C; the loop below only when some name came twice
    obj.repeated = []
    if len(obj) == len(pairs):
        return obj
    obj.clear()
    for name, value in pairs:
        if name in obj:
            obj.repeated.append(name)
        obj[name] = value
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes, charset: str | None = None) -> dict[str, Any] | Result:
    """A JSON object, strictly (no NaN or Infinity), or UNREADABLE_BODY.

    Without `charset`, JSON's own detection (UTF-8, or UTF-16/32 by their zero bytes); with one,
    as declared (textbody.charset_of: UnsupportedCharset if it cannot be). Invalid text raises
    textbody.UndecodableText naming the top-level field that holds it, if one does.
    """
    try:
        text = _json_text(data, charset)
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:  # JSONDecodeError
        return Result(Code.UNREADABLE_BODY, f"The body is not valid JSON: {str(error)[:200]}")
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(value), "a number"
        )
        return Result(Code.UNREADABLE_BODY, f"The body must be a JSON object, not {kind}.")
    for name in getattr(value, "repeated", ()):  # validation names them: "must be given once"
        value[name] = [value[name], value[name]]
    return dict(value)


def _json_text(data: bytes, charset: str | None) -> str:
    codec = textbody.charset_of(charset) if charset else json.detect_encoding(data)
    try:
        return data.decode(codec)
    except UnicodeDecodeError as error:
        raise textbody.UndecodableText(_holding_bad_bytes(data, codec), codec, error) from None


def _holding_bad_bytes(data: bytes, codec: str) -> str | None:
    """The top-level field whose string value holds the undecodable bytes, or None (the body)."""
    try:
        value = json.loads(data.decode(codec, "surrogateescape"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    for name, item in value.items():
        if _ESCAPED.search(name):
            return None
        if isinstance(item, str) and _ESCAPED.search(item):
            return name
    return None


_ESCAPED = re.compile("[\udc80-\udcff]")  # surrogateescape's stand-ins for bad bytes


# --- accepting an event ---------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """A recording the PBX sent as the multipart part FILE: its bytes and the part's filename."""

    data: bytes
    filename: str | None = None


@dataclass(frozen=True)
class Event:
    """A validated event: its call's key, its kind and dedupe key (models.CallEvent), and the
    request as the JSON column gives it back (so a repeat compares equal)."""

    kind: EventKind
    key: str
    dedupe_key: str
    request: dict[str, Any]


# What a new event brings besides its own row (recording rows): called inside the transaction.
AfterInsert = Callable[[Session, int, int, datetime], None]  # session, portal_id, event_id, now


def idempotency_key(request: Mapping[str, Any]) -> str:
    """PBX_CALL_ID if given, else "call:" + CALL_ID (ISSUE 4's agreed key)."""
    if "PBX_CALL_ID" in request:
        return str(request["PBX_CALL_ID"])
    return "call:" + str(request["CALL_ID"])


def dedupe_key(kind: EventKind, request: Mapping[str, Any]) -> str:
    """ "" for the events a call has once (models.ONCE_PER_CALL); for ring and answer the first 32
    hex digits of the SHA-256 of the canonical JSON of the normalised fields, so the same
    employees again are the same event and other employees a new one."""
    if kind in ONCE_PER_CALL:
        return ""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def event_of(kind: EventKind, request: Mapping[str, Any]) -> Event:
    stored = json.loads(json.dumps(request))  # what the JSON column gives back
    return Event(kind, idempotency_key(stored), dedupe_key(kind, stored), stored)


def accept_start(db: Database, portal: PortalContext, fields: Mapping[str, Any]) -> Result:
    """`POST /pbx/v1/calls/start`: validate and store the call's start once."""
    request, errors = validate_start(fields, has_fallback_user=portal.has_fallback_user)
    return _accept(db, portal, EventKind.START, request, errors)


def accept_ring(db: Database, portal: PortalContext, fields: Mapping[str, Any]) -> Result:
    """`POST /pbx/v1/calls/ring`: validate and store a ring once (per set of employees)."""
    request, errors = validate_ring(fields)
    return _accept(db, portal, EventKind.RING, request, errors)


def accept_answer(db: Database, portal: PortalContext, fields: Mapping[str, Any]) -> Result:
    """`POST /pbx/v1/calls/answer`: validate and store an answer once (per employee)."""
    request, errors = validate_answer(fields)
    return _accept(db, portal, EventKind.ANSWER, request, errors)


def accept_finish(db: Database, portal: PortalContext, fields: Mapping[str, Any]) -> Result:
    """`POST /pbx/v1/calls/finish`: validate and store the finish once; its RECORD_URL becomes
    the call's `record` event (attached after the finish, never sent as finish's parameter)."""
    request, errors = validate_finish(
        fields, currencies=portal.currencies, has_fallback_user=portal.has_fallback_user
    )
    url = (request or {}).get("RECORD_URL")
    after = _finish_record(request or {}, url) if url else None
    return _accept(db, portal, EventKind.FINISH, request, errors, after)


def accept_record(
    db: Database,
    portal: PortalContext,
    fields: Mapping[str, Any],
    *,
    files: Sequence[Upload] = (),
    settings: Settings,
) -> Result:
    """`POST /pbx/v1/calls/record`: RECORD_URL (downloaded later by a worker) or the file itself
    (judged by content now: mp3 or wav, at most B24APP_RECORD_MAX_BYTES, and within the portal's
    B24APP_RECORD_PORTAL_BYTES), stored once. The stored request names an upload by its digest
    and size ({"FILE": {"sha256", "size"}}), so a repeat of the same file is the same event."""
    request, errors = validate_record(fields, files=len(files))
    if request is None:
        return _accept(db, portal, EventKind.RECORD, None, errors)
    if not files:
        url, name = request["RECORD_URL"], request.get("FILENAME")
        return _accept(db, portal, EventKind.RECORD, request, [], _add_url(url, name))
    upload = files[0]
    try:
        _check_upload(upload.data, settings)
    except recordings.RecordingRefused as refused:
        return _refused(refused)
    request["FILE"] = {"sha256": hashlib.sha256(upload.data).hexdigest(), "size": len(upload.data)}
    name = request.get("FILENAME") or _plain_name(upload.filename)
    return _accept(db, portal, EventKind.RECORD, request, [], _store_upload(upload, name, settings))


def _check_upload(data: bytes, settings: Settings) -> None:
    """RecordingRefused: 413 over B24APP_RECORD_MAX_BYTES, 422 unless mp3 or wav."""
    if len(data) > settings.record_max_bytes:
        raise recordings.RecordingRefused(
            "TOO_LARGE",
            FILE,
            f"{FILE} is {len(data):,} bytes: a recording may have at most "
            f"{settings.record_max_bytes:,} bytes (B24APP_RECORD_MAX_BYTES)",
            413,
        )
    recordings.check_audio(data)


def _plain_name(name: str | None) -> str | None:
    """The part's filename without any folder a client put in it (None when nothing is left)."""
    if not name:
        return None
    plain = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return plain[:255] if plain and plain not in (".", "..") else None


def _add_url(url: str, filename: str | None) -> AfterInsert:
    def add(session: Session, portal_id: int, event_id: int, now: datetime) -> None:
        recordings.add_url(
            session, portal_id=portal_id, event_id=event_id, url=url, filename=filename, now=now
        )

    return add


def _store_upload(upload: Upload, filename: str | None, settings: Settings) -> AfterInsert:
    def store(session: Session, portal_id: int, event_id: int, now: datetime) -> None:
        recordings.store_upload(
            session,
            portal_id=portal_id,
            event_id=event_id,
            filename=filename,
            data=upload.data,
            now=now,
            settings=settings,
        )

    return store


def _finish_record(finish: Mapping[str, Any], url: str) -> AfterInsert:
    """A finish's RECORD_URL as the call's `record` event {PBX_CALL_ID, RECORD_URL}, unless the
    call has one already (the earlier one stands)."""
    record = {name: finish[name] for name in ("PBX_CALL_ID",) if name in finish}
    record["RECORD_URL"] = url
    event = Event(EventKind.RECORD, idempotency_key(finish), "", record)

    def add(session: Session, portal_id: int, event_id: int, now: datetime) -> None:
        call_id = session.scalar(select(CallEvent.call_id).where(CallEvent.id == event_id))
        assert call_id is not None
        record_id = _insert_event(session, call_id, event, now)
        if record_id is not None:
            _add_url(url, None)(session, portal_id, record_id, now)

    return add


class _Refused(Exception):
    """Raised inside the write transaction to roll it back and answer `result`."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.detail)
        self.result = result


def _accept(
    db: Database,
    portal: PortalContext,
    kind: EventKind,
    request: dict[str, Any] | None,
    errors: Sequence[FieldError],
    after: AfterInsert | None = None,
) -> Result:
    if request is None:
        names = ", ".join(dict.fromkeys(e.field for e in errors))
        return Result(Code.INVALID_FIELDS, f"Invalid fields: {names}.", tuple(errors))
    event = event_of(kind, request)
    try:
        return _store(db, portal, event, after)
    except _Refused as refused:
        return refused.result
    except recordings.RecordingRefused as refused:
        return _refused(refused)
    except OperationalError as error:  # unreachable, or locked for longer than the busy timeout
        log.warning("intake: database unavailable", error=type(error).__name__)
        return Result(Code.STORE_UNAVAILABLE, "The call store is unavailable; send it again.")


REFUSED_STATUSES = {413: Code.BODY_TOO_LARGE, 507: Code.STORAGE_FULL}


def _refused(refused: recordings.RecordingRefused) -> Result:
    """A recording refused by recordings.py: 422 (not mp3 or wav), 413 (too large) or 507 (the
    portal's stored audio is at its cap), naming the field."""
    code = REFUSED_STATUSES.get(refused.status, Code.INVALID_FIELDS)
    words = refused.message.removeprefix(refused.field + " ")  # the field is named beside them
    log.info("recording refused", error_code=refused.code, field=refused.field)
    detail = (
        f"{refused.field} {words}."
        if words != refused.message
        else words[:1].upper() + words[1:] + "."
    )
    return Result(code, detail, (FieldError(refused.field, words),))


def _store(db: Database, portal: PortalContext, event: Event, after: AfterInsert | None) -> Result:
    """One short write transaction (the module docstring), shared with the events other threads
    store at the same moment (db.write_together: group commit): the call's row, the event's
    row, what the event brings, and the call marked due (delivery/outbox.event_added); the
    call's row gets what the journal orders and finds it by (delivery/call_index.py) in the same
    statements. Answered only once committed."""
    now = utcnow()
    facts = call_index.facts_of(event.kind, event.request, zone(portal.timezone))

    def work(session: Session) -> tuple[str, str, int | None, list[FieldError]]:
        call_id, new_call = _call_row(session, portal.portal_id, event.key, now, facts)
        if new_call is not None:  # the call's first event: nothing to compare, already due
            event_id = _insert_event(session, call_id, event, now)
            if after is not None and event_id is not None:
                after(session, portal.portal_id, event_id, now)
            return new_call, str(CallState.QUEUED), event_id, []
        also = call_index.later_values(facts, now)
        event_id, differing = _add_to_call(session, portal, call_id, event, after, now, also)
        public_id, state = session.execute(
            select(Call.public_id, Call.state).where(Call.id == call_id)
        ).one()
        return public_id, state, event_id, differing

    public_id, state, event_id, differing = db.write_together(work)
    view = {"id": public_id, "state": state}
    if event_id is not None:  # logged once, with its outcome, by the caller (pbx/views.py)
        return Result(Code.ACCEPTED, call=view)
    if not differing:
        return Result(Code.REPEATED, call=view)
    names = ", ".join(d.field for d in differing)
    by = "PBX_CALL_ID" if "PBX_CALL_ID" in event.request else "CALL_ID"
    detail = (
        f"A {event.kind} of the call with this {by} was already accepted (call {public_id}) "
        f"with other {names}."
    )
    return Result(Code.CONFLICT, detail, tuple(differing), call=view)


_CALLS, _EVENTS = cast(Table, Call.__table__), cast(Table, CallEvent.__table__)


_CALL_VALUES = ("portal_id", "key", "public_id", "now", "started_at", "phone_digits", "extensions")
_EVENT_VALUES = ("call_id", "kind", "dedupe_key", "request", "now")


def _statements(dialect: str) -> tuple[Any, Any]:
    """The two inserts of `_store` (bound parameters, no ORM): the call's row, queued and due,
    events_version 1, with the journal's columns; and the event's row. Each ON CONFLICT DO
    NOTHING RETURNING id."""
    sqlite_db = dialect != "postgresql"
    call = (
        insert_for(_CALLS, sqlite_db=sqlite_db)
        .values(
            portal_id=bindparam("portal_id"),
            idempotency_key=bindparam("key"),
            public_id=bindparam("public_id"),
            state=CallState.QUEUED.value,
            next_attempt_at=bindparam("now"),
            created_at=bindparam("now"),
            updated_at=bindparam("now"),
            events_version=1,
            started_at=bindparam("started_at"),
            phone_digits=bindparam("phone_digits"),
            extensions=bindparam("extensions"),
        )
        .on_conflict_do_nothing(index_elements=["portal_id", "idempotency_key"])
        .returning(_CALLS.c.id)
    )
    event = (
        insert_for(_EVENTS, sqlite_db=sqlite_db)
        .values(
            call_id=bindparam("call_id"),
            kind=bindparam("kind"),
            dedupe_key=bindparam("dedupe_key"),
            request=bindparam("request"),
            state=EventState.QUEUED.value,
            created_at=bindparam("now"),
        )
        .on_conflict_do_nothing(index_elements=["call_id", "kind", "dedupe_key"])
        .returning(_EVENTS.c.id)
    )
    return call, event


_PREPARED: weakref.WeakKeyDictionary[Dialect, tuple[PreparedInsert, PreparedInsert]] = (
    weakref.WeakKeyDictionary()
)


def _prepared(connection: Connection) -> tuple[PreparedInsert, PreparedInsert]:
    """`_statements` compiled once per database (per engine's dialect), run on the driver's
    cursor (pbx/prepared.py: building and running a statement through SQLAlchemy cost more
    than the database's own work; docs/performance.md, Intake)."""
    dialect = connection.dialect
    prepared = _PREPARED.get(dialect)
    if prepared is None:
        call, event = _statements(dialect.name)
        prepared = (
            PreparedInsert.build(call, dialect, _CALL_VALUES),
            PreparedInsert.build(event, dialect, _EVENT_VALUES),
        )
        _PREPARED[dialect] = prepared
    return prepared


def _call_row(
    session: Session, portal_id: int, key: str, now: datetime, facts: call_index.Facts
) -> tuple[int, str | None]:
    """The id of the portal's call with this key, and its public id when inserted now (its first
    event: queued, due now, events_version 1, as outbox.event_added would leave it; its start,
    number and extensions from `facts`): INSERT … ON CONFLICT DO NOTHING, so concurrent first
    events of one call make one row."""
    public_id = new_public_id()
    connection = session.connection()
    values = {"portal_id": portal_id, "key": key, "public_id": public_id, "now": now}
    inserted = _prepared(connection)[0].run(
        connection, values | call_index.first_values(facts, now)
    )
    if inserted is not None:
        return int(inserted), public_id
    found = session.execute(
        select(Call.id).where(Call.portal_id == portal_id, Call.idempotency_key == key)
    ).scalar_one()
    return int(found), None


def _add_to_call(
    session: Session,
    portal: PortalContext,
    call_id: int,
    event: Event,
    after: AfterInsert | None,
    now: datetime,
    also: Mapping[str, Any],
) -> tuple[int | None, list[FieldError]]:
    """A later event of a known call: stored unless it repeats one (then the fields in which it
    differs), checked against the call's CALL_ID, and the call marked due (with `also`, the
    journal's columns: call_index.later_values)."""
    if event.kind == EventKind.ANSWER:
        event = _answer_in_turn(session, call_id, event)
    event_id = _insert_event(session, call_id, event, now)
    if event_id is None:
        return None, _differences(session, call_id, event)
    _refuse_contradiction(session, call_id, event)
    if after is not None:
        after(session, portal.portal_id, event_id, now)
    outbox.event_added(session, call_id, now, kind=event.kind, also=also)
    return event_id, []


def _answer_in_turn(session: Session, call_id: int, event: Event) -> Event:
    """An answer is a repeat only of the call's latest answer: the same employee answering
    again after someone else is a transfer back (A → B → A), a new event. Its key then counts
    the answers before it, so concurrent copies of one answer still end in one row. (A copy of
    an earlier answer delayed past a later one reads as a transfer back: a PBX retries within
    seconds, transfers take longer.)"""
    answers = session.execute(
        select(CallEvent.dedupe_key, CallEvent.request)
        .where(CallEvent.call_id == call_id, CallEvent.kind == EventKind.ANSWER)
        .order_by(CallEvent.id)
    ).all()
    if answers and answers[-1].request == event.request:
        return replace(event, dedupe_key=answers[-1].dedupe_key)
    if not answers:
        return event
    return replace(event, dedupe_key=f"{event.dedupe_key}:{len(answers)}")


def _insert_event(session: Session, call_id: int, event: Event, now: datetime) -> int | None:
    """Insert unless the call has this (kind, dedupe_key) already; the new event's id, or None."""
    connection = session.connection()
    values = {
        "call_id": call_id,
        "kind": event.kind.value,
        "dedupe_key": event.dedupe_key,
        "request": event.request,
        "now": now,
    }
    inserted = _prepared(connection)[1].run(connection, values)
    return None if inserted is None else int(inserted)


FIELDS_OF: dict[EventKind, tuple[str, ...]] = {
    EventKind.START: tuple(StartRequest.model_fields),
    EventKind.RING: tuple(RingRequest.model_fields),
    EventKind.ANSWER: tuple(AnswerRequest.model_fields),
    EventKind.FINISH: FIELDS,
    EventKind.RECORD: (*RecordRequest.model_fields, FILE),
}


def _differences(session: Session, call_id: int, event: Event) -> list[FieldError]:
    """The fields in which `event` differs from the call's stored event of its kind and key."""
    accepted = session.execute(
        select(CallEvent.request).where(
            CallEvent.call_id == call_id,
            CallEvent.kind == event.kind,
            CallEvent.dedupe_key == event.dedupe_key,
        )
    ).scalar_one()
    errors = []
    for name in FIELDS_OF[event.kind]:
        before, now = accepted.get(name), event.request.get(name)
        if before != now:
            errors.append(
                FieldError(name, f"accepted earlier as {_shown(before)}, now {_shown(now)}")
            )
    return errors


def _refuse_contradiction(session: Session, call_id: int, event: Event) -> None:
    """A start and a finish of one call naming different CALL_IDs (or one other than the CALL_ID
    Bitrix24 registered the call under) cannot both be true: _Refused (409 naming CALL_ID)."""
    mine = event.request.get("CALL_ID")
    if mine is None or event.kind not in (EventKind.START, EventKind.FINISH):
        return
    other = EventKind.FINISH if event.kind is EventKind.START else EventKind.START
    theirs = session.execute(
        select(CallEvent.request).where(CallEvent.call_id == call_id, CallEvent.kind == other)
    ).scalar_one_or_none()
    known, source = (theirs or {}).get("CALL_ID"), f"the call's {other}"
    if known is None:
        known = session.scalar(select(Call.bitrix_call_id).where(Call.id == call_id))
        source = "Bitrix24 registered the call"
    if known is None or known == mine:
        return
    public_id, state = session.execute(
        select(Call.public_id, Call.state).where(Call.id == call_id)
    ).one()
    error = FieldError(
        "CALL_ID", f"{source} as {_shown(known)}, this {event.kind} says {_shown(mine)}"
    )
    raise _Refused(
        Result(
            Code.CONFLICT,
            f"This {event.kind}'s CALL_ID contradicts its call's (call {public_id}).",
            (error,),
            call={"id": public_id, "state": state},
        )
    )


def _shown(value: Any) -> str:
    if value is None:
        return "absent"
    shown = json.dumps(value, ensure_ascii=False)
    return shown if len(shown) <= 60 else shown[:57] + "..."


# --- reading a call back ---------------------------------------------------------------------

_PUBLIC_ID = re.compile(r"^[0-9a-f]{32}$")


def find_call(db: Database, portal: PortalContext, public_id: str) -> Result:
    """A call of this portal by its public id; another portal's call is NOT_FOUND like a
    missing one, so ids reveal nothing across portals."""
    missing = Result(Code.NOT_FOUND, "No call with this id was accepted with this PBX key.")
    if not _PUBLIC_ID.match(public_id):
        return missing
    try:
        with db.read() as session:
            call = session.scalars(
                select(Call).where(Call.public_id == public_id, Call.portal_id == portal.portal_id)
            ).one_or_none()
            if call is None:
                return missing
            recording = session.scalars(
                select(CallRecording)
                .join(CallEvent, CallEvent.id == CallRecording.event_id)
                .where(CallEvent.call_id == call.id)
                .order_by(CallRecording.event_id)
            ).first()
            return Result(Code.FOUND, call=call_view(call, list(call.events), recording))
    except OperationalError:
        return Result(Code.STORE_UNAVAILABLE, "The call store is unavailable; ask again.")


def call_view(
    call: Call, events: Sequence[CallEvent] = (), recording: CallRecording | None = None
) -> dict[str, Any]:
    """What `GET /pbx/v1/calls/<id>` shows: the call's state, why it failed, Bitrix24's answer
    to the finish and the CALL_ID it registered the call under, the CRM entity it bound the call
    to, each event in arrival order and the recording (None without one)."""
    return {
        "id": call.public_id,
        "state": call.state,
        "error": call.error,
        "error_code": call.error_code,
        "result": call.result,
        "attempts": call.attempts,
        "CALL_ID": call.bitrix_call_id,
        "bitrix_call_id": call.bitrix_call_id,
        "crm_entity_type": call.crm_entity_type,
        "crm_entity_id": call.crm_entity_id,
        "created_at": _iso(call.created_at),
        "delivered_at": _iso(call.delivered_at),
        "events": [event_view(event) for event in events],
        "recording": recording_view(recording) if recording is not None else None,
    }


def event_view(event: CallEvent) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "state": event.state,
        "error": event.error,
        "note": event.note,
        "created_at": _iso(event.created_at),
        "delivered_at": _iso(event.delivered_at),
    }


def recording_view(recording: CallRecording) -> dict[str, Any]:
    return {
        "state": recording.state,
        "audio": recording.audio,
        "size": recording.size,
        "error": recording.error,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
