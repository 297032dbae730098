"""A recording the PBX pushes as multipart FILE (recordings.store_upload, called by the intake):
judged by content, capped per recording and per portal, stored with the content's extension."""

from __future__ import annotations

import pytest

from b24app.config import MiB
from b24app.db import get_db
from b24app.delivery import recordings
from b24app.delivery.recordings import RecordingRefused
from b24app.models import utcnow
from tests.conftest import LiveApp
from tests.recordings.conftest import MP3_FRAME, mp3_bytes, record_event, recording, wav_bytes


def test_an_upload_is_stored_with_the_contents_extension(live_app: LiveApp) -> None:
    portal = live_app.install("alpha")
    audio = wav_bytes(2.0)
    _, event_id = record_event(live_app, portal, data=audio, filename="../../etc/rec 5.mp3")

    row = recording(live_app.app, event_id)
    assert (row.state, row.audio, row.size, row.filename) == (
        "stored",
        "wav",
        len(audio),
        "rec_5.wav",
    )
    assert row.content == audio

    _, unnamed = record_event(live_app, portal, data=mp3_bytes(9000))
    assert recording(live_app.app, unnamed).filename == f"record-{unnamed}.mp3"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"just text, not audio",
        b"RIFF\x00\x00\x00\x00WAVEjunk",
        b"\x89PNG\r\n\x1a\n" + bytes(4000),
    ],
)
def test_anything_but_mp3_or_wav_is_refused_naming_the_field(content: bytes) -> None:
    with pytest.raises(RecordingRefused) as refused:
        recordings.check_audio(content)
    assert (refused.value.status, refused.value.field, refused.value.code) == (
        422,
        "FILE",
        "NOT_AUDIO",
    )
    assert "FILE is not an mp3 or wav" in refused.value.message


def test_an_upload_past_the_cap_is_refused_with_413(live_app: LiveApp) -> None:
    portal = live_app.install("alpha")
    cap = live_app.app.config["SETTINGS"].record_max_bytes
    assert cap == 50 * MiB

    with pytest.raises(RecordingRefused) as refused:
        record_event(live_app, portal, data=mp3_bytes(cap + len(MP3_FRAME)))

    assert (refused.value.status, refused.value.code, refused.value.field) == (
        413,
        "TOO_LARGE",
        "FILE",
    )
    assert "B24APP_RECORD_MAX_BYTES" in refused.value.message


def test_a_portal_past_its_stored_audio_cap_gets_507_until_recordings_are_attached(
    live_app: LiveApp,
) -> None:
    """B24APP_RECORD_PORTAL_BYTES: the portal's audio waiting to be attached. (Set lower here
    than its 1 GiB default, so that the test need not store a gigabyte.)"""
    portal = live_app.install("alpha")
    other = live_app.install("beta")
    one = mp3_bytes(400_000)
    settings = live_app.app.config["SETTINGS"].model_copy(
        update={"record_portal_bytes": 2 * len(one) + 10}
    )
    _, first = record_event(live_app, portal, data=one, settings=settings)
    record_event(live_app, portal, data=one, settings=settings)

    with pytest.raises(RecordingRefused) as refused:
        record_event(live_app, portal, data=one, settings=settings)
    assert (refused.value.status, refused.value.code) == (507, "PORTAL_FULL")
    assert "B24APP_RECORD_PORTAL_BYTES" in refused.value.message

    record_event(live_app, other, data=one, settings=settings)  # each portal has its own room

    with live_app.app.app_context(), get_db().write() as session:
        recordings.attached(session, first, 7, utcnow())
    record_event(live_app, portal, data=one, settings=settings)  # room again


def test_a_record_url_must_be_a_plain_http_url() -> None:
    for url in ("ftp://pbx/1.mp3", "http://user:pw@pbx/1.mp3", "https://pbx/a b.mp3"):
        with pytest.raises(RecordingRefused) as refused:
            recordings.add_url(None, portal_id=1, event_id=1, url=url, filename=None, now=None)  # type: ignore[arg-type]
        assert (refused.value.status, refused.value.field) == (422, "RECORD_URL")
