"""
The garbage collector around bulk work. A million users are frozen out of
CPython's collector after the start-up load (gc.freeze): its full passes
would walk them all. Work that makes tens of thousands of long-lived
objects at once (a restore read by the poll, a large publication, a large
request body) pauses the collector meanwhile, and what it made is frozen
too when the last pause ends: left in, each of those objects would be
visited at every full pass, and a pass holds the GIL (and so the reactor
thread) throughout.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_pausers = 0
_resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """
    No automatic collection inside; when the last of the overlapping pauses
    ends (they may end in any order, and on any thread: the poll's, the
    publisher's, the store thread's), what was made meanwhile is frozen and
    collection resumes, if it was on when the first pause began.
    """
    global _pausers, _resume
    with _lock:
        if _pausers == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pausers += 1
    try:
        yield
    finally:
        with _lock:
            _pausers -= 1
            if _pausers == 0 and _resume:
                gc.freeze()
                gc.enable()
