"""The journal for a call centre (issue 14, What to build 3): every call in pages that neither
skip nor repeat a call while new ones arrive, search by number, extension and PBX_CALL_ID with
the filters, each call's start in the portal's zone (a zone change does not move it), a cheap
"anything new?" for polling, "Deliver all failed again" clicked twice at once sending each call
once, Health that agrees with the failures, and what a refused employee's call says matching
what the delivery does with the fallback employee. Calls come in through the real PBX intake
over HTTP, go out through the real worker to the development portal, and are read through the
page's API; SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, select, text

from b24app.cli import upgrade_database
from b24app.db import get_db
from b24app.delivery import portal_health
from b24app.delivery.worker import Worker
from b24app.models import Call, utcnow
from b24app.portals import store
from tests.conftest import TEST_DATABASE_URL, LiveApp, PostgresTemplate
from tests.settings_page.conftest import Page, open_page, pbx_key


class Pbx:
    """What a PBX does: POST /pbx/v1/calls/<event> with the portal's key."""

    def __init__(self, live: LiveApp, portal: Any) -> None:
        self.url = f"{live.url}/pbx/v1/calls"
        self.headers = {"Authorization": f"Bearer {pbx_key(live, portal)}"}

    def send(self, event: str, **fields: Any) -> str:
        """The call's id; fields given as None are left out."""
        body = {name: value for name, value in fields.items() if value is not None}
        answer = requests.post(f"{self.url}/{event}", headers=self.headers, json=body, timeout=30)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def finished(self, pbx_call_id: str, started: str, **fields: Any) -> str:
        """A call reported only at its end, as the Asterisk example sends it."""
        return self.send(
            "finish",
            PBX_CALL_ID=pbx_call_id,
            PHONE_NUMBER=fields.pop("PHONE_NUMBER", "+74951234567"),
            TYPE=2,
            CALL_START_DATE=started,
            DURATION=30,
            STATUS_CODE="ANSWER",
            **{"USER_ID": 1, **fields},
        )


def journal(page: Page, **params: Any) -> dict[str, Any]:
    answer = page.get("/calls", **params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def ids(page: Page, **params: Any) -> list[str]:
    return [row["id"] for row in journal(page, **params)["calls"]]


def deliver(live: LiveApp) -> None:
    Worker(live.app, idle_sleep=0.05).run(once=True)


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- paging ---------------------------------------------------------------------------------------


def test_paging_through_120_calls_has_no_gaps_or_duplicates(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    pbx = Pbx(live_app, portal)
    base = datetime(2026, 3, 8, 9, 0)
    # started out of the order they arrive in, two calls in each minute (n and n + 60): calls
    # that started together come newest id (the later arrival) first
    minute = [(n * 37) % 60 for n in range(120)]
    sent = [
        pbx.finished(f"page-{n}", (base + timedelta(minutes=minute[n])).isoformat())
        for n in range(120)
    ]
    expected = [sent[n] for n in sorted(range(120), key=lambda n: (minute[n], n), reverse=True)]

    first = journal(page, limit=50)
    newer = [pbx.finished(f"new-{n}", "2026-03-09T09:00:00") for n in range(3)]  # meanwhile
    second = journal(page, limit=50, cursor=first["next_cursor"])
    third = journal(page, limit=50, cursor=second["next_cursor"])

    pages = [first, second, third]
    assert [len(p["calls"]) for p in pages] == [50, 50, 20]
    assert [p["has_more"] for p in pages] == [True, True, False]
    assert third["next_cursor"] is None
    assert [p["total"] for p in pages] == [120, 123, 123]
    seen = [row["id"] for p in pages for row in p["calls"]]
    assert seen == expected  # each once, in order, none of the calls that arrived meanwhile
    starts = [moment(row["started_at"]) for p in pages for row in p["calls"]]
    assert starts == sorted(starts, reverse=True)

    by_offset = [ids(page, limit=50, offset=offset) for offset in (0, 50, 100)]
    assert [call for chunk in by_offset for call in chunk] == newer[::-1] + expected

    capped = journal(page, limit=1000)
    assert capped["limit"] == 200 and len(capped["calls"]) == 123
    refused = page.get("/calls", cursor="not-a-cursor")
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "cursor"


# --- search ---------------------------------------------------------------------------------------


def search_calls(pbx: Pbx) -> dict[str, str]:
    """Four calls to look for, started a minute apart (a first, d last)."""
    a = pbx.send(
        "start",
        PBX_CALL_ID="srch-a",
        PHONE_NUMBER="+7 (495) 123-45-67",
        TYPE=2,
        CALL_START_DATE="2026-03-08T10:00:00",
        USER_PHONE_INNER="101",
    )
    b = pbx.finished(
        "srch-b", "2026-03-08T10:01:00", PHONE_NUMBER="84957654321", USER_ID=None,
        USER_PHONE_INNER="555",
    )  # fmt: skip
    c = pbx.send(
        "start",
        PBX_CALL_ID="srch-c",
        PHONE_NUMBER="+74997654321",
        TYPE=2,
        CALL_START_DATE="2026-03-08T10:02:00",
        USER_ID=1,
    )
    pbx.send("ring", PBX_CALL_ID="srch-c", USER_PHONE_INNER=["101", "102"])
    pbx.send("answer", PBX_CALL_ID="srch-c", USER_PHONE_INNER="102")
    d = pbx.finished(
        "100%_x", "2026-03-08T10:03:00", PHONE_NUMBER="+1 212 555 0101", USER_PHONE_INNER="103"
    )
    return {"a": a, "b": b, "c": c, "d": d}


def test_search_by_number_extension_and_pbx_call_id_with_the_filters(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    call = search_calls(Pbx(live_app, portal))

    def found(q: str, **params: Any) -> list[str]:
        names = {public_id: name for name, public_id in call.items()}
        return [names[public_id] for public_id in ids(page, q=q, **params)]

    # a number: its digits, as typed in any format; a long one by its last 10 digits
    assert found("+7 (495) 123-45-67") == ["a"]
    assert found("74951234567") == ["a"]
    assert found("8 495 123-45-67") == ["a"]
    assert found("7654321") == ["c", "b"]  # newest start first
    assert found("4321", by="phone") == ["c", "b"]
    assert found("4321") == []  # by `any`, four digits are an extension, not a number
    # an extension: any the call's events named (start, ring, answer, finish), exactly
    assert found("101") == ["c", "a"]  # not d, whose number merely contains 101
    assert found("0101", by="phone") == ["d"]
    assert found("102", by="extension") == ["c"]
    assert found("10", by="extension") == []
    # PBX_CALL_ID, exactly, and LIKE's wildcards are plain characters
    assert found("srch-b") == ["b"]
    assert found("srch-b", by="pbx_call_id") == ["b"]
    assert found("srch-b", by="extension") == []
    assert found("100%_x") == ["d"]
    assert found("%") == [] and found("_", by="extension") == []
    assert journal(page, q="7654321")["total"] == 2

    deliver(live_app)  # nobody has extension 555: b fails
    assert found("7654321", show="failed") == ["b"]
    assert found("101", show="failed") == []
    assert found("101", show="all") == ["c", "a"]
    too_long = page.get("/calls", q="1" * 101)
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"] == "q"


# --- time -----------------------------------------------------------------------------------------


def test_each_call_shows_its_start_in_the_portal_zone_and_a_zone_change_does_not_move_it(
    live_app: LiveApp,
):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    assert page.post("/settings", {"settings": {"timezone": "Europe/Moscow"}}).status_code == 200
    pbx = Pbx(live_app, portal)
    local = pbx.finished("t-local", "2026-03-08T10:20:30")  # no offset: the portal's zone
    offset = pbx.finished("t-offset", "2026-03-08T12:00:00+05:00")
    before = utcnow()
    heard = pbx.send("start", PBX_CALL_ID="t-heard", PHONE_NUMBER="+74951112233", TYPE=2, USER_ID=1)
    after = utcnow()
    pbx.send("ring", PBX_CALL_ID="t-ring", USER_ID=[1])  # before its start, received first
    ring = pbx.send(
        "start",
        PBX_CALL_ID="t-ring",
        PHONE_NUMBER="+74951112244",
        TYPE=2,
        CALL_START_DATE="2026-03-08T09:00:00",
        USER_ID=1,
    )
    pbx.finished("t-ring", "2026-03-08T11:00:00", PHONE_NUMBER="+74951112244")  # start's stands

    shown = journal(page)
    rows = {row["id"]: row for row in shown["calls"]}
    assert shown["zone"] == "Europe/Moscow"
    assert [row["id"] for row in shown["calls"]] == [heard, local, offset, ring]  # by start
    assert rows[local]["started_at"] == "2026-03-08T10:20:30+03:00"
    assert rows[local]["started_at_text"] == "2026-03-08 10:20:30"
    assert rows[offset]["started_at"] == "2026-03-08T10:00:00+03:00"
    assert rows[ring]["started_at"] == "2026-03-08T09:00:00+03:00"  # the start's, not the ring's
    assert before.replace(microsecond=0) <= moment(rows[heard]["started_at"]) <= after
    assert rows[heard]["started_at"].endswith("+03:00")

    assert page.post("/settings", {"settings": {"timezone": "Asia/Vladivostok"}}).status_code == 200
    moved = journal(page)
    again = {row["id"]: row for row in moved["calls"]}
    assert moved["zone"] == "Asia/Vladivostok"
    assert again[local]["started_at"] == "2026-03-08T17:20:30+10:00"  # the same moment
    for public_id, row in rows.items():
        assert moment(again[public_id]["started_at"]) == moment(row["started_at"])
    assert [row["id"] for row in moved["calls"]] == [heard, local, offset, ring]
    later = pbx.finished("t-later", "2026-03-08T10:20:30")  # read in the zone of its arrival
    assert journal(page, q="t-later")["calls"][0]["started_at"] == "2026-03-08T10:20:30+10:00"
    assert later in ids(page)


# --- polling --------------------------------------------------------------------------------------


def test_polling_with_the_version_answers_unchanged_until_something_changes(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    pbx = Pbx(live_app, portal)
    pbx.finished("poll-1", "2026-03-08T10:00:00")
    first = journal(page)
    assert first["unchanged"] is False and len(first["calls"]) == 1

    quiet = journal(page, version=first["version"])
    assert quiet["unchanged"] is True and "calls" not in quiet  # nothing loaded or described
    assert quiet["version"] == first["version"] and quiet["total"] == 1
    assert quiet["health"]["queued"] == 1 and quiet["zone"] == "UTC"

    arrived = pbx.finished("poll-2", "2026-03-08T10:05:00", USER_ID=None, USER_PHONE_INNER="555")
    news = journal(page, version=first["version"])
    assert news["unchanged"] is False and news["calls"][0]["id"] == arrived
    assert news["version"] != first["version"]

    deliver(live_app)  # states change: one delivered, one failed
    sent = journal(page, version=news["version"])
    assert sent["unchanged"] is False
    assert {row["state"] for row in sent["calls"]} == {"delivered", "failed"}
    assert journal(page, version=sent["version"])["unchanged"] is True

    assert page.post("/mapping", {"extension": "555", "user_id": 2}).status_code == 200
    mapped = journal(page, version=sent["version"])  # who the failed call would go to now
    assert mapped["unchanged"] is False
    failed = journal(page, show="failed")
    assert failed["version"] != mapped["version"]  # each filter and page has its own
    assert journal(page, show="failed", version=failed["version"])["unchanged"] is True
    assert page.post(f"/calls/{arrived}/deliver-again").status_code == 200
    assert journal(page, show="failed", version=failed["version"])["unchanged"] is False


# --- deliver all failed again, health, the fallback employee -------------------------------------


def failed_calls(live: LiveApp, portal: Any, count: int, prefix: str) -> list[str]:
    """Calls Bitrix24 refuses (nobody has extension 555, no fallback employee): failed."""
    pbx = Pbx(live, portal)
    sent = [
        pbx.finished(f"{prefix}-{n}", "2026-03-08T10:00:00", USER_ID=None, USER_PHONE_INNER="555")
        for n in range(count)
    ]
    deliver(live)
    return sent


def stored(live: LiveApp) -> dict[str, tuple[str, int]]:
    """Each call's (state, events_version) as stored."""
    with live.app.app_context(), get_db().read() as session:
        rows = session.execute(select(Call.public_id, Call.state, Call.events_version)).all()
        return {row.public_id: (row.state, row.events_version) for row in rows}


def test_deliver_all_failed_clicked_four_times_at_once_queues_each_call_once(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    failed = failed_calls(live_app, portal, 6, "all")
    before = stored(live_app)
    assert {before[call][0] for call in failed} == {"failed"}
    start = threading.Barrier(4)

    def click() -> requests.Response:
        start.wait(timeout=10)
        return page.post("/calls/deliver-all-failed", {"confirm": True})

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: click(), range(4)))

    assert [answer.status_code for answer in answers] == [200] * 4
    assert sum(answer.json()["count"] for answer in answers) == 6  # each call counted once
    after = stored(live_app)
    for call in failed:  # queued once: requeue bumps events_version by one each time
        assert after[call] == ("queued", before[call][1] + 1)
    assert page.post("/mapping", {"extension": "555", "user_id": 2}).status_code == 200
    deliver(live_app)
    sent = Counter(record["EXTERNAL_CALL_ID"] for record in portal.statistics)
    assert sent == Counter({f"all-{n}": 1 for n in range(6)})  # each finished once


def test_health_agrees_with_the_failures_in_english_and_russian(live_app: LiveApp):
    portal = live_app.install("alpha")
    failed_calls(live_app, portal, 2, "health")
    english = open_page(live_app, portal).state["health"]
    russian = open_page(live_app, portal, lang="ru").state["health"]

    assert english["failed_24h"] == 2 and english["failed"] == 2
    assert english["action"].startswith(
        "Calls that failed: 2. Fix the cause, then deliver them again (“Deliver all failed "
        "again…” in the journal). Most often: Bitrix24 has no active employee"
    )
    assert "Nothing to do" not in english["action"]
    assert english["failures"] == [
        {"code": "USER_NOT_FOUND", "count": 2, "text": english["failures"][0]["text"]}
    ]
    assert russian["action"].startswith(
        "Звонков с ошибкой: 2. Устраните причину и доставьте их снова («Доставить снова все с "
        "ошибкой…» в журнале). Чаще всего: В Битрикс24 нет работающего сотрудника"
    )
    assert "Ничего делать не нужно" not in russian["action"]

    with live_app.app.app_context():
        portal_id = stored_portal_id(live_app, portal)
        portal_health.pause(get_db(), portal_id, code="NO_ANSWER", reason="x", now=utcnow())
    paused = open_page(live_app, portal).state["health"]
    assert paused["status"] == "paused" and "Nothing to do" not in paused["action"]
    assert paused["action"].startswith("Calls that failed: 2.")
    assert "0 calls wait and are delivered as soon as Bitrix24 answers" in paused["action"]
    with live_app.app.app_context():
        portal_health.probe_answered(get_db(), portal_id, now=utcnow())

    page = open_page(live_app, portal)
    assert page.post("/mapping", {"extension": "555", "user_id": 2}).status_code == 200
    assert page.post("/calls/deliver-all-failed", {"confirm": True}).json()["count"] == 2
    deliver(live_app)
    fixed = page.get("/state").json()["health"]
    assert fixed["failed"] == 0 and fixed["failed_24h"] == 0 and fixed["failures"] == []
    assert fixed["action"] == "Nothing to do."


def stored_portal_id(live: LiveApp, portal: Any) -> int:
    with live.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        return row.id


def set_fallback(live: LiveApp, portal: Any, user_id: int | None) -> None:
    """The fallback employee as stored (the page refuses a departed one, the database not)."""
    with live.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        row.settings.fallback_user_id = user_id


def test_a_refused_employees_call_says_what_the_fallback_employee_does(live_app: LiveApp):
    """Delivery: an employee Bitrix24 refuses (an extension nobody has, a departed USER_ID)
    goes to the fallback employee; the call fails only without one, or when the fallback
    employee has left too. The journal's words follow that, in both languages."""
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    pbx = Pbx(live_app, portal)
    (alone,) = failed_calls(live_app, portal, 1, "nobody")

    def row(public_id: str, lang: Page = page) -> dict[str, Any]:
        (found,) = journal(lang, q=pbx_id[public_id])["calls"]
        return dict(found)

    pbx_id = {alone: "nobody-0"}
    first = row(alone)
    assert first["outcome"].startswith(
        "Bitrix24 has no active employee for the call's USER_ID or extension, and no fallback "
        "employee is set. Choose a fallback employee (for calls to unknown extensions)"
    )
    assert first["events"][0]["problem"] == first["outcome"]

    assert page.post("/settings", {"settings": {"fallback_user_id": 3}}).status_code == 200
    assert "One is set now: deliver the call again" in row(alone)["outcome"]
    unknown = pbx.finished("to-556", "2026-03-08T10:05:00", USER_ID=None, USER_PHONE_INNER="556")
    pbx_id[unknown] = "to-556"
    deliver(live_app)  # an extension nobody has, with a fallback employee: delivered to them
    assert row(unknown)["state"] == "delivered" and row(unknown)["employee_id"] == 3
    assert page.post(f"/calls/{alone}/deliver-again").status_code == 200
    deliver(live_app)
    assert row(alone)["state"] == "delivered" and row(alone)["employee_id"] == 3

    set_fallback(live_app, portal, 5)  # Eva has left the development portal
    gone = pbx.finished("to-557", "2026-03-08T10:06:00", USER_ID=None, USER_PHONE_INNER="557")
    pbx_id[gone] = "to-557"
    deliver(live_app)
    assert row(gone)["outcome"].startswith(
        "Neither the call's employee (its USER_ID or extension) nor the fallback employee is an "
        "active employee in Bitrix24. Choose an active fallback employee"
    )
    russian = open_page(live_app, portal, lang="ru")
    assert row(gone, russian)["outcome"].startswith(
        "В Битрикс24 не работают ни сотрудник звонка (его USER_ID или добавочный номер), ни "
        "сотрудник по умолчанию"
    )


# --- the columns of calls stored before the journal had them (migration 0008) --------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def at_0007(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database migrated to 0007 only."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
        upgrade_database(url, "0007")
        yield url
        return
    template = PostgresTemplate.__new__(PostgresTemplate)
    template.base_url = TEST_DATABASE_URL or ""
    template.admin = create_engine(template.base_url, isolation_level="AUTOCOMMIT")
    schema = template._create_schema()
    url = template.url(schema)
    upgrade_database(url, "0007")
    try:
        yield url
    finally:
        template._execute(f'DROP SCHEMA "{schema}" CASCADE')
        template.admin.dispose()


OLD_ROWS = """
INSERT INTO portals (id, member_id, domain, client_endpoint, server_endpoint, client_id, status,
                     scope, enterprise_limits, installed_at, updated_at)
VALUES (1, 'm1', 'a.bitrix24.test', 'x', 'y', 'c', 'active', '', false,
        '2026-03-01 00:00:00', '2026-03-01 00:00:00');
INSERT INTO portal_settings (portal_id, add_to_chat, timezone, show_card, pbx_key_encrypted,
                             pbx_key_hash, pbx_key_rotated_at, updated_at)
VALUES (1, false, 'Europe/Moscow', true, 'k', 'h', '2026-03-01 00:00:00', '2026-03-01 00:00:00');
INSERT INTO calls (id, public_id, portal_id, idempotency_key, state, events_version, attempts,
                   next_attempt_at, created_at, updated_at, use_fallback_user)
VALUES (1, 'a', 1, 'old-1', 'delivered', 2, 0, '2026-03-08 12:00:00', '2026-03-08 12:00:00',
        '2026-03-08 12:00:00', false),
       (2, 'b', 1, 'old-2', 'failed', 1, 0, '2026-03-08 13:00:00', '2026-03-08 13:00:00',
        '2026-03-08 13:00:00', false),
       (3, 'c', 1, 'old-3', 'queued', 1, 0, '2026-03-08 14:00:00', '2026-03-08 14:00:00',
        '2026-03-08 14:00:00', false);
INSERT INTO call_events (call_id, kind, dedupe_key, request, state, created_at)
VALUES (1, 'start', '', '{"PBX_CALL_ID": "old-1", "PHONE_NUMBER": "+7 (495) 123-45-67",
        "TYPE": 2, "CALL_START_DATE": "2026-03-08T10:20:30", "USER_PHONE_INNER": "101"}',
        'delivered', '2026-03-08 07:20:31'),
       (1, 'ring', 'r', '{"PBX_CALL_ID": "old-1", "USER_PHONE_INNER": ["101", "102"]}',
        'delivered', '2026-03-08 07:20:32'),
       (2, 'finish', '', '{"PBX_CALL_ID": "old-2", "PHONE_NUMBER": "84957654321", "TYPE": 2,
        "CALL_START_DATE": "2026-03-08T09:00:00+00:00", "DURATION": 5}', 'failed',
        '2026-03-08 13:00:00'),
       (3, 'ring', 'r', '{"PBX_CALL_ID": "old-3", "USER_ID": [1]}', 'queued',
        '2026-03-08 14:00:00');
"""


def test_the_migration_fills_in_the_calls_stored_before_it(at_0007: str):
    engine = create_engine(at_0007)
    with engine.begin() as connection:
        for statement in OLD_ROWS.split(";"):
            if statement.strip():
                connection.execute(text(statement))
    engine.dispose()

    upgrade_database(at_0007)

    engine = create_engine(at_0007)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT id, started_at, phone_digits, extensions FROM calls ORDER BY id")
        ).all()
    engine.dispose()
    started = [str(row.started_at)[:19] for row in rows]  # UTC, as every instant is stored
    assert started == ["2026-03-08 07:20:30", "2026-03-08 09:00:00", "2026-03-08 14:00:00"]
    assert [row.phone_digits for row in rows] == ["74951234567", "84957654321", None]
    assert [row.extensions for row in rows] == ["\n101\n102\n", None, None]
