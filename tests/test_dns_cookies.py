"""
DNS cookies (L{dyndns_plugin.dns.cookies}): SipHash-2-4 and RFC 9018's
test vectors, the validity window on C{task.Clock}, and the server's
handling of the COOKIE option (answers carry our cookie, malformed lengths
get FORMERR, a verified cookie is not rate limited, cookie-only queries).
"""

from __future__ import annotations

import os
import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
from siphash24 import siphash24
from twisted.internet import address, defer, task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from dyndns_plugin.dns.cookies import (
    BADCOOKIE,
    MalformedCookie,
    ServerCookies,
    packed_address,
    split_cookie,
)
from dyndns_plugin.dns.resolver import DynDNSResolver
from dyndns_plugin.dns.rrl import ResponseRateLimiter
from dyndns_plugin.dns.server import DNSDatagramProtocol, DynDNSServerFactory
from dyndns_plugin.metrics import Metrics
from dyndns_plugin.tap import load_zones
from tests.dns_helpers import memory_settings, service_with_alice
from tests.test_dns_rrl import FakeUDP

SUFFIX = "dyn.example.com"
RFC_SECRET = bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf")


class SipHashTests(unittest.SynchronousTestCase):
    """The library gives the reference implementation's bytes (vectors.h, key 00..0f)."""

    def test_reference_vectors(self) -> None:
        key = bytes(range(16))
        expected = {
            0: "310e0edd47db6f72",
            1: "fd67dc93c539f874",
            2: "5a4fa9d909806c0d",
            8: "6224939a79f5f593",
            15: "e545be4961ca29a1",  # the paper's a129ca6149be45e5, little-endian
            63: "724506eb4c328a95",
        }
        for size, digest in expected.items():
            self.assertEqual(siphash24(bytes(range(size)), key=key).hexdigest(), digest, size)


class RFC9018VectorTests(unittest.SynchronousTestCase):
    """RFC 9018 appendix A."""

    def cookies(self, secret: bytes = RFC_SECRET) -> ServerCookies:
        return ServerCookies(secret, task.Clock())

    def test_a1_learning_a_new_server_cookie(self) -> None:
        cookie = self.cookies().make(
            bytes.fromhex("2464c4abcf10c957"), packed_address("198.51.100.100"), 1559731985
        )
        self.assertEqual(cookie.hex(), "010000005cf79f111f8130c3eee29480")

    def test_a2_the_same_client_renewing(self) -> None:
        cookie = self.cookies().make(
            bytes.fromhex("2464c4abcf10c957"), packed_address("198.51.100.100"), 1559734385
        )
        self.assertEqual(cookie.hex(), "010000005cf7a871d4a564a1442aca77")

    def test_a3_another_client(self) -> None:
        cookies = self.cookies()
        client, ip = bytes.fromhex("fc93fc62807ddb86"), packed_address("203.0.113.203")
        self.assertEqual(cookies.make(client, ip, 1559734700).hex(), "010000005cf7a9acf73a7810aca2381e")
        # What it held: reserved bytes set by someone, covered by the hash.
        held = bytes.fromhex("01abcdef5cf78f71a314227b6679ebf5")
        self.assertTrue(cookies.hash_matches(client, held, ip))
        self.assertFalse(cookies.hash_matches(client, held, packed_address("203.0.113.204")))

    def test_a4_ipv6_after_a_secret_rollover(self) -> None:
        client = bytes.fromhex("22681ab97d52c298")
        ip = packed_address("2001:db8:220:1:59de:d0f4:8769:82b8")
        new = self.cookies(bytes.fromhex("445536bcd2513298075a5d379663c962"))
        self.assertEqual(new.make(client, ip, 1559741961).hex(), "010000005cf7c609a6bb79d16625507a")
        held = bytes.fromhex("010000005cf7c57926556bd0934c72f8")
        old = self.cookies(bytes.fromhex("dd3bdf9344b678b185a6f5cb60fca715"))
        self.assertTrue(old.hash_matches(client, held, ip))
        self.assertFalse(new.hash_matches(client, held, ip))

    def test_ipv4_mapped_is_ipv4(self) -> None:
        self.assertEqual(packed_address("::ffff:198.51.100.100"), packed_address("198.51.100.100"))
        self.assertEqual(len(packed_address("2001:db8::1%eth0")), 16)


class SplitTests(unittest.SynchronousTestCase):
    def test_lengths(self) -> None:
        """RFC 7873 section 5.2.2: 8 bytes, or 16 to 40; anything else is malformed."""
        for size in (8, 16, 24, 40):
            client, server = split_cookie(bytes(size))
            self.assertEqual((len(client), len(server)), (8, size - 8))
        for size in (0, 1, 7, 9, 15, 41, 100):
            self.assertRaises(MalformedCookie, split_cookie, bytes(size))


class WindowTests(unittest.SynchronousTestCase):
    """What L{ServerCookies.answer} does with a cookie as time passes."""

    HOST = "192.0.2.7"
    CLIENT = bytes.fromhex("0123456789abcdef")

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.cookies = ServerCookies(RFC_SECRET, self.clock)

    def learn(self) -> bytes:
        valid, reply, had_server = self.cookies.answer(self.CLIENT, self.HOST)
        self.assertEqual((valid, had_server, len(reply)), (False, False, 24))
        self.assertEqual(reply[:8], self.CLIENT)
        return reply

    def test_echoed_while_young(self) -> None:
        cookie = self.learn()
        self.clock.advance(1800)
        self.assertEqual(self.cookies.answer(cookie, self.HOST), (True, cookie, True))

    def test_renewed_after_half_an_hour(self) -> None:
        cookie = self.learn()
        self.clock.advance(1801)
        valid, reply, _ = self.cookies.answer(cookie, self.HOST)
        self.assertTrue(valid)
        self.assertNotEqual(reply, cookie)
        self.assertEqual(self.cookies.answer(reply, self.HOST), (True, reply, True))

    def test_invalid_after_an_hour(self) -> None:
        cookie = self.learn()
        self.clock.advance(3600)
        self.assertTrue(self.cookies.answer(cookie, self.HOST)[0])
        self.clock.advance(1)
        valid, reply, had_server = self.cookies.answer(cookie, self.HOST)
        self.assertEqual((valid, had_server), (False, True))
        self.assertTrue(self.cookies.answer(reply, self.HOST)[0])  # the fresh one is good

    def test_future_limit(self) -> None:
        """A cookie up to five minutes ahead (another server's clock) is valid, not further."""
        client, ip = self.CLIENT, packed_address(self.HOST)
        now = int(self.clock.seconds())
        ahead = client + self.cookies.make(client, ip, now + 300)
        self.assertTrue(self.cookies.answer(ahead, self.HOST)[0])
        too_far = client + self.cookies.make(client, ip, now + 301)
        self.assertFalse(self.cookies.answer(too_far, self.HOST)[0])

    def test_timestamp_wraps(self) -> None:
        """The 32-bit timestamp is compared modulo 2**32 (RFC 1982)."""
        self.clock.rightNow = (1 << 32) + 100
        client, ip = self.CLIENT, packed_address(self.HOST)
        before_wrap = client + self.cookies.make(client, ip, (1 << 32) - 500)
        self.assertTrue(self.cookies.answer(before_wrap, self.HOST)[0])

    def test_other_address_or_secret_or_client(self) -> None:
        cookie = self.learn()
        self.assertFalse(self.cookies.answer(cookie, "192.0.2.8")[0])
        self.assertFalse(ServerCookies(os.urandom(16), self.clock).answer(cookie, self.HOST)[0])
        self.assertFalse(self.cookies.answer(b"X" + cookie[1:], self.HOST)[0])
        tampered = cookie[:-1] + bytes([cookie[-1] ^ 1])
        self.assertFalse(self.cookies.answer(tampered, self.HOST)[0])
        self.assertFalse(self.cookies.answer(cookie[:8] + b"\x02" + cookie[9:], self.HOST)[0])
        self.assertFalse(self.cookies.answer(cookie + b"\0" * 8, self.HOST)[0])  # 24-byte server cookie

    def test_bad_secret(self) -> None:
        self.assertRaises(ValueError, ServerCookies, b"short", self.clock)


def cookie_of(response: dns.message.Message) -> bytes | None:
    for option in response.options:
        if option.otype == dns.edns.COOKIE:
            return option.to_wire()
    return None


def with_cookie(name: str, cookie: bytes, rdtype: str = "A") -> dns.message.Message:
    return dns.message.make_query(
        name, rdtype, use_edns=0, options=[dns.edns.GenericOption(dns.edns.COOKIE, cookie)]
    )


class ServerTests(unittest.TestCase):
    """The COOKIE option through the factory, over UDP and TCP fakes."""

    SOURCE = ("192.0.2.10", 5353)
    CLIENT = bytes.fromhex("1122334455667788")

    @defer.inlineCallbacks
    def setUp(self):
        settings = memory_settings(self)
        self.service = yield service_with_alice()
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.factory = DynDNSServerFactory(
            DynDNSResolver(self.service.registry), load_zones(settings), clock=self.clock,
        )
        self.factory.cookies = ServerCookies(RFC_SECRET, self.clock)
        self.proto = DNSDatagramProtocol(self.factory)
        self.transport = FakeUDP()
        self.proto.transport = self.transport

    def ask(self, query: dns.message.Message, source: tuple[str, int] | None = None) -> list[dns.message.Message]:
        self.proto.datagramReceived(query.to_wire(), source or self.SOURCE)
        return [dns.message.from_wire(data) for data in self.transport.take()]

    def learn(self) -> bytes:
        [response] = self.ask(with_cookie(f"alice.{SUFFIX}", self.CLIENT))
        cookie = cookie_of(response)
        assert cookie is not None
        return cookie

    def test_answer_carries_our_cookie(self) -> None:
        [response] = self.ask(with_cookie(f"alice.{SUFFIX}", self.CLIENT))
        self.assertEqual(response.rcode(), dns.rcode.NOERROR)
        self.assertEqual(len(response.answer), 1)
        cookie = cookie_of(response)
        self.assertEqual(len(cookie), 24)
        self.assertEqual(cookie[:8], self.CLIENT)
        expected = self.factory.cookies.make(self.CLIENT, packed_address(self.SOURCE[0]))
        self.assertEqual(cookie[8:], expected)
        self.assertEqual(self.factory.cookie_queries, {"client_only": 1, "good": 0, "bad": 0})

    def test_negative_and_error_answers_carry_it(self) -> None:
        for name in (f"nobody.{SUFFIX}", "outside.example.net"):
            [response] = self.ask(with_cookie(name, self.CLIENT))
            self.assertIsNotNone(cookie_of(response), name)

    def test_good_cookie_echoed_and_counted(self) -> None:
        cookie = self.learn()
        [response] = self.ask(with_cookie(f"alice.{SUFFIX}", cookie))
        self.assertEqual(cookie_of(response), cookie)
        self.assertEqual(self.factory.cookie_queries["good"], 1)

    def test_bad_server_cookie_gets_a_fresh_one(self) -> None:
        """We do not require cookies: a wrong server cookie is answered normally with a new one."""
        wrong = self.CLIENT + bytes(16)
        [response] = self.ask(with_cookie(f"alice.{SUFFIX}", wrong))
        self.assertEqual(response.rcode(), dns.rcode.NOERROR)
        self.assertEqual(len(response.answer), 1)
        cookie = cookie_of(response)
        self.assertNotEqual(cookie, wrong)
        self.assertEqual(cookie[:8], self.CLIENT)
        self.assertEqual(self.factory.cookie_queries["bad"], 1)

    def test_malformed_lengths_formerr(self) -> None:
        for size in (0, 7, 9, 15, 41):
            [response] = self.ask(with_cookie(f"alice.{SUFFIX}", bytes(size)))
            self.assertEqual(response.rcode(), dns.rcode.FORMERR, size)
            self.assertEqual(response.answer, [])
        self.assertEqual(self.factory.bad_input["bad_cookie"], 5)

    def test_truncated_option_formerr(self) -> None:
        """An OPT whose options do not add up is FORMERR (header only)."""
        wire = bytearray(with_cookie(f"alice.{SUFFIX}", self.CLIENT).to_wire())
        wire[-10] += 4  # the option length now runs past the OPT rdata
        self.proto.datagramReceived(bytes(wire), self.SOURCE)
        [reply] = self.transport.take()
        self.assertEqual(reply[3] & 0xF, dns.rcode.FORMERR)
        self.assertEqual(self.factory.bad_input["malformed"], 1)

    def test_cookie_only_query(self) -> None:
        """RFC 7873 section 5.4: no question, a client cookie: NOERROR with our cookie."""
        query = with_cookie(f"alice.{SUFFIX}", self.CLIENT)
        query.question = []
        [response] = self.ask(query)
        self.assertEqual(response.rcode(), dns.rcode.NOERROR)
        self.assertEqual(len(cookie_of(response)), 24)
        good = cookie_of(response)
        query = with_cookie(f"alice.{SUFFIX}", good)
        query.question = []
        [response] = self.ask(query)
        self.assertEqual((response.rcode(), cookie_of(response)), (dns.rcode.NOERROR, good))

    def test_cookie_only_query_with_bad_server_cookie(self) -> None:
        """... and BADCOOKIE (23) with a fresh cookie when its server cookie does not verify."""
        query = with_cookie(f"alice.{SUFFIX}", self.CLIENT + bytes(16))
        query.question = []
        [response] = self.ask(query)
        self.assertEqual(response.rcode(), BADCOOKIE)
        self.assertEqual(len(cookie_of(response)), 24)

    def test_no_question_without_cookie_formerr(self) -> None:
        query = dns.message.make_query(f"alice.{SUFFIX}", "A", use_edns=0)
        query.question = []
        [response] = self.ask(query)
        self.assertEqual(response.rcode(), dns.rcode.FORMERR)

    def test_verified_cookie_not_rate_limited(self) -> None:
        """With RRL at 1 per second, a client with our cookie gets every answer; without, it does not."""
        self.factory.rrl = ResponseRateLimiter(self.clock, responses_per_second=1, slip=0, exempt=())
        cookie = self.learn()
        answers = [self.ask(with_cookie(f"alice.{SUFFIX}", cookie)) for _ in range(20)]
        self.assertEqual([len(a) for a in answers], [1] * 20)
        self.assertTrue(all(a[0].answer for a in answers))
        # A forged source with the same cookie has not proved anything.
        forged = [self.ask(with_cookie(f"alice.{SUFFIX}", cookie), ("192.0.2.11", 53)) for _ in range(5)]
        self.assertEqual(sum(len(a) for a in forged), 0)  # same /24, bucket already empty
        plain = [self.ask(dns.message.make_query(f"alice.{SUFFIX}", "A")) for _ in range(5)]
        self.assertEqual(sum(len(a) for a in plain), 0)

    def test_disabled(self) -> None:
        self.factory.cookies = None
        [response] = self.ask(with_cookie(f"alice.{SUFFIX}", self.CLIENT))
        self.assertIsNone(cookie_of(response))
        [response] = self.ask(with_cookie(f"alice.{SUFFIX}", bytes(3)))
        self.assertEqual(response.rcode(), dns.rcode.NOERROR)

    def test_slipped_answer_keeps_the_cookie(self) -> None:
        self.factory.rrl = ResponseRateLimiter(self.clock, responses_per_second=1, slip=1, exempt=())
        self.ask(with_cookie(f"alice.{SUFFIX}", self.CLIENT))
        [slipped] = self.ask(with_cookie(f"alice.{SUFFIX}", self.CLIENT))
        self.assertTrue(slipped.flags & dns.flags.TC)
        self.assertEqual(slipped.answer, [])
        self.assertEqual(cookie_of(slipped)[:8], self.CLIENT)

    def test_tcp(self) -> None:
        proto = self.factory.buildProtocol(address.IPv4Address("TCP", "192.0.2.10", 4000))
        transport = StringTransport(peerAddress=address.IPv4Address("TCP", "192.0.2.10", 4000))
        proto.makeConnection(transport)
        wire = with_cookie(f"alice.{SUFFIX}", self.CLIENT).to_wire()
        proto.dataReceived(struct.pack("!H", len(wire)) + wire)
        data = transport.value()
        response = dns.message.from_wire(data[2:])
        self.assertEqual(cookie_of(response)[8:], self.factory.cookies.make(self.CLIENT, packed_address("192.0.2.10")))
        proto.connectionLost(None)

    def test_metrics(self) -> None:
        """The counters are in /metrics."""
        metrics = Metrics()
        metrics.attach(self.service, self.factory)
        self.factory.rrl = ResponseRateLimiter(self.clock, responses_per_second=1, slip=2, exempt=())
        for _ in range(5):
            self.ask(dns.message.make_query(f"alice.{SUFFIX}", "A"))
        self.ask(with_cookie(f"alice.{SUFFIX}", bytes(3)))
        text = metrics.render().decode()
        self.assertIn('dyndns_dns_rrl_responses_total{action="dropped",class="answer"} 2.0', text)
        self.assertIn('dyndns_dns_rrl_responses_total{action="slipped",class="answer"} 2.0', text)
        self.assertIn('dyndns_dns_bad_input_total{kind="bad_cookie"} 1.0', text)
        self.assertIn('dyndns_dns_cookies_total{result="client_only"} 0.0', text)
