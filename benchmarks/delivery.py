"""Delivery throughput: ended calls finished in Bitrix24 by the worker, in batches, within limits.

Scenarios in one run, each on its own development portals with an added REST latency
(`faults.set_latency`, default 0.1 s per request) and standard limits (the devportal's bucket:
2/s, burst 50; our throttle: 1.8/s, burst 40):

0. the baseline for one portal: fast_bitrix24 (a benchmark-only dependency: `pip install
   fast_bitrix24`, or `pip install -e .[bench]`) finishing the same 2,000 registered calls
   through its `call` (batches of 50 sent side by side within its leaky bucket of 50 at 2/s), in
   a process of its own, against the same development portal at the same latency;
1. one portal, 2,000 calls: 40 batch requests, all inside the burst; goal: within 2 ×
   fast_bitrix24's time (the old ideal, 40 × latency one batch after another, is printed too);
2. 200 portals × 20 calls: one batch each, the worker's threads deliver portals side by side
   (ideal: 200 × latency / threads; goal ≤ 1.5 × the ideal);
3. the naive way: one `telephony.externalCall.finish` request per call through `PortalClient`
   (so still throttled), on a sample, extrapolated to 2,000 calls.

`--before DIR` runs scenarios 1 and 2 a second time in the same run with the worker process
importing b24app from DIR (an earlier commit's package: `git archive <commit> b24app | tar -x
-C DIR`),
so before and after are measured side by side, against the same development portal.
The development portal's own processing is reported apart: its process's CPU seconds during
each timed part (it runs in this process; the worker and fast_bitrix24 run in their own).

Calls are registered on the devportal first (its own register handler, straight into its state,
as a PBX would have done through us at call start) and queued through the real intake
(`POST /pbx/v1/calls/finish` with the portal's PBX key), all before the clock starts. The clock
covers the real worker loop only: `Worker(app).run(once=True)`, what `flask worker --once` runs.

The worker runs in a process of its own, as deployed, started and warmed up before the clock:
it delivers WARM_UP calls of a portal of its own first, as a worker that has been running has
(`--in-process` runs it in this one instead, cold). The development portal's time on each request is
taken on its side (environment.ServedTimes), so the figures split the wall time between the
portal (its added latency and its own processing) and us. `BENCH_PY_SPY=/path/to/py-spy`
records the worker process with py-spy into `BENCH_PY_SPY_OUT`.

Checks, from the devportal's side: every call finished exactly once (`portal.statistics`: the
registered CALL_IDs, each once), QUERY_LIMIT_EXCEEDED answers in its journal (goal: none).

    .venv/bin/python -m benchmarks.delivery [--database-url postgresql+psycopg://…]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests
from sqlalchemy import func, select

from b24app.bitrix.errors import BitrixError
from b24app.db import get_db
from b24app.delivery.batching import FINISH, MAX_COMMANDS
from b24app.delivery.worker import DEFAULT_THREADS, Worker
from b24app.models import Call
from b24app.wiring import store_of
from benchmarks.environment import CLIENT_ID, World, percentile, world
from devportal import faults
from devportal.methods import Call as DevCall
from devportal.methods.telephony import external_call_register
from devportal.state import DevPortal, DevState

GOAL_RATIO = 1.5  # many portals: wall time within 1.5 × the ideal
GOAL_FAST = 2.0  # one portal: wall time within 2 × fast_bitrix24's for the same calls
# (label, folder to import b24app from in the worker process: None for this checkout)
RUNS: list[tuple[str, str | None]] = [("after", None)]
INTAKE_THREADS = 8
DELIVERY_TIMEOUT = 240.0  # seconds; a worker run longer than this is stopped
WARM_UP = 5  # calls a worker process delivers before the clock, as a running worker has
NAIVE_THREADS = 8  # calls ending side by side, each finished by its own request
# A generous installer limit, so set-up (200 installs from one address) is not slowed by it; the
# timed part does not pass through it. The PBX API's default limits take the queued calls as is.
OPEN_DOOR = {"B24APP_INSTALL_RATE_LIMIT": "100000 per minute"}

PY_SPY = os.environ.get("BENCH_PY_SPY")  # a py-spy binary: profile the worker process with it
PY_SPY_OUT = os.environ.get("BENCH_PY_SPY_OUT", "worker-profile.txt")
PY_SPY_FLAGS = os.environ.get("BENCH_PY_SPY_FLAGS", "").split()

_numbers = itertools.count(1)


# --- set-up (not timed) -------------------------------------------------------------------------


def register_calls(dev: DevState, portal: DevPortal, count: int) -> list[str]:
    """Calls registered on the portal by our app, with the devportal's own register handler."""
    token = next(
        t
        for t in dev.access_tokens.values()
        if t.member_id == portal.member_id and t.client_id == CLIENT_ID
    )
    call = DevCall(dev, portal, token, "telephony.externalCall.register")
    with dev.lock:
        return [
            external_call_register(
                call,
                {"USER_ID": 2, "PHONE_NUMBER": f"7906{next(_numbers):07d}", "TYPE": 2, "SHOW": 0},
            )["CALL_ID"]
            for _ in range(count)
        ]


def finish_body(call_id: str) -> dict[str, Any]:
    """What a PBX posts when a registered call ends (a distinct PBX_CALL_ID each)."""
    return {
        "CALL_ID": call_id,
        "PBX_CALL_ID": f"bench-{next(_numbers)}",
        "USER_ID": 2,
        "DURATION": 42,
        "STATUS_CODE": "200",
    }


def queue_through_intake(w: World, jobs: Sequence[tuple[str, dict[str, Any]]]) -> float:
    """POST each (key, body) to the intake; every answer must be 202. Returns the seconds."""
    started = time.perf_counter()
    url = f"{w.url}/pbx/v1/calls/finish"

    def post(job: tuple[str, dict[str, Any]]) -> int:
        key, body = job
        headers = {"Authorization": f"Bearer {key}"}
        return requests.post(url, json=body, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(INTAKE_THREADS) as pool:
        statuses = Counter(pool.map(post, jobs))
    if set(statuses) != {202}:
        raise RuntimeError(f"the intake answered {dict(statuses)}")
    return time.perf_counter() - started


def prepare(
    w: World, portals: Sequence[DevPortal], per_portal: int, latency: float, *, quiet: bool = False
) -> dict:
    """Register and queue `per_portal` calls on each portal; set the latency. Not timed."""
    registered: dict[str, list[str]] = {}
    jobs: list[tuple[str, dict[str, Any]]] = []
    for portal in portals:
        ids = register_calls(w.devportal.state, portal, per_portal)
        registered[portal.code] = ids
        key = w.pbx_key(portal)
        jobs += [(key, finish_body(call_id)) for call_id in ids]
    seconds = queue_through_intake(w, jobs)
    if not quiet:
        print(f"  queued {len(jobs)} calls through the intake in {seconds:.1f} s (not timed)")
    for portal in portals:
        faults.set_latency(w.devportal.state, portal, latency)
    return registered


# --- the timed part -----------------------------------------------------------------------------


@dataclass
class Delivery:
    wall: float  # the worker loop's own wall time
    cpu: float  # CPU seconds the worker process spent in it (all its threads)
    outcomes: Counter[str]
    first_seq: int  # the devportal journal's first entry of the timed part
    started: float  # time.time() at the start, for the devportal's request times
    portal_seconds: list[float]  # the devportal's time on each batch request (latency included)
    portal_cpu: float = 0.0  # CPU seconds of this process (the devportal) meanwhile


def deliver(
    w: World,
    portals: Sequence[DevPortal],
    threads: int,
    *,
    child: subprocess.Popen[str] | None,
) -> Delivery:
    """The worker's own loop until nothing is due (`worker --once`), on quiet portals: in the
    worker process `child` (start_worker), or in this process when it is None."""
    w.quiet_spell(*portals)
    first_seq = len(w.devportal.state.journal) + 1
    portal_cpu = time.process_time()
    if child is None:
        started, wall, cpu, outcomes = _run_worker(w.app, threads)
    else:
        started, wall, cpu, outcomes = _go(child)
    portal_cpu = time.process_time() - portal_cpu
    served = w.portal_times.since(started, "/rest/batch.json")
    seconds = [s.seconds for s in served]
    return Delivery(wall, cpu, outcomes, first_seq, started, seconds, portal_cpu)


def _run_worker(app: Any, threads: int) -> tuple[float, float, float, Counter[str]]:
    """(started as time.time(), wall seconds, CPU seconds, outcomes) of `worker --once`."""
    worker = Worker(app, threads=threads)
    started, clock, cpu = time.time(), time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(1) as runner:  # bounded: stop the worker if it overruns
        future = runner.submit(worker.run, once=True)
        try:
            outcomes = future.result(timeout=DELIVERY_TIMEOUT)
        except TimeoutError:
            worker.stop()
            outcomes = future.result()
            outcomes["stopped (timeout)"] += 1
    return started, time.perf_counter() - clock, time.process_time() - cpu, outcomes


_warm_ups = itertools.count(1)


def start_worker(w: World, threads: int, code: str | None = None) -> subprocess.Popen[str]:
    """The worker in a process of its own, as deployed (the Procfile's `worker:`), so it shares
    no interpreter with the emulated portal. It starts, builds the app and warms up as a
    running worker is: it delivers WARM_UP calls of a portal of its own (its first queries
    configure SQLAlchemy's mappers and compile its statements, once per process), then says
    `ready` and runs only when told (`_go`): start-up and warm-up are not timed. Call it before
    queueing the scenario's calls. `code`: import b24app from there."""
    warm = w.install(f"warm{next(_warm_ups)}")
    prepare(w, [warm], WARM_UP, 0.0, quiet=True)
    env = {**os.environ, **{name: str(value) for name, value in w.settings_values.items()}}
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([code, here] if code else [here])
    command = [sys.executable, "-m", "benchmarks.delivery", "--child-worker"]
    command += ["--threads", str(threads)]
    if PY_SPY:
        profile = [PY_SPY, "record", *PY_SPY_FLAGS, "-r", "200", "--format", "raw"]
        command = [*profile, "-o", PY_SPY_OUT, "--", *command]
    child = subprocess.Popen(
        command,
        env=env,
        cwd=tempfile.gettempdir(),  # not this folder: PYTHONPATH decides where b24app comes from
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith(("code ", "warmed ")):
            print(f"  (worker process: {line.strip()})")
        if line.strip() == "ready":
            break
    else:
        raise RuntimeError(f"the worker process exited with {child.wait()}")
    return child


def _go(child: subprocess.Popen[str]) -> tuple[float, float, float, Counter[str]]:
    try:
        out, _ = child.communicate("go\n", timeout=DELIVERY_TIMEOUT + 30)
    except subprocess.TimeoutExpired:
        child.kill()
        raise
    report = next(line for line in out.splitlines() if line.startswith("RESULT "))
    data = json.loads(report.removeprefix("RESULT "))
    return data["started"], data["wall"], data["cpu"], Counter(data["outcomes"])


def child_worker(threads: int) -> None:
    """`--child-worker`: the settings come from the environment, like any worker process."""
    import b24app
    from b24app import create_app
    from b24app.config import load_settings

    app = create_app(load_settings(_env_file=None))
    print(f"code b24app from {os.path.dirname(os.path.dirname(b24app.__file__))}", flush=True)
    warmed = Worker(app, threads=threads).run(once=True)  # the warm-up portal's calls
    print(f"warmed up on {dict(warmed)}", flush=True)
    print("ready", flush=True)
    sys.stdin.readline()
    started, wall, cpu, outcomes = _run_worker(app, threads)
    result = {"started": started, "wall": wall, "cpu": cpu, "outcomes": dict(outcomes)}
    print("RESULT " + json.dumps(result), flush=True)


# --- checks -------------------------------------------------------------------------------------


@dataclass
class Seen:
    """What the devportal saw of one portal during the timed part."""

    requests: Counter[str]  # HTTP requests to its REST API, by method (a batch is one)
    commands: int  # commands run inside batches
    limit_errors: int  # QUERY_LIMIT_EXCEEDED answers
    finished: list[str]  # CALL_IDs in its statistics, with repeats
    finish_times: list[float]  # `_finished_at` of each
    missing: int  # registered calls never finished

    @property
    def duplicates(self) -> int:
        return len(self.finished) - len(set(self.finished))


def seen(w: World, portal: DevPortal, registered: Iterable[str], first_seq: int) -> Seen:
    dev = w.devportal.state
    with dev.lock:
        entries = [
            e for e in dev.journal[first_seq - 1 :] if e.get("member_id") == portal.member_id
        ]
        stats = list(portal.statistics)
    finished = [str(s["CALL_ID"]) for s in stats]
    return Seen(
        requests=Counter(e["method"] for e in entries if e.get("http_method")),
        commands=sum(1 for e in entries if e.get("batch")),
        limit_errors=sum(1 for e in entries if e.get("error") == "QUERY_LIMIT_EXCEEDED"),
        finished=finished,
        finish_times=[float(s["_finished_at"]) for s in stats],
        missing=len(set(registered) - set(finished)),
    )


def call_states(w: World) -> dict[str, int]:
    with w.app.app_context(), get_db().read() as session:
        rows = session.execute(select(Call.state, func.count()).group_by(Call.state))
        return {str(state): count for state, count in rows}


# --- the baseline: fast_bitrix24 ---------------------------------------------------------------


@dataclass
class FastRun:
    wall: float
    cpu: float  # CPU seconds of the fast_bitrix24 process in its run
    portal_cpu: float  # CPU seconds of this process (the devportal) meanwhile
    answers: int
    seen: Seen


def fast_baseline(w: World, calls: int, latency: float) -> FastRun | None:
    """fast_bitrix24 finishing `calls` registered calls of a fresh portal (`call` with a list of
    parameter sets: batches of 50 side by side within its bucket), in a process of its own that
    has imported it before the clock. None when fast_bitrix24 is not installed."""
    try:
        import fast_bitrix24  # noqa: F401
    except ImportError:
        print("\n[0] fast_bitrix24 is not installed: `pip install fast_bitrix24` to compare")
        return None
    portal = w.install("fast")
    ids = register_calls(w.devportal.state, portal, calls)
    token = next(
        value
        for value, t in w.devportal.state.access_tokens.items()
        if t.member_id == portal.member_id and t.client_id == CLIENT_ID
    )
    faults.set_latency(w.devportal.state, portal, latency)
    w.quiet_spell(portal)
    first_seq = len(w.devportal.state.journal) + 1
    url = f"{w.devportal.url}/p/{portal.code}/rest/"  # the portal's REST, auth in the body
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.delivery", "--child-fast"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(json.dumps({"url": url, "token": token, "ids": ids}) + "\n")
    child.stdin.flush()
    for line in child.stdout:
        if line.strip() == "ready":
            break
    else:
        raise RuntimeError(f"the fast_bitrix24 process exited with {child.wait()}")
    portal_cpu = time.process_time()
    out, _ = child.communicate("go\n", timeout=DELIVERY_TIMEOUT)
    portal_cpu = time.process_time() - portal_cpu
    data = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])
    return FastRun(
        data["wall"], data["cpu"], portal_cpu, data["answers"], seen(w, portal, ids, first_seq)
    )


def child_fast() -> None:
    """`--child-fast`: fast_bitrix24 as its README uses it with an application's token
    (`BitrixAsync(webhook, token_func=…)`, the webhook being the portal's REST address)."""
    import asyncio

    from fast_bitrix24 import BitrixAsync

    job = json.loads(sys.stdin.readline())

    async def token() -> str:
        return str(job["token"])

    items = [
        {"CALL_ID": call_id, "USER_ID": 2, "DURATION": 42, "STATUS_CODE": "200", "ADD_TO_CHAT": 0}
        for call_id in job["ids"]
    ]

    async def run() -> int:
        bitrix = BitrixAsync(job["url"], token_func=token, verbose=False)
        answers = await bitrix.call(FINISH, items)
        return len(answers)

    print("ready", flush=True)
    sys.stdin.readline()
    clock, cpu = time.perf_counter(), time.process_time()
    answers = asyncio.run(run())
    result = {
        "wall": time.perf_counter() - clock,
        "cpu": time.process_time() - cpu,
        "answers": answers,
    }
    print("RESULT " + json.dumps(result), flush=True)


# --- scenarios ----------------------------------------------------------------------------------


def _checked(s: Seen, calls: int) -> str:
    return (
        f"finished {len(set(s.finished))} distinct of {calls}; duplicates {s.duplicates}; "
        f"never finished {s.missing}; QUERY_LIMIT_EXCEEDED {s.limit_errors}"
    )


def one_portal(
    w: World, calls: int, latency: float, *, in_process: bool, fast: FastRun | None
) -> None:
    print(f"\n[1] one portal, {calls} calls, REST latency {latency * 1000:.0f} ms")
    if fast is not None:
        print(
            f"  fast_bitrix24: wall {fast.wall:.2f} s; its CPU {fast.cpu:.2f} s; the portal's "
            f"CPU meanwhile {fast.portal_cpu:.2f} s; REST requests {dict(fast.seen.requests)}, "
            f"{fast.answers} answers"
        )
        print(f"    {_checked(fast.seen, calls)}")
    for label, code in RUNS:
        portal = w.install(f"solo{label}")
        child = None if in_process else start_worker(w, DEFAULT_THREADS, code)
        registered = prepare(w, [portal], calls, latency)
        run = deliver(w, [portal], threads=DEFAULT_THREADS, child=child)
        s = seen(w, portal, registered[portal.code], run.first_seq)
        batches = math.ceil(calls / MAX_COMMANDS)
        old_ideal = batches * latency
        clean = not s.limit_errors and not s.missing and not s.duplicates
        print(f"  our worker ({label}): outcomes {dict(run.outcomes)}; calls {call_states(w)}")
        print(
            f"    REST requests {dict(s.requests)}, carrying {s.commands} commands; "
            + _checked(s, calls)
        )
        line = f"    wall {run.wall:.2f} s"
        if fast is not None:
            ratio = run.wall / fast.wall
            met = ratio <= GOAL_FAST and clean
            line += (
                f"; ratio to fast_bitrix24 {ratio:.2f} "
                f"(goal ≤ {GOAL_FAST}: {'met' if met else 'NOT met'})"
            )
        line += f"; {batches} batches one after another would be {old_ideal:.2f} s"
        print(line + f"; {calls / run.wall:.0f} calls/s")
        _split(run, sum(run.portal_seconds), batches, latency)


def _split(run: Delivery, portal_time: float, batches: int, latency: float) -> None:
    """Whose time it was: the portal's own processing (its CPU) or ours (the worker's CPU)."""
    per_batch = [1000 * s for s in run.portal_seconds] or [0.0]
    print(
        f"    the portal: CPU {run.portal_cpu:.2f} s (its own processing); its time on each "
        f"batch request p50 {percentile(per_batch, 0.5):.0f} ms, max {max(per_batch):.0f} ms "
        f"(latency {latency * 1000:.0f} ms included); summed over requests {portal_time:.2f} s"
    )
    print(
        f"    the worker: CPU {run.cpu:.2f} s, {1000 * run.cpu / batches:.1f} ms per batch; "
        f"wall less the portal's CPU {run.wall - run.portal_cpu:.2f} s"
    )


def many_portals(
    w: World, portals: int, per_portal: int, latency: float, threads: int, *, in_process: bool
) -> None:
    print(
        f"\n[2] {portals} portals × {per_portal} calls, REST latency {latency * 1000:.0f} ms, "
        f"worker threads {threads}"
    )
    for label, code in RUNS:
        installing = time.perf_counter()
        devs = [w.install(f"many{label}{n:03d}") for n in range(portals)]
        print(f"  installed {portals} portals in {time.perf_counter() - installing:.0f} s")
        child = None if in_process else start_worker(w, threads, code)
        registered = prepare(w, devs, per_portal, latency)
        run = deliver(w, devs, threads=threads, child=child)
        views = [seen(w, p, registered[p.code], run.first_seq) for p in devs]
        batches = sum(v.requests["batch"] for v in views)
        other = sum(sum(v.requests.values()) for v in views) - batches
        spans = [max(v.finish_times) - min(v.finish_times) for v in views if v.finish_times]
        done = [max(v.finish_times) - run.started for v in views if v.finish_times]
        ideal_batches = portals * math.ceil(per_portal / MAX_COMMANDS)
        ideal = ideal_batches * latency / threads
        ratio = run.wall / ideal
        limit_errors = sum(v.limit_errors for v in views)
        duplicates = sum(v.duplicates for v in views)
        missing = sum(v.missing for v in views)
        met = ratio <= GOAL_RATIO and not (limit_errors or duplicates or missing)
        print(f"  our worker ({label}): outcomes {dict(run.outcomes)}")
        print(
            f"    REST requests: batch {batches}, other {other} (ideal: {ideal_batches} batch); "
            f"finished {sum(len(set(v.finished)) for v in views)} distinct of "
            f"{portals * per_portal}; duplicates {duplicates}; never finished {missing}; "
            f"QUERY_LIMIT_EXCEEDED {limit_errors}"
        )
        print(
            f"    wall {run.wall:.2f} s; ideal {ideal_batches} × {latency:.3f} s / {threads} "
            f"threads = {ideal:.2f} s; ratio {ratio:.2f} (goal ≤ {GOAL_RATIO}: "
            f"{'met' if met else 'NOT met'}); {portals * per_portal / run.wall:.0f} calls/s"
        )
        print(
            f"    per portal, first → last finished call: max {max(spans):.3f} s; "
            f"start → the portal's last call: p50 {percentile(done, 0.5):.2f} s, "
            f"max (slowest portal) {max(done):.2f} s"
        )
        _split(run, sum(run.portal_seconds), ideal_batches, latency)


def naive(w: World, sample: int, total: int, latency: float) -> None:
    print(
        f"\n[3] baseline, the naive way: one {FINISH} per call through PortalClient, "
        f"{NAIVE_THREADS} at a time; sample of {sample} calls, REST latency {latency * 1000:.0f} ms"
    )
    portal = w.install("naive")
    ids = register_calls(w.devportal.state, portal, sample)
    faults.set_latency(w.devportal.state, portal, latency)
    w.quiet_spell(portal)
    first_seq = len(w.devportal.state.journal) + 1
    started = time.perf_counter()

    def finish(call_id: str) -> tuple[str, float]:
        params = {"CALL_ID": call_id, "USER_ID": 2, "DURATION": 42, "STATUS_CODE": "200"}
        try:
            store_of(w.app).client(portal.member_id).call(FINISH, {**params, "ADD_TO_CHAT": 0})
            outcome = "ok"
        except BitrixError as error:
            outcome = error.code
        return outcome, time.perf_counter() - started

    with ThreadPoolExecutor(NAIVE_THREADS) as pool:
        results = list(pool.map(finish, ids))
    wall = time.perf_counter() - started
    s = seen(w, portal, ids, first_seq)
    outcomes = Counter(outcome for outcome, _ in results)
    done = sorted(at for _, at in results)
    burst = min(40, sample - 1)
    steady = (sample - burst) / (wall - done[burst - 1])  # calls/s once the burst is spent
    estimate = wall + (total - sample) / steady
    print(f"  outcomes: {dict(outcomes)}; REST requests: {dict(s.requests)}")
    print(
        f"  finished {len(set(s.finished))} distinct; duplicates {s.duplicates}; "
        f"QUERY_LIMIT_EXCEEDED {s.limit_errors}"
    )
    print(
        f"  measured {sample} calls in {wall:.1f} s (first {burst} in {done[burst - 1]:.1f} s, "
        f"then {steady:.2f} calls/s) → {total} calls ≈ {wall:.1f} + "
        f"({total} − {sample}) / {steady:.2f} ≈ {estimate:.0f} s, {total} requests"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added per request")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--portals", type=int, default=200)
    parser.add_argument("--per-portal", type=int, default=20)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="worker threads")
    parser.add_argument("--naive-sample", type=int, default=120)
    parser.add_argument(
        "--only", choices=["one", "many", "naive"], action="append", help="scenarios to run"
    )
    parser.add_argument(
        "--in-process", action="store_true", help="run the worker in this process, not its own"
    )
    parser.add_argument(
        "--before", metavar="DIR", help="also run the worker from this checkout (same run)"
    )
    parser.add_argument("--child-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-fast", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_worker:
        child_worker(args.threads)
        return
    if args.child_fast:
        child_fast()
        return
    if args.before:  # first: whatever a run leaves behind (a warmer cache, fresher statistics
        # of the database) then favours the code measured after it, not ours
        RUNS.insert(0, ("before", os.path.abspath(args.before)))
    only = set(args.only or ["one", "many", "naive"])
    backend = "PostgreSQL" if args.database_url else "SQLite"
    load = os.getloadavg()
    print(
        f"delivery benchmark on {backend}; load average {load[0]:.1f} {load[1]:.1f} "
        f"{load[2]:.1f} on {os.cpu_count()} cores"
    )
    with world(args.database_url, **OPEN_DOOR) as w:
        if "one" in only:
            fast = fast_baseline(w, args.calls, args.latency)
            one_portal(w, args.calls, args.latency, in_process=args.in_process, fast=fast)
        if "many" in only:
            many_portals(
                w,
                args.portals,
                args.per_portal,
                args.latency,
                args.threads,
                in_process=args.in_process,
            )
        if "naive" in only:
            naive(w, args.naive_sample, args.calls, args.latency)
    load = os.getloadavg()
    print(f"\nload average after {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")


if __name__ == "__main__":
    main()
