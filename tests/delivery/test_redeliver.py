"""Failed calls delivered again in bulk, each at most once (issue 9 item 3): outbox.requeue and
`flask --app b24app calls redeliver`. Calls come in through the real PBX intake, go out through
the real worker at its default settings to the development portal; SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import select, update

from b24app.db import get_db
from b24app.delivery import outbox
from b24app.delivery.retry import OUTCOME_UNKNOWN
from b24app.delivery.worker import Worker
from b24app.models import Call, CallEvent, CallState, Portal, utcnow
from devportal.state import DevPortal
from tests.conftest import LiveApp
from tests.settings_page.conftest import send_call


def deliver(live: LiveApp) -> Counter[str]:
    """`worker --once` at the default retry policy."""
    return Worker(live.app, idle_sleep=0.05).run(once=True)


def accepted(live: LiveApp, portal: DevPortal, pbx_call_id: str, **fields: Any) -> str:
    body = {
        "PBX_CALL_ID": pbx_call_id,
        "PHONE_NUMBER": "+74951234567",
        "TYPE": 2,
        "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
        "DURATION": 30,
        "STATUS_CODE": "ANSWER",
        "USER_ID": 1,
        **fields,
    }
    answer = send_call(live, portal, **body)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def rejected_user(live: LiveApp, portal: DevPortal, pbx_call_id: str) -> str:
    """A call Bitrix24 refuses (nobody has extension 555, no fallback): it fails for real."""
    return accepted(live, portal, pbx_call_id, USER_ID=None, USER_PHONE_INNER="555")


def rows(live: LiveApp) -> dict[str, Call]:
    with live.app.app_context(), get_db().read() as session:
        found = session.scalars(select(Call)).all()
        session.expunge_all()
        return {row.public_id: row for row in found}


def states(live: LiveApp) -> dict[str, str]:
    return {public_id: row.state for public_id, row in rows(live).items()}


def force(live: LiveApp, public_id: str, **values: Any) -> None:
    """Put a stored call in a state the delivery leaves behind (issue 9's wrong records); a
    call forced to `failed` has its finish failed too, with the same error."""
    with live.app.app_context(), get_db().write() as session:
        session.execute(update(Call).where(Call.public_id == public_id).values(**values))
        if values.get("state") == "failed":
            call_id = select(Call.id).where(Call.public_id == public_id).scalar_subquery()
            session.execute(
                update(CallEvent)
                .where(CallEvent.call_id == call_id, CallEvent.kind == "finish")
                .values(state="failed", error_code=values.get("error_code"))
            )


def requeue(live: LiveApp, **filters: Any) -> list[str]:
    filters.setdefault("portal_id", None)
    with live.app.app_context(), get_db().write() as session:
        return outbox.requeue(session, now=utcnow(), **filters)


def in_statistics(portal: DevPortal, pbx_call_id: str) -> int:
    return [r["EXTERNAL_CALL_ID"] for r in portal.statistics].count(pbx_call_id)


def cli(live: LiveApp, *args: str) -> Result:
    return live.app.test_cli_runner().invoke(args=["calls", "redeliver", *args])


# --- outbox.requeue ------------------------------------------------------------------------------


def test_failed_calls_go_back_once_with_attempts_reset(live_app: LiveApp):
    portal = live_app.install("alpha")
    done = accepted(live_app, portal, "ok-1")
    failed = [rejected_user(live_app, portal, f"bad-{n}") for n in range(2)]
    assert deliver(live_app) == Counter(delivered=1, failed=2)
    assert all(rows(live_app)[f].attempts > 0 for f in failed)

    first = requeue(live_app)
    again = requeue(live_app)  # a second click, a second command: nothing moves twice

    assert sorted(first) == sorted(failed) and again == []
    after = rows(live_app)
    for public_id in failed:
        row = after[public_id]
        assert (row.state, row.attempts, row.error_code, row.error) == ("queued", 0, None, None)
        assert row.next_attempt_at <= utcnow() and row.lease_until is None
    assert after[done].state == CallState.DELIVERED


def test_two_requeues_at_once_queue_each_call_once(live_app: LiveApp):
    """Two admins (page and command line) at the same moment: every call goes exactly once."""
    portal = live_app.install("alpha")
    failed = {rejected_user(live_app, portal, f"race-{n}") for n in range(6)}
    deliver(live_app)
    results: list[list[str]] = []
    start = threading.Barrier(2)

    def one() -> None:
        start.wait()
        results.append(requeue(live_app))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    together = [public_id for result in results for public_id in result]
    assert sorted(together) == sorted(failed)  # no call in both


def test_a_call_that_may_be_in_bitrix24_is_looked_up_and_never_finished_twice(
    live_app: LiveApp,
):
    """Issue 9: Bitrix24 ran the batch but the call was recorded failed (CALL_NOT_FOUND with its
    CALL_ID; OUTCOME_UNKNOWN for a never-registered one). Delivered again, each is found in the
    statistics and shown delivered, and Bitrix24 gets no second register or finish."""
    portal = live_app.install("alpha")
    registered = accepted(live_app, portal, "ran-1")
    unregistered = accepted(live_app, portal, "ran-2")
    plain = rejected_user(live_app, portal, "plain-1")
    deliver(live_app)
    force(live_app, registered, state="failed", error_code="CALL_NOT_FOUND", error="gone")
    force(live_app, unregistered, state="failed", bitrix_call_id=None,
          error_code=OUTCOME_UNKNOWN, error="no answer")  # fmt: skip
    sent = Counter(e.get("method") for e in live_app.dev.journal)

    assert sorted(requeue(live_app)) == sorted([registered, unregistered, plain])
    marked = rows(live_app)
    assert marked[registered].error_code == OUTCOME_UNKNOWN  # to be looked up first
    assert marked[registered].bitrix_call_id  # kept: finished, not registered again
    assert marked[unregistered].error_code == OUTCOME_UNKNOWN
    assert marked[plain].error_code is None  # never reached Bitrix24: sent as usual

    deliver(live_app)

    assert states(live_app)[registered] == states(live_app)[unregistered] == "delivered"
    assert in_statistics(portal, "ran-1") == in_statistics(portal, "ran-2") == 1
    new = Counter(e.get("method") for e in live_app.dev.journal) - sent
    finishes = new["telephony.externalcall.finish"]
    assert (new["telephony.externalcall.register"], finishes) == (1, 1)  # the plain call only
    assert states(live_app)[plain] == "failed"  # still nobody has 555


def test_filters_pick_the_calls(live_app: LiveApp):
    alpha, beta = live_app.install("alpha"), live_app.install("beta")
    old = rejected_user(live_app, alpha, "a-old")
    new = rejected_user(live_app, alpha, "a-new")
    other = rejected_user(live_app, beta, "b-1")
    deliver(live_app)
    force(live_app, old, created_at=utcnow() - timedelta(days=3), error_code="BAD_TYPE")
    alpha_id = rows(live_app)[new].portal_id

    assert requeue(live_app, public_ids=[]) == []
    assert requeue(live_app, error_code="NO_SUCH_CODE") == []
    assert requeue(live_app, until=utcnow() - timedelta(days=2), error_code="USER_NOT_FOUND") == []
    assert requeue(live_app, portal_id=alpha_id, since=utcnow() - timedelta(days=1)) == [new]
    assert requeue(live_app, error_code="BAD_TYPE") == [old]
    assert states(live_app)[other] == "failed"
    with pytest.raises(ValueError, match="since"):
        requeue(live_app, since=utcnow(), until=utcnow() - timedelta(seconds=1))


def test_calls_of_an_uninstalled_portal_stay_failed(live_app: LiveApp):
    """Nothing can be delivered to a portal that is gone; its history is left as it was."""
    portal = live_app.install("alpha")
    failed = rejected_user(live_app, portal, "gone-1")
    deliver(live_app)
    force_portal_status(live_app, "uninstalled")

    assert requeue(live_app) == []
    assert states(live_app)[failed] == "failed"


def force_portal_status(live: LiveApp, status: str) -> None:
    with live.app.app_context(), get_db().write() as session:
        session.execute(update(Portal).values(status=status))


# --- flask calls redeliver ------------------------------------------------------------------------


def test_redeliver_by_portal_error_and_time_with_a_dry_run_first(live_app: LiveApp):
    alpha, beta = live_app.install("alpha"), live_app.install("beta")
    mine = [rejected_user(live_app, alpha, f"a-{n}") for n in range(2)]
    other = rejected_user(live_app, beta, "b-1")
    deliver(live_app)

    dry = cli(live_app, "--portal", alpha.domain, "--error", "USER_NOT_FOUND", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert all(public_id in dry.output for public_id in mine) and other not in dry.output
    assert f"{alpha.domain}: 2" in dry.output
    assert "would deliver again: 2 failed calls" in dry.output
    assert set(states(live_app).values()) == {"failed"}  # a dry run changes nothing

    today = utcnow().date().isoformat()
    done = cli(live_app, "--portal", alpha.member_id, "--since", today, "--until", today)
    assert done.exit_code == 0, done.output
    assert "delivered again: 2 failed calls (0 checked in Bitrix24's statistics first)" in (
        done.output
    )
    assert [states(live_app)[m] for m in mine] == ["queued", "queued"]
    assert states(live_app)[other] == "failed"

    twice = cli(live_app, "--portal", alpha.member_id)
    assert "delivered again: 0 failed calls" in twice.output  # at most once

    everyone = cli(live_app)
    assert f"{beta.domain}: 1" in everyone.output and states(live_app)[other] == "queued"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--portal", "nowhere.bitrix24.test"], "--portal: no portal"),
        (["--since", "yesterday"], "--since: 'yesterday' is not an ISO 8601"),
        (["--until", "2026-13-01"], "--until"),
        (["--since", "2026-03-08", "--until", "2026-03-01"], "since must be earlier than until"),
    ],
)
def test_redeliver_refuses_bad_input_and_changes_nothing(
    live_app: LiveApp, args: list[str], says: str
):
    portal = live_app.install("alpha")
    failed = rejected_user(live_app, portal, "bad-input")
    deliver(live_app)

    result = cli(live_app, *args)

    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert says in result.output
    assert states(live_app)[failed] == "failed"
