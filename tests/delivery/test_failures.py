"""The worker when things go wrong: outages, timeouts, refusals, portals that need their admin.
On SQLite and PostgreSQL, against the development portal's faults (devportal/faults.py).

Pages: _includes/system-errors.md (system errors), limits.md (OPERATION_TIME_LIMIT),
api-reference/telephony/telephony-external-call-finish.md (errors; a second finish is "Call is
not found", tutorials/telephony), api-reference/telephony/voximplant/voximplant-statistic-get.md.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from b24app.db import get_db
from b24app.delivery import deliver
from b24app.delivery.batching import FINISH, REGISTER, STATISTICS
from b24app.delivery.portal_health import REVIVE_EVERY
from b24app.delivery.retry import OUTCOME_UNKNOWN, PORTAL_PAUSED, RetryPolicy
from b24app.models import Call, CallState, PortalStatus, utcnow
from b24app.portals import store
from b24app.wiring import current_store
from devportal import faults
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.delivery.conftest import (
    TEST_POLICY,
    batches,
    calls,
    commands,
    finished_ids,
    finished_requests,
    make_due,
    paused,
    portal_id,
    queue,
    register_on_portal,
    run_worker,
    set_portal,
    unregistered_requests,
    wait_for,
)
from tests.drills.processes import free_port
from tests.settings_page.conftest import open_page


def states(live: LiveApp, ids: list[int]) -> Counter[str]:
    return Counter(row.state for row in calls(live, ids))


def test_an_html_503_pauses_the_portal_without_spending_attempts_until_a_probe_answers(
    live_app: LiveApp,
) -> None:
    """A 503 page without a Bitrix24 error is the portal failing as a whole, and we cannot read
    what it did: it is paused, its calls keep their attempts and are not sent while it is
    paused, and the first probe that gets an answer ends the pause; the calls are looked up,
    then sent, each finished once."""
    portal = live_app.install("alpha")
    registered = register_on_portal(live_app.dev, portal, 10)
    ids = queue(live_app, portal, finished_requests(registered) + unregistered_requests(4))

    faults.set_outage(live_app.dev, portal, "503")
    assert run_worker(live_app.app) == Counter(retrying=14)
    for row in calls(live_app, ids):
        assert row.state == CallState.QUEUED and row.attempts == 0
        assert row.error_code == OUTCOME_UNKNOWN and "HTTP 503" in (row.error or "")
    assert paused(live_app, portal) is not None
    sent = len(batches(live_app.dev, portal))

    assert run_worker(live_app.app, ahead=60) == Counter()  # a probe fails; nothing is sent
    assert len(batches(live_app.dev, portal)) == sent
    assert paused(live_app, portal) is not None

    faults.clear(live_app.dev, portal)
    assert run_worker(live_app.app, ahead=120) == Counter(delivered=14)
    assert paused(live_app, portal) is None
    assert len(commands(live_app.dev, portal, STATISTICS)) == 14
    assert len(portal.statistics) == 14 and set(finished_ids(portal).values()) == {1}
    assert all(row.attempts == 1 for row in calls(live_app, ids))


def test_a_dropped_connection_pauses_and_the_calls_are_looked_up_before_resending(
    live_app: LiveApp,
) -> None:
    """A connection dropped after the request went out may have run: the portal is paused,
    and once it answers the calls are looked up with voximplant.statistic.get first."""
    portal = live_app.install("alpha")
    registered = register_on_portal(live_app.dev, portal, 3)
    ids = queue(live_app, portal, finished_requests(registered) + unregistered_requests(2))

    faults.set_outage(live_app.dev, portal, "reset")
    assert run_worker(live_app.app) == Counter(retrying=5)
    assert {row.error_code for row in calls(live_app, ids)} == {OUTCOME_UNKNOWN}
    assert paused(live_app, portal) is not None

    faults.clear(live_app.dev, portal)
    assert run_worker(live_app.app, ahead=60) == Counter(delivered=5)
    assert len(commands(live_app.dev, portal, STATISTICS)) == 5  # looked up first
    assert len(portal.statistics) == 5 and set(finished_ids(portal).values()) == {1}


def test_a_portal_that_refuses_connections_is_paused_and_never_looked_up(
    live_app: LiveApp,
) -> None:
    """A connection that never opened sent nothing: no attempt spent, no look-up, and another
    portal delivers in the same round as if nothing happened."""
    down = live_app.install("down")
    calm = live_app.install("calm")
    down_ids = queue(live_app, down, unregistered_requests(3))
    calm_ids = queue(live_app, calm, unregistered_requests(3))
    endpoint = point_at_a_dead_port(live_app, down)

    assert run_worker(live_app.app) == Counter(retrying=3, delivered=3)
    assert states(live_app, calm_ids) == Counter({CallState.DELIVERED: 3})
    for row in calls(live_app, down_ids):
        assert row.error_code == PORTAL_PAUSED and row.attempts == 0
        assert "Could not connect" in (row.error or "")

    set_portal(live_app, down, client_endpoint=endpoint)
    assert run_worker(live_app.app, ahead=60) == Counter(delivered=3)
    assert commands(live_app.dev, down, STATISTICS) == []
    assert len(down.statistics) == 3


@pytest.mark.parametrize("spoil", faults.SPOILS)
def test_a_batch_that_ran_then_got_an_unreadable_answer_is_finished_exactly_once(
    live_app: LiveApp, spoil: str
) -> None:
    """Issue 9: the portal ran the batch, then its answer could not be read (a 200 HTML page,
    half the JSON, an HTML 500, a reset). The calls are looked up, found finished, and shown
    delivered; none is registered or finished twice."""
    portal = live_app.install("alpha")
    registered = register_on_portal(live_app.dev, portal, 3)
    ids = queue(live_app, portal, finished_requests(registered) + unregistered_requests(3))
    faults.spoil_answers(live_app.dev, portal, spoil, times=1)  # type: ignore[arg-type]

    assert run_worker(live_app.app) == Counter(retrying=6)
    assert {row.error_code for row in calls(live_app, ids)} == {OUTCOME_UNKNOWN}
    assert len(portal.statistics) == 6  # it did run

    assert run_worker(live_app.app, ahead=60) == Counter(delivered=6)
    assert states(live_app, ids) == Counter({CallState.DELIVERED: 6})
    assert len(commands(live_app.dev, portal, FINISH)) == 6
    assert len(commands(live_app.dev, portal, REGISTER)) == 3
    assert set(finished_ids(portal).values()) == {1} and len(portal.statistics) == 6
    for row in calls(live_app, ids):
        assert row.bitrix_call_id == row.result["CALL_ID"]  # type: ignore[index]


def point_at_a_dead_port(live: LiveApp, portal: Any) -> str:
    """Point our stored address of the portal at a port nobody listens on; return the real one."""
    with live.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        endpoint = row.client_endpoint
    set_portal(live, portal, client_endpoint=f"http://127.0.0.1:{free_port()}/rest/")
    return endpoint


def test_timeout_after_the_portal_finished_the_calls_is_reconciled_not_doubled(
    live_app: LiveApp, short_timeout_app: Flask
) -> None:
    """B24APP_HTTP_TIMEOUT 0.5 s, the portal answers after 1.5 s: the worker gives up waiting,
    yet the portal finishes the calls. The next attempt finds them in the statistics (by CALL_ID,
    and by EXTERNAL_CALL_ID for the calls it registered) and sends no second finish."""
    portal = live_app.install("alpha")
    ids = queue(
        live_app,
        portal,
        finished_requests(register_on_portal(live_app.dev, portal, 4)) + unregistered_requests(2),
    )
    faults.set_latency(live_app.dev, portal, 1.5)
    before = utcnow()
    assert run_worker(short_timeout_app) == Counter(retrying=6)
    for row in calls(live_app, ids):
        assert row.state == CallState.QUEUED and row.error_code == OUTCOME_UNKNOWN
        assert row.attempts == 0  # the portal failed, not the call
        # a request without an answer may still run for up to 60 s: look it up after that
        assert row.next_attempt_at >= before + timedelta(seconds=59)
    assert paused(live_app, portal) is not None
    faults.clear(live_app.dev, portal)  # the portal answers again, still running the batch

    assert run_worker(live_app.app, ahead=5) == Counter()  # probed, but nothing sent early
    assert paused(live_app, portal) is None
    assert commands(live_app.dev, portal, STATISTICS) == []
    wait_for(lambda: len(portal.statistics) == 6)  # the late batch did finish them
    assert run_worker(live_app.app, ahead=61) == Counter(delivered=6)

    assert len(commands(live_app.dev, portal, FINISH)) == 6  # none sent a second time
    assert len(commands(live_app.dev, portal, REGISTER)) == 2
    assert set(finished_ids(portal).values()) == {1}
    for row in calls(live_app, ids):
        assert row.result is not None and row.result["CALL_CATEGORY"] == "external"
        assert row.bitrix_call_id == row.result["CALL_ID"]


def test_call_not_found_right_after_an_unknown_outcome_is_checked_again_not_failed(
    live_app: LiveApp,
) -> None:
    """tutorials/telephony: a finished call is "not found" to finish. After an attempt without
    an answer that most likely means our attempt finished it: the call stays queued and is looked
    up again instead of failing. Without an unknown outcome the same answer fails the call."""
    portal = live_app.install("alpha")
    (registered,) = register_on_portal(live_app.dev, portal, 1)
    (uncertain, unknown_to_bitrix) = queue(
        live_app,
        portal,
        finished_requests([registered]) + finished_requests(["externalCall.0000.1"]),
    )
    with live_app.app.app_context():
        with get_db().write() as session:
            session.execute(
                update(Call).where(Call.id == uncertain).values(error_code=OUTCOME_UNKNOWN)
            )
        finish = {"CALL_ID": registered, "USER_ID": 2}
        current_store().client(portal.member_id).call(
            FINISH, finish
        )  # the attempt that got no answer
    hidden = portal.statistics.pop()  # the statistics do not show it yet

    assert run_worker(live_app.app) == Counter(retrying=1, failed=1)
    (row,) = calls(live_app, [uncertain])
    assert row.state == CallState.QUEUED and row.error_code == OUTCOME_UNKNOWN
    (other,) = calls(live_app, [unknown_to_bitrix])
    assert other.state == CallState.FAILED and other.error_code == "CALL_NOT_FOUND"
    assert "does not know this CALL_ID" in (other.error or "")

    portal.statistics.append(hidden)
    make_due(live_app)
    assert run_worker(live_app.app) == Counter(delivered=1)
    (row,) = calls(live_app, [uncertain])
    assert row.state == CallState.DELIVERED and row.result is not None
    assert row.result["CALL_ID"] == registered
    assert len(portal.statistics) == 1


@pytest.mark.parametrize(
    ("how", "code", "reason"),
    [
        ("uninstall", "UNINSTALLED", "The application was uninstalled from the portal."),
        ("delete", "PORTAL_DELETED", "The portal was deleted or closed."),
    ],
)
def test_a_gone_portal_fails_its_calls_and_leaves_other_portals_alone(
    live_app: LiveApp, how: str, code: str, reason: str
) -> None:
    """on-app-uninstall.md: the app's tokens stop working; _includes/system-errors.md:
    PORTAL_DELETED. Retrying cannot help, so the calls fail at once, in plain words."""
    gone = live_app.install("gone")
    alive = live_app.install("alive")
    gone_ids = queue(live_app, gone, finished_requests(register_on_portal(live_app.dev, gone, 3)))
    alive_ids = queue(live_app, alive, unregistered_requests(3))
    if how == "uninstall":
        live_app.driver.uninstall(gone, TEST_CLIENT_ID)
    else:
        faults.delete_portal(live_app.dev, gone)

    assert run_worker(live_app.app) == Counter(failed=3, delivered=3)

    for row in calls(live_app, gone_ids):
        assert row.state == CallState.FAILED and row.attempts == 1
        assert (row.error_code, row.error) == (code, reason)
    assert states(live_app, alive_ids) == Counter({CallState.DELIVERED: 3})
    assert gone.statistics == []
    if how == "uninstall":
        assert batches(live_app.dev, gone) == []  # known before sending: no request at all


def test_a_portal_waiting_for_its_payment_keeps_its_calls_and_a_probe_finds_it_paid(
    live_app: LiveApp,
) -> None:
    """settings/oauth/error-codes.md: PAYMENT_REQUIRED. The admin can fix it, so the calls wait
    without spending attempts and are not sent meanwhile; a probe every minute finds the portal
    paid, and then they go."""
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, finished_requests(register_on_portal(live_app.dev, portal, 2)))
    faults.lapse_payment(live_app.dev, portal, TEST_CLIENT_ID)

    assert run_worker(live_app.app) == Counter(retrying=2)
    for row in calls(live_app, ids):
        assert row.state == CallState.QUEUED and row.error_code == "PAYMENT_REQUIRED"
        assert "paid period" in (row.error or "") and row.attempts == 0
    sent = len(batches(live_app.dev, portal))
    assert run_worker(live_app.app) == Counter()  # waiting: nothing claimed, nothing sent
    assert len(batches(live_app.dev, portal)) == sent

    faults.lapse_payment(live_app.dev, portal, TEST_CLIENT_ID, lapsed=False)
    assert run_worker(live_app.app, ahead=30) == Counter()  # the next probe is due in 60 s
    assert run_worker(live_app.app, ahead=2 * REVIVE_EVERY + 1) == Counter(delivered=2)
    assert len(portal.statistics) == 2


def test_calls_waiting_for_the_admin_never_fail_for_waiting_and_go_once_reauthorised(
    live_app: LiveApp,
) -> None:
    """Nothing fails for waiting: a portal that needs its admin keeps its calls, however long
    (here: three days); the moment it is active again they are due."""
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, finished_requests(register_on_portal(live_app.dev, portal, 1)))
    set_portal(live_app, portal, status=PortalStatus.NEEDS_REAUTH)
    with live_app.app.app_context(), get_db().write() as session:
        session.execute(
            update(Call).where(Call.id.in_(ids)).values(created_at=utcnow() - timedelta(days=3))
        )
    assert run_worker(live_app.app, ahead=86400) == Counter()
    assert states(live_app, ids) == Counter({CallState.QUEUED: 1})

    set_portal(live_app, portal, status=PortalStatus.ACTIVE)  # what re-authorising does
    assert run_worker(live_app.app) == Counter(delivered=1)


def test_a_call_refused_for_itself_is_retried_until_the_retention_period_then_given_up(
    live_app: LiveApp,
) -> None:
    """INTERNAL_SERVER_ERROR with a Bitrix24 envelope: the request may have run, so each next
    try starts with a look-up, and each spends an attempt; a call still failing after the
    retention period (7 days by default) is given up with the last reason."""
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, finished_requests(register_on_portal(live_app.dev, portal, 2)))
    faults.set_rest_error(live_app.dev, portal, "INTERNAL_SERVER_ERROR")
    assert run_worker(live_app.app) == Counter(retrying=2)
    assert {row.error_code for row in calls(live_app, ids)} == {OUTCOME_UNKNOWN}
    assert paused(live_app, portal) is None  # a Bitrix24 error envelope: the portal answers
    assert run_worker(live_app.app, ahead=3600) == Counter(retrying=2)
    assert run_worker(live_app.app, ahead=8 * 86400) == Counter(failed=2)
    for row in calls(live_app, ids):
        assert row.attempts == 3
        assert (row.error or "").startswith("Gave up after 3 attempts over 8.0 days")
    assert portal.statistics == []


def test_operation_time_limit_waits_until_bitrix24s_reset(live_app: LiveApp) -> None:
    """limits.md: OPERATION_TIME_LIMIT; try again at `operating_reset_at` (the client assumes
    60 s when the answer lacks it). Waiting for limits does not use up attempts."""
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, finished_requests(register_on_portal(live_app.dev, portal, 1)))
    faults.set_rest_error(live_app.dev, portal, "OPERATION_TIME_LIMIT")
    before = utcnow()
    assert run_worker(live_app.app) == Counter(retrying=1)
    (row,) = calls(live_app, ids)
    assert row.error_code == "OPERATION_TIME_LIMIT" and row.attempts == 0
    assert row.next_attempt_at >= before + timedelta(seconds=55)


def test_an_unknown_user_fails_only_that_call(live_app: LiveApp) -> None:
    """finish and register pages: ERROR_CORE "User is not found or is not active". The other
    calls of the same batch are finished."""
    portal = live_app.install("alpha")
    call_ids = register_on_portal(live_app.dev, portal, 3)
    requests = finished_requests(call_ids)
    requests[1]["USER_ID"] = 99
    bad_register = unregistered_requests(1, USER_ID=5)  # Eva: dismissed
    ids = queue(live_app, portal, requests + bad_register + unregistered_requests(1))

    assert run_worker(live_app.app) == Counter(delivered=3, failed=2)

    rows = calls(live_app, ids)
    assert [row.state for row in rows] == [
        "delivered",
        "failed",
        "delivered",
        "failed",
        "delivered",
    ]
    for row in (rows[1], rows[3]):
        assert row.error_code == "USER_NOT_FOUND"
        assert "no active employee" in (row.error or "")
        assert "User is not found or is not active" in (row.error or "")
    assert rows[3].bitrix_call_id is None  # its register failed; nothing was finished
    assert finished_ids(portal) == Counter(
        {call_ids[0]: 1, call_ids[2]: 1, rows[4].bitrix_call_id: 1}
    )


def test_a_call_naming_nobody_fails_without_a_request(live_app: LiveApp) -> None:
    portal = live_app.install("alpha")
    (call_id,) = register_on_portal(live_app.dev, portal, 1)
    ids = queue(live_app, portal, [{"CALL_ID": call_id, "PBX_CALL_ID": "p-1", "DURATION": 3}])
    assert run_worker(live_app.app) == Counter(failed=1)
    (row,) = calls(live_app, ids)
    assert row.error_code == "NO_USER" and "fallback employee" in (row.error or "")
    assert batches(live_app.dev, portal) == []


def test_fallback_user_and_currency_come_from_the_portal_at_delivery(live_app: LiveApp) -> None:
    """Settings are applied when the call is delivered (so fixing one and retrying works)."""
    portal = live_app.install("alpha")
    (call_id,) = register_on_portal(live_app.dev, portal, 1)
    queue(live_app, portal, [{"CALL_ID": call_id, "PBX_CALL_ID": "p-2", "COST": 2.5}])
    set_portal(live_app, portal, fallback_user_id=3, currency="EUR")
    assert run_worker(live_app.app) == Counter(delivered=1)
    (record,) = portal.statistics
    assert record["PORTAL_USER_ID"] == 3 and record["COST_CURRENCY"] == "EUR"
    assert record["_warnings"] == []


def test_register_done_finish_refused_keeps_the_call_id_and_retries_only_finish(
    live_app: LiveApp,
) -> None:
    """limits.md: each method has its own time budget, so in one batch register may run while
    finish answers OPERATION_TIME_LIMIT. The CALL_ID register returned is kept; the retry only
    finishes (a second register would make a second call)."""
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, unregistered_requests(2))
    finish_key = (TEST_CLIENT_ID, FINISH.lower())
    with live_app.dev.lock:
        portal.operating[finish_key] = [(live_app.dev.now(), 1000.0)]

    assert run_worker(live_app.app) == Counter(retrying=2)
    rows = calls(live_app, ids)
    for row in rows:
        assert row.state == CallState.QUEUED and row.error_code == "OPERATION_TIME_LIMIT"
        assert row.bitrix_call_id in portal.calls  # registered, not finished

    with live_app.dev.lock:
        portal.operating.pop(finish_key)
    make_due(live_app)
    assert run_worker(live_app.app) == Counter(delivered=2)
    assert len(commands(live_app.dev, portal, REGISTER)) == 2  # not registered again
    assert sorted(finished_ids(portal)) == sorted(row.bitrix_call_id for row in rows)


def test_one_portal_breaking_the_worker_does_not_stop_the_others(
    live_app: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing raises out of the loop. The broken portal's calls stay leased; when the lease
    runs out they are taken over, looked up, and delivered."""
    broken = live_app.install("broken")
    fine = live_app.install("fine")
    broken_ids = queue(live_app, broken, unregistered_requests(2))
    fine_ids = queue(live_app, fine, unregistered_requests(2))
    original = deliver.load_portal
    broken_pid = portal_id(live_app, broken)

    def flaky(db: Any, pid: int, *args: Any, **kwargs: Any) -> Any:
        if pid == broken_pid:
            raise RuntimeError("a bug")
        return original(db, pid, *args, **kwargs)

    monkeypatch.setattr(deliver, "load_portal", flaky)
    assert run_worker(live_app.app, lease=2.0) == Counter(delivered=2, crashed=2)
    assert states(live_app, fine_ids) == Counter({CallState.DELIVERED: 2})
    assert states(live_app, broken_ids) == Counter({CallState.DELIVERING: 2})

    monkeypatch.setattr(deliver, "load_portal", original)
    # the worker's clock 2.1 s on: the 2 s lease has run out
    assert run_worker(live_app.app, policy=TEST_POLICY, ahead=2.1) == Counter(delivered=2)
    assert len(broken.statistics) == 2


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(base=5.0, cap=900.0)
    rng = random.Random(7)
    for attempts, ceiling in [(1, 5.0), (2, 10.0), (3, 20.0), (8, 640.0), (9, 900.0), (30, 900.0)]:
        waits = [policy.backoff(attempts, rng) for _ in range(50)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert len(set(waits)) > 1  # jittered: calls failing together come back apart


def test_a_departed_employees_call_goes_to_the_fallback_user_and_says_so(live_app: LiveApp) -> None:
    """Issue 9: a USER_ID (or mapped extension) of a dismissed employee is refused with
    "User is not found or is not active"; with a fallback employee the call is finished for
    them in the same worker run, the journal's note says why, and nothing is finished twice."""
    portal = live_app.install("alpha")
    (call_id,) = register_on_portal(live_app.dev, portal, 1)
    ids = queue(
        live_app,
        portal,
        finished_requests([call_id], USER_ID=5) + unregistered_requests(1, USER_ID=5),
    )  # user 5, Eva, is dismissed on the development portal
    set_portal(live_app, portal, fallback_user_id=3)

    assert run_worker(live_app.app) == Counter(retrying=2, delivered=2)  # refused, then sent
    for row in calls(live_app, ids):
        assert row.state == CallState.DELIVERED and row.attempts == 1
        assert "fallback employee (user 3)" in (row.note or "")
        assert "USER_ID 5" in (row.note or "")
    assert {record["PORTAL_USER_ID"] for record in portal.statistics} == {3}
    assert len(portal.statistics) == 2


def test_a_departed_fallback_user_fails_the_call_with_what_to_fix(live_app: LiveApp) -> None:
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, unregistered_requests(1, USER_ID=5))
    set_portal(live_app, portal, fallback_user_id=5)
    assert run_worker(live_app.app) == Counter(retrying=1, failed=1)
    (row,) = calls(live_app, ids)
    assert row.error_code == "USER_NOT_FOUND"
    assert "nor the fallback employee (user 5)" in (row.error or "")
    assert "choose an active fallback employee" in (row.error or "")


def test_an_admin_opening_the_app_of_a_needs_reauth_portal_sends_its_calls_at_once(
    live_app: LiveApp,
) -> None:
    """Issue 9: after invalid_grant the portal needs its admin; the moment the admin opens the
    app (its verified token pair revives the portal, settings_page/entry.py) the waiting calls
    are due: the next worker round delivers them, without waiting out any backoff."""
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, unregistered_requests(5))
    with live_app.dev.lock:
        live_app.dev.refresh_tokens.clear()  # the refresh token is gone: invalid_grant
    faults.expire_tokens(live_app.dev, portal)
    assert run_worker(live_app.app) == Counter(retrying=5)
    assert {row.error_code for row in calls(live_app, ids)} == {"NEEDS_REAUTH"}
    assert run_worker(live_app.app) == Counter()  # waiting for the admin: nothing claimed

    open_page(live_app, portal, user_id=1)  # the portal's admin opens the application
    started = time.monotonic()
    assert run_worker(live_app.app) == Counter(delivered=5)
    assert time.monotonic() - started < 5
    assert len(portal.statistics) == 5


def test_a_paid_portal_whose_app_is_opened_sends_its_waiting_calls_at_once(
    live_app: LiveApp,
) -> None:
    """Found by trying it: after paying, the calls waited for the minute's probe. A user opening
    the app of a portal waiting for its payment makes the probe due at once."""
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, finished_requests(register_on_portal(live_app.dev, portal, 2)))
    faults.lapse_payment(live_app.dev, portal, TEST_CLIENT_ID)
    assert run_worker(live_app.app) == Counter(retrying=2)
    faults.lapse_payment(live_app.dev, portal, TEST_CLIENT_ID, lapsed=False)

    open_page(live_app, portal, user_id=1)
    started = time.monotonic()
    assert run_worker(live_app.app) == Counter(delivered=2)
    assert time.monotonic() - started < 5
    assert states(live_app, ids) == Counter({CallState.DELIVERED: 2})
