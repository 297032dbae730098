"""The delivery worker (`flask --app b24app worker`, the Procfile's `worker:`).

The loop: claim a round (each due portal's share of batches, oldest due first) → deliver each
portal's share in a small thread pool → each portal records its own outcomes → claim again as
soon as there is room (at once after a full round or while a portal has more due than its share;
after a round that took everything due, once a share is done, not in a loop of empty claims;
while shares are in flight, once a pool's worth of portals has room, `_room`); sleep a little
when nothing is due.

One portal, several batches in flight. A portal's share of a round is up to BATCHES_PER_ROUND
batches, and a portal may have several rounds in flight, up to BATCHES_IN_FLIGHT batches in all
in this worker, but never more than its throttle schedule lets go at once
(outbox.claim_round: the free slots of its bucket, bitrix/throttle.free_slots). The batches of a
round go side by side from the request pool (REQUEST_THREADS), each with its own booked slot.
Why that stays within Bitrix24's limits: a batch is one request for the portal's leaky bucket
(limits.md), every request of every worker books its slot in the one shared schedule (burst 40
at 1.8/s against Bitrix24's 50 at 2/s), so at most 40 requests of ours can reach the bucket at
once and QUERY_LIMIT_EXCEEDED does not come from us, however many batches are in flight;
BATCHES_IN_FLIGHT (40, the burst) only bounds how many calls one worker holds leased for one
portal. The method time budget (limits.md, `operating`: seconds of execution per method in a
10-minute window) counts what runs, not how it is spread: the same calls cost the same whether
their batches go one after another or side by side; Bitrix24 checks it before each command, so
batches in flight together may overrun it by what they run at once, and the next call answers
OPERATION_TIME_LIMIT, a wait until `operating_reset_at` (retry.py). Each call is leased to one
worker and is in one batch of its round (Claimed.batch), so its own events still go in one
request, in its order; different calls of a portal go in parallel.

Paused portals (portal_health.py) get one probe per interval from a pool of their own, so a
portal that hangs never holds the threads that deliver to the others.
Recordings to fetch from a PBX's RECORD_URL are downloaded by a third pool (DOWNLOAD_THREADS,
delivery/recordings.py), so a slow recording server holds neither deliveries nor probes.
Click-to-call and callback requests go to the PBX from a fourth (ORIGINATE_THREADS,
originate/), looked for every ORIGINATE_POLL seconds: an employee is waiting with a handset.
Any number of workers may run against one database (outbox.py's locking).

SIGTERM / SIGINT stop claiming; batches already sent are awaited and recorded, then the process
exits. A worker killed harder than that leaves leased calls, which another worker takes over
when their lease runs out and looks up before sending again (deliver.py).

Every few seconds the worker writes its heartbeat (health.py: /readyz needs a fresh one), and
once a day it refreshes the tokens of idle portals (the refresh token lives 180 days; `tokens
refresh-idle` does the same from cron). Nothing raises out of the loop: an error is logged and
the loop goes on, so one bad portal never stops the others.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from b24app import health, retention
from b24app.bitrix.errors import BitrixError, PortalUnavailable
from b24app.db import get_db
from b24app.delivery import metrics, outbox, portal_health, recordings
from b24app.delivery.deliver import Context, Portal24, PortalDelivery
from b24app.delivery.retry import RetryPolicy
from b24app.heap import freeze_start_up
from b24app.logs import get_logger
from b24app.originate import outbox as originate_outbox
from b24app.originate import sender
from b24app.portal_status import REVIVABLE
from b24app.portals import currencies
from b24app.wiring import store_of

log = get_logger(__name__)

DEFAULT_THREADS = 4
BATCHES_PER_ROUND = 10  # a portal's batches in one claim (claim, send side by side, record)
BATCHES_IN_FLIGHT = 40  # a portal's batches in flight in one worker (STANDARD burst: 40)
REQUEST_THREADS = BATCHES_IN_FLIGHT  # batch requests sent side by side (deliver._send_all)
PROBE_THREADS = 2  # probes wait at most portal_health.PROBE_TIMEOUT each
PROBE_POLL = 0.25  # seconds between looks for due probes (the first is due 0.5 s after a pause)
DOWNLOAD_THREADS = 2  # recordings fetched at once; each waits at most recordings.DOWNLOAD_DEADLINE
DOWNLOAD_POLL = 1.0  # seconds between looks for due downloads (a download is not urgent)
ORIGINATE_THREADS = 4  # webhooks to PBXs at once; each waits at most originate/webhooks.TIMEOUT
ORIGINATE_POLL = 0.2  # seconds between looks for requests to send (a read; a write only if due)
DEFAULT_LEASE = 120.0  # seconds; far above a batch's worst case (HTTP timeout, throttle, retries)
DEFAULT_IDLE_SLEEP = 1.0
HEARTBEAT_EVERY = 10.0  # seconds; /readyz wants one within health.HEARTBEAT_FRESH (60 s)
HOUSEKEEPING_EVERY = timedelta(days=1)
IDLE_PORTAL = timedelta(days=30)  # refresh tokens unused this long (refresh tokens live 180)


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Claims and delivers calls until stopped (or, with `once`, until nothing is due)."""

    def __init__(
        self,
        app: Flask,
        *,
        threads: int = DEFAULT_THREADS,
        lease: float = DEFAULT_LEASE,
        idle_sleep: float = DEFAULT_IDLE_SLEEP,
        policy: RetryPolicy | None = None,
        portals_per_round: int | None = None,
        worker_id: str | None = None,
        clients: Callable[[str], Portal24] | None = None,
    ) -> None:
        self.app = app
        self.threads = max(1, threads)
        self.idle_sleep = idle_sleep
        self.portals_per_round = portals_per_round or self.threads * 4
        self.ctx = Context(
            app=app,
            db=get_db(app),
            worker_id=worker_id or new_worker_id(),
            lease=lease,
            policy=policy or RetryPolicy(retention=app.config["SETTINGS"].retry_period),
            currencies_due=self._currencies_due,
            clients=clients,
        )
        self._stop = threading.Event()
        self._currency_tries: dict[str, float] = {}
        self._currency_lock = threading.Lock()
        self._last_housekeeping: datetime | None = None
        self._last_beat = float("-inf")
        self._probes: dict[int, Future[None]] = {}
        self._next_probe_poll = float("-inf")
        self._downloads: dict[int, Future[str]] = {}
        self._downloaded = False  # a download ended since the last claim (run: --once)
        self._next_download_poll = float("-inf")
        self._originations: dict[int, Future[str]] = {}
        self._next_originate_poll = float("-inf")

    @property
    def worker_id(self) -> str:
        return self.ctx.worker_id

    def stop(self) -> None:
        """Claim nothing more; finish and record what is in flight."""
        self._stop.set()

    # --- the loop ------------------------------------------------------------------------------
    def run(self, *, once: bool = False) -> Counter[str]:
        """Deliver until stopped; with `once`, until nothing is due. Returns outcome counts."""
        totals: Counter[str] = Counter()
        log.info("worker started", worker=self.worker_id, threads=self.threads, once=once)
        with (
            ThreadPoolExecutor(self.threads, thread_name_prefix="delivery") as pool,
            ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="probe") as probes,
            ThreadPoolExecutor(DOWNLOAD_THREADS, thread_name_prefix="download") as downloads,
            ThreadPoolExecutor(ORIGINATE_THREADS, thread_name_prefix="originate") as originate,
            ThreadPoolExecutor(REQUEST_THREADS, thread_name_prefix="request") as requests,
        ):
            self.ctx.send_pool = requests
            inflight: dict[Future[Counter[str]], tuple[int, int]] = {}  # → (portal, batches)
            while not self._stop.is_set():
                _collect(inflight, totals)
                self._forget_probes()
                self._beat()
                if not once:
                    self._housekeeping()
                busy = _batches_by_portal(inflight)
                full = {p for p, batches in busy.items() if batches >= BATCHES_IN_FLIGHT}
                room = self._room(inflight)
                self._downloaded = False  # set when a download ends after this claim
                claimed = self._claim(room, exclude=full | set(self._probes), in_flight=busy)
                for portal_id, calls in claimed.calls.items():
                    batches = len({call.batch for call in calls})
                    future = pool.submit(self._deliver, portal_id, calls)
                    inflight[future] = (portal_id, batches)
                self._start_probes(probes, exclude={p for p, _ in inflight.values()})
                self._start_downloads(downloads)
                self._start_originations(originate)
                if claimed.calls and (len(claimed.calls) >= room or claimed.more):
                    continue  # a full round, or a portal with more due: claim again at once
                pending: list[Future[Any]] = [
                    *inflight,
                    *self._probes.values(),
                    *self._downloads.values(),
                    *self._originations.values(),
                ]
                if not pending:
                    started = once and self._start_downloads(downloads, force=True)
                    if once and not started and not self._downloaded:
                        break  # (a download that ended after the claim made its call due)
                    if once:
                        continue
                self._pause(pending, originate)
            remaining: list[Future[Any]] = [
                *inflight,
                *self._probes.values(),
                *self._downloads.values(),
                *self._originations.values(),
            ]
            wait(remaining)
            _collect(inflight, totals)
        log.info("worker stopped", worker=self.worker_id, **dict(totals))
        return totals

    def _room(self, inflight: dict[Future[Counter[str]], tuple[int, int]]) -> int:
        """How many portals the next claim may take: the round's room, once at least a pool's
        worth of it (`threads`) is free or a thread has no share. The threads still have a round's
        worth queued meanwhile, and a claim's own statements (the due portals, their shares and
        schedules) are shared by several portals instead of paid again for each one that ends."""
        room = self.portals_per_round - len(inflight)
        idle = len(inflight) < self.threads  # a thread without a share: claim whatever fits
        return room if idle or room >= self.threads else 0

    def _claim(self, room: int, *, exclude: set[int], in_flight: dict[int, int]) -> outbox.Round:
        if room <= 0:
            return outbox.Round()
        started = time.monotonic()
        try:
            claimed = outbox.claim_round(
                self.ctx.db,
                worker_id=self.worker_id,
                now=self.ctx.clock(),
                lease=self.ctx.lease,
                max_portals=room,
                exclude=exclude,
                max_batches=BATCHES_PER_ROUND,
                in_flight=in_flight,
                book=True,
            )
        except Exception as error:  # the database may be back next time
            metrics.worker_error("claim", error)
            self._stop.wait(self.idle_sleep)
            return outbox.Round()
        metrics.claimed(
            portals=len(claimed.calls),
            calls=sum(len(calls) for calls in claimed.calls.values()),
            seconds=time.monotonic() - started,
        )
        return claimed

    def _deliver(self, portal_id: int, calls: list[outbox.Claimed]) -> Counter[str]:
        try:
            with self.app.app_context():
                return PortalDelivery(self.ctx, portal_id, calls).run()
        except Exception as error:  # the lease brings the calls back
            metrics.worker_error(f"portal {portal_id}", error)
            log.exception("portal delivery failed", portal_id=portal_id)
            return Counter(crashed=len(calls))

    # --- paused portals --------------------------------------------------------------------------
    def _start_probes(self, pool: ThreadPoolExecutor, *, exclude: set[int]) -> None:
        """Claim the probes due (at most every PROBE_POLL seconds: a busy loop must not add a
        write transaction to every round) and send each from the probe pool."""
        room = PROBE_THREADS - len(self._probes)
        now = time.monotonic()
        if room <= 0 or now < self._next_probe_poll:
            return
        self._next_probe_poll = now + PROBE_POLL
        try:
            due = portal_health.claim_probes(
                self.ctx.db, now=self.ctx.clock(), limit=room, exclude=exclude | set(self._probes)
            )
        except Exception as error:  # the database may be back next time
            metrics.worker_error("probe claim", error)
            return
        for probe in due:
            self._probes[probe.portal_id] = pool.submit(self._probe, probe)

    def _probe(self, probe: portal_health.Probe) -> None:
        """Ask a paused (or revivable) portal whether it answers again; nothing raises."""
        db, now = self.ctx.db, self.ctx.clock
        try:
            with self.app.app_context():
                self.ctx.client(probe.member_id).probe(
                    timeout=portal_health.PROBE_TIMEOUT, revive=REVIVABLE
                )
        except PortalUnavailable:
            # Its status says what to wait for now (needs_reauth, gone …): no pause needed.
            portal_health.probe_answered(db, probe.portal_id, now=now())
        except BitrixError as error:
            metrics.probe(member_id=probe.member_id, ok=False, code=error.code)
            portal_health.probe_failed(
                db, probe.portal_id, code=error.code, reason=str(error), now=now()
            )
        except Exception as error:  # the next probe comes anyway
            metrics.worker_error(f"probe {probe.member_id}", error)
        else:
            metrics.probe(member_id=probe.member_id, ok=True, code="ok")
            portal_health.probe_answered(db, probe.portal_id, now=now())

    def _forget_probes(self) -> None:
        for portal_id, future in list(self._probes.items()):
            if future.done():
                del self._probes[portal_id]

    # --- recordings to download ----------------------------------------------------------------
    def _start_downloads(self, pool: ThreadPoolExecutor, *, force: bool = False) -> bool:
        """Claim the due downloads there is room for (at most every DOWNLOAD_POLL seconds
        unless `force`) and run each in the download pool; return whether any started."""
        for event_id, future in list(self._downloads.items()):
            if future.done():
                del self._downloads[event_id]
                self._downloaded = True
        room = DOWNLOAD_THREADS - len(self._downloads)
        now = time.monotonic()
        if room <= 0 or (now < self._next_download_poll and not force):
            return False
        self._next_download_poll = now + DOWNLOAD_POLL
        try:
            due = recordings.claim_downloads(
                self.ctx.db, worker_id=self.worker_id, now=self.ctx.clock(), limit=room
            )
        except Exception as error:  # the database may be back next time
            metrics.worker_error("download claim", error)
            return False
        for job in due:
            self._downloads[job.event_id] = pool.submit(self._download, job)
        return bool(due)

    def _download(self, job: recordings.Download) -> str:
        """Fetch one recording and record the outcome; nothing raises (the lease brings the
        recording back after an unforeseen error)."""
        try:
            return recordings.fetch(
                self.ctx.db,
                job,
                settings=self.app.config["SETTINGS"],
                worker_id=self.worker_id,
                clock=self.ctx.clock,
                stop=self._stop,
            )
        except Exception as error:
            metrics.worker_error(f"download {job.event_id}", error)
            return "crashed"

    # --- requests to PBXs (click-to-call, callback) ---------------------------------------------
    def _start_originations(self, pool: ThreadPoolExecutor) -> None:
        """Claim the due requests there is room for (at most every ORIGINATE_POLL seconds) and
        send each from the originate pool."""
        for origination_id, future in list(self._originations.items()):
            if future.done():
                del self._originations[origination_id]
        room = ORIGINATE_THREADS - len(self._originations)
        now = time.monotonic()
        if room <= 0 or now < self._next_originate_poll:
            return
        self._next_originate_poll = now + ORIGINATE_POLL
        try:
            due = originate_outbox.claim(
                self.ctx.db, worker_id=self.worker_id, now=self.ctx.clock(), limit=room
            )
        except Exception as error:  # the database may be back next time
            metrics.worker_error("originate claim", error)
            return
        for job in due:
            self._originations[job.id] = pool.submit(self._originate, job)

    def _originate(self, job: originate_outbox.Job) -> str:
        """Send one request to its PBX; nothing raises (the lease brings it back)."""
        try:
            with self.app.app_context():
                store = store_of(self.app)
                return sender.send(store, job, worker_id=self.worker_id, now=self.ctx.clock)
        except Exception as error:
            metrics.worker_error(f"originate {job.id}", error)
            return "crashed"

    def _pause(self, pending: list[Future[Any]], originate: ThreadPoolExecutor) -> None:
        """Wait up to idle_sleep for one of `pending` to end (or the stop), looking for
        click-to-call requests every ORIGINATE_POLL meanwhile: one stored while the loop waits
        is sent within a fraction of a second, without claiming calls any more often."""
        deadline = time.monotonic() + self.idle_sleep
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            step = min(left, ORIGINATE_POLL)
            if pending:
                done, _ = wait(pending, timeout=step, return_when=FIRST_COMPLETED)
                if done:
                    return
            else:
                self._stop.wait(step)
            self._start_originations(originate)

    # --- side duties -------------------------------------------------------------------------
    def _beat(self) -> None:
        """Tell readiness (health.py) that a worker is alive, every HEARTBEAT_EVERY seconds;
        and take back the leases of this host's workers that died (at start, then as often)."""
        now = time.monotonic()
        if now - self._last_beat < HEARTBEAT_EVERY:
            return
        self._last_beat = now
        try:
            health.beat(self.ctx.db, self.worker_id)
            outbox.release_dead_leases(
                self.ctx.db,
                hostname=self.worker_id.split(":")[0],
                alive=_alive,
                now=self.ctx.clock(),
                lease=self.ctx.lease,
            )
        except Exception as error:  # the next beat may get through
            metrics.worker_error("heartbeat", error)

    def _currencies_due(self, member_id: str) -> bool:
        """At most one currency refresh per portal per currencies.MAX_AGE in this worker."""
        now = time.monotonic()
        with self._currency_lock:
            last = self._currency_tries.get(member_id)
            if last is not None and now - last < currencies.MAX_AGE.total_seconds():
                return False
            self._currency_tries[member_id] = now
            return True

    def _housekeeping(self) -> None:
        """Once a day: refresh idle portals' tokens, well inside the refresh token's life."""
        now = self.ctx.clock()
        if self._last_housekeeping and now - self._last_housekeeping < HOUSEKEEPING_EVERY:
            return
        self._last_housekeeping = now
        try:
            refreshed, failed = store_of(self.app).refresh_idle(IDLE_PORTAL)
            log.info("idle portals refreshed", refreshed=refreshed, failed=failed)
        except Exception as error:  # tomorrow is another day
            metrics.worker_error("refresh idle portals", error)
        try:
            retention_period = self.app.config["SETTINGS"].call_retention
            purged = retention.purge_finished_calls(self.ctx.db, now, retention_period)
            requests = retention.purge_finished_originations(self.ctx.db, now, retention_period)
            log.info("finished calls past retention deleted", calls=purged, originations=requests)
        except Exception as error:  # tomorrow is another day
            metrics.worker_error("retention", error)


def _alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (signal 0 checks without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _collect(inflight: dict[Future[Counter[str]], tuple[int, int]], totals: Counter[str]) -> None:
    for future in [f for f in inflight if f.done()]:
        del inflight[future]
        totals.update(future.result())


def _batches_by_portal(inflight: dict[Future[Counter[str]], tuple[int, int]]) -> dict[int, int]:
    """Each portal's batches in flight in this worker."""
    busy: Counter[int] = Counter()
    for portal_id, batches in inflight.values():
        busy[portal_id] += batches
    return dict(busy)


# --- the command ---------------------------------------------------------------------------------


@click.command("worker")
@with_appcontext
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@click.option("--threads", default=DEFAULT_THREADS, show_default=True, help="Portals at a time.")
@click.option("--lease", default=DEFAULT_LEASE, show_default=True, help="Seconds a claim lasts.")
@click.option(
    "--idle-sleep", default=DEFAULT_IDLE_SLEEP, show_default=True, help="Seconds between polls."
)
def worker_command(once: bool, threads: int, lease: float, idle_sleep: float) -> None:
    """Deliver queued calls to Bitrix24 (the Procfile's `worker:` process)."""
    worker = Worker(
        current_app._get_current_object(),  # type: ignore[attr-defined]
        threads=threads,
        lease=lease,
        idle_sleep=idle_sleep,
    )

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping after the batches in flight", signal=signal.Signals(signum).name)
        worker.stop()

    freeze_start_up()  # heap.py: a full collection of this process took 94-158 ms without it
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        totals = worker.run(once=once)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if once:
        summary = ", ".join(f"{name} {count}" for name, count in sorted(totals.items()))
        click.echo(f"delivery: {summary or 'nothing due'}")


def init_app(app: Flask) -> None:
    app.cli.add_command(worker_command)


__all__ = ["Worker", "init_app", "worker_command"]
