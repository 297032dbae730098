"""The development portal's world: apps, portals, users, tokens, calls, faults and a journal.

Everything lives in memory behind one lock, so a test or benchmark starts from a known state and
can inspect exactly what "Bitrix24" saw. Times come from `now()`, which tests may move forward
(`advance`) to expire tokens without waiting.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from devportal.crm_data import CrmEntity, default_crm

ACCESS_TOKEN_LIFETIME = 3600  # settings/oauth/index.md: access_token lives 1 hour
REFRESH_TOKEN_LIFETIME = 180 * 24 * 3600  # settings/oauth/auto-renewal.md: 180 days
AUTH_CODE_LIFETIME = 30  # settings/oauth/index.md: the code lives 30 seconds
STANDARD_LIMITS = (2.0, 50)  # limits.md: drain 2 req/s, burst 50
ENTERPRISE_LIMITS = (5.0, 250)  # limits.md: Enterprise drains 5 req/s, burst 250
OPERATING_LIMIT = 480.0  # limits.md: the docs' example of the per-method time budget (s)
DEFAULT_SCOPE = "crm,telephony,user_brief,placement"


def new_token() -> str:
    return secrets.token_hex(16)


@dataclass
class DevApp:
    """An application registered with the OAuth server (marketplace or a portal's local app)."""

    client_id: str
    client_secret: str
    scope: str = DEFAULT_SCOPE
    installer_url: str | None = None  # where the shell opens the installer page
    app_url: str | None = None  # the app page (placement DEFAULT)
    handler_url: str | None = None  # fallback for lifecycle events when nothing is bound
    redirect_uri: str | None = None  # the authorization-code flow's redirect (app settings)


@dataclass
class DevUser:
    id: int
    name: str
    last_name: str
    admin: bool = False
    active: bool = True
    extension: str = ""  # UF_PHONE_INNER
    email: str = ""
    time_zone: str = ""

    def as_user_get(self) -> dict[str, Any]:
        """The user as user.get returns it (api-reference/user/user-get.md): ids are strings."""
        return {
            "ID": str(self.id),
            "ACTIVE": self.active,
            "NAME": self.name,
            "LAST_NAME": self.last_name,
            "SECOND_NAME": "",
            "EMAIL": self.email,
            "WORK_POSITION": "",
            "UF_DEPARTMENT": [1],
            "UF_PHONE_INNER": self.extension,
            "USER_TYPE": "employee",
        }


@dataclass
class Installation:
    """An app installed on a portal: its application_token and event handlers."""

    client_id: str
    application_token: str = field(default_factory=new_token)
    installed: bool = False  # True once BX24.installFinish() ran
    status: str = "F"  # app.info STATUS: L local, F free, D demo, T trial, P paid
    version: int = 1
    payment_expired: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)  # event.bind records


@dataclass
class AccessToken:
    token: str
    member_id: str
    client_id: str
    user_id: int
    scope: str
    expires_at: float


@dataclass
class RefreshToken:
    token: str
    member_id: str
    client_id: str
    user_id: int
    scope: str
    expires_at: float
    used: bool = False
    app_removed: bool = False  # its app was uninstalled: the OAuth server says invalid_client


@dataclass
class AuthCode:
    code: str
    member_id: str
    client_id: str
    user_id: int
    expires_at: float
    used: bool = False


@dataclass
class Bucket:
    """limits.md's leaky bucket: +1 per request, drains `rate` per second, 503 above `burst`."""

    rate: float
    burst: int
    level: float = 0.0
    updated: float = 0.0

    def take(self, now: float) -> bool:
        self.level = max(0.0, self.level - (now - self.updated) * self.rate)
        self.updated = now
        if self.level + 1 > self.burst:
            return False
        self.level += 1
        return True


@dataclass
class Faults:
    """Injected failures for one portal (see faults.py)."""

    outage: str | None = None  # "503", "reset" (connection dropped) or "timeout"
    latency: float = 0.0  # seconds added to every REST request
    rest_error: str | None = None  # answer every REST call with this system error code
    timeout_sleep: float = 30.0  # how long a "timeout" outage holds the request
    spoil: str | None = None  # "html200", "truncated", "html500" or "reset", after running
    spoil_times: int | None = None  # how many more requests to spoil (None: until cleared)


@dataclass
class StandInPbx:
    """The development stand-in for a portal's PBX (pbx_receiver.py; not part of Bitrix24).

    `secret` verifies the originate webhooks b24app sends (Standard Webhooks); with `b24app_url`
    and `pbx_key` it reports the calls it places back to b24app's PBX API. Faults: `down`
    (503 to everything), `fail_next` (500 to the next N verified webhooks), `delay` (seconds
    before any answer). `received` and `reports` are what it got and what it reported.
    """

    secret: str | None = None
    b24app_url: str | None = None
    pbx_key: str | None = None
    extension: str = "101"  # the operator who takes callbacks (Boris, in default_users)
    talk_seconds: float = 2.0  # how long each call it places lasts before its finish
    fail_next: int = 0
    down: bool = False
    delay: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)  # webhook-id of every message acted on


@dataclass
class DevPortal:
    code: str  # path segment: the portal lives at {base}/p/{code}/
    member_id: str
    domain: str
    users: dict[int, DevUser]
    currencies: list[dict[str, Any]]
    bucket: Bucket
    installations: dict[str, Installation] = field(default_factory=dict)  # by client_id
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)  # registered, by CALL_ID
    statistics: list[dict[str, Any]] = field(default_factory=list)  # finished calls
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)  # external lines by NUMBER
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # attachRecord by CALL_ID
    contacts: list[dict[str, Any]] = field(default_factory=lambda: default_contacts())  # CRM
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # event_queue.py's events
    pbx: StandInPbx = field(default_factory=StandInPbx)
    crm: list[CrmEntity] = field(default_factory=default_crm)  # searchCrmEntities searches it
    faults: Faults = field(default_factory=Faults)
    operating: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    operating_limit: float = OPERATING_LIMIT
    old_codes: list[str] = field(default_factory=list)  # earlier addresses, answered with 302
    deleted: bool = False


class DevState:
    """All emulated portals and the OAuth server behind them. Thread-safe through `lock`."""

    def __init__(self, *, access_lifetime: int = ACCESS_TOKEN_LIFETIME) -> None:
        self.lock = threading.RLock()
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = REFRESH_TOKEN_LIFETIME
        self.clock_offset = 0.0
        self.apps: dict[str, DevApp] = {}
        self.portals: dict[str, DevPortal] = {}  # by code
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.auth_codes: dict[str, AuthCode] = {}
        self.journal: list[dict[str, Any]] = []
        self.base_url = "http://127.0.0.1"  # set by the server once it knows its port
        self._next_call = 1

    # --- time --------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset += seconds

    # --- addresses ---------------------------------------------------------------------------
    def portal_url(self, portal: DevPortal) -> str:
        return f"{self.base_url}/p/{portal.code}/"

    def client_endpoint(self, portal: DevPortal) -> str:
        return f"{self.portal_url(portal)}rest/"

    @property
    def server_endpoint(self) -> str:
        return f"{self.base_url}/rest/"

    # --- set-up ------------------------------------------------------------------------------
    def add_app(self, client_id: str, client_secret: str, **options: Any) -> DevApp:
        with self.lock:
            app = DevApp(client_id, client_secret, **options)
            self.apps[client_id] = app
            return app

    def add_portal(
        self,
        code: str,
        *,
        users: list[DevUser] | None = None,
        enterprise: bool = False,
        currencies: list[str] | None = None,
        member_id: str | None = None,
    ) -> DevPortal:
        with self.lock:
            if code in self.portals:
                raise ValueError(f"portal {code!r} exists")
            rate, burst = ENTERPRISE_LIMITS if enterprise else STANDARD_LIMITS
            portal = DevPortal(
                code=code,
                member_id=member_id or secrets.token_hex(16),
                domain=f"{code}.bitrix24.test",
                users={u.id: u for u in (users or default_users())},
                currencies=make_currencies(currencies or ["RUB", "USD", "EUR"]),
                bucket=Bucket(rate, burst, updated=self.now()),
            )
            self.portals[code] = portal
            return portal

    def portal_by_member(self, member_id: str) -> DevPortal | None:
        return next((p for p in self.portals.values() if p.member_id == member_id), None)

    def find_portal(self, code: str) -> DevPortal | None:
        return self.portals.get(code)

    def next_call_number(self) -> int:
        with self.lock:
            self._next_call += 1
            return self._next_call

    # --- tokens (the OAuth server's side) ----------------------------------------------------
    def issue_tokens(
        self, portal: DevPortal, client_id: str, user_id: int
    ) -> tuple[AccessToken, RefreshToken]:
        with self.lock:
            app = self.apps[client_id]
            now = self.now()
            access = AccessToken(
                new_token(),
                portal.member_id,
                client_id,
                user_id,
                app.scope,
                now + self.access_lifetime,
            )
            refresh = RefreshToken(
                new_token(),
                portal.member_id,
                client_id,
                user_id,
                app.scope,
                now + self.refresh_lifetime,
            )
            self.access_tokens[access.token] = access
            self.refresh_tokens[refresh.token] = refresh
            return access, refresh

    def issue_code(self, portal: DevPortal, client_id: str, user_id: int) -> AuthCode:
        with self.lock:
            code = AuthCode(
                new_token(), portal.member_id, client_id, user_id, self.now() + AUTH_CODE_LIFETIME
            )
            self.auth_codes[code.code] = code
            return code

    def revoke_tokens(self, member_id: str, client_id: str) -> None:
        """What uninstall does: every token of that app on that portal stops working.

        Access tokens and codes are forgotten (the portal answers NO_AUTH_FOUND). Refresh tokens
        are kept, marked `app_removed`, because the OAuth server still knows whose they were and
        refuses them as settings/oauth/error-codes.md says for an app that is not installed:
        `invalid_client` — unlike an expired or used one (`invalid_grant`). That difference is
        the only proof of an uninstall an app can get from Bitrix24 (install/events.py).
        """
        with self.lock:
            for store in (self.access_tokens, self.auth_codes):
                for key in [
                    k
                    for k, t in store.items()
                    if t.member_id == member_id and t.client_id == client_id
                ]:
                    del store[key]
            for refresh in self.refresh_tokens.values():
                if refresh.member_id == member_id and refresh.client_id == client_id:
                    refresh.app_removed = True

    def expire_access_tokens(self, member_id: str | None = None) -> int:
        """Fault injection: every access token (of one portal, or all) expires now."""
        with self.lock:
            count = 0
            for token in self.access_tokens.values():
                if member_id is None or token.member_id == member_id:
                    token.expires_at = self.now() - 1
                    count += 1
            return count

    # --- journal -----------------------------------------------------------------------------
    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            entry["seq"] = len(self.journal) + 1
            self.journal.append(entry)

    def entries(self, **match: Any) -> list[dict[str, Any]]:
        """Journal entries whose fields equal every given value (method names lower-cased)."""
        with self.lock:
            wanted = {k: (v.lower() if k == "method" else v) for k, v in match.items()}
            return [e for e in self.journal if all(e.get(k) == v for k, v in wanted.items())]


def default_users() -> list[DevUser]:
    """A small company: an admin, employees with extensions, one dismissed employee."""
    return [
        DevUser(1, "Anna", "Admin", admin=True, extension="100", email="anna@example.test"),
        DevUser(2, "Boris", "Sales", extension="101", email="boris@example.test"),
        DevUser(3, "Clara", "Support", extension="102", email="clara@example.test"),
        DevUser(4, "Dmitri", "Support", extension="", email="dmitri@example.test"),
        DevUser(5, "Eva", "Former", active=False, extension="105", email="eva@example.test"),
    ]


def default_contacts() -> list[dict[str, Any]]:
    """A few CRM contacts with phone numbers as people type them, for click-to-call."""
    return [
        {"ID": 1, "NAME": "Ivan", "LAST_NAME": "Petrov", "PHONE": "+7 495 123-45-67"},
        {"ID": 2, "NAME": "Maria", "LAST_NAME": "Ivanova", "PHONE": "8 (916) 555-01-02"},
        {"ID": 3, "NAME": "John", "LAST_NAME": "Smith", "PHONE": "+1 555 123 4567"},
    ]


_CURRENCY_NAMES = {
    "RUB": "Russian Ruble",
    "USD": "US Dollar",
    "EUR": "Euro",
    "KZT": "Tenge",
    "UAH": "Hryvnia",
    "BYN": "Belarusian Ruble",
}


def make_currencies(codes: list[str]) -> list[dict[str, Any]]:
    """crm.currency.list elements (api-reference/crm/currency/crm-currency-list.md)."""
    return [
        {
            "CURRENCY": code,
            "AMOUNT_CNT": 1,
            "AMOUNT": "1.0000",
            "SORT": (index + 1) * 100,
            "BASE": "Y" if index == 0 else "N",
            "FULL_NAME": _CURRENCY_NAMES.get(code, code),
            "LID": "en",
            "FORMAT_STRING": f"# {code}",
            "DEC_POINT": ".",
            "THOUSANDS_SEP": " ",
            "DECIMALS": 2,
            "DATE_UPDATE": "2026-01-01T00:00:00+00:00",
        }
        for index, code in enumerate(codes)
    ]


def install(
    state: DevState, portal: DevPortal, client_id: str, *, user_id: int = 1
) -> tuple[Installation, AccessToken, RefreshToken]:
    """An admin installs the app on the portal: a new application_token and a token pair.

    A reinstall keeps nothing of the previous installation (app-uninstallation.md: handlers are
    removed with the app), so it gets a fresh application_token.
    """
    with state.lock:
        app = state.apps[client_id]
        status = "L" if client_id.startswith("local.") else "F"  # app.info STATUS
        installation = Installation(client_id, status=status)
        portal.installations[client_id] = installation
        access, refresh = state.issue_tokens(portal, app.client_id, user_id)
        return installation, access, refresh


def uninstall(state: DevState, portal: DevPortal, client_id: str) -> Installation | None:
    """Remove the app: its tokens are revoked and its event handlers dropped."""
    with state.lock:
        installation = portal.installations.pop(client_id, None)
        state.revoke_tokens(portal.member_id, client_id)
        return installation
