"""
An in-memory L{IUserStore} for tests and embedders who keep users elsewhere.
It honours the same contract as the SQLite store (see the conformance suite in
C{tests/store_conformance.py}), except that nothing survives the process.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence, TypeVar

from twisted.internet import defer
from zope.interface import implementer

from dyndns_plugin.model import HostState, User
from dyndns_plugin.store import (
    ANY_STATE,
    RR,
    AcmeKey,
    AnyState,
    Changes,
    IAcmeKeyStore,
    IReplayStore,
    IUserStore,
    IZoneJournal,
    JournalStep,
    NameTaken,
    NoSuchUser,
    ReplayState,
    RRsetKey,
    Snapshot,
    StateConflict,
    UserExists,
    ZoneHistory,
    merge_replay,
    steps_since,
)

T = TypeVar("T")


@implementer(IUserStore, IReplayStore, IZoneJournal, IAcmeKeyStore)
class MemoryUserStore:
    """
    Users and states in dicts. Set C{fail_writes} to make every write fail
    with L{StoreError}, to test what callers do when the disk is gone.
    """

    #: One process owns the data (the CLI's writes are rare and polled).
    shared = False

    def __init__(self) -> None:
        self._users: dict[str, User] = {}
        self._states: dict[str, HostState] = {}
        self._user_gen: dict[str, int] = {}
        self._state_gen: dict[str, int] = {}
        self._removed: dict[str, int] = {}
        self._owners: dict[str, str] = {}
        self._generation = 0
        self.fail_writes: Exception | None = None
        self._zones: dict[str, ZoneHistory] = {}
        self._zone_records: dict[str, dict[RRsetKey, tuple[RR, ...]]] = {}
        self._replay: dict[str, ReplayState] = {}
        self._acme_keys: dict[str, list[AcmeKey]] = {}

    def open(self) -> defer.Deferred[None]:
        return defer.succeed(None)

    def close(self) -> defer.Deferred[None]:
        return defer.succeed(None)

    def load(self) -> defer.Deferred[Snapshot]:
        return defer.succeed(Snapshot(dict(self._users), dict(self._states), self._generation))

    def load_users(self, user_ids: Iterable[str]) -> defer.Deferred[Snapshot]:
        wanted = [u for u in dict.fromkeys(user_ids) if u in self._users]
        users = {u: self._users[u] for u in wanted}
        states = {u: self._states[u] for u in wanted if u in self._states}
        return defer.succeed(Snapshot(users, states, self._generation))

    def changes_since(self, generation: int) -> defer.Deferred[Changes]:
        return defer.succeed(
            Changes(
                generation=self._generation,
                users={uid: self._users[uid] for uid, gen in self._user_gen.items() if gen > generation},
                removed=frozenset(uid for uid, gen in self._removed.items() if gen > generation),
                states={uid: self._states[uid] for uid, gen in self._state_gen.items() if gen > generation},
            )
        )

    def _write(self, change: Callable[[int], T]) -> defer.Deferred[T]:
        if self.fail_writes is not None:
            return defer.fail(self.fail_writes)
        generation = self._generation + 1
        try:
            result = change(generation)
        except Exception:
            return defer.fail()
        self._generation = generation
        return defer.succeed(result)

    def _put(self, user: User, generation: int) -> None:
        for name in user.hostnames:
            owner = self._owners.get(name, user.id)
            if owner != user.id:
                raise NameTaken(name, owner)
        self._drop_names(user.id)
        self._owners.update(dict.fromkeys(user.hostnames, user.id))
        self._users[user.id] = user
        self._user_gen[user.id] = generation
        self._removed.pop(user.id, None)

    def add_user(self, user: User) -> defer.Deferred[None]:
        def change(generation: int) -> None:
            if user.id in self._users:
                raise UserExists(user.id)
            self._put(user, generation)

        return self._write(change)

    def put_user(self, user: User) -> defer.Deferred[None]:
        return self._write(lambda generation: self._put(user, generation))

    def remove_user(self, user_id: str) -> defer.Deferred[None]:
        def change(generation: int) -> None:
            if user_id not in self._users:
                raise NoSuchUser(user_id)
            self._drop_user(user_id, generation)

        return self._write(change)

    def _drop_user(self, user_id: str, generation: int) -> None:
        self._drop_names(user_id)
        del self._users[user_id]
        self._user_gen.pop(user_id, None)
        self._states.pop(user_id, None)
        self._state_gen.pop(user_id, None)
        self._acme_keys.pop(user_id, None)
        self._removed[user_id] = generation

    def _drop_names(self, user_id: str) -> None:
        old = self._users.get(user_id)
        for name in old.hostnames if old else ():
            del self._owners[name]

    def _save(self, state: HostState, generation: int) -> None:
        if state.user_id not in self._users:
            raise NoSuchUser(state.user_id)
        self._states[state.user_id] = state
        self._state_gen[state.user_id] = generation

    def save_state(self, state: HostState, expected: HostState | None | AnyState = ANY_STATE) -> defer.Deferred[None]:
        def change(generation: int) -> None:
            if expected is not ANY_STATE and state.user_id in self._users:
                current = self._states.get(state.user_id)
                if current != expected:
                    raise StateConflict(state.user_id, current)
            self._save(state, generation)

        return self._write(change)

    def import_users(
        self, users: Iterable[User], states: Iterable[HostState], remove: Iterable[str] = ()
    ) -> defer.Deferred[None]:
        users, states, removed = list(users), list(states), list(remove)

        def change(generation: int) -> None:
            saved = (
                dict(self._users),
                dict(self._states),
                dict(self._user_gen),
                dict(self._state_gen),
                dict(self._removed),
                dict(self._owners),
            )
            try:
                for user_id in removed:
                    if user_id in self._users:
                        self._drop_user(user_id, generation)
                for user in users:
                    self._put(user, generation)
                for state in states:
                    self._save(state, generation)
            except Exception:
                (
                    self._users,
                    self._states,
                    self._user_gen,
                    self._state_gen,
                    self._removed,
                    self._owners,
                ) = saved
                raise

        return self._write(change)

    # -- zone serials and journals

    def load_zone_history(self, since: Mapping[str, int] | None = None) -> defer.Deferred[dict[str, ZoneHistory]]:
        since = since or {}
        return defer.succeed({o: h if o not in since else steps_since(h, since[o]) for o, h in self._zones.items()})

    def save_zone_version(
        self, origin: str, serial: int, digest: str, step: JournalStep | None, keep: int
    ) -> defer.Deferred[None]:
        if self.fail_writes is not None:
            return defer.fail(self.fail_writes)
        old = self._zones.get(origin)
        steps = () if step is None or old is None else old.steps
        if step is not None:
            kept = tuple(s for s in steps if s.serial_from != step.serial_from)
            steps = (kept + (step,))[-keep:] if keep > 0 else ()
        self._zones[origin] = ZoneHistory(serial, digest, steps)
        return defer.succeed(None)

    def load_zone_records(self) -> defer.Deferred[dict[str, dict[RRsetKey, tuple[RR, ...]]]]:
        return defer.succeed({origin: dict(rrsets) for origin, rrsets in self._zone_records.items() if rrsets})

    def save_zone_records(
        self,
        origin: str,
        rrsets: Mapping[RRsetKey, tuple[RR, ...] | None],
        serial: int | None,
        digest: str,
        step: JournalStep | None,
        keep: int,
    ) -> defer.Deferred[None]:
        if self.fail_writes is not None:
            return defer.fail(self.fail_writes)
        if serial is not None:
            self.save_zone_version(origin, serial, digest, step, keep)
        zone = self._zone_records.setdefault(origin, {})
        for key, rrs in rrsets.items():
            if rrs is None:
                zone.pop(key, None)
            else:
                zone[key] = tuple(rrs)
        return defer.succeed(None)

    # -- scoped ACME keys

    def acme_keys(self, user_id: str) -> defer.Deferred[list[AcmeKey]]:
        return defer.succeed(sorted(self._acme_keys.get(user_id, ()), key=lambda k: (k.created, k.key_id)))

    def add_acme_key(self, user_id: str, key: AcmeKey) -> defer.Deferred[None]:
        def change(generation: int) -> None:
            if user_id not in self._users:
                raise NoSuchUser(user_id)
            self._acme_keys.setdefault(user_id, []).append(key)

        return self._write(change)

    def remove_acme_key(self, user_id: str, key_id: str) -> defer.Deferred[bool]:
        def change(generation: int) -> bool:
            keys = self._acme_keys.get(user_id, [])
            kept = [k for k in keys if k.key_id != key_id]
            self._acme_keys[user_id] = kept
            return len(kept) != len(keys)

        return self._write(change)

    # -- TSIG replay records

    def load_replay_states(self) -> defer.Deferred[dict[str, ReplayState]]:
        return defer.succeed(dict(self._replay))

    def save_replay_state(self, key: str, state: ReplayState) -> defer.Deferred[None]:
        if self.fail_writes is not None:
            return defer.fail(self.fail_writes)
        self._replay[key] = state
        return defer.succeed(None)

    def merge_replay_state(
        self, key: str, state: ReplayState, fresh: Sequence[tuple[bytes, int]], oldest: int
    ) -> defer.Deferred[tuple[set[bytes], ReplayState]]:
        if self.fail_writes is not None:
            return defer.fail(self.fail_writes)
        refused, merged = merge_replay(self._replay.get(key), state, fresh, oldest)
        self._replay[key] = merged
        return defer.succeed((refused, merged))
