"""Which portal addresses b24app may send requests (and tokens) to.

A portal address comes from the OAuth server, but it is still checked before any request: https
only, and never a loopback, private, link-local or otherwise non-public address (server-side
request forgery). `B24APP_ALLOW_LOCAL_PORTALS=1` lifts both rules for local development and tests.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from b24app.bitrix.errors import UnsafeAddress


def check_portal_url(url: str, *, allow_local: bool) -> str:
    """Return `url` (normalised to end with `/`) if requests may go there, else UnsafeAddress."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeAddress(f"not an absolute http(s) URL: {url!r}")
    if parts.username or parts.password:
        raise UnsafeAddress("portal URLs must not carry credentials")
    if not allow_local:
        if parts.scheme != "https":
            raise UnsafeAddress("portal addresses must use https")
        for address in _resolve(parts.hostname, parts.port or 443):
            if not address.is_global:
                raise UnsafeAddress(f"{parts.hostname} resolves to a non-public address")
    return url if url.endswith("/") else url + "/"


def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UnsafeAddress(f"{host} does not resolve") from exc
    return [ipaddress.ip_address(info[4][0]) for info in infos]
