"""For the click-to-call block's tests (HTTP and browser): a PBX's webhook receiver of the tests'
own, a thread HTTP server on 127.0.0.1 that answers as told and keeps what it received (the
development portal has its own, devportal/pbx_receiver.py; this one lets a test choose each
answer), and requests to the PBX written straight to the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from b24app.db import get_db
from b24app.models import Origination
from b24app.portals import store
from devportal.state import DevPortal
from tests.conftest import LiveApp


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class StandInPbx:
    """A PBX's webhook receiver on 127.0.0.1: answers `status` with `answer` after `delay`
    seconds (a `location` makes it a redirect) and keeps what it received."""

    status: int = 200
    answer: str = '{"status": "dialing"}'
    delay: float = 0.0
    location: str | None = None
    received: list[Received] = field(default_factory=list)
    url: str = ""


@contextmanager
def stand_in_pbx() -> Iterator[StandInPbx]:
    pbx = StandInPbx()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            pbx.received.append(Received(self.path, dict(self.headers.items()), body))
            time.sleep(pbx.delay)
            data = pbx.answer.encode()
            try:
                self.send_response(pbx.status)
                if pbx.location:
                    self.send_header("Location", pbx.location)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # b24app stopped waiting (the slow PBX's case)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    pbx.url = f"http://127.0.0.1:{server.server_address[1]}/b24/originate"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield pbx
    finally:
        server.shutdown()
        server.server_close()


def refused_port() -> str:
    """The address of a port nothing listens on (bound, then closed)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}/b24/originate"


def add_origination(live: LiveApp, portal: DevPortal, **columns: Any) -> None:
    with live.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        n = session.query(Origination).count()
        values: dict[str, Any] = {
            "portal_id": row.id,
            "dedupe_key": f"key-{n}",
            "webhook_id": f"msg_{n}",
            **columns,
        }
        session.add(Origination(**values))
