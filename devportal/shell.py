"""The development portal's shell: each emulated portal as a small Bitrix24 workspace in a browser.

A person (or a browser test) installs the app there and opens it, and the app meets what it meets
in Bitrix24: its installer and its page are POSTed into an iframe (settings/oauth/simple-way.md,
built by install_driver.frame_post), the iframe is on the app's own origin, and the page talks to
the portal only through BX24.js, here the stand-in `static/bx24.js`, by `postMessage`.

Pages
    GET  /bx24.js                                   the BX24.js stand-in
    GET  /p/<code>/                                 the workspace: left menu, "Applications"
    GET  /p/<code>/marketplace/app/<client_id>/     the same, with that app opened in the frame
         query: as_user=N (the signed-in user; default 1, the admin), lang=en|ru (LANG)
    GET  /p/<code>/telephony/                       the portal's external calls as Bitrix24 saw
         them, each a timeline (below); query: lang=en|ru, limit=N (default 100), refresh=S
         (seconds between reloads, default 5, 0 for none)

JSON for the shell page's own script (same origin; like all of the devportal, unauthenticated)
    POST /p/<code>/shell/frames          {client_id, action: "install"|"open", user_id, lang}
                                         -> {"frame": FRAME}. "install" is a first install
                                         (admins only: 403 admin_only); "open" gives the app
                                         page, or the installer again to an admin until
                                         installFinish(), or 409 not_installed
    POST /p/<code>/shell/install-finish  {client_id, user_id, lang} -> {"events", "frame"}:
                                         what BX24.installFinish() causes (ONAPPINSTALL, as
                                         InstallDriver.finish_install sends it), then the app page
    POST /p/<code>/shell/refresh         {client_id, refresh_token} -> {"auth": AUTH}: the
                                         portal renews a frame's token pair (BX24.refreshAuth)

    FRAME  {page: "install"|"app", client_id, url, query, form, origin, name, sid, user_id,
            is_admin, lang}: POST `url`?`query` with `form` into the iframe named `name`
    Errors {error, error_description} with 400, 403, 404 or 409.

Message protocol (window.postMessage; the same text is at the top of static/bx24.js)
    The shell names the iframe "DOMAIN|PROTOCOL|APP_SID", as Bitrix24 does, so the frame keeps
    its APP_SID across its own navigations. The real library derives the parent's origin from
    DOMAIN and PROTOCOL; a development portal lives under /p/<code>/ on the devportal's own
    address, so the stand-in takes the parent's origin from the address it was loaded from.

    child -> parent, targetOrigin = the devportal's origin:
        {bx24: 1, sid: APP_SID, id: n, command: NAME, params: {...}}
    parent -> child, targetOrigin = the app's origin (that of the frame's URL):
        {bx24: 1, sid: APP_SID, id: n, result: ...}
     or {bx24: 1, sid: APP_SID, id: n, error: {error, error_description}}

    The parent acts on a message only when event.origin is the app's origin, event.source is
    the app's iframe and sid is that frame's APP_SID; it ignores anything else and lists it in
    `window.bx24Shell.ignored` ({origin, reason}) for tests. The child accepts answers only when
    event.origin is the devportal's origin, event.source is window.parent and sid is its own.

    command        params              result
    init           {}                  {auth: AUTH, lang, isAdmin, placement, placementOptions}
    installFinish  {}                  true (the shell then opens the app page), false when the
                                       frame is not the installer
    resizeWindow   {width, height}     {width, height}: the iframe's size in pixels afterwards;
                                       width "100%" fills the work area
    setTitle       {title}             true
    refreshAuth    {}                  {auth: AUTH}
    callMethod     {method, params}    {status, answer, auth?}: the parent POSTs the parameters
                                       as JSON to /p/<code>/rest/<method>.json with the frame's
                                       token; answer is the REST JSON; auth is present when the
                                       token was refreshed on the way (expired_token, or past
                                       its lifetime)
    AUTH = {access_token, refresh_token, expires_in (seconds left), domain, member_id}

bx24.js finds its parent at the address it was loaded from (B24APP_BX24_SCRIPT_URL), so open the
shell at that same address (http://127.0.0.1:8100/p/alpha/ under `make run`, not localhost:8100):
a frame's messages to any other origin are never delivered, as the browser guarantees.

The portal's external calls (GET /p/<code>/shell/calls?limit=N -> {"calls": [CALL]}, newest
first), built from what the portal keeps (registered `calls`, finished `statistics`, attached
`records`) and the journal of REST requests (register, show, hide, finish, attachRecord, alone or
inside a batch), so a call finished long ago still shows how it got there:
    CALL   {CALL_ID (null when no register succeeded), EXTERNAL_CALL_ID, PHONE_NUMBER, TYPE,
            state: "registered"|"finished"|"not registered", events: [STEP] in time order}
    STEP   {at (the portal's clock, s), what, ...}:
           registered  user, line, crm ("LEAD 12" or null), show (the card shown to `user`)
           shown       users: the card opened for them (telephony.externalCall.show)
           hidden      users: the card closed for them (telephony.externalCall.hide)
           finished    user, status (CALL_FAILED_CODE), duration (s), cost, currency
           record      filename, size (bytes, null for a RECORD_URL), url
           refused     method, error: a request for this call the portal answered with an error
    Users are {id, name}.

Every frame the shell opens is journalled as {"frame": page, "url", "via": "shell", "user_id"};
the browser POSTs it, so the journal has no HTTP status for it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    send_from_directory,
)

from devportal.install_driver import (
    FramePost,
    InstallDriver,
    NotInstalled,
    frame_post,
    frame_tokens,
)
from devportal.state import (
    AccessToken,
    DevPortal,
    DevState,
    DevUser,
    Installation,
    RefreshToken,
    install,
)

bp = Blueprint("devportal_shell", __name__, template_folder="templates")

STATIC = Path(__file__).parent / "static"
_LANG = re.compile(r"^[a-z]{2}$")


class ShellError(Exception):
    """A refusal the shell page shows to the person, as Bitrix24 would show its own message."""

    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.status = status


@bp.errorhandler(ShellError)
def _refused(error: ShellError) -> Response:
    return _json({"error": error.code, "error_description": error.description}, error.status)


def state() -> DevState:
    return current_app.extensions["devportal.state"]


# --- pages -----------------------------------------------------------------------------------
@bp.get("/bx24.js")
def bx24_js() -> Response:
    response = send_from_directory(STATIC, "bx24.js", mimetype="text/javascript", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/p/<code>/")
def workspace(code: str) -> Response:
    return _page(code, open_app=None)


@bp.get("/p/<code>/marketplace/app/<client_id>/")
def app_page(code: str, client_id: str) -> Response:
    return _page(code, open_app=client_id)


def _page(code: str, open_app: str | None) -> Response:
    dev = state()
    portal = dev.find_portal(code)
    if portal is None:
        return _moved_or_missing(dev, code)
    lang = _lang(request.args.get("lang"))
    text = TEXT["ru" if lang == "ru" else "en"]
    with dev.lock:
        user = portal.users.get(_int(request.args.get("as_user"), 1))
        if user is None or not user.active:
            return Response(text["no_user"], 404, mimetype="text/plain")
        apps = [_app_card(portal, client_id) for client_id in dev.apps]
        users = [u for u in portal.users.values() if u.active]
    if open_app is not None and open_app not in dev.apps:
        return Response(text["no_app"], 404, mimetype="text/plain")
    config = {
        "base": f"/p/{portal.code}/",  # relative: the page works under any host name
        "code": portal.code,
        "user": {"id": user.id, "admin": user.admin},
        "lang": lang,
        "open": open_app,
        "text": {k: text[k] for k in SCRIPT_TEXT},
    }
    html = render_template(
        "shell.html",
        portal=portal,
        user=user,
        users=users,
        apps=apps,
        lang=lang,
        text=text,
        config=config,
        open_app=open_app,
        query={"as_user": user.id, "lang": lang},
    )
    return Response(html, mimetype="text/html")


def _app_card(portal: DevPortal, client_id: str) -> dict[str, Any]:
    """One app as the market lists it: installed, installing (no installFinish yet) or not."""
    installation = portal.installations.get(client_id)
    if installation is None:
        status = "available"
    else:
        status = "installed" if installation.installed else "installing"
    return {"client_id": client_id, "status": status}


def _moved_or_missing(dev: DevState, code: str) -> Response:
    """A portal that changed its address is found at the new one, as its REST is."""
    for portal in dev.portals.values():
        if code in portal.old_codes:
            target = request.full_path.replace(f"/p/{code}/", f"/p/{portal.code}/", 1)
            return redirect(target.rstrip("?"), code=302)  # type: ignore[return-value]
    return Response(f"No development portal {code!r}.", 404, mimetype="text/plain")


# --- frames ----------------------------------------------------------------------------------
@bp.post("/p/<code>/shell/frames")
def frames(code: str) -> Response:
    """Open the installer (a first install) or the app page for the signed-in user."""
    body = _body()
    dev, portal, client_id = _target(code, body)
    user, lang = _viewer(portal, body)
    action = body.get("action")
    if action == "install":
        if not user.admin:
            raise ShellError("admin_only", TEXT[_ui(lang)]["admin_only"], 403)
        installation, access, refresh = install(dev, portal, client_id, user_id=user.id)
        page = "install"
    elif action == "open":
        try:
            page, installation, access, refresh = frame_tokens(dev, portal, client_id, user.id)
        except NotInstalled as exc:
            raise ShellError("not_installed", TEXT[_ui(lang)]["not_installed"], 409) from exc
    else:
        raise ShellError("bad_request", 'action: "install" or "open"')
    frame = _frame(dev, portal, page, installation, access, refresh, user, lang)
    return _json({"frame": frame})


@bp.post("/p/<code>/shell/install-finish")
def install_finish(code: str) -> Response:
    """BX24.installFinish() from the installer frame: complete the install, open the app page."""
    body = _body()
    dev, portal, client_id = _target(code, body)
    user, lang = _viewer(portal, body)
    if not user.admin:
        raise ShellError("admin_only", TEXT[_ui(lang)]["admin_only"], 403)
    if client_id not in portal.installations:
        raise ShellError("not_installed", TEXT[_ui(lang)]["not_installed"], 409)
    events = InstallDriver(dev, "").finish_install(portal, client_id, user_id=user.id, lang=lang)
    page, installation, access, refresh = frame_tokens(dev, portal, client_id, user.id)
    frame = _frame(dev, portal, page, installation, access, refresh, user, lang)
    return _json({"events": [{"url": u, "status": s} for u, s in events], "frame": frame})


@bp.post("/p/<code>/shell/refresh")
def refresh_auth(code: str) -> Response:
    """The portal renews a frame's tokens (BX24.refreshAuth); the old refresh token is spent."""
    body = _body()
    dev, portal, client_id = _target(code, body)
    with dev.lock:
        old = dev.refresh_tokens.get(str(body.get("refresh_token", "")))
        if (
            old is None
            or old.used
            or old.expires_at <= dev.now()
            or old.member_id != portal.member_id
            or old.client_id != client_id
            or client_id not in portal.installations
        ):
            raise ShellError("invalid_grant", "The frame's refresh token is invalid", 400)
        old.used = True
        access, refresh = dev.issue_tokens(portal, client_id, old.user_id)
    return _json({"auth": _auth(dev, portal, access, refresh)})


def _frame(
    dev: DevState,
    portal: DevPortal,
    page: str,
    installation: Installation,
    access: AccessToken,
    refresh: RefreshToken,
    user: DevUser,
    lang: str,
) -> dict[str, Any]:
    """The frame's POST (the driver's own fields) and what the shell needs to answer BX24.js."""
    app = dev.apps[installation.client_id]
    url = app.installer_url if page == "install" else app.app_url
    if not url:
        raise ShellError("no_url", f"The app has no {page} URL registered (POST /_dev/apps)", 409)
    post: FramePost = frame_post(dev, portal, installation, access, refresh, url=url, lang=lang)
    sid = post.query["APP_SID"]
    parts = urlsplit(url)
    dev.record(
        {
            "ts": dev.now(),
            "portal": portal.code,
            "member_id": portal.member_id,
            "client_id": installation.client_id,
            "frame": page,
            "url": url,
            "via": "shell",
            "user_id": user.id,
        }
    )
    return {
        "page": page,
        "client_id": installation.client_id,
        "url": post.url,
        "query": post.query,
        "form": post.form,
        "origin": f"{parts.scheme}://{parts.netloc}",
        "name": f"{post.query['DOMAIN']}|{post.query['PROTOCOL']}|{sid}",
        "sid": sid,
        "user_id": user.id,
        "is_admin": user.admin,
        "lang": lang,
    }


def _auth(
    dev: DevState, portal: DevPortal, access: AccessToken, refresh: RefreshToken
) -> dict[str, Any]:
    return {
        "access_token": access.token,
        "refresh_token": refresh.token,
        "expires_in": max(0, int(access.expires_at - dev.now())),
        "domain": portal.domain,
        "member_id": portal.member_id,
    }


# --- telephony: each call's timeline ------------------------------------------------------------
CALL_METHODS = {
    "telephony.externalcall.register": "registered",
    "telephony.externalcall.show": "shown",
    "telephony.externalcall.hide": "hidden",
    "telephony.externalcall.finish": "finished",
    "telephony.externalcall.attachrecord": "record",
}
DEFAULT_CALLS_SHOWN = 100


@bp.get("/p/<code>/shell/calls")
def calls_json(code: str) -> Response:
    """The portal's external calls as timelines, newest first (module docstring: CALL)."""
    dev, portal = _portal_or_404(code)
    limit = max(1, _int(request.args.get("limit"), DEFAULT_CALLS_SHOWN))
    return _json({"calls": call_timelines(dev, portal)[:limit]})


@bp.get("/p/<code>/telephony/")
def telephony(code: str) -> Response:
    """The calls page: each call's timeline as Bitrix24 saw it, reloaded every few seconds."""
    dev = state()
    portal = dev.find_portal(code)
    if portal is None:
        return _moved_or_missing(dev, code)
    lang = _ui(_lang(request.args.get("lang")))
    limit = max(1, _int(request.args.get("limit"), DEFAULT_CALLS_SHOWN))
    html = render_template(
        "telephony.html",
        portal=portal,
        calls=call_timelines(dev, portal)[:limit],
        text=CALL_TEXT[lang],
        lang=lang,
        refresh=max(0, _int(request.args.get("refresh"), 5)),
        clock=_clock,
    )
    return Response(html, mimetype="text/html")


def call_timelines(dev: DevState, portal: DevPortal) -> list[dict[str, Any]]:
    """Every external call of the portal with its steps (module docstring: CALL, STEP)."""
    with dev.lock:
        entries = [
            e
            for e in dev.journal
            if e.get("member_id") == portal.member_id and e.get("method") in CALL_METHODS
        ]
        calls: dict[str, dict[str, Any]] = {}
        by_external: dict[str, str] = {}
        for record in portal.calls.values():
            _call_entry(calls, by_external, record["CALL_ID"], record, "registered")
        for stat in portal.statistics:
            _call_entry(calls, by_external, stat["CALL_ID"], stat, "finished")
            calls[stat["CALL_ID"]]["events"].append(_finished(portal, stat))
        for entry in entries:
            _journal_step(portal, calls, by_external, entry)
        for call_id, record in portal.records.items():
            if call_id in calls:
                calls[call_id]["events"].append(_record_step(record))
    for call in calls.values():
        call["events"].sort(key=lambda step: step["at"])
    return sorted(calls.values(), key=_first_at, reverse=True)


def _first_at(call: dict[str, Any]) -> float:
    return float(call["events"][0]["at"]) if call["events"] else 0.0


def _call_entry(
    calls: dict[str, dict[str, Any]],
    by_external: dict[str, str],
    call_id: str,
    record: dict[str, Any],
    state_: str,
) -> None:
    external = record.get("EXTERNAL_CALL_ID")
    call = calls.setdefault(
        call_id,
        {
            "CALL_ID": call_id,
            "EXTERNAL_CALL_ID": external,
            "PHONE_NUMBER": record.get("PHONE_NUMBER"),
            "TYPE": record.get("TYPE", record.get("INCOMING")),
            "state": state_,
            "events": [],
        },
    )
    call["state"] = state_
    if external:
        by_external[str(external)] = call_id


def _journal_step(
    portal: DevPortal,
    calls: dict[str, dict[str, Any]],
    by_external: dict[str, str],
    entry: dict[str, Any],
) -> None:
    """Add what one journalled request did to its call (register, show, hide, refusals)."""
    what = CALL_METHODS[entry["method"]]
    params = entry.get("params") or {}
    ok = entry.get("status") == 200
    if what == "registered":
        external = str(params.get("EXTERNAL_CALL_ID") or "")
        call_id = by_external.get(external)
        if call_id is None:  # no register of it succeeded (or the portal forgot it)
            call_id = f"external:{external or entry.get('seq')}"
            calls.setdefault(
                call_id,
                {
                    "CALL_ID": None,
                    "EXTERNAL_CALL_ID": external or None,
                    "PHONE_NUMBER": params.get("PHONE_NUMBER"),
                    "TYPE": params.get("TYPE"),
                    "state": "not registered",
                    "events": [],
                },
            )
    else:
        call_id = str(params.get("CALL_ID") or "")
    call = calls.get(call_id)
    if call is None:
        return
    step: dict[str, Any] = {"at": entry.get("ts", 0.0), "what": what}
    if not ok:
        step.update(what="refused", method=entry["method"], error=entry.get("error"))
    elif what == "registered":
        step.update(_registered(portal, params))
    elif what in ("shown", "hidden"):
        step["users"] = [_user(portal, uid) for uid in _user_ids(params.get("USER_ID"))]
    else:
        return  # finish and attachRecord come from the statistics and records
    call["events"].append(step)


def _registered(portal: DevPortal, params: dict[str, Any]) -> dict[str, Any]:
    user = _resolve(portal, params)
    entity = params.get("CRM_ENTITY_TYPE")
    show = str(params.get("SHOW", "1")).lower() not in ("0", "", "false", "n")
    return {
        "user": user,
        "line": params.get("LINE_NUMBER") or None,
        "crm": f"{entity} {params.get('CRM_ENTITY_ID')}" if entity else None,
        "show": show,
    }


def _finished(portal: DevPortal, stat: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": stat.get("_finished_at", 0.0),
        "what": "finished",
        "user": _user(portal, stat.get("PORTAL_USER_ID")),
        "status": stat.get("CALL_FAILED_CODE"),
        "duration": stat.get("CALL_DURATION"),
        "cost": stat.get("COST"),
        "currency": stat.get("COST_CURRENCY") or None,
        "crm": (
            f"{stat['CRM_ENTITY_TYPE']} {stat['CRM_ENTITY_ID']}"
            if stat.get("CRM_ENTITY_TYPE")
            else None
        ),
    }


def _record_step(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": record.get("attached_at", 0.0),
        "what": "record",
        "filename": record.get("FILENAME"),
        "size": record.get("size"),
        "url": record.get("RECORD_URL"),
    }


def _user_ids(value: Any) -> list[int]:
    items = list(value.values()) if isinstance(value, dict) else value
    if not isinstance(items, list):
        items = [items]
    return [_int(v, 0) for v in items if _int(v, 0) > 0]


def _resolve(portal: DevPortal, params: dict[str, Any]) -> dict[str, Any] | None:
    """The register's user as the portal resolved it: USER_ID, else the extension's owner."""
    user_id = _int(params.get("USER_ID"), 0)
    if user_id:
        return _user(portal, user_id)
    inner = str(params.get("USER_PHONE_INNER") or "").strip()
    found = next((u for u in portal.users.values() if inner and u.extension == inner), None)
    return _user(portal, found.id) if found else None


def _user(portal: DevPortal, user_id: Any) -> dict[str, Any]:
    number = _int(user_id, 0)
    user = portal.users.get(number)
    name = f"{user.name} {user.last_name}" if user else f"user {number}"
    return {"id": number, "name": name}


def _clock(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%H:%M:%S")


def _portal_or_404(code: str) -> tuple[DevState, DevPortal]:
    dev = state()
    portal = dev.find_portal(code)
    if portal is None:
        raise ShellError("not_found", f"no portal {code!r}", 404)
    return dev, portal


# --- input -----------------------------------------------------------------------------------
def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ShellError("bad_request", "the body must be a JSON object")
    return body


def _target(code: str, body: dict[str, Any]) -> tuple[DevState, DevPortal, str]:
    dev = state()
    portal = dev.find_portal(code)
    if portal is None:
        raise ShellError("not_found", f"no portal {code!r}", 404)
    client_id = str(body.get("client_id", ""))
    if client_id not in dev.apps:
        raise ShellError("not_found", f"no app {client_id!r}", 404)
    return dev, portal, client_id


def _viewer(portal: DevPortal, body: dict[str, Any]) -> tuple[DevUser, str]:
    """The signed-in user (an active one) and their interface language."""
    user = portal.users.get(_int(body.get("user_id"), 1))
    if user is None or not user.active:
        raise ShellError("not_found", "no such active user on this portal", 404)
    return user, _lang(body.get("lang"))


def _lang(value: Any) -> str:
    value = str(value or "en").lower()
    return value if _LANG.match(value) else "en"


def _ui(lang: str) -> str:
    return "ru" if lang == "ru" else "en"


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json"
    )


SCRIPT_TEXT = ("opening", "installing_now", "finishing", "failed")

TEXT = {
    "en": {
        "workspace": "Development portal",
        "menu_feed": "Feed",
        "menu_tasks": "Tasks and projects",
        "menu_crm": "CRM",
        "menu_telephony": "Telephony",
        "menu_market": "Market",
        "applications": "Applications",
        "market_hint": "Applications registered with this development portal's OAuth server.",
        "signed_in": "Signed in as",
        "admin": "administrator",
        "employee": "employee",
        "install": "Install",
        "open": "Open",
        "continue": "Continue installation",
        "status_available": "Not installed",
        "status_installing": "Installation not finished",
        "status_installed": "Installed",
        "back": "Applications",
        "admin_only": "Only a Bitrix24 administrator can install applications.",
        "not_installed": (
            "The application is not fully installed yet. Ask your Bitrix24 administrator "
            "to finish the installation."
        ),
        "no_user": "No such user on this portal.",
        "no_app": "No such application.",
        "opening": "Opening the application…",
        "installing_now": "Installing…",
        "finishing": "Finishing the installation…",
        "failed": "The portal could not open the application",
        "language": "Language",
    },
    "ru": {
        "workspace": "Портал для разработки",
        "menu_feed": "Новости",
        "menu_tasks": "Задачи и проекты",
        "menu_crm": "CRM",
        "menu_telephony": "Телефония",
        "menu_market": "Маркет",
        "applications": "Приложения",
        "market_hint": "Приложения, зарегистрированные на OAuth-сервере этого портала.",
        "signed_in": "Вы вошли как",
        "admin": "администратор",
        "employee": "сотрудник",
        "install": "Установить",
        "open": "Открыть",
        "continue": "Продолжить установку",
        "status_available": "Не установлено",
        "status_installing": "Установка не завершена",
        "status_installed": "Установлено",
        "back": "Приложения",
        "admin_only": "Устанавливать приложения может только администратор Битрикс24.",
        "not_installed": (
            "Приложение ещё не установлено до конца. Попросите администратора Битрикс24 "
            "завершить установку."
        ),
        "no_user": "На этом портале нет такого пользователя.",
        "no_app": "Нет такого приложения.",
        "opening": "Открываем приложение…",
        "installing_now": "Устанавливаем…",
        "finishing": "Завершаем установку…",
        "failed": "Портал не смог открыть приложение",
        "language": "Язык",
    },
}


CALL_TEXT = {
    "en": {
        "title": "Telephony: external calls",
        "hint": "Each call as Bitrix24 saw it, newest first (reloads every few seconds).",
        "none": "No external calls yet. Send one (make run prints how) or start the simulator.",
        "back": "Applications",
        "incoming": "incoming",
        "outgoing": "outgoing",
        "registered": "registered",
        "finished": "finished",
        "not registered": "not registered",
        "card_to": "card shown to",
        "card_hidden": "card hidden from",
        "line": "line",
        "user": "employee",
        "status": "status",
        "duration": "s",
        "record": "record attached",
        "bytes": "bytes",
        "refused": "refused",
        "no_card": "no card",
    },
    "ru": {
        "title": "Телефония: внешние звонки",
        "hint": "Каждый звонок так, как его видел Битрикс24, новые сверху (обновляется сама).",
        "none": "Внешних звонков пока нет. Отправьте звонок (make run подскажет как) "
        "или запустите симулятор.",
        "back": "Приложения",
        "incoming": "входящий",
        "outgoing": "исходящий",
        "registered": "зарегистрирован",
        "finished": "завершён",
        "not registered": "не зарегистрирован",
        "card_to": "карточка показана",
        "card_hidden": "карточка скрыта у",
        "line": "линия",
        "user": "сотрудник",
        "status": "статус",
        "duration": "с",
        "record": "запись прикреплена",
        "bytes": "байт",
        "refused": "отказ",
        "no_card": "без карточки",
    },
}
