"""Structured JSON logs (issue 6): each line about a call names its portal and the call."""

from __future__ import annotations

import json

import requests

from b24app.db import get_db
from b24app.portals import pbx_keys, store
from b24app.wiring import current_store
from tests.conftest import LiveApp


def json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            lines.append(parsed)
    return lines


def test_intake_and_delivery_lines_name_the_portal_and_the_call(live_app: LiveApp, capfd):
    portal = live_app.install()
    with live_app.app.app_context(), get_db().read() as session:
        key = pbx_keys.reveal(
            store.find_portal(session, portal.member_id).settings, current_store().box
        )
    accepted = requests.post(
        f"{live_app.url}/pbx/v1/calls/finish",
        json={
            "PBX_CALL_ID": "log-1",
            "PHONE_NUMBER": "+15550001",
            "TYPE": 2,
            "CALL_START_DATE": "2026-11-27T10:00:00+00:00",
            "USER_ID": 1,
            "DURATION": 5,
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert accepted.status_code == 202
    call_id = accepted.json()["id"]
    result = live_app.app.test_cli_runner().invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output

    lines = json_lines(capfd.readouterr().err + result.output)
    about_the_call = [line for line in lines if line.get("call") == call_id]
    events = {line["event"] for line in about_the_call}
    assert {"call accepted", "call delivered"} <= events
    assert all(line.get("member_id") == portal.member_id for line in about_the_call)
    assert all("timestamp" in line and "level" in line for line in lines)
    assert key not in json.dumps(lines)
