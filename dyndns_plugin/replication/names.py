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

from typing import ItemsView, Iterable, Iterator, MutableMapping

from dyndns_plugin.registry import AnswerSource

_SHARDS = 256
_MASK = _SHARDS - 1


class PublishedNames(MutableMapping[str, AnswerSource]):
    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self._shards: list[dict[str, AnswerSource]] = [{} for _ in range(_SHARDS)]
        # Indexes of the dicts a snapshot shares: copied before a write.
        self._shared: set[int] = set()

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
        index = hash(key) & _MASK
        if index in self._shared:
            self._shared.discard(index)
            self._shards[index] = dict(self._shards[index])
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
