"""
Work in slices of reactor time. An import or a restore can touch a million
users at once, and filling the zones at start-up or comparing a large batch
with them costs seconds: all at once, that holds the reactor thread (and so
DNS) for as long. Such work is written as a generator whose every step is
short, and L{drive} runs it a few milliseconds at a time, with the
reactor's other work in between.

All works driven at once share one budget per reactor turn: one
L{task.Cooperator} per reactor (and budget) runs a step of each in turn
until the turn's slice is used, then gives the reactor back. (Each used to
take its own slice: with a restore's state changes, the publisher's diff,
its staged copies and their release all under way, one turn held five
slices, 10-13 ms.)
"""

from __future__ import annotations

import time
import weakref
from typing import Any, Callable, Iterator, Sequence, TypeVar

from twisted.internet import task

from dyndns_plugin.collector import collector_paused

T = TypeVar("T")

#: Batches of at most this many items are done at once (L{each_in_slices}).
AT_ONCE = 100
#: Reactor time one slice may take (s): small, as several workers may take a slice in the same turn.
SLICE = 0.002


#: The shared cooperators, by reactor, then by (budget, pause).
_COOPERATORS: weakref.WeakKeyDictionary[Any, dict[tuple[float, float], task.Cooperator]] = weakref.WeakKeyDictionary()


def _cooperator(reactor: Any, budget: float, pause: float) -> task.Cooperator:
    by_settings = _COOPERATORS.setdefault(reactor, {})
    cooperator = by_settings.get((budget, pause))
    if cooperator is None:

        def slice_of_a_turn() -> Callable[[], bool]:
            ends = time.perf_counter() + budget
            return lambda: time.perf_counter() >= ends

        cooperator = task.Cooperator(
            terminationPredicateFactory=slice_of_a_turn,
            scheduler=lambda call: reactor.callLater(pause, call),
        )
        by_settings[(budget, pause)] = cooperator
    return cooperator


async def drive(work: Iterator[Any], reactor: Any = None, budget: float | None = None, pause: float = 0.0) -> None:
    """
    Run C{work} to its end: a first slice of C{budget} (L{SLICE}) at once
    (a short work needs no other turn), the rest in later reactor turns,
    in which the works driven on C{reactor} share C{budget}, one step each
    in turn.
    """
    if reactor is None:
        from twisted.internet import reactor
    budget = SLICE if budget is None else budget
    steps = iter(work)
    ends = time.perf_counter() + budget
    for _ in steps:
        if time.perf_counter() >= ends:
            break
    else:
        return
    await _cooperator(reactor, budget, pause).coiterate(steps)


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
