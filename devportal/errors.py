"""REST errors as Bitrix24 answers them: `{"error", "error_description"}` with its HTTP status.

Statuses are those of _includes/system-errors.md and the method pages.
"""

from __future__ import annotations

from typing import Any


class RestError(Exception):
    def __init__(self, code: str, description: str, status: int = 400, **extra: Any) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.description, **self.extra}


# _includes/system-errors.md: (HTTP status, description) of the errors any method may give.
SYSTEM_ERRORS: dict[str, tuple[int, str]] = {
    "INTERNAL_SERVER_ERROR": (500, "Internal server error"),
    "ERROR_UNEXPECTED_ANSWER": (500, "Server returned an unexpected response"),
    "QUERY_LIMIT_EXCEEDED": (503, "Too many requests"),
    "ERROR_BATCH_METHOD_NOT_ALLOWED": (405, "Method is not allowed for batch usage"),
    "ERROR_BATCH_LENGTH_EXCEEDED": (400, "Max batch length exceeded"),
    "NO_AUTH_FOUND": (401, "Wrong authorization data"),
    "INVALID_REQUEST": (400, "Https required"),
    "OVERLOAD_LIMIT": (503, "REST API is blocked due to overload"),
    "ACCESS_DENIED": (403, "REST API is available only on commercial plans"),
    "INVALID_CREDENTIALS": (403, "Invalid request credentials"),
    "insufficient_scope": (
        403,
        "The request requires higher privileges than provided by the webhook token",
    ),
    "expired_token": (401, "The access token provided has expired"),
    "user_access_error": (403, "The user does not have access to the application"),
    "PORTAL_DELETED": (500, "Portal was deleted"),
    # limits.md: the per-method time budget
    "OPERATION_TIME_LIMIT": (429, "Method is blocked due to operation time limit."),
    # api-reference/rest-v3.md documents 404 for unknown methods (the digest marks it unconfirmed
    # for classic /rest/; we answer the same there).
    "ERROR_METHOD_NOT_FOUND": (404, "Method not found!"),
    # settings/oauth/error-codes.md names PAYMENT_REQUIRED for the OAuth server; a REST call of
    # an app whose paid period lapsed is answered the same way here [inferred status 402].
    "PAYMENT_REQUIRED": (402, "Payment required"),
}


def system_error(code: str, **extra: Any) -> RestError:
    status, description = SYSTEM_ERRORS[code]
    return RestError(code, description, status, **extra)


def core_error(description: str) -> RestError:
    """The telephony methods' `ERROR_CORE` (400), as on their reference pages."""
    return RestError("ERROR_CORE", description, 400)
