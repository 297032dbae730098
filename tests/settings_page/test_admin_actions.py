"""What an administrator changes on the settings page, and what everyone else cannot: defaults,
the extension mapping (one by one, from Bitrix24 profiles, CSV), the PBX key. Every refusal is
checked in both languages and leaves everything as it was. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from b24app.db import get_db
from b24app.models import PortalStatus
from b24app.portals import mapping, store
from devportal import faults
from devportal.state import DevUser, default_users
from tests.conftest import LiveApp
from tests.settings_page.conftest import (
    open_page,
    pbx_key,
    send_call,
    stored_portal_settings,
)


def stored_mapping(live: LiveApp, member_id: str) -> dict[str, int]:
    with live.app.app_context(), get_db().read() as session:
        portal = store.find_portal(session, member_id)
        assert portal is not None
        return mapping.load(session, portal)


def errors(answer: Any) -> list[dict[str, str]]:
    assert answer.status_code == 422, answer.text
    return answer.json()["errors"]


# --- defaults -------------------------------------------------------------------------------------


def test_an_admin_changes_the_defaults(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    assert page.state["currencies"] == ["RUB", "USD", "EUR"]  # crm.currency.list, base first

    answer = page.post(
        "/settings",
        {
            "settings": {
                "currency": "eur",
                "add_to_chat": True,
                "fallback_user_id": "3",
                "timezone": "Europe/Moscow",
                "show_card": False,
            }
        },
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["changed"] == [
        "add_to_chat",
        "currency",
        "fallback_user_id",
        "show_card",
        "timezone",
    ]
    expected = {
        "currency": "EUR",
        "add_to_chat": True,
        "fallback_user_id": 3,
        "timezone": "Europe/Moscow",
        "show_card": False,
    }
    assert answer.json()["settings"] == expected
    assert stored_portal_settings(live_app, portal) == expected
    assert page.get("/state").json()["settings"] == expected


def test_the_call_card_is_shown_by_default_and_can_be_turned_off_and_on(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    assert page.state["settings"]["show_card"] is True  # the register page's default SHOW=1
    assert page.state["messages"]["show_card_label"] == "Показывать карточку звонка при его начале"

    off = page.post("/settings", {"settings": {"show_card": False}})

    assert off.status_code == 200, off.text
    assert off.json()["changed"] == ["show_card"]
    assert stored_portal_settings(live_app, portal)["show_card"] is False
    reopened = open_page(live_app, portal)
    assert reopened.state["settings"]["show_card"] is False
    assert reopened.state["messages"]["show_card_label"] == "Show the call card when a call starts"
    assert page.post("/settings", {"settings": {"show_card": "1"}}).status_code == 200
    assert stored_portal_settings(live_app, portal)["show_card"] is True


def test_fallback_can_be_cleared(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    page.post("/settings", {"settings": {"fallback_user_id": 3}})

    answer = page.post("/settings", {"settings": {"fallback_user_id": ""}})

    assert answer.status_code == 200
    assert stored_portal_settings(live_app, portal)["fallback_user_id"] is None


@pytest.mark.parametrize(
    ("changes", "field", "english", "russian"),
    [
        (
            {"currency": "XYZ"},
            "currency",
            "XYZ is not a currency of this portal. Its currencies: RUB, USD, EUR.",
            "XYZ — не валюта этого портала. Валюты портала: RUB, USD, EUR.",
        ),
        (
            {"timezone": "Mars/Olympus"},
            "timezone",
            "Mars/Olympus is not a time zone. Choose one from the list, for example Europe/Moscow.",
            "Mars/Olympus — не часовой пояс. Выберите пояс из списка, например Europe/Moscow.",
        ),
        (
            {"fallback_user_id": "5"},  # Eva was dismissed
            "fallback_user_id",
            "User 5 is not an active employee of this portal.",
            "Пользователь 5 не является работающим сотрудником этого портала.",
        ),
        (
            {"fallback_user_id": "boss"},
            "fallback_user_id",
            "Choose an employee of this portal (a Bitrix24 user id).",
            "Выберите сотрудника этого портала (ID пользователя Битрикс24).",
        ),
        (
            {"add_to_chat": "maybe"},
            "add_to_chat",
            "Choose whether calls are posted to the chat: on or off.",
            "Выберите, публиковать ли звонки в чат: включено или выключено.",
        ),
        (
            {"show_card": "sometimes"},
            "show_card",
            "Choose whether the call card is shown when a call starts: on or off.",
            "Выберите, показывать ли карточку звонка при его начале: включено или выключено.",
        ),
        (
            {"enterprise_limits": "1"},  # the CLI's, not the page's
            "enterprise_limits",
            "enterprise_limits is not a setting of this page.",
            "enterprise_limits — не настройка этой страницы.",
        ),
    ],
)
def test_refused_defaults_say_why_in_both_languages_and_change_nothing(
    live_app: LiveApp, changes: dict[str, str], field: str, english: str, russian: str
):
    portal = live_app.install("alpha")
    before = stored_portal_settings(live_app, portal)
    for lang, message in (("en", english), ("ru", russian)):
        page = open_page(live_app, portal, lang=lang)
        # a valid change next to the bad one is not written either
        answer = page.post("/settings", {"settings": {"currency": "USD", **changes}})
        assert errors(answer) == [{"field": field, "message": message}]
    assert stored_portal_settings(live_app, portal) == before


def test_nothing_to_save_is_refused(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    assert errors(page.post("/settings", {"settings": {}})) == [
        {"field": "settings", "message": "Нечего сохранять."}
    ]


# --- the extension mapping -----------------------------------------------------------------------


def test_employees_are_the_portals_active_users_of_all_pages(live_app: LiveApp):
    """user-get.md: 50 a page; the first page and one batch for the other two."""
    users = [DevUser(i, f"Name{i}", f"Last{i}", admin=i == 1, extension=str(100 + i))
             for i in range(1, 131)]  # fmt: skip
    users.append(DevUser(131, "Gone", "Away", active=False, extension="999"))
    portal = live_app.install("big", users=users)
    page = open_page(live_app, portal)
    before = len(live_app.dev.entries(method="user.get"))
    batches = len(live_app.dev.entries(method="batch"))

    answer = page.get("/employees")

    found = answer.json()["employees"]
    assert [e["id"] for e in found] == list(range(1, 131))
    assert found[0] == {"id": 1, "name": "Name1 Last1", "extension": "101"}
    assert len(live_app.dev.entries(method="user.get")) - before == 3  # one direct, two batched
    assert len(live_app.dev.entries(method="batch")) - batches == 1


def test_an_admin_adds_changes_and_removes_extensions(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)

    added = page.post("/mapping", {"extension": "201", "user_id": 2})
    assert added.json()["mapping"] == [{"extension": "201", "user_id": 2}]
    page.post("/mapping", {"extension": "202", "user_id": "3"})
    changed = page.post("/mapping", {"extension": "203", "user_id": 4, "replaces": "201"})
    assert changed.json()["mapping"] == [
        {"extension": "202", "user_id": 3},
        {"extension": "203", "user_id": 4},
    ]
    removed = page.post("/mapping/remove", {"extension": "202"})

    assert removed.json()["mapping"] == [{"extension": "203", "user_id": 4}]
    assert stored_mapping(live_app, portal.member_id) == {"203": 4}


@pytest.mark.parametrize(
    ("body", "field", "english", "russian"),
    [
        (
            {"extension": "10 1", "user_id": 2},
            "extension",
            "An extension is 1–32 characters: digits, letters and * # + . _ -",
            "Добавочный номер — от 1 до 32 символов: цифры, буквы и * # + . _ -",
        ),
        (
            {"extension": "201", "user_id": "two"},
            "user_id",
            "The employee must be a Bitrix24 user id (a positive whole number).",
            "Сотрудник задаётся ID пользователя Битрикс24 (целое положительное число).",
        ),
        (
            {"extension": "201", "user_id": 5},
            "user_id",
            "User 5 is not an active employee of this portal.",
            "Пользователь 5 не является работающим сотрудником этого портала.",
        ),
        (
            {"extension": "100", "user_id": 2, "replaces": "101"},
            "extension",
            "This extension appears twice; each extension goes to one employee.",
            "Этот добавочный номер встречается дважды; каждый номер относится к одному сотруднику.",
        ),
        (
            {"extension": "300", "user_id": 2, "replaces": "999"},
            "extension",
            "Extension 999 is not in the mapping.",
            "Добавочного номера 999 нет в списке.",
        ),
    ],
)
def test_refused_mapping_rows_say_why_in_both_languages(
    live_app: LiveApp, body: dict[str, Any], field: str, english: str, russian: str
):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    page.post("/mapping/import", {"csv": "extension,user_id\n100,1\n101,2\n"})
    for lang, message in (("en", english), ("ru", russian)):
        page = open_page(live_app, portal, lang=lang)
        assert errors(page.post("/mapping", body)) == [{"field": field, "message": message}]
    assert stored_mapping(live_app, portal.member_id) == {"100": 1, "101": 2}


def test_removing_an_unknown_extension_is_refused(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    assert errors(page.post("/mapping/remove", {"extension": "555"})) == [
        {"field": "extension", "message": "Добавочного номера 555 нет в списке."}
    ]


def test_extensions_are_taken_from_bitrix24_profiles_in_one_click(live_app: LiveApp):
    users = [*default_users(), DevUser(6, "Fedor", "Twin", extension="102")]  # shares Clara's
    portal = live_app.install("alpha", users=users)
    page = open_page(live_app, portal)
    page.post("/mapping/import", {"csv": "extension,user_id\n100,3\n900,4\n"})

    answer = page.post("/mapping/from-profiles")

    body = answer.json()
    assert body["added"] == ["101"]  # Boris; Anna's 100 was mapped to Clara
    assert body["changed"] == ["100"]
    assert body["skipped"] == ["102"]  # two profiles have 102: the admin decides
    # Eva (dismissed) has 105 in her profile: only active employees count
    assert stored_mapping(live_app, portal.member_id) == {"100": 1, "101": 2, "900": 4}


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_import_replaces_the_mapping_and_export_gives_it_back(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    page.post("/mapping", {"extension": "777", "user_id": 1})
    csv_text = "\ufeffextension,user_id\n101,2\n\n102,3\n*5#,4\n"

    answer = page.post("/mapping/import", {"csv": csv_text})

    assert answer.json()["count"] == 3
    assert stored_mapping(live_app, portal.member_id) == {"101": 2, "102": 3, "*5#": 4}
    exported = page.get("/mapping/export")
    assert exported.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in exported.headers["Content-Disposition"]
    assert exported.text == "extension,user_id\n*5#,4\n101,2\n102,3\n"  # the CLI's format
    assert mapping.parse_csv(exported.text) == {"101": 2, "102": 3, "*5#": 4}


@pytest.mark.parametrize(
    ("csv_text", "english", "russian"),
    [
        (
            "ext,user\n101,2\n",
            "Line 1: The first line must be exactly: extension,user_id",
            "Строка 1: Первая строка должна быть ровно такой: extension,user_id",
        ),
        (
            "extension,user_id\n101,2\n102,3,x\n",
            "Line 3: Each line needs exactly two columns: extension,user_id",
            "Строка 3: В каждой строке должно быть ровно два столбца: extension,user_id",
        ),
        (
            "extension,user_id\n101,2\n101,3\n",
            "Line 3: This extension appears twice; each extension goes to one employee.",
            "Строка 3: Этот добавочный номер встречается дважды; каждый номер относится к "
            "одному сотруднику.",
        ),
        (
            "extension,user_id\n101,2\n102,-3\n",
            "Line 3: The employee must be a Bitrix24 user id (a positive whole number).",
            "Строка 3: Сотрудник задаётся ID пользователя Битрикс24 (целое положительное число).",
        ),
        (
            "extension,user_id\n101,2\n102,3\n103,99\n",
            "Line 4: User 99 is not an active employee of this portal.",
            "Строка 4: Пользователь 99 не является работающим сотрудником этого портала.",
        ),
        ("", "Choose a CSV file to import.", "Выберите CSV-файл для импорта."),
    ],
)
def test_a_bad_csv_changes_nothing_and_names_the_line(
    live_app: LiveApp, csv_text: str, english: str, russian: str
):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    page.post("/mapping", {"extension": "777", "user_id": 1})
    for lang, message in (("en", english), ("ru", russian)):
        page = open_page(live_app, portal, lang=lang)
        answer = page.post("/mapping/import", {"csv": csv_text})
        assert errors(answer) == [{"field": "csv", "message": message}]
    assert stored_mapping(live_app, portal.member_id) == {"777": 1}


# --- the PBX key --------------------------------------------------------------------------------


def test_the_key_is_revealed_only_when_asked_and_rotated_only_when_confirmed(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    old = pbx_key(live_app, portal)

    assert page.post("/pbx-key/reveal").json()["key"] == old
    refused = page.post("/pbx-key/rotate")
    assert errors(refused)[0]["field"] == "confirm"
    assert pbx_key(live_app, portal) == old

    rotated = page.post("/pbx-key/rotate", {"confirm": True})

    new = rotated.json()["key"]
    assert new != old and new == pbx_key(live_app, portal)
    assert new.startswith("b24pbx_")
    call = {"PBX_CALL_ID": "k-1", "USER_ID": 1, "PHONE_NUMBER": "+74950000000", "TYPE": 2,
            "CALL_START_DATE": "2026-03-07T10:20:30", "DURATION": 5}  # fmt: skip
    assert send_call(live_app, portal, **call).status_code == 202  # the stored (new) key
    with_old = _send_with(live_app, old, call)
    assert with_old.status_code == 401  # the old key stopped working at once


def _send_with(live: LiveApp, key: str, fields: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{live.url}/pbx/v1/calls/finish",
        headers={"Authorization": f"Bearer {key}"},
        json=fields,
        timeout=30,
    )


# --- the read-only view ---------------------------------------------------------------------------


CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("/settings", {"settings": {"currency": "EUR"}}),
    ("/mapping", {"extension": "201", "user_id": 2}),
    ("/mapping/remove", {"extension": "100"}),
    ("/mapping/import", {"csv": "extension,user_id\n201,2\n"}),
    ("/mapping/from-profiles", {}),
    ("/pbx-key/reveal", {}),
    ("/pbx-key/rotate", {"confirm": True}),
    ("/calls/0123/deliver-again", {}),
    ("/calls/0123/events/1/deliver-again", {}),
    ("/reauthorize", {}),
]


def test_a_non_admin_can_look_but_change_nothing(live_app: LiveApp):
    portal = live_app.install("alpha")
    admin = open_page(live_app, portal)
    admin.post("/mapping", {"extension": "100", "user_id": 1})
    key = pbx_key(live_app, portal)
    boris = open_page(live_app, portal, user_id=2, lang="ru")

    for path, body in CHANGES:
        answer = boris.post(path, body)
        assert answer.status_code == 403, path
        assert answer.json()["error"]["code"] == "admins_only"
        assert answer.json()["error"]["message"].startswith("Изменять эти настройки могут только")
        assert "key" not in answer.json()
    assert boris.get("/calls").status_code == 403  # the journal holds customers' numbers

    assert stored_portal_settings(live_app, portal)["currency"] is None
    assert stored_mapping(live_app, portal.member_id) == {"100": 1}
    assert pbx_key(live_app, portal) == key
    assert boris.get("/state").status_code == 200
    assert boris.get("/employees").status_code == 200
    assert boris.get("/mapping/export").text == "extension,user_id\n100,1\n"


# --- when Bitrix24 does not answer ---------------------------------------------------------------


def test_bitrix24_down_is_said_plainly(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang="ru")
    faults.set_outage(live_app.dev, portal, "503")

    answer = page.get("/employees")

    assert answer.status_code == 502
    assert answer.json()["error"]["message"].startswith("Битрикс24 не ответил (UNREADABLE_ANSWER)")
    # a mapping row is still checked for format, and saved (as the CLI would)
    assert page.post("/mapping", {"extension": "201", "user_id": 2}).status_code == 200


def test_when_bitrix24_cannot_say_who_is_admin_the_page_is_read_only(live_app: LiveApp):
    portal = live_app.install("alpha")
    faults.set_outage(live_app.dev, portal, "503")

    page = open_page(live_app, portal, user_id=1)

    assert page.state["viewer"]["is_admin"] is False
    assert page.state["admin_unknown"] is True  # the page says so beside "View only."
    assert "did not say whether you are an administrator" in page.state["messages"]["admin_unknown"]


def test_a_portal_that_needs_its_admin_says_what_to_do(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    with live_app.app.app_context(), get_db().write() as session:
        store.set_status(
            store.find_portal(session, portal.member_id), PortalStatus.PAYMENT_REQUIRED
        )

    answer = page.get("/employees")

    assert answer.status_code == 409
    message = answer.json()["error"]["message"]
    assert message.startswith("The application's paid period has expired.")
    assert "Renew the application's subscription in Bitrix24 Market" in message
    assert page.get("/state").json()["health"]["status_label"] == "Payment required"
