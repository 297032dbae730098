"""The whole call (issue 12) end to end: a PBX posts start, ring, answer, finish and record to
the live app's PBX API, the real worker delivers them, and the development portal shows what
Bitrix24 would have seen: who had the card on their screen, who finished the call, how many times
each call was registered and finished, and in which order. On SQLite and PostgreSQL.

Contract: PRODUCT.md "The whole call"; pages: api-reference/telephony/
telephony-external-call-register.md (EXTERNAL_CALL_ID, LINE_NUMBER, CALL_START_DATE, SHOW,
re-registration within 30 minutes), -show.md, -hide.md, -finish.md, -attach-record.md and
tutorials/telephony/index.md (register → show → hide → finish → attachRecord).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from b24app.db import get_db
from b24app.delivery import lifecycle, outbox
from b24app.delivery.retry import OUTCOME_UNKNOWN
from b24app.delivery.worker import Worker
from b24app.models import utcnow
from b24app.portals import mapping, store
from devportal import faults
from devportal.methods.telephony import php_int, user_ids
from devportal.state import DevPortal, DevUser
from tests.call_events import stored_events, stored_recording
from tests.conftest import LiveApp
from tests.delivery.conftest import (
    batches,
    portal_id,
    register_on_portal,
    run_worker,
    set_portal,
)
from tests.recordings.conftest import RecordServer, Route, free_port, mp3_bytes, wav_bytes
from tests.security import pbx_key

CALL = "1709884800.42"
START: dict[str, Any] = {
    "PBX_CALL_ID": CALL,
    "PHONE_NUMBER": "+15551234567",
    "TYPE": 2,
    "USER_ID": 2,  # Boris
    "LINE_NUMBER": "74951234567",
}
FINISH: dict[str, Any] = {"PBX_CALL_ID": CALL, "DURATION": 42, "STATUS_CODE": "200"}
HOUR = 3600.0


# --- the PBX, and what the development portal saw ----------------------------------------------


@dataclass
class Pbx:
    """A PBX posting to the live app with its portal's key."""

    live: LiveApp
    portal: DevPortal
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def post(self, kind: str, **fields: Any) -> requests.Response:
        url = f"{self.live.url}/pbx/v1/calls/{kind}"
        return requests.post(url, json=fields, headers=self.headers, timeout=10)

    def send(self, kind: str, **fields: Any) -> str:
        """Post an event; it must be accepted (202); returns the call's id."""
        answer = self.post(kind, **fields)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    def upload(
        self, data: bytes, name: str = "call.wav", pbx_call_id: str = CALL
    ) -> requests.Response:
        return requests.post(
            f"{self.live.url}/pbx/v1/calls/record",
            data={"PBX_CALL_ID": pbx_call_id},
            files={"FILE": (name, data)},
            headers=self.headers,
            timeout=30,
        )

    def call(self, public_id: str) -> dict[str, Any]:
        """GET /pbx/v1/calls/<id>."""
        answer = requests.get(
            f"{self.live.url}/pbx/v1/calls/{public_id}", headers=self.headers, timeout=10
        )
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def deliver(self, *, ahead: float = 0.0) -> Counter[str]:
        return run_worker(self.live.app, ahead=ahead)


def connect(live: LiveApp, code: str = "alpha", **options: Any) -> Pbx:
    portal = live.install(code, **options)
    return Pbx(live, portal, pbx_key(live, portal.member_id))


@pytest.fixture
def pbx(live_app: LiveApp) -> Pbx:
    """Portal "alpha" (Anna 1, Boris 2 ext 101, Clara 3 ext 102, Dmitri 4) and its PBX."""
    return connect(live_app)


@dataclass(frozen=True)
class Step:
    """One telephony command as the development portal's journal has it."""

    method: str  # register, show, hide, finish, attachrecord
    users: tuple[int, ...]  # register/finish: its user; show/hide: whom
    batch: int | None  # the batch request it ran in (None: a request of its own)
    params: dict[str, Any]


def steps(pbx: Pbx, call_id: str | None = None, external: str = CALL) -> list[Step]:
    """The telephony commands of one call, in the order the portal ran them: its register (by
    EXTERNAL_CALL_ID) and every command naming its CALL_ID."""
    call_id = call_id or bitrix_call_id(pbx.portal, external) or ""
    found = []
    for entry in pbx.live.dev.entries(member_id=pbx.portal.member_id):
        method = entry.get("method") or ""
        if not method.startswith("telephony.externalcall."):
            continue
        params = entry["params"]
        short = method.rsplit(".", 1)[1]
        if short == "register":
            if params.get("EXTERNAL_CALL_ID") != external:
                continue
        elif params.get("CALL_ID") != call_id:
            continue
        if short in ("show", "hide"):
            users = tuple(user_ids(params.get("USER_ID"), 0))
        elif params.get("USER_ID") is not None:
            users = (php_int(params["USER_ID"]),)
        else:
            users = ()
        found.append(Step(short, users, entry.get("batch"), params))
    return found


def methods(found: list[Step]) -> list[str]:
    return [step.method for step in found]


def bitrix_call_id(portal: DevPortal, external: str = CALL) -> str | None:
    """The CALL_ID the portal gave the call registered with this EXTERNAL_CALL_ID."""
    for record in [*portal.calls.values(), *portal.statistics]:
        if record["EXTERNAL_CALL_ID"] == external:
            return str(record["CALL_ID"])
    return None


def card(portal: DevPortal, external: str = CALL) -> list[int]:
    """Whose screens show the call's card now (a registered, unfinished call)."""
    call_id = bitrix_call_id(portal, external)
    assert call_id in portal.calls, "the call is not registered and open"
    return list(portal.calls[call_id]["shown_to"])


def finished(portal: DevPortal, external: str = CALL) -> list[dict[str, Any]]:
    return [r for r in portal.statistics if r["EXTERNAL_CALL_ID"] == external]


def kinds_and_states(pbx: Pbx, public_id: str) -> list[tuple[str, str]]:
    return [(e["kind"], e["state"]) for e in pbx.call(public_id)["events"]]


# --- each event, and the whole life in order ------------------------------------------------------


def test_start_registers_the_call_with_its_line_date_card_and_crm(pbx: Pbx) -> None:
    set_portal(pbx.live, pbx.portal, timezone="Europe/Moscow")
    public_id = pbx.send(
        "start",
        **START,
        CALL_START_DATE="2026-03-07T10:20:30",
        CRM_ENTITY_TYPE="CONTACT",
        CRM_ENTITY_ID=7,
    )

    pbx.deliver()

    (registered,) = pbx.portal.calls.values()
    assert registered["EXTERNAL_CALL_ID"] == CALL
    assert registered["LINE_NUMBER"] == "74951234567"
    assert registered["CALL_START_DATE"] == "2026-03-07T10:20:30+03:00"  # the portal's offset
    assert registered["USER_ID"] == 2 and registered["shown_to"] == [2]  # show_card: default 1
    assert (registered["CRM_ENTITY_TYPE"], registered["CRM_ENTITY_ID"]) == ("CONTACT", 7)
    shown = pbx.call(public_id)
    assert shown["CALL_ID"] == registered["CALL_ID"]
    assert (shown["crm_entity_type"], shown["crm_entity_id"]) == ("CONTACT", 7)
    assert kinds_and_states(pbx, public_id) == [("start", "delivered")]


def test_a_start_date_without_an_offset_keeps_the_zone_it_arrived_in(pbx: Pbx) -> None:
    """The admin changes the portal's time zone after a start arrived and before the worker
    sends it: Bitrix24 gets the moment the PBX meant (read in the zone of its arrival), the one
    the journal shows, not the same wall-clock time in the new zone."""
    set_portal(pbx.live, pbx.portal, timezone="Europe/Moscow")
    pbx.send("start", **START, CALL_START_DATE="2026-03-07T10:20:30")
    set_portal(pbx.live, pbx.portal, timezone="Asia/Almaty")

    pbx.deliver()

    (registered,) = pbx.portal.calls.values()
    sent = datetime.fromisoformat(registered["CALL_START_DATE"])
    assert sent == datetime(2026, 3, 7, 7, 20, 30, tzinfo=UTC)  # 10:20:30 in Moscow
    assert sent.utcoffset() == timedelta(hours=5)  # shown in the portal's zone now


def test_a_portal_that_shows_no_card_at_start_registers_with_show_0(pbx: Pbx) -> None:
    set_portal(pbx.live, pbx.portal, show_card=False)
    pbx.send("start", **START)

    pbx.deliver()

    assert card(pbx.portal) == []
    assert methods(steps(pbx)) == ["register"]


def test_the_whole_life_event_by_event(pbx: Pbx) -> None:
    """Each event alone, the worker running after each: the card follows the call, the one who
    answered finishes it, the recording is attached after the finish and its audio deleted."""
    public_id = pbx.send("start", **START)
    pbx.deliver()
    assert card(pbx.portal) == [2]

    assert pbx.send("ring", PBX_CALL_ID=CALL, USER_ID=[2, 3, 4]) == public_id
    pbx.deliver()
    assert card(pbx.portal) == [2, 3, 4]

    pbx.send("answer", PBX_CALL_ID=CALL, USER_ID=3)  # Clara
    pbx.deliver()
    assert card(pbx.portal) == [3]

    pbx.send("finish", **FINISH)
    pbx.deliver()
    (done,) = finished(pbx.portal)
    assert done["PORTAL_USER_ID"] == 3 and done["CALL_DURATION"] == 42

    assert pbx.upload(wav_bytes(0.5)).status_code == 202
    pbx.deliver()

    call_id = bitrix_call_id(pbx.portal)
    assert call_id is not None
    assert pbx.portal.records[call_id]["FILENAME"].endswith(".wav")
    assert [(s.method, s.users) for s in steps(pbx)] == [
        ("register", (2,)),
        ("show", (3, 4)),
        ("hide", (2, 4)),
        ("finish", (3,)),
        ("attachrecord", ()),
    ]
    recording = stored_recording(pbx.live.app, public_id)
    assert recording is not None
    assert recording.state == "attached" and recording.content is None
    shown = pbx.call(public_id)
    assert shown["state"] == "delivered" and shown["CALL_ID"] == call_id
    assert shown["recording"]["state"] == "attached"
    assert {state for _, state in kinds_and_states(pbx, public_id)} == {"delivered"}


def test_an_answer_in_the_same_round_as_the_start_hides_the_starts_card(pbx: Pbx) -> None:
    """The start's register shows the card to the start's employee (show_card 1); Clara
    answers before the worker ran: the card must leave Boris's screen."""
    pbx.send("start", **START)
    pbx.send("answer", PBX_CALL_ID=CALL, USER_ID=3)

    pbx.deliver()

    assert card(pbx.portal) == [3]


def test_an_answer_by_an_extension_never_takes_the_card_from_the_one_who_answered(
    pbx: Pbx,
) -> None:
    """Clara answers by her extension 102 (UF_PHONE_INNER in her profile; the portal has no
    mapping imported): whoever else loses the card, she must keep it."""
    pbx.send("start", **START, SHOW=0)
    pbx.send("ring", PBX_CALL_ID=CALL, USER_ID=[2, 3])
    pbx.deliver()
    pbx.send("answer", PBX_CALL_ID=CALL, USER_PHONE_INNER="102")

    pbx.deliver()

    assert 3 in card(pbx.portal)
    pbx.send("finish", **FINISH)
    pbx.deliver()
    assert finished(pbx.portal)[0]["PORTAL_USER_ID"] == 3


def test_a_ring_to_several_is_one_show_to_all_of_them(pbx: Pbx) -> None:
    """By USER_ID and by an extension of the portal's mapping (show takes only user ids)."""
    with pbx.live.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, pbx.portal.member_id)
        assert row is not None
        mapping.replace(session, row, {"100": 1})
    pbx.send("start", **START, SHOW=0)
    pbx.send("ring", PBX_CALL_ID=CALL, USER_ID=[2, 3], USER_PHONE_INNER=["100"])

    pbx.deliver()

    shows = [s for s in steps(pbx) if s.method == "show"]
    assert [s.users for s in shows] == [(1, 2, 3)]
    assert card(pbx.portal) == [1, 2, 3]


def test_a_ring_group_of_twenty_is_one_show_with_twenty_users(live_app: LiveApp) -> None:
    staff = [DevUser(n, f"Agent{n}", "Queue", admin=n == 1) for n in range(1, 22)]
    pbx = connect(live_app, users=staff)
    group = list(range(2, 22))
    pbx.send("start", **START, SHOW=0)
    pbx.send("ring", PBX_CALL_ID=CALL, USER_ID=group)
    pbx.send("answer", PBX_CALL_ID=CALL, USER_ID=7)
    pbx.send("finish", **FINISH)

    pbx.deliver()

    assert [(s.method, len(s.users)) for s in steps(pbx)] == [
        ("register", 1),
        ("show", 20),
        ("hide", 19),
        ("finish", 1),
    ]
    assert finished(pbx.portal)[0]["PORTAL_USER_ID"] == 7


def test_a_finish_naming_its_employee_wins_over_the_last_answer(pbx: Pbx) -> None:
    pbx.send("start", **START)
    pbx.send("answer", PBX_CALL_ID=CALL, USER_ID=3)
    pbx.send("finish", **FINISH, USER_ID=4)

    pbx.deliver()

    assert finished(pbx.portal)[0]["PORTAL_USER_ID"] == 4


def test_a_ring_or_answer_after_the_finish_shows_no_card(pbx: Pbx) -> None:
    public_id = pbx.send("start", **START)
    pbx.send("finish", **FINISH)
    pbx.deliver()
    pbx.send("ring", PBX_CALL_ID=CALL, USER_ID=[3, 4])
    pbx.send("answer", PBX_CALL_ID=CALL, USER_ID=3)

    pbx.deliver()

    assert methods(steps(pbx)) == ["register", "finish"]
    assert {state for _, state in kinds_and_states(pbx, public_id)} == {"delivered"}


# --- out of order ------------------------------------------------------------------------------


def test_a_finish_before_its_start_waits_then_goes_after_the_register(pbx: Pbx) -> None:
    public_id = pbx.send("finish", **FINISH)
    pbx.deliver()

    assert steps(pbx) == []
    shown = pbx.call(public_id)
    assert shown["state"] == "queued"
    (finish,) = shown["events"]
    assert finish["state"] == "queued" and finish["note"] == lifecycle.WAITING_FOR_START

    assert pbx.send("start", **START) == public_id
    pbx.deliver()

    found = steps(pbx)
    assert methods(found) == ["register", "finish"]  # once each, the register first
    assert found[1].users == (2,)  # the start's employee: nobody answered
    assert len(finished(pbx.portal)) == 1
    assert pbx.call(public_id)["state"] == "delivered"


def test_an_answer_before_its_ring_shows_the_card_to_nobody_else(pbx: Pbx) -> None:
    pbx.send("start", **START, SHOW=0)
    pbx.deliver()
    pbx.send("answer", PBX_CALL_ID=CALL, USER_ID=3)
    pbx.send("ring", PBX_CALL_ID=CALL, USER_ID=[2, 3])  # late: it rang before the answer

    pbx.deliver()

    assert card(pbx.portal) == [3]
    assert [(s.method, s.users) for s in steps(pbx)] == [("register", (2,)), ("show", (3,))]
    pbx.send("finish", **FINISH)
    pbx.deliver()
    assert finished(pbx.portal)[0]["PORTAL_USER_ID"] == 3


def test_a_recording_before_the_finish_is_attached_after_it(pbx: Pbx) -> None:
    public_id = pbx.send("start", **START)
    assert pbx.upload(wav_bytes(0.2)).status_code == 202
    pbx.deliver()

    assert methods(steps(pbx)) == ["register"]
    record = next(e for e in pbx.call(public_id)["events"] if e["kind"] == "record")
    assert record["state"] == "queued" and record["note"] == lifecycle.WAITING_FOR_FINISH

    pbx.send("finish", **FINISH)
    pbx.deliver()

    assert methods(steps(pbx)) == ["register", "finish", "attachrecord"]
    assert pbx.call(public_id)["recording"]["state"] == "attached"


def test_all_events_at_once_go_in_one_batch_in_the_calls_order(pbx: Pbx) -> None:
    """Sent backwards, delivered in one worker round: one batch, commands in the call's order,
    the finish naming the register's CALL_ID in the same batch, then the recording."""
    assert pbx.upload(wav_bytes(0.2)).status_code == 202
    pbx.send("finish", **FINISH)
    pbx.send("ring", PBX_CALL_ID=CALL, USER_ID=[2, 3])
    pbx.send("answer", PBX_CALL_ID=CALL, USER_ID=3)
    public_id = pbx.send("start", **START)

    pbx.deliver()

    found = steps(pbx)
    assert methods(found) == ["register", "show", "hide", "finish", "attachrecord"]
    (batch,) = batches(pbx.live.dev, pbx.portal)
    assert {s.batch for s in found[:4]} == {batch["seq"]}
    assert found[3].users == (3,)
    assert pbx.call(public_id)["state"] == "delivered"


# --- repeats -----------------------------------------------------------------------------------


def test_three_repeats_of_every_event_change_nothing(pbx: Pbx) -> None:
    wav = wav_bytes(0.2)
    for _ in range(3):
        public_id = pbx.send("start", **START)
        assert pbx.send("ring", PBX_CALL_ID=CALL, USER_ID=[2, 3]) == public_id
        assert pbx.send("answer", PBX_CALL_ID=CALL, USER_ID=3) == public_id
        assert pbx.send("finish", **FINISH) == public_id
        upload = pbx.upload(wav)
        assert upload.status_code == 202 and upload.json()["id"] == public_id

    pbx.deliver()
    pbx.deliver(ahead=HOUR)  # nothing left to send, even later

    assert Counter(methods(steps(pbx))) == Counter(
        register=1, show=1, hide=1, finish=1, attachrecord=1
    )
    assert len(pbx.call(public_id)["events"]) == 5
    assert len(finished(pbx.portal)) == 1


# --- a transfer ----------------------------------------------------------------------------------


def test_a_transfer_moves_the_card_and_the_finish_to_the_new_employee(pbx: Pbx) -> None:
    pbx.send("start", **START, SHOW=0)
    pbx.send("ring", PBX_CALL_ID=CALL, USER_ID=[2, 3])
    pbx.send("answer", PBX_CALL_ID=CALL, USER_ID=2)
    pbx.deliver()
    assert card(pbx.portal) == [2]

    pbx.send("ring", PBX_CALL_ID=CALL, USER_ID=4)  # Boris transfers to Dmitri
    pbx.deliver()
    assert card(pbx.portal) == [2, 4]
    pbx.send("answer", PBX_CALL_ID=CALL, USER_ID=4)
    pbx.deliver()
    assert card(pbx.portal) == [4]

    pbx.send("finish", **FINISH)
    pbx.deliver()

    assert finished(pbx.portal)[0]["PORTAL_USER_ID"] == 4
    assert [(s.method, s.users) for s in steps(pbx)] == [
        ("register", (2,)),
        ("show", (2, 3)),
        ("hide", (3,)),
        ("show", (4,)),
        ("hide", (2,)),
        ("finish", (4,)),
    ]


def test_a_transfer_back_returns_the_card_and_the_finish_while_repeats_change_nothing(
    pbx: Pbx,
) -> None:
    """A → B → A (a consultation that comes back): the third answer is a new event, not a
    repeat of the first; a repeat of the latest answer is still nothing new."""
    public_id = pbx.send("start", **START, SHOW=0)
    for user in (2, 4, 4, 2, 2):  # Boris, Dmitri (sent twice), Boris again (sent twice)
        pbx.send("answer", PBX_CALL_ID=CALL, USER_ID=user)
        pbx.deliver()
    assert card(pbx.portal) == [2]
    pbx.send("finish", **FINISH)
    pbx.deliver()

    assert [e for e in kinds_and_states(pbx, public_id) if e[0] == "answer"] == [
        ("answer", "delivered")
    ] * 3
    assert finished(pbx.portal)[0]["PORTAL_USER_ID"] == 2
    assert [(s.method, s.users) for s in steps(pbx) if s.method in ("show", "hide")] == [
        ("show", (2,)),
        ("show", (4,)),
        ("hide", (2,)),
        ("show", (2,)),
        ("hide", (4,)),
    ]


# --- a call that never started; a call Bitrix24 registered --------------------------------------


def test_a_finish_without_any_start_waits_an_hour_then_fails_no_start(pbx: Pbx) -> None:
    public_id = pbx.send("finish", PBX_CALL_ID=CALL, DURATION=5)
    pbx.deliver()

    shown = pbx.call(public_id)
    assert shown["state"] == "queued"
    assert "start" in (shown["events"][0]["note"] or "").lower()

    pbx.deliver(ahead=HOUR + 60)

    shown = pbx.call(public_id)
    assert shown["state"] == "failed" and shown["error_code"] == "NO_START"
    assert shown["events"][0]["state"] == "failed"
    assert [e for e in pbx.live.dev.journal if str(e.get("method")).startswith("telephony.")] == []


def test_a_start_arriving_after_its_finish_gave_up_leaves_no_card_open(pbx: Pbx) -> None:
    """The finish waited its hour for the start and failed NO_START; then the start arrives
    (a PBX replaying its backlog). Bitrix24 must not be left with a call whose card pops up
    and never closes: the call ends up finished once, or not registered at all."""
    public_id = pbx.send("finish", **FINISH)
    pbx.deliver(ahead=HOUR + 60)
    assert pbx.call(public_id)["error_code"] == "NO_START"

    pbx.send("start", **START)
    pbx.deliver(ahead=HOUR + 60)

    assert pbx.portal.calls == {}  # no registered call left open, no card on anyone's screen
    assert len(finished(pbx.portal)) <= 1


def test_a_click_to_call_start_binds_bitrix24s_call_and_registers_nothing(pbx: Pbx) -> None:
    (call_id,) = register_on_portal(pbx.live.dev, pbx.portal, 1, SHOW=0)
    public_id = pbx.send("start", **START, CALL_ID=call_id)
    pbx.send("ring", PBX_CALL_ID=CALL, USER_ID=3)
    pbx.send("answer", PBX_CALL_ID=CALL, USER_ID=3)
    pbx.send("finish", **FINISH)

    pbx.deliver()
    pbx.deliver(ahead=HOUR)

    found = steps(pbx, call_id=call_id)
    assert methods(found) == ["show", "finish"]  # no register; the finish once
    assert found[-1].users == (3,)
    assert [r["CALL_ID"] for r in pbx.portal.statistics] == [call_id]
    assert pbx.call(public_id)["CALL_ID"] == call_id


# --- a register whose outcome is unknown ----------------------------------------------------------


def registers(pbx: Pbx) -> int:
    return sum(1 for s in steps(pbx) if s.method == "register")


def test_a_lost_register_answer_resent_within_the_window_is_the_same_call(pbx: Pbx) -> None:
    public_id = pbx.send("start", **START)
    faults.spoil_answers(pbx.live.dev, pbx.portal, "truncated", times=1)
    pbx.deliver()
    assert pbx.call(public_id)["error_code"] == OUTCOME_UNKNOWN
    assert len(pbx.portal.calls) == 1  # it ran

    pbx.deliver(ahead=61)

    assert registers(pbx) == 2
    assert len(pbx.portal.calls) == 1  # one call in Bitrix24: the register page's 30 minutes
    shown = pbx.call(public_id)
    assert shown["state"] == "delivered" and shown["CALL_ID"] == bitrix_call_id(pbx.portal)


def _map_extension(pbx: Pbx, extension: str, user_id: int) -> None:
    with pbx.live.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, pbx.portal.member_id)
        assert row is not None
        mapping.replace(session, row, {extension: user_id})


@pytest.mark.parametrize(
    "changed", ["fallback employee", "fallback employee removed", "extension's employee"]
)
def test_a_lost_register_answer_is_resent_to_the_same_employee_after_settings_change(
    pbx: Pbx, changed: str
) -> None:
    """The repeat must carry the first register's key fields (the register page matches repeats
    by them): an admin choosing another fallback employee, or mapping the extension to someone
    else, meanwhile would otherwise make a second Bitrix24 call, its card left open on the first
    employee's screen."""
    start = {key: value for key, value in START.items() if key != "USER_ID"}
    if changed.startswith("fallback employee"):
        set_portal(pbx.live, pbx.portal, fallback_user_id=2)
    else:
        _map_extension(pbx, "201", 2)
        start["USER_PHONE_INNER"] = "201"
    public_id = pbx.send("start", **start, SHOW=1)
    faults.spoil_answers(pbx.live.dev, pbx.portal, "html200", times=1)
    pbx.deliver()
    assert pbx.call(public_id)["error_code"] == OUTCOME_UNKNOWN
    if changed == "fallback employee":
        set_portal(pbx.live, pbx.portal, fallback_user_id=3)
    elif changed == "fallback employee removed":
        set_portal(pbx.live, pbx.portal, fallback_user_id=None)
    else:
        _map_extension(pbx, "201", 3)

    pbx.deliver(ahead=61)

    assert registers(pbx) == 2
    assert len(pbx.portal.calls) == 1  # the same call: no second card
    assert card(pbx.portal) == [2]
    assert pbx.call(public_id)["state"] == "delivered"


def test_a_lost_register_answer_is_not_resent_after_25_minutes_until_requeued(pbx: Pbx) -> None:
    public_id = pbx.send("start", **START)
    faults.spoil_answers(pbx.live.dev, pbx.portal, "truncated", times=1)
    pbx.deliver()
    pbx.send("finish", **FINISH)

    pbx.deliver(ahead=26 * 60)

    shown = pbx.call(public_id)
    assert shown["state"] == "failed" and shown["error_code"] == lifecycle.REGISTER_UNCERTAIN
    assert shown["CALL_ID"] is None
    assert registers(pbx) == 1  # nothing registered again

    start, finish = stored_events(pbx.live.app, public_id)
    assert finish.state == "failed"  # it needed the start's CALL_ID
    with pbx.live.app.app_context(), get_db().write() as session:
        moved = outbox.requeue(
            session,
            portal_id=portal_id(pbx.live, pbx.portal),
            event_ids=[start.id],
            now=utcnow(),
        )
    assert moved == [public_id]
    pbx.deliver(ahead=26 * 60)

    shown = pbx.call(public_id)  # the finish went back with its start ("deliver again" once)
    assert shown["state"] == "delivered" and shown["CALL_ID"] is not None
    assert registers(pbx) == 2
    assert len(finished(pbx.portal)) == 1


def test_a_lost_answer_to_register_and_finish_is_looked_up_not_sent_again(
    pbx: Pbx,
) -> None:
    public_id = pbx.send("start", **START)
    pbx.send("finish", **FINISH)
    faults.spoil_answers(pbx.live.dev, pbx.portal, "truncated", times=1)
    pbx.deliver()  # the register and the finish ran; their answer was lost
    finished_call = finished(pbx.portal)[0]["CALL_ID"]

    pbx.deliver(ahead=61)  # looked up in the statistics: found finished

    assert methods(steps(pbx)) == ["register", "finish"]
    shown = pbx.call(public_id)
    assert shown["state"] == "delivered" and shown["CALL_ID"] == finished_call


# --- recordings --------------------------------------------------------------------------------


@pytest.fixture
def record_server() -> Iterator[RecordServer]:
    server = RecordServer()
    yield server
    server.stop()


def started_and_finished(pbx: Pbx) -> str:
    public_id = pbx.send("start", **START)
    pbx.send("finish", **FINISH)
    return public_id


@pytest.mark.parametrize(
    ("audio", "body"), [("mp3", mp3_bytes(20_000)), ("wav", wav_bytes(0.5))], ids=["mp3", "wav"]
)
def test_a_recording_by_url_is_downloaded_and_attached(
    pbx: Pbx, record_server: RecordServer, audio: str, body: bytes
) -> None:
    record_server.routes[f"/rec/{CALL}.{audio}"] = Route(body=body)
    public_id = started_and_finished(pbx)
    pbx.send("record", PBX_CALL_ID=CALL, RECORD_URL=f"{record_server.url}/rec/{CALL}.{audio}")

    pbx.deliver()

    call_id = bitrix_call_id(pbx.portal)
    assert call_id is not None
    attached = pbx.portal.records[call_id]
    assert attached["FILENAME"].endswith(f".{audio}") and attached["size"] == len(body)
    assert methods(steps(pbx)) == ["register", "finish", "attachrecord"]
    recording = stored_recording(pbx.live.app, public_id)
    assert recording is not None
    assert (recording.state, recording.audio, recording.content) == ("attached", audio, None)


def test_a_finishs_record_url_is_attached_never_sent_with_the_finish(
    pbx: Pbx, record_server: RecordServer
) -> None:
    """finish's RECORD_URL parameter is deprecated: b24app fetches the file and attaches it."""
    record_server.routes["/rec/call.wav"] = Route(body=wav_bytes(0.3))
    public_id = pbx.send("start", **START)
    pbx.send("finish", **FINISH, RECORD_URL=f"{record_server.url}/rec/call.wav")

    pbx.deliver()
    pbx.deliver()  # (a download that ends within the first run's round: bugs-E.md E3)

    found = steps(pbx)
    assert methods(found) == ["register", "finish", "attachrecord"]
    assert "RECORD_URL" not in found[1].params
    assert pbx.call(public_id)["recording"]["state"] == "attached"


@pytest.mark.parametrize(
    ("audio", "body"), [("mp3", mp3_bytes(20_000)), ("wav", wav_bytes(0.5))], ids=["mp3", "wav"]
)
def test_an_uploaded_recording_is_attached(pbx: Pbx, audio: str, body: bytes) -> None:
    public_id = started_and_finished(pbx)
    assert pbx.upload(body, name=f"{CALL}.bin").status_code == 202

    pbx.deliver()

    call_id = bitrix_call_id(pbx.portal)
    assert call_id is not None
    assert pbx.portal.records[call_id]["FILENAME"] == f"{CALL}.{audio}"
    assert pbx.call(public_id)["recording"] == {
        "state": "attached",
        "audio": audio,
        "size": len(body),
        "error": None,
    }


def test_an_upload_that_is_not_audio_is_422_and_stores_nothing(pbx: Pbx) -> None:
    answer = pbx.upload(b"<html>not a recording</html>" * 50, name="call.wav")

    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["FILE"]
    assert pbx.live.dev.journal[-1].get("method") != "telephony.externalcall.attachrecord"


def test_a_url_that_is_not_audio_fails_the_record_event_and_the_call_is_finished(
    pbx: Pbx, record_server: RecordServer
) -> None:
    record_server.routes["/rec/page.mp3"] = Route(body=b"<html>Not Found</html>" * 40)
    public_id = started_and_finished(pbx)
    pbx.send("record", PBX_CALL_ID=CALL, RECORD_URL=f"{record_server.url}/rec/page.mp3")

    pbx.deliver()

    shown = pbx.call(public_id)
    record = next(e for e in shown["events"] if e["kind"] == "record")
    assert record["state"] == "failed" and "mp3 or wav" in record["error"]
    assert shown["recording"]["state"] == "failed"
    assert shown["state"] == "failed" and shown["error_code"] == "NOT_AUDIO"
    assert methods(steps(pbx)) == ["register", "finish"]  # the call itself was finished


def test_delivering_a_failed_recording_again_downloads_it_anew_and_attaches_it(
    pbx: Pbx, record_server: RecordServer
) -> None:
    """The admin fixed what the PBX serves at RECORD_URL and delivered the call again: the
    recording is downloaded anew and attached. It used to stay queued for good, the worker
    spinning through empty rounds that booked the portal's throttle hours ahead."""
    record_server.routes["/rec/1.wav"] = Route(body=b"<html>Not Found</html>" * 40)
    public_id = started_and_finished(pbx)
    pbx.send("record", PBX_CALL_ID=CALL, RECORD_URL=f"{record_server.url}/rec/1.wav")
    pbx.deliver()
    assert pbx.call(public_id)["error_code"] == "NOT_AUDIO"
    record_server.routes["/rec/1.wav"] = Route(body=wav_bytes(0.5))
    with pbx.live.app.app_context(), get_db().write() as session:
        moved = outbox.requeue(
            session,
            portal_id=portal_id(pbx.live, pbx.portal),
            error_code="NOT_AUDIO",
            now=utcnow(),
        )
    assert moved == [public_id]

    worker = Worker(pbx.live.app)
    running = threading.Thread(target=worker.run, kwargs={"once": True})
    running.start()
    running.join(timeout=30)
    went_round_in_circles = running.is_alive()
    worker.stop()
    running.join(timeout=10)
    assert not went_round_in_circles

    shown = pbx.call(public_id)
    assert shown["state"] == "delivered" and shown["recording"]["state"] == "attached"
    assert methods(steps(pbx)) == ["register", "finish", "attachrecord"]
    assert len(pbx.portal.records) == 1


def test_an_unreachable_recording_is_retried_and_shown_then_attached(pbx: Pbx) -> None:
    port = free_port()
    public_id = started_and_finished(pbx)
    pbx.send("record", PBX_CALL_ID=CALL, RECORD_URL=f"http://127.0.0.1:{port}/rec/{CALL}.wav")

    pbx.deliver()

    shown = pbx.call(public_id)
    assert shown["recording"]["state"] == "fetching"
    assert "could not download" in shown["recording"]["error"]
    record = next(e for e in shown["events"] if e["kind"] == "record")
    assert record["state"] == "queued"
    assert methods(steps(pbx)) == ["register", "finish"]

    server = RecordServer(port=port)  # the PBX's recording server is back
    try:
        server.routes[f"/rec/{CALL}.wav"] = Route(body=wav_bytes(0.3))
        pbx.deliver(ahead=60)  # past the download's backoff
    finally:
        server.stop()

    assert pbx.call(public_id)["recording"]["state"] == "attached"
    assert methods(steps(pbx)) == ["register", "finish", "attachrecord"]


def test_a_recording_larger_than_the_cap_fails_with_the_reason(
    pbx: Pbx, record_server: RecordServer
) -> None:
    record_server.routes["/rec/huge.wav"] = Route(endless=wav_bytes(1.0))  # never ends
    public_id = started_and_finished(pbx)
    pbx.send("record", PBX_CALL_ID=CALL, RECORD_URL=f"{record_server.url}/rec/huge.wav")

    pbx.deliver()

    shown = pbx.call(public_id)
    assert shown["recording"]["state"] == "failed"
    assert "B24APP_RECORD_MAX_BYTES" in shown["recording"]["error"]
    assert shown["error_code"] == "TOO_LARGE"
    assert methods(steps(pbx)) == ["register", "finish"]


def test_an_upload_larger_than_the_cap_is_413(pbx: Pbx) -> None:
    cap = pbx.live.app.config["SETTINGS"].record_max_bytes
    data = wav_bytes(0.1)
    answer = pbx.upload(data + bytes(cap + 1 - len(data)))

    assert answer.status_code == 413
    assert [e["field"] for e in answer.json()["errors"]] == ["FILE"]
