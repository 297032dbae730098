"""Sending requests to the PBX: one leased request, its end recorded (`send`: the worker's
part, run in delivery/worker.py's originate pool), and the settings page's "send a test call"
(`send_test`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from b24app.logs import get_logger
from b24app.originate import outbox, proof, recipients, webhooks
from b24app.portals.store import InstallationStore, find_portal

log = get_logger(__name__)


def send(
    store: InstallationStore, job: outbox.Job, *, worker_id: str, now: Callable[[], datetime]
) -> str:
    """Send one leased request and record how it ended; returns its state (outbox.record)."""
    url, secret = recipients.target(store, job.portal_id)
    refused = proof.confirm(store, job) if url else None  # (no URL: nothing to confirm for)
    if refused is not None:
        return _recorded(store, job, refused, worker_id=worker_id, now=now)
    user_id = job.payload.get("USER_ID")
    inner = (
        recipients.extension(store, job.member_id, job.portal_id, int(user_id))
        if user_id and user_id.isascii() and user_id.isdigit()
        else None
    )
    payload = webhooks.body(job.kind, job.payload, inner)
    attempt = webhooks.send(store.settings, url, secret, job.webhook_id, payload)
    return _recorded(store, job, attempt, worker_id=worker_id, now=now)


def _recorded(
    store: InstallationStore,
    job: outbox.Job,
    attempt: webhooks.Attempt,
    *,
    worker_id: str,
    now: Callable[[], datetime],
) -> str:
    state = outbox.record(store.db, job, attempt, worker_id=worker_id, now=now())
    log.info(
        "originate webhook",
        member_id=job.member_id,
        kind=job.kind,
        attempt=job.attempts,
        outcome=attempt.code,
        status=attempt.status,
        state=state,
        seconds=attempt.seconds,
    )
    return state


@dataclass(frozen=True)
class TestAnswer:
    """What the PBX said to a test call: `ok` (2xx), its `status`, the first characters of its
    `body`, the `seconds` taken, or `error` (plain English) with `error_code` (webhooks.Attempt's
    code: no_url, unsafe_address, timeout, connection, redirect, refused)."""

    ok: bool
    status: int | None
    seconds: float
    body: str
    error: str | None
    error_code: str | None


def send_test(
    store: InstallationStore, member_id: str, *, user_id: int | None, phone_number: str
) -> TestAnswer:
    """Send the portal's PBX a signed `call.test` now and say how it answered (never raises)."""
    with store.db.read() as session:
        portal = find_portal(session, member_id)
        portal_id = portal.id if portal is not None else None
    if portal_id is None:
        return TestAnswer(False, None, 0.0, "", "unknown portal", "no_url")
    url, secret = recipients.target(store, portal_id)
    inner = recipients.extension(store, member_id, portal_id, user_id) if user_id else None
    payload = webhooks.trial_body(user_id, inner, phone_number)
    attempt = webhooks.send(store.settings, url, secret, f"msg_test_{time.time_ns()}", payload)
    return TestAnswer(
        attempt.ok,
        attempt.status,
        attempt.seconds,
        attempt.body,
        attempt.error,
        None if attempt.ok else attempt.code,
    )
