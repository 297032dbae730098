"""The OpenAPI 3.1 description at /pbx/v1/openapi.json: valid, and kept true to the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from b24app.pbx.intake import Code
from b24app.pbx.openapi import EVENT_EXAMPLES, EXAMPLES
from b24app.pbx.problems import ANSWERS, problem_type
from b24app.pbx.schemas import (
    FIELDS,
    AnswerRequest,
    FinishRequest,
    RecordRequest,
    RingRequest,
    StartRequest,
    validate_answer,
    validate_finish,
    validate_record,
    validate_ring,
    validate_start,
)
from tests.call_events import event_request
from tests.pbx import bearer, make_portal


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/pbx/v1/openapi.json")  # no key needed
    assert response.status_code == 200
    assert response.content_type == "application/json"
    return response.get_json()


def test_the_description_is_valid_openapi_3_1(spec: dict[str, Any]):
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == {
        "/pbx/v1/calls/start",
        "/pbx/v1/calls/ring",
        "/pbx/v1/calls/answer",
        "/pbx/v1/calls/finish",
        "/pbx/v1/calls/record",
        "/pbx/v1/calls/{id}",
        "/pbx/v1/route",
        "/pbx/v1/openapi.json",
    }


def test_documented_request_properties_are_the_models_fields(spec: dict[str, Any]):
    schema = spec["components"]["schemas"]["FinishRequest"]
    assert list(schema["properties"]) == list(FinishRequest.model_fields) == list(FIELDS)
    assert schema["additionalProperties"] is False
    operation = spec["paths"]["/pbx/v1/calls/finish"]["post"]
    assert set(operation["requestBody"]["content"]) == {
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    }


def test_bearer_auth_is_documented(spec: dict[str, Any]):
    assert spec["components"]["securitySchemes"]["pbxKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["pbxKey"]["description"],
    }
    assert spec["security"] == [{"pbxKey": []}]


def test_every_answer_the_finish_endpoint_gives_is_documented(spec: dict[str, Any]):
    responses = spec["paths"]["/pbx/v1/calls/finish"]["post"]["responses"]
    assert set(responses) == {"202", "400", "401", "409", "413", "415", "422", "429", "503"}
    for status, answer in responses.items():
        if status != "202":
            assert "application/problem+json" in answer["content"]
    assert "Location" in responses["202"]["headers"]
    every_401 = [problem_type(c) for c, a in ANSWERS.items() if a.status == 401]
    assert all(kind in responses["401"]["description"] for kind in every_401)


MODELS = {
    "start": (StartRequest, "StartRequest", validate_start),
    "ring": (RingRequest, "RingRequest", validate_ring),
    "answer": (AnswerRequest, "AnswerRequest", validate_answer),
    "finish": (FinishRequest, "FinishRequest", validate_finish),
    "record": (RecordRequest, "RecordRequest", validate_record),
}
EXAMPLE_CASES = [(kind, name) for kind, examples in EVENT_EXAMPLES.items() for name in examples]


@pytest.mark.parametrize("kind", list(MODELS))
def test_every_events_documented_fields_are_its_models(spec: dict[str, Any], kind: str):
    model, schema_name, _ = MODELS[kind]
    schemas = spec["components"]["schemas"]
    assert list(schemas[schema_name]["properties"]) == list(model.model_fields)
    assert schemas[schema_name]["additionalProperties"] is False
    content = spec["paths"][f"/pbx/v1/calls/{kind}"]["post"]["requestBody"]["content"]
    assert set(content) == {
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    }
    assert content["application/json"]["schema"]["$ref"].endswith("/" + schema_name)
    if kind == "record":  # the file itself comes as a multipart part
        assert list(schemas["RecordUpload"]["properties"]) == [*model.model_fields, "FILE"]


def test_finish_example_names_are_kept(spec: dict[str, Any]):
    assert set(EXAMPLES) <= set(EVENT_EXAMPLES["finish"])


@pytest.mark.parametrize(("kind", "name"), EXAMPLE_CASES)
def test_the_documents_examples_are_accepted_by_the_real_endpoint(
    app: Flask, client: FlaskClient, spec: dict[str, Any], kind: str, name: str
):
    examples = spec["paths"][f"/pbx/v1/calls/{kind}"]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"]
    key = make_portal(app)
    response = client.post(
        f"/pbx/v1/calls/{kind}", json=examples[name]["value"], headers=bearer(key)
    )

    assert response.status_code == 202, response.get_json()
    stored = event_request(app, response.get_json()["id"], kind)
    validate = MODELS[kind][2]
    assert validate(stored)[0] == stored
    accepted = spec["components"]["schemas"]["CallAccepted"]
    assert set(response.get_json()) == set(accepted["required"])


def test_the_record_endpoint_documents_507(spec: dict[str, Any]):
    responses = spec["paths"]["/pbx/v1/calls/record"]["post"]["responses"]
    assert "507" in responses and "storage-full" in responses["507"]["description"]


BASES: dict[str, dict[str, Any]] = {
    "start": {"PBX_CALL_ID": "p1", "PHONE_NUMBER": "+15551234567", "TYPE": 2, "USER_ID": 1,
              "CRM_ENTITY_TYPE": "LEAD", "CRM_ENTITY_ID": 1},
    "ring": {"PBX_CALL_ID": "p1", "USER_ID": 1},
    "answer": {"PBX_CALL_ID": "p1"},
    "finish": {"CALL_ID": "c1", "USER_ID": 1, "DURATION": 5},
    "record": {"PBX_CALL_ID": "p1", "RECORD_URL": "https://pbx.example.com/1.mp3"},
}  # fmt: skip


@pytest.mark.parametrize("kind", list(MODELS))
def test_field_examples_pass_validation_one_by_one(spec: dict[str, Any], kind: str):
    """Each property's own example is a value the model accepts."""
    _, schema_name, validate = MODELS[kind]
    for name, prop in spec["components"]["schemas"][schema_name]["properties"].items():
        for example in prop["examples"]:
            base = BASES[kind]
            if kind == "answer" and name in ("USER_ID", "USER_PHONE_INNER"):
                base = base | {"USER_ID": None}
            elif kind == "answer":
                base = base | {"USER_ID": 1}
            _, errors = validate(base | {name: example})
            assert errors == [], (name, example, errors)


def test_problem_types_are_documented(spec: dict[str, Any]):
    doc = (Path(__file__).parents[2] / "docs" / "pbx-status-codes.md").read_text(encoding="utf-8")
    for code, answer in ANSWERS.items():
        if answer.status >= 400:
            assert f"| {answer.status} | `{problem_type(code)}` | {answer.title} |" in doc
    problem = spec["components"]["schemas"]["Problem"]
    assert problem["required"] == ["type", "title", "status", "detail", "errors"]
    assert Code.INVALID_FIELDS in ANSWERS
