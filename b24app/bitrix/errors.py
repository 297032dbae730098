"""What can go wrong talking to Bitrix24, as typed errors the callers can act on."""

from __future__ import annotations

import enum
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError


def json_body(response: requests.Response) -> dict[str, Any]:
    """A response's JSON object, or {} when it is not one (an HTML error page, say)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class BitrixError(Exception):
    """Bitrix24 answered with an error envelope (`error`, `error_description`)."""

    def __init__(self, code: str, description: str = "", status: int | None = None) -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.status = status

    @classmethod
    def from_response(cls, status: int, body: Any) -> BitrixError:
        if isinstance(body, dict) and body.get("error"):
            return cls(str(body["error"]), str(body.get("error_description") or ""), status)
        return cls("HTTP_ERROR", f"HTTP {status} without a Bitrix24 error body", status)


class Ending(enum.StrEnum):
    """How a request to Bitrix24 ended. Each has one meaning for what it carried
    (delivery/retry.py, ENDINGS)."""

    NOT_SENT = "not_sent"  # no connection: refused, DNS, TLS handshake, connect timeout
    REFUSED = "refused"  # a Bitrix24 error envelope for the request as a whole
    ANSWERED = "answered"  # a readable answer (a batch's commands answer on their own)
    UNREADABLE = "unreadable"  # an answer that is not Bitrix24's JSON (HTML page, cut JSON)
    CUT_OFF = "cut_off"  # the connection dropped after the request went out
    TIMED_OUT = "timed_out"  # sent, and no answer within the timeout


class TransportError(BitrixError):
    """No answer: the connection never opened (`ending` NOT_SENT: nothing reached Bitrix24),
    dropped after sending (CUT_OFF) or stayed silent past the timeout (TIMED_OUT); in the last
    two the request may have run."""

    def __init__(self, description: str, *, ending: Ending) -> None:
        super().__init__(ending.value.upper(), description)
        self.ending = ending

    @property
    def timed_out(self) -> bool:
        return self.ending is Ending.TIMED_OUT


class UnreadableAnswer(BitrixError):
    """An answer arrived but is not a Bitrix24 JSON envelope: an HTML error page, JSON cut in
    half, a 200 without `result`. The request may have run (Ending.UNREADABLE)."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__("UNREADABLE_ANSWER", description, status)


class PortalUnavailable(BitrixError):
    """The portal cannot be called until its admin acts (status says what to do)."""

    def __init__(self, status: str, description: str = "") -> None:
        super().__init__(status.upper(), description)
        self.portal_status = status


class RateLimited(BitrixError):
    """QUERY_LIMIT_EXCEEDED persisted, or OPERATION_TIME_LIMIT: try again at `retry_at`."""

    def __init__(self, code: str, description: str, retry_at: float) -> None:
        super().__init__(code, description)
        self.retry_at = retry_at


class OAuthError(BitrixError):
    """The OAuth server refused a grant (`invalid_grant`, `PAYMENT_REQUIRED`, …)."""


class OAuthUnavailable(BitrixError):
    """A request to the portal needed its access token renewed first (expired, or refused as
    expired before anything ran) and the OAuth server failed the refresh: no connection, no
    answer, an answer that is not JSON, or an error that is not a verdict on the grant (those
    are PortalUnavailable). The request itself never ran."""

    def __init__(self, description: str) -> None:
        super().__init__("OAUTH_UNAVAILABLE", description)


class UnsafeAddress(ValueError):
    """A portal address we will not send requests to (see safety.py)."""


def transport_error(exc: requests.RequestException, what: str, timeout: float) -> TransportError:
    """The TransportError for a `requests` failure, with how far the request got.

    NOT_SENT only when no connection was made (urllib3's NewConnectionError covers refused and
    DNS failures; a connect timeout or a TLS handshake failure happen before any byte of the
    request is written). Anything else — a reset or an incomplete answer after the request was
    written, a read timeout — may have reached Bitrix24.
    """
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.SSLError):
        return TransportError(f"{what}: could not connect ({type(exc).__name__})", ending=NOT_SENT)
    if isinstance(exc, requests.Timeout):
        return TransportError(f"{what}: no answer in {timeout:g}s", ending=Ending.TIMED_OUT)
    if isinstance(exc, requests.ConnectionError) and _never_connected(exc):
        return TransportError(f"{what}: could not connect", ending=NOT_SENT)
    return TransportError(f"{what}: connection lost ({type(exc).__name__})", ending=Ending.CUT_OFF)


NOT_SENT = Ending.NOT_SENT


def _never_connected(exc: BaseException) -> bool:
    """Whether a NewConnectionError (refused, unreachable, name not resolved) is in the chain."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, NewConnectionError):
            return True
        reason = getattr(seen, "reason", None)
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = reason if isinstance(reason, BaseException) else nested or seen.__context__
    return False


# Every error code b24app knows by name: Bitrix24's system errors (_includes/system-errors.md),
# OAuth grant errors (settings/oauth/error-codes.md), the telephony methods' command errors, and
# our own names for endings. Metrics label only these (anything else is "other"), so a portal
# answering made-up codes cannot grow the label set (b24app/metrics.py, code_label).
KNOWN_CODES = frozenset(
    {
        *(ending.value.upper() for ending in Ending),
        "OAUTH_UNAVAILABLE",
        "INTERNAL_SERVER_ERROR",
        "ERROR_UNEXPECTED_ANSWER",
        "BAD_UPLOAD_URL",
        "QUERY_LIMIT_EXCEEDED",
        "OPERATION_TIME_LIMIT",
        "OVERLOAD_LIMIT",
        "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "ERROR_BATCH_LENGTH_EXCEEDED",
        "ERROR_METHOD_NOT_FOUND",
        "NO_AUTH_FOUND",
        "INVALID_REQUEST",
        "ACCESS_DENIED",
        "INVALID_CREDENTIALS",
        "ERROR_MANIFEST_IS_NOT_AVAILABLE",
        "insufficient_scope",
        "expired_token",
        "invalid_token",
        "user_access_error",
        "PORTAL_DELETED",
        "PAYMENT_REQUIRED",
        "ERROR_CORE",
        "INVALID_ARGUMENT",
        "invalid_grant",
        "invalid_client",
        "invalid_request",
        "UNREADABLE_ANSWER",
        "UNSAFE_ADDRESS",
        "BAD_REDIRECT",
        "HTTP_ERROR",
        "NO_ANSWER",
    }
)
