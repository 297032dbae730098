"""What the settings page asks the portal: its employees and whether the viewer is an admin.

Employees: `user.get` (api-reference/user/user-get.md) with `FILTER[ACTIVE]` true, narrowed by
`select` to ID, NAME, LAST_NAME and UF_PHONE_INNER (all in the `user_brief` scope,
user-scope.md), 50 a page. The first page says the total; the other pages are fetched in
batches of up to 50 `user.get` commands (batch.md), so even a portal of thousands of employees
costs a handful of requests. These go through the PortalClient handed in (the portal's
stored token). Whether the viewer is an admin is asked with the viewer's own token
(bitrix/client.py `is_admin`), never here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from b24app.bitrix.client import PortalClient

PAGE_SIZE = 50  # user-get.md: start = (N-1) * 50
BATCH_LIMIT = 50  # batch.md: at most 50 commands a request
USER_FIELDS = ["ID", "NAME", "LAST_NAME", "UF_PHONE_INNER"]


@dataclass(frozen=True)
class Employee:
    id: int
    name: str
    extension: str  # UF_PHONE_INNER: the inner number in the employee's Bitrix24 profile

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "extension": self.extension}


def active_employees(client: PortalClient) -> list[Employee]:
    """Every active employee of the client's portal, by id. Raises BitrixError."""
    query: dict[str, Any] = {
        "FILTER": {"ACTIVE": True},
        "select": USER_FIELDS,
        "sort": "ID",
        "order": "ASC",
    }
    first = client.call("user.get", {**query, "start": 0})
    rows: list[Any] = list(first.get("result") or [])
    total = _int(first.get("total"), len(rows))
    starts = list(range(PAGE_SIZE, total, PAGE_SIZE))
    for offset in range(0, len(starts), BATCH_LIMIT):
        chunk = starts[offset : offset + BATCH_LIMIT]
        outcome = client.batch({f"p{s}": ("user.get", {**query, "start": s}) for s in chunk})
        if outcome.errors:
            raise next(iter(outcome.errors.values()))
        for start in chunk:
            rows.extend(outcome.result.get(f"p{start}") or [])
    return _employees(rows)


def _employees(rows: list[Any]) -> list[Employee]:
    found: dict[int, Employee] = {}
    for row in rows:
        if not isinstance(row, dict) or row.get("ACTIVE") in (False, "N"):
            continue
        user_id = _int(row.get("ID"), 0)
        if user_id <= 0:
            continue
        name = " ".join(
            part for part in (str(row.get("NAME") or ""), str(row.get("LAST_NAME") or "")) if part
        )
        found[user_id] = Employee(
            user_id, name.strip(), str(row.get("UF_PHONE_INNER") or "").strip()
        )
    return [found[key] for key in sorted(found)]


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def employee(client: PortalClient, user_id: int) -> Employee | None:
    """One active employee by id (one user.get), or None if there is no such active user.
    Raises BitrixError."""
    envelope = client.call(
        "user.get",
        {"FILTER": {"ID": user_id, "ACTIVE": True}, "select": USER_FIELDS},
    )
    found = _employees(list(envelope.get("result") or []))
    return next((e for e in found if e.id == user_id), None)
