"""Limits on our own doors (issue 6): the PBX API per key and per address, the installer per
address; past them 429 with Retry-After, and other keys are untouched."""

from __future__ import annotations

import pytest

from b24app import create_app
from b24app.cli import upgrade_database
from tests.conftest import make_settings


@pytest.fixture
def limited_client(database_url: str, tmp_path):  # type: ignore[no-untyped-def]
    upgrade_database(database_url)
    app = create_app(
        make_settings(
            database_url,
            tmp_path,
            B24APP_PBX_RATE_LIMIT="3 per minute",
            B24APP_PBX_ADDRESS_RATE_LIMIT="5 per minute",
            B24APP_INSTALL_RATE_LIMIT="2 per minute",
        )
    )
    yield app.test_client()
    app.extensions["b24app.db"].dispose()


def post_call(client, key: str, address: str = "10.0.0.1"):  # type: ignore[no-untyped-def]
    return client.post(
        "/pbx/v1/calls/finish",
        json={"CALL_ID": "x"},
        headers={"Authorization": f"Bearer {key}"},
        environ_base={"REMOTE_ADDR": address},
    )


def test_a_pbx_key_past_its_limit_gets_429_with_retry_after(limited_client):
    answers = [post_call(limited_client, "b24pbx_one").status_code for _ in range(3)]
    assert 429 not in answers  # (401: the key is unknown; it still counts)
    over = post_call(limited_client, "b24pbx_one")
    assert over.status_code == 429
    assert int(over.headers["Retry-After"]) > 0
    assert over.mimetype == "application/problem+json"
    assert over.get_json()["status"] == 429
    assert post_call(limited_client, "b24pbx_two").status_code != 429  # another key


def test_one_address_past_its_limit_gets_429_whatever_the_key(limited_client):
    for index in range(5):
        assert post_call(limited_client, f"b24pbx_{index}").status_code != 429
    assert post_call(limited_client, "b24pbx_new").status_code == 429
    assert post_call(limited_client, "b24pbx_new", address="10.0.0.2").status_code != 429


def test_the_installer_is_limited_per_address(limited_client):
    answers = [limited_client.post("/install").status_code for _ in range(3)]
    assert answers[:2] == [400, 400]  # missing fields, but counted
    assert answers[2] == 429
