"""Calls stored as the PBX intake stores them, for tests that start at the outbox: a `calls` row
and its events (models.Call, models.CallEvent)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app.delivery import call_index
from b24app.delivery.lifecycle import dedupe_key
from b24app.models import Call, CallEvent, PortalSettings, utcnow
from b24app.portals.settings import zone


def add_call(
    session: Session,
    portal_id: int,
    events: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    key: str | None = None,
) -> Call:
    """A queued call with these (kind, request) events in this order; keyed by the first
    event's PBX_CALL_ID, else "call:" + its CALL_ID (as the intake keys them); its start,
    number and extensions as the intake works them out from the first event (call_index, in the
    portal's time zone now)."""
    first = events[0][1]
    key = key or str(first.get("PBX_CALL_ID") or f"call:{first['CALL_ID']}")
    timezone = session.scalar(
        select(PortalSettings.timezone).where(PortalSettings.portal_id == portal_id)
    )
    facts = call_index.facts_of(events[0][0], first, zone(timezone or "UTC"))
    call = Call(
        portal_id=portal_id,
        idempotency_key=key,
        events_version=len(events),
        **call_index.first_values(facts, utcnow()),
    )
    session.add(call)
    session.flush()
    for kind, request in events:
        event = CallEvent(
            call_id=call.id,
            kind=kind,
            dedupe_key=dedupe_key(kind, request),
            request=dict(request),
        )
        session.add(event)
    session.flush()
    return call


def add_finish(session: Session, portal_id: int, request: Mapping[str, Any]) -> Call:
    """A call the PBX reported only at its end (one finish event)."""
    return add_call(session, portal_id, [("finish", request)])
