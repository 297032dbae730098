"""`POST /pbx/v1/calls/finish` and `GET /pbx/v1/calls/<id>`: auth, bodies, validation, idempotent
storage (also under concurrency, on SQLite and PostgreSQL), and every error as problem+json."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from b24app.db import Database, get_db
from b24app.models import CallState, PortalStatus
from b24app.pbx.schemas import validate_finish
from b24app.portals import pbx_keys, store
from b24app.wiring import current_store
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.pbx import (
    FINISH,
    REGISTERED,
    RING,
    START,
    UNREGISTERED,
    bearer,
    finish_request,
    make_portal,
    stored_call,
    stored_calls,
)

PROBLEM = "application/problem+json"


@pytest.fixture
def key(app: Flask) -> str:
    return make_portal(app, "portal-a", currencies=["RUB", "USD", "EUR"])


def post(client: FlaskClient, key: str, body: dict[str, Any], **kwargs: Any) -> Any:
    return client.post(FINISH, json=body, headers=bearer(key), **kwargs)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"].startswith("urn:b24app:pbx:problem:")
    assert body["title"] and body["detail"]
    assert isinstance(body["errors"], list)
    return body


def error_fields(body: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["message"] for e in body["errors"]}


# --- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer a b", "b24pbx_abc", "Bearer ä"],
)
def test_missing_or_malformed_key_is_401_with_www_authenticate(client: FlaskClient, header):
    headers = {} if header is None else {"Authorization": header}
    response = client.post(FINISH, json=UNREGISTERED, headers=headers)
    body = assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization" in body["detail"]


def test_unknown_key_is_401(client: FlaskClient, key: str):
    for wrong in ("b24pbx_" + "A" * 43, key[:-1] + ("B" if key[-1] != "B" else "C"), "x" * 50):
        response = post(client, wrong, UNREGISTERED)
        body = assert_problem(response, 401)
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        assert "unknown or was revoked" in body["detail"]
    assert stored_calls(client.application) == []


def test_rotated_key_stops_working_and_the_new_one_works(app: Flask, client: FlaskClient, key):
    with app.app_context(), get_db().write() as session:
        portal = store.find_portal(session, "portal-a")
        new_key = pbx_keys.rotate(portal.settings, current_store().box)

    assert_problem(post(client, key, UNREGISTERED), 401)
    assert post(client, new_key, UNREGISTERED).status_code == 202


def test_uninstalled_portal_key_is_401_saying_so(live_app: LiveApp):
    """Installed and uninstalled exactly as Bitrix24 does it (ONAPPUNINSTALL)."""
    portal = live_app.install("alpha")
    with live_app.app.app_context(), get_db().read() as session:
        key = pbx_keys.reveal(
            store.find_portal(session, portal.member_id).settings, current_store().box
        )
    url = live_app.url + FINISH
    assert requests.post(url, json=UNREGISTERED, headers=bearer(key), timeout=10).status_code == 202

    live_app.driver.uninstall(portal, TEST_CLIENT_ID)
    response = requests.post(url, json=UNREGISTERED, headers=bearer(key), timeout=10)

    assert response.status_code == 401
    assert response.headers["Content-Type"] == PROBLEM
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "the application was uninstalled from this portal" in response.json()["detail"].lower()
    assert len(stored_calls(live_app.app)) == 1


def test_deleted_portal_key_is_401(app: Flask, client: FlaskClient):
    key = make_portal(app, status=PortalStatus.PORTAL_DELETED)
    body = assert_problem(post(client, key, UNREGISTERED), 401)
    assert "deleted" in body["detail"]


@pytest.mark.parametrize(
    "status",
    [PortalStatus.NEEDS_REAUTH, PortalStatus.PAYMENT_REQUIRED, PortalStatus.ACCESS_DENIED],
)
def test_portals_waiting_for_their_admin_still_accept_calls(app: Flask, client, status):
    key = make_portal(app, status=status)
    response = post(client, key, UNREGISTERED)
    assert response.status_code == 202
    assert stored_call(app, response.get_json()["id"]).state == CallState.QUEUED


# --- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/xml", "text/json", "image/png"]
)
def test_unsupported_content_type_is_415(client: FlaskClient, key: str, content_type):
    headers = bearer(key) | ({"Content-Type": content_type} if content_type else {})
    response = client.post(FINISH, data=json.dumps(UNREGISTERED), headers=headers)
    body = assert_problem(response, 415)
    assert "application/json" in body["detail"]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b'{"DURATION": NaN}', "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2]", "not an array"),
        (b'"CALL_ID"', "not a string"),
        (b"42", "not a number"),
        (b"null", "not null"),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    ],
)
def test_unreadable_json_is_400(client: FlaskClient, key: str, raw: bytes, words: str):
    response = client.post(
        FINISH, data=raw, headers=bearer(key) | {"Content-Type": "application/json"}
    )
    body = assert_problem(response, 400)
    assert words in body["detail"]


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded"])
def test_body_over_one_mib_is_413_problem(client: FlaskClient, key: str, content_type: str):
    big = "x" * (1024 * 1024 + 1)
    data = json.dumps({"FAILED_REASON": big}) if "json" in content_type else f"FAILED_REASON={big}"
    response = client.post(FINISH, data=data, headers=bearer(key) | {"Content-Type": content_type})
    body = assert_problem(response, 413)
    assert "1 MiB" in body["detail"]


def test_form_body_is_accepted_with_strings_coerced(app: Flask, client: FlaskClient, key: str):
    form = {k: str(v) for k, v in UNREGISTERED.items()} | {"COST": "1.50", "VOTE": "0"}
    response = client.post(FINISH, data=form, headers=bearer(key))

    assert response.status_code == 202
    request = finish_request(app, response.get_json()["id"])
    assert request == {
        "PBX_CALL_ID": "1709884800.42",
        "PHONE_NUMBER": "+15551234567",
        "TYPE": 2,
        "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
        "USER_PHONE_INNER": "101",
        "DURATION": 42,
        "COST": 1.5,
        "STATUS_CODE": "200",
    }


def test_multipart_body_is_accepted(client: FlaskClient, key: str):
    form = {k: str(v) for k, v in REGISTERED.items()}
    response = client.post(
        FINISH, data=form, headers=bearer(key), content_type="multipart/form-data"
    )
    assert response.status_code == 202


def test_a_form_field_given_twice_is_named(client: FlaskClient, key: str):
    data = "&".join(f"{k}={v}" for k, v in REGISTERED.items()) + "&DURATION=96"
    response = client.post(
        FINISH,
        data=data,
        headers=bearer(key) | {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert error_fields(assert_problem(response, 422)) == {
        "DURATION": "must be given once, as a single value"
    }


def test_a_json_key_given_twice_is_named(client: FlaskClient, key: str):
    raw = '{"CALL_ID": "a", "DURATION": 5, "USER_ID": 1, "USER_ID": 2}'
    response = client.post(
        FINISH, data=raw, headers=bearer(key) | {"Content-Type": "application/json"}
    )
    assert list(error_fields(assert_problem(response, 422))) == ["USER_ID"]


@pytest.mark.parametrize("body", [REGISTERED, UNREGISTERED], ids=["registered", "unregistered"])
@pytest.mark.parametrize("duration", [None, "", "  "], ids=["absent", "empty", "blank"])
def test_a_finish_without_duration_is_422_naming_duration(
    app: Flask, client: FlaskClient, key: str, body: dict[str, object], duration: str | None
):
    """telephony-external-call-finish.md marks DURATION required: no call is stored without it."""
    sent = {k: v for k, v in body.items() if k != "DURATION"}
    if duration is not None:
        sent["DURATION"] = duration
    errors = error_fields(assert_problem(post(client, key, sent), 422))
    assert list(errors) == ["DURATION"]
    assert "required" in errors["DURATION"] and "seconds" in errors["DURATION"]
    assert stored_calls(app) == []


def test_unknown_fields_are_422_naming_each(client: FlaskClient, key: str):
    body = REGISTERED | {"call_id": "x", "EXTRA": 1, "auth": "token", "DURATON": 5}
    problem = assert_problem(post(client, key, body), 422)
    errors = error_fields(problem)
    assert set(errors) == {"call_id", "EXTRA", "auth", "DURATON"}
    assert "did you mean CALL_ID?" in errors["call_id"]
    assert "did you mean DURATION?" in errors["DURATON"]
    assert all("unknown field" in message for message in errors.values())


def test_a_broken_multipart_body_is_400(client: FlaskClient, key: str):
    response = client.post(
        FINISH,
        data=b'--xyz\r\nContent-Disposition: form-data; name="CALL_ID"\r\n\r\nc1\r\n',
        headers=bearer(key) | {"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert "boundary" in assert_problem(response, 400)["detail"]


def test_an_uploaded_file_is_not_a_field(client: FlaskClient, key: str):
    import io

    form: dict[str, Any] = {k: str(v) for k, v in REGISTERED.items()}
    form["RECORD_FILE"] = (io.BytesIO(b"RIFF...."), "call.wav")
    response = client.post(
        FINISH, data=form, headers=bearer(key), content_type="multipart/form-data"
    )
    assert "RECORD_FILE" in error_fields(assert_problem(response, 422))


# --- validation ------------------------------------------------------------------------------

BAD_VALUES = [
    ("CALL_ID", ["a"], "must be given once"),
    ("CALL_ID", {"id": 1}, "not an object"),
    ("CALL_ID", 1.5, "must be a string"),
    ("CALL_ID", "x" * 251, "at most 250"),
    ("CALL_ID", "a\x00b", "control characters"),
    ("PBX_CALL_ID", "\ud800", "unpaired surrogate"),
    ("USER_PHONE_INNER", "20\n1", "control characters"),
    ("FAILED_REASON", "busy\x00", "control characters"),
    ("USER_ID", 0, "between 1 and"),
    ("USER_ID", -3, "between 1 and"),
    ("USER_ID", "abc", "whole number"),
    ("USER_ID", True, "whole number"),
    ("USER_ID", 2**31, "between 1 and"),
    ("DURATION", "9.5", "whole number"),
    ("DURATION", 9.5, "whole number"),
    ("DURATION", "abc", "whole number"),
    ("DURATION", -1, "0 or more"),
    ("DURATION", "1e3", "whole number"),
    ("COST", -0.5, "0 or more"),
    ("COST", "1,50", "must be a number"),
    ("COST", "abc", "must be a number"),
    ("COST", False, "must be a number"),
    ("COST_CURRENCY", "GBP", "must be a currency of this portal: RUB, USD, EUR"),
    ("COST_CURRENCY", 840, "must be a string"),
    ("STATUS_CODE", ["200"], "must be given once"),
    ("STATUS_CODE", True, "must be a string"),
    ("FAILED_REASON", "x" * 256, "at most 255"),
    ("RECORD_URL", "ftp://pbx.example.com/1.mp3", "http:// or https://"),
    ("RECORD_URL", "/recordings/1.mp3", "http:// or https://"),
    ("RECORD_URL", "https://", "http:// or https://"),
    ("RECORD_URL", "https://pbx example.com/1.mp3", "http:// or https://"),
    ("RECORD_URL", "http://a:99999999/x", "impossible host or port"),  # issue 10, item 4
    ("RECORD_URL", "https://pbx.example.com:0/1.mp3", "impossible port (0)"),
    ("RECORD_URL", "https://pbx.example.com:80a/1.mp3", "impossible host or port"),
    ("RECORD_URL", "https://pbx_example.com/1.mp3", "neither a host name nor an IP address"),
    ("RECORD_URL", "https://300.1.1.1/1.mp3", "neither a host name nor an IP address"),
    ("RECORD_URL", "https://[::1/1.mp3", "impossible host or port"),
    ("RECORD_URL", "https://admin:pw@pbx.example.com/1.mp3", "credentials"),
    ("RECORD_URL", "https://pbx.example.com/запись.mp3", "percent-encode"),
    ("VOTE", 6, "one of 0, 1, 2, 3, 4, 5"),
    ("VOTE", "5.5", "whole number"),
    ("ADD_TO_CHAT", 2, "0 or 1"),
    ("ADD_TO_CHAT", "yes", "0 or 1"),
    ("PBX_CALL_ID", "x" * 256, "at most 255"),
    ("TYPE", 6, "one of 1, 2, 3, 4, 5"),
    ("TYPE", "incoming", "whole number"),
    ("PHONE_NUMBER", "anonymous", "no digits"),
    ("CALL_START_DATE", "yesterday", "ISO-8601"),
    ("CALL_START_DATE", "2026-03-07", "ISO-8601"),
    ("CALL_START_DATE", "2026-02-30T10:00:00", "ISO-8601"),
    ("CALL_START_DATE", "2026-03-07T25:00:00+03:00", "ISO-8601"),
    ("CRM_CREATE", 5, "0 or 1"),
    ("SHOW", "-1", "0 or 1"),
]


@pytest.mark.parametrize(("field", "value", "words"), BAD_VALUES)
def test_bad_values_are_422_naming_the_field_and_why(client, key, field, value, words):
    base = dict(UNREGISTERED)
    response = post(client, key, base | {field: value})
    errors = error_fields(assert_problem(response, 422))
    assert list(errors) == [field]
    assert words in errors[field]
    assert stored_calls(client.application) == []


def test_every_bad_field_is_listed_at_once(client: FlaskClient, key: str):
    body = {"DURATION": "9.5", "COST": "abc", "VOTE": 9, "TYPE": 0, "RECORD_URL": "nope"}
    problem = assert_problem(post(client, key, body), 422)
    assert set(error_fields(problem)) == {
        "CALL_ID",  # either CALL_ID or PBX_CALL_ID
        "PBX_CALL_ID",
        "USER_ID",  # no user and no fallback user
        "USER_PHONE_INNER",
        "DURATION",
        "COST",
        "RECORD_URL",
        "VOTE",
        "PHONE_NUMBER",  # registration fields
        "TYPE",
        "CALL_START_DATE",
    }
    assert problem["detail"].startswith("Invalid fields: CALL_ID, PBX_CALL_ID, USER_ID")


@pytest.mark.parametrize("missing", ["PHONE_NUMBER", "TYPE", "CALL_START_DATE"])
def test_registration_fields_are_required_without_call_id(client, key, missing):
    body = {k: v for k, v in UNREGISTERED.items() if k != missing}
    errors = error_fields(assert_problem(post(client, key, body), 422))
    assert list(errors) == [missing]
    assert errors[missing].startswith(
        "is required without CALL_ID: the call is registered in Bitrix24 first"
    )
    assert "the call's start registers it" in errors[missing]


def test_a_user_is_required_unless_the_portal_has_a_fallback_user(app: Flask, client, key):
    body = {k: v for k, v in UNREGISTERED.items() if k != "USER_PHONE_INNER"}
    errors = error_fields(assert_problem(post(client, key, body), 422))
    assert set(errors) == {"USER_ID", "USER_PHONE_INNER"}
    assert "fallback user" in errors["USER_ID"]

    with_fallback = make_portal(app, fallback_user_id=7)
    assert post(client, with_fallback, body).status_code == 202


def test_currency_is_any_iso_code_while_the_portal_has_none_stored(app: Flask, client):
    key = make_portal(app, currencies=None)
    assert post(client, key, REGISTERED | {"COST": 1, "COST_CURRENCY": "gbp"}).status_code == 202
    errors = error_fields(
        assert_problem(post(client, key, REGISTERED | {"COST_CURRENCY": "€"}), 422)
    )
    assert "3-letter" in errors["COST_CURRENCY"]


def test_empty_values_count_as_absent(app: Flask, client: FlaskClient, key: str):
    form = {k: str(v) for k, v in REGISTERED.items()} | {
        "PBX_CALL_ID": "",
        "FAILED_REASON": "  ",
        "RECORD_URL": "",
        "COST": "",
    }
    response = client.post(FINISH, data=form, headers=bearer(key))
    assert response.status_code == 202
    request = finish_request(app, response.get_json()["id"])
    assert set(request) == {"CALL_ID", "USER_ID", "DURATION", "STATUS_CODE", "VOTE", "ADD_TO_CHAT"}


def test_multiline_failed_reason_and_odd_statuses_are_kept_storable(app, client, key):
    body = REGISTERED | {"STATUS_CODE": "bad\x00\ud800status", "FAILED_REASON": "line 1\nline 2"}
    response = post(client, key, body)
    assert response.status_code == 202
    request = finish_request(app, response.get_json()["id"])
    assert request["FAILED_REASON"] == "line 1\nline 2; PBX status: bad\ufffd\ufffdstatus"


def test_unknown_status_becomes_other_and_is_kept_in_failed_reason(app, client, key):
    first = post(client, key, REGISTERED | {"STATUS_CODE": "SIP/2.0 499 Weird"})
    second = post(
        client,
        key,
        REGISTERED
        | {"CALL_ID": "c2", "STATUS_CODE": " gateway-timeout ", "FAILED_REASON": "trunk down"},
    )
    assert first.status_code == second.status_code == 202
    assert finish_request(app, first.get_json()["id"]) | {} == REGISTERED | {
        "STATUS_CODE": "OTHER",
        "FAILED_REASON": "PBX status: SIP/2.0 499 Weird",
    }
    request = finish_request(app, second.get_json()["id"])
    assert request["STATUS_CODE"] == "OTHER"
    assert request["FAILED_REASON"] == "trunk down; PBX status: gateway-timeout"


def test_native_statuses_are_stored_as_bitrix24_codes(app: Flask, client: FlaskClient, key):
    cases = {"ANSWER": "200", "no answer": "304", "17": "486", "487": "603-S", "16": "200"}
    for index, (native, code) in enumerate(cases.items()):
        body = REGISTERED | {"CALL_ID": f"c{index}", "STATUS_CODE": native}
        response = post(client, key, body)
        assert response.status_code == 202
        assert finish_request(app, response.get_json()["id"])["STATUS_CODE"] == code


def test_stored_request_is_normalised_and_valid_again(app: Flask, client, key):
    body = UNREGISTERED | {
        "USER_PHONE_INNER": 101,
        "DURATION": "42",
        "COST": 2,
        "COST_CURRENCY": " usd ",
        "VOTE": "0",
        "ADD_TO_CHAT": True,
        "CRM_CREATE": "1",
        "SHOW": 0,
        "LINE_NUMBER": " 74951234567 ",
        "STATUS_CODE": "BUSY",
        "RECORD_URL": "https://pbx.example.com/r/1.mp3",
    }
    response = post(client, key, body)
    request = finish_request(app, response.get_json()["id"])
    assert request == {
        "PBX_CALL_ID": "1709884800.42",
        "USER_PHONE_INNER": "101",
        "DURATION": 42,
        "COST": 2.0,
        "COST_CURRENCY": "USD",
        "STATUS_CODE": "486",
        "RECORD_URL": "https://pbx.example.com/r/1.mp3",
        "ADD_TO_CHAT": 1,
        "PHONE_NUMBER": "+15551234567",
        "TYPE": 2,
        "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
        "LINE_NUMBER": "74951234567",
        "CRM_CREATE": 1,
        "SHOW": 0,
    }
    again, errors = validate_finish(request, currencies=["RUB", "USD", "EUR"])
    assert errors == [] and again == request


# --- storing, repeats, conflicts -------------------------------------------------------------


def test_accepted_call_is_202_with_id_location_and_a_queued_row(app, client, key):
    response = post(client, key, UNREGISTERED)

    assert response.status_code == 202
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body == {"id": body["id"], "state": "queued"}
    assert response.headers["Location"] == f"/pbx/v1/calls/{body['id']}"
    [call] = stored_calls(app)
    assert call.public_id == body["id"]
    assert call.state == CallState.QUEUED
    assert call.idempotency_key == "1709884800.42"
    assert call.attempts == 0


def test_call_id_is_the_key_without_pbx_call_id(app: Flask, client: FlaskClient, key: str):
    response = post(client, key, REGISTERED)
    [call] = stored_calls(app)
    assert call.idempotency_key == "call:" + REGISTERED["CALL_ID"]
    assert post(client, key, REGISTERED).get_json()["id"] == response.get_json()["id"]


def test_a_repeat_gets_the_same_id_and_no_second_row(app: Flask, client, key: str):
    first = post(client, key, UNREGISTERED)
    # the same call, sent as a form this time: equal once normalised
    form = {k: f" {v} " for k, v in UNREGISTERED.items()} | {"STATUS_CODE": "answer"}
    second = client.post(FINISH, data=form, headers=bearer(key))

    assert first.status_code == second.status_code == 202
    assert second.get_json() == first.get_json()
    assert second.headers["Location"] == first.headers["Location"]
    assert len(stored_calls(app)) == 1


def test_a_repeat_reports_the_current_state(app: Flask, client: FlaskClient, key: str):
    public_id = post(client, key, REGISTERED).get_json()["id"]
    with app.app_context(), get_db().write() as session:
        from sqlalchemy import update

        from b24app.models import Call

        session.execute(update(Call).values(state=CallState.DELIVERED))
    assert post(client, key, REGISTERED).get_json() == {"id": public_id, "state": "delivered"}


def test_a_repeat_with_other_values_is_409_naming_them(app: Flask, client, key: str):
    first = post(client, key, UNREGISTERED).get_json()
    changed = UNREGISTERED | {"DURATION": 43, "STATUS_CODE": "BUSY", "VOTE": 4}
    changed.pop("USER_PHONE_INNER")
    changed["USER_ID"] = 5

    problem = assert_problem(post(client, key, changed), 409)

    assert problem["id"] == first["id"]
    assert error_fields(problem) == {
        "USER_ID": "accepted earlier as absent, now 5",
        "USER_PHONE_INNER": 'accepted earlier as "101", now absent',
        "DURATION": "accepted earlier as 42, now 43",
        "STATUS_CODE": 'accepted earlier as "200", now "486"',
        "VOTE": "accepted earlier as absent, now 4",
    }
    assert "PBX_CALL_ID" in problem["detail"]
    assert len(stored_calls(app)) == 1


def test_the_same_pbx_call_id_on_two_portals_is_two_calls(app: Flask, client, key: str):
    other = make_portal(app, "portal-b")
    one = post(client, key, UNREGISTERED).get_json()["id"]
    two = post(client, other, UNREGISTERED).get_json()["id"]
    assert one != two
    assert len(stored_calls(app)) == 2


def _race(url: str, key: str, bodies: list[dict[str, Any]]) -> list[requests.Response]:
    """Post every body at once from its own thread (a barrier lines them up)."""
    barrier = threading.Barrier(len(bodies))
    answers: list[requests.Response | None] = [None] * len(bodies)

    def send(index: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            answers[index] = session.post(
                url + FINISH, json=bodies[index], headers=bearer(key), timeout=30
            )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


def test_concurrent_duplicates_store_one_row_with_one_id(live_app: LiveApp):
    key = make_portal(live_app.app)
    answers = _race(live_app.url, key, [UNREGISTERED] * 10)

    assert [a.status_code for a in answers] == [202] * 10
    assert len({a.json()["id"] for a in answers}) == 1
    [call] = stored_calls(live_app.app)
    assert call.public_id == answers[0].json()["id"]


def test_concurrent_different_bodies_give_one_call_and_409s(live_app: LiveApp):
    key = make_portal(live_app.app)
    bodies = [UNREGISTERED | {"DURATION": 40 + i % 5} for i in range(10)]
    answers = _race(live_app.url, key, bodies)

    [call] = stored_calls(live_app.app)
    stored = finish_request(live_app.app, call.public_id)
    accepted = [(a, b) for a, b in zip(answers, bodies, strict=True) if a.status_code == 202]
    conflicts = [a for a in answers if a.status_code == 409]
    assert len(accepted) + len(conflicts) == 10
    assert accepted  # the winner, and any equal repeats of it
    assert {a.json()["id"] for a, _ in accepted} == {call.public_id}
    assert all(b["DURATION"] == stored["DURATION"] for _, b in accepted)
    assert all(c.json()["id"] == call.public_id for c in conflicts)
    assert all(c.headers["Content-Type"] == PROBLEM for c in conflicts)
    assert len(conflicts) == sum(b["DURATION"] != stored["DURATION"] for b in bodies)


def test_accepting_a_call_is_a_key_lookup_and_one_short_transaction(app: Flask, client, key):
    """A call's first event: the call's row (inserted due) and its event, nothing more: a
    write lock held for two statements (the backlog drill's intake rate rests on it)."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        statements.append(sql.split()[0].upper())

    event.listen(get_db(app).engine, "before_cursor_execute", record)
    try:
        response = post(client, key, UNREGISTERED)
    finally:
        event.remove(get_db(app).engine, "before_cursor_execute", record)

    assert response.status_code == 202
    assert [s for s in statements if s in ("INSERT", "UPDATE", "DELETE")] == ["INSERT", "INSERT"]
    # the key's settings row, its portal, its settings
    assert statements.count("SELECT") <= 3


def test_a_later_event_of_a_call_marks_it_due_in_the_same_transaction(app: Flask, client, key):
    """A second event: its row, and the call marked due (outbox.event_added), no more."""
    start = {"PBX_CALL_ID": "s-1", "PHONE_NUMBER": "+15551234567", "TYPE": 2, "USER_ID": 2}
    assert client.post(START, json=start, headers=bearer(key)).status_code == 202
    statements: list[str] = []

    def record(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        statements.append(sql.split()[0].upper())

    event.listen(get_db(app).engine, "before_cursor_execute", record)
    try:
        ring = {"PBX_CALL_ID": "s-1", "USER_ID": [2, 3]}
        response = client.post(RING, json=ring, headers=bearer(key))
    finally:
        event.remove(get_db(app).engine, "before_cursor_execute", record)

    assert response.status_code == 202
    assert [s for s in statements if s in ("INSERT", "UPDATE", "DELETE")] == [
        "INSERT",  # the call's row: already there (ON CONFLICT DO NOTHING)
        "INSERT",
        "UPDATE",
    ]


def test_intake_never_calls_bitrix24(live_app: LiveApp):
    portal = live_app.install("alpha")
    with live_app.app.app_context(), get_db().read() as session:
        key = pbx_keys.reveal(
            store.find_portal(session, portal.member_id).settings, current_store().box
        )
    before = len(live_app.dev.journal)
    for index in range(5):
        body = UNREGISTERED | {"PBX_CALL_ID": f"call-{index}"}
        response = requests.post(live_app.url + FINISH, json=body, headers=bearer(key), timeout=10)
        assert response.status_code == 202
    assert len(live_app.dev.journal) == before
    assert portal.statistics == []


# --- reading calls back ----------------------------------------------------------------------


def test_get_shows_the_call(client: FlaskClient, key: str):
    accepted = post(client, key, UNREGISTERED)
    response = client.get(accepted.headers["Location"], headers=bearer(key))

    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == accepted.get_json()["id"]
    assert body["state"] == "queued"
    assert body["error"] is None and body["result"] is None
    assert body["attempts"] == 0 and body["delivered_at"] is None
    assert body["created_at"]


def test_get_shows_why_a_call_failed_and_bitrix24s_answer(app: Flask, client, key: str):
    public_id = post(client, key, REGISTERED).get_json()["id"]
    with app.app_context(), get_db().write() as session:
        from sqlalchemy import update

        from b24app.models import Call

        session.execute(
            update(Call).values(
                state=CallState.FAILED, error_code="ERROR_CORE", error="User is not found"
            )
        )
    body = client.get(f"/pbx/v1/calls/{public_id}", headers=bearer(key)).get_json()
    assert (body["state"], body["error"], body["error_code"]) == (
        "failed",
        "User is not found",
        "ERROR_CORE",
    )


def test_get_of_another_portals_call_is_404(app: Flask, client: FlaskClient, key: str):
    other = make_portal(app, "portal-b")
    location = post(client, key, UNREGISTERED).headers["Location"]

    body = assert_problem(client.get(location, headers=bearer(other)), 404)
    assert "with this PBX key" in body["detail"]
    assert client.get(location, headers=bearer(key)).status_code == 200


@pytest.mark.parametrize("public_id", ["0" * 32, "nope", "A" * 32, "1' OR '1'='1"])
def test_get_of_unknown_ids_is_404(client: FlaskClient, key: str, public_id: str):
    assert_problem(client.get(f"/pbx/v1/calls/{public_id}", headers=bearer(key)), 404)


def test_get_needs_the_key(client: FlaskClient, key: str):
    location = post(client, key, UNREGISTERED).headers["Location"]
    response = client.get(location)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# --- errors outside the views ----------------------------------------------------------------


def test_unknown_pbx_paths_and_methods_are_problems(client: FlaskClient, key: str):
    assert_problem(client.get("/pbx/v1/nothing", headers=bearer(key)), 404)
    response = client.put(FINISH, headers=bearer(key))
    body = assert_problem(response, 405)
    assert "POST" in response.headers["Allow"] and "POST" in body["detail"]
    # the rest of the app keeps its own pages
    assert client.get("/no-such-page").content_type.startswith("text/html")


def test_store_unavailable_is_503_with_retry_after(client, key, monkeypatch):
    def broken(self: Database) -> Any:
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(Database, "write", broken)
    response = post(client, key, UNREGISTERED)
    assert_problem(response, 503)
    assert 1 <= int(response.headers["Retry-After"]) <= 5  # the rate limiter may restate it


def test_too_many_requests_is_a_429_problem(client, key, monkeypatch):
    """Whatever limits the PBX API (ratelimit.py) answers in the PBX API's own format."""
    from werkzeug.exceptions import TooManyRequests

    from b24app.pbx import intake

    def limited(*args: Any, **kwargs: Any) -> Any:
        raise TooManyRequests("50 per 1 second")

    monkeypatch.setattr(intake, "accept_finish", limited)
    body = assert_problem(post(client, key, UNREGISTERED), 429)
    assert body["type"] == "urn:b24app:pbx:problem:rate-limited"
    assert "50 per 1 second" in body["detail"]


def test_a_bug_is_a_500_problem_not_a_traceback(client, key, monkeypatch):
    from b24app.pbx import intake

    def bug(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(intake, "accept_finish", bug)
    body = assert_problem(post(client, key, UNREGISTERED), 500)
    assert "boom" not in json.dumps(body)
