"""
The TSIG replay record (L{dyndns_plugin.protocols.tsig_replay}): saves of
one key coalesce while one is being written, and each acceptance is told
only once a save that holds it is stored.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.protocols.tsig_replay import MAX_MACS_PER_KEY, ReplayCache, ReplayRefused
from dyndns_plugin.store import ReplayState
from dyndns_plugin.store.memory import MemoryUserStore

T = 1_800_000_000


class HeldSaves(MemoryUserStore):
    """The memory store, whose replay saves complete when the test says (a slow disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.saves: list[tuple[ReplayState, defer.Deferred[None]]] = []

    def save_replay_state(self, key: str, state: ReplayState) -> defer.Deferred[None]:
        stored = super().save_replay_state(key, state)
        held: defer.Deferred[None] = defer.Deferred()
        self.saves.append((state, held))
        return stored.addCallback(lambda _: held)


class CoalescingTests(SynchronousTestCase):
    def test_saves_coalesce(self) -> None:
        store = HeldSaves()
        cache = ReplayCache(store, 300)
        done: list[int] = []
        for i in range(5):
            cache.accept("k.", T, b"mac%d" % i, T).addCallback(lambda _, n: done.append(n), i)
        self.assertEqual(len(store.saves), 1)  # the first save; the other four wait for the next
        self.assertEqual(len(store.saves[0][0].macs), 1)
        store.saves[0][1].callback(None)
        self.assertEqual(done, [0])
        self.assertEqual(len(store.saves), 2)
        self.assertEqual(len(store.saves[1][0].macs), 5)  # one save holds all four
        self.assertEqual(cache.verdict("k.", T, b"mac3", T), "already accepted")
        store.saves[1][1].callback(None)
        self.assertEqual(done, [0, 1, 2, 3, 4])
        self.assertEqual(len(store.saves), 2)

    def test_failed_save_fails_its_waiters(self) -> None:
        store = HeldSaves()
        cache = ReplayCache(store, 300)
        first = cache.accept("k.", T, b"a", T)
        second = cache.accept("k.", T, b"b", T)
        store.saves[0][1].errback(OSError("disk full"))
        self.failureResultOf(first, OSError)
        self.assertNoResult(second)  # its own save is under way
        store.saves[1][1].callback(None)
        self.assertIsNone(self.successResultOf(second))

    def test_newer_second_forgets_older_macs(self) -> None:
        cache = ReplayCache(MemoryUserStore(), 300)
        for i in range(3):
            cache.accept("k.", T, b"%d" % i, T)
        cache.accept("k.", T + 1, b"new", T + 1)
        self.assertEqual(cache.verdict("k.", T, b"x", T + 1), "signed before the newest update accepted for this key")
        self.assertEqual(cache._keys["k."].state(), ReplayState(T + 1, ((T + 1, b"new"),)))

    def test_too_many_in_one_second(self) -> None:
        """A cap per key and second; the next second is accepted again."""
        cache = ReplayCache(HeldSaves(), 300)
        for i in range(MAX_MACS_PER_KEY):
            cache.accept("k.", T, i.to_bytes(4, "big"), T)
        self.assertEqual(
            cache.verdict("k.", T, b"one more", T), "too many updates for this key within the fudge window"
        )
        self.assertIsNone(cache.verdict("k.", T + 1, b"next second", T + 1))


class SharedStoreTests(SynchronousTestCase):
    """
    Two nodes on one shared store (a PostgreSQL database; the memory store
    here, marked shared): a message accepted at one is refused at the
    other, though the other's memory had not heard of it.
    """

    def setUp(self) -> None:
        self.store = MemoryUserStore()
        self.store.shared = True
        self.a = ReplayCache(self.store, 300)
        self.b = ReplayCache(self.store, 300)
        for node in (self.a, self.b):
            self.successResultOf(defer.ensureDeferred(node.load()))

    def test_captured_message_replayed_at_another_node(self) -> None:
        self.successResultOf(self.a.accept("k.", T, b"mac", T))
        self.assertIsNone(self.b.verdict("k.", T, b"mac", T + 1))  # its memory: nothing
        self.failureResultOf(self.b.accept("k.", T, b"mac", T + 1), ReplayRefused)
        self.assertEqual(self.b.verdict("k.", T, b"mac", T + 2), "already accepted")  # learnt from the merge

    def test_older_message_after_a_newer_one_elsewhere(self) -> None:
        """A message signed before the newest one another node accepted is refused too."""
        self.successResultOf(self.a.accept("k.", T + 10, b"newer", T + 10))
        self.failureResultOf(self.b.accept("k.", T + 5, b"older", T + 10), ReplayRefused)
        self.successResultOf(self.b.accept("k.", T + 11, b"later", T + 11))
        self.assertEqual(self.a.verdict("k.", T + 11, b"later", T + 11), None)  # a's memory lags ...
        self.failureResultOf(self.a.accept("k.", T + 11, b"later", T + 11), ReplayRefused)  # ... the store does not

    def test_only_the_refused_of_a_coalesced_save(self) -> None:
        """Of several messages saved together, only the one accepted elsewhere is refused."""
        self.successResultOf(self.a.accept("k.", T, b"taken", T))
        saves = [self.b.accept("k.", T, mac, T) for mac in (b"one", b"taken", b"two")]
        self.assertIsNone(self.successResultOf(saves[0]))
        self.failureResultOf(saves[1], ReplayRefused)
        self.assertIsNone(self.successResultOf(saves[2]))

    def test_private_store_saves_without_merging(self) -> None:
        """A store only this node writes keeps the plain save (no read of the stored record per save)."""
        store = HeldSaves()
        cache = ReplayCache(store, 300)
        cache.accept("k.", T, b"mac", T)
        self.assertEqual(len(store.saves), 1)
