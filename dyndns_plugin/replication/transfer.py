"""
Zone transfers to secondaries: AXFR (RFC 5936) and IXFR (RFC 1995), from
raw query bytes (a signed request's TSIG covers the exact bytes) to the
answer's messages.

Transfers are allowed to the configured networks and to the configured TSIG
keys; everything else is REFUSED. AXFR is TCP only; IXFR over UDP gets the
deltas if they fit in 512 bytes, else the current SOA alone (the client then
asks over TCP). The answer is cut into messages of at most
L{MESSAGE_SIZE} bytes, so a zone of any size transfers, and produced lazily
from a snapshot of the published zone taken when the request arrives, so it
always matches the serial it carries. A signed request gets every message
signed (RFC 8945 section 5.3.1).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Callable, Iterable, Iterator, Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dyndns_plugin.dns.reader import (
    CLASS_IN,
    Labels,
    Malformed,
    Query,
    ShortMessage,
    parse_query,
    soa_serial,
    to_wire,
)
from dyndns_plugin.dns.signing import (
    BADKEY,
    BADSIG,
    BADTIME,
    BADTRUNC,
    FORMERR,
    StreamSigner,
    TSIGKey,
    check_request,
    sign_answer,
    unsigned_error,
)
from dyndns_plugin.dns.wire import error_reply
from dyndns_plugin.dns.zones import negative_ttl
from dyndns_plugin.logsample import LogSampler
from dyndns_plugin.replication.journal import TYPE_SOA, ZoneState, serial_newer
from dyndns_plugin.replication.publisher import ZonePublisher
from dyndns_plugin.store import RR, JournalStep

log = Logger()

TYPE_IXFR, TYPE_AXFR = 251, 252
NOERROR, SERVFAIL, REFUSED, NOTAUTH = 0, 2, 5, 9
#: Bytes per transfer message (TCP allows 65535; smaller messages keep the
#: memory of one write small and let other clients in between).
MESSAGE_SIZE = 16384
_UDP_SIZE = 512
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _owner_wire(name: str, origin: str) -> bytes:
    """The owner name relative to the zone, then a pointer to the question's name."""
    if name == origin:
        return b"\xc0\x0c"
    relative = name[: -(len(origin) + 1)] if origin else name
    return b"".join(bytes((len(label),)) + label for label in relative.encode("ascii").split(b".")) + b"\xc0\x0c"


class _Messages:
    """Packs records into answer messages of at most C{size} bytes."""

    def __init__(self, query: Query, origin: str, size: int) -> None:
        question = query.questions[0]
        self.ident = struct.pack("!H", query.id)
        self.flags = 0x8000 | 0x0400 | (query.flags & 0x0100)  # QR, AA, RD copied
        self.question = (
            b"".join(bytes((len(label),)) + label for label in question.labels)
            + b"\0"
            + struct.pack("!HH", question.rdtype, question.rdclass)
        )
        self.origin = origin
        self.size = size
        self._records: list[bytes] = []
        self._bytes = 12 + len(self.question)

    def add(self, rr: RR) -> bytes | None:
        """Add a record; returns a full message when this one did not fit."""
        name, rdtype, ttl, rdata = rr
        wire = _owner_wire(name, self.origin) + struct.pack("!HHIH", rdtype, CLASS_IN, ttl, len(rdata)) + rdata
        full = None
        if self._records and self._bytes + len(wire) > self.size:
            full = self.finish()
        self._records.append(wire)
        self._bytes += len(wire)
        return full

    def finish(self) -> bytes:
        message = (
            self.ident
            + struct.pack("!HHHHH", self.flags, 1, len(self._records), 0, 0)
            + self.question
            + b"".join(self._records)
        )
        self._records = []
        self._bytes = 12 + len(self.question)
        return message


class TransferHandler:
    """
    Answers AXFR and IXFR queries for the zones of a L{ZonePublisher}.

    @param networks: client addresses allowed without a key.
    @param keys: TSIG keys allowed to transfer, by lower-cased name labels.
    """

    def __init__(
        self,
        publisher: ZonePublisher,
        networks: Sequence[Network] = (),
        keys: Iterable[TSIGKey] = (),
        clock: IReactorTime | None = None,
    ) -> None:
        self.publisher = publisher
        self.networks = tuple(networks)
        self.keys = {key.name: key for key in keys}
        #: Keys that may sign a plain SOA query but never a transfer: users'
        #: keys (certbot's rfc2136 plugin finds the zone with SOA queries
        #: signed with the key it updates with, and needs signed answers).
        self.query_keys: Callable[[Labels], TSIGKey | None] | None = None
        self.clock = clock if clock is not None else publisher.clock
        self.transfers = 0  # answered transfers (AXFR or IXFR), for tests and status
        # Refusals are triggered by whoever sends a query: a bounded sample.
        self._sample = LogSampler(log, self.clock)

    def allowed(self, peer: str | None) -> bool:
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer.split("%")[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def answer_transfer(self, wire: bytes, peer: str | None, udp: bool) -> Iterator[bytes]:
        """The answer's messages, in order (over UDP at most one)."""
        try:
            query = parse_query(wire)
        except ShortMessage:
            return iter(())
        except Malformed as e:
            self._sample.info(
                "transfer-malformed", "malformed transfer request from {peer}: {error}", peer=peer, error=e
            )
            return _one(error_reply(wire, FORMERR))
        if query.flags & 0x8000:
            return iter(())
        if query.opcode != 0 or len(query.questions) != 1:
            return _one(error_reply(wire, FORMERR))
        question = query.questions[0]
        origin = _text(question.key)
        tsig = query.tsig
        key = None
        query_only = False
        now = int(self.clock.seconds())
        if tsig is not None:
            key = self.keys.get(tsig.key)
            if key is None and self.query_keys is not None:
                key = self.query_keys(tsig.key)
                query_only = key is not None
            if key is None or key.algorithm != tsig.algorithm:
                self._sample.info("transfer-badkey", "transfer request from {peer}: unknown key", peer=peer)
                return _one(unsigned_error(self._plain(query, NOTAUTH), tsig, BADKEY))
            verdict = check_request(key, wire, tsig, query.arcount, now)
            if verdict == FORMERR:
                return _one(error_reply(wire, FORMERR))
            if verdict in (BADSIG, BADTRUNC):
                self._sample.info("transfer-badsig", "transfer request from {peer}: bad signature", peer=peer)
                return _one(unsigned_error(self._plain(query, NOTAUTH), tsig, verdict))
            if verdict == BADTIME:
                return _one(sign_answer(self._plain(query, NOTAUTH), key, tsig, BADTIME, now))

        def error(rcode: int) -> Iterator[bytes]:
            message = self._plain(query, rcode)
            if key is not None and tsig is not None:
                message = sign_answer(message, key, tsig, 0, now)
            return _one(message)

        if query_only and question.rdtype != TYPE_SOA:
            self._sample.info("transfer-refused", "transfer of {zone} refused to {peer}", zone=origin, peer=peer)
            return error(REFUSED)
        if key is None and not self.allowed(peer):
            self._sample.info("transfer-refused", "transfer of {zone} refused to {peer}", zone=origin, peer=peer)
            return error(REFUSED)
        if question.rdclass != CLASS_IN:
            return error(REFUSED)
        if not self.publisher.ready:
            return error(SERVFAIL)
        zone = self.publisher.zone_for(origin) if origin is not None else None
        if zone is None and query_only and origin is not None:
            inside = self.publisher.zone_containing(origin)
            if inside is not None and key is not None and tsig is not None:
                # A name below the apex: no SOA there (NODATA, the zone's SOA as authority).
                return _one(sign_answer(self._no_data(query, inside), key, tsig, 0, now))
        if zone is None:
            return error(NOTAUTH)
        signer = None
        room = 0  # bytes each message keeps free for its TSIG record
        if key is not None and tsig is not None:
            signer = StreamSigner(key, tsig, now)
            room = len(to_wire(tsig.labels)) + 10 + len(to_wire(tsig.algorithm_labels)) + 16 + key.mac_size
        if question.rdtype == TYPE_SOA:
            # A signed refresh check (see DynDNSServerFactory.is_transfer).
            return self._sign(self._soa_only(query, zone), signer)
        if question.rdtype == TYPE_AXFR:
            if udp:
                return error(REFUSED)
            self.transfers += 1
            return self._sign(self._axfr(query, zone, MESSAGE_SIZE - room), signer)
        try:
            client = self._client_serial(wire, query, question.key)
        except Malformed:
            return error(FORMERR)
        # RFC 1995 section 2: a client as new as we are (or newer) gets our
        # SOA alone.
        steps = zone.steps_since(client) if serial_newer(zone.serial, client) else []
        self.transfers += 1
        if udp:
            if steps:
                messages = list(self._ixfr(query, zone, steps, _UDP_SIZE - room))
                if len(messages) == 1:
                    return self._sign(iter(messages), signer)
            return self._sign(self._soa_only(query, zone), signer)
        if steps is None:
            return self._sign(self._axfr(query, zone, MESSAGE_SIZE - room), signer)
        if not steps:
            return self._sign(self._soa_only(query, zone), signer)
        return self._sign(self._ixfr(query, zone, steps, MESSAGE_SIZE - room), signer)

    # -- answers

    def _plain(self, query: Query, rcode: int) -> bytes:
        """A record-less answer: header and the question echoed."""
        question = query.questions[0]
        flags = 0x8000 | (query.flags & 0x7900) | (rcode & 0xF)
        return (
            struct.pack("!HHHHHH", query.id, flags, 1, 0, 0, 0)
            + b"".join(bytes((len(label),)) + label for label in question.labels)
            + b"\0"
            + struct.pack("!HH", question.rdtype, question.rdclass)
        )

    def _no_data(self, query: Query, zone: ZoneState) -> bytes:
        """An authoritative answer with no records and the zone's SOA in the authority section."""
        answer = self._plain(query, NOERROR)
        name, rdtype, _, rdata = zone.soa_rr()
        owner = to_wire(tuple(label.encode("ascii") for label in name.split(".")))
        ttl = negative_ttl(zone.soa)
        record = owner + struct.pack("!HHIH", rdtype, CLASS_IN, ttl, len(rdata)) + rdata
        header = struct.unpack("!HHHHHH", answer[:12])
        flags = header[1] | 0x0400  # AA
        return struct.pack("!HHHHHH", header[0], flags, 1, 0, 1, 0) + answer[12:] + record

    @staticmethod
    def _client_serial(wire: bytes, query: Query, origin: Labels) -> int:
        for record in query.authority:
            if record.rdtype == TYPE_SOA and record.key == origin:
                return soa_serial(wire, record)
        raise Malformed("IXFR without the client's SOA")

    @staticmethod
    def _sign(messages: Iterator[bytes], signer: StreamSigner | None) -> Iterator[bytes]:
        if signer is None:
            yield from messages
        else:
            for message in messages:
                yield signer.sign(message)

    def _soa_only(self, query: Query, zone: ZoneState) -> Iterator[bytes]:
        packer = _Messages(query, zone.origin, MESSAGE_SIZE)
        packer.add(zone.soa_rr())
        yield packer.finish()

    def _axfr(self, query: Query, zone: ZoneState, size: int) -> Iterator[bytes]:
        # The snapshot is taken now, before the first message is asked for.
        soa = zone.soa_rr()
        dynamic = zone.dynamic.snapshot()
        replayed = dict(zone.replayed)  # its lists are replaced, never changed in place
        log.info(
            "AXFR of {zone} serial {serial}: {count} users' names",
            zone=zone.origin,
            serial=zone.serial,
            count=len(dynamic),
        )
        parts: list[Iterable[RR]] = [[soa], zone.all_records(dynamic, replayed), [soa]]
        return self._pack(query, zone.origin, parts, size)

    def _ixfr(self, query: Query, zone: ZoneState, steps: list[JournalStep], size: int) -> Iterator[bytes]:
        current = zone.soa_rr()
        parts: list[Iterable[RR]] = [[current]]
        for step in steps:
            parts.append([zone.soa_rr(step.serial_from)])
            parts.append(step.deleted)
            parts.append([zone.soa_rr(step.serial_to)])
            parts.append(step.added)
        parts.append([current])
        return self._pack(query, zone.origin, parts, size)

    @staticmethod
    def _pack(query: Query, origin: str, parts: list[Iterable[RR]], size: int) -> Iterator[bytes]:
        packer = _Messages(query, origin, size)
        for part in parts:
            for rr in part:
                full = packer.add(rr)
                if full is not None:
                    yield full
        yield packer.finish()


def _one(message: bytes | None) -> Iterator[bytes]:
    return iter(() if message is None else (message,))


def _text(key: Labels) -> str | None:
    try:
        return b".".join(key).decode("ascii")
    except UnicodeDecodeError:
        return None
