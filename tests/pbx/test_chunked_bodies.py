"""Bodies without a Content-Length (Transfer-Encoding: chunked, which the server de-chunks and
marks `wsgi.input_terminated`): over 1 MiB they are 413 like any other, never cut at 1 MiB and
processed. Werkzeug's LimitedStream stopped at exactly the limit without looking further, so a
form lost its fields past 1 MiB (a busy call stored as missed) and JSON was 400 "char 1048576".

Here the app itself, through the test client and through Werkzeug's server (`make run`'s);
the production web process (gunicorn, b24app/web_worker.py): tests/test_web_worker.py."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from tests.conftest import LiveApp
from tests.pbx import FINISH, bearer, finish_request, make_portal, stored_calls
from tests.pbx.test_intake import assert_problem

LIMIT = 1024 * 1024
FORM = "application/x-www-form-urlencoded"
CALL = "PBX_CALL_ID=nc-3&CALL_ID=externalCall.1&USER_ID=1&DURATION=0"


def padded_form(size: int) -> bytes:
    """CALL, `&`s, and STATUS_CODE=BUSY last: exactly `size` bytes."""
    tail = "&STATUS_CODE=BUSY"
    return (CALL + "&" * (size - len(CALL) - len(tail)) + tail).encode()


def padded_json(size: int) -> bytes:
    start = '{"PBX_CALL_ID": "nc-3", "CALL_ID": "externalCall.1", "USER_ID": 1, "DURATION": 0'
    end = ', "STATUS_CODE": "BUSY"}'
    return (start + " " * (size - len(start) - len(end)) + end).encode()


OVER = [(padded_form(LIMIT + 100_000), FORM), (padded_json(LIMIT + 100_000), "application/json")]


@pytest.fixture
def key(app: Flask) -> str:
    return make_portal(app, "portal-a")


def chunked(client: FlaskClient, key: str, body: bytes, content_type: str) -> Any:
    """A POST as a server hands on a chunked body: no Content-Length, the input terminated."""
    environ = EnvironBuilder(
        path=FINISH,
        method="POST",
        input_stream=io.BytesIO(body),
        headers=bearer(key) | {"Content-Type": content_type, "Transfer-Encoding": "chunked"},
    ).get_environ()
    del environ["CONTENT_LENGTH"]  # the test client measures the stream; a chunked body has none
    environ["wsgi.input_terminated"] = True
    return client.open(Request(environ))  # a dict would be rebuilt, measured again


@pytest.mark.parametrize(("body", "content_type"), OVER, ids=["form", "json"])
def test_a_body_without_length_over_1_mib_is_413(app, client, key, body, content_type):
    problem = assert_problem(chunked(client, key, body, content_type), 413)
    assert "at most 1 MiB" in problem["detail"]
    assert stored_calls(app) == []


@pytest.mark.parametrize("make", [padded_form, padded_json], ids=["form", "json"])
def test_a_body_without_length_of_exactly_1_mib_is_read_whole(app, client, key, make):
    content_type = FORM if make is padded_form else "application/json"
    response = chunked(client, key, make(LIMIT), content_type)
    assert response.status_code == 202, response.get_data(as_text=True)[:300]
    assert finish_request(app, response.get_json()["id"])["STATUS_CODE"] == "486"  # busy


def pieces(body: bytes, size: int) -> Iterator[bytes]:
    """`requests` sends a generator's pieces as chunks (Transfer-Encoding: chunked)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize(("body", "ctype"), OVER, ids=["form", "json"])
def test_werkzeugs_server_answers_413_to_a_chunked_body_over_1_mib(live_app: LiveApp, body, ctype):
    key = make_portal(live_app.app, "portal-live")
    response = requests.post(
        live_app.url + FINISH,
        data=pieces(body, 65536),
        headers=bearer(key) | {"Content-Type": ctype},
        timeout=30,
    )
    assert response.status_code == 413, response.text[:300]
    assert json.loads(response.text)["type"].endswith("body-too-large")
    assert stored_calls(live_app.app) == []
