"""The settings page's HTTP side: `POST /app` (the page) and its JSON API under `/app/api/`.

The views only translate: the entry check is entry.py, the page token page_token.py, changes
actions.py, the journal journal.py. Every API request carries the page token in `X-Page-Token`
(no cookies: the page lives in a third-party iframe); a missing or expired one answers 401, a
forged or tampered one 403, a change by someone who is not an administrator 403.

Answers: `{"ok": true, ...}`, or `{"error": {"code", "message"}}`, or for refused values 422
`{"errors": [{"field", "message"}]}`; every message in the page's language.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit
from zoneinfo import available_timezones

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from b24app.bitrix.errors import BitrixError, PortalUnavailable
from b24app.db import get_db
from b24app.frames import framed
from b24app.logs import get_logger
from b24app.models import Portal, PortalStatus, utcnow
from b24app.originate import sender, trials
from b24app.portals import currencies, lines, mapping, store
from b24app.portals.reauth import authorization_url
from b24app.portals.settings import Preferences, zone
from b24app.settings_page import (
    actions,
    assets,
    examples,
    journal,
    messages,
    originations,
    page_token,
    portal_data,
)
from b24app.settings_page.entry import EntryRefused, language, verify_entry
from b24app.settings_page.i18n import use_language
from b24app.settings_page.page_messages import page_messages
from b24app.settings_page.page_token import TokenRefused, Viewer
from b24app.wiring import current_store

log = get_logger(__name__)
bp = Blueprint("settings_page", __name__, template_folder="templates")

View = TypeVar("View", bound=Callable[..., Response])


# --- the page -----------------------------------------------------------------------------------


@bp.post("/app")
def page() -> Response:
    settings = current_app.config["SETTINGS"]
    use_language(language(request))
    try:
        entry = verify_entry(request, current_store())
    except EntryRefused as refusal:
        log.warning("settings page refused", reason=refusal.reason, detail=refusal.detail)
        return _refused(refusal)
    viewer = entry.viewer
    use_language(viewer.lang)
    _refresh_currencies(viewer.member_id)
    state = page_state(viewer)
    state.update(
        token=page_token.issue(current_app.config["SECRET_KEY"], viewer),
        token_header=page_token.HEADER,
        api=f"{request.script_root}/app/api",
        messages=page_messages(),
        examples=_examples() if viewer.is_admin else None,
        key_placeholder=examples.KEY_PLACEHOLDER,
        admin_unknown=entry.admin_unknown,
        timezones=_timezones(),
    )
    html = render_template(
        "settings_page/app.html",
        lang=viewer.lang,
        state=state,
        viewer=viewer,
        asset=assets.url,
        bx24_script_url=settings.bx24_script_url,
    )
    log.info("settings page opened", member_id=viewer.member_id, admin=viewer.is_admin)
    return page_headers(Response(html), entry.client_endpoint, settings.bx24_script_url)


# The UI kit's colour plugin writes one <style> element (first by hand, then again through
# @unhead): the theme's colour variables, empty as b24ui 2.13 ships them (the colours themselves
# are in static/settings-page/settings.css). Both forms are allowed by their hashes rather than
# 'unsafe-inline', so no other inline style runs; the kit's other styles are set through the CSSOM
# (element.style), which CSP does not govern. tests/browser/test_page_layout.py fails on any CSP
# violation, so a kit whose element differs is noticed.
KIT_STYLE_HASHES = (
    "'sha256-7ZIzQltM1iU0jPqNUKNjeveSPHJnVZPsIFZx2wkyrFQ='",
    "'sha256-BNHR/EuRTWKOogNXGy6GYKNW30rxZNFeeHRiLsUCF2A='",
)


def page_headers(response: Response, client_endpoint: str, bx24_script_url: str) -> Response:
    """Framed by the portal's origin only (frames.framed); scripts, styles and requests
    from our own origin only (plus BX24.js, and the kit's one style element by its hash); no
    eval, no inline script; nothing cached."""
    framed(response, client_endpoint)
    ancestors = response.headers["Content-Security-Policy"]
    scripts = " ".join(filter(None, ["'self'", _script_source(bx24_script_url)]))
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; script-src {scripts}; style-src 'self' {' '.join(KIT_STYLE_HASHES)}; "
        "img-src 'self' data:; "
        f"connect-src 'self'; form-action 'self'; base-uri 'none'; {ancestors}"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _script_source(url: str) -> str | None:
    """The CSP source of BX24.js: `//api.bitrix24.com/api/v1/` → `api.bitrix24.com` (any
    scheme the page itself has), `http://host:port/x.js` → `http://host:port`."""
    parts = urlsplit(url)
    if not parts.netloc:
        return None  # a path on our own origin: 'self' covers it
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme else parts.netloc


def _refused(refusal: EntryRefused) -> Response:
    html = render_template(
        "settings_page/refused.html",
        lang=language(request),
        message=str(messages.ENTRY_REFUSED[refusal.reason]),
        detail=refusal.detail,
    )
    response = Response(html, status=refusal.status)
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; base-uri 'none'; frame-ancestors *"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@functools.cache
def _timezones() -> list[str]:
    return sorted(available_timezones())


def _examples() -> dict[str, Any]:
    public_url = current_app.config["SETTINGS"].public_url or request.host_url
    url = examples.finish_url(public_url)
    return {
        "url": url,
        "base_url": examples.base_url(public_url),
        "endpoints": examples.endpoints(public_url),
        "curl": examples.curl(url),
        "asterisk": examples.asterisk(url),
    }


def _refresh_currencies(member_id: str) -> None:
    """The currency list for the page (stored for an hour; Bitrix24 asked when older)."""
    try:
        currencies.refresh_currencies(current_store(), member_id)
    except BitrixError as error:
        log.info("currencies not refreshed", member_id=member_id, error=error.code)


def page_state(viewer: Viewer) -> dict[str, Any]:
    """Everything the page shows, as JSON (embedded in the page and at GET /app/api/state)."""
    now = utcnow()
    with get_db().read() as session:
        portal = _find(session, viewer.member_id)
        s = portal.settings
        tz = zone(s.timezone)
        prefs = Preferences.of(s)
        health = journal.health(session, portal.id, portal.status, tz=tz, now=now, prefs=prefs)
        state: dict[str, Any] = {
            "portal": {"member_id": portal.member_id, "domain": portal.domain},
            "viewer": {"user_id": viewer.user_id, "is_admin": viewer.is_admin},
            "settings": {
                "currency": s.currency,
                "add_to_chat": bool(s.add_to_chat),
                "fallback_user_id": s.fallback_user_id,
                "timezone": s.timezone,
                "show_card": s.show_card is not False,
            },
            "originate": {
                "url": (s.originate_url or "") if viewer.is_admin else _shown_url(s.originate_url),
                "has_secret": bool(s.originate_secret_encrypted),
            },
            "currencies": currencies.stored_currencies(s),
            "mapping": _rows(mapping.load(session, portal)),
            "health": health.as_json(),
        }
        if viewer.is_admin:
            state["key_rotated_at"] = journal.local_time(s.pbx_key_rotated_at, tz)
    return state


def _shown_url(url: str | None) -> str:
    """The originate URL as the read-only view shows it: without its query, which may carry
    the PBX's own credentials (`?token=…` → `?…`)."""
    if not url:
        return ""
    base, query = url.split("?", 1) if "?" in url else (url, "")
    return f"{base}?…" if query else base


def _rows(rows: dict[str, int]) -> list[dict[str, Any]]:
    return [{"extension": ext, "user_id": uid} for ext, uid in sorted(rows.items())]


def _find(session: Session, member_id: str) -> Portal:
    portal = store.find_portal(session, member_id)
    if portal is None or portal.settings is None:
        raise _Gone()
    return portal


class _Gone(Exception):
    """The portal was removed while the page was open."""


# --- the API: token, language, rights ------------------------------------------------------------


def _error(code: str, message: str, status: int) -> Response:
    response = jsonify(error={"code": code, "message": message})
    response.status_code = status
    return response


def _refused_values(refused: actions.Refused) -> Response:
    response = jsonify(errors=refused.errors)
    response.status_code = 422
    return response


def api(*, admin: bool) -> Callable[[View], View]:
    """Check the page token (and, for `admin`, the viewer's rights) before the view runs."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            token = request.headers.get(page_token.HEADER) or request.form.get("page_token")
            try:
                viewer = page_token.load(current_app.config["SECRET_KEY"], token)
            except TokenRefused as refused:
                use_language(refused.lang)
                status = 403 if refused.reason == "invalid" else 401
                message = str(messages.TOKEN_REFUSED[refused.reason])
                return _error(f"token_{refused.reason}", message, status)
            use_language(viewer.lang)
            if admin and not viewer.is_admin:
                log.warning("change refused: not an admin", member_id=viewer.member_id)
                return _error("admins_only", str(messages.ADMINS_ONLY), 403)
            if not _installed(viewer.member_id):
                return _error("not_installed", str(messages.NOT_INSTALLED), 403)
            try:
                return view(viewer, *args, **kwargs)
            except (actions.Refused, _Gone, BitrixError) as failure:
                return _failure(viewer, failure)

        return wrapper  # type: ignore[return-value]

    return decorate


def _failure(viewer: Viewer, failure: Exception) -> Response:
    """What the page is told when a view could not do its work."""
    if isinstance(failure, actions.Refused):
        return _refused_values(failure)
    if isinstance(failure, _Gone):
        return _error("not_installed", str(messages.NOT_INSTALLED), 403)
    if isinstance(failure, PortalUnavailable):  # the portal needs its admin first (Health)
        status = failure.portal_status
        words = (messages.PORTAL_STATES.get(status, status), messages.PORTAL_ACTIONS.get(status))
        return _error("portal_unavailable", " ".join(str(w) for w in words if w), 409)
    code = getattr(failure, "code", type(failure).__name__)
    log.warning("bitrix24 failed the page", member_id=viewer.member_id, error=code)
    return _error("bitrix_error", str(messages.BITRIX_UNREACHABLE) % {"code": code}, 502)


def _installed(member_id: str) -> bool:
    with get_db().read() as session:
        portal = store.find_portal(session, member_id)
        return portal is not None and not PortalStatus(portal.status).gone


def _body() -> dict[str, Any]:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested too deeply for the parser: not silent in Flask
        body = None
    return body if isinstance(body, dict) else {}


def _audit(viewer: Viewer, what: str, **details: Any) -> None:
    log.info("settings changed", member_id=viewer.member_id, user_id=viewer.user_id, what=what,
             **details)  # fmt: skip


@bp.after_request
def _api_headers(response: Response) -> Response:
    if request.path.startswith("/app/api/"):
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --- the API: reading ----------------------------------------------------------------------------


@bp.get("/app/api/state")
@api(admin=False)
def state(viewer: Viewer) -> Response:
    return jsonify(ok=True, **page_state(viewer))


@bp.get("/app/api/employees")
@api(admin=False)
def employees(viewer: Viewer) -> Response:
    found = portal_data.active_employees(current_store().client(viewer.member_id))
    return jsonify(ok=True, employees=[e.as_json() for e in found])


@bp.get("/app/api/mapping/export")
@api(admin=False)
def export_mapping(viewer: Viewer) -> Response:
    response = Response(actions.export_csv(viewer.member_id), mimetype="text/csv")
    response.headers["Content-Disposition"] = "attachment; filename=extensions.csv"
    return response


@bp.get("/app/api/calls")
@api(admin=True)
def calls(viewer: Viewer) -> Response:
    """One page of the call journal (journal.py), newest first by the call's start.

    Query parameters, all optional:
    - `show`: `all` (default), `failed`, `waiting` (queued or being sent), `today` (started
      since midnight in the portal's zone); anything else is `all`.
    - `q`: a phone number (its digits are matched: "+7 (495) 123-45-67" finds 74951234567;
      a longer one by its last 10 digits), an extension, or a PBX_CALL_ID (or the CALL_ID of a
      call the PBX registered itself); at most 100 characters (else 422 naming `q`).
    - `by`: what `q` is: `any` (default: all three; a number needs 5 digits there), `phone`,
      `extension`, `pbx_call_id`.
    - `limit`: calls per page, 1–200, default 50.
    - `cursor`: the `next_cursor` of the previous page: the next page, with no gaps or
      repeats while calls arrive (422 naming `cursor` for one the journal did not give out).
      Without it, `offset` (default 0) calls are skipped.
    - `version`: the `version` of the last answer; when nothing on this page changed since, the
      answer is only `{"ok", "unchanged": true, "version", "total", "zone", "health"}` (cheap:
      made for polling every few seconds).

    Answer: `{"ok": true, "show", "q", "by", "limit", "zone", "total", "has_more",
    "next_cursor", "version", "unchanged": false, "calls": [...], "health": {...}}`; `zone` is
    the portal's IANA time zone, each call's `started_at` its start in it with the offset
    ("2026-03-08T10:20:30+03:00"; `started_at_text` the same as "2026-03-08 10:20:30") and
    `created_at` when b24app received it. Administrators only (403 otherwise).
    """
    query = _journal_query()
    now = utcnow()
    with get_db().read() as session:
        portal = _find(session, viewer.member_id)
        tz = zone(portal.settings.timezone)
        prefs = Preferences.of(portal.settings)
        rows = mapping.load(session, portal)
        context = (viewer.lang, tz.key, prefs, sorted(rows.items()))
        seen = journal.version(session, portal.id, query, tz=tz, now=now, context=context)
        health = journal.health(session, portal.id, portal.status, tz=tz, now=now, prefs=prefs)
        said: dict[str, Any] = {
            "version": seen.digest,
            "zone": tz.key,
            "health": health.as_json(),
        }
        if seen.digest == request.args.get("version"):
            return jsonify(ok=True, unchanged=True, total=seen.total, **said)
        found = journal.page(session, seen, query)
        recordings = journal.recordings(session, found.calls)
        described = [
            journal.describe(row, tz=tz, prefs=prefs, lookup=rows.get, recordings=recordings)
            for row in found.calls
        ]
    return jsonify(
        ok=True,
        unchanged=False,
        show=query.show,
        q=query.q,
        by=query.by,
        limit=query.limit,
        total=found.total,
        has_more=found.has_more,
        next_cursor=found.next_cursor,
        calls=described,
        **said,
    )


def _journal_query() -> journal.Query:
    """The journal's query from the URL (`calls` says what each parameter means)."""
    args = request.args
    show = args.get("show", "all")
    by = args.get("by", "any")
    q = args.get("q", "").strip()
    if len(q) > journal.MAX_QUERY:
        raise actions.Refused.one("q", messages.query_too_long(journal.MAX_QUERY))
    cursor = None
    if args.get("cursor"):
        try:
            cursor = journal.Cursor.parse(args["cursor"])
        except journal.BadCursor:
            raise actions.Refused.one("cursor", messages.bad_cursor()) from None
    limit = args.get("limit", type=int) or journal.DEFAULT_LIMIT
    return journal.Query(
        show=show if show in journal.FILTERS else "all",
        q=q,
        by=by if by in journal.SEARCH_BY else "any",
        limit=max(1, min(limit, journal.MAX_LIMIT)),
        cursor=cursor,
        offset=max(0, min(args.get("offset", type=int) or 0, journal.MAX_OFFSET)),
    )


# --- the API: changing (administrators only) ----------------------------------------------------


@bp.post("/app/api/settings")
@api(admin=True)
def change_settings(viewer: Viewer) -> Response:
    changes = _body().get("settings")
    if not isinstance(changes, dict) or not changes:
        raise actions.Refused.one("settings", _("Nothing to save."))
    fallback = changes.get("fallback_user_id")
    checked = _employee_check(viewer.member_id, fallback) if fallback else None
    changed = actions.change_settings(viewer.member_id, changes, checked)
    _audit(viewer, "settings", fields=changed)
    return jsonify(ok=True, changed=changed, **page_state(viewer))


def _employee_check(member_id: str, user_id: object) -> list[portal_data.Employee] | None:
    """[the employee] if `user_id` is an active employee, [] if not, None if Bitrix24 could not
    be asked (then the format checks alone decide, as in the CLI)."""
    try:
        wanted = int(str(user_id).strip())
    except ValueError:
        return None  # the shared validator refuses it, in words
    try:
        found = portal_data.employee(current_store().client(member_id), wanted)
    except BitrixError as error:
        log.info("employee not checked", member_id=member_id, error=error.code)
        return None
    return [found] if found else []


def _all_employees(member_id: str) -> list[portal_data.Employee] | None:
    try:
        return portal_data.active_employees(current_store().client(member_id))
    except BitrixError as error:
        log.info("employees not checked", member_id=member_id, error=error.code)
        return None


@bp.post("/app/api/mapping")
@api(admin=True)
def save_mapping(viewer: Viewer) -> Response:
    body = _body()
    user_id = body.get("user_id")
    rows = actions.save_mapping(
        viewer.member_id,
        body.get("extension"),
        user_id,
        replaces=body.get("replaces"),
        employees=_employee_check(viewer.member_id, user_id),
    )
    _audit(viewer, "mapping", extension=str(body.get("extension")))
    return jsonify(ok=True, mapping=_rows(rows))


@bp.post("/app/api/mapping/remove")
@api(admin=True)
def remove_mapping(viewer: Viewer) -> Response:
    extension = _body().get("extension")
    rows = actions.remove_mapping(viewer.member_id, extension)
    _audit(viewer, "mapping removed", extension=str(extension))
    return jsonify(ok=True, mapping=_rows(rows))


@bp.post("/app/api/mapping/import")
@api(admin=True)
def import_mapping(viewer: Viewer) -> Response:
    text = _body().get("csv")
    if not isinstance(text, str):
        raise actions.Refused.one("csv", messages.nothing_to_import())
    rows = actions.import_csv(viewer.member_id, text, _all_employees(viewer.member_id))
    _audit(viewer, "mapping imported", rows=len(rows))
    return jsonify(ok=True, mapping=_rows(rows), count=len(rows))


@bp.post("/app/api/mapping/import/check")
@api(admin=True)
def check_mapping_import(viewer: Viewer) -> Response:
    """What importing `{"csv"}` would do, without saving (actions.check_import): `{"ok",
    "count", "added": [{"extension", "user_id"}], "changed": [{"extension", "from", "to"}],
    "removed": [...], "errors": [every bad line, in words]}`; the page shows it before the
    admin confirms the import."""
    text = _body().get("csv")
    if not isinstance(text, str):
        raise actions.Refused.one("csv", messages.nothing_to_import())
    checked = actions.check_import(viewer.member_id, text, _all_employees(viewer.member_id))
    return jsonify(ok=True, **checked.as_json())


@bp.post("/app/api/mapping/from-profiles")
@api(admin=True)
def mapping_from_profiles(viewer: Viewer) -> Response:
    found = portal_data.active_employees(current_store().client(viewer.member_id))
    result = actions.take_from_profiles(viewer.member_id, found)
    _audit(viewer, "mapping from profiles", added=len(result.added), changed=len(result.changed))
    return jsonify(
        ok=True,
        mapping=_rows(result.mapping),
        added=result.added,
        changed=result.changed,
        skipped=result.skipped,
        employees=[e.as_json() for e in found],
    )


@bp.post("/app/api/pbx-key/reveal")
@api(admin=True)
def reveal_key(viewer: Viewer) -> Response:
    _audit(viewer, "pbx key shown")
    return jsonify(ok=True, key=actions.reveal_key(viewer.member_id))


@bp.post("/app/api/pbx-key/rotate")
@api(admin=True)
def rotate_key(viewer: Viewer) -> Response:
    if _body().get("confirm") is not True:
        raise actions.Refused.one("confirm", messages.confirm_required())
    key = actions.rotate_key(viewer.member_id)
    _audit(viewer, "pbx key rotated")
    return jsonify(ok=True, key=key, **page_state(viewer))


@bp.post("/app/api/calls/<public_id>/deliver-again")
@api(admin=True)
def deliver_again(viewer: Viewer, public_id: str) -> Response:
    with get_db().write() as session:
        portal = _find(session, viewer.member_id)
        outcome = journal.requeue(session, portal.id, public_id, now=utcnow())
    if outcome == "not_found":
        return _error("not_found", messages.call_not_found(), 404)
    if outcome == "not_failed":
        return _error("not_failed", messages.not_failed(), 409)
    _audit(viewer, "call requeued", call=public_id)
    return jsonify(ok=True, id=public_id, state="queued")


@bp.post("/app/api/calls/<public_id>/events/<int:event_id>/deliver-again")
@api(admin=True)
def deliver_event_again(viewer: Viewer, public_id: str, event_id: int) -> Response:
    """One failed event of a call back in the outbox (journal.requeue_event): `{"ok", "id",
    "event", "state": "queued"}`; 404 when the portal's call has no such event, 409 when the
    event has not failed."""
    with get_db().write() as session:
        portal = _find(session, viewer.member_id)
        outcome = journal.requeue_event(session, portal.id, public_id, event_id, now=utcnow())
    if outcome == "not_found":
        return _error("not_found", messages.event_not_found(), 404)
    if outcome == "not_failed":
        return _error("not_failed", messages.event_not_failed(), 409)
    _audit(viewer, "event requeued", call=public_id, event_id=event_id)
    return jsonify(ok=True, id=public_id, event=event_id, state="queued")


@bp.post("/app/api/calls/deliver-all-failed")
@api(admin=True)
def deliver_all_failed(viewer: Viewer) -> Response:
    """Every failed call of the portal back in the outbox, each at most once (journal.py);
    needs `{"confirm": true}`; answers `{"ok", "count", "message"}`."""
    if _body().get("confirm") is not True:
        raise actions.Refused.one("confirm", messages.confirm_redeliver())
    with get_db().write() as session:
        portal = _find(session, viewer.member_id)
        count = journal.requeue_failed(session, portal.id, now=utcnow())
    _audit(viewer, "failed calls requeued", count=count)
    return jsonify(ok=True, count=count, message=messages.requeued_failed(count))


@bp.post("/app/api/reauthorize")
@api(admin=True)
def reauthorize(viewer: Viewer) -> Response:
    """A one-time link (ten minutes) to Bitrix24's authorisation page (portals/reauth.py)."""
    url = authorization_url(current_store(), viewer.member_id)
    if url is None:
        return _error("not_installed", str(messages.NOT_INSTALLED), 403)
    _audit(viewer, "re-authorisation link made")
    return jsonify(ok=True, url=url)


# --- click-to-call and callback; external lines --------------------------------------------------


@bp.post("/app/api/originate-secret/reveal")
@api(admin=True)
def reveal_originate_secret(viewer: Viewer) -> Response:
    """The portal's originate secret (made now if it has none yet): `{"ok", "secret"}`."""
    secret = actions.reveal_originate_secret(viewer.member_id)
    _audit(viewer, "originate secret shown")
    return jsonify(ok=True, secret=secret)


@bp.post("/app/api/originate-secret/rotate")
@api(admin=True)
def rotate_originate_secret(viewer: Viewer) -> Response:
    """A new originate secret; needs `{"confirm": true}` (the PBX must be given it, and
    webhooks signed with the old one fail its verification): `{"ok", "secret", ...state}`."""
    if _body().get("confirm") is not True:
        raise actions.Refused.one("confirm", messages.confirm_secret_rotation())
    secret = actions.rotate_originate_secret(viewer.member_id)
    _audit(viewer, "originate secret rotated")
    return jsonify(ok=True, secret=secret, **page_state(viewer))


@bp.post("/app/api/originate/test")
@api(admin=True)
def send_test_call(viewer: Viewer) -> Response:
    """Send the PBX a signed `call.test` webhook now (bounded by the sender: 8 s, 9 s at worst)
    and say what it answered: `{"ok": true, "answer": {"ok", "status", "seconds", "body",
    "error_code", "text"}}`; `answer.ok` is the PBX's acceptance. Not sent, with Retry-After
    (originate/trials.py): 429 `test_call_running` while this portal's previous test call runs,
    429 `test_calls_limited` past trials.PER_PORTAL_PER_MINUTE, 503 `test_calls_busy` while
    trials.AT_ONCE test calls of any portals are in flight in this process."""
    phone_number = actions.check_test_number(_body().get("phone_number"))
    running = _trials()
    refused = running.begin(viewer.member_id)
    if refused is not None:
        log.info("test call refused", member_id=viewer.member_id, reason=refused.reason)
        return _test_refused(refused)
    try:
        answer = _send_test(viewer, phone_number)
    finally:
        running.end(viewer.member_id)
    _audit(viewer, "test call sent", accepted=answer.ok, status=answer.status,
           error_code=answer.error_code)  # fmt: skip
    return jsonify(
        ok=True,
        answer={
            "ok": answer.ok,
            "status": answer.status,
            "seconds": round(answer.seconds, 3),
            "seconds_text": messages.seconds(answer.seconds),
            "body": answer.body[: originations.MAX_BODY],
            "error_code": answer.error_code,
            "text": messages.test_answer(
                answer.ok, answer.status, answer.seconds, answer.error_code, answer.error
            ),
        },
    )


def _trials() -> trials.Trials:
    """This app's (this process's) test calls in flight, counted in its limiter's storage."""
    found = current_app.extensions.get("b24app.test_calls")
    if found is None:
        made = trials.Trials(current_app.extensions["b24app.limiter"].limiter)
        found = current_app.extensions.setdefault("b24app.test_calls", made)  # one, if raced
    return cast(trials.Trials, found)


_REFUSED = {  # trials.Refused.reason: the answer's code and status
    "running": ("test_call_running", 429),
    "limited": ("test_calls_limited", 429),
    "busy": ("test_calls_busy", 503),
}


def _test_refused(refused: trials.Refused) -> Response:
    code, status = _REFUSED[refused.reason]
    text = messages.test_call_refused(
        refused.reason, refused.retry_after, trials.PER_PORTAL_PER_MINUTE
    )
    response = _error(code, text, status)
    response.headers["Retry-After"] = str(refused.retry_after)
    return response


def _send_test(viewer: Viewer, phone_number: str) -> sender.TestAnswer:
    """originate/sender.py `send_test` (it never raises)."""
    return sender.send_test(
        current_store(), viewer.member_id, user_id=viewer.user_id, phone_number=phone_number
    )


@bp.get("/app/api/originations")
@api(admin=True)
def list_originations(viewer: Viewer) -> Response:
    """The latest click-to-call and callback requests to the PBX (originations.py):
    `{"ok", "originations": [...]}`."""
    limit = request.args.get("limit", type=int) or originations.DEFAULT_LIMIT
    with get_db().read() as session:
        portal = _find(session, viewer.member_id)
        tz = zone(portal.settings.timezone)
        rows = originations.recent(session, portal.id, limit)
        described = [originations.describe(row, tz=tz) for row in rows]
    return jsonify(ok=True, originations=described)


@bp.get("/app/api/lines")
@api(admin=False)
def list_lines(viewer: Viewer) -> Response:
    """The portal's external lines of this application, asked of Bitrix24 now
    (telephony.externalLine.get): `{"ok", "lines": [{"NUMBER", "NAME", "CRM_AUTO_CREATE"}]}`;
    502 with the reason when Bitrix24 cannot be asked."""
    found = lines.listed(current_store(), viewer.member_id)
    return jsonify(ok=True, lines=[_line(line) for line in found])


@bp.post("/app/api/lines")
@api(admin=True)
def add_line(viewer: Viewer) -> Response:
    """Add an external line (`{"NUMBER", "NAME"}`; telephony.externalLine.add): `{"ok",
    "added", "message", "lines"}`; `added` false when the portal had it already; 422 naming
    `line_number` or `line_name` for a value b24app refuses."""
    body = _body()
    number, added = actions.add_line(viewer.member_id, body.get("NUMBER"), body.get("NAME"))
    _audit(viewer, "line added" if added else "line existed", line=number)
    found = lines.listed(current_store(), viewer.member_id)
    message = messages.line_added(number) if added else messages.line_exists(number)
    return jsonify(ok=True, added=added, message=message, lines=[_line(x) for x in found])


def _line(line: lines.Line) -> dict[str, str]:
    return {"NUMBER": line.NUMBER, "NAME": line.NAME, "CRM_AUTO_CREATE": line.CRM_AUTO_CREATE}
