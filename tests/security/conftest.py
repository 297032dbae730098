"""A hostile network for the SSRF tests: names resolve where a test says, and every outgoing
connection is recorded; only our own app and the development portal may be reached."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from b24app.wiring import store_of
from tests.conftest import LiveApp

PUBLIC_IP = "93.184.215.14"  # a global address: "the internet" (connections to it are refused)


@dataclass
class Network:
    """Fake DNS plus a record of every TCP connection the process tries to open.

    Connections to `reachable` (host, port) pairs go through; every other attempt is recorded
    and refused at once, so no test ever leaves the machine or waits for a timeout.
    """

    names: dict[str, list[str]] = field(default_factory=dict)
    reachable: set[tuple[str, int]] = field(default_factory=set)
    attempts: list[tuple[str, int]] = field(default_factory=list)

    def resolve(self, name: str, *addresses: str) -> None:
        self.names[name.lower()] = list(addresses)

    def allow(self, url: str) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.reachable.add((parts.hostname, parts.port))

    def outside(self) -> list[tuple[str, int]]:
        """Connection attempts to anything but our app and the development portal."""
        return [a for a in self.attempts if a not in self.reachable]


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Iterator[Network]:
    net = Network()
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        addresses = net.names.get(name.lower().rstrip("."))
        if addresses is None:
            return real_getaddrinfo(host, port, *args, **kwargs)
        infos = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (
                (address, int(port or 0), 0, 0) if ":" in address else (address, int(port or 0))
            )
            infos.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return infos

    def connect(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and len(address) >= 2:
            target = (str(ipaddress.ip_address(address[0])), int(address[1]))
            net.attempts.append(target)
            if target not in net.reachable:
                raise ConnectionRefusedError(f"test network: {target} is unreachable")
        real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield net


@pytest.fixture
def hostile(live_app: LiveApp, network: Network) -> LiveApp:
    """Our app as in production (no local portals), on the hostile network.

    Only the app and the development portal (the OAuth server and the event sender) are
    reachable; `portal.example` resolves to a public address that refuses connections.
    """
    network.allow(live_app.url)
    network.allow(live_app.dev.base_url)
    network.resolve("portal.example", PUBLIC_IP)
    settings = live_app.app.config["SETTINGS"]
    strict = settings.model_copy(update={"allow_local_portals": False})
    live_app.app.config["SETTINGS"] = store_of(live_app.app).settings = strict
    return live_app
