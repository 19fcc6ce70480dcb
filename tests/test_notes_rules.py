"""
Rules for DynDNS users: L{DynDNSService.users_at}, the lookup "which active
user is at this address", and examples/notes_rule_resolver.py, a DNS server
that applies a block list to queries from users whose notes carry a marker.

The example runs in-process on 127.0.0.1 port 0; dnspython asks it from a
thread (C{deferToThread}), from 127.0.0.1 (a user's address) or 127.0.0.2
(nobody's), so the server keeps running on the reactor thread meanwhile.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import sys
from types import ModuleType
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
from twisted.internet import defer, task, threads
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.names import dns as tdns
from twisted.trial import unittest

from dyndns_plugin import DynDNSService, MemoryUserStore, User, load_zone_file
from dyndns_plugin.twisted_private import EDNSMessage
from tests.dns_helpers import serve_dns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
SUFFIX = "dyn.example.org"
MARKER = "#block-ads"
BLOCKED = ("www.example.org", "ads.example.net")
TIMEOUT = 3.0


def load_example() -> ModuleType:
    """examples/notes_rule_resolver.py as a module (examples/ is no package)."""
    name = "notes_rule_resolver_example"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(EXAMPLES, "notes_rule_resolver.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


example = load_example()


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@defer.inlineCallbacks
def started_service():
    service = DynDNSService(MemoryUserStore(), SUFFIX, clock=task.Clock(), poll_interval=None)
    yield defer.ensureDeferred(service.start())
    return service


class UsersAtTests(unittest.TestCase):
    """L{DynDNSService.users_at}."""

    @defer.inlineCallbacks
    def setUp(self):
        self.service = yield started_service()

    @defer.inlineCallbacks
    def add(self, user_id, *addresses, **fields):
        yield self.service.add_user(User(user_id, **fields))
        if addresses:
            result = yield self.service.update(user_id, list(addresses))
            self.assertTrue(result.ok, result)

    def ids(self, address):
        return [user.id for user in self.service.users_at(address)]

    @defer.inlineCallbacks
    def test_online_user(self):
        """An online user is found by its address as text or object, with its notes."""
        yield self.add("alice", "198.51.100.7", notes=f"home {MARKER}")
        yield self.add("bob", "198.51.100.8")
        users = self.service.users_at("198.51.100.7")
        self.assertEqual([u.id for u in users], ["alice"])
        self.assertEqual(users[0].notes, f"home {MARKER}")
        self.assertEqual(self.ids(ipaddress.ip_address("198.51.100.7")), ["alice"])
        self.assertEqual(self.ids("198.51.100.9"), [])

    @defer.inlineCallbacks
    def test_notes_current(self):
        """The users returned carry their current notes."""
        yield self.add("alice", "198.51.100.7")
        yield self.service.edit_user("alice", notes=MARKER)
        self.assertEqual([u.notes for u in self.service.users_at("198.51.100.7")], [MARKER])

    @defer.inlineCallbacks
    def test_offline(self):
        """An offline user is not at its last address, nor at its offline IP."""
        yield self.add("alice", "198.51.100.7", offline_ipv4="192.0.2.200")
        yield self.service.set_offline("alice")
        self.assertEqual(self.ids("198.51.100.7"), [])
        self.assertEqual(self.ids("192.0.2.200"), [])
        yield self.service.update("alice", ["198.51.100.7"])
        self.assertEqual(self.ids("198.51.100.7"), ["alice"])

    @defer.inlineCallbacks
    def test_never_updated(self):
        """A user without an update is nowhere."""
        yield self.add("alice")
        self.assertEqual(self.ids("198.51.100.7"), [])

    @defer.inlineCallbacks
    def test_disabled(self):
        """A disabled user is not found; enabled again, it is."""
        yield self.add("alice", "198.51.100.7")
        yield self.service.set_disabled("alice", True)
        self.assertEqual(self.ids("198.51.100.7"), [])
        yield self.service.set_disabled("alice", False)
        self.assertEqual(self.ids("198.51.100.7"), ["alice"])

    @defer.inlineCallbacks
    def test_removed(self):
        yield self.add("alice", "198.51.100.7")
        yield self.service.remove_user("alice")
        self.assertEqual(self.ids("198.51.100.7"), [])

    @defer.inlineCallbacks
    def test_shared_address(self):
        """Several users at one address (one NAT) are all found, sorted by id."""
        yield self.add("carol", "198.51.100.7")
        yield self.add("alice", "198.51.100.7")
        yield self.add("bob", "198.51.100.7")
        self.assertEqual(self.ids("198.51.100.7"), ["alice", "bob", "carol"])
        yield self.service.set_offline("bob")
        self.assertEqual(self.ids("198.51.100.7"), ["alice", "carol"])

    @defer.inlineCallbacks
    def test_ipv6(self):
        """IPv6 addresses, as text in any spelling, objects, or with a zone."""
        yield self.add("alice", "198.51.100.7", "2001:db8::7")
        self.assertEqual(self.ids("2001:db8::7"), ["alice"])
        self.assertEqual(self.ids("2001:DB8:0:0:0:0:0:7"), ["alice"])
        self.assertEqual(self.ids(ipaddress.ip_address("2001:db8::7")), ["alice"])
        self.assertEqual(self.ids("198.51.100.7"), ["alice"])
        self.assertEqual(self.ids("2001:db8::8"), [])
        yield self.add("bob", "fe80::1")
        self.assertEqual(self.ids("fe80::1%eth0"), ["bob"])
        self.assertEqual(self.ids(ipaddress.ip_address("fe80::1%2")), ["bob"])

    @defer.inlineCallbacks
    def test_ipv4_mapped(self):
        """::ffff:a.b.c.d (a dual-stack socket's IPv4 peer) is the IPv4 address."""
        yield self.add("alice", "198.51.100.7")
        self.assertEqual(self.ids("::ffff:198.51.100.7"), ["alice"])
        self.assertEqual(self.ids("::ffff:c633:6407"), ["alice"])
        self.assertEqual(self.ids(ipaddress.ip_address("::ffff:198.51.100.7")), ["alice"])

    @defer.inlineCallbacks
    def test_address_change(self):
        """After an update the old address maps to nobody, the new one to the user."""
        yield self.add("alice", "198.51.100.7", "2001:db8::7")
        yield self.service.update("alice", ["198.51.100.70"])
        self.assertEqual(self.ids("198.51.100.7"), [])
        self.assertEqual(self.ids("198.51.100.70"), ["alice"])
        self.assertEqual(self.ids("2001:db8::7"), ["alice"])  # the other family stays
        yield self.service.set_addresses("alice", ipaddress.ip_address("198.51.100.70"), None)
        self.assertEqual(self.ids("2001:db8::7"), [])

    def test_not_an_address(self):
        """Text that is no IP address matches nobody; it does not raise."""
        for text in ("", "localhost", "198.51.100.7:53", "/run/dns.sock", "::ffff:nope"):
            self.assertEqual(self.service.users_at(text), [], text)

    def test_before_load(self):
        service = DynDNSService(MemoryUserStore(), SUFFIX, clock=task.Clock(), poll_interval=None)
        self.assertEqual(service.users_at("198.51.100.7"), [])


class BlockListTests(unittest.SynchronousTestCase):
    """The example's rule."""

    def rcode(self, rule, name):
        return rule(tdns.Query(name, tdns.A, tdns.IN))

    def test_names_and_below(self):
        rule = example.BlockList(["Ads.Example.NET.", " tracker.example.com ", ""])
        self.assertEqual(self.rcode(rule, b"ads.example.net"), tdns.ENAME)
        self.assertEqual(self.rcode(rule, b"X.ADS.example.net"), tdns.ENAME)
        self.assertEqual(self.rcode(rule, b"tracker.example.com"), tdns.ENAME)
        self.assertIsNone(self.rcode(rule, b"example.net"))
        self.assertIsNone(self.rcode(rule, b"badads.example.net"))
        self.assertIsNone(self.rcode(rule, b"\xff.example.org"))

    def test_file(self):
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("# ad servers\nads.example.net\n\ntracker.example.com  # and below\n")
        rule = example.BlockList(example.read_names(path))
        self.assertEqual(rule.names, frozenset({"ads.example.net", "tracker.example.com"}))


class FakeProtocol:
    """Records what the factory writes; C{transport} has a TCP peer."""

    def __init__(self, peer: str = "127.0.0.1") -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        self.written: list[tuple[Any, Any]] = []

    def writeMessage(self, message: Any, address: Any = None) -> None:
        self.written.append((message, address))


class FactoryTests(unittest.TestCase):
    """
    C{NotesRuleServerFactory.handleQuery} with the client address as
    Twisted passes it: a tuple for UDP (also the IPv4-mapped form a
    dual-stack socket reports), None and a transport peer for TCP.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.service = yield started_service()
        yield self.service.add_user(User("family", notes=MARKER))
        yield self.service.update("family", ["198.51.100.7"])
        zone = load_zone_file(os.path.join(EXAMPLES, "example.org.zone"), "example.org")
        self.factory = example.build_factory(self.service, [zone], MARKER, BLOCKED)

    def ask(self, name, protocol, address):
        message = EDNSMessage(id=7, recDes=True)
        message.queries = [tdns.Query(name, tdns.A, tdns.IN)]
        self.factory.messageReceived(message, protocol, address)  # -> handleQuery
        self.assertEqual(len(protocol.written), 1)
        return protocol.written[0]

    def test_udp(self):
        protocol = FakeProtocol()
        response, address = self.ask(b"www.example.org", protocol, ("198.51.100.7", 5353))
        self.assertEqual(response.rCode, tdns.ENAME)
        self.assertEqual(address, ("198.51.100.7", 5353))

    def test_ipv4_mapped(self):
        protocol = FakeProtocol()
        response, _ = self.ask(b"www.example.org", protocol, ("::ffff:198.51.100.7", 5353, 0, 0))
        self.assertEqual(response.rCode, tdns.ENAME)

    def test_tcp(self):
        response, address = self.ask(b"www.example.org", FakeProtocol("198.51.100.7"), None)
        self.assertEqual(response.rCode, tdns.ENAME)
        self.assertIsNone(address)
        response, _ = self.ask(b"www.example.org", FakeProtocol("198.51.100.8"), None)
        self.assertEqual(response.rCode, tdns.OK)
        self.assertEqual(response.answers[0].payload.dottedQuad(), "192.0.2.80")


class ExampleServerMixin:
    """
    The example's server on real sockets: C{family} is at C{user_address}
    (the client's source address) with the marker in its notes, C{demo} at
    192.0.2.10 with demo.example.org; the block list holds www.example.org
    (also in the zone file) and ads.example.net.
    """

    host = "127.0.0.1"
    user_address = "127.0.0.1"
    other_address = "127.0.0.2"

    @defer.inlineCallbacks
    def setUp(self):
        self.service = yield started_service()
        yield self.service.add_user(User("demo", hostnames=["demo.example.org"]))
        yield self.service.update("demo", ["192.0.2.10"])
        yield self.service.add_user(User("family", notes=f"the kids' laptops {MARKER}"))
        result = yield self.service.update("family", [self.user_address])
        self.assertTrue(result.ok, result)
        zone = load_zone_file(os.path.join(EXAMPLES, "example.org.zone"), "example.org")
        self.factory = example.build_factory(self.service, [zone], MARKER, BLOCKED)
        self.port = serve_dns(self, self.factory, self.host)

    def ask(self, name, source=None, tcp=False, rdtype="A"):
        query = dns.message.make_query(name, rdtype)
        send = dns.query.tcp if tcp else dns.query.udp
        return threads.deferToThread(
            send, query, self.host, timeout=TIMEOUT, port=self.port,
            source=source or self.user_address,
        )

    def assertAnswer(self, response, *addresses):
        self.assertEqual(dns.rcode.to_text(response.rcode()), "NOERROR")
        self.assertEqual(
            sorted(rd.to_text() for rrset in response.answer for rd in rrset), sorted(addresses)
        )

    def assertBlocked(self, response):
        self.assertEqual(dns.rcode.to_text(response.rcode()), "NXDOMAIN")
        self.assertEqual(response.answer, [])


class ExampleServerTests(ExampleServerMixin, unittest.TestCase):
    """The example on 127.0.0.1, asked from 127.0.0.1 (the user) and 127.0.0.2."""

    @defer.inlineCallbacks
    def test_marked_user_blocked(self):
        """Blocked names (and names below them) answer NXDOMAIN to the marked user."""
        self.assertBlocked((yield self.ask("www.example.org")))
        self.assertBlocked((yield self.ask("www.example.org", rdtype="AAAA")))
        self.assertBlocked((yield self.ask("x.ads.example.net")))

    @defer.inlineCallbacks
    def test_marked_user_normal_names(self):
        """Other names answer the marked user normally: the zone and users' names."""
        self.assertAnswer((yield self.ask("mail.example.org")), "192.0.2.25")
        self.assertAnswer((yield self.ask("demo.example.org")), "192.0.2.10")
        self.assertAnswer((yield self.ask(f"family.{SUFFIX}")), self.user_address)

    @defer.inlineCallbacks
    def test_other_client(self):
        """A client at nobody's address gets the normal answer for a blocked name."""
        self.assertAnswer((yield self.ask("www.example.org", self.other_address)), "192.0.2.80")
        r = yield self.ask("ads.example.net", self.other_address)
        self.assertEqual(dns.rcode.to_text(r.rcode()), "REFUSED")  # not ours, no recursion

    @defer.inlineCallbacks
    def test_tcp(self):
        """Over TCP the client's address comes from the connection."""
        self.assertBlocked((yield self.ask("www.example.org", tcp=True)))
        self.assertAnswer(
            (yield self.ask("www.example.org", self.other_address, tcp=True)), "192.0.2.80"
        )

    @defer.inlineCallbacks
    def test_without_marker(self):
        """The same user without the marker in its notes gets normal answers, and with it again the rule."""
        yield self.service.edit_user("family", notes="the kids' laptops")
        self.assertAnswer((yield self.ask("www.example.org")), "192.0.2.80")
        self.assertAnswer((yield self.ask("www.example.org", tcp=True)), "192.0.2.80")
        yield self.service.edit_user("family", notes=f"{MARKER} again")
        self.assertBlocked((yield self.ask("www.example.org")))

    @defer.inlineCallbacks
    def test_user_moves(self):
        """The rule follows the user's address: moved away, offline or disabled, no rule."""
        yield self.service.update("family", [self.other_address])
        self.assertAnswer((yield self.ask("www.example.org")), "192.0.2.80")
        self.assertBlocked((yield self.ask("www.example.org", self.other_address)))
        yield self.service.set_offline("family")
        self.assertAnswer((yield self.ask("www.example.org", self.other_address)), "192.0.2.80")
        yield self.service.update("family", [self.user_address])
        yield self.service.set_disabled("family", True)
        self.assertAnswer((yield self.ask("www.example.org")), "192.0.2.80")

    @defer.inlineCallbacks
    def test_shared_address(self):
        """With several users at one address, a marker in any one's notes applies."""
        yield self.service.add_user(User("guest", notes="no filtering"))
        yield self.service.update("guest", [self.user_address])
        self.assertBlocked((yield self.ask("www.example.org")))
        yield self.service.edit_user("family", notes="")
        self.assertAnswer((yield self.ask("www.example.org")), "192.0.2.80")


class ExampleServerIPv6Tests(ExampleServerMixin, unittest.TestCase):
    """The example on ::1, with the marked user at ::1."""

    host = "::1"
    user_address = "::1"

    if not ipv6_loopback():
        skip = "no IPv6 loopback"

    @defer.inlineCallbacks
    def test_marked_user(self):
        self.assertBlocked((yield self.ask("www.example.org")))
        self.assertBlocked((yield self.ask("www.example.org", tcp=True)))
        self.assertAnswer((yield self.ask("mail.example.org")), "192.0.2.25")

    @defer.inlineCallbacks
    def test_without_marker(self):
        yield self.service.edit_user("family", notes="")
        self.assertAnswer((yield self.ask("www.example.org")), "192.0.2.80")
        self.assertAnswer((yield self.ask("www.example.org", tcp=True)), "192.0.2.80")
