"""lifecycle.plan on its own (no database, no network): a batch with no room left, and the
line adds (telephony.externalLine.add) in the batch's room."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from b24app.bitrix.client import BatchResult
from b24app.bitrix.errors import BitrixError
from b24app.delivery import lifecycle
from b24app.delivery.batching import MAX_COMMANDS
from b24app.delivery.lifecycle import CallFacts, EventView
from b24app.portals.settings import Preferences

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
FACTS = CallFacts(
    id=7, bitrix_call_id=None, shown_to=(), register_sent_at=None, use_fallback_user=False,
    recordings={},
)  # fmt: skip
EVENTS = [
    EventView(1, "start", {"PBX_CALL_ID": "p", "PHONE_NUMBER": "+1555", "TYPE": 2, "USER_ID": 2},
              "queued", NOW),
    EventView(2, "finish", {"PBX_CALL_ID": "p", "DURATION": 5}, "queued", NOW),
]  # fmt: skip


def plan(budget: int) -> lifecycle.Plan:
    return lifecycle.plan(FACTS, EVENTS, Preferences(), lambda _ext: None, now=NOW, budget=budget)


def test_a_full_batch_plans_nothing_and_says_the_call_goes_next_round() -> None:
    planned = plan(0)
    assert planned.steps == [] and planned.cut and planned.settled == {}


def test_room_for_one_command_sends_the_register_and_leaves_the_finish() -> None:
    planned = plan(1)
    assert [s.method for s in planned.steps] == [lifecycle.REGISTER] and planned.cut


def test_room_for_both_sends_register_then_finish_naming_its_call_id() -> None:
    planned = plan(2)
    assert [s.method for s in planned.steps] == [lifecycle.REGISTER, lifecycle.FINISH]
    assert planned.steps[1].params["CALL_ID"] == "$result[r7][CALL_ID]" and not planned.cut


# --- the line's add (external_lines.py) ----------------------------------------------------------

LINE = "74951234567"


def call_on_line(call_id: int, line: str = LINE) -> tuple[CallFacts, list[EventView]]:
    facts = replace(FACTS, id=call_id)
    start = {"PBX_CALL_ID": f"p{call_id}", "PHONE_NUMBER": "+1555", "TYPE": 2, "USER_ID": 2,
             "LINE_NUMBER": line}  # fmt: skip
    return facts, [
        EventView(call_id * 10, "start", start, "queued", NOW),
        EventView(call_id * 10 + 1, "finish", {"PBX_CALL_ID": f"p{call_id}", "DURATION": 5},
                  "queued", NOW),
    ]  # fmt: skip


def plan_on_line(call_id: int, budget: int, add_line: Callable[[str], bool]) -> lifecycle.Plan:
    facts, events = call_on_line(call_id)
    return lifecycle.plan(
        facts, events, Preferences(), lambda _ext: None, now=NOW, budget=budget, add_line=add_line
    )


def test_a_new_line_is_added_right_before_its_register_in_the_same_batch() -> None:
    planned = plan_on_line(7, 50, lambda number: number == LINE)
    assert [s.method for s in planned.steps] == [
        lifecycle.LINE_ADD, lifecycle.REGISTER, lifecycle.FINISH
    ]  # fmt: skip
    add, register = planned.steps[0], planned.steps[1]
    assert add.params == {"NUMBER": LINE} and register.params["LINE_NUMBER"] == LINE
    assert planned.cost == 3 and not planned.cut


def test_a_known_line_costs_nothing() -> None:
    planned = plan_on_line(7, 50, lambda _number: False)
    assert [s.method for s in planned.steps] == [lifecycle.REGISTER, lifecycle.FINISH]


def test_the_add_never_travels_without_its_register() -> None:
    assert plan_on_line(7, 1, lambda _n: True).steps == []
    assert plan_on_line(7, 1, lambda _n: True).cut
    two = plan_on_line(7, 2, lambda _n: True)
    assert [s.method for s in two.steps] == [lifecycle.LINE_ADD, lifecycle.REGISTER] and two.cut


def test_the_batch_keeps_to_50_commands_with_the_adds_included() -> None:
    """deliver.py's loop: each call planned with the room left; each line added once."""
    planned_lines: set[str] = set()
    steps: list[lifecycle.Step] = []
    budget = MAX_COMMANDS
    for call_id in range(1, 40):
        facts, events = call_on_line(call_id, line=f"line-{call_id % 7}")
        planned = lifecycle.plan(
            facts, events, Preferences(), lambda _ext: None, now=NOW, budget=budget,
            add_line=lambda number: number not in planned_lines,
        )  # fmt: skip
        planned_lines.update(s.params["NUMBER"] for s in planned.steps if s.role == "line")
        steps += planned.steps
        budget -= planned.cost
    assert len(steps) == MAX_COMMANDS
    adds = [s.params["NUMBER"] for s in steps if s.method == lifecycle.LINE_ADD]
    assert sorted(adds) == sorted(f"line-{n}" for n in range(7))  # each new line once
    for n, step in enumerate(steps):  # every add right before a register on its line
        if step.method == lifecycle.LINE_ADD:
            assert steps[n + 1].method == lifecycle.REGISTER
            assert steps[n + 1].params["LINE_NUMBER"] == step.params["NUMBER"]


def test_settle_leaves_the_adds_answer_to_the_caller() -> None:
    """A refused add (ERROR_CORE "DB error") changes nothing for the call's events."""
    planned = plan_on_line(7, 50, lambda _n: True)
    batch = BatchResult(
        result={"r7": {"CALL_ID": "externalCall.1"}, "e71": {"CALL_ID": "externalCall.1"}},
        errors={"l7": BitrixError("ERROR_CORE", "DB error")},
        total={},
        time={},
    )
    settled = lifecycle.settle(FACTS, planned, batch)
    assert settled.errors == [] and settled.bitrix_call_id == "externalCall.1"
    assert {event_id: c.state for event_id, c in settled.changes.items()} == {
        70: "delivered", 71: "delivered"
    }  # fmt: skip


# --- recordings -----------------------------------------------------------------------------------


def test_a_queued_record_whose_download_failed_fails_rather_than_staying_due() -> None:
    """Only a failed download fails a recording, and it fails its event with it; should the
    event be queued anyway, the call must not be due again at once for ever (a worker going
    round in circles, booking the portal's throttle ahead)."""
    facts = replace(FACTS, bitrix_call_id="c.1", recordings={3: "failed"})
    events = [
        replace(EVENTS[0], state="delivered"),
        replace(EVENTS[1], state="delivered"),
        EventView(3, "record", {"PBX_CALL_ID": "p", "RECORD_URL": "https://pbx/1.wav"},
                  "queued", NOW),
    ]  # fmt: skip
    planned = lifecycle.plan(facts, events, Preferences(), lambda _ext: None, now=NOW, budget=50)
    assert planned.steps == [] and planned.attach == []
    assert planned.settled[3].state == "failed" and planned.settled[3].error_code == "NO_AUDIO"


def test_a_recording_downloaded_anew_waits_25_hours_from_its_new_start() -> None:
    """Delivered again days after the call, its download counts its own 25 hours."""
    old = datetime(2026, 11, 1, tzinfo=UTC)
    facts = replace(
        FACTS, bitrix_call_id="c.1", recordings={3: "fetching"}, recordings_since={3: NOW}
    )
    events = [
        replace(EVENTS[0], state="delivered", created_at=old),
        replace(EVENTS[1], state="delivered", created_at=old),
        EventView(3, "record", {"PBX_CALL_ID": "p", "RECORD_URL": "https://pbx/1.wav"},
                  "queued", old),
    ]  # fmt: skip
    planned = lifecycle.plan(facts, events, Preferences(), lambda _ext: None, now=NOW, budget=50)
    assert 3 not in planned.settled and planned.waiting[3] == lifecycle.WAITING_FOR_AUDIO
