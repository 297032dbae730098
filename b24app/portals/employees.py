"""Is a user an active employee of the portal? What a fallback employee must be: Bitrix24 refuses
a call given to a user who is not one (telephony-external-call-register.md, USER_ID), and every
call of the portal that names no employee would then need the fallback.

Asked with `user.get` (api-reference/user/user-get.md), filtered by ID and ACTIVE, through the
portal's client (its stored token; the `user_brief` scope the app has).
"""

from __future__ import annotations

from b24app.bitrix.client import PortalClient


def is_active_employee(client: PortalClient, user_id: int) -> bool:
    """Whether `user_id` is an active user of the client's portal (one user.get request).
    Raises BitrixError when the portal cannot be asked."""
    rows = client.result(
        "user.get", {"FILTER": {"ID": user_id, "ACTIVE": True}, "select": ["ID", "ACTIVE"]}
    )
    return any(
        isinstance(row, dict)
        and str(row.get("ID")) == str(user_id)
        and row.get("ACTIVE") not in (False, "N")
        for row in rows or []
    )
