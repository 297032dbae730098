"""The Bitrix24 parameters of a stored call (delivery/params.py).

Pages: api-reference/telephony/telephony-external-call-finish.md and -register.md (digest §5.1,
§5.2); the user resolution order is PRODUCT.md's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from b24app.delivery.params import (
    ParamsError,
    finish_params,
    register_params,
    start_date,
    user_params,
)
from b24app.models import PortalSettings


@dataclass
class Prefs:
    currency: str | None = None
    add_to_chat: bool = False
    fallback_user_id: int | None = None
    timezone: str = "UTC"


MAPPING = {"201": 7, "202": 8}


def lookup(extension: str) -> int | None:
    return MAPPING.get(extension)


def finish(request: dict[str, Any], **prefs: Any) -> dict[str, Any]:
    return finish_params(request, Prefs(**prefs), lookup)


# --- the user ------------------------------------------------------------------------------


def test_user_id_wins() -> None:
    request = {"CALL_ID": "c", "USER_ID": 5, "USER_PHONE_INNER": "201"}
    assert user_params(request, Prefs(fallback_user_id=9), lookup) == {"USER_ID": 5}


def test_extension_goes_through_the_portals_mapping() -> None:
    """PRODUCT.md: else USER_PHONE_INNER through the portal's extension → user mapping."""
    assert user_params({"USER_PHONE_INNER": "202"}, Prefs(), lookup) == {"USER_ID": 8}


def test_unmapped_extension_is_passed_as_is() -> None:
    """Bitrix24 then resolves it to the user whose inner number it is (finish page)."""
    request = {"USER_PHONE_INNER": "101"}
    assert user_params(request, Prefs(fallback_user_id=9), lookup) == {"USER_PHONE_INNER": "101"}


def test_fallback_user_when_the_call_names_nobody() -> None:
    assert user_params({"CALL_ID": "c"}, Prefs(fallback_user_id=9), lookup) == {"USER_ID": 9}


def test_no_user_at_all_is_a_plain_error() -> None:
    with pytest.raises(ParamsError) as raised:
        user_params({"CALL_ID": "c"}, Prefs(), lookup)
    assert raised.value.code == "NO_USER"
    assert "fallback employee" in raised.value.message


# --- finish --------------------------------------------------------------------------------


def test_finish_passes_the_pbx_fields_and_leaves_absent_ones_out() -> None:
    """RECORD_URL is never passed to finish (deprecated there): the recording is attached."""
    request = {
        "CALL_ID": "externalCall.1",
        "PBX_CALL_ID": "asterisk-1",
        "USER_ID": 2,
        "DURATION": 95,
        "STATUS_CODE": "200",
        "FAILED_REASON": "",
        "VOTE": 5,
        "RECORD_URL": "https://pbx.example/r/1.mp3",
    }
    assert finish(request) == {
        "CALL_ID": "externalCall.1",
        "USER_ID": 2,
        "DURATION": 95,
        "STATUS_CODE": "200",
        "FAILED_REASON": "",
        "VOTE": 5,
        "ADD_TO_CHAT": 0,
    }


def test_cost_without_currency_takes_the_portals_currency() -> None:
    """finish page: COST_CURRENCY defaults to "" (no currency); the portal's choice fills it."""
    params = finish({"CALL_ID": "c", "USER_ID": 1, "COST": 1.5}, currency="EUR")
    assert params["COST"] == 1.5 and params["COST_CURRENCY"] == "EUR"


def test_cost_currency_given_by_the_pbx_is_kept() -> None:
    params = finish(
        {"CALL_ID": "c", "USER_ID": 1, "COST": 1.5, "COST_CURRENCY": "USD"}, currency="EUR"
    )
    assert params["COST_CURRENCY"] == "USD"


def test_no_currency_without_cost_or_without_a_portal_currency() -> None:
    assert "COST_CURRENCY" not in finish({"CALL_ID": "c", "USER_ID": 1}, currency="EUR")
    assert "COST_CURRENCY" not in finish({"CALL_ID": "c", "USER_ID": 1, "COST": 2.0})


@pytest.mark.parametrize(
    ("sent", "portal", "expected"),
    [(None, False, 0), (None, True, 1), (0, True, 0), (1, False, 1)],
)
def test_add_to_chat_is_always_sent(sent: int | None, portal: bool, expected: int) -> None:
    """Digest §5.2: the page says default 1, the core reads a missing value as false; so it is
    always sent explicitly: the PBX's value, else the portal's setting."""
    request: dict[str, Any] = {"CALL_ID": "c", "USER_ID": 1}
    if sent is not None:
        request["ADD_TO_CHAT"] = sent
    assert finish(request, add_to_chat=portal)["ADD_TO_CHAT"] == expected


def test_call_id_override_for_calls_we_register() -> None:
    params = finish_params(
        {"PBX_CALL_ID": "p1", "USER_ID": 1}, Prefs(), lookup, call_id="$result[r7][CALL_ID]"
    )
    assert params["CALL_ID"] == "$result[r7][CALL_ID]"


def test_the_settings_row_is_read_as_is() -> None:
    """models.PortalSettings carries the fields params.py reads."""
    settings = PortalSettings(
        currency="RUB", add_to_chat=True, fallback_user_id=3, timezone="Europe/Moscow"
    )
    params = finish_params({"CALL_ID": "c", "COST": 3.0}, settings, lookup)
    assert params == {
        "CALL_ID": "c",
        "USER_ID": 3,
        "COST": 3.0,
        "COST_CURRENCY": "RUB",
        "ADD_TO_CHAT": 1,
    }


# --- register ------------------------------------------------------------------------------


def test_register_for_a_call_the_pbx_never_registered() -> None:
    """register page: EXTERNAL_CALL_ID, a unique PBX-side id; SHOW defaults to 1 there, the call
    is over so we send 0."""
    request = {
        "PBX_CALL_ID": "asterisk-1.5",
        "USER_PHONE_INNER": "201",
        "PHONE_NUMBER": "+79062195047",
        "TYPE": 2,
        "LINE_NUMBER": "74951234567",
        "CRM_CREATE": 1,
        "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
        "DURATION": 10,
    }
    assert register_params(request, Prefs(add_to_chat=True), lookup) == {
        "USER_ID": 7,
        "PHONE_NUMBER": "+79062195047",
        "TYPE": 2,
        "LINE_NUMBER": "74951234567",
        "CRM_CREATE": 1,
        "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
        "SHOW": 0,
        "EXTERNAL_CALL_ID": "asterisk-1.5",
        "ADD_TO_CHAT": 1,
    }


def test_register_keeps_a_show_the_pbx_asked_for() -> None:
    request = {"PBX_CALL_ID": "p", "USER_ID": 1, "PHONE_NUMBER": "1", "TYPE": 1, "SHOW": 1}
    assert register_params(request, Prefs(), lookup)["SHOW"] == 1


# --- CALL_START_DATE -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "zone", "expected"),
    [
        ("2026-03-07T10:20:30", "Europe/Moscow", "2026-03-07T10:20:30+03:00"),
        ("2026-03-07 10:20:30", "Europe/Moscow", "2026-03-07T10:20:30+03:00"),
        ("2026-07-01T09:00:00", "Europe/Berlin", "2026-07-01T09:00:00+02:00"),  # summer time
        ("2026-01-15T09:00:00", "Europe/Berlin", "2026-01-15T09:00:00+01:00"),
        ("2026-03-07T10:20:30", "UTC", "2026-03-07T10:20:30+00:00"),
        ("2026-03-07T10:20:30+05:00", "Europe/Moscow", "2026-03-07T10:20:30+05:00"),
        ("2026-03-07T07:20:30Z", "Europe/Moscow", "2026-03-07T07:20:30+00:00"),
        ("yesterday", "Europe/Moscow", "yesterday"),  # Bitrix24's own error will say why
    ],
)
def test_start_date_gets_the_portals_offset(sent: str, zone: str, expected: str) -> None:
    """register page: CALL_START_DATE is ISO-8601 with a time zone, e.g.
    2026-03-07T10:20:30+03:00; a PBX's local time is read in the portal's time zone."""
    assert start_date(sent, zone) == expected


def test_register_applies_the_portals_timezone() -> None:
    request = {
        "PBX_CALL_ID": "p",
        "USER_ID": 1,
        "PHONE_NUMBER": "1",
        "TYPE": 1,
        "CALL_START_DATE": "2026-03-07T10:20:30",
    }
    params = register_params(request, Prefs(timezone="Asia/Almaty"), lookup)
    assert params["CALL_START_DATE"] == "2026-03-07T10:20:30+05:00"


def test_a_start_date_without_an_offset_is_the_instant_stored_on_arrival() -> None:
    """calls.started_at was read in the zone of its arrival (Moscow); the zone is Almaty now."""
    arrived = datetime(2026, 3, 7, 7, 20, 30, tzinfo=UTC)  # 10:20:30 in Moscow
    almaty = Prefs(timezone="Asia/Almaty")
    request = {"PBX_CALL_ID": "p", "USER_ID": 1, "PHONE_NUMBER": "1", "TYPE": 1}
    without = register_params(
        {**request, "CALL_START_DATE": "2026-03-07T10:20:30"}, almaty, lookup, started_at=arrived
    )
    assert without["CALL_START_DATE"] == "2026-03-07T12:20:30+05:00"
    given = register_params(
        {**request, "CALL_START_DATE": "2026-03-07T10:20:30+01:00"},
        almaty,
        lookup,
        started_at=arrived,
    )
    assert given["CALL_START_DATE"] == "2026-03-07T10:20:30+01:00"  # an offset is the PBX's word
