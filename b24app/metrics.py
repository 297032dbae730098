"""Prometheus metrics, shared by web and worker processes.

Under gunicorn (several processes) set `PROMETHEUS_MULTIPROC_DIR` to an empty, writable folder
shared by every web and worker process of a host: each process writes its own files there and
`/metrics` adds them up (prometheus_client's multiprocess mode). Without it, each process counts
for itself (fine for one process and for tests).

Queue depth and the age of the oldest queued call are read from the database when /metrics is
scraped, so they are right whichever process asks.

Who may scrape: with `B24APP_METRICS_TOKEN` set, whoever sends `Authorization: Bearer <token>`;
in production without it, nobody (403 saying so); in development and testing, anyone.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Iterator

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from b24app.bitrix.errors import KNOWN_CODES
from b24app.config import Settings
from b24app.models import Call, CallState, Portal, PortalHealth, PortalStatus, utcnow

HTTP_REQUESTS = Counter(
    "b24app_http_requests_total", "HTTP requests by route and status", ["route", "status"]
)
HTTP_SECONDS = Histogram(
    "b24app_http_request_seconds",
    "HTTP request duration by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CALLS_ACCEPTED = Counter(
    "b24app_calls_accepted_total",
    "PBX finish requests by outcome (accepted, duplicate, conflict, invalid, unauthorized)",
    ["outcome"],
)
CALLS_DONE = Counter(
    "b24app_calls_finished_total",
    "Calls leaving the queue: delivered, or failed with a reason code",
    ["outcome", "reason"],
)
DELIVERY_RETRIES = Counter(
    "b24app_delivery_retries_total", "Delivery attempts rescheduled, by reason", ["reason"]
)
DELIVERY_LATENCY = Histogram(
    "b24app_delivery_latency_seconds",
    "From accepting a call to Bitrix24 confirming it",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
BATCHES = Counter("b24app_batches_total", "batch requests sent to Bitrix24", ["outcome"])
BITRIX_ANSWERS = Counter(
    "b24app_bitrix_answers_total", "Bitrix24 answers by method and error code", ["method", "code"]
)
PROBES = Counter(
    "b24app_portal_probes_total", "Probes of paused portals, by outcome (ok, failed)", ["outcome"]
)
REFRESHES = Counter("b24app_token_refreshes_total", "Token refreshes by outcome", ["outcome"])
ROUTES = Counter(
    "b24app_routes_total",
    "GET /pbx/v1/route answers by outcome (found, not_found, cached, slow, busy, resting, "
    "paused, inactive, no_slot, rate_limited, unavailable, refused, failed)",
    ["outcome"],
)
THROTTLE_WAIT = Histogram(
    "b24app_throttle_wait_seconds",
    "Time spent waiting for the portal's request slot",
    buckets=(0, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)


def code_label(code: str | None, *, known: frozenset[str] = frozenset()) -> str:
    """A metric label for an error code: the code when b24app knows it (bitrix/errors.py
    KNOWN_CODES, or the caller's own `known` codes), else "other", so that label values come
    from a fixed set whatever a portal answers."""
    if not code:
        return ""
    return code if code in KNOWN_CODES or code in known else "other"


class QueueCollector(Collector):
    """Queue depth by state and the oldest queued call's age, read at scrape time."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from b24app.db import get_db

        depth = GaugeMetricFamily("b24app_queue_depth", "Calls by state", labels=["state"])
        oldest = GaugeMetricFamily(
            "b24app_queue_oldest_age_seconds", "Age of the oldest call not yet delivered"
        )
        with self.app.app_context(), get_db().read() as session:
            counts = dict(
                session.execute(select(Call.state, func.count()).group_by(Call.state)).all()
            )
            first = session.scalar(
                select(func.min(Call.created_at)).where(
                    Call.state.in_([CallState.QUEUED, CallState.DELIVERING])
                )
            )
        for state in CallState:
            depth.add_metric([state.value], counts.get(state.value, 0))
        age = (utcnow() - first).total_seconds() if first else 0.0
        oldest.add_metric([], max(age, 0.0))
        yield depth
        yield oldest
        yield from self._waiting()

    def _waiting(self) -> Iterator[GaugeMetricFamily]:
        """Portals paused after an outage, and the calls waiting for a portal: paused, or not
        active (needs_reauth, payment_required, …): what an outage alone would never fail."""
        from b24app.db import get_db

        paused = GaugeMetricFamily(
            "b24app_portals_paused", "Portals whose delivery is paused until a probe answers"
        )
        waiting = GaugeMetricFamily(
            "b24app_calls_waiting",
            "Queued calls waiting for their portal: paused, or not active",
            labels=["reason"],
        )
        is_paused = Call.portal_id.in_(
            select(PortalHealth.portal_id).where(PortalHealth.paused_since.is_not(None))
        )
        inactive = Call.portal_id.in_(select(Portal.id).where(Portal.status != PortalStatus.ACTIVE))
        queued = Call.state == CallState.QUEUED
        with self.app.app_context(), get_db().read() as session:
            portals = session.scalar(
                select(func.count()).where(PortalHealth.paused_since.is_not(None))
            )
            by_pause = session.scalar(select(func.count()).where(queued, is_paused))
            by_status = session.scalar(select(func.count()).where(queued, inactive))
        paused.add_metric([], portals or 0)
        waiting.add_metric(["paused"], by_pause or 0)
        waiting.add_metric(["portal_status"], by_status or 0)
        yield paused
        yield waiting


def exposition(app: Flask) -> bytes:
    """Everything /metrics shows: this host's processes plus the queue from the database."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        counters = generate_latest(registry)
    else:
        counters = generate_latest(REGISTRY)
    queue = CollectorRegistry(auto_describe=False)
    queue.register(QueueCollector(app))
    return counters + generate_latest(queue)


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        HTTP_REQUESTS.labels(route, str(response.status_code)).inc()
        started = g.get("metrics_started")
        if started is not None:
            HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        refusal = _refusal(app.config["SETTINGS"], request.headers.get("Authorization", ""))
        if refusal is not None:
            return refusal
        return Response(exposition(app), mimetype=CONTENT_TYPE_LATEST)


def _refusal(settings: Settings, authorization: str) -> Response | None:
    """Why this scrape of /metrics is refused (a 401 or 403 response), or None to serve it.

    With B24APP_METRICS_TOKEN set, only `Authorization: Bearer <token>` (RFC 6750), compared in
    constant time; in production without it, nobody (the queue, portals and error counts are not
    the public's); in development and testing without it, anyone (`make run`, the tests)."""
    token = settings.metrics_token
    if token is None:
        if settings.env != "production":
            return None
        return Response(
            "/metrics is off: set B24APP_METRICS_TOKEN and scrape with "
            "'Authorization: Bearer <token>' (docs/deployment.md, Metrics).\n",
            status=403,
            mimetype="text/plain",
        )
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return None
    return Response(
        "/metrics needs 'Authorization: Bearer <B24APP_METRICS_TOKEN>'.\n",
        status=401,
        mimetype="text/plain",
        headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
    )


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit hook: drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
