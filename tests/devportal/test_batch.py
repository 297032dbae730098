"""The development portal's `batch` (settings/how-to-call-rest-api/batch.md, digest §4.3).

The commands here call test-only methods registered below under `test.batch.*`, so that these
tests depend on nothing but the core and `batch` itself.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import requests

from b24app.bitrix.encoding import to_query
from devportal.errors import RestError
from devportal.methods import Call, Page, method
from devportal.state import DevPortal, DevState
from tests.devportal.conftest import Rest

PAGE_TOTAL = 120


@method("test.batch.echo")
def _echo(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Returns its parameters, so a test sees exactly what a command received."""
    return params


@method("test.batch.user")
def _user(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """Shaped like user.current (api-reference/user/user-current.md): string ID, department list."""
    return {"ID": str(call.user_id), "NAME": "Anna", "UF_DEPARTMENT": [7], "ACTIVE": True}


@method("test.batch.page")
def _page(call: Call, params: dict[str, Any]) -> Page:
    """A list method over PAGE_TOTAL records, 50 a page, paged by `start`."""
    start = int(params.get("start") or 0)
    items = [{"ID": str(n)} for n in range(start + 1, min(start + 50, PAGE_TOTAL) + 1)]
    return Page(items, PAGE_TOTAL, start + 50 if start + 50 < PAGE_TOTAL else None)


@method("test.batch.fail")
def _fail(call: Call, params: dict[str, Any]) -> Any:
    raise RestError("ERROR_CORE", "failed on purpose", 400)


@method("test.batch.scoped", scope="im")
def _scoped(call: Call, params: dict[str, Any]) -> bool:
    return True


@method("test.batch.slow")
def _slow(call: Call, params: dict[str, Any]) -> bool:
    """Takes `seconds` of the portal's clock, to spend a method's time budget without waiting."""
    call.state.advance(float(params.get("seconds") or 0))
    return True


def run_batch(rest: Rest, cmd: Any, **params: Any) -> dict[str, Any]:
    response = rest.call("batch", {"cmd": cmd, **params})
    assert response.status_code == 200, response.text
    body = response.json()
    return body["result"]


def test_independent_commands_have_the_documented_shape(rest: Rest) -> None:
    """batch.md, "Response Handling": result/result_error/result_total/result_next/result_time
    keyed by command; empty ones are []; `time` of the whole request."""
    response = rest.call(
        "batch", {"halt": 0, "cmd": {"me": "test.batch.user", "echo": "test.batch.echo?a=1"}}
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"result", "time"}
    result = body["result"]
    assert set(result) == {"result", "result_error", "result_total", "result_next", "result_time"}
    assert result["result"] == {
        "me": {"ID": "1", "NAME": "Anna", "UF_DEPARTMENT": [7], "ACTIVE": True},
        "echo": {"a": "1"},
    }
    assert result["result_error"] == []
    assert result["result_total"] == []
    assert result["result_next"] == []
    assert set(result["result_time"]) == {"me", "echo"}
    for timing in result["result_time"].values():
        assert {"start", "finish", "duration", "processing", "date_start", "date_finish"} <= set(
            timing
        )
    assert {"start", "finish", "duration", "processing", "date_start", "date_finish"} <= set(
        body["time"]
    )


def test_outer_batch_time_is_not_metered(rest: Rest, portal: DevPortal) -> None:
    """limits.md: "An external call to batch is not accounted for in operating"; the batch.md
    example's `time` has no operating fields."""
    body = rest.call("batch", {"cmd": {"a": "test.batch.echo"}}).json()

    assert "operating" not in body["time"]
    assert all(method != "batch" for _, method in portal.operating)
    assert "operating" in body["result"]["result_time"]["a"]  # the command itself is metered


def test_list_command_fills_result_total_and_result_next(rest: Rest) -> None:
    """batch.md, "Result Object": result_total for list methods; result_next only for subqueries
    that have a next page."""
    result = run_batch(
        rest,
        {"first": "test.batch.page", "last": "test.batch.page?start=100", "one": "test.batch.user"},
    )

    assert [item["ID"] for item in result["result"]["first"]][:2] == ["1", "2"]
    assert len(result["result"]["first"]) == 50
    assert result["result_total"] == {"first": PAGE_TOTAL, "last": PAGE_TOTAL}
    assert result["result_next"] == {"first": 50}


def test_result_references_are_substituted(rest: Rest) -> None:
    """batch.md, "Linked Calls": $result[key][field], nested paths and $result[key][0][ID] for
    list results are replaced before the dependent command runs."""
    result = run_batch(
        rest,
        {
            "me": "test.batch.user",
            "list": "test.batch.page?start=50",
            "use": "test.batch.echo?ID=$result[me][ID]&DEPT=$result[me][UF_DEPARTMENT][0]"
            "&FIRST=$result[list][0][ID]&filter[ID]=$result[list][1][ID]&note=id $result[me][ID]!",
        },
    )

    assert result["result"]["use"] == {
        "ID": "1",
        "DEPT": "7",
        "FIRST": "51",
        "filter": {"ID": "52"},
        "note": "id 1!",
    }


def test_encoded_references_and_values_with_separators(rest: Rest) -> None:
    """batch.md's BX24.js example passes `$result[...]` inside params that the SDK URL-encodes;
    a substituted value containing `&` or `=` stays one value (data-encoding.md)."""
    query = to_query({"ID": "$result[me][ID]", "TITLE": "$result[word][TITLE]"})
    assert "%24result%5Bme%5D" in query  # really encoded
    result = run_batch(
        rest,
        {
            "me": "test.batch.user",
            "word": "test.batch.echo?" + to_query({"TITLE": "John&Martin=1"}),
            "use": "test.batch.echo?" + query,
        },
    )

    assert result["result"]["use"] == {"ID": "1", "TITLE": "John&Martin=1"}


def test_reference_to_missing_value_is_empty_and_to_an_array_is_the_array(rest: Rest) -> None:
    """[INFERRED] batch.md does not say; PHP prints a missing value (null) as "". A parameter that
    is exactly a reference to an array receives the array."""
    result = run_batch(
        rest,
        {
            "me": "test.batch.user",
            "use": "test.batch.echo?MISSING=$result[me][NOPE]&NOCMD=$result[ghost][ID]"
            "&DEPTS=$result[me][UF_DEPARTMENT]",
        },
    )

    assert result["result"]["use"] == {"MISSING": "", "NOCMD": "", "DEPTS": [7]}


def test_errors_collect_in_result_error_without_halt(rest: Rest, dev: DevState) -> None:
    """batch.md, "Error Handling": halt=0 runs every command; errors go to result_error under the
    command's key (with error and error_description); the batch answers 200."""
    result = run_batch(
        rest,
        {
            "bad": "test.batch.fail",
            "scope": "test.batch.scoped",
            "nomethod": "no.such.method",
            "good": "test.batch.echo?x=1",
        },
        halt=0,
    )

    assert result["result"] == {"good": {"x": "1"}}
    assert result["result_error"] == {
        "bad": {"error": "ERROR_CORE", "error_description": "failed on purpose"},
        "scope": {
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by the "
            "webhook token",
        },
        "nomethod": {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
    }
    assert set(result["result_time"]) == {"good"}


@pytest.mark.parametrize("halt", [1, True, "1", "true"])
def test_halt_stops_at_the_first_error(rest: Rest, dev: DevState, halt: Any) -> None:
    """batch.md: halt=1 interrupts the chain at the first failing sub-request; the following ones
    are not executed (halt accepts true/false or 1/0)."""
    result = run_batch(
        rest,
        {"a": "test.batch.echo?n=1", "b": "test.batch.fail", "c": "test.batch.echo?n=3"},
        halt=halt,
    )

    assert result["result"] == {"a": {"n": "1"}}
    assert list(result["result_error"]) == ["b"]
    assert [e["cmd"] for e in dev.entries(method="test.batch.echo")] == ["a"]


@pytest.mark.parametrize("halt", [0, False, "0", "false"])
def test_halt_false_spellings_run_everything(rest: Rest, halt: Any) -> None:
    """batch.md: halt accepts false or 0 (the default), and then every command runs."""
    result = run_batch(rest, {"b": "test.batch.fail", "c": "test.batch.echo?n=3"}, halt=halt)

    assert result["result"] == {"c": {"n": "3"}}


def test_nested_batch_is_not_allowed(rest: Rest) -> None:
    """batch.md: since rest 24.0.0 a batch inside batch "ends with an error
    ERROR_BATCH_METHOD_NOT_ALLOWED" (405 in the error table); the others still run."""
    inner = "batch?" + to_query({"cmd": {"x": "test.batch.echo"}})
    result = run_batch(rest, {"nested": inner, "after": "test.batch.echo?ok=1"})

    assert result["result_error"] == {
        "nested": {
            "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
            "error_description": "Method is not allowed for batch usage",
        }
    }
    assert result["result"] == {"after": {"ok": "1"}}


def test_more_than_fifty_commands(rest: Rest, dev: DevState) -> None:
    """batch.md: "If this limit is exceeded, subqueries beyond the limit will end with an error
    ERROR_BATCH_LENGTH_EXCEEDED" (same wording as the nested-batch error, which lands in
    result_error); the first 50 run."""
    cmd = {f"c{n}": f"test.batch.echo?n={n}" for n in range(52)}
    result = run_batch(rest, cmd)

    assert len(result["result"]) == 50
    assert result["result"]["c49"] == {"n": "49"}
    assert result["result_error"] == {
        key: {
            "error": "ERROR_BATCH_LENGTH_EXCEEDED",
            "error_description": "Max batch length exceeded",
        }
        for key in ("c50", "c51")
    }
    assert len(dev.entries(method="test.batch.echo", status=200)) == 50


def test_cmd_as_list_gives_integer_keys(rest: Rest) -> None:
    """batch.md: "The array of requests can use numeric keys or be associative"; a list's keys
    are 0, 1, ... [INFERRED: PHP json_encode writes a 0..n-1 map as a JSON array.]"""
    result = run_batch(rest, ["test.batch.echo?n=0", "test.batch.echo?n=$result[0][n]1"])
    assert result["result"] == [{"n": "0"}, {"n": "01"}]
    assert isinstance(result["result_time"], list) and len(result["result_time"]) == 2

    failed_first = run_batch(rest, ["test.batch.fail", "test.batch.echo?n=1"])
    assert failed_first["result"] == {"1": {"n": "1"}}
    assert failed_first["result_error"] == [
        {"error": "ERROR_CORE", "error_description": "failed on purpose"}
    ]


def test_batch_in_the_query_string_is_double_encoded(rest: Rest) -> None:
    """data-encoding.md, "Double Encoding for Batch Requests":
    cmd[0]=method%3Fparam%3DJohn%2526Martin reaches the command as John&Martin."""
    url = (
        rest.url("batch")
        + "?cmd[0]=test.batch.echo%3Ffields%5BTITLE%5D%3DJohn%2526Martin"
        + "&cmd[1]=test.batch.user&halt=0&auth="
        + quote(rest.token)
    )
    response = requests.get(url, timeout=10)

    assert response.status_code == 200, response.text
    assert response.json()["result"]["result"] == [
        {"fields": {"TITLE": "John&Martin"}},
        {"ID": "1", "NAME": "Anna", "UF_DEPARTMENT": [7], "ACTIVE": True},
    ]


def test_missing_cmd_gives_empty_result(rest: Rest) -> None:
    """[INFERRED] batch.md marks cmd required but names no error; without commands every map is
    empty ([])."""
    assert run_batch(rest, None) == {
        "result": [],
        "result_error": [],
        "result_total": [],
        "result_next": [],
        "result_time": [],
    }


def test_each_command_counts_against_its_own_method_budget(rest: Rest, portal: DevPortal) -> None:
    """limits.md: nested calls "are executed as separate methods, so the execution time of each is
    accounted for and checked against its own limit"; the blocked one ends in result_error with
    OPERATION_TIME_LIMIT and its operating_reset_at."""
    portal.operating_limit = 5.0
    result = run_batch(
        rest,
        {
            "s1": "test.batch.slow?seconds=4",
            "s2": "test.batch.slow?seconds=4",
            "s3": "test.batch.slow?seconds=1",
            "other": "test.batch.echo",
        },
    )

    assert set(result["result"]) == {"s1", "s2", "other"}
    assert result["result_time"]["s2"]["operating"] == pytest.approx(8.0, abs=0.5)
    blocked = result["result_error"]["s3"]
    assert blocked["error"] == "OPERATION_TIME_LIMIT"
    assert blocked["operating_reset_at"] == result["result_time"]["s2"]["operating_reset_at"]
    direct = rest.call("test.batch.slow", {"seconds": 0})
    assert direct.status_code == 429
    assert direct.json()["error"] == "OPERATION_TIME_LIMIT"


def test_commands_are_journalled_with_their_batch(rest: Rest, dev: DevState) -> None:
    """Journal (dev portal): one entry for the batch request, one per command pointing at it by seq
    (`batch`) and naming its key (`cmd`); no access token anywhere, even one put in a command."""
    response = rest.call(
        "batch",
        {"cmd": {"a": "test.batch.echo?x=1&auth=" + rest.token, "b": "test.batch.fail"}},
    )
    assert response.status_code == 200

    (outer,) = dev.entries(method="batch")
    commands = [e for e in dev.journal if e.get("batch") == outer["seq"]]
    assert [(e["cmd"], e["method"], e["status"]) for e in commands] == [
        ("a", "test.batch.echo", 200),
        ("b", "test.batch.fail", 400),
    ]
    assert commands[0]["params"] == {"x": "1"}
    assert commands[1]["error"] == "ERROR_CORE"
    assert all(e["client_id"] == outer["client_id"] for e in commands)
    assert rest.token not in repr(dev.journal)
    assert response.json()["result"]["result"]["a"] == {"x": "1"}  # auth dropped from params


def test_linked_calls_with_the_portals_own_methods(rest: Rest) -> None:
    """batch.md, "Linked Calls" and the list-method note: user.current feeds user.get by
    $result[me][ID]; a user.get list result is referenced as $result[key][0][ID] and adds
    result_total (api-reference/user/user-current.md, api-reference/user/user-get.md)."""
    result = run_batch(
        rest,
        {
            "me": "user.current",
            "same": "user.get?ID=$result[me][ID]",
            "clara": "user.get?FILTER[UF_PHONE_INNER]=102",
            "again": "user.get?ID=$result[clara][0][ID]",
        },
    )

    assert result["result_error"] == []
    assert result["result"]["me"]["ID"] == "1"
    assert [u["ID"] for u in result["result"]["same"]] == ["1"]
    assert [u["ID"] for u in result["result"]["clara"]] == ["3"]
    assert [u["NAME"] for u in result["result"]["again"]] == ["Clara"]
    assert result["result_total"] == {"same": 1, "clara": 1, "again": 1}
    assert "me" not in result["result_total"]
