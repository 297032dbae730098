"""The settings page's "send a test call" cannot be used to hold the web threads that every
portal's PBX intake shares (originate/trials.py): one test call in
flight per portal, trials.PER_PORTAL_PER_MINUTE per portal, and at most trials.AT_ONCE in flight
per web process across all portals; beyond each a clear answer and Retry-After."""

from __future__ import annotations

import threading
from typing import Any

import requests

from b24app.originate import trials, webhooks
from tests.conftest import LiveApp
from tests.originate.conftest import wait_for
from tests.settings_page.conftest import Page, open_page
from tests.settings_page.originate_helpers import StandInPbx, stand_in_pbx

HOLD = 3.0  # seconds the slow PBX takes to answer: a test call in flight meanwhile


def post_test(page: Page) -> requests.Response:
    return page.post("/originate/test", {"phone_number": "+7 495 123-45-67"})


class Background:
    """A test call sent from another thread (as from another browser tab)."""

    def __init__(self, page: Page) -> None:
        self.answer: requests.Response | None = None
        self.thread = threading.Thread(target=self._run, args=(page,), daemon=True)
        self.thread.start()

    def _run(self, page: Page) -> None:
        self.answer = post_test(page)

    def result(self) -> requests.Response:
        self.thread.join(webhooks.DEADLINE + webhooks.MARGIN + 5)
        assert self.answer is not None
        return self.answer


def refusal(answer: requests.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    error: dict[str, Any] = answer.json()["error"]
    return error


def slow(pbx: StandInPbx, pages: list[Page]) -> None:
    for page in pages:
        assert page.post("/settings", {"settings": {"originate_url": pbx.url}}).status_code == 200
    pbx.delay = HOLD


def test_a_second_test_call_from_the_same_portal_while_one_runs_is_refused_saying_so(
    live_app: LiveApp,
):
    portal = live_app.install("alpha")
    page, russian = open_page(live_app, portal), open_page(live_app, portal, lang="ru")
    with stand_in_pbx() as pbx:
        slow(pbx, [page])
        first = Background(page)
        wait_for(lambda: len(pbx.received) == 1, 5)
        second = refusal(post_test(page), 429)
        in_russian = refusal(post_test(russian), 429)
        done = first.result()
        pbx.delay = 0
        again = post_test(page)  # the first one over: a new test may go

    assert second["code"] == "test_call_running"
    assert second["message"].startswith("A test call to your PBX is already running.")
    assert in_russian["message"].startswith("Тестовый звонок на вашу АТС уже идёт.")
    assert done.status_code == 200 and done.json()["answer"]["ok"] is True
    assert again.status_code == 200 and again.json()["answer"]["ok"] is True
    assert len(pbx.received) == 2  # the refused ones never reached the PBX


def test_beyond_the_per_process_cap_another_portals_test_call_is_told_to_retry_shortly(
    live_app: LiveApp,
):
    holders = [open_page(live_app, live_app.install(f"p{n}")) for n in range(trials.AT_ONCE)]
    other = open_page(live_app, live_app.install("other"))
    with stand_in_pbx() as pbx:
        slow(pbx, [*holders, other])
        running = [Background(page) for page in holders]
        wait_for(lambda: len(pbx.received) == trials.AT_ONCE, 5)
        busy = post_test(other)
        done = [call.result() for call in running]
        pbx.delay = 0
        later = post_test(other)

    error = refusal(busy, 503)
    assert int(busy.headers["Retry-After"]) <= webhooks.DEADLINE + webhooks.MARGIN
    assert error["code"] == "test_calls_busy"
    assert error["message"] == (
        "b24app is sending other portals' test calls right now. Try again in a few seconds."
    )
    assert all(answer.status_code == 200 for answer in done)
    assert later.status_code == 200 and later.json()["answer"]["ok"] is True
    assert len(pbx.received) == trials.AT_ONCE + 1


def test_a_portal_past_its_test_calls_per_minute_is_refused_and_others_are_not(
    live_app: LiveApp,
):
    page = open_page(live_app, live_app.install("alpha"))
    beta = open_page(live_app, live_app.install("beta"))
    allowed = trials.PER_PORTAL_PER_MINUTE
    with stand_in_pbx() as pbx:
        for each in (page, beta):
            each.post("/settings", {"settings": {"originate_url": pbx.url}})
        answers = [post_test(page) for _ in range(allowed)]
        over = post_test(page)
        other = post_test(beta)

    assert [a.status_code for a in answers] == [200] * allowed
    error = refusal(over, 429)
    assert error["code"] == "test_calls_limited"
    assert error["message"].startswith(f"Too many test calls: at most {allowed} a minute.")
    assert other.status_code == 200
    assert len(pbx.received) == allowed + 1
