"""Tests of the PBX API (b24app/pbx/). Helpers shared by its test modules."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Flask
from sqlalchemy import select

from b24app.db import get_db
from b24app.models import Call, Portal, PortalStatus
from b24app.portals import pbx_keys
from b24app.wiring import current_store
from tests.call_events import event_request
from tests.conftest import TEST_CLIENT_ID

START = "/pbx/v1/calls/start"
RING = "/pbx/v1/calls/ring"
ANSWER = "/pbx/v1/calls/answer"
FINISH = "/pbx/v1/calls/finish"
RECORD = "/pbx/v1/calls/record"

# A complete call Bitrix24 never saw (registered, then finished, by the delivery).
UNREGISTERED: dict[str, Any] = {
    "PBX_CALL_ID": "1709884800.42",
    "PHONE_NUMBER": "+15551234567",
    "TYPE": 2,
    "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
    "USER_PHONE_INNER": "101",
    "DURATION": 42,
    "STATUS_CODE": "ANSWER",
}
# A call the PBX registered itself.
REGISTERED: dict[str, Any] = {
    "CALL_ID": "externalCall.716f1cb73def9700a23842adf9c4c568.1773130779",
    "USER_ID": 1269,
    "DURATION": 95,
    "STATUS_CODE": "200",
    "VOTE": 5,
    "ADD_TO_CHAT": 0,
}


def make_portal(
    app: Flask,
    member_id: str | None = None,
    *,
    status: PortalStatus = PortalStatus.ACTIVE,
    currencies: list[str] | None = None,
    fallback_user_id: int | None = None,
) -> str:
    """A portal row as an install leaves it (no tokens needed: the intake never calls
    Bitrix24). Returns its PBX key."""
    member_id = member_id or uuid.uuid4().hex
    with app.app_context(), get_db().write() as session:
        portal = Portal(
            member_id=member_id,
            domain=f"{member_id[:20]}.bitrix24.com",
            client_endpoint=f"https://{member_id[:20]}.bitrix24.com/rest/",
            server_endpoint="https://oauth.bitrix.info/rest/",
            client_id=TEST_CLIENT_ID,
            status=status,
        )
        portal.settings = current_store().new_settings()
        portal.settings.currencies = currencies
        portal.settings.fallback_user_id = fallback_user_id
        session.add(portal)
        session.flush()
        return pbx_keys.reveal(portal.settings, current_store().box)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def stored_calls(app: Flask) -> list[Call]:
    with app.app_context(), get_db().read() as session:
        return list(session.scalars(select(Call).order_by(Call.id)))


def stored_call(app: Flask, public_id: str) -> Call:
    with app.app_context(), get_db().read() as session:
        return session.scalars(select(Call).where(Call.public_id == public_id)).one()


def finish_request(app: Flask, public_id: str) -> dict[str, Any]:
    """The stored request of the call's finish."""
    return event_request(app, public_id, "finish")
