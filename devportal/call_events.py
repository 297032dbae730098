"""What Bitrix24 does when an employee clicks a phone number, or a client orders a callback.

Click-to-call (api-reference/telephony/events/on-external-call-start.md; tutorials/telephony
§5; digest §5.7): the employee clicks a number in the CRM; the portal's telephony app for
outgoing calls ("Default Number for Outgoing Calls") gets it. Bitrix24 **registers the call
itself** — an outgoing call (TYPE 1) of the clicking employee, on the app's line, bound to the
CRM entity clicked, with a CALL_ID like `externalCall.<32 hex>.<unix time>` and no
EXTERNAL_CALL_ID — so that the app later finishes that CALL_ID
(telephony.externalCall.finish, show, hide, attachRecord work on it as on any call the app
registered). Then ONEXTERNALCALLSTART goes to every handler the app bound to it, through the
event queue (event_queue.py: asynchronously, once). `data` (every value a string), in the
page's order: PHONE_NUMBER, PHONE_NUMBER_INTERNATIONAL, EXTENSION, USER_ID, CALL_LIST_ID,
LINE_NUMBER, IS_MOBILE, CALL_ID, CRM_ENTITY_TYPE, CRM_ENTITY_ID; `auth` carries the clicking
employee's tokens and the app's application_token.

Callback (on-external-call-back-start.md; digest §5.8): a client fills in a CRM callback form
whose callback line is the app's. ONEXTERNALCALLBACKSTART carries PHONE_NUMBER, TEXT (to be
spoken to the employee first), VOICE, CRM_ENTITY_TYPE, CRM_ENTITY_ID, LINE_NUMBER; no CALL_ID
and no USER_ID, and nothing is registered (the app registers the call itself, TYPE 4).

Nothing is sent before installFinish() ("Events will not be sent to the application until the
installation is complete", both pages), nor when the app bound no handler for the event: then
nothing is registered either, and the refusal says why (CallEventRefused).

Chosen here, not documented [INFERRED]:
- The app for outgoing calls and callbacks is the one asked for (`client_id`), else the first
  app installed on the portal whose scope has `telephony`, in the order of installation (one
  whose installation is finished before one whose is not).
- LINE_NUMBER is that app's first external line (telephony.externalLine.add), "" without one.
- The clicking employee's call card is shown to them at once (`shown_to`), as when a call starts.
- PHONE_NUMBER is the number as the CRM holds it; PHONE_NUMBER_INTERNATIONAL its E.164 form as a
  Russian portal formats it (a leading 8 of an 11-digit number becomes +7); EXTENSION is "";
  CALL_LIST_ID "0" and IS_MOBILE "0" unless given.
- A callback's CRM entity is the contact with that number, else a new lead (a CRM form makes
  one for an unknown client); its `auth` is the tokens of the shell's signed-in user, the
  person filling in the form there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from devportal import event_queue
from devportal.crm_data import CrmEntity
from devportal.install_driver import InstallDriver, bindings
from devportal.methods.common import granted_scopes
from devportal.methods.telephony import call_start_date, new_call_id
from devportal.state import DevPortal, DevState, Installation

CALL_START = "ONEXTERNALCALLSTART"
CALLBACK_START = "ONEXTERNALCALLBACKSTART"
OUTGOING = 1  # the register page's TYPE of an outgoing call
DEFAULT_VOICE = "ruinternalfemale"  # the callback page's example VOICE
TEXT_LENGTH = 1000  # characters of a callback's TEXT kept [INFERRED]


class CallEventRefused(Exception):
    """Why the portal sends nothing: `code` is one of no_app, not_installed, not_bound,
    no_user, no_contact, bad_phone; `event` the event that was not sent."""

    def __init__(self, code: str, event: str, detail: str = "") -> None:
        super().__init__(f"{event}: {code}{f' ({detail})' if detail else ''}")
        self.code = code
        self.event = event
        self.detail = detail


@dataclass(frozen=True)
class Sent:
    """An event on its way: the app, the registered call (click-to-call), the `data` sent and
    the queue's DELIVERY records (event_queue.py), one per bound handler."""

    event: str
    client_id: str
    call_id: str | None
    data: dict[str, str]
    deliveries: list[dict[str, Any]] = field(default_factory=list)


def click_to_call(
    state: DevState,
    portal: DevPortal,
    *,
    user_id: int,
    contact_id: int | None = None,
    phone: str | None = None,
    client_id: str | None = None,
    call_list_id: int = 0,
    is_mobile: bool = False,
) -> Sent:
    """The employee `user_id` clicks the number of CRM contact `contact_id` (or a bare `phone`):
    the call is registered and ONEXTERNALCALLSTART queued. Raises CallEventRefused."""
    with state.lock:
        app_id, installation = _telephony_app(state, portal, client_id, CALL_START)
        _active_user(portal, user_id, CALL_START)
        contact = _contact(portal, contact_id, phone, CALL_START)
        number = str(contact["PHONE"]) if contact else _number(phone, CALL_START)
        line = default_line(portal, app_id)
        call_id = _register(state, portal, app_id, user_id, number, line, contact)
        data = {
            "PHONE_NUMBER": number,
            "PHONE_NUMBER_INTERNATIONAL": international(number),
            "EXTENSION": "",
            "USER_ID": str(user_id),
            "CALL_LIST_ID": str(call_list_id),
            "LINE_NUMBER": line,
            "IS_MOBILE": "1" if is_mobile else "0",
            "CALL_ID": call_id,
            "CRM_ENTITY_TYPE": "CONTACT" if contact else "",
            "CRM_ENTITY_ID": str(contact["ID"]) if contact else "",
        }
        posts = InstallDriver(state, "").event_posts(
            portal, installation, CALL_START, data, user_id, None
        )
        _journal(state, portal, app_id, CALL_START, user_id, data)
    queued = event_queue.enqueue(
        state, portal, app_id, CALL_START, posts, data=data, user_id=user_id
    )
    return Sent(CALL_START, app_id, call_id, data, queued)


def order_callback(
    state: DevState,
    portal: DevPortal,
    *,
    phone: str,
    text: str,
    voice: str = DEFAULT_VOICE,
    user_id: int = 1,
    client_id: str | None = None,
) -> Sent:
    """A client asks for a callback at `phone` (the CRM form's TEXT and VOICE): the app's
    ONEXTERNALCALLBACKSTART is queued; nothing is registered. Raises CallEventRefused."""
    with state.lock:
        app_id, installation = _telephony_app(state, portal, client_id, CALLBACK_START)
        _active_user(portal, user_id, CALLBACK_START)
        number = _number(phone, CALLBACK_START)
        contact = find_contact(portal, number)
        if contact is not None:
            entity_type, entity_id = "CONTACT", int(contact["ID"])
        else:  # the CRM form files an unknown client as a new lead (searchable from now on)
            entity_type, entity_id = "LEAD", state.next_call_number()
            portal.crm.append(CrmEntity("LEAD", entity_id, "Callback request", (number,), user_id))
        data = {
            "PHONE_NUMBER": number,
            "TEXT": text.strip()[:TEXT_LENGTH],
            "VOICE": voice,
            "CRM_ENTITY_TYPE": entity_type,
            "CRM_ENTITY_ID": str(entity_id),
            "LINE_NUMBER": default_line(portal, app_id),
        }
        posts = InstallDriver(state, "").event_posts(
            portal, installation, CALLBACK_START, data, user_id, None
        )
        _journal(state, portal, app_id, CALLBACK_START, user_id, data)
    queued = event_queue.enqueue(
        state, portal, app_id, CALLBACK_START, posts, data=data, user_id=user_id
    )
    return Sent(CALLBACK_START, app_id, None, data, queued)


# --- the portal's side ---------------------------------------------------------------------------
def telephony_app(state: DevState, portal: DevPortal) -> str | None:
    """The app outgoing calls and callbacks go to by default (module docstring), or None: a
    fully installed one first, else one whose installation is not finished (which gets
    nothing, but the refusal can name it)."""
    candidates = [
        (not installation.installed, client_id)
        for client_id, installation in portal.installations.items()
        if (app := state.apps.get(client_id)) and "telephony" in granted_scopes(app.scope)
    ]
    return min(candidates, key=lambda c: c[0])[1] if candidates else None


def default_line(portal: DevPortal, client_id: str) -> str:
    """The number of the app's first external line, "" when it has none."""
    lines = [line for line in portal.lines.values() if line["client_id"] == client_id]
    return str(min(lines, key=lambda line: line["ID"])["NUMBER"]) if lines else ""


def international(number: str) -> str:
    """E.164 of a number as typed: "+7 495 123-45-67" and "8 (495) 123-45-67" are
    "+74951234567" (module docstring)."""
    digits = re.sub(r"\D", "", number)
    if not number.strip().startswith("+") and len(digits) == 11 and digits.startswith("8"):
        digits = "7" + digits[1:]
    return f"+{digits}"


def find_contact(portal: DevPortal, number: str) -> dict[str, Any] | None:
    """The CRM contact whose phone is `number` (compared in E.164), or None."""
    wanted = international(number)
    return next((c for c in portal.contacts if international(str(c["PHONE"])) == wanted), None)


def _telephony_app(
    state: DevState, portal: DevPortal, client_id: str | None, event: str
) -> tuple[str, Installation]:
    app_id = client_id or telephony_app(state, portal)
    installation = portal.installations.get(app_id) if app_id else None
    if app_id is None or installation is None:
        raise CallEventRefused("no_app", event)
    if not installation.installed:
        raise CallEventRefused("not_installed", event, app_id)
    if not bindings(installation, event):
        raise CallEventRefused("not_bound", event, app_id)
    return app_id, installation


def _active_user(portal: DevPortal, user_id: int, event: str) -> None:
    user = portal.users.get(user_id)
    if user is None or not user.active:
        raise CallEventRefused("no_user", event, str(user_id))


def _contact(
    portal: DevPortal, contact_id: int | None, phone: str | None, event: str
) -> dict[str, Any] | None:
    if contact_id is None:
        return find_contact(portal, _number(phone, event))
    found = next((c for c in portal.contacts if c["ID"] == contact_id), None)
    if found is None:
        raise CallEventRefused("no_contact", event, str(contact_id))
    return found


def _number(phone: str | None, event: str) -> str:
    number = (phone or "").strip()
    if not 3 <= len(re.sub(r"\D", "", number)) <= 20 or len(number) > 64:
        raise CallEventRefused("bad_phone", event, number[:64])
    return number


def _register(
    state: DevState,
    portal: DevPortal,
    client_id: str,
    user_id: int,
    number: str,
    line: str,
    contact: dict[str, Any] | None,
) -> str:
    """The call as telephony.externalCall.register would have stored it (methods/telephony.py)."""
    call_id = new_call_id(state)
    portal.calls[call_id] = {
        "CALL_ID": call_id,
        "client_id": client_id,
        "USER_ID": user_id,
        "PHONE_NUMBER": number,
        "TYPE": OUTGOING,
        "LINE_NUMBER": line or None,
        "EXTERNAL_CALL_ID": None,
        "CALL_START_DATE": call_start_date(state, None),
        "registered_at": state.now(),
        "shown_to": [user_id],
        "CRM_ENTITY_TYPE": "CONTACT" if contact else "",
        "CRM_ENTITY_ID": int(contact["ID"]) if contact else None,
        "CRM_CREATED_LEAD": None,
        "CRM_CREATED_ENTITIES": [],
        "params": {},
        "warnings": [],
        "started_by": "click",
    }
    return call_id


def _journal(
    state: DevState,
    portal: DevPortal,
    client_id: str,
    event: str,
    user_id: int,
    data: dict[str, str],
) -> None:
    """What the person did, for the journal and the Telephony page's timeline."""
    state.record(
        {
            "ts": state.now(),
            "portal": portal.code,
            "member_id": portal.member_id,
            "client_id": client_id,
            "started": event,
            "user_id": user_id,
            "call_id": data.get("CALL_ID"),
            "data": dict(data),
        }
    )
