"""The settings page's "Click-to-call and callback", "External lines" and "Requests to your PBX"
blocks in chromium, inside the development portal's shell, in English and Russian and in the
read-only view. The PBX is a stand-in of the test's own (tests/settings_page/originate_helpers.py).
Screenshots of each state go to test-artifacts/screenshots/."""

from __future__ import annotations

from datetime import timedelta

from playwright.sync_api import Frame, Page
from standardwebhooks.webhooks import Webhook

from b24app.models import utcnow
from b24app.portals import originate_secret
from b24app.wiring import current_store
from tests.browser.conftest import Screenshot
from tests.browser.test_settings_page import dialog, field_error, flash, open_in_shell, stored
from tests.conftest import LiveApp
from tests.settings_page.originate_helpers import add_origination, stand_in_pbx


def shows(frame: Frame, selector: str, text: str) -> None:
    """Wait until `selector` says exactly `text` (the page fills it in after a request)."""
    frame.wait_for_function(
        "([s, t]) => { const n = document.querySelector(s); return n && !n.hidden && "
        "n.textContent.trim() === t; }",
        arg=[selector, text],
    )


def test_an_admin_connects_click_to_call_and_sends_a_test_call(
    shell_app: LiveApp, page: Page, screenshot: Screenshot
):
    portal = shell_app.install("alpha")
    at = utcnow() - timedelta(minutes=3)
    add_origination(
        shell_app,
        portal,
        kind="call.start",
        payload={"CALL_ID": "externalCall.1", "PHONE_NUMBER": "+74951234567", "USER_ID": "3"},
        state="delivered",
        attempts=1,
        response_status=200,
        response_body='{"status": "dialing"}',
        created_at=at,
        delivered_at=at + timedelta(seconds=1),
    )
    add_origination(
        shell_app,
        portal,
        kind="callback.start",
        payload={"PHONE_NUMBER": "89165550102", "TEXT": "Call the client back"},
        state="failed",
        attempts=5,
        response_status=503,
        error="the PBX answered 503; gave up after 5 attempts in 60 s",
        created_at=at + timedelta(minutes=1),
    )
    frame = open_in_shell(page, shell_app, portal)
    assert frame.inner_text("#originate-title") == "Click-to-call and callback"
    shows(frame, "#lines-state", "This portal has no external lines of this application yet.")
    delivered = frame.locator('#originations-table tr:has([data-state="delivered"])')
    delivered.wait_for()
    assert "Clara Support (#3)" in delivered.inner_text()  # named once the employees load
    assert "Your PBX accepted it (HTTP 200)" in delivered.inner_text()
    failed = frame.inner_text('#originations-table tr:has([data-state="failed"])')
    assert "Callback" in failed and "Call the client back" in failed
    assert "Not delivered to your PBX: it answered HTTP 503" in failed

    # an address that is none: said next to the field
    frame.fill("#originate_url", "pbx.example.com/originate")
    frame.click("#originate-save")
    assert field_error(frame, "originate_url").startswith(
        "Enter the full address of your PBX's webhook"
    )
    assert frame.get_attribute("#originate_url", "aria-invalid") == "true"
    screenshot(page, "1-url-refused")

    with stand_in_pbx() as pbx:
        frame.fill("#originate_url", pbx.url)
        frame.click("#originate-save")
        flash(frame, "Saved.")
        assert frame.is_hidden("#originate_url-error")
        assert stored(shell_app, portal, lambda p: p.settings.originate_url) == pbx.url

        # the secret: hidden, shown, then a new one after the confirmation
        assert frame.input_value("#originate-secret") == "••••••••••••••••"
        assert frame.is_disabled("#secret-copy")
        frame.click("#secret-show")
        frame.wait_for_function(
            "() => document.getElementById('originate-secret').value.startsWith('whsec_')"
        )
        old = frame.input_value("#originate-secret")
        assert old == stored(
            shell_app, portal, lambda p: originate_secret.reveal(p.settings, current_store().box)
        )
        assert frame.is_enabled("#secret-copy")
        frame.click("#secret-rotate")
        assert "Your PBX must be given the new secret" in dialog(frame).inner_text()
        screenshot(page, "2-rotate-confirm")
        frame.click("#secret-yes")
        flash(frame, "New secret made.")
        new = frame.input_value("#originate-secret")
        assert new.startswith("whsec_") and new != old

        # a test call: the PBX's answer on the page, signed with the new secret
        frame.fill("#test_phone_number", "+7 495 123-45-67")
        frame.click("#test-call-send")
        frame.wait_for_selector('#test-answer[data-state="ok"]')
        assert frame.inner_text("#test-answer-text").startswith("Your PBX answered HTTP 200 in ")
        frame.click("#test-answer-details summary")
        assert frame.inner_text("#test-answer-body") == '{"status": "dialing"}'
        [webhook] = pbx.received
        assert Webhook(new).verify(webhook.body, webhook.headers)["type"] == "call.test"
        frame.click("#verify-howto summary")
        assert "pip install standardwebhooks" in frame.inner_text("#verify-howto")
        screenshot(page, "3-test-call")

    # a line added from the page, in Bitrix24 (the development portal) at once
    frame.fill("#line_number", "74951234567")
    frame.fill("#line_name", "Main office")
    frame.click("#line-add-save")
    flash(frame, "Line 74951234567 added.")
    assert frame.inner_text('#lines-table tr:has([data-line="74951234567"])') == (
        "74951234567\tMain office"
    )
    assert portal.lines["74951234567"]["NAME"] == "Main office"
    assert frame.locator("#lines-state").count() == 0
    screenshot(page, "4-lines")


def test_the_block_in_russian(shell_app: LiveApp, page: Page, screenshot: Screenshot):
    portal = shell_app.install("alpha")
    frame = open_in_shell(page, shell_app, portal, "?lang=ru")

    assert frame.inner_text("#originate-title") == "Звонок по клику и обратный звонок"
    assert frame.inner_text("#lines-title") == "Внешние линии"
    assert frame.inner_text("#originations-title") == "Запросы к вашей АТС"
    shows(
        frame, "#originations-table td", "Запросов звонка по клику и обратного звонка пока не было."
    )
    frame.click("#test-call-send")
    frame.wait_for_selector('#test-answer[data-state="failed"]')
    assert frame.inner_text("#test-answer-text") == (
        "Не отправлено: адрес вебхука не задан. Сначала сохраните адрес вебхука вашей АТС."
    )

    with stand_in_pbx() as pbx:
        pbx.status, pbx.answer = 500, '{"error": "no trunk"}'
        frame.fill("#originate_url", pbx.url)
        frame.click("#originate-save")
        flash(frame, "Сохранено.")
        frame.click("#test-call-send")
        frame.wait_for_selector('#test-answer[data-state="failed"] details')
    assert frame.inner_text("#test-answer-text").startswith("Ваша АТС ответила HTTP 500 за ")

    frame.fill("#line_number", " ")
    frame.click("#line-add-save")
    assert field_error(frame, "line_number") == (
        "Номер линии — от 1 до 64 видимых символов, например 74951234567."
    )
    assert frame.get_attribute("#line_number", "aria-invalid") == "true"
    screenshot(page, "ru")


def test_the_read_only_view_shows_no_secret_and_no_actions(
    shell_app: LiveApp, page: Page, screenshot: Screenshot
):
    portal = shell_app.install("alpha")
    portal.lines["74951234567"] = {
        "ID": 1,
        "NUMBER": "74951234567",
        "NAME": "Main office",
        "CRM_AUTO_CREATE": "Y",
        "client_id": next(iter(portal.installations)),
    }
    frame = open_in_shell(page, shell_app, portal, "?as_user=2")  # Boris is not an admin

    assert frame.is_visible("#originate")
    assert frame.inner_text("#secret-exists") == "Set. Only administrators can see it."
    assert frame.get_attribute("#originate_url", "readonly") is not None
    assert frame.inner_text("#originate_url-hint") == "Not set: no webhooks are sent."
    for control in (
        "#originate-save",
        "#originate-secret",
        "#secret-show",
        "#secret-rotate",
        "#test-call-send",
        "#line-add",
        "#originations",
    ):
        assert frame.locator(control).count() == 0, control
    frame.wait_for_selector('#lines-table tr:has([data-line="74951234567"])')
    screenshot(page, "read-only")
