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
from twisted.python.failure import Failure

from dyndns_plugin.store import ReplayState


class ReplayRefused(Exception):
    """Another node (on a shared store) accepted this message, or a newer one of its key, first."""


#: The most MACs kept per key: a key sending more distinct updates than this
#: within one second (its newest time) is refused until the next.
MAX_MACS_PER_KEY = 10_000


class _KeyRecord:
    """One key's newest time and the MACs that could still pass (MAC -> time signed)."""

    __slots__ = ("newest", "macs")

    def __init__(self, newest: int, macs: dict[bytes, int]) -> None:
        self.newest = newest
        self.macs = macs

    def state(self) -> ReplayState:
        return ReplayState(self.newest, tuple((t, m) for m, t in self.macs.items()))


class ReplayCache:
    """
    @param store: an L{dyndns_plugin.store.IReplayStore} (both stores are).
    @param window: how long a MAC can still verify: the server's fudge.

    Each check and acceptance costs the same however many updates a key
    sends (a dict of its MACs); the saves of one key are coalesced: while
    one is being written, the updates accepted meanwhile wait for the next,
    which holds them all (one write per commit, not one per update).
    """

    def __init__(self, store: Any, window: int) -> None:
        self.store = store
        self.window = window
        self._keys: dict[str, _KeyRecord] = {}
        #: Per key, what waits for the next save: (Deferred, MAC, time signed).
        self._waiting: dict[str, list[tuple[defer.Deferred[None], bytes, int]]] = {}
        self._saving: set[str] = set()
        self._now: dict[str, int] = {}

    async def load(self) -> None:
        """Read what earlier runs accepted (a service startup step)."""
        states = await self.store.load_replay_states()
        self._keys = {key: _KeyRecord(s.newest, {m: t for t, m in s.macs}) for key, s in states.items()}

    def verdict(self, key: str, time_signed: int, mac: bytes, now: int) -> str | None:
        """Why this message is a replay, or None if it is fresh."""
        record = self._keys.get(key)
        if record is None:
            return None
        if time_signed < record.newest:
            return "signed before the newest update accepted for this key"
        if mac in record.macs:
            return "already accepted"
        if len(record.macs) >= MAX_MACS_PER_KEY:
            # Counted as they would be once this message is accepted (a newer second starts afresh).
            newest = max(record.newest, min(time_signed, now))
            live = sum(1 for t in record.macs.values() if t >= newest and t + self.window >= now)
            if live >= MAX_MACS_PER_KEY:
                return "too many updates for this key within the fudge window"
        return None

    def accept(self, key: str, time_signed: int, mac: bytes, now: int) -> defer.Deferred[None]:
        """
        Remember the message at once (a copy arriving meanwhile is a replay)
        and durably; the Deferred fires when the store has it.
        """
        record = self._keys.get(key)
        newest = min(time_signed, now)
        if record is None:
            record = self._keys[key] = _KeyRecord(newest, {})
        elif newest > record.newest:
            record.newest = newest
            self._prune(record, now)
        record.macs[mac] = time_signed
        self._now[key] = now
        waiting: defer.Deferred[None] = defer.Deferred()
        self._waiting.setdefault(key, []).append((waiting, mac, time_signed))
        if key not in self._saving:
            self._save(key)
        return waiting

    def _save(self, key: str) -> None:
        """
        Write the key's record as it is now; those waiting then are told when
        it is stored. On a store other nodes accept messages on too, the
        record is merged with theirs in the store, and a message one of them
        accepted first is refused here (L{ReplayRefused}).
        """
        self._saving.add(key)
        waiters = self._waiting.pop(key, [])
        state = self._keys[key].state()
        if getattr(self.store, "shared", False):
            fresh = [(mac, signed) for _, mac, signed in waiters]
            d = self.store.merge_replay_state(key, state, fresh, self._now[key] - self.window)
        else:
            d = self.store.save_replay_state(key, state).addCallback(lambda _: (set(), None))

        def saved(result: object) -> None:
            refused: set[bytes] = set()
            if not isinstance(result, Failure):
                outcome: tuple[set[bytes], ReplayState | None] = result  # type: ignore[assignment]
                refused, merged = outcome
                if merged is not None:
                    self._take(key, merged)
            for waiting, mac, _ in waiters:
                if isinstance(result, Failure):
                    waiting.errback(result)
                elif mac in refused:
                    waiting.errback(ReplayRefused("accepted by another node first"))
                else:
                    waiting.callback(None)
            if self._waiting.get(key):
                self._save(key)
            else:
                self._saving.discard(key)

        d.addBoth(saved)

    def _take(self, key: str, merged: ReplayState) -> None:
        """What the other nodes accepted, from the merged record: refused here from now on."""
        record = self._keys[key]
        record.newest = max(record.newest, merged.newest)
        for signed, mac in merged.macs:
            record.macs.setdefault(mac, signed)

    def _prune(self, record: _KeyRecord, now: int) -> dict[bytes, int]:
        """Drop the MACs that can no longer pass the time check."""
        record.macs = {m: t for m, t in record.macs.items() if t + self.window >= now and t >= record.newest}
        return record.macs
