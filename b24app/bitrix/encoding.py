"""Bitrix24's form encoding: PHP bracket keys (`auth[access_token]`, `FILTER[ACTIVE]`, `select[]`).

Event handlers receive `application/x-www-form-urlencoded` bodies with such keys
(reference: api-reference/events/index.md), and REST accepts parameters the same way
(settings/how-to-call-rest-api/data-encoding.md). Written by hand because it is PHP's
`parse_str`/`http_build_query` convention, which no maintained Python library implements both
ways with Bitrix24's semantics (lists from `[]`, numbered keys kept as dict keys).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")


def unflatten(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn `a[b][c]=v` pairs into nested dicts; `a[]=v` appends to a list."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if not match:
            result[key] = value
            continue
        path = [match.group(1), *_PART.findall(match.group(2))]
        _assign(result, path, value)
    return result


def _assign(target: dict[str, Any], path: list[str], value: str) -> None:
    node: Any = target
    for index, part in enumerate(path):
        last = index == len(path) - 1
        if isinstance(node, list):
            if last:
                node.append(value)
                return
            node.append({})
            node = node[-1]
            continue
        if last:
            node[part] = value
            return
        following = path[index + 1]
        if part not in node or not isinstance(node[part], dict | list):
            node[part] = [] if following == "" else {}
        node = node[part]


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The inverse of `unflatten`: nested dicts and lists as bracketed form pairs."""
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        pairs.extend(_flatten_value(name, value))
    return pairs


def _flatten_value(name: str, value: Any) -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        return flatten(value, name)
    if isinstance(value, list | tuple):
        pairs: list[tuple[str, str]] = []
        for index, item in enumerate(value):
            pairs.extend(_flatten_value(f"{name}[{index}]", item))
        return pairs
    if value is None:
        return [(name, "")]
    if isinstance(value, bool):
        return [(name, "1" if value else "0")]  # as PHP http_build_query does
    return [(name, str(value))]


def to_query(data: Mapping[str, Any]) -> str:
    """`http_build_query`-style query string, as used inside `batch` commands."""
    return urlencode(flatten(data), quote_via=quote)
