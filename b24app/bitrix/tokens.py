"""Single-flight token refresh, across threads, processes and hosts.

The locking rule: a refresh happens only while holding the portal's refresh lock (PostgreSQL: a
session advisory lock per portal; SQLite: a file lock per portal beside the database), which no
database transaction holds: a slow OAuth server must not hold up anything else (on SQLite a
write transaction would stop every PBX's intake). After taking the lock we re-read the tokens: if
another worker refreshed while we waited, its new access token differs from the stale one we
hold, and we use it instead of refreshing again. The rotated pair is saved before the lock is
released, so a used refresh token is never left as the stored one. Bitrix24 refresh tokens are
single-use (the docs: keep the new one, "do not use the old one anymore"), so two concurrent
refreshes would otherwise kill the portal.

The rule is here; the lock and the storage are the installation store's (portals/store.py), handed
in as a `TokenStore`: this module knows no SQL.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from b24app import metrics
from b24app.bitrix.errors import OAuthError, PortalUnavailable
from b24app.bitrix.oauth import OAuthServer, TokenPair
from b24app.logs import get_logger
from b24app.portal_status import PortalStatus

log = get_logger(__name__)

LEEWAY = timedelta(seconds=60)  # treat a token as expired this long before Bitrix24 does

# What the OAuth server's refusals mean for the portal (settings/oauth/error-codes.md).
GRANT_ERRORS = {
    "invalid_grant": (PortalStatus.NEEDS_REAUTH, "The refresh token was refused; re-authorise."),
    "invalid_client": (
        PortalStatus.NEEDS_REAUTH,
        "The OAuth server does not know this app on the portal; reinstall or re-authorise.",
    ),
    "PAYMENT_REQUIRED": (
        PortalStatus.PAYMENT_REQUIRED,
        "The application's paid period has expired on this portal; renew the payment.",
    ),
}


class HeldTokens(Protocol):
    """One portal's stored credentials, read while its refresh lock is held. Writes made through
    it are committed when the lock is released (the end of `TokenStore.locked`'s block)."""

    member_id: str
    status: str
    client_id: str
    tokens: TokenPair | None  # None: no tokens stored

    def client_secret(self) -> str | None:
        """The secret of `client_id` (None: no credentials for it)."""

    def save(self, pair: TokenPair) -> None:
        """Keep the rotated pair."""

    def set_status(self, status: PortalStatus, detail: str) -> None:
        """Record the portal's new status (the admin must act)."""


class TokenStore(Protocol):
    def locked(self, member_id: str) -> AbstractContextManager[HeldTokens | None]:
        """Hold the portal's refresh lock for the block (None: no such portal); what the block
        saved is written before the lock is released."""


def expired(pair: TokenPair) -> bool:
    """Whether the access token is (about to be) expired: refresh before calling."""
    return pair.expires_at <= datetime.now(UTC) + LEEWAY


_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def _process_lock(member_id: str) -> threading.Lock:
    with _process_locks_guard:
        return _process_locks.setdefault(member_id, threading.Lock())


def refresh(store: TokenStore, oauth: OAuthServer, member_id: str, stale_access_token: str) -> str:
    """Return a working access token for the portal, refreshing at most once across the fleet.

    Threads of one process first queue on an in-process lock, so only one of them at a time
    contends for the portal's refresh lock.
    Raises PortalUnavailable (the portal is not active, has no tokens, or the OAuth server
    refused the refresh: its new status is then stored), OAuthError for other refusals,
    TransportError when the OAuth server cannot be reached.
    """
    with _process_lock(member_id):
        return _refresh(store, oauth, member_id, stale_access_token)


def _refresh(store: TokenStore, oauth: OAuthServer, member_id: str, stale_access_token: str) -> str:
    with store.locked(member_id) as held:
        if held is None or held.status != PortalStatus.ACTIVE:
            raise PortalUnavailable(held.status if held else "unknown", "portal not active")
        tokens = held.tokens
        if tokens is None:
            raise PortalUnavailable(PortalStatus.NEEDS_REAUTH, "no tokens stored")
        if tokens.access_token != stale_access_token and not expired(tokens):
            return tokens.access_token  # someone refreshed while we waited for the lock
        outcome = _refresh_locked(held, oauth, tokens.refresh_token)
    # Raised only now, after the transaction committed the portal's new status.
    if isinstance(outcome, PortalUnavailable):
        raise outcome
    return outcome


def _refresh_locked(
    held: HeldTokens, oauth: OAuthServer, refresh_token: str
) -> str | PortalUnavailable:
    secret = held.client_secret()
    if secret is None:
        detail = "No credentials for this client id; add them with `apps add`."
        held.set_status(PortalStatus.NEEDS_REAUTH, detail)
        return PortalUnavailable(PortalStatus.NEEDS_REAUTH, detail)
    try:
        grant = oauth.refresh(held.client_id, secret, refresh_token)
    except OAuthError as error:
        if error.code not in GRANT_ERRORS:
            raise
        status, detail = GRANT_ERRORS[error.code]
        metrics.REFRESHES.labels(metrics.code_label(error.code)).inc()
        held.set_status(status, detail)
        log.warning("refresh refused", member_id=held.member_id, error=error.code)
        return PortalUnavailable(status, detail)
    held.save(grant.tokens)
    metrics.REFRESHES.labels("ok").inc()
    log.info("tokens refreshed", member_id=held.member_id)
    return grant.tokens.access_token
