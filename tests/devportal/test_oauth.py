"""The OAuth server of the development portal: `/oauth/token/`, `/rest/app.info/`, `authorize`.

References: settings/oauth/index.md (code flow, lifetimes), settings/oauth/auto-renewal.md
(refresh, 180 days, the expanded answer), settings/oauth/error-codes.md (errors), digest §2 and
§12 (the OAuth server's app.info).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devportal import create_devportal_app
from devportal.methods import Call, method
from devportal.server import DevportalServer
from devportal.state import (
    REFRESH_TOKEN_LIFETIME,
    DevPortal,
    DevState,
    install,
    uninstall,
)
from tests.conftest import TEST_CLIENT_ID, TEST_CLIENT_SECRET

REDIRECT_URI = "https://app.example.test/oauth/callback"
TOKEN_FIELDS = {
    "access_token",
    "client_endpoint",
    "domain",
    "expires",
    "expires_in",
    "member_id",
    "refresh_token",
    "scope",
    "server_endpoint",
    "status",
    "user_id",
}


@method("test.whoami")
def whoami(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """A test-only method: whose token reached the portal's REST."""
    return {"user_id": call.user_id, "client_id": call.client_id, "portal": call.portal.code}


@pytest.fixture
def pair(dev: DevState, portal: DevPortal) -> dict[str, str]:
    """A token pair of admin user 1, as the installer received it."""
    access, refresh = dev.issue_tokens(portal, TEST_CLIENT_ID, 1)
    return {"access_token": access.token, "refresh_token": refresh.token}


def token_url(devportal: DevportalServer) -> str:
    return f"{devportal.url}/oauth/token/"


def refresh(devportal: DevportalServer, token: str, **overrides: str) -> requests.Response:
    """The refresh request of auto-renewal.md, by GET with query parameters."""
    params = {
        "grant_type": "refresh_token",
        "client_id": TEST_CLIENT_ID,
        "client_secret": TEST_CLIENT_SECRET,
        "refresh_token": token,
        **overrides,
    }
    return requests.get(token_url(devportal), params=params, timeout=10)


def authorize(devportal: DevportalServer, portal: DevPortal, **params: str) -> requests.Response:
    query = {"client_id": TEST_CLIENT_ID, "state": "JJHgsdgfkdaslg7lbadsfg", **params}
    url = f"{devportal.url}/p/{portal.code}/oauth/authorize/"
    return requests.get(url, params=query, allow_redirects=False, timeout=10)


def code_from(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["Location"])
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def exchange(devportal: DevportalServer, code: str) -> requests.Response:
    """Step 2 of settings/oauth/index.md: the code for tokens, a GET as the docs show it."""
    params = {
        "grant_type": "authorization_code",
        "client_id": TEST_CLIENT_ID,
        "client_secret": TEST_CLIENT_SECRET,
        "code": code,
    }
    return requests.get(token_url(devportal), params=params, timeout=10)


def whoami_at(devportal: DevportalServer, portal: DevPortal, access_token: str) -> Any:
    url = f"{devportal.url}/p/{portal.code}/rest/test.whoami.json"
    return requests.post(url, json={"auth": access_token}, timeout=10)


def app_info(devportal: DevportalServer, access_token: str) -> requests.Response:
    return requests.get(
        f"{devportal.url}/rest/app.info/", params={"auth": access_token}, timeout=10
    )


# --- refresh ---------------------------------------------------------------------------------
def test_refresh_by_get_returns_every_documented_field(
    devportal: DevportalServer, dev: DevState, portal: DevPortal, pair: dict[str, str]
) -> None:
    """settings/oauth/auto-renewal.md: the refresh answer's fields; `domain` is the OAuth server."""
    response = refresh(devportal, pair["refresh_token"])

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == TOKEN_FIELDS
    assert body["domain"] == urlsplit(devportal.url).netloc
    assert body["client_endpoint"] == f"{devportal.url}/p/alpha/rest/"
    assert body["server_endpoint"] == f"{devportal.url}/rest/"
    assert body["member_id"] == portal.member_id
    assert body["user_id"] == 1
    assert body["status"] == "F"
    assert body["scope"] == dev.apps[TEST_CLIENT_ID].scope
    assert body["expires_in"] == 3600
    assert abs(body["expires"] - (dev.now() + 3600)) < 5
    assert body["access_token"] != pair["access_token"]
    assert body["refresh_token"] != pair["refresh_token"]


def test_refresh_by_post_form(
    devportal: DevportalServer, portal: DevPortal, pair: dict[str, str]
) -> None:
    """The token endpoint also takes its parameters as a POST form (the SDKs send both ways)."""
    form = {
        "grant_type": "refresh_token",
        "client_id": TEST_CLIENT_ID,
        "client_secret": TEST_CLIENT_SECRET,
        "refresh_token": pair["refresh_token"],
    }
    response = requests.post(token_url(devportal), data=form, timeout=10)

    assert response.status_code == 200
    assert set(response.json()) == TOKEN_FIELDS


def test_new_access_token_works_at_the_portal_rest(
    devportal: DevportalServer, portal: DevPortal, pair: dict[str, str]
) -> None:
    """auto-renewal.md: the new access_token is used for the REST calls at client_endpoint."""
    body = refresh(devportal, pair["refresh_token"]).json()

    response = requests.post(
        f"{body['client_endpoint']}test.whoami.json",
        json={"auth": body["access_token"]},
        timeout=10,
    )

    assert response.status_code == 200, response.text
    assert response.json()["result"] == {
        "user_id": 1,
        "client_id": TEST_CLIENT_ID,
        "portal": "alpha",
    }


def test_a_used_refresh_token_answers_invalid_grant(
    devportal: DevportalServer, portal: DevPortal, pair: dict[str, str]
) -> None:
    """auto-renewal.md: keep the new refresh_token "instead of the previous one" (strict)."""
    first = refresh(devportal, pair["refresh_token"])
    assert first.status_code == 200

    again = refresh(devportal, pair["refresh_token"])

    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert refresh(devportal, first.json()["refresh_token"]).status_code == 200


def test_refresh_token_lives_180_days(
    devportal: DevportalServer, dev: DevState, portal: DevPortal
) -> None:
    """auto-renewal.md: "The lifetime of refresh_token is 180 days"."""
    _, fresh = dev.issue_tokens(portal, TEST_CLIENT_ID, 1)
    _, stale = dev.issue_tokens(portal, TEST_CLIENT_ID, 1)
    dev.advance(REFRESH_TOKEN_LIFETIME - 60)
    assert refresh(devportal, fresh.token).status_code == 200

    dev.advance(61)
    response = refresh(devportal, stale.token)

    assert REFRESH_TOKEN_LIFETIME == 180 * 24 * 3600
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_access_token_lifetime_is_configurable(
    devportal: DevportalServer, dev: DevState, portal: DevPortal, pair: dict[str, str]
) -> None:
    """index.md: access_token lives 1 hour; tests shorten it and the REST refuses it afterwards."""
    dev.access_lifetime = 60
    body = refresh(devportal, pair["refresh_token"]).json()
    assert body["expires_in"] == 60
    assert whoami_at(devportal, portal, body["access_token"]).status_code == 200

    dev.advance(61)
    response = whoami_at(devportal, portal, body["access_token"])

    assert response.status_code == 401
    assert response.json()["error"] == "expired_token"


def test_access_lifetime_from_the_constructor() -> None:
    """`DevState(access_lifetime=...)` sets expires_in of every issued token (index.md: 3600)."""
    dev = DevState(access_lifetime=120)
    dev.add_app(TEST_CLIENT_ID, TEST_CLIENT_SECRET)
    portal = dev.add_portal("alpha")
    _, _, refresh_token = install(dev, portal, TEST_CLIENT_ID)
    client = create_devportal_app(dev).test_client()

    response = client.get(
        "/oauth/token/",
        query_string={
            "grant_type": "refresh_token",
            "client_id": TEST_CLIENT_ID,
            "client_secret": TEST_CLIENT_SECRET,
            "refresh_token": refresh_token.token,
        },
    )

    assert response.status_code == 200
    assert response.get_json()["expires_in"] == 120
    assert DevState().access_lifetime == 3600


# --- authorization code ----------------------------------------------------------------------
def test_authorize_redirects_with_code_state_and_domains(
    devportal: DevportalServer, dev: DevState, portal: DevPortal
) -> None:
    """index.md: the redirect to redirect_uri carries code, state, domain (the portal), member_id,
    scope and server_domain (the OAuth server); redirect_uri comes from the app settings."""
    dev.apps[TEST_CLIENT_ID].redirect_uri = REDIRECT_URI

    response = authorize(devportal, portal)

    assert response.headers["Location"].startswith(REDIRECT_URI + "?")
    query = code_from(response)
    assert set(query) == {"code", "state", "domain", "member_id", "scope", "server_domain"}
    assert query["state"] == "JJHgsdgfkdaslg7lbadsfg"
    assert query["domain"] == portal.domain
    assert query["member_id"] == portal.member_id
    assert query["scope"] == dev.apps[TEST_CLIENT_ID].scope
    assert query["server_domain"] == urlsplit(devportal.url).netloc


def test_code_exchange_returns_tokens_and_is_single_use(
    devportal: DevportalServer, dev: DevState, portal: DevPortal
) -> None:
    """index.md: the code is exchanged once, by GET, for the documented token answer."""
    dev.apps[TEST_CLIENT_ID].redirect_uri = REDIRECT_URI
    code = code_from(authorize(devportal, portal, as_user="2"))["code"]

    response = exchange(devportal, code)

    assert response.status_code == 200
    body = response.json()
    assert body["member_id"] == portal.member_id
    assert body["user_id"] == 2
    assert body["client_endpoint"] == dev.client_endpoint(portal)
    assert whoami_at(devportal, portal, body["access_token"]).json()["result"]["user_id"] == 2
    second = exchange(devportal, code)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"


def test_code_lives_30_seconds(
    devportal: DevportalServer, dev: DevState, portal: DevPortal
) -> None:
    """index.md: "The lifetime of the authorization code `code` is 30 seconds"."""
    dev.apps[TEST_CLIENT_ID].redirect_uri = REDIRECT_URI
    early = code_from(authorize(devportal, portal))["code"]
    late = code_from(authorize(devportal, portal))["code"]
    dev.advance(29)
    assert exchange(devportal, early).status_code == 200

    dev.advance(2)
    response = exchange(devportal, late)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_authorize_without_installation_shows_an_error_page_and_no_redirect(
    devportal: DevportalServer, dev: DevState
) -> None:
    """index.md: the app must be installed; a failed authorization gets no redirect at all."""
    dev.apps[TEST_CLIENT_ID].redirect_uri = REDIRECT_URI
    bare = dev.add_portal("bare")

    response = authorize(devportal, bare)

    assert response.status_code == 400
    assert "Location" not in response.headers


def test_authorize_without_redirect_uri_gets_no_redirect(
    devportal: DevportalServer, dev: DevState, portal: DevPortal
) -> None:
    """index.md: redirect_uri is only taken from the app settings, never from the request."""
    dev.apps[TEST_CLIENT_ID].redirect_uri = None

    response = authorize(devportal, portal, redirect_uri=REDIRECT_URI)

    assert response.status_code == 400
    assert "Location" not in response.headers


# --- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        {"grant_type": "password"},
        {"grant_type": ""},
        {"client_id": ""},
        {"client_secret": ""},
        {"refresh_token": ""},
    ],
)
def test_malformed_requests_answer_invalid_request(
    devportal: DevportalServer, portal: DevPortal, pair: dict[str, str], overrides: dict[str, str]
) -> None:
    """error-codes.md: invalid_request, "an incorrectly formatted authorization request"."""
    response = refresh(devportal, pair["refresh_token"], **overrides)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["error_description"]


def test_wrong_secret_or_client_answers_invalid_client_and_keeps_the_token(
    devportal: DevportalServer, portal: DevPortal, pair: dict[str, str]
) -> None:
    """error-codes.md: invalid_client for wrong client_id/client_secret; no tokens are issued,
    so the refresh token is not spent."""
    wrong_secret = refresh(devportal, pair["refresh_token"], client_secret="nope")
    wrong_client = refresh(devportal, pair["refresh_token"], client_id="app.unknown")

    for response in (wrong_secret, wrong_client):
        assert response.status_code == 401
        assert response.json() == {"error": "invalid_client", "error_description": "Invalid client"}
    assert refresh(devportal, pair["refresh_token"]).status_code == 200


def test_app_not_installed_answers_invalid_client(
    devportal: DevportalServer, portal: DevPortal, pair: dict[str, str]
) -> None:
    """error-codes.md: invalid_client, "The application may not be installed in Bitrix24"."""
    portal.installations.pop(TEST_CLIENT_ID)

    response = refresh(devportal, pair["refresh_token"])

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_refresh_after_uninstall_answers_invalid_client_unlike_an_expired_token(
    devportal: DevportalServer, dev: DevState, portal: DevPortal, pair: dict[str, str]
) -> None:
    """Digest §2.4: after removal the refresh yields no new pair (the tokens were revoked:
    api-reference/common/events/on-app-uninstall.md). settings/oauth/error-codes.md tells the
    two refusals apart: `invalid_client` "the application may not be installed in Bitrix24",
    `invalid_grant` when the refresh token has expired. An app proves an uninstall by the first
    (install/events.py), so an expired token must keep answering the second."""
    _, other = dev.issue_tokens(portal, TEST_CLIENT_ID, 1)
    dev.refresh_tokens[other.token].expires_at = dev.now() - 1  # 180 days have passed

    before = refresh(devportal, other.token)
    uninstall(dev, portal, TEST_CLIENT_ID)
    response = refresh(devportal, pair["refresh_token"])
    reinstalled = install(dev, portal, TEST_CLIENT_ID)
    after_reinstall = refresh(devportal, pair["refresh_token"])

    assert (before.status_code, before.json()["error"]) == (400, "invalid_grant")
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert after_reinstall.json()["error"] == "invalid_client"  # a new installation, new tokens
    assert refresh(devportal, reinstalled[2].token).status_code == 200
    assert app_info(devportal, pair["access_token"]).json()["error"] == "NO_AUTH_FOUND"


def test_a_grant_of_another_app_answers_invalid_grant(
    devportal: DevportalServer, dev: DevState, portal: DevPortal, pair: dict[str, str]
) -> None:
    """error-codes.md: invalid_grant for authorization data that is not valid for this client."""
    dev.add_app("app.other.2", "other-secret")
    install(dev, portal, "app.other.2")

    response = refresh(
        devportal, pair["refresh_token"], client_id="app.other.2", client_secret="other-secret"
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_lapsed_payment_answers_payment_required_until_paid(
    devportal: DevportalServer, dev: DevState, portal: DevPortal, pair: dict[str, str]
) -> None:
    """error-codes.md / index.md: PAYMENT_REQUIRED, and no tokens "until then"."""
    portal.installations[TEST_CLIENT_ID].payment_expired = True
    dev.apps[TEST_CLIENT_ID].redirect_uri = REDIRECT_URI
    code = code_from(authorize(devportal, portal))["code"]

    for response in (refresh(devportal, pair["refresh_token"]), exchange(devportal, code)):
        assert response.status_code == 402
        assert response.json() == {
            "error": "PAYMENT_REQUIRED",
            "error_description": "Payment required",
        }
    portal.installations[TEST_CLIENT_ID].payment_expired = False
    assert refresh(devportal, pair["refresh_token"]).status_code == 200


def test_errors_are_journalled_with_their_status(
    devportal: DevportalServer, dev: DevState, portal: DevPortal, pair: dict[str, str]
) -> None:
    """The journal tells tests what the OAuth server answered (no token values in it)."""
    refresh(devportal, pair["refresh_token"], client_secret="nope")
    refresh(devportal, pair["refresh_token"])

    oauth = [e for e in dev.journal if "oauth" in e]
    assert [(e["error"], e["status"]) for e in oauth] == [("invalid_client", 401), (None, 200)]
    assert pair["refresh_token"] not in repr(dev.journal)


# --- app.info on the OAuth server ------------------------------------------------------------
def test_oauth_app_info_tells_whose_token_it_is(
    devportal: DevportalServer, dev: DevState, portal: DevPortal
) -> None:
    """digest §12: GET {oauth}/rest/app.info/?auth= answers client_id, user_id and install.*."""
    access, _ = dev.issue_tokens(portal, TEST_CLIENT_ID, 3)

    response = app_info(devportal, access.token)

    assert response.status_code == 200
    result = response.json()["result"]
    assert result["client_id"] == TEST_CLIENT_ID
    assert result["user_id"] == 3
    install_info = result["install"]
    assert install_info["member_id"] == portal.member_id
    assert install_info["domain"] == portal.domain
    assert install_info["client_endpoint"] == dev.client_endpoint(portal)
    assert install_info["installed"] is True


def test_oauth_app_info_reports_an_unfinished_installation(
    devportal: DevportalServer, dev: DevState
) -> None:
    """installation-finish.md: INSTALLED is false until BX24.installFinish()."""
    portal = dev.add_portal("fresh")
    _, access, _ = install(dev, portal, TEST_CLIENT_ID)

    result = app_info(devportal, access.token).json()["result"]

    assert result["install"]["installed"] is False


def test_oauth_app_info_rejects_unknown_and_expired_tokens(
    devportal: DevportalServer, dev: DevState, portal: DevPortal, pair: dict[str, str]
) -> None:
    """_includes/system-errors.md: NO_AUTH_FOUND for an unknown token, expired_token after 1 h."""
    unknown = app_info(devportal, "not-a-token")
    dev.advance(3601)
    expired = app_info(devportal, pair["access_token"])

    assert unknown.status_code == 401
    assert unknown.json()["error"] == "NO_AUTH_FOUND"
    assert expired.status_code == 401
    assert expired.json()["error"] == "expired_token"
