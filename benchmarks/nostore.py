"""Other stores for `benchmarks.intake --store …`: b24app whose PBX intake does NOT store the
call as b24app does. Measuring instruments of that benchmark only, never served anywhere else:
they show what accepting a call costs apart from its store, in the same run as the real one.

- `none` (`create_app`): the intake answers `202` without storing anything: the cost of the
  body, validation, the key, the limiters, the log line, the metric and the answer.
- `narrow` (`create_narrow_app`): the intake writes one narrow row per event into a table of
  its own (`bench_inbox`: id, portal_id, key, kind, request, created_at; one unique index),
  by one INSERT … ON CONFLICT DO NOTHING RETURNING on the driver's cursor, through b24app's
  own write path (db.write_together: group commit, session, COMMIT): about the least a
  durable intake could write per call on that path.
- `raw` (`create_raw_app`): b24app's own two rows of a new call (the call's and the event's,
  the very INSERTs and values of pbx/intake.py), but below SQLAlchemy: one transaction on
  the thread's own driver connection (opened once, so no pool checkout and no ping per call),
  no session, no Connection, no engine events, no group commit. A call that exists already
  goes b24app's own way. What b24app's store would cost with a write path of its own below
  SQLAlchemy (docs/performance.md, Intake, fifth pass).

gunicorn loads them as `benchmarks.nostore:create_app()`,
`benchmarks.nostore:create_narrow_app()` and `benchmarks.nostore:create_raw_app()`.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError

from b24app import create_app as create_b24app
from b24app.db import Database, get_db
from b24app.delivery import call_index
from b24app.pbx import intake
from b24app.pbx.prepared import PreparedInsert
from b24app.portals.settings import zone

INBOX = (
    "CREATE TABLE IF NOT EXISTS bench_inbox (id {id} PRIMARY KEY, portal_id INTEGER NOT NULL, "
    "key TEXT NOT NULL, kind TEXT NOT NULL, request TEXT NOT NULL, created_at TEXT NOT NULL, "
    "UNIQUE (portal_id, key, kind))"
)

_INSERT = "INSERT INTO bench_inbox (portal_id, key, kind, request, created_at) VALUES ({}) "
_INSERT += "ON CONFLICT DO NOTHING RETURNING id"
INSERT_SQLITE = _INSERT.format("?, ?, ?, ?, ?")  # the drivers' own placeholders
INSERT_POSTGRESQL = _INSERT.format("%s, %s, %s, %s, %s")


def _answer_without_storing(db: Any, portal: Any, event: Any, after: Any) -> intake.Result:
    return intake.Result(intake.Code.ACCEPTED, call={"id": "not-stored", "state": "queued"})


def _store_narrow(db: Database, portal: Any, event: Any, after: Any) -> intake.Result:
    sql = INSERT_SQLITE if db.is_sqlite else INSERT_POSTGRESQL
    values = (
        portal.portal_id,
        event.key,
        str(event.kind),
        json.dumps(event.request),
        intake.utcnow().isoformat(),
    )

    def work(session: Any) -> Any:
        cursor = session.connection().connection.driver_connection.cursor()
        try:
            cursor.execute(sql, values)
            return cursor.fetchone()
        finally:
            cursor.close()

    db.write_together(work)
    return intake.Result(intake.Code.ACCEPTED, call={"id": "narrow", "state": "queued"})


def create_app() -> Flask:
    intake._store = _answer_without_storing
    return create_b24app()


def create_narrow_app() -> Flask:
    app = create_b24app()
    with app.app_context():
        db = get_db()
        kind = "INTEGER" if db.is_sqlite else "BIGSERIAL"
        try:
            with db.engine.begin() as conn:
                conn.execute(text(INBOX.format(id=kind)))
        except DBAPIError:  # another gunicorn process created it at the same moment
            pass
    intake._store = _store_narrow
    return app


_STORE = intake._store  # b24app's own, for what the raw store leaves to it
_DRIVER = threading.local()  # this thread's own driver connection (raw store)
_PREPARED: dict[str, tuple[PreparedInsert, PreparedInsert]] = {}  # by dialect name


def _store_raw(db: Database, portal: Any, event: Any, after: Any) -> intake.Result:
    if after is not None:  # a finish with RECORD_URL: b24app's own way
        return _STORE(db, portal, event, after)
    now = intake.utcnow()
    facts = call_index.facts_of(event.kind, event.request, zone(portal.timezone))
    public_id = intake.new_public_id()
    call = {"portal_id": portal.portal_id, "key": event.key, "public_id": public_id, "now": now}
    with db._turn():  # SQLite: the same turns as b24app's writes (db.Database.write)
        driver = _driver(db)
        call_insert, event_insert = _prepared(db)
        try:
            if db.is_sqlite:
                driver.execute("BEGIN IMMEDIATE")
            call_id = _run(driver, call_insert, call | call_index.first_values(facts, now))
            if call_id is not None:
                values = {"call_id": call_id, "kind": event.kind.value, "now": now}
                values |= {"dedupe_key": event.dedupe_key, "request": event.request}
                _run(driver, event_insert, values)
                driver.commit()
            else:
                driver.rollback()
        except db.engine.dialect.loaded_dbapi.Error as error:
            driver.rollback()
            raise OperationalError("raw store", None, error) from error  # a 503, as b24app's
    if call_id is None:  # a later event of a known call: b24app's own way, outside the turn
        return _STORE(db, portal, event, after)
    return intake.Result(intake.Code.ACCEPTED, call={"id": public_id, "state": "queued"})


def _driver(db: Database) -> Any:
    """This thread's driver connection, opened once through the engine's pool (so with its
    connect-time settings: SQLite's WAL, busy timeout …) and kept: no checkout, no ping, per
    call. A benchmark's threads live as long as the server; nothing gives it back."""
    pooled = getattr(_DRIVER, "pooled", None)
    if pooled is None:  # kept referenced: a dropped checkout goes back to the pool
        pooled = _DRIVER.pooled = db.engine.raw_connection()
    return pooled.driver_connection


def _prepared(db: Database) -> tuple[PreparedInsert, PreparedInsert]:
    """b24app's own two INSERTs (pbx/intake._statements), compiled once for this database."""
    dialect = db.engine.dialect
    prepared = _PREPARED.get(dialect.name)
    if prepared is None:
        call, event = intake._statements(dialect.name)
        prepared = (
            PreparedInsert.build(call, dialect, intake._CALL_VALUES),
            PreparedInsert.build(event, dialect, intake._EVENT_VALUES),
        )
        _PREPARED[dialect.name] = prepared
    return prepared


def _run(driver: Any, insert: PreparedInsert, values: dict[str, Any]) -> Any:
    """PreparedInsert.run without SQLAlchemy's Connection: the driver's cursor itself."""
    cursor = driver.cursor()
    try:
        cursor.execute(insert.sql, insert.arguments(values))
        row = cursor.fetchone()
    finally:
        cursor.close()
    return None if row is None else row[0]


def create_raw_app() -> Flask:
    intake._store = _store_raw
    return create_b24app()
