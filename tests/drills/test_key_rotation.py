"""Drill: a PBX key rotated while every web process is answering it from its key cache.

Each web process keeps what a key found for `auth.KEY_CACHE_SECONDS` (pbx/auth.py), so the
bound of a rotation is: no process accepts the old key later than KEY_CACHE_SECONDS after the
rotation was committed. Here one real gunicorn with WEB_PROCESSES worker processes answers a
PBX that sends the old key without a pause, on a new connection each time (so every process gets
its share), while the admin rotates the key with the command line (`portals rotate-key`, another
process: no web process learns of it but by its cache running out). Each request carries a probe
number in its query string, and gunicorn's access log names the process that answered it.

Judged on the answers: every process answered the old key 202 just before the rotation (its
cache was warm); no request sent later than KEY_CACHE_SECONDS after the rotation's commit (as
this test first saw it in the database: never early) was accepted, and every process refused the
old key (401) after that; the new key is accepted by every process.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from b24app.db import get_db
from b24app.pbx.auth import KEY_CACHE_SECONDS
from b24app.portals import store
from tests.drills import FINISH
from tests.drills.conftest import Drill
from tests.drills.processes import BIN, Managed, wait_for, wait_until_answers

WEB_PROCESSES = 3
SENDERS = 4  # PBX threads sending the old key side by side
WARM_TIMEOUT = 60.0  # seconds for every process to have answered the key once
REFUSED_TIMEOUT = 60.0  # after the rotation: for every process to have refused the old key
COMMIT_POLL = 0.02  # seconds between two reads of the stored key while the rotation runs
# gunicorn's access log, one line per request: the answering process and the probe number
PROBE_LOG = "PROBE %(p)s %(s)s %(q)s"
_PROBE_LINE = re.compile(r"^PROBE <(\d+)> (\d{3}) probe=(\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class Probe:
    number: int
    sent: float  # time.time() when the request left
    key: str
    status: int


class Prober:
    """Sends finishes with one key, each on a new connection, and keeps every answer. Probe
    numbers end in `tag`, so two probers' numbers never meet in the access log."""

    def __init__(self, url: str, key: str, tag: int) -> None:
        self.url = url
        self.key = key
        self.tag = tag
        self.probes: dict[int, Probe] = {}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._threads: list[threading.Thread] = []

    def one(self) -> Probe:
        with self._lock:
            number = next(self._numbers) * 10 + self.tag
        body = {"PBX_CALL_ID": f"rot-{number}", "CALL_ID": f"externalCall.rot.{number}"}
        body |= {"USER_ID": "2", "DURATION": "5"}
        sent = time.time()
        try:
            status = requests.post(
                f"{self.url}{FINISH}?probe={number}",
                json=body,
                headers={"Authorization": f"Bearer {self.key}", "Connection": "close"},
                timeout=15,
            ).status_code
        except requests.RequestException:
            status = 0
        probe = Probe(number, sent, self.key, status)
        with self._lock:
            self.probes[number] = probe
        return probe

    def start(self, threads: int) -> None:
        def loop() -> None:
            while not self._halt.is_set():
                self.one()

        self._threads = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(timeout=30)


def answered_by(log: Path) -> dict[int, int]:
    """Probe number → the pid of the gunicorn worker that answered it."""
    return {int(n): int(pid) for pid, _, n in _PROBE_LINE.findall(log.read_text(errors="replace"))}


def worker_pids(master: int) -> set[int]:
    """The gunicorn master's children (Linux /proc)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            children.add(int(stat.parent.name))
    return children


def start_gunicorn(drill: Drill) -> Managed:
    """One gunicorn of WEB_PROCESSES processes at PUBLIC_URL, its access log naming the pid."""
    port = int(drill.public_url.rsplit(":", 1)[1])
    argv = [str(BIN / "gunicorn"), "--config", "python:b24app.gunicorn_conf"]
    argv += ["--bind", f"127.0.0.1:{port}", "--access-logformat", PROBE_LOG, "b24app:create_app()"]
    env = {**drill.fleet.env, "WEB_CONCURRENCY": str(WEB_PROCESSES), "GUNICORN_THREADS": "2"}
    web = Managed("web", argv, env, drill.fleet.workdir, drill.fleet.logs / "web.log")
    web.url = drill.public_url
    drill.fleet.webs.append(web.start())
    wait_until_answers(web, "/healthz")
    return web


def rotate_with_the_command_line(drill: Drill, member_id: str) -> tuple[str, float]:
    """`flask --app b24app portals rotate-key`: the new key, and when its commit was first seen
    (the stored key read every COMMIT_POLL seconds from this process while the command runs:
    at most that late, never early)."""
    committed: list[float] = []
    halt = threading.Event()

    def watch() -> None:
        with drill.app.app_context():
            first = stored_key_hash(member_id)
            while not halt.is_set():
                if stored_key_hash(member_id) != first:
                    committed.append(time.time())
                    return
                time.sleep(COMMIT_POLL)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "b24app", "portals", "rotate-key", member_id],
            env=drill.fleet.env,
            cwd=drill.fleet.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        watcher.join(timeout=10)
    finally:
        halt.set()
    assert committed, "the rotation's commit was not seen"
    return done.stdout.strip(), committed[0]


def stored_key_hash(member_id: str) -> str:
    with get_db().read() as session:
        portal = store.find_portal(session, member_id)
        assert portal is not None and portal.settings is not None
        return portal.settings.pbx_key_hash


@pytest.mark.slow
def test_a_rotated_key_is_refused_by_every_web_process_within_the_cache_bound(drill: Drill):
    web = start_gunicorn(drill)
    assert web.pid is not None and web.url is not None
    portal = drill.install("rotating")
    old_key = drill.pbx_key(portal)
    workers = worker_pids(web.pid)
    assert len(workers) == WEB_PROCESSES, workers

    old = Prober(web.url, old_key, 1)
    old.start(SENDERS)
    try:

        def every_process_accepted() -> bool:
            by = answered_by(web.log_path)
            return {by.get(p.number) for p in list(old.probes.values()) if p.status == 202} >= (
                workers
            )

        wait_for(every_process_accepted, timeout=WARM_TIMEOUT, what="each process took the key")
        new_key, committed = rotate_with_the_command_line(drill, portal.member_id)
        bound = committed + KEY_CACHE_SECONDS

        def every_process_refused() -> bool:
            by = answered_by(web.log_path)
            late = [p for p in list(old.probes.values()) if p.sent > bound]
            return {by.get(p.number) for p in late if p.status == 401} >= workers

        wait_for(every_process_refused, timeout=REFUSED_TIMEOUT, what="each process refused")
    finally:
        old.stop()
    time.sleep(0.5)  # the access log's last lines
    by = answered_by(web.log_path)
    probes = sorted(old.probes.values(), key=lambda p: p.sent)
    assert {p.status for p in probes} <= {202, 401}, {p.status for p in probes}

    last_accepted: dict[int, float] = defaultdict(lambda: float("-inf"))
    first_refused: dict[int, float] = {}
    for probe in probes:
        pid = by[probe.number]
        if probe.status == 202:
            last_accepted[pid] = max(last_accepted[pid], probe.sent - committed)
        elif probe.sent > committed:
            first_refused.setdefault(pid, probe.sent - committed)
    late_accepted = [p for p in probes if p.status == 202 and p.sent > bound]
    assert late_accepted == [], f"accepted after the bound: {late_accepted[:5]}"
    assert set(first_refused) == workers

    new = Prober(web.url, new_key, 2)
    accepted_new: set[int] = set()

    def every_process_takes_the_new_key() -> bool:
        probe = new.one()
        assert probe.status in (202, 0), probe
        if probe.status == 202:
            time.sleep(0.05)
            accepted_new.add(answered_by(web.log_path).get(probe.number, -1))
        return accepted_new >= workers

    wait_for(every_process_takes_the_new_key, timeout=WARM_TIMEOUT, every=0.0)
    drill.report(
        "key_rotation",
        bound_seconds=KEY_CACHE_SECONDS,
        probes=len(probes),
        last_accepted_after_commit={pid: round(s, 3) for pid, s in last_accepted.items()},
        first_refused_after_commit={pid: round(s, 3) for pid, s in first_refused.items()},
    )
