"""Property: whatever a PBX sends, the intake answers without a 5xx, every error is problem+json
naming fields, and every call it accepts is stored valid (its stored `request` validates to
itself again, so the delivery never meets a bad call)."""

from __future__ import annotations

import json
import string
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from b24app.pbx import status_codes
from b24app.pbx.schemas import FIELDS, validate_finish
from tests.pbx import FINISH, REGISTERED, UNREGISTERED, bearer, finish_request, make_portal

CURRENCIES = ["RUB", "USD", "EUR"]
ANSWERS = {202, 400, 409, 413, 415, 422}
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

names = st.one_of(
    st.sampled_from(FIELDS),
    st.sampled_from(FIELDS).map(str.lower),
    st.text(min_size=0, max_size=12),
)
digits = st.integers(min_value=-(10**20), max_value=10**20).map(str)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    digits,
    st.sampled_from(
        [
            "",
            " ",
            "9.5",
            "1e3",
            "0",
            "1",
            "5",
            "ANSWER",
            "no answer",
            "16",
            "487",
            "OTHER",
            "603-S",
            "eur",
            "GBP",
            "https://pbx.example.com/r.mp3",
            "ftp://x",
            "2026-03-07T10:20:30",
            "2026-03-07T10:20:30+03:00",
            "2026-02-30T10:00:00",
            "+15551234567",
            "anonymous",
            "\x00",
            "a\x00b",
            "\ud800",
            "x\udfff",
            "é",
            "☎",
            "x" * 300,
        ]
    ),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(), scalars))


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a valid value, sometimes its text, sometimes anything at all."""
    return st.integers(0, 9).flatmap(
        lambda n: valid if n < 7 else valid.map(str) if n < 9 else values
    )


ids = st.text(alphabet=string.ascii_letters + string.digits + ".-_", min_size=1, max_size=40)
flags = st.sampled_from([0, 1, "0", "1", True, False])
VALID = {
    "CALL_ID": ids,
    "PBX_CALL_ID": ids,
    "USER_ID": st.integers(1, 2**31 - 1),
    "USER_PHONE_INNER": st.integers(100, 999),
    "DURATION": st.one_of(st.integers(0, 10**6), st.integers(0, 10**6).map(float)),
    "COST": st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
    "COST_CURRENCY": st.sampled_from(["RUB", "USD", "EUR", "eur", " usd "]),
    "STATUS_CODE": st.one_of(
        st.sampled_from([r.native for r in status_codes.TABLE] + list(status_codes.BITRIX_CODES)),
        st.text(max_size=20),
        st.integers(0, 700),
    ),
    "FAILED_REASON": st.text(max_size=300),
    "RECORD_URL": ids.map(lambda path: f"https://pbx.example.com/{path}.mp3"),
    "VOTE": st.integers(0, 5),
    "ADD_TO_CHAT": flags,
    "PHONE_NUMBER": st.from_regex(r"\+?[0-9][0-9 ]{2,14}", fullmatch=True),
    "TYPE": st.integers(1, 5),
    "CALL_START_DATE": st.builds(
        lambda when, offset: when.isoformat(timespec="seconds") + offset,
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
        st.sampled_from(["", "Z", "+03:00", "-05:30"]),
    ),
    "LINE_NUMBER": st.integers(1, 10**10),
    "CRM_CREATE": flags,
    "SHOW": flags,
}
overrides = st.builds(
    lambda known, unknown: {**known, **unknown},
    st.lists(st.sampled_from(FIELDS), max_size=5, unique=True).flatmap(
        lambda chosen: st.fixed_dictionaries({name: mostly(VALID[name]) for name in chosen})
    ),
    st.one_of(st.just({}), st.just({}), st.dictionaries(names, values, max_size=2)),
)
bases = st.sampled_from([UNREGISTERED, REGISTERED, {}])


def _rekey(base: dict[str, Any], key: str | None) -> dict[str, Any]:
    """A fresh idempotency key, mostly (None keeps the base's, so repeats happen too)."""
    if key is None:
        return base
    return {name: key if name in ("CALL_ID", "PBX_CALL_ID") else v for name, v in base.items()}


def json_bodies() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda base, key, extra: {**_rekey(base, key), **extra},
        bases,
        st.one_of(st.none(), st.uuids().map(str), st.uuids().map(str)),
        overrides,
    )


def _form(value: Any) -> str:
    """Form text as a PBX can send it: no JSON nulls, no unpaired surrogates."""
    return "" if value is None else str(value).encode("utf-8", "replace").decode()


def form_bodies() -> st.SearchStrategy[list[tuple[str, str]]]:
    """Form pairs: every value as text; sometimes a field twice."""
    repeated = st.lists(st.tuples(names, st.text(max_size=10)), max_size=1)
    return st.builds(
        lambda body, more: [(_form(k), _form(v)) for k, v in [*body.items(), *more]],
        json_bodies(),
        st.one_of(st.just([]), st.just([]), repeated),
    )


content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/problem+json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/plain",
        "",
        "application/octet-stream",
        "multipart/form-data; boundary=nonsense",
    ]
)
raw_bytes = st.one_of(
    st.binary(max_size=200),
    st.text(alphabet=string.printable, max_size=200).map(str.encode),
    json_bodies().map(lambda b: json.dumps(b).encode()),
)


@pytest.fixture
def key(app: Flask) -> str:
    limiter = app.extensions.get("b24app.limiter")
    if limiter is not None:  # hundreds of requests a second are the point here
        limiter.enabled = False
    return make_portal(app, "portal-p", currencies=CURRENCIES)


def check(app: Flask, response: Any) -> None:
    """The properties every answer must have."""
    event(f"HTTP {response.status_code}")
    assert response.status_code in ANSWERS, (response.status_code, response.get_data())
    body = json.loads(response.get_data())
    if response.status_code != 202:
        assert response.content_type == "application/problem+json"
        assert body["status"] == response.status_code
        assert all(set(e) == {"field", "message"} for e in body["errors"])
        if response.status_code == 422:
            assert body["errors"], "a 422 names at least one field"
        return
    stored = finish_request(app, body["id"])
    again, errors = validate_finish(stored, currencies=CURRENCIES)
    assert errors == [], (stored, errors)
    assert again == stored, "a stored call validates to itself"


@PROPERTY
@given(body=json_bodies())
def test_any_json_object(app: Flask, client: FlaskClient, key: str, body: dict[str, Any]):
    data = json.dumps(body)  # an infinite float becomes "Infinity", which is not JSON: 400
    response = client.post(
        FINISH, data=data, headers=bearer(key) | {"Content-Type": "application/json"}
    )
    check(app, response)


@PROPERTY
@given(pairs=form_bodies(), multipart=st.booleans())
def test_any_form_body(
    app: Flask, client: FlaskClient, key: str, pairs: list[tuple[str, str]], multipart: bool
):
    from werkzeug.datastructures import MultiDict

    response = client.post(
        FINISH,
        data=MultiDict(pairs),
        headers=bearer(key),
        content_type="multipart/form-data" if multipart else "application/x-www-form-urlencoded",
    )
    check(app, response)


@settings(PROPERTY, max_examples=100)
@given(data=raw_bytes, content_type=content_types)
def test_any_bytes_with_any_content_type(
    app: Flask, client: FlaskClient, key: str, data: bytes, content_type: str
):
    headers = bearer(key) | ({"Content-Type": content_type} if content_type else {})
    check(app, client.post(FINISH, data=data, headers=headers))
