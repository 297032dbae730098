"""Which portal addresses b24app may send requests (and tokens) to.

A portal address comes from the OAuth server, but it is still checked before any request: https
only, and never a loopback, private, link-local or otherwise non-public address (server-side
request forgery). `B24APP_ALLOW_LOCAL_PORTALS=1` lifts both rules for local development and tests.
Whatever that switch says, an address must be a plain absolute http(s) URL: a host name or IP
literal, a numeric port, no credentials, no whitespace or control characters, short enough to
store. Such an address is safe to put into a header (CSP, Location) as it is.

The check at install time is not enough: a name that resolved to a public address then may
resolve to 127.0.0.1 now (DNS rebinding). `portal_session()` therefore checks the address each
connection really goes to, after resolving it, and connects to exactly that address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from b24app.bitrix.errors import UnsafeAddress

MAX_URL_LENGTH = 500  # portals.client_endpoint holds 512
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
_URL_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII: no space, control or non-ASCII
_FORBIDDEN = set("\"'<>\\^`{|}")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_portal_url(url: str, *, allow_local: bool) -> str:
    """Return `url` (normalised to end with `/`) if requests may go there, else UnsafeAddress."""
    parts = _parse(url)
    hostname = parts.hostname or ""
    if not allow_local:
        if parts.scheme != "https":
            raise UnsafeAddress("portal addresses must use https")
        public_address(hostname, parts.port or 443)
    return url if url.endswith("/") else url + "/"


def _parse(url: str) -> Any:
    """The URL's parts, if it is a plain absolute http(s) URL (see the module docstring)."""
    if not url or len(url) > MAX_URL_LENGTH:
        raise UnsafeAddress(f"not an absolute http(s) URL of at most {MAX_URL_LENGTH} characters")
    if not _URL_CHARS.match(url) or _FORBIDDEN.intersection(url):
        raise UnsafeAddress("portal URLs must not contain spaces, quotes or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeAddress(f"not a valid URL: {url[:100]!r}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeAddress(f"not an absolute http(s) URL: {url[:100]!r}")
    if "@" in parts.netloc:
        raise UnsafeAddress("portal URLs must not carry credentials")
    if parts.query or parts.fragment or port == 0:
        raise UnsafeAddress(f"not a portal address: {url[:100]!r}")
    if not (_is_ip(parts.hostname) or _HOST_NAME.match(parts.hostname)):
        raise UnsafeAddress(f"not a host name: {parts.hostname[:100]!r}")
    return parts


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def public_address(host: str, port: int) -> str:
    """The address to connect to for `host`, if every address it resolves to is public."""
    addresses = _resolve(host, port)
    if not all(_is_public(address) for address in addresses):
        raise UnsafeAddress(f"{host} resolves to a non-public address")
    return str(addresses[0])


def _is_public(address: Address) -> bool:
    """Global unicast; an IPv6 address that carries an IPv4 one (mapped, 6to4, NAT64) is
    judged by the IPv4 address it leads to."""
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(address.packed[-4:])
        if embedded is not None:
            return _is_public(embedded)
    return True


def _resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:  # idna refuses labels over 63 characters
        raise UnsafeAddress(f"{host} does not resolve") from exc
    if not infos:
        raise UnsafeAddress(f"{host} does not resolve")
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


# --- checked connections --------------------------------------------------------------------


class _PublicOnly:
    """A urllib3 connection that resolves its host itself, refuses non-public addresses, and
    connects to the address it checked (so a second lookup cannot answer differently). TLS
    still verifies the certificate against the host name."""

    _dns_host: str
    port: int

    def _new_conn(self) -> socket.socket:
        checked = public_address(self._dns_host.rstrip("."), self.port)
        name, self._dns_host = self._dns_host, checked
        try:
            return super()._new_conn()  # type: ignore[misc]
        finally:
            self._dns_host = name


class _PublicHTTPConnection(_PublicOnly, HTTPConnection):
    pass


class _PublicHTTPSConnection(_PublicOnly, HTTPSConnection):
    pass


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    """requests' adapter for portal addresses in production: https to public addresses only.

    UnsafeAddress is raised before any byte is sent. A proxy configured in the environment
    (HTTPS_PROXY) resolves names itself; its own egress rules then apply.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PublicHTTPPool,
            "https": _PublicHTTPSPool,
        }

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        if urlsplit(request.url or "").scheme != "https":
            raise UnsafeAddress("portal addresses must use https")
        return super().send(request, *args, **kwargs)


def portal_session(*, allow_local: bool) -> requests.Session:
    """A requests session for calling portals: address-checked unless local portals are allowed."""
    session = requests.Session()
    if not allow_local:
        adapter = PublicOnlyAdapter()
        session.mount("https://", adapter)
        session.mount("http://", adapter)
    return session
