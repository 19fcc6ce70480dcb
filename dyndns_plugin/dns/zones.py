"""
Static zones served behind the DynDNS resolver: the suffix zone's apex (SOA,
NS and glue) in standalone mode, and the operator's host zones from BIND zone
files.

Zone files are parsed with dnspython (Twisted's BindAuthority mangles quoted
TXT strings and does not expand C{@} in record data) and handed to Twisted's
L{FileAuthority} as Twisted records, so the query logic is Twisted's own.
"""

from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone
from twisted.names import dns as tdns
from twisted.names.authority import FileAuthority

from dyndns_plugin.model import IPAddress


class ZoneFileError(ValueError):
    """A zone file that cannot be served; the message names file and cause."""


def negative_ttl(soa: tdns.Record_SOA) -> int:
    """The TTL of a negative answer's SOA: min(SOA TTL, minimum), RFC 2308 section 5."""
    return min(soa.minimum, soa.ttl if soa.ttl is not None else soa.minimum)


class StaticZone(FileAuthority):
    """
    A L{FileAuthority} built from data instead of a file.

    @param origin: the zone apex, e.g. C{"example.org"}.
    @param records: lower-case name -> Twisted records; must include the SOA
        at the apex.
    """

    def __init__(self, origin: str, records: Mapping[bytes, list[object]]) -> None:
        self._initial = (origin, records)
        super().__init__(origin)

    soa: tuple[bytes, tdns.Record_SOA]  # type: ignore[assignment]
    records: dict[bytes, list[Any]]  # type: ignore[assignment]

    def loadFile(self, _filename: str) -> None:
        origin, records = self._initial
        self.records = {name: list(recs) for name, recs in records.items()}
        apex = origin.encode("ascii").lower()
        soas = [r for r in self.records.get(apex, ()) if isinstance(r, tdns.Record_SOA)]
        if len(soas) != 1:
            raise ZoneFileError(f"zone {origin}: needs exactly one SOA at the apex")
        self.soa = (apex, soas[0])

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any = None) -> Any:
        """
        FileAuthority gives the SOA of a NODATA answer the TTL of the last
        record it looked at; negative caching must use L{negative_ttl}.
        """

        def fix(result: Any) -> Any:
            answers, authority, additional = result
            if not answers:
                authority = [
                    tdns.RRHeader(rr.name.name, tdns.SOA, tdns.IN, negative_ttl(rr.payload), rr.payload, auth=True)
                    if rr.type == tdns.SOA
                    else rr
                    for rr in authority
                ]
            return answers, authority, additional

        return super()._lookup(name, cls, type, timeout).addCallback(fix)

    @property
    def origin(self) -> str:
        return self.soa[0].decode("ascii")

    def served_records(self, name: str, records: Sequence[tuple[str, int, int, bytes]]) -> list[Any]:
        """
        The Twisted records that serve C{records} (wire RRs: name, type,
        TTL, rdata) at C{name} (the apex keeps its SOA); raises for data
        Twisted cannot read.
        """
        kept = [self.soa[1]] if name.encode("ascii") == self.soa[0] else []
        return kept + [twisted_record(rdtype, rdata, ttl) for _, rdtype, ttl, rdata in records]

    def set_served(self, name: str, served: list[Any]) -> None:
        """Answer C{name} with L{served_records} from now on: how an RFC 2136 update reaches queries."""
        key = name.encode("ascii")
        if served:
            self.records[key] = served
        else:
            self.records.pop(key, None)


def suffix_zone(
    suffix: str,
    *,
    mname: str,
    rname: str,
    serial: int,
    refresh: int,
    retry: int,
    expire: int,
    minimum: int,
    ttl: int,
    nameservers: Sequence[str],
    glue: Mapping[str, Sequence[IPAddress]],
) -> StaticZone:
    """The apex of the suffix zone: SOA, NS and addresses of in-zone servers."""
    apex = suffix.encode("ascii")
    records: dict[bytes, list[object]] = {
        apex: [
            tdns.Record_SOA(
                mname=mname,
                rname=rname,
                serial=serial,
                refresh=refresh,
                retry=retry,
                expire=expire,
                minimum=minimum,
                ttl=ttl,
            )
        ]
    }
    records[apex].extend(tdns.Record_NS(ns, ttl=ttl) for ns in nameservers)
    for name, addresses in glue.items():
        records.setdefault(name.encode("ascii"), []).extend(
            tdns.Record_A(str(a), ttl=ttl) if a.version == 4 else tdns.Record_AAAA(str(a), ttl=ttl) for a in addresses
        )
    return StaticZone(suffix, records)


def twisted_record(rdtype: int, wire: bytes, ttl: int) -> object:
    """The Twisted record of uncompressed rdata C{wire}."""
    record_class = tdns.Message().lookupRecordType(rdtype)
    record = record_class()
    record.decode(io.BytesIO(wire), len(wire))
    record.ttl = ttl  # type: ignore[attr-defined]
    return record


def load_zone_file(path: str, origin: str) -> StaticZone:
    """
    Parse a BIND zone file into a L{StaticZone}. Raises L{ZoneFileError}
    naming the file, the line where known, and the problem.
    """
    try:
        zone = dns.zone.from_file(path, origin=origin + ".", relativize=False, check_origin=True)
    except OSError as e:
        raise ZoneFileError(f"{path}: {e.strerror}") from None
    except (dns.exception.DNSException, ValueError) as e:
        raise ZoneFileError(f"{path}: {e}") from None
    records: dict[bytes, list[object]] = {}
    for name, node in zone.nodes.items():
        key = name.to_text(omit_final_dot=True).lower().encode("ascii")
        for rdataset in node.rdatasets:
            if rdataset.rdclass != dns.rdataclass.IN:
                continue
            for rdata in rdataset:
                records.setdefault(key, []).append(twisted_record(rdataset.rdtype, rdata.to_wire(), rdataset.ttl))
    return StaticZone(origin, records)
