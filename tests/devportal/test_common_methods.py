"""The development portal's app.info, profile, user.admin, user.current and crm.currency.list,
and how any method is reached (names, URL suffix, where `auth` travels)."""

from __future__ import annotations

import requests

from devportal.server import DevportalServer
from devportal.state import DevPortal, DevState, install
from tests.conftest import TEST_CLIENT_ID
from tests.devportal.conftest import Rest


def token_for(
    dev: DevState, portal: DevPortal, user_id: int, client_id: str = TEST_CLIENT_ID
) -> str:
    access, _ = dev.issue_tokens(portal, client_id, user_id)
    return access.token


def narrow_token(dev: DevState, portal: DevPortal) -> str:
    """An app granted only `telephony` (no user or crm scope)."""
    dev.add_app("app.narrow", "s", scope="telephony")
    _, access, _ = install(dev, portal, "app.narrow")
    return access.token


# --- app.info -----------------------------------------------------------------------------------


def test_app_info_describes_the_installation_of_the_tokens_app(rest: Rest) -> None:
    """api-reference/common/system/app-info.md: ID, CODE, VERSION, STATUS, INSTALLED,
    PAYMENT_EXPIRED, DAYS, LANGUAGE_ID, LICENSE, LICENSE_TYPE, LICENSE_FAMILY."""
    info = rest.result("app.info")
    assert set(info) == {
        "ID", "CODE", "VERSION", "STATUS", "INSTALLED", "PAYMENT_EXPIRED", "DAYS",
        "LANGUAGE_ID", "LICENSE", "LICENSE_TYPE", "LICENSE_FAMILY",
    }  # fmt: skip
    assert info["CODE"] == TEST_CLIENT_ID
    assert isinstance(info["ID"], int)
    assert info["VERSION"] == 1
    assert info["STATUS"] == "F"
    assert info["INSTALLED"] is True
    assert info["PAYMENT_EXPIRED"] == "N"
    assert info["LICENSE"] == f"{info['LANGUAGE_ID']}_{info['LICENSE_TYPE']}"
    assert info["LICENSE_TYPE"].startswith(info["LICENSE_FAMILY"])


def test_app_info_follows_installation_state(rest: Rest, portal: DevPortal) -> None:
    """app-info.md: INSTALLED is false until BX24.installFinish; VERSION is the installed one."""
    installation = portal.installations[TEST_CLIENT_ID]
    installation.installed = False
    installation.version = 3
    info = rest.result("app.info")
    assert info["INSTALLED"] is False
    assert info["VERSION"] == 3


def test_app_info_of_a_local_app_has_status_l(
    dev: DevState, devportal: DevportalServer, portal: DevPortal
) -> None:
    """app-info.md: STATUS `L` — local application."""
    dev.add_app("local.abc123", "secret")
    _, access, _ = install(dev, portal, "local.abc123")
    info = Rest(devportal.url, portal, access.token).result("app.info")
    assert info["STATUS"] == "L"
    assert info["CODE"] == "local.abc123"


def test_app_info_license_of_an_enterprise_portal(
    dev: DevState, devportal: DevportalServer
) -> None:
    """app-info.md: LICENSE names the plan (e.g. de_ent10000, family `ent`)."""
    portal = dev.add_portal("big", enterprise=True)
    _, access, _ = install(dev, portal, TEST_CLIENT_ID)
    info = Rest(devportal.url, portal, access.token).result("app.info")
    assert info["LICENSE_FAMILY"] == "ent"


# --- profile / user.admin -----------------------------------------------------------------------


def test_profile_of_the_admin(rest: Rest) -> None:
    """api-reference/common/users/profile.md: ID (string), ADMIN, NAME, LAST_NAME,
    PERSONAL_GENDER, TIME_ZONE."""
    assert rest.result("profile") == {
        "ID": "1",
        "ADMIN": True,
        "NAME": "Anna",
        "LAST_NAME": "Admin",
        "PERSONAL_GENDER": "",
        "TIME_ZONE": "",
    }


def test_profile_of_an_employee_is_not_admin(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """profile.md: ADMIN matches user.admin — false for a regular employee."""
    response = rest.call("profile", auth=token_for(dev, portal, 2))
    assert response.status_code == 200
    result = response.json()["result"]
    assert result["ID"] == "2"
    assert result["ADMIN"] is False
    assert result["NAME"] == "Boris"


def test_profile_shows_time_zone(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """profile.md: TIME_ZONE, e.g. Europe/Berlin; empty string when not set."""
    portal.users[3].time_zone = "Europe/Berlin"
    result = rest.call("profile", auth=token_for(dev, portal, 3)).json()["result"]
    assert result["TIME_ZONE"] == "Europe/Berlin"


def test_profile_of_an_inactive_user_is_empty(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """profile.md: "If the user is inactive, the object is empty" (PHP's empty array: [])."""
    response = rest.call("profile", auth=token_for(dev, portal, 5))
    assert response.status_code == 200
    assert response.json()["result"] == []


def test_profile_and_user_admin_need_no_scope(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """profile.md: profile works "without any scopes"; user-admin.md: scope basic."""
    token = narrow_token(dev, portal)
    assert rest.call("profile", auth=token).json()["result"]["ID"] == "1"
    assert rest.call("user.admin", auth=token).json()["result"] is True


def test_user_admin_true_for_admin_false_for_employee(
    rest: Rest, dev: DevState, portal: DevPortal
) -> None:
    """api-reference/common/users/user-admin.md: true if the user may manage app settings."""
    assert rest.result("user.admin") is True
    assert rest.call("user.admin", auth=token_for(dev, portal, 2)).json()["result"] is False


# --- user.current -------------------------------------------------------------------------------


def test_user_current_is_the_tokens_user(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """api-reference/user/user-current.md: the user whose token was used; ID as a string."""
    me = rest.call("user.current", auth=token_for(dev, portal, 3)).json()["result"]
    assert me["ID"] == "3"
    assert me["NAME"] == "Clara"
    assert me["UF_PHONE_INNER"] == "102"
    assert me["ACTIVE"] is True


def test_user_current_fields_follow_the_user_scope(
    rest: Rest, dev: DevState, devportal: DevportalServer, portal: DevPortal
) -> None:
    """api-reference/user/user-scope.md (digest §6.1): user_brief has no contact data (EMAIL);
    user_basic adds it."""
    assert "EMAIL" not in rest.result("user.current")  # our app asks for user_brief
    dev.add_app("app.basic", "s", scope="user_basic")
    _, access, _ = install(dev, portal, "app.basic")
    me = Rest(devportal.url, portal, access.token).result("user.current")
    assert me["EMAIL"] == "anna@example.test"


def test_user_current_needs_a_user_scope(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """user-current.md: scope user, user_brief or user_basic; _includes/system-errors.md:
    insufficient_scope, 403."""
    response = rest.call("user.current", auth=narrow_token(dev, portal))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


# --- crm.currency.list --------------------------------------------------------------------------


def test_currency_list_elements_and_total(rest: Rest) -> None:
    """api-reference/crm/currency/crm-currency-list.md: crm_currency elements; numbers as in the
    example ("SORT": "100"); `total` "currently always has a value of 0"."""
    response = rest.call("crm.currency.list")
    body = response.json()
    assert body["total"] == 0
    assert "next" not in body
    currencies = body["result"]
    assert [c["CURRENCY"] for c in currencies] == ["RUB", "USD", "EUR"]
    rub = currencies[0]
    assert rub["BASE"] == "Y"
    assert {c["BASE"] for c in currencies[1:]} == {"N"}
    assert rub["SORT"] == "100"
    assert rub["AMOUNT"] == "1.0000"
    assert rub["DECIMALS"] == "2"
    other_fields = ("AMOUNT_CNT", "FULL_NAME", "LID", "FORMAT_STRING", "DEC_POINT", "DATE_UPDATE")
    assert set(other_fields) <= set(rub)


def test_currency_list_order(rest: Rest) -> None:
    """crm-currency-list.md: `order` {"field": "asc"|"desc"}; the example spells fields in lower
    case ({"sort": "asc", "currency": "asc"})."""
    by_sort_desc = rest.result("crm.currency.list", {"order": {"SORT": "desc"}})
    assert [c["CURRENCY"] for c in by_sort_desc] == ["EUR", "USD", "RUB"]
    by_code = rest.result("crm.currency.list", {"order": {"currency": "asc"}})
    assert [c["CURRENCY"] for c in by_code] == ["EUR", "RUB", "USD"]
    by_code_desc = rest.result("crm.currency.list", {"order": {"CURRENCY": "desc"}})
    assert [c["CURRENCY"] for c in by_code_desc] == ["USD", "RUB", "EUR"]


def test_currency_list_sorts_sort_numerically(rest: Rest, portal: DevPortal) -> None:
    """crm-currency-list.md: SORT is a number (sent as text): 1000 sorts after 200."""
    portal.currencies[0]["SORT"] = 1000
    ordered = rest.result("crm.currency.list", {"order": {"SORT": "asc"}})
    assert [c["CURRENCY"] for c in ordered] == ["USD", "EUR", "RUB"]


def test_currency_list_needs_crm_scope(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """crm-currency-list.md: scope crm; system-errors.md: insufficient_scope, 403."""
    response = rest.call("crm.currency.list", auth=narrow_token(dev, portal))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


# --- reaching a method --------------------------------------------------------------------------


def test_method_names_are_case_insensitive(rest: Rest) -> None:
    """api-reference/common/system/method-get.md (digest §3.1): names are case-insensitive."""
    assert rest.result("USER.ADMIN") is True
    assert rest.result("User.Current")["ID"] == "1"


def test_json_suffix_is_optional(rest: Rest, devportal: DevportalServer, portal: DevPortal) -> None:
    """settings/how-to-call-rest-api/general-principles.md: the `.json` suffix is optional."""
    url = f"{devportal.url}/p/{portal.code}/rest/user.admin"
    response = requests.post(url, json={"auth": rest.token}, timeout=10)
    assert response.status_code == 200
    assert response.json()["result"] is True


def test_auth_in_query_string(rest: Rest, devportal: DevportalServer, portal: DevPortal) -> None:
    """general-principles.md / settings/oauth/index.md: `…/rest/method?auth=TOKEN` (GET)."""
    url = f"{devportal.url}/p/{portal.code}/rest/profile.json"
    response = requests.get(url, params={"auth": rest.token}, timeout=10)
    assert response.status_code == 200
    assert response.json()["result"]["ID"] == "1"


def test_auth_in_form_body(rest: Rest, devportal: DevportalServer, portal: DevPortal) -> None:
    """general-principles.md: methods accept form-encoded POST; `auth` is one more field."""
    url = f"{devportal.url}/p/{portal.code}/rest/crm.currency.list"
    response = requests.post(url, data={"auth": rest.token, "order[CURRENCY]": "desc"}, timeout=10)
    assert response.status_code == 200
    assert [c["CURRENCY"] for c in response.json()["result"]] == ["USD", "RUB", "EUR"]


def test_auth_in_json_body(rest: Rest, devportal: DevportalServer, portal: DevPortal) -> None:
    """settings/how-to-call-rest-api/authorization.md: with a JSON body `auth` goes inside it."""
    url = f"{devportal.url}/p/{portal.code}/rest/user.current.json"
    response = requests.post(url, json={"auth": rest.token}, timeout=10)
    assert response.status_code == 200
    assert response.json()["result"]["ID"] == "1"


def test_without_auth_no_auth_found(devportal: DevportalServer, portal: DevPortal) -> None:
    """_includes/system-errors.md: NO_AUTH_FOUND (401) — wrong authorization data."""
    url = f"{devportal.url}/p/{portal.code}/rest/user.admin"
    response = requests.post(url, json={}, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"] == "NO_AUTH_FOUND"
