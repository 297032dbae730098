"""The journal's "Deliver all failed again…" in chromium, as a portal's admin uses it: ask,
confirm, read how many went, and see the calls waiting again (issue 9 item 3)."""

from __future__ import annotations

from collections import Counter

import requests
from playwright.sync_api import Page

from b24app.delivery.worker import Worker
from b24app.portals import pbx_keys
from b24app.wiring import current_store
from tests.browser.conftest import Screenshot
from tests.browser.test_settings_page import dialog, flash, open_in_shell, stored
from tests.conftest import LiveApp


def test_an_admin_delivers_all_failed_calls_again(
    shell_app: LiveApp, page: Page, screenshot: Screenshot
):
    portal = shell_app.dev.add_portal("alpha")
    frame = open_in_shell(page, shell_app, portal)  # installs, installFinish(), opens the page
    key = stored(shell_app, portal, lambda p: pbx_keys.reveal(p.settings, current_store().box))
    for n in range(2):  # nobody has extension 555 and there is no fallback employee
        sent = requests.post(
            f"{shell_app.url}/pbx/v1/calls/finish",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "PBX_CALL_ID": f"browser-failed-{n}",
                "USER_PHONE_INNER": "555",
                "PHONE_NUMBER": "+74951234567",
                "TYPE": 2,
                "CALL_START_DATE": "2026-03-07T10:20:30",
                "DURATION": 42,
                "STATUS_CODE": "ANSWER",
            },
            timeout=30,
        )
        assert sent.status_code == 202, sent.text
    assert Worker(shell_app.app, idle_sleep=0.05).run(once=True) == Counter(failed=2)

    frame.click("#journal-refresh")
    frame.locator('#journal-table [data-call][data-state="failed"]').first.wait_for()
    frame.click("#redeliver-all")
    assert "Each is sent at most once" in dialog(frame).inner_text()
    screenshot(page, "deliver-all-failed-confirm")
    frame.click("#redeliver-yes")

    flash(frame, "Failed calls queued to be sent again shortly: 2.")
    frame.get_by_role("dialog").wait_for(state="detached")
    frame.locator('#journal-table [data-call][data-state="queued"]').nth(1).wait_for()
    assert frame.locator('#journal-table [data-call][data-state="failed"]').count() == 0
    screenshot(page, "deliver-all-failed-done")
