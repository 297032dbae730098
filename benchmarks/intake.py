"""PBX intake under gunicorn: accepted calls per second and latency of POST /pbx/v1/calls/finish.

A real gunicorn (`--config python:b24app.gunicorn_conf`, its processes and threads as deployed:
WEB_CONCURRENCY, default 2 per core, × GUNICORN_THREADS, default 4) serves the app on the
benchmark's database. In the same run, the same server answers a trivial
endpoint, `GET /healthz` (no database), as the ceiling of what this server and this machine can
do. Measured for both:

(a) maximum throughput, closed loop: N connections, each sends its next request as soon as the
    last is answered, for a fixed time (`wrk` when installed, else Python threads), in rounds:
    the ceiling, the intake, the ceiling … each round a new client whose connections the kernel
    splits anew between gunicorn's processes (an uneven split moves a round's rate by a third),
    and the medians compared; with the CPU each side cost per answer: gunicorn's, the database
    server's (PostgreSQL on this machine) and the client's, which share the cores;
(b) latency at a fixed open-loop rate (200 requests/s for 10 s): requests leave on schedule
    whether or not earlier ones were answered, and latency counts from the scheduled moment, so
    a stall is not hidden by the client waiting for it.

Every finish request is a distinct call (its own PBX_CALL_ID), so every one is a real insert;
the run checks that the database holds every call answered 202, and at most the closed loops'
last requests more (in flight when wrk stopped counting; `202` is counted exactly). The PBX
rate limits are the defaults (ratelimit.py: 30,000 per minute per key, far above what the web
processes accept): the limiter runs on every request but never refuses. No delivery worker runs.

    .venv/bin/python -m benchmarks.intake [--database-url postgresql+psycopg://…] [--client python]
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import requests
from sqlalchemy import func, select, text

from b24app import gunicorn_conf
from b24app.db import get_db
from b24app.models import Call
from benchmarks.environment import World, percentile, world

OPEN_DOOR: dict[str, str] = {}  # the PBX API's default limits never refuse this load
FINISH = "/pbx/v1/calls/finish"
STORES = {  # --store: b24app's own, or benchmarks/nostore.py's instruments
    "ours": "b24app:create_app()",
    "none": "benchmarks.nostore:create_app()",  # answers 202 without storing
    "narrow": "benchmarks.nostore:create_narrow_app()",  # one narrow row per event
    "raw": "benchmarks.nostore:create_raw_app()",  # b24app's rows, below SQLAlchemy
}
CEILING = "/healthz"
GOAL_SHARE = 0.5  # intake throughput ≥ half the ceiling
GOAL_P99 = 0.050  # seconds, at 200 requests/s
START_TIMEOUT = 60.0
REQUEST_TIMEOUT = 10.0

WRK_SCRIPT = r"""
-- setup() runs in the main Lua state, request() in each thread's own: `thread_id` must stay a
-- global there (a local of this chunk would shadow the value set by thread:set).
local next_thread = 0
local threads = {}
function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end
function init(args)
  n, ok = 0, 0
  run, key, path = args[1], args[2], args[3]
  expected = path == "/pbx/v1/calls/finish" and 202 or 200
end
function response(status, headers, body)
  if status == expected then ok = ok + 1 end
end
function request()
  if path ~= "/pbx/v1/calls/finish" then
    return wrk.format("GET", path)
  end
  n = n + 1
  local body = string.format(
    '{"CALL_ID":"externalCall.%s.%d.%d","PBX_CALL_ID":"%s-%d-%d","USER_ID":2,' ..
    '"DURATION":42,"STATUS_CODE":"200"}', run, thread_id, n, run, thread_id, n)
  return wrk.format("POST", path, {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }, body)
end
function done(summary, latency, requests)
  local answered = 0  -- the expected status exactly (202 for a finish), not merely "not an error"
  for _, thread in ipairs(threads) do answered = answered + thread:get("ok") end
  io.write(string.format(
    'WRK {"requests":%d,"seconds":%f,"ok":%d,"p50":%f,"p99":%f,"max":%f}\n',
    summary.requests, summary.duration / 1e6, answered,
    latency:percentile(50) / 1e6, latency:percentile(99) / 1e6, latency.max / 1e6))
end
"""


# --- the server ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def cpu(self) -> dict[int, float]:
        """CPU seconds used so far by each of gunicorn's processes (Linux /proc; empty
        elsewhere), so the cost of a request can be told apart from the machine's other load,
        and an uneven split of the connections between the processes seen."""
        return {
            pid: seconds for pid, ppid, _name, seconds in _processes() if self.pid in (pid, ppid)
        }


def _processes() -> Iterator[tuple[int, int, str, float]]:
    """(pid, parent pid, name, CPU seconds) of every process (Linux /proc): its utime + stime
    and its ended children's (cutime + cstime), so a child that ended between two looks (a
    PostgreSQL backend or autovacuum worker, a replaced gunicorn worker) is still counted, in
    its parent."""
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        cpu = sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks  # utime stime cutime cstime
        yield int(stat.parent.name), int(fields[1]), name, cpu


def database_cpu(database_url: str | None) -> float | None:
    """CPU seconds used so far by this machine's PostgreSQL server (its processes, named
    `postgres`, with their ended children), for every client it serves: run the benchmark with
    nothing else using it. None on SQLite (its work is inside gunicorn's processes) or when no
    local PostgreSQL process is found (a server elsewhere: not measured)."""
    if not database_url:
        return None
    found = [cpu for _pid, _ppid, name, cpu in _processes() if name == "postgres"]
    return sum(found) if found else None


@contextmanager
def gunicorn(
    w: World, workers: int, threads: int, folder: Path, app: str = STORES["ours"]
) -> Iterator[Server]:
    """gunicorn with the app's own config on a free port, serving `app`."""
    port = _free_port()
    metrics_dir = folder / "prometheus"
    metrics_dir.mkdir()
    env = {
        **os.environ,
        **{name: str(value) for name, value in w.settings_values.items()},
        "B24APP_LOG_LEVEL": "INFO",  # as in production: a log line per call, an access log
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    # max-requests 0: no planned worker restarts in the middle of a measurement.
    command = [sys.executable, "-m", "gunicorn", "--config", "python:b24app.gunicorn_conf"]
    command += ["--bind", f"127.0.0.1:{port}", "--max-requests", "0", app]
    with open(folder / "gunicorn.log", "w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, server)
            yield Server(url, server.pid)
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            if requests.get(url + CEILING, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer in time")


# --- requests -----------------------------------------------------------------------------------


@dataclass
class Target:
    """What one request is: a GET of the ceiling, or a distinct call's finish."""

    path: str
    key: str = ""
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _numbers: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**9)))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def is_finish(self) -> bool:
        return self.path == FINISH

    @property
    def expected(self) -> int:
        return 202 if self.is_finish else 200

    def request(self) -> tuple[str, bytes | None, dict[str, str]]:
        if not self.is_finish:
            return "GET", None, {}
        with self._lock:
            n = next(self._numbers)
        body = {
            "CALL_ID": f"externalCall.{self.run}.{n}",
            "PBX_CALL_ID": f"{self.run}-py-{n}",
            "USER_ID": 2,
            "DURATION": 42,
            "STATUS_CODE": "200",
        }
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        return "POST", json.dumps(body).encode(), headers


class Connection:
    """One keep-alive connection, reopened when the server closes it."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.conn: http.client.HTTPConnection | None = None

    def send(self, target: Target) -> int:
        """One request; the status, or 0 when none came. A connection the server had closed is
        reopened and tried once more with a new call: a repeat of the same one would be answered
        202 without a new row, and the stored count would no longer check the answers."""
        for attempt in (1, 2):
            method, body, headers = target.request()
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=REQUEST_TIMEOUT
                )
            try:
                self.conn.request(method, target.path, body=body, headers=headers)
                response = self.conn.getresponse()
                response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    return 0
        return 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --- (a) closed loop ----------------------------------------------------------------------------


@dataclass
class Closed:
    requests: int
    ok: int
    seconds: float
    p50: float
    p99: float
    max: float
    client: str
    server_cpu: float = 0.0  # CPU seconds gunicorn's processes spent meanwhile
    processes: int = 0  # gunicorn's worker processes
    busiest: float = 0.0  # the busiest worker process's share of the workers' CPU
    database_cpu: float | None = None  # the PostgreSQL server's CPU seconds (None: SQLite)
    client_cpu: float = 0.0  # CPU seconds of the load generator

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    @property
    def cpu_per_ok(self) -> float:
        """gunicorn's CPU per answer that was the expected one (202 for the intake: per
        accepted call)."""
        return self.server_cpu / max(self.ok, 1)

    @property
    def machine_cpu_per_ok(self) -> float:
        """Everything this machine's two sides spent per expected answer: gunicorn, the
        database server and the load generator, which share the cores."""
        database = self.database_cpu or 0.0
        return (self.server_cpu + database + self.client_cpu) / max(self.ok, 1)


def measured_closed_loop(
    server: Server,
    target: Target,
    connections: int,
    seconds: float,
    client: str,
    database_url: str | None,
) -> Closed:
    """A closed loop with what it cost: gunicorn's CPU (per process), the database server's
    and the client's."""
    before, database = server.cpu(), database_cpu(database_url)
    children, mine = resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time()
    closed = closed_loop(server.url, target, connections, seconds, client)
    after, database_after = server.cpu(), database_cpu(database_url)
    spent = {pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()}
    workers = [cpu for pid, cpu in spent.items() if pid != server.pid]
    closed.server_cpu = sum(spent.values())
    closed.processes = len(workers)
    closed.busiest = max(workers, default=0.0) / max(sum(workers), 1e-9)
    if database is not None and database_after is not None:
        closed.database_cpu = database_after - database
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    if client == "wrk":  # a child process that has ended
        closed.client_cpu = (done.ru_utime + done.ru_stime) - (
            children.ru_utime + children.ru_stime
        )
    else:  # threads of this process
        closed.client_cpu = time.process_time() - mine
    return closed


def closed_loop(url: str, target: Target, connections: int, seconds: float, client: str) -> Closed:
    if client == "wrk":
        return _wrk(url, target, connections, seconds)
    return _python_closed(url, target, connections, seconds)


def _wrk(url: str, target: Target, connections: int, seconds: float) -> Closed:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    threads = min(2, connections)
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:.0f}s"]
    command += ["--timeout", f"{REQUEST_TIMEOUT:.0f}s", "-s", script.name, url + target.path]
    run = uuid.uuid4().hex[:8]  # each wrk run numbers its calls from 1 again: a new prefix
    command += ["--", run, target.key, target.path]
    try:
        out = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=True
        ).stdout
    finally:
        os.unlink(script.name)
    data = json.loads(next(ln for ln in out.splitlines() if ln.startswith("WRK "))[4:])
    return Closed(
        data["requests"], data["ok"], data["seconds"], data["p50"], data["p99"], data["max"], "wrk"
    )


def _python_closed(url: str, target: Target, connections: int, seconds: float) -> Closed:
    latencies: list[list[float]] = [[] for _ in range(connections)]
    statuses: list[Counter[int]] = [Counter() for _ in range(connections)]
    start = time.perf_counter()
    deadline = start + seconds

    def loop(index: int) -> None:
        conn = Connection(url)
        while (sent := time.perf_counter()) < deadline:
            statuses[index][conn.send(target)] += 1
            latencies[index].append(time.perf_counter() - sent)
        conn.close()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 2 * REQUEST_TIMEOUT)
    wall = time.perf_counter() - start
    every = [x for part in latencies for x in part]
    total: Counter[int] = sum(statuses, Counter())
    return Closed(
        sum(total.values()),
        total[target.expected],
        wall,
        percentile(every, 0.5),
        percentile(every, 0.99),
        max(every, default=0.0),
        "python",
    )


# --- (b) open loop ------------------------------------------------------------------------------


@dataclass
class Open:
    sent: int
    ok: int
    seconds: float  # from the first scheduled moment to the last answer
    latencies: list[float]  # from each request's scheduled moment to its answer
    late: float  # the latest a request left after its scheduled moment

    def p(self, fraction: float) -> float:
        return percentile(self.latencies, fraction)


def open_loop(url: str, target: Target, rate: float, seconds: float, pool_size: int) -> Open:
    """`rate` requests per second for `seconds`, on schedule, from a pool of connections.

    This process's own heap (the world, its development portal, the app) is frozen meanwhile
    (`gc.freeze`): one full collection of it stopped the client for ~100 ms, so requests left
    late and the client's pause was counted as the server's latency."""
    gc.collect()
    gc.freeze()
    try:
        return _open_loop(url, target, rate, seconds, pool_size)
    finally:
        gc.unfreeze()


def _open_loop(url: str, target: Target, rate: float, seconds: float, pool_size: int) -> Open:
    count = int(rate * seconds)
    local = threading.local()
    connections: list[Connection] = []
    registry = threading.Lock()

    def connection() -> Connection:
        if not hasattr(local, "conn"):
            local.conn = Connection(url)
            with registry:
                connections.append(local.conn)
        conn: Connection = local.conn
        return conn

    def one(scheduled: float) -> tuple[int, float, float]:
        left = time.perf_counter()
        status = connection().send(target)
        return status, time.perf_counter() - scheduled, left - scheduled

    start = time.perf_counter() + 0.2
    with ThreadPoolExecutor(pool_size) as pool:
        futures = []
        for i in range(count):
            scheduled = start + i / rate
            pause = scheduled - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            futures.append(pool.submit(one, scheduled))
        results = [f.result(timeout=seconds + 2 * REQUEST_TIMEOUT) for f in futures]
    wall = time.perf_counter() - start
    for conn in connections:
        conn.close()
    return Open(
        sent=count,
        ok=sum(1 for status, _, _ in results if status == target.expected),
        seconds=wall,
        latencies=[latency for _, latency, _ in results],
        late=max(late for _, _, late in results),
    )


# --- the run ------------------------------------------------------------------------------------


def stored_calls(w: World, store: str) -> int:
    """Calls in the database: b24app's, or the narrow store's rows (benchmarks/nostore.py)."""
    with w.app.app_context(), get_db().read() as session:
        if store == "narrow":
            return int(session.scalar(text("SELECT count(*) FROM bench_inbox")) or 0)
        return int(session.scalar(select(func.count()).select_from(Call)) or 0)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


@dataclass
class Measured:
    rounds: dict[str, list[Closed]]  # by target, one closed loop per round
    opened: dict[str, Open]
    accepted: int  # 202 answers to finish, warm-up included


def measure(server: Server, key: str, args: argparse.Namespace, client: str) -> Measured:
    """Warm-up for both targets; then `args.rounds` rounds of a closed loop of each, the
    ceiling first in odd rounds, the intake in even ones (each loop a new client, so its
    connections are split between gunicorn's processes anew: the kernel decides, and an uneven
    split changes a loop's rate); then an open loop of each."""
    targets = {
        "ceiling GET " + CEILING: Target(CEILING),
        "intake  POST " + FINISH: Target(FINISH, key),
    }
    result = Measured({name: [] for name in targets}, {}, 0)
    for target in targets.values():
        warm = closed_loop(server.url, target, args.connections, args.warmup, client)
        result.accepted += warm.ok if target.is_finish else 0
    for number in range(args.rounds):
        order = list(targets.items())
        if number % 2:  # every other round the intake first: what one leaves behind (a
            order.reverse()  # checkpoint, autovacuum) lands on each side alike
        for name, target in order:
            closed = measured_closed_loop(
                server, target, args.connections, args.seconds, client, args.database_url
            )
            result.rounds[name].append(closed)
            result.accepted += closed.ok if target.is_finish else 0
    for name, target in targets.items():
        opened = open_loop(server.url, target, args.rate, args.open_seconds, args.pool)
        result.opened[name] = opened
        result.accepted += opened.ok if target.is_finish else 0
    return result


def report(m: Measured, args: argparse.Namespace) -> None:
    print(
        f"\n(a) closed loop, {args.connections} connections, {args.rounds} rounds of "
        f"{args.seconds:.0f} s each, the ceiling and the intake in turn:"
    )
    print(
        f"  {'':32} {'round':>5} {'ok':>7} {'ok/s':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU ms per answer: gunicorn':>28} {'+ database':>10} {'+ client':>9} "
        f"{'busiest of processes':>21}"
    )
    for name, rounds in m.rounds.items():
        for number, c in enumerate(rounds, 1):
            database = "-" if c.database_cpu is None else ms(c.database_cpu / max(c.ok, 1))
            print(
                f"  {name:32} {number:5d} {c.ok:7d} {c.rate:6.0f} {ms(c.p50):>7} {ms(c.p99):>7} "
                f"{ms(c.cpu_per_ok):>28} {database:>10} "
                f"{ms(c.client_cpu / max(c.ok, 1)):>9} {c.busiest:14.0%} of {c.processes:>3}"
            )
    ceiling, intake = m.rounds.values()
    ceiling_rate, intake_rate = (median(c.rate for c in rounds) for rounds in (ceiling, intake))
    share = intake_rate / ceiling_rate
    each = [i.rate / c.rate for c, i in zip(ceiling, intake, strict=True)]
    print(f"  medians: ceiling {ceiling_rate:.0f}/s, intake {intake_rate:.0f}/s")
    print(
        f"  intake / ceiling: {share:.2f} (goal ≥ {GOAL_SHARE}: "
        f"{'met' if share >= GOAL_SHARE else 'NOT met'}); round by round "
        + ", ".join(f"{r:.2f}" for r in each)
    )
    cpu = {name: median(c.cpu_per_ok for c in rounds) for name, rounds in m.rounds.items()}
    whole = {
        name: median(c.machine_cpu_per_ok for c in rounds) for name, rounds in m.rounds.items()
    }
    (ceiling_cpu, intake_cpu), (ceiling_whole, intake_whole) = cpu.values(), whole.values()
    print(
        f"  gunicorn CPU per accepted call: {ms(intake_cpu)} ms (per /healthz answer: "
        f"{ms(ceiling_cpu)} ms; ratio {ceiling_cpu / max(intake_cpu, 1e-9):.2f}); "
        f"the machine's (gunicorn, database, client): {ms(intake_whole)} against "
        f"{ms(ceiling_whole)} ms (ratio {ceiling_whole / max(intake_whole, 1e-9):.2f})"
    )
    print(f"\n(b) open loop, {args.rate:.0f} requests/s for {args.open_seconds:.0f} s:")
    print(
        f"  {'':32} {'sent':>6} {'ok':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'late ms':>8}"
    )
    for name, o in m.opened.items():
        print(
            f"  {name:32} {o.sent:6d} {o.ok:6d} {ms(o.p(0.5)):>8} {ms(o.p(0.99)):>8} "
            f"{ms(max(o.latencies)):>8} {ms(o.late):>8}"
        )
    p99 = list(m.opened.values())[1].p(0.99)
    print(
        f"  intake p99 {ms(p99)} ms (goal < {ms(GOAL_P99)} ms: "
        f"{'met' if p99 < GOAL_P99 else 'NOT met'})"
    )


def _stored_verdict(stored: int, accepted: int, args: argparse.Namespace) -> str:
    """Whether the database holds every call answered 202 (and at most the closed loops'
    last requests more, each loop's `connections` in flight when wrk stopped counting)."""
    if args.store == "none":
        return "none stored, as --store none means"
    extra, most = stored - accepted, (args.rounds + 1) * args.connections
    if extra < 0:
        return "FEWER than answered 202: accepted calls are missing"
    if extra > most:
        return f"{extra} MORE than answered 202, above the {most} requests left in flight"
    return (
        f"{extra} more: requests still in flight when a closed-loop run stopped counting "
        f"(at most {most} expected: each closed loop's last), stored all the same"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url")
    parser.add_argument(
        "--workers", type=int, default=gunicorn_conf.workers, help="gunicorn processes"
    )
    parser.add_argument(
        "--threads", type=int, default=gunicorn_conf.threads, help="threads per gunicorn process"
    )
    parser.add_argument("--connections", type=int, default=16, help="closed-loop connections")
    parser.add_argument("--seconds", type=float, default=8.0, help="closed-loop duration")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3, help="closed loops of each, in turn")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s")
    parser.add_argument("--open-seconds", type=float, default=10.0)
    parser.add_argument("--pool", type=int, default=32, help="open-loop client connections")
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="closed-loop load generator (auto: wrk when installed)",
    )
    parser.add_argument(
        "--store",
        choices=list(STORES),
        default="ours",
        help="ours: b24app as it is; none: the intake answers 202 WITHOUT storing; narrow: it "
        "writes one narrow row per event; raw: b24app's own rows below SQLAlchemy "
        "(benchmarks/nostore.py: what a call costs apart from its store, or with a write path "
        "of its own)",
    )
    args = parser.parse_args()
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    backend = "PostgreSQL" if args.database_url else "SQLite"
    load = os.getloadavg()
    print(
        f"intake benchmark on {backend}: gunicorn {args.workers} processes × {args.threads} "
        f"threads (gthread), closed-loop client {client}; "
        f"load average before {load[0]:.1f} on {os.cpu_count()} cores"
    )
    if args.store != "ours":
        print(f"  --store {args.store}: NOT b24app's store (benchmarks/nostore.py)")
    with world(args.database_url, **OPEN_DOOR) as w, tempfile.TemporaryDirectory() as tmp:
        portal = w.install("intake")
        key = w.pbx_key(portal)
        with gunicorn(w, args.workers, args.threads, Path(tmp), STORES[args.store]) as server:
            measured = measure(server, key, args, client)
        stored = stored_calls(w, args.store)
    report(measured, args)
    print(f"\ncalls stored: {stored}; 202 answers counted: {measured.accepted}; ", end="")
    print(_stored_verdict(stored, measured.accepted, args))
    print(f"load average after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
