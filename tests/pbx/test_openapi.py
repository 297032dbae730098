"""The OpenAPI 3.1 description at /pbx/v1/openapi.json: valid, and kept true to the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from b24app.pbx.intake import Code
from b24app.pbx.openapi import EXAMPLES
from b24app.pbx.problems import ANSWERS, problem_type
from b24app.pbx.schemas import FIELDS, FinishRequest, validate_finish
from tests.pbx import FINISH, bearer, make_portal, stored_call


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
        "/pbx/v1/calls/finish",
        "/pbx/v1/calls/{id}",
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


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_the_documents_examples_are_accepted_by_the_real_endpoint(
    app: Flask, client: FlaskClient, spec: dict[str, Any], name: str
):
    examples = spec["paths"]["/pbx/v1/calls/finish"]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"]
    key = make_portal(app)
    response = client.post(FINISH, json=examples[name]["value"], headers=bearer(key))

    assert response.status_code == 202, response.get_json()
    stored = stored_call(app, response.get_json()["id"]).request
    assert validate_finish(stored)[0] == stored
    accepted = spec["components"]["schemas"]["CallAccepted"]
    assert set(response.get_json()) == set(accepted["required"])


def test_field_examples_pass_validation_one_by_one(spec: dict[str, Any]):
    """Each property's own example is a value the model accepts."""
    base = {"CALL_ID": "c1", "USER_ID": 1, "DURATION": 5}
    for name, prop in spec["components"]["schemas"]["FinishRequest"]["properties"].items():
        for example in prop["examples"]:
            _, errors = validate_finish(base | {name: example})
            assert errors == [], (name, example, errors)


def test_problem_types_are_documented(spec: dict[str, Any]):
    doc = (Path(__file__).parents[2] / "docs" / "pbx-status-codes.md").read_text(encoding="utf-8")
    for code, answer in ANSWERS.items():
        if answer.status >= 400:
            assert f"| {answer.status} | `{problem_type(code)}` | {answer.title} |" in doc
    problem = spec["components"]["schemas"]["Problem"]
    assert problem["required"] == ["type", "title", "status", "detail", "errors"]
    assert Code.INVALID_FIELDS in ANSWERS
