"""Running one REST method for a token: scope, time budget, the handler, the journal.

Shared by the HTTP endpoint (rest.py) and `batch`, whose commands each count against their own
method's time budget (limits.md) but not against the request-rate bucket.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from b24app.devportal import methods
from b24app.devportal.errors import RestError, system_error
from b24app.devportal.methods import Call, Page
from b24app.devportal.state import AccessToken, DevPortal, DevState

OPERATING_WINDOW = 600.0  # limits.md: ten one-minute buckets


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
    with state.lock:
        spent, reset_at = _operating(state, portal, key, started)
        if spent > portal.operating_limit:
            raise system_error("OPERATION_TIME_LIMIT", operating_reset_at=reset_at)
        result = method.handler(Call(state, portal, token, method.name), params)
        finished = state.now()
        processing = max(finished - started, 0.0)
        portal.operating.setdefault(key, []).append((started, processing))
        spent, reset_at = _operating(state, portal, key, finished)
    return result, time_object(started, finished, processing, spent, reset_at)


def _granted(required: str, scope: str) -> bool:
    """`required` may list alternatives with `|` (user.get: user, user_brief or user_basic)."""
    granted = {s.strip() for s in scope.replace(" ", ",").split(",") if s.strip()}
    return any(option in granted for option in required.split("|"))


def _operating(
    state: DevState, portal: DevPortal, key: tuple[str, str], now: float
) -> tuple[float, float]:
    """Seconds this app spent in this method during the window, and when the oldest drops out."""
    entries = [e for e in portal.operating.get(key, []) if e[0] > now - OPERATING_WINDOW]
    portal.operating[key] = entries
    spent = sum(duration for _, duration in entries)
    oldest = entries[0][0] if entries else now
    return spent, float(int(oldest + OPERATING_WINDOW))


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
