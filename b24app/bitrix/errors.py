"""What can go wrong talking to Bitrix24, as typed errors the callers can act on."""

from __future__ import annotations

from typing import Any

import requests


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


class TransportError(BitrixError):
    """No answer at all (refused, reset, timed out). The call's outcome is unknown."""

    def __init__(self, description: str, *, timed_out: bool = False) -> None:
        super().__init__("TRANSPORT_ERROR", description)
        self.timed_out = timed_out


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


class UnsafeAddress(ValueError):
    """A portal address we will not send requests to (see safety.py)."""
