"""
C{dyndns migrate-store}: a whole SQLite installation into an empty
PostgreSQL database (a real one, tests/postgres.py), in one transaction.
"""

from __future__ import annotations

import os
import subprocess
import sys

import attrs
from twisted.internet import defer
from twisted.trial.unittest import TestCase

from dyndns_plugin.model import User
from dyndns_plugin.store import AcmeKey, ReplayState, StoreError
from dyndns_plugin.store.migrate import Installation, migrate_store, open_location, read_installation
from dyndns_plugin.store.sqlite import SQLiteUserStore
from tests.postgres import new_database
from tests.store_conformance import ALICE, ALICE_STATE, BOB, OTHER_ZONE, ZONE, journal_step
from tests.typing_helpers import threads_reactor

try:
    from psycopg.conninfo import conninfo_to_dict

    from dyndns_plugin.store.postgresql import PostgreSQLUserStore
except ImportError:  # pragma: no cover - new_database() skips (or fails in CI) first
    pass

ALICE_TXT = attrs.evolve(ALICE_STATE, txt=(("alice.dyn.example.com", "token-1", 1700003600.0),))


class MigrateStoreTests(TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.dsn = new_database(self)
        folder = self.mktemp()
        os.makedirs(folder)
        self.path = os.path.join(folder, "dyndns.sqlite")
        self.source = SQLiteUserStore(self.path, threads_reactor())
        yield self.source.open()
        self.addCleanup(self.source.close)
        yield self.source.add_user(ALICE)
        yield self.source.add_user(BOB)
        yield self.source.save_state(ALICE_TXT)
        yield self.source.add_acme_key("alice", AcmeKey("k1", "ab" * 32, "certbot", 1700000000.0))
        yield self.source.save_zone_version(ZONE, 1001, "d1", None, 10)
        for serial in range(1001, 1004):
            yield self.source.save_zone_version(
                ZONE, serial + 1, f"d{serial + 1}", journal_step(serial, serial + 1), 10
            )
        yield self.source.save_zone_records(
            OTHER_ZONE,
            {("www." + OTHER_ZONE, 1): (("www." + OTHER_ZONE, 1, 300, bytes([192, 0, 2, 80])),)},
            None,
            "",
            None,
            0,
        )
        yield self.source.save_replay_state("alice.key.", ReplayState(1700000000, ((1700000000, b"\x01" * 32),)))
        self.target = PostgreSQLUserStore(self.dsn, threads_reactor())
        yield self.target.open()
        self.addCleanup(self.target.close)

    @defer.inlineCallbacks
    def test_everything_moves(self):
        """Users, states with challenge values, ACME keys, serials with their journal, zone records, replay records."""
        copied = yield migrate_store(self.source, self.target)
        self.assertEqual(len(copied.snapshot.users), 2)
        before = yield read_installation(self.source)
        after = yield read_installation(self.target)
        self.assertEqual(dict(after.snapshot.users), dict(before.snapshot.users))
        self.assertEqual(dict(after.snapshot.states), {"alice": ALICE_TXT})
        self.assertEqual(after.acme_keys, before.acme_keys)
        self.assertEqual(after.zones, before.zones)
        self.assertEqual([s.serial_to for s in after.zones[ZONE].steps], [1002, 1003, 1004])
        self.assertEqual(after.zone_records, before.zone_records)
        self.assertEqual(after.replay, before.replay)
        self.assertIn("2 users, 1 host states, 1 ACME keys, 1 zones with 3 journal steps", copied.summary())

    @defer.inlineCallbacks
    def test_target_must_be_empty(self):
        """Nothing is merged into another installation: a target with users is refused, and keeps what it had."""
        yield self.target.add_user(User("carol"))
        with self.assertRaises(StoreError) as caught:
            yield migrate_store(self.source, self.target)
        self.assertIn("not empty (1 users, 0 zones)", str(caught.exception))
        snapshot = yield self.target.load()
        self.assertEqual(set(snapshot.users), {"carol"})

    @defer.inlineCallbacks
    def test_all_or_nothing(self):
        """A failure part-way (an ACME key of a user the copy lacks) leaves the target empty."""
        whole = yield read_installation(self.source)
        broken = attrs.evolve(whole, acme_keys={**whole.acme_keys, "ghost": [AcmeKey("k2", "cd" * 32)]})
        with self.assertRaises(StoreError):
            yield self.target.install(broken)
        after = yield read_installation(self.target)
        self.assertEqual((dict(after.snapshot.users), after.zones, after.replay), ({}, {}, {}))

    def test_locations(self):
        """sqlite:PATH (which must exist: a typo must not create an empty store) and postgresql:DSN."""
        self.assertIsInstance(open_location(f"sqlite:{self.path}", None), SQLiteUserStore)
        url = "postgresql://{user}@{host}:{port}/{dbname}".format(**conninfo_to_dict(self.dsn))
        self.assertEqual(open_location(url, None).dsn, url)  # type: ignore[attr-defined]
        self.assertEqual(open_location("postgresql:" + self.dsn, None).dsn, self.dsn)  # type: ignore[attr-defined]
        with self.assertRaises(StoreError):
            open_location(f"sqlite:{self.path}.typo", None)
        self.assertFalse(os.path.exists(f"{self.path}.typo"))
        with self.assertRaises(StoreError):
            open_location("mysql:x", None)

    @defer.inlineCallbacks
    def test_command(self):
        """The CLI command copies and says what; a second run is refused and copies nothing."""
        yield self.source.close()
        command = [sys.executable, "-m", "dyndns_plugin.cli", "migrate-store", "--from", f"sqlite:{self.path}"]
        done = subprocess.run([*command, "--to", "postgresql:" + self.dsn], capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("copied 2 users", done.stdout)
        again = subprocess.run([*command, "--to", "postgresql:" + self.dsn], capture_output=True, text=True, timeout=60)
        self.assertEqual(again.returncode, 1)
        self.assertIn("is not empty (2 users, 1 zones); nothing copied", again.stderr)
        after = yield read_installation(self.target)
        self.assertIsInstance(after, Installation)
        self.assertEqual(set(after.snapshot.users), {"alice", "bob"})
