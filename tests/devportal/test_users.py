"""The development portal's user.get (api-reference/user/user-get.md)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from devportal.server import DevportalServer
from devportal.state import DevPortal, DevState, DevUser, install
from tests.conftest import TEST_CLIENT_ID
from tests.devportal.conftest import Rest


def ids(users: list[dict[str, Any]]) -> list[str]:
    return [user["ID"] for user in users]


@pytest.fixture
def big(dev: DevState, devportal: DevportalServer) -> Rest:
    """Portal "big": 120 users, every tenth dismissed, extensions 1001…1120; our app installed."""
    users = [
        DevUser(i, f"User{i:03d}", "Staff", active=i % 10 != 0, extension=str(1000 + i))
        for i in range(1, 121)
    ]
    portal = dev.add_portal("big", users=users)
    _, access, _ = install(dev, portal, TEST_CLIENT_ID)
    return Rest(devportal.url, portal, access.token)


def scoped(dev: DevState, devportal: DevportalServer, portal: DevPortal, scope: str) -> Rest:
    client_id = f"app.{scope}"
    dev.add_app(client_id, "s", scope=scope)
    _, access, _ = install(dev, portal, client_id)
    return Rest(devportal.url, portal, access.token)


# --- the list -----------------------------------------------------------------------------------


def test_all_users_by_ascending_id_with_string_ids(rest: Rest) -> None:
    """user-get.md: "By default, the method sorts users by ascending ID"; the example's IDs are
    strings and ACTIVE a boolean; dismissed users are listed unless ACTIVE filters them."""
    body = rest.call("user.get").json()
    assert ids(body["result"]) == ["1", "2", "3", "4", "5"]
    assert body["total"] == 5
    assert "next" not in body
    eva = body["result"][4]
    assert eva["ACTIVE"] is False
    assert eva["UF_PHONE_INNER"] == "105"
    assert eva["UF_DEPARTMENT"] == [1]


def test_user_brief_fields_only(rest: Rest) -> None:
    """api-reference/user/user-scope.md (digest §6.1): user_brief includes ID, ACTIVE, NAME,
    LAST_NAME, UF_PHONE_INNER, UF_DEPARTMENT but no contact data such as EMAIL."""
    anna = rest.result("user.get")[0]
    for field in ("ID", "ACTIVE", "NAME", "LAST_NAME", "UF_PHONE_INNER", "UF_DEPARTMENT"):
        assert field in anna
    assert "EMAIL" not in anna
    assert "USER_TYPE" not in anna


def test_user_basic_adds_email_and_user_sees_everything(
    dev: DevState, devportal: DevportalServer, portal: DevPortal
) -> None:
    """user-scope.md: user_basic opens contact details; the full `user` scope all fields."""
    basic = scoped(dev, devportal, portal, "user_basic").result("user.get")[0]
    assert basic["EMAIL"] == "anna@example.test"
    full = scoped(dev, devportal, portal, "user").result("user.get")[0]
    assert full["EMAIL"] == "anna@example.test"
    assert full["USER_TYPE"] == "employee"


def test_needs_a_user_scope(dev: DevState, devportal: DevportalServer, portal: DevPortal) -> None:
    """user-get.md: scope user, user_brief or user_basic; _includes/system-errors.md:
    insufficient_scope is 403."""
    narrow = scoped(dev, devportal, portal, "telephony")
    response = narrow.call("user.get")
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


# --- FILTER -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, ["1", "2", "3", "4"]),
        ("Y", ["1", "2", "3", "4"]),
        ("true", ["1", "2", "3", "4"]),
        (False, ["5"]),
        ("N", ["5"]),
    ],
)
def test_filter_active(rest: Rest, value: Any, expected: list[str]) -> None:
    """user-get.md: ACTIVE "when set to true, excludes terminated users"."""
    assert ids(rest.result("user.get", {"FILTER": {"ACTIVE": value}})) == expected


def test_filter_in_form_encoding(rest: Rest) -> None:
    """user-get.md with settings/how-to-call-rest-api/data-encoding.md: FILTER[ACTIVE]=true."""
    response = requests.post(
        rest.url("user.get"),
        data={"auth": rest.token, "FILTER[ACTIVE]": "true", "FILTER[UF_PHONE_INNER]": "101"},
        timeout=10,
    )
    assert ids(response.json()["result"]) == ["2"]


def test_lower_case_filter_key(rest: Rest) -> None:
    """user-get.md examples: {"filter": {"NAME": …}} works as FILTER."""
    assert ids(rest.result("user.get", {"filter": {"NAME": "Clara"}})) == ["3"]


def test_filter_by_extension(rest: Rest) -> None:
    """user-get.md: UF_PHONE_INNER — internal telephone number — is a filter field."""
    assert ids(rest.result("user.get", {"FILTER": {"UF_PHONE_INNER": "101"}})) == ["2"]
    assert ids(rest.result("user.get", {"FILTER": {"UF_PHONE_INNER": "999"}})) == []


def test_filter_by_id_and_email(
    dev: DevState, devportal: DevportalServer, portal: DevPortal
) -> None:
    """user-get.md: any user.add field filters, ID and EMAIL included."""
    basic = scoped(dev, devportal, portal, "user_basic")
    assert ids(basic.result("user.get", {"FILTER": {"ID": 4}})) == ["4"]
    assert ids(basic.result("user.get", {"FILTER": {"EMAIL": "boris@example.test"}})) == ["2"]


def test_filter_by_user_type(rest: Rest) -> None:
    """user-get.md: USER_TYPE employee | extranet | email."""
    assert len(rest.result("user.get", {"FILTER": {"USER_TYPE": "employee"}})) == 5
    assert rest.result("user.get", {"FILTER": {"USER_TYPE": "extranet"}}) == []


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ({"=LAST_NAME": "Support"}, ["3", "4"]),
        ({"!LAST_NAME": "Support"}, ["1", "2", "5"]),
        ({"!=LAST_NAME": "Support"}, ["1", "2", "5"]),
        ({"%NAME": "or"}, ["2"]),  # substring, no % needed
        ({"!%LAST_NAME": "a"}, ["3", "4", "5"]),  # not containing
        ({"=%NAME": "%a"}, ["1", "3", "5"]),  # ending with "a"
        ({"%=NAME": "D%"}, ["4"]),  # starting with "D"
        ({"!=%NAME": "%a"}, ["2", "4"]),
        ({"!%=NAME": "%a"}, ["2", "4"]),
        ({">ID": 3}, ["4", "5"]),
        ({"<ID": 3}, ["1", "2"]),
        ({">=ID": 3}, ["3", "4", "5"]),
        ({"<=ID": "3"}, ["1", "2", "3"]),
        ({"@ID": [1, 3, 5]}, ["1", "3", "5"]),
        ({"!@ID": [1, 3, 5]}, ["2", "4"]),
        ({"ID": [2, 4]}, ["2", "4"]),  # "Filtering parameters can take array values"
        ({"NAME": "Cl%"}, ["3"]),  # the page's {"NAME": "Iv%"} example
        ({"!UF_PHONE_INNER": ""}, ["1", "2", "3", "5"]),  # users with an extension
        ({">ID": 1, "<ID": 5, "ACTIVE": True}, ["2", "3", "4"]),
    ],
)
def test_filter_operators(rest: Rest, filter_: dict[str, Any], expected: list[str]) -> None:
    """user-get.md: prefixes >=, >, <=, <, @, !@, %, =%, %=, !%, !=%, !%=, =, !=, !."""
    assert ids(rest.result("user.get", {"FILTER": filter_})) == expected


def test_unknown_filter_fields_are_ignored(rest: Rest) -> None:
    """user-get.md lists the filterable fields; others do not narrow the list [INFERRED]."""
    assert len(rest.result("user.get", {"FILTER": {"NO_SUCH_FIELD": "x"}})) == 5


def test_top_level_keys_filter_without_filter(rest: Rest) -> None:
    """user-get.md's cURL example passes "UF_DEPARTMENT": 1 next to SORT/ORDER/start."""
    assert len(rest.result("user.get", {"UF_DEPARTMENT": 1})) == 5
    assert ids(rest.result("user.get", {"NAME": "Boris"})) == ["2"]
    assert rest.result("user.get", {"UF_DEPARTMENT": 2}) == []


def test_name_search(rest: Rest) -> None:
    """user-get.md: NAME_SEARCH — quick search by personal data."""
    assert ids(rest.result("user.get", {"FILTER": {"NAME_SEARCH": "clara supp"}})) == ["3"]


# --- sort, select, ADMIN_MODE -------------------------------------------------------------------


def test_sort_and_order(rest: Rest) -> None:
    """user-get.md: `sort` a field, `order` ASC | DESC (the example spells SORT/ORDER)."""
    by_name_desc = rest.result("user.get", {"sort": "NAME", "order": "DESC"})
    assert [u["NAME"] for u in by_name_desc] == ["Eva", "Dmitri", "Clara", "Boris", "Anna"]
    upper = rest.result("user.get", {"SORT": "LAST_NAME", "ORDER": "asc"})
    assert ids(upper) == ["1", "5", "2", "3", "4"]  # Admin, Former, Sales, Support, Support
    descending = rest.result("user.get", {"sort": "ID", "order": "desc"})
    assert ids(descending) == ["5", "4", "3", "2", "1"]


def test_select_narrows_fields(rest: Rest) -> None:
    """user-get.md: `select` returns the named fields; unavailable or unknown ones are skipped
    "without returning an error"; `*` is all available fields."""
    users = rest.result("user.get", {"select": ["ID", "NAME", "EMAIL", "NOPE"]})
    assert users[0] == {"ID": "1", "NAME": "Anna"}  # EMAIL is outside user_brief
    everything = rest.result("user.get", {"select": ["*"]})[0]
    assert everything == rest.result("user.get")[0]
    custom = rest.result("user.get", {"select": ["UF_*"]})[0]
    assert set(custom) == {"UF_DEPARTMENT", "UF_PHONE_INNER"}


def test_select_in_form_encoding(rest: Rest) -> None:
    """data-encoding.md: arrays as `select[]=ID`."""
    response = requests.post(
        rest.url("user.get"),
        data={"auth": rest.token, "select[]": ["ID", "UF_PHONE_INNER"]},
        timeout=10,
    )
    assert response.json()["result"][1] == {"ID": "2", "UF_PHONE_INNER": "101"}


def test_admin_mode_is_accepted(rest: Rest) -> None:
    """user-get.md: ADMIN_MODE ('ADMIN_MODE': 'True') — data about any users."""
    assert len(rest.result("user.get", {"ADMIN_MODE": "True"})) == 5


# --- paging -------------------------------------------------------------------------------------


def test_pages_of_fifty_with_total_and_next(big: Rest) -> None:
    """user-get.md: "The results page size is always static: 50 records"; start = (N-1) * 50;
    `total` is the number of records found (list-methods: `next` is the following start)."""
    first = big.call("user.get").json()
    assert len(first["result"]) == 50
    assert first["total"] == 120
    assert first["next"] == 50
    second = big.call("user.get", {"start": first["next"]}).json()
    assert second["result"][0]["ID"] == "51"
    assert second["next"] == 100
    third = big.call("user.get", {"start": second["next"]}).json()
    assert len(third["result"]) == 20
    assert third["total"] == 120
    assert "next" not in third
    seen = ids(first["result"]) + ids(second["result"]) + ids(third["result"])
    assert seen == [str(i) for i in range(1, 121)]


def test_paging_counts_the_filtered_list(big: Rest) -> None:
    """user-get.md: `total` — the total number of records found (after FILTER)."""
    first = big.call("user.get", {"FILTER": {"ACTIVE": True}}).json()
    assert first["total"] == 108
    second = big.call("user.get", {"FILTER": {"ACTIVE": True}, "start": 50}).json()
    third = big.call("user.get", {"FILTER": {"ACTIVE": True}, "start": 100}).json()
    assert len(third["result"]) == 8
    assert "next" not in third
    assert "10" not in ids(first["result"] + second["result"] + third["result"])


def test_start_inside_a_page_means_that_page(big: Rest) -> None:
    """user-get.md: start = (N-1) * 50 selects page N; a start inside a page (its example sends
    10) gets that page [INFERRED]."""
    body = big.call("user.get", {"start": 60}).json()
    assert body["result"][0]["ID"] == "51"
    assert body["next"] == 100


def test_start_past_the_end_is_empty(big: Rest) -> None:
    body = big.call("user.get", {"start": 150}).json()
    assert body["result"] == []
    assert body["total"] == 120
    assert "next" not in body


def test_start_minus_one_skips_the_count(big: Rest) -> None:
    """user-get.md: start = -1 disables the total count; settings/performance/huge-data.md: the
    answer then has `total` 0 and no `next`, and one pages by filtering on ID > the last one."""
    body = big.call("user.get", {"start": -1}).json()
    assert len(body["result"]) == 50
    assert body["total"] == 0
    assert "next" not in body
    rest_of_it = big.call("user.get", {"start": -1, "FILTER": {">ID": 100}}).json()
    assert ids(rest_of_it["result"]) == [str(i) for i in range(101, 121)]


def test_paging_with_sort_descending(big: Rest) -> None:
    """user-get.md: sort/order apply before paging."""
    body = big.call("user.get", {"sort": "ID", "order": "DESC", "start": 100}).json()
    assert ids(body["result"]) == [str(i) for i in range(20, 0, -1)]
