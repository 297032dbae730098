"""The journal's timeline of a whole call (issue 12 item 5): each event the PBX sent, in the
order it arrived, with its own state, Bitrix24's CALL_ID and CRM entity, the recording's state,
and "deliver again" per failed event. The calls are written straight to the database as the
intake and the delivery leave them (Call, CallEvent, CallRecording), read over HTTP through the
page's API; SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

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
    assert record["recording"]["problem"] == "Ошибка: The PBX answered 404 Not Found."
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
    # no journal, so no buttons: the page shows the journal to administrators only
    assert boris.state["viewer"]["is_admin"] is False and admin.state["viewer"]["is_admin"]
    assert admin.state["messages"]["event_requeued"] == (
        "The event is queued and will be sent again shortly."
    )


WAITING_FOR_FINISH = (
    "Waiting for the call's finish: Bitrix24 attaches recordings to finished calls."
)


def failed_download(live: LiveApp, portal: Any, pbx_call_id: str, code: str, reason: str) -> str:
    """A call the PBX only sent a recording for, whose download failed as
    delivery/recordings.py leaves it: the recording and its event failed with the download's
    code, the event still holding the note it got while it waited; never sent to Bitrix24."""
    public_id, _ = insert_call(
        live,
        portal,
        pbx_call_id,
        [
            Event(
                "record",
                {"RECORD_URL": "https://pbx.example.com/rec/2.mp3"},
                state="failed",
                error_code=code,
                error=f"The recording: {reason}.",
                note=WAITING_FOR_FINISH,
                recording={
                    "state": "failed",
                    "url": "https://pbx.example.com/rec/2.mp3",
                    "error_code": code,
                    "error": reason,
                },
            )
        ],
        state="failed",
        error_code=code,
        error=f"The recording: {reason}.",
    )
    return public_id


# delivery/recordings.py's codes: whose problem each is, in both languages
DOWNLOADS = {
    "HTTP_403": (
        "the recording's server answered HTTP 403",
        "The PBX's recording server refused to give the recording (HTTP 403)",
        "Сервер записей АТС отказался отдать запись (HTTP 403)",
    ),
    "HTTP_404": (
        "the recording's server answered HTTP 404",
        "The PBX's recording server has no recording at RECORD_URL (HTTP 404).",
        "На сервере записей АТС нет записи по адресу RECORD_URL (HTTP 404).",
    ),
    "HTTP_503": (
        "gave up after 24 h: the recording's server answered HTTP 503",
        "The PBX's recording server kept failing (HTTP 503)",
        "Сервер записей АТС отвечал ошибкой (HTTP 503)",
    ),
    "HTTP_418": (
        "the recording's server answered HTTP 418",
        "The PBX's recording server answered HTTP 418 instead of the recording.",
        "Сервер записей АТС ответил HTTP 418 вместо записи.",
    ),
    "NOT_AUDIO": (
        "RECORD_URL is not an mp3 or wav recording (judged by its content)",
        "What the PBX gave is not an mp3 or wav recording",
        "АТС отдала не запись mp3 или wav",
    ),
    "TOO_LARGE": (
        "the recording is larger than B24APP_RECORD_MAX_BYTES (104857600 bytes)",
        "The recording is larger than b24app accepts (its B24APP_RECORD_MAX_BYTES",
        "Запись больше, чем принимает b24app (его настройка B24APP_RECORD_MAX_BYTES",
    ),
    "PORTAL_FULL": (
        "gave up after 24 h: this portal's recordings waiting to be attached already take ...",
        "There was no room for it",
        "Для неё не нашлось места",
    ),
    "ADDRESS_REFUSED": (
        "RECORD_URL refused: 10.0.0.5 is a private address",
        "The PBX's RECORD_URL leads to a private or local network address, which b24app's "
        "address rules forbid",
        "RECORD_URL от АТС ведёт на адрес частной или локальной сети, а правила адресов b24app",
    ),
    "BAD_URL": (
        "RECORD_URL must be an http or https address",
        "The PBX's RECORD_URL is not a usable http or https address",
        "RECORD_URL от АТС — не пригодный адрес http или https",
    ),
    "TOO_MANY_REDIRECTS": (
        "RECORD_URL redirected more than 5 times",
        "The PBX's recording server redirected the download more times than b24app follows.",
        "Сервер записей АТС перенаправлял скачивание больше раз",
    ),
    "NO_CONNECTION": (
        "gave up after 24 h: could not download from pbx.example.com (ConnectionError)",
        "b24app could not connect to the PBX's recording server",
        "b24app не смог подключиться к серверу записей АТС",
    ),
    "TIMED_OUT": (
        "gave up after 24 h: pbx.example.com did not answer in time",
        "The PBX's recording server did not send the recording in time",
        "Сервер записей АТС не отдавал запись вовремя",
    ),
    "CUT_OFF": (
        "gave up after 24 h: the download broke off (ChunkedEncodingError)",
        "The PBX's recording server broke the download off",
        "Сервер записей АТС обрывал скачивание",
    ),
}


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_a_failed_download_says_whose_problem_it_is_never_bitrix24s(live_app: LiveApp, lang: str):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang=lang)
    made = {
        code: failed_download(live_app, portal, f"rec-{code}", code, reason)
        for code, (reason, _, _) in DOWNLOADS.items()
    }

    calls = {c["id"]: c for c in page.get("/calls").json()["calls"]}

    for code, (_, english, russian) in DOWNLOADS.items():
        call = calls[made[code]]
        (record,) = call["events"]
        said = english if lang == "en" else russian
        assert said in record["recording"]["problem"], code
        assert said in record["problem"], code  # the event says the recording's reason
        assert said in call["outcome"], code  # and so does the journal's row
        for shown in (record["recording"]["problem"], record["problem"], call["outcome"]):
            assert "Bitrix24 answered" not in shown and "Ответ Битрикс24" not in shown, code
        # it waits for nothing any more, and Bitrix24 never answered: no answer to show
        assert record["note"] == "" and record["state"] == "failed", code
        assert call["answer"] == {} and call["bitrix_call_id"] == "", code
        assert record["can_retry"] is True and call["can_retry"] is True


@pytest.mark.parametrize(
    ("lang", "failed", "bitrix24s"),
    [
        ("en", "Failed: ", "Bitrix24 answered: "),
        ("ru", "Ошибка: ", "Ответ Битрикс24: "),
    ],
)
def test_unknown_codes_read_neutrally_unless_they_are_bitrix24s(
    live_app: LiveApp, lang: str, failed: str, bitrix24s: str
):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang=lang)
    ours = failed_download(live_app, portal, "odd-1", "SOMETHING_NEW", "a new kind of failure")
    theirs, _ = insert_call(
        live_app,
        portal,
        "odd-2",
        [
            Event("start", {"PHONE_NUMBER": "+74951234567", "TYPE": 2, "USER_ID": 1}),
            Event(
                "finish",
                {"DURATION": 5, "STATUS_CODE": "200"},
                state="failed",
                error_code="ERROR_CORE",
                error="Something Bitrix24 said",
            ),
        ],
        state="failed",
        error_code="ERROR_CORE",
        error="Something Bitrix24 said",
        bitrix_call_id="externalCall.odd2",
    )

    calls = {c["id"]: c for c in page.get("/calls").json()["calls"]}

    assert calls[ours]["events"][0]["recording"]["problem"] == failed + "a new kind of failure"
    assert calls[theirs]["events"][1]["problem"] == bitrix24s + "Something Bitrix24 said"
    assert calls[theirs]["outcome"] == bitrix24s + "Something Bitrix24 said"


# the delivery's own reasons (delivery/lifecycle.py): plain words, never Bitrix24's
LIFECYCLE = {
    "NO_START": ("No start arrived for this call within an hour", "Начало звонка не пришло за час"),
    "NO_FINISH": ("No finish arrived for this call within 24 hours", None),
    "NOT_FINISHED": ("The call's finish failed", None),
    "NO_AUDIO": ("The recording was not downloaded from the PBX within 25 hours", None),
    "REGISTER_UNCERTAIN": ("Bitrix24 may have registered this call", None),
    "NOT_REGISTERED": ("The call's registration in Bitrix24 failed", None),
}


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_the_deliverys_own_reasons_are_explained(live_app: LiveApp, lang: str):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang=lang)
    made = {}
    for code in LIFECYCLE:
        made[code], _ = insert_call(
            live_app,
            portal,
            f"life-{code}",
            [
                Event(
                    "record",
                    {"FILENAME": "a.mp3"},
                    state="failed",
                    error_code=code,
                    error=f"the delivery's words for {code}",
                    note=WAITING_FOR_FINISH,
                )
            ],
            state="failed",
            error_code=code,
            error=f"the delivery's words for {code}",
        )

    calls = {c["id"]: c for c in page.get("/calls").json()["calls"]}

    for code, (english, russian) in LIFECYCLE.items():
        (record,) = calls[made[code]]["events"]
        shown = record["problem"]
        assert "Bitrix24 answered" not in shown and "Ответ Битрикс24" not in shown, code
        assert f"for {code}" not in shown, code  # our explanation, not the stored words
        if lang == "en":
            assert shown.startswith(english), code
        elif russian:
            assert shown.startswith(russian), code
        assert record["note"] == "", code  # a failed event waits for nothing


def test_a_waiting_note_is_shown_while_the_event_waits(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    public_id, _ = insert_call(
        live_app,
        portal,
        "wait-1",
        [
            Event("record", {"FILENAME": "a.mp3"}, state="queued", note=WAITING_FOR_FINISH),
        ],
        state="queued",
    )

    (record,) = the_call(page, public_id)["events"]

    assert record["note"] == WAITING_FOR_FINISH
    assert page.state["messages"]["answer"] == "Bitrix24's answer"
    assert page.state["messages"]["delivery_details"] == "Delivery details"
