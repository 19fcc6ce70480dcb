"""
The limiter: how many wrong credentials a source or a user id may send
before it is locked out, and how many address changes a user may make.

One L{Limiter} per process, held by the service, so every update method
counts into the same books (ddns, /nic/update, GnuDIP TCP and HTTP, RFC 2136,
the admin API). It only counts and answers "locked for N seconds"; the
authentication step (L{dyndns_plugin.authn}) asks it before any password
hash is computed, and the service asks it before a change is committed.

Sources are grouped as an attacker's addresses are: one IPv4 address, one
IPv6 /64 (a home network's whole prefix). Every table is bounded, so a flood
from random sources costs memory only up to C{max_tracked} entries.
"""

from __future__ import annotations

import collections
import ipaddress
from typing import Iterable

import attrs
from twisted.internet.interfaces import IReactorTime

from dyndns_plugin.methods import CLIENT_METHODS, is_client_method

__all__ = ["CLIENT_METHODS", "LimitSettings", "Limiter", "is_client_method", "networks"]


@attrs.frozen
class LimitSettings:
    """The C{[limits]} table; see docs/security.md, "Abuse resistance"."""

    enabled: bool = True
    #: A source is locked after this many failures within C{failure_window}.
    source_failures: int = 10
    #: A user id is locked (for sources it never logged in from) after this
    #: many failures from all sources together.
    user_failures: int = 50
    failure_window: float = 600.0
    #: First lockout, doubled for each further one, up to C{max_lockout}.
    lockout: float = 60.0
    max_lockout: float = 3600.0
    ipv4_prefix: int = 32
    ipv6_prefix: int = 64
    #: Sources (CIDRs) never counted or locked, e.g. a monitoring host.
    exempt: tuple[str, ...] = ()
    #: Seconds a locked-out request waits for its refusal: a guessing loop
    #: on one connection then costs us one answer a second, not thousands.
    refusal_delay: float = 1.0
    #: Password checks at once per source, and for all sources with recent
    #: failures together: the rest of the hash pool stays free for others.
    source_checks: int = 2
    suspect_checks: int = 1
    #: Checks waiting per source before the source is told to retry.
    source_queue: int = 8
    #: Address changes (nochg does not count) per user within
    #: C{change_window} seconds; 0 means no limit.
    update_changes: int = 30
    change_window: float = 600.0
    #: Entries kept per table (sources, users, known good logins).
    max_tracked: int = 100_000


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Record:
    """Failures of one source or user id: a count in a window, and locks."""

    __slots__ = ("count", "since", "locked_until", "level")

    def __init__(self, now: float) -> None:
        self.count = 0
        self.since = now
        self.locked_until = 0.0
        self.level = 0


class Limiter:
    """
    Counts failures and changes on the injected clock (C{task.Clock} in tests).

    C{source} arguments are address strings or None (unknown: never locked,
    never counted, as for a Unix socket).
    """

    def __init__(self, clock: IReactorTime, settings: LimitSettings | None = None) -> None:
        self.clock = clock
        self.settings = settings if settings is not None else LimitSettings()
        self._exempt: list[_Network] = [ipaddress.ip_network(n, strict=False) for n in self.settings.exempt]
        self._sources: dict[str, _Record] = {}
        self._users: dict[str, _Record] = {}
        #: (user id, source key) -> time of the last successful login.
        self._known: dict[tuple[str, str], float] = {}
        #: user id -> times of its recent changes (oldest first).
        self._changes: dict[str, collections.deque[float]] = {}

    def reconfigure(self, settings: LimitSettings) -> None:
        """
        New settings (a configuration reload); the failures and changes
        counted so far stay, and are judged by the new thresholds.
        """
        self.settings = settings
        self._exempt = [ipaddress.ip_network(n, strict=False) for n in settings.exempt]

    # -- sources

    def source_key(self, source: str | None) -> str | None:
        """The group C{source} is counted in, or None if it is not counted."""
        if source is None or not self.settings.enabled:
            return None
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if any(address in network for network in self._exempt):
            return None
        prefix = self.settings.ipv4_prefix if address.version == 4 else self.settings.ipv6_prefix
        return str(ipaddress.ip_network((address, prefix), strict=False))

    # -- authentication failures

    def locked(self, source: str | None, user_id: str | None) -> float | None:
        """
        Seconds until C{source} may try again (for C{user_id}), or None if it
        may try now. Call it before any password check.
        """
        key = self.source_key(source)
        if key is None:
            return None
        now = self.clock.seconds()
        wait = 0.0
        record = self._sources.get(key)
        if record is not None and record.locked_until > now:
            wait = record.locked_until - now
        if user_id is not None:
            user = self._users.get(user_id)
            if user is not None and user.locked_until > now and (user_id, key) not in self._known:
                wait = max(wait, user.locked_until - now)
        return wait or None

    def suspect(self, source: str | None) -> bool:
        """Whether C{source} failed recently (its checks get a small share)."""
        key = self.source_key(source)
        if key is None:
            return False
        record = self._sources.get(key)
        return record is not None and record.count > 0 and not self._expired(record)

    def failed(self, source: str | None, user_id: str | None) -> None:
        """Count a refused credential from C{source} for C{user_id}."""
        key = self.source_key(source)
        if key is None:
            return
        settings = self.settings
        self._count(self._sources, key, settings.source_failures)
        if user_id is not None and (user_id, key) not in self._known:
            self._count(self._users, user_id, settings.user_failures)

    def succeeded(self, source: str | None, user_id: str) -> None:
        """A correct credential: the source's failures are forgiven."""
        key = self.source_key(source)
        if key is None:
            return
        self._sources.pop(key, None)
        self._known.pop((user_id, key), None)
        self._known[(user_id, key)] = self.clock.seconds()
        self._bound(self._known)

    def _expired(self, record: _Record) -> bool:
        """No failure counts any more: the window and any lock are over."""
        now = self.clock.seconds()
        window = self.settings.failure_window
        return now - record.since > window and now > record.locked_until + window

    def _count(self, table: dict[str, _Record], key: str, threshold: int) -> None:
        now = self.clock.seconds()
        record = table.get(key)
        if record is None:
            record = table[key] = _Record(now)
            self._bound(table)
        elif self._expired(record):
            # A window with no failure and no lock: start afresh. Until then
            # a source that was locked is locked again by its next failure,
            # for twice as long.
            record.count = 0
            record.since = now
            record.level = 0
        record.count += 1
        # Checks that were already running when the lock began do not
        # extend it: only a failure after the lock ended locks again.
        if threshold > 0 and record.count >= threshold and record.locked_until <= now:
            duration = self.settings.lockout * (2 ** min(record.level, 30))
            record.locked_until = now + min(duration, self.settings.max_lockout)
            record.level += 1

    def _bound(self, table: dict) -> None:  # type: ignore[type-arg]
        """Keep C{table} within C{max_tracked}: drop finished, then oldest entries."""
        limit = self.settings.max_tracked
        if len(table) <= limit:
            return
        if table is not self._known:
            for key in [k for k, r in table.items() if self._expired(r)]:
                del table[key]
        while len(table) > limit:
            del table[next(iter(table))]

    # -- address changes

    def change_wait(self, user_id: str) -> float | None:
        """Seconds until C{user_id} may change its address again, or None."""
        limit = self.settings.update_changes
        if not self.settings.enabled or limit <= 0:
            return None
        times = self._changes.get(user_id)
        if times is None:
            return None
        now = self.clock.seconds()
        window = self.settings.change_window
        while times and now - times[0] >= window:
            times.popleft()
        if len(times) < limit:
            return None
        return times[0] + window - now

    def changed(self, user_id: str) -> None:
        """Count a committed change of C{user_id}'s addresses or offline state."""
        limit = self.settings.update_changes
        if not self.settings.enabled or limit <= 0:
            return
        times = self._changes.get(user_id)
        if times is None:
            times = self._changes[user_id] = collections.deque(maxlen=limit)
            if len(self._changes) > self.settings.max_tracked:
                self._prune_changes()
        times.append(self.clock.seconds())

    def _prune_changes(self) -> None:
        now = self.clock.seconds()
        window = self.settings.change_window
        for user_id in [u for u, t in self._changes.items() if not t or now - t[-1] >= window]:
            del self._changes[user_id]
        while len(self._changes) > self.settings.max_tracked:
            del self._changes[next(iter(self._changes))]

    # -- for tests and the status page

    def tracked(self) -> dict[str, int]:
        """How many entries each table holds."""
        return {
            "sources": len(self._sources),
            "users": len(self._users),
            "known": len(self._known),
            "changes": len(self._changes),
        }


def networks(values: Iterable[str]) -> tuple[str, ...]:
    """Normalise CIDR strings (for the config reader)."""
    return tuple(str(ipaddress.ip_network(v, strict=False)) for v in values)
