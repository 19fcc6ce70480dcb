"""each_in_slices: small batches at once, large ones across reactor turns, every item once, in order."""

from __future__ import annotations

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
