"""Fault injection (devportal/faults.py): each fault makes the portal fail the way the
reference says a portal can fail, and `clear` brings normal service back."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from b24app.bitrix.encoding import to_query
from devportal import faults
from devportal.methods import Call, method
from devportal.server import DevportalServer
from devportal.state import DevPortal, DevState, install
from tests.conftest import TEST_CLIENT_ID
from tests.devportal.conftest import Rest


@method("test.faults.ping")
def _ping(call: Call, params: dict[str, Any]) -> str:
    return "pong"


def ok(rest: Rest) -> bool:
    response = rest.call("test.faults.ping")
    return response.status_code == 200 and response.json()["result"] == "pong"


def error_of(response: requests.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]


def test_outage_503_is_not_json(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """_includes/system-errors.md lists JSON errors, but a portal behind an overloaded proxy
    answers 503 with an HTML page: a client must not assume every 503 is QUERY_LIMIT_EXCEEDED."""
    faults.set_outage(dev, portal, "503")
    response = rest.call("test.faults.ping")

    assert response.status_code == 503
    with pytest.raises(ValueError):
        response.json()

    faults.clear(dev, portal)
    assert ok(rest)


def test_reset_drops_the_connection(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """A dropped connection (no HTTP answer at all) reaches the client as ConnectionError."""
    faults.set_outage(dev, portal, "reset")
    with pytest.raises(requests.ConnectionError):
        rest.call("test.faults.ping")

    faults.clear(dev, portal)
    assert ok(rest)


def test_timeout_holds_the_request(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """limits.md: a cloud request is cut off after 60 s; a held request meets the client's own
    timeout (here 0.4 s held, 0.15 s client timeout)."""
    faults.set_outage(dev, portal, "timeout", timeout_sleep=0.4)
    assert portal.faults.timeout_sleep == 0.4
    with pytest.raises(requests.Timeout):
        requests.post(rest.url("test.faults.ping"), json={"auth": rest.token}, timeout=0.15)

    faults.clear(dev, portal)
    assert ok(rest)


def test_latency_delays_but_answers(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """Added latency slows every answer and changes nothing else."""
    faults.set_latency(dev, portal, 0.3)
    started = time.monotonic()
    assert ok(rest)
    assert time.monotonic() - started >= 0.3

    faults.clear(dev, portal)
    started = time.monotonic()
    assert ok(rest)
    assert time.monotonic() - started < 0.3


@pytest.mark.parametrize(
    ("code", "status"),
    [("ACCESS_DENIED", 403), ("PORTAL_DELETED", 500), ("INTERNAL_SERVER_ERROR", 500)],
)
def test_rest_error(rest: Rest, dev: DevState, portal: DevPortal, code: str, status: int) -> None:
    """_includes/system-errors.md: ACCESS_DENIED 403 ("REST API is available only on commercial
    plans"), PORTAL_DELETED 500, INTERNAL_SERVER_ERROR 500, as {error, error_description}."""
    faults.set_rest_error(dev, portal, code)
    response = rest.call("test.faults.ping")
    assert error_of(response) == (status, code)
    assert response.json()["error_description"]

    faults.clear(dev, portal)
    assert ok(rest)


def test_unknown_fault_names_are_refused(dev: DevState, portal: DevPortal) -> None:
    """Only the outages rest.py implements and the errors of _includes/system-errors.md."""
    with pytest.raises(ValueError):
        faults.set_outage(dev, portal, "flood")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        faults.set_rest_error(dev, portal, "NOT_A_BITRIX_ERROR")
    with pytest.raises(ValueError):
        faults.set_latency(dev, portal, -1)


def test_expire_tokens(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """_includes/system-errors.md: 401 expired_token once the access token expired, before its
    hour is up (settings/oauth/index.md); only this portal's tokens."""
    other = dev.add_portal("beta")
    _, beta_access, _ = install(dev, other, TEST_CLIENT_ID)
    assert faults.expire_tokens(dev, portal) == 1

    assert error_of(rest.call("test.faults.ping")) == (401, "expired_token")
    beta = Rest(rest.base, other, beta_access.token)
    assert ok(beta)


def test_payment_lapsed(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """settings/oauth/error-codes.md: PAYMENT_REQUIRED when the app's trial or paid period
    expired (status 402 here, see errors.py); service returns once paid."""
    faults.lapse_payment(dev, portal, TEST_CLIENT_ID)
    response = rest.call("test.faults.ping")
    assert error_of(response) == (402, "PAYMENT_REQUIRED")
    assert response.json()["error_description"] == "Payment required"

    faults.lapse_payment(dev, portal, TEST_CLIENT_ID, lapsed=False)
    assert ok(rest)
    with pytest.raises(ValueError):
        faults.lapse_payment(dev, portal, "app.not.installed")


def test_deleted_portal(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """_includes/system-errors.md: 500 PORTAL_DELETED "Portal was deleted"."""
    faults.delete_portal(dev, portal)
    response = rest.call("test.faults.ping")
    assert error_of(response) == (500, "PORTAL_DELETED")
    assert response.json()["error_description"] == "Portal was deleted"

    faults.delete_portal(dev, portal, deleted=False)
    assert ok(rest)


def test_change_address(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """settings/how-to-call-rest-api/change-domen.md: the portal answers at its new address, the
    old one redirects (302); an address in use cannot be taken."""
    old_url = rest.url("test.faults.ping")
    faults.change_address(dev, portal, "gamma")

    assert dev.find_portal("gamma") is portal and dev.find_portal("alpha") is None
    assert portal.old_codes == ["alpha"] and portal.domain == "gamma.bitrix24.test"
    assert ok(rest)  # rest.url follows portal.code
    assert requests.get(old_url, allow_redirects=False, timeout=10).status_code == 302
    dev.add_portal("delta")
    with pytest.raises(ValueError):
        faults.change_address(dev, portal, "delta")
    with pytest.raises(ValueError):
        faults.change_address(dev, dev.portals["delta"], "alpha")  # alpha still redirects


def test_clear_restores_everything_at_once(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """`clear` removes outage, latency and injected error together."""
    faults.set_latency(dev, portal, 0.05)
    faults.set_rest_error(dev, portal, "ACCESS_DENIED")
    faults.set_outage(dev, portal, "503")
    assert rest.call("test.faults.ping").status_code == 503

    faults.clear(dev, portal)
    assert (portal.faults.outage, portal.faults.latency, portal.faults.rest_error) == (
        None,
        0,
        None,
    )
    assert ok(rest)


# --- answers spoiled after the method ran (issue 9, item 3) -----------------------------------
def call_batch(rest: Rest, external: str) -> requests.Response:
    """One batch that registers and finishes a call, as the delivery worker sends it."""
    register = to_query(
        {
            "USER_ID": 1,
            "PHONE_NUMBER": "79062195047",
            "TYPE": 2,
            "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
            "EXTERNAL_CALL_ID": external,
        }
    )
    finish = to_query({"CALL_ID": "$result[reg][CALL_ID]", "USER_ID": 1, "DURATION": 95})
    cmd = {
        "reg": f"telephony.externalcall.register?{register}",
        "fin": f"telephony.externalcall.finish?{finish}",
    }
    return rest.call("batch", {"halt": 0, "cmd": cmd})


def ran(dev: DevState, portal: DevPortal, external: str) -> dict[str, Any]:
    """Proof the batch ran: the call is in the statistics once, and the journal's batch entry."""
    assert [r["EXTERNAL_CALL_ID"] for r in portal.statistics].count(external) == 1
    batch = dev.entries(portal=portal.code, method="batch")[-1]
    commands = dev.entries(batch=batch["seq"])
    assert [(c["cmd"], c["status"]) for c in commands] == [("reg", 200), ("fin", 200)]
    return batch


def test_html200_runs_the_batch_then_answers_a_fatal_error_page(
    rest: Rest, dev: DevState, portal: DevPortal
) -> None:
    """A 200 whose body is PHP's "Fatal error" page, not JSON: the batch did run."""
    faults.spoil_answers(dev, portal, "html200")
    response = call_batch(rest, "pbx-html200")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Fatal error" in response.text
    with pytest.raises(ValueError):
        response.json()
    batch = ran(dev, portal, "pbx-html200")
    assert (batch["status"], batch["spoiled"]) == (200, "html200")


def test_truncated_runs_the_batch_then_answers_half_the_json(
    rest: Rest, dev: DevState, portal: DevPortal
) -> None:
    """A 200 with the first half of the JSON; Content-Length matches, so the client reads the
    whole (cut) body without a transport error and only the JSON parser can tell."""
    faults.spoil_answers(dev, portal, "truncated")
    response = call_batch(rest, "pbx-truncated")

    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert response.content.startswith(b'{"result": {"result": {"reg": {"CALL_ID": ')
    with pytest.raises(ValueError):
        response.json()
    assert not response.content.rstrip().endswith(b"}")
    assert ran(dev, portal, "pbx-truncated")["spoiled"] == "truncated"


def test_html500_runs_the_batch_then_answers_an_error_page(
    rest: Rest, dev: DevState, portal: DevPortal
) -> None:
    """A 500 HTML page without a Bitrix24 error body, after the batch ran."""
    faults.spoil_answers(dev, portal, "html500")
    response = call_batch(rest, "pbx-html500")

    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()
    assert ran(dev, portal, "pbx-html500")["spoiled"] == "html500"


def test_reset_runs_the_batch_then_drops_the_connection(
    rest: Rest, dev: DevState, portal: DevPortal
) -> None:
    """The connection is dropped without an answer, after the batch ran."""
    faults.spoil_answers(dev, portal, "reset")
    with pytest.raises(requests.ConnectionError):
        call_batch(rest, "pbx-reset")
    assert ran(dev, portal, "pbx-reset")["spoiled"] == "reset"


def test_times_spoils_exactly_the_next_n_requests_that_ran(
    rest: Rest, dev: DevState, portal: DevPortal
) -> None:
    """times=1 spoils one batch; a request refused before its method (a bad token) is answered
    as usual and does not count; the one after the spoiled batch is normal again."""
    faults.spoil_answers(dev, portal, "html500", times=1)
    assert error_of(rest.call("test.faults.ping", auth="not-a-token")) == (401, "NO_AUTH_FOUND")

    assert call_batch(rest, "pbx-1").status_code == 500
    second = call_batch(rest, "pbx-2")

    assert second.status_code == 200
    assert second.json()["result"]["result_error"] == []
    assert (portal.faults.spoil, portal.faults.spoil_times) == (None, None)
    spoiled = [e.get("spoiled") for e in dev.entries(portal=portal.code, method="batch")]
    assert spoiled == ["html500", None]


def test_clear_stops_spoiling(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    faults.spoil_answers(dev, portal, "html200", times=5)
    assert "Fatal error" in rest.call("test.faults.ping").text

    faults.clear(dev, portal)
    assert ok(rest)
    assert (portal.faults.spoil, portal.faults.spoil_times) == (None, None)


def test_unknown_spoils_and_counts_are_refused(dev: DevState, portal: DevPortal) -> None:
    with pytest.raises(ValueError, match="spoiled answer"):
        faults.spoil_answers(dev, portal, "gibberish")  # type: ignore[arg-type]
    for times in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="times"):
            faults.spoil_answers(dev, portal, "reset", times=times)  # type: ignore[arg-type]
    assert portal.faults.spoil is None


def test_spoil_over_the_dev_api(
    devportal: DevportalServer, rest: Rest, dev: DevState, portal: DevPortal
) -> None:
    """POST /_dev/portals/<code>/faults takes `spoil` and `spoil_times` (for other processes)."""
    url = f"{devportal.url}/_dev/portals/{portal.code}/faults"
    answer = requests.post(url, json={"spoil": "truncated", "spoil_times": 1}, timeout=10)
    assert answer.status_code == 200
    assert (answer.json()["spoil"], answer.json()["spoil_times"]) == ("truncated", 1)

    with pytest.raises(ValueError):
        rest.call("test.faults.ping").json()
    assert ok(rest)
    for bad in ({"spoil": "nonsense"}, {"spoil": "reset", "spoil_times": 0}):
        refused = requests.post(url, json=bad, timeout=10)
        assert refused.status_code == 400, bad
        assert refused.json()["error_description"].startswith("spoil")
