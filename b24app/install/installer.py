"""`POST /install`: the installer page Bitrix24 opens once, in a frame, when an admin installs us.

settings/oauth/simple-way.md lists what arrives: DOMAIN, PROTOCOL, LANG, APP_SID in the query;
AUTH_ID, REFRESH_ID, AUTH_EXPIRES, SERVER_ENDPOINT, APPLICATION_TOKEN, member_id, status,
PLACEMENT, PLACEMENT_OPTIONS in the form. We verify AUTH_ID with the OAuth server, and that its
user is an administrator (anyone who opens the app gets a frame POST just like this one), store
the portal, bind our lifecycle events server-side, and answer a page whose script calls
`BX24.installFinish()` (installation-finish.md); Bitrix24 then opens the settings page.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, render_template, request

from b24app.bitrix.client import PortalClient
from b24app.bitrix.errors import BitrixError
from b24app.db import get_db
from b24app.install.verification import (
    InstallRefused,
    installation_facts,
    require_admin,
    verify_token,
)
from b24app.logs import get_logger
from b24app.portals import store
from b24app.portals.currencies import refresh_currencies

log = get_logger(__name__)
bp = Blueprint("installer", __name__, template_folder="templates")

REQUIRED_FORM = ("AUTH_ID", "REFRESH_ID", "member_id", "APPLICATION_TOKEN")
LIFECYCLE_EVENTS = ("ONAPPUNINSTALL", "ONAPPUPDATE")


@bp.post("/install")
def install() -> Response:
    settings = current_app.config["SETTINGS"]
    lang = page_language(request.args.get("LANG"))
    missing = [name for name in REQUIRED_FORM if not request.form.get(name)]
    if not request.args.get("DOMAIN"):
        missing.append("DOMAIN")
    if missing:
        return _refused(lang, f"missing fields: {', '.join(missing)}", 400)
    try:
        with get_db().read() as session:
            verified = verify_token(
                session,
                settings,
                access_token=request.form["AUTH_ID"],
                member_id=request.form["member_id"],
                domain=request.args["DOMAIN"],
            )
        require_admin(verified, request.form["AUTH_ID"], settings)
        with get_db().write() as session:
            facts = installation_facts(
                verified,
                settings,
                tokens=_frame_tokens(),
                application_token=request.form["APPLICATION_TOKEN"],
            )
            portal = store.save_installation(session, facts)
            member_id = portal.member_id
    except InstallRefused as refusal:
        log.warning("install refused", reason=str(refusal), member_id=request.form["member_id"])
        return _refused(lang, str(refusal), 403)
    bound = bind_lifecycle_events(member_id, f"{settings.public_url}/events")
    _remember_currencies(member_id)
    log.info("installed", member_id=member_id, events_bound=bound)
    html = render_template(
        "install.html",
        lang=lang,
        text=TEXT[lang],
        bx24_script_url=settings.bx24_script_url,
        events_bound=bound,
    )
    return framed(Response(html), verified.client_endpoint)


def _frame_tokens() -> store.TokenPair:
    form = request.form
    expires = store.expires_at(_int(form.get("AUTH_EXPIRES")))
    return store.TokenPair(form["AUTH_ID"], form["REFRESH_ID"], expires)


def bind_lifecycle_events(member_id: str, handler: str) -> bool:
    """Bind ONAPPUNINSTALL and ONAPPUPDATE to our handler; True once both are bound.

    Binds only what `event.get` does not already list: what event.bind does with a duplicate is
    not documented (api-reference/events/event-bind.md), so we never send one.
    """
    client = PortalClient(member_id)
    try:
        bound = {
            str(item.get("event", "")).upper()
            for item in client.result("event.get") or []
            if item.get("handler") == handler
        }
        missing = [event for event in LIFECYCLE_EVENTS if event not in bound]
        if not missing:
            return True
        commands = {
            event.lower(): ("event.bind", {"event": event, "handler": handler}) for event in missing
        }
        outcome = client.batch(commands)
    except BitrixError as error:
        log.warning("event.bind failed", member_id=member_id, error=error.code)
        return False
    if outcome.errors:
        log.warning("event.bind refused", member_id=member_id, events=sorted(outcome.errors))
    return not outcome.errors


def _remember_currencies(member_id: str) -> None:
    """Store the portal's currencies now, so the PBX intake has them from the first call."""
    try:
        refresh_currencies(member_id, force=True)
    except BitrixError as error:
        log.warning("crm.currency.list failed", member_id=member_id, error=error.code)


def framed(response: Response, client_endpoint: str) -> Response:
    """Allow framing by the portal's own origin only (site-does-not-allow-connection.md)."""
    parts = urlsplit(client_endpoint)
    origin = f"{parts.scheme}://{parts.netloc}"
    response.headers["Content-Security-Policy"] = f"frame-ancestors 'self' {origin}"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _refused(lang: str, reason: str, status: int) -> Response:
    html = render_template("install_refused.html", lang=lang, text=TEXT[lang], reason=reason)
    response = Response(html, status=status)
    response.headers["Content-Security-Policy"] = "frame-ancestors *"
    return response


def page_language(lang: str | None) -> str:
    return "ru" if (lang or "").lower() in ("ru", "ua", "by", "kz") else "en"


def _int(value: str | None) -> int:
    try:
        return max(int(value or 3600), 0)
    except ValueError:
        return 3600


TEXT = {
    "en": {
        "title": "b24app: connecting your phone system",
        "done": "b24app is installed. Finishing the installation…",
        "next": "The settings page opens next: there you will find your PBX key.",
        "unbound": "Could not subscribe to the app's lifecycle events; open the app again later.",
        "refused": "The installation could not be verified",
    },
    "ru": {
        "title": "b24app: подключение телефонии",
        "done": "b24app установлено. Завершаем установку…",
        "next": "Дальше откроется страница настроек: там ключ для вашей АТС.",
        "unbound": "Не удалось подписаться на события приложения; откройте приложение позже.",
        "refused": "Установку не удалось проверить",
    },
}
