"""What the intake stored of a call's events, for tests anywhere (calls have no `request` of their
own since migration 0006: each event keeps what the PBX sent)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import select

from b24app.db import get_db
from b24app.models import Call, CallEvent, CallRecording


def stored_events(app: Flask, public_id: str) -> list[CallEvent]:
    """The call's events in arrival order."""
    with app.app_context(), get_db().read() as session:
        return list(
            session.scalars(
                select(CallEvent)
                .join(Call, Call.id == CallEvent.call_id)
                .where(Call.public_id == public_id)
                .order_by(CallEvent.id)
            )
        )


def event_request(app: Flask, public_id: str, kind: str = "finish") -> dict[str, Any]:
    """The stored request of the call's one event of `kind` (its finish by default)."""
    [event] = [e for e in stored_events(app, public_id) if e.kind == kind]
    return event.request


def stored_recording(app: Flask, public_id: str) -> CallRecording | None:
    """The call's recording row, if it has one."""
    with app.app_context(), get_db().read() as session:
        return session.scalars(
            select(CallRecording)
            .join(CallEvent, CallEvent.id == CallRecording.event_id)
            .join(Call, Call.id == CallEvent.call_id)
            .where(Call.public_id == public_id)
        ).one_or_none()
