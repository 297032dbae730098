"""The settings page as an admin and an employee meet it in Bitrix24, at a phone's width (375 px),
a narrow window's (700 px) and a desktop's (1440 px), in English and Russian (issue 14): nothing
wider than the screen (a wide table scrolls inside itself), dates on one line, every confirmation
(a toast) and every question (a modal) inside the browser's window wherever the portal's page is
scrolled, and the page's script breaking no rule of its Content-Security-Policy.

One page load per width and language, as the admin, with a journal of calls, and one more as a
plain employee (the read-only view); each state is photographed into test-artifacts/screenshots/.
The layout does not depend on the database: the widths run on SQLite, and one of them on
PostgreSQL too.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import ConsoleMessage, Frame, Page

from b24app.models import utcnow
from tests.browser.conftest import Screenshot
from tests.browser.test_settings_page import choose, dialog, flash, open_in_shell
from tests.conftest import LiveApp
from tests.settings_page.conftest import Event, insert_call

WIDTHS = (375, 700, 1440)
HEIGHT = 800

WORDS = {
    "en": {
        "saved": "Saved.",
        "copied": "Copied.",
        "new_key": "New key made.",
        "queued": "The call is queued and will be sent again shortly.",
        "all_queued": "Failed calls queued to be sent again shortly: 1.",
        "mapped": "Extension 201 now goes to Clara Support (#3).",
        "reassigned": "Extension 201 now goes to Boris Sales (#2).",
        "removed": "Extension 201 removed.",
        "undo": "Undo",
        "back": "Extension 201 is back: it goes to Boris Sales (#2).",
        "bad_lines": ["Line 3: ", "Line 4: "],
    },
    "ru": {
        "saved": "Сохранено.",
        "copied": "Скопировано.",
        "new_key": "Создан новый ключ.",
        "queued": "Звонок поставлен в очередь и скоро будет отправлен снова.",
        "all_queued": "Звонков с ошибкой поставлено в очередь на повторную отправку: 1.",
        "mapped": "Добавочный номер 201 теперь относится к сотруднику Clara Support (#3).",
        "reassigned": "Добавочный номер 201 теперь относится к сотруднику Boris Sales (#2).",
        "removed": "Добавочный номер 201 удалён.",
        "undo": "Отменить",
        "back": "Добавочный 201 возвращён: он снова у сотрудника Boris Sales (#2).",
        "bad_lines": ["Строка 3: ", "Строка 4: "],
    },
}


def cases() -> list[object]:
    found: list[object] = []
    for width in WIDTHS:
        for lang in ("en", "ru"):
            found.append(pytest.param(width, lang, id=f"{width}-{lang}"))
    return found


def fits(frame: Frame, state: str) -> None:
    """Nothing wider than the frame: a table too wide scrolls inside itself, the page does not."""
    widths = frame.evaluate("() => [document.scrollingElement.scrollWidth, innerWidth]")
    assert widths[0] <= widths[1], f"{state}: the page is {widths[0]} px wide in {widths[1]} px"


def one_line(frame: Frame, selector: str) -> None:
    """Each date of `selector` on one line (issue 14 item 1: at 700 px dates broke in two)."""
    heights = frame.eval_on_selector_all(
        selector,
        "nodes => nodes.map(n => [n.textContent, n.getClientRects().length, "
        "n.getBoundingClientRect().height, parseFloat(getComputedStyle(n).lineHeight)])",
    )
    assert heights
    for text, rects, height, line in heights:
        assert rects == 1 and height <= line * 1.5, f"{text!r} breaks across lines"


def scroll_to(frame: Frame, selector: str) -> None:
    """Scroll the portal's page (not the frame: it is as tall as its content) so that
    `selector` is at the top of the window, the rest of the page above it out of view."""
    frame.locator(selector).first.scroll_into_view_if_needed()
    box = frame.locator(selector).first.bounding_box()
    assert box is not None
    frame.page.evaluate("dy => scrollBy(0, dy - 20)", box["y"])


def journal_calls(live: LiveApp, portal: object) -> str:
    """A delivered call and two failed ones; the newest, with its timeline, is delivered again
    by itself, then the other with "Deliver all failed again"."""
    insert_call(
        live,
        portal,
        "layout-ok",
        [
            Event("start", {"PHONE_NUMBER": "+74951112233", "TYPE": 1, "USER_ID": 3}),
            Event("finish", {"DURATION": 61, "STATUS_CODE": "200", "USER_ID": 3}),
        ],
        state="delivered",
        bitrix_call_id="externalCall.layout-ok",
        delivered_at=utcnow() - timedelta(minutes=4),
    )
    insert_call(
        live,
        portal,
        "layout-failed-2",
        [
            Event(
                "finish",
                {"PHONE_NUMBER": "+79161234567", "TYPE": 2, "DURATION": 3},
                state="failed",
                error_code="NO_USER",
                error="no employee",
            )
        ],
        state="failed",
        error_code="NO_USER",
        error="no employee",
    )
    public_id, _ = insert_call(
        live,
        portal,
        "layout-failed-with-a-long-pbx-call-id-1709884800.42",
        [
            Event("start", {"PHONE_NUMBER": "+74951234567", "TYPE": 2, "LINE_NUMBER": "8800"}),
            Event("ring", {"USER_ID": [2, 3]}),
            Event("answer", {"USER_ID": 7}, state="failed", error="User 7 is not active"),
            Event("finish", {"DURATION": 42, "STATUS_CODE": "486", "USER_ID": 3}),
        ],
        state="failed",
        error_code="INTERNAL_SERVER_ERROR",
        error="Bitrix24 answered 500",
        bitrix_call_id="externalCall.layout-failed",
        crm_entity_type="CONTACT",
        crm_entity_id=12,
    )
    return public_id


@pytest.mark.parametrize(("width", "lang"), cases())
def test_the_page_fits_and_says_each_change_where_the_admin_looks(
    shell_app: LiveApp,
    page: Page,
    screenshot: Screenshot,
    database_url: str,
    width: int,
    lang: str,
):
    if database_url.startswith("postgresql") and (width, lang) != (375, "ru"):
        pytest.skip("the layout does not depend on the database: one width on PostgreSQL")
    words = WORDS[lang]
    violations: list[str] = []

    def csp(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", csp)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.set_viewport_size({"width": width, "height": HEIGHT})
    portal = shell_app.install("alpha")
    failed_call = journal_calls(shell_app, portal)
    frame = open_in_shell(page, shell_app, portal, f"?lang={lang}")
    frame.locator("#journal-table [data-call]").nth(2).wait_for()
    assert frame.locator("html").get_attribute("lang") == lang
    fits(frame, "admin")
    screenshot(page, "admin")

    # the journal at the bottom of a long page: the top of the frame is far out of view
    scroll_to(frame, "#journal")
    one_line(frame, "#journal-table [data-call] > span")  # the calls' start times
    row = frame.locator(f'#journal-table tr:has([data-call="{failed_call}"])')
    row.locator(".timeline-toggle").click()
    timeline = frame.locator(f"#timeline-{failed_call}")
    timeline.wait_for()
    assert timeline.locator("li.event").count() == 4
    fits(frame, "timeline")
    screenshot(page, "timeline")
    row.locator("td .delivery button").click()  # deliver this call again
    flash(frame, words["queued"])
    frame.locator(f'#journal-table [data-call="{failed_call}"][data-state="queued"]').wait_for()

    # deliver all failed again: asked in a modal in the middle of the window
    frame.click("#redeliver-all")
    dialog(frame)
    fits(frame, "deliver-all-confirm")
    screenshot(page, "deliver-all-confirm")
    frame.click("#redeliver-yes")
    flash(frame, words["all_queued"])

    # the defaults: saved
    scroll_to(frame, "#defaults")
    choose(frame, "currency", "EUR")
    frame.click("#defaults-save")
    flash(frame, words["saved"])

    # the mapping: added; added again to someone else asks first; removed asks and can be undone
    scroll_to(frame, "#mapping-add")
    frame.fill("#add-extension", "201")
    choose(frame, "add-user", "Clara Support (#3)")
    frame.click("#add-save")
    flash(frame, words["mapped"])
    frame.fill("#add-extension", "201")
    choose(frame, "add-user", "Boris Sales (#2)")
    frame.click("#add-save")
    asked = dialog(frame).inner_text()
    assert "Clara Support (#3)" in asked and "Boris Sales (#2)" in asked
    screenshot(page, "reassign-confirm")
    frame.click("#reassign-yes")
    flash(frame, words["reassigned"])
    frame.locator('#mapping-table tr:has([data-extension="201"]) button').last.click()  # Remove
    assert "201" in dialog(frame).inner_text()
    frame.click("#remove-yes")
    toast = flash(frame, words["removed"])
    fits(frame, "removed")
    toast.get_by_role("button", name=words["undo"]).click()
    flash(frame, words["back"])
    assert "Boris Sales (#2)" in frame.inner_text('#mapping-table tr:has([data-extension="201"])')

    # a CSV import shows what is wrong with it, every line, before anything changes
    frame.set_input_files(
        "#import-csv",
        files=[
            {
                "name": "extensions.csv",
                "mimeType": "text/csv",
                "buffer": b"extension,user_id\n201,2\n20 2,3\n203,-1\n",
            }
        ],
    )
    preview = dialog(frame).inner_text()
    for bad in words["bad_lines"]:
        assert bad in preview
    assert frame.is_disabled("#import-yes")
    fits(frame, "import-preview")
    screenshot(page, "import-preview")
    frame.locator("[data-confirm-no]").click()

    # the PBX key: copied, and a new one after the question
    scroll_to(frame, "#connection")
    frame.click('[data-copy="endpoint"]')
    flash(frame, words["copied"])
    frame.click("#key-rotate")
    dialog(frame)
    frame.click("#rotate-yes")
    flash(frame, words["new_key"])
    fits(frame, "admin-after")
    assert violations == []

    # a plain employee: the read-only view
    frame = open_in_shell(page, shell_app, portal, f"?lang={lang}&as_user=2")
    assert frame.locator("#readonly-notice").is_visible()
    fits(frame, "read-only")
    screenshot(page, "read-only")
    assert violations == []
