"""
TSIG replay protection for UPDATE, per key, surviving restarts.

A signed UPDATE is accepted once: its MAC is remembered while its time is
still inside the fudge window (after that it fails the time check anyway),
and a message signed earlier than the newest one accepted for the key is
refused. "Newest" is taken as C{min(time signed, our clock)}: a client whose
clock runs fast cannot push it into the future and lock out its own
correctly-timed updates that follow. Both are written to the store before
the update is applied (and so before it is acknowledged): a crash can lose
an unacknowledged update, never let a captured one in twice.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from dyndns_plugin.store import ReplayState

#: The most MACs kept per key: a key sending more distinct updates than this
#: within one fudge window is refused until older ones age out.
MAX_MACS_PER_KEY = 1000


class ReplayCache:
    """
    @param store: an L{dyndns_plugin.store.IReplayStore} (both stores are).
    @param window: how long a MAC can still verify: the server's fudge.
    """

    def __init__(self, store: Any, window: int) -> None:
        self.store = store
        self.window = window
        self._keys: dict[str, ReplayState] = {}

    async def load(self) -> None:
        """Read what earlier runs accepted (a service startup step)."""
        self._keys = dict(await self.store.load_replay_states())

    def verdict(self, key: str, time_signed: int, mac: bytes, now: int) -> str | None:
        """Why this message is a replay, or None if it is fresh."""
        state = self._keys.get(key)
        if state is None:
            return None
        if time_signed < state.newest:
            return "signed before the newest update accepted for this key"
        if any(seen == mac for _, seen in state.macs):
            return "already accepted"
        if len(self._live(state, now)) >= MAX_MACS_PER_KEY:
            return "too many updates for this key within the fudge window"
        return None

    def accept(self, key: str, time_signed: int, mac: bytes, now: int) -> defer.Deferred[None]:
        """
        Remember the message at once (a copy arriving meanwhile is a replay)
        and durably; the Deferred fires when the store has it.
        """
        state = self._keys.get(key)
        macs = self._live(state, now) if state is not None else []
        newest = min(time_signed, now)
        if state is not None:
            newest = max(newest, state.newest)
        new = ReplayState(newest, tuple(macs) + ((time_signed, mac),))
        self._keys[key] = new
        return self.store.save_replay_state(key, new)

    def _live(self, state: ReplayState, now: int) -> list[tuple[int, bytes]]:
        """The MACs that could still pass the time check."""
        return [(t, m) for t, m in state.macs if t + self.window >= now and t >= state.newest]
