"""Health endpoints from PRODUCT.md: /healthz while the process runs, /readyz needs the database."""

from flask import Flask

from b24app.db import Database


def test_healthz_answers_while_the_process_runs(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_readyz_is_ready_when_the_database_answers(client) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["database"] == "ok"


def test_readyz_says_what_is_not_ready_when_the_database_is_gone(app: Flask, tmp_path) -> None:
    app.extensions["b24app.db"] = Database(f"sqlite:///{tmp_path}/missing-dir/none.sqlite3")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "database" in response.get_json()
    assert response.get_json()["status"] == "not ready"
