"""SQLite, several processes: a process's writes take turns with another's busy writes instead
of starving (db.Database._turn: processes queue on a file lock beside the database, and go as
soon as it is free, where SQLite's own busy wait sleeps up to 100 ms between tries and loses to
a writer that writes again at once: two web processes, one of them mostly asleep)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from b24app.db import Database, ProcessTurn

HOG_HOLDS = 0.005  # seconds each of its transactions holds the write lock
WRITES = 50
WITHIN = 1.0  # seconds for our WRITES (each waits for one of the other's transactions at most)


def _hog(url: str, started: multiprocessing.synchronize.Event) -> None:
    """Write back to back until killed, as a busy web process does."""
    db = Database(url)
    started.set()
    while True:
        with db.write() as session:
            session.execute(text("INSERT INTO turns (who) VALUES ('other')"))
            time.sleep(HOG_HOLDS)


def test_a_process_writes_in_turn_while_another_writes_back_to_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'turns.sqlite3'}"
    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE turns (who VARCHAR(10))"))
    spawn = multiprocessing.get_context("spawn")
    started = spawn.Event()
    other = spawn.Process(target=_hog, args=(url, started))
    other.start()
    try:
        assert started.wait(30)
        time.sleep(0.2)  # it is writing
        began = time.monotonic()
        for _ in range(WRITES):
            with db.write() as session:
                session.execute(text("INSERT INTO turns (who) VALUES ('me')"))
        took = time.monotonic() - began
    finally:
        other.kill()
        other.join()
        db.dispose()
    with Database(url).read() as session:
        counts = dict(session.execute(text("SELECT who, count(*) FROM turns GROUP BY who")).all())
    assert counts["me"] == WRITES
    assert counts["other"] > 0
    assert took < WITHIN, f"{WRITES} writes took {took:.2f} s beside a busy writer"


def _hold(path: str, held: multiprocessing.synchronize.Event, seconds: float) -> None:
    turn = ProcessTurn(path)
    turn.acquire(timeout=5)
    held.set()
    time.sleep(seconds)
    turn.release()


def test_a_turn_not_had_in_time_is_database_is_locked_and_the_next_one_is_had(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "db.sqlite3-writers")
    spawn = multiprocessing.get_context("spawn")
    held = spawn.Event()
    other = spawn.Process(target=_hold, args=(path, held, 1.5))
    other.start()
    assert held.wait(30)
    turn = ProcessTurn(path)
    began = time.monotonic()
    with pytest.raises(OperationalError, match="database is locked"):
        turn.acquire(timeout=0.3)
    assert 0.3 <= time.monotonic() - began < 1.4  # given up at its deadline, not at the release
    other.join(30)
    turn.acquire(timeout=5)  # the waiter that got it after the deadline let go of it
    turn.release()


def test_a_forked_process_waits_for_its_parents_turn(tmp_path: Path) -> None:
    """flock(2) locks belong to the open file: a child sharing its parent's would share its turn."""
    turn = ProcessTurn(str(tmp_path / "db.sqlite3-writers"))
    turn.acquire(timeout=5)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        try:
            turn.acquire(timeout=0.3)
            os.write(writer, b"shared")
        except OperationalError:
            os.write(writer, b"waited")
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    turn.release()
    assert os.read(reader, 10) == b"waited"
