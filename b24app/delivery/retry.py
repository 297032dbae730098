"""Which failures are worth another try, when to try again, and when to give up.

Every failure becomes a `Verdict`:
- `retry`: a passing trouble that certainly did nothing (HTTP 503, QUERY_LIMIT_EXCEEDED,
  OPERATION_TIME_LIMIT, INTERNAL_SERVER_ERROR): exponential backoff with jitter (base 5 s, cap
  15 min), or the moment Bitrix24 named (`retry_at`). Given up after `max_attempts` attempts or
  `max_age` (24 h), with the last reason.
- `unknown`: the request may have reached Bitrix24 (no answer after sending, a gateway error, a
  worker that stopped mid-batch). finish is not idempotent (tutorials/telephony: a second finish
  answers "Call is not found"; a second register of a finished call makes a new call), so such a
  call is first looked up in voximplant.statistic.get before it is sent again.
- `wait_admin`: the portal needs its admin (needs_reauth, payment_required, access_denied, a
  missing scope): kept queued with a long backoff and failed after `max_age`; attempts spent
  waiting do not count.
- `fail`: retrying cannot help (the app was uninstalled, the portal deleted, Bitrix24 refused the
  call's own data): failed at once, with Bitrix24's text turned into words for the admin.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from b24app.bitrix.errors import BitrixError, PortalUnavailable, RateLimited, TransportError
from b24app.models import PortalStatus

Kind = Literal["retry", "unknown", "wait_admin", "fail"]
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 5.0  # seconds before the second attempt
    cap: float = 15 * 60.0  # longest wait between attempts
    max_attempts: int = 12  # waits of 5 s … 15 min: about an hour of trying
    max_age: timedelta = timedelta(hours=24)  # nothing stays queued longer than this
    admin_wait: float = 30 * 60.0  # between tries while the portal needs its admin
    # An unanswered request may still be running on the portal (the cloud cuts requests off
    # after 60 s, limits.md): look such a call up only after that, or the look-up may miss it.
    unknown_wait: float = 60.0

    def backoff(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds before the next attempt after `attempts` tries: "equal jitter", so that a
        portal's calls that failed together do not come back together, yet never at once."""
        ceiling = min(self.cap, self.base * 2.0 ** max(attempts - 1, 0))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    code: str  # kept in Call.error_code
    reason: str  # Call.error: plain words for the admin
    retry_at: float | None = None  # unix time Bitrix24 named (OPERATION_TIME_LIMIT)

    @property
    def counts(self) -> bool:
        """Whether this try counts towards max_attempts (waiting for limits or the admin not)."""
        return self.kind in ("retry", "unknown") and self.code not in RATE_LIMITS


RATE_LIMITS = ("QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT")

# PortalUnavailable.portal_status → is the admin able to fix it, and what to tell them.
PORTAL_GONE: dict[str, str] = {
    PortalStatus.UNINSTALLED: "The application was uninstalled from the portal.",
    PortalStatus.PORTAL_DELETED: "The portal was deleted or closed.",
    "unknown": "The portal is not known to this application (it was never installed here).",
}
PORTAL_ADMIN: dict[str, str] = {
    PortalStatus.NEEDS_REAUTH: "The portal's admin must open the application or re-authorise it.",
    PortalStatus.PAYMENT_REQUIRED: "The application's paid period on the portal has expired.",
    PortalStatus.ACCESS_DENIED: "REST API access is denied on the portal (plan or permissions).",
}

# Per-command ERROR_CORE texts (telephony-external-call-register.md, -finish.md) → code, words.
CALL_NOT_FOUND_TEXT = "Call is not found"
CORE_ERRORS: tuple[tuple[str, str, str], ...] = (
    (
        "User is not found or is not active",
        "USER_NOT_FOUND",
        "Bitrix24 has no active employee for this call's USER_ID or USER_PHONE_INNER; fix the "
        "PBX's user, the extension mapping or the fallback user.",
    ),
    (
        "USER_ID or USER_PHONE_INNER should be set",
        "NO_USER",
        "The call names no employee; set a fallback user for the portal.",
    ),
    (
        CALL_NOT_FOUND_TEXT,
        "CALL_NOT_FOUND",
        "Bitrix24 does not know this CALL_ID: it was never registered, was registered by "
        "another application, or was already finished.",
    ),
    ("Unknown TYPE", "BAD_TYPE", "Bitrix24 refused the call's TYPE (1–5 are allowed)."),
    (
        "CALL_START_DATE should be in the ISO-8601 format",
        "BAD_CALL_START_DATE",
        "Bitrix24 refused the call's CALL_START_DATE (ISO-8601 with a time zone is required).",
    ),
    (
        "Unsupported phone number format",
        "BAD_PHONE_NUMBER",
        "Bitrix24 refused the call's PHONE_NUMBER.",
    ),
    ("CALL_ID must be a string", "BAD_CALL_ID", "Bitrix24 refused the call's CALL_ID."),
)
TRANSIENT_CORE = ("Unexpected database error",)  # finish page: worth another try


def for_exception(error: Exception) -> Verdict:
    """What a whole failed request (the batch itself) means for each of its calls."""
    if isinstance(error, TransportError):
        return Verdict(
            "unknown", OUTCOME_UNKNOWN, f"No answer from Bitrix24 ({error.description})."
        )
    if isinstance(error, RateLimited):
        return Verdict(
            "retry", error.code, "Bitrix24 asked us to slow down; trying later.", error.retry_at
        )
    if isinstance(error, PortalUnavailable):
        return for_portal(error)
    if isinstance(error, BitrixError):
        return for_request_error(error)
    return Verdict("retry", "INTERNAL", f"Unexpected error in the worker ({type(error).__name__}).")


def for_portal(error: PortalUnavailable) -> Verdict:
    status = error.portal_status
    if status in PORTAL_GONE:
        return Verdict("fail", status.upper(), PORTAL_GONE[status])
    detail = PORTAL_ADMIN.get(status) or error.description or status
    return Verdict("wait_admin", status.upper(), detail)


def for_request_error(error: BitrixError) -> Verdict:
    """A Bitrix24 error answering the batch request as a whole."""
    status = error.status or 0
    what = f"HTTP {status}" if error.code == "HTTP_ERROR" else error.code
    if error.code == "insufficient_scope":
        return Verdict(
            "wait_admin",
            error.code,
            "The application lacks the `telephony` scope on this portal; update its settings.",
        )
    if status in (502, 504) or error.code == "ERROR_UNEXPECTED_ANSWER":
        # A gateway gave up waiting: the portal may still have run the batch.
        return Verdict("unknown", OUTCOME_UNKNOWN, f"Bitrix24 answered {what} (no result).")
    if status >= 500 or error.code in ("INTERNAL_SERVER_ERROR", "OVERLOAD_LIMIT"):
        return Verdict("retry", error.code, f"Bitrix24 was unavailable ({what}).")
    return Verdict("retry", error.code, _describe(error))


def for_command(error: BitrixError, *, after_unknown: bool) -> Verdict:
    """One command's own error inside a batch (`result_error[key]`)."""
    text = error.description or ""
    if error.code in ("ERROR_CORE", "INVALID_ARGUMENT"):
        if any(transient in text for transient in TRANSIENT_CORE):
            return Verdict("retry", error.code, f"Bitrix24: {text}")
        if after_unknown and CALL_NOT_FOUND_TEXT in text:
            # Probably our own earlier attempt finished it: check the statistics again.
            return Verdict(
                "unknown",
                OUTCOME_UNKNOWN,
                "Bitrix24 no longer knows the call after an attempt without an answer; "
                "checking its statistics.",
            )
        for needle, code, words in CORE_ERRORS:
            if needle in text:
                return Verdict("fail", code, f"{words} (Bitrix24: {text})")
        return Verdict("fail", error.code, f"Bitrix24 refused the call: {text or error.code}")
    if error.code == "insufficient_scope":
        return for_request_error(error)
    return Verdict("retry", error.code, _describe(error))


def give_up(
    verdict: Verdict, *, attempts: int, created_at: datetime, now: datetime, policy: RetryPolicy
) -> bool:
    """Whether a retryable call has had enough: too many counted attempts, or too old."""
    if now - created_at >= policy.max_age:
        return True
    return verdict.counts and attempts >= policy.max_attempts


def next_attempt(
    verdict: Verdict, *, attempts: int, now: datetime, policy: RetryPolicy
) -> datetime:
    """When a call that will be retried becomes due again."""
    delay = policy.admin_wait if verdict.kind == "wait_admin" else policy.backoff(attempts)
    if verdict.retry_at is not None:
        delay = max(delay, verdict.retry_at - now.timestamp())
    return now + timedelta(seconds=max(delay, 0.0))


def gave_up_reason(verdict: Verdict, *, attempts: int, created_at: datetime, now: datetime) -> str:
    hours = (now - created_at).total_seconds() / 3600
    return f"Gave up after {attempts} attempts over {hours:.1f} h. Last problem: {verdict.reason}"


def _describe(error: BitrixError) -> str:
    if error.description:
        return f"Bitrix24 answered {error.code}: {error.description}"
    return f"Bitrix24 answered {error.code}."
