"""External telephony (scope `telephony`): external lines and the life of an external call.

Pages (RU and EN, same paths): api-reference/telephony/telephony-external-call-register.md,
-finish.md (the RU finish page is the seed and is followed to the letter), -attach-record.md,
-show.md, -hide.md, -search-crm-entities.md, telephony-external-line-add.md, -get.md, and
tutorials/telephony/index.md.

Parameters arrive as strings (query or form, bracket-decoded) or as JSON types. Bitrix24 is PHP,
so they are read the way PHP reads them: `(int)"95"` is 95, `(string)95` is "95", `"0"` is false.
The emulation rejects exactly what a page documents as an error. A value outside a documented
domain that no page makes an error (STATUS_CODE "999", VOTE 7, an unknown COST_CURRENCY) is
accepted as Bitrix24 accepts it and listed in the stored record's `_warnings`, so that tests of
the app can insist there are none.

What the portal keeps (DevPortal):
- `calls[CALL_ID]`: registered, unfinished calls: CALL_ID, client_id (the app that registered
  it), USER_ID, PHONE_NUMBER, TYPE, LINE_NUMBER, EXTERNAL_CALL_ID, CALL_START_DATE (ISO-8601),
  registered_at, shown_to (user ids whose card is open), the CRM fields, params (as received) and
  warnings.
- `statistics`: finished calls, each the finish result plus `_client_id`, `_params` (the finish
  parameters exactly as received, e.g. whether ADD_TO_CHAT was sent), `_add_to_chat` (its
  effective value), `_record_url`, `_call_start_date`, `_finished_at`, `_warnings`. Keys with a
  leading underscore never reach the REST answer.
- `records[CALL_ID]`: the recording attached to a finished call (the last one wins).
- `lines[NUMBER]`: external lines, each with the client_id of the app that added it.
- `crm`: the CRM records searchCrmEntities finds by phone number (crm_data.CrmEntity; seeded by
  crm_data.default_crm). Register does not look them up: its CRM_CREATE always creates a lead.

Every token here is an application's token, so the "application context only" rule
(WRONG_AUTH_TYPE) always holds and is not checked. Calls belong to the app that registered them:
another app's CALL_ID is "not found" to finish, show, hide and attachRecord.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlparse

from devportal.crm_data import CrmEntity
from devportal.errors import RestError, core_error
from devportal.methods import Call, method
from devportal.state import DevPortal, DevState

# Error texts, verbatim from the pages (the RU finish page and the core both lack the closing
# parenthesis of CALL_NOT_FOUND; the EN page adds it).
NO_USER = "USER_ID or USER_PHONE_INNER should be set"
USER_NOT_FOUND = "User is not found or is not active"
UNKNOWN_TYPE = "Unknown TYPE"
BAD_START_DATE = "CALL_START_DATE should be in the ISO-8601 format"
BAD_PHONE = "Unsupported phone number format"
CALL_ID_NOT_STRING = "CALL_ID must be a string"
CALL_NOT_FOUND = "Call is not found (call should be registered prior to finishing"
# RU attach-record page and both tutorials; the EN method page says "It looks like".
NOT_IN_STATISTICS = "Call is not found in the statistic table. Looks like it is not finished yet."
# RU attach-record page and both tutorials; the EN method page says "either URL or FILENAME".
NO_URL_OR_FILENAME = (
    "Required parameters are not set. Request should contain or URL or FILENAME parameter"
)
EMPTY_FILENAME = "File name is empty"
WRONG_EXTENSION = "Wrong file extension. Only wav and mp3 are allowed"
EMPTY_CONTENT = "File content is empty."
NOT_BASE64 = "File content is not properly encoded. Base64 encoding is expected."
EMPTY_PHONE_NUMBER = "PHONE_NUMBER is empty"  # search-crm-entities page
EMPTY_LINE_NUMBER = "NUMBER should not be empty"
LINE_EXISTS = "Line already exists"

CALL_TYPES = (1, 2, 3, 4, 5)  # register page: outgoing, incoming, redirected, callback, info
STATUS_CODES = (
    "200", "304", "603", "603-S", "403", "404", "486", "484", "503", "480", "402", "423", "OTHER",
)  # fmt: skip
RECORD_EXTENSIONS = ("wav", "mp3")  # attach-record page: FILENAME extensions
CRM_ENTITY_TYPES = ("CONTACT", "COMPANY", "LEAD")  # register page: CRM_ENTITY_TYPE values
REREGISTER_WINDOW = 30 * 60  # register page: re-registration within 30 minutes
LINE_NUMBER_LENGTH = 50  # [inferred from the core] longer line numbers are cut


# --- reading parameters as PHP does ---------------------------------------------------------

_LEADING_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_NUMERIC = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")  # PHP 8 is_numeric
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")


def php_float(value: Any) -> float:
    """`(float)$value`: a string's leading number, 0 for none; an array is 1 when non-empty."""
    if value is None:
        return 0.0
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        match = _LEADING_NUMBER.match(value)
        return float(match.group(0)) if match else 0.0
    return 1.0 if value else 0.0


def php_int(value: Any) -> int:
    """`(int)$value`: "95" and 95 are 95, "9.5" is 9, "abc" is 0."""
    if isinstance(value, bool | int):
        return int(value)
    number = php_float(value)
    return int(number) if math.isfinite(number) else 0


def php_string(value: Any) -> str:
    """`(string)$value`: null is "", true is "1", an array is "Array"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int | str):
        return str(value)
    return "Array"


def php_truthy(value: Any) -> bool:
    """PHP truthiness: "", "0", 0, null and empty arrays are false."""
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)


def numeric(value: Any) -> bool:
    """PHP's is_numeric: a number, or a string that is one ("95", " 1.5", "1e3")."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int | float) or (
        isinstance(value, str) and bool(_NUMERIC.match(value))
    )


def integer_like(value: Any) -> bool:
    """Whether a value is an integer as the pages mean it (95, "95"), not just castable to one."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, str) and bool(_INTEGER.match(value))


def _warn_choice(warnings: list[str], params: dict[str, Any], name: str, choices: range) -> None:
    """Note a sent integer parameter outside the values its page lists."""
    value = params.get(name)
    if value is None:
        return
    if not integer_like(value) or php_int(value) not in choices:
        warnings.append(f"{name}={value!r} is not one of {list(choices)}")


# --- users, types, dates, numbers -----------------------------------------------------------


def resolve_user(portal: DevPortal, params: dict[str, Any]) -> int:
    """USER_ID wins when non-zero; otherwise USER_PHONE_INNER names an active user's extension.

    Pages: "at least one of USER_ID or USER_PHONE_INNER" (register, finish); an extension that
    matches no active user is "User is not found or is not active".
    """
    user_id = php_int(params.get("USER_ID"))
    if user_id:
        return user_id
    inner = php_string(params.get("USER_PHONE_INNER")).strip()
    if not inner:
        raise core_error(NO_USER)
    for user in portal.users.values():
        if user.active and user.extension and user.extension == inner:
            return user.id
    raise core_error(USER_NOT_FOUND)


def check_user(portal: DevPortal, user_id: int) -> None:
    user = portal.users.get(user_id)
    if user is None or not user.active:
        raise core_error(USER_NOT_FOUND)


def call_type(value: Any) -> int:
    """TYPE 1–5, compared loosely as PHP's in_array does ("2", 2 and "2.0" are 2)."""
    if not numeric(value):  # not null, not a boolean: the page's domain is the integers 1–5
        raise core_error(UNKNOWN_TYPE)
    number = float(value)
    if not number.is_integer() or int(number) not in CALL_TYPES:
        raise core_error(UNKNOWN_TYPE)
    return int(number)


def call_start_date(state: DevState, value: Any) -> str:
    """ISO-8601 with a time zone (register page: e.g. `2026-03-07T10:20:30+03:00`); default now."""
    if value is None or value == "":
        return datetime.fromtimestamp(state.now(), UTC).isoformat(timespec="seconds")
    if not isinstance(value, str) or "T" not in value.upper():
        raise core_error(BAD_START_DATE)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise core_error(BAD_START_DATE) from None
    if parsed.tzinfo is None:
        raise core_error(BAD_START_DATE)
    return parsed.isoformat()


def phone_number(value: Any) -> str:
    """The client's number without letters (tutorial: "without letters"); no digit is an error."""
    number = re.sub(r"[^\W\d_]", "", php_string(value)).strip()
    if not any(ch.isdigit() for ch in number):
        raise core_error(BAD_PHONE)
    return number


def _optional_string(value: Any) -> str | None:
    """A parameter documented "if provided": None when absent, else its string value."""
    return None if value is None else php_string(value)


def rest_app_id(state: DevState, client_id: str) -> str:
    """The app's numeric id on the portal; a string, as in the finish page's example ("3")."""
    ids = list(state.apps)
    return str(ids.index(client_id) + 1) if client_id in ids else "0"


# --- registered calls -----------------------------------------------------------------------


def new_call_id(state: DevState) -> str:
    """`externalCall.<32 hex>.<unix time>`, the shape of every CALL_ID on the pages."""
    return f"externalCall.{secrets.token_hex(16)}.{int(state.now())}"


def own_call(portal: DevPortal, client_id: str, call_id: Any) -> dict[str, Any] | None:
    """A registered, unfinished call of this app (another app's call is not found)."""
    found = portal.calls.get(call_id) if isinstance(call_id, str) else None
    return found if found is not None and found["client_id"] == client_id else None


def own_statistics(portal: DevPortal, client_id: str, call_id: str) -> dict[str, Any] | None:
    for record in reversed(portal.statistics):
        if record["CALL_ID"] == call_id and record["_client_id"] == client_id:
            return record
    return None


def find_recent_call(
    state: DevState,
    portal: DevPortal,
    client_id: str,
    *,
    user_id: int,
    phone: str,
    type_: int,
    line_number: str | None,
    external_call_id: str | None,
) -> dict[str, Any] | None:
    """The register page's re-registration rule: the same app, PHONE_NUMBER, TYPE and user,
    LINE_NUMBER and EXTERNAL_CALL_ID when provided, registered in the last 30 minutes.
    CRM fields and CALL_START_DATE are not part of the key."""
    since = state.now() - REREGISTER_WINDOW
    for record in portal.calls.values():
        if (
            record["client_id"] == client_id
            and record["USER_ID"] == user_id
            and record["PHONE_NUMBER"] == phone
            and record["TYPE"] == type_
            and record["registered_at"] > since
            and (line_number is None or record["LINE_NUMBER"] == line_number)
            and (external_call_id is None or record["EXTERNAL_CALL_ID"] == external_call_id)
        ):
            return record
    return None


def _crm_binding(
    state: DevState, portal: DevPortal, client_id: str, params: dict[str, Any], type_: int
) -> dict[str, Any]:
    """The call's CRM object: the one named by CRM_ENTITY_TYPE/ID, or a lead created on request.

    Register page: CRM_CREATE=1 creates a CRM object when none matches (the emulation does not
    match the portal's `crm` records here), and for outgoing calls through a line its
    CRM_AUTO_CREATE also applies.
    """
    entity_type = php_string(params.get("CRM_ENTITY_TYPE"))
    entity_id = php_int(params.get("CRM_ENTITY_ID"))
    if entity_type and entity_id > 0:
        return {
            "CRM_ENTITY_TYPE": entity_type,
            "CRM_ENTITY_ID": entity_id,
            "CRM_CREATED_LEAD": None,
            "CRM_CREATED_ENTITIES": [],
        }
    line = _own_line(portal, client_id, params)
    line_allows = type_ != 1 or line is None or line["CRM_AUTO_CREATE"] == "Y"
    if php_truthy(params.get("CRM_CREATE")) and line_allows:
        lead_id = state.next_call_number()
        return {
            "CRM_ENTITY_TYPE": "LEAD",
            "CRM_ENTITY_ID": lead_id,
            "CRM_CREATED_LEAD": lead_id,
            "CRM_CREATED_ENTITIES": [{"ENTITY_TYPE": "LEAD", "ENTITY_ID": lead_id}],
        }
    return {
        "CRM_ENTITY_TYPE": "",
        "CRM_ENTITY_ID": None,
        "CRM_CREATED_LEAD": None,
        "CRM_CREATED_ENTITIES": [],
    }


def _own_line(portal: DevPortal, client_id: str, params: dict[str, Any]) -> dict[str, Any] | None:
    line = portal.lines.get(php_string(params.get("LINE_NUMBER")).strip())
    return line if line is not None and line["client_id"] == client_id else None


def _register_warnings(params: dict[str, Any]) -> list[str]:
    warnings: list[str] = []
    for name in ("CRM_CREATE", "SHOW", "ADD_TO_CHAT"):
        _warn_choice(warnings, params, name, range(0, 2))
    entity_type = params.get("CRM_ENTITY_TYPE")
    if entity_type not in (None, "") and entity_type not in CRM_ENTITY_TYPES:
        warnings.append(f"CRM_ENTITY_TYPE={entity_type!r} is not one of {list(CRM_ENTITY_TYPES)}")
    return warnings


def register_result(record: dict[str, Any]) -> dict[str, Any]:
    """The register page's result: CALL_ID and the call's CRM objects."""
    return {
        "CALL_ID": record["CALL_ID"],
        "CRM_CREATED_LEAD": record["CRM_CREATED_LEAD"],
        "CRM_CREATED_ENTITIES": [dict(e) for e in record["CRM_CREATED_ENTITIES"]],
        "CRM_ENTITY_TYPE": record["CRM_ENTITY_TYPE"],
        "CRM_ENTITY_ID": record["CRM_ENTITY_ID"],
    }


@method("telephony.externalCall.register", scope="telephony")
def external_call_register(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Register a call's start and return its CALL_ID (the same one within the 30-minute rule)."""
    portal = call.portal
    user_id = resolve_user(portal, params)
    type_ = call_type(params.get("TYPE"))
    start = call_start_date(call.state, params.get("CALL_START_DATE"))
    phone = phone_number(params.get("PHONE_NUMBER"))
    check_user(portal, user_id)
    line = php_string(params.get("LINE_NUMBER")).strip()[:LINE_NUMBER_LENGTH] or None
    external_id = _optional_string(params.get("EXTERNAL_CALL_ID"))
    show = params.get("SHOW") is None or php_truthy(params.get("SHOW"))  # default 1
    existing = find_recent_call(
        call.state,
        portal,
        call.client_id,
        user_id=user_id,
        phone=phone,
        type_=type_,
        line_number=line,
        external_call_id=external_id,
    )
    if existing is not None:
        if show:
            existing["shown_to"] = sorted({*existing["shown_to"], user_id})
        return register_result(existing)
    record: dict[str, Any] = {
        "CALL_ID": new_call_id(call.state),
        "client_id": call.client_id,
        "USER_ID": user_id,
        "PHONE_NUMBER": phone,
        "TYPE": type_,
        "LINE_NUMBER": line,
        "EXTERNAL_CALL_ID": external_id,
        "CALL_START_DATE": start,
        "registered_at": call.state.now(),
        "shown_to": [user_id] if show else [],
        **_crm_binding(call.state, portal, call.client_id, params, type_),
        "params": dict(params),
        "warnings": _register_warnings(params),
    }
    portal.calls[record["CALL_ID"]] = record
    return register_result(record)


# --- finish ---------------------------------------------------------------------------------


def _finish_warnings(portal: DevPortal, params: dict[str, Any]) -> list[str]:
    """Values outside the finish page's documented domains that the page does not reject."""
    warnings: list[str] = []
    duration = params.get("DURATION")
    if duration is not None and (not integer_like(duration) or php_int(duration) < 0):
        warnings.append(f"DURATION={duration!r} is not a non-negative integer")
    cost = params.get("COST")
    if cost is not None and not numeric(cost):
        warnings.append(f"COST={cost!r} is not a number")
    currency = php_string(params.get("COST_CURRENCY"))
    known = {c["CURRENCY"] for c in portal.currencies}
    if currency and currency not in known:
        warnings.append(f"COST_CURRENCY={currency!r} is not a currency of crm.currency.list")
    status = params.get("STATUS_CODE")
    if php_truthy(status) and php_string(status) not in STATUS_CODES:
        warnings.append(f"STATUS_CODE={status!r} is not one of {list(STATUS_CODES)}")
    if params.get("VOTE") not in (None, ""):
        _warn_choice(warnings, params, "VOTE", range(0, 6))
    _warn_choice(warnings, params, "ADD_TO_CHAT", range(0, 2))
    return warnings


def statistics_record(
    call: Call, registered: dict[str, Any], user_id: int, params: dict[str, Any]
) -> dict[str, Any]:
    """The finish page's result (the saved statistics record) plus underscore-prefixed extras.

    Defaults from the page: DURATION 0, COST 0, COST_CURRENCY "", STATUS_CODE 200 if DURATION > 0
    else 304, VOTE absent = 0, ADD_TO_CHAT 1. CALL_STATUS is 1 when DURATION > 0, else 0.
    CALL_START_DATE is `{}`, exactly as the page's example shows it (a PHP date object).
    """
    portal = call.portal
    duration = php_int(params.get("DURATION"))
    status = php_string(params.get("STATUS_CODE"))
    if not php_truthy(status):
        status = "200" if duration > 0 else "304"
    add_to_chat = params.get("ADD_TO_CHAT")
    app_id = rest_app_id(call.state, call.client_id)
    return {
        "CALL_ID": registered["CALL_ID"],
        "EXTERNAL_CALL_ID": registered["EXTERNAL_CALL_ID"],
        "PORTAL_USER_ID": user_id,
        "PHONE_NUMBER": registered["PHONE_NUMBER"],
        # [inferred from the core] without a line Bitrix24 stores "REST_APP:<app id>"
        "PORTAL_NUMBER": registered["LINE_NUMBER"] or f"REST_APP:{app_id}",
        "INCOMING": str(registered["TYPE"]),
        "CALL_DURATION": duration,
        "CALL_START_DATE": {},
        "CALL_STATUS": 1 if duration > 0 else 0,
        "CALL_VOTE": php_int(params.get("VOTE")),
        "COST": php_float(params.get("COST")),
        "COST_CURRENCY": php_string(params.get("COST_CURRENCY")),
        "CALL_FAILED_CODE": status,
        "CALL_FAILED_REASON": php_string(params.get("FAILED_REASON")),
        "REST_APP_ID": app_id,
        "REST_APP_NAME": call.client_id,
        "CRM_ACTIVITY_ID": call.state.next_call_number(),
        "COMMENT": None,
        "CRM_ENTITY_TYPE": registered["CRM_ENTITY_TYPE"],
        "CRM_ENTITY_ID": registered["CRM_ENTITY_ID"],
        "ID": len(portal.statistics) + 1,
        "_client_id": call.client_id,
        "_params": dict(params),
        "_add_to_chat": True if add_to_chat is None else php_truthy(add_to_chat),
        "_record_url": php_string(params.get("RECORD_URL")),
        "_call_start_date": registered["CALL_START_DATE"],
        "_finished_at": call.state.now(),
        "_warnings": _finish_warnings(portal, params),
    }


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record as REST returns it: without the emulator's underscore keys."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


@method("telephony.externalCall.finish", scope="telephony")
def external_call_finish(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Finish a registered call: it leaves the registered calls and enters the statistics.

    A second finish of the same call fails with "Call is not found" (tutorials/telephony: "The
    call was not found or is already finished").
    """
    call_id = params.get("CALL_ID")
    if not isinstance(call_id, str):
        raise RestError("INVALID_ARGUMENT", CALL_ID_NOT_STRING, 400)
    portal = call.portal
    user_id = resolve_user(portal, params)
    registered = own_call(portal, call.client_id, call_id)
    if registered is None:
        raise core_error(CALL_NOT_FOUND)
    check_user(portal, user_id)
    record = statistics_record(call, registered, user_id, params)
    portal.statistics.append(record)
    del portal.calls[call_id]  # the tutorial: finish also hides the card
    return public(record)


# --- show / hide ----------------------------------------------------------------------------


def user_ids(value: Any, default: int) -> list[int]:
    """USER_ID as `integer | integer[]` (show/hide pages); absent means the registration user."""
    if value is None:
        return [default]
    items = list(value.values()) if isinstance(value, dict) else value
    if not isinstance(items, list):
        items = [items]
    return [uid for uid in (php_int(v) for v in items) if uid > 0]


@method("telephony.externalCall.show", scope="telephony")
def external_call_show(call: Call, params: dict[str, Any]) -> bool:
    """Open the call card for users: true, or false for an unknown call (show page)."""
    record = own_call(call.portal, call.client_id, php_string(params.get("CALL_ID")))
    if record is None:
        return False
    record["shown_to"] = sorted(
        {*record["shown_to"], *user_ids(params.get("USER_ID"), record["USER_ID"])}
    )
    return True


@method("telephony.externalCall.hide", scope="telephony")
def external_call_hide(call: Call, params: dict[str, Any]) -> bool:
    """Close the call card for users: true, or false when CALL_ID is not found (hide page)."""
    record = own_call(call.portal, call.client_id, php_string(params.get("CALL_ID")))
    if record is None:
        return False
    hidden = set(user_ids(params.get("USER_ID"), record["USER_ID"]))
    record["shown_to"] = [uid for uid in record["shown_to"] if uid not in hidden]
    return True


# --- searchCrmEntities ---------------------------------------------------------------------

# [inferred] The page says nothing of the order; its example lists the contact before the
# company, and Bitrix24's own advice (tutorials/telephony, "Routing a Call") takes the first.
SEARCH_ORDER = ("CONTACT", "COMPANY", "LEAD")
# The page's values include OPENED (workday started); the emulation has no time tracking of its
# own, so every employee is at work.
TIMEMAN_STATUS = "OPENED"


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch in "0123456789")


def _assigned_by(portal: DevPortal, user_id: int) -> dict[str, Any]:
    """The page's ASSIGNED_BY object: ID as a string, phones null when the profile has none."""
    user = portal.users.get(user_id)
    return {
        "ID": str(user_id),
        "TIMEMAN_STATUS": TIMEMAN_STATUS if user else "UNAVAILABLE",
        "USER_PHONE_INNER": (user.extension or None) if user else None,
        "WORK_PHONE": None,
        "PERSONAL_PHONE": None,
        "PERSONAL_MOBILE": None,
    }


def _found(portal: DevPortal, entity: CrmEntity) -> dict[str, Any]:
    return {
        "CRM_ENTITY_TYPE": entity.entity_type,
        "CRM_ENTITY_ID": entity.id,
        "ASSIGNED_BY_ID": entity.assigned_by_id,
        "NAME": entity.name,
        "ASSIGNED_BY": _assigned_by(portal, entity.assigned_by_id),
    }


@method("telephony.externalCall.searchCrmEntities", scope="telephony")
def external_call_search_crm_entities(call: Call, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The CRM records with this phone number and their responsible employees (page:
    telephony-external-call-search-crm-entities.md): an array, empty when nothing matches.

    Numbers match by their digits ("+1 906 219-50-47" is "19062195047") [inferred: Bitrix24
    normalises numbers before searching]; contacts first, then companies, then leads, each by
    ID (SEARCH_ORDER). Without PHONE_NUMBER: ERROR_CORE "PHONE_NUMBER is empty".
    """
    phone = php_string(params.get("PHONE_NUMBER")).strip()
    if not phone:
        raise core_error(EMPTY_PHONE_NUMBER)
    wanted = _digits(phone)
    found = [
        entity
        for entity in [*call.portal.crm, *shell_contacts(call.portal)]
        if wanted and any(_digits(number) == wanted for number in entity.phones)
    ]
    found.sort(key=lambda e: (SEARCH_ORDER.index(e.entity_type), e.id))
    return [_found(call.portal, entity) for entity in found]


def shell_contacts(portal: Any) -> list[CrmEntity]:
    """The shell's click-to-call contacts (state.default_contacts) are CRM contacts too, so a
    number clicked in the shell is found as Bitrix24 would find it; without a responsible
    employee of their own they are the portal admin's (user 1)."""
    return [
        CrmEntity(
            "CONTACT",
            int(c["ID"]),
            f"{c.get('NAME', '')} {c.get('LAST_NAME', '')}".strip(),
            (str(c["PHONE"]),),
            int(c.get("ASSIGNED_BY_ID") or 1),
        )
        for c in portal.contacts
    ]


# --- attachRecord ---------------------------------------------------------------------------


def _check_extension(filename: str) -> None:
    if "." not in filename or filename.rsplit(".", 1)[1] not in RECORD_EXTENSIONS:
        raise core_error(WRONG_EXTENSION)


def _decode_content(value: Any) -> str:
    """FILE_CONTENT as strict Base64 (attach-record page); returns it without whitespace."""
    text = re.sub(r"\s+", "", php_string(value))
    if not text:
        raise core_error(EMPTY_CONTENT)
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise core_error(NOT_BASE64) from None
    return text


def _attach(
    call: Call, call_id: str, *, filename: str, url: str | None, content: str | None
) -> dict[str, Any]:
    """Store the recording (replacing an earlier one, as the page says) and return FILE_ID."""
    file_id = call.state.next_call_number()
    call.portal.records[call_id] = {
        "CALL_ID": call_id,
        "FILE_ID": file_id,
        "FILENAME": filename,
        "RECORD_URL": url,
        "FILE_CONTENT": content,
        "size": len(base64.b64decode(content)) if content is not None else None,
        "client_id": call.client_id,
        "attached_at": call.state.now(),
    }
    return {"FILE_ID": file_id}


def upload_url(call: Call, call_id: str) -> str:
    """An upload address of the page's shape (`…/rest/upload.json?auth=…&token=telephony|…`)."""
    payload = base64.b64encode(f"callId={call_id}".encode()).decode()
    token = quote(f"telephony|{payload}|{secrets.token_urlsafe(16)}", safe="")
    endpoint = call.state.client_endpoint(call.portal)
    return f"{endpoint}upload.json?auth={call.token.token}&token={token}"


@method("telephony.externalCall.attachRecord", scope="telephony")
def external_call_attach_record(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Attach a recording to a finished call: by RECORD_URL, by FILENAME + FILE_CONTENT, or
    FILENAME alone for an upload address. The emulator never downloads RECORD_URL."""
    call_id = php_string(params.get("CALL_ID"))
    url = php_string(params.get("RECORD_URL")) or None
    filename = params.get("FILENAME")
    if url is None and filename is None:
        raise core_error(NO_URL_OR_FILENAME)
    if own_statistics(call.portal, call.client_id, call_id) is None:
        raise core_error(NOT_IN_STATISTICS)
    name = php_string(filename)
    if url is not None:
        if name:
            _check_extension(name)
        else:  # the page: in RECORD_URL mode without FILENAME the name comes from the URL
            name = urlparse(url).path.rsplit("/", 1)[-1]
        return _attach(call, call_id, filename=name, url=url, content=None)
    if not name:
        raise core_error(EMPTY_FILENAME)
    _check_extension(name)
    if params.get("FILE_CONTENT") is None:
        return {"uploadUrl": upload_url(call, call_id), "fieldName": "file"}
    content = _decode_content(params.get("FILE_CONTENT"))
    return _attach(call, call_id, filename=name, url=None, content=content)


# --- external lines -------------------------------------------------------------------------


@method("telephony.externalLine.add", scope="telephony")
def external_line_add(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Add an external line (line-add page): NUMBER required, CRM_AUTO_CREATE Y/N (default Y).

    Lines are kept by NUMBER, so a number is unique on the portal.
    """
    number = php_string(params.get("NUMBER")).strip()
    if not number:
        raise core_error(EMPTY_LINE_NUMBER)
    if number in call.portal.lines:
        raise core_error(LINE_EXISTS)
    line_id = max((line["ID"] for line in call.portal.lines.values()), default=0) + 1
    call.portal.lines[number] = {
        "ID": line_id,
        "NUMBER": number,
        "NAME": php_string(params.get("NAME")),
        "CRM_AUTO_CREATE": "Y" if params.get("CRM_AUTO_CREATE", "Y") == "Y" else "N",
        "client_id": call.client_id,
    }
    return {"ID": line_id}


@method("telephony.externalLine.get", scope="telephony")
def external_line_get(call: Call, params: dict[str, Any]) -> list[dict[str, Any]]:
    """This application's lines (line-get page: "Array of external lines for the application")."""
    return [
        {"NUMBER": line["NUMBER"], "NAME": line["NAME"], "CRM_AUTO_CREATE": line["CRM_AUTO_CREATE"]}
        for line in call.portal.lines.values()
        if line["client_id"] == call.client_id
    ]
