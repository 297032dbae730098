"""Helpers for the recording tests: real audio (silent mp3 frames, a wav made by the standard
library), a real HTTP server playing the PBX's recording server, `record` events stored as the
intake stores them, and the worker's download step run in the test's thread."""

from __future__ import annotations

import io
import itertools
import socket
import threading
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from b24app.config import Settings
from b24app.db import get_db
from b24app.delivery import recordings
from b24app.models import Call, CallEvent, CallRecording, utcnow
from b24app.portals import store
from devportal.methods import Call as DevCall
from devportal.methods.telephony import external_call_finish, external_call_register
from devportal.state import DevPortal, DevState
from tests.conftest import TEST_CLIENT_ID, LiveApp

_numbers = itertools.count(1)

# MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no CRC, no padding: 417-byte frames; a frame of
# zero side information and main data is silence (what encoders write for digital silence).
MP3_FRAME = b"\xff\xfb\x90\x00" + bytes(417 - 4)


def mp3_bytes(size: int) -> bytes:
    """A silent mp3 stream of about `size` bytes (whole frames, at least eight)."""
    return MP3_FRAME * max(8, size // len(MP3_FRAME))


def wav_bytes(seconds: float = 1.0) -> bytes:
    """Silence as 8 kHz 16-bit mono wav (how Asterisk records), made by the `wave` module."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(int(16000 * seconds)))
    return buffer.getvalue()


# --- the PBX's recording server -----------------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    endless: bytes | None = None  # this chunk again and again, no Content-Length, until cut


class RecordServer:
    """A threaded HTTP server on 127.0.0.1 answering GETs from `routes` (path → Route);
    `hits` lists the paths asked for, `sent` the body bytes written per path."""

    def __init__(self, port: int = 0) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        self.sent: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server.hits.append(self.path)
                route = server.routes.get(self.path, Route(404, b"not found"))
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.endless is not None:
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self._endless(route.endless)
                    return
                if "Content-Length" not in route.headers:
                    self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)
                server.sent[self.path] = len(route.body)

            def _endless(self, chunk: bytes) -> None:
                written = 0
                try:
                    while written < 1024 * 1024 * 1024:
                        self.wfile.write(chunk)
                        written += len(chunk)
                except OSError:  # the client hung up
                    pass
                server.sent[self.path] = written
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def record_server() -> Iterator[RecordServer]:
    server = RecordServer()
    yield server
    server.stop()


def free_port() -> int:
    """A port nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- calls, events and recordings as the intake stores them -------------------------------------


def portal_id(live: LiveApp, portal: DevPortal) -> int:
    with live.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        return row.id


def record_event(
    live: LiveApp,
    portal: DevPortal,
    *,
    url: str | None = None,
    data: bytes | None = None,
    filename: str | None = None,
    settings: Settings | None = None,
) -> tuple[int, int]:
    """A call with a `record` event and its recording (`add_url` for `url`, `store_upload` for
    `data`), in one transaction as the intake does; returns (calls.id, the event's id)."""
    pid = portal_id(live, portal)
    now = utcnow()
    with live.app.app_context(), get_db().write() as session:
        pbx_call_id = f"pbx-{next(_numbers)}"
        call = Call(portal_id=pid, idempotency_key=pbx_call_id, next_attempt_at=now)
        session.add(call)
        session.flush()
        request = {"PBX_CALL_ID": pbx_call_id, "RECORD_URL": url} if url else {}
        event = CallEvent(call_id=call.id, kind="record", request=request or {"FILE": True})
        session.add(event)
        session.flush()
        if url is not None:
            recordings.add_url(
                session, portal_id=pid, event_id=event.id, url=url, filename=filename, now=now
            )
        else:
            recordings.store_upload(
                session,
                portal_id=pid,
                event_id=event.id,
                filename=filename,
                data=data or b"",
                now=now,
                settings=settings or live.app.config["SETTINGS"],
            )
        return call.id, event.id


def recording(app: Flask, event_id: int) -> CallRecording:
    with app.app_context(), get_db().read() as session:
        row = session.get(CallRecording, event_id)
        assert row is not None
        return row


def event(app: Flask, event_id: int) -> CallEvent:
    with app.app_context(), get_db().read() as session:
        row = session.get(CallEvent, event_id)
        assert row is not None
        return row


def call_row(app: Flask, call_id: int) -> Call:
    with app.app_context(), get_db().read() as session:
        return session.scalars(select(Call).where(Call.id == call_id)).one()


def run_downloads(app: Flask, *, ahead: float = 0.0, settings: Settings | None = None) -> list[str]:
    """What the worker's download pool does, in this thread: claim the due downloads and fetch
    each, until none is due; `ahead` runs the clock that many seconds in the future (a backoff
    runs out). Returns the outcomes."""
    clock: Callable[[], datetime] = lambda: utcnow() + timedelta(seconds=ahead)  # noqa: E731
    chosen = settings or app.config["SETTINGS"]
    outcomes: list[str] = []
    db = get_db(app)
    while True:
        jobs = recordings.claim_downloads(db, worker_id="test:1:abc", now=clock(), limit=2)
        if not jobs:
            return outcomes
        for job in jobs:
            outcome = recordings.fetch(
                db, job, settings=chosen, worker_id="test:1:abc", clock=clock
            )
            outcomes.append(outcome)


# --- finished calls on the development portal -------------------------------------------------


def finished_call(dev: DevState, portal: DevPortal) -> str:
    """A call our app registered and finished on the portal (by its own handlers, as delivery
    would have); returns its CALL_ID, ready for attachRecord."""
    token = next(
        t for t in dev.access_tokens.values()
        if t.member_id == portal.member_id and t.client_id == TEST_CLIENT_ID
    )  # fmt: skip
    with dev.lock:
        register = DevCall(dev, portal, token, "telephony.externalCall.register")
        body = {"USER_ID": 1, "PHONE_NUMBER": f"7906{next(_numbers):07d}", "TYPE": 2, "SHOW": 0}
        call_id = str(external_call_register(register, body)["CALL_ID"])
        finish = DevCall(dev, portal, token, "telephony.externalCall.finish")
        external_call_finish(finish, {"CALL_ID": call_id, "USER_ID": 1, "DURATION": 30})
    return call_id
