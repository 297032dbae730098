"""Health endpoints from PRODUCT.md: /healthz while the process runs; /readyz needs the database
(and, issue 6, a fresh delivery-worker heartbeat)."""

from datetime import timedelta

from flask import Flask
from sqlalchemy import update

from b24app.db import Database, get_db
from b24app.health import beat
from b24app.models import WorkerHeartbeat, utcnow


def test_healthz_answers_while_the_process_runs(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_readyz_is_ready_when_the_database_answers_and_a_worker_beats(app: Flask, client) -> None:
    beat(get_db(app), "worker-1")
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["database"] == "ok"


def test_readyz_says_the_worker_is_missing_when_no_heartbeat_is_fresh(app: Flask, client) -> None:
    beat(get_db(app), "worker-1")
    with get_db(app).write() as session:
        session.execute(update(WorkerHeartbeat).values(seen_at=utcnow() - timedelta(minutes=5)))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "heartbeat" in response.get_json()["worker"]


def test_readyz_says_what_is_not_ready_when_the_database_is_gone(app: Flask, tmp_path) -> None:
    app.extensions["b24app.db"] = Database(f"sqlite:///{tmp_path}/missing-dir/none.sqlite3")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["database"].startswith("unreachable")
