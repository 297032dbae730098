"""The development portal's shell in chromium: installing and opening apps in a cross-origin
iframe, and the BX24.js stand-in answering through postMessage (devportal/shell.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask, Response, request
from playwright.sync_api import Frame, Locator, Page, Request
from werkzeug.serving import make_server

from b24app.db import get_db
from b24app.models import PortalStatus
from b24app.portals import store
from devportal.server import DevportalServer
from devportal.state import DevState, install
from tests.browser.conftest import Screenshot
from tests.conftest import TEST_CLIENT_ID, LiveApp


def card_button(page: Page, client_id: str) -> Locator:
    return page.locator(f'article[data-client-id="{client_id}"] button')


def app_frame(page: Page, frame_page: str) -> Frame:
    """The app's iframe once the shell opened `frame_page` ("install" or "app") and it loaded."""
    page.wait_for_function(
        "p => window.bx24Shell.frame && window.bx24Shell.frame.page === p", arg=frame_page
    )
    frame = page.wait_for_selector(f'iframe.app-frame[data-page="{frame_page}"]').content_frame()
    assert frame is not None
    frame.wait_for_load_state()
    return frame


def form_of(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.post_data or "").items()}


def query_of(request: Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}


# --- our app, its real installer -------------------------------------------------------------
def test_installing_in_the_shell_runs_our_installer_and_then_posts_the_app_page(
    shell_app: LiveApp, page: Page, screenshot: Screenshot
):
    dev = shell_app.dev
    portal = dev.add_portal("alpha")
    statuses: dict[str, int] = {}
    page.on("response", lambda r: statuses.setdefault(urlsplit(r.url).path, r.status))
    page.goto(f"{dev.base_url}/p/alpha/")
    screenshot(page, "market")

    with page.expect_request(lambda r: r.url.startswith(f"{shell_app.url}/app")) as opened:
        card_button(page, TEST_CLIENT_ID).click()
    request = opened.value

    assert statuses["/install"] == 200  # our installer answered inside the iframe
    (event,) = dev.entries(event="ONAPPINSTALL")
    assert (event["url"], event["status"]) == (f"{shell_app.url}/events", 200)
    assert portal.installations[TEST_CLIENT_ID].installed
    with shell_app.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None and row.status == PortalStatus.ACTIVE
    # The app page reached our app as Bitrix24 sends it: a POST with a fresh token pair.
    assert request.method == "POST" and request.frame.parent_frame == page.main_frame
    form = form_of(request)
    assert form["member_id"] == portal.member_id and form["PLACEMENT"] == "DEFAULT"
    assert dev.access_tokens[form["AUTH_ID"]].user_id == 1
    assert query_of(request)["LANG"] == "en" and query_of(request)["DOMAIN"] == portal.domain
    assert [e["frame"] for e in dev.entries(via="shell")] == ["install", "app"]
    assert request.response() is not None  # whatever the page is, our app answered it
    app_frame(page, "app")
    screenshot(page, "app")


# --- the stand-in, against an app page the test controls -------------------------------------
FAKE_APP = "app.fake.1"


class Site:
    """A tiny app on its own port (so its own origin) whose every page includes the devportal's
    bx24.js, or answers `body` when given; every request it gets is kept."""

    def __init__(self, devportal_url: str, body: str | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.body = body or (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"<script src='{devportal_url}/bx24.js'></script></head>"
            "<body><h1>Fake app</h1><div style='height:1500px'></div>"
            "<script>BX24.init(function () { window.ready = true; });</script></body></html>"
        )
        app = Flask(__name__)
        app.add_url_rule("/<path:name>", "page", self.page, methods=["GET", "POST"])
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.socket.getsockname()[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def page(self, name: str) -> Response:
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": request.args.to_dict(),
                "form": request.form.to_dict(),
            }
        )
        return Response(self.body, mimetype="text/html")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake(devportal: DevportalServer) -> Iterator[Site]:
    """A second app registered on the development portal, with portal "alpha" to install it on."""
    site = Site(devportal.url)
    devportal.state.add_app(
        FAKE_APP, "fake-secret", installer_url=f"{site.url}/install", app_url=f"{site.url}/app"
    )
    devportal.state.add_portal("alpha")
    yield site
    site.stop()


def installed(dev: DevState, client_id: str) -> None:
    installation, _, _ = install(dev, dev.portals["alpha"], client_id)
    installation.installed = True


STAND_IN_TOUR = """() => new Promise((resolve) => {
  const out = {auth: BX24.getAuth(), admin: BX24.isAdmin(), lang: BX24.getLang(),
               domain: BX24.getDomain()};
  BX24.callMethod('user.current', {}, (r) => {
    out.user = r.data(); out.userError = r.error();
    BX24.callMethod('no.such.method', {}, (bad) => {
      out.bad = String(bad.error()); out.badStatus = bad.error().getStatus();
      BX24.callMethod('user.get', {}, (users) => {
        out.total = users.total(); out.more = users.more();
        BX24.resizeWindow(640, 480, (size) => {
          out.size = size;
          BX24.setTitle('Fake app settings');
          BX24.refreshAuth((auth) => { out.refreshed = auth; resolve(out); });
        });
      });
    });
  });
})"""


def test_bx24_stand_in_answers_the_installer_and_install_finish_opens_the_app(
    devportal: DevportalServer, fake: Site, page: Page, screenshot: Screenshot
):
    dev = devportal.state
    portal = dev.portals["alpha"]
    page.goto(f"{dev.base_url}/p/alpha/?lang=ru")
    card_button(page, FAKE_APP).click()
    installer = app_frame(page, "install")
    installer.wait_for_function("window.ready === true")

    seen = installer.evaluate(STAND_IN_TOUR)

    first = fake.requests[0]
    assert (first["method"], first["path"], first["query"]["LANG"]) == ("POST", "/install", "ru")
    assert seen["auth"]["access_token"] == first["form"]["AUTH_ID"]
    assert seen["auth"]["member_id"] == portal.member_id
    assert seen["auth"]["expires_in"] > page.evaluate("Date.now()")  # a moment, in ms
    assert (seen["admin"], seen["lang"], seen["domain"]) == (True, "ru", portal.domain)
    assert seen["user"]["ID"] == "1" and seen["userError"] is False
    assert "ERROR_METHOD_NOT_FOUND" in seen["bad"] and seen["badStatus"] == 404
    assert (seen["total"], seen["more"]) == (len(portal.users), False)
    assert seen["size"] == {"width": 640, "height": 480}
    box = page.locator("iframe.app-frame").bounding_box()
    assert box is not None and (box["width"], box["height"]) == (640, 480)
    assert page.inner_text("#page-title") == "Fake app settings"
    refreshed = seen["refreshed"]
    assert refreshed["access_token"] != seen["auth"]["access_token"]
    assert dev.refresh_tokens[first["form"]["REFRESH_ID"]].used
    assert dev.access_tokens[refreshed["access_token"]].user_id == 1
    screenshot(page, "installer")

    installer.evaluate("BX24.installFinish()")
    app = app_frame(page, "app")
    app.wait_for_function("window.ready === true")
    assert portal.installations[FAKE_APP].installed
    last = fake.requests[-1]
    assert (last["method"], last["path"]) == ("POST", "/app")
    assert last["form"]["AUTH_ID"] != first["form"]["AUTH_ID"]  # a fresh pair for the page
    app.evaluate("new Promise((done) => BX24.fitWindow(done))")
    box = page.locator("iframe.app-frame").bounding_box()
    assert box is not None and box["height"] >= 1500  # fitted to the page's content
    screenshot(page, "app")


def test_a_non_admin_opens_the_app_as_themself_but_cannot_install(
    devportal: DevportalServer, fake: Site, page: Page, screenshot: Screenshot
):
    dev = devportal.state
    installed(dev, FAKE_APP)
    dev.add_app("app.other.1", "other-secret", installer_url=f"{fake.url}/install")
    page.goto(f"{dev.base_url}/p/alpha/?as_user=2")

    card_button(page, "app.other.1").click()
    page.wait_for_function(
        "document.getElementById('notice').textContent.includes('administrator')"
    )
    screenshot(page, "refused")
    assert "app.other.1" not in dev.portals["alpha"].installations

    card_button(page, FAKE_APP).click()
    frame = app_frame(page, "app")
    frame.wait_for_function("window.ready === true")
    seen = frame.evaluate(
        "() => new Promise((done) => BX24.callMethod('user.admin', {}, (r) => done("
        "{admin: BX24.isAdmin(), userAdmin: r.data(), token: BX24.getAuth().access_token})))"
    )
    assert seen["admin"] is False and seen["userAdmin"] is False
    assert dev.access_tokens[seen["token"]].user_id == 2
    screenshot(page, "app")


EVIL_PAGE = """<!doctype html><script>
  const sid = new URLSearchParams(location.search).get('sid');
  parent.postMessage({bx24: 1, sid: sid, id: 1, command: 'setTitle',
                      params: {title: 'hijacked'}}, '*');
</script>"""


def test_the_shell_ignores_messages_from_any_origin_but_the_apps(
    devportal: DevportalServer, fake: Site, page: Page, screenshot: Screenshot
):
    dev = devportal.state
    installed(dev, FAKE_APP)
    evil = Site(dev.base_url, body=EVIL_PAGE)  # another origin: it knows the APP_SID, even
    try:
        page.goto(f"{dev.base_url}/p/alpha/marketplace/app/{FAKE_APP}/")
        frame = app_frame(page, "app")
        frame.wait_for_function("window.ready === true")
        sid = page.evaluate("window.bx24Shell.frame.sid")

        page.evaluate(
            "src => { const f = document.createElement('iframe'); f.src = src;"
            " document.body.append(f); }",
            f"{evil.url}/evil?sid={sid}",
        )
        page.wait_for_function(
            "o => window.bx24Shell.ignored.some((i) => i.origin === o && i.reason === 'origin')",
            arg=evil.url,
        )
    finally:
        evil.stop()
    assert page.inner_text("#page-title") == FAKE_APP

    # The same message from the app's own frame is obeyed; with another APP_SID it is not.
    post = (
        "([sid, title]) => parent.postMessage({bx24: 1, sid: sid, id: 9, command: 'setTitle',"
        " params: {title: title}}, '*')"
    )
    frame.evaluate(post, ["not-this-frame", "stale"])
    page.wait_for_function("window.bx24Shell.ignored.some((i) => i.reason === 'message')")
    frame.evaluate(post, [sid, "Set by the app"])
    page.wait_for_function("document.getElementById('page-title').textContent === 'Set by the app'")
    handled = page.evaluate("window.bx24Shell.handled.map((h) => [h.command, h.origin])")
    assert ["setTitle", fake.url] in handled
    assert all(origin == fake.url for _, origin in handled)
    screenshot(page)


# --- the shell's own refusals, without a browser -----------------------------------------------
def test_the_shell_refuses_what_bitrix24_refuses(devportal: DevportalServer, fake: Site):
    dev = devportal.state
    shell = f"{dev.base_url}/p/alpha/shell"

    def post(path: str, **body: object) -> requests.Response:
        return requests.post(f"{shell}/{path}", json={"client_id": FAKE_APP, **body}, timeout=5)

    refused = post("frames", action="install", user_id=2)
    assert (refused.status_code, refused.json()["error"]) == (403, "admin_only")
    assert FAKE_APP not in dev.portals["alpha"].installations
    assert post("frames", action="install", user_id=1).json()["frame"]["page"] == "install"
    # Until installFinish(): an employee is told to ask the admin, the admin gets the installer.
    assert post("frames", action="open", user_id=2).status_code == 409
    assert post("frames", action="open", user_id=1).json()["frame"]["page"] == "install"
    assert post("install-finish", user_id=2).status_code == 403
    assert not dev.portals["alpha"].installations[FAKE_APP].installed

    frame = post("install-finish", user_id=1, lang="ru").json()["frame"]
    assert frame["page"] == "app" and frame["url"] == f"{fake.url}/app"
    assert frame["query"]["LANG"] == "ru" and frame["origin"] == fake.url
    spent = frame["form"]["REFRESH_ID"]
    assert post("refresh", refresh_token=spent).status_code == 200
    assert post("refresh", refresh_token=spent).json()["error"] == "invalid_grant"

    script = requests.get(f"{dev.base_url}/bx24.js", timeout=5)
    assert script.ok and script.headers["Content-Type"].startswith("text/javascript")
    assert requests.get(f"{dev.base_url}/p/nowhere/", timeout=5).status_code == 404
