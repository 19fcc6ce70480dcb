"""
Small raw-wire helpers shared by the query server and the UPDATE handler:
they work on bytes, before (or instead of) any full decode.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("!HBBHHHH")


def opcode_of(data: bytes) -> int | None:
    return (data[2] >> 3) & 0xF if len(data) >= 3 else None


def error_reply(data: bytes, rcode: int) -> bytes | None:
    """
    A header-only reply to a message we could not decode: same ID and
    opcode, QR set, and RD copied for a QUERY only (BIND clears it for other
    opcodes). None if even the header is missing or it is a response.
    """
    if len(data) < 12 or data[2] & 0x80:
        return None
    flags1 = 0x80 | (data[2] & 0x78)  # QR, opcode
    if not flags1 & 0x78:
        flags1 |= data[2] & 0x01  # RD, for a QUERY
    return HEADER.pack(struct.unpack("!H", data[:2])[0], flags1, rcode & 0xF, 0, 0, 0, 0)


def header_reply(ident: int, opcode: int, rd: bool, rcode: int) -> bytes:
    """A header-only reply (no question echoed) with QR, C{opcode}, RD and C{rcode}."""
    flags1 = 0x80 | ((opcode & 0xF) << 3) | (1 if rd else 0)
    return HEADER.pack(ident & 0xFFFF, flags1, rcode & 0xF, 0, 0, 0, 0)


#: Pointers one name may follow (a name has at most 127 labels).
_MAX_JUMPS = 127


def questions_ok(data: bytes) -> bool:
    """
    Can every question of this message be read strictly and encoded again?
    Each name: labels of at most 63 bytes (no 0x40/0x80 label types), at
    most 255 bytes in all, pointers only backwards into the message past
    the header, no label containing a dot (Twisted keeps names as dotted
    text and could not encode it again), then type and class. Anything else
    is FORMERR without the question echoed, before Twisted's decoder sees
    it.
    """
    count = (data[4] << 8) | data[5]
    size = len(data)
    i = 12
    for _ in range(count):
        total = 1
        jumps = 0
        position = i
        end = -1
        while True:
            if position >= size:
                return False
            length = data[position]
            if length == 0:
                if end < 0:
                    end = position + 1
                break
            if length >= 0xC0:
                if position + 1 >= size:
                    return False
                target = ((length & 0x3F) << 8) | data[position + 1]
                if target < 12 or target >= position or jumps >= _MAX_JUMPS:
                    return False
                if end < 0:
                    end = position + 2
                jumps += 1
                position = target
                continue
            if length > 63:
                return False
            total += length + 1
            after = position + 1 + length
            if total > 255 or after > size or data.find(b".", position + 1, after) >= 0:
                return False
            position = after
        i = end + 4
        if i > size:
            return False
    return True


def find_option(rdata: bytes, code: int) -> bytes | None:
    """
    The data of the first EDNS option C{code} in an OPT record's rdata, or
    None. Raises C{ValueError} if the options do not add up (FORMERR).
    """
    found = None
    i = 0
    size = len(rdata)
    while i < size:
        if i + 4 > size:
            raise ValueError("truncated EDNS option header")
        option, length = struct.unpack_from("!HH", rdata, i)
        i += 4
        if i + length > size:
            raise ValueError("EDNS option runs past the OPT record")
        if option == code and found is None:
            found = rdata[i : i + length]
        i += length
    return found


def truncate_wire(wire: bytes) -> bytes:
    """
    A raw reply cut down for a rate-limit slip: the header with TC set and
    no records, and the first question if it can be read.
    """
    if len(wire) < 12:
        return wire
    ident, flags1, flags2, qdcount, _, _, _ = HEADER.unpack_from(wire)
    question = b""
    if qdcount:
        end = _question_end(wire)
        if end is not None:
            question = wire[12:end]
    return HEADER.pack(ident, flags1 | 0x02, flags2, 1 if question else 0, 0, 0, 0) + question


def _question_end(wire: bytes) -> int | None:
    """The offset after the first question if its name has no pointer."""
    i = 12
    size = len(wire)
    while i < size:
        length = wire[i]
        if length == 0:
            return i + 5 if i + 5 <= size else None
        if length > 63:
            return None
        i += 1 + length
    return None
