"""The web process's gunicorn worker: gthread, with each request read whole before a thread runs it.

Why (issue 10, item 2): gunicorn's gthread worker gives a connection to a thread as soon as its
first bytes arrive, and the thread then reads the rest of the request blocking. A client that
announces a 100 kB body and sends a byte every 2 s holds that thread for days; a few of them
(processes × threads: 8 at `make run`'s defaults) starve /healthz, the PBX API, /install and
/events. gunicorn's own advice is a buffering proxy in front (nginx) or an async worker. Neither
fits here: the Procfile's `web:` is gunicorn on $PORT (no second program to install and start),
and gevent's monkey-patching of a threaded app (SQLAlchemy pools, psycopg, SQLite's C-level
waits) is a risk of its own. So this worker *is* the buffering front: it reads each request's
head and body in the worker's event loop (non-blocking, one selector for all connections, as
gthread already does for idle keep-alive connections) and hands a thread only a complete
request, which gunicorn's own parser then reads from memory. A slow client costs a socket and
its bytes so far, never a thread.

Bounds (the defaults of Apache's mod_reqtimeout, `header=20-40,MinRate=500 body=20,MinRate=500`,
https://httpd.apache.org/docs/2.4/mod/mod_reqtimeout.html):
- the head (request line and headers, at most HEAD_LIMIT bytes) within HEAD_SECONDS, extended by
  1 s per MIN_RATE bytes received up to HEAD_MAX_SECONDS; then the body within BODY_SECONDS,
  extended by 1 s per MIN_RATE bytes received. Late: `408 Request Timeout`, connection closed;
- at most READING_PER_ADDRESS connections of one client address (B24APP_READING_PER_ADDRESS)
  reading a request at once per worker process; more: `429`, closed at once. Behind a proxy
  that does not buffer, the proxy's address is every client's: raise the limit there;
- a body longer than the app's MAX_CONTENT_LENGTH is never read: `413` (problem+json, as the PBX
  API answers it), connection closed. With a Content-Length, at once; chunked, as soon as the
  chunks announced hold more data than the limit, or its bytes on the wire (framing included)
  pass the limit plus CHUNK_FRAMING (chunks of a few bytes each: no client sends a body so).

Only what the message's length needs is parsed here (RFC 9112 section 6: Content-Length, chunked
transfer coding); anything odd is handed to gunicorn's parser at once, which refuses it from the
bytes already there. Only what gunicorn refuses without reading more: what it accepts (lengths
with any number of leading zeros, a chunk size line up to its limit_request_field_size) is
buffered here like any other request, or a thread would wait in gunicorn's parser for the rest.
TLS (`certfile`) is not buffered: terminate TLS in front.

A connection that ends after its answer is closed the lingering way (RFC 9112 section 9.6:
write side shut, what the client still sends dropped for up to LINGER seconds) in the selector
too, not blocking the event loop as gthread's own close does. Known limit: a thread writing an
answer to a client that does not read it waits in the blocking send (gthread's).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import re
import selectors
import socket
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn.workers.gthread import TConn, ThreadWorker

HEAD_LIMIT = 64 * 1024  # bytes; gunicorn's own limits (4094-byte line, 8190-byte fields) are lower
HEAD_SECONDS = 20.0
HEAD_MAX_SECONDS = 40.0
BODY_SECONDS = 20.0
MIN_RATE = 500  # bytes per second that earn one more second
DEFAULT_BODY_LIMIT = 1024 * 1024  # when the app does not say (b24app's create_app says 1 MiB)
RECV_SIZE = 64 * 1024
# RFC 9112 section 9.6's lingering close, as gunicorn's util.close_graceful does it: after the
# last answer, the write side is shut and what the client still sends is read and dropped, for
# at most LINGER seconds and LINGER_BYTES bytes, so the kernel does not reset the connection
# (and lose the answer's end) over unread bytes
LINGER = 2.0
LINGER_BYTES = 64 * 1024
CHUNK_FRAMING = 64 * 1024  # bytes of chunk size lines (and trailers) a chunked body may add
# app.config key of the recording upload's body limit (set by pbx/views.py; named here, not
# imported: the worker class loads before the app)
RECORD_BODY_LIMIT = "PBX_RECORD_BODY_LIMIT"


def _reading_per_address() -> int:
    """B24APP_READING_PER_ADDRESS, a whole number ≥ 1 (default 50); SystemExit naming it else."""
    raw = os.environ.get("B24APP_READING_PER_ADDRESS", "50").strip()
    if not (raw.isdigit() and int(raw) >= 1):
        raise SystemExit(f"B24APP_READING_PER_ADDRESS={raw[:20]!r} must be a whole number >= 1")
    return int(raw)


READING_PER_ADDRESS = _reading_per_address()

_MULTIPART = re.compile(rb"\r\ncontent-type:[ \t]*multipart/form-data")
_HEX_DIGITS = re.compile(rb"[0-9A-Fa-f]+")  # RFC 9112 chunk-size = 1*HEXDIG: any leading zeros
# gunicorn's bound on a chunk size line (ChunkedReader: its limit_request_field_size, this when
# that is 0); a longer line with no CRLF yet it refuses from the bytes it has, a shorter one it
# waits for (in the thread)
DEFAULT_CHUNK_LINE_LIMIT = 8190
_BEYOND_ANY_LIMIT = 10**18  # a length of more than 18 digits (leading zeros aside): never parsed
_MALFORMED = -1  # "hand it to gunicorn's parser now": it refuses it from the bytes it has
_TOO_LARGE = -2  # "answer 413 now": the body is over the limit, whatever else is to come


@dataclass
class _Chunks:
    """How far a chunked body was walked: it starts at `start`; the next chunk's size line at
    `position`; the chunks before it hold `size` bytes of data."""

    start: int
    position: int
    size: int = 0


@dataclass
class _Lingering:
    """A connection being closed: until `ends` (monotonic seconds), `drained` bytes read."""

    ends: float
    drained: int = 0


@dataclass
class _Reading:
    """A connection whose request is still arriving."""

    address: str
    started: float
    data: bytearray = field(default_factory=bytearray)
    head_end: int | None = None  # index just past the blank line ending the head
    body_started: float = 0.0
    continued: bool = False  # "100 Continue" sent
    body_limit: int = DEFAULT_BODY_LIMIT  # this request's (the path decides, _body_limit)
    chunks: _Chunks | None = None  # a chunked body's walk so far

    def deadline(self) -> float:
        if self.head_end is None:
            earned = len(self.data) / MIN_RATE
            return self.started + min(HEAD_SECONDS + earned, HEAD_MAX_SECONDS)
        return self.body_started + BODY_SECONDS + (len(self.data) - self.head_end) / MIN_RATE


class BufferingThreadWorker(ThreadWorker):
    """gthread whose threads only ever see complete requests (see the module docstring).

    Every path by which gthread gives a connection to its pool goes through `enqueue_req`: a new
    connection, a kept-alive one that became readable, one with bytes read ahead. Here that
    starts reading the request in the event loop instead; `_dispatch` gives the thread the
    complete request.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading: dict[TConn, _Reading] = {}
        self.reading_by_address: collections.Counter[str] = collections.Counter()
        self.body_limit = DEFAULT_BODY_LIMIT
        self.path_limits: dict[bytes, int] = {}
        self.chunk_line_limit = self.cfg.limit_request_field_size or DEFAULT_CHUNK_LINE_LIMIT
        self.lingering: dict[socket.socket, _Lingering] = {}

    def load_wsgi(self) -> None:
        super().load_wsgi()
        config = getattr(self.wsgi, "config", None) or {}
        self.body_limit = int(config.get("MAX_CONTENT_LENGTH") or DEFAULT_BODY_LIMIT)
        record = config.get(RECORD_BODY_LIMIT)  # pbx/views.py: recordings come as uploads
        if record:
            self.path_limits[b"POST /pbx/v1/calls/record"] = int(record)

    def _body_limit(self, head: bytes) -> int:
        """The body limit of the request whose head this is: the app's MAX_CONTENT_LENGTH, or a
        larger one the app set for a path (recording uploads, multipart only: pbx/views.py)."""
        method, _, rest = head.partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if not _MULTIPART.search(head.lower()):
            return self.body_limit
        return self.path_limits.get(method + b" " + path, self.body_limit)

    def enqueue_req(self, conn: TConn) -> None:
        if getattr(conn, "complete", False) or self.cfg.is_ssl:
            conn.complete = False
            super().enqueue_req(conn)
            return
        address = str(conn.client[0]) if isinstance(conn.client, tuple) else ""
        if self.reading_by_address[address] >= READING_PER_ADDRESS:
            self._answer_and_close(conn, 429, "Too many connections from this address.")
            return
        state = _Reading(address, time.monotonic())
        if conn.parser is not None:  # bytes a kept-alive connection's parser read ahead
            state.data += conn.parser.unreader.take_buffered()
        self.reading[conn] = state
        self.reading_by_address[address] += 1
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        self._advance(conn, state)

    def _on_readable(self, conn: TConn, _sock: Any) -> None:
        state = self.reading.get(conn)
        if state is None:
            return
        try:
            data = conn.sock.recv(RECV_SIZE)
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return
            data = b""
        if not data:  # the client went away before its request was complete
            self._stop_reading(conn)
            self._close(conn)
            return
        state.data += data
        self._advance(conn, state)

    def _advance(self, conn: TConn, state: _Reading) -> None:
        """Dispatch the request once complete (or hopeless); else keep reading."""
        if state.head_end is None:
            start = len(state.data) - len(state.data.lstrip(b"\r\n"))  # RFC 9112 section 2.2
            end = state.data.find(b"\r\n\r\n", start)
            if end < 0:
                if len(state.data) > HEAD_LIMIT:
                    self._stop_reading(conn)
                    self._answer_and_close(conn, 431, "Request header fields too large.")
                return
            state.head_end = end + 4
            state.body_started = time.monotonic()
            state.body_limit = self._body_limit(bytes(state.data[start : state.head_end]))
            state.chunks = _Chunks(state.head_end, state.head_end)
        end_of_message = _message_end(
            state.data,
            state.head_end,
            state.body_limit,
            chunks=state.chunks,
            chunk_line_limit=self.chunk_line_limit,
        )
        if end_of_message == _TOO_LARGE:
            self._stop_reading(conn)
            self._answer_too_large(conn, state.body_limit)
            return
        if end_of_message is None:
            self._continue(conn, state)
            return
        self._dispatch(conn, state)

    def _continue(self, conn: TConn, state: _Reading) -> None:
        """A client that waits for "100 Continue" before its body gets it (RFC 9110 10.1.1);
        gunicorn sends its own later, and a client reads any number of 1xx answers."""
        if state.continued or state.head_end is None:
            return
        head = bytes(state.data[: state.head_end]).lower()
        if b"\r\nexpect:" in head and b"100-continue" in head:
            state.continued = True
            self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")

    def _dispatch(self, conn: TConn, state: _Reading) -> None:
        self._stop_reading(conn)
        if conn.parser is None:
            conn.initialized = True  # gthread's TConn.init() for plain HTTP/1.x, done here
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(state.data))
        conn.data_ready = True
        conn.complete = True
        self.enqueue_req(conn)

    def _stop_reading(self, conn: TConn) -> None:
        state = self.reading.pop(conn, None)
        if state is None:
            return
        self.reading_by_address[state.address] -= 1
        if self.reading_by_address[state.address] <= 0:
            del self.reading_by_address[state.address]
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def finish_request(self, conn: TConn, fs: Any) -> None:
        """gthread's, with the lingering close of a connection that ends done in the selector:
        gthread's (util.close_graceful) blocks the event loop up to LINGER seconds for each
        client that does not close, so a few such clients froze every connection."""
        conn.close = partial(self._close_lingering, conn, conn.close)
        super().finish_request(conn, fs)

    def _close_lingering(self, conn: TConn, close: Any, graceful: bool = False) -> None:
        if not graceful:
            close()
            return
        sock = conn.sock
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, partial(self._on_lingering, sock))
        except (OSError, ValueError, KeyError):
            close()
            return
        self.lingering[sock] = _Lingering(time.monotonic() + LINGER)

    def _on_lingering(self, sock: socket.socket, _sock: Any) -> None:
        """Read and drop what the client still sends; close at its end or past LINGER_BYTES."""
        lingering = self.lingering.get(sock)
        if lingering is None:
            return
        try:
            data = sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        lingering.drained += len(data)
        if not data or lingering.drained >= LINGER_BYTES:
            self._end_lingering(sock)

    def _end_lingering(self, sock: socket.socket) -> None:
        self.lingering.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def murder_pending(self) -> None:
        """gthread's check of waiting connections, run every loop: also time out slow requests
        and end lingering closes past their LINGER seconds."""
        super().murder_pending()
        now = time.monotonic()
        for sock in [s for s, lingering in self.lingering.items() if lingering.ends <= now]:
            self._end_lingering(sock)
        late = [conn for conn, state in self.reading.items() if state.deadline() <= now]
        for conn in late:
            self._stop_reading(conn)
            self._answer_and_close(conn, 408, "The request was not received in time.")

    # --- answers written by the event loop itself ----------------------------------------------

    def _answer_too_large(self, conn: TConn, limit: int) -> None:
        mib = limit / (1024 * 1024)
        problem = {
            "type": "urn:b24app:pbx:problem:body-too-large",
            "title": "Body too large",
            "status": 413,
            "detail": f"The body is larger than this server accepts: at most {mib:g} MiB "
            f"({limit:,} bytes).",
            "errors": [],
        }
        self._answer_and_close(conn, 413, json.dumps(problem), "application/problem+json")

    def _answer_and_close(
        self, conn: TConn, status: int, text: str, content_type: str = "text/plain"
    ) -> None:
        reasons = {408: "Request Timeout", 413: "Content Too Large", 429: "Too Many Requests",
                   431: "Request Header Fields Too Large"}  # fmt: skip
        body = text.encode()
        head = (
            f"HTTP/1.1 {status} {reasons[status]}\r\nConnection: close\r\n"
            f"Content-Type: {content_type}; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        )
        if status == 429:
            head += "Retry-After: 5\r\n"
        self._send(conn, head.encode() + b"\r\n" + body)
        self._close(conn)

    def _send(self, conn: TConn, data: bytes) -> None:
        """Best effort, never blocking the event loop: a client that does not read loses it."""
        with contextlib.suppress(OSError):
            conn.sock.send(data)

    def _close(self, conn: TConn) -> None:
        self.nr_conns -= 1
        conn.close()


def _message_end(
    data: bytearray,
    head_end: int,
    limit: int = DEFAULT_BODY_LIMIT,
    *,
    chunks: _Chunks | None = None,
    chunk_line_limit: int = DEFAULT_CHUNK_LINE_LIMIT,
) -> int | None:
    """Where the request that starts `data` ends (RFC 9112 section 6.3), None while incomplete,
    _MALFORMED when gunicorn's parser should judge it now (only when it needs no more bytes to),
    or _TOO_LARGE for a body over `limit` not yet all there (`chunks`: a chunked body's walk so
    far, kept between calls; `chunk_line_limit`: gunicorn's bound on a chunk size line)."""
    head = bytes(data[:head_end]).lower()
    chunked = b"\r\ntransfer-encoding:" in head
    if chunked:
        if b"\r\ncontent-length:" in head:
            return _MALFORMED
        return _chunked_end(data, chunks or _Chunks(head_end, head_end), limit, chunk_line_limit)
    length = _content_length(data, head_end)
    if length is None:
        return _MALFORMED if b"\r\ncontent-length:" in head else head_end
    end = head_end + length
    if len(data) >= end:
        return end
    return _TOO_LARGE if length > limit else None


def _content_length(data: bytearray, head_end: int) -> int | None:
    """The one Content-Length of the head, if it has exactly one valid one (1*DIGIT, as many
    leading zeros as it likes, as gunicorn reads it); more than 18 digits: _BEYOND_ANY_LIMIT."""
    values = set()
    for line in bytes(data[:head_end]).split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"content-length":
            values.add(value.strip())
    if len(values) != 1:
        return None
    value = values.pop()
    if not value.isdigit():
        return None
    digits = value.lstrip(b"0") or b"0"
    return int(digits) if len(digits) <= 18 else _BEYOND_ANY_LIMIT


def _chunked_end(
    data: bytearray, chunks: _Chunks, limit: int, line_limit: int = DEFAULT_CHUNK_LINE_LIMIT
) -> int | None:
    """The end of a chunked body (RFC 9112 section 7.1) walked on from `chunks` (moved past each
    complete chunk: each chunk is walked once, however the body arrives), None while incomplete,
    _MALFORMED for a chunk size line that is not one, or longer than `line_limit` (gunicorn's)
    with no end yet, _TOO_LARGE as soon as the chunks announced hold more than `limit` bytes of
    data or the body's bytes pass `limit` + CHUNK_FRAMING.

    Hand-written: only the framing is needed here (gunicorn parses the chunks themselves from
    the buffered bytes afterwards), and a second full parser would judge some requests
    differently from gunicorn's.
    """
    wire_limit = chunks.start + limit + CHUNK_FRAMING
    while True:
        if chunks.position > wire_limit:
            return _TOO_LARGE
        line_end = data.find(b"\r\n", chunks.position)
        if line_end < 0:
            return _MALFORMED if len(data) - chunks.position > line_limit else None
        size_text = bytes(data[chunks.position : line_end]).split(b";", 1)[0].strip()
        if not _HEX_DIGITS.fullmatch(size_text):
            return _MALFORMED
        digits = size_text.lstrip(b"0") or b"0"
        if len(digits) > 16:  # 2**64 bytes or more
            return _TOO_LARGE
        size = int(digits, 16)
        if chunks.size + size > limit:
            return _TOO_LARGE
        if size == 0:  # the last chunk, then trailer fields, then a blank line
            end = data.find(b"\r\n\r\n", line_end)
            if end >= 0:
                return end + 4
            return _TOO_LARGE if len(data) > wire_limit else None
        after = line_end + 2 + size + 2
        if after > len(data):
            return None
        chunks.position, chunks.size = after, chunks.size + size
