"""Bitrix24's event queue, for the events a person's action causes (click-to-call, callback).

api-reference/events/index.md, "Features of Operation": Bitrix24 does not call the handler
directly; the event goes into a queue and from there a POST is sent to the handler, "with a
slight delay". So `enqueue` returns at once (the click's own answer never waits for a handler)
and each handler gets its POST from a thread of its own.

"Event Limitations", 2: **no retries**. "If your server does not respond or returns an error,
the Bitrix24 queue server will log the failure but will not resend the event." The tutorial
(tutorials/telephony/index.md §5) adds that a handler must answer `200`, after which "Bitrix24
treats the event as delivered". So each POST is made once: a `200` is `delivered`, anything
else (another status, a redirect — never followed —, no answer within EVENT_TIMEOUT) is
`failed`, kept with its reason, and not sent again. An app that must not lose such an event
cannot count on a second delivery.

Every delivery is kept in `portal.deliveries` (newest last) as DELIVERY, without any token:

    {id, event, client_id, handler, event_handler_id, data (the event's `data`, all strings),
     call_id (data's CALL_ID, or null), user_id (whose action it was), state: "queued" |
     "sending" | "delivered" | "failed", queued_at, sent_at, answered_at (the portal's clock, s),
     status (the handler's HTTP status, null when it did not answer), error (why it failed:
     "HTTP 500", "ReadTimeout", ...), answer (the first ANSWER_KEPT characters of the body)}

and journalled as `{"event", "url", "status", "error"}` like the install driver's events.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import requests

from devportal.install_driver import EventPost
from devportal.state import DevPortal, DevState

EVENT_TIMEOUT = 5.0  # seconds; the queue server does not wait long for a handler
ANSWER_KEPT = 500  # characters of the handler's answer kept for the inspection API

_ids = itertools.count(1)


def enqueue(
    state: DevState,
    portal: DevPortal,
    client_id: str,
    event: str,
    posts: list[EventPost],
    *,
    data: dict[str, str],
    user_id: int | None,
) -> list[dict[str, Any]]:
    """Queue `event` for each handler body in `posts` and start sending; returns copies of the
    new DELIVERY records, all still "queued". Never raises, never waits for a handler."""
    entries = []
    with state.lock:
        for post in posts:
            entry: dict[str, Any] = {
                "id": next(_ids),
                "event": event,
                "client_id": client_id,
                "handler": post.url,
                "event_handler_id": dict(post.pairs).get("event_handler_id"),
                "data": dict(data),
                "call_id": data.get("CALL_ID"),
                "user_id": user_id,
                "state": "queued",
                "queued_at": state.now(),
                "sent_at": None,
                "answered_at": None,
                "status": None,
                "error": None,
                "answer": None,
            }
            portal.deliveries.append(entry)
            entries.append(entry)
        copies = [dict(e) for e in entries]
    for entry, post in zip(entries, posts, strict=True):
        threading.Thread(
            target=_deliver, args=(state, portal, entry, post), name="devportal-event", daemon=True
        ).start()
    return copies


def deliveries(state: DevState, portal: DevPortal) -> list[dict[str, Any]]:
    """Copies of the portal's DELIVERY records, oldest first."""
    with state.lock:
        return [dict(e) for e in portal.deliveries]


def _deliver(state: DevState, portal: DevPortal, entry: dict[str, Any], post: EventPost) -> None:
    """POST one event once; whatever happens is recorded, nothing is raised or retried."""
    with state.lock:
        entry.update(state="sending", sent_at=state.now())
    status: int | None = None
    answer: str | None = None
    error: str | None = None
    try:
        response = requests.post(
            post.url, data=post.pairs, timeout=EVENT_TIMEOUT, allow_redirects=False
        )
        status, answer = response.status_code, response.text[:ANSWER_KEPT]
        if status != 200:
            error = f"HTTP {status}"
    except requests.RequestException as exc:
        error = type(exc).__name__
    with state.lock:
        entry.update(
            state="delivered" if error is None else "failed",
            answered_at=state.now(),
            status=status,
            error=error,
            answer=answer,
        )
    state.record(
        {
            "ts": state.now(),
            "portal": portal.code,
            "member_id": portal.member_id,
            "client_id": entry["client_id"],
            "event": entry["event"],
            "url": post.url,
            "call_id": entry["call_id"],
            "status": status,
            "error": error,
        }
    )
