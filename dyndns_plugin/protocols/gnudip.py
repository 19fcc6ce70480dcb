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

import ipaddress
import secrets
import string
from typing import Any, Callable

import attrs
from twisted.internet import defer
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols import basic, policies

from dyndns_plugin.authn import (
    Authenticator,
    ClientUpdate,
    CredentialChecker,
    GnuDIPHash,
    authenticator_for,
)
from dyndns_plugin.connections import ConnectionLimiter, count_timeout, release_connection
from dyndns_plugin.logsample import LogSampler
from dyndns_plugin.methods import Method
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
    checker: CredentialChecker | Authenticator,
    request: GnuDIPRequest,
    salt: str,
    peer: IPAddress | None,
    method: Method,
    *,
    peer_fallback: bool,
) -> Outcome:
    """
    Carry out one GnuDIP request through the seam (L{Authenticator.update}).

    @param peer_fallback: code 0 without an address uses the peer's (TCP,
        as ez-ipupdate needs); over HTTP that is an error, as in GnuDIP.
    """
    user_id = request.user.lower()
    suffix = service.suffix
    domain = request.domain.lower().rstrip(".")
    if domain not in (suffix, f"{user_id}.{suffix}"):
        return Outcome(RETC_FAILED)
    update = ClientUpdate(method, user_id, GnuDIPHash(salt, request.hash), None if peer is None else str(peer))
    address: IPAddress | None = None
    usable = True  # False: refused once the hash is checked
    if request.code == 2:
        address = peer
        usable = peer is not None  # no peer address to register
    elif request.code == 0 and request.address is not None:
        if request.address.strip() != "0.0.0.0":  # 0.0.0.0: offline
            try:
                address = parse_address(request.address)
            except ValidationError:
                usable = False
    elif request.code == 0:
        address = peer if peer_fallback else None
        usable = address is not None
    auth = authenticator_for(checker, service)
    if not usable:
        await auth.authenticate(update, "badaddress")  # a wrong hash still counts as one
        return Outcome(RETC_FAILED)
    if address is None:
        outcome = await auth.update(attrs.evolve(update, offline=True))
        if not outcome.auth.ok:  # GnuDIP has no "try later": a locked source hears 1 too
            return Outcome(RETC_FAILED)
        assert outcome.result is not None
        return Outcome(RETC_OFFLINE if outcome.result.ok else RETC_FAILED)
    outcome = await auth.update(attrs.evolve(update, addresses=(address,)))
    if not outcome.auth.ok or outcome.result is None or not outcome.result.ok:
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
        # Two deadlines from the connection, neither moved by activity: the
        # request line within line_timeout (a real client answers the salt
        # at once), the whole exchange (reply and close) within timeout.
        timeout = self.factory.timeout
        line_timeout = self.factory.line_timeout
        if line_timeout is not None and line_timeout < timeout:
            self._time_after_line = timeout - line_timeout
            self.setTimeout(line_timeout)
        else:
            self._time_after_line = 0.0
            self.setTimeout(timeout)
        self.transport.write(self.salt.encode("ascii") + b"\n")  # type: ignore[union-attr]

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)
        self.factory.release(self)

    def timeoutConnection(self) -> None:
        if self._answered and self._time_after_line > 0:
            # The line came in time: the rest of the exchange's deadline.
            rest, self._time_after_line = self._time_after_line, 0.0
            self.setTimeout(rest)
            return
        count_timeout(self, "timeout" if self._answered else "line_timeout")
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
            self.factory.malformed()
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
    @param max_per_source: concurrent connections allowed from one address
        (IPv6: one /64), when no C{limiter} is given.
    @param line_timeout: seconds from the salt to the request line (None:
        C{timeout}); C{timeout} bounds the whole exchange.
    @param limiter: the caps (L{ConnectionLimiter}); by default one with
        C{max_per_source} and no global cap. A connection over a cap is
        closed at once, before the salt.
    """

    protocol = GnuDIPProtocol  # type: ignore[assignment]

    def __init__(
        self,
        service: DynDNSService,
        checker: CredentialChecker | Authenticator,
        *,
        timeout: float = 30,
        max_per_source: int = 8,
        salt_source: Callable[[], str] = make_salt,
        line_timeout: float | None = None,
        limiter: ConnectionLimiter | None = None,
    ) -> None:
        self.service = service
        self.auth = authenticator_for(checker, service)
        self._sample = LogSampler(log, service.clock)
        self.timeout = timeout
        self.line_timeout = line_timeout
        self.salt_source = salt_source
        if limiter is None:
            limiter = ConnectionLimiter("gnudip", max_per_source, None, clock=service.clock)
        self.limiter = limiter

    @property
    def max_per_source(self) -> int:
        return self.limiter.max_per_source

    @max_per_source.setter
    def max_per_source(self, value: int) -> None:
        self.limiter.max_per_source = value

    @property
    def _per_source(self) -> dict[str, int]:
        """Open connections by source (only sources that have some)."""
        return self.limiter.per_source

    def buildProtocol(self, addr: Any) -> Protocol | None:
        return self.limiter.build(addr, super().buildProtocol)  # type: ignore[no-any-return]

    def release(self, proto: GnuDIPProtocol) -> None:
        """Give back C{proto}'s place (idempotent)."""
        release_connection(proto)

    def malformed(self) -> None:
        """A request line that is not GnuDIP: logged only as a bounded sample."""
        self._sample.info("gnudip-malformed", "gnudip: malformed request line")

    def perform(self, request: GnuDIPRequest, salt: str, peer: IPAddress | None) -> defer.Deferred[Outcome]:
        return defer.ensureDeferred(
            perform(self.service, self.auth, request, salt, peer, Method.GNUDIP_TCP, peer_fallback=True)
        )
