"""RECORD_URL downloads (delivery/recordings.py) from a real HTTP server, on SQLite and
PostgreSQL: what the recording and its event show afterwards, and whether the call is due for
its attachRecord (api-reference/telephony/telephony-external-call-attach-record.md)."""

from __future__ import annotations

from datetime import timedelta

from b24app.config import MiB
from b24app.delivery import recordings
from b24app.models import utcnow
from tests.conftest import LiveApp
from tests.recordings.conftest import (
    RecordServer,
    Route,
    call_row,
    event,
    free_port,
    mp3_bytes,
    record_event,
    recording,
    run_downloads,
    wav_bytes,
)


def test_mp3_and_wav_by_url_are_downloaded_and_stored(
    live_app: LiveApp, record_server: RecordServer
) -> None:
    portal = live_app.install("alpha")
    mp3, wav = mp3_bytes(200_000), wav_bytes(3.0)
    record_server.routes["/rec/1.mp3"] = Route(body=mp3)
    record_server.routes["/rec/2"] = Route(body=wav)
    call_1, mp3_event = record_event(live_app, portal, url=f"{record_server.url}/rec/1.mp3")
    # the PBX calls its wav "...mp3": the content decides, and the name follows it
    _, wav_event = record_event(
        live_app, portal, url=f"{record_server.url}/rec/2", filename="call 2.mp3"
    )
    before = call_row(live_app.app, call_1).events_version

    assert sorted(run_downloads(live_app.app)) == ["stored", "stored"]

    first, second = recording(live_app.app, mp3_event), recording(live_app.app, wav_event)
    assert (first.state, first.audio, first.size, first.filename) == (
        "stored",
        "mp3",
        len(mp3),
        "1.mp3",
    )
    assert first.content == mp3 and first.error is None
    assert (second.state, second.audio, second.size, second.filename) == (
        "stored",
        "wav",
        len(wav),
        "call_2.wav",
    )
    assert second.content == wav
    assert recordings.view(second) == {
        "state": "stored",
        "audio": "wav",
        "size": len(wav),
        "error": None,
    }
    # the call is due again, so delivery attaches the audio
    assert call_row(live_app.app, call_1).events_version == before + 1
    assert call_row(live_app.app, call_1).state == "queued"


def test_not_audio_fails_the_recording_and_its_event_with_the_reason(
    live_app: LiveApp, record_server: RecordServer
) -> None:
    portal = live_app.install("alpha")
    record_server.routes["/rec/page"] = Route(
        body=b"<html><body>Please log in</body></html>", headers={"Content-Type": "text/html"}
    )
    _, event_id = record_event(live_app, portal, url=f"{record_server.url}/rec/page")

    assert run_downloads(live_app.app) == ["failed"]

    row = recording(live_app.app, event_id)
    assert row.state == "failed" and row.error_code == "NOT_AUDIO" and row.content is None
    assert "not an mp3 or wav" in (row.error or "")
    what = event(live_app.app, event_id)
    assert what.state == "failed" and what.error_code == "NOT_AUDIO"
    assert "not an mp3 or wav" in (what.error or "")
    assert run_downloads(live_app.app, ahead=3600) == []  # never tried again


def test_a_recording_past_the_cap_stops_downloading_at_the_cap(
    live_app: LiveApp, record_server: RecordServer
) -> None:
    """No Content-Length to go by: the stream itself is cut once it passes 50 MiB."""
    portal = live_app.install("alpha")
    record_server.routes["/rec/huge.mp3"] = Route(endless=MP3_CHUNK)
    _, event_id = record_event(live_app, portal, url=f"{record_server.url}/rec/huge.mp3")

    assert run_downloads(live_app.app) == ["failed"]

    row = recording(live_app.app, event_id)
    assert row.state == "failed" and row.error_code == "TOO_LARGE"
    assert "B24APP_RECORD_MAX_BYTES" in (row.error or "") and row.content is None
    assert event(live_app.app, event_id).state == "failed"
    # the server was cut off soon after the cap, not read to its end (1 GiB)
    cap = live_app.app.config["SETTINGS"].record_max_bytes
    assert cap == 50 * MiB
    assert record_server.sent["/rec/huge.mp3"] < cap + 16 * MiB


def test_a_declared_length_past_the_cap_is_not_read_at_all(
    live_app: LiveApp, record_server: RecordServer
) -> None:
    portal = live_app.install("alpha")
    cap = live_app.app.config["SETTINGS"].record_max_bytes
    record_server.routes["/rec/big.wav"] = Route(
        body=b"x", headers={"Content-Length": str(cap + 1)}
    )
    _, event_id = record_event(live_app, portal, url=f"{record_server.url}/rec/big.wav")

    assert run_downloads(live_app.app) == ["failed"]
    assert recording(live_app.app, event_id).error_code == "TOO_LARGE"


def test_an_unreachable_server_is_retried_with_the_error_shown_then_succeeds(
    live_app: LiveApp,
) -> None:
    portal = live_app.install("alpha")
    port = free_port()
    _, event_id = record_event(live_app, portal, url=f"http://127.0.0.1:{port}/r/7.mp3")

    started = utcnow()
    assert run_downloads(live_app.app) == ["retry"]
    row = recording(live_app.app, event_id)
    assert row.state == "fetching" and row.error_code == "NO_CONNECTION"
    assert "could not download from 127.0.0.1" in (row.error or "")
    assert recordings.view(row)["error"] == row.error
    assert event(live_app.app, event_id).state == "queued"  # not failed: it is retried
    wait = (row.next_attempt_at - started).total_seconds()
    assert 4 <= wait <= 7  # 5 s after the first failure
    assert run_downloads(live_app.app) == []  # not before then

    assert run_downloads(live_app.app, ahead=6) == ["retry"]  # still down: 10 s now
    row = recording(live_app.app, event_id)
    assert 15 <= (row.next_attempt_at - utcnow()).total_seconds() <= 17  # 6 s ahead + 10 s

    server = RecordServer(port)  # the PBX's server comes up
    try:
        server.routes["/r/7.mp3"] = Route(body=mp3_bytes(50_000))
        assert run_downloads(live_app.app, ahead=20) == ["stored"]
    finally:
        server.stop()
    row = recording(live_app.app, event_id)
    assert row.state == "stored" and row.error is None and row.error_code is None
    assert row.filename == "7.mp3" and row.attempts == 3


def test_server_errors_are_retried_and_client_errors_fail(
    live_app: LiveApp, record_server: RecordServer
) -> None:
    portal = live_app.install("alpha")
    record_server.routes["/busy.mp3"] = Route(503, b"busy")
    record_server.routes["/gone.mp3"] = Route(404, b"no such file")
    _, busy = record_event(live_app, portal, url=f"{record_server.url}/busy.mp3")
    _, gone = record_event(live_app, portal, url=f"{record_server.url}/gone.mp3")

    assert sorted(run_downloads(live_app.app)) == ["failed", "retry"]

    assert recording(live_app.app, busy).state == "fetching"
    assert recording(live_app.app, busy).error == "the recording's server answered HTTP 503"
    assert recording(live_app.app, gone).state == "failed"
    assert event(live_app.app, gone).error_code == "HTTP_404"


def test_retries_end_after_a_day_with_the_last_error(live_app: LiveApp) -> None:
    portal = live_app.install("alpha")
    _, event_id = record_event(live_app, portal, url=f"http://127.0.0.1:{free_port()}/x.mp3")

    assert run_downloads(live_app.app) == ["retry"]
    day = recordings.RETRY_FOR + timedelta(minutes=1)
    assert run_downloads(live_app.app, ahead=day.total_seconds()) == ["failed"]

    row = recording(live_app.app, event_id)
    assert row.state == "failed" and row.error_code == "NO_CONNECTION"
    assert (row.error or "").startswith("gave up after 24 h: could not download")
    assert event(live_app.app, event_id).state == "failed"


def test_backoff_doubles_from_five_seconds_up_to_fifteen_minutes() -> None:
    waits = [recordings.backoff(n) for n in range(1, 12)]
    assert waits[:5] == [5, 10, 20, 40, 80]
    assert max(waits) == 900 and waits[-1] == 900


def test_private_addresses_are_refused_without_the_setting(
    live_app: LiveApp, record_server: RecordServer
) -> None:
    """Production rules (B24APP_ALLOW_LOCAL_PORTALS off): a RECORD_URL on a loopback address
    is refused without a request, over http and https alike, and the event fails saying why;
    B24APP_RECORD_ALLOW_PRIVATE=1 lets the same download through."""
    portal = live_app.install("alpha")
    record_server.routes["/r.mp3"] = Route(body=mp3_bytes(20_000))
    strict = live_app.app.config["SETTINGS"].model_copy(update={"allow_local_portals": False})
    _, over_http = record_event(live_app, portal, url=f"{record_server.url}/r.mp3")
    _, over_https = record_event(live_app, portal, url=f"https://127.0.0.1:{record_server.port}/r")

    assert run_downloads(live_app.app, settings=strict) == ["failed", "failed"]

    assert record_server.hits == []
    http_row, https_row = recording(live_app.app, over_http), recording(live_app.app, over_https)
    assert http_row.error_code == https_row.error_code == "ADDRESS_REFUSED"
    for row in (http_row, https_row):  # refused for where it points, not for being http
        assert "non-public address" in (row.error or "")
        assert "B24APP_RECORD_ALLOW_PRIVATE" in (row.error or "")
    assert event(live_app.app, over_https).state == "failed"

    private_ok = strict.model_copy(update={"record_allow_private": True})
    _, allowed = record_event(live_app, portal, url=f"{record_server.url}/r.mp3")
    assert run_downloads(live_app.app, settings=private_ok) == ["stored"]
    assert recording(live_app.app, allowed).audio == "mp3"


def test_plain_http_to_a_public_address_is_not_refused_for_its_scheme() -> None:
    """PRODUCT.md: RECORD_URL is http or https. Under the production rules an http URL on a
    public address goes out: whatever then happens (no route, an answer that is not audio), it
    is never refused for its scheme."""
    try:
        recordings.download("http://93.184.215.14/r.wav", max_bytes=1000, allow_private=False)
    except recordings.DownloadFailed as error:
        assert error.code != "ADDRESS_REFUSED", error


def test_redirects_are_followed_each_hop_checked(
    live_app: LiveApp, record_server: RecordServer
) -> None:
    portal = live_app.install("alpha")
    record_server.routes["/short"] = Route(302, headers={"Location": "/files/9.wav"})
    record_server.routes["/files/9.wav"] = Route(body=wav_bytes(1.0))
    record_server.routes["/loop"] = Route(302, headers={"Location": "/loop"})
    _, followed = record_event(live_app, portal, url=f"{record_server.url}/short")
    _, looping = record_event(live_app, portal, url=f"{record_server.url}/loop")

    assert sorted(run_downloads(live_app.app)) == ["failed", "stored"]

    assert recording(live_app.app, followed).audio == "wav"
    assert recording(live_app.app, looping).error_code == "TOO_MANY_REDIRECTS"

    # a hop to an address the first URL could not have named is refused the same way
    record_server.routes["/elsewhere"] = Route(302, headers={"Location": "ftp://files/9.wav"})
    _, elsewhere = record_event(live_app, portal, url=f"{record_server.url}/elsewhere")
    assert run_downloads(live_app.app) == ["failed"]
    assert recording(live_app.app, elsewhere).error_code == "BAD_URL"


MP3_CHUNK = mp3_bytes(256 * 1024)


def test_one_download_per_portal_at_a_time_so_a_slow_pbx_holds_up_only_its_own(
    live_app: LiveApp,
) -> None:
    """Beta's PBX posted three recordings first; alpha's one still gets the second download
    slot at once, and while beta's download runs no other worker takes another of beta's."""
    beta, alpha = live_app.install("beta"), live_app.install("alpha")
    beta_events = [record_event(live_app, beta, url=f"http://pbx.beta.test/{n}.wav")[1]
                   for n in range(3)]  # fmt: skip
    _, alpha_event = record_event(live_app, alpha, url="http://pbx.alpha.test/1.wav")
    later = utcnow() + timedelta(seconds=1)
    with live_app.app.app_context():
        from b24app.db import get_db

        first = recordings.claim_downloads(get_db(), worker_id="w1", now=later, limit=2)
        again = recordings.claim_downloads(get_db(), worker_id="w2", now=later, limit=2)

    assert sorted(job.event_id for job in first) == sorted([beta_events[0], alpha_event])
    assert again == []  # beta's others wait for its running download; alpha has no more
