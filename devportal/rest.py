"""`{portal}/rest/{method}[.json]`: what every REST request meets before its method runs.

Order: the portal's address (302 after a domain change), injected faults, the request-rate bucket
(limits.md; a `batch` is one request), the access token (NO_AUTH_FOUND / expired_token), the
installation (PAYMENT_REQUIRED), then the method itself (dispatch.py), and last an injected
spoiling of the answer of a method that ran (faults.spoil_answers).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from typing import Any

from flask import Blueprint, Response, current_app, redirect, request

from b24app.bitrix.encoding import unflatten
from devportal.dispatch import envelope, execute, journal_entry
from devportal.errors import RestError, system_error
from devportal.faults import take_spoil
from devportal.state import AccessToken, DevPortal, DevState

bp = Blueprint("devportal_rest", __name__)


def state() -> DevState:
    return current_app.extensions["devportal.state"]


@bp.route("/p/<code>/rest/<path:name>", methods=["GET", "POST"])
def rest(code: str, name: str) -> Response:
    dev = state()
    name = name.strip("/").removesuffix(".json")
    portal = dev.find_portal(code)
    if portal is None:
        return _moved_or_missing(dev, code)
    fault = _fault(portal)
    if fault is not None:
        return fault
    params = request_params()
    token_value = str(params.pop("auth", "") or "")
    entry: dict[str, Any] = {
        "ts": dev.now(),
        "portal": portal.code,
        "member_id": portal.member_id,
        "http_method": request.method,
        "method": name.lower(),
        "params": redact(params, token_value),
    }
    dev.record(entry)  # now, so that a batch's commands can name the batch's entry (seq)
    serving = journal_entry.set(entry)
    reached = False  # the request got past the bucket and the token to its method
    try:
        with dev.lock:
            allowed = portal.bucket.take(dev.now())
        if not allowed:
            raise system_error("QUERY_LIMIT_EXCEEDED")
        token = authenticate(dev, portal, token_value)
        entry.update(client_id=token.client_id, user_id=token.user_id)
        reached = True
        result, time_info = execute(dev, portal, token, name, params)
    except RestError as error:
        with dev.lock:
            entry.update(status=error.status, error=error.code)
        answer = json_response(error.body(), error.status)
    else:
        with dev.lock:
            entry.update(status=200, error=None)
        answer = json_response(envelope(result, time_info), 200)
    finally:
        journal_entry.reset(serving)
    return _spoiled(dev, portal, entry, answer) if reached else answer


def authenticate(dev: DevState, portal: DevPortal, token_value: str) -> AccessToken:
    """The access token must be one the OAuth server issued for this portal and still valid."""
    if portal.deleted:
        raise system_error("PORTAL_DELETED")
    if portal.faults.rest_error:
        raise system_error(portal.faults.rest_error)
    token = dev.access_tokens.get(token_value) if token_value else None
    if token is None or token.member_id != portal.member_id:
        raise system_error("NO_AUTH_FOUND")
    if token.expires_at <= dev.now():
        raise system_error("expired_token")
    installation = portal.installations.get(token.client_id)
    if installation is None:
        raise system_error("NO_AUTH_FOUND")
    if installation.payment_expired:
        raise system_error("PAYMENT_REQUIRED")
    return token


def redact(value: Any, secret: str) -> Any:
    """A copy of the parameters for the journal without the token, even inside batch commands."""
    if isinstance(value, dict):
        return {k: redact(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secret) for v in value]
    if secret and isinstance(value, str) and secret in value:
        return value.replace(secret, "***")
    return value


def request_params() -> dict[str, Any]:
    """Parameters from the query string plus a form or JSON body (general-principles.md)."""
    params: dict[str, Any] = unflatten(request.args.items(multi=True))
    if request.is_json:
        body = request.get_json(silent=True)
        if isinstance(body, dict):
            params.update(body)
    else:
        params.update(unflatten(request.form.items(multi=True)))
    return params


def json_response(body: Any, status: int) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json"
    )


def _moved_or_missing(dev: DevState, code: str) -> Response:
    """A portal that changed its address answers 302 to the new one (change-domen.md)."""
    for portal in dev.portals.values():
        if code in portal.old_codes:
            target = request.full_path.replace(f"/p/{code}/", f"/p/{portal.code}/", 1)
            return redirect(dev.base_url + target.rstrip("?"), code=302)  # type: ignore[return-value]
    return json_response({"error": "NOT_FOUND", "error_description": "Portal not found"}, 404)


def _fault(portal: DevPortal) -> Response | None:
    faults = portal.faults
    if faults.latency:
        time.sleep(faults.latency)
    if faults.outage == "503":
        return Response("<html><body>503 Service Temporarily Unavailable</body></html>", 503)
    if faults.outage == "timeout":
        time.sleep(faults.timeout_sleep)
        return Response("<html><body>504 Gateway Timeout</body></html>", 504)
    if faults.outage == "reset":
        _drop_connection()
        return Response("", 500)
    return None


# What PHP prints when a script dies mid-way; the portal's web server still answers 200.
FATAL_ERROR_PAGE = (
    "<br />\n<b>Fatal error</b>:  Allowed memory size of 268435456 bytes exhausted (tried to "
    "allocate 20480 bytes) in <b>/home/bitrix/www/bitrix/modules/rest/lib/restmanager.php</b> "
    "on line <b>342</b><br />\n"
)
SERVER_ERROR_PAGE = (
    "<html><head><title>500 Internal Server Error</title></head><body>"
    "<h1>Internal Server Error</h1><p>The server encountered an internal error.</p>"
    "</body></html>"
)


def _spoiled(dev: DevState, portal: DevPortal, entry: dict[str, Any], answer: Response) -> Response:
    """`answer`, or the spoiled answer faults.spoil_answers asks for (the method has run)."""
    kind = take_spoil(dev, portal)
    if kind is None:
        return answer
    with dev.lock:
        entry["spoiled"] = kind
    if kind == "html200":
        return Response(FATAL_ERROR_PAGE, 200, mimetype="text/html")
    if kind == "html500":
        return Response(SERVER_ERROR_PAGE, 500, mimetype="text/html")
    if kind == "truncated":
        body = answer.get_data()
        return Response(body[: len(body) // 2], answer.status_code, mimetype="application/json")
    _drop_connection()  # "reset"
    return Response("", 500)


def _drop_connection() -> None:
    """Close the client's socket without an answer, as a crashed server would."""
    sock = request.environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
