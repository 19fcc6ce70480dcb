"""
TSIG-signed RFC 2136 UPDATE (L{dyndns_plugin.protocols.dns_update}).

Every signed request captured from nsupdate 9.18 and sent to BIND 9 and
Knot 3.2.6 (tests/fixtures/dns/, tests/fixtures/tsig-knot/) is replayed
through L{UpdateHandler.handle} on a L{task.Clock} set to its Time Signed;
our answers are checked with an HMAC computation written here from RFC 8945
(independent of dnspython, which the server uses) and compared field by
field, and byte for byte, with BIND's and Knot's answers to the same
requests. Messages of our own are built with dnspython and signed at a
chosen time by L{sign_at} (dnspython's own C{to_wire()} signs at
C{time.time()}; the tests that use it set the clock to the real time).

The last classes run the real server (L{listen_dns} with an update handler)
on 127.0.0.1 and talk to it with raw sockets in threads, like
tests/test_dns_server.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import struct
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, cast

import attrs
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig
import dns.update
from twisted.internet import defer, task, threads
from twisted.trial import unittest

from dyndns_plugin.dns.resolver import DynDNSResolver
from dyndns_plugin.dns.server import DynDNSServerFactory
from dyndns_plugin.limits import Limiter, LimitSettings
from dyndns_plugin.model import TSIG_ALGORITHMS, User
from dyndns_plugin.passwords import md5_verifier
from dyndns_plugin.protocols.dns_update import ALGORITHMS, UpdateHandler
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.store.sqlite import SQLiteUserStore
from dyndns_plugin.tap import load_zones
from tests.dns_helpers import memory_settings, serve_dns
from tests.test_dns_server import HOST, TIMEOUT, framed, raw_tcp, raw_udp
from tests.typing_helpers import threads_reactor

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
DNS_FIXTURES = os.path.join(FIXTURES, "dns")
KNOT_FIXTURES = os.path.join(FIXTURES, "tsig-knot")
SUFFIX = "dyn.example.com"
ZONE = SUFFIX + "."
FUDGE = 300
PEER = "127.0.0.1"
#: A Time Signed for messages of our own (that of the nsupdate md5 capture).
T0 = 1795295533

#: Wire algorithm name -> (hashlib name, MAC length after truncation).
HASHES = {
    "hmac-md5.sig-alg.reg.int.": ("md5", 16),
    "hmac-sha1.": ("sha1", 20),
    "hmac-sha224.": ("sha224", 28),
    "hmac-sha256.": ("sha256", 32),
    "hmac-sha256-128.": ("sha256", 16),
    "hmac-sha384.": ("sha384", 48),
    "hmac-sha384-192.": ("sha384", 24),
    "hmac-sha512.": ("sha512", 64),
    "hmac-sha512-256.": ("sha512", 32),
}
#: Our algorithm names -> wire names (RFC 8945 section 6).
WIRE_ALGORITHMS = {
    "hmac-md5": "hmac-md5.sig-alg.reg.int.",
    "hmac-sha1": "hmac-sha1.",
    "hmac-sha224": "hmac-sha224.",
    "hmac-sha256": "hmac-sha256.",
    "hmac-sha256-128": "hmac-sha256-128.",
    "hmac-sha384": "hmac-sha384.",
    "hmac-sha384-192": "hmac-sha384-192.",
    "hmac-sha512": "hmac-sha512.",
    "hmac-sha512-256": "hmac-sha512-256.",
}

NOERROR = dns.rcode.NOERROR
NOTAUTH = dns.rcode.NOTAUTH
REFUSED = dns.rcode.REFUSED
FORMERR = dns.rcode.FORMERR
BADSIG = dns.rcode.BADSIG
BADKEY = dns.rcode.BADKEY
BADTIME = dns.rcode.BADTIME
BADTRUNC = dns.rcode.BADTRUNC

ALICE_SECRET = "uDqEbya3wWm52jDZVATDeiVWvoea5kLu/xPhjpjeEOI="
BOB_SECRET = "im0YbgVkPaSjZVgiP9dmHQ=="
CAROL_SECRET = "BBEukoNbAWn6u8b7iF9mCrt/KFeCLUzrLgy+hWb3vzCApXWItEbaWvABp7+PzG/EapOA1aox+AlS683bcKPLSA=="
DAVE_SECRET = "WvqjAXJdJCLB//LG1w4KRbzKjLY="
WRONG_SECRET = base64.b64encode(b"not the secret of anybody here!!").decode()


# -- reading answers without dnspython


def _name(wire: bytes, i: int) -> tuple[str, int, bytes]:
    """(the name as text, the offset after it, its bytes as sent)."""
    labels: list[str] = []
    start, end = i, None
    for _ in range(128):
        length = wire[i]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = i + 2
            i = ((length & 0x3F) << 8) | wire[i + 1]
        elif length == 0:
            if end is None:
                end = i + 1
            return ".".join(labels) + ".", end, wire[start:end]
        else:
            labels.append(wire[i + 1 : i + 1 + length].decode("ascii"))
            i += 1 + length
    raise AssertionError("name compression loop")


def canonical(name: str) -> bytes:
    """A name in canonical wire form: lower case, uncompressed."""
    labels = [label for label in name.lower().split(".") if label]
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\0"


@attrs.frozen
class TSIGRecord:
    """The TSIG RR of a message, field by field (RFC 8945 section 4.2)."""

    owner: str
    owner_wire: bytes
    rdtype: int
    rdclass: int
    ttl: int
    algorithm: str
    time_signed: int
    fudge: int
    mac_size: int
    mac: bytes
    original_id: int
    error: int
    other_len: int
    other: bytes
    start: int


@attrs.frozen
class Reply:
    """A DNS message, field by field, as it came off the wire."""

    id: int
    qr: bool
    opcode: int
    flags: int
    rcode: int
    counts: tuple[int, int, int, int]
    zone: tuple[tuple[str, int, int], ...]
    tsig: TSIGRecord | None


def parse(wire: bytes) -> Reply:
    """Split a message into its fields; AssertionError if it is malformed."""
    ident, flags, *counts = struct.unpack("!HHHHHH", wire[:12])
    i = 12
    zone = []
    for _ in range(counts[0]):
        name, i, _raw = _name(wire, i)
        rdtype, rdclass = struct.unpack("!HH", wire[i : i + 4])
        zone.append((name.lower(), rdtype, rdclass))
        i += 4
    tsig = None
    for n in range(sum(counts[1:])):
        start = i
        owner, i, owner_wire = _name(wire, i)
        rdtype, rdclass, ttl, rdlength = struct.unpack("!HHIH", wire[i : i + 10])
        i += 10
        end = i + rdlength
        if rdtype == dns.rdatatype.TSIG:
            if n != sum(counts[1:]) - 1:
                raise AssertionError("TSIG is not the last record")
            algorithm, j, _raw = _name(wire, i)
            high, low, fudge, mac_size = struct.unpack("!HIHH", wire[j : j + 10])
            j += 10
            mac = wire[j : j + mac_size]
            j += mac_size
            original_id, error, other_len = struct.unpack("!HHH", wire[j : j + 6])
            j += 6
            other = wire[j : j + other_len]
            if j + other_len != end:
                raise AssertionError("TSIG RDATA length does not match its fields")
            tsig = TSIGRecord(
                owner,
                owner_wire,
                rdtype,
                rdclass,
                ttl,
                algorithm,
                (high << 32) | low,
                fudge,
                mac_size,
                mac,
                original_id,
                error,
                other_len,
                other,
                start,
            )
        i = end
    if i != len(wire):
        raise AssertionError(f"{len(wire) - i} bytes after the last record")
    return Reply(
        ident,
        bool(flags & 0x8000),
        (flags >> 11) & 0xF,
        flags,
        flags & 0xF,
        tuple(counts),
        tuple(zone),
        tsig,  # type: ignore[arg-type]
    )


def tsig_mac(wire: bytes, secret: bytes, request_mac: bytes = b"") -> bytes:
    """
    The MAC the TSIG of C{wire} must carry (RFC 8945 section 4.3): the
    request MAC with its length first (for a response), the message without
    its TSIG (ARCOUNT - 1, the ID replaced by Original ID), then the TSIG
    variables in canonical form.
    """
    record = parse(wire).tsig
    assert record is not None
    body = wire[: record.start]
    arcount = struct.unpack("!H", body[10:12])[0] - 1
    body = struct.pack("!H", record.original_id) + body[2:10] + struct.pack("!H", arcount) + body[12:]
    variables = (
        canonical(record.owner)
        + struct.pack("!HI", dns.rdataclass.ANY, 0)
        + canonical(record.algorithm)
        + struct.pack(
            "!HIHHH",
            record.time_signed >> 32,
            record.time_signed & 0xFFFFFFFF,
            record.fudge,
            record.error,
            record.other_len,
        )
        + record.other
    )
    prefix = struct.pack("!H", len(request_mac)) + request_mac if request_mac else b""
    hashname, size = HASHES[record.algorithm.lower()]
    return hmac.new(secret, prefix + body + variables, hashname).digest()[:size]


# -- building requests


def with_tsig(unsigned: bytes, owner: dns.name.Name, rdata: Any) -> bytes:
    """C{unsigned} with a TSIG RR (uncompressed owner) appended, ARCOUNT + 1."""
    rdata_wire = rdata.to_wire()
    record = (
        cast(bytes, owner.to_wire())
        + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(rdata_wire))
        + rdata_wire
    )
    arcount = struct.unpack("!H", unsigned[10:12])[0] + 1
    return unsigned[:10] + struct.pack("!H", arcount) + unsigned[12:] + record


def sign_at(
    message: dns.message.Message | bytes,
    key: dns.tsig.Key,
    time_signed: int,
    *,
    fudge: int = FUDGE,
    mac: bytes | None = None,
) -> bytes:
    """
    C{message} (unsigned, or its wire form) with a TSIG by C{key} at
    C{time_signed}; C{mac} replaces the MAC (to break it or cut it).
    """
    unsigned = message if isinstance(message, bytes) else message.to_wire()
    template = dns.rdtypes.ANY.TSIG.TSIG(
        dns.rdataclass.ANY,
        dns.rdatatype.TSIG,
        key.algorithm,
        time_signed,
        fudge,
        b"",
        struct.unpack("!H", unsigned[:2])[0],
        0,
        b"",
    )
    rdata, _ = dns.tsig.sign(unsigned, key, template, time_signed, b"")
    if mac is not None:
        rdata = rdata.replace(mac=mac)
    return with_tsig(unsigned, key.name, rdata)


def make_key(name: str, secret: str, algorithm: str = "hmac-sha256") -> dns.tsig.Key:
    return dns.tsig.Key(name, base64.b64decode(secret), WIRE_ALGORITHMS[algorithm])


def update(zone: str = ZONE, rdclass: dns.rdataclass.RdataClass = dns.rdataclass.IN) -> dns.update.UpdateMessage:
    return dns.update.UpdateMessage(zone, rdclass=rdclass)


def set_address(name: str, rdtype: str, address: str, ttl: int = 60) -> dns.update.UpdateMessage:
    """What nsupdate sends: delete the RRset, add the new address."""
    message = update()
    message.delete(name, rdtype)
    message.add(name, ttl, rdtype, address)
    return message


# -- the captures


@attrs.frozen
class Capture:
    """A signed UPDATE captured from a real client, with its key."""

    label: str
    path: str
    key_name: str
    algorithm: str
    secret: str
    time_signed: int
    name: str
    rdtype: str
    address: str
    ttl: int
    #: The reference server's answer to it, if it was NOERROR.
    response: str | None = None

    @property
    def slug(self) -> str:
        return self.label.replace("-", "_").replace(".", "_")

    @property
    def user(self) -> str:
        return self.key_name.split(".")[0]

    @property
    def wire(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()

    @property
    def key(self) -> dns.tsig.Key:
        return make_key(self.key_name, self.secret, self.algorithm)

    @property
    def request_id(self) -> int:
        return struct.unpack("!H", self.wire[:2])[0]

    @property
    def request_mac(self) -> bytes:
        record = parse(self.wire).tsig
        assert record is not None
        return record.mac

    def user_record(self, secret: str | None = None, algorithm: str | None = None) -> User:
        return User(self.user, tsig_secret=secret or self.secret, tsig_algorithm=algorithm or self.algorithm)


def read(folder: str, name: str) -> bytes:
    with open(os.path.join(folder, name), "rb") as f:
        return f.read()


def _bind_capture(query: str) -> Capture:
    """A capture of tests/fixtures/dns/ from its JSON sidecar."""
    with open(os.path.join(DNS_FIXTURES, query + ".json")) as f:
        meta = json.load(f)
    [add] = [line for line in meta["decoded"]["update"] if " IN " in line]
    name, ttl, _cls, rdtype, address = add.split()
    response = None
    if query.endswith(".query"):
        base = query[: -len(".query")]
        with open(os.path.join(DNS_FIXTURES, base + ".response.json")) as f:
            if json.load(f)["decoded"]["rcode"] == "NOERROR":
                response = os.path.join(DNS_FIXTURES, base + ".response.bin")
    return Capture(
        label=query,
        path=os.path.join(DNS_FIXTURES, meta["file"]),
        key_name=meta["key"]["name"],
        algorithm=meta["key"]["algorithm"],
        secret=meta["key"]["secret_b64"],
        time_signed=meta["decoded"]["tsig"]["time_signed"],
        name=name.rstrip(".").lower(),
        rdtype=rdtype,
        address=address,
        ttl=int(ttl),
        response=response,
    )


with open(os.path.join(KNOT_FIXTURES, "keys.json")) as _f:
    KNOT = json.load(_f)
KNOT_KEY = KNOT["key"]


def _knot_capture(base: str) -> Capture:
    info = KNOT["captures"][base]
    name, ttl, _cls, rdtype, address = info["update"].split()
    response = os.path.join(KNOT_FIXTURES, base + "-response.bin")
    return Capture(
        label=base,
        path=os.path.join(KNOT_FIXTURES, base + "-query.bin"),
        key_name=KNOT_KEY["name"],
        algorithm=KNOT_KEY["algorithm"],
        secret=KNOT_KEY["secret_b64"],
        time_signed=info["time_signed"],
        name=name.rstrip(".").lower(),
        rdtype=rdtype,
        address=address,
        ttl=int(ttl),
        response=response if info["answer"].startswith("NOERROR") else None,
    )


#: Every captured request that a server with the request's own key accepts.
#: (ref-bind-update-badsig.query was signed with a key alice's BIND did not
#: have; configured with that key it is a valid update. The badkey and
#: foreign-name queries change someone else's name: see PolicyTests.)
REPLAYS = [
    *(
        _bind_capture(f"nsupdate-{n}")
        for n in (
            "hmac-md5-udp",
            "hmac-sha1-udp",
            "hmac-sha256-udp",
            "hmac-sha256-tcp",
            "hmac-sha256-aaaa-udp",
            "hmac-sha512-udp",
        )
    ),
    _bind_capture("ref-bind-update-noerror-md5.query"),
    _bind_capture("ref-bind-update-noerror-sha256.query"),
    _bind_capture("ref-bind-update-badsig.query"),
    _knot_capture("tsig-001-md5-tcp"),
    _knot_capture("tsig-003-badtime-udp"),
]
CAPTURES = {c.label: c for c in REPLAYS}


# -- the test environment


if TYPE_CHECKING:
    _TestCase = unittest.TestCase
else:
    _TestCase = object


class UpdateTestsMixin(_TestCase):
    """
    A service on a L{task.Clock} with a memory store and an L{UpdateHandler}
    for it; L{setup} (re)builds them for a time, users and zones.
    """

    def setup(
        self,
        now: int,
        users: Iterable[User],
        zones: Iterable[str] = (),
        **service_options: Any,
    ) -> None:
        self.clock = task.Clock()
        self.clock.advance(now)
        self.store = MemoryUserStore()
        self.service = DynDNSService(self.store, SUFFIX, clock=self.clock, poll_interval=None, **service_options)
        self.successResultOf(defer.ensureDeferred(self.service.start()))
        for user in users:
            self.successResultOf(self.service.add_user(user))
        self.handler = UpdateHandler(self.service, zones, clock=self.clock)

    def handle(self, wire: bytes, peer: str | None = PEER) -> bytes | None:
        return self.successResultOf(defer.ensureDeferred(self.handler.handle_update_wire(wire, peer)))

    def reply(self, wire: bytes) -> tuple[bytes, Reply]:
        """The handler's answer to C{wire} (it must answer) and its fields."""
        answer = self.handle(wire)
        self.assertIsNotNone(answer, "no answer")
        assert answer is not None
        return answer, parse(answer)

    def go_online(self, user_id: str, *addresses: str, ttl: int = 60) -> None:
        parsed = [ipaddress.ip_address(a) for a in addresses]
        result = self.successResultOf(self.service.update(user_id, parsed, ttl=ttl))
        self.assertTrue(result.ok, result)

    def served(self, name: str) -> tuple[set[str], int] | None:
        """The addresses (as text) and TTL a query for C{name} gets, or None."""
        answer = self.service.registry.answer(name)
        if answer is None:
            return None
        return {str(a) for a in answer.addresses}, answer.ttl

    def snapshot(self) -> Any:
        """What is stored and served (compare before/after: nothing changed)."""
        stored = self.successResultOf(self.store.load())
        return stored.generation, stored.states, dict(self.service.registry.states)

    # -- assertions

    def assertHeader(self, reply: Reply, request: bytes, rcode: int) -> None:
        """An UPDATE response to C{request} with C{rcode} and the zone echoed."""
        request_fields = parse(request)
        self.assertEqual(reply.id, request_fields.id)
        self.assertTrue(reply.qr)
        self.assertEqual(reply.opcode, dns.opcode.UPDATE)
        self.assertEqual(
            dns.rcode.to_text(dns.rcode.Rcode(reply.rcode)),
            dns.rcode.to_text(dns.rcode.Rcode(rcode)),
        )
        self.assertEqual(reply.flags & 0x07F0, 0, "AA/TC/RD/RA/Z must be clear")
        self.assertEqual(reply.zone, request_fields.zone)
        self.assertEqual(reply.counts[1:3], (0, 0))

    def assertSigned(
        self,
        answer: bytes,
        request: bytes,
        key: dns.tsig.Key,
        rcode: int,
        error: int = 0,
        time_signed: int | None = None,
    ) -> TSIGRecord:
        """
        A response signed with C{key} and the request's MAC as prefix (our
        own HMAC check), at C{time_signed} (default: the clock's time).
        """
        reply = parse(answer)
        self.assertHeader(reply, request, rcode)
        self.assertEqual(reply.counts[3], 1)
        record = reply.tsig
        self.assertIsNotNone(record, "no TSIG in the response")
        assert record is not None
        request_tsig = parse(request).tsig
        assert request_tsig is not None
        self.assertEqual(record.owner.lower(), key.name.to_text().lower())
        self.assertEqual(record.owner_wire, key.name.to_wire(), "owner must not be compressed")
        self.assertEqual((record.rdtype, record.rdclass, record.ttl), (dns.rdatatype.TSIG, dns.rdataclass.ANY, 0))
        self.assertEqual(record.algorithm.lower(), key.algorithm.to_text())
        self.assertEqual(record.error, error)
        self.assertEqual(record.original_id, reply.id)
        self.assertEqual(record.fudge, request_tsig.fudge)
        expected_time = int(self.clock.seconds()) if time_signed is None else time_signed
        self.assertEqual(record.time_signed, expected_time)
        self.assertEqual(record.mac_size, HASHES[record.algorithm.lower()][1])
        self.assertEqual(record.mac, tsig_mac(answer, key.secret, request_tsig.mac), "the response MAC does not verify")
        return record

    def assertUnsignedError(self, answer: bytes, request: bytes, error: int) -> TSIGRecord:
        """NOTAUTH with TSIG error C{error}, MAC size 0, request fields echoed."""
        reply = parse(answer)
        self.assertHeader(reply, request, NOTAUTH)
        self.assertEqual(reply.counts[3], 1)
        record = reply.tsig
        request_tsig = parse(request).tsig
        assert record is not None and request_tsig is not None
        self.assertEqual(record.error, error)
        self.assertEqual((record.mac_size, record.mac), (0, b""))
        self.assertEqual(record.original_id, parse(request).id)
        self.assertEqual(record.owner, request_tsig.owner)
        self.assertEqual(
            record.owner_wire, dns.name.from_text(request_tsig.owner).to_wire(), "owner must not be compressed"
        )
        self.assertEqual(record.algorithm, request_tsig.algorithm)
        self.assertEqual(record.time_signed, request_tsig.time_signed)
        self.assertEqual(record.fudge, request_tsig.fudge)
        self.assertEqual((record.other_len, record.other), (0, b""))
        return record

    def assertNoTSIG(self, answer: bytes, request: bytes, rcode: int) -> None:
        reply = parse(answer)
        self.assertEqual(reply.id, parse(request).id)
        self.assertTrue(reply.qr)
        self.assertEqual(reply.opcode, dns.opcode.UPDATE)
        self.assertEqual(reply.rcode, rcode)
        self.assertIsNone(reply.tsig)
        self.assertEqual(reply.counts[3], 0)

    def assertSameFields(self, ours: bytes, theirs: bytes) -> None:
        """Every header and TSIG field of C{ours} equals C{theirs}, then every byte."""
        a, b = parse(ours), parse(theirs)
        for name in ("id", "qr", "opcode", "flags", "rcode", "counts", "zone"):
            self.assertEqual(getattr(a, name), getattr(b, name), name)
        assert a.tsig is not None and b.tsig is not None
        for field in attrs.fields(TSIGRecord):
            self.assertEqual(getattr(a.tsig, field.name), getattr(b.tsig, field.name), f"TSIG {field.name}")
        self.assertEqual(ours.hex(), theirs.hex())


def _generate(cls: type, captures: Iterable[Capture], checks: dict[str, str]) -> type:
    """One test method per capture and check: C{test_<check>_<capture>}."""
    for check, doc in checks.items():
        for capture in captures:

            def test(self: Any, capture: Capture = capture, check: str = check) -> Any:
                return getattr(self, "check_" + check)(capture)

            test.__name__ = f"test_{check}_{capture.slug}"
            test.__doc__ = doc.format(capture=capture.label)
            setattr(cls, test.__name__, test)
    return cls


class ReplayTests(UpdateTestsMixin, unittest.TestCase):
    """Each captured request replayed on a clock set around its Time Signed."""

    def check_noerror(self, capture: Capture) -> None:
        self.setup(capture.time_signed, [capture.user_record()])
        before = self.served(capture.name)
        self.assertEqual(before, (set(), self.service.default_ttl))
        answer, reply = self.reply(capture.wire)
        record = self.assertSigned(answer, capture.wire, capture.key, NOERROR)
        self.assertEqual(reply.counts, (1, 0, 0, 1))
        # dnspython's validator agrees (on our clock: the answer is signed now).
        parsed = dns.message.from_wire(answer, keyring=False)
        assert parsed.tsig is not None
        dns.tsig.validate(
            answer,
            capture.key,
            capture.key.name,
            parsed.tsig[0],
            int(self.clock.seconds()),
            capture.request_mac,
            record.start,
        )
        self.assertEqual(self.served(capture.name), ({capture.address}, capture.ttl))
        state = self.successResultOf(self.store.load()).states[capture.user]
        self.assertEqual([str(a) for a in state.addresses()], [capture.address])
        self.assertEqual(state.method, "dns-update")
        self.assertEqual(state.client_address, PEER)
        if capture.response is not None:
            with open(capture.response, "rb") as f:
                self.assertSameFields(answer, f.read())

    def check_badtime(self, capture: Capture) -> None:
        for now in (capture.time_signed + FUDGE + 1, capture.time_signed - FUDGE - 1):
            self.setup(now, [capture.user_record()])
            before = self.snapshot()
            answer, reply = self.reply(capture.wire)
            record = self.assertSigned(
                answer, capture.wire, capture.key, NOTAUTH, error=BADTIME, time_signed=capture.time_signed
            )
            self.assertEqual(record.other_len, 6)
            self.assertEqual(record.other, struct.pack("!Q", now)[2:])
            self.assertEqual(self.snapshot(), before)
            self.assertEqual(self.served(capture.name), (set(), self.service.default_ttl))
        for now in (capture.time_signed + FUDGE, capture.time_signed - FUDGE):
            self.setup(now, [capture.user_record()])
            answer, reply = self.reply(capture.wire)
            self.assertSigned(answer, capture.wire, capture.key, NOERROR)

    def check_badsig(self, capture: Capture) -> None:
        # 10 s after the request: the echoed Time Signed is the request's.
        for now in (capture.time_signed + 10, capture.time_signed + FUDGE + 100):
            self.setup(now, [capture.user_record(secret=WRONG_SECRET)])
            before = self.snapshot()
            answer, _ = self.reply(capture.wire)
            self.assertUnsignedError(answer, capture.wire, BADSIG)
            self.assertEqual(self.snapshot(), before)

    def check_badkey(self, capture: Capture) -> None:
        other = next(a for a in WIRE_ALGORITHMS if a != capture.algorithm)
        for users in (
            [User("zed", tsig_secret=capture.secret, tsig_algorithm=capture.algorithm)],
            [capture.user_record(algorithm=other)],
            [User(capture.user)],
        ):
            self.setup(capture.time_signed, users)
            before = self.snapshot()
            answer, _ = self.reply(capture.wire)
            self.assertUnsignedError(answer, capture.wire, BADKEY)
            self.assertEqual(self.snapshot(), before)


_generate(
    ReplayTests,
    REPLAYS,
    {
        "noerror": "{capture} on its own clock: NOERROR signed, the address served and stored.",
        "badtime": "{capture} with the clock past the fudge: BADTIME signed, our time in Other Data.",
        "badsig": "{capture} with a different secret for its key: NOTAUTH/BADSIG unsigned.",
        "badkey": "{capture} with no such key (or another algorithm, or none): BADKEY unsigned.",
    },
)


class ReferenceTests(UpdateTestsMixin, unittest.TestCase):
    """
    Our answers to BIND's and Knot's requests against their answers. There is
    no difference left: every header and TSIG field, and every byte, is the
    same (Time Signed echoed in the errors, Other Data = server time for
    BADTIME, uncompressed TSIG owner, counts 1/0/0/1). The references were
    captured in the second the request was signed, so they cannot tell a
    Time Signed echo from the server's time for BADKEY/BADSIG; ReplayTests
    shows that ours is the echo.
    """

    USERS = [
        User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256"),
        User("bob", tsig_secret=BOB_SECRET, tsig_algorithm="hmac-md5"),
    ]
    KNOT_USERS = [User("alice", tsig_secret=KNOT_KEY["secret_b64"], tsig_algorithm="hmac-md5")]

    def compare(self, query: bytes, response: bytes, now: int, users: list[User]) -> bytes:
        self.setup(now, users)
        before = self.snapshot()
        answer, _ = self.reply(query)
        self.assertSameFields(answer, response)
        if parse(response).rcode != NOERROR:
            self.assertEqual(self.snapshot(), before)
        return answer

    def bind(self, base: str) -> tuple[bytes, bytes, int]:
        with open(os.path.join(DNS_FIXTURES, base + ".query.json")) as f:
            now = json.load(f)["decoded"]["tsig"]["time_signed"]
        return (read(DNS_FIXTURES, base + ".query.bin"), read(DNS_FIXTURES, base + ".response.bin"), now)

    def test_own_mac_check(self):
        """Our HMAC check verifies every captured request and signed reference answer."""
        for capture in REPLAYS:
            self.assertEqual(tsig_mac(capture.wire, capture.key.secret), capture.request_mac)
            if capture.response is not None:
                with open(capture.response, "rb") as f:
                    response = f.read()
                record = parse(response).tsig
                assert record is not None
                self.assertEqual(tsig_mac(response, capture.key.secret, capture.request_mac), record.mac)
        query = read(KNOT_FIXTURES, "tsig-003-badtime-udp-query.bin")
        response = read(KNOT_FIXTURES, "tsig-003-badtime-udp-response.bin")
        secret = base64.b64decode(KNOT_KEY["secret_b64"])
        record = parse(response).tsig
        assert record is not None
        self.assertEqual(tsig_mac(response, secret, parse(query).tsig.mac), record.mac)  # type: ignore[union-attr]
        self.assertNotEqual(tsig_mac(response, secret), record.mac)

    def test_bind_noerror_md5(self):
        """hmac-md5 NOERROR: identical to BIND's signed answer."""
        query, response, now = self.bind("ref-bind-update-noerror-md5")
        self.compare(query, response, now, self.USERS)

    def test_bind_noerror_sha256(self):
        """hmac-sha256 NOERROR: identical to BIND's signed answer."""
        query, response, now = self.bind("ref-bind-update-noerror-sha256")
        self.compare(query, response, now, self.USERS)

    def test_bind_refused_foreign_name(self):
        """bob's key changing alice's name: REFUSED, signed, identical to BIND's answer."""
        query, response, now = self.bind("ref-bind-update-refused-foreign-name")
        answer = self.compare(query, response, now, self.USERS)
        self.assertSigned(answer, query, make_key(f"bob.{ZONE}", BOB_SECRET, "hmac-md5"), REFUSED)

    def test_bind_badsig(self):
        """alice's key name with a wrong secret: NOTAUTH/BADSIG unsigned, identical to BIND's."""
        query, response, now = self.bind("ref-bind-update-badsig")
        answer = self.compare(query, response, now, self.USERS)
        self.assertUnsignedError(answer, query, BADSIG)

    def test_bind_badkey(self):
        """An unknown key name: NOTAUTH/BADKEY unsigned, identical to BIND's."""
        query, response, now = self.bind("ref-bind-update-badkey")
        answer = self.compare(query, response, now, self.USERS)
        self.assertUnsignedError(answer, query, BADKEY)

    def test_knot_noerror_md5_tcp(self):
        """Key C{alice.} hmac-md5 over TCP: identical to Knot's signed NOERROR."""
        self.compare(
            read(KNOT_FIXTURES, "tsig-001-md5-tcp-query.bin"),
            read(KNOT_FIXTURES, "tsig-001-md5-tcp-response.bin"),
            KNOT["captures"]["tsig-001-md5-tcp"]["time_signed"],
            self.KNOT_USERS,
        )

    def test_knot_badkey(self):
        """Key C{mallory.}: NOTAUTH/BADKEY unsigned, identical to Knot's."""
        query = read(KNOT_FIXTURES, "tsig-001-badkey-udp-query.bin")
        answer = self.compare(
            query,
            read(KNOT_FIXTURES, "tsig-001-badkey-udp-response.bin"),
            KNOT["captures"]["tsig-001-badkey-udp"]["time_signed"],
            self.KNOT_USERS,
        )
        self.assertUnsignedError(answer, query, BADKEY)

    def test_knot_badsig(self):
        """Key C{alice.} with a wrong secret: NOTAUTH/BADSIG unsigned, identical to Knot's."""
        query = read(KNOT_FIXTURES, "tsig-001-badsig-udp-query.bin")
        answer = self.compare(
            query,
            read(KNOT_FIXTURES, "tsig-001-badsig-udp-response.bin"),
            KNOT["captures"]["tsig-001-badsig-udp"]["time_signed"],
            self.KNOT_USERS,
        )
        self.assertUnsignedError(answer, query, BADSIG)

    def test_knot_badtime(self):
        """Signed 1000 s ago: BADTIME signed, Time Signed echoed, Other Data = our time, as Knot."""
        info = KNOT["captures"]["tsig-003-badtime-udp"]
        query = read(KNOT_FIXTURES, "tsig-003-badtime-udp-query.bin")
        answer = self.compare(
            query, read(KNOT_FIXTURES, "tsig-003-badtime-udp-response.bin"), info["server_time"], self.KNOT_USERS
        )
        key = make_key(KNOT_KEY["name"], KNOT_KEY["secret_b64"], "hmac-md5")
        record = self.assertSigned(answer, query, key, NOTAUTH, BADTIME, info["time_signed"])
        self.assertEqual(record.other, struct.pack("!Q", info["server_time"])[2:])


class ReplayRuleTests(UpdateTestsMixin, unittest.TestCase):
    """
    A message already accepted, or signed before the newest one accepted
    for the key, is BADTIME (issue 14: the same message twice used to pass).
    """

    def setUp(self):
        self.alice = make_key(f"alice.{ZONE}", ALICE_SECRET)
        self.bob = make_key(f"bob.{ZONE}", BOB_SECRET, "hmac-md5")
        self.setup(
            T0,
            [
                User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256"),
                User("bob", tsig_secret=BOB_SECRET, tsig_algorithm="hmac-md5"),
            ],
        )

    def send(self, key: dns.tsig.Key, message: dns.message.Message, at: int, rcode: int = NOERROR) -> TSIGRecord:
        wire = sign_at(message, key, at)
        answer, _ = self.reply(wire)
        if rcode == BADTIME:
            return self.assertSigned(answer, wire, key, NOTAUTH, BADTIME, time_signed=at)
        return self.assertSigned(answer, wire, key, rcode)

    def test_same_message_twice(self):
        """The same capture handled twice with the clock unchanged: the copy is BADTIME."""
        capture = CAPTURES["nsupdate-hmac-sha256-udp"]
        self.clock.advance(capture.time_signed - T0)
        answer, _ = self.reply(capture.wire)
        self.assertSigned(answer, capture.wire, capture.key, NOERROR)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.7"}, 60))
        answer, _ = self.reply(capture.wire)
        self.assertSigned(answer, capture.wire, capture.key, NOTAUTH, BADTIME, time_signed=capture.time_signed)

    def test_replay_within_the_same_second_does_not_roll_back(self):
        """A then B signed in the same second; A again: refused, B stays served."""
        self.clock.advance(10)
        first = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.1"), self.alice, T0 + 10)
        answer, _ = self.reply(first)
        self.assertSigned(answer, first, self.alice, NOERROR)
        self.send(self.alice, set_address(f"alice.{ZONE}", "A", "192.0.2.2"), T0 + 10)
        answer, _ = self.reply(first)
        self.assertSigned(answer, first, self.alice, NOTAUTH, BADTIME, time_signed=T0 + 10)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.2"}, 60))

    def test_older_after_newer(self):
        """An older message after a newer one for the same key: BADTIME signed, nothing changed."""
        self.clock.advance(10)
        self.send(self.alice, set_address(f"alice.{ZONE}", "A", "192.0.2.1"), T0 + 10)
        before = self.snapshot()
        record = self.send(self.alice, set_address(f"alice.{ZONE}", "A", "192.0.2.2"), T0 + 5, BADTIME)
        self.assertEqual(record.other, struct.pack("!Q", T0 + 10)[2:])
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.1"}, 60))
        # The newest time is still accepted, and a newer one.
        self.send(self.alice, set_address(f"alice.{ZONE}", "A", "192.0.2.3"), T0 + 10)
        self.send(self.alice, set_address(f"alice.{ZONE}", "A", "192.0.2.4"), T0 + 11)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.4"}, 60))

    def test_replayed_capture(self):
        """A captured nsupdate message replayed after a newer one: BADTIME."""
        capture = CAPTURES["nsupdate-hmac-sha256-udp"]
        self.clock.advance(capture.time_signed + 1 - T0)
        self.send(self.alice, set_address(f"alice.{ZONE}", "A", "192.0.2.1"), capture.time_signed + 1)
        answer, _ = self.reply(capture.wire)
        self.assertSigned(answer, capture.wire, capture.key, NOTAUTH, BADTIME, time_signed=capture.time_signed)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.1"}, 60))

    def test_per_key(self):
        """One key's newer message does not make another key's older one a replay."""
        self.clock.advance(10)
        self.send(self.alice, set_address(f"alice.{ZONE}", "A", "192.0.2.1"), T0 + 10)
        self.send(self.bob, set_address(f"bob.{ZONE}", "A", "192.0.2.2"), T0 + 5)
        self.assertEqual(self.served(f"bob.{SUFFIX}"), ({"192.0.2.2"}, 60))

    def test_rejected_messages_do_not_count(self):
        """A newer message with a bad MAC does not raise the last accepted time."""
        self.clock.advance(10)
        wire = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.9"), self.alice, T0 + 10, mac=b"\x00" * 32)
        answer, _ = self.reply(wire)
        self.assertUnsignedError(answer, wire, BADSIG)
        self.send(self.alice, set_address(f"alice.{ZONE}", "A", "192.0.2.1"), T0 + 5)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.1"}, 60))


class PolicyTests(UpdateTestsMixin, unittest.TestCase):
    """A key changes only its own user's names, types A and AAAA: else REFUSED, signed."""

    def setUp(self):
        self.alice = make_key(f"alice.{ZONE}", ALICE_SECRET)
        self.setup(
            T0,
            [
                User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256"),
                User("bob", tsig_secret=BOB_SECRET, tsig_algorithm="hmac-md5", hostnames=["home.example.org"]),
            ],
            zones=["example.org"],
        )
        self.go_online("alice", "192.0.2.1")
        self.go_online("bob", "198.51.100.7")

    def refused(self, message: dns.message.Message) -> None:
        before = self.snapshot()
        wire = sign_at(message, self.alice, T0)
        answer, _ = self.reply(wire)
        self.assertSigned(answer, wire, self.alice, REFUSED)
        self.assertEqual(self.snapshot(), before)

    def test_foreign_name(self):
        """alice's key setting bob's main name: REFUSED signed, nothing changed."""
        self.refused(set_address(f"bob.{ZONE}", "A", "192.0.2.66"))
        self.assertEqual(self.served(f"bob.{SUFFIX}"), ({"198.51.100.7"}, 60))

    def test_foreign_additional_name(self):
        """alice's key setting bob's additional name in a host zone: REFUSED signed."""
        message = dns.update.UpdateMessage("example.org.")
        message.replace("home.example.org.", 60, "A", "192.0.2.66")
        self.refused(message)

    def test_foreign_name_beside_own(self):
        """Own name and a foreign name in one message: REFUSED, neither changes."""
        message = set_address(f"alice.{ZONE}", "A", "192.0.2.2")
        message.add(f"bob.{ZONE}", 60, "A", "192.0.2.66")
        self.refused(message)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.1"}, 60))

    def test_name_below_own(self):
        """A name below alice's (not one of her names) is foreign too: REFUSED."""
        self.refused(set_address(f"www.alice.{ZONE}", "A", "192.0.2.2"))

    def test_dotted_label_is_not_own_name(self):
        """
        Owner labels C{a.b|example|org} (one label holding a dot) read like
        alice's name C{a.b.example.org} when joined: REFUSED, nothing changed.
        """
        self.successResultOf(self.service.edit_user("alice", hostnames=["a.b.example.org"]))
        message = dns.update.UpdateMessage("example.org.")
        message.replace("a.b.example.org.", 60, "A", "192.0.2.2")  # allowed: control
        wire = sign_at(message, self.alice, T0)
        answer, _ = self.reply(wire)
        self.assertSigned(answer, wire, self.alice, NOERROR)
        forged = dns.update.UpdateMessage("example.org.")
        forged.replace(dns.name.Name([b"a.b", b"example", b"org", b""]), 60, "A", "192.0.2.3")
        self.refused(forged)
        self.assertEqual(self.served("a.b.example.org"), ({"192.0.2.2"}, 60))

    def test_wrong_types(self):
        """TXT, MX, CNAME adds and a TXT delete on alice's own name: REFUSED signed."""
        for rdtype, rdata in (("TXT", '"hello"'), ("MX", "10 mail.example.org."), ("CNAME", "example.org.")):
            message = update()
            message.add(f"alice.{ZONE}", 60, rdtype, rdata)
            self.refused(message)
        message = update()
        message.delete(f"alice.{ZONE}", "TXT")
        self.refused(message)

    def test_wrong_type_beside_address(self):
        """A valid A change with a TXT add in the same message: REFUSED, A not applied."""
        message = set_address(f"alice.{ZONE}", "A", "192.0.2.2")
        message.add(f"alice.{ZONE}", 60, "TXT", '"x"')
        self.refused(message)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.1"}, 60))

    def test_key_of_another_user(self):
        """BIND's badkey request (key C{unknown.}) with that user configured: REFUSED, alice kept."""
        query = read(DNS_FIXTURES, "ref-bind-update-badkey.query.bin")
        with open(os.path.join(DNS_FIXTURES, "ref-bind-update-badkey.query.json")) as f:
            meta = json.load(f)
        self.setup(
            meta["decoded"]["tsig"]["time_signed"],
            [
                User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256"),
                User("unknown", tsig_secret=meta["key"]["secret_b64"], tsig_algorithm="hmac-sha256"),
            ],
        )
        self.go_online("alice", "192.0.2.1")
        before = self.snapshot()
        answer, _ = self.reply(query)
        self.assertSigned(answer, query, make_key(meta["key"]["name"], meta["key"]["secret_b64"]), REFUSED)
        self.assertEqual(self.snapshot(), before)


class PrerequisiteTests(UpdateTestsMixin, unittest.TestCase):
    """
    The five prerequisite forms of RFC 2136 section 2.4, satisfied and not;
    alice has only an IPv4 address, C{nobody} is nobody's name. A message
    whose prerequisites fail changes nothing and is answered signed.
    """

    def setUp(self):
        self.alice = make_key(f"alice.{ZONE}", ALICE_SECRET)
        self.setup(T0, [User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256")])
        self.go_online("alice", "192.0.2.1")

    def check(self, prerequisite: Callable[[dns.update.UpdateMessage], None], rcode: int) -> None:
        message = set_address(f"alice.{ZONE}", "A", "192.0.2.2")
        prerequisite(message)
        before = self.snapshot()
        wire = sign_at(message, self.alice, T0)
        answer, _ = self.reply(wire)
        self.assertSigned(answer, wire, self.alice, rcode)
        if rcode == NOERROR:
            self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.2"}, 60))
        else:
            self.assertEqual(self.snapshot(), before)
            self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.1"}, 60))

    def test_name_in_use(self):
        """ANY ANY: satisfied for alice's name."""
        self.check(lambda m: m.present(f"alice.{ZONE}"), NOERROR)

    def test_name_in_use_fails(self):
        """ANY ANY for a name nobody has: NXDOMAIN."""
        self.check(lambda m: m.present(f"nobody.{ZONE}"), dns.rcode.NXDOMAIN)

    def test_rrset_exists(self):
        """ANY A: satisfied, alice has an A record."""
        self.check(lambda m: m.present(f"alice.{ZONE}", "A"), NOERROR)

    def test_rrset_exists_fails(self):
        """ANY AAAA: alice has no IPv6 address, NXRRSET."""
        self.check(lambda m: m.present(f"alice.{ZONE}", "AAAA"), dns.rcode.NXRRSET)

    def test_name_not_in_use(self):
        """NONE ANY: satisfied for a name nobody has."""
        self.check(lambda m: m.absent(f"nobody.{ZONE}"), NOERROR)

    def test_name_not_in_use_fails(self):
        """NONE ANY for alice's name: YXDOMAIN."""
        self.check(lambda m: m.absent(f"alice.{ZONE}"), dns.rcode.YXDOMAIN)

    def test_rrset_does_not_exist(self):
        """NONE AAAA: satisfied, alice has no AAAA."""
        self.check(lambda m: m.absent(f"alice.{ZONE}", "AAAA"), NOERROR)

    def test_rrset_does_not_exist_fails(self):
        """NONE A: alice has an A record, YXRRSET."""
        self.check(lambda m: m.absent(f"alice.{ZONE}", "A"), dns.rcode.YXRRSET)

    def test_value_dependent(self):
        """A with exactly alice's address: satisfied."""
        self.check(lambda m: m.present(f"alice.{ZONE}", "A", "192.0.2.1"), NOERROR)

    def test_value_dependent_fails(self):
        """A with another address: NXRRSET."""
        self.check(lambda m: m.present(f"alice.{ZONE}", "A", "192.0.2.99"), dns.rcode.NXRRSET)

    def test_value_dependent_two_records(self):
        """
        Two A records in the prerequisite form one RRset (RFC 2136 3.2.5):
        alice's single address is not that RRset, NXRRSET; the same
        address twice is the RRset {address}, satisfied.
        """

        def two(message: dns.update.UpdateMessage) -> None:
            message.present(f"alice.{ZONE}", "A", "192.0.2.1")
            message.present(f"alice.{ZONE}", "A", "192.0.2.99")

        self.check(two, dns.rcode.NXRRSET)

        def twice(message: dns.update.UpdateMessage) -> None:
            message.present(f"alice.{ZONE}", "A", "192.0.2.1")
            message.present(f"alice.{ZONE}", "A", "192.0.2.1")

        self.check(twice, NOERROR)

    def test_value_dependent_missing_rrset(self):
        """AAAA with a value while alice has no AAAA: NXRRSET."""
        self.check(lambda m: m.present(f"alice.{ZONE}", "AAAA", "2001:db8::1"), dns.rcode.NXRRSET)

    def test_outside_zone(self):
        """Each form for a name outside the zone: NOTZONE."""
        for form in (
            lambda m: m.present("foo.example.net."),
            lambda m: m.present("foo.example.net.", "A"),
            lambda m: m.absent("foo.example.net."),
            lambda m: m.absent("foo.example.net.", "A"),
            lambda m: m.present("foo.example.net.", "A", "192.0.2.1"),
        ):
            self.check(form, dns.rcode.NOTZONE)

    def test_nonzero_ttl(self):
        """A prerequisite with a TTL other than 0: FORMERR."""

        def form(message: dns.update.UpdateMessage) -> None:
            message.present(f"alice.{ZONE}", "A", "192.0.2.1")
            message.prerequisite[0].ttl = 60

        self.check(form, FORMERR)


class UpdateFormTests(UpdateTestsMixin, unittest.TestCase):
    """
    The update forms of RFC 2136 section 2.5 mapped onto one address per
    family: alice has 192.0.2.1 and 2001:db8::1 (TTL 60); TTLs are bounded
    to 60..3600; carol is online with an offline IP, dave without one.
    """

    def setUp(self):
        self.alice = make_key(f"alice.{ZONE}", ALICE_SECRET)
        self.setup(
            T0,
            [
                User(
                    "alice",
                    tsig_secret=ALICE_SECRET,
                    tsig_algorithm="hmac-sha256",
                    hostnames=["gateway.example.info", f"*.alice.{SUFFIX}", "web.example.org", "ftp.example.org"],
                ),
                User("carol", tsig_secret=CAROL_SECRET, tsig_algorithm="hmac-sha512", offline_ipv4="192.0.2.200"),
                User("dave", tsig_secret=DAVE_SECRET, tsig_algorithm="hmac-sha1"),
            ],
            zones=["example.org"],
            default_ttl=60,
            min_ttl=60,
            max_ttl=3600,
        )
        self.go_online("alice", "192.0.2.1", "2001:db8::1")
        self.go_online("carol", "192.0.2.5")
        self.go_online("dave", "192.0.2.6")

    def send(self, message: dns.message.Message | bytes, rcode: int = NOERROR, key: dns.tsig.Key | None = None) -> None:
        key = key or self.alice
        before = self.snapshot()
        wire = sign_at(message, key, T0)
        answer, _ = self.reply(wire)
        self.assertSigned(answer, wire, key, rcode)
        if rcode != NOERROR:
            self.assertEqual(self.snapshot(), before)

    def alice_serves(self) -> tuple[set[str], int] | None:
        return self.served(f"alice.{SUFFIX}")

    def test_delete_rrset_and_add(self):
        """Delete A RRset + add (nsupdate): the new IPv4, AAAA kept, TTL from the update."""
        self.send(set_address(f"alice.{ZONE}", "A", "192.0.2.2", ttl=120))
        self.assertEqual(self.alice_serves(), ({"192.0.2.2", "2001:db8::1"}, 120))

    def test_plain_add(self):
        """A plain add replaces the address of that family."""
        message = update()
        message.add(f"alice.{ZONE}", 60, "AAAA", "2001:db8::2")
        self.send(message)
        self.assertEqual(self.alice_serves(), ({"192.0.2.1", "2001:db8::2"}, 60))

    def test_add_same_address(self):
        """Adding the address alice already has: NOERROR, nothing written."""
        before = self.snapshot()
        message = update()
        message.add(f"alice.{ZONE}", 60, "A", "192.0.2.1")
        self.send(message)
        self.assertEqual(self.snapshot(), before)

    def test_delete_rr_matching(self):
        """Delete one RR with alice's IPv4: A gone, AAAA kept."""
        message = update()
        message.delete(f"alice.{ZONE}", "A", "192.0.2.1")
        self.send(message)
        self.assertEqual(self.alice_serves(), ({"2001:db8::1"}, 60))

    def test_delete_rr_not_matching(self):
        """Delete one RR with another address: NOERROR, nothing changes."""
        before = self.snapshot()
        message = update()
        message.delete(f"alice.{ZONE}", "A", "192.0.2.99")
        self.send(message)
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.alice_serves(), ({"192.0.2.1", "2001:db8::1"}, 60))

    def test_delete_rrset_keeps_other_family(self):
        """Delete the A RRset: AAAA kept, alice stays online."""
        message = update()
        message.delete(f"alice.{ZONE}", "A")
        self.send(message)
        self.assertEqual(self.alice_serves(), ({"2001:db8::1"}, 60))
        self.assertFalse(self.service.registry.states["alice"].offline)

    def test_delete_both_rrsets(self):
        """Deleting the A and the AAAA RRset takes alice offline (no address)."""
        message = update()
        message.delete(f"alice.{ZONE}", "A")
        message.delete(f"alice.{ZONE}", "AAAA")
        self.send(message)
        self.assertTrue(self.service.registry.states["alice"].offline)
        self.assertEqual(self.alice_serves(), (set(), 60))

    def test_delete_name_offline_ip(self):
        """Delete name (ANY ANY): carol offline, her offline IP served."""
        message = update()
        message.delete(f"carol.{ZONE}")
        self.send(message, key=make_key(f"carol.{ZONE}", CAROL_SECRET, "hmac-sha512"))
        self.assertTrue(self.successResultOf(self.store.load()).states["carol"].offline)
        self.assertEqual(self.served(f"carol.{SUFFIX}"), ({"192.0.2.200"}, 60))

    def test_delete_name_no_offline_ip(self):
        """Delete name (ANY ANY): dave offline without an offline IP serves no address."""
        message = update()
        message.delete(f"dave.{ZONE}")
        self.send(message, key=make_key(f"dave.{ZONE}", DAVE_SECRET, "hmac-sha1"))
        self.assertTrue(self.successResultOf(self.store.load()).states["dave"].offline)
        self.assertEqual(self.served(f"dave.{SUFFIX}"), (set(), 60))

    def test_delete_then_add_back(self):
        """Delete name, then add an A in the same message: online with just that A."""
        message = update()
        message.delete(f"alice.{ZONE}")
        message.add(f"alice.{ZONE}", 300, "A", "192.0.2.3")
        self.send(message)
        self.assertEqual(self.alice_serves(), ({"192.0.2.3"}, 300))

    def test_ttl_clamped(self):
        """The update's TTL is clamped to the service bounds (60..3600)."""
        self.send(set_address(f"alice.{ZONE}", "A", "192.0.2.2", ttl=5))
        self.assertEqual(self.alice_serves(), ({"192.0.2.2", "2001:db8::1"}, 60))
        self.send(set_address(f"alice.{ZONE}", "A", "192.0.2.3", ttl=999999))
        self.assertEqual(self.alice_serves(), ({"192.0.2.3", "2001:db8::1"}, 3600))

    def test_two_addresses_refused(self):
        """Two different A rdatas added in one message: REFUSED, nothing changed."""
        message = update()
        message.delete(f"alice.{ZONE}", "A")
        message.add(f"alice.{ZONE}", 60, "A", "192.0.2.2", "192.0.2.3")
        self.send(message, REFUSED)
        message = dns.update.UpdateMessage("example.org.")
        message.add("web.example.org.", 60, "A", "192.0.2.2")
        message.add("ftp.example.org.", 60, "A", "192.0.2.3")
        self.send(message, REFUSED)
        self.assertEqual(self.alice_serves(), ({"192.0.2.1", "2001:db8::1"}, 60))

    def test_multicast_or_unspecified_address_refused(self):
        """A rdata that is no host's address (224/4, 0.0.0.0, ff00::/8, ::): REFUSED, nothing changed (bench/fuzz.py)."""
        for rdtype, address in (("A", "224.0.2.66"), ("A", "0.0.0.0"), ("AAAA", "ff02::1"), ("AAAA", "::")):
            message = update()
            message.replace(f"alice.{ZONE}", 60, rdtype, address)
            self.send(message, REFUSED)
        self.assertEqual(self.alice_serves(), ({"192.0.2.1", "2001:db8::1"}, 60))

    def test_add_after_deleting_it(self):
        """Add, delete that RR, add another in one message: the last one is set."""
        message = update()
        message.add(f"alice.{ZONE}", 60, "A", "192.0.2.2")
        message.delete(f"alice.{ZONE}", "A", "192.0.2.2")
        message.add(f"alice.{ZONE}", 60, "A", "192.0.2.3")
        self.send(message)
        self.assertEqual(self.alice_serves(), ({"192.0.2.3", "2001:db8::1"}, 60))

    def test_duplicate_add(self):
        """The same A rdata twice is one address: NOERROR."""
        message = update()
        message.add(f"alice.{ZONE}", 60, "A", "192.0.2.2")
        message.add(f"alice.{ZONE}", 60, "A", "192.0.2.2")
        self.send(message)
        self.assertEqual(self.alice_serves(), ({"192.0.2.2", "2001:db8::1"}, 60))

    def test_additional_name(self):
        """An update of alice's additional name changes alice (all her names)."""
        message = dns.update.UpdateMessage("gateway.example.info.")
        message.replace("gateway.example.info.", 60, "A", "192.0.2.7")
        self.send(message)
        for name in (f"alice.{SUFFIX}", "gateway.example.info", f"x.alice.{SUFFIX}"):
            self.assertEqual(self.served(name), ({"192.0.2.7", "2001:db8::1"}, 60), name)

    def test_host_zone(self):
        """Zone = a host zone we serve, name = alice's additional name in it: accepted."""
        message = dns.update.UpdateMessage("example.org.")
        message.replace("web.example.org.", 60, "AAAA", "2001:db8::7")
        self.send(message)
        self.assertEqual(self.alice_serves(), ({"192.0.2.1", "2001:db8::7"}, 60))

    def test_own_name_as_zone(self):
        """Zone = the user's own name: accepted."""
        message = dns.update.UpdateMessage(f"alice.{ZONE}")
        message.replace(f"alice.{ZONE}", 60, "A", "192.0.2.8")
        self.send(message)
        self.assertEqual(self.alice_serves(), ({"192.0.2.8", "2001:db8::1"}, 60))

    def test_outside_zone(self):
        """An update RR outside the zone section's zone: NOTZONE."""
        message = dns.update.UpdateMessage(f"alice.{ZONE}")
        message.replace("gateway.example.info.", 60, "A", "192.0.2.8")
        self.send(message, dns.rcode.NOTZONE)

    def test_zone_not_served(self):
        """A zone we do not serve: NOTAUTH, signed (TSIG error 0)."""
        for zone in ("example.net.", "dyn.example.net.", "example.com.", f"carol.{ZONE}"):
            message = dns.update.UpdateMessage(zone)
            message.replace(f"alice.{ZONE}", 60, "A", "192.0.2.8")
            self.send(message, NOTAUTH)

    def test_zone_of_another_class(self):
        """The suffix zone in class CH: NOTAUTH, signed."""
        message = update(rdclass=dns.rdataclass.CH)
        self.send(message, NOTAUTH)

    def unparsable(self, message: dns.message.Message) -> None:
        """FORMERR, header only (dnspython cannot parse it, so no TSIG is checked)."""
        before = self.snapshot()
        wire = sign_at(message, self.alice, T0)
        answer = self.handle(wire)
        assert answer is not None
        self.assertEqual(answer, struct.pack("!HHHHHH", parse(wire).id, 0xA800 | FORMERR, 0, 0, 0, 0))
        self.assertEqual(self.snapshot(), before)

    def test_two_zones(self):
        """A zone section with two entries: FORMERR (header only)."""
        message = set_address(f"alice.{ZONE}", "A", "192.0.2.2")
        message.zone.append(dns.rrset.RRset(dns.name.from_text("example.org."), dns.rdataclass.IN, dns.rdatatype.SOA))
        self.unparsable(message)

    def test_zone_not_soa(self):
        """A zone section entry of type A: FORMERR (header only)."""
        message = set_address(f"alice.{ZONE}", "A", "192.0.2.2")
        message.zone[0] = dns.rrset.RRset(dns.name.from_text(ZONE), dns.rdataclass.IN, dns.rdatatype.A)
        self.unparsable(message)

    def test_no_zone(self):
        """An empty zone section before update RRs: FORMERR (header only)."""
        message = set_address(f"alice.{ZONE}", "A", "192.0.2.2")
        message.zone = []
        self.unparsable(message)

    def test_prescan_add_meta_type(self):
        """An add (class IN) of type ANY, AXFR or MAILB after a valid change: FORMERR, signed."""
        for rdtype in (dns.rdatatype.ANY, dns.rdatatype.AXFR, dns.rdatatype.MAILB):
            wire = set_address(f"alice.{ZONE}", "A", "192.0.2.2").to_wire()
            record = dns.name.from_text(f"alice.{ZONE}").to_wire() + struct.pack(
                "!HHIH", rdtype, dns.rdataclass.IN, 60, 0
            )
            upcount = struct.unpack("!H", wire[8:10])[0] + 1
            self.send(wire[:8] + struct.pack("!H", upcount) + wire[10:] + record, FORMERR)

    def test_prescan_delete_rr_with_ttl(self):
        """A delete-RR (class NONE) with a TTL other than 0: FORMERR, signed."""
        record = (
            dns.name.from_text(f"alice.{ZONE}").to_wire()
            + struct.pack("!HHIH", dns.rdatatype.A, dns.rdataclass.NONE, 60, 4)
            + bytes([192, 0, 2, 1])
        )
        wire = update().to_wire()
        self.send(wire[:8] + struct.pack("!H", 1) + wire[10:] + record, FORMERR)
        self.assertEqual(self.alice_serves(), ({"192.0.2.1", "2001:db8::1"}, 60))

    def test_disabled_user(self):
        """A disabled user's valid update: REFUSED, signed, nothing changed."""
        self.successResultOf(self.service.set_disabled("alice", True))
        self.send(set_address(f"alice.{ZONE}", "A", "192.0.2.2"), REFUSED)
        self.assertIsNone(self.alice_serves())

    def test_store_failure(self):
        """The store fails: SERVFAIL, signed, nothing served changes."""
        self.store.fail_writes = RuntimeError("disk gone")
        before = dict(self.service.registry.states)
        self.send(set_address(f"alice.{ZONE}", "A", "192.0.2.2"), dns.rcode.SERVFAIL)
        self.assertEqual(dict(self.service.registry.states), before)
        self.assertEqual(self.alice_serves(), ({"192.0.2.1", "2001:db8::1"}, 60))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_store_failure_offline(self):
        """The store fails while going offline: SERVFAIL, signed, still online."""
        self.store.fail_writes = RuntimeError("disk gone")
        message = update()
        message.delete(f"alice.{ZONE}")
        self.send(message, dns.rcode.SERVFAIL)
        self.assertEqual(self.alice_serves(), ({"192.0.2.1", "2001:db8::1"}, 60))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_prerequisites_only(self):
        """A message with a satisfied prerequisite and no updates: NOERROR, nothing written."""
        before = self.snapshot()
        message = update()
        message.present(f"alice.{ZONE}", "A")
        self.send(message)
        self.assertEqual(self.snapshot(), before)


class KeyTests(UpdateTestsMixin, unittest.TestCase):
    """Key names, password-derived secrets, algorithms, unsigned messages."""

    def test_both_key_names(self):
        """Key C{alice.} and C{alice.<suffix>.} (any case) both update alice."""
        self.setup(T0, [User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256")])
        for n, name in enumerate(("alice.", f"alice.{ZONE}", "ALICE.", "Alice.DYN.example.COM.")):
            key = make_key(name, ALICE_SECRET)
            address = f"192.0.2.{n + 1}"
            wire = sign_at(set_address(f"alice.{ZONE}", "A", address), key, T0)
            answer, reply = self.reply(wire)
            self.assertSigned(answer, wire, key, NOERROR)
            assert reply.tsig is not None
            self.assertEqual(reply.tsig.owner_wire, dns.name.from_text(name).to_wire())
            self.assertEqual(self.served(f"alice.{SUFFIX}"), ({address}, 60))

    def test_secret_change_takes_effect(self):
        """
        The handler caches each user's decoded key: a new secret (or
        algorithm) set while it runs is used from the next message on, and
        the old one gets BADSIG (BADKEY for the old algorithm).
        """
        self.setup(T0, [User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256")])
        old = make_key(f"alice.{ZONE}", ALICE_SECRET)
        wire = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.1"), old, T0)
        self.assertSigned(self.reply(wire)[0], wire, old, NOERROR)
        self.successResultOf(self.service.edit_user("alice", tsig_secret=BOB_SECRET))
        wire = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.2"), old, T0)
        self.assertUnsignedError(self.reply(wire)[0], wire, BADSIG)
        new = make_key(f"alice.{ZONE}", BOB_SECRET)
        wire = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.3"), new, T0)
        self.assertSigned(self.reply(wire)[0], wire, new, NOERROR)
        self.successResultOf(self.service.edit_user("alice", tsig_algorithm="hmac-sha512"))
        wire = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.4"), new, T0)
        self.assertUnsignedError(self.reply(wire)[0], wire, BADKEY)
        newer = make_key(f"alice.{ZONE}", BOB_SECRET, "hmac-sha512")
        wire = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.5"), newer, T0)
        self.assertSigned(self.reply(wire)[0], wire, newer, NOERROR)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.5"}, 60))

    def test_other_key_names(self):
        """C{alice.example.net.}, C{x.alice.<suffix>.}, C{<suffix>.}: BADKEY."""
        self.setup(T0, [User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256")])
        for name in ("alice.example.net.", f"x.alice.{ZONE}", ZONE, "alice.dyn.example.net."):
            wire = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.2"), make_key(name, ALICE_SECRET), T0)
            answer, _ = self.reply(wire)
            self.assertUnsignedError(answer, wire, BADKEY)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), (set(), self.service.default_ttl))

    def test_password_derived(self):
        """tsig_from_password: secret = base64(md5(password)) with hmac-md5 and hmac-sha256."""
        secret = base64.b64encode(hashlib.md5(b"pa55word").digest()).decode()
        wrong = base64.b64encode(hashlib.md5(b"pa55wort").digest()).decode()
        for algorithm in ("hmac-md5", "hmac-sha256"):
            self.setup(
                T0,
                [
                    User(
                        "dave", md5_verifier=md5_verifier("pa55word"), tsig_from_password=True, tsig_algorithm=algorithm
                    )
                ],
            )
            key = make_key(f"dave.{ZONE}", secret, algorithm)
            wire = sign_at(set_address(f"dave.{ZONE}", "A", "192.0.2.9"), key, T0)
            answer, _ = self.reply(wire)
            self.assertSigned(answer, wire, key, NOERROR)
            self.assertEqual(self.served(f"dave.{SUFFIX}"), ({"192.0.2.9"}, 60))
            wire = sign_at(
                set_address(f"dave.{ZONE}", "A", "192.0.2.10"), make_key(f"dave.{ZONE}", wrong, algorithm), T0
            )
            answer, _ = self.reply(wire)
            self.assertUnsignedError(answer, wire, BADSIG)
            self.assertEqual(self.served(f"dave.{SUFFIX}"), ({"192.0.2.9"}, 60))

    def test_every_algorithm(self):
        """Every algorithm in ALGORITHMS: signed by dnspython, accepted, the answer verifies."""
        self.assertEqual(sorted(ALGORITHMS), sorted(TSIG_ALGORITHMS))
        self.assertEqual(sorted(ALGORITHMS), sorted(WIRE_ALGORITHMS))
        secret = base64.b64encode(bytes(range(64))).decode()
        for n, algorithm in enumerate(sorted(ALGORITHMS)):
            # dnspython signs with time.time(): the clock must be now too.
            self.setup(int(time.time()), [User("alice", tsig_secret=secret, tsig_algorithm=algorithm)])
            key = make_key(f"alice.{ZONE}", secret, algorithm)
            request = set_address(f"alice.{ZONE}", "A", f"192.0.2.{n + 1}")
            request.use_tsig(key, fudge=FUDGE)
            wire = request.to_wire()
            self.assertEqual(parse(wire).tsig.mac_size, HASHES[WIRE_ALGORITHMS[algorithm]][1])  # type: ignore[union-attr]
            answer, _ = self.reply(wire)
            self.assertSigned(answer, wire, key, NOERROR)
            response = dns.message.from_wire(answer, keyring=key, request_mac=request.mac)
            self.assertEqual(response.rcode(), NOERROR, algorithm)
            self.assertTrue(response.had_tsig)
            self.assertEqual(self.served(f"alice.{SUFFIX}"), ({f"192.0.2.{n + 1}"}, 60))

    def test_dnspython_client_sees_errors(self):
        """dnspython as a client reads our BADSIG, BADKEY and BADTIME as peer errors."""
        now = int(time.time())
        self.setup(now, [User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256")])
        key = make_key(f"alice.{ZONE}", ALICE_SECRET)
        cases = (
            (make_key(f"alice.{ZONE}", WRONG_SECRET), now, dns.tsig.PeerBadSignature),
            (make_key(f"bob.{ZONE}", ALICE_SECRET), now, dns.tsig.PeerBadKey),
            (key, now - 1000, dns.tsig.PeerBadTime),
        )
        for signer, at, error in cases:
            wire = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.2"), signer, at)
            answer = self.handle(wire)
            self.assertRaises(error, dns.message.from_wire, answer, keyring=signer, request_mac=parse(wire).tsig.mac)  # type: ignore[union-attr]

    def test_unsigned(self):
        """An unsigned update: REFUSED, unsigned, nothing changed."""
        self.setup(T0, [User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256")])
        before = self.snapshot()
        wire = set_address(f"alice.{ZONE}", "A", "192.0.2.2").to_wire()
        answer = self.handle(wire)
        assert answer is not None
        self.assertNoTSIG(answer, wire, REFUSED)
        self.assertEqual(parse(answer).zone, ((ZONE, dns.rdatatype.SOA, dns.rdataclass.IN),))
        self.assertEqual(self.snapshot(), before)


class MalformedTests(UpdateTestsMixin, unittest.TestCase):
    """Broken messages: FORMERR (or nothing) and no change."""

    def setUp(self):
        self.capture = CAPTURES["nsupdate-hmac-sha256-udp"]
        self.setup(self.capture.time_signed, [self.capture.user_record()])
        self.alice = self.capture.key
        self.before = self.snapshot()

    def formerr(self, wire: bytes) -> None:
        answer = self.handle(wire)
        self.assertIsNotNone(answer)
        assert answer is not None
        reply = parse(answer)
        self.assertEqual(reply.id, struct.unpack("!H", wire[:2])[0])
        self.assertTrue(reply.qr)
        self.assertEqual(reply.opcode, dns.opcode.UPDATE)
        self.assertEqual(reply.rcode, FORMERR)
        self.assertIsNone(reply.tsig)
        self.assertEqual(self.snapshot(), self.before)

    def test_truncated(self):
        """The capture cut short anywhere after the header: FORMERR."""
        wire = self.capture.wire
        for length in (12, 20, 40, len(wire) // 2, len(wire) - 20, len(wire) - 1):
            self.formerr(wire[:length] if length > 12 else wire[:12] + b"\x00")

    def test_short_header(self):
        """Fewer than 12 bytes: no answer at all."""
        for length in (0, 2, 11):
            self.assertIsNone(self.handle(self.capture.wire[:length]))

    def test_tsig_not_last(self):
        """A record after the TSIG: FORMERR."""
        wire = self.capture.wire
        extra = (
            dns.name.from_text(f"alice.{ZONE}").to_wire()
            + struct.pack("!HHIH", dns.rdatatype.A, dns.rdataclass.IN, 60, 4)
            + bytes([192, 0, 2, 99])
        )
        arcount = struct.unpack("!H", wire[10:12])[0] + 1
        self.formerr(wire[:10] + struct.pack("!H", arcount) + wire[12:] + extra)

    def test_two_tsigs(self):
        """The TSIG record twice: FORMERR."""
        wire = self.capture.wire
        record = parse(wire).tsig
        assert record is not None
        arcount = struct.unpack("!H", wire[10:12])[0] + 1
        self.formerr(wire[:10] + struct.pack("!H", arcount) + wire[12:] + wire[record.start :])

    def test_garbage(self):
        """An UPDATE header followed by garbage: FORMERR."""
        header = struct.pack("!HHHHHH", 0x4242, 5 << 11, 1, 0, 2, 1)
        for body in (b"\xff" * 40, b"\x3f" + b"a" * 63 + b"\xc0\x0c", bytes(range(256))):
            self.formerr(header + body)

    def signed_with_body(self, body: bytes, upcount: int = 1) -> bytes:
        """A signed message: the zone question, then C{body} as the update section."""
        zone = cast(bytes, dns.name.from_text(ZONE).to_wire()) + struct.pack("!HH", 6, 1)
        header = struct.pack("!HHHHHH", 0x4243, 5 << 11, 1, 0, upcount, 0)
        return sign_at(header + zone + body, self.alice, self.capture.time_signed)

    def test_bad_names(self):
        """
        Owner names that cannot be read, in an otherwise valid signed message:
        a pointer forwards, to itself, into the header; a label type 0x40;
        a name over 255 bytes; a label past the end. FORMERR each, and the
        handler keeps answering valid updates afterwards.
        """
        rr = struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 9])
        bad_names = [
            b"\xc0\x40",  # forwards
            b"\xc0\x21",  # to itself (offset 33 = where this owner starts)
            b"\xc0\x02",  # into the header
            b"\x41" + b"a" * 65 + b"\x00",  # label type 0x40
            (b"\x3f" + b"a" * 63) * 4 + b"\x00",  # 257 bytes
        ]
        for name in bad_names:
            self.formerr(self.signed_with_body(name + rr))
        # a valid pointer to the zone name is fine
        good = b"\x05alice\xc0\x0c" + struct.pack("!HHIH", 255, 255, 0, 0) + b"\x05alice\xc0\x0c" + rr
        answer, _ = self.reply(self.signed_with_body(good, upcount=2))
        self.assertSigned(answer, self.signed_with_body(good, upcount=2), self.alice, NOERROR)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.9"}, 60))

    def test_bad_records(self):
        """A record of 3 bytes, data in a delete-RRset, a TSIG in the update section: FORMERR."""
        owner = dns.name.from_text(f"alice.{ZONE}").to_wire()
        for body in (
            owner + struct.pack("!HHIH", 1, 1, 60, 3) + bytes([192, 0, 2]),
            owner + struct.pack("!HHIH", 28, 1, 60, 4) + bytes([192, 0, 2, 1]),
            owner + struct.pack("!HHIH", 1, 255, 0, 4) + bytes([192, 0, 2, 1]),
            owner + struct.pack("!HHIH", 250, 255, 0, 0),
        ):
            self.formerr(self.signed_with_body(body))

    def test_trailing_bytes(self):
        """Bytes after the TSIG record: FORMERR."""
        self.formerr(self.capture.wire + b"\x00")

    def test_tsig_of_class_in(self):
        """A TSIG record of class IN: FORMERR."""
        wire = self.capture.wire
        record = parse(wire).tsig
        assert record is not None
        owner_end = record.start + len(dns.name.from_text(self.capture.key.name.to_text()).to_wire())
        class_at = owner_end + 2
        self.assertEqual(wire[class_at : class_at + 2], b"\x00\xff")
        self.formerr(wire[:class_at] + b"\x00\x01" + wire[class_at + 2 :])

    def test_mac_too_long(self):
        """A MAC longer than the hash (hmac-sha256: 33 bytes): FORMERR."""
        wire = sign_at(
            set_address(f"alice.{ZONE}", "A", "192.0.2.2"), self.alice, self.capture.time_signed, mac=b"\x01" * 33
        )
        self.formerr(wire)

    def test_mac_too_short(self):
        """A MAC under max(10, half the hash): FORMERR (sha256: 15 bytes, md5: 9)."""
        wire = sign_at(
            set_address(f"alice.{ZONE}", "A", "192.0.2.2"), self.alice, self.capture.time_signed, mac=b"\x01" * 15
        )
        self.formerr(wire)
        self.setup(T0, [User("bob", tsig_secret=BOB_SECRET, tsig_algorithm="hmac-md5")])
        self.before = self.snapshot()
        bob = make_key(f"bob.{ZONE}", BOB_SECRET, "hmac-md5")
        for size in (0, 1, 9):
            wire = sign_at(set_address(f"bob.{ZONE}", "A", "192.0.2.2"), bob, T0, mac=b"\x01" * size)
            self.formerr(wire)

    def test_mac_truncated(self):
        """A truncated MAC the size rules allow (sha256: 16 bytes) that we do not take: BADTRUNC."""
        full = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.2"), self.alice, self.capture.time_signed)
        mac = parse(full).tsig.mac  # type: ignore[union-attr]
        wire = sign_at(
            set_address(f"alice.{ZONE}", "A", "192.0.2.2"), self.alice, self.capture.time_signed, mac=mac[:16]
        )
        answer = self.handle(wire)
        assert answer is not None
        reply = parse(answer)
        self.assertHeader(reply, wire, NOTAUTH)
        assert reply.tsig is not None
        self.assertEqual(reply.tsig.error, BADTRUNC)
        self.assertEqual(self.snapshot(), self.before)


# -- the real server


class ServerTests(UpdateTestsMixin, unittest.TestCase):
    """
    The real server on 127.0.0.1 (UDP and TCP on one port) with an update
    handler on a clock at the nsupdate sha256 captures' time; clients run
    in threads.
    """

    def setUp(self):
        self.captures = [CAPTURES[f"nsupdate-hmac-sha256-{n}"] for n in ("udp", "tcp", "aaaa-udp")]
        self.setup(
            max(c.time_signed for c in self.captures),
            [
                self.captures[0].user_record(),
                User("bob", tsig_secret=BOB_SECRET, tsig_algorithm="hmac-md5"),
            ],
        )
        self.go_online("bob", "198.51.100.7")
        settings = memory_settings(self)
        self.factory = DynDNSServerFactory(
            DynDNSResolver(self.service.registry),
            load_zones(settings),
            update_handler=self.handler,
        )
        self.port = serve_dns(self, self.factory, HOST)

    def udp(self, data: bytes, wait: float = TIMEOUT) -> defer.Deferred[bytes | None]:
        return threads.deferToThread(raw_udp, self.port, data, wait)

    def tcp(self, data: bytes, replies: int = 1) -> defer.Deferred[list[bytes | None]]:
        return threads.deferToThread(raw_tcp, self.port, data, replies)

    @defer.inlineCallbacks
    def query(self, name: str, rdtype: str = "A", tcp: bool = False):
        message = dns.message.make_query(name, rdtype)
        send = dns.query.tcp if tcp else dns.query.udp
        response = yield threads.deferToThread(send, message, HOST, timeout=TIMEOUT, port=self.port)
        return {rd.to_text() for rrset in response.answer for rd in rrset}

    @defer.inlineCallbacks
    def test_udp(self):
        """The nsupdate UDP capture over UDP: signed NOERROR, then queries see it."""
        capture = self.captures[0]
        answer = yield self.udp(capture.wire)
        self.assertSigned(answer, capture.wire, capture.key, NOERROR)
        found = yield self.query(f"alice.{SUFFIX}")
        self.assertEqual(found, {capture.address})

    @defer.inlineCallbacks
    def test_tcp(self):
        """The nsupdate TCP capture over TCP: signed NOERROR, then queries see it."""
        capture = self.captures[1]
        [answer] = yield self.tcp(framed(capture.wire))
        self.assertSigned(answer, capture.wire, capture.key, NOERROR)
        found = yield self.query(f"alice.{SUFFIX}", tcp=True)
        self.assertEqual(found, {capture.address})

    @defer.inlineCallbacks
    def test_tcp_several(self):
        """Three UPDATEs on one TCP connection: three signed answers, all applied."""
        data = b"".join(framed(c.wire) for c in self.captures)
        answers = yield self.tcp(data, replies=3)
        self.assertEqual(len(answers), 3)
        by_id = {parse(a).id: a for a in answers}
        for capture in self.captures:
            self.assertSigned(by_id[capture.request_id], capture.wire, capture.key, NOERROR)
        self.assertEqual((yield self.query(f"alice.{SUFFIX}")), {"192.0.2.7"})
        self.assertEqual((yield self.query(f"alice.{SUFFIX}", "AAAA")), {"2001:db8::7"})

    @defer.inlineCallbacks
    def test_tcp_update_then_query(self):
        """An UPDATE and then a query on the same TCP connection: both answered."""
        capture = self.captures[1]
        query = dns.message.make_query(f"alice.{SUFFIX}", "A")
        answers = yield self.tcp(framed(capture.wire) + framed(query.to_wire()), replies=2)
        self.assertSigned(answers[0], capture.wire, capture.key, NOERROR)
        response = dns.message.from_wire(answers[1])
        self.assertEqual({rd.to_text() for rrset in response.answer for rd in rrset}, {capture.address})

    @defer.inlineCallbacks
    def test_malformed_udp_keeps_serving(self):
        """Broken UPDATEs over UDP get FORMERR (or nothing); queries and updates still work."""
        wire = self.captures[0].wire
        tsig = parse(wire).tsig
        assert tsig is not None
        arcount = struct.pack("!H", struct.unpack("!H", wire[10:12])[0] + 1)
        broken = [
            wire[:40],
            wire[:10] + arcount + wire[12:] + wire[tsig.start :],
            struct.pack("!HHHHHH", 0x4242, 5 << 11, 1, 0, 2, 1) + b"\xff" * 40,
        ]
        for data in broken:
            answer = yield self.udp(data)
            self.assertEqual(parse(answer).rcode, FORMERR)
        self.assertIsNone((yield self.udp(wire[:11], wait=0.5)))
        self.assertEqual((yield self.query(f"bob.{SUFFIX}")), {"198.51.100.7"})
        answer = yield self.udp(wire)
        self.assertSigned(answer, wire, self.captures[0].key, NOERROR)
        self.assertEqual((yield self.query(f"alice.{SUFFIX}")), {"192.0.2.7"})

    @defer.inlineCallbacks
    def test_malformed_tcp_keeps_serving(self):
        """Garbage UPDATEs on a TCP connection: FORMERR, and the connection still serves."""
        capture = self.captures[1]
        garbage = struct.pack("!HHHHHH", 0x4242, 5 << 11, 1, 0, 2, 1) + b"\xff" * 40
        answers = yield self.tcp(framed(garbage) + framed(capture.wire[:50]) + framed(capture.wire), replies=3)
        self.assertEqual([parse(a).rcode for a in answers[:2]], [FORMERR, FORMERR])
        self.assertSigned(answers[2], capture.wire, capture.key, NOERROR)
        self.assertEqual((yield self.query(f"bob.{SUFFIX}", tcp=True)), {"198.51.100.7"})

    @defer.inlineCallbacks
    def test_unsigned_over_udp(self):
        """An unsigned UPDATE over UDP: REFUSED unsigned, bob unchanged."""
        wire = set_address(f"bob.{ZONE}", "A", "192.0.2.66").to_wire()
        answer = yield self.udp(wire)
        self.assertNoTSIG(answer, wire, REFUSED)
        self.assertEqual((yield self.query(f"bob.{SUFFIX}")), {"198.51.100.7"})


class ReplayAcrossRestartTests(unittest.TestCase):
    """The replay record is durable: a restart on the same SQLite store keeps refusing."""

    def start(self, path: str, clock: task.Clock) -> tuple[DynDNSService, UpdateHandler]:
        store = SQLiteUserStore(path, threads_reactor())
        service = DynDNSService(store, SUFFIX, clock=clock, poll_interval=None)
        handler = UpdateHandler(service, (), clock=clock)
        return service, handler

    @defer.inlineCallbacks
    def test_restart(self):
        clock = task.Clock()
        clock.advance(T0)
        path = os.path.join(self.mktemp(), "users.sqlite")
        os.makedirs(os.path.dirname(path))
        key = make_key(f"alice.{ZONE}", ALICE_SECRET)
        service, handler = self.start(path, clock)
        yield defer.ensureDeferred(service.start())
        yield service.add_user(User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256"))
        first = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.1"), key, T0)
        second = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.2"), key, T0)
        for wire in (first, second):
            answer = yield defer.ensureDeferred(handler.handle_update_wire(wire, PEER))
            self.assertEqual(parse(answer).rcode, NOERROR)
        yield service.stopService()

        clock.advance(1)
        service, handler = self.start(path, clock)
        yield defer.ensureDeferred(service.start())
        self.addCleanup(service.stopService)
        for wire in (first, second):
            answer = yield defer.ensureDeferred(handler.handle_update_wire(wire, PEER))
            reply = parse(answer)
            self.assertEqual((reply.rcode, reply.tsig.error), (NOTAUTH, BADTIME))
        self.assertEqual({str(a) for a in service.registry.answer(f"alice.{SUFFIX}").addresses}, {"192.0.2.2"})
        # A fresh message still works after the restart.
        third = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.3"), key, T0 + 1)
        answer = yield defer.ensureDeferred(handler.handle_update_wire(third, PEER))
        self.assertEqual(parse(answer).rcode, NOERROR)


class ReplayAcrossNodesTests(unittest.TestCase):
    """
    Two nodes on one shared store (PostgreSQL in production; the memory
    store marked shared here): an UPDATE captured at one and sent to the
    other, whose memory never saw it, is refused there as a replay.
    """

    @defer.inlineCallbacks
    def test_replayed_at_the_other_node(self):
        clock = task.Clock()
        clock.advance(T0)
        store = MemoryUserStore()
        store.shared = True
        nodes = [DynDNSService(store, SUFFIX, clock=clock, poll_interval=None) for _ in range(2)]
        handlers = [UpdateHandler(service, (), clock=clock) for service in nodes]
        for service in nodes:
            yield defer.ensureDeferred(service.start())
        yield nodes[0].add_user(User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256"))
        yield defer.ensureDeferred(nodes[1].poll())
        key = make_key(f"alice.{ZONE}", ALICE_SECRET)
        wire = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.1"), key, T0)
        answer = yield defer.ensureDeferred(handlers[0].handle_update_wire(wire, PEER))
        self.assertEqual(parse(answer).rcode, NOERROR)
        answer = yield defer.ensureDeferred(handlers[1].handle_update_wire(wire, PEER))
        reply = parse(answer)
        self.assertEqual((reply.rcode, reply.tsig.error), (NOTAUTH, BADTIME))
        fresh = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.2"), key, T0 + 1)
        answer = yield defer.ensureDeferred(handlers[1].handle_update_wire(fresh, PEER))
        self.assertEqual(parse(answer).rcode, NOERROR)


class ClockAndFudgeTests(UpdateTestsMixin, unittest.TestCase):
    def setUp(self):
        self.alice = make_key(f"alice.{ZONE}", ALICE_SECRET)
        self.setup(T0, [User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256")])

    def test_fast_clock_does_not_lock_out_correct_updates(self):
        """One update signed 200 s ahead is accepted; the correctly-timed ones after it too."""
        ahead = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.1"), self.alice, T0 + 200)
        answer, _ = self.reply(ahead)
        self.assertSigned(answer, ahead, self.alice, NOERROR)
        for i, at in enumerate((T0, T0 + 1)):
            self.clock.advance(at - int(self.clock.seconds()))
            wire = sign_at(set_address(f"alice.{ZONE}", "A", f"192.0.2.{i + 2}"), self.alice, at)
            answer, _ = self.reply(wire)
            self.assertSigned(answer, wire, self.alice, NOERROR)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.3"}, 60))
        # The fast message itself stays a replay.
        answer, _ = self.reply(ahead)
        self.assertSigned(answer, ahead, self.alice, NOTAUTH, BADTIME, time_signed=T0 + 200)

    def test_client_fudge_is_bounded_by_ours(self):
        """A fudge of 65535 on a message 3,000 s ahead does not make it valid: BADTIME."""
        before = self.snapshot()
        wire = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.9"), self.alice, T0 + 3000, fudge=65535)
        answer, _ = self.reply(wire)
        self.assertSigned(answer, wire, self.alice, NOTAUTH, BADTIME, time_signed=T0 + 3000)
        self.assertEqual(self.snapshot(), before)
        # 300 s is still inside, whatever the client's fudge.
        wire = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.9"), self.alice, T0 - 300, fudge=65535)
        answer, _ = self.reply(wire)
        self.assertSigned(answer, wire, self.alice, NOERROR)


class LockoutTests(UpdateTestsMixin, unittest.TestCase):
    def setUp(self):
        self.alice = make_key(f"alice.{ZONE}", ALICE_SECRET)
        self.wrong = make_key(f"alice.{ZONE}", BOB_SECRET)
        self.setup(T0, [User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256")])

    def test_wrong_keys_lock_the_source(self):
        """
        Ten bad signatures from one source, then even a correctly signed
        update from it is REFUSED, unsigned; another source still updates.
        """
        for i in range(10):
            wire = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.1"), self.wrong, T0 + i)
            answer, reply = self.reply(wire)
            self.assertEqual(reply.tsig.error, BADSIG)
        good = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.1"), self.alice, T0)
        answer, reply = self.reply(good)
        self.assertHeader(reply, good, REFUSED)
        self.assertIsNone(reply.tsig)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), (set(), 30))
        answer = self.handle(good, "198.51.100.99")
        self.assertSigned(answer, good, self.alice, NOERROR)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.1"}, 60))

    def test_change_limit_refuses(self):
        """Over the per-user change limit: REFUSED (signed), the last good address served."""
        self.service.limiter = Limiter(self.clock, LimitSettings(update_changes=1))
        first = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.1"), self.alice, T0)
        answer, _ = self.reply(first)
        self.assertSigned(answer, first, self.alice, NOERROR)
        second = sign_at(set_address(f"alice.{ZONE}", "A", "192.0.2.2"), self.alice, T0)
        answer, _ = self.reply(second)
        self.assertSigned(answer, second, self.alice, REFUSED)
        self.assertEqual(self.served(f"alice.{SUFFIX}"), ({"192.0.2.1"}, 60))
