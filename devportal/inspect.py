"""`/_dev/`: a JSON API to look into and steer the development portal.

A development tool for tests, benchmarks, `make run` and the browser shell. It is deliberately
unauthenticated and bound to no secret: the development portal must never face a network it does
not own. It never shows token values (access, refresh, application tokens, client secrets);
journal entries are redacted before they leave.

Every answer is JSON. Errors are `{"error": code, "error_description": text}` with 400 (bad
input), 404 (unknown portal or app), 409 (portal exists; `not_installed`: the app is not (fully)
installed there) or 502 (the app could not be reached).

    GET  /_dev/portals                      {"portals": [PORTAL]}
    POST /_dev/portals                      {code, enterprise?, users?: [USER], currencies?: [str]}
                                            -> 201 PORTAL_DETAIL
    GET  /_dev/portals/<code>               PORTAL_DETAIL
    GET  /_dev/portals/<code>/statistics    {"statistics": [finished calls, as
                                            voximplant.statistic.get would list them]}
    GET  /_dev/portals/<code>/calls         {"calls": [registered calls]}
    POST /_dev/portals/<code>/faults        FAULTS (all fields; `{}` clears) -> FAULTS
    POST /_dev/portals/<code>/expire-tokens {"expired": n}: every access token of the portal
    POST /_dev/portals/<code>/limits        {rate?, burst?, operating_limit?} -> LIMITS
    POST /_dev/portals/<code>/move          {code}: a new address, the old one answers 302
                                            -> PORTAL_DETAIL
    POST /_dev/portals/<code>/deleted       {deleted: bool} -> {deleted}: PORTAL_DELETED
    POST /_dev/portals/<code>/payment       {client_id, lapsed: bool} -> {client_id,
                                            payment_expired}: PAYMENT_REQUIRED
    POST /_dev/portals/<code>/install       {client_id, app_url?, user_id?, lang?, finish?}
                                            -> {"installer": {url, status}, "installed", "events"}
    POST /_dev/portals/<code>/finish-install {client_id, user_id?, lang?} -> {"events"}
    POST /_dev/portals/<code>/open-app      {client_id, app_url?, user_id?, lang?} -> {url, status}
    POST /_dev/portals/<code>/update        {client_id, user_id?, lang?} -> {"version", "events"}
    POST /_dev/portals/<code>/uninstall     {client_id, clean?: bool ("Clear application data":
                                            ONAPPUNINSTALL's data[CLEAN]), lang?} -> {"events"}
    POST /_dev/portals/<code>/click-to-call {user_id?, contact_id | phone, client_id?,
                                            call_list_id?, is_mobile?} -> 202 SENT: an employee
                                            clicks a number (call_events.py); 409 no_app,
                                            not_installed, not_bound; 404 no_user, no_contact;
                                            400 bad_phone
    POST /_dev/portals/<code>/callback      {phone, text?, voice?, user_id?, client_id?} -> 202
                                            SENT: a client orders a callback; refusals as above
    GET  /_dev/portals/<code>/events        {"events": [DELIVERY]}: every event the event queue
                                            sent (event_queue.py), oldest first, with the
                                            handler's answer; never resent
    GET  /_dev/portals/<code>/pbx           PBX: the portal's PBX stand-in (pbx_receiver.py)
    POST /_dev/portals/<code>/pbx           {secret?, b24app_url?, pbx_key?, extension?,
                                            talk_seconds?, fail_next?, down?, delay?, forget?}
                                            -> PBX: only the given fields change
    GET  /_dev/apps                         {"apps": [APP]}
    POST /_dev/apps                         {client_id, client_secret, scope?, installer_url?,
                                            app_url?, handler_url?, redirect_uri?} -> 201 APP
    GET  /_dev/journal?portal=&method=&since=  {"entries": [...]}: `since` is a `seq`; `method`
                                            is case-insensitive; `portal` is a code
    GET  /_dev/clock, POST /_dev/clock      {"advance": seconds} -> {"now", "offset"}
    POST /_dev/reset                        forget portals, tokens, journal and clock; keep apps

    PORTAL        {code, member_id, domain, url, client_endpoint, installs: [INSTALL]}
    PORTAL_DETAIL PORTAL + {users: [USER], currencies: [str], limits: LIMITS, faults: FAULTS,
                  old_codes, deleted}
    INSTALL       {client_id, installed, status, version, payment_expired, events: [bindings]}
    USER          {id, name, last_name, admin?, active?, extension?, email?, time_zone?}
    FAULTS        {outage: null|"503"|"reset"|"timeout", latency, rest_error, timeout_sleep,
                  spoil: null|"html200"|"truncated"|"html500"|"reset" (the method runs, then
                  its answer is spoiled), spoil_times: null (until cleared)|n >= 1}
    LIMITS        {rate, burst, level, operating_limit}
    APP           {client_id, scope, installer_url, app_url, handler_url, redirect_uri}
    events        [{url, status}]: status null when the handler could not be reached
    SENT          {event, CALL_ID (click-to-call; null for a callback), client_id, data,
                  deliveries: [DELIVERY], all "queued"}
    DELIVERY      event_queue.py: {id, event, client_id, handler, event_handler_id, data,
                  call_id, user_id, state, queued_at, sent_at, answered_at, status, error, answer}
    PBX           {originate_url, secret_set, pbx_key_set, b24app_url, extension, talk_seconds,
                  fail_next, down, delay, received: [...], reports: [...]} (pbx_receiver.py)

`app_url` is the app's base address (the driver POSTs to `{app_url}/install` and `/app`); when
absent it is taken from the app's registered installer URL.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, fields
from typing import Any

import requests
from flask import Blueprint, Response, current_app, request

from devportal import call_events, event_queue, pbx_receiver
from devportal import faults as fault_helpers
from devportal.errors import SYSTEM_ERRORS
from devportal.install_driver import Delivered, InstallDriver, NotInstalled
from devportal.state import DevApp, DevPortal, DevState, DevUser, Faults

bp = Blueprint("devportal_inspect", __name__, url_prefix="/_dev")

_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_SECRET_KEYS = {
    "auth",
    "access_token",
    "refresh_token",
    "auth_id",
    "refresh_id",
    "application_token",
    "client_secret",
}
_SECRET_IN_TEXT = re.compile(r"\b(auth|access_token|refresh_token|AUTH_ID|REFRESH_ID)=[^&\s]*")
_OUTAGES = (None, *fault_helpers.OUTAGES)
_SPOILS = (None, *fault_helpers.SPOILS)


class BadInput(Exception):
    def __init__(self, description: str, status: int = 400, code: str = "bad_request") -> None:
        super().__init__(description)
        self.description = description
        self.status = status
        self.code = code


@bp.errorhandler(BadInput)
def _bad_input(error: BadInput) -> Response:
    return _json({"error": error.code, "error_description": error.description}, error.status)


@bp.errorhandler(NotInstalled)
def _not_installed(error: NotInstalled) -> Response:
    return _json({"error": "not_installed", "error_description": str(error)}, 409)


def state() -> DevState:
    return current_app.extensions["devportal.state"]


# --- portals ---------------------------------------------------------------------------------
@bp.get("/portals")
def list_portals() -> Response:
    dev = state()
    with dev.lock:
        return _json({"portals": [portal_summary(dev, p) for p in dev.portals.values()]})


@bp.post("/portals")
def create_portal() -> Response:
    dev = state()
    body = _body()
    code = str(body.get("code", ""))
    if not _CODE.match(code):
        raise BadInput("code: lower-case letters, digits and dashes")
    users = [_user(u) for u in _list(body, "users")] or None
    currencies = [str(c) for c in _list(body, "currencies")] or None
    with dev.lock:
        if code in dev.portals:
            raise BadInput(f"portal {code!r} exists", 409, "exists")
        portal = dev.add_portal(
            code,
            users=users,
            enterprise=bool(body.get("enterprise", False)),
            currencies=currencies,
        )
        return _json(portal_detail(dev, portal), 201)


@bp.get("/portals/<code>")
def get_portal(code: str) -> Response:
    dev = state()
    with dev.lock:
        return _json(portal_detail(dev, _portal(dev, code)))


@bp.get("/portals/<code>/statistics")
def statistics(code: str) -> Response:
    dev = state()
    with dev.lock:
        return _json({"statistics": list(_portal(dev, code).statistics)})


@bp.get("/portals/<code>/calls")
def calls(code: str) -> Response:
    dev = state()
    with dev.lock:
        return _json({"calls": list(_portal(dev, code).calls.values())})


# --- faults and limits -----------------------------------------------------------------------
@bp.post("/portals/<code>/faults")
def set_faults(code: str) -> Response:
    """Replace the portal's faults with the posted ones (missing fields take their defaults)."""
    dev = state()
    faults = _faults(_body())
    with dev.lock:
        portal = _portal(dev, code)
        portal.faults = faults
        return _json(asdict(faults))


@bp.post("/portals/<code>/expire-tokens")
def expire_tokens(code: str) -> Response:
    dev = state()
    with dev.lock:
        portal = _portal(dev, code)
        return _json({"expired": dev.expire_access_tokens(portal.member_id)})


@bp.post("/portals/<code>/move")
def move_portal(code: str) -> Response:
    """The portal changes its address (change-domen.md); the old one answers 302."""
    dev = state()
    new_code = str(_body().get("code", ""))
    if not _CODE.match(new_code):
        raise BadInput("code: lower-case letters, digits and dashes")
    with dev.lock:
        portal = _portal(dev, code)
        try:
            fault_helpers.change_address(dev, portal, new_code)
        except ValueError as exc:
            raise BadInput(str(exc), 409, "exists") from exc
        return _json(portal_detail(dev, portal))


@bp.post("/portals/<code>/deleted")
def set_deleted(code: str) -> Response:
    """{"deleted": true|false}: PORTAL_DELETED on every REST call, or not."""
    dev = state()
    deleted = bool(_body().get("deleted", True))
    with dev.lock:
        portal = _portal(dev, code)
        fault_helpers.delete_portal(dev, portal, deleted=deleted)
        return _json({"deleted": portal.deleted})


@bp.post("/portals/<code>/payment")
def set_payment(code: str) -> Response:
    """{"client_id", "lapsed": true|false}: PAYMENT_REQUIRED from OAuth and REST, or not."""
    body = _body()
    dev, portal, client_id = _target(code, body)
    lapsed = bool(body.get("lapsed", True))
    with dev.lock:
        if client_id not in portal.installations:
            raise NotInstalled(f"{client_id} is not installed on portal {code}")
        fault_helpers.lapse_payment(dev, portal, client_id, lapsed=lapsed)
    return _json({"client_id": client_id, "payment_expired": lapsed})


@bp.post("/portals/<code>/limits")
def set_limits(code: str) -> Response:
    dev = state()
    body = _body()
    rate = _number(body, "rate", minimum=0.0)
    burst = _number(body, "burst", minimum=1.0)
    operating_limit = _number(body, "operating_limit", minimum=0.0)
    with dev.lock:
        portal = _portal(dev, code)
        if rate is not None:
            portal.bucket.rate = rate
        if burst is not None:
            portal.bucket.burst = int(burst)
        if operating_limit is not None:
            portal.operating_limit = operating_limit
        return _json(_limits(portal))


# --- installs --------------------------------------------------------------------------------
@bp.post("/portals/<code>/install")
def install_app(code: str) -> Response:
    """Open the installer; unless `finish` is false, then do what BX24.installFinish() does."""
    body = _body()
    dev, portal, client_id = _target(code, body)
    driver = InstallDriver(dev, _app_url(dev, client_id, body))
    try:
        page = driver.open_installer(portal, client_id, *_viewer(body))
    except requests.RequestException as exc:
        raise BadInput(
            f"the installer could not be reached: {exc}", 502, "app_unreachable"
        ) from exc
    events: list[Delivered] = []
    if body.get("finish", True) and page.ok:
        events = driver.finish_install(portal, client_id)
    return _json(
        {
            "installer": {"url": f"{driver.app_base_url}/install", "status": page.status_code},
            "installed": _installed(portal, client_id),
            "events": _deliveries(events),
        }
    )


@bp.post("/portals/<code>/finish-install")
def finish_install(code: str) -> Response:
    body = _body()
    dev, portal, client_id = _target(code, body)
    user_id, lang = _viewer(body)
    events = _driver(dev).finish_install(portal, client_id, user_id=user_id, lang=lang)
    return _json({"events": _deliveries(events)})


@bp.post("/portals/<code>/open-app")
def open_app(code: str) -> Response:
    body = _body()
    dev, portal, client_id = _target(code, body)
    driver = InstallDriver(dev, _app_url(dev, client_id, body))
    try:
        page = driver.open_app(portal, client_id, *_viewer(body))
    except requests.RequestException as exc:
        raise BadInput(f"the app could not be reached: {exc}", 502, "app_unreachable") from exc
    return _json({"url": page.url.split("?")[0], "status": page.status_code})


@bp.post("/portals/<code>/update")
def update_app(code: str) -> Response:
    body = _body()
    dev, portal, client_id = _target(code, body)
    user_id, lang = _viewer(body)
    events = _driver(dev).update(portal, client_id, user_id=user_id, lang=lang)
    version = portal.installations[client_id].version if client_id in portal.installations else None
    return _json({"version": version, "events": _deliveries(events)})


@bp.post("/portals/<code>/uninstall")
def uninstall_app(code: str) -> Response:
    body = _body()
    dev, portal, client_id = _target(code, body)
    clean = body.get("clean", False)
    if not isinstance(clean, bool):  # "0" would otherwise be true and erase the app's data
        raise BadInput("clean must be true or false (the 'Clear application data' option)")
    events = _driver(dev).uninstall(portal, client_id, clean, lang=str(body.get("lang", "en")))
    return _json({"events": _deliveries(events)})


# --- telephony: what people do, the events sent, the PBX stand-in ----------------------------
@bp.errorhandler(call_events.CallEventRefused)
def _refused(refused: call_events.CallEventRefused) -> Response:
    status = {"no_user": 404, "no_contact": 404, "bad_phone": 400}.get(refused.code, 409)
    return _json({"error": refused.code, "error_description": str(refused)}, status)


@bp.post("/portals/<code>/click-to-call")
def click_to_call(code: str) -> Response:
    """An employee clicks a phone number (call_events.click_to_call)."""
    body = _body()
    dev = state()
    portal = _portal(dev, code)
    contact_id = body.get("contact_id")
    sent = call_events.click_to_call(
        dev,
        portal,
        user_id=_whole(body, "user_id", 1),
        contact_id=None if contact_id is None else _whole(body, "contact_id", 0),
        phone=None if body.get("phone") is None else str(body["phone"]),
        client_id=_optional_app(dev, body),
        call_list_id=_whole(body, "call_list_id", 0),
        is_mobile=bool(body.get("is_mobile", False)),
    )
    return _json(_sent(sent), 202)


@bp.post("/portals/<code>/callback")
def order_callback(code: str) -> Response:
    """A client orders a callback in a CRM form (call_events.order_callback)."""
    body = _body()
    dev = state()
    portal = _portal(dev, code)
    sent = call_events.order_callback(
        dev,
        portal,
        phone=str(body.get("phone") or ""),
        text=str(body.get("text") or ""),
        voice=str(body.get("voice") or call_events.DEFAULT_VOICE),
        user_id=_whole(body, "user_id", 1),
        client_id=_optional_app(dev, body),
    )
    return _json(_sent(sent), 202)


@bp.get("/portals/<code>/events")
def sent_events(code: str) -> Response:
    dev = state()
    return _json({"events": event_queue.deliveries(dev, _portal(dev, code))})


@bp.get("/portals/<code>/pbx")
def get_pbx(code: str) -> Response:
    dev = state()
    return _json(pbx_receiver.describe(dev, _portal(dev, code)))


@bp.post("/portals/<code>/pbx")
def set_pbx(code: str) -> Response:
    dev = state()
    portal = _portal(dev, code)
    try:
        pbx_receiver.configure(dev, portal, _body())
    except ValueError as exc:
        raise BadInput(str(exc)) from exc
    return _json(pbx_receiver.describe(dev, portal))


def _sent(sent: call_events.Sent) -> dict[str, Any]:
    return {
        "event": sent.event,
        "CALL_ID": sent.call_id,
        "client_id": sent.client_id,
        "data": sent.data,
        "deliveries": sent.deliveries,
    }


def _whole(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise BadInput(f"{key}: a whole number")
    return int(value)


def _optional_app(dev: DevState, body: dict[str, Any]) -> str | None:
    client_id = body.get("client_id")
    if client_id is not None and client_id not in dev.apps:
        raise BadInput(f"no app {client_id!r}", 404, "not_found")
    return None if client_id is None else str(client_id)


# --- apps, journal, clock, reset -------------------------------------------------------------
@bp.get("/apps")
def list_apps() -> Response:
    dev = state()
    with dev.lock:
        return _json({"apps": [app_summary(a) for a in dev.apps.values()]})


@bp.post("/apps")
def register_app() -> Response:
    body = _body()
    known = {f.name for f in fields(DevApp)}
    unknown = set(body) - known
    if unknown:
        raise BadInput(f"unknown fields: {sorted(unknown)}")
    if not body.get("client_id") or not body.get("client_secret"):
        raise BadInput("client_id and client_secret are required")
    app = state().add_app(**{k: str(v) for k, v in body.items() if v is not None})
    return _json(app_summary(app), 201)


@bp.get("/journal")
def journal() -> Response:
    dev = state()
    since = _int_arg("since", 0)
    method = request.args.get("method", "").lower()
    code = request.args.get("portal")
    with dev.lock:
        portal = dev.find_portal(code) if code else None
        entries = [
            redact(e)
            for e in dev.journal
            if e.get("seq", 0) > since
            and (not method or str(e.get("method", "")).lower() == method)
            and (not code or _belongs(e, code, portal))
        ]
    return _json({"entries": entries})


@bp.get("/clock")
def get_clock() -> Response:
    return _clock(state())


@bp.post("/clock")
def move_clock() -> Response:
    dev = state()
    advance = _number(_body(), "advance", minimum=0.0)
    dev.advance(advance or 0.0)
    return _clock(dev)


@bp.post("/reset")
def reset() -> Response:
    """A fresh world for the next run; app registrations (the partner area) are kept."""
    dev = state()
    with dev.lock:
        dev.portals.clear()
        dev.access_tokens.clear()
        dev.refresh_tokens.clear()
        dev.auth_codes.clear()
        dev.journal.clear()
        dev.clock_offset = 0.0
    return _json({"ok": True})


# --- shapes ----------------------------------------------------------------------------------
def portal_summary(dev: DevState, portal: DevPortal) -> dict[str, Any]:
    return {
        "code": portal.code,
        "member_id": portal.member_id,
        "domain": portal.domain,
        "url": dev.portal_url(portal),
        "client_endpoint": dev.client_endpoint(portal),
        "installs": [
            {
                "client_id": i.client_id,
                "installed": i.installed,
                "status": i.status,
                "version": i.version,
                "payment_expired": i.payment_expired,
                "events": [redact(e) for e in i.events],
            }
            for i in portal.installations.values()
        ],
    }


def portal_detail(dev: DevState, portal: DevPortal) -> dict[str, Any]:
    return {
        **portal_summary(dev, portal),
        "users": [asdict(u) for u in portal.users.values()],
        "currencies": [c["CURRENCY"] for c in portal.currencies],
        "limits": _limits(portal),
        "faults": asdict(portal.faults),
        "old_codes": list(portal.old_codes),
        "deleted": portal.deleted,
    }


def app_summary(app: DevApp) -> dict[str, Any]:
    """An app without its client_secret."""
    return {k: v for k, v in asdict(app).items() if k != "client_secret"}


def redact(value: Any) -> Any:
    """A copy with token values hidden: by key anywhere in the structure, and inside query text."""
    if isinstance(value, dict):
        return {
            k: "[redacted]" if str(k).lower() in _SECRET_KEYS else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return _SECRET_IN_TEXT.sub(lambda m: f"{m.group(1)}=[redacted]", value)
    return value


def _limits(portal: DevPortal) -> dict[str, Any]:
    bucket = portal.bucket
    return {
        "rate": bucket.rate,
        "burst": bucket.burst,
        "level": bucket.level,
        "operating_limit": portal.operating_limit,
    }


def _clock(dev: DevState) -> Response:
    return _json({"now": dev.now(), "offset": dev.clock_offset})


def _installed(portal: DevPortal, client_id: str) -> bool:
    installation = portal.installations.get(client_id)
    return installation is not None and installation.installed


def _deliveries(events: list[Delivered]) -> list[dict[str, Any]]:
    return [{"url": url, "status": status} for url, status in events]


# --- input -----------------------------------------------------------------------------------
def _body() -> dict[str, Any]:
    body = request.get_json(silent=True) if request.data else {}
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object")
    return body


def _portal(dev: DevState, code: str) -> DevPortal:
    portal = dev.find_portal(code)
    if portal is None:
        raise BadInput(f"no portal {code!r}", 404, "not_found")
    return portal


def _target(code: str, body: dict[str, Any]) -> tuple[DevState, DevPortal, str]:
    """The state, the portal and a registered client_id; 404 when either is unknown."""
    dev = state()
    portal = _portal(dev, code)
    client_id = str(body.get("client_id", ""))
    if client_id not in dev.apps:
        raise BadInput(f"no app {client_id!r}", 404, "not_found")
    return dev, portal, client_id


def _driver(dev: DevState) -> InstallDriver:
    """A driver for event-only steps, which never open a page."""
    return InstallDriver(dev, "")


def _app_url(dev: DevState, client_id: str, body: dict[str, Any]) -> str:
    if body.get("app_url"):
        return str(body["app_url"])
    installer = dev.apps[client_id].installer_url or ""
    if not installer.endswith("/install"):
        raise BadInput("app_url is required: the app has no installer URL ending in /install")
    return installer.removesuffix("/install")


def _viewer(body: dict[str, Any]) -> tuple[int, str]:
    """The user who opens a page (default: the admin) and their interface language."""
    try:
        return int(body.get("user_id", 1)), str(body.get("lang", "en"))
    except (TypeError, ValueError) as exc:
        raise BadInput("user_id must be an integer") from exc


def _list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key) or []
    if not isinstance(value, list):
        raise BadInput(f"{key}: a list")
    return value


def _user(raw: Any) -> DevUser:
    if not isinstance(raw, dict):
        raise BadInput("users: a list of objects")
    try:
        return DevUser(**raw)
    except TypeError as exc:
        raise BadInput(f"users: {exc}") from exc


def _faults(body: dict[str, Any]) -> Faults:
    unknown = set(body) - {f.name for f in fields(Faults)}
    if unknown:
        raise BadInput(f"unknown fault fields: {sorted(unknown)}")
    faults = Faults()
    outage = body.get("outage")
    if outage not in _OUTAGES:
        raise BadInput(f"outage: one of {_OUTAGES}")
    faults.outage = outage
    rest_error = body.get("rest_error")
    if rest_error is not None and rest_error not in SYSTEM_ERRORS:
        raise BadInput(f"rest_error: one of {sorted(SYSTEM_ERRORS)}")
    faults.rest_error = rest_error
    faults.latency = _number(body, "latency", minimum=0.0) or 0.0
    timeout_sleep = _number(body, "timeout_sleep", minimum=0.0)
    if timeout_sleep is not None:
        faults.timeout_sleep = timeout_sleep
    _spoil(faults, body)
    return faults


def _spoil(faults: Faults, body: dict[str, Any]) -> None:
    spoil, times = body.get("spoil"), body.get("spoil_times")
    if spoil not in _SPOILS:
        raise BadInput(f"spoil: one of {_SPOILS}")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise BadInput("spoil_times: null or a whole number >= 1")
    faults.spoil, faults.spoil_times = spoil, (times if spoil else None)


def _number(body: dict[str, Any], key: str, *, minimum: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise BadInput(f"{key}: a number >= {minimum}")
    return float(value)


def _int_arg(name: str, default: int) -> int:
    try:
        return int(request.args.get(name, default))
    except ValueError as exc:
        raise BadInput(f"{name} must be an integer") from exc


def _belongs(entry: dict[str, Any], code: str, portal: DevPortal | None) -> bool:
    """REST entries name the portal; OAuth entries only its member_id."""
    if entry.get("portal") == code:
        return True
    return portal is not None and entry.get("member_id") == portal.member_id


def _json(body: Any, status: int = 200) -> Response:
    text = json.dumps(body, ensure_ascii=False, default=str)
    return Response(text, status=status, mimetype="application/json")
