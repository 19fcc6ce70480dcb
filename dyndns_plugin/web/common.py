"""
What every HTTP update method shares: the client's address (with trusted
proxies), Basic credentials, the request class with our robustness rules,
and writing a complete response.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Iterable, Sequence

from twisted.web import http, server

from dyndns_plugin.model import IPAddress
from dyndns_plugin.twisted_private import respond_bad_request

ALLOWED_METHODS = (b"GET", b"HEAD", b"POST")
#: Request bodies larger than this are refused with 413.
MAX_BODY = 16 * 1024
#: What str.splitlines breaks at, as bytes: Twisted hands a POST's
#: Content-Type to the email package, which raises ValueError for any of
#: these inside it (a traceback and a dropped connection, not an answer).
_LINE_BREAKS = frozenset(b"\n\r\x0b\x0c\x1c\x1d\x1e\x85")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def header(request: server.Request, name: str) -> str | None:
    """
    The last value of request header C{name} as text, or None. Read as bytes
    and decoded leniently: Twisted's C{getHeader(str)} raises
    C{UnicodeDecodeError} for bytes that are not UTF-8, which made a garbage
    header a 500 with a logged traceback instead of a refusal.
    """
    value = request.getHeader(name.encode("ascii"))
    return None if value is None else value.decode("utf-8", "replace")


def _peer_address(request: server.Request) -> IPAddress | None:
    peer = request.getClientAddress()
    host = getattr(peer, "host", None)
    if host is None:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _header_addresses(request: server.Request) -> list[str]:
    """Addresses a proxy reported, nearest last, from the first header present."""
    forwarded = header(request, "forwarded")
    if forwarded:
        found = []
        for element in forwarded.split(","):
            for pair in element.split(";"):
                name, _, value = pair.strip().partition("=")
                if name.lower() == "for":
                    value = value.strip('"')
                    if value.startswith("["):
                        value = value[1:].partition("]")[0]
                    elif value.count(":") == 1:
                        value = value.partition(":")[0]
                    found.append(value)
        return found
    for name in ("x-forwarded-for", "x-real-ip", "client-ip"):
        listed = header(request, name)
        if listed:
            return [item.strip() for item in listed.split(",")]
    return []


def _public(address: IPAddress) -> bool:
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
    )


class ClientAddressDetector:
    """
    The address an update without an explicit one should use: the TCP peer,
    unless the peer is a trusted proxy; then the last public address in the
    proxy's header that is not itself a trusted proxy (private and loopback
    addresses in headers are skipped, as the original does). With no trusted
    proxies configured (the default) headers are never believed.
    """

    def __init__(self, trusted_proxies: Iterable[str | _Network] = ()) -> None:
        self.trusted = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]

    def is_trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted)

    def detect(self, request: server.Request) -> IPAddress | None:
        peer = _peer_address(request)
        if peer is None or not self.is_trusted(peer):
            return peer
        for text in reversed(_header_addresses(request)):
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            if self.is_trusted(address) or not _public(address):
                continue
            return address
        return peer


def basic_credentials(request: server.Request) -> tuple[str, str] | None:
    """The Basic user name and password, or None if absent or malformed."""
    value = header(request, "authorization")
    if not value:
        return None
    scheme, _, value = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def args(request: server.Request, name: str) -> list[str]:
    """Every value of query/form parameter C{name}, decoded."""
    table: dict[bytes, list[bytes]] = request.args or {}
    return [v.decode("utf-8", "replace") for v in table.get(name.encode(), [])]


def arg(request: server.Request, name: str) -> str | None:
    """The first value of query/form parameter C{name}, decoded, or None."""
    values = args(request, name)
    return values[0] if values else None


def finish(
    request: server.Request,
    body: bytes,
    content_type: bytes = b"text/plain; charset=utf-8",
    code: int = http.OK,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Write a complete response with its Content-Length (never chunked)."""
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.setResponseCode(code)
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", b"%d" % len(body))
    for name, value in headers:
        request.setHeader(name, value)
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


class DynDNSRequest(server.Request):
    """
    Our rules for every request: absolute-form request lines are reduced to
    their path (old inadyn sends C{GET http://members.dyndns.org/nic/update}),
    bodies are bounded, and every response is C{Cache-Control: private}.
    """

    #: Bytes of body accepted (413 above).
    max_body = MAX_BODY
    #: Methods any resource may see; others get 405 here.
    allowed_methods: tuple[bytes, ...] = ALLOWED_METHODS

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        lowered = path[:8].lower()
        if lowered.startswith(b"http://") or lowered.startswith(b"https://"):
            rest = path.split(b"://", 1)[1]
            slash = rest.find(b"/")
            query = rest.find(b"?")
            if slash == -1 or (query != -1 and query < slash):
                path = b"/" + (rest[query:] if query != -1 else b"")
            else:
                path = rest[slash:]
        ctype = self.requestHeaders.getRawHeaders(b"content-type")
        if command == b"POST" and ctype and not _LINE_BREAKS.isdisjoint(ctype[0].rstrip()):
            respond_bad_request(self.channel)  # type: ignore[arg-type]
            return
        super().requestReceived(command, path, version)

    def gotLength(self, length: int | None) -> None:
        self._body_received = 0
        if length is not None and length > self.max_body:
            self._refuse_body()
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._body_received = getattr(self, "_body_received", 0) + len(data)
        if self._body_received > self.max_body:
            self._refuse_body()
            return
        super().handleContentChunk(data)

    def _refuse_body(self) -> None:
        transport = self.channel.transport if self.channel else None
        if transport is not None and not getattr(self, "_refused", False):
            self._refused = True
            transport.write(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n"
                b"Cache-Control: private\r\nConnection: close\r\n\r\n"
            )
            transport.loseConnection()

    def process(self) -> None:
        if getattr(self, "_refused", False):
            return
        self.setHeader(b"cache-control", b"private")
        if self.method not in self.allowed_methods:
            # Twisted answers 501 for methods it does not know; for us
            # every other method is simply not allowed.
            finish(
                self,
                b"method not allowed\n",
                code=http.NOT_ALLOWED,
                headers=[(b"allow", b", ".join(self.allowed_methods))],
            )
            return
        super().process()
