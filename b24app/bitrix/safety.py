"""Which portal addresses b24app may send requests (and tokens) to.

A portal address comes from the OAuth server, but it is still checked before any request: https
only, and never a loopback, private, link-local or otherwise non-public address (server-side
request forgery). `B24APP_ALLOW_LOCAL_PORTALS=1` lifts both rules for local development and tests.
Whatever that switch says, an address must be a plain absolute http(s) URL: a host name or IP
literal, a numeric port, no credentials, no whitespace or control characters, short enough to
store. Such an address is safe to put into a header (CSP, Location) as it is.

`parse_url()` is that rule for every URL b24app accepts (portal addresses, a PBX's `RECORD_URL`,
a portal's `originate_url`): one parser, so that a port out of range or a host that is not a
host name is refused everywhere alike (RFC 3986 section 3; hosts as RFC 1123 names or IP literals).

The check at install time is not enough: a name that resolved to a public address then may
resolve to 127.0.0.1 now (DNS rebinding). `portal_session()` therefore checks the address each
connection really goes to, after resolving it, and connects to exactly that address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any
from urllib.parse import SplitResult, urlsplit

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
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated (RFC 4291 2.5.5.1), still routed

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


def _parse(url: str) -> SplitResult:
    """A portal address's parts (`parse_url` without a query), else UnsafeAddress."""
    try:
        return parse_url(url)
    except InvalidURL as error:
        raise UnsafeAddress(f"the portal address {error}") from None


class InvalidURL(ValueError):
    """A URL `parse_url` refuses; the message says why, for whoever sent it ("must …")."""


def parse_url(url: str, *, max_length: int = MAX_URL_LENGTH, query: bool = False) -> SplitResult:
    """The parts of `url` if it is a plain absolute http(s) URL, else InvalidURL saying why.

    Plain means: scheme http or https; a host that is a host name (letters, digits and hyphens in
    dot-separated labels of at most 63) or an IP literal (IPv6 in brackets); a port, if given,
    of 1–65535; no credentials (`user:pass@`), no fragment, and a query only when `query` is
    true; printable ASCII without spaces, quotes or control characters (anything else must be
    percent-encoded); at most `max_length` characters. Nothing is resolved here: where a URL is
    connected to, `portal_session()` checks the address then.
    """
    if not url or len(url) > max_length:
        raise InvalidURL(f"must be an absolute http(s) URL of at most {max_length} characters")
    if not _URL_CHARS.match(url) or _FORBIDDEN.intersection(url):
        raise InvalidURL(
            "must not contain spaces, quotes, control or non-ASCII characters "
            "(percent-encode them; an international host name in its xn-- form)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port  # urllib checks the range (0–65535) and the digits only here
    except ValueError as error:
        raise InvalidURL(f"has an impossible host or port ({error})") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidURL("must start with http:// or https:// followed by a host")
    if "@" in parts.netloc:
        raise InvalidURL("must not carry credentials (user:password@)")
    if port == 0:
        raise InvalidURL("has an impossible port (0)")
    if parts.fragment or url.endswith("#"):
        raise InvalidURL("must not have a fragment (#...)")
    if parts.query and not query:
        raise InvalidURL("must not have a query (?...)")
    if not (_is_ip(parts.hostname) or _is_host_name(parts.hostname)):
        raise InvalidURL(
            f"has a host that is neither a host name nor an IP address: {parts.hostname[:100]!r}"
        )
    return parts


def _is_host_name(host: str) -> bool:
    """RFC 1123 labels; a name whose last label is all digits would be a (bad) IPv4 address."""
    return bool(_HOST_NAME.match(host)) and not host.rstrip(".").rsplit(".", 1)[-1].isdigit()


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
    """Global unicast; an IPv6 address that carries an IPv4 one (mapped, compatible, 6to4,
    NAT64) is judged by the IPv4 address it leads to."""
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and (address in _NAT64 or address in _IPV4_COMPATIBLE):
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
    """requests' adapter for portal addresses in production: https to public addresses only
    (`https_only=False`: http too, for what PRODUCT.md lets be either, a PBX's RECORD_URL).

    UnsafeAddress is raised before any byte is sent. A proxy configured in the environment
    (HTTPS_PROXY) resolves names itself; its own egress rules then apply.
    """

    def __init__(self, *args: Any, https_only: bool = True, **kwargs: Any) -> None:
        self.https_only = https_only
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PublicHTTPPool,
            "https": _PublicHTTPSPool,
        }

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        scheme = urlsplit(request.url or "").scheme
        if scheme != "https" and (self.https_only or scheme != "http"):
            raise UnsafeAddress("portal addresses must use https")
        return super().send(request, *args, **kwargs)


# Connections kept open per portal address: the worker sends up to this many batches of one
# portal side by side (delivery/worker.py, BATCHES_IN_FLIGHT), each on its own connection.
POOL_SIZE = 40


def portal_session(*, allow_local: bool, https_only: bool = True) -> requests.Session:
    """A requests session for calling portals: address-checked unless local portals are allowed;
    `https_only=False` lets plain http go to public addresses too (public_session). Keeps up to
    POOL_SIZE connections per address open for reuse."""
    session = requests.Session()
    if not allow_local:
        adapter: HTTPAdapter = PublicOnlyAdapter(https_only=https_only, pool_maxsize=POOL_SIZE)
    else:
        adapter = HTTPAdapter(pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
