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
from dyndns_plugin.replication.publisher import ZonePublisher
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store import IZoneJournal
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
