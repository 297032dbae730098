"""The development portal's PBX stand-in (devportal/pbx_receiver.py; not part of Bitrix24): it
verifies b24app's originate webhooks with `standardwebhooks`, answers as a PBX does, fails on
request, and reports the calls it places to b24app's PBX API (`start` with Bitrix24's CALL_ID,
then `finish`). Contract: PRODUCT.md "From Bitrix24 to the PBX"; b24app/pbx/schemas.py for
the fields of `start` and `finish`.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from flask import Flask, request
from standardwebhooks.webhooks import Webhook
from werkzeug.serving import make_server

from devportal.methods import Call as DevCall
from devportal.methods.telephony import external_call_register
from devportal.server import DevportalServer
from devportal.state import DevPortal, DevState
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.delivery.conftest import run_worker
from tests.devportal.test_click_to_call import within
from tests.security import pbx_key

TALK = 2.0  # the stand-in's default talk_seconds
REPORT_WAIT = TALK + 8.0  # seconds for the start and, TALK later, the finish to be reported


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


SECRET = new_secret()


def signed(
    message: dict[str, Any],
    secret: str = SECRET,
    *,
    msg_id: str | None = None,
    at: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a Standard Webhooks message, as b24app sends it."""
    body = json.dumps(message)
    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    at = at or datetime.now(UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
        "Content-Type": "application/json",
    }
    return body.encode(), headers


def call_start(**fields: Any) -> dict[str, Any]:
    return {
        "type": "call.start",
        "CALL_ID": "externalCall.0123456789abcdef0123456789abcdef.1773236989",
        "PHONE_NUMBER": "+7 495 123-45-67",
        "PHONE_NUMBER_INTERNATIONAL": "+74951234567",
        "USER_ID": "2",
        "USER_PHONE_INNER": "101",
        "LINE_NUMBER": "74951234567",
        "CRM_ENTITY_TYPE": "CONTACT",
        "CRM_ENTITY_ID": "1",
        "CALL_LIST_ID": "0",
        "IS_MOBILE": "0",
        **fields,
    }


def callback_start(**fields: Any) -> dict[str, Any]:
    message = call_start(type="callback.start", TEXT="Call me", VOICE="ruinternalfemale")
    for absent in ("CALL_ID", "USER_ID", "USER_PHONE_INNER"):
        message.pop(absent)
    return {**message, **fields}


@dataclass
class Receiver:
    base: str
    code: str = "alpha"

    @property
    def url(self) -> str:
        return f"{self.base}/_pbx/{self.code}/originate"

    def post(self, body: bytes, headers: dict[str, str]) -> requests.Response:
        return requests.post(self.url, data=body, headers=headers, timeout=30)

    def send(self, message: dict[str, Any], secret: str = SECRET, **kw: Any) -> requests.Response:
        return self.post(*signed(message, secret, **kw))

    def configure(self, **settings: Any) -> requests.Response:
        return requests.post(f"{self.base}/_dev/portals/{self.code}/pbx", json=settings, timeout=10)

    def state(self) -> dict[str, Any]:
        answer = requests.get(f"{self.base}/_dev/portals/{self.code}/pbx", timeout=10)
        assert answer.status_code == 200
        return dict(answer.json())


@pytest.fixture
def receiver(devportal: DevportalServer, dev: DevState) -> Receiver:
    """Portal alpha's PBX, configured with SECRET (not reporting anywhere)."""
    dev.add_portal("alpha")
    receiver = Receiver(devportal.url)
    assert receiver.configure(secret=SECRET).status_code == 200
    return receiver


@dataclass
class FakeB24app:
    """b24app's PBX API as far as the stand-in sees it: every POST kept, 202 answered."""

    url: str
    got: list[dict[str, Any]] = field(default_factory=list)

    def at(self, event: str) -> list[dict[str, Any]]:
        return [g for g in self.got if g["event"] == event]


@pytest.fixture
def b24app() -> Iterator[FakeB24app]:
    app = Flask("fake_b24app")
    fake = FakeB24app(url="")

    @app.post("/pbx/v1/calls/<event>")
    def calls(event: str) -> tuple[dict[str, Any], int]:
        fake.got.append(
            {
                "event": event,
                "json": request.get_json(),
                "authorization": request.headers.get("Authorization"),
                "at": time.monotonic(),
            }
        )
        return {"id": "c_1"}, 202

    server = make_server("127.0.0.1", 0, app, threaded=True)
    fake.url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# --- verifying -------------------------------------------------------------------------------
def test_a_well_signed_webhook_is_answered_like_a_pbx(receiver: Receiver) -> None:
    answer = receiver.send(call_start())

    assert answer.status_code == 200
    assert answer.json()["status"] == "dialing"
    assert answer.json()["PBX_CALL_ID"].startswith("devpbx-")
    (got,) = receiver.state()["received"]
    assert (got["type"], got["verified"], got["status"]) == ("call.start", True, 200)
    assert got["body"]["CALL_ID"] == call_start()["CALL_ID"]


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda: signed(call_start(), new_secret()), id="another-secret"),
        pytest.param(
            lambda: (
                signed(call_start())[0].replace(b"+74951234567", b"+19005550000"),
                signed(call_start())[1],
            ),
            id="tampered-body",
        ),
        pytest.param(
            lambda: signed(call_start(), at=datetime.now(UTC) - timedelta(minutes=10)), id="stale"
        ),
        pytest.param(
            lambda: (signed(call_start())[0], {"Content-Type": "application/json"}),
            id="no-headers",
        ),
        pytest.param(
            lambda: (
                signed(call_start())[0],
                {**signed(call_start())[1], "webhook-signature": "garbage"},
            ),
            id="malformed-signature",
        ),
    ],
)
def test_a_forged_webhook_is_refused_and_places_no_call(
    receiver: Receiver, b24app: FakeB24app, forge: Any
) -> None:
    receiver.configure(b24app_url=b24app.url, pbx_key="key")

    answer = receiver.post(*forge())

    assert answer.status_code == 401
    assert answer.json()["error"] == "bad_signature"
    (got,) = receiver.state()["received"]
    assert got["verified"] is False and got["reason"] and "body" not in got
    time.sleep(0.5)
    assert b24app.got == []


def test_without_a_secret_every_webhook_is_refused(receiver: Receiver) -> None:
    receiver.configure(secret=None)

    answer = receiver.send(call_start())

    assert answer.status_code == 401
    assert answer.json()["reason"] == "no secret configured"


# --- what it does with a verified webhook ----------------------------------------------------
def test_a_click_to_call_is_reported_as_start_with_bitrix24s_call_id_then_finish(
    receiver: Receiver, b24app: FakeB24app
) -> None:
    receiver.configure(b24app_url=b24app.url, pbx_key="the-pbx-key")

    started = time.monotonic()
    answer = receiver.send(call_start())
    answered = time.monotonic() - started

    assert answer.status_code == 200 and answered < 1.0  # the call is placed afterwards
    pbx_call_id = answer.json()["PBX_CALL_ID"]
    start, finish = within(REPORT_WAIT, lambda: len(b24app.got) == 2 and b24app.got)
    assert (start["event"], finish["event"]) == ("start", "finish")
    assert start["json"] == {
        "PBX_CALL_ID": pbx_call_id,
        "CALL_ID": call_start()["CALL_ID"],  # Bitrix24's: nothing is registered again
        "PHONE_NUMBER": "+74951234567",
        "TYPE": 1,  # outgoing
        "USER_ID": 2,
        "LINE_NUMBER": "74951234567",
    }
    assert finish["json"] == {
        "PBX_CALL_ID": pbx_call_id,
        "DURATION": 2,
        "STATUS_CODE": "200",
        "USER_ID": 2,
    }
    assert finish["at"] - start["at"] >= TALK - 0.1
    assert {g["authorization"] for g in b24app.got} == {"Bearer the-pbx-key"}
    # the receiver notes a report once b24app has answered it: a moment after b24app got it
    reports = within(
        REPORT_WAIT, lambda: len(receiver.state()["reports"]) == 2 and receiver.state()["reports"]
    )
    assert [(r["event"], r["status"]) for r in reports] == [("start", 202), ("finish", 202)]
    assert "the-pbx-key" not in json.dumps(receiver.state())
    assert SECRET not in json.dumps(receiver.state())


def test_a_callback_is_reported_as_a_callback_taken_by_the_operator(
    receiver: Receiver, b24app: FakeB24app
) -> None:
    receiver.configure(b24app_url=b24app.url, pbx_key="k", extension="102")

    answer = receiver.send(callback_start(CRM_ENTITY_TYPE="LEAD", CRM_ENTITY_ID="17"))

    assert answer.status_code == 200 and answer.json()["status"] == "dialing"
    start, finish = within(REPORT_WAIT, lambda: len(b24app.got) == 2 and b24app.got)
    assert start["json"] == {
        "PBX_CALL_ID": answer.json()["PBX_CALL_ID"],
        "PHONE_NUMBER": "+74951234567",
        "TYPE": 4,  # callback
        "CRM_ENTITY_TYPE": "LEAD",
        "CRM_ENTITY_ID": 17,
        "LINE_NUMBER": "74951234567",
        "USER_PHONE_INNER": "102",
    }
    assert finish["json"]["USER_PHONE_INNER"] == "102"


def test_a_test_call_rings_but_is_never_reported(receiver: Receiver, b24app: FakeB24app) -> None:
    receiver.configure(b24app_url=b24app.url, pbx_key="k")

    answer = receiver.send(call_start(type="call.test"))

    assert answer.status_code == 200
    assert answer.json() == {"status": "dialing", "test": True}
    time.sleep(TALK + 1.0)
    assert b24app.got == []


def test_a_message_delivered_twice_places_one_call(receiver: Receiver, b24app: FakeB24app) -> None:
    """Standard Webhooks: webhook-id is the idempotency key of a message."""
    receiver.configure(b24app_url=b24app.url, pbx_key="k")
    body, headers = signed(call_start())

    first = receiver.post(body, headers)
    again = receiver.post(body, headers)

    assert first.status_code == again.status_code == 200
    assert again.json() == {"status": "dialing", "duplicate": True}
    within(REPORT_WAIT, lambda: len(b24app.got) == 2)
    time.sleep(0.5)
    assert [g["event"] for g in b24app.got] == ["start", "finish"]


def test_unknown_types_are_accepted_and_ignored(receiver: Receiver) -> None:
    answer = receiver.send({"type": "call.someday"})
    assert (answer.status_code, answer.json()) == (200, {"status": "ignored"})
    not_json = receiver.post(*signed_text("[1, 2]"))
    assert not_json.status_code == 400


def signed_text(text: str) -> tuple[bytes, dict[str, str]]:
    at, msg_id = datetime.now(UTC), "msg_text"
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, at, text),
    }
    return text.encode(), headers


def test_without_b24app_configured_nothing_is_reported(receiver: Receiver) -> None:
    receiver.send(call_start())

    (report,) = within(5.0, lambda: receiver.state()["reports"])
    assert (report["event"], report["error"]) == ("start", "not configured")


# --- faults ----------------------------------------------------------------------------------
def test_failing_the_next_two_then_answering(receiver: Receiver, b24app: FakeB24app) -> None:
    receiver.configure(fail_next=2, b24app_url=b24app.url, pbx_key="k")
    body, headers = signed(call_start())  # b24app retries the same message

    statuses = [receiver.post(body, headers).status_code for _ in range(3)]

    assert statuses == [500, 500, 200]
    assert receiver.state()["fail_next"] == 0
    within(REPORT_WAIT, lambda: len(b24app.got) == 2)  # placed once, on the third


def test_a_pbx_that_is_down_answers_503_to_everything(receiver: Receiver) -> None:
    receiver.configure(down=True)

    assert receiver.send(call_start()).status_code == 503
    assert receiver.send(call_start(), new_secret()).status_code == 503
    assert receiver.send(call_start()).status_code == 503

    receiver.configure(down=False)
    assert receiver.send(call_start()).status_code == 200


def test_a_slow_pbx_answers_after_its_delay(receiver: Receiver) -> None:
    receiver.configure(delay=1.5)

    started = time.monotonic()
    answer = receiver.send(call_start())

    assert answer.status_code == 200
    assert time.monotonic() - started >= 1.5


@pytest.mark.parametrize(
    "settings",
    [
        {"secret": "not-a-whsec"},
        {"fail_next": -1},
        {"down": "yes"},
        {"talk_seconds": True},
        {"delay": 500},
        {"b24app_url": "ftp://x"},
        {"colour": "blue"},
    ],
)
def test_bad_settings_are_refused_and_change_nothing(
    receiver: Receiver, settings: dict[str, Any]
) -> None:
    answer = receiver.configure(**{"down": True, **settings})

    assert answer.status_code == 400
    assert receiver.state()["down"] is False


def test_the_telephony_page_shows_what_the_pbx_received(
    devportal: DevportalServer, receiver: Receiver
) -> None:
    receiver.send(call_start())
    receiver.send(call_start(), new_secret())

    page = requests.get(f"{devportal.url}/p/alpha/telephony/", timeout=10).text

    assert f'<code id="pbx-url">{receiver.url}</code>' in page
    assert 'data-type="call.start" data-status="200" data-verified="yes"' in page
    assert 'data-status="401" data-verified="no"' in page
    assert "nobody (no b24app address or PBX key configured)" in page
    assert SECRET not in page


# --- against b24app itself --------------------------------------------------------------------
def test_the_pbx_reports_a_click_to_call_to_b24app_which_finishes_bitrix24s_call(
    live_app: LiveApp,
) -> None:
    """PRODUCT.md: then the PBX reports the call with `start` carrying Bitrix24's CALL_ID
    (nothing registered again), and finishes it as usual."""
    portal = live_app.install("alpha")
    dev = live_app.dev
    call_id = registered_click(dev, portal)
    receiver = Receiver(dev.base_url)
    receiver.configure(
        secret=SECRET, b24app_url=live_app.url, pbx_key=pbx_key(live_app, portal.member_id)
    )

    answer = receiver.send(call_start(CALL_ID=call_id, LINE_NUMBER=""))

    assert answer.status_code == 200
    reports = within(REPORT_WAIT, lambda: len(r := receiver.state()["reports"]) == 2 and r)
    assert [(r["event"], r["status"]) for r in reports] == [("start", 202), ("finish", 202)]
    run_worker(live_app.app)
    assert [s["CALL_ID"] for s in portal.statistics] == [call_id]
    assert portal.statistics[0]["PORTAL_USER_ID"] == 2
    assert portal.statistics[0]["CALL_DURATION"] == 2
    assert dev.entries(method="telephony.externalcall.register") == []


def registered_click(dev: DevState, portal: DevPortal) -> str:
    """A call Bitrix24 registered for Boris (user 2) on a click, as call_events.py does."""
    token = next(
        t for t in dev.access_tokens.values()
        if t.member_id == portal.member_id and t.client_id == TEST_CLIENT_ID
    )  # fmt: skip
    call = DevCall(dev, portal, token, "telephony.externalCall.register")
    with dev.lock:
        body = {"USER_ID": 2, "PHONE_NUMBER": "+74951234567", "TYPE": 1}
        return str(external_call_register(call, body)["CALL_ID"])
