"""Oversized and malformed requests on every endpoint: always an answer (4xx, or the 503 of a
readiness probe), never a 500 and never a stack trace. Each request carries valid credentials
(a PBX key, an administrator's page token), so the hostile body reaches the code behind the
door instead of bouncing off the authentication."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask

from tests.conftest import LiveApp
from tests.security import install
from tests.settings_page.conftest import open_page

MIB = 1024 * 1024
NUL = "\x00"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

# What a hostile client can put in a body, by name: (content type, raw bytes)
BODIES: dict[str, tuple[str, bytes]] = {
    "form over 1 MiB": (FORM, b"member_id=" + b"x" * (2 * MIB)),
    "json over 1 MiB": (JSON, b'{"CALL_ID": "' + b"x" * (2 * MIB) + b'"}'),
    "deeply nested json": (JSON, b"[" * 100_000 + b"]" * 100_000),
    "deeply nested brackets": (FORM, b"auth" + b"[a]" * 50_000 + b"=1"),
    "20,000 form fields": (FORM, "&".join(f"f{i}=v" for i in range(20_000)).encode()),
    "invalid utf-8 form": (FORM, b"member_id=\xff\xfe&AUTH_ID=%ff%fe%00&LANG=\xc3"),
    "invalid utf-8 json": (JSON, b'{"CALL_ID": "\xff\xfe", "settings": {"currency": "\xc3"}}'),
    "nul bytes in json": (
        JSON,
        json.dumps(
            {
                "CALL_ID": NUL,
                "PBX_CALL_ID": f"a{NUL}b",
                "settings": {f"currency{NUL}": NUL, "timezone": NUL, "fallback_user_id": NUL},
                "extension": NUL,
                "user_id": NUL,
                "replaces": NUL,
                "csv": f"{NUL},{NUL}\n101,{NUL}",
            }
        ).encode(),
    ),
    "nul bytes in a form": (
        FORM,
        b"member_id=%00&AUTH_ID=%00&REFRESH_ID=%00&APPLICATION_TOKEN=%00&event=%00"
        b"&auth[member_id]=%00&auth[application_token]=%00&CALL_ID=%00&%00=%00",
    ),
    "values of the wrong type": (
        JSON,
        json.dumps(
            {
                "settings": [1, 2],
                "extension": {"a": 1},
                "user_id": [1],
                "replaces": {"x": 1},
                "csv": 5,
                "confirm": "true",
                "CALL_ID": {"$gt": ""},
                "DURATION": 1e308,
            }
        ).encode(),
    ),
    "broken multipart": (
        "multipart/form-data; boundary=x",
        b'--x\r\nContent-Disposition: form-data; name="member_id"\r\n\r\nabc',
    ),
    "multipart without a boundary": ("multipart/form-data", b"member_id=abc"),
    "odd content type": ("application/json; charset=utf-7", b"+AHsAfQ-"),
    "no content type": ("", b"\x00\x01\x02"),
}

# Query strings a hostile client can send, by name
QUERIES: dict[str, str] = {
    "huge query": "a=" + "x" * 60_000,
    "nul and bad numbers": "member_id=%00&state=%00&code=%00&show=%00&limit=-1&DOMAIN=%00&LANG=%00",
    "huge numbers": "limit=" + "9" * 5000 + "&LANG=" + "x" * 5000,
    "repeated": "&".join(["member_id=a", "member_id=b"] * 1000),
}


@dataclass
class Door:
    method: str
    path: str


def doors(app: Flask) -> Iterator[Door]:
    """Every route the app serves, each method, path parameters filled with hostile text."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint.endswith("static"):
            continue
        path = rule.rule.replace("<public_id>", "%00" + "f" * 31)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield Door(method, path)


@pytest.fixture
def armed(live_app: LiveApp) -> dict[str, str]:
    """Headers of a PBX and of an administrator's settings page, both genuine."""
    alpha = install(live_app, "alpha")
    page = open_page(live_app, alpha.portal)
    return {"Authorization": f"Bearer {alpha.key}", "X-Page-Token": page.token}


def crashes(live: LiveApp, headers: dict[str, str], **request: Any) -> list[str]:
    """Every door that answered a 5xx (other than /readyz's 503) or showed a traceback."""
    client = live.app.test_client()
    found = []
    for door in doors(live.app):
        answer = client.open(door.path, method=door.method, headers=headers, **request)
        body = answer.get_data(as_text=True)
        expected_503 = door.path == "/readyz" and answer.status_code == 503
        if (answer.status_code >= 500 and not expected_503) or "Traceback" in body:
            found.append(f"{door.method} {door.path}: {answer.status_code} {body[:200]}")
    return found


@pytest.mark.parametrize("name", list(BODIES))
def test_hostile_bodies_get_an_answer_at_every_door(
    live_app: LiveApp, armed: dict[str, str], name: str
):
    content_type, body = BODIES[name]
    headers = {**armed, "Content-Type": content_type} if content_type else armed
    assert crashes(live_app, headers, data=body) == []


@pytest.mark.parametrize("name", list(QUERIES))
def test_hostile_query_strings_get_an_answer_at_every_door(
    live_app: LiveApp, armed: dict[str, str], name: str
):
    assert crashes(live_app, armed, query_string=QUERIES[name]) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer " + "b24pbx_" + "A" * 100_000},
        {"Authorization": "Bearer b24pbx_\x00"},
        {"Authorization": "Basic " + "A" * 1000, "X-Page-Token": "." * 10_000},
        {"X-Page-Token": "eyJtIjoiXHUwMDAwIiwidSI6MSwiYSI6dHJ1ZSwibCI6ImVuIn0.x.y"},
        {"Content-Length": "1", "Content-Type": JSON},
    ],
)
def test_hostile_headers_get_an_answer_at_every_door(live_app: LiveApp, headers: dict[str, str]):
    install(live_app, "alpha")
    assert crashes(live_app, headers) == []
