"""Opening the settings page (POST /app) as Bitrix24 does, and the page token that replaces
cookies: who gets in, who gets the read-only view, what is refused, which headers frame it.
On SQLite and PostgreSQL, against the development portal."""

from __future__ import annotations

import re
import time

import pytest
import requests
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from b24app.db import get_db
from b24app.models import PortalStatus
from b24app.portals import store
from b24app.settings_page import page_token
from b24app.settings_page.views import KIT_STYLE_HASHES
from tests.conftest import LiveApp
from tests.settings_page.conftest import (
    entry_request,
    open_page,
    pbx_key,
    post_entry,
)


def test_an_admin_gets_the_page_with_its_token_framed_by_the_portal_only(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, user_id=1)

    assert page.state["viewer"] == {"user_id": 1, "is_admin": True}
    csp = page.response.headers["Content-Security-Policy"]
    assert f"frame-ancestors 'self' {live_app.dev.base_url}" in csp
    assert "script-src 'self' api.bitrix24.com;" in csp  # BX24.js, from settings
    # our files, and the UI kit's one (empty) style element by its hashes (views.py)
    styles = " ".join(["'self'", *KIT_STYLE_HASHES])
    assert f"style-src {styles};" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "X-Frame-Options" not in page.response.headers
    assert page.response.headers["Cache-Control"] == "no-store"
    html = page.response.text
    assert page.state["examples"] is not None  # the admin's blocks: connection, journal
    assert "<script>" not in html  # no inline script (the CSP would block it)
    assert '<script src="//api.bitrix24.com/api/v1/">' in html
    page_script = r'<script type="module" src="/static/settings-page/settings\.js\?v=\w{12}">'
    assert re.search(page_script, html)  # our built page, its URL changing with its content
    assert pbx_key(live_app, portal) not in html  # the key is shown only when asked for


def test_user_admin_is_asked_with_the_users_own_token(live_app: LiveApp):
    """user-admin.md answers for the token's user: Boris's page asks with Boris's token."""
    portal = live_app.install("alpha")
    open_page(live_app, portal, user_id=2)

    asked = live_app.dev.entries(method="user.admin")
    assert asked and asked[-1]["user_id"] == 2


def test_a_non_admin_gets_the_read_only_view(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, user_id=2)  # Boris is not an admin

    assert page.state["viewer"] == {"user_id": 2, "is_admin": False}
    assert 'class="is-readonly"' in page.response.text
    assert (
        "Only administrators of this Bitrix24 can change these settings"
        in (page.state["messages"]["readonly_text"])
    )
    assert page.state["examples"] is None and "key_rotated_at" not in page.state


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("ru", "ru"), ("ua", "ru"), ("by", "ru"), ("kz", "ru"), ("en", "en"), ("de", "en")],
)
def test_the_language_follows_the_portals_lang(live_app: LiveApp, lang: str, expected: str):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang=lang)

    assert f'<html lang="{expected}">' in page.response.text
    title = "Журнал звонков" if expected == "ru" else "Call journal"
    assert page.state["messages"]["journal_title"] == title
    assert page.state["messages"]["save"] == ("Сохранить" if expected == "ru" else "Save")


def test_an_admin_opening_a_portal_that_lost_its_tokens_brings_it_back(live_app: LiveApp):
    """The status detail of needs_reauth says "open the application": an admin's verified
    token pair, posted with the page, becomes the portal's again."""
    portal = live_app.install("alpha")
    with live_app.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, portal.member_id)
        store.set_status(row, PortalStatus.NEEDS_REAUTH, "refresh token refused")

    page = open_page(live_app, portal, user_id=1)

    assert page.state["health"]["status"] == "active"
    with live_app.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row.status == PortalStatus.ACTIVE


def test_a_non_admin_does_not_revive_a_portal(live_app: LiveApp):
    portal = live_app.install("alpha")
    with live_app.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, portal.member_id)
        store.set_status(row, PortalStatus.NEEDS_REAUTH, "refresh token refused")

    page = open_page(live_app, portal, user_id=2)

    assert page.state["health"]["status"] == "needs_reauth"
    assert "Re-authorise" in page.state["health"]["action"]


# --- refused entries ------------------------------------------------------------------------------


def _refused(response: requests.Response, status: int, text: str) -> None:
    assert response.status_code == status, response.text
    assert text in response.text
    assert 'id="b24app-state"' not in response.text  # no page token, no state


def test_an_unknown_member_id_is_refused(live_app: LiveApp):
    portal = live_app.install("alpha")
    query, form = entry_request(live_app, portal)
    form["member_id"] = "0" * 32
    _refused(post_entry(live_app, query, form), 403, "not installed on this Bitrix24")


def test_a_wrong_application_token_is_refused(live_app: LiveApp):
    portal = live_app.install("alpha")
    query, form = entry_request(live_app, portal)
    form["APPLICATION_TOKEN"] = "f" * 32
    _refused(post_entry(live_app, query, form), 403, "does not come from the installation")


def test_a_forged_auth_id_is_refused(live_app: LiveApp):
    portal = live_app.install("alpha")
    query, form = entry_request(live_app, portal)
    form["AUTH_ID"] = "0123456789abcdef0123456789abcdef"
    _refused(post_entry(live_app, query, form), 403, "did not confirm who opened the page")


def test_a_token_of_another_portal_is_refused(live_app: LiveApp):
    alpha = live_app.install("alpha")
    beta = live_app.install("beta")
    query, form = entry_request(live_app, alpha)
    _, beta_form = entry_request(live_app, beta)
    form["AUTH_ID"] = beta_form["AUTH_ID"]  # a genuine token, of beta's installation
    _refused(post_entry(live_app, query, form), 403, "did not confirm who opened the page")


def test_missing_fields_are_refused(live_app: LiveApp):
    portal = live_app.install("alpha")
    query, form = entry_request(live_app, portal)
    del form["AUTH_ID"]
    _refused(post_entry(live_app, query, form), 400, "opens inside Bitrix24 only")


def test_an_uninstalled_portal_is_refused_in_its_language(live_app: LiveApp):
    portal = live_app.install("alpha")
    query, form = entry_request(live_app, portal, lang="ru")
    live_app.driver.uninstall(portal, "app.test.1")
    _refused(post_entry(live_app, query, form), 403, "Приложение удалено с этого Битрикс24")


# --- the page token -----------------------------------------------------------------------------


def test_the_page_token_works_without_cookies(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    assert "Set-Cookie" not in page.response.headers

    answer = page.get("/state")

    assert answer.status_code == 200
    assert answer.json()["settings"]["timezone"] == "UTC"
    assert "Set-Cookie" not in answer.headers


def test_a_missing_token_is_refused(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    answer = page.get("/state", token="")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "token_missing"


def test_a_tampered_token_is_refused(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, user_id=2)
    payload, timestamp, signature = page.token.split(".")
    # Boris makes himself an admin: the payload changes, the signature no longer matches
    serializer = URLSafeTimedSerializer("irrelevant", salt=page_token.SALT)
    claims = serializer.load_payload(payload.encode())
    claims["a"] = True
    forged_payload = serializer.dump_payload(claims).decode()
    tampered = f"{forged_payload}.{timestamp}.{signature}"

    answer = page.post("/pbx-key/reveal", token=tampered)

    assert answer.status_code == 403
    assert answer.json()["error"] == {
        "code": "token_invalid",
        "message": "The page's session is not valid. Open the application again in Bitrix24.",
    }


def test_a_token_signed_with_another_key_is_refused(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    viewer = page_token.Viewer(portal.member_id, 1, True, "en")
    forged = page_token.issue("not-our-secret-key", viewer)

    answer = page.post("/pbx-key/reveal", token=forged)

    assert answer.status_code == 403
    assert "key" not in answer.json()


class _HourAgo(TimestampSigner):
    """Signs as if an hour and a second ago (itsdangerous puts the time in the token)."""

    def get_timestamp(self) -> int:
        return int(time.time()) - page_token.LIFETIME - 1


def test_an_expired_token_is_refused_in_the_pages_language(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    secret = live_app.app.config["SECRET_KEY"]
    claims = {"m": portal.member_id, "u": 1, "a": True, "l": "ru"}
    expired = URLSafeTimedSerializer(secret, salt=page_token.SALT, signer=_HourAgo).dumps(claims)

    answer = page.get("/state", token=expired)

    assert answer.status_code == 401
    body = answer.json()["error"]
    assert body["code"] == "token_expired"
    assert body["message"].startswith("Страница открыта слишком долго")
    assert page.get("/state").status_code == 200  # the page's own, fresh token still works
