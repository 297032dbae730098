"""The OpenAPI 3.1 description of the PBX API, served at `GET /pbx/v1/openapi.json`.

Each event's request schema is derived from its model in schemas.py (`StartRequest`,
`RingRequest`, `AnswerRequest`, `FinishRequest`, `RecordRequest`: field names, types, limits,
descriptions), the answers from problems.ANSWERS, so the document cannot drift from the code;
tests/pbx/test_openapi.py also posts the document's examples to the real endpoints.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel

from b24app.models import EventKind, EventState, RecordingState
from b24app.pbx import status_codes
from b24app.pbx.intake import Code
from b24app.pbx.problems import ANSWERS, PROBLEM_JSON, problem_type
from b24app.pbx.schemas import (
    CRM_ENTITY_TYPES,
    EMPLOYEES,
    FILE,
    FINISH_REQUIRED,
    MAX_RUNG,
    REGISTRATION_REQUIRED,
    AnswerRequest,
    FinishRequest,
    RecordRequest,
    RingRequest,
    StartRequest,
)

TEXT_FIELDS_ALSO_INTEGER = ("CALL_ID", "PBX_CALL_ID", "USER_PHONE_INNER", "PHONE_NUMBER",
                            "LINE_NUMBER", "STATUS_CODE", "FAILED_REASON", "CRM_SOURCE",
                            "FILENAME")  # fmt: skip

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


EVENT_EXAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    "start": {
        "incoming": {
            "summary": "An incoming call rings at the PBX: register it with its line",
            "value": {
                "PBX_CALL_ID": "1709884800.42",
                "PHONE_NUMBER": "+15551234567",
                "TYPE": 2,
                "LINE_NUMBER": "74951234567",
                "USER_PHONE_INNER": "101",
                "CRM_CREATE": 1,
            },
        },
        "click-to-call": {
            "summary": "A call Bitrix24 started (OnExternalCallStart): bound to its CALL_ID",
            "value": {
                "PBX_CALL_ID": "1709884800.44",
                "CALL_ID": "externalCall.716f1cb73def9700a23842adf9c4c568.1773130779",
                "PHONE_NUMBER": "+15557654321",
                "TYPE": 1,
                "USER_ID": 1,
            },
        },
    },
    "ring": {
        "ring-group": {
            "summary": "A ring group: the card is shown to everyone whose phone rings",
            "value": {"PBX_CALL_ID": "1709884800.42", "USER_PHONE_INNER": ["101", "102", "103"]},
        },
        "one": {
            "summary": "One employee's phone rings",
            "value": {"PBX_CALL_ID": "1709884800.42", "USER_ID": 1},
        },
    },
    "answer": {
        "answered": {
            "summary": "An employee answered: the card is hidden from the others",
            "value": {"PBX_CALL_ID": "1709884800.42", "USER_PHONE_INNER": "102"},
        }
    },
    "finish": EXAMPLES
    | {
        "started": {
            "summary": "The end of a call whose start was sent: PBX_CALL_ID identifies it",
            "value": {"PBX_CALL_ID": "1709884800.42", "DURATION": 95, "STATUS_CODE": "ANSWER"},
        }
    },
    "record": {
        "url": {
            "summary": "b24app downloads the recording and attaches it after the finish",
            "value": {
                "PBX_CALL_ID": "1709884800.42",
                "RECORD_URL": "https://pbx.example.com/recordings/1709884800.42.mp3",
            },
        }
    },
}


@dataclass(frozen=True)
class Endpoint:
    """One event's POST: its path's last part, model, operationId, words, answers."""

    kind: str
    schema: str
    operation_id: str
    summary: str
    description: str
    problems: tuple[Code, ...] = ()


EVENT_PROBLEMS = (
    Code.UNREADABLE_BODY,
    Code.MISSING_KEY,
    Code.CONFLICT,
    Code.BODY_TOO_LARGE,
    Code.UNSUPPORTED_MEDIA_TYPE,
    Code.INVALID_FIELDS,
    Code.RATE_LIMITED,
    Code.STORE_UNAVAILABLE,
)
ONCE = (
    "A repeat with equal fields answers 202 with the same id and is delivered once; "
    "with different fields, 409 naming them."
)
ENDPOINTS = (
    Endpoint(
        "start",
        "StartRequest",
        "startCall",
        "A call starts",
        "Registers the call in Bitrix24 (telephony.externalCall.register, EXTERNAL_CALL_ID = "
        "PBX_CALL_ID) with its line; SHOW defaults to the portal's show_card setting. With "
        "CALL_ID nothing is registered: the PBX's call is bound to that call. " + ONCE,
    ),
    Endpoint(
        "ring",
        "RingRequest",
        "ringCall",
        "Employees' phones ring",
        "Shows the call card to them (telephony.externalCall.show). The same employees again "
        "are a repeat (202, the same id); others are a new ring.",
    ),
    Endpoint(
        "answer",
        "AnswerRequest",
        "answerCall",
        "An employee answered",
        "Hides the card from everyone else shown it (telephony.externalCall.hide); a later "
        "answer by someone else is a transfer. The last one to answer is the finish's USER_ID "
        "unless the finish names one. The same employee again is a repeat.",
    ),
    Endpoint(
        "finish",
        "FinishRequest",
        "finishCall",
        "Finish a call",
        "Stores the call's end (telephony.externalCall.finish, sent after the call's register, "
        "show and hide). A repeat (same PBX_CALL_ID, or same CALL_ID without PBX_CALL_ID) with "
        "equal fields answers 202 with the same id and is delivered only once; with different "
        "fields, 409. A RECORD_URL is taken as POST /pbx/v1/calls/record takes it.",
    ),
    Endpoint(
        "record",
        "RecordRequest",
        "recordCall",
        "The call's recording",
        "Attached after the finish (telephony.externalCall.attachRecord). Either RECORD_URL "
        "(b24app downloads it) or the file itself as the multipart part FILE; mp3 or wav by "
        "content (else 422), at most B24APP_RECORD_MAX_BYTES (else 413); 507 while the "
        "portal's recordings waiting to be attached fill B24APP_RECORD_PORTAL_BYTES. " + ONCE,
        (Code.STORAGE_FULL,),
    ),
)


@cache
def document() -> dict[str, Any]:
    """The whole description (built once; callers get the same object, so never mutate it)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "b24app PBX API",
            "version": "1.0.0",
            "description": (
                "Tell Bitrix24 about a PBX's calls: their start, the phones that ring, who "
                "answered, the end and the recording. Each portal's PBX has its own key (the "
                "app's settings page in Bitrix24 shows it). Every event is stored durably, "
                "keyed by the PBX's PBX_CALL_ID, answered 202 with the call's one id, and "
                "delivered to Bitrix24 (telephony.externalCall.*) by a worker, once, in the "
                "call's order whatever order the events arrived in, within Bitrix24's rate "
                "limits. PBX status values are mapped as docs/pbx-status-codes.md lists."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"pbxKey": []}],
        "paths": _paths(),
        "components": _components(),
    }


def _paths() -> dict[str, Any]:
    paths = {f"/pbx/v1/calls/{e.kind}": {"post": _event_operation(e)} for e in ENDPOINTS}
    return paths | {
        "/pbx/v1/calls/{id}": {
            "get": {
                "operationId": "getCall",
                "summary": "A call's delivery state, its events and its recording",
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
        "/pbx/v1/route": {"get": _route_operation()},
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


def _route_operation() -> dict[str, Any]:
    """GET /pbx/v1/route (route.py): who should take a caller."""
    return {
        "operationId": "routeCall",
        "summary": "Who should take this caller",
        "description": (
            "The employee responsible for the caller in the CRM, their extension and the CRM "
            "entity, found by telephony.externalCall.searchCrmEntities (the first match "
            "Bitrix24 returns that has a responsible employee). USER_PHONE_INNER is the "
            "extension the portal's mapping gives the employee, else the one in their "
            "Bitrix24 profile, else null. Answered within 2 s: 200 with nulls when nothing is "
            "found or Bitrix24 is slow, down, rate-limited or cannot be called; dial the queue "
            "then. Answers are reused for 60 s (15 s when nothing was found)."
        ),
        "parameters": [
            {
                "name": "PHONE_NUMBER",
                "in": "query",
                "required": True,
                "description": "The caller's number, as for /calls/start (it must hold digits).",
                "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                "example": "+19062195047",
            }
        ],
        "responses": {
            "200": {
                "description": "The route; every field null when nobody can be named in time.",
                "headers": {"Cache-Control": {"schema": {"type": "string"}}},
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Route"},
                        "examples": {
                            "found": {"value": ROUTE_EXAMPLE},
                            "nobody": {"value": dict.fromkeys(ROUTE_EXAMPLE)},
                        },
                    }
                },
            },
            **_problems(
                Code.MISSING_KEY, Code.INVALID_FIELDS, Code.RATE_LIMITED, Code.STORE_UNAVAILABLE
            ),
        },
    }


ROUTE_EXAMPLE = {
    "USER_ID": 2,
    "USER_PHONE_INNER": "101",
    "CRM_ENTITY_TYPE": "CONTACT",
    "CRM_ENTITY_ID": 651,
}


def route_schema() -> dict[str, Any]:
    """The answer of GET /pbx/v1/route: Bitrix24's names, each null when unknown."""
    return {
        "type": "object",
        "required": list(ROUTE_EXAMPLE),
        "additionalProperties": False,
        "properties": {
            "USER_ID": {
                "type": ["integer", "null"],
                "description": "The responsible employee (the match's ASSIGNED_BY_ID).",
            },
            "USER_PHONE_INNER": {
                "type": ["string", "null"],
                "description": "Their extension: the portal's mapping, else their profile's "
                "UF_PHONE_INNER; null when neither has one.",
            },
            "CRM_ENTITY_TYPE": {
                "type": ["string", "null"],
                "enum": [*CRM_ENTITY_TYPES, None],
                "description": "The CRM entity found (give it to /calls/start).",
            },
            "CRM_ENTITY_ID": {"type": ["integer", "null"]},
        },
    }


def _event_operation(endpoint: Endpoint) -> dict[str, Any]:
    body = {"$ref": f"#/components/schemas/{endpoint.schema}"}
    examples = EVENT_EXAMPLES[endpoint.kind]
    multipart: dict[str, Any] = {"schema": body}
    if endpoint.kind == "record":
        multipart = {
            "schema": {"$ref": "#/components/schemas/RecordUpload"},
            "encoding": {
                "FILE": {"contentType": "audio/mpeg, audio/wav, application/octet-stream"}
            },
        }
    return {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "description": endpoint.description,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": body, "examples": examples},
                "application/x-www-form-urlencoded": {"schema": body},
                "multipart/form-data": multipart,
            },
        },
        "responses": {
            "202": {
                "description": "Stored (or already stored with equal fields): the call's id, "
                "the same for every event of the call.",
                "headers": {
                    "Location": {"description": "/pbx/v1/calls/{id}", "schema": {"type": "string"}}
                },
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/CallAccepted"}}
                },
            },
            **_problems(*EVENT_PROBLEMS, *endpoint.problems),
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
            "StartRequest": start_schema(),
            "RingRequest": ring_schema(),
            "AnswerRequest": answer_schema(),
            "FinishRequest": request_schema(),
            "RecordRequest": record_schema(),
            "RecordUpload": record_upload_schema(),
            "Route": route_schema(),
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
                    "CALL_ID": {
                        "type": ["string", "null"],
                        "description": "Bitrix24's CALL_ID of the call, once registered.",
                    },
                    "bitrix_call_id": {"type": ["string", "null"], "description": "As CALL_ID."},
                    "crm_entity_type": {
                        "type": ["string", "null"],
                        "description": "The CRM entity Bitrix24 bound the call to (register's "
                        "CRM_ENTITY_TYPE).",
                    },
                    "crm_entity_id": {"type": ["integer", "null"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "delivered_at": {"type": ["string", "null"], "format": "date-time"},
                    "events": {
                        "type": "array",
                        "description": "The call's events in the order they arrived.",
                        "items": {"$ref": "#/components/schemas/CallEvent"},
                    },
                    "recording": {
                        "oneOf": [{"$ref": "#/components/schemas/Recording"}, {"type": "null"}]
                    },
                },
            },
            "CallEvent": {
                "type": "object",
                "required": ["kind", "state", "error", "note", "created_at", "delivered_at"],
                "properties": {
                    "kind": {"type": "string", "enum": [k.value for k in EventKind]},
                    "state": {"type": "string", "enum": [s.value for s in EventState]},
                    "error": {
                        "type": ["string", "null"],
                        "description": "Why its delivery failed or is retried, in words.",
                    },
                    "note": {
                        "type": ["string", "null"],
                        "description": "Why it waits, or why nothing had to be sent.",
                    },
                    "created_at": {"type": "string", "format": "date-time"},
                    "delivered_at": {"type": ["string", "null"], "format": "date-time"},
                },
            },
            "Recording": {
                "type": "object",
                "required": ["state", "audio", "size", "error"],
                "properties": {
                    "state": {"type": "string", "enum": [s.value for s in RecordingState]},
                    "audio": {"type": ["string", "null"], "enum": ["mp3", "wav", None]},
                    "size": {"type": ["integer", "null"], "description": "Bytes."},
                    "error": {"type": ["string", "null"]},
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
    schema = _model_schema(FinishRequest)
    schema["description"] = (
        "Field names are Bitrix24's (telephony.externalCall.finish, and "
        "telephony.externalCall.register for calls without CALL_ID). "
        + ", ".join(FINISH_REQUIRED)
        + " is always required. Either CALL_ID or PBX_CALL_ID is required. Without CALL_ID, "
        "either all of " + ", ".join(REGISTRATION_REQUIRED) + " (the call is registered "
        "first) or none of them (the call's start registers it). USER_ID or USER_PHONE_INNER "
        "is required unless the portal has a fallback user or the call's start gives it. " + COMMON
    )
    schema["required"] = list(FINISH_REQUIRED)
    schema["anyOf"] = [{"required": ["CALL_ID"]}, {"required": ["PBX_CALL_ID"]}]
    schema["if"] = {"not": {"required": ["CALL_ID"]}}
    schema["then"] = {
        "dependentRequired": {
            name: [other for other in REGISTRATION_REQUIRED if other != name]
            for name in REGISTRATION_REQUIRED
        }
    }
    status = schema["properties"]["STATUS_CODE"]
    status["x-native-values"] = sorted({row.native for row in status_codes.TABLE})
    return schema


COMMON = (
    "Surrounding whitespace is ignored and empty values count as absent. Form values are "
    'strings ("95"); JSON may send numbers as such strings too. Unknown fields are refused.'
)


def start_schema() -> dict[str, Any]:
    schema = _model_schema(StartRequest)
    schema["description"] = (
        "Field names are telephony.externalCall.register's. PBX_CALL_ID, PHONE_NUMBER and TYPE "
        "are required; USER_ID or USER_PHONE_INNER unless the portal has a fallback user. " + COMMON
    )
    schema["required"] = ["PBX_CALL_ID", "PHONE_NUMBER", "TYPE"]
    schema["dependentRequired"] = {
        "CRM_ENTITY_TYPE": ["CRM_ENTITY_ID"],
        "CRM_ENTITY_ID": ["CRM_ENTITY_TYPE"],
    }
    schema["properties"]["CRM_ENTITY_TYPE"]["x-values"] = list(CRM_ENTITY_TYPES)
    return schema


def ring_schema() -> dict[str, Any]:
    schema = _model_schema(RingRequest)
    schema["description"] = (
        "PBX_CALL_ID and at least one employee (USER_ID and/or USER_PHONE_INNER, at most "
        f"{MAX_RUNG} together). Each may be one value, a JSON array, a repeated form field or "
        "values separated by commas; duplicates are dropped. " + COMMON
    )
    schema["required"] = ["PBX_CALL_ID"]
    schema["anyOf"] = [{"required": [name]} for name in EMPLOYEES]
    for name, item in (("USER_ID", "integer"), ("USER_PHONE_INNER", "string")):
        schema["properties"][name]["anyOf"][1:1] = [
            {"type": item},
            {"type": "string", "description": "values separated by commas"},
        ]
    return schema


def answer_schema() -> dict[str, Any]:
    schema = _model_schema(AnswerRequest)
    schema["description"] = (
        "PBX_CALL_ID and exactly one employee: USER_ID or USER_PHONE_INNER. " + COMMON
    )
    schema["required"] = ["PBX_CALL_ID"]
    schema["oneOf"] = [{"required": [name]} for name in EMPLOYEES]
    return schema


def record_schema() -> dict[str, Any]:
    schema = _model_schema(RecordRequest)
    schema["description"] = (
        "PBX_CALL_ID and RECORD_URL (b24app downloads it); to send the file itself, use "
        "multipart/form-data with the part FILE instead (RecordUpload). " + COMMON
    )
    schema["required"] = ["PBX_CALL_ID", "RECORD_URL"]
    return schema


def record_upload_schema() -> dict[str, Any]:
    """RecordRequest as multipart/form-data: RECORD_URL or the file part FILE, exactly one."""
    schema = _model_schema(RecordRequest)
    schema["title"] = "RecordUpload"
    schema["properties"][FILE] = {
        "title": FILE,
        "type": "string",
        "contentMediaType": "application/octet-stream",
        "description": "The recording itself, mp3 or wav (judged by its content), at most "
        "B24APP_RECORD_MAX_BYTES (default 50 MiB). Its part's filename is the default "
        "FILENAME.",
    }
    schema["description"] = (
        "PBX_CALL_ID and exactly one of RECORD_URL and the file part FILE. " + COMMON
    )
    schema["required"] = ["PBX_CALL_ID"]
    schema["oneOf"] = [{"required": ["RECORD_URL"]}, {"required": [FILE]}]
    return schema


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON Schema with Bitrix24's names as titles, and the text fields that take a
    JSON integer too (USER_PHONE_INNER: 201) saying so."""
    schema = copy.deepcopy(model.model_json_schema())
    for name, prop in schema["properties"].items():
        prop["title"] = name
        if name in TEXT_FIELDS_ALSO_INTEGER and prop["anyOf"][0].get("type") == "string":
            prop["anyOf"].insert(1, {"type": "integer"})
    return schema
