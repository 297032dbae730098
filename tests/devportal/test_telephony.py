"""The development portal's external telephony, checked against the reference pages.

Pages are under api-reference/telephony/ (RU and EN, same paths); the RU finish page
(telephony-external-call-finish.md) is the seed and its texts are asserted verbatim.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any

import pytest
import requests

from devportal.state import DevPortal, DevState, install
from tests.devportal.conftest import Rest

REGISTER = "telephony.externalCall.register"
FINISH = "telephony.externalCall.finish"
ATTACH = "telephony.externalCall.attachRecord"
SHOW = "telephony.externalCall.show"
HIDE = "telephony.externalCall.hide"
LINE_ADD = "telephony.externalLine.add"
LINE_GET = "telephony.externalLine.get"

CALL_NOT_FOUND = "Call is not found (call should be registered prior to finishing"
NOT_IN_STATISTICS = "Call is not found in the statistic table. Looks like it is not finished yet."
FINISH_RESULT_KEYS = {
    "ID", "CALL_ID", "EXTERNAL_CALL_ID", "PORTAL_USER_ID", "PHONE_NUMBER", "PORTAL_NUMBER",
    "INCOMING", "CALL_DURATION", "CALL_START_DATE", "CALL_STATUS", "CALL_VOTE", "COST",
    "COST_CURRENCY", "CALL_FAILED_CODE", "CALL_FAILED_REASON", "REST_APP_ID", "REST_APP_NAME",
    "CRM_ACTIVITY_ID", "COMMENT", "CRM_ENTITY_TYPE", "CRM_ENTITY_ID",
}  # fmt: skip
STATUS_CODES = [
    "200", "304", "603", "603-S", "403", "404", "486", "484", "503", "480", "402", "423", "OTHER",
]  # fmt: skip
WAV = base64.b64encode(b"RIFF\x24\x00\x00\x00WAVEfmt ").decode()


def register(rest: Rest, **params: Any) -> str:
    """Register an incoming call from 79062195047 for user 1 (overridable); returns CALL_ID."""
    body = {"USER_ID": 1, "PHONE_NUMBER": "79062195047", "TYPE": 2, **params}
    result: str = rest.result(REGISTER, body)["CALL_ID"]
    return result


def finished(rest: Rest, **params: Any) -> str:
    call_id = register(rest)
    rest.result(FINISH, {"CALL_ID": call_id, "USER_ID": 1, "DURATION": 95, **params})
    return call_id


def error(response: requests.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"], body["error_description"]


def form_call(rest: Rest, method: str, pairs: list[tuple[str, str]]) -> requests.Response:
    """The same method with a form-encoded body (bracketed keys), as PHP clients send it."""
    return requests.post(rest.url(method), data=[*pairs, ("auth", rest.token)], timeout=10)


@pytest.fixture
def other(dev: DevState, portal: DevPortal, rest: Rest) -> Rest:
    """A second application installed on the same portal, calling as user 1."""
    dev.add_app("app.other.2", "other-secret")
    _, access, _ = install(dev, portal, "app.other.2")
    return Rest(rest.base, portal, access.token)


# --- telephony.externalCall.register ---------------------------------------------------------


def test_register_returns_documented_shape_and_stores_the_call(
    rest: Rest, portal: DevPortal, dev: DevState
) -> None:
    """telephony-external-call-register.md: result CALL_ID, CRM_CREATED_LEAD,
    CRM_CREATED_ENTITIES, CRM_ENTITY_TYPE, CRM_ENTITY_ID; CALL_ID like
    externalCall.716f1cb73def9700a23842adf9c4c568.1773130779."""
    result = rest.result(
        REGISTER,
        {
            "USER_ID": 2,
            "PHONE_NUMBER": "+7 (906) 219-50-47",
            "TYPE": 2,
            "LINE_NUMBER": "line-1",
            "EXTERNAL_CALL_ID": "asterisk-1.1",
            "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
        },
    )
    assert set(result) == {
        "CALL_ID",
        "CRM_CREATED_LEAD",
        "CRM_CREATED_ENTITIES",
        "CRM_ENTITY_TYPE",
        "CRM_ENTITY_ID",
    }
    match = re.fullmatch(r"externalCall\.[0-9a-f]{32}\.(\d+)", result["CALL_ID"])
    assert match and abs(int(match.group(1)) - dev.now()) < 5
    assert result["CRM_CREATED_LEAD"] is None and result["CRM_CREATED_ENTITIES"] == []
    stored = portal.calls[result["CALL_ID"]]
    assert stored["client_id"] == "app.test.1"
    assert stored["USER_ID"] == 2 and stored["TYPE"] == 2
    assert stored["PHONE_NUMBER"] == "+7 (906) 219-50-47"
    assert stored["LINE_NUMBER"] == "line-1" and stored["EXTERNAL_CALL_ID"] == "asterisk-1.1"
    assert stored["CALL_START_DATE"] == "2026-03-07T10:20:30+03:00"
    assert stored["shown_to"] == [2]  # SHOW defaults to 1


def test_register_resolves_user_phone_inner_to_an_active_user(
    rest: Rest, portal: DevPortal
) -> None:
    """telephony-external-call-register.md: USER_PHONE_INNER, the user's internal number."""
    call_id = register(rest, USER_ID=None, USER_PHONE_INNER="101")
    assert portal.calls[call_id]["USER_ID"] == 2


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({}, "USER_ID or USER_PHONE_INNER should be set"),
        ({"USER_ID": 0, "USER_PHONE_INNER": ""}, "USER_ID or USER_PHONE_INNER should be set"),
        ({"USER_PHONE_INNER": "105"}, "User is not found or is not active"),  # Eva, inactive
        ({"USER_PHONE_INNER": "999"}, "User is not found or is not active"),
        ({"USER_ID": 5}, "User is not found or is not active"),
        ({"USER_ID": 99}, "User is not found or is not active"),
    ],
)
def test_register_user_errors(rest: Rest, params: dict[str, Any], text: str) -> None:
    """telephony-external-call-register.md, errors: USER_ID or USER_PHONE_INNER should be set;
    User is not found or is not active (ERROR_CORE, HTTP 400)."""
    body = {"PHONE_NUMBER": "79062195047", "TYPE": 2, **params}
    assert error(rest.call(REGISTER, body)) == (400, "ERROR_CORE", text)


@pytest.mark.parametrize("value", [0, 6, "6", "abc", "", None, True, 2.5, [2]])
def test_register_rejects_unknown_type(rest: Rest, value: Any) -> None:
    """telephony-external-call-register.md: TYPE is 1–5; otherwise ERROR_CORE "Unknown TYPE"."""
    response = rest.call(REGISTER, {"USER_ID": 1, "PHONE_NUMBER": "79062195047", "TYPE": value})
    assert error(response) == (400, "ERROR_CORE", "Unknown TYPE")


@pytest.mark.parametrize(("value", "stored"), [(1, 1), ("2", 2), (" 3", 3), ("4.0", 4), (5, 5)])
def test_register_accepts_type_as_php_compares_it(
    rest: Rest, portal: DevPortal, value: Any, stored: int
) -> None:
    """telephony-external-call-register.md: TYPE integer 1–5, sent as JSON or as a string."""
    call_id = register(rest, TYPE=value)
    assert portal.calls[call_id]["TYPE"] == stored


@pytest.mark.parametrize(
    "value", ["2026-03-07T10:20:30", "2026-03-07", "07.03.2026 10:20:30", "yesterday", 1773130779]
)
def test_register_requires_iso_8601_start_date_with_time_zone(rest: Rest, value: Any) -> None:
    """telephony-external-call-register.md: CALL_START_DATE in ISO-8601 with a time zone;
    otherwise "CALL_START_DATE should be in the ISO-8601 format"."""
    response = rest.call(
        REGISTER,
        {"USER_ID": 1, "PHONE_NUMBER": "79062195047", "TYPE": 2, "CALL_START_DATE": value},
    )
    assert error(response) == (
        400,
        "ERROR_CORE",
        "CALL_START_DATE should be in the ISO-8601 format",
    )


def test_register_start_date_defaults_to_now(rest: Rest, portal: DevPortal, dev: DevState) -> None:
    """telephony-external-call-register.md: CALL_START_DATE defaults to the server's time."""
    dev.advance(600)  # the emulator's clock, not the machine's
    call_id = register(rest, CALL_START_DATE="2026-03-07T07:20:30Z")
    assert portal.calls[call_id]["CALL_START_DATE"] == "2026-03-07T07:20:30+00:00"
    call_id = register(rest, PHONE_NUMBER="74950000000")
    stored = portal.calls[call_id]["CALL_START_DATE"]
    assert stored.endswith("+00:00")
    assert abs(_timestamp(stored) - dev.now()) < 5


def _timestamp(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


@pytest.mark.parametrize("params", [{}, {"PHONE_NUMBER": ""}, {"PHONE_NUMBER": "unknown"}])
def test_register_rejects_missing_or_letter_phone_number(
    rest: Rest, params: dict[str, Any]
) -> None:
    """telephony-external-call-register.md: PHONE_NUMBER is required; "Unsupported phone number
    format" (tutorials/telephony/index.md: pass the number without letters)."""
    response = rest.call(REGISTER, {"USER_ID": 1, "TYPE": 2, **params})
    assert error(response) == (400, "ERROR_CORE", "Unsupported phone number format")


def test_reregistration_within_30_minutes_returns_the_same_call_id(
    rest: Rest, dev: DevState, portal: DevPortal
) -> None:
    """telephony-external-call-register.md, re-registration: same PHONE_NUMBER, TYPE, user within
    30 minutes returns the existing CALL_ID; CRM fields and CALL_START_DATE are not part of it."""
    first = register(rest, CALL_START_DATE="2026-03-07T10:20:30+03:00")
    dev.advance(29 * 60)
    again = register(
        rest,
        CALL_START_DATE="2026-03-07T10:49:30+03:00",
        CRM_ENTITY_TYPE="CONTACT",
        CRM_ENTITY_ID=797,
    )
    assert again == first
    assert len(portal.calls) == 1


def test_reregistration_after_30_minutes_gives_a_new_call_id(rest: Rest, dev: DevState) -> None:
    """telephony-external-call-register.md: only registrations of the last 30 minutes count."""
    first = register(rest)
    dev.advance(31 * 60)
    assert register(rest) != first


def test_reregistration_by_user_phone_inner_matches_user_id(rest: Rest) -> None:
    """telephony-external-call-register.md: the key has `USER_ID` or `USER_PHONE_INNER`."""
    first = register(rest, USER_ID=2)
    assert register(rest, USER_ID=None, USER_PHONE_INNER="101") == first


@pytest.mark.parametrize(
    "change",
    [
        {"PHONE_NUMBER": "74950000000"},
        {"TYPE": 1},
        {"USER_ID": 2},
        {"EXTERNAL_CALL_ID": "asterisk-2"},
        {"LINE_NUMBER": "line-2"},
    ],
)
def test_reregistration_key_fields(rest: Rest, change: dict[str, Any]) -> None:
    """telephony-external-call-register.md: PHONE_NUMBER, TYPE, the user, LINE_NUMBER (if given)
    and EXTERNAL_CALL_ID (if given) identify an existing registration."""
    first = register(rest, EXTERNAL_CALL_ID="asterisk-1", LINE_NUMBER="line-1")
    assert register(rest, EXTERNAL_CALL_ID="asterisk-1", LINE_NUMBER="line-1") == first
    assert (
        register(rest, **{"EXTERNAL_CALL_ID": "asterisk-1", "LINE_NUMBER": "line-1", **change})
        != first
    )


def test_reregistration_ignores_line_and_external_id_when_not_given(rest: Rest) -> None:
    """telephony-external-call-register.md: LINE_NUMBER and EXTERNAL_CALL_ID count "if provided"."""
    first = register(rest, EXTERNAL_CALL_ID="asterisk-1", LINE_NUMBER="line-1")
    assert register(rest) == first


def test_unique_external_call_id_registers_each_physical_call(rest: Rest) -> None:
    """telephony-external-call-register.md: a unique EXTERNAL_CALL_ID per physical call avoids
    getting an existing CALL_ID."""
    ids = {register(rest, EXTERNAL_CALL_ID=f"pbx-{n}") for n in range(3)}
    assert len(ids) == 3


def test_reregistration_is_searched_within_the_application(rest: Rest, other: Rest) -> None:
    """telephony-external-call-register.md: "The search is performed within the application"."""
    assert register(rest) != register(other)


def test_reregistration_after_finish_gives_a_new_call_id(rest: Rest) -> None:
    """tutorials/telephony/index.md: a finished call is gone ("not found or already finished"),
    so the same call registered again is a new one."""
    first = finished(rest)
    assert register(rest) != first


def test_register_show_0_opens_no_card(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-register.md: SHOW 0 — do not show the card (default 1)."""
    assert portal.calls[register(rest, SHOW=0)]["shown_to"] == []
    assert portal.calls[register(rest, SHOW="1", PHONE_NUMBER="7495")]["shown_to"] == [1]


def test_register_show_null_is_the_default(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-register.md: SHOW defaults to 1 (null is "not sent")."""
    assert portal.calls[register(rest, SHOW=None)]["shown_to"] == [1]


def test_register_flags_values_outside_documented_domains(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-register.md lists SHOW and CRM_CREATE as 0/1 and CRM_ENTITY_TYPE
    as CONTACT/COMPANY/LEAD without an error for other values: accepted, listed in warnings."""
    clean = register(rest, SHOW=1, CRM_CREATE=0, CRM_ENTITY_TYPE="LEAD", CRM_ENTITY_ID=3)
    assert portal.calls[clean]["warnings"] == []
    odd = register(rest, PHONE_NUMBER="7495", SHOW=2, CRM_ENTITY_TYPE="DEAL", CRM_ENTITY_ID=3)
    assert [w.split("=")[0] for w in portal.calls[odd]["warnings"]] == ["SHOW", "CRM_ENTITY_TYPE"]


def test_register_strips_letters_from_the_phone_number(rest: Rest, portal: DevPortal) -> None:
    """tutorials/telephony/index.md: pass the phone number "without letters" (register page:
    "Unsupported phone number format" when nothing else is left)."""
    call_id = register(rest, PHONE_NUMBER="+7 906 219-50-47 доб")
    assert portal.calls[call_id]["PHONE_NUMBER"] == "+7 906 219-50-47"


def test_register_crm_create_creates_a_lead(rest: Rest) -> None:
    """telephony-external-call-register.md: CRM_CREATE 1 creates a CRM object; the result lists
    it in CRM_CREATED_LEAD and CRM_CREATED_ENTITIES[{ENTITY_TYPE, ENTITY_ID}]."""
    result = rest.result(
        REGISTER, {"USER_ID": 1, "PHONE_NUMBER": "79062195047", "TYPE": 2, "CRM_CREATE": 1}
    )
    lead = result["CRM_CREATED_LEAD"]
    assert isinstance(lead, int) and lead > 0
    assert result["CRM_CREATED_ENTITIES"] == [{"ENTITY_TYPE": "LEAD", "ENTITY_ID": lead}]
    assert (result["CRM_ENTITY_TYPE"], result["CRM_ENTITY_ID"]) == ("LEAD", lead)


def test_register_links_the_given_crm_entity(rest: Rest) -> None:
    """telephony-external-call-register.md: CRM_ENTITY_TYPE/CRM_ENTITY_ID link the call."""
    result = rest.result(
        REGISTER,
        {
            "USER_ID": 1,
            "PHONE_NUMBER": "79062195047",
            "TYPE": 2,
            "CRM_ENTITY_TYPE": "CONTACT",
            "CRM_ENTITY_ID": "797",
        },
    )
    assert (result["CRM_ENTITY_TYPE"], result["CRM_ENTITY_ID"]) == ("CONTACT", 797)
    assert result["CRM_CREATED_ENTITIES"] == []


def test_outgoing_call_through_line_without_auto_create_creates_nothing(rest: Rest) -> None:
    """telephony-external-call-register.md: for outgoing calls through an external line the
    line's CRM_AUTO_CREATE (telephony-external-line-add.md) also applies."""
    rest.result(LINE_ADD, {"NUMBER": "line-n", "CRM_AUTO_CREATE": "N"})
    result = rest.result(
        REGISTER,
        {
            "USER_ID": 1,
            "PHONE_NUMBER": "79062195047",
            "TYPE": 1,
            "LINE_NUMBER": "line-n",
            "CRM_CREATE": 1,
        },
    )
    assert result["CRM_CREATED_LEAD"] is None and result["CRM_CREATED_ENTITIES"] == []


def test_register_form_encoded(rest: Rest, portal: DevPortal) -> None:
    """settings/how-to-call-rest-api/data-encoding.md with telephony-external-call-register.md:
    form values arrive as strings and are read as integers."""
    response = form_call(
        rest,
        REGISTER,
        [
            ("USER_PHONE_INNER", "102"),
            ("PHONE_NUMBER", "79062195047"),
            ("TYPE", "1"),
            ("SHOW", "0"),
        ],
    )
    assert response.status_code == 200, response.text
    stored = portal.calls[response.json()["result"]["CALL_ID"]]
    assert (stored["USER_ID"], stored["TYPE"], stored["shown_to"]) == (3, 1, [])


def test_telephony_methods_need_the_telephony_scope(
    dev: DevState, portal: DevPortal, rest: Rest
) -> None:
    """telephony-external-call-register.md: Scope `telephony` (_includes/system-errors.md:
    insufficient_scope)."""
    dev.add_app("app.crm.only", "secret", scope="crm")
    _, access, _ = install(dev, portal, "app.crm.only")
    crm_only = Rest(rest.base, portal, access.token)
    response = crm_only.call(REGISTER, {"USER_ID": 1, "PHONE_NUMBER": "7906", "TYPE": 2})
    assert error(response)[:2] == (403, "insufficient_scope")


# --- telephony.externalCall.finish -----------------------------------------------------------


def test_finish_returns_the_statistics_record(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-finish.md (RU): the result is the saved statistics record with
    exactly the documented fields; CALL_START_DATE is `{}` as in the page's example."""
    call_id = register(rest, LINE_NUMBER="line-1", EXTERNAL_CALL_ID="pbx-7")
    result = rest.result(
        FINISH,
        {
            "CALL_ID": call_id,
            "USER_ID": 1,
            "DURATION": 95,
            "STATUS_CODE": "200",
            "VOTE": 5,
            "COST": 1.25,
            "COST_CURRENCY": "RUB",
            "ADD_TO_CHAT": 0,
        },
    )
    assert set(result) == FINISH_RESULT_KEYS
    assert result["CALL_ID"] == call_id and result["EXTERNAL_CALL_ID"] == "pbx-7"
    assert result["PORTAL_USER_ID"] == 1 and result["PHONE_NUMBER"] == "79062195047"
    assert result["PORTAL_NUMBER"] == "line-1" and result["INCOMING"] == "2"
    assert result["CALL_DURATION"] == 95 and result["CALL_STATUS"] == 1
    assert result["CALL_VOTE"] == 5 and result["COST"] == 1.25
    assert result["COST_CURRENCY"] == "RUB" and result["CALL_FAILED_CODE"] == "200"
    assert result["CALL_START_DATE"] == {} and result["COMMENT"] is None
    assert result["ID"] == 1 and isinstance(result["CRM_ACTIVITY_ID"], int)
    assert result["REST_APP_ID"] == "1" and result["REST_APP_NAME"] == "app.test.1"
    assert call_id not in portal.calls
    assert [s["CALL_ID"] for s in portal.statistics] == [call_id]
    assert portal.statistics[0]["_warnings"] == []


def test_second_finish_fails_with_call_not_found(rest: Rest) -> None:
    """telephony-external-call-finish.md (RU error table, verbatim) and tutorials/telephony/
    index.md: "Call is not found" — the call was not found or is already finished."""
    call_id = finished(rest)
    response = rest.call(FINISH, {"CALL_ID": call_id, "USER_ID": 1, "DURATION": 95})
    assert error(response) == (400, "ERROR_CORE", CALL_NOT_FOUND)
    assert CALL_NOT_FOUND.startswith("Call is not found")


def test_finish_of_unknown_call(rest: Rest) -> None:
    """telephony-external-call-finish.md: the call must be registered prior to finishing."""
    response = rest.call(FINISH, {"CALL_ID": "externalCall.0.0", "USER_ID": 1})
    assert error(response) == (400, "ERROR_CORE", CALL_NOT_FOUND)


def test_finish_of_another_applications_call_is_not_found(
    rest: Rest, other: Rest, portal: DevPortal
) -> None:
    """telephony-external-call-finish.md: "Call is not found" for a call this app did not
    register (calls belong to their app: register page, re-registration within the app)."""
    call_id = register(other)
    response = rest.call(FINISH, {"CALL_ID": call_id, "USER_ID": 1})
    assert error(response) == (400, "ERROR_CORE", CALL_NOT_FOUND)
    assert call_id in portal.calls
    assert other.result(FINISH, {"CALL_ID": call_id, "USER_ID": 1})["CALL_ID"] == call_id


@pytest.mark.parametrize("value", [123, ["externalCall.x"], {"a": "b"}, None, "(absent)"])
def test_finish_call_id_must_be_a_string(rest: Rest, value: Any) -> None:
    """telephony-external-call-finish.md: INVALID_ARGUMENT "CALL_ID must be a string" (HTTP 400)."""
    params: dict[str, Any] = {"USER_ID": 1, "DURATION": 5}
    if value != "(absent)":
        params["CALL_ID"] = value
    assert error(rest.call(FINISH, params)) == (400, "INVALID_ARGUMENT", "CALL_ID must be a string")


def test_finish_call_id_must_be_a_string_in_a_form_too(rest: Rest) -> None:
    """telephony-external-call-finish.md: a bracketed CALL_ID[] is an array, not a string."""
    response = form_call(rest, FINISH, [("CALL_ID[]", "externalCall.x"), ("USER_ID", "1")])
    assert error(response) == (400, "INVALID_ARGUMENT", "CALL_ID must be a string")


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({}, "USER_ID or USER_PHONE_INNER should be set"),
        ({"USER_ID": "", "USER_PHONE_INNER": ""}, "USER_ID or USER_PHONE_INNER should be set"),
        ({"USER_ID": 5}, "User is not found or is not active"),
        ({"USER_ID": 404}, "User is not found or is not active"),
        ({"USER_PHONE_INNER": "105"}, "User is not found or is not active"),
    ],
)
def test_finish_user_errors(
    rest: Rest, portal: DevPortal, params: dict[str, Any], text: str
) -> None:
    """telephony-external-call-finish.md, ERROR_CORE: "USER_ID or USER_PHONE_INNER should be
    set", "User is not found or is not active". The call stays registered."""
    call_id = register(rest)
    assert error(rest.call(FINISH, {"CALL_ID": call_id, **params})) == (400, "ERROR_CORE", text)
    assert call_id in portal.calls


def test_finish_by_extension_and_by_another_user(rest: Rest) -> None:
    """telephony-external-call-finish.md: USER_ID / USER_PHONE_INNER is the user who finishes
    the call (PORTAL_USER_ID), not necessarily the one it was registered for."""
    by_extension = rest.result(FINISH, {"CALL_ID": register(rest), "USER_PHONE_INNER": "102"})
    assert by_extension["PORTAL_USER_ID"] == 3
    other_user = rest.result(FINISH, {"CALL_ID": register(rest), "USER_ID": 2})
    assert other_user["PORTAL_USER_ID"] == 2


def test_finish_defaults(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-finish.md defaults: DURATION 0, COST 0, COST_CURRENCY "",
    STATUS_CODE 304 when DURATION = 0, FAILED_REASON "", no VOTE = 0, ADD_TO_CHAT 1."""
    result = rest.result(FINISH, {"CALL_ID": register(rest), "USER_ID": 1})
    assert result["CALL_DURATION"] == 0 and result["CALL_STATUS"] == 0
    assert result["CALL_FAILED_CODE"] == "304" and result["CALL_FAILED_REASON"] == ""
    assert result["COST"] == 0 and result["COST_CURRENCY"] == "" and result["CALL_VOTE"] == 0
    stored = portal.statistics[-1]
    assert stored["_add_to_chat"] is True and "ADD_TO_CHAT" not in stored["_params"]
    assert stored["_warnings"] == []


def test_finish_status_defaults_to_200_when_duration_positive(rest: Rest) -> None:
    """telephony-external-call-finish.md: STATUS_CODE defaults to 200 if DURATION > 0."""
    result = rest.result(FINISH, {"CALL_ID": register(rest), "USER_ID": 1, "DURATION": 1})
    assert (result["CALL_FAILED_CODE"], result["CALL_STATUS"]) == ("200", 1)


def test_finish_call_status_follows_duration_only(rest: Rest) -> None:
    """telephony-external-call-finish.md: CALL_STATUS 1 successful conversation, 0
    unsuccessful/missed — derived from DURATION; an explicit STATUS_CODE is kept as sent."""
    busy = rest.result(
        FINISH, {"CALL_ID": register(rest), "USER_ID": 1, "DURATION": 0, "STATUS_CODE": "486"}
    )
    assert (busy["CALL_FAILED_CODE"], busy["CALL_STATUS"]) == ("486", 0)
    odd = rest.result(
        FINISH,
        {"CALL_ID": register(rest), "USER_ID": 1, "DURATION": 30, "STATUS_CODE": "603-S"},
    )
    assert (odd["CALL_FAILED_CODE"], odd["CALL_STATUS"]) == ("603-S", 1)


@pytest.mark.parametrize("code", STATUS_CODES)
def test_finish_accepts_every_documented_status_code(
    rest: Rest, portal: DevPortal, code: str
) -> None:
    """telephony-external-call-finish.md: the 13 STATUS_CODE values."""
    result = rest.result(
        FINISH,
        {"CALL_ID": register(rest), "USER_ID": 1, "STATUS_CODE": code, "FAILED_REASON": "why"},
    )
    assert result["CALL_FAILED_CODE"] == code and result["CALL_FAILED_REASON"] == "why"
    assert portal.statistics[-1]["_warnings"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"STATUS_CODE": "999"}, "STATUS_CODE"),
        ({"VOTE": 7}, "VOTE"),
        ({"VOTE": "bad"}, "VOTE"),
        ({"DURATION": "abc"}, "DURATION"),
        ({"DURATION": -5}, "DURATION"),
        ({"COST": "cheap"}, "COST"),
        ({"COST_CURRENCY": "XXX"}, "COST_CURRENCY"),
        ({"ADD_TO_CHAT": 2}, "ADD_TO_CHAT"),
    ],
)
def test_finish_accepts_undocumented_values_but_flags_them(
    rest: Rest, portal: DevPortal, params: dict[str, Any], field: str
) -> None:
    """telephony-external-call-finish.md lists the possible values of STATUS_CODE, VOTE (1–5,
    0/null), ADD_TO_CHAT (0/1), COST_CURRENCY (crm.currency.list) but documents no error for
    others: the emulator accepts them (read as PHP would) and lists them in `_warnings`."""
    response = rest.call(FINISH, {"CALL_ID": register(rest), "USER_ID": 1, **params})
    assert response.status_code == 200, response.text
    warnings = portal.statistics[-1]["_warnings"]
    assert len(warnings) == 1 and warnings[0].startswith(field)


def test_finish_reads_duration_as_php_int(rest: Rest) -> None:
    """telephony-external-call-finish.md: DURATION integer ("abc" is 0 to PHP, so a missed call)."""
    result = rest.result(FINISH, {"CALL_ID": register(rest), "USER_ID": 1, "DURATION": "abc"})
    assert (result["CALL_DURATION"], result["CALL_STATUS"], result["CALL_FAILED_CODE"]) == (
        0,
        0,
        "304",
    )


def test_finish_vote_zero_or_null_means_no_vote(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-finish.md: no rating is `0` or `null`."""
    for vote in (0, None):
        result = rest.result(FINISH, {"CALL_ID": register(rest), "USER_ID": 1, "VOTE": vote})
        assert result["CALL_VOTE"] == 0
        assert portal.statistics[-1]["_warnings"] == []


def test_finish_form_encoded_strings_equal_json_types(rest: Rest, portal: DevPortal) -> None:
    """settings/how-to-call-rest-api/data-encoding.md with telephony-external-call-finish.md:
    "95" and 95 are the same DURATION; form values keep the documented result types."""
    call_id = register(rest)
    response = form_call(
        rest,
        FINISH,
        [
            ("CALL_ID", call_id),
            ("USER_ID", "1"),
            ("DURATION", "95"),
            ("COST", "12.50"),
            ("COST_CURRENCY", "EUR"),
            ("STATUS_CODE", "200"),
            ("VOTE", "4"),
            ("ADD_TO_CHAT", "0"),
        ],
    )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["CALL_DURATION"] == 95 and result["CALL_STATUS"] == 1
    assert result["COST"] == 12.5 and result["CALL_VOTE"] == 4
    assert result["COST_CURRENCY"] == "EUR" and result["PORTAL_USER_ID"] == 1
    stored = portal.statistics[-1]
    assert stored["_params"]["ADD_TO_CHAT"] == "0" and stored["_add_to_chat"] is False
    assert stored["_warnings"] == []


def test_finish_keeps_add_to_chat_as_received(rest: Rest, portal: DevPortal, dev: DevState) -> None:
    """telephony-external-call-finish.md: ADD_TO_CHAT 0/1 (default 1). What was sent is kept in
    the statistics entry and the journal, and never appears in the REST result."""
    result = rest.result(
        FINISH, {"CALL_ID": register(rest), "USER_ID": 1, "DURATION": 3, "ADD_TO_CHAT": 1}
    )
    assert not any(key.startswith("_") for key in result)
    stored = portal.statistics[-1]
    assert stored["_params"]["ADD_TO_CHAT"] == 1 and stored["_add_to_chat"] is True
    journal = dev.entries(method=FINISH, status=200)
    assert journal[-1]["params"]["ADD_TO_CHAT"] == 1


def test_finish_stores_record_url_without_downloading_it(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-finish.md: RECORD_URL (deprecated) is accepted; the emulator
    keeps it and makes no outbound request (an unroutable address answers at once)."""
    url = "http://192.0.2.1/record.mp3"
    started = time.monotonic()
    rest.result(FINISH, {"CALL_ID": register(rest), "USER_ID": 1, "RECORD_URL": url})
    assert time.monotonic() - started < 2
    assert portal.statistics[-1]["_record_url"] == url


def test_finish_ids_increase(rest: Rest) -> None:
    """telephony-external-call-finish.md: ID is the record's identifier in the statistics."""
    first = rest.result(FINISH, {"CALL_ID": register(rest), "USER_ID": 1})
    second = rest.result(FINISH, {"CALL_ID": register(rest), "USER_ID": 1})
    assert second["ID"] == first["ID"] + 1
    assert second["CRM_ACTIVITY_ID"] != first["CRM_ACTIVITY_ID"]


def test_finish_without_line_reports_the_app_as_portal_number(rest: Rest) -> None:
    """telephony-external-call-finish.md: PORTAL_NUMBER, the line the call went through; a call
    registered without LINE_NUMBER went through the app itself."""
    result = rest.result(FINISH, {"CALL_ID": register(rest), "USER_ID": 1})
    assert result["PORTAL_NUMBER"] == "REST_APP:1"


def test_finish_returns_the_calls_crm_object(rest: Rest) -> None:
    """telephony-external-call-finish.md: CRM_ENTITY_TYPE / CRM_ENTITY_ID of the call."""
    call_id = register(rest, CRM_ENTITY_TYPE="COMPANY", CRM_ENTITY_ID=12)
    result = rest.result(FINISH, {"CALL_ID": call_id, "USER_ID": 1})
    assert (result["CRM_ENTITY_TYPE"], result["CRM_ENTITY_ID"]) == ("COMPANY", 12)


# --- telephony.externalCall.attachRecord -----------------------------------------------------


def test_attach_record_before_finish_fails(rest: Rest) -> None:
    """telephony-external-call-attach-record.md (RU) and tutorials/telephony/index.md: "Call is
    not found in the statistic table. Looks like it is not finished yet."."""
    call_id = register(rest)
    response = rest.call(ATTACH, {"CALL_ID": call_id, "FILENAME": "a.mp3", "FILE_CONTENT": WAV})
    assert error(response) == (400, "ERROR_CORE", NOT_IN_STATISTICS)


def test_attach_record_of_another_applications_call_fails(rest: Rest, other: Rest) -> None:
    """telephony-external-call-attach-record.md: only this app's finished calls are found."""
    call_id = finished(other)
    response = rest.call(ATTACH, {"CALL_ID": call_id, "FILENAME": "a.wav", "FILE_CONTENT": WAV})
    assert error(response) == (400, "ERROR_CORE", NOT_IN_STATISTICS)


def test_attach_record_with_content_and_replacement(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-attach-record.md: FILENAME + FILE_CONTENT attaches at once and
    returns FILE_ID; calling again replaces the earlier recording."""
    call_id = finished(rest)
    first = rest.result(ATTACH, {"CALL_ID": call_id, "FILENAME": "a.wav", "FILE_CONTENT": WAV})
    assert set(first) == {"FILE_ID"} and isinstance(first["FILE_ID"], int)
    stored = portal.records[call_id]
    assert stored["FILENAME"] == "a.wav" and base64.b64decode(stored["FILE_CONTENT"])[:4] == b"RIFF"
    second = rest.result(ATTACH, {"CALL_ID": call_id, "FILENAME": "b.mp3", "FILE_CONTENT": WAV})
    assert second["FILE_ID"] != first["FILE_ID"]
    assert portal.records[call_id]["FILENAME"] == "b.mp3" and len(portal.records) == 1


def test_attach_record_by_url_is_stored_not_downloaded(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-attach-record.md: RECORD_URL attaches and returns FILE_ID; without
    FILENAME the name comes from the URL. The emulator never fetches the URL."""
    call_id = finished(rest)
    url = "http://192.0.2.1/records/2026/call-7.mp3?sig=1"
    result = rest.result(ATTACH, {"CALL_ID": call_id, "RECORD_URL": url})
    assert isinstance(result["FILE_ID"], int)
    stored = portal.records[call_id]
    assert stored["RECORD_URL"] == url and stored["FILENAME"] == "call-7.mp3"
    assert stored["FILE_CONTENT"] is None


def test_attach_record_filename_only_gives_upload_url(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-attach-record.md: FILENAME without FILE_CONTENT returns uploadUrl
    (`…/rest/upload.json?auth=…&token=telephony%7C…`) and fieldName "file"."""
    call_id = finished(rest)
    result = rest.result(ATTACH, {"CALL_ID": call_id, "FILENAME": "a.mp3"})
    assert result["fieldName"] == "file"
    prefix = f"{rest.base}/p/{portal.code}/rest/upload.json?auth={rest.token}&token=telephony%7C"
    assert result["uploadUrl"].startswith(prefix)
    assert call_id not in portal.records  # nothing is attached until the upload


NO_URL_OR_FILENAME = (
    "Required parameters are not set. Request should contain or URL or FILENAME parameter"
)
WRONG_EXTENSION = "Wrong file extension. Only wav and mp3 are allowed"
NOT_BASE64 = "File content is not properly encoded. Base64 encoding is expected."


@pytest.mark.parametrize(
    ("params", "text"),
    [
        ({}, NO_URL_OR_FILENAME),
        ({"FILENAME": "", "FILE_CONTENT": WAV}, "File name is empty"),
        ({"FILENAME": "a.ogg", "FILE_CONTENT": WAV}, WRONG_EXTENSION),
        ({"FILENAME": "mp3", "FILE_CONTENT": WAV}, WRONG_EXTENSION),
        ({"RECORD_URL": "http://192.0.2.1/r", "FILENAME": "r.txt"}, WRONG_EXTENSION),
        ({"FILENAME": "a.wav", "FILE_CONTENT": ""}, "File content is empty."),
        ({"FILENAME": "a.wav", "FILE_CONTENT": "not base64!"}, NOT_BASE64),
    ],
)
def test_attach_record_errors(rest: Rest, params: dict[str, Any], text: str) -> None:
    """telephony-external-call-attach-record.md (RU), ERROR_CORE texts for the parameters."""
    call_id = finished(rest)
    assert error(rest.call(ATTACH, {"CALL_ID": call_id, **params})) == (400, "ERROR_CORE", text)


def test_attach_record_form_encoded(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-attach-record.md with data-encoding.md: the same in a form."""
    call_id = finished(rest)
    response = form_call(
        rest, ATTACH, [("CALL_ID", call_id), ("FILENAME", "a.wav"), ("FILE_CONTENT", WAV)]
    )
    assert response.status_code == 200, response.text
    assert portal.records[call_id]["FILE_ID"] == response.json()["result"]["FILE_ID"]


# --- telephony.externalCall.show / hide ------------------------------------------------------


def test_show_and_hide_for_a_queue(rest: Rest, portal: DevPortal) -> None:
    """tutorials/telephony/index.md (simultaneous queue) with telephony-external-call-show.md and
    -hide.md: USER_ID is an integer or an array; the result is true."""
    call_id = register(rest, SHOW=0)
    assert rest.result(SHOW, {"CALL_ID": call_id, "USER_ID": [1, 2, 3]}) is True
    assert portal.calls[call_id]["shown_to"] == [1, 2, 3]
    assert rest.result(HIDE, {"CALL_ID": call_id, "USER_ID": [1, 3]}) is True
    assert portal.calls[call_id]["shown_to"] == [2]
    assert rest.result(HIDE, {"CALL_ID": call_id, "USER_ID": 2}) is True
    assert portal.calls[call_id]["shown_to"] == []


def test_show_and_hide_default_to_the_registration_user(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-show.md: USER_ID defaults to the user of the registration."""
    call_id = register(rest, USER_ID=2, SHOW=0)
    assert rest.result(SHOW, {"CALL_ID": call_id}) is True
    assert portal.calls[call_id]["shown_to"] == [2]
    assert rest.result(HIDE, {"CALL_ID": call_id}) is True
    assert portal.calls[call_id]["shown_to"] == []


def test_show_form_encoded_array(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-show.md with data-encoding.md: USER_ID[]=… is an array."""
    call_id = register(rest, SHOW=0)
    response = form_call(rest, SHOW, [("CALL_ID", call_id), ("USER_ID[]", "2"), ("USER_ID[]", "3")])
    assert response.json()["result"] is True
    assert portal.calls[call_id]["shown_to"] == [2, 3]


def test_show_and_hide_unknown_or_finished_call_give_false(rest: Rest, other: Rest) -> None:
    """telephony-external-call-show.md / -hide.md: `false` — the call is not found (no error)."""
    for method in (SHOW, HIDE):
        assert rest.result(method, {"CALL_ID": "externalCall.none.0", "USER_ID": 1}) is False
        assert rest.result(method, {"CALL_ID": finished(rest), "USER_ID": 1}) is False
        assert rest.result(method, {"CALL_ID": register(other), "USER_ID": 1}) is False


def test_finish_hides_the_card(rest: Rest, portal: DevPortal) -> None:
    """tutorials/telephony/index.md: finish "hides the card" — the call is no longer shown."""
    call_id = register(rest)
    rest.result(FINISH, {"CALL_ID": call_id, "USER_ID": 1})
    assert call_id not in portal.calls


# --- telephony.externalLine.add / get --------------------------------------------------------


def test_line_add_and_get(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-line-add.md: result {"ID"}; CRM_AUTO_CREATE defaults to Y.
    telephony-external-line-get.md: [{NUMBER, NAME, CRM_AUTO_CREATE}]."""
    first = rest.result(LINE_ADD, {"NUMBER": "14151234567", "NAME": "Support Line"})
    second = rest.result(
        LINE_ADD, {"NUMBER": "14157654321", "NAME": "Main", "CRM_AUTO_CREATE": "N"}
    )
    assert set(first) == {"ID"} and second["ID"] == first["ID"] + 1
    assert rest.result(LINE_GET) == [
        {"NUMBER": "14151234567", "NAME": "Support Line", "CRM_AUTO_CREATE": "Y"},
        {"NUMBER": "14157654321", "NAME": "Main", "CRM_AUTO_CREATE": "N"},
    ]
    assert portal.lines["14151234567"]["client_id"] == "app.test.1"


def test_line_add_errors(rest: Rest) -> None:
    """telephony-external-line-add.md: "NUMBER should not be empty", "Line already exists"."""
    assert error(rest.call(LINE_ADD, {"NAME": "x"})) == (
        400,
        "ERROR_CORE",
        "NUMBER should not be empty",
    )
    rest.result(LINE_ADD, {"NUMBER": "line-1"})
    assert error(rest.call(LINE_ADD, {"NUMBER": "line-1"})) == (
        400,
        "ERROR_CORE",
        "Line already exists",
    )


def test_line_get_lists_only_this_applications_lines(rest: Rest, other: Rest) -> None:
    """telephony-external-line-get.md: "Array of external lines for the application"."""
    rest.result(LINE_ADD, {"NUMBER": "line-ours"})
    other.result(LINE_ADD, {"NUMBER": "line-theirs", "NAME": "Theirs"})
    assert [line["NUMBER"] for line in rest.result(LINE_GET)] == ["line-ours"]
    assert other.result(LINE_GET) == [
        {"NUMBER": "line-theirs", "NAME": "Theirs", "CRM_AUTO_CREATE": "Y"}
    ]


def test_register_with_an_unknown_line_number_adds_no_line(rest: Rest, portal: DevPortal) -> None:
    """telephony-external-call-register.md documents LINE_NUMBER as the call's line and nothing
    more; lines are added by telephony.externalLine.add. (The digest's UNCONFIRMED core reading,
    that register creates an unknown line silently, is not emulated: the app must not rely on
    it.)"""
    call_id = register(rest, LINE_NUMBER="74950000001")
    assert portal.calls[call_id]["LINE_NUMBER"] == "74950000001"
    assert rest.result(LINE_GET) == [] and portal.lines == {}


def test_line_add_form_encoded(rest: Rest) -> None:
    """telephony-external-line-add.md with data-encoding.md: form parameters."""
    response = form_call(rest, LINE_ADD, [("NUMBER", "line-f"), ("CRM_AUTO_CREATE", "N")])
    assert response.status_code == 200, response.text
    assert rest.result(LINE_GET)[0]["CRM_AUTO_CREATE"] == "N"
