"""Failure drills (issue 6): the whole system in real processes, under faults, judged by what the
development portal saw. Helpers shared by the drills: a PBX that sends calls, and the judge.

The PBX (`Pbx`) behaves as a good client of our API: it sends each finished call until it gets
202, waits as `Retry-After` says on 429 and 503, moves to the next web process when one does not
answer, and keeps every answer it got, so a drill can check what the web said under a fault.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from devportal.state import DevPortal

FINISH = "/pbx/v1/calls/finish"
_numbers = itertools.count(1)


@dataclass
class Call:
    """One finished call as the PBX sends it, and what the web answered each time."""

    portal: str  # development portal code
    key: str  # the portal's PBX key
    body: dict[str, Any]
    answers: list[tuple[int, str | None]] = field(default_factory=list)  # (status, Retry-After)
    public_id: str | None = None  # our id, once accepted
    accepted_at: float | None = None

    @property
    def pbx_call_id(self) -> str:
        return str(self.body["PBX_CALL_ID"])

    @property
    def identity(self) -> str:
        """How the portal's statistics name this call: the CALL_ID the PBX registered, else the
        EXTERNAL_CALL_ID the worker registered it with (our PBX_CALL_ID)."""
        return str(self.body.get("CALL_ID") or self.body["PBX_CALL_ID"])


def unregistered_call(portal: str, key: str, tag: str) -> Call:
    """A call the PBX never registered: the worker registers and finishes it in one batch."""
    n = next(_numbers)
    return Call(
        portal,
        key,
        {
            "PBX_CALL_ID": f"{tag}-{portal}-{n}",
            "PHONE_NUMBER": f"+7495{n:07d}",
            "TYPE": 1 + n % 2,
            "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
            "USER_PHONE_INNER": "101",
            "DURATION": 10 + n % 300,
            "STATUS_CODE": "ANSWER",
        },
    )


def registered_call(portal: str, key: str, tag: str, call_id: str) -> Call:
    """A call the PBX registered at its start (CALL_ID known): only finish is left."""
    n = next(_numbers)
    return Call(
        portal,
        key,
        {"PBX_CALL_ID": f"{tag}-{portal}-{n}", "CALL_ID": call_id, "USER_ID": 2, "DURATION": 42},
    )


def interleave(per_portal: Sequence[Sequence[Call]]) -> list[Call]:
    """Calls of all portals mixed, as many PBXs send them at once."""
    return [
        call for group in itertools.zip_longest(*per_portal) for call in group if call is not None
    ]


class Pbx:
    """Sends calls to our web processes from a few threads, each call until accepted."""

    def __init__(self, urls: Sequence[str], *, threads: int = 8, max_wait: float = 5.0) -> None:
        self.urls = list(urls)
        self.threads = threads
        self.max_wait = max_wait  # cap on one Retry-After wait
        self._local = threading.local()
        self._next = itertools.count()

    def send(self, calls: Iterable[Call], *, deadline: float, max_tries: int = 30) -> Counter[int]:
        """Send every call (each until 202, at most `max_tries` times or until `deadline`, a
        time.monotonic() value); return how many answers of each status came back."""
        statuses: Counter[int] = Counter()
        lock = threading.Lock()

        def one(call: Call) -> None:
            for answer in self._send_one(call, deadline=deadline, max_tries=max_tries):
                with lock:
                    statuses[answer] += 1

        with ThreadPoolExecutor(self.threads, thread_name_prefix="pbx") as pool:
            list(pool.map(one, calls))
        return statuses

    def _send_one(self, call: Call, *, deadline: float, max_tries: int) -> list[int]:
        seen: list[int] = []
        for _ in range(max_tries):
            if time.monotonic() > deadline:
                break
            status, retry_after = self.post_once(call)
            seen.append(status)
            if status == 202:
                break
            if status in (429, 503):
                time.sleep(min(float(retry_after or 1), self.max_wait))
            elif status == 0:  # no answer from that web process: the next one
                time.sleep(0.2)
            else:
                break  # a refusal a PBX cannot fix by sending again
        return seen

    def post_once(self, call: Call) -> tuple[int, str | None]:
        """One POST to the next web process; (status, Retry-After), status 0 without answer."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        url = self.urls[next(self._next) % len(self.urls)] + FINISH
        try:
            response = session.post(
                url,
                json=call.body,
                headers={"Authorization": f"Bearer {call.key}"},
                timeout=15,
            )
        except requests.RequestException:
            call.answers.append((0, None))
            return 0, None
        retry_after = response.headers.get("Retry-After")
        call.answers.append((response.status_code, retry_after))
        if response.status_code == 202:
            call.public_id = response.json()["id"]
            call.accepted_at = call.accepted_at or time.monotonic()
        return response.status_code, retry_after


@dataclass
class Verdict:
    """What the development portal's statistics say about a set of calls."""

    expected: int
    finished: int  # statistics records of these calls
    distinct: int
    twice: list[str]  # identities finished more than once
    missing: list[str]  # identities never finished
    strangers: int  # records of calls we never sent

    @property
    def exactly_once(self) -> bool:
        return self.finished == self.distinct == self.expected and not self.strangers


def judge(portals: Iterable[DevPortal], calls: Iterable[Call]) -> Verdict:
    """Count each sent call's statistics records on its portal: the portal is the judge."""
    expected = {(c.portal, c.identity) for c in calls}
    seen: Counter[tuple[str, str]] = Counter()
    for portal in portals:
        for record in portal.statistics:
            # a PBX-registered call has no EXTERNAL_CALL_ID: its CALL_ID names it
            identity = record.get("EXTERNAL_CALL_ID") or record["CALL_ID"]
            seen[(portal.code, identity)] += 1
    return Verdict(
        expected=len(expected),
        finished=sum(n for key, n in seen.items() if key in expected),
        distinct=len(set(seen) & expected),
        twice=sorted(f"{p}/{i}" for (p, i), n in seen.items() if n > 1)[:20],
        missing=sorted(f"{p}/{i}" for p, i in expected - set(seen))[:20],
        strangers=sum(n for key, n in seen.items() if key not in expected),
    )
