"""The install driver: what an app receives when a development portal installs, opens, updates and
removes it — checked against a throw-away app that records every request.

References: settings/oauth/simple-way.md (the installer and app-page POST),
settings/app-installation/installation-finish.md (installFinish, no events before it),
api-reference/common/events/on-app-install.md, on-app-update.md, on-app-uninstall.md,
api-reference/events/index.md (form encoding with bracket keys, no retries).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from flask import Flask, request
from werkzeug.serving import make_server

from b24app.bitrix.encoding import unflatten
from devportal.install_driver import InstallDriver, NotInstalled
from devportal.server import DevportalServer
from devportal.state import DevPortal, DevState, Installation
from tests.conftest import TEST_CLIENT_ID

INSTALL_FORM = [
    "AUTH_ID",
    "AUTH_EXPIRES",
    "REFRESH_ID",
    "SERVER_ENDPOINT",
    "APPLICATION_TOKEN",
    "APPLICATION_SCOPE",
    "member_id",
    "status",
    "PLACEMENT",
    "PLACEMENT_OPTIONS",
]
ONAPPINSTALL_KEYS = [
    "event",
    "data[VERSION]",
    "data[ACTIVE]",
    "data[INSTALLED]",
    "data[LANGUAGE_ID]",
    "ts",
    "auth[access_token]",
    "auth[expires]",
    "auth[expires_in]",
    "auth[scope]",
    "auth[domain]",
    "auth[server_endpoint]",
    "auth[status]",
    "auth[client_endpoint]",
    "auth[member_id]",
    "auth[user_id]",
    "auth[refresh_token]",
    "auth[application_token]",
]
ONAPPUNINSTALL_KEYS = [
    "event",
    "data[LANGUAGE_ID]",
    "data[CLEAN]",
    "ts",
    "auth[domain]",
    "auth[server_endpoint]",
    "auth[client_endpoint]",
    "auth[member_id]",
    "auth[application_token]",
]


def bound(keys: list[str]) -> list[str]:
    """A bound handler also gets `event_handler_id` (events/index.md: the same top-level keys
    for every event); the lifecycle pages' examples leave it out."""
    return [keys[0], "event_handler_id", *keys[1:]]


@dataclass
class Received:
    path: str
    query: dict[str, str]
    form: list[tuple[str, str]]  # in the order they were sent
    content_type: str
    token_check: int | None = None  # what the portal said to the event's token, if tried

    @property
    def fields(self) -> dict[str, str]:
        return dict(self.form)

    @property
    def keys(self) -> list[str]:
        return [k for k, _ in self.form]


@dataclass
class Recorder:
    """A throw-away app: /install, /app, /events, /hooks/<name>, and /broken (answers 500)."""

    url: str
    devportal_url: str = ""
    received: list[Received] = field(default_factory=list)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@pytest.fixture
def recorder(devportal: DevportalServer) -> Iterator[Recorder]:
    app = Flask("recorder")
    record = Recorder(url="", devportal_url=devportal.url)

    @app.post("/<path:path>")
    def receive(path: str) -> tuple[str, int]:
        body = request.get_data(as_text=True)
        entry = Received(
            "/" + path,
            request.args.to_dict(),
            parse_qsl(body, keep_blank_values=True),
            request.content_type or "",
        )
        if entry.fields.get("event") == "ONAPPUNINSTALL":
            entry.token_check = _try_old_token(record)
        record.received.append(entry)
        return ("<html>broken</html>", 500) if path == "broken" else ("<html>ok</html>", 200)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    record.url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
    # a short poll interval: shutdown() waits for it
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield record
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _try_old_token(record: Recorder) -> int | None:
    """The ONAPPUNINSTALL handler tries the installer's token: on-app-uninstall.md says it fails."""
    installer = record.at("/install")
    if not installer:
        return None
    token = installer[0].fields["AUTH_ID"]
    response = requests.get(
        f"{record.devportal_url}/rest/app.info/", params={"auth": token}, timeout=5
    )
    return response.status_code


@pytest.fixture
def driver(dev: DevState, recorder: Recorder) -> InstallDriver:
    return InstallDriver(dev, recorder.url, event_timeout=2.0)


@pytest.fixture
def bare(dev: DevState) -> DevPortal:
    """Portal "alpha" without our app."""
    return dev.add_portal("alpha")


def bind(dev: DevState, portal: DevPortal, event: str, handler: str, **extra: Any) -> None:
    """The installer's `event.bind` (api-reference/events/event-bind.md), by the admin."""
    access, _ = dev.issue_tokens(portal, TEST_CLIENT_ID, 1)
    response = requests.post(
        f"{dev.client_endpoint(portal)}event.bind.json",
        json={"event": event, "handler": handler, "auth": access.token, **extra},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def installed(dev: DevState, driver: InstallDriver, portal: DevPortal) -> Installation:
    driver.open_installer(portal, TEST_CLIENT_ID)
    return portal.installations[TEST_CLIENT_ID]


def oauth_app_info(dev: DevState, token: str) -> requests.Response:
    return requests.get(f"{dev.base_url}/rest/app.info/", params={"auth": token}, timeout=10)


# --- the installer page ----------------------------------------------------------------------
def test_installer_gets_query_and_form_as_simple_way_describes(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """simple-way.md: DOMAIN, PROTOCOL, LANG, APP_SID in the query; tokens and the installation's
    data in a form body; PLACEMENT=DEFAULT."""
    response = driver.open_installer(bare, TEST_CLIENT_ID, user_id=1, lang="de")

    assert response.status_code == 200
    (got,) = recorder.at("/install")
    assert set(got.query) == {"DOMAIN", "PROTOCOL", "LANG", "APP_SID"}
    assert got.query["DOMAIN"] == bare.domain
    assert got.query["PROTOCOL"] == "0"  # the development portal is served over http
    assert got.query["LANG"] == "de"
    assert len(got.query["APP_SID"]) == 32
    assert got.content_type == "application/x-www-form-urlencoded"
    assert got.keys == INSTALL_FORM
    installation = bare.installations[TEST_CLIENT_ID]
    form = got.fields
    assert form["AUTH_EXPIRES"] == "3600"
    assert form["SERVER_ENDPOINT"] == f"{dev.base_url}/rest/"
    assert form["APPLICATION_TOKEN"] == installation.application_token
    assert form["APPLICATION_SCOPE"] == dev.apps[TEST_CLIENT_ID].scope
    assert form["member_id"] == bare.member_id
    assert form["status"] == "F"
    assert form["PLACEMENT"] == "DEFAULT"
    assert form["PLACEMENT_OPTIONS"] == "{}"
    assert form["REFRESH_ID"] in dev.refresh_tokens
    assert installation.installed is False


def test_installer_tokens_belong_to_the_installing_user(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """simple-way.md: AUTH_ID is the access token of the user who opened the page; the app is
    not installed until installFinish() (installation-finish.md: INSTALLED false)."""
    driver.open_installer(bare, TEST_CLIENT_ID, user_id=1)
    token = recorder.at("/install")[0].fields["AUTH_ID"]

    result = oauth_app_info(dev, token).json()["result"]

    assert result["user_id"] == 1
    assert result["install"]["member_id"] == bare.member_id
    assert result["install"]["installed"] is False


def test_protocol_is_1_when_the_portal_is_served_over_https(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """simple-way.md: PROTOCOL 0 = HTTP, 1 = HTTPS."""
    dev.base_url = "https://oauth.example.test"

    driver.open_installer(bare, TEST_CLIENT_ID)

    got = recorder.at("/install")[0]
    assert got.query["PROTOCOL"] == "1"
    assert got.fields["SERVER_ENDPOINT"] == "https://oauth.example.test/rest/"


# --- installFinish and ONAPPINSTALL ----------------------------------------------------------
def test_no_event_before_install_finish(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """installation-finish.md: events are not sent until the installation is complete."""
    installed(dev, driver, bare)
    bind(dev, bare, "ONAPPINSTALL", f"{recorder.url}/events")

    assert recorder.at("/events") == []
    delivered = driver.finish_install(bare, TEST_CLIENT_ID)

    assert delivered == [(f"{recorder.url}/events", 200)]
    assert len(recorder.at("/events")) == 1


def test_onappinstall_has_the_documented_bracketed_form(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """on-app-install.md and events/index.md: form-encoded with bracket keys; data VERSION,
    ACTIVE=Y, INSTALLED=Y, LANGUAGE_ID; auth with both tokens and application_token."""
    driver.open_installer(bare, TEST_CLIENT_ID, lang="de")
    installation = bare.installations[TEST_CLIENT_ID]
    bind(dev, bare, "ONAPPINSTALL", f"{recorder.url}/events")

    driver.finish_install(bare, TEST_CLIENT_ID)

    (got,) = recorder.at("/events")
    assert got.content_type == "application/x-www-form-urlencoded"
    assert got.keys == bound(ONAPPINSTALL_KEYS)
    form = got.fields
    assert form["event"] == "ONAPPINSTALL"
    assert (form["data[VERSION]"], form["data[ACTIVE]"], form["data[INSTALLED]"]) == ("1", "Y", "Y")
    assert form["data[LANGUAGE_ID]"] == "de"  # the installer's language
    assert abs(int(form["ts"]) - dev.now()) < 5
    assert form["auth[application_token]"] == installation.application_token
    assert form["auth[domain]"] == bare.domain
    assert form["auth[member_id]"] == bare.member_id
    assert form["auth[client_endpoint]"] == dev.client_endpoint(bare)
    assert form["auth[server_endpoint]"] == dev.server_endpoint
    assert form["auth[expires_in]"] == "3600"
    assert form["auth[status]"] == "F"
    assert form["auth[user_id]"] == "1"
    assert form["auth[refresh_token]"] in dev.refresh_tokens
    assert unflatten(got.form)["auth"]["application_token"] == installation.application_token
    result = oauth_app_info(dev, form["auth[access_token]"]).json()["result"]
    assert result["install"]["installed"] is True


def test_install_event_goes_to_handler_url_when_nothing_is_bound(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """installation-finish.md: an app may name an "installation event handler URL" instead."""
    dev.apps[TEST_CLIENT_ID].handler_url = f"{recorder.url}/hooks/callback"
    installed(dev, driver, bare)

    delivered = driver.finish_install(bare, TEST_CLIENT_ID)

    assert delivered == [(f"{recorder.url}/hooks/callback", 200)]
    assert recorder.at("/hooks/callback")[0].fields["event"] == "ONAPPINSTALL"


def test_events_go_only_to_handlers_bound_to_that_event(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """event-bind.md: a handler gets the events it was bound to, and a bound handler replaces
    the handler_url fallback; offline bindings are never POSTed (offline-events.md)."""
    dev.apps[TEST_CLIENT_ID].handler_url = f"{recorder.url}/hooks/fallback"
    installed(dev, driver, bare)
    bind(dev, bare, "OnAppInstall", f"{recorder.url}/hooks/install")  # any letter case
    bind(dev, bare, "ONAPPUNINSTALL", f"{recorder.url}/hooks/uninstall")
    bind(dev, bare, "ONAPPINSTALL", f"{recorder.url}/hooks/offline", event_type="offline")

    driver.finish_install(bare, TEST_CLIENT_ID)
    driver.uninstall(bare, TEST_CLIENT_ID)

    assert [r.fields["event"] for r in recorder.at("/hooks/install")] == ["ONAPPINSTALL"]
    assert [r.fields["event"] for r in recorder.at("/hooks/uninstall")] == ["ONAPPUNINSTALL"]
    assert recorder.at("/hooks/fallback") == []
    assert recorder.at("/hooks/offline") == []


def test_no_event_without_binding_or_handler_url(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """on-app-install.md: without a handler there is nobody to send the event to."""
    installed(dev, driver, bare)

    assert driver.finish_install(bare, TEST_CLIENT_ID) == []
    assert [r.path for r in recorder.received] == ["/install"]


def test_install_finish_happens_once(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """on-app-install.md: the event fires "immediately after the successful installation"."""
    installed(dev, driver, bare)
    bind(dev, bare, "ONAPPINSTALL", f"{recorder.url}/events")
    driver.finish_install(bare, TEST_CLIENT_ID)

    assert driver.finish_install(bare, TEST_CLIENT_ID) == []
    assert len(recorder.at("/events")) == 1


def test_bound_handler_id_and_auth_type_are_honoured(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """events/index.md: event_handler_id is sent; tokens belong to the auth_type user if set."""
    installation = installed(dev, driver, bare)
    bind(dev, bare, "ONAPPINSTALL", f"{recorder.url}/events", auth_type=2)

    driver.finish_install(bare, TEST_CLIENT_ID)

    got = recorder.at("/events")[0]
    assert got.keys[:2] == ["event", "event_handler_id"]
    assert got.fields["event_handler_id"] == str(installation.events[0]["id"])
    assert got.fields["auth[user_id]"] == "2"


# --- update ----------------------------------------------------------------------------------
def test_update_sends_the_new_application_token(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """on-app-update.md: VERSION, PREVIOUS_VERSION, LANGUAGE_ID, and the updated
    application_token with full auth."""
    installation = installed(dev, driver, bare)
    bind(dev, bare, "ONAPPUPDATE", f"{recorder.url}/events")
    driver.finish_install(bare, TEST_CLIENT_ID)
    old_token = installation.application_token

    delivered = driver.update(bare, TEST_CLIENT_ID, lang="ru")

    assert delivered == [(f"{recorder.url}/events", 200)]
    form = recorder.at("/events")[0].fields
    assert form["event"] == "ONAPPUPDATE"
    assert (form["data[VERSION]"], form["data[PREVIOUS_VERSION]"]) == ("2", "1")
    assert form["data[LANGUAGE_ID]"] == "ru"
    assert installation.version == 2
    assert installation.application_token != old_token
    assert form["auth[application_token]"] == installation.application_token
    assert set(ONAPPINSTALL_KEYS[6:]) <= set(form)
    assert oauth_app_info(dev, form["auth[access_token]"]).status_code == 200


# --- uninstall -------------------------------------------------------------------------------
def test_uninstall_event_has_no_access_token_and_access_is_revoked(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """on-app-uninstall.md: LANGUAGE_ID, CLEAN, and auth without tokens; "all access permissions
    for the application to the API are revoked", already when the handler runs."""
    installation = installed(dev, driver, bare)
    bind(dev, bare, "ONAPPUNINSTALL", f"{recorder.url}/events")
    driver.finish_install(bare, TEST_CLIENT_ID)
    token = installation.application_token

    delivered = driver.uninstall(bare, TEST_CLIENT_ID, clean=True)

    assert delivered == [(f"{recorder.url}/events", 200)]
    (got,) = recorder.at("/events")
    assert got.keys == bound(ONAPPUNINSTALL_KEYS)
    assert not any("token" in k and k != "auth[application_token]" for k in got.keys)
    assert got.fields["data[CLEAN]"] == "1"
    assert got.fields["auth[application_token]"] == token
    assert got.token_check == 401
    assert TEST_CLIENT_ID not in bare.installations
    assert not any(t.member_id == bare.member_id for t in dev.access_tokens.values())


def test_uninstall_without_clean_sends_clean_0(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """on-app-uninstall.md: CLEAN is the "Clear application data" option, 1 or 0."""
    installed(dev, driver, bare)
    bind(dev, bare, "ONAPPUNINSTALL", f"{recorder.url}/events")
    driver.finish_install(bare, TEST_CLIENT_ID)

    driver.uninstall(bare, TEST_CLIENT_ID)

    assert recorder.at("/events")[0].fields["data[CLEAN]"] == "0"


def test_uninstall_of_an_unfinished_installation_sends_nothing(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """on-app-uninstall.md: "Events will not be sent ... until the installation is complete"."""
    installed(dev, driver, bare)
    bind(dev, bare, "ONAPPUNINSTALL", f"{recorder.url}/events")

    assert driver.uninstall(bare, TEST_CLIENT_ID) == []
    assert recorder.at("/events") == []
    assert TEST_CLIENT_ID not in bare.installations


def test_reinstall_starts_without_handlers_and_with_a_new_application_token(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """app-uninstallation.md: handlers are removed with the app; a new install binds again."""
    first = installed(dev, driver, bare)
    bind(dev, bare, "ONAPPINSTALL", f"{recorder.url}/events")
    driver.finish_install(bare, TEST_CLIENT_ID)
    driver.uninstall(bare, TEST_CLIENT_ID)

    second = installed(dev, driver, bare)

    assert second.events == []
    assert second.application_token != first.application_token


# --- the app page ----------------------------------------------------------------------------
def test_open_app_posts_a_fresh_pair_for_that_user(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """simple-way.md: every user who opens the app brings their own fresh token pair."""
    installation = installed(dev, driver, bare)
    driver.finish_install(bare, TEST_CLIENT_ID)
    installer_token = recorder.at("/install")[0].fields["AUTH_ID"]

    response = driver.open_app(bare, TEST_CLIENT_ID, user_id=2, lang="ru")

    assert response.status_code == 200
    (got,) = recorder.at("/app")
    assert got.keys == INSTALL_FORM
    assert got.query["LANG"] == "ru"
    assert got.fields["PLACEMENT"] == "DEFAULT"
    assert got.fields["APPLICATION_TOKEN"] == installation.application_token
    assert got.fields["AUTH_ID"] != installer_token
    assert oauth_app_info(dev, got.fields["AUTH_ID"]).json()["result"]["user_id"] == 2


def test_open_app_before_install_finish(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """installation-finish.md: until installFinish() the admin sees the installer again and
    other users are told the app is not fully installed."""
    installed(dev, driver, bare)

    driver.open_app(bare, TEST_CLIENT_ID, user_id=1)
    with pytest.raises(NotInstalled):
        driver.open_app(bare, TEST_CLIENT_ID, user_id=2)

    assert len(recorder.at("/install")) == 2
    assert recorder.at("/app") == []


def test_open_app_of_an_app_that_is_not_installed(driver: InstallDriver, bare: DevPortal) -> None:
    with pytest.raises(NotInstalled):
        driver.open_app(bare, TEST_CLIENT_ID)


# --- delivery failures and the journal -------------------------------------------------------
def free_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/events"


def test_failed_deliveries_are_logged_not_raised_nor_retried(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """events/index.md: "the Bitrix24 queue server will log the failure but will not resend"."""
    installed(dev, driver, bare)
    unreachable = free_port_url()
    bind(dev, bare, "ONAPPINSTALL", unreachable)
    bind(dev, bare, "ONAPPINSTALL", f"{recorder.url}/broken")

    delivered = driver.finish_install(bare, TEST_CLIENT_ID)

    assert delivered == [(unreachable, None), (f"{recorder.url}/broken", 500)]
    assert len(recorder.at("/broken")) == 1
    logged = [e for e in dev.journal if e.get("event") == "ONAPPINSTALL"]
    assert [(e["url"], e["status"]) for e in logged] == delivered
    assert logged[0]["error"]


def test_journal_records_deliveries_without_token_values(
    dev: DevState, driver: InstallDriver, recorder: Recorder, bare: DevPortal
) -> None:
    """Never log AUTH_ID/REFRESH_ID (api-reference/widgets/index.md); tests read the journal."""
    installed(dev, driver, bare)
    bind(dev, bare, "ONAPPINSTALL", f"{recorder.url}/events")
    driver.finish_install(bare, TEST_CLIENT_ID)

    entry = next(e for e in dev.journal if e.get("event") == "ONAPPINSTALL")
    assert entry["url"] == f"{recorder.url}/events"
    assert entry["status"] == 200
    assert entry["portal"] == "alpha"
    form = recorder.at("/events")[0].fields
    secrets = [
        form["auth[access_token]"],
        form["auth[refresh_token]"],
        form["auth[application_token]"],
        recorder.at("/install")[0].fields["AUTH_ID"],
    ]
    journal = repr(dev.journal)
    assert not any(secret in journal for secret in secrets)


# --- the same through /_dev/ -----------------------------------------------------------------
def test_dev_api_drives_install_update_and_uninstall(
    devportal: DevportalServer, dev: DevState, recorder: Recorder, bare: DevPortal
) -> None:
    """The /_dev/ endpoints run the same driver, so other processes can install apps."""
    dev.apps[TEST_CLIENT_ID].handler_url = f"{recorder.url}/events"
    base = f"{devportal.url}/_dev/portals/alpha"

    installing = requests.post(
        f"{base}/install", json={"client_id": TEST_CLIENT_ID, "app_url": recorder.url}, timeout=10
    )
    bind(dev, bare, "ONAPPUPDATE", f"{recorder.url}/events")
    bind(dev, bare, "ONAPPUNINSTALL", f"{recorder.url}/events")
    updating = requests.post(f"{base}/update", json={"client_id": TEST_CLIENT_ID}, timeout=10)
    removing = requests.post(
        f"{base}/uninstall", json={"client_id": TEST_CLIENT_ID, "clean": True}, timeout=10
    )

    assert installing.status_code == 200, installing.text
    assert installing.json() == {
        "installer": {"url": f"{recorder.url}/install", "status": 200},
        "installed": True,
        "events": [{"url": f"{recorder.url}/events", "status": 200}],
    }
    assert updating.json()["version"] == 2
    assert removing.json()["events"] == [{"url": f"{recorder.url}/events", "status": 200}]
    events = [r.fields["event"] for r in recorder.at("/events")]
    assert events == ["ONAPPINSTALL", "ONAPPUPDATE", "ONAPPUNINSTALL"]
    assert recorder.at("/events")[2].fields["data[CLEAN]"] == "1"


def test_dev_api_install_without_finish_then_finish(
    devportal: DevportalServer, dev: DevState, recorder: Recorder, bare: DevPortal
) -> None:
    """`finish: false` stops at the installer page, like an installer that never called
    installFinish(); `/finish-install` is the call itself. app_url defaults to the app's
    registered installer URL."""
    dev.apps[TEST_CLIENT_ID].installer_url = f"{recorder.url}/install"
    dev.apps[TEST_CLIENT_ID].handler_url = f"{recorder.url}/events"
    base = f"{devportal.url}/_dev/portals/alpha"

    opened = requests.post(
        f"{base}/install", json={"client_id": TEST_CLIENT_ID, "finish": False}, timeout=10
    )
    assert opened.json()["installed"] is False
    assert recorder.at("/events") == []
    page = requests.post(
        f"{base}/open-app", json={"client_id": TEST_CLIENT_ID, "user_id": 2}, timeout=10
    )
    assert page.status_code == 409
    assert page.json()["error"] == "not_installed"

    finished = requests.post(
        f"{base}/finish-install", json={"client_id": TEST_CLIENT_ID}, timeout=10
    )

    assert finished.json() == {"events": [{"url": f"{recorder.url}/events", "status": 200}]}
    assert bare.installations[TEST_CLIENT_ID].installed is True
    page = requests.post(f"{base}/open-app", json={"client_id": TEST_CLIENT_ID}, timeout=10)
    assert page.json() == {"url": f"{recorder.url}/app", "status": 200}


def test_dev_api_install_errors(devportal: DevportalServer, dev: DevState, bare: DevPortal) -> None:
    """Unknown portal or app: 404; an app that cannot be reached: 502; not installed: 409."""
    base = f"{devportal.url}/_dev/portals"
    url = free_port_url().removesuffix("/events")

    missing_portal = requests.post(
        f"{base}/nowhere/install", json={"client_id": TEST_CLIENT_ID, "app_url": url}, timeout=10
    )
    missing_app = requests.post(
        f"{base}/alpha/install", json={"client_id": "app.nope", "app_url": url}, timeout=10
    )
    unreachable = requests.post(
        f"{base}/alpha/install", json={"client_id": TEST_CLIENT_ID, "app_url": url}, timeout=10
    )
    dev.apps[TEST_CLIENT_ID].installer_url = None
    no_url = requests.post(f"{base}/alpha/install", json={"client_id": TEST_CLIENT_ID}, timeout=10)
    dev.add_portal("empty")
    not_installed = requests.post(
        f"{base}/empty/update", json={"client_id": TEST_CLIENT_ID}, timeout=10
    )

    assert missing_portal.status_code == 404
    assert missing_app.status_code == 404
    assert unreachable.status_code == 502
    assert unreachable.json()["error"] == "app_unreachable"
    assert no_url.status_code == 400
    assert not_installed.status_code == 409
