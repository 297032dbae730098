"""Every sentence the page and its JSON answers say, in gettext form (both languages).

Errors from the shared validators (portals/settings.py, portals/mapping.py) are English for the
CLI; here they are said again in the page's language, from what the error is about (its field,
the value, the portal's currencies), not by translating their English text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from flask_babel import format_decimal, lazy_gettext
from flask_babel import gettext as _

from b24app.bitrix.safety import InvalidURL, parse_url
from b24app.portals.mapping import MappingError

ENTRY_REFUSED = {
    "missing_fields": lazy_gettext(
        "This page opens inside Bitrix24 only: the request lacks the fields Bitrix24 sends."
    ),
    "unknown_portal": lazy_gettext("The application is not installed on this Bitrix24."),
    "not_installed": lazy_gettext(
        "The application was removed from this Bitrix24. Install it again to use it."
    ),
    "wrong_application_token": lazy_gettext(
        "This request does not come from the installation of the application on this Bitrix24."
    ),
    "token_refused": lazy_gettext(
        "Bitrix24 did not confirm who opened the page. Close it and open the application again."
    ),
}

TOKEN_REFUSED = {
    "missing": lazy_gettext("The page is not signed in. Open the application again in Bitrix24."),
    "expired": lazy_gettext(
        "The page has been open too long and its session has expired. "
        "Open the application again in Bitrix24."
    ),
    "invalid": lazy_gettext(
        "The page's session is not valid. Open the application again in Bitrix24."
    ),
}

ADMINS_ONLY = lazy_gettext(
    "Only administrators of this Bitrix24 can change these settings. "
    "Ask an administrator if something needs to change."
)
NOT_INSTALLED = ENTRY_REFUSED["not_installed"]
BITRIX_UNREACHABLE = lazy_gettext(
    "Bitrix24 did not answer (%(code)s). Try again in a minute; if it keeps failing, check the "
    "portal's state below."
)


def currency_error(value: str, known: Sequence[str]) -> str:
    if not known:
        return _("Could not read this portal's currencies from Bitrix24. Try again later.")
    return _(
        "%(value)s is not a currency of this portal. Its currencies: %(known)s.",
        value=value.strip() or "—",
        known=", ".join(known),
    )


def setting_error(field: str, value: str, known_currencies: Sequence[str], detail: str = "") -> str:
    """A refused setting, said in the page's language (`detail`: the shared validator's English
    reason, for the settings whose reasons are several)."""
    if field == "currency":
        return currency_error(value, known_currencies)
    if field == "originate_url":
        return originate_url_error(value, detail)
    if field == "add_to_chat":
        return _("Choose whether calls are posted to the chat: on or off.")
    if field == "fallback_user_id":
        return _("Choose an employee of this portal (a Bitrix24 user id).")
    if field == "show_card":
        return _("Choose whether the call card is shown when a call starts: on or off.")
    if field == "timezone":
        return _(
            "%(value)s is not a time zone. Choose one from the list, for example Europe/Moscow.",
            value=value.strip() or "—",
        )
    return _("%(field)s is not a setting of this page.", field=field)


def originate_url_error(value: str, detail: str) -> str:
    """Why portals/settings.py refused an originate_url (`detail`: its English reason), said
    again from the address itself: not a plain URL, not https, or not a public address."""
    try:
        parts = parse_url(value.strip(), query=True)
    except InvalidURL:
        return _(
            "Enter the full address of your PBX's webhook, such as "
            "https://pbx.example.com/b24/originate: http:// or https://, a host, no spaces, no "
            "user:password@, no #fragment."
        )
    if parts.scheme != "https":
        return _(
            "The address must start with https://: the webhook carries phone numbers. Plain "
            "http:// works only where whoever runs b24app has opened it to private networks."
        )
    if "does not resolve" in detail:
        return _(
            "%(host)s was not found (the name does not resolve). Check the address.",
            host=parts.hostname,
        )
    return _(
        "%(host)s leads to a private or local network address; b24app sends webhooks to public "
        "addresses only. Enter your PBX's public address, or ask whoever runs b24app.",
        host=parts.hostname,
    )


def mapping_error(error: MappingError) -> str:
    """A refused mapping row or CSV, with its line number when it comes from a file."""
    if error.field == "header":
        text = _("The first line must be exactly: extension,user_id")
    elif error.field == "row":
        text = _("Each line needs exactly two columns: extension,user_id")
    elif error.field == "extension" and "twice" in error.message:
        text = _("This extension appears twice; each extension goes to one employee.")
    elif error.field == "extension":
        text = _("An extension is 1–32 characters: digits, letters and * # + . _ -")
    else:
        text = _("The employee must be a Bitrix24 user id (a positive whole number).")
    if error.line:
        return _("Line %(line)s: %(text)s", line=error.line, text=text)
    return text


def not_an_employee(user_id: int, line: int | None = None) -> str:
    text = _("User %(id)s is not an active employee of this portal.", id=user_id)
    if line:
        return _("Line %(line)s: %(text)s", line=line, text=text)
    return text


def nothing_to_import() -> str:
    return _("Choose a CSV file to import.")


def unknown_extension(extension: str) -> str:
    return _("Extension %(ext)s is not in the mapping.", ext=extension)


def confirm_required() -> str:
    return _("Confirm the new key first: the current key stops working within 5 seconds.")


def not_failed() -> str:
    return _("Only calls that failed can be delivered again.")


def call_not_found() -> str:
    return _("There is no such call on this portal.")


def event_not_found() -> str:
    return _("This call has no such event.")


def event_not_failed() -> str:
    return _("Only events that failed can be delivered again.")


def confirm_redeliver() -> str:
    return _("Confirm first: every failed call of this portal is queued to be sent again.")


def bad_cursor() -> str:
    return _("This page of the journal is no longer valid: open the first page again.")


def query_too_long(limit: int) -> str:
    return _("Search for at most %(count)s characters.", count=limit)


def requeued_failed(count: int) -> str:
    if not count:
        return _("No failed calls to deliver again.")
    return _("Failed calls queued to be sent again shortly: %(count)s.", count=count)


# --- the call journal ---------------------------------------------------------------------------

STATES = {
    "queued": lazy_gettext("Waiting"),
    "delivering": lazy_gettext("Sending"),
    "delivered": lazy_gettext("Delivered"),
    "failed": lazy_gettext("Failed"),
}

# Call.error_code (delivery/retry.py, delivery/params.py) → what it means for the admin.
PROBLEMS = {
    # said with what the delivery did (user_not_found) wherever the call is known
    "USER_NOT_FOUND": lazy_gettext(
        "Bitrix24 has no active employee for the call's USER_ID or extension. Such calls go to "
        "the fallback employee when one is set and active: choose one (or map the extension to "
        "an employee), then deliver the call again."
    ),
    "NO_USER": lazy_gettext(
        "The call names no employee and no fallback employee is set. Set one in Defaults, then "
        "deliver it again."
    ),
    "CALL_NOT_FOUND": lazy_gettext(
        "Bitrix24 does not know this call: it was never registered, was registered by another "
        "application, or was already finished."
    ),
    "BAD_TYPE": lazy_gettext("Bitrix24 refused the call's type (1–5 are allowed)."),
    "BAD_CALL_START_DATE": lazy_gettext("Bitrix24 refused the call's start time."),
    "BAD_PHONE_NUMBER": lazy_gettext("Bitrix24 refused the call's phone number."),
    "BAD_CALL_ID": lazy_gettext("Bitrix24 refused the call's CALL_ID."),
    "OUTCOME_UNKNOWN": lazy_gettext(
        "Bitrix24 did not answer in time; the call is checked in its statistics before it is "
        "sent again, so it is never finished twice."
    ),
    "QUERY_LIMIT_EXCEEDED": lazy_gettext("Bitrix24 asked to slow down; trying again shortly."),
    "OPERATION_TIME_LIMIT": lazy_gettext("Bitrix24 asked to slow down; trying again shortly."),
    "NEEDS_REAUTH": lazy_gettext(
        "The application's access to the portal has lapsed: re-authorise it (see Health)."
    ),
    "PAYMENT_REQUIRED": lazy_gettext("The application's paid period on this portal has expired."),
    "ACCESS_DENIED": lazy_gettext("REST API access is denied on this portal (plan or rights)."),
    "UNINSTALLED": lazy_gettext("The application was removed from the portal."),
    "PORTAL_DELETED": lazy_gettext("The portal was deleted or closed."),
    "insufficient_scope": lazy_gettext(
        "The application lacks the telephony permission on this portal; reinstall it."
    ),
    "INTERNAL_SERVER_ERROR": lazy_gettext("Bitrix24 had an internal error; trying again."),
    "NOT_SENT": lazy_gettext("Not sent: the portal failed just before; trying again."),
    "INTERNAL": lazy_gettext("An unexpected error in the delivery; trying again."),
    # the whole call's own (delivery/lifecycle.py)
    "NO_START": lazy_gettext(
        "No start arrived for this call within an hour, and the finish does not say enough to "
        "register it: Bitrix24 has no call to show or finish."
    ),
    "REGISTER_UNCERTAIN": lazy_gettext(
        "Bitrix24 may have registered this call without our learning its CALL_ID; it was not "
        "registered again, so as not to make a second call. Deliver it again to register it "
        "anyway."
    ),
    "NOT_FINISHED": lazy_gettext(
        "The call's finish failed, so Bitrix24 has no finished call to attach the recording to."
    ),
    "NO_FINISH": lazy_gettext(
        "No finish arrived for this call within 24 hours; the recording was not attached."
    ),
    "NO_AUDIO": lazy_gettext(
        "The recording was not downloaded from the PBX within 25 hours, so it was not attached."
    ),
    "NOT_REGISTERED": lazy_gettext(
        "The call's registration in Bitrix24 failed (see its first event), so this event had no "
        "call to go to."
    ),
    # our own refusals and failed connections to the portal (bitrix/client.py, retry.py)
    "UNSAFE_ADDRESS": lazy_gettext(
        "The portal's address leads to a private or local network, which b24app's address rules "
        "forbid: nothing was sent."
    ),
    "BAD_UPLOAD_URL": lazy_gettext(
        "Bitrix24 gave an upload address off the portal's own address; b24app's address rules "
        "refused to send the recording there."
    ),
    "BAD_REDIRECT": lazy_gettext(
        "The portal's address redirected somewhere unexpected; b24app did not follow: nothing "
        "was sent."
    ),
    "TIMED_OUT": lazy_gettext("Bitrix24 did not answer in time."),
    "CUT_OFF": lazy_gettext("The connection to Bitrix24 broke off before its answer."),
    "UNREADABLE_ANSWER": lazy_gettext("Bitrix24's answer could not be read (it was not its JSON)."),
}

# CallRecording.error_code (delivery/recordings.py): the download from the PBX's address, or a
# file the PBX sent; whose problem it is, in plain words.
RECORDING_PROBLEMS = {
    "NOT_AUDIO": lazy_gettext(
        "What the PBX gave is not an mp3 or wav recording (judged by its content): check what "
        "the PBX's recording server serves at RECORD_URL."
    ),
    "TOO_LARGE": lazy_gettext(
        "The recording is larger than b24app accepts (its B24APP_RECORD_MAX_BYTES setting, made "
        "by whoever runs b24app)."
    ),
    "PORTAL_FULL": lazy_gettext(
        "There was no room for it: this portal's recordings waiting for Bitrix24 filled the room "
        "b24app keeps for them (B24APP_RECORD_PORTAL_BYTES) for 24 hours."
    ),
    "BAD_URL": lazy_gettext(
        "The PBX's RECORD_URL is not a usable http or https address, so it was not downloaded."
    ),
    "ADDRESS_REFUSED": lazy_gettext(
        "The PBX's RECORD_URL leads to a private or local network address, which b24app's address "
        "rules forbid (allowed only with B24APP_RECORD_ALLOW_PRIVATE=1 on a trusted network)."
    ),
    "TOO_MANY_REDIRECTS": lazy_gettext(
        "The PBX's recording server redirected the download more times than b24app follows."
    ),
    "NO_CONNECTION": lazy_gettext(
        "b24app could not connect to the PBX's recording server (its name did not resolve or it "
        "refused the connection) during 24 hours of tries."
    ),
    "TIMED_OUT": lazy_gettext(
        "The PBX's recording server did not send the recording in time during 24 hours of tries."
    ),
    "CUT_OFF": lazy_gettext(
        "The PBX's recording server broke the download off during 24 hours of tries."
    ),
}

# codes of b24app's own, not Bitrix24's: an unknown one of these is shown neutrally
OWN_CODES = frozenset(
    {
        *RECORDING_PROBLEMS,
        "STOPPED",
        "NO_ANSWER",
        "UNKNOWN",
        "PORTAL_PAUSED",
        "NO_START",
        "NO_FINISH",
        "NOT_FINISHED",
        "NO_AUDIO",
        "REGISTER_UNCERTAIN",
        "NOT_REGISTERED",
    }
)

_HTTP_CODE = re.compile(r"HTTP_(\d{3})")  # delivery/recordings.py: the recording server's status

STATUS_CODES = {
    "200": lazy_gettext("answered"),
    "304": lazy_gettext("missed"),
    "603": lazy_gettext("declined"),
    "603-S": lazy_gettext("cancelled"),
    "403": lazy_gettext("forbidden"),
    "404": lazy_gettext("wrong number"),
    "486": lazy_gettext("busy"),
    "484": lazy_gettext("destination unavailable"),
    "503": lazy_gettext("destination unavailable"),
    "480": lazy_gettext("temporarily unavailable"),
    "402": lazy_gettext("insufficient funds"),
    "423": lazy_gettext("blocked"),
    "OTHER": lazy_gettext("other"),
}


USER_NOT_FOUND = "USER_NOT_FOUND"  # delivery/retry.py


def user_not_found(state: str, *, tried_fallback: bool, fallback_set: bool) -> str:
    """Why Bitrix24 refused the call's employee, as the delivery acts on it (deliver.py): with a
    fallback employee set, a call whose employee (USER_ID, or an extension nobody has) is not an
    active employee goes to the fallback employee; it fails only when there is none, or when
    the fallback employee is not active either (`tried_fallback`: Call.use_fallback_user)."""
    if state != "failed":
        return _(
            "Bitrix24 has no active employee for the call's USER_ID or extension; it is sent to "
            "the fallback employee instead."
        )
    if tried_fallback:
        return _(
            "Neither the call's employee (its USER_ID or extension) nor the fallback employee is "
            "an active employee in Bitrix24. Choose an active fallback employee, or map the "
            "extension to an active employee, then deliver the call again."
        )
    if fallback_set:
        return _(
            "Bitrix24 had no active employee for the call's USER_ID or extension, and no "
            "fallback employee was set then. One is set now: deliver the call again and it goes "
            "to the fallback employee (or map the extension to an employee first)."
        )
    return _(
        "Bitrix24 has no active employee for the call's USER_ID or extension, and no fallback "
        "employee is set. Choose a fallback employee (for calls to unknown extensions) or map "
        "the extension to an employee, then deliver the call again."
    )


def problem(code: str | None, text: str | None) -> str:
    """Plain words for a call's or an event's error (`code` Call/CallEvent.error_code, `text`
    its error): ours for codes we know; for another code, Bitrix24's text when the code is
    Bitrix24's, else "Failed: <text>"; "" without either."""
    if code and code in PROBLEMS:
        return str(PROBLEMS[code])
    if code and (code in RECORDING_PROBLEMS or _HTTP_CODE.fullmatch(code)):
        return recording_problem(code, text)
    if not text:
        return ""
    if code and code not in OWN_CODES and not _HTTP_CODE.fullmatch(code):
        return _("Bitrix24 answered: %(text)s", text=text)
    return _("Failed: %(text)s", text=text)


def outcome(
    state: str,
    code: str | None,
    text: str | None,
    retry_at: str | None,
    *,
    finished: bool = True,
    reason: str | None = None,
) -> str:
    """One line for the journal: what happened to the call (`finished`: the PBX said it ended;
    `reason`: why it failed when the caller knows better than `problem(code, text)`, e.g. a
    recording's download)."""
    if state == "delivered":
        if not finished:
            return _("Bitrix24 has every event so far; the call has not ended yet.")
        return _("Finished in Bitrix24.")
    if state == "delivering":
        return _("Being sent to Bitrix24 now.")
    if state == "failed":
        return reason or problem(code, text) or failed()
    if code or text:
        return _(
            "Will try again at %(time)s. %(problem)s",
            time=retry_at,
            problem=reason or problem(code, text),
        )
    return _("Waiting to be sent to Bitrix24.")


# --- the call's timeline: its events and its recording ------------------------------------------

EVENT_KINDS = {
    "start": lazy_gettext("Call started"),
    "ring": lazy_gettext("Ringing"),
    "answer": lazy_gettext("Answered"),
    "finish": lazy_gettext("Call ended"),
    "record": lazy_gettext("Recording"),
}

EVENT_STATES = {
    "queued": STATES["queued"],
    "delivered": STATES["delivered"],
    "failed": STATES["failed"],
}

RECORDING_STATES = {
    "fetching": lazy_gettext("Downloading from the PBX"),
    "stored": lazy_gettext("Stored, to be attached to the call"),
    "attached": lazy_gettext("Attached to the call in Bitrix24"),
    "failed": lazy_gettext("Failed"),
}

# TYPE (telephony-external-call-register.md)
CALL_TYPES = {
    "1": lazy_gettext("outgoing"),
    "2": lazy_gettext("incoming"),
    "3": lazy_gettext("incoming, redirected"),
    "4": lazy_gettext("callback"),
    "5": lazy_gettext("information call"),
}

CRM_TYPES = {
    "CONTACT": lazy_gettext("Contact"),
    "COMPANY": lazy_gettext("Company"),
    "LEAD": lazy_gettext("Lead"),
}


def N_(text: str) -> str:  # gettext's own name for "mark for translation"
    """Marks a message for the catalogues (pybabel's default keywords) without translating it."""
    return text


# Event notes as the delivery writes them (delivery/lifecycle.py, deliver.py): said again in the
# page's language; a note not listed here is shown as written.
# the notes of an event that waits (delivery/lifecycle.py WAITING_FOR_*): true only while queued
WAITING_NOTES = frozenset(
    (
        N_("Waiting for the call's start (its CALL_ID) before it can be sent."),
        N_("Waiting for the call's finish: Bitrix24 attaches recordings to finished calls."),
        N_("Waiting for the recording to be downloaded."),
    )
)
NOTES = WAITING_NOTES | frozenset(
    (
        N_("Nothing to register: the call carries Bitrix24's own CALL_ID."),
        N_("Nothing to register: the call was registered already."),
        N_("Arrived after the call was finished in Bitrix24 (which hides the card): nothing sent."),
        N_("Arrived after the answer by one of its employees: nothing shown."),
        N_("The card was already where this event puts it: nothing to send."),
        N_("Attached to the call in Bitrix24."),
        N_("Settled: Bitrix24's statistics show the call already finished."),
    )
)


def note(text: str | None) -> str:
    """An event's note in the page's language when it is one of NOTES, else as written."""
    if not text:
        return ""
    return _(text) if text in NOTES else text


def event_details(kind: str, request: Mapping[str, Any]) -> list[str]:
    """What an event said, in a few words each (the employees of a ring or answer are named by
    the page, which knows their names)."""
    said: list[str] = []
    if request.get("PHONE_NUMBER"):
        said.append(_("Number: %(number)s", number=request["PHONE_NUMBER"]))
    call_type = str(request.get("TYPE") or "")
    if call_type in CALL_TYPES:
        said.append(str(CALL_TYPES[call_type]))
    if request.get("LINE_NUMBER"):
        said.append(_("Line: %(line)s", line=request["LINE_NUMBER"]))
    if request.get("CALL_START_DATE"):
        said.append(_("Started at: %(time)s", time=request["CALL_START_DATE"]))
    if kind == "start" and request.get("CALL_ID"):
        said.append(_("Bound to Bitrix24's call %(id)s", id=request["CALL_ID"]))
    if request.get("DURATION") is not None:
        said.append(_("Duration: %(seconds)s s", seconds=request["DURATION"]))
    code = str(request.get("STATUS_CODE") or "")
    if code:
        said.append(_("Status: %(code)s %(text)s", code=code, text=STATUS_CODES.get(code, "")))
    if request.get("COST") is not None:
        cost = f"{request['COST']} {request.get('COST_CURRENCY') or ''}".strip()
        said.append(_("Cost: %(cost)s", cost=cost))
    if kind == "record":
        said.append(
            _("Downloaded by b24app from the PBX's address")
            if request.get("RECORD_URL")
            else _("Sent by the PBX as a file")
        )
        if request.get("FILENAME"):
            said.append(_("File: %(name)s", name=request["FILENAME"]))
    return [line.strip() for line in said]


def size(size_bytes: int) -> str:
    """A file's size in words: 812 B, 95.3 KB, 1.2 MB (the page's decimal separator)."""
    if size_bytes < 1024:
        return _("%(size)s B", size=format_decimal(size_bytes))
    if size_bytes < 1024 * 1024:
        return _("%(size)s KB", size=format_decimal(round(size_bytes / 1024, 1)))
    return _("%(size)s MB", size=format_decimal(round(size_bytes / 1024 / 1024, 1)))


def recording_problem(code: str | None, text: str | None) -> str:
    """Why a recording failed (`code` CallRecording.error_code: delivery/recordings.py's, e.g.
    HTTP_403, NOT_AUDIO, ADDRESS_REFUSED; or the delivery's NO_FINISH, NO_AUDIO), saying whose
    problem it is; an unknown code reads "Failed: <text>"."""
    if code and code in RECORDING_PROBLEMS:
        return str(RECORDING_PROBLEMS[code])
    status = _HTTP_CODE.fullmatch(code or "")
    if status:
        return http_problem(int(status.group(1)))
    if code and code in PROBLEMS:
        return str(PROBLEMS[code])
    return _("Failed: %(text)s", text=text) if text else _("Failed.")


def http_problem(status: int) -> str:
    """The PBX's recording server answered `status` (not 200) to the download."""
    if status in (401, 403):
        return _(
            "The PBX's recording server refused to give the recording (HTTP %(status)s): its "
            "RECORD_URL must be downloadable without signing in (a signed link works).",
            status=status,
        )
    if status in (404, 410):
        return _(
            "The PBX's recording server has no recording at RECORD_URL (HTTP %(status)s).",
            status=status,
        )
    if status >= 500:
        return _(
            "The PBX's recording server kept failing (HTTP %(status)s) during 24 hours of tries.",
            status=status,
        )
    return _(
        "The PBX's recording server answered HTTP %(status)s instead of the recording.",
        status=status,
    )


# --- click-to-call and callback: the originate webhook -------------------------------------------


def confirm_secret_rotation() -> str:
    return _(
        "Confirm the new secret first: webhooks signed with the current one will fail your "
        "PBX's verification."
    )


def seconds(value: float) -> str:
    """A duration in seconds with two decimals at most, in the page's number format."""
    return str(format_decimal(round(value, 2)))


def test_answer(
    ok: bool, status: int | None, took: float, error_code: str | None, error: str | None
) -> str:
    """What became of a test webhook (originate/webhooks.py TestAnswer), for the admin: the
    PBX's answer, or why it could not be sent; always about the PBX, never Bitrix24."""
    if ok:
        return _(
            "Your PBX answered HTTP %(status)s in %(seconds)s s: it accepted the test call.",
            status=status,
            seconds=seconds(took),
        )
    if error_code == "refused":
        return _(
            "Your PBX answered HTTP %(status)s in %(seconds)s s: it did not accept the webhook. "
            "Check how it verifies the signature and that it has the current secret.",
            status=status,
            seconds=seconds(took),
        )
    if error_code == "redirect":
        return _(
            "Your PBX answered with a redirect (HTTP %(status)s); b24app does not follow "
            "redirects. Enter the address the redirect leads to.",
            status=status or "3xx",
        )
    if error_code == "timeout":
        return _("Your PBX did not answer within %(seconds)s s.", seconds=seconds(took))
    if error_code == "connection":
        return _(
            "Could not connect to your PBX: the connection was refused, or its name does not "
            "resolve."
        )
    if error_code == "unsafe_address":
        return _(
            "Not sent: the address leads to a private or local network, which b24app's address "
            "rules forbid."
        )
    if error_code == "no_url":
        return _("Not sent: no originate URL is set. Save your PBX's webhook address first.")
    return _("Not sent: %(error)s", error=error or "—")


def test_call_refused(reason: str, retry_after: int, per_minute: int) -> str:
    """Why a test call was not sent now (originate/trials.py, ratelimit.TEST_CALL_LIMIT)."""
    if reason == "running":
        return _(
            "A test call to your PBX is already running. Wait for its answer: at most "
            "%(seconds)s s.",
            seconds=retry_after,
        )
    if reason == "busy":
        return _(
            "b24app is sending other portals' test calls right now. Try again in a few seconds."
        )
    return _(
        "Too many test calls: at most %(count)s a minute. Try again in %(seconds)s s.",
        count=per_minute,
        seconds=retry_after,
    )


def test_number_error() -> str:
    return _("A phone number is at most 32 characters: digits, spaces and + ( ) - .")


ORIGINATION_KINDS = {
    "call.start": lazy_gettext("Click-to-call"),
    "callback.start": lazy_gettext("Callback"),
}

ORIGINATION_STATES = {
    "queued": STATES["queued"],
    "delivered": STATES["delivered"],
    "failed": STATES["failed"],
}


def origination_outcome(
    state: str,
    status: int | None,
    error: str | None,
    attempts: int,
    delivered_at: str | None,
) -> str:
    """One line on a request to the PBX (models.Origination): what the PBX answered, or why it
    was not delivered (`error`: the sender's reason in plain English, shown as written)."""
    if state == "delivered":
        return _(
            "Your PBX accepted it (HTTP %(status)s) at %(time)s.",
            status=status or "2xx",
            time=delivered_at or "—",
        )
    reason = pbx_reason(status, error)
    if state == "failed":
        return (
            _("Not delivered to your PBX: %(reason)s", reason=reason)
            if reason
            else _("Not delivered to your PBX.")
        )
    if attempts and reason:
        return _("Your PBX has not taken it yet (%(reason)s); trying again.", reason=reason)
    return _("Waiting to be sent to your PBX.")


def pbx_reason(status: int | None, error: str | None) -> str:
    """The PBX's HTTP status in words, else the sender's reason as written."""
    if status:
        return _("it answered HTTP %(status)s", status=status)
    return error or ""


def line_error(field: str) -> str:
    """A line number or name portals/lines.py refused (LineError.field NUMBER or NAME)."""
    if field == "NAME":
        return _("A line's name is at most 255 characters.")
    return _("A line number is 1–64 visible characters, such as 74951234567.")


def line_exists(number: str) -> str:
    return _("Line %(number)s already exists on this portal: nothing changed.", number=number)


def line_added(number: str) -> str:
    return _("Line %(number)s added.", number=number)


# --- health ---------------------------------------------------------------------------------------

PORTAL_LABELS = {
    "active": lazy_gettext("Connected"),
    "needs_reauth": lazy_gettext("Needs re-authorisation"),
    "payment_required": lazy_gettext("Payment required"),
    "access_denied": lazy_gettext("Access denied"),
    "portal_deleted": lazy_gettext("Portal deleted"),
    "uninstalled": lazy_gettext("Removed"),
}

PORTAL_STATES = {
    "active": lazy_gettext("The application can finish calls in this Bitrix24."),
    "needs_reauth": lazy_gettext(
        "The application's access has lapsed (its refresh token is gone or was refused)."
    ),
    "payment_required": lazy_gettext("The application's paid period has expired."),
    "access_denied": lazy_gettext("REST API access is denied for this portal."),
    "portal_deleted": lazy_gettext("The portal was deleted or closed."),
    "uninstalled": lazy_gettext("The application was removed from this portal."),
}

PAUSED_LABEL = lazy_gettext("Paused")
PAUSED_TEXT = lazy_gettext(
    "Bitrix24 has not answered since %(since)s (%(reason)s). Delivery is paused; the portal is "
    "checked every few seconds."
)
PAUSED_ACTION = lazy_gettext(
    "Nothing to do: %(count)s calls wait and are delivered as soon as Bitrix24 answers. None "
    "is lost or failed for waiting."
)

PAUSED_WAITING = lazy_gettext(
    "%(count)s calls wait and are delivered as soon as Bitrix24 answers; none is lost or failed "
    "for waiting."
)


def failed() -> str:
    return _("Failed.")


def failed_action(count: int, cause: str) -> str:
    """What Health asks of the admin when calls have failed (`cause`: the most common one's
    words), so it never says "Nothing to do" beside failures."""
    said = _(
        "Calls that failed: %(count)s. Fix the cause, then deliver them again (“Deliver all "
        "failed again…” in the journal).",
        count=count,
    )
    if not cause:
        return said
    most = _("Most often: %(cause)s", cause=cause)
    return f"{said} {most}"


PORTAL_ACTIONS = {
    "active": lazy_gettext("Nothing to do."),
    "needs_reauth": lazy_gettext(
        "Re-authorise the application (button below). Calls wait and are delivered afterwards. "
        "Reinstalling the application also works."
    ),
    "payment_required": lazy_gettext(
        "Renew the application's subscription in Bitrix24 Market (Applications → My "
        "applications). Calls wait and are delivered within a minute of the renewal."
    ),
    "access_denied": lazy_gettext(
        "Check that this Bitrix24 plan allows REST applications and that the application has its "
        "permissions; reinstalling it restores them."
    ),
    "portal_deleted": lazy_gettext("Nothing can be delivered to a deleted portal."),
    "uninstalled": lazy_gettext("Install the application again."),
}


def client_messages() -> dict[str, Any]:
    """What the page's script says, in the page's language."""
    return {
        "loading": _("Loading…"),
        "saved": _("Saved."),
        "copied": _("Copied."),
        "copy_failed": _("Select the text and press Ctrl+C to copy it."),
        "key_rotated": _("New key made. The old key no longer works: update your PBX."),
        "employees_failed": _("Could not load the employees from Bitrix24: %(error)s"),
        "no_employees": _("No active employees found."),
        "no_mapping": _("No extensions are mapped yet."),
        "no_match": _("Nothing matches the search."),
        "no_calls": _("No calls to show."),
        "show": _("Show"),
        "hide": _("Hide"),
        "extension": _("Extension"),
        "employee": _("Employee"),
        "edit": _("Change"),
        "remove": _("Remove"),
        "save": _("Save"),
        "cancel": _("Cancel"),
        "deliver_again": _("Deliver again"),
        "requeued": _("The call is queued and will be sent again shortly."),
        "event_requeued": _("The event is queued and will be sent again shortly."),
        "timeline": _("Timeline"),
        "timeline_of": _("Timeline of the call from %(number)s at %(time)s"),
        "bitrix_call_id": _("Bitrix24 CALL_ID: %(id)s"),
        "not_registered": _("Bitrix24 CALL_ID: not yet registered"),
        "crm": _("CRM: %(type)s %(id)s"),
        "recording": _("Recording: %(state)s"),
        "delivered_at": _("delivered %(time)s"),
        "line": _("line %(line)s"),
        "no_events": _("The PBX has sent no events for this call."),
        "removed": _("Extension %(ext)s removed."),
        "mapped": _("Extension %(ext)s now goes to %(name)s."),
        "imported": _("Imported: %(count)s extensions."),
        "from_profiles": _(
            "Taken from Bitrix24 profiles: %(added)s added, %(changed)s changed, "
            "%(skipped)s skipped."
        ),
        "profiles_skipped": _("Skipped (the same number in several profiles): %(list)s"),
        "user": _("User %(id)s"),
        "unknown_user": _("User %(id)s (not an active employee)"),
        "profile_extension": _("Profile: %(ext)s"),
        "employee_choose": _("— choose an employee —"),
        "no_fallback": _("— nobody (refuse such calls) —"),
        "error": _("Something went wrong: %(error)s"),
        "network": _("The application did not answer. Check the connection and try again."),
        "mapping_for": _("Extension %(ext)s"),
        "attempts": _("attempts: %(count)s"),
        "answer": _("Bitrix24's answer"),
        "delivery_details": _("Delivery details"),
        "duration_s": _("%(seconds)s s"),
        "secret_rotated": _(
            "New secret made. Webhooks are signed with it from now on: give it to your PBX."
        ),
        "sending_test": _("Sending a test call to your PBX…"),
        "pbx_body": _("Your PBX's answer"),
        "no_lines": _("This portal has no external lines of this application yet."),
        "lines_failed": _("Could not ask Bitrix24 for the lines: %(error)s"),
        "no_originations": _("No click-to-call or callback requests yet."),
        "bitrix_call": _("Bitrix24 CALL_ID %(id)s"),
        "callback_text": _("Text to say: %(text)s"),
    }
