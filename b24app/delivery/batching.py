"""A portal's claimed calls as one `batch` (≤ 50 commands), and each command's answer per call.

settings/how-to-call-rest-api/batch.md: one request runs up to 50 commands; without `halt`
every command runs and answers on its own (`result[key]` or `result_error[key]`), and a command
may use an earlier one's answer as `$result[key][FIELD]`.

Keys name the call: `f<id>` finishes it, `r<id>` registers it first (a call the PBX never
registered: EXTERNAL_CALL_ID = PBX_CALL_ID, and finish gets `CALL_ID=$result[r<id>][CALL_ID]`),
`s<id>` looks it up in voximplant.statistic.get. So a call costs one command, or two when it must
be registered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from b24app.bitrix.client import BatchResult
from b24app.bitrix.errors import BitrixError
from b24app.delivery.params import (
    ParamsError,
    UserLookup,
    finish_params,
    register_params,
)
from b24app.portals.settings import Preferences

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


# --- delivering ---------------------------------------------------------------------------------


@dataclass
class Plan:
    """The commands of one batch and what could not be turned into commands."""

    commands: Commands = field(default_factory=dict)
    calls: list[Claimed] = field(default_factory=list)
    refused: dict[int, ParamsError] = field(default_factory=dict)


def plan(calls: Sequence[Claimed], prefs: Preferences, lookup: UserLookup) -> Plan:
    """register (when needed) and finish for each call, in the calls' order."""
    result = Plan()
    for call in calls:
        try:
            commands = call_commands(call, prefs, lookup)
        except ParamsError as error:
            result.refused[call.id] = error
            continue
        result.commands.update(commands)
        result.calls.append(call)
    if len(result.commands) > MAX_COMMANDS:
        raise ValueError(f"{len(result.commands)} commands do not fit one batch")
    return result


def call_commands(call: Claimed, prefs: Preferences, lookup: UserLookup) -> Commands:
    fallback = call.use_fallback_user
    if call.call_id:
        params = finish_params(call.request, prefs, lookup, call_id=call.call_id, fallback=fallback)
        return {f"f{call.id}": (FINISH, params)}
    reference = f"$result[r{call.id}][CALL_ID]"
    return {
        f"r{call.id}": (
            REGISTER,
            register_params(call.request, prefs, lookup, fallback=fallback),
        ),
        f"f{call.id}": (
            FINISH,
            finish_params(call.request, prefs, lookup, call_id=reference, fallback=fallback),
        ),
    }


@dataclass(frozen=True)
class Answer:
    """What Bitrix24 said about one call in a batch."""

    result: dict[str, Any] | None  # finish's answer when it succeeded
    error: BitrixError | None  # the first failing command's error
    registered_call_id: str | None  # CALL_ID register returned (kept so a retry only finishes)
    failed_step: str | None = None  # "register" or "finish"


def answer(call: Claimed, batch: BatchResult) -> Answer:
    registered: str | None = None
    if not call.call_id:
        key = f"r{call.id}"
        if key in batch.errors:  # finish then failed on an empty CALL_ID: not its own problem
            return Answer(None, batch.errors[key], None, "register")
        registered = _string((batch.result.get(key) or {}).get("CALL_ID"))
    key = f"f{call.id}"
    if key in batch.errors:
        return Answer(None, batch.errors[key], registered, "finish")
    finished = batch.result.get(key)
    if isinstance(finished, dict):
        return Answer(finished, None, registered)
    missing = BitrixError("NO_ANSWER", f"the batch answered nothing for {key}")
    return Answer(None, missing, registered, "finish")


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
