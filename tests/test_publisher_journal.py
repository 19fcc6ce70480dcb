"""
The zone publisher keeps serials and journal steps through its
L{IZoneJournal}, not through the user store's interface.
"""

from __future__ import annotations

import ipaddress

from twisted.internet import defer, task
from twisted.trial import unittest

from dyndns_plugin.dns.zones import StaticZone
from dyndns_plugin.model import User
from dyndns_plugin.replication import publisher as publisher_module
from dyndns_plugin.replication.journal import ZoneState, next_serial, serial_newer
from dyndns_plugin.replication.publisher import ZonePublisher
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store import IZoneJournal, StoreError
from dyndns_plugin.store.memory import MemoryUserStore
from tests.dns_helpers import example_suffix_zone

SUFFIX = "dyn.example.com"


def make_zone(serial: int = 2024010101) -> StaticZone:
    return example_suffix_zone(serial)


class PublisherJournalTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.users = MemoryUserStore()
        self.service = DynDNSService(self.users, SUFFIX, clock=self.clock, poll_interval=None)

    def publish_one_change(self, publisher: ZonePublisher) -> None:
        self.successResultOf(defer.ensureDeferred(self.service.start()))
        self.successResultOf(self.service.add_user(User("alice")))
        self.successResultOf(self.service.update("alice", [ipaddress.ip_address("192.0.2.1")]))
        self.clock.advance(10)
        self.successResultOf(publisher.flush())

    def test_writes_go_to_the_given_journal(self) -> None:
        journal = MemoryUserStore()
        publisher = ZonePublisher(self.service, [make_zone()], journal=journal)
        self.publish_one_change(publisher)
        serial = publisher.zones[0].serial
        history = self.successResultOf(journal.load_zone_history())
        self.assertEqual(history[SUFFIX].serial, serial)
        self.assertEqual([s.serial_to for s in history[SUFFIX].steps], [serial])
        self.assertEqual(self.successResultOf(self.users.load_zone_history()), {})

    def test_default_journal_is_the_store(self) -> None:
        publisher = ZonePublisher(self.service, [make_zone()])
        self.assertTrue(IZoneJournal.providedBy(publisher.journal))
        self.assertIs(publisher.journal, self.users)
        self.publish_one_change(publisher)
        history = self.successResultOf(self.users.load_zone_history())
        self.assertEqual(history[SUFFIX].serial, publisher.zones[0].serial)


class StopTests(unittest.SynchronousTestCase):
    def test_stop_with_a_publication_pending(self) -> None:
        """
        The service stops (its store closes) with a change not yet
        published: no error about the store and no retry (the next start
        publishes it), where it used to log an error at every SIGTERM.
        """
        clock = task.Clock()
        store = MemoryUserStore()
        service = DynDNSService(store, SUFFIX, clock=clock, poll_interval=None)
        publisher = ZonePublisher(service, [make_zone()])
        service.startService()
        self.successResultOf(service.ready)
        self.successResultOf(service.add_user(User("alice")))
        self.successResultOf(service.update("alice", [ipaddress.ip_address("192.0.2.1")]))
        serial = publisher.zones[0].serial
        service.stopService()
        store.fail_writes = StoreError("store is not open")
        clock.advance(10)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(publisher.zones[0].serial, serial)
        self.assertEqual(clock.getDelayedCalls(), [])


class BackgroundFillTests(unittest.SynchronousTestCase):
    """
    A large registry is filled into the zones after DNS starts answering,
    in slices of reactor time (here: one batch of 4 users per turn): the
    stored serial is served meanwhile, nothing is published or transferred
    until the fill ends, and changes made during it are published after.
    """

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.users = MemoryUserStore()
        first = DynDNSService(self.users, SUFFIX, clock=self.clock, poll_interval=None)
        publisher = ZonePublisher(first, [make_zone()])
        self.successResultOf(defer.ensureDeferred(first.start()))
        for n in range(30):
            self.successResultOf(first.add_user(User(f"user{n:02}")))
            self.successResultOf(first.update(f"user{n:02}", [ipaddress.ip_address(f"192.0.2.{n + 1}")]))
        self.clock.advance(10)
        self.successResultOf(publisher.flush())
        self.stored_serial = publisher.zones[0].serial
        self.service = DynDNSService(self.users, SUFFIX, clock=self.clock, poll_interval=None)
        self.publisher = ZonePublisher(self.service, [make_zone()])
        self.publisher.fill_in_background_from = 0
        self.publisher.fill_slice = 0.0
        self.publisher.fill_batch = 4
        self.publisher.fill_pause = 1.0  # a second of the fake clock per reactor turn
        self.publisher.fill_clock = self.clock

    def run_fill(self) -> int:
        """Turn the clock until the fill has ended; how many turns it took."""
        for turns in range(1, 1000):
            self.clock.advance(1)
            if self.publisher.ready:
                return turns
        self.fail("the fill never ended")

    def test_serves_the_stored_serial_then_publishes_what_changed_meanwhile(self) -> None:
        self.successResultOf(defer.ensureDeferred(self.service.start()))
        self.assertTrue(self.service.registry.loaded)  # DNS answers already
        zone = self.publisher.zones[0]
        self.assertFalse(self.publisher.ready)
        self.assertIsNone(self.publisher.zone_for(SUFFIX))  # transfers: SERVFAIL until the fill ends
        self.assertEqual(zone.serial, self.stored_serial)
        self.clock.advance(1)
        # One change to a user the fill has passed, one to a user it has not
        # reached, a new user and a removed one.
        self.successResultOf(self.service.update("user00", [ipaddress.ip_address("198.51.100.1")]))
        self.successResultOf(self.service.update("user29", [ipaddress.ip_address("198.51.100.29")]))
        self.successResultOf(self.service.add_user(User("zed")))
        self.successResultOf(self.service.update("zed", [ipaddress.ip_address("198.51.100.99")]))
        self.successResultOf(self.service.remove_user("user15"))
        self.assertEqual(zone.serial, self.stored_serial)
        filled = self.publisher.when_ready()
        self.assertNoResult(filled)
        self.assertGreater(self.run_fill(), 5)
        self.successResultOf(filled)
        self.successResultOf(self.publisher.flush())
        # The filled content matched the stored digest except for what the
        # fill itself saw change: either way the zone ends equal to the
        # registry, with a serial newer than the stored one.
        fresh = ZoneState(make_zone(), True, 10)
        fresh.load(self.service.registry, None)
        self.assertEqual(zone.dynamic, fresh.dynamic)
        self.assertEqual(zone.digest, fresh.digest)
        self.assertTrue(serial_newer(zone.serial, self.stored_serial))
        history = self.successResultOf(self.users.load_zone_history())[SUFFIX]
        self.assertEqual((history.serial, history.digest), (zone.serial, zone.digest_text))
        answer = zone.answer_at(f"user29.{SUFFIX}")
        assert answer is not None
        self.assertEqual(answer.addresses, (ipaddress.ip_address("198.51.100.29"),))
        self.assertNotIn(f"user15.{SUFFIX}", zone.dynamic)
        self.assertIn(f"zed.{SUFFIX}", zone.dynamic)

    def test_unchanged_content_keeps_the_stored_serial(self) -> None:
        self.successResultOf(defer.ensureDeferred(self.service.start()))
        self.run_fill()
        zone = self.publisher.zones[0]
        self.assertEqual(zone.serial, self.stored_serial)
        self.assertIs(self.publisher.zone_for(SUFFIX), zone)


class SameRecordsTests(unittest.SynchronousTestCase):
    def test_a_new_value_with_the_same_records_keeps_the_serial(self) -> None:
        """
        A change that leaves the records as they are (here the notes of a
        user that is offline with an offline IP, whose records come from the
        user itself) publishes no serial, and the zone keeps the registry's
        newer value, not the old one.
        """
        clock = task.Clock()
        clock.advance(1_700_000_000)
        service = DynDNSService(MemoryUserStore(), SUFFIX, clock=clock, poll_interval=None)
        publisher = ZonePublisher(service, [make_zone()])
        self.successResultOf(defer.ensureDeferred(service.start()))
        self.successResultOf(service.add_user(User("alice", offline_ipv4="192.0.2.99")))
        self.successResultOf(service.update("alice", [ipaddress.ip_address("192.0.2.1")]))
        self.successResultOf(service.set_offline("alice"))
        clock.advance(10)
        self.successResultOf(publisher.flush())
        zone = publisher.zones[0]
        serial, published, before = zone.serial, publisher.published, service.registry.users["alice"]
        self.assertIs(zone.dynamic[f"alice.{SUFFIX}"], before)
        self.successResultOf(service.edit_user("alice", notes="moved to the new router"))
        self.assertIsNot(service.registry.users["alice"], before)
        clock.advance(10)
        self.successResultOf(publisher.flush())
        self.assertEqual((zone.serial, publisher.published), (serial, published))
        self.assertIs(zone.dynamic[f"alice.{SUFFIX}"], service.registry.users["alice"])
        answer = zone.answer_at(f"alice.{SUFFIX}")
        assert answer is not None
        self.assertEqual(answer.addresses, (ipaddress.ip_address("192.0.2.99"),))


class SlicedDiffTests(unittest.SynchronousTestCase):
    def test_many_changes_are_diffed_across_turns_into_one_serial(self) -> None:
        """
        More changed names than DIFF_AT_ONCE are diffed DIFF_CHUNK at a time,
        with reactor turns between (here: a turn after every chunk); they
        still make one serial whose step holds every change.
        """
        self.patch(publisher_module, "DIFF_AT_ONCE", 5)
        self.patch(publisher_module, "DIFF_CHUNK", 3)
        clock = task.Clock()
        clock.advance(1_700_000_000)
        service = DynDNSService(MemoryUserStore(), SUFFIX, clock=clock, poll_interval=None)
        publisher = ZonePublisher(service, [make_zone()])
        publisher.fill_clock, publisher.fill_slice, publisher.fill_pause = clock, 0.0, 1.0
        self.successResultOf(defer.ensureDeferred(service.start()))
        serial = publisher.zones[0].serial
        for n in range(12):
            self.successResultOf(service.add_user(User(f"user{n:02}")))
            self.successResultOf(service.update(f"user{n:02}", [ipaddress.ip_address(f"192.0.2.{n + 1}")]))
        flushed = publisher.flush()
        self.assertNoResult(flushed)  # the first chunk is diffed, the rest waits for turns
        zone = publisher.zones[0]
        turns = 0
        while not flushed.called and turns < 100:
            # Between turns the zone is the old one or the new one, names and
            # serial: the new values are staged aside and put in place with
            # the serial.
            published = zone.serial != serial
            self.assertEqual({f"user{n:02}.{SUFFIX}" in zone.dynamic for n in range(12)}, {published})
            clock.advance(1)
            turns += 1
        self.assertGreater(turns, 12 // 3)  # a turn at least after every chunk
        self.successResultOf(flushed)
        self.assertEqual((zone.serial, publisher.published), (next_serial(serial), 1))
        (step,) = zone.steps
        self.assertEqual({rr[0] for rr in step.added}, {f"user{n:02}.{SUFFIX}" for n in range(12)})


class NewDictsFrozenTests(unittest.SynchronousTestCase):
    def test_a_large_zones_copied_dicts_leave_the_collector(self) -> None:
        """
        A write after a transfer's snapshot copies the dict it touches; in a
        large zone (here: the threshold lowered to 0) the publication then
        freezes such new dicts out of the collector, and only then.
        """
        import gc

        clock = task.Clock()
        clock.advance(1_700_000_000)
        service = DynDNSService(MemoryUserStore(), SUFFIX, clock=clock, poll_interval=None)
        publisher = ZonePublisher(service, [make_zone()])
        self.successResultOf(defer.ensureDeferred(service.start()))
        self.successResultOf(service.add_user(User("alice")))
        clock.advance(10)
        self.successResultOf(publisher.flush())
        zone = publisher.zones[0]
        frozen: list[int] = []
        self.patch(gc, "freeze", lambda: frozen.append(1))
        for large in (False, True):
            publisher.fill_in_background_from = 0 if large else 10**9
            zone.dynamic.snapshot()  # as an AXFR does
            self.successResultOf(service.update("alice", [ipaddress.ip_address(f"192.0.2.{1 + large}")]))
            clock.advance(10)
            self.successResultOf(publisher.flush())
            self.assertEqual(zone.dynamic.new_dicts, 0)
            self.assertEqual(len(frozen), int(large))
