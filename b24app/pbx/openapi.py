"""The OpenAPI 3.1 description of the PBX API, served at `GET /pbx/v1/openapi.json`.

The request schema is derived from `schemas.FinishRequest` (field names, types, limits,
descriptions), the answers from problems.ANSWERS, so the document cannot drift from the code;
tests/pbx/test_openapi.py also posts the document's examples to the real endpoint.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from b24app.pbx import status_codes
from b24app.pbx.intake import Code
from b24app.pbx.problems import ANSWERS, PROBLEM_JSON, problem_type
from b24app.pbx.schemas import FINISH_REQUIRED, REGISTRATION_REQUIRED, FinishRequest

TEXT_FIELDS_ALSO_INTEGER = ("CALL_ID", "PBX_CALL_ID", "USER_PHONE_INNER", "PHONE_NUMBER",
                            "LINE_NUMBER", "STATUS_CODE", "FAILED_REASON")  # fmt: skip

EXAMPLES: dict[str, dict[str, Any]] = {
    "registered": {
        "summary": "A call the PBX registered itself (it has Bitrix24's CALL_ID)",
        "value": {
            "CALL_ID": "externalCall.716f1cb73def9700a23842adf9c4c568.1773130779",
            "USER_ID": 1,
            "DURATION": 95,
            "STATUS_CODE": "200",
            "VOTE": 5,
            "ADD_TO_CHAT": 0,
        },
    },
    "unregistered": {
        "summary": "A call Bitrix24 never saw: registered, then finished, in one go",
        "value": {
            "PBX_CALL_ID": "1709884800.42",
            "PHONE_NUMBER": "+15551234567",
            "TYPE": 2,
            "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
            "USER_PHONE_INNER": "101",
            "DURATION": 42,
            "STATUS_CODE": "ANSWER",
            "RECORD_URL": "https://pbx.example.com/recordings/1709884800.42.mp3",
        },
    },
    "missed": {
        "summary": "A missed call with an Asterisk CDR disposition and a cost",
        "value": {
            "PBX_CALL_ID": "1709884800.43",
            "PHONE_NUMBER": "+15557654321",
            "TYPE": 2,
            "CALL_START_DATE": "2026-03-07T10:25:00",
            "USER_ID": 1,
            "DURATION": 0,
            "STATUS_CODE": "NO ANSWER",
            "COST": 0.0,
        },
    },
}


@cache
def document() -> dict[str, Any]:
    """The whole description (built once; callers get the same object, so never mutate it)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "b24app PBX API",
            "version": "1.0.0",
            "description": (
                "Tell Bitrix24 that a call ended. Each portal's PBX has its own key (the app's "
                "settings page in Bitrix24 shows it). Calls are stored durably and delivered to "
                "Bitrix24 (telephony.externalCall.finish) by a worker, once, within Bitrix24's "
                "rate limits. PBX status values are mapped as docs/pbx-status-codes.md lists."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"pbxKey": []}],
        "paths": _paths(),
        "components": _components(),
    }


def _paths() -> dict[str, Any]:
    body = {"$ref": "#/components/schemas/FinishRequest"}
    return {
        "/pbx/v1/calls/finish": {
            "post": {
                "operationId": "finishCall",
                "summary": "Finish a call",
                "description": (
                    "Stores the call and answers 202 once it is durably stored. A repeat (same "
                    "PBX_CALL_ID, or same CALL_ID without PBX_CALL_ID) with equal fields answers "
                    "202 with the same id and is delivered only once; with different fields, 409."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": body, "examples": EXAMPLES},
                        "application/x-www-form-urlencoded": {"schema": body},
                        "multipart/form-data": {"schema": body},
                    },
                },
                "responses": {
                    "202": {
                        "description": "Stored (or already stored with equal fields).",
                        "headers": {
                            "Location": {
                                "description": "/pbx/v1/calls/{id}",
                                "schema": {"type": "string"},
                            }
                        },
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/CallAccepted"}
                            }
                        },
                    },
                    **_problems(
                        Code.UNREADABLE_BODY,
                        Code.MISSING_KEY,
                        Code.CONFLICT,
                        Code.BODY_TOO_LARGE,
                        Code.UNSUPPORTED_MEDIA_TYPE,
                        Code.INVALID_FIELDS,
                        Code.RATE_LIMITED,
                        Code.STORE_UNAVAILABLE,
                    ),
                },
            }
        },
        "/pbx/v1/calls/{id}": {
            "get": {
                "operationId": "getCall",
                "summary": "A call's delivery state",
                "parameters": [
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "description": "The id the 202 answer gave.",
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The call (only calls sent with the same portal's key).",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Call"}}
                        },
                    },
                    **_problems(
                        Code.MISSING_KEY, Code.NOT_FOUND, Code.RATE_LIMITED, Code.STORE_UNAVAILABLE
                    ),
                },
            }
        },
        "/pbx/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This description",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def _problems(*codes: Code) -> dict[str, Any]:
    """Problem answers by HTTP status; the description lists every problem type of that status."""
    answers: dict[str, Any] = {}
    for code in codes:
        status = ANSWERS[code].status
        kinds = [c for c, a in ANSWERS.items() if a.status == status]
        headers = (
            {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
            if status == 401
            else {}
        )
        answers[str(status)] = {
            "description": "; ".join(f"{problem_type(c)}: {ANSWERS[c].title}" for c in kinds),
            **({"headers": headers} if headers else {}),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return answers


def _components() -> dict[str, Any]:
    return {
        "securitySchemes": {
            "pbxKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "The portal's PBX key: Authorization: Bearer b24pbx_…",
            }
        },
        "schemas": {
            "FinishRequest": request_schema(),
            "CallAccepted": {
                "type": "object",
                "required": ["id", "state"],
                "properties": {
                    "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "state": {"$ref": "#/components/schemas/CallState"},
                },
            },
            "CallState": {
                "type": "string",
                "enum": ["queued", "delivering", "delivered", "failed"],
            },
            "Call": {
                "type": "object",
                "required": ["id", "state", "error", "result"],
                "properties": {
                    "id": {"type": "string"},
                    "state": {"$ref": "#/components/schemas/CallState"},
                    "error": {
                        "type": ["string", "null"],
                        "description": "Why delivery failed or is being retried, in words.",
                    },
                    "error_code": {"type": ["string", "null"]},
                    "result": {
                        "type": ["object", "null"],
                        "description": "Bitrix24's answer to telephony.externalCall.finish.",
                    },
                    "attempts": {"type": "integer"},
                    "bitrix_call_id": {"type": ["string", "null"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "delivered_at": {"type": ["string", "null"], "format": "date-time"},
                },
            },
            "Problem": {
                "type": "object",
                "description": "RFC 9457 problem details.",
                "required": ["type", "title", "status", "detail", "errors"],
                "properties": {
                    "type": {"type": "string", "format": "uri"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["field", "message"],
                            "properties": {
                                "field": {
                                    "type": "string",
                                    "description": "The field's Bitrix24 name",
                                },
                                "message": {"type": "string"},
                            },
                        },
                    },
                    "id": {
                        "type": "string",
                        "description": "409 only: the call already accepted under this key.",
                    },
                },
            },
        },
    }


def request_schema() -> dict[str, Any]:
    """FinishRequest's JSON Schema, made to read as API documentation."""
    schema = copy.deepcopy(FinishRequest.model_json_schema())
    schema["description"] = (
        "Field names are Bitrix24's (telephony.externalCall.finish, and "
        "telephony.externalCall.register for calls without CALL_ID). "
        + ", ".join(FINISH_REQUIRED)
        + " is always required. Either CALL_ID or "
        "PBX_CALL_ID is required; without CALL_ID also " + ", ".join(REGISTRATION_REQUIRED) + ". "
        "USER_ID or USER_PHONE_INNER is required unless the portal has a fallback user. "
        "Surrounding whitespace is ignored and empty values count as absent. Form values are "
        'strings ("95"); JSON may send numbers as such strings too. Unknown fields are refused.'
    )
    schema["required"] = list(FINISH_REQUIRED)
    schema["anyOf"] = [
        {"required": ["CALL_ID"]},
        {"required": ["PBX_CALL_ID", *REGISTRATION_REQUIRED]},
    ]
    for name, prop in schema["properties"].items():
        prop["title"] = name
        if name in TEXT_FIELDS_ALSO_INTEGER:
            prop["anyOf"].insert(1, {"type": "integer"})
    status = schema["properties"]["STATUS_CODE"]
    status["x-native-values"] = sorted({row.native for row in status_codes.TABLE})
    return schema
