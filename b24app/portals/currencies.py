"""A portal's currencies (crm.currency.list), cached briefly per process.

Both the settings (which currency the PBX bills in) and the intake (is COST_CURRENCY one of the
portal's?) need them; asking Bitrix24 on every call would spend the portal's rate limit.
"""

from __future__ import annotations

import threading
import time

from b24app.bitrix.client import PortalClient

TTL_SECONDS = 300.0

_cache: dict[str, tuple[float, list[str]]] = {}
_lock = threading.Lock()


def portal_currencies(member_id: str, *, fresh: bool = False) -> list[str]:
    """ISO codes of the portal's currencies, base currency first. Raises BitrixError."""
    now = time.monotonic()
    with _lock:
        hit = _cache.get(member_id)
    if hit and not fresh and now - hit[0] < TTL_SECONDS:
        return hit[1]
    rows = PortalClient(member_id).result("crm.currency.list", {"order": {"SORT": "asc"}})
    codes = [str(row["CURRENCY"]) for row in sorted(rows, key=_base_first) if row.get("CURRENCY")]
    with _lock:
        _cache[member_id] = (now, codes)
    return codes


def _base_first(row: dict[str, object]) -> tuple[int, int]:
    return (0 if row.get("BASE") == "Y" else 1, int(str(row.get("SORT") or 0)))


def forget(member_id: str | None = None) -> None:
    with _lock:
        if member_id is None:
            _cache.clear()
        else:
            _cache.pop(member_id, None)
