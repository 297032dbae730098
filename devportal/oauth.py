"""The OAuth server (`/oauth/token/`, `/rest/app.info/`) and each portal's `/oauth/authorize/`.

settings/oauth/index.md (code flow, token JSON), settings/oauth/auto-renewal.md (refresh, 180-day
refresh tokens, the expanded response), settings/oauth/error-codes.md (errors: a refresh token of
an app since uninstalled answers `invalid_client`, "the application may not be installed"; an
expired or used one `invalid_grant`, checked first, as a token that is dead anyway). The HTTP
statuses of OAuth errors are not documented; we answer 400 for invalid_request/invalid_grant, 401
for invalid_client, 402 for PAYMENT_REQUIRED (the digest's §2.5, as the official PHP SDK expects).
Refresh tokens are strictly single-use: the docs say to keep the new one and "not use the old one
anymore"; the strictest reading is the one an app must survive.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, current_app, redirect, request

from devportal.errors import RestError, system_error
from devportal.rest import json_response
from devportal.state import AccessToken, AuthCode, DevPortal, DevState, RefreshToken

bp = Blueprint("devportal_oauth", __name__)

OAUTH_ERRORS = {
    "invalid_request": (400, "Invalid request"),
    "invalid_client": (401, "Invalid client"),
    "invalid_grant": (400, "Invalid grant"),
    "invalid_scope": (400, "Invalid scope"),
    "PAYMENT_REQUIRED": (402, "Payment required"),
}


class OAuthError(Exception):
    def __init__(self, code: str, description: str | None = None) -> None:
        self.code = code
        self.status, default = OAUTH_ERRORS[code]
        self.description = description or default


def state() -> DevState:
    return current_app.extensions["devportal.state"]


@bp.route("/oauth/token/", methods=["GET", "POST"])
def token() -> Response:
    dev = state()
    params = {**request.args.to_dict(), **request.form.to_dict()}
    try:
        with dev.lock:
            body = _grant(dev, params)
    except OAuthError as error:
        dev.record(
            {
                "ts": dev.now(),
                "oauth": params.get("grant_type"),
                "error": error.code,
                "status": error.status,
            }
        )
        return json_response(
            {"error": error.code, "error_description": error.description}, error.status
        )
    dev.record(
        {
            "ts": dev.now(),
            "oauth": params["grant_type"],
            "member_id": body["member_id"],
            "client_id": params["client_id"],
            "error": None,
            "status": 200,
        }
    )
    return json_response(body, 200)


def _grant(dev: DevState, params: dict[str, str]) -> dict[str, Any]:
    grant_type = params.get("grant_type")
    if grant_type not in ("authorization_code", "refresh_token"):
        raise OAuthError("invalid_request", "grant_type: authorization_code or refresh_token")
    grant_field = "code" if grant_type == "authorization_code" else "refresh_token"
    missing = [k for k in ("client_id", "client_secret", grant_field) if not params.get(k)]
    if missing:
        raise OAuthError("invalid_request", f"Missing parameters: {', '.join(missing)}")
    app = dev.apps.get(params.get("client_id", ""))
    if app is None or app.client_secret != params.get("client_secret"):
        raise OAuthError("invalid_client")
    grant: AuthCode | RefreshToken | None
    if grant_type == "authorization_code":
        grant = dev.auth_codes.get(params.get("code", ""))
        if grant is None or grant.used or grant.expires_at <= dev.now():
            raise OAuthError("invalid_grant", "Authorization code is invalid or expired")
    else:
        grant = dev.refresh_tokens.get(params.get("refresh_token", ""))
        if grant is None or grant.used or grant.expires_at <= dev.now():
            raise OAuthError("invalid_grant", "Refresh token is invalid, used or expired")
        if grant.app_removed:  # state.revoke_tokens: the app was uninstalled since
            raise OAuthError("invalid_client", "The application is not installed on the portal")
    if grant.client_id != app.client_id:
        raise OAuthError("invalid_grant", "The grant belongs to another application")
    portal = dev.portal_by_member(grant.member_id)
    installation = portal.installations.get(app.client_id) if portal else None
    if portal is None or installation is None:
        raise OAuthError("invalid_client", "The application is not installed on the portal")
    if installation.payment_expired:
        raise OAuthError("PAYMENT_REQUIRED")
    grant.used = True
    access, refresh = dev.issue_tokens(portal, app.client_id, grant.user_id)
    return token_response(dev, portal, access, refresh.token, installation.status)


def token_response(
    dev: DevState, portal: DevPortal, access: AccessToken, refresh_token: str, status: str
) -> dict[str, Any]:
    """The documented token JSON; `domain` is the OAuth server, `client_endpoint` the portal."""
    return {
        "access_token": access.token,
        "client_endpoint": dev.client_endpoint(portal),
        "domain": urlsplit(dev.base_url).netloc,
        "expires": int(access.expires_at),
        "expires_in": dev.access_lifetime,
        "member_id": portal.member_id,
        "refresh_token": refresh_token,
        "scope": access.scope,
        "server_endpoint": dev.server_endpoint,
        "status": status,
        "user_id": access.user_id,
    }


@bp.route("/rest/app.info/", methods=["GET", "POST"])
@bp.route("/rest/app.info", methods=["GET", "POST"])
def oauth_app_info() -> Response:
    """The OAuth server's own app.info (digest §12): whose token is this?"""
    dev = state()
    value = request.args.get("auth") or request.form.get("auth") or ""
    with dev.lock:
        token = dev.access_tokens.get(value)
        try:
            if token is None:
                raise system_error("NO_AUTH_FOUND")
            if token.expires_at <= dev.now():
                raise system_error("expired_token")
            portal = dev.portal_by_member(token.member_id)
            installation = portal.installations.get(token.client_id) if portal else None
            if portal is None or installation is None:
                raise system_error("NO_AUTH_FOUND")
        except RestError as error:
            return json_response(error.body(), error.status)
        result = {
            "client_id": token.client_id,
            "scope": token.scope,
            "expires": datetime.fromtimestamp(token.expires_at, UTC).isoformat(),
            "user_id": token.user_id,
            "install": {
                "installed": installation.installed,
                "version": installation.version,
                "status": installation.status,
                "scope": token.scope,
                "domain": portal.domain,
                "uri": dev.portal_url(portal),
                "client_endpoint": dev.client_endpoint(portal),
                "member_id": portal.member_id,
                "member_type": "PORTAL",
            },
        }
    return json_response({"result": result}, 200)


@bp.get("/p/<code>/oauth/authorize/")
def authorize(code: str) -> Response:
    """Step 1 of the code flow. The "logged-in user" is `?as_user=N` (default: the admin)."""
    dev = state()
    portal = dev.find_portal(code)
    client_id = request.args.get("client_id", "")
    app = dev.apps.get(client_id)
    if portal is None or app is None or client_id not in portal.installations:
        # settings/oauth/index.md: on failure Bitrix24 shows its own page; no redirect.
        return Response("<h1>Authorization error</h1><p>The application is not installed.</p>", 400)
    if not app.redirect_uri:
        return Response("<h1>Authorization error</h1><p>No redirect URI in the app.</p>", 400)
    user_id = int(request.args.get("as_user", "1"))
    grant = dev.issue_code(portal, client_id, user_id)
    query = {
        "code": grant.code,
        "state": request.args.get("state", ""),
        "domain": portal.domain,
        "member_id": portal.member_id,
        "scope": app.scope,
        "server_domain": urlsplit(dev.base_url).netloc,
    }
    return redirect(f"{app.redirect_uri}?{urlencode(query)}", code=302)  # type: ignore[return-value]
