"""
The DNS server: a L{DNSServerFactory} subclass and its UDP and TCP protocols.

It fixes what Twisted's stock server gets wrong for an authoritative server
(see spec/twisted-notes.md section 1.2): NXDOMAIN and NODATA get AA and the
zone's SOA; RD and the opcode are copied into replies; names no zone of ours
holds get REFUSED (never an open resolver); UDP answers larger than the
client's limit are truncated with TC; zone transfers are refused over UDP;
malformed messages get FORMERR and never reach the resolver; responses
(QR=1) are never answered. UPDATE messages (opcode 5) are taken as raw bytes
before Twisted's decoder, which corrupts them, and handed to
L{DynDNSServerFactory.handleUpdateWire}.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator

from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.names import dns, error, server
from twisted.protocols import policies
from twisted.python.failure import Failure

from dyndns_plugin.connections import ConnectionLimiter, count_timeout
from dyndns_plugin.dns.reader import has_tsig, question_type
from dyndns_plugin.dns.resolver import DynDNSResolver, NotReady
from dyndns_plugin.dns.wire import error_reply, opcode_of
from dyndns_plugin.dns.zones import negative_ttl

log = Logger()

#: The UDP payload size we advertise in EDNS (the DNS flag day 2020 value).
EDNS_PAYLOAD_SIZE = 1232
#: Idle TCP connections are closed after this many seconds.
TCP_IDLE_TIMEOUT = 30
#: Seconds from the first byte of a TCP message to its last (a client that
#: sends the length and then one byte a second is closed then).
TCP_MESSAGE_TIMEOUT = 10
EBADVERS = 16
ENOTAUTH = 9


def decode_message(data: bytes) -> dns._EDNSMessage:
    """Decode a query with its EDNS OPT record (raises on malformed input)."""
    message = dns._EDNSMessage()
    message.fromStr(data)
    return message


def encode(message: dns._EDNSMessage) -> bytes:
    """
    The whole message in wire format. Twisted's C{toStr} cuts the body at
    512 bytes in the middle of a record (its inner L{dns.Message} keeps the
    default C{maxSize}), which mangles every larger UDP and TCP answer;
    truncation is done properly by L{DNSDatagramProtocol.writeMessage}.
    """
    inner = message._toMessage()
    inner.maxSize = 0
    return inner.toStr()


def truncated(message: dns._EDNSMessage) -> bytes:
    """The message with every record section emptied and TC set."""
    small = dns._EDNSMessage(
        id=message.id,
        answer=message.answer,
        opCode=message.opCode,
        auth=message.auth,
        trunc=True,
        recDes=message.recDes,
        recAv=message.recAv,
        rCode=message.rCode,
        ednsVersion=message.ednsVersion,
        maxSize=message.maxSize,
        queries=message.queries,
    )
    return encode(small)


class DNSDatagramProtocol(dns.DNSDatagramProtocol):
    """UDP: raw UPDATE hook, FORMERR for garbage, truncation to the limit."""

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[2] & 0x80:
            return  # too short to answer, or a response: never reply
        if opcode_of(data) == dns.OP_UPDATE:
            self.controller.handleUpdateWire(data, self, addr)
            return
        if self.controller.is_transfer(data):
            self.controller.handleTransferWire(data, self, addr)
            return
        try:
            message = decode_message(data)
        except Exception as e:
            log.debug("malformed query from {peer}: {error}", peer=addr, error=e)
            reply = error_reply(data, dns.EFORMAT)
            if reply is not None:
                self.controller.replied(dns.EFORMAT)
                self.transport.write(reply, addr)
            return
        self.controller.messageReceived(message, self, addr)

    def writeMessage(self, message: Any, address: tuple[str, int]) -> None:
        wire = encode(message)
        limit = getattr(message, "udpLimit", 512)
        if len(wire) > limit:
            wire = truncated(message)
        self.transport.write(wire, address)

    def writeWire(self, wire: bytes, address: tuple[str, int]) -> None:
        self.transport.write(wire, address)


class DNSStreamProtocol(dns.DNSProtocol, policies.TimeoutMixin):
    """
    TCP: raw UPDATE hook, FORMERR for garbage, an idle timeout (reset by
    each complete message and each answer written), and a deadline for each
    message from its first byte to its last that activity does not move.
    The factory sets both from its C{tcp_idle_timeout} and
    C{tcp_message_timeout}.
    """

    idleTimeout: float | None = TCP_IDLE_TIMEOUT
    messageTimeout: float | None = TCP_MESSAGE_TIMEOUT
    _message_call: Any = None
    _lost = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self.setTimeout(self.idleTimeout)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._lost = True
        self.setTimeout(None)
        if self._message_call is not None:
            if self._message_call.active():
                self._message_call.cancel()
            self._message_call = None
        super().connectionLost(reason)

    def timeoutConnection(self) -> None:
        count_timeout(self, "idle")
        self.transport.abortConnection()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        pending = len(self._unprocessed)
        super().dataReceived(data)
        left = len(self._unprocessed)
        call = self._message_call
        if left and left == pending + len(data) and call is not None:
            return  # still the same incomplete message: its deadline runs on
        if call is not None:
            if call.active():
                call.cancel()
            self._message_call = None
        if left and self.messageTimeout and not self._lost:
            # A new incomplete message (its first bytes came in this read).
            self._message_call = self.callLater(self.messageTimeout, self._message_expired)

    def _message_expired(self) -> None:
        self._message_call = None
        count_timeout(self, "message_timeout")
        self.transport.abortConnection()  # type: ignore[union-attr]

    def stringReceived(self, data: bytes) -> None:
        self.resetTimeout()
        if len(data) < 12 or data[2] & 0x80:
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        if opcode_of(data) == dns.OP_UPDATE:
            self.controller.handleUpdateWire(data, self, None)
            return
        if self.controller.is_transfer(data):
            self.controller.handleTransferWire(data, self, None)
            return
        try:
            message = decode_message(data)
        except Exception:
            reply = error_reply(data, dns.EFORMAT)
            if reply is not None:
                self.controller.replied(dns.EFORMAT)
                self.sendString(reply)
            return
        self.controller.messageReceived(message, self)

    def writeMessage(self, message: Any) -> None:
        self.sendString(encode(message))

    def writeWire(self, wire: bytes, address: object = None) -> None:
        self.resetTimeout()
        self.sendString(wire)


class DynDNSServerFactory(server.DNSServerFactory):
    """
    A DNS server factory for an authoritative server with the DynDNS
    resolver in front of its zones.

    @param dyndns: the L{DynDNSResolver}; put first in C{authorities}.
    @param authorities: further authorities (the suffix zone, host zones).
    """

    protocol = DNSStreamProtocol
    _messageFactory = dns._EDNSMessage  # type: ignore[assignment]
    #: Called as C{on_reply(rcode)} for every answer to a query, NOTIFY or
    #: zone transfer request (not UPDATE: its outcome is the service's
    #: update result), e.g. L{dyndns_plugin.metrics.Metrics.count_reply}.
    #: It runs on the query path: keep it to a few hundred nanoseconds.
    on_reply: Callable[[int], Any] | None = None
    #: Caps on TCP connections (L{ConnectionLimiter}); None: none.
    limiter: ConnectionLimiter | None = None
    #: Seconds a TCP connection may sit idle (see L{DNSStreamProtocol}).
    tcp_idle_timeout: float | None = TCP_IDLE_TIMEOUT
    #: Seconds for one TCP message from its first byte to its last.
    tcp_message_timeout: float | None = TCP_MESSAGE_TIMEOUT
    #: Response rate limiting of UDP answers (L{ResponseRateLimiter}); None: off.
    rrl: ResponseRateLimiter | None = None
    #: DNS cookies (L{ServerCookies}); None: COOKIE options are ignored.
    cookies: ServerCookies | None = None


    def __init__(
        self,
        dyndns: DynDNSResolver | None = None,
        authorities: Iterable[Any] = (),
        caches: Any = None,
        clients: Any = None,
        verbose: int = 0,
        update_handler: Any = None,
        transfer_handler: Any = None,
    ) -> None:
        chain = ([dyndns] if dyndns is not None else []) + list(authorities)
        super().__init__(authorities=chain, caches=caches, clients=clients, verbose=verbose)
        self.dyndns = dyndns
        self.update_handler = update_handler
        self.transfer_handler = transfer_handler
        self.zones = [a for a in authorities if getattr(a, "soa", None) is not None]

    def buildProtocol(self, addr: Any) -> Any:
        """A TCP connection, within the caps of L{limiter}."""
        limiter = self.limiter
        if limiter is None:
            return self._build_stream(addr)
        return limiter.build(addr, self._build_stream)

    def _build_stream(self, addr: Any) -> Any:
        proto = super().buildProtocol(addr)
        proto.idleTimeout = self.tcp_idle_timeout
        proto.messageTimeout = self.tcp_message_timeout
        return proto

    # -- dispatch

    def messageReceived(self, message: Any, proto: Any, address: Any = None) -> None:
        # Twisted's sendReply logs the time since timeReceived, which only its
        # own messageReceived sets: our early replies would crash without it.
        message.timeReceived = time.time()
        if message.answer:
            return
        if message.ednsVersion is not None and message.ednsVersion > 0:
            self._reply(proto, message, address, EBADVERS)
            return
        if message.opCode == dns.OP_QUERY and len(message.queries) != 1:
            self._reply(proto, message, address, dns.EFORMAT)
            return
        super().messageReceived(message, proto, address)

    def allowQuery(self, message: Any, protocol: Any, address: Any) -> bool:
        return True

    def sendReply(self, protocol: Any, message: Any, address: Any) -> None:
        on_reply = self.on_reply
        if on_reply is not None:
            on_reply(message.rCode)
        if self.verbose:
            super().sendReply(protocol, message, address)
        # Twisted's own formats a "Processed query in" log line for every
        # reply even when it is not logged; this skips it (~0.6 us a query).
        elif address is None:
            protocol.writeMessage(message)
        else:
            protocol.writeMessage(message, address)

    def replied(self, rcode: int) -> None:
        """Count an answer sent as raw bytes (see L{on_reply})."""
        on_reply = self.on_reply
        if on_reply is not None:
            on_reply(rcode)

    def _reply(self, proto: Any, message: Any, address: Any, rcode: int) -> None:
        response = self._responseFromMessage(message=message, rCode=rcode)
        self.sendReply(proto, response, address)

    def handleQuery(self, message: Any, protocol: Any, address: Any) -> Any:
        query = message.queries[0]
        if query.type in (dns.AXFR, dns.IXFR):
            # Without a transfer handler (which takes these as raw bytes)
            # transfers are not offered.
            self._reply(protocol, message, address, dns.EREFUSED)
            return None
        if query.cls not in (dns.IN, dns.ANY):
            self._reply(protocol, message, address, dns.EREFUSED)
            return None
        return super().handleQuery(message, protocol, address)

    def handleInverseQuery(self, message: Any, protocol: Any, address: Any) -> None:
        self._reply(protocol, message, address, dns.ENOTIMP)

    def handleStatus(self, message: Any, protocol: Any, address: Any) -> None:
        self._reply(protocol, message, address, dns.ENOTIMP)

    def handleNotify(self, message: Any, protocol: Any, address: Any) -> None:
        """
        A NOTIFY for one of our zones is acknowledged (we are its primary,
        there is nothing to refresh); for any other name NOTAUTH.
        """
        ours = len(message.queries) == 1 and any(
            zone.soa[0] == message.queries[0].name.name.lower() for zone in self.zones
        )
        response = self._responseFromMessage(
            message=message, rCode=dns.OK if ours else ENOTAUTH,
        )
        response.auth = ours
        self.sendReply(protocol, response, address)

    def handleOther(self, message: Any, protocol: Any, address: Any) -> None:
        self._reply(protocol, message, address, dns.ENOTIMP)

    def is_transfer(self, data: bytes) -> bool:
        """
        Is this for our transfer handler: an AXFR/IXFR query, or a
        TSIG-signed SOA query (a secondary's refresh check with its transfer
        key, whose answer must be signed too, RFC 8945 section 5.3)?
        """
        if self.transfer_handler is None or opcode_of(data) != dns.OP_QUERY:
            return False
        rdtype = question_type(data)
        if rdtype in (dns.AXFR, dns.IXFR):
            return True
        return rdtype == dns.SOA and has_tsig(data)

    def handleTransferWire(self, data: bytes, protocol: Any, address: Any) -> None:
        """
        An AXFR or IXFR query as raw bytes (its TSIG covers them): over UDP
        one answer, over TCP the messages written one per turn of the
        reactor, so a large zone does not stop other clients.
        """
        if address is not None:
            peer = address[0]
        else:
            peer = getattr(protocol.transport.getPeer(), "host", None)
        messages = self.transfer_handler.handle(data, peer, udp=address is not None)
        if address is not None:
            for message in messages:
                self.replied(message[3] & 0xF)
                protocol.writeWire(message, address)
                break
            return

        def write_all() -> Iterator[None]:
            first = True
            for message in messages:
                if not protocol.transport.connected:
                    return
                if first:
                    self.replied(message[3] & 0xF)
                    first = False
                protocol.writeWire(message)
                yield None

        task.cooperate(write_all()).whenDone().addErrback(
            lambda f: log.failure("zone transfer to {peer} failed", f, peer=peer)
        )

    def handleUpdateWire(self, data: bytes, protocol: Any, address: Any) -> None:
        """
        An RFC 2136 UPDATE as raw bytes, for the L{UpdateHandler}; without
        one, updates are not accepted (NOTIMP).
        """
        if self.update_handler is None:
            reply = error_reply(data, dns.ENOTIMP)
            if reply is not None:
                protocol.writeWire(reply, address)
            return
        if address is not None:
            peer = address[0]
        else:
            peer = getattr(protocol.transport.getPeer(), "host", None)

        def send(reply: bytes | None) -> None:
            if reply is not None:
                protocol.writeWire(reply, address)

        def failed(failure: Failure) -> None:
            log.failure("UPDATE from {peer} failed", failure, peer=peer)
            send(error_reply(data, dns.ESERVER))

        d = defer.ensureDeferred(self.update_handler.handle(data, peer))
        d.addCallback(send).addErrback(failed)

    # -- responses

    def _responseFromMessage(
        self, message: Any, rCode: int = dns.OK, answers: Any = None,
        authority: Any = None, additional: Any = None,
    ) -> Any:
        response = super()._responseFromMessage(
            message, rCode, answers, authority, additional
        )
        response.opCode = message.opCode
        response.recDes = message.recDes
        response.auth = response.auth or any(
            rr.auth for rr in response.authority if rr.type == dns.SOA
        )
        if getattr(message, "ednsVersion", None) is not None:
            response.ednsVersion = 0
            response.maxSize = EDNS_PAYLOAD_SIZE
            response.udpLimit = max(512, min(message.maxSize, EDNS_PAYLOAD_SIZE))
        else:
            response.ednsVersion = None
            response.udpLimit = 512
        return response

    def _zone_for(self, name: bytes) -> Any:
        """The closest enclosing zone of ours, or None."""
        best = None
        for zone in self.zones:
            origin = zone.soa[0]
            if dns._isSubdomainOf(name, origin):
                if best is None or len(origin) > len(best.soa[0]):
                    best = zone
        return best

    def _negative_soa(self, name: bytes) -> list[dns.RRHeader]:
        zone = self._zone_for(name)
        if zone is None:
            return []
        origin, soa = zone.soa
        return [dns.RRHeader(origin, dns.SOA, dns.IN, negative_ttl(soa), soa, auth=True)]

    def gotResolverError(
        self, failure: Failure, protocol: Any, message: Any, address: Any
    ) -> None:
        name = message.queries[0].name.name
        authority: list[dns.RRHeader] = []
        if failure.check(error.DomainError, dns.AuthoritativeDomainError):
            if self.dyndns is not None and self.dyndns.owns(name):
                rcode = dns.OK  # our name, just not this type: NODATA
                authority = self._negative_soa(name)
            elif failure.check(dns.AuthoritativeDomainError):
                rcode = dns.ENAME
                authority = self._negative_soa(name)
            elif self.canRecurse:
                rcode = dns.ENAME
            else:
                rcode = dns.EREFUSED  # not ours: never an open resolver
        else:
            rcode = dns.ESERVER
            if not failure.check(NotReady):
                log.failure("lookup of {name!r} failed", failure, name=name)
        response = self._responseFromMessage(
            message=message, rCode=rcode, authority=authority
        )
        self.sendReply(protocol, response, address)


def listen_dns(
    reactor: Any,
    factory: DynDNSServerFactory,
    port: int,
    interface: str = "",
) -> tuple[Any, Any]:
    """
    Listen for DNS on UDP and TCP on the same C{port} (0 picks a free port
    that is free for both). Returns C{(udpPort, tcpPort)}. For embedders that
    want UPDATE support in their own server.
    """
    attempts = 20 if port == 0 else 1
    for attempt in range(attempts):
        tcp = reactor.listenTCP(port, factory, interface=interface)
        try:
            udp = reactor.listenUDP(
                tcp.getHost().port, DNSDatagramProtocol(factory), interface=interface,
                maxPacketSize=65535,
            )
        except CannotListenError:
            tcp.stopListening()
            if attempt == attempts - 1:
                raise
            continue
        return udp, tcp
    raise AssertionError("unreachable")
