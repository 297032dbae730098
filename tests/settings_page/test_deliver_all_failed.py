"""The journal's "Deliver all failed again" (issue 9 item 3): an admin's action, confirmed first,
that says how many calls went, and queues each failed call at most once. Over HTTP against our
app, calls through the real PBX intake and the real worker (default settings), to the
development portal; SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter

from b24app.delivery.worker import Worker
from tests.conftest import LiveApp
from tests.delivery.test_redeliver import rejected_user, states
from tests.settings_page.conftest import open_page

ACTION = "/calls/deliver-all-failed"


def deliver(live: LiveApp) -> Counter[str]:
    return Worker(live.app, idle_sleep=0.05).run(once=True)


def test_an_admin_delivers_every_failed_call_again_once_after_confirming(live_app: LiveApp):
    alpha, beta = live_app.install("alpha"), live_app.install("beta")
    page = open_page(live_app, alpha)
    failed = [rejected_user(live_app, alpha, f"all-{n}") for n in range(3)]
    betas = rejected_user(live_app, beta, "beta-1")
    deliver(live_app)

    unconfirmed = page.post(ACTION, {})
    assert unconfirmed.status_code == 422
    assert unconfirmed.json()["errors"][0]["field"] == "confirm"
    assert set(states(live_app).values()) == {"failed"}  # nothing moved

    done = page.post(ACTION, {"confirm": True})
    assert done.status_code == 200, done.text
    assert done.json()["count"] == 3
    assert done.json()["message"] == "Failed calls queued to be sent again shortly: 3."
    assert [states(live_app)[f] for f in failed] == ["queued"] * 3
    assert states(live_app)[betas] == "failed"  # another portal's calls are not this page's

    twice = page.post(ACTION, {"confirm": True})  # a second click queues nothing twice
    assert twice.json()["count"] == 0
    assert twice.json()["message"] == "No failed calls to deliver again."

    page.post("/mapping", {"extension": "555", "user_id": 2})  # the fix
    assert deliver(live_app) == Counter(delivered=3)
    assert [r["EXTERNAL_CALL_ID"] for r in alpha.statistics].count("all-0") == 1


def test_the_count_is_said_in_russian(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    for n in range(2):
        rejected_user(live_app, portal, f"ru-{n}")
    deliver(live_app)

    done = page.post(ACTION, {"confirm": True})

    assert done.json()["message"] == (
        "Звонков с ошибкой поставлено в очередь на повторную отправку: 2."
    )
    assert page.post(ACTION, {}).json()["errors"][0]["message"].startswith("Сначала подтвердите")


def test_only_admins_may_and_the_page_offers_it_to_them(live_app: LiveApp):
    portal = live_app.install("alpha")
    failed = rejected_user(live_app, portal, "emp-1")
    deliver(live_app)
    admin = open_page(live_app, portal)
    employee = open_page(live_app, portal, user_id=2)

    refused = employee.post(ACTION, {"confirm": True})

    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admins_only"
    assert states(live_app)[failed] == "failed"
    # the page offers it in the journal, which only administrators' pages show
    assert admin.state["viewer"]["is_admin"] is True
    assert admin.state["messages"]["redeliver_all"] == "Deliver all failed again…"
    assert employee.state["viewer"]["is_admin"] is False
