"""`/_dev/`: the inspection and fault-injection API of the development portal, and the seed.

The API itself is ours (no Bitrix24 page describes it); where it injects a Bitrix24 behaviour,
the test cites the page that behaviour comes from.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from devportal.methods import Call, method
from devportal.seed import seed_development
from devportal.server import DevportalServer
from devportal.state import ENTERPRISE_LIMITS, STANDARD_LIMITS, DevPortal, DevState
from tests.conftest import TEST_CLIENT_ID, TEST_CLIENT_SECRET
from tests.devportal.conftest import Rest


@method("test.inspect.echo")
def echo(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """A test-only method that answers its parameters."""
    return params


def dev_get(devportal: DevportalServer, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{devportal.url}/_dev{path}", params=params, timeout=10)


def dev_post(devportal: DevportalServer, path: str, body: Any = None) -> requests.Response:
    return requests.post(f"{devportal.url}/_dev{path}", json=body, timeout=10)


# --- portals ---------------------------------------------------------------------------------
def test_list_portals(devportal: DevportalServer, dev: DevState, portal: DevPortal) -> None:
    response = dev_get(devportal, "/portals")

    assert response.status_code == 200
    (listed,) = response.json()["portals"]
    assert listed["code"] == "alpha"
    assert listed["member_id"] == portal.member_id
    assert listed["domain"] == portal.domain
    assert listed["url"] == f"{devportal.url}/p/alpha/"
    assert listed["client_endpoint"] == f"{devportal.url}/p/alpha/rest/"
    (installed,) = listed["installs"]
    assert installed["client_id"] == TEST_CLIENT_ID
    assert installed["installed"] is True


def test_create_portal_standard_and_enterprise(devportal: DevportalServer, dev: DevState) -> None:
    """limits.md: 2 req/s and a burst of 50, Enterprise 5 req/s and 250."""
    standard = dev_post(devportal, "/portals", {"code": "gamma"})
    enterprise = dev_post(devportal, "/portals", {"code": "delta", "enterprise": True})

    assert standard.status_code == 201
    limits = standard.json()["limits"]
    assert (limits["rate"], limits["burst"]) == STANDARD_LIMITS
    assert enterprise.status_code == 201
    limits = enterprise.json()["limits"]
    assert (limits["rate"], limits["burst"]) == ENTERPRISE_LIMITS
    assert set(dev.portals) == {"gamma", "delta"}
    assert len(standard.json()["users"]) == 5


def test_create_portal_with_own_users_and_currencies(
    devportal: DevportalServer, dev: DevState
) -> None:
    body = {
        "code": "kz",
        "users": [{"id": 7, "name": "Aigerim", "last_name": "Admin", "admin": True}],
        "currencies": ["KZT", "USD"],
    }

    response = dev_post(devportal, "/portals", body)

    assert response.status_code == 201
    assert response.json()["currencies"] == ["KZT", "USD"]
    assert list(dev.portals["kz"].users) == [7]
    assert dev.portals["kz"].users[7].admin is True


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"code": "alpha"}, 409),
        ({"code": "Not A Code"}, 400),
        ({}, 400),
        ({"code": "x", "users": [{"id": 1, "nickname": "?"}]}, 400),
        ({"code": "x", "users": "Anna"}, 400),
        ([1, 2], 400),
    ],
)
def test_create_portal_rejects_bad_input(
    devportal: DevportalServer, portal: DevPortal, body: Any, status: int
) -> None:
    response = dev_post(devportal, "/portals", body)

    assert response.status_code == status
    assert response.json()["error_description"]


def test_get_portal_detail_and_404(devportal: DevportalServer, portal: DevPortal) -> None:
    detail = dev_get(devportal, "/portals/alpha").json()
    missing = dev_get(devportal, "/portals/nowhere")

    assert detail["member_id"] == portal.member_id
    assert [u["id"] for u in detail["users"]] == [1, 2, 3, 4, 5]
    assert detail["currencies"] == ["RUB", "USD", "EUR"]
    assert detail["faults"] == {
        "outage": None,
        "latency": 0.0,
        "rest_error": None,
        "timeout_sleep": 30.0,
        "spoil": None,
        "spoil_times": None,
    }
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"


def test_statistics_and_calls(devportal: DevportalServer, portal: DevPortal) -> None:
    """What telephony.externalCall.* left behind, for tests in other processes."""
    portal.calls["externalCall.1"] = {"CALL_ID": "externalCall.1", "USER_ID": 1}
    portal.statistics.append({"CALL_ID": "externalCall.0", "CALL_DURATION": 42})

    calls = dev_get(devportal, "/portals/alpha/calls").json()
    statistics = dev_get(devportal, "/portals/alpha/statistics").json()

    assert calls == {"calls": [{"CALL_ID": "externalCall.1", "USER_ID": 1}]}
    assert statistics == {"statistics": [{"CALL_ID": "externalCall.0", "CALL_DURATION": 42}]}


# --- apps ------------------------------------------------------------------------------------
def test_register_app_hides_the_secret_and_the_app_can_get_tokens(
    devportal: DevportalServer, dev: DevState
) -> None:
    """A registered app is known to the OAuth server (settings/oauth/index.md)."""
    body = {
        "client_id": "local.abc.123",
        "client_secret": "s3cret",
        "scope": "crm,telephony",
        "installer_url": "https://app.test/install",
        "app_url": "https://app.test/app",
        "handler_url": "https://app.test/events",
        "redirect_uri": "https://app.test/oauth/callback",
    }

    response = dev_post(devportal, "/apps", body)

    assert response.status_code == 201
    assert response.json() == {k: v for k, v in body.items() if k != "client_secret"}
    assert "s3cret" not in dev_get(devportal, "/apps").text
    portal = dev.add_portal("local")
    dev_post(devportal, "/portals/local/install", {"client_id": "local.abc.123", "finish": False})
    assert portal.installations["local.abc.123"].status == "L"  # app-info.md: L = local


@pytest.mark.parametrize(
    "body",
    [{"client_id": "a"}, {"client_secret": "b"}, {"client_id": "a", "client_secret": "b", "x": 1}],
)
def test_register_app_rejects_bad_input(devportal: DevportalServer, body: dict[str, Any]) -> None:
    assert dev_post(devportal, "/apps", body).status_code == 400


# --- journal ---------------------------------------------------------------------------------
def test_journal_filters_by_method_case_insensitively_and_since(
    devportal: DevportalServer, rest: Rest
) -> None:
    """Method names are case-insensitive (digest §3.1, inferred from the docs' two spellings)."""
    rest.call("Test.Inspect.Echo", {"n": 1})
    rest.call("test.inspect.echo", {"n": 2})
    rest.call("test.inspect.nothing")

    entries = dev_get(devportal, "/journal", method="TEST.INSPECT.ECHO").json()["entries"]
    later = dev_get(devportal, "/journal", since=entries[0]["seq"]).json()["entries"]

    assert [e["params"] for e in entries] == [{"n": 1}, {"n": 2}]
    assert all(e["status"] == 200 for e in entries)
    assert [e["method"] for e in later] == ["test.inspect.echo", "test.inspect.nothing"]


def test_journal_filters_by_portal_including_oauth_entries(
    devportal: DevportalServer, dev: DevState, rest: Rest, portal: DevPortal
) -> None:
    other = dev.add_portal("other")
    rest.call("test.inspect.echo")
    requests.post(f"{devportal.url}/p/other/rest/test.inspect.echo.json", json={}, timeout=10)
    _, refresh = dev.issue_tokens(portal, TEST_CLIENT_ID, 1)
    requests.get(
        f"{devportal.url}/oauth/token/",
        params={
            "grant_type": "refresh_token",
            "client_id": TEST_CLIENT_ID,
            "client_secret": TEST_CLIENT_SECRET,
            "refresh_token": refresh.token,
        },
        timeout=10,
    )

    alpha = dev_get(devportal, "/journal", portal="alpha").json()["entries"]
    others = dev_get(devportal, "/journal", portal="other").json()["entries"]

    assert [e.get("method", e.get("oauth")) for e in alpha] == [
        "test.inspect.echo",
        "refresh_token",
    ]
    assert [(e["method"], e["error"]) for e in others] == [("test.inspect.echo", "NO_AUTH_FOUND")]
    assert other.member_id not in {e["member_id"] for e in alpha}


def test_journal_never_shows_token_values(
    devportal: DevportalServer, dev: DevState, rest: Rest
) -> None:
    """Never log AUTH_ID/REFRESH_ID (api-reference/widgets/index.md); nor does /_dev/journal."""
    requests.get(rest.url("test.inspect.echo"), params={"auth": rest.token}, timeout=10)
    dev.record(
        {
            "portal": "alpha",
            "params": {"fields": {"access_token": "AAA111", "REFRESH_ID": "RRR222"}},
            "cmd": {"a": "test.inspect.echo?auth=TTT333&n=1"},
        }
    )

    text = dev_get(devportal, "/journal").text

    for secret in (rest.token, "AAA111", "RRR222", "TTT333"):
        assert secret not in text
    assert "n=1" in text


def test_journal_rejects_a_bad_since(devportal: DevportalServer) -> None:
    assert dev_get(devportal, "/journal", since="yesterday").status_code == 400


# --- faults, tokens, limits, clock -----------------------------------------------------------
def test_outage_fault_and_clearing_it(devportal: DevportalServer, rest: Rest) -> None:
    """A non-JSON 503 page from a proxy in front of an overloaded portal (see faults.py)."""
    set_fault = dev_post(devportal, "/portals/alpha/faults", {"outage": "503"})
    during = rest.call("test.inspect.echo")
    cleared = dev_post(devportal, "/portals/alpha/faults", {})
    after = rest.call("test.inspect.echo")

    assert set_fault.json()["outage"] == "503"
    assert during.status_code == 503
    assert cleared.json()["outage"] is None
    assert after.status_code == 200


def test_rest_error_fault(devportal: DevportalServer, rest: Rest) -> None:
    """_includes/system-errors.md: INTERNAL_SERVER_ERROR is answered with HTTP 500."""
    dev_post(devportal, "/portals/alpha/faults", {"rest_error": "INTERNAL_SERVER_ERROR"})

    response = rest.call("test.inspect.echo")

    assert response.status_code == 500
    assert response.json()["error"] == "INTERNAL_SERVER_ERROR"


def test_latency_fault_is_stored(devportal: DevportalServer, portal: DevPortal) -> None:
    response = dev_post(devportal, "/portals/alpha/faults", {"latency": 0.2, "timeout_sleep": 1})

    assert response.status_code == 200
    assert (portal.faults.latency, portal.faults.timeout_sleep) == (0.2, 1.0)


@pytest.mark.parametrize(
    "body",
    [
        {"outage": "flood"},
        {"rest_error": "MADE_UP"},
        {"latency": -1},
        {"latency": "slow"},
        {"typo": 1},
    ],
)
def test_bad_faults_are_rejected_and_change_nothing(
    devportal: DevportalServer, portal: DevPortal, body: dict[str, Any]
) -> None:
    dev_post(devportal, "/portals/alpha/faults", {"outage": "503"})

    response = dev_post(devportal, "/portals/alpha/faults", body)

    assert response.status_code == 400
    assert portal.faults.outage == "503"


def test_expire_tokens(devportal: DevportalServer, rest: Rest) -> None:
    """settings/oauth/index.md: a REST call with an expired token answers expired_token (401)."""
    response = dev_post(devportal, "/portals/alpha/expire-tokens")

    assert response.json() == {"expired": 1}
    answer = rest.call("test.inspect.echo")
    assert answer.status_code == 401
    assert answer.json()["error"] == "expired_token"


def test_limits_shrink_the_bucket(devportal: DevportalServer, rest: Rest) -> None:
    """limits.md: above the burst the portal answers 503 QUERY_LIMIT_EXCEEDED."""
    response = dev_post(devportal, "/portals/alpha/limits", {"rate": 0.001, "burst": 2})

    statuses = [rest.call("test.inspect.echo").status_code for _ in range(3)]

    assert response.json()["burst"] == 2
    assert statuses == [200, 200, 503]
    assert rest.call("test.inspect.echo").json()["error"] == "QUERY_LIMIT_EXCEEDED"


def test_limits_reject_bad_values(devportal: DevportalServer, portal: DevPortal) -> None:
    assert dev_post(devportal, "/portals/alpha/limits", {"burst": 0}).status_code == 400
    assert dev_post(devportal, "/portals/alpha/limits", {"rate": True}).status_code == 400


def test_clock_advance_expires_access_tokens(
    devportal: DevportalServer, dev: DevState, rest: Rest
) -> None:
    """settings/oauth/index.md: access_token lives one hour."""
    before = dev.now()

    response = dev_post(devportal, "/clock", {"advance": 3601})

    assert response.json()["offset"] == 3601
    assert dev.now() - before >= 3601
    assert rest.call("test.inspect.echo").json()["error"] == "expired_token"
    assert dev_post(devportal, "/clock", {"advance": -5}).status_code == 400


def test_move_portal_answers_302_at_the_old_address(
    devportal: DevportalServer, dev: DevState, rest: Rest, portal: DevPortal
) -> None:
    """settings/how-to-call-rest-api/change-domen.md: the old address redirects (302);
    member_id stays."""
    old_url = rest.url("test.inspect.echo")
    response = dev_post(devportal, "/portals/alpha/move", {"code": "alpha2"})

    assert response.json()["member_id"] == portal.member_id
    assert response.json()["client_endpoint"] == f"{devportal.url}/p/alpha2/rest/"
    old = requests.post(old_url, json={"auth": rest.token}, timeout=10, allow_redirects=False)
    assert old.status_code == 302
    assert old.headers["Location"].startswith(f"{devportal.url}/p/alpha2/rest/")
    assert dev_post(devportal, "/portals/alpha2/move", {"code": "alpha2"}).status_code == 409


def test_deleted_portal_and_lapsed_payment(devportal: DevportalServer, rest: Rest) -> None:
    """_includes/system-errors.md PORTAL_DELETED; settings/oauth/error-codes.md PAYMENT_REQUIRED."""
    dev_post(devportal, "/portals/alpha/deleted", {"deleted": True})
    deleted = rest.call("test.inspect.echo").json()["error"]
    dev_post(devportal, "/portals/alpha/deleted", {"deleted": False})
    lapsed = dev_post(devportal, "/portals/alpha/payment", {"client_id": TEST_CLIENT_ID})
    unpaid = rest.call("test.inspect.echo").json()["error"]

    assert deleted == "PORTAL_DELETED"
    assert lapsed.json() == {"client_id": TEST_CLIENT_ID, "payment_expired": True}
    assert unpaid == "PAYMENT_REQUIRED"


def test_reset_forgets_the_world_but_keeps_apps(
    devportal: DevportalServer, dev: DevState, rest: Rest
) -> None:
    rest.call("test.inspect.echo")
    dev.advance(100)

    response = dev_post(devportal, "/reset")

    assert response.json() == {"ok": True}
    assert dev.portals == {}
    assert dev.access_tokens == {}
    assert dev.journal == []
    assert dev.clock_offset == 0
    assert TEST_CLIENT_ID in dev.apps
    assert dev_get(devportal, "/portals").json() == {"portals": []}


# --- seed ------------------------------------------------------------------------------------
def test_seed_development_registers_the_app_and_two_portals() -> None:
    """limits.md: "alpha" gets the standard limits and "beta" the Enterprise ones."""
    dev = DevState()

    world = seed_development(
        dev, client_id="local.dev.1", client_secret="dev-secret", app_url="http://127.0.0.1:5000/"
    )

    app = dev.apps["local.dev.1"]
    assert world.app is app
    assert app.client_secret == "dev-secret"
    assert app.installer_url == "http://127.0.0.1:5000/install"
    assert app.app_url == "http://127.0.0.1:5000/app"
    assert app.handler_url == "http://127.0.0.1:5000/events"
    assert app.redirect_uri == "http://127.0.0.1:5000/oauth/callback"
    assert set(dev.portals) == {"alpha", "beta"}
    assert (world.alpha.bucket.rate, world.alpha.bucket.burst) == STANDARD_LIMITS
    assert (world.beta.bucket.rate, world.beta.bucket.burst) == ENTERPRISE_LIMITS
    assert world.alpha.installations == {}


def test_seed_development_can_run_again() -> None:
    """After /_dev/reset, `make run` seeds again; existing portals are kept as they are."""
    dev = DevState()
    first = seed_development(dev, client_id="c", client_secret="s", app_url="http://a")

    second = seed_development(dev, client_id="c", client_secret="s", app_url="http://b")

    assert second.alpha is first.alpha
    assert dev.apps["c"].app_url == "http://b/app"
