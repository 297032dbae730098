"""Two workers' claims never wait for each other in a cycle on `portal_throttle` (PostgreSQL).

A claim books the slots of every portal of its round (portals/throttle.book). Found in review:
it locked the schedule rows that existed in portal id order, then inserted and locked a row
that was missing, after rows with higher ids. If that row came into being meanwhile (a
client's `Throttle.reserve` for the intake's route look-up, `block`, another claim) and a
second claim locked it and then waited for a row the first held, PostgreSQL broke the cycle by
failing a claim (DeadlockDetected). Now a claim inserts the missing rows before it locks
anything and locks every row in id order.

The first claim is held right after its first statement on `portal_throttle` (an engine event
that only waits; the statements are the real ones), while a portal's row appears and a second
claim starts, so the interleaving is the same on every run.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.pool import NullPool

from b24app.bitrix.throttle import STANDARD
from b24app.db import get_db
from b24app.delivery import outbox
from b24app.models import Portal, PortalThrottle, utcnow
from b24app.portals.throttle import Throttle
from tests.pbx import make_portal
from tests.stored import add_finish


@pytest.mark.postgresql
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_claims_booking_a_portal_whose_throttle_row_appears_meanwhile_do_not_deadlock(
    app: Flask, database_url: str, request: pytest.FixtureRequest
) -> None:
    make_portal(app, "low")
    make_portal(app, "high")
    with app.app_context():
        db = get_db()
        with db.write() as session:
            ids = {
                row.member_id: row.id
                for row in session.execute(select(Portal.member_id, Portal.id))
            }
            low, high = ids["low"], ids["high"]
            assert low < high
            for pid in (low, high):  # two due calls each: one for each worker
                for n in range(2):
                    add_finish(session, pid, {"CALL_ID": f"c{pid}-{n}", "USER_ID": 2})
            # `high` has its schedule row already; `low` (new) has none yet
            session.add(PortalThrottle(portal_id=high, theoretical_arrival=0.0, blocked_until=0.0))

    first_read = threading.Event()
    go_on = threading.Event()
    first_pid: list[int] = []

    def hold_the_first(connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread().name != "first" or first_read.is_set():
            return
        if "portal_throttle" in statement and ("INSERT" in statement or "FOR UPDATE" in statement):
            first_pid.append(connection.connection.driver_connection.info.backend_pid)
            first_read.set()  # it has taken whatever its first booking statement takes
            go_on.wait(10)

    event.listen(db.engine, "after_cursor_execute", hold_the_first)
    request.addfinalizer(lambda: event.remove(db.engine, "after_cursor_execute", hold_the_first))
    errors: dict[str, BaseException] = {}
    claimed: dict[str, dict[int, list[outbox.Claimed]]] = {}

    def claim(worker: str) -> None:
        try:
            claimed[worker] = outbox.claim_round(
                db,
                worker_id=worker,
                now=utcnow(),
                lease=60,
                max_portals=10,
                max_commands=1,  # one call per claim and portal: the other is the other's
                max_batches=1,
                book=True,
            ).calls
        except BaseException as error:
            errors[worker] = error

    first = threading.Thread(target=claim, args=("first",), name="first")
    first.start()
    assert first_read.wait(10)
    # `low`'s schedule row comes into being now (its first request: the intake's route look-up,
    # a client call, ...): a short transaction of its own (it may have to wait for the first)
    reserving = threading.Thread(target=Throttle(db).reserve, args=(low, STANDARD))
    reserving.start()
    second = threading.Thread(target=claim, args=("second",), name="second")
    second.start()
    admin = create_engine(database_url, poolclass=NullPool)
    try:  # wait until the second claim waits for the first's lock on `high`
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with admin.connect() as connection:
                waiting = connection.execute(
                    text(
                        "select count(*) from pg_stat_activity"
                        " where :pid = any(pg_blocking_pids(pid))"
                    ),
                    {"pid": first_pid[0]},
                ).scalar_one()
            if waiting:
                break
            time.sleep(0.05)
        assert waiting, "the second claim never waited for the first"
    finally:
        admin.dispose()
    go_on.set()
    for thread in (first, second, reserving):
        thread.join(30)
    assert not errors, {worker: repr(error) for worker, error in errors.items()}
    assert {pid for calls in claimed.values() for pid in calls} == {low, high}
