"""`GET /pbx/v1/route?PHONE_NUMBER=…` (PRODUCT.md; b24app/pbx/route.py): the responsible
employee, their extension and the CRM entity from telephony.externalCall.searchCrmEntities,
within 2 s and never a 5xx, cached briefly, within the portal's throttle without taking the
delivery's slots. Over HTTP, against the development portal (its CRM: devportal/crm_data.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from b24app.bitrix.throttle import STANDARD
from b24app.db import get_db
from b24app.delivery import portal_health
from b24app.models import PortalThrottle, utcnow
from b24app.pbx import openapi
from b24app.pbx.route import FOUND_TTL, NOBODY, NOT_FOUND_TTL
from b24app.portals import mapping, pbx_keys, store
from b24app.portals.throttle import Throttle
from b24app.wiring import current_store
from devportal import faults
from devportal.state import DevPortal
from tests.conftest import LiveApp
from tests.front import oauth_in_front
from tests.pbx import bearer

ROUTE = "/pbx/v1/route"
SEARCH = "telephony.externalCall.searchCrmEntities"
NULLS = {"USER_ID": None, "USER_PHONE_INNER": None, "CRM_ENTITY_TYPE": None, "CRM_ENTITY_ID": None}
JOHN_DOE = "+19062195047"  # a contact of Boris (2, extension 101) and a company of Clara (3)
WEBSITE_LEAD = "+44 20 7946 0018"  # a lead of Dmitri (4), who has no extension
UNKNOWN = "+15550001111"


def installed(live_app: LiveApp) -> tuple[DevPortal, str]:
    """Portal alpha with the app installed as Bitrix24 installs it, and its PBX key."""
    portal = live_app.install("alpha")
    with live_app.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        return portal, pbx_keys.reveal(row.settings, current_store().box)


def ask(live_app: LiveApp, key: str | None, **query: Any) -> requests.Response:
    headers = bearer(key) if key else {}
    return requests.get(live_app.url + ROUTE, params=query, headers=headers, timeout=10)


def searches(live_app: LiveApp) -> int:
    return len(live_app.dev.entries(method=SEARCH))


def portal_id(live_app: LiveApp, portal: DevPortal) -> int:
    with live_app.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        return row.id


def next_slot_at(live_app: LiveApp, portal: DevPortal) -> float:
    """The portal's schedule: the theoretical arrival of its next request (throttle.py)."""
    with live_app.app.app_context(), get_db().read() as session:
        row = session.get(PortalThrottle, portal_id(live_app, portal))
        assert row is not None
        return row.theoretical_arrival


def map_extensions(live_app: LiveApp, portal: DevPortal, extensions: dict[str, int]) -> None:
    with live_app.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        mapping.replace(session, row, extensions)


# --- found -------------------------------------------------------------------------------------


def test_found_names_the_employee_with_the_extension_of_the_mapping(live_app: LiveApp):
    """The number is a contact (Boris) and a company (Clara): Bitrix24's first match wins."""
    portal, key = installed(live_app)
    map_extensions(live_app, portal, {"201": 2, "202": 3})

    response = ask(live_app, key, PHONE_NUMBER=JOHN_DOE)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json() == {
        "USER_ID": 2,
        "USER_PHONE_INNER": "201",
        "CRM_ENTITY_TYPE": "CONTACT",
        "CRM_ENTITY_ID": 651,
    }
    [search] = live_app.dev.entries(method=SEARCH)
    assert search["params"] == {"PHONE_NUMBER": JOHN_DOE}


def test_an_employee_the_mapping_lacks_gets_the_extension_of_their_profile(live_app: LiveApp):
    portal, key = installed(live_app)
    map_extensions(live_app, portal, {"202": 3})  # Clara only

    assert ask(live_app, key, PHONE_NUMBER="+1 (906) 219-50-47").json() == {
        "USER_ID": 2,
        "USER_PHONE_INNER": "101",  # Boris's UF_PHONE_INNER
        "CRM_ENTITY_TYPE": "CONTACT",
        "CRM_ENTITY_ID": 651,
    }


def test_an_employee_without_an_extension_anywhere_has_user_phone_inner_null(live_app: LiveApp):
    _, key = installed(live_app)
    assert ask(live_app, key, PHONE_NUMBER=WEBSITE_LEAD).json() == {
        "USER_ID": 4,
        "USER_PHONE_INNER": None,
        "CRM_ENTITY_TYPE": "LEAD",
        "CRM_ENTITY_ID": 1001,
    }


# --- nobody ------------------------------------------------------------------------------------


def test_a_number_nobody_has_answers_nulls(live_app: LiveApp):
    _, key = installed(live_app)
    response = ask(live_app, key, PHONE_NUMBER=UNKNOWN)
    assert response.status_code == 200
    assert response.json() == NULLS == NOBODY.as_json()
    assert searches(live_app) == 1


def test_a_slow_bitrix24_answers_nulls_within_2_seconds_and_rests(live_app: LiveApp):
    portal, key = installed(live_app)
    faults.set_latency(live_app.dev, portal, 5.0)

    started = time.monotonic()
    response = ask(live_app, key, PHONE_NUMBER=JOHN_DOE)
    elapsed = time.monotonic() - started

    assert (response.status_code, response.json()) == (200, NULLS)
    assert elapsed < 2.5
    # the portal did not answer at all: the next caller is not made to wait for it again
    started = time.monotonic()
    assert ask(live_app, key, PHONE_NUMBER=WEBSITE_LEAD).json() == NULLS
    assert time.monotonic() - started < 0.5


def test_a_rate_limited_portal_answers_nulls_at_once(live_app: LiveApp):
    portal, key = installed(live_app)
    faults.set_rest_error(live_app.dev, portal, "QUERY_LIMIT_EXCEEDED")
    before = searches(live_app)

    started = time.monotonic()
    response = ask(live_app, key, PHONE_NUMBER=JOHN_DOE)

    assert (response.status_code, response.json()) == (200, NULLS)
    assert time.monotonic() - started < 1.0
    assert searches(live_app) - before == 1  # not retried: the PBX is waiting
    faults.clear(live_app.dev, portal)
    assert (
        ask(live_app, key, PHONE_NUMBER=JOHN_DOE).json() == NULLS
    )  # not sent before the block ends
    assert searches(live_app) - before == 1


def test_a_paused_portal_is_not_asked(live_app: LiveApp):
    portal, key = installed(live_app)
    with live_app.app.app_context():
        portal_health.pause(
            get_db(), portal_id(live_app, portal), code="TIMED_OUT", reason="x", now=utcnow()
        )
    assert ask(live_app, key, PHONE_NUMBER=JOHN_DOE).json() == NULLS
    assert searches(live_app) == 0


def test_a_portal_that_is_down_answers_nulls(live_app: LiveApp):
    portal, key = installed(live_app)
    faults.set_outage(live_app.dev, portal, "503")
    response = ask(live_app, key, PHONE_NUMBER=JOHN_DOE)
    assert (response.status_code, response.json()) == (200, NULLS)


def test_an_oauth_server_failing_the_refresh_answers_nulls_and_rests_the_portal(
    live_app: LiveApp,
):
    """The portal's token had to be renewed and the OAuth server answered an error page: the
    PBX gets nulls at once, and the next callers are not made to wait on the OAuth server too."""
    portal, key = installed(live_app)
    faults.expire_tokens(live_app.dev, portal)
    with oauth_in_front(live_app) as front:
        front.mode = "html503"
        assert ask(live_app, key, PHONE_NUMBER=JOHN_DOE).json() == NULLS
        assert front.asked == 1
        assert ask(live_app, key, PHONE_NUMBER=WEBSITE_LEAD).json() == NULLS
        assert front.asked == 1  # rested: not asked again
    assert searches(live_app) == 1  # the first, refused for its expired token


# --- cached ------------------------------------------------------------------------------------


def test_a_second_ask_is_answered_from_the_cache(live_app: LiveApp):
    portal, key = installed(live_app)
    first = ask(live_app, key, PHONE_NUMBER=JOHN_DOE).json()
    before = searches(live_app)
    portal.crm.clear()  # Bitrix24 would now answer nobody: the cache still knows

    assert ask(live_app, key, PHONE_NUMBER=JOHN_DOE).json() == first
    assert searches(live_app) - before == 0
    assert ask(live_app, key, PHONE_NUMBER=UNKNOWN).json() == NULLS
    assert ask(live_app, key, PHONE_NUMBER=UNKNOWN).json() == NULLS
    assert searches(live_app) - before == 1  # nothing found is cached too
    assert (FOUND_TTL, NOT_FOUND_TTL) == (60.0, 15.0)


def test_callers_asking_at_once_share_one_search(live_app: LiveApp):
    portal, key = installed(live_app)
    faults.set_latency(live_app.dev, portal, 0.5)
    answers: list[Any] = []

    def one() -> None:
        answers.append(ask(live_app, key, PHONE_NUMBER=JOHN_DOE).json())

    threads = [threading.Thread(target=one) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert [a["USER_ID"] for a in answers] == [2] * 5
    assert searches(live_app) == 1


# --- the throttle --------------------------------------------------------------------------------


def test_routes_do_not_take_the_slots_the_delivery_needs(live_app: LiveApp):
    """The worker is draining a backlog: it has taken the whole burst. Routes send nothing and
    book nothing, so the worker's next batch waits no longer than it would without them."""
    portal, key = installed(live_app)
    with live_app.app.app_context():
        throttle = Throttle(get_db())
        for _ in range(STANDARD.burst):
            throttle.reserve(portal_id(live_app, portal), STANDARD)
    booked = next_slot_at(live_app, portal)
    before = searches(live_app)

    answers = [ask(live_app, key, PHONE_NUMBER=f"+1555000{n:04d}").json() for n in range(30)]

    assert answers == [NULLS] * 30
    assert searches(live_app) - before == 0
    assert next_slot_at(live_app, portal) == booked


def test_many_routes_leave_the_worker_half_the_burst(live_app: LiveApp):
    portal, key = installed(live_app)
    answers = [ask(live_app, key, PHONE_NUMBER=f"+1555000{n:04d}").json() for n in range(40)]

    sent = searches(live_app)
    with live_app.app.app_context():
        throttle = Throttle(get_db())
        waits = [throttle.reserve(portal_id(live_app, portal), STANDARD) for _ in range(20)]

    assert answers == [NULLS] * 40
    assert sent > 10  # the spare half of the burst was used
    assert waits == [0.0] * 20  # the other half is the worker's, without waiting


# --- refused -------------------------------------------------------------------------------------


def test_without_phone_number_it_is_422_naming_it(live_app: LiveApp):
    _, key = installed(live_app)
    response = ask(live_app, key)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:b24app:pbx:problem:invalid-fields"
    assert [e["field"] for e in body["errors"]] == ["PHONE_NUMBER"]
    assert searches(live_app) == 0


def test_bad_phone_numbers_and_fields_are_422_naming_them(live_app: LiveApp):
    _, key = installed(live_app)
    cases = [
        ({"PHONE_NUMBER": ""}, "PHONE_NUMBER", "must not be empty"),
        ({"PHONE_NUMBER": "anonymous"}, "PHONE_NUMBER", "no digits"),
        ({"PHONE_NUMBER": "1" * 65}, "PHONE_NUMBER", "at most 64"),
        ({"PHONE_NUMBER": ["1", "2"]}, "PHONE_NUMBER", "once"),
        ({"PHONE_NUMBER": JOHN_DOE, "phone": "1"}, "phone", "unknown field"),
    ]
    for query, field, words in cases:
        response = ask(live_app, key, **query)
        assert response.status_code == 422, query
        [error] = response.json()["errors"]
        assert error["field"] == field and words in error["message"], (query, error)
    assert searches(live_app) == 0


def test_without_a_key_it_is_401(live_app: LiveApp):
    installed(live_app)
    response = ask(live_app, None, PHONE_NUMBER=JOHN_DOE)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert ask(live_app, "b24pbx_" + "x" * 43, PHONE_NUMBER=JOHN_DOE).status_code == 401
    assert searches(live_app) == 0


def test_the_openapi_description_names_the_answers_fields(live_app: LiveApp):
    schema = openapi.document()["components"]["schemas"]["Route"]
    assert list(schema["properties"]) == list(NOBODY.as_json()) == schema["required"]
    assert (
        "/pbx/v1/route"
        in requests.get(live_app.url + "/pbx/v1/openapi.json", timeout=10).json()["paths"]
    )
