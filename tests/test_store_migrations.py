"""
Schema migrations of the SQLite store, from every earlier schema version
(L{tests.store_versions} builds the files), and the start-up check's
refusals: a newer schema, a file that is not a database, a damaged one.
"""

from __future__ import annotations

import os
import sqlite3

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dyndns_plugin.model import HostState, User
from dyndns_plugin.store import StoreError
from dyndns_plugin.store.sqlite import SCHEMA_VERSION, SQLiteUserStore, connect
from tests.store_versions import (
    ROWS_BY_VERSION,
    build_store_at_version,
    expected_acme_keys,
    expected_generation,
    expected_replay_states,
    expected_states,
    expected_users,
    expected_zone_history,
    expected_zone_records,
)
from tests.typing_helpers import threads_reactor


def schema_version(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


class MigrationTests(TestCase):
    """A file of each earlier version opens with every row kept, at the current version."""

    def test_rows_for_every_version(self) -> None:
        """Each schema version has rows in the builder: a new migration must add its own."""
        self.assertEqual(set(ROWS_BY_VERSION), set(range(1, SCHEMA_VERSION + 1)))

    @defer.inlineCallbacks
    def check_migrates(self, version: int):
        path = os.path.join(self.mktemp(), "old.sqlite")
        os.makedirs(os.path.dirname(path))
        build_store_at_version(path, version)
        self.assertEqual(schema_version(path), version)
        store = SQLiteUserStore(path, threads_reactor())
        yield store.open()
        try:
            snapshot = yield store.load()
            self.assertEqual(dict(snapshot.users), expected_users(version))
            self.assertEqual(dict(snapshot.states), expected_states(version))
            self.assertEqual(snapshot.generation, expected_generation(version))
            self.assertEqual((yield store.load_zone_history()), expected_zone_history(version))
            self.assertEqual((yield store.load_replay_states()), expected_replay_states(version))
            self.assertEqual((yield store.load_zone_records()), expected_zone_records(version))
            for user_id in expected_users(version):
                self.assertEqual((yield store.acme_keys(user_id)), expected_acme_keys(version).get(user_id, []))
            # the migrated file takes writes of every kind, after the old generation
            yield store.add_user(User("erin", hostnames=["erin.example.org"]))
            yield store.save_state(HostState("erin", ipv4="192.0.2.44"))
            changes = yield store.changes_since(0)
            self.assertGreater(changes.generation, expected_generation(version))
        finally:
            yield store.close()
        self.assertEqual(schema_version(path), SCHEMA_VERSION)

    def test_from_version_0(self):
        """An empty file (what a first start creates) gets the whole schema."""
        return self.check_migrates(0)

    def test_from_version_1(self):
        """Users, names, states, tombstones and the generation of version 1 survive."""
        return self.check_migrates(1)

    def test_from_version_2(self):
        """Version 2's zone serials and journal survive too."""
        return self.check_migrates(2)

    def test_from_version_3(self):
        """Version 3's TSIG replay records survive; the host zones' updated RRsets start empty."""
        return self.check_migrates(3)

    def test_from_version_4(self):
        """Version 4's host-zone RRsets survive; states get no ACME values, users no scoped keys."""
        return self.check_migrates(4)

    def test_current_version(self):
        """The current version's own rows (ACME values, scoped keys) read back as written."""
        return self.check_migrates(SCHEMA_VERSION)

    def test_every_earlier_version_tested(self) -> None:
        """A test method per earlier version: adding a migration means adding its test."""
        for version in range(SCHEMA_VERSION):
            self.assertTrue(hasattr(self, f"test_from_version_{version}"), version)


class StartCheckTests(SynchronousTestCase):
    """L{SQLiteUserStore.check}, what C{twistd dyndns} runs before it starts: one-line refusals."""

    def path(self, name: str = "users.sqlite") -> str:
        folder = self.mktemp()
        os.makedirs(folder)
        return os.path.join(folder, name)

    def assertRefused(self, path: str, *expected: str) -> str:
        with open(path, "rb") as f:
            before = f.read()
        error = self.assertRaises(StoreError, SQLiteUserStore(path).check)
        message = str(error)
        self.assertNotIn("\n", message)
        for part in (path, *expected):
            self.assertIn(part, message)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before, "a refused file must stay as it was")
        return message

    def test_newer_schema(self) -> None:
        path = self.path()
        build_store_at_version(path, SCHEMA_VERSION)
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
        conn.close()
        self.assertRefused(path, f"schema version {SCHEMA_VERSION + 1} is newer", "upgrade dyndns_plugin")

    def test_not_a_database(self) -> None:
        path = self.path()
        with open(path, "w") as f:
            f.write("[service]\nsuffix = 'dyn.test'\n" * 100)
        self.assertRefused(path, "not a database")

    def test_damaged_pages(self) -> None:
        """A store whose pages were overwritten in the middle: refused at the check, not at the first read."""
        path = self.path()
        damage_store(path)
        self.assertRefused(path, "damaged", "restore a backup")

    def test_intact_store_passes(self) -> None:
        """The same store, undamaged, passes (the check is not refusing everything)."""
        path = self.path()
        fill_store(path)
        SQLiteUserStore(path).check()


def fill_store(path: str, users: int = 2000) -> None:
    """A current-version store with C{users} users: many pages, and no WAL left beside it."""
    conn = connect(path)
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO users VALUES (?, NULL, NULL, NULL, 'hmac-md5', 0, NULL, NULL, ?, 0, 1)",
            [(f"user{i}", "notes " * 10) for i in range(users)],
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def damage_store(path: str) -> None:
    """L{fill_store}, then 4 KiB of garbage written over the middle of the file."""
    fill_store(path)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\xde\xad\xbe\xef" * 1024)
