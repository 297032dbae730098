"""Limits on our own doors (`limits`' moving windows): the PBX API per key, failed PBX
authentications per address (`PbxLimits`, on `limits` directly: the PBX API is the hot path),
the installer and the re-authorisation links per address (Flask-Limiter). Over a limit: 429
with `Retry-After` (problem+json on the PBX API, see pbx/views.py); every other 429 or 503 of
the app gets a `Retry-After` too (`_retry_after`).

The numbers (README "For PBX integrators", docs/deployment.md "Rate limits on our own doors"):

- What a real PBX sends. A 1,000-seat call centre at its peak: every agent on a call of ~3 min
  handles ~5.6 answered calls/s; with missed calls and a predictive dialler's unanswered attempts,
  at most ~17 calls/s. With ~5 events per call (start, ring, answer, finish, record) that is ~85
  requests/s to one key. After a restart or a network blip a PBX sends its backlog as fast as it
  can: 10,000 calls is the contract (PRODUCT.md).
- What we can take: one gunicorn process (4 threads) accepted 243 finishes/s from 32
  connections in the 10,000-call drill on this project's 2-core machine (SQLite;
  tests/drills/test_backlog.py prints it), 130–180/s for two processes under wrk with the
  database server on the same cores (docs/performance.md); so ~250/s per process at most.
- Per key: `B24APP_PBX_RATE_LIMIT` = 30,000 per minute, a moving window: any burst up to 30,000
  requests is taken at once (3 × the contract's backlog), and 500 requests/s can be kept up for
  ever, 6 × the busiest PBX at its peak and about what two web processes can accept. A 429 here
  means abuse (a leaked key in a loop), never a PBX catching up. It caps the rows one key can
  write at 43 M a day; the worker's throttle, not this limit, protects Bitrix24.
- Failed authentications per address: `B24APP_PBX_AUTH_FAILURE_LIMIT` = 30 per minute. Only
  answers 401 count (a missing, malformed, unknown or revoked key); past it the address gets 429
  for every request whose key does not work (a request without a well-formed key before any
  look-up). A working key is never refused by it (`_known_key`: known in this process, else
  looked up): a hosted PBX whose tenants share one address is not shut out because one tenant's
  portal was uninstalled, not even after a restart emptied the cache.
- The installer and the re-authorisation links: 20 per minute per address (they call Bitrix24
  and write rows without any key).
- The settings page's "send a test call": 10 per minute per portal (originate/trials.py,
  PER_PORTAL_PER_MINUTE, counted in this storage). An admin setting up a PBX sends one, reads
  the answer, changes something, sends another: a few a minute. Each may hold a web thread up to
  9 s (originate/webhooks.py); trials.py also allows one in flight per portal and a cap per
  process, so the intake always keeps threads.

Where the counts live, and why the numbers hold for both:

- `memory://` (the default): each gunicorn process counts on its own, in `SafeMemoryStorage`.
  With P processes on H hosts a key may get up to P × H × the limit in total (the load balancer
  spreads it), and a restart (gunicorn's max_requests) forgets the counts. That only loosens the
  abuse ceiling; it never refuses a real PBX, because one process cannot even accept 500 requests
  a second, so it never sees a key pass 30,000 in a minute without abuse. The failed-auth limit
  is likewise per process: 30 × P × H guesses a minute, against 256-bit keys.
- `B24APP_RATELIMIT_STORAGE_URL=redis://…`: every process and host counts in one Redis (atomic Lua
  scripts), so the limits hold exactly for the whole fleet: 30,000 per minute per key is still
  3 × the contract's backlog at once and 6 × a peak PBX's rate. Use it with several hosts when the
  abuse ceiling matters.

Keys are never stored as such: a PBX key is counted under a SHA-256 digest of the key parsed from
the header (pbx/auth.py's parsing: `Bearer K` and `bearer  K` are one key).
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from typing import Any, cast
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import RateLimiter
from werkzeug.exceptions import TooManyRequests
from werkzeug.middleware.proxy_fix import ProxyFix

from b24app.db import get_db
from b24app.pbx import auth
from b24app.wiring import current_store

PBX_BLUEPRINT = "pbx"
INSTALL_BLUEPRINTS = ("installer", "reauthorize")  # /install; /oauth/start and /oauth/callback
RETRY_AFTER_SECONDS = 5  # for a 429 or 503 that does not say when itself
RECENT_KEYS = 10_000  # authenticated key digests remembered per process (~1 MB)
EXPIRY_SECONDS = 1.0  # how often the memory storage drops expired entries (SafeMemoryStorage)


class SafeMemoryStorage(MemoryStorage):
    """`limits`' MemoryStorage with its expiry timer started under a lock, once a second.

    limits 5.8.0 (the newest release) checks `timer.is_alive()` and then starts a new timer
    without a lock, so two request threads of a gthread worker can start the same Timer twice:
    `RuntimeError: threads can only be started once`, a 500 from Flask-Limiter's before_request
    (issue 9 item 6). Fixed upstream by alisaifee/limits#352 (merged, not yet released); this
    class does the same until a release has it (tests/test_ratelimit.py reproduces it).

    Its timer runs EXPIRY_SECONDS after the last one instead of 0.01 s: limits starts a new
    thread for each run, and at 0.01 s that was a thread started per request or two, 5 % of a
    web process's CPU under the intake's load (docs/performance.md, Intake). The timer only
    frees memory: a moving window judges each hit by its entries' own times, and a counter's
    expiry is checked when it is read, so no answer changes.
    """

    STORAGE_SCHEME = ["b24app+memory"]  # noqa: RUF012 - as limits declares it

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str):
        self._timer_lock = threading.Lock()
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    def _MemoryStorage__schedule_expiry(self) -> None:  # overrides the name-mangled private one
        with self._timer_lock:
            if not self.timer.is_alive():
                expire = self._MemoryStorage__expire_events  # type: ignore[attr-defined]
                self.timer = threading.Timer(EXPIRY_SECONDS, expire)
                self.timer.daemon = True  # never holds a stopping process for its second
                self.timer.start()

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_timer_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._timer_lock = threading.Lock()
        super().__setstate__(state)


class RecentKeys:
    """Digests of PBX keys that authenticated in this process, newest last, at most `size`."""

    def __init__(self, size: int = RECENT_KEYS) -> None:
        self._size = size
        self._digests: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, digest: str) -> None:
        with self._lock:
            self._digests[digest] = None
            self._digests.move_to_end(digest)
            if len(self._digests) > self._size:
                self._digests.popitem(last=False)

    def __contains__(self, digest: object) -> bool:
        return digest in self._digests


def key_digest() -> str | None:
    """SHA-256 (hex) of the PBX key in this request's Authorization header, parsed as pbx/auth.py
    parses it; None without a well-formed one. Worked out once per request (kept in `flask.g`)."""
    if "pbx_key_digest" not in g:
        key = auth.bearer_key(request.headers.get("Authorization"))
        g.pbx_key_digest = (
            hashlib.sha256(key.encode()).hexdigest() if isinstance(key, str) else None
        )
    return cast(str | None, g.pbx_key_digest)


def pbx_key_id() -> str:
    """The per-key bucket: `key:<digest>`, or `addr:<address>` for a request without a key."""
    digest = key_digest()
    return f"key:{digest}" if digest else f"addr:{get_remote_address()}"


def authenticated() -> None:
    """Called by the PBX API once this request's key has found its portal: the key is exempt
    from the failed-authentication limit of its address from now on (in this process)."""
    digest = key_digest()
    if digest:
        _recent_keys().add(digest)


def _recent_keys() -> RecentKeys:
    return cast(RecentKeys, current_app.extensions["b24app.recent_keys"])


def _known_key() -> bool:
    """Whether this request's key is a working PBX key, so the failed-authentication limit of
    its address must not refuse it (PRODUCT.md: our limits never refuse a legitimate PBX): a key
    seen in this process is known at once; another well-formed key is looked up (after a
    restart the cache is empty, and a PBX sharing an address with a failing one must still get
    in). Only a request without a well-formed key is refused unread."""
    digest = key_digest()
    if digest is None:
        return False
    if digest in _recent_keys():
        return True
    found = auth.request_portal(get_db(), current_store().box, request.headers.get("Authorization"))
    if isinstance(found, auth.PortalContext):
        _recent_keys().add(digest)
        return True
    return False


class PbxRateLimited(TooManyRequests):
    """429 from PbxLimits: `description` is the limit ("3 per 1 minute"), as Flask-Limiter's
    RateLimitExceeded words it (pbx/views.py answers it as problem+json)."""


class PbxLimits:
    """The PBX API's two limits, checked with `limits` itself on the blueprint's requests.

    The same moving windows and storage (memory or Redis) Flask-Limiter keeps for the other
    doors, without its per-request machinery (filtering, resolving and re-evaluating limits,
    rate-limit headers on every answer): that cost ~0.4 ms of a web process's CPU per PBX
    request, a tenth of the intake's (docs/performance.md, Intake). Per request: one hit of the
    key's window; unless the key is known to work (`_known_key`), one test of the address's
    failed-authentication window, and one hit of it when the answer is 401. Over a limit:
    PbxRateLimited, answered 429 with Retry-After the window's reset (at least 1 s).
    """

    def __init__(self, strategy: RateLimiter, per_key: str, auth_failures: str) -> None:
        self.strategy = strategy
        self.per_key = parse(per_key)
        self.auth_failures = parse(auth_failures)

    def register(self, app: Flask, blueprint: str) -> None:
        """Run on the requests of `blueprint` only (the app's per-blueprint hooks: the
        blueprint object itself is shared by every app and registered already)."""
        app.before_request_funcs.setdefault(blueprint, []).append(self.check)
        app.after_request_funcs.setdefault(blueprint, []).append(self.count)

    def check(self) -> None:
        """Before the view: the key's window, then (unless the key works) the address's."""
        bucket = (pbx_key_id(), "pbx-key")
        if not self.strategy.hit(self.per_key, *bucket):
            self._refuse(self.per_key, bucket)
        if _known_key():
            return
        address = (get_remote_address(), "pbx-auth-failed")
        g.pbx_failures_bucket = address
        if not self.strategy.test(self.auth_failures, *address):
            self._refuse(self.auth_failures, address)

    def count(self, response: Response) -> Response:
        """After the view: a 401 counts against the address; a 429 says when to come back."""
        address = g.get("pbx_failures_bucket")
        if address is not None and response.status_code == 401:
            self.strategy.hit(self.auth_failures, *address)
        retry_after = g.get("pbx_retry_after")
        if response.status_code == 429 and retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    def _refuse(self, limit: RateLimitItem, bucket: tuple[str, str]) -> None:
        reset = self.strategy.get_window_stats(limit, *bucket).reset_time
        g.pbx_retry_after = max(1, math.ceil(reset - time.time()))
        raise PbxRateLimited(str(limit))


def _is_pbx() -> bool:
    return request.blueprint == PBX_BLUEPRINT


def storage_uri(configured: str) -> str:
    """The limits storage URI for B24APP_RATELIMIT_STORAGE_URL: `memory://` becomes ours."""
    return "b24app+memory://" if urlsplit(configured).scheme == "memory" else configured


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    if settings.proxy_count:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_count, x_proto=settings.proxy_count
        )
    # Registered before the limiter, so it runs after the limiter's own header injection
    # (Flask runs after_request functions last-registered first).
    app.after_request(_own_retry_after)
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=storage_uri(settings.ratelimit_storage_url),
        headers_enabled=True,
        strategy="moving-window",
    )
    app.extensions["b24app.limiter"] = limiter
    app.extensions["b24app.recent_keys"] = RecentKeys()
    if PBX_BLUEPRINT in app.blueprints:
        limits = PbxLimits(
            limiter.limiter, settings.pbx_rate_limit, settings.pbx_auth_failure_limit
        )
        limits.register(app, PBX_BLUEPRINT)
        limiter.request_filter(_is_pbx)  # counted by PbxLimits, not by Flask-Limiter
    for name in INSTALL_BLUEPRINTS:  # unauthenticated doors that call Bitrix24 or write rows
        blueprint = cast(Blueprint | None, app.blueprints.get(name))
        if blueprint is not None:
            limiter.limit(settings.install_rate_limit, scope=name)(blueprint)
    app.register_error_handler(RateLimitExceeded, _too_many)
    app.after_request(_retry_after)


def _own_retry_after(response: Response) -> Response:
    """Flask-Limiter stamps every response with the window's reset as Retry-After (up to a
    minute with a per-minute limit). It means something only on its own 429: a 503 keeps ours
    (the store is back in seconds, not when a rate window resets), any other answer none.
    (Headers are looked at with `getlist`: `in` and `pop` raise and catch an HTTP exception per
    missing header, a cost every request paid.)"""
    headers = response.headers
    if response.status_code == 503:
        if headers.getlist("X-RateLimit-Limit") or not headers.getlist("Retry-After"):
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    elif response.status_code != 429 and headers.getlist("Retry-After"):
        del headers["Retry-After"]
    return response


def _retry_after(response: Response) -> Response:
    """Every 429 and 503 says when to come back (RFC 9110 §10.2.3); the limiter's own is exact."""
    if response.status_code in (429, 503) and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _too_many(error: RateLimitExceeded) -> Response:
    """Outside the PBX API (whose blueprint answers problem+json itself, pbx/views.py)."""
    response = jsonify(
        status="rate limited",
        detail=f"Too many requests: the limit is {error.description}. Retry after the delay given.",
    )
    response.status_code = 429
    return response
