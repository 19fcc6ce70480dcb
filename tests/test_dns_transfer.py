"""
Zone transfers (L{dyndns_plugin.replication.transfer}, L{dyndns_plugin.replication.publisher})
on the real server on 127.0.0.1, with dnspython as the client.

The expected zones are built here from the users each test creates (and
from the zone text), never from what the server answers. Transfers are read
by L{transfer}: a TCP or UDP client in a thread that keeps every message's
bytes and feeds dnspython's own L{dns.xfr.Inbound}, which checks the
structure of AXFR and IXFR answers, verifies every message's TSIG
(multi-message rules included) and applies the answer to a
L{dns.zone.Zone}.

The services run on a L{task.Clock} set to the real time (TSIG checks on
both sides use the time): the publisher's batching timer never fires by
itself, so each test publishes with C{publisher.flush()}.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
import struct
import time
from typing import Any, Iterable, Sequence

import attrs
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.serial
import dns.tsig
import dns.xfr
import dns.zone
from twisted.internet import defer, task, threads
from twisted.trial import unittest

from dyndns_plugin.config import settings_from_dict
from dyndns_plugin.dns.resolver import DynDNSResolver
from dyndns_plugin.dns.server import DynDNSServerFactory
from dyndns_plugin.dns.signing import TSIGKey, labels_of
from dyndns_plugin.model import HostState, User
from dyndns_plugin.replication import transfer as transfer_module
from dyndns_plugin.replication.publisher import ZonePublisher
from dyndns_plugin.replication.transfer import TransferHandler
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store import StoreError
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.store.sqlite import SQLiteUserStore
from dyndns_plugin.tap import load_zones
from tests.dns_helpers import serve_dns
from tests.test_dns_server import HOST, TIMEOUT, ZONE_HEAD, framed, raw_tcp, raw_udp
from tests.test_dns_update import parse, tsig_mac
from tests.typing_helpers import TestCaseMixin, threads_reactor

SUFFIX = "dyn.example.com"
DEFAULT_TTL = 30
SOA_TTL = 3600
MINIMUM = 60
#: Close to the end of the serial space: a few publications wrap around.
WRAP_SERIAL = 2**32 - 3

KEY_NAME = "xfr-key.example."
KEY_SECRET = base64.b64encode(b"transfer secret of the secondary").decode()
OTHER_SECRET = base64.b64encode(b"not the transfer secret at all!!").decode()

HOST_ZONE_TEXT = (
    ZONE_HEAD
    + """\
sub     IN NS    ns.sub.example.org.
ns.sub  IN A     192.0.2.77
"""
)
HOST_SERIAL = 2024010101


def dns_key(secret: str = KEY_SECRET, name: str = KEY_NAME) -> dns.tsig.Key:
    return dns.tsig.Key(name, base64.b64decode(secret), dns.tsig.HMAC_SHA256)


def our_key(secret: str = KEY_SECRET, name: str = KEY_NAME) -> TSIGKey:
    return TSIGKey.make(labels_of(name), base64.b64decode(secret), "hmac-sha256")


# -- who the users are, and what the zone must hold for them


@attrs.frozen
class Person:
    """A user, what the test does to it, and so what the zones must hold."""

    id: str
    hostnames: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()  # the last update (none: never updated)
    ttl: int = 60
    offline: bool = False
    offline_ips: tuple[str, ...] = ()
    disabled: bool = False

    def user(self) -> User:
        v4 = [a for a in self.offline_ips if ":" not in a]
        v6 = [a for a in self.offline_ips if ":" in a]
        return User(
            self.id,
            hostnames=self.hostnames,
            offline_ipv4=v4[0] if v4 else None,
            offline_ipv6=v6[0] if v6 else None,
        )

    def served(self) -> tuple[tuple[str, ...], int]:
        """The addresses the names answer and their TTL (the product rules)."""
        if self.disabled:
            return (), 0
        if self.offline:
            return self.offline_ips, DEFAULT_TTL
        return self.addresses, self.ttl

    def names(self) -> list[str]:
        return [f"{self.id}.{SUFFIX}", *self.hostnames]

    def records(self, origin: str) -> set[tuple[str, int, str, str]]:
        """(name, TTL, type, rdata) of this user in the zone C{origin}."""
        addresses, ttl = self.served()
        out = set()
        for name in self.names():
            if name == origin or name.endswith("." + origin):
                for address in addresses:
                    rdtype = "AAAA" if ":" in address else "A"
                    out.add((name + ".", ttl, rdtype, ipaddress.ip_address(address).compressed))
        return out


PEOPLE = [
    Person("alice", (f"*.alice.{SUFFIX}", "gateway.example.info"), ("203.0.113.5", "2001:db8::5"), ttl=120),
    Person("bob", ("home.example.org",), ("198.51.100.7",), ttl=60),
    Person(
        "carol", ("carol.example.org",), ("203.0.113.9",), offline=True, offline_ips=("192.0.2.200", "2001:db8::200")
    ),
    Person("dave", (), ("203.0.113.10",), offline=True),
    Person("eve", (f"*.eve.{SUFFIX}",), ("203.0.113.66",), disabled=True),
    Person("frank", (f"alias.frank.{SUFFIX}",)),
    Person("grace", (f"www.grace.{SUFFIX}",), ("2001:db8::7",), ttl=300),
]


def suffix_static(serial: int) -> set[tuple[str, int, str, str]]:
    """The suffix zone's own records, as the settings in L{TransferTestsMixin} say."""
    return {
        (SUFFIX + ".", SOA_TTL, "SOA", f"ns1.{SUFFIX}. hostmaster.{SUFFIX}. {serial} 3600 600 1209600 {MINIMUM}"),
        (SUFFIX + ".", SOA_TTL, "NS", f"ns1.{SUFFIX}."),
        (SUFFIX + ".", SOA_TTL, "NS", "ns2.example.net."),
        (f"ns1.{SUFFIX}.", SOA_TTL, "A", "192.0.2.53"),
        (f"ns1.{SUFFIX}.", SOA_TTL, "AAAA", "2001:db8::53"),
    }


def expected_zone(origin: str, serial: int, people: Iterable[Person]) -> set[tuple[str, int, str, str]]:
    records = suffix_static(serial) if origin == SUFFIX else set()
    for person in people:
        records |= person.records(origin)
    return records


def host_zone_records(serial: int | None = None, text: str = HOST_ZONE_TEXT) -> set[tuple[str, int, str, str]]:
    """The host zone file's records, read by dnspython (the serial replaced)."""
    zone = dns.zone.from_text(text, origin="example.org.", relativize=False)
    records = zone_records(zone)
    if serial is not None:
        records = {replace_serial(r, serial) for r in records}
    return records


def replace_serial(record: tuple[str, int, str, str], serial: int) -> tuple[str, int, str, str]:
    name, ttl, rdtype, text = record
    if rdtype != "SOA":
        return record
    fields = text.split()
    fields[2] = str(serial)
    return name, ttl, rdtype, " ".join(fields)


def zone_records(zone: dns.zone.Zone) -> set[tuple[str, int, str, str]]:
    return {
        (name.to_text(), rdataset.ttl, dns.rdatatype.to_text(rdataset.rdtype), rdata.to_text())
        for name, node in zone.nodes.items()
        for rdataset in node.rdatasets
        for rdata in rdataset
    }


def rr_tuple(rrset: dns.rrset.RRset) -> tuple[str, int, str, str]:
    [rdata] = list(rrset)
    return rrset.name.to_text(), rrset.ttl, dns.rdatatype.to_text(rrset.rdtype), rdata.to_text()


def soa_serial_of(record: tuple[str, int, str, str]) -> int:
    assert record[2] == "SOA", record
    return int(record[3].split()[2])


# -- the client


@attrs.frozen
class Transfer:
    """A transfer as received: each message's bytes, parsed, and the zone it built."""

    wires: list[bytes]
    messages: list[dns.message.Message]
    zone: dns.zone.Zone

    @property
    def records(self) -> list[tuple[str, int, str, str]]:
        """Every record of every message, in order."""
        return [rr_tuple(rrset) for m in self.messages for rrset in m.answer]


def xfr_query(
    origin: str,
    rdtype: str = "AXFR",
    serial: int | None = None,
    key: dns.tsig.Key | None = None,
) -> dns.message.Message:
    """An AXFR, or an IXFR from C{serial}, as a secondary sends it."""
    q = dns.message.make_query(origin, rdtype)
    if serial is not None:
        rrset = q.find_rrset(q.authority, dns.name.from_text(origin), dns.rdataclass.IN, dns.rdatatype.SOA, create=True)
        rrset.add(dns.rdata.from_text("IN", "SOA", f". . {serial} 0 0 0 0"), 0)
    if key is not None:
        q.use_tsig({key.name: key}, key.name, algorithm=key.algorithm)
    return q


def _read_exactly(s: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = s.recv(count - len(data))
        if not chunk:
            raise EOFError("connection closed during the transfer")
        data += chunk
    return data


def transfer(
    port: int,
    query: dns.message.Message,
    zone: dns.zone.Zone | None = None,
    udp: bool = False,
    expect_end: bool = False,
) -> Transfer:
    """
    Send C{query} and read its transfer with dnspython's L{dns.xfr.Inbound}
    (blocking: call it in a thread). C{zone} holds the version an IXFR
    starts from; it is changed in place. With C{expect_end} over TCP, also
    check that nothing follows the last message.
    """
    question = query.question[0]
    if zone is None:
        zone = dns.zone.Zone(question.name, relativize=False)
    serial = dns.xfr.extract_serial_from_query(query) if question.rdtype == dns.rdatatype.IXFR else None
    wire = query.to_wire()  # signs the query, and sets query.mac
    wires: list[bytes] = []
    messages: list[dns.message.Message] = []
    deadline = time.monotonic() + 30
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(TIMEOUT)
        s.connect((HOST, port))
        s.sendall(wire if udp else framed(wire))
        with dns.xfr.Inbound(zone, question.rdtype, serial, udp) as inbound:
            done = False
            tsig_ctx = None
            while not done:
                assert time.monotonic() < deadline, "transfer took too long"
                if udp:
                    raw = s.recv(65535)
                else:
                    (size,) = struct.unpack("!H", _read_exactly(s, 2))
                    raw = _read_exactly(s, size)
                message = dns.message.from_wire(
                    raw,
                    keyring=query.keyring,
                    request_mac=query.mac,
                    xfr=True,
                    tsig_ctx=tsig_ctx,
                    multi=not udp,
                    one_rr_per_rrset=True,
                )
                if not query.is_response(message):
                    raise AssertionError("not an answer to the query")
                wires.append(raw)
                messages.append(message)
                done = inbound.process_message(message)
                tsig_ctx = message.tsig_ctx
        if expect_end and not udp:
            s.settimeout(0.2)
            try:
                extra = s.recv(1)
            except socket.timeout:
                extra = None
            assert not extra, "data after the last message of the transfer"
    return Transfer(wires, messages, zone)


def ixfr_steps(records: Sequence[tuple[str, int, str, str]]) -> list[tuple[int, set, int, set]]:
    """
    An incremental answer (RFC 1995 section 4) split into its steps:
    (serial from, records deleted, serial to, records added).
    """
    assert records[0][2] == "SOA" and records[-1] == records[0], "must start and end with the new SOA"
    body = list(records[1:-1])
    steps = []
    while body:
        start = body.pop(0)
        assert start[2] == "SOA"
        deleted = set()
        while body[0][2] != "SOA":
            deleted.add(body.pop(0))
        end = body.pop(0)
        added = set()
        while body and body[0][2] != "SOA":
            added.add(body.pop(0))
        steps.append((soa_serial_of(start), deleted, soa_serial_of(end), added))
    return steps


# -- the environment


class TransferTestsMixin(TestCaseMixin):
    """
    A service with a memory store (or the one given), the suffix zone and
    the host zone C{example.org}, a L{ZonePublisher}, a L{TransferHandler}
    allowing 127.0.0.0/8 and the key L{KEY_NAME}, and the server on
    127.0.0.1. L{setup_server} builds it all; tests call it with their
    options.
    """

    def make_settings(self, serial: int = 1000, zone_text: str = HOST_ZONE_TEXT):
        folder = self.mktemp()
        os.makedirs(folder)
        with open(os.path.join(folder, "example.org.zone"), "w") as f:
            f.write(zone_text)
        return settings_from_dict(
            {
                "service": {"suffix": SUFFIX, "default_ttl": DEFAULT_TTL},
                "store": {"backend": "memory"},
                "dns": {
                    "serial": serial,
                    "minimum": MINIMUM,
                    "soa_ttl": SOA_TTL,
                    "nameservers": [f"ns1.{SUFFIX}", "ns2.example.net"],
                    "glue": {f"ns1.{SUFFIX}": ["192.0.2.53", "2001:db8::53"]},
                    "zones": [{"origin": "example.org", "file": "example.org.zone"}],
                },
            },
            os.path.join(folder, "dyndns.toml"),
        )

    @defer.inlineCallbacks
    def setup_server(
        self,
        people: Iterable[Person] = PEOPLE,
        *,
        store: Any = None,
        serial: int = 1000,
        local_zones: bool = False,
        journal_size: int = 1000,
        networks: Sequence[str] = ("127.0.0.0/8",),
        keys: Sequence[TSIGKey] = (),
        zone_text: str = HOST_ZONE_TEXT,
        listen: bool = True,
    ):
        self.settings = self.make_settings(serial, zone_text)
        self.zones = load_zones(self.settings)
        self.clock = task.Clock()
        self.clock.advance(time.time())
        self.store = MemoryUserStore() if store is None else store
        self.service = DynDNSService(
            self.store,
            SUFFIX,
            default_ttl=DEFAULT_TTL,
            clock=self.clock,
            poll_interval=None,
            reserved_names=[f"ns1.{SUFFIX}"],
        )
        self.published: list[tuple[str, int]] = []
        self.publisher = ZonePublisher(
            self.service,
            self.zones,
            local_zones=local_zones,
            journal_size=journal_size,
            on_publish=lambda zone: self.published.append((zone.origin, zone.serial)),
        )
        yield defer.ensureDeferred(self.service.start())
        yield self.publisher.when_ready()  # a large registry's zone is filled after DNS answers
        self.addCleanup(self.service.stopService)
        yield self.add_people(people)
        yield self.publisher.flush()
        self.handler = TransferHandler(
            self.publisher, [ipaddress.ip_network(n) for n in networks], keys, clock=self.clock
        )
        if listen:
            self.factory = DynDNSServerFactory(
                DynDNSResolver(self.service.registry), self.zones, transfer_handler=self.handler
            )
            self.port = serve_dns(self, self.factory, HOST)

    @defer.inlineCallbacks
    def add_people(self, people: Iterable[Person]):
        s = self.service
        for person in people:
            yield s.add_user(person.user())
            if person.addresses:
                result = yield s.update(person.id, [ipaddress.ip_address(a) for a in person.addresses], ttl=person.ttl)
                self.assertTrue(result.ok, result)
            if person.offline:
                result = yield s.set_offline(person.id)
                self.assertTrue(result.ok, result)
            if person.disabled:
                yield s.set_disabled(person.id, True)

    # -- clients

    def xfr(self, query, zone=None, udp=False, expect_end=False) -> defer.Deferred[Transfer]:
        return threads.deferToThread(transfer, self.port, query, zone, udp, expect_end)

    def axfr(self, origin: str = SUFFIX, key=None, expect_end=False) -> defer.Deferred[Transfer]:
        return self.xfr(xfr_query(origin, "AXFR", key=key), expect_end=expect_end)

    def ixfr(self, serial: int, origin: str = SUFFIX, zone=None, udp=False, key=None):
        return self.xfr(xfr_query(origin, "IXFR", serial, key=key), zone, udp)

    def tcp_one(self, message, **kwargs) -> defer.Deferred[dns.message.Message]:
        return threads.deferToThread(dns.query.tcp, message, HOST, timeout=TIMEOUT, port=self.port, **kwargs)

    def udp_one(self, message, **kwargs) -> defer.Deferred[dns.message.Message]:
        return threads.deferToThread(dns.query.udp, message, HOST, timeout=TIMEOUT, port=self.port, **kwargs)

    def raw_udp(self, data: bytes, wait: float = TIMEOUT) -> defer.Deferred[bytes | None]:
        return threads.deferToThread(raw_udp, self.port, data, wait)

    def raw_tcp(self, data: bytes, replies: int = 1) -> defer.Deferred[list[bytes | None]]:
        return threads.deferToThread(raw_tcp, self.port, data, replies)

    @defer.inlineCallbacks
    def served_serial(self, origin: str = SUFFIX):
        """The serial an SOA query gets (what secondaries compare)."""
        r = yield self.udp_one(dns.message.make_query(origin, "SOA"))
        [rrset] = r.answer
        return rrset[0].serial

    # -- assertions

    def assertAXFR(self, result: Transfer, expected: set, serial: int) -> None:
        """A complete AXFR: SOA first and last (and nowhere else), exactly C{expected}."""
        records = result.records
        self.assertEqual(records[0][2], "SOA")
        self.assertEqual(records[-1], records[0])
        self.assertEqual(soa_serial_of(records[0]), serial)
        self.assertEqual([r[2] for r in records].count("SOA"), 2, "SOA only first and last")
        body = records[:-1]
        self.assertEqual(len(body), len(set(body)), "a record sent twice")
        self.assertEqual(set(body), expected)
        self.assertEqual(zone_records(result.zone), expected)
        for message in result.messages:
            self.assertEqual(message.rcode(), dns.rcode.NOERROR)
            self.assertTrue(message.flags & dns.flags.AA)
            self.assertTrue(message.flags & dns.flags.QR)


class AXFRTests(TransferTestsMixin, unittest.TestCase):
    """Full transfers of the suffix zone and the host zone."""

    @defer.inlineCallbacks
    def test_axfr_suffix_zone(self):
        """
        AXFR of the suffix zone: SOA, NS, glue, every active user's A and
        AAAA at its names in the zone with its TTL (wildcard aliases as the
        literal C{*.x} name; offline users their offline addresses at the
        default TTL), SOA first and last; disabled users, users without an
        address and names outside the zone are absent.
        """
        yield self.setup_server()
        serial = yield self.served_serial()
        self.assertEqual(serial, 1001, "the users added after start share one new serial")
        result = yield self.axfr(expect_end=True)
        expected = expected_zone(SUFFIX, serial, PEOPLE)
        self.assertAXFR(result, expected, serial)
        # the expectation really covers the cases the docstring names
        names = {r[0] for r in expected}
        self.assertIn(f"*.alice.{SUFFIX}.", names)
        self.assertIn((f"carol.{SUFFIX}.", DEFAULT_TTL, "AAAA", "2001:db8::200"), expected)
        for absent in ("dave", "eve", "*.eve", "frank", "alias.frank"):
            self.assertNotIn(f"{absent}.{SUFFIX}.", names)
        self.assertFalse(any("example.info" in n for n in names))
        self.assertEqual(len(result.wires), 1)

    @defer.inlineCallbacks
    def test_axfr_with_dnspython_from_xfr(self):
        """dnspython's stock client (C{dns.query.xfr} into C{dns.zone.from_xfr}) reads the same zone."""
        yield self.setup_server()
        serial = yield self.served_serial()
        zone = yield threads.deferToThread(
            lambda: dns.zone.from_xfr(
                dns.query.xfr(HOST, SUFFIX, port=self.port, timeout=TIMEOUT, lifetime=10, relativize=False),
                relativize=False,
            )
        )
        self.assertEqual(zone_records(zone), expected_zone(SUFFIX, serial, PEOPLE))

    @defer.inlineCallbacks
    def test_axfr_host_zone_without_local_zones(self):
        """
        Without C{update_local_zones} the host zone's AXFR is the zone file's
        content with the file's serial, though bob's C{home.example.org} and
        carol's C{carol.example.org} lie inside it; user changes leave it alone.
        """
        yield self.setup_server()
        self.assertEqual((yield self.served_serial("example.org")), HOST_SERIAL)
        result = yield self.axfr("example.org")
        self.assertAXFR(result, host_zone_records(), HOST_SERIAL)
        yield self.service.update("bob", [ipaddress.ip_address("198.51.100.8")])
        yield self.publisher.flush()
        result = yield self.axfr("example.org")
        self.assertAXFR(result, host_zone_records(), HOST_SERIAL)
        self.assertEqual(self.publisher.zone_for("example.org").serial, HOST_SERIAL)

    @defer.inlineCallbacks
    def test_axfr_is_a_snapshot(self):
        """
        An AXFR's messages are produced lazily but from the zone as it was
        when the request came: a change published after the first message
        is not in the rest of the answer, whose SOA keeps the old serial.
        """
        people = [Person(f"user{i}", (), (str(ipaddress.ip_address(0x0A000001 + i)),)) for i in range(1500)]
        store = MemoryUserStore()
        yield store.import_users(
            [p.user() for p in people], [HostState(p.id, ipv4=p.addresses[0], ttl=p.ttl) for p in people]
        )
        yield self.setup_server([], store=store, listen=False)
        serial = self.publisher.zone_for(SUFFIX).serial
        messages = self.handler.answer_transfer(xfr_query(SUFFIX).to_wire(), "127.0.0.1", udp=False)
        first = next(messages)
        yield self.service.update("user1", [ipaddress.ip_address("192.0.2.1")])
        yield self.service.add_user(User("latecomer"))
        yield self.service.update("latecomer", [ipaddress.ip_address("192.0.2.2")])
        yield self.publisher.flush()
        self.assertEqual(self.publisher.zone_for(SUFFIX).serial, serial + 1)
        rest = list(messages)
        self.assertGreater(len(rest), 0, "the zone must take several messages")
        records = [
            rr_tuple(rrset)
            for wire in [first, *rest]
            for rrset in dns.message.from_wire(wire, xfr=True, one_rr_per_rrset=True).answer
        ]
        self.assertEqual(soa_serial_of(records[0]), serial)
        self.assertEqual(records[-1], records[0])
        self.assertEqual(set(records[:-1]), expected_zone(SUFFIX, serial, people))


class IncrementalTests(TransferTestsMixin, unittest.TestCase):
    """Serials after changes, and IXFR from the journal."""

    @defer.inlineCallbacks
    def publish(self, people: dict[str, Person]):
        """Publish, check the new serial's AXFR, and return (serial, records)."""
        yield self.publisher.flush()
        serial = yield self.served_serial()
        expected = expected_zone(SUFFIX, serial, people.values())
        result = yield self.axfr()
        self.assertAXFR(result, expected, serial)
        return serial, expected

    @defer.inlineCallbacks
    def test_updates_and_ixfr(self):
        """
        Three batches of changes (address changes, a user going offline,
        a new user, a TTL change, an offline user back online, a disabled
        user enabled, a user removed) give three new serials by RFC 1982
        arithmetic across the wrap-around (0 skipped). IXFR from each older
        serial answers exactly the differences of each step, and dnspython
        applying it to the old version gets the current zone.
        """
        yield self.setup_server(serial=WRAP_SERIAL)
        people = {p.id: p for p in PEOPLE}
        versions = {}
        serial, versions[serial] = yield self.publish(people)
        self.assertEqual(serial, 2**32 - 2)
        serials = [serial]

        # batch 1: bob moves, alice goes offline (no offline address), henry arrives
        yield self.service.update("bob", [ipaddress.ip_address("198.51.100.8")], ttl=60)
        people["bob"] = attrs.evolve(people["bob"], addresses=("198.51.100.8",))
        yield self.service.set_offline("alice")
        people["alice"] = attrs.evolve(people["alice"], offline=True)
        henry = Person("henry", (f"*.henry.{SUFFIX}", "henry.example.org"), ("192.0.2.77", "2001:db8::77"), ttl=45)
        yield self.add_people([henry])
        people["henry"] = henry
        # batch 2: grace's TTL, carol back online, eve enabled again
        # batch 3: bob removed, henry's IPv6 changes
        batches = [
            None,
            [("update", "grace", ("2001:db8::7",), 600), ("update", "carol", ("203.0.113.19",), 60), ("enable", "eve")],
            [("remove", "bob"), ("update", "henry", ("2001:db8::78",), 45)],
        ]
        for _number, batch in enumerate(batches):
            for change in batch or ():
                if change[0] == "update":
                    _, uid, addrs, ttl = change
                    result = yield self.service.update(uid, [ipaddress.ip_address(a) for a in addrs], ttl=ttl)
                    self.assertTrue(result.ok)
                    old = people[uid]
                    kept = tuple(a for a in old.addresses if (":" in a) != (":" in addrs[0]))
                    people[uid] = attrs.evolve(old, addresses=kept + addrs, ttl=ttl, offline=False)
                elif change[0] == "enable":
                    yield self.service.set_disabled(change[1], False)
                    people[change[1]] = attrs.evolve(people[change[1]], disabled=False)
                else:
                    yield self.service.remove_user(change[1])
                    del people[change[1]]
            serial, versions[serial] = yield self.publish(people)
            serials.append(serial)
            self.assertTrue(dns.serial.Serial(serials[-1]) > dns.serial.Serial(serials[-2]))
        self.assertEqual(serials, [2**32 - 2, 2**32 - 1, 1, 2])
        # the expected versions really differ in what each batch did
        self.assertIn((f"*.alice.{SUFFIX}.", 120, "A", "203.0.113.5"), versions[2**32 - 2])
        self.assertNotIn((f"*.alice.{SUFFIX}.", 120, "A", "203.0.113.5"), versions[2**32 - 1])
        self.assertIn((f"*.eve.{SUFFIX}.", 60, "A", "203.0.113.66"), versions[1])

        def body(records):
            return {r for r in records if r[2] != "SOA"}

        current = versions[serials[-1]]
        for index, old in enumerate(serials[:-1]):
            result = yield self.ixfr(old, zone=zone_from_records(SUFFIX, versions[old]))
            steps = ixfr_steps(result.records)
            self.assertEqual(soa_serial_of(result.records[0]), serials[-1])
            expected_steps = [
                (a, body(versions[a]) - body(versions[b]), b, body(versions[b]) - body(versions[a]))
                for a, b in zip(serials[index:], serials[index + 1 :])
            ]
            self.assertEqual(steps, expected_steps, f"IXFR from {old}")
            self.assertEqual(zone_records(result.zone), current, f"IXFR from {old} applied")
        # the deltas are not trivially empty
        result = yield self.ixfr(serials[0], zone=zone_from_records(SUFFIX, versions[serials[0]]))
        self.assertTrue(all(d and a for _, d, _, a in ixfr_steps(result.records)))

    @defer.inlineCallbacks
    def test_ixfr_with_dnspython_inbound_xfr(self):
        """C{dns.query.inbound_xfr} with an IXFR query brings an old copy up to date."""
        yield self.setup_server()
        people = {p.id: p for p in PEOPLE}
        old_serial = yield self.served_serial()
        old = zone_from_records(SUFFIX, expected_zone(SUFFIX, old_serial, people.values()))
        yield self.service.update("grace", [ipaddress.ip_address("2001:db8::8")], ttl=300)
        people["grace"] = attrs.evolve(people["grace"], addresses=("2001:db8::8",))
        new_serial, expected = yield self.publish(people)
        query, serial = dns.xfr.make_query(old)
        self.assertEqual(serial, old_serial)
        yield threads.deferToThread(
            dns.query.inbound_xfr, HOST, old, query, port=self.port, timeout=TIMEOUT, lifetime=10
        )
        self.assertEqual(zone_records(old), expected)

    @defer.inlineCallbacks
    def test_ixfr_current_serial(self):
        """IXFR from the current serial: one message with the current SOA alone."""
        yield self.setup_server()
        serial = yield self.served_serial()
        for udp in (False, True):
            result = yield self.ixfr(serial, udp=udp)
            self.assertEqual(len(result.wires), 1)
            [record] = result.records
            self.assertEqual(soa_serial_of(record), serial)

    @defer.inlineCallbacks
    def test_ixfr_unknown_serial(self):
        """IXFR from a serial the journal never had: the whole zone, AXFR-style."""
        yield self.setup_server()
        serial = yield self.served_serial()
        for unknown in (999, 4000000000):
            result = yield self.ixfr(unknown)
            self.assertNotEqual(result.records[1][2], "SOA", "not an incremental answer")
            self.assertAXFR(result, expected_zone(SUFFIX, serial, PEOPLE), serial)

    @defer.inlineCallbacks
    def test_ixfr_newer_serial(self):
        """
        IXFR from a serial newer than ours (RFC 1982): the current SOA alone
        (RFC 1995 section 2), not the whole zone, over TCP and UDP.
        """
        yield self.setup_server()
        serial = yield self.served_serial()
        for newer in (serial + 1, serial + 2**31 - 1):
            for udp in (False, True):
                query = xfr_query(SUFFIX, "IXFR", newer)
                if udp:
                    wires = [(yield self.raw_udp(query.to_wire()))]
                else:
                    wires = yield self.raw_tcp(framed(query.to_wire()), replies=1)
                answer = dns.message.from_wire(wires[0], xfr=True, one_rr_per_rrset=True)
                self.assertTrue(query.is_response(answer))
                self.assertEqual(answer.rcode(), dns.rcode.NOERROR)
                self.assertEqual(
                    [soa_serial_of(rr_tuple(r)) for r in answer.answer], [serial], f"IXFR from {newer}, udp={udp}"
                )

    @defer.inlineCallbacks
    def test_journal_size(self):
        """
        With a journal of 3 steps, IXFR from the serials of the last three
        steps is incremental, from anything older the whole zone.
        """
        yield self.setup_server(journal_size=3)
        people = {p.id: p for p in PEOPLE}
        first = yield self.served_serial()
        self.assertEqual(first, 1001)
        versions = {1000: expected_zone(SUFFIX, 1000, ()), 1001: expected_zone(SUFFIX, 1001, PEOPLE)}
        for i in range(5):
            yield self.service.update("bob", [ipaddress.ip_address(f"198.51.100.{20 + i}")], ttl=60)
            people["bob"] = attrs.evolve(people["bob"], addresses=(f"198.51.100.{20 + i}",))
            serial, versions[serial] = yield self.publish(people)
        self.assertEqual(sorted(versions), list(range(1000, 1007)))
        expected = versions[1006]
        for old in range(1000, 1006):
            result = yield self.ixfr(old, zone=zone_from_records(SUFFIX, versions[old]))
            if old >= 1003:
                steps = ixfr_steps(result.records)
                self.assertEqual([(s[0], s[2]) for s in steps], [(n, n + 1) for n in range(old, 1006)])
            else:
                self.assertNotEqual(result.records[1][2], "SOA", f"IXFR from {old} must be AXFR-style")
                self.assertAXFR(result, expected, 1006)
            self.assertEqual(zone_records(result.zone), expected)

    @defer.inlineCallbacks
    def test_ixfr_over_udp_fits(self):
        """
        A small IXFR over UDP: the deltas in one datagram of at most 512
        bytes. Signed, the answer stays within 512 bytes with its TSIG
        (verified by dnspython): the deltas if they fit, else the SOA alone.
        """
        yield self.setup_server(keys=[our_key()])
        old = yield self.served_serial()
        old_records = expected_zone(SUFFIX, old, PEOPLE)
        yield self.service.update("bob", [ipaddress.ip_address("198.51.100.99")], ttl=60)
        people = {p.id: p for p in PEOPLE}
        people["bob"] = attrs.evolve(people["bob"], addresses=("198.51.100.99",))
        new, expected = yield self.publish(people)
        delta = [
            (old, {(f"bob.{SUFFIX}.", 60, "A", "198.51.100.7")}, new, {(f"bob.{SUFFIX}.", 60, "A", "198.51.100.99")}),
        ]
        result = yield self.ixfr(old, zone=zone_from_records(SUFFIX, old_records), udp=True)
        self.assertEqual(len(result.wires), 1)
        self.assertLessEqual(len(result.wires[0]), 512)
        self.assertFalse(result.messages[0].had_tsig)
        self.assertEqual(ixfr_steps(result.records), delta)
        self.assertEqual(zone_records(result.zone), expected)

        query = xfr_query(SUFFIX, "IXFR", old, key=dns_key())
        wire = yield self.raw_udp(query.to_wire())
        self.assertLessEqual(len(wire), 512)
        answer = dns.message.from_wire(
            wire, keyring=query.keyring, request_mac=query.mac, xfr=True, one_rr_per_rrset=True
        )
        self.assertTrue(answer.had_tsig)
        records = [rr_tuple(r) for r in answer.answer]
        if len(records) > 1:
            self.assertEqual(ixfr_steps(records), delta)
        else:
            self.assertEqual(soa_serial_of(records[0]), new)

    @defer.inlineCallbacks
    def test_ixfr_over_udp_too_big(self):
        """
        An IXFR over UDP whose deltas do not fit in 512 bytes, or from an
        unknown serial: the current SOA alone (the client asks over TCP,
        which then gets the deltas).
        """
        people = [Person(f"user{i}", (), (f"192.0.2.{i + 1}",)) for i in range(40)]
        yield self.setup_server(people)
        old = yield self.served_serial()
        for i, person in enumerate(people):
            yield self.service.update(person.id, [ipaddress.ip_address(f"198.51.100.{i + 1}")], ttl=60)
        yield self.publisher.flush()
        new = yield self.served_serial()
        self.assertEqual(new, old + 1)
        for serial in (old, 7):
            query = xfr_query(SUFFIX, "IXFR", serial)
            wire = yield self.raw_udp(query.to_wire())
            answer = dns.message.from_wire(wire, xfr=True, one_rr_per_rrset=True)
            self.assertTrue(query.is_response(answer))
            self.assertEqual(answer.rcode(), dns.rcode.NOERROR)
            self.assertTrue(answer.flags & dns.flags.AA)
            [record] = [rr_tuple(r) for r in answer.answer]
            self.assertEqual(soa_serial_of(record), new)
        before = {(f"user{i}.{SUFFIX}.", 60, "A", f"192.0.2.{i + 1}") for i in range(40)}
        after = {(f"user{i}.{SUFFIX}.", 60, "A", f"198.51.100.{i + 1}") for i in range(40)}
        result = yield self.ixfr(old, zone=zone_from_records(SUFFIX, suffix_static(old) | before))
        self.assertEqual(ixfr_steps(result.records), [(old, before, new, after)])

    @defer.inlineCallbacks
    def test_store_failure_publishes_nothing(self):
        """
        When the store cannot take the new serial, nothing is published:
        the served serial, AXFR and IXFR stay as they were, nobody is
        notified; once the store works again the change is published by
        the retry, with its journal step.
        """
        yield self.setup_server()
        people = {p.id: p for p in PEOPLE}
        old = yield self.served_serial()
        old_records = expected_zone(SUFFIX, old, people.values())
        notified = len(self.published)
        published = self.publisher.published
        yield self.service.update("bob", [ipaddress.ip_address("198.51.100.55")], ttl=60)
        people["bob"] = attrs.evolve(people["bob"], addresses=("198.51.100.55",))
        self.store.fail_writes = StoreError("disk gone")
        yield self.publisher.flush()
        self.assertEqual((yield self.served_serial()), old)
        self.assertAXFR((yield self.axfr()), old_records, old)
        self.assertEqual(len((yield self.ixfr(old)).records), 1)
        self.assertEqual((len(self.published), self.publisher.published), (notified, published))
        history = yield self.store.load_zone_history()
        self.assertEqual(history[SUFFIX].serial, old)
        # the retry while the store still fails changes nothing either
        self.clock.advance(1.0)
        self.assertEqual((yield self.served_serial()), old)
        self.store.fail_writes = None
        self.clock.advance(1.0)
        new = yield self.served_serial()
        self.assertEqual(new, old + 1)
        self.assertEqual(self.published[notified:], [(SUFFIX, new)])
        expected = expected_zone(SUFFIX, new, people.values())
        self.assertAXFR((yield self.axfr()), expected, new)
        result = yield self.ixfr(old, zone=zone_from_records(SUFFIX, old_records))
        self.assertEqual(
            ixfr_steps(result.records),
            [
                (
                    old,
                    {(f"bob.{SUFFIX}.", 60, "A", "198.51.100.7")},
                    new,
                    {(f"bob.{SUFFIX}.", 60, "A", "198.51.100.55")},
                ),
            ],
        )
        history = yield self.store.load_zone_history()
        self.assertEqual([(s.serial_from, s.serial_to) for s in history[SUFFIX].steps], [(old - 1, old), (old, new)])


def zone_from_records(origin: str, records: Iterable[tuple[str, int, str, str]]) -> dns.zone.Zone:
    """A dnspython zone holding exactly C{records}."""
    text = "".join(f"{name} {ttl} IN {rdtype} {rdata}\n" for name, ttl, rdtype, rdata in records)
    zone = dns.zone.from_text(text, origin=origin + ".", relativize=False)
    assert zone_records(zone) == set(records)
    return zone


def read_records(wire: bytes) -> tuple[int, int, list[tuple[str, int, int, bytes]]]:
    """
    (ID, flags, answer records as (name, type, TTL, rdata)) of a message
    read with struct (dnspython takes seconds for 100,000 records).
    """
    ident, flags, qdcount, ancount, nscount, arcount = struct.unpack_from("!HHHHHH", wire)
    assert qdcount == 1

    def name_at(i: int) -> tuple[str, int]:
        labels: list[str] = []
        end = None
        for _ in range(128):
            length = wire[i]
            if length >= 0xC0:
                end = i + 2 if end is None else end
                i = ((length & 0x3F) << 8) | wire[i + 1]
            elif length == 0:
                return ".".join(labels), (i + 1 if end is None else end)
            else:
                labels.append(wire[i + 1 : i + 1 + length].decode("ascii").lower())
                i += 1 + length
        raise AssertionError("compression loop")

    _, i = name_at(12)
    i += 4
    records = []
    for _ in range(ancount):
        name, i = name_at(i)
        rdtype, rdclass, ttl, size = struct.unpack_from("!HHIH", wire, i)
        assert rdclass == 1
        i += 10
        records.append((name, rdtype, ttl, wire[i : i + size]))
        i += size
    return ident, flags, records


def axfr_messages(port: int, query: bytes) -> list[bytes]:
    """The raw messages of an AXFR over TCP, up to the second SOA."""
    wires = []
    soas = 0
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
        s.sendall(framed(query))
        deadline = time.monotonic() + 30
        while soas < 2:
            assert time.monotonic() < deadline, "transfer took too long"
            (size,) = struct.unpack("!H", _read_exactly(s, 2))
            wires.append(_read_exactly(s, size))
            soas += sum(1 for r in read_records(wires[-1])[2] if r[1] == 6)
    return wires


class BatchingTests(TransferTestsMixin, unittest.TestCase):
    """When the publisher publishes: at once after a quiet time, one serial per window in a burst."""

    @defer.inlineCallbacks
    def test_first_change_at_once_then_one_serial_per_window(self):
        yield self.setup_server([Person("bob", (), ("198.51.100.7",))], listen=False)
        self.clock.advance(10)  # quiet for a while
        zone = self.publisher.zone_for(SUFFIX)
        serial = zone.serial
        yield self.service.update("bob", [ipaddress.ip_address("198.51.100.8")])
        self.clock.advance(0)
        self.assertEqual(zone.serial, serial + 1, "published without waiting")
        # a burst inside the window: both changes wait for it, then share a serial
        yield self.service.update("bob", [ipaddress.ip_address("198.51.100.9")])
        self.clock.advance(self.publisher.delay / 3)
        yield self.service.add_user(User("carl"))
        yield self.service.update("carl", [ipaddress.ip_address("198.51.100.10")])
        self.assertEqual(zone.serial, serial + 1)
        self.clock.advance(self.publisher.delay)
        self.assertEqual(zone.serial, serial + 2)
        step = zone.steps[-1]
        self.assertEqual(
            {(rr[0], rr[3]) for rr in step.added},
            {(f"bob.{SUFFIX}", bytes([198, 51, 100, 9])), (f"carl.{SUFFIX}", bytes([198, 51, 100, 10]))},
        )


class LargeZoneTests(TransferTestsMixin, unittest.TestCase):
    """A zone of 100,000 users."""

    @defer.inlineCallbacks
    def test_100k_users(self):
        """
        100,000 users transfer completely by AXFR over many messages of at
        most 16 KiB, every name with its own address, SOA first and last.
        """
        count = 100_000
        store = MemoryUserStore()
        addresses = [ipaddress.IPv4Address(0x0A000000 + i + 1) for i in range(count)]
        yield store.import_users(
            [User(f"u{i}") for i in range(count)],
            [HostState(f"u{i}", ipv4=addresses[i], ttl=60) for i in range(count)],
        )
        yield self.setup_server([], store=store)
        query = xfr_query(SUFFIX).to_wire()
        wires = yield threads.deferToThread(axfr_messages, self.port, query)
        self.assertGreater(len(wires), 100)
        self.assertLessEqual(max(len(w) for w in wires), transfer_module.MESSAGE_SIZE)
        records = []
        for wire in wires:
            ident, flags, found = read_records(wire)
            self.assertEqual(ident, struct.unpack("!H", query[:2])[0])
            self.assertEqual(flags & 0x840F, 0x8400, "QR, AA, NOERROR")
            records.extend(found)
        self.assertEqual((records[0][1], records[-1]), (6, records[0]))
        users = {
            (name, rdtype, ttl, rdata)
            for name, rdtype, ttl, rdata in records
            if name != SUFFIX and not name.startswith("ns1.")
        }
        self.assertEqual(len(records), count + 6)
        self.assertEqual(users, {(f"u{i}.{SUFFIX}", 1, 60, addresses[i].packed) for i in range(count)})


def signed(query: dns.message.Message) -> tuple[bytes, bytes]:
    """The query's wire form, signed now, and its MAC."""
    wire = query.to_wire()
    assert query.mac is not None, "a query with a key has a MAC once written"
    return wire, query.mac


class AccessTests(TransferTestsMixin, unittest.TestCase):
    """Who may transfer: UDP, networks, TSIG keys, our zones only."""

    def assertError(self, wire: bytes, request: bytes, rcode: int) -> Any:
        """An answer with C{rcode}, the request's ID and question, no records."""
        reply = parse(wire)
        self.assertEqual(reply.id, parse(request).id)
        self.assertTrue(reply.qr)
        self.assertEqual(reply.opcode, 0)
        self.assertEqual(reply.rcode, rcode)
        self.assertEqual(reply.zone, parse(request).zone)
        self.assertEqual(reply.counts[1:3], (0, 0))
        return reply

    @defer.inlineCallbacks
    def test_axfr_over_udp_refused(self):
        """AXFR over UDP: REFUSED (AXFR is TCP only); unsigned and signed (the answer signed)."""
        yield self.setup_server(keys=[our_key()])
        request = xfr_query(SUFFIX).to_wire()
        self.assertError((yield self.raw_udp(request)), request, dns.rcode.REFUSED)
        query = xfr_query(SUFFIX, key=dns_key())
        answer = yield self.udp_one(query)
        self.assertEqual(answer.rcode(), dns.rcode.REFUSED)
        self.assertTrue(answer.had_tsig, "an error to a signed request is signed")

    @defer.inlineCallbacks
    def test_address_not_allowed(self):
        """
        From an address outside the allowed networks, unsigned AXFR and
        IXFR get REFUSED; ordinary queries are still answered.
        """
        yield self.setup_server(networks=["192.0.2.0/24", "::1/128"])
        for request in (
            xfr_query(SUFFIX).to_wire(),
            xfr_query(SUFFIX, "IXFR", 1000).to_wire(),
            xfr_query("example.org").to_wire(),
        ):
            [answer] = yield self.raw_tcp(framed(request))
            self.assertError(answer, request, dns.rcode.REFUSED)
        request = xfr_query(SUFFIX, "IXFR", 1000).to_wire()
        self.assertError((yield self.raw_udp(request)), request, dns.rcode.REFUSED)
        self.assertEqual((yield self.served_serial()), 1001)
        self.assertEqual(self.handler.transfers, 0)

    @defer.inlineCallbacks
    def test_zone_not_ours(self):
        """AXFR/IXFR of a zone we do not serve (or of a name inside ours): NOTAUTH."""
        yield self.setup_server(keys=[our_key()])
        for origin in ("example.net", f"alice.{SUFFIX}", "com"):
            for rdtype, serial in (("AXFR", None), ("IXFR", 5)):
                request = xfr_query(origin, rdtype, serial).to_wire()
                [answer] = yield self.raw_tcp(framed(request))
                self.assertError(answer, request, dns.rcode.NOTAUTH)
        # signed: the error is signed (dnspython checks the MAC)
        answer = yield self.tcp_one(xfr_query("example.net", key=dns_key()))
        self.assertEqual(answer.rcode(), dns.rcode.NOTAUTH)
        self.assertTrue(answer.had_tsig)

    @defer.inlineCallbacks
    def test_signed_soa_query(self):
        """
        A secondary's refresh check signed with its transfer key (BIND signs
        its SOA queries with the key of its primaries clause) gets the
        current SOA signed with that key, over UDP and TCP, from any
        address; an unsigned SOA query is answered as before, unsigned; one
        signed with a wrong secret gets BADSIG.
        """
        yield self.setup_server(networks=["192.0.2.0/24"], keys=[our_key()])
        serial = yield self.served_serial()
        for send in (self.udp_one, self.tcp_one):
            query = dns.message.make_query(SUFFIX, "SOA")
            query.use_tsig(dns_key())
            answer = yield send(query)
            self.assertTrue(answer.had_tsig)
            self.assertEqual(answer.rcode(), dns.rcode.NOERROR)
            self.assertTrue(answer.flags & dns.flags.AA)
            [rrset] = answer.answer
            self.assertEqual(rrset[0].serial, serial)
        plain = yield self.udp_one(dns.message.make_query(SUFFIX, "SOA"))
        self.assertFalse(plain.had_tsig)
        self.assertEqual(plain.answer[0][0].serial, serial)
        query = dns.message.make_query(SUFFIX, "SOA")
        query.use_tsig(dns_key(OTHER_SECRET))
        wire = query.to_wire()
        reply = parse((yield self.raw_udp(wire)))
        self.assertEqual(reply.rcode, dns.rcode.NOTAUTH)
        self.assertEqual(reply.tsig.error, 16)  # BADSIG
        self.assertEqual(self.handler.transfers, 0)

    @defer.inlineCallbacks
    def test_signed_transfer_from_any_address(self):
        """
        With the transfer key, AXFR and IXFR work from an address that is
        not allowed; every message of the multi-message answer is signed
        and verifies (dnspython, RFC 8945 section 5.3.1).
        """
        people = [
            Person(
                f"user{i}",
                (),
                (str(ipaddress.ip_address(0x0A000001 + i)), str(ipaddress.ip_address(0x20010DB8 << 96 | i + 1))),
            )
            for i in range(1000)
        ]
        store = MemoryUserStore()
        yield store.import_users(
            [p.user() for p in people],
            [HostState(p.id, ipv4=p.addresses[0], ipv6=p.addresses[1], ttl=p.ttl) for p in people],
        )
        yield self.setup_server([], store=store, networks=["192.0.2.0/24"], keys=[our_key()])
        serial = yield self.served_serial()
        expected = expected_zone(SUFFIX, serial, people)
        result = yield self.xfr(xfr_query(SUFFIX, key=dns_key()))
        self.assertGreater(len(result.messages), 2)
        self.assertTrue(all(m.had_tsig for m in result.messages), "every message signed")
        for wire in result.wires:
            tsig = parse(wire).tsig
            self.assertLessEqual(tsig.start, transfer_module.MESSAGE_SIZE)
        self.assertAXFR(result, expected, serial)
        # the same with dnspython's stock client
        zone = yield threads.deferToThread(
            lambda: dns.zone.from_xfr(
                dns.query.xfr(
                    HOST,
                    SUFFIX,
                    port=self.port,
                    timeout=TIMEOUT,
                    lifetime=10,
                    keyring={dns_key().name: dns_key()},
                    keyname=KEY_NAME,
                    keyalgorithm=dns.tsig.HMAC_SHA256,
                    relativize=False,
                ),
                relativize=False,
            )
        )
        self.assertEqual(zone_records(zone), expected)
        # an IXFR from the current serial is signed too; unsigned is refused
        result = yield self.ixfr(serial, key=dns_key())
        self.assertTrue(result.messages[0].had_tsig)
        request = xfr_query(SUFFIX).to_wire()
        [answer] = yield self.raw_tcp(framed(request))
        self.assertError(answer, request, dns.rcode.REFUSED)

    @defer.inlineCallbacks
    def assertTSIGError(self, query: dns.message.Message, error: int, udp: bool = False):
        """NOTAUTH with TSIG error C{error}, the request's TSIG fields, no MAC."""
        request, _ = signed(query)
        if udp:
            answer = yield self.raw_udp(request)
        else:
            [answer] = yield self.raw_tcp(framed(request))
        reply = self.assertError(answer, request, dns.rcode.NOTAUTH)
        self.assertEqual(reply.counts[3], 1)
        tsig, asked = reply.tsig, parse(request).tsig
        assert asked is not None, "the request is signed"
        self.assertEqual(tsig.error, error)
        self.assertEqual((tsig.mac_size, tsig.mac), (0, b""))
        self.assertEqual(
            (tsig.owner, tsig.algorithm, tsig.time_signed, tsig.original_id),
            (asked.owner, asked.algorithm, asked.time_signed, asked.original_id),
        )
        return reply

    @defer.inlineCallbacks
    def test_wrong_secret_badsig(self):
        """A request signed with the right key name but another secret: BADSIG, unsigned."""
        yield self.setup_server(networks=[], keys=[our_key()])
        for udp in (False, True):
            yield self.assertTSIGError(
                xfr_query(SUFFIX, "IXFR", 1000, key=dns_key(OTHER_SECRET)), dns.rcode.BADSIG, udp
            )
        self.assertEqual(self.handler.transfers, 0)

    @defer.inlineCallbacks
    def test_query_key_signs_soa_queries_only(self):
        """
        A key of L{TransferHandler.query_keys} (a user's, as certbot's
        rfc2136 plugin signs its zone lookups): a signed SOA answer at the
        apex, a signed NODATA below it (the zone's SOA as authority), and a
        transfer with it REFUSED (signed), from an address not allowed.
        """
        yield self.setup_server(networks=["192.0.2.0/24"], keys=[our_key()])
        user_key = dns.tsig.Key(f"alice.{SUFFIX}.", base64.b64decode(OTHER_SECRET), dns.tsig.HMAC_SHA256)
        ours = TSIGKey.make(labels_of(f"alice.{SUFFIX}"), base64.b64decode(OTHER_SECRET), "hmac-sha256")
        self.handler.query_keys = lambda labels: ours if labels == ours.name else None
        serial = yield self.served_serial()
        query = dns.message.make_query(SUFFIX, "SOA")
        query.use_tsig(user_key)
        answer = yield self.tcp_one(query)
        self.assertTrue(answer.had_tsig)
        self.assertEqual((answer.rcode(), answer.answer[0][0].serial), (dns.rcode.NOERROR, serial))
        self.assertTrue(answer.flags & dns.flags.AA)
        for name in (f"_acme-challenge.alice.{SUFFIX}", "www.example.org"):
            query = dns.message.make_query(name, "SOA")
            query.use_tsig(user_key)
            answer = yield self.udp_one(query)
            self.assertTrue(answer.had_tsig)
            self.assertEqual((answer.rcode(), answer.answer), (dns.rcode.NOERROR, []))
            self.assertTrue(answer.flags & dns.flags.AA)
            [soa] = answer.authority
            self.assertEqual(
                (soa.rdtype, soa[0].serial),
                (dns.rdatatype.SOA, (yield self.served_serial(soa.name.to_text(omit_final_dot=True)))),
            )
        answer = yield self.tcp_one(xfr_query(SUFFIX, key=user_key))
        self.assertTrue(answer.had_tsig)
        self.assertEqual(answer.rcode(), dns.rcode.REFUSED)
        self.assertEqual(self.handler.transfers, 0)

    @defer.inlineCallbacks
    def test_unknown_key_badkey(self):
        """A key we do not know, or our key's name with another algorithm: BADKEY, unsigned."""
        yield self.setup_server(networks=["127.0.0.0/8"], keys=[our_key()])
        other = dns.tsig.Key("someone-else.example.", base64.b64decode(KEY_SECRET), dns.tsig.HMAC_SHA256)
        yield self.assertTSIGError(xfr_query(SUFFIX, key=other), dns.rcode.BADKEY)
        sha512 = dns.tsig.Key(KEY_NAME, base64.b64decode(KEY_SECRET), dns.tsig.HMAC_SHA512)
        yield self.assertTSIGError(xfr_query(SUFFIX, key=sha512), dns.rcode.BADKEY)
        self.assertEqual(self.handler.transfers, 0)

    @defer.inlineCallbacks
    def test_time_outside_fudge_badtime(self):
        """
        A request signed at a time outside the fudge of the handler's clock:
        NOTAUTH, TSIG error BADTIME, signed with the request's time and our
        time in Other Data (the MAC checked here from RFC 8945).
        """
        yield self.setup_server(keys=[our_key()])
        far = task.Clock()
        far.advance(time.time() + 3600)
        self.factory.transfer_handler = TransferHandler(self.publisher, [], [our_key()], clock=far)
        query = xfr_query(SUFFIX, key=dns_key())
        request, mac = signed(query)
        [answer] = yield self.raw_tcp(framed(request))
        reply = self.assertError(answer, request, dns.rcode.NOTAUTH)
        tsig, asked = reply.tsig, parse(request).tsig
        self.assertEqual(tsig.error, dns.rcode.BADTIME)
        self.assertEqual(tsig.time_signed, asked.time_signed)
        self.assertEqual(tsig.other, struct.pack("!Q", int(far.seconds()))[2:])
        self.assertEqual(tsig.mac, tsig_mac(answer, base64.b64decode(KEY_SECRET), mac))

    @defer.inlineCallbacks
    def test_malformed_keeps_serving(self):
        """
        Malformed transfer queries get FORMERR with their ID, over TCP (the
        connection goes on serving) and UDP; a transfer query that is a
        response gets nothing.
        """
        yield self.setup_server()
        good = xfr_query(SUFFIX).to_wire()
        ixfr = xfr_query(SUFFIX, "IXFR", 1000).to_wire()
        qname = dns.name.from_text(SUFFIX).to_wire()
        question_axfr = qname + struct.pack("!HH", 252, 1)
        question_ixfr = qname + struct.pack("!HH", 251, 1)
        soa_rdata = b"\x00\x00" + struct.pack("!IIIII", 1000, 0, 0, 0, 0)

        def message(ident, counts, body):
            return struct.pack("!HHHHHH", ident, 0, *counts) + body

        tsig_rdata = (
            dns.name.from_text("hmac-sha256").to_wire()
            + struct.pack("!HIHH", 0, 0, 300, 0)
            + struct.pack("!HHH", 1, 0, 0)
        )
        broken = {
            "IXFR without SOA": xfr_query(SUFFIX, "IXFR").to_wire(),
            "SOA of another name": message(
                0x101,
                (1, 0, 1, 0),
                question_ixfr + b"\x03foo\x00" + struct.pack("!HHIH", 6, 1, 0, len(soa_rdata)) + soa_rdata,
            ),
            "short SOA": message(
                0x102, (1, 0, 1, 0), question_ixfr + b"\xc0\x0c" + struct.pack("!HHIH", 6, 1, 0, 6) + soa_rdata[:6]
            ),
            "trailing bytes": good + b"\x00\x00",
            "record past the end": ixfr[:-5],
            "two questions": message(0x103, (2, 0, 0, 0), question_axfr + question_axfr),
            "forward pointer": message(
                0x104,
                (1, 0, 1, 0),
                question_ixfr + b"\xc0\x40" + struct.pack("!HHIH", 6, 1, 0, len(soa_rdata)) + soa_rdata,
            ),
            "TSIG in authority": message(
                0x105,
                (1, 0, 1, 0),
                question_axfr + b"\x01k\x00" + struct.pack("!HHIH", 250, 255, 0, len(tsig_rdata)) + tsig_rdata,
            ),
            "TSIG of class IN": message(
                0x106,
                (1, 0, 0, 1),
                question_axfr + b"\x01k\x00" + struct.pack("!HHIH", 250, 1, 0, len(tsig_rdata)) + tsig_rdata,
            ),
            "TSIG not last": message(
                0x107,
                (1, 0, 0, 2),
                question_axfr
                + b"\x01k\x00"
                + struct.pack("!HHIH", 250, 255, 0, len(tsig_rdata))
                + tsig_rdata
                + b"\x00"
                + struct.pack("!HHIH", 1, 1, 0, 4)
                + b"\x01\x02\x03\x04",
            ),
        }
        for label, wire in broken.items():
            answer = yield self.raw_udp(wire)
            self.assertIsNotNone(answer, label)
            reply = parse(answer)
            self.assertEqual((reply.id, reply.qr, reply.rcode), (parse_id(wire), True, dns.rcode.FORMERR), label)
        answers = yield self.raw_tcp(
            b"".join(framed(w) for w in broken.values()) + framed(good), replies=len(broken) + 1
        )
        self.assertEqual([parse(a).rcode for a in answers[:-1]], [dns.rcode.FORMERR] * len(broken))
        serial = yield self.served_serial()
        records = [rr_tuple(r) for r in dns.message.from_wire(answers[-1], xfr=True, one_rr_per_rrset=True).answer]
        self.assertEqual(set(records[:-1]), expected_zone(SUFFIX, serial, PEOPLE))
        # a response is never answered
        response = bytearray(good)
        response[2] |= 0x80
        self.assertIsNone((yield self.raw_udp(bytes(response), wait=0.3)))
        self.assertAXFR((yield self.axfr()), expected_zone(SUFFIX, serial, PEOPLE), serial)


def parse_id(wire: bytes) -> int:
    return struct.unpack("!H", wire[:2])[0]


class RestartTests(TransferTestsMixin, unittest.TestCase):
    """The serial and the journal in SQLite, across restarts."""

    @defer.inlineCallbacks
    def start(self, people: Iterable[Person] = ()):
        """A new service, publisher and server on the same SQLite file."""
        if hasattr(self, "service"):
            yield self.service.stopService()
        yield self.setup_server(people, store=SQLiteUserStore(self.path, threads_reactor()))

    @defer.inlineCallbacks
    def change_bob(self, people: dict[str, Person], address: str):
        result = yield self.service.update("bob", [ipaddress.ip_address(address)], ttl=60)
        self.assertTrue(result.ok)
        people["bob"] = attrs.evolve(people["bob"], addresses=(address,))
        yield self.publisher.flush()
        serial = yield self.served_serial()
        return serial, expected_zone(SUFFIX, serial, people.values())

    @defer.inlineCallbacks
    def test_journal_survives_restart(self):
        """
        After a restart the zone keeps its serial and IXFR from older
        serials still works. After a change the publisher never saw (the
        state committed, then a crash before the new serial was stored)
        the next start picks a newer serial, never an older one, and
        IXFR from the old serials answers the whole zone.
        """
        self.path = os.path.join(self.mktemp(), "dyndns.sqlite")
        os.makedirs(os.path.dirname(self.path))
        people = {p.id: p for p in PEOPLE}
        yield self.start(PEOPLE)
        versions = {1000: expected_zone(SUFFIX, 1000, ()), 1001: expected_zone(SUFFIX, 1001, PEOPLE)}
        self.assertEqual((yield self.served_serial()), 1001)
        for address in ("198.51.100.8", "198.51.100.9"):
            serial, versions[serial] = yield self.change_bob(people, address)
        self.assertEqual(sorted(versions), [1000, 1001, 1002, 1003])
        before = {}
        for old in (1000, 1001, 1002):
            before[old] = ixfr_steps((yield self.ixfr(old, zone=zone_from_records(SUFFIX, versions[old]))).records)

        yield self.start()
        self.assertEqual((yield self.served_serial()), 1003)
        self.assertIn((SUFFIX, 1003), self.published, "secondaries are told the serial at start")
        self.assertAXFR((yield self.axfr()), versions[1003], 1003)
        for old in (1000, 1001, 1002):
            result = yield self.ixfr(old, zone=zone_from_records(SUFFIX, versions[old]))
            self.assertEqual(ixfr_steps(result.records), before[old], f"IXFR from {old}")
            self.assertEqual(zone_records(result.zone), versions[1003])
        yield self.service.stopService()

        # bob's new address is committed by another writer, the publisher
        # never sees it: as if the process died before storing the serial
        other = SQLiteUserStore(self.path, threads_reactor())
        yield other.open()
        yield other.save_state(HostState("bob", ipv4="198.51.100.200", ttl=60))
        yield other.close()
        people["bob"] = attrs.evolve(people["bob"], addresses=("198.51.100.200",))

        yield self.start()
        serial = yield self.served_serial()
        self.assertEqual(serial, 1004)
        self.assertTrue(dns.serial.Serial(serial) > dns.serial.Serial(1003))
        expected = expected_zone(SUFFIX, serial, people.values())
        self.assertAXFR((yield self.axfr()), expected, serial)
        for old in (1001, 1002, 1003):
            result = yield self.ixfr(old, zone=zone_from_records(SUFFIX, versions[old]))
            self.assertNotEqual(result.records[1][2], "SOA", f"IXFR from {old} must be AXFR-style")
            self.assertAXFR(result, expected, serial)
        # and the journal starts again from there
        versions[serial] = expected
        new, versions[new] = yield self.change_bob(people, "198.51.100.201")
        self.assertEqual(new, 1005)
        result = yield self.ixfr(1004, zone=zone_from_records(SUFFIX, versions[1004]))
        self.assertEqual([(s[0], s[2]) for s in ixfr_steps(result.records)], [(1004, 1005)])
        self.assertEqual(zone_records(result.zone), versions[1005])


def local_expected(serial: int, people: Iterable[Person]) -> set[tuple[str, int, str, str]]:
    """
    The host zone with the users' names in it: a user's A/AAAA replace the
    file's records of that type at that name; names at or below the
    delegation C{sub.example.org} stay out.
    """
    dynamic = set()
    for person in people:
        dynamic |= {
            r
            for r in person.records("example.org")
            if not (r[0] == "sub.example.org." or r[0].endswith(".sub.example.org."))
        }
    replaced = {(r[0], r[2]) for r in dynamic}
    static = {r for r in host_zone_records(serial) if (r[0], r[2]) not in replaced}
    return static | dynamic


LOCAL_PEOPLE = [
    Person("bob", ("home.example.org",), ("198.51.100.7",), ttl=60),
    Person(
        "carol", ("carol.example.org",), ("203.0.113.9",), offline=True, offline_ips=("192.0.2.200", "2001:db8::200")
    ),
    Person("ivan", ("x.sub.example.org", "sub.example.org", "ivan.example.org"), ("203.0.113.44",), ttl=90),
    Person("judy", ("*.judy.example.org",), ("2001:db8::99",), ttl=120),
    Person("alice", ("gateway.example.info",), ("203.0.113.5",)),
    Person("eve", ("eve.example.org",), ("203.0.113.66",), disabled=True),
]


class LocalZonesTests(TransferTestsMixin, unittest.TestCase):
    """C{update_local_zones}: users' names inside host zones."""

    @defer.inlineCallbacks
    def test_name_covered_by_a_wildcard(self):
        """
        bob holds C{pc.lan.example.org}, which alice's C{*.lan.example.org}
        also covers. While bob is active the zone has his record; once he
        is disabled the zone drops the name (a secondary then answers it
        from alice's wildcard record, as our resolver does) instead of
        publishing alice's answer under bob's name, which would go stale
        when alice moves. The journal applied by dnspython gives the zone
        an AXFR gives.
        """
        alice = Person("alice", ("*.lan.example.org",), ("203.0.113.5",), ttl=120)
        bob = Person("bob", ("pc.lan.example.org",), ("198.51.100.7",), ttl=60)
        yield self.setup_server([alice, bob], local_zones=True)
        first = yield self.served_serial("example.org")
        start = local_expected(first, [alice, bob])
        self.assertIn(("pc.lan.example.org.", 60, "A", "198.51.100.7"), start)
        self.assertAXFR((yield self.axfr("example.org")), start, first)
        yield self.service.set_disabled("bob", True)
        yield self.publisher.flush()
        yield self.service.update("alice", [ipaddress.ip_address("203.0.113.6")], ttl=120)
        yield self.publisher.flush()
        now = yield self.served_serial("example.org")
        self.assertEqual(now, first + 2)
        expected = local_expected(
            now, [attrs.evolve(alice, addresses=("203.0.113.6",)), attrs.evolve(bob, disabled=True)]
        )
        self.assertFalse(any(r[0] == "pc.lan.example.org." for r in expected))
        self.assertAXFR((yield self.axfr("example.org")), expected, now)
        result = yield self.ixfr(first, "example.org", zone=zone_from_records("example.org", start))
        self.assertEqual(zone_records(result.zone), expected)

    @defer.inlineCallbacks
    def test_names_in_host_zone(self):
        """
        With the option, the host zone's AXFR holds the users' names inside
        it with their own serial bumped: bob's A replaces the file's A of
        C{home.example.org} while its MX stays; names at or below the
        delegation C{sub} are left out; disabled users are absent. When bob
        goes offline the file's A is back, in IXFR and in queries alike.
        """
        yield self.setup_server(LOCAL_PEOPLE, local_zones=True)
        people = {p.id: p for p in LOCAL_PEOPLE}
        serial = yield self.served_serial("example.org")
        self.assertEqual(serial, HOST_SERIAL + 1)
        expected = local_expected(serial, people.values())
        self.assertIn(("home.example.org.", 60, "A", "198.51.100.7"), expected)
        self.assertIn(("home.example.org.", 3600, "MX", "20 mail.example.org."), expected)
        self.assertNotIn(("home.example.org.", 3600, "A", "192.0.2.99"), expected)
        self.assertIn(("*.judy.example.org.", 120, "AAAA", "2001:db8::99"), expected)
        self.assertFalse(any("sub.example.org" in r[0] and r[2] != "NS" and r[3] != "192.0.2.77" for r in expected))
        self.assertAXFR((yield self.axfr("example.org")), expected, serial)
        # the suffix zone is as always
        self.assertEqual((yield self.served_serial()), 1001)
        self.assertAXFR((yield self.axfr()), expected_zone(SUFFIX, 1001, LOCAL_PEOPLE), 1001)

        yield self.service.set_offline("bob")
        people["bob"] = attrs.evolve(people["bob"], offline=True)
        yield self.publisher.flush()
        new = yield self.served_serial("example.org")
        self.assertEqual(new, serial + 1)
        self.assertEqual((yield self.served_serial()), 1002)
        current = local_expected(new, people.values())
        self.assertIn(("home.example.org.", 3600, "A", "192.0.2.99"), current)
        self.assertAXFR((yield self.axfr("example.org")), current, new)
        result = yield self.ixfr(serial, "example.org", zone=zone_from_records("example.org", expected))
        self.assertEqual(
            ixfr_steps(result.records),
            [
                (
                    serial,
                    {("home.example.org.", 60, "A", "198.51.100.7")},
                    new,
                    {("home.example.org.", 3600, "A", "192.0.2.99")},
                ),
            ],
        )
        self.assertEqual(zone_records(result.zone), current)
        answer = yield self.udp_one(dns.message.make_query("home.example.org", "A"))
        self.assertEqual({rd.address for rrset in answer.answer for rd in rrset}, {"192.0.2.99"})

        # a change below the delegation only touches the suffix zone
        yield self.service.update("ivan", [ipaddress.ip_address("203.0.113.45")], ttl=90)
        people["ivan"] = attrs.evolve(people["ivan"], addresses=("203.0.113.45",))
        yield self.publisher.flush()
        newest = yield self.served_serial("example.org")
        self.assertEqual(newest, new + 1)
        result = yield self.ixfr(new, "example.org", zone=zone_from_records("example.org", current))
        self.assertEqual(
            ixfr_steps(result.records),
            [
                (
                    new,
                    {("ivan.example.org.", 90, "A", "203.0.113.44")},
                    newest,
                    {("ivan.example.org.", 90, "A", "203.0.113.45")},
                ),
            ],
        )
        self.assertAXFR((yield self.axfr("example.org")), local_expected(newest, people.values()), newest)

    @defer.inlineCallbacks
    def test_incoming_notify(self):
        """
        A NOTIFY for our zone as a primary sends it (SOA question, SOA in
        the answer section) over UDP: NOERROR, AA, opcode NOTIFY, same ID;
        it does not reach the transfer handler.
        """
        yield self.setup_server(local_zones=True)
        for origin in (SUFFIX, "example.org"):
            q = dns.message.make_query(origin, "SOA")
            q.set_opcode(dns.opcode.NOTIFY)
            q.flags |= dns.flags.AA
            q.answer.append(
                dns.rrset.from_text(origin + ".", 3600, "IN", "SOA", f"ns1.{origin}. h.{origin}. 7 1 1 1 1")
            )
            r = yield self.udp_one(q)
            self.assertTrue(q.is_response(r))
            self.assertEqual(r.opcode(), dns.opcode.NOTIFY)
            self.assertEqual(r.rcode(), dns.rcode.NOERROR)
            self.assertTrue(r.flags & dns.flags.AA)
        self.assertEqual(self.handler.transfers, 0)
