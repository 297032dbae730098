"""`{portal}/rest/upload.json?auth=…&token=…`: the upload address a method hands out for a file
too large for its JSON parameters (telephony.externalCall.attachRecord with FILENAME and no
FILE_CONTENT answers `uploadUrl` and `fieldName`, methods/telephony.py `upload_url`).

What the documentation says (api-reference/telephony/telephony-external-call-attach-record.md):
the answer's `uploadUrl` has this shape, on the portal's own address, with the access token as
`auth` and an upload `token` (`telephony|<base64 "callId=…">|<signature>`), and `fieldName` is
`file`; the file goes "in a separate request". What is inferred, not documented:
- the request is a multipart/form-data POST with the file in the part named `fieldName`, its
  file name the record's name (mp3 or wav, as for FILENAME);
- it meets the same checks as a REST call (portal, faults, request bucket, access token) and
  errors come as REST error envelopes: ERROR_CORE for a bad upload token or file, with the
  attach-record page's texts where they apply;
- success stores the record exactly as FILENAME + FILE_CONTENT does (`portal.records[CALL_ID]`,
  its `size` and `FILENAME`) and answers the REST envelope `{"result": {"FILE_ID": n}, "time"}`,
  the page's answer to an immediate attachment.
The upload token's last part is not verified: `upload_url` makes it at random and keeps no copy.
The token must name a call of the calling application's statistics, and `auth` must be valid.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qs

from flask import Blueprint, Response, current_app, request

from devportal.dispatch import envelope, time_object
from devportal.errors import RestError, core_error, system_error
from devportal.methods import Call
from devportal.methods.telephony import (
    EMPTY_CONTENT,
    NOT_IN_STATISTICS,
    _attach,
    _check_extension,
    own_statistics,
)
from devportal.rest import _fault, authenticate, json_response
from devportal.state import DevState

bp = Blueprint("devportal_upload", __name__)

BAD_UPLOAD_TOKEN = "Upload token is invalid"  # noqa: S105 - an error text [inferred: no page]


def state() -> DevState:
    return current_app.extensions["devportal.state"]


@bp.route("/p/<code>/rest/upload.json", methods=["POST"])
def upload(code: str) -> Response:
    """Take the file of an upload address (see the module's docstring) and answer as REST."""
    dev = state()
    portal = dev.find_portal(code)
    if portal is None:
        return json_response({"error": "NOT_FOUND", "error_description": "Portal not found"}, 404)
    fault = _fault(portal)
    if fault is not None:
        return fault
    token_value = request.args.get("auth", "")
    entry: dict[str, Any] = {
        "ts": dev.now(),
        "portal": portal.code,
        "member_id": portal.member_id,
        "http_method": request.method,
        "method": "upload",
        "params": {},
    }
    dev.record(entry)
    started = dev.now()
    try:
        with dev.lock:
            allowed = portal.bucket.take(dev.now())
        if not allowed:
            raise system_error("QUERY_LIMIT_EXCEEDED")
        token = authenticate(dev, portal, token_value)
        entry.update(client_id=token.client_id, user_id=token.user_id)
        call_id = _call_id(request.args.get("token", ""))
        field = next(iter(request.files), None)
        stored = request.files.get(field) if field else None
        data = stored.read() if stored is not None else b""
        filename = (stored.filename or "") if stored is not None else ""
        with dev.lock:
            entry["params"] = {"CALL_ID": call_id, "field": field, "FILENAME": filename}
            call = Call(dev, portal, token, "upload")
            if own_statistics(portal, token.client_id, call_id) is None:
                raise core_error(NOT_IN_STATISTICS)
            _check_extension(filename)
            if not data:
                raise core_error(EMPTY_CONTENT)
            content = base64.b64encode(data).decode("ascii")
            result = _attach(call, call_id, filename=filename, url=None, content=content)
    except RestError as error:
        with dev.lock:
            entry.update(status=error.status, error=error.code)
        return json_response(error.body(), error.status)
    finished = dev.now()
    with dev.lock:
        entry.update(status=200, error=None, size=len(data))
    info = time_object(started, finished, finished - started, 0.0, finished)
    return json_response(envelope(result, info), 200)


def _call_id(token: str) -> str:
    """The CALL_ID inside an upload token `telephony|<base64 "callId=…">|<signature>`."""
    parts = token.split("|")
    if len(parts) != 3 or parts[0] != "telephony" or not parts[2]:
        raise core_error(BAD_UPLOAD_TOKEN)
    try:
        payload = base64.b64decode(parts[1], validate=True).decode()
    except (binascii.Error, ValueError):
        raise core_error(BAD_UPLOAD_TOKEN) from None
    call_id = parse_qs(payload).get("callId", [""])[0]
    if not call_id:
        raise core_error(BAD_UPLOAD_TOKEN)
    return call_id
