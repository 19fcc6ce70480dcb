"""
Work in slices of reactor time. An import or a restore can touch a million
users at once, and filling the zones at start-up or comparing a large batch
with them costs seconds: all at once, that holds the reactor thread (and so
DNS) for as long. Such work is written as a generator whose every step is
short, and L{drive} runs it a few milliseconds at a time, with the
reactor's other work in between.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Sequence, TypeVar

from twisted.internet import task

from dyndns_plugin.collector import collector_paused

T = TypeVar("T")

#: Batches of at most this many items are done at once (L{each_in_slices}).
AT_ONCE = 100
#: Reactor time one slice may take (s): small, as several workers may take a slice in the same turn.
SLICE = 0.002


async def drive(work: Iterator[Any], reactor: Any = None, budget: float | None = None, pause: float = 0.0) -> None:
    """Run C{work} to its end, giving the reactor a turn whenever a slice of C{budget} (L{SLICE}) has passed."""
    if reactor is None:
        from twisted.internet import reactor
    budget = SLICE if budget is None else budget
    clock = time.perf_counter
    ends = clock() + budget
    for _ in work:
        if clock() >= ends:
            await task.deferLater(reactor, pause, lambda: None)
            ends = clock() + budget


async def each_in_slices(items: Sequence[T], step: Callable[[T], Any], reactor: Any = None) -> None:
    """
    C{step(item)} for each item in order; for more than L{AT_ONCE}, in
    slices (L{drive}), with the collector paused (L{collector_paused}):
    its full passes over 50,000 new states took 60 ms turns at 1,000,000
    users.
    """
    if len(items) <= AT_ONCE:
        for item in items:
            step(item)
        return
    with collector_paused():
        await drive((step(item) for item in items), reactor)
