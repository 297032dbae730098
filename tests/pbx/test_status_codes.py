"""The PBX status table (b24app/pbx/status_codes.py), row by row, and its documentation.

The expectations here are written out independently of the table, so a changed row fails a test
and has to be changed (and justified) twice.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from b24app.pbx import status_codes
from b24app.pbx.schemas import validate_finish

BITRIX = ["200", "304", "603", "603-S", "403", "404", "486", "484", "503", "480", "402", "423",
          "OTHER"]  # fmt: skip

EXPECTED: list[tuple[str, str]] = [
    # Asterisk DIALSTATUS
    ("ANSWER", "200"),
    ("NOANSWER", "304"),
    ("BUSY", "486"),
    ("CANCEL", "603-S"),
    ("CONGESTION", "503"),
    ("CHANUNAVAIL", "480"),
    ("DONTCALL", "603"),
    ("TORTURE", "603"),
    ("INVALIDARGS", "OTHER"),
    # Asterisk CDR disposition
    ("ANSWERED", "200"),
    ("NO ANSWER", "304"),
    ("FAILED", "503"),
    # Q.850 causes
    ("1", "404"),
    ("2", "404"),
    ("3", "404"),
    ("17", "486"),
    ("18", "304"),
    ("19", "304"),
    ("20", "480"),
    ("21", "603"),
    ("22", "404"),
    ("27", "503"),
    ("28", "484"),
    ("31", "480"),
    ("34", "503"),
    ("38", "503"),
    ("41", "503"),
    ("42", "503"),
    ("44", "503"),
    ("47", "503"),
    ("52", "403"),
    ("54", "403"),
    ("55", "403"),
    ("57", "403"),
    ("58", "503"),
    ("87", "403"),
    ("102", "304"),
    # Q.850 cause names (FreeSWITCH hangup_cause)
    ("UNALLOCATED_NUMBER", "404"),
    ("NO_ROUTE_TRANSIT_NET", "404"),
    ("NO_ROUTE_DESTINATION", "404"),
    ("USER_BUSY", "486"),
    ("NO_USER_RESPONSE", "304"),
    ("NO_ANSWER", "304"),
    ("SUBSCRIBER_ABSENT", "480"),
    ("CALL_REJECTED", "603"),
    ("NUMBER_CHANGED", "404"),
    ("DESTINATION_OUT_OF_ORDER", "503"),
    ("INVALID_NUMBER_FORMAT", "484"),
    ("NORMAL_UNSPECIFIED", "480"),
    ("NORMAL_CIRCUIT_CONGESTION", "503"),
    ("NETWORK_OUT_OF_ORDER", "503"),
    ("NORMAL_TEMPORARY_FAILURE", "503"),
    ("SWITCH_CONGESTION", "503"),
    ("OUTGOING_CALL_BARRED", "403"),
    ("INCOMING_CALL_BARRED", "403"),
    ("RECOVERY_ON_TIMER_EXPIRE", "304"),
    ("ORIGINATOR_CANCEL", "603-S"),
    ("USER_NOT_REGISTERED", "480"),
    # SIP final responses
    ("200", "200"),
    ("401", "403"),
    ("402", "402"),
    ("403", "403"),
    ("404", "404"),
    ("407", "403"),
    ("408", "304"),
    ("410", "404"),
    ("423", "423"),
    ("480", "480"),
    ("484", "484"),
    ("485", "484"),
    ("486", "486"),
    ("487", "603-S"),
    ("500", "503"),
    ("502", "503"),
    ("503", "503"),
    ("504", "503"),
    ("600", "486"),
    ("603", "603"),
    ("604", "404"),
]
BY_DURATION = ["16", "NORMAL_CLEARING"]


@pytest.mark.parametrize(("native", "code"), EXPECTED)
def test_each_native_status_maps_to_its_bitrix24_code(native: str, code: str):
    assert status_codes.to_bitrix(native, duration=0) == code
    assert status_codes.to_bitrix(native, duration=95) == code  # the status alone decides


@pytest.mark.parametrize("native", BY_DURATION)
def test_normal_clearing_follows_duration_as_bitrix24s_default_does(native: str):
    assert status_codes.to_bitrix(native, duration=1) == "200"
    assert status_codes.to_bitrix(native, duration=0) == "304"


def test_the_table_has_exactly_these_rows():
    rows = {(status_codes.normalise(r.native), r.code) for r in status_codes.TABLE}
    expected = {(native, code) for native, code in EXPECTED if native not in BITRIX}
    expected |= {(n, status_codes.BY_DURATION) for n in BY_DURATION}
    assert rows == expected


@pytest.mark.parametrize("code", BITRIX)
def test_bitrix24_codes_map_to_themselves(code: str):
    assert status_codes.to_bitrix(code, duration=0) == code
    assert status_codes.to_bitrix(code.lower(), duration=7) == code


def test_every_target_is_one_of_the_13_codes():
    assert list(status_codes.BITRIX_CODES) == BITRIX
    targets = {row.code for row in status_codes.TABLE} - {status_codes.BY_DURATION}
    assert targets <= set(BITRIX)


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        ("answer", "200"),
        ("  Answer\t", "200"),
        ("no answer", "304"),
        ("No  Answer", "304"),
        (" NO\tANSWER ", "304"),
        ("noanswer", "304"),
        ("normal_clearing", "304"),
        (" 17 ", "486"),
        ("603-s", "603-S"),
        ("other", "OTHER"),
    ],
)
def test_lookup_ignores_case_and_surrounding_whitespace(sent: str, code: str):
    assert status_codes.to_bitrix(sent, duration=0) == code


@pytest.mark.parametrize("sent", ["", "999", "ANSWERED-ELSEWHERE", "0", "16.0", "SIP 486", "☎"])
def test_anything_else_is_other(sent: str):
    assert status_codes.lookup(sent) is None
    assert status_codes.to_bitrix(sent, duration=10) == "OTHER"


def test_the_intake_keeps_an_unknown_status_in_failed_reason():
    base = {"CALL_ID": "c1", "USER_ID": 1, "DURATION": 5}
    request, _ = validate_finish(base | {"STATUS_CODE": "LOSE_RACE"})
    assert request is not None
    assert (request["STATUS_CODE"], request["FAILED_REASON"]) == ("OTHER", "PBX status: LOSE_RACE")

    request, _ = validate_finish(base | {"STATUS_CODE": "x" * 500, "FAILED_REASON": "r" * 255})
    assert request is not None
    assert request["FAILED_REASON"].startswith("r" * 100)
    assert request["FAILED_REASON"].endswith("; PBX status: " + "x" * 61 + "...")
    assert len(request["FAILED_REASON"]) == 255
    again, errors = validate_finish(request)
    assert errors == [] and again == request  # a stored call validates to itself


def test_a_known_status_mapped_to_other_is_kept_too():
    request, _ = validate_finish(
        {"CALL_ID": "c1", "USER_ID": 1, "DURATION": 0, "STATUS_CODE": "INVALIDARGS"}
    )
    assert request is not None
    assert request["STATUS_CODE"] == "OTHER"
    assert request["FAILED_REASON"] == "PBX status: INVALIDARGS"


@pytest.mark.parametrize(("sent", "code"), [(486, "486"), (17, "486"), (16, "200")])
def test_the_intake_takes_numeric_statuses_from_json(sent: int, code: str):
    request, _ = validate_finish(
        {"CALL_ID": "c1", "USER_ID": 1, "STATUS_CODE": sent, "DURATION": 5}
    )
    assert request is not None and request["STATUS_CODE"] == code


def test_the_documentation_shows_the_table():
    doc = Path(__file__).parents[2] / "docs" / "pbx-status-codes.md"
    assert status_codes.markdown_table() in doc.read_text(encoding="utf-8")
