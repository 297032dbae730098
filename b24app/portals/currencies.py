"""A portal's currencies (crm.currency.list), kept in its settings row.

The settings (which currency the PBX bills in) and the PBX intake (is COST_CURRENCY one of the
portal's?) both need them. The intake must never wait for Bitrix24, so it reads only the stored
list (`stored_currencies`); the install, the settings page, `portals set` and the worker refresh it
(`refresh_currencies`) when it is older than MAX_AGE.
"""

from __future__ import annotations

from datetime import timedelta

from b24app.bitrix.client import PortalClient
from b24app.bitrix.errors import BitrixError
from b24app.models import PortalSettings, utcnow
from b24app.portals.store import InstallationStore, find_portal

MAX_AGE = timedelta(hours=1)


def fetch_currencies(client: PortalClient) -> list[str]:
    """Ask the portal: ISO codes of its currencies, base currency first. Raises BitrixError."""
    rows = client.result("crm.currency.list", {"order": {"SORT": "asc"}})
    ordered = sorted(rows or [], key=lambda r: (r.get("BASE") != "Y", int(r.get("SORT") or 0)))
    return [str(row["CURRENCY"]) for row in ordered if row.get("CURRENCY")]


def refresh_currencies(
    store: InstallationStore, member_id: str, *, force: bool = False
) -> list[str]:
    """The portal's currencies, fetched again if older than MAX_AGE (or `force`); the stored list
    if Bitrix24 cannot be reached and one exists, else the BitrixError."""
    with store.db.read() as session:
        portal = find_portal(session, member_id)
        settings = portal.settings if portal else None
        stored = list(settings.currencies or []) if settings else []
        fresh = bool(
            settings
            and settings.currencies_fetched_at
            and settings.currencies_fetched_at > utcnow() - MAX_AGE
        )
    if stored and fresh and not force:
        return stored
    try:
        codes = fetch_currencies(store.client(member_id))
    except BitrixError:
        if stored:
            return stored
        raise
    with store.db.write() as session:
        portal = find_portal(session, member_id, for_update=True)
        if portal is not None and portal.settings is not None:
            portal.settings.currencies = codes
            portal.settings.currencies_fetched_at = utcnow()
    return codes


def stored_currencies(settings: PortalSettings) -> list[str]:
    """What the intake checks against: no network, possibly empty (then any ISO code passes)."""
    return list(settings.currencies or [])
