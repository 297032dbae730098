"""Accepting ONEXTERNALCALLSTART and ONEXTERNALCALLBACKSTART (at `/events`, install/events.py).

An event is believed only with the portal's `application_token`, compared in constant time
(api-reference/events/safe-event-handlers.md): the event's `auth` also carries the clicking
user's tokens, but any user of the portal has those; we keep none of them. It is stored, then
answered, so Bitrix24 gets its `200` in one short transaction (tutorials/telephony: "After that,
Bitrix24 treats the event as delivered"); the worker sends it on.

Once per request: click-to-call by Bitrix24's `CALL_ID` (Bitrix24 registered the call; the same
CALL_ID is the same click however often the event comes), a callback by a digest of its data and
`ts` (a callback has no id of its own; the event queue's redelivery carries the same `ts`).
Pages: api-reference/telephony/events/on-external-call-start.md, on-external-call-back-start.md.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from b24app.db import insert_for
from b24app.models import Origination, OriginationState
from b24app.portal_status import GONE
from b24app.portals.store import InstallationStore, find_portal
from b24app.portals.verification import same_token

# event name (upper case, as Bitrix24 sends it) -> the webhook's `type`
KINDS = {"ONEXTERNALCALLSTART": "call.start", "ONEXTERNALCALLBACKSTART": "callback.start"}
EVENTS = tuple(KINDS)

# How long a request is worth sending: an employee holding a handset gives up within a minute;
# a client who asked for a callback waits longer, and a callback ten minutes late still helps.
GIVE_UP_AFTER = {"call.start": timedelta(seconds=60), "callback.start": timedelta(minutes=10)}

# Bitrix24's `data` fields we keep (all strings in the event), with their longest sane length
FIELDS = {
    "CALL_ID": 128,
    "PHONE_NUMBER": 64,
    "PHONE_NUMBER_INTERNATIONAL": 64,
    "EXTENSION": 32,
    "USER_ID": 16,
    "CALL_LIST_ID": 16,
    "LINE_NUMBER": 64,
    "IS_MOBILE": 1,
    "CRM_ENTITY_TYPE": 32,
    "CRM_ENTITY_ID": 16,
    "TEXT": 2000,
    "VOICE": 64,
}
REQUIRED = {"call.start": ("CALL_ID", "PHONE_NUMBER"), "callback.start": ("PHONE_NUMBER",)}
TOO_LATE = "Bitrix24 sent it too long ago to ring anyone now; not sent"
NUMBERS = ("USER_ID", "CALL_LIST_ID", "IS_MOBILE", "CRM_ENTITY_ID")  # ids: ASCII digits only


@dataclass(frozen=True)
class Accepted:
    """How an event ended: `status` is "accepted", "duplicate" (stored before: nothing new),
    "refused" (not the portal's application_token, or the portal is gone) or "invalid"
    (`field` and `reason` say what is wrong)."""

    status: str
    field: str | None = None
    reason: str | None = None


def accept(
    store: InstallationStore,
    event: str,
    auth: Mapping[str, Any],
    data: object,
    ts: object,
    now: datetime,
) -> Accepted:
    """Store one click-to-call or callback event (`event` in EVENTS; `auth` and `data` as
    unflattened from the form) for sending; see Accepted. `now` is an aware UTC datetime."""
    kind = KINDS[event]
    member_id = str(auth.get("member_id") or "")[:64]
    with store.db.read() as session:
        portal = find_portal(session, member_id)
        if portal is None or portal.status in GONE:
            return Accepted("refused", reason="unknown portal")
        portal_id = portal.id
        stored_token = store.application_token(portal)
    if not same_token(stored_token, str(auth.get("application_token") or "")):
        return Accepted("refused", reason="application_token does not match")
    fields, problem = _fields(kind, data)
    if problem is not None:
        return Accepted("invalid", field=problem[0], reason=problem[1])
    give_up_at = sent_at(ts, now) + GIVE_UP_AFTER[kind]
    key = _dedupe_key(kind, fields, ts)
    inserted = _insert(store, portal_id, kind, key, fields, now, give_up_at)
    return Accepted("accepted" if inserted else "duplicate")


def _fields(kind: str, data: object) -> tuple[dict[str, str], tuple[str, str] | None]:
    """The known fields of `data` as trimmed strings, or the first field that is wrong."""
    if not isinstance(data, dict):
        return {}, ("data", "must be an object of the event's fields")
    fields: dict[str, str] = {}
    for name, longest in FIELDS.items():
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str | int):
            return {}, (name, "must be a string")
        text = str(value).strip()
        if not text:
            continue
        if len(text) > longest or not text.isprintable():
            return {}, (name, f"must be at most {longest} printable characters")
        if name in NUMBERS and not (text.isascii() and text.isdigit()):
            return {}, (name, "must be a whole number (digits 0-9)")
        fields[name] = text
    for name in REQUIRED[kind]:
        if name not in fields:
            return {}, (name, "is required")
    return fields, None


def sent_at(ts: object, now: datetime) -> datetime:
    """When Bitrix24's event queue sent the event (`ts`, Unix seconds), if that is a time in
    the last day up to `now`; else `now`. A request's give-up time counts from it: an event that
    spent a minute in Bitrix24's queue has left its employee waiting that long already."""
    text = str(ts or "").strip()
    if not (text.isascii() and text.isdigit()):
        return now
    when = datetime.fromtimestamp(int(text), UTC)
    return when if now - timedelta(days=1) <= when <= now else now


def _dedupe_key(kind: str, fields: dict[str, str], ts: object) -> str:
    if kind == "call.start":
        return fields["CALL_ID"]
    source = json.dumps([fields, str(ts or "")], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(source.encode()).hexdigest()


def _insert(
    store: InstallationStore,
    portal_id: int,
    kind: str,
    dedupe_key: str,
    fields: dict[str, str],
    now: datetime,
    give_up_at: datetime,
) -> bool:
    """INSERT … ON CONFLICT DO NOTHING: the same event twice, even at once, makes one row. A
    request already past `give_up_at` is stored failed (the journal shows it arrived too late)."""
    late = give_up_at <= now
    with store.db.write() as session:
        result = session.execute(
            insert_for(Origination, sqlite_db=store.db.is_sqlite)
            .values(
                portal_id=portal_id,
                kind=kind,
                dedupe_key=dedupe_key,
                webhook_id=f"msg_{uuid.uuid4().hex}",
                payload=fields,
                state=OriginationState.FAILED if late else OriginationState.QUEUED,
                error=TOO_LATE if late else None,
                attempts=0,
                next_attempt_at=now,
                give_up_at=give_up_at,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["portal_id", "kind", "dedupe_key"])
            .returning(Origination.id)
        )
        return result.scalar_one_or_none() is not None
