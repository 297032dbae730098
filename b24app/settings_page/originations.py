"""Requests to the portal's PBX: click-to-call and callback webhooks as the admin sees them.

Bitrix24 asks for a call (ONEXTERNALCALLSTART: an employee clicked a number;
ONEXTERNALCALLBACKSTART: a client filled in a callback form; api-reference/telephony/events/),
and b24app sends each to the portal's PBX as a signed webhook (models.Origination; PRODUCT.md
"From Bitrix24 to the PBX"). This block of the page shows the latest of them: when, which kind,
the number, the employee, and what the PBX answered (its HTTP status), or why it was not
delivered. The answer is always the PBX's: Bitrix24 plays no part in it.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from b24app.models import Origination
from b24app.originate import outbox
from b24app.settings_page import messages
from b24app.settings_page.journal import local_time

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_BODY = 500  # characters of the PBX's answer shown


def recent(session: Session, portal_id: int, limit: int = DEFAULT_LIMIT) -> list[Origination]:
    """The portal's newest requests first (originate/outbox.py `recent`), at most `limit`
    (1–MAX_LIMIT)."""
    return outbox.recent(session, portal_id, max(1, min(limit, MAX_LIMIT)))


def _int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def describe(row: Origination, *, tz: ZoneInfo) -> dict[str, Any]:
    """One request as the page shows it: times in the portal's zone `tz`; the fields are
    Bitrix24's own (`payload`: PHONE_NUMBER, USER_ID, USER_PHONE_INNER, CALL_ID, TEXT …)."""
    payload = row.payload if isinstance(row.payload, dict) else {}
    delivered_at = local_time(row.delivered_at, tz)
    return {
        "id": row.id,
        "created_at": local_time(row.created_at, tz),
        "kind": row.kind,
        "kind_text": str(messages.ORIGINATION_KINDS.get(row.kind, row.kind)),
        "phone_number": str(payload.get("PHONE_NUMBER") or ""),
        "user_id": _int(payload.get("USER_ID")),
        "extension": str(payload.get("USER_PHONE_INNER") or ""),
        "line_number": str(payload.get("LINE_NUMBER") or ""),
        "call_id": str(payload.get("CALL_ID") or ""),
        "text": str(payload.get("TEXT") or ""),
        "state": row.state,
        "state_text": str(messages.ORIGINATION_STATES.get(row.state, row.state)),
        "outcome": messages.origination_outcome(
            row.state, row.response_status, row.error, row.attempts, delivered_at
        ),
        "attempts": row.attempts,
        "response_status": row.response_status,
        "response_body": (row.response_body or "")[:MAX_BODY],
        "delivered_at": delivered_at,
    }
