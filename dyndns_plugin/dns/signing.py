"""
TSIG (RFC 8945) MACs with the standard library's C{hmac}, on bytes.

The UPDATE handler verifies requests and signs answers here instead of
through dnspython's message objects (a quarter of the cost of an update, see
bench/RESULTS.md); the tests check every algorithm both ways against
dnspython and the BIND/Knot captures.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass

from dyndns_plugin.dns.reader import CLASS_ANY, Labels, TSIGRecord, to_wire

#: Our algorithm names (model.TSIG_ALGORITHMS) -> (wire name, hashlib name,
#: MAC bytes after truncation).
ALGORITHMS: dict[str, tuple[str, str, int]] = {
    "hmac-md5": ("hmac-md5.sig-alg.reg.int", "md5", 16),
    "hmac-sha1": ("hmac-sha1", "sha1", 20),
    "hmac-sha224": ("hmac-sha224", "sha224", 28),
    "hmac-sha256": ("hmac-sha256", "sha256", 32),
    "hmac-sha256-128": ("hmac-sha256-128", "sha256", 16),
    "hmac-sha384": ("hmac-sha384", "sha384", 48),
    "hmac-sha384-192": ("hmac-sha384-192", "sha384", 24),
    "hmac-sha512": ("hmac-sha512", "sha512", 64),
    "hmac-sha512-256": ("hmac-sha512-256", "sha512", 32),
}

_VARIABLES_CLASS_TTL = struct.Struct("!HI").pack(CLASS_ANY, 0)


def labels_of(text: str) -> Labels:
    """The lower-cased labels of a name in text form (no escapes)."""
    return tuple(label.encode("ascii") for label in text.lower().strip(".").split(".") if label)


@dataclass(frozen=True, slots=True)
class TSIGKey:
    """A key as the wire sees it: lower-cased name and algorithm labels."""

    name: Labels
    secret: bytes
    algorithm: Labels
    digest: str
    mac_size: int

    @classmethod
    def make(cls, name: Labels, secret: bytes, algorithm: str) -> "TSIGKey":
        wire_name, digest, size = ALGORITHMS[algorithm]
        return cls(name, secret, labels_of(wire_name), digest, size)

    def mac(
        self,
        message: bytes,
        time_signed: int,
        fudge: int,
        error: int = 0,
        other: bytes = b"",
        request_mac: bytes | None = None,
    ) -> bytes:
        """
        The MAC of C{message} (already carrying the original ID, without the
        TSIG record) and the TSIG variables; with C{request_mac} for an
        answer (RFC 8945 section 4.3.3).
        """
        parts = []
        if request_mac is not None:
            parts.append(struct.pack("!H", len(request_mac)) + request_mac)
        parts.append(message)
        parts.append(to_wire(self.name) + _VARIABLES_CLASS_TTL + to_wire(self.algorithm))
        parts.append(
            struct.pack("!HIHHH", time_signed >> 32, time_signed & 0xFFFFFFFF, fudge, error, len(other)) + other
        )
        return hmac.new(self.secret, b"".join(parts), self.digest).digest()[: self.mac_size]


def tsig_rdata(
    algorithm: Labels,
    time_signed: int,
    fudge: int,
    mac: bytes,
    original_id: int,
    error: int,
    other: bytes,
) -> bytes:
    return (
        to_wire(algorithm)
        + struct.pack("!HIHH", time_signed >> 32, time_signed & 0xFFFFFFFF, fudge, len(mac))
        + mac
        + struct.pack("!HHH", original_id, error, len(other))
        + other
    )


#: The most time difference accepted, whatever fudge a client writes
#: (RFC 8945 recommends 300 s): a message signed with a fudge of 65535 s
#: must not stay valid for 18 hours.
SERVER_FUDGE = 300

# RCODE / TSIG error values returned by check_request.
OK, FORMERR, BADSIG, BADKEY, BADTIME, BADTRUNC = 0, 1, 16, 17, 18, 22


def check_request(
    key: TSIGKey,
    wire: bytes,
    tsig: TSIGRecord,
    arcount: int,
    now: int,
    max_fudge: int = SERVER_FUDGE,
) -> int:
    """
    Verify a request's TSIG in RFC 8945 section 5.2 order: MAC size rules
    (FORMERR, BADTRUNC), MAC (BADSIG), then time (BADTIME: outside the
    request's fudge or C{max_fudge}, whichever is smaller). 0 if valid.
    """
    if len(tsig.mac) > key.mac_size or len(tsig.mac) < max(10, key.mac_size // 2):
        return FORMERR
    if len(tsig.mac) != key.mac_size:
        return BADTRUNC
    if tsig.error != 0:
        return FORMERR
    signed = struct.pack("!H", tsig.original_id) + wire[2:10] + struct.pack("!H", arcount - 1) + wire[12 : tsig.start]
    expected = key.mac(signed, tsig.time_signed, tsig.fudge, tsig.error, tsig.other)
    if not hmac.compare_digest(expected, tsig.mac):
        return BADSIG
    if abs(tsig.time_signed - now) > min(tsig.fudge, max_fudge):
        return BADTIME
    return OK


def append_tsig(message: bytes, owner: Labels, rdata: bytes) -> bytes:
    """
    C{message} with a TSIG record appended and ARCOUNT raised. The owner name
    is never compressed (BIND's "no compress"; some clients reject a
    compressed TSIG owner), so answers match BIND's bytes.
    """
    record = to_wire(owner) + struct.pack("!HHIH", 250, CLASS_ANY, 0, len(rdata)) + rdata
    arcount = struct.unpack("!H", message[10:12])[0] + 1
    return message[:10] + struct.pack("!H", arcount) + message[12:] + record


def unsigned_error(message: bytes, tsig: TSIGRecord, error: int) -> bytes:
    """C{message} with the request's TSIG, the error set and no MAC (BADKEY, BADSIG)."""
    rdata = tsig_rdata(tsig.algorithm_labels, tsig.time_signed, tsig.fudge, b"", tsig.original_id, error, b"")
    return append_tsig(message, tsig.labels, rdata)


def sign_answer(message: bytes, key: TSIGKey, tsig: TSIGRecord, error: int, now: int) -> bytes:
    """
    A single-message answer signed with the request's key and MAC as prefix,
    at our clock's time; for BADTIME the request's Time Signed is echoed and
    our time goes into Other Data (as BIND and Knot do).
    """
    if error == BADTIME:
        time_signed, other = tsig.time_signed, struct.pack("!Q", now)[2:]
    else:
        time_signed, other = now, b""
    mac = key.mac(message, time_signed, tsig.fudge, error, other, request_mac=tsig.mac)
    ident = struct.unpack("!H", message[:2])[0]
    rdata = tsig_rdata(tsig.algorithm_labels, time_signed, tsig.fudge, mac, ident, error, other)
    return append_tsig(message, tsig.labels, rdata)


class StreamSigner:
    """
    Signs the messages of one multi-message answer (a zone transfer over
    TCP), RFC 8945 section 5.3.1: the first MAC covers the request's MAC and
    all TSIG variables, each later one the previous MAC, the message and the
    timers only. Every message is signed.
    """

    def __init__(self, key: TSIGKey, request: TSIGRecord, now: int) -> None:
        self.key = key
        self.request = request
        self.now = now
        self._previous: bytes | None = None

    def sign(self, message: bytes) -> bytes:
        tsig = self.request
        if self._previous is None:
            mac = self.key.mac(message, self.now, tsig.fudge, request_mac=tsig.mac)
        else:
            data = (
                struct.pack("!H", len(self._previous))
                + self._previous
                + message
                + struct.pack("!HIH", self.now >> 32, self.now & 0xFFFFFFFF, tsig.fudge)
            )
            mac = hmac.new(self.key.secret, data, self.key.digest).digest()[: self.key.mac_size]
        self._previous = mac
        ident = struct.unpack("!H", message[:2])[0]
        rdata = tsig_rdata(tsig.algorithm_labels, self.now, tsig.fudge, mac, ident, 0, b"")
        return append_tsig(message, tsig.labels, rdata)
