"""The page's examples are ready to paste: the curl command, run as shown, and the request the
Asterisk hangup handler makes, with Asterisk's variables filled in, are both accepted (202)."""

from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import quote

import pytest
import requests

from b24app.db import get_db
from b24app.models import Call, CallEvent, EventKind
from tests.conftest import LiveApp
from tests.settings_page.conftest import open_page, pbx_key

# What Asterisk puts in for the dialplan's expressions (an unanswered call: ANSWEREDTIME is
# empty, so the handler's DURATION expression gives 0).
ASTERISK = {
    "${URIENCODE(${UNIQUEID})}": quote("1709884800.42"),
    "${URIENCODE(${B24_INNER})}": "101",
    "${URIENCODE(${CALLERID(num)})}": quote("+74951234567", safe=""),
    "${B24_TYPE}": "2",
    "${URIENCODE(${B24_START})}": quote("2026-03-07T10:20:30", safe=""),
    "${IF(${ISNULL(${ANSWEREDTIME})}?0:${ANSWEREDTIME})}": "0",
    "${DIALSTATUS}": "NOANSWER",
}


def finishes(live: LiveApp) -> list[CallEvent]:
    """The finish events stored, one per call (what the PBX sent, as validated)."""
    with live.app.app_context(), get_db().read() as session:
        return list(
            session.query(CallEvent)
            .join(Call, Call.id == CallEvent.call_id)
            .where(CallEvent.kind == EventKind.FINISH)
            .order_by(Call.id)
        )


@pytest.mark.skipif(not shutil.which("curl"), reason="curl is not installed")
def test_the_curl_example_works_as_pasted(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    example = page.state["examples"]["curl"].replace(
        page.state["key_placeholder"], pbx_key(live_app, portal)
    )
    assert page.state["examples"]["url"] == f"{live_app.url}/pbx/v1/calls/finish"

    done = subprocess.run(["bash", "-c", example], capture_output=True, text=True, timeout=30)

    assert done.returncode == 0, done.stderr
    assert '"id"' in done.stdout
    (finish,) = finishes(live_app)
    assert finish.request["PBX_CALL_ID"] == "1709884800.42"
    assert finish.request["USER_PHONE_INNER"] == "101" and finish.request["STATUS_CODE"] == "200"


def test_the_asterisk_hangup_handler_sends_what_the_api_accepts(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal)
    dialplan = page.state["examples"]["asterisk"]
    assert "CHANNEL(hangup_handler_push)=b24app-hangup,s,1" in dialplan
    assert f"Authorization: Bearer {page.state['key_placeholder']}" in dialplan
    match = re.search(r"\$\{CURL\(([^,]+),(.+)\)\}\)$", dialplan, re.M)
    assert match, "the handler calls CURL(url,data)"
    url, data = match.groups()
    for expression, value in ASTERISK.items():
        data = data.replace(expression, value)
    assert "$" not in data

    answer = requests.post(
        url,
        data=data,
        headers={
            "Authorization": f"Bearer {pbx_key(live_app, portal)}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        timeout=30,
    )

    assert answer.status_code == 202, answer.text
    (finish,) = finishes(live_app)
    assert finish.request["PHONE_NUMBER"] == "+74951234567"
    assert finish.request["STATUS_CODE"] == "304"  # NOANSWER: a missed call
    assert finish.request["DURATION"] == 0  # empty ANSWEREDTIME: the handler sends 0


def test_non_admins_get_no_examples_and_no_key(live_app: LiveApp):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, user_id=2)
    assert page.state["examples"] is None
    assert "Bearer" not in page.response.text


@pytest.mark.parametrize(
    ("lang", "label", "names"),
    [
        (
            "en",
            "Base address of the call events",
            [
                "The call started",
                "Employees' phones ring",
                "An employee answered",
                "The call ended",
                "The call's recording",
            ],
        ),
        (
            "ru",
            "Базовый адрес событий звонка",
            [
                "Звонок начался",
                "Звонят телефоны сотрудников",
                "Сотрудник ответил",
                "Звонок завершился",
                "Запись разговора",
            ],
        ),
    ],
)
def test_the_connection_names_every_events_endpoint(
    live_app: LiveApp, lang: str, label: str, names: list[str]
):
    portal = live_app.install("alpha")
    page = open_page(live_app, portal, lang=lang)
    base = f"{live_app.url}/pbx/v1/calls/"
    events = ["start", "ring", "answer", "finish", "record"]

    assert page.state["examples"]["base_url"] == base
    assert page.state["examples"]["endpoints"] == {e: base + e for e in events}
    words = page.state["messages"]
    assert words["endpoint_label"] == label
    assert [words[f"event_{e}"] for e in events] == names
    for event in events:  # each address is one the PBX API takes (401 without the key)
        assert requests.post(base + event, json={}, timeout=30).status_code == 401
