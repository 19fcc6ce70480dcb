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

from dyndns_plugin.dns.update_wire import CLASS_ANY, Labels, to_wire

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
        self, message: bytes, time_signed: int, fudge: int, error: int = 0,
        other: bytes = b"", request_mac: bytes | None = None,
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
            struct.pack("!HIHHH", time_signed >> 32, time_signed & 0xFFFFFFFF, fudge, error, len(other))
            + other
        )
        return hmac.new(self.secret, b"".join(parts), self.digest).digest()[: self.mac_size]


def tsig_rdata(
    algorithm: Labels, time_signed: int, fudge: int, mac: bytes, original_id: int,
    error: int, other: bytes,
) -> bytes:
    return (
        to_wire(algorithm)
        + struct.pack("!HIHH", time_signed >> 32, time_signed & 0xFFFFFFFF, fudge, len(mac))
        + mac
        + struct.pack("!HHH", original_id, error, len(other))
        + other
    )
