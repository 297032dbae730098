"""The whole call's events (PRODUCT.md "The whole call"): `POST /pbx/v1/calls/start`, `ring`,
`answer`, `finish` and `record` store each event once under the call's one id, normalised; repeats
answer the same and store nothing twice (also when sent at once); a repeat with other fields is
409 naming them; `GET /pbx/v1/calls/<id>` shows the events and the recording."""

from __future__ import annotations

import io
import threading
import wave
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.datastructures import MultiDict

from b24app.db import get_db
from b24app.models import Call, CallRecording, RecordingState
from tests.call_events import event_request, stored_events, stored_recording
from tests.conftest import LiveApp
from tests.pbx import (
    ANSWER,
    FINISH,
    RECORD,
    RING,
    START,
    bearer,
    make_portal,
    stored_call,
    stored_calls,
)
from tests.pbx.test_intake import assert_problem, error_fields

PBX_CALL_ID = "1709884800.42"
START_BODY: dict[str, Any] = {
    "PBX_CALL_ID": PBX_CALL_ID,
    "PHONE_NUMBER": "+15551234567",
    "TYPE": 2,
    "LINE_NUMBER": "74951234567",
    "USER_PHONE_INNER": "101",
    "CRM_CREATE": 1,
}
RING_BODY: dict[str, Any] = {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": [1, 2, 3]}
ANSWER_BODY: dict[str, Any] = {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": 2}
FINISH_BODY: dict[str, Any] = {"PBX_CALL_ID": PBX_CALL_ID, "DURATION": 42, "STATUS_CODE": "ANSWER"}
RECORD_URL = "https://pbx.example.com/recordings/1709884800.42.mp3"
RECORD_BODY: dict[str, Any] = {"PBX_CALL_ID": PBX_CALL_ID, "RECORD_URL": RECORD_URL}
EVENTS = [
    ("start", START, START_BODY),
    ("ring", RING, RING_BODY),
    ("answer", ANSWER, ANSWER_BODY),
    ("finish", FINISH, FINISH_BODY),
    ("record", RECORD, RECORD_BODY),
]


def mp3(frames: int = 8) -> bytes:
    """MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz, 417 bytes each) of silence: the smallest
    file mutagen takes as mp3 (four valid frames in a row or more)."""
    return (bytes([0xFF, 0xFB, 0x90, 0x64]) + bytes(417 - 4)) * frames


def wav(seconds: float = 0.1) -> bytes:
    """A real RIFF/WAVE file: 8 kHz, 16-bit mono silence (what Asterisk records)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(8000)
        writer.writeframes(bytes(int(8000 * seconds) * 2))
    return out.getvalue()


@pytest.fixture
def key(app: Flask) -> str:
    return make_portal(app, "portal-a")


def post(client: FlaskClient, key: str, path: str, body: Any, **kwargs: Any) -> Any:
    return client.post(path, json=body, headers=bearer(key), **kwargs)


def upload(
    client: FlaskClient, key: str, data: bytes, name: str = "call.wav", **fields: Any
) -> Any:
    form: dict[str, Any] = {"PBX_CALL_ID": PBX_CALL_ID} | fields
    form["FILE"] = (io.BytesIO(data), name)
    return client.post(RECORD, data=form, headers=bearer(key), content_type="multipart/form-data")


def version(app: Flask, public_id: str) -> int:
    return stored_call(app, public_id).events_version


# --- each event, one call --------------------------------------------------------------------


def test_every_event_of_a_call_is_202_with_the_calls_one_id(app: Flask, client, key: str):
    ids = []
    for _, path, body in EVENTS:
        response = post(client, key, path, body)
        assert response.status_code == 202, response.get_data(as_text=True)
        assert response.headers["Location"] == f"/pbx/v1/calls/{response.get_json()['id']}"
        ids.append(response.get_json()["id"])

    assert len(set(ids)) == 1
    [call] = stored_calls(app)
    assert call.public_id == ids[0] and call.idempotency_key == PBX_CALL_ID
    assert call.state == "queued"
    assert [e.kind for e in stored_events(app, ids[0])] == [k for k, _, _ in EVENTS]
    assert all(e.state == "queued" for e in stored_events(app, ids[0]))
    assert call.events_version == len(EVENTS)  # each new event made the call due again


def test_events_may_arrive_in_any_order(app: Flask, client: FlaskClient, key: str):
    ids = {post(client, key, path, body).get_json()["id"] for _, path, body in EVENTS[::-1]}
    assert len(ids) == 1
    assert [e.kind for e in stored_events(app, ids.pop())] == [k for k, _, _ in EVENTS[::-1]]


def test_events_are_stored_normalised(app: Flask, client: FlaskClient, key: str):
    start = START_BODY | {"TYPE": "2", "LINE_NUMBER": " 74951234567 ", "CRM_ENTITY_TYPE": "contact",
                          "CRM_ENTITY_ID": "42", "SHOW": True, "CALL_START_DATE": ""}  # fmt: skip
    public_id = post(client, key, START, start).get_json()["id"]
    post(client, key, RING, {"PBX_CALL_ID": PBX_CALL_ID, "USER_PHONE_INNER": [101, " 102"]})
    post(client, key, ANSWER, {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": "2"})

    assert event_request(app, public_id, "start") == {
        "PBX_CALL_ID": PBX_CALL_ID,
        "PHONE_NUMBER": "+15551234567",
        "TYPE": 2,
        "USER_PHONE_INNER": "101",
        "LINE_NUMBER": "74951234567",
        "CRM_CREATE": 1,
        "CRM_ENTITY_TYPE": "CONTACT",
        "CRM_ENTITY_ID": 42,
        "SHOW": 1,
    }  # no CALL_START_DATE filled in: the delivery uses the event's arrival
    assert event_request(app, public_id, "ring") == {
        "PBX_CALL_ID": PBX_CALL_ID,
        "USER_PHONE_INNER": ["101", "102"],
    }
    assert event_request(app, public_id, "answer") == {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": 2}


@pytest.mark.parametrize(("kind", "path", "body"), EVENTS, ids=[k for k, _, _ in EVENTS])
def test_three_repeats_of_an_event_store_it_once(app, client, key, kind, path, body):
    answers = [post(client, key, path, body) for _ in range(4)]

    assert [a.status_code for a in answers] == [202] * 4
    assert len({a.get_json()["id"] for a in answers}) == 1
    public_id = answers[0].get_json()["id"]
    assert [e.kind for e in stored_events(app, public_id)] == [kind]
    assert version(app, public_id) == 1  # a repeat does not make the call due again


def test_a_repeat_sent_as_a_form_is_the_same_event(app: Flask, client: FlaskClient, key: str):
    first = post(client, key, START, START_BODY).get_json()
    form = {k: f" {v} " for k, v in START_BODY.items()}
    again = client.post(START, data=form, headers=bearer(key))
    assert again.status_code == 202 and again.get_json() == first
    assert len(stored_events(app, first["id"])) == 1


@pytest.mark.parametrize(
    ("path", "body", "changed"),
    [
        (START, START_BODY, {"TYPE": 1}),
        (FINISH, FINISH_BODY, {"DURATION": 43}),
        (RECORD, RECORD_BODY, {"RECORD_URL": "https://pbx.example.com/other.mp3"}),
    ],
    ids=["start", "finish", "record"],
)
def test_a_repeat_with_other_fields_is_409_naming_them(app, client, key, path, body, changed):
    public_id = post(client, key, path, body).get_json()["id"]
    problem = assert_problem(post(client, key, path, body | changed), 409)

    assert problem["id"] == public_id
    assert list(error_fields(problem)) == list(changed)
    assert "accepted earlier as" in error_fields(problem)[next(iter(changed))]
    assert len(stored_events(app, public_id)) == 1


def test_another_ring_or_answer_is_a_new_event_not_a_conflict(app: Flask, client, key: str):
    public_id = post(client, key, RING, RING_BODY).get_json()["id"]
    post(client, key, RING, {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": 4})  # rung further
    post(client, key, ANSWER, ANSWER_BODY)
    transfer = post(client, key, ANSWER, {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": 4})

    assert transfer.status_code == 202 and transfer.get_json()["id"] == public_id
    events = stored_events(app, public_id)
    assert [(e.kind, e.request.get("USER_ID")) for e in events] == [
        ("ring", [1, 2, 3]),
        ("ring", [4]),
        ("answer", 2),
        ("answer", 4),
    ]
    assert len({e.dedupe_key for e in events}) == 4


def test_two_portals_calls_with_one_pbx_call_id_are_two_calls(app: Flask, client, key: str):
    other = make_portal(app, "portal-b")
    one = post(client, key, START, START_BODY).get_json()["id"]
    two = post(client, other, START, START_BODY).get_json()["id"]
    assert one != two and len(stored_calls(app)) == 2


# --- ring and answer: who ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        {"json": {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": [1, 2, 2, 3]}},
        {
            "data": MultiDict(
                [("PBX_CALL_ID", PBX_CALL_ID), ("USER_ID", "1"), ("USER_ID", "2"), ("USER_ID", "3")]
            )
        },
        {"data": {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": "1, 2,3"}},
        {"json": {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": "1,2,3,1"}},
    ],
    ids=["json-array", "repeated-form-key", "comma-separated-form", "comma-separated-json"],
)
def test_a_ring_to_several_employees(app: Flask, client: FlaskClient, key: str, sent):
    response = client.post(RING, headers=bearer(key), **sent)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert event_request(app, response.get_json()["id"], "ring") == {
        "PBX_CALL_ID": PBX_CALL_ID,
        "USER_ID": [1, 2, 3],
    }


def test_a_ring_to_one_employee_by_extension_and_one_by_id(app: Flask, client, key: str):
    response = client.post(
        RING,
        data={"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": "7", "USER_PHONE_INNER": "101"},
        headers=bearer(key),
    )
    assert response.status_code == 202
    assert event_request(app, response.get_json()["id"], "ring") == {
        "PBX_CALL_ID": PBX_CALL_ID,
        "USER_ID": [7],
        "USER_PHONE_INNER": ["101"],
    }


@pytest.mark.parametrize(
    ("body", "fields", "words"),
    [
        ({"PBX_CALL_ID": PBX_CALL_ID}, ["USER_ID", "USER_PHONE_INNER"], "is required"),
        ({"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": [1, "x"]}, ["USER_ID"], "whole number"),
        ({"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": list(range(1, 102))}, ["USER_ID"], "at most 100"),
        ({"USER_ID": 1}, ["PBX_CALL_ID"], "is required"),
    ],
    ids=["nobody", "not-an-id", "too-many", "no-pbx-call-id"],
)
def test_a_bad_ring_is_422_naming_the_field(app, client, key, body, fields, words):
    errors = error_fields(assert_problem(post(client, key, RING, body), 422))
    assert list(errors) == fields
    assert all(words in errors[name] for name in fields)
    assert stored_calls(app) == []


@pytest.mark.parametrize(
    "body",
    [
        {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": [1, 2]},
        {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": "1,2"},
        {"PBX_CALL_ID": PBX_CALL_ID, "USER_PHONE_INNER": "101,102"},
        {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": 1, "USER_PHONE_INNER": "102"},
        {"PBX_CALL_ID": PBX_CALL_ID},
    ],
    ids=["json-array", "comma-id", "comma-extension", "both-fields", "nobody"],
)
def test_an_answer_names_exactly_one_employee(app: Flask, client, key: str, body):
    errors = error_fields(assert_problem(post(client, key, ANSWER, body), 422))
    assert set(errors) <= {"USER_ID", "USER_PHONE_INNER"} and errors
    assert stored_calls(app) == []


# --- start and finish --------------------------------------------------------------------------


def test_a_start_needs_the_call_and_someone_to_register_it_for(app: Flask, client, key: str):
    errors = error_fields(assert_problem(post(client, key, START, {"LINE_NUMBER": "1"}), 422))
    assert list(errors) == ["PBX_CALL_ID", "PHONE_NUMBER", "TYPE", "USER_ID", "USER_PHONE_INNER"]
    with_fallback = make_portal(app, fallback_user_id=7)
    body = {k: v for k, v in START_BODY.items() if k != "USER_PHONE_INNER"}
    assert post(client, with_fallback, START, body).status_code == 202


def test_a_start_refuses_odd_crm_fields_by_name(client: FlaskClient, key: str):
    errors = error_fields(
        assert_problem(post(client, key, START, START_BODY | {"CRM_ENTITY_TYPE": "DEAL"}), 422)
    )
    assert list(errors) == ["CRM_ENTITY_TYPE", "CRM_ENTITY_ID"]
    assert "CONTACT, COMPANY, LEAD" in errors["CRM_ENTITY_TYPE"]


def test_a_finish_of_a_started_call_needs_only_pbx_call_id_and_duration(app, client, key):
    response = post(client, key, FINISH, {"PBX_CALL_ID": PBX_CALL_ID, "DURATION": 0})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert event_request(app, response.get_json()["id"], "finish") == {
        "PBX_CALL_ID": PBX_CALL_ID,
        "DURATION": 0,
    }


def test_a_finish_with_part_of_the_registration_fields_is_422(client: FlaskClient, key: str):
    body = FINISH_BODY | {"USER_ID": 1, "PHONE_NUMBER": "+15551234567"}
    errors = error_fields(assert_problem(post(client, key, FINISH, body), 422))
    assert list(errors) == ["TYPE", "CALL_START_DATE"]


def test_a_finish_contradicting_its_starts_call_id_is_409(app: Flask, client, key: str):
    """A click-to-call start bound to Bitrix24's CALL_ID; its finish names another one."""
    public_id = post(client, key, START, START_BODY | {"CALL_ID": "externalCall.a"}).get_json()
    finish = FINISH_BODY | {"CALL_ID": "externalCall.b", "USER_ID": 1}

    problem = assert_problem(post(client, key, FINISH, finish), 409)

    assert list(error_fields(problem)) == ["CALL_ID"]
    assert problem["id"] == public_id["id"]
    assert [e.kind for e in stored_events(app, public_id["id"])] == ["start"]
    agreeing = FINISH_BODY | {"CALL_ID": "externalCall.a", "USER_ID": 1}
    assert post(client, key, FINISH, agreeing).status_code == 202


def test_a_finish_with_record_url_also_stores_the_calls_record_event(app, client, key):
    public_id = post(client, key, FINISH, FINISH_BODY | {"RECORD_URL": RECORD_URL}).get_json()["id"]

    assert [e.kind for e in stored_events(app, public_id)] == ["finish", "record"]
    assert event_request(app, public_id, "record") == RECORD_BODY
    recording = stored_recording(app, public_id)
    assert recording is not None
    assert (recording.state, recording.url) == (RecordingState.FETCHING, RECORD_URL)
    # the same recording posted later is a repeat, another one a conflict
    assert post(client, key, RECORD, RECORD_BODY).get_json()["id"] == public_id
    other = RECORD_BODY | {"RECORD_URL": "https://pbx.example.com/other.mp3"}
    assert list(error_fields(assert_problem(post(client, key, RECORD, other), 409))) == [
        "RECORD_URL"
    ]


def test_a_finish_of_a_call_the_pbx_registered_keeps_its_record_url_too(app, client, key):
    body = {"CALL_ID": "externalCall.a", "USER_ID": 1, "DURATION": 5, "RECORD_URL": RECORD_URL}
    public_id = post(client, key, FINISH, body).get_json()["id"]
    assert event_request(app, public_id, "record") == {"RECORD_URL": RECORD_URL}
    assert stored_call(app, public_id).idempotency_key == "call:externalCall.a"


# --- record ------------------------------------------------------------------------------------


def test_a_record_url_is_stored_for_a_worker_to_fetch(app: Flask, client, key: str):
    body = RECORD_BODY | {"FILENAME": "call.mp3"}
    public_id = post(client, key, RECORD, body).get_json()["id"]
    assert event_request(app, public_id, "record") == body
    recording = stored_recording(app, public_id)
    assert recording is not None and recording.state == RecordingState.FETCHING
    assert recording.url == RECORD_URL and recording.content is None


@pytest.mark.parametrize(("audio", "data"), [("wav", wav()), ("mp3", mp3())], ids=["wav", "mp3"])
def test_an_uploaded_recording_is_judged_and_stored(app, client, key, audio, data):
    response = upload(client, key, data, name="1709884800.42.bin")
    assert response.status_code == 202, response.get_data(as_text=True)

    public_id = response.get_json()["id"]
    recording = stored_recording(app, public_id)
    assert recording is not None
    assert (recording.state, recording.audio, recording.size) == ("stored", audio, len(data))
    assert recording.content == data
    assert recording.filename == f"1709884800.42.{audio}"  # the content's extension
    request = event_request(app, public_id, "record")
    assert request["PBX_CALL_ID"] == PBX_CALL_ID and request["FILE"]["size"] == len(data)


def test_the_same_upload_again_is_a_repeat_and_another_file_a_conflict(app, client, key):
    first = upload(client, key, wav())
    again = upload(client, key, wav(), name="renamed.wav")
    assert first.status_code == again.status_code == 202
    assert first.get_json() == again.get_json()
    assert len(stored_events(app, first.get_json()["id"])) == 1

    problem = assert_problem(upload(client, key, wav(seconds=0.2)), 409)
    assert list(error_fields(problem)) == ["FILE"]


def test_a_file_that_is_not_audio_is_422_naming_file(app: Flask, client, key: str):
    problem = assert_problem(upload(client, key, b"<html>not a recording</html>" * 50), 422)
    assert list(error_fields(problem)) == ["FILE"]
    assert "mp3 or wav" in error_fields(problem)["FILE"]
    assert stored_calls(app) == []


def test_a_recording_over_the_cap_is_413_naming_file(app: Flask, client, key: str):
    """B24APP_RECORD_MAX_BYTES (default 50 MiB): one byte over, within the body's allowance for
    the form around it, is judged by its size; far over is refused before it is read."""
    cap = app.config["SETTINGS"].record_max_bytes
    problem = assert_problem(upload(client, key, wav() + bytes(cap + 1 - len(wav()))), 413)
    assert list(error_fields(problem)) == ["FILE"]
    assert f"{cap:,}" in problem["detail"]

    far = assert_problem(upload(client, key, bytes(cap + 1024 * 1024)), 413)
    assert list(error_fields(far)) == ["FILE"] and "B24APP_RECORD_MAX_BYTES" in far["detail"]
    assert stored_calls(app) == []


def test_other_endpoints_keep_the_apis_one_mib(client: FlaskClient, key: str):
    body = {"PBX_CALL_ID": PBX_CALL_ID, "USER_ID": ",".join(["1"] * 600_000)}
    assert "1 MiB" in assert_problem(post(client, key, RING, body), 413)["detail"]


def test_a_portal_whose_stored_audio_is_at_its_cap_gets_507(app: Flask, client, key: str):
    """B24APP_RECORD_PORTAL_BYTES (default 1 GiB): the portal's recordings waiting to be attached
    (one stands here for them, its size set near the cap) leave no room for another."""
    first = upload(client, key, wav(), PBX_CALL_ID="call-1").get_json()["id"]
    cap = app.config["SETTINGS"].record_portal_bytes
    with app.app_context(), get_db().write() as session:
        session.execute(update(CallRecording).values(size=cap - 100))

    problem = assert_problem(upload(client, key, wav(), PBX_CALL_ID="call-2"), 507)

    assert list(error_fields(problem)) == ["FILE"]
    assert [c.public_id for c in stored_calls(app)] == [first]  # nothing of call-2 stored


@pytest.mark.parametrize(
    "sent",
    [
        {"json": {"PBX_CALL_ID": PBX_CALL_ID}},
        {"file": True, "fields": {"RECORD_URL": RECORD_URL}},
        {"json": {"PBX_CALL_ID": PBX_CALL_ID, "FILE": "a.mp3"}},
    ],
    ids=["neither", "both", "file-as-text"],
)
def test_a_record_needs_exactly_one_of_record_url_and_file(app, client, key, sent):
    if "file" in sent:
        response = upload(client, key, wav(), **sent["fields"])
    else:
        response = post(client, key, RECORD, sent["json"])
    errors = error_fields(assert_problem(response, 422))
    assert "FILE" in errors
    assert stored_calls(app) == []


def test_two_files_are_422(client: FlaskClient, key: str):
    form = MultiDict(
        [
            ("PBX_CALL_ID", PBX_CALL_ID),
            ("FILE", (io.BytesIO(wav()), "a.wav")),
            ("FILE", (io.BytesIO(wav()), "b.wav")),
        ]
    )
    response = client.post(
        RECORD, data=form, headers=bearer(key), content_type="multipart/form-data"
    )
    assert list(error_fields(assert_problem(response, 422))) == ["FILE"]


# --- keys and other portals --------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "path", "body"), EVENTS, ids=[k for k, _, _ in EVENTS])
def test_every_event_needs_the_portals_key(app: Flask, client, kind, path, body):
    response = client.post(path, json=body)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.post(path, json=body, headers=bearer("b24pbx_" + "A" * 43))
    assert_problem(wrong, 401)
    assert stored_calls(app) == []


def test_another_portals_call_is_404(app: Flask, client: FlaskClient, key: str):
    other = make_portal(app, "portal-b")
    location = post(client, key, START, START_BODY).headers["Location"]
    assert_problem(client.get(location, headers=bearer(other)), 404)
    assert client.get(location, headers=bearer(key)).status_code == 200


# --- reading a call back -------------------------------------------------------------------------


def test_get_shows_the_calls_events_and_recording(app: Flask, client, key: str):
    for _, path, body in EVENTS:
        location = post(client, key, path, body).headers["Location"]
    with app.app_context(), get_db().write() as session:  # as the delivery records a register
        session.execute(
            update(Call).values(
                bitrix_call_id="externalCall.x", crm_entity_type="CONTACT", crm_entity_id=42
            )
        )

    body = client.get(location, headers=bearer(key)).get_json()

    assert (body["CALL_ID"], body["crm_entity_type"], body["crm_entity_id"]) == (
        "externalCall.x",
        "CONTACT",
        42,
    )
    assert [e["kind"] for e in body["events"]] == [k for k, _, _ in EVENTS]
    assert all(set(e) == {"kind", "state", "error", "note", "created_at", "delivered_at"}
               for e in body["events"])  # fmt: skip
    assert all(e["state"] == "queued" and e["created_at"] for e in body["events"])
    assert body["recording"] == {"state": "fetching", "audio": None, "size": None, "error": None}


def test_get_of_a_call_without_recording_shows_none(client: FlaskClient, key: str):
    location = post(client, key, START, START_BODY).headers["Location"]
    body = client.get(location, headers=bearer(key)).get_json()
    assert body["recording"] is None and body["CALL_ID"] is None
    assert [e["kind"] for e in body["events"]] == ["start"]


# --- at once -----------------------------------------------------------------------------------


def _race(url: str, key: str, sends: list[tuple[str, dict[str, Any]]]) -> list[requests.Response]:
    """Post every (path, body) at once from its own thread (a barrier lines them up)."""
    barrier = threading.Barrier(len(sends))
    answers: list[requests.Response | None] = [None] * len(sends)

    def send(index: int) -> None:
        path, body = sends[index]
        with requests.Session() as session:
            barrier.wait()
            answers[index] = session.post(url + path, json=body, headers=bearer(key), timeout=30)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(sends))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [answer for answer in answers if answer is not None]


def test_concurrent_events_of_one_call_make_one_call_and_one_row_per_event(live_app: LiveApp):
    """Three copies of each event at once: one call, one row per event, every answer 202."""
    key = make_portal(live_app.app)
    answers = _race(live_app.url, key, [(path, body) for _, path, body in EVENTS] * 3)

    assert [a.status_code for a in answers] == [202] * 3 * len(EVENTS)
    [call] = stored_calls(live_app.app)
    assert {a.json()["id"] for a in answers} == {call.public_id}
    kinds = sorted(e.kind for e in stored_events(live_app.app, call.public_id))
    assert kinds == sorted(k for k, _, _ in EVENTS)
    assert call.events_version == len(EVENTS)
    with live_app.app.app_context(), get_db().read() as session:
        assert len(list(session.scalars(select(CallRecording)))) == 1
