"""Drill: tokens revoked mid-stream. While two portals' calls are queued and being delivered, the
app is uninstalled from one of them. That portal's undelivered calls must fail with a plain
reason, nothing of it finished twice; the other portal's calls are all delivered, exactly once.

How Bitrix24 does it (settings/app-uninstallation.md, api-reference/common/events/
on-app-uninstall.md): the app's tokens stop working at once; ONAPPUNINSTALL comes through the
event queue, later. The drill keeps that order and a gap of EVENT_DELAY seconds between them, so
the workers meet the revoked tokens first (NO_AUTH_FOUND, then a refused refresh) and only then
learn from the event that the app is gone.

Processes: 1 gunicorn (the events arrive there), 2 `flask worker` processes. Both portals keep
standard limits and answer every request 0.3 s late. The leaving portal has more batches (60 of 25
calls) than its bucket's burst (50): whatever the pace of the first wave, the last ten wait for the
bucket to drain (2 a second, 5 s), so the uninstall lands mid-stream. With fewer calls than the
burst, the worker's batches side by side sometimes delivered every call before the revocation.
"""

from __future__ import annotations

import time
from collections import Counter
from itertools import zip_longest

import pytest
import requests

from b24app.models import Call as CallRow
from b24app.models import CallState
from devportal import faults
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.delivery.conftest import calls as stored_calls
from tests.delivery.conftest import queue, run_worker, unregistered_requests
from tests.drills import FINISH, Pbx, judge, unregistered_call
from tests.drills.conftest import Drill
from tests.drills.processes import wait_for

CALLS = {"leaving": 1500, "staying": 400}
LATENCY = 0.3
EVENT_DELAY = 2.0  # seconds between the revocation and ONAPPUNINSTALL
UNINSTALLED = "The application was uninstalled from the portal."


@pytest.mark.slow
def test_uninstall_mid_stream_fails_that_portals_calls_plainly_and_spares_the_other(
    drill: Drill,
) -> None:
    drill.start_webs(1)
    leaving, staying = drill.install("leaving"), drill.install("staying")
    keys = {portal.code: drill.pbx_key(portal) for portal in (leaving, staying)}
    calls = {
        portal.code: [
            unregistered_call(portal.code, keys[portal.code], "rv")
            for _ in range(CALLS[portal.code])
        ]
        for portal in (leaving, staying)
    }
    for portal in (leaving, staying):
        faults.set_latency(drill.dev, portal, LATENCY)
    started = time.monotonic()
    both = [c for pair in zip_longest(*calls.values()) for c in pair if c is not None]
    answers = Pbx(drill.web_urls).send(both, deadline=started + 120)
    assert all(c.public_id for c in both), answers  # 429s are waited out as Retry-After says
    for _ in range(2):
        drill.fleet.start_worker("--lease", "10", "--idle-sleep", "0.3")

    wait_for(
        lambda: len(leaving.statistics) >= CALLS["leaving"] // 4,
        timeout=60,
        every=0.1,
        what="a quarter of the calls delivered",
    )
    drill.dev.revoke_tokens(leaving.member_id, TEST_CLIENT_ID)  # the tokens die at once
    revoked_at = len(leaving.statistics)
    time.sleep(EVENT_DELAY)
    assert [status for _, status in drill.driver.uninstall(leaving, TEST_CLIENT_ID)] == [200]
    uninstalled = time.monotonic()

    settled = drill.wait_settled(sum(CALLS.values()), timeout=60)
    done = time.monotonic()
    rows = drill.calls(leaving)
    failed = [row for row in rows if row.state == CallState.FAILED]
    delivered = [row for row in rows if row.state == CallState.DELIVERED]
    gone = judge([leaving], [c for c in calls["leaving"] if c.public_id in _ids(delivered)])
    kept = judge([staying], calls["staying"])
    refused = requests.post(
        drill.web_urls[0] + FINISH,
        json=calls["leaving"][0].body,
        headers={"Authorization": f"Bearer {keys['leaving']}"},
        timeout=10,
    )
    drill.report(
        "tokens_revoked",
        calls_per_portal=CALLS,
        delivered_before_revocation=revoked_at,
        leaving_delivered=len(delivered),
        leaving_failed=len(failed),
        leaving_failure_reasons=sorted({f"{row.error_code}: {row.error}" for row in failed}),
        staying_delivered=kept.distinct,
        seconds_event_to_settled=round(done - uninstalled, 1),
        seconds_total=round(done - started, 1),
        seconds_waited_for_settling=round(settled, 1),
        event_delay_seconds=EVENT_DELAY,
    )

    assert len(delivered) + len(failed) == CALLS["leaving"]
    assert failed, "the uninstall came after every call was delivered: nothing was tested"
    assert {(row.error_code, row.error) for row in failed} == {("UNINSTALLED", UNINSTALLED)}
    assert len(leaving.statistics) == len(delivered) and gone.exactly_once, gone
    assert kept.exactly_once and kept.expected == CALLS["staying"], kept
    assert {row.state for row in drill.calls(staying)} == {CallState.DELIVERED}
    # and the PBX is told in plain words that this portal's key is dead
    assert refused.status_code == 401
    assert "uninstalled" in refused.json()["detail"]


def test_calls_waiting_for_the_admin_fail_as_soon_as_the_app_is_uninstalled(
    live_app: LiveApp,
) -> None:
    """What the drill found: revoked tokens make the portal "needs re-authorisation" and its calls
    wait 30 minutes for the admin; ONAPPUNINSTALL then says the app is gone for good. The calls
    must fail now, in plain words, not when their wait ends."""
    portal = live_app.install("leaving")
    ids = queue(live_app, portal, unregistered_requests(3))
    live_app.dev.revoke_tokens(portal.member_id, TEST_CLIENT_ID)
    assert run_worker(live_app.app) == Counter(retrying=3)
    assert {row.error_code for row in stored_calls(live_app, ids)} == {"NEEDS_REAUTH"}

    live_app.driver.uninstall(portal, TEST_CLIENT_ID)

    assert run_worker(live_app.app) == Counter(failed=3)
    rows = stored_calls(live_app, ids)
    assert {(row.state, row.error_code, row.error) for row in rows} == {
        (CallState.FAILED, "UNINSTALLED", UNINSTALLED)
    }


def _ids(rows: list[CallRow]) -> set[str]:
    return {row.public_id for row in rows}
