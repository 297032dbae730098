"""Limits on our own doors (issue 6, issue 9 items 1 and 6): the PBX API per key (the key as
parsed, not the header's spelling), failed authentications per address, the installer per
address; past them 429 with Retry-After, and other keys are untouched. Limits here are LOWERED so
that a few requests cross them; the defaults are exercised by tests/drills/test_backlog.py."""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from limits.storage import MemoryStorage
from werkzeug.test import TestResponse

from b24app import create_app
from b24app.cli import upgrade_database
from b24app.ratelimit import SafeMemoryStorage
from tests.conftest import make_settings
from tests.pbx import REGISTERED, make_portal

REDIS_URL = "redis://127.0.0.1:6379/15"
ADDRESS = {"REMOTE_ADDR": "10.0.0.1"}
LOWERED = {
    "B24APP_PBX_RATE_LIMIT": "3 per minute",
    "B24APP_PBX_AUTH_FAILURE_LIMIT": "5 per minute",
    "B24APP_INSTALL_RATE_LIMIT": "2 per minute",
}


def limited_app(database_url: str, tmp_path: Any, **overrides: object) -> Flask:
    upgrade_database(database_url)
    return create_app(make_settings(database_url, tmp_path, **(LOWERED | overrides)))


@pytest.fixture
def limited(database_url: str, tmp_path: Any) -> Iterator[Flask]:
    app = limited_app(database_url, tmp_path)
    yield app
    app.extensions["b24app.db"].dispose()


@pytest.fixture
def limited_client(limited: Flask) -> FlaskClient:
    return limited.test_client()


def post_call(
    client: FlaskClient, key: str, address: str = "10.0.0.1", scheme: str = "Bearer"
) -> TestResponse:
    return client.post(
        "/pbx/v1/calls/finish",
        json=REGISTERED,
        headers={"Authorization": f"{scheme} {key}"},
        environ_base={"REMOTE_ADDR": address},
    )


def test_a_pbx_key_past_its_limit_gets_429_with_retry_after(limited: Flask):
    client = limited.test_client()
    key = make_portal(limited)
    accepted = [post_call(client, key) for _ in range(3)]
    assert [a.status_code for a in accepted] == [202, 202, 202]  # a repeat; each one counts
    assert all("Retry-After" not in a.headers for a in accepted)  # only a 429 says wait
    over = post_call(client, key)
    assert over.status_code == 429
    assert 0 < int(over.headers["Retry-After"]) <= 60  # the per-minute window's reset
    assert over.mimetype == "application/problem+json"
    assert over.get_json()["status"] == 429
    assert post_call(client, make_portal(limited)).status_code == 202  # another key


def test_the_key_is_counted_as_parsed_not_as_the_header_is_spelled(limited: Flask):
    """`Bearer K`, `bearer K` and `BEARER  K` are one key (RFC 6750 via pbx/auth.py): one bucket."""
    client = limited.test_client()
    key = make_portal(limited)
    spellings = ["Bearer", "bearer", "BEARER "]
    assert [post_call(client, key, scheme=s).status_code for s in spellings] == [202] * 3
    assert post_call(client, key, scheme="bEaReR").status_code == 429


def test_failed_authentications_past_the_limit_shut_the_address_out(limited: Flask):
    client = limited.test_client()
    for index in range(5):
        assert post_call(client, f"b24pbx_wrong{index}").status_code == 401
    refused = post_call(client, "b24pbx_another_guess")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert client.post("/pbx/v1/calls/finish", json={}, environ_base=ADDRESS).status_code == 429
    assert post_call(client, "b24pbx_wrong", address="10.0.0.2").status_code == 401


def test_a_working_key_is_never_refused_by_its_addresss_failures_even_after_a_restart(
    database_url: str, tmp_path: Any
):
    """Found by trying it: after a web restart (gunicorn's max_requests, a deploy) no key is
    known to the process, and a PBX sharing an address with a failing one got 429 for every
    call. A working key is looked up instead, and goes through."""
    upgrade_database(database_url)
    settings = make_settings(database_url, tmp_path, **LOWERED)
    first = create_app(settings)
    good = make_portal(first)
    assert post_call(first.test_client(), good).status_code == 202
    first.extensions["b24app.db"].dispose()
    restarted = create_app(settings)  # a new process with the same settings: nothing known yet
    client = restarted.test_client()
    for index in range(6):
        post_call(client, f"b24pbx_wrong{index}")
    assert post_call(client, "b24pbx_wrong").status_code == 429  # the address is shut out
    assert [post_call(client, good).status_code for _ in range(3)] == [202] * 3
    restarted.extensions["b24app.db"].dispose()


def test_a_key_that_authenticated_keeps_working_beside_failing_neighbours(limited: Flask):
    """A hosted PBX: tenants share an address; one tenant's portal is gone (401 on each call)."""
    client = limited.test_client()
    good = make_portal(limited)
    assert post_call(client, good).status_code == 202
    for index in range(8):
        assert post_call(client, f"b24pbx_gone{index}").status_code in (401, 429)
    assert post_call(client, "b24pbx_gone").status_code == 429
    assert post_call(client, good).status_code == 202  # exempt: it proved itself


def test_accepted_calls_do_not_count_as_failed_authentications(limited: Flask):
    client = limited.test_client()
    keys = [make_portal(limited) for _ in range(3)]
    for key in keys:  # 9 good requests from one address, over the failed-auth limit of 5
        assert [post_call(client, key).status_code for _ in range(3)] == [202] * 3
    assert post_call(client, "b24pbx_wrong").status_code == 401


def test_the_installer_is_limited_per_address(limited_client: FlaskClient):
    answers = [limited_client.post("/install") for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [400, 400]  # missing fields, but counted
    assert answers[2].status_code == 429
    assert int(answers[2].headers["Retry-After"]) > 0


def test_every_503_says_when_to_come_back(app: Flask):
    """/readyz without a worker heartbeat answers 503; it carries Retry-After like every 503."""
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    assert int(answer.headers["Retry-After"]) > 0


# --- the in-memory storage under threads (issue 9 item 6) -------------------------------------


@pytest.mark.parametrize(
    "storage_class",
    [
        pytest.param(
            MemoryStorage,
            marks=pytest.mark.xfail(
                reason="limits 5.8.0 starts its expiry Timer twice under threads "
                "(alisaifee/limits#352): this shows the bug; XPASS just means it did not "
                "happen in this run",
                strict=False,
            ),
        ),
        SafeMemoryStorage,
    ],
)
def test_the_memory_storage_survives_threads_racing_to_restart_its_timer(
    storage_class: type[MemoryStorage],
) -> None:
    """Many request threads hit the limiter just as its expiry timer has ended (what a gthread
    worker does): `RuntimeError: threads can only be started once` must never come out."""
    storage = storage_class()
    errors: list[BaseException] = []
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        for _ in range(400):
            storage.timer.cancel()
            storage.timer.join()
            barrier = threading.Barrier(16)

            def hit(barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    storage.acquire_entry("key", 1_000_000, 60)
                except RuntimeError as error:
                    errors.append(error)

            threads = [threading.Thread(target=hit) for _ in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        sys.setswitchinterval(switch)
        storage.timer.cancel()
    assert errors == []


# --- Redis: one count for every process and host ---------------------------------------------


def redis_or_skip() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis at 127.0.0.1:6379 (apt-get install redis-server)")


def test_with_redis_two_processes_share_one_count(database_url: str, tmp_path: Any):
    """Two app instances (as two gunicorn processes or hosts) on one Redis: a key's requests are
    counted together, and so are an address's failed authentications."""
    redis_or_skip()
    first = limited_app(database_url, tmp_path, B24APP_RATELIMIT_STORAGE_URL=REDIS_URL)
    second = create_app(first.config["SETTINGS"])
    try:
        key = make_portal(first)
        address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"  # fresh per run
        a, b = first.test_client(), second.test_client()
        assert post_call(a, key, address).status_code == 202
        assert post_call(b, key, address).status_code == 202
        assert post_call(a, key, address).status_code == 202
        assert post_call(b, key, address).status_code == 429  # 3 per minute across both

        for index in range(5):
            client = a if index % 2 else b
            assert post_call(client, f"b24pbx_{uuid.uuid4().hex}", address).status_code == 401
        assert post_call(a, "b24pbx_guess", address).status_code == 429
    finally:
        first.extensions["b24app.db"].dispose()
        second.extensions["b24app.db"].dispose()
