"""The settings page's "send a test call", bounded so that it cannot hold the web threads that
every portal's PBX intake shares.

A test call holds its web thread until the PBX answers, at most webhooks.DEADLINE + MARGIN
(9 s). A web process has only GUNICORN_THREADS threads (4 by default) for every portal's
requests, and anyone can install the app on a portal of their own and point its originate URL at
a server that answers slowly. So, in each web process:

- one test call in flight per portal: a second one (another tab, a double click) is refused at
  once, `running`, with the seconds until the first one ends at the latest;
- at most AT_ONCE test calls in flight across all portals: beyond it `busy`, with the seconds
  until the first of them ends at the latest. With the default 4 threads that leaves 3 to the
  intake whatever test calls are made. A test call to a working PBX takes a fraction of a
  second, so an admin meets this only when another portal's test is waiting on a slow PBX in the
  same process at the same moment, and is told to try again in a few seconds.

And PER_PORTAL_PER_MINUTE test calls a minute per portal (a moving window), counted
where the app's other rate limits are (b24app/ratelimit.py: memory per process, or Redis for
the whole fleet): beyond it `limited`, with the seconds until one more is allowed.

The slots are per process: with P web processes a portal may have up to P test calls in flight
(one each), each still bounded by the deadline and the rate.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.strategies import RateLimiter

from b24app.originate import webhooks

AT_ONCE = 1  # test calls in flight per web process, across all portals
PER_PORTAL_PER_MINUTE = 10  # test calls a portal may send a minute
LONGEST = webhooks.DEADLINE + webhooks.MARGIN  # seconds one test call may hold its thread


@dataclass(frozen=True)
class Refused:
    """Why a test call may not start now: `running` (this portal's previous one has not ended),
    `busy` (AT_ONCE in flight) or `limited` (PER_PORTAL_PER_MINUTE sent); `retry_after`, whole
    seconds until it may at the latest."""

    reason: str
    retry_after: int


class Trials:
    """The test calls in flight in this process: `begin` before sending, `end` after (always)."""

    def __init__(
        self,
        rates: RateLimiter,
        *,
        at_once: int = AT_ONCE,
        per_minute: int = PER_PORTAL_PER_MINUTE,
    ) -> None:
        self.rates, self.at_once = rates, at_once
        self.rate = RateLimitItemPerMinute(per_minute)
        self._lock = threading.Lock()
        self._ends: dict[str, float] = {}  # member_id -> when its test call ends at the latest

    def begin(self, member_id: str) -> Refused | None:
        """Take a slot for `member_id`'s test call, or say why not (nothing taken then; a test
        call not sent is not counted in the portal's rate). Raises what the limiter's storage
        raises (Redis down), with nothing taken."""
        now = time.monotonic()
        with self._lock:
            if member_id in self._ends:
                return Refused("running", _seconds(self._ends[member_id] - now))
            if len(self._ends) >= self.at_once:
                return Refused("busy", _seconds(min(self._ends.values()) - now))
            self._ends[member_id] = now + LONGEST
        try:
            allowed = self.rates.hit(self.rate, "originate-test", member_id)
        except Exception:  # the limiter's storage (Redis) failed: the slot must not stay taken
            self.end(member_id)
            raise
        if not allowed:
            self.end(member_id)
            reset = self.rates.get_window_stats(self.rate, "originate-test", member_id).reset_time
            return Refused("limited", _seconds(reset - time.time()))
        return None

    def end(self, member_id: str) -> None:
        with self._lock:
            self._ends.pop(member_id, None)


def _seconds(left: float) -> int:
    return max(1, math.ceil(left))
