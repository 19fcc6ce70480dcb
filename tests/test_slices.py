"""each_in_slices: small batches at once, large ones across reactor turns, every item once, in order."""

from __future__ import annotations

from typing import Iterator

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin import collector
from dyndns_plugin.service import slices


class EachInSlicesTests(SynchronousTestCase):
    def test_a_small_batch_is_done_at_once(self) -> None:
        seen: list[int] = []
        clock = task.Clock()
        self.patch(slices, "SLICE", 0.0)  # every item would end a slice
        d = defer.ensureDeferred(slices.each_in_slices(list(range(slices.AT_ONCE)), seen.append, clock))
        self.successResultOf(d)
        self.assertEqual(seen, list(range(slices.AT_ONCE)))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_large_batch_gives_the_reactor_turns(self) -> None:
        seen: list[int] = []
        clock = task.Clock()
        self.patch(slices, "SLICE", 0.0)
        items = list(range(slices.AT_ONCE + 5))
        d = defer.ensureDeferred(slices.each_in_slices(items, seen.append, clock))
        self.assertNoResult(d)
        self.assertEqual(seen, [0])  # one item per slice with SLICE = 0
        clock.advance(0)  # (a fake clock runs the turns it schedules meanwhile too)
        self.successResultOf(d)
        self.assertEqual(seen, items)

    def test_the_collector_waits_for_a_large_batch(self) -> None:
        """No collection while a large batch runs; collecting again (as before) once it ends."""
        import gc

        self.assertTrue(gc.isenabled())
        enabled: list[bool] = []
        clock = task.Clock()
        self.patch(slices, "SLICE", 0.0)
        d = defer.ensureDeferred(
            slices.each_in_slices(list(range(slices.AT_ONCE + 1)), lambda _: enabled.append(gc.isenabled()), clock)
        )
        self.assertNoResult(d)
        clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(set(enabled), {False})
        self.assertTrue(gc.isenabled())


class DriveTests(SynchronousTestCase):
    def test_works_share_one_slice_per_turn(self) -> None:
        """
        Each work's first slice runs at once; after that, works under way
        together share each turn's slice (here one step) instead of each
        taking a slice of its own in the same turn.
        """
        clock = task.Clock()
        order: list[tuple[str, int]] = []

        def work(name: str) -> Iterator[None]:
            for step in range(3):
                order.append((name, step))
                yield

        done = [defer.ensureDeferred(slices.drive(work(name), clock, 0.0, 1.0)) for name in "ab"]
        self.assertEqual(order, [("a", 0), ("b", 0)])
        for turn in [("a", 1)], [("b", 1)], [("a", 2)], [("b", 2)]:
            before = len(order)
            clock.advance(1.0)
            self.assertEqual(order[before:], turn)
        clock.advance(1.0)
        clock.advance(1.0)
        for d in done:
            self.successResultOf(d)

    def test_a_short_work_needs_no_turn(self) -> None:
        clock = task.Clock()
        seen: list[int] = []

        def work() -> Iterator[None]:
            for n in range(10):
                seen.append(n)
                yield

        d = defer.ensureDeferred(slices.drive(work(), clock, 1.0))
        self.successResultOf(d)
        self.assertEqual((seen, clock.getDelayedCalls()), (list(range(10)), []))


class CollectorPausedTests(SynchronousTestCase):
    def test_overlapping_pauses_end_with_the_last(self) -> None:
        """
        The poll's and the publisher's pauses overlap in any order: the
        collector stays off until the last ends, which freezes what was
        made and turns it on again.
        """
        import gc

        self.assertTrue(gc.isenabled())
        first, second = collector.collector_paused(), collector.collector_paused()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)  # the first out is not the last
        self.assertFalse(gc.isenabled())
        made = [[n] for n in range(3)]  # tracked by the collector, young until frozen
        frozen = gc.get_freeze_count()
        second.__exit__(None, None, None)
        self.assertTrue(gc.isenabled())
        self.assertGreaterEqual(gc.get_freeze_count(), frozen + len(made))

    def test_a_pause_inside_a_disabled_collector_changes_nothing(self) -> None:
        import gc

        gc.disable()
        self.addCleanup(gc.enable)
        frozen = gc.get_freeze_count()
        with collector.collector_paused():
            self.assertFalse(gc.isenabled())
        self.assertFalse(gc.isenabled())
        self.assertEqual(gc.get_freeze_count(), frozen)
