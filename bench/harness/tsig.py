"""
TSIG-signed RFC 2136 UPDATE messages of the benchmark users, signed here with
a few lines of hmac (dnspython costs ~0.5 ms of CPU per message), and their
keys as BIND configuration.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import struct
import time
from typing import Any

import dns.message
import dns.name
import dns.tsig
import dns.update

from bench.harness.procs import BenchError
from bench.harness.users import SUFFIX, TTL, addresses_of, tsig_secret_of

FUDGE = 300


class Signer:
    """One user's update messages, built and signed by dnspython once per address,
    re-signed per send with a new ID and Time Signed (RFC 8945 4.3.3)."""

    def __init__(self, i: int) -> None:
        self.keyname = dns.name.from_text(f"user{i}.{SUFFIX}.")
        secret = tsig_secret_of(f"user{i}")
        self.key = dns.tsig.Key(self.keyname, secret, dns.tsig.HMAC_SHA256)
        self.keyring = {self.keyname: self.key}
        self._hmac = hmac.new(base64.b64decode(secret), digestmod=hashlib.sha256)
        self._alg_wire = dns.tsig.HMAC_SHA256.to_digestable()  # canonical (RFC 8945 4.3.3), as in the RDATA
        self._vars_head = self.keyname.to_digestable() + struct.pack("!HI", 255, 0) + self._alg_wire
        self.templates: dict[str, tuple[bytes, bytes]] = {}
        for address in addresses_of(i)[:2]:
            self._template(address)

    def build(self, address: str, msg_id: int, signed: bool = True) -> bytes:
        message = dns.update.UpdateMessage(SUFFIX, id=msg_id)
        message.replace(self.keyname, TTL, "A", address)
        if signed:
            message.use_tsig(self.key, fudge=FUDGE)
        return bytes(message.to_wire())

    def _template(self, address: str) -> None:
        """dnspython's unsigned message and its TSIG owner name; re-signing it here
        with dnspython's ID and time must give dnspython's bytes."""
        signed, unsigned = self.build(address, 4711), self.build(address, 4711, signed=False)
        if signed[:10] != unsigned[:10] or signed[12 : len(unsigned)] != unsigned[12:]:
            raise BenchError("dnspython's signed message does not start with its unsigned one")
        tsigs = dns.message.from_wire(signed, keyring=self.keyring).tsig
        assert tsigs is not None
        tsig = tsigs[0]
        self.templates[address] = (unsigned, signed[len(unsigned) : len(signed) - 10 - len(tsig.to_wire())])
        if self.sign(address, 4711, tsig.time_signed)[0] != signed:
            raise BenchError(f"local TSIG signing differs from dnspython's for {address}")

    def sign(self, address: str, msg_id: int, now: int | None = None) -> tuple[bytes, bytes]:
        """(wire, request MAC) of the update to C{address}, signed at C{now} (default: the current time)."""
        body, owner = self.templates[address]
        now = int(time.time()) if now is None else now
        head = struct.pack("!H", msg_id) + body[2:]
        time_fudge = struct.pack("!HIH", now >> 32, now & 0xFFFFFFFF, FUDGE)
        h = self._hmac.copy()
        h.update(head)
        h.update(self._vars_head + time_fudge + b"\x00\x00\x00\x00")
        mac = h.digest()
        rdata = self._alg_wire + time_fudge + struct.pack("!H", len(mac)) + mac + struct.pack("!HHH", msg_id, 0, 0)
        arcount = struct.pack("!H", struct.unpack("!H", head[10:12])[0] + 1)
        return head[:10] + arcount + head[12:] + owner + struct.pack("!HHIH", 250, 255, 0, len(rdata)) + rdata, mac

    def send(self, sock: Any, address: str) -> tuple[int, float, float]:
        """
        One UPDATE signed by dnspython over the connected UDP C{sock}, its answer
        read and its TSIG verified: (rcode; wall clock and perf_counter of the send).
        """
        wire = self.build(address, random.getrandbits(16))
        wall, t0 = time.time(), time.perf_counter()
        sock.send(wire)
        data = sock.recv(65535)
        while data[:2] != wire[:2]:  # a late answer to an earlier update
            data = sock.recv(65535)
        problem = self.verify(data, wire[-38:-6])
        if problem is not None:
            raise BenchError(f"{self.keyname}: the answer's TSIG: {problem}")
        return data[3] & 0x0F, wall, t0

    def verify(self, reply: bytes, request_mac: bytes) -> str | None:
        """None if dnspython accepts the reply's TSIG, else why not."""
        try:
            message = dns.message.from_wire(reply, keyring=self.keyring, request_mac=request_mac)
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        return None if message.had_tsig else "unsigned"


def tsig_keys(names: list[str]) -> str:
    """BIND C{key} statements for these users."""
    return "".join(f'key "{n}.{SUFFIX}." {{ algorithm hmac-sha256; secret "{tsig_secret_of(n)}"; }};\n' for n in names)
