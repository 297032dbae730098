"""Helpers for the delivery tests: queue calls as the PBX intake stores them, register calls on
the development portal as a PBX would have, run the worker, and read what Bitrix24 saw."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from b24app import create_app
from b24app.db import get_db
from b24app.delivery.retry import RetryPolicy
from b24app.delivery.worker import Worker
from b24app.models import Call, Portal, PortalHealth, utcnow
from b24app.portals import store
from devportal.methods import Call as DevCall
from devportal.methods.telephony import external_call_register
from devportal.state import Bucket, DevPortal, DevState
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.stored import add_finish

# The default policy: a failed call is not due again within the same `--once` run.
TEST_POLICY = RetryPolicy()

_numbers = itertools.count(1)


def portal_id(live: LiveApp, portal: DevPortal) -> int:
    with live.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        return row.id


def queue(live: LiveApp, portal: DevPortal, requests: list[dict[str, Any]]) -> list[int]:
    """Store finished calls as the intake does: queued, due now, a finish event each."""
    pid = portal_id(live, portal)
    with live.app.app_context(), get_db().write() as session:
        return [add_finish(session, pid, request).id for request in requests]


def register_on_portal(dev: DevState, portal: DevPortal, count: int, **params: Any) -> list[str]:
    """Calls registered on the portal by our app (as a PBX did through us at call start), by
    the development portal's own register handler; returns their CALL_IDs."""
    token = next(
        t for t in dev.access_tokens.values()
        if t.member_id == portal.member_id and t.client_id == TEST_CLIENT_ID
    )  # fmt: skip
    call = DevCall(dev, portal, token, "telephony.externalCall.register")
    ids = []
    with dev.lock:
        for _ in range(count):
            body = {
                "USER_ID": 2,
                "PHONE_NUMBER": f"7906{next(_numbers):07d}",
                "TYPE": 2,
                "SHOW": 0,
                **params,
            }
            ids.append(external_call_register(call, body)["CALL_ID"])
    return ids


def finished_requests(call_ids: list[str], **fields: Any) -> list[dict[str, Any]]:
    """What the intake stores for "these registered calls ended" (with their PBX ids)."""
    return [
        {
            "CALL_ID": call_id,
            "PBX_CALL_ID": f"pbx-{next(_numbers)}",
            "USER_ID": 2,
            "DURATION": 42,
            **fields,
        }
        for call_id in call_ids
    ]


def unregistered_requests(count: int, **fields: Any) -> list[dict[str, Any]]:
    """Calls the PBX never registered: the worker registers them with EXTERNAL_CALL_ID."""
    return [
        {
            "PBX_CALL_ID": f"asterisk-{next(_numbers)}.{n}",
            "USER_ID": 3,
            "PHONE_NUMBER": f"7495{next(_numbers):07d}",
            "TYPE": 2,
            "CALL_START_DATE": "2026-03-07T10:20:30",
            "DURATION": 17,
            **fields,
        }
        for n in range(count)
    ]


def run_worker(app: Flask, *, ahead: float = 0.0, **options: Any) -> Counter[str]:
    """`worker --once`: deliver what is due, then return the outcome counts. The worker's clock
    stands still at the start, `ahead` seconds in the future (backoffs, probes and retention run
    out): what is due then goes, and nothing falls due during the run however slow it is (a
    probe due PROBE_FIRST after a pause would otherwise end the pause within a slow run)."""
    options.setdefault("policy", TEST_POLICY)
    worker = Worker(app, **options)
    at = utcnow() + timedelta(seconds=ahead)
    worker.ctx.clock = lambda: at
    return worker.run(once=True)


def paused(live: LiveApp, portal: DevPortal) -> PortalHealth | None:
    """The portal's pause (portal_health.py), or None when delivery to it is not paused."""
    with live.app.app_context(), get_db().read() as session:
        row = session.get(PortalHealth, portal_id(live, portal))
        return row if row is not None and row.paused_since is not None else None


def calls(live: LiveApp, ids: list[int] | None = None) -> list[Call]:
    with live.app.app_context(), get_db().read() as session:
        query = select(Call).order_by(Call.id)
        if ids is not None:
            query = query.where(Call.id.in_(ids))
        return list(session.scalars(query))


def make_due(live: LiveApp) -> None:
    """Move time on for the outbox: every waiting call is due now."""
    with live.app.app_context(), get_db().write() as session:
        session.execute(
            update(Call)
            .where(Call.state == "queued")
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


def set_portal(live: LiveApp, portal: DevPortal, **values: Any) -> None:
    """Change our stored portal (status) or its settings (timezone, currency, ...)."""
    with live.app.app_context(), get_db().write() as session:
        row = session.scalars(select(Portal).where(Portal.member_id == portal.member_id)).one()
        for name, value in values.items():
            target = row if hasattr(Portal, name) and name != "settings" else row.settings
            setattr(target, name, value)


def finished_ids(portal: DevPortal) -> Counter[str]:
    """How many times each CALL_ID was finished on the portal."""
    return Counter(record["CALL_ID"] for record in portal.statistics)


def is_delivery(entry: dict[str, Any]) -> bool:
    """A batch of the worker's (the installer sends one of its own: event.bind)."""
    cmd = entry["params"].get("cmd") or {}
    return any(str(c).startswith(("telephony.", "voximplant.")) for c in cmd.values())


def batches(dev: DevState, portal: DevPortal) -> list[dict[str, Any]]:
    """The worker's batch requests to the portal, in order."""
    return [
        e
        for e in dev.entries(method="batch")
        if e["member_id"] == portal.member_id and is_delivery(e)
    ]


def commands(dev: DevState, portal: DevPortal, method: str) -> list[dict[str, Any]]:
    return [e for e in dev.entries(method=method) if e["member_id"] == portal.member_id]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def roomy(portal: DevPortal) -> None:
    """A request bucket that tests with hundreds of calls do not run into (limits.md's bucket
    is the throttle's business, tested elsewhere)."""
    portal.bucket = Bucket(1000.0, 10_000)


@pytest.fixture
def short_timeout_app(live_app: LiveApp) -> Iterator[Flask]:
    """A second app on the same database whose HTTP timeout to Bitrix24 is 0.5 s."""
    settings = live_app.app.config["SETTINGS"].model_copy(update={"http_timeout": 0.5})
    app = create_app(settings)
    yield app
    get_db(app).dispose()
