"""Re-authorising a portal whose refresh token is gone: the authorization-code flow.

settings/oauth/index.md: send the admin's browser to
`{portal}/oauth/authorize/?client_id=…&state=…`; Bitrix24 redirects back to our registered
redirect URI (`/oauth/callback`) with `code` (valid 30 s) and our `state`; we exchange the code
at the OAuth server (Authlib). `state` is random, stored
only as a hash, valid ten minutes and usable once, so a callback can't be forged or replayed
(portals/reauth.py). The network calls are made outside any write transaction.
The start link names only the portal, so anyone of that portal could follow it: the new tokens
are kept only if their user is an administrator (user.admin), as for an install.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, redirect, render_template, request

from b24app.bitrix.errors import BitrixError
from b24app.bitrix.oauth import TokenPair
from b24app.frames import page_language
from b24app.install.installer import bind_events
from b24app.logs import get_logger
from b24app.models import PortalStatus
from b24app.portals.reauth import authorization_url, consume_state
from b24app.portals.store import InstallationStore, find_portal, set_status
from b24app.portals.verification import InstallRefused, require_admin
from b24app.wiring import current_store

log = get_logger(__name__)
bp = Blueprint("reauthorize", __name__, template_folder="templates")


@bp.get("/oauth/start")
def start() -> Response:
    url = authorization_url(current_store(), request.args.get("member_id", ""))
    if url is None:
        return _page("unknown", 404)
    return redirect(url)  # type: ignore[return-value]


@bp.get("/oauth/callback")
def callback() -> Response:
    """Use up the state, then ask Bitrix24 (the code exchange, user.admin) holding no
    transaction, then keep the tokens in one short write."""
    store = current_store()
    code = request.args.get("code", "")
    member_id = consume_state(store, request.args.get("state", ""))
    if member_id is None or not code:
        log.warning("oauth callback refused: unknown, used or expired state")
        return _page("bad_state", 400)
    if request.args.get("member_id") not in (None, member_id):
        return _page("bad_state", 400)
    with store.db.read() as session:
        portal = find_portal(session, member_id)
        secret = store.client_secret_for(session, portal.client_id) if portal else None
        if portal is None or secret is None:
            return _page("unknown", 404)
        client_id, client_endpoint = portal.client_id, portal.client_endpoint
    try:
        grant = store.oauth.exchange_code(client_id, secret, code)
    except BitrixError as error:
        log.warning("code exchange refused", member_id=member_id, error=error.code)
        return _page("exchange_failed", 400)
    if grant.member_id != member_id:
        return _page("bad_state", 400)
    try:  # the link is public: anyone of the portal may follow it and authorise
        require_admin(store, client_endpoint, grant.tokens.access_token)
    except InstallRefused as refusal:
        log.warning("re-authorisation refused", member_id=member_id, reason=str(refusal))
        return _page("not_admin", 403)
    if not _keep(store, member_id, grant.tokens):
        return _page("unknown", 404)
    handler = f"{current_app.config['SETTINGS'].public_url}/events"
    bound = bind_events(store.client(member_id), handler)  # (events added since the install)
    log.info("portal re-authorised", member_id=member_id, events_bound=bound)
    return _page("done", 200)


def _keep(store: InstallationStore, member_id: str, tokens: TokenPair) -> bool:
    """Store the new pair and make the portal active (False: it was erased meanwhile)."""
    with store.db.write() as session:
        portal = find_portal(session, member_id, for_update=True)
        if portal is None:
            return False
        store.store_tokens(portal, tokens)
        set_status(portal, PortalStatus.ACTIVE)
    return True


def _page(outcome: str, status: int) -> Response:
    lang = page_language(request.args.get("LANG"))
    html = render_template("reauthorized.html", lang=lang, text=TEXT[lang], outcome=outcome)
    return Response(html, status=status)


TEXT = {
    "en": {
        "done": "The portal is authorised again. Calls will be delivered.",
        "bad_state": "This authorisation link is unknown, used or expired. Start again.",
        "unknown": "This portal is not installed.",
        "exchange_failed": "Bitrix24 did not accept the authorisation. Start again.",
        "not_admin": "Only an administrator of this Bitrix24 can authorise the application.",
    },
    "ru": {
        "done": "Портал снова авторизован. Звонки будут доставлены.",
        "bad_state": "Ссылка авторизации неизвестна, использована или устарела. Начните заново.",
        "unknown": "Приложение не установлено на этом портале.",
        "exchange_failed": "Битрикс24 не принял авторизацию. Начните заново.",
        "not_admin": "Авторизовать приложение может только администратор этого Битрикс24.",
    },
}
