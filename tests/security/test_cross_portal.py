"""Cross-portal access: whatever portal A's PBX key, page token or application_token is shown
to, it reaches portal A's calls and settings only. Portal B's calls, ids and settings neither
change nor leak (not even whether an id exists)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from b24app.db import get_db
from b24app.delivery.worker import Worker
from b24app.models import Call
from b24app.settings_page import page_token
from devportal.methods import Call as DevCall
from devportal.methods.telephony import external_call_register
from tests.call_events import event_request
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.security import FINISH, Installed, bearer, install, pbx_key, stored
from tests.settings_page.conftest import Page, open_page

UNREGISTERED: dict[str, Any] = {
    "PBX_CALL_ID": "1709884800.42",
    "PHONE_NUMBER": "+15551234567",
    "TYPE": 2,
    "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
    "USER_ID": 1,
    "DURATION": 42,
}


@pytest.fixture
def alpha(live_app: LiveApp) -> Installed:
    return install(live_app, "alpha")


@pytest.fixture
def beta(live_app: LiveApp) -> Installed:
    return install(live_app, "beta")


def send(live: LiveApp, key: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(live.url + FINISH, json=body, headers=bearer(key), timeout=10)


def show(live: LiveApp, key: str, public_id: str) -> requests.Response:
    return requests.get(f"{live.url}/pbx/v1/calls/{public_id}", headers=bearer(key), timeout=10)


def call_row(live: LiveApp, public_id: str) -> Call:
    with live.app.app_context(), get_db().read() as session:
        return session.query(Call).filter_by(public_id=public_id).one()


def register_on(live: LiveApp, installed: Installed) -> str:
    """A call our app registered on the portal at call start; its CALL_ID."""
    portal = installed.portal
    token = next(
        t for t in live.dev.access_tokens.values()
        if t.member_id == portal.member_id and t.client_id == TEST_CLIENT_ID
    )  # fmt: skip
    call = DevCall(live.dev, portal, token, "telephony.externalCall.register")
    with live.dev.lock:
        body = {"USER_ID": 1, "PHONE_NUMBER": "+15559876543", "TYPE": 2, "SHOW": 0}
        return str(external_call_register(call, body)["CALL_ID"])


# --- the PBX API ----------------------------------------------------------------------------


def test_another_portals_call_looks_exactly_like_a_missing_one(
    live_app: LiveApp, alpha: Installed, beta: Installed
):
    betas = send(live_app, beta.key, UNREGISTERED).json()["id"]

    seen_by_alpha = show(live_app, alpha.key, betas)
    missing = show(live_app, alpha.key, "0" * 32)

    assert seen_by_alpha.status_code == missing.status_code == 404
    assert seen_by_alpha.json() == missing.json()
    assert show(live_app, beta.key, betas).status_code == 200


def test_another_portals_pbx_call_id_is_a_new_call_of_ones_own(
    live_app: LiveApp, alpha: Installed, beta: Installed
):
    """A with B's PBX_CALL_ID and other values: no 409 (that would confirm B's call and show
    its id and values), just A's own new call; B's stays as it was."""
    betas = send(live_app, beta.key, UNREGISTERED).json()["id"]
    before = event_request(live_app.app, betas, "finish")

    answer = send(live_app, alpha.key, {**UNREGISTERED, "DURATION": 1, "USER_ID": 2})

    assert answer.status_code == 202
    assert answer.json()["id"] != betas and betas not in answer.text
    assert event_request(live_app.app, betas, "finish") == before
    assert call_row(live_app, answer.json()["id"]).portal_id != call_row(live_app, betas).portal_id


def test_another_portals_call_id_never_finishes_that_portals_call(
    live_app: LiveApp, alpha: Installed, beta: Installed
):
    """A sends B's CALL_ID (registered on B): the delivery goes to A's portal, which does not
    know it; B's call stays open and B's portal is never called on A's behalf."""
    betas_call = register_on(live_app, beta)
    answer = send(live_app, alpha.key, {"CALL_ID": betas_call, "USER_ID": 1, "DURATION": 30})
    assert answer.status_code == 202
    seen = len(live_app.dev.journal)

    Worker(live_app.app).run(once=True)

    assert [s for s in beta.portal.statistics if s["CALL_ID"] == betas_call] == []
    assert betas_call in beta.portal.calls
    assert call_row(live_app, answer.json()["id"]).state != "delivered"
    new = [e for e in live_app.dev.journal[seen:] if "method" in e]  # REST requests
    assert new and {e["member_id"] for e in new} == {alpha.member_id}


def test_a_key_works_for_its_own_portal_only_after_the_other_is_uninstalled(
    live_app: LiveApp, alpha: Installed, beta: Installed
):
    live_app.driver.uninstall(beta.portal, TEST_CLIENT_ID)
    assert send(live_app, beta.key, UNREGISTERED).status_code == 401
    assert send(live_app, alpha.key, UNREGISTERED).status_code == 202


# --- the settings page ----------------------------------------------------------------------


def forged_claims(page: Page, **changes: Any) -> str:
    """The page's own token with its claims changed but its signature kept."""
    payload, timestamp, signature = page.token.split(".")
    serializer = URLSafeTimedSerializer("irrelevant", salt=page_token.SALT)
    claims = serializer.load_payload(payload.encode())
    claims.update(changes)
    return f"{serializer.dump_payload(claims).decode()}.{timestamp}.{signature}"


def test_a_page_token_of_portal_a_renamed_to_portal_b_is_refused(
    live_app: LiveApp, alpha: Installed, beta: Installed
):
    page = open_page(live_app, alpha.portal)
    to_beta = forged_claims(page, m=beta.member_id)

    for answer in (page.get("/state", token=to_beta), page.post("/pbx-key/reveal", token=to_beta)):
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "token_invalid"
        assert beta.key not in answer.text and beta.member_id not in answer.text


def test_a_page_token_acts_on_its_own_portal_whatever_the_request_names(
    live_app: LiveApp, alpha: Installed, beta: Installed
):
    page = open_page(live_app, alpha.portal)
    named = {"member_id": beta.member_id, "portal": beta.member_id}

    state = requests.get(
        f"{live_app.url}/app/api/state", params=named, headers=page.headers(), timeout=10
    ).json()
    key = requests.post(
        f"{live_app.url}/app/api/pbx-key/reveal", json=named, headers=page.headers(), timeout=10
    ).json()["key"]

    assert state["portal"]["member_id"] == alpha.member_id
    assert key == alpha.key != beta.key


def test_another_portals_call_cannot_be_delivered_again(
    live_app: LiveApp, alpha: Installed, beta: Installed
):
    page = open_page(live_app, alpha.portal)
    betas = send(live_app, beta.key, UNREGISTERED).json()["id"]
    answer = page.post(f"/calls/{betas}/deliver-again")
    assert answer.status_code == 404
    assert call_row(live_app, betas).state == "queued"


def test_a_page_token_is_dead_once_its_portal_uninstalls(live_app: LiveApp, alpha: Installed):
    page = open_page(live_app, alpha.portal)
    live_app.driver.uninstall(alpha.portal, TEST_CLIENT_ID)
    for answer in (page.get("/state"), page.post("/pbx-key/reveal")):
        assert answer.status_code == 403
        assert alpha.key not in answer.text


def test_a_page_token_does_not_survive_a_new_secret_key(live_app: LiveApp, alpha: Installed):
    """SECURITY.md: changing SECRET_KEY logs every open settings page out."""
    page = open_page(live_app, alpha.portal)
    live_app.app.config["SECRET_KEY"] = "a-new-secret-key"
    assert page.get("/state").status_code == 403


def test_a_users_entry_to_another_portal_is_refused(
    live_app: LiveApp, alpha: Installed, beta: Installed
):
    """A user of portal A who learned B's member_id and application_token still has only
    A's AUTH_ID: the OAuth server names A, so B's page does not open."""
    access, _ = live_app.dev.issue_tokens(alpha.portal, TEST_CLIENT_ID, 1)
    answer = requests.post(
        f"{live_app.url}/app",
        params={"DOMAIN": beta.portal.domain, "LANG": "en"},
        data={
            "AUTH_ID": access.token,
            "member_id": beta.member_id,
            "APPLICATION_TOKEN": beta.application_token,
        },
        timeout=10,
    )
    assert answer.status_code == 403
    assert "X-Page-Token" not in answer.text and beta.key not in answer.text
    assert stored(live_app, beta.member_id).status == "active"


class _HourAgo(TimestampSigner):
    """Signs as if just over the page token's lifetime ago."""

    def get_timestamp(self) -> int:
        return int(time.time()) - page_token.LIFETIME - 1


def test_a_replayed_expired_page_token_reads_and_changes_nothing(
    live_app: LiveApp, alpha: Installed
):
    """A genuine administrator's token, captured and replayed after its hour."""
    secret = live_app.app.config["SECRET_KEY"]
    claims = {"m": alpha.member_id, "u": 1, "a": True, "l": "en"}
    old = URLSafeTimedSerializer(secret, salt=page_token.SALT, signer=_HourAgo).dumps(claims)
    headers = {"X-Page-Token": old}

    reads = requests.get(f"{live_app.url}/app/api/state", headers=headers, timeout=10)
    rotate = requests.post(
        f"{live_app.url}/app/api/pbx-key/rotate",
        json={"confirm": True},
        headers=headers,
        timeout=10,
    )

    assert reads.status_code == rotate.status_code == 401
    assert alpha.member_id not in reads.text
    assert pbx_key(live_app, alpha.member_id) == alpha.key
