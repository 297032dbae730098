"""One webhook to the PBX: its body, its Standard Webhooks signature, one attempt to send it.

The body (PRODUCT.md, "From Bitrix24 to the PBX") is a JSON object: `type` (`call.start`,
`callback.start`, or `call.test` from the settings page's "send a test call") and Bitrix24's own
field names; ids as numbers, absent fields as null. The signature is the Standard Webhooks one
(headers `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), made
by the `standardwebhooks` library with the portal's originate secret, so a PBX verifies it with
the same library in its own language. `webhook-id` is the same on every attempt of one request.

The address is checked as portal addresses are (bitrix/safety.py: resolved, public only, and
connected to exactly the address checked; https only), unless the deployment allows private
ones (B24APP_ORIGINATE_ALLOW_PRIVATE, development). No redirect is followed: a 3xx is an answer.

How an attempt ends (`Attempt.code`), and what the outbox does with it (a request tried again
may reach the PBX twice after a timeout: it carries the same webhook-id and CALL_ID both times):
| ending                          | code           | then                             |
|---------------------------------|----------------|----------------------------------|
| 2xx                             | ok             | delivered                        |
| no originate_url set            | no_url         | failed at once                   |
| address refused (SSRF rules)    | unsafe_address | failed at once                   |
| 3xx (a redirect, not followed)  | redirect       | failed at once                   |
| 4xx but 408, 425, 429           | refused        | failed at once (the PBX said no) |
| 408, 425, 429, 5xx              | refused        | tried again                      |
| connection refused / cut off    | connection     | tried again                      |
| no answer within TIMEOUT/DEADLINE | timeout      | tried again                      |
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from standardwebhooks.webhooks import Webhook

from b24app.bitrix.errors import UnsafeAddress
from b24app.bitrix.safety import portal_session
from b24app.config import Settings

TIMEOUT = (3.05, 5.0)  # seconds: connect, read. An employee is waiting; a PBX answers at once.
DEADLINE = 8.0  # seconds for a whole attempt, however slowly the PBX answers
BODY_KEPT = 500  # characters of the PBX's answer kept for the journal and the settings page
AGAIN = {408, 425, 429}  # 4xx answers that mean "not now" rather than "no"
INTEGERS = ("USER_ID", "CRM_ENTITY_ID", "CALL_LIST_ID", "IS_MOBILE")
FIELDS = (
    "CALL_ID",
    "PHONE_NUMBER",
    "PHONE_NUMBER_INTERNATIONAL",
    "EXTENSION",
    "USER_ID",
    "USER_PHONE_INNER",
    "LINE_NUMBER",
    "CRM_ENTITY_TYPE",
    "CRM_ENTITY_ID",
    "CALL_LIST_ID",
    "IS_MOBILE",
)
CALLBACK_FIELDS = ("TEXT", "VOICE")


@dataclass(frozen=True)
class Attempt:
    """How one send ended (the table above): `retry` says whether another attempt may help;
    `status` and `body` are the PBX's answer when there was one; `seconds` the time taken."""

    code: str
    retry: bool
    status: int | None = None
    body: str = ""
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.code == "ok"


def body(kind: str, fields: dict[str, str], user_phone_inner: str | None) -> dict[str, Any]:
    """The webhook's JSON body for a stored request (`fields`: Bitrix24's data as strings)."""
    names = FIELDS + (CALLBACK_FIELDS if kind == "callback.start" else ())
    out: dict[str, Any] = {"type": kind}
    for name in names:
        value: Any = fields.get(name)
        if name in INTEGERS and value is not None:
            value = int(value) if value.isascii() and value.isdigit() else value
        out[name] = value
    out["USER_PHONE_INNER"] = user_phone_inner
    return out


def send(
    settings: Settings, url: str | None, secret: str, webhook_id: str, payload: dict[str, Any]
) -> Attempt:
    """POST `payload` (JSON) to `url`, signed with `secret` as message `webhook_id`; how it
    ended (never raises), within DEADLINE seconds whatever the PBX does."""
    started = time.monotonic()
    if not url:
        return Attempt("no_url", False, error="no originate URL is set (settings page)")
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    headers = {
        "content-type": "application/json",
        "user-agent": "b24app-originate/1",
        **signature_headers(secret, webhook_id, data),
    }
    exchange = _Exchange(settings, url, data.encode(), headers)
    # requests has no deadline for a whole exchange (its timeouts are per socket operation: a
    # PBX sending a byte every few seconds would hold a thread for ever), so the exchange runs in
    # a thread of its own and is left behind, to end by itself, once DEADLINE is over.
    thread = threading.Thread(target=exchange.run, name="originate-exchange", daemon=True)
    thread.start()
    thread.join(DEADLINE)
    return _took(exchange.outcome(), started)


class _Exchange:
    """One POST; `outcome()` is how it ended so far (a status that came counts: the PBX has the
    request even if its body never finishes)."""

    def __init__(self, settings: Settings, url: str, body: bytes, headers: dict[str, str]) -> None:
        self.settings, self.url, self.body, self.headers = settings, url, body, headers
        self.status: int | None = None
        self.location = ""
        self.answer = ""
        self.ended: Attempt | None = None

    def run(self) -> None:
        allowed = self.settings.originate_private_allowed
        try:
            with portal_session(allow_local=allowed, https_only=not allowed) as session:
                response = session.post(
                    self.url,
                    data=self.body,
                    headers=self.headers,
                    timeout=TIMEOUT,
                    allow_redirects=False,
                    stream=True,
                )
                with response:
                    self.location = str(response.headers.get("location", ""))[:200]
                    self.status = response.status_code
                    chunk = next(response.iter_content(BODY_KEPT), b"")
                    self.answer = chunk.decode("utf-8", "replace")[:BODY_KEPT]
        except UnsafeAddress as error:
            self.ended = Attempt("unsafe_address", False, error=f"address refused: {error}")
        except requests.Timeout:
            self.ended = Attempt("timeout", True, error="the PBX did not answer in time")
        except requests.RequestException as error:
            if self.status is None:
                reason = f"could not reach the PBX ({type(error).__name__})"
                self.ended = Attempt("connection", True, error=reason)

    def outcome(self) -> Attempt:
        if self.status is not None:
            return _answered(self.status, self.answer, self.location)
        if self.ended is not None:
            return self.ended
        reason = f"the PBX did not answer within {DEADLINE:g} s"
        return Attempt("timeout", True, error=reason)


def signature_headers(secret: str, webhook_id: str, data: str) -> dict[str, str]:
    """The three Standard Webhooks headers for `data` sent now."""
    now = datetime.now(UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, now, data),
    }


def _answered(status: int, answer: str, where: str) -> Attempt:
    if 200 <= status < 300:
        return Attempt("ok", False, status, answer)
    if 300 <= status < 400:
        reason = f"the PBX answered with a redirect ({status} to {where!r}); none is followed"
        return Attempt("redirect", False, status, answer, reason)
    again = status >= 500 or status in AGAIN
    return Attempt("refused", again, status, answer, f"the PBX answered {status}")


def _took(attempt: Attempt, started: float) -> Attempt:
    return Attempt(**{**attempt.__dict__, "seconds": round(time.monotonic() - started, 3)})


def trial_body(user_id: int | None, user_phone_inner: str | None, phone: str) -> dict[str, Any]:
    """The body of a "send a test call": a call.test with a made-up CALL_ID that Bitrix24 does
    not know (the PBX may ring the extension, but must not report the call back)."""
    fields = {"CALL_ID": f"test.{uuid.uuid4().hex}", "PHONE_NUMBER": phone}
    if user_id is not None:
        fields["USER_ID"] = str(user_id)
    return body("call.test", fields, user_phone_inner)
