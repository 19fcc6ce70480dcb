"""
Prometheus metrics (L{dyndns_plugin.metrics}): the counters move with real
updates through the real service and real adapters (HTTP site, GnuDIP TCP,
TSIG UPDATE handler), DNS answers over real UDP and TCP sockets are counted
by RCODE, the gauges follow the registry, and C{/metrics} serves text that
C{prometheus_client}'s own parser reads.

Every check parses the exposition text (L{scrape}) rather than reading the
counter objects, so what is tested is what Prometheus would see.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
import struct
import time
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor, task, threads
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.web import server

from dyndns_plugin.auth import PasswordChecker
from dyndns_plugin.config import HTTPSettings
from dyndns_plugin.dns.resolver import DynDNSResolver
from dyndns_plugin.dns.server import DynDNSServerFactory
from dyndns_plugin.dns.zones import StaticZone
from dyndns_plugin.metrics import Metrics, MetricsResource
from dyndns_plugin.model import HostState, UpdateStatus, User
from dyndns_plugin.passwords import gnudip_hash, md5_verifier
from dyndns_plugin.protocols.dns_update import UpdateHandler
from dyndns_plugin.protocols.gnudip import GnuDIPFactory, GnuDIPProtocol
from dyndns_plugin.protocols.gnudip_http import SaltSigner
from dyndns_plugin.replication.publisher import ZonePublisher
from dyndns_plugin.replication.transfer import TransferHandler
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store import ANY_STATE
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.web.common import DynDNSRequest
from tests.dns_helpers import example_suffix_zone, serve_dns
from tests.typing_helpers import TestCaseMixin, listen_tcp, port_number
from tests.web_helpers import (
    PASSWORDS,
    WebTestCase,
    build_request,
    exchange,
    parse_response,
)

SUFFIX = "dyn.example.com"
HOST = "127.0.0.1"
TIMEOUT = 3.0
TSIG_SECRET = base64.b64encode(b"k" * 32).decode("ascii")


def scrape(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition text: (name, labels) -> value."""
    text = metrics.render().decode("utf-8")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return scrape(metrics).get((name, frozenset(labels.items())))


def updates(metrics: Metrics, method: str, result: str) -> float | None:
    return value(metrics, "dyndns_updates_total", method=method, result=result)


def auth_failures(metrics: Metrics, method: str) -> float | None:
    return value(metrics, "dyndns_auth_failures_total", method=method)


def make_zone(serial: int = 2024010101) -> StaticZone:
    return example_suffix_zone(serial)


class SlowStore(MemoryUserStore):
    """A memory store whose C{save_state} fires when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[defer.Deferred[None]] = []
        self.fail_next = False
        self.fail_polls = False

    def save_state(self, state: Any, expected: Any = ANY_STATE) -> defer.Deferred[None]:
        saved = super().save_state(state, expected)
        gate: defer.Deferred[None] = defer.Deferred()
        self.pending.append(gate)
        if self.fail_next:
            self.fail_next = False
            gate.addCallback(lambda _: defer.fail(OSError("disk full")))
        else:
            gate.addCallback(lambda _: saved)
        return gate

    def changes_since(self, generation: int) -> Any:
        if self.fail_polls:
            return defer.fail(OSError("database is locked"))
        return super().changes_since(generation)

    def release(self) -> None:
        pending, self.pending = self.pending, []
        for gate in pending:
            gate.callback(None)


# -- the service's write path


class ServiceMetricsTests(unittest.SynchronousTestCase):
    """A started service on a clock and a memory store, with L{Metrics} attached."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.store = SlowStore()
        self.service = DynDNSService(self.store, SUFFIX, clock=self.clock, poll_interval=None)
        self.successResultOf(defer.ensureDeferred(self.service.start()))
        self.add(User("alice"), User("bob"), User("carol"), User("dave"))
        self.metrics = Metrics()
        self.metrics.attach(self.service)

    def add(self, *users: User) -> None:
        for user in users:
            self.successResultOf(self.service.add_user(user))

    def run_write(self, d: defer.Deferred[Any]) -> Any:
        self.store.release()
        return self.successResultOf(d)

    def test_update_results_by_method_and_result(self) -> None:
        """Each write's result is counted under the method the caller gave."""
        address = [ipaddress.ip_address("203.0.113.5")]
        self.assertEqual(
            self.run_write(self.service.update("alice", address, None, "http-url")).status, UpdateStatus.GOOD
        )
        self.assertEqual(
            self.run_write(self.service.update("alice", address, None, "http-url")).status, UpdateStatus.NOCHG
        )
        self.run_write(self.service.update("alice", address, None, "dyndns2"))
        self.run_write(self.service.update("nobody", address, None, "dyndns2"))
        self.run_write(self.service.update("alice", [], None, "gnudip-tcp"))
        self.assertEqual(updates(self.metrics, "http-url", "good"), 1)
        self.assertEqual(updates(self.metrics, "http-url", "nochg"), 1)
        self.assertEqual(updates(self.metrics, "dyndns2", "nochg"), 1)
        self.assertEqual(updates(self.metrics, "dyndns2", "nohost"), 1)
        self.assertEqual(updates(self.metrics, "gnudip-tcp", "badaddress"), 1)
        self.assertIsNone(updates(self.metrics, "dyndns2", "good"))

    def test_set_offline_and_set_addresses(self) -> None:
        """
        C{set_offline} and C{set_addresses} are counted too; C{set_addresses}
        without addresses (it delegates to C{set_offline}) is counted once.
        """
        v4 = ipaddress.IPv4Address("198.51.100.7")
        self.run_write(self.service.set_addresses("bob", v4, None, 60, "dns-update"))
        self.run_write(self.service.set_addresses("bob", None, None, None, "dns-update"))
        self.run_write(self.service.set_offline("bob", "gnudip-http"))
        self.assertEqual(updates(self.metrics, "dns-update", "good"), 2)
        self.assertEqual(updates(self.metrics, "gnudip-http", "nochg"), 1)
        self.assertTrue(self.service.registry.states["bob"].offline)

    def test_disabled_user(self) -> None:
        self.successResultOf(self.service.set_disabled("carol", True))
        result = self.run_write(self.service.set_offline("carol", "http-basic"))
        self.assertEqual(result.status, UpdateStatus.DISABLED)
        self.assertEqual(updates(self.metrics, "http-basic", "disabled"), 1)

    def test_store_failure(self) -> None:
        """A write the store refused is counted as 911 and has no duration."""
        self.store.fail_next = True
        result = self.run_write(self.service.update("alice", [ipaddress.ip_address("192.0.2.1")], None, "dyndns2"))
        self.assertEqual(result.status, UpdateStatus.STORE_FAILED)
        self.flushLoggedErrors(OSError)
        self.assertEqual(updates(self.metrics, "dyndns2", "911"), 1)
        self.assertIsNone(value(self.metrics, "dyndns_update_duration_seconds_count", method="dyndns2"))

    def test_store_errors(self) -> None:
        """
        A write the store refused and a poll the store failed are each
        counted under their operation; both series exist at 0 before any
        failure, and successful writes and polls count nothing.
        """

        def errors() -> dict[str, float | None]:
            return {op: value(self.metrics, "dyndns_store_errors_total", operation=op) for op in ("write", "poll")}

        self.assertEqual(errors(), {"write": 0, "poll": 0})
        self.run_write(self.service.update("alice", [ipaddress.ip_address("192.0.2.1")], None, "dyndns2"))
        self.successResultOf(defer.ensureDeferred(self.service.poll()))
        self.assertEqual(errors(), {"write": 0, "poll": 0})
        self.store.fail_next = True
        result = self.run_write(self.service.update("alice", [ipaddress.ip_address("192.0.2.2")], None, "dyndns2"))
        self.assertEqual(result.status, UpdateStatus.STORE_FAILED)
        self.assertEqual(errors(), {"write": 1, "poll": 0})
        self.store.fail_polls = True
        self.successResultOf(defer.ensureDeferred(self.service.poll()))
        self.successResultOf(defer.ensureDeferred(self.service.poll()))
        self.assertEqual(errors(), {"write": 1, "poll": 2})
        # the write's failure, and the outage's first failed poll only (not one per poll_interval)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)

    def test_duration_until_durable(self) -> None:
        """
        The histogram observes the time from the call until the store's
        Deferred fired (on the service's clock), for writes that reached the
        store; NOCHG answers, which write nothing, are not observed.
        """
        address = [ipaddress.ip_address("203.0.113.5")]
        d = self.service.update("alice", address, None, "dyndns2")
        self.assertNoResult(d)
        self.clock.advance(0.25)
        self.store.release()
        self.assertEqual(self.successResultOf(d).status, UpdateStatus.GOOD)
        self.run_write(self.service.update("alice", address, None, "dyndns2"))  # nochg
        name = "dyndns_update_duration_seconds"
        self.assertEqual(value(self.metrics, f"{name}_count", method="dyndns2"), 1)
        self.assertAlmostEqual(value(self.metrics, f"{name}_sum", method="dyndns2"), 0.25)
        self.assertEqual(value(self.metrics, f"{name}_bucket", method="dyndns2", le="0.25"), 1)
        self.assertEqual(value(self.metrics, f"{name}_bucket", method="dyndns2", le="0.1"), 0)

    def test_duration_includes_waiting_for_earlier_write(self) -> None:
        """A write queued behind another one of the same user waits too."""
        first = self.service.update("dave", [ipaddress.ip_address("192.0.2.1")], None, "a")
        second = self.service.update("dave", [ipaddress.ip_address("192.0.2.2")], None, "b")
        self.clock.advance(1.0)
        self.store.release()  # the first write; the second then reaches the store
        self.clock.advance(0.5)
        self.store.release()
        self.assertEqual(self.successResultOf(first).status, UpdateStatus.GOOD)
        self.assertEqual(self.successResultOf(second).status, UpdateStatus.GOOD)
        name = "dyndns_update_duration_seconds_sum"
        self.assertAlmostEqual(value(self.metrics, name, method="a"), 1.0)
        self.assertAlmostEqual(value(self.metrics, name, method="b"), 1.5)

    def test_broken_hook_does_not_break_the_write(self) -> None:
        def broken(*args: object) -> None:
            raise RuntimeError("hook bug")

        self.service.on_update_result.insert(0, broken)
        self.service.on_auth_failure.insert(0, broken)
        result = self.run_write(self.service.update("alice", [ipaddress.ip_address("192.0.2.9")], None, "dyndns2"))
        self.service.auth_failed("dyndns2")
        self.assertEqual(result.status, UpdateStatus.GOOD)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertEqual(updates(self.metrics, "dyndns2", "good"), 1)
        self.assertEqual(auth_failures(self.metrics, "dyndns2"), 1)

    def test_users_gauge(self) -> None:
        """Users by state, computed from the registry at each scrape."""

        def states() -> dict[str, float | None]:
            samples = scrape(self.metrics)
            return {
                s: samples.get(("dyndns_users", frozenset({("state", s)})))
                for s in ("online", "offline", "never", "disabled")
            }

        self.assertEqual(states(), {"online": 0, "offline": 0, "never": 4, "disabled": 0})
        self.run_write(self.service.update("alice", [ipaddress.ip_address("192.0.2.1")]))
        self.run_write(self.service.update("bob", [ipaddress.ip_address("192.0.2.2")]))
        self.run_write(self.service.set_offline("bob"))
        self.successResultOf(self.service.set_disabled("carol", True))  # never updated
        self.assertEqual(states(), {"online": 1, "offline": 1, "never": 1, "disabled": 1})
        # A disabled user counts as disabled only, whatever its last state.
        self.run_write(self.service.update("dave", [ipaddress.ip_address("192.0.2.3")]))
        self.assertEqual(states(), {"online": 2, "offline": 1, "never": 0, "disabled": 1})
        self.successResultOf(self.service.set_disabled("dave", True))
        self.successResultOf(self.service.set_disabled("bob", True))
        self.assertEqual(states(), {"online": 1, "offline": 0, "never": 0, "disabled": 3})
        self.successResultOf(self.service.set_disabled("bob", False))
        self.add(User("erin"))
        self.successResultOf(self.service.remove_user("alice"))
        self.assertEqual(states(), {"online": 0, "offline": 1, "never": 1, "disabled": 2})

    def test_auth_failures_start_at_zero(self) -> None:
        """The client methods' series exist before the first failure."""
        for method in ("http-url", "http-basic", "dyndns2", "gnudip-tcp", "gnudip-http", "dns-update"):
            self.assertEqual(auth_failures(self.metrics, method), 0, method)
        self.service.auth_failed("admin")
        self.assertEqual(auth_failures(self.metrics, "admin"), 1)

    def test_own_registry(self) -> None:
        """
        Each L{Metrics} has its own registry: two in one process do not
        collide, and nothing lands in the process-wide one.
        """
        other = Metrics()
        other.attach(self.service)
        self.service.auth_failed("dyndns2")
        self.assertEqual(auth_failures(self.metrics, "dyndns2"), 1)
        self.assertEqual(auth_failures(other, "dyndns2"), 1)
        self.assertIsNot(other.registry, self.metrics.registry)
        self.assertIsNone(REGISTRY.get_sample_value("dyndns_auth_failures_total", {"method": "dyndns2"}))


class ZoneSerialTests(unittest.SynchronousTestCase):
    def test_zone_serial_follows_the_publisher(self) -> None:
        clock = task.Clock()
        clock.advance(1_700_000_000)
        service = DynDNSService(MemoryUserStore(), SUFFIX, clock=clock, poll_interval=None)
        publisher = ZonePublisher(service, [make_zone(2024010101)])
        self.successResultOf(defer.ensureDeferred(service.start()))
        metrics = Metrics()
        metrics.attach(service, publisher=publisher)
        before = value(metrics, "dyndns_zone_serial", zone=SUFFIX)
        self.assertEqual(before, publisher.zones[0].serial)
        self.successResultOf(service.add_user(User("alice")))
        self.successResultOf(service.update("alice", [ipaddress.ip_address("192.0.2.1")]))
        clock.advance(10)
        self.successResultOf(publisher.flush())
        after = value(metrics, "dyndns_zone_serial", zone=SUFFIX)
        self.assertEqual(after, publisher.zones[0].serial)
        assert after is not None and before is not None
        self.assertGreater(after, before)

    def test_no_publisher_no_zone_metric(self) -> None:
        names = {name for name, _ in scrape(Metrics())}
        self.assertNotIn("dyndns_zone_serial", names)


# -- auth failures through the real adapters


class TSIGAuthFailureTests(unittest.SynchronousTestCase):
    """The UPDATE handler reports BADKEY, BADSIG and BADTIME, not successes."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(int(time.time()))
        self.service = DynDNSService(MemoryUserStore(), SUFFIX, clock=self.clock, poll_interval=None)
        self.successResultOf(defer.ensureDeferred(self.service.start()))
        self.successResultOf(
            self.service.add_user(User("alice", tsig_secret=TSIG_SECRET, tsig_algorithm="hmac-sha256"))
        )
        self.handler = UpdateHandler(self.service, [], clock=self.clock)
        self.metrics = Metrics()
        self.metrics.attach(self.service)

    def send(self, key_name: str, secret: str, address: str = "192.0.2.1") -> int:
        message = dns.update.UpdateMessage(f"{SUFFIX}.")
        message.replace(f"alice.{SUFFIX}.", 60, "A", address)
        keyring = dns.tsigkeyring.from_text({key_name: secret})
        message.use_tsig(keyring, keyname=key_name, algorithm="hmac-sha256")
        reply = self.successResultOf(
            defer.ensureDeferred(self.handler.handle_update_wire(message.to_wire(), "192.0.2.100"))
        )
        assert reply is not None
        return struct.unpack("!H", reply[2:4])[0] & 0xF

    def test_bad_key(self) -> None:
        self.assertEqual(self.send(f"mallory.{SUFFIX}.", TSIG_SECRET), dns.rcode.NOTAUTH)
        self.assertEqual(auth_failures(self.metrics, "dns-update"), 1)

    def test_bad_signature(self) -> None:
        wrong = base64.b64encode(b"w" * 32).decode("ascii")
        self.assertEqual(self.send(f"alice.{SUFFIX}.", wrong), dns.rcode.NOTAUTH)
        self.assertEqual(auth_failures(self.metrics, "dns-update"), 1)

    def test_bad_time(self) -> None:
        self.clock.advance(3600)
        self.assertEqual(self.send(f"alice.{SUFFIX}.", TSIG_SECRET), dns.rcode.NOTAUTH)
        self.assertEqual(auth_failures(self.metrics, "dns-update"), 1)

    def test_replay(self) -> None:
        """A message signed before the last accepted one is a replay (BADTIME)."""
        from tests.test_dns_update import make_key, sign_at

        key = make_key(f"alice.{SUFFIX}.", TSIG_SECRET)
        now = int(self.clock.seconds())
        for signed_at, address, rcode in (
            (now, "192.0.2.1", dns.rcode.NOERROR),
            (now - 10, "192.0.2.2", dns.rcode.NOTAUTH),
        ):
            message = dns.update.UpdateMessage(f"{SUFFIX}.")
            message.replace(f"alice.{SUFFIX}.", 60, "A", address)
            reply = self.successResultOf(
                defer.ensureDeferred(self.handler.handle_update_wire(sign_at(message, key, signed_at), None))
            )
            assert reply is not None
            self.assertEqual(struct.unpack("!H", reply[2:4])[0] & 0xF, rcode)
        self.assertEqual(auth_failures(self.metrics, "dns-update"), 1)
        self.assertEqual(updates(self.metrics, "dns-update", "good"), 1)

    def test_good_update_is_an_update_not_a_failure(self) -> None:
        self.assertEqual(self.send(f"alice.{SUFFIX}.", TSIG_SECRET), dns.rcode.NOERROR)
        self.assertEqual(auth_failures(self.metrics, "dns-update"), 0)
        self.assertEqual(updates(self.metrics, "dns-update", "good"), 1)


class GnuDIPTCPAuthFailureTests(unittest.SynchronousTestCase):
    """The GnuDIP TCP protocol on a C{StringTransport}."""

    SALT = "abcdefghij"

    def setUp(self) -> None:
        self.service = DynDNSService(MemoryUserStore(), SUFFIX, poll_interval=None)
        self.successResultOf(defer.ensureDeferred(self.service.start()))
        for user in (
            User("alice", md5_verifier=md5_verifier("s3cret")),
            User("carol", md5_verifier=md5_verifier("carol-pw"), disabled=True),
        ):
            self.successResultOf(self.service.add_user(user))
        checker = PasswordChecker(self.service.registry.users)
        self.factory = GnuDIPFactory(self.service, checker, salt_source=lambda: self.SALT)
        self.metrics = Metrics()
        self.metrics.attach(self.service)

    def ask(self, user: str, password: str) -> bytes:
        proto = self.factory.buildProtocol(None)
        assert proto is not None
        assert isinstance(proto, GnuDIPProtocol)
        transport = StringTransport()
        # TimeoutMixin types callLater as a two-argument callable, the clock's takes more
        proto.callLater = task.Clock().callLater  # type: ignore[method-assign,assignment]
        proto.makeConnection(transport)
        line = f"{user}:{gnudip_hash(md5_verifier(password), self.SALT)}:{SUFFIX}:0:192.0.2.7\n"
        proto.dataReceived(line.encode("ascii"))
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(None)
        return transport.value().split(b"\n", 1)[1]

    def test_wrong_password(self) -> None:
        self.assertEqual(self.ask("alice", "wrong"), b"1\n")
        self.assertEqual(auth_failures(self.metrics, "gnudip-tcp"), 1)

    def test_unknown_user(self) -> None:
        self.assertEqual(self.ask("mallory", "s3cret"), b"1\n")
        self.assertEqual(auth_failures(self.metrics, "gnudip-tcp"), 1)

    def test_disabled_user_is_not_an_auth_failure(self) -> None:
        """The right credentials of a disabled account are not a failed login."""
        self.assertEqual(self.ask("carol", "carol-pw"), b"1\n")
        self.assertEqual(auth_failures(self.metrics, "gnudip-tcp"), 0)

    def test_success(self) -> None:
        self.assertEqual(self.ask("alice", "s3cret"), b"0\n")
        self.assertEqual(auth_failures(self.metrics, "gnudip-tcp"), 0)
        self.assertEqual(updates(self.metrics, "gnudip-tcp", "good"), 1)


class HTTPAuthFailureTests(WebTestCase):
    """The real site on a TCP port (users from L{tests.web_helpers})."""

    def setUp(self) -> Any:
        d = super().setUp()
        self.metrics = Metrics()
        self.metrics.attach(self.service)
        return d

    def start_site(self, settings: HTTPSettings) -> None:
        self.signer = SaltSigner(os.urandom(32), reactor, 60)  # type: ignore[arg-type]
        from dyndns_plugin.web.site import build_site

        self.site = build_site(self.service, settings, self.checker, self.signer)
        self.port = listen_tcp(self.site, HOST)
        self.addCleanup(self.port.stopListening)
        self.port_number = port_number(self.port)

    @defer.inlineCallbacks
    def test_url_auth(self):
        response = yield self.request("/dyndns/ddns?user=alice&pw=wrong&ip=192.0.2.1")
        self.assertIn(b"Incorrect user ID or password", response.body)
        self.assertEqual(auth_failures(self.metrics, "http-url"), 1)
        response = yield self.request(f"/dyndns/ddns?user=alice&pw={PASSWORDS['alice']}&ip=192.0.2.1")
        self.assertEqual(response.header("x-dyndns-result"), "OK")
        self.assertEqual(auth_failures(self.metrics, "http-url"), 1)
        self.assertEqual(updates(self.metrics, "http-url", "good"), 1)

    @defer.inlineCallbacks
    def test_basic_auth(self):
        response = yield self.request("/dyndns/ddns?ip=192.0.2.1", auth=("bob", "wrong"))
        self.assertEqual(response.status, 401)
        self.assertEqual(auth_failures(self.metrics, "http-basic"), 1)
        # No credentials at all is the challenge, not a failed login.
        response = yield self.request("/dyndns/ddns?ip=192.0.2.1")
        self.assertEqual(response.status, 401)
        self.assertEqual(auth_failures(self.metrics, "http-basic"), 1)

    @defer.inlineCallbacks
    def test_nic_update(self):
        response = yield self.request("/nic/update?myip=192.0.2.1", auth=("alice", "wrong"))
        self.assertEqual(response.text, "badauth\n")
        self.assertEqual(auth_failures(self.metrics, "dyndns2"), 1)
        # carol is disabled: badauth, but her password was right.
        response = yield self.request("/nic/update?myip=192.0.2.1", auth=("carol", PASSWORDS["carol"]))
        self.assertEqual(response.text, "badauth\n")
        self.assertEqual(auth_failures(self.metrics, "dyndns2"), 1)
        response = yield self.request("/nic/update?myip=192.0.2.1", auth=("alice", PASSWORDS["alice"]))
        self.assertEqual(response.text, "good 192.0.2.1\n")
        self.assertEqual(updates(self.metrics, "dyndns2", "good"), 1)

    @defer.inlineCallbacks
    def test_gnudip_http(self):
        """A forged salt signature and a wrong hash are both failed logins."""
        salt, issued, sign = self.signer.issue()
        base = f"/dyndns/gnudip?salt={salt}&time={issued}&user=alice&domn={SUFFIX}&reqc=0&addr=192.0.2.1"
        response = yield self.request(f"{base}&sign={'0' * 32}&pass={'0' * 32}")
        self.assertIn(b'content="1"', response.body)
        self.assertEqual(auth_failures(self.metrics, "gnudip-http"), 1)
        response = yield self.request(f"{base}&sign={sign}&pass={'0' * 32}")
        self.assertIn(b'content="1"', response.body)
        self.assertEqual(auth_failures(self.metrics, "gnudip-http"), 2)


# -- DNS answers over real sockets


class DNSServerMixin(TestCaseMixin):
    """
    A real DNS server on 127.0.0.1 (UDP and TCP) for the suffix zone with
    alice online (unless the service is not started); dnspython queries from
    a thread.
    """

    start_service = True

    @defer.inlineCallbacks
    def setUp(self):
        self.service = DynDNSService(MemoryUserStore(), SUFFIX, poll_interval=None)
        if self.start_service:
            yield defer.ensureDeferred(self.service.start())
            yield self.service.add_user(User("alice"))
            yield self.service.update("alice", [ipaddress.ip_address("203.0.113.5")])
        self.factory = DynDNSServerFactory(DynDNSResolver(self.service.registry), [make_zone()])
        self.metrics = Metrics()
        self.metrics.attach(self.service, self.factory)
        self.port = serve_dns(self, self.factory, HOST)

    def udp(self, name: str, rdtype: str = "A") -> defer.Deferred[Any]:
        return threads.deferToThread(
            dns.query.udp,
            dns.message.make_query(name, rdtype),
            HOST,
            timeout=TIMEOUT,
            port=self.port,
        )

    def raw_udp(self, data: bytes) -> defer.Deferred[bytes]:
        def ask() -> bytes:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(TIMEOUT)
                s.sendto(data, (HOST, self.port))
                return s.recv(65535)

        return threads.deferToThread(ask)

    def raw_tcp(self, data: bytes) -> defer.Deferred[bytes]:
        def ask() -> bytes:
            with socket.create_connection((HOST, self.port), timeout=TIMEOUT) as s:
                s.sendall(struct.pack("!H", len(data)) + data)
                reply = b""
                while len(reply) < 2 or len(reply) < 2 + struct.unpack("!H", reply[:2])[0]:
                    chunk = s.recv(65535)
                    if not chunk:
                        break
                    reply += chunk
                return reply[2:]

        return threads.deferToThread(ask)

    def queries(self) -> dict[str, float]:
        return {
            dict(labels)["result"]: v
            for (name, labels), v in scrape(self.metrics).items()
            if name == "dyndns_dns_queries_total"
        }


class DNSQueryMetricsTests(DNSServerMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def test_rcodes_over_udp(self):
        self.assertEqual(
            self.queries(),
            {"NOERROR": 0, "FORMERR": 0, "SERVFAIL": 0, "NXDOMAIN": 0, "NOTIMP": 0, "REFUSED": 0},
        )
        response = yield self.udp(f"alice.{SUFFIX}")
        self.assertEqual(response.rcode(), dns.rcode.NOERROR)
        yield self.udp(f"alice.{SUFFIX}", "AAAA")  # NODATA is NOERROR
        response = yield self.udp(f"nobody.{SUFFIX}")
        self.assertEqual(response.rcode(), dns.rcode.NXDOMAIN)
        response = yield self.udp("www.example.net")
        self.assertEqual(response.rcode(), dns.rcode.REFUSED)
        counts = self.queries()
        self.assertEqual(counts["NOERROR"], 2)
        self.assertEqual(counts["NXDOMAIN"], 1)
        self.assertEqual(counts["REFUSED"], 1)
        self.assertEqual(counts["FORMERR"], 0)

    @defer.inlineCallbacks
    def test_formerr(self):
        """
        FORMERR is counted both where Twisted cannot decode the message (a
        compression loop: answered as raw bytes, over UDP and TCP) and where
        the decoded message is wrong (no question: through C{sendReply}).
        """
        loop = struct.pack("!HHHHHH", 0x4242, 0, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
        reply = yield self.raw_udp(loop)
        self.assertEqual(reply[3] & 0xF, dns.rcode.FORMERR)
        self.assertEqual(self.queries()["FORMERR"], 1)
        reply = yield self.raw_tcp(loop)
        self.assertEqual(reply[3] & 0xF, dns.rcode.FORMERR)
        self.assertEqual(self.queries()["FORMERR"], 2)
        no_question = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
        reply = yield self.raw_udp(no_question)
        self.assertEqual(reply[3] & 0xF, dns.rcode.FORMERR)
        self.assertEqual(self.queries()["FORMERR"], 3)

    @defer.inlineCallbacks
    def test_verbose_factory(self):
        """A verbose factory (Twisted's logging C{sendReply}) counts too."""
        self.factory.verbose = 2
        response = yield self.udp(f"alice.{SUFFIX}")
        self.assertEqual(response.rcode(), dns.rcode.NOERROR)
        self.assertEqual(self.queries()["NOERROR"], 1)

    @defer.inlineCallbacks
    def test_tcp(self):
        query = dns.message.make_query(f"alice.{SUFFIX}", "A")
        response = yield threads.deferToThread(dns.query.tcp, query, HOST, timeout=TIMEOUT, port=self.port)
        self.assertEqual(response.rcode(), dns.rcode.NOERROR)
        self.assertEqual(self.queries()["NOERROR"], 1)

    @defer.inlineCallbacks
    def test_notimp_and_update_not_counted(self):
        """
        An inverse query is NOTIMP; an UPDATE (here not accepted: NOTIMP
        too) is an update, not a query, and is not counted here.
        """
        iquery = struct.pack("!HHHHHH", 7, 1 << 11, 0, 0, 0, 0)
        reply = yield self.raw_udp(iquery)
        self.assertEqual(reply[3] & 0xF, dns.rcode.NOTIMP)
        update = dns.update.UpdateMessage(f"{SUFFIX}.")
        update.replace(f"alice.{SUFFIX}.", 60, "A", "192.0.2.1")
        reply = yield self.raw_udp(update.to_wire())
        self.assertEqual(reply[3] & 0xF, dns.rcode.NOTIMP)
        self.assertEqual(self.queries()["NOTIMP"], 1)


class DNSQueryNotReadyTests(DNSServerMixin, unittest.TestCase):
    """Before the store is loaded every lookup is SERVFAIL."""

    start_service = False

    @defer.inlineCallbacks
    def test_servfail(self):
        response = yield self.udp(f"alice.{SUFFIX}")
        self.assertEqual(response.rcode(), dns.rcode.SERVFAIL)
        self.assertEqual(self.queries()["SERVFAIL"], 1)


class TransferMetricsTests(unittest.TestCase):
    """
    Zone transfer requests (taken as raw bytes by the transfer handler) are
    answers too: one per request, however many messages an AXFR takes.
    """

    USERS = 1500  # about 50 KB of A records: an AXFR of several messages

    @defer.inlineCallbacks
    def setUp(self):
        self.service = DynDNSService(MemoryUserStore(), SUFFIX, poll_interval=None)
        publisher = ZonePublisher(self.service, [make_zone()])
        yield defer.ensureDeferred(self.service.start())
        yield self.service.import_users(
            [User(f"user{i}") for i in range(self.USERS)],
            [HostState(f"user{i}", ipv4=ipaddress.IPv4Address(0x0A000000 + i), ttl=60) for i in range(self.USERS)],
        )
        yield defer.ensureDeferred(publisher.publish_pending())  # 1,500 names: published over several turns
        self.handler = TransferHandler(publisher, [ipaddress.ip_network("127.0.0.0/8")])
        self.factory = DynDNSServerFactory(
            DynDNSResolver(self.service.registry), [make_zone()], transfer_handler=self.handler
        )
        self.metrics = Metrics()
        self.metrics.attach(self.service, self.factory, publisher)
        self.port = serve_dns(self, self.factory, HOST)

    @defer.inlineCallbacks
    def test_axfr_counted_once(self):
        def transfer() -> int:
            xfr = dns.query.xfr(HOST, f"{SUFFIX}.", port=self.port, timeout=TIMEOUT, lifetime=TIMEOUT)
            return sum(1 for _ in xfr)

        messages = yield threads.deferToThread(transfer)
        self.assertGreater(messages, 1)
        self.assertEqual(self.handler.transfers, 1)
        samples = scrape(self.metrics)
        self.assertEqual(samples[("dyndns_dns_queries_total", frozenset({("result", "NOERROR")}))], 1)
        self.assertEqual(samples[("dyndns_users", frozenset({("state", "online")}))], self.USERS)

    @defer.inlineCallbacks
    def test_axfr_over_udp_refused(self):
        def ask() -> bytes:
            query = dns.message.make_query(f"{SUFFIX}.", "AXFR").to_wire()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(TIMEOUT)
                s.sendto(query, (HOST, self.port))
                return s.recv(65535)

        reply = yield threads.deferToThread(ask)
        self.assertEqual(reply[3] & 0xF, dns.rcode.REFUSED)
        samples = scrape(self.metrics)
        self.assertEqual(samples[("dyndns_dns_queries_total", frozenset({("result", "REFUSED")}))], 1)


# -- the resource


class MetricsResourceTests(unittest.TestCase):
    """C{MetricsResource} on a real site with our request rules."""

    def setUp(self) -> None:
        self.metrics = Metrics()
        self.metrics.auth_failed("dyndns2")
        self.metrics.count_reply(3)
        site = server.Site(MetricsResource(self.metrics), requestFactory=DynDNSRequest)
        port = listen_tcp(site, HOST)
        self.addCleanup(port.stopListening)
        self.port = port_number(port)

    def send(self, method: str, body: bytes | None = None) -> defer.Deferred[Any]:
        data = build_request(method, "/metrics", body=body)
        return threads.deferToThread(exchange, self.port, data).addCallback(parse_response)

    @defer.inlineCallbacks
    def test_get(self):
        response = yield self.send("GET")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-type"), CONTENT_TYPE_LATEST)
        self.assertEqual(int(response.header("content-length")), len(response.body))
        families = {f.name: f for f in text_string_to_metric_families(response.body.decode("utf-8"))}
        for name in (
            "dyndns_updates",
            "dyndns_auth_failures",
            "dyndns_dns_queries",
            "dyndns_users",
            "dyndns_update_duration_seconds",
        ):
            self.assertIn(name, families)
        self.assertEqual(families["dyndns_auth_failures"].type, "counter")
        self.assertEqual(families["dyndns_dns_queries"].type, "counter")
        self.assertEqual(families["dyndns_users"].type, "gauge")
        self.assertEqual(families["dyndns_update_duration_seconds"].type, "histogram")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
        self.assertEqual(samples[("dyndns_auth_failures_total", (("method", "dyndns2"),))], 1)
        self.assertEqual(samples[("dyndns_dns_queries_total", (("result", "NXDOMAIN"),))], 1)

    @defer.inlineCallbacks
    def test_head(self):
        get = yield self.send("GET")
        head = yield self.send("HEAD")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(head.header("content-length"), str(len(get.body)))

    @defer.inlineCallbacks
    def test_post_refused(self):
        response = yield self.send("POST", b"x=1")
        self.assertEqual(response.status, 405)
        self.assertEqual(response.header("allow"), "GET, HEAD")
        self.assertNotIn(b"dyndns_", response.body)

    @defer.inlineCallbacks
    def test_put_refused(self):
        response = yield self.send("PUT", b"x")
        self.assertEqual(response.status, 405)
