"""`voximplant.statistic.get` on the development portal.

Page: api-reference/telephony/voximplant/voximplant-statistic-get.md (EN, bitrix24/b24restdocs;
the digest §5.2 cites it). Finished calls come from telephony.externalCall.finish
(api-reference/telephony/telephony-external-call-finish.md).
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from devportal.state import Bucket, DevPortal, DevState, install
from tests.conftest import TEST_CLIENT_ID
from tests.devportal.conftest import Rest

GET = "voximplant.statistic.get"
REGISTER = "telephony.externalCall.register"
FINISH = "telephony.externalCall.finish"

# The fields of the page's example rows.
ROW_KEYS = {
    "ID", "PORTAL_USER_ID", "PORTAL_NUMBER", "PHONE_NUMBER", "CALL_ID", "EXTERNAL_CALL_ID",
    "CALL_CATEGORY", "CALL_LOG", "CALL_DURATION", "CALL_START_DATE", "CALL_RECORD_URL",
    "CALL_VOTE", "COST", "COST_CURRENCY", "CALL_FAILED_CODE", "CALL_FAILED_REASON",
    "CRM_ENTITY_TYPE", "CRM_ENTITY_ID", "CRM_ACTIVITY_ID", "REST_APP_ID", "REST_APP_NAME",
    "TRANSCRIPT_ID", "TRANSCRIPT_PENDING", "SESSION_ID", "REDIAL_ATTEMPT", "COMMENT",
    "RECORD_DURATION", "RECORD_FILE_ID", "CALL_TYPE",
}  # fmt: skip


def finish_call(rest: Rest, *, external: str | None = None, **finish: Any) -> str:
    """Register and finish an incoming call; returns its CALL_ID."""
    body: dict[str, Any] = {
        "USER_ID": 1,
        "PHONE_NUMBER": "79062195047",
        "TYPE": 2,
        "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
    }
    if external is not None:
        body["EXTERNAL_CALL_ID"] = external
    call_id: str = rest.result(REGISTER, body)["CALL_ID"]
    rest.result(FINISH, {"CALL_ID": call_id, "USER_ID": 1, "DURATION": 95, **finish})
    return call_id


@pytest.fixture
def roomy(portal: DevPortal) -> DevPortal:
    """The portal with a bucket large enough for the many calls of one test (limits.md's
    bucket is not what these tests are about)."""
    portal.bucket = Bucket(1000.0, 10_000)
    return portal


def test_rows_have_the_pages_fields_and_string_values(rest: Rest) -> None:
    """voximplant-statistic-get.md, example answer: ids and numbers as strings, COST with four
    decimals, CALL_START_DATE ISO-8601 with the offset, CALL_CATEGORY and CALL_TYPE."""
    call_id = finish_call(rest, external="pbx-1", COST=1.5, COST_CURRENCY="USD", VOTE=5)
    response = rest.call(GET, {})
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 1 and "next" not in body
    (row,) = body["result"]
    assert set(row) == ROW_KEYS
    assert row["CALL_ID"] == call_id and row["EXTERNAL_CALL_ID"] == "pbx-1"
    assert row["ID"] == "1" and row["PORTAL_USER_ID"] == "1"
    assert row["CALL_DURATION"] == "95" and row["CALL_VOTE"] == "5"
    assert row["COST"] == "1.5000" and row["COST_CURRENCY"] == "USD"
    assert row["CALL_START_DATE"] == "2026-03-07T10:20:30+03:00"
    assert row["CALL_CATEGORY"] == "external" and row["CALL_TYPE"] == "2"
    assert row["CALL_FAILED_CODE"] == "200"


def test_filter_by_call_id(rest: Rest) -> None:
    """voximplant-statistic-get.md: CALL_ID is filterable; `=` (exact) is the default."""
    first = finish_call(rest)
    finish_call(rest)
    rows = rest.result(GET, {"FILTER": {"CALL_ID": first}})
    assert [row["CALL_ID"] for row in rows] == [first]
    assert rest.result(GET, {"FILTER": {"CALL_ID": "externalCall.none.1"}}) == []


def test_filter_by_external_call_id(rest: Rest) -> None:
    """voximplant-statistic-get.md lists EXTERNAL_CALL_ID as filterable; [inferred] it matches
    the PBX's id exactly, like CALL_ID."""
    finish_call(rest, external="pbx-a")
    wanted = finish_call(rest, external="pbx-b")
    rows = rest.result(GET, {"FILTER": {"EXTERNAL_CALL_ID": "pbx-b"}})
    assert [row["CALL_ID"] for row in rows] == [wanted]
    assert rest.result(GET, {"FILTER": {"EXTERNAL_CALL_ID": "pbx"}}) == []


def test_filter_array_value_and_operators(rest: Rest) -> None:
    """voximplant-statistic-get.md: `{"ID": [1, 7]}` lists records 1 and 7; `!`, `>=`, `<`,
    `><` and `%` are operators in the key."""
    ids = [finish_call(rest, external=f"pbx-{n}", DURATION=n * 10) for n in range(1, 5)]
    assert [r["ID"] for r in rest.result(GET, {"FILTER": {"ID": [1, 3]}})] == ["1", "3"]
    assert [r["ID"] for r in rest.result(GET, {"FILTER": {"!ID": 2}})] == ["1", "3", "4"]
    rows = rest.result(GET, {"FILTER": {">=CALL_DURATION": 20, "<CALL_DURATION": 40}})
    assert [r["CALL_ID"] for r in rows] == ids[1:3]
    rows = rest.result(GET, {"FILTER": {"><ID": [2, 3]}})
    assert [r["ID"] for r in rows] == ["2", "3"]
    rows = rest.result(GET, {"FILTER": {"!><ID": [2, 3]}})
    assert [r["ID"] for r in rows] == ["1", "4"]
    rows = rest.result(GET, {"FILTER": {"%EXTERNAL_CALL_ID": "bx-4"}})
    assert [r["ID"] for r in rows] == ["4"]


def test_filter_by_start_date_compares_moments(rest: Rest) -> None:
    """voximplant-statistic-get.md's example: `>=CALL_START_DATE` with an ISO-8601 date and
    offset. 10:20:30+03:00 is 07:20:30 UTC."""
    finish_call(rest)
    assert len(rest.result(GET, {"FILTER": {">=CALL_START_DATE": "2026-03-07T07:20:30+00:00"}}))
    assert not rest.result(GET, {"FILTER": {">CALL_START_DATE": "2026-03-07T07:20:30+00:00"}})


def test_filter_in_a_form_encoded_request(rest: Rest) -> None:
    """The same FILTER with bracketed keys (settings/how-to-call-rest-api/data-encoding.md)."""
    wanted = finish_call(rest, external="pbx-form")
    finish_call(rest)
    response = requests.post(
        rest.url(GET),
        data={"FILTER[EXTERNAL_CALL_ID]": "pbx-form", "auth": rest.token},
        timeout=10,
    )
    assert [row["CALL_ID"] for row in response.json()["result"]] == [wanted]


def test_sort_and_order(rest: Rest) -> None:
    """voximplant-statistic-get.md: SORT by a field, ORDER ASC or DESC."""
    for duration in (30, 10, 20):
        finish_call(rest, DURATION=duration)
    rows = rest.result(GET, {"SORT": "CALL_DURATION", "ORDER": "DESC"})
    assert [r["CALL_DURATION"] for r in rows] == ["30", "20", "10"]
    rows = rest.result(GET, {"SORT": "CALL_DURATION", "ORDER": "ASC"})
    assert [r["CALL_DURATION"] for r in rows] == ["10", "20", "30"]


def test_pages_of_fifty(rest: Rest, roomy: DevPortal) -> None:
    """voximplant-statistic-get.md: "The page size for results is 50 records"; the second page
    is `start=50`; `total` counts the selection and `next` points at the following page."""
    for _ in range(55):
        finish_call(rest)
    first = rest.call(GET, {}).json()
    assert len(first["result"]) == 50 and first["total"] == 55 and first["next"] == 50
    second = rest.call(GET, {"start": 50}).json()
    assert [r["ID"] for r in second["result"]] == [str(n) for n in range(51, 56)]
    assert "next" not in second


def test_lists_every_applications_calls(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """voximplant-statistic-get.md: the portal's call history, not one application's."""
    finish_call(rest)
    dev.add_app("app.other.2", "other-secret")
    _, access, _ = install(dev, portal, "app.other.2")
    other = Rest(rest.base, portal, access.token)
    finish_call(other)
    assert len(rest.result(GET, {})) == 2


def test_needs_the_statistics_permission(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """voximplant-statistic-get.md: only a user with "Call Statistics — View" may call it, else
    ACCESS_DENIED "Access denied!" (403). [inferred] Admins hold it; Boris (user 2) does not."""
    access, _ = dev.issue_tokens(portal, TEST_CLIENT_ID, 2)
    response = Rest(rest.base, portal, access.token).call(GET, {})
    assert response.status_code == 403
    assert response.json() == {"error": "ACCESS_DENIED", "error_description": "Access denied!"}


def test_needs_the_telephony_scope(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """voximplant-statistic-get.md: Scope `telephony` (_includes/system-errors.md:
    insufficient_scope)."""
    dev.add_app("app.crm.3", "crm-secret", scope="crm")
    _, access, _ = install(dev, portal, "app.crm.3")
    response = Rest(rest.base, portal, access.token).call(GET, {})
    assert response.status_code == 403 and response.json()["error"] == "insufficient_scope"


def test_in_a_batch_by_call_id(rest: Rest) -> None:
    """settings/how-to-call-rest-api/batch.md: list results land in `result` under the key with
    `result_total`; this is how the app checks calls whose outcome it does not know."""
    first = finish_call(rest)
    second = finish_call(rest, external="pbx-2")
    body = rest.result(
        "batch",
        {
            "halt": 0,
            "cmd": {
                "a": f"{GET}?FILTER[CALL_ID]={first}",
                "b": f"{GET}?FILTER[EXTERNAL_CALL_ID]=pbx-2",
                "c": f"{GET}?FILTER[EXTERNAL_CALL_ID]=pbx-none",
            },
        },
    )
    assert [r["CALL_ID"] for r in body["result"]["a"]] == [first]
    assert [r["CALL_ID"] for r in body["result"]["b"]] == [second]
    assert body["result"]["c"] == []
    assert body["result_total"] == {"a": 1, "b": 1, "c": 0}
