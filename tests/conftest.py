"""Shared fixtures: a real database (SQLite always, PostgreSQL when TEST_DATABASE_URL is set),
an app built on it with migrations applied, and the development portal on a real port."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from werkzeug.serving import make_server

from b24app import create_app
from b24app.cli import upgrade_database
from b24app.config import Settings, load_settings
from devportal.install_driver import InstallDriver
from devportal.server import DevportalServer
from devportal.state import DevPortal, DevState

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_CLIENT_ID = "app.test.1"
TEST_CLIENT_SECRET = "test-client-secret"

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


@pytest.fixture(autouse=True)
def _collect_what_a_worker_froze() -> Iterator[None]:
    """`worker` run in this process (the CLI runner) freezes the heap as a worker process does
    (b24app/heap.py); after the test, what it froze is collectable again, so no test's
    leftovers outlive the next collection."""
    yield
    gc.unfreeze()


# pytest-xdist lanes (`make test` runs `-n 4 --dist loadgroup`): the drills in three lanes, each
# lane one worker running its drills one after another, beside the ordinary tests of the fourth
# worker (which the others join when their lane is done). The drills mostly wait (the backlog ~2
# minutes per backend on Bitrix24's rate, an outage up to ~80 s on its faults and RUNNING_LIMIT),
# so three side by side leave the cores to the ordinary tests; two drills of one kind never run
# at once (two backlogs' intakes, two outages' timeouts would compete for the same moments).
# Measured here: a ≈ 4.5 minutes, b ≈ 4, c ≈ 3. A drill file not named here goes to "c".
DRILL_LANES = {
    "test_backlog.py": "drills-a",
    "test_portal_outage.py": "drills-b",
    "test_tokens_revoked.py": "drills-b",
    "test_workers_killed.py": "drills-c",
    "test_slow_clients.py": "drills-c",
}


def drill_lane(nodeid: str) -> str | None:
    """The lane of a test under tests/drills/ (DRILL_LANES), None for any other test."""
    folder, _, file = nodeid.partition("::")[0].rpartition("/")
    return DRILL_LANES.get(file, "drills-c") if folder == "tests/drills" else None


class DrillLanes:
    """A pytest-xdist plugin: with `--dist loadgroup`, each drill lane is one unit of work (one
    worker, in order) and every other test a unit of its own. pytest-xdist's own grouping (the
    `xdist_group` mark) puts the group in the node id, which pytest 9.2's node ids no longer
    take (pytest-dev/pytest-xdist#1386), so the lanes are given to its scheduler directly, the
    way its own loadfile scheduler groups: by `_split_scope`."""

    @staticmethod
    def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "loadgroup":
            return None
        from xdist.scheduler import LoadScopeScheduling

        class Lanes(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return drill_lane(nodeid) or nodeid

        return Lanes(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TEST_DATABASE_URL:
        return
    skip = pytest.mark.skip(reason="TEST_DATABASE_URL not set (make test on CI sets it)")
    for item in items:
        if "postgresql" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgresql: runs against TEST_DATABASE_URL")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(DrillLanes(), "b24app-drill-lanes")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database of each backend for one test, already migrated to the newest revision:
    a copy of the session's migrated template (`migrated_sqlite`, `migrated_postgres`), so
    `upgrade_database` on it has nothing left to do. No two tests, or parallel runs, share one."""
    if request.param == "sqlite":
        path = tmp_path / "test.sqlite3"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        yield f"sqlite:///{path}"
        return
    template: PostgresTemplate = request.getfixturevalue("migrated_postgres")
    yield from template.fresh_schema()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated once per session (per pytest-xdist worker): each test's copy."""
    path = tmp_path_factory.mktemp("template") / "migrated.sqlite3"
    upgrade_database(f"sqlite:///{path}")  # its engine is disposed: the file is whole
    return path


@pytest.fixture(scope="session")
def migrated_postgres() -> Iterator[PostgresTemplate]:
    """A schema of TEST_DATABASE_URL migrated once per session (per pytest-xdist worker)."""
    template = PostgresTemplate(TEST_DATABASE_URL or "")
    try:
        yield template
    finally:
        template.drop()


class PostgresTemplate:
    """A private schema migrated once, and per test a new private schema made from it.

    The copy is the template's own `pg_dump` (the tables, indexes, constraints and
    sequences the migrations made, plus `alembic_version`'s row) replayed under the new schema's
    name: about 0.05 s here against 0.2 s for running the migrations again, and 0.3-0.7 s for
    `CREATE DATABASE … TEMPLATE` (PostgreSQL 15, measured on this 2-core machine). pg_dump is
    the tool PostgreSQL keeps for copying a schema; writing the copy by hand from the catalogs
    would mean redoing its work (foreign keys, sequences owned by columns, defaults).
    Without pg_dump on PATH every test's schema is migrated instead (slower, the same result).
    Each schema is private (`t_` + 12 random hex digits), so parallel runs never meet.
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.admin = create_engine(base_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self.name = self._create_schema()
        upgrade_database(self.url(self.name))
        self.script = self._dump() if shutil.which("pg_dump") else None

    def url(self, schema: str) -> str:
        """TEST_DATABASE_URL with `schema` as the connections' search_path."""
        url = make_url(self.base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    def fresh_schema(self) -> Iterator[str]:
        """The URL of a new schema like the template, dropped after the test."""
        if self.script is None:
            schema = self._create_schema()
            upgrade_database(self.url(schema))
        else:
            schema = _private_name()
            self._execute(
                self.script.replace(f"{self.name}.", f"{schema}.").replace(
                    f"CREATE SCHEMA {self.name};", f"CREATE SCHEMA {schema};"
                )
            )
        try:
            yield self.url(schema)
        finally:
            self._execute(f'DROP SCHEMA "{schema}" CASCADE')

    def drop(self) -> None:
        self._execute(f'DROP SCHEMA "{self.name}" CASCADE')
        self.admin.dispose()

    def _create_schema(self) -> str:
        schema = _private_name()
        self._execute(f'CREATE SCHEMA "{schema}"')
        return schema

    def _dump(self) -> str:
        """The template as SQL: every name qualified by the template's schema (pg_dump sets an
        empty search_path), psql's meta-commands (`\\restrict`) and comments left out."""
        url = make_url(self.base_url)
        command = ["pg_dump", "--schema", self.name, "--no-owner", "--no-privileges", "--inserts"]
        command += ["--host", url.host or "127.0.0.1", "--port", str(url.port or 5432)]
        command += ["--username", url.username or "postgres", "--dbname", url.database or ""]
        env = {**os.environ, "PGPASSWORD": url.password or ""}
        dump = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        lines = dump.stdout.splitlines()
        return "\n".join(line for line in lines if not line.startswith(("--", "\\")))

    def _execute(self, sql: str) -> None:
        """Run `sql` (one statement or a script) as it is: no parameters, no `%` escaping."""
        connection = self.admin.raw_connection()
        try:
            connection.cursor().execute(sql)
            connection.commit()
        finally:
            connection.close()


def _private_name() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


def make_settings(database_url: str, tmp_path, **overrides: object) -> Settings:  # type: ignore[no-untyped-def]
    values: dict[str, object] = {
        "B24APP_ENV": "testing",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key",
        "B24_CLIENT_ID": TEST_CLIENT_ID,
        "B24_CLIENT_SECRET": TEST_CLIENT_SECRET,
        "PUBLIC_URL": "http://127.0.0.1:5000",
        "B24APP_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "B24APP_ALLOW_LOCAL_PORTALS": True,
        "B24APP_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    values.update(overrides)
    return load_settings(_env_file=None, **values)


@pytest.fixture
def app(database_url: str, tmp_path) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    """The app on a migrated database."""
    application = create_app(make_settings(database_url, tmp_path))
    yield application
    application.extensions["b24app.db"].dispose()


@pytest.fixture
def client(app: Flask):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture(scope="session")
def devportal_server() -> Iterator[DevportalServer]:
    server = DevportalServer().start()
    yield server
    server.stop()


@pytest.fixture
def devportal(devportal_server: DevportalServer) -> DevportalServer:
    """The development portal on a real port, with a fresh world for each test.

    It knows our test application (TEST_CLIENT_ID) but has no portals yet.
    """
    fresh = DevState()
    fresh.base_url = devportal_server.url
    fresh.add_app(TEST_CLIENT_ID, TEST_CLIENT_SECRET)
    devportal_server.state = fresh
    devportal_server.app.extensions["devportal.state"] = fresh
    return devportal_server


@pytest.fixture
def dev(devportal: DevportalServer) -> DevState:
    """Shortcut to the fresh development-portal state."""
    return devportal.state


class _Deferred:
    """A WSGI app whose target is set after the server knows its port (PUBLIC_URL needs it)."""

    app: Flask | None = None

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        assert self.app is not None
        return self.app(environ, start_response)


@dataclass
class LiveApp:
    """Our app on a real port, configured against the development portal."""

    app: Flask
    url: str
    driver: InstallDriver
    dev: DevState

    def install(self, code: str = "alpha", **portal_options: object) -> DevPortal:
        """Install the app on a new development portal exactly as Bitrix24 does."""
        portal = self.dev.add_portal(code, **portal_options)  # type: ignore[arg-type]
        response = self.driver.open_installer(portal, TEST_CLIENT_ID)
        assert response.status_code == 200, response.text
        self.driver.finish_install(portal, TEST_CLIENT_ID)
        return portal


@pytest.fixture
def live_app(database_url: str, tmp_path, devportal: DevportalServer) -> Iterator[LiveApp]:  # type: ignore[no-untyped-def]
    """Our app served by a threaded server, PUBLIC_URL its own address, OAuth at the devportal."""
    target = _Deferred()
    server = make_server("127.0.0.1", 0, target, threaded=True)
    url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
    application = create_app(
        make_settings(database_url, tmp_path, PUBLIC_URL=url, B24_OAUTH_SERVER=devportal.url)
    )
    target.app = application
    registered = devportal.state.apps[TEST_CLIENT_ID]  # the app card's URLs
    registered.handler_url = f"{url}/events"
    registered.redirect_uri = f"{url}/oauth/callback"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield LiveApp(application, url, InstallDriver(devportal.state, url), devportal.state)
    server.shutdown()
    server.server_close()
    application.extensions["b24app.db"].dispose()


def _known_secrets(item: pytest.Item) -> set[str]:
    """Every token the development portal issued during this test, and our app's secrets."""
    state: DevState | None = None
    for name in ("dev", "devportal", "live_app"):
        value = item.funcargs.get(name) if hasattr(item, "funcargs") else None
        if value is not None:
            state = value if isinstance(value, DevState) else getattr(value, "dev", None)
            state = state or getattr(value, "state", None)
            break
    if state is None:
        return set()
    found = set(state.access_tokens) | set(state.refresh_tokens) | set(state.auth_codes)
    for portal in state.portals.values():
        found |= {i.application_token for i in portal.installations.values()}
    found |= {app.client_secret for app in state.apps.values()}
    return {s for s in found if len(s) >= 12}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Fail any test whose own output (our JSON logs on stderr/stdout) contains a token."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or report.failed:
        return
    output = "".join(text for name, text in report.sections if "stderr" in name or "stdout" in name)
    leaked = [s[:6] + "…" for s in _known_secrets(item) if s in output]
    if leaked:
        report.outcome = "failed"
        report.longrepr = f"secrets appeared in the logs: {leaked}"
