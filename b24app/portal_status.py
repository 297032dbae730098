"""The states a portal can be in, what each means for its calls, and who can change it.

One home for "is the portal gone?" and "does it come back by itself?": the client
(bitrix/client.py), the outbox (delivery/outbox.py) and the settings page ask here. No SQL: the
client imports it, and `models.Portal.status` stores its values.
"""

from __future__ import annotations

import enum


class PortalStatus(enum.StrEnum):
    """What state a portal is in, and so what its admin must do. Documented in the README."""

    ACTIVE = "active"  # installed, tokens work
    NEEDS_REAUTH = "needs_reauth"  # refresh token gone or rejected: open the app or re-authorise
    PAYMENT_REQUIRED = "payment_required"  # the app's subscription on that portal has lapsed
    ACCESS_DENIED = "access_denied"  # REST unavailable for the portal's plan or user
    PORTAL_DELETED = "portal_deleted"  # the portal no longer exists / is closed
    UNINSTALLED = "uninstalled"  # the app was removed; tokens erased, history kept

    @property
    def meaning(self) -> str:
        """What the state means and what the admin does about it, in plain English: the reason
        a call waits or fails, and what logs and the CLI say. (The settings page shows the same
        in the portal's language: settings_page/messages.py, one entry per status.)"""
        return MEANINGS[self]

    @property
    def gone(self) -> bool:
        """The portal will never take calls again: its calls fail, its page is closed."""
        return self in GONE

    @property
    def revivable(self) -> bool:
        """The portal leaves this state by itself when its admin pays or its plan changes, so
        a probe may ask (delivery/portal_health.py)."""
        return self in REVIVABLE


GONE = (PortalStatus.UNINSTALLED, PortalStatus.PORTAL_DELETED)
REVIVABLE = (PortalStatus.PAYMENT_REQUIRED, PortalStatus.ACCESS_DENIED)

MEANINGS: dict[PortalStatus, str] = {
    PortalStatus.ACTIVE: "The application can finish calls on this portal.",
    PortalStatus.NEEDS_REAUTH: (
        "The application's access has lapsed; the portal's admin must open the application or "
        "re-authorise it."
    ),
    PortalStatus.PAYMENT_REQUIRED: (
        "The application's paid period has expired on this portal; renew the payment."
    ),
    PortalStatus.ACCESS_DENIED: "REST API access is denied for this portal (plan or permissions).",
    PortalStatus.PORTAL_DELETED: "The portal was deleted or closed.",
    PortalStatus.UNINSTALLED: "The application was uninstalled from the portal.",
}
