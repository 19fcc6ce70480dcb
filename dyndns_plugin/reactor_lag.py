"""
The reactor thread's longest turns, measured from inside the server: for
benchmarks only (bench/scale_users.py), off unless asked.

With C{DYNDNS_BENCH_LAG_LOG=<path>} in its environment, C{twistd dyndns}
wraps its reactor's poller (epoll or poll). The time from the return of one
wait for I/O to the start of the next is one turn of the reactor thread: all
it ran in between (timed calls, reads, writes, and any wait for the GIL).
A turn at least C{DYNDNS_BENCH_LAG_MIN_MS} long (default 1 ms) is appended
to the file as one line, C{<monotonic start, s> <length, ms> <CPU, ms>
<of it in the kernel, ms> <page faults>}, so a reader with the same clock (C{time.monotonic}, system-wide on Linux)
can take the longest turn inside any time window. A client timing queries
sees the machine too (other processes on shared cores); this sees the
server only, and the CPU time the reactor thread itself used in the turn
tells its own work from time it was not running (another process on the
core, or another thread of ours holding the GIL); the kernel's share and
the page faults tell our own code from memory the kernel had to find.

With C{DYNDNS_BENCH_LAG_STACKS_MS=<ms>} too, a watcher thread writes the
reactor thread's stack (lines starting with C{#}) when a turn has run that
long, and again every further 20 ms of it (at most 5 times a turn): what
the long turns were doing. Collections of the garbage collector of 1 ms
or more are written too (C{# gc generation <n> <ms> ms at <monotonic>}):
the watcher cannot sample a thread that holds the GIL in C code.

Without the variable nothing is installed: no cost on the normal path.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import threading
import time
import traceback
from typing import IO, Any, Callable

LOG_VARIABLE = "DYNDNS_BENCH_LAG_LOG"
THRESHOLD_VARIABLE = "DYNDNS_BENCH_LAG_MIN_MS"
STACKS_VARIABLE = "DYNDNS_BENCH_LAG_STACKS_MS"


class TurnMeteredPoller:
    """
    Stands in for the reactor's poller: every C{poll} first writes down how
    long the thread was busy since the previous C{poll} returned.
    """

    def __init__(
        self,
        poller: Any,
        out: IO[str],
        threshold_s: float = 0.001,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._poller, self._out, self._threshold, self._clock = poller, out, threshold_s, clock
        self._lock = threading.Lock()
        self._woke = clock()
        self._woke_cpu = time.thread_time()
        self._woke_usage = _thread_usage()
        self._polling = False
        self._closed = threading.Event()
        self._closed_callbacks: Callable[[], None] = lambda: None
        self.longest_s = 0.0

    def poll(self, *args: Any, **kwargs: Any) -> Any:
        """The wrapped poller's C{poll}, after recording the turn that ends here."""
        busy = self._clock() - self._woke
        if busy > self.longest_s:
            self.longest_s = busy
        if busy >= self._threshold:
            cpu = time.thread_time() - self._woke_cpu
            kernel, faults = (now - then for now, then in zip(_thread_usage(), self._woke_usage))
            self._write(f"{self._woke:.6f} {busy * 1000:.3f} {cpu * 1000:.3f} {kernel * 1000:.3f} {faults:.0f}\n")
        self._polling = True
        try:
            return self._poller.poll(*args, **kwargs)
        finally:
            self._woke = self._clock()
            self._woke_cpu = time.thread_time()
            self._woke_usage = _thread_usage()
            self._polling = False

    def _write(self, text: str) -> None:
        with self._lock:
            if not self._closed.is_set():
                self._out.write(text)
                self._out.flush()

    def close(self) -> None:
        """Stop recording (and the stack watcher) and close the file; the reactor keeps the wrapper."""
        self._closed_callbacks()
        self._closed_callbacks = lambda: None
        with self._lock:
            self._closed.set()
            self._out.close()
        self._threshold = float("inf")

    def watch_stacks(self, after_s: float) -> threading.Thread:
        """Start a thread that writes the reactor thread's stack in turns longer than C{after_s}."""
        reactor_thread = threading.get_ident()

        def watch() -> None:
            turn, samples = -1.0, 0
            while not self._closed.wait(0.002):
                woke, now = self._woke, self._clock()
                if woke != turn:
                    turn, samples = woke, 0
                if self._polling or samples >= 5 or now - woke < after_s + 0.02 * samples:
                    continue
                samples += 1
                frame = sys._current_frames().get(reactor_thread)
                if frame is not None:
                    stack = "".join(traceback.format_stack(frame)[-12:])
                    head = f"# turn {woke:.6f} at {1000 * (now - woke):.1f} ms:\n"
                    self._write(head + "".join(f"#   {line}\n" for line in stack.splitlines()))

        collecting: list[float] = []

        def collections(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                collecting[:] = [self._clock()]
            elif collecting:
                took = self._clock() - collecting[0]
                if took >= 0.001:
                    self._write(f"# gc generation {info['generation']} {1000 * took:.1f} ms at {collecting[0]:.6f}\n")

        gc.callbacks.append(collections)
        self._closed_callbacks = lambda: gc.callbacks.remove(collections)
        thread = threading.Thread(target=watch, name="reactor-lag-stacks", daemon=True)
        thread.start()
        return thread

    def __getattr__(self, name: str) -> Any:
        # register, modify, unregister, close...: the real poller's
        return getattr(self._poller, name)


def _thread_usage() -> tuple[float, float]:
    """This thread's time in the kernel (s) and its page faults so far."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_stime, float(usage.ru_minflt + usage.ru_majflt)


def install(reactor: Any, path: str, threshold_s: float = 0.001) -> TurnMeteredPoller:
    """Meter C{reactor}'s turns into the file at C{path} (appended to)."""
    poller = getattr(reactor, "_poller", None)
    if poller is None or not hasattr(poller, "poll"):
        raise RuntimeError(f"{LOG_VARIABLE}: {type(reactor).__name__} has no poller to meter (use epoll or poll)")
    metered = TurnMeteredPoller(poller, open(path, "a", encoding="utf-8"), threshold_s)
    reactor._poller = metered
    return metered


def install_from_environment(reactor: Any, environ: dict[str, str] | None = None) -> TurnMeteredPoller | None:
    """L{install} if C{DYNDNS_BENCH_LAG_LOG} is set; otherwise nothing."""
    env = os.environ if environ is None else environ
    path = env.get(LOG_VARIABLE)
    if not path:
        return None
    metered = install(reactor, path, float(env.get(THRESHOLD_VARIABLE, "1")) / 1000)
    stacks = env.get(STACKS_VARIABLE)
    if stacks:
        metered.watch_stacks(float(stacks) / 1000)
    return metered


def longest_turn_ms(path: str, start: float, end: float) -> tuple[float, float, float] | None:
    """
    Of the recorded turns that overlap C{[start, end]} (monotonic seconds):
    the longest one's length and the reactor thread's CPU time in it, and
    the most CPU time of any of them (the server's own longest work), all in
    ms; None if none was recorded.
    """
    longest: tuple[float, float] | None = None
    most_cpu = 0.0
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if line.startswith("#") or len(fields) != 5:
                continue  # a stack, or a line still being written
            began, ms, cpu = float(fields[0]), float(fields[1]), float(fields[2])
            if began <= end and began + ms / 1000 >= start:
                most_cpu = max(most_cpu, cpu)
                if longest is None or ms > longest[0]:
                    longest = (ms, cpu)
    return None if longest is None else (*longest, most_cpu)
