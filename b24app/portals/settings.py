"""Changing a portal's settings: one validated path for the CLI and the settings page.

Every value is checked first; only if all are valid is anything written, so a bad value never
leaves a half-changed portal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from b24app.bitrix.errors import BitrixError, UnsafeAddress
from b24app.bitrix.safety import InvalidURL, parse_url, public_address
from b24app.models import Portal, PortalSettings
from b24app.portals.currencies import refresh_currencies
from b24app.portals.mapping import MappingError, check_user_id
from b24app.portals.store import InstallationStore


@dataclass(frozen=True)
class Preferences:
    """A portal's preferences as delivery reads them (delivery/params.py), detached from the
    session: the currency, ADD_TO_CHAT, the fallback employee, the IANA time zone and the default
    SHOW of a start's register (`show_card`; register page: default 1)."""

    currency: str | None = None
    add_to_chat: bool = False
    fallback_user_id: int | None = None
    timezone: str = "UTC"
    show_card: bool = True

    @classmethod
    def of(cls, settings: PortalSettings | None) -> Preferences:
        """From the portal's settings row (None: the defaults)."""
        if settings is None:
            return cls()
        return cls(
            currency=settings.currency,
            add_to_chat=bool(settings.add_to_chat),
            fallback_user_id=settings.fallback_user_id,
            timezone=settings.timezone or "UTC",
            show_card=settings.show_card is not False,
        )


def zone(name: str | None) -> ZoneInfo:
    """The time zone called `name`; UTC for none, or for a name this system does not know."""
    try:
        return ZoneInfo(name or "UTC")
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        return ZoneInfo("UTC")


@dataclass
class SettingError(Exception):
    """`field` is the setting's name, `message` says why its value is refused."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _flag(field: str, value: str) -> bool:
    if value not in ("0", "1"):
        raise SettingError(field, "must be 0 or 1")
    return value == "1"


@dataclass(frozen=True)
class Asking:
    """What a validator may ask about the portal a setting is for: its currencies (asked
    afresh of Bitrix24), and the store (for the deployment's settings)."""

    store: InstallationStore
    member_id: str

    def currencies(self) -> list[str]:
        return refresh_currencies(self.store, self.member_id, force=True)


def _currency(asking: Asking, value: str) -> str:
    code = value.strip().upper()
    try:
        known = asking.currencies()
    except BitrixError as error:
        detail = f"could not read the portal's currencies ({error.code})"
        raise SettingError("currency", detail) from None
    if code not in known:
        raise SettingError("currency", f"{value!r} is not a currency of this portal: {known}")
    return code


def _user_id(value: str) -> int | None:
    if value.strip() in ("", "none"):
        return None
    try:
        return check_user_id(value)
    except MappingError as error:
        raise SettingError("fallback_user_id", error.message) from None


def _timezone(value: str) -> str:
    name = value.strip()
    if name not in available_timezones():
        raise SettingError("timezone", f"{value!r} is not an IANA time zone (e.g. Europe/Moscow)")
    try:
        ZoneInfo(name)
    except ZoneInfoNotFoundError:
        raise SettingError("timezone", f"{value!r} is not an IANA time zone") from None
    return name


def _originate_url(asking: Asking, value: str) -> str | None:
    """PRODUCT.md: https (http, and private addresses, only where the deployment allows them:
    B24APP_ORIGINATE_ALLOW_PRIVATE or development); "" or "none" clears it. The address is
    checked again at every send (originate/webhooks.py: DNS may answer otherwise later)."""
    url = value.strip()
    if url.lower() in ("", "none"):
        return None
    try:
        parts = parse_url(url, query=True)
    except InvalidURL as error:
        raise SettingError("originate_url", str(error)) from None
    if asking.store.settings.originate_private_allowed:
        return url
    if parts.scheme != "https":
        raise SettingError("originate_url", "must use https (the webhook carries phone numbers)")
    try:
        public_address(parts.hostname or "", parts.port or 443)
    except UnsafeAddress as error:
        raise SettingError(
            "originate_url", f"{error}: b24app sends webhooks to public addresses only"
        ) from None
    return url


# name -> (validator(what it may ask, raw) -> value, apply(portal, value))
Validator = Callable[[Asking, str], Any]
SETTINGS: dict[str, tuple[Validator, Callable[[Portal, Any], None]]] = {
    "currency": (_currency, lambda p, v: setattr(p.settings, "currency", v)),
    "add_to_chat": (
        lambda _m, v: _flag("add_to_chat", v),
        lambda p, v: setattr(p.settings, "add_to_chat", v),
    ),
    "fallback_user_id": (
        lambda _m, v: _user_id(v),
        lambda p, v: setattr(p.settings, "fallback_user_id", v),
    ),
    "timezone": (lambda _m, v: _timezone(v), lambda p, v: setattr(p.settings, "timezone", v)),
    "show_card": (
        lambda _m, v: _flag("show_card", v),
        lambda p, v: setattr(p.settings, "show_card", v),
    ),
    "originate_url": (_originate_url, lambda p, v: setattr(p.settings, "originate_url", v)),
    "enterprise_limits": (
        lambda _m, v: _flag("enterprise_limits", v),
        lambda p, v: setattr(p, "enterprise_limits", v),
    ),
}


def validate(
    store: InstallationStore, member_id: str, changes: Mapping[str, str]
) -> dict[str, Any]:
    """Check every change (a currency against the portal's own, asked afresh); raise the first
    SettingError, else return the parsed values by name."""
    asking = Asking(store, member_id)
    parsed: dict[str, Any] = {}
    for name, raw in changes.items():
        if name not in SETTINGS:
            raise SettingError(name, f"unknown setting; known: {', '.join(SETTINGS)}")
        validator, _ = SETTINGS[name]
        parsed[name] = validator(asking, raw)
    return parsed


def apply(portal: Portal, parsed: Mapping[str, Any]) -> None:
    for name, value in parsed.items():
        SETTINGS[name][1](portal, value)


def describe(portal: Portal) -> dict[str, Any]:
    """The portal's settings as `portals show` prints them."""
    s = portal.settings
    return {
        "member_id": portal.member_id,
        "domain": portal.domain,
        "status": portal.status,
        "status_detail": portal.status_detail,
        "client_endpoint": portal.client_endpoint,
        "client_id": portal.client_id,
        "currency": s.currency,
        "add_to_chat": int(s.add_to_chat),
        "fallback_user_id": s.fallback_user_id,
        "timezone": s.timezone,
        "show_card": int(s.show_card is not False),
        "originate_url": s.originate_url,
        "enterprise_limits": int(portal.enterprise_limits),
    }
