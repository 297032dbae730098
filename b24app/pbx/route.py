"""`GET /pbx/v1/route?PHONE_NUMBER=…`: who should take this caller (PRODUCT.md, "The whole call").

A PBX asks while the caller hears the first ring. The answer is JSON with Bitrix24's own names,
`{"USER_ID", "USER_PHONE_INNER", "CRM_ENTITY_TYPE", "CRM_ENTITY_ID"}`, each null when unknown:
the employee responsible for the caller in the CRM, their extension, and the CRM entity. It
comes from `telephony.externalCall.searchCrmEntities`
(api-reference/telephony/telephony-external-call-search-crm-entities.md; tutorials/telephony,
"Routing a Call to the Customer's Responsible Person").

Which match: the first entity Bitrix24 returns that has a responsible employee (if none has one,
the first entity, with USER_ID null); entities of types other than CONTACT, COMPANY and LEAD
(the page's three, the ones `/calls/start` takes) are skipped. Bitrix24 returns its matches
"sorted by internal priorities" and advises taking the first when different employees are
responsible for them (the method's page in bitrix24/b24restdocs; the tutorial above routes to
`result[0]`): Bitrix24 knows its CRM better than any fixed order of ours would, and the PBX then
routes as Bitrix24's own telephony does.

The extension: the portal's extension mapping reversed (mapping.extension_of: the lowest
extension mapped to the employee), else the employee's profile, UF_PHONE_INNER (returned as
ASSIGNED_BY.USER_PHONE_INNER), when it looks like an extension (mapping.EXTENSION: the value
goes into a dial plan); else null, and the PBX falls back to its queue.

Within 2 s, never a 5xx: once the key and PHONE_NUMBER are good the answer is 200, with nulls
whenever Bitrix24 cannot say in time (slow, down, rate-limited, the portal paused by the
delivery (portal_health) or waiting for its admin, no spare request slot, a bug of ours).
- Budget: the lookup runs in a thread of its own (at most LOOKUPS at once per process); the
  request waits for it until BUDGET seconds after the request arrived, then answers nulls. The
  HTTP timeout is what is left of the budget (less ANSWER_MARGIN), so a slow portal holds a
  thread about that long.
  A lookup that outlives its request (a token refresh) still fills the cache. With LOOKUPS
  lookups in flight, another number is answered nulls at once instead of queueing.
- Throttle: the search goes through PortalClient.ask, which takes a request slot only if one is
  free now and leaves KEEP_FREE (half) of the portal's burst free (bitrix/throttle.spare_slot);
  otherwise nothing is sent. The rule: routing uses spare capacity only. The worker sends up to
  50 calls' events in one batch request, so half the burst (20 requests, 112 on Enterprise) lets
  it send at once whatever has accumulated; when the bucket is more than half full (the worker
  draining a backlog, BX24.js busy on the portal's pages) a route answers nulls and the call
  goes to the queue, as it would without routing. Routes never wait for a slot, and a route
  that is refused books nothing, so the worker's next batch never waits because of routes.
- Cache (per process, per portal and number): an answer naming someone for FOUND_TTL (60 s),
  nothing found for NOT_FOUND_TTL (15 s); Bitrix24's failures are not cached, but after a lookup
  that got no answer at all (timeout, no connection, an unreadable answer) the portal's lookups
  (or a lookup that outlived its request's budget) rest for COOLDOWN seconds (nulls at once)
  unless a lookup then ends well, so a portal that is down costs one timeout per 5 s, not one
  per caller. Concurrent requests for one number share one lookup. A briefly stale
  answer is acceptable: who is responsible for a client changes rarely (a reassignment in the
  CRM), and the worst it does is ring the previous responsible employee for up to a minute,
  who can transfer the call; a stale "nobody" sends the caller to the queue, as without routing.
  Each web process keeps its own cache: Bitrix24 is asked at most once per process per number
  per TTL.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticCustomError

from b24app.bitrix.client import PortalClient
from b24app.bitrix.errors import (
    BitrixError,
    OAuthUnavailable,
    PortalUnavailable,
    RateLimited,
    TransportError,
    UnreadableAnswer,
)
from b24app.delivery import portal_health
from b24app.logs import get_logger
from b24app.models import PortalStatus
from b24app.pbx.intake import PortalContext
from b24app.pbx.schemas import CRM_ENTITY_TYPES, MAX_ERRORS, MAX_ID, FieldError, phone_number
from b24app.portals import mapping
from b24app.portals.store import InstallationStore

log = get_logger(__name__)

SEARCH = "telephony.externalCall.searchCrmEntities"
PHONE_NUMBER = "PHONE_NUMBER"
BUDGET = 1.5  # seconds from the request's arrival: the answer is out well within 2 s
FOUND_TTL = 60.0  # seconds an answer naming an employee or entity is reused
NOT_FOUND_TTL = 15.0  # seconds "nothing found" is reused (a lead may be created meanwhile)
COOLDOWN = 5.0  # seconds a portal that did not answer at all is not asked
KEEP_FREE = 0.5  # share of the portal's request burst a route leaves to the delivery
LOOKUPS = 4  # lookups in flight per process
MIN_HTTP_TIMEOUT = 0.2  # with less left of the budget, the request is not sent
ANSWER_MARGIN = 0.1  # the HTTP timeout ends this long before the budget: the lookup ends first
CACHE_SIZE = 10_000  # numbers remembered per process (the oldest are forgotten first)
CLIENTS = 64  # PortalClients (HTTPS sessions) kept per process


@dataclass(frozen=True)
class Route:
    """The answer: the responsible employee, their extension, the CRM entity (None: unknown)."""

    user_id: int | None = None
    user_phone_inner: str | None = None
    crm_entity_type: str | None = None
    crm_entity_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "USER_ID": self.user_id,
            "USER_PHONE_INNER": self.user_phone_inner,
            "CRM_ENTITY_TYPE": self.crm_entity_type,
            "CRM_ENTITY_ID": self.crm_entity_id,
        }


NOBODY = Route()


@dataclass(frozen=True)
class Answer:
    """A route and how it was come by (`outcome`, for the log and /metrics): found, not_found,
    cached, slow, busy, resting, paused, inactive, no_slot, rate_limited, unavailable,
    refused, failed."""

    route: Route
    outcome: str


# --- the request ----------------------------------------------------------------------------


def read_phone_number(args: Iterable[tuple[str, list[str]]]) -> tuple[str | None, list[FieldError]]:
    """PHONE_NUMBER from the query string's (name, values) pairs, checked as `/calls/start`
    checks it (schemas.phone_number: text with digits, at most 64 characters), or the errors
    naming each bad field: missing, given twice, bad, or unknown (at most MAX_ERRORS)."""
    phone: str | None = None
    errors: list[FieldError] = []
    for name, values in args:
        if len(errors) >= MAX_ERRORS:
            break
        if name != PHONE_NUMBER:
            errors.append(FieldError(name[:100], "unknown field: the route takes PHONE_NUMBER"))
        elif len(values) > 1:
            errors.append(FieldError(PHONE_NUMBER, "must be given once, as a single value"))
        else:
            phone, error = _checked(values[0])
            errors += [FieldError(PHONE_NUMBER, error)] if error else []
    if phone is None and not any(e.field == PHONE_NUMBER for e in errors):
        errors.insert(0, FieldError(PHONE_NUMBER, "is required: the caller's phone number"))
    return (phone if not errors else None), errors


def _checked(value: str) -> tuple[str | None, str | None]:
    try:
        return phone_number(value), None
    except PydanticCustomError as error:
        return None, error.message()


# --- Bitrix24's answer ----------------------------------------------------------------------


def best_match(result: Any) -> dict[str, Any] | None:
    """The entity to route by (the module's rule): the first of the search's `result` with a
    responsible employee, else the first; only CONTACT, COMPANY and LEAD; None if none."""
    entities = [
        entity
        for entity in (result if isinstance(result, list) else [])
        if isinstance(entity, dict)
        and entity.get("CRM_ENTITY_TYPE") in CRM_ENTITY_TYPES
        and _positive(entity.get("CRM_ENTITY_ID")) is not None
    ]
    with_employee = (e for e in entities if _positive(e.get("ASSIGNED_BY_ID")) is not None)
    return next(with_employee, entities[0] if entities else None)


def route_of(entity: dict[str, Any], mapped_extension: str | None) -> Route:
    """The route for the chosen entity; `mapped_extension` is the mapping's extension of its
    responsible employee (None: not mapped, then their profile's, if it looks like one)."""
    user_id = _positive(entity.get("ASSIGNED_BY_ID"))
    inner = mapped_extension
    if inner is None and user_id is not None:
        assigned = entity.get("ASSIGNED_BY")
        inner = _extension((assigned if isinstance(assigned, dict) else {}).get("USER_PHONE_INNER"))
    return Route(
        user_id=user_id,
        user_phone_inner=inner if user_id is not None else None,
        crm_entity_type=str(entity["CRM_ENTITY_TYPE"]),
        crm_entity_id=_positive(entity.get("CRM_ENTITY_ID")),
    )


def _positive(value: Any) -> int | None:
    """A Bitrix24 id (651 or "651") as an int, None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 0 < value <= MAX_ID else None


def _extension(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not mapping.EXTENSION.match(value.strip()):
        return None
    return value.strip()


# --- the router -----------------------------------------------------------------------------

Key = tuple[int, str]  # (portal id, PHONE_NUMBER as sent)


class Router:
    """Answers routes for one web process: the cache, the lookups in flight, the portals resting
    after a failure, and a PortalClient per portal. `store` is the installation store (its
    database, and the client of each portal). Thread-safe."""

    def __init__(self, store: InstallationStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._cache: OrderedDict[Key, tuple[float, Route]] = OrderedDict()
        self._pending: dict[Key, Future[Answer]] = {}
        self._resting: dict[int, float] = {}  # portal id -> monotonic time to ask again
        self._clients: OrderedDict[str, PortalClient] = OrderedDict()

    def route(self, portal: PortalContext, phone: str, *, deadline: float) -> Answer:
        """Who should take a caller from `phone` on `portal`, by `deadline` (time.monotonic()):
        from the cache, else from a lookup (started now or already under way); NOBODY with the
        reason when there is no answer by then. Never raises for Bitrix24's or the database's
        failures."""
        key = (portal.portal_id, phone)
        with self._lock:
            now = time.monotonic()
            cached = self._cached(key, now)
            if cached is not None:
                return Answer(cached, "cached")
            future = self._pending.get(key)
            if future is None:
                if self._resting.get(portal.portal_id, 0.0) > now:
                    return Answer(NOBODY, "resting")
                if len(self._pending) >= LOOKUPS:
                    return Answer(NOBODY, "busy")
                future = self._pending[key] = Future()
                thread = threading.Thread(
                    target=self._run,
                    args=(future, key, portal, phone, deadline),
                    name="b24app-route",
                    daemon=True,
                )
                try:
                    thread.start()
                except RuntimeError:  # no thread to be had: the PBX still gets its answer
                    del self._pending[key]
                    return Answer(NOBODY, "busy")
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:  # the portal rests until the lookup ends well, or for COOLDOWN
            with self._lock:
                self._resting[portal.portal_id] = time.monotonic() + COOLDOWN
            return Answer(NOBODY, "slow")

    def _cached(self, key: Key, now: float) -> Route | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._cache[key]
            return None
        return entry[1]

    def _run(
        self, future: Future[Answer], key: Key, portal: PortalContext, phone: str, deadline: float
    ) -> None:
        """A lookup's thread: search, remember the answer, wake whoever waits for it."""
        try:
            answer = self._lookup(portal, phone, deadline)
        except Exception:  # a bug or the database: the PBX still gets its 200 with nulls
            log.exception("route lookup failed", member_id=portal.member_id)
            answer = Answer(NOBODY, "failed")
        with self._lock:
            self._pending.pop(key, None)
            now = time.monotonic()
            ttl = {"found": FOUND_TTL, "not_found": NOT_FOUND_TTL}.get(answer.outcome)
            if ttl is not None:
                self._cache[key] = (now + ttl, answer.route)
                self._cache.move_to_end(key)
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
            if answer.outcome == "unavailable":
                self._resting[portal.portal_id] = now + COOLDOWN
            elif ttl is not None:  # Bitrix24 answered: a slow spell is over
                self._resting.pop(portal.portal_id, None)
        future.set_result(answer)

    def _lookup(self, portal: PortalContext, phone: str, deadline: float) -> Answer:
        """Ask Bitrix24 (the module's rules) and read the employee's extension."""
        if portal.status != PortalStatus.ACTIVE:
            return Answer(NOBODY, "inactive")
        with self._store.db.read() as session:
            if portal_health.is_paused(session, portal.portal_id):
                return Answer(NOBODY, "paused")
        timeout = deadline - time.monotonic() - ANSWER_MARGIN
        if timeout < MIN_HTTP_TIMEOUT:
            return Answer(NOBODY, "slow")
        try:
            envelope = self._client(portal.member_id).ask(
                SEARCH, {PHONE_NUMBER: phone}, timeout=timeout, keep_free=KEEP_FREE
            )
        except BitrixError as error:
            return Answer(NOBODY, _failure(error))
        entity = best_match(envelope.get("result"))
        if entity is None:
            return Answer(NOBODY, "not_found")
        user_id = _positive(entity.get("ASSIGNED_BY_ID"))
        mapped = None
        if user_id is not None:
            with self._store.db.read() as session:
                mapped = mapping.extension_of(session, portal.portal_id, user_id)
        return Answer(route_of(entity, mapped), "found")

    def _client(self, member_id: str) -> PortalClient:
        """The portal's client, kept for the next lookup (its HTTPS session: no new handshake)."""
        with self._lock:
            client = self._clients.get(member_id)
            if client is None:
                client = self._clients[member_id] = self._store.client(member_id)
                while len(self._clients) > CLIENTS:
                    self._clients.popitem(last=False)
            self._clients.move_to_end(member_id)
            return client


def _failure(error: BitrixError) -> str:
    """The outcome for a search that failed (none is cached; `unavailable` rests the portal)."""
    if isinstance(error, RateLimited):
        return "no_slot" if error.code == "NO_SLOT" else "rate_limited"
    if isinstance(error, TransportError | UnreadableAnswer | OAuthUnavailable):
        return "unavailable"
    if isinstance(error, PortalUnavailable):
        return "inactive"
    return "refused"
