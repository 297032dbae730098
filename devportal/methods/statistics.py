"""`voximplant.statistic.get`: the portal's telephony statistics (finished calls), filtered.

Page: api-reference/telephony/voximplant/voximplant-statistic-get.md (EN; the repository
bitrix24/b24restdocs; not among /work/shared/reference's pages, the digest cites it in §5.2).
What the page says and the emulation does:
- Scope `telephony`; "Who can execute the method: user with Call Statistics — View permission",
  else `ACCESS_DENIED` "Access denied!" (403). [inferred] The emulated portal has no permission
  matrix: its administrators hold that permission, other users do not.
- FILTER is `{"field": value}` over the fields the page lists as filterable; the key may carry an
  operator: `!` and `!=` (not equal), `>=`, `>`, `<=`, `<`, `><` and `!><` (inclusive range and
  its negation, value `[from, to]`), `?` (string search), `=` (exact, the default), `%` and `!%`
  (LIKE a substring, and not). An array value with `=` (or no operator) matches any of its
  elements, as in the page's example `{"ID": [1, 7]}` whose answer holds records 1 and 7.
  [inferred] EXTERNAL_CALL_ID is listed as filterable; that it filters exactly like CALL_ID (exact
  match on the PBX's id) is inferred. [inferred] A filter on a field the page does not list is
  ignored, as the emulated user.get does; string comparisons ignore case (MySQL's collation).
  A negation matches records whose field is null.
- SORT is one of those fields (not CALL_TYPE) and ORDER `ASC`/`DESC`; "By default — no sorting":
  records come in the order they were saved.
- Pages of 50: `start` is the offset (`start = (N - 1) * 50`); `total` and `next` come with it.
- Rows look like the page's example: ids, numbers and durations as strings, COST with four
  decimals, CALL_START_DATE as ISO-8601 with its offset, CALL_CATEGORY "external" for the calls of
  external telephony, CALL_TYPE the call's TYPE, and the fields the finish answer lacks
  (CALL_LOG, TRANSCRIPT_*, SESSION_ID, REDIAL_ATTEMPT, RECORD_*).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from devportal.errors import RestError
from devportal.methods import Call, Page, method
from devportal.methods.common import current_user
from devportal.state import DevPortal

PAGE_SIZE = 50  # the page: "The page size for results is 50 records"
ACCESS_DENIED = "Access denied!"

# Longest first, so that "!><" is not read as "!" followed by a field called "><ID".
OPERATORS = ("!><", "><", "!=", "!%", ">=", "<=", "!", ">", "<", "?", "=", "%")
NEGATIONS = {"!": "=", "!=": "=", "!%": "%", "!><": "><"}

# The page's "Available Fields for Filtering", by how they compare.
NUMBER_FIELDS = frozenset(
    {
        "ID", "PORTAL_USER_ID", "CALL_TYPE", "CALL_DURATION", "CALL_VOTE", "COST",
        "CRM_ENTITY_ID", "CRM_ACTIVITY_ID", "REST_APP_ID", "TRANSCRIPT_ID", "SESSION_ID",
        "REDIAL_ATTEMPT", "RECORD_DURATION",
    }
)  # fmt: skip
DATE_FIELDS = frozenset({"CALL_START_DATE"})
STRING_FIELDS = frozenset(
    {
        "CALL_ID", "EXTERNAL_CALL_ID", "CALL_CATEGORY", "PORTAL_NUMBER", "PHONE_NUMBER",
        "CALL_LOG", "CALL_RECORD_URL", "COST_CURRENCY", "CALL_FAILED_CODE", "CALL_FAILED_REASON",
        "CRM_ENTITY_TYPE", "REST_APP_NAME", "TRANSCRIPT_PENDING", "COMMENT",
    }
)  # fmt: skip
FILTER_FIELDS = NUMBER_FIELDS | DATE_FIELDS | STRING_FIELDS
SORT_FIELDS = FILTER_FIELDS - {"CALL_TYPE"}  # the page: "except for CALL_TYPE"


@method("voximplant.statistic.get", scope="telephony")
def statistic_get(call: Call, params: dict[str, Any]) -> Page:
    """The portal's finished calls (of every application) matching FILTER, a page at a time."""
    user = current_user(call)
    if user is None or not user.active or not user.admin:
        raise RestError("ACCESS_DENIED", ACCESS_DENIED, 403)
    query = {str(key).upper(): value for key, value in params.items()}
    conditions = parse_filter(query.get("FILTER"))
    rows = [statistic_row(call.portal, record) for record in call.portal.statistics]
    rows = [row for row in rows if all(condition.matches(row) for condition in conditions)]
    rows = sort_rows(rows, query.get("SORT"), query.get("ORDER"))
    return paginate(rows, query.get("START"))


# --- the rows -------------------------------------------------------------------------------


def statistic_row(portal: DevPortal, record: dict[str, Any]) -> dict[str, Any]:
    """A stored statistics record (telephony.py) as this method lists it (the page's example)."""
    attached = portal.records.get(record["CALL_ID"]) or {}
    vote = record.get("CALL_VOTE") or None
    return {
        "ID": str(record["ID"]),
        "PORTAL_USER_ID": str(record["PORTAL_USER_ID"]),
        "PORTAL_NUMBER": record["PORTAL_NUMBER"],
        "PHONE_NUMBER": record["PHONE_NUMBER"],
        "CALL_ID": record["CALL_ID"],
        "EXTERNAL_CALL_ID": record["EXTERNAL_CALL_ID"],
        "CALL_CATEGORY": "external",
        "CALL_LOG": None,
        "CALL_DURATION": str(record["CALL_DURATION"]),
        "CALL_START_DATE": record.get("_call_start_date"),
        "CALL_RECORD_URL": attached.get("RECORD_URL") or record.get("_record_url") or None,
        "CALL_VOTE": None if vote is None else str(vote),
        "COST": f"{float(record['COST']):.4f}",
        "COST_CURRENCY": record["COST_CURRENCY"],
        "CALL_FAILED_CODE": record["CALL_FAILED_CODE"],
        "CALL_FAILED_REASON": record["CALL_FAILED_REASON"],
        "CRM_ENTITY_TYPE": record["CRM_ENTITY_TYPE"],
        "CRM_ENTITY_ID": _text(record["CRM_ENTITY_ID"]),
        "CRM_ACTIVITY_ID": _text(record["CRM_ACTIVITY_ID"]),
        "REST_APP_ID": _text(record["REST_APP_ID"]),
        "REST_APP_NAME": record["REST_APP_NAME"],
        "TRANSCRIPT_ID": None,
        "TRANSCRIPT_PENDING": "N",
        "SESSION_ID": None,
        "REDIAL_ATTEMPT": None,
        "COMMENT": record.get("COMMENT"),
        "RECORD_DURATION": None,
        "RECORD_FILE_ID": attached.get("FILE_ID"),
        "CALL_TYPE": str(record["INCOMING"]),
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# --- FILTER ---------------------------------------------------------------------------------


class Condition:
    """One FILTER entry: operator, field and the value it compares with."""

    def __init__(self, operator: str, field: str, expected: Any) -> None:
        self.operator = operator
        self.field = field
        self.expected = expected

    def matches(self, row: dict[str, Any]) -> bool:
        actual = row.get(self.field)
        if self.operator in NEGATIONS:
            return actual is None or not _positive(
                NEGATIONS[self.operator], self.field, actual, self
            )
        return _positive(self.operator or "=", self.field, actual, self)


def parse_filter(source: Any) -> list[Condition]:
    """`{">=CALL_START_DATE": "…", "ID": [1, 7]}` as conditions; unknown fields are dropped."""
    if not isinstance(source, dict):
        return []
    conditions = []
    for key, value in source.items():
        operator, field = split_key(str(key))
        if field in FILTER_FIELDS:
            conditions.append(Condition(operator, field, value))
    return conditions


def split_key(key: str) -> tuple[str, str]:
    for operator in OPERATORS:
        if key.startswith(operator):
            return operator, key[len(operator) :].strip().upper()
    return "", key.strip().upper()


def _positive(operator: str, field: str, actual: Any, condition: Condition) -> bool:
    expected = condition.expected
    if actual is None:
        return operator == "=" and expected in (None, "", [None])
    if operator == "=":
        options = _values(expected)
        return any(_compare(field, actual, option) == 0 for option in options)
    if operator in ("%", "?"):
        return str(expected).casefold() in str(actual).casefold()
    if operator == "><":
        bounds = _values(expected)
        if len(bounds) != 2:
            return False
        low, high = (_compare(field, actual, bound) for bound in bounds)
        return low is not None and high is not None and low >= 0 and high <= 0
    order = _compare(field, actual, expected)
    if order is None:
        return False
    return {">": order > 0, ">=": order >= 0, "<": order < 0, "<=": order <= 0}[operator]


def _values(expected: Any) -> list[Any]:
    """A filter value as a list: arrays may arrive as JSON lists or as PHP's `{0: …, 1: …}`."""
    if isinstance(expected, dict):
        return list(expected.values())
    return expected if isinstance(expected, list) else [expected]


def _compare(field: str, actual: Any, expected: Any) -> int | None:
    """-1, 0 or 1 comparing a row's value with a filter value as the field's type; None when the
    filter value cannot be read as that type."""
    left: Any
    right: Any
    if field in NUMBER_FIELDS:
        left, right = _number(actual), _number(expected)
    elif field in DATE_FIELDS:
        left, right = _date(actual), _date(expected)
    else:
        left, right = str(actual).casefold(), str(expected).casefold()
    if left is None or right is None:
        return None
    return (left > right) - (left < right)


_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*$")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    return float(value) if isinstance(value, str) and _NUMBER.match(value) else None


def _date(value: Any) -> datetime | None:
    """ISO-8601; a value without an offset cannot be compared with the stored aware dates."""
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


# --- SORT, ORDER and pages ------------------------------------------------------------------


def sort_rows(rows: list[dict[str, Any]], sort: Any, order: Any) -> list[dict[str, Any]]:
    """By SORT in ORDER (default ASC); without SORT, or with one the page does not allow, as
    saved. Rows whose field is null come first in ascending order, as in MySQL."""
    field = str(sort or "").strip().upper()
    if field not in SORT_FIELDS:
        return rows
    descending = str(order or "ASC").strip().upper() == "DESC"

    def key(row: dict[str, Any]) -> tuple[int, Any]:
        value = row.get(field)
        if value is None:
            return (0, 0)
        if field in NUMBER_FIELDS:
            return (1, _number(value) or 0.0)
        if field in DATE_FIELDS:
            found = _date(value)
            return (1, found.timestamp() if found else 0.0)
        return (1, str(value).casefold())

    return sorted(rows, key=key, reverse=descending)


def paginate(rows: list[dict[str, Any]], start: Any) -> Page:
    """The page that starts at `start` (rounded down to a page boundary), with total and next."""
    try:
        offset = max(int(str(start if start is not None else 0).strip() or 0), 0)
    except ValueError:
        offset = 0
    offset = offset // PAGE_SIZE * PAGE_SIZE
    following = offset + PAGE_SIZE if offset + PAGE_SIZE < len(rows) else None
    return Page(rows[offset : offset + PAGE_SIZE], len(rows), following)
