"""ONAPPUNINSTALL is believed only with the right application_token AND Bitrix24's proof that the
app is gone (issue 10, item 1; b24app/install/uninstall.py).

Every user who opens the app holds the application_token (settings/oauth/simple-way.md), so a
non-administrator can send the event. The proof: the OAuth server refuses our refresh token with
`invalid_client`, "the application may not be installed" (settings/oauth/error-codes.md), not
with `invalid_grant` (expired or used) or PAYMENT_REQUIRED. One test per portal state, each with
the app really uninstalled in the development portal and not.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from sqlalchemy import update

from b24app.bitrix import tokens
from b24app.bitrix.errors import PortalUnavailable
from b24app.db import get_db
from b24app.models import Portal, PortalStatus
from b24app.wiring import current_store, store_of
from devportal import faults
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.pbx import UNREGISTERED
from tests.security import (
    FINISH,
    Installed,
    bearer,
    install,
    post_event,
    stored,
    stored_secrets,
)
from tests.security.test_forged_events import uninstall_event

CALL = {**UNREGISTERED, "PBX_CALL_ID": "proof-1"}


def refresh_through_the_app(live: LiveApp, installed: Installed) -> None:
    """Our app meets the portal's refusal the way delivery does: an expired access token, then a
    refresh at the OAuth server, whose answer sets the portal's status."""
    live.dev.expire_access_tokens(installed.member_id)
    access, _, _ = stored_secrets(live, installed.member_id)
    with live.app.app_context(), pytest.raises(PortalUnavailable):
        installations = current_store()
        tokens.refresh(installations, installations.oauth, installed.member_id, access or "")


def into_state(live: LiveApp, installed: Installed, state: str) -> None:
    dev, portal = live.dev, installed.portal
    if state == "needs_reauth":  # the case: the refresh token is dead (invalid_grant)
        for refresh in dev.refresh_tokens.values():
            if refresh.member_id == portal.member_id:
                refresh.expires_at = dev.now() - 1  # 180 days have passed
        refresh_through_the_app(live, installed)
    elif state == "payment_required":
        faults.lapse_payment(dev, portal, TEST_CLIENT_ID)
        refresh_through_the_app(live, installed)
    elif state == "no_tokens":
        with live.app.app_context(), get_db().write() as session:
            session.execute(
                update(Portal)
                .where(Portal.member_id == portal.member_id)
                .values(access_token_encrypted=None, refresh_token_encrypted=None)
            )
    expected = PortalStatus.ACTIVE if state in ("active", "no_tokens") else PortalStatus(state)
    assert stored(live, installed.member_id).status == expected


def send_uninstall(live: LiveApp, installed: Installed, really: bool) -> int | None:
    """The admin removes the app in the portal (Bitrix24 sends the event), or a user who saw the
    application_token sends the same event while the app stays installed."""
    if really:
        ((_, status),) = live.driver.uninstall(installed.portal, TEST_CLIENT_ID)
        return status
    return post_event(
        live, uninstall_event(installed.member_id, installed.application_token)
    ).status_code


@pytest.fixture
def alpha(live_app: LiveApp) -> Installed:
    return install(live_app, "alpha")


@pytest.mark.parametrize(
    ("state", "really", "believed"),
    [
        ("active", True, True),
        ("active", False, False),
        ("needs_reauth", True, False),  # invalid_grant proves nothing, even when it is true
        ("needs_reauth", False, False),
        ("payment_required", True, True),  # the OAuth server says invalid_client first
        ("payment_required", False, False),
        ("no_tokens", True, False),  # nothing to ask Bitrix24 with: never a free pass
        ("no_tokens", False, False),
    ],
)
def test_uninstall_is_believed_only_with_the_oauth_servers_proof(
    live_app: LiveApp, alpha: Installed, state: str, really: bool, believed: bool
) -> None:
    into_state(live_app, alpha, state)
    status_before = stored(live_app, alpha.member_id).status
    secrets_before = stored_secrets(live_app, alpha.member_id)

    answer = send_uninstall(live_app, alpha, really)

    row = stored(live_app, alpha.member_id)
    pbx = requests.post(live_app.url + FINISH, json=CALL, headers=bearer(alpha.key), timeout=10)
    if believed:
        assert answer == 200
        assert row.status == PortalStatus.UNINSTALLED
        assert stored_secrets(live_app, alpha.member_id) == (None, None, None)
        assert pbx.status_code == 401
    else:
        assert answer == 403
        assert row.status == status_before
        assert stored_secrets(live_app, alpha.member_id) == secrets_before
        assert pbx.status_code == 202


def test_a_forged_uninstall_with_an_expired_access_token_keeps_the_rotated_pair(
    live_app: LiveApp, alpha: Installed
) -> None:
    """The refresh that disproves a forged uninstall uses up our refresh token; the new pair
    must be the one kept, or the next delivery would find the portal needing re-authorisation."""
    live_app.dev.expire_access_tokens(alpha.member_id)
    before = stored_secrets(live_app, alpha.member_id)

    assert send_uninstall(live_app, alpha, really=False) == 403

    after = stored_secrets(live_app, alpha.member_id)
    assert after[1] != before[1] and after[1] in live_app.dev.refresh_tokens
    assert after[2] == before[2]
    assert stored(live_app, alpha.member_id).status == PortalStatus.ACTIVE


def test_tokens_revoked_by_the_uninstall_before_the_event_still_prove_it(
    live_app: LiveApp, alpha: Installed
) -> None:
    """Bitrix24 revokes the tokens at once and the event comes later through its queue: a
    delivery in between makes the portal needs_reauth (invalid_client), and the event that
    follows is still believed, because the OAuth server keeps saying why."""
    live_app.dev.revoke_tokens(alpha.member_id, TEST_CLIENT_ID)
    refresh_through_the_app(live_app, alpha)
    assert stored(live_app, alpha.member_id).status == PortalStatus.NEEDS_REAUTH

    assert send_uninstall(live_app, alpha, really=True) == 200
    assert stored(live_app, alpha.member_id).status == PortalStatus.UNINSTALLED


def test_the_oauth_server_unreachable_proves_nothing(
    live_app: LiveApp, alpha: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app is really gone, but the OAuth server cannot be asked: refused, nothing changes
    (Bitrix24 never re-sends an event, so the portal stays as it was, data intact)."""
    settings = live_app.app.config["SETTINGS"]
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    unreachable = settings.model_copy(update={"oauth_server": closed})
    monkeypatch.setitem(live_app.app.config, "SETTINGS", unreachable)
    monkeypatch.setattr(store_of(live_app.app), "settings", unreachable)

    assert send_uninstall(live_app, alpha, really=True) == 403
    assert stored(live_app, alpha.member_id).status == PortalStatus.ACTIVE


def test_refusals_are_logged_with_their_reason_and_no_secret(
    live_app: LiveApp, alpha: Installed, capfd: pytest.CaptureFixture[str]
) -> None:
    into_state(live_app, alpha, "needs_reauth")
    capfd.readouterr()

    assert send_uninstall(live_app, alpha, really=False) == 403

    logged = _lines(capfd.readouterr().err, "ONAPPUNINSTALL refused")
    assert len(logged) == 1
    assert "invalid_grant, which is no proof" in logged[0]
    assert alpha.application_token not in logged[0]


def _lines(text: str, needle: str) -> list[Any]:
    return [line for line in text.splitlines() if needle in line]
