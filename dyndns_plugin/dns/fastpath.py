"""
The query fast path: a strict reader that recognises a plain query from its
bytes alone, and the L{AnswerCache} of complete answers the full path built.

A plain query (L{plain_query_key}) is the common case and nothing else: QR=0,
opcode QUERY, one question of class IN whose name has no compression pointer
(labels of at most 63 bytes, no dot inside a label, at most 255 bytes), no
answer or authority records, and at most one additional record, an EDNS
version 0 OPT without options (a COOKIE, or anything else, goes to the full
path). Its key is the whole message after the ID: every bit the full path
could look at (RD, CD, DO, the UDP size, the name's exact case) is in it, so
an answer cached under the key is, byte for byte after the ID, the answer the
full path gives that query. The peer's address is not part of the answer:
cookies (the one thing that depends on it) never take the fast path, and rate
limiting is applied to cached answers as to any other.

The cache is exact: every change that could alter an answer drops the
entries it affects before the change is acknowledged (see L{AnswerCache}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Iterable

from twisted.names import dns

if TYPE_CHECKING:
    from dyndns_plugin.registry import Registry
    from dyndns_plugin.service.changes import Change

#: Counts of a plain query: one question, no answers or authority, and no or
#: one additional record.
_COUNTS_NO_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_COUNTS_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"
#: A plain query is never longer: header, a 255-byte name, type and class,
#: and an 11-byte OPT record.
MAX_PLAIN = 12 + 255 + 4 + 11
#: Question types that are not plain queries (zone transfers).
_NOT_PLAIN_TYPES = (dns.AXFR, dns.IXFR)
#: Answers worth keeping: positive, NODATA, NXDOMAIN and REFUSED. Errors
#: (SERVFAIL while loading, FORMERR...) always take the full path.
CACHEABLE_RCODES = (dns.OK, dns.ENAME, dns.EREFUSED)
#: Entries kept at most (oldest dropped first): a random-subdomain flood
#: cannot grow the cache past this.
DEFAULT_MAX_ENTRIES = 65_536
#: A new serial clears the whole cache rather than drop more than this many
#: answers one by one, when they are most of it.
_CLEAR_ABOVE = 4096


def plain_query_key(data: bytes) -> bytes | None:
    """
    The cache key of a plain query (the message after its 2-byte ID), or
    None for anything else. Never raises, whatever C{data} holds.
    """
    size = len(data)
    if size < 17 or size > MAX_PLAIN or data[2] & 0xF8:
        return None  # too short or long, a response, or not opcode QUERY
    counts = data[4:12]
    if counts == _COUNTS_NO_OPT:
        has_opt = False
    elif counts == _COUNTS_OPT:
        has_opt = True
    else:
        return None
    i = 12
    total = 1
    while True:
        length = data[i]
        if length == 0:
            break
        if length > 63:
            return None  # a pointer or a reserved label type
        total += length + 1
        after = i + 1 + length
        if total > 255 or after >= size or data.find(b".", i + 1, after) >= 0:
            return None
        i = after
    end = i + 5
    if end > size or data[i + 3] != 0 or data[i + 4] != dns.IN:
        return None
    qtype = (data[i + 1] << 8) | data[i + 2]
    if qtype in _NOT_PLAIN_TYPES:
        return None
    if has_opt:
        # Root owner, type OPT, any size, extended RCODE 0, version 0,
        # any flags (DO), no options.
        if (
            size != end + 11
            or data[end] != 0
            or data[end + 1] != 0
            or data[end + 2] != dns.OPT
            or data[end + 5] != 0
            or data[end + 6] != 0
            or data[end + 9] != 0
            or data[end + 10] != 0
        ):
            return None
    elif size != end:
        return None
    return data[2:]


#: One answer the full path built, after its ID: a plain tuple, because a
#: tuple of bytes, numbers and text drops out of the garbage collector's
#: sight, while 65,536 cached objects (and a set of keys per user) made
#: each of its full passes 11 ms longer at 1,000,000 users. The fields, by
#: index: C{WIRE} for TCP, C{UDP} (C{WIRE}, or its truncated form when
#: larger than the query's UDP limit), C{TRUNCATED} (the truncated form a
#: rate-limit slip sends), C{RCODE} (for the metrics), C{FLOW} (the rate
#: limiter's C{(class, name, qtype)}) and C{OWNER} (the user whose name was
#: asked, if any). Made by L{cached_answer}.
CachedAnswer = tuple[bytes, bytes, bytes, int, tuple[int, bytes, int], "str | None"]
WIRE: Final = 0
UDP: Final = 1
TRUNCATED: Final = 2
RCODE: Final = 3
FLOW: Final = 4
OWNER: Final = 5


def cached_answer(
    wire: bytes, udp: bytes, truncated: bytes, rcode: int, flow: tuple[int, bytes, int], owner: str | None
) -> CachedAnswer:
    """A L{CachedAnswer} from its fields."""
    return (wire, udp, truncated, rcode, flow, owner)


#: A user's keys are kept in a tuple (untracked, as above) up to this many,
#: then in a set: a flood of question types for one name must not make
#: each new key copy all the others.
_KEYS_IN_TUPLE = 8


def _with_key(keys: tuple[bytes, ...] | set[bytes] | None, key: bytes) -> tuple[bytes, ...] | set[bytes]:
    """C{keys} and C{key}: a tuple while small, a set beyond L{_KEYS_IN_TUPLE}."""
    if keys is None:
        return (key,)
    if isinstance(keys, set):
        keys.add(key)
        return keys
    if key in keys:
        return keys
    if len(keys) < _KEYS_IN_TUPLE:
        return keys + (key,)
    return {*keys, key}


def _without_key(keys: tuple[bytes, ...] | set[bytes], key: bytes) -> tuple[bytes, ...] | set[bytes]:
    """C{keys} but C{key} (the same set, or a new tuple)."""
    if isinstance(keys, set):
        keys.discard(key)
        return keys
    return tuple(k for k in keys if k != key)


class AnswerCache:
    """
    Complete answers by plain-query key, bounded (L{max_entries}, oldest
    out first) and exact:

      - an answer for a name an active user owns (main name, additional
        name, one a wildcard alias covers, or an ACME challenge name that
        holds values) is dropped when that user's state changes
        (L{changed}); a change of its challenge values drops the
        negative answers too, as a new zone serial does;
      - any other change to users (added, removed, edited, enabled,
        disabled, names changed) drops everything;
      - a new zone serial (L{zones_changed}) drops every answer that is not
        a user's address answer (NXDOMAIN, NODATA, SOA, NS, host-zone and
        REFUSED answers);
      - each of these moves L{generation} on, so an answer whose query
        started before the change is not stored (L{store}).

    Subscribe L{changed} to the service's change feed and call
    L{zones_changed} from the zone publisher's C{on_publish}; both run
    before the write is acknowledged to its client.
    """

    def __init__(self, registry: Registry | None, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.registry = registry
        self.max_entries = max_entries
        self.entries: dict[bytes, CachedAnswer] = {}
        self.generation = 0
        self._by_user: dict[str, tuple[bytes, ...] | set[bytes]] = {}
        self._zone_keys: set[bytes] = set()

    def __len__(self) -> int:
        return len(self.entries)

    def owner_of(self, name: bytes) -> str | None:
        """The active user who owns C{name}, if any (see L{Registry.owner_of})."""
        registry = self.registry
        if registry is None:
            return None
        try:
            text = name.decode("ascii").lower().rstrip(".")
        except UnicodeDecodeError:
            return None
        return registry.owner_of(text)

    def ready(self) -> bool:
        """May answers be stored now (the registry has loaded)?"""
        return self.registry is None or self.registry.loaded

    def store(self, key: bytes, generation: int, answer: CachedAnswer, positive: bool) -> None:
        """
        Keep C{answer} for C{key} unless something changed since the query
        came in (C{generation}). C{positive}: it holds a user's addresses
        only, so a new zone serial does not touch it.
        """
        if generation != self.generation or not self.ready():
            return
        entries = self.entries
        if key in entries:
            self._drop(key)
        while len(entries) >= self.max_entries:
            self._drop(next(iter(entries)))
        entries[key] = answer
        owner = answer[OWNER]
        if owner is not None:
            self._by_user[owner] = _with_key(self._by_user.get(owner), key)
        if not (positive and owner is not None):
            self._zone_keys.add(key)

    def _drop(self, key: bytes) -> None:
        answer = self.entries.pop(key, None)
        if answer is None:
            return
        self._forget_owner(answer, key)
        self._zone_keys.discard(key)

    def _forget_owner(self, answer: CachedAnswer, key: bytes) -> None:
        """Take the dropped C{key} out of its owner's keys."""
        owner = answer[OWNER]
        if owner is None:
            return
        keys = self._by_user.get(owner)
        if keys is not None:
            keys = _without_key(keys, key)
            if keys:
                self._by_user[owner] = keys
            else:
                del self._by_user[owner]

    def clear(self) -> None:
        """Drop every answer."""
        self.generation += 1
        self.entries.clear()
        self._by_user.clear()
        self._zone_keys.clear()

    def drop_users(self, user_ids: Iterable[str]) -> None:
        """Drop every answer for names the users C{user_ids} own."""
        self.generation += 1
        for user_id in user_ids:
            for key in self._by_user.pop(user_id, ()):
                self.entries.pop(key, None)
                self._zone_keys.discard(key)

    def changed(self, change: Change) -> None:
        """A committed change (a L{ChangeFeed} observer)."""
        if change.old_user is not None and change.old_user == change.new_user:
            self.drop_users((change.user_id,))
            old, new = change.old_state, change.new_state
            if (old.txt if old is not None else ()) != (new.txt if new is not None else ()):
                # An ACME challenge name that held no values was answered
                # as no one's (NXDOMAIN) or as a wildcard's: those answers
                # are not the user's, and go as a new serial's would.
                self.zones_changed()
        else:
            self.clear()

    def zones_changed(self, *_: object) -> None:
        """A zone got a new serial (or was reloaded): drop what shows it."""
        self.generation += 1
        zone_keys = len(self._zone_keys)
        if zone_keys > _CLEAR_ABOVE and zone_keys * 2 > len(self.entries):
            # Mostly negative answers (a flood): dropping all is quicker.
            self.clear()
            return
        for key in self._zone_keys:
            answer = self.entries.pop(key, None)
            if answer is not None:
                self._forget_owner(answer, key)
        self._zone_keys = set()


def attach_answer_cache(
    factory: Any, service: Any, publisher: Any = None, max_entries: int = DEFAULT_MAX_ENTRIES
) -> AnswerCache:
    """
    Give C{factory} (a L{DynDNSServerFactory}) an L{AnswerCache} kept exact
    by C{service}'s change feed and C{publisher}'s new serials (its
    C{on_publish} is chained, not replaced). Returns the cache.
    """
    answers = AnswerCache(service.registry, max_entries)
    service.subscribe(answers.changed)
    if publisher is not None:
        previous = publisher.on_publish

        def published(zone: object) -> None:
            answers.zones_changed(zone)
            if previous is not None:
                previous(zone)

        publisher.on_publish = published
    factory.answers = answers
    return answers
