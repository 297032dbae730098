"""Running one REST method for a token: scope, time budget, the handler, the journal.

Shared by the HTTP endpoint (rest.py) and `batch`, whose commands each count against their own
method's time budget (limits.md) but not against the request-rate bucket.
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from devportal import methods
from devportal.errors import RestError, system_error
from devportal.methods import Call, Page
from devportal.state import AccessToken, DevPortal, DevState

OPERATING_WINDOW = 600.0  # limits.md: ten one-minute baskets
OPERATING_BASKET = 60.0
UNMETERED = frozenset({"batch"})  # limits.md: "An external call to batch is not accounted for"

# The journal entry of the HTTP request being served (set by rest.py), so that the commands of a
# batch can point at the entry of the batch that ran them.
journal_entry: ContextVar[dict[str, Any] | None] = ContextVar("journal_entry", default=None)


def execute(
    state: DevState,
    portal: DevPortal,
    token: AccessToken,
    name: str,
    params: dict[str, Any],
    *,
    in_batch: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Run `name` and return (result or Page, the `time` object). Raises RestError."""
    started = state.now()
    method = methods.find(name)
    if method is None:
        raise system_error("ERROR_METHOD_NOT_FOUND")
    if in_batch and not method.batchable:
        raise system_error("ERROR_BATCH_METHOD_NOT_ALLOWED")
    if method.scope and not _granted(method.scope, token.scope):
        raise system_error("insufficient_scope")
    key = (token.client_id, method.name.lower())
    if key[1] in UNMETERED:
        return _unmetered(state, method, token, portal, params, started)
    with state.lock:
        spent, reset_at = _operating(state, portal, key, started)
        if spent > portal.operating_limit:
            raise system_error("OPERATION_TIME_LIMIT", operating_reset_at=reset_at)
        result = method.handler(Call(state, portal, token, method.name), params)
        finished = state.now()
        processing = max(finished - started, 0.0)
        _spend(portal.operating.setdefault(key, []), started, processing)
        spent, reset_at = _operating(state, portal, key, finished)
    return result, time_object(started, finished, processing, spent, reset_at)


def _unmetered(
    state: DevState,
    method: methods.Method,
    token: AccessToken,
    portal: DevPortal,
    params: dict[str, Any],
    started: float,
) -> tuple[Any, dict[str, Any]]:
    """A method outside the time budget: its `time` has no operating fields (batch.md example)."""
    with state.lock:
        result = method.handler(Call(state, portal, token, method.name), params)
        finished = state.now()
    time_info = time_object(started, finished, max(finished - started, 0.0), 0.0, 0.0)
    del time_info["operating_reset_at"], time_info["operating"]
    return result, time_info


def _granted(required: str, scope: str) -> bool:
    """`required` may list alternatives with `|` (user.get: user, user_brief or user_basic)."""
    granted = {s.strip() for s in scope.replace(" ", ",").split(",") if s.strip()}
    return any(option in granted for option in required.split("|"))


def _spend(entries: list[tuple[float, float]], started: float, processing: float) -> None:
    """Add a call's time to its one-minute basket: one (first call, total) entry per basket, so the
    budget check stays cheap however many calls a portal takes (no rescan of every call)."""
    basket = int(started // OPERATING_BASKET)
    if entries and int(entries[-1][0] // OPERATING_BASKET) == basket:
        first, total = entries[-1]
        entries[-1] = (first, total + processing)
    else:
        entries.append((started, processing))


def _operating(
    state: DevState, portal: DevPortal, key: tuple[str, str], now: float
) -> tuple[float, float]:
    """Seconds this app spent in this method during the window, and when the oldest basket drops.

    limits.md: time is summed in one-minute baskets; a basket's countdown starts at the first call
    recorded in its minute and lasts 10 minutes, then its whole sum leaves `operating`.
    """
    first_call: dict[int, float] = {}
    for started, _ in portal.operating.get(key, []):
        basket = int(started // OPERATING_BASKET)
        first_call[basket] = min(first_call.get(basket, started), started)
    live = {b for b, first in first_call.items() if first + OPERATING_WINDOW > now}
    entries = [e for e in portal.operating.get(key, []) if int(e[0] // OPERATING_BASKET) in live]
    portal.operating[key] = entries
    spent = sum(duration for _, duration in entries)
    oldest = min((first_call[b] for b in live), default=now)
    return spent, float(math.ceil(oldest + OPERATING_WINDOW))


def time_object(
    started: float, finished: float, processing: float, operating: float, reset_at: float
) -> dict[str, Any]:
    """The envelope's `time` (api-reference/data-types.md, #time)."""
    return {
        "start": started,
        "finish": finished,
        "duration": finished - started,
        "processing": processing,
        "date_start": _iso(started),
        "date_finish": _iso(finished),
        "operating_reset_at": int(reset_at),
        "operating": operating,
    }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def envelope(result: Any, time_info: dict[str, Any]) -> dict[str, Any]:
    """The success envelope (settings/how-to-call-rest-api/general-principles.md)."""
    if isinstance(result, Page):
        body: dict[str, Any] = {"result": result.items, "total": result.total}
        if result.next is not None:
            body["next"] = result.next
        body["time"] = time_info
        return body
    return {"result": result, "time": time_info}


__all__ = ["RestError", "envelope", "execute", "time_object"]
