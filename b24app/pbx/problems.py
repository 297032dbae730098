"""Results → HTTP answers, in one place: RFC 9457 `application/problem+json` for every error.

Each `Code` has one row in ANSWERS: its HTTP status, a short title that never changes, and the
problem `type` (a URN; docs/pbx-status-codes.md and the OpenAPI description list them). The body
always carries `errors` (possibly empty), each `{"field": <Bitrix24 name>, "message": ...}`, so a
PBX's admin sees every bad field of a request at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import Response

from b24app.pbx.intake import Code, Result

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:b24app:pbx:problem:"
REALM = 'Bearer realm="b24app PBX API"'


@dataclass(frozen=True)
class Answer:
    status: int
    title: str


ANSWERS: dict[Code, Answer] = {
    Code.ACCEPTED: Answer(202, "Accepted"),
    Code.REPEATED: Answer(202, "Accepted"),
    Code.FOUND: Answer(200, "OK"),
    Code.MISSING_KEY: Answer(401, "PBX key missing"),
    Code.MALFORMED_KEY: Answer(401, "PBX key malformed"),
    Code.UNKNOWN_KEY: Answer(401, "PBX key unknown or revoked"),
    Code.UNINSTALLED: Answer(401, "Application uninstalled from the portal"),
    Code.PORTAL_DELETED: Answer(401, "Portal deleted"),
    Code.UNREADABLE_BODY: Answer(400, "Unreadable body"),
    Code.NOT_FOUND: Answer(404, "Not found"),
    Code.METHOD_NOT_ALLOWED: Answer(405, "Method not allowed"),
    Code.CONFLICT: Answer(409, "Call already accepted with other values"),
    Code.BODY_TOO_LARGE: Answer(413, "Body too large"),
    Code.UNSUPPORTED_MEDIA_TYPE: Answer(415, "Unsupported content type"),
    Code.INVALID_FIELDS: Answer(422, "Invalid fields"),
    Code.RATE_LIMITED: Answer(429, "Too many requests"),
    Code.INTERNAL_ERROR: Answer(500, "Internal error"),
    Code.STORE_UNAVAILABLE: Answer(503, "Temporarily unavailable"),
    Code.STORAGE_FULL: Answer(507, "Recording storage full"),
}
RETRY_AFTER_SECONDS = 5


def problem_type(code: Code) -> str:
    return TYPE_PREFIX + code.value.replace("_", "-")


def answer(result: Result, *, headers: dict[str, str] | None = None) -> Response:
    """The HTTP answer for any result of the intake, auth or lookup."""
    spec = ANSWERS[result.code]
    if result.code in (Code.ACCEPTED, Code.REPEATED):
        assert result.call is not None
        body = {"id": result.call["id"], "state": result.call["state"]}
        response = _json(body, spec.status, "application/json")
        response.headers["Location"] = f"/pbx/v1/calls/{result.call['id']}"
        return response
    if result.code is Code.FOUND:
        return _json(result.call or {}, spec.status, "application/json")
    return problem(result, headers=headers)


def problem(result: Result, *, headers: dict[str, str] | None = None) -> Response:
    spec = ANSWERS[result.code]
    body: dict[str, Any] = {
        "type": problem_type(result.code),
        "title": spec.title,
        "status": spec.status,
        "detail": result.detail or spec.title,
        "errors": [{"field": e.field, "message": e.message} for e in result.errors],
    }
    if result.code is Code.CONFLICT and result.call:
        body["id"] = result.call["id"]  # the call already accepted under this key
    response = _json(body, spec.status, PROBLEM_JSON)
    if spec.status == 401:
        invalid = result.code is not Code.MISSING_KEY
        response.headers["WWW-Authenticate"] = REALM + (
            ', error="invalid_token"' if invalid else ""
        )
    if spec.status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers.update(headers or {})
    return response


def _json(body: dict[str, Any], status: int, content_type: str) -> Response:
    return Response(json.dumps(body), status=status, content_type=content_type)
