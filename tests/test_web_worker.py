"""Where a request ends, as the web worker judges it before a thread runs it (b24app/web_worker.py;
RFC 9112 sections 6.3 and 7.1), and chunked bodies over the limit in a real gunicorn with the
deployment's config (below). The worker under attack: tests/drills/test_slow_clients.py."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask

from b24app.web_worker import _MALFORMED, _TOO_LARGE, CHUNK_FRAMING, _message_end
from tests.drills.conftest import process_settings
from tests.drills.processes import Fleet, Managed
from tests.pbx import FINISH, bearer, finish_request, make_portal, stored_calls
from tests.pbx.test_chunked_bodies import LIMIT, OVER, padded_form, pieces

HEAD = b"POST /x HTTP/1.1\r\nHost: a\r\n"
WHOLE = -100  # the whole of `raw` (none of _message_end's own answers)


def end(raw: bytes) -> int | None:
    head_end = raw.index(b"\r\n\r\n") + 4
    return _message_end(bytearray(raw), head_end)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 27),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n", 27),  # pipelined: first one
        (HEAD + b"Content-Length: 5\r\n\r\nhello", WHOLE),
        (HEAD + b"content-length:  5 \r\n\r\nhel", None),  # 2 bytes still to come
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", WHOLE),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n", WHOLE),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel", None),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", None),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", _MALFORMED),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n", _MALFORMED),
        (HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", _MALFORMED),
        (HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n", _MALFORMED),
        (HEAD + b"Content-Length: -5\r\n\r\n", _MALFORMED),
        (HEAD + b"Content-Length: 5x\r\n\r\n", _MALFORMED),
    ],
)
def test_the_end_of_a_request(raw: bytes, expected: int | None) -> None:
    assert end(raw) == (len(raw) if expected == WHOLE else expected)


def chunks(body: bytes, size: int) -> bytes:
    """`body` in the chunked transfer coding, `size` bytes a chunk, and its last chunk."""
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


CHUNKED = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"


def test_a_chunked_body_is_judged_by_its_data_not_its_framing() -> None:
    """1 MiB in chunks of 100 bytes is 1.08 MB on the wire: whole. One byte more of data: 413
    as soon as the chunk that holds it is announced, however little of it has come."""
    whole = CHUNKED + chunks(b"x" * LIMIT, 100)
    assert len(whole) > len(CHUNKED) + LIMIT
    assert end(whole) == len(whole)
    assert end(CHUNKED + chunks(b"x" * (LIMIT + 1), 100)) == _TOO_LARGE
    assert end(CHUNKED + b"100000\r\nxx") is None  # 1 MiB announced: not over (yet)
    assert end(CHUNKED + b"100001\r\nxx") == _TOO_LARGE
    assert end(CHUNKED + b"FFFFFFFFFFFF\r\n") == _TOO_LARGE


def test_framing_beyond_reason_is_413_too() -> None:
    """Chunks of one byte cost 6 bytes on the wire each: past CHUNK_FRAMING of framing, the
    bytes on the wire are over the limit themselves (and no client sends bodies so)."""
    raw = CHUNKED + chunks(b"x" * (LIMIT // 2), 1)[:-5]  # not ended yet
    assert len(raw) - len(CHUNKED) > LIMIT + CHUNK_FRAMING
    assert end(raw) == _TOO_LARGE


# --- in the production web process -----------------------------------------------------------


@pytest.fixture
def web(app: Flask, tmp_path: Path) -> Iterator[Managed]:
    """A single-process gunicorn with the deployment's config (b24app.gunicorn_conf: this worker)
    serving the app on `app`'s database."""
    fleet = Fleet(process_settings(app), tmp_path / "fleet")
    try:
        yield fleet.start_web()
    finally:
        fleet.close()


@pytest.mark.parametrize(("body", "content_type"), OVER, ids=["form", "json"])
def test_gunicorn_answers_413_to_a_chunked_body_over_1_mib(app, web, body, content_type):
    """The newcomer's: DURATION=0, 1.1 MB of '&', STATUS_CODE=BUSY, chunked: was 202 with the
    status dropped (a busy call stored as missed); the JSON one 400 "char 1048576"."""
    key = make_portal(app, "portal-chunked")
    response = requests.post(
        web.url + FINISH,
        data=pieces(body, 65536),
        headers=bearer(key) | {"Content-Type": content_type},
        timeout=30,
    )
    assert response.status_code == 413, response.text[:300]
    assert response.json()["type"] == "urn:b24app:pbx:problem:body-too-large"
    assert stored_calls(app) == []


def test_gunicorn_reads_a_chunked_body_of_1_mib_in_small_chunks_whole(app, web):
    """More than 1 MiB on the wire, exactly 1 MiB of body: accepted, its last field kept."""
    key = make_portal(app, "portal-chunked")
    response = requests.post(
        web.url + FINISH,
        data=pieces(padded_form(LIMIT), 1000),
        headers=bearer(key) | {"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert response.status_code == 202, response.text[:300]
    assert finish_request(app, response.json()["id"])["STATUS_CODE"] == "486"  # busy


def test_gunicorn_answers_413_to_a_chunk_announced_over_the_limit_at_once(web):
    """No thread waits for the rest of a body already known to be too large."""
    assert web.url is not None
    host, port = web.url.removeprefix("http://").split(":")
    began = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"POST /pbx/v1/calls/finish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b'Content-Type: application/json\r\n\r\n200000\r\n{"a": '
        )
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b"problem+json" in answer and b"at most 1 MiB" in answer
    assert time.monotonic() - began < 5


# --- framing gunicorn accepts is never handed over before it is complete ---------------------
# Handed over early, gunicorn's parser reads the rest in the thread, blocking and without a
# deadline: 4 such connections (the default thread count) held every thread for good.

ZEROS = b"0" * 19  # any number of leading zeros: RFC 9112 chunk-size = 1*HEXDIG, 1*DIGIT
LONG_EXTENSION = b";" + b"a" * 6000  # a chunk size line over 1 KiB, under gunicorn's 8190 bytes


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (CHUNKED + ZEROS + b"1\r\n", None),
        (CHUNKED + ZEROS + b"5\r\nhello\r\n" + ZEROS + b"0\r\n\r\n", WHOLE),
        (CHUNKED + b"1" + LONG_EXTENSION, None),
        (CHUNKED + b"5" + LONG_EXTENSION + b"\r\nhello\r\n0\r\n\r\n", WHOLE),
        (CHUNKED + b"5;" + b"a" * 8188, None),  # 8190 bytes: gunicorn would wait for more
        (CHUNKED + b"5;" + b"a" * 8189, _MALFORMED),  # 8191: gunicorn refuses it (400)
        (CHUNKED + b"1" + b"0" * 16 + b"\r\n", _TOO_LARGE),  # 2**64 bytes announced
        (HEAD + b"Content-Length: " + ZEROS + b"5\r\n\r\nhel", None),
        (HEAD + b"Content-Length: " + ZEROS + b"5\r\n\r\nhello", WHOLE),
        (HEAD + b"Content-Length: " + ZEROS + b"\r\n\r\n", WHOLE),
        (HEAD + b"Content-Length: 1" + b"0" * 30 + b"\r\n\r\n", _TOO_LARGE),
    ],
)
def test_leading_zeros_and_long_chunk_lines_are_waited_for(raw: bytes, expected: int | None):
    assert end(raw) == (len(raw) if expected == WHOLE else expected)


def test_a_chunk_line_limit_other_than_gunicorns_default_is_followed() -> None:
    raw = CHUNKED + b"5;" + b"a" * 200
    head_end = raw.index(b"\r\n\r\n") + 4
    assert _message_end(bytearray(raw), head_end, chunk_line_limit=202) is None
    assert _message_end(bytearray(raw), head_end, chunk_line_limit=201) == _MALFORMED


def address(web: Managed) -> tuple[str, int]:
    assert web.url is not None
    host, port = web.url.removeprefix("http://").split(":")
    return host, int(port)


APP_FORM = b"POST /app HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
HELD = {
    "chunk size with leading zeros": APP_FORM
    + b"Transfer-Encoding: chunked\r\n\r\n"
    + ZEROS
    + b"1\r\n",
    "chunk size line over 1 KiB": APP_FORM
    + b"Transfer-Encoding: chunked\r\n\r\n1"
    + LONG_EXTENSION,
    "Content-Length with leading zeros": APP_FORM + b"Content-Length: " + ZEROS + b"5\r\n\r\n",
}


@pytest.mark.parametrize("first", HELD.values(), ids=HELD.keys())
def test_connections_that_stop_sending_hold_no_thread(web, first):
    """No authentication needed: POST /app reads its form before any check."""
    connections = [socket.create_connection(address(web), timeout=10) for _ in range(4)]
    try:
        for connection in connections:
            connection.sendall(first)
        time.sleep(0.5)
        response = requests.get(web.url + "/healthz", timeout=2)
        assert response.status_code == 200
    finally:
        for connection in connections:
            connection.close()


def finish_raw(app: Flask, web: Managed, framing: bytes, body: bytes) -> bytes:
    """A finish request with this `framing` (its last header and the blank line) and body, sent
    in one piece; gunicorn's answer."""
    key = make_portal(app, "portal-framing")
    head = (
        f"POST {FINISH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: {bearer(key)['Authorization']}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
    ).encode()
    with socket.create_connection(address(web), timeout=10) as connection:
        connection.sendall(head + framing + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


FORM_BODY = padded_form(300)
COMPLETE = {
    "chunk size with leading zeros": (
        b"Transfer-Encoding: chunked\r\n\r\n",
        ZEROS + b"%x\r\n%s\r\n" % (len(FORM_BODY), FORM_BODY) + ZEROS + b"0\r\n\r\n",
    ),
    "chunk size line over 1 KiB": (
        b"Transfer-Encoding: chunked\r\n\r\n",
        b"%x%s\r\n%s\r\n0\r\n\r\n" % (len(FORM_BODY), LONG_EXTENSION, FORM_BODY),
    ),
    "Content-Length with leading zeros": (
        b"Content-Length: %s%d\r\n\r\n" % (ZEROS, len(FORM_BODY)),
        FORM_BODY,
    ),
}


@pytest.mark.parametrize(("framing", "body"), COMPLETE.values(), ids=COMPLETE.keys())
def test_such_framing_completed_gets_its_answer(app, web, framing, body):
    answer = finish_raw(app, web, framing, body)
    assert answer.startswith(b"HTTP/1.1 202 "), answer[:300]
    public_id = json.loads(answer.split(b"\r\n\r\n", 1)[1])["id"]
    assert finish_request(app, public_id)["STATUS_CODE"] == "486"  # busy: the last field kept


def test_a_chunk_size_line_over_gunicorns_limit_is_handed_to_it_at_once(app, web):
    """gunicorn refuses the line from the bytes it has (InvalidChunkSize, raised in the app's
    read of its body: the app's error answer), waiting for nothing more."""
    began = time.monotonic()
    answer = finish_raw(app, web, b"Transfer-Encoding: chunked\r\n\r\n", b"1;" + b"a" * 9000)
    assert answer.startswith((b"HTTP/1.1 4", b"HTTP/1.1 5")), answer[:300]
    assert time.monotonic() - began < 5


@pytest.mark.parametrize(
    "framing",
    [b"Transfer-Encoding: chunked\r\n\r\n1" + b"0" * 16 + b"\r\n",
     b"Content-Length: 1" + b"0" * 30 + b"\r\n\r\n"],
    ids=["chunk", "Content-Length"],
)  # fmt: skip
def test_a_length_beyond_any_limit_is_413_at_once(app, web, framing):
    began = time.monotonic()
    answer = finish_raw(app, web, framing, b"")
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert time.monotonic() - began < 5


def test_connections_that_neither_read_nor_close_do_not_stall_the_event_loop(web):
    """A response that ends its connection is followed by a lingering close (RFC 9112 section
    9.6: half-close, drain, then close). gthread lingers blocking, up to 2 s each, in the event
    loop: four clients that never close froze every connection for 8 s (a reviewer's find);
    this worker lingers in its selector instead."""
    connections = [socket.create_connection(address(web), timeout=10) for _ in range(4)]
    try:
        for connection in connections:
            connection.sendall(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n")
        time.sleep(0.5)
        started = time.monotonic()
        response = requests.get(web.url + "/healthz", timeout=10)
        waited = time.monotonic() - started
        assert response.status_code == 200
        assert waited < 1.0, f"/healthz waited {waited:.1f} s behind lingering closes"
        for connection in connections:  # each got its whole answer, then the end
            received = b""
            while chunk := connection.recv(4096):
                received += chunk
            assert received.startswith(b"HTTP/1.0 200") or received.startswith(b"HTTP/1.1 200")
    finally:
        for connection in connections:
            connection.close()
