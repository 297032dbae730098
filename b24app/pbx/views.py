"""`/pbx/v1`: the PBX-facing HTTP endpoints. They only translate: HTTP in → intake → problems.py.

Every error under `/pbx/v1` is `application/problem+json`, including the ones Flask and Werkzeug
raise themselves (413 from MAX_CONTENT_LENGTH, 404/405 from routing) and any bug (500): a PBX's
admin always gets a readable answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from b24app import metrics, ratelimit
from b24app.config import Settings
from b24app.db import Database, database_away, get_db
from b24app.logs import get_logger
from b24app.models import EventKind
from b24app.pbx import auth, intake, openapi, problems
from b24app.pbx import route as routing
from b24app.pbx.intake import Code, PortalContext, Result
from b24app.pbx.schemas import FILE, FieldError
from b24app.wiring import current_store, store_of

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
CALLS = "/pbx/v1/calls/"
EVENTS = ("start", "ring", "answer", "finish", "record")  # the POST /calls/<event> endpoints
# What /calls/record takes beyond the recording itself: its other fields and the multipart framing
FORM_OVERHEAD = 64 * 1024
# app.config key: the body limit of POST /pbx/v1/calls/record (B24APP_RECORD_MAX_BYTES plus
# FORM_OVERHEAD), for anything in front of the app that bounds bodies by path (web_worker.py)
RECORD_BODY_LIMIT = "PBX_RECORD_BODY_LIMIT"
ROUTER = "b24app.pbx.router"  # app.extensions: this process's route.Router


def current_settings() -> Settings:
    settings: Settings = current_app.config["SETTINGS"]
    return settings


def _portal() -> PortalContext | Result:
    header = request.headers.get("Authorization")
    portal = auth.request_portal(get_db(), current_store().box, header)
    if isinstance(portal, PortalContext):
        structlog.contextvars.bind_contextvars(member_id=portal.member_id)
        ratelimit.authenticated()
    return portal


@bp.post("/calls/start")
def start() -> Response:
    """A call's start: 202 once durably stored (registered in Bitrix24 later, by the worker)."""
    return _event(EventKind.START, intake.accept_start)


@bp.post("/calls/ring")
def ring() -> Response:
    """Employees whose phones ring: 202 once stored (the card is shown to them later)."""
    return _event(EventKind.RING, intake.accept_ring)


@bp.post("/calls/answer")
def answer() -> Response:
    """The employee who answered: 202 once stored (the card is hidden from the others later)."""
    return _event(EventKind.ANSWER, intake.accept_answer)


@bp.post("/calls/finish")
def finish() -> Response:
    """Finish a call: 202 once it is durably stored (delivery to Bitrix24 happens later)."""
    return _event(EventKind.FINISH, intake.accept_finish)


@bp.post("/calls/record")
def record() -> Response:
    """The call's recording, by RECORD_URL or as the multipart part FILE: 202 once stored.

    This route alone takes bodies up to B24APP_RECORD_MAX_BYTES plus FORM_OVERHEAD (Flask's
    per-request `max_content_length`), and only as multipart/form-data, the one type that can
    carry a file; its JSON or url-encoded bodies, like every other route's, keep the API's 1 MiB.
    """
    settings = current_settings()
    if request.mimetype == "multipart/form-data":
        request.max_content_length = current_app.config[RECORD_BODY_LIMIT]
    uploads: list[intake.Upload] = []

    def accept(db: Database, portal: PortalContext, fields: Mapping[str, Any]) -> Result:
        return intake.accept_record(db, portal, fields, files=uploads, settings=settings)

    return _event(EventKind.RECORD, accept, uploads)


Accept = Callable[[Database, PortalContext, Mapping[str, Any]], Result]


def _event(kind: EventKind, accept: Accept, uploads: list[intake.Upload] | None = None) -> Response:
    """Authenticate, read the body's fields (the FILE parts into `uploads`, when given), accept."""
    portal = _portal()
    if isinstance(portal, Result):
        return _counted(kind, portal)
    fields = intake.read_fields(
        request.mimetype,
        body=lambda: request.get_data(cache=False),
        form=lambda: _form_pairs(uploads),
        charset=request.mimetype_params.get("charset"),
    )
    if isinstance(fields, Result):
        return _counted(kind, fields)
    return _counted(kind, accept(get_db(), portal, fields))


def _counted(kind: EventKind, result: Result) -> Response:
    """Count and log the intake's outcome, then answer: one line per request, naming the event
    and the call's id when there is one (the portal's member_id is bound by `_portal`)."""
    metrics.CALLS_ACCEPTED.labels(result.code.value).inc()
    call = (result.call or {}).get("id")
    if result.code in (Code.ACCEPTED, Code.REPEATED):
        log.info("call accepted", call=call, kind=kind.value, outcome=result.code.value)
    else:
        errors = [e.field for e in result.errors][:20]
        log.info(
            "call refused", call=call, kind=kind.value, outcome=result.code.value, fields=errors
        )
    return problems.answer(result)


def _form_pairs(uploads: list[intake.Upload] | None = None) -> list[tuple[str, object]]:
    """Form fields, and uploaded files by name (which then count as bad fields); with `uploads`,
    the files named FILE go there instead (/calls/record)."""
    pairs: list[tuple[str, object]] = list(request.form.items(multi=True))
    for name, upload in request.files.items(multi=True):
        if uploads is not None and name == FILE:
            uploads.append(intake.Upload(upload.read(), upload.filename))
        else:
            pairs.append((name, {"file": upload.filename}))
    multipart = request.mimetype == "multipart/form-data"
    if not pairs and not uploads and multipart and request.content_length:
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


@bp.get("/route")
def route() -> Response:
    """Who should take a caller from PHONE_NUMBER (route.py): 200 with USER_ID,
    USER_PHONE_INNER, CRM_ENTITY_TYPE and CRM_ENTITY_ID, nulls when nobody is found or Bitrix24
    cannot say in time; within 2 s of arrival. 401 without a valid key, 422 without a good
    PHONE_NUMBER (problem+json naming it)."""
    arrived = time.monotonic()
    portal = _portal()
    if isinstance(portal, Result):
        return problems.answer(portal)
    phone, errors = routing.read_phone_number(request.args.lists())
    if phone is None:
        detail = "Send the caller's number: GET /pbx/v1/route?PHONE_NUMBER=..."
        return problems.answer(Result(Code.INVALID_FIELDS, detail, tuple(errors)))
    router: routing.Router = current_app.extensions[ROUTER]
    answer = router.route(portal, phone, deadline=arrived + routing.BUDGET)
    metrics.ROUTES.labels(answer.outcome).inc()
    log.info("route answered", outcome=answer.outcome, found=answer.route.user_id is not None)
    response = Response(json.dumps(answer.route.as_json()), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"  # it names a client's employee
    return response


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
    # wherever it surfaced (key look-up, limiter, store), the request did nothing durable: 503 +
    # Retry-After tells the PBX to send it again (a restart drill saw 3 of 1,180 answered 500)
    if database_away(error):
        log.warning("pbx endpoint: database unavailable", error=type(error).__name__)
        return problems.answer(
            Result(Code.STORE_UNAVAILABLE, "The store is unavailable; send it again.")
        )
    log.exception("pbx endpoint failed", path=request.path)
    return problems.answer(Result(Code.INTERNAL_ERROR, "Something went wrong on our side."))


def _problem_for(error: HTTPException) -> Response:
    code = HTTP_CODES.get(error.code or 500, Code.INTERNAL_ERROR)
    detail = error.description or ""
    errors: tuple[FieldError, ...] = ()
    if code is Code.BODY_TOO_LARGE:
        detail, errors = _too_large()
    if code is Code.RATE_LIMITED:
        detail = f"Too many requests: the limit is {error.description}. Wait for Retry-After."
    if code is Code.METHOD_NOT_ALLOWED and _unknown_event():
        code = Code.NOT_FOUND
    if code is Code.NOT_FOUND:
        detail = _not_found()
    headers = {}
    if code is Code.METHOD_NOT_ALLOWED:  # Werkzeug's MethodNotAllowed knows the methods
        allowed = list(getattr(error, "valid_methods", None) or [])
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not allowed here; use {', '.join(allowed)}."
    return problems.answer(Result(code, detail, errors), headers=headers)


def _unknown_event() -> bool:
    """A POST to /calls/<name> that is no event: it only matched `GET /calls/<id>`'s shape."""
    return (
        request.method == "POST"
        and request.path.startswith(CALLS)
        and "/" not in (request.path[len(CALLS) :])
    )


def _not_found() -> str:
    """404's words; for a POST under /calls/, the event endpoints there are."""
    detail = f"{request.path[:200]} is not an endpoint of the PBX API"
    if request.method == "POST" and request.path.startswith(CALLS):
        events = ", ".join(CALLS + name for name in EVENTS)
        return f"{detail}. The call events are POST {events} (see /pbx/v1/openapi.json)."
    return f"{detail} (see /pbx/v1/openapi.json)."


def _too_large() -> tuple[str, tuple[FieldError, ...]]:
    """413's words: the API's 1 MiB, or for an upload to /calls/record the recording's own cap
    (naming FILE)."""
    if request.endpoint != "pbx.record" or request.mimetype != "multipart/form-data":
        return TOO_LARGE, ()
    cap = current_settings().record_max_bytes
    message = f"a recording may have at most {cap:,} bytes (B24APP_RECORD_MAX_BYTES)"
    return f"The body is larger than this endpoint accepts: {message}.", (
        FieldError(FILE, message),
    )


def _routing_error(error: HTTPException) -> Response | HTTPException:
    """404 and 405 are raised before any blueprint is chosen: answer them for /pbx/ paths only."""
    if request.path == "/pbx" or request.path.startswith("/pbx/"):
        return _problem_for(error)
    return error


def init_app(app: Flask) -> None:
    settings: Settings = app.config["SETTINGS"]
    app.config[RECORD_BODY_LIMIT] = settings.record_max_bytes + FORM_OVERHEAD
    app.extensions[ROUTER] = routing.Router(store_of(app))
    auth.init_app(app, get_db(app))
    app.register_blueprint(bp)
    app.register_error_handler(404, _routing_error)
    app.register_error_handler(405, _routing_error)
