"""
L{dyndns_plugin.store.backup}: backups of a live SQLite store, restores
checked and applied in one transaction, and a running service serving the
restored data after its next poll.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from ipaddress import IPv4Address

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from dyndns_plugin.model import HostState, User
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store import ReplayState, ZoneHistory
from dyndns_plugin.store.backup import KEPT_TABLES, USER_TABLES, BackupError, _schema_at, backup, restore
from dyndns_plugin.store.sqlite import SCHEMA_VERSION, SQLiteUserStore
from tests.store_conformance import ALICE, ALICE_STATE, BOB, ZONE, journal_step
from tests.store_versions import build_store_at_version, expected_states, expected_users
from tests.test_store_migrations import damage_store, schema_version

CAROL = User("carol", hostnames=["carol.example.org"])
CAROL_ADDRESS = IPv4Address("192.0.2.33")


def address(state: HostState | None) -> str | None:
    return None if state is None or state.ipv4 is None else state.ipv4.exploded


class BackupRestoreTests(TestCase):
    """Both directions on real files, with a live store open as a server holds it."""

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.live = os.path.join(self.folder, "users.sqlite")
        self.store = SQLiteUserStore(self.live, reactor)
        self.addCleanup(lambda: self.store.close())
        return self.store.open()

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    @defer.inlineCallbacks
    def fill(self):
        yield self.store.add_user(ALICE)
        yield self.store.add_user(BOB)
        yield self.store.save_state(ALICE_STATE)
        yield self.store.save_zone_version(ZONE, 5, "digest-5", journal_step(4, 5), 10)
        yield self.store.save_replay_state("alice.dyn.example.com.", ReplayState(1000, ((1000, b"\x01"),)))

    @defer.inlineCallbacks
    def start_service(self):
        """The service a server runs on the live store (polled by hand here)."""
        service = DynDNSService(self.store, "dyn.example.com", poll_interval=None)
        yield defer.ensureDeferred(service.start())
        return service

    def files(self) -> list[str]:
        return sorted(os.listdir(self.folder))

    # -- backup

    @defer.inlineCallbacks
    def test_backup_is_a_self_contained_copy(self):
        """
        Everything the store holds is in the backup, which is one file
        (rollback journal, no WAL beside it) readable by its owner only;
        no temporary file is left.
        """
        yield self.fill()
        target = self.path("backup.sqlite")
        before = set(self.files())
        info = backup(self.live, target)
        self.assertEqual((info.users, info.schema_version, info.size), (2, SCHEMA_VERSION, os.path.getsize(target)))
        self.assertEqual(set(self.files()) - before, {"backup.sqlite"})
        self.assertEqual(stat.S_IMODE(os.stat(target).st_mode), 0o600)
        conn = sqlite3.connect(target)
        try:
            self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "delete")
            self.assertEqual(conn.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        finally:
            conn.close()
        copy = SQLiteUserStore(target, reactor)
        yield copy.open()
        try:
            live, copied = (yield self.store.load()), (yield copy.load())
            self.assertEqual(copied, live)
            self.assertEqual((yield copy.load_zone_history()), (yield self.store.load_zone_history()))
            self.assertEqual((yield copy.load_replay_states()), (yield self.store.load_replay_states()))
        finally:
            yield copy.close()

    @defer.inlineCallbacks
    def test_existing_target_needs_force(self):
        """An existing file is left alone without force, replaced with it."""
        yield self.fill()
        target = self.path("backup.sqlite")
        with open(target, "w") as f:
            f.write("precious")
        error = self.assertRaises(BackupError, backup, self.live, target)
        self.assertIn("--force", str(error))
        with open(target) as f:
            self.assertEqual(f.read(), "precious")
        self.assertEqual(backup(self.live, target, force=True).users, 2)
        self.assertEqual(schema_version(target), SCHEMA_VERSION)

    def test_no_store(self) -> None:
        """No store file: an error, no backup file."""
        error = self.assertRaises(BackupError, backup, self.path("missing.sqlite"), self.path("b.sqlite"))
        self.assertIn("missing.sqlite", str(error))
        self.assertNotIn("b.sqlite", self.files())

    def test_damaged_store_gives_no_backup(self) -> None:
        """A damaged store is not copied into something that looks like a good backup."""
        damaged = self.path("damaged.sqlite")
        damage_store(damaged)
        before = self.files()
        error = self.assertRaises(BackupError, backup, damaged, self.path("b.sqlite"))
        self.assertIn("damaged", str(error))
        self.assertNotIn("\n", str(error))
        self.assertEqual(self.files(), before)

    # -- restore

    @defer.inlineCallbacks
    def test_running_service_serves_restored_data(self):
        """
        Backup, then changes (a new address, a removed user, a new user, a
        state the backup lacks), then restore: the service's next poll
        serves exactly the backup, with nothing left of the changes.
        """
        yield self.store.add_user(ALICE)
        yield self.store.add_user(BOB)
        yield self.store.add_user(CAROL)
        yield self.store.save_state(ALICE_STATE)
        service = yield self.start_service()
        backup(self.live, self.path("b.sqlite"))
        generation_at_backup = (yield self.store.load()).generation

        yield service.update("alice", [IPv4Address("198.51.100.99")], method="test")
        yield service.update("carol", [CAROL_ADDRESS], method="test")
        yield service.remove_user("bob")
        yield service.add_user(User("dave"))
        live_generation = (yield self.store.load()).generation
        self.assertEqual(address(service.registry.state("alice")), "198.51.100.99")

        info = restore(self.live, self.path("b.sqlite"))
        self.assertEqual((info.users, info.replaced, info.schema_version), (3, 3, SCHEMA_VERSION))
        self.assertGreater(info.generation, max(live_generation, generation_at_backup))
        yield service.poll()

        registry = service.registry
        self.assertEqual(dict(registry.users), {"alice": ALICE, "bob": BOB, "carol": CAROL})
        self.assertEqual(dict(registry.states), {"alice": ALICE_STATE})
        answer = registry.answer("alice.example.org")
        assert answer is not None
        self.assertEqual([str(a) for a in answer.addresses], ["198.51.100.7", "2001:db8::7"])
        self.assertIsNone(registry.answer("dave.dyn.example.com"))
        carol = registry.answer("carol.dyn.example.com")
        assert carol is not None
        self.assertEqual(carol.addresses, (), "carol had no address at the backup")
        # and the service writes on from there, durably
        result = yield service.update("carol", [CAROL_ADDRESS], method="test")
        self.assertTrue(result.ok, result)
        self.assertEqual(address((yield self.store.load()).states["carol"]), CAROL_ADDRESS.exploded)

    @defer.inlineCallbacks
    def test_other_process_sees_restore(self):
        """A second store on the file (another server) picks the restore up through changes_since."""
        yield self.fill()
        backup(self.live, self.path("b.sqlite"))
        peer = SQLiteUserStore(self.live, reactor)
        yield peer.open()
        try:
            mark = (yield peer.load()).generation
            yield self.store.remove_user("alice")
            restore(self.live, self.path("b.sqlite"))
            changes = yield peer.changes_since(mark)
        finally:
            yield peer.close()
        self.assertEqual(set(changes.users), {"alice", "bob"})
        self.assertEqual(changes.users["alice"], ALICE)
        self.assertEqual(set(changes.states), {"alice"})

    @defer.inlineCallbacks
    def test_zone_serials_never_go_back(self):
        """
        The store's zone serials and journal stay (the secondaries have
        them); zones only the backup knows come from it; replay records keep
        the newer time per key.
        """
        old = self.path("v3.sqlite")
        build_store_at_version(old, 3)  # example.org at 12, dyn.example.com at 4294967295
        yield self.store.save_zone_version("dyn.example.com", 100, "live", journal_step(99, 100), 10)
        yield self.store.save_replay_state("alice.dyn.example.com.", ReplayState(1800000000, ()))
        yield self.store.save_replay_state("bob.", ReplayState(5, ()))
        restore(self.live, old)
        history = yield self.store.load_zone_history()
        self.assertEqual(history["dyn.example.com"], ZoneHistory(100, "live", (journal_step(99, 100),)))
        self.assertEqual(history["example.org"].serial, 12)
        self.assertEqual(len(history["example.org"].steps), 1)
        replay = yield self.store.load_replay_states()
        self.assertEqual(replay["alice.dyn.example.com."], ReplayState(1800000000, ()))
        self.assertEqual(replay["bob."], ReplayState(5, ()))

    @defer.inlineCallbacks
    def test_older_backup_migrated(self):
        """A version 1 backup is restored at the current schema; the backup file itself is not changed."""
        old = self.path("v1.sqlite")
        build_store_at_version(old, 1)
        with open(old, "rb") as f:
            before = f.read()
        info = restore(self.live, old)
        self.assertEqual(info.schema_version, 1)
        snapshot = yield self.store.load()
        self.assertEqual(dict(snapshot.users), expected_users(1))
        self.assertEqual(dict(snapshot.states), expected_states(1))
        with open(old, "rb") as f:
            self.assertEqual(f.read(), before)

    @defer.inlineCallbacks
    def test_restore_creates_missing_store(self):
        """Restoring on a new machine: the store file is created, at the current schema."""
        yield self.fill()
        backup(self.live, self.path("b.sqlite"))
        fresh = self.path("fresh.sqlite")
        self.assertEqual(restore(fresh, self.path("b.sqlite")).users, 2)
        self.assertEqual(schema_version(fresh), SCHEMA_VERSION)
        store = SQLiteUserStore(fresh, reactor)
        yield store.open()
        try:
            self.assertEqual(dict((yield store.load()).users), {"alice": ALICE, "bob": BOB})
            self.assertEqual((yield store.load_zone_history()), (yield self.store.load_zone_history()))
        finally:
            yield store.close()

    @defer.inlineCallbacks
    def test_refusals_change_nothing(self):
        """
        Not SQLite, empty, another program's database, a newer schema, a
        dyndns file missing a table, a damaged one: each refused in one line
        naming the file, the store and the file unchanged.
        """
        yield self.fill()
        snapshot = yield self.store.load()
        cases: dict[str, str] = {}

        def case(name: str, expected: str) -> str:
            cases[name] = expected
            return self.path(name)

        with open(case("text.sqlite", "not an SQLite database"), "w") as f:
            f.write("SQLite? no.\n" * 50)
        open(case("empty.sqlite", "not an SQLite database"), "w").close()
        conn = sqlite3.connect(case("other.sqlite", "not a dyndns backup"))
        conn.executescript("CREATE TABLE notes (x TEXT); PRAGMA user_version = 2;")
        conn.close()
        newer = case("newer.sqlite", f"schema version {SCHEMA_VERSION + 1} is newer")
        build_store_at_version(newer, SCHEMA_VERSION)
        conn = sqlite3.connect(newer)
        conn.executescript(f"PRAGMA user_version = {SCHEMA_VERSION + 1};")
        conn.close()
        partial = case("partial.sqlite", "not a dyndns backup")
        build_store_at_version(partial, SCHEMA_VERSION)
        conn = sqlite3.connect(partial)
        conn.executescript("DROP TABLE tsig_replay;")
        conn.close()
        damage_store(case("damaged.sqlite", "damaged"))
        files_before = self.files()

        for name, expected in cases.items():
            path = self.path(name)
            with open(path, "rb") as f:
                content = f.read()
            error = self.assertRaises(BackupError, restore, self.live, path)
            message = str(error)
            self.assertNotIn("\n", message)
            self.assertIn(path, message)
            self.assertIn(expected, message, name)
            self.assertIn("nothing restored", message, name)
            with open(path, "rb") as f:
                self.assertEqual(f.read(), content, name)
        self.assertEqual((yield self.store.load()), snapshot)
        self.assertEqual(self.files(), files_before, "a temporary copy was left behind")

    def test_every_table_has_a_restore_rule(self) -> None:
        """A table added by a new migration must be given a rule here (replaced or kept)."""
        self.assertEqual(set(USER_TABLES) | set(KEPT_TABLES), set(_schema_at(SCHEMA_VERSION)))
        self.assertFalse(set(USER_TABLES) & set(KEPT_TABLES))
