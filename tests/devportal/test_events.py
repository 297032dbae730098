"""The development portal's event.bind, event.get and event.unbind, and `handlers_for`.

Pages: api-reference/events/event-bind.md and api-reference/events/index.md (local reference);
the newer bitrix24-docs-ru revisions of event-bind.md (error table, the handler-URL rule),
event-get.md and event-unbind.md (bitrix-tools/b24-rest-docs) where the local copy is silent.
"""

from __future__ import annotations

from typing import Any

import pytest

from devportal.methods.events import handlers_for
from devportal.state import DevPortal, DevState, install
from tests.conftest import TEST_CLIENT_ID
from tests.devportal.conftest import Rest

HANDLER = "https://app.example.test/events"
OTHER = "https://app.example.test/other"


def employee(rest: Rest, dev: DevState, portal: DevPortal, user_id: int = 2) -> Rest:
    """The same app through a regular employee's token."""
    access, _ = dev.issue_tokens(portal, TEST_CLIENT_ID, user_id)
    return Rest(rest.base, portal, access.token)


def error_of(response: Any) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"], body["error_description"]


def bind(rest: Rest, event: str = "ONAPPINSTALL", handler: str = HANDLER, **more: Any) -> Any:
    return rest.call("event.bind", {"event": event, "handler": handler, **more})


# --- event.bind -----------------------------------------------------------------------------------


def test_bind_stores_the_handler_and_event_get_lists_it(rest: Rest, portal: DevPortal) -> None:
    """event-bind.md: result true; event-get.md: [{event, handler, auth_type: "0", offline: 0}]
    — an admin's default auth_type is "the user whose actions triggered the event"."""
    assert bind(rest).json()["result"] is True
    assert rest.result("event.get") == [
        {"event": "ONAPPINSTALL", "handler": HANDLER, "auth_type": "0", "offline": 0}
    ]
    stored = portal.installations[TEST_CLIENT_ID].events
    assert [(e["event"], e["handler"], e["auth_type"]) for e in stored] == [
        ("ONAPPINSTALL", HANDLER, 0)
    ]


def test_event_names_are_case_insensitive_and_stored_upper_case(
    rest: Rest, portal: DevPortal
) -> None:
    """events/index.md: the event's code is upper case (ONCRMDEALADD); the docs spell names both
    ways (OnAppInstall, ONAPPINSTALL)."""
    assert bind(rest, "onAppUninstall").json()["result"] is True
    assert rest.result("event.get")[0]["event"] == "ONAPPUNINSTALL"
    assert bind(rest, "ONAPPUNINSTALL").json()["error"] == "ERROR_CORE"  # the same binding


@pytest.mark.parametrize(
    "event",
    [
        "ONAPPINSTALL",
        "ONAPPUPDATE",
        "ONAPPUNINSTALL",
        "ONEXTERNALCALLSTART",
        "ONEXTERNALCALLBACKSTART",
        "ONCRMCONTACTADD",
    ],
)
def test_known_events_bind(rest: Rest, event: str) -> None:
    """Lifecycle (common/events/on-app-*.md), telephony (telephony/events/*.md) and CRM events
    our app's scopes (crm, telephony) allow."""
    assert bind(rest, event).json()["result"] is True


def test_unknown_event(rest: Rest) -> None:
    """event-bind.md: 400 ERROR_EVENT_NOT_FOUND "Event not found"."""
    assert error_of(bind(rest, "ONNOSUCHTHING")) == (
        400,
        "ERROR_EVENT_NOT_FOUND",
        "Event not found",
    )


def test_event_outside_the_apps_scope_is_not_found(
    rest: Rest, dev: DevState, portal: DevPortal
) -> None:
    """bitrix24-docs-ru event-bind.md: the event must be in the app's scope or basic, else
    ERROR_EVENT_NOT_FOUND."""
    dev.add_app("app.narrow", "s", scope="telephony")
    _, access, _ = install(dev, portal, "app.narrow")
    narrow = Rest(rest.base, portal, access.token)
    assert bind(narrow, "ONCRMCONTACTADD").json()["error"] == "ERROR_EVENT_NOT_FOUND"
    assert bind(narrow, "ONEXTERNALCALLSTART").json()["result"] is True
    assert bind(narrow, "ONAPPUNINSTALL").json()["result"] is True


def test_binding_the_same_handler_twice(rest: Rest) -> None:
    """bitrix24-docs-ru event-bind.md: 400 ERROR_CORE "Unable to set event handler: Handler
    already binded"."""
    bind(rest)
    assert error_of(bind(rest)) == (
        400,
        "ERROR_CORE",
        "Unable to set event handler: Handler already binded",
    )
    assert len(rest.result("event.get")) == 1


def test_same_handler_for_another_event_or_user_is_a_new_binding(rest: Rest) -> None:
    """event-get.md's example lists one handler twice, with auth_type "0" and "15"."""
    bind(rest)
    assert bind(rest, auth_type=3).json()["result"] is True
    assert bind(rest, "ONAPPUPDATE").json()["result"] is True
    assert bind(rest, handler=OTHER).json()["result"] is True
    listed = rest.result("event.get")
    assert [(e["event"], e["handler"], e["auth_type"]) for e in listed] == [
        ("ONAPPINSTALL", HANDLER, "0"),
        ("ONAPPINSTALL", HANDLER, "3"),
        ("ONAPPUPDATE", HANDLER, "0"),
        ("ONAPPINSTALL", OTHER, "0"),
    ]


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        ("not a url", "ERROR_WRONG_HANDLER_URL"),
        ("/events", "ERROR_WRONG_HANDLER_URL"),
        ("app.example.test/events", "ERROR_WRONG_HANDLER_URL"),
        ("http://localhost:5000/events", "ERROR_WRONG_HANDLER_URL"),
        ("ftp://app.example.test/events", "ERROR_UNSUPPORTED_PROTOCOL"),
        ("javascript://app.example.test/alert", "ERROR_UNSUPPORTED_PROTOCOL"),
    ],
)
def test_handler_must_be_an_absolute_http_url(rest: Rest, handler: str, error: str) -> None:
    """bitrix24-docs-ru event-bind.md: 400 ERROR_WRONG_HANDLER_URL when the URL has no host or
    the host has no dot ("localhost" fails); 400 ERROR_UNSUPPORTED_PROTOCOL unless http(s)."""
    response = bind(rest, handler=handler)
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert rest.result("event.get") == []


@pytest.mark.parametrize(
    "handler",
    ["http://127.0.0.1:5000/events", "https://app.example.test/events?x=1", "HTTP://a.b/c"],
)
def test_accepted_handler_urls(rest: Rest, handler: str) -> None:
    """bitrix24-docs-ru event-bind.md: an http or https URL whose host has a dot — the
    development app on 127.0.0.1 qualifies."""
    assert bind(rest, handler=handler).json()["result"] is True
    assert rest.result("event.get")[0]["handler"] == handler


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"handler": HANDLER}, "Argument 'EVENT' is null or empty"),
        ({"event": "ONAPPINSTALL"}, "Argument 'HANDLER' is null or empty"),
        (
            {"event": "ONAPPINSTALL", "handler": HANDLER, "event_type": "sometimes"},
            "Value must be one of {online|offline}",
        ),
    ],
)
def test_argument_errors(rest: Rest, params: dict[str, Any], description: str) -> None:
    """bitrix24-docs-ru event-bind.md: 400 ERROR_ARGUMENT for a missing event, a missing handler
    of an online event, an event_type other than online|offline."""
    assert error_of(rest.call("event.bind", params)) == (400, "ERROR_ARGUMENT", description)


def test_upper_case_parameter_names(rest: Rest) -> None:
    """event-unbind.md's PHP example passes EVENT/HANDLER/AUTH_TYPE in upper case."""
    response = rest.call("event.bind", {"EVENT": "ONAPPUPDATE", "HANDLER": HANDLER})
    assert response.json()["result"] is True


# --- who may bind what ----------------------------------------------------------------------------


def test_employee_binds_for_themself(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """event-bind.md: for a non-admin "events are installed on behalf of the current user"."""
    boris = employee(rest, dev, portal)
    assert bind(boris).json()["result"] is True
    assert boris.result("event.get") == [
        {"event": "ONAPPINSTALL", "handler": HANDLER, "auth_type": "2", "offline": 0}
    ]
    assert bind(boris, handler=OTHER, auth_type=2).json()["result"] is True


def test_employee_cannot_bind_for_another_user(
    rest: Rest, dev: DevState, portal: DevPortal
) -> None:
    """event-bind.md: 403 ACCESS_DENIED "Access denied! Event binding with AUTH_TYPE requires
    administrator access rights"."""
    response = bind(employee(rest, dev, portal), auth_type=1)
    assert error_of(response) == (
        403,
        "ACCESS_DENIED",
        "Access denied! Event binding with AUTH_TYPE requires administrator access rights",
    )


def test_employee_cannot_bind_offline_events(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """event-bind.md: 403 ACCESS_DENIED "Access denied! Offline events binding requires
    administrator access rights"."""
    response = bind(employee(rest, dev, portal), event_type="offline")
    assert error_of(response) == (
        403,
        "ACCESS_DENIED",
        "Access denied! Offline events binding requires administrator access rights",
    )


def test_admin_binds_offline_without_handler(rest: Rest, portal: DevPortal) -> None:
    """api-reference/events/offline-events.md (digest §8.4): bind with event_type=offline, admin
    only; no URL is called, so the handler is not needed and handlers_for skips it."""
    response = rest.call("event.bind", {"event": "ONCRMCONTACTADD", "event_type": "offline"})
    assert response.json()["result"] is True
    assert rest.result("event.get") == [
        {"event": "ONCRMCONTACTADD", "connector_id": "", "offline": 1}
    ]
    assert handlers_for(portal.installations[TEST_CLIENT_ID], "ONCRMCONTACTADD") == []


def test_onofflineevent_cannot_be_offline(rest: Rest) -> None:
    """bitrix24-docs-ru event-bind.md: 400 ERROR_ARGUMENT "Offline event cannot be registered
    for this event." (e.g. ONOFFLINEEVENT)."""
    response = rest.call("event.bind", {"event": "ONOFFLINEEVENT", "event_type": "offline"})
    assert error_of(response) == (
        400,
        "ERROR_ARGUMENT",
        "Offline event cannot be registered for this event.",
    )


# --- event.get ------------------------------------------------------------------------------------


def test_employee_sees_only_own_handlers(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """events/index.md: a regular user can register, retrieve and delete *their own* online
    handlers; the admin sees all of the app's."""
    bind(rest)
    boris = employee(rest, dev, portal)
    bind(boris, handler=OTHER)
    assert [e["handler"] for e in boris.result("event.get")] == [OTHER]
    assert [e["handler"] for e in rest.result("event.get")] == [HANDLER, OTHER]


def test_handlers_belong_to_the_app(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """event-bind.md: the method works in the context of the application; another app on the
    same portal has its own handlers."""
    bind(rest)
    dev.add_app("app.other", "s")
    _, access, _ = install(dev, portal, "app.other")
    other = Rest(rest.base, portal, access.token)
    assert other.result("event.get") == []
    assert bind(other).json()["result"] is True  # not a duplicate: another app's binding
    assert len(portal.installations["app.other"].events) == 1


# --- event.unbind ---------------------------------------------------------------------------------


def test_unbind_returns_the_count(rest: Rest) -> None:
    """event-unbind.md: "The method returns the number of event handlers removed" —
    {"result": {"count": 1}}."""
    bind(rest)
    bind(rest, "ONAPPUPDATE")
    result = rest.result("event.unbind", {"event": "ONAPPINSTALL", "handler": HANDLER})
    assert result == {"count": 1}
    assert [e["event"] for e in rest.result("event.get")] == ["ONAPPUPDATE"]
    again = rest.result("event.unbind", {"event": "ONAPPINSTALL", "handler": HANDLER})
    assert again == {"count": 0}


def test_unbind_without_auth_type_removes_every_user(rest: Rest) -> None:
    """event-unbind.md: "If any parameters are not specified, all event handlers that meet the
    other requirements will be removed"."""
    bind(rest)
    bind(rest, auth_type=3)
    bind(rest, handler=OTHER)
    result = rest.result("event.unbind", {"event": "onappinstall", "handler": HANDLER})
    assert result == {"count": 2}
    assert [e["handler"] for e in rest.result("event.get")] == [OTHER]


@pytest.mark.parametrize("empty", [0, "0", ""])
def test_unbind_auth_type_zero_keeps_user_bound_handlers(rest: Rest, empty: Any) -> None:
    """event-unbind.md: to remove the handlers set with an empty auth_type but keep the others,
    specify auth_type=0 or an empty value."""
    bind(rest)
    bind(rest, auth_type=3)
    result = rest.result(
        "event.unbind", {"event": "ONAPPINSTALL", "handler": HANDLER, "auth_type": empty}
    )
    assert result == {"count": 1}
    assert [e["auth_type"] for e in rest.result("event.get")] == ["3"]


def test_employee_unbinds_only_own(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """events/index.md: a regular user deletes their own handlers; naming another user's
    auth_type in event.unbind returns an access error."""
    bind(rest, auth_type=1)
    boris = employee(rest, dev, portal)
    bind(boris)
    params = {"event": "ONAPPINSTALL", "handler": HANDLER}
    denied = boris.call("event.unbind", {**params, "auth_type": 1})
    assert denied.status_code == 403
    assert denied.json()["error"] == "ACCESS_DENIED"
    assert boris.result("event.unbind", params) == {"count": 1}
    assert [e["auth_type"] for e in rest.result("event.get")] == ["1"]


def test_unbind_needs_event_and_handler(rest: Rest) -> None:
    """event-unbind.md: event* and handler* are required (ERROR_ARGUMENT, as event.bind)."""
    no_event = rest.call("event.unbind", {"handler": HANDLER})
    assert error_of(no_event)[:2] == (400, "ERROR_ARGUMENT")
    no_handler = rest.call("event.unbind", {"event": "ONAPPINSTALL"})
    assert error_of(no_handler)[:2] == (400, "ERROR_ARGUMENT")


def test_unbind_offline(rest: Rest, dev: DevState, portal: DevPortal) -> None:
    """event-unbind.md: event_type=offline works with offline events (admin only, as bind)."""
    rest.call("event.bind", {"event": "ONCRMCONTACTADD", "event_type": "offline"})
    boris = employee(rest, dev, portal)
    denied = boris.call("event.unbind", {"event": "ONCRMCONTACTADD", "event_type": "offline"})
    assert denied.status_code == 403
    result = rest.result("event.unbind", {"event": "ONCRMCONTACTADD", "event_type": "offline"})
    assert result == {"count": 1}


# --- handlers_for ---------------------------------------------------------------------------------


def test_handlers_for_gives_online_bindings_of_one_event(rest: Rest, portal: DevPortal) -> None:
    """events/index.md: the queue server POSTs each event to the handlers bound to it;
    event_handler_id identifies the binding."""
    bind(rest, "ONEXTERNALCALLSTART")
    bind(rest, "ONEXTERNALCALLSTART", handler=OTHER, auth_type=2)
    bind(rest, "ONAPPUNINSTALL")
    installation = portal.installations[TEST_CLIENT_ID]
    found = handlers_for(installation, "OnExternalCallStart")
    assert [(h["handler"], h["auth_type"]) for h in found] == [(HANDLER, 0), (OTHER, 2)]
    assert len({h["id"] for h in found}) == 2
    found[0]["handler"] = "changed"  # copies: the caller cannot alter the bindings
    assert handlers_for(installation, "ONEXTERNALCALLSTART")[0]["handler"] == HANDLER
    assert handlers_for(installation, "ONAPPINSTALL") == []
