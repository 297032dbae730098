"""Retention: finished calls are kept B24APP_CALL_RETENTION_DAYS and no longer (issue 10 item 7);
work not yet done (queued, delivering) is never purged, whatever its age."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import insert, select, update

from b24app.config import ConfigError
from b24app.db import get_db
from b24app.models import Call, CallState, Origination, Portal, utcnow
from b24app.retention import CHUNK, purge_finished_calls, purge_finished_originations
from tests.conftest import make_settings
from tests.pbx import make_portal

DAY = timedelta(days=1)


def add_calls(app: Flask, member_id: str, state: CallState, age: timedelta, count: int) -> None:
    """`count` calls of `state`, received, changed and (if delivered) delivered `age` ago."""
    when = utcnow() - age
    with app.app_context(), get_db().write() as session:
        portal_id = session.scalar(select(Portal.id).where(Portal.member_id == member_id))
        rows = [
            {
                "public_id": f"{member_id[:8]}{state}{age.days}x{n}",
                "portal_id": portal_id,
                "idempotency_key": f"{state}-{age.days}-{n}",
                "request": {"PHONE_NUMBER": "+15551234567", "DURATION": 5},
                "state": state,
                "next_attempt_at": when,
                "created_at": when,
                "updated_at": when,
                "delivered_at": when if state == CallState.DELIVERED else None,
            }
            for n in range(count)
        ]
        session.execute(insert(Call), rows)


def left(app: Flask) -> dict[tuple[str, int], int]:
    """Calls left, counted by (state, age in days)."""
    now = utcnow()
    with app.app_context(), get_db().read() as session:
        rows = session.execute(select(Call.state, Call.created_at)).all()
    counts: dict[tuple[str, int], int] = {}
    for state, created in rows:
        key = (state, round((now - created) / DAY))
        counts[key] = counts.get(key, 0) + 1
    return counts


def purge(app: Flask, now: datetime | None = None) -> int:
    settings = app.config["SETTINGS"]
    with app.app_context():
        return purge_finished_calls(get_db(), now or utcnow(), settings.call_retention)


def test_finished_calls_past_retention_go_in_chunks_and_nothing_else_does(app: Flask) -> None:
    member_id = "m" * 32
    make_portal(app, member_id)
    old = 91 * DAY  # the default retention is 90 days
    add_calls(app, member_id, CallState.DELIVERED, old, 2 * CHUNK + 7)  # three chunks
    add_calls(app, member_id, CallState.FAILED, old, 3)
    add_calls(app, member_id, CallState.QUEUED, old, 2)  # waiting for an admin, say
    add_calls(app, member_id, CallState.DELIVERING, old, 1)
    add_calls(app, member_id, CallState.DELIVERED, 89 * DAY, 4)
    add_calls(app, member_id, CallState.FAILED, 89 * DAY, 5)

    assert purge(app) == 2 * CHUNK + 7 + 3

    assert left(app) == {
        (CallState.QUEUED, 91): 2,
        (CallState.DELIVERING, 91): 1,
        (CallState.DELIVERED, 89): 4,
        (CallState.FAILED, 89): 5,
    }
    assert purge(app) == 0


def test_a_call_sent_again_recently_is_kept(app: Flask) -> None:
    """ "Deliver again" puts an old failed call back in the outbox and touches it: it is not old
    any more, even once it has failed again."""
    member_id = "r" * 32
    make_portal(app, member_id)
    add_calls(app, member_id, CallState.FAILED, 200 * DAY, 2)
    with app.app_context(), get_db().write() as session:
        session.execute(
            update(Call).where(Call.idempotency_key == "failed-200-0").values(updated_at=utcnow())
        )

    assert purge(app) == 1
    assert left(app) == {(CallState.FAILED, 200): 1}


def test_the_cli_purges_with_the_configured_retention(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from b24app import create_app
    from b24app.cli import upgrade_database

    upgrade_database(database_url)
    app = create_app(make_settings(database_url, tmp_path, B24APP_CALL_RETENTION_DAYS=7))
    member_id = "c" * 32
    make_portal(app, member_id)
    add_calls(app, member_id, CallState.DELIVERED, 8 * DAY, 3)
    add_calls(app, member_id, CallState.DELIVERED, 6 * DAY, 1)

    result = app.test_cli_runner().invoke(args=["calls", "purge"])

    assert result.exit_code == 0, result.output
    assert "purged 3 finished calls and 0 requests to the PBX older than 7 days" in result.output
    assert left(app) == {(CallState.DELIVERED, 6): 1}
    app.extensions["b24app.db"].dispose()


@pytest.mark.parametrize("value", ["0", "-1", "ninety", "3651"])
def test_a_bad_retention_is_named(tmp_path, value: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as raised:
        make_settings("sqlite://", tmp_path, B24APP_CALL_RETENTION_DAYS=value)
    assert "B24APP_CALL_RETENTION_DAYS" in str(raised.value)


def test_the_default_retention_is_90_days(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert make_settings("sqlite://", tmp_path).call_retention == 90 * DAY


def test_a_retention_that_is_not_positive_is_refused(app: Flask) -> None:
    with app.app_context(), pytest.raises(ValueError, match="retention must be positive"):
        purge_finished_calls(get_db(), utcnow(), timedelta(0))


def test_requests_to_the_pbx_go_by_the_same_period_once_done(app: Flask) -> None:
    member_id = "d" * 32
    make_portal(app, member_id)
    now = utcnow()
    with app.app_context(), get_db().write() as session:
        portal_id = session.scalar(select(Portal.id).where(Portal.member_id == member_id))
        for n, (state, days) in enumerate(
            [("delivered", 8), ("failed", 8), ("queued", 8), ("delivered", 6)]
        ):
            when = now - days * DAY
            session.add(
                Origination(
                    portal_id=portal_id,
                    kind="call.start",
                    dedupe_key=f"externalCall.{n}",
                    webhook_id=f"msg_{n}",
                    payload={"PHONE_NUMBER": "+15551234567"},
                    state=state,
                    next_attempt_at=when,
                    give_up_at=when,
                    created_at=when,
                )
            )
    with app.app_context():
        assert purge_finished_originations(get_db(), now, 7 * DAY) == 2
        with get_db().read() as session:
            kept = session.execute(select(Origination.state, Origination.dedupe_key)).all()
    assert sorted(kept) == [("delivered", "externalCall.3"), ("queued", "externalCall.2")]
