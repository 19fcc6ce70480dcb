"""
The DNS server: a L{DNSServerFactory} subclass and its UDP and TCP protocols.

It fixes what Twisted's stock server gets wrong for an authoritative server
(docs/dns.md lists them): NXDOMAIN and NODATA get AA and the
zone's SOA; the opcode is copied into replies, RD into replies to queries
only; names no zone of ours
holds get REFUSED (never an open resolver); UDP answers larger than the
client's limit are truncated with TC; zone transfers are refused over UDP;
malformed messages get FORMERR and never reach the resolver; responses
(QR=1) are never answered. UPDATE messages (opcode 5) are taken as raw bytes
before Twisted's decoder, which corrupts them, and handed to
L{DynDNSServerFactory.handleUpdateWire}. L{DynDNSServerFactory.dispatch}
routes every message once, from its bytes; plain queries may be answered
from the answer cache (L{dyndns_plugin.dns.fastpath}).
"""

from __future__ import annotations

import errno
import struct
import time
from typing import Any, Callable, Iterable, Iterator, TypeVar

from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.names import dns, error, server
from twisted.protocols import policies
from twisted.python.failure import Failure

from dyndns_plugin.connections import ConnectionLimiter, count_timeout
from dyndns_plugin.dns.cookies import (
    BADCOOKIE,
    COOKIE_OPTION,
    MalformedCookie,
    ServerCookies,
)
from dyndns_plugin.dns.fastpath import (
    CACHEABLE_RCODES,
    FLOW,
    MAX_PLAIN,
    RCODE,
    TRUNCATED,
    UDP,
    WIRE,
    AnswerCache,
    CachedAnswer,
    cached_answer,
    plain_query_key,
)
from dyndns_plugin.dns.handlers import MessageChannel, TransferWireHandler, UDPAddress, UpdateWireHandler
from dyndns_plugin.dns.reader import has_tsig, question_type
from dyndns_plugin.dns.resolver import DynDNSResolver, NotReady, QuietResolverChain
from dyndns_plugin.dns.rrl import (
    DROP,
    SLIP,
    ResponseRateLimiter,
    classify_message,
    classify_wire,
)
from dyndns_plugin.dns.wire import (
    error_reply,
    find_option,
    header_reply,
    opcode_of,
    questions_ok,
    truncate_wire,
)
from dyndns_plugin.dns.zones import negative_ttl
from dyndns_plugin.logsample import LogSampler
from dyndns_plugin.twisted_private import (
    EDNSMessage,
    edns_from_message,
    is_subdomain_of,
    message_from_edns,
    opt_variable_option,
    unprocessed_length,
)

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
#: Kinds of L{DynDNSServerFactory.bad_input}: FORMERR for an undecodable
#: message, for a question name that is not a valid name, for a malformed
#: COOKIE option; and internal errors while answering (SERVFAIL).
BAD_INPUT_KINDS = ("malformed", "bad_name", "bad_cookie", "error")
#: Kinds of L{DynDNSServerFactory.cookie_queries}: a client cookie only, a
#: server cookie that verified, one that did not.
COOKIE_RESULTS = ("client_only", "good", "bad")


_COUNTS = struct.Struct("!HHHH")
#: The address type of the channel a message came in on (see L{MessageChannel}).
A = TypeVar("A")


def decode_message(data: bytes) -> EDNSMessage:
    """
    Decode a query with its EDNS OPT record (raises on malformed input,
    including more than one OPT and EDNS options that do not add up). The
    data of its COOKIE option, if any, is kept as C{cookie} (Twisted's
    L{EDNSMessage} drops EDNS options).
    """
    inner = dns.Message()
    inner.fromStr(data)
    # Twisted stops quietly at the end of the data: counts that promise
    # more records than the message holds are malformed.
    if (len(inner.queries), len(inner.answers), len(inner.authority), len(inner.additional)) != _COUNTS.unpack_from(
        data, 4
    ):
        raise ValueError("the section counts do not match the records")
    message = edns_from_message(inner)
    cookie = None
    opts = 0
    for record in inner.additional:
        if record.type == dns.OPT:
            opts += 1
            cookie = find_option(record.payload.data, COOKIE_OPTION)  # type: ignore[union-attr]
    if opts > 1:
        raise ValueError("more than one OPT record")
    message.cookie = cookie
    return message


def encode(message: EDNSMessage) -> bytes:
    """
    The whole message in wire format. Twisted's C{toStr} cuts the body at
    512 bytes in the middle of a record (its inner L{dns.Message} keeps the
    default C{maxSize}), which mangles every larger UDP and TCP answer;
    truncation is done properly by L{DNSDatagramProtocol.writeMessage}.
    A C{cookie_reply} on the message goes into its OPT as the COOKIE option.
    """
    inner = message_from_edns(message)
    inner.maxSize = 0
    cookie = getattr(message, "cookie_reply", None)
    if cookie is not None and message.ednsVersion is not None:
        inner.additional[-1].options = [opt_variable_option(COOKIE_OPTION, cookie)]
    return inner.toStr()


def truncated(message: EDNSMessage) -> bytes:
    """
    The message with every record section emptied and TC set. The question
    is kept only when there is one (a truncated answer to a query with many
    questions must still fit in 512 bytes).
    """
    small = EDNSMessage(
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
        queries=message.queries if len(message.queries) == 1 else [],
    )
    small.cookie_reply = getattr(message, "cookie_reply", None)  # type: ignore[attr-defined]
    return encode(small)


def _set_reading(transport: Any, reading: bool) -> None:
    """Start or stop reading a UDP port (a file descriptor of the reactor: C{udp.Port})."""
    getattr(transport, "startReading" if reading else "stopReading")()


#: Reactor time the messages of one read may take (s), as a slice of bulk
#: work (L{dyndns_plugin.service.slices.SLICE}) may.
READ_BUDGET = 0.002


class ReadBudget:
    """
    Ends a protocol's reading for the reactor turn once the messages read
    in it took L{READ_BUDGET}; the next turn reads on (L{_read_on}). Without
    it, one read (a UDP port reads up to 256 KiB a turn; a TCP connection
    hands over up to 64 KiB of pipelined queries) could hold the reactor
    for as long as a client keeps sending: timers, other connections and
    the slices of bulk work waited.
    """

    transport: Any
    #: When this turn's reading must end (perf_counter); None between turns.
    _read_ends: float | None = None

    def _read_budget(self) -> float:
        """When this turn's reading ends (its budget starts with its first message)."""
        ends = self._read_ends
        if ends is None:
            reactor = getattr(self.transport, "reactor", None)
            if reactor is None:  # not a reactor's transport (a test's): nothing to end
                ends = float("inf")
            else:
                ends = time.perf_counter() + READ_BUDGET
                reactor.callLater(0, self._next_turn)
            self._read_ends = ends
        return ends

    def _next_turn(self) -> None:
        self._read_ends = None
        self._read_on()

    def _read_on(self) -> None:
        """The turn after reading stopped (or ran dry): read again with a new budget."""


class DNSDatagramProtocol(ReadBudget, dns.DNSDatagramProtocol):
    """
    UDP: raw UPDATE hook, FORMERR for garbage, truncation to the limit, and
    response rate limiting (L{DynDNSServerFactory.rrl}) on every datagram
    it writes: answers and errors (L{writeMessage}), raw UPDATE, transfer
    and FORMERR answers (L{writeWire}). Nothing a datagram contains can
    raise out of L{datagramReceived}.

    One read of the port takes at most L{READ_BUDGET} of datagrams
    (L{ReadBudget}): a client that sent its next query as soon as it had
    the answer kept one read going for as long as it liked (a 13 ms turn of
    245 queries while 50,000 changes were applied).
    """

    controller: DynDNSServerFactory
    #: Fires once the users are loaded (L{DynDNSServerFactory.when_loaded});
    #: None: loaded, or nothing to wait for.
    _loading: defer.Deferred[None] | None = None

    #: The port's socket, for answers from the cache (L{_send}); None: write through the transport.
    _socket: Any = None

    def startProtocol(self) -> None:
        self._socket = getattr(self.transport, "socket", None)
        when_loaded = self.controller.when_loaded
        loading = None if when_loaded is None else when_loaded()
        if loading is not None:
            self._loading = loading
            loading.addCallback(self._loaded)

    def _loaded(self, _: object) -> None:
        self._loading = None
        if self.transport is not None and getattr(self.transport, "connected", False):
            _set_reading(self.transport, True)

    def datagramReceived(self, data: bytes, addr: UDPAddress) -> None:
        if len(data) < 12 or data[2] & 0x80:
            return  # too short to answer, or a response: never reply
        controller = self.controller
        ends = self._read_budget()
        try:
            controller.dispatch(data, self, addr)
        except Exception:
            controller.internal_error(Failure(), data, self, addr)
        if time.perf_counter() >= ends:
            self.transport.maxThroughput = 0  # ends the port's read loop after this datagram
        if self._loading is not None:
            # While the users load, every answer is SERVFAIL, and reading on
            # would hand the GIL to and from the loading thread at every
            # system call, which also gives it up at every row: 10,000
            # queries a second kept 1,000,000 users from loading for minutes.
            # What was read is answered; the rest waits in the socket's buffer.
            _set_reading(self.transport, False)

    def _read_on(self) -> None:
        port = self.transport
        if port is not None:
            port.maxThroughput = type(port).maxThroughput

    def peer_host(self, address: UDPAddress) -> str | None:
        """The sender's host: every datagram carries its own."""
        return address[0]

    def is_open(self) -> bool:
        """A UDP port answers until it stops listening."""
        return True

    def writeMessage(self, message: Any, address: UDPAddress) -> None:
        rrl = self.controller.rrl
        if rrl is not None and not getattr(message, "cookie_valid", False):
            prefix = rrl.prefix_of(address[0])
            if prefix >= 0:
                verdict = rrl.take(prefix, *classify_message(message))
                if verdict == DROP:
                    return
                if verdict == SLIP:
                    self.transport.write(truncated(message), address)
                    return
        wire = encode(message)
        limit = getattr(message, "udpLimit", 512)
        if len(wire) > limit:
            wire = truncated(message)
        self.transport.write(wire, address)

    def writeCached(self, ident: bytes, answer: CachedAnswer, address: UDPAddress) -> None:
        """
        A cached answer under the query's C{ident}: rate limited as
        L{writeMessage} limits the full path's answer (the same flow, the
        same truncated slip), and truncated to the query's UDP limit.
        """
        rrl = self.controller.rrl
        if rrl is not None:
            prefix = rrl.prefix_of(address[0])
            if prefix >= 0:
                verdict = rrl.take(prefix, *answer[FLOW])
                if verdict == DROP:
                    return
                if verdict == SLIP:
                    self.transport.write(ident + answer[TRUNCATED], address)
                    return
        self._send(ident + answer[UDP], address)

    def _send(self, data: bytes, address: UDPAddress) -> None:
        """
        C{data} to C{address}, a sender's address as the socket read it:
        straight to the socket (Twisted's C{write} checks the address's form
        four times, ~1 us of the ~9 us an answer costs). A full send buffer
        or a refused peer loses the datagram, as the network may.
        """
        sock = self._socket
        if sock is None:
            self.transport.write(data, address)
            return
        try:
            sock.sendto(data, address)
        except InterruptedError:
            self.transport.write(data, address)
        except (BlockingIOError, ConnectionRefusedError):
            pass
        except OSError as e:
            if e.errno != errno.ENOBUFS:
                raise

    def writeWire(self, wire: bytes, address: UDPAddress) -> None:
        rrl = self.controller.rrl
        if rrl is not None:
            prefix = rrl.prefix_of(address[0])
            if prefix >= 0:
                verdict = rrl.take(prefix, *classify_wire(wire))
                if verdict == DROP:
                    return
                if verdict == SLIP:
                    wire = truncate_wire(wire)
        self.transport.write(wire, address)


class DNSStreamProtocol(ReadBudget, dns.DNSProtocol, policies.TimeoutMixin):
    """
    TCP: raw UPDATE hook, FORMERR for garbage, an idle timeout (reset by
    each complete message and each answer written), and a deadline for each
    message from its first byte to its last that activity does not move.
    The factory sets both from its C{tcp_idle_timeout} and
    C{tcp_message_timeout}. Pipelined queries are answered L{READ_BUDGET}
    of them a reactor turn (L{ReadBudget}): the connection stops reading
    meanwhile.
    """

    idleTimeout: float | None = TCP_IDLE_TIMEOUT
    messageTimeout: float | None = TCP_MESSAGE_TIMEOUT
    _message_call: Any = None
    _lost = False
    controller: DynDNSServerFactory

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
        pending = unprocessed_length(self)
        super().dataReceived(data)
        left = unprocessed_length(self)
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
        transport = self.transport
        if getattr(transport, "disconnecting", False):
            return  # closing after garbage: later messages are not read
        if len(data) < 12 or data[2] & 0x80:
            # Closed, not aborted: answers to earlier queries on this
            # connection are still in the write buffer and go out first.
            transport.loseConnection()  # type: ignore[union-attr]
            return
        controller = self.controller
        ends = self._read_budget()
        try:
            controller.dispatch(data, self, None)
        except Exception:
            controller.internal_error(Failure(), data, self, None)
        if time.perf_counter() >= ends and not self.paused and not self._lost:
            self.pauseProducing()  # what is left of this read waits for the next turn

    def _read_on(self) -> None:
        if self.paused and not self._lost:
            self.resumeProducing()  # answers what was left, with a new budget

    def peer_host(self, address: None = None) -> str | None:
        """The host at the other end of the connection (None: not an IP peer)."""
        transport = self.transport
        if transport is None:
            return None
        return getattr(transport.getPeer(), "host", None)

    def is_open(self) -> bool:
        """False once the connection is gone (a transfer stops writing then)."""
        transport = self.transport
        return transport is not None and bool(getattr(transport, "connected", False))

    def writeMessage(self, message: Any, address: None = None) -> None:
        self.sendString(encode(message))

    def writeCached(self, ident: bytes, answer: CachedAnswer, address: None = None) -> None:
        """A cached answer under the query's C{ident}, whole (no truncation on TCP)."""
        self.sendString(ident + answer[WIRE])

    def writeWire(self, wire: bytes, address: None = None) -> None:
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
    _messageFactory = EDNSMessage  # type: ignore[assignment]
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
    #: Answers to plain queries (L{AnswerCache}); None: every query takes
    #: the full path. Set it only with its invalidation wired up
    #: (L{dyndns_plugin.dns.fastpath.attach_answer_cache}).
    answers: AnswerCache | None = None
    #: Returns None once the users are loaded, else a Deferred that fires
    #: then (L{DynDNSService.when_loaded}): UDP ports read no more than one
    #: batch until it fires. None: UDP never waits.
    when_loaded: Callable[[], defer.Deferred[None] | None] | None = None

    def __init__(
        self,
        dyndns: DynDNSResolver | None = None,
        authorities: Iterable[Any] = (),
        caches: Any = None,
        clients: Any = None,
        verbose: int = 0,
        update_handler: UpdateWireHandler | None = None,
        transfer_handler: TransferWireHandler | None = None,
        clock: Any = None,
    ) -> None:
        chain = ([dyndns] if dyndns is not None else []) + list(authorities)
        super().__init__(authorities=chain, caches=caches, clients=clients, verbose=verbose)
        # Twisted's chain logs a debug line per query of a type it has no
        # lookup method for (383 bytes of log for a 39-byte query).
        self.resolver = QuietResolverChain(self.resolver.resolvers)
        if clock is None:
            from twisted.internet import reactor as clock
        #: C{seconds()} for the rate limiter, cookies and log sampling.
        self.clock = clock
        #: Untrusted input we refused or failed on, by kind (for /metrics;
        #: see L{BAD_INPUT_KINDS}); never a log line each.
        self.bad_input = dict.fromkeys(BAD_INPUT_KINDS, 0)
        #: Queries with a COOKIE option, by what it held (for /metrics).
        self.cookie_queries = dict.fromkeys(COOKIE_RESULTS, 0)
        self.log_sample = LogSampler(log, clock)
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

    def dispatch(self, data: bytes, protocol: MessageChannel[A], address: A) -> None:
        """
        The one routing point for a message (at least a header, QR=0) from
        C{address} (None on TCP): header and question are read once from
        the bytes. A plain query (L{plain_query_key}) is answered from the
        answer cache or takes the full path; UPDATE goes to
        L{handleUpdateWire}, a transfer request to L{handleTransferWire},
        everything else (NOTIFY, other opcodes, unusual or malformed
        queries) to the full path (L{decode} then L{messageReceived}).
        """
        answers = self.answers
        if answers is not None and len(data) <= MAX_PLAIN and not self.verbose:
            # Only plain queries' keys (the bytes after the ID) are ever
            # stored, so bytes found there read as a plain query before:
            # no need to read them again (~1 us of an answer).
            answer = answers.entries.get(data[2:])
            if answer is not None:
                self.replied(answer[RCODE])
                protocol.writeCached(data[:2], answer, address)
                return
        opcode = (data[2] >> 3) & 0xF
        if opcode == dns.OP_QUERY:
            key = plain_query_key(data)
            if key is not None:
                self._plain_query(key, data, protocol, address)
                return
            if self.is_transfer(data):
                self.handleTransferWire(data, protocol, address)
                return
        elif opcode == dns.OP_UPDATE:
            self.handleUpdateWire(data, protocol, address)
            return
        message = self.decode(data, protocol, address)
        if message is not None:
            self.messageReceived(message, protocol, address)

    def _plain_query(self, key: bytes, data: bytes, protocol: MessageChannel[A], address: A) -> None:
        """A plain query whose answer is not cached (L{dispatch} looked): the full path, which caches it."""
        answers = self.answers
        message = self.decode(data, protocol, address)
        if message is None:
            return
        if answers is not None and not self.verbose:
            message.cache_key = key
            message.cache_generation = answers.generation
        self.messageReceived(message, protocol, address)

    def _cached_answer(self, key: bytes, message: Any) -> tuple[bytes, CachedAnswer]:
        """
        The full path's answer C{message} to the plain query C{key}, encoded
        as the protocols would send it, stored in the cache unless
        something changed since the query came in. Returns its ID bytes and
        the answer.
        """
        answers = self.answers
        assert answers is not None  # only plain queries with a cache get a key
        wire = encode(message)
        slip = truncated(message)
        udp = wire if len(wire) <= getattr(message, "udpLimit", 512) else slip
        owner = answers.owner_of(message.queries[0].name.name)
        answer = cached_answer(wire[2:], udp[2:], slip[2:], message.rCode, classify_message(message), owner)
        # Only answers without the SOA outlive a new zone serial.
        positive = (
            message.rCode == dns.OK
            and bool(message.answers)
            and not message.authority
            and all(rr.type != dns.SOA for rr in message.answers)
        )
        answers.store(key, message.cache_generation, answer, positive)
        return wire[:2], answer

    def decode(self, data: bytes, protocol: MessageChannel[A], address: A) -> Any:
        """
        The decoded query, or None after answering FORMERR (header only, no
        question echoed) to a question that cannot be read strictly or to a
        message Twisted cannot decode. Counted, never logged each.
        """
        if questions_ok(data):
            try:
                return decode_message(data)
            except Exception as e:
                kind = "malformed"
                reason = str(e)
        else:
            kind = "bad_name"
            reason = "a question name that is not a valid name"
        self.bad_input[kind] += 1
        self.log_sample.info(
            "dns-" + kind,
            "FORMERR for a message from {peer}: {reason}",
            peer=self._peer(protocol, address),
            reason=reason,
        )
        self._raw_error(data, protocol, address, dns.EFORMAT)
        return None

    def _raw_error(self, data: bytes, protocol: MessageChannel[A], address: A, rcode: int) -> None:
        """A header-only error answer to C{data} (rate limited over UDP)."""
        reply = error_reply(data, rcode)
        if reply is not None:
            self.replied(rcode)
            protocol.writeWire(reply, address)

    @staticmethod
    def _peer(protocol: MessageChannel[A], address: A) -> str | None:
        return protocol.peer_host(address)

    def internal_error(self, failure: Failure, data: bytes, protocol: MessageChannel[A], address: A) -> None:
        """
        Something raised while handling C{data}: counted, a sampled log
        line, and SERVFAIL (header only) if an answer can still be sent.
        Never raises.
        """
        self.bad_input["error"] += 1
        try:
            if self.log_sample.allow("dns-error"):
                log.failure(
                    "handling a DNS message from {peer} failed",
                    failure,
                    peer=self._peer(protocol, address),
                )
            self._raw_error(data, protocol, address, dns.ESERVER)
        except Exception:
            pass

    def _query_failed(self, failure: Failure, protocol: Any, message: Any, address: Any) -> None:
        """The end of every query's Deferred: nothing is left unhandled."""
        self.bad_input["error"] += 1
        try:
            if self.log_sample.allow("dns-error"):
                log.failure(
                    "answering a query from {peer} failed",
                    failure,
                    peer=self._peer(protocol, address),
                )
            self._send_servfail(protocol, message, address)
        except Exception:
            pass

    def _send_servfail(self, protocol: Any, message: Any, address: Any) -> None:
        self.replied(dns.ESERVER)
        rd = message.recDes and message.opCode == dns.OP_QUERY  # RD only in answers to queries
        protocol.writeWire(header_reply(message.id, message.opCode, rd, dns.ESERVER), address)

    def _check_cookie(self, message: Any, proto: MessageChannel[A], address: A, option: bytes) -> bool:
        """
        RFC 7873 for a query with a COOKIE option: FORMERR for a bad
        length; otherwise the reply cookie and whether the query proved its
        address (C{cookie_valid}: not rate limited) go onto the message. A
        query without a question (only asking for a cookie) is answered
        here. False if the query has been answered.
        """
        host = self._peer(proto, address)
        if not isinstance(host, str):
            return True  # not an IP peer: no cookie
        try:
            valid, reply, had_server = self.cookies.answer(option, host)  # type: ignore[union-attr]
        except MalformedCookie:
            self.bad_input["bad_cookie"] += 1
            self._reply(proto, message, address, dns.EFORMAT)
            return False
        except (ValueError, OSError):
            return True  # not an IP peer (a test transport): no cookie
        message.cookie_valid = valid
        message.cookie_reply = reply
        self.cookie_queries["good" if valid else "bad" if had_server else "client_only"] += 1
        if not message.queries and message.opCode == dns.OP_QUERY:
            # RFC 7873 section 5.4: a query for a cookie alone.
            self._reply(proto, message, address, dns.OK if valid or not had_server else BADCOOKIE)
            return False
        return True

    # Twisted's signature: the address defaults to None (TCP).
    def messageReceived(self, message: Any, proto: MessageChannel[A], address: A = None) -> None:  # type: ignore[assignment]
        # Twisted's sendReply logs the time since timeReceived, which only its
        # own messageReceived sets: our early replies would crash without it.
        message.timeReceived = time.time()
        if message.answer:
            return
        option = getattr(message, "cookie", None)
        if option is not None and self.cookies is not None:
            if not self._check_cookie(message, proto, address, option):
                return
        if message.ednsVersion is not None and message.ednsVersion > 0:
            self._reply(proto, message, address, EBADVERS)
            return
        if message.opCode == dns.OP_QUERY and len(message.queries) != 1:
            # FORMERR without the questions, as BIND answers: echoing 100
            # questions would amplify the query.
            message.queries = []
            self._reply(proto, message, address, dns.EFORMAT)
            return
        super().messageReceived(message, proto, address)

    def allowQuery(self, message: Any, protocol: MessageChannel[A], address: A) -> bool:
        return True

    def sendReply(self, protocol: Any, message: Any, address: Any) -> None:
        on_reply = self.on_reply
        if on_reply is not None:
            on_reply(message.rCode)
        try:
            key = getattr(message, "cache_key", None)
            if key is not None and message.rCode in CACHEABLE_RCODES:
                ident, answer = self._cached_answer(key, message)
                protocol.writeCached(ident, answer, address)
            elif self.verbose:
                super().sendReply(protocol, message, address)
            # Twisted's own formats a "Processed query in" log line for every
            # reply even when it is not logged; this skips it (~0.6 us a query).
            else:
                protocol.writeMessage(message, address)
        except Exception:
            # An answer that cannot be encoded: SERVFAIL without it.
            self._query_failed(Failure(), protocol, message, address)

    def replied(self, rcode: int) -> None:
        """Count an answer sent as raw bytes (see L{on_reply})."""
        on_reply = self.on_reply
        if on_reply is not None:
            on_reply(rcode)

    def _reply(self, proto: Any, message: Any, address: Any, rcode: int) -> None:
        response = self._responseFromMessage(message=message, rCode=rcode)
        self.sendReply(proto, response, address)

    def handleQuery(self, message: Any, protocol: MessageChannel[A], address: A) -> Any:
        query = message.queries[0]
        if query.type in (dns.AXFR, dns.IXFR):
            # Without a transfer handler (which takes these as raw bytes)
            # transfers are not offered.
            self._reply(protocol, message, address, dns.EREFUSED)
            return None
        if query.cls not in (dns.IN, dns.ANY):
            self._reply(protocol, message, address, dns.EREFUSED)
            return None
        d = super().handleQuery(message, protocol, address)
        d.addErrback(self._query_failed, protocol, message, address)
        return d

    def handleInverseQuery(self, message: Any, protocol: MessageChannel[A], address: A) -> None:
        self._reply(protocol, message, address, dns.ENOTIMP)

    def handleStatus(self, message: Any, protocol: MessageChannel[A], address: A) -> None:
        self._reply(protocol, message, address, dns.ENOTIMP)

    def handleNotify(self, message: Any, protocol: MessageChannel[A], address: A) -> None:
        """
        A NOTIFY for one of our zones is acknowledged (we are its primary,
        there is nothing to refresh); for any other name NOTAUTH.
        """
        ours = len(message.queries) == 1 and any(
            zone.soa[0] == message.queries[0].name.name.lower() for zone in self.zones
        )
        response = self._responseFromMessage(
            message=message,
            rCode=dns.OK if ours else ENOTAUTH,
        )
        response.auth = ours
        self.sendReply(protocol, response, address)

    def handleOther(self, message: Any, protocol: MessageChannel[A], address: A) -> None:
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

    def handleTransferWire(self, data: bytes, protocol: MessageChannel[A], address: A) -> None:
        """
        An AXFR or IXFR query as raw bytes (its TSIG covers them): over UDP
        one answer, over TCP the messages written one per turn of the
        reactor, so a large zone does not stop other clients.
        """
        peer = protocol.peer_host(address)
        assert self.transfer_handler is not None  # is_transfer() said so
        messages = self.transfer_handler.answer_transfer(data, peer, udp=address is not None)
        if address is not None:
            for message in messages:
                self.replied(message[3] & 0xF)
                protocol.writeWire(message, address)
                break
            return

        def write_all() -> Iterator[None]:
            first = True
            for message in messages:
                if not protocol.is_open():
                    return
                if first:
                    self.replied(message[3] & 0xF)
                    first = False
                protocol.writeWire(message, address)
                yield None

        def failed(failure: Failure) -> None:
            self.bad_input["error"] += 1
            if self.log_sample.allow("dns-transfer-error"):
                log.failure("zone transfer to {peer} failed", failure, peer=peer)

        task.cooperate(write_all()).whenDone().addErrback(failed)

    def handleUpdateWire(self, data: bytes, protocol: MessageChannel[A], address: A) -> None:
        """
        An RFC 2136 UPDATE as raw bytes, for the L{UpdateHandler}; without
        one, updates are not accepted (NOTIMP).
        """
        if self.update_handler is None:
            reply = error_reply(data, dns.ENOTIMP)
            if reply is not None:
                protocol.writeWire(reply, address)
            return
        peer = protocol.peer_host(address)

        def send(reply: bytes | None) -> None:
            if reply is not None:
                protocol.writeWire(reply, address)

        def failed(failure: Failure) -> None:
            self.bad_input["error"] += 1
            if self.log_sample.allow("dns-update-error"):
                log.failure("UPDATE from {peer} failed", failure, peer=peer)
            send(error_reply(data, dns.ESERVER))

        d = defer.ensureDeferred(self.update_handler.handle_update_wire(data, peer))
        d.addCallback(send).addErrback(failed)

    # -- responses

    def _responseFromMessage(
        self,
        message: Any,
        rCode: int = dns.OK,
        answers: Any = None,
        authority: Any = None,
        additional: Any = None,
    ) -> Any:
        response = super()._responseFromMessage(message, rCode, answers, authority, additional)
        response.opCode = message.opCode
        # RD only in answers to queries (BIND clears it for other opcodes).
        response.recDes = message.recDes if message.opCode == dns.OP_QUERY else False
        key = getattr(message, "cache_key", None)
        if key is not None:
            response.cache_key = key
            response.cache_generation = message.cache_generation
        response.cookie_reply = getattr(message, "cookie_reply", None)
        response.cookie_valid = getattr(message, "cookie_valid", False)
        response.auth = response.auth or any(rr.auth for rr in response.authority if rr.type == dns.SOA)
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
            if is_subdomain_of(name, origin):
                if best is None or len(origin) > len(best.soa[0]):
                    best = zone
        return best

    def _negative_soa(self, name: bytes) -> list[dns.RRHeader]:
        zone = self._zone_for(name)
        if zone is None:
            return []
        origin, soa = zone.soa
        return [dns.RRHeader(origin, dns.SOA, dns.IN, negative_ttl(soa), soa, auth=True)]

    def gotResolverError(self, failure: Failure, protocol: Any, message: Any, address: Any) -> None:
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
                self.bad_input["error"] += 1
                if self.log_sample.allow("dns-lookup-error"):
                    log.failure("lookup of {name!r} failed", failure, name=name)
        response = self._responseFromMessage(message=message, rCode=rcode, authority=authority)
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
                tcp.getHost().port,
                DNSDatagramProtocol(factory),
                interface=interface,
                maxPacketSize=65535,
            )
        except CannotListenError:
            tcp.stopListening()
            if attempt == attempts - 1:
                raise
            continue
        return udp, tcp
    raise AssertionError("unreachable")
