"""The database: one engine per app, sessions, and the locking rules of each backend.

SQLite (the zero-set-up default) runs in WAL mode with a busy timeout. Its write transactions
start with `BEGIN IMMEDIATE`, so two processes that both mean to write queue at the start instead
of one failing with "database is locked" half-way through. PostgreSQL uses row locks
(`SELECT … FOR UPDATE`, `SKIP LOCKED` for claiming work).

Use `db.write()` for a transaction that may write and `db.read()` for one that only reads.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    """Engine and session factories for one app."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.engine = _make_engine(url, pool_size=pool_size)
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._write_sessions = sessionmaker(writer, expire_on_commit=False)
        # reentrant: a write opened inside another on one thread meets SQLite's lock as before
        self._writing = threading.RLock() if self.is_sqlite else None

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on error.

        On SQLite, a process's write transactions also queue on one lock before BEGIN
        IMMEDIATE: SQLite's own wait for its write lock is a sleep that grows to 100 ms between
        tries, so threads of one process that contend for it wait far longer than the few
        milliseconds a transaction holds it; on the lock they go as soon as it is free. Only
        other processes then contend in SQLite itself."""
        with self._turn(), self._write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """This thread's turn to write (SQLite; PostgreSQL's row locks need none): waited for
        as long as SQLite itself would wait (its busy timeout), then OperationalError as from
        SQLite ("database is locked")."""
        if self._writing is None:
            yield
            return
        if not self._writing.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise OperationalError(
                "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
            )
        try:
            yield
        finally:
            self._writing.release()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (rolled back at the end)."""
        with self._read_sessions() as session:
            yield session

    def flush_erased(self) -> None:
        """After data was erased on request ("Clear application data"): on SQLite, deleted rows
        are overwritten in the database file (secure_delete, set on connect) but their old pages
        stay in the -wal file until a checkpoint; this checkpoints and truncates it now. On
        PostgreSQL, nothing: dead rows are not visible and autovacuum reclaims them."""
        if not self.is_sqlite:
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def ping(self) -> None:
        """Raise unless the database answers a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url: str, *, pool_size: int) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=10
        )
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when a transaction begins (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA secure_delete=ON")  # erased rows are overwritten, not left
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        # on the driver's connection itself: through SQLAlchemy's execution (context, events,
        # result) this one statement cost ~0.15 ms of every transaction (docs/performance.md)
        conn.connection.driver_connection.execute(f"BEGIN {mode}")

    return engine


def init_app(app: Flask) -> None:
    """Create the app's Database from its settings. Its connection pool lives as long as the
    process (Flask has no app-shutdown hook); whoever ends early calls `dispose`."""
    app.extensions["b24app.db"] = Database(app.config["DATABASE_URL"])


def get_db(app: Flask | None = None) -> Database:
    return (app or current_app).extensions["b24app.db"]
