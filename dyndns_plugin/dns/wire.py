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
