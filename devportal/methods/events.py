"""`event.bind`, `event.get`, `event.unbind`: the app's event handlers on a portal.

Pages: api-reference/events/event-bind.md and api-reference/events/index.md (local reference);
the error table of event.bind, the URL rule and event.get/event.unbind's results come from the
newer revisions of bitrix24-docs-ru/api-reference/events/event-bind.md, event-get.md and
event-unbind.md (bitrix-tools/b24-rest-docs), which the local copy does not have yet.

Each binding is a dict in `Installation.events` of the token's app:

    {"id": 7, "event": "ONAPPINSTALL", "handler": "https://…", "auth_type": 0,
     "offline": False, "auth_connector": "", "options": {}}

`auth_type` 0 means "the user whose action triggered the event"; offline bindings have no
handler. `handlers_for(installation, event_name)` gives the online bindings to deliver to.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import urlsplit

from devportal.errors import RestError
from devportal.methods import Call, method
from devportal.methods.common import granted_scopes, is_admin
from devportal.state import Installation

# Events an app may bind, with the scope each needs (None: basic, always available). The
# bind page: an event outside the app's scope is "not found".
EVENTS: dict[str, str | None] = {
    "ONAPPINSTALL": None,
    "ONAPPUPDATE": None,
    "ONAPPUNINSTALL": None,
    "ONOFFLINEEVENT": None,
    "ONEXTERNALCALLSTART": "telephony",
    "ONEXTERNALCALLBACKSTART": "telephony",
    "ONCRMCONTACTADD": "crm",
    "ONCRMCONTACTUPDATE": "crm",
    "ONCRMCONTACTDELETE": "crm",
    "ONCRMCOMPANYADD": "crm",
    "ONCRMLEADADD": "crm",
    "ONCRMDEALADD": "crm",
    "ONUSERADD": "user",
}
ONLINE_ONLY = {"ONOFFLINEEVENT"}  # "Offline event cannot be registered for this event."
EVENT_TYPES = ("online", "offline")

_handler_ids = itertools.count(1)  # event_handler_id (events/index.md), unique in the process


def handlers_for(installation: Installation, event_name: str) -> list[dict[str, Any]]:
    """The online bindings of `event_name` (any case), in the order they were bound."""
    name = event_name.upper()
    return [dict(e) for e in installation.events if e["event"] == name and not e["offline"]]


# --- event.bind -----------------------------------------------------------------------------------


@method("event.bind")
def event_bind(call: Call, params: dict[str, Any]) -> bool:
    """event-bind.md: checks in the order Bitrix24 makes them, then one more binding."""
    query = _upper_keys(params)
    admin = is_admin(call)
    auth_type = _bind_auth_type(call, query.get("AUTH_TYPE"), admin)
    name = _event_name(query)
    offline = _event_type(query) == "offline"
    handler = str(query.get("HANDLER") or "")
    if offline:
        if not admin:
            raise _denied("Offline events binding requires administrator access rights")
        handler, auth_type = "", 0
    elif not handler:
        raise _argument_null("HANDLER")
    else:
        check_handler_url(handler)
    _check_event(call, name, offline)
    binding: dict[str, Any] = {
        "event": name,
        "handler": handler,
        "auth_type": auth_type,
        "offline": offline,
        "auth_connector": str(query.get("AUTH_CONNECTOR") or "") if offline else "",
        "options": query.get("OPTIONS") if isinstance(query.get("OPTIONS"), dict) else {},
    }
    installation = call.portal.installations[call.client_id]
    if any(_same_binding(existing, binding) for existing in installation.events):
        raise RestError("ERROR_CORE", "Unable to set event handler: Handler already binded", 400)
    installation.events.append({"id": next(_handler_ids), **binding})
    return True


def _bind_auth_type(call: Call, value: Any, admin: bool) -> int:
    """A non-admin binds for themself only (event-bind.md); an admin's default is 0."""
    auth_type = _int(value)
    if auth_type > 0:
        if not admin and auth_type != call.user_id:
            raise _denied("Event binding with AUTH_TYPE requires administrator access rights")
        return auth_type
    return 0 if admin else call.user_id


def check_handler_url(handler: str) -> None:
    """An absolute http(s) URL whose host has a dot (so `localhost` fails, 127.0.0.1 passes)."""
    parts = urlsplit(handler)
    host = parts.hostname or ""
    if not host or "." not in host:
        raise RestError("ERROR_WRONG_HANDLER_URL", "Wrong handler URL", 400)
    if parts.scheme.lower() not in ("http", "https"):
        raise RestError("ERROR_UNSUPPORTED_PROTOCOL", "Unsupported handler protocol", 400)


def _check_event(call: Call, name: str, offline: bool) -> None:
    if name not in EVENTS:
        raise RestError("ERROR_EVENT_NOT_FOUND", "Event not found", 400)
    required = EVENTS[name]
    if required is not None and required not in granted_scopes(call.token.scope):
        raise RestError("ERROR_EVENT_NOT_FOUND", "Event not found", 400)
    if offline and name in ONLINE_ONLY:
        raise _argument("Offline event cannot be registered for this event.")


def _same_binding(existing: dict[str, Any], new: dict[str, Any]) -> bool:
    keys = ("event", "handler", "auth_type", "offline", "auth_connector")
    return all(existing[key] == new[key] for key in keys)


# --- event.get ------------------------------------------------------------------------------------


@method("event.get")
def event_get(call: Call, params: dict[str, Any]) -> list[dict[str, Any]]:
    """event-get.md: the app's bindings; a non-admin sees only their own (events/index.md)."""
    installation = call.portal.installations[call.client_id]
    admin = is_admin(call)
    return [
        _as_listed(binding)
        for binding in installation.events
        if admin or binding["auth_type"] == call.user_id
    ]


def _as_listed(binding: dict[str, Any]) -> dict[str, Any]:
    """event-get.md's element: auth_type as a string, offline as 0/1.

    The page shows only online bindings; an offline one carries its connector instead of a
    handler [INFERRED].
    """
    if binding["offline"]:
        return {"event": binding["event"], "connector_id": binding["auth_connector"], "offline": 1}
    return {
        "event": binding["event"],
        "handler": binding["handler"],
        "auth_type": str(binding["auth_type"]),
        "offline": 0,
    }


# --- event.unbind ---------------------------------------------------------------------------------


@method("event.unbind")
def event_unbind(call: Call, params: dict[str, Any]) -> dict[str, int]:
    """event-unbind.md: remove matching bindings and say how many (`{"count": N}`).

    Without `auth_type` every binding of that event and handler goes (a non-admin's own only);
    `auth_type=0` or empty removes just those bound without a user.
    """
    query = _upper_keys(params)
    admin = is_admin(call)
    name = _event_name(query)
    offline = _event_type(query) == "offline"
    handler = str(query.get("HANDLER") or "")
    if offline and not admin:
        raise _denied("Offline events unbinding requires administrator access rights")
    if not offline and not handler:
        raise _argument_null("HANDLER")
    wanted_user = None if offline else _unbind_auth_type(call, query, admin)
    installation = call.portal.installations[call.client_id]
    keep, removed = [], 0
    for binding in installation.events:
        if _unbinds(binding, name, handler, offline, wanted_user, query):
            removed += 1
        else:
            keep.append(binding)
    installation.events[:] = keep
    return {"count": removed}


def _unbind_auth_type(call: Call, query: dict[str, Any], admin: bool) -> int | None:
    """Which auth_type to remove: the given one, else all (admin) or the caller's own."""
    if "AUTH_TYPE" in query:
        auth_type = _int(query["AUTH_TYPE"])
        if not admin and auth_type != call.user_id:
            raise _denied("Event unbinding with AUTH_TYPE requires administrator access rights")
        return auth_type
    return None if admin else call.user_id


def _unbinds(
    binding: dict[str, Any],
    name: str,
    handler: str,
    offline: bool,
    auth_type: int | None,
    query: dict[str, Any],
) -> bool:
    if binding["event"] != name or binding["offline"] != offline:
        return False
    if offline:
        return binding["auth_connector"] == str(query.get("AUTH_CONNECTOR") or "")
    if binding["handler"] != handler:
        return False
    return auth_type is None or binding["auth_type"] == auth_type


# --- shared parameter handling --------------------------------------------------------------------


def _upper_keys(params: dict[str, Any]) -> dict[str, Any]:
    """Bitrix24 reads these parameters in any case (`event` or `EVENT`, as the pages' examples)."""
    return {str(key).upper(): value for key, value in params.items()}


def _event_name(query: dict[str, Any]) -> str:
    name = str(query.get("EVENT") or "").strip().upper()
    if not name:
        raise _argument_null("EVENT")
    return name


def _event_type(query: dict[str, Any]) -> str:
    event_type = str(query.get("EVENT_TYPE") or "").strip().lower() or "online"
    if event_type not in EVENT_TYPES:
        raise _argument("Value must be one of {online|offline}")
    return event_type


def _int(value: Any) -> int:
    try:
        return int(str(value).strip() or 0)
    except ValueError:
        return 0


def _argument(description: str) -> RestError:
    return RestError("ERROR_ARGUMENT", description, 400)


def _argument_null(name: str) -> RestError:
    return _argument(f"Argument '{name}' is null or empty")


def _denied(reason: str) -> RestError:
    return RestError("ACCESS_DENIED", f"Access denied! {reason}", 403)
