"""The intake's INSERTs run on the driver's cursor (b24app/pbx/prepared.py): the rows they store
are the rows SQLAlchemy's own execution of the same statements stores, column for column; a
column default computed per row cannot be left unset; driver errors come out as SQLAlchemy's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError

from b24app.db import get_db
from b24app.models import Call, CallEvent, Portal
from b24app.pbx import intake
from b24app.pbx.prepared import PreparedInsert
from tests.pbx import make_portal

NOW = datetime(2026, 3, 7, 7, 20, 30, 123456, tzinfo=UTC)
REQUEST = {"PBX_CALL_ID": "p-1", "PHONE_NUMBER": "+15551234567", "USER_ID": 7, "VOTE": 5}


def call_values(portal_id: int, key: str) -> dict[str, Any]:
    return {
        "portal_id": portal_id,
        "key": key,
        "public_id": key.ljust(32, "0")[:32],
        "now": NOW,
        "started_at": NOW,
        "phone_digits": "15551234567",
        "extensions": "\n101\n",
    }


def row_of(session: Any, table: type[Call] | type[CallEvent], row_id: int) -> dict[str, Any]:
    row = session.execute(select(table.__table__).where(table.__table__.c.id == row_id)).one()
    return {k: v for k, v in row._mapping.items() if k not in ("id", "public_id", "call_id")}


def test_the_driver_path_stores_what_sqlalchemy_stores(app: Flask):
    make_portal(app)
    with app.app_context(), get_db().write() as session:
        portal_id = session.scalar(select(Portal.id))
        connection = session.connection()
        call, event = intake._statements(connection.dialect.name)
        prepared_call, prepared_event = intake._prepared(connection)

        by_sqlalchemy = connection.execute(call, call_values(portal_id, "a")).scalar_one()
        by_driver = prepared_call.run(connection, call_values(portal_id, "b"))
        event_values = {"kind": "finish", "dedupe_key": "", "request": REQUEST, "now": NOW}
        event_a = connection.execute(event, {"call_id": by_sqlalchemy, **event_values}).scalar()
        event_b = prepared_event.run(connection, {"call_id": by_driver, **event_values})

        expected, stored = row_of(session, Call, by_sqlalchemy), row_of(session, Call, by_driver)
        assert stored.pop("idempotency_key") == "b" and expected.pop("idempotency_key") == "a"
        assert stored == expected
        assert stored["created_at"] == stored["updated_at"] == stored["started_at"] == NOW
        assert row_of(session, CallEvent, event_b) == row_of(session, CallEvent, event_a)
        assert row_of(session, CallEvent, event_b)["request"] == REQUEST

        assert prepared_call.run(connection, call_values(portal_id, "b")) is None  # ON CONFLICT
        session.execute(delete(Call))


def test_a_default_computed_per_row_must_be_given(app: Flask):
    table = Table(
        "t",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String(10)),
        Column("stamp", String(30), default=lambda: datetime.now(UTC).isoformat()),
        Column("kind", String(10), default="plain"),
    )
    statement = insert(table).values(name=bindparam("name")).returning(table.c.id)
    with app.app_context(), get_db().read() as session:
        dialect = session.connection().dialect
    with pytest.raises(ValueError, match=r"t\.stamp has a default computed per row"):
        PreparedInsert.build(statement, dialect, ["name"])
    given = insert(table).values(name=bindparam("name"), stamp=bindparam("stamp"))
    prepared = PreparedInsert.build(given.returning(table.c.id), dialect, ["name", "stamp"])
    assert prepared.constants == {"kind": "plain"}  # a scalar default is a constant


def test_a_driver_error_comes_out_as_sqlalchemys(app: Flask):
    make_portal(app)
    with app.app_context(), get_db().write() as session:
        connection = session.connection()
        _, prepared_event = intake._prepared(connection)
        values = {"call_id": 999_999, "kind": "finish", "dedupe_key": "", "request": {}}
        with pytest.raises(IntegrityError):  # no such call: the foreign key refuses it
            prepared_event.run(connection, values | {"now": NOW})
