"""Who is calling: the portal's PBX key from `Authorization: Bearer <key>` (RFC 6750).

One key belongs to one portal; `pbx_keys.find_owner` finds it by a keyed digest and compares it
in constant time. A key stops working when it is rotated (it is simply not found any more) and
when the app is uninstalled from its portal, or the portal is deleted: those get their own words,
because the PBX's admin must act differently. Portals that need re-authorisation or payment still
accept calls; they are delivered once the admin fixes the portal.

Each web process keeps what a key found for KEY_CACHE_SECONDS (`KeyCache`), keyed by the key's
keyed digest (HMAC-SHA256 under the newest encryption key: the key itself is never kept), so a
PBX's calls cost no database read and no decryption while its key is warm. The bound: a rotated
or revoked key, an uninstalled or deleted portal, and a changed fallback user, currency list or
time zone take effect in every process within KEY_CACHE_SECONDS of their commit; in the process
that committed them (the settings page's, the installer's, a test's), at once
(`KeyCache.watch`). tests/drills/test_key_rotation.py measures it with a real gunicorn of three
processes. Keys that find nothing are never kept: an unknown key is looked up every time (the
failed-authentication limit of ratelimit.py bounds how often).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from flask import Flask, current_app, g
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from b24app.crypto import InvalidToken, SecretBox
from b24app.db import Database
from b24app.models import PortalStatus
from b24app.pbx.intake import Code, PortalContext, Result
from b24app.portals import pbx_keys

# RFC 6750 b64token, bounded: a key is "b24pbx_" + 43 url-safe characters
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)
MAX_KEY_LENGTH = 200

KEY_CACHE_SECONDS = 5.0  # the bound: a revoked key works nowhere this long after its commit
KEY_CACHE_SIZE = 10_000  # keys per process (~3 MB); past it, expired entries go, else all
KEY_CACHE = "b24app.pbx.key_cache"  # app.extensions: this process's KeyCache

REFUSED_STATUSES: dict[str, tuple[Code, str]] = {
    PortalStatus.UNINSTALLED: (
        Code.UNINSTALLED,
        "The application was uninstalled from this portal; its PBX key no longer works. "
        "Install the app again in Bitrix24 to get calls through.",
    ),
    PortalStatus.PORTAL_DELETED: (
        Code.PORTAL_DELETED,
        "This portal was deleted or closed in Bitrix24; its PBX key no longer works.",
    ),
}


def bearer_key(header: str | None) -> str | Result:
    """The key in an Authorization header, or why there is none."""
    if not header or not header.strip():
        return Result(
            Code.MISSING_KEY, "Send the portal's PBX key as the header: Authorization: Bearer <key>"
        )
    match = _BEARER.match(header.strip())
    if match is None or len(match.group(1)) > MAX_KEY_LENGTH:
        return Result(
            Code.MALFORMED_KEY,
            "The Authorization header must read: Bearer <the portal's PBX key>.",
        )
    return match.group(1)


Answer = PortalContext | Result


class KeyCache:
    """What PBX keys found in this process, for `seconds` after their database read began.

    Entries are keyed by the key's keyed digest and hold the answer only (a PortalContext, or
    the refusal of an uninstalled or deleted portal). `invalidate` (a commit that changed a
    portal or its settings, `watch`) empties it and bumps a generation, so that a look-up which
    read the rows before that commit does not put its stale answer back.
    """

    def __init__(
        self,
        seconds: float = KEY_CACHE_SECONDS,
        size: int = KEY_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self._size = size
        self._clock = clock
        self._entries: dict[str, tuple[Answer, float, int]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, digest: str) -> Answer | None:
        """The answer kept for this digest, or None when there is none still valid."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        answer, expires, generation = entry
        if generation != self._generation or self._clock() >= expires:
            return None
        return answer

    def begin(self) -> tuple[int, float]:
        """Call before reading the database: the (generation, time) to hand to `put`."""
        return self._generation, self._clock()

    def put(self, digest: str, answer: Answer, began: tuple[int, float]) -> None:
        """Keep `answer` until `seconds` after its read began, unless invalidated meanwhile."""
        generation, started = began
        with self._lock:
            if generation != self._generation:
                return
            if len(self._entries) >= self._size and digest not in self._entries:
                self._evict()
            self._entries[digest] = (answer, started + self.seconds, generation)

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def _evict(self) -> None:
        now = self._clock()
        for digest in [d for d, (_, expires, _) in self._entries.items() if expires <= now]:
            del self._entries[digest]
        if len(self._entries) >= self._size:
            self._entries.clear()

    def watch(self, engine: Engine) -> None:
        """Invalidate when a transaction of this process that wrote `portals` or
        `portal_settings` (a key rotated, a portal uninstalled, settings saved) commits."""

        def after_cursor_execute(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if _WRITES_PORTALS.match(statement):
                conn.info[_TOUCHED] = True

        def on_commit(conn: Any) -> None:
            if conn.info.pop(_TOUCHED, False):
                self.invalidate()

        def on_rollback(conn: Any) -> None:
            conn.info.pop(_TOUCHED, None)

        event.listen(engine, "after_cursor_execute", after_cursor_execute)
        event.listen(engine, "commit", on_commit)
        event.listen(engine, "rollback", on_rollback)


_WRITES_PORTALS = re.compile(
    r'\s*(?:UPDATE|DELETE\s+FROM|INSERT\s+INTO)\s+"?(?:portals|portal_settings)\b', re.IGNORECASE
)
_TOUCHED = "b24app.portals_written"


def authenticate(
    db: Database, box: SecretBox, header: str | None, cache: KeyCache | None = None
) -> Answer:
    """The key's portal, with what the intake needs, or a Result saying why not.

    With `cache`, a key that found its portal (or its portal's refusal) within the cache's
    seconds is answered from memory; anything else is looked up."""
    key = bearer_key(header)
    if isinstance(key, Result):
        return key
    if cache is None or not key.startswith(pbx_keys.PREFIX):
        return _look_up(db, box, key)
    digest = box.lookup_hash(key)
    kept = cache.get(digest)
    if kept is not None:
        return kept
    began = cache.begin()
    answer = _look_up(db, box, key)
    if isinstance(answer, PortalContext) or answer.code in _KEPT_REFUSALS:
        cache.put(digest, answer, began)
    return answer


def _look_up(db: Database, box: SecretBox, key: str) -> Answer:
    try:
        with db.read() as session:
            owner = pbx_keys.find_owner(session, box, key)
    except InvalidToken:  # stored under an encryption key no longer configured
        return _unknown()
    except OperationalError:
        return Result(Code.STORE_UNAVAILABLE, "The key store is unavailable; send it again.")
    if owner is None:
        return _unknown()
    refused = REFUSED_STATUSES.get(owner.status)
    if refused is not None:
        return Result(*refused)
    return PortalContext(
        portal_id=owner.portal_id,
        member_id=owner.member_id,
        status=owner.status,
        currencies=owner.currencies,
        has_fallback_user=owner.fallback_user_id is not None,
        timezone=owner.timezone,
    )


_KEPT_REFUSALS = frozenset(code for code, _ in REFUSED_STATUSES.values())


def request_portal(db: Database, box: SecretBox, header: str | None) -> Answer:
    """`authenticate`, once per request, through this process's KeyCache (`init_app`): the rate
    limiter may need the answer before the view does (ratelimit._known_key), and the key is
    looked up only once (kept in `flask.g`)."""
    if "pbx_portal" not in g:
        g.pbx_portal = authenticate(db, box, header, current_app.extensions.get(KEY_CACHE))
    return cast(Answer, g.pbx_portal)


def init_app(app: Flask, db: Database) -> None:
    """This process's KeyCache, emptied by its own commits to portals and their settings."""
    cache = KeyCache()
    cache.watch(db.engine)
    app.extensions[KEY_CACHE] = cache


def _unknown() -> Result:
    return Result(
        Code.UNKNOWN_KEY,
        "This PBX key is unknown or was revoked (a rotated key stops working within seconds). "
        "Copy the current key from the app's settings page in Bitrix24.",
    )
