"""Liveness, readiness, and the delivery workers' heartbeats."""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from b24app.db import Database, get_db
from b24app.models import WorkerHeartbeat, utcnow

bp = Blueprint("health", __name__)

HEARTBEAT_FRESH = timedelta(seconds=60)  # a worker beats every few seconds while it runs


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Alive: the web process answers."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready: the database answers and a delivery worker has beaten recently; otherwise 503
    naming what is not ready."""
    try:
        get_db().ping()
    except Exception as exc:  # any driver error means "not ready"
        body = {"status": "not ready", "database": f"unreachable: {type(exc).__name__}"}
        return jsonify(body), 503, {"Retry-After": "5"}
    workers = fresh_workers(get_db())
    if not workers:
        body = {"status": "not ready", "database": "ok", "worker": "no heartbeat in 60 s"}
        return jsonify(body), 503, {"Retry-After": "5"}
    return jsonify(status="ok", database="ok", worker=f"{workers} alive")


def beat(db: Database, worker_id: str) -> None:
    """Record that the worker `worker_id` is alive (called by the worker loop)."""
    with db.write() as session:
        row = session.get(WorkerHeartbeat, worker_id)
        if row is None:
            row = WorkerHeartbeat(
                worker_id=worker_id, hostname=socket.gethostname()[:255], pid=os.getpid()
            )
            session.add(row)
        row.seen_at = utcnow()


def fresh_workers(db: Database) -> int:
    with db.read() as session:
        return (
            session.scalar(
                select(func.count()).where(WorkerHeartbeat.seen_at > utcnow() - HEARTBEAT_FRESH)
            )
            or 0
        )


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
