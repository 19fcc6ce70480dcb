#!/usr/bin/env python3
"""
A DNS rule for DynDNS users, chosen by their notes.

Like examples/embed_resolver.py, this is a Twisted Names server with the
DynDNS resolver in front of an operator's zone. On top, it looks at where
each query comes from: if the source address is the current address of an
active DynDNS user whose notes contain a marker (C{#block-ads} by default),
the names of a block list (and every name below them) answer NXDOMAIN for
that client; everyone else gets the normal answers. It is what the original
plug-in offers to other plug-ins ("which DynDNS user is at this address"),
done with the public API:

    users = service.users_at(client_address)    # active, online users, by id
    if any(marker in user.notes for user in users): apply the rule

How it plugs in: L{NotesRuleServerFactory} overrides Twisted's
C{DNSServerFactory.handleQuery(message, protocol, address)}, the one place
that sees both the question and the client (C{address} for UDP,
C{protocol.transport.getPeer()} for TCP). It holds C{(marker, rule)} pairs; a
rule is any callable C{rule(query) -> rcode or None} (None: answer
normally), so another rule, say "REFUSED for ANY queries" or "NXDOMAIN for
names from a file", is one small function and one more pair. A rule that
answers records instead (a sinkhole 0.0.0.0) would call
C{self.gotResolverResponse(([record], [], []), protocol, message, address)}.
The lookup reads memory only, so it adds no I/O to the query path. Rules
see the address the query comes from: they work for clients that ask this
server directly (give it C{--forward} to make it their resolver), not for
queries relayed by another recursive resolver.

Run it from the repository root and ask it from two source addresses:

    python examples/notes_rule_resolver.py --port 5354
    dig @127.0.0.1 -p 5354 www.example.org A                 # NXDOMAIN: blocked
    dig @127.0.0.1 -p 5354 -b 127.0.0.2 www.example.org A    # 192.0.2.80
    dig @127.0.0.1 -p 5354 demo.example.org A                # 192.0.2.10

Without C{--db} the users live in memory: C{demo} at 192.0.2.10 (as in
embed_resolver.py) and C{family} at 127.0.0.1 with C{#block-ads} in its
notes, so queries from 127.0.0.1 get the rule. The demo block list holds
www.example.org, which stands in for an ad server so that the rule shows
without a forwarder; give your own with C{--block NAME} or
C{--block-file FILE} (one name per line, C{#} comments). With C{--db FILE}
the users come from an SQLite store the C{dyndns} CLI manages; a notes
change there (C{dyndns} CLI, admin API) takes effect on the next query.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any, Callable, Iterable, Sequence

from twisted.internet import defer, task
from twisted.names import client, dns

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
MARKER = "#block-ads"
#: The demo's block list (www.example.org is in the example zone, so the
#: rule is visible without a forwarder).
DEMO_BLOCKED = ("ads.example.net", "www.example.org")

#: A rule gets the question and returns an rcode to answer with, or None.
Rule = Callable[[dns.Query], int | None]


class BlockList:
    """NXDOMAIN for C{names} and every name below them."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(n.strip().lower().rstrip(".") for n in names if n.strip())

    def __call__(self, query: dns.Query) -> int | None:
        name = query.name.name.decode("ascii", "replace").lower().rstrip(".")
        while name:
            if name in self.names:
                return dns.ENAME
            name = name.partition(".")[2]
        return None


def read_names(path: str) -> list[str]:
    """The names in a block list file: one a line, C{#} starts a comment."""
    with open(path, encoding="utf-8") as f:
        return [line.partition("#")[0] for line in f]


def client_host(protocol: Any, address: Any) -> str:
    """Where a query comes from: UDP passes the address, TCP has a peer."""
    if address is not None:
        return str(address[0])
    return str(protocol.transport.getPeer().host)


class NotesRuleServerFactory(DynDNSServerFactory):
    """
    A L{DynDNSServerFactory} that applies C{rules}, C{(marker, rule)} pairs,
    to queries from the address of an active DynDNS user whose notes contain
    C{marker} (case-sensitive; with several users at one address, any of
    them). The first rule that returns an rcode answers.
    """

    def __init__(self, service: DynDNSService, rules: Sequence[tuple[str, Rule]], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.service = service
        self.rules = list(rules)

    def handleQuery(self, message: Any, protocol: Any, address: Any) -> Any:
        users = self.service.users_at(client_host(protocol, address))
        if users:
            for marker, rule in self.rules:
                if any(marker in user.notes for user in users):
                    rcode = rule(message.queries[0])
                    if rcode is not None:
                        response = self._responseFromMessage(message=message, rCode=rcode)
                        self.sendReply(protocol, response, address)
                        return None
        return super().handleQuery(message, protocol, address)


def build_factory(
    service: DynDNSService,
    authorities: Sequence[Any],
    marker: str = MARKER,
    blocked: Iterable[str] = DEMO_BLOCKED,
    clients: Sequence[Any] = (),
) -> NotesRuleServerFactory:
    """
    The server: users' names, then C{authorities}, then C{clients} (upstream
    resolvers) for everything else; one rule, C{blocked} for C{marker}.
    """
    return NotesRuleServerFactory(
        service,
        [(marker, BlockList(blocked))],
        DynDNSResolver(service.registry),
        authorities,
        clients=list(clients),
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--port", type=int, default=5354, help="UDP and TCP port (0: any)")
    parser.add_argument("--interface", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--db", metavar="FILE", help="SQLite user store (default: in memory, with demo users)")
    parser.add_argument(
        "--zone", default=os.path.join(HERE, "example.org.zone"), help="the BIND zone file of the existing server"
    )
    parser.add_argument("--origin", default="example.org", help="the zone file's origin")
    parser.add_argument("--suffix", default="dyn.example.org", help="every user gets <user>.<suffix>")
    parser.add_argument("--marker", default=MARKER, help="the rule applies to users whose notes contain this text")
    parser.add_argument(
        "--block", action="append", default=[], metavar="NAME", help="block NAME and the names below it (repeatable)"
    )
    parser.add_argument("--block-file", metavar="FILE", help="block the names in FILE")
    parser.add_argument("--forward", metavar="HOST", help="ask HOST for every other name: a forwarding resolver")
    parser.add_argument("--forward-port", type=int, default=53, help="the port of HOST")
    return parser.parse_args(argv)


async def add_demo_users(service: DynDNSService) -> None:
    """C{demo} at 192.0.2.10, and C{family} at 127.0.0.1 with the marker."""
    await service.add_user(User(id="demo", hostnames=("demo.example.org",)))
    await service.add_user(User(id="family", notes=f"the kids' laptops {MARKER}"))
    for user_id, address in (("demo", "192.0.2.10"), ("family", "127.0.0.1")):
        result = await service.update(user_id, [ipaddress.ip_address(address)], method="example")
        if not result.ok:
            raise RuntimeError(f"{user_id} update failed: {result.status.value} {result.message}")


async def main(reactor: Any, args: argparse.Namespace) -> None:
    store: IUserStore = SQLiteUserStore(args.db, reactor) if args.db else MemoryUserStore()
    service = DynDNSService(store, args.suffix, clock=reactor)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    await service.ready
    if not args.db:
        await add_demo_users(service)

    blocked = args.block + (read_names(args.block_file) if args.block_file else [])
    if not (args.block or args.block_file):
        blocked = list(DEMO_BLOCKED)
    clients = []
    if args.forward:
        clients.append(client.Resolver(servers=[(args.forward, args.forward_port)]))
    zone = load_zone_file(args.zone, args.origin)
    factory = build_factory(service, [zone], args.marker, blocked, clients)
    udp, tcp = listen_dns(reactor, factory, args.port, interface=args.interface)
    print(f"listening on {args.interface}:{tcp.getHost().port}", flush=True)

    await defer.Deferred()  # serve until the reactor stops


def run(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, args)))


if __name__ == "__main__":
    run(sys.argv[1:])
