"""Text in request bodies is decoded as declared and never repaired (issue 10, item 3;
b24app/textbody.py): bytes that are not valid text in their charset are a 400 naming the field
(or the body), with a hint about the charset, and nothing is stored; a declared charset such as
windows-1251 (common on Russian PBXs) is decoded as declared; one that cannot be is a 415."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from flask import Flask
from flask.testing import FlaskClient

from b24app.pbx.intake import read_fields
from tests.pbx import FINISH, REGISTERED, bearer, finish_request, make_portal, stored_calls

FORM = "application/x-www-form-urlencoded"
PROBLEM = "application/problem+json"
REASON = "Абонент занят"  # "subscriber busy", as a Russian PBX writes it


@pytest.fixture
def key(app: Flask) -> str:
    return make_portal(app, "portal-text")


def form_bytes(fields: dict[str, Any], charset: str = "utf-8") -> bytes:
    return "&".join(
        f"{name}={quote_from_bytes(str(value).encode(charset))}" for name, value in fields.items()
    ).encode("ascii")


def send(client: FlaskClient, key: str, body: bytes, content_type: str) -> Any:
    return client.post(FINISH, data=body, headers=bearer(key) | {"Content-Type": content_type})


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == PROBLEM
    return response.get_json(force=True)


def multipart(parts: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart body of (name, value bytes, part content type or None)."""
    lines = []
    for name, value, content_type in parts:
        lines.append(b'--b24\r\nContent-Disposition: form-data; name="' + name.encode() + b'"')
        if content_type:
            lines.append(b"Content-Type: " + content_type.encode())
        lines += [b"", value]
    return b"\r\n".join([*lines, b"--b24--", b""]), "multipart/form-data; boundary=b24"


# --- refused, never repaired ------------------------------------------------------------------

INVALID_FORMS = [
    pytest.param(form_bytes(REGISTERED) + b"&FAILED_REASON=%ff%fe", "FAILED_REASON", id="escaped"),
    pytest.param(form_bytes(REGISTERED) + b"&FAILED_REASON=\xff\xfe", "FAILED_REASON", id="raw"),
    pytest.param(b"CALL_ID=%ff%fe&" + form_bytes(REGISTERED), "CALL_ID", id="the issue's case"),
    pytest.param(form_bytes(REGISTERED) + b"&FAILED_REASON=%C0%AF", "FAILED_REASON", id="overlong"),
    pytest.param(form_bytes(REGISTERED) + b"&FAILED_REASON=%ED%A0%80", "FAILED_REASON", id="surr"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_FORMS)
def test_invalid_utf8_in_a_form_is_400_naming_the_field(app, client, key, body, field):
    answer = problem(send(client, key, body, FORM), 400)
    assert answer["errors"] == [{"field": field, "message": answer["errors"][0]["message"]}]
    message = answer["errors"][0]["message"]
    assert "not valid utf-8 text" in message and "charset=windows-1251" in message
    assert f"field {field} is not valid utf-8" in answer["detail"]
    assert stored_calls(app) == []


def test_invalid_bytes_in_a_field_name_say_the_body(app: Flask, client, key):
    answer = problem(send(client, key, form_bytes(REGISTERED) + b"&%ff=1", FORM), 400)
    assert answer["errors"] == []
    assert answer["detail"].startswith("the body is not valid utf-8 text (byte 0xFF)")
    assert stored_calls(app) == []


def test_invalid_utf8_in_a_multipart_field_is_400_naming_it(app: Flask, client, key):
    fields = [(name, str(value).encode(), None) for name, value in REGISTERED.items()]
    body, content_type = multipart([*fields, ("FAILED_REASON", b"busy \xff", None)])
    answer = problem(send(client, key, body, content_type), 400)
    assert [e["field"] for e in answer["errors"]] == ["FAILED_REASON"]
    assert stored_calls(app) == []


@pytest.mark.parametrize(
    ("body", "fields", "words"),
    [
        (b'{"CALL_ID": "c1", "DURATION": 5, "FAILED_REASON": "busy \xff"}', ["FAILED_REASON"],
         "field FAILED_REASON is not valid utf-8"),
        (b'{"CALL_ID": "c1", "DURATION": 5, "\xff": 1}', [], "the body is not valid utf-8"),
        (b'{"CALL_ID": "c1", "DURATION": 5, "X": {"Y": "\xff"}}', [], "the body is not valid"),
    ],
)  # fmt: skip
def test_invalid_utf8_in_json_is_400_naming_the_field_or_the_body(
    app, client, key, body, fields, words
):
    answer = problem(send(client, key, body, "application/json"), 400)
    assert [e["field"] for e in answer["errors"]] == fields
    assert answer["detail"].startswith(words) and "charset" in answer["detail"]
    assert stored_calls(app) == []


def test_a_form_and_json_with_the_same_bytes_get_the_same_answer(client, key):
    as_form = problem(send(client, key, b"CALL_ID=\xff&USER_ID=1&DURATION=5", FORM), 400)
    json_body = b'{"CALL_ID": "\xff", "USER_ID": 1, "DURATION": 5}'
    as_json = problem(send(client, key, json_body, "application/json"), 400)
    assert as_form["errors"] == as_json["errors"]
    assert [e["field"] for e in as_form["errors"]] == ["CALL_ID"]


# --- decoded as declared ----------------------------------------------------------------------


@pytest.mark.parametrize("charset", ["windows-1251", "cp1251", "koi8-r", "iso-8859-5", "UTF-8"])
def test_a_declared_charset_is_decoded_as_declared(app, client, key, charset):
    body = form_bytes(REGISTERED | {"FAILED_REASON": REASON}, charset)
    response = send(client, key, body, f"{FORM}; charset={charset}")
    assert response.status_code == 202, response.get_data(as_text=True)
    assert finish_request(app, response.get_json()["id"])["FAILED_REASON"] == REASON


def test_cp1251_bytes_without_a_declared_charset_are_refused_not_stored_as_mojibake(
    app, client, key
):
    body = form_bytes(REGISTERED | {"FAILED_REASON": REASON}, "windows-1251")
    answer = problem(send(client, key, body, FORM), 400)
    assert [e["field"] for e in answer["errors"]] == ["FAILED_REASON"]
    assert stored_calls(app) == []


def test_json_with_a_declared_charset_is_decoded_as_declared(app, client, key):
    fields = {"CALL_ID": "c1", "USER_ID": 1, "DURATION": 5, "FAILED_REASON": REASON}
    body = json.dumps(fields, ensure_ascii=False).encode("cp1251")
    response = send(client, key, body, "application/json; charset=windows-1251")
    assert response.status_code == 202, response.get_data(as_text=True)
    assert finish_request(app, response.get_json()["id"])["FAILED_REASON"] == REASON


def test_a_multipart_part_in_its_declared_charset_is_decoded(app, client, key):
    fields = [(name, str(value).encode(), None) for name, value in REGISTERED.items()]
    reason = ("FAILED_REASON", REASON.encode("koi8-r"), "text/plain; charset=koi8-r")
    body, content_type = multipart([*fields, reason])
    response = send(client, key, body, content_type)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert finish_request(app, response.get_json()["id"])["FAILED_REASON"] == REASON


def test_utf8_text_and_a_real_replacement_character_are_kept(app, client, key):
    body = form_bytes(REGISTERED | {"FAILED_REASON": REASON + " \ufffd"})
    response = send(client, key, body, FORM)
    assert response.status_code == 202
    assert finish_request(app, response.get_json()["id"])["FAILED_REASON"] == REASON + " \ufffd"


@pytest.mark.parametrize("charset", ["no-such-charset", "utf-16", "utf-32", "cp037", "base64"])
@pytest.mark.parametrize("content_type", [FORM, "application/json"])
def test_a_charset_that_cannot_be_decoded_as_declared_is_415(
    app, client, key, charset, content_type
):
    body = form_bytes(REGISTERED) if content_type == FORM else b'{"CALL_ID": "c1"}'
    answer = problem(send(client, key, body, f"{content_type}; charset={charset}"), 415)
    assert f"charset={charset} is not supported" in answer["detail"]
    assert stored_calls(app) == []


def test_read_fields_names_the_field_without_flask() -> None:
    result = read_fields(
        "application/json", body=lambda: b'{"PBX_CALL_ID": "\xc3\x28"}', form=lambda: []
    )
    assert not isinstance(result, dict)
    assert [e.field for e in result.errors] == ["PBX_CALL_ID"]


# --- Bitrix24's doors store no repaired text --------------------------------------------------


def test_the_installer_refuses_invalid_text_before_any_request(client: FlaskClient):
    body = b"AUTH_ID=%ff&REFRESH_ID=r&AUTH_EXPIRES=3600&member_id=m1&APPLICATION_TOKEN=t"
    response = client.post("/install?DOMAIN=a.bitrix24.com&PROTOCOL=1", data=body,
                           content_type=FORM)  # fmt: skip
    assert response.status_code == 400
    assert "AUTH_ID is not valid utf-8" in response.get_data(as_text=True)


def test_events_refuse_invalid_text(client: FlaskClient):
    body = b"event=ONAPPINSTALL&auth%5Bmember_id%5D=m1&auth%5Bapplication_token%5D=%ff"
    response = client.post("/events", data=body, content_type=FORM)
    assert response.status_code == 400
    assert "field auth[application_token] is not valid utf-8" in response.get_data(as_text=True)
