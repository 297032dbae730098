"""A whole b24app world for a benchmark: a database, the development portal, our app on a port.

Mirrors the test fixtures (tests/conftest.py) without pytest, so benchmarks measure the real
parts: real HTTP, real database (SQLite by default, PostgreSQL with --database-url).
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from flask import Flask
from werkzeug.serving import make_server

from b24app import create_app
from b24app.cli import upgrade_database
from b24app.config import load_settings
from b24app.devportal.install_driver import InstallDriver
from b24app.devportal.server import DevportalServer
from b24app.devportal.state import DevPortal

CLIENT_ID = "app.bench.1"
CLIENT_SECRET = "bench-secret"


@dataclass
class World:
    devportal: DevportalServer
    app: Flask
    url: str
    settings_values: dict[str, Any]
    driver: InstallDriver

    def install(self, code: str, **options: Any) -> DevPortal:
        portal = self.devportal.state.add_portal(code, **options)
        response = self.driver.open_installer(portal, CLIENT_ID)
        if response.status_code != 200:
            raise RuntimeError(f"install failed: {response.status_code} {response.text[:200]}")
        self.driver.finish_install(portal, CLIENT_ID)
        return portal


class _Deferred:
    app: Flask | None = None

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        assert self.app is not None
        return self.app(environ, start_response)


@contextmanager
def world(database_url: str | None = None, **setting_overrides: Any) -> Iterator[World]:
    """Start the development portal and our app; yield them; stop them."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="b24app-bench-") as tmp:
        devportal = DevportalServer().start()
        devportal.state.add_app(CLIENT_ID, CLIENT_SECRET)
        target = _Deferred()
        server = make_server("127.0.0.1", 0, target, threaded=True)
        url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
        values: dict[str, Any] = {
            "B24APP_ENV": "testing",
            "DATABASE_URL": database_url or f"sqlite:///{Path(tmp) / 'bench.sqlite3'}",
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
            yield World(devportal, app, url, values, InstallDriver(devportal.state, url))
        finally:
            server.shutdown()
            server.server_close()
            devportal.stop()
            app.extensions["b24app.db"].dispose()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]
