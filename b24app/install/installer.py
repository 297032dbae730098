"""`POST /install`: the installer page Bitrix24 opens once, in a frame, when an admin installs us.

settings/oauth/simple-way.md lists what arrives: DOMAIN, PROTOCOL, LANG, APP_SID in the query;
AUTH_ID, REFRESH_ID, AUTH_EXPIRES, SERVER_ENDPOINT, APPLICATION_TOKEN, member_id, status,
PLACEMENT, PLACEMENT_OPTIONS in the form. We verify AUTH_ID with the OAuth server, and that its
user is an administrator (anyone who opens the app gets a frame POST just like this one), store
the portal, bind our lifecycle events server-side, and answer a page whose script calls
`BX24.installFinish()` (installation-finish.md); Bitrix24 then opens the settings page.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template, request

from b24app.bitrix.client import PortalClient
from b24app.bitrix.errors import BitrixError
from b24app.bitrix.oauth import frame_tokens
from b24app.frames import framed, page_language
from b24app.logs import get_logger
from b24app.originate import inbox
from b24app.portals.currencies import refresh_currencies
from b24app.portals.store import InstallationStore
from b24app.portals.verification import (
    InstallRefused,
    installation_facts,
    require_admin,
    verify_token,
)
from b24app.wiring import current_store

log = get_logger(__name__)
bp = Blueprint("installer", __name__, template_folder="templates")

REQUIRED_FORM = ("AUTH_ID", "REFRESH_ID", "member_id", "APPLICATION_TOKEN")
# The app's own life, and click-to-call / callback requests (originate/inbox.py)
BOUND_EVENTS = ("ONAPPUNINSTALL", "ONAPPUPDATE", *inbox.EVENTS)


@bp.post("/install")
def install() -> Response:
    settings = current_app.config["SETTINGS"]
    store = current_store()
    lang = page_language(request.args.get("LANG"))
    missing = [name for name in REQUIRED_FORM if not request.form.get(name)]
    if not request.args.get("DOMAIN"):
        missing.append("DOMAIN")
    if missing:
        return _refused(lang, f"missing fields: {', '.join(missing)}", 400)
    try:
        with store.db.read() as session:
            verified = verify_token(
                store,
                session,
                access_token=request.form["AUTH_ID"],
                member_id=request.form["member_id"],
                domain=request.args["DOMAIN"],
            )
        require_admin(store, verified.client_endpoint, request.form["AUTH_ID"])
        facts = installation_facts(
            store,
            verified,
            tokens=frame_tokens(request.form),
            application_token=request.form["APPLICATION_TOKEN"],
        )
        with store.db.write() as session:
            member_id = store.save_installation(session, facts).member_id
    except InstallRefused as refusal:
        log.warning("install refused", reason=str(refusal), member_id=request.form["member_id"])
        return _refused(lang, str(refusal), 403)
    bound = bind_events(store.client(member_id), f"{settings.public_url}/events")
    _remember_currencies(store, member_id)
    log.info("installed", member_id=member_id, events_bound=bound)
    html = render_template(
        "install.html",
        lang=lang,
        text=TEXT[lang],
        bx24_script_url=settings.bx24_script_url,
        events_bound=bound,
    )
    return framed(Response(html), verified.client_endpoint)


def bind_events(client: PortalClient, handler: str) -> bool:
    """Bind BOUND_EVENTS (the app's uninstall and update, click-to-call and callback) to our
    handler (a URL) on the client's portal; True once all are bound, False if Bitrix24 refused
    or could not be asked (logged). Called at install, on ONAPPUPDATE and on re-authorisation,
    so portals installed before an event was added get it too.

    Binds only what `event.get` does not already list: what event.bind does with a duplicate is
    not documented (api-reference/events/event-bind.md), so we never send one.
    """
    member_id = client.member_id
    try:
        bound = {
            str(item.get("event", "")).upper()
            for item in client.result("event.get") or []
            if item.get("handler") == handler
        }
        missing = [event for event in BOUND_EVENTS if event not in bound]
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


def _remember_currencies(store: InstallationStore, member_id: str) -> None:
    """Store the portal's currencies now, so the PBX intake has them from the first call."""
    try:
        refresh_currencies(store, member_id, force=True)
    except BitrixError as error:
        log.warning("crm.currency.list failed", member_id=member_id, error=error.code)


def _refused(lang: str, reason: str, status: int) -> Response:
    html = render_template("install_refused.html", lang=lang, text=TEXT[lang], reason=reason)
    response = Response(html, status=status)
    response.headers["Content-Security-Policy"] = "frame-ancestors *"
    return response


TEXT = {
    "en": {
        "title": "b24app: connecting your phone system",
        "done": "b24app is installed. Finishing the installation…",
        "next": "The settings page opens next: there you will find your PBX key.",
        "unbound": "Could not subscribe to the app's events; open the app again later.",
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
