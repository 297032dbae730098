"""A development stand-in for a portal's PBX: it receives b24app's originate webhooks.

**Not part of Bitrix24.** In production the PBX at the portal's `originate_url` gets b24app's
click-to-call and callback webhooks (PRODUCT.md, "From Bitrix24 to the PBX"), places the call,
and reports it through b24app's PBX API. This module plays that PBX so that `make run` and the
tests show the whole way: click in the shell → ONEXTERNALCALLSTART → b24app → signed webhook →
here → `start` with Bitrix24's CALL_ID and a `finish` → the call finished in the portal.

    POST /_pbx/<code>/originate    the webhook of portal <code>'s PBX (its `originate_url`)

Each POST is verified the Standard Webhooks way with the `standardwebhooks` library (headers
webhook-id, webhook-timestamp within 5 minutes, webhook-signature `v1,<base64 HMAC-SHA256>`)
against the secret it was configured with (`StandInPbx.secret`, the portal's `originate_secret`).
Answers, in this order:

    503 {"status": "down"}          while `down`
    401 {"error": "bad_signature"}  no secret configured, a header missing, a forged or stale
                                    signature (nothing else is done)
    413                             a body over MAX_BODY bytes
    500 {"error": "failing"}        while `fail_next` > 0 (counted down per verified webhook)
    400 {"error": "not_json"}       a verified body that is not a JSON object
    200 {"status": "dialing", "PBX_CALL_ID": ...}   call.start and callback.start: the call is
                                    placed (and reported, below); a webhook-id seen before is
                                    answered the same way with "duplicate": true and placed once
    200 {"status": "dialing", "test": true}         call.test: the extension may ring; nothing
                                    is reported back
    200 {"status": "ignored"}       any other type (Standard Webhooks: accept unknown types)

`delay` seconds pass before any answer (a slow PBX). Placing a call never holds up the answer:
when `b24app_url` and `pbx_key` are configured, a thread reports it to b24app's PBX API
(`Authorization: Bearer <pbx_key>`), as a PBX does:

    call.start      POST /pbx/v1/calls/start  {PBX_CALL_ID, CALL_ID (Bitrix24's: nothing is
                    registered again), PHONE_NUMBER, TYPE 1 (outgoing), USER_ID or
                    USER_PHONE_INNER, LINE_NUMBER when given}
    callback.start  POST /pbx/v1/calls/start  {PBX_CALL_ID, PHONE_NUMBER, TYPE 4 (callback),
                    USER_PHONE_INNER `extension`, LINE_NUMBER, CRM_ENTITY_TYPE/ID when given}
    both, `talk_seconds` later: POST /pbx/v1/calls/finish {PBX_CALL_ID, DURATION (whole
                    seconds, at least 1), STATUS_CODE "200" (answered), the same employee}

Fields as b24app/pbx/schemas.py's StartRequest and FinishRequest name them. Everything received
(`received`: at, webhook_id, type, verified, status, answer, body when verified, reason when
not) and reported (`reports`: at, event, PBX_CALL_ID, status, answer or error) is kept for the
inspection API (`/_dev/portals/<code>/pbx`) and the shell's Telephony page; never the secret or
the key.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from base64 import b64decode
from binascii import Error as Base64Error
from typing import Any

import requests
from flask import Blueprint, Response, current_app, request
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from devportal.state import DevPortal, DevState, StandInPbx

bp = Blueprint("devportal_pbx", __name__, url_prefix="/_pbx")

MAX_BODY = 64 * 1024  # bytes; an originate webhook is a few hundred
REPORT_TIMEOUT = 10.0  # seconds for each request to b24app's PBX API
KEPT = 200  # received webhooks and reports kept per PBX (the oldest go first)
PLACED_TYPES = ("call.start", "callback.start")
TEST_TYPE = "call.test"
SETTINGS = ("secret", "b24app_url", "pbx_key", "extension", "talk_seconds", "fail_next")
FAULTS = ("down", "delay")


def state() -> DevState:
    return current_app.extensions["devportal.state"]


@bp.post("/<code>/originate")
def originate(code: str) -> Response:
    """One originate webhook to portal `code`'s PBX (module docstring: the answers)."""
    dev = state()
    portal = dev.find_portal(code)
    if portal is None:
        return _json({"error": "not_found", "error_description": f"no portal {code!r}"}, 404)
    pbx = portal.pbx
    with dev.lock:
        delay, down, secret = pbx.delay, pbx.down, pbx.secret
    if delay:
        time.sleep(delay)
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("webhook-")}
    seen: dict[str, Any] = {"webhook_id": headers.get("webhook-id"), "type": None}
    if down:
        return _answer(dev, pbx, seen, 503, {"status": "down"})
    if (request.content_length or 0) > MAX_BODY:
        return _answer(dev, pbx, seen, 413, {"error": "too_large"})
    body = request.get_data(cache=False)[: MAX_BODY + 1]
    reason = verify(secret, body, headers)
    if reason is not None:
        seen.update(verified=False, reason=reason)
        return _answer(dev, pbx, seen, 401, {"error": "bad_signature", "reason": reason})
    seen["verified"] = True
    return _verified(dev, portal, seen, body)


def verify(secret: str | None, body: bytes, headers: dict[str, str]) -> str | None:
    """None when `body` is signed with `secret` the Standard Webhooks way, else why not."""
    if not secret:
        return "no secret configured"
    if len(body) > MAX_BODY:
        return "too large"
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError as exc:
        return str(exc)
    except ValueError:  # a malformed signature, base64 or text: forged, not a crash
        return "malformed signature headers or body"
    return None


def _verified(dev: DevState, portal: DevPortal, seen: dict[str, Any], body: bytes) -> Response:
    pbx = portal.pbx
    with dev.lock:
        failing = pbx.fail_next > 0
        if failing:
            pbx.fail_next -= 1
    if failing:
        return _answer(dev, pbx, seen, 500, {"error": "failing"})
    try:
        message = json.loads(body)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        return _answer(dev, pbx, seen, 400, {"error": "not_json"})
    kind = str(message.get("type") or "")
    seen.update(type=kind, body=message)
    if kind == TEST_TYPE:
        return _answer(dev, pbx, seen, 200, {"status": "dialing", "test": True})
    if kind not in PLACED_TYPES:
        return _answer(dev, pbx, seen, 200, {"status": "ignored"})
    with dev.lock:
        duplicate = seen["webhook_id"] in pbx.seen_ids
        pbx.seen_ids.add(seen["webhook_id"])
        snapshot = _settings(pbx)
    pbx_call_id = f"devpbx-{int(time.time())}-{secrets.token_hex(3)}"
    if duplicate:
        return _answer(dev, pbx, seen, 200, {"status": "dialing", "duplicate": True})
    threading.Thread(
        target=place_call,
        args=(dev, pbx, snapshot, message, pbx_call_id),
        name="devportal-pbx",
        daemon=True,
    ).start()
    return _answer(dev, pbx, seen, 200, {"status": "dialing", "PBX_CALL_ID": pbx_call_id})


# --- placing the call: what a PBX reports ---------------------------------------------------------
def place_call(
    dev: DevState, pbx: StandInPbx, settings: dict[str, Any], message: dict[str, Any], call: str
) -> None:
    """Report the call `message` asked for: its start, then `talk_seconds` later its finish
    (module docstring). Without b24app's URL or the PBX key nothing is reported."""
    if not (settings["b24app_url"] and settings["pbx_key"]):
        _keep(dev, pbx.reports, {"event": "start", "PBX_CALL_ID": call, "error": "not configured"})
        return
    start, employee = start_request(message, call, settings["extension"])
    _report(dev, pbx, settings, "start", start)
    time.sleep(settings["talk_seconds"])
    finish = {
        "PBX_CALL_ID": call,
        "DURATION": max(1, round(settings["talk_seconds"])),
        "STATUS_CODE": "200",
        **employee,
    }
    _report(dev, pbx, settings, "finish", finish)


def start_request(
    message: dict[str, Any], call: str, extension: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `start` for an originate `message` and the employee who talks (USER_ID or
    USER_PHONE_INNER), both as b24app/pbx/schemas.py names them."""
    phone = message.get("PHONE_NUMBER_INTERNATIONAL") or message.get("PHONE_NUMBER")
    start: dict[str, Any] = {"PBX_CALL_ID": call, "PHONE_NUMBER": phone}
    if message.get("type") == "call.start":
        start.update(CALL_ID=message.get("CALL_ID"), TYPE=1)
        employee = _employee(message)
    else:
        start["TYPE"] = 4
        employee = {"USER_PHONE_INNER": extension}
        if message.get("CRM_ENTITY_TYPE") and _whole(message.get("CRM_ENTITY_ID")):
            start.update(
                CRM_ENTITY_TYPE=message["CRM_ENTITY_TYPE"],
                CRM_ENTITY_ID=int(str(message["CRM_ENTITY_ID"])),
            )
    if message.get("LINE_NUMBER"):
        start["LINE_NUMBER"] = message["LINE_NUMBER"]
    return {**start, **employee}, employee


def _employee(message: dict[str, Any]) -> dict[str, Any]:
    if _whole(message.get("USER_ID")):
        return {"USER_ID": int(str(message["USER_ID"]))}
    return {"USER_PHONE_INNER": message.get("USER_PHONE_INNER")}


def _whole(value: Any) -> bool:
    return str(value or "").strip().isdigit() and int(str(value)) > 0


def _report(
    dev: DevState, pbx: StandInPbx, settings: dict[str, Any], event: str, fields: dict[str, Any]
) -> None:
    url = f"{settings['b24app_url'].rstrip('/')}/pbx/v1/calls/{event}"
    kept: dict[str, Any] = {"event": event, "PBX_CALL_ID": fields["PBX_CALL_ID"], "sent": fields}
    try:
        response = requests.post(
            url,
            json=fields,
            headers={"Authorization": f"Bearer {settings['pbx_key']}"},
            timeout=REPORT_TIMEOUT,
            allow_redirects=False,
        )
        kept["status"] = response.status_code
        try:
            kept["answer"] = response.json()
        except ValueError:
            kept["answer"] = response.text[:300]
    except requests.RequestException as exc:
        kept.update(status=None, error=type(exc).__name__)
    _keep(dev, pbx.reports, kept)


# --- configuration (the inspection API's POST /_dev/portals/<code>/pbx) ---------------------------
def configure(dev: DevState, portal: DevPortal, body: dict[str, Any]) -> None:
    """Change the given settings and faults of the portal's PBX; `forget: true` empties what it
    received and reported. Raises ValueError naming a bad field; then nothing changes."""
    changes = {key: _checked(key, body[key]) for key in (*SETTINGS, *FAULTS) if key in body}
    unknown = set(body) - {*SETTINGS, *FAULTS, "forget"}
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    with dev.lock:
        for key, value in changes.items():
            setattr(portal.pbx, key, value)
        if body.get("forget"):
            portal.pbx.received.clear()
            portal.pbx.reports.clear()
            portal.pbx.seen_ids.clear()


def describe(dev: DevState, portal: DevPortal) -> dict[str, Any]:
    """The PBX as the inspection API shows it: settings without the secret and the key."""
    pbx = portal.pbx
    with dev.lock:
        return {
            "originate_url": f"{dev.base_url}/_pbx/{portal.code}/originate",
            "secret_set": bool(pbx.secret),
            "pbx_key_set": bool(pbx.pbx_key),
            "b24app_url": pbx.b24app_url,
            "extension": pbx.extension,
            "talk_seconds": pbx.talk_seconds,
            "fail_next": pbx.fail_next,
            "down": pbx.down,
            "delay": pbx.delay,
            "received": [dict(r) for r in pbx.received],
            "reports": [dict(r) for r in pbx.reports],
        }


def _checked(key: str, value: Any) -> Any:
    if key == "secret":
        return _secret(value)
    if key in ("b24app_url", "pbx_key", "extension"):
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise ValueError(f"{key}: a non-empty string or null")
        if key == "b24app_url" and value and not value.startswith(("http://", "https://")):
            raise ValueError("b24app_url: an http(s) address")
        return value.strip() if isinstance(value, str) else value
    if key == "down":
        if not isinstance(value, bool):
            raise ValueError("down: true or false")
        return value
    if key == "fail_next":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("fail_next: a whole number >= 0")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 120:
        raise ValueError(f"{key}: a number of seconds from 0 to 120")
    return float(value)


def _secret(value: Any) -> str | None:
    """A Standard Webhooks secret (`whsec_` and base64), or None to forget it."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("whsec_"):
        raise ValueError("secret: a Standard Webhooks secret, whsec_<base64>")
    try:
        if not b64decode(value.removeprefix("whsec_") + "==", validate=False):
            raise ValueError("secret: empty")
    except Base64Error as exc:
        raise ValueError("secret: whsec_ followed by base64") from exc
    return value


def _settings(pbx: StandInPbx) -> dict[str, Any]:
    return {key: getattr(pbx, key) for key in SETTINGS}


# --- keeping what happened -----------------------------------------------------------------------
def _answer(
    dev: DevState, pbx: StandInPbx, seen: dict[str, Any], status: int, answer: dict[str, Any]
) -> Response:
    seen.setdefault("verified", False)
    _keep(dev, pbx.received, {**seen, "status": status, "answer": answer})
    return _json(answer, status)


def _keep(dev: DevState, kept: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    with dev.lock:
        kept.append({"at": dev.now(), **entry})
        del kept[:-KEPT]


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json"
    )
