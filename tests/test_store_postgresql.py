"""
The PostgreSQL store on a real PostgreSQL 15 server (L{tests.postgres}
starts one per test process; each test gets a database of its own): the
conformance suite, and what only several nodes on one database need: the
change feed, the publisher lock, fenced zone serials, migrations under a
lock, and failing cleanly (and recovering) when the server goes away.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import attrs
from twisted.internet import defer, reactor, task
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from dyndns_plugin.model import HostState, User
from dyndns_plugin.store import AcmeKey, NoSuchUser, StateConflict, StoreError, ZoneHistory
from dyndns_plugin.store import ZoneConflict as StoreZoneConflict
from tests.postgres import cluster, new_database
from tests.store_conformance import ALICE, ALICE_STATE, BOB, OTHER_ZONE, ZONE, StoreConformanceMixin, journal_step
from tests.tools import unavailable
from tests.typing_helpers import log_observer, threads_reactor

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from dyndns_plugin.store import postgresql
    from dyndns_plugin.store.postgresql import SCHEMA_VERSION, PostgreSQLUserStore, ZoneConflict, connection_info
except ImportError:  # pragma: no cover - depends on the machine
    unavailable("psycopg is not installed (pip install 'psycopg[binary,pool]')")


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "the condition"):
    """Fire once C{condition()} is true (polled on the reactor); fail after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        yield sleep(0.02)


def sql(dsn: str, statement: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection (autocommit); its rows."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement.encode(), args)
        return cursor.fetchall() if cursor.description else []


class Watcher:
    """What a store's watch() called, in order."""

    def __init__(self) -> None:
        self.changes = 0
        self.zones: list[str | None] = []
        self.leader: list[bool] = []

    def on_change(self) -> None:
        self.changes += 1

    def watch(self, store: PostgreSQLUserStore, leader: bool = False) -> None:
        store.watch(self.on_change, self.zones.append, self.leader.append if leader else None)


class PostgreSQLStoreTests(StoreConformanceMixin, TestCase):
    def make_store(self) -> PostgreSQLUserStore:
        self.dsn = new_database(self)
        return PostgreSQLUserStore(self.dsn, threads_reactor())

    @defer.inlineCallbacks
    def open_peer(self):
        peer = PostgreSQLUserStore(self.dsn, threads_reactor())
        yield peer.open()
        self.addCleanup(peer.close)
        return peer

    @defer.inlineCallbacks
    def reopen(self):
        yield self.store.close()
        self.store = PostgreSQLUserStore(self.dsn, threads_reactor())
        yield self.store.open()

    @defer.inlineCallbacks
    def test_durable_across_reopen(self):
        """What a write's Deferred acknowledged is there after a reopen, notes with any character included."""
        odd = attrs.evolve(ALICE, notes="nul \x00, umlaut \u00fc, emoji \U0001f600")
        yield self.store.add_user(odd)
        yield self.store.save_state(attrs.evolve(ALICE_STATE, updated_at=0.1 + 0.2))
        yield self.reopen()
        snapshot = yield self.store.load()
        self.assertEqual(snapshot.users["alice"], odd)
        self.assertEqual(snapshot.states["alice"].updated_at, 0.1 + 0.2)

    @defer.inlineCallbacks
    def test_changes_from_another_store(self):
        """Another node's writes show up in changes_since; our own do not come back again."""
        yield self.store.add_user(ALICE)
        mark = (yield self.store.load()).generation
        yield self.store.save_state(ALICE_STATE)
        own = yield self.store.changes_since(mark)
        self.assertFalse(own, "own writes are known to the caller already")
        self.assertGreater(own.generation, mark)
        peer = yield self.open_peer()
        yield peer.add_user(User("carol"))
        yield peer.save_state(HostState("alice", ipv4="192.0.2.99"))
        yield self.store.add_user(User("dave"))
        changes = yield self.store.changes_since(own.generation)
        self.assertEqual(set(changes.users), {"carol"})
        self.assertEqual(changes.states["alice"].ipv4.exploded, "192.0.2.99")
        # asked from further back than the last look: everything, our own writes too
        everything = yield self.store.changes_since(0)
        self.assertEqual(set(everything.users), {"alice", "carol", "dave"})

    def queue_behind_a_held_read(self) -> threading.Event:
        """Hold the store's thread in a read until the event is set: the writes queued meanwhile make one batch."""
        gate = threading.Event()
        self.store._read(lambda conn: gate.wait(10))
        return gate

    @defer.inlineCallbacks
    def test_conditional_writes_of_a_batch_together(self):
        """
        A batch's conditional state writes are made in one statement for
        those over a state and one for first states; the ones whose expected
        state is not the committed one (and a second write of one user) go
        alone and fail or pass as they would alone. One transaction.
        """
        names = [f"u{i}" for i in range(8)]
        for name in names:
            yield self.store.add_user(User(name))
        states = {name: HostState(name, ipv4=f"192.0.2.{i + 1}") for i, name in enumerate(names[:3])}
        for state in states.values():
            yield self.store.save_state(state)
        together: list[set[int]] = []
        original = postgresql._saved_together

        def spy(conn: Any, functions: Any, generation: int) -> set[int]:
            done = original(conn, functions, generation)
            together.append(done)
            return done

        self.patch(postgresql, "_saved_together", spy)
        before = (yield self.store.load()).generation
        new = {name: HostState(name, ipv4=f"198.51.100.{i + 1}") for i, name in enumerate(names)}
        gate = self.queue_behind_a_held_read()
        writes = [
            self.store.save_state(new["u0"], expected=states["u0"]),
            self.store.save_state(new["u1"], expected=states["u1"]),
            self.store.save_state(new["u2"], expected=HostState("u2", ipv4="192.0.2.99")),  # stale
            self.store.save_state(new["u6"], expected=None),
            self.store.save_state(new["u7"], expected=None),
            self.store.save_state(new["u1"], expected=None),  # u1 twice: both alone; it has a state: a conflict
            self.store.save_state(new["u5"], expected=None),
            self.store.save_state(new["u5"], expected=new["u5"]),  # u5 twice: both alone, in order
        ]
        gate.set()
        results = yield defer.DeferredList(writes, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, True, False, True, True, False, True, True])
        results[2][1].trap(StateConflict)
        self.assertEqual(results[2][1].value.current, states["u2"])
        results[5][1].trap(StateConflict)
        self.assertEqual(together, [{0, 3, 4}])
        snapshot = yield self.store.load()
        self.assertEqual(snapshot.generation, before + 1)
        expected_states = {**states, **{n: new[n] for n in ("u0", "u1", "u5", "u6", "u7")}}
        self.assertEqual(dict(snapshot.states), expected_states)

    @defer.inlineCallbacks
    def test_batch_with_a_removed_user_goes_one_by_one(self):
        """A first state of a user that is gone fails the joint statement: each write then goes alone."""
        for name in ("u0", "u1"):
            yield self.store.add_user(User(name))
        gate = self.queue_behind_a_held_read()
        writes = [
            self.store.save_state(HostState(name, ipv4="192.0.2.1"), expected=None) for name in ("u0", "ghost", "u1")
        ]
        gate.set()
        results = yield defer.DeferredList(writes, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, False, True])
        results[1][1].trap(NoSuchUser)
        self.assertEqual(set((yield self.store.load()).states), {"u0", "u1"})

    @defer.inlineCallbacks
    def test_polling_misses_nothing(self):
        """
        A node that applies changes_since from the generation it last saw
        misses no write of two others, even when the one that took the
        smaller generation is still in its transaction while the other
        writes: the other waits, so no commit lands behind a generation
        already read.
        """
        yield self.store.import_users([User("slow"), User("fast")], [])
        first = yield self.open_peer()
        second = yield self.open_peer()
        generation = (yield self.store.load()).generation

        def slow_write(op: Any) -> None:
            op.conn.execute(
                postgresql._SAVE_STATE, postgresql._state_row(HostState("slow", ipv4="192.0.2.1"), op.generation)
            )
            op.conn.execute("SELECT pg_sleep(0.5)")

        slow = first._write(slow_write)
        yield sleep(0.1)
        fast = second.save_state(HostState("fast", ipv4="192.0.2.2"))
        states: dict[str, HostState] = {}
        while not (slow.called and fast.called):
            changes = yield self.store.changes_since(generation)
            states.update(changes.states)
            generation = changes.generation
            yield sleep(0.02)
        yield defer.gatherResults([slow, fast])
        states.update((yield self.store.changes_since(generation)).states)
        self.assertEqual(states, dict((yield self.store.load()).states))
        self.assertEqual(set(states), {"slow", "fast"})

    # -- the change feed

    @defer.inlineCallbacks
    def test_watch_catch_up_and_changes(self):
        """
        watch() calls on_change and on_zone(None) once at the start, then
        on_change after another node's user write and on_zone(origin) after
        its zone version; not for a write that changes no user, nor for the
        store's own writes (their Deferreds told).
        """
        watcher = Watcher()
        watcher.watch(self.store)
        yield wait_until(lambda: watcher.changes == 1 and watcher.zones == [None], what="the catch-up calls")
        peer = yield self.open_peer()
        yield self.store.add_user(BOB)
        yield peer.add_user(ALICE)
        yield wait_until(lambda: watcher.changes >= 2, what="on_change")
        yield sleep(0.1)
        self.assertEqual(watcher.changes, 2)
        yield peer.save_zone_version(ZONE, 7, "d", None, 10)
        yield wait_until(lambda: watcher.zones == [None, ZONE], what="on_zone")
        yield peer.save_zone_records(OTHER_ZONE, {("a." + OTHER_ZONE, 1): ()}, None, "", None, 10)
        yield peer.add_acme_key("alice", AcmeKey("k1", "aa" * 32, "web", 10.0))
        yield peer.save_state(ALICE_STATE)
        yield wait_until(lambda: watcher.changes == 3, what="on_change after the state")
        self.assertEqual(watcher.zones, [None, ZONE])  # records without a serial: no zone version
        self.assertEqual(watcher.changes, 3)  # the key changed no user or state

    @defer.inlineCallbacks
    def test_notification_payloads(self):
        """
        dyndns_changes carries "<generation> <user ids>" (or "<generation> *"
        when that would be long); dyndns_zones carries the origin.
        """
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("LISTEN dyndns_changes; LISTEN dyndns_zones")
            yield self.store.add_user(BOB)
            yield self.store.import_users([User("carol"), User("dave")], [], remove=["bob"])
            many = [User(f"user-{i:05d}") for i in range(2000)]
            yield self.store.import_users(many, [])
            yield self.store.save_zone_version(ZONE, 2, "d", None, 10)
            generation = (yield self.store.load()).generation
            received = [(n.channel, n.payload) for n in conn.notifies(timeout=1, stop_after=4)]
        self.assertEqual(
            received,
            [
                ("dyndns_changes", f"{generation - 3} bob"),
                ("dyndns_changes", f"{generation - 2} bob carol dave"),
                ("dyndns_changes", f"{generation - 1} *"),
                ("dyndns_zones", ZONE),
            ],
        )

    # -- the publisher lock

    @defer.inlineCallbacks
    def test_one_leader(self):
        """Of two nodes watching with on_leader, exactly one leads; when it closes, the other takes over."""
        first, second = Watcher(), Watcher()
        peer = yield self.open_peer()
        first.watch(self.store, leader=True)
        second.watch(peer, leader=True)
        yield wait_until(lambda: first.leader or second.leader, what="a leader")
        yield sleep(1.5)  # the other tried again, at least once
        self.assertEqual(sorted(first.leader + second.leader), [True])
        leader, other = (self.store, second) if first.leader else (peer, first)
        yield leader.close()
        yield wait_until(lambda: other.leader == [True], timeout=5, what="the takeover")

    # -- fenced zone serials

    @defer.inlineCallbacks
    def test_zone_fencing(self):
        """
        A step applies over the serial it starts from; over another node's
        newer version it fails with ZoneConflict and writes nothing, records
        included.
        """
        peer = yield self.open_peer()
        yield self.store.save_zone_version(ZONE, 1001, "a", journal_step(1000, 1001), 10)
        yield peer.save_zone_version(ZONE, 1002, "b", journal_step(1001, 1002, 2), 10)
        before = yield self.store.load_zone_history()
        failure = yield self.assertFailure(
            self.store.save_zone_version(ZONE, 1002, "mine", journal_step(1001, 1002, 3), 10), ZoneConflict
        )
        self.assertIsInstance(failure, StoreZoneConflict)  # what the publisher catches
        self.assertEqual((failure.current, failure.expected), (1002, 1001))
        yield self.assertFailure(
            self.store.save_zone_records(ZONE, {("x." + ZONE, 1): ()}, 1002, "c", journal_step(1001, 1002), 10),
            ZoneConflict,
        )
        self.assertEqual((yield self.store.load_zone_history()), before)
        self.assertEqual((yield self.store.load_zone_records()), {})
        # nor may the peer write its step again over a version it did not write
        yield self.store.save_zone_version(ZONE, 1003, "c", journal_step(1002, 1003), 10)
        yield self.assertFailure(peer.save_zone_version(ZONE, 1003, "p", journal_step(1002, 1003), 10), ZoneConflict)
        # a version without a step is not fenced (the journal starts anew)
        yield peer.save_zone_version(ZONE, 2000, "new", None, 10)
        self.assertEqual((yield self.store.load_zone_history())[ZONE], ZoneHistory(2000, "new", ()))

    # -- schema

    @defer.inlineCallbacks
    def test_migrated_from_empty_at_once(self):
        """
        Several nodes opening one empty database together migrate it once,
        under the lock, to the current version (that of the SQLite store).
        """
        dsn = new_database(self)
        stores = [PostgreSQLUserStore(dsn, threads_reactor()) for _ in range(4)]
        yield defer.gatherResults([store.open() for store in stores])
        for store in stores:
            self.addCleanup(store.close)
        self.assertEqual(
            sql(dsn, "SELECT key, value FROM meta ORDER BY key"), [("generation", 0), ("schema_version", 5)]
        )
        self.assertEqual(SCHEMA_VERSION, 5)
        tables = {name for (name,) in sql(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        self.assertEqual(
            tables,
            {"meta", "users", "hostnames", "states", "removed", "zones", "zone_journal", "tsig_replay", "zone_records"}
            | {"acme_keys"},
        )
        yield stores[0].add_user(ALICE)
        self.assertEqual(set((yield stores[3].load()).users), {"alice"})

    @defer.inlineCallbacks
    def test_migrate_v1(self):
        """A version 1 database is migrated on open, its users, states and generation kept."""
        dsn = new_database(self)
        sql(dsn, postgresql.MIGRATIONS[0])
        sql(dsn, "UPDATE meta SET value = 1 WHERE key = 'schema_version'")
        sql(dsn, "UPDATE meta SET value = 4 WHERE key = 'generation'")
        sql(
            dsn,
            "INSERT INTO users VALUES ('alice', NULL, '5f4dcc3b5aa765d61d8327deb882cf99', 'c2VjcmV0', 'hmac-sha256',"
            " false, '192.0.2.1', '2001:db8::1', 'family', false, 3)",
        )
        sql(dsn, "INSERT INTO hostnames VALUES ('alice.example.org', 'alice', 0), ('*.alice.example.net', 'alice', 1)")
        sql(
            dsn,
            "INSERT INTO states VALUES ('alice', '198.51.100.7', '2001:db8::7', 60, false, 1700000000.5, 'http',"
            " '203.0.113.9', 4)",
        )
        store = PostgreSQLUserStore(dsn, threads_reactor())
        yield store.open()
        self.addCleanup(store.close)
        snapshot = yield store.load()
        self.assertEqual((snapshot.users["alice"], snapshot.states["alice"]), (ALICE, ALICE_STATE))
        self.assertEqual(snapshot.generation, 4)
        self.assertEqual(sql(dsn, "SELECT value FROM meta WHERE key = 'schema_version'"), [(5,)])

    @defer.inlineCallbacks
    def test_newer_schema_refused(self):
        """A database of a newer schema is refused by check() and open(), named without its password."""
        yield self.store.close()
        sql(self.dsn, "UPDATE meta SET value = %s WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
        store = PostgreSQLUserStore(self.dsn + " password=hunter2", threads_reactor())
        error = self.assertRaises(StoreError, store.check)
        self.assertIn("newer", str(error))
        self.assertIn(self.dsn.split()[-1], str(error))  # dbname=...
        failure = yield self.assertFailure(store.open(), StoreError)
        self.assertIn("newer", str(failure))
        self.assertNotIn("hunter2", str(error) + str(failure))
        self.assertEqual(sql(self.dsn, "SELECT value FROM meta WHERE key = 'schema_version'"), [(SCHEMA_VERSION + 1,)])

    @defer.inlineCallbacks
    def test_connection_settings(self):
        """
        Connections get a statement timeout and keepalives unless the DSN
        sets its own; a statement past the timeout fails its write alone,
        with StoreError.
        """
        settings = "SELECT current_setting('statement_timeout'), current_setting('tcp_keepalives_idle')"
        show = lambda conn: conn.execute(settings).fetchone()  # noqa: E731
        self.assertEqual((yield self.store._read(show)), ("10s", "5"))
        info = conninfo_to_dict(connection_info(self.dsn + " keepalives_idle=30"))
        self.assertEqual(
            (info["keepalives_idle"], info["keepalives_interval"], info["connect_timeout"]), ("30", "2", "5")
        )
        impatient = PostgreSQLUserStore(self.dsn + " options='-c statement_timeout=300'", threads_reactor())
        yield impatient.open()
        self.addCleanup(impatient.close)
        self.assertEqual((yield impatient._read(show)), ("300ms", "5"))
        slow = impatient._write(lambda op: op.conn.execute("SELECT pg_sleep(5)"))
        added = impatient.add_user(ALICE)
        failure = yield self.assertFailure(slow, StoreError)
        self.assertIn("statement timeout", str(failure))
        yield added
        self.assertEqual(set((yield self.store.load()).users), {"alice"})

    # -- the server going away

    @defer.inlineCallbacks
    def test_server_down_and_back(self):
        """
        With the server stopped, reads and writes fail with StoreError (not
        a psycopg error, not a hang); once it is back, the same store reads
        and writes again, and its listener (which logged the outage once)
        catches up and takes the lock again.
        """
        server = cluster()
        messages = captured_log(self)
        self.store.connection_wait = 1.0  # for the failures only
        watcher = Watcher()
        watcher.watch(self.store, leader=True)
        yield self.store.add_user(ALICE)
        yield wait_until(lambda: watcher.leader == [True] and watcher.changes >= 1, what="the listener")
        server.stop()
        self.addCleanup(server.start)
        started = time.monotonic()
        failure = yield self.assertFailure(self.store.save_state(ALICE_STATE), StoreError)
        self.assertTrue(str(failure).startswith("postgresql: "), str(failure))
        yield self.assertFailure(self.store.load(), StoreError)
        self.assertLess(time.monotonic() - started, 8)
        # Queued behind a failure, writes fail at once, not each after its
        # own wait for a connection (a client's 911 would take 10 s).
        queued = time.monotonic()
        writes = [self.store.save_state(attrs.evolve(ALICE_STATE, ttl=ttl)) for ttl in range(10, 15)]
        for write in writes:
            failure = yield self.assertFailure(write, StoreError)
            self.assertIn("unreachable", str(failure))
        self.assertLess(time.monotonic() - queued, self.store.connection_wait)
        yield wait_until(lambda: watcher.leader == [True, False], what="the lost lock")
        self.assertRaises(StoreError, PostgreSQLUserStore(self.dsn).check)
        yield sleep(1.0)  # the listener tries again, and fails again, meanwhile
        changes_before = watcher.changes
        server.start()
        self.store.connection_wait = PostgreSQLUserStore.connection_wait
        yield self.store.save_state(ALICE_STATE)
        self.assertEqual((yield self.store.load()).states["alice"], ALICE_STATE)
        yield wait_until(lambda: watcher.leader == [True, False, True], what="the lock again")
        self.assertGreater(watcher.changes, changes_before)  # the catch-up after reconnecting
        feed = [m for m in messages if "change feed" in m]
        self.assertEqual(len(feed), 2, feed)
        self.assertTrue(feed[0].startswith(f"no change feed from PostgreSQL at {self.store.label} ("), feed)
        self.assertEqual(feed[1], f"the change feed of PostgreSQL at {self.store.label} is back")

    @defer.inlineCallbacks
    def test_open_without_server(self):
        """
        With the server down, open() fails at once; with retry_open it logs
        that it retries (no password in the line), and opens once the server
        is back; closed meanwhile, it stops trying.
        """
        server = cluster()
        server.stop()
        self.addCleanup(server.start)
        started = time.monotonic()
        failure = yield self.assertFailure(PostgreSQLUserStore(self.dsn, threads_reactor()).open(), StoreError)
        self.assertIn("could not connect", str(failure))
        self.assertLess(time.monotonic() - started, 6)
        messages = captured_log(self)
        given_up = PostgreSQLUserStore(self.dsn, threads_reactor(), retry_open=True)
        opening = given_up.open()
        store = PostgreSQLUserStore(self.dsn + " password=hunter2", threads_reactor(), retry_open=True)
        opened = store.open()
        self.addCleanup(store.close)
        retries = lambda: [m for m in messages if "retrying" in m]  # noqa: E731
        yield wait_until(lambda: len(retries()) >= 2, what="the log")
        yield given_up.close()
        yield self.assertFailure(opening, StoreError)
        self.assertNoResult(opened)
        prefix = f"could not connect to PostgreSQL at {store.label} ("
        self.assertTrue(all(m.startswith(prefix) and m.endswith("); retrying in 2 s") for m in retries()), retries())
        self.assertNotIn("hunter2", "".join(messages))
        server.start()
        yield opened
        yield store.add_user(ALICE)


def captured_log(testcase: TestCase) -> list[str]:
    """The text of every log event from now until C{testcase} ends."""
    messages: list[str] = []
    observer = log_observer(lambda event: messages.append(formatEvent(event)))
    globalLogPublisher.addObserver(observer)
    testcase.addCleanup(globalLogPublisher.removeObserver, observer)
    return messages
