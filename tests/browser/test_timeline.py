"""A call's timeline in chromium, inside the development portal's shell (issue 12 item 5): the
admin opens a call in the journal, reads each event's state, Bitrix24's CALL_ID, the CRM entity
and the recording's state, and delivers one failed event again."""

from __future__ import annotations

from playwright.sync_api import Page

from b24app.models import utcnow
from tests.browser.conftest import Screenshot
from tests.browser.test_settings_page import flash, open_in_shell
from tests.conftest import LiveApp
from tests.settings_page.conftest import Event, event_rows, insert_call


def test_an_admin_opens_a_calls_timeline_and_delivers_one_event_again(
    shell_app: LiveApp, page: Page, screenshot: Screenshot
):
    portal = shell_app.dev.add_portal("alpha")
    frame = open_in_shell(page, shell_app, portal)  # installs, installFinish(), opens the page
    public_id, (_, _, transfer, _, _) = insert_call(
        shell_app,
        portal,
        "browser-timeline-1",
        [
            Event("start", {"PHONE_NUMBER": "+74951234567", "TYPE": 2, "LINE_NUMBER": "8800"}),
            Event("ring", {"USER_ID": [2, 3]}),
            Event("answer", {"USER_ID": 7}, state="failed", error="User 7 is not active"),
            Event("finish", {"DURATION": 42, "STATUS_CODE": "200", "USER_ID": 3}),
            Event(
                "record",
                {"FILENAME": "browser-timeline-1.mp3"},
                state="queued",
                recording={
                    "state": "stored",
                    "filename": "browser-timeline-1.mp3",
                    "audio": "mp3",
                    "size": 1_258_291,
                },
            ),
        ],
        state="failed",
        bitrix_call_id="externalCall.browser1",
        crm_entity_type="CONTACT",
        crm_entity_id=12,
        delivered_at=utcnow(),
    )

    frame.click("#journal-refresh")
    row = frame.locator(f'#journal-table tr:has([data-call="{public_id}"])')
    row.wait_for()
    assert "Clara Support (#3)" in row.inner_text()  # the finish's USER_ID, by name
    toggle = row.locator(".timeline-toggle")
    assert toggle.get_attribute("aria-expanded") == "false"
    toggle.click()
    timeline = frame.locator(f"#timeline-{public_id}")
    timeline.wait_for()
    assert toggle.get_attribute("aria-expanded") == "true"

    events = timeline.locator("li.event")
    assert events.count() == 5
    assert [events.nth(n).get_attribute("data-state") for n in range(5)] == [
        "delivered",
        "delivered",
        "failed",
        "delivered",
        "queued",
    ]
    text = timeline.inner_text()
    assert "Bitrix24 CALL_ID: externalCall.browser1" in text
    assert "CRM: Contact 12" in text
    assert "Boris" in events.nth(1).inner_text() and "Clara" in events.nth(1).inner_text()
    assert "User 7 is not active" in events.nth(2).inner_text()
    assert "Recording: Stored, to be attached to the call · mp3 · 1.2 MB" in text
    screenshot(page, "timeline")

    events.nth(2).get_by_role("button", name="Deliver again: Answered").click()

    flash(frame, "The event is queued and will be sent again shortly.")
    frame.locator(
        f'#timeline-{public_id} li[data-event="{transfer}"][data-state="queued"]'
    ).wait_for()
    assert frame.is_visible(f"#timeline-{public_id}")  # still open after the journal reloaded
    assert event_rows(shell_app, public_id)[1][transfer] == ("queued", None)
    screenshot(page, "timeline-event-queued")
