"""Drill: a portal down for a while. First its address refuses connections, then its front drops
them unanswered, then it answers 503 pages, then it holds requests past our timeout. Calls keep
coming all along. Nothing may be lost, the retries and their backoff must show on /metrics, and
everything must be delivered, once, after the portal returns. Another portal is not disturbed.

Processes: 1 gunicorn, 2 workers. The workers are the real `flask worker` command with its retry
clock scaled down (processes.worker_main: backoff 0.5 s doubling to 2 s instead of 5 s to 15 min,
1 s instead of 60 s before looking up a call whose outcome is unknown) and an HTTP timeout of 1 s
(B24APP_HTTP_TIMEOUT), so the drill waits out the outage in seconds, not hours.

How each fault is made: "refused" points the portal's stored address (client_endpoint) at a port
of 127.0.0.1 nobody listens on, as when the portal's host is down; the others are the development
portal's outages (b24app.devportal.faults): "reset", "503", "timeout" (held 3 s, then 504).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from b24app.db import get_db
from b24app.devportal import faults
from b24app.devportal.state import DevPortal
from b24app.models import CallState
from b24app.portals import store
from tests.drills import Call, Pbx, judge, unregistered_call
from tests.drills.conftest import Drill
from tests.drills.processes import RetryClock, free_port, wait_for

CALLS_PER_PHASE = 100  # to the portal that is down, per phase; half as many to the calm one
PHASE = 5.0  # seconds each fault lasts
CLOCK = RetryClock(base=0.5, cap=2.0, unknown_wait=1.0)
HTTP_TIMEOUT = 1.0
HOLD = 3.0  # the "timeout" outage holds a request this long (> HTTP_TIMEOUT)


@pytest.mark.slow
def test_portal_down_refused_then_reset_then_503_then_timeouts_loses_nothing(
    drill: Drill,
) -> None:
    drill.fleet.env["B24APP_HTTP_TIMEOUT"] = str(HTTP_TIMEOUT)
    drill.start_webs(1)
    down, calm = drill.install("down"), drill.install("calm")
    for _ in range(2):
        drill.fleet.start_worker("--lease", "10", "--idle-sleep", "0.2", policy=CLOCK)
    pbx = Pbx(drill.web_urls)
    sent: dict[str, list[Call]] = {"down": [], "calm": []}
    keys = {portal.code: drill.pbx_key(portal) for portal in (down, calm)}

    def phase(name: str, start_fault: Callable[[], None]) -> dict[str, float]:
        """Start the fault, send calls while it lasts, return the retries it caused."""
        start_fault()
        before = retries(drill)
        batch = [unregistered_call("down", keys["down"], name) for _ in range(CALLS_PER_PHASE)]
        batch += [
            unregistered_call("calm", keys["calm"], name) for _ in range(CALLS_PER_PHASE // 2)
        ]
        began = time.monotonic()
        pbx.send(batch, deadline=began + 60)
        assert all(call.public_id for call in batch)
        for call in batch:
            sent[call.portal].append(call)
        time.sleep(max(0.0, PHASE - (time.monotonic() - began)))
        assert drill.states(down)["delivered"] == 0 and not down.statistics
        return _minus(retries(drill), before)

    real_endpoint = drill.dev.client_endpoint(down)
    started = time.monotonic()
    by_phase = {
        "refused": phase("refused", lambda: _point(drill, down, _closed_port_endpoint())),
        "reset": phase("reset", lambda: _reset(drill, down, real_endpoint)),
        "503": phase("503", lambda: faults.set_outage(drill.dev, down, "503")),
        "timeout": phase(
            "timeout", lambda: faults.set_outage(drill.dev, down, "timeout", timeout_sleep=HOLD)
        ),
    }
    # the calm portal goes on as if nothing happened, while the other one is still down
    wait_for(
        lambda: drill.states(calm)["delivered"] == len(sent["calm"]),
        timeout=30,
        what="the calm portal's calls delivered during the outage",
    )
    assert drill.states(down)["delivered"] == 0 and not down.statistics
    outage = time.monotonic() - started
    during = scrape(drill)
    attempts = Counter(row.attempts for row in drill.calls(down))

    faults.clear(drill.dev, down)
    back = time.monotonic()
    total = sum(len(calls) for calls in sent.values())
    drill.wait_settled(total, timeout=120)
    drained = time.monotonic() - back
    after = scrape(drill)
    verdict_down, verdict_calm = judge([down], sent["down"]), judge([calm], sent["calm"])

    drill.report(
        "portal_outage",
        calls=total,
        calls_to_the_portal_down=len(sent["down"]),
        seconds_down=round(outage, 1),
        seconds_to_drain_after_return=round(drained, 1),
        retries_by_phase=by_phase,
        retries_total=_by_label(after, "b24app_delivery_retries_total", "reason"),
        attempts_of_calls_to_the_portal_down=dict(sorted(attempts.items())),
        queue_oldest_age_seconds_at_return=_value(during, "b24app_queue_oldest_age_seconds"),
        queued_at_return=_value(during, "b24app_queue_depth", state="queued"),
        retry_clock=vars(CLOCK),
        http_timeout_seconds=HTTP_TIMEOUT,
    )

    assert drill.states() == {"delivered": total}
    assert verdict_down.exactly_once and verdict_down.expected == 4 * CALLS_PER_PHASE
    assert verdict_calm.exactly_once
    # each fault shows on /metrics as retries, by reason: no answer (refused, reset, held), 503
    assert by_phase["refused"].get("OUTCOME_UNKNOWN", 0) > 0, by_phase
    assert by_phase["reset"].get("OUTCOME_UNKNOWN", 0) > 0, by_phase
    assert by_phase["503"].get("HTTP_ERROR", 0) > 0, by_phase
    assert by_phase["timeout"].get("OUTCOME_UNKNOWN", 0) > 0, by_phase
    # backoff: the first calls were tried again and again, but far less often than the workers
    # poll (every 0.2 s), and the queue's age said how long the portal had been away
    first = [row for row in drill.calls(down) if row.request["PBX_CALL_ID"].startswith("refused")]
    assert all(3 <= row.attempts <= outage / CLOCK.base for row in first), attempts
    assert _value(during, "b24app_queue_oldest_age_seconds") >= outage - PHASE
    assert _value(during, "b24app_queue_depth", state="queued") >= 1
    assert _value(after, "b24app_queue_depth", state="queued") == 0
    delivered = _by_label(after, "b24app_calls_finished_total", "outcome")
    assert delivered == {"delivered": total}, delivered
    assert {row.state for row in drill.calls(calm)} == {CallState.DELIVERED}


# --- faults ----------------------------------------------------------------------------------


def _closed_port_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}/rest/"


def _point(drill: Drill, portal: DevPortal, endpoint: str) -> None:
    """Change where we believe the portal lives (its stored client_endpoint)."""
    with drill.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, portal.member_id, for_update=True)
        assert row is not None
        row.client_endpoint = endpoint


def _reset(drill: Drill, portal: DevPortal, endpoint: str) -> None:
    faults.set_outage(drill.dev, portal, "reset")
    _point(drill, portal, endpoint)


# --- metrics -----------------------------------------------------------------------------------

Samples = list[tuple[str, dict[str, str], float]]


def scrape(drill: Drill) -> Samples:
    """/metrics of the web process: every process's counters (multiprocess mode) and the queue."""
    text = requests.get(drill.web_urls[0] + "/metrics", timeout=10).text
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def retries(drill: Drill) -> dict[str, float]:
    return _by_label(scrape(drill), "b24app_delivery_retries_total", "reason")


def _by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    totals: Counter[str] = Counter()
    for sample, labels, value in samples:
        if sample == name and value:
            totals[labels[label]] += int(value)
    return dict(totals)


def _value(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples if n == name and labels.items() <= lab.items())


def _minus(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
