"""
TSIG-signed RFC 2136 UPDATE messages of the benchmark users (their address,
or their ACME challenge value; or of hosts in a zone), signed here with a
few lines of hmac (dnspython costs ~0.5 ms of CPU per message), their keys
as BIND configuration, and the UDP client that keeps one update in flight
per user.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import random
import selectors
import socket
import struct
import time
from typing import Any, Sequence

import dns.message
import dns.name
import dns.tsig
import dns.update

from bench.harness.load import Load, User
from bench.harness.procs import HOST, BenchError
from bench.harness.users import SUFFIX, TTL, addresses_of, challenge_of, tokens_of, tsig_secret_of

FUDGE = 300


class Signer:
    """
    One user's update messages (C{update delete} of the RRset + C{update
    add} of one value, what nsupdate sends), built and signed by dnspython
    once per value, re-signed per send with a new ID and Time Signed (RFC
    8945 4.3.3). Given C{owner}, C{zone} and C{key} (name, secret): those of
    C{owner} in C{zone}. C{rdtype} A and the user's two addresses, unless
    C{values} (of C{rdtype}, for TXT the string without quotes) are given.
    """

    def __init__(
        self,
        i: int,
        owner: str = "",
        zone: str = SUFFIX,
        key: tuple[str, str] | None = None,
        rdtype: str = "A",
        values: Sequence[str] = (),
    ) -> None:
        keyname, secret = key or (f"user{i}.{SUFFIX}.", tsig_secret_of(f"user{i}"))
        self.keyname, self.zone, self.rdtype = dns.name.from_text(keyname), zone, rdtype
        self.values = tuple(values) or addresses_of(i)[:2]
        self.owner = dns.name.from_text(owner) if owner else self.keyname
        self.key = dns.tsig.Key(self.keyname, secret, dns.tsig.HMAC_SHA256)
        self.keyring = {self.keyname: self.key}
        self._hmac = hmac.new(base64.b64decode(secret), digestmod=hashlib.sha256)
        self._alg_wire = dns.tsig.HMAC_SHA256.to_digestable()  # canonical (RFC 8945 4.3.3), as in the RDATA
        self._vars_head = self.keyname.to_digestable() + struct.pack("!HI", 255, 0) + self._alg_wire
        self.templates: dict[str, tuple[bytes, bytes]] = {}
        for value in self.values:
            self._template(value)

    def build(self, value: str, msg_id: int, signed: bool = True) -> bytes:
        message = dns.update.UpdateMessage(self.zone, id=msg_id)
        message.replace(self.owner, TTL, self.rdtype, f'"{value}"' if self.rdtype == "TXT" else value)
        if signed:
            message.use_tsig(self.key, fudge=FUDGE)
        return bytes(message.to_wire())

    def _template(self, value: str) -> None:
        """dnspython's unsigned message and its TSIG owner name; re-signing it here
        with dnspython's ID and time must give dnspython's bytes."""
        signed, unsigned = self.build(value, 4711), self.build(value, 4711, signed=False)
        if signed[:10] != unsigned[:10] or signed[12 : len(unsigned)] != unsigned[12:]:
            raise BenchError("dnspython's signed message does not start with its unsigned one")
        tsigs = dns.message.from_wire(signed, keyring=self.keyring).tsig
        assert tsigs is not None
        tsig = tsigs[0]
        self.templates[value] = (unsigned, signed[len(unsigned) : len(signed) - 10 - len(tsig.to_wire())])
        if self.sign(value, 4711, tsig.time_signed)[0] != signed:
            raise BenchError(f"local TSIG signing differs from dnspython's for {value}")

    def sign(self, value: str, msg_id: int, now: int | None = None) -> tuple[bytes, bytes]:
        """(wire, request MAC) of the update to C{value}, signed at C{now} (default: the current time)."""
        body, owner = self.templates[value]
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

    def unsigned(self, value: str, msg_id: int) -> bytes:
        """The same update to C{value}, unsigned."""
        return struct.pack("!H", msg_id) + self.templates[value][0][2:]

    def send(self, sock: Any, value: str) -> tuple[int, float, float]:
        """
        One UPDATE signed by dnspython over the connected UDP C{sock}, its answer
        read and its TSIG verified: (rcode; wall clock and perf_counter of the send).
        """
        wire = self.build(value, random.getrandbits(16))
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


def challenge_signer(i: int, values: Sequence[str] = ()) -> Signer:
    """
    User C{i}'s ACME DNS-01 challenge updates, signed with its key: what
    lego's rfc2136 provider sends to present one, C{update delete
    _acme-challenge.user<i>.<suffix> TXT} + C{update add} of one value
    (C{values}, else the user's two L{tokens_of}).
    """
    return Signer(i, challenge_of(i), rdtype="TXT", values=values or tokens_of(i))


def tsig_keys(names: list[str]) -> str:
    """BIND C{key} statements for these users."""
    return "".join(f'key "{n}.{SUFFIX}." {{ algorithm hmac-sha256; secret "{tsig_secret_of(n)}"; }};\n' for n in names)


class UpdateClient(Load):
    """
    One update in flight per signer (a L{User}, its C{secret}) over one UDP
    socket, from C{source} if given; replies matched by ID. Unless C{signed}
    is false, every answer must be signed and every C{args.verify_every}th
    one's TSIG is verified with dnspython.
    """

    def __init__(
        self,
        label: str,
        port: int,
        signers: list[Signer],
        args: argparse.Namespace,
        signed: bool = True,
        source: str = "",
    ) -> None:
        super().__init__(args.retry, label)
        self.users = self.slots = [User(i, s, s.values) for i, s in enumerate(signers, 1)]
        self.signed, self.verify_every = signed, args.verify_every if signed else 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((HOST, port))
        self.sock.setblocking(False)
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.next_id, self.replies, self.verified, self.late = 1, 0, 0, 0

    def send(self, user: User) -> None:
        self.next_id = msg_id = (self.next_id + 1) & 0xFFFF  # 64 in flight at most, 2 s each
        address = user.addresses[user.acked % 2]
        signer = user.secret
        wire, mac = signer.sign(address, msg_id) if self.signed else (signer.unsigned(address, msg_id), b"")
        self.inflight[msg_id] = (user, time.perf_counter(), mac, address)
        self.sock.send(wire)

    def readable(self, key: selectors.SelectorKey) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            except OSError as e:
                return self.phase.count("socket error", f"socket error: {e}")
            self.answer(data)

    def answer(self, data: bytes) -> None:
        entry = self.inflight.pop(struct.unpack("!H", data[:2])[0], None) if len(data) >= 12 else None
        if entry is None:
            self.late += 1
            return
        user, started, mac, address = entry
        self.replies += 1
        rcode = data[3] & 0x0F
        if self.verify_every and self.replies % self.verify_every == 0:
            self.verified += 1
            problem = user.secret.verify(data, mac)
            if problem is not None:
                self.phase.count("bad TSIG", f"{user.name} {address}: answer's TSIG: {problem}")
        good = data[2] & 0x80 and (not self.signed or struct.unpack("!H", data[10:12])[0] >= 1)
        error = f"rcode {rcode}" if rcode else "" if good else "NOERROR but unsigned or not a response"
        self.answered(user, address, started, error)
        if self.running:
            self.send(user)

    def expire(self, now: float) -> None:
        for msg_id, (user, started, _mac, address) in list(self.inflight.items()):
            if now - started > self.timeout:
                del self.inflight[msg_id]
                self.phase.count("timeout", f"{user.name} {address}: no answer in {self.timeout} s, sent again")
                if self.running:
                    self.send(user)
