"""
A strict reader of the requests we take as raw bytes: RFC 2136 UPDATE
messages and zone transfer queries (AXFR/IXFR), whose TSIG must be checked
over the exact bytes received.

Why not dnspython's C{from_wire}: it builds names, RRsets and rdata objects
for every record and was 37% of the cost of a signed update (see
bench/RESULTS.md). These messages are small and regular, so this reads
exactly what the handlers need (owner labels, type, class, TTL, raw rdata,
the TSIG fields and its offset) with C{struct}, and rejects anything
malformed: bad names or pointers, lengths past the end, trailing bytes, a
TSIG that is not the single last record, A/AAAA data of the wrong size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

Labels = tuple[bytes, ...]

TYPE_A = 1
TYPE_AAAA = 28
TYPE_TXT = 16
TYPE_SOA = 6
TYPE_TSIG = 250
CLASS_IN = 1
CLASS_NONE = 254
CLASS_ANY = 255

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_TSIG_FIXED = struct.Struct("!HIHH")  # time high, time low, fudge, MAC size
_TSIG_TAIL = struct.Struct("!HHH")  # original ID, error, other length
_ADDRESS_SIZES = {TYPE_A: 4, TYPE_AAAA: 16}
_MAX_POINTERS = 64


class ShortMessage(Exception):
    """Not even a DNS header: nothing can be answered."""


class Malformed(Exception):
    """The message cannot be read: the answer is FORMERR."""


@dataclass(slots=True)
class Question:
    labels: Labels  # as received (case kept, for echoing)
    key: Labels  # lower-cased, for comparisons
    rdtype: int
    rdclass: int


@dataclass(slots=True)
class Record:
    key: Labels
    rdtype: int
    rdclass: int
    ttl: int
    rdata: bytes
    rdata_at: int = 0  # offset of the rdata in the message (for names in it)


@dataclass(slots=True)
class TSIGRecord:
    labels: Labels  # the key name as received
    key: Labels  # the key name lower-cased
    algorithm_labels: Labels
    algorithm: Labels  # lower-cased
    time_signed: int
    fudge: int
    mac: bytes
    original_id: int
    error: int
    other: bytes
    start: int  # offset of the record: the signed data ends here


@dataclass(slots=True)
class UpdateRequest:
    id: int
    flags: int
    arcount: int
    zone: list[Question] = field(default_factory=list)
    prerequisites: list[Record] = field(default_factory=list)
    updates: list[Record] = field(default_factory=list)
    tsig: TSIGRecord | None = None

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x8000)


def to_wire(labels: Labels) -> bytes:
    """An uncompressed wire name (as given: lower-case it first for MACs)."""
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\0"


def read_name(wire: bytes, offset: int) -> tuple[Labels, int]:
    """
    The labels of the name at C{offset} and the offset after it. Pointers
    must point backwards into the message (past the header); at most 255
    bytes of name.
    """
    labels: list[bytes] = []
    size = 1
    end = -1
    jumps = 0
    position = offset
    limit = len(wire)
    while True:
        if position >= limit:
            raise Malformed("name runs past the end")
        length = wire[position]
        if length == 0:
            if end < 0:
                end = position + 1
            return tuple(labels), end
        if length & 0xC0 == 0xC0:
            if position + 1 >= limit:
                raise Malformed("pointer runs past the end")
            target = ((length & 0x3F) << 8) | wire[position + 1]
            if target < 12 or target >= position or jumps >= _MAX_POINTERS:
                raise Malformed("bad compression pointer")
            if end < 0:
                end = position + 2
            jumps += 1
            position = target
            continue
        if length & 0xC0:
            raise Malformed("unknown label type")
        size += length + 1
        if size > 255:
            raise Malformed("name longer than 255 bytes")
        label = wire[position + 1 : position + 1 + length]
        if len(label) != length:
            raise Malformed("label runs past the end")
        labels.append(label)
        position += 1 + length


def _lower(labels: Labels) -> Labels:
    return tuple(label.lower() for label in labels)


def _read_record(wire: bytes, offset: int) -> tuple[Labels, int, int, int, bytes, int]:
    labels, i = read_name(wire, offset)
    if i + 10 > len(wire):
        raise Malformed("record header runs past the end")
    rdtype, rdclass, ttl, rdlength = _RR.unpack_from(wire, i)
    i += 10
    rdata = wire[i : i + rdlength]
    if len(rdata) != rdlength:
        raise Malformed("rdata runs past the end")
    return labels, rdtype, rdclass, ttl, rdata, i + rdlength


def _read_tsig(labels: Labels, rdclass: int, ttl: int, wire: bytes, rdata_at: int, end: int, start: int) -> TSIGRecord:
    if rdclass != CLASS_ANY or ttl != 0:
        raise Malformed("TSIG must be class ANY with TTL 0")
    algorithm, i = read_name(wire, rdata_at)
    if i + _TSIG_FIXED.size > end:
        raise Malformed("short TSIG")
    high, low, fudge, mac_size = _TSIG_FIXED.unpack_from(wire, i)
    i += _TSIG_FIXED.size
    mac = wire[i : i + mac_size]
    i += mac_size
    if i + _TSIG_TAIL.size > end:
        raise Malformed("short TSIG")
    original_id, error, other_size = _TSIG_TAIL.unpack_from(wire, i)
    i += _TSIG_TAIL.size
    other = wire[i : i + other_size]
    if i + other_size != end:
        raise Malformed("TSIG length mismatch")
    return TSIGRecord(
        labels,
        _lower(labels),
        algorithm,
        _lower(algorithm),
        (high << 32) | low,
        fudge,
        mac,
        original_id,
        error,
        other,
        start,
    )


def _read_additional(wire: bytes, i: int, count: int) -> TSIGRecord | None:
    """
    The additional section from offset C{i} to the end of the message: its
    TSIG, which must be the last record, if any (other records are skipped).
    """
    tsig = None
    for index in range(count):
        start = i
        labels, rdtype, rdclass, ttl, rdata, i = _read_record(wire, i)
        if rdtype == TYPE_TSIG:
            if index != count - 1:
                raise Malformed("TSIG is not the last record")
            tsig = _read_tsig(labels, rdclass, ttl, wire, i - len(rdata), i, start)
    if i != len(wire):
        raise Malformed("trailing bytes after the last record")
    return tsig


def parse_update(wire: bytes) -> UpdateRequest:
    """
    Read an UPDATE message. Raises L{ShortMessage} below 12 bytes and
    L{Malformed} for anything that is not a well-formed message.
    """
    if len(wire) < 12:
        raise ShortMessage()
    ident, flags, zocount, prcount, upcount, adcount = _HEADER.unpack_from(wire)
    request = UpdateRequest(ident, flags, adcount)
    i = 12
    for _ in range(zocount):
        labels, i = read_name(wire, i)
        if i + 4 > len(wire):
            raise Malformed("zone section runs past the end")
        rdtype, rdclass = struct.unpack_from("!HH", wire, i)
        i += 4
        if request.zone or rdtype != TYPE_SOA or rdclass in (CLASS_ANY, CLASS_NONE):
            raise Malformed("the zone section must be one SOA question")
        request.zone.append(Question(labels, _lower(labels), rdtype, rdclass))
    if (prcount or upcount) and not request.zone:
        raise Malformed("records without a zone")
    for section, count, empty_classes in (
        (request.prerequisites, prcount, (CLASS_ANY, CLASS_NONE)),
        (request.updates, upcount, (CLASS_ANY,)),
    ):
        for _ in range(count):
            labels, rdtype, rdclass, ttl, rdata, i = _read_record(wire, i)
            if rdtype == TYPE_TSIG:
                raise Malformed("TSIG outside the additional section")
            if rdclass in empty_classes:
                if rdata:
                    raise Malformed("data in a record that must be empty")
            elif rdtype in _ADDRESS_SIZES and len(rdata) != _ADDRESS_SIZES[rdtype]:
                raise Malformed("address of the wrong size")
            section.append(Record(_lower(labels), rdtype, rdclass, ttl, rdata, i - len(rdata)))
    request.tsig = _read_additional(wire, i, adcount)
    return request


@dataclass(slots=True)
class Query:
    """A standard query (opcode 0): what a zone transfer request carries."""

    id: int
    flags: int
    arcount: int
    questions: list[Question] = field(default_factory=list)
    answers: list[Record] = field(default_factory=list)
    authority: list[Record] = field(default_factory=list)
    tsig: TSIGRecord | None = None

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF


def question_type(wire: bytes) -> int | None:
    """The type of the first question, or None if there is none to read."""
    try:
        if len(wire) < 12 or _HEADER.unpack_from(wire)[2] < 1:
            return None
        _, i = read_name(wire, 12)
    except Malformed:
        return None
    if i + 2 > len(wire):
        return None
    return int(struct.unpack_from("!H", wire, i)[0])


def has_tsig(wire: bytes) -> bool:
    """Does this query end with a TSIG record (False if it cannot be read)?"""
    if len(wire) < 12 or _HEADER.unpack_from(wire)[5] == 0:
        return False
    try:
        return parse_query(wire).tsig is not None
    except (ShortMessage, Malformed):
        return False


def parse_query(wire: bytes) -> Query:
    """
    Read a query with its sections (records kept raw) and TSIG. Raises
    L{ShortMessage} and L{Malformed} like L{parse_update}.
    """
    if len(wire) < 12:
        raise ShortMessage()
    ident, flags, qdcount, ancount, nscount, adcount = _HEADER.unpack_from(wire)
    query = Query(ident, flags, adcount)
    i = 12
    for _ in range(qdcount):
        labels, i = read_name(wire, i)
        if i + 4 > len(wire):
            raise Malformed("question runs past the end")
        rdtype, rdclass = struct.unpack_from("!HH", wire, i)
        i += 4
        query.questions.append(Question(labels, _lower(labels), rdtype, rdclass))
    for section, count in ((query.answers, ancount), (query.authority, nscount)):
        for _ in range(count):
            labels, rdtype, rdclass, ttl, rdata, i = _read_record(wire, i)
            if rdtype == TYPE_TSIG:
                raise Malformed("TSIG outside the additional section")
            section.append(Record(_lower(labels), rdtype, rdclass, ttl, rdata, i - len(rdata)))
    query.tsig = _read_additional(wire, i, adcount)
    return query


def soa_serial(wire: bytes, record: Record) -> int:
    """The serial of an SOA record (its names may be compressed)."""
    _, i = read_name(wire, record.rdata_at)
    _, i = read_name(wire, i)
    if i + 20 > record.rdata_at + len(record.rdata):
        raise Malformed("short SOA")
    return int(struct.unpack_from("!I", wire, i)[0])
