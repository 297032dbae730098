"""Single-flight refresh across processes: the failure that kills most Bitrix24 integrations.

Refresh tokens are single-use (settings/oauth/auto-renewal.md: keep the new one, do not use the
old one again; the development portal answers invalid_grant to a reused one). With every token
expired, 200 calls from 4 processes × 10 threads must cause exactly one refresh and all succeed.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from b24app.db import get_db
from b24app.portals import store
from devportal import faults
from tests.conftest import LiveApp

PROCESSES = 4
THREADS = 10
CALLS_PER_PROCESS = 50


def call_many(settings_values: dict[str, Any], member_id: str) -> list[str]:
    """In a fresh process: build the app and make CALLS_PER_PROCESS calls from THREADS threads."""
    from b24app import create_app
    from b24app.bitrix.errors import BitrixError
    from b24app.config import load_settings
    from b24app.wiring import store_of

    app = create_app(load_settings(_env_file=None, **settings_values))

    def one(_: int) -> str:
        try:
            return "ok" if store_of(app).client(member_id).result("user.admin") is True else "no"
        except BitrixError as error:
            return error.code

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, range(CALLS_PER_PROCESS)))


def settings_values(live: LiveApp) -> dict[str, Any]:
    s = live.app.config["SETTINGS"]
    return {
        "B24APP_ENV": "testing",
        "DATABASE_URL": live.app.config["DATABASE_URL"],
        "SECRET_KEY": s.secret_key,
        "B24_CLIENT_ID": s.client_id,
        "B24_CLIENT_SECRET": s.client_secret,
        "PUBLIC_URL": s.public_url,
        "B24_OAUTH_SERVER": s.oauth_server,
        "B24APP_ENCRYPTION_KEYS": s.encryption_keys,
        "B24APP_ALLOW_LOCAL_PORTALS": True,
        "B24APP_INSTANCE_PATH": s.instance_path,
        "B24APP_LOG_LEVEL": "WARNING",
    }


def test_200_concurrent_calls_from_4_processes_refresh_exactly_once(live_app: LiveApp):
    portal = live_app.install()
    portal.bucket.burst = 10_000  # this test is about tokens, not the rate limit
    with live_app.app.app_context(), get_db().write() as session:
        store.find_portal(session, portal.member_id).enterprise_limits = True
    faults.expire_tokens(live_app.dev, portal)

    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        jobs = [
            pool.apply_async(call_many, (settings_values(live_app), portal.member_id))
            for _ in range(PROCESSES)
        ]
        outcomes = [outcome for job in jobs for outcome in job.get(timeout=240)]

    oauth = [e for e in live_app.dev.journal if e.get("oauth") == "refresh_token"]
    assert len(outcomes) == PROCESSES * CALLS_PER_PROCESS == 200
    assert outcomes.count("ok") == 200, {o: outcomes.count(o) for o in set(outcomes)}
    assert len(oauth) == 1
    assert [e["error"] for e in oauth] == [None]  # no invalid_grant


def test_a_hanging_oauth_server_does_not_hold_up_the_intake(live_app: LiveApp):
    """Issue 9 (found by trying it): the refresh lock used to be a write transaction, which on
    SQLite locks the whole database — an OAuth server that accepts connections and never answers
    stopped every portal's PBX intake for the HTTP timeout (10 s), again at every probe. Now no
    transaction is open while the OAuth server is asked: another portal's PBX, and this portal's
    own, are answered 202 at once while the refresh hangs."""
    import socket
    import threading
    import time

    import requests

    from b24app.bitrix.errors import BitrixError
    from b24app.portals import pbx_keys
    from b24app.wiring import store_of

    stuck, calm = live_app.install("stuck"), live_app.install("calm")
    keys = {}
    with live_app.app.app_context(), get_db().read() as session:
        for portal in (stuck, calm):
            row = store.find_portal(session, portal.member_id)
            keys[portal.code] = pbx_keys.reveal(row.settings, store_of(live_app.app).box)
    hanging = socket.socket()  # accepts connections (the kernel's backlog), never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)
    installation_store = store_of(live_app.app)
    url = f"http://127.0.0.1:{hanging.getsockname()[1]}"
    installation_store.settings = installation_store.settings.model_copy(
        update={"oauth_server": url}
    )
    faults.expire_tokens(live_app.dev, stuck)
    refresh_failed: list[BaseException] = []

    def refresh() -> None:
        try:
            installation_store.client(stuck.member_id).call("profile")
        except BitrixError as error:
            refresh_failed.append(error)

    thread = threading.Thread(target=refresh)
    started = time.monotonic()
    thread.start()
    time.sleep(1.0)  # the refresh is waiting for the OAuth server now
    waited = {}
    for code in ("calm", "stuck"):
        body = {"PBX_CALL_ID": f"during-{code}", "CALL_ID": "x.1", "USER_ID": 1, "DURATION": 3}
        sent = time.monotonic()
        answer = requests.post(
            f"{live_app.url}/pbx/v1/calls/finish",
            json=body,
            headers={"Authorization": f"Bearer {keys[code]}"},
            timeout=30,
        )
        waited[code] = time.monotonic() - sent
        assert answer.status_code == 202, answer.text
    thread.join(timeout=30)
    hanging.close()
    assert time.monotonic() - started >= 9  # the refresh really hung (the 10 s timeout)
    assert refresh_failed and refresh_failed[0].code == "OAUTH_UNAVAILABLE"  # not the portal's
    assert "no answer in 10s" in str(refresh_failed[0])
    assert max(waited.values()) < 2.0, waited
