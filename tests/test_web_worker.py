"""Where a request ends, as the web worker judges it before a thread runs it (b24app/web_worker.py;
RFC 9112 sections 6.3 and 7.1). The worker in a real gunicorn: tests/drills/test_slow_clients.py."""

from __future__ import annotations

import pytest

from b24app.web_worker import _MALFORMED, _message_end

HEAD = b"POST /x HTTP/1.1\r\nHost: a\r\n"
WHOLE = -2  # the whole of `raw`


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
