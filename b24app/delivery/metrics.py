"""The delivery's counters and timings, in one place.

Each hook writes a log line (JSON, through logs.py's redactor; member_id and call ids are not
secrets, tokens never get here) and feeds the Prometheus metrics of b24app/metrics.py. Another
backend (StatsD, OpenTelemetry) would change only this file.
"""

from __future__ import annotations

from collections.abc import Mapping

from b24app import metrics as prometheus
from b24app.delivery import retry
from b24app.logs import get_logger

log = get_logger("b24app.delivery")


def batch_sent(
    *,
    member_id: str,
    purpose: str,  # "deliver" or "lookup"
    calls: int,
    commands: int,
    outcome: str,  # "ok" or the error code of the whole request
    seconds: float,
) -> None:
    """One batch request to a portal."""
    prometheus.BATCHES.labels(_label(outcome)).inc()
    log.info(
        "batch",
        member_id=member_id,
        purpose=purpose,
        calls=calls,
        commands=commands,
        outcome=outcome,
        duration_ms=round(seconds * 1000, 1),
    )


def calls_recorded(*, member_id: str, counts: Mapping[str, int], seconds: float) -> None:
    """A portal's share of a round: how many calls were delivered, failed, left for later."""
    log.info(
        "portal round",
        member_id=member_id,
        **dict(counts),
        duration_ms=round(seconds * 1000, 1),
    )


def call_delivered(*, call: str, latency: float) -> None:
    """Seconds from the PBX's request to the finished call."""
    prometheus.CALLS_DONE.labels("delivered", "").inc()
    prometheus.DELIVERY_LATENCY.observe(max(latency, 0.0))
    log.info("call delivered", call=call, latency_s=round(latency, 3))


def call_failed(*, call: str, code: str) -> None:
    prometheus.CALLS_DONE.labels("failed", _label(code)).inc()
    log.info("call failed", call=call, error_code=code)


def call_retried(*, call: str, code: str) -> None:
    """A call rescheduled for another attempt, by the reason's code."""
    prometheus.DELIVERY_RETRIES.labels(_label(code)).inc()
    log.info("call retried", call=call, error_code=code)


def probe(*, member_id: str, ok: bool, code: str) -> None:
    """A paused portal was probed: it answered (ok) or failed again with `code`."""
    prometheus.PROBES.labels("ok" if ok else "failed").inc()
    log.info("portal probed", member_id=member_id, ok=ok, error_code=None if ok else code)


def claimed(*, portals: int, calls: int, seconds: float) -> None:
    if calls:
        log.debug("claimed", portals=portals, calls=calls, duration_ms=round(seconds * 1000, 1))


def worker_error(where: str, error: BaseException) -> None:
    """Something went wrong outside any one call; the worker carries on."""
    log.error("worker error", where=where, error=type(error).__name__, detail=str(error)[:300])


def _label(code: str) -> str:
    """The code as a metric label, from a fixed set (b24app/metrics.py, code_label)."""
    return prometheus.code_label(code, known=retry.OUR_CODES)
