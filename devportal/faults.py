"""Fault injection: make a portal fail the ways a real Bitrix24 cloud portal fails.

Each helper changes the portal's state under the state lock; rest.py reads it on every request.
Transport faults (an outage, added latency) live in `portal.faults` and `clear` undoes them;
the portal's own conditions (expired tokens, a new address, deletion, an unpaid app) are changes
of the world that a client has to cope with, so they stay until the test changes them back.

- outage "503": a non-JSON 503 page, as a proxy in front of an overloaded portal answers.
- outage "reset": the connection is dropped without an answer.
- outage "timeout": the request is held for `timeout_sleep` seconds (limits.md: the cloud cuts a
  request off after 60 s; tests use a short hold and a shorter client timeout).
- rest_error: every REST call answers one of the system errors of _includes/system-errors.md.
- expire_tokens: every access token of the portal expires now (settings/oauth/index.md: 1 hour).
- change_address: settings/how-to-call-rest-api/change-domen.md, the old address answers 302.
- delete_portal: PORTAL_DELETED (_includes/system-errors.md).
- lapse_payment: the app's paid period ended (settings/oauth/error-codes.md, PAYMENT_REQUIRED).

Spoiled answers: the portal RUNS the request (a whole `batch` included: its calls are registered,
finished, in the statistics and the journal) and then the answer is lost on the way back, as
issue 9 saw real portals do. Set with `spoil_answers`, optionally for the next `times` requests
that reach their method only (a request refused before that, by the rate bucket or the token,
is answered normally and does not count); `clear` stops it. The journal entry of a spoiled
request carries `spoiled: KIND` beside the status the method really had.
- "html200": a 200 with an HTML PHP "Fatal error" page instead of JSON.
- "truncated": the JSON answer cut in half (its own status; Content-Length matches the cut body).
- "html500": an HTML 500 "Internal Server Error" page.
- "reset": the connection is dropped without an answer, after the method ran.

Not emulated: a connection refused for one portal only. A refusal happens before any HTTP
request, so one listener serving every portal cannot refuse for one of them; drills point the
portal's stored address at a closed port instead (tests/drills/test_portal_outage.py).
"""

from __future__ import annotations

from typing import Literal

from devportal.errors import SYSTEM_ERRORS
from devportal.state import DevPortal, DevState, Faults

Outage = Literal["503", "reset", "timeout"]
OUTAGES: tuple[str, ...] = ("503", "reset", "timeout")
Spoil = Literal["html200", "truncated", "html500", "reset"]
SPOILS: tuple[str, ...] = ("html200", "truncated", "html500", "reset")


def set_outage(
    state: DevState, portal: DevPortal, kind: Outage, *, timeout_sleep: float | None = None
) -> None:
    """Every REST request to the portal meets `kind` until `clear`."""
    if kind not in OUTAGES:
        raise ValueError(f"unknown outage {kind!r}; expected one of {OUTAGES}")
    with state.lock:
        portal.faults.outage = kind
        if timeout_sleep is not None:
            portal.faults.timeout_sleep = timeout_sleep


def set_latency(state: DevState, portal: DevPortal, seconds: float) -> None:
    """Every REST request to the portal is answered `seconds` later."""
    if seconds < 0:
        raise ValueError("latency cannot be negative")
    with state.lock:
        portal.faults.latency = seconds


def set_rest_error(state: DevState, portal: DevPortal, code: str | None) -> None:
    """Every REST call answers the system error `code` (None stops it)."""
    if code is not None and code not in SYSTEM_ERRORS:
        raise ValueError(f"unknown system error {code!r}")
    with state.lock:
        portal.faults.rest_error = code


def spoil_answers(
    state: DevState, portal: DevPortal, kind: Spoil, *, times: int | None = None
) -> None:
    """Requests to the portal run, then their answer is spoiled the `kind` way (see above).

    `times`: only the next `times` requests that reach their method (None: every one until
    `clear`). Raises ValueError for an unknown kind or a `times` below 1.
    """
    if kind not in SPOILS:
        raise ValueError(f"unknown spoiled answer {kind!r}; expected one of {SPOILS}")
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ValueError("times must be a whole number >= 1 (or None: until cleared)")
    with state.lock:
        portal.faults.spoil = kind
        portal.faults.spoil_times = times


def take_spoil(state: DevState, portal: DevPortal) -> str | None:
    """The spoil kind for a request that has just run, counting it against `times`; else None."""
    with state.lock:
        faults = portal.faults
        kind = faults.spoil
        if kind is None:
            return None
        if faults.spoil_times is not None:
            faults.spoil_times -= 1
            if faults.spoil_times <= 0:
                faults.spoil, faults.spoil_times = None, None
        return kind


def clear(state: DevState, portal: DevPortal) -> None:
    """Back to normal service: no outage, no latency, no injected error, no spoiled answer."""
    with state.lock:
        portal.faults = Faults()


def expire_tokens(state: DevState, portal: DevPortal) -> int:
    """Every access token issued for the portal expires now; returns how many there were."""
    return state.expire_access_tokens(portal.member_id)


def change_address(state: DevState, portal: DevPortal, new_code: str) -> None:
    """The portal moves to `new_code`; its old address keeps answering with a 302 to the new one.

    member_id does not change with the address (settings/oauth/simple-way.md), the domain does.
    """
    with state.lock:
        if new_code in state.portals or any(
            new_code in p.old_codes for p in state.portals.values()
        ):
            raise ValueError(f"address {new_code!r} is taken")
        del state.portals[portal.code]
        portal.old_codes.append(portal.code)
        portal.code = new_code
        portal.domain = f"{new_code}.bitrix24.test"
        state.portals[new_code] = portal


def delete_portal(state: DevState, portal: DevPortal, *, deleted: bool = True) -> None:
    """The portal is gone: every REST call answers PORTAL_DELETED (deleted=False brings it back)."""
    with state.lock:
        portal.deleted = deleted


def lapse_payment(
    state: DevState, portal: DevPortal, client_id: str, *, lapsed: bool = True
) -> None:
    """The app's trial or paid period on the portal ended (lapsed=False: the admin paid)."""
    with state.lock:
        installation = portal.installations.get(client_id)
        if installation is None:
            raise ValueError(f"{client_id!r} is not installed on {portal.code!r}")
        installation.payment_expired = lapsed
