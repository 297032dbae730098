"""One portal, several batches in flight (issue 15): the worker sends a portal's batches side by
side as far as its bucket lets them go at once, each call in one batch with its events in order,
never a QUERY_LIMIT_EXCEEDED; a round's lease renewal and throttle slots are one transaction.
On SQLite and PostgreSQL, against the development portal.

Pages: limits.md (the leaky bucket counts HTTP requests, a batch is one; 2/s and 50 on standard
plans), settings/how-to-call-rest-api/batch.md (≤ 50 commands, run in order),
tutorials/telephony/index.md (register → show → hide → finish).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

import pytest
from sqlalchemy import update

from b24app.bitrix.throttle import STANDARD, Limits, free_slots, next_slot, next_slots
from b24app.db import get_db
from b24app.delivery import outbox
from b24app.delivery.deliver import PortalDelivery
from b24app.delivery.worker import BATCHES_IN_FLIGHT, BATCHES_PER_ROUND, Worker
from b24app.models import Call, CallState, PortalThrottle, utcnow
from devportal import faults
from devportal.state import DevPortal, DevState
from tests.conftest import LiveApp
from tests.delivery.conftest import (
    TEST_POLICY,
    batches,
    calls,
    finished_ids,
    finished_requests,
    portal_id,
    queue,
    register_on_portal,
    run_worker,
)
from tests.stored import add_call

LATENCY = 1.0  # seconds the portal takes to answer each request


def whole_calls(live: LiveApp, portal: DevPortal, count: int) -> list[int]:
    """Calls the PBX never registered, each with its whole life stored: start, ring to two
    employees, answer by one, finish (register, show, show/hide, finish: 5 commands at most)."""
    pid = portal_id(live, portal)
    with live.app.app_context(), get_db().write() as session:
        ids = []
        for n in range(count):
            key = f"pipe-{portal.code}-{n}"
            events: list[tuple[str, dict[str, Any]]] = [
                (
                    "start",
                    {"PBX_CALL_ID": key, "PHONE_NUMBER": f"7495{n:07d}", "TYPE": 2, "USER_ID": 2},
                ),
                ("ring", {"PBX_CALL_ID": key, "USER_ID": [2, 3]}),
                ("answer", {"PBX_CALL_ID": key, "USER_ID": 3}),
                ("finish", {"PBX_CALL_ID": key, "DURATION": 42, "STATUS_CODE": "200"}),
            ]
            ids.append(add_call(session, pid, events).id)
        return ids


def limit_errors(dev: DevState, portal: DevPortal) -> int:
    return sum(
        1 for e in dev.entries(error="QUERY_LIMIT_EXCEEDED") if e["member_id"] == portal.member_id
    )


def commands_by_call(dev: DevState, portal: DevPortal) -> dict[str, list[dict[str, Any]]]:
    """Each call's commands as the portal ran them (journal order), by Bitrix24's CALL_ID
    (a register is known by its EXTERNAL_CALL_ID, mapped through the statistics)."""
    external = {r["EXTERNAL_CALL_ID"]: r["CALL_ID"] for r in portal.statistics}
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in dev.entries(member_id=portal.member_id):
        if entry.get("batch") is None or not entry["method"].startswith("telephony."):
            continue
        params = entry["params"]
        call_id = params.get("CALL_ID") or external.get(params.get("EXTERNAL_CALL_ID"))
        found[str(call_id)].append(entry)
    return found


def test_one_portals_batches_go_side_by_side_each_call_whole_and_in_order(
    live_app: LiveApp,
) -> None:
    """200 whole calls (1,000 commands: 20 batches) of one portal that takes a second to answer
    each request: the batches are in flight together (two rounds of 10, both within the
    bucket's 40 free slots), not one after another (20 s); every call is in exactly one batch,
    its commands in the call's order; each finished once; no QUERY_LIMIT_EXCEEDED."""
    dev = live_app.dev
    portal = live_app.install("alpha")
    ids = whole_calls(live_app, portal, 200)
    faults.set_latency(dev, portal, LATENCY)

    started = time.monotonic()
    assert run_worker(live_app.app) == Counter(delivered=200)
    took = time.monotonic() - started

    sent = batches(dev, portal)
    assert len(sent) == 20  # 10 calls of at most 5 commands each
    # Sent one after another they would reach the portal a second apart at least (each waits
    # for the previous answer): 19 s from the first to the last. Side by side, a whole share
    # (10 batches) arrives within one answer's time, and all 20 within a few seconds.
    arrivals = sorted(b["ts"] for b in sent)
    assert min(b - a for a, b in zip(arrivals, arrivals[9:], strict=False)) < LATENCY
    assert arrivals[-1] - arrivals[0] < 20 * LATENCY / 2
    assert took < 20 * LATENCY / 2
    assert limit_errors(dev, portal) == 0

    by_call = commands_by_call(dev, portal)
    assert len(by_call) == 200
    for call_id, entries in by_call.items():
        assert len({e["batch"] for e in entries}) == 1, f"{call_id} went in two batches"
        methods = [e["method"] for e in entries]  # journal order: the order the portal ran them
        assert methods[0] == "telephony.externalcall.register"
        assert methods[-1] == "telephony.externalcall.finish"
        assert set(methods[1:-1]) <= {"telephony.externalcall.show", "telephony.externalcall.hide"}
        seqs = [e["seq"] for e in entries]
        assert seqs == sorted(seqs)
    assert set(finished_ids(portal).values()) == {1} and len(portal.statistics) == 200
    assert {row.state for row in calls(live_app, ids)} == {CallState.DELIVERED}


def test_no_more_batches_at_once_than_the_bucket_has_room_for(live_app: LiveApp) -> None:
    """The portal's bucket is nearly full (three requests of room, a busy spell before): the
    batches it has room for go side by side, the others wait for the bucket to drain (the
    throttle's 1.8/s) instead of crowding the portal; no QUERY_LIMIT_EXCEEDED although the
    development portal's bucket is as full as ours says (and drains faster: 2/s)."""
    dev = live_app.dev
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, finished_requests(register_on_portal(dev, portal, 500)))
    pid = portal_id(live_app, portal)
    with live_app.app.app_context(), get_db().write() as session:
        full = time.time() + (STANDARD.burst - 2.5) / STANDARD.rate  # room for two requests
        session.merge(PortalThrottle(portal_id=pid, theoretical_arrival=full, blocked_until=0.0))
    with dev.lock:  # the portal's own bucket as full as ours (its burst is 50, ours 40)
        portal.bucket.level = portal.bucket.burst - 2.5
        portal.bucket.updated = dev.now()
    faults.set_latency(dev, portal, LATENCY)

    assert run_worker(live_app.app) == Counter(delivered=500)

    arrivals = sorted(b["ts"] for b in batches(dev, portal))
    assert len(arrivals) == 10
    # Those the bucket had room for went together (two, more if it drained while the test set
    # up: 1.8 a second); the others only as it drained, the last well after the first answers;
    # and the portal, whose bucket was as full, refused none of them.
    assert arrivals[1] - arrivals[0] < LATENCY
    assert arrivals[-1] - arrivals[0] >= LATENCY
    assert limit_errors(dev, portal) == 0
    assert set(finished_ids(portal).values()) == {1} and len(portal.statistics) == 500
    assert {row.state for row in calls(live_app, ids)} == {CallState.DELIVERED}


def test_the_claim_books_a_slot_per_batch_and_taken_over_calls_are_not_sent(
    live_app: LiveApp,
) -> None:
    """The claim leases a portal's share and books one throttle slot per batch in the same
    transaction (so the next claim sees them taken); calls another worker took over once our
    lease ran out (a 0.4 s lease here) are not sent by us: a lease older than a quarter of its
    length is renewed, and checked, right before sending (outbox.FRESH_CLAIM)."""
    dev = live_app.dev
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, finished_requests(register_on_portal(dev, portal, 100)))
    pid = portal_id(live_app, portal)
    lease = 0.4
    worker = Worker(live_app.app, worker_id="ours", policy=TEST_POLICY, lease=lease)
    with live_app.app.app_context():
        with get_db().write() as session:  # a quiet spell: the bucket is empty
            session.merge(PortalThrottle(portal_id=pid, theoretical_arrival=0.0, blocked_until=0))
        before = time.time()
        claimed = outbox.claim_round(
            get_db(),
            worker_id="ours",
            now=utcnow(),
            lease=lease,
            max_portals=1,
            max_batches=2,
            book=True,
        ).calls[pid]
        after = time.time()
        with get_db().read() as session:
            row = session.get(PortalThrottle, pid)
            assert row is not None
            booked = row.theoretical_arrival
        assert Counter(call.batch for call in claimed) == Counter({0: 50, 1: 50})
        assert all(before <= (call.send_at or 0) <= after for call in claimed)  # now, both
        two = 2 / STANDARD.rate  # two requests in an empty bucket: both go now
        assert before + two <= booked <= after + two
        second = [call.id for call in claimed if call.batch == 1]
        time.sleep(lease)  # our lease ran out (we were slow): another worker took the second over
        with get_db().write() as session:
            session.execute(update(Call).where(Call.id.in_(second)).values(leased_by="theirs"))
        counts = PortalDelivery(worker.ctx, pid, claimed).run()
    assert counts == Counter(delivered=50)
    assert len(batches(dev, portal)) == 1 and len(portal.statistics) == 50
    rows = {row.id: row for row in calls(live_app, ids)}
    assert {rows[i].state for i in second} == {CallState.DELIVERING}
    assert {rows[i].leased_by for i in second} == {"theirs"}


def test_the_round_reads_the_portal_once_for_its_view_and_its_tokens(
    live_app: LiveApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's portal state (tokens, address, limits) comes with the round's portal view:
    the batches do not read the portal again."""
    portal = live_app.install("alpha")
    queue(live_app, portal, finished_requests(register_on_portal(live_app.dev, portal, 120)))
    from b24app.portals.store import InstallationStore

    reads = Counter[str]()
    original = InstallationStore.portal_state

    def counted(self: InstallationStore, member_id: str) -> Any:
        reads[member_id] += 1
        return original(self, member_id)

    monkeypatch.setattr(InstallationStore, "portal_state", counted)
    assert run_worker(live_app.app) == Counter(delivered=120)
    assert reads[portal.member_id] == 0  # three batches, no read of their own
    assert len(portal.statistics) == 120


# --- the rule ------------------------------------------------------------------------------------


def test_free_slots_are_the_burst_less_what_the_bucket_holds() -> None:
    limits = Limits(rate=2.0, burst=10)
    now = 1000.0
    assert free_slots(0.0, 0.0, now, limits) == 10  # a quiet spell: the whole burst
    times, arrival = next_slots(0.0, 0.0, now, limits, 4)
    assert times == [now] * 4  # within the burst: all at once
    assert free_slots(arrival, 0.0, now, limits) == 6
    assert free_slots(arrival, 0.0, now + 1.0, limits) == 8  # two drained in a second
    assert free_slots(arrival, now + 5, now, limits) == 0  # blocked (QUERY_LIMIT_EXCEEDED)
    times, arrival = next_slots(arrival, 0.0, now, limits, 7)
    assert times[:6] == [now] * 6 and times[6] == pytest.approx(now + 0.5)
    assert free_slots(arrival, 0.0, now, limits) == 0
    assert next_slot(arrival, 0.0, now, limits)[0] == pytest.approx(now + 1.0)


def test_a_portals_batches_in_flight_stay_within_our_burst() -> None:
    """The bound the worker keeps: a portal's batches in flight never exceed the throttle's
    burst, which stays below Bitrix24's bucket (limits.md: 50 on standard plans)."""
    assert BATCHES_PER_ROUND <= BATCHES_IN_FLIGHT <= STANDARD.burst < 50
