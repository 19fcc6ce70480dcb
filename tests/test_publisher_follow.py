"""
Several nodes on one store: one publishes the zones, the others follow
its stored serials and journal steps, so every node's SOA, AXFR content and
IXFR journal are the same; a follower takes over when it gets the lock.
Two services on one memory store stand for two nodes on one PostgreSQL
(tests/test_store_postgresql.py and the cluster integration tests run the real thing).
"""

from __future__ import annotations

import ipaddress

from twisted.internet import defer, task
from twisted.names.dns import EREFUSED
from twisted.trial import unittest

from dyndns_plugin.dns.rfc2136 import UpdateError
from dyndns_plugin.model import User
from dyndns_plugin.replication.journal import RRsetChanges, next_serial
from dyndns_plugin.replication.publisher import ZonePublisher
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store import StoreError
from dyndns_plugin.store.memory import MemoryUserStore
from tests.dns_helpers import example_suffix_zone

SUFFIX = "dyn.example.com"


class Node:
    """One node: a service and its publisher on the shared store."""

    def __init__(self, store: MemoryUserStore, clock: task.Clock, leading: bool) -> None:
        self.service = DynDNSService(store, SUFFIX, clock=clock, poll_interval=None)
        self.publisher = ZonePublisher(self.service, [example_suffix_zone(2024010101)])
        self.publisher.fill_clock = clock
        self.publisher.fill_slice = 0.0
        if not leading:
            self.publisher.follow()

    @property
    def zone(self):  # type: ignore[no-untyped-def]
        return self.publisher.zones[0]

    def content(self) -> list[tuple[str, int, int, bytes]]:
        return sorted(self.zone.all_records())


class FollowTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.store = MemoryUserStore()
        self.a = Node(self.store, self.clock, leading=True)
        self.b = Node(self.store, self.clock, leading=False)
        for node in (self.a, self.b):
            self.successResultOf(defer.ensureDeferred(node.service.start()))
        for n in range(5):
            self.successResultOf(self.a.service.add_user(User(f"user{n}", hostnames=[f"host{n}.example.org"])))

    def settle(self, *nodes: Node) -> None:
        """Publish what the leader has, let each follower poll and catch up."""
        self.clock.advance(1)
        self.successResultOf(self.a.publisher.flush() if self.a.publisher.leading else self.b.publisher.flush())
        for node in nodes:
            self.successResultOf(defer.ensureDeferred(node.service.poll()))
            d = node.publisher.catch_up()
            self.clock.advance(0)
            self.successResultOf(d)

    def update(self, node: Node, user: str, address: str) -> None:
        self.successResultOf(node.service.update(user, [ipaddress.ip_address(address)]))

    def test_follower_serves_the_publishers_serial_content_and_journal(self) -> None:
        """After steps published by the leader, the follower's SOA, AXFR content and IXFR steps are the leader's."""
        self.settle(self.b)
        start = self.a.zone.serial
        for n in range(5):
            self.update(self.a, f"user{n}", f"192.0.2.{n + 1}")
            self.settle(self.b)
        self.update(self.a, "user1", "2001:db8::1")
        self.settle(self.b)
        self.assertNotEqual(self.a.zone.serial, start)
        self.assertEqual(self.b.zone.serial, self.a.zone.serial)
        self.assertEqual(self.b.content(), self.a.content())
        self.assertEqual(self.b.zone.steps_since(start), self.a.zone.steps_since(start))
        self.assertEqual(self.b.zone.digest_text, self.a.zone.digest_text)
        self.assertIsNotNone(self.b.publisher.zone_for(SUFFIX))
        self.assertEqual(self.b.publisher.published, 0)  # it published nothing of its own

    def test_replay_does_not_wait_for_the_followers_registry(self) -> None:
        """The follower has not polled yet: its zone still takes the stored steps exactly."""
        self.settle(self.b)
        self.update(self.a, "user2", "192.0.2.77")
        self.clock.advance(1)
        self.successResultOf(self.a.publisher.flush())
        d = self.b.publisher.catch_up()
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertIsNone(self.b.service.registry.state("user2"))  # not polled
        self.assertEqual(self.b.zone.serial, self.a.zone.serial)
        self.assertEqual(self.b.content(), self.a.content())

    def test_takeover_continues_the_journal(self) -> None:
        """
        The follower gets the lock: it takes what the old publisher stored,
        publishes what its registry has beyond that as the next serial (one
        journal, no new start), and the old one follows it.
        """
        self.settle(self.b)
        self.update(self.a, "user0", "192.0.2.10")
        self.settle(self.b)
        before = self.a.zone.serial
        self.a.publisher.set_leading(False)
        self.b.publisher.set_leading(True)
        self.clock.advance(0)
        self.update(self.b, "user3", "192.0.2.33")
        self.clock.advance(1)
        self.successResultOf(self.b.publisher.flush())
        self.assertEqual(self.b.zone.serial, next_serial(before))
        self.assertEqual([s.serial_from for s in self.b.zone.steps_since(before) or []], [before])
        self.successResultOf(defer.ensureDeferred(self.a.service.poll()))
        d = self.a.publisher.catch_up()
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(self.a.zone.serial, self.b.zone.serial)
        self.assertEqual(self.a.content(), self.b.content())

    def test_takeover_publishes_what_the_old_publisher_left(self) -> None:
        """A change committed but never published (the publisher died first) is published by the next."""
        self.settle(self.b)
        before = self.a.zone.serial
        self.a.publisher.set_leading(False)  # dies before publishing the next change
        self.update(self.a, "user4", "192.0.2.44")
        self.successResultOf(defer.ensureDeferred(self.b.service.poll()))
        self.b.publisher.set_leading(True)
        self.clock.advance(1)
        self.successResultOf(self.b.publisher.publish_pending())
        self.assertEqual(self.b.zone.serial, next_serial(before))
        added = [rr for step in self.b.zone.steps_since(before) or [] for rr in step.added]
        self.assertIn(("user4." + SUFFIX, 1, 30, bytes([192, 0, 2, 44])), added)

    def test_follower_refuses_host_zone_updates(self) -> None:
        """Only the publisher takes a serial: an RFC 2136 update of a zone at a follower is REFUSED."""
        self.settle(self.b)
        failure = self.failureResultOf(
            defer.ensureDeferred(self.b.publisher.update_host_zone(SUFFIX, lambda zone, pending: RRsetChanges())),
            UpdateError,
        )
        self.assertEqual(failure.value.rcode, EREFUSED)

    def test_follower_out_of_step_waits_for_matching_content(self) -> None:
        """
        A follower whose journal does not lead to the stored serial rebuilds
        from its registry; transfers wait (zone_for None) until the content
        is the stored serial's, then it serves that serial.
        """
        self.settle(self.b)
        self.store._zones[SUFFIX] = self.store._zones[SUFFIX].__class__(
            self.store._zones[SUFFIX].serial, self.store._zones[SUFFIX].digest, ()
        )  # the journal lost its steps
        self.update(self.a, "user1", "192.0.2.11")
        self.clock.advance(1)
        self.successResultOf(self.a.publisher.flush())
        self.store._zones[SUFFIX] = self.store._zones[SUFFIX].__class__(
            self.store._zones[SUFFIX].serial, self.store._zones[SUFFIX].digest, ()
        )
        d = self.b.publisher.catch_up()
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertIsNone(self.b.publisher.zone_for(SUFFIX))  # its registry lacks user1's change
        self.successResultOf(defer.ensureDeferred(self.b.service.poll()))
        d = self.b.publisher.catch_up()
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertIsNotNone(self.b.publisher.zone_for(SUFFIX))
        self.assertEqual(self.b.zone.serial, self.a.zone.serial)
        self.assertEqual(self.b.content(), self.a.content())

    def test_failed_reads_logged_once(self) -> None:
        """The store down: every catch-up fails, the first is logged, then one line when it works again."""
        self.settle(self.b)
        history = self.store.load_zone_history
        self.store.load_zone_history = lambda since=None: defer.fail(StoreError("down"))  # type: ignore[method-assign]
        for _ in range(3):
            self.successResultOf(self.b.publisher.catch_up())
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)
        self.store.load_zone_history = history  # type: ignore[method-assign]
        self.successResultOf(self.b.publisher.catch_up())
        self.store.load_zone_history = lambda since=None: defer.fail(StoreError("down"))  # type: ignore[method-assign]
        self.successResultOf(self.b.publisher.catch_up())
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)  # a new outage: logged again
