"""What each way a request to Bitrix24 can end means for the calls it carried.

Every failure becomes a `Verdict` for each call of the request:
- `kind`: `retry` (a trouble of this call or of this one request: try again after a backoff that
  grows with the call's attempts), `wait` (nothing is wrong with the call: it is due again at once,
  or at the moment Bitrix24 named, without spending an attempt) or `fail` (retrying cannot help).
- `unknown`: the request may have run in Bitrix24, so the call is looked up in the statistics
  before anything is sent again (finish is not idempotent: tutorials/telephony, a second finish
  answers "Call is not found"; a second register of a finished call can make a new call).
- `pause`: the portal failed as a whole; delivery to it pauses and a probe asks it at growing
  intervals (portal_health.py). Calls of a paused portal neither spend attempts nor wait out
  backoffs: they go the moment a probe succeeds (after RUNNING_LIMIT when their request may still
  be running).

A call is given up only when retrying cannot help, or when it has been retried (not merely
waiting for its portal) past `RetryPolicy.retention`: an outage never fails a call by itself.

ENDINGS below is the one table of how a request can end; a test covers every row.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from b24app.bitrix.client import REFRESH_ERRORS
from b24app.bitrix.errors import (
    BitrixError,
    Ending,
    OAuthUnavailable,
    PortalUnavailable,
    RateLimited,
    TransportError,
    UnreadableAnswer,
)
from b24app.portal_status import PortalStatus

Kind = Literal["retry", "wait", "fail"]
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
PORTAL_PAUSED = "PORTAL_PAUSED"


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 5.0  # seconds before the second attempt of a call Bitrix24 refused for itself
    cap: float = 15 * 60.0  # longest wait between such attempts
    retention: timedelta = timedelta(days=7)  # B24APP_RETRY_DAYS: still retried, then given up

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
    unknown: bool = False  # the request may have run: look the call up before sending it again
    pause: bool = False  # the portal failed as a whole: pause it and probe (portal_health.py)
    still_running: bool = False  # it may still run: no look-up before RUNNING_LIMIT seconds
    retry_at: float | None = None  # unix time Bitrix24 named (OPERATION_TIME_LIMIT)

    @property
    def counts(self) -> bool:
        """Whether this try spends one of the call's attempts (waiting for the portal not)."""
        return self.kind == "retry"


@dataclass(frozen=True)
class Meaning:
    """One row of ENDINGS."""

    may_have_run: bool  # so: look the calls up before sending them again
    portal_wide: bool  # so: pause the portal and probe it
    words: str
    still_running: bool = False  # so: not before RUNNING_LIMIT seconds (it may not be done)


# How a request ends → what it means. A Bitrix24 error envelope (REFUSED) may have come after
# some commands ran, unless its code is one documented to refuse the request before it runs
# (NOT_RUN below); a readable answer (ANSWERED) is judged command by command (for_command).
ENDINGS: dict[Ending, Meaning] = {
    Ending.NOT_SENT: Meaning(False, True, "Could not connect to the portal"),
    Ending.REFUSED: Meaning(True, False, "Bitrix24 answered with an error"),
    Ending.ANSWERED: Meaning(False, False, "Bitrix24 answered"),
    Ending.UNREADABLE: Meaning(True, False, "Bitrix24's answer could not be read"),
    Ending.CUT_OFF: Meaning(True, True, "The connection to the portal dropped", True),
    Ending.TIMED_OUT: Meaning(True, True, "The portal did not answer in time", True),
}
# An unreadable answer with a 5xx status is a portal failing as a whole (an HTML 503 from its
# front, a 500 page): pause it too. A gateway's 502/504 page means the portal behind it may still
# be running the request.
UNREADABLE_5XX = Meaning(True, True, "The portal answered an error page")
GATEWAY_GAVE_UP = Meaning(True, True, "The portal's gateway gave up waiting", True)
# The request needed the portal's access token renewed first and the OAuth server failed the
# refresh however it ended (OAuthUnavailable): the request itself never ran, and none of the
# portal's requests can until a refresh works, so the portal is paused and its probes (which
# refresh too) find the OAuth server back.
OAUTH_FAILED = Meaning(False, True, "The OAuth server could not renew the portal's access token")

# limits.md: a cloud request runs at most 60 s, then it is cut off. A request we stopped waiting
# for (our timeout is shorter), whose connection dropped, or that a gateway gave up on may still
# be running until then: looking its calls up earlier can miss a call that is still being
# registered and finished, and sending it again would make a second call (a finished call is no
# longer found by the register page's 30-minute re-registration rule). So such calls are looked
# up only once this has passed since they were sent.
RUNNING_LIMIT = 60.0

# Documented errors that refuse a request before it runs (_includes/system-errors.md,
# limits.md): retried without a look-up. Any other error envelope (INTERNAL_SERVER_ERROR,
# ERROR_UNEXPECTED_ANSWER, a code we do not know) may have come after some commands ran.
NOT_RUN = frozenset(
    {
        "QUERY_LIMIT_EXCEEDED",
        "OPERATION_TIME_LIMIT",
        "OVERLOAD_LIMIT",
        "NO_AUTH_FOUND",
        "expired_token",
        "invalid_token",
        "INVALID_CREDENTIALS",
        "INVALID_REQUEST",
        "ACCESS_DENIED",
        "PAYMENT_REQUIRED",
        "PORTAL_DELETED",
        "insufficient_scope",
        "user_access_error",
        "ERROR_BATCH_LENGTH_EXCEEDED",
        "ERROR_BATCH_METHOD_NOT_ALLOWED",
        "ERROR_METHOD_NOT_FOUND",
        "UNSAFE_ADDRESS",  # our own refusal to connect (safety.py): nothing was sent
        "BAD_UPLOAD_URL",  # an uploadUrl off the portal's address: refused before sending
        "BAD_REDIRECT",
    }
)
# Refusals that every request to the portal would meet: pause it and probe. The token errors
# reach here only when the portal refused even the token just renewed for them
# (bitrix/client.py REFRESH_ERRORS): it takes no token of ours until something changes there,
# and if that lasts, its admin is asked (portal_health.TOKENS_REFUSED_FOR).
PORTAL_WIDE = frozenset({"OVERLOAD_LIMIT", "UNSAFE_ADDRESS", *REFRESH_ERRORS})

# PortalUnavailable.portal_status → fail (the portal is gone, or never was ours) or wait; the
# words are the status's own (PortalStatus.meaning).
NEVER_SEEN = "The portal is not known to this application (it was never installed here)."
SCOPE_WAIT = 30 * 60.0  # seconds: a missing scope needs the admin to update the app

# Per-command ERROR_CORE texts (telephony-external-call-register.md, -finish.md) → code, words.
CALL_NOT_FOUND_TEXT = "Call is not found"
USER_NOT_FOUND = "USER_NOT_FOUND"
CORE_ERRORS: tuple[tuple[str, str, str], ...] = (
    (
        "User is not found or is not active",
        USER_NOT_FOUND,
        "Bitrix24 has no active employee for this call's USER_ID or USER_PHONE_INNER, and the "
        "portal has no fallback employee; map the extension to an active employee or choose a "
        "fallback employee on the settings page.",
    ),
    (
        "USER_ID or USER_PHONE_INNER should be set",
        "NO_USER",
        "The call names no employee; choose a fallback employee on the settings page.",
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
# The codes delivery itself gives calls (metrics label them as they are).
OUR_CODES = frozenset(
    {
        OUTCOME_UNKNOWN,
        PORTAL_PAUSED,
        "INTERNAL",
        "ok",
        *(code for _, code, _ in CORE_ERRORS),
        "UNKNOWN",
        *(status.upper() for status in PortalStatus),
    }
)


def meaning(error: BitrixError) -> Meaning:
    """The ENDINGS row of a failed request."""
    if isinstance(error, TransportError):
        return ENDINGS[error.ending]
    if isinstance(error, OAuthUnavailable):
        return OAUTH_FAILED
    if isinstance(error, UnreadableAnswer):
        if error.status in (502, 504):
            return GATEWAY_GAVE_UP
        return UNREADABLE_5XX if (error.status or 0) >= 500 else ENDINGS[Ending.UNREADABLE]
    if error.code in NOT_RUN:
        return Meaning(False, error.code in PORTAL_WIDE, "Bitrix24 refused the request")
    return ENDINGS[Ending.REFUSED]


def for_exception(error: Exception) -> Verdict:
    """What a whole failed request (the batch itself) means for each of its calls."""
    if isinstance(error, RateLimited):
        return Verdict(
            "wait",
            error.code,
            "Bitrix24 asked us to slow down; trying later.",
            retry_at=error.retry_at,
        )
    if isinstance(error, PortalUnavailable):
        return for_portal(error)
    if isinstance(error, BitrixError):
        return for_request_error(error)
    return Verdict(
        "retry",
        "INTERNAL",
        f"Unexpected error in the worker ({type(error).__name__}).",
        unknown=True,
    )


def for_portal(error: PortalUnavailable) -> Verdict:
    """The portal's status forbids calls: gone for good, or waiting for its admin (its calls
    stay queued and are not claimed until the portal is active again, outbox.due_condition)."""
    return for_status(error.portal_status)


def for_status(status: str) -> Verdict:
    """A portal status that forbids calls (for_portal)."""
    if status not in set(PortalStatus):
        return Verdict("fail", status.upper(), NEVER_SEEN)
    known = PortalStatus(status)
    return Verdict("fail" if known.gone else "wait", status.upper(), known.meaning)


def for_request_error(error: BitrixError) -> Verdict:
    """A request that failed as a whole, by the ENDINGS table."""
    if error.code == "insufficient_scope":
        return Verdict(
            "wait",
            error.code,
            "The application lacks the `telephony` scope on this portal; update its settings.",
            retry_at=None,
        )
    row = meaning(error)
    words = f"{row.words} ({_what(error)})."
    if row.portal_wide:
        return Verdict(
            "wait",
            PORTAL_PAUSED,
            words,
            unknown=row.may_have_run,
            pause=True,
            still_running=row.still_running,
        )
    code = OUTCOME_UNKNOWN if row.may_have_run else error.code
    return Verdict("retry", code, words, unknown=row.may_have_run, still_running=row.still_running)


def for_command(error: BitrixError, *, after_unknown: bool) -> Verdict:
    """One command's own error inside a batch (`result_error[key]`): the batch ran, so each
    command's error is about its own call."""
    text = error.description or ""
    if error.code in ("ERROR_CORE", "INVALID_ARGUMENT"):
        if any(transient in text for transient in TRANSIENT_CORE):
            return Verdict("retry", error.code, f"Bitrix24: {text}")
        if after_unknown and CALL_NOT_FOUND_TEXT in text:
            # Probably our own earlier attempt finished it: check the statistics again.
            return Verdict(
                "retry",
                OUTCOME_UNKNOWN,
                "Bitrix24 no longer knows the call after an attempt without an answer; "
                "checking its statistics.",
                unknown=True,
            )
        for needle, code, words in CORE_ERRORS:
            if needle in text:
                return Verdict("fail", code, f"{words} (Bitrix24: {text})")
        return Verdict("fail", error.code, f"Bitrix24 refused the call: {text or error.code}")
    if error.code == "insufficient_scope":
        return for_request_error(error)
    if error.code in NOT_RUN:
        return Verdict("retry", error.code, _describe(error))
    return Verdict("retry", OUTCOME_UNKNOWN, _describe(error), unknown=True)


def not_sent(verdict: Verdict) -> Verdict:
    """The verdict for calls we did not send because the portal failed us just before."""
    kind: Kind = "wait" if verdict.kind == "retry" else verdict.kind
    return replace(verdict, kind=kind, unknown=False, still_running=False)


def give_up(verdict: Verdict, *, created_at: datetime, now: datetime, policy: RetryPolicy) -> bool:
    """Whether a call that will be retried has had enough: it is being retried for its own
    troubles (not waiting for its portal) past the retention period."""
    return verdict.counts and now - created_at >= policy.retention


def next_attempt(
    verdict: Verdict,
    *,
    attempts: int,
    now: datetime,
    policy: RetryPolicy,
    sent_at: datetime | None = None,
) -> datetime:
    """When a call that will be tried again becomes due: after a backoff for its own troubles,
    at once when it only waits for its portal (the pause, the throttle and the portal's status
    keep it from going early), or when Bitrix24 said; a request that may still be running
    (`still_running`, sent at `sent_at`) is not looked up before RUNNING_LIMIT has passed."""
    delay = policy.backoff(attempts) if verdict.counts else 0.0
    if verdict.still_running:  # not before Bitrix24 can no longer be running it
        since = (now - sent_at).total_seconds() if sent_at is not None else 0.0
        delay = max(delay, RUNNING_LIMIT - max(since, 0.0))
    if verdict.code == "insufficient_scope":
        delay = SCOPE_WAIT
    if verdict.retry_at is not None:
        delay = max(delay, verdict.retry_at - now.timestamp())
    return now + timedelta(seconds=max(delay, 0.0))


def gave_up_reason(verdict: Verdict, *, attempts: int, created_at: datetime, now: datetime) -> str:
    days = (now - created_at).total_seconds() / 86400
    return f"Gave up after {attempts} attempts over {days:.1f} days. Last problem: {verdict.reason}"


def _what(error: BitrixError) -> str:
    if isinstance(error, UnreadableAnswer):
        return f"HTTP {error.status}"
    return error.description or error.code


def _describe(error: BitrixError) -> str:
    if error.description:
        return f"Bitrix24 answered {error.code}: {error.description}"
    return f"Bitrix24 answered {error.code}."
