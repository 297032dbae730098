"""The settings page's click-to-call and callback block and its external lines, through HTTP as
the page's script uses them, on SQLite and PostgreSQL: the originate URL (saved, cleared,
refused with the field named, under the tests' local-address rule and under the default rule),
the signing secret (shown to admins only, rotated so that the old one no longer verifies),
"send a test call" against a small PBX stand-in of the test's own (accepted, refused, down,
redirecting, too slow), the requests to the PBX in their own journal, and the portal's lines
asked of the development portal (listed, added, already there, Bitrix24 down)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug.serving import make_server

from b24app import create_app
from b24app.db import get_db
from b24app.portals import originate_secret, store
from b24app.wiring import current_store
from devportal import faults
from devportal.state import DevPortal
from tests.conftest import LiveApp, make_settings
from tests.settings_page.conftest import Page, open_page
from tests.settings_page.originate_helpers import add_origination, refused_port, stand_in_pbx

ADMIN, EMPLOYEE = 1, 2  # the development portal's Anna Admin and Boris Sales


# --- helpers --------------------------------------------------------------------------------------


def stored_originate(live: LiveApp, portal: DevPortal) -> tuple[str | None, str | None]:
    """(originate_url, the secret) as stored."""
    with live.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        s = row.settings
        secret = (
            originate_secret.reveal(s, current_store().box)
            if s.originate_secret_encrypted
            else None
        )
        return s.originate_url, secret


def save_url(page: Page, url: str) -> requests.Response:
    return page.post("/settings", {"settings": {"originate_url": url}})


def errors(answer: requests.Response) -> list[dict[str, str]]:
    assert answer.status_code == 422, answer.text
    return answer.json()["errors"]


def send_test_call(page: Page, phone_number: str = "+7 495 123-45-67") -> dict[str, Any]:
    answer = page.post("/originate/test", {"phone_number": phone_number})
    assert answer.status_code == 200, answer.text
    return answer.json()["answer"]


@contextmanager
def served(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def default_rules_app(live: LiveApp, database_url: str, tmp_path: Path) -> Iterator[str]:
    """A second b24app on the same database with the deployment's default address rules
    (B24APP_ALLOW_LOCAL_PORTALS and B24APP_ORIGINATE_ALLOW_PRIVATE off), as in production; the
    page token the test app issued is good there too (same SECRET_KEY)."""
    settings = live.app.config["SETTINGS"]
    assert settings.originate_private_allowed  # the tests' own rule, for the development portal
    strict = make_settings(
        database_url,
        tmp_path / "default-rules",
        PUBLIC_URL=live.url,
        B24_OAUTH_SERVER=settings.oauth_server,
        B24APP_ENCRYPTION_KEYS=",".join(settings.fernet_keys),
        B24APP_ALLOW_LOCAL_PORTALS=False,
    )
    assert not strict.originate_private_allowed
    app = create_app(strict)
    try:
        with served(app) as url:
            yield url
    finally:
        app.extensions["b24app.db"].dispose()


# --- the originate URL ----------------------------------------------------------------------------


def test_an_admin_saves_the_originate_url_and_clears_it(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    assert page.state["originate"] == {"url": "", "has_secret": True}  # made at install
    label = page.state["messages"]["originate_url_label"]
    assert label == "Your PBX's webhook address (originate URL)"

    saved = save_url(page, "http://127.0.0.1:8200/b24/originate?pbx=1")

    assert saved.status_code == 200, saved.text
    assert saved.json()["changed"] == ["originate_url"]
    assert saved.json()["originate"]["url"] == "http://127.0.0.1:8200/b24/originate?pbx=1"
    assert stored_originate(live_app, portal)[0] == "http://127.0.0.1:8200/b24/originate?pbx=1"
    reopened = open_page(live_app, portal)
    assert reopened.state["originate"]["url"] == "http://127.0.0.1:8200/b24/originate?pbx=1"

    cleared = save_url(page, "")

    assert cleared.status_code == 200, cleared.text
    assert stored_originate(live_app, portal)[0] is None
    assert page.get("/state").json()["originate"]["url"] == ""


@pytest.mark.parametrize(
    ("url", "english", "russian"),
    [
        (
            "pbx.example.com/originate",
            "Enter the full address of your PBX's webhook",
            "Введите полный адрес вебхука вашей АТС",
        ),
        (
            "https://admin:secret@pbx.example.com/originate",
            "no user:password@",
            "без user:password@",
        ),
    ],
)
def test_a_url_that_is_no_address_is_refused_under_any_rule(
    live_app: LiveApp, url: str, english: str, russian: str
):
    portal = live_app.install("alpha")
    save_url(open_page(live_app, portal), "http://127.0.0.1:8200/kept")

    for lang, text in (("en", english), ("ru", russian)):
        answer = save_url(open_page(live_app, portal, lang=lang), url)
        [error] = errors(answer)
        assert error["field"] == "originate_url"
        assert text in error["message"]
    assert stored_originate(live_app, portal)[0] == "http://127.0.0.1:8200/kept"


@pytest.mark.parametrize(
    ("url", "english", "russian"),
    [
        (
            "http://pbx.example.com/b24/originate",
            "The address must start with https://: the webhook carries phone numbers.",
            "Адрес должен начинаться с https://: вебхук передаёт номера телефонов.",
        ),
        (
            "http://127.0.0.1:8200/b24/originate",
            "The address must start with https://",
            "Адрес должен начинаться с https://",
        ),
        (
            "https://127.0.0.1/b24/originate",
            "127.0.0.1 leads to a private or local network address; b24app sends webhooks "
            "to public addresses only",
            "127.0.0.1 ведёт в частную или локальную сеть",
        ),
        (
            "https://10.20.30.40:8443/originate",
            "10.20.30.40 leads to a private or local network address",
            "10.20.30.40 ведёт в частную или локальную сеть",
        ),
        (
            "https://[::1]/originate",
            "::1 leads to a private or local network address",
            "::1 ведёт в частную или локальную сеть",
        ),
    ],
)
def test_at_default_settings_http_and_private_addresses_are_refused_naming_the_field(
    live_app: LiveApp, database_url: str, tmp_path: Path, url: str, english: str, russian: str
):
    portal = live_app.install("alpha")
    pages = {lang: open_page(live_app, portal, lang=lang) for lang in ("en", "ru")}
    # the tests' rule (B24APP_ALLOW_LOCAL_PORTALS=1, as in development) takes a local PBX
    assert save_url(pages["en"], "http://127.0.0.1:8200/kept").status_code == 200

    with default_rules_app(live_app, database_url, tmp_path) as strict:
        for lang, text in (("en", english), ("ru", russian)):
            answer = requests.post(
                f"{strict}/app/api/settings",
                headers=pages[lang].headers(),
                json={"settings": {"originate_url": url}},
                timeout=30,
            )
            [error] = errors(answer)
            assert error["field"] == "originate_url"
            assert text in error["message"]

    assert stored_originate(live_app, portal)[0] == "http://127.0.0.1:8200/kept"  # unchanged


def test_at_default_settings_https_to_a_public_address_is_saved(
    live_app: LiveApp, database_url: str, tmp_path: Path
):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)

    with default_rules_app(live_app, database_url, tmp_path) as strict:
        answer = requests.post(
            f"{strict}/app/api/settings",
            headers=page.headers(),
            json={"settings": {"originate_url": "https://8.8.8.8/b24/originate"}},
            timeout=30,
        )

    assert answer.status_code == 200, answer.text
    assert stored_originate(live_app, portal)[0] == "https://8.8.8.8/b24/originate"


# --- the secret -----------------------------------------------------------------------------------


def test_the_secret_is_shown_to_admins_only(live_app: LiveApp):
    portal = live_app.install("alpha")
    _url, secret = stored_originate(live_app, portal)
    assert secret is not None and secret.startswith("whsec_")
    admin = open_page(live_app, portal, user_id=ADMIN)
    employee = open_page(live_app, portal, user_id=EMPLOYEE)

    shown = admin.post("/originate-secret/reveal")

    assert shown.status_code == 200, shown.text
    assert shown.json()["secret"] == secret
    assert secret not in admin.response.text  # hidden until asked
    refused = employee.post("/originate-secret/reveal")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admins_only"
    assert secret not in refused.text
    assert secret not in employee.response.text
    assert secret not in employee.get("/state").text
    assert employee.state["originate"]["has_secret"] is True
    assert employee.state["messages"]["secret_set"] == "Set. Only administrators can see it."


def test_a_portal_without_a_secret_gets_one_when_an_admin_shows_it(live_app: LiveApp):
    portal = live_app.install("alpha")
    with live_app.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        row.settings.originate_secret_encrypted = None  # installed before click-to-call
    employee = open_page(live_app, portal, user_id=EMPLOYEE, lang="ru")
    assert employee.state["originate"]["has_secret"] is False
    assert employee.state["messages"]["secret_not_made"] == (
        "Ещё не создан: он создаётся, когда администратор впервые его покажет."
    )

    shown = open_page(live_app, portal).post("/originate-secret/reveal")

    assert shown.status_code == 200, shown.text
    assert shown.json()["secret"].startswith("whsec_")
    assert stored_originate(live_app, portal)[1] == shown.json()["secret"]


def test_rotating_the_secret_needs_confirmation_and_the_old_one_no_longer_verifies(
    live_app: LiveApp,
):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    old = page.post("/originate-secret/reveal").json()["secret"]

    unconfirmed = page.post("/originate-secret/rotate")

    [error] = errors(unconfirmed)
    assert error["field"] == "confirm"
    assert "вебхуки, подписанные текущим, перестанут проходить проверку" in error["message"]
    assert stored_originate(live_app, portal)[1] == old

    rotated = page.post("/originate-secret/rotate", {"confirm": True})

    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert stored_originate(live_app, portal)[1] == new
    assert page.post("/originate-secret/reveal").json()["secret"] == new
    with stand_in_pbx() as pbx:
        assert save_url(page, pbx.url).status_code == 200
        assert send_test_call(page)["ok"] is True
    [webhook] = pbx.received
    assert Webhook(new).verify(webhook.body, webhook.headers)["type"] == "call.test"
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(webhook.body, webhook.headers)


# --- send a test call -----------------------------------------------------------------------------


def test_a_test_call_shows_what_the_pbx_answered(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    secret = page.post("/originate-secret/reveal").json()["secret"]

    with stand_in_pbx() as pbx:
        save_url(page, pbx.url)
        started = time.monotonic()
        accepted = send_test_call(page, "+7 495 123-45-67")
        took = time.monotonic() - started

        pbx.status, pbx.answer = 500, '{"error": "dialplan broken"}'
        failing = send_test_call(page)

    assert took < 5
    assert accepted["ok"] is True
    assert accepted["status"] == 200
    assert accepted["body"] == '{"status": "dialing"}'
    assert accepted["text"].startswith("Your PBX answered HTTP 200 in ")
    assert accepted["text"].endswith(" s: it accepted the test call.")
    assert 0 <= accepted["seconds"] < 5
    assert failing["ok"] is False
    assert failing["status"] == 500
    assert failing["error_code"] == "refused"
    assert failing["body"] == '{"error": "dialplan broken"}'
    assert "Your PBX answered HTTP 500 in " in failing["text"]
    assert "it did not accept the webhook" in failing["text"]
    assert "Bitrix24" not in failing["text"]
    # what the PBX got: a call.test signed with the portal's secret, naming the admin
    first = pbx.received[0]
    assert first.path == "/b24/originate"
    event = Webhook(secret).verify(first.body, first.headers)
    assert event["type"] == "call.test"
    assert event["PHONE_NUMBER"] == "+7 495 123-45-67"
    assert event["USER_ID"] == ADMIN
    assert event["USER_PHONE_INNER"] == "100"  # Anna's extension, from her profile


def test_a_test_call_says_why_it_could_not_be_sent(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    russian = open_page(live_app, portal, lang="ru")

    no_url = send_test_call(page)
    assert (no_url["ok"], no_url["error_code"], no_url["status"]) == (False, "no_url", None)
    assert no_url["text"] == (
        "Not sent: no originate URL is set. Save your PBX's webhook address first."
    )

    save_url(page, refused_port())
    down = send_test_call(page)
    assert (down["ok"], down["error_code"], down["status"]) == (False, "connection", None)
    assert down["text"] == (
        "Could not connect to your PBX: the connection was refused, or its name does not resolve."
    )
    assert send_test_call(russian)["text"] == (
        "Не удалось подключиться к вашей АТС: соединение отклонено или её имя не разрешается "
        "в адрес."
    )

    with stand_in_pbx() as pbx:
        save_url(page, pbx.url)
        pbx.status, pbx.location = 302, "https://elsewhere.example.com/originate"
        redirect = send_test_call(page)
    assert (redirect["ok"], redirect["error_code"], redirect["status"]) == (False, "redirect", 302)
    assert redirect["text"].startswith("Your PBX answered with a redirect (HTTP 302)")


def test_a_pbx_that_does_not_answer_is_given_up_on_within_about_5_seconds(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")

    with stand_in_pbx() as pbx:
        save_url(page, pbx.url)
        pbx.delay = 8.0
        started = time.monotonic()
        slow = send_test_call(page)
        took = time.monotonic() - started

    assert took < 7
    assert (slow["ok"], slow["error_code"]) == (False, "timeout")
    assert slow["text"].startswith("Ваша АТС не ответила за ")


def test_a_bad_test_number_is_refused_before_anything_is_sent(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    with stand_in_pbx() as pbx:
        save_url(page, pbx.url)
        [error] = errors(page.post("/originate/test", {"phone_number": "call me maybe"}))
    assert error["field"] == "test_phone_number"
    assert error["message"].startswith("Номер телефона — не более 32 символов")
    assert pbx.received == []


# --- the read-only view ---------------------------------------------------------------------------


def test_the_read_only_view_shows_the_block_without_the_secret_or_any_action(live_app: LiveApp):
    portal = live_app.install("alpha")
    admin = open_page(live_app, portal)
    save_url(admin, "http://127.0.0.1:8200/b24/originate?token=pbx-own-credential")
    secret = admin.post("/originate-secret/reveal").json()["secret"]

    employee = open_page(live_app, portal, user_id=EMPLOYEE)

    html = employee.response.text  # the page's state, which the browser renders (tests/browser)
    assert employee.state["viewer"]["is_admin"] is False
    assert employee.state["originate"] == {
        "url": "http://127.0.0.1:8200/b24/originate?…",
        "has_secret": True,
    }
    assert "pbx-own-credential" not in html
    assert secret not in html
    assert employee.state["examples"] is None and "key_rotated_at" not in employee.state
    for method, path, body in (
        ("POST", "/settings", {"settings": {"originate_url": ""}}),
        ("POST", "/originate-secret/reveal", {}),
        ("POST", "/originate-secret/rotate", {"confirm": True}),
        ("POST", "/originate/test", {}),
        ("POST", "/lines", {"NUMBER": "74950000000"}),
        ("GET", "/originations", None),
    ):
        answer = employee.post(path, body) if method == "POST" else employee.get(path)
        assert answer.status_code == 403, path
        assert answer.json()["error"]["code"] == "admins_only"
    after_url, after_secret = stored_originate(live_app, portal)
    assert (after_url, after_secret) == (
        "http://127.0.0.1:8200/b24/originate?token=pbx-own-credential",
        secret,
    )
    assert live_app.dev.portals["alpha"].lines == {}


# --- requests to the PBX --------------------------------------------------------------------------


def test_requests_to_the_pbx_are_shown_with_the_pbx_answer_in_the_portal_zone(
    live_app: LiveApp,
):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    page.post("/settings", {"settings": {"timezone": "Europe/Moscow"}})
    at = datetime(2026, 3, 7, 7, 20, 30, tzinfo=UTC)
    add_origination(
        live_app,
        portal,
        kind="call.start",
        payload={"CALL_ID": "externalCall.abc", "PHONE_NUMBER": "+74951234567", "USER_ID": "2"},
        state="delivered",
        attempts=1,
        response_status=200,
        response_body='{"status": "dialing"}',
        created_at=at,
        delivered_at=at.replace(second=31),
    )
    add_origination(
        live_app,
        portal,
        kind="callback.start",
        payload={"PHONE_NUMBER": "89165550102", "TEXT": "A client asks", "LINE_NUMBER": "7"},
        state="failed",
        attempts=6,
        response_status=503,
        response_body="busy",
        error="the PBX answered 503; gave up after 6 attempts in 60 s",
        created_at=at.replace(minute=21),
    )
    add_origination(
        live_app,
        portal,
        kind="call.start",
        payload={"CALL_ID": "externalCall.def", "PHONE_NUMBER": "+74950000000", "USER_ID": "3"},
        state="queued",
        attempts=1,
        error="could not reach the PBX (ConnectionError)",
        created_at=at.replace(minute=22),
    )
    add_origination(
        live_app,
        portal,
        kind="call.start",
        payload={"CALL_ID": "externalCall.ghi", "PHONE_NUMBER": "+74951111111", "USER_ID": "1"},
        state="failed",
        attempts=1,
        error="address refused: 10.0.0.5 resolves to a non-public address",
        created_at=at.replace(minute=23),
    )

    answer = page.get("/originations")

    assert answer.status_code == 200, answer.text
    refused, waiting, failed, delivered = answer.json()["originations"]  # newest first
    assert delivered["created_at"] == "2026-03-07 10:20:30"  # Moscow, UTC+3
    assert (delivered["kind_text"], delivered["phone_number"]) == ("Click-to-call", "+74951234567")
    assert (delivered["user_id"], delivered["call_id"]) == (2, "externalCall.abc")
    assert delivered["state_text"] == "Delivered"
    assert delivered["outcome"] == "Your PBX accepted it (HTTP 200) at 2026-03-07 10:20:31."
    assert delivered["response_body"] == '{"status": "dialing"}'
    assert (failed["kind_text"], failed["text"], failed["line_number"]) == (
        "Callback",
        "A client asks",
        "7",
    )
    assert failed["outcome"] == "Not delivered to your PBX: it answered HTTP 503"
    assert waiting["outcome"] == (
        "Your PBX has not taken it yet (could not reach the PBX (ConnectionError)); trying again."
    )
    assert refused["outcome"] == (
        "Not delivered to your PBX: address refused: 10.0.0.5 resolves to a non-public address"
    )
    assert "Bitrix24" not in answer.text.replace("externalCall", "")

    russian = open_page(live_app, portal, lang="ru").get("/originations").json()["originations"]
    assert russian[3]["kind_text"] == "Звонок по клику"
    assert russian[3]["outcome"] == "Ваша АТС приняла запрос (HTTP 200) в 2026-03-07 10:20:31."
    assert russian[2]["outcome"] == "Не доставлено вашей АТС: она ответила HTTP 503"


def test_no_requests_yet(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    assert page.get("/originations").json()["originations"] == []
    assert page.state["messages"]["no_originations"] == (
        "No click-to-call or callback requests yet."
    )


# --- external lines -------------------------------------------------------------------------------


def test_lines_are_listed_and_added(live_app: LiveApp):
    portal = live_app.install("alpha")
    admin = open_page(live_app, portal)
    employee = open_page(live_app, portal, user_id=EMPLOYEE, lang="ru")
    assert admin.get("/lines").json() == {"ok": True, "lines": []}

    added = admin.post("/lines", {"NUMBER": " 74951234567 ", "NAME": "Main office"})

    assert added.status_code == 200, added.text
    assert added.json()["added"] is True
    assert added.json()["message"] == "Line 74951234567 added."
    line = {"NUMBER": "74951234567", "NAME": "Main office", "CRM_AUTO_CREATE": "Y"}
    assert added.json()["lines"] == [line]
    assert live_app.dev.portals["alpha"].lines["74951234567"]["NAME"] == "Main office"
    assert employee.get("/lines").json()["lines"] == [line]  # everyone sees them

    again = open_page(live_app, portal, lang="ru").post("/lines", {"NUMBER": "74951234567"})

    assert again.status_code == 200, again.text
    assert again.json()["added"] is False
    assert again.json()["message"] == (
        "Линия 74951234567 уже есть на этом портале: ничего не изменилось."
    )
    assert again.json()["lines"] == [line]


@pytest.mark.parametrize(
    ("body", "field", "english", "russian"),
    [
        (
            {"NUMBER": "   "},
            "line_number",
            "A line number is 1–64 visible characters, such as 74951234567.",
            "Номер линии — от 1 до 64 видимых символов, например 74951234567.",
        ),
        (
            {"NUMBER": "7" * 65},
            "line_number",
            "A line number is 1–64 visible characters, such as 74951234567.",
            "Номер линии — от 1 до 64 видимых символов, например 74951234567.",
        ),
        (
            {"NUMBER": "74951234567", "NAME": "x" * 256},
            "line_name",
            "A line's name is at most 255 characters.",
            "Название линии — не более 255 символов.",
        ),
    ],
)
def test_a_line_b24app_refuses_is_named_and_nothing_is_added(
    live_app: LiveApp, body: dict[str, str], field: str, english: str, russian: str
):
    portal = live_app.install("alpha")
    for lang, text in (("en", english), ("ru", russian)):
        [error] = errors(open_page(live_app, portal, lang=lang).post("/lines", body))
        assert error == {"field": field, "message": text}
    assert live_app.dev.portals["alpha"].lines == {}


def test_when_bitrix24_cannot_be_asked_the_lines_say_so(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    faults.set_outage(live_app.dev, portal, "503")

    listed = page.get("/lines")
    added = page.post("/lines", {"NUMBER": "74951234567"})

    assert listed.status_code == 502
    assert listed.json()["error"]["message"].startswith("Битрикс24 не ответил")
    assert added.status_code == 502
    faults.clear(live_app.dev, portal)
    assert page.get("/lines").json()["lines"] == []
