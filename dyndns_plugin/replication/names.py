"""
L{PublishedNames}: a zone's published users' names, name -> the registry's
L{AnswerSource} the name's records are made of, in small dicts.

A zone of 1,000,000 users' names in one dict costs the reactor thread
~120 ms each time that dict doubles while it is filled, and ~40 ms to copy
for each AXFR's snapshot. Spread over 256 dicts (by the name's hash), every
growth and every copy is of a few thousand entries: well under a
millisecond. Snapshots are copy-on-write: L{snapshot} shares the dicts, and
the first write to a shared dict afterwards copies that one dict.

A user's main name C{<id>.<suffix>} is kept under the user id itself (the
registry's own string: no name string per user), every other name whole.
Values are the registry's own immutable objects, so a published name costs
one dict entry.
"""

from __future__ import annotations

from itertools import islice
from typing import ItemsView, Iterable, Iterator, MutableMapping

from dyndns_plugin.registry import AnswerSource

_SHARDS = 256
_MASK = _SHARDS - 1
#: Entries a staged copy takes per step (see L{StagedChanges.build}).
_COPY_STEP = 512


class PublishedNames(MutableMapping[str, AnswerSource]):
    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self._shards: list[dict[str, AnswerSource]] = [{} for _ in range(_SHARDS)]
        # Indexes of the dicts a snapshot shares: copied before a write.
        self._shared: set[int] = set()
        #: Dicts made since the owner last looked (copies on write, staged
        #: changes put in place): young to the garbage collector.
        self.new_dicts = 0

    def _key(self, name: str) -> str:
        head, dot, parent = name.partition(".")
        if not dot:
            return name + "."  # a one-label name (a zone's apex): not a user id
        return head if parent == self.suffix else name

    def _name(self, key: str) -> str:
        if "." not in key:
            return f"{key}.{self.suffix}"
        return key[:-1] if key.endswith(".") else key

    def snapshot(self) -> PublishedNames:
        """These names as they are now, unchanged by later writes to either copy."""
        copy = PublishedNames(self.suffix)
        copy._shards = list(self._shards)
        copy._shared = set(range(_SHARDS))
        self._shared = set(range(_SHARDS))
        return copy

    def _writable(self, key: str) -> dict[str, AnswerSource]:
        return self._writable_shard(hash(key) & _MASK)

    def _writable_shard(self, index: int) -> dict[str, AnswerSource]:
        if index in self._shared:
            self._shared.discard(index)
            self._shards[index] = dict(self._shards[index])
            self.new_dicts += 1
        return self._shards[index]

    def add_all(self, pairs: Iterable[tuple[str, AnswerSource]], mains: bool = False) -> None:
        """
        C{self[name] = source} for each pair, in one call (the start-up fill
        adds 1,000,000); with C{mains}, each pair is a user id and the source
        of that user's main name (kept under the registry's own id string).
        """
        shards, shared, key_of = self._shards, self._shared, self._key
        for name, source in pairs:
            key = name if mains else key_of(name)
            index = hash(key) & _MASK
            if index in shared:
                self._writable(key)[key] = source
            else:
                shards[index][key] = source

    def __getitem__(self, name: str) -> AnswerSource:
        key = self._key(name)
        return self._shards[hash(key) & _MASK][key]

    def get(self, name: str, default: AnswerSource | None = None) -> AnswerSource | None:  # type: ignore[override]
        key = self._key(name)
        return self._shards[hash(key) & _MASK].get(key, default)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._key(name)
        return key in self._shards[hash(key) & _MASK]

    def __setitem__(self, name: str, source: AnswerSource) -> None:
        key = self._key(name)
        self._writable(key)[key] = source

    def __delitem__(self, name: str) -> None:
        key = self._key(name)
        del self._writable(key)[key]

    def __iter__(self) -> Iterator[str]:
        name_of = self._name
        for shard in self._shards:
            for key in shard:
                yield name_of(key)

    def __len__(self) -> int:
        return sum(map(len, self._shards))

    def items(self) -> _Items:
        return _Items(self)

    def __repr__(self) -> str:
        return f"PublishedNames({dict(self.items())!r})"


class _Items(ItemsView[str, AnswerSource]):
    """The items, read shard by shard (the default view looks every name up again)."""

    _mapping: PublishedNames

    def __iter__(self) -> Iterator[tuple[str, AnswerSource]]:
        names = self._mapping
        suffix, name_of = names.suffix, names._name
        for shard in names._shards:
            for key, source in shard.items():
                yield (name_of(key) if key[-1] == "." else key) if "." in key else f"{key}.{suffix}", source


class StagedChanges:
    """
    Many changes to a L{PublishedNames} (a restore read by the poll: 50,000
    names), made on copies of the dicts they touch a few at a time
    (L{build}, a generator for L{dyndns_plugin.service.slices.drive}) and
    put in place in one short step (L{commit}, O(dicts touched)): set one by
    one they took ~110 ms in one reactor turn, and spread over turns a
    transfer in between would see half of them under the old serial.
    Meanwhile the names are unchanged; the zone's publisher is their only
    writer.
    """

    def __init__(self, names: PublishedNames, sources: dict[str, AnswerSource | None]) -> None:
        self.names, self.sources = names, sources
        # shard index -> (the dict copied, its changed copy, the changes)
        self._copies: dict[
            int, tuple[dict[str, AnswerSource], dict[str, AnswerSource], list[tuple[str, AnswerSource | None]]]
        ] = {}
        self.built = False

    def build(self) -> Iterator[None]:
        """Make the changed copies, yielding between steps of a few hundred names or one dict."""
        names = self.names
        by_shard: dict[int, list[tuple[str, AnswerSource | None]]] = {}
        for count, (name, source) in enumerate(self.sources.items(), 1):
            key = names._key(name)
            by_shard.setdefault(hash(key) & _MASK, []).append((key, source))
            if not count % 256:
                yield
        for index, changes in by_shard.items():
            original = names._shards[index]
            # As for a snapshot: a write meanwhile copies the dict first, so
            # the original stays as it is while it is copied, and commit sees
            # it was written.
            names._shared.add(index)
            # A few hundred entries a step: each touches two objects spread
            # over memory, and one dict() of 4,000 was a 13 ms turn at 1M users.
            copy: dict[str, AnswerSource] = {}
            entries = iter(original.items())
            while True:
                copied = len(copy)
                copy.update(islice(entries, _COPY_STEP))
                if len(copy) - copied < _COPY_STEP:
                    break
                yield
            _change(copy, changes)
            self._copies[index] = (original, copy, changes)
            yield
        self.built = True

    def commit(self) -> None:
        """Put every change in place at once (after L{build} has run to its end)."""
        assert self.built, "commit() after build()"
        names = self.names
        for index, (original, copy, changes) in self._copies.items():
            if names._shards[index] is original:
                names._shards[index] = copy
                names._shared.discard(index)  # a fresh copy: no snapshot holds it
                names.new_dicts += 1
            else:  # written meanwhile after all: the changes again, on the dict as it is
                _change(names._writable_shard(index), changes)

    def release(self) -> Iterator[None]:
        """
        Let go of the replaced dicts one at a time after L{commit}: dropped
        at once, the old values of 50,000 names and a million dict entries
        took ~60 ms of one turn to free.
        """
        copies = self._copies
        while copies:
            copies.popitem()
            yield
        self.sources = {}


def _change(shard: dict[str, AnswerSource], changes: list[tuple[str, AnswerSource | None]]) -> None:
    for key, source in changes:
        if source is None:
            shard.pop(key, None)
        else:
            shard[key] = source
