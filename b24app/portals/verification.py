"""Proving that an install or event really comes from Bitrix24, by asking the OAuth server.

A request that claims "portal X installed us, here is a token" is checked with the OAuth server's
`app.info` (digest §12): the token must belong to one of our client ids and to the claimed
`member_id` and domain. The portal address we store is the one the OAuth server reports, and it
must pass the address rules of bitrix/safety.py. Nothing is stored before this succeeds.

A genuine token is not yet a genuine install: every user who opens the app gets a token pair of
their own, and the APPLICATION_TOKEN, in the frame's POST (settings/oauth/simple-way.md). Only an
administrator installs or updates an app, so an install, ONAPPINSTALL or ONAPPUPDATE must also
pass `require_admin` (user.admin, asked with the presented token).

Used by the installer and events (install/), the settings page's entry (settings_page/entry.py)
and re-authorisation: it lives with the installation store, which all of them use.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app.bitrix.client import is_admin
from b24app.bitrix.errors import BitrixError, UnsafeAddress
from b24app.bitrix.oauth import AppInfo, TokenPair
from b24app.bitrix.safety import check_portal_url
from b24app.models import AppCredentials
from b24app.portals.store import Installation, InstallationStore


def same_token(stored: str | None, presented: str) -> bool:
    """Whether an event's `application_token` is the one we keep for the portal (`stored`,
    decrypted): constant time, as bytes (compare_digest refuses non-ASCII text); nothing stored
    matches nothing (api-reference/events/safe-event-handlers.md)."""
    if not stored:
        return False
    return secrets.compare_digest(stored.encode(), presented.encode("utf-8", "replace"))


class InstallRefused(Exception):
    """Why a claimed install or event was not accepted (safe to show; no secrets inside)."""


@dataclass(frozen=True)
class VerifiedToken:
    info: AppInfo
    client_endpoint: str


def known_client_ids(session: Session, store: InstallationStore) -> set[str]:
    """Our main client id and those added with `apps add`."""
    ids = set(session.scalars(select(AppCredentials.client_id)))
    if store.settings.client_id:
        ids.add(store.settings.client_id)
    return ids


def verify_token(
    store: InstallationStore,
    session: Session,
    *,
    access_token: str,
    member_id: str,
    domain: str | None,
) -> VerifiedToken:
    """Check `access_token` with the OAuth server against the claimed portal (`member_id`, and
    `domain` unless None). InstallRefused says why not. `session` only reads (our client ids)."""
    settings = store.settings
    if not access_token:
        raise InstallRefused("no access token")
    try:
        info = store.oauth.app_info(access_token)
    except BitrixError as error:
        raise InstallRefused(f"the OAuth server did not accept the token ({error.code})") from None
    if info.client_id not in known_client_ids(session, store):
        raise InstallRefused("the token belongs to an application we do not know")
    if info.member_id != member_id:
        raise InstallRefused("the token belongs to another portal (member_id)")
    if domain is not None and info.domain.lower() != domain.lower():
        raise InstallRefused("the token belongs to another portal (domain)")
    try:
        endpoint = check_portal_url(info.client_endpoint, allow_local=settings.allow_local_portals)
    except UnsafeAddress as exc:
        raise InstallRefused(f"portal address refused: {exc}") from None
    return VerifiedToken(info, endpoint)


def ask_admin(store: InstallationStore, client_endpoint: str, access_token: str) -> bool:
    """Whether the token's own user may manage the app on the portal at `client_endpoint`
    (bitrix/client.py `is_admin`: user.admin with that token), with the store's HTTP timeout and
    address rules. Raises BitrixError when the portal cannot say."""
    settings = store.settings
    return is_admin(
        client_endpoint,
        access_token,
        timeout=settings.http_timeout,
        allow_local=settings.allow_local_portals,
    )


def require_admin(store: InstallationStore, client_endpoint: str, access_token: str) -> None:
    """Refuse (InstallRefused) unless the token's own user may manage the app on the portal
    (user.admin, api-reference/common/users/user-admin.md), asked at `client_endpoint`: the
    verified address of an install, or the one we keep (re-authorisation)."""
    try:
        admin = ask_admin(store, client_endpoint, access_token)
    except BitrixError as error:
        raise InstallRefused(
            f"the portal did not confirm an administrator ({error.code})"
        ) from None
    if not admin:
        raise InstallRefused("the token's user is not an administrator of the portal")


def installation_facts(
    store: InstallationStore,
    verified: VerifiedToken,
    *,
    tokens: TokenPair | None,
    application_token: str | None,
) -> Installation:
    """What we store about an install, from the OAuth server's answer (never from the request's
    own claims) plus the tokens and application_token that came with it."""
    return Installation(
        member_id=verified.info.member_id,
        domain=verified.info.domain,
        client_endpoint=verified.client_endpoint,
        server_endpoint=f"{store.settings.oauth_server}/rest/",
        client_id=verified.info.client_id,
        scope=verified.info.scope,
        user_id=verified.info.user_id,
        tokens=tokens,
        application_token=application_token or None,
    )
