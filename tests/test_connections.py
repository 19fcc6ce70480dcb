"""
Bounded connections (L{dyndns_plugin.connections}) on fakes: the limiter's
caps and their release, per-source grouping (IPv4 address, IPv6 /64), the
open-files limit raise and the fitting of the caps under it; the HTTP head
and request deadlines that activity does not reset, the idle timeout, the
head bounds; the DNS-over-TCP message deadline; the GnuDIP request-line
deadline. Time is a C{task.Clock}; transports are C{StringTransport}s.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web import resource, server

from dyndns_plugin import connections
from dyndns_plugin.config import ConfigError, ConnectionSettings, HTTPSettings, settings_from_dict
from dyndns_plugin.connections import (
    ConnectionLimiter,
    build_limiters,
    plan_caps,
    raise_open_files_limit,
    source_key,
)
from dyndns_plugin.dns.server import DynDNSServerFactory
from dyndns_plugin.metrics import Metrics
from dyndns_plugin.web.channel import DynDNSHTTPChannel, LimitedSite


def v4(host: str, port: int = 40000) -> IPv4Address:
    return IPv4Address("TCP", host, port)


def v6(host: str, port: int = 40000) -> IPv6Address:
    return IPv6Address("TCP", host, port)


class AbortTransport(StringTransport):
    """A C{StringTransport} that records an abort (not only a close)."""

    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


class Recorder:
    """A protocol stand-in that records connectionLost calls."""

    def __init__(self) -> None:
        self.lost: list[Any] = []

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.append(reason)


class SourceKeyTests(unittest.SynchronousTestCase):
    def test_ipv4_is_the_address(self) -> None:
        self.assertEqual(source_key("192.0.2.1"), "192.0.2.1")
        self.assertNotEqual(source_key("192.0.2.1"), source_key("192.0.2.2"))

    def test_ipv4_mapped_is_ipv4(self) -> None:
        """A dual-stack listener's ::ffff:a.b.c.d counts as a.b.c.d."""
        self.assertEqual(source_key("::ffff:192.0.2.1"), "192.0.2.1")

    def test_ipv6_grouped_by_64(self) -> None:
        a = source_key("2001:db8:1:2::1")
        self.assertEqual(a, "2001:db8:1:2::/64")
        self.assertEqual(source_key("2001:db8:1:2:ffff:ffff:ffff:ffff"), a)
        self.assertNotEqual(source_key("2001:db8:1:3::1"), a)

    def test_ipv6_prefix_configurable(self) -> None:
        self.assertEqual(source_key("2001:db8:1:2ff::1", 56), "2001:db8:1:200::/56")
        self.assertEqual(source_key("2001:db8:1:2ff::1", 56), source_key("2001:db8:1:200::9", 56))

    def test_scoped_ipv6(self) -> None:
        self.assertEqual(source_key("fe80::1%eth0"), "fe80::/64")

    def test_no_ip(self) -> None:
        """UNIX sockets and odd hosts have no source: only the total cap counts them."""
        self.assertIsNone(source_key(None))
        self.assertIsNone(source_key(""))
        self.assertIsNone(source_key("not-an-address"))


class LimiterTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.limiter = ConnectionLimiter("test", 2, 3, clock=task.Clock())

    def build(self, addr: Any) -> Recorder | None:
        return self.limiter.build(addr, lambda a: Recorder())

    def test_per_source_cap_and_release(self) -> None:
        first = self.build(v4("192.0.2.1"))
        second = self.build(v4("192.0.2.1"))
        self.assertIsNotNone(first)
        self.assertIsNotNone(second)
        self.assertIsNone(self.build(v4("192.0.2.1")))
        self.assertEqual(self.limiter.refused, {"per_source": 1, "total": 0})
        assert first is not None
        first.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(first.lost), 1, "the protocol's own connectionLost still runs")
        self.assertIsNotNone(self.build(v4("192.0.2.1")))
        self.assertIsNone(self.build(v4("192.0.2.1")))

    def test_total_cap(self) -> None:
        for host in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            self.assertIsNotNone(self.build(v4(host)))
        self.assertIsNone(self.build(v4("192.0.2.4")))
        self.assertEqual(self.limiter.refused, {"per_source": 0, "total": 1})
        self.assertEqual(self.limiter.open, 3)

    def test_release_is_idempotent(self) -> None:
        """A second connectionLost (or release) must not free a second place."""
        proto = self.build(v4("192.0.2.1"))
        self.build(v4("192.0.2.1"))
        assert proto is not None
        proto.connectionLost(None)
        proto.connectionLost(None)
        connections.release_connection(proto)
        self.assertEqual(self.limiter.per_source, {"192.0.2.1": 1})
        self.assertEqual(self.limiter.open, 1)

    def test_all_released_leaves_nothing(self) -> None:
        protos = [self.build(v4("192.0.2.1")), self.build(v4("192.0.2.2"))]
        for proto in protos:
            assert proto is not None
            proto.connectionLost(None)
        self.assertEqual(self.limiter.per_source, {})
        self.assertEqual(self.limiter.open, 0)

    def test_ipv6_64_shares_a_cap(self) -> None:
        self.assertIsNotNone(self.build(v6("2001:db8::1")))
        self.assertIsNotNone(self.build(v6("2001:db8::2")))
        self.assertIsNone(self.build(v6("2001:db8::3")))
        self.assertIsNotNone(self.build(v6("2001:db8:0:1::1")))

    def test_unix_peers_only_total(self) -> None:
        for _ in range(3):
            self.assertIsNotNone(self.build(UNIXAddress(b"/tmp/x")))
        self.assertIsNone(self.build(UNIXAddress(b"/tmp/x")))
        self.assertEqual(self.limiter.refused["total"], 1)

    def test_build_none_or_error_gives_place_back(self) -> None:
        self.assertIsNone(self.limiter.build(v4("192.0.2.1"), lambda a: None))

        def fail(addr: Any) -> Any:
            raise RuntimeError("boom")

        self.assertRaises(RuntimeError, self.limiter.build, v4("192.0.2.1"), fail)
        self.assertEqual((self.limiter.open, self.limiter.per_source), (0, {}))

    def test_refusals_logged_as_a_sample(self) -> None:
        """A flood of refusals writes a bounded number of lines."""
        events: list[dict[str, Any]] = []
        self.patch(connections, "log", Logger(observer=events.append))
        limiter = ConnectionLimiter("test", 1, None, clock=task.Clock())
        limiter.acquire(v4("192.0.2.1"))
        for _ in range(1000):
            self.assertIsNone(limiter.acquire(v4("192.0.2.1")))
        self.assertEqual(limiter.refused["per_source"], 1000)
        self.assertLessEqual(len(events), 5)

    def test_metrics(self) -> None:
        metrics = Metrics()
        self.build(v4("192.0.2.1"))
        self.build(v4("192.0.2.1"))
        self.build(v4("192.0.2.1"))
        self.limiter.count_timeout("header_timeout", "192.0.2.1")
        metrics.attach_connections({"test": self.limiter})
        text = metrics.render().decode()
        self.assertIn('dyndns_connections_open{listener="test"} 2.0', text)
        self.assertIn('dyndns_connections_max{listener="test"} 3.0', text)
        self.assertIn(
            'dyndns_connections_refused_total{listener="test",reason="per_source"} 1.0', text
        )
        self.assertIn(
            'dyndns_connections_timed_out_total{listener="test",reason="header_timeout"} 1.0',
            text,
        )


class FakeResource:
    """Stands in for the C{resource} module."""

    RLIMIT_NOFILE = 7
    RLIM_INFINITY = -1

    def __init__(self, soft: int, hard: int, fail: bool = False, max_soft: int | None = None):
        self.limits = (soft, hard)
        self.fail = fail
        self.max_soft = max_soft
        self.calls: list[tuple[int, int]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == self.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        self.calls.append(limits)
        if self.fail:
            raise ValueError("not allowed")
        if self.max_soft is not None and (limits[0] == -1 or limits[0] > self.max_soft):
            raise ValueError("above nr_open")
        self.limits = limits


class OpenFilesTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.patch(connections, "log", Logger(observer=self.events.append))

    def test_raised_to_hard(self) -> None:
        fake = FakeResource(1024, 524288)
        self.assertEqual(raise_open_files_limit(fake), 524288)
        self.assertEqual(fake.limits, (524288, 524288))
        self.assertEqual(len(self.events), 1, "the result is logged once")
        self.assertEqual(self.events[0]["soft"], 524288)
        self.assertEqual(self.events[0]["before"], 1024)

    def test_already_at_hard(self) -> None:
        fake = FakeResource(4096, 4096)
        self.assertEqual(raise_open_files_limit(fake), 4096)
        self.assertEqual(fake.calls, [])

    def test_unlimited_hard(self) -> None:
        """Linux refuses an infinite soft limit above nr_open: 2**20 is tried then."""
        fake = FakeResource(1024, -1, max_soft=1 << 20)
        self.assertEqual(raise_open_files_limit(fake), 1 << 20)
        self.assertEqual(fake.calls, [(-1, -1), (1 << 20, -1)])

    def test_cannot_raise(self) -> None:
        fake = FakeResource(1024, 4096, fail=True)
        self.assertEqual(raise_open_files_limit(fake), 1024)
        self.assertEqual(len(self.events), 2, "one warning, one result")

    def test_current(self) -> None:
        self.assertEqual(connections.current_open_files_limit(FakeResource(900, 4096)), 900)
        self.assertIsNone(connections.current_open_files_limit(FakeResource(-1, -1)))

    def test_caps_that_fit_are_kept(self) -> None:
        wanted = {"http": 100, "gnudip": 50}
        self.assertEqual(plan_caps(wanted, 1024, 128), wanted)
        self.assertEqual(plan_caps(wanted, None, 128), wanted)
        self.assertEqual(self.events, [])

    def test_caps_lowered_with_one_warning(self) -> None:
        caps = plan_caps({"http": 4096, "admin": 64, "gnudip": 1024, "dns_tcp": 1024}, 1024, 140)
        self.assertLessEqual(sum(caps.values()), 1024 - 140)
        self.assertGreater(caps["http"], caps["gnudip"])
        self.assertEqual(caps["gnudip"], caps["dns_tcp"])
        self.assertGreaterEqual(caps["admin"], 1)
        self.assertEqual(len(self.events), 1)
        self.assertEqual(self.events[0]["log_level"].name, "warn")

    def test_build_limiters_fits_the_limit(self) -> None:
        """
        Every TCP listener of the configuration gets a limiter; together
        with the reserve and the listening sockets they fit the limit.
        """
        settings = settings_from_dict({
            "service": {"suffix": "dyn.example.com"},
            "dns": {"listen": ["127.0.0.1:5353"]},
            "http": {"listen": ["tcp:8080:interface=127.0.0.1"]},
            "gnudip": {"listen": ["tcp:3495:interface=127.0.0.1"]},
            "admin": {"listen": ["tcp:8053:interface=127.0.0.1"], "tokens": ["sha256:" + "0" * 64]},
            "connections": {"reserved_files": 100, "http_max_per_source": 5000},
        })
        limiters = build_limiters(settings, 1024, task.Clock())
        self.assertEqual(sorted(limiters), ["admin", "dns_tcp", "gnudip", "http"])
        total = sum(limiter.max_total for limiter in limiters.values())  # type: ignore[misc]
        self.assertLessEqual(total + 100 + 5, 1024)
        self.assertEqual(limiters["gnudip"].max_per_source, 8)
        # a per-source cap above the lowered total is the total
        self.assertEqual(limiters["http"].max_per_source, limiters["http"].max_total)
        roomy = build_limiters(settings, 100000, task.Clock())
        self.assertEqual(roomy["http"].max_total, 4096)
        self.assertEqual(roomy["dns_tcp"].max_per_source, 16)


class ConfigTests(unittest.SynchronousTestCase):
    def load(self, **connections: Any) -> ConnectionSettings:
        return settings_from_dict(
            {"service": {"suffix": "dyn.example.com"}, "connections": connections}
        ).connections

    def test_defaults(self) -> None:
        c = self.load()
        self.assertEqual((c.http_header_timeout, c.http_request_timeout), (10.0, 30.0))
        self.assertEqual((c.dns_tcp_idle_timeout, c.dns_tcp_message_timeout), (30.0, 10.0))
        self.assertEqual(c.gnudip_line_timeout, 10.0)
        self.assertEqual(c.ipv6_prefix, 64)

    def test_values(self) -> None:
        c = self.load(http_header_timeout=1, ipv6_prefix=56, dns_tcp_max_total=10)
        self.assertEqual((c.http_header_timeout, c.ipv6_prefix, c.dns_tcp_max_total), (1.0, 56, 10))

    def test_errors_name_the_key(self) -> None:
        for bad, key in (
            ({"http_header_timeout": 0}, "connections.http_header_timeout"),
            ({"http_max_total": 0}, "connections.http_max_total"),
            ({"ipv6_prefix": 16}, "connections.ipv6_prefix"),
            ({"http_header_timeout": 20, "http_request_timeout": 10},
             "connections.http_request_timeout"),
            ({"max_per_source": 3}, "connections.max_per_source"),
            ({"dns_tcp_idle_timeout": "30"}, "connections.dns_tcp_idle_timeout"),
        ):
            with self.assertRaises(ConfigError) as caught:
                self.load(**bad)
            self.assertEqual(caught.exception.key, key, bad)


# -- HTTP


class Hello(resource.Resource):
    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        request.setHeader(b"content-length", b"2")
        return b"ok"


HEAD = b"GET /x HTTP/1.1\r\nHost: example\r\nUser-Agent: test\r\n\r\n"


class HTTPChannelTests(unittest.SynchronousTestCase):
    """The deadlines of L{DynDNSHTTPChannel} on a StringTransport."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.limiter = ConnectionLimiter("http", 2, 10, clock=self.clock)
        self.site = LimitedSite(Hello(), timeout=30, reactor=self.clock)
        self.site.limit_connections(self.limiter, 10.0, 30.0)

    def connect(self, host: str = "192.0.2.1") -> tuple[Any, AbortTransport]:
        channel = self.site.buildProtocol(v4(host))
        self.assertIsInstance(channel, DynDNSHTTPChannel)
        transport = AbortTransport(peerAddress=v4(host))
        channel.makeConnection(transport)
        return channel, transport

    def drip(self, channel: Any, data: bytes, every: float) -> None:
        for i in range(len(data)):
            channel.dataReceived(data[i:i + 1])
            self.clock.advance(every)

    def test_byte_a_second_dropped_at_10s(self) -> None:
        """One header byte a second: 408 and closed at 10 s, activity or not."""
        channel, transport = self.connect()
        self.drip(channel, HEAD[:9], 1.0)  # 9 bytes, 9 s
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(HEAD[9:10])
        self.clock.advance(1.0)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertEqual(self.limiter.timed_out, {"header_timeout": 1})
        # later bytes are ignored; a client that does not read is aborted soon
        channel.dataReceived(HEAD[10:])
        self.assertNotIn(b"200", transport.value())
        self.assertFalse(transport.aborted)
        self.clock.advance(DynDNSHTTPChannel.abortTimeout)
        self.assertTrue(transport.aborted)

    def test_slower_drip_dropped_too(self) -> None:
        """One byte every 9 s (under any idle timeout): dropped at 10 s all the same."""
        channel, transport = self.connect()
        channel.dataReceived(b"G")
        self.clock.advance(9)
        channel.dataReceived(b"E")
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_silent_connection_dropped_at_head_deadline(self) -> None:
        channel, transport = self.connect()
        self.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_fast_request_answered_and_deadlines_cancelled(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(HEAD)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))
        self.assertTrue(transport.value().endswith(b"ok"))
        # only the idle timeout is left
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting, "the idle timeout between requests")
        self.assertEqual(self.limiter.timed_out, {"idle": 1})

    def test_next_request_has_its_own_deadline(self) -> None:
        """Keep-alive: the second request's head is due 10 s after its first byte."""
        channel, transport = self.connect()
        channel.dataReceived(HEAD)
        self.clock.advance(20)
        transport.clear()
        self.drip(channel, HEAD[:9], 1.0)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1.0)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))

    def test_pipelined_request_has_a_deadline(self) -> None:
        """A request replayed from the buffer after the first gets deadlines too."""
        channel, transport = self.connect()
        channel.dataReceived(HEAD + b"GET /y HTTP/1.1\r\nHo")
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 "), 1)
        self.clock.advance(10)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.limiter.timed_out, {"header_timeout": 1})

    def test_body_deadline(self) -> None:
        """A body a byte a second: the head was in time, the request is not."""
        channel, transport = self.connect()
        channel.dataReceived(b"POST /x HTTP/1.1\r\nHost: e\r\nContent-Length: 100\r\n\r\n")
        self.drip(channel, b"a" * 29, 1.0)
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(b"a")
        self.clock.advance(1.0)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 "))
        self.assertEqual(self.limiter.timed_out, {"request_timeout": 1})

    def test_lost_connection_cancels_everything(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET")
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.limiter.open, 0)

    def test_too_many_headers(self) -> None:
        channel, transport = self.connect()
        headers = b"".join(b"X-%d: 1\r\n" % i for i in range(101))
        channel.dataReceived(b"GET /x HTTP/1.1\r\n" + headers + b"\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))
        self.assertTrue(transport.disconnecting)

    def test_long_header_line(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(b"GET /x HTTP/1.1\r\nX-Long: " + b"a" * 8200 + b"\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertNotIn(b"200", transport.value())

    def test_head_total_size(self) -> None:
        channel, transport = self.connect()
        headers = b"".join(b"X-%d: %s\r\n" % (i, b"a" * 4000) for i in range(5))
        channel.dataReceived(b"GET /x HTTP/1.1\r\n" + headers + b"\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))

    def test_cap_refuses_and_releases(self) -> None:
        first, _ = self.connect()
        self.connect()
        self.assertIsNone(self.site.buildProtocol(v4("192.0.2.1")))
        self.assertIsNotNone(self.site.buildProtocol(v4("192.0.2.2")))
        first.connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(self.site.buildProtocol(v4("192.0.2.1")))

    def test_build_site_uses_config(self) -> None:
        """The public site takes the [connections] caps and deadlines."""
        from dyndns_plugin.service import DynDNSService
        from dyndns_plugin.store.memory import MemoryUserStore
        from dyndns_plugin.web.site import build_site

        service = DynDNSService(MemoryUserStore(), "dyn.example.com", poll_interval=None)
        site: Any = build_site(
            service, HTTPSettings(timeout=7), checker=None,  # type: ignore[arg-type]
            connections=ConnectionSettings(http_header_timeout=3, http_request_timeout=4,
                                           http_max_per_source=1),
        )
        site.reactor = self.clock
        channel = site.buildProtocol(v4("192.0.2.9"))
        self.assertEqual((channel.header_timeout, channel.request_timeout), (3, 4))
        self.assertEqual(channel.timeOut, 7)
        self.assertIsNone(site.buildProtocol(v4("192.0.2.9")))


# -- DNS over TCP


def length_prefixed(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


class DNSStreamTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.factory = DynDNSServerFactory()
        self.factory.limiter = ConnectionLimiter("dns_tcp", 2, 10, clock=self.clock)
        self.factory.tcp_idle_timeout = 30
        self.factory.tcp_message_timeout = 10

    def connect(self, host: str = "192.0.2.1") -> tuple[Any, Any]:
        proto = self.factory.buildProtocol(v4(host))
        self.assertIsNotNone(proto)
        proto.callLater = self.clock.callLater

        transport = AbortTransport(peerAddress=v4(host))
        proto.makeConnection(transport)
        return proto, transport

    def test_slow_message_aborted_at_deadline(self) -> None:
        """The 2-byte length, then one byte a second: aborted at 10 s, not 30."""
        proto, transport = self.connect()
        proto.dataReceived(b"\x00\x20")
        for _ in range(9):
            self.clock.advance(1)
            proto.dataReceived(b"\x00")
        self.assertFalse(transport.aborted)
        self.clock.advance(1)
        self.assertTrue(transport.aborted)
        self.assertEqual(self.factory.limiter.timed_out, {"message_timeout": 1})  # type: ignore[union-attr]

    def test_complete_message_cancels_the_deadline(self) -> None:
        proto, transport = self.connect()
        query = bytes(12)  # a 12-byte header: answered or refused, never waited on
        proto.dataReceived(length_prefixed(query)[:5])
        self.clock.advance(5)
        proto.dataReceived(length_prefixed(query)[5:])
        self.clock.advance(9)
        self.assertFalse(transport.aborted)
        self.assertEqual(self.factory.limiter.timed_out, {})  # type: ignore[union-attr]

    def test_next_partial_message_gets_a_new_deadline(self) -> None:
        """A message completed with the start of the next: the next's deadline starts then."""
        proto, transport = self.connect()
        query = length_prefixed(bytes(12))
        proto.dataReceived(query[:3])
        self.clock.advance(8)
        proto.dataReceived(query[3:] + b"\x00")
        self.clock.advance(9)
        self.assertFalse(transport.aborted)
        self.clock.advance(1)
        self.assertTrue(transport.aborted)

    def test_idle_timeout_configured(self) -> None:
        self.factory.tcp_idle_timeout = 5
        proto, transport = self.connect()
        self.clock.advance(5)
        self.assertTrue(transport.aborted)
        self.assertEqual(self.factory.limiter.timed_out, {"idle": 1})  # type: ignore[union-attr]

    def test_caps(self) -> None:
        first, _ = self.connect()
        self.connect()
        self.assertIsNone(self.factory.buildProtocol(v4("192.0.2.1")))
        first.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.factory.connections, [self.factory.connections[0]])
        self.assertIsNotNone(self.factory.buildProtocol(v4("192.0.2.1")))

    def test_lost_cancels_message_deadline(self) -> None:
        proto, transport = self.connect()
        proto.dataReceived(b"\x00")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])


# -- GnuDIP


class GnuDIPLineTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        from dyndns_plugin.protocols.gnudip import GnuDIPFactory
        from dyndns_plugin.service import DynDNSService
        from dyndns_plugin.store.memory import MemoryUserStore

        self.clock = task.Clock()
        service = DynDNSService(MemoryUserStore(), "dyn.example.com", poll_interval=None,
                                clock=self.clock)
        self.limiter = ConnectionLimiter("gnudip", 2, 3, clock=self.clock)
        self.factory = GnuDIPFactory(
            service, None, timeout=30, line_timeout=10, limiter=self.limiter,
            salt_source=lambda: "XLCDgXvzSo",
        )

    def connect(self, host: str = "192.0.2.1") -> tuple[Any, Any]:
        proto: Any = self.factory.buildProtocol(v4(host))
        self.assertIsNotNone(proto)
        proto.callLater = self.clock.callLater

        transport = AbortTransport(peerAddress=v4(host))
        proto.makeConnection(transport)
        return proto, transport

    def test_no_line_aborted_at_line_timeout(self) -> None:
        proto, transport = self.connect()
        proto.dataReceived(b"alice:")
        self.clock.advance(9.9)
        self.assertFalse(transport.aborted)
        self.clock.advance(0.1)
        self.assertTrue(transport.aborted)
        self.assertEqual(self.limiter.timed_out, {"line_timeout": 1})

    def test_line_in_time_then_whole_timeout(self) -> None:
        """After the line, the reply and close may take until the 30 s deadline."""
        proto, transport = self.connect()
        proto._answered = True  # as lineReceived marks it (the reply is pending)
        self.clock.advance(10)
        self.assertFalse(transport.aborted)
        self.clock.advance(19.9)
        self.assertFalse(transport.aborted)
        self.clock.advance(0.1)
        self.assertTrue(transport.aborted)
        self.assertEqual(self.limiter.timed_out, {"timeout": 1})

    def test_over_cap_refused_before_salt(self) -> None:
        """The third connection from one address gets no protocol (closed at once)."""
        self.connect()
        self.connect()
        self.assertIsNone(self.factory.buildProtocol(v4("192.0.2.1")))
        self.connect("192.0.2.2")
        self.assertIsNone(self.factory.buildProtocol(v4("192.0.2.3")))
        self.assertEqual(self.limiter.refused, {"per_source": 1, "total": 1})
