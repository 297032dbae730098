"""The development portal's REST core (rest.py, dispatch.py): envelopes, errors, auth, the request
rate limit, the method time budget, the domain change and the journal.

Test-only methods are registered below under `test.core.*` so that these tests depend on nothing
but the core. Clock-sensitive tests freeze the portal's clock and move it with `dev.advance`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
import requests

from devportal import faults
from devportal.methods import Call, Page, method
from devportal.state import Bucket, DevPortal, DevState, install
from tests.conftest import TEST_CLIENT_ID
from tests.devportal.conftest import Rest

TIME_FIELDS = {
    "start",
    "finish",
    "duration",
    "processing",
    "date_start",
    "date_finish",
    "operating_reset_at",
    "operating",
}


@method("test.core.echo")
def _echo(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    return params


@method("test.core.other")
def _other(call: Call, params: dict[str, Any]) -> bool:
    return True


@method("test.core.list")
def _list(call: Call, params: dict[str, Any]) -> Page:
    """60 records, 50 a page."""
    start = int(params.get("start") or 0)
    items = [{"ID": str(n)} for n in range(start + 1, min(start + 50, 60) + 1)]
    return Page(items, 60, start + 50 if start + 50 < 60 else None)


@method("test.core.scoped", scope="im")
def _scoped(call: Call, params: dict[str, Any]) -> bool:
    return True


@method("test.core.alternatives", scope="user|user_brief|user_basic")
def _alternatives(call: Call, params: dict[str, Any]) -> bool:
    return True


@method("test.core.slow")
def _slow(call: Call, params: dict[str, Any]) -> bool:
    """Takes `seconds` of the portal's clock, to spend the method's time budget without waiting."""
    call.state.advance(float(params.get("seconds") or 0))
    return True


@pytest.fixture
def frozen(dev: DevState, monkeypatch: pytest.MonkeyPatch) -> Iterator[DevState]:
    """The portal's clock stands still unless a test (or test.core.slow) advances it."""
    base = dev.now() - dev.clock_offset
    monkeypatch.setattr(dev, "now", lambda: base + dev.clock_offset)
    yield dev


def error_of(response: requests.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) >= {"error", "error_description"}
    assert "result" not in body
    return response.status_code, body["error"]


def other_token(dev: DevState, portal: DevPortal, client_id: str = TEST_CLIENT_ID) -> str:
    _, access, _ = install(dev, portal, client_id)
    return access.token


# --- envelopes ----------------------------------------------------------------------------------
def test_success_envelope_has_result_and_time(rest: Rest) -> None:
    """api-reference/data-types.md #time: start/finish (Unix, fractional), duration = finish -
    start, processing, date_start/date_finish, operating_reset_at and operating."""
    response = rest.call("test.core.echo", {"a": "1", "b": {"c": "2"}})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"result", "time"}
    assert body["result"] == {"a": "1", "b": {"c": "2"}}
    time = body["time"]
    assert set(time) == TIME_FIELDS
    assert time["duration"] == pytest.approx(time["finish"] - time["start"])
    assert isinstance(time["start"], float) and isinstance(time["operating_reset_at"], int)
    assert time["date_start"][:4].isdigit() and "T" in time["date_start"]
    assert time["operating"] >= 0


def test_list_methods_add_total_and_next(rest: Rest) -> None:
    """api-reference/user/user-get.md (response example): list results carry `total`; digest §3.2:
    `next` is the `start` of the next page and is absent on the last page."""
    first = rest.call("test.core.list").json()
    assert len(first["result"]) == 50
    assert (first["total"], first["next"]) == (60, 50)

    last = rest.call("test.core.list", {"start": first["next"]}).json()
    assert [r["ID"] for r in last["result"]] == [str(n) for n in range(51, 61)]
    assert last["total"] == 60
    assert "next" not in last


def test_parameters_by_get_json_and_form(rest: Rest) -> None:
    """settings/how-to-call-rest-api/general-principles.md: GET with a query, POST with JSON, and
    form posts with PHP bracket keys (data-encoding.md) all carry the same parameters; the OAuth
    token travels in `auth`."""
    get = requests.get(
        rest.url("test.core.echo") + f"?FILTER[ID]=5&select[]=A&select[]=B&auth={rest.token}",
        timeout=10,
    )
    form = requests.post(
        rest.url("test.core.echo"),
        data={"FILTER[ID]": "5", "select[]": ["A", "B"], "auth": rest.token},
        timeout=10,
    )
    as_json = rest.call("test.core.echo", {"FILTER": {"ID": "5"}, "select": ["A", "B"]})

    for response in (get, form, as_json):
        assert response.status_code == 200, response.text
        assert response.json()["result"] == {"FILTER": {"ID": "5"}, "select": ["A", "B"]}


# --- errors -------------------------------------------------------------------------------------
def test_unknown_or_missing_token_is_no_auth_found(rest: Rest) -> None:
    """_includes/system-errors.md: 401 NO_AUTH_FOUND, "Wrong authorization data"."""
    unknown = rest.call("test.core.echo", auth="0" * 32)
    missing = requests.post(rest.url("test.core.echo"), json={}, timeout=10)

    assert error_of(unknown) == (401, "NO_AUTH_FOUND")
    assert unknown.json()["error_description"] == "Wrong authorization data"
    assert error_of(missing) == (401, "NO_AUTH_FOUND")


def test_another_portals_token_is_no_auth_found(rest: Rest, dev: DevState) -> None:
    """_includes/system-errors.md: NO_AUTH_FOUND for an invalid access token; a token issued for
    another portal is not valid here (settings/oauth/index.md: tokens belong to one portal)."""
    beta = dev.add_portal("beta")
    beta_token = other_token(dev, beta)

    assert error_of(rest.call("test.core.echo", auth=beta_token)) == (401, "NO_AUTH_FOUND")
    ok = requests.post(
        f"{rest.base}/p/beta/rest/test.core.echo.json", json={"auth": beta_token}, timeout=10
    )
    assert ok.status_code == 200


def test_expired_token(rest: Rest, dev: DevState) -> None:
    """settings/oauth/index.md: access_token lives one hour; _includes/system-errors.md:
    401 expired_token."""
    dev.advance(3599)
    assert rest.call("test.core.echo").status_code == 200

    dev.advance(2)
    response = rest.call("test.core.echo")
    assert error_of(response) == (401, "expired_token")
    assert response.json()["error_description"] == "The access token provided has expired"


def test_unknown_method(rest: Rest) -> None:
    """api-reference/rest-v3.md: 404 ERROR_METHOD_NOT_FOUND (digest §3.4: unconfirmed for the
    classic /rest/, answered the same here)."""
    assert error_of(rest.call("no.such.method")) == (404, "ERROR_METHOD_NOT_FOUND")


def test_insufficient_scope(rest: Rest) -> None:
    """_includes/system-errors.md: 403 insufficient_scope when the app lacks the method's scope;
    a method that accepts alternatives (user.get: user, user_brief or user_basic) is allowed with
    any one of them (our app has user_brief)."""
    assert error_of(rest.call("test.core.scoped")) == (403, "insufficient_scope")
    assert rest.call("test.core.alternatives").status_code == 200


# --- request rate (limits.md) -------------------------------------------------------------------
def fill(rest: Rest, count: int) -> list[int]:
    return [rest.call("test.core.other").status_code for _ in range(count)]


def test_query_limit_after_the_burst_and_drain_at_the_rate(
    rest: Rest, portal: DevPortal, frozen: DevState
) -> None:
    """limits.md: each request adds 1 to a counter that drains Y per second; above X the next
    request gets 503 QUERY_LIMIT_EXCEEDED. Here X=5, Y=2 instead of 50 and 2, to stay quick."""
    portal.bucket = Bucket(rate=2, burst=5, updated=frozen.now())

    assert fill(rest, 5) == [200] * 5
    blocked = rest.call("test.core.other")
    assert error_of(blocked) == (503, "QUERY_LIMIT_EXCEEDED")
    assert blocked.json()["error_description"] == "Too many requests"

    frozen.advance(0.5)  # drains one request
    assert fill(rest, 2) == [200, 503]
    frozen.advance(2.0)  # drains four
    assert fill(rest, 5) == [200] * 4 + [503]


def test_rejected_requests_do_not_fill_the_bucket(
    rest: Rest, portal: DevPortal, frozen: DevState
) -> None:
    """limits.md: at no more than Y requests per second an app never meets the limit, even right
    after being blocked (a refused request does not count)."""
    portal.bucket = Bucket(rate=2, burst=5, updated=frozen.now())
    fill(rest, 20)
    for _ in range(10):
        frozen.advance(0.5)
        assert rest.call("test.core.other").status_code == 200


def test_batch_counts_as_one_request(rest: Rest, portal: DevPortal, frozen: DevState) -> None:
    """limits.md: "It allows you to pass up to 50 method calls in a single HTTP request"; the rate
    limit counts HTTP requests, so a batch of 20 commands takes one place in the bucket."""
    portal.bucket = Bucket(rate=2, burst=5, updated=frozen.now())
    cmd = {f"c{n}": "test.core.other" for n in range(20)}

    batch = rest.call("batch", {"cmd": cmd})
    assert batch.status_code == 200
    assert len(batch.json()["result"]["result"]) == 20
    assert fill(rest, 5) == [200] * 4 + [503]


def test_limit_is_per_portal(
    rest: Rest, dev: DevState, portal: DevPortal, frozen: DevState
) -> None:
    """limits.md: "A limit triggered for an application in one Bitrix24 does not affect its
    operation in another Bitrix24"."""
    portal.bucket = Bucket(rate=2, burst=2, updated=frozen.now())
    beta = dev.add_portal("beta")
    beta_rest = Rest(rest.base, beta, other_token(dev, beta))

    assert fill(rest, 3) == [200, 200, 503]
    assert fill(beta_rest, 3) == [200] * 3


def test_enterprise_limits(rest: Rest, dev: DevState, frozen: DevState) -> None:
    """limits.md: Enterprise drains 5 per second with a threshold of 250; others 2 and 50."""
    assert (rest.portal.bucket.rate, rest.portal.bucket.burst) == (2, 50)
    big = dev.add_portal("big", enterprise=True)
    big_rest = Rest(rest.base, big, other_token(dev, big))
    big.bucket.updated = frozen.now()
    big.bucket.level = 245  # as after 245 quick requests

    assert fill(big_rest, 6) == [200] * 5 + [503]
    frozen.advance(1.0)
    assert fill(big_rest, 6) == [200] * 5 + [503]


# --- method time budget (limits.md) -------------------------------------------------------------
def test_operation_time_limit(rest: Rest, portal: DevPortal, frozen: DevState) -> None:
    """limits.md: the accumulated time is checked before each call; once it exceeds the limit the
    next call of that method gets 429 OPERATION_TIME_LIMIT with operating_reset_at; other methods
    keep working; the method is free again from operating_reset_at."""
    portal.operating_limit = 5.0
    first = rest.call("test.core.slow", {"seconds": 3}).json()["time"]
    second = rest.call("test.core.slow", {"seconds": 3}).json()["time"]  # 3 <= 5: still runs
    assert second["operating"] == pytest.approx(6.0)
    assert second["operating_reset_at"] == first["operating_reset_at"]

    blocked = rest.call("test.core.slow", {"seconds": 0})
    assert error_of(blocked) == (429, "OPERATION_TIME_LIMIT")
    assert blocked.json()["operating_reset_at"] == first["operating_reset_at"]
    assert rest.call("test.core.other").status_code == 200

    frozen.advance(first["operating_reset_at"] - frozen.now() - 1)
    assert rest.call("test.core.slow", {"seconds": 0}).status_code == 429
    frozen.advance(1)
    assert rest.call("test.core.slow", {"seconds": 0}).status_code == 200


def test_operating_is_summed_in_minute_baskets(
    rest: Rest, portal: DevPortal, frozen: DevState
) -> None:
    """limits.md: time is kept in one-minute baskets; a basket's countdown starts at its first
    call and lasts 10 minutes, then its whole sum leaves `operating`, while later baskets stay."""
    minute = (int(frozen.now()) // 60 + 1) * 60
    frozen.advance(minute + 1 - frozen.now())  # 1 s into a fresh minute
    first = rest.call("test.core.slow", {"seconds": 2}).json()["time"]
    frozen.advance(30)  # same minute
    rest.call("test.core.slow", {"seconds": 2})
    frozen.advance(60)  # next minute
    third = rest.call("test.core.slow", {"seconds": 1}).json()["time"]
    assert third["operating"] == pytest.approx(5.0)
    assert third["operating_reset_at"] == first["operating_reset_at"] == minute + 1 + 600

    frozen.advance(first["operating_reset_at"] - frozen.now())
    after = rest.call("test.core.slow", {"seconds": 0}).json()["time"]
    assert after["operating"] == pytest.approx(1.0)  # both calls of the first minute left
    assert after["operating_reset_at"] > first["operating_reset_at"]


def test_operation_time_limit_is_per_app(
    rest: Rest, dev: DevState, portal: DevPortal, frozen: DevState
) -> None:
    """limits.md: the method is blocked "for the application or webhook"; "Other applications,
    webhooks, and methods continue to function"."""
    portal.operating_limit = 1.0
    rest.call("test.core.slow", {"seconds": 2})
    assert rest.call("test.core.slow").status_code == 429

    dev.add_app("app.test.other", "other-secret")
    other = Rest(rest.base, portal, other_token(dev, portal, "app.test.other"))
    assert other.call("test.core.slow").status_code == 200


# --- domain change ------------------------------------------------------------------------------
def test_old_address_answers_302_to_the_new_one(
    rest: Rest, dev: DevState, portal: DevPortal
) -> None:
    """settings/how-to-call-rest-api/change-domen.md: the old address redirects (302) to the new
    one; a client re-sends its POST to Location. The query string is kept; member_id stays."""
    member_id = portal.member_id
    old_url = rest.url("test.core.echo")
    faults.change_address(dev, portal, "alpha-new")

    assert (portal.code, portal.domain) == ("alpha-new", "alpha-new.bitrix24.test")
    assert portal.member_id == member_id
    query = "x=1&y[]=2&cmd[0]=a%3Fb%3DJohn%2526Martin"  # data-encoding.md's double encoding
    moved = requests.get(f"{old_url}?{query}", allow_redirects=False, timeout=10)
    assert moved.status_code == 302
    location = urlsplit(moved.headers["Location"])
    assert (
        location._replace(query="").geturl() == f"{rest.base}/p/alpha-new/rest/test.core.echo.json"
    )
    assert parse_qsl(location.query) == parse_qsl(query)

    posted = requests.post(
        old_url, json={"auth": rest.token, "a": "1"}, allow_redirects=False, timeout=10
    )
    assert posted.status_code == 302
    again = requests.post(
        posted.headers["Location"], json={"auth": rest.token, "a": "1"}, timeout=10
    )
    assert again.status_code == 200
    assert again.json()["result"] == {"a": "1"}


def test_unknown_portal_address_is_not_found(rest: Rest) -> None:
    """No portal lives at the address (change-domen.md: only former addresses redirect)."""
    response = requests.get(f"{rest.base}/p/nowhere/rest/test.core.echo.json", timeout=10)
    assert response.status_code == 404


# --- journal ------------------------------------------------------------------------------------
def test_journal_records_every_call_without_the_token(rest: Rest, dev: DevState) -> None:
    """Journal (dev portal): every REST call is recorded with its method and parameters, errors too,
    but never the `auth` token (settings/oauth/index.md: tokens are secrets)."""
    rest.call("test.core.echo", {"a": "1"})
    requests.get(rest.url("test.core.echo") + f"?b=2&auth={quote(rest.token)}", timeout=10)
    requests.post(rest.url("test.core.echo"), data={"c": "3", "auth": rest.token}, timeout=10)
    rest.call("no.such.method", {"d": "4"})
    rest.call("test.core.echo", auth="f" * 32)

    calls = [(e["method"], e["params"], e["status"]) for e in dev.journal]
    assert calls == [
        ("test.core.echo", {"a": "1"}, 200),
        ("test.core.echo", {"b": "2"}, 200),
        ("test.core.echo", {"c": "3"}, 200),
        ("no.such.method", {"d": "4"}, 404),
        ("test.core.echo", {}, 401),
    ]
    assert [e["seq"] for e in dev.journal] == [1, 2, 3, 4, 5]
    assert dev.journal[3]["error"] == "ERROR_METHOD_NOT_FOUND"
    assert dev.journal[0]["client_id"] == TEST_CLIENT_ID and dev.journal[0]["user_id"] == 1
    dumped = json.dumps(dev.journal)
    assert rest.token not in dumped and "f" * 32 not in dumped
