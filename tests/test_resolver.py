"""DynDNSResolver on its own: what it answers and what it lets fall through."""

from __future__ import annotations

from twisted.internet.interfaces import IResolver
from twisted.names import dns, error
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from dyndns_plugin.dns.resolver import DynDNSResolver, NotReady
from dyndns_plugin.model import HostState, User
from dyndns_plugin.registry import Registry


class ResolverTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = Registry("dyn.example.com", 30)
        self.registry.put_user(User("alice", hostnames=["*.alice.example.org"]))
        self.registry.set_state(HostState("alice", ipv4="192.0.2.7", ipv6="2001:db8::7", ttl=45))
        self.registry.put_user(User("bob"))
        self.registry.loaded = True
        self.resolver = DynDNSResolver(self.registry)

    def lookup(self, name: bytes, qtype: int):
        return self.resolver.query(dns.Query(name, qtype, dns.IN))

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IResolver, self.resolver))

    def test_address_types(self) -> None:
        """A, AAAA and ANY answer from memory, authoritative, with the user's TTL."""
        for qtype, expected in ((dns.A, [dns.A]), (dns.AAAA, [dns.AAAA]), (dns.ALL_RECORDS, [dns.A, dns.AAAA])):
            answers, authority, additional = self.successResultOf(self.lookup(b"ALICE.dyn.example.com", qtype))
            self.assertEqual([rr.type for rr in answers], expected)
            self.assertTrue(all(rr.auth and rr.ttl == 45 for rr in answers))
            self.assertEqual(answers[0].name.name, b"ALICE.dyn.example.com")
            self.assertEqual((authority, additional), ([], []))

    def test_wildcard_owner_name(self) -> None:
        """A wildcard answer carries the asked name, not the wildcard."""
        answers, _, _ = self.successResultOf(self.lookup(b"a.b.alice.example.org", dns.A))
        self.assertEqual(answers[0].name.name, b"a.b.alice.example.org")
        self.assertEqual(answers[0].payload.dottedQuad(), "192.0.2.7")

    def test_fall_through(self) -> None:
        """Unknown names, other types and names without an address fall through."""
        for name, qtype in (
            (b"nobody.dyn.example.com", dns.A),
            (b"alice.dyn.example.com", dns.MX),
            (b"bob.dyn.example.com", dns.A),
            (b"\xff.dyn.example.com", dns.A),
        ):
            self.failureResultOf(self.lookup(name, qtype), error.DomainError)
        self.assertTrue(self.resolver.owns(b"bob.dyn.example.com"))
        self.assertFalse(self.resolver.owns(b"nobody.dyn.example.com"))

    def test_not_ready(self) -> None:
        """Before the registry is loaded every lookup fails with NotReady (SERVFAIL)."""
        self.registry.loaded = False
        self.failureResultOf(self.lookup(b"alice.dyn.example.com", dns.A), NotReady)
