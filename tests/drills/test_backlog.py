"""Drill: a PBX's backlog (issue 9, done-when 1). After a restart or a network blip a PBX sends
every call it kept, as fast as it can: 10,000 finishes from 32 connections to one portal's key.
Every one must be answered 202 the first time (a dialplan CURL() never retries), every call
finished exactly once in the portal's statistics, and the portal never answer
QUERY_LIMIT_EXCEEDED (our throttle keeps to Bitrix24's limits however fast calls come in).

Set-up, at the DEFAULT settings a user gets (no limit raised; tests/drills/conftest.py):
- one single-process gunicorn (the deployment's config: 4 threads) and one `flask worker`;
- one portal with the standard Bitrix24 limits (2 requests/s, burst 50);
- four calls in five were registered by the PBX at their start (finish only), the fifth is
  registered and finished by the worker;
- the worker runs from the start, as in production: delivery and intake overlap.
Printed: the intake rate (what one web process accepts per second here, which ratelimit.py's
numbers rest on), and the time to deliver.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from devportal.state import DevPortal
from tests.delivery.conftest import register_on_portal
from tests.drills import Call, Pbx, judge, registered_call, unregistered_call
from tests.drills.conftest import Drill

CALLS = 10_000
CONNECTIONS = 32
REGISTERED_EVERY = 5  # one call in five was NOT registered by the PBX
SEND_DEADLINE = 600.0  # seconds; far above what intake takes (~1-2 minutes here)
DRAIN_TIMEOUT = 900.0


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_backlog_of_10000_calls_from_32_connections_is_all_accepted_and_finished_once(
    drill: Drill,
) -> None:
    (web,) = drill.start_webs(1)
    portal = drill.install("backlog")
    calls = _backlog(drill, portal)
    drill.fleet.start_worker()

    started = time.monotonic()
    answers = Pbx([web.url or ""], threads=CONNECTIONS).send(
        calls, deadline=started + SEND_DEADLINE
    )
    accepted = time.monotonic()
    drained = drill.wait_settled(CALLS, timeout=DRAIN_TIMEOUT)
    done = time.monotonic()

    verdict = judge([portal], calls)
    limited = drill.dev.entries(error="QUERY_LIMIT_EXCEEDED")
    not_at_once = [c.pbx_call_id for c in calls if [s for s, _ in c.answers] != [202]]
    drill.report(
        "backlog",
        calls=CALLS,
        connections=CONNECTIONS,
        web_processes=1,
        pbx_answers=dict(answers),
        seconds_to_accept_all=round(accepted - started, 1),
        intake_calls_per_second=round(CALLS / (accepted - started), 1),
        seconds_to_deliver_all=round(done - started, 1),
        seconds_to_deliver_after_last_accepted=round(drained, 1),
        delivered_calls_per_second=round(CALLS / (done - started), 1),
        finished_on_portal=verdict.finished,
        query_limit_exceeded=len(limited),
        batches=len(drill.dev.entries(method="batch")),
    )
    assert answers == Counter({202: CALLS}), answers  # no 429, no 500: each accepted at once
    assert not_at_once == []
    assert drill.states() == {"delivered": CALLS}
    assert verdict.exactly_once, verdict
    assert limited == []
    assert len(portal.calls) == 0  # nothing registered and left unfinished


def _backlog(drill: Drill, portal: DevPortal) -> list[Call]:
    key = drill.pbx_key(portal)
    registered = register_on_portal(drill.dev, portal, CALLS - CALLS // REGISTERED_EVERY)
    calls = [registered_call(portal.code, key, "backlog", call_id) for call_id in registered]
    calls += [unregistered_call(portal.code, key, "backlog") for _ in range(CALLS - len(calls))]
    random.shuffle(calls)
    return calls
