"""PBX status values → the 13 STATUS_CODE values of `telephony.externalCall.finish`.

A PBX reports how a call ended in its own words: Asterisk's `DIALSTATUS`, an Asterisk CDR
`disposition`, a Q.850 cause (`HANGUPCAUSE`, FreeSWITCH `hangup_cause`), a SIP final response. The
finish page (telephony-external-call-finish.md) accepts only its own 13 codes, so the intake maps
every value here, in one table, before the call is stored. The table is documented, row for row,
in docs/pbx-status-codes.md (a test checks the two agree).

Rules:
- Lookup ignores case and surrounding whitespace; runs of inner whitespace count as one space
  (`" no  answer "` is the CDR disposition `NO ANSWER`).
- The 13 Bitrix24 codes map to themselves (so a stored, mapped call maps to itself again).
- Rows marked BY_DURATION mean "the call ended normally" without saying whether anyone answered
  (Q.850 16 normal clearing, FreeSWITCH NORMAL_CLEARING). They become 200 when DURATION > 0 and
  304 otherwise: Bitrix24's own default for a finish without STATUS_CODE.
- Every other row maps the status alone; DURATION never changes it. A missed call (NOANSWER) stays
  304 even with a DURATION > 0, because the PBX said nobody answered. PBXs should send the talk time
  (Asterisk `BILLSEC`, not `DURATION`, which includes ringing) as DURATION.
- Anything not in the table becomes OTHER, and the intake keeps the raw value in FAILED_REASON.
Numbers 1–127 are Q.850 causes; SIP final responses start at 200, so the two never overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# The finish page's STATUS_CODE values, in the page's order, with its meanings.
BITRIX_CODES: Final[dict[str, str]] = {
    "200": "successful call",
    "304": "missed call",
    "603": "declined",
    "603-S": "call cancelled",
    "403": "forbidden",
    "404": "wrong number",
    "486": "busy",
    "484": "destination unavailable",
    "503": "destination unavailable",
    "480": "temporarily unavailable",
    "402": "insufficient funds",
    "423": "blocked",
    "OTHER": "undefined",
}
OTHER: Final = "OTHER"
BY_DURATION: Final = "by DURATION"  # 200 if DURATION > 0, else 304


@dataclass(frozen=True)
class Row:
    """One native status: where it comes from, what it is called there, what it becomes."""

    source: str
    native: str
    code: str  # one of BITRIX_CODES, or BY_DURATION
    meaning: str


DIALSTATUS = "Asterisk DIALSTATUS"
CDR = "Asterisk CDR disposition"
Q850 = "Q.850 cause"
FREESWITCH = "Q.850 cause name (FreeSWITCH hangup_cause)"
SIP = "SIP response"

TABLE: Final[tuple[Row, ...]] = (
    # Asterisk Dial() result (${DIALSTATUS})
    Row(DIALSTATUS, "ANSWER", "200", "the callee answered"),
    Row(DIALSTATUS, "NOANSWER", "304", "the callee did not answer in time"),
    Row(DIALSTATUS, "BUSY", "486", "the callee was busy"),
    Row(DIALSTATUS, "CANCEL", "603-S", "the caller hung up before an answer"),
    Row(DIALSTATUS, "CONGESTION", "503", "no route or circuit: the destination is unavailable"),
    Row(DIALSTATUS, "CHANUNAVAIL", "480", "the callee's channel is unavailable (not registered)"),
    Row(DIALSTATUS, "DONTCALL", "603", "the callee chose 'do not call' (privacy manager)"),
    Row(DIALSTATUS, "TORTURE", "603", "the callee sent the caller to 'torture' (declined)"),
    Row(DIALSTATUS, "INVALIDARGS", OTHER, "Dial() was misconfigured on the PBX"),
    # Asterisk CDR disposition
    Row(CDR, "ANSWERED", "200", "the call was answered"),
    Row(CDR, "NO ANSWER", "304", "nobody answered"),
    Row(CDR, "BUSY", "486", "the callee was busy"),
    Row(CDR, "FAILED", "503", "the call could not be set up (no route, channel unavailable)"),
    Row(CDR, "CONGESTION", "503", "no route or circuit: the destination is unavailable"),
    # Q.850 / ISUP cause numbers (RFC 3398 §8.2.1 for the SIP equivalents)
    Row(Q850, "1", "404", "unallocated (unassigned) number"),
    Row(Q850, "2", "404", "no route to the specified transit network"),
    Row(Q850, "3", "404", "no route to destination"),
    Row(Q850, "16", BY_DURATION, "normal call clearing"),
    Row(Q850, "17", "486", "user busy"),
    Row(Q850, "18", "304", "no user responding"),
    Row(Q850, "19", "304", "no answer from user (user alerted)"),
    Row(Q850, "20", "480", "subscriber absent"),
    Row(Q850, "21", "603", "call rejected"),
    Row(Q850, "22", "404", "number changed"),
    Row(Q850, "27", "503", "destination out of order"),
    Row(Q850, "28", "484", "invalid number format (address incomplete)"),
    Row(Q850, "31", "480", "normal, unspecified"),
    Row(Q850, "34", "503", "no circuit/channel available"),
    Row(Q850, "38", "503", "network out of order"),
    Row(Q850, "41", "503", "temporary failure"),
    Row(Q850, "42", "503", "switching equipment congestion"),
    Row(Q850, "44", "503", "requested circuit/channel not available"),
    Row(Q850, "47", "503", "resource unavailable, unspecified"),
    Row(Q850, "52", "403", "outgoing calls barred"),
    Row(Q850, "54", "403", "incoming calls barred"),
    Row(Q850, "55", "403", "incoming calls barred within the closed user group"),
    Row(Q850, "57", "403", "bearer capability not authorised"),
    Row(Q850, "58", "503", "bearer capability not presently available"),
    Row(Q850, "87", "403", "user not member of the closed user group"),
    Row(Q850, "102", "304", "recovery on timer expiry (no answer in time)"),
    # The same causes by name, as FreeSWITCH and Asterisk's AST_CAUSE_* spell them
    Row(FREESWITCH, "UNALLOCATED_NUMBER", "404", "Q.850 1"),
    Row(FREESWITCH, "NO_ROUTE_TRANSIT_NET", "404", "Q.850 2"),
    Row(FREESWITCH, "NO_ROUTE_DESTINATION", "404", "Q.850 3"),
    Row(FREESWITCH, "NORMAL_CLEARING", BY_DURATION, "Q.850 16"),
    Row(FREESWITCH, "USER_BUSY", "486", "Q.850 17"),
    Row(FREESWITCH, "NO_USER_RESPONSE", "304", "Q.850 18"),
    Row(FREESWITCH, "NO_ANSWER", "304", "Q.850 19"),
    Row(FREESWITCH, "SUBSCRIBER_ABSENT", "480", "Q.850 20"),
    Row(FREESWITCH, "CALL_REJECTED", "603", "Q.850 21"),
    Row(FREESWITCH, "NUMBER_CHANGED", "404", "Q.850 22"),
    Row(FREESWITCH, "DESTINATION_OUT_OF_ORDER", "503", "Q.850 27"),
    Row(FREESWITCH, "INVALID_NUMBER_FORMAT", "484", "Q.850 28"),
    Row(FREESWITCH, "NORMAL_UNSPECIFIED", "480", "Q.850 31"),
    Row(FREESWITCH, "NORMAL_CIRCUIT_CONGESTION", "503", "Q.850 34"),
    Row(FREESWITCH, "NETWORK_OUT_OF_ORDER", "503", "Q.850 38"),
    Row(FREESWITCH, "NORMAL_TEMPORARY_FAILURE", "503", "Q.850 41"),
    Row(FREESWITCH, "SWITCH_CONGESTION", "503", "Q.850 42"),
    Row(FREESWITCH, "OUTGOING_CALL_BARRED", "403", "Q.850 52"),
    Row(FREESWITCH, "INCOMING_CALL_BARRED", "403", "Q.850 54"),
    Row(FREESWITCH, "RECOVERY_ON_TIMER_EXPIRE", "304", "Q.850 102"),
    Row(FREESWITCH, "ORIGINATOR_CANCEL", "603-S", "the caller hung up before an answer"),
    Row(FREESWITCH, "USER_NOT_REGISTERED", "480", "the callee's phone is not registered"),
    # SIP final responses (200, 402, 403, 404, 480, 484, 486, 503, 603 are Bitrix24 codes already)
    Row(SIP, "401", "403", "Unauthorized: the PBX's trunk refused the call"),
    Row(SIP, "407", "403", "Proxy Authentication Required: the trunk refused the call"),
    Row(SIP, "408", "304", "Request Timeout: nobody answered"),
    Row(SIP, "410", "404", "Gone: the number no longer exists"),
    Row(SIP, "485", "484", "Ambiguous: the number is incomplete"),
    Row(SIP, "487", "603-S", "Request Terminated: the caller cancelled"),
    Row(SIP, "500", "503", "Server Internal Error on the route"),
    Row(SIP, "502", "503", "Bad Gateway"),
    Row(SIP, "504", "503", "Server Time-out on the route"),
    Row(SIP, "600", "486", "Busy Everywhere"),
    Row(SIP, "604", "404", "Does Not Exist Anywhere"),
)

_SPACES = re.compile(r"\s+")


def normalise(value: str) -> str:
    """The lookup form of a status: trimmed, upper-case, inner whitespace runs as one space."""
    return _SPACES.sub(" ", value.strip()).upper()


def _index() -> dict[str, str]:
    index = {code: code for code in BITRIX_CODES}
    for row in TABLE:
        key = normalise(row.native)
        if index.get(key, row.code) != row.code:  # BUSY is both a DIALSTATUS and a CDR value
            raise ValueError(f"status {row.native!r} maps to two codes")
        index[key] = row.code
    return index


INDEX: Final[dict[str, str]] = _index()


def lookup(value: str) -> str | None:
    """The table's code for a native status (maybe BY_DURATION), or None when it is unknown."""
    return INDEX.get(normalise(value))


def to_bitrix(value: str, *, duration: int) -> str:
    """One of the 13 Bitrix24 codes for any status value; unknown values become OTHER."""
    code = lookup(value)
    if code is None:
        return OTHER
    if code == BY_DURATION:
        return "200" if duration > 0 else "304"
    return code


def markdown_table() -> str:
    """The table as docs/pbx-status-codes.md shows it (one source of truth, checked by a test)."""
    lines = ["| source | PBX value | STATUS_CODE | meaning |", "|---|---|---|---|"]
    for code, meaning in BITRIX_CODES.items():
        lines.append(f"| Bitrix24 | `{code}` | `{code}` | {meaning} |")
    for row in TABLE:
        target = "200 if DURATION > 0, else 304" if row.code == BY_DURATION else f"`{row.code}`"
        lines.append(f"| {row.source} | `{row.native}` | {target} | {row.meaning} |")
    return "\n".join(lines)
