"""`user.get` (api-reference/user/user-get.md): filter, sort, select and page the portal's users.

What the page says and the emulation does:
- FILTER (or `filter`) takes any user field, keys optionally prefixed with an operator (`>=`,
  `>`, `<=`, `<`, `@`, `!@`, `%`, `=%`, `%=`, `!%`, `!=%`, `!%=`, `=`, `!=`, `!`); values may be
  arrays. Without a prefix a value holding `%` is a LIKE pattern (the page's `{"NAME": "Iv%"}`
  example). Without FILTER the top-level keys are the filter (the page's `"UF_DEPARTMENT": 1`
  example). Unknown fields are ignored.
- `ACTIVE` true/"Y" keeps working users, false/"N" dismissed ones; without it both are listed.
- Sorted by ascending ID unless `sort` (a field) and `order` (ASC/DESC) say otherwise.
- 50 per page; `start` is the offset of a page (`start = (N-1) * 50`); `total` and `next` come
  with it. `start=-1` skips the count (settings/performance/huge-data.md): the first 50 rows,
  `total` 0 and no `next`.
- `select` (masks `*`, `UF_*`) narrows the fields; fields the scope may not read or that do not
  exist are skipped silently. The scope decides the fields in any case (user-scope.md).
- `ADMIN_MODE` only widens what a user may see of extranet users; every emulated user is an
  employee visible to all, so it is accepted and changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

from devportal.methods import Call, Page, method
from devportal.methods.common import USER_SCOPES, user_record, visible_user
from devportal.state import DevUser

PAGE_SIZE = 50

# Longest first, so that "!=%" is not read as "!=" followed by a field called "%NAME".
OPERATORS = (
    "!=%", "!%=", ">=", "<=", "=%", "%=", "!%", "!@", "!=", ">", "<", "@", "%", "=", "!",
)  # fmt: skip
NEGATIONS = {"!": "", "!=": "=", "!%": "%", "!=%": "=%", "!%=": "%=", "!@": "@"}
RESERVED = {"SORT", "ORDER", "START", "SELECT", "ADMIN_MODE", "IMAGE_RESIZE", "FILTER"}
SEARCH_FIELDS = ("NAME", "LAST_NAME", "SECOND_NAME", "EMAIL", "WORK_POSITION")


@method("user.get", scope=USER_SCOPES)
def user_get(call: Call, params: dict[str, Any]) -> Page:
    query = {str(key).upper(): value for key, value in params.items()}
    conditions = parse_filter(_filter_source(query))
    users = [u for u in call.portal.users.values() if all(c.matches(u) for c in conditions)]
    users = sort_users(users, query.get("SORT"), query.get("ORDER"))
    rows, total, following = paginate(users, query.get("START"))
    select = _select(query.get("SELECT"))
    items = [_project(visible_user(user, call.token.scope), select) for user in rows]
    return Page(items, total, following)


def _filter_source(query: dict[str, Any]) -> dict[str, Any]:
    """FILTER, else the query itself (user-get.md's examples use both forms)."""
    nested = query.get("FILTER")
    if isinstance(nested, dict):
        return nested
    return {key: value for key, value in query.items() if key not in RESERVED}


# --- filtering ------------------------------------------------------------------------------------


class Condition:
    """One filter entry: an operator, a field and the value it compares with."""

    def __init__(self, operator: str, field: str, expected: Any) -> None:
        self.operator = operator
        self.field = field
        self.expected = expected

    def matches(self, user: DevUser) -> bool:
        if self.field == "NAME_SEARCH":
            return _name_search(user, str(self.expected))
        actual = _filter_view(user).get(self.field)
        if self.operator in NEGATIONS:
            return not _positive(NEGATIONS[self.operator], actual, self.expected)
        return _positive(self.operator, actual, self.expected)


def parse_filter(source: dict[str, Any]) -> list[Condition]:
    """Split `">=ID"` into (">=", "ID"); entries on fields no user has are dropped."""
    known = set(_filter_view(DevUser(0, "", ""))) | {"NAME_SEARCH"}
    conditions = []
    for key, value in source.items():
        operator, field = split_key(str(key))
        if field not in known:
            continue
        if field == "ACTIVE":
            value = _yes_no(value)
        conditions.append(Condition(operator, field, value))
    return conditions


def split_key(key: str) -> tuple[str, str]:
    for operator in OPERATORS:
        if key.startswith(operator):
            return operator, key[len(operator) :].upper()
    return "", key.upper()


def _filter_view(user: DevUser) -> dict[str, Any]:
    """All fields as filters compare them; ACTIVE as the "Y"/"N" the filter speaks."""
    record = user_record(user)
    record["ACTIVE"] = "Y" if user.active else "N"
    return record


def _yes_no(value: Any) -> Any:
    """ACTIVE filter values: true/"true"/"Y"/"1" mean working users; anything else dismissed."""
    if isinstance(value, list):
        return [_yes_no(item) for item in value]
    if isinstance(value, bool):
        return "Y" if value else "N"
    return "Y" if str(value).strip().upper() in {"Y", "TRUE", "1"} else "N"


def _positive(operator: str, actual: Any, expected: Any) -> bool:
    """Does any of the field's values (UF_DEPARTMENT is a list) satisfy the operator."""
    values = actual if isinstance(actual, list) else [actual]
    return any(_compare(operator, value, expected) for value in values)


def _compare(operator: str, actual: Any, expected: Any) -> bool:
    if operator in ("", "=", "@") and (isinstance(expected, list) or operator == "@"):
        options = expected if isinstance(expected, list) else [expected]
        return any(_equal(actual, option) for option in options)
    if operator == "":
        text = str(expected)
        return _like(actual, text) if "%" in text else _equal(actual, expected)
    if operator == "=":
        return _equal(actual, expected)
    if operator == "%":
        return str(expected).casefold() in str(actual).casefold()
    if operator in ("=%", "%="):
        return _like(actual, str(expected))
    return _order(operator, actual, expected)


def _equal(actual: Any, expected: Any) -> bool:
    return str(actual).casefold() == str(expected).casefold()


def _like(actual: Any, pattern: str) -> bool:
    """SQL LIKE: `%` any run of characters, `_` one character; case-insensitive like MySQL."""
    parts = (".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch("".join(parts), str(actual), re.IGNORECASE | re.DOTALL) is not None


def _order(operator: str, actual: Any, expected: Any) -> bool:
    left, right = _comparable(actual), _comparable(expected)
    if type(left) is not type(right):
        left, right = str(actual), str(expected)
    if operator == ">":
        return left > right  # type: ignore[operator]
    if operator == "<":
        return left < right  # type: ignore[operator]
    if operator == ">=":
        return left >= right  # type: ignore[operator]
    return left <= right  # type: ignore[operator]


def _comparable(value: Any) -> float | str:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value).casefold()


def _name_search(user: DevUser, text: str) -> bool:
    """NAME_SEARCH, "quick search by personal data": every word found in some name field."""
    record = user_record(user)
    haystack = " ".join(str(record.get(field, "")) for field in SEARCH_FIELDS).casefold()
    return all(word in haystack for word in text.casefold().split())


# --- sorting and paging ---------------------------------------------------------------------------


def sort_users(users: list[DevUser], sort: Any, order: Any) -> list[DevUser]:
    """By `sort` (default ID) in `order` (default ASC); ties by ID, numbers as numbers."""
    by_id = sorted(users, key=lambda u: u.id)
    field = str(sort or "ID").upper()
    if field == "ID" or field not in user_record(DevUser(0, "", "")):
        field = "ID"
    descending = str(order or "ASC").upper() == "DESC"
    return sorted(by_id, key=lambda u: _sort_key(u, field), reverse=descending)


def _sort_key(user: DevUser, field: str) -> tuple[int, float | str]:
    value = _filter_view(user).get(field)
    comparable = _comparable(value)
    return (0, comparable) if isinstance(comparable, float) else (1, comparable)


def paginate(users: list[DevUser], start: Any) -> tuple[list[DevUser], int, int | None]:
    """(page rows, total, next) for `start`; a negative start skips the count."""
    offset = _int(start)
    if offset < 0:
        return users[:PAGE_SIZE], 0, None
    offset = offset // PAGE_SIZE * PAGE_SIZE  # start = (N-1) * 50 picks page N
    rows = users[offset : offset + PAGE_SIZE]
    following = offset + PAGE_SIZE if offset + PAGE_SIZE < len(users) else None
    return rows, len(users), following


def _int(value: Any) -> int:
    try:
        return int(str(value).strip() or 0)
    except ValueError:
        return 0


# --- select ---------------------------------------------------------------------------------------


def _select(value: Any) -> list[str] | None:
    """`select` as a list of upper-case names (a form sends `select[]` or `select[0]`)."""
    if value in (None, "", [], {}):
        return None
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        value = [value]
    return [str(item).upper() for item in value]


def _project(record: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """Keep the selected fields the token may read; `*` is all of them, `UF_*` the UF_ ones."""
    if select is None or "*" in select:
        return record
    wanted = set(select)
    custom = "UF_*" in wanted
    return {k: v for k, v in record.items() if k in wanted or (custom and k.startswith("UF_"))}
