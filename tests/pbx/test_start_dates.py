"""CALL_START_DATE's range: a call's start is a date in the years 1970 to 2099 as written (with
or without an offset), so that no offset and no portal time zone can carry it out of what
Python's datetime and the journal's started_at can hold. Outside it: 422 naming the field, never
a 500 (which a PBX would send again for ever)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from b24app.db import get_db
from b24app.models import Portal, PortalSettings
from b24app.pbx.schemas import validate_finish, validate_start
from tests.pbx import FINISH, START, bearer, make_portal, stored_call, stored_calls
from tests.pbx.test_intake import assert_problem, error_fields

START_BODY: dict[str, Any] = {
    "PBX_CALL_ID": "nc-d1",
    "PHONE_NUMBER": "+1555",
    "TYPE": 2,
    "USER_ID": 2,
}
FINISH_BODY: dict[str, Any] = START_BODY | {"DURATION": 5}


@pytest.fixture
def key(app: Flask) -> str:
    """A portal in Europe/Berlin: a date without an offset is read there."""
    key = make_portal(app, "portal-berlin")
    with app.app_context(), get_db().write() as session:
        portal_id = session.query(Portal.id).filter_by(member_id="portal-berlin").scalar()
        session.execute(
            update(PortalSettings)
            .where(PortalSettings.portal_id == portal_id)
            .values(timezone="Europe/Berlin")
        )
    return key


OUT_OF_RANGE = [
    (START, "0001-01-01T00:00:00+01:00"),  # the newcomer's: OverflowError in UTCDateTime
    (FINISH, "9999-12-31T23:59:59-14:00"),
    (START, "0001-01-01T00:30:00"),  # no offset, read in Europe/Berlin: before year 1 in UTC
    (FINISH, "0001-01-01T00:30:00"),
    (START, "1969-12-31T23:59:59+00:00"),
    (START, "2100-01-01T00:00:00"),
    (FINISH, "2100-01-01 00:00:00Z"),
]


@pytest.mark.parametrize(("path", "when"), OUT_OF_RANGE)
def test_a_start_date_out_of_range_is_422_naming_it(app, client, key, path, when):
    body = (START_BODY if path == START else FINISH_BODY) | {"CALL_START_DATE": when}
    response = client.post(path, json=body, headers=bearer(key))
    errors = error_fields(assert_problem(response, 422))
    assert list(errors) == ["CALL_START_DATE"]
    assert "between 1970-01-01 and 2099-12-31" in errors["CALL_START_DATE"]
    assert stored_calls(app) == []


@pytest.mark.parametrize(
    ("when", "instant"),
    [
        ("1970-01-01T00:00:00+14:00", datetime(1969, 12, 31, 10, 0, tzinfo=UTC)),
        ("1970-01-01T00:00:00", datetime(1969, 12, 31, 23, 0, tzinfo=UTC)),  # Berlin: +01:00
        ("2099-12-31T23:59:59-14:00", datetime(2100, 1, 1, 13, 59, 59, tzinfo=UTC)),
        ("2099-12-31T23:59:59.999999", datetime(2099, 12, 31, 22, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_the_edges_of_the_range_are_accepted_and_journalled(app, client, key, when, instant):
    response = client.post(START, json=START_BODY | {"CALL_START_DATE": when}, headers=bearer(key))
    assert response.status_code == 202, response.get_data(as_text=True)
    assert stored_call(app, response.get_json()["id"]).started_at == instant


@pytest.mark.parametrize("validate", [validate_start, validate_finish])
def test_the_rule_is_the_validators_own(validate: Any) -> None:
    """Validating a stored request again gives the same answer whenever it is done: the range
    does not move with the clock."""
    body = FINISH_BODY if validate is validate_finish else START_BODY
    for when in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59"):
        request, errors = validate(body | {"CALL_START_DATE": when})
        assert request is None
        assert [error.field for error in errors] == ["CALL_START_DATE"]
    request, errors = validate(body | {"CALL_START_DATE": "2026-03-07T10:20:30+03:00"})
    assert errors == [] and request is not None
    assert validate(request) == (request, [])


def test_the_portal_time_zone_fixture_is_berlin(app: Flask, client: FlaskClient, key: str):
    """(The fixture's zone is what the offset-less cases above rely on.)"""
    response = client.post(
        START, json=START_BODY | {"CALL_START_DATE": "2026-07-01T12:00:00"}, headers=bearer(key)
    )
    assert response.status_code == 202
    started = stored_call(app, response.get_json()["id"]).started_at
    assert started == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
