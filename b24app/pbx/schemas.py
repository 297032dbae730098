"""The finish request a PBX sends: Bitrix24's own field names, checked and normalised.

`FinishRequest` follows the finish page's parameter table (telephony-external-call-finish.md) and,
for calls that were never registered, the register page's (telephony-external-call-register.md).
`validate_finish()` is the one way in: it names unknown fields, runs the model, then the rules that
span fields, and reports every bad field at once by its Bitrix24 name.

What normalisation means here (the stored `Call.request` is the result, and a repeat of a call is
compared with it):
- Surrounding whitespace is dropped and an empty value (`""`, JSON `null`) counts as absent: form
  PBXs send every field, filled or not. Absent fields stay absent in the result.
- Form values are strings: `"95"` becomes 95 where the page says integer; `"9.5"` does not.
  JSON numbers are accepted as numbers or as such strings; JSON integers for string fields
  (`"USER_PHONE_INNER": 201`) become strings.
- STATUS_CODE becomes one of the page's 13 codes (status_codes.py); a value the table does not
  know becomes OTHER and its raw text goes into FAILED_REASON. VOTE 0 means "no vote" (absent).
- The result is a fixpoint: validating a stored request again gives the same request.

Decided later, by the delivery (so that fixing a portal setting and retrying works): the user from
USER_PHONE_INNER, the currency when COST_CURRENCY is absent, ADD_TO_CHAT's default, the time zone
of a CALL_START_DATE without an offset.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
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
    without control characters (tabs and line breaks are allowed in `multiline` text)."""

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
        allowed = _LINE_BREAKS if multiline else ""
        if any(_control(ch) and ch not in allowed for ch in value):
            raise _refuse("must not contain control characters")
        if not _encodable(value):
            raise _refuse("must be valid Unicode text (it holds an unpaired surrogate)")
        return value

    return check


_LINE_BREAKS = "\t\n\r"


def _control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


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


def status(value: Any) -> str:
    """Any status text or number; status_codes.py maps it after the model is built."""
    value = _single(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _refuse("must be a string (a Bitrix24 code such as 200, or the PBX's own status)")
    if not value.strip():
        raise _refuse("must not be empty")
    # never refused for its content: what cannot be stored is replaced (it maps to OTHER anyway)
    return "".join(
        "\ufffd" if (_control(ch) and ch not in _LINE_BREAKS) or not _encodable(ch) else ch
        for ch in value.strip()
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


def call_start_date(value: Any) -> str:
    """ISO-8601 date and time, offset optional; kept as sent (the delivery adds the offset)."""
    when = text(64)(value)
    try:
        valid = bool(_DATE_TIME.match(when)) and isinstance(datetime.fromisoformat(when), datetime)
    except ValueError:
        valid = False
    if not valid:
        raise _refuse(
            "must be an ISO-8601 date and time such as 2026-03-07T10:20:30+03:00 "
            "(the offset may be left out: the portal's time zone is used)"
        )
    return when


def phone_number(value: Any) -> str:
    """The client's number: it must contain digits (register refuses it otherwise)."""
    phone = text(64)(value)
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
        "call itself. Without it the call is registered first (PBX_CALL_ID and the registration "
        "fields are then required).",
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
    USER_PHONE_INNER: Annotated[str | None, _v(text(64))] = Field(
        None,
        max_length=64,
        description="The user's extension; looked up in the portal's extension → user mapping, "
        "else passed to Bitrix24 as is. Without USER_ID and USER_PHONE_INNER the portal's "
        "fallback user takes the call (422 if it has none).",
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
    FAILED_REASON: Annotated[str | None, _v(text(FAILED_REASON_LENGTH, multiline=True))] = Field(
        None,
        max_length=FAILED_REASON_LENGTH,
        description="Why the call failed, in words.",
        examples=["Caller hung up"],
    )
    RECORD_URL: Annotated[str | None, _v(record_url)] = Field(
        None,
        max_length=RECORD_URL_LENGTH,
        description="An http(s) URL of the call's recording.",
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
        description="Registration (no CALL_ID), required: the client's phone number.",
        examples=["+15551234567"],
    )
    TYPE: Annotated[int | None, _v(integer(1, 5, "2"))] = Field(
        None,
        ge=1,
        le=5,
        description="Registration (no CALL_ID), required: 1 outgoing, 2 incoming, 3 incoming "
        "redirected, 4 callback, 5 information call.",
        examples=[2],
    )
    CALL_START_DATE: Annotated[str | None, _v(call_start_date)] = Field(
        None,
        description="Registration (no CALL_ID), required: when the call started, ISO-8601; "
        "without an offset the portal's time zone applies.",
        examples=["2026-03-07T10:20:30+03:00"],
    )
    LINE_NUMBER: Annotated[str | None, _v(text(50))] = Field(
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


def validate_finish(
    data: Mapping[str, Any], *, currencies: Sequence[str] = (), has_fallback_user: bool = False
) -> tuple[dict[str, Any] | None, list[FieldError]]:
    """The normalised request (absent fields left out), or every reason it is refused.

    `currencies` are the portal's stored ones (no network here); `has_fallback_user` says whether
    a call without USER_ID and USER_PHONE_INNER still has someone to take it.
    """
    present = {name: value for name, value in data.items() if not _blank(value)}
    errors = [FieldError(name[:100], _unknown(name)) for name in data if name not in FIELDS]
    known = {name: value for name, value in present.items() if name in FIELDS}
    model: FinishRequest | None = None
    try:
        model = FinishRequest.model_validate(known, context={"currencies": list(currencies)})
    except ValidationError as exc:
        errors += [_field_error(error) for error in exc.errors()]
    errors += _cross_field_errors(known, has_fallback_user=has_fallback_user)
    if errors:
        order = {name: index for index, name in enumerate(FIELDS)}
        errors.sort(key=lambda e: order.get(e.field, len(FIELDS)))
        return None, errors[:MAX_ERRORS]
    assert model is not None
    return model.model_dump(exclude_none=True), []


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name.upper(), FIELDS, n=1, cutoff=0.8)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown field{hint} (field names are Bitrix24's, e.g. CALL_ID, DURATION)"


def _field_error(error: Any) -> FieldError:
    location = error.get("loc") or ("request",)
    return FieldError(str(location[0]), str(error.get("msg", "is invalid")))


def _cross_field_errors(known: Mapping[str, Any], *, has_fallback_user: bool) -> list[FieldError]:
    """Rules on which fields are present, checked even when some values are bad."""
    errors = [
        FieldError(name, "is required: the talk time in seconds (0 for a call nobody answered)")
        for name in FINISH_REQUIRED
        if name not in known
    ]
    if "CALL_ID" not in known:
        if "PBX_CALL_ID" not in known:
            why = "either CALL_ID (a registered call) or PBX_CALL_ID (the PBX's id) is required"
            errors += [FieldError("CALL_ID", why), FieldError("PBX_CALL_ID", why)]
        for name in REGISTRATION_REQUIRED:
            if name not in known:
                why = "is required without CALL_ID: the call is registered in Bitrix24 first"
                errors.append(FieldError(name, why))
    if not has_fallback_user and "USER_ID" not in known and "USER_PHONE_INNER" not in known:
        why = "USER_ID or USER_PHONE_INNER is required: this portal has no fallback user"
        errors += [FieldError("USER_ID", why), FieldError("USER_PHONE_INNER", why)]
    return errors
