"""The call journal: a portal's latest calls as the admin sees them, and "deliver again".

"Deliver again" (one call) and "Deliver all failed again" put failed calls back in the outbox
with delivery/outbox.py's `requeue`, which says what changes: queued, due now, attempts counted
anew, each call at most once; a call that may have reached Bitrix24 is looked up in its
statistics before it is sent again, so it is never finished twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from b24app.delivery import outbox, portal_health
from b24app.delivery.params import ParamsError, user_params
from b24app.models import Call, CallState
from b24app.portals.settings import Preferences
from b24app.settings_page import messages

FILTERS = ("all", "failed", "today")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_PUBLIC_ID = re.compile(r"[0-9a-f]{32}")  # models.new_public_id
ANSWER_FIELDS = (
    "CALL_ID",
    "PORTAL_USER_ID",
    "CALL_DURATION",
    "CALL_FAILED_CODE",
    "COST",
    "COST_CURRENCY",
    "CRM_ENTITY_TYPE",
    "CRM_ENTITY_ID",
)


def local_time(moment: datetime | None, tz: ZoneInfo) -> str | None:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if moment else None


def latest(
    session: Session,
    portal_id: int,
    *,
    show: str,
    tz: ZoneInfo,
    now: datetime,
    limit: int = DEFAULT_LIMIT,
) -> list[Call]:
    """The newest calls first; `failed` only failed ones, `today` those since local midnight."""
    query = select(Call).where(Call.portal_id == portal_id)
    if show == "failed":
        query = query.where(Call.state == CallState.FAILED)
    elif show == "today":
        midnight = now.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
        query = query.where(Call.created_at >= midnight)
    limit = max(1, min(limit, MAX_LIMIT))
    return list(
        session.scalars(query.order_by(Call.created_at.desc(), Call.id.desc()).limit(limit))
    )


def employee_of(call: Call, prefs: Preferences, lookup: Callable[[str], int | None]) -> int | None:
    """Who the call went to (Bitrix24's PORTAL_USER_ID once delivered) or, until then, who it
    goes to with today's settings: the delivery's own resolution order (params.py)."""
    if call.result and call.result.get("PORTAL_USER_ID"):
        try:
            return int(call.result["PORTAL_USER_ID"])
        except (TypeError, ValueError):
            return None
    try:
        resolved = user_params(call.request or {}, prefs, lookup)
    except (ParamsError, TypeError, ValueError):
        return None
    user_id = resolved.get("USER_ID")
    return int(user_id) if user_id else None


def describe(
    call: Call, *, tz: ZoneInfo, prefs: Preferences, lookup: Callable[[str], int | None]
) -> dict[str, Any]:
    """One journal row as the page shows it."""
    request: Mapping[str, Any] = call.request or {}
    status_code = str(request.get("STATUS_CODE") or "")
    return {
        "id": call.public_id,
        "created_at": local_time(call.created_at, tz),
        "phone_number": request.get("PHONE_NUMBER") or "",
        "extension": request.get("USER_PHONE_INNER") or "",
        "employee_id": employee_of(call, prefs, lookup),
        "duration": request.get("DURATION"),
        "status_code": status_code,
        "status_text": str(messages.STATUS_CODES.get(status_code, "")),
        "pbx_call_id": request.get("PBX_CALL_ID") or request.get("CALL_ID") or "",
        "state": call.state,
        "state_text": str(messages.STATES.get(call.state, call.state)),
        "outcome": messages.outcome(
            call.state, call.error_code, call.error, local_time(call.next_attempt_at, tz)
        ),
        "error": call.error or "",
        "attempts": call.attempts,
        "delivered_at": local_time(call.delivered_at, tz),
        "answer": {k: call.result[k] for k in ANSWER_FIELDS if call.result and k in call.result},
        "can_retry": call.state == CallState.FAILED,
    }


def requeue(session: Session, portal_id: int, public_id: str, *, now: datetime) -> str:
    """Put one failed call back in the outbox; "requeued", "not_found" or "not_failed"."""
    if not _PUBLIC_ID.fullmatch(public_id):  # a NUL in an id is a PostgreSQL error, not a miss
        return "not_found"
    if outbox.requeue(session, portal_id=portal_id, public_ids=[public_id], now=now):
        return "requeued"
    exists = session.scalar(
        select(Call.id).where(Call.portal_id == portal_id, Call.public_id == public_id)
    )
    return "not_found" if exists is None else "not_failed"


def requeue_failed(session: Session, portal_id: int, *, now: datetime) -> int:
    """Put every failed call of the portal back in the outbox; how many went."""
    return len(outbox.requeue(session, portal_id=portal_id, now=now))


@dataclass(frozen=True)
class Health:
    status: str
    last_delivered_at: str | None
    queued: int
    failed_24h: int
    paused_since: str | None = None  # delivery paused after an outage (portal_health.py)
    paused_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        shown = {
            "status": self.status,
            "status_label": str(messages.PORTAL_LABELS.get(self.status, self.status)),
            "status_text": str(messages.PORTAL_STATES.get(self.status, self.status)),
            "action": str(messages.PORTAL_ACTIONS.get(self.status, "")),
        }
        if self.paused_since is not None and self.status == "active":
            shown = {
                "status": "paused",
                "status_label": str(messages.PAUSED_LABEL),
                "status_text": str(messages.PAUSED_TEXT)
                % {"since": self.paused_since, "reason": self.paused_reason or "—"},
                "action": str(messages.PAUSED_ACTION) % {"count": self.queued},
            }
        return {
            **shown,
            "can_reauthorize": self.status in ("needs_reauth", "access_denied"),
            "last_delivered_at": self.last_delivered_at,
            "queued": self.queued,
            "failed_24h": self.failed_24h,
        }


def health(session: Session, portal_id: int, status: str, *, tz: ZoneInfo, now: datetime) -> Health:
    """Token state, the last delivery, and how many calls wait (queue depth)."""
    last = session.scalar(select(func.max(Call.delivered_at)).where(Call.portal_id == portal_id))
    waiting = session.scalar(
        select(func.count())
        .select_from(Call)
        .where(
            Call.portal_id == portal_id,
            Call.state.in_([CallState.QUEUED, CallState.DELIVERING]),
        )
    )
    failed = session.scalar(
        select(func.count())
        .select_from(Call)
        .where(
            Call.portal_id == portal_id,
            Call.state == CallState.FAILED,
            Call.updated_at >= now - timedelta(hours=24),
        )
    )
    pause = portal_health.read(session, portal_id)
    return Health(
        status,
        local_time(last, tz),
        int(waiting or 0),
        int(failed or 0),
        paused_since=local_time(pause.since, tz) if pause else None,
        paused_reason=pause.reason_code if pause else None,
    )
