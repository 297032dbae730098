"""db.write_together (GroupCommit): concurrent short writes of one process share a transaction,
each thread learns its own outcome only after the commit, and one work's failure is never
another's. Both databases; a scratch table of the test's own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from b24app.db import Database

WITHIN = 10.0  # seconds any wait here may take at most


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    with database.engine.begin() as conn:
        conn.execute(text("CREATE TABLE group_probe (name VARCHAR(40) PRIMARY KEY)"))
    yield database
    database.dispose()


def commits(db: Database) -> list[int]:
    """A list that grows by one for each commit on `db`'s engine."""
    seen: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: seen.append(1))
    return seen


def stored(db: Database) -> set[str]:
    with db.read() as session:
        return set(session.scalars(text("SELECT name FROM group_probe")))


def insert(name: str) -> Callable[[Session], str]:
    def work(session: Session) -> str:
        session.execute(text("INSERT INTO group_probe (name) VALUES (:n)"), {"n": name})
        return f"stored {name}"

    return work


class Runner:
    """Threads that each run one work through db.write_together, keeping what each got."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.outcomes: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, work: Callable[[Session], Any]) -> None:
        def run() -> None:
            try:
                self.outcomes[name] = self.db.write_together(work)
            except Exception as error:
                self.outcomes[name] = error

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(WITHIN)
            assert not thread.is_alive(), "a write_together never returned"


def queued(db: Database, count: int) -> None:
    """Wait until `count` works wait for the group being written."""
    deadline = time.monotonic() + WITHIN
    while len(db._group._queue) < count:
        assert time.monotonic() < deadline, "the works never queued"
        time.sleep(0.005)


def held_first(db: Database, runner: Runner, name: str) -> threading.Event:
    """Start a first work that holds its transaction open until the returned event is set, so
    the works started meanwhile queue behind it."""
    release = threading.Event()

    def slow(session: Session) -> str:
        result = insert(name)(session)
        assert release.wait(WITHIN)
        return result

    runner.start(name, slow)
    queued(db, 0)
    deadline = time.monotonic() + WITHIN
    while not db._group._leading:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    return release


def test_a_thread_alone_writes_at_once_in_its_own_transaction(db: Database) -> None:
    seen = commits(db)
    assert db.write_together(insert("a")) == "stored a"
    assert len(seen) == 1
    assert stored(db) == {"a"}


def test_works_arriving_while_a_group_is_written_share_one_commit(db: Database) -> None:
    seen = commits(db)
    runner = Runner(db)
    release = held_first(db, runner, "first")
    for n in range(7):
        runner.start(f"w{n}", insert(f"w{n}"))
    queued(db, 7)
    assert not runner.outcomes, "nobody may learn an outcome before its commit"
    release.set()
    runner.join()
    assert runner.outcomes == {
        name: f"stored {name}" for name in ["first"] + [f"w{n}" for n in range(7)]
    }
    assert len(seen) == 2  # the first alone, then the seven together
    assert stored(db) == set(runner.outcomes)


def test_one_works_failure_is_its_own_the_others_are_committed(db: Database) -> None:
    seen = commits(db)
    runner = Runner(db)
    release = held_first(db, runner, "first")
    runner.start("good-1", insert("good-1"))
    runner.start("twice", insert("first"))  # the primary key again: IntegrityError
    runner.start("refused", _raises(ValueError("refused by its own rule")))
    runner.start("good-2", insert("good-2"))
    queued(db, 4)
    release.set()
    runner.join()
    assert runner.outcomes["good-1"] == "stored good-1"
    assert runner.outcomes["good-2"] == "stored good-2"
    assert isinstance(runner.outcomes["twice"], IntegrityError)
    assert isinstance(runner.outcomes["refused"], ValueError)
    assert stored(db) == {"first", "good-1", "good-2"}
    # first alone; the group of four rolled back; then each of the four alone, two committed
    assert len(seen) == 1 + 2


def test_the_write_lock_not_had_in_time_is_every_works_error_without_a_second_try(
    db: Database,
) -> None:
    runs: list[str] = []
    runner = Runner(db)
    release = held_first(db, runner, "first")

    def work(name: str) -> Callable[[Session], str]:
        def run(session: Session) -> str:
            runs.append(name)
            if name == "b":  # what SQLite (or Database._turn) raises after its busy timeout
                raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
            return insert(name)(session)

        return run

    for name in ("a", "b", "c"):
        runner.start(name, work(name))
    queued(db, 3)
    release.set()
    runner.join()
    assert all(isinstance(runner.outcomes[name], OperationalError) for name in "abc")
    assert "b" in runs and len(runs) == len(set(runs))  # the group stopped at b; none ran again
    assert stored(db) == {"first"}


def test_a_group_lost_to_a_deadlock_is_written_again_work_by_work(db: Database) -> None:
    """PostgreSQL ends one of two deadlocked transactions (OperationalError, SQLSTATE 40P01):
    a grouped one holds other threads' works, which must not fail for it."""
    runner = Runner(db)
    release = held_first(db, runner, "first")
    tries: list[str] = []

    def deadlocked_once(session: Session) -> str:
        tries.append("x")
        if len(tries) == 1:
            raise OperationalError("UPDATE calls", {}, Exception("deadlock detected"))
        return insert("x")(session)

    runner.start("x", deadlocked_once)
    runner.start("y", insert("y"))
    queued(db, 2)
    release.set()
    runner.join()
    assert runner.outcomes == {"first": "stored first", "x": "stored x", "y": "stored y"}
    assert stored(db) == {"first", "x", "y"}


def _raises(error: Exception) -> Callable[[Session], str]:
    def work(session: Session) -> str:
        raise error

    return work
