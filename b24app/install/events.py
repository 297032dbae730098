"""`POST /events`: Bitrix24's lifecycle events (api-reference/common/events/on-app-*.md).

Bodies are form-encoded with bracketed keys (`auth[application_token]`), see bitrix/encoding.py.
- ONAPPINSTALL and ONAPPUPDATE carry a full `auth`: verified with the OAuth server like an
  install, and its user must be an administrator; ONAPPUPDATE brings the new
  `application_token`. Their tokens are kept only when the portal has none that work (a delayed
  event must not overwrite a pair we already rotated).
- ONAPPUNINSTALL carries no token: only `application_token`, compared in constant time with the
  one we keep (api-reference/events/safe-event-handlers.md). Every user who opens the app sees
  that token, so the uninstall is believed only once the OAuth server no longer accepts ours.
Anything forged or unknown changes nothing, is logged, and gets 403; unknown event types 200.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from b24app.bitrix import tokens
from b24app.bitrix.encoding import unflatten
from b24app.bitrix.errors import BitrixError
from b24app.db import get_db
from b24app.install.verification import (
    InstallRefused,
    installation_facts,
    oauth_server,
    require_admin,
    verify_token,
)
from b24app.logs import get_logger
from b24app.models import PortalStatus
from b24app.portals import store

log = get_logger(__name__)
bp = Blueprint("events", __name__)


@bp.post("/events")
def receive() -> ResponseReturnValue:
    payload = unflatten(request.form.items(multi=True))
    event = str(payload.get("event", "")).upper()
    raw_auth = payload.get("auth")
    auth: dict[str, Any] = raw_auth if isinstance(raw_auth, dict) else {}
    member_id = str(auth.get("member_id") or "")
    if event == "ONAPPUNINSTALL":
        return _uninstall(member_id, str(auth.get("application_token") or ""))
    if event in ("ONAPPINSTALL", "ONAPPUPDATE"):
        return _install_or_update(event, member_id, auth)
    log.info("event ignored", event_name=event[:64], member_id=member_id[:64])
    return jsonify(status="ignored")


def _uninstall(member_id: str, presented: str) -> ResponseReturnValue:
    with get_db().read() as session:
        portal = store.find_portal(session, member_id) if member_id else None
        if portal is None or not _same_token(store.application_token(portal), presented):
            log.warning("forged or unknown ONAPPUNINSTALL refused", member_id=member_id[:64])
            return _forbidden()
        tokens = store.read_tokens(portal)
    if tokens is not None and _still_installed(member_id, tokens.access_token):
        log.warning("ONAPPUNINSTALL refused: the app is still installed", member_id=member_id)
        return _forbidden()
    with get_db().write() as session:
        portal = store.find_portal(session, member_id, for_update=True)
        if portal is None or not _same_token(store.application_token(portal), presented):
            return _forbidden()
        store.mark_uninstalled(portal)
    log.info("uninstalled", member_id=member_id)
    return jsonify(status="uninstalled")


def _same_token(stored: str | None, presented: str) -> bool:
    """Constant-time comparison, as bytes (compare_digest refuses non-ASCII text)."""
    if not stored:
        return False
    return secrets.compare_digest(stored.encode(), presented.encode("utf-8", "replace"))


def _still_installed(member_id: str, access_token: str) -> bool:
    """Whether the OAuth server still accepts our tokens for the portal.

    Bitrix24 revokes the app's tokens before it sends ONAPPUNINSTALL (on-app-uninstall.md), so
    tokens that still work mean the event is forged: by anyone who saw the APPLICATION_TOKEN,
    which every user opening the app receives. An expired access token is settled by a refresh.
    Any other answer (revoked, unreachable) lets the uninstall through, as the token alone did.
    """
    settings = current_app.config["SETTINGS"]
    server = oauth_server(settings)
    try:
        return server.app_info(access_token).member_id == member_id
    except BitrixError as error:
        if error.code != "expired_token":
            return False
    try:
        tokens.refresh(get_db(), server, member_id, access_token)
    except BitrixError:
        return False
    return True


def _install_or_update(event: str, member_id: str, auth: dict[str, Any]) -> ResponseReturnValue:
    settings = current_app.config["SETTINGS"]
    access_token = str(auth.get("access_token") or "")
    try:
        with get_db().read() as session:
            verified = verify_token(
                session,
                settings,
                access_token=access_token,
                member_id=member_id,
                domain=str(auth.get("domain") or "") or None,
            )
        require_admin(verified, access_token, settings)
        with get_db().write() as session:
            portal = store.find_portal(session, member_id, for_update=True)
            keep_tokens = bool(
                portal and portal.status == PortalStatus.ACTIVE and store.read_tokens(portal)
            )
            facts = installation_facts(
                verified,
                settings,
                tokens=_event_tokens(auth, keep_tokens),
                application_token=str(auth.get("application_token") or ""),
            )
            store.save_installation(session, facts)
    except InstallRefused as refusal:
        log.warning("event refused", event_name=event, reason=str(refusal), member_id=member_id)
        return _forbidden()
    log.info("event accepted", event_name=event, member_id=member_id)
    return jsonify(status="ok")


def _event_tokens(auth: dict[str, Any], keep_tokens: bool) -> store.TokenPair | None:
    if keep_tokens or not auth.get("refresh_token"):
        return None
    return store.TokenPair(
        str(auth["access_token"]),
        str(auth["refresh_token"]),
        store.expires_at(int(auth.get("expires_in") or 3600)),
    )


def _forbidden() -> ResponseReturnValue:
    return jsonify(status="refused"), 403
