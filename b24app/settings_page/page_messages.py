"""Every word of the settings page's own screens, in the page's language, for its script.

The page is built in the browser (frontend/, on Bitrix24's UI kit); the server embeds these
strings as JSON in the page (`page_messages`, with messages.client_messages: what the script says
after a request), so both languages come from the same gettext catalogues as the JSON API's
answers (translations/). Keys are the script's names; `%(name)s` placeholders are filled in by
the script.
"""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_babel import pgettext

from b24app.settings_page import messages


def page_messages() -> dict[str, Any]:
    """{key: text} for the page's script (frontend/src/i18n.js `t`), in the page's language."""
    return {**_blocks(), **_changes(), **_journal(), **messages.client_messages()}


def _blocks() -> dict[str, str]:
    """The page's blocks, as they were in the server-rendered page (the same msgids)."""
    return {
        "title": _("b24app: telephony settings"),
        "heading": _("Telephony: b24app"),
        "lead": _(
            "Your phone system (PBX) tells b24app about each call as it happens (it "
            "starts, rings, is answered, ends, is recorded), and b24app shows it in "
            "Bitrix24 telephony: the call card, the call statistics, the CRM and the "
            "employee's chat."
        ),
        "readonly_title": _("View only."),
        "readonly_text": _(
            "Only administrators of this Bitrix24 can change these settings. Ask an "
            "administrator if something needs to change."
        ),
        "admin_unknown": _(
            "Bitrix24 did not say whether you are an administrator; if you are, open the "
            "application again."
        ),
        "health_title": _("Health"),
        "health_connection": _("Connection to Bitrix24"),
        "health_todo": _("What to do"),
        "reauth_make": _("Re-authorise the application"),
        "reauth_link": _("Open Bitrix24's authorisation page (valid 10 minutes)"),
        "health_last": _("Last successful delivery"),
        "none_yet": _("none yet"),
        "health_queued": _("Calls waiting to be sent"),
        "health_failed": _("Failed in the last 24 hours"),
        "connection_title": _("PBX connection"),
        "connection_hint": _(
            "Your PBX sends each event of a call to its own address (POST, the key in the "
            "Authorization header): the start, each ring, the answer, the finish and the "
            "recording. The finish alone is enough for a call in Bitrix24; the others "
            "show the call card while it rings and attach the recording."
        ),
        "endpoint_label": _("Base address of the call events"),
        "copy": _("Copy"),
        "event_start": _("The call started"),
        "event_ring": _("Employees' phones ring"),
        "event_answer": _("An employee answered"),
        "event_finish": _("The call ended"),
        "event_record": _("The call's recording"),
        "key_label": _("PBX key"),
        "show": _("Show"),
        "key_rotate": _("Make a new key…"),
        "key_hint": _("Keep the key secret: anyone who has it can report calls to your Bitrix24."),
        "made_on": _("Made on"),
        "key_question": _(
            "Make a new key? The current key stops working within 5 seconds: calls your PBX sends "
            "with it are refused until you put the new key in the PBX."
        ),
        "key_yes": _("Yes, make a new key"),
        "cancel": _("Cancel"),
        "examples": _("Examples"),
        "asterisk_tab": _("Asterisk hangup handler"),
        "curl_hint": _(
            "Send a test call from any computer. The key appears in the example once you "
            "press “Show”."
        ),
        "asterisk_hint": _(
            "Add to extensions.conf and run “dialplan reload”. Calls are reported when "
            "they hang up, answered or not."
        ),
        "originate_title": _("Click-to-call and callback"),
        "originate_hint": _(
            "When an employee clicks a phone number in Bitrix24, or a client asks for a "
            "callback in a CRM form, b24app sends your PBX a signed webhook at once. Your "
            "PBX rings the employee's extension, dials the number, and reports the call "
            "as usual: a start carrying Bitrix24's CALL_ID, then the finish."
        ),
        "originate_url_label": _("Your PBX's webhook address (originate URL)"),
        "save": _("Save"),
        "originate_url_hint": _(
            "https:// to a public address. Empty it and save to stop sending webhooks."
        ),
        "originate_url_unset": _("Not set: no webhooks are sent."),
        "secret_label": _("Signing secret"),
        "secret_rotate": _("Make a new secret…"),
        "secret_hint": _(
            "Your PBX checks each webhook's signature with this secret. Keep it secret: "
            "anyone who has it can make your PBX place calls."
        ),
        "secret_question": _(
            "Make a new secret? Your PBX must be given the new secret: from now on "
            "webhooks are signed with it, and a PBX still checking them with the old one "
            "refuses them."
        ),
        "secret_yes": _("Yes, make a new secret"),
        "secret_set": _("Set. Only administrators can see it."),
        "secret_not_made": _("Not made yet: it is made when an administrator first shows it."),
        "test_title": _("Send a test call"),
        "test_hint": _(
            "b24app sends your PBX a signed webhook of type call.test now and shows what "
            "it answers. Your PBX should verify it and answer 2xx; it may ring your "
            "extension, and must not report the call back."
        ),
        "test_number_label": _("Number to put in the test (optional)"),
        "pbx_answer": _("Your PBX's answer"),
        "verify_title": _("How your PBX verifies the webhooks"),
        "verify_text": _(
            "Each webhook is a JSON POST signed the Standard Webhooks way: the headers "
            "webhook-id, webhook-timestamp and webhook-signature (“v1,” and the base64 "
            "HMAC-SHA256 of id.timestamp.body made with the secret). Verify it with a "
            "Standard Webhooks library and refuse what does not verify or is more than 5 "
            "minutes old:"
        ),
        "verify_other": _("Go, Rust, Ruby, C#, Java, Elixir: %(where)s"),
        "field_type": _(
            "call.start: an employee clicked a number; callback.start: a client asked for "
            "a callback; call.test: this page's test."
        ),
        "field_call_id": _(
            "Bitrix24's id of the call: report the call with it (POST …/calls/start with "
            "CALL_ID), so Bitrix24 does not register it twice. A repeat carries the same "
            "webhook-id and CALL_ID: dial once."
        ),
        "field_phone": _("The number to dial."),
        "field_user": _(
            "The employee and their extension (from the extensions above, else their "
            "Bitrix24 profile): ring it first."
        ),
        "field_line": _(
            "The line to call from, the CRM record the number belongs to, the call list, "
            "and whether the click came from the mobile app."
        ),
        "field_text": _(
            "A callback only: what to say to the employee before the client is called, "
            "and the voice for it."
        ),
        "defaults_title": _("Defaults"),
        "currency_label": _("Currency of call costs"),
        "not_set": _("— not set —"),
        "currency_hint": _(
            "Used when the PBX sends a cost without a currency. The list is the portal's "
            "CRM currencies."
        ),
        "fallback_label": _("Employee for calls to unknown extensions"),
        "nobody": _("— nobody (refuse such calls) —"),
        "user": _("User %(id)s"),
        "timezone_label": _("The PBX's time zone"),
        "timezone_hint": _("Call start times sent without a UTC offset are read in this zone."),
        "add_to_chat_label": _("Post each finished call to the employee's chat"),
        "add_to_chat_hint": _("Unless the PBX says otherwise for a call (ADD_TO_CHAT)."),
        "show_card_label": _("Show the call card when a call starts"),
        "show_card_hint": _(
            "Bitrix24 opens the call card, with the caller's CRM details, for the "
            "employee the call goes to. Unless the PBX says otherwise for a call (SHOW)."
        ),
        "extensions_title": _("Extensions and employees"),
        "extensions_hint": _(
            "The PBX names the employee by extension (USER_PHONE_INNER). A mapped "
            "extension goes to its employee; an unmapped one is passed to Bitrix24, which "
            "looks for it in the employees' profiles."
        ),
        "search": _("Search"),
        "search_placeholder": _("Extension or name"),
        "from_profiles_button": _("Take extensions from Bitrix24 profiles"),
        "export_csv": _("Export CSV"),
        "import_csv": _("Import CSV…"),
        "import_hint": _(
            "CSV with the header extension,user_id. An import replaces the whole mapping, "
            "and only if every line is valid."
        ),
        "loading": _("Loading…"),
        "extension": _("Extension"),
        "employee": _("Employee"),
        "actions": _("Actions"),
        "add_extension": _("Add an extension"),
        "employee_choose": _("— choose an employee —"),
        "add": _("Add"),
        "lines_title": _("External lines"),
        "lines_hint": _(
            "The numbers your calls come in and go out on (LINE_NUMBER). Bitrix24 shows a "
            "call's line in its reports only for lines added here; a line first seen on a "
            "call is added by b24app itself."
        ),
        "line_number": _("Line number"),
        "line_name": _("Name"),
        "add_line": _("Add a line"),
        "originations_title": _("Requests to your PBX"),
        "originations_hint": _(
            "Click-to-call and callback requests from Bitrix24, newest first, and what "
            "your PBX answered to each."
        ),
        "refresh": _("Refresh"),
        "time": _("Time"),
        "request": _("Request"),
        "number": _("Number"),
        "your_pbx": _("Your PBX"),
        "journal_title": _("Call journal"),
        "show_latest": _("Latest"),
        "show_failed": pgettext("journal filter", "Failed"),
        "show_today": _("Today"),
        "redeliver_all": _("Deliver all failed again…"),
        "redeliver_question": _(
            "Deliver every failed call of this portal again? Each is sent at most once; a "
            "call that may already be in Bitrix24 is checked there first."
        ),
        "redeliver_yes": _("Yes, deliver them again"),
        "journal_hint": _(
            "Open a call to see its timeline: each event the PBX sent, in the order it "
            "arrived, and what became of it in Bitrix24."
        ),
        "call": _("Call"),
        "delivery": _("Delivery"),
    }


def _changes() -> dict[str, str]:
    """Confirmations and what a change did (issue 14: every change said and confirmable)."""
    return {
        "fallback_hint": _(
            "Gets the calls that name no employee, and the calls whose employee (an extension "
            "nobody has, or a USER_ID) is not an active employee in Bitrix24. With nobody chosen, "
            "such calls fail and the journal shows them."
        ),
        "reassign_title": _("Give extension %(ext)s to another employee?"),
        "reassign_question": _(
            "Extension %(ext)s goes to %(from)s now. From now on its calls go to %(to)s instead."
        ),
        "reassign_yes": _("Yes, give it to %(name)s"),
        "remove_title": _("Remove extension %(ext)s?"),
        "remove_question": _(
            "Calls to extension %(ext)s stop going to %(name)s. They go to the employee whose "
            "Bitrix24 profile has this extension, else to the fallback employee."
        ),
        "remove_yes": _("Yes, remove it"),
        "undo": _("Undo"),
        "restored": _("Extension %(ext)s is back: it goes to %(name)s."),
        "change_title": _("Change extension %(ext)s"),
        "import_title": _("Import %(file)s?"),
        "import_replaces": _(
            "The import replaces the whole mapping: %(count)s extensions afterwards."
        ),
        "import_added": _("Added: %(count)s"),
        "import_changed": _("Reassigned: %(count)s"),
        "import_removed": _("Removed: %(count)s"),
        "import_nothing": _("Nothing changes: the file holds the mapping as it is."),
        "import_bad": _(
            "The file cannot be imported: fix these lines and choose it again. Nothing was changed."
        ),
        "import_yes": _("Yes, replace the mapping"),
        "change_from_to": _("%(from)s → %(to)s"),
        "rotate_key_title": _("Make a new key?"),
        "rotate_secret_title": _("Make a new secret?"),
        "redeliver_title": _("Deliver all failed calls again?"),
        "close": _("Close"),
        "more": _("More"),
    }


def _journal() -> dict[str, str]:
    """The journal's search, pages, times and auto-refresh (issue 14 item 4)."""
    return {
        "show_waiting": pgettext("journal filter", "Waiting"),
        "journal_search": _("Number, extension or PBX_CALL_ID"),
        "search_by": _("Search by"),
        "by_any": _("Anything"),
        "by_phone": _("Phone number"),
        "by_extension": _("Extension"),
        "by_pbx_call_id": _("PBX_CALL_ID"),
        "auto_refresh": _("Refresh every 10 s"),
        "started": _("Started"),
        "times_in": _("Times in %(zone)s (the portal's time zone set in Defaults)."),
        "page_range": _("Calls %(from)s–%(to)s of %(total)s"),
        "next_page": _("Older calls"),
        "first_page": _("Newest calls"),
        "received_at": _("received by b24app %(time)s"),
        "details_own": _("b24app's record (as written)"),
    }
