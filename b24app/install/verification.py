"""Proving that an install or event really comes from Bitrix24, by asking the OAuth server.

A request that claims "portal X installed us, here is a token" is checked with the OAuth server's
`app.info` (digest §12): the token must belong to one of our client ids and to the claimed
`member_id` and domain. The portal address we store is the one the OAuth server reports, and it
must pass the address rules of bitrix/safety.py. Nothing is stored before this succeeds.

A genuine token is not yet a genuine install: every user who opens the app gets a token pair of
their own, and the APPLICATION_TOKEN, in the frame's POST (settings/oauth/simple-way.md). Only an
administrator installs or updates an app, so an install, ONAPPINSTALL or ONAPPUPDATE must also
pass `require_admin` (user.admin, asked with the presented token).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app.bitrix.client import call_as_user
from b24app.bitrix.errors import BitrixError, UnsafeAddress
from b24app.bitrix.oauth import AppInfo, OAuthServer
from b24app.bitrix.safety import check_portal_url
from b24app.config import Settings
from b24app.models import AppCredentials
from b24app.portals import store


class InstallRefused(Exception):
    """Why a claimed install or event was not accepted (safe to show; no secrets inside)."""


@dataclass(frozen=True)
class VerifiedToken:
    info: AppInfo
    client_endpoint: str


def oauth_server(settings: Settings) -> OAuthServer:
    return OAuthServer(settings.oauth_server, timeout=settings.http_timeout)


def known_client_ids(session: Session, settings: Settings) -> set[str]:
    ids = set(session.scalars(select(AppCredentials.client_id)))
    if settings.client_id:
        ids.add(settings.client_id)
    return ids


def verify_token(
    session: Session, settings: Settings, *, access_token: str, member_id: str, domain: str | None
) -> VerifiedToken:
    """Check `access_token` with the OAuth server against the claimed portal."""
    if not access_token:
        raise InstallRefused("no access token")
    try:
        info = oauth_server(settings).app_info(access_token)
    except BitrixError as error:
        raise InstallRefused(f"the OAuth server did not accept the token ({error.code})") from None
    if info.client_id not in known_client_ids(session, settings):
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


def require_admin(verified: VerifiedToken, access_token: str, settings: Settings) -> None:
    """Refuse unless the token's own user may manage the app on the portal (user.admin,
    api-reference/common/users/user-admin.md), asked at the verified portal address."""
    require_admin_at(verified.client_endpoint, access_token, settings)


def require_admin_at(client_endpoint: str, access_token: str, settings: Settings) -> None:
    """`require_admin` for a portal address we already keep (re-authorisation)."""
    try:
        envelope = call_as_user(
            client_endpoint, "user.admin", access_token=access_token, timeout=settings.http_timeout
        )
    except BitrixError as error:
        raise InstallRefused(
            f"the portal did not confirm an administrator ({error.code})"
        ) from None
    if envelope.get("result") is not True:
        raise InstallRefused("the token's user is not an administrator of the portal")


def installation_facts(
    verified: VerifiedToken,
    settings: Settings,
    *,
    tokens: store.TokenPair | None,
    application_token: str | None,
) -> store.Installation:
    """What we store about an install, from the OAuth server's answer (never from the request's
    own claims) plus the tokens and application_token that came with it."""
    return store.Installation(
        member_id=verified.info.member_id,
        domain=verified.info.domain,
        client_endpoint=verified.client_endpoint,
        server_endpoint=f"{settings.oauth_server}/rest/",
        client_id=verified.info.client_id,
        scope=verified.info.scope,
        user_id=verified.info.user_id,
        tokens=tokens,
        application_token=application_token or None,
    )
