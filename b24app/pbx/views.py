"""`/pbx/v1`: the PBX-facing HTTP endpoints. They only translate: HTTP in → intake → problems.py.

Every error under `/pbx/v1` is `application/problem+json`, including the ones Flask and Werkzeug
raise themselves (413 from MAX_CONTENT_LENGTH, 404/405 from routing) and any bug (500): a PBX's
admin always gets a readable answer.
"""

from __future__ import annotations

import json

import structlog
from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import HTTPException

from b24app import metrics, ratelimit
from b24app.db import get_db
from b24app.logs import get_logger
from b24app.pbx import auth, intake, openapi, problems
from b24app.pbx.intake import Code, PortalContext, Result
from b24app.wiring import current_store

log = get_logger(__name__)
bp = Blueprint("pbx", __name__, url_prefix="/pbx/v1")

HTTP_CODES = {
    400: Code.UNREADABLE_BODY,
    404: Code.NOT_FOUND,
    405: Code.METHOD_NOT_ALLOWED,
    413: Code.BODY_TOO_LARGE,
    415: Code.UNSUPPORTED_MEDIA_TYPE,
    429: Code.RATE_LIMITED,
}
TOO_LARGE = (
    "The body is larger than this API accepts: at most 1 MiB (1,048,576 bytes) "
    "and at most 1,000 form fields."
)


def _portal() -> PortalContext | Result:
    header = request.headers.get("Authorization")
    portal = auth.request_portal(get_db(), current_store().box, header)
    if isinstance(portal, PortalContext):
        structlog.contextvars.bind_contextvars(member_id=portal.member_id)
        ratelimit.authenticated()
    return portal


@bp.post("/calls/finish")
def finish() -> Response:
    """Finish a call: 202 once it is durably stored (delivery to Bitrix24 happens later)."""
    portal = _portal()
    if isinstance(portal, Result):
        return _counted(portal)
    fields = intake.read_fields(
        request.mimetype,
        body=lambda: request.get_data(cache=False),
        form=_form_pairs,
        charset=request.mimetype_params.get("charset"),
    )
    if isinstance(fields, Result):
        return _counted(fields)
    return _counted(intake.accept_finish(get_db(), portal, fields))


def _counted(result: Result) -> Response:
    """Count and log the intake's outcome (the call's id when there is one), then answer."""
    metrics.CALLS_ACCEPTED.labels(result.code.value).inc()
    call = (result.call or {}).get("id")
    if result.code in (Code.ACCEPTED, Code.REPEATED):
        log.info("call accepted", call=call, outcome=result.code.value)
    else:
        errors = [e.field for e in result.errors][:20]
        log.info("call refused", call=call, outcome=result.code.value, fields=errors)
    return problems.answer(result)


def _form_pairs() -> list[tuple[str, object]]:
    """Form fields, and uploaded files by name (which then count as bad fields)."""
    pairs: list[tuple[str, object]] = list(request.form.items(multi=True))
    pairs += [(name, {"file": upload.filename}) for name, upload in request.files.items(multi=True)]
    if not pairs and request.mimetype == "multipart/form-data" and request.content_length:
        raise _Unreadable(
            "The multipart body has no readable fields "
            "(check its boundary, its final boundary line, and that each part has a name)."
        )
    return pairs


class _Unreadable(Exception):
    pass


@bp.get("/calls/<public_id>")
def show(public_id: str) -> Response:
    """A call's state; only the key's own portal's calls exist for it."""
    portal = _portal()
    if isinstance(portal, Result):
        return problems.answer(portal)
    return problems.answer(intake.find_call(get_db(), portal, public_id))


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.1 description of this API (no key needed), fields in the model's order."""
    return Response(json.dumps(openapi.document()), mimetype="application/json")


@bp.errorhandler(_Unreadable)
def _unreadable(error: _Unreadable) -> Response:
    return problems.answer(Result(Code.UNREADABLE_BODY, str(error)))


@bp.errorhandler(HTTPException)
@bp.errorhandler(429)  # by code, so it wins over an app-wide handler of the limiter's 429
def _http_error(error: HTTPException) -> Response:
    return _problem_for(error)


@bp.errorhandler(Exception)
def _bug(error: Exception) -> Response:
    log.exception("pbx endpoint failed", path=request.path)
    return problems.answer(Result(Code.INTERNAL_ERROR, "Something went wrong on our side."))


def _problem_for(error: HTTPException) -> Response:
    code = HTTP_CODES.get(error.code or 500, Code.INTERNAL_ERROR)
    detail = TOO_LARGE if code is Code.BODY_TOO_LARGE else (error.description or "")
    if code is Code.RATE_LIMITED:
        detail = f"Too many requests: the limit is {error.description}. Wait for Retry-After."
    if code is Code.NOT_FOUND:
        detail = f"{request.path} is not an endpoint of the PBX API (see /pbx/v1/openapi.json)."
    headers = {}
    if code is Code.METHOD_NOT_ALLOWED:  # Werkzeug's MethodNotAllowed knows the methods
        allowed = list(getattr(error, "valid_methods", None) or [])
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not allowed here; use {', '.join(allowed)}."
    return problems.answer(Result(code, detail), headers=headers)


def _routing_error(error: HTTPException) -> Response | HTTPException:
    """404 and 405 are raised before any blueprint is chosen: answer them for /pbx/ paths only."""
    if request.path == "/pbx" or request.path.startswith("/pbx/"):
        return _problem_for(error)
    return error


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_error_handler(404, _routing_error)
    app.register_error_handler(405, _routing_error)
