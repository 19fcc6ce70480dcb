"""The benchmark's reactor-turn meter (dyndns_plugin/reactor_lag.py), on a real epoll reactor."""

from __future__ import annotations

import gc
import time

from twisted.internet.epollreactor import EPollReactor
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin import reactor_lag


class TurnMeterTests(SynchronousTestCase):
    def test_off_without_the_variable(self) -> None:
        """No DYNDNS_BENCH_LAG_LOG: the reactor's poller is left as it is."""
        reactor = EPollReactor()
        self.addCleanup(reactor._poller.close)
        poller = reactor._poller
        self.assertIsNone(reactor_lag.install_from_environment(reactor, {}))
        self.assertIs(reactor._poller, poller)

    def test_records_a_long_turn(self) -> None:
        """A call that holds the reactor thread 30 ms is written down as a turn of at least 30 ms."""
        path = self.mktemp()
        reactor = EPollReactor()
        metered = reactor_lag.install_from_environment(reactor, {reactor_lag.LOG_VARIABLE: path})
        assert metered is not None
        self.assertIs(reactor._poller, metered)
        marks: dict[str, float] = {}

        def hold() -> None:
            marks["start"] = time.monotonic()
            fresh = bytearray(16 << 20)  # zero-filled: the kernel finds ~4,000 new pages
            time.sleep(0.03)
            del fresh
            marks["end"] = time.monotonic()

        reactor.callLater(0.01, hold)
        reactor.callLater(0.05, reactor.stop)
        reactor.run(installSignalHandlers=False)
        metered.close()
        longest = reactor_lag.longest_turn_ms(path, marks["start"], marks["end"])
        assert longest is not None
        self.assertGreaterEqual(longest[0], 30.0)
        self.assertGreaterEqual(longest[2], longest[1])  # the most CPU of any turn, at least this one's
        self.assertGreaterEqual(metered.longest_s * 1000, 30.0)
        with open(path) as f:
            turn = max((line.split() for line in f), key=lambda fields: float(fields[1]))
        kernel_ms, faults = float(turn[3]), int(turn[4])
        self.assertLessEqual(kernel_ms, float(turn[2]) + 1.0)  # the kernel's share of the CPU time
        self.assertGreaterEqual(faults, 2_000)
        # a window after the reactor stopped holds no turn
        self.assertIsNone(reactor_lag.longest_turn_ms(path, marks["end"] + 10, marks["end"] + 20))

    def test_threshold_leaves_short_turns_out(self) -> None:
        """Turns shorter than DYNDNS_BENCH_LAG_MIN_MS are not written."""
        path = self.mktemp()
        reactor = EPollReactor()
        environ = {reactor_lag.LOG_VARIABLE: path, reactor_lag.THRESHOLD_VARIABLE: "1000"}
        metered = reactor_lag.install_from_environment(reactor, environ)
        assert metered is not None
        reactor.callLater(0.0, time.sleep, 0.02)
        reactor.callLater(0.03, reactor.stop)
        reactor.run(installSignalHandlers=False)
        metered.close()
        with open(path) as f:
            self.assertEqual(f.read(), "")
        self.assertGreaterEqual(metered.longest_s * 1000, 20.0)

    def test_stacks_of_long_turns(self) -> None:
        """With DYNDNS_BENCH_LAG_STACKS_MS, a long turn's stack names the function that held the thread."""
        path = self.mktemp()
        reactor = EPollReactor()
        environ = {reactor_lag.LOG_VARIABLE: path, reactor_lag.STACKS_VARIABLE: "5"}
        callbacks = list(gc.callbacks)
        metered = reactor_lag.install_from_environment(reactor, environ)
        assert metered is not None
        self.addCleanup(metered.close)

        def holds_the_reactor_thread() -> None:
            time.sleep(0.1)
            garbage = [[i] for i in range(300_000)]  # noqa: F841 (a collection of it takes a few ms)
            gc.collect()

        def then_this_one() -> None:
            time.sleep(0.1)

        reactor.callLater(0.0, holds_the_reactor_thread)
        reactor.callLater(0.15, then_this_one)  # a later long turn is sampled too
        reactor.callLater(0.3, reactor.stop)
        reactor.run(installSignalHandlers=False)
        metered.close()
        with open(path) as f:
            text = f.read()
        stacks = [line for line in text.splitlines() if line.startswith("#")]
        self.assertTrue(stacks[0].startswith("# turn "))
        self.assertIn("holds_the_reactor_thread", "\n".join(stacks))
        self.assertIn("then_this_one", "\n".join(stacks))
        self.assertTrue(any(line.startswith("# gc generation 2 ") for line in stacks), stacks)
        self.assertEqual(gc.callbacks, callbacks)  # close() took its own out
        # the turn itself, with its CPU time: a sleeping thread uses less than it waits
        turns = [line.split() for line in text.splitlines() if not line.startswith("#")]
        wall, cpu = max((float(t[1]), float(t[2])) for t in turns)
        self.assertGreaterEqual(wall, 100.0)
        self.assertLess(cpu, wall)
