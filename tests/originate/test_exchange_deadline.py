"""A webhook exchange ends by its deadline whatever the PBX does (originate/webhooks.py `send`):
a PBX on 127.0.0.1 that trickles its answer one byte at a time sees b24app close the
connection within DEADLINE + MARGIN, and the exchange's thread is gone by then, so neither the
settings page's test calls nor the worker's sends leave threads or sockets behind."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from b24app.config import Settings
from b24app.originate import webhooks
from tests.conftest import make_settings
from tests.originate.conftest import wait_for

GRACE = 1.0  # seconds for a loaded test machine to notice a closed socket (not a bound of ours)
STATUS_AND_HEADERS = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
)


@dataclass
class Connection:
    accepted_at: float
    closed_at: float | None = None


@dataclass
class TricklingPbx:
    """A PBX's webhook on 127.0.0.1 that reads the request, then sends its answer one byte
    every `every` seconds for a minute: the status line and headers themselves
    (`head=True`), or a 200's headers at once and then its body. Each read stays far within
    requests' read timeout (5 s), so only a deadline for the whole exchange ends it. Notes when
    each connection was accepted and when b24app closed it."""

    head: bool
    every: float = 1.0
    connections: list[Connection] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> str:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        threading.Thread(target=self._accept, daemon=True).start()
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/originate"

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            seen = Connection(time.monotonic())
            self.connections.append(seen)
            threading.Thread(target=self._trickle, args=(conn, seen), daemon=True).start()

    def _trickle(self, conn: socket.socket, seen: Connection) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            )
            while len(body) < length:  # the whole request read: what comes next is a hang-up
                body += conn.recv(65536)
            answer = STATUS_AND_HEADERS if self.head else b""
            if not self.head:
                conn.sendall(STATUS_AND_HEADERS)
            answer += b"x" * 1000
            ends = time.monotonic() + 60
            for byte in answer:
                if self.stopped.is_set() or time.monotonic() > ends:
                    return
                try:
                    conn.sendall(bytes([byte]))
                    readable, _, _ = select.select([conn], [], [], self.every)
                    if readable and conn.recv(1) == b"":  # b24app hung up
                        break
                except OSError:  # b24app hung up (reset)
                    break
            seen.closed_at = time.monotonic()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # webhooks.send reads only the address rules: loopback allowed, as for the tests' own PBXs
    return make_settings(f"sqlite:///{tmp_path / 'unused.db'}", tmp_path)


@pytest.fixture(params=[False, True], ids=["trickled-body", "trickled-headers"])
def pbx(request: pytest.FixtureRequest) -> Iterator[tuple[TricklingPbx, str]]:
    server = TricklingPbx(head=request.param)
    url = server.start()
    yield server, url
    server.stop()


def exchange_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "originate-exchange" and t.is_alive())


def test_a_trickling_pbx_is_hung_up_on_and_the_exchange_thread_ends_by_the_deadline(
    settings: Settings, pbx: tuple[TricklingPbx, str]
) -> None:
    server, url = pbx
    before = exchange_threads()
    started = time.monotonic()
    attempt = webhooks.send(
        settings, url, "whsec_" + "A" * 32, "msg_trickle", {"type": "call.test"}
    )
    returned = time.monotonic() - started

    bound = webhooks.DEADLINE + webhooks.MARGIN
    assert returned < bound + GRACE
    if server.head:  # no status ever came whole: the PBX did not answer in time
        assert (attempt.code, attempt.retry, attempt.status) == ("timeout", True, None)
    else:  # a 200 came: the PBX has the request, however slowly its body follows
        assert (attempt.code, attempt.status) == ("ok", 200)
    [connection] = server.connections
    wait_for(lambda: connection.closed_at is not None, GRACE)
    assert connection.closed_at is not None
    assert connection.closed_at - connection.accepted_at < bound + GRACE
    wait_for(lambda: exchange_threads() <= before, GRACE)


def test_many_trickled_exchanges_at_once_leave_no_thread_or_connection_behind(
    settings: Settings, pbx: tuple[TricklingPbx, str]
) -> None:
    server, url = pbx
    before = exchange_threads()
    senders = [
        threading.Thread(
            target=webhooks.send,
            args=(settings, url, "whsec_" + "A" * 32, f"msg_{n}", {"type": "call.test"}),
        )
        for n in range(6)
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(webhooks.DEADLINE + webhooks.MARGIN + GRACE)
    assert not any(sender.is_alive() for sender in senders)
    wait_for(lambda: len(server.connections) == 6, GRACE)
    wait_for(lambda: all(c.closed_at is not None for c in server.connections), GRACE)
    wait_for(lambda: exchange_threads() <= before, GRACE)
