"""
Bounded TCP connections: per-source and global caps for every TCP listener
(HTTP, admin, GnuDIP, DNS over TCP), and the open-files limit they must fit
under.

One L{ConnectionLimiter} per listener kind counts the open connections per
source (an IPv4 address; an IPv6 prefix, /64 by default) and in total. A
factory's C{buildProtocol} asks it through L{ConnectionLimiter.build}: over
a cap it returns None, so Twisted closes the accepted socket at once, before
any byte is read or written; otherwise the connection holds a L{Ticket}
until its protocol's C{connectionLost}. Refusals and deadline drops are
counted (C{/metrics}) and logged only as a bounded sample.

The caps exist so that no number of slow clients from one host, and no
number of hosts against one listener, can take the file descriptors the
other listeners need: L{raise_open_files_limit} raises the soft
C{RLIMIT_NOFILE} to the hard limit at start, and L{plan_caps} lowers the
global caps (with one warning) when their sum and a reserve do not fit.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dyndns_plugin.logsample import LogSampler

log = Logger()

__all__ = [
    "ConnectionLimiter",
    "Ticket",
    "source_key",
    "release_connection",
    "count_timeout",
    "raise_open_files_limit",
    "current_open_files_limit",
    "plan_caps",
    "LISTENERS",
]

#: The listener kinds, in the order they are reported.
LISTENERS = ("http", "admin", "gnudip", "dns_tcp")
#: Refusal reasons (the C{reason} label of the refused counter).
PER_SOURCE = "per_source"
TOTAL = "total"


def source_key(host: str | None, ipv6_prefix: int = 64) -> str | None:
    """
    The source a connection counts against: the IPv4 address itself (an
    IPv4-mapped IPv6 peer included), the C{/ipv6_prefix} network of an IPv6
    address (one customer usually gets a /64 or a /56, and may use all of
    it), or None for a peer without an IP address (a UNIX socket), which
    only the total cap bounds.
    """
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, ipv6_prefix), strict=False)
        return str(network)
    return str(address)


class Ticket:
    """One admitted connection's place; L{release} is idempotent."""

    __slots__ = ("limiter", "key", "released")

    def __init__(self, limiter: "ConnectionLimiter", key: str | None) -> None:
        self.limiter = limiter
        self.key = key
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.limiter._release(self.key)


class ConnectionLimiter:
    """
    Caps for one listener kind (all its endpoints together).

    @param listener: its name in C{/metrics} and the log (C{http}, C{admin},
        C{gnudip}, C{dns_tcp}).
    @param max_per_source: concurrent connections from one source.
    @param max_total: concurrent connections in all; None for no global cap.
    @ivar per_source: source -> open connections (sources with none are
        absent, so the table holds only live sources).
    @ivar refused: reason (C{per_source}, C{total}) -> connections refused.
    @ivar timed_out: reason -> connections closed by a deadline or an idle
        timeout (reported by the protocols through L{count_timeout}).
    """

    def __init__(
        self,
        listener: str,
        max_per_source: int,
        max_total: int | None = None,
        *,
        ipv6_prefix: int = 64,
        clock: IReactorTime | None = None,
    ) -> None:
        self.listener = listener
        self.max_per_source = max_per_source
        self.max_total = max_total
        self.ipv6_prefix = ipv6_prefix
        self.per_source: dict[str, int] = {}
        self.open = 0
        self.refused: dict[str, int] = {PER_SOURCE: 0, TOTAL: 0}
        self.timed_out: dict[str, int] = {}
        self._sample = LogSampler(log, clock, burst=5, interval=60.0)

    def acquire(self, addr: Any) -> Ticket | None:
        """A place for a connection from C{addr}, or None over a cap."""
        key = source_key(getattr(addr, "host", None), self.ipv6_prefix)
        if self.max_total is not None and self.open >= self.max_total:
            self._refuse(TOTAL, key)
            return None
        if key is not None:
            count = self.per_source.get(key, 0)
            if count >= self.max_per_source:
                self._refuse(PER_SOURCE, key)
                return None
            self.per_source[key] = count + 1
        self.open += 1
        return Ticket(self, key)

    def build(self, addr: Any, build: Callable[[Any], Any]) -> Any:
        """
        C{build(addr)} (a factory's own C{buildProtocol}) if there is room,
        else None. The protocol's C{connectionLost} gives the place back:
        it is wrapped on the instance, so any protocol class works.
        """
        ticket = self.acquire(addr)
        if ticket is None:
            return None
        try:
            proto = build(addr)
        except BaseException:
            ticket.release()
            raise
        if proto is None:
            ticket.release()
            return None
        proto.connection_ticket = ticket
        lost = proto.connectionLost

        def connectionLost(reason: Any = None) -> None:
            try:
                lost(reason)
            finally:
                ticket.release()

        proto.connectionLost = connectionLost
        return proto

    def count_timeout(self, reason: str, peer: object = None) -> None:
        """A connection closed by a deadline: counted, and a sampled log line."""
        self.timed_out[reason] = self.timed_out.get(reason, 0) + 1
        self._sample.info(
            f"{self.listener}-{reason}",
            "{listener}: closed a connection from {peer}: {reason}",
            listener=self.listener,
            peer=str(peer),
            reason=reason,
        )

    def _refuse(self, reason: str, key: str | None) -> None:
        self.refused[reason] += 1
        self._sample.info(
            f"{self.listener}-refused-{reason}",
            "{listener}: refused a connection from {source}: {reason} cap reached ({open} open)",
            listener=self.listener,
            source=key,
            reason=reason,
            open=self.open,
        )

    def _release(self, key: str | None) -> None:
        self.open -= 1
        if key is None:
            return
        left = self.per_source.get(key, 1) - 1
        if left > 0:
            self.per_source[key] = left
        else:
            self.per_source.pop(key, None)


def release_connection(proto: Any) -> None:
    """Give back C{proto}'s place (idempotent; nothing without a ticket)."""
    ticket = getattr(proto, "connection_ticket", None)
    if ticket is not None:
        ticket.release()


def count_timeout(proto: Any, reason: str) -> None:
    """Report that C{proto} is being closed by a deadline (see L{ConnectionLimiter})."""
    ticket = getattr(proto, "connection_ticket", None)
    if ticket is None:
        return
    transport = getattr(proto, "transport", None)
    peer = None
    if transport is not None:
        try:
            peer = getattr(transport.getPeer(), "host", None)
        except Exception:
            peer = None
    ticket.limiter.count_timeout(reason, peer)


# -- the open-files limit


def current_open_files_limit(resource_module: Any = None) -> int | None:
    """The soft RLIMIT_NOFILE, or None if unlimited or unknown."""
    if resource_module is None:
        try:
            import resource as resource_module
        except ImportError:  # not on POSIX
            return None
    soft, _ = resource_module.getrlimit(resource_module.RLIMIT_NOFILE)
    if soft == resource_module.RLIM_INFINITY or soft < 0:
        return None
    return int(soft)


#: Where an unlimited hard limit is met (Linux refuses an infinite soft
#: limit above fs.nr_open, whose default is this).
_UNLIMITED_TARGET = 1 << 20


def raise_open_files_limit(resource_module: Any = None) -> int | None:
    """
    Raise the soft RLIMIT_NOFILE to the hard limit, log the outcome once,
    and return the soft limit now in force (None: unlimited or unknown).
    Failing to raise is not fatal: the caps are then fitted to the old limit.
    """
    if resource_module is None:
        try:
            import resource as resource_module
        except ImportError:
            log.info("open-files limit: not available on this platform")
            return None
    rlimit = resource_module.RLIMIT_NOFILE
    infinity = resource_module.RLIM_INFINITY
    soft, hard = resource_module.getrlimit(rlimit)
    before = soft
    if soft != infinity and (hard == infinity or soft < hard):
        targets = [hard] if hard != infinity else [infinity, _UNLIMITED_TARGET]
        for target in targets:
            try:
                resource_module.setrlimit(rlimit, (target, hard))
            except (ValueError, OSError) as e:
                problem = str(e)
                continue
            soft = target
            break
        else:
            log.warn(
                "open-files limit: could not raise the soft limit {soft} to the hard limit {hard}: {problem}",
                soft=before,
                hard=hard,
                problem=problem,
            )
    shown = "unlimited" if soft == infinity else soft
    log.info(
        "open-files limit: {soft} (was {before}, hard limit {hard})",
        soft=shown,
        before="unlimited" if before == infinity else before,
        hard="unlimited" if hard == infinity else hard,
    )
    if soft == infinity or soft < 0:
        return None
    return int(soft)


def plan_caps(
    wanted: Mapping[str, int],
    open_files: int | None,
    reserved: int,
) -> dict[str, int]:
    """
    The global caps to use: C{wanted} (listener -> max_total) if their sum
    fits under C{open_files - reserved}; else each lowered in proportion
    (at least 1), with one warning that names the limit and the new caps.
    Lowering rather than refusing to start: a host with a small hard limit
    still serves, with fewer concurrent connections.
    """
    caps = dict(wanted)
    if open_files is None or not caps:
        return caps
    room = open_files - reserved
    total = sum(caps.values())
    if total <= room:
        return caps
    scale = max(room, len(caps)) / total
    lowered = {kind: max(1, int(cap * scale)) for kind, cap in caps.items()}
    log.warn(
        "connections: the open-files limit {limit} leaves room for {room} client "
        "connections ({reserved} kept for the store, logs and sockets), not the "
        "{total} the caps allow; lowered to {caps}",
        limit=open_files,
        room=max(room, 0),
        reserved=reserved,
        total=total,
        caps=", ".join(f"{kind} {cap}" for kind, cap in lowered.items()),
    )
    return lowered


def listener_caps(settings: Any) -> dict[str, tuple[int, int]]:
    """
    listener -> (max_per_source, max_total) for each TCP listener kind the
    configuration (L{dyndns_plugin.config.Settings}) switches on.
    """
    c = settings.connections
    caps: dict[str, tuple[int, int]] = {}
    if settings.http is not None and settings.http.listen:
        caps["http"] = (c.http_max_per_source, c.http_max_total)
    if settings.admin.listen:
        caps["admin"] = (c.admin_max_per_source, c.admin_max_total)
    if settings.gnudip.listen:
        caps["gnudip"] = (settings.gnudip.max_connections_per_source, c.gnudip_max_total)
    if settings.dns.listen or settings.dns.listen_systemd:
        caps["dns_tcp"] = (c.dns_tcp_max_per_source, c.dns_tcp_max_total)
    return caps


def listening_files(settings: Any) -> int:
    """
    File descriptors the configuration needs besides client connections and
    C{connections.reserved_files}: one per listening socket (two per DNS
    address: UDP and TCP) and the NOTIFY sender's sockets.
    """
    dns_listeners = len(settings.dns.listen) + len(settings.dns.listen_systemd)
    count = 2 * dns_listeners + len(settings.gnudip.listen) + len(settings.admin.listen)
    if settings.http is not None:
        count += len(settings.http.listen)
    if settings.dns.notify:
        count += 2
    return count


def build_limiters(
    settings: Any,
    open_files: int | None,
    clock: IReactorTime | None = None,
) -> dict[str, ConnectionLimiter]:
    """
    One L{ConnectionLimiter} per TCP listener kind in use, with its global
    cap fitted under C{open_files} (see L{plan_caps}); a per-source cap
    above the (lowered) global cap is lowered to it.
    """
    caps = listener_caps(settings)
    reserved = settings.connections.reserved_files + listening_files(settings)
    totals = plan_caps({kind: total for kind, (_, total) in caps.items()}, open_files, reserved)
    limiters = {}
    for kind, (per_source, _) in caps.items():
        total = totals[kind]
        limiters[kind] = ConnectionLimiter(
            kind,
            min(per_source, total),
            total,
            ipv6_prefix=settings.connections.ipv6_prefix,
            clock=clock,
        )
    return limiters
