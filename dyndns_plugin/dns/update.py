"""
TSIG-signed RFC 2136 UPDATE, from raw wire bytes to one call of
L{DynDNSService.set_addresses}.

Twisted's decoder corrupts UPDATE messages, so the server hands us the raw
bytes; dnspython parses them and checks the TSIG with our clock (its own
C{from_wire(keyring=...)} reads C{time.time()}). Errors follow RFC 8945:
BADKEY and BADSIG are answered unsigned, BADTIME signed with our time in
Other Data and the request's Time Signed echoed; a Time Signed older than the
last one accepted for the key is a replay (BADTIME). Every answer to a
validly signed request is signed, errors included. Unsigned updates are
refused.

Policy: a key (C{<user-id>} or C{<user-id>.<suffix>}) may change only its
own user's names (the main name and exact additional names), types A and
AAAA. A user has one IPv4 and one IPv6 address, so all of a user's names
change together, and the whole message is one durable write.
"""

from __future__ import annotations

import base64
import ipaddress
import struct
from typing import Any, Iterable, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
import dns.update
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dyndns_plugin.dns.wire import error_reply, last_rr_offset
from dyndns_plugin.model import HostState, IPAddress, UpdateStatus, User
from dyndns_plugin.passwords import derived_tsig_secret
from dyndns_plugin.service import DynDNSService

log = Logger()

METHOD = "dns-update"
_META_TYPES = {
    dns.rdatatype.ANY, dns.rdatatype.AXFR, dns.rdatatype.IXFR, dns.rdatatype.MAILA,
    dns.rdatatype.MAILB, dns.rdatatype.OPT, dns.rdatatype.TSIG, dns.rdatatype.TKEY,
}
_ADDRESS_TYPES: dict[int, int] = {dns.rdatatype.A: 4, dns.rdatatype.AAAA: 6}

#: Our algorithm names (model.TSIG_ALGORITHMS) -> their wire names.
ALGORITHMS = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha256-128": dns.tsig.HMAC_SHA256_128,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha384-192": dns.tsig.HMAC_SHA384_192,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
    "hmac-sha512-256": dns.tsig.HMAC_SHA512_256,
}


class UpdateError(Exception):
    """Stop processing and answer this RCODE (signed)."""

    def __init__(self, rcode: int, reason: str) -> None:
        super().__init__(reason)
        self.rcode = rcode


def _mac_length(algorithm: dns.name.Name) -> int:
    """The MAC length an algorithm produces (after its own truncation)."""
    hashinfo: Any = dns.tsig.HMACTSig._hashes[algorithm]
    if isinstance(hashinfo, tuple):
        return hashinfo[1] // 8
    return hashinfo().digest_size


class UpdateHandler:
    """
    Processes one UPDATE message at a time for a L{DynDNSService}.

    @param zones: the zone apexes this server is authoritative for (the
        suffix and the host zones); an UPDATE must name one of them, or one
        of the key's own names.
    """

    def __init__(
        self,
        service: DynDNSService,
        zones: Iterable[str],
        clock: IReactorTime | None = None,
    ) -> None:
        self.service = service
        self.clock = clock if clock is not None else service.clock
        self.zones = {dns.name.from_text(z) for z in zones}
        self.zones.add(dns.name.from_text(service.suffix))
        self._last_signed: dict[dns.name.Name, int] = {}

    # -- keys

    def key_for(self, keyname: dns.name.Name) -> tuple[User, dns.tsig.Key] | None:
        """The user and key for a key name: C{<user>.} or C{<user>.<suffix>.}"""
        suffix = dns.name.from_text(self.service.suffix)
        if len(keyname.labels) == 2:
            user_id = keyname.labels[0]
        elif keyname.parent() == suffix:
            user_id = keyname.labels[0]
        else:
            return None
        try:
            text = user_id.decode("ascii").lower()
        except UnicodeDecodeError:
            return None
        user = self.service.registry.users.get(text)
        if user is None:
            return None
        if user.tsig_secret is not None:
            secret = user.tsig_secret
        elif user.tsig_from_password and user.md5_verifier is not None:
            secret = derived_tsig_secret(user.md5_verifier)
        else:
            return None
        algorithm = ALGORITHMS[user.tsig_algorithm]
        return user, dns.tsig.Key(keyname, base64.b64decode(secret), algorithm)

    # -- the message

    async def handle(self, wire: bytes, peer: str | None) -> bytes | None:
        """The reply to one UPDATE message (None: send nothing)."""
        try:
            message = dns.message.from_wire(wire, keyring=False)
        except dns.message.ShortHeader:
            return None
        except Exception as e:
            log.info("malformed UPDATE from {peer}: {error}", peer=peer, error=e)
            return error_reply(wire, dns.rcode.FORMERR)
        if not isinstance(message, dns.update.UpdateMessage):
            return error_reply(wire, dns.rcode.FORMERR)
        if not message.had_tsig:
            log.info("unsigned UPDATE from {peer} refused", peer=peer)
            return self._plain(message, dns.rcode.REFUSED)
        assert message.tsig is not None and message.keyname is not None
        rdata = message.tsig[0]
        keyname = message.keyname
        found = self.key_for(keyname)
        if found is None or found[1].algorithm != rdata.algorithm:
            log.info("UPDATE from {peer}: unknown key {key}", peer=peer, key=keyname)
            return self._tsig_error(message, dns.rcode.BADKEY)
        user, key = found
        expected = _mac_length(key.algorithm)
        if len(rdata.mac) > expected or len(rdata.mac) < max(10, expected // 2):
            return error_reply(wire, dns.rcode.FORMERR)
        if len(rdata.mac) != expected:
            return self._tsig_error(message, dns.rcode.BADTRUNC)
        now = int(self.clock.seconds())
        try:
            dns.tsig.validate(wire, key, keyname, rdata, now, b"", last_rr_offset(wire))
        except dns.tsig.BadSignature:
            log.info("UPDATE from {peer}: bad signature for {key}", peer=peer, key=keyname)
            return self._tsig_error(message, dns.rcode.BADSIG)
        except dns.tsig.BadTime:
            log.info("UPDATE from {peer}: time outside the fudge for {key}", peer=peer, key=keyname)
            return self._signed(message, key, dns.rcode.NOTAUTH, dns.rcode.BADTIME, now)
        except (dns.tsig.BadKey, dns.tsig.BadAlgorithm):
            return self._tsig_error(message, dns.rcode.BADKEY)
        except dns.exception.DNSException:
            return error_reply(wire, dns.rcode.FORMERR)
        last = self._last_signed.get(keyname)
        if last is not None and rdata.time_signed < last:
            log.info("UPDATE from {peer}: replayed message for {key}", peer=peer, key=keyname)
            return self._signed(message, key, dns.rcode.NOTAUTH, dns.rcode.BADTIME, now)
        self._last_signed[keyname] = rdata.time_signed
        try:
            await self._process(message, user, peer)
        except UpdateError as e:
            log.info(
                "UPDATE from {peer} by {user}: {rcode}: {reason}",
                peer=peer, user=user.id, rcode=dns.rcode.to_text(dns.rcode.Rcode(e.rcode)),
                reason=str(e),
            )
            return self._signed(message, key, e.rcode, 0, now)
        return self._signed(message, key, dns.rcode.NOERROR, 0, now)

    # -- RFC 2136 section 3

    def _served_zone(self, zone: dns.name.Name, user: User) -> bool:
        if zone in self.zones:
            return True
        return zone.to_text(omit_final_dot=True).lower() in self.service.registry.updatable_names(user.id)

    def _current(self, user: User) -> HostState:
        state = self.service.registry.states.get(user.id)
        if state is None or state.offline:
            return HostState(user.id)
        return state

    def _rrset_now(self, name: dns.name.Name, rdtype: int) -> set[str] | None:
        """The RRset a query would get now (A/AAAA of users), as rdata text."""
        key = name.to_text(omit_final_dot=True).lower()
        answer = self.service.registry.answer(key)
        if answer is None:
            return None
        version = _ADDRESS_TYPES.get(rdtype)
        if version is None:
            return None
        found = {str(a) for a in answer.addresses if a.version == version}
        return found or None

    def _in_use(self, name: dns.name.Name) -> bool:
        key = name.to_text(omit_final_dot=True).lower()
        return self.service.registry.owner_of(key) is not None

    def _check_prerequisites(self, message: dns.update.UpdateMessage, zone: dns.name.Name) -> None:
        for rrset in message.prerequisite:
            if rrset.ttl != 0:
                raise UpdateError(dns.rcode.FORMERR, "prerequisite with TTL not 0")
            if not rrset.name.is_subdomain(zone):
                raise UpdateError(dns.rcode.NOTZONE, f"{rrset.name} is outside {zone}")
            if rrset.deleting == dns.rdataclass.ANY:
                if len(rrset):
                    raise UpdateError(dns.rcode.FORMERR, "ANY prerequisite with data")
                if rrset.rdtype == dns.rdatatype.ANY:
                    if not self._in_use(rrset.name):
                        raise UpdateError(dns.rcode.NXDOMAIN, f"{rrset.name} is not in use")
                elif self._rrset_now(rrset.name, rrset.rdtype) is None:
                    raise UpdateError(dns.rcode.NXRRSET, f"no {rrset.name} RRset")
            elif rrset.deleting == dns.rdataclass.NONE:
                if len(rrset):
                    raise UpdateError(dns.rcode.FORMERR, "NONE prerequisite with data")
                if rrset.rdtype == dns.rdatatype.ANY:
                    if self._in_use(rrset.name):
                        raise UpdateError(dns.rcode.YXDOMAIN, f"{rrset.name} is in use")
                elif self._rrset_now(rrset.name, rrset.rdtype) is not None:
                    raise UpdateError(dns.rcode.YXRRSET, f"{rrset.name} RRset exists")
            elif rrset.rdclass == dns.rdataclass.IN:
                wanted = {rdata.to_text() for rdata in rrset}
                if self._rrset_now(rrset.name, rrset.rdtype) != wanted:
                    raise UpdateError(dns.rcode.NXRRSET, f"{rrset.name} RRset differs")
            else:
                raise UpdateError(dns.rcode.FORMERR, "prerequisite of another class")

    def _prescan(self, message: dns.update.UpdateMessage, zone: dns.name.Name) -> None:
        for rrset in message.update:
            if not rrset.name.is_subdomain(zone):
                raise UpdateError(dns.rcode.NOTZONE, f"{rrset.name} is outside {zone}")
            if rrset.deleting is None:
                if rrset.rdclass != dns.rdataclass.IN:
                    raise UpdateError(dns.rcode.FORMERR, "update of another class")
                if rrset.rdtype in _META_TYPES:
                    raise UpdateError(dns.rcode.FORMERR, "add of a meta type")
            elif rrset.deleting == dns.rdataclass.ANY:
                if rrset.ttl != 0 or len(rrset):
                    raise UpdateError(dns.rcode.FORMERR, "malformed RRset delete")
                if rrset.rdtype in _META_TYPES - {dns.rdatatype.ANY}:
                    raise UpdateError(dns.rcode.FORMERR, "delete of a meta type")
            elif rrset.deleting == dns.rdataclass.NONE:
                if rrset.ttl != 0 or rrset.rdtype in _META_TYPES:
                    raise UpdateError(dns.rcode.FORMERR, "malformed RR delete")
            else:
                raise UpdateError(dns.rcode.FORMERR, "update of an unknown class")

    def _check_policy(self, message: dns.update.UpdateMessage, user: User) -> None:
        own = self.service.registry.updatable_names(user.id)
        for rrset in message.update:
            name = rrset.name.to_text(omit_final_dot=True).lower()
            if name not in own:
                raise UpdateError(dns.rcode.REFUSED, f"{name} is not {user.id}'s name")
            delete_name = (
                rrset.deleting == dns.rdataclass.ANY and rrset.rdtype == dns.rdatatype.ANY
            )
            if rrset.rdtype not in _ADDRESS_TYPES and not delete_name:
                raise UpdateError(
                    dns.rcode.REFUSED, f"type {dns.rdatatype.to_text(rrset.rdtype)} may not be updated"
                )

    async def _process(
        self, message: dns.update.UpdateMessage, user: User, peer: str | None
    ) -> None:
        if len(message.zone) != 1 or message.zone[0].rdtype != dns.rdatatype.SOA:
            raise UpdateError(dns.rcode.FORMERR, "the zone section needs one SOA question")
        zone_rrset = message.zone[0]
        zone = zone_rrset.name
        if zone_rrset.rdclass != dns.rdataclass.IN or not self._served_zone(zone, user):
            raise UpdateError(dns.rcode.NOTAUTH, f"not authoritative for {zone}")
        self._check_prerequisites(message, zone)
        self._prescan(message, zone)
        self._check_policy(message, user)
        if user.disabled:
            raise UpdateError(dns.rcode.REFUSED, "user is disabled")

        current = self._current(user)
        addresses: dict[int, IPAddress | None] = {4: current.ipv4, 6: current.ipv6}
        ttl = current.ttl
        # dnspython parses every update RR as an RRset of its own, so two adds
        # of one family arrive as two RRsets: collect what this message adds
        # per family (a delete of the family starts afresh), or a second
        # address would silently replace the first.
        added: dict[int, set[IPAddress]] = {4: set(), 6: set()}
        for rrset in message.update:
            version = _ADDRESS_TYPES.get(rrset.rdtype)
            if rrset.deleting == dns.rdataclass.ANY:
                if rrset.rdtype == dns.rdatatype.ANY:
                    addresses = {4: None, 6: None}
                    added = {4: set(), 6: set()}
                else:
                    addresses[version] = None  # type: ignore[index]
                    added[version] = set()  # type: ignore[index]
            elif rrset.deleting == dns.rdataclass.NONE:
                for rdata in rrset:
                    address = ipaddress.ip_address(rdata.address)
                    added[version].discard(address)  # type: ignore[index]
                    if addresses[version] == address:  # type: ignore[index]
                        addresses[version] = None  # type: ignore[index]
            else:
                values = added[version]  # type: ignore[index]
                values.update(ipaddress.ip_address(rdata.address) for rdata in rrset)
                if len(values) > 1:
                    raise UpdateError(
                        dns.rcode.REFUSED, "one address per family and user"
                    )
                addresses[version] = next(iter(values))  # type: ignore[index]
                ttl = rrset.ttl
        if not message.update:
            return
        result = await self.service.set_addresses(
            user.id, addresses[4], addresses[6], ttl, METHOD, peer
        )
        if result.status == UpdateStatus.STORE_FAILED:
            raise UpdateError(dns.rcode.SERVFAIL, "store failure")
        if not result.ok:
            raise UpdateError(dns.rcode.REFUSED, result.message)

    # -- answers

    def _response(self, message: dns.update.UpdateMessage, rcode: int) -> bytes:
        """
        The unsigned answer: our header (QR, opcode UPDATE, RCODE) and the
        zone section echoed, the other sections empty (RFC 2136 section 3.8,
        what BIND and Knot send). Built from bytes: rendering a dnspython
        message was a fifth of the cost of an update.
        """
        zone = b"".join(
            cast(bytes, rrset.name.to_wire()) + struct.pack("!HH", rrset.rdtype, rrset.rdclass)
            for rrset in message.zone
        )
        flags = 0x8000 | (dns.opcode.UPDATE << 11) | (rcode & 0xF)
        return struct.pack("!HHHHHH", message.id, flags, len(message.zone), 0, 0, 0) + zone

    def _plain(self, message: dns.update.UpdateMessage, rcode: int) -> bytes:
        return self._response(message, rcode)

    def _tsig_error(self, message: dns.update.UpdateMessage, error: int) -> bytes:
        """NOTAUTH with the TSIG error and an empty MAC: unsigned (BADKEY, BADSIG)."""
        assert message.tsig is not None and message.keyname is not None
        rdata = message.tsig[0]
        unsigned = self._response(message, dns.rcode.NOTAUTH)
        return _with_tsig(
            unsigned, message.keyname, rdata.replace(mac=b"", error=error, other=b"")
        )

    def _signed(
        self, message: dns.update.UpdateMessage, key: dns.tsig.Key, rcode: int, error: int, now: int
    ) -> bytes:
        """
        The response signed with the request's key and MAC as prefix, at our
        clock's time; for BADTIME the request's Time Signed is echoed and our
        time goes into Other Data (as BIND and Knot do).
        """
        assert message.tsig is not None and message.keyname is not None
        request = message.tsig[0]
        unsigned = self._response(message, rcode)
        template = request.replace(
            time_signed=request.time_signed if error == dns.rcode.BADTIME else now,
            mac=b"",
            original_id=message.id,
            error=error,
            other=struct.pack("!Q", now)[2:] if error == dns.rcode.BADTIME else b"",
        )
        tsig, _ = dns.tsig.sign(
            unsigned, key, template, template.time_signed, request.mac
        )
        return _with_tsig(unsigned, message.keyname, tsig)


def _with_tsig(unsigned: bytes, keyname: dns.name.Name, tsig: Any) -> bytes:
    """
    C{unsigned} with the TSIG record appended and ARCOUNT raised. The owner
    name is never compressed (BIND's "no compress"; some clients reject a
    compressed TSIG owner), so signed and unsigned answers match BIND's bytes.
    """
    owner = cast(bytes, keyname.to_wire())
    rdata_wire = tsig.to_wire()
    record = owner + struct.pack("!HHIH", dns.rdatatype.TSIG, dns.rdataclass.ANY, 0, len(rdata_wire)) + rdata_wire
    arcount = struct.unpack("!H", unsigned[10:12])[0] + 1
    return unsigned[:10] + struct.pack("!H", arcount) + unsigned[12:] + record
