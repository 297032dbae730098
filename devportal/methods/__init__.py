"""The registry of emulated REST methods. Each module registers its methods with `@method`.

A handler gets a `Call` (portal, token, state) and the request's parameters (already decoded
from query, form or JSON) and returns the `result` value, or a `Page` for list methods, or raises
`RestError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devportal.state import AccessToken, DevPortal, DevState


@dataclass
class Call:
    state: DevState
    portal: DevPortal
    token: AccessToken
    method: str  # the name as registered (reference spelling)

    @property
    def user_id(self) -> int:
        return self.token.user_id

    @property
    def client_id(self) -> str:
        return self.token.client_id


@dataclass
class Page:
    """A list result: `items` plus `total` and `next` in the envelope (list-methods pages)."""

    items: list[Any]
    total: int
    next: int | None = None


Handler = Callable[[Call, dict[str, Any]], Any]


@dataclass(frozen=True)
class Method:
    name: str
    scope: str | None  # None: scope `basic`, always granted
    handler: Handler
    batchable: bool = True
    app_only: bool = False


REGISTRY: dict[str, Method] = {}


def method(
    name: str, *, scope: str | None = None, batchable: bool = True
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        REGISTRY[name.lower()] = Method(name, scope, handler, batchable)
        return handler

    return register


def find(name: str) -> Method | None:
    """Method names are case-insensitive (api-reference/common/system/method-get.md)."""
    return REGISTRY.get(name.lower())


def load_all() -> None:
    """Import every method module so that they register themselves."""
    from devportal.methods import (  # noqa: F401
        batch,
        common,
        crm,
        events,
        statistics,
        telephony,
        users,
    )
