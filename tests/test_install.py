"""Installing, updating and uninstalling through the development portal's install driver,
exactly as Bitrix24 does it (settings/oauth/simple-way.md, api-reference/common/events/)."""

from __future__ import annotations

import requests
from sqlalchemy import select, text

from b24app.db import get_db
from b24app.models import ExtensionMapping, Portal, PortalStatus
from b24app.portals import store
from b24app.wiring import current_store, store_of
from tests.conftest import TEST_CLIENT_ID, LiveApp


def stored(live: LiveApp, member_id: str) -> Portal | None:
    with live.app.app_context(), get_db().read() as session:
        return store.find_portal(session, member_id)


def test_install_stores_the_portal_binds_events_and_finishes_in_the_frame(live_app: LiveApp):
    portal = live_app.dev.add_portal("alpha")
    page = live_app.driver.open_installer(portal, TEST_CLIENT_ID)

    assert page.status_code == 200
    assert "BX24.installFinish()" in page.text
    assert (
        f"frame-ancestors 'self' {live_app.dev.base_url}" in page.headers["Content-Security-Policy"]
    )
    row = stored(live_app, portal.member_id)
    assert row is not None and row.status == PortalStatus.ACTIVE
    assert row.client_endpoint == live_app.dev.client_endpoint(portal)
    assert row.domain == portal.domain
    bound = {(e["event"], e["handler"]) for e in portal.installations[TEST_CLIENT_ID].events}
    assert ("ONAPPUNINSTALL", f"{live_app.url}/events") in bound
    assert ("ONAPPUPDATE", f"{live_app.url}/events") in bound


def test_tokens_are_encrypted_at_rest(live_app: LiveApp):
    portal = live_app.install()
    token = next(t.token for t in live_app.dev.access_tokens.values())
    with live_app.app.app_context(), get_db().read() as session:
        raw = session.execute(text("SELECT access_token_encrypted FROM portals")).scalar_one()
    assert token not in raw
    with live_app.app.app_context(), get_db().read() as session:
        pair = current_store().read_tokens(store.find_portal(session, portal.member_id))
    assert pair is not None and pair.access_token in live_app.dev.access_tokens


def test_onappinstall_event_is_verified_and_accepted(live_app: LiveApp):
    portal = live_app.dev.add_portal("alpha")
    live_app.driver.open_installer(portal, TEST_CLIENT_ID)
    delivered = live_app.driver.finish_install(portal, TEST_CLIENT_ID)
    assert [status for _, status in delivered] == [200]


def test_reinstall_keeps_settings_and_mapping(live_app: LiveApp):
    portal = live_app.install()
    with live_app.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, portal.member_id)
        row.settings.currency = "EUR"
        session.add(ExtensionMapping(portal_id=row.id, extension="201", user_id=2))
    live_app.driver.uninstall(portal, TEST_CLIENT_ID)
    assert stored(live_app, portal.member_id).status == PortalStatus.UNINSTALLED

    live_app.driver.open_installer(portal, TEST_CLIENT_ID)
    row = stored(live_app, portal.member_id)
    assert row.status == PortalStatus.ACTIVE
    with live_app.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row.settings.currency == "EUR"
        mapped = session.scalars(select(ExtensionMapping.extension)).all()
    assert mapped == ["201"]


def test_update_replaces_the_application_token(live_app: LiveApp):
    """on-app-update.md: ONAPPUPDATE carries the new application_token; later events use it."""
    portal = live_app.install()
    live_app.driver.update(portal, TEST_CLIENT_ID)
    new_token = portal.installations[TEST_CLIENT_ID].application_token
    with live_app.app.app_context(), get_db().read() as session:
        assert (
            current_store().application_token(store.find_portal(session, portal.member_id))
            == new_token
        )
    live_app.driver.uninstall(portal, TEST_CLIENT_ID)
    assert stored(live_app, portal.member_id).status == PortalStatus.UNINSTALLED


def test_uninstall_erases_tokens_and_keeps_the_portal_row(live_app: LiveApp):
    portal = live_app.install()
    delivered = live_app.driver.uninstall(portal, TEST_CLIENT_ID)
    assert [status for _, status in delivered] == [200]
    row = stored(live_app, portal.member_id)
    assert row.status == PortalStatus.UNINSTALLED
    assert row.access_token_encrypted is None and row.refresh_token_encrypted is None
    assert row.uninstalled_at is not None


def test_forged_uninstall_with_a_wrong_application_token_changes_nothing(live_app: LiveApp):
    portal = live_app.install()
    forged = {
        "event": "ONAPPUNINSTALL",
        "auth[member_id]": portal.member_id,
        "auth[application_token]": "0" * 32,
        "auth[domain]": portal.domain,
    }
    response = requests.post(f"{live_app.url}/events", data=forged, timeout=5)
    assert response.status_code == 403
    assert stored(live_app, portal.member_id).status == PortalStatus.ACTIVE


def test_forged_install_with_a_bad_auth_id_is_refused_and_nothing_stored(live_app: LiveApp):
    portal = live_app.dev.add_portal("alpha")
    response = requests.post(
        f"{live_app.url}/install",
        params={"DOMAIN": portal.domain, "PROTOCOL": "0", "LANG": "en", "APP_SID": "x"},
        data={
            "AUTH_ID": "forged-token",
            "REFRESH_ID": "forged-refresh",
            "AUTH_EXPIRES": "3600",
            "APPLICATION_TOKEN": "a" * 32,
            "member_id": portal.member_id,
            "PLACEMENT": "DEFAULT",
        },
        timeout=5,
    )
    assert response.status_code == 403
    assert stored(live_app, portal.member_id) is None


def test_install_naming_another_portal_is_refused(live_app: LiveApp):
    """The AUTH_ID of portal beta cannot install us as portal alpha (app.info names beta)."""
    alpha = live_app.dev.add_portal("alpha")
    beta = live_app.install("beta")
    beta_token = next(
        t.token for t in live_app.dev.access_tokens.values() if t.member_id == beta.member_id
    )
    response = requests.post(
        f"{live_app.url}/install",
        params={"DOMAIN": alpha.domain},
        data={
            "AUTH_ID": beta_token,
            "REFRESH_ID": "x",
            "APPLICATION_TOKEN": "a" * 32,
            "member_id": alpha.member_id,
        },
        timeout=5,
    )
    assert response.status_code == 403
    assert stored(live_app, alpha.member_id) is None


def test_install_with_missing_fields_names_them(live_app: LiveApp):
    response = requests.post(f"{live_app.url}/install", data={"AUTH_ID": "x"}, timeout=5)
    assert response.status_code == 400
    assert "REFRESH_ID" in response.text and "member_id" in response.text


def test_portal_on_a_private_network_is_refused_without_the_local_switch(live_app: LiveApp):
    """Our development portal lives on 127.0.0.1 over http: refused unless explicitly allowed."""
    settings = live_app.app.config["SETTINGS"]
    strict = settings.model_copy(update={"allow_local_portals": False})
    live_app.app.config["SETTINGS"] = store_of(live_app.app).settings = strict
    portal = live_app.dev.add_portal("alpha")
    response = live_app.driver.open_installer(portal, TEST_CLIENT_ID)
    assert response.status_code == 403
    assert "portal address refused" in response.text
    assert stored(live_app, portal.member_id) is None


def test_token_of_an_unknown_application_is_refused(live_app: LiveApp):
    live_app.dev.add_app("app.stranger", "secret")
    portal = live_app.dev.add_portal("alpha")
    response = live_app.driver.open_installer(portal, "app.stranger")
    assert response.status_code == 403
    assert stored(live_app, portal.member_id) is None


def test_local_app_credentials_added_by_the_admin_are_matched_by_client_id(live_app: LiveApp):
    live_app.dev.add_app("local.portal.42", "local-secret")
    runner = live_app.app.test_cli_runner()
    result = runner.invoke(
        args=["apps", "add", "--client-id", "local.portal.42", "--client-secret", "local-secret"]
    )
    assert result.exit_code == 0, result.output
    portal = live_app.dev.add_portal("alpha")
    assert live_app.driver.open_installer(portal, "local.portal.42").status_code == 200
    row = stored(live_app, portal.member_id)
    assert row.client_id == "local.portal.42"
