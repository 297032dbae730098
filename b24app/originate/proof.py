"""Bitrix24's confirmation of a request before the PBX is asked to ring anyone.

The `application_token` an event carries is shown to every user who opens the app
(settings/oauth/simple-way.md), so on its own it proves only "someone of this portal": enough to
store the event, not to make the PBX dial a number. Before the first send, Bitrix24 itself is
asked (PortalClient.ask: within CONFIRM_WAIT seconds, never on the delivery's slots):
- click-to-call: `telephony.externalCall.show` with the event's CALL_ID for the clicking
  employee answers true only for a call Bitrix24 registered for this app (the show page: false
  for an unknown call); the employee's card is open already, so showing it again changes nothing;
- callback: `telephony.externalCall.searchCrmEntities` must find the number in the portal's CRM,
  as the CRM entity the event names when it names one (a callback form files its client there).
A request Bitrix24 does not confirm fails at once with the reason; one that cannot be confirmed
now (no spare slot, the portal not answering) is tried again like a PBX that did not answer.
Confirmed requests are remembered per process, so a retry to a flaky PBX asks Bitrix24 once.
"""

from __future__ import annotations

import threading
from typing import Any

from b24app.bitrix.errors import BitrixError
from b24app.originate.outbox import Job
from b24app.originate.webhooks import Attempt
from b24app.portals.store import InstallationStore

CONFIRM_WAIT = 2.0  # seconds
KEEP_FREE = 0.5  # of the portal's burst left to the delivery (PortalClient.ask)

# webhook ids (unique per request) confirmed in this process, the newest CONFIRMED_KEPT: a
# request is retried for ten minutes at most, so older ones are never asked about again
CONFIRMED_KEPT = 10_000
_confirmed: dict[str, None] = {}
_lock = threading.Lock()


def confirm(store: InstallationStore, job: Job) -> Attempt | None:
    """None once Bitrix24 confirms `job`; else how this attempt ends without sending (see the
    module's doc). Never raises."""
    with _lock:
        if job.webhook_id in _confirmed:
            return None
    client = store.client(job.member_id)
    try:
        if job.kind == "call.start":
            found = _call_is_bitrix24s(client.ask, job.payload)
            reason = "Bitrix24 does not know this CALL_ID: not sent (a forged or stale event)"
        else:
            found = _number_is_in_the_crm(client.ask, job.payload)
            reason = "the number is not the CRM client the callback names: not sent (forged?)"
    except BitrixError as error:
        detail = f"could not ask Bitrix24 to confirm the request ({error.code})"
        return Attempt("unconfirmed", True, error=detail)
    if not found:
        return Attempt("unconfirmed", False, error=reason)
    with _lock:
        _confirmed[job.webhook_id] = None
        if len(_confirmed) > CONFIRMED_KEPT:
            del _confirmed[next(iter(_confirmed))]
    return None


def _ask(ask: Any, method: str, params: dict[str, Any]) -> Any:
    return ask(method, params, timeout=CONFIRM_WAIT, keep_free=KEEP_FREE).get("result")


def _call_is_bitrix24s(ask: Any, payload: dict[str, str]) -> bool:
    params: dict[str, Any] = {"CALL_ID": payload["CALL_ID"]}
    if payload.get("USER_ID"):
        params["USER_ID"] = int(payload["USER_ID"])
    return _ask(ask, "telephony.externalCall.show", params) is True


def _number_is_in_the_crm(ask: Any, payload: dict[str, str]) -> bool:
    found = _ask(
        ask, "telephony.externalCall.searchCrmEntities", {"PHONE_NUMBER": payload["PHONE_NUMBER"]}
    )
    entities = [e for e in found or [] if isinstance(e, dict)]
    kind, number = payload.get("CRM_ENTITY_TYPE"), payload.get("CRM_ENTITY_ID")
    if not kind or not number:
        return bool(entities)
    return any(
        str(e.get("CRM_ENTITY_TYPE")) == kind and str(e.get("CRM_ENTITY_ID")) == number
        for e in entities
    )
