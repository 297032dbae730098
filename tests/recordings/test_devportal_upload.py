"""The development portal's upload address (devportal/upload.py), the second step of
telephony.externalCall.attachRecord with FILENAME alone: it takes the file only with a valid
`auth` and an upload `token` naming a finished call of the same application."""

from __future__ import annotations

from urllib.parse import quote

import requests

from b24app.wiring import store_of
from tests.conftest import LiveApp
from tests.recordings.conftest import finished_call, mp3_bytes


def upload_address(live: LiveApp, member_id: str, call_id: str) -> str:
    client = store_of(live.app).client(member_id)
    answer = client.result(
        "telephony.externalCall.attachRecord", {"CALL_ID": call_id, "FILENAME": "a.mp3"}
    )
    assert answer["fieldName"] == "file"
    return str(answer["uploadUrl"])


def test_the_upload_address_stores_the_file_as_file_content_would(live_app: LiveApp) -> None:
    portal = live_app.install("alpha")
    call_id = finished_call(live_app.dev, portal)
    url = upload_address(live_app, portal.member_id, call_id)
    audio = mp3_bytes(30_000)

    answer = requests.post(url, files={"file": ("a.mp3", audio, "audio/mpeg")}, timeout=10)

    assert answer.status_code == 200
    kept = portal.records[call_id]
    assert answer.json()["result"] == {"FILE_ID": kept["FILE_ID"]}
    assert (kept["FILENAME"], kept["size"], kept["RECORD_URL"]) == ("a.mp3", len(audio), None)


def test_the_upload_address_checks_its_auth_and_token(live_app: LiveApp) -> None:
    portal = live_app.install("alpha")
    call_id = finished_call(live_app.dev, portal)
    url = upload_address(live_app, portal.member_id, call_id)
    base, query = url.split("?", 1)
    token = query.split("token=", 1)[1]
    file = {"file": ("a.mp3", mp3_bytes(9000), "audio/mpeg")}

    no_auth = requests.post(f"{base}?auth=nope&token={token}", files=file, timeout=10)
    assert no_auth.status_code == 401 and no_auth.json()["error"] == "NO_AUTH_FOUND"

    auth = query.split("&", 1)[0]
    forged = quote("telephony|bm90IGEgY2FsbA==|x", safe="")  # base64 of "not a call"
    bad_token = requests.post(f"{base}?{auth}&token={forged}", files=file, timeout=10)
    assert bad_token.status_code == 400 and bad_token.json()["error"] == "ERROR_CORE"

    wrong_name = requests.post(url, files={"file": ("a.ogg", b"OggS", "audio/ogg")}, timeout=10)
    assert wrong_name.json()["error_description"] == (
        "Wrong file extension. Only wav and mp3 are allowed"
    )
    assert call_id not in portal.records
