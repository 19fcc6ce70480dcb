"""
DNS cookies (RFC 7873) with interoperable server cookies (RFC 9018).

A client sends an 8-byte client cookie in the COOKIE EDNS option (code 10);
we answer with it and a 16-byte server cookie: version 1, three reserved
bytes (zero), a 32-bit timestamp and
SipHash-2-4(client cookie | version | reserved | timestamp | client address)
keyed with our 16-byte secret. A client that sends that server cookie back
from the same address has proved that it receives our answers there: its
source is not forged, so its queries are not rate limited (see
L{dyndns_plugin.dns.rrl}).

The construction is RFC 9018's, so BIND, Knot, NSD, PowerDNS and we can
share one secret behind one anycast address. Several servers behind one
address need the same secret (like BIND's C{cookie-secret}); with the
default (a random secret made at start) cookies stop verifying after a
restart, which only costs clients one round trip to learn a new one.

We do not require cookies: a query without one, or with a server cookie we
cannot verify, is answered normally with a fresh server cookie (RFC 7873
section 5.2.3 and 5.2.4). BADCOOKIE is sent only where RFC 7873 section 5.4
requires it: a query with no question (a client asking only for a cookie)
whose server cookie does not verify.

SipHash-2-4 comes from the C{siphash24} package (C, checked against the
reference vectors and RFC 9018 appendix A in the tests).
"""

from __future__ import annotations

import hmac
import os
import socket
import struct

from siphash24 import siphash24  # type: ignore[import-not-found]
from twisted.internet.interfaces import IReactorTime

#: The EDNS option code of COOKIE.
COOKIE_OPTION = 10
#: Extended RCODE BADCOOKIE.
BADCOOKIE = 23
CLIENT_COOKIE_SIZE = 8
SECRET_SIZE = 16
#: A server cookie older than this is not accepted (RFC 9018 section 4.3)...
MAX_AGE = 3600
#: ... nor one from further in the future than this (clock skew of a set).
MAX_FUTURE = 300
#: A valid server cookie older than this is replaced by a fresh one.
RENEW_AGE = 1800

_VERSION_RESERVED = b"\x01\x00\x00\x00"
_STAMP = struct.Struct("!I")


class MalformedCookie(ValueError):
    """A COOKIE option of a length RFC 7873 section 5.2.2 calls malformed: FORMERR."""


def split_cookie(option: bytes) -> tuple[bytes, bytes]:
    """
    The client cookie (8 bytes) and the server cookie (empty, or 8 to 32
    bytes) of a COOKIE option's data.
    """
    size = len(option)
    if size == CLIENT_COOKIE_SIZE:
        return option, b""
    if 16 <= size <= 40:
        return option[:CLIENT_COOKIE_SIZE], option[CLIENT_COOKIE_SIZE:]
    raise MalformedCookie(f"a COOKIE option of {size} bytes")


def packed_address(host: str) -> bytes:
    """The 4 or 16 bytes of an address string (IPv4-mapped IPv6 as IPv4)."""
    text = host.partition("%")[0]
    if ":" in text:
        packed = socket.inet_pton(socket.AF_INET6, text)
        if packed[:12] == b"\0" * 10 + b"\xff\xff":
            return packed[12:]
        return packed
    return socket.inet_pton(socket.AF_INET, text)


def random_secret() -> bytes:
    """A new secret for one server (several servers: configure one)."""
    return os.urandom(SECRET_SIZE)


class ServerCookies:
    """
    Makes and checks RFC 9018 server cookies with one secret.

    @param secret: 16 bytes.
    @param clock: C{seconds()} (the reactor, or C{task.Clock} in tests).
    """

    def __init__(self, secret: bytes, clock: IReactorTime) -> None:
        if len(secret) != SECRET_SIZE:
            raise ValueError(f"the cookie secret must be {SECRET_SIZE} bytes")
        self._secret = secret
        self.clock = clock

    def _hash(self, client: bytes, head: bytes, address: bytes) -> bytes:
        """SipHash-2-4 of client | version, reserved, timestamp | address."""
        return bytes(siphash24(client + head + address, key=self._secret).digest())

    def make(self, client: bytes, address: bytes, now: int | None = None) -> bytes:
        """A fresh 16-byte server cookie for C{client} at C{address} (packed)."""
        if now is None:
            now = int(self.clock.seconds())
        head = _VERSION_RESERVED + _STAMP.pack(now & 0xFFFFFFFF)
        return head + self._hash(client, head, address)

    def hash_matches(self, client: bytes, server: bytes, address: bytes) -> bool:
        """Is C{server} a version 1 cookie we made for C{client} at C{address} (at any time)?"""
        if len(server) != 16 or server[0] != 1:
            return False
        return hmac.compare_digest(self._hash(client, server[:8], address), server[8:])

    def age(self, server: bytes, now: int | None = None) -> int:
        """Seconds since the cookie's timestamp (negative: in the future), mod 2**32."""
        if now is None:
            now = int(self.clock.seconds())
        age = (now - _STAMP.unpack_from(server, 4)[0]) & 0xFFFFFFFF
        return age - (1 << 32) if age >= 1 << 31 else age

    def answer(self, option: bytes, host: str) -> tuple[bool, bytes, bool]:
        """
        For the COOKIE option data of a query from C{host}:
        C{(valid, reply option data, had a server cookie)}. C{valid} means
        the server cookie is ours, for this client cookie and address, at
        most an hour old and at most five minutes ahead. The reply echoes a
        valid cookie younger than half an hour and makes a fresh one
        otherwise. Raises L{MalformedCookie} for a bad length and
        C{ValueError} if C{host} is not an address.
        """
        client, server = split_cookie(option)
        address = packed_address(host)
        now = int(self.clock.seconds())
        if server:
            if self.hash_matches(client, server, address):
                age = self.age(server, now)
                if -MAX_FUTURE <= age <= MAX_AGE:
                    if age <= RENEW_AGE:
                        return True, option, True
                    return True, client + self.make(client, address, now), True
            return False, client + self.make(client, address, now), True
        return False, client + self.make(client, address, now), False
