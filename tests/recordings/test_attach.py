"""Attaching a stored recording with telephony.externalCall.attachRecord through the portal's
client, against the development portal (api-reference/telephony/
telephony-external-call-attach-record.md): base64 for small files, FILENAME → uploadUrl →
multipart upload for large ones; an upload address off the portal's own address is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from b24app.bitrix.errors import BitrixError
from b24app.db import get_db
from b24app.delivery import recordings
from b24app.models import CallRecording, utcnow
from b24app.wiring import store_of
from tests.conftest import LiveApp
from tests.recordings.conftest import (
    RecordServer,
    finished_call,
    mp3_bytes,
    record_event,
    recording,
    wav_bytes,
)


def test_a_small_recording_goes_as_base64_in_one_request(live_app: LiveApp) -> None:
    portal = live_app.install("alpha")
    call_id = finished_call(live_app.dev, portal)
    audio = wav_bytes(20.0)  # 320 kB
    assert len(audio) <= recordings.INLINE_LIMIT
    _, event_id = record_event(live_app, portal, data=audio, filename="in-42.wav")
    client = store_of(live_app.app).client(portal.member_id)

    answer = recordings.attach(client, call_id=call_id, recording=recording(live_app.app, event_id))

    kept = portal.records[call_id]
    assert kept["FILENAME"] == "in-42.wav" and kept["size"] == len(audio)
    assert answer == {"FILE_ID": kept["FILE_ID"]}
    sent = live_app.dev.entries(method="telephony.externalCall.attachRecord")
    assert len(sent) == 1 and sent[0]["params"]["FILE_CONTENT"]
    assert live_app.dev.entries(method="upload") == []


def test_a_large_recording_goes_by_the_upload_address(live_app: LiveApp) -> None:
    portal = live_app.install("alpha")
    call_id = finished_call(live_app.dev, portal)
    audio = mp3_bytes(3 * 1024 * 1024)
    assert len(audio) > recordings.INLINE_LIMIT
    _, event_id = record_event(live_app, portal, data=audio, filename="long call.wav")
    client = store_of(live_app.app).client(portal.member_id)

    answer = recordings.attach(client, call_id=call_id, recording=recording(live_app.app, event_id))

    kept = portal.records[call_id]
    assert kept["FILENAME"] == "long_call.mp3"  # the content's extension, not the PBX's
    assert kept["size"] == len(audio)
    assert answer == {"FILE_ID": kept["FILE_ID"]}
    (asked,) = live_app.dev.entries(method="telephony.externalCall.attachRecord")
    assert "FILE_CONTENT" not in asked["params"] and asked["params"]["FILENAME"] == "long_call.mp3"
    (uploaded,) = live_app.dev.entries(method="upload")
    assert uploaded["status"] == 200 and uploaded["params"]["CALL_ID"] == call_id

    # once attached, the audio is deleted and the file id kept
    with live_app.app.app_context(), get_db().write() as session:
        recordings.attached(session, event_id, answer["FILE_ID"], utcnow())
    row = recording(live_app.app, event_id)
    assert (row.state, row.content, row.file_id, row.size) == (
        "attached",
        None,
        kept["FILE_ID"],
        len(audio),
    )
    assert recordings.view(row) == {
        "state": "attached",
        "audio": "mp3",
        "size": len(audio),
        "error": None,
    }


def test_an_upload_address_on_another_host_is_refused(
    live_app: LiveApp, record_server: RecordServer
) -> None:
    """The portal's answer names where to post the file; b24app posts it only to the portal's
    own scheme, host and port, whatever the answer says."""
    portal = live_app.install("alpha")
    call_id = finished_call(live_app.dev, portal)
    _, event_id = record_event(live_app, portal, data=mp3_bytes(2 * 1024 * 1024))
    client = store_of(live_app.app).client(portal.member_id)
    # the portal's answers now point at "localhost": the same machine, another name
    live_app.dev.base_url = live_app.dev.base_url.replace("127.0.0.1", "localhost")

    with pytest.raises(BitrixError) as refused:
        recordings.attach(client, call_id=call_id, recording=recording(live_app.app, event_id))

    assert refused.value.code == "BAD_UPLOAD_URL"
    assert "not on the portal's own address" in refused.value.description
    assert live_app.dev.entries(method="upload") == [] and call_id not in portal.records

    # nor to another port of the same host
    elsewhere = f"{record_server.url}/p/alpha/rest/upload.json?auth=x&token=y"
    with pytest.raises(BitrixError, match="BAD_UPLOAD_URL"):
        client.upload(elsewhere, "file", "a.mp3", b"data")
    assert record_server.hits == []


def test_a_recording_without_content_is_not_sent(live_app: LiveApp) -> None:
    portal = live_app.install("alpha")
    call_id = finished_call(live_app.dev, portal)
    _, event_id = record_event(live_app, portal, data=mp3_bytes(10_000))
    with live_app.app.app_context(), get_db().write() as session:
        session.execute(
            update(CallRecording).where(CallRecording.event_id == event_id).values(content=None)
        )
    client = store_of(live_app.app).client(portal.member_id)

    with pytest.raises(ValueError, match="no content"):
        recordings.attach(client, call_id=call_id, recording=recording(live_app.app, event_id))
    assert live_app.dev.entries(method="telephony.externalCall.attachRecord") == []
