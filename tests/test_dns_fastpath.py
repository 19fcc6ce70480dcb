"""
The query fast path (L{dyndns_plugin.dns.fastpath}): a server with the answer
cache must send, byte for byte after the ID, what the same server without it
sends, over UDP and over TCP (several pipelined queries per connection), for
plain and for malformed queries, with rate limiting and metrics counting
alike; every kind of change must reach the cached answers before the write
that made it is acknowledged; and a flood of random names cannot grow the
cache past its bound.
"""

from __future__ import annotations

import gc
import ipaddress
import random
import struct
from typing import Any, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

import tests.test_dns_server as server_tests
from bench.fuzz_fastpath import fuzz_inputs, mutate
from dyndns_plugin.dns.fastpath import AnswerCache, attach_answer_cache, plain_query_key
from dyndns_plugin.dns.resolver import DynDNSResolver
from dyndns_plugin.dns.rrl import ResponseRateLimiter
from dyndns_plugin.dns.server import DNSDatagramProtocol, DynDNSServerFactory
from dyndns_plugin.model import User
from dyndns_plugin.replication.publisher import ZonePublisher
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.tap import load_zones
from tests.dns_helpers import memory_settings

SUFFIX = "dyn.example.com"
PEER = ("127.0.0.1", 5353)

#: Names the generated queries ask: users' names (main, additional, covered
#: by a wildcard, inside the host zone), offline and disabled users, unknown
#: names in our zones, apexes, host-zone records and names not ours.
NAMES = [
    f"alice.{SUFFIX}",
    f"www.alice.{SUFFIX}",
    f"a.b.alice.{SUFFIX}",
    "gateway.example.info",
    f"bob.{SUFFIX}",
    "home.example.org",
    f"carol.{SUFFIX}",
    f"dave.{SUFFIX}",
    f"eve.{SUFFIX}",
    f"nobody.{SUFFIX}",
    SUFFIX,
    f"ns1.{SUFFIX}",
    "example.org",
    "www.example.org",
    "txt.example.org",
    "medium.example.org",
    "big.example.org",
    "missing.example.org",
    "example.net",
    "",
]
#: A, NS, CNAME, SOA, MX, TXT, AAAA, a private type, CAA, ANY.
TYPES = [1, 2, 5, 6, 15, 16, 28, 65280, 257, 255]


def ips(*texts: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Addresses from their text."""
    return [ipaddress.ip_address(t) for t in texts]


def encode_name(name: str, cases: list[bool]) -> bytes:
    """C{name} in wire format, each letter upper-cased where C{cases} says."""
    out = b""
    position = 0
    for label in name.split(".") if name else []:
        chars = []
        for char in label:
            upper = cases[position % len(cases)] if cases else False
            chars.append(char.upper() if upper else char)
            position += 1
        raw = "".join(chars).encode("ascii")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def make_query(
    ident: int, name: str, qtype: int, rd: bool, edns: int | None, do: bool, cases: list[bool], cd: bool = False
) -> bytes:
    """A query as a client sends it, built byte by byte."""
    flags = (0x0100 if rd else 0) | (0x0010 if cd else 0)
    header = struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 1 if edns is not None else 0)
    question = encode_name(name, cases) + struct.pack("!HH", qtype, 1)
    opt = b""
    if edns is not None:
        opt = b"\0" + struct.pack("!HHIH", 41, edns, 0x8000 if do else 0, 0)
    return header + question + opt


#: Changes the stateful differential test makes between queries.
CHANGES: dict[str, Callable[[DynDNSService], Any]] = {
    "alice moves": lambda s: s.update("alice", ips(f"203.0.113.{random.randint(1, 254)}")),
    "alice offline": lambda s: s.set_offline("alice"),
    "bob IPv6 too": lambda s: s.update("bob", ips("198.51.100.7", "2001:db8::7")),
    "bob offline": lambda s: s.set_offline("bob"),
    "carol online": lambda s: s.update("carol", ips("203.0.113.9")),
    "carol offline": lambda s: s.set_offline("carol"),
    "dave disabled": lambda s: s.set_disabled("dave", True),
    "dave enabled": lambda s: s.set_disabled("dave", False),
    "eve enabled": lambda s: s.set_disabled("eve", False),
    "nothing": lambda s: defer.succeed(None),
}

queries = st.builds(
    make_query,
    ident=st.integers(0, 0xFFFF),
    name=st.sampled_from(NAMES),
    qtype=st.sampled_from(TYPES),
    rd=st.booleans(),
    edns=st.sampled_from([None, 0, 512, 1232, 4096, 65535]),
    do=st.booleans(),
    cases=st.lists(st.booleans(), max_size=8),
    cd=st.booleans(),
)


class UDPWrites:
    """A UDP transport that keeps what is written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes, address: Any = None) -> None:
        self.written.append(data)


class Pair:
    """
    Two servers over one service and the same zones: C{full} without the
    answer cache, C{fast} with it (wired to the service and the publisher).
    Each counts its answers' RCODEs and may rate limit on its own clock.
    """

    def __init__(self, testcase: unittest.SynchronousTestCase, rrl: bool = False) -> None:
        settings = memory_settings(
            testcase,
            dns={"zones": [{"origin": "example.org", "file": "example.org.zone"}]},
            files={"example.org.zone": server_tests.HOST_ZONE},
        )
        self.clock = task.Clock()
        self.service = DynDNSService(MemoryUserStore(), SUFFIX, poll_interval=None, clock=self.clock)
        self.zones = load_zones(settings)
        self.publisher = ZonePublisher(self.service, self.zones, delay=0)
        testcase.successResultOf(defer.ensureDeferred(self.service.start()))
        self.counts: dict[str, list[int]] = {"full": [], "fast": []}
        self.full = self._factory("full", rrl)
        self.fast = self._factory("fast", rrl)
        self.answers = attach_answer_cache(self.fast, self.service, self.publisher)
        self.testcase = testcase

    def _factory(self, label: str, rrl: bool) -> DynDNSServerFactory:
        factory = DynDNSServerFactory(DynDNSResolver(self.service.registry), self.zones, clock=self.clock)
        factory.on_reply = self.counts[label].append
        factory.tcp_idle_timeout = None
        factory.tcp_message_timeout = None
        if rrl:
            factory.rrl = ResponseRateLimiter(self.clock, responses_per_second=2, slip=2, exempt=())
        return factory

    def done(self, d: Any) -> Any:
        return self.testcase.successResultOf(defer.ensureDeferred(d))

    def users(self) -> None:
        """The users of L{server_tests.ServerTestsMixin}."""
        s = self.service
        self.done(s.add_user(User("alice", hostnames=[f"*.alice.{SUFFIX}", "gateway.example.info"])))
        self.done(s.update("alice", ips("203.0.113.5", "2001:db8::5"), ttl=120))
        self.done(s.add_user(User("bob", hostnames=["home.example.org"])))
        self.done(s.update("bob", ips("198.51.100.7"), ttl=60))
        self.done(s.add_user(User("carol", offline_ipv4="192.0.2.200")))
        self.done(s.update("carol", ips("203.0.113.9")))
        self.done(s.set_offline("carol"))
        self.done(s.add_user(User("dave")))
        self.done(s.update("dave", ips("203.0.113.10")))
        self.done(s.set_offline("dave"))
        self.done(s.add_user(User("eve")))
        self.done(s.update("eve", ips("203.0.113.66")))
        self.done(s.set_disabled("eve", True))

    def udp(self, factory: DynDNSServerFactory, data: bytes) -> list[bytes]:
        protocol = DNSDatagramProtocol(factory)
        transport = UDPWrites()
        protocol.transport = transport  # type: ignore[assignment]
        protocol.datagramReceived(data, PEER)
        return transport.written

    def tcp(self, factory: DynDNSServerFactory, messages: list[bytes]) -> tuple[list[bytes], bool]:
        """All C{messages} pipelined in one read; the answers and whether the connection was closed."""
        protocol = factory.buildProtocol(PEER)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"".join(struct.pack("!H", len(m)) + m for m in messages))
        closed = transport.disconnecting
        protocol.connectionLost(None)
        data = transport.value()
        out = []
        while data:
            (length,) = struct.unpack("!H", data[:2])
            out.append(data[2 : 2 + length])
            data = data[2 + length :]
        return out, closed

    def same_udp(self, data: bytes) -> list[bytes]:
        """C{data} to both servers, twice to the fast one (miss, then hit): the same answers."""
        full = self.udp(self.full, data)
        for _ in range(2):
            self.testcase.assertEqual(self.udp(self.fast, data), full, data.hex())
        return full


class EquivalenceTests(unittest.SynchronousTestCase):
    """Fast and full path give the same bytes, UDP and TCP, for every query."""

    def setUp(self) -> None:
        self.pair = Pair(self)
        self.pair.users()

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(query=queries, seed=st.integers(0, 2**32))
    def test_udp_same_bytes(self, query: bytes, seed: int) -> None:
        """Plain queries and damaged copies of them get the same answers (or none) on both."""
        pair = self.pair
        answers = pair.same_udp(query)
        self.assertEqual(len(answers), 1)
        self.assertEqual(answers[0][:2], query[:2])
        rnd = random.Random(seed)
        for _ in range(3):
            pair.same_udp(mutate(query, rnd))
        self.assertEqual(pair.counts["fast"], [c for c in pair.counts["full"] for _ in range(2)])

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(batch=st.lists(queries, min_size=1, max_size=6))
    def test_tcp_pipelined_same_bytes(self, batch: list[bytes]) -> None:
        """Several queries in one TCP read: each answered, in order, the same on both (twice on the fast one)."""
        pair = self.pair
        full, closed = pair.tcp(pair.full, batch)
        self.assertFalse(closed)
        self.assertEqual([a[:2] for a in full], [q[:2] for q in batch])
        for _ in range(2):
            self.assertEqual(pair.tcp(pair.fast, batch), (full, False))

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(steps=st.lists(st.tuples(st.sampled_from(sorted(CHANGES)), queries), min_size=1, max_size=8))
    def test_same_bytes_across_changes(self, steps: list[tuple[str, bytes]]) -> None:
        """Users going online, offline, disabled, enabled between queries: both paths still agree."""
        pair = self.pair
        for change, query in steps:
            pair.done(CHANGES[change](pair.service))
            pair.same_udp(query)
            full, _ = pair.tcp(pair.full, [query, query])
            self.assertEqual(pair.tcp(pair.fast, [query, query]), (full, False))

    def test_malformed_not_plain(self) -> None:
        """Unusual queries are not plain: they take the full path (and get its answers)."""
        pair = self.pair
        base = make_query(7, f"alice.{SUFFIX}", 1, True, 1232, False, [])
        self.assertIsNotNone(plain_query_key(base))
        pointer = base[:12] + b"\xc0\x0c" + base[-15:]
        cookie = base[:-2] + struct.pack("!HHH", 6, 10, 8) + b"12345678"
        version1 = base[:-6] + b"\x01" + base[-5:]
        notimp = b"\x00\x07" + bytes([15 << 3 | 1]) + base[3:]
        chaos = base.replace(b"\x00\x01\x00\x01\x00\x00)", b"\x00\x01\x00\x03\x00\x00)")
        for data in (pointer, cookie, version1, notimp, chaos, base[:-1], base + b"x", b"\x00" * 11):
            self.assertIsNone(plain_query_key(data), data.hex())
            pair.same_udp(data)
        self.assertEqual(len(pair.answers), 0)
        # RD is not copied into the NOTIMP answer to opcode 15.
        (reply,) = pair.udp(pair.fast, notimp)
        self.assertEqual((reply[2], reply[3] & 0xF), (0x80 | 15 << 3, 4))

    def test_rate_limited_alike(self) -> None:
        """Rate limiting drops and slips cached answers exactly as the full path's."""
        pair = Pair(self, rrl=True)
        pair.users()
        for name in (f"alice.{SUFFIX}", f"nobody.{SUFFIX}", "big.example.org"):
            query = make_query(9, name, 16 if name.startswith("big") else 1, False, 1232, False, [])
            full = [pair.udp(pair.full, query) for _ in range(6)]
            fast = [pair.udp(pair.fast, query) for _ in range(6)]
            self.assertEqual(fast, full)
            self.assertIn([], full)  # some dropped
        self.assertEqual(pair.counts["fast"], pair.counts["full"])
        self.assertEqual(pair.fast.rrl.dropped, pair.full.rrl.dropped)  # type: ignore[union-attr]


class InvalidationTests(unittest.SynchronousTestCase):
    """
    Each kind of change reaches cached answers before the write is
    acknowledged: right after its Deferred fires, the fast path answers what
    the full path answers, which differs from the answer before.
    """

    def setUp(self) -> None:
        self.pair = Pair(self)
        self.pair.users()

    def check(self, name: str, qtype: int, change: Any) -> None:
        pair = self.pair
        query = make_query(1, name, qtype, False, 1232, False, [True, False])
        before = pair.same_udp(query)
        self.assertIn(plain_query_key(query), pair.answers.entries)
        pair.done(change())
        after = pair.udp(pair.fast, query)
        self.assertNotEqual(after, before)
        self.assertEqual(after, pair.udp(pair.full, query))

    def test_update(self) -> None:
        self.check(f"alice.{SUFFIX}", 1, lambda: self.pair.service.update("alice", ips("203.0.113.77")))

    def test_wildcard_alias_update(self) -> None:
        self.check(f"www.alice.{SUFFIX}", 1, lambda: self.pair.service.update("alice", ips("203.0.113.78")))

    def test_name_in_host_zone_update(self) -> None:
        self.check("home.example.org", 1, lambda: self.pair.service.update("bob", ips("198.51.100.8")))

    def test_nodata_then_address(self) -> None:
        self.check(f"bob.{SUFFIX}", 28, lambda: self.pair.service.update("bob", ips("198.51.100.7", "2001:db8::7")))

    def test_offline(self) -> None:
        self.check("gateway.example.info", 1, lambda: self.pair.service.set_offline("alice"))

    def test_online_again(self) -> None:
        self.check(f"carol.{SUFFIX}", 1, lambda: self.pair.service.update("carol", ips("203.0.113.9")))

    def test_disable(self) -> None:
        self.check(f"bob.{SUFFIX}", 1, lambda: self.pair.service.set_disabled("bob", True))

    def test_enable(self) -> None:
        self.check(f"eve.{SUFFIX}", 1, lambda: self.pair.service.set_disabled("eve", False))

    def test_user_added(self) -> None:
        def add() -> Any:
            return self.pair.service.add_user(User("frank", offline_ipv4="192.0.2.9"))

        self.check(f"frank.{SUFFIX}", 1, add)

    def test_user_removed(self) -> None:
        self.check(f"bob.{SUFFIX}", 1, lambda: self.pair.service.remove_user("bob"))

    def test_user_edited(self) -> None:
        def edit() -> Any:
            return self.pair.service.put_user(User("dave", offline_ipv4="192.0.2.44"))

        self.check(f"dave.{SUFFIX}", 1, edit)

    def test_names_changed(self) -> None:
        def rename() -> Any:
            return self.pair.service.put_user(User("bob", hostnames=["new.example.net"]))

        self.check("new.example.net", 1, rename)

    def test_wildcard_alias_added(self) -> None:
        def wildcard() -> Any:
            return self.pair.service.put_user(User("bob", hostnames=[f"*.bob.{SUFFIX}"]))

        self.check(f"x.y.bob.{SUFFIX}", 1, wildcard)

    def test_soa_serial(self) -> None:
        """A new zone serial reaches NXDOMAIN and SOA answers (the publisher's on_publish)."""
        pair = self.pair
        nx = make_query(2, f"nobody.{SUFFIX}", 1, False, None, False, [])
        soa = make_query(3, SUFFIX, 6, False, None, False, [])
        positive = make_query(4, f"bob.{SUFFIX}", 1, False, None, False, [])
        before = [pair.same_udp(q) for q in (nx, soa, positive)]
        pair.done(pair.service.update("alice", ips("203.0.113.79")))
        pair.clock.advance(1)
        self.assertGreater(pair.publisher.published, 0)
        self.assertNotIn(plain_query_key(nx), pair.answers.entries)
        self.assertIn(plain_query_key(positive), pair.answers.entries)  # not touched by a serial
        after = [pair.same_udp(q) for q in (nx, soa, positive)]
        self.assertNotEqual(after[0], before[0])
        self.assertNotEqual(after[1], before[1])
        self.assertEqual(after[2], before[2])

    def test_soa_in_owned_answer(self) -> None:
        """An answer with the SOA for a user's name (host-zone apex, user offline) goes with a new serial."""
        pair = self.pair
        pair.done(pair.service.add_user(User("gina", hostnames=["example.org"])))
        query = make_query(5, "example.org", 255, False, None, False, [])
        before = pair.same_udp(query)
        self.assertIn(b"\x00\x06\x00\x01", before[0])  # an SOA record in the answer
        self.assertIn(plain_query_key(query), pair.answers.entries)
        pair.done(pair.service.update("alice", ips("203.0.113.80")))
        pair.clock.advance(1)
        self.assertNotIn(plain_query_key(query), pair.answers.entries)
        pair.same_udp(query)


class BoundTests(unittest.SynchronousTestCase):
    """A random-subdomain flood cannot grow the cache past its bound."""

    def test_flood(self) -> None:
        pair = Pair(self)
        pair.users()
        pair.answers.max_entries = 100
        rnd = random.Random(5)
        for i in range(1000):
            label = "".join(rnd.choice("abcdefghij") for _ in range(12))
            pair.same_udp(make_query(i, f"{label}.{SUFFIX}", 1, False, None, False, []))
            self.assertLessEqual(len(pair.answers), 100)
        self.assertEqual(len(pair.answers), 100)
        self.assertLessEqual(len(pair.answers._zone_keys), 100)

    def test_many_keys_for_one_user(self) -> None:
        """
        Past a few keys a user's keys move from a tuple to a set (a flood of
        question types must not copy them all at each new one), and
        dropping the user's answers still drops every one of them.
        """
        pair = Pair(self)
        pair.users()
        queries = [
            make_query(i, f"bob.{SUFFIX}", qtype, False, None, False, []) for i, qtype in enumerate(range(1, 41))
        ]
        for query in queries:
            pair.same_udp(query)
        keys = pair.answers._by_user["bob"]
        self.assertIsInstance(keys, set)
        self.assertEqual(set(keys), {plain_query_key(q) for q in queries})
        pair.done(pair.service.update("bob", ips("198.51.100.9")))
        self.assertNotIn("bob", pair.answers._by_user)
        self.assertFalse(any(plain_query_key(q) in pair.answers.entries for q in queries))
        for query in queries[:3]:
            self.assertEqual(pair.udp(pair.fast, query), pair.udp(pair.full, query))
        self.assertEqual(pair.answers._by_user["bob"], tuple(plain_query_key(q) for q in queries[:3]))

    def test_out_of_the_collectors_sight(self) -> None:
        """
        Cached answers and a user's few keys are tuples of bytes, numbers
        and text, which the garbage collector stops tracking: 65,536 tracked
        entries made each of its full passes ~11 ms longer at 1M users.
        """
        pair = Pair(self)
        pair.users()
        for name in (f"alice.{SUFFIX}", f"nobody.{SUFFIX}", "home.example.org"):
            pair.same_udp(make_query(1, name, 1, False, None, False, []))
        # A tuple is untracked in a pass that finds its items untracked: the
        # flow inside in one pass, the answer by the next one at the latest.
        gc.collect()
        gc.collect()
        self.assertEqual(len(pair.answers), 3)
        for answer in pair.answers.entries.values():
            self.assertFalse(gc.is_tracked(answer), answer)
        self.assertFalse(gc.is_tracked(pair.answers._by_user["alice"]))

    def test_cache_without_registry(self) -> None:
        cache = AnswerCache(None)
        self.assertIsNone(cache.owner_of(b"x"))
        self.assertTrue(cache.ready())


class FuzzTests(unittest.SynchronousTestCase):
    """A short seeded run of bench/fuzz_fastpath.py: the reader never raises."""

    def test_reader_never_raises(self) -> None:
        plain = 0
        for data in fuzz_inputs(random.Random(17), 20_000):
            if plain_query_key(data) is not None:
                plain += 1
        self.assertGreater(plain, 100)


def _cached_setup(base: Any) -> Any:
    """C{base}'s setUp, then the answer cache attached to its factory."""

    @defer.inlineCallbacks
    def setUp(self: Any) -> Any:
        yield base.setUp(self)
        attach_answer_cache(self.factory, self.service)

    return setUp


for _base in (
    server_tests.AnswerTests,
    server_tests.NegativeTests,
    server_tests.HostZoneTests,
    server_tests.TruncationTests,
    server_tests.RefusalTests,
    server_tests.OpcodeTests,
    server_tests.MalformedTests,
):
    globals()["FastPath" + _base.__name__] = type(
        "FastPath" + _base.__name__,
        (_base,),
        {"setUp": _cached_setup(_base), "__doc__": f"{_base.__name__}, with the answer cache on."},
    )
