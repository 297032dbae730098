"""One webhook to the PBX: its body, its Standard Webhooks signature, one attempt to send it.

The body (PRODUCT.md, "From Bitrix24 to the PBX") is a JSON object: `type` (`call.start`,
`callback.start`, or `call.test` from the settings page's "send a test call") and Bitrix24's own
field names; ids as numbers, absent fields as null. The signature is the Standard Webhooks one
(headers `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), made
by the `standardwebhooks` library with the portal's originate secret, so a PBX verifies it with
the same library in its own language. `webhook-id` is the same on every attempt of one request.

The address is checked as portal addresses are (bitrix/safety.py: resolved, public only, and
connected to exactly the address checked; https only), unless the deployment allows private
ones (B24APP_ORIGINATE_ALLOW_PRIVATE, development). No redirect is followed: a 3xx is an answer.

How an attempt ends (`Attempt.code`), and what the outbox does with it (a request tried again
may reach the PBX twice after a timeout: it carries the same webhook-id and CALL_ID both times):
| ending                          | code           | then                             |
|---------------------------------|----------------|----------------------------------|
| 2xx                             | ok             | delivered                        |
| no originate_url set            | no_url         | failed at once                   |
| address refused (SSRF rules)    | unsafe_address | failed at once                   |
| 3xx (a redirect, not followed)  | redirect       | failed at once                   |
| 4xx but 408, 425, 429           | refused        | failed at once (the PBX said no) |
| 408, 425, 429, 5xx              | refused        | tried again                      |
| connection refused / cut off    | connection     | tried again                      |
| no answer within TIMEOUT/DEADLINE | timeout      | tried again                      |

Every exchange ends within DEADLINE + MARGIN seconds, whatever the PBX does: at the deadline its
connection is shut down and its thread ends (`_Hangup`), so no thread or socket outlives it
(tests/originate/test_exchange_deadline.py). The one thing that cannot be cut is the system's
name lookup of the PBX's host (getaddrinfo): a name server that does not answer keeps the thread,
with no connection, until the resolver gives up (resolv.conf: 5 s × 2 attempts by default);
`send` returns at DEADLINE + MARGIN all the same, and the connection made after it is shut at once.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from standardwebhooks.webhooks import Webhook
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError

from b24app.bitrix.errors import UnsafeAddress
from b24app.bitrix.safety import portal_session
from b24app.config import Settings
from b24app.logs import get_logger

log = get_logger(__name__)

TIMEOUT = (3.05, 5.0)  # seconds: connect, read. An employee is waiting; a PBX answers at once.
DEADLINE = 8.0  # seconds for a whole attempt, however slowly the PBX answers
MARGIN = 1.0  # seconds after DEADLINE for a cut exchange to unwind: its thread ends, socket closed
BODY_KEPT = 500  # characters of the PBX's answer kept for the journal and the settings page
AGAIN = {408, 425, 429}  # 4xx answers that mean "not now" rather than "no"
INTEGERS = ("USER_ID", "CRM_ENTITY_ID", "CALL_LIST_ID", "IS_MOBILE")
FIELDS = (
    "CALL_ID",
    "PHONE_NUMBER",
    "PHONE_NUMBER_INTERNATIONAL",
    "EXTENSION",
    "USER_ID",
    "USER_PHONE_INNER",
    "LINE_NUMBER",
    "CRM_ENTITY_TYPE",
    "CRM_ENTITY_ID",
    "CALL_LIST_ID",
    "IS_MOBILE",
)
CALLBACK_FIELDS = ("TEXT", "VOICE")


@dataclass(frozen=True)
class Attempt:
    """How one send ended (the table above): `retry` says whether another attempt may help;
    `status` and `body` are the PBX's answer when there was one; `seconds` the time taken."""

    code: str
    retry: bool
    status: int | None = None
    body: str = ""
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.code == "ok"


def body(kind: str, fields: dict[str, str], user_phone_inner: str | None) -> dict[str, Any]:
    """The webhook's JSON body for a stored request (`fields`: Bitrix24's data as strings)."""
    names = FIELDS + (CALLBACK_FIELDS if kind == "callback.start" else ())
    out: dict[str, Any] = {"type": kind}
    for name in names:
        value: Any = fields.get(name)
        if name in INTEGERS and value is not None:
            value = int(value) if value.isascii() and value.isdigit() else value
        out[name] = value
    out["USER_PHONE_INNER"] = user_phone_inner
    return out


def send(
    settings: Settings, url: str | None, secret: str, webhook_id: str, payload: dict[str, Any]
) -> Attempt:
    """POST `payload` (JSON) to `url`, signed with `secret` as message `webhook_id`; how it
    ended (never raises). Returns within DEADLINE seconds whatever the PBX does (DEADLINE +
    MARGIN when the exchange has to be cut), its connection closed and its thread ended."""
    started = time.monotonic()
    if not url:
        return Attempt("no_url", False, error="no originate URL is set (settings page)")
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    headers = {
        "content-type": "application/json",
        "user-agent": "b24app-originate/1",
        **signature_headers(secret, webhook_id, data),
    }
    hangup = _Hangup(ends=started + DEADLINE)
    exchange = _Exchange(settings, url, data.encode(), headers, hangup)
    # The exchange runs in a thread of its own so that this one can end it at the deadline
    # (_Hangup says why and how); a status that came by then counts.
    thread = threading.Thread(target=exchange.run, name="originate-exchange", daemon=True)
    thread.start()
    try:
        thread.join(max(0.0, hangup.ends - time.monotonic()))
        if thread.is_alive():
            hangup.cut()
            thread.join(MARGIN)
            if thread.is_alive():  # only a name lookup that has not returned (docstring)
                log.warning("originate exchange still resolving after its deadline")
    finally:
        hangup.close()
    return _took(exchange.outcome(), started)


class _Hangup:
    """The sockets of one exchange, so that the thread waiting for it can end it at `ends`.

    Why by hand: requests (and urllib3 under it) has no deadline for a whole exchange. Its
    timeouts bound each socket operation ("the read and total timeouts only measure the time
    between read operations on the socket", urllib3's Timeout), so a PBX that sends a byte
    every few seconds of its status line, headers or body would hold the thread and the
    connection for ever; no library this project uses (requests, urllib3, httpx) offers one for
    a blocking call. A read blocked in another thread is ended by shutting its socket down:
    shutdown(SHUT_RDWR) makes it return at once (end of stream, for TLS too), the exchange fails,
    closes its connection and its thread ends. Each socket is kept as a duplicate of its
    descriptor (`socket.dup`) that only this class closes: shutdown acts on the connection behind
    every descriptor, and a descriptor of our own cannot be closed by the exchange and its
    number reused by an unrelated socket in the instant we shut it down. A connection is begun
    only with the time left as its connect timeout, and one made after the cut is shut at once.
    """

    def __init__(self, *, ends: float) -> None:
        self.ends = ends
        self.is_cut = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []

    def time_left(self) -> float:
        return self.ends - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        """Called by the exchange with each new connection's socket (before TLS wraps it)."""
        with self._lock:
            if self.is_cut:
                _shut(sock)
            else:
                self._sockets.append(sock.dup())

    def cut(self) -> None:
        """The deadline: shut every connection of the exchange down, and any it makes later."""
        with self._lock:
            self.is_cut = True
            for sock in self._sockets:
                _shut(sock)

    def close(self) -> None:
        """Our duplicates closed (the exchange closes its own descriptors)."""
        with self._lock:
            self.is_cut = True  # nothing may be begun after send returned
            for sock in self._sockets:
                _shut(sock)
                sock.close()
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    with suppress(OSError):  # already closed by the PBX, or never connected
        sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()  # the _Hangup of the exchange this thread runs (its own thread)


def _watch(session: requests.Session, hangup: _Hangup) -> None:
    """Make `session`'s connections (direct or through a proxy) report to `hangup`: the pool
    classes its adapters use become ones whose connections call `hangup.watch`. Set on this
    thread: the session lives and dies within the exchange's thread."""
    _current.hangup = hangup
    for adapter in {id(a): a for a in session.adapters.values()}.values():
        if not isinstance(adapter, HTTPAdapter):
            continue
        _watch_manager(adapter.poolmanager)
        make_proxy_manager = adapter.proxy_manager_for

        def proxy_manager_for(proxy: str, _make: Any = make_proxy_manager, **kw: Any) -> Any:
            manager = _make(proxy, **kw)
            _watch_manager(manager)
            return manager

        adapter.proxy_manager_for = proxy_manager_for  # type: ignore[method-assign]


def _watch_manager(manager: Any) -> None:
    manager.pool_classes_by_scheme = {
        scheme: _watching(pool) for scheme, pool in manager.pool_classes_by_scheme.items()
    }


@cache
def _watching(pool: type[HTTPConnectionPool]) -> type[HTTPConnectionPool]:
    """`pool` (urllib3's, or bitrix/safety.py's address-checking one) whose connections
    connect within the time left and report their socket to this thread's _Hangup."""
    if getattr(pool, "_watched", False):
        return pool
    connection: Any = pool.ConnectionCls

    class Watching(connection):
        timeout: float | None  # urllib3's: the connect timeout while connecting

        def _new_conn(self) -> socket.socket:
            hangup: _Hangup | None = getattr(_current, "hangup", None)
            if hangup is not None:
                left = hangup.time_left()
                if left <= 0 or hangup.is_cut:
                    raise ConnectTimeoutError(self, "the exchange's deadline has passed")
                self.timeout = left if self.timeout is None else min(self.timeout, left)
            sock: socket.socket = super()._new_conn()
            if hangup is not None:
                hangup.watch(sock)
            return sock

    name = f"Watching{pool.__name__}"
    return type(name, (pool,), {"ConnectionCls": Watching, "_watched": True})


class _Exchange:
    """One POST; `outcome()` is how it ended so far (a status that came counts: the PBX has the
    request even if its body never finishes)."""

    def __init__(
        self, settings: Settings, url: str, body: bytes, headers: dict[str, str], hangup: _Hangup
    ) -> None:
        self.settings, self.url, self.body, self.headers = settings, url, body, headers
        self.hangup = hangup
        self.status: int | None = None
        self.location = ""
        self.answer = ""
        self.ended: Attempt | None = None

    def run(self) -> None:
        allowed = self.settings.originate_private_allowed
        try:
            with portal_session(allow_local=allowed, https_only=not allowed) as session:
                _watch(session, self.hangup)
                response = session.post(
                    self.url,
                    data=self.body,
                    headers=self.headers,
                    timeout=TIMEOUT,
                    allow_redirects=False,
                    stream=True,
                )
                with response:
                    if self.hangup.is_cut:  # headers cut short by the deadline: no answer
                        return
                    self.location = str(response.headers.get("location", ""))[:200]
                    self.status = response.status_code
                    chunk = next(response.iter_content(BODY_KEPT), b"")
                    self.answer = chunk.decode("utf-8", "replace")[:BODY_KEPT]
        except UnsafeAddress as error:
            self.ended = Attempt("unsafe_address", False, error=f"address refused: {error}")
        except requests.Timeout:
            self.ended = Attempt("timeout", True, error="the PBX did not answer in time")
        except requests.RequestException as error:
            if self.status is None and not self.hangup.is_cut:  # (cut: the deadline's timeout)
                reason = f"could not reach the PBX ({type(error).__name__})"
                self.ended = Attempt("connection", True, error=reason)

    def outcome(self) -> Attempt:
        if self.status is not None:
            return _answered(self.status, self.answer, self.location)
        if self.ended is not None:
            return self.ended
        reason = f"the PBX did not answer within {DEADLINE:g} s"
        return Attempt("timeout", True, error=reason)


def signature_headers(secret: str, webhook_id: str, data: str) -> dict[str, str]:
    """The three Standard Webhooks headers for `data` sent now."""
    now = datetime.now(UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, now, data),
    }


def _answered(status: int, answer: str, where: str) -> Attempt:
    if 200 <= status < 300:
        return Attempt("ok", False, status, answer)
    if 300 <= status < 400:
        reason = f"the PBX answered with a redirect ({status} to {where!r}); none is followed"
        return Attempt("redirect", False, status, answer, reason)
    again = status >= 500 or status in AGAIN
    return Attempt("refused", again, status, answer, f"the PBX answered {status}")


def _took(attempt: Attempt, started: float) -> Attempt:
    return Attempt(**{**attempt.__dict__, "seconds": round(time.monotonic() - started, 3)})


def trial_body(user_id: int | None, user_phone_inner: str | None, phone: str) -> dict[str, Any]:
    """The body of a "send a test call": a call.test with a made-up CALL_ID that Bitrix24 does
    not know (the PBX may ring the extension, but must not report the call back)."""
    fields = {"CALL_ID": f"test.{uuid.uuid4().hex}", "PHONE_NUMBER": phone}
    if user_id is not None:
        fields["USER_ID"] = str(user_id)
    return body("call.test", fields, user_phone_inner)
