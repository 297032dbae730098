"""ONAPPUNINSTALL: believed only with Bitrix24's own proof that the app is gone.

The event carries no token, only `application_token` (api-reference/common/events/
on-app-uninstall.md), and every user who opens the app receives that token in the frame's POST
(settings/oauth/simple-way.md). So the token is necessary, never sufficient. The proof must come
from Bitrix24 itself, asked with the credentials we keep:

1. the OAuth server's `app.info` still accepts our access token for the portal: installed, refuse;
2. else we refresh our refresh token at the OAuth server with our client id and secret, under the
   portal's refresh lock (bitrix/tokens.py's rule; no transaction is open meanwhile):
   `invalid_client` — "the application may not be installed in this Bitrix24"
   (settings/oauth/error-codes.md) — is the proof. A new pair means
   the app is installed (the pair is kept: the old refresh token is now dead). `invalid_grant`
   (an expired or used refresh token), `PAYMENT_REQUIRED`, an unreachable server, no tokens or no
   credentials prove nothing: refuse.

A refusal is 403 and changes nothing but a rotated token pair. A confirmed uninstall drops the
tokens and keeps the portal's data for a reinstall; with `data[CLEAN]=1` (the admin's "Clear
application data", on-app-uninstall.md) it erases the portal and everything it owns
(store.erase_portal).

Known limit: a portal whose stored refresh token is already dead (`needs_reauth` after
`invalid_grant`, or no tokens at all) cannot be proven uninstalled; it stays as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from b24app.bitrix.errors import BitrixError, OAuthError
from b24app.bitrix.oauth import OAuthServer, TokenPair
from b24app.logs import get_logger
from b24app.models import Portal
from b24app.portals.store import InstallationStore, erase_portal, find_portal, mark_uninstalled
from b24app.portals.verification import same_token

log = get_logger(__name__)

APP_NOT_INSTALLED = "invalid_client"  # settings/oauth/error-codes.md


@dataclass(frozen=True)
class Outcome:
    """What became of an ONAPPUNINSTALL: `accepted`, or why not (`reason`, safe to log)."""

    accepted: bool
    reason: str
    erased: dict[str, int] | None = None  # rows erased per table, for CLEAN=1


def uninstall(
    store: InstallationStore, member_id: str, presented_token: str, *, clean: bool
) -> Outcome:
    """Handle an ONAPPUNINSTALL for `member_id` with the presented `application_token`.

    `clean`: the event's `data[CLEAN]` was 1. Returns the outcome; never raises for anything
    Bitrix24 or a forger can send (errors of the OAuth server become a refusal). The refresh
    that proves the uninstall is made under the portal's refresh lock (bitrix/tokens.py's rule),
    with no transaction open while the OAuth server is asked.
    """
    with store.db.read() as session:
        portal = find_portal(session, member_id) if member_id else None
        if portal is None or not same_token(store.application_token(portal), presented_token):
            return Outcome(False, "forged or unknown: the application_token does not match")
        pair = store.read_tokens(portal)
    if pair is None:
        return Outcome(False, "no tokens stored to ask Bitrix24 whether the app is gone")
    oauth = store.oauth
    if _accepted_by_app_info(oauth, member_id, pair.access_token):
        return Outcome(False, "the OAuth server still accepts our token: the app is installed")
    with store.refresh_mutex(member_id):  # the refresh rule (bitrix/tokens.py), no transaction
        with store.db.read() as session:
            portal = find_portal(session, member_id)
            if portal is None:
                return Outcome(False, "forged or unknown: the application_token does not match")
            asked = _ask_oauth_server(store, session, portal)
        if isinstance(asked, str) or asked is None:
            proof = asked
        else:  # our refresh token still works: keep the rotated pair
            with store.db.write() as session:
                portal = find_portal(session, member_id, for_update=True)
                if portal is not None:
                    store.store_tokens(portal, asked)
            proof = "our refresh token still works: the app is installed"
        if proof is not None:
            return Outcome(False, proof)
        with store.db.write() as session:
            portal = find_portal(session, member_id, for_update=True)
            if portal is None or not same_token(store.application_token(portal), presented_token):
                return Outcome(False, "forged or unknown: the application_token does not match")
            if not clean:
                mark_uninstalled(portal)
                return Outcome(True, "uninstalled, data kept for a reinstall")
            erased = erase_portal(session, portal)
    store.db.flush_erased()  # nothing of it left in SQLite's -wal file either
    return Outcome(True, "uninstalled, data erased", erased)


def _accepted_by_app_info(oauth: OAuthServer, member_id: str, access_token: str) -> bool:
    """Whether the OAuth server's app.info (digest §12) takes our access token for the portal.
    Any refusal (expired, unknown, unreachable) is left to the refresh to settle."""
    try:
        return oauth.app_info(access_token).member_id == member_id
    except BitrixError:
        return False


def _ask_oauth_server(
    store: InstallationStore, session: Session, portal: Portal
) -> str | TokenPair | None:
    """Refresh our refresh token with our credentials. None: refused as belonging to an app that
    is not installed (the proof); a TokenPair: it worked (the app is installed; keep the pair);
    else why nothing is proven. Call under the portal's refresh lock; the session is only read
    (the refresh token and our secret) — its values are read before the network call."""
    pair = store.read_tokens(portal)
    if pair is None:
        return "no tokens stored to ask Bitrix24 whether the app is gone"
    secret = store.client_secret_for(session, portal.client_id)
    if secret is None:
        return "no credentials for the portal's client id to ask the OAuth server with"
    client_id = portal.client_id
    try:
        grant = store.oauth.refresh(client_id, secret, pair.refresh_token)
    except OAuthError as error:
        if error.code == APP_NOT_INSTALLED:
            return None
        return f"the OAuth server refused the refresh with {error.code}, which is no proof"
    except BitrixError as error:
        return f"the OAuth server could not be asked ({error.code})"
    return grant.tokens
