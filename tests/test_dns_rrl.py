"""
Response rate limiting (L{dyndns_plugin.dns.rrl}): the limiter on
C{task.Clock}, the classification of responses, and the UDP protocol's
every write path (answers, FORMERR, NOTIFY, UPDATE and transfer answers)
with fake transports; TCP is never limited.
"""

from __future__ import annotations

import os
import struct
from typing import Iterator

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.names import dns as tdns
from twisted.trial import unittest

from dyndns_plugin.config import settings_from_dict
from dyndns_plugin.dns.resolver import DynDNSResolver
from dyndns_plugin.dns.rrl import (
    ANSWER,
    DROP,
    ERROR,
    NODATA,
    NXDOMAIN,
    REFERRAL,
    SEND,
    SLIP,
    ResponseRateLimiter,
    classify_message,
    classify_wire,
)
from dyndns_plugin.dns.server import DNSDatagramProtocol, DynDNSServerFactory
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.tap import load_zones
from dyndns_plugin.twisted_private import EDNSMessage
from tests.dns_helpers import memory_settings, service_with_alice

SUFFIX = "dyn.example.com"


def limiter(clock: task.Clock, **kwargs: object) -> ResponseRateLimiter:
    kwargs.setdefault("exempt", ())
    return ResponseRateLimiter(clock, **kwargs)  # type: ignore[arg-type]


def verdicts(rrl: ResponseRateLimiter, count: int, host: str = "192.0.2.1",
             name: bytes = b"a.example", cls: int = ANSWER, qtype: int = 1) -> list[int]:
    return [rrl.check(host, cls, name, qtype) for _ in range(count)]


class LimiterTests(unittest.SynchronousTestCase):
    """The token buckets, on a task.Clock."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1000)

    def test_rate_per_second(self) -> None:
        """C{responses_per_second} responses go out in one second; the rest are limited."""
        rrl = limiter(self.clock, responses_per_second=5, slip=0)
        self.assertEqual(verdicts(rrl, 8), [SEND] * 5 + [DROP] * 3)
        self.assertEqual(rrl.dropped[ANSWER], 3)

    def test_slip_two(self) -> None:
        """With slip 2 every second limited response goes out truncated, the others are dropped."""
        rrl = limiter(self.clock, responses_per_second=1, slip=2)
        self.assertEqual(verdicts(rrl, 7), [SEND, DROP, SLIP, DROP, SLIP, DROP, SLIP])
        self.assertEqual((rrl.dropped[ANSWER], rrl.slipped[ANSWER]), (3, 3))

    def test_slip_three(self) -> None:
        rrl = limiter(self.clock, responses_per_second=1, slip=3)
        self.assertEqual(verdicts(rrl, 7), [SEND, DROP, DROP, SLIP, DROP, DROP, SLIP])

    def test_slip_one_truncates_all(self) -> None:
        rrl = limiter(self.clock, responses_per_second=2, slip=1)
        self.assertEqual(verdicts(rrl, 5), [SEND, SEND, SLIP, SLIP, SLIP])

    def test_slip_zero_drops_all(self) -> None:
        rrl = limiter(self.clock, responses_per_second=2, slip=0)
        self.assertEqual(verdicts(rrl, 5), [SEND, SEND, DROP, DROP, DROP])
        self.assertEqual(rrl.slipped[ANSWER], 0)

    def test_window_refill(self) -> None:
        """The bucket refills at the rate: half a second gives half of it back, a long pause no more than one second's worth."""
        rrl = limiter(self.clock, responses_per_second=4, slip=0)
        self.assertEqual(verdicts(rrl, 5), [SEND] * 4 + [DROP])
        self.clock.advance(0.5)
        self.assertEqual(verdicts(rrl, 3), [SEND, SEND, DROP])
        self.clock.advance(1)
        self.assertEqual(verdicts(rrl, 5), [SEND] * 4 + [DROP])
        self.clock.advance(3600)
        self.assertEqual(verdicts(rrl, 5), [SEND] * 4 + [DROP])

    def test_ipv4_prefix_grouping(self) -> None:
        """Addresses in one /24 share a bucket; another /24 has its own."""
        rrl = limiter(self.clock, responses_per_second=2, slip=0)
        self.assertEqual(verdicts(rrl, 2, "192.0.2.1"), [SEND, SEND])
        self.assertEqual(verdicts(rrl, 1, "192.0.2.254"), [DROP])
        self.assertEqual(verdicts(rrl, 1, "192.0.3.1"), [SEND])

    def test_ipv4_prefix_32(self) -> None:
        rrl = limiter(self.clock, responses_per_second=1, slip=0, ipv4_prefix=32)
        self.assertEqual(verdicts(rrl, 2, "192.0.2.1"), [SEND, DROP])
        self.assertEqual(verdicts(rrl, 1, "192.0.2.2"), [SEND])

    def test_ipv6_prefix_grouping(self) -> None:
        """IPv6 addresses in one /56 share a bucket."""
        rrl = limiter(self.clock, responses_per_second=1, slip=0)
        self.assertEqual(verdicts(rrl, 1, "2001:db8:0:1::1"), [SEND])
        self.assertEqual(verdicts(rrl, 1, "2001:db8:0:ff::2"), [DROP])  # same /56
        self.assertEqual(verdicts(rrl, 1, "2001:db8:0:100::1"), [SEND])  # next /56
        self.assertEqual(verdicts(rrl, 1, "2001:db8:0:1::1%eth0"), [DROP])  # a scope id

    def test_ipv4_mapped_is_ipv4(self) -> None:
        """An IPv4-mapped source (dual-stack socket) is the IPv4 address's /24."""
        rrl = limiter(self.clock, responses_per_second=1, slip=0)
        self.assertEqual(verdicts(rrl, 1, "192.0.2.1"), [SEND])
        self.assertEqual(verdicts(rrl, 1, "::ffff:192.0.2.77"), [DROP])

    def test_identity(self) -> None:
        """Names, types and classes are separate flows; NXDOMAIN for random names shares the zone's."""
        rrl = limiter(self.clock, responses_per_second=1, slip=0)
        self.assertEqual(verdicts(rrl, 2, name=b"a.example"), [SEND, DROP])
        self.assertEqual(verdicts(rrl, 1, name=b"b.example"), [SEND])
        self.assertEqual(verdicts(rrl, 1, name=b"a.example", qtype=28), [SEND])
        self.assertEqual(verdicts(rrl, 1, name=b"a.example", cls=NODATA), [SEND])
        self.assertEqual(verdicts(rrl, 1, name=b"example", cls=NXDOMAIN, qtype=0), [SEND])
        self.assertEqual(verdicts(rrl, 1, name=b"example", cls=NXDOMAIN, qtype=0), [DROP])
        self.assertEqual(rrl.dropped[NXDOMAIN], 1)

    def test_exempt(self) -> None:
        """Exempt networks are never limited; the default exempts loopback only."""
        rrl = ResponseRateLimiter(self.clock, responses_per_second=1, slip=0)
        self.assertEqual(verdicts(rrl, 5, "127.0.0.1"), [SEND] * 5)
        self.assertEqual(verdicts(rrl, 5, "127.9.9.9"), [SEND] * 5)
        self.assertEqual(verdicts(rrl, 5, "::1"), [SEND] * 5)
        self.assertEqual(verdicts(rrl, 2, "192.0.2.1"), [SEND, DROP])
        rrl = limiter(self.clock, responses_per_second=1, slip=0, exempt=["198.51.100.0/24", "2001:db8::/32"])
        self.assertEqual(verdicts(rrl, 3, "198.51.100.9"), [SEND] * 3)
        self.assertEqual(verdicts(rrl, 3, "2001:db8:1::1"), [SEND] * 3)
        self.assertEqual(verdicts(rrl, 2, "127.0.0.1"), [SEND, DROP])
        self.assertEqual(len(rrl), 1)  # exempt sources take no table entry

    def test_bounded_table(self) -> None:
        """A flood from random sources keeps at most C{table_size} flows, and an active flow stays limited."""
        rrl = limiter(self.clock, responses_per_second=1, slip=0, table_size=100)
        self.assertEqual(verdicts(rrl, 2, "198.51.100.1"), [SEND, DROP])
        for i in range(5000):
            host = f"10.{(i >> 8) & 255}.{i & 255}.1"
            self.assertEqual(rrl.check(host, ANSWER, b"x", 1), SEND)
            if i % 10 == 0:  # the victim's flow keeps being hit
                self.assertEqual(rrl.check("198.51.100.1", ANSWER, b"a.example", 1), DROP)
            self.assertLessEqual(len(rrl), 100)
        self.assertEqual(len(rrl), 100)
        self.assertLessEqual(len(rrl._sources), 16384)

    def test_clock_backwards(self) -> None:
        """A clock that steps back gives no tokens (and does not crash)."""
        rrl = limiter(self.clock, responses_per_second=1, slip=0)
        self.assertEqual(verdicts(rrl, 1), [SEND])
        self.clock.rightNow -= 100
        self.assertEqual(verdicts(rrl, 1), [DROP])

    def test_bad_parameters(self) -> None:
        for kwargs in ({"responses_per_second": 0}, {"slip": -1}, {"ipv4_prefix": 33},
                       {"ipv6_prefix": 129}, {"table_size": 0}):
            self.assertRaises(ValueError, ResponseRateLimiter, self.clock, **kwargs)

    def test_not_an_address(self) -> None:
        """A peer that is not an IP address (a test transport) is not limited."""
        rrl = limiter(self.clock, responses_per_second=1, slip=0)
        self.assertEqual(verdicts(rrl, 3, "not-an-address"), [SEND] * 3)


def _message(rcode: int = 0, answers: int = 0, authority: tuple[int, bytes] | None = None,
             auth: bool = True, name: bytes = b"Host.Example.ORG", qtype: int = tdns.A) -> EDNSMessage:
    m = EDNSMessage(rCode=rcode, auth=auth)
    m.queries = [tdns.Query(name, qtype, tdns.IN)]
    m.answers = [tdns.RRHeader(name, tdns.A, tdns.IN, 60, tdns.Record_A("192.0.2.1"))] * answers
    if authority is not None:
        rtype, owner = authority
        payload = tdns.Record_SOA() if rtype == tdns.SOA else tdns.Record_NS(b"ns1.example.org")
        m.authority = [tdns.RRHeader(owner, rtype, tdns.IN, 60, payload)]
    return m


class ClassifyTests(unittest.SynchronousTestCase):
    """Which flow a response belongs to."""

    def test_answer(self) -> None:
        self.assertEqual(classify_message(_message(answers=1)), (ANSWER, b"host.example.org", tdns.A))

    def test_nodata_is_the_zone(self) -> None:
        m = _message(authority=(tdns.SOA, b"Example.ORG"), qtype=tdns.MX)
        self.assertEqual(classify_message(m), (NODATA, b"example.org", tdns.MX))

    def test_nxdomain_is_the_zone(self) -> None:
        """Random names under one zone are one NXDOMAIN flow (random-subdomain floods)."""
        for name in (b"x1.example.org", b"qwerty.example.org"):
            m = _message(rcode=tdns.ENAME, authority=(tdns.SOA, b"example.org"), name=name)
            self.assertEqual(classify_message(m), (NXDOMAIN, b"example.org", 0))
        self.assertEqual(classify_message(_message(rcode=tdns.ENAME)), (NXDOMAIN, b"", 0))

    def test_errors_share_one_flow(self) -> None:
        for rcode in (tdns.EREFUSED, tdns.EFORMAT, tdns.ESERVER, tdns.ENOTIMP, 16):
            self.assertEqual(classify_message(_message(rcode=rcode, name=os.urandom(4).hex().encode())),
                             (ERROR, b"", 0))

    def test_referral(self) -> None:
        m = _message(authority=(tdns.NS, b"Sub.Example.org"), auth=False)
        self.assertEqual(classify_message(m), (REFERRAL, b"sub.example.org", 0))

    def test_wire(self) -> None:
        """Raw answers (UPDATE, transfers, header-only errors) by RCODE, answer count and question."""
        query = dns.message.make_query("Zone.Example", "SOA")
        reply = dns.message.make_response(query)
        self.assertEqual(classify_wire(reply.to_wire()), (NODATA, b"zone.example", 6))
        reply.set_rcode(dns.rcode.REFUSED)
        self.assertEqual(classify_wire(reply.to_wire()), (ERROR, b"", 0))
        reply.set_rcode(dns.rcode.NXDOMAIN)
        self.assertEqual(classify_wire(reply.to_wire()), (NXDOMAIN, b"", 0))
        wire = bytearray(dns.message.make_response(query).to_wire())
        wire[7] = 1  # ANCOUNT 1
        self.assertEqual(classify_wire(bytes(wire)), (ANSWER, b"zone.example", 6))
        self.assertEqual(classify_wire(b"\x00" * 5), (ERROR, b"", 0))
        self.assertEqual(classify_wire(struct.pack("!HHHHHH", 1, 0x8000, 1, 0, 0, 0) + b"\xc0\x0c"),
                         (ERROR, b"", 0))


class FakeUDP:
    """A UDP transport that keeps what is written."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))

    def take(self) -> list[bytes]:
        out = [data for data, _ in self.written]
        self.written.clear()
        return out


class FakeTransfers:
    """A transfer handler that answers every request with one fixed message."""

    def __init__(self) -> None:
        self.requests = 0

    def answer_transfer(self, data: bytes, peer: str | None, udp: bool) -> Iterator[bytes]:
        self.requests += 1
        reply = dns.message.make_response(dns.message.from_wire(data))
        return iter([reply.to_wire()])


def flags(data: bytes) -> tuple[int, int, int]:
    """(TC, RCODE, ANCOUNT) of a raw message."""
    return (data[2] >> 1) & 1, data[3] & 0xF, struct.unpack("!H", data[6:8])[0]


class ServerPathsTests(unittest.TestCase):
    """
    Every UDP write path goes through the limiter (rate 2, slip 2, no
    exempt networks); TCP does not.
    """

    SOURCE = ("192.0.2.10", 5353)

    @defer.inlineCallbacks
    def setUp(self):
        settings = memory_settings(self)
        self.service = yield service_with_alice()
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.transfers = FakeTransfers()
        self.factory = DynDNSServerFactory(
            DynDNSResolver(self.service.registry), load_zones(settings),
            transfer_handler=self.transfers, clock=self.clock,
        )
        self.factory.rrl = ResponseRateLimiter(self.clock, responses_per_second=2, slip=2, exempt=())
        self.proto = DNSDatagramProtocol(self.factory)
        self.transport = FakeUDP()
        self.proto.transport = self.transport

    def send(self, wire: bytes, count: int = 6, source: tuple[str, int] | None = None) -> list[bytes]:
        for _ in range(count):
            self.proto.datagramReceived(wire, source or self.SOURCE)
        return self.transport.take()

    def assertLimited(self, replies: list[bytes], rcode: int, answers: int = 0) -> None:
        """6 queries: 2 sent, then drop, slip, drop, slip."""
        self.assertEqual(len(replies), 4, replies)
        for reply in replies[:2]:
            self.assertEqual(flags(reply), (0, rcode, answers))
        for reply in replies[2:]:
            tc, code, ancount = flags(reply)
            self.assertEqual((tc, code, ancount), (1, rcode, 0))
            self.assertEqual(struct.unpack("!HHH", reply[6:12]), (0, 0, 0))  # no records at all

    def test_answers(self) -> None:
        replies = self.send(dns.message.make_query(f"alice.{SUFFIX}", "A").to_wire())
        self.assertLimited(replies, dns.rcode.NOERROR, answers=1)
        self.assertEqual((self.factory.rrl.dropped[ANSWER], self.factory.rrl.slipped[ANSWER]), (2, 2))

    def test_slipped_answer_is_a_valid_truncated_reply(self) -> None:
        query = dns.message.make_query(f"alice.{SUFFIX}", "A")
        replies = self.send(query.to_wire(), 4)
        slipped = dns.message.from_wire(replies[-1])
        self.assertTrue(slipped.flags & dns.flags.TC)
        self.assertTrue(query.is_response(slipped))
        self.assertEqual(slipped.answer, [])

    def test_random_subdomains_share_a_flow(self) -> None:
        """NXDOMAIN for random names under the suffix: one flow per zone."""
        for i in range(6):
            self.proto.datagramReceived(
                dns.message.make_query(f"{os.urandom(6).hex()}.{SUFFIX}", "A").to_wire(), self.SOURCE
            )
        self.assertLimited(self.transport.take(), dns.rcode.NXDOMAIN)
        self.assertEqual(self.factory.rrl.dropped[NXDOMAIN], 2)

    def test_errors(self) -> None:
        """REFUSED (outside our zones), whatever the names: one error flow."""
        for i in range(6):
            self.proto.datagramReceived(
                dns.message.make_query(f"n{i}.example.net", "A").to_wire(), self.SOURCE
            )
        self.assertLimited(self.transport.take(), dns.rcode.REFUSED)

    def test_formerr(self) -> None:
        """Header-only FORMERR for a malformed question is limited too."""
        packet = struct.pack("!HBBHHHH", 0x4242, 0, 0, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
        replies = self.send(packet)
        self.assertLimited(replies, dns.rcode.FORMERR)

    def test_notify(self) -> None:
        q = dns.message.make_query(SUFFIX, "SOA")
        q.set_opcode(dns.opcode.NOTIFY)
        self.assertLimited(self.send(q.to_wire()), dns.rcode.NOERROR)

    def test_update(self) -> None:
        """UPDATE answers (here NOTIMP: no update handler)."""
        wire = bytearray(dns.message.make_query(SUFFIX, "SOA").to_wire())
        wire[2] = (wire[2] & 0x87) | (dns.opcode.UPDATE << 3)
        self.assertLimited(self.send(bytes(wire)), dns.rcode.NOTIMP)

    def test_transfer(self) -> None:
        """Transfer answers over UDP (IXFR)."""
        wire = dns.message.make_query(SUFFIX, "IXFR").to_wire()
        self.assertLimited(self.send(wire), dns.rcode.NOERROR)
        self.assertEqual(self.transfers.requests, 6)

    def test_other_source_not_limited(self) -> None:
        wire = dns.message.make_query(f"alice.{SUFFIX}", "A").to_wire()
        self.send(wire)
        replies = self.send(wire, 2, ("198.51.100.10", 53))
        self.assertEqual([flags(r) for r in replies], [(0, 0, 1), (0, 0, 1)])

    def test_refill(self) -> None:
        wire = dns.message.make_query(f"alice.{SUFFIX}", "A").to_wire()
        self.send(wire)
        self.clock.advance(1)
        self.assertLimited(self.send(wire), dns.rcode.NOERROR, answers=1)

    def test_tcp_never_limited(self) -> None:
        """Over TCP every query is answered in full."""
        proto = self.factory.buildProtocol(("192.0.2.10", 4000))
        transport = StringTransport(peerAddress=None)
        proto.makeConnection(transport)
        wire = dns.message.make_query(f"alice.{SUFFIX}", "A").to_wire()
        for _ in range(10):
            proto.dataReceived(struct.pack("!H", len(wire)) + wire)
        data = transport.value()
        replies = []
        while data:
            size = struct.unpack("!H", data[:2])[0]
            replies.append(data[2 : 2 + size])
            data = data[2 + size :]
        self.assertEqual([flags(r) for r in replies], [(0, 0, 1)] * 10)
        proto.connectionLost(None)

    def test_disabled(self) -> None:
        self.factory.rrl = None
        replies = self.send(dns.message.make_query(f"alice.{SUFFIX}", "A").to_wire(), 10)
        self.assertEqual(len(replies), 10)


class ConfigTests(unittest.SynchronousTestCase):
    """C{[dns.rrl]} and C{[dns.cookies]} in the configuration file."""

    def load(self, dns_table: dict[str, object]):
        return settings_from_dict({"service": {"suffix": SUFFIX}, "dns": dns_table})

    def assertConfigError(self, dns_table: dict[str, object], key: str) -> None:
        from dyndns_plugin.config import ConfigError

        with self.assertRaises(ConfigError) as caught:
            self.load(dns_table)
        self.assertEqual(caught.exception.key, key)

    def test_defaults(self) -> None:
        protection = self.load({}).dns_protection
        self.assertEqual(
            (protection.rrl.enabled, protection.rrl.responses_per_second, protection.rrl.slip,
             protection.rrl.ipv4_prefix, protection.rrl.ipv6_prefix, protection.rrl.exempt),
            (True, 200, 2, 24, 56, ("127.0.0.0/8", "::1/128")),
        )
        self.assertEqual((protection.cookies.enabled, protection.cookies.secret), (True, None))

    def test_values(self) -> None:
        protection = self.load({
            "rrl": {"enabled": False, "responses_per_second": 5, "slip": 0, "ipv4_prefix": 32,
                    "ipv6_prefix": 64, "exempt": ["192.0.2.7"], "table_size": 10},
            "cookies": {"secret": "E5E973E5A6B2A43F48E7DC849E37BFCF"},
        }).dns_protection
        self.assertEqual(protection.rrl.exempt, ("192.0.2.7/32",))
        self.assertEqual(protection.cookies.secret.value, bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf"))
        self.assertEqual(str(protection.cookies.secret), "(secret)")  # never shown (admin API)
        self.assertNotIn("e5e9", repr(protection))

    def test_errors(self) -> None:
        for table, key in (
            ({"rrl": {"responses_per_second": 0}}, "dns.rrl.responses_per_second"),
            ({"rrl": {"slip": 11}}, "dns.rrl.slip"),
            ({"rrl": {"ipv4_prefix": 33}}, "dns.rrl.ipv4_prefix"),
            ({"rrl": {"ipv6_prefix": 8}}, "dns.rrl.ipv6_prefix"),
            ({"rrl": {"exempt": ["not-a-network"]}}, "dns.rrl.exempt"),
            ({"rrl": {"exempt": [24]}}, "dns.rrl.exempt"),
            ({"rrl": {"enabled": "yes"}}, "dns.rrl.enabled"),
            ({"rrl": {"table_size": 0}}, "dns.rrl.table_size"),
            ({"rrl": {"window": 15}}, "dns.rrl.window"),
            ({"cookies": {"secret": "abc"}}, "dns.cookies.secret"),
            ({"cookies": {"secret": "00" * 15}}, "dns.cookies.secret"),
            ({"cookies": {"secret": 5}}, "dns.cookies.secret"),
            ({"cookies": {"require": True}}, "dns.cookies.require"),
        ):
            self.assertConfigError(table, key)

    def test_build_service(self) -> None:
        """twistd's service tree puts both on the DNS factory, or neither when switched off."""
        from dyndns_plugin.tap import build_service

        def factory_of(dns_table: dict[str, object]):
            settings = settings_from_dict({
                "service": {"suffix": SUFFIX}, "store": {"backend": "memory"},
                "dns": {"listen": [], **dns_table},
            })
            return build_service(settings, MemoryUserStore(), open_files=4096).dns_factory

        factory = factory_of({"cookies": {"secret": "00" * 16}, "rrl": {"slip": 1}})
        self.assertIsNotNone(factory.cookies)
        self.assertEqual((factory.rrl.slip, factory.rrl.rate), (1, 200.0))
        self.assertTrue(factory.rrl.exempt("127.0.0.1"))
        factory = factory_of({"cookies": {"enabled": False}, "rrl": {"enabled": False}})
        self.assertEqual((factory.rrl, factory.cookies), (None, None))
