"""
Response rate limiting (RRL) for DNS over UDP, as BIND, NSD and Knot do it.

A spoofed UDP query makes us send an answer to the victim whose address was
forged, usually a larger one than the query (reflection and amplification);
a flood of random names under our zones (random-subdomain attack) makes us
send NXDOMAIN after NXDOMAIN. RRL counts the responses we send per *flow*:

 - the client's network (IPv4 /24 and IPv6 /56 by default, so one victim
   or one attacker network is one flow whatever its single addresses);
 - the response class: an answer, NXDOMAIN, NODATA, an error, a referral;
 - the name: the query name for answers; for NXDOMAIN and NODATA the zone
   (the owner of the SOA in the authority section), so that random names
   under one zone share one flow; none for errors (all errors to one
   network share one flow, as in BIND);
 - the query type (not for NXDOMAIN, errors and referrals).

Each flow has a token bucket that holds C{responses_per_second} tokens and
refills at that rate. A response takes a token; without one it is
*limited*: every C{slip}-th limited response goes out truncated (TC=1, no
records), so a real resolver behind that address retries over TCP, where
nothing is limited (a forged source cannot complete a TCP handshake), and
the others are dropped. C{slip = 0} drops all, C{slip = 1} truncates all.

The table of flows is an LRU of at most C{table_size} entries, so a flood
from random sources costs bounded memory: the oldest flow is forgotten
(and starts with a full bucket if it comes back), while an active flow
stays because each response moves it to the end.

Only UDP is limited; the server calls L{ResponseRateLimiter.check} for
every datagram it is about to send. Sources in C{exempt} (loopback by
default, for local monitoring and benchmarks) and queries with a valid DNS
cookie (which proves the source address, see L{dyndns_plugin.dns.cookies})
are never limited.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import OrderedDict
from typing import Any, Iterable

from twisted.internet.interfaces import IReactorTime
from twisted.names import dns

from dyndns_plugin.dns.reader import Malformed, read_name

#: Response classes (indexes of L{ResponseRateLimiter.dropped} and
#: L{ResponseRateLimiter.slipped}).
ANSWER, NXDOMAIN, NODATA, ERROR, REFERRAL = range(5)
CLASS_NAMES = ("answer", "nxdomain", "nodata", "error", "referral")

#: What to do with a response: send it, drop it, or send it truncated.
SEND, DROP, SLIP = 0, 1, 2

#: A prefix key that means "never limited".
_EXEMPT = -1
#: Source addresses remembered with their prefix key (cleared when full).
_SOURCE_CACHE_SIZE = 16384
_V6_FLAG = 1 << 128

DEFAULT_EXEMPT = ("127.0.0.0/8", "::1/128")


def _mask(bits: int, width: int) -> int:
    return ((1 << bits) - 1) << (width - bits)


class ResponseRateLimiter:
    """
    The flows and their buckets. C{check(host, cls, name, qtype)} says
    whether a response may be sent (L{SEND}), must be dropped (L{DROP}) or
    sent truncated (L{SLIP}), and counts it.

    @param clock: C{seconds()} (the reactor, or C{task.Clock} in tests).
    @ivar dropped: responses dropped, per response class.
    @ivar slipped: responses sent truncated instead, per response class.
    """

    def __init__(
        self,
        clock: IReactorTime,
        responses_per_second: int = 200,
        slip: int = 2,
        ipv4_prefix: int = 24,
        ipv6_prefix: int = 56,
        exempt: Iterable[str] = DEFAULT_EXEMPT,
        table_size: int = 100_000,
    ) -> None:
        if responses_per_second < 1:
            raise ValueError("responses_per_second must be at least 1")
        if slip < 0:
            raise ValueError("slip must not be negative")
        if not 0 <= ipv4_prefix <= 32 or not 0 <= ipv6_prefix <= 128:
            raise ValueError("prefix length out of range")
        if table_size < 1:
            raise ValueError("table_size must be at least 1")
        self.clock = clock
        self.rate = float(responses_per_second)
        self.slip = slip
        self.table_size = table_size
        self._v4_mask = _mask(ipv4_prefix, 32)
        self._v6_mask = _mask(ipv6_prefix, 128)
        self._exempt: list[tuple[int, int, int]] = []
        for text in exempt:
            network = ipaddress.ip_network(text, strict=False)
            width = network.max_prefixlen
            self._exempt.append((network.version, int(network.network_address), _mask(network.prefixlen, width)))
        self._sources: dict[str, int] = {}
        #: flow key -> [tokens, time of the last response, limited count]
        self._flows: OrderedDict[tuple[int, int, bytes, int], list[float]] = OrderedDict()
        self.dropped = [0] * len(CLASS_NAMES)
        self.slipped = [0] * len(CLASS_NAMES)

    def __len__(self) -> int:
        """The number of flows remembered now."""
        return len(self._flows)

    # -- sources

    def prefix_of(self, host: str) -> int:
        """
        The flow key part of a source address: its masked network as an
        integer (IPv6 ones flagged), or -1 if exempt or not an address.
        """
        key = self._sources.get(host)
        if key is not None:
            return key
        key = self._prefix(host)
        sources = self._sources
        if len(sources) >= _SOURCE_CACHE_SIZE:
            sources.clear()
        sources[host] = key
        return key

    def _prefix(self, host: str) -> int:
        text = host.partition("%")[0]
        try:
            if ":" in text:
                value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
                if value >> 32 == 0xFFFF:  # IPv4-mapped: the IPv4 address
                    version = 4
                    value &= 0xFFFFFFFF
                else:
                    version = 6
            else:
                value = int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
                version = 4
        except (OSError, ValueError):
            return _EXEMPT  # not an address (a test transport): nothing to limit
        for exempt_version, network, mask in self._exempt:
            if version == exempt_version and value & mask == network:
                return _EXEMPT
        if version == 4:
            return value & self._v4_mask
        return (value & self._v6_mask) | _V6_FLAG

    def exempt(self, host: str) -> bool:
        """Is C{host} never limited?"""
        return self.prefix_of(host) == _EXEMPT

    # -- the buckets

    def check(self, host: str, cls: int, name: bytes, qtype: int) -> int:
        """
        Take a token for one response to C{host}; L{SEND}, L{DROP} or
        L{SLIP}. C{name} should be lower-case (see L{classify_message}).
        """
        prefix = self.prefix_of(host)
        if prefix == _EXEMPT:
            return SEND
        return self.take(prefix, cls, name, qtype)

    def take(self, prefix: int, cls: int, name: bytes, qtype: int) -> int:
        """L{check} for a source already mapped by L{prefix_of} (not exempt)."""
        key = (prefix, cls, name, qtype)
        now = self.clock.seconds()
        flows = self._flows
        rate = self.rate
        entry = flows.get(key)
        if entry is None:
            if len(flows) >= self.table_size:
                flows.popitem(last=False)
            flows[key] = [rate - 1.0, now, 0]
            return SEND
        flows.move_to_end(key)
        elapsed = now - entry[1]
        tokens = entry[0]
        if elapsed > 0:
            tokens += elapsed * rate
            if tokens > rate:
                tokens = rate
            entry[1] = now
        if tokens >= 1.0:
            entry[0] = tokens - 1.0
            return SEND
        entry[0] = tokens
        entry[2] += 1
        slip = self.slip
        if slip and entry[2] % slip == 0:
            self.slipped[cls] += 1
            return SLIP
        self.dropped[cls] += 1
        return DROP


def classify_message(response: Any) -> tuple[int, bytes, int]:
    """
    The flow of a response built by the server (an L{dyndns_plugin.twisted_private.EDNSMessage}):
    C{(class, name, qtype)} as described in the module docstring.
    """
    rcode = response.rCode
    queries = response.queries
    if rcode == dns.OK:
        if queries:
            query = queries[0]
            qname, qtype = query.name.name.lower(), query.type
        else:
            qname, qtype = b"", 0
        if response.answers:
            return ANSWER, qname, qtype
        authority = response.authority
        if authority:
            first = authority[0]
            if first.type == dns.SOA:
                return NODATA, first.name.name.lower(), qtype
            if first.type == dns.NS and not response.auth:
                return REFERRAL, first.name.name.lower(), 0
        return NODATA, qname, qtype
    if rcode == dns.ENAME:
        for record in response.authority:
            if record.type == dns.SOA:
                return NXDOMAIN, record.name.name.lower(), 0
        return NXDOMAIN, b"", 0
    return ERROR, b"", 0


def classify_wire(wire: bytes) -> tuple[int, bytes, int]:
    """
    The flow of a response we send as raw bytes (UPDATE answers, UDP
    zone transfer answers, header-only errors): by its RCODE, answer count
    and question.
    """
    if len(wire) < 12:
        return ERROR, b"", 0
    rcode = wire[3] & 0xF
    if rcode not in (dns.OK, dns.ENAME):
        return ERROR, b"", 0
    if rcode == dns.ENAME:
        return NXDOMAIN, b"", 0
    qname, qtype = b"", 0
    if (wire[4] << 8) | wire[5]:
        try:
            labels, end = read_name(wire, 12)
        except Malformed:
            return ERROR, b"", 0
        if end + 2 <= len(wire):
            qname = b".".join(labels).lower()
            qtype = (wire[end] << 8) | wire[end + 1]
    if (wire[6] << 8) | wire[7]:
        return ANSWER, qname, qtype
    return NODATA, qname, qtype
