"""Call recordings: accepted from the PBX, fetched, kept until Bitrix24 has them, attached.

A `record` event (PRODUCT.md "The whole call") brings either the file itself (multipart `FILE`,
the way for a PBX behind NAT: `store_upload`, called by the intake) or a `RECORD_URL` (`add_url`,
called by the intake; downloaded later by a worker: `claim_downloads`, `download`). Either way
the audio must be mp3 or wav judged by its content with mutagen (`check_audio`), never by its
name, and is kept in the database (`call_recordings.content`) so that any worker on any host can
attach it; it is deleted once attached (`attached`). A portal's stored audio is capped
(B24APP_RECORD_PORTAL_BYTES), so a PBX cannot fill the database.

Downloading happens in the worker, never in the intake: a PBX's request is answered once the
event is stored, whatever its recording server does. The download follows the rules for portal
addresses (bitrix/safety.py): http(s) only, a plain URL (`parse_url`), and unless
B24APP_RECORD_ALLOW_PRIVATE (or B24APP_ALLOW_LOCAL_PORTALS) https to public addresses only,
checked at every connection. Failures that another try cannot mend (an HTTP 4xx, not audio, too
large, an address refused) fail the recording and its event at once, in plain words; the others
(no connection, a timeout, a 5xx) are retried with a growing backoff for RETRY_FOR, the error
shown on the recording meanwhile.

Attaching (`attach`) is telephony.externalCall.attachRecord
(api-reference/telephony/telephony-external-call-attach-record.md): FILENAME + FILE_CONTENT
(base64) for small files, FILENAME alone then a multipart upload to the `uploadUrl` it returns
for large ones (`PortalClient.upload`).
"""

from __future__ import annotations

import base64
import io
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import unquote, urljoin, urlsplit

import mutagen
import requests
from mutagen.mp3 import MP3
from mutagen.wave import WAVE
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from b24app.bitrix.errors import UnsafeAddress
from b24app.bitrix.safety import InvalidURL, parse_url, portal_session
from b24app.config import Settings
from b24app.db import Database
from b24app.delivery import outbox
from b24app.logs import get_logger
from b24app.models import (
    CallEvent,
    CallRecording,
    EventState,
    Portal,
    RecordingState,
)
from b24app.portal_status import GONE

log = get_logger(__name__)

# attachRecord with FILE_CONTENT up to this size, else the uploadUrl two-step. Base64 makes the
# JSON body 4/3 of the file and the portal parses it whole in memory; a multipart upload is
# streamed to a file by the portal's web server. 1 MiB (about a minute of 128 kbit/s mp3 or of
# 8 kHz wav, several minutes of the usual 32-64 kbit/s telephony mp3) keeps most calls to one
# request, and no request body above ~1.4 MB, far below PHP's default post_max_size (8 MB).
INLINE_LIMIT = 1024 * 1024

# Downloads (RECORD_URL). A PBX either accepts a connection at once or is not there; it may take
# a while to start sending (a recording converted on the fly), and the whole file must come
# within DOWNLOAD_DEADLINE (50 MiB at ~1.4 Mbit/s), so a server that trickles cannot hold a
# worker thread for ever. The lease outlasts the deadline, so a download is never taken over
# while it still runs.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
DOWNLOAD_DEADLINE = 300.0
FAIR_LOOK_AHEAD = 10  # due rows looked at per download wanted, to find other portals' ones
DOWNLOAD_LEASE = DOWNLOAD_DEADLINE + 60.0
CHUNK = 64 * 1024
MAX_REDIRECTS = 3
MAX_URL_LENGTH = 2000  # presigned object-storage links are long
FIRST_BACKOFF = 5.0  # seconds; doubled after each failed try ...
MAX_BACKOFF = 15 * 60.0  # ... up to 15 minutes
RETRY_FOR = timedelta(hours=24)  # then the recording fails with the last error
# 4xx answers that say "later", not "never" (RFC 9110: 408 Request Timeout; RFC 6585: 429).
TRANSIENT_4XX = (408, 425, 429)
USER_AGENT = "b24app/0.1 (+telephony integration; call recordings)"

AUDIO_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav"}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 100


class RecordingRefused(Exception):
    """A recording b24app will not take: `code` (NOT_AUDIO, TOO_LARGE, PORTAL_FULL, BAD_URL),
    the request `field` it concerns (FILE or RECORD_URL), plain words, and the HTTP `status`
    the PBX API answers with (422, 413, 507)."""

    def __init__(self, code: str, field: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message
        self.status = status


# --- what the audio is -------------------------------------------------------------------------


def check_audio(data: bytes, *, field: str = "FILE") -> str:
    """ "mp3" or "wav", judged by the content (mutagen), never by a name.

    wav: a RIFF/WAVE file with a format chunk. mp3: MPEG audio frames (an ID3 tag may come
    first) that mutagen finds consistent, i.e. at least four valid frames in a row or a VBR
    header (`sketchy` false). Raises RecordingRefused(NOT_AUDIO, `field`, …, 422) for anything
    else, naming `field` (FILE for an upload, RECORD_URL for a download).
    """
    for kind, parser in (("wav", WAVE), ("mp3", MP3)):
        try:
            parsed = parser(io.BytesIO(data))
        except (mutagen.MutagenError, ValueError, EOFError, OverflowError):
            continue
        if kind == "mp3" and getattr(parsed.info, "sketchy", True):
            continue
        return kind
    raise RecordingRefused(
        "NOT_AUDIO", field, f"{field} is not an mp3 or wav recording (judged by its content)", 422
    )


def stored_name(filename: str | None, audio: str, *, fallback: str) -> str:
    """The FILENAME to give Bitrix24: the PBX's name (its last path part, made of letters,
    digits, `.`, `_` and `-`), without its own extension, plus the content's ("mp3"/"wav");
    `fallback` as the stem when nothing is left."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.strip(".") else base
    stem = _UNSAFE_NAME.sub("_", stem).strip("._-")[:MAX_STEM] or fallback
    return f"{stem}.{audio}"


# --- taking a recording (the intake) ----------------------------------------------------------


def store_upload(
    session: Session,
    *,
    portal_id: int,
    event_id: int,
    filename: str | None,
    data: bytes,
    now: datetime,
    settings: Settings,
) -> CallRecording:
    """Keep the PBX's uploaded file (multipart `FILE`) of the `record` event `event_id`.

    Checks, in this order: size (over B24APP_RECORD_MAX_BYTES: RecordingRefused TOO_LARGE,
    413), content (check_audio: NOT_AUDIO, 422), room (the portal's stored audio plus this one
    over B24APP_RECORD_PORTAL_BYTES: PORTAL_FULL, 507). Stores a CallRecording in state `stored`
    with the content, its kind (`audio`), `size` in bytes and the filename with the content's
    extension; returns it (added to `session`, not committed). The room check holds a lock per
    portal until `session` commits (PostgreSQL; SQLite's write transaction is one at a time
    anyway), so two uploads at once cannot both take the last room.
    """
    _check_size(len(data), settings.record_max_bytes, field="FILE")
    audio = check_audio(data, field="FILE")
    if not has_room(session, portal_id, len(data), settings=settings):
        raise RecordingRefused("PORTAL_FULL", "FILE", _full_words(settings), 507)
    row = CallRecording(
        event_id=event_id,
        portal_id=portal_id,
        state=RecordingState.STORED,
        filename=stored_name(filename, audio, fallback=f"record-{event_id}"),
        audio=audio,
        size=len(data),
        content=data,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    return row


def add_url(
    session: Session,
    *,
    portal_id: int,
    event_id: int,
    url: str,
    filename: str | None,
    now: datetime,
) -> CallRecording:
    """Note a RECORD_URL of the `record` event `event_id` for a worker to download (state
    `fetching`, due `now`); returns the row (added to `session`, not committed). Raises
    RecordingRefused(BAD_URL, RECORD_URL, …, 422) when `url` is not a plain http(s) URL
    (safety.parse_url). `filename` (optional) names the file; its extension is replaced by the
    content's once downloaded."""
    try:
        parse_url(url, max_length=MAX_URL_LENGTH, query=True)
    except InvalidURL as error:
        raise RecordingRefused("BAD_URL", "RECORD_URL", f"RECORD_URL {error}", 422) from None
    row = CallRecording(
        event_id=event_id,
        portal_id=portal_id,
        state=RecordingState.FETCHING,
        url=url,
        filename=filename,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    return row


def has_room(
    session: Session, portal_id: int, size: int, *, settings: Settings, lock: bool = True
) -> bool:
    """Whether the portal's stored, not yet attached audio plus `size` bytes stays within
    B24APP_RECORD_PORTAL_BYTES. With `lock`, on PostgreSQL, takes a transaction-scoped advisory
    lock per portal first, held until the caller's transaction ends (the caller then stores)."""
    if lock and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _room_lock(portal_id)})
    stored = session.scalar(
        select(func.coalesce(func.sum(CallRecording.size), 0)).where(
            CallRecording.portal_id == portal_id, CallRecording.state == RecordingState.STORED
        )
    )
    return int(stored or 0) + size <= settings.record_portal_bytes


def _room_lock(portal_id: int) -> int:
    return 0x5245_4300_0000_0000 + portal_id  # "REC" + the portal: no other lock uses these


def _check_size(size: int, limit: int, *, field: str) -> None:
    if size > limit:
        raise RecordingRefused(
            "TOO_LARGE",
            field,
            f"{field} is larger than B24APP_RECORD_MAX_BYTES ({limit} bytes)",
            413,
        )


def _full_words(settings: Settings) -> str:
    return (
        "this portal's recordings waiting to be attached already take "
        f"B24APP_RECORD_PORTAL_BYTES ({settings.record_portal_bytes} bytes); "
        "try again once Bitrix24 has taken them"
    )


# --- downloading (the worker) -------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """A claimed `fetching` recording: what a download needs, detached from the session."""

    event_id: int
    call_id: int  # calls.id of its call
    portal_id: int
    url: str
    filename: str | None
    attempts: int  # including this one
    created_at: datetime


class DownloadFailed(Exception):
    """A download that did not bring a recording: `code`, plain words, and whether another try
    may help (`transient`)."""

    def __init__(self, code: str, reason: str, *, transient: bool) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.transient = transient


def _one_per_portal(rows: Sequence[Any], limit: int) -> list[Any]:
    taken: list[Any] = []
    portals: set[int] = set()
    for row in rows:
        if row[0].portal_id not in portals:
            portals.add(row[0].portal_id)
            taken.append(row)
    return taken[:limit]


def claim_downloads(
    db: Database, *, worker_id: str, now: datetime, limit: int, lease: float = DOWNLOAD_LEASE
) -> list[Download]:
    """Lease up to `limit` due `fetching` recordings (oldest due first) to `worker_id` for
    `lease` seconds and count the attempt. Due: its time has come and no live lease (a worker
    that stopped leaves an expired one), and its portal is not gone (uninstalled, deleted).
    Fair: one download per portal at a time, across all workers, so one PBX's slow recording
    server holds up only its own recordings, never another portal's.
    PostgreSQL: `FOR UPDATE SKIP LOCKED`, so workers take different ones; SQLite: one claimer
    at a time (db.write)."""
    if limit <= 0:
        return []
    gone = select(Portal.id).where(Portal.status.in_(GONE))
    busy = select(CallRecording.portal_id).where(  # a download of theirs is running
        CallRecording.state == RecordingState.FETCHING, CallRecording.lease_until >= now
    )
    query = (
        select(CallRecording, CallEvent.call_id)
        .join(CallEvent, CallEvent.id == CallRecording.event_id)
        .where(
            CallRecording.state == RecordingState.FETCHING,
            CallRecording.next_attempt_at <= now,
            (CallRecording.lease_until.is_(None)) | (CallRecording.lease_until < now),
            CallRecording.portal_id.not_in(gone),
            CallRecording.portal_id.not_in(busy),
        )
        .order_by(CallRecording.next_attempt_at, CallRecording.event_id)
        .limit(limit * FAIR_LOOK_AHEAD)
    )
    with db.read() as session:  # most looks find nothing: no write lock for them
        if session.scalar(query.with_only_columns(CallRecording.event_id)) is None:
            return []
    with db.write() as session:
        if not db.is_sqlite:
            query = query.with_for_update(skip_locked=True, of=CallRecording)
        rows = _one_per_portal(session.execute(query).all(), limit)
        if not rows:
            return []
        session.execute(
            update(CallRecording)
            .where(CallRecording.event_id.in_([row.event_id for row, _ in rows]))
            .values(
                lease_until=now + timedelta(seconds=lease),
                leased_by=worker_id,
                attempts=CallRecording.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        )
        return [
            Download(
                event_id=row.event_id,
                call_id=call_id,
                portal_id=row.portal_id,
                url=row.url or "",
                filename=row.filename,
                attempts=row.attempts + 1,
                created_at=row.created_at,
            )
            for row, call_id in rows
        ]


def download(
    url: str,
    *,
    max_bytes: int,
    allow_private: bool,
    stop: threading.Event | None = None,
) -> bytes:
    """GET `url` and return the body, at most `max_bytes`.

    Rules: `parse_url` (http/https, no credentials, printable ASCII, ≤ MAX_URL_LENGTH); unless
    `allow_private`, every connection to a public address (safety.portal_session,
    checked after resolving, so DNS rebinding cannot lead elsewhere). Redirects are followed,
    at most MAX_REDIRECTS, each hop checked by the same rules as the first URL (recording
    servers and object stores often answer 302 to the file itself; a hop goes nowhere the PBX
    could not have sent us directly). Timeouts: CONNECT_TIMEOUT to connect, READ_TIMEOUT
    between bytes, DOWNLOAD_DEADLINE in all. The body is read in chunks and the download stops
    as soon as it passes `max_bytes` (a Content-Length above it stops it before reading).
    Raises DownloadFailed: transient for no connection, timeouts, 5xx, 408/425/429 and a
    worker stopping (`stop` set); permanent for other 4xx, a URL or address refused, too many
    redirects, too large.
    """
    session = portal_session(allow_local=allow_private, https_only=False)
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "audio/mpeg, audio/wav, */*"})
    deadline = time.monotonic() + DOWNLOAD_DEADLINE
    current = url
    with session:
        for _ in range(MAX_REDIRECTS + 1):
            _check_url(current)
            response = _get(session, current)
            with response:
                if response.is_redirect:
                    current = urljoin(current, response.headers.get("Location", ""))
                    continue
                _check_status(response.status_code)
                return _read(response, max_bytes, deadline, stop)
    raise DownloadFailed(
        "TOO_MANY_REDIRECTS",
        f"RECORD_URL redirected more than {MAX_REDIRECTS} times",
        transient=False,
    )


def _check_url(url: str) -> None:
    """http or https alike (PRODUCT.md): what keeps the fetch safe is where it may connect
    (portal_session's address rules), checked for every hop."""
    try:
        parse_url(url, max_length=MAX_URL_LENGTH, query=True)
    except InvalidURL as error:
        raise DownloadFailed("BAD_URL", f"RECORD_URL {error}", transient=False) from None


def _get(session: requests.Session, url: str) -> requests.Response:
    host = urlsplit(url).hostname or "?"
    try:
        return session.get(
            url, stream=True, allow_redirects=False, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
        )
    except UnsafeAddress as error:  # nothing was sent
        if isinstance(error.__cause__, OSError):  # the name does not resolve (now)
            raise DownloadFailed("NO_CONNECTION", f"{error}", transient=True) from None
        raise DownloadFailed(
            "ADDRESS_REFUSED",
            f"RECORD_URL refused: {error} (private addresses only with "
            "B24APP_RECORD_ALLOW_PRIVATE=1)",
            transient=False,
        ) from None
    except requests.Timeout:
        raise DownloadFailed(
            "TIMED_OUT", f"{host} did not answer in time", transient=True
        ) from None
    except requests.RequestException as error:
        raise DownloadFailed(
            "NO_CONNECTION",
            f"could not download from {host} ({type(error).__name__})",
            transient=True,
        ) from None


def _check_status(status: int) -> None:
    if status == 200:
        return
    transient = status >= 500 or status in TRANSIENT_4XX
    raise DownloadFailed(
        f"HTTP_{status}", f"the recording's server answered HTTP {status}", transient=transient
    )


def _read(
    response: requests.Response, max_bytes: int, deadline: float, stop: threading.Event | None
) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise DownloadFailed("TOO_LARGE", _too_large(max_bytes), transient=False)
    body = bytearray()
    try:
        for chunk in response.iter_content(CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise DownloadFailed("TOO_LARGE", _too_large(max_bytes), transient=False)
            if time.monotonic() > deadline:
                raise DownloadFailed(
                    "TIMED_OUT",
                    f"the recording did not arrive within {DOWNLOAD_DEADLINE:g} s",
                    transient=True,
                )
            if stop is not None and stop.is_set():
                raise DownloadFailed("STOPPED", "the worker stopped", transient=True)
    except requests.RequestException as error:
        raise DownloadFailed(
            "CUT_OFF", f"the download broke off ({type(error).__name__})", transient=True
        ) from None
    return bytes(body)


def _too_large(limit: int) -> str:
    return f"the recording is larger than B24APP_RECORD_MAX_BYTES ({limit} bytes)"


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 5, 10, 20 … up to 15 min."""
    return min(FIRST_BACKOFF * 2.0 ** max(attempts - 1, 0), MAX_BACKOFF)


def fetch(
    db: Database,
    job: Download,
    *,
    settings: Settings,
    worker_id: str,
    clock: Callable[[], datetime],
    stop: threading.Event | None = None,
) -> str:
    """Download one claimed recording and record the outcome; returns it ("stored", "retry",
    "failed", or "lost": the lease was no longer ours). Nothing raises but database errors (the
    lease then brings the recording back)."""
    try:
        if not _room(db, job, 0, settings):
            raise DownloadFailed("PORTAL_FULL", _full_words(settings), transient=True)
        data = download(
            job.url,
            max_bytes=settings.record_max_bytes,
            allow_private=settings.record_private_allowed,
            stop=stop,
        )
        audio = check_audio(data, field="RECORD_URL")
    except DownloadFailed as error:
        return _failed(db, job, error, worker_id=worker_id, now=clock())
    except RecordingRefused as error:
        failure = DownloadFailed(error.code, error.message, transient=False)
        return _failed(db, job, failure, worker_id=worker_id, now=clock())
    return _stored(db, job, data, audio, settings=settings, worker_id=worker_id, now=clock())


def _room(db: Database, job: Download, size: int, settings: Settings) -> bool:
    with db.read() as session:
        return has_room(session, job.portal_id, size, settings=settings, lock=False)


def _ours(session: Session, job: Download, worker_id: str) -> CallRecording | None:
    query = select(CallRecording).where(
        CallRecording.event_id == job.event_id,
        CallRecording.state == RecordingState.FETCHING,
        CallRecording.leased_by == worker_id,
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def _stored(
    db: Database,
    job: Download,
    data: bytes,
    audio: str,
    *,
    settings: Settings,
    worker_id: str,
    now: datetime,
) -> str:
    with db.write() as session:
        if not has_room(session, job.portal_id, len(data), settings=settings):
            room = DownloadFailed("PORTAL_FULL", _full_words(settings), transient=True)
            return _failed_in(session, job, room, worker_id=worker_id, now=now)
        row = _ours(session, job, worker_id)
        if row is None:
            return "lost"
        fallback = f"record-{job.event_id}"
        name = job.filename or unquote(urlsplit(job.url).path)
        row.state = RecordingState.STORED
        row.content = data
        row.audio = audio
        row.size = len(data)
        row.filename = stored_name(name, audio, fallback=fallback)
        row.error_code = row.error = None
        row.lease_until = row.leased_by = None
        row.updated_at = now
        outbox.event_added(session, job.call_id, now)  # the call is due: attach it
    log.info("recording downloaded", event_id=job.event_id, audio=audio, size=len(data))
    return "stored"


def _failed(
    db: Database, job: Download, error: DownloadFailed, *, worker_id: str, now: datetime
) -> str:
    with db.write() as session:
        return _failed_in(session, job, error, worker_id=worker_id, now=now)


def _failed_in(
    session: Session, job: Download, error: DownloadFailed, *, worker_id: str, now: datetime
) -> str:
    """Retry later (transient, within RETRY_FOR of the event), else fail the recording and its
    event with the reason, and mark the call due so its delivery sees the event failed."""
    row = _ours(session, job, worker_id)
    if row is None:
        return "lost"
    row.lease_until = row.leased_by = None
    row.updated_at = now
    row.error_code, row.error = error.code, error.reason
    if error.code == "STOPPED":  # not the server's fault: due again at once, try not counted
        row.attempts = max(row.attempts - 1, 0)
        row.next_attempt_at = now
        return "retry"
    if error.transient and now - job.created_at < RETRY_FOR:
        row.next_attempt_at = now + timedelta(seconds=backoff(job.attempts))
        log.info(
            "recording download retried",
            event_id=job.event_id,
            call_id=job.call_id,
            portal_id=job.portal_id,
            error_code=error.code,
        )
        return "retry"
    if error.transient:
        row.error = f"gave up after {RETRY_FOR.total_seconds() / 3600:g} h: {error.reason}"
    row.state = RecordingState.FAILED
    # The call's row first, then its event's: the order outbox.record locks them in (FOR UPDATE
    # on calls, then the events), or a delivery recording this call meanwhile deadlocks with us.
    outbox.event_added(session, job.call_id, now)
    event = session.get(CallEvent, job.event_id)
    if event is not None:
        event.state = EventState.FAILED
        event.error_code, event.error = row.error_code, f"The recording: {row.error}."
    log.info(
        "recording download failed",
        event_id=job.event_id,
        call_id=job.call_id,
        portal_id=job.portal_id,
        error_code=error.code,
    )
    return "failed"


# --- attaching (the lead's delivery) ------------------------------------------------------------


class Audio(Protocol):
    """What `attach` needs of a recording (a CallRecording has it)."""

    filename: str | None
    audio: str | None
    content: bytes | None


class Attacher(Protocol):
    """What `attach` needs of a portal's client (bitrix.client.PortalClient has it)."""

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]: ...

    def upload(self, url: str, field: str, filename: str, data: bytes) -> dict[str, Any]: ...


ATTACH = "telephony.externalCall.attachRecord"


def attach(client: Attacher, *, call_id: str, recording: Audio) -> dict[str, Any]:
    """Attach the stored audio to the Bitrix24 call `call_id` (the register's CALL_ID) with
    telephony.externalCall.attachRecord (telephony-external-call-attach-record.md).

    Up to INLINE_LIMIT bytes: one request with FILENAME and FILE_CONTENT (base64). Larger: FILENAME
    alone, whose answer names `uploadUrl` and `fieldName`, then the file as a multipart POST there
    (`client.upload`, which refuses an uploadUrl off the portal's own address). Returns
    {"FILE_ID": n} when Bitrix24 said it, else {}. Raises the client's BitrixError /
    TransportError unchanged (delivery/retry.py maps them), and ValueError for a recording
    without content. A repeat is harmless: the page says a new record replaces the earlier one.
    """
    content = recording.content
    if not content:
        raise ValueError("the recording has no content (not downloaded, or already attached)")
    audio = recording.audio or "mp3"
    filename = stored_name(recording.filename, audio, fallback="record")
    params: dict[str, Any] = {"CALL_ID": call_id, "FILENAME": filename}
    if len(content) <= INLINE_LIMIT:
        params["FILE_CONTENT"] = base64.b64encode(content).decode("ascii")
        return _file_id(client.call(ATTACH, params).get("result"))
    answer = client.call(ATTACH, params).get("result")
    if not isinstance(answer, dict) or not answer.get("uploadUrl"):
        return _file_id(answer)  # attached already (FILE_ID), nothing to upload
    field = str(answer.get("fieldName") or "file")
    uploaded = client.upload(str(answer["uploadUrl"]), field, filename, content)
    return _file_id(uploaded.get("result"))


def _file_id(result: Any) -> dict[str, Any]:
    if isinstance(result, dict) and result.get("FILE_ID") not in (None, ""):
        return {"FILE_ID": int(result["FILE_ID"])}
    return {}


def attached(session: Session, event_id: int, file_id: int | None, now: datetime) -> None:
    """Bitrix24 has the recording of `event_id`: state `attached`, the audio deleted (content
    NULL; `size` and `audio` kept for the journal), `file_id` kept (attachRecord's FILE_ID)."""
    session.execute(
        update(CallRecording)
        .where(CallRecording.event_id == event_id)
        .values(
            state=RecordingState.ATTACHED,
            content=None,
            file_id=file_id,
            error_code=None,
            error=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def view(row: CallRecording) -> dict[str, Any]:
    """The recording for GET /pbx/v1/calls/<id> and the journal: `state` (fetching, stored,
    attached, failed), `audio` ("mp3"/"wav" once known), `size` (bytes), `error` (plain words:
    why it failed, or the last failed try while it is retried; else null)."""
    return {"state": row.state, "audio": row.audio, "size": row.size, "error": row.error}
