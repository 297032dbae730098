"""The events a PBX sends about a call: Bitrix24's own field names, checked and normalised.

One model per event (PRODUCT.md "The whole call"): `StartRequest` (the register page's
parameters, telephony-external-call-register.md), `RingRequest` (show's, -show.md), `AnswerRequest`
(hide's, -hide.md), `FinishRequest` (the finish page's, -finish.md, and for calls that were never
registered the register page's) and `RecordRequest` (attachRecord's, -attach-record.md).
`validate_start()`, `validate_ring()`, `validate_answer()`, `validate_finish()` and
`validate_record()` are the ways in: each names unknown fields, runs its model, then the rules
that span fields, and reports every bad field at once by its Bitrix24 name.

What normalisation means here (the stored `CallEvent.request` is the result, and a repeat of an
event is compared with it):
- Surrounding whitespace is dropped and an empty value (`""`, JSON `null`) counts as absent: form
  PBXs send every field, filled or not. Absent fields stay absent in the result.
- Control characters are refused (free text keeps tabs and line breaks). Invisible ones (Unicode
  format characters, category Cf: zero-width space, right-to-left override, byte order mark ...;
  and line separators) are refused in the identifiers that key a call (PBX_CALL_ID, CALL_ID),
  and dropped from numbers and names Bitrix24 matches on (PHONE_NUMBER, LINE_NUMBER,
  USER_PHONE_INNER, CRM_SOURCE, FILENAME) and from free text (FAILED_REASON, STATUS_CODE), where
  a refusal would lose the call (a PBX does not send a refused call again).
- Form values are strings: `"95"` becomes 95 where the page says integer; `"9.5"` does not.
  JSON numbers are accepted as numbers or as such strings; JSON integers for string fields
  (`"USER_PHONE_INNER": 201`) become strings.
- STATUS_CODE becomes one of the page's 13 codes (status_codes.py); a value the table does not
  know becomes OTHER and its raw text goes into FAILED_REASON. VOTE 0 means "no vote" (absent).
- Ring's employees are lists (one value, a JSON array, a repeated form key or comma-separated
  values), in the order sent, duplicates dropped.
- The result is a fixpoint: validating a stored request again gives the same request.

Decided later, by the delivery (so that fixing a portal setting and retrying works): the user from
USER_PHONE_INNER, the currency when COST_CURRENCY is absent, ADD_TO_CHAT's default, the time zone
of a CALL_START_DATE without an offset.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from b24app.bitrix.safety import InvalidURL, parse_url
from b24app.pbx import status_codes

MAX_ID = 2**31 - 1  # Bitrix24 keeps user ids and durations in 32-bit integer columns
MAX_ERRORS = 100  # an answer lists at most this many field errors
FAILED_REASON_LENGTH = 255
RAW_STATUS_LENGTH = 64  # how much of an unknown status is kept in FAILED_REASON
RECORD_URL_LENGTH = 2048


@dataclass(frozen=True)
class FieldError:
    """One bad field, by its Bitrix24 name, and why (plain words for the PBX's admin)."""

    field: str
    message: str


def _refuse(message: str) -> PydanticCustomError:
    return PydanticCustomError("b24app", message)


def _single(value: Any) -> Any:
    """Every field is one value; a JSON array or object, or a repeated form field, is not."""
    if isinstance(value, list | tuple):
        raise _refuse("must be given once, as a single value")
    if isinstance(value, dict):
        raise _refuse("must be a single value, not an object")
    return value


def text(max_length: int, *, multiline: bool = False) -> Callable[[Any], str]:
    """A string (a JSON integer is taken as its digits), trimmed, 1..max_length characters,
    without control characters (tabs and line breaks are allowed in `multiline` text) and, unless
    `multiline`, without invisible ones (`_invisible`): identifiers and numbers, which Bitrix24
    shows and matches on. Free text is `free_text`."""

    def check(value: Any) -> str:
        value = _single(value)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise _refuse("must be a string")
        value = value.strip()
        if not value:
            raise _refuse("must not be empty")
        if len(value) > max_length:
            raise _refuse(f"must be at most {max_length} characters")
        if (_CONTROL_BUT_BREAKS if multiline else _CONTROL).search(value):
            raise _refuse("must not contain control characters")
        hidden = None if multiline else _invisible(value)
        if hidden is not None:
            shown = f"U+{ord(hidden):04X} {unicodedata.name(hidden, '')}".strip()
            raise _refuse(
                "must not contain invisible characters such as zero-width spaces or direction "
                f"overrides (it holds {shown})"
            )
        if not _encodable(value):
            raise _refuse("must be valid Unicode text (it holds an unpaired surrogate)")
        return value

    return check


_LINE_BREAKS = "\t\n\r"
# Unicode's control characters (category Cc: U+0000-U+001F and U+007F-U+009F, fixed by the
# standard), found by one regex scan instead of a category look-up per character
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_BREAKS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


# Unicode's format characters (category Cf: zero-width space and joiners, direction marks and
# overrides, the byte order mark, the soft hyphen, tags ...) and the line and paragraph
# separators (Zl, Zp): invisible, or a line break, in a value Bitrix24 shows and matches on (a
# number "\u202e+1555" matches no CRM contact and is shown reversed). ASCII has none, so only
# other text is looked at character by character (the categories of the running Python's
# Unicode version, not a list copied here).
_INVISIBLE = frozenset({"Cf", "Zl", "Zp"})


def _invisible(value: str) -> str | None:
    """The first format character or line separator in `value`, None when it has none."""
    if value.isascii():
        return None
    return next((ch for ch in value if unicodedata.category(ch) in _INVISIBLE), None)


def _without_format(value: str) -> str:
    """`value` without its format characters (Cf): free text keeps its words, loses the rest."""
    if value.isascii():
        return value
    return "".join(ch for ch in value if unicodedata.category(ch) != "Cf")


def _without_invisible(value: str) -> str:
    """`value` without its format characters and line separators (_INVISIBLE)."""
    if value.isascii():
        return value
    return "".join(ch for ch in value if unicodedata.category(ch) not in _INVISIBLE)


def matched_text(max_length: int) -> Callable[[Any], str]:
    """Numbers and names Bitrix24 matches on and shows (PHONE_NUMBER, LINE_NUMBER,
    USER_PHONE_INNER, CRM_SOURCE, FILENAME): `text` after dropping invisible characters, which
    would only keep them from matching (a number copied from a web page or a chat often comes
    wrapped in direction marks, and a PBX does not send a refused call again); refused when
    nothing else is there. Identifiers that key a call (PBX_CALL_ID, CALL_ID) refuse them."""
    check = text(max_length)

    def drop(value: Any) -> str:
        value = _single(value)
        if isinstance(value, str):
            visible = _without_invisible(value)
            if value.strip() and not visible.strip():
                raise _refuse("must not be only invisible characters")
            value = visible
        return check(value)

    return drop


def free_text(max_length: int) -> Callable[[Any], str | None]:
    """Words for people (FAILED_REASON): `text` with tabs and line breaks, whose format
    characters (Cf) are dropped, not refused (a PBX does not send a refused call again, and a
    reason nobody matches on is not worth a lost call); None (absent) when nothing is left."""
    check = text(max_length, multiline=True)

    def drop(value: Any) -> str | None:
        value = _single(value)
        if isinstance(value, str):
            value = _without_format(value)
            if not value.strip():
                return None
        return check(value)

    return drop


def _encodable(value: str) -> bool:
    """JSON's "\\ud800" escapes decode to strings no database or UTF-8 encoder accepts."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_INTEGER = re.compile(r"^[+-]?[0-9]{1,18}$")
_NUMBER = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$")


def integer(low: int, high: int, example: str = "95") -> Callable[[Any], int]:
    """A whole number in [low, high]: 95, 95.0 (JSON) or "95" (form); never "9.5" or "abc"."""

    def check(value: Any) -> int:
        value = _single(value)
        number: int | None = None
        if isinstance(value, bool):
            number = None
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and _INTEGER.match(value.strip()):
            number = int(value.strip())
        if number is None:
            raise _refuse(f"must be a whole number such as {example}, not {_show(value)}")
        if not low <= number <= high:
            raise _refuse(_range(low, high))
        return number

    return check


def _range(low: int, high: int) -> str:
    if high - low <= 10:
        return "must be one of " + ", ".join(str(n) for n in range(low, high + 1))
    if low == 0:
        return f"must be 0 or more (at most {high})"
    return f"must be between {low} and {high}"


def number(value: Any) -> float:
    """A finite number ≥ 0: 12.5 (JSON) or "12.5" (form)."""
    value = _single(value)
    result: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str) and _NUMBER.match(value.strip()):
        result = float(value.strip())
    if result is None or not math.isfinite(result):
        raise _refuse(f"must be a number such as 12.5, not {_show(value)}")
    if result < 0:
        raise _refuse("must be 0 or more")
    return result


def flag(value: Any) -> int:
    """0 or 1 (JSON true/false too), as the pages' integer flags."""
    value = _single(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value.strip())
    raise _refuse(f"must be 0 or 1, not {_show(value)}")


def vote(value: Any) -> int | None:
    """1–5; 0 means "no vote", as the page says, and is dropped."""
    score = integer(0, 5, "5")(value)
    return score or None


def status(value: Any) -> str | None:
    """Any status text or number; status_codes.py maps it after the model is built. Format
    characters are dropped, as in free text (an unknown status is kept in FAILED_REASON); None
    (absent) when nothing is left."""
    value = _single(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _refuse("must be a string (a Bitrix24 code such as 200, or the PBX's own status)")
    value = _without_format(value)
    if not value.strip():
        return None
    # never refused for its content: what cannot be stored is replaced (it maps to OTHER anyway)
    text = value.strip()
    if not _CONTROL_BUT_BREAKS.search(text) and _encodable(text):
        return text  # nothing to replace (a status such as "200" or "ANSWER")
    return "".join(
        "\ufffd" if (_control(ch) and ch not in _LINE_BREAKS) or not _encodable(ch) else ch
        for ch in text
    )


def record_url(value: Any) -> str:
    """An absolute http(s) URL that Bitrix24 can fetch (safety.parse_url's rules, with a query)."""
    url = text(RECORD_URL_LENGTH)(value)
    try:
        parse_url(url, max_length=RECORD_URL_LENGTH, query=True)
    except InvalidURL as error:
        raise _refuse(
            f"{error}: it must be an http:// or https:// URL such as "
            "https://pbx.example.com/r/1.mp3"
        ) from None
    return url


_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?$", re.I
)


# A call's start, as written: years 1970 to 2099. Fixed, not "near now": a stored request must stay
# valid when validated again (a repeat, a redelivery) whenever that is; from 1970, the start of
# Unix time, since a PBX whose clock was never set sends its calls from then, and refusing them
# would lose them (a PBX does not send a refused call again). Any offset (under 24 h)
# or portal time zone moves it by less than a day, so the instant is always one datetime and the
# journal's started_at can hold (year 1 or 9999 with an offset overflowed: a 500).
START_DATE_RANGE: Final = (datetime(1970, 1, 1), datetime(2099, 12, 31, 23, 59, 59, 999999))


def call_start_date(value: Any) -> str:
    """ISO-8601 date and time, offset optional, in the years 1970-2099 as written; kept as sent
    (the delivery adds the offset)."""
    when = text(64)(value)
    try:
        moment = datetime.fromisoformat(when) if _DATE_TIME.match(when) else None
    except ValueError:
        moment = None
    if moment is None:
        raise _refuse(
            "must be an ISO-8601 date and time such as 2026-03-07T10:20:30+03:00 "
            "(the offset may be left out: the portal's time zone is used)"
        )
    low, high = START_DATE_RANGE
    if not low <= moment.replace(tzinfo=None) <= high:
        raise _refuse(
            f"must be between {low:%Y-%m-%d} and {high:%Y-%m-%d} (a call's start, as written, "
            f"before its offset; this one is in the year {moment.year})"
        )
    return when


def phone_number(value: Any) -> str:
    """The client's number: it must contain digits (register refuses it otherwise)."""
    phone = matched_text(64)(value)
    if not any(ch in "0123456789" for ch in phone):
        raise _refuse("must be a phone number (it has no digits)")
    return phone


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _v(check: Callable[[Any], Any]) -> BeforeValidator:
    return BeforeValidator(check)


Text = Annotated[str | None, _v(text(255))]


class FinishRequest(BaseModel):
    """`POST /pbx/v1/calls/finish`: the finish page's parameters plus PBX_CALL_ID and, for a call
    without CALL_ID, the register page's. Either CALL_ID or PBX_CALL_ID is required; see
    `validate_finish` for the rules that span fields."""

    model_config = ConfigDict(extra="forbid", title="FinishRequest")

    CALL_ID: Annotated[str | None, _v(text(250))] = Field(
        None,
        max_length=250,
        description="CALL_ID from telephony.externalCall.register, when the PBX registered the "
        "call itself. Without it PBX_CALL_ID is required, and the call is registered first: by "
        "its start (POST /pbx/v1/calls/start), or with the registration fields given here.",
        examples=["externalCall.716f1cb73def9700a23842adf9c4c568.1773130779"],
    )
    PBX_CALL_ID: Annotated[str | None, _v(text(255))] = Field(
        None,
        max_length=255,
        description="The PBX's own unique id of the call (Asterisk's UNIQUEID, ...): the "
        "idempotency key. A repeat with the same PBX_CALL_ID is the same call. Sent to "
        "Bitrix24 as EXTERNAL_CALL_ID when the call is registered.",
        examples=["1709884800.42"],
    )
    USER_ID: Annotated[int | None, _v(integer(1, MAX_ID, "1269"))] = Field(
        None, ge=1, le=MAX_ID, description="The Bitrix24 user who took the call.", examples=[1269]
    )
    USER_PHONE_INNER: Annotated[str | None, _v(matched_text(64))] = Field(
        None,
        max_length=64,
        description="The user's extension; looked up in the portal's extension → user mapping, "
        "else passed to Bitrix24 as is. Without USER_ID and USER_PHONE_INNER: the last one to "
        "answer, else the start's user, else the portal's fallback user (422 if a call without "
        "a start has none).",
        examples=["201"],
    )
    DURATION: Annotated[int | None, _v(integer(0, MAX_ID))] = Field(
        None,
        ge=0,
        le=MAX_ID,
        description="Required: talk time in seconds (Asterisk BILLSEC); 0 for a call nobody "
        "answered.",
        examples=[95],
    )
    COST: Annotated[float | None, _v(number)] = Field(
        None, ge=0, description="The call's cost. Bitrix24's default: 0.", examples=[1.5]
    )
    COST_CURRENCY: str | None = Field(
        None,
        pattern="^[A-Z]{3}$",
        description="A currency of the portal (crm.currency.list); without it the portal's "
        "configured currency is used.",
        examples=["EUR"],
    )
    STATUS_CODE: Annotated[str | None, _v(status)] = Field(
        None,
        description="One of Bitrix24's codes (200, 304, 603, 603-S, 403, 404, 486, 484, 503, 480, "
        "402, 423, OTHER) or the PBX's own status: Asterisk DIALSTATUS, CDR disposition, Q.850 "
        "cause, SIP response (see docs/pbx-status-codes.md). Never refused: an unknown value "
        "becomes OTHER and is kept in FAILED_REASON. Bitrix24's default: 200 if DURATION > 0, "
        "else 304.",
        examples=["ANSWER", "200", "NO ANSWER", "17"],
    )
    FAILED_REASON: Annotated[str | None, _v(free_text(FAILED_REASON_LENGTH))] = Field(
        None,
        max_length=FAILED_REASON_LENGTH,
        description="Why the call failed, in words.",
        examples=["Caller hung up"],
    )
    RECORD_URL: Annotated[str | None, _v(record_url)] = Field(
        None,
        max_length=RECORD_URL_LENGTH,
        description="An http(s) URL of the call's recording (mp3 or wav): b24app downloads it "
        "and attaches it after the finish, as POST /pbx/v1/calls/record does.",
        examples=["https://pbx.example.com/recordings/1709884800.42.mp3"],
    )
    VOTE: Annotated[int | None, _v(vote)] = Field(
        None, ge=1, le=5, description="The call's rating, 1–5; 0 means none.", examples=[5]
    )
    ADD_TO_CHAT: Annotated[int | None, _v(flag)] = Field(
        None,
        ge=0,
        le=1,
        description="1: post a message about the call in the user's chat. Without it the "
        "portal's setting is used (default 0).",
        examples=[0],
    )
    PHONE_NUMBER: Annotated[str | None, _v(phone_number)] = Field(
        None,
        max_length=64,
        description="Registration (no CALL_ID and no start; then with TYPE and CALL_START_DATE):"
        " the client's phone number.",
        examples=["+15551234567"],
    )
    TYPE: Annotated[int | None, _v(integer(1, 5, "2"))] = Field(
        None,
        ge=1,
        le=5,
        description="Registration (no CALL_ID and no start; then with PHONE_NUMBER and "
        "CALL_START_DATE): 1 outgoing, 2 incoming, 3 incoming redirected, 4 callback, "
        "5 information call.",
        examples=[2],
    )
    CALL_START_DATE: Annotated[str | None, _v(call_start_date)] = Field(
        None,
        description="Registration (no CALL_ID and no start; then with PHONE_NUMBER and TYPE): "
        "when the call started, ISO-8601, between 1970-01-01 and 2099-12-31 as written; "
        "without an offset the portal's time zone applies.",
        examples=["2026-03-07T10:20:30+03:00"],
    )
    LINE_NUMBER: Annotated[str | None, _v(matched_text(50))] = Field(
        None,
        max_length=50,
        description="Registration (no CALL_ID): the external line's number.",
        examples=["74951234567"],
    )
    CRM_CREATE: Annotated[int | None, _v(flag)] = Field(
        None,
        ge=0,
        le=1,
        description="Registration (no CALL_ID): 1 creates a CRM lead for an unknown number.",
        examples=[1],
    )
    SHOW: Annotated[int | None, _v(flag)] = Field(
        None,
        ge=0,
        le=1,
        description="Registration (no CALL_ID): 1 shows the call card to the user (default 0: "
        "the call has already ended).",
        examples=[0],
    )

    @field_validator("COST_CURRENCY", mode="before")
    @classmethod
    def _currency(cls, value: Any, info: ValidationInfo) -> str:
        """One of the portal's stored currencies; any 3-letter code while none are stored."""
        if not isinstance(_single(value), str):
            raise _refuse("must be a string such as EUR")
        code = text(16)(value).upper()
        known = list((info.context or {}).get("currencies") or [])
        if known and code not in known:
            raise _refuse(f"must be a currency of this portal: {', '.join(known)}")
        if not re.fullmatch("[A-Z]{3}", code):
            raise _refuse("must be a 3-letter currency code such as EUR")
        return code

    @model_validator(mode="after")
    def _map_status(self) -> FinishRequest:
        """STATUS_CODE as one of the page's 13 codes; an unknown one kept in FAILED_REASON."""
        if self.STATUS_CODE is None:
            return self
        raw = self.STATUS_CODE
        self.STATUS_CODE = status_codes.to_bitrix(raw, duration=self.DURATION or 0)
        if self.STATUS_CODE == status_codes.OTHER and status_codes.normalise(raw) != "OTHER":
            self.FAILED_REASON = _with_raw_status(self.FAILED_REASON, raw)
        return self


def _with_raw_status(reason: str | None, raw: str) -> str:
    shown = raw if len(raw) <= RAW_STATUS_LENGTH else raw[: RAW_STATUS_LENGTH - 3] + "..."
    suffix = f"PBX status: {shown}"
    if not reason:
        return suffix
    room = FAILED_REASON_LENGTH - len(suffix) - 2
    return f"{reason[:room]}; {suffix}"


FIELDS: Final[tuple[str, ...]] = tuple(FinishRequest.model_fields)
REGISTRATION_REQUIRED: Final = ("PHONE_NUMBER", "TYPE", "CALL_START_DATE")
# Required on every finish: the finish page marks DURATION required
# (reference/bitrix24-docs-ru/api-reference/telephony/telephony-external-call-finish.md).
FINISH_REQUIRED: Final = ("DURATION",)
EMPLOYEES: Final = ("USER_ID", "USER_PHONE_INNER")
MAX_RUNG = 100  # employees in one ring: a ring group, never a whole company


def validate_finish(
    data: Mapping[str, Any], *, currencies: Sequence[str] = (), has_fallback_user: bool = False
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """The normalised finish (absent fields left out), or every reason it is refused.

    `currencies` are the portal's stored ones (no network here); `has_fallback_user` says whether
    a call without USER_ID and USER_PHONE_INNER still has someone to take it. A finish with
    PBX_CALL_ID and none of REGISTRATION_REQUIRED is registered by its call's start (which also
    names the user); with some of them but not all it is refused naming the missing ones.
    """
    return _validate(
        FinishRequest,
        data,
        context={"currencies": list(currencies)},
        cross=lambda known: _finish_rules(known, has_fallback_user=has_fallback_user),
        examples="CALL_ID, DURATION",
    )


def _validate(
    model: type[BaseModel],
    data: Mapping[str, Any],
    *,
    cross: Callable[[Mapping[str, Any]], list[FieldError]],
    context: dict[str, Any] | None = None,
    examples: str = "PBX_CALL_ID, USER_ID",
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """Unknown fields, the model's own checks and the `cross` rules, all at once, in the model's
    field order (at most MAX_ERRORS; unknown fields, which come last, are not even looked at
    past the first MAX_ERRORS); else the model's values without the absent ones."""
    fields = tuple(model.model_fields)
    present = {name: value for name, value in data.items() if not _blank(value)}
    unknown = itertools.islice((name for name in data if name not in fields), MAX_ERRORS)
    errors = [
        FieldError(str(name)[:100], _unknown(str(name), fields, examples)) for name in unknown
    ]
    known = {name: value for name, value in present.items() if name in fields}
    instance: BaseModel | None = None
    try:
        instance = model.model_validate(known, context=context or {})
    except ValidationError as exc:
        errors += [_field_error(error) for error in exc.errors()]
    errors += cross(known)
    if errors:
        order = {name: index for index, name in enumerate(fields)}
        errors.sort(key=lambda e: order.get(e.field, len(fields)))
        return None, errors[:MAX_ERRORS]
    assert instance is not None
    return instance.model_dump(exclude_none=True), []


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _unknown(name: str, fields: Sequence[str], examples: str) -> str:
    close = difflib.get_close_matches(name.upper(), fields, n=1, cutoff=0.8)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown field{hint} (field names are Bitrix24's, e.g. {examples})"


def _field_error(error: Any) -> FieldError:
    location = error.get("loc") or ("request",)
    return FieldError(str(location[0]), str(error.get("msg", "is invalid")))


def _finish_rules(known: Mapping[str, Any], *, has_fallback_user: bool) -> list[FieldError]:
    """Rules on which fields are present, checked even when some values are bad."""
    errors = [
        FieldError(name, "is required: the talk time in seconds (0 for a call nobody answered)")
        for name in FINISH_REQUIRED
        if name not in known
    ]
    registration = [name for name in REGISTRATION_REQUIRED if name in known]
    from_start = "CALL_ID" not in known and "PBX_CALL_ID" in known and not registration
    if "CALL_ID" not in known:
        if "PBX_CALL_ID" not in known:
            why = "either CALL_ID (a registered call) or PBX_CALL_ID (the PBX's id) is required"
            errors += [FieldError("CALL_ID", why), FieldError("PBX_CALL_ID", why)]
            registration = list(REGISTRATION_REQUIRED)  # name every one that is missing
        if registration:
            why = (
                "is required without CALL_ID: the call is registered in Bitrix24 first "
                "(or leave out PHONE_NUMBER, TYPE and CALL_START_DATE: the call's start "
                "registers it)"
            )
            errors += [FieldError(n, why) for n in REGISTRATION_REQUIRED if n not in known]
    if not from_start:
        errors += _user_rules(known, has_fallback_user=has_fallback_user)
    return errors


def _user_rules(known: Mapping[str, Any], *, has_fallback_user: bool) -> list[FieldError]:
    if has_fallback_user or any(name in known for name in EMPLOYEES):
        return []
    why = "USER_ID or USER_PHONE_INNER is required: this portal has no fallback user"
    return [FieldError(name, why) for name in EMPLOYEES]


def _required(known: Mapping[str, Any], names: Sequence[str], why: str) -> list[FieldError]:
    return [FieldError(name, f"is required: {why}") for name in names if name not in known]


# --- the other events of a call (PRODUCT.md "The whole call") ------------------------------

PbxCallId = Annotated[str | None, _v(text(255))]
PBX_CALL_ID_WHY = "the PBX's own id of the call, the same in every event of the call"


def _pbx_call_id(description: str) -> Any:
    return Field(None, max_length=255, description=description, examples=["1709884800.42"])


def crm_entity_type(value: Any) -> str:
    """CONTACT, COMPANY or LEAD (the register page's values), in any letter case."""
    kind = text(16)(value).upper()
    if kind not in CRM_ENTITY_TYPES:
        raise _refuse("must be one of " + ", ".join(CRM_ENTITY_TYPES))
    return kind


CRM_ENTITY_TYPES: Final = ("CONTACT", "COMPANY", "LEAD")


class StartRequest(BaseModel):
    """`POST /pbx/v1/calls/start`: the register page's parameters, keyed by PBX_CALL_ID (sent
    to Bitrix24 as EXTERNAL_CALL_ID). With CALL_ID (a call Bitrix24 registered itself, as in
    click-to-call) nothing is registered: the PBX's call is bound to that CALL_ID."""

    model_config = ConfigDict(extra="forbid", title="StartRequest")

    PBX_CALL_ID: PbxCallId = _pbx_call_id(
        "Required: the PBX's own unique id of the call (Asterisk's UNIQUEID, ...): every later "
        "event of the call names it. Sent to Bitrix24 as EXTERNAL_CALL_ID."
    )
    PHONE_NUMBER: Annotated[str | None, _v(phone_number)] = Field(
        None, max_length=64, description="Required: the client's phone number.",
        examples=["+15551234567"],
    )  # fmt: skip
    TYPE: Annotated[int | None, _v(integer(1, 5, "2"))] = Field(
        None,
        ge=1,
        le=5,
        description="Required: 1 outgoing, 2 incoming, 3 incoming redirected, 4 callback, "
        "5 information call.",
        examples=[2],
    )
    USER_ID: Annotated[int | None, _v(integer(1, MAX_ID, "1269"))] = Field(
        None, ge=1, le=MAX_ID, description="The Bitrix24 user the call is registered for.",
        examples=[1269],
    )  # fmt: skip
    USER_PHONE_INNER: Annotated[str | None, _v(matched_text(64))] = Field(
        None,
        max_length=64,
        description="The user's extension; looked up in the portal's extension → user mapping, "
        "else passed to Bitrix24 as is. Without USER_ID and USER_PHONE_INNER the portal's "
        "fallback user is used (422 if it has none).",
        examples=["201"],
    )
    LINE_NUMBER: Annotated[str | None, _v(matched_text(50))] = Field(
        None,
        max_length=50,
        description="The external line's number (recommended: Bitrix24 binds the call to it).",
        examples=["74951234567"],
    )
    CALL_START_DATE: Annotated[str | None, _v(call_start_date)] = Field(
        None,
        description="When the call started, ISO-8601, between 1970-01-01 and 2099-12-31 as "
        "written; without an offset the portal's time zone applies. Default: when b24app "
        "received the start.",
        examples=["2026-03-07T10:20:30+03:00"],
    )
    CRM_CREATE: Annotated[int | None, _v(flag)] = Field(
        None, ge=0, le=1, description="1 creates a CRM lead for an unknown number (default 0).",
        examples=[1],
    )  # fmt: skip
    CRM_SOURCE: Annotated[str | None, _v(matched_text(50))] = Field(
        None,
        max_length=50,
        description="The CRM source of a created lead (STATUS_ID from crm.status.list, "
        "ENTITY_ID SOURCE).",
        examples=["CALL"],
    )
    CRM_ENTITY_TYPE: Annotated[str | None, _v(crm_entity_type)] = Field(
        None,
        description="The CRM entity to bind the call to: CONTACT, COMPANY or LEAD (with "
        "CRM_ENTITY_ID).",
        examples=["CONTACT"],
    )
    CRM_ENTITY_ID: Annotated[int | None, _v(integer(1, MAX_ID, "42"))] = Field(
        None, ge=1, le=MAX_ID, description="The CRM entity's id (with CRM_ENTITY_TYPE).",
        examples=[42],
    )  # fmt: skip
    SHOW: Annotated[int | None, _v(flag)] = Field(
        None,
        ge=0,
        le=1,
        description="1 shows the call card to the user at once. Without it the portal's "
        "setting show_card is used (default 1).",
        examples=[1],
    )
    ADD_TO_CHAT: Annotated[int | None, _v(flag)] = Field(
        None,
        ge=0,
        le=1,
        description="1: post a message about the call in the user's chat. Without it the "
        "portal's setting is used (default 0).",
        examples=[0],
    )
    CALL_ID: Annotated[str | None, _v(text(250))] = Field(
        None,
        max_length=250,
        description="A CALL_ID Bitrix24 registered itself (click-to-call, callback: the "
        "OnExternalCallStart event's): nothing is registered, the PBX's call is bound to it.",
        examples=["externalCall.716f1cb73def9700a23842adf9c4c568.1773130779"],
    )


def validate_start(
    data: Mapping[str, Any], *, has_fallback_user: bool = False
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """The normalised start, or every reason it is refused. CALL_START_DATE is not filled in
    here when absent (the delivery uses the event's arrival), so that repeats compare equal."""

    def rules(known: Mapping[str, Any]) -> list[FieldError]:
        errors = _required(known, ["PBX_CALL_ID"], PBX_CALL_ID_WHY)
        errors += _required(known, ["PHONE_NUMBER"], "the client's phone number")
        errors += _required(known, ["TYPE"], "1 outgoing, 2 incoming, 3 incoming redirected, "
                            "4 callback, 5 information call")  # fmt: skip
        errors += _user_rules(known, has_fallback_user=has_fallback_user)
        pair = ("CRM_ENTITY_TYPE", "CRM_ENTITY_ID")
        for name, other in (pair, pair[::-1]):
            if other in known and name not in known:
                errors.append(FieldError(name, f"is required with {other}"))
        return errors

    return _validate(StartRequest, data, cross=rules)


def employees(check: Callable[[Any], Any]) -> Callable[[Any], list[Any] | None]:
    """One employee or several: a single value, a JSON array, a repeated form key, or values
    separated by commas; each checked by `check`. Order kept, duplicates and blanks dropped;
    None when none is left; at most MAX_RUNG distinct ones, refused as soon as one more is read
    (so a list of thousands costs no more than MAX_RUNG + 1 checks)."""

    def check_all(value: Any) -> list[Any] | None:
        found: dict[Any, None] = {}  # an ordered set
        for piece in _pieces(value):
            if _blank(piece):
                continue
            try:
                one = check(piece)
            except PydanticCustomError as error:
                shown, message = _show(piece), error.message()
                raise _refuse(message if shown in message else f"{shown}: {message}") from None
            found[one] = None
            if len(found) > MAX_RUNG:
                raise _refuse(f"must name at most {MAX_RUNG} employees")
        return list(found) or None

    return check_all


def _pieces(value: Any) -> Iterator[Any]:
    """The values of a single value, a list (JSON array or repeated form key) and of each
    string's comma-separated parts, lazily."""
    for item in value if isinstance(value, list | tuple) else [value]:
        if isinstance(item, str):
            yield from item.split(",")
        else:
            yield item


class RingRequest(BaseModel):
    """`POST /pbx/v1/calls/ring`: whose phones ring → telephony.externalCall.show to them.
    At least one employee, by USER_ID and/or USER_PHONE_INNER; stored as lists."""

    model_config = ConfigDict(extra="forbid", title="RingRequest")

    PBX_CALL_ID: PbxCallId = _pbx_call_id("Required: " + PBX_CALL_ID_WHY + ".")
    USER_ID: Annotated[list[int] | None, _v(employees(integer(1, MAX_ID, "1269")))] = Field(
        None,
        max_length=MAX_RUNG,
        description="The Bitrix24 users whose phones ring: one id, a JSON array, a repeated "
        "form field or ids separated by commas.",
        examples=[[1269, 1270]],
    )
    USER_PHONE_INNER: Annotated[list[str] | None, _v(employees(matched_text(64)))] = Field(
        None,
        max_length=MAX_RUNG,
        description="The extensions that ring (looked up in the portal's mapping): one, a JSON "
        "array, a repeated form field or extensions separated by commas.",
        examples=[["201", "202"]],
    )


def validate_ring(data: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """The normalised ring ({"PBX_CALL_ID", "USER_ID": [ints], "USER_PHONE_INNER": [strs]}, a
    list left out when empty), or every reason it is refused."""

    def rules(known: Mapping[str, Any]) -> list[FieldError]:
        errors = _required(known, ["PBX_CALL_ID"], PBX_CALL_ID_WHY)
        if not any(name in known for name in EMPLOYEES):
            why = "USER_ID or USER_PHONE_INNER is required: who is the call ringing for?"
            errors += [FieldError(name, why) for name in EMPLOYEES]
        return errors

    request, errors = _validate(RingRequest, data, cross=rules)
    rung = len((request or {}).get("USER_ID", [])) + len(
        (request or {}).get("USER_PHONE_INNER", [])
    )
    if request is not None and rung > MAX_RUNG:
        why = f"at most {MAX_RUNG} employees in one ring (USER_ID and USER_PHONE_INNER together)"
        return None, [FieldError(name, why) for name in EMPLOYEES]
    return request, errors


def one_extension(value: Any) -> str:
    """One extension: text without commas (a list of them is a ring, not an answer)."""
    extension = matched_text(64)(value)
    if "," in extension:
        raise _refuse("must be one extension: one employee answers")
    return extension


class AnswerRequest(BaseModel):
    """`POST /pbx/v1/calls/answer`: who answered → telephony.externalCall.hide from everyone
    else shown the card. A later answer by someone else is a transfer."""

    model_config = ConfigDict(extra="forbid", title="AnswerRequest")

    PBX_CALL_ID: PbxCallId = _pbx_call_id("Required: " + PBX_CALL_ID_WHY + ".")
    USER_ID: Annotated[int | None, _v(integer(1, MAX_ID, "1269"))] = Field(
        None, ge=1, le=MAX_ID, description="The Bitrix24 user who answered (or USER_PHONE_INNER).",
        examples=[1269],
    )  # fmt: skip
    USER_PHONE_INNER: Annotated[str | None, _v(one_extension)] = Field(
        None,
        max_length=64,
        description="The extension that answered (or USER_ID), looked up in the portal's mapping.",
        examples=["201"],
    )


def validate_answer(data: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """The normalised answer (exactly one employee), or every reason it is refused."""

    def rules(known: Mapping[str, Any]) -> list[FieldError]:
        errors = _required(known, ["PBX_CALL_ID"], PBX_CALL_ID_WHY)
        given = [name for name in EMPLOYEES if name in known]
        if not given:
            why = "USER_ID or USER_PHONE_INNER is required: who answered?"
            errors += [FieldError(name, why) for name in EMPLOYEES]
        elif len(given) > 1:
            why = "give one employee, as USER_ID or as USER_PHONE_INNER, not both"
            errors += [FieldError(name, why) for name in EMPLOYEES]
        return errors

    return _validate(AnswerRequest, data, cross=rules)


def filename(value: Any) -> str:
    """A file's name without a folder (the stored name gets the extension of its content)."""
    name = matched_text(255)(value)
    if "/" in name or "\\" in name or name in (".", ".."):
        raise _refuse("must be a file name without a folder, such as 1709884800.42.mp3")
    return name


class RecordRequest(BaseModel):
    """`POST /pbx/v1/calls/record`: the call's recording, attached after the finish with
    telephony.externalCall.attachRecord. Exactly one of RECORD_URL (b24app downloads it) or the
    multipart file part FILE (the intake's, not a field of this model)."""

    model_config = ConfigDict(extra="forbid", title="RecordRequest")

    PBX_CALL_ID: PbxCallId = _pbx_call_id("Required: " + PBX_CALL_ID_WHY + ".")
    RECORD_URL: Annotated[str | None, _v(record_url)] = Field(
        None,
        max_length=RECORD_URL_LENGTH,
        description="An http(s) URL of the recording (mp3 or wav), which b24app downloads; or "
        "send the file itself as the multipart part FILE.",
        examples=["https://pbx.example.com/recordings/1709884800.42.mp3"],
    )
    FILENAME: Annotated[str | None, _v(filename)] = Field(
        None,
        max_length=255,
        description="The name the recording gets in Bitrix24 (its extension follows the "
        "content: .mp3 or .wav). Default: the uploaded file's name, else PBX_CALL_ID.",
        examples=["1709884800.42.mp3"],
    )


FILE = "FILE"  # the multipart part of /calls/record that holds the recording itself


def validate_record(
    data: Mapping[str, Any], *, files: int = 0
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """The normalised record fields, or every reason it is refused. `files` is how many
    multipart file parts named FILE came with them (exactly one of RECORD_URL and one FILE)."""
    text_fields = {name: value for name, value in data.items() if name != FILE}

    def rules(known: Mapping[str, Any]) -> list[FieldError]:
        errors = _required(known, ["PBX_CALL_ID"], PBX_CALL_ID_WHY)
        if not _blank(data.get(FILE)):
            why = "must be the file itself: a file part of a multipart/form-data body"
            errors.append(FieldError(FILE, why))
        elif files > 1:
            errors.append(FieldError(FILE, "must be given once: one recording per call"))
        elif ("RECORD_URL" in known) == (files == 1):
            why = "give exactly one of RECORD_URL (b24app downloads it) and FILE (the file itself)"
            errors += [FieldError("RECORD_URL", why), FieldError(FILE, why)]
        return errors

    return _validate(RecordRequest, text_fields, cross=rules)
