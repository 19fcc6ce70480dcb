"""
The published content of a zone we transfer: its serial, its records at that
serial, and the journal of changes that led there (for IXFR).

A zone is the operator's static records (the suffix zone's apex from the
config, or a host zone file) plus the users' names inside it. The users'
part is kept as the registry's own immutable L{Answer} objects per name, so
the published copy costs a dict entry per name, not a second copy of every
address. Only L{ZonePublisher} changes it, and only after the new serial and
its journal step are durable; AXFR and IXFR read it, so what a secondary
gets always matches the serial it is told.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections import deque
from typing import Iterable, Iterator

from twisted.names import dns as tdns

from dyndns_plugin.dns.zones import StaticZone
from dyndns_plugin.registry import Answer, Registry
from dyndns_plugin.store import RR, JournalStep, ZoneHistory

TYPE_A, TYPE_NS, TYPE_SOA, TYPE_AAAA = 1, 2, 6, 28
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


def answer_rrs(name: str, answer: Answer | None) -> list[RR]:
    if answer is None:
        return []
    return [(name, _ADDRESS_TYPES[a.version], answer.ttl, a.packed) for a in answer.addresses]


def _rdata(record: object) -> bytes:
    buffer = io.BytesIO()
    record.encode(buffer, None)  # type: ignore[attr-defined]
    return buffer.getvalue()


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
        self.dynamic: dict[str, Answer] = {}
        self.digest = 0
        self.steps: deque[JournalStep] = deque(maxlen=keep) if keep > 0 else deque(maxlen=0)

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

    def records_at(self, name: str, answer: Answer | None) -> list[RR]:
        """
        The zone's records at C{name} with the user's answer: the user's
        A/AAAA replace the static ones of the same type, as the resolver
        (which answers first) does.
        """
        dynamic = answer_rrs(name, answer)
        if not dynamic:
            return list(self.static.get(name, ()))
        types = {rr[1] for rr in dynamic}
        return [rr for rr in self.static.get(name, ()) if rr[1] not in types] + dynamic

    def current_answer(self, registry: Registry, name: str) -> Answer | None:
        """The answer the zone publishes at C{name}: its holder's, not a covering wildcard's."""
        if not self.contains(name):
            return None
        owner = registry.exact_owner(name)
        answer = None if owner is None else registry.answer_for_user(owner)
        return answer if answer is not None and answer.addresses else None

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
        self.dynamic = dynamic = {}
        if self.accepts_dynamic:
            answer_for_user, exact_owner, contains = registry.answer_for_user, registry.exact_owner, self.contains
            users, suffix = registry.users, registry.suffix
            # Every main name (one label under the suffix) is inside when
            # the suffix is this zone or below it and nothing is delegated:
            # then only the additional names are asked about.
            mains_inside = not self.delegations and (suffix == self.origin or suffix.endswith("." + self.origin))
            page = registry.ids_after(None, batch)
            while page:
                for user_id in page:
                    user = users.get(user_id)
                    own = None if user is None else answer_for_user(user_id)
                    if user is None or own is None or not own.addresses:
                        # Its names publish nothing of its own; a name another
                        # user holds is found from that user's names.
                        continue
                    main = f"{user_id}.{suffix}"
                    if mains_inside:
                        owner = exact_owner(main)
                        answer = own if owner == user_id else None if owner is None else answer_for_user(owner)
                        if answer is not None and answer.addresses:
                            dynamic[main] = answer
                        if not user.hostnames:
                            continue
                        names: Iterable[str] = user.hostnames
                    else:
                        names = (main, *user.hostnames)
                    for name in names:
                        if contains(name):
                            owner = exact_owner(name)
                            answer = own if owner == user_id else None if owner is None else answer_for_user(owner)
                            if answer is not None and answer.addresses:
                                dynamic[name] = answer
                yield
                page = registry.ids_after(page[-1], batch)
        digest, static = 0, self.static
        for name, records in static.items():
            if name not in dynamic:
                for rr in records:
                    digest ^= rr_hash(rr)
        blake2b, from_bytes = hashlib.blake2b, int.from_bytes
        for count, (name, answer) in enumerate(dynamic.items(), 1):
            if name in static:
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

    @property
    def digest_text(self) -> str:
        return f"{self.digest:016x}"

    # -- changes

    def diff(self, names: Iterable[str], registry: Registry) -> tuple[list[RR], list[RR], dict[str, Answer | None]]:
        """What publishing the registry's answers for C{names} would change."""
        deleted: list[RR] = []
        added: list[RR] = []
        answers: dict[str, Answer | None] = {}
        for name in names:
            old = self.dynamic.get(name)
            new = self.current_answer(registry, name)
            if old == new:
                continue
            answers[name] = new
            before = self.records_at(name, old)
            after = self.records_at(name, new)
            deleted.extend(rr for rr in before if rr not in after)
            added.extend(rr for rr in after if rr not in before)
        return deleted, added, answers

    def apply(self, step: JournalStep, answers: dict[str, Answer | None]) -> None:
        """Publish a step whose serial and journal entry are durable."""
        for name, answer in answers.items():
            if answer is None:
                self.dynamic.pop(name, None)
            else:
                self.dynamic[name] = answer
        for rr in step.deleted:
            self.digest ^= rr_hash(rr)
        for rr in step.added:
            self.digest ^= rr_hash(rr)
        if self.steps.maxlen:
            self.steps.append(step)
        self.soa.serial = step.serial_to

    def digest_after(self, deleted: list[RR], added: list[RR]) -> str:
        digest = self.digest
        for rr in deleted:
            digest ^= rr_hash(rr)
        for rr in added:
            digest ^= rr_hash(rr)
        return f"{digest:016x}"

    # -- reading for transfers

    def all_records(self, dynamic: dict[str, Answer] | None = None) -> Iterator[RR]:
        """Every record but the SOA: the apex first, then the other names."""
        dynamic = self.dynamic if dynamic is None else dynamic
        apex = self.origin
        yield from self.records_at(apex, dynamic.get(apex))
        for name, records in self.static.items():
            if name != apex and name not in dynamic:
                yield from records
        for name, answer in dynamic.items():
            if name != apex:
                yield from self.records_at(name, answer)

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
