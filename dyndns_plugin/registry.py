"""
The in-memory view the DNS path reads: name -> answer, address -> users.

Only L{DynDNSService} writes it, and only after the store has the change;
everyone else gets read-only views (L{Registry.users}, L{Registry.states});
the resolver reads it without locks, threads or I/O. Every write replaces
whole immutable L{User} and L{HostState} values, so a reader sees either the
old or the new answer, never half of one. Answers are made from them when
asked for (the fast path keeps the finished bytes of the common ones), not
kept per user: at 1,000,000 users that is a second of start-up and ~150 MB.
"""

from __future__ import annotations

import bisect
from types import MappingProxyType
from typing import Iterator, Mapping, Union

import attrs

from dyndns_plugin.acme import base_of, challenge_bases, challenge_name, names_in, values_at
from dyndns_plugin.model import HostState, IPAddress, User


@attrs.frozen
class Answer:
    """
    What a user's names resolve to right now. C{addresses} is empty for a
    user that is offline without an offline IP, or that never updated.
    """

    user_id: str
    addresses: tuple[IPAddress, ...]
    ttl: int
    #: At an ACME challenge name: its TXT values (and no addresses).
    txt: tuple[str, ...] = ()

    def of_version(self, version: int) -> tuple[IPAddress, ...]:
        return tuple(a for a in self.addresses if a.version == version)


@attrs.frozen
class Challenge:
    """What an ACME challenge name publishes (L{Registry.challenge_source}): its values, oldest first."""

    user_id: str
    values: tuple[str, ...]
    ttl: int


#: What a published answer is made of (L{Registry.answer_source}): the
#: user's state when online, the user when offline with an offline IP;
#: at an ACME challenge name, its values.
AnswerSource = Union[HostState, User, Challenge]


def answer_from(source: AnswerSource, default_ttl: int) -> Answer:
    """The answer L{Registry.answer_source} stands for."""
    if isinstance(source, User):
        return Answer(source.id, source.offline_addresses(), default_ttl)
    if isinstance(source, Challenge):
        return Answer(source.user_id, (), source.ttl, source.values)
    return Answer(source.user_id, source.addresses(), default_ttl if source.ttl is None else source.ttl)


#: Ids added since the last ordered read that are put in place one by one;
#: more are sorted and merged with the rest in one pass.
_INSORT_AT_MOST = 64

#: What L{status_of} says of a user, in the order /metrics lists them.
USER_STATES = ("online", "offline", "never", "disabled")


def status_of(user: User, state: HostState | None) -> str:
    """C{disabled}, else the state's C{online}/C{offline}/C{never} (C{never} without a state)."""
    if user.disabled:
        return "disabled"
    return "never" if state is None else state.status


class Registry:
    """
    Users, their states and the indexes built from them.

    @ivar suffix: the zone under which every user has C{<id>.<suffix>}.
    @ivar loaded: False until the service has loaded the store; the
        resolver answers SERVFAIL until then rather than a wrong NXDOMAIN.
    @ivar users: user id -> L{User}, a read-only live view.
    @ivar states: user id -> L{HostState}, a read-only live view.
    """

    def __init__(self, suffix: str, default_ttl: int, txt_ttl: int = 60) -> None:
        self.suffix = suffix
        self.default_ttl = default_ttl
        #: The TTL of ACME challenge TXT records.
        self.txt_ttl = txt_ttl
        #: Whether ACME challenge values are served (C{acme.enabled}).
        self.challenges_served = True
        self.loaded = False
        self._users: dict[str, User] = {}
        self._states: dict[str, HostState] = {}
        # Views, not copies: readers see every write at once and cannot make one.
        self.users: Mapping[str, User] = MappingProxyType(self._users)
        self.states: Mapping[str, HostState] = MappingProxyType(self._states)
        self._names: dict[str, str] = {}
        self._wildcards: dict[str, str] = {}
        # ACME challenge owner names (_acme-challenge.<name>) that hold
        # values -> the active user holding them.
        self._challenges: dict[str, str] = {}
        # One user id per address, a set only where several share one: a set
        # per address costs ~270 bytes per user at 100k users. Keyed by the
        # address's integer (see _address_slot), one map per IP version.
        self._by_ipv4: dict[int, str | set[str]] = {}
        self._by_ipv6: dict[int, str | set[str]] = {}
        # Users by state, kept with every write: /metrics reads it at scrape
        # time, which may not walk 1,000,000 users on the reactor thread.
        self._counts = dict.fromkeys(USER_STATES, 0)
        # Every user id in order, for paging through users (/api/state)
        # without sorting a million ids on the reactor thread.
        self._sorted_ids: list[str] = []
        # Ids added since, put in order at the next read or removal: one
        # insort per added user moves half the list each time (quadratic:
        # most of an import of 1,000,000 users into an empty registry).
        self._added_ids: list[str] = []

    # -- reads (the DNS path)

    def has_user(self, user_id: str) -> bool:
        return user_id in self._users

    def user(self, user_id: str) -> User | None:
        return self._users.get(user_id)

    def state(self, user_id: str) -> HostState | None:
        return self._states.get(user_id)

    def counts_by_state(self) -> dict[str, int]:
        """Users by L{status_of}: C{online}, C{offline}, C{never}, C{disabled} (all four, maybe 0)."""
        return dict(self._counts)

    def ids_after(self, after: str | None, limit: int) -> list[str]:
        """Up to C{limit} user ids in order, those after C{after} (from the first with None)."""
        ids = self._ids_in_order()
        start = 0 if after is None else bisect.bisect_right(ids, after)
        return ids[start : start + limit]

    def main_name(self, user_id: str) -> str:
        return f"{user_id}.{self.suffix}"

    def owner_of(self, name: str) -> str | None:
        """
        The user whose names include C{name} (lower-case, no trailing dot):
        their main name, then an exact additional name, then the closest
        wildcard alias; an ACME challenge name that holds values belongs to
        its user. Disabled users own nothing.
        """
        user_id = self._challenges.get(name) or self._names.get(name)
        if user_id is None:
            head, _, parent = name.partition(".")
            if parent == self.suffix and head in self._users:
                user_id = head
        if user_id is None:
            parent = name
            while "." in parent:
                parent = parent.partition(".")[2]
                user_id = self._wildcards.get(parent)
                if user_id is not None:
                    break
        return user_id if user_id is not None and self._is_active(user_id) else None

    def exact_owner(self, name: str) -> str | None:
        """
        The active user who holds C{name} itself: a main name, an exact
        additional name, or a literal wildcard alias C{*.x}; never a name a
        wildcard merely covers. What a zone publishes: a secondary derives
        the covered names from the wildcard record itself.
        """
        if name.startswith("*."):
            user_id = self._wildcards.get(name[2:])
        else:
            user_id = self._names.get(name)
            if user_id is None:
                head, _, parent = name.partition(".")
                if parent == self.suffix:
                    user_id = head
        return user_id if user_id is not None and self._is_active(user_id) else None

    def _is_active(self, user_id: str) -> bool:
        user = self._users.get(user_id)
        return user is not None and not user.disabled

    def answer(self, name: str) -> Answer | None:
        """The addresses for C{name}, or None if no active user has it (or it is a challenge name: TXT only)."""
        if name in self._challenges:
            return None
        user_id = self.owner_of(name)
        return None if user_id is None else self.answer_for_user(user_id)

    def answer_for_user(self, user_id: str) -> Answer | None:
        """What an active user's names resolve to now (None if disabled or unknown)."""
        user = self._users.get(user_id)
        if user is None or user.disabled:
            return None
        return self._compute(user, self._states.get(user_id))

    def users_at(self, address: IPAddress) -> frozenset[str]:
        """Active, online users whose names point at C{address} now."""
        by_address, number = self._address_slot(address)
        holders = by_address.get(number)
        if holders is None:
            return frozenset()
        return frozenset((holders,) if isinstance(holders, str) else holders)

    def answer_source(self, user_id: str) -> AnswerSource | None:
        """
        The immutable value an active user's answer is made of, if it has
        addresses: its state when online, the user itself when offline with
        an offline IP. A zone keeps these (L{answer_from} gives the answer),
        not answers of its own: they are in memory already.
        """
        user = self._users.get(user_id)
        if user is None or user.disabled:
            return None
        state = self._states.get(user_id)
        if state is None:
            return None
        if state.offline:
            return user if user.offline_ipv4 is not None or user.offline_ipv6 is not None else None
        return state if state.ipv4 is not None or state.ipv6 is not None else None

    def challenge(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        """At an ACME challenge owner name: its user and values, oldest first (None if it holds none)."""
        user_id = self._challenges.get(name)
        if user_id is None:
            return None
        state = self._states.get(user_id)
        base = base_of(name)
        values = () if state is None or base is None else values_at(state.txt, base)
        return (user_id, values) if values else None

    def challenge_source(self, name: str) -> Challenge | None:
        """What a zone publishes at the challenge owner name C{name} (None: nothing)."""
        found = self.challenge(name)
        return None if found is None else Challenge(found[0], found[1], self.txt_ttl)

    def challenge_holders(self) -> list[str]:
        """The active users that hold challenge values, in order."""
        return sorted(set(self._challenges.values()))

    def challenge_names(self, user_id: str) -> list[str]:
        """The challenge owner names C{user_id} holds values at now."""
        state = self._states.get(user_id)
        if state is None or not state.txt:
            return []
        return [
            challenge_name(n) for n in sorted(names_in(state.txt)) if self._challenges.get(challenge_name(n)) == user_id
        ]

    def challenge_bases(self, user_id: str) -> list[str]:
        """
        The names C{user_id} may hold challenge values for (L{acme.challenge_bases}),
        but a wildcard's base another user holds exactly.
        """
        user = self._users.get(user_id)
        if user is None:
            return []
        return [n for n in challenge_bases(user, self.suffix) if self.exact_owner(n) in (None, user_id)]

    def challenge_base(self, user_id: str, name: str) -> str | None:
        """
        The name C{name} sets challenge values for, if C{user_id} may hold
        them there (L{challenge_bases}): C{name} is one of the user's names
        (C{alice.dyn.example}) or its challenge owner name
        (C{_acme-challenge.alice.dyn.example}), any case, a final dot or not.
        """
        name = name.strip().lower().removesuffix(".")
        base = base_of(name) or name
        return base if base in self.challenge_bases(user_id) else None

    def updatable_names(self, user_id: str) -> set[str]:
        """
        The names a user's own update may name (dyndns2 C{hostname}, RFC 2136
        owner names): the main name and the exact additional names, not the
        names a wildcard alias covers.
        """
        user = self._users.get(user_id)
        if user is None:
            return set()
        names = {self.main_name(user_id)}
        names.update(n for n in user.hostnames if not n.startswith("*."))
        return names

    def names_of(self, user_id: str) -> Iterator[str]:
        """Every name C{user_id} answers for (wildcards as C{*.x})."""
        user = self._users.get(user_id)
        if user is not None:
            yield self.main_name(user_id)
            yield from user.hostnames

    # -- writes (only the service calls these)

    def load(self, users: Mapping[str, User], states: Mapping[str, HostState]) -> None:
        """
        Fill an empty registry from a store snapshot (id -> value): the maps
        copied whole (CPython clones a dict's table: right-sized, no
        growing), then L{_index} inlined, one pass per user (C{put_user} then
        C{set_state} would index every user twice; 1,000,000 users at
        start-up). States of unknown users are left out.
        """
        assert not self._users, "load() fills an empty registry"
        all_users, all_states = self._users, self._states
        all_users.update(users)
        all_states.update(states)
        for user_id in [u for u in all_states if u not in all_users]:
            del all_states[user_id]
        names, wildcards, by_ipv4, by_ipv6 = self._names, self._wildcards, self._by_ipv4, self._by_ipv6
        disabled = offline = online = 0
        with_txt: list[tuple[User, HostState]] = []
        for user in users.values():
            if user.disabled:
                disabled += 1
                continue
            user_id = user.id
            for name in user.hostnames:
                if name.startswith("*."):
                    wildcards[name[2:]] = user_id
                else:
                    names[name] = user_id
            state = all_states.get(user_id)
            if state is None:
                continue
            if state.txt:
                with_txt.append((user, state))
            if state.offline:
                offline += 1
                continue
            ipv4, ipv6 = state.ipv4, state.ipv6
            if ipv4 is not None:
                online += 1
                key = int(ipv4)
                holders = by_ipv4.setdefault(key, user_id)
                if holders is not user_id:
                    if isinstance(holders, str):
                        by_ipv4[key] = {holders, user_id}
                    else:
                        holders.add(user_id)
            if ipv6 is not None:
                online += ipv4 is None
                key = int(ipv6)
                holders = by_ipv6.setdefault(key, user_id)
                if holders is not user_id:
                    if isinstance(holders, str):
                        by_ipv6[key] = {holders, user_id}
                    else:
                        holders.add(user_id)
        for user, state in with_txt:  # once every name is indexed (L{challenge_bases} asks who holds them)
            self._index_challenges(user, state)
        never = len(all_users) - disabled - offline - online
        self._sorted_ids = sorted(all_users)  # before serving: ~0.5 s at 1,000,000 users in random order
        self._counts = {"online": online, "offline": offline, "never": never, "disabled": disabled}

    def _ids_in_order(self) -> list[str]:
        """Every user id in order, the ones added since the last call merged in."""
        ids, added = self._sorted_ids, self._added_ids
        if len(added) <= _INSORT_AT_MOST:
            for user_id in added:
                bisect.insort(ids, user_id)
        else:
            added.sort()
            ids += added
            ids.sort()  # two sorted runs: Timsort merges them in one pass
        added.clear()
        return ids

    def put_user(self, user: User) -> None:
        if user.id not in self._users:
            self._added_ids.append(user.id)
        self._uncount(user.id)
        self._unindex(user.id)
        self._users[user.id] = user
        self._index(user.id)
        self._counts[status_of(user, self._states.get(user.id))] += 1

    def remove_user(self, user_id: str) -> None:
        if user_id in self._users:
            ids = self._ids_in_order()
            del ids[bisect.bisect_left(ids, user_id)]
        self._uncount(user_id)
        self._unindex(user_id)
        self._users.pop(user_id, None)
        self._states.pop(user_id, None)

    def set_state(self, state: HostState) -> None:
        self._uncount(state.user_id)
        self._unindex(state.user_id)
        self._states[state.user_id] = state
        self._index(state.user_id)
        user = self._users.get(state.user_id)
        if user is not None:
            self._counts[status_of(user, state)] += 1

    def _uncount(self, user_id: str) -> None:
        user = self._users.get(user_id)
        if user is not None:
            self._counts[status_of(user, self._states.get(user_id))] -= 1

    def _compute(self, user: User, state: HostState | None) -> Answer:
        if state is None:
            return Answer(user.id, (), self.default_ttl)
        return answer_from(user if state.offline else state, self.default_ttl)

    def _address_slot(self, address: IPAddress) -> tuple[dict[int, str | set[str]], int]:
        """
        The map that indexes C{address} and its key there: the address's
        integer (the address's own int object), hashed in C where an
        IPv4Address hashes in Python (~0.5 s of start-up at 1,000,000 users).
        """
        return (self._by_ipv4 if address.version == 4 else self._by_ipv6), int(address)

    def _index(self, user_id: str) -> None:
        user = self._users.get(user_id)
        if user is None or user.disabled:
            return
        for name in user.hostnames:
            if name.startswith("*."):
                self._wildcards[name[2:]] = user_id
            else:
                self._names[name] = user_id
        state = self._states.get(user_id)
        if state is not None and state.txt:
            self._index_challenges(user, state)
        if state is not None and not state.offline:
            for address in state.addresses():
                by_address, number = self._address_slot(address)
                holders = by_address.get(number)
                if holders is None:
                    by_address[number] = user_id
                elif isinstance(holders, str):
                    if holders != user_id:
                        by_address[number] = {holders, user_id}
                else:
                    holders.add(user_id)

    def _index_challenges(self, user: User, state: HostState) -> None:
        """Index the challenge names C{state} holds values at, those still the user's to hold."""
        if not self.challenges_served:
            return
        bases = challenge_bases(user, self.suffix)
        for name in names_in(state.txt):
            if name in bases and self.exact_owner(name) in (None, user.id):
                self._challenges[challenge_name(name)] = user.id

    def _unindex(self, user_id: str) -> None:
        """Undo L{_index} for the user and state held now (before they are replaced)."""
        user = self._users.get(user_id)
        if user is None or user.disabled:
            return
        state = self._states.get(user_id)
        if state is not None and state.txt:
            for name in names_in(state.txt):
                key = challenge_name(name)
                if self._challenges.get(key) == user_id:
                    del self._challenges[key]
        if state is not None and not state.offline:
            for address in state.addresses():
                by_address, number = self._address_slot(address)
                holders = by_address.get(number)
                if holders == user_id:
                    del by_address[number]
                elif isinstance(holders, set):
                    holders.discard(user_id)
                    if len(holders) == 1:
                        by_address[number] = holders.pop()
        for name in user.hostnames:
            index = self._wildcards if name.startswith("*.") else self._names
            key = name[2:] if name.startswith("*.") else name
            if index.get(key) == user_id:
                del index[key]
