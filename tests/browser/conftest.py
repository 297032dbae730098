"""Browser tests: Python Playwright driving Debian's chromium (never a downloaded browser).

`browser` is one headless chromium for the session; `page` a fresh context and page per test.
`shell_app` is our app served live against the development portal, registered there with its
real installer and app URLs and loading the development portal's BX24.js stand-in, so the
shell at `/p/<code>/` can install and open it in an iframe from another origin.
`screenshot(page, state)` keeps `test-artifacts/screenshots/<test-name>[-<state>].png`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import TEST_CLIENT_ID, LiveApp

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
TIMEOUT_MS = 15_000  # for one step; a whole install in the shell takes about a second

Screenshot = Callable[..., Path]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def shell_app(live_app: LiveApp) -> LiveApp:
    """`live_app` as the development portal's shell needs it: the app card's installer and app
    URLs point at the live app, and its pages include the devportal's /bx24.js."""
    registered = live_app.dev.apps[TEST_CLIENT_ID]
    registered.installer_url = f"{live_app.url}/install"
    registered.app_url = f"{live_app.url}/app"
    settings = live_app.app.config["SETTINGS"]
    live_app.app.config["SETTINGS"] = settings.model_copy(
        update={"bx24_script_url": f"{live_app.dev.base_url}/bx24.js"}
    )
    return live_app


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Screenshot:
    """Save a full-page screenshot named after the test (and the state shown, if several)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")

    def save(page: Page, state: str = "") -> Path:
        """The whole page: the window made as tall as the page for the picture, then as it was.
        (Not Playwright's full_page, which stretches the frames' own viewports while it takes
        the picture: a page that fits its iframe to its content would grow with them.)"""
        path = SCREENSHOTS / (f"{test_name}-{state}.png" if state else f"{test_name}.png")
        size = page.viewport_size
        assert size is not None
        height = page.evaluate("() => document.documentElement.scrollHeight")
        scrolled = page.evaluate("() => scrollY")
        page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
        page.screenshot(path=str(path))
        page.set_viewport_size(size)
        page.evaluate("y => scrollTo(0, y)", scrolled)
        return path

    return save
