"""Invisible characters in what the PBX API passes to Bitrix24: Unicode's format characters
(category Cf: right-to-left override, zero-width space, byte order mark, ...) and line
separators. The identifiers that key a call (PBX_CALL_ID, CALL_ID) refuse them, as they refuse
control characters: 422 naming the field. Numbers and names Bitrix24 matches on (PHONE_NUMBER,
LINE_NUMBER, USER_PHONE_INNER, CRM_SOURCE, FILENAME, the route's PHONE_NUMBER) and free text
(FAILED_REASON, an unknown STATUS_CODE kept in it) drop them: a call is never lost for an
invisible character (a PBX does not send a refused call again), and the number matches."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.pbx import (
    ANSWER,
    FINISH,
    RECORD,
    RING,
    START,
    bearer,
    event_request,
    finish_request,
    make_portal,
    stored_calls,
)
from tests.pbx.test_events import FINISH_BODY, START_BODY
from tests.pbx.test_intake import assert_problem, error_fields

RLO, ZWSP, BOM, SOFT_HYPHEN, TAG, LINE_SEPARATOR = (
    "\u202e", "\u200b", "\ufeff", "\u00ad", "\U000e0041", "\u2028",
)  # fmt: skip
INVISIBLE = [RLO, ZWSP, BOM, SOFT_HYPHEN, TAG]
REGISTERED_FINISH: dict[str, Any] = {"CALL_ID": "externalCall.1", "USER_ID": 1, "DURATION": 5}


@pytest.fixture
def key(app: Flask) -> str:
    return make_portal(app, "portal-a")


KEYS = [
    (START, START_BODY, "PBX_CALL_ID"),
    (START, START_BODY, "CALL_ID"),
    (FINISH, FINISH_BODY, "PBX_CALL_ID"),
    (FINISH, REGISTERED_FINISH, "CALL_ID"),
    (RECORD, {"RECORD_URL": "https://pbx.example.com/1.mp3"}, "PBX_CALL_ID"),
]
MATCHED = [
    (START, START_BODY, "PHONE_NUMBER", "start"),
    (START, START_BODY, "LINE_NUMBER", "start"),
    (START, START_BODY, "USER_PHONE_INNER", "start"),
    (START, START_BODY, "CRM_SOURCE", "start"),
    (FINISH, FINISH_BODY, "USER_PHONE_INNER", "finish"),
    (RING, {"PBX_CALL_ID": "1"}, "USER_PHONE_INNER", "ring"),
    (ANSWER, {"PBX_CALL_ID": "1"}, "USER_PHONE_INNER", "answer"),
    (RECORD, {"PBX_CALL_ID": "1", "RECORD_URL": "https://pbx.example.com/1.mp3"}, "FILENAME",
     "record"),
]  # fmt: skip


@pytest.mark.parametrize("char", [*INVISIBLE, LINE_SEPARATOR], ids=ascii)
@pytest.mark.parametrize(("path", "body", "field"), KEYS)
def test_a_key_with_an_invisible_character_is_422_naming_it(
    app, client, key, path, body, field, char
):
    response = client.post(path, json=body | {field: f"10{char}1"}, headers=bearer(key))
    errors = error_fields(assert_problem(response, 422))
    assert list(errors) == [field], errors
    assert "invisible" in errors[field] and f"U+{ord(char):04X}" in errors[field]
    assert stored_calls(app) == []


@pytest.mark.parametrize("char", [*INVISIBLE, LINE_SEPARATOR], ids=ascii)
@pytest.mark.parametrize(("path", "body", "field", "kind"), MATCHED)
def test_a_number_or_name_loses_its_invisible_characters_and_keeps_the_call(
    app, client, key, path, body, field, kind, char
):
    value, kept = (
        ("+15" + char + "55", "+1555") if field == "PHONE_NUMBER" else ("10" + char + "1", "101")
    )
    response = client.post(path, json=body | {field: value}, headers=bearer(key))
    assert response.status_code == 202, response.get_data(as_text=True)
    stored = event_request(app, response.get_json()["id"], kind)[field]
    assert stored == ([kept] if kind == "ring" else kept)


def test_the_newcomers_phone_number_in_a_form_too(app, client, key):
    """Direction marks around a number copied from a web page or a chat, in a form."""
    body = {"PBX_CALL_ID": "nc-2", "PHONE_NUMBER": "\u202e+1555\u200b", "TYPE": "2"}
    response = client.post(START, data=body | {"USER_ID": "2"}, headers=bearer(key))
    assert response.status_code == 202, response.get_data(as_text=True)
    assert event_request(app, response.get_json()["id"], "start")["PHONE_NUMBER"] == "+1555"


def test_a_number_of_only_invisible_characters_is_422_naming_it(client, key):
    body = {"PBX_CALL_ID": "nc-3", "PHONE_NUMBER": "\u202a\u202c", "TYPE": 2, "USER_ID": 2}
    errors = error_fields(assert_problem(client.post(START, json=body, headers=bearer(key)), 422))
    assert list(errors) == ["PHONE_NUMBER"] and "invisible" in errors["PHONE_NUMBER"]


def test_the_route_drops_them_as_the_start_does(client, key):
    response = client.get(
        "/pbx/v1/route", query_string={"PHONE_NUMBER": "+1555\u200b"}, headers=bearer(key)
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def test_free_text_drops_them_and_keeps_the_call(app, client, key):
    """FAILED_REASON and an unknown STATUS_CODE (kept in FAILED_REASON) lose their invisible
    characters; line breaks and visible text stay; a known status with one is still known."""
    body = REGISTERED_FINISH | {
        "FAILED_REASON": f"{RLO}line 1\nline{ZWSP} 2{BOM}",
        "STATUS_CODE": f"SIP 499{TAG} Weird",
    }
    response = client.post(FINISH, json=body, headers=bearer(key))
    assert response.status_code == 202, response.get_data(as_text=True)
    request = finish_request(app, response.get_json()["id"])
    assert request["FAILED_REASON"] == "line 1\nline 2; PBX status: SIP 499 Weird"
    assert request["STATUS_CODE"] == "OTHER"

    busy = client.post(
        FINISH,
        json=REGISTERED_FINISH | {"CALL_ID": "externalCall.2", "STATUS_CODE": f"BUSY{ZWSP}"},
        headers=bearer(key),
    )
    assert busy.status_code == 202
    assert finish_request(app, busy.get_json()["id"])["STATUS_CODE"] == "486"


def test_free_text_of_only_invisible_characters_is_absent(app, client, key):
    body = REGISTERED_FINISH | {"FAILED_REASON": f"{ZWSP}{RLO}", "STATUS_CODE": ZWSP}
    response = client.post(FINISH, json=body, headers=bearer(key))
    assert response.status_code == 202, response.get_data(as_text=True)
    request = finish_request(app, response.get_json()["id"])
    assert "FAILED_REASON" not in request and "STATUS_CODE" not in request


def test_visible_non_latin_text_is_untouched(app, client, key):
    """Not every non-ASCII character is suspect: Cyrillic extensions and reasons pass as sent."""
    body = REGISTERED_FINISH | {"USER_PHONE_INNER": "оператор-1", "FAILED_REASON": "Занято"}
    response = client.post(FINISH, json=body, headers=bearer(key))
    assert response.status_code == 202, response.get_data(as_text=True)
    request = finish_request(app, response.get_json()["id"])
    assert request["USER_PHONE_INNER"] == "оператор-1" and request["FAILED_REASON"] == "Занято"
