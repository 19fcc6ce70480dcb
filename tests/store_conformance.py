"""
The contract every L{IUserStore} keeps. Mix L{StoreConformanceMixin} into a
trial C{TestCase} that defines C{make_store()} (and opens it in C{setUp}).
"""

from __future__ import annotations

import attrs
from twisted.internet import defer
from zope.interface.verify import verifyObject

from dyndns_plugin.model import HostState, User
from dyndns_plugin.store import (
    AcmeKey,
    IAcmeKeyStore,
    IReplayStore,
    IUserStore,
    IZoneJournal,
    JournalStep,
    NameTaken,
    NoSuchUser,
    ReplayState,
    StateConflict,
    StoreError,
    UserExists,
    ZoneHistory,
)
from tests.typing_helpers import TestCaseMixin

ALICE = User(
    "alice",
    password_hash=None,
    md5_verifier="5f4dcc3b5aa765d61d8327deb882cf99",
    tsig_secret="c2VjcmV0",
    tsig_algorithm="hmac-sha256",
    offline_ipv4="192.0.2.1",
    offline_ipv6="2001:db8::1",
    hostnames=["alice.example.org", "*.alice.example.net"],
    notes="family",
)
BOB = User("bob", hostnames=["bob.example.org"], disabled=True)
ALICE_STATE = HostState(
    "alice",
    ipv4="198.51.100.7",
    ipv6="2001:db8::7",
    ttl=60,
    offline=False,
    updated_at=1700000000.5,
    method="http",
    client_address="203.0.113.9",
)


ZONE = "dyn.example.com"
OTHER_ZONE = "example.org"
#: Record data of every byte value, and an empty one: rdata is bytes, not text.
ALL_BYTES = bytes(range(256))


def journal_step(serial_from: int, serial_to: int, marker: int = 0) -> JournalStep:
    """A step deleting one address and adding another (C{marker} tells steps apart)."""
    return JournalStep(
        serial_from,
        serial_to,
        ((f"old{marker}.{ZONE}", 1, 60, bytes((192, 0, 2, marker % 256))),),
        (
            (f"*.new{marker}.{ZONE}", 28, 3600, bytes(15) + bytes((marker % 256,))),
            (f"x{marker}.{ZONE}", 65280, 0, ALL_BYTES),
            (f"y{marker}.{ZONE}", 10, 1, b""),
        ),
    )


class StoreConformanceMixin(TestCaseMixin):
    def make_store(self):  # pragma: no cover - provided by the test case
        raise NotImplementedError

    def open_peer(self):  # pragma: no cover - provided by the test case
        """Another writer on the same data, opened; closed at clean-up."""
        raise NotImplementedError

    def reopen(self):  # pragma: no cover - provided by the test case
        """Close the store and open it again on the same data (self.store is the new one)."""
        raise NotImplementedError

    @defer.inlineCallbacks
    def test_batch_failure_isolated(self):
        """A failing write committed in the same batch as others fails alone; the others are stored."""
        yield self.store.add_user(ALICE)
        ds = [
            self.store.save_state(HostState("alice", ipv4="192.0.2.5")),
            self.store.save_state(HostState("ghost", ipv4="192.0.2.6")),
            self.store.add_user(User("carol")),
        ]
        results = yield defer.DeferredList(ds, consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, False, True])
        yield self.reopen()
        snapshot = yield self.store.load()
        self.assertEqual(set(snapshot.users), {"alice", "carol"})
        self.assertEqual(snapshot.states["alice"].ipv4.exploded, "192.0.2.5")
        self.assertNotIn("ghost", snapshot.states)

    @defer.inlineCallbacks
    def setUp(self):
        self.store = self.make_store()
        yield self.store.open()
        self.addCleanup(lambda: self.store.close())

    def test_interface(self) -> None:
        """The store provides IUserStore."""
        self.assertTrue(verifyObject(IUserStore, self.store))

    @defer.inlineCallbacks
    def test_empty(self):
        """A new store has no users, no states, generation 0."""
        snapshot = yield self.store.load()
        self.assertEqual((dict(snapshot.users), dict(snapshot.states)), ({}, {}))
        self.assertEqual(snapshot.generation, 0)

    @defer.inlineCallbacks
    def test_round_trip(self):
        """Every field of a user and a state comes back equal."""
        yield self.store.add_user(ALICE)
        yield self.store.save_state(ALICE_STATE)
        snapshot = yield self.store.load()
        self.assertEqual(snapshot.users["alice"], ALICE)
        self.assertEqual(snapshot.states["alice"], ALICE_STATE)

    @defer.inlineCallbacks
    def test_load_users(self):
        """Just the users asked for that exist, with their names and states, and the store's generation."""
        bob = User("bob", hostnames=["b.example.net", "*.bob.dyn.example.com"])
        yield self.store.add_user(ALICE)
        yield self.store.save_state(ALICE_STATE)
        yield self.store.add_user(bob)
        yield self.store.add_user(User("carol"))
        snapshot = yield self.store.load_users(["alice", "nobody", "carol", "alice"])
        self.assertEqual(dict(snapshot.users), {"alice": ALICE, "carol": User("carol")})
        self.assertEqual(dict(snapshot.states), {"alice": ALICE_STATE})
        self.assertEqual(snapshot.generation, (yield self.store.load()).generation)
        snapshot = yield self.store.load_users(["bob"])
        self.assertEqual(dict(snapshot.users), {"bob": bob})
        self.assertEqual(dict(snapshot.states), {})
        self.assertEqual(len((yield self.store.load_users([])).users), 0)

    @defer.inlineCallbacks
    def test_add_twice(self):
        """Adding an existing id fails and leaves the first user intact."""
        yield self.store.add_user(ALICE)
        with self.assertRaises(UserExists):
            yield self.store.add_user(User("alice", notes="impostor"))
        snapshot = yield self.store.load()
        self.assertEqual(snapshot.users["alice"], ALICE)

    @defer.inlineCallbacks
    def test_host_name_unique(self):
        """A host name belongs to one user; the second claim fails whole."""
        yield self.store.add_user(ALICE)
        thief = User("mallory", hostnames=["ok.example.org", "alice.example.org"])
        with self.assertRaises(NameTaken) as caught:
            yield self.store.add_user(thief)
        self.assertEqual((caught.exception.name, caught.exception.owner), ("alice.example.org", "alice"))
        snapshot = yield self.store.load()
        self.assertNotIn("mallory", snapshot.users)
        yield self.store.add_user(User("mallory", hostnames=["ok.example.org"]))

    @defer.inlineCallbacks
    def test_put_replaces_and_keeps_state(self):
        """put_user replaces the account but not the host state."""
        yield self.store.add_user(ALICE)
        yield self.store.save_state(ALICE_STATE)
        changed = User("alice", hostnames=["new.example.org"], notes="")
        yield self.store.put_user(changed)
        snapshot = yield self.store.load()
        self.assertEqual(snapshot.users["alice"], changed)
        self.assertEqual(snapshot.states["alice"], ALICE_STATE)
        # The dropped name is free again.
        yield self.store.add_user(User("carol", hostnames=["alice.example.org"]))

    @defer.inlineCallbacks
    def test_remove(self):
        """Removing deletes the user and its state; removing again fails."""
        yield self.store.add_user(ALICE)
        yield self.store.save_state(ALICE_STATE)
        yield self.store.remove_user("alice")
        snapshot = yield self.store.load()
        self.assertEqual((dict(snapshot.users), dict(snapshot.states)), ({}, {}))
        with self.assertRaises(NoSuchUser):
            yield self.store.remove_user("alice")

    @defer.inlineCallbacks
    def test_state_needs_user(self):
        """A state for a user that does not exist is refused."""
        with self.assertRaises(NoSuchUser):
            yield self.store.save_state(HostState("ghost", ipv4="192.0.2.1"))

    @defer.inlineCallbacks
    def test_conditional_state_write(self):
        """
        A write with C{expected} happens only over that committed state
        (None: no state yet); otherwise L{StateConflict} names the committed
        one and nothing changes.
        """
        yield self.store.add_user(ALICE)
        yield self.store.save_state(ALICE_STATE, expected=None)
        newer = attrs.evolve(ALICE_STATE, ipv4="198.51.100.8", updated_at=1700000001.0)
        with self.assertRaises(StateConflict) as caught:
            yield self.store.save_state(newer, expected=None)
        self.assertEqual(caught.exception.current, ALICE_STATE)
        stale = attrs.evolve(ALICE_STATE, ipv4="198.51.100.6")
        with self.assertRaises(StateConflict) as caught:
            yield self.store.save_state(newer, expected=stale)
        self.assertEqual(caught.exception.current, ALICE_STATE)
        snapshot = yield self.store.load_users(["alice"])
        self.assertEqual(snapshot.states["alice"], ALICE_STATE)
        yield self.store.save_state(newer, expected=ALICE_STATE)
        snapshot = yield self.store.load_users(["alice"])
        self.assertEqual(snapshot.states["alice"], newer)
        # over a state with challenge values, and with None in every column that may hold it
        bare = HostState("alice", offline=True)
        challenged = attrs.evolve(newer, txt=(("alice.example.org", "v1", 1700003600.25),))
        yield self.store.save_state(challenged, expected=newer)
        yield self.store.save_state(bare, expected=challenged)
        with self.assertRaises(StateConflict):
            yield self.store.save_state(newer, expected=challenged)
        yield self.store.save_state(newer, expected=bare)
        snapshot = yield self.store.load_users(["alice"])
        self.assertEqual(snapshot.states["alice"], newer)
        with self.assertRaises(NoSuchUser):
            yield self.store.save_state(HostState("ghost", ipv4="192.0.2.1"), expected=None)

    @defer.inlineCallbacks
    def test_conditional_write_sees_peer(self):
        """The condition is checked against what another writer committed, not a cached copy."""
        yield self.store.add_user(ALICE)
        yield self.store.save_state(ALICE_STATE)
        peer = yield self.open_peer()
        theirs = attrs.evolve(ALICE_STATE, ipv4="198.51.100.9")
        yield peer.save_state(theirs)
        with self.assertRaises(StateConflict) as caught:
            yield self.store.save_state(attrs.evolve(ALICE_STATE, ttl=120), expected=ALICE_STATE)
        self.assertEqual(caught.exception.current, theirs)

    @defer.inlineCallbacks
    def test_import_is_atomic(self):
        """One bad entry in an import leaves the store exactly as it was."""
        yield self.store.add_user(ALICE)
        before = yield self.store.load()
        with self.assertRaises(StoreError):
            yield self.store.import_users(
                [User("carol"), User("dave", hostnames=["alice.example.org"])],
                [HostState("carol", ipv4="192.0.2.3")],
            )
        after = yield self.store.load()
        self.assertEqual(dict(after.users), dict(before.users))
        self.assertEqual(dict(after.states), dict(before.states))
        self.assertEqual(after.generation, before.generation)

    @defer.inlineCallbacks
    def test_import_state_without_user(self):
        """An import's state for no user (among many good ones) is named and nothing is written."""
        yield self.store.add_user(ALICE)
        before = yield self.store.load()
        users = [User(f"u{i}") for i in range(50)]
        states = [HostState(f"u{i}", ipv4=f"192.0.2.{i}") for i in range(50)]
        states.insert(30, HostState("ghost", ipv4="192.0.2.200"))
        with self.assertRaises(NoSuchUser) as caught:
            yield self.store.import_users(users, states)
        self.assertEqual(caught.exception.user_id, "ghost")
        after = yield self.store.load()
        self.assertEqual((dict(after.users), dict(after.states)), (dict(before.users), dict(before.states)))
        self.assertEqual(after.generation, before.generation)

    @defer.inlineCallbacks
    def test_import_names_in_order(self):
        """
        An import puts its users in order: a name is free for a later user
        once an earlier one let it go, not before (users without names
        between them too).
        """
        yield self.store.add_user(ALICE)
        holder = ALICE.hostnames[0]
        bare = [User(f"plain{i}") for i in range(20)]
        with self.assertRaises(NameTaken) as caught:
            yield self.store.import_users([*bare, User("carol", hostnames=[holder]), User("alice"), *bare], [])
        self.assertEqual((caught.exception.name, caught.exception.owner), (holder, "alice"))
        self.assertNotIn("plain0", (yield self.store.load()).users)
        yield self.store.import_users([*bare, User("alice"), *bare, User("carol", hostnames=[holder])], [])
        snapshot = yield self.store.load()
        self.assertEqual((snapshot.users["carol"].hostnames, snapshot.users["alice"].hostnames), ((holder,), ()))
        self.assertEqual(len(snapshot.users), 22)

    @defer.inlineCallbacks
    def test_import(self):
        """An import adds and replaces users and states together."""
        yield self.store.add_user(ALICE)
        new_alice = User("alice", notes="replaced")
        yield self.store.import_users([new_alice, BOB], [HostState("bob", ipv6="2001:db8::b")])
        snapshot = yield self.store.load()
        self.assertEqual(snapshot.users, {"alice": new_alice, "bob": BOB})
        self.assertEqual(snapshot.states["bob"].ipv6.compressed, "2001:db8::b")

    @defer.inlineCallbacks
    def test_generation_advances(self):
        """Every committed write advances the generation; failed ones do not."""
        first = (yield self.store.load()).generation
        yield self.store.add_user(ALICE)
        second = (yield self.store.load()).generation
        self.assertGreater(second, first)
        with self.assertRaises(UserExists):
            yield self.store.add_user(ALICE)
        yield self.store.save_state(ALICE_STATE)
        third = (yield self.store.load()).generation
        self.assertGreater(third, second)

    @defer.inlineCallbacks
    def test_changes_since(self):
        """
        changes_since reports users, states and removals that another writer
        (another process on the same data) committed after a generation.
        """
        yield self.store.add_user(ALICE)
        yield self.store.add_user(BOB)
        mark = (yield self.store.load()).generation
        peer = yield self.open_peer()
        yield peer.save_state(ALICE_STATE)
        yield peer.remove_user("bob")
        changes = yield self.store.changes_since(mark)
        self.assertEqual(dict(changes.states), {"alice": ALICE_STATE})
        self.assertEqual(changes.removed, frozenset({"bob"}))
        self.assertEqual(dict(changes.users), {})
        self.assertGreater(changes.generation, mark)
        everything = yield self.store.changes_since(0)
        self.assertEqual(set(everything.users), {"alice"})
        nothing = yield self.store.changes_since(changes.generation)
        self.assertFalse(nothing)

    @defer.inlineCallbacks
    def test_readd_after_remove(self):
        """A user removed and added again is no longer reported as removed."""
        yield self.store.add_user(BOB)
        yield self.store.remove_user("bob")
        yield self.store.add_user(BOB)
        changes = yield self.store.changes_since(0)
        self.assertEqual(changes.removed, frozenset())
        self.assertEqual(set(changes.users), {"bob"})

    @defer.inlineCallbacks
    def test_concurrent_writes(self):
        """Many writes in flight at once all land, each with its own outcome."""
        users = [User(f"user{i}") for i in range(50)]
        results = yield defer.DeferredList(
            [self.store.add_user(u) for u in users] + [self.store.add_user(User("user7"))],
            consumeErrors=True,
        )
        self.assertTrue(all(ok for ok, _ in results[:50]))
        self.assertFalse(results[50][0])
        results[50][1].trap(UserExists)
        states = [HostState(f"user{i}", ipv4=f"192.0.2.{i + 1}") for i in range(50)]
        yield defer.gatherResults([self.store.save_state(s) for s in states])
        snapshot = yield self.store.load()
        self.assertEqual(len(snapshot.users), 50)
        self.assertEqual(snapshot.states["user49"].ipv4.exploded, "192.0.2.50")

    # -- zone serials and journals

    @defer.inlineCallbacks
    def test_challenge_values_round_trip(self):
        """A state's ACME challenge values come back equal from a load, and to another writer's poll."""
        state = attrs.evolve(
            ALICE_STATE, txt=(("alice.dyn.example.com", 'tok "1"', 1700000000.25), ("a.example.org", "t2", 1.0))
        )
        yield self.store.add_user(ALICE)
        mark = (yield self.store.load()).generation
        peer = yield self.open_peer()
        yield peer.save_state(state)
        self.assertEqual((yield self.store.changes_since(mark)).states["alice"], state)
        self.assertEqual((yield self.store.load()).states["alice"], state)
        yield peer.save_state(attrs.evolve(state, txt=()))
        self.assertEqual((yield self.store.load()).states["alice"].txt, ())

    @defer.inlineCallbacks
    def test_acme_keys(self):
        """Scoped ACME keys: added, listed oldest first, removed; gone with their user; none for others."""
        self.assertTrue(verifyObject(IAcmeKeyStore, self.store))
        yield self.store.add_user(ALICE)
        yield self.store.add_user(BOB)
        first, second = AcmeKey("k1", "aa" * 32, "web", 10.0), AcmeKey("k2", "bb" * 32, "", 20.0)
        yield self.store.add_acme_key("alice", second)
        yield self.store.add_acme_key("alice", first)
        self.assertEqual((yield self.store.acme_keys("alice")), [first, second])
        self.assertEqual((yield self.store.acme_keys("bob")), [])
        yield self.assertFailure(self.store.add_acme_key("nobody", first), NoSuchUser)
        self.assertTrue((yield self.store.remove_acme_key("alice", "k1")))
        self.assertFalse((yield self.store.remove_acme_key("alice", "k1")))
        self.assertEqual((yield self.store.acme_keys("alice")), [second])
        yield self.store.remove_user("alice")
        self.assertEqual((yield self.store.acme_keys("alice")), [])

    @defer.inlineCallbacks
    def test_replay_state_round_trip(self):
        """TSIG replay records: none at first, then each key's latest record, MAC bytes exact."""
        self.assertTrue(IReplayStore.providedBy(self.store))
        self.assertEqual((yield self.store.load_replay_states()), {})
        first = ReplayState(1700000000, ((1700000000, ALL_BYTES[:32]),))
        second = ReplayState(1700000005, ((1700000005, b"\x00" * 16), (1700000009, b"\xff" * 64)))
        yield self.store.save_replay_state("alice.dyn.example.com", first)
        yield self.store.save_replay_state("bob", first)
        yield self.store.save_replay_state("alice.dyn.example.com", second)
        self.assertEqual(
            (yield self.store.load_replay_states()),
            {"alice.dyn.example.com": second, "bob": first},
        )
        snapshot = yield self.store.load()
        self.assertEqual(dict(snapshot.users), {})  # not user data

    @defer.inlineCallbacks
    def test_replay_state_merge(self):
        """
        Two nodes' records of one key merge: the newest time of both, both
        sets of MACs (none older than C{oldest} or the newest time), and the
        fresh MACs the stored record already refused are named.
        """
        key, mac_a, mac_b, mac_c = "alice.dyn.example.com", b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32
        refused, merged = yield self.store.merge_replay_state(
            key, ReplayState(1000, ((1000, mac_a),)), [(mac_a, 1000)], 700
        )
        self.assertEqual((refused, merged), (set(), ReplayState(1000, ((1000, mac_a),))))
        # another node accepted mac_a too (it did not know), and mac_b; mac_c was signed before 1000
        theirs = ReplayState(1002, ((1000, mac_a), (1002, mac_b), (999, mac_c)))
        refused, merged = yield self.store.merge_replay_state(
            key, theirs, [(mac_a, 1000), (mac_b, 1002), (mac_c, 999)], 700
        )
        self.assertEqual(refused, {mac_a, mac_c})
        self.assertEqual(merged, ReplayState(1002, ((1002, mac_b),)))
        self.assertEqual((yield self.store.load_replay_states()), {key: merged})

    def test_zone_journal_interface(self) -> None:
        """The store provides IZoneJournal, apart from IUserStore's user data."""
        self.assertTrue(verifyObject(IZoneJournal, self.store))
        self.assertNotIn("save_zone_version", IUserStore.names())

    @defer.inlineCallbacks
    def test_zone_history_empty(self):
        """A new store knows no zone."""
        self.assertEqual((yield self.store.load_zone_history()), {})

    @defer.inlineCallbacks
    def test_zone_version_round_trip(self):
        """A serial, its digest and its steps come back equal, rdata bytes included."""
        yield self.store.save_zone_version(ZONE, 1000, "00112233445566ff", None, 10)
        self.assertEqual((yield self.store.load_zone_history()), {ZONE: ZoneHistory(1000, "00112233445566ff", ())})
        step = journal_step(1000, 1001, 7)
        yield self.store.save_zone_version(ZONE, 1001, "ffeeddccbbaa9988", step, 10)
        history = yield self.store.load_zone_history()
        self.assertEqual(history, {ZONE: ZoneHistory(1001, "ffeeddccbbaa9988", (step,))})
        [stored] = history[ZONE].steps
        self.assertEqual(stored.added[1][3], ALL_BYTES)
        self.assertIsInstance(stored.added[2][3], bytes)
        self.assertIsInstance(stored.deleted, tuple)

    @defer.inlineCallbacks
    def test_zone_journal_bounded(self):
        """Only the newest C{keep} steps are kept, oldest first, in the order written (serials wrap)."""
        serials = [2**32 - 3, 2**32 - 2, 2**32 - 1, 1, 2, 3]
        steps = [journal_step(a, b, i) for i, (a, b) in enumerate(zip(serials, serials[1:]))]
        for step in steps:
            yield self.store.save_zone_version(ZONE, step.serial_to, f"{step.serial_to:016x}", step, 3)
        history = (yield self.store.load_zone_history())[ZONE]
        self.assertEqual(history.serial, 3)
        self.assertEqual(history.digest, f"{3:016x}")
        self.assertEqual(history.steps, tuple(steps[-3:]))
        # a larger bound keeps more from then on, a bound of 0 none
        more = journal_step(3, 4, 9)
        yield self.store.save_zone_version(ZONE, 4, "d", more, 10)
        self.assertEqual((yield self.store.load_zone_history())[ZONE].steps, (*steps[-3:], more))
        yield self.store.save_zone_version(ZONE, 5, "e", journal_step(4, 5), 0)
        self.assertEqual((yield self.store.load_zone_history())[ZONE], ZoneHistory(5, "e", ()))

    @defer.inlineCallbacks
    def test_zone_step_none_empties(self):
        """A version without a step keeps its serial and digest and empties the journal."""
        yield self.store.save_zone_version(ZONE, 1001, "a", journal_step(1000, 1001), 10)
        yield self.store.save_zone_version(ZONE, 1002, "b", journal_step(1001, 1002), 10)
        yield self.store.save_zone_version(ZONE, 1005, "c", None, 10)
        self.assertEqual((yield self.store.load_zone_history()), {ZONE: ZoneHistory(1005, "c", ())})
        step = journal_step(1005, 1006)
        yield self.store.save_zone_version(ZONE, 1006, "d", step, 10)
        self.assertEqual((yield self.store.load_zone_history())[ZONE].steps, (step,))

    @defer.inlineCallbacks
    def test_zone_history_since(self):
        """
        With the serial a follower has, a zone's steps start at the one from
        it; none when it is the stored serial; all when no step starts there.
        Zones not named come whole.
        """
        steps = [journal_step(serial, serial + 1, serial) for serial in range(1000, 1004)]
        for step in steps:
            yield self.store.save_zone_version(ZONE, step.serial_to, f"d{step.serial_to}", step, 10)
        yield self.store.save_zone_version(OTHER_ZONE, 7, "o", journal_step(6, 7), 10)
        history = yield self.store.load_zone_history({ZONE: 1002})
        self.assertEqual(history[ZONE], ZoneHistory(1004, "d1004", tuple(steps[2:])))
        self.assertEqual(history[OTHER_ZONE].steps, (journal_step(6, 7),))
        history = yield self.store.load_zone_history({ZONE: 1004, OTHER_ZONE: 7})
        self.assertEqual(history, {ZONE: ZoneHistory(1004, "d1004"), OTHER_ZONE: ZoneHistory(7, "o")})
        history = yield self.store.load_zone_history({ZONE: 999})
        self.assertEqual(history[ZONE].steps, tuple(steps))

    @defer.inlineCallbacks
    def test_zone_step_replaced(self):
        """
        A step from a serial already stored (written before a publish that
        failed, then computed again) replaces the old one, not added twice.
        """
        first = journal_step(1000, 1001, 1)
        yield self.store.save_zone_version(ZONE, 1001, "a", first, 10)
        stale = journal_step(1001, 1002, 2)
        yield self.store.save_zone_version(ZONE, 1002, "b", stale, 10)
        again = journal_step(1001, 1002, 3)
        yield self.store.save_zone_version(ZONE, 1002, "c", again, 10)
        self.assertEqual((yield self.store.load_zone_history()), {ZONE: ZoneHistory(1002, "c", (first, again))})

    @defer.inlineCallbacks
    def test_zones_apart(self):
        """Each zone has its own serial, digest and journal, and its own bound."""
        a = [journal_step(n, n + 1, n) for n in range(1, 4)]
        b = [journal_step(n, n + 1, n + 100) for n in range(500, 503)]
        # the other zone's steps are older than all of the first zone's,
        # which then drops its own oldest step only
        for y in b:
            yield self.store.save_zone_version(OTHER_ZONE, y.serial_to, "zb", y, 3)
        for x in a:
            yield self.store.save_zone_version(ZONE, x.serial_to, "za", x, 2)
        history = yield self.store.load_zone_history()
        self.assertEqual(
            history, {ZONE: ZoneHistory(4, "za", tuple(a[-2:])), OTHER_ZONE: ZoneHistory(503, "zb", tuple(b))}
        )
        yield self.store.save_zone_version(ZONE, 9, "z", None, 2)
        history = yield self.store.load_zone_history()
        self.assertEqual(history[OTHER_ZONE], ZoneHistory(503, "zb", tuple(b)))
        self.assertEqual(history[ZONE], ZoneHistory(9, "z", ()))

    @defer.inlineCallbacks
    def test_zone_history_is_not_user_data(self):
        """Zone versions do not show up as user changes, and do not disturb users."""
        yield self.store.add_user(ALICE)
        before = yield self.store.load()
        yield self.store.save_zone_version(ZONE, 2, "a", journal_step(1, 2), 10)
        after = yield self.store.load()
        self.assertEqual(dict(after.users), dict(before.users))
        changes = yield self.store.changes_since(before.generation)
        self.assertFalse(changes)
