"""Drill (issue 10, item 2): slow clients cannot starve the web process.

200 connections from one address (127.0.0.2) each announce a 100 kB body and send one byte every
2 s, for the whole drill; whatever the server answers or closes is opened again at once. Meanwhile
a PBX on another address (127.0.0.1) posts finished calls as a PBX does, one after the other. The
web process is one gunicorn process with 4 threads (the deployment's config, b24app/web_worker.py),
at default settings: before the buffering worker, 8 such connections took it offline.

Judged: every call is accepted at its first try (202), the PBX's p99 answer time stays under 1 s,
/healthz answers all along, and every call reaches Bitrix24's statistics exactly once. Figures are
printed and kept in test-artifacts/drills.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from collections import Counter

import pytest
import requests

from tests.drills import Call, Pbx, judge, unregistered_call
from tests.drills.conftest import Drill

SLOW_CONNECTIONS = 200
SLOW_ADDRESS = "127.0.0.2"  # one address, not the PBX's
BYTE_EVERY = 2.0  # seconds
ANNOUNCED = 100_000  # bytes of body announced and never sent
DURATION = 30.0  # seconds of PBX traffic under attack (past the 20 s body timeout)
PAUSE = 0.05  # between the PBX's calls


class SlowClients(threading.Thread):
    """`count` connections from `address` that announce a body and trickle it, forever reopened."""

    def __init__(self, host: str, port: int, *, count: int, address: str) -> None:
        super().__init__(name="slow-clients", daemon=True)
        self.target = (host, port)
        self.count = count
        self.address = address
        self.outcomes: Counter[str] = Counter()  # how the server ended them: "429", "408", ...
        self.opened = 0
        self._halt = threading.Event()

    def run(self) -> None:
        connections = [self._open() for _ in range(self.count)]
        while not self._halt.wait(BYTE_EVERY):
            for index, connection in enumerate(connections):
                ended = self._ended(connection)
                if ended is None:
                    try:
                        connection.send(b"x")
                        continue
                    except OSError:
                        ended = "reset"
                self.outcomes[ended] += 1
                connection.close()
                connections[index] = self._open()
        for connection in connections:
            connection.close()

    def _open(self) -> socket.socket:
        connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        connection.bind((self.address, 0))
        connection.settimeout(5)
        connection.connect(self.target)
        head = (
            f"POST /pbx/v1/calls/finish HTTP/1.1\r\nHost: {self.target[0]}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {ANNOUNCED}\r\n\r\n"
        )
        connection.sendall(head.encode())
        connection.setblocking(False)
        self.opened += 1
        return connection

    @staticmethod
    def _ended(connection: socket.socket) -> str | None:
        """The status the server answered with, "closed", or None while it still waits."""
        try:
            data = connection.recv(64)
        except BlockingIOError:
            return None
        except OSError:
            return "reset"
        return data[9:12].decode(errors="replace") if data.startswith(b"HTTP/1.") else "closed"

    def halt(self) -> None:
        self._halt.set()
        self.join(timeout=30)


@pytest.mark.slow
def test_slow_clients_do_not_starve_the_pbx(drill: Drill) -> None:
    (web,) = drill.start_webs(1)
    portal = drill.install("slowdrill")
    key = drill.pbx_key(portal)
    assert web.url is not None
    host, port = web.url.removeprefix("http://").split(":")

    attack = SlowClients(host, int(port), count=SLOW_CONNECTIONS, address=SLOW_ADDRESS)
    attack.start()
    time.sleep(2 * BYTE_EVERY)  # every slow connection is open and trickling
    pbx = Pbx([web.url], threads=1)
    sent: list[Call] = []
    latencies: list[float] = []
    health: list[float] = []
    ended = time.monotonic() + DURATION
    while time.monotonic() < ended:
        call = unregistered_call("slowdrill", key, "slow")
        began = time.monotonic()
        pbx.post_once(call)
        latencies.append(time.monotonic() - began)
        sent.append(call)
        if len(sent) % 20 == 0:
            began = time.monotonic()
            healthy = False
            with contextlib.suppress(requests.RequestException):
                healthy = requests.get(f"{web.url}/healthz", timeout=5).status_code == 200
            health.append(time.monotonic() - began if healthy else float("inf"))
        time.sleep(PAUSE)
    attack.halt()

    drill.fleet.start_worker()
    settle = drill.wait_settled(len(sent), timeout=180)
    verdict = judge([portal], sent)
    cuts = statistics.quantiles(latencies, n=100)
    drill.report(
        "slow_clients",
        slow_connections=SLOW_CONNECTIONS,
        slow_connections_opened=attack.opened,
        slow_connections_ended=dict(attack.outcomes),
        calls=len(sent),
        first_try_202=sum(1 for c in sent if [a for a, _ in c.answers] == [202]),
        pbx_p50_s=round(cuts[49], 4),
        pbx_p99_s=round(cuts[98], 4),
        pbx_max_s=round(max(latencies), 4),
        healthz_max_s=round(max(health), 4),
        healthz_checks=len(health),
        settled_after_s=round(settle, 1),
        finished_exactly_once=verdict.exactly_once,
    )
    assert [c for c in sent if [a for a, _ in c.answers] != [202]] == []
    assert max(health) < 1.0, health
    assert cuts[98] < 1.0, f"PBX p99 {cuts[98]:.3f} s under {SLOW_CONNECTIONS} slow connections"
    assert verdict.exactly_once, verdict
    # the server ended the attack's connections itself (per-address cap, timeouts) meanwhile
    assert attack.outcomes["429"] > 0 and attack.outcomes["408"] > 0, attack.outcomes


def _exchange(host: str, port: int, raw: bytes, *, expect: int = 1) -> bytes:
    """Send `raw` on one connection and read until `expect` final answers came (or 10 s)."""
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(raw)
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 ") - data.count(b"HTTP/1.1 100 ") < expect:
            assert time.monotonic() < deadline, data
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_the_buffering_worker_serves_every_framing_and_refuses_what_it_must(drill: Drill) -> None:
    """The web process's worker (b24app/web_worker.py) as a client meets it: a chunked body,
    Expect: 100-continue, two pipelined requests on one connection, a body over 1 MiB announced
    (413 at once, nothing read), a recording upload of 3 MiB (its path's own limit) read whole,
    and more than READING_PER_ADDRESS slow connections of one
    address (429 for the rest, while another address is served)."""
    from b24app.web_worker import READING_PER_ADDRESS

    (web,) = drill.start_webs(1)
    assert web.url is not None
    host, port_text = web.url.removeprefix("http://").split(":")
    port = int(port_text)
    post = "POST /pbx/v1/calls/finish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"

    chunked = _exchange(host, port, (post + "Transfer-Encoding: chunked\r\n\r\n"
                                     "3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n").encode())  # fmt: skip
    assert chunked.startswith(b"HTTP/1.1 401"), chunked  # read whole, then the key is missing

    continued = _exchange(host, port, (post + "Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}")
                          .encode())  # fmt: skip
    assert continued.startswith(b"HTTP/1.1 100 Continue\r\n\r\n") and b" 401 " in continued

    two = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2
    assert _exchange(host, port, two.encode(), expect=2).count(b"HTTP/1.1 200 OK") == 2

    began = time.monotonic()
    too_large = _exchange(host, port, (post + "Content-Length: 2000000\r\n\r\n").encode())
    assert too_large.startswith(b"HTTP/1.1 413 ") and b"problem+json" in too_large
    assert time.monotonic() - began < 5

    # recordings come as uploads up to B24APP_RECORD_MAX_BYTES (50 MiB): read whole, not 413
    record = "POST /pbx/v1/calls/record HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data"
    body = b"x" * (3 * 1024 * 1024)
    upload = _exchange(
        host, port, f"{record}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )
    assert upload.startswith(b"HTTP/1.1 401"), upload[:200]  # the whole body read, no key
    huge = _exchange(host, port, f"{record}\r\nContent-Length: {60 * 1024 * 1024}\r\n\r\n".encode())
    assert huge.startswith(b"HTTP/1.1 413 ") and b"at most 50." in huge, huge[:300]
    form = record.replace("multipart/form-data", "application/x-www-form-urlencoded")
    not_multipart = _exchange(host, port, f"{form}\r\nContent-Length: {len(body)}\r\n\r\n".encode())
    assert not_multipart.startswith(b"HTTP/1.1 413 ") and b"at most 1 MiB" in not_multipart

    slow = []
    for _ in range(READING_PER_ADDRESS + 5):
        connection = socket.socket()
        connection.bind((SLOW_ADDRESS, 0))
        connection.connect((host, port))
        connection.sendall((post + "Content-Length: 10\r\n\r\n").encode())
        slow.append(connection)
    try:
        time.sleep(1)
        answers = Counter()
        for connection in slow:
            connection.settimeout(0.2)
            with contextlib.suppress(TimeoutError):
                answers[connection.recv(12)[9:12]] += 1
        assert answers == Counter({b"429": 5}), answers
        assert requests.get(f"{web.url}/healthz", timeout=5).status_code == 200
    finally:
        for connection in slow:
            connection.close()
