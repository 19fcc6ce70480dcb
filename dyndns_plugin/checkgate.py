"""
Admission to password checks, so that no source holds more than a small
part of the hash pool (the adapter seam, L{dyndns_plugin.authn}, asks it
before every check).
"""

from __future__ import annotations

import collections

from twisted.internet import defer


class CheckGate:
    """
    Admission to password checks, so that no source holds more than a small
    part of the hash pool: each source at most C{per_source} checks at once,
    sources with recent failures ("suspects") at most C{suspects} at once
    all together, and at most C{queue} checks waiting per source (beyond
    that the caller is told to retry). Waiters are admitted in arrival order.
    """

    def __init__(self, per_source: int, suspects: int, queue: int) -> None:
        self.per_source = max(1, per_source)
        self.suspects = max(1, suspects)
        self.queue = queue
        self._running: dict[str, int] = {}
        self._suspects_running = 0
        self._waiting: collections.deque[tuple[str, bool, defer.Deferred[None]]] = collections.deque()
        self._waiting_per_source: dict[str, int] = {}

    def _admissible(self, key: str, suspect: bool) -> bool:
        return self._running.get(key, 0) < self.per_source and (not suspect or self._suspects_running < self.suspects)

    def _take(self, key: str, suspect: bool) -> None:
        self._running[key] = self._running.get(key, 0) + 1
        self._suspects_running += suspect

    async def enter(self, key: str, suspect: bool) -> bool:
        """Wait for a turn; False (at once) if this source's queue is full."""
        if not self._waiting_per_source.get(key) and self._admissible(key, suspect):
            self._take(key, suspect)
            return True
        queued = self._waiting_per_source.get(key, 0)
        if queued >= self.queue:
            return False
        self._waiting_per_source[key] = queued + 1
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((key, suspect, d))
        await d
        return True

    def leave(self, key: str, suspect: bool) -> None:
        left = self._running[key] - 1
        if left:
            self._running[key] = left
        else:
            del self._running[key]
        self._suspects_running -= suspect
        admitted: list[defer.Deferred[None]] = []
        still: collections.deque[tuple[str, bool, defer.Deferred[None]]] = collections.deque()
        blocked: set[str] = set()  # keep each source's own order
        for waiting_key, waiting_suspect, d in self._waiting:
            if waiting_key not in blocked and self._admissible(waiting_key, waiting_suspect):
                self._take(waiting_key, waiting_suspect)
                count = self._waiting_per_source[waiting_key] - 1
                if count:
                    self._waiting_per_source[waiting_key] = count
                else:
                    del self._waiting_per_source[waiting_key]
                admitted.append(d)
            else:
                blocked.add(waiting_key)
                still.append((waiting_key, waiting_suspect, d))
        self._waiting = still
        # Fired last: a cached check finishes at once and leaves again.
        for d in admitted:
            d.callback(None)

    def busy(self) -> dict[str, int]:
        """Checks running and waiting (for tests)."""
        return {
            "running": sum(self._running.values()),
            "suspects": self._suspects_running,
            "waiting": len(self._waiting),
        }
