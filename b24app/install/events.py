"""`POST /events`: Bitrix24's lifecycle events (api-reference/common/events/on-app-*.md).

Bodies are form-encoded with bracketed keys (`auth[application_token]`), see bitrix/encoding.py.
- ONAPPINSTALL and ONAPPUPDATE carry a full `auth`: verified with the OAuth server like an
  install, and its user must be an administrator; ONAPPUPDATE brings the new
  `application_token`. Their tokens are kept only when the portal has none that work (a
  delayed event must not overwrite a pair we already rotated). Both bind the events the app
  handles that are not bound yet (a portal installed before click-to-call existed gets it on
  the next update).
- ONEXTERNALCALLSTART and ONEXTERNALCALLBACKSTART (click-to-call, callback) are stored for the
  PBX with the portal's `application_token` (originate/inbox.py; 400 names a field that is
  wrong; their tokens are not kept); Bitrix24 confirms each before the PBX gets it
  (originate/proof.py).
- ONAPPUNINSTALL carries no token: only `application_token`, compared in constant time with the
  one we keep (api-reference/events/safe-event-handlers.md). Every user who opens the app sees
  that token, so the uninstall is believed only with the OAuth server's proof that the app is
  gone (install/uninstall.py); `data[CLEAN]=1` then erases the portal's data.
Anything forged or unknown changes nothing, is logged, and gets 403; unknown event types 200.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from b24app.bitrix.encoding import unflatten
from b24app.bitrix.oauth import event_tokens
from b24app.install import uninstall
from b24app.install.installer import bind_events
from b24app.logs import get_logger
from b24app.models import PortalStatus, utcnow
from b24app.originate import inbox
from b24app.portals.store import find_portal
from b24app.portals.verification import (
    InstallRefused,
    installation_facts,
    require_admin,
    verify_token,
)
from b24app.wiring import current_store

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
        return _uninstall(member_id, str(auth.get("application_token") or ""), payload.get("data"))
    if event in ("ONAPPINSTALL", "ONAPPUPDATE"):
        return _install_or_update(event, member_id, auth)
    if event in inbox.EVENTS:
        return _originate(event, auth, payload)
    log.info("event ignored", event_name=event[:64], member_id=member_id[:64])
    return jsonify(status="ignored")


def _uninstall(member_id: str, presented: str, data: object) -> ResponseReturnValue:
    clean = isinstance(data, dict) and str(data.get("CLEAN", "")).strip() == "1"
    outcome = uninstall.uninstall(current_store(), member_id, presented, clean=clean)
    if not outcome.accepted:
        log.warning("ONAPPUNINSTALL refused", reason=outcome.reason, member_id=member_id[:64])
        return _forbidden()
    if outcome.erased is not None:
        log.info(
            "uninstalled; portal data erased (CLEAN=1)",
            member_id=member_id,
            erased_rows=outcome.erased,
        )
        return jsonify(status="uninstalled", erased=True)
    log.info("uninstalled; portal data kept for a reinstall", member_id=member_id)
    return jsonify(status="uninstalled", erased=False)


def _install_or_update(event: str, member_id: str, auth: dict[str, Any]) -> ResponseReturnValue:
    store = current_store()
    access_token = str(auth.get("access_token") or "")
    try:
        with store.db.read() as session:
            verified = verify_token(
                store,
                session,
                access_token=access_token,
                member_id=member_id,
                domain=str(auth.get("domain") or "") or None,
            )
        require_admin(store, verified.client_endpoint, access_token)
        with store.db.write() as session:
            portal = find_portal(session, member_id, for_update=True)
            keep_tokens = bool(
                portal and portal.status == PortalStatus.ACTIVE and store.read_tokens(portal)
            )
            facts = installation_facts(
                store,
                verified,
                tokens=None if keep_tokens else event_tokens(auth),
                application_token=str(auth.get("application_token") or ""),
            )
            store.save_installation(session, facts)
    except InstallRefused as refusal:
        log.warning("event refused", event_name=event, reason=str(refusal), member_id=member_id)
        return _forbidden()
    handler = f"{current_app.config['SETTINGS'].public_url}/events"
    bound = bind_events(store.client(member_id), handler)  # (events added since the install)
    log.info("event accepted", event_name=event, member_id=member_id, events_bound=bound)
    return jsonify(status="ok")


def _originate(event: str, auth: dict[str, Any], payload: dict[str, Any]) -> ResponseReturnValue:
    """Click-to-call or callback: stored for the worker to send to the PBX (originate/)."""
    store = current_store()
    outcome = inbox.accept(store, event, auth, payload.get("data"), payload.get("ts"), utcnow())
    member_id = str(auth.get("member_id") or "")[:64]
    if outcome.status == "refused":
        log.warning("event refused", event_name=event, reason=outcome.reason, member_id=member_id)
        return _forbidden()
    if outcome.status == "invalid":
        log.warning("event invalid", event_name=event, field=outcome.field, member_id=member_id)
        return jsonify(status="invalid", field=outcome.field, detail=outcome.reason), 400
    log.info("event accepted", event_name=event, member_id=member_id, outcome=outcome.status)
    return jsonify(status=outcome.status)


def _forbidden() -> ResponseReturnValue:
    return jsonify(status="refused"), 403
