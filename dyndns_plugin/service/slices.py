"""
Bulk work in slices of reactor time. An import or a restore can touch a
million users at once, and applying each to the registry and telling the
observers costs microseconds: all at once, that holds the reactor thread
(and so DNS) for seconds. A large batch is instead done a few milliseconds
at a time, with the reactor's other work in between; a small one (the usual
case, and every test's) at once, without giving the reactor a turn.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence, TypeVar

from twisted.internet import task

T = TypeVar("T")

#: Batches of at most this many items are done at once.
AT_ONCE = 250
#: Reactor time one slice of a larger batch may take (s).
SLICE = 0.004


async def each_in_slices(items: Sequence[T], step: Callable[[T], Any], reactor: Any = None) -> None:
    """C{step(item)} for each item in order; for more than L{AT_ONCE}, in slices of L{SLICE}."""
    if len(items) <= AT_ONCE:
        for item in items:
            step(item)
        return
    if reactor is None:
        from twisted.internet import reactor
    clock = time.perf_counter
    ends = clock() + SLICE
    last = len(items) - 1
    for index, item in enumerate(items):
        step(item)
        if clock() >= ends and index < last:
            await task.deferLater(reactor, 0, lambda: None)
            ends = clock() + SLICE
