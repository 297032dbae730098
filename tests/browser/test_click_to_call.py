"""Click-to-call and the callback form in chromium, on the development portal's Telephony page
(devportal/shell.py, static/telephony.js): an employee clicks a CRM contact's number, a client
orders a callback; the app's handlers get ONEXTERNALCALLSTART and ONEXTERNALCALLBACKSTART, and
the page shows them sent without losing what is being typed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from devportal.server import DevportalServer
from devportal.state import DevPortal, DevState, install
from tests.browser.conftest import Screenshot
from tests.conftest import TEST_CLIENT_ID
from tests.devportal.conftest import Rest
from tests.devportal.test_click_to_call import EVENT_WAIT, Handlers, bind, serve_handlers, within

LIVE_WAIT_MS = 12_000  # the page's live parts reload every 5 s, and once 1 s after an action


@pytest.fixture
def portal(dev: DevState) -> DevPortal:
    """Portal "alpha" with our app installed and installFinish()ed (it has no handlers yet)."""
    portal = dev.add_portal("alpha")
    installation, _, _ = install(dev, portal, TEST_CLIENT_ID)
    installation.installed = True
    return portal


@pytest.fixture
def rest(devportal: DevportalServer, dev: DevState, portal: DevPortal) -> Rest:
    token = next(t.token for t in dev.access_tokens.values() if t.member_id == portal.member_id)
    return Rest(devportal.url, portal, token)


@pytest.fixture
def handlers() -> Iterator[Handlers]:
    """The app's event handlers (tests/devportal/test_click_to_call.py)."""
    with serve_handlers() as served:
        yield served


def test_an_employee_clicks_a_number_and_a_client_orders_a_callback(
    devportal: DevportalServer,
    portal: DevPortal,
    rest: Rest,
    handlers: Handlers,
    page: Page,
    screenshot: Screenshot,
) -> None:
    bind(rest, "ONEXTERNALCALLSTART", f"{handlers.url}/events")
    bind(rest, "ONEXTERNALCALLBACKSTART", f"{handlers.url}/events")
    page.goto(f"{devportal.url}/p/alpha/?as_user=2")
    page.get_by_role("link", name="CRM").click()  # the shell's CRM: its contacts
    page.wait_for_url("**/p/alpha/telephony/?as_user=2&lang=en#contacts")
    expect(page.locator("#outgoing-app")).to_have_text(TEST_CLIENT_ID)

    page.get_by_role("button", name="Call +7 495 123-45-67 through the app").click()

    notice = page.locator("#notice")
    expect(notice).to_contain_text(f"Calling +7 495 123-45-67 through {TEST_CLIENT_ID}")
    (clicked,) = within(EVENT_WAIT, lambda: handlers.at("/events"))
    assert clicked.fields["event"] == "ONEXTERNALCALLSTART"
    assert clicked.fields["data[USER_ID]"] == "2"  # Boris, the signed-in employee
    call_id = clicked.fields["data[CALL_ID]"]
    assert call_id in notice.inner_text()
    delivered = page.locator('tr.delivery[data-event="ONEXTERNALCALLSTART"]')
    expect(delivered).to_have_attribute("data-state", "delivered", timeout=LIVE_WAIT_MS)
    expect(page.locator(f'article.call[data-call-id="{call_id}"]')).to_contain_text(
        "clicked by Boris Sales", timeout=LIVE_WAIT_MS
    )
    screenshot(page, "clicked")

    page.fill("#callback-phone", "+1 555 123 4567")
    page.fill("#callback-text", "Please call me about my order")
    page.click("#callback-send")

    expect(notice).to_contain_text("Callback to +1 555 123 4567 ordered")
    ordered = within(EVENT_WAIT, lambda: len(handlers.got) == 2 and handlers.got[1])
    assert ordered.fields["event"] == "ONEXTERNALCALLBACKSTART"
    assert ordered.fields["data[PHONE_NUMBER]"] == "+1 555 123 4567"
    assert ordered.fields["data[TEXT]"] == "Please call me about my order"
    assert ordered.fields["data[CRM_ENTITY_TYPE]"] == "CONTACT"  # John Smith's number
    callback_row = page.locator('tr.delivery[data-event="ONEXTERNALCALLBACKSTART"]')
    expect(callback_row).to_have_attribute("data-state", "delivered", timeout=LIVE_WAIT_MS)
    # the live reload replaced the events, not the form being filled in
    assert page.input_value("#callback-phone") == "+1 555 123 4567"
    screenshot(page, "callback")


def test_in_russian_the_page_says_why_nothing_was_sent(
    devportal: DevportalServer, portal: DevPortal, page: Page, screenshot: Screenshot
) -> None:
    page.goto(f"{devportal.url}/p/alpha/telephony/?lang=ru&refresh=0")

    page.get_by_role("button", name="Позвонить на +1 555 123 4567 через приложение").click()

    notice = page.locator("#notice")
    expect(notice).to_have_text(
        f"У приложения {TEST_CLIENT_ID} нет обработчика ONEXTERNALCALLSTART: ничего не отправлено."
    )
    expect(notice).to_have_class("notice error")
    assert portal.calls == {}
    screenshot(page)
