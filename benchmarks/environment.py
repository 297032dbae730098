"""A whole b24app world for a benchmark: a database, the development portal, our app on a port.

Mirrors the test fixtures (tests/conftest.py) without pytest, so benchmarks measure the real
parts: real HTTP, real database (SQLite by default, PostgreSQL with --database-url).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import create_engine, text, update
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from b24app import create_app
from b24app.cli import upgrade_database
from b24app.config import load_settings
from b24app.db import get_db
from b24app.models import PortalThrottle
from b24app.portals import pbx_keys, store
from b24app.wiring import current_store
from devportal.install_driver import InstallDriver
from devportal.server import DevportalServer
from devportal.state import DevPortal

CLIENT_ID = "app.bench.1"
CLIENT_SECRET = "bench-secret"


@dataclass(frozen=True)
class Served:
    """One request the development portal served, timed on its side (its added latency too)."""

    path: str
    started: float  # time.time()
    seconds: float


class ServedTimes:
    """WSGI middleware around the development portal: how long it spent on each request, so a
    benchmark can tell the portal's time from ours."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.served: list[Served] = []
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        started, clock = time.time(), time.perf_counter()
        body = list(self.app(environ, start_response))
        with self.lock:
            self.served.append(
                Served(environ.get("PATH_INFO", ""), started, time.perf_counter() - clock)
            )
        return body

    def since(self, started: float, path_suffix: str = "") -> list[Served]:
        with self.lock:
            return [s for s in self.served if s.started >= started and s.path.endswith(path_suffix)]


@dataclass
class World:
    devportal: DevportalServer
    app: Flask
    url: str
    settings_values: dict[str, Any]
    driver: InstallDriver
    portal_times: ServedTimes

    def install(self, code: str, **options: Any) -> DevPortal:
        portal = self.devportal.state.add_portal(code, **options)
        response = self.driver.open_installer(portal, CLIENT_ID)
        if response.status_code != 200:
            raise RuntimeError(f"install failed: {response.status_code} {response.text[:200]}")
        self.driver.finish_install(portal, CLIENT_ID)
        return portal

    def portal_id(self, portal: DevPortal) -> int:
        with self.app.app_context(), get_db().read() as session:
            row = store.find_portal(session, portal.member_id)
            assert row is not None, f"{portal.code} is not installed"
            return row.id

    def pbx_key(self, portal: DevPortal) -> str:
        """The portal's PBX key, as its admin copies it from the settings page."""
        with self.app.app_context(), get_db().read() as session:
            row = store.find_portal(session, portal.member_id)
            assert row is not None and row.settings is not None
            return pbx_keys.reveal(row.settings, current_store().box)

    def quiet_spell(self, *portals: DevPortal) -> None:
        """Empty buckets, as after a quiet spell: these portals' on the devportal, and our
        throttle's schedule (every portal's). Benchmarks call it right before their clock
        starts, so set-up requests do not count."""
        with self.devportal.state.lock:
            for portal in portals:
                portal.bucket.level = 0.0
                portal.bucket.updated = self.devportal.state.now()
        with self.app.app_context(), get_db().write() as session:
            session.execute(update(PortalThrottle).values(theoretical_arrival=0.0))


class _Deferred:
    app: Flask | None = None

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        assert self.app is not None
        return self.app(environ, start_response)


@contextmanager
def world(database_url: str | None = None, **setting_overrides: Any) -> Iterator[World]:
    """Start the development portal and our app; yield them; stop them."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with (
        tempfile.TemporaryDirectory(prefix="b24app-bench-") as tmp,
        private_database(database_url, Path(tmp)) as url_of_run,
    ):
        devportal = DevportalServer()
        # The server takes no middleware: wrap the WSGI app it serves before it starts.
        portal_times = ServedTimes(devportal._server.app)
        devportal._server.app = portal_times
        devportal.start()
        devportal.state.add_app(CLIENT_ID, CLIENT_SECRET)
        target = _Deferred()
        server = make_server("127.0.0.1", 0, target, threaded=True)
        url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
        values: dict[str, Any] = {
            "B24APP_ENV": "testing",
            "DATABASE_URL": url_of_run,
            "SECRET_KEY": "bench",
            "B24_CLIENT_ID": CLIENT_ID,
            "B24_CLIENT_SECRET": CLIENT_SECRET,
            "PUBLIC_URL": url,
            "B24_OAUTH_SERVER": devportal.url,
            "B24APP_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "B24APP_ALLOW_LOCAL_PORTALS": True,
            "B24APP_INSTANCE_PATH": str(Path(tmp) / "instance"),
            "B24APP_LOG_LEVEL": "WARNING",
            **setting_overrides,
        }
        upgrade_database(values["DATABASE_URL"])
        app = create_app(load_settings(_env_file=None, **values))
        target.app = app
        devportal.state.apps[CLIENT_ID].handler_url = f"{url}/events"
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield World(
                devportal, app, url, values, InstallDriver(devportal.state, url), portal_times
            )
        finally:
            server.shutdown()
            server.server_close()
            devportal.stop()
            app.extensions["b24app.db"].dispose()


@contextmanager
def private_database(database_url: str | None, folder: Path) -> Iterator[str]:
    """A database for one run: a fresh SQLite file (or the SQLite URL given), or a private
    schema of the PostgreSQL database, dropped afterwards, so runs never see each other's calls
    nor the tests' tables."""
    if not database_url or make_url(database_url).get_backend_name() == "sqlite":
        yield database_url or f"sqlite:///{folder / 'bench.sqlite3'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]
