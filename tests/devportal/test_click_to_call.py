"""Click-to-call and the callback form on the development portal, as Bitrix24 does them
(devportal/call_events.py, event_queue.py): the click registers the call and queues
ONEXTERNALCALLSTART; the callback form queues ONEXTERNALCALLBACKSTART; each goes, once and after
the click has been answered, to every handler the app bound.

Pages: api-reference/telephony/events/on-external-call-start.md, on-external-call-back-start.md,
tutorials/telephony/index.md §5 (the call is already registered; finish its CALL_ID; a handler
answers 200), api-reference/events/index.md (the queue: a slight delay; no retries), digest §5.7.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from flask import Flask, request
from werkzeug.serving import make_server

from devportal.server import DevportalServer
from devportal.state import DevPortal, DevState, install
from tests.conftest import TEST_CLIENT_ID
from tests.devportal.conftest import Rest

CALL_START_DATA = [
    "PHONE_NUMBER",
    "PHONE_NUMBER_INTERNATIONAL",
    "EXTENSION",
    "USER_ID",
    "CALL_LIST_ID",
    "LINE_NUMBER",
    "IS_MOBILE",
    "CALL_ID",
    "CRM_ENTITY_TYPE",
    "CRM_ENTITY_ID",
]
CALLBACK_DATA = ["PHONE_NUMBER", "TEXT", "VOICE", "CRM_ENTITY_TYPE", "CRM_ENTITY_ID", "LINE_NUMBER"]
AUTH = [
    "access_token",
    "expires",
    "expires_in",
    "scope",
    "domain",
    "server_endpoint",
    "status",
    "client_endpoint",
    "member_id",
    "user_id",
    "refresh_token",
    "application_token",
]
CALL_ID = re.compile(r"^externalCall\.[0-9a-f]{32}\.\d{10}$")
SLOW = 3.0  # seconds the /slow handler takes to answer


def keys(event: str, data: list[str]) -> list[str]:
    """The form keys of a bound handler's event, in the order the page's example has them."""
    return [
        "event",
        "event_handler_id",
        *[f"data[{name}]" for name in data],
        "ts",
        *[f"auth[{name}]" for name in AUTH],
    ]


@dataclass
class Got:
    path: str
    form: list[tuple[str, str]]
    content_type: str
    at: float

    @property
    def fields(self) -> dict[str, str]:
        return dict(self.form)


@dataclass
class Handlers:
    """An app's event handlers: /events answers 200, /slow 200 after SLOW seconds, /broken 500."""

    url: str
    got: list[Got] = field(default_factory=list)

    def at(self, path: str) -> list[Got]:
        return [g for g in self.got if g.path == path]


@pytest.fixture
def handlers() -> Iterator[Handlers]:
    with serve_handlers() as served:
        yield served


@contextlib.contextmanager
def serve_handlers() -> Iterator[Handlers]:
    """Handlers on a port of their own while the block runs."""
    app = Flask("handlers")
    handlers = Handlers(url="")

    @app.post("/<path:path>")
    def receive(path: str) -> tuple[str, int]:
        body = request.get_data(as_text=True)
        handlers.got.append(
            Got(
                "/" + path,
                parse_qsl(body, keep_blank_values=True),
                request.content_type or "",
                time.monotonic(),
            )
        )
        if path == "slow":
            time.sleep(SLOW)
        return ("<html>broken</html>", 500) if path == "broken" else ("ok", 200)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    handlers.url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield handlers
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def within(seconds: float, condition: Callable[[], Any]) -> Any:
    """`condition()`'s first truthy value within `seconds`; fails the test otherwise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"not within {seconds} s")


def bind(rest: Rest, event: str, handler: str) -> None:
    assert rest.result("event.bind", {"event": event, "handler": handler}) is True


def click(devportal: DevportalServer, **body: Any) -> requests.Response:
    return requests.post(
        f"{devportal.url}/p/alpha/shell/click-to-call",
        json={"user_id": 2, "contact_id": 1, "lang": "en", **body},
        timeout=10,
    )


def callback(devportal: DevportalServer, **body: Any) -> requests.Response:
    return requests.post(
        f"{devportal.url}/p/alpha/shell/callback",
        json={"user_id": 1, "phone": "+7 495 123-45-67", "text": "Call me", "lang": "en", **body},
        timeout=10,
    )


def sent_events(devportal: DevportalServer) -> list[dict[str, Any]]:
    answer = requests.get(f"{devportal.url}/_dev/portals/alpha/events", timeout=10)
    assert answer.status_code == 200
    return list(answer.json()["events"])


def finished_events(devportal: DevportalServer, count: int = 1) -> list[dict[str, Any]]:
    """The queue's deliveries once `count` of them have their handler's answer (or failure)."""
    return list(
        within(
            EVENT_WAIT,
            lambda: (
                (events := sent_events(devportal))
                and sum(e["state"] in ("delivered", "failed") for e in events) >= count
                and events
            ),
        )
    )


EVENT_WAIT = 8.0  # seconds: the queue's handler timeout (5 s) and a margin


# --- click-to-call ---------------------------------------------------------------------------
def test_a_click_registers_the_call_and_sends_the_documented_event(
    devportal: DevportalServer, dev: DevState, portal: DevPortal, rest: Rest, handlers: Handlers
) -> None:
    bind(rest, "ONEXTERNALCALLSTART", f"{handlers.url}/events")
    rest.result("telephony.externalLine.add", {"NUMBER": "74951234567", "NAME": "Office"})

    answer = click(devportal)

    assert answer.status_code == 202, answer.text
    call_id = answer.json()["CALL_ID"]
    assert CALL_ID.match(call_id)
    (got,) = within(EVENT_WAIT, lambda: handlers.at("/events"))
    assert got.content_type == "application/x-www-form-urlencoded"
    assert [k for k, _ in got.form] == keys("ONEXTERNALCALLSTART", CALL_START_DATA)
    fields = got.fields
    assert fields["event"] == "ONEXTERNALCALLSTART"
    assert {name: fields[f"data[{name}]"] for name in CALL_START_DATA} == {
        "PHONE_NUMBER": "+7 495 123-45-67",  # Ivan Petrov's number as the CRM holds it
        "PHONE_NUMBER_INTERNATIONAL": "+74951234567",
        "EXTENSION": "",
        "USER_ID": "2",
        "CALL_LIST_ID": "0",
        "LINE_NUMBER": "74951234567",  # the app's line
        "IS_MOBILE": "0",
        "CALL_ID": call_id,
        "CRM_ENTITY_TYPE": "CONTACT",
        "CRM_ENTITY_ID": "1",
    }
    # auth: the clicking employee's tokens and the app's application_token
    token = dev.access_tokens[fields["auth[access_token]"]]
    assert (token.user_id, token.client_id) == (2, TEST_CLIENT_ID)
    assert dev.refresh_tokens[fields["auth[refresh_token]"]].user_id == 2
    installation = portal.installations[TEST_CLIENT_ID]
    assert fields["auth[application_token]"] == installation.application_token
    assert fields["auth[member_id]"] == portal.member_id
    assert fields["event_handler_id"] == str(installation.events[0]["id"])
    # Bitrix24 registered the call itself: outgoing, the clicking employee, no EXTERNAL_CALL_ID
    registered = portal.calls[call_id]
    assert (registered["TYPE"], registered["USER_ID"], registered["client_id"]) == (
        1,
        2,
        TEST_CLIENT_ID,
    )
    assert registered["EXTERNAL_CALL_ID"] is None and registered["LINE_NUMBER"] == "74951234567"
    assert (registered["CRM_ENTITY_TYPE"], registered["CRM_ENTITY_ID"]) == ("CONTACT", 1)


def test_the_click_is_answered_before_the_handler_gets_the_event(
    devportal: DevportalServer, portal: DevPortal, rest: Rest, handlers: Handlers
) -> None:
    """events/index.md: the event goes through the queue server; the click does not wait."""
    bind(rest, "ONEXTERNALCALLSTART", f"{handlers.url}/slow")

    started = time.monotonic()
    answer = click(devportal)
    answered = time.monotonic() - started

    assert answer.status_code == 202
    assert answered < 1.0  # the handler takes SLOW (3 s) to answer
    assert [d["state"] for d in answer.json()["deliveries"]] == ["queued"]
    (event,) = finished_events(devportal)
    assert (event["state"], event["status"], event["answer"]) == ("delivered", 200, "ok")
    assert event["call_id"] == answer.json()["CALL_ID"] and event["user_id"] == 2
    assert event["answered_at"] - event["sent_at"] >= SLOW - 0.1


def test_every_bound_handler_gets_the_event_once(
    devportal: DevportalServer, rest: Rest, handlers: Handlers
) -> None:
    bind(rest, "ONEXTERNALCALLSTART", f"{handlers.url}/events")
    bind(rest, "ONEXTERNALCALLSTART", f"{handlers.url}/other")

    click(devportal)

    events = finished_events(devportal, 2)
    assert sorted(e["handler"] for e in events) == [
        f"{handlers.url}/events",
        f"{handlers.url}/other",
    ]
    assert len({e["event_handler_id"] for e in events}) == 2
    assert len(handlers.at("/events")) == len(handlers.at("/other")) == 1


def test_a_handler_that_does_not_answer_200_is_logged_as_failed_and_not_sent_again(
    devportal: DevportalServer, dev: DevState, rest: Rest, handlers: Handlers
) -> None:
    """events/index.md, "No retries": the queue logs the failure and does not resend."""
    bind(rest, "ONEXTERNALCALLSTART", f"{handlers.url}/broken")

    click(devportal)

    (event,) = finished_events(devportal)
    assert (event["state"], event["status"], event["error"]) == ("failed", 500, "HTTP 500")
    assert [e["status"] for e in dev.entries(event="ONEXTERNALCALLSTART")] == [500]
    time.sleep(2.0)  # nothing more arrives
    assert len(handlers.at("/broken")) == 1
    assert len(sent_events(devportal)) == 1


def test_an_unreachable_handler_is_logged_as_failed(devportal: DevportalServer, rest: Rest) -> None:
    with refusing_port() as port:
        bind(rest, "ONEXTERNALCALLSTART", f"http://127.0.0.1:{port}/events")
        click(devportal)
        (event,) = finished_events(devportal)
    assert (event["state"], event["status"], event["error"]) == ("failed", None, "ConnectionError")


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A port bound but never listening while the block runs: connections to it are refused."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield int(bound.getsockname()[1])


def test_nothing_bound_nothing_sent_and_the_shell_says_so(
    devportal: DevportalServer, portal: DevPortal, handlers: Handlers
) -> None:
    answer = click(devportal)

    assert answer.status_code == 409
    assert answer.json()["error"] == "not_bound"
    assert answer.json()["error_description"] == (
        f"The application {TEST_CLIENT_ID} has no handler for ONEXTERNALCALLSTART: "
        "nothing was sent."
    )
    assert portal.calls == {}  # nothing registered either
    assert sent_events(devportal) == []
    ru = click(devportal, lang="ru").json()["error_description"]
    assert ru.startswith(f"У приложения {TEST_CLIENT_ID} нет обработчика ONEXTERNALCALLSTART")


def test_no_event_before_the_installation_is_finished(
    devportal: DevportalServer, dev: DevState, handlers: Handlers
) -> None:
    """on-external-call-start.md: no events until installFinish()."""
    portal = dev.add_portal("alpha")
    installation, access, _ = install(dev, portal, TEST_CLIENT_ID)
    Rest(devportal.url, portal, access.token).result(
        "event.bind", {"event": "ONEXTERNALCALLSTART", "handler": f"{handlers.url}/events"}
    )

    answer = click(devportal)

    assert (answer.status_code, answer.json()["error"]) == (409, "not_installed")
    installation.installed = True
    assert click(devportal).status_code == 202


def test_no_telephony_app_on_the_portal_is_refused(
    devportal: DevportalServer, dev: DevState
) -> None:
    dev.add_portal("alpha")
    assert click(devportal).json()["error"] == "no_app"


def test_the_registered_call_is_finished_shown_and_recorded_by_its_call_id(
    devportal: DevportalServer, portal: DevPortal, rest: Rest, handlers: Handlers
) -> None:
    """tutorials/telephony §5: "complete the same CALL_ID using the finish method"."""
    bind(rest, "ONEXTERNALCALLSTART", f"{handlers.url}/events")
    call_id = click(devportal).json()["CALL_ID"]

    assert rest.result("telephony.externalCall.show", {"CALL_ID": call_id, "USER_ID": 3}) is True
    assert rest.result("telephony.externalCall.hide", {"CALL_ID": call_id, "USER_ID": 3}) is True
    finished = rest.result(
        "telephony.externalCall.finish",
        {"CALL_ID": call_id, "USER_ID": 2, "DURATION": 42, "STATUS_CODE": "200"},
    )
    attached = rest.result(
        "telephony.externalCall.attachRecord",
        {"CALL_ID": call_id, "RECORD_URL": "https://pbx.example/rec/1.mp3"},
    )

    assert finished["CALL_ID"] == call_id and finished["INCOMING"] == "1"  # outgoing
    assert (finished["PORTAL_USER_ID"], finished["CALL_DURATION"]) == (2, 42)
    assert (finished["CRM_ENTITY_TYPE"], finished["CRM_ENTITY_ID"]) == ("CONTACT", 1)
    assert finished["EXTERNAL_CALL_ID"] is None
    assert attached["FILE_ID"] > 0
    assert portal.calls == {}
    again = rest.call(
        "telephony.externalCall.finish", {"CALL_ID": call_id, "USER_ID": 2, "DURATION": 1}
    )
    assert again.json()["error_description"].startswith("Call is not found")


def test_a_bare_number_is_called_without_a_crm_entity_unless_a_contact_has_it(
    devportal: DevportalServer, rest: Rest, handlers: Handlers
) -> None:
    bind(rest, "ONEXTERNALCALLSTART", f"{handlers.url}/events")

    unknown = click(devportal, contact_id=None, phone="+1 202 555 0100").json()["data"]
    known = click(devportal, contact_id=None, phone="84951234567").json()["data"]
    refused = click(devportal, contact_id=None, phone="call me")

    assert (unknown["CRM_ENTITY_TYPE"], unknown["CRM_ENTITY_ID"]) == ("", "")
    assert unknown["PHONE_NUMBER_INTERNATIONAL"] == "+12025550100"
    assert (known["CRM_ENTITY_TYPE"], known["CRM_ENTITY_ID"]) == ("CONTACT", "1")
    assert (refused.status_code, refused.json()["error"]) == (400, "bad_phone")
    assert click(devportal, contact_id=99).json()["error"] == "no_contact"
    assert click(devportal, user_id=5).json()["error"] == "no_user"  # Eva was dismissed


# --- the callback form -----------------------------------------------------------------------
def test_a_callback_sends_the_documented_event_and_registers_nothing(
    devportal: DevportalServer, dev: DevState, portal: DevPortal, rest: Rest, handlers: Handlers
) -> None:
    bind(rest, "ONEXTERNALCALLBACKSTART", f"{handlers.url}/events")

    answer = callback(devportal)
    stranger = callback(devportal, phone="+44 20 7946 0000", text="")

    assert answer.status_code == 202 and answer.json()["CALL_ID"] is None
    first, second = within(EVENT_WAIT, lambda: len(handlers.got) == 2 and handlers.got)
    by_phone = {g.fields["data[PHONE_NUMBER]"]: g for g in (first, second)}
    got = by_phone["+7 495 123-45-67"]
    assert [k for k, _ in got.form] == keys("ONEXTERNALCALLBACKSTART", CALLBACK_DATA)
    assert {name: got.fields[f"data[{name}]"] for name in CALLBACK_DATA} == {
        "PHONE_NUMBER": "+7 495 123-45-67",
        "TEXT": "Call me",
        "VOICE": "ruinternalfemale",
        "CRM_ENTITY_TYPE": "CONTACT",
        "CRM_ENTITY_ID": "1",
        "LINE_NUMBER": "",
    }
    assert got.fields["event"] == "ONEXTERNALCALLBACKSTART"
    assert got.fields["auth[application_token]"] == (
        portal.installations[TEST_CLIENT_ID].application_token
    )
    other = by_phone["+44 20 7946 0000"].fields
    assert other["data[CRM_ENTITY_TYPE]"] == "LEAD" and int(other["data[CRM_ENTITY_ID]"]) > 0
    assert other["data[TEXT]"].startswith("A callback was ordered")  # the form's default text
    assert stranger.status_code == 202
    assert portal.calls == {}  # the app registers a callback itself (TYPE 4)
    assert [e["status"] for e in finished_events(devportal, 2)] == [200, 200]


def test_a_callback_without_a_handler_is_refused(
    devportal: DevportalServer, rest: Rest, handlers: Handlers
) -> None:
    bind(rest, "ONEXTERNALCALLSTART", f"{handlers.url}/events")  # only click-to-call

    answer = callback(devportal, lang="ru")

    assert (answer.status_code, answer.json()["error"]) == (409, "not_bound")
    assert "ONEXTERNALCALLBACKSTART" in answer.json()["error_description"]
    assert handlers.got == []


# --- the inspection API and the Telephony page -------------------------------------------------
def test_the_inspection_api_clicks_and_orders_like_the_shell(
    devportal: DevportalServer, rest: Rest, handlers: Handlers
) -> None:
    bind(rest, "ONEXTERNALCALLSTART", f"{handlers.url}/events")
    bind(rest, "ONEXTERNALCALLBACKSTART", f"{handlers.url}/events")
    base = f"{devportal.url}/_dev/portals/alpha"

    clicked = requests.post(
        f"{base}/click-to-call", json={"user_id": 3, "phone": "101"}, timeout=10
    )
    ordered = requests.post(f"{base}/callback", json={"phone": "+15551234567"}, timeout=10)
    refused = requests.post(
        f"{base}/click-to-call", json={"contact_id": 1, "client_id": "app.nobody"}, timeout=10
    )

    assert clicked.status_code == 202 and clicked.json()["data"]["USER_ID"] == "3"
    assert ordered.status_code == 202 and ordered.json()["event"] == "ONEXTERNALCALLBACKSTART"
    assert refused.status_code == 404
    events = finished_events(devportal, 2)
    assert [e["event"] for e in events] == ["ONEXTERNALCALLSTART", "ONEXTERNALCALLBACKSTART"]
    assert all("auth" not in e and "access_token" not in str(e) for e in events)


def test_the_telephony_page_shows_contacts_to_click_and_the_events_sent(
    devportal: DevportalServer, rest: Rest, handlers: Handlers
) -> None:
    bind(rest, "ONEXTERNALCALLSTART", f"{handlers.url}/events")
    call_id = click(devportal).json()["CALL_ID"]
    finished_events(devportal)

    page = requests.get(f"{devportal.url}/p/alpha/telephony/?as_user=2", timeout=10).text
    ru = requests.get(f"{devportal.url}/p/alpha/telephony/?lang=ru", timeout=10).text

    assert 'class="dial" data-contact-id="1"' in page
    assert 'aria-label="Call +7 495 123-45-67 through the app"' in page
    assert f'Outgoing calls go through: <strong id="outgoing-app">{TEST_CLIENT_ID}' in page
    assert 'data-event="ONEXTERNALCALLSTART" data-state="delivered"' in page
    assert f'data-call-id="{call_id}"' in page
    assert "registered, clicked by Boris Sales" in page  # the call's timeline
    assert "event ONEXTERNALCALLSTART → HTTP 200" in page
    assert 'id="callback-form"' in page and "Order a callback" in page
    assert "Заказать обратный звонок" in ru and "CRM: контакты" in ru
    calls = requests.get(f"{devportal.url}/p/alpha/shell/calls", timeout=10).json()["calls"]
    assert [s["what"] for s in calls[0]["events"]] == ["clicked", "event"]
