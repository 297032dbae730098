"""Bodies built to cost the intake work: a ring naming tens of thousands of employees, tens of
thousands of unknown fields, a url-encoded body on the recording route, an event the API does not
have. Each is answered at once with the problem a PBX's admin can act on."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.pbx import FINISH, RECORD, RING, bearer, make_portal, stored_calls
from tests.pbx.test_intake import assert_problem, error_fields

FORM = "application/x-www-form-urlencoded"
PBX_CALL_ID = "1709884800.42"


@pytest.fixture
def key(app: Flask) -> str:
    return make_portal(app, "portal-a")


def send(client: FlaskClient, key: str, path: str, data: str | bytes, content_type: str):
    return client.post(path, data=data, headers=bearer(key) | {"Content-Type": content_type})


def ids(count: int) -> list[int]:
    return list(range(10_000, 10_000 + count))


def commas(field: str, count: int) -> str:
    return urlencode({"PBX_CALL_ID": PBX_CALL_ID, field: ",".join(map(str, ids(count)))})


RINGS = {
    # 120,000 ids separated by commas: 750 KB
    "commas": (commas("USER_ID", 120_000), FORM),
    # a JSON array of 75,000 ids: 525 KB
    "json-array": (
        json.dumps({"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": ids(75_000)}),
        "application/json",
    ),
    # 70,000 repeated form keys
    "repeated-keys": (
        urlencode([("PBX_CALL_ID", PBX_CALL_ID)] + [("USER_ID", i) for i in ids(70_000)]),
        FORM,
    ),
    # as many extensions, separated by commas
    "extensions": (commas("USER_PHONE_INNER", 120_000), FORM),
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("body", "content_type"), RINGS.values(), ids=list(RINGS))
def test_a_ring_to_thousands_of_employees_is_422_at_once(app, client, key, body, content_type):
    """At most 100 employees ring (MAX_RUNG): the list is refused when the 101st is read, not
    after every one of them was checked against the others."""
    assert len(body) < 1024 * 1024  # within the API's 1 MiB: the intake itself must refuse it
    problem = assert_problem(send(client, key, RING, body, content_type), 422)
    errors = error_fields(problem)
    field = "USER_PHONE_INNER" if "USER_PHONE_INNER" in body else "USER_ID"
    assert list(errors) == [field]
    assert "at most 100 employees" in errors[field]
    assert stored_calls(app) == []


def test_a_ring_to_a_hundred_employees_sent_twice_over_is_accepted(app, client, key):
    """Duplicates do not count toward the cap: 100 distinct ids, each sent twice, ring 100."""
    twice = ",".join(map(str, ids(100) * 2))
    body = urlencode({"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": twice})
    response = send(client, key, RING, body, FORM)
    assert response.status_code == 202, response.get_data(as_text=True)


@pytest.mark.timeout(10)
def test_tens_of_thousands_of_unknown_fields_are_422_listing_the_first_hundred(client, key):
    body = {"PBX_CALL_ID": PBX_CALL_ID, "DURATION": 5} | {f"DURATON{i}": 1 for i in range(50_000)}
    data = json.dumps(body)
    assert len(data) < 1024 * 1024
    problem = assert_problem(send(client, key, FINISH, data, "application/json"), 422)
    errors = error_fields(problem)
    assert list(errors) == [f"DURATON{i}" for i in range(100)]
    assert all("unknown field" in message for message in errors.values())


def test_the_errors_of_known_fields_come_before_unknown_ones_past_the_cap(client, key):
    """The cap keeps the errors a PBX's admin most needs: its known fields' come first."""
    body = {"PBX_CALL_ID": PBX_CALL_ID} | {f"X{i}": 1 for i in range(300)}
    problem = assert_problem(send(client, key, FINISH, json.dumps(body), "application/json"), 422)
    errors = error_fields(problem)
    assert len(errors) == 100
    assert list(errors) == ["DURATION"] + [f"X{i}" for i in range(99)]
    assert "required" in errors["DURATION"]


def test_a_url_encoded_record_keeps_the_apis_one_mib(app, client, key):
    """Only a multipart upload may be as large as a recording; any other body on /calls/record
    is refused over 1 MiB like everywhere else."""
    padding = "x" * (2 * 1024 * 1024)
    body = urlencode({"PBX_CALL_ID": PBX_CALL_ID, "RECORD_URL": "https://pbx.example.com/a.mp3"})
    problem = assert_problem(send(client, key, RECORD, f"{body}&FAILED={padding}", FORM), 413)
    assert "1 MiB" in problem["detail"]
    assert error_fields(problem) == {}
    data = json.dumps({"PBX_CALL_ID": PBX_CALL_ID, "X": padding})
    assert (
        "1 MiB"
        in assert_problem(send(client, key, RECORD, data, "application/json"), 413)["detail"]
    )
    assert stored_calls(app) == []


@pytest.mark.parametrize("event", ["hangup", "transfer", "Finish"])
def test_posting_an_event_the_api_does_not_have_is_404_listing_the_events(client, key, event):
    """`POST /calls/<name>` shares its shape with `GET /calls/<id>`; a PBX posting an event name
    the API lacks is told so, not that POST is not allowed."""
    response = client.post(
        f"/pbx/v1/calls/{event}", json={"PBX_CALL_ID": PBX_CALL_ID}, headers=bearer(key)
    )
    problem = assert_problem(response, 404)
    assert f"/pbx/v1/calls/{event} is not an endpoint" in problem["detail"]
    for name in ("start", "ring", "answer", "finish", "record"):
        assert f"/pbx/v1/calls/{name}" in problem["detail"]


def test_other_methods_on_a_calls_id_are_still_405(client, key):
    response = client.delete("/pbx/v1/calls/c_123", headers=bearer(key))
    problem = assert_problem(response, 405)
    assert "GET" in response.headers["Allow"] and "DELETE" in problem["detail"]
