"""
Several nodes on one store: one publishes the zones, the others follow
its stored serials and journal steps, so every node's SOA, AXFR content and
IXFR journal are the same; a follower takes over when it gets the lock; a
host-zone update at any node takes the zone's next serial in the store.
Two services on one memory store stand for two nodes on one PostgreSQL
(tests/test_store_postgresql.py and the cluster integration tests run the real thing).
"""

from __future__ import annotations

import ipaddress

from twisted.internet import defer, task
from twisted.trial import unittest

from dyndns_plugin.model import User
from dyndns_plugin.replication.journal import next_serial
from dyndns_plugin.replication.publisher import ZonePublisher
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store import StoreError, ZoneConflict
from dyndns_plugin.store.memory import MemoryUserStore
from tests.dns_helpers import example_suffix_zone
from tests.test_zone_journal import make_host_zone

SUFFIX = "dyn.example.com"


class Node:
    """One node: a service and its publisher on the shared store."""

    def __init__(self, store: MemoryUserStore, clock: task.Clock, leading: bool) -> None:
        self.service = DynDNSService(store, SUFFIX, clock=clock, poll_interval=None)
        self.publisher = ZonePublisher(self.service, [example_suffix_zone(2024010101), make_host_zone()])
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

    def test_host_zone_update_at_a_follower(self) -> None:
        """
        An RFC 2136 update of a host zone at a follower takes the zone's
        next serial in the store; the publisher (told by the store) takes
        that step, so both serve the same serial, records and journal.
        """
        self.settle(self.b)
        host_a, host_b = self.a.publisher.zones[1], self.b.publisher.zones[1]
        before = host_a.serial
        www = (("www.example.org", 1, 60, bytes([192, 0, 2, 81])),)
        self.successResultOf(
            defer.ensureDeferred(
                self.b.publisher.update_host_zone("example.org", lambda zone, pending: {("www.example.org", 1): www})
            )
        )
        self.assertEqual(host_b.serial, next_serial(before))
        d = self.a.publisher.catch_up()
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(host_a.serial, host_b.serial)
        self.assertEqual(sorted(host_a.all_records()), sorted(host_b.all_records()))
        self.assertIn(www[0], list(host_a.all_records()))
        self.assertEqual(host_a.steps_since(before), host_b.steps_since(before))
        self.assertEqual(host_a.updated, host_b.updated)  # what queries at the publisher see too

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


class FencedStore(MemoryUserStore):
    """The memory store with PostgreSQL's fence: a zone step only over the stored serial it starts from."""

    def save_zone_records(self, origin, rrsets, serial, digest, step, keep):  # type: ignore[no-untyped-def]
        stored = self._zones.get(origin)
        if step is not None and stored is not None and stored.serial != step.serial_from:
            return defer.fail(ZoneConflict(f"{origin} is at {stored.serial}, not {step.serial_from}"))
        return super().save_zone_records(origin, rrsets, serial, digest, step, keep)


class HostZoneRaceTests(unittest.SynchronousTestCase):
    """Two nodes update one host zone, each before it saw the other's serial: the second checks again and follows."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.store = FencedStore()
        self.a = Node(self.store, self.clock, leading=True)
        self.b = Node(self.store, self.clock, leading=False)
        for node in (self.a, self.b):
            self.successResultOf(defer.ensureDeferred(node.service.start()))

    def update_zone(self, node: Node, name: str, last: int) -> None:
        rrset = ((name, 1, 60, bytes([192, 0, 2, last])),)
        done = defer.ensureDeferred(
            node.publisher.update_host_zone("example.org", lambda zone, pending: {(name, 1): rrset})
        )
        self.clock.advance(0)
        self.successResultOf(done)

    def test_second_writer_checks_again(self) -> None:
        before = self.a.publisher.zones[1].serial
        self.update_zone(self.a, "one.example.org", 1)  # b has not seen it
        self.update_zone(self.b, "two.example.org", 2)  # its first write is fenced off, then it follows and writes
        host_b = self.b.publisher.zones[1]
        self.assertEqual(host_b.serial, next_serial(next_serial(before)))
        d = self.a.publisher.catch_up()
        self.clock.advance(0)
        self.successResultOf(d)
        host_a = self.a.publisher.zones[1]
        self.assertEqual(host_a.serial, host_b.serial)
        self.assertEqual(sorted(host_a.all_records()), sorted(host_b.all_records()))
        names = {rr[0] for rr in host_a.all_records()}
        self.assertTrue({"one.example.org", "two.example.org"} <= names, names)
