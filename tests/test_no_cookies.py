"""b24app keeps nothing in cookies (b24app.NoCookieSession): no answer sets one, and Flask's
session cannot be written by mistake."""

from __future__ import annotations

from flask import Flask, session
from flask.testing import FlaskClient


def test_no_answer_sets_a_cookie_and_the_session_refuses_writes(app: Flask) -> None:
    @app.get("/_test/session")
    def write_session() -> str:
        session["portal"] = "alpha"
        return "written"

    client: FlaskClient = app.test_client()
    client.set_cookie("session", "eyJwb3J0YWwiOiJiZXRhIn0.forged")
    for path in ("/healthz", "/pbx/v1/openapi.json"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert "Set-Cookie" not in answer.headers
    assert client.get("/_test/session").status_code == 500  # NullSession: "session is unavailable"
