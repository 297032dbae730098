"""A LINE_NUMBER first seen on a call is added to the portal, in the batch that registers it.

Bitrix24 shows a call's line in its reports and in Sales Intelligence only for lines the app
added (api-reference/telephony/telephony-external-line-add.md; digest §5.6). The register page
takes any LINE_NUMBER; that the core then creates an unknown line silently is only seen in a core
snapshot and documented nowhere, so b24app adds the line itself, the documented way:

- lifecycle.plan puts `telephony.externalLine.add` {NUMBER} right before the register that
  carries the number, in the same batch (batch.md: commands run in order; ours go with halt=0, so
  the add's error stops nothing), counted in the batch's 50 commands (a call that no longer fits
  goes next round, at once); once per number per batch. No request of its own, no command for a
  call whose line is known.
- Its success, and the error "Line already exists" (ERROR_CORE), both mean the portal has the
  line: the number is remembered (`external_lines`, portals/lines.remember) and not added again.
  Any other error is logged and changes nothing for the call; this worker does not try that
  number again for RETRY_AFTER, so a portal that refuses does not get an add in every batch.
  A batch whose answer was lost teaches nothing: the next register on that line adds it again.
- The numbers known are read from `external_lines` at most every KNOWN_TTL per portal and
  worker. A stale read is harmless: a number another worker or the settings page added meanwhile
  is added once more and answered "Line already exists", which is remembered like a success.

A number is added with NUMBER alone: NAME is the admin's to give (settings page), and
CRM_AUTO_CREATE keeps the page's default Y, under which an outgoing call's CRM_CREATE works as it
did before the line existed (register page).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from b24app.bitrix.client import BatchResult
from b24app.db import Database
from b24app.delivery.lifecycle import Plan, Step
from b24app.logs import get_logger
from b24app.portals import lines
from b24app.portals.store import InstallationStore

log = get_logger(__name__)

KNOWN_TTL = timedelta(minutes=5)  # how long a worker believes its read of external_lines
RETRY_AFTER = timedelta(minutes=10)  # a refused add is not tried again by the worker before


@dataclass
class _Portal:
    known: set[str]
    read_at: datetime
    refused: dict[str, datetime] = field(default_factory=dict)  # number → when it was refused


class KnownLines:
    """One worker's memory of each portal's lines (thread-safe: a worker delivers several
    portals at once, each portal by one thread at a time)."""

    def __init__(self) -> None:
        self._portals: dict[int, _Portal] = {}
        self._lock = threading.Lock()

    def for_batch(self, db: Database, portal_id: int, now: datetime) -> BatchLines:
        """The numbers one batch to the portal must not add (known, or refused within
        RETRY_AFTER); `external_lines` is read again when this worker's read is older than
        KNOWN_TTL (`read_if_stale`, which the portal's view usually did already). Out: the
        batch's BatchLines. Database errors propagate."""
        if self._stale(portal_id, now):
            with db.read() as session:
                self.read_if_stale(session, portal_id, now)
        with self._lock:
            memory = self._portals[portal_id]
            skip = set(memory.known) | {
                number for number, at in memory.refused.items() if now - at < RETRY_AFTER
            }
        return BatchLines(self, portal_id, skip)

    def read_if_stale(self, session: Session, portal_id: int, now: datetime) -> None:
        """Read the portal's numbers from `external_lines` in the caller's transaction (the
        portal's view: deliver.load_portal), unless this worker read them within KNOWN_TTL."""
        if not self._stale(portal_id, now):
            return
        known = lines.known(session, portal_id)
        with self._lock:
            memory = self._portals.get(portal_id)
            refused = memory.refused if memory is not None else {}
            self._portals[portal_id] = _Portal(known, now, refused)

    def _stale(self, portal_id: int, now: datetime) -> bool:
        with self._lock:
            memory = self._portals.get(portal_id)
        return memory is None or now - memory.read_at >= KNOWN_TTL

    def learned(
        self, portal_id: int, known: Iterable[str], refused: Iterable[str], now: datetime
    ) -> None:
        """Numbers the portal has now, and numbers whose add it refused at `now`."""
        with self._lock:
            memory = self._portals.get(portal_id)
            if memory is None:  # not read yet: the next batch reads external_lines
                return
            memory.known.update(known)
            for number in refused:
                memory.refused[number] = now
            for number in memory.known:
                memory.refused.pop(number, None)


@dataclass
class BatchLines:
    """The line numbers of one portal batch: which to add (`wanted`, for lifecycle.plan's
    add_line), which were planned (`planned`), and what the answers taught (`learn`)."""

    memory: KnownLines
    portal_id: int
    skip: set[str]  # known, refused lately, or already planned in this batch

    def wanted(self, number: str) -> bool:
        """Whether a register carrying LINE_NUMBER `number` is to be preceded by the add: not
        known, not refused within RETRY_AFTER, not planned in this batch, a valid line number."""
        if number in self.skip:
            return False
        try:
            return lines.check_number(number) == number
        except lines.LineError:
            return False

    def planned(self, plan: Plan) -> None:
        """A call was planned: its adds are in this batch, no other call's need repeat them."""
        self.skip.update(step.params["NUMBER"] for step in _adds(plan))

    def learn(
        self,
        store: InstallationStore,
        member_id: str,
        plans: Iterable[Plan],
        batch: BatchResult,
        now: datetime,
    ) -> None:
        """Read the adds' answers: added or "Line already exists" → remembered as known (in
        `external_lines` and this worker); another error → logged, not tried again for
        RETRY_AFTER; no answer → nothing learnt. Never raises: the calls go on regardless."""
        known: list[str] = []
        refused: list[str] = []
        for step in (step for plan in plans for step in _adds(plan)):
            number = step.params["NUMBER"]
            error = batch.errors.get(step.key)
            if error is None and step.key in batch.result:
                outcome = "added"
                known.append(number)
            elif error is None:
                continue
            elif lines.ALREADY_EXISTS.lower() in error.description.lower():
                outcome = "exists"
                known.append(number)
            else:
                outcome = error.code
                refused.append(number)
            log.info(
                "external line",
                member_id=member_id,
                line=number,
                outcome=outcome,
                detail=None if error is None else error.description[:200],
            )
        if known:
            try:
                lines.remember(store, member_id, [(number, None) for number in known])
            except Exception as error:  # the next batch adds it again: "Line already exists"
                log.error("external line not remembered", member_id=member_id, error=str(error))
        self.memory.learned(self.portal_id, known, refused, now)


def _adds(plan: Plan) -> list[Step]:
    return [step for step in plan.steps if step.role == "line"]
