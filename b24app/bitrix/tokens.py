"""Single-flight token refresh, across threads, processes and hosts.

The locking rule: a refresh happens only while holding the portal's row lock (PostgreSQL
`SELECT … FOR UPDATE`; SQLite `BEGIN IMMEDIATE`, which locks the whole database for writing).
After taking the lock we re-read the tokens: if another worker refreshed while we waited, its new
access token differs from the stale one we hold, and we use it instead of refreshing again. The
rotated pair is saved in the same transaction that held the lock, so a used refresh token is never
left as the stored one. Bitrix24 refresh tokens are single-use (the docs: keep the new one, "do not
use the old one anymore"), so two concurrent refreshes would otherwise kill the portal.
"""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy.orm import Session

from b24app import metrics
from b24app.bitrix.errors import OAuthError, PortalUnavailable
from b24app.bitrix.oauth import OAuthServer
from b24app.db import Database
from b24app.logs import get_logger
from b24app.models import Portal, PortalStatus, utcnow
from b24app.portals import store

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


_process_locks: dict[str, threading.Lock] = {}
_process_locks_guard = threading.Lock()


def _process_lock(member_id: str) -> threading.Lock:
    with _process_locks_guard:
        return _process_locks.setdefault(member_id, threading.Lock())


def refresh(db: Database, oauth: OAuthServer, member_id: str, stale_access_token: str) -> str:
    """Return a working access token for the portal, refreshing at most once across the fleet.

    Threads of one process first queue on an in-process lock, so only one of them at a time
    contends for the database lock (on SQLite that lock is the whole database's write lock).
    """
    with _process_lock(member_id):
        return _refresh(db, oauth, member_id, stale_access_token)


def _refresh(db: Database, oauth: OAuthServer, member_id: str, stale_access_token: str) -> str:
    with db.write() as session:
        portal = store.find_portal(session, member_id, for_update=True)
        if portal is None or portal.status != PortalStatus.ACTIVE:
            raise PortalUnavailable(portal.status if portal else "unknown", "portal not active")
        tokens = store.read_tokens(portal)
        if tokens is None:
            raise PortalUnavailable(PortalStatus.NEEDS_REAUTH, "no tokens stored")
        if tokens.access_token != stale_access_token and tokens.expires_at > utcnow() + LEEWAY:
            return tokens.access_token  # someone refreshed while we waited for the lock
        outcome = _refresh_locked(session, oauth, portal, tokens.refresh_token)
    # Raised only now, after the transaction committed the portal's new status.
    if isinstance(outcome, PortalUnavailable):
        raise outcome
    return outcome


def _refresh_locked(
    session: Session, oauth: OAuthServer, portal: Portal, refresh_token: str
) -> str | PortalUnavailable:
    secret = store.client_secret_for(session, portal.client_id)
    if secret is None:
        detail = "No credentials for this client id; add them with `apps add`."
        store.set_status(portal, PortalStatus.NEEDS_REAUTH, detail)
        return PortalUnavailable(PortalStatus.NEEDS_REAUTH, detail)
    try:
        grant = oauth.refresh(portal.client_id, secret, refresh_token)
    except OAuthError as error:
        if error.code not in GRANT_ERRORS:
            raise
        status, detail = GRANT_ERRORS[error.code]
        metrics.REFRESHES.labels(metrics.code_label(error.code)).inc()
        store.set_status(portal, status, detail)
        log.warning("refresh refused", member_id=portal.member_id, error=error.code)
        return PortalUnavailable(status, detail)
    store.store_tokens(portal, grant.tokens)
    metrics.REFRESHES.labels("ok").inc()
    log.info("tokens refreshed", member_id=portal.member_id)
    return grant.tokens.access_token
