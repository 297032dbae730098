"""Batches (≤ 50 commands): fitting calls into one, and looking calls up in the statistics.

settings/how-to-call-rest-api/batch.md: one request runs up to 50 commands; without `halt`
every command runs and answers on its own (`result[key]` or `result_error[key]`), and a command
may use an earlier one's answer as `$result[key][FIELD]`. The commands of a call's events are
lifecycle.py's (keys `r<call>` for its register, `e<event>…` for the rest); the look-ups are
here: `s<call>` asks voximplant.statistic.get whether a call was finished.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from b24app.bitrix.client import BatchResult
from b24app.bitrix.errors import BitrixError

if TYPE_CHECKING:
    from b24app.delivery.outbox import Claimed

MAX_COMMANDS = 50  # batch.md: "no more than 50 subqueries"
REGISTER = "telephony.externalCall.register"
FINISH = "telephony.externalCall.finish"
STATISTICS = "voximplant.statistic.get"

Commands = dict[str, tuple[str, dict[str, Any]]]
T = TypeVar("T")


def fit(items: Iterable[T], *, key: Callable[[T], int], budget: int = MAX_COMMANDS) -> list[T]:
    """The longest prefix of `items` (oldest first) whose commands fit in `budget`. Stops at the
    first that does not fit, so calls keep their order."""
    taken: list[T] = []
    used = 0
    for item in items:
        cost = key(item)
        if used + cost > budget:
            break
        taken.append(item)
        used += cost
    return taken


def split(
    items: Iterable[T], *, key: Callable[[T], int], budget: int = MAX_COMMANDS, limit: int = 1
) -> list[list[T]]:
    """Up to `limit` consecutive batches of `items` (oldest first), each the longest prefix of
    what is left that fits `budget` (`fit`); every item must fit a batch on its own."""
    rest = list(items)
    batches: list[list[T]] = []
    while rest and len(batches) < limit:
        taken = fit(rest, key=key, budget=budget)
        if not taken:
            break
        batches.append(taken)
        rest = rest[len(taken) :]
    return batches


# --- looking calls up ---------------------------------------------------------------------------


def lookup_commands(calls: Sequence[Claimed]) -> Commands:
    """voximplant.statistic.get per call: by CALL_ID when we know it, else by the
    EXTERNAL_CALL_ID we registered it with."""
    commands: Commands = {}
    for call in calls:
        if call.call_id:
            commands[f"s{call.id}"] = (STATISTICS, {"FILTER": {"CALL_ID": call.call_id}})
        elif call.external_call_id:
            commands[f"s{call.id}"] = (
                STATISTICS,
                {"FILTER": {"EXTERNAL_CALL_ID": call.external_call_id}},
            )
    return commands


@dataclass(frozen=True)
class Found:
    """A lookup's answer: the statistics record if the call was finished, or why we cannot tell."""

    record: dict[str, Any] | None
    error: BitrixError | None = None


def found(calls: Sequence[Claimed], batch: BatchResult) -> dict[int, Found]:
    return {call.id: _found(call, batch) for call in calls}


def _found(call: Claimed, batch: BatchResult) -> Found:
    key = f"s{call.id}"
    if key in batch.errors:
        return Found(None, batch.errors[key])
    rows = batch.result.get(key)
    if not isinstance(rows, list):
        return Found(None)
    for row in rows:
        if isinstance(row, dict) and _same_call(call, row):
            return Found(row)
    return Found(None)


def _same_call(call: Claimed, row: dict[str, Any]) -> bool:
    """Trust no filter blindly: the record must name this call (a portal that ignored the
    filter would otherwise make every call look finished)."""
    if call.call_id:
        return row.get("CALL_ID") == call.call_id
    return (
        call.external_call_id is not None and row.get("EXTERNAL_CALL_ID") == call.external_call_id
    )


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
