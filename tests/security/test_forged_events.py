"""Forged Bitrix24 requests: lifecycle events and installer posts that did not come from Bitrix24,
or came with someone else's tokens.

Our event handler URL and installer URL are public; the only proofs are the OAuth server's
`app.info` (whose token is this?) and the `application_token` (safe-event-handlers.md). Every
user of a portal receives that application_token and their own token pair whenever they open the
app (settings/oauth/simple-way.md), so neither alone may let a non-administrator install over, or
uninstall, the app.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select, update

from b24app import create_app
from b24app.bitrix.encoding import flatten
from b24app.cli import upgrade_database
from b24app.db import get_db
from b24app.models import OAuthState, PortalStatus, utcnow
from devportal.state import install as dev_install
from tests.conftest import TEST_CLIENT_ID, LiveApp, make_settings
from tests.pbx import make_portal
from tests.security import (
    Installed,
    assert_no_crash,
    install,
    post_event,
    stored,
    stored_secrets,
    user_tokens,
)

NON_ADMIN = 2  # Boris from sales (the development portal's default users)
MULTIPART_X = "multipart/form-data; boundary=x"


def uninstall_event(member_id: object, application_token: object) -> list[tuple[str, str]]:
    body = {
        "event": "ONAPPUNINSTALL",
        "data": {"LANGUAGE_ID": "en", "CLEAN": "0"},
        "auth": {"member_id": member_id, "application_token": application_token},
    }
    return flatten(body)


def full_event(
    event: str, installed: Installed, access: str, refresh: str, application_token: str
) -> list[tuple[str, str]]:
    """ONAPPINSTALL/ONAPPUPDATE as Bitrix24 builds it (install_driver.py), with chosen values."""
    return flatten(
        {
            "event": event,
            "data": {"VERSION": "2", "LANGUAGE_ID": "en"},
            "auth": {
                "access_token": access,
                "expires_in": "3600",
                "domain": installed.portal.domain,
                "member_id": installed.member_id,
                "refresh_token": refresh,
                "application_token": application_token,
            },
        }
    )


def assert_untouched(live: LiveApp, installed: Installed, before: tuple) -> None:
    row = stored(live, installed.member_id)
    assert row is not None and row.status == PortalStatus.ACTIVE
    assert stored_secrets(live, installed.member_id) == before


@pytest.fixture
def alpha(live_app: LiveApp) -> Installed:
    return install(live_app, "alpha")


@pytest.fixture
def beta(live_app: LiveApp) -> Installed:
    return install(live_app, "beta")


# --- ONAPPUNINSTALL -------------------------------------------------------------------------


def test_uninstall_with_another_portals_application_token_is_refused(
    live_app: LiveApp, alpha: Installed, beta: Installed
):
    before = stored_secrets(live_app, beta.member_id)
    answer = post_event(live_app, uninstall_event(beta.member_id, alpha.application_token))
    assert answer.status_code == 403
    assert_untouched(live_app, beta, before)
    assert stored(live_app, alpha.member_id).status == PortalStatus.ACTIVE


@pytest.mark.parametrize(
    "pairs",
    [
        [("event", "ONAPPUNINSTALL")],
        [("event", "ONAPPUNINSTALL"), ("auth[member_id]", "{member_id}")],
        [("event", "onappuninstall"), ("auth[member_id]", "{member_id}"),
         ("auth[application_token]", "")],
        [("event", "ONAPPUNINSTALL"), ("auth[member_id]", "{member_id}"),
         ("auth[application_token]", "0" * 32)],
        [("event", "ONAPPUNINSTALL"), ("auth[member_id]", "{member_id}"),
         ("auth[application_token][]", "{application_token}")],
        [("event", "ONAPPUNINSTALL"), ("auth[member_id][]", "{member_id}"),
         ("auth[application_token]", "{application_token}")],
        [("event", "ONAPPUNINSTALL"), ("auth", "{application_token}")],
        [("event", "ONAPPUNINSTALL"), ("member_id", "{member_id}"),
         ("application_token", "{application_token}")],
        [("event", "ONAPPUNINSTALL"), ("auth[member_id]", "{member_id}"),
         ("auth[application_token]", "{application_token}x")],
        [("event", "ONAPPUNINSTALL"), ("auth[member_id]", "{member_id}"),
         ("auth[application_token]", "{application_token_upper}")],
        [("event", "ONAPPUNINSTALL"), ("auth[member_id]", "0" * 32),
         ("auth[application_token]", "{application_token}")],
        [("event", "ONAPPUNINSTALL"), ("auth[member_id]", "{member_id}\x00"),
         ("auth[application_token]", "{application_token}")],
        [("event", "ONAPPUNINSTALL"), ("auth[member_id]", "x" * 100_000),
         ("auth[application_token]", "{application_token}")],
        [("event", "ONAPPUNINSTALL"), ("auth[member_id]", "{member_id}"),
         ("auth[application_token]", "\x00\xff\ud800")],
    ],
)  # fmt: skip
def test_forged_uninstalls_change_nothing(live_app: LiveApp, alpha: Installed, pairs):
    before = stored_secrets(live_app, alpha.member_id)
    values = {
        "member_id": alpha.member_id,
        "application_token": alpha.application_token,
        "application_token_upper": alpha.application_token.upper(),
    }
    body = [(key, value.format(**values)) for key, value in pairs]

    answer = post_event(live_app, [(k, v.encode("utf-8", "surrogatepass")) for k, v in body])

    assert_no_crash(answer)
    assert answer.status_code == (400 if _not_utf8(body) else 403)  # 400: textbody.py
    assert_untouched(live_app, alpha, before)


def _not_utf8(pairs: list[tuple[str, str]]) -> bool:
    """Whether a body holds text that is not valid UTF-8 (refused as 400 before any check)."""
    return any("\ud800" in key + value for key, value in pairs)


def test_uninstall_by_a_portal_user_who_saw_the_application_token_is_refused(
    live_app: LiveApp, alpha: Installed
):
    """Any user who opens the app receives APPLICATION_TOKEN (simple-way.md). While the app is
    installed the OAuth server still knows our tokens, so an "uninstall" is not believed."""
    before = stored_secrets(live_app, alpha.member_id)
    answer = post_event(live_app, uninstall_event(alpha.member_id, alpha.application_token))
    assert answer.status_code == 403
    assert_untouched(live_app, alpha, before)


def test_uninstall_while_our_access_token_has_expired_is_still_checked(
    live_app: LiveApp, alpha: Installed
):
    """An expired access token does not make a forged uninstall believable: the refresh token
    still works, so the app is still installed."""
    live_app.dev.expire_access_tokens(alpha.member_id)
    answer = post_event(live_app, uninstall_event(alpha.member_id, alpha.application_token))
    assert answer.status_code == 403
    assert stored(live_app, alpha.member_id).status == PortalStatus.ACTIVE


def test_the_genuine_uninstall_still_works(live_app: LiveApp, alpha: Installed):
    delivered = live_app.driver.uninstall(alpha.portal, TEST_CLIENT_ID)
    assert [status for _, status in delivered] == [200]
    row = stored(live_app, alpha.member_id)
    assert row.status == PortalStatus.UNINSTALLED and row.access_token_encrypted is None


def test_the_genuine_uninstall_works_after_our_access_token_expired(
    live_app: LiveApp, alpha: Installed
):
    live_app.dev.expire_access_tokens(alpha.member_id)
    delivered = live_app.driver.uninstall(alpha.portal, TEST_CLIENT_ID)
    assert [status for _, status in delivered] == [200]
    assert stored(live_app, alpha.member_id).status == PortalStatus.UNINSTALLED


# --- ONAPPINSTALL / ONAPPUPDATE -------------------------------------------------------------


@pytest.mark.parametrize("event", ["ONAPPINSTALL", "ONAPPUPDATE"])
def test_event_with_another_portals_token_is_refused(
    live_app: LiveApp, alpha: Installed, beta: Installed, event: str
):
    before = stored_secrets(live_app, alpha.member_id)
    access, refresh = user_tokens(live_app.dev, beta.portal, 1)  # beta's admin
    answer = post_event(live_app, full_event(event, alpha, access, refresh, "f" * 32))
    assert answer.status_code == 403
    assert_untouched(live_app, alpha, before)


@pytest.mark.parametrize("event", ["ONAPPINSTALL", "ONAPPUPDATE"])
def test_event_with_a_token_of_another_application_is_refused(
    live_app: LiveApp, alpha: Installed, event: str
):
    """The same portal's admin, but the token belongs to another app installed there."""
    stranger = live_app.dev.add_app("app.stranger", "stranger-secret")
    dev_install(live_app.dev, alpha.portal, stranger.client_id)
    access, refresh = live_app.dev.issue_tokens(alpha.portal, stranger.client_id, 1)
    before = stored_secrets(live_app, alpha.member_id)
    answer = post_event(live_app, full_event(event, alpha, access.token, refresh.token, "f" * 32))
    assert answer.status_code == 403
    assert_untouched(live_app, alpha, before)


@pytest.mark.parametrize("event", ["ONAPPINSTALL", "ONAPPUPDATE"])
def test_event_with_a_non_admins_own_token_cannot_replace_the_application_token(
    live_app: LiveApp, alpha: Installed, event: str
):
    """A user who opened the app has a genuine token of our app on this portal. With it, a
    forged ONAPPUPDATE would set an application_token of their choosing."""
    access, refresh = user_tokens(live_app.dev, alpha.portal, NON_ADMIN)
    before = stored_secrets(live_app, alpha.member_id)
    answer = post_event(live_app, full_event(event, alpha, access, refresh, "f" * 32))
    assert answer.status_code == 403
    assert_untouched(live_app, alpha, before)


def test_event_for_an_unknown_portal_with_a_made_up_token_stores_nothing(live_app: LiveApp):
    pairs = flatten(
        {
            "event": "ONAPPINSTALL",
            "auth": {
                "access_token": "a" * 32,
                "refresh_token": "b" * 32,
                "member_id": "c" * 32,
                "application_token": "d" * 32,
                "domain": "evil.example",
            },
        }
    )
    answer = post_event(live_app, pairs)
    assert answer.status_code == 403
    assert stored(live_app, "c" * 32) is None


def test_the_genuine_update_still_replaces_the_application_token(
    live_app: LiveApp, alpha: Installed
):
    delivered = live_app.driver.update(alpha.portal, TEST_CLIENT_ID)
    assert [status for _, status in delivered] == [200]
    assert stored_secrets(live_app, alpha.member_id)[2] == alpha.application_token  # the new one


# --- the installer --------------------------------------------------------------------------


def installer_post(live: LiveApp, installed: Installed, access: str, refresh: str) -> dict:
    return {
        "params": {"DOMAIN": installed.portal.domain, "LANG": "en", "APP_SID": "x"},
        "data": {
            "AUTH_ID": access,
            "REFRESH_ID": refresh,
            "AUTH_EXPIRES": "3600",
            "APPLICATION_TOKEN": "f" * 32,
            "member_id": installed.member_id,
        },
    }


def test_installer_replayed_with_a_non_admins_frame_tokens_is_refused(
    live_app: LiveApp, alpha: Installed
):
    """The frame POST of a user opening the app looks like the installer's; replayed to
    /install it must not put that user's tokens and an application_token of their choice in
    place of the administrator's."""
    access, refresh = user_tokens(live_app.dev, alpha.portal, NON_ADMIN)
    before = stored_secrets(live_app, alpha.member_id)
    answer = requests.post(
        f"{live_app.url}/install", timeout=10, **installer_post(live_app, alpha, access, refresh)
    )
    assert answer.status_code == 403
    assert_untouched(live_app, alpha, before)


def test_installer_with_another_portals_admin_token_is_refused(
    live_app: LiveApp, alpha: Installed, beta: Installed
):
    access, refresh = user_tokens(live_app.dev, beta.portal, 1)
    before = stored_secrets(live_app, alpha.member_id)
    answer = requests.post(
        f"{live_app.url}/install", timeout=10, **installer_post(live_app, alpha, access, refresh)
    )
    assert answer.status_code == 403
    assert_untouched(live_app, alpha, before)


# --- malformed and huge event bodies --------------------------------------------------------


@pytest.mark.parametrize(
    "pairs",
    [
        [("auth[member_id", "x")],
        [("auth]]", "x"), ("event", "ONAPPUNINSTALL")],
        [("auth[[member_id]]", "x"), ("event", "ONAPPUNINSTALL")],
        [("[]", "x"), ("[auth]", "y")],
        [("event[]", "ONAPPUNINSTALL"), ("event[]", "ONAPPINSTALL")],
        [("event[x]", "ONAPPINSTALL")],
        [("event", "ONAPPINSTALL"), ("auth[]", "x"), ("auth[][]", "y")],
        [("event", "ONAPPINSTALL"), ("auth", "x"), ("auth[access_token]", "y")],
        [("event", "ONAPPINSTALL"), ("auth[access_token]", "y"), ("auth", "x")],
        [("event", "ONAPPINSTALL"), ("auth[access_token][0][1][2]", "y")],
        [("event", "ONAPPINSTALL"), ("auth[expires_in]", "9" * 5000),
         ("auth[access_token]", "x")],
        [("event", "ONAPPUNINSTALL"), ("auth" + "[a]" * 20_000, "deep")],
        [("event", "ONAPPUNINSTALL")] + [(f"auth[k{i}]", "v") for i in range(20_000)],
        [("event", "\x00" * 100), ("auth[member_id]", "\x00")],
        [("event", "ONAPPINSTALL"), ("auth[member_id]", "é" * 40),
         ("auth[access_token]", "\ud800")],
    ],
)  # fmt: skip
def test_malformed_event_bodies_are_answered_and_change_nothing(
    live_app: LiveApp, alpha: Installed, pairs
):
    before = stored_secrets(live_app, alpha.member_id)
    encoded = [(k, v.encode("utf-8", "surrogatepass")) for k, v in pairs]
    answer = post_event(live_app, encoded)
    assert_no_crash(answer)
    assert answer.status_code in ((400,) if _not_utf8(pairs) else (200, 403))
    assert_untouched(live_app, alpha, before)


@pytest.mark.parametrize(
    "body, content_type",
    [
        (b"event=ONAPPUNINSTALL&auth[member_id]=" + b"x" * (2 * 1024 * 1024), None),
        (b"\xff\xfe\x00garbage" * 1000, "application/x-www-form-urlencoded"),
        (b'{"event": "ONAPPUNINSTALL"}', "application/json"),
        (b"--x\r\nContent-Disposition: form-data; name=event\r\n\r\nONAPP", MULTIPART_X),
        (b"event=ONAPPUNINSTALL", "multipart/form-data"),
        (b"%" * 10_000, "application/x-www-form-urlencoded"),
    ],
)  # fmt: skip
def test_oversized_and_unreadable_event_bodies_get_a_plain_answer(
    live_app: LiveApp, alpha: Installed, body: bytes, content_type: str | None
):
    headers = {"Content-Type": content_type or "application/x-www-form-urlencoded"}
    answer = post_event(live_app, body, headers=headers)
    assert_no_crash(answer)
    assert answer.status_code in (200, 400, 403, 413)
    assert stored(live_app, alpha.member_id).status == PortalStatus.ACTIVE


# --- the re-authorisation link --------------------------------------------------------------


def follow_start_link(live: LiveApp, member_id: str, *, as_user: int) -> requests.Response:
    """/oauth/start → the portal's authorize page, logged in as `as_user` → our callback."""
    start = requests.get(
        f"{live.url}/oauth/start",
        params={"member_id": member_id},
        allow_redirects=False,
        timeout=10,
    )
    assert start.status_code == 302, start.text
    authorize = requests.get(
        start.headers["Location"] + f"&as_user={as_user}", allow_redirects=False, timeout=10
    )
    return requests.get(authorize.headers["Location"], timeout=10)


def test_a_non_admin_following_the_reauthorisation_link_changes_nothing(
    live_app: LiveApp, alpha: Installed
):
    """The link names only the portal; a user who is not an administrator who follows it
    must not make their own token pair the portal's."""
    before = stored_secrets(live_app, alpha.member_id)
    answer = follow_start_link(live_app, alpha.member_id, as_user=NON_ADMIN)
    assert answer.status_code == 403
    assert 'data-outcome="not_admin"' in answer.text
    assert_untouched(live_app, alpha, before)


def test_an_admin_following_the_reauthorisation_link_still_restores_the_portal(
    live_app: LiveApp, alpha: Installed
):
    before = stored_secrets(live_app, alpha.member_id)
    answer = follow_start_link(live_app, alpha.member_id, as_user=1)
    assert answer.status_code == 200 and 'data-outcome="done"' in answer.text
    assert stored_secrets(live_app, alpha.member_id)[:2] != before[:2]  # a new pair


def test_the_reauthorisation_link_cannot_be_used_to_fill_the_database(
    database_url: str, tmp_path: Path
):
    """/oauth/start writes a row per request: it is rate-limited per address, and expired
    rows go as new ones come."""
    upgrade_database(database_url)
    app = create_app(make_settings(database_url, tmp_path, B24APP_INSTALL_RATE_LIMIT="5/minute"))
    member_id = "m" * 32
    make_portal(app, member_id)
    client = app.test_client()
    answers = [client.get("/oauth/start", query_string={"member_id": member_id}) for _ in range(8)]
    assert [a.status_code for a in answers] == [302] * 5 + [429] * 3
    assert "Retry-After" in answers[-1].headers

    with app.app_context(), get_db().write() as session:
        session.execute(update(OAuthState).values(expires_at=utcnow() - timedelta(seconds=1)))
    app.extensions["b24app.limiter"].reset()
    assert client.get("/oauth/start", query_string={"member_id": member_id}).status_code == 302
    with app.app_context(), get_db().read() as session:
        assert session.scalar(select(func.count()).select_from(OAuthState)) == 1
    app.extensions["b24app.db"].dispose()
