"""Drill (PostgreSQL only): the database restarts under load. While PBXs post calls, this
machine's PostgreSQL is restarted (`pg_ctlcluster ... restart`: connections cut, server down,
server up). The web must answer 503 with Retry-After for what it cannot store, never 202 for a
call that is not in the database afterwards; every call that got 202 must be delivered, once;
the processes must recover by themselves (same PIDs, /readyz green again).

Marked `alone` (and named to sort last): restarting the shared server disturbs anything else
using it at that moment, so `make test` runs it after the parallel run, by itself; the outage is
kept short (one restart) and the server is brought back even if the drill fails.
It needs the local cluster (TEST_DATABASE_URL on 127.0.0.1 and pg_ctlcluster), else it skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from b24app.db import get_db
from b24app.models import Call as CallRow
from tests.drills import Call, Pbx, judge, unregistered_call
from tests.drills.conftest import Drill
from tests.drills.processes import Managed

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
PORTALS = 4
LOAD_THREADS = 4
BEFORE = 3.0  # seconds of load before the restart
AFTER = 5.0  # seconds of load after the server is back
MAX_CALLS = 3_000  # the load generator's bound, whatever happens

pytestmark = [pytest.mark.slow, pytest.mark.postgresql]


def _cluster() -> list[str]:
    """`pg_ctlcluster --skip-systemctl-redirect <version> main`, or skip when not possible."""
    host = urlsplit(TEST_DATABASE_URL.replace("+psycopg", "")).hostname
    versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
    if host not in ("127.0.0.1", "localhost") or not versions or not shutil.which("pg_ctlcluster"):
        pytest.skip("needs this machine's PostgreSQL cluster (pg_ctlcluster, 127.0.0.1)")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _ready(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = subprocess.run(
            ["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], check=False, timeout=10
        )
        if probe.returncode == 0:
            return True
        time.sleep(0.2)
    return False


def _ensure_running(command: list[str]) -> None:
    if not _ready(30):
        subprocess.run([*command, "start"], check=False, timeout=120)
        assert _ready(60), "PostgreSQL did not come back"


@pytest.fixture
def cluster() -> Iterator[list[str]]:
    """The local cluster's control command; it is running again after the test, whatever
    happened."""
    command = _cluster()
    try:
        yield command
    finally:
        _ensure_running(command)


@pytest.fixture
def database_url(cluster: list[str]) -> Iterator[str]:
    """A private schema, dropped afterwards by a connection opened then (NullPool): the one
    tests/conftest.py keeps in its pool would have been cut by the restart."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(TEST_DATABASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        _ensure_running(cluster)
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class Load(threading.Thread):
    """PBXs posting new calls, one try each, as fast as the web answers, until stopped."""

    def __init__(self, pbx: Pbx, keys: dict[str, str]) -> None:
        super().__init__(name="load", daemon=True)
        self.pbx = pbx
        self.keys = keys
        self.calls: list[Call] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        threads = [threading.Thread(target=self._post) for _ in range(LOAD_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _post(self) -> None:
        codes = list(self.keys)
        n = 0
        while not self.stop.is_set():
            with self._lock:
                if len(self.calls) >= MAX_CALLS:
                    return
                code = codes[n % len(codes)]
                call = unregistered_call(code, self.keys[code], "dbr")
                self.calls.append(call)
            n += 1
            status, _ = self.pbx.post_once(call)
            if status not in (202, 503):
                time.sleep(0.05)  # not a tight loop on something unexpected


@pytest.mark.alone
def test_database_restart_under_load_answers_503_and_loses_nothing(
    drill: Drill, cluster: list[str]
) -> None:
    webs = drill.start_webs(2)
    portals = [drill.install(f"db{n}") for n in range(PORTALS)]
    workers = [drill.fleet.start_worker("--lease", "10", "--idle-sleep", "0.3") for _ in range(2)]
    pids = [process.pid for process in [*webs, *workers]]
    _wait_ready(drill)
    keys = {portal.code: drill.pbx_key(portal) for portal in portals}
    pbx = Pbx(drill.web_urls, threads=8)
    load = Load(pbx, keys)

    _checkpoint()  # so that the restart's own checkpoint is quick: a short outage
    load.start()
    try:
        time.sleep(BEFORE)
        down = time.monotonic()
        restart = subprocess.run(
            [*cluster, "restart"], check=False, timeout=120, capture_output=True, text=True
        )
        assert restart.returncode == 0, restart.stderr
        up = time.monotonic()
        time.sleep(AFTER)
    finally:
        load.stop.set()
        load.join(timeout=30)
    calls = load.calls
    during = Counter(status for call in calls for status, _ in call.answers)
    refused = [
        (status, retry_after)
        for call in calls
        for status, retry_after in call.answers
        if status != 202
    ]
    first_after = _first_accepted_after(calls, up)
    accepted_under_load = sum(1 for call in calls if call.public_id)

    # what a PBX does with a 503: send again later; the calls not stored must now be accepted
    unanswered = [call for call in calls if call.public_id is None]
    pbx.send(unanswered, deadline=time.monotonic() + 60)
    drill.wait_settled(len(calls), timeout=120)
    drained = time.monotonic()
    stored = _stored_ids(drill)
    verdict = judge(portals, calls)

    drill.report(
        "database_restart",
        calls=len(calls),
        answers_under_load=dict(during),
        answers_503_with_retry_after=sum(1 for s, r in refused if s == 503 and r),
        accepted_under_load=accepted_under_load,
        sent_again_after_503=len(unanswered),
        seconds_restart_took=round(up - down, 1),
        seconds_to_first_202_after_restart=first_after,
        seconds_to_drain_after_restart=round(drained - up, 1),
        finished_on_portals=verdict.finished,
        processes_restarted=sum(p.starts - 1 for p in [*webs, *workers]),
    )

    assert refused, "no request met the restart: the drill did not test anything"
    assert {s for s, _ in refused} == {503}, Counter(s for s, _ in refused)
    assert all(retry_after for _, retry_after in refused)
    accepted = {call.public_id for call in calls if call.public_id}
    assert len(accepted) == len(calls)
    assert accepted <= stored  # no 202 for a call that is not in the database
    assert drill.states() == {"delivered": len(calls)}
    assert verdict.exactly_once, verdict
    # recovered by themselves: the same processes, alive, and ready again
    assert [process.pid for process in [*webs, *workers]] == pids
    assert all(process.alive() for process in [*webs, *workers])
    assert all(_booted_workers(web) == 1 for web in webs)  # gunicorn did not replace its worker
    _wait_ready(drill)


def _booted_workers(web: Managed) -> int:
    return web.log_path.read_text(errors="replace").count("Booting worker with pid")


def _checkpoint() -> None:
    admin = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text("CHECKPOINT"))
    admin.dispose()


def _wait_ready(drill: Drill) -> None:
    """/readyz of every web process: database reachable and a worker's heartbeat fresh."""
    deadline = time.monotonic() + 60
    for url in drill.web_urls:
        while requests.get(url + "/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, f"{url}/readyz not ready"
            time.sleep(0.5)


def _first_accepted_after(calls: list[Call], moment: float) -> float | None:
    times = [c.accepted_at for c in calls if c.accepted_at and c.accepted_at >= moment]
    return round(min(times) - moment, 2) if times else None


def _stored_ids(drill: Drill) -> set[str]:
    with drill.app.app_context(), get_db().read() as session:
        return set(session.scalars(select(CallRow.public_id)))
