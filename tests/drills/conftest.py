"""The drill fixture: a database of each backend, the development portal in this process, and our
app as real gunicorn and worker processes (tests/drills/processes.py) around it.

The development portal runs in the test process (tests/conftest.py's `devportal`): the app's
processes reach it over HTTP like a real Bitrix24, and the drill reads its statistics directly.
An in-process app on the same database (not serving anything) reads our tables and the PBX keys.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from b24app import create_app
from b24app.cli import upgrade_database
from b24app.db import get_db
from b24app.models import Call, Portal
from b24app.portals import pbx_keys, store
from b24app.wiring import current_store
from devportal.install_driver import InstallDriver
from devportal.server import DevportalServer
from devportal.state import DevPortal, DevState
from tests.conftest import TEST_CLIENT_ID, make_settings
from tests.drills.processes import REPO, Fleet, Managed, free_port

ARTIFACTS = REPO / "test-artifacts" / "drills"

# What the drills change from the defaults, and why:
DRILL_SETTINGS: dict[str, object] = {
    "B24APP_LOG_LEVEL": "WARNING",  # thousands of calls: keep the processes' logs readable
    # Every limit stays at its default: the drills' load is what a PBX may send, and no real PBX
    # may meet them (ratelimit.py, tests/drills/test_backlog.py); a drill installs at most 20
    # portals, the installer's limit per address and minute.
}


@dataclass
class Drill:
    """One drill's world. `fleet` holds the processes; `app` reads the shared database."""

    backend: str
    app: Flask
    dev: DevState
    fleet: Fleet
    public_url: str
    driver: InstallDriver
    figures: dict[str, Any] = field(default_factory=dict)

    # --- processes ----------------------------------------------------------------------------
    def start_webs(self, count: int, *, threads: int = 4) -> list[Managed]:
        """`count` single-process gunicorns; the first answers at PUBLIC_URL (events go there)."""
        port = int(self.public_url.rsplit(":", 1)[1])
        return [
            self.fleet.start_web(port if index == 0 else None, threads=threads)
            for index in range(count)
        ]

    @property
    def web_urls(self) -> list[str]:
        return [web.url for web in self.fleet.webs if web.url]

    # --- portals ------------------------------------------------------------------------------
    def install(self, code: str, **options: Any) -> DevPortal:
        """Install the app on a new development portal through the first web process's real
        installer, exactly as Bitrix24 does (tests/conftest.py LiveApp.install)."""
        portal = self.dev.add_portal(code, **options)
        page = self.driver.open_installer(portal, TEST_CLIENT_ID)
        assert page.status_code == 200, page.text[:500]
        delivered = self.driver.finish_install(portal, TEST_CLIENT_ID)
        assert [status for _, status in delivered] == [200], delivered
        return portal

    def pbx_key(self, portal: DevPortal) -> str:
        with self.app.app_context(), get_db().read() as session:
            row = store.find_portal(session, portal.member_id)
            assert row is not None and row.settings is not None
            return pbx_keys.reveal(row.settings, current_store().box)

    # --- our side of the story ----------------------------------------------------------------
    def states(self, portal: DevPortal | None = None) -> Counter[str]:
        """Calls by state (of one portal, or all)."""
        with self.app.app_context(), get_db().read() as session:
            query = select(Call.state, func.count()).group_by(Call.state)
            if portal is not None:
                query = query.join(Portal).where(Portal.member_id == portal.member_id)
            return Counter(dict(session.execute(query).all()))

    def calls(self, portal: DevPortal | None = None) -> list[Call]:
        with self.app.app_context(), get_db().read() as session:
            query = select(Call).order_by(Call.id)
            if portal is not None:
                query = query.join(Portal).where(Portal.member_id == portal.member_id)
            return list(session.scalars(query))

    def wait_settled(self, total: int, *, timeout: float) -> float:
        """Wait until `total` calls are delivered or failed; return the seconds waited."""
        started = time.monotonic()
        while True:
            states = self.states()
            if states["delivered"] + states["failed"] >= total:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"not settled in {timeout}s: {dict(states)}\n{self.fleet.tails()}"
                )
            time.sleep(0.5)

    # --- figures ------------------------------------------------------------------------------
    def report(self, name: str, **figures: Any) -> None:
        """Print the drill's figures (pytest -s shows them) and keep them for CI."""
        self.figures.update(backend=self.backend, **figures)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}-{self.backend}.json"
        path.write_text(json.dumps(self.figures, indent=2, sort_keys=True, default=str) + "\n")
        shown = ", ".join(f"{k}={v}" for k, v in self.figures.items())
        print(f"\nDRILL {name} [{self.backend}]: {shown}")


def backend_of(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgresql"


@pytest.fixture
def drill(database_url: str, tmp_path: Path, devportal: DevportalServer) -> Iterator[Drill]:
    """A drill's world; the test starts the processes it needs (`drill.start_webs`,
    `drill.fleet.start_worker`); every one of them is stopped afterwards, pass or fail."""
    upgrade_database(database_url)
    public_url = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(
        database_url,
        tmp_path,
        PUBLIC_URL=public_url,
        B24_OAUTH_SERVER=devportal.url,
        **DRILL_SETTINGS,
    )
    app = create_app(settings)
    registered = devportal.state.apps[TEST_CLIENT_ID]  # the app card's URLs
    registered.handler_url = f"{public_url}/events"
    registered.redirect_uri = f"{public_url}/oauth/callback"
    fleet = Fleet(process_settings(app), tmp_path / "fleet")
    world = Drill(
        backend=backend_of(database_url),
        app=app,
        dev=devportal.state,
        fleet=fleet,
        public_url=public_url,
        driver=InstallDriver(devportal.state, public_url),
    )
    try:
        yield world
    finally:
        fleet.close()
        get_db(app).dispose()


def process_settings(app: Flask) -> dict[str, str]:
    """The in-process app's settings as the environment variables config.py reads."""
    s = app.config["SETTINGS"]
    values = {
        "B24APP_ENV": s.env,
        "DATABASE_URL": app.config["DATABASE_URL"],
        "SECRET_KEY": s.secret_key,
        "B24_CLIENT_ID": s.client_id,
        "B24_CLIENT_SECRET": s.client_secret,
        "B24_OAUTH_SERVER": s.oauth_server,
        "PUBLIC_URL": s.public_url,
        "B24APP_ENCRYPTION_KEYS": s.encryption_keys,
        "B24APP_ALLOW_LOCAL_PORTALS": "1",
        "B24APP_INSTANCE_PATH": s.instance_path,
        "B24APP_LOG_LEVEL": s.log_level,
        "B24APP_INSTALL_RATE_LIMIT": s.install_rate_limit,
        "B24APP_PBX_RATE_LIMIT": s.pbx_rate_limit,
        "B24APP_PBX_AUTH_FAILURE_LIMIT": s.pbx_auth_failure_limit,
        "B24APP_RATELIMIT_STORAGE_URL": s.ratelimit_storage_url,
        "B24APP_HTTP_TIMEOUT": str(s.http_timeout),
    }
    return {name: str(value) for name, value in values.items() if value is not None}
