"""What the worker's record writes reads back as it was given, on both databases.

On PostgreSQL the record sends the columns that differ from call to call as arrays (one
`UPDATE … FROM (SELECT unnest …)`, a JSON column as one JSON array: outbox._update_unnested);
on SQLite as an executemany. Either way a call's journal must show Bitrix24's answer, the CALL_ID
and the times exactly: quotes, backslashes, braces and commas in text, JSON null next to an
object, empty lists, non-ASCII text, times with microseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.exc import DataError

from b24app.db import get_db
from b24app.delivery import outbox
from b24app.delivery.lifecycle import Change
from b24app.models import Call, CallEvent, EventState, Portal, utcnow
from tests.pbx import make_portal
from tests.stored import add_call

AWKWARD_TEXT = [
    'externalCall.a"b',
    "back\\slash",
    "{braces},comma",
    "NULL",
    "",
    "Звонок 📞",
    None,
]
AWKWARD_JSON: list[Any] = [
    {"CALL_ID": 'x"y', "nested": {"list": [1, "two", None]}},
    None,
    [],
    {"text": 'Звонок \\ "quoted"'},
    {"n": 1.5, "flag": True},
    "a plain string",
    [3, 1, 2],
]


def _calls(app: Flask, count: int) -> tuple[list[int], list[int]]:
    make_portal(app)
    with app.app_context(), get_db().write() as session:
        portal_id = session.scalars(select(Portal.id)).one()
        calls = [
            add_call(session, portal_id, [("finish", {"CALL_ID": f"c{n}", "USER_ID": 2})])
            for n in range(count)
        ]
        ids = [call.id for call in calls]
        events = [call.events[0].id for call in calls]
    return ids, events


def test_varying_values_read_back_as_given(app: Flask) -> None:
    ids, events = _calls(app, len(AWKWARD_TEXT))
    at = datetime(2026, 11, 30, 6, 7, 8, 123456, tzinfo=UTC)
    calls = [
        {
            "id": call_id,
            "bitrix_call_id": text,
            "result": value,
            "next_attempt_at": at + timedelta(microseconds=n),
            "attempts": n,
            "use_fallback_user": n % 2 == 0,
        }
        for n, (call_id, text, value) in enumerate(
            zip(ids, AWKWARD_TEXT, AWKWARD_JSON, strict=True)
        )
    ]
    answered = zip(events, AWKWARD_JSON, strict=True)
    results = [{"id": event_id, "result": value} for event_id, value in answered]
    with app.app_context(), get_db().write() as session:
        outbox._update_by_id(session, outbox.CALLS, calls)
        outbox._update_by_id(session, outbox.EVENTS, results)
    with app.app_context(), get_db().read() as session:
        stored = {c.id: c for c in session.scalars(select(Call).where(Call.id.in_(ids)))}
        answers = {
            row.id: row.result for row in session.execute(select(CallEvent.id, CallEvent.result))
        }
    for row in calls:
        call = stored[row["id"]]
        assert call.bitrix_call_id == row["bitrix_call_id"]
        assert call.result == row["result"]
        assert call.next_attempt_at == row["next_attempt_at"]
        assert call.attempts == row["attempts"]
        assert call.use_fallback_user is row["use_fallback_user"]
    assert [answers[event_id] for event_id in events] == AWKWARD_JSON


def test_a_varying_update_keeps_its_condition(app: Flask) -> None:
    """Rows the condition excludes (an event no longer queued) keep what they had."""
    _, events = _calls(app, 3)
    with app.app_context(), get_db().write() as session:
        outbox._update_by_id(session, outbox.EVENTS, [{"id": events[1], "state": "delivered"}])
        outbox._update_by_id(
            session,
            outbox.EVENTS,
            [{"id": event_id, "result": {"n": n}} for n, event_id in enumerate(events)],
            outbox.EVENTS.c.state == "queued",
        )
    with app.app_context(), get_db().read() as session:
        answers = {
            row.id: row.result for row in session.execute(select(CallEvent.id, CallEvent.result))
        }
    assert [answers[event_id] for event_id in events] == [{"n": 0}, None, {"n": 2}]


def test_a_delivered_event_loses_its_waiting_note_when_another_event_fails(app: Flask) -> None:
    """Found in review: on SQLite the shared values (the note cleared) went in a second UPDATE
    whose condition (`state = 'queued'`) the first had made false for rows whose state differed
    from the others' (one delivered, one failed): the delivered event kept "Waiting …"."""
    ids, events = _calls(app, 2)
    with app.app_context(), get_db().write() as session:
        session.execute(
            update(CallEvent)
            .where(CallEvent.id == events[0])
            .values(note="Waiting for the call's start.")
        )
    outcomes = {
        ids[0]: outbox.CallOutcome(
            events={events[0]: Change(EventState.DELIVERED, result={"CALL_ID": "c0"})}
        ),
        ids[1]: outbox.CallOutcome(
            events={events[1]: Change(EventState.FAILED, error_code="X", error="refused")}
        ),
    }
    with app.app_context(), get_db().write() as session:
        outbox._write_events(session, outcomes, set(ids), utcnow())
    with app.app_context(), get_db().read() as session:
        rows = {
            row.id: row
            for row in session.execute(
                select(CallEvent.id, CallEvent.state, CallEvent.note).where(
                    CallEvent.id.in_(events)
                )
            )
        }
    assert rows[events[0]].state == EventState.DELIVERED
    assert rows[events[0]].note is None  # delivered: no longer waiting
    assert rows[events[1]].state == EventState.FAILED


def test_a_text_longer_than_its_column_is_never_cut_silently(app: Flask) -> None:
    """Found in review: cast to VARCHAR(64)[], PostgreSQL cut a varying error_code to 64
    characters without a word, where one row's UPDATE was refused. Refused, or kept whole
    (SQLite does not enforce a length): never stored cut."""
    ids, _ = _calls(app, 2)
    long_code = "E" * 70
    rows = [{"id": ids[0], "error_code": long_code}, {"id": ids[1], "error_code": "SHORT"}]
    try:
        with app.app_context(), get_db().write() as session:
            outbox._update_by_id(session, outbox.CALLS, rows)
    except DataError:
        return  # refused as a whole: the calls keep what they had
    with app.app_context(), get_db().read() as session:
        stored = session.scalar(select(Call.error_code).where(Call.id == ids[0]))
    assert stored == long_code
