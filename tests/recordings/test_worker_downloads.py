"""The worker's download pool (delivery/worker.py): `worker --once` fetches the recordings that
are due beside its deliveries, and leaves one that waits for its backoff."""

from __future__ import annotations

from b24app.delivery.retry import RetryPolicy
from b24app.delivery.worker import DOWNLOAD_THREADS, Worker
from tests.conftest import LiveApp
from tests.recordings.conftest import (
    RecordServer,
    Route,
    free_port,
    mp3_bytes,
    record_event,
    recording,
    wav_bytes,
)


def test_worker_once_downloads_every_due_recording(
    live_app: LiveApp, record_server: RecordServer
) -> None:
    portal = live_app.install("alpha")
    events = []
    for n in range(DOWNLOAD_THREADS * 2 + 1):  # more than one round of the pool
        body = mp3_bytes(40_000) if n % 2 else wav_bytes(1.0)
        record_server.routes[f"/r/{n}"] = Route(body=body)
        events.append(record_event(live_app, portal, url=f"{record_server.url}/r/{n}")[1])
    _, down = record_event(live_app, portal, url=f"http://127.0.0.1:{free_port()}/r.mp3")

    Worker(live_app.app, policy=RetryPolicy()).run(once=True)

    assert [recording(live_app.app, e).state for e in events] == ["stored"] * len(events)
    assert [recording(live_app.app, e).audio for e in events[:2]] == ["wav", "mp3"]
    waiting = recording(live_app.app, down)
    assert waiting.state == "fetching" and waiting.error_code == "NO_CONNECTION"
    assert waiting.attempts == 1  # tried once, then left for its backoff
