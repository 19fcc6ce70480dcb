"""
GnuDIP: the logic both GnuDIP transports share, and the direct TCP protocol.

The client proves it knows the password by sending
C{md5hex(md5hex(password) + "." + salt)} for a salt the server chose, so the
server needs the user's MD5 verifier (kept only for users created with
C{--gnudip}). Request codes: 0 registers the given address (without one, the
peer's: ez-ipupdate relies on that), 1 goes offline, 2 registers the address
the server sees and returns it; code 0 with C{0.0.0.0} means offline. The
domain field may be the suffix (GnuDIP) or the full C{<user>.<suffix>} (the
original plug-in). An IPv6 address (given, or the peer's for code 2)
updates AAAA: our extension.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import string
from typing import Any, Callable

import attrs
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols import basic, policies

from dyndns_plugin.auth import DisabledUser
from dyndns_plugin.model import IPAddress, ValidationError, parse_address
from dyndns_plugin.service import DynDNSService

log = Logger()

SALT_ALPHABET = string.ascii_letters + string.digits
SALT_LENGTH = 10

#: Reply codes of both transports.
RETC_OK = 0
RETC_FAILED = 1
RETC_OFFLINE = 2


def make_salt() -> str:
    """Ten characters of [A-Za-z0-9] from a secure random source."""
    return "".join(secrets.choice(SALT_ALPHABET) for _ in range(SALT_LENGTH))


def gnudip_hash(md5_verifier: str, salt: str) -> str:
    """What a client sends: md5hex(md5hex(password) + "." + salt)."""
    return hashlib.md5(f"{md5_verifier}.{salt}".encode("ascii")).hexdigest()


@attrs.frozen
class GnuDIPRequest:
    """One update request, from a TCP line or HTTP parameters."""

    user: str
    hash: str
    domain: str
    code: int
    address: str | None = None


def parse_line(line: str) -> GnuDIPRequest:
    """
    Parse C{user:hash:domain:code[:address]}. An IPv6 address contains
    colons itself, so everything after the fourth field is the address.
    """
    parts = line.strip().split(":", 4)
    if len(parts) < 4:
        raise ValueError("expected user:hash:domain:code[:address]")
    user, hash_, domain, code = parts[:4]
    if code not in ("0", "1", "2"):
        raise ValueError(f"unknown request code {code!r}")
    address = parts[4] if len(parts) == 5 and parts[4] else None
    return GnuDIPRequest(user, hash_, domain, int(code), address)


@attrs.frozen
class Outcome:
    """The reply code and, for code 2, the address registered."""

    retc: int
    address: IPAddress | None = None


async def perform(
    service: DynDNSService,
    checker: Any,
    request: GnuDIPRequest,
    salt: str,
    peer: IPAddress | None,
    method: str,
    *,
    peer_fallback: bool,
) -> Outcome:
    """
    Authenticate and carry out one GnuDIP request through the service.

    @param peer_fallback: code 0 without an address uses the peer's (TCP,
        as ez-ipupdate needs); over HTTP that is an error, as in GnuDIP.
    """
    user_id = request.user.lower()
    suffix = service.suffix
    domain = request.domain.lower().rstrip(".")
    if domain not in (suffix, f"{user_id}.{suffix}"):
        log.info("gnudip: {user} sent domain {domain!r}: refused", user=user_id, domain=domain)
        return Outcome(RETC_FAILED)
    try:
        await checker.check_gnudip(user_id, salt, request.hash)
    except UnauthorizedLogin as e:
        log.info("gnudip: failed login for {user} via {method}", user=user_id, method=method)
        if not isinstance(e, DisabledUser):
            service.auth_failed(method)
        return Outcome(RETC_FAILED)
    client = None if peer is None else str(peer)
    address: IPAddress | None
    if request.code == 2:
        address = peer
    elif request.code == 0 and request.address is not None:
        if request.address.strip() == "0.0.0.0":
            address = None
        else:
            try:
                address = parse_address(request.address)
            except ValidationError:
                return Outcome(RETC_FAILED)
    elif request.code == 0 and peer_fallback:
        address = peer
    elif request.code == 0:
        return Outcome(RETC_FAILED)
    else:
        address = None
    if address is None:
        if request.code == 2 or (request.code == 0 and request.address is None):
            return Outcome(RETC_FAILED)  # no peer address to register
        result = await service.set_offline(user_id, method, client)
        return Outcome(RETC_OFFLINE if result.ok else RETC_FAILED)
    result = await service.update(user_id, [address], None, method, client)
    if not result.ok:
        return Outcome(RETC_FAILED)
    return Outcome(RETC_OK, address if request.code == 2 else None)


def _peer(transport: Any) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(transport.getPeer().host)
    except (AttributeError, ValueError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class GnuDIPProtocol(basic.LineReceiver, policies.TimeoutMixin):
    """
    One GnuDIP TCP exchange: salt and a bare LF (a CRLF breaks the
    reference client), one request line (LF or CRLF), one reply, close.
    An over-long line or a silent client is cut off with an abort, which a
    peer that does not read cannot stall.
    """

    delimiter = b"\n"
    MAX_LENGTH = 512
    factory: "GnuDIPFactory"

    def connectionMade(self) -> None:
        self.salt = self.factory.salt_source()
        self._answered = False
        self.setTimeout(self.factory.timeout)
        self.transport.write(self.salt.encode("ascii") + b"\n")  # type: ignore[union-attr]

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)
        self.factory.release(self)

    def timeoutConnection(self) -> None:
        self.transport.abortConnection()  # type: ignore[union-attr]

    def lineLengthExceeded(self, line: bytes) -> None:
        self.transport.abortConnection()  # type: ignore[union-attr]

    def lineReceived(self, line: bytes) -> None:
        if self._answered:
            return
        self._answered = True
        self.pauseProducing()  # one request per connection
        try:
            request = parse_line(line.decode("ascii").rstrip("\r"))
        except (UnicodeDecodeError, ValueError):
            log.info("gnudip: malformed line from {peer}", peer=str(_peer(self.transport)))
            self._reply(Outcome(RETC_FAILED))
            return
        d = self.factory.perform(request, self.salt, _peer(self.transport))
        d.addCallback(self._reply)
        d.addErrback(self._failed)

    def _failed(self, failure: Any) -> None:
        log.failure("gnudip request failed", failure)
        self._reply(Outcome(RETC_FAILED))

    def _reply(self, outcome: Outcome) -> None:
        if outcome.retc == RETC_OK and outcome.address is not None:
            text = f"0:{outcome.address}\n"
        else:
            text = f"{outcome.retc}\n"
        self.transport.write(text.encode("ascii"))  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class GnuDIPFactory(ServerFactory):
    """
    @param salt_source: makes the salt for each connection (tests inject a
        fixed one to replay real clients' transcripts).
    @param max_per_source: concurrent connections allowed from one address.
    """

    protocol = GnuDIPProtocol  # type: ignore[assignment]

    def __init__(
        self,
        service: DynDNSService,
        checker: Any,
        *,
        timeout: float = 30,
        max_per_source: int = 8,
        salt_source: Callable[[], str] = make_salt,
    ) -> None:
        self.service = service
        self.checker = checker
        self.timeout = timeout
        self.max_per_source = max_per_source
        self.salt_source = salt_source
        self._per_source: dict[str, int] = {}

    def buildProtocol(self, addr: Any) -> Protocol | None:
        host = getattr(addr, "host", "")
        if self._per_source.get(host, 0) >= self.max_per_source:
            log.info("gnudip: too many connections from {peer}", peer=host)
            return None
        self._per_source[host] = self._per_source.get(host, 0) + 1
        proto: Any = super().buildProtocol(addr)
        proto._source = host
        return proto

    def release(self, proto: GnuDIPProtocol) -> None:
        host = getattr(proto, "_source", None)
        if host is None:
            return
        left = self._per_source.get(host, 1) - 1
        if left > 0:
            self._per_source[host] = left
        else:
            self._per_source.pop(host, None)
        proto._source = None  # type: ignore[attr-defined]

    def perform(self, request: GnuDIPRequest, salt: str, peer: IPAddress | None) -> Any:
        from twisted.internet import defer

        return defer.ensureDeferred(
            perform(self.service, self.checker, request, salt, peer, "gnudip-tcp",
                    peer_fallback=True)
        )
