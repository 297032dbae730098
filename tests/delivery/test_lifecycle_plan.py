"""lifecycle.plan on its own (no database, no network): a batch with no room left."""

from __future__ import annotations

from datetime import UTC, datetime

from b24app.delivery import lifecycle
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
