#!/usr/bin/env python3
"""
Embedding dyndns_plugin in an existing Twisted DNS server.

An authoritative server already serves its own zone, example.org, from a
BIND zone file through a Twisted C{FileAuthority}. This program puts the
DynDNS resolver in front of that authority, using only the public API of
C{dyndns_plugin}:

    store = MemoryUserStore()  (or SQLiteUserStore(path))
    service = DynDNSService(store, "dyn.example.org")
    factory = DynDNSServerFactory(DynDNSResolver(service.registry), [zone])
    listen_dns(reactor, factory, port, interface)

Users' names (C{<user>.dyn.example.org} and additional names such as
C{demo.example.org}) answer with the users' current addresses; every other
name falls through to the zone file, which answers, or says NXDOMAIN with
its SOA.

Run it from the repository root and ask it:

    python examples/embed_resolver.py --port 5354
    dig @127.0.0.1 -p 5354 demo.example.org A      # 192.0.2.10, dynamic
    dig @127.0.0.1 -p 5354 www.example.org A       # 192.0.2.80, zone file
    dig @127.0.0.1 -p 5354 nothing.example.org A   # NXDOMAIN + SOA

Without C{--db} the users live in memory and there is one demo user, C{demo},
at 192.0.2.10 with the additional name C{demo.example.org}. With
C{--db FILE} the users come from an SQLite store that the C{dyndns} CLI
manages (its configuration must name the same file and the same suffix), and
changes the CLI makes are picked up while the server runs.

Once it listens it prints one line, C{listening on HOST:PORT} (with the real
port when C{--port 0} asked for any free one). Ctrl-C or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any, Sequence

from twisted.internet import defer, task

from dyndns_plugin import (
    DynDNSResolver,
    DynDNSServerFactory,
    DynDNSService,
    IUserStore,
    MemoryUserStore,
    SQLiteUserStore,
    User,
    listen_dns,
    load_zone_file,
)

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--port", type=int, default=5354, help="UDP and TCP port (0: any)")
    parser.add_argument("--interface", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--db", metavar="FILE", help="SQLite user store (default: in memory, with a demo user)")
    parser.add_argument(
        "--zone", default=os.path.join(HERE, "example.org.zone"), help="the BIND zone file of the existing server"
    )
    parser.add_argument("--origin", default="example.org", help="the zone file's origin")
    parser.add_argument("--suffix", default="dyn.example.org", help="every user gets <user>.<suffix>")
    return parser.parse_args(argv)


async def add_demo_user(service: DynDNSService) -> None:
    """The in-memory demo: user C{demo} at 192.0.2.10, also as demo.example.org."""
    await service.add_user(User(id="demo", hostnames=("demo.example.org",)))
    result = await service.update("demo", [ipaddress.ip_address("192.0.2.10")], method="example")
    if not result.ok:
        raise RuntimeError(f"demo update failed: {result.status.value} {result.message}")


async def main(reactor: Any, args: argparse.Namespace) -> None:
    # The existing server's own zone, as a Twisted FileAuthority.
    zone = load_zone_file(args.zone, args.origin)

    # The DynDNS part: a store, the service (the one write path) and the
    # resolver that reads the service's in-memory registry.
    store: IUserStore = SQLiteUserStore(args.db, reactor) if args.db else MemoryUserStore()
    service = DynDNSService(store, args.suffix, clock=reactor)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    await service.ready
    if not args.db:
        await add_demo_user(service)

    # The resolver goes first; names it does not know fall through to the zone.
    factory = DynDNSServerFactory(DynDNSResolver(service.registry), [zone])
    udp, tcp = listen_dns(reactor, factory, args.port, interface=args.interface)
    print(f"listening on {args.interface}:{tcp.getHost().port}", flush=True)

    await defer.Deferred()  # serve until the reactor stops


def run(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, args)))


if __name__ == "__main__":
    run(sys.argv[1:])
