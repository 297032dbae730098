"""The one way b24app calls a portal's REST API.

Every call: refuses portals that are not active; refreshes a token known to be expired (single
flight, tokens.py); waits for the portal's shared throttle slot (throttle.py; `ask`, for a
question someone waits on, takes a spare slot now or sends nothing); POSTs JSON with
`auth` in the body (never in the URL), without following redirects; then reacts to the answer:
- 302/301/307/308: the portal changed its address (change-domen.md); the new address is
  checked, stored, and the call re-sent as a POST;
- `expired_token` (or NO_AUTH_FOUND): refresh once and repeat the call once;
- `QUERY_LIMIT_EXCEEDED`: block the portal's schedule for a while and retry with backoff;
- `OPERATION_TIME_LIMIT`: RateLimited with the documented `operating_reset_at`;
- PAYMENT_REQUIRED, PORTAL_DELETED, ACCESS_DENIED: the portal's status says what to do, and
  calls stop until then.
The client knows no SQL and no app: a portal's state and tokens come from the `Installations`
handed in (the installation store), and what it learns (rotated tokens, a new address, a new
status) goes back through it. The official `b24pysdk` was considered for this layer; see
docs/architecture.md for why not.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import SplitResult, urljoin, urlsplit

import requests

from b24app import metrics
from b24app.bitrix import throttle as throttle_mod
from b24app.bitrix import tokens
from b24app.bitrix.encoding import to_query
from b24app.bitrix.errors import (
    BitrixError,
    OAuthError,
    OAuthUnavailable,
    PortalUnavailable,
    RateLimited,
    TransportError,
    UnreadableAnswer,
    UnsafeAddress,
    json_body,
    transport_error,
)
from b24app.bitrix.oauth import OAuthServer, TokenPair
from b24app.bitrix.safety import InvalidURL, check_portal_url, parse_url, portal_session
from b24app.logs import get_logger
from b24app.portal_status import REVIVABLE, PortalStatus

log = get_logger(__name__)

USER_AGENT = "b24app/0.1 (+telephony integration)"
MAX_REDIRECTS = 3
QUERY_LIMIT_RETRIES = 3
REDIRECT_CODES = (301, 302, 303, 307, 308)
UPLOAD_URL_LENGTH = 2000  # an upload address carries the token and a signed upload token

# REST errors that mean "stop calling this portal until its admin acts" (system-errors.md).
PORTAL_ERRORS = {
    "PAYMENT_REQUIRED": PortalStatus.PAYMENT_REQUIRED,
    "PORTAL_DELETED": PortalStatus.PORTAL_DELETED,
    "ACCESS_DENIED": PortalStatus.ACCESS_DENIED,
}
# REST errors a renewed access token may cure: refresh once and repeat (oauth/index.md,
# system-errors.md). `invalid_token` is not in the docs ([UNCONFIRMED]: third-party code names
# it, reference/bitrix24-api-digest.md §2.5 "treat as auth failed"); should a portal answer it,
# a renewed token is the one thing that can help.
REFRESH_ERRORS = ("expired_token", "NO_AUTH_FOUND", "invalid_token")


@dataclass
class BatchResult:
    """`batch`'s answer: each command's result or error by its key (batch.md)."""

    result: dict[str, Any]
    errors: dict[str, BitrixError]
    total: dict[str, Any] = field(default_factory=dict)
    time: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PortalState:
    """What the client needs to know of a portal before calling it."""

    portal_id: int  # the key of its shared schedule
    status: str
    status_detail: str  # why, for the admin
    client_endpoint: str  # https://{domain}/rest/ on the cloud
    tokens: TokenPair | None  # None: no tokens stored
    enterprise_limits: bool


class Installations(tokens.TokenStore, Protocol):
    """Where the client reads a portal's state and tokens and writes back what it learns (the
    installation store, portals/store.py; the way Authlib's client takes `update_token`)."""

    def portal_state(self, member_id: str) -> PortalState | None:
        """The portal's state now (None: no such portal)."""

    def save_endpoint(self, member_id: str, client_endpoint: str) -> None:
        """The portal answered from a new, checked address (change-domen.md): keep it."""

    def save_status(
        self,
        member_id: str,
        status: PortalStatus,
        detail: str | None = None,
        *,
        only_from: tuple[PortalStatus, ...] = (),
    ) -> bool:
        """Record the portal's new status (only if its status is one of `only_from`, if given);
        return whether it changed."""


@dataclass
class _Snapshot:
    portal_id: int
    status: str
    endpoint: str
    access_token: str
    expired: bool
    limits: throttle_mod.Limits


class PortalClient:
    """Calls one portal, identified by `member_id`.

    `installations` gives the portal's state and tokens and takes back rotated tokens, a new
    address and status changes; `oauth` refreshes tokens; `schedule` keeps the per-portal request
    schedule every process shares; `timeout` is the HTTP timeout in seconds; `allow_local`
    allows http:// and private addresses (B24APP_ALLOW_LOCAL_PORTALS, development only).
    A client holds an HTTPS session: reuse one per portal and thread pool.
    """

    def __init__(
        self,
        member_id: str,
        *,
        installations: Installations,
        oauth: OAuthServer,
        schedule: throttle_mod.Schedule,
        timeout: float,
        allow_local: bool = False,
    ) -> None:
        self.member_id = member_id
        self.installations = installations
        self.oauth = oauth
        self.schedule = schedule
        self.timeout = timeout
        self.allow_local = allow_local
        self.http = portal_session(allow_local=allow_local)  # checks each connection
        self.http.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})

    # --- public ------------------------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call `method`; return the whole success envelope (`result`, `time`, `total`, …).

        Raises BitrixError: a Bitrix24 error envelope (REFUSED), UnreadableAnswer (an answer that
        is not Bitrix24's JSON), TransportError (no answer; `ending` says whether it was sent),
        PortalUnavailable (the portal's status forbids calls, or the OAuth server refused to
        renew its token), OAuthUnavailable (the token needed renewing and the OAuth server
        failed: nothing was sent), RateLimited."""
        return self._call(method, params or {})

    def ask(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float, keep_free: float
    ) -> dict[str, Any]:
        """Call `method` for someone waiting on the answer (a PBX routing a caller): it never
        waits for the throttle and never takes the slots the delivery needs. It is sent only if
        the portal's schedule has a slot free now that leaves `keep_free` (a share, 0 to 1) of
        the burst free (throttle.spare_slot); otherwise RateLimited `NO_SLOT` is raised and
        nothing is sent. `timeout` bounds the HTTP request (seconds). QUERY_LIMIT_EXCEEDED
        blocks the schedule as in `call` but is not retried. An expired token is refreshed as
        in `call` (under the refresh lock: the caller bounds its own wait). Raises as `call`."""
        return self._call(method, params or {}, timeout=timeout, keep_free=keep_free)

    def probe(self, *, timeout: float, revive: tuple[str, ...] = ()) -> dict[str, Any]:
        """One `app.info` request (api-reference/common/system/app-info.md) to learn whether a
        paused portal answers again, waiting at most `timeout` seconds. A portal whose status is
        in `revive` (waiting for a payment, say) is asked too, and set active if it answers.
        Raises as `call` does."""
        return self._call("app.info", {}, timeout=timeout, revive=revive)

    def upload(self, url: str, field: str, filename: str, data: bytes) -> dict[str, Any]:
        """POST `data` as the multipart part `field` (file name `filename`) to `url`, an upload
        address a method answered with (attachRecord's `uploadUrl` + `fieldName`,
        api-reference/telephony/telephony-external-call-attach-record.md); return the answer's
        envelope (`result`, `time`).

        `url` carries its own `auth` and `token`, so nothing is added to it and it is never
        logged. It must be on the portal's own address: scheme, host and port of the stored
        client endpoint (a file is never posted where an answer merely points); anything else
        raises BitrixError BAD_UPLOAD_URL before a byte is sent. Waits for the portal's
        throttle slot; no redirect is followed. Raises as `call` does: TransportError (with its
        `ending`), UnreadableAnswer, a Bitrix24 error envelope as BitrixError, RateLimited,
        PortalUnavailable. An expired token is not refreshed here (it is the one in `url`): the
        caller asks for a new upload address."""
        snap = self._snapshot()
        _same_origin(url, snap.endpoint)
        throttle_mod.wait(self.schedule, snap.portal_id, snap.limits)
        mime = "audio/wav" if filename.lower().endswith(".wav") else "audio/mpeg"
        try:
            response = self.http.post(
                url,
                files={field: (filename, data, mime)},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except UnsafeAddress as exc:
            raise BitrixError("UNSAFE_ADDRESS", f"upload: {exc}") from None
        except requests.RequestException as exc:
            raise transport_error(exc, "upload", self.timeout) from None
        body = json_body(response)
        if response.status_code == 200 and "error" not in body and "result" in body:
            metrics.BITRIX_ANSWERS.labels("upload", "ok").inc()
            return body
        error = _error(response.status_code, body)
        metrics.BITRIX_ANSWERS.labels("upload", metrics.code_label(error.code)).inc()
        log.info("bitrix error", member_id=self.member_id, method="upload", error=error.code)
        if error.code == "QUERY_LIMIT_EXCEEDED":
            retry_at = time.time() + 2.0
            self.schedule.block(snap.portal_id, retry_at)
            raise RateLimited(error.code, error.description, retry_at)
        if error.code == "OPERATION_TIME_LIMIT":
            reset_at = body.get("operating_reset_at") or time.time() + 60
            raise RateLimited(error.code, error.description, float(reset_at))
        self._react(error)
        raise error

    def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.call(method, params)["result"]

    def batch(
        self,
        commands: dict[str, tuple[str, dict[str, Any]]],
        *,
        halt: bool = False,
        state: PortalState | None = None,
        send_at: float | None = None,
    ) -> BatchResult:
        """Up to 50 commands in one request; `$result[key][FIELD]` may refer to earlier ones
        (settings/how-to-call-rest-api/batch.md). A batch is one request for the rate limit.

        `state`: the portal's state the caller has just read (it then is not read again);
        `send_at`: a throttle slot the caller booked for this request (epoch seconds, the
        schedule's `next_slot`; the request waits until then and books no other, except to send
        it again after a refresh, a redirect or QUERY_LIMIT_EXCEEDED). Raises as `call`."""
        if not 0 < len(commands) <= 50:
            raise ValueError("a batch holds 1 to 50 commands")
        cmd = {key: f"{method}?{to_query(params)}" for key, (method, params) in commands.items()}
        envelope = self._call(
            "batch", {"halt": int(halt), "cmd": cmd}, state=state, send_at=send_at
        )
        inner = envelope.get("result") or {}
        errors = {
            key: BitrixError(str(e.get("error")), str(e.get("error_description") or ""))
            for key, e in _as_dict(inner.get("result_error")).items()
        }
        return BatchResult(
            result=_as_dict(inner.get("result")),
            errors=errors,
            total=_as_dict(inner.get("result_total")),
            time=_as_dict(inner.get("result_time")),
        )

    # --- one call, with its reactions ---------------------------------------------------------
    def _call(
        self,
        method: str,
        params: dict[str, Any],
        *,
        timeout: float | None = None,
        revive: tuple[str, ...] = (),
        keep_free: float | None = None,
        state: PortalState | None = None,
        send_at: float | None = None,
    ) -> dict[str, Any]:
        snap = self._snapshot(revive, state)
        token = snap.access_token
        if snap.expired:
            token = self._refresh(token)
        refreshed = False
        redirects = 0
        limit_retries = 0
        while True:
            if send_at is not None:  # booked by the caller: wait for it, book nothing more
                _sleep_until(send_at)
                send_at = None
            else:
                self._slot(snap, keep_free)
            response = self._post(snap.endpoint, method, params, token, timeout or self.timeout)
            if response.status_code in REDIRECT_CODES and redirects < MAX_REDIRECTS:
                redirects += 1
                snap.endpoint = self._moved(method, response)
                continue
            body = json_body(response)
            if response.status_code == 200 and "error" not in body and "result" in body:
                metrics.BITRIX_ANSWERS.labels(method, "ok").inc()
                if snap.status != PortalStatus.ACTIVE:
                    self._revived()
                return body
            error = _error(response.status_code, body)
            metrics.BITRIX_ANSWERS.labels(method, metrics.code_label(error.code)).inc()
            log.info("bitrix error", member_id=self.member_id, method=method, error=error.code)
            if error.code in REFRESH_ERRORS and not refreshed:
                refreshed = True
                token = self._refresh(token)
                continue
            if error.code == "QUERY_LIMIT_EXCEEDED":
                limit_retries += 1
                retry_at = time.time() + 2.0**limit_retries
                self.schedule.block(snap.portal_id, retry_at)
                if limit_retries <= QUERY_LIMIT_RETRIES and keep_free is None:
                    continue
                raise RateLimited(error.code, error.description, retry_at)
            if error.code == "OPERATION_TIME_LIMIT":
                reset_at = body.get("operating_reset_at") or time.time() + 60
                raise RateLimited(error.code, error.description, float(reset_at))
            self._react(error)
            raise error

    def _refresh(self, stale_access_token: str) -> str:
        """A renewed access token (tokens.refresh). The OAuth server failing us is
        OAuthUnavailable, not the ending of the REST request we were about to send (it never
        ran); PortalUnavailable when the OAuth server refused the grant."""
        try:
            return tokens.refresh(
                self.installations, self.oauth, self.member_id, stale_access_token
            )
        except TransportError as error:
            raise OAuthUnavailable(error.description) from error
        except OAuthError as error:
            raise OAuthUnavailable(f"{error.code}: {error.description}") from error

    def _slot(self, snap: _Snapshot, keep_free: float | None) -> None:
        """Wait for the portal's next throttle slot; or, for `ask` (`keep_free` given), take
        one only if it is spare now, else raise RateLimited NO_SLOT (nothing is sent)."""
        if keep_free is None:
            throttle_mod.wait(self.schedule, snap.portal_id, snap.limits)
            return
        keep = math.ceil(keep_free * snap.limits.burst)
        if not self.schedule.reserve_spare(snap.portal_id, snap.limits, keep_free=keep):
            retry_at = time.time() + 1.0 / snap.limits.rate
            raise RateLimited("NO_SLOT", "no spare request slot for this portal now", retry_at)

    def _post(
        self, endpoint: str, method: str, params: dict[str, Any], token: str, timeout: float
    ) -> requests.Response:
        url = f"{endpoint}{method}.json"
        try:
            return self.http.post(
                url, json={**params, "auth": token}, timeout=timeout, allow_redirects=False
            )
        except UnsafeAddress as exc:  # nothing was sent: the name resolves elsewhere now
            raise BitrixError("UNSAFE_ADDRESS", f"{method}: {exc}") from None
        except requests.RequestException as exc:
            raise transport_error(exc, method, timeout) from None

    # --- portal state ---------------------------------------------------------------------------
    def _snapshot(
        self, revive: tuple[str, ...] = (), state: PortalState | None = None
    ) -> _Snapshot:
        if state is None:
            state = self.installations.portal_state(self.member_id)
        if state is None:
            raise PortalUnavailable("unknown", f"no portal {self.member_id}")
        if state.status != PortalStatus.ACTIVE and state.status not in revive:
            raise PortalUnavailable(state.status, state.status_detail)
        if state.tokens is None:
            raise PortalUnavailable(PortalStatus.NEEDS_REAUTH, "no tokens stored")
        return _Snapshot(
            portal_id=state.portal_id,
            status=state.status,
            endpoint=state.client_endpoint,
            access_token=state.tokens.access_token,
            expired=tokens.expired(state.tokens),
            limits=throttle_mod.limits_of(state.enterprise_limits),
        )

    def _moved(self, method: str, response: requests.Response) -> str:
        """Store the portal's new address (change-domen.md) and return its REST endpoint."""
        location = urljoin(response.url, response.headers.get("Location", ""))
        suffix = f"{method}.json"
        base = location.split("?", 1)[0]
        if not base.endswith(suffix):
            raise BitrixError("BAD_REDIRECT", "the portal redirected somewhere unexpected")
        endpoint = base[: -len(suffix)]
        try:
            endpoint = check_portal_url(endpoint, allow_local=self.allow_local)
        except UnsafeAddress as exc:
            raise BitrixError("BAD_REDIRECT", str(exc)) from None
        self.installations.save_endpoint(self.member_id, endpoint)
        log.info("portal moved", member_id=self.member_id, endpoint=endpoint)
        return endpoint

    def _revived(self) -> None:
        """A portal that was waiting (a payment, REST access) answered: it is active again."""
        if self.installations.save_status(self.member_id, PortalStatus.ACTIVE, only_from=REVIVABLE):
            log.info("portal answers again", member_id=self.member_id)

    def _react(self, error: BitrixError) -> None:
        """Errors that need the admin: record the portal's new status."""
        if error.code not in PORTAL_ERRORS:
            return
        status = PORTAL_ERRORS[error.code]
        self.installations.save_status(self.member_id, status, status.meaning)
        raise PortalUnavailable(status, status.meaning) from error


def call_as_user(
    client_endpoint: str, method: str, *, access_token: str, timeout: float, allow_local: bool
) -> dict[str, Any]:
    """Call `method` with a user's own token (the settings page's AUTH_ID), not the portal's.

    For questions only that user can answer (`user.admin`: may *this* user manage the app?).
    The token is not stored, not refreshed, not logged; it travels in the JSON body, never in
    the URL. No redirects followed: `client_endpoint` is the stored, checked address.
    `allow_local` as for PortalClient. Raises as PortalClient.call does.
    """
    http = portal_session(allow_local=allow_local)
    try:
        response = http.post(
            f"{client_endpoint}{method}.json",
            json={"auth": access_token},
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=timeout,
            allow_redirects=False,
        )
    except UnsafeAddress as exc:
        raise BitrixError("UNSAFE_ADDRESS", f"{method}: {exc}") from None
    except requests.RequestException as exc:
        raise transport_error(exc, method, timeout) from None
    body = json_body(response)
    if response.status_code != 200 or "error" in body or "result" not in body:
        raise _error(response.status_code, body)
    return body


def is_admin(client_endpoint: str, access_token: str, *, timeout: float, allow_local: bool) -> bool:
    """Whether the token's own user may manage the app on the portal: `user.admin`
    (api-reference/common/users/user-admin.md), asked with that user's token (call_as_user).
    The one admin check of b24app; raises BitrixError when the portal cannot say."""
    envelope = call_as_user(
        client_endpoint,
        "user.admin",
        access_token=access_token,
        timeout=timeout,
        allow_local=allow_local,
    )
    return envelope.get("result") is True


def _sleep_until(send_at: float) -> None:
    """Wait for a slot booked earlier (throttle.next_slot's send time, epoch seconds)."""
    delay = send_at - time.time()
    metrics.THROTTLE_WAIT.observe(max(delay, 0.0))
    if delay > 0:
        time.sleep(delay)


def _error(status: int, body: dict[str, Any]) -> BitrixError:
    """A failed answer: Bitrix24's own error envelope, or an answer we cannot read."""
    if body.get("error"):
        return BitrixError.from_response(status, body)
    return UnreadableAnswer(status, f"HTTP {status} without a Bitrix24 answer")


def _same_origin(url: str, endpoint: str) -> None:
    """Raise BitrixError BAD_UPLOAD_URL unless `url` is a plain URL (safety.parse_url) with
    the scheme, host and port of the portal's `endpoint`."""
    try:
        target = parse_url(url, max_length=UPLOAD_URL_LENGTH, query=True)
    except InvalidURL as exc:
        raise BitrixError("BAD_UPLOAD_URL", f"the upload address {exc}") from None
    if _origin(target) != _origin(urlsplit(endpoint)):
        raise BitrixError("BAD_UPLOAD_URL", "the upload address is not on the portal's own address")


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    default = {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").rstrip(".").lower(), parts.port or default


def _as_dict(value: Any) -> dict[str, Any]:
    """batch.md: empty maps come back as `[]`; lists (cmd given as a list) keyed by position."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}
