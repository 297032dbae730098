"""The OAuth server (`B24_OAUTH_SERVER`): token grants and "whose token is this?".

Tokens are always checked and refreshed here, never at an address a request merely names: the
OAuth server is a fixed, configured host. Grants go through Authlib; `app.info` is one plain POST
(the token travels in the body, never in a URL we write).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from authlib.integrations.base_client.errors import OAuthError as AuthlibOAuthError
from authlib.integrations.requests_client import OAuth2Session

from b24app.bitrix.errors import BitrixError, OAuthError, json_body, transport_error


@dataclass(frozen=True)
class TokenPair:
    """A portal's OAuth tokens: the access token, the single-use refresh token, and when the
    access token expires (aware UTC; settings/oauth/index.md: an hour after it was issued)."""

    access_token: str
    refresh_token: str
    expires_at: datetime


def expires_at(expires_in: int | float) -> datetime:
    """When a token issued now expires, from Bitrix24's `expires_in` / `AUTH_EXPIRES` (seconds)."""
    return datetime.now(UTC) + timedelta(seconds=float(expires_in))


DEFAULT_EXPIRES_IN = 3600  # seconds: an access token's life (settings/oauth/index.md)


def token_pair(access_token: object, refresh_token: object, expires_in: object) -> TokenPair | None:
    """The one reader of a token pair a Bitrix24 request carries: a frame's form (`AUTH_ID`,
    `REFRESH_ID`, `AUTH_EXPIRES`, settings/oauth/simple-way.md; `frame_tokens`) or an event's
    `auth` (`access_token`, `refresh_token`, `expires_in`; `event_tokens`). None unless both
    tokens are non-empty text; a missing or unreadable lifetime counts as an hour. Believe the
    pair only after verifying the access token (portals/verification.py)."""
    if not (isinstance(access_token, str) and isinstance(refresh_token, str)):
        return None
    if not (access_token and refresh_token):
        return None
    try:
        seconds = max(int(str(expires_in or DEFAULT_EXPIRES_IN)), 0)
    except ValueError:
        seconds = DEFAULT_EXPIRES_IN
    return TokenPair(access_token, refresh_token, expires_at(seconds))


def frame_tokens(form: Mapping[str, str]) -> TokenPair | None:
    """The token pair of a frame's POST (the installer, the application page)."""
    return token_pair(form.get("AUTH_ID"), form.get("REFRESH_ID"), form.get("AUTH_EXPIRES"))


def event_tokens(auth: Mapping[str, object]) -> TokenPair | None:
    """The token pair of an event's `auth` (ONAPPINSTALL, ONAPPUPDATE)."""
    return token_pair(auth.get("access_token"), auth.get("refresh_token"), auth.get("expires_in"))


@dataclass(frozen=True)
class AppInfo:
    """The OAuth server's answer to app.info (digest §12)."""

    client_id: str
    user_id: int | None
    scope: str
    installed: bool
    member_id: str
    domain: str
    client_endpoint: str
    status: str


@dataclass(frozen=True)
class GrantResult:
    tokens: TokenPair
    member_id: str
    client_endpoint: str
    server_endpoint: str
    scope: str
    user_id: int | None


class OAuthServer:
    def __init__(self, base_url: str, *, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth/token/"

    def app_info(self, access_token: str) -> AppInfo:
        """Ask which app, portal and user `access_token` belongs to. BitrixError if none."""
        try:
            response = requests.post(
                f"{self.base_url}/rest/app.info/",
                data={"auth": access_token},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise transport_error(exc, "OAuth server", self.timeout) from None
        body = json_body(response)
        if response.status_code != 200 or not isinstance(body.get("result"), dict):
            raise BitrixError.from_response(response.status_code, body)
        result = body["result"]
        install = result.get("install") or {}
        return AppInfo(
            client_id=str(result.get("client_id") or ""),
            user_id=_int_or_none(result.get("user_id")),
            scope=str(result.get("scope") or ""),
            installed=bool(install.get("installed")),
            member_id=str(install.get("member_id") or ""),
            domain=str(install.get("domain") or ""),
            client_endpoint=str(install.get("client_endpoint") or ""),
            status=str(install.get("status") or ""),
        )

    def refresh(self, client_id: str, client_secret: str, refresh_token: str) -> GrantResult:
        """Trade a refresh token for a new pair (the old refresh token is then dead)."""
        session = self._session(client_id, client_secret)
        return self._grant(
            lambda: session.refresh_token(
                self.token_url, refresh_token=refresh_token, timeout=self.timeout
            )
        )

    def exchange_code(self, client_id: str, client_secret: str, code: str) -> GrantResult:
        """Step 2 of the authorization-code flow (settings/oauth/index.md)."""
        session = self._session(client_id, client_secret)
        return self._grant(
            lambda: session.fetch_token(
                self.token_url, grant_type="authorization_code", code=code, timeout=self.timeout
            )
        )

    def _session(self, client_id: str, client_secret: str) -> OAuth2Session:
        return OAuth2Session(
            client_id,
            client_secret,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
        )

    def _grant(self, request: Any) -> GrantResult:
        try:
            token = request()
        except AuthlibOAuthError as exc:
            raise OAuthError(str(exc.error), str(exc.description or "")) from None
        except requests.HTTPError as exc:  # authlib raises it for a 5xx without an OAuth error
            status = exc.response.status_code if exc.response is not None else "?"
            raise OAuthError("HTTP_ERROR", f"the OAuth server answered HTTP {status}") from None
        except requests.RequestException as exc:
            raise transport_error(exc, "OAuth server", self.timeout) from None
        except ValueError:
            raise OAuthError("invalid_response", "the OAuth server did not answer JSON") from None
        if not token.get("access_token") or not token.get("refresh_token"):
            raise OAuthError("invalid_response", "no token pair in the OAuth server's answer")
        return GrantResult(
            tokens=TokenPair(
                token["access_token"],
                token["refresh_token"],
                expires_at(token.get("expires_in", 3600)),
            ),
            member_id=str(token.get("member_id") or ""),
            client_endpoint=str(token.get("client_endpoint") or ""),
            server_endpoint=str(token.get("server_endpoint") or ""),
            scope=str(token.get("scope") or ""),
            user_id=_int_or_none(token.get("user_id")),
        )


def authorization_url(client_endpoint: str, client_id: str, state: str) -> str:
    """Step 1 of the authorization-code flow (settings/oauth/index.md): the portal's
    `/oauth/authorize/` page for our `client_id`, carrying `state`."""
    portal_base = client_endpoint.removesuffix("rest/")
    url, _ = OAuth2Session(client_id).create_authorization_url(
        f"{portal_base}oauth/authorize/", state=state
    )
    return str(url)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
