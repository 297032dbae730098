"""Prometheus metrics (issue 6): requests by route and status, calls by outcome, queue depth and
the oldest queued call's age, delivery latency — moving as calls go through."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from flask.testing import FlaskClient

from b24app import create_app
from b24app.db import get_db
from b24app.portals import pbx_keys, store
from b24app.wiring import current_store
from tests.conftest import LiveApp, make_settings


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = (
        re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" (\S+)"
    )
    match = re.search(r"^" + pattern + r"$", text, re.M)
    return float(match.group(1)) if match else 0.0


def moved(before: str, after: str, name: str, **labels: str) -> float:
    """How much one sample moved between two scrapes of /metrics."""
    return sample(after, name, **labels) - sample(before, name, **labels)


def test_metrics_move_as_a_call_is_accepted_and_delivered(live_app: LiveApp):
    portal = live_app.install()
    with live_app.app.app_context(), get_db().read() as session:
        key = pbx_keys.reveal(
            store.find_portal(session, portal.member_id).settings, current_store().box
        )
    before = requests.get(f"{live_app.url}/metrics", timeout=10).text
    call = {
        "PBX_CALL_ID": "metrics-1",
        "PHONE_NUMBER": "+15550002",
        "TYPE": 2,
        "CALL_START_DATE": "2026-11-27T10:00:00+00:00",
        "USER_ID": 1,
        "DURATION": 7,
    }
    headers = {"Authorization": f"Bearer {key}"}
    posted = time.time()
    assert (
        requests.post(
            f"{live_app.url}/pbx/v1/calls/finish", json=call, headers=headers, timeout=10
        ).status_code
        == 202
    )
    queued = requests.get(f"{live_app.url}/metrics", timeout=10).text
    waited = time.time() - posted
    assert sample(queued, "b24app_queue_depth", state="queued") == 1
    assert sample(before, "b24app_queue_oldest_age_seconds") == 0  # nothing was waiting
    assert 0 <= sample(queued, "b24app_queue_oldest_age_seconds") <= waited  # ours, since sent
    assert (
        sample(queued, "b24app_calls_accepted_total", outcome="accepted")
        == sample(before, "b24app_calls_accepted_total", outcome="accepted") + 1
    )
    route = "/pbx/v1/calls/finish"
    assert moved(before, queued, "b24app_http_requests_total", route=route, status="202") == 1

    assert live_app.app.test_cli_runner().invoke(args=["worker", "--once"]).exit_code == 0
    after = requests.get(f"{live_app.url}/metrics", timeout=10).text
    assert sample(after, "b24app_queue_depth", state="queued") == 0
    assert sample(after, "b24app_queue_depth", state="delivered") == 1
    delivered = sample(after, "b24app_calls_finished_total", outcome="delivered", reason="")
    assert (
        delivered
        == sample(before, "b24app_calls_finished_total", outcome="delivered", reason="") + 1
    )
    # the counters are the process's own, moved by earlier tests too: what this call moved
    assert moved(before, after, "b24app_delivery_latency_seconds_count") == 1
    assert moved(before, after, "b24app_batches_total", outcome="ok") == 1
    assert moved(before, after, "b24app_bitrix_answers_total", method="batch", code="ok") == 1
    assert moved(before, after, "b24app_throttle_wait_seconds_count") == 1


def test_label_values_come_from_a_fixed_set_whatever_a_portal_answers(live_app: LiveApp):
    """Issue 10: a hostile portal answering invented error codes cannot grow /metrics' label
    set: the codes b24app does not know are counted as "other"."""
    import contextlib
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from b24app.bitrix.errors import BitrixError

    invented = [f"MADE_UP_{n}" for n in range(5)]

    class Hostile(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"error": invented.pop(), "error_description": "x"}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    portal = live_app.install()
    with live_app.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, portal.member_id, for_update=True)
        row.client_endpoint = f"http://127.0.0.1:{server.server_address[1]}/rest/"
    before = requests.get(f"{live_app.url}/metrics", timeout=10).text
    with live_app.app.app_context():
        client = current_store().client(portal.member_id)
        for _ in range(5):
            with contextlib.suppress(BitrixError):
                client.call("profile")
    server.shutdown()
    after = requests.get(f"{live_app.url}/metrics", timeout=10).text
    assert "MADE_UP" not in after
    other = sample(after, "b24app_bitrix_answers_total", method="profile", code="other")
    assert (
        other - sample(before, "b24app_bitrix_answers_total", method="profile", code="other") == 5
    )


# --- issue 14 item 10: /metrics is not the public's -----------------------------------------

METRICS_TOKEN = "m" * 40
PRODUCTION = {
    "B24APP_ENV": "production",
    "PUBLIC_URL": "https://b24app.example.com",
    "B24_OAUTH_SERVER": "https://oauth.example.com",
    "SECRET_KEY": "s" * 40,
}


@contextmanager
def metrics_client(database_url: str, tmp_path: Path, **overrides: object) -> Iterator[FlaskClient]:
    app = create_app(make_settings(database_url, tmp_path, **overrides))
    try:
        yield app.test_client()
    finally:
        app.extensions["b24app.db"].dispose()


def test_metrics_with_a_token_answer_only_its_bearer(database_url: str, tmp_path: Path):
    with metrics_client(database_url, tmp_path, B24APP_METRICS_TOKEN=METRICS_TOKEN) as client:
        for headers in (
            {},
            {"Authorization": "Bearer " + "x" * 40},
            {"Authorization": METRICS_TOKEN},
        ):
            refused = client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert b"b24app_queue_depth" not in refused.data
        answered = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert answered.status_code == 200
        assert b"b24app_queue_depth" in answered.data


def test_production_without_a_token_shows_no_metrics(database_url: str, tmp_path: Path):
    with metrics_client(database_url, tmp_path, **PRODUCTION) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 403
        assert b"B24APP_METRICS_TOKEN" in refused.data
        assert b"b24app_" not in refused.data
        assert client.get("/healthz").status_code == 200


def test_production_with_a_token_serves_metrics(database_url: str, tmp_path: Path):
    with metrics_client(
        database_url, tmp_path, B24APP_METRICS_TOKEN=METRICS_TOKEN, **PRODUCTION
    ) as client:
        assert client.get("/metrics").status_code == 401
        answered = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert answered.status_code == 200 and b"b24app_queue_depth" in answered.data
