"""Re-authorising a portal whose refresh token is gone: the authorization-code flow.

settings/oauth/index.md: send the admin's browser to
`{portal}/oauth/authorize/?client_id=…&state=…`; Bitrix24 redirects back to our registered
redirect URI (`/oauth/callback`) with `code` (valid 30 s) and our `state`; we exchange the code
at the OAuth server (Authlib). `state` is random, stored
only as a hash, valid ten minutes and usable once, so a callback can't be forged or replayed.
The start link names only the portal, so anyone of that portal could follow it: the new tokens
are kept only if their user is an administrator (user.admin), as for an install.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from authlib.integrations.requests_client import OAuth2Session
from flask import Blueprint, Response, current_app, redirect, render_template, request
from sqlalchemy import delete
from sqlalchemy.orm import Session

from b24app.bitrix.errors import BitrixError
from b24app.db import get_db
from b24app.install.installer import page_language
from b24app.install.verification import InstallRefused, oauth_server, require_admin_at
from b24app.logs import get_logger
from b24app.models import OAuthState, PortalStatus, utcnow
from b24app.portals import store

log = get_logger(__name__)
bp = Blueprint("reauthorize", __name__, template_folder="templates")

STATE_LIFETIME = timedelta(minutes=10)


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def authorization_url(member_id: str) -> str | None:
    """Where to send the admin to re-authorise the portal (None for an unknown portal)."""
    state = secrets.token_urlsafe(32)
    with get_db().write() as session:
        portal = store.find_portal(session, member_id)
        if portal is None or portal.status == PortalStatus.UNINSTALLED:
            return None
        session.execute(delete(OAuthState).where(OAuthState.expires_at <= utcnow()))
        session.add(
            OAuthState(
                state_hash=_hash(state), member_id=member_id, expires_at=utcnow() + STATE_LIFETIME
            )
        )
        portal_base = portal.client_endpoint.removesuffix("rest/")
        client_id = portal.client_id
    url, _ = OAuth2Session(client_id).create_authorization_url(
        f"{portal_base}oauth/authorize/", state=state
    )
    return str(url)


@bp.get("/oauth/start")
def start() -> Response:
    url = authorization_url(request.args.get("member_id", ""))
    if url is None:
        return _page("unknown", 404)
    return redirect(url)  # type: ignore[return-value]


@bp.get("/oauth/callback")
def callback() -> Response:
    state = request.args.get("state", "")
    code = request.args.get("code", "")
    settings = current_app.config["SETTINGS"]
    with get_db().write() as session:
        member_id = _consume_state(session, state) if state else None
        if member_id is None or not code:
            log.warning("oauth callback refused: unknown, used or expired state")
            return _page("bad_state", 400)
        if request.args.get("member_id") not in (None, member_id):
            return _page("bad_state", 400)
        portal = store.find_portal(session, member_id, for_update=True)
        secret = store.client_secret_for(session, portal.client_id) if portal else None
        if portal is None or secret is None:
            return _page("unknown", 404)
        try:
            grant = oauth_server(settings).exchange_code(portal.client_id, secret, code)
        except BitrixError as error:
            log.warning("code exchange refused", member_id=member_id, error=error.code)
            return _page("exchange_failed", 400)
        if grant.member_id != member_id:
            return _page("bad_state", 400)
        try:  # the link is public: anyone of the portal may follow it and authorise
            require_admin_at(portal.client_endpoint, grant.tokens.access_token, settings)
        except InstallRefused as refusal:
            log.warning("re-authorisation refused", member_id=member_id, reason=str(refusal))
            return _page("not_admin", 403)
        store.store_tokens(portal, grant.tokens)
        store.set_status(portal, PortalStatus.ACTIVE)
    log.info("portal re-authorised", member_id=member_id)
    return _page("done", 200)


def _consume_state(session: Session, state: str) -> str | None:
    """Delete the state row and return its portal, if it existed and had not expired."""
    row = session.get(OAuthState, _hash(state), with_for_update=True)
    if row is None:
        return None
    session.execute(delete(OAuthState).where(OAuthState.state_hash == row.state_hash))
    return row.member_id if row.expires_at > utcnow() else None


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
