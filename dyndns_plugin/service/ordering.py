"""
Per-user ordering of writes: every write for a user runs after the earlier
ones for that user have finished, so that two concurrent updates (say IPv4
and IPv6) both build on the state the other one committed. A bulk write
(import, replace) waits for every user it touches and holds them all until
it is done, so no single-user write interleaves with it.
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine, Iterable

from twisted.internet import defer

#: A write: an C{async def} function of no arguments.
Action = Callable[[], Coroutine[Any, Any, Any]]


class UserOrder:
    def __init__(self) -> None:
        #: user id -> a Deferred that fires when that user's last queued
        #: write has finished (the next write waits for it). It never fails.
        self._tails: dict[str, defer.Deferred[None]] = {}

    def busy(self, user_id: str) -> bool:
        """Whether a write for C{user_id} is running or queued."""
        return user_id in self._tails

    def run(self, user_id: str, action: Action) -> defer.Deferred[Any]:
        """Run C{action} after every earlier write for C{user_id} finished."""
        previous = self._tails.get(user_id)
        return self._start([] if previous is None else [previous], [user_id], action)

    def run_all(self, user_ids: Iterable[str], action: Action) -> defer.Deferred[Any]:
        """Run C{action} after every earlier write for any of C{user_ids} finished."""
        ids = list(dict.fromkeys(user_ids))
        waits = {id(d): d for d in (self._tails.get(u) for u in ids) if d is not None}
        return self._start(list(waits.values()), ids, action)

    def _start(self, waits: list[defer.Deferred[None]], user_ids: list[str], action: Action) -> defer.Deferred[Any]:
        done: defer.Deferred[Any]
        if not waits:
            done = defer.ensureDeferred(action())
        else:
            # Chain behind the last writes for these users, whatever their outcome.
            done = defer.Deferred()

            def start(_: object) -> None:
                defer.ensureDeferred(action()).chainDeferred(done)

            gate = waits[0] if len(waits) == 1 else defer.gatherResults(waits)
            gate.addBoth(start)
        tail: defer.Deferred[None] = defer.Deferred()
        for user_id in user_ids:
            self._tails[user_id] = tail

        def finished(result: object) -> object:
            for user_id in user_ids:
                if self._tails.get(user_id) is tail:
                    del self._tails[user_id]
            tail.callback(None)
            return result

        return done.addBoth(finished)
