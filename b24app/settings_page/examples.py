"""Ready-to-paste examples for sending a finished call: curl, and an Asterisk hangup handler.

The key appears as KEY_PLACEHOLDER until the admin asks to see it; the page then puts the real
key in, so what is copied works as is. Field names are PRODUCT.md's (Bitrix24's own plus
PBX_CALL_ID). The Asterisk example:
- runs as a hangup handler (`CHANNEL(hangup_handler_push)`), so it reports every call, answered
  or not, once the channel hangs up;
- sends `DURATION=${ANSWEREDTIME}` (talk time; `${CDR(billsec)}` is the same on older
  Asterisk), or 0 when it is empty (nobody answered; the API requires DURATION),
  `STATUS_CODE=${DIALSTATUS}` (the intake maps ANSWER/NOANSWER/BUSY/... to
  Bitrix24's codes), `PBX_CALL_ID=${UNIQUEID}` (a repeat is recognised and not sent twice);
- passes values through URIENCODE (CURL()); the System(curl) variant filters the caller's
  number, which comes from outside and must never reach a shell unfiltered.
"""

from __future__ import annotations

from flask_babel import gettext as _

KEY_PLACEHOLDER = "YOUR_PBX_KEY"  # the page puts the real key in once it is shown
# Asterisk leaves ANSWEREDTIME empty when nobody answered; the API requires DURATION: send 0.
DURATION = "${IF(${ISNULL(${ANSWEREDTIME})}?0:${ANSWEREDTIME})}"


# the events of a call, each POSTed to base_url + its name (PRODUCT.md "The whole call")
EVENTS = ("start", "ring", "answer", "finish", "record")


def base_url(public_url: str) -> str:
    """`{PUBLIC_URL}/pbx/v1/calls/`: the events' endpoints are this plus the event's name."""
    return f"{public_url.rstrip('/')}/pbx/v1/calls/"


def endpoints(public_url: str) -> dict[str, str]:
    """Each event's address: {"start": ".../pbx/v1/calls/start", ..., "record": ...}."""
    return {event: base_url(public_url) + event for event in EVENTS}


def finish_url(public_url: str) -> str:
    return endpoints(public_url)["finish"]


def curl(url: str) -> str:
    answer = _('202 {"id": "…"}: stored; b24app finishes the call in Bitrix24 within seconds.')
    return f"""curl -sS -X POST '{url}' \\
  -H 'Authorization: Bearer {KEY_PLACEHOLDER}' \\
  -H 'Content-Type: application/json' \\
  -d '{{
    "PBX_CALL_ID": "1709884800.42",
    "USER_PHONE_INNER": "101",
    "PHONE_NUMBER": "+74951234567",
    "TYPE": 2,
    "CALL_START_DATE": "2026-03-08T10:20:30",
    "DURATION": 95,
    "STATUS_CODE": "ANSWER"
  }}'
# {answer}
"""


def asterisk(url: str) -> str:
    fields = (
        "PBX_CALL_ID=${URIENCODE(${UNIQUEID})}"
        "&USER_PHONE_INNER=${URIENCODE(${B24_INNER})}"
        "&PHONE_NUMBER=${URIENCODE(${CALLERID(num)})}"
        "&TYPE=${B24_TYPE}"
        "&CALL_START_DATE=${URIENCODE(${B24_START})}"
        f"&DURATION={DURATION}"
        "&STATUS_CODE=${DIALSTATUS}"
    )
    system = " ".join(
        [
            f"curl -s -m 10 -X POST '{url}'",
            f"-H 'Authorization: Bearer {KEY_PLACEHOLDER}'",
            "-d 'PBX_CALL_ID=${UNIQUEID}'",
            "-d 'USER_PHONE_INNER=${B24_INNER}'",
            "-d 'PHONE_NUMBER=${FILTER(0-9+,${CALLERID(num)})}'",
            "-d 'TYPE=${B24_TYPE}'",
            "-d 'CALL_START_DATE=${B24_START}'",
            f"-d 'DURATION={DURATION}'",
            "-d 'STATUS_CODE=${DIALSTATUS}' &",
        ]
    )
    said = {
        "title": _("extensions.conf: report every finished call to Bitrix24 through b24app."),
        "step1": _(
            "1. Where calls come in, remember what b24app needs and push the hangup handler "
            "(for outgoing calls use TYPE 1, the caller's extension as B24_INNER, and the "
            "dialled number as PHONE_NUMBER)."
        ),
        "inner": _("the extension that takes the call"),
        "step2": _("2. The hangup handler: one HTTP POST per call, with Asterisk's own CURL()."),
        "offset": _(
            "CALL_START_DATE has no offset: b24app reads it in the time zone set on this page."
        ),
        "system": _(
            "Asterisk without CURLOPT(httpheader): the same with System(curl), on one line. "
            "System() runs a shell, so the caller's number (it comes from outside) is filtered:"
        ),
    }
    return f"""; {said["title"]}
;
{_comment(said["step1"], ";    ", first="; ")}
[from-trunk]
exten => _X.,1,Set(__B24_TYPE=2)
 same => n,Set(__B24_INNER=101)  ; {said["inner"]}
 same => n,Set(__B24_START=${{STRFTIME(${{EPOCH}},,%Y-%m-%dT%H:%M:%S)}})
 same => n,Set(CHANNEL(hangup_handler_push)=b24app-hangup,s,1)
 same => n,Dial(PJSIP/101,30)
 same => n,Hangup()

{_comment(said["step2"], ";    ", first="; ")}
{_comment(said["offset"], ";    ", first=";    ")}
[b24app-hangup]
exten => s,1,Set(CURLOPT(httpheader)=Authorization: Bearer {KEY_PLACEHOLDER})
 same => n,Set(CURLOPT(httpheader)=Content-Type: application/x-www-form-urlencoded)
 same => n,Set(CURLOPT(conntimeout)=5)
 same => n,Set(B24_ANSWER=${{CURL({url},{fields})}})
 same => n,Return()

{_comment(said["system"], "; ", first="; ")}
; exten => s,1,System({system})
;  same => n,Return()
"""


def _comment(text: str, prefix: str, *, first: str, width: int = 78) -> str:
    """`text` as dialplan comment lines of at most `width` characters (a word longer than that
    stays whole)."""
    lines: list[str] = []
    line = first
    for word in text.split():
        if len(line) + len(word) > width and line.strip(" ;"):
            lines.append(line.rstrip())
            line = prefix
        line += word + " "
    lines.append(line.rstrip())
    return "\n".join(lines)
