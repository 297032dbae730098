"""`POST /app`: is this really a user of an installed portal opening our page, and who?

Bitrix24 opens the page (placement DEFAULT) with the same fields as the installer
(settings/oauth/simple-way.md): DOMAIN, LANG in the query; AUTH_ID, REFRESH_ID, member_id,
APPLICATION_TOKEN … in the form. Anyone can POST such a form, so nothing in it is believed until:

1. `member_id` is a portal we are installed on;
2. `APPLICATION_TOKEN` equals the one the portal gave us at install (compared in constant time);
3. the OAuth server's `app.info` says AUTH_ID belongs to our app on that very portal and domain
   (portals/verification.py), which also tells us the user;
4. the portal itself, asked with that user's own token (`user.admin`), says whether the user
   may manage the app. If it cannot be asked, the user gets the read-only view.

An administrator opening the app of a portal whose refresh token is gone (`needs_reauth`) brings
a fresh, verified token pair with them: it is stored and the portal is active again, which is
what the portal's status detail ("open the application") promises.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from flask import Request

from b24app.bitrix.errors import BitrixError
from b24app.bitrix.oauth import frame_tokens
from b24app.delivery import portal_health
from b24app.frames import page_language
from b24app.logs import get_logger
from b24app.models import PortalStatus, utcnow
from b24app.portals.store import InstallationStore, find_portal, set_status
from b24app.portals.verification import InstallRefused, ask_admin, verify_token
from b24app.settings_page.page_token import Viewer

log = get_logger(__name__)

REQUIRED_FORM = ("AUTH_ID", "member_id", "APPLICATION_TOKEN")


class EntryRefused(Exception):
    """The entry is not believed. `reason` is a key of messages.ENTRY_REFUSED; `status` the
    HTTP status; `detail` (English, safe to show) says more for the logs and the page."""

    def __init__(self, reason: str, status: int, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Entry:
    viewer: Viewer
    client_endpoint: str  # the stored address: the page may be framed by its origin only
    admin_unknown: bool  # the portal could not be asked; the viewer gets the read-only view


def language(request: Request) -> str:
    return page_language(request.args.get("LANG") or request.form.get("LANG"))


def verify_entry(request: Request, store: InstallationStore) -> Entry:
    """Check the POST /app request (steps 1–4 above); EntryRefused if any fails."""
    form = request.form
    missing = [name for name in REQUIRED_FORM if not form.get(name)]
    if not request.args.get("DOMAIN"):
        missing.append("DOMAIN")
    if missing:
        raise EntryRefused("missing_fields", 400, ", ".join(missing))
    member_id = form["member_id"]
    with store.db.read() as session:
        portal = find_portal(session, member_id)
        if portal is None:
            raise EntryRefused("unknown_portal", 403)
        if PortalStatus(portal.status).gone:
            raise EntryRefused("not_installed", 403, portal.status)
        expected = store.application_token(portal) or ""
        if not secrets.compare_digest(expected.encode(), form["APPLICATION_TOKEN"].encode()):
            raise EntryRefused("wrong_application_token", 403)
        client_endpoint, client_id, status = portal.client_endpoint, portal.client_id, portal.status
        portal_id = portal.id
        try:
            verified = verify_token(
                store,
                session,
                access_token=form["AUTH_ID"],
                member_id=member_id,
                domain=request.args["DOMAIN"],
            )
        except InstallRefused as refusal:
            raise EntryRefused("token_refused", 403, str(refusal)) from None
    if verified.info.client_id != client_id or not verified.info.user_id:
        raise EntryRefused("token_refused", 403, "the token is not this installation's")
    admin, unknown = _ask_admin(store, client_endpoint, form["AUTH_ID"])
    if admin and status == PortalStatus.NEEDS_REAUTH:
        _revive(store, member_id, request)
    if PortalStatus(status).revivable:  # Bitrix24 let a user in: perhaps it was paid for
        portal_health.probe_now(store.db, portal_id, now=utcnow())
    viewer = Viewer(member_id, verified.info.user_id, admin, language(request))
    return Entry(viewer, client_endpoint, unknown)


def _ask_admin(
    store: InstallationStore, client_endpoint: str, access_token: str
) -> tuple[bool, bool]:
    """(is admin, could not tell). A portal that does not answer gets no admin rights."""
    try:
        return ask_admin(store, client_endpoint, access_token), False
    except BitrixError as error:
        log.warning("user.admin failed; read-only view", error=error.code)
        return False, True


def _revive(store: InstallationStore, member_id: str, request: Request) -> None:
    """Store the administrator's verified token pair for a portal that had lost its own."""
    pair = frame_tokens(request.form)
    if pair is None:
        return
    with store.db.write() as session:
        portal = find_portal(session, member_id, for_update=True)
        if portal is None or portal.status != PortalStatus.NEEDS_REAUTH:
            return
        store.store_tokens(portal, pair)
        set_status(portal, PortalStatus.ACTIVE)
    log.info("portal re-authorised by an administrator opening the app", member_id=member_id)
