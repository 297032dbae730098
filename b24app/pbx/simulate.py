"""A PBX simulator: realistic calls played against a running b24app through the PBX API only.

`flask --app b24app pbx simulate --key KEY` (or `python -m b24app.pbx.simulate`) and `play()`
(the same as a library, for tests and benchmarks/lifecycle.py) send each call's events as a PBX
does — `POST /pbx/v1/calls/start`, `ring`, `answer`, `finish`, `record` (PRODUCT.md, "The whole
call") — with HTTP only (requests): no database, no import of the rest of b24app.

Scenarios (each call one, drawn with `--seed`):
    answered    start, ring one employee, answer, finish ANSWER, a recording
    missed      start, ring one or several, finish NOANSWER (DURATION 0)
    busy        start, finish BUSY (DURATION 0): nobody was rung
    ring_group  start, ring 2-5 employees at once, one answers, finish ANSWER, a recording
    transfer    start, ring, answer, ring another, the other answers (a second answer by
                someone else), finish ANSWER, a recording
    outgoing    start TYPE 1 by the calling employee, finish ANSWER or NOANSWER
Recordings are a small generated wav, sent as a multipart `FILE` (`--recordings upload`), or as
a `RECORD_URL` to an HTTP server the simulator starts on 127.0.0.1 (`--recordings url`; b24app
must be allowed to fetch from the loopback address, as under `make run`), or both, in turn.

Disorder, as a real PBX's webhooks arrive (`--disorder P`, the share of calls disturbed by each
kind; 0 sends every call in order, once): an event sent twice (`repeated`), an event held back
and sent after the call's others (`late`), the finish sent before the start or the answer before
the ring (`out of order`). Every answer must still be `202` with the call's one id.

The summary (`Summary`): calls played, events sent, answers by HTTP status, 409s (must be 0),
5xx, unexpected 4xx, network errors, the counts of repeated / late / out-of-order events, and
per call its PBX_CALL_ID, b24app's id, its scenario and who should be its finish's user.
`429` and `503` are sent again after their `Retry-After` (README: what a PBX should send again).
"""

from __future__ import annotations

import io
import json
import math
import random
import secrets
import sys
import threading
import time
import wave
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import click
import requests
from flask import Flask
from flask.cli import AppGroup

DEFAULT_URL = "http://127.0.0.1:5000"  # what `make run` serves (devportal/devrun.py, PORT)
# The development portal's seeded employees with an extension (devportal/state.py
# default_users: Anna 100, Boris 101, Clara 102); Bitrix24 finds each by UF_PHONE_INNER.
DEFAULT_EXTENSIONS = ("100", "101", "102")
DEFAULT_LINES = ("74951234567", "74957654321")
SCENARIOS = ("answered", "missed", "busy", "ring_group", "transfer", "outgoing")
DEFAULT_MIX = {
    "answered": 4,
    "missed": 2,
    "busy": 1,
    "ring_group": 2,
    "transfer": 1,
    "outgoing": 1,
}
RECORDINGS = ("upload", "url", "both", "none")
RETRY_STATUSES = (429, 503)  # README: send again after Retry-After
MAX_TRIES = 6
MAX_RETRY_WAIT = 10.0  # seconds; a longer Retry-After is cut to this
TIMEOUT = 30.0  # seconds per request
RING_GROUP_MAX = 5
NO_ANSWER_HINT = "requests got no answer: is b24app running at --url (make run)?"


# --- the plan ---------------------------------------------------------------------------------


@dataclass
class Event:
    """One request a PBX sends: `kind` (start|ring|answer|finish|record), its fields, and for an
    upload the file (filename, bytes). `order` is its place in the call's real order."""

    kind: str
    fields: dict[str, Any]
    order: int
    file: tuple[str, bytes] | None = None
    repeat: bool = False  # a second send of an event already sent
    late: bool = False  # held back: sent after a pause, once the call's others are sent


@dataclass
class PlannedCall:
    """A call as the simulator will play it: its events in the order they will be sent."""

    pbx_call_id: str
    scenario: str
    user: str  # the finish's user as Bitrix24 should record it (extension or USER_ID): the
    # last to answer, else the start's
    events: list[Event]
    recording: str | None = None  # "upload" | "url" | None


@dataclass
class Options:
    """What to play. `rate` is calls started per second (0: as fast as possible); `gap` seconds
    between a call's events; `late_delay` seconds a late event is held back."""

    calls: int = 20
    rate: float = 5.0
    seed: int | None = None
    concurrency: int = 8
    extensions: Sequence[str] = DEFAULT_EXTENSIONS
    user_ids: Sequence[int] = ()
    lines: Sequence[str] = DEFAULT_LINES
    mix: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIX))
    recordings: str = "upload"
    disorder: float = 0.2
    gap: float = 0.05
    late_delay: float = 0.5
    id_prefix: str | None = None
    ring_size: int | None = None  # employees a ring group rings; None: 2-5, drawn


@dataclass
class CallResult:
    pbx_call_id: str
    id: str | None  # b24app's id of the call (the same for every event), None if none came
    scenario: str
    user: str
    ids_consistent: bool
    statuses: list[int]
    recording: str | None = None  # "upload" | "url" | None: how its recording went


@dataclass
class Summary:
    """What a run did. `ok` is false when an answer was 5xx, a 4xx other than a retried 429, or
    no answer at all; `conflicts` (409) must be 0."""

    calls: int = 0
    events_sent: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    scenarios: dict[str, int] = field(default_factory=dict)
    recordings: dict[str, int] = field(default_factory=dict)
    conflicts: int = 0
    server_errors: int = 0
    unexpected_4xx: int = 0
    network_errors: int = 0
    retried: int = 0
    repeated: int = 0
    late: int = 0
    out_of_order: int = 0
    inconsistent_ids: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    call_results: list[CallResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        failures = self.server_errors + self.unexpected_4xx + self.conflicts
        return failures + self.network_errors + self.inconsistent_ids == 0

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["ok"] = self.ok
        body["calls_played"] = body.pop("call_results")
        return body


def wav_bytes(seconds: float = 0.5, rate: int = 8000, tone: float = 440.0) -> bytes:
    """A small mono 16-bit PCM wav (a tone), as a PBX's MixMonitor writes: `seconds` long."""
    frames = bytearray()
    for n in range(int(seconds * rate)):
        sample = int(8000 * math.sin(2 * math.pi * tone * n / rate))
        frames += sample.to_bytes(2, "little", signed=True)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return buffer.getvalue()


class Planner:
    """Draws calls from a seeded random source: scenario, employees, disorder."""

    def __init__(self, options: Options, record_base: str | None) -> None:
        self.o = options
        self.rng = random.Random(options.seed)
        self.prefix = options.id_prefix or f"sim-{secrets.token_hex(4)}"
        self.record_base = record_base
        self.employees: list[tuple[str, Any]] = [
            ("USER_PHONE_INNER", str(e)) for e in options.extensions
        ] + [("USER_ID", int(u)) for u in options.user_ids]
        if not self.employees:
            raise ValueError("no employees: give --extensions or --user-ids")
        self.audio: dict[float, bytes] = {}
        self._recording_turn = 0

    def plan(self, index: int) -> PlannedCall:
        scenario = self._scenario()
        pbx_call_id = f"{self.prefix}-{index + 1}"
        employees = self._employees_for(scenario)
        events, user = self._events(scenario, pbx_call_id, employees)
        call = PlannedCall(pbx_call_id, scenario, user, events)
        if scenario in ("answered", "ring_group", "transfer") or (
            scenario == "outgoing" and call.events[-1].fields["STATUS_CODE"] == "ANSWER"
        ):
            call.recording = self._add_recording(call)
        self._disturb(call)
        return call

    def _scenario(self) -> str:
        names = [s for s in SCENARIOS if self.o.mix.get(s, 0) > 0]
        weights = [self.o.mix[s] for s in names]
        return self.rng.choices(names, weights)[0]

    def _employees_for(self, scenario: str) -> list[tuple[str, Any]]:
        wanted = 1
        if scenario == "ring_group" and self.o.ring_size:
            wanted = self.o.ring_size
        elif scenario == "ring_group" or (scenario == "missed" and self.rng.random() < 0.4):
            wanted = self.rng.randint(2, RING_GROUP_MAX)
        elif scenario == "transfer":
            wanted = 2
        wanted = min(wanted, len(self.employees))
        return self.rng.sample(self.employees, wanted)

    def _events(
        self, scenario: str, pbx_call_id: str, people: list[tuple[str, Any]]
    ) -> tuple[list[Event], str]:
        """The call's events in their real order, and the finish's expected user."""
        o = self.rng
        outgoing = scenario == "outgoing"
        start: dict[str, Any] = {
            "PBX_CALL_ID": pbx_call_id,
            "PHONE_NUMBER": f"+1555{o.randrange(10**7):07d}",
            "TYPE": 1 if outgoing else 2,
            "LINE_NUMBER": o.choice(list(self.o.lines)),
            "CALL_START_DATE": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        # Bitrix24 registers a call to an employee: the caller of an outgoing call, for an
        # incoming one whom the PBX routes it to first (a ring group's first member)
        name, value = people[0]
        start[name] = value
        events = [Event("start", start, 0)]
        user = str(value)  # the finish's user unless someone answers

        def add(kind: str, fields: dict[str, Any]) -> None:
            events.append(Event(kind, {"PBX_CALL_ID": pbx_call_id, **fields}, len(events)))

        if scenario in ("answered", "missed", "ring_group", "transfer"):
            add("ring", _employees_field(people if scenario != "transfer" else people[:1]))
        answered = scenario in ("answered", "ring_group", "transfer") or (
            outgoing and o.random() < 0.7
        )
        if scenario in ("answered", "ring_group", "transfer"):
            first = people[0] if scenario != "ring_group" else o.choice(people)
            add("answer", dict([first]))
            user = str(first[1])
        if scenario == "transfer":
            add("ring", _employees_field(people[1:2]))
            add("answer", dict([people[1]]))
            user = str(people[1][1])
        duration = o.randint(5, 600) if answered else 0
        status = {True: "ANSWER", False: "BUSY" if scenario == "busy" else "NOANSWER"}[answered]
        add("finish", {"DURATION": duration, "STATUS_CODE": status})
        return events, user

    def _add_recording(self, call: PlannedCall) -> str | None:
        mode = self.o.recordings
        if mode == "none":
            return None
        if mode == "both":
            self._recording_turn += 1
            mode = "upload" if self._recording_turn % 2 else "url"
        seconds = round(self.rng.uniform(0.2, 1.0), 1)
        filename = f"{call.pbx_call_id}.wav"
        fields: dict[str, Any] = {"PBX_CALL_ID": call.pbx_call_id}
        event = Event("record", fields, len(call.events))
        if mode == "url":
            fields["RECORD_URL"] = f"{self.record_base}/rec/{seconds}/{filename}"
        else:
            fields["FILENAME"] = filename
            event.file = (filename, self._audio(seconds))
        call.events.append(event)
        return mode

    def _audio(self, seconds: float) -> bytes:
        if seconds not in self.audio:
            self.audio[seconds] = wav_bytes(seconds)
        return self.audio[seconds]

    def _disturb(self, call: PlannedCall) -> None:
        """Reorder, repeat and hold back some events, as `--disorder` asks."""
        p, o, events = self.o.disorder, self.rng, call.events
        if p <= 0:
            return
        kinds = [e.kind for e in events]
        if o.random() < p:  # out of order: finish before start, or answer before ring
            if "answer" in kinds and "ring" in kinds and o.random() < 0.5:
                answer = events.pop(kinds.index("answer"))
                events.insert(kinds.index("ring"), answer)
            else:
                events.insert(0, events.pop(kinds.index("finish")))
        if o.random() < p and len(events) > 1:  # late: one event after the others, paused
            late = events.pop(o.randrange(1, len(events)))
            late.late = True
            events.append(late)
        if o.random() < p:  # repeated: one or two events sent again
            for original in o.sample(events, min(len(events), o.randint(1, 2))):
                again = Event(
                    original.kind, original.fields, original.order, original.file, repeat=True
                )
                events.insert(o.randrange(events.index(original) + 1, len(events) + 1), again)


def _employees_field(people: list[tuple[str, Any]]) -> dict[str, Any]:
    """A ring's employees: USER_PHONE_INNER and/or USER_ID, each one value or a JSON array."""
    grouped: dict[str, list[Any]] = {}
    for name, value in people:
        grouped.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in grouped.items()}


def out_of_order(events: Sequence[Event]) -> int:
    """How many first sends came before an event that precedes them in the call's order."""
    firsts = [e for e in events if not e.repeat]
    return sum(
        1
        for i, event in enumerate(firsts)
        if any(later.order < event.order for later in firsts[i + 1 :])
    )


# --- the recordings server ----------------------------------------------------------------------


@contextmanager
def recordings_server(host: str = "127.0.0.1") -> Iterator[str]:
    """A tiny HTTP server on `host` answering `GET /rec/<seconds>/<name>.wav` with a generated
    wav of that length; yields its base URL. Stopped on exit."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = self.path.split("/")
            try:
                seconds = float(parts[2]) if len(parts) == 4 and parts[1] == "rec" else -1.0
            except ValueError:
                seconds = -1.0
            if not 0 < seconds <= 60:
                self.send_error(404)
                return
            body = wav_bytes(seconds)
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet: the summary says what happened

    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- playing ----------------------------------------------------------------------------------


class Player:
    """Sends planned calls to b24app at `url` with the PBX key; collects the summary."""

    def __init__(self, url: str, key: str, options: Options) -> None:
        self.url = url.rstrip("/")
        self.options = options
        self.local = threading.local()
        self.headers = {"Authorization": f"Bearer {key}"}
        self.lock = threading.Lock()
        self.summary = Summary()

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def play_call(self, call: PlannedCall, at: float) -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        ids: set[str] = set()
        statuses: list[int] = []
        for number, event in enumerate(call.events):
            if event.late:
                time.sleep(self.options.late_delay)
            elif number and self.options.gap:
                time.sleep(self.options.gap)
            status, call_id = self.send(event)
            statuses.append(status)
            if call_id:
                ids.add(call_id)
        result = CallResult(
            call.pbx_call_id,
            next(iter(ids)) if len(ids) == 1 else None,
            call.scenario,
            call.user,
            len(ids) == 1,
            statuses,
            call.recording,
        )
        with self.lock:
            self._count(call, result)

    def send(self, event: Event) -> tuple[int, str | None]:
        """POST one event (retrying 429/503 after Retry-After); its status (0: no answer), id."""
        url = f"{self.url}/pbx/v1/calls/{event.kind}"
        for attempt in range(MAX_TRIES):
            try:
                response = self._post(url, event)
            except requests.RequestException as error:
                with self.lock:
                    self.summary.network_errors += 1
                self._problem(f"{event.kind} {event.fields['PBX_CALL_ID']}: no answer: {error}")
                return 0, None
            if response.status_code in RETRY_STATUSES and attempt + 1 < MAX_TRIES:
                with self.lock:
                    self.summary.retried += 1
                time.sleep(_retry_after(response))
                continue
            return response.status_code, self._read(event, response)
        return 0, None  # not reached: the last try returns

    def _post(self, url: str, event: Event) -> requests.Response:
        if event.file is None:
            return self.session().post(
                url, json=event.fields, headers=self.headers, timeout=TIMEOUT
            )
        name, content = event.file
        return self.session().post(
            url,
            data={k: str(v) for k, v in event.fields.items()},
            files={"FILE": (name, content, "audio/wav")},
            headers=self.headers,
            timeout=TIMEOUT,
        )

    def _read(self, event: Event, response: requests.Response) -> str | None:
        status = response.status_code
        with self.lock:
            s = self.summary
            s.events_sent += 1
            s.by_status[str(status)] = s.by_status.get(str(status), 0) + 1
            s.by_kind[event.kind] = s.by_kind.get(event.kind, 0) + 1
            s.repeated += event.repeat
            s.late += event.late and not event.repeat
            if status == 409:
                s.conflicts += 1
            elif status >= 500:
                s.server_errors += 1
            elif 400 <= status < 500:
                s.unexpected_4xx += 1
        if status != 202:
            self._problem(
                f"{event.kind} {event.fields['PBX_CALL_ID']}: {status} {response.text[:300]}"
            )
            return None
        try:
            return str(response.json()["id"])
        except (ValueError, KeyError, TypeError):
            self._problem(f"{event.kind}: 202 without an id: {response.text[:200]}")
            return None

    def _problem(self, text: str) -> None:
        with self.lock:
            if len(self.summary.problems) < 50:
                self.summary.problems.append(text)

    def _count(self, call: PlannedCall, result: CallResult) -> None:
        s = self.summary
        s.calls += 1
        s.scenarios[call.scenario] = s.scenarios.get(call.scenario, 0) + 1
        if call.recording:
            s.recordings[call.recording] = s.recordings.get(call.recording, 0) + 1
        s.out_of_order += out_of_order(call.events)
        s.inconsistent_ids += not result.ids_consistent
        s.call_results.append(result)


def _retry_after(response: requests.Response) -> float:
    try:
        return min(MAX_RETRY_WAIT, max(0.1, float(response.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0


def play(url: str, key: str, options: Options | None = None) -> Summary:
    """Play `options.calls` calls against b24app at `url` (its base URL) with the PBX `key`.

    Calls start `1/options.rate` seconds apart (all at once when rate is 0), at most
    `options.concurrency` at a time; each sends its events one after another. Returns the
    Summary; never raises for an answer (a refused or unanswered request is counted in it).
    Raises ValueError for options that cannot be played (no employees, an unknown scenario).
    """
    options = options or Options()
    unknown = set(options.mix) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    if options.recordings not in RECORDINGS:
        raise ValueError(f"recordings: one of {', '.join(RECORDINGS)}")
    serve = options.recordings in ("url", "both")
    with recordings_server() if serve else _nothing() as record_base:
        planner = Planner(options, record_base)
        calls = [planner.plan(i) for i in range(options.calls)]
        player = Player(url, key, options)
        began = time.monotonic()
        spacing = 1.0 / options.rate if options.rate > 0 else 0.0
        with ThreadPoolExecutor(max(1, options.concurrency)) as pool:
            futures = [
                pool.submit(player.play_call, call, began + i * spacing)
                for i, call in enumerate(calls)
            ]
            for future in futures:
                future.result()
        player.summary.seconds = round(time.monotonic() - began, 3)
    order = {call.pbx_call_id: i for i, call in enumerate(calls)}
    player.summary.call_results.sort(key=lambda r: order[r.pbx_call_id])
    return player.summary


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


# --- the command --------------------------------------------------------------------------------


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _mix(value: str) -> dict[str, int]:
    """`answered=4,missed=2,...` (weights) or `answered,transfer` (equal weights)."""
    mix: dict[str, int] = {}
    for part in _csv(value):
        name, _, weight = part.partition("=")
        if name not in SCENARIOS:
            raise click.BadParameter(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        if weight and not weight.isdigit():
            raise click.BadParameter(f"{name}: the weight must be a whole number, not {weight!r}")
        mix[name] = int(weight) if weight else 1
    if not any(mix.values()):
        raise click.BadParameter("at least one scenario with a weight above 0")
    return mix


pbx_group = AppGroup("pbx", help="The PBX side: a simulator of a PBX's calls.")


@pbx_group.command("simulate", with_appcontext=False)  # HTTP only: no app needed
@click.option(
    "--url", default=DEFAULT_URL, show_default=True, envvar="B24APP_URL", help="b24app's base URL."
)
@click.option("--key", envvar="B24APP_PBX_KEY", help="The portal's PBX key (env B24APP_PBX_KEY).")
@click.option("--calls", default=20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--rate",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Calls started per second (0: all at once).",
)
@click.option("--seed", type=int, help="Seed of the random choices (the same plan each time).")
@click.option(
    "--concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Calls in progress at once.",
)
@click.option(
    "--extensions",
    default=",".join(DEFAULT_EXTENSIONS),
    show_default=True,
    help="Employees' extensions (USER_PHONE_INNER), comma-separated.",
)
@click.option("--user-ids", default="", help="Employees by USER_ID too, comma-separated.")
@click.option(
    "--lines",
    default=",".join(DEFAULT_LINES),
    show_default=True,
    help="The PBX's external lines (LINE_NUMBER), comma-separated.",
)
@click.option(
    "--mix",
    default=",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items()),
    show_default=True,
    help=f"Scenario weights; scenarios: {', '.join(SCENARIOS)}.",
)
@click.option(
    "--recordings",
    type=click.Choice(RECORDINGS),
    default="upload",
    show_default=True,
    help="How answered calls' recordings go: multipart FILE, RECORD_URL served here, or both.",
)
@click.option(
    "--disorder",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of calls with a repeated, a late and an out-of-order event (each drawn apart).",
)
@click.option(
    "--gap",
    default=0.05,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between a call's events.",
)
@click.option(
    "--late-delay",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds a late event is held back.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def simulate_command(
    url: str,
    key: str | None,
    calls: int,
    rate: float,
    seed: int | None,
    concurrency: int,
    extensions: str,
    user_ids: str,
    lines: str,
    mix: str,
    recordings: str,
    disorder: float,
    gap: float,
    late_delay: float,
    as_json: bool,
) -> None:
    """Play realistic calls against a running b24app through its PBX API.

    Exits 1 when an answer was 5xx, 409 or another 4xx (429 and 503 are sent again), or when a
    request got no answer.
    """
    if not key:
        raise click.UsageError("no PBX key: pass --key or set B24APP_PBX_KEY (make run prints it)")
    if not all(u.isdigit() for u in _csv(user_ids)):
        raise click.BadParameter("whole numbers, comma-separated", param_hint="--user-ids")
    options = Options(
        calls=calls,
        rate=rate,
        seed=seed,
        concurrency=concurrency,
        extensions=_csv(extensions),
        user_ids=[int(u) for u in _csv(user_ids)],
        lines=_csv(lines) or list(DEFAULT_LINES),
        mix=_mix(mix),
        recordings=recordings,
        disorder=disorder,
        gap=gap,
        late_delay=late_delay,
    )
    try:
        summary = play(url, key, options)
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    click.echo(json.dumps(summary.as_json(), indent=2) if as_json else describe(summary))
    if not summary.ok:
        sys.exit(1)


def describe(summary: Summary) -> str:
    """The summary in a few lines for a person."""
    s = summary
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(s.by_status.items())) or "none"
    scenarios = ", ".join(f"{name} {n}" for name, n in sorted(s.scenarios.items()))
    lines = [
        f"calls played: {s.calls} in {s.seconds:.1f} s ({scenarios})",
        f"events sent: {s.events_sent} ({', '.join(f'{k} {n}' for k, n in s.by_kind.items())})",
        f"  repeated {s.repeated}, late {s.late}, out of order {s.out_of_order}",
        f"recordings: {', '.join(f'{k} {n}' for k, n in s.recordings.items()) or 'none'}",
        f"answers by HTTP status: {statuses} (429/503 sent again: {s.retried})",
        f"409: {s.conflicts}   5xx: {s.server_errors}   other 4xx: {s.unexpected_4xx}   "
        f"no answer: {s.network_errors}   calls with more than one id: {s.inconsistent_ids}",
        "call ids (PBX_CALL_ID -> id):",
        *(f"  {r.pbx_call_id} -> {r.id} ({r.scenario})" for r in s.call_results),
        *(f"problem: {p}" for p in s.problems),
        *([NO_ANSWER_HINT] if s.network_errors else []),
        "OK" if s.ok else "FAILED",
    ]
    return "\n".join(lines)


def init_app(app: Flask) -> None:
    app.cli.add_command(pbx_group)


if __name__ == "__main__":  # `python -m b24app.pbx.simulate`: the same without loading the app
    simulate_command(prog_name="python -m b24app.pbx.simulate")
