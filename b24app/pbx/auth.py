"""Who is calling: the portal's PBX key from `Authorization: Bearer <key>` (RFC 6750).

One key belongs to one portal; `pbx_keys.find_settings_by_key` finds it by a keyed digest and
compares it in constant time. A key stops working when it is rotated (it is simply not found any
more) and when the app is uninstalled from its portal, or the portal is deleted: those get their
own words, because the PBX's admin must act differently. Portals that need re-authorisation or
payment still accept calls; they are delivered once the admin fixes the portal.
"""

from __future__ import annotations

import re
from typing import cast

from flask import g
from sqlalchemy.exc import OperationalError

from b24app.crypto import InvalidToken, SecretBox
from b24app.db import Database
from b24app.models import PortalStatus
from b24app.pbx.intake import Code, PortalContext, Result
from b24app.portals import currencies, pbx_keys

# RFC 6750 b64token, bounded: a key is "b24pbx_" + 43 url-safe characters
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*) *$", re.IGNORECASE)
MAX_KEY_LENGTH = 200

REFUSED_STATUSES: dict[str, tuple[Code, str]] = {
    PortalStatus.UNINSTALLED: (
        Code.UNINSTALLED,
        "The application was uninstalled from this portal; its PBX key no longer works. "
        "Install the app again in Bitrix24 to get calls through.",
    ),
    PortalStatus.PORTAL_DELETED: (
        Code.PORTAL_DELETED,
        "This portal was deleted or closed in Bitrix24; its PBX key no longer works.",
    ),
}


def bearer_key(header: str | None) -> str | Result:
    """The key in an Authorization header, or why there is none."""
    if not header or not header.strip():
        return Result(
            Code.MISSING_KEY, "Send the portal's PBX key as the header: Authorization: Bearer <key>"
        )
    match = _BEARER.match(header.strip())
    if match is None or len(match.group(1)) > MAX_KEY_LENGTH:
        return Result(
            Code.MALFORMED_KEY,
            "The Authorization header must read: Bearer <the portal's PBX key>.",
        )
    return match.group(1)


def authenticate(db: Database, box: SecretBox, header: str | None) -> PortalContext | Result:
    """The key's portal, with what the intake needs, or a Result saying why not."""
    key = bearer_key(header)
    if isinstance(key, Result):
        return key
    try:
        with db.read() as session:
            settings = pbx_keys.find_settings_by_key(session, box, key)
            if settings is None:
                return _unknown()
            portal = settings.portal
            refused = REFUSED_STATUSES.get(portal.status)
            if refused is not None:
                return Result(*refused)
            return PortalContext(
                portal_id=portal.id,
                member_id=portal.member_id,
                status=portal.status,
                currencies=tuple(currencies.stored_currencies(settings)),
                has_fallback_user=settings.fallback_user_id is not None,
                timezone=settings.timezone or "UTC",
            )
    except InvalidToken:  # stored under an encryption key no longer configured
        return _unknown()
    except OperationalError:
        return Result(Code.STORE_UNAVAILABLE, "The key store is unavailable; send it again.")


def request_portal(db: Database, box: SecretBox, header: str | None) -> PortalContext | Result:
    """`authenticate`, once per request: the rate limiter may need the answer before the view
    does (ratelimit._known_key), and the key is looked up only once (kept in `flask.g`)."""
    if "pbx_portal" not in g:
        g.pbx_portal = authenticate(db, box, header)
    return cast("PortalContext | Result", g.pbx_portal)


def _unknown() -> Result:
    return Result(
        Code.UNKNOWN_KEY,
        "This PBX key is unknown or was revoked (a rotated key stops working at once). "
        "Copy the current key from the app's settings page in Bitrix24.",
    )
