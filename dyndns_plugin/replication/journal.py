"""
The published content of a zone we transfer: its serial, its records at that
serial, and the journal of changes that led there (for IXFR).

A zone is the operator's static records (the suffix zone's apex from the
config, or a host zone file) plus the users' names inside it. The users'
part is kept as the registry's own immutable values each name's answer is
made of (L{AnswerSource}), so the published copy costs a dict entry per
name (L{PublishedNames}), not a second copy of every address. Only L{ZonePublisher} changes it, and only after the new serial and
its journal step are durable; AXFR and IXFR read it, so what a secondary
gets always matches the serial it is told.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections import deque
from typing import Any, Iterable, Iterator, Mapping

from twisted.names import dns as tdns

from dyndns_plugin.acme import base_of, txt_rdata
from dyndns_plugin.dns.zones import StaticZone
from dyndns_plugin.registry import Answer, AnswerSource, Registry, answer_from
from dyndns_plugin.replication.names import PublishedNames, StagedChanges
from dyndns_plugin.store import RR, JournalStep, RRsetKey, ZoneHistory

TYPE_A, TYPE_NS, TYPE_SOA, TYPE_TXT, TYPE_AAAA = 1, 2, 6, 16, 28
_ADDRESS_TYPES = {4: TYPE_A, 6: TYPE_AAAA}


def next_serial(serial: int) -> int:
    """The serial after C{serial} (RFC 1982 addition of 1; 0 is skipped)."""
    return (serial + 1) % 2**32 or 1


def serial_newer(a: int, b: int) -> bool:
    """RFC 1982: is serial C{a} newer than C{b}?"""
    return a != b and ((a > b and a - b < 2**31) or (a < b and b - a > 2**31))


def rr_hash(rr: RR) -> int:
    name, rdtype, ttl, rdata = rr
    key = f"{name}\0{rdtype}\0{ttl}\0".encode() + rdata
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def records_hash(*parts: Iterable[RR]) -> int:
    """The XOR of L{rr_hash} over the records: what adding or deleting them does to a zone's digest."""
    change = 0
    for part in parts:
        for rr in part:
            change ^= rr_hash(rr)
    return change


def answer_rrs(name: str, answer: Answer | None) -> list[RR]:
    if answer is None:
        return []
    if answer.txt:
        return [(name, TYPE_TXT, answer.ttl, txt_rdata(value)) for value in answer.txt]
    return [(name, _ADDRESS_TYPES[a.version], answer.ttl, a.packed) for a in answer.addresses]


def _rdata(record: object) -> bytes:
    buffer = io.BytesIO()
    record.encode(buffer, None)  # type: ignore[attr-defined]
    return buffer.getvalue()


class RRsetChanges(dict[RRsetKey, "tuple[RR, ...] | None"]):
    """
    RRsets of a host zone an update changes (None: the zone file's again),
    by name and type, with the types of each name at hand: a 1,500-record
    update asked every name for its types by scanning all of them.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._types: dict[str, set[int]] = {}
        for name, rdtype in self:
            self._types.setdefault(name, set()).add(rdtype)

    def __setitem__(self, key: RRsetKey, rrset: tuple[RR, ...] | None) -> None:
        super().__setitem__(key, rrset)
        self._types.setdefault(key[0], set()).add(key[1])

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, rrset in dict(*args, **kwargs).items():
            self[key] = rrset

    def names(self) -> Iterable[str]:
        return self._types.keys()

    def types_at(self, name: str) -> Iterable[int]:
        """The types this sets at C{name}."""
        return self._types.get(name, ())


class ZoneState:
    """
    One zone's published serial, content and journal.

    @param zone: the served authority; its SOA record object is updated in
        place, so queries see each new serial.
    @param dynamic: whether users' names inside the zone are part of it
        (always for the suffix zone; for host zones the "update host records
        in local zones" option).
    @param keep: journal steps kept for IXFR.
    """

    def __init__(self, zone: StaticZone, dynamic: bool, keep: int) -> None:
        self.authority = zone
        self.origin = zone.origin
        self.soa: tdns.Record_SOA = zone.soa[1]
        self.file_serial = int(self.soa.serial)
        self.accepts_dynamic = dynamic
        self.static: dict[str, list[RR]] = {}
        self.delegations: set[str] = set()
        for key, records in zone.records.items():
            name = key.decode("ascii")
            for record in records:
                if isinstance(record, tdns.Record_SOA):
                    continue
                rdtype = record.TYPE
                if rdtype == TYPE_NS and name != self.origin:
                    self.delegations.add(name)
                ttl = record.ttl if record.ttl is not None else self.soa.minimum
                self.static.setdefault(name, []).append((name, rdtype, int(ttl), _rdata(record)))
        #: The zone file's records (L{static} is what is served: these, with
        #: the RRsets of RFC 2136 updates, L{updated}, in place of theirs).
        self.file_records = {name: list(records) for name, records in self.static.items()}
        self.updated: dict[RRsetKey, tuple[RR, ...]] = {}
        self._updated_types: dict[str, set[int]] = {}
        self.dynamic = PublishedNames(zone.origin)
        self.default_ttl = 0  # the registry's, from the fill on
        self.digest = 0
        self.steps: deque[JournalStep] = deque(maxlen=keep) if keep > 0 else deque(maxlen=0)
        #: Names whose records came from another node's journal steps (this
        #: node follows a publisher elsewhere): their records as published
        #: there, in place of what L{dynamic} and L{static} would give.
        self.replayed: dict[str, list[RR]] = {}
        #: Whether the content is the store's at the serial served (a
        #: follower whose registry did not match the publisher's is not,
        #: until it does; transfers wait).
        self.synced = True

    @property
    def serial(self) -> int:
        return int(self.soa.serial)

    # -- what belongs to the zone

    def contains(self, name: str) -> bool:
        """Is a user's name C{name} part of this zone (not below a delegation)?"""
        if not self.accepts_dynamic:
            return False
        if name != self.origin and not name.endswith("." + self.origin):
            return False
        if self.delegations:
            parent = name
            while parent != self.origin:
                if parent in self.delegations:
                    return False
                parent = parent.partition(".")[2]
        return True

    def records_at(self, name: str, answer: Answer | None, own: list[RR] | None = None) -> list[RR]:
        """
        The zone's records at C{name} with the user's answer: the user's
        A/AAAA replace the static ones (or C{own}) of the same type, as the
        resolver (which answers first) does.
        """
        static = self.static.get(name, ()) if own is None else own
        dynamic = answer_rrs(name, answer)
        if not dynamic:
            return list(static)
        types = {rr[1] for rr in dynamic}
        return [rr for rr in static if rr[1] not in types] + dynamic

    # -- RFC 2136 updates of a host zone

    def own_records(self, name: str, changes: RRsetChanges | None = None) -> list[RR]:
        """
        The zone's own records at C{name} (no user's answer): the file's,
        with the updated RRsets (and C{changes}, not yet made) in place of
        the file's of the same type.
        """
        changes = changes if changes is not None else RRsetChanges()
        types = set(self._updated_types.get(name, ()))
        types.update(changes.types_at(name))
        if not types:
            return list(self.file_records.get(name, ()))
        records = []
        for rr in self.file_records.get(name, ()):
            if rr[1] not in types or self._rrset_update(name, rr[1], changes) is None:
                records.append(rr)
        for rdtype in sorted(types):
            records.extend(self._rrset_update(name, rdtype, changes) or ())
        return records

    def _rrset_update(
        self, name: str, rdtype: int, changes: Mapping[RRsetKey, tuple[RR, ...] | None]
    ) -> tuple[RR, ...] | None:
        key = (name, rdtype)
        return changes[key] if key in changes else self.updated.get(key)

    def update_diff(self, changes: RRsetChanges) -> tuple[list[RR], list[RR]]:
        """The records that making C{changes} deletes and adds, as a secondary sees them."""
        deleted: list[RR] = []
        added: list[RR] = []
        for name in sorted(changes.names()):
            answer = self.answer_at(name)
            before = self.records_at(name, answer)
            after = self.records_at(name, answer, self.own_records(name, changes))
            deleted.extend(rr for rr in before if rr not in after)
            added.extend(rr for rr in after if rr not in before)
        return deleted, added

    def set_updated(self, changes: RRsetChanges) -> None:
        """
        Make C{changes} (durable already): each RRset given replaces the
        file's of its name and type, None gives the file's back. What
        queries see changes with it; the serial does not (L{apply}).
        """
        # Everything that can fail (the served records are built) before anything changes.
        after = {name: self.own_records(name, changes) for name in changes.names()}
        served = {name: self.authority.served_records(name, records) for name, records in after.items()}
        for (name, rdtype), rrset in changes.items():
            if rrset is None:
                self.updated.pop((name, rdtype), None)
                types = self._updated_types.get(name)
                if types is not None:
                    types.discard(rdtype)
                    if not types:
                        del self._updated_types[name]
            else:
                self.updated[(name, rdtype)] = tuple(rrset)
                self._updated_types.setdefault(name, set()).add(rdtype)
        for name, records in after.items():
            if records:
                self.static[name] = records
            else:
                self.static.pop(name, None)
            if name != self.origin and any(rr[1] == TYPE_NS for rr in records):
                self.delegations.add(name)
            else:
                self.delegations.discard(name)
            self.authority.set_served(name, served[name])

    def current_source(self, registry: Registry, name: str) -> AnswerSource | None:
        """
        What the zone should publish at C{name} now: its holder's answer,
        not a covering wildcard's; at an ACME challenge name, its values.
        """
        if not self.contains(name):
            return None
        if base_of(name) is not None:
            return registry.challenge_source(name)
        owner = registry.exact_owner(name)
        return None if owner is None else registry.answer_source(owner)

    def current_answer(self, registry: Registry, name: str) -> Answer | None:
        source = self.current_source(registry, name)
        return None if source is None else answer_from(source, registry.default_ttl)

    def answer_at(self, name: str, dynamic: Mapping[str, AnswerSource] | None = None) -> Answer | None:
        """The users' answer published at C{name} (in C{dynamic}, a snapshot, if given)."""
        source = (self.dynamic if dynamic is None else dynamic).get(name)
        return None if source is None else answer_from(source, self.default_ttl)

    # -- loading

    def load(self, registry: Registry, history: ZoneHistory | None) -> bool:
        """
        Fill the zone from the registry and choose its serial at once
        (L{filling} to the end, then L{settle}). True if the serial or
        digest must be saved.
        """
        for _ in self.filling(registry):
            pass
        return self.settle(history)

    def filling(self, registry: Registry, batch: int = 500) -> Iterator[None]:
        """
        Fill the users' part from the registry and compute the digest,
        pausing every C{batch} users or names: at 1,000,000 users this takes
        seconds, which the publisher spreads over reactor turns while DNS
        answers. Users are read a page of ids at a time, so the registry may
        change between pauses: every name that changes meanwhile is pending
        in the publisher, whose first diff compares it with what was filled.
        Nothing else may read or write L{dynamic} until it ends.
        """
        self.dynamic = dynamic = PublishedNames(registry.suffix)
        self.default_ttl = default_ttl = registry.default_ttl
        if self.accepts_dynamic:
            source_of, exact_owner, contains = registry.answer_source, registry.exact_owner, self.contains
            users, suffix = registry.users, registry.suffix
            # Every main name (one label under the suffix) is inside when
            # the suffix is this zone or below it and nothing is delegated:
            # then only the additional names are asked about.
            mains_inside = not self.delegations and (suffix == self.origin or suffix.endswith("." + self.origin))
            # The few users with ACME challenge values publish those names too.
            holders = set(registry.challenge_holders())
            page = registry.ids_after(None, batch)
            while page:
                mains: list[tuple[str, AnswerSource]] = []
                found: list[tuple[str, AnswerSource]] = []
                for user_id in page:
                    user = users.get(user_id)
                    if user_id in holders:
                        for name in registry.challenge_names(user_id):
                            challenge = registry.challenge_source(name) if contains(name) else None
                            if challenge is not None:
                                found.append((name, challenge))
                    own = None if user is None else source_of(user_id)
                    if user is None or own is None:
                        # Its names publish nothing of its own; a name another
                        # user holds is found from that user's names.
                        continue
                    if mains_inside:
                        owner = exact_owner(f"{user_id}.{suffix}")
                        source = own if owner == user_id else None if owner is None else source_of(owner)
                        if source is not None:
                            mains.append((user_id, source))
                        if not user.hostnames:
                            continue
                        names: Iterable[str] = user.hostnames
                    else:
                        names = (f"{user_id}.{suffix}", *user.hostnames)
                    for name in names:
                        if contains(name):
                            owner = exact_owner(name)
                            source = own if owner == user_id else None if owner is None else source_of(owner)
                            if source is not None:
                                found.append((name, source))
                dynamic.add_all(mains, mains=True)
                dynamic.add_all(found)
                yield
                page = registry.ids_after(page[-1], batch)
        digest, static = 0, self.static
        for name, records in static.items():
            if name not in dynamic:
                for rr in records:
                    digest ^= rr_hash(rr)
        blake2b, from_bytes = hashlib.blake2b, int.from_bytes
        for count, (name, source) in enumerate(dynamic.items(), 1):
            answer = answer_from(source, default_ttl)
            if name in static or answer.txt:
                for rr in self.records_at(name, answer):
                    digest ^= rr_hash(rr)
            else:
                ttl = answer.ttl
                for address in answer.addresses:  # rr_hash of answer_rrs, inlined
                    key = f"{name}\0{_ADDRESS_TYPES[address.version]}\0{ttl}\0".encode() + address.packed
                    digest ^= from_bytes(blake2b(key, digest_size=8).digest(), "big")
            if count % batch == 0:
                yield
        self.digest = digest

    def serve_stored_serial(self, history: ZoneHistory | None) -> None:
        """
        The serial to serve until L{settle} has compared the filled content
        with the stored one: the newest of the stored and the file's, never
        one older than a secondary may hold.
        """
        if history is not None and serial_newer(history.serial, self.file_serial):
            self.soa.serial = history.serial

    def settle(self, history: ZoneHistory | None) -> bool:
        """
        Choose the serial once L{filling} has ended: the stored one if the
        content is what it was published with; otherwise the next one after
        the stored and the file's serial (the journal then starts afresh).
        True if the serial or digest must be saved.
        """
        if history is None:
            self.soa.serial = self.file_serial
            return True
        if history.digest == self.digest_text and not serial_newer(self.file_serial, history.serial):
            self.soa.serial = history.serial
            self.steps.clear()
            self.steps.extend(history.steps)
            return False
        newest = self.file_serial if serial_newer(self.file_serial, history.serial) else history.serial
        self.soa.serial = next_serial(newest)
        return True

    def follow(self, history: ZoneHistory | None) -> None:
        """
        Take the stored serial and journal (another node publishes) if the
        content is theirs; else the zone is not L{synced} and transfers
        wait until it is.
        """
        if history is None:
            self.soa.serial = self.file_serial
            self.synced = True
        elif history.digest == self.digest_text:
            self.soa.serial = history.serial
            self.steps.clear()
            self.steps.extend(history.steps)
            self.synced = True
        else:
            self.serve_stored_serial(history)
            self.synced = False

    @property
    def digest_text(self) -> str:
        return f"{self.digest:016x}"

    # -- changes

    def diff(
        self, names: Iterable[str], registry: Registry
    ) -> tuple[list[RR], list[RR], dict[str, AnswerSource | None]]:
        """
        What publishing the registry's answers for C{names} would change:
        the records deleted and added, and the new source of every name
        whose source is new (also where its records stay the same: a newer
        state with the same addresses).
        """
        deleted: list[RR] = []
        added: list[RR] = []
        sources: dict[str, AnswerSource | None] = {}
        default_ttl = registry.default_ttl
        replayed = self.replayed
        for name in names:
            old = self.dynamic.get(name)
            new = self.current_source(registry, name)
            if old is new and name not in replayed:
                continue
            sources[name] = new
            old_answer = None if old is None else answer_from(old, default_ttl)
            new_answer = None if new is None else answer_from(new, default_ttl)
            if (
                old_answer is not None
                and new_answer is not None
                and name not in replayed
                and old_answer.addresses == new_answer.addresses
                and old_answer.ttl == new_answer.ttl
                and old_answer.txt == new_answer.txt
            ):
                continue
            before = replayed[name] if name in replayed else self.records_at(name, old_answer)
            after = self.records_at(name, new_answer)
            deleted.extend(rr for rr in before if rr not in after)
            added.extend(rr for rr in after if rr not in before)
        return deleted, added, sources

    def adopt(self, sources: dict[str, AnswerSource | None] | StagedChanges) -> None:
        """
        Keep newer sources of names (for L{diff}'s names with no record
        changed: no new serial), given one by one or staged (many, built
        in slices beforehand).
        """
        if isinstance(sources, StagedChanges):
            if self.replayed:
                for name in sources.sources:
                    self.replayed.pop(name, None)
            sources.commit()
            return
        replayed = self.replayed
        for name, source in sources.items():
            if replayed:
                replayed.pop(name, None)
            if source is None:
                self.dynamic.pop(name, None)
            else:
                self.dynamic[name] = source

    def apply(
        self, step: JournalStep, sources: dict[str, AnswerSource | None] | StagedChanges, change: int | None = None
    ) -> None:
        """
        Publish a step whose serial and journal entry are durable. C{change}:
        its L{records_hash}, if the caller has it (the publisher computed it
        for the stored digest; hashing every record again cost a long turn).
        """
        self.adopt(sources)
        self.digest ^= records_hash(step.deleted, step.added) if change is None else change
        if self.steps.maxlen:
            self.steps.append(step)
        self.soa.serial = step.serial_to

    def replay(self, step: JournalStep) -> bool:
        """
        Apply a step another node published (its serial and journal entry
        are in the store): the records it deletes and adds, exactly, at the
        names it touches. False, with nothing changed, if it does not start
        at this zone's serial or deletes a record the zone does not have
        (then the content must be rebuilt).
        """
        if step.serial_from != self.serial:
            return False
        touched: dict[str, list[RR]] = {}
        for rr in step.deleted:
            name = rr[0]
            if name not in touched:
                touched[name] = self._published_records(name)
            if rr not in touched[name]:
                return False
            touched[name].remove(rr)
        for rr in step.added:
            name = rr[0]
            if name not in touched:
                touched[name] = self._published_records(name)
            touched[name].append(rr)
        self.replayed.update(touched)
        self.digest ^= records_hash(step.deleted, step.added)
        if self.steps.maxlen:
            self.steps.append(step)
        self.soa.serial = step.serial_to
        return True

    def _published_records(self, name: str) -> list[RR]:
        if name in self.replayed:
            return list(self.replayed[name])
        return self.records_at(name, self.answer_at(name))

    def digest_after(self, deleted: Iterable[RR], added: Iterable[RR], change: int | None = None) -> str:
        """The digest text once C{deleted} and C{added} (whose L{records_hash} is C{change}, if known) are applied."""
        return f"{self.digest ^ (records_hash(deleted, added) if change is None else change):016x}"

    # -- reading for transfers

    def all_records(
        self, dynamic: Mapping[str, AnswerSource] | None = None, replayed: Mapping[str, list[RR]] | None = None
    ) -> Iterator[RR]:
        """
        Every record but the SOA: the apex first, then the other names (of
        C{dynamic} and C{replayed}, snapshots, if given).
        """
        dynamic = self.dynamic if dynamic is None else dynamic
        replayed = self.replayed if replayed is None else replayed
        apex, default_ttl = self.origin, self.default_ttl
        if apex in replayed:
            yield from replayed[apex]
        else:
            yield from self.records_at(apex, self.answer_at(apex, dynamic))
        for name, records in self.static.items():
            if name != apex and name not in dynamic and name not in replayed:
                yield from records
        for name, source in dynamic.items():
            if name != apex and name not in replayed:
                yield from self.records_at(name, answer_from(source, default_ttl))
        for name, records in replayed.items():
            if name != apex:
                yield from records

    def steps_since(self, serial: int) -> list[JournalStep] | None:
        """
        The journal steps from C{serial} to the current serial, or None if
        the journal does not reach back to it (the answer is then a full
        transfer).
        """
        if serial == self.serial:
            return []
        for index, step in enumerate(self.steps):
            if step.serial_from == serial:
                return list(self.steps)[index:]
        return None

    def soa_rr(self, serial: int | None = None) -> RR:
        soa = self.soa
        rdata = _rdata(soa)
        if serial is not None:
            # the serial follows MNAME and RNAME; it is the 20 bytes' first 4
            rdata = rdata[:-20] + struct.pack("!I", serial) + rdata[-16:]
        ttl = soa.ttl if soa.ttl is not None else soa.minimum
        return (self.origin, TYPE_SOA, int(ttl), rdata)
