"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify
from flask.typing import ResponseReturnValue

from b24app.db import get_db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """Alive: the web process answers."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready: the database answers. Otherwise 503 naming what is not ready."""
    try:
        get_db().ping()
    except Exception as exc:  # any driver error means "not ready"
        return jsonify(status="not ready", database=f"unreachable: {type(exc).__name__}"), 503
    return jsonify(status="ok", database="ok")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
