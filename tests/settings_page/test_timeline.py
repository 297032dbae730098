"""The journal's timeline of a whole call (issue 12 item 5): each event the PBX sent, in the
order it arrived, with its own state, Bitrix24's CALL_ID and CRM entity, the recording's state,
and "deliver again" per failed event. The calls are written straight to the database as the
intake and the delivery leave them (Call, CallEvent, CallRecording), read over HTTP through the
page's API; SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from b24app.models import utcnow
from tests.conftest import LiveApp
from tests.settings_page.conftest import Event, Page, event_rows, insert_call, open_page

WHOLE_CALL = [
    Event(
        "start",
        {"PHONE_NUMBER": "+74951234567", "TYPE": 2, "LINE_NUMBER": "74950001122", "USER_ID": 1},
    ),
    Event("ring", {"USER_ID": [2, 3]}),
    Event("ring", {"USER_PHONE_INNER": ["201"]}),  # the mapping says: Clara (3)
    Event("answer", {"USER_ID": 3}),
    Event("finish", {"DURATION": 42, "STATUS_CODE": "200"}),
    Event(
        "record",
        {"RECORD_URL": "https://pbx.example.com/rec/1.mp3"},
        recording={
            "state": "attached",
            "url": "https://pbx.example.com/rec/1.mp3",
            "filename": "call-1.mp3",
            "audio": "mp3",
            "size": 1_258_291,
            "file_id": 77,
        },
    ),
]


def the_call(page: Page, public_id: str) -> dict[str, Any]:
    answer = page.get("/calls")
    assert answer.status_code == 200, answer.text
    (row,) = [c for c in answer.json()["calls"] if c["id"] == public_id]
    return dict(row)


def whole_call(live: LiveApp, portal: Any) -> str:
    public_id, _ = insert_call(
        live,
        portal,
        "whole-1",
        WHOLE_CALL,
        state="delivered",
        bitrix_call_id="externalCall.0f1e2d",
        crm_entity_type="CONTACT",
        crm_entity_id=12,
        delivered_at=utcnow(),
    )
    return public_id


def test_a_whole_call_shows_its_timeline_and_recording_in_english(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    assert page.post("/mapping", {"extension": "201", "user_id": 3}).status_code == 200
    public_id = whole_call(live_app, portal)

    call = the_call(page, public_id)

    # the row: number, type and line from the start; duration and status from the finish;
    # the employee is the last one who answered (the finish names nobody)
    assert call["phone_number"] == "+74951234567"
    assert call["type_text"] == "incoming" and call["line_number"] == "74950001122"
    assert call["employee_id"] == 3
    assert call["duration"] == 42 and call["status_text"] == "answered"
    assert call["outcome"] == "Finished in Bitrix24."
    assert call["bitrix_call_id"] == "externalCall.0f1e2d"
    assert call["crm"] == {"type": "CONTACT", "type_text": "Contact", "id": 12}
    assert call["pbx_call_id"] == "whole-1"
    # the timeline, in arrival order, each event with its own state
    timeline = [(e["kind"], e["kind_text"], e["state_text"]) for e in call["events"]]
    assert timeline == [
        ("start", "Call started", "Delivered"),
        ("ring", "Ringing", "Delivered"),
        ("ring", "Ringing", "Delivered"),
        ("answer", "Answered", "Delivered"),
        ("finish", "Call ended", "Delivered"),
        ("record", "Recording", "Delivered"),
    ]
    start, ring, mapped_ring, answer, finish, record = call["events"]
    assert start["details"] == ["Number: +74951234567", "incoming", "Line: 74950001122"]
    assert ring["employees"] == [
        {"user_id": 2, "extension": ""},
        {"user_id": 3, "extension": ""},
    ]
    assert mapped_ring["employees"] == [{"user_id": 3, "extension": "201"}]
    assert answer["employees"] == [{"user_id": 3, "extension": ""}]
    assert finish["details"] == ["Duration: 42 s", "Status: 200 answered"]
    assert all(e["delivered_at"] and not e["can_retry"] for e in call["events"])
    assert record["recording"] == call["recording"]
    assert call["recording"] == {
        "state": "attached",
        "state_text": "Attached to the call in Bitrix24",
        "audio": "mp3",
        "size": 1_258_291,
        "size_text": "1.2 MB",
        "filename": "call-1.mp3",
        "problem": "",
        "file_id": 77,
    }
    assert "https://pbx.example.com" not in str(call)  # the PBX's address stays ours


def test_the_timeline_in_russian(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    public_id = whole_call(live_app, portal)

    call = the_call(page, public_id)

    assert [e["kind_text"] for e in call["events"]] == [
        "Звонок начался",
        "Вызов сотрудников",
        "Вызов сотрудников",
        "Ответ",
        "Звонок завершён",
        "Запись разговора",
    ]
    assert {e["state_text"] for e in call["events"]} == {"Доставлен"}
    assert call["type_text"] == "входящий" and call["crm"]["type_text"] == "Контакт"
    assert call["events"][0]["details"] == ["Номер: +74951234567", "входящий", "Линия: 74950001122"]
    assert call["events"][4]["details"] == ["Длительность: 42 с", "Статус: 200 отвечен"]
    assert call["recording"]["state_text"] == "Прикреплена к звонку в Битрикс24"
    assert call["recording"]["size_text"] == "1,2 МБ"
    assert call["outcome"] == "Завершён в Битрикс24."


def test_waiting_and_failed_events_and_recordings_say_why(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    public_id, _ = insert_call(
        live_app,
        portal,
        "trouble-1",
        [
            Event(
                "ring",
                {"USER_ID": [2]},
                state="queued",
                note="Waiting for the call's start (its CALL_ID) before it can be sent.",
            ),
            Event(
                "answer",
                {"USER_ID": 2},
                state="failed",
                error_code="NO_START",
                error="No start arrived for this PBX_CALL_ID within an hour.",
            ),
            Event(
                "finish",
                {"PHONE_NUMBER": "+74951112233", "TYPE": 1, "DURATION": 0, "STATUS_CODE": "304"},
                state="failed",
                error_code="USER_NOT_FOUND",
                error="User is not found",
            ),
            Event(
                "record",
                {"FILENAME": "big.wav"},
                state="failed",
                error="The recording could not be attached.",
                recording={
                    "state": "failed",
                    "audio": "wav",
                    "size": 900,
                    "error": "The PBX answered 404 Not Found.",
                },
            ),
        ],
        state="failed",
        error_code="USER_NOT_FOUND",
    )

    call = the_call(page, public_id)

    # no start: the number and type come from the finish's own registration fields
    assert call["phone_number"] == "+74951112233" and call["type_text"] == "исходящий"
    assert call["status_text"] == "пропущен"
    ring, answer, finish, record = call["events"]
    assert (ring["state_text"], ring["note"], ring["can_retry"]) == (
        "В очереди",
        "Ждёт начала звонка (его CALL_ID), прежде чем его можно отправить.",
        False,
    )
    assert answer["problem"].startswith("Начало звонка не пришло за час")
    assert finish["state_text"] == "Ошибка" and finish["can_retry"] is True
    assert finish["problem"].startswith("В Битрикс24 нет работающего сотрудника")
    assert finish["error"] == "User is not found"
    assert record["details"] == ["АТС прислала файл", "Файл: big.wav"]
    assert record["recording"]["state_text"] == "Ошибка"
    assert record["recording"]["problem"] == "The PBX answered 404 Not Found."
    assert record["recording"]["size_text"] == "900 Б"
    assert call["bitrix_call_id"] == "" and call["crm"] is None


def failed_card(live: LiveApp, portal: Any, pbx_call_id: str) -> tuple[str, list[int]]:
    """A call whose card could not be shown, nor hidden: show and hide failed."""
    return insert_call(
        live,
        portal,
        pbx_call_id,
        [
            Event("start", {"PHONE_NUMBER": "+74951234567", "TYPE": 2, "USER_ID": 1}),
            Event("ring", {"USER_ID": [7]}, state="failed", error_code="X", error="No user 7"),
            Event("answer", {"USER_ID": 7}, state="failed", error_code="X", error="No user 7"),
            Event("finish", {"DURATION": 5, "STATUS_CODE": "200", "USER_ID": 1}),
        ],
        state="failed",
        bitrix_call_id=f"externalCall.{pbx_call_id}",
    )


def test_deliver_again_one_failed_event_requeues_only_that_event(live_app: LiveApp):
    alpha, beta = live_app.install("alpha"), live_app.install("beta")
    page = open_page(live_app, alpha)
    public_id, (start, ring, answer, finish) = failed_card(live_app, alpha, "card-1")
    other_call, (_, other_ring, _, _) = failed_card(live_app, alpha, "card-2")
    betas, (_, beta_ring, _, _) = failed_card(live_app, beta, "card-3")
    offered = the_call(page, public_id)["events"]
    assert [e["can_retry"] for e in offered] == [False, True, True, False]

    again = page.post(f"/calls/{public_id}/events/{ring}/deliver-again")

    assert again.status_code == 200, again.text
    assert again.json() == {"ok": True, "id": public_id, "event": ring, "state": "queued"}
    state, events = event_rows(live_app, public_id)
    assert state == "queued"
    assert events == {
        start: ("delivered", None),
        ring: ("queued", None),
        answer: ("failed", "No user 7"),  # not asked for: still failed
        finish: ("delivered", None),
    }
    assert event_rows(live_app, other_call)[1][other_ring] == ("failed", "No user 7")
    assert event_rows(live_app, betas)[0] == "failed"  # another portal's call is untouched
    shown = the_call(page, public_id)["events"]
    assert [(e["state_text"], e["can_retry"]) for e in shown] == [
        ("Delivered", False),
        ("Waiting", False),
        ("Failed", True),
        ("Delivered", False),
    ]

    # a second click, an event that did not fail, another call's or portal's event: nothing moves
    twice = page.post(f"/calls/{public_id}/events/{ring}/deliver-again")
    assert twice.status_code == 409
    assert twice.json()["error"]["message"] == "Only events that failed can be delivered again."
    assert page.post(f"/calls/{public_id}/events/{start}/deliver-again").status_code == 409
    for path in (
        f"/calls/{public_id}/events/{other_ring}/deliver-again",  # card-2's, under card-1's id
        f"/calls/{betas}/events/{beta_ring}/deliver-again",  # beta's
        f"/calls/{public_id}/events/{2**70}/deliver-again",
        f"/calls/nope/events/{ring}/deliver-again",
    ):
        refused = page.post(path)
        assert refused.status_code == 404, path
        assert refused.json()["error"]["message"] == "This call has no such event."
    assert event_rows(live_app, other_call)[1][other_ring] == ("failed", "No user 7")
    assert event_rows(live_app, betas)[1][beta_ring] == ("failed", "No user 7")


def test_the_refusals_are_said_in_russian(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    public_id, (start, *_) = failed_card(live_app, portal, "ru-1")

    refused = page.post(f"/calls/{public_id}/events/{start}/deliver-again")

    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == (
        "Повторно доставить можно только события с ошибкой."
    )
    missing = page.post(f"/calls/{public_id}/events/{start + 1000}/deliver-again")
    assert missing.json()["error"]["message"] == "У этого звонка нет такого события."


def test_read_only_users_see_no_timeline_and_cannot_deliver_an_event_again(live_app: LiveApp):
    portal = live_app.install("alpha")
    public_id, (_, ring, *_) = failed_card(live_app, portal, "ro-1")
    admin = open_page(live_app, portal)
    boris = open_page(live_app, portal, user_id=2)  # not an administrator

    refused = boris.post(f"/calls/{public_id}/events/{ring}/deliver-again")

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admins_only"
    assert event_rows(live_app, public_id)[1][ring] == ("failed", "No user 7")
    assert boris.get("/calls").status_code == 403  # no timeline: it holds customers' numbers
    assert 'id="journal-rows"' not in boris.response.text  # no journal, so no buttons
    assert 'id="journal-rows"' in admin.response.text
    assert admin.state["messages"]["event_requeued"] == (
        "The event is queued and will be sent again shortly."
    )
