"""Who a request to the PBX is for: the portal's originate URL and secret, and the extension
of the employee the PBX should ring.

USER_PHONE_INNER comes from the portal's mapping, else from the employee's profile
(`UF_PHONE_INNER`, user.get; api-reference/user/user-get.md), asked without waiting for the
delivery's throttle (PortalClient.ask) and for at most PROFILE_WAIT seconds: an employee holding
a handset would rather the PBX get the request without the extension (it has USER_ID) than late.
Profiles are remembered for PROFILE_TTL per process.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from b24app.bitrix.errors import BitrixError
from b24app.logs import get_logger
from b24app.models import PortalSettings
from b24app.portals import mapping, originate_secret
from b24app.portals.store import InstallationStore

log = get_logger(__name__)

PROFILE_WAIT = 2.0  # seconds
PROFILE_TTL = 600.0  # seconds
KEEP_FREE = 0.5  # of the portal's burst left to the delivery (PortalClient.ask)

_profiles: dict[tuple[str, int], tuple[str | None, float]] = {}
_profiles_lock = threading.Lock()


def target(store: InstallationStore, portal_id: int) -> tuple[str | None, str]:
    """The portal's originate URL and secret (a secret is made for a portal that has none)."""
    with store.db.write() as session:
        settings = session.scalars(
            select(PortalSettings).where(PortalSettings.portal_id == portal_id)
        ).one()
        return settings.originate_url, originate_secret.reveal(settings, store.box)


def extension(store: InstallationStore, member_id: str, portal_id: int, user_id: int) -> str | None:
    """The employee's extension: the mapping's, else their profile's (see the module's doc)."""
    with store.db.read() as session:
        mapped = mapping.extension_of(session, portal_id, user_id)
    if mapped is not None:
        return mapped
    key, now = (member_id, user_id), time.monotonic()
    with _profiles_lock:
        cached = _profiles.get(key)
    if cached is not None and cached[1] > now:
        return cached[0]
    try:
        answer = store.client(member_id).ask(
            "user.get", {"ID": user_id}, timeout=PROFILE_WAIT, keep_free=KEEP_FREE
        )
    except BitrixError as error:
        log.info("profile not asked", member_id=member_id, error=error.code)
        return None
    rows = answer.get("result") or []
    inner = str(rows[0].get("UF_PHONE_INNER") or "").strip() or None if rows else None
    with _profiles_lock:
        _profiles[key] = (inner, now + PROFILE_TTL)
    return inner
