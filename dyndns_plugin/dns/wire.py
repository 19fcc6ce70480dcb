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
    A header-only reply to a message we could not decode: same ID, opcode
    and RD, QR set. None if even the header is missing or it is a response.
    """
    if len(data) < 12 or data[2] & 0x80:
        return None
    flags1 = 0x80 | (data[2] & 0x79)  # QR, opcode, RD
    return HEADER.pack(struct.unpack("!H", data[:2])[0], flags1, rcode & 0xF, 0, 0, 0, 0)


def _skip_name(wire: bytes, i: int) -> int:
    while True:
        length = wire[i]
        if length == 0:
            return i + 1
        if length & 0xC0 == 0xC0:
            return i + 2
        i += 1 + length


def last_rr_offset(wire: bytes) -> int:
    """
    The offset of the last resource record: where a TSIG starts (it must be
    last). Only called on messages dnspython already parsed.
    """
    qd, an, ns, ar = struct.unpack("!HHHH", wire[4:12])
    i = 12
    for _ in range(qd):
        i = _skip_name(wire, i) + 4
    start = i
    for _ in range(an + ns + ar):
        start = i
        i = _skip_name(wire, i)
        i += 10 + struct.unpack("!H", wire[i + 8 : i + 10])[0]
    return start
