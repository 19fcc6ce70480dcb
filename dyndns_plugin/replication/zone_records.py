"""
The RRsets that RFC 2136 updates gave the host zones, as people read them:
C{dyndns zone show}, C{GET /api/zones} and the C{zones} of C{/api/state}.
"""

from __future__ import annotations

from typing import Any, Mapping

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from dyndns_plugin.store import RR, RRsetKey


def type_text(rdtype: int) -> str:
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(rdtype))


def rdata_text(rdtype: int, rdata: bytes) -> str:
    """Uncompressed rdata in zone-file text (C{10 mx.example.org.})."""
    kind = dns.rdatatype.RdataType.make(rdtype)
    return dns.rdata.from_wire(dns.rdataclass.IN, kind, rdata, 0, len(rdata)).to_text()


def records_view(updated: Mapping[RRsetKey, tuple[RR, ...]]) -> list[dict[str, Any]]:
    """
    One entry per updated RRset, by name and type: its records, or
    C{"deleted": true} where the update hides the zone file's RRset.
    """
    view: list[dict[str, Any]] = []
    for (name, rdtype), records in sorted(updated.items()):
        entry: dict[str, Any] = {"name": name, "type": type_text(rdtype)}
        if records:
            entry["ttl"] = records[0][2]
            entry["data"] = [rdata_text(rdtype, rr[3]) for rr in records]
        else:
            entry["deleted"] = True
        view.append(entry)
    return view


def zone_file_lines(updated: Mapping[RRsetKey, tuple[RR, ...]]) -> list[str]:
    """The same as zone-file lines (a hidden RRset as a comment)."""
    lines = []
    for (name, rdtype), records in sorted(updated.items()):
        if not records:
            lines.append(f"; {name}. {type_text(rdtype)}: deleted (hides the zone file's)")
        for _, _, ttl, rdata in records:
            lines.append(f"{name}. {ttl} IN {type_text(rdtype)} {rdata_text(rdtype, rdata)}")
    return lines
