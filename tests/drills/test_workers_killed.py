"""Drill: 5,000 calls across 20 portals through 3 web and 3 worker processes while workers are
killed with SIGKILL at random and started again. Every call must be finished exactly once, and
the development portal's statistics are the judge.

Set-up, and why:
- 3 single-process gunicorns on 3 ports (the deployment's gunicorn config), 3 `flask worker`
  processes with a 10 s lease instead of 120 s (a killed worker's calls come back after the
  lease; 10 s is still far above a batch's time here), polling every 0.5 s.
- The 20 portals are installed through the first web process's real installer and keep the
  standard Bitrix24 limits (2 requests/s, burst 50): 250 calls a portal are about 10 batches, so
  the limits cost nothing and the throttle is exercised as in production.
- Every REST request to the portals takes 0.1 s (latency), so a kill often lands while a batch is
  on its way or being answered: the case where the portal finished calls the worker never heard
  about. One call in five was registered by the PBX (CALL_ID known: finish only); the others are
  registered and finished by the worker in one batch.
- The PBX sends from 12 threads, spreading calls over the 3 web processes, honouring Retry-After.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from devportal import faults
from devportal.state import DevPortal
from tests.delivery.conftest import register_on_portal
from tests.drills import Call, Pbx, interleave, judge, registered_call, unregistered_call
from tests.drills.conftest import Drill
from tests.drills.processes import Killer

CALLS = 5_000
PORTALS = 20
WEBS = 3
WORKERS = 3
LEASE = 10  # seconds
REGISTERED_EVERY = 5  # one call in five was registered by the PBX
LATENCY = 0.1  # seconds added to every REST request to the portals
# seconds between kills, drawn uniformly. Killing stops once 80 % are delivered, 16.5 s in on a
# fast run: at most 1.5 s apart, any run of 15 s or more gets the 10 kills the drill asks for,
# however the draws fall (at up to 2.5 s apart, that fast run, its web processes no longer
# pausing for garbage collection, drew 9 and failed the guard at its end)
KILL_EVERY = (0.3, 1.5)
MAX_KILLS = 40
SEND_DEADLINE = 180.0  # seconds for the PBX to get every call accepted
DRAIN_TIMEOUT = 120.0


@pytest.mark.slow
@pytest.mark.alone  # its send deadline measures our intake, not the other lanes' load on 2 cores
@pytest.mark.timeout(600)  # the bounds above add up to more than the suite's 300 s
def test_5000_calls_through_3_web_and_3_workers_killed_at_random_finish_exactly_once(
    drill: Drill,
) -> None:
    drill.start_webs(WEBS)
    portals = [drill.install(f"portal{n:02d}") for n in range(PORTALS)]
    calls = interleave([_calls_for(drill, portal) for portal in portals])
    for portal in portals:
        faults.set_latency(drill.dev, portal, LATENCY)
    assert len(calls) == CALLS

    workers = [
        drill.fleet.start_worker("--lease", str(LEASE), "--idle-sleep", "0.5")
        for _ in range(WORKERS)
    ]
    seed = int(os.environ.get("DRILL_SEED") or random.randrange(1 << 30))  # to replay a run
    killer = Killer(workers, every=KILL_EVERY, max_kills=MAX_KILLS, rng=random.Random(seed))
    started = time.monotonic()
    killer.start()
    try:
        answers = Pbx(drill.web_urls, threads=12).send(calls, deadline=started + SEND_DEADLINE)
        sent = time.monotonic()
        assert all(call.public_id for call in calls), answers
        # keep killing while the queue drains, until most calls are through
        _wait_delivered(drill, int(CALLS * 0.8), timeout=DRAIN_TIMEOUT)
    finally:
        kills = killer.halt()
    assert not killer.errors, killer.errors
    drained = drill.wait_settled(CALLS, timeout=DRAIN_TIMEOUT)
    done = time.monotonic()

    verdict = judge(portals, calls)
    rows = drill.calls()
    states = drill.states()
    finishes = drill.dev.entries(method="telephony.externalCall.finish")
    drill.report(
        "workers_killed",
        calls=CALLS,
        portals=PORTALS,
        web_processes=WEBS,
        worker_processes=WORKERS,
        kills=kills,
        worker_starts=sum(w.starts for w in workers),
        seed=seed,
        seconds_to_accept_all=round(sent - started, 1),
        seconds_to_drain=round(done - started, 1),
        seconds_to_drain_after_last_accepted=round(done - sent, 1),
        seconds_waited_after_kills_stopped=round(drained, 1),
        pbx_answers=dict(answers),
        finished_on_portals=verdict.finished,
        distinct_finished=verdict.distinct,
        finished_twice=len(verdict.twice),
        calls_tried_more_than_once=sum(1 for row in rows if row.attempts > 1),
        # taken over from a killed worker and found finished on the portal: without that
        # look-up these would have been sent, and finished, twice
        found_finished_by_lookup=sum(1 for row in rows if "CALL_CATEGORY" in (row.result or {})),
        statistics_lookups=len(drill.dev.entries(method="voximplant.statistic.get")),
        finish_commands=len(finishes),
        finish_refused=sum(1 for e in finishes if e.get("error")),
        lease_seconds=LEASE,
        portal_latency_seconds=LATENCY,
    )
    assert states == {"delivered": CALLS}, dict(states)
    # our door at its defaults (memory storage, gthread): every call 202, no 429, no 500
    assert set(answers) == {202}, answers
    assert verdict.exactly_once, verdict
    assert kills >= 10, f"only {kills} kills: the drill did not test much"
    # a call registered twice would leave a registered, unfinished call behind
    assert sum(len(portal.calls) for portal in portals) == 0
    assert {row.public_id for row in rows} == {call.public_id for call in calls}


def _calls_for(drill: Drill, portal: DevPortal) -> list[Call]:
    """CALLS / PORTALS calls for one portal: one in five registered by the PBX beforehand."""
    key = drill.pbx_key(portal)
    count = CALLS // PORTALS
    registered = register_on_portal(drill.dev, portal, count // REGISTERED_EVERY)
    calls = [registered_call(portal.code, key, "killed", call_id) for call_id in registered]
    calls += [unregistered_call(portal.code, key, "killed") for _ in range(count - len(calls))]
    random.shuffle(calls)
    return calls


def _wait_delivered(drill: Drill, count: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while drill.states()["delivered"] < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{dict(drill.states())}\n{drill.fleet.tails()}")
        time.sleep(0.5)
