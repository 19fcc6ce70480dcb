"""
RFC 2136 UPDATE of the operator's host zones (C{[[dns.zones]]} with
C{allow_update} or C{update_keys}): what a DHCP server, a Windows client
registering its addresses or an C{nsupdate} script sends to BIND.

The UPDATE handler (L{dyndns_plugin.protocols.dns_update}) reads the
message, checks its TSIG (a zone key's here) or its source, and hands it
over; this module decides what the update does (RFC 2136 section 3.2 to
3.4, with the same prerequisite and prescan code as users' updates) and the
zone publisher makes it one durable write: the changed RRsets, the new
serial and its journal step in one transaction, then memory (queries, the
answer cache, AXFR/IXFR), then NOTIFY, then the answer.

The zone file is never written: an update's RRset replaces the file's RRset
of the same name and type (an empty one hides it) until C{dyndns zone
clear}. Users' names stay their users': an update at a name a user holds is
refused. The apex SOA and NS belong to the zone file: adding them is
refused, deleting them is ignored (RFC 2136 section 3.4.2.3).
"""

from __future__ import annotations

import base64
import ipaddress
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import attrs
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from dyndns_plugin.config import HostZone, ZoneUpdateKey
from dyndns_plugin.dns.reader import CLASS_ANY, CLASS_IN, CLASS_NONE, TYPE_A, TYPE_AAAA, Labels, Record, UpdateRequest
from dyndns_plugin.dns.rfc2136 import (
    FORMERR,
    REFUSED,
    TYPE_ANY,
    UpdateError,
    check_prerequisites,
    prescan,
)
from dyndns_plugin.dns.signing import TSIGKey, labels_of
from dyndns_plugin.dns.zones import twisted_record
from dyndns_plugin.registry import Registry
from dyndns_plugin.replication.journal import RRsetChanges
from dyndns_plugin.store import RR, RRsetKey

if TYPE_CHECKING:
    from dyndns_plugin.replication.journal import ZoneState
    from dyndns_plugin.replication.publisher import ZonePublisher

TYPE_NS, TYPE_SOA, TYPE_CNAME = 2, 6, 5
#: RFC 2181 section 8: a TTL with the top bit set is taken as 0.
_MAX_TTL = 2**31 - 1


@attrs.frozen
class ZoneKey:
    """A zone's update key, as the wire sees it, with what it may change."""

    origin: str
    tsig: TSIGKey
    policy: ZoneUpdateKey


@attrs.frozen
class ZoneRights:
    """Who may update one host zone: sources of unsigned updates and keys."""

    origin: str
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def allows_source(self, peer: str | None) -> bool:
        if peer is None or not self.allow:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allow)


def name_text(key: Labels) -> str:
    """The zone's text form of lower-cased labels (dnspython's escapes, as zone files load)."""
    return dns.name.Name((*key, b"")).to_text(omit_final_dot=True)


#: Types whose data holds no name: as received is uncompressed and canonical
#: (the reader checked the sizes), no parsing needed: most updates are these.
_PLAIN = frozenset({TYPE_A, TYPE_AAAA})


def _data(record: Record, wire: bytes) -> tuple[bytes, bytes]:
    """
    The record's data uncompressed (names as sent) and in canonical form,
    read from the message (its names may be compressed) as class IN data
    (NONE and ANY only mark deletes); FORMERR if it does not read.
    """
    if record.rdtype in _PLAIN:
        return record.rdata, record.rdata
    try:
        rdata = dns.rdata.from_wire(
            dns.rdataclass.IN,
            dns.rdatatype.RdataType.make(record.rdtype),
            wire,
            record.rdata_at,
            len(record.rdata),
        )
    except (dns.exception.DNSException, ValueError, IndexError) as e:
        raise UpdateError(FORMERR, f"bad rdata of type {record.rdtype}: {e}") from None
    uncompressed = rdata.to_wire()
    assert uncompressed is not None  # (no file given)
    return uncompressed, rdata.to_digestable()


def _servable(rdtype: int, rdata: bytes) -> None:
    """
    FORMERR unless the query side (Twisted's record classes) reads the data
    too: dnspython takes any bytes for types it has no class for (MINFO...),
    which Twisted may not, and what is stored must be served.
    """
    if rdtype in _PLAIN:
        return
    try:
        twisted_record(rdtype, rdata, 0)
    except Exception:
        raise UpdateError(FORMERR, f"data of type {rdtype} that cannot be served") from None


def canonical(rdtype: int, rdata: bytes) -> bytes:
    """Uncompressed rdata in its canonical form (names lower-cased, RFC 4034 6.2): how RRs are compared."""
    if rdtype in _PLAIN:
        return rdata
    return dns.rdata.from_wire(
        dns.rdataclass.IN, dns.rdatatype.RdataType.make(rdtype), rdata, 0, len(rdata)
    ).to_digestable()


class _Working:
    """
    The zone's own RRsets at the names an update touches (with C{pending},
    the changes of the updates before it in its batch), changed one RR at a
    time (RFC 2136 3.4.2).
    """

    def __init__(self, zone: ZoneState, pending: RRsetChanges) -> None:
        self.zone = zone
        self.pending = pending
        self.rrsets: dict[RRsetKey, list[RR]] = {}
        self.types: dict[str, list[int]] = {}  # the types of each loaded name
        self.loaded: set[str] = set()
        self.touched: set[RRsetKey] = set()

    def types_at(self, name: str) -> list[int]:
        self._load(name)
        return [rdtype for rdtype in self.types[name] if self.rrsets[(name, rdtype)]]

    def rrset(self, name: str, rdtype: int) -> list[RR]:
        self._load(name)
        self.touched.add((name, rdtype))
        if (name, rdtype) not in self.rrsets:
            self.rrsets[(name, rdtype)] = []
            self.types[name].append(rdtype)
        return self.rrsets[(name, rdtype)]

    def _load(self, name: str) -> None:
        if name in self.loaded:
            return
        self.loaded.add(name)
        types = self.types[name] = []
        for rr in self.zone.own_records(name, self.pending):
            if (name, rr[1]) not in self.rrsets:
                self.rrsets[(name, rr[1])] = []
                types.append(rr[1])
            self.rrsets[(name, rr[1])].append(rr)

    def changes(self) -> RRsetChanges:
        """The touched RRsets that differ from what is served, as the zone's updated RRsets."""
        zone = self.zone
        changes = RRsetChanges()
        for name, rdtype in sorted(self.touched):
            after = tuple(self.rrsets.get((name, rdtype), ()))
            before = tuple(rr for rr in zone.own_records(name, self.pending) if rr[1] == rdtype)
            if after == before:
                continue
            from_file = tuple(rr for rr in zone.file_records.get(name, ()) if rr[1] == rdtype)
            changes[(name, rdtype)] = None if after == from_file else after
        return changes


class HostZoneUpdates:
    """
    The host zones that take updates, their keys, and what an authorised
    update does to one (L{update}).
    """

    def __init__(self, zones: Sequence[HostZone], publisher: ZonePublisher, registry: Registry) -> None:
        self.publisher = publisher
        self.registry = registry
        self.rights: dict[Labels, ZoneRights] = {}
        #: Key name -> zone -> key: one name may serve several zones (a DHCP
        #: server's key for the forward and the reverse zone).
        self.keys: dict[Labels, dict[str, ZoneKey]] = {}
        for zone in zones:
            if not zone.updatable:
                continue
            networks = tuple(ipaddress.ip_network(n) for n in zone.allow_update)
            self.rights[labels_of(zone.origin)] = ZoneRights(zone.origin, networks)
            for key in zone.update_keys:
                tsig = TSIGKey.make(labels_of(key.name), base64.b64decode(key.secret), key.algorithm)
                self.keys.setdefault(labels_of(key.name), {})[zone.origin] = ZoneKey(zone.origin, tsig, key)

    def zone_rights(self, zone: Labels) -> ZoneRights | None:
        """The rights of the updatable host zone C{zone}, if it is one."""
        return self.rights.get(zone)

    def key_for(self, keyname: Labels, zone: Labels | None) -> ZoneKey | None:
        """
        The zone key C{keyname} of the zone C{zone}; if that zone has none of
        that name, another zone's (the request is then verified, and refused).
        """
        keys = self.keys.get(keyname)
        if not keys:
            return None
        origin = b".".join(zone).decode("ascii", "replace") if zone is not None else None
        return keys.get(origin) if origin in keys else next(iter(keys.values()))

    async def update(self, request: UpdateRequest, wire: bytes, rights: ZoneRights, key: ZoneKey | None) -> None:
        """
        Apply C{request} (its zone section names C{rights}' zone; C{key}: the
        zone key that signed it, None for an allowed source) durably, or
        raise L{UpdateError}.
        """
        if key is not None and key.origin != rights.origin:
            raise UpdateError(REFUSED, f"key {key.policy.name} is not for {rights.origin}")

        def plan(zone: ZoneState, pending: RRsetChanges) -> RRsetChanges:
            return self._plan(request, wire, zone, pending, key.policy if key is not None else None)

        await self.publisher.update_host_zone(rights.origin, plan)

    # -- what the update does

    def _plan(
        self,
        request: UpdateRequest,
        wire: bytes,
        zone: ZoneState,
        pending: RRsetChanges,
        policy: ZoneUpdateKey | None,
    ) -> RRsetChanges:
        apex = request.zone[0].key

        def records(name: str) -> list[RR]:
            """What a transfer would hold at C{name} once C{pending} is made."""
            return zone.records_at(name, zone.answer_at(name), zone.own_records(name, pending))

        def rrset_now(key: Labels, rdtype: int) -> set[Any] | None:
            return {canonical(rdtype, rr[3]) for rr in records(name_text(key)) if rr[1] == rdtype} or None

        def in_use(key: Labels) -> bool:
            name = name_text(key)
            return bool(records(name)) or name == zone.origin

        def value_of(record: Record) -> object:
            return _data(record, wire)[1]

        check_prerequisites(request, apex, rrset_now, in_use, value_of)
        prescan(request, apex)
        # Every add's data must be readable (and is kept uncompressed), and servable.
        data = {id(r): _data(r, wire) for r in request.updates if r.rdclass in (CLASS_IN, CLASS_NONE)}
        for record in request.updates:
            if record.rdclass == CLASS_IN:
                _servable(record.rdtype, data[id(record)][0])
        self._check_rights(request.updates, zone, policy)
        work = _Working(zone, pending)
        for record in request.updates:
            name = name_text(record.key)
            if record.rdclass == CLASS_IN:
                self._add(work, name, record, data[id(record)])
            elif record.rdclass == CLASS_ANY:
                self._delete_rrsets(work, name, record.rdtype, zone.origin)
            else:
                self._delete_rr(work, name, record.rdtype, data[id(record)], zone.origin)
        return work.changes()

    def _check_rights(self, updates: Iterable[Record], zone: ZoneState, policy: ZoneUpdateKey | None) -> None:
        for record in updates:
            name = name_text(record.key)
            owner = self.registry.owner_of(name)
            if owner is not None:
                raise UpdateError(REFUSED, f"{name} is user {owner}'s name")
            if record.rdclass == CLASS_IN and (
                record.rdtype == TYPE_SOA or (record.rdtype == TYPE_NS and name == zone.origin)
            ):
                raise UpdateError(
                    REFUSED, f"only the zone file sets the {'SOA' if record.rdtype == TYPE_SOA else 'apex NS'}"
                )
            if policy is None:
                continue
            if policy.names and not any(_covers(pattern, name) for pattern in policy.names):
                raise UpdateError(REFUSED, f"key {policy.name} may not change {name}")
            if policy.types and record.rdtype != TYPE_ANY and record.rdtype not in policy.types:
                raise UpdateError(REFUSED, f"key {policy.name} may not change type {record.rdtype}")
            if policy.types and record.rdtype == TYPE_ANY:
                raise UpdateError(REFUSED, f"key {policy.name} may not delete every type at {name}")

    @staticmethod
    def _add(work: _Working, name: str, record: Record, data: tuple[bytes, bytes]) -> None:
        rdtype = record.rdtype
        types = work.types_at(name)
        if rdtype == TYPE_CNAME and any(t != TYPE_CNAME for t in types):
            return  # other data there: the CNAME is ignored (3.4.2.2)
        if rdtype != TYPE_CNAME and TYPE_CNAME in types:
            return  # a CNAME there: other data is ignored
        ttl = record.ttl if record.ttl <= _MAX_TTL else 0
        rrset = work.rrset(name, rdtype)
        if rdtype == TYPE_CNAME:
            rrset.clear()  # a CNAME replaces the CNAME
        wire, new = data
        kept = [rr for rr in rrset if canonical(rdtype, rr[3]) != new]
        # One TTL per RRset (RFC 2181 5.2): the newest, as BIND does.
        rrset[:] = [(n, t, ttl, d) for n, t, _, d in kept] + [(name, rdtype, ttl, wire)]

    @staticmethod
    def _delete_rrsets(work: _Working, name: str, rdtype: int, origin: str) -> None:
        if rdtype == TYPE_ANY:
            types = [t for t in work.types_at(name) if name != origin or t not in (TYPE_SOA, TYPE_NS)]
        elif name == origin and rdtype in (TYPE_SOA, TYPE_NS):
            return  # the apex SOA and NS stay (3.4.2.3)
        else:
            types = [rdtype]
        for t in types:
            work.rrset(name, t).clear()

    @staticmethod
    def _delete_rr(work: _Working, name: str, rdtype: int, data: tuple[bytes, bytes], origin: str) -> None:
        if rdtype == TYPE_SOA:
            return  # never deleted (3.4.2.4)
        rrset = work.rrset(name, rdtype)
        gone = data[1]
        left = [rr for rr in rrset if canonical(rdtype, rr[3]) != gone]
        if not left and name == origin and rdtype == TYPE_NS:
            return  # the last apex NS stays
        rrset[:] = left


def _covers(pattern: str, name: str) -> bool:
    """Does a key's C{names} entry (C{name}, or C{*.name}: the names below it) cover C{name}?"""
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern
