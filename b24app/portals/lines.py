"""The portal's external lines (telephony.externalLine.get / .add) and the ones b24app knows.

Bitrix24 shows a call's line in reports and Sales Intelligence only for lines the app added
(api-reference/telephony/telephony-external-line-add.md). The settings page lists them
(`listed`) and adds one (`add`); delivery adds a LINE_NUMBER first seen on a call. The
`external_lines` rows remember which numbers are known to exist, so each is added once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from b24app.bitrix.errors import BitrixError
from b24app.db import insert_for
from b24app.models import ExternalLine, Portal
from b24app.portals.store import InstallationStore

MAX_NUMBER = 64  # external_lines.number
MAX_NAME = 255
ALREADY_EXISTS = "Line already exists"  # externalLine.add's error for a known number
LIST_TTL = 30.0  # seconds a listing is answered from this process's memory
LIST_WAIT = 5.0  # seconds the page waits for Bitrix24's listing
KEEP_FREE = 0.5  # of the portal's burst left to the delivery

_listed: dict[str, tuple[list[Line], float]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class Line:
    """One line as telephony.externalLine.get lists it."""

    NUMBER: str
    NAME: str
    CRM_AUTO_CREATE: str  # "Y" or "N"


class LineError(ValueError):
    """A line number or name b24app refuses; `field` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_number(value: str) -> str:
    """A line number as Bitrix24 takes it: 1–64 visible characters, trimmed; else LineError."""
    number = value.strip()
    if not number or len(number) > MAX_NUMBER or not number.isprintable():
        raise LineError("NUMBER", f"must be 1–{MAX_NUMBER} visible characters")
    return number


def listed(store: InstallationStore, member_id: str) -> list[Line]:
    """The app's lines on the portal, as Bitrix24 listed them at most LIST_TTL seconds ago
    (BitrixError if it cannot say now); the numbers are remembered as known. Asked with
    PortalClient.ask: a settings page, however often it is reloaded, never waits for or takes
    the delivery's request slots (without a spare slot: RateLimited NO_SLOT)."""
    now = time.monotonic()
    with _lock:
        cached = _listed.get(member_id)
    if cached is not None and cached[1] > now:
        return cached[0]
    answer = store.client(member_id).ask(
        "telephony.externalLine.get", timeout=LIST_WAIT, keep_free=KEEP_FREE
    )
    rows = answer.get("result") or []
    lines = [
        Line(
            NUMBER=str(row.get("NUMBER") or ""),
            NAME=str(row.get("NAME") or ""),
            CRM_AUTO_CREATE=str(row.get("CRM_AUTO_CREATE") or "Y"),
        )
        for row in rows
        if isinstance(row, dict) and row.get("NUMBER")
    ]
    remember(store, member_id, [(line.NUMBER, line.NAME) for line in lines])
    with _lock:
        _listed[member_id] = (lines, now + LIST_TTL)
    return lines


def add(store: InstallationStore, member_id: str, number: str, name: str = "") -> bool:
    """Add a line on the portal (NUMBER, NAME); True if added, False if Bitrix24 already had
    it. LineError for a bad number or name, BitrixError when Bitrix24 refuses or is not reached."""
    number = check_number(number)
    name = name.strip()
    if len(name) > MAX_NAME:
        raise LineError("NAME", f"must be at most {MAX_NAME} characters")
    params: dict[str, Any] = {"NUMBER": number}
    if name:
        params["NAME"] = name
    try:
        store.client(member_id).call("telephony.externalLine.add", params)
        added = True
    except BitrixError as error:
        if ALREADY_EXISTS.lower() not in str(error).lower():
            raise
        added = False
    remember(store, member_id, [(number, name or None)])
    with _lock:
        _listed.pop(member_id, None)  # the next listing shows it
    return added


def known(session: Session, portal_id: int) -> set[str]:
    """The line numbers known to exist on the portal."""
    return set(
        session.scalars(select(ExternalLine.number).where(ExternalLine.portal_id == portal_id))
    )


def remember(store: InstallationStore, member_id: str, lines: list[tuple[str, str | None]]) -> None:
    """Keep (number, name) pairs as known lines of the portal; numbers already known stay
    (INSERT … ON CONFLICT DO NOTHING: two workers seeing a new number at once make one row)."""
    if not lines:
        return
    with store.db.write() as session:
        portal_id = session.scalar(select(Portal.id).where(Portal.member_id == member_id))
        if portal_id is None:
            return
        session.execute(
            insert_for(ExternalLine, sqlite_db=store.db.is_sqlite)
            .values(
                [{"portal_id": portal_id, "number": n, "name": m} for n, m in dict(lines).items()]
            )
            .on_conflict_do_nothing(index_elements=["portal_id", "number"])
        )
