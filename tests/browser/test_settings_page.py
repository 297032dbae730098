"""The settings page in chromium, inside the development portal's shell, as a portal's admin and
a plain employee meet it in Bitrix24: a cross-origin iframe, BX24.js over postMessage, no
cookies. Screenshots of each state go to test-artifacts/screenshots/."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import requests
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from playwright.sync_api import FloatRect, Frame, Locator, Page, Route

from b24app.db import get_db
from b24app.delivery.retry import RetryPolicy
from b24app.delivery.worker import Worker
from b24app.portals import pbx_keys, store
from b24app.settings_page import page_token
from b24app.wiring import current_store
from devportal.state import DevPortal
from tests.browser.conftest import Screenshot
from tests.conftest import TEST_CLIENT_ID, LiveApp


def open_in_shell(page: Page, live: LiveApp, portal: DevPortal, query: str = "") -> Frame:
    """Open the shell of `portal`, click our app's card, and return the settings page's frame
    once the page has rendered and the employees are loaded."""
    page.goto(f"{live.dev.base_url}/p/{portal.code}/{query}")
    page.locator(f'article[data-client-id="{TEST_CLIENT_ID}"] button').click()
    page.wait_for_function("() => window.bx24Shell.frame && window.bx24Shell.frame.page === 'app'")
    handle = page.wait_for_selector('iframe.app-frame[data-page="app"]')
    frame = handle.content_frame()
    assert frame is not None
    # functions, not expressions: Playwright evaluates a polled expression with eval(), which
    # the page's CSP forbids (as it should)
    frame.wait_for_function("() => document.body && document.body.dataset.ready === '1'")
    frame.wait_for_selector("#employees-state", state="detached")
    return frame


def in_viewport(page: Page, box: FloatRect | None) -> bool:
    """Whether `box` (page coordinates, as Playwright gives them for any frame) is wholly inside
    the browser's window: what the admin sees without scrolling."""
    size = page.viewport_size
    assert box is not None and size is not None
    return (
        box["y"] >= 0
        and box["x"] >= 0
        and box["y"] + box["height"] <= size["height"]
        and box["x"] + box["width"] <= size["width"]
    )


IN_VIEW_WITHIN = 1.0  # s: how soon a toast or a question must be where the admin looks


def comes_into_view(page: Page, what: Locator, name: str) -> None:
    """`what` is wholly inside the browser's window within IN_VIEW_WITHIN seconds of appearing
    (the page places it by which part of it is on the screen, measured as the window scrolls)."""
    deadline = time.monotonic() + IN_VIEW_WITHIN
    box = what.bounding_box()
    while not in_viewport(page, box) and time.monotonic() < deadline:
        page.wait_for_timeout(50)
        box = what.bounding_box()
    assert in_viewport(page, box), f"{name} out of view: {box} in {page.viewport_size}"


def flash(frame: Frame, text: str) -> Locator:
    """Wait for the UI kit's toast that says `text` (a confirmation, or a failure) and check
    that it appeared where the admin looks: inside the browser's window, wherever the portal's
    page is scrolled (issue 14 item 2)."""
    toast = frame.locator('li[data-slot="base"]').filter(has_text=text).last
    toast.wait_for()
    frame.wait_for_function(  # the toast slides in: measure it where it stops
        "t => [...document.querySelectorAll('li[data-slot=base]')].some(n => "
        "n.textContent.includes(t) && !n.getAnimations().some(a => a.playState === 'running'))",
        arg=text,
    )
    comes_into_view(frame.page, toast, f"toast {text!r}")
    return toast


def dialog(frame: Frame) -> Locator:
    """The open confirmation (the UI kit's modal), checked to be inside the browser's window."""
    modal = frame.get_by_role("dialog")
    modal.wait_for()
    frame.wait_for_function(
        "() => { const d = document.querySelector('[role=dialog]'); "
        "return d && !d.getAnimations().some(a => a.playState === 'running'); }"
    )
    comes_into_view(frame.page, modal, "the confirmation")
    return modal


def choose(frame: Frame, select_id: str, text: str) -> None:
    """Pick `text` in the UI kit's searchable select `select_id`: open it, search for it when
    it is not among the options shown (a long list shows a window of them), and click it."""
    frame.click(f"#{select_id}")
    frame.get_by_role("listbox").wait_for()
    option = frame.get_by_role("option", name=text, exact=True)
    if not option.count():
        frame.page.keyboard.type(text)  # into the select's search field, which has the focus
    option.first.wait_for()
    option.first.dispatch_event("click")  # the list floats over the fitted frame's edge
    frame.get_by_role("listbox").wait_for(state="detached")


def field_error(frame: Frame, input_id: str) -> str:
    """The error the UI kit's form field shows under the control `input_id`."""
    error = frame.locator(f'[data-slot="root"]:has(#{input_id}) [data-slot="error"]').first
    error.wait_for()
    return error.inner_text().strip()


def stored(live: LiveApp, portal: DevPortal, read: Callable[..., object]) -> object:
    with live.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        return read(row)


def test_an_admin_configures_b24app_and_sees_the_call_in_the_journal(
    shell_app: LiveApp, page: Page, screenshot: Screenshot
):
    portal = shell_app.dev.add_portal("alpha")
    page.goto(f"{shell_app.dev.base_url}/p/alpha/")
    frame = open_in_shell(page, shell_app, portal)  # installs, installFinish(), opens the page
    assert frame.locator("html").get_attribute("lang") == "en"
    frame_box = page.locator("iframe.app-frame").bounding_box()
    content = frame.evaluate("() => document.documentElement.scrollHeight")
    assert frame_box is not None and frame_box["height"] >= content - 2  # BX24.fitWindow()
    screenshot(page, "1-admin-en")

    # map an extension: type it, find the employee in the searchable select
    frame.fill("#add-extension", "201")
    choose(frame, "add-user", "Clara Support (#3)")
    frame.click("#add-save")
    flash(frame, "Extension 201 now goes to Clara Support (#3).")
    assert frame.inner_text('tr:has([data-extension="201"])').startswith("201")
    frame.fill("#mapping-search", "clara")
    assert frame.locator("#mapping-table tr:has([data-extension])").count() == 1
    frame.fill("#mapping-search", "nobody")
    assert "Nothing matches the search." in frame.inner_text("#mapping-table")
    frame.fill("#mapping-search", "")
    screenshot(page, "2-mapped")

    # set the currency
    choose(frame, "currency", "EUR")
    frame.click("#defaults-save")
    flash(frame, "Saved.")
    assert stored(shell_app, portal, lambda p: p.settings.currency) == "EUR"

    # rotate the key, with the confirmation
    old_key = stored(shell_app, portal, lambda p: pbx_keys.reveal(p.settings, current_store().box))
    frame.click("#key-rotate")
    assert "The current key stops working within 5 seconds" in dialog(frame).inner_text()
    screenshot(page, "3-rotate-confirm")
    frame.click("#rotate-yes")
    flash(frame, "New key made.")
    new_key = frame.input_value("#pbx-key")
    assert new_key.startswith("b24pbx_") and new_key != old_key
    assert stored(
        shell_app, portal, lambda p: pbx_keys.reveal(p.settings, current_store().box)
    ) == (new_key)
    assert new_key in frame.inner_text("#example-curl")  # ready to paste
    screenshot(page, "4-new-key")

    # the PBX sends a call with the key from the page; the worker delivers it
    sent = requests.post(
        f"{shell_app.url}/pbx/v1/calls/finish",
        headers={"Authorization": f"Bearer {new_key}"},
        json={
            "PBX_CALL_ID": "browser-1",
            "USER_PHONE_INNER": "201",
            "PHONE_NUMBER": "+74951234567",
            "TYPE": 2,
            "CALL_START_DATE": "2026-03-07T10:20:30",
            "DURATION": 42,
            "COST": 2.5,
            "STATUS_CODE": "ANSWER",
        },
        timeout=30,
    )
    assert sent.status_code == 202, sent.text
    worker = Worker(shell_app.app, policy=RetryPolicy(), idle_sleep=0.05)
    assert worker.run(once=True) == Counter(delivered=1)
    assert portal.statistics[-1]["_params"]["USER_ID"] == "3"
    assert portal.statistics[-1]["_params"]["COST_CURRENCY"] == "EUR"

    frame.click("#journal-refresh")
    row = frame.locator('#journal-table tr:has([data-state="delivered"][data-call])')
    row.wait_for()
    assert "Clara Support (#3)" in row.inner_text()
    assert "Finished in Bitrix24." in row.inner_text()
    assert "2026-03-07 10:20:30" in row.inner_text()  # when the call started, in the zone shown
    assert frame.inner_text("#journal-zone").startswith("Times in UTC")
    assert frame.inner_text("#health-last") != "none yet"
    screenshot(page, "5-journal")


def test_a_non_admin_sees_the_read_only_view(
    shell_app: LiveApp, page: Page, screenshot: Screenshot
):
    portal = shell_app.install("alpha")
    frame = open_in_shell(page, shell_app, portal, "?as_user=2")  # Boris is not an admin

    assert frame.is_visible("#readonly-notice")
    assert "Only administrators of this Bitrix24" in frame.inner_text("#readonly-notice")
    assert frame.eval_on_selector("#defaults fieldset", "f => f.disabled") is True
    assert frame.is_disabled("#currency")
    for section in ("#connection", "#journal", "#mapping-add", "#defaults-save"):
        assert frame.locator(section).count() == 0, section
    screenshot(page, "read-only")


def _forge_token(route: Route, token: str) -> None:
    route.continue_(headers={**route.request.headers, "x-page-token": token})


class _LongAgo(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - page_token.LIFETIME - 60


def test_a_forged_or_expired_page_token_is_refused(
    shell_app: LiveApp, page: Page, screenshot: Screenshot
):
    portal = shell_app.install("alpha")
    frame = open_in_shell(page, shell_app, portal)
    forged = page_token.issue(
        "a-key-we-do-not-use", page_token.Viewer(portal.member_id, 1, True, "en")
    )
    page.route(f"{shell_app.url}/app/api/**", lambda route: _forge_token(route, forged))

    choose(frame, "timezone", "Europe/Moscow")
    frame.click("#defaults-save")

    flash(frame, "The page's session is not valid. Open the application again in Bitrix24.")
    assert stored(shell_app, portal, lambda p: p.settings.timezone) == "UTC"
    screenshot(page, "forged")

    page.unroute(f"{shell_app.url}/app/api/**")
    claims = {"m": portal.member_id, "u": 1, "a": True, "l": "en"}
    secret = shell_app.app.config["SECRET_KEY"]
    expired = URLSafeTimedSerializer(secret, salt=page_token.SALT, signer=_LongAgo).dumps(claims)
    page.route(f"{shell_app.url}/app/api/**", lambda route: _forge_token(route, expired))
    frame.click("#defaults-save")
    flash(frame, "The page has been open too long and its session has expired.")
    assert stored(shell_app, portal, lambda p: p.settings.timezone) == "UTC"
    screenshot(page, "expired")


def test_the_page_in_russian(shell_app: LiveApp, page: Page, screenshot: Screenshot):
    portal = shell_app.install("alpha")
    frame = open_in_shell(page, shell_app, portal, "?lang=ru")

    assert frame.locator("html").get_attribute("lang") == "ru"
    assert frame.inner_text("#journal-title") == "Журнал звонков"
    assert frame.inner_text("#defaults-save") == "Сохранить"
    frame.fill("#add-extension", "20 1")
    choose(frame, "add-user", "Boris Sales (#2)")
    frame.click("#add-save")
    assert field_error(frame, "add-extension").startswith("Добавочный номер — от 1 до 32")
    assert frame.get_attribute("#add-extension", "aria-invalid") == "true"
    screenshot(page, "ru")
