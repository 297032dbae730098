"""Delivery throughput: ended calls finished in Bitrix24 by the worker, in batches, within limits.

Three scenarios in one run, each on its own development portals with an added REST latency
(`faults.set_latency`, default 0.1 s per request) and standard limits (the devportal's bucket:
2/s, burst 50; our throttle: 1.8/s, burst 40):

1. one portal, 2,000 calls: the worker should need 40 batch requests, all inside the burst, so
   the ideal wall time is 40 × latency (a portal's batches go one after another);
2. 200 portals × 20 calls: one batch each, the worker's threads deliver portals side by side
   (ideal: 200 × latency / threads);
3. the baseline, the naive way: one `telephony.externalCall.finish` request per call through
   `PortalClient` (so still throttled), on a sample, extrapolated to 2,000 calls.

Calls are registered on the devportal first (its own register handler, straight into its state,
as a PBX would have done through us at call start) and queued through the real intake
(`POST /pbx/v1/calls/finish` with the portal's PBX key), all before the clock starts. The clock
covers the real worker loop only: `Worker(app).run(once=True)`, what `flask worker --once` runs.

The worker runs in a process of its own, as deployed, started and warmed up before the clock
(`--in-process` runs it in this one instead). The development portal's time on each request is
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

GOAL_RATIO = 1.5  # wall time within 1.5 × the ideal
INTAKE_THREADS = 8
DELIVERY_TIMEOUT = 240.0  # seconds; a worker run longer than this is stopped
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


def prepare(w: World, portals: Sequence[DevPortal], per_portal: int, latency: float) -> dict:
    """Register and queue `per_portal` calls on each portal; set the latency. Not timed."""
    registered: dict[str, list[str]] = {}
    jobs: list[tuple[str, dict[str, Any]]] = []
    for portal in portals:
        ids = register_calls(w.devportal.state, portal, per_portal)
        registered[portal.code] = ids
        key = w.pbx_key(portal)
        jobs += [(key, finish_body(call_id)) for call_id in ids]
    seconds = queue_through_intake(w, jobs)
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


def deliver(w: World, portals: Sequence[DevPortal], threads: int, *, in_process: bool) -> Delivery:
    """The worker's own loop until nothing is due (`worker --once`), on quiet portals."""
    w.quiet_spell(*portals)
    first_seq = len(w.devportal.state.journal) + 1
    if in_process:
        started, wall, cpu, outcomes = _run_worker(w.app, threads)
    else:
        started, wall, cpu, outcomes = _worker_process(w, threads)
    served = w.portal_times.since(started, "/rest/batch.json")
    return Delivery(wall, cpu, outcomes, first_seq, started, [s.seconds for s in served])


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


def _worker_process(w: World, threads: int) -> tuple[float, float, float, Counter[str]]:
    """The worker in a process of its own, as deployed (the Procfile's `worker:`), so it shares
    no interpreter with the emulated portal. It starts, builds the app, says `ready`, and runs
    only when told, so its start-up is not timed."""
    env = {**os.environ, **{name: str(value) for name, value in w.settings_values.items()}}
    command = [sys.executable, "-m", "benchmarks.delivery", "--child-worker"]
    command += ["--threads", str(threads)]
    if PY_SPY:
        profile = [PY_SPY, "record", *PY_SPY_FLAGS, "-r", "200", "--format", "raw"]
        command = [*profile, "-o", PY_SPY_OUT, "--", *command]
    child = subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    for line in child.stdout:
        if line.strip() == "ready":
            break
    else:
        raise RuntimeError(f"the worker process exited with {child.wait()}")
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
    from b24app import create_app
    from b24app.config import load_settings

    app = create_app(load_settings(_env_file=None))
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


# --- scenarios ----------------------------------------------------------------------------------


def one_portal(w: World, calls: int, latency: float, *, in_process: bool) -> None:
    print(f"\n[1] one portal, {calls} calls, REST latency {latency * 1000:.0f} ms")
    portal = w.install("solo")
    registered = prepare(w, [portal], calls, latency)
    run = deliver(w, [portal], threads=DEFAULT_THREADS, in_process=in_process)
    s = seen(w, portal, registered["solo"], run.first_seq)
    ideal_batches = math.ceil(calls / MAX_COMMANDS)
    ideal = ideal_batches * latency
    portal_time = sum(run.portal_seconds)
    ratio = run.wall / ideal
    met = ratio <= GOAL_RATIO and s.limit_errors == 0 and not s.missing and not s.duplicates
    print(f"  worker outcomes: {dict(run.outcomes)}; call states: {call_states(w)}")
    print(
        f"  REST requests: {dict(s.requests)} (ideal: {ideal_batches} batch), "
        f"carrying {s.commands} commands"
    )
    print(
        f"  finished {len(set(s.finished))} distinct CALL_IDs of {calls}; "
        f"duplicates {s.duplicates}; never finished {s.missing}; "
        f"QUERY_LIMIT_EXCEEDED {s.limit_errors}"
    )
    print(
        f"  wall {run.wall:.2f} s; ideal {ideal_batches} × {latency:.3f} s = {ideal:.2f} s; "
        f"ratio {ratio:.2f} (goal ≤ {GOAL_RATIO}: {'met' if met else 'NOT met'}); "
        f"{calls / run.wall:.0f} calls/s"
    )
    _split(run, portal_time, ideal_batches, latency, sequential=True)


def _split(
    run: Delivery, portal_time: float, batches: int, latency: float, *, sequential: bool
) -> None:
    """Whose time it was: the portal's (its latency and its own processing) or ours."""
    processing = portal_time - batches * latency
    per_batch = [1000 * s for s in run.portal_seconds] or [0.0]
    print(
        f"  the portal's time on the batch requests: {portal_time:.2f} s "
        f"(added latency {batches * latency:.2f} s + its own processing {processing:.2f} s; "
        f"per batch p50 {percentile(per_batch, 0.5):.0f} ms, max {max(per_batch):.0f} ms)"
    )
    if sequential:
        ours = run.wall - portal_time
        without = run.wall - processing
        print(
            f"  ours = wall − the portal's time = {ours:.2f} s, {1000 * ours / batches:.0f} ms "
            f"per batch; worker CPU {run.cpu:.2f} s"
        )
        print(
            f"  wall without the emulated portal's own processing {without:.2f} s: "
            f"ratio to the ideal {without / (batches * latency):.2f}"
        )
    else:
        print(f"  worker CPU {run.cpu:.2f} s ({1000 * run.cpu / batches:.0f} ms per batch)")


def many_portals(
    w: World, portals: int, per_portal: int, latency: float, threads: int, *, in_process: bool
) -> None:
    print(
        f"\n[2] {portals} portals × {per_portal} calls, REST latency {latency * 1000:.0f} ms, "
        f"worker threads {threads}"
    )
    installing = time.perf_counter()
    devs = [w.install(f"many{n:03d}") for n in range(portals)]
    print(f"  installed {portals} portals in {time.perf_counter() - installing:.0f} s (not timed)")
    registered = prepare(w, devs, per_portal, latency)
    run = deliver(w, devs, threads=threads, in_process=in_process)
    views = [seen(w, p, registered[p.code], run.first_seq) for p in devs]
    batches = sum(v.requests["batch"] for v in views)
    other = sum(sum(v.requests.values()) for v in views) - batches
    spans = [max(v.finish_times) - min(v.finish_times) for v in views if v.finish_times]
    done = [max(v.finish_times) - run.started for v in views if v.finish_times]
    ideal_batches = portals * math.ceil(per_portal / MAX_COMMANDS)
    ideal = ideal_batches * latency / threads
    print(f"  worker outcomes: {dict(run.outcomes)}")
    print(f"  REST requests: batch {batches}, other {other}  (ideal: {ideal_batches} batch)")
    print(
        f"  finished {sum(len(set(v.finished)) for v in views)} distinct of "
        f"{portals * per_portal}; duplicates {sum(v.duplicates for v in views)}; "
        f"never finished {sum(v.missing for v in views)}; "
        f"QUERY_LIMIT_EXCEEDED {sum(v.limit_errors for v in views)}"
    )
    print(
        f"  wall {run.wall:.2f} s; ideal {ideal_batches} × {latency:.3f} s / {threads} threads = "
        f"{ideal:.2f} s; ratio {run.wall / ideal:.2f}; {portals * per_portal / run.wall:.0f} "
        "calls/s"
    )
    print(
        f"  per portal, first → last finished call: max {max(spans):.3f} s; "
        f"start → the portal's last call: p50 {percentile(done, 0.5):.2f} s, "
        f"max (slowest portal) {max(done):.2f} s"
    )
    _split(run, sum(run.portal_seconds), ideal_batches, latency, sequential=False)


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
    parser.add_argument("--child-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_worker:
        child_worker(args.threads)
        return
    only = set(args.only or ["one", "many", "naive"])
    backend = "PostgreSQL" if args.database_url else "SQLite"
    load = os.getloadavg()[0]
    print(f"delivery benchmark on {backend}; load average {load:.1f} on {os.cpu_count()} cores")
    with world(args.database_url, **OPEN_DOOR) as w:
        if "one" in only:
            one_portal(w, args.calls, args.latency, in_process=args.in_process)
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
    print(f"\nload average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
