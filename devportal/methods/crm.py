"""`crm.currency.list` (api-reference/crm/currency/crm-currency-list.md).

The portal's currencies in the order asked for (`order`: `{"SORT": "asc", "CURRENCY": "desc"}`,
field names in any case), else in the portal's own order. Numbers travel as strings, as in the
page's example (`"SORT": "100"`), and `total` is "currently always 0".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devportal.methods import Call, Page, method

NUMERIC_FIELDS = {"AMOUNT_CNT", "AMOUNT", "SORT", "DECIMALS"}


@method("crm.currency.list", scope="crm")
def currency_list(call: Call, params: dict[str, Any]) -> Page:
    currencies = list(call.portal.currencies)
    order = params.get("order") or params.get("ORDER")
    if isinstance(order, dict):
        currencies = _ordered(currencies, order)
    return Page([_as_sent(currency) for currency in currencies], total=0)


def _ordered(currencies: list[dict[str, Any]], order: dict[str, Any]) -> list[dict[str, Any]]:
    """Apply each `field: direction` with the first field the most significant."""
    for field, direction in reversed(list(order.items())):
        name = str(field).upper()
        descending = str(direction).lower() == "desc"
        currencies.sort(key=_sort_key(name), reverse=descending)
    return currencies


def _sort_key(field: str) -> Callable[[dict[str, Any]], float | str]:
    """Numbers compare as numbers ("1000" after "200"), the rest as text."""

    def key(currency: dict[str, Any]) -> float | str:
        value = currency.get(field)
        if field in NUMERIC_FIELDS:
            try:
                return float(str(value))
            except ValueError:
                return 0.0
        return str(value if value is not None else "")

    return key


def _as_sent(currency: dict[str, Any]) -> dict[str, Any]:
    """The element as the page's example shows it: integers as strings."""
    return {
        key: str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        for key, value in currency.items()
    }
