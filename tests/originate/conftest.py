"""Helpers for the Bitrix24 → PBX tests: a PBX's webhook receiver, a worker running in the
background at its default settings, and events posted to /events the way Bitrix24 posts them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from b24app.db import get_db
from b24app.delivery.worker import Worker
from b24app.models import Origination
from b24app.portals import originate_secret, store
from b24app.wiring import current_store
from devportal.state import DevPortal
from tests.conftest import TEST_CLIENT_ID, LiveApp


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """A PBX's originate webhook on 127.0.0.1: answers each POST with the next of `answers`
    ((status, body, headers); then 200) and keeps what it got in `received`."""

    answers: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    drip: float = 0.0  # > 0: after the headers, one byte of body every `drip` seconds, for a minute

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                receiver.received.append(Received(self.path, dict(self.headers.items()), data))
                status, body, headers = (
                    receiver.answers.pop(0)
                    if receiver.answers
                    else (200, '{"status":"dialing"}', {})
                )
                payload = body.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if receiver.drip:
                    self._drip()
                    return
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _drip(self) -> None:
                self.send_header("Content-Length", "1000")
                self.end_headers()
                ends = time.monotonic() + 60
                try:
                    while time.monotonic() < ends and not receiver.stopped:
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(receiver.drip)
                except OSError:  # the sender hung up
                    pass
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/originate"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    stopped: bool = False

    def stop(self) -> None:
        self.stopped = True
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def background_worker(live_app: LiveApp) -> Iterator[Worker]:
    """The worker as `flask worker` runs it (default settings), in a thread."""
    worker = Worker(live_app.app)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    yield worker
    worker.stop()
    thread.join(timeout=30)


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until `condition` held; fails after `timeout` seconds."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def application_token(portal: DevPortal) -> str:
    return portal.installations[TEST_CLIENT_ID].application_token


def post_event(
    live: LiveApp,
    portal: DevPortal,
    event: str,
    data: dict[str, str],
    *,
    token: str | None = None,
    ts: str = "1773236988",
) -> requests.Response:
    """POST an event to /events form-encoded with bracketed keys, as Bitrix24 does
    (api-reference/events/index.md); `token` defaults to the portal's application_token."""
    form = {
        "event": event,
        "event_handler_id": "1055",
        "ts": ts,
        "auth[domain]": portal.domain,
        "auth[member_id]": portal.member_id,
        "auth[application_token]": token if token is not None else application_token(portal),
        "auth[access_token]": "not-ours-to-keep",
        **{f"data[{name}]": value for name, value in data.items()},
    }
    return requests.post(f"{live.url}/events", data=form, timeout=10)


def set_originate(live: LiveApp, member_id: str, url: str | None) -> str:
    """Point the portal's originate webhook at `url`; returns the portal's secret."""
    with live.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, member_id)
        assert row is not None
        row.settings.originate_url = url
        return originate_secret.reveal(row.settings, current_store().box)


def originations(live: LiveApp) -> list[Origination]:
    with live.app.app_context(), get_db().read() as session:
        rows = list(session.query(Origination).order_by(Origination.id))
        session.expunge_all()
        return rows
