"""Each way a request can end (retry.ENDINGS), through the worker, with the in-process fake
portal (tests/delivery/fake.py): what happens to the calls, and that each is finished exactly once
in the end. No HTTP: the transport endings themselves are shown on real sockets in
test_endings.py, and against the development portal in test_failures.py."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from b24app.bitrix.errors import (
    BitrixError,
    Ending,
    RateLimited,
    TransportError,
    UnreadableAnswer,
)
from b24app.db import get_db
from b24app.delivery.batching import STATISTICS
from b24app.delivery.retry import OUTCOME_UNKNOWN, PORTAL_PAUSED
from b24app.models import Call, CallState, PortalHealth
from b24app.portals import store
from tests.delivery.conftest import run_worker
from tests.delivery.fake import FakePortal
from tests.pbx import make_portal
from tests.stored import add_finish


def _calls(app: Flask) -> list[Call]:
    with app.app_context(), get_db().read() as session:
        return list(session.scalars(select(Call).order_by(Call.id)))


def _queue(app: Flask) -> None:
    """Two calls the PBX registered (finish only) and two it did not (register + finish)."""
    make_portal(app, "fake-portal")
    with app.app_context(), get_db().write() as session:
        portal_id = store.find_portal(session, "fake-portal").id  # type: ignore[union-attr]
        for n in range(4):
            request: dict[str, Any] = {"PBX_CALL_ID": f"pbx-{n}", "USER_ID": 1, "DURATION": 5}
            if n < 2:
                request["CALL_ID"] = f"registered.{n}"
            else:
                request.update(PHONE_NUMBER=f"+7495000000{n}", TYPE=2)
            add_finish(session, portal_id, request)


def _run(app: Flask, fake: FakePortal, ahead: float = 0.0) -> Counter[str]:
    return run_worker(app, ahead=ahead, clients=lambda _member_id: fake)


def _paused(app: Flask) -> bool:
    with app.app_context(), get_db().read() as session:
        return bool(
            session.scalars(
                select(PortalHealth).where(PortalHealth.paused_since.is_not(None))
            ).first()
        )


ROWS = [
    # (ending, raised before running, raised after running, code, attempt spent, paused)
    ("not sent", TransportError("x", ending=Ending.NOT_SENT), None, PORTAL_PAUSED, False, True),
    (
        "refused: rate limit",
        RateLimited("QUERY_LIMIT_EXCEEDED", "", time.time() + 86400),
        None,
        "QUERY_LIMIT_EXCEEDED",
        False,
        False,
    ),
    (
        "refused: may have run",
        BitrixError("INTERNAL_SERVER_ERROR", "", 500),
        None,
        OUTCOME_UNKNOWN,
        True,
        False,
    ),
    ("unreadable 200", None, UnreadableAnswer(200, "HTML"), OUTCOME_UNKNOWN, True, False),
    ("unreadable 503", None, UnreadableAnswer(503, "HTML"), OUTCOME_UNKNOWN, False, True),
    (
        "cut off after running",
        None,
        TransportError("x", ending=Ending.CUT_OFF),
        OUTCOME_UNKNOWN,
        False,
        True,
    ),
    (
        "timed out, never ran",
        TransportError("x", ending=Ending.TIMED_OUT),
        None,
        OUTCOME_UNKNOWN,
        False,
        True,
    ),
]


@pytest.mark.parametrize(
    ("name", "before", "after", "code", "spent", "paused"), ROWS, ids=[r[0] for r in ROWS]
)
def test_each_ending_then_recovery_finishes_every_call_exactly_once(
    app: Flask, name: str, before: Any, after: Any, code: str, spent: bool, paused: bool
) -> None:
    _queue(app)
    fake = FakePortal(before=[before], after=[after])

    assert _run(app, fake) == Counter(retrying=4)
    rows = _calls(app)
    assert {row.error_code for row in rows} == {code}
    assert {row.attempts for row in rows} == {1 if spent else 0}
    assert _paused(app) is paused

    totals = _run(app, fake, ahead=2 * 86400)  # backoffs, limits and probes are due
    assert totals == Counter(delivered=4)
    assert [row.state for row in _calls(app)] == [CallState.DELIVERED] * 4
    assert set(fake.finished.values()) == {1} and len(fake.finished) == 4
    looked_up = any(STATISTICS in methods for methods in fake.requests[1:])
    assert looked_up is (code == OUTCOME_UNKNOWN)
    assert fake.probes == (1 if paused else 0)


def test_a_readable_answer_delivers_at_once(app: Flask) -> None:
    _queue(app)
    fake = FakePortal()
    assert _run(app, fake) == Counter(delivered=4)
    assert len(fake.requests) == 1 and fake.probes == 0
