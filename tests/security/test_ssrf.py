"""Server-side request forgery: which addresses b24app sends requests (and tokens) to.

A portal address comes from the OAuth server's app.info, from a 302 "domain moved", or was stored
long ago and now resolves elsewhere. With B24APP_ALLOW_LOCAL_PORTALS off none of them may make us
connect to loopback, private, link-local or metadata addresses, or use another scheme; and a
PBX's RECORD_URL is handed to Bitrix24, never fetched by us.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
import requests

from b24app.bitrix.client import PortalClient
from b24app.bitrix.errors import BitrixError
from b24app.db import get_db
from b24app.delivery.worker import Worker
from b24app.portals import store
from b24app.wiring import current_store, store_of
from devportal.state import DevState
from devportal.state import install as dev_install
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.security import FINISH, assert_no_crash, bearer, install, stored
from tests.security.conftest import PUBLIC_IP, Network

PRIVATE_PORTALS = [
    "http://portal.example/rest/",  # public, but not https
    "https://127.0.0.1/rest/",
    "https://127.1/rest/",
    "https://2130706433/rest/",  # 127.0.0.1 as one number
    "https://0.0.0.0/rest/",
    "https://10.0.0.5/rest/",
    "https://192.168.1.10:8443/rest/",
    "https://[::1]/rest/",
    "https://[::ffff:127.0.0.1]/rest/",
    "https://[fe80::1]/rest/",
    "https://[64:ff9b::7f00:1]/rest/",  # NAT64 of 127.0.0.1
    "https://[2002:a00:5::1]/rest/",  # 6to4 of 10.0.0.5
    "https://[::127.0.0.1]/rest/",  # IPv4-compatible (deprecated ::/96) 127.0.0.1
    "https://[::a00:5]/rest/",  # IPv4-compatible 10.0.0.5
    "https://169.254.169.254/latest/meta-data/",
    "https://localhost/rest/",
    "https://internal.example/rest/",  # a name that resolves to a private address
    "https://mixed.example/rest/",  # one public and one private address
    "https://user:password@portal.example/rest/",
    "https://portal.example@10.0.0.5/rest/",
    "ftp://portal.example/rest/",
    "file:///etc/passwd",
    "gopher://portal.example:70/_",
    "javascript:alert(1)",
    "//portal.example/rest/",
    "",
    "https://nowhere.invalid/rest/",  # does not resolve
    "https://portal.example:abc/rest/",  # a port that is not a number
    "https://portal.example:99999/rest/",
    "https://" + "a" * 300 + ".example/rest/",  # longer than any DNS name
    "https://portal.example/" + "r" * 600 + "/rest/",  # longer than we can store
]


def pretend_app_info_names(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """The OAuth server's app.info (and the events) report `url` as the portal's client_endpoint."""
    monkeypatch.setattr(DevState, "client_endpoint", lambda self, portal: url)


def private_names(network: Network) -> None:
    network.resolve("internal.example", "10.1.2.3")
    network.resolve("mixed.example", PUBLIC_IP, "127.0.0.1")


@pytest.mark.parametrize("address", PRIVATE_PORTALS)
def test_install_naming_a_non_public_portal_is_refused_before_any_request_to_it(
    hostile: LiveApp, network: Network, monkeypatch: pytest.MonkeyPatch, address: str
):
    private_names(network)
    pretend_app_info_names(monkeypatch, address)
    portal = hostile.dev.add_portal("alpha")

    page = hostile.driver.open_installer(portal, TEST_CLIENT_ID)

    assert_no_crash(page)
    assert page.status_code == 403
    assert "portal address refused" in page.text
    assert stored(hostile, portal.member_id) is None
    assert network.outside() == []


@pytest.mark.parametrize(
    "address", ["https://10.0.0.5/rest/", "https://localhost/rest/", "https://portal.example:x/"]
)
def test_lifecycle_events_naming_a_non_public_portal_are_refused(
    hostile: LiveApp, network: Network, monkeypatch: pytest.MonkeyPatch, address: str
):
    """ONAPPINSTALL with a genuine token, but app.info names a private address: nothing stored."""
    portal = hostile.dev.add_portal("alpha")
    dev_install(hostile.dev, portal, TEST_CLIENT_ID)  # installed; ONAPPINSTALL goes to handler_url
    pretend_app_info_names(monkeypatch, address)

    delivered = hostile.driver.finish_install(portal, TEST_CLIENT_ID)

    assert [status for _, status in delivered] == [403]
    assert stored(hostile, portal.member_id) is None
    assert network.outside() == []


def test_a_public_portal_passes_and_is_where_requests_go(
    hostile: LiveApp, network: Network, monkeypatch: pytest.MonkeyPatch
):
    """The control: the fake network sees the requests to a public portal (user.admin, which
    the installer asks there and which this unreachable portal cannot answer)."""
    pretend_app_info_names(monkeypatch, "https://portal.example/rest/")
    portal = hostile.dev.add_portal("alpha")

    page = hostile.driver.open_installer(portal, TEST_CLIENT_ID)

    assert page.status_code == 403
    assert "did not confirm an administrator (NOT_SENT)" in page.text
    assert network.outside() == [(PUBLIC_IP, 443)]


@pytest.fixture
def public_portal(hostile: LiveApp, network: Network) -> str:
    """A portal stored at https://portal.example/rest/ (installed on the development portal
    with local portals allowed for a moment, then moved there); returns its member_id."""
    strict = hostile.app.config["SETTINGS"]
    installations = store_of(hostile.app)
    lenient = strict.model_copy(update={"allow_local_portals": True})
    hostile.app.config["SETTINGS"] = installations.settings = lenient
    portal = hostile.install("alpha")
    hostile.app.config["SETTINGS"] = installations.settings = strict
    with hostile.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        row.client_endpoint = "https://portal.example/rest/"
    return portal.member_id


@pytest.mark.parametrize(
    "private", ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::1", "::ffff:127.0.0.1"]
)
def test_a_stored_portal_whose_name_now_resolves_privately_is_not_connected_to(
    hostile: LiveApp, network: Network, public_portal: str, private: str
):
    """DNS rebinding: the name passed the check at install time and resolves to `private` now."""
    network.resolve("portal.example", private)

    with hostile.app.app_context(), pytest.raises(BitrixError) as refused:
        current_store().client(public_portal).call("profile")

    assert refused.value.code == "UNSAFE_ADDRESS"
    assert network.outside() == []


def answer_302(monkeypatch: pytest.MonkeyPatch, location: str) -> list[str]:
    """The stored portal answers its first request with 302 to `location`, later ones with a
    result; returns the URLs requested."""
    requested: list[str] = []

    def post(
        self: PortalClient, endpoint: str, method: str, params: Any, token: str, timeout: float
    ) -> Any:
        url = f"{endpoint}{method}.json"
        requested.append(url)
        response = requests.Response()
        response.url = url
        if len(requested) == 1:
            response.status_code = 302
            response.headers["Location"] = location
        else:
            response.status_code = 200
            response._content = b'{"result": {"ID": "1"}}'
        return response

    monkeypatch.setattr(PortalClient, "_post", post)
    return requested


@pytest.mark.parametrize(
    "location",
    [
        "https://10.0.0.5/rest/profile.json",
        "https://169.254.169.254/rest/profile.json",
        "https://localhost/rest/profile.json",
        "https://[::1]/rest/profile.json",
        "https://internal.example/rest/profile.json",
        "http://moved.example/rest/profile.json",  # a downgrade to http
        "https://user:pw@moved.example/rest/profile.json",
        "file:///etc/passwd",
        "https://moved.example/elsewhere",  # not the method we called
        "https://moved.example:bad/rest/profile.json",
    ],
)
def test_a_domain_move_to_a_non_public_address_is_refused(
    hostile: LiveApp,
    network: Network,
    public_portal: str,
    monkeypatch: pytest.MonkeyPatch,
    location: str,
):
    private_names(network)
    network.resolve("moved.example", PUBLIC_IP)
    requested = answer_302(monkeypatch, location)

    with hostile.app.app_context(), pytest.raises(BitrixError) as refused:
        current_store().client(public_portal).call("profile")

    assert refused.value.code == "BAD_REDIRECT"
    assert requested == ["https://portal.example/rest/profile.json"]
    assert stored(hostile, public_portal).client_endpoint == "https://portal.example/rest/"
    assert network.outside() == []


def test_a_domain_move_to_a_public_address_is_followed(
    hostile: LiveApp, network: Network, public_portal: str, monkeypatch: pytest.MonkeyPatch
):
    network.resolve("moved.example", PUBLIC_IP)
    requested = answer_302(monkeypatch, "https://moved.example/rest/profile.json")

    with hostile.app.app_context():
        assert current_store().client(public_portal).result("profile") == {"ID": "1"}

    assert requested[-1] == "https://moved.example/rest/profile.json"
    assert stored(hostile, public_portal).client_endpoint == "https://moved.example/rest/"


class Listener:
    """A TCP port that counts who connects to it (a "recording" or an internal service)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_record_url_to_an_internal_service_is_never_fetched_nor_passed_on(
    live_app: LiveApp, network: Network, monkeypatch: pytest.MonkeyPatch
):
    """RECORD_URL is an address a PBX merely claims. Without B24APP_RECORD_ALLOW_PRIVATE (as in
    production; the tests' local development portal otherwise implies it) b24app refuses to
    download from loopback or link-local addresses: the record event fails with the reason,
    nothing connects, and the URL is never handed to Bitrix24 as finish's deprecated RECORD_URL."""
    from b24app.config import Settings

    monkeypatch.setattr(Settings, "record_private_allowed", property(lambda _self: False))
    network.allow(live_app.url)
    network.allow(live_app.dev.base_url)
    listener = Listener()
    network.reachable.add(("127.0.0.1", listener.port))  # reachable: we would see a fetch
    alpha = install(live_app, "alpha")
    urls = [
        f"http://127.0.0.1:{listener.port}/recording.mp3",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    ]
    ids = []
    for number, url in enumerate(urls):
        body = {
            "PBX_CALL_ID": f"rec-{number}",
            "PHONE_NUMBER": "+15551234567",
            "TYPE": 2,
            "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
            "USER_ID": 1,
            "DURATION": 30,
            "RECORD_URL": url,
        }
        answer = requests.post(
            live_app.url + FINISH, json=body, headers=bearer(alpha.key), timeout=10
        )
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])

    Worker(live_app.app).run(once=True)

    assert len(alpha.portal.statistics) == 2  # the calls themselves are finished
    assert all("RECORD_URL" not in entry["_params"] for entry in alpha.portal.statistics)
    assert alpha.portal.records == {}
    for public_id in ids:
        shown = requests.get(
            f"{live_app.url}/pbx/v1/calls/{public_id}", headers=bearer(alpha.key), timeout=10
        ).json()
        assert shown["recording"]["state"] == "failed", shown
        assert "address" in (shown["recording"]["error"] or "").lower(), shown
    listener.close()
    assert listener.accepted == 0
    assert network.outside() == []
