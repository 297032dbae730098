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

gunicorn loads them as `benchmarks.nostore:create_app()` and
`benchmarks.nostore:create_narrow_app()`.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from b24app import create_app as create_b24app
from b24app.db import Database, get_db
from b24app.pbx import intake

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
