"""The whole call at scale (issue 12, "Done when"): 1,000 calls on one portal, each with its whole
life — start, ring to 5 employees, answer, finish, recording — delivered at standard limits.

The calls come from the PBX simulator (b24app/pbx/simulate.py, `play()`), through the real PBX
API with the portal's key: ring groups of five, one answers, a wav recording uploaded as `FILE`,
and as a real PBX's webhooks arrive, some events repeated, late or out of order (`--disorder`).
That part is not timed (its rate is printed). The clock covers the worker's own loop until nothing
is due (`Worker(app).run(once=True)`, what `flask worker --once` runs), on a portal with standard
limits (the devportal's bucket: 2 requests/s, burst 50) and an added REST latency
(`faults.set_latency`, default 0.1 s).

Figures, from the development portal's side (its journal):
- REST requests used (a batch is one) against one request per event (5 per call: 5,000);
- QUERY_LIMIT_EXCEEDED answers (goal: 0);
- every event once: per call exactly one successful register (EXTERNAL_CALL_ID = PBX_CALL_ID),
  finish and attachRecord, and show / hide at most once (a card is not opened for a call that is
  over by the time it is delivered, as in this backlog: the counts are printed);
- in order: per call register < show < hide < finish < attachRecord in the journal's order;
- the finish's employee is the one who answered (`PORTAL_USER_ID`).

    .venv/bin/python -m benchmarks.lifecycle [--calls 1000] [--database-url postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from b24app.delivery.worker import DEFAULT_THREADS, Worker
from b24app.pbx import simulate
from benchmarks.environment import World, world
from devportal import faults
from devportal.state import DevPortal, DevUser

RING = 5  # employees rung per call
EVENTS_PER_CALL = 5  # start, ring, answer, finish, record
ORDER = ("register", "show", "hide", "finish", "attachrecord")
ONCE = ("register", "finish", "attachrecord")
# A card need not open or close for a call that is over by the time it is delivered: show and
# hide go when they still change what employees see, at most once each here.
ELIDABLE = ("show", "hide")
STANDARD_RATE, STANDARD_BURST = 2.0, 50  # limits.md; the devportal's default bucket
DELIVERY_TIMEOUT = 1800.0  # seconds; a worker run longer than this is stopped


def employees(count: int = 8) -> list[DevUser]:
    """A call centre: an admin and `count` operators with extensions 101, 102, …"""
    return [DevUser(1, "Anna", "Admin", admin=True, extension="100")] + [
        DevUser(n + 2, f"Operator{n + 1}", "Line", extension=str(101 + n)) for n in range(count)
    ]


@dataclass
class Seen:
    """What the development portal saw of one portal since `first_seq`."""

    requests: Counter[str] = field(default_factory=Counter)  # HTTP requests by method
    commands: Counter[str] = field(default_factory=Counter)  # successful commands by method
    limit_errors: int = 0
    other_errors: Counter[str] = field(default_factory=Counter)
    steps: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))


def seen(w: World, portal: DevPortal, first_seq: int) -> Seen:
    """Each successful telephony step, by CALL_ID, with its journal position."""
    dev = w.devportal.state
    with dev.lock:
        entries = [
            e for e in dev.journal[first_seq - 1 :] if e.get("member_id") == portal.member_id
        ]
        by_external = {
            s["EXTERNAL_CALL_ID"]: s["CALL_ID"] for s in portal.statistics if s["EXTERNAL_CALL_ID"]
        }
    result = Seen()
    for entry in entries:
        method = str(entry.get("method", ""))
        if entry.get("http_method"):
            result.requests[method] += 1
        error = entry.get("error")
        if error == "QUERY_LIMIT_EXCEEDED":
            result.limit_errors += 1
        elif error:
            result.other_errors[f"{method}: {error}"] += 1
        if error or entry.get("status") != 200 or not method.startswith("telephony."):
            continue
        step = method.rsplit(".", 1)[-1]
        result.commands[step] += 1
        params = entry.get("params") or {}
        call_id = (
            by_external.get(params.get("EXTERNAL_CALL_ID"))
            if step == "register"
            else params.get("CALL_ID")
        )
        if call_id:
            result.steps[str(call_id)].append((int(entry["seq"]), step))
    return result


def check_calls(
    w: World, portal: DevPortal, summary: simulate.Summary, view: Seen
) -> dict[str, int]:
    """Per call: register, finish and attachRecord once, show and hide at most once, in the
    call's order, finished by the one who answered."""
    users = {u.extension: u.id for u in portal.users.values() if u.extension}
    stats = {s["EXTERNAL_CALL_ID"]: s for s in portal.statistics}
    problems: Counter[str] = Counter()
    for result in summary.call_results:
        stat = stats.get(result.pbx_call_id)
        if stat is None:
            problems["never finished"] += 1
            continue
        if stat["PORTAL_USER_ID"] != users.get(result.user):
            problems["finished with another employee"] += 1
        steps = [step for _, step in sorted(view.steps.get(str(stat["CALL_ID"]), []))]
        counts = Counter(steps)
        if any(counts[step] != 1 for step in ONCE) or any(counts[s] > 1 for s in ELIDABLE):
            problems["a step missing or repeated"] += 1
        elif steps != [step for step in ORDER if step in counts]:
            problems["steps out of order"] += 1
    return dict(problems)


def run(calls: int, latency: float, disorder: float, database_url: str | None) -> bool:
    print(
        f"whole-call lifecycle: {calls} calls on one portal (standard limits), each start, ring "
        f"to {RING}, answer, finish, recording; REST latency {latency * 1000:.0f} ms"
    )
    with world(database_url) as w:
        portal = w.install("solo", users=employees())
        options = simulate.Options(
            calls=calls,
            rate=0,
            seed=12,
            concurrency=8,
            extensions=[u.extension for u in portal.users.values() if u.id > 1],
            mix={"ring_group": 1},
            ring_size=RING,
            recordings="upload",
            disorder=disorder,
            gap=0,
            late_delay=0.2,
        )
        summary = simulate.play(w.url, w.pbx_key(portal), options)
        print(
            f"  PBX side (simulator, not timed): {summary.events_sent} events in "
            f"{summary.seconds:.1f} s ({summary.events_sent / summary.seconds:.0f}/s); answers "
            f"{summary.by_status}; repeated {summary.repeated}, late {summary.late}, out of "
            f"order {summary.out_of_order}; 409 {summary.conflicts}"
        )
        if not summary.ok:
            print(f"  the intake refused events: {summary.problems[:5]}")
            return False
        faults.set_latency(w.devportal.state, portal, latency)
        w.quiet_spell(portal)
        first_seq = len(w.devportal.state.journal) + 1
        worker = Worker(w.app, threads=DEFAULT_THREADS)
        started = time.perf_counter()
        outcomes = worker.run(once=True)
        wall = time.perf_counter() - started
        view = seen(w, portal, first_seq)
        problems = check_calls(w, portal, summary, view)
    return report(calls, wall, outcomes, view, problems)


def report(
    calls: int, wall: float, outcomes: Counter[str], view: Seen, problems: dict[str, int]
) -> bool:
    used = sum(view.requests.values())
    naive = calls * EVENTS_PER_CALL
    ideal = max(0.0, (used - STANDARD_BURST) / STANDARD_RATE)
    ok = not problems and view.limit_errors == 0
    print(f"  worker outcomes: {dict(outcomes)}")
    print(
        f"  REST requests used: {used} ({dict(view.requests)}) against {naive} at one request "
        f"per event: {used / naive:.1%}, {naive / max(used, 1):.1f} events per request"
    )
    print(f"  commands run: {dict(view.commands)}")
    print(f"  QUERY_LIMIT_EXCEEDED: {view.limit_errors}; other errors: {dict(view.other_errors)}")
    print(f"  every event once and in order: {problems or 'yes'} ({calls} calls checked)")
    print(
        f"  wall {wall:.1f} s; the rate limit's floor for {used} requests at "
        f"{STANDARD_RATE:.0f}/s after a burst of {STANDARD_BURST}: {ideal:.1f} s; "
        f"{calls / wall:.1f} calls/s"
    )
    print("  goal met" if ok else "  goal NOT met")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.1, help="added REST latency, s")
    parser.add_argument("--disorder", type=float, default=0.2, help="simulator's --disorder")
    parser.add_argument("--database-url", default=None)
    args: Any = parser.parse_args(argv)
    return 0 if run(args.calls, args.latency, args.disorder, args.database_url) else 1


if __name__ == "__main__":
    raise SystemExit(main())
