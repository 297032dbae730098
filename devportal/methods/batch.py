"""`batch`: up to 50 REST calls in one request (settings/how-to-call-rest-api/batch.md).

The request passes the endpoint's checks once (one token from the rate bucket, limits.md); each
command then runs through `dispatch.execute(..., in_batch=True)`, so it meets its own scope and
its own method's time budget, and it gets its own journal entry pointing at the batch's entry.

Behaviour taken from the page:
- `cmd` is an array (integer keys) or an object of `key -> "method?param=value&..."`; the query is
  parsed like any REST request (PHP brackets, settings/how-to-call-rest-api/data-encoding.md).
- `halt` (true/false, 1/0, default false): with halt the chain stops at the first error.
- Commands beyond the 50th "end with an error ERROR_BATCH_LENGTH_EXCEEDED"; a nested batch ends
  with ERROR_BATCH_METHOD_NOT_ALLOWED. Both land in `result_error`: the batch itself answers 200.
- `$result[key][field]` (and `$result[key][0][ID]` for list results) is replaced with that value
  of an earlier command. The page's BX24.js example sends the reference URL-encoded, so values
  are substituted after the query is decoded, which serves both spellings.
- Response: `result`, `result_error`, `result_total`, `result_next`, `result_time`, keyed by the
  command keys; empty ones are `[]`.

[INFERRED] Not on the page, taken from PHP, which serves this JSON: numeric keys (a list `cmd`,
or `"0"` as an object key) are integers, and a map whose keys are exactly 0..n-1 is serialized as
a JSON array (`json_encode`). A reference to a missing value becomes "" (PHP's null as a string);
a reference that is a whole parameter value and names an array puts that array in its place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from b24app.bitrix.encoding import unflatten
from devportal import dispatch
from devportal.errors import RestError, system_error
from devportal.methods import Call, Page, method

MAX_COMMANDS = 50  # batch.md: "A single batch contains no more than 50 subqueries"
_REFERENCE = re.compile(r"\$result\[([^\[\]]+)\]((?:\[[^\[\]]*\])*)")
_PART = re.compile(r"\[([^\[\]]*)\]")
_PHP_INT = re.compile(r"^(0|-?[1-9][0-9]*)$")

Key = int | str


@dataclass
class Outcome:
    """What the commands produced so far, keyed by command key."""

    result: dict[Key, Any] = field(default_factory=dict)
    error: dict[Key, Any] = field(default_factory=dict)
    total: dict[Key, int] = field(default_factory=dict)
    next: dict[Key, int] = field(default_factory=dict)
    time: dict[Key, dict[str, Any]] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "result": php_array(self.result),
            "result_error": php_array(self.error),
            "result_total": php_array(self.total),
            "result_next": php_array(self.next),
            "result_time": php_array(self.time),
        }


@method("batch", batchable=False)
def batch(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Run the commands in order; a command's failure is its own, never the batch's."""
    halt = is_true(params.get("halt", False))
    outer = dispatch.journal_entry.get()
    batch_seq = outer.get("seq") if outer else None
    outcome = Outcome()
    for index, (key, command) in enumerate(commands(params.get("cmd"))):
        error = run_command(call, outcome, index, key, command, batch_seq)
        if error is not None and halt:
            break
    return outcome.body()


def commands(cmd: Any) -> list[tuple[Key, str]]:
    """`cmd` as (key, command) pairs in the order given; a list gives keys 0, 1, 2..."""
    if isinstance(cmd, list):
        return [(index, str(value)) for index, value in enumerate(cmd)]
    if isinstance(cmd, dict):
        return [(php_key(key), str(value)) for key, value in cmd.items()]
    return []


def run_command(
    call: Call, outcome: Outcome, index: int, key: Key, command: str, batch_seq: int | None
) -> RestError | None:
    """Run one command, file its result or error under `key`, journal it; return its error."""
    name, _, query = command.partition("?")
    name = name.strip().removesuffix(".json")
    params = substitute(unflatten(parse_qsl(query, keep_blank_values=True)), outcome.result)
    params.pop("auth", None)  # the batch's own token runs every command
    entry = _journal_entry(call, name, params, key, batch_seq)
    try:
        if index >= MAX_COMMANDS:
            raise system_error("ERROR_BATCH_LENGTH_EXCEEDED")
        result, time_info = dispatch.execute(
            call.state, call.portal, call.token, name, params, in_batch=True
        )
    except RestError as error:
        outcome.error[key] = error.body()
        entry.update(status=error.status, error=error.code)
        call.state.record(entry)
        return error
    _file_result(outcome, key, result, time_info)
    entry.update(status=200, error=None)
    call.state.record(entry)
    return None


def _file_result(outcome: Outcome, key: Key, result: Any, time_info: dict[str, Any]) -> None:
    if isinstance(result, Page):
        outcome.result[key] = result.items
        outcome.total[key] = result.total
        if result.next is not None:
            outcome.next[key] = result.next
    else:
        outcome.result[key] = result
    outcome.time[key] = time_info


def _journal_entry(
    call: Call, name: str, params: dict[str, Any], key: Key, batch_seq: int | None
) -> dict[str, Any]:
    return {
        "ts": call.state.now(),
        "portal": call.portal.code,
        "member_id": call.portal.member_id,
        "http_method": None,  # not an HTTP request of its own
        "method": name.lower(),
        "params": params,
        "client_id": call.token.client_id,
        "user_id": call.token.user_id,
        "batch": batch_seq,
        "cmd": key,
    }


# --- references to earlier results -------------------------------------------------------------
def substitute(value: Any, results: dict[Key, Any]) -> Any:
    """Replace `$result[key][field]...` in every string of a decoded parameter structure."""
    if isinstance(value, dict):
        return {k: substitute(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, results) for v in value]
    if not isinstance(value, str) or "$result[" not in value:
        return value
    whole = _REFERENCE.fullmatch(value)
    if whole:
        found = resolve(whole, results)
        if isinstance(found, dict | list):
            return found
    return _REFERENCE.sub(lambda match: php_string(resolve(match, results)), value)


def resolve(match: re.Match[str], results: dict[Key, Any]) -> Any:
    """The value a reference names, or None when there is none."""
    node: Any = results.get(php_key(match.group(1)))
    for part in _PART.findall(match.group(2)):
        if isinstance(node, dict):
            node = node.get(part, node.get(php_key(part)))
        elif isinstance(node, list) and _PHP_INT.match(part) and 0 <= int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


# --- PHP conventions ---------------------------------------------------------------------------
def php_key(key: Any) -> Key:
    """PHP turns decimal-integer array keys into integers ("0" and 0 are the same key)."""
    text = str(key)
    return int(text) if _PHP_INT.match(text) else text


def php_array(values: dict[Key, Any]) -> dict[str, Any] | list[Any]:
    """`json_encode` of a PHP array: a list when the keys are 0..n-1 in order (so empty is [])."""
    if list(values) == list(range(len(values))):
        return list(values.values())
    return {str(key): value for key, value in values.items()}


def php_string(value: Any) -> str:
    """A value as PHP prints it into a string: true "1", false and null ""."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, dict | list):
        return ""
    return str(value)


def is_true(value: Any) -> bool:
    """batch.md: halt accepts true/false or 1/0."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true")
    return bool(value)
