"""The call journal, "deliver again", health, and the end-to-end promise: what the admin sets
on the page is what the delivery sends to Bitrix24. Calls come in through the real PBX intake
and go out through the real worker, to the development portal. SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from b24app.db import get_db
from b24app.delivery.retry import OUTCOME_UNKNOWN, RetryPolicy
from b24app.delivery.worker import Worker
from b24app.models import Call, CallEvent, CallState, EventState, PortalStatus, utcnow
from b24app.portals import store
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.settings_page.conftest import Page, open_page, send_call

POLICY = RetryPolicy()


def deliver(live: LiveApp) -> Counter[str]:
    """`worker --once`: what is due now goes to Bitrix24."""
    return Worker(live.app, policy=POLICY, idle_sleep=0.05).run(once=True)


def incoming(pbx_call_id: str, **fields: Any) -> dict[str, Any]:
    """A call the PBX never registered, as the Asterisk example sends it."""
    return {
        "PBX_CALL_ID": pbx_call_id,
        "PHONE_NUMBER": "+74951234567",
        "TYPE": 2,
        "CALL_START_DATE": "2026-03-07T10:20:30",
        "DURATION": 30,
        "STATUS_CODE": "ANSWER",
        **fields,
    }


def accepted(live: LiveApp, portal: Any, **fields: Any) -> str:
    answer = send_call(live, portal, **fields)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def journal(page: Page, show: str = "all") -> list[dict[str, Any]]:
    answer = page.get("/calls", show=show)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["calls"])


def stored_call(live: LiveApp, public_id: str) -> Call:
    with live.app.app_context(), get_db().read() as session:
        return session.scalars(select(Call).where(Call.public_id == public_id)).one()


def test_settings_changed_on_the_page_are_the_ones_the_delivery_uses(live_app: LiveApp):
    """End to end: page → database → PBX intake → worker → telephony.externalCall.finish."""
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    changed = page.post(
        "/settings",
        {"settings": {"currency": "EUR", "add_to_chat": True, "timezone": "Europe/Moscow"}},
    )
    assert changed.status_code == 200, changed.text
    assert page.post("/mapping", {"extension": "201", "user_id": 3}).status_code == 200

    call_id = accepted(live_app, portal, **incoming("e2e-1", USER_PHONE_INNER="201", COST=1.25))
    assert deliver(live_app) == Counter(delivered=1)

    (record,) = portal.statistics
    sent = record["_params"]  # exactly what telephony.externalCall.finish received
    assert sent["USER_ID"] == "3"  # Clara, through the page's mapping
    assert sent["COST_CURRENCY"] == "EUR"  # the page's currency, the PBX sent none
    assert sent["ADD_TO_CHAT"] == "1"
    assert record["_call_start_date"] == "2026-03-07T10:20:30+03:00"  # the page's time zone
    assert record["PORTAL_USER_ID"] == 3
    (row,) = journal(page)
    assert row["id"] == call_id
    assert row["state"] == "delivered" and row["outcome"] == "Finished in Bitrix24."
    assert row["employee_id"] == 3 and row["extension"] == "201"
    assert row["answer"]["COST_CURRENCY"] == "EUR"
    assert row["status_code"] == "200" and row["status_text"] == "answered"


def test_a_failed_call_says_why_and_is_delivered_again_after_the_fix(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    call_id = accepted(live_app, portal, **incoming("fix-1", USER_PHONE_INNER="555"))
    deliver(live_app)  # nobody has 555 in the profile: Bitrix24 finds no user

    (row,) = journal(page, "failed")
    assert row["state"] == "failed" and row["state_text"] == "Ошибка"
    assert row["outcome"].startswith("В Битрикс24 нет работающего сотрудника")
    assert "User is not found" in row["error"]  # Bitrix24's own words, kept
    assert row["can_retry"] is True
    attempts = row["attempts"]

    page.post("/mapping", {"extension": "555", "user_id": 2})
    again = page.post(f"/calls/{call_id}/deliver-again")

    assert again.status_code == 200 and again.json()["state"] == "queued"
    stored = stored_call(live_app, call_id)
    assert stored.state == CallState.QUEUED and stored.error is None and stored.error_code is None
    assert attempts > 0 and stored.attempts == 0  # the retry limits count anew
    assert stored.next_attempt_at <= utcnow()
    (waiting,) = journal(page)
    assert waiting["outcome"] == "Ожидает отправки в Битрикс24." and not waiting["can_retry"]
    assert waiting["employee_id"] == 2  # who it will go to, with today's mapping

    assert deliver(live_app) == Counter(delivered=1)
    assert portal.statistics[-1]["_params"]["USER_ID"] == "2"
    assert journal(page, "failed") == []


def test_only_failed_calls_of_this_portal_can_be_delivered_again(live_app: LiveApp):
    alpha = live_app.install("alpha")
    beta = live_app.install("beta")
    page = open_page(live_app, alpha)
    delivered = accepted(live_app, alpha, **incoming("ok-1", USER_ID=1))
    betas = accepted(live_app, beta, **incoming("beta-1", USER_PHONE_INNER="555"))
    deliver(live_app)

    refused = page.post(f"/calls/{delivered}/deliver-again")
    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == "Only calls that failed can be delivered again."
    assert page.post(f"/calls/{betas}/deliver-again").status_code == 404  # beta's call
    assert page.post("/calls/nope/deliver-again").status_code == 404
    assert stored_call(live_app, betas).state == CallState.FAILED


def test_a_call_with_an_unknown_outcome_is_looked_up_before_it_is_sent_again(live_app: LiveApp):
    """finish is not idempotent: a failed call whose last attempt went unanswered keeps that
    mark when requeued, so the worker checks Bitrix24's statistics first."""
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    call_id = accepted(live_app, portal, **incoming("unk-1", USER_ID=1))
    with live_app.app.app_context(), get_db().write() as session:
        session.execute(
            update(Call)
            .where(Call.public_id == call_id)
            .values(state=CallState.FAILED, error_code=OUTCOME_UNKNOWN, error="no answer")
        )
        session.execute(  # the call's one event, its finish, failed the same way
            update(CallEvent)
            .where(CallEvent.call_id.in_(select(Call.id).where(Call.public_id == call_id)))
            .values(state=EventState.FAILED, error_code=OUTCOME_UNKNOWN, error="no answer")
        )

    assert page.post(f"/calls/{call_id}/deliver-again").status_code == 200

    assert stored_call(live_app, call_id).error_code == OUTCOME_UNKNOWN
    (row,) = journal(page)
    assert "never finished twice" in row["outcome"]


def test_journal_filters_failed_waiting_and_today(live_app: LiveApp):
    """Newest first by the call's start; `today` is since midnight in the portal's zone."""
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    page.post("/settings", {"settings": {"timezone": "Asia/Vladivostok"}})
    now = utcnow()
    ok = accepted(live_app, portal, **incoming("f-ok", USER_ID=1, CALL_START_DATE=iso(now, -2)))
    bad = accepted(
        live_app, portal, **incoming("f-bad", USER_PHONE_INNER="555", CALL_START_DATE=iso(now, -1))
    )
    old = accepted(live_app, portal, **incoming("f-old", USER_ID=2, CALL_START_DATE=iso(now, -49)))
    assert [r["id"] for r in journal(page, "waiting")] == [bad, ok, old]
    deliver(live_app)

    assert [r["id"] for r in journal(page)] == [bad, ok, old]  # newest start first
    assert [r["id"] for r in journal(page, "failed")] == [bad]
    assert journal(page, "waiting") == []
    midnight = now.astimezone(ZoneInfo("Asia/Vladivostok")).replace(hour=0, minute=0, second=0)
    started_today = [c for c, h in ((bad, -1), (ok, -2)) if now + timedelta(hours=h) >= midnight]
    assert [r["id"] for r in journal(page, "today")] == started_today
    assert page.get("/calls", show="anything").json()["show"] == "all"


def iso(now: datetime, hours: float) -> str:
    """`now` moved by `hours`, with its offset (the PBX says when the call started)."""
    return (now + timedelta(hours=hours)).isoformat(timespec="seconds")


def test_health_shows_the_queue_the_last_delivery_and_failures(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    assert page.state["health"]["last_delivered_at"] is None
    assert page.state["health"]["action"] == "Nothing to do."
    accepted(live_app, portal, **incoming("h-1", USER_ID=1))
    accepted(live_app, portal, **incoming("h-2", USER_PHONE_INNER="555"))

    before = page.get("/calls").json()["health"]
    assert before["queued"] == 2 and before["failed_24h"] == 0 and before["failed"] == 0
    deliver(live_app)
    after = page.get("/state").json()["health"]

    assert after["queued"] == 0 and after["failed_24h"] == 1 and after["failed"] == 1
    assert after["last_delivered_at"] is not None
    assert after["status"] == "active" and "Nothing to do" not in after["action"]
    assert after["action"].startswith("Calls that failed: 1. Fix the cause, then deliver them")
    assert (after["failures"][0]["code"], after["failures"][0]["count"]) == ("USER_NOT_FOUND", 1)


def test_a_portal_needing_reauthorisation_gets_a_link(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    with live_app.app.app_context(), get_db().write() as session:
        store.set_status(store.find_portal(session, portal.member_id), PortalStatus.NEEDS_REAUTH)

    health = page.get("/state").json()["health"]
    assert health["status"] == "needs_reauth" and health["can_reauthorize"] is True
    assert health["action"].startswith("Авторизуйте приложение заново")
    link = page.post("/reauthorize").json()["url"]

    parts = urlsplit(link)
    assert link.startswith(f"{live_app.dev.portal_url(portal)}oauth/authorize/")
    assert parse_qs(parts.query)["client_id"] == [TEST_CLIENT_ID]
    assert parse_qs(parts.query)["state"]
