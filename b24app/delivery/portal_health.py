"""Pausing a portal that fails as a whole, and probing it until it answers again.

When a request fails for the portal rather than for its calls (no connection, a reset, a
timeout, an HTML 5xx page, OVERLOAD_LIMIT: retry.ENDINGS), sending its other calls would fail
the same way and spend their attempts for nothing. So the portal is paused (`portal_health`
row): the outbox claims none of its calls (outbox.due_condition) and the workers instead send
one probe (`app.info`, PortalClient.probe) at growing intervals capped at PROBE_CAP seconds.
The moment a probe succeeds the pause ends, and everything due goes out at the throttle's pace.
Calls neither spend attempts nor wait out a backoff while their portal is paused.

A portal that refuses even tokens just renewed for it (retry.PORTAL_WIDE) is paused the same
way, each probe renewing the token once more; after TOKENS_REFUSED_FOR it is handed to its admin
(needs_reauth), since a passing glitch would have ended by then.

Portals whose status waits for something outside our reach that can end without us being told
(PAYMENT_REQUIRED, ACCESS_DENIED: the admin pays or changes plan) are probed too, every
REVIVE_EVERY seconds, and become active on the first answer (PortalClient.probe `revive`).

Probes are scheduled by time, not by answers: claiming a probe moves `probe_at` to the next
interval, so a probe that hangs until its timeout does not delay the next one, and any number
of workers on any hosts send one probe per interval between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from b24app.bitrix.client import REFRESH_ERRORS
from b24app.db import Database
from b24app.logs import get_logger
from b24app.models import Call, CallState, Portal, PortalHealth, PortalStatus
from b24app.portal_status import REVIVABLE
from b24app.portals.store import set_status

log = get_logger(__name__)

PROBE_FIRST = 0.5  # seconds after the failure that paused the portal
PROBE_CAP = 3.0  # longest interval between probes: the portal's return is seen within it
PROBE_TIMEOUT = 2.5  # seconds; app.info answers in milliseconds on a portal that works
REVIVE_EVERY = 60.0  # seconds between probes of a portal waiting for a payment or REST access
# seconds a portal may refuse even a just-renewed token (each probe renews it once more) before
# it is handed to its admin (needs_reauth): something on the portal, not a passing glitch
TOKENS_REFUSED_FOR = 10 * 60.0
TOKENS_REFUSED_WORDS = (
    "The portal refuses the application's access tokens, even renewed ones; re-authorise the "
    "application by opening it in Bitrix24."
)


@dataclass(frozen=True)
class Probe:
    """A probe a worker has claimed."""

    portal_id: int
    member_id: str
    status: str  # the portal's status: active (paused), or one of REVIVABLE


def interval(failures: int) -> float:
    """Seconds from one probe to the next after `failures` failed probes: 0.5, 1, 2, 3, 3 …"""
    return min(PROBE_CAP, PROBE_FIRST * 2.0**failures)


def pause(db: Database, portal_id: int, *, code: str, reason: str, now: datetime) -> None:
    """Pause delivery to the portal (or keep it paused), with the reason the admin sees."""
    with db.write() as session:
        row = session.get(PortalHealth, portal_id, with_for_update=True)
        if row is None:
            row = PortalHealth(portal_id=portal_id, failures=0)
            session.add(row)
        if row.paused_since is None:
            row.paused_since = now
            row.failures = 0
            row.probe_at = now + timedelta(seconds=PROBE_FIRST)
            log.warning("portal paused", portal_id=portal_id, reason_code=code)
        row.reason_code = code
        row.reason = reason


def paused_ids() -> Select[Any]:
    """A subquery of the paused portals' ids (outbox.due_condition leaves their calls)."""
    return select(PortalHealth.portal_id).where(PortalHealth.paused_since.is_not(None))


def claim_probes(db: Database, *, now: datetime, limit: int, exclude: set[int]) -> list[Probe]:
    """The probes due now (paused portals, and revivable ones, that have calls waiting), each
    moved to its next interval so no other worker sends it too."""
    due = _due_probes(now, exclude).limit(limit)
    with db.read() as session:  # the usual answer is "none": no write lock for it
        if not session.execute(due).first() and not session.scalars(_unscheduled()).first():
            return []
    with db.write() as session:
        for portal_id in session.scalars(_unscheduled()).all():
            probe_at = now + timedelta(seconds=REVIVE_EVERY)
            session.add(PortalHealth(portal_id=portal_id, failures=0, probe_at=probe_at))
        probes = []
        for row, member_id, status in session.execute(due):
            every = interval(row.failures) if status == PortalStatus.ACTIVE else REVIVE_EVERY
            row.probe_at = now + timedelta(seconds=every)
            probes.append(Probe(row.portal_id, member_id, status))
    return probes


def _due_probes(now: datetime, exclude: set[int]) -> Select[PortalHealth, str, str]:
    """Health rows whose probe is due: paused or revivable portals that have calls waiting."""
    waiting = exists().where(Call.portal_id == Portal.id, Call.state == CallState.QUEUED)
    query = (
        select(PortalHealth, Portal.member_id, Portal.status)
        .join(Portal, Portal.id == PortalHealth.portal_id)
        .where(
            PortalHealth.probe_at <= now,
            or_(PortalHealth.paused_since.is_not(None), Portal.status.in_(REVIVABLE)),
            waiting,
        )
        .order_by(PortalHealth.probe_at)
    )
    if exclude:
        query = query.where(PortalHealth.portal_id.not_in(list(exclude)))
    return query


def _unscheduled() -> Select[Any]:
    """Revivable portals with calls waiting that have no health row (so no probe) yet."""
    return select(Portal.id).where(
        Portal.status.in_(REVIVABLE),
        ~exists().where(PortalHealth.portal_id == Portal.id),
        exists().where(Call.portal_id == Portal.id, Call.state == CallState.QUEUED),
    )


def probe_answered(db: Database, portal_id: int, *, now: datetime) -> None:
    """The portal answered: the pause ends and its calls go now."""
    with db.write() as session:
        row = session.get(PortalHealth, portal_id, with_for_update=True)
        if row is None:
            return
        paused_since = row.paused_since
        session.execute(delete(PortalHealth).where(PortalHealth.portal_id == portal_id))
    if paused_since is not None:
        seconds = (now - paused_since).total_seconds()
        log.info("portal answers again; pause over", portal_id=portal_id, paused_s=round(seconds))


def probe_failed(db: Database, portal_id: int, *, code: str, reason: str, now: datetime) -> None:
    """Another failed probe: the next ones come at a longer interval (up to PROBE_CAP). A
    portal that has refused even renewed tokens (REFRESH_ERRORS) for TOKENS_REFUSED_FOR
    seconds is handed to its admin instead: needs_reauth, no more probes. The pause's start is
    moved to the first such refusal (the settings page's "since" then says when it began)."""
    with db.write() as session:
        row = session.get(PortalHealth, portal_id, with_for_update=True)
        if row is None:
            return
        row.failures += 1
        if code in REFRESH_ERRORS and row.reason_code not in REFRESH_ERRORS:
            row.paused_since = now  # the token refusals' own TOKENS_REFUSED_FOR count from here
        row.reason_code, row.reason = code, reason
        if code in REFRESH_ERRORS and _paused_for(row, now) >= TOKENS_REFUSED_FOR:
            portal = session.get(Portal, portal_id)
            if portal is not None and portal.status == PortalStatus.ACTIVE:
                set_status(portal, PortalStatus.NEEDS_REAUTH, TOKENS_REFUSED_WORDS)
                session.delete(row)
                log.warning("portal refuses renewed tokens; needs reauth", portal_id=portal_id)


def _paused_for(row: PortalHealth, now: datetime) -> float:
    """Seconds the portal has been paused (0 when it is not)."""
    return (now - row.paused_since).total_seconds() if row.paused_since else 0.0


def probe_now(db: Database, portal_id: int, *, now: datetime) -> None:
    """Make the portal's next probe due now: something suggests it may answer again (a user
    opened the app of a portal waiting for its payment), so its calls need not wait for the
    minute's probe."""
    with db.write() as session:
        row = session.get(PortalHealth, portal_id, with_for_update=True)
        if row is None:
            session.add(PortalHealth(portal_id=portal_id, failures=0, probe_at=now))
        else:
            row.probe_at = now


@dataclass(frozen=True)
class Pause:
    """What the settings page and /metrics show of a paused portal."""

    since: datetime
    reason_code: str | None
    reason: str | None
    waiting: int  # calls queued for it


def is_paused(session: Session, portal_id: int) -> bool:
    """Whether delivery to the portal is paused now (it failed as a whole and is probed)."""
    row = session.get(PortalHealth, portal_id)
    return row is not None and row.paused_since is not None


def read(session: Session, portal_id: int) -> Pause | None:
    """The portal's pause, or None when it is not paused."""
    row = session.get(PortalHealth, portal_id)
    if row is None or row.paused_since is None:
        return None
    waiting = session.scalar(
        select(func.count()).where(Call.portal_id == portal_id, Call.state == CallState.QUEUED)
    )
    return Pause(row.paused_since, row.reason_code, row.reason, int(waiting or 0))
