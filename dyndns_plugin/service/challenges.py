"""
L{ChallengeExpiry}: ACME challenge values go by themselves at the end of
their lifetime, through the same write path as any other change (durable,
then out of DNS, the zones and their secondaries).

It keeps a heap of (when, user) for the users that hold values, fed by the
change feed, and one timer for the earliest; a user's entry may be stale
(its values were removed or replaced meanwhile): at its time the user's
values as they are then decide.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dyndns_plugin.acme import next_expiry, unexpired
from dyndns_plugin.model import UpdateResult, UpdateStatus
from dyndns_plugin.registry import Registry
from dyndns_plugin.service.changes import Change

log = Logger()

#: Seconds before values whose removal the store failed are tried again.
RETRY_DELAY = 30.0


class ChallengeExpiry:
    """
    Removes expired challenge values of the users of C{registry} with
    C{expire(user_id)} (the service's edit of the user's values, which
    drops expired ones), once L{start}ed; L{changed} watches the writes.
    """

    def __init__(
        self, registry: Registry, clock: IReactorTime, expire: Callable[[str], defer.Deferred[UpdateResult]]
    ) -> None:
        self.registry, self.clock, self.expire = registry, clock, expire
        self._due: list[tuple[float, str]] = []
        self._timer: Any = None
        self._running = False

    def start(self) -> None:
        """Watch every user that holds values now (after the load), and those that get some."""
        self._running = True
        registry = self.registry
        for user_id in registry.challenge_holders():
            state = registry.state(user_id)
            when = None if state is None else next_expiry(state.txt)
            if when is not None:
                heapq.heappush(self._due, (when, user_id))
        self._schedule()

    def stop(self) -> None:
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def changed(self, change: Change) -> None:
        """A committed change (a change feed observer)."""
        state = change.new_state
        when = None if state is None else next_expiry(state.txt)
        if when is None:
            return
        heapq.heappush(self._due, (when, change.user_id))
        self._schedule()

    def _schedule(self) -> None:
        if not self._running or not self._due:
            return
        clock = self.clock
        when = self._due[0][0]
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= when:
                return
            self._timer.cancel()
        self._timer = clock.callLater(max(0.0, when - clock.seconds()), self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self.clock.seconds()
        users = set()
        while self._due and self._due[0][0] <= now:
            users.add(heapq.heappop(self._due)[1])
        for user_id in sorted(users):
            state = self.registry.state(user_id)
            if state is None or unexpired(state.txt, now) == state.txt:
                continue  # removed or replaced meanwhile: a newer entry is in the heap
            done = self.expire(user_id)
            done.addCallback(self._expired, user_id).addErrback(self._failed, user_id)
        self._schedule()

    @staticmethod
    def _failed(failure: Failure, user_id: str) -> None:
        log.failure("expiring {user}'s ACME values", failure, user=user_id)

    def _expired(self, result: UpdateResult, user_id: str) -> None:
        if result.status is UpdateStatus.STORE_FAILED:  # logged by the write; try again later
            heapq.heappush(self._due, (self.clock.seconds() + RETRY_DELAY, user_id))
            self._schedule()
