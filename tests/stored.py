"""Calls stored as the PBX intake stores them, for tests that start at the outbox: a `calls` row
and its events (models.Call, models.CallEvent)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from b24app.delivery.lifecycle import dedupe_key
from b24app.models import Call, CallEvent


def add_call(
    session: Session,
    portal_id: int,
    events: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    key: str | None = None,
) -> Call:
    """A queued call with these (kind, request) events in this order; keyed by the first
    event's PBX_CALL_ID, else "call:" + its CALL_ID (as the intake keys them)."""
    first = events[0][1]
    key = key or str(first.get("PBX_CALL_ID") or f"call:{first['CALL_ID']}")
    call = Call(portal_id=portal_id, idempotency_key=key, events_version=len(events))
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
