"""A per-portal request schedule shared by every thread, process and host: the rule.

Bitrix24 counts requests per portal in a leaky bucket (limits.md: +1 per request, draining 2/s,
503 QUERY_LIMIT_EXCEEDED above 50; Enterprise 5/s and 250). The browser's BX24.js calls on the
same portal share that bucket, so we aim below it: by default 1.8/s with a burst of 40 (4.5/s and
225 on Enterprise).

The schedule is GCRA (the "virtual scheduling" form of a leaky bucket): per portal, the
theoretical arrival time of the next request and a time before which nobody sends. `next_slot` is
the rule; where those two numbers are kept (one row per portal, so every process shares them) is
the installation store's business (portals/throttle.py), handed to the client as a `Schedule`.
Written here because the maintained rate-limit libraries limit *incoming* requests per key and
reject; we need to *schedule* outgoing ones (wait, don't fail) across processes.

A question someone is waiting on (`PortalClient.ask`: a PBX asking who should take a caller)
must not wait and must not crowd out the delivery, so it takes a slot only by `spare_slot`: when
it can go at once and leaves `keep_free` requests of the burst free, else it is not sent at all.
The worker's own requests always book with `next_slot` and wait; a question never waits.

The worker sends several batches of one portal side by side (delivery/worker.py): as many as
`free_slots` says can go now, each booked with `next_slot` like any request (`next_slots` books
them together). A `batch` is one request for the bucket (limits.md: "the limit counts HTTP
requests"; digest §4.1), so K batches in flight take K slots, never more than the burst.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from b24app import metrics


@dataclass(frozen=True)
class Limits:
    rate: float  # requests per second, sustained
    burst: int  # requests that may go at once after a quiet spell


STANDARD = Limits(rate=1.8, burst=40)
ENTERPRISE = Limits(rate=4.5, burst=225)


def next_slot(
    theoretical_arrival: float, blocked_until: float, now: float, limits: Limits
) -> tuple[float, float]:
    """GCRA: (when this request may be sent, the new theoretical arrival), all in epoch seconds."""
    interval = 1.0 / limits.rate
    tolerance = (limits.burst - 1) * interval
    arrival = max(theoretical_arrival, now)
    send_at = max(now, arrival - tolerance, blocked_until)
    return send_at, max(arrival, send_at) + interval


def next_slots(
    theoretical_arrival: float, blocked_until: float, now: float, limits: Limits, count: int
) -> tuple[list[float], float]:
    """`next_slot` `count` times in a row: (when each of the requests may be sent, the new
    theoretical arrival), epoch seconds. The first ones go at once while the burst lasts."""
    times: list[float] = []
    for _ in range(count):
        send_at, theoretical_arrival = next_slot(theoretical_arrival, blocked_until, now, limits)
        times.append(send_at)
    return times, theoretical_arrival


def free_slots(theoretical_arrival: float, blocked_until: float, now: float, limits: Limits) -> int:
    """How many requests could be sent at once now without waiting (0 while blocked after a
    QUERY_LIMIT_EXCEEDED): the burst less what the bucket still holds. Epoch seconds in."""
    if blocked_until > now:
        return 0
    in_bucket = max(0.0, theoretical_arrival - now) * limits.rate
    return max(0, int(limits.burst - in_bucket + 1e-9))


def limits_of(enterprise: bool) -> Limits:
    """The portal's limits by its plan (limits.md: Enterprise 5/s and 250, others 2/s and 50)."""
    return ENTERPRISE if enterprise else STANDARD


def spare_slot(
    theoretical_arrival: float, blocked_until: float, now: float, limits: Limits, *, keep_free: int
) -> float | None:
    """GCRA for a request that may neither wait nor crowd out the others (a PBX asking who
    takes a caller, while the worker has calls to deliver): the new theoretical arrival if the
    request can be sent now and, once it is, at least `keep_free` requests of the burst are
    still free; else None (nothing is booked). Epoch seconds."""
    if blocked_until > now:
        return None
    send_at, arrival = next_slot(theoretical_arrival, blocked_until, now, limits)
    in_bucket = (arrival - now) * limits.rate  # requests in the bucket once this one is sent
    if send_at > now or limits.burst - in_bucket < keep_free:
        return None
    return arrival


class Schedule(Protocol):
    """Where the portals' schedules are kept (shared by every process that calls them)."""

    def reserve(self, portal_id: int, limits: Limits, *, now: float | None = None) -> float:
        """Book the next request slot (`next_slot`); return the seconds to wait before sending."""

    def reserve_spare(
        self, portal_id: int, limits: Limits, *, keep_free: int, now: float | None = None
    ) -> bool:
        """Book a slot only if `spare_slot` gives one (it goes now, `keep_free` requests of the
        burst stay free); return whether it did."""

    def block(self, portal_id: int, until: float) -> None:
        """Nobody sends to this portal before `until` (epoch seconds; QUERY_LIMIT_EXCEEDED)."""


def wait(schedule: Schedule, portal_id: int, limits: Limits) -> float:
    """Reserve a slot and sleep until it; return the seconds waited."""
    delay = schedule.reserve(portal_id, limits)
    metrics.THROTTLE_WAIT.observe(max(delay, 0.0))
    if delay > 0:
        time.sleep(delay)
    return delay
