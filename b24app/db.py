"""The database: one engine per app, sessions, and the locking rules of each backend.

SQLite (the zero-set-up default) runs in WAL mode with a busy timeout. Its write transactions
start with `BEGIN IMMEDIATE`, so two processes that both mean to write queue at the start instead
of one failing with "database is locked" half-way through. PostgreSQL uses row locks
(`SELECT … FOR UPDATE`, `SKIP LOCKED` for claiming work).

Use `db.write()` for a transaction that may write and `db.read()` for one that only reads;
`db.write_together(work)` for a short write that may share its transaction with concurrent ones
(group commit: the PBX intake's, `GroupCommit`).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from flask import Flask, current_app
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, PendingRollbackError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
GROUP_MOST = 32  # works written in one grouped transaction at most (GroupCommit)

T = TypeVar("T")


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
        self._depth = 0  # how deep this process's writing thread is in write() (under _writing)
        self._writers = process_turn(self.url.database) if self.is_sqlite else None
        self._group = GroupCommit(self)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on error.

        On SQLite, write transactions also queue before BEGIN IMMEDIATE: a process's threads on
        one lock, then the processes on an exclusive lock of a file beside the database
        (`flock`). SQLite's own wait for its write lock is a sleep that grows to 100 ms between
        tries, so a writer that met the lock held could sleep far longer than the ~1 ms a
        transaction holds it, and lose again to the holder's next transaction: with two web
        processes, one of them mostly slept (docs/performance.md, Intake). On these locks a
        writer goes as soon as the lock is free."""
        with self._turn(), self._write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """This thread's turn to write (SQLite; PostgreSQL's row locks need none): first among
        this process's threads, then among processes (ProcessTurn), each waited for as long as
        SQLite itself would wait (its busy timeout), then OperationalError as from SQLite
        ("database is locked")."""
        if self._writing is None:
            yield
            return
        if not self._writing.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise OperationalError(
                "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
            )
        try:
            writers = self._writers if self._depth == 0 else None  # the outermost write takes it
            if writers is not None:
                writers.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if writers is not None:
                    writers.release()
        finally:
            self._writing.release()

    def write_together(self, work: Callable[[Session], T]) -> T:
        """`work(session)` in a write transaction, committed before this returns its result,
        possibly together with other threads' works (`GroupCommit`): `work` must touch only the
        database (it may run in another thread, and run again alone if its group fails), and
        raise to roll back. Raises what `work` raised, or the database's error."""
        return self._group.run(work)

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


def _stopped() -> Exception:
    return RuntimeError("the thread writing this group stopped before its commit")


def _connection_lost(error: BaseException) -> bool:
    """A group's failure that running its works again alone would only repeat, slowly: the
    connection lost (invalidated, InterfaceError, PendingRollbackError) or SQLite's write lock
    not had within its busy timeout. Anything else (a deadlock, a constraint, a work's own
    refusal) may be one work's, so its group's works each run again alone."""
    if isinstance(error, InterfaceError | PendingRollbackError):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, OperationalError) and "database is locked" in str(error)


class ProcessTurn:
    """The turn to write among processes (SQLite): an exclusive flock(2) of a file beside the
    database. Held by one thread of a process at a time (Database._turn's lock is taken first).

    Why by hand: flock(2) has no timeout, and the file-lock libraries (filelock, fasteners,
    portalocker) poll with sleeps, which is what SQLite's busy wait does and loses the same way
    to a process that writes again at once (tests/test_sqlite_writers.py: a poll every 1 ms
    still let a busy process hold the turn for 0.4 s). So an uncontended turn is one
    non-blocking flock, and a contended one waits in a blocking flock, in a waiter thread so
    that the wait can end at a deadline: the kernel then hands the lock on as soon as it is
    free. A waiter that gets the lock after its caller gave up lets go of it at once. The file
    is opened per process, never inherited through fork (flock locks belong to the open file,
    so a forked child would share its parent's turn instead of waiting for it)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd: int | None = None
        self._pid = 0
        self._guard = threading.Lock()
        self._got = threading.Event()
        self._wanted = False
        self._waiting = False  # a waiter thread is in its blocking flock

    def acquire(self, timeout: float) -> None:
        """Take the turn within `timeout` seconds, else OperationalError as from SQLite."""
        fd = self._file()
        with self._guard:
            if not self._waiting:  # (with a waiter blocked on this file, only it may lock)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    pass
                self._waiting = True
                threading.Thread(target=self._wait, args=(fd,), daemon=True).start()
            self._wanted = True
        got = self._got.wait(timeout)
        with self._guard:
            got = got or self._got.is_set()
            self._got.clear()
            self._wanted = False
        if not got:
            raise OperationalError(
                "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked")
            )

    def release(self) -> None:
        assert self._fd is not None
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _wait(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with self._guard:
            self._waiting = False
            if self._wanted:
                self._got.set()
            else:  # its caller gave up
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _file(self) -> int:
        if self._pid != os.getpid():
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        assert self._fd is not None
        return self._fd


def process_turn(database: str | None) -> ProcessTurn | None:
    """The ProcessTurn of an SQLite database file (`<file>-writers`), None in memory."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return ProcessTurn(f"{database}-writers")


def insert_for(table: Any, *, sqlite_db: bool) -> postgresql.Insert | sqlite.Insert:
    """`INSERT INTO table` in the backend's own dialect, for its `ON CONFLICT` clauses
    (`on_conflict_do_nothing`, `on_conflict_do_update`: spelled alike for SQLite and
    PostgreSQL)."""
    return sqlite.insert(table) if sqlite_db else postgresql.insert(table)


def database_away(error: BaseException) -> bool:
    """Whether `error` says the database is unreachable or the connection was lost
    (OperationalError, InterfaceError, any DBAPIError that invalidated its connection, or the
    PendingRollbackError a connection lost mid-transaction leaves behind): what was attempted
    did nothing durable, and sending it again later is the cure."""
    if isinstance(error, OperationalError | InterfaceError | PendingRollbackError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


class _Work(Generic[T]):
    """One thread's work for a GroupCommit, and how it ended."""

    __slots__ = ("done", "ended", "error", "lead", "result", "work")

    def __init__(self, work: Callable[[Session], T]) -> None:
        self.work = work
        self.done = threading.Event()
        self.lead = False  # handed the lead: this work's thread writes the next group
        self.ended = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def end(self, result: T | None = None, *, error: BaseException | None = None) -> None:
        self.result, self.error, self.ended = result, error, True

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit:
    """Short write transactions of one process's threads, committed together.

    Why: a transaction costs its own BEGIN, COMMIT, session and pool checkout (on PostgreSQL a
    ping and a WAL flush) whatever it writes; for the PBX intake that was about half of what
    accepting a call costs beyond any request (docs/performance.md, Intake). SQLAlchemy and the
    drivers have no group commit of separate callers' transactions, hence this class.

    How (leader and followers): a thread queues its work; if nobody is writing, it leads: it
    takes the queue (at most GROUP_MOST works, its own first), runs them in one write
    transaction and commits, and hands the lead to the first work still queued, whose thread
    writes the next group. A thread alone writes alone, at once: grouping only gathers works
    that arrive while a transaction is being written, so no work waits for company. Every work
    learns its own result only after the commit. When a group fails for one work's reason (a
    refusal it raised, a constraint, a deadlock with another group), the group is rolled back
    and each of its works runs again alone, so one work's failure is never another's; when the
    connection was lost or the write lock not had in time (`_connection_lost`), each gets that
    error without a second try.
    """

    def __init__(self, db: Database, most: int = GROUP_MOST) -> None:
        self._db = db
        self._most = most
        self._mutex = threading.Lock()
        self._queue: list[_Work[Any]] = []
        self._leading = False

    def run(self, work: Callable[[Session], T]) -> T:
        mine = _Work(work)
        with self._mutex:
            self._queue.append(mine)
            lead = not self._leading
            self._leading = True
        if not lead:
            mine.done.wait()
            if not mine.lead:
                return mine.outcome()
        self._lead()
        return mine.outcome()

    def _lead(self) -> None:
        with self._mutex:
            group, self._queue = self._queue[: self._most], self._queue[self._most :]
        try:
            self._write(group)
        except BaseException:  # this thread is stopping: nobody may wait for ever
            for item in group:
                if not item.ended:  # nothing was committed: the caller may send it again
                    item.end(error=OperationalError("COMMIT", None, _stopped()))
            raise
        finally:
            with self._mutex:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].done.set()
                else:
                    self._leading = False
            for item in group:
                item.done.set()

    def _write(self, group: list[_Work[Any]]) -> None:
        try:
            with self._db.write() as session:
                results = [item.work(session) for item in group]
        except Exception as error:
            if len(group) == 1 or _connection_lost(error):
                for item in group:
                    item.end(error=error)
            else:
                for item in group:
                    self._alone(item)
            return
        for item, result in zip(group, results, strict=True):
            item.end(result)

    def _alone(self, item: _Work[Any]) -> None:
        try:
            with self._db.write() as session:
                result = item.work(session)
        except Exception as error:
            item.end(error=error)
        else:
            item.end(result)


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
