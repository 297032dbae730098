"""Header injection: nothing a request or a portal address carries can add a header or a
directive to our answers (Location, Content-Security-Policy, Content-Disposition), and the Host
header cannot redirect where Bitrix24 sends our events."""

from __future__ import annotations

import pytest
import requests

from devportal.state import DevPortal, DevState
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.security import FINISH, assert_no_crash, bearer, install, stored
from tests.settings_page.conftest import open_page

INJECTED = "X-Injected"


def app_info_names(monkeypatch: pytest.MonkeyPatch, *, host: str = "", path: str = "") -> None:
    """app.info reports the development portal's address with `host` appended to its host and
    port, and `path` to its path."""

    def endpoint(self: DevState, portal: DevPortal) -> str:
        return f"{self.base_url}{host}/p/{portal.code}/rest/{path}"

    monkeypatch.setattr(DevState, "client_endpoint", endpoint)


def assert_no_injection(answer: requests.Response) -> None:
    assert INJECTED not in answer.headers and "Set-Cookie" not in answer.headers
    for value in answer.headers.values():
        assert "\r" not in value and "\n" not in value


@pytest.mark.parametrize(
    "where, text",
    [
        ("host", f"\r\n{INJECTED}: 1"),
        ("host", "\nSet-Cookie: session=stolen"),
        ("host", " https://evil.example"),  # a second frame ancestor
        ("host", ";script-src 'unsafe-inline'"),
        ("host", ",evil.example"),
        ("host", "'; frame-ancestors *"),
        ("path", f"\r\n{INJECTED}: 1"),
        ("path", f"%0d%0a{INJECTED}:%201"),  # stays text: percent-encoding is no line break
        ("path", '"><script>alert(1)</script>'),
    ],
)
def test_a_portal_address_cannot_add_headers_or_csp_directives(
    live_app: LiveApp, monkeypatch: pytest.MonkeyPatch, where: str, text: str
):
    """Even in development (local portals allowed), where no DNS check stands in the way."""
    app_info_names(monkeypatch, **{where: text})
    portal = live_app.dev.add_portal("alpha")

    page = live_app.driver.open_installer(portal, TEST_CLIENT_ID)

    assert_no_crash(page)
    assert_no_injection(page)
    if page.status_code == 200:  # accepted only as harmless text inside the path
        csp = page.headers["Content-Security-Policy"]
        assert csp == f"frame-ancestors 'self' {live_app.dev.base_url}"
    else:  # refused as an address, or (percent-encoded) not a portal that answers
        assert page.status_code == 403
        assert stored(live_app, portal.member_id) is None


def test_the_settings_page_is_framed_by_the_portals_origin_only(live_app: LiveApp):
    alpha = install(live_app, "alpha")
    page = open_page(live_app, alpha.portal)
    directives = [d.strip() for d in page.response.headers["Content-Security-Policy"].split(";")]
    ancestors = [d for d in directives if d.startswith("frame-ancestors")]
    assert ancestors == [f"frame-ancestors 'self' {live_app.dev.base_url}"]


def test_a_pbx_call_id_cannot_reach_the_location_header(live_app: LiveApp):
    alpha = install(live_app, "alpha")
    body = {"CALL_ID": "x", "PBX_CALL_ID": f"1\r\n{INJECTED}: 1", "USER_ID": 1, "DURATION": 5}
    refused = requests.post(live_app.url + FINISH, json=body, headers=bearer(alpha.key), timeout=10)
    assert refused.status_code == 422
    assert_no_injection(refused)

    body["PBX_CALL_ID"] = "../../../app?x=1 y"
    accepted = requests.post(
        live_app.url + FINISH, json=body, headers=bearer(alpha.key), timeout=10
    )
    assert accepted.status_code == 202
    assert accepted.headers["Location"] == f"/pbx/v1/calls/{accepted.json()['id']}"


@pytest.mark.parametrize(
    "member_id", [f"x\r\n{INJECTED}: 1", "%0d%0aX-Injected:%201", "\x00", "a" * 5000]
)
def test_oauth_start_with_a_hostile_member_id_redirects_nowhere(live_app: LiveApp, member_id):
    install(live_app, "alpha")
    answer = requests.get(
        f"{live_app.url}/oauth/start",
        params={"member_id": member_id},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 404
    assert "Location" not in answer.headers
    assert_no_injection(answer)


def test_oauth_start_redirects_to_the_stored_portal_only(live_app: LiveApp):
    alpha = install(live_app, "alpha")
    answer = requests.get(
        f"{live_app.url}/oauth/start",
        params={"member_id": alpha.member_id, "redirect_uri": "https://evil.example/"},
        headers={"Host": "evil.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302
    portal_base = live_app.dev.client_endpoint(alpha.portal).removesuffix("rest/")
    assert answer.headers["Location"].startswith(f"{portal_base}oauth/authorize/?")
    assert "evil.example" not in answer.headers["Location"]


def test_the_host_header_does_not_choose_where_events_go(live_app: LiveApp):
    """The handler we bind is PUBLIC_URL's, whatever Host the installer request named."""
    portal = live_app.dev.add_portal("alpha")
    original = requests.post

    def with_hostile_host(url, *args, **kwargs):  # type: ignore[no-untyped-def]
        if url.startswith(live_app.url):
            kwargs["headers"] = {**(kwargs.get("headers") or {}), "Host": "evil.example"}
        return original(url, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(requests, "post", with_hostile_host)
        assert live_app.driver.open_installer(portal, TEST_CLIENT_ID).status_code == 200
    handlers = {e["handler"] for e in portal.installations[TEST_CLIENT_ID].events}
    assert handlers == {f"{live_app.url}/events"}


def test_the_csv_export_has_a_fixed_file_name_and_no_formulas(live_app: LiveApp):
    """Content-Disposition never carries data; a cell that a spreadsheet would run as a formula
    (=, +, -, @ first) cannot be stored as an extension, by hand or from a profile."""
    alpha = install(live_app, "alpha")
    alpha.portal.users[2].extension = '=HYPERLINK("https://evil.example")'
    alpha.portal.users[3].extension = "@SUM(A1)"
    page = open_page(live_app, alpha.portal)
    for extension in ["=1+2", "@cmd", "101\r\n=1", '101";x="1']:
        assert page.post("/mapping", {"extension": extension, "user_id": 1}).status_code == 422
    assert page.post("/mapping/from-profiles").status_code == 200

    exported = page.get("/mapping/export")

    assert exported.headers["Content-Disposition"] == "attachment; filename=extensions.csv"
    assert exported.headers["X-Content-Type-Options"] == "nosniff"
    cells = [cell for line in exported.text.splitlines()[1:] for cell in line.split(",")]
    assert cells and not any(cell.startswith(("=", "@", "\t", "\r")) for cell in cells)
