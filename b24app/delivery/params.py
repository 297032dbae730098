"""The Bitrix24 parameters of a stored call, decided when it is delivered, not when it arrived.

The intake stores what the PBX sent (`Call.request`, already validated and keyed by Bitrix24's
names). The portal's settings and extension mapping are applied here, at delivery time, so an
admin who fixes a setting (a missing fallback user, the billing currency) and retries the call
gets the fixed values. Rules (PRODUCT.md "User resolution order", docs/issue 4 design):

- user: USER_ID if given; else USER_PHONE_INNER through the portal's extension → user mapping
  (sent as USER_ID); else USER_PHONE_INNER as is (Bitrix24 resolves the user's own inner number);
  else the portal's `fallback_user_id` (sent as USER_ID). A call whose employee Bitrix24 refused
  as not active (a departed employee, an extension nobody has) goes to the fallback user
  (`fallback=True`, deliver.py decides).
- COST without COST_CURRENCY: the portal's `currency`, if one is set.
- ADD_TO_CHAT is always sent: the finish page documents the default 1, the core converts a
  missing value to false (digest §5.2), so only an explicit value means the same everywhere.
  The request's value, else the portal's `add_to_chat`.
- CALL_START_DATE without a UTC offset means the moment the intake worked out when it arrived
  (`calls.started_at`: read in the portal's `timezone` of then, delivery/call_index.py), so a
  zone changed before delivery moves neither Bitrix24's time nor the journal's; it is sent with
  the portal's offset now (telephony-external-call-register.md: ISO-8601 with a time zone).
- A call without CALL_ID is registered first (from its start, else from a finish carrying the
  registration fields; lifecycle.py decides): register gets the user, PHONE_NUMBER, TYPE,
  CALL_START_DATE, LINE_NUMBER, the CRM fields, SHOW (as given; a start's default is the portal's
  `show_card`, a finish's 0: the call is over, no card should pop up), EXTERNAL_CALL_ID =
  PBX_CALL_ID and the same ADD_TO_CHAT as the finish.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from b24app.portals.settings import Preferences, zone

# Passed to finish as the PBX sent them (after the intake's validation).
FINISH_FIELDS = (
    "DURATION",
    "COST",
    "COST_CURRENCY",
    "STATUS_CODE",
    "FAILED_REASON",
    "VOTE",
)  # never RECORD_URL: finish's RECORD_URL is deprecated; recordings go by attachRecord
REGISTER_FIELDS = (
    "PHONE_NUMBER",
    "TYPE",
    "LINE_NUMBER",
    "CRM_CREATE",
    "CRM_SOURCE",
    "CRM_ENTITY_TYPE",
    "CRM_ENTITY_ID",
)

UserLookup = Callable[[str], int | None]  # extension -> Bitrix24 user id


class ParamsError(Exception):
    """The call cannot be sent as the portal is set up now; `message` tells the admin why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def user_params(
    request: Mapping[str, Any],
    prefs: Preferences,
    lookup: UserLookup,
    *,
    fallback: bool = False,
) -> dict[str, Any]:
    """`{"USER_ID": n}` or `{"USER_PHONE_INNER": "…"}` by the resolution order above; with
    `fallback`, the portal's fallback user whatever the call names. ParamsError when there is
    no user to send."""
    if fallback and prefs.fallback_user_id:
        return {"USER_ID": int(prefs.fallback_user_id)}
    if request.get("USER_ID"):
        return {"USER_ID": int(request["USER_ID"])}
    inner = str(request.get("USER_PHONE_INNER") or "").strip()
    if inner:
        mapped = lookup(inner)
        return {"USER_ID": mapped} if mapped else {"USER_PHONE_INNER": inner}
    if prefs.fallback_user_id:
        return {"USER_ID": int(prefs.fallback_user_id)}
    raise ParamsError(
        "NO_USER",
        "The call names no employee (neither USER_ID nor USER_PHONE_INNER) and the portal has "
        "no fallback employee; choose one on the settings page.",
    )


def add_to_chat(request: Mapping[str, Any], prefs: Preferences) -> int:
    value = request.get("ADD_TO_CHAT")
    if value is None:
        return int(bool(prefs.add_to_chat))
    return int(bool(int(value)))


def finish_params(
    request: Mapping[str, Any],
    prefs: Preferences,
    lookup: UserLookup,
    *,
    call_id: str | None = None,
    fallback: bool = False,
) -> dict[str, Any]:
    """telephony.externalCall.finish's parameters; `call_id` overrides the request's CALL_ID
    (the CALL_ID register returned, or a `$result[r<id>][CALL_ID]` batch reference)."""
    params: dict[str, Any] = {"CALL_ID": call_id or request.get("CALL_ID")}
    params.update(user_params(request, prefs, lookup, fallback=fallback))
    for name in FINISH_FIELDS:
        if request.get(name) is not None:
            params[name] = request[name]
    if "COST" in params and not params.get("COST_CURRENCY") and prefs.currency:
        params["COST_CURRENCY"] = prefs.currency
    params["ADD_TO_CHAT"] = add_to_chat(request, prefs)
    return params


def register_params(
    request: Mapping[str, Any],
    prefs: Preferences,
    lookup: UserLookup,
    *,
    fallback: bool = False,
    started_at: datetime | None = None,
    user: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """telephony.externalCall.register's parameters for a call the PBX did not register;
    `started_at`: the call's start as stored on arrival (start_date); `user`: the employee to
    name ({"USER_ID": n} or {"USER_PHONE_INNER": "…"}) instead of resolving one (user_params,
    which raises ParamsError when there is none)."""
    params: dict[str, Any] = (
        dict(user) if user else user_params(request, prefs, lookup, fallback=fallback)
    )
    for name in REGISTER_FIELDS:
        if request.get(name) is not None:
            params[name] = request[name]
    if request.get("CALL_START_DATE"):
        written = str(request["CALL_START_DATE"])
        params["CALL_START_DATE"] = start_date(written, prefs.timezone, started_at)
    params["SHOW"] = request["SHOW"] if request.get("SHOW") is not None else 0
    params["EXTERNAL_CALL_ID"] = request.get("PBX_CALL_ID")
    params["ADD_TO_CHAT"] = add_to_chat(request, prefs)
    return params


def start_date(value: str, timezone: str, started_at: datetime | None = None) -> str:
    """ISO-8601 with an offset; a date without one is `started_at` (the instant it meant on
    arrival) in the portal's time zone now, or, not known, read in that zone. A value that is
    not ISO-8601 at all is sent as is, so Bitrix24's own error reaches the admin."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return value
    if parsed.tzinfo is None:
        here = zone(timezone)
        parsed = started_at.astimezone(here) if started_at else parsed.replace(tzinfo=here)
    return parsed.isoformat()
