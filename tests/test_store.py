"""The store conformance suite on both stores, and SQLite's durability."""

from __future__ import annotations

import os
import sqlite3
import stat

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from dyndns_plugin.model import HostState, User
from dyndns_plugin.store import StoreError, ZoneHistory
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteUserStore
from tests.store_conformance import ALICE, ALICE_STATE, ZONE, StoreConformanceMixin, journal_step
from tests.typing_helpers import threads_reactor


class MemoryStoreTests(StoreConformanceMixin, TestCase):
    def make_store(self) -> MemoryUserStore:
        return MemoryUserStore()

    def open_peer(self) -> defer.Deferred[MemoryUserStore]:
        return defer.succeed(self.store)

    def reopen(self) -> defer.Deferred[None]:
        return defer.succeed(None)  # the data lives in the object


class SQLiteStoreTests(StoreConformanceMixin, TestCase):
    def make_store(self) -> SQLiteUserStore:
        self.path = os.path.join(self.mktemp(), "users.sqlite")
        os.makedirs(os.path.dirname(self.path))
        return SQLiteUserStore(self.path, threads_reactor())

    @defer.inlineCallbacks
    def open_peer(self):
        peer = SQLiteUserStore(self.path, reactor)
        yield peer.open()
        self.addCleanup(peer.close)
        return peer

    @defer.inlineCallbacks
    def reopen(self):
        yield self.store.close()
        self.store = SQLiteUserStore(self.path, reactor)
        yield self.store.open()

    @defer.inlineCallbacks
    def test_durable_across_reopen(self):
        """What a write's Deferred acknowledged is there after a reopen."""
        yield self.store.add_user(ALICE)
        yield self.store.save_state(ALICE_STATE)
        yield self.reopen()
        snapshot = yield self.store.load()
        self.assertEqual(snapshot.users["alice"], ALICE)
        self.assertEqual(snapshot.states["alice"], ALICE_STATE)

    @defer.inlineCallbacks
    def test_bulk_changes_read_with_the_collector_paused(self):
        """
        Many rows changed by another process are read with the collector
        paused and what was read frozen after (a restore: 50,000 states made
        on the store thread); a few are read as usual. The same changes
        either way.
        """
        import gc

        from dyndns_plugin.store import sqlite as sqlite_store

        peer = yield self.open_peer()
        frozen: list[int] = []
        self.patch(gc, "freeze", lambda: frozen.append(1))
        for bulk, count in ((False, 2), (True, 3)):
            self.patch(sqlite_store, "_BULK_READ", 4 if not bulk else 2)
            before = yield self.store.changes_since(0)
            generation = before.generation
            yield peer.import_users([User(f"{'b' if bulk else 's'}{k}") for k in range(count)], [])
            changes = yield self.store.changes_since(generation)
            self.assertEqual(set(changes.users), {f"{'b' if bulk else 's'}{k}" for k in range(count)})
            self.assertEqual(len(frozen), int(bulk))
        self.assertTrue(gc.isenabled())

    @defer.inlineCallbacks
    def test_import_cache_given_back(self):
        """An import's larger page cache is set back after it, whether the import failed or not."""
        cache_size = lambda conn: conn.execute("PRAGMA cache_size").fetchone()[0]  # noqa: E731
        before = yield self.store._read(cache_size)
        yield self.store.import_users([User(f"u{i}") for i in range(10)], [HostState("u1", ipv4="192.0.2.1")])
        self.assertEqual((yield self.store._read(cache_size)), before)
        with self.assertRaises(StoreError):
            yield self.store.import_users([User("u20")], [HostState("ghost", ipv4="192.0.2.2")])
        self.assertEqual((yield self.store._read(cache_size)), before)
        self.assertEqual(len((yield self.store.load()).users), 10)

    def test_pragmas_and_schema(self) -> None:
        """WAL, the schema version, and a file only its owner can read."""
        conn = sqlite3.connect(self.path)
        try:
            self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")
            self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
        finally:
            conn.close()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    @defer.inlineCallbacks
    def test_newer_schema_refused(self):
        """A file written by a newer version is refused with a clear error, untouched."""
        yield self.store.close()
        conn = sqlite3.connect(self.path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
        conn.close()
        store = SQLiteUserStore(self.path, reactor)
        error = self.assertRaises(StoreError, store.check)
        self.assertIn("newer", str(error))
        failure = yield self.assertFailure(store.open(), StoreError)
        self.assertIn(self.path, str(failure))
        self.store = MemoryUserStore()  # for the cleanup

    def test_unwritable_path(self) -> None:
        """A store in a folder that does not exist fails check() with the path."""
        store = SQLiteUserStore(os.path.join(self.mktemp(), "missing", "x.sqlite"), threads_reactor())
        error = self.assertRaises(StoreError, store.check)
        self.assertIn("missing", str(error))

    @defer.inlineCallbacks
    def test_changes_from_another_connection(self):
        """
        Writes by another process (here: a second store on the same file)
        show up in changes_since; our own writes do not come back again.
        """
        yield self.store.add_user(ALICE)
        mark = (yield self.store.load()).generation
        yield self.store.save_state(ALICE_STATE)
        own = yield self.store.changes_since(mark)
        self.assertFalse(own, "own writes are known to the caller already")
        other = SQLiteUserStore(self.path, reactor)
        yield other.open()
        try:
            yield other.add_user(User("carol"))
            yield other.save_state(HostState("alice", ipv4="192.0.2.99"))
        finally:
            yield other.close()
        changes = yield self.store.changes_since(own.generation)
        self.assertEqual(set(changes.users), {"carol"})
        self.assertEqual(changes.states["alice"].ipv4.exploded, "192.0.2.99")

    @defer.inlineCallbacks
    def test_zone_history_durable(self):
        """Zone serials and journals are there after a reopen, as written."""
        steps = [journal_step(n, n + 1, n) for n in (2**32 - 2, 2**32 - 1, 1)]
        for step in steps:
            yield self.store.save_zone_version(ZONE, step.serial_to, "abc", step, 10)
        yield self.store.save_zone_version("example.org", 7, "def", None, 10)
        yield self.reopen()
        self.assertEqual(
            (yield self.store.load_zone_history()),
            {
                ZONE: ZoneHistory(2, "abc", tuple(steps)),
                "example.org": ZoneHistory(7, "def", ()),
            },
        )

    @defer.inlineCallbacks
    def test_migrate_v1(self):
        """
        A version 1 database (before zone transfers) is migrated to the
        current version on open: users, states, names and the generation
        are kept, and zone versions can be stored.
        """
        yield self.store.close()
        path = os.path.join(self.mktemp(), "v1.sqlite")
        os.makedirs(os.path.dirname(path))
        conn = sqlite3.connect(path, isolation_level=None)
        conn.executescript(MIGRATIONS[0])
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO users VALUES ('alice', NULL, '5f4dcc3b5aa765d61d8327deb882cf99', "
            "'c2VjcmV0', 'hmac-sha256', 0, '192.0.2.1', '2001:db8::1', 'family', 0, 3)"
        )
        conn.execute("INSERT INTO hostnames VALUES ('alice.example.org', 'alice', 0)")
        conn.execute("INSERT INTO hostnames VALUES ('*.alice.example.net', 'alice', 1)")
        conn.execute(
            "INSERT INTO states VALUES ('alice', '198.51.100.7', '2001:db8::7', 60, 0, "
            "1700000000.5, 'http', '203.0.113.9', 4)"
        )
        conn.execute("UPDATE meta SET value = 4 WHERE key = 'generation'")
        conn.close()
        self.store = SQLiteUserStore(path, reactor)
        yield self.store.open()
        snapshot = yield self.store.load()
        self.assertEqual(snapshot.users["alice"], ALICE)
        self.assertEqual(snapshot.states["alice"], ALICE_STATE)
        self.assertEqual(snapshot.generation, 4)
        self.assertEqual((yield self.store.load_zone_history()), {})
        step = journal_step(1, 2)
        yield self.store.save_zone_version(ZONE, 2, "abc", step, 10)
        self.assertEqual((yield self.store.load_zone_history()), {ZONE: ZoneHistory(2, "abc", (step,))})
        yield self.store.close()
        conn = sqlite3.connect(path)
        try:
            self.assertEqual(conn.execute("PRAGMA user_version").fetchone()[0], SCHEMA_VERSION)
            self.assertEqual(SCHEMA_VERSION, 5)
            self.assertEqual(conn.execute("SELECT COUNT(*) FROM tsig_replay").fetchone()[0], 0)
            self.assertEqual(conn.execute("SELECT COUNT(*) FROM zone_records").fetchone()[0], 0)
        finally:
            conn.close()

    def test_closed_store_refuses(self) -> None:
        """Operations on a closed store fail instead of hanging."""
        store = SQLiteUserStore(self.path, threads_reactor())
        self.failureResultOf(store.load(), StoreError)
        self.failureResultOf(store.save_state(ALICE_STATE), StoreError)


class JournalTextTests(TestCase):
    def test_chunked_encoding_is_json_dumps(self) -> None:
        """A step's records are encoded a thousand per call, into exactly the text of one json.dumps, and back."""
        import json

        from dyndns_plugin.store import sqlite as sqlite_store

        for count in (0, 1, 999, 1000, 1001, 2500):
            rrs = tuple((f"user{i}.dyn.example.com", 1, 60, bytes([192, 0, 2, i % 250])) for i in range(count))
            text = sqlite_store._rrs_to_text(rrs)
            self.assertEqual(text, json.dumps([[n, t, ttl, d.hex()] for n, t, ttl, d in rrs]), count)
            self.assertEqual(sqlite_store._rrs_from_text(text), rrs)
