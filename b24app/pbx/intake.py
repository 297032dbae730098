"""The PBX intake: read a body, validate it, store the call once. No Flask, no Bitrix24.

Every function answers with a `Result` carrying a machine-readable `Code`; the HTTP layer
(problems.py) turns codes into answers in one place. The intake is fast on purpose: one key lookup
(auth.py), one insert. Delivery happens later, in the worker, from the stored `Call` row.

Idempotency: a call is keyed per portal by PBX_CALL_ID, else by "call:" + CALL_ID. The insert is
`INSERT … ON CONFLICT DO NOTHING RETURNING public_id` on both PostgreSQL and SQLite, so concurrent
duplicates can race freely: exactly one row wins, and every loser reads that row and compares its
normalised request with its own: equal → the same id (REPEATED), different → CONFLICT naming the
fields that differ. On PostgreSQL (READ COMMITTED) the losing insert waits for the winner's commit,
so the following read sees the row; on SQLite the write transaction (`BEGIN IMMEDIATE`) serialises.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from b24app import textbody
from b24app.db import Database
from b24app.logs import get_logger
from b24app.models import Call, new_public_id
from b24app.pbx.schemas import FIELDS, FieldError, validate_finish

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
    fields: dict[str, Any] = {}
    for key, value in pairs:
        name = "" if key is None else str(key)  # a multipart part may come without a name
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = value
    return fields


class _Duplicates(dict[str, Any]):
    """A JSON object that remembers which of its keys were given more than once."""

    repeated: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Duplicates:
    obj = _Duplicates()
    obj.repeated = []
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


# --- accepting a call ------------------------------------------------------------------------


def idempotency_key(request: Mapping[str, Any]) -> str:
    """PBX_CALL_ID if given, else "call:" + CALL_ID (ISSUE 4's agreed key)."""
    if "PBX_CALL_ID" in request:
        return str(request["PBX_CALL_ID"])
    return "call:" + str(request["CALL_ID"])


def accept_finish(db: Database, portal: PortalContext, fields: Mapping[str, Any]) -> Result:
    """Validate a finish request and store it once (see the module docstring)."""
    request, errors = validate_finish(
        fields, currencies=portal.currencies, has_fallback_user=portal.has_fallback_user
    )
    if request is None:
        names = ", ".join(dict.fromkeys(e.field for e in errors))
        return Result(Code.INVALID_FIELDS, f"Invalid fields: {names}.", tuple(errors))
    try:
        return _store(db, portal, idempotency_key(request), request)
    except OperationalError as error:  # unreachable, or locked for longer than the busy timeout
        log.warning("intake: database unavailable", error=type(error).__name__)
        return Result(Code.STORE_UNAVAILABLE, "The call store is unavailable; send it again.")


def _store(db: Database, portal: PortalContext, key: str, request: dict[str, Any]) -> Result:
    canonical = json.loads(json.dumps(request))  # what the JSON column gives back
    with db.write() as session:  # committed when the block ends, before anyone is answered
        public_id = _insert(session, portal.portal_id, key, canonical)
        if public_id is None:
            existing = session.scalars(
                select(Call).where(Call.portal_id == portal.portal_id, Call.idempotency_key == key)
            ).one()
            view = {"id": existing.public_id, "state": existing.state}
            differing = _differences(existing.request, canonical)
    if public_id is not None:
        log.info("call queued", member_id=portal.member_id, call=public_id)
        return Result(Code.ACCEPTED, call={"id": public_id, "state": "queued"})
    if not differing:
        log.info("call repeated", member_id=portal.member_id, call=view["id"])
        return Result(Code.REPEATED, call=view)
    names = ", ".join(d.field for d in differing)
    by = "PBX_CALL_ID" if "PBX_CALL_ID" in request else "CALL_ID"
    detail = f"A call with this {by} was already accepted as {view['id']} with other {names}."
    log.info("call conflict", member_id=portal.member_id, call=view["id"], fields=names)
    return Result(Code.CONFLICT, detail, tuple(differing), call=view)


def _insert(session: Session, portal_id: int, key: str, request: dict[str, Any]) -> str | None:
    """Insert unless the (portal, key) row exists; the new public id, or None."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Call)
        .values(
            portal_id=portal_id, idempotency_key=key, request=request, public_id=new_public_id()
        )
        .on_conflict_do_nothing(index_elements=["portal_id", "idempotency_key"])
        .returning(Call.public_id)
    )
    return session.execute(statement).scalar_one_or_none()


def _differences(accepted: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    errors = []
    for name in FIELDS:
        before, now = accepted.get(name), new.get(name)
        if before != now:
            errors.append(
                FieldError(name, f"accepted earlier as {_shown(before)}, now {_shown(now)}")
            )
    return errors


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
    except OperationalError:
        return Result(Code.STORE_UNAVAILABLE, "The call store is unavailable; ask again.")
    return missing if call is None else Result(Code.FOUND, call=call_view(call))


def call_view(call: Call) -> dict[str, Any]:
    """What `GET /pbx/v1/calls/<id>` shows: state, why it failed, Bitrix24's answer."""
    return {
        "id": call.public_id,
        "state": call.state,
        "error": call.error,
        "error_code": call.error_code,
        "result": call.result,
        "attempts": call.attempts,
        "bitrix_call_id": call.bitrix_call_id,
        "created_at": _iso(call.created_at),
        "delivered_at": _iso(call.delivered_at),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
