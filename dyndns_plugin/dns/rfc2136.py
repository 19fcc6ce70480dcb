"""
RFC 2136 UPDATE processing that every zone shares, users' and host zones
alike: the RCODEs, the prerequisite checks (section 3.2) and the prescan of
the update section (section 3.4.1), over lookups each kind of zone gives.
"""

from __future__ import annotations

from typing import Any, Callable

from dyndns_plugin.dns.reader import CLASS_ANY, CLASS_IN, CLASS_NONE, Labels, Record, UpdateRequest

# RCODEs and TSIG errors (RFC 1035, 2136, 8945).
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, REFUSED = 0, 1, 2, 3, 5
YXDOMAIN, YXRRSET, NXRRSET, NOTAUTH, NOTZONE = 6, 7, 8, 9, 10
BADSIG, BADKEY, BADTIME, BADTRUNC = 16, 17, 18, 22
OPCODE_UPDATE = 5
TYPE_SOA = 6
TYPE_ANY = 255
RCODE_NAMES = {
    FORMERR: "FORMERR",
    SERVFAIL: "SERVFAIL",
    NXDOMAIN: "NXDOMAIN",
    REFUSED: "REFUSED",
    YXDOMAIN: "YXDOMAIN",
    YXRRSET: "YXRRSET",
    NXRRSET: "NXRRSET",
    NOTAUTH: "NOTAUTH",
    NOTZONE: "NOTZONE",
}
# ANY, AXFR, IXFR, MAILA, MAILB, OPT, TSIG, TKEY
META_TYPES = frozenset({255, 252, 251, 254, 253, 41, 250, 249})


class UpdateError(Exception):
    """Stop processing and answer this RCODE (signed)."""

    def __init__(self, rcode: int, reason: str, audited: bool = False) -> None:
        super().__init__(reason)
        self.rcode = rcode
        #: True when the service's write already wrote the audit event.
        self.audited = audited


def show(key: Labels) -> str:
    """A name for messages: C{example.org.}."""
    return ".".join(label.decode("ascii", "backslashreplace") for label in key) + "."


def is_subdomain(key: Labels, zone: Labels) -> bool:
    """Is C{key} C{zone} or below it?"""
    return len(key) >= len(zone) and key[len(key) - len(zone) :] == zone


def check_prerequisites(
    request: UpdateRequest,
    zone: Labels,
    rrset_now: Callable[[Labels, int], set[Any] | None],
    in_use: Callable[[Labels], bool],
    value_of: Callable[[Record], object],
) -> None:
    """
    RFC 2136 section 3.2 over a zone's content as the lookups give it:
    C{rrset_now} (an RRset's values, or None), C{in_use} (a name has
    records) and C{value_of} (a prerequisite record's value, comparable
    with C{rrset_now}'s). Raises L{UpdateError} with the RCODE.
    """
    wanted: dict[tuple[Labels, int], set[object]] = {}
    for record in request.prerequisites:
        if record.ttl != 0:
            raise UpdateError(FORMERR, "prerequisite with TTL not 0")
        if not is_subdomain(record.key, zone):
            raise UpdateError(NOTZONE, f"{show(record.key)} is outside {show(zone)}")
        # (the parser refuses data in class ANY and NONE prerequisites)
        if record.rdclass == CLASS_ANY:
            if record.rdtype == TYPE_ANY:
                if not in_use(record.key):
                    raise UpdateError(NXDOMAIN, f"{show(record.key)} is not in use")
            elif rrset_now(record.key, record.rdtype) is None:
                raise UpdateError(NXRRSET, f"no {show(record.key)} RRset")
        elif record.rdclass == CLASS_NONE:
            if record.rdtype == TYPE_ANY:
                if in_use(record.key):
                    raise UpdateError(YXDOMAIN, f"{show(record.key)} is in use")
            elif rrset_now(record.key, record.rdtype) is not None:
                raise UpdateError(YXRRSET, f"{show(record.key)} RRset exists")
        elif record.rdclass == CLASS_IN:
            # Value-dependent: the records of one name and type form
            # the RRset to compare (RFC 2136 section 3.2.5).
            wanted.setdefault((record.key, record.rdtype), set()).add(value_of(record))
        else:
            raise UpdateError(FORMERR, "prerequisite of another class")
    for (key, rdtype), values in wanted.items():
        if rrset_now(key, rdtype) != values:
            raise UpdateError(NXRRSET, f"{show(key)} RRset differs")


def prescan(request: UpdateRequest, zone: Labels) -> None:
    """RFC 2136 section 3.4.1: every update RR inside the zone and well formed, or L{UpdateError}."""
    for record in request.updates:
        if not is_subdomain(record.key, zone):
            raise UpdateError(NOTZONE, f"{show(record.key)} is outside {show(zone)}")
        if record.rdclass == CLASS_ANY:  # (the parser refuses data here)
            if record.ttl != 0:
                raise UpdateError(FORMERR, "malformed RRset delete")
            if record.rdtype in META_TYPES and record.rdtype != TYPE_ANY:
                raise UpdateError(FORMERR, "delete of a meta type")
        elif record.rdclass == CLASS_NONE:
            if record.ttl != 0 or record.rdtype in META_TYPES or not record.rdata:
                raise UpdateError(FORMERR, "malformed RR delete")
        elif record.rdclass == CLASS_IN:
            if record.rdtype in META_TYPES:
                raise UpdateError(FORMERR, "add of a meta type")
        else:
            raise UpdateError(FORMERR, "update of another class")
