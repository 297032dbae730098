"""The development portal's `telephony.externalCall.searchCrmEntities`, checked against its page
(api-reference/telephony/telephony-external-call-search-crm-entities.md, RU and EN), and the
faults a route lookup must survive (slow, rate-limited)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devportal import faults
from devportal.crm_data import CrmEntity
from devportal.state import DevPortal, DevState
from tests.devportal.conftest import Rest
from tests.devportal.test_telephony import error

SEARCH = "telephony.externalCall.searchCrmEntities"
ASSIGNED_BY_KEYS = {
    "ID", "TIMEMAN_STATUS", "USER_PHONE_INNER", "WORK_PHONE", "PERSONAL_PHONE", "PERSONAL_MOBILE",
}  # fmt: skip


def test_the_pages_number_finds_the_contact_and_the_company_with_their_employees(rest: Rest):
    """The page's example: PHONE_NUMBER 19062195047 finds a CONTACT and a COMPANY, each with
    CRM_ENTITY_TYPE, CRM_ENTITY_ID (integer), ASSIGNED_BY_ID (integer), NAME and ASSIGNED_BY
    (ID a string, the employee's phones, USER_PHONE_INNER their extension)."""
    result = rest.result(SEARCH, {"PHONE_NUMBER": "19062195047"})

    assert result == [
        {
            "CRM_ENTITY_TYPE": "CONTACT",
            "CRM_ENTITY_ID": 651,
            "ASSIGNED_BY_ID": 2,
            "NAME": "John Doe",
            "ASSIGNED_BY": {
                "ID": "2",
                "TIMEMAN_STATUS": "OPENED",
                "USER_PHONE_INNER": "101",
                "WORK_PHONE": None,
                "PERSONAL_PHONE": None,
                "PERSONAL_MOBILE": None,
            },
        },
        {
            "CRM_ENTITY_TYPE": "COMPANY",
            "CRM_ENTITY_ID": 643,
            "ASSIGNED_BY_ID": 3,
            "NAME": "Daisy LLC",
            "ASSIGNED_BY": {
                "ID": "3",
                "TIMEMAN_STATUS": "OPENED",
                "USER_PHONE_INNER": "102",
                "WORK_PHONE": None,
                "PERSONAL_PHONE": None,
                "PERSONAL_MOBILE": None,
            },
        },
    ]


@pytest.mark.parametrize("number", ["+1 906 219-50-47", "+1 (906) 2195047", " 19062195047 "])
def test_a_number_is_found_however_it_is_written(rest: Rest, number: str):
    found = rest.result(SEARCH, {"PHONE_NUMBER": number})
    assert [(e["CRM_ENTITY_TYPE"], e["CRM_ENTITY_ID"]) for e in found] == [
        ("CONTACT", 651),
        ("COMPANY", 643),
    ]


def test_contacts_come_first_then_companies_then_leads(rest: Rest, portal: DevPortal):
    portal.crm = [
        CrmEntity("LEAD", 5, "Lead", ("+33 1 23 45 67 89",), 4),
        CrmEntity("COMPANY", 9, "Company", ("+33 1 23 45 67 89",), 3),
        CrmEntity("CONTACT", 8, "Second contact", ("+33 1 23 45 67 89",), 2),
        CrmEntity("CONTACT", 7, "First contact", ("33123456789",), 1),
    ]
    found = rest.result(SEARCH, {"PHONE_NUMBER": "33123456789"})
    assert [(e["CRM_ENTITY_TYPE"], e["CRM_ENTITY_ID"]) for e in found] == [
        ("CONTACT", 7),
        ("CONTACT", 8),
        ("COMPANY", 9),
        ("LEAD", 5),
    ]


def test_an_employee_without_an_extension_has_user_phone_inner_null(rest: Rest):
    [lead] = rest.result(SEARCH, {"PHONE_NUMBER": "+442079460018"})
    assert (lead["CRM_ENTITY_TYPE"], lead["ASSIGNED_BY_ID"]) == ("LEAD", 4)
    assert set(lead["ASSIGNED_BY"]) == ASSIGNED_BY_KEYS
    assert lead["ASSIGNED_BY"]["USER_PHONE_INNER"] is None


def test_any_of_an_entitys_numbers_finds_it(rest: Rest):
    [contact] = rest.result(SEARCH, {"PHONE_NUMBER": "4915123456789"})
    assert (contact["CRM_ENTITY_ID"], contact["NAME"]) == (652, "Olga Schmidt")


@pytest.mark.parametrize("number", ["15550000000", "abc", "9062195047"])
def test_an_unknown_number_finds_an_empty_array(rest: Rest, number: str):
    assert rest.result(SEARCH, {"PHONE_NUMBER": number}) == []


@pytest.mark.parametrize("params", [{}, {"PHONE_NUMBER": ""}, {"PHONE_NUMBER": "  "}])
def test_without_phone_number_it_is_error_core_phone_number_is_empty(rest: Rest, params: Any):
    """The page's error: HTTP 400, ERROR_CORE, "PHONE_NUMBER is empty"."""
    assert error(rest.call(SEARCH, params)) == (400, "ERROR_CORE", "PHONE_NUMBER is empty")


def test_it_works_inside_a_batch(rest: Rest):
    result = rest.result("batch", {"cmd": {"s": f"{SEARCH}?PHONE_NUMBER=4930901820"}})
    assert [e["CRM_ENTITY_ID"] for e in result["result"]["s"]] == [652]


def test_a_slow_portal_answers_late(rest: Rest, dev: DevState, portal: DevPortal):
    faults.set_latency(dev, portal, 0.5)
    started = time.monotonic()
    assert rest.result(SEARCH, {"PHONE_NUMBER": "19062195047"})
    assert time.monotonic() - started >= 0.5


def test_a_rate_limited_portal_answers_query_limit_exceeded(
    rest: Rest, dev: DevState, portal: DevPortal
):
    faults.set_rest_error(dev, portal, "QUERY_LIMIT_EXCEEDED")
    response = rest.call(SEARCH, {"PHONE_NUMBER": "19062195047"})
    assert error(response) == (503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
    assert dev.entries(method=SEARCH)[-1]["error"] == "QUERY_LIMIT_EXCEEDED"
