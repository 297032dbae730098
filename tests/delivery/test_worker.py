"""The worker against the development portal: batches, registration, fairness, concurrency,
crashes and a graceful stop. On SQLite and PostgreSQL.

Pages: settings/how-to-call-rest-api/batch.md (≤ 50 commands, `$result[key][FIELD]`),
api-reference/telephony/telephony-external-call-finish.md and -register.md,
api-reference/telephony/voximplant/voximplant-statistic-get.md (looking calls up).
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from b24app import health
from b24app.bitrix.throttle import STANDARD
from b24app.db import get_db
from b24app.delivery import outbox
from b24app.delivery.batching import FINISH
from b24app.delivery.worker import Worker
from b24app.models import Call, CallState, Portal, PortalThrottle, utcnow
from b24app.wiring import current_store
from devportal import faults
from tests.conftest import LiveApp
from tests.delivery.conftest import (
    TEST_POLICY,
    batches,
    calls,
    commands,
    finished_ids,
    finished_requests,
    is_delivery,
    portal_id,
    queue,
    register_on_portal,
    roomy,
    run_worker,
    set_portal,
    unregistered_requests,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]


def test_120_calls_go_in_three_batches_each_finished_once(live_app: LiveApp) -> None:
    """batch.md: at most 50 commands a request, so 120 calls are 50 + 50 + 20 (sent side by
    side: the portal may see them in any order, test_pipelining.py)."""
    portal = live_app.install("alpha")
    call_ids = register_on_portal(live_app.dev, portal, 120)
    ids = queue(live_app, portal, finished_requests(call_ids))

    totals = run_worker(live_app.app)

    assert totals == Counter(delivered=120)
    sizes = [len(entry["params"]["cmd"]) for entry in batches(live_app.dev, portal)]
    assert sorted(sizes, reverse=True) == [50, 50, 20]
    assert finished_ids(portal) == Counter({call_id: 1 for call_id in call_ids})
    for record in portal.statistics:
        # finish page: ADD_TO_CHAT always sent, here the portal's default 0; nothing odd sent
        assert record["_params"]["ADD_TO_CHAT"] == "0"
        assert record["_warnings"] == []
    rows = calls(live_app, ids)
    assert {row.state for row in rows} == {CallState.DELIVERED}
    for row, call_id in zip(rows, call_ids, strict=True):
        assert row.result is not None and row.result["CALL_ID"] == call_id
        assert row.delivered_at is not None and row.attempts == 1
        assert row.lease_until is None and row.error is None


def test_unregistered_calls_are_registered_and_finished_in_one_batch(live_app: LiveApp) -> None:
    """register page: EXTERNAL_CALL_ID = the PBX's id; batch.md: finish takes the new CALL_ID
    as `$result[r<id>][CALL_ID]` in the same request. CALL_START_DATE without an offset is
    read in the portal's time zone (register page: ISO-8601 with a time zone)."""
    portal = live_app.install("alpha")
    set_portal(live_app, portal, timezone="Europe/Moscow", add_to_chat=True)
    requests = unregistered_requests(3)
    ids = queue(live_app, portal, requests)

    assert run_worker(live_app.app) == Counter(delivered=3)

    (batch,) = batches(live_app.dev, portal)
    methods = [command.split("?")[0] for command in batch["params"]["cmd"].values()]
    assert methods == ["telephony.externalCall.register", "telephony.externalCall.finish"] * 3
    by_external = {record["EXTERNAL_CALL_ID"]: record for record in portal.statistics}
    assert sorted(by_external) == sorted(request["PBX_CALL_ID"] for request in requests)
    for row, request in zip(calls(live_app, ids), requests, strict=True):
        record = by_external[request["PBX_CALL_ID"]]
        assert row.bitrix_call_id == record["CALL_ID"]
        assert record["_call_start_date"] == "2026-03-07T10:20:30+03:00"
        assert record["_params"]["ADD_TO_CHAT"] == "1" and record["_warnings"] == []
    registered = commands(live_app.dev, portal, "telephony.externalCall.register")
    assert [entry["params"]["SHOW"] for entry in registered] == ["0"] * 3
    assert portal.calls == {}  # every registered call was finished


def test_calls_needing_registration_count_twice_against_the_batch(live_app: LiveApp) -> None:
    """26 unregistered calls are 52 commands: 25 calls fit one batch, the 26th goes next."""
    portal = live_app.install("alpha")
    queue(live_app, portal, unregistered_requests(26))
    assert run_worker(live_app.app) == Counter(delivered=26)
    sizes = [len(entry["params"]["cmd"]) for entry in batches(live_app.dev, portal)]
    assert sorted(sizes, reverse=True) == [50, 2]  # side by side: in either order
    assert len(portal.statistics) == 26


def test_a_busy_portal_does_not_starve_a_small_one(live_app: LiveApp) -> None:
    """One share per portal per round, oldest due first: 500 calls waiting on one portal (and
    queued before the others) do not delay the 5 of another beyond the first round. The busy
    portal's bucket is nearly full (a busy spell before): its share is the 2 batches it can
    send at once (outbox.claim_round), the rest follows at the throttle's pace."""
    busy = live_app.install("busy")
    small = live_app.install("small")
    roomy(busy)
    busy_ids = queue(live_app, busy, finished_requests(register_on_portal(live_app.dev, busy, 500)))
    small_ids = queue(
        live_app, small, finished_requests(register_on_portal(live_app.dev, small, 5))
    )
    with live_app.app.app_context(), get_db().write() as session:
        full = time.time() + (STANDARD.burst - 2.5) / STANDARD.rate  # room for two requests
        session.merge(
            PortalThrottle(
                portal_id=portal_id(live_app, busy), theoretical_arrival=full, blocked_until=0.0
            )
        )

    # One thread: the portals' rounds go strictly one after the other.
    assert run_worker(live_app.app, threads=1) == Counter(delivered=505)
    order = [e["member_id"] for e in live_app.dev.entries(method="batch") if is_delivery(e)]
    # Round one: the busy portal's share (the two batches its bucket has room for, or three or
    # four if it drained while the test set up), then the small portal's batch; the busy
    # portal's other batches come after, at the throttle's pace.
    assert order.index(small.member_id) <= 4
    assert len(batches(live_app.dev, busy)) == 10
    assert sum(finished_ids(busy).values()) == 500 == len(finished_ids(busy))
    assert len(finished_ids(small)) == 5
    assert {row.state for row in calls(live_app, busy_ids + small_ids)} == {CallState.DELIVERED}


def test_two_workers_on_one_queue_deliver_each_call_once(live_app: LiveApp) -> None:
    """Any number of workers may run at once: claims never overlap (SKIP LOCKED on PostgreSQL,
    BEGIN IMMEDIATE on SQLite), so no call is finished twice."""
    alpha = live_app.install("alpha")
    beta = live_app.install("beta")
    for portal in (alpha, beta):
        roomy(portal)
        queue(live_app, portal, finished_requests(register_on_portal(live_app.dev, portal, 120)))
        queue(live_app, portal, unregistered_requests(30))
    results: list[Counter[str]] = []

    def work() -> None:
        results.append(run_worker(live_app.app, threads=2))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert len(results) == 2  # both workers ran to the end (which of them sends what is timing)
    assert sum(results, Counter()) == Counter(delivered=300)
    for portal in (alpha, beta):
        assert len(portal.statistics) == 150
        assert set(finished_ids(portal).values()) == {1}
        externals = [r["EXTERNAL_CALL_ID"] for r in portal.statistics if r["EXTERNAL_CALL_ID"]]
        assert len(externals) == len(set(externals)) == 30
    assert {row.state for row in calls(live_app)} == {CallState.DELIVERED}


def test_calls_of_a_worker_that_died_after_sending_are_looked_up_not_sent_again(
    live_app: LiveApp,
) -> None:
    """A worker claimed calls, sent some of them and died before recording anything. Once its
    lease runs out the calls are taken over and looked up with voximplant.statistic.get (by
    CALL_ID, or by EXTERNAL_CALL_ID for calls it registered): those finished are delivered with
    the statistics record as their result, the others are sent. Nothing is lost or doubled."""
    portal = live_app.install("alpha")
    registered = finished_requests(register_on_portal(live_app.dev, portal, 6))
    unregistered = unregistered_requests(4)
    ids = queue(live_app, portal, registered + unregistered)
    with live_app.app.app_context():
        (claimed,) = outbox.claim(
            get_db(), worker_id="dead", now=utcnow(), lease=0.2, max_portals=4
        ).values()
        sent = claimed[:3] + claimed[6:8]  # three registered, two unregistered calls
        from b24app.delivery import lifecycle
        from b24app.delivery.deliver import load_portal

        view = load_portal(get_db(), portal_id(live_app, portal))
        assert view is not None
        cmd = {}
        for call in sent:
            planned = lifecycle.plan(
                call.facts, call.events, view.prefs, view.extensions.get, now=utcnow()
            )
            cmd.update({step.key: (step.method, step.params) for step in planned.steps})
        current_store().client(portal.member_id).batch(cmd)  # …and then the worker died
    assert len(portal.statistics) == 5

    # the worker's clock 0.3 s on: the dead worker's 0.2 s lease has run out
    assert run_worker(live_app.app, ahead=0.3) == Counter(delivered=10)

    assert len(commands(live_app.dev, portal, "voximplant.statistic.get")) == 10
    assert set(finished_ids(portal).values()) == {1} and len(portal.statistics) == 10
    rows = {row.id: row for row in calls(live_app, ids)}
    for call in claimed:
        row = rows[call.id]
        assert row.state == CallState.DELIVERED and row.attempts == 2
        looked_up = call in sent
        # voximplant.statistic.get rows have CALL_CATEGORY; finish's answer does not
        assert ("CALL_CATEGORY" in (row.result or {})) is looked_up
        assert row.bitrix_call_id is not None


def _worker_env(live: LiveApp) -> dict[str, str]:
    settings = live.app.config["SETTINGS"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("B24", "DATABASE_URL"))}
    env.update(
        B24APP_ENV="testing",
        DATABASE_URL=live.app.config["DATABASE_URL"],
        SECRET_KEY=settings.secret_key,
        B24_CLIENT_ID=settings.client_id,
        B24_CLIENT_SECRET=settings.client_secret,
        B24_OAUTH_SERVER=settings.oauth_server,
        PUBLIC_URL=settings.public_url,
        B24APP_ENCRYPTION_KEYS=settings.encryption_keys,
        B24APP_ALLOW_LOCAL_PORTALS="1",
        B24APP_INSTANCE_PATH=settings.instance_path,
        B24APP_LOG_LEVEL="WARNING",
        PYTHONPATH=str(REPO),
    )
    return env


def _start_worker(live: LiveApp, tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "b24app", "worker", *args],
        env=_worker_env(live),
        cwd=tmp_path,  # no stray .env
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _delivering(live: LiveApp) -> bool:
    return any(row.state == CallState.DELIVERING for row in calls(live))


def _slot_booked(live: LiveApp, pid: int) -> float:
    """The portal's throttle schedule (bitrix/throttle.py): it moves on when a request is
    about to go out, right before the POST."""
    with live.app.app_context(), get_db().read() as session:
        row = session.get(PortalThrottle, pid)
        return row.theoretical_arrival if row else 0.0


def test_worker_process_killed_mid_batch_loses_and_doubles_nothing(
    live_app: LiveApp, tmp_path: Path
) -> None:
    """SIGKILL while the portal is still working on the batch (latency): the portal finishes
    the calls after the worker is gone; the next worker takes them over when the lease runs out,
    finds them in the statistics, and finishes nothing twice."""
    portal = live_app.install("alpha")
    ids = queue(
        live_app,
        portal,
        finished_requests(register_on_portal(live_app.dev, portal, 5)) + unregistered_requests(3),
    )
    faults.set_latency(live_app.dev, portal, 1.5)
    pid = portal_id(live_app, portal)
    booked = _slot_booked(live_app, pid)
    process = _start_worker(live_app, tmp_path, "--lease", "1", "--threads", "1")
    try:
        wait_for(lambda: _slot_booked(live_app, pid) > booked, timeout=30)
        # the slot is booked with the claim, the batch goes right after (well within 0.8 s)
        # and the portal holds it for 1.5 s: the kill lands while it works on the batch
        time.sleep(0.8)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=10)
    wait_for(lambda: len(portal.statistics) == 8)  # the portal finished them anyway
    faults.clear(live_app.dev, portal)
    assert {row.state for row in calls(live_app, ids)} == {CallState.DELIVERING}

    # the worker's clock 1.1 s on: the killed worker's 1 s lease has run out
    assert run_worker(live_app.app, ahead=1.1) == Counter(delivered=8)

    assert len(portal.statistics) == 8 and set(finished_ids(portal).values()) == {1}
    assert len(commands(live_app.dev, portal, FINISH)) == 8  # only the killed worker's
    assert all("CALL_CATEGORY" in (row.result or {}) for row in calls(live_app, ids))


def test_sigterm_lets_the_batch_in_flight_finish_and_be_recorded(
    live_app: LiveApp, tmp_path: Path
) -> None:
    """A graceful stop (the platform's SIGTERM): no new claims, the batch already sent is
    awaited and recorded, the process exits 0."""
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, finished_requests(register_on_portal(live_app.dev, portal, 4)))
    faults.set_latency(live_app.dev, portal, 1.0)
    process = _start_worker(live_app, tmp_path, "--threads", "1")
    try:
        wait_for(lambda: _delivering(live_app), timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert {row.state for row in calls(live_app, ids)} == {CallState.DELIVERED}
    assert len(portal.statistics) == 4


def test_worker_once_command_drains_and_reports(live_app: LiveApp) -> None:
    """`flask --app b24app worker --once`: deliver what is due now, say what happened, exit."""
    portal = live_app.install("alpha")
    queue(live_app, portal, finished_requests(register_on_portal(live_app.dev, portal, 3)))
    runner = live_app.app.test_cli_runner()
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "delivered 3" in result.output
    assert len(portal.statistics) == 3
    result = runner.invoke(args=["worker", "--once"])
    assert "nothing due" in result.output


def test_the_worker_command_leaves_what_start_up_built_out_of_garbage_collections(
    live_app: LiveApp,
) -> None:
    """heap.freeze_start_up before the worker runs: what existed by then (here, in the test's
    process, this test's own objects) is no longer walked by any collection."""
    built_before = [{"built": "before the worker ran"}]
    assert any(one is built_before for one in gc.get_objects())
    result = live_app.app.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert not any(one is built_before for one in gc.get_objects())


def test_an_idle_worker_beats_and_stops_on_request(live_app: LiveApp) -> None:
    """health.py: readiness needs a worker heartbeat younger than 60 s."""
    worker = Worker(live_app.app, idle_sleep=0.05, policy=TEST_POLICY)
    thread = threading.Thread(target=worker.run)
    thread.start()
    wait_for(lambda: health.fresh_workers(get_db(live_app.app)) == 1)
    assert live_app.app.test_client().get("/readyz").status_code == 200
    worker.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_stale_currencies_are_refreshed_once_per_portal_not_per_call(live_app: LiveApp) -> None:
    """crm.currency.list (api-reference/crm/currency/crm-currency-list.md) is what the intake
    checks COST_CURRENCY against; the worker refreshes a stale list for portals it reaches."""
    portal = live_app.install("alpha")
    set_portal(
        live_app,
        portal,
        currencies=["RUB"],
        currencies_fetched_at=utcnow() - timedelta(hours=2),
    )
    queue(live_app, portal, finished_requests(register_on_portal(live_app.dev, portal, 120)))
    before = len(commands(live_app.dev, portal, "crm.currency.list"))

    assert run_worker(live_app.app) == Counter(delivered=120)

    assert len(commands(live_app.dev, portal, "crm.currency.list")) == before + 1
    with live_app.app.app_context(), get_db().read() as session:
        settings = session.get(Portal, portal_id(live_app, portal)).settings
        assert settings.currencies == ["RUB", "USD", "EUR"]
        assert settings.currencies_fetched_at > utcnow() - timedelta(minutes=1)


def test_a_running_worker_refreshes_idle_portals_tokens_once(live_app: LiveApp) -> None:
    """settings/oauth/auto-renewal.md: a refresh token lives 180 days; a portal without calls
    for 30 days gets its tokens refreshed by the worker (once a day at most)."""
    portal = live_app.install("alpha")
    set_portal(live_app, portal, refreshed_at=utcnow() - timedelta(days=40))
    worker = Worker(live_app.app, idle_sleep=0.05, policy=TEST_POLICY)
    thread = threading.Thread(target=worker.run)
    thread.start()
    time.sleep(0.5)
    worker.stop()
    thread.join(timeout=5)
    refreshes = [e for e in live_app.dev.journal if e.get("oauth") == "refresh_token"]
    assert len(refreshes) == 1 and refreshes[0]["error"] is None
    with live_app.app.app_context(), get_db().read() as session:
        row = session.get(Portal, portal_id(live_app, portal))
        assert row.refreshed_at > utcnow() - timedelta(minutes=1)


def test_a_running_worker_deletes_finished_calls_past_retention_once_a_day(
    live_app: LiveApp,
) -> None:
    """B24APP_CALL_RETENTION_DAYS (default 90): the worker's daily housekeeping deletes delivered
    and failed calls older than that; queued calls and recent ones stay."""
    portal = live_app.install("alpha")
    old, recent, waiting = queue(live_app, portal, unregistered_requests(3))
    long_ago = utcnow() - timedelta(days=91)
    with live_app.app.app_context(), get_db().write() as session:
        for call_id, state in ((old, CallState.DELIVERED), (waiting, CallState.QUEUED)):
            session.execute(
                update(Call)
                .where(Call.id == call_id)
                .values(
                    state=state,
                    created_at=long_ago,
                    updated_at=long_ago,
                    next_attempt_at=utcnow() + timedelta(days=1),
                )
            )
        session.execute(update(Call).where(Call.id == recent).values(state=CallState.FAILED))
    worker = Worker(live_app.app, idle_sleep=0.05, policy=TEST_POLICY)
    thread = threading.Thread(target=worker.run)
    thread.start()
    wait_for(lambda: [row.id for row in calls(live_app)] == [recent, waiting])
    worker.stop()
    thread.join(timeout=5)
    assert [row.id for row in calls(live_app)] == [recent, waiting]


def test_a_restarted_worker_takes_over_a_killed_workers_calls_once_bitrix24_is_done_with_them(
    live_app: LiveApp,
) -> None:
    """A worker SIGKILLed mid-batch leaves its calls leased (120 s by default, renewed right
    before sending). A worker on the same host sees that process is gone and takes them over
    as soon as Bitrix24 can no longer be running that batch (60 s after it was sent, limits.md),
    as calls with an unknown outcome (looked up first); a live worker's lease is left alone."""
    portal = live_app.install("alpha")
    sent_long_ago = queue(live_app, portal, unregistered_requests(2))
    sent_just_now = queue(live_app, portal, unregistered_requests(1))
    still_working = queue(live_app, portal, unregistered_requests(1))
    host = socket.gethostname()[:40]
    script = "import os; print(os.getpid())"
    gone = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    dead = f"{host}:{int(gone.stdout)}:dead00"  # a process that has exited
    leases = (  # (calls, holder, seconds since the batch was sent)
        (sent_long_ago, dead, 70),
        (sent_just_now, dead, 1),
        (still_working, f"{host}:{os.getpid()}:x", 70),
    )
    with live_app.app.app_context(), get_db().write() as session:
        for ids, holder, age in leases:
            session.execute(
                update(Call)
                .where(Call.id.in_(ids))
                .values(
                    state=CallState.DELIVERING,
                    leased_by=holder,
                    lease_until=utcnow() + timedelta(seconds=120 - age),
                    attempts=1,
                )
            )
    assert run_worker(live_app.app) == Counter(delivered=2)
    rows = {row.id: row for row in calls(live_app)}
    assert [rows[i].state for i in sent_long_ago] == [CallState.DELIVERED] * 2
    assert rows[sent_just_now[0]].state == CallState.DELIVERING  # it may still be running
    assert rows[still_working[0]].state == CallState.DELIVERING  # its worker is alive
    assert len(commands(live_app.dev, portal, "voximplant.statistic.get")) == 2  # looked up


def test_the_worker_claims_more_portals_once_a_pools_worth_has_room(live_app: LiveApp) -> None:
    """A claim's own statements (the due portals, their shares and schedules) are shared by
    several portals: while shares are in flight, the worker claims again once as many portals
    as it has delivery threads have room, not after every share that ends."""
    worker = Worker(live_app.app, threads=4)  # a round of 16 portals

    def in_flight(portals: int) -> dict:  # type: ignore[type-arg]
        return {object(): (portal, 1) for portal in range(portals)}

    assert worker._room(in_flight(0)) == 16
    assert worker._room(in_flight(13)) == 0  # 3 free: the threads still have 9 queued
    assert worker._room(in_flight(12)) == 4
    small = Worker(live_app.app, threads=4, portals_per_round=2)  # a round smaller than the pool
    assert small._room(in_flight(1)) == 1
