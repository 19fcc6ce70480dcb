"""
TSIG-signed RFC 2136 UPDATE, from raw wire bytes to one write through the
adapter seam (L{dyndns_plugin.authn.Authenticator.write}, which calls
L{DynDNSService.set_addresses}).

Twisted's decoder corrupts UPDATE messages, so the server hands us the raw
bytes; L{reader} reads them and L{signing} checks the TSIG with
C{hmac} on our clock. (dnspython did both before, at three times the cost
per update; the tests still check every answer against dnspython and the
BIND/Knot captures.) Errors follow RFC 8945:
BADKEY and BADSIG are answered unsigned, BADTIME signed with our time in
Other Data and the request's Time Signed echoed; a Time Signed older than the
last one accepted for the key is a replay (BADTIME). Every answer to a
validly signed request is signed, errors included. Unsigned updates are
refused, except to a host zone from one of its C{allow_update} sources.

Updates of the operator's host zones (unsigned from an allowed source, or
signed with one of the zone's own keys) are handed to
L{dyndns_plugin.replication.host_updates} after the same TSIG checks.

Policy: a user's key (C{<user-id>} or C{<user-id>.<suffix>}) may change only its
own user's names (the main name and exact additional names), types A and
AAAA, and TXT at their ACME challenge names (C{_acme-challenge.<name>},
also for the base of each wildcard alias; L{dyndns_plugin.acme}), in
separate messages. A user has one IPv4 and one IPv6 address, so all of a
user's names change together, and the whole message is one durable write.
"""

from __future__ import annotations

import base64
import ipaddress
import struct
from typing import TYPE_CHECKING, Callable, Iterable

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dyndns_plugin.acme import Op, TXTEdit, base_of, txt_rdata, value_of_rdata
from dyndns_plugin.authn import Authenticator, ClientUpdate, CredentialChecker, Proven, authenticator_for
from dyndns_plugin.dns.reader import (
    CLASS_ANY,
    CLASS_IN,
    CLASS_NONE,
    TYPE_A,
    TYPE_AAAA,
    TYPE_TXT,
    Labels,
    Malformed,
    Record,
    ShortMessage,
    TSIGRecord,
    UpdateRequest,
    parse_update,
    to_wire,
)
from dyndns_plugin.dns.rfc2136 import (
    BADKEY,
    BADSIG,
    BADTIME,
    BADTRUNC,
    FORMERR,
    NOERROR,
    NOTAUTH,
    OPCODE_UPDATE,
    RCODE_NAMES,
    REFUSED,
    SERVFAIL,
    TYPE_ANY,
    TYPE_SOA,
    UpdateError,
    check_prerequisites,
    prescan,
    show,
)
from dyndns_plugin.dns.signing import (
    ALGORITHMS,
    SERVER_FUDGE,
    TSIGKey,
    check_request,
    labels_of,
    sign_answer,
    unsigned_error,
)
from dyndns_plugin.dns.wire import error_reply
from dyndns_plugin.logsample import LogSampler
from dyndns_plugin.methods import Method
from dyndns_plugin.model import HostState, IPAddress, UpdateStatus, User
from dyndns_plugin.passwords import derived_tsig_secret
from dyndns_plugin.protocols.tsig_replay import ReplayCache, ReplayRefused
from dyndns_plugin.service import DynDNSService

if TYPE_CHECKING:
    from dyndns_plugin.replication.host_updates import HostZoneUpdates, ZoneKey, ZoneRights

__all__ = ["ALGORITHMS", "UpdateHandler"]

log = Logger()

METHOD = Method.DNS_UPDATE

_ADDRESS_TYPES: dict[int, int] = {TYPE_A: 4, TYPE_AAAA: 6}
#: Bytes a label of one of our names may hold: anything else (a dot inside a
#: label, spaces, ...) cannot name a user, and must not be joined into text
#: that looks like one.
_NAME_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_*")


def _text(key: Labels) -> str | None:
    """The text form of lower-cased labels, or None if no user can have it."""
    for label in key:
        if not _NAME_BYTES.issuperset(label):
            return None
    return b".".join(key).decode("ascii")


def _address(rdtype: int, rdata: bytes) -> IPAddress:
    """A/AAAA rdata (the parser checked its size) as an address."""
    if rdtype == TYPE_A:
        return ipaddress.IPv4Address(rdata)
    return ipaddress.IPv6Address(rdata)


def _user_value(record: Record) -> object:
    """A prerequisite's value as the users' RRsets hold it (addresses)."""
    if record.rdtype in _ADDRESS_TYPES:
        return _address(record.rdtype, record.rdata)
    return record.rdata


class _NoPasswords:
    """The checker of a handler built without one: TSIG checks its own MACs."""

    def check(self, user_id: str, password: str) -> defer.Deferred[str]:
        return defer.fail(UnauthorizedLogin())

    def check_gnudip(self, user_id: str, salt: str, client_hash: str) -> defer.Deferred[str]:
        return defer.fail(UnauthorizedLogin())


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
        checker: CredentialChecker | Authenticator | None = None,
    ) -> None:
        self.service = service
        self.clock = clock if clock is not None else service.clock
        self.suffix = labels_of(service.suffix)
        self.zones = {labels_of(z) for z in zones}
        self.zones.add(self.suffix)
        #: The shared authentication step: lockouts and failure counting
        #: (the MAC check itself is ours, and cheap).
        self.auth = authenticator_for(checker if checker is not None else _NoPasswords(), service)
        self.replay = ReplayCache(service.store, SERVER_FUDGE)
        service.add_startup_step(self.replay.load)
        self._sample = LogSampler(log, self.clock)
        # key name -> (the registry's User object it was made from, key)
        self._keys: dict[Labels, tuple[User, TSIGKey]] = {}
        #: The host zones that take RFC 2136 updates (set once the zone publisher exists).
        self.host_zones: HostZoneUpdates | None = None
        #: Called with (zone, lower-case RCODE name) after each host-zone update (metrics).
        self.on_zone_update: list[Callable[[str, str], None]] = []

    # -- keys

    def key_for(self, keyname: Labels) -> tuple[User, TSIGKey] | None:
        """The user and key for a key name: C{<user>.} or C{<user>.<suffix>.}"""
        if len(keyname) != 1 and keyname[1:] != self.suffix:
            return None
        user_id = _text(keyname[:1])
        if user_id is None:
            return None
        user = self.service.registry.users.get(user_id)
        if user is None:
            return None
        cached = self._keys.get(keyname)
        if cached is not None and cached[0] is user:
            return cached
        if user.tsig_secret is not None:
            secret = user.tsig_secret
        elif user.tsig_from_password and user.md5_verifier is not None:
            secret = derived_tsig_secret(user.md5_verifier)
        else:
            return None
        found = user, TSIGKey.make(keyname, base64.b64decode(secret), user.tsig_algorithm)
        self._keys[keyname] = found
        return found

    def query_key(self, keyname: Labels) -> TSIGKey | None:
        """A user's key, for signed SOA queries (never transfers: L{TransferHandler.query_keys})."""
        found = self.key_for(keyname)
        return None if found is None else found[1]

    # -- the message

    async def handle_update_wire(self, wire: bytes, peer: str | None) -> bytes | None:
        """The reply to one UPDATE message (None: send nothing)."""
        try:
            request = parse_update(wire)
        except ShortMessage:
            return None
        except Malformed as e:
            self._sample.info("update-malformed", "malformed UPDATE from {peer}: {error}", peer=peer, error=e)
            return error_reply(wire, FORMERR)
        if request.is_response or (request.flags >> 11) & 0xF != OPCODE_UPDATE:
            return error_reply(wire, FORMERR)
        tsig = request.tsig
        rights = self._host_zone_rights(request)
        if tsig is None:
            if rights is not None and rights.allows_source(peer):
                return await self._update_host_zone(request, wire, rights, None, peer)
            if len(request.zone) == 1 and request.zone[0].key not in self.zones:
                return self._response(request, NOTAUTH)  # not a zone of ours (RFC 2136 3.1.2)
            # An attempt without credentials: audited (sampled), not counted.
            self.auth.refused(METHOD, None, peer, "badauth", "unsigned UPDATE")
            return self._response(request, REFUSED)
        zone_key = None
        if self.host_zones is not None:
            zone_key = self.host_zones.key_for(tsig.key, request.zone[0].key if request.zone else None)
        if zone_key is not None:
            # A host zone's key: the users' lockouts and keys do not apply.
            refused = self._verify(request, wire, tsig, zone_key.tsig, None, peer)
            if refused is not None:
                return refused
            if rights is None:
                # Not a zone that takes updates: one of ours refuses, another is not ours.
                served = len(request.zone) == 1 and request.zone[0].key in self.zones
                return self._signed(
                    request, tsig, zone_key.tsig, REFUSED if served else NOTAUTH, 0, int(self.clock.seconds())
                )
            return await self._update_host_zone(request, wire, rights, zone_key, peer)
        user_id = _text(tsig.key[:1])
        if self.auth.locked(METHOD, peer, user_id) is not None:
            # Refused unchecked (and so unsigned): the source is locked out.
            return self._response(request, REFUSED)
        found = self.key_for(tsig.key)
        if found is None or found[1].algorithm != tsig.algorithm:
            self.auth.failed(METHOD, peer, user_id)
            return self._tsig_error(request, tsig, BADKEY)
        user, key = found
        refused = self._verify(request, wire, tsig, key, user.id, peer)
        if refused is not None:
            return refused
        now = int(self.clock.seconds())
        try:
            # Durable before anything is applied: a crash after this point
            # loses an unacknowledged update, never admits a copy of it.
            await self._accept(tsig, now)
        except UpdateError as e:  # accepted at another node first
            self.auth.failed(METHOD, peer, user.id)
            return self._signed(request, tsig, key, e.rcode, BADTIME, now)
        except Exception:
            log.failure("UPDATE from {peer} by {user}: store failure", peer=peer, user=user.id)
            return self._signed(request, tsig, key, SERVFAIL, 0, now)
        try:
            await self._process(request, user, peer)
        except UpdateError as e:
            if not e.audited:
                rcode = RCODE_NAMES.get(e.rcode, str(e.rcode))
                self.auth.refused(METHOD, user.id, peer, rcode.lower(), str(e))
            return self._signed(request, tsig, key, e.rcode, 0, now)
        return self._signed(request, tsig, key, NOERROR, 0, now)

    def _verify(
        self, request: UpdateRequest, wire: bytes, tsig: TSIGRecord, key: TSIGKey, user_id: str | None, peer: str | None
    ) -> bytes | None:
        """
        Check C{key}'s MAC, time and replay (RFC 8945): None, or the error
        answer to send (L{_accept} then records the message durably).
        Failures count against C{peer} (and the user, for a user's key).
        """
        if user_id is None and self.auth.locked(METHOD, peer, None) is not None:
            return self._response(request, REFUSED)
        if key.algorithm != tsig.algorithm:
            self.auth.failed(METHOD, peer, user_id)
            return self._tsig_error(request, tsig, BADKEY)
        now = int(self.clock.seconds())
        verdict = check_request(key, wire, tsig, request.arcount, now, SERVER_FUDGE)
        if verdict == FORMERR:
            return error_reply(wire, FORMERR)
        if verdict in (BADTRUNC, BADSIG):
            self.auth.failed(METHOD, peer, user_id)
            return self._tsig_error(request, tsig, verdict)
        if verdict == BADTIME:
            self.auth.failed(METHOD, peer, user_id)
            return self._signed(request, tsig, key, NOTAUTH, BADTIME, now)
        key_name = b".".join(tsig.key).decode("ascii", "backslashreplace")
        replayed = self.replay.verdict(key_name, tsig.time_signed, tsig.mac, now)
        if replayed is not None:
            self._sample.info(
                "update-replay",
                "UPDATE from {peer} for {key} refused: {why}",
                peer=peer,
                key=show(tsig.key),
                why=replayed,
            )
            self.auth.failed(METHOD, peer, user_id)
            return self._signed(request, tsig, key, NOTAUTH, BADTIME, now)
        if user_id is not None:
            self.auth.succeeded(peer, user_id)
        return None

    async def _accept(self, tsig: TSIGRecord, now: int) -> None:
        """
        Keep the request's time and MAC durably: a copy sent again is
        refused, even after a restart, and (on a shared store) at another
        node: UpdateError(NOTAUTH) if one accepted it first.
        """
        key_name = b".".join(tsig.key).decode("ascii", "backslashreplace")
        try:
            await self.replay.accept(key_name, tsig.time_signed, tsig.mac, now)
        except ReplayRefused as e:
            self._sample.info("update-replay", "UPDATE for {key} refused: {why}", key=show(tsig.key), why=str(e))
            raise UpdateError(NOTAUTH, f"replayed: {e}") from None

    # -- host zones

    def _host_zone_rights(self, request: UpdateRequest) -> ZoneRights | None:
        """Who may update the zone the request names, if it is a host zone that takes updates."""
        if self.host_zones is None or len(request.zone) != 1 or request.zone[0].rdclass != CLASS_IN:
            return None
        return self.host_zones.zone_rights(request.zone[0].key)

    async def _update_host_zone(
        self, request: UpdateRequest, wire: bytes, rights: ZoneRights, key: ZoneKey | None, peer: str | None
    ) -> bytes:
        assert self.host_zones is not None
        tsig = request.tsig
        now = int(self.clock.seconds())

        def answer(rcode: int) -> bytes:
            result = "noerror" if rcode == NOERROR else RCODE_NAMES.get(rcode, str(rcode)).lower()
            for observer in self.on_zone_update:
                observer(rights.origin, result)
            if key is None or tsig is None:
                return self._response(request, rcode)
            return self._signed(request, tsig, key.tsig, rcode, 0, now)

        who = f"key {key.policy.name}" if key is not None else "source address"
        try:
            if tsig is not None:
                await self._accept(tsig, now)
            await self.host_zones.update(request, wire, rights, key)
        except UpdateError as e:
            rcode = RCODE_NAMES.get(e.rcode, str(e.rcode))
            self._sample.info(
                "zone-update-refused",
                "UPDATE of {zone} from {peer} ({who}): {rcode}, {why}",
                zone=rights.origin,
                peer=peer,
                who=who,
                rcode=rcode,
                why=str(e),
            )
            return answer(e.rcode)
        except Exception:
            log.failure("UPDATE of {zone} from {peer}: store failure", zone=rights.origin, peer=peer)
            return answer(SERVFAIL)
        log.info("UPDATE of {zone} from {peer} ({who}) applied", zone=rights.origin, peer=peer, who=who)
        return answer(NOERROR)

    # -- RFC 2136 section 3

    def _served_zone(self, zone: Labels, user: User) -> bool:
        if zone in self.zones:
            return True
        return _text(zone) in self.auth.own_names(user.id)

    def _current(self, user: User) -> HostState:
        state = self.service.registry.states.get(user.id)
        if state is None or state.offline:
            return HostState(user.id)
        return state

    def _rrset_now(self, key: Labels, rdtype: int) -> set[IPAddress] | set[bytes] | None:
        """The RRset a query would get now (A/AAAA of users, TXT of their challenge names)."""
        version = _ADDRESS_TYPES.get(rdtype)
        name = _text(key)
        if rdtype == TYPE_TXT and name is not None:
            challenge = self.service.registry.challenge(name)
            return None if challenge is None else {txt_rdata(value) for value in challenge[1]}
        if version is None or name is None:
            return None
        answer = self.service.registry.answer(name)
        if answer is None:
            return None
        found = {a for a in answer.addresses if a.version == version}
        return found or None

    def _in_use(self, key: Labels) -> bool:
        name = _text(key)
        return name is not None and self.service.registry.owner_of(name) is not None

    def _check_prerequisites(self, request: UpdateRequest, zone: Labels) -> None:
        check_prerequisites(request, zone, self._rrset_now, self._in_use, _user_value)

    def _check_policy(self, request: UpdateRequest, user: User) -> bool:
        """
        Refuse what the user's key may not change; True if the message
        changes ACME challenge values (TXT at C{_acme-challenge.<name>} of
        the user's names), False if it changes addresses: never both.
        """
        own = self.auth.own_names(user.id)
        bases: set[str] | None = None
        kinds = set()
        for record in request.updates:
            name = _text(record.key)
            delete_name = record.rdclass == CLASS_ANY and record.rdtype == TYPE_ANY
            base = None if name is None else base_of(name)
            if base is not None:
                if not self.service.acme.allows("rfc2136"):
                    raise UpdateError(REFUSED, "ACME challenge updates are off")
                if bases is None:
                    bases = set(self.service.registry.challenge_bases(user.id))
                if base not in bases:
                    raise UpdateError(REFUSED, f"{show(record.key)} is not a challenge name of {user.id}'s")
                if record.rdtype != TYPE_TXT and not delete_name:
                    raise UpdateError(REFUSED, f"type {record.rdtype} may not be updated at a challenge name")
                kinds.add("txt")
                continue
            if name not in own:
                raise UpdateError(REFUSED, f"{show(record.key)} is not {user.id}'s name")
            if record.rdtype not in _ADDRESS_TYPES and not delete_name:
                raise UpdateError(REFUSED, f"type {record.rdtype} may not be updated")
            kinds.add("address")
        if len(kinds) > 1:
            raise UpdateError(REFUSED, "addresses and ACME challenge values go in separate updates")
        return kinds == {"txt"}

    async def _process(self, request: UpdateRequest, user: User, peer: str | None) -> None:
        if len(request.zone) != 1 or request.zone[0].rdtype != TYPE_SOA:
            raise UpdateError(FORMERR, "the zone section needs one SOA question")
        question = request.zone[0]
        zone = question.key
        if question.rdclass != CLASS_IN or not self._served_zone(zone, user):
            raise UpdateError(NOTAUTH, f"not authoritative for {show(zone)}")
        self._check_prerequisites(request, zone)
        prescan(request, zone)
        challenges = self._check_policy(request, user)
        if user.disabled:
            raise UpdateError(REFUSED, "user is disabled")
        if not request.updates:
            return
        if challenges:
            await self._process_challenges(request, user, peer)
            return

        current = self._current(user)
        addresses: dict[int, IPAddress | None] = {4: current.ipv4, 6: current.ipv6}
        ttl = current.ttl
        # What this message adds, per family (a delete of the family starts
        # afresh): two adds of one family are two addresses, which a user
        # cannot have, not a silent replacement of the first.
        added: dict[int, set[IPAddress]] = {4: set(), 6: set()}
        for record in request.updates:
            if record.rdtype == TYPE_ANY:  # delete name (prescan: class ANY)
                addresses = {4: None, 6: None}
                added = {4: set(), 6: set()}
                continue
            version = _ADDRESS_TYPES[record.rdtype]
            if record.rdclass == CLASS_ANY:
                addresses[version] = None
                added[version] = set()
                continue
            address = _address(record.rdtype, record.rdata)
            if record.rdclass == CLASS_NONE:
                added[version].discard(address)
                if addresses[version] == address:
                    addresses[version] = None
                continue
            values = added[version]
            values.add(address)
            if len(values) > 1:
                raise UpdateError(REFUSED, "one address per family and user")
            addresses[version] = address
            ttl = record.ttl
        result = await self.auth.write(
            ClientUpdate(
                METHOD,
                user.id,
                Proven(),
                peer,
                addresses=tuple(a for a in (addresses[4], addresses[6]) if a is not None),
                exact=True,
                ttl=ttl,
            )
        )
        if result.status == UpdateStatus.STORE_FAILED:
            raise UpdateError(SERVFAIL, "store failure", audited=True)
        if not result.ok:
            raise UpdateError(REFUSED, result.message, audited=True)

    async def _process_challenges(self, request: UpdateRequest, user: User, peer: str | None) -> None:
        """TXT adds and deletes at the user's challenge names (L{_check_policy} allowed them): one durable write."""
        edits = []
        for record in request.updates:
            name = _text(record.key)
            base = None if name is None else base_of(name)
            assert base is not None
            if record.rdclass == CLASS_ANY:  # delete the TXT RRset, or the name (its only RRset)
                edits.append(TXTEdit(Op.CLEAR, base))
                continue
            value = value_of_rdata(record.rdata)
            if record.rdclass == CLASS_NONE:
                if value is not None:  # a value we cannot hold is not there
                    edits.append(TXTEdit(Op.REMOVE, base, value))
                continue
            if value is None:
                raise UpdateError(REFUSED, "a challenge value is one string of 1 to 255 printable characters")
            edits.append(TXTEdit(Op.ADD, base, value))
        result = await self.auth.write_txt(METHOD, user.id, edits, peer)
        if result.status == UpdateStatus.STORE_FAILED:
            raise UpdateError(SERVFAIL, "store failure", audited=True)
        if not result.ok:
            raise UpdateError(REFUSED, result.message, audited=True)

    # -- answers

    def _response(self, request: UpdateRequest, rcode: int) -> bytes:
        """
        The unsigned answer: our header (QR, opcode UPDATE, RCODE) and the
        zone section echoed, the other sections empty (RFC 2136 section 3.8,
        what BIND and Knot send).
        """
        zone = b"".join(to_wire(q.labels) + struct.pack("!HH", q.rdtype, q.rdclass) for q in request.zone)
        flags = 0x8000 | (OPCODE_UPDATE << 11) | (rcode & 0xF)
        return struct.pack("!HHHHHH", request.id, flags, len(request.zone), 0, 0, 0) + zone

    def _tsig_error(self, request: UpdateRequest, tsig: TSIGRecord, error: int) -> bytes:
        """NOTAUTH with the TSIG error and an empty MAC: unsigned (BADKEY, BADSIG)."""
        return unsigned_error(self._response(request, NOTAUTH), tsig, error)

    def _signed(
        self, request: UpdateRequest, tsig: TSIGRecord, key: TSIGKey, rcode: int, error: int, now: int
    ) -> bytes:
        return sign_answer(self._response(request, rcode), key, tsig, error, now)
