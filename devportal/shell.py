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
         them, each a timeline (below); query: as_user=N (the signed-in user, default 1),
         lang=en|ru, limit=N (default 100), refresh=S (seconds between reloads of the live
         parts, default 5, 0 for none). Also: the CRM's contacts, each number a click-to-call
         button; the CRM callback form; the events the event queue sent to apps and their
         answers; the portal's PBX stand-in (pbx_receiver.py: what it received and reported)

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
    POST /p/<code>/shell/click-to-call   {user_id, contact_id | phone, lang} -> 202 {event,
                                         CALL_ID, client_id, data, deliveries, message}: the
                                         employee clicked a number (call_events.click_to_call)
    POST /p/<code>/shell/callback        {user_id, phone, text, voice?, lang} -> 202 {event,
                                         CALL_ID: null, client_id, data, deliveries, message}:
                                         a callback ordered (call_events.order_callback)
                                         Both refuse in the person's language: 409 no_app,
                                         not_installed, not_bound; 404 no_user, no_contact;
                                         400 bad_phone

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
           clicked     user, line, crm, app: Bitrix24 registered the call on an employee's click
           event       event, status (the handler's HTTP status, null if none), error: the
                       event the queue sent about this call
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

from devportal import call_events, event_queue, pbx_receiver
from devportal.call_events import CallEventRefused
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
    refresh = max(0, _int(request.args.get("refresh"), 5))
    with dev.lock:
        user = portal.users.get(_int(request.args.get("as_user"), 1))
        if user is None or not user.active:
            return Response(TEXT[lang]["no_user"], 404, mimetype="text/plain")
        users = [u for u in portal.users.values() if u.active]
        contacts = [dict(c) for c in portal.contacts]
        app_id = call_events.telephony_app(dev, portal)
    config = {
        "base": f"/p/{portal.code}/",
        "user_id": user.id,
        "lang": lang,
        "refresh": refresh,
        "text": {k: CALL_TEXT[lang][k] for k in ("calling", "ordering", "failed_request")},
    }
    html = render_template(
        "telephony.html",
        portal=portal,
        calls=call_timelines(dev, portal)[:limit],
        deliveries=list(reversed(event_queue.deliveries(dev, portal)))[:limit],
        pbx=pbx_receiver.describe(dev, portal),
        contacts=contacts,
        app_id=app_id,
        user=user,
        users=users,
        config=config,
        text=CALL_TEXT[lang],
        lang=lang,
        refresh=refresh,
        query={"as_user": user.id, "lang": lang},
        clock=_clock,
    )
    return Response(html, mimetype="text/html")


# --- telephony: click-to-call and the callback form ---------------------------------------------
@bp.post("/p/<code>/shell/click-to-call")
def click_to_call(code: str) -> Response:
    """An employee clicks a number: {user_id, contact_id | phone, lang} -> 202 {CALL_ID,
    client_id, deliveries, message}; refusals (call_events.CallEventRefused) as shell errors."""
    body = _body()
    dev, portal = _portal_or_404(code)
    lang = _ui(_lang(body.get("lang")))
    contact_id = body.get("contact_id")
    try:
        sent = call_events.click_to_call(
            dev,
            portal,
            user_id=_int(body.get("user_id"), 1),
            contact_id=None if contact_id in (None, "") else _int(contact_id, 0),
            phone=str(body.get("phone") or "") or None,
        )
    except CallEventRefused as refused:
        raise _refusal(refused, lang) from refused
    message = CALL_TEXT[lang]["clicked"].format(
        phone=sent.data["PHONE_NUMBER"], app=sent.client_id, call_id=sent.call_id
    )
    return _json(_sent(sent, message), 202)


@bp.post("/p/<code>/shell/callback")
def callback(code: str) -> Response:
    """A client fills in the CRM callback form: {user_id, phone, text, voice?, lang} -> 202
    {client_id, deliveries, message}; refusals as shell errors."""
    body = _body()
    dev, portal = _portal_or_404(code)
    lang = _ui(_lang(body.get("lang")))
    try:
        sent = call_events.order_callback(
            dev,
            portal,
            phone=str(body.get("phone") or ""),
            text=str(body.get("text") or "") or CALL_TEXT[lang]["callback_default"],
            voice=str(body.get("voice") or call_events.DEFAULT_VOICE),
            user_id=_int(body.get("user_id"), 1),
        )
    except CallEventRefused as refused:
        raise _refusal(refused, lang) from refused
    message = CALL_TEXT[lang]["ordered"].format(phone=sent.data["PHONE_NUMBER"], app=sent.client_id)
    return _json(_sent(sent, message), 202)


REFUSAL_STATUS = {"no_user": 404, "no_contact": 404, "bad_phone": 400}


def _refusal(refused: CallEventRefused, lang: str) -> ShellError:
    """The shell's words for why nothing was sent (409 unless the input was wrong)."""
    text = REFUSALS[lang][refused.code]
    description = text.format(app=refused.detail, event=refused.event, value=refused.detail)
    return ShellError(refused.code, description, REFUSAL_STATUS.get(refused.code, 409))


def _sent(sent: call_events.Sent, message: str) -> dict[str, Any]:
    return {
        "event": sent.event,
        "CALL_ID": sent.call_id,
        "client_id": sent.client_id,
        "data": sent.data,
        "deliveries": sent.deliveries,
        "message": message,
    }


def call_timelines(dev: DevState, portal: DevPortal) -> list[dict[str, Any]]:
    """Every external call of the portal with its steps (module docstring: CALL, STEP)."""
    with dev.lock:
        entries = [
            e
            for e in dev.journal
            if e.get("member_id") == portal.member_id
            and (e.get("method") in CALL_METHODS or (e.get("call_id") and "method" not in e))
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
    """Add what one journalled request did to its call (register, show, hide, refusals), or
    what the portal did itself (a click registering a call, the event it sent)."""
    if "method" not in entry:
        _portal_step(portal, calls, entry)
        return
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


def _portal_step(
    portal: DevPortal, calls: dict[str, dict[str, Any]], entry: dict[str, Any]
) -> None:
    """A click that registered the call ("clicked"), or the event sent about it ("event")."""
    call = calls.get(str(entry["call_id"]))
    if call is None:
        return
    step: dict[str, Any] = {"at": entry.get("ts", 0.0)}
    if entry.get("started"):
        data = entry.get("data") or {}
        entity = data.get("CRM_ENTITY_TYPE")
        step.update(
            what="clicked",
            user=_user(portal, entry.get("user_id")),
            line=data.get("LINE_NUMBER") or None,
            crm=f"{entity} {data.get('CRM_ENTITY_ID')}" if entity else None,
            app=entry.get("client_id"),
        )
    elif entry.get("event"):
        step.update(
            what="event", event=entry["event"], status=entry.get("status"), error=entry.get("error")
        )
    else:
        return
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
        "signed_in": "Signed in as",
        "admin": "administrator",
        "employee": "employee",
        "contacts": "CRM: contacts",
        "contacts_hint": (
            "Click a number to call the client through the portal's telephony app, as an "
            "employee does in the CRM: Bitrix24 registers the call and sends the app "
            "ONEXTERNALCALLSTART."
        ),
        "outgoing_app": "Outgoing calls go through",
        "no_app": "no telephony application is installed",
        "contact": "Contact",
        "phone": "Phone",
        "call_through_app": "Call {phone} through the app",
        "callback_title": "CRM form: order a callback",
        "callback_hint": (
            "As a client fills in a CRM callback form on a website: Bitrix24 sends the app "
            "ONEXTERNALCALLBACKSTART."
        ),
        "callback_phone": "Client's phone number",
        "callback_text": "Text spoken to the employee first",
        "callback_send": "Order a callback",
        "callback_default": (
            "A callback was ordered from the website, connecting you with the client"
        ),
        "events_title": "Events sent to applications",
        "events_hint": (
            "Bitrix24's event queue sends each event once, a little after the action; a handler "
            "that does not answer 200 is logged as failed and the event is not sent again."
        ),
        "no_events": "No events yet.",
        "event": "event",
        "handler": "handler",
        "answer": "answer",
        "queued": "queued",
        "sending": "sending",
        "delivered": "delivered",
        "failed": "failed",
        "pbx_title": "PBX (development stand-in, not part of Bitrix24)",
        "pbx_hint": (
            "Where b24app sends this portal's click-to-call and callback webhooks in development "
            "(its originate_url). It verifies each signature, answers as a PBX does and reports "
            "the call it places to b24app's PBX API."
        ),
        "pbx_address": "Originate URL",
        "pbx_verifies": "Verifies signatures",
        "pbx_no_secret": "no secret configured: every webhook is refused (401)",
        "pbx_reports": "Reports calls to",
        "pbx_not_reporting": "nobody (no b24app address or PBX key configured)",
        "pbx_down": "down: answers 503 to everything",
        "pbx_received": "Webhooks received",
        "pbx_reported": "Reported to b24app",
        "pbx_none": "Nothing received yet.",
        "yes": "yes",
        "forged": "refused",
        "clicked_step": "clicked by",
        "event_step": "event",
        "calling": "Calling…",
        "ordering": "Ordering…",
        "failed_request": "The portal could not do it",
        "clicked": (
            "Calling {phone} through {app}: Bitrix24 registered the call {call_id} and queued "
            "ONEXTERNALCALLSTART for the app."
        ),
        "ordered": "Callback to {phone} ordered: ONEXTERNALCALLBACKSTART queued for {app}.",
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
        "signed_in": "Вы вошли как",
        "admin": "администратор",
        "employee": "сотрудник",
        "contacts": "CRM: контакты",
        "contacts_hint": (
            "Нажмите на номер, чтобы позвонить клиенту через приложение телефонии портала, как "
            "сотрудник делает это в CRM: Битрикс24 регистрирует звонок и отправляет приложению "
            "ONEXTERNALCALLSTART."
        ),
        "outgoing_app": "Исходящие звонки идут через",
        "no_app": "приложение телефонии не установлено",
        "contact": "Контакт",
        "phone": "Телефон",
        "call_through_app": "Позвонить на {phone} через приложение",
        "callback_title": "CRM-форма: заказ обратного звонка",
        "callback_hint": (
            "Как клиент, заполняющий CRM-форму обратного звонка на сайте: Битрикс24 отправляет "
            "приложению ONEXTERNALCALLBACKSTART."
        ),
        "callback_phone": "Номер телефона клиента",
        "callback_text": "Текст, который сначала услышит сотрудник",
        "callback_send": "Заказать обратный звонок",
        "callback_default": "С сайта заказан обратный звонок, соединяем вас с клиентом",
        "events_title": "События, отправленные приложениям",
        "events_hint": (
            "Очередь событий Битрикс24 отправляет каждое событие один раз, чуть позже действия; "
            "если обработчик не ответил 200, сбой записывается и событие повторно не отправляется."
        ),
        "no_events": "Событий пока нет.",
        "event": "событие",
        "handler": "обработчик",
        "answer": "ответ",
        "queued": "в очереди",
        "sending": "отправляется",
        "delivered": "доставлено",
        "failed": "сбой",
        "pbx_title": "АТС (заглушка для разработки, не часть Битрикс24)",
        "pbx_hint": (
            "Сюда b24app при разработке отправляет вебхуки этого портала о звонках по клику и "
            "обратных звонках (его originate_url). Заглушка проверяет каждую подпись, отвечает как "
            "АТС и сообщает о звонке в PBX API b24app."
        ),
        "pbx_address": "Адрес originate_url",
        "pbx_verifies": "Проверяет подписи",
        "pbx_no_secret": "секрет не задан: все вебхуки отклоняются (401)",
        "pbx_reports": "Сообщает о звонках в",
        "pbx_not_reporting": "никуда (не заданы адрес b24app или ключ АТС)",
        "pbx_down": "недоступна: на всё отвечает 503",
        "pbx_received": "Полученные вебхуки",
        "pbx_reported": "Отправлено в b24app",
        "pbx_none": "Пока ничего не получено.",
        "yes": "да",
        "forged": "отклонён",
        "clicked_step": "клик:",
        "event_step": "событие",
        "calling": "Звоним…",
        "ordering": "Заказываем…",
        "failed_request": "Портал не смог это сделать",
        "clicked": (
            "Звонок на {phone} через {app}: Битрикс24 зарегистрировал звонок {call_id} и поставил "
            "в очередь ONEXTERNALCALLSTART для приложения."
        ),
        "ordered": (
            "Обратный звонок на {phone} заказан: ONEXTERNALCALLBACKSTART поставлено в очередь "
            "для {app}."
        ),
    },
}

REFUSALS = {
    "en": {
        "no_app": "No telephony application is installed on this portal: nothing was sent.",
        "not_installed": (
            "The application {app} is not fully installed yet: Bitrix24 sends it no events."
        ),
        "not_bound": "The application {app} has no handler for {event}: nothing was sent.",
        "no_user": "No such active employee on this portal.",
        "no_contact": "No such CRM contact.",
        "bad_phone": "Not a phone number: {value}",
    },
    "ru": {
        "no_app": "На портале не установлено приложение телефонии: ничего не отправлено.",
        "not_installed": (
            "Приложение {app} ещё не установлено до конца: Битрикс24 не отправляет ему событий."
        ),
        "not_bound": "У приложения {app} нет обработчика {event}: ничего не отправлено.",
        "no_user": "На портале нет такого активного сотрудника.",
        "no_contact": "Нет такого контакта CRM.",
        "bad_phone": "Это не номер телефона: {value}",
    },
}
