"""What the settings page's journal orders and finds calls by, kept on the `calls` row as the
call's events arrive, in the statements the intake runs anyway: the call's INSERT for its first
event (`first_values`), outbox.event_added's UPDATE for a later one (`later_values`).

- `started_at`, an instant: the start's CALL_START_DATE, else when the start arrived; before any
  start, a finish's CALL_START_DATE (a call the PBX reported only at its end); else when the
  call's first event arrived. A CALL_START_DATE without a UTC offset is read in the portal's
  time zone when the event arrives, as the delivery reads it (delivery/params.start_date), and
  kept as that instant: a later change of the zone shows the same moment in the new zone, it
  does not move the call.
- `phone_digits`: the digits of the start's PHONE_NUMBER, else the finish's ("+7 (495)
  123-45-67" → "74951234567"), at most MAX_DIGITS.
- `extensions`: the USER_PHONE_INNER the call's events named (start, ring, answer, finish) as
  "\\n101\\n102\\n" (extensions hold no control characters: pbx/schemas.text), up to
  MAX_EXTENSIONS characters; an extension named by two events may stand twice.

The journal pages by the index (portal_id, started_at, id) and finds PBX_CALL_ID by the unique
(portal_id, idempotency_key); a number or an extension is matched within the portal's calls
(settings_page/journal.py `matching` says what each costs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, exists, func, literal
from sqlalchemy.sql.elements import ColumnElement

from b24app.models import Call, CallEvent, EventKind

MAX_DIGITS = 32
MAX_EXTENSIONS = 2000  # characters: a ring group of a hundred extensions fits
SEARCH_DIGITS = 10  # a longer number is looked for by its last 10 digits (8 495 … finds +7 495 …)
_NOT_DIGITS = re.compile(r"[^0-9]")


def digits(value: Any) -> str:
    """The ASCII digits of `value`, at most MAX_DIGITS: "+7 (495) 123-45-67" → "74951234567"."""
    return _NOT_DIGITS.sub("", str(value or ""))[:MAX_DIGITS]


def search_digits(query: str) -> str:
    """What a number typed into the journal's search is looked for by: its digits, the last
    SEARCH_DIGITS of a longer one (a country or trunk prefix written differently still finds
    the call); "" when it has none."""
    return _NOT_DIGITS.sub("", query)[-SEARCH_DIGITS:]


def instant(value: Any, tz: ZoneInfo) -> datetime | None:
    """CALL_START_DATE as an instant (without an offset: in `tz`), None when absent or not
    ISO-8601."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class Facts:
    """What one event says of its call's start, number and extensions."""

    kind: str
    started_at: datetime | None  # its CALL_START_DATE, None when it has none
    phone_digits: str | None
    extensions: tuple[str, ...]  # each once, in the order named


def facts_of(kind: str, request: Mapping[str, Any], tz: ZoneInfo) -> Facts:
    """The facts of an event of `kind` (models.EventKind) whose fields are `request`; `tz` the
    portal's time zone now."""
    named = request.get("USER_PHONE_INNER")
    values = named if isinstance(named, list) else [named]
    extensions = tuple(dict.fromkeys(str(one) for one in values if one not in (None, "")))
    return Facts(
        kind=kind,
        started_at=instant(request.get("CALL_START_DATE"), tz),
        phone_digits=digits(request.get("PHONE_NUMBER")) or None,
        extensions=extensions,
    )


def first_values(facts: Facts, now: datetime) -> dict[str, Any]:
    """The call row's three columns when this event is the call's first (`now`: its arrival)."""
    return {
        "started_at": facts.started_at or now,
        "phone_digits": facts.phone_digits,
        "extensions": _joined(facts.extensions, "\n"),
    }


def later_values(facts: Facts, now: datetime) -> dict[str, Any]:
    """SET clauses for the call's row when this event joins the call (outbox.event_added's
    UPDATE), {} when it changes nothing: a start sets the start (its arrival when it has no
    CALL_START_DATE) and the number; a finish only what no start set (its CALL_START_DATE when
    the call has no start, its number when the call has none); every event adds the
    extensions it names while they fit."""
    values: dict[str, Any] = {}
    if facts.kind == EventKind.START:
        values["started_at"] = facts.started_at or now
        if facts.phone_digits:
            values["phone_digits"] = facts.phone_digits
    elif facts.kind == EventKind.FINISH:
        if facts.started_at is not None:
            values["started_at"] = _unless_started(facts.started_at)
        if facts.phone_digits:
            values["phone_digits"] = func.coalesce(Call.phone_digits, facts.phone_digits)
    added = _joined(facts.extensions, "")
    if added:
        stored = func.coalesce(Call.extensions, "\n")
        fits = func.length(stored) + len(added) <= MAX_EXTENSIONS
        values["extensions"] = case((fits, stored + added), else_=Call.extensions)
    return values


def _joined(extensions: tuple[str, ...], lead: str) -> str | None:
    """ "\\n101\\n102\\n" (lead "\\n") or "101\\n102\\n" (lead ""), cut to MAX_EXTENSIONS at an
    extension's end; None for none."""
    text = lead
    for one in extensions:
        if len(text) + len(one) + 1 > MAX_EXTENSIONS:
            break
        text += f"{one}\n"
    return text if text.strip("\n") else None


def _unless_started(started: datetime) -> ColumnElement[Any]:
    """The finish's start, unless the call has a start event (whose time stands)."""
    has_start = exists().where(CallEvent.call_id == Call.id, CallEvent.kind == EventKind.START)
    return case((has_start, Call.started_at), else_=literal(started, Call.started_at.type))
