"""
The durable store: the source of truth for users and their host state.

L{IUserStore} is the extension point (with L{IZoneJournal} and
L{IReplayStore} beside it for the DNS side); L{dyndns_plugin.store.sqlite} is the
embedded default and L{dyndns_plugin.store.memory} the in-memory one for
tests. Every method returns a L{Deferred}; a store must never block the
reactor thread, and a write's Deferred fires only once the write is durable.

Every committed write transaction advances the store's I{generation}; readers
(a running server, while an admin edits users from the CLI in another process)
ask for L{IUserStore.changes_since} a generation to pick up what others wrote.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import attrs
from zope.interface import Attribute, Interface

from dyndns_plugin.model import HostState, User


class StoreError(Exception):
    """The store failed (I/O, corruption); the write did not happen."""


class UserExists(StoreError):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"user {user_id!r} already exists")
        self.user_id = user_id


class NoSuchUser(StoreError):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"no user {user_id!r}")
        self.user_id = user_id


class StateConflict(StoreError):
    """
    A conditional write found another committed state than the one it was
    decided on (another node or process wrote the user meanwhile): nothing
    was written; C{current} is the committed state (None: the user has none).
    """

    def __init__(self, user_id: str, current: HostState | None) -> None:
        super().__init__(f"the state of user {user_id!r} changed meanwhile")
        self.user_id = user_id
        self.current = current


class ZoneConflict(StoreError):
    """
    A zone version was written over another serial than the one it
    follows (another node published meanwhile): nothing was written.
    """


class AnyState:
    """The type of L{ANY_STATE} (an unconditional write)."""

    def __repr__(self) -> str:
        return "ANY_STATE"


#: C{save_state}'s C{expected} when the write is unconditional.
ANY_STATE = AnyState()


class NameTaken(StoreError):
    """A host name is already another user's additional name."""

    def __init__(self, name: str, owner: str) -> None:
        super().__init__(f"host name {name!r} already belongs to user {owner!r}")
        self.name = name
        self.owner = owner


@attrs.frozen
class Snapshot:
    """Everything in the store at one generation."""

    users: Mapping[str, User]
    states: Mapping[str, HostState]
    generation: int


@attrs.frozen
class Changes:
    """
    What changed after some generation, up to and including C{generation}.
    C{users} maps a changed user id to its new record; C{removed} lists
    users that no longer exist; C{states} holds changed host states.

    An id in both C{removed} and C{users} was replaced wholesale (a restore,
    L{dyndns_plugin.store.backup}): forget its old record and state, then take
    the new record (and its state, if C{states} has one). Ordinary writes
    never give both: re-adding a user clears its removal.
    """

    generation: int
    users: Mapping[str, User] = attrs.field(factory=dict)
    removed: frozenset[str] = frozenset()
    states: Mapping[str, HostState] = attrs.field(factory=dict)

    def __bool__(self) -> bool:
        return bool(self.users or self.removed or self.states)


#: One resource record of a zone: owner (lower-case, no final dot), type,
#: TTL and rdata in uncompressed wire form.
RR = tuple[str, int, int, bytes]
#: A host zone's RRset by owner name and type.
RRsetKey = tuple[str, int]


@attrs.frozen
class JournalStep:
    """One change of a zone, from one serial to the next (an IXFR block)."""

    serial_from: int
    serial_to: int
    deleted: tuple[RR, ...]
    added: tuple[RR, ...]


@attrs.frozen
class ZoneHistory:
    """
    A zone's last published serial, the digest of its content at that
    serial, and the newest journal steps leading to it (oldest first).
    """

    serial: int
    digest: str
    steps: tuple[JournalStep, ...] = ()


@attrs.frozen
class ReplayState:
    """
    What a TSIG key has had accepted: the newest time signed (never past
    our clock at the time) and C{(time signed, MAC)} of the messages that
    could still pass the time check.
    """

    newest: int
    macs: tuple[tuple[int, bytes], ...] = ()


@attrs.frozen
class AcmeKey:
    """
    A user's scoped ACME key: it may set the user's challenge values and
    nothing else. Only a SHA-256 of the secret is kept (a random secret of
    30 bytes needs no slow hash).
    """

    key_id: str
    secret_sha256: str
    label: str = ""
    created: float = 0.0


class IAcmeKeyStore(Interface):
    """Users' scoped ACME keys (both stores provide it, in the same database as the users)."""

    def acme_keys(user_id: str):
        """Fire with the user's keys, oldest first (none for an unknown user)."""

    def add_acme_key(user_id: str, key: AcmeKey):
        """Durably add C{key}; L{NoSuchUser} for an unknown user."""

    def remove_acme_key(user_id: str, key_id: str):
        """Durably remove a key; fire with whether it was there."""


class IReplayStore(Interface):
    """
    TSIG replay records, durable like host states (both stores provide it,
    in the same database as the users).
    """

    def load_replay_states():
        """Fire with C{{key name: ReplayState}}."""

    def save_replay_state(key: str, state: ReplayState):
        """Durably replace the record of key C{key}."""

    def merge_replay_state(key: str, state: ReplayState, fresh: Sequence[tuple[bytes, int]], oldest: int):
        """
        A shared store's (several nodes accept signed messages): in one
        transaction, merge C{state} into the key's stored record (the
        newest of both times, both sets of MACs, none signed before
        C{oldest} or the newest time) and fire with C{(refused, merged)}:
        the MACs of C{fresh} (C{(MAC, time signed)}, the messages this save
        accepts) that the stored record already refused (another node
        accepted them, or a newer one), and the merged record.
        """


def merge_replay(
    stored: ReplayState | None, state: ReplayState, fresh: Sequence[tuple[bytes, int]], oldest: int
) -> tuple[set[bytes], ReplayState]:
    """What L{IReplayStore.merge_replay_state} does with the stored record (for the stores that keep it)."""
    if stored is None:
        return set(), state
    known = {mac for _, mac in stored.macs}
    refused = {mac for mac, signed in fresh if mac in known or signed < stored.newest}
    newest = max(stored.newest, state.newest)
    macs = {mac: signed for signed, mac in stored.macs}
    macs.update((mac, signed) for signed, mac in state.macs)
    kept = tuple((signed, mac) for mac, signed in macs.items() if signed >= oldest and signed >= newest)
    return refused, ReplayState(newest, kept)


class IZoneJournal(Interface):
    """
    The zone publisher's durable record: each zone's serial, content digest
    and IXFR journal. Not user data: a write here is no user change and does
    not advance the users' generation. Both stores provide it, in the same
    database as the users; all methods return Deferreds.
    """

    def load_zone_history(since: Mapping[str, int] | None = None):
        """
        Fire with C{{origin: ZoneHistory}} for every zone ever published.
        With C{since} (origin: a serial the caller has), a zone's steps
        start at the one from that serial (none if it is the stored serial;
        all if no stored step starts there): a node following another's
        publications reads what is new, not the whole journal each time.
        """

    def save_zone_version(origin: str, serial: int, digest: str, step: JournalStep | None, keep: int):
        """
        Durably record a zone's new serial and digest with the journal step
        that led to it, keeping the newest C{keep} steps; C{step} None
        empties the journal (its history no longer leads to this serial).
        """

    def load_zone_records():
        """
        Fire with C{{origin: {(name, type): (RR, ...)}}}: the RRsets that
        RFC 2136 updates gave each host zone. Each replaces the zone file's
        RRset of that name and type; an empty one hides it (deleted).
        """

    def save_zone_records(
        origin: str,
        rrsets: Mapping[RRsetKey, tuple[RR, ...] | None],
        serial: int | None,
        digest: str,
        step: JournalStep | None,
        keep: int,
    ):
        """
        In one transaction: set a host zone's updated RRsets (None: drop the
        update, the zone file's RRset shows again) and, unless C{serial} is
        None, its new version as L{save_zone_version} does.
        """


def steps_since(history: ZoneHistory, serial: int) -> ZoneHistory:
    """C{history} with only its steps from C{serial} on (see L{IZoneJournal.load_zone_history})."""
    if history.serial == serial:
        return attrs.evolve(history, steps=())
    starts = [i for i, step in enumerate(history.steps) if step.serial_from == serial]
    return attrs.evolve(history, steps=history.steps[starts[-1] :]) if starts else history


class IUserStore(Interface):
    """
    Durable users and host states. All methods return Deferreds.
    """

    shared = Attribute(
        """
        True if other nodes serve from the same data and write it at any
        time, so this process's memory may be behind what is committed
        (PostgreSQL): a NOCHG is then checked against the store.
        """
    )

    def open():
        """Create or migrate the storage; fires when ready."""

    def close():
        """Finish pending writes and release the storage."""

    def load():
        """Fire with a L{Snapshot} of everything."""

    def load_users(user_ids: Iterable[str]):
        """
        Fire with a L{Snapshot} of just the users C{user_ids} that exist and
        their states, and the store's generation (a CLI command about one
        user need not read a million).
        """

    def changes_since(generation: int):
        """
        Fire with the L{Changes} committed after C{generation}. Changes made
        through this same store object may be left out: their Deferreds
        already told the caller.
        """

    def add_user(user: User):
        """Insert a new user; L{UserExists} or L{NameTaken} on conflict."""

    def put_user(user: User):
        """Insert or replace a user (its state is kept); L{NameTaken}."""

    def remove_user(user_id: str):
        """Delete a user and its state; L{NoSuchUser}."""

    def save_state(state: HostState, expected: HostState | None | AnyState = ANY_STATE):
        """
        Replace a user's host state, durably; L{NoSuchUser}. With
        C{expected} (a state, or None for none), only if the committed
        state is that one, in the same transaction, else L{StateConflict}:
        a write decided on what one node saw never overwrites what another
        committed meanwhile.
        """

    def import_users(users: Iterable[User], states: Iterable[HostState], remove: Iterable[str] = ()):
        """
        Delete the users C{remove} (ids; unknown ones are ignored), then
        insert or replace many users and states, in one atomic transaction:
        either all of it is stored or none.
        """
