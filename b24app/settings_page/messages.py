"""Every sentence the page and its JSON answers say, in gettext form (both languages).

Errors from the shared validators (portals/settings.py, portals/mapping.py) are English for the
CLI; here they are said again in the page's language, from what the error is about (its field,
the value, the portal's currencies), not by translating their English text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext

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


def setting_error(field: str, value: str, known_currencies: Sequence[str]) -> str:
    """A refused setting, said in the page's language."""
    if field == "currency":
        return currency_error(value, known_currencies)
    if field == "add_to_chat":
        return _("Choose whether calls are posted to the chat: on or off.")
    if field == "fallback_user_id":
        return _("Choose an employee of this portal (a Bitrix24 user id).")
    if field == "timezone":
        return _(
            "%(value)s is not a time zone. Choose one from the list, for example Europe/Moscow.",
            value=value.strip() or "—",
        )
    return _("%(field)s is not a setting of this page.", field=field)


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
    return _("Confirm the new key first: the current key stops working at once.")


def not_failed() -> str:
    return _("Only calls that failed can be delivered again.")


def call_not_found() -> str:
    return _("There is no such call on this portal.")


def confirm_redeliver() -> str:
    return _("Confirm first: every failed call of this portal is queued to be sent again.")


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
    "USER_NOT_FOUND": lazy_gettext(
        "Bitrix24 has no active employee for this call. Map the extension to an employee or set "
        "a fallback employee, then deliver it again."
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
}

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


def problem(code: str | None, text: str | None) -> str:
    """Plain words for a call's error: ours for codes we know, Bitrix24's text otherwise."""
    if code and code in PROBLEMS:
        return str(PROBLEMS[code])
    if text:
        return _("Bitrix24 answered: %(text)s", text=text)
    return ""


def outcome(state: str, code: str | None, text: str | None, retry_at: str | None) -> str:
    """One line for the journal: what happened to the call."""
    if state == "delivered":
        return _("Finished in Bitrix24.")
    if state == "delivering":
        return _("Being sent to Bitrix24 now.")
    if state == "failed":
        return problem(code, text) or _("Failed.")
    if code or text:
        return _(
            "Will try again at %(time)s. %(problem)s", time=retry_at, problem=problem(code, text)
        )
    return _("Waiting to be sent to Bitrix24.")


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
        "duration_s": _("%(seconds)s s"),
    }
