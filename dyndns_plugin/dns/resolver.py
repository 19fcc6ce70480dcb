"""
L{DynDNSResolver}: answers A, AAAA and ANY for users' names, and TXT for
their ACME challenge names (L{dyndns_plugin.acme}), from the in-memory
registry, and lets everything else fall through to the next
resolver (the suffix zone, host zones, or an embedder's own authorities).

This is the DNS query path: it reads memory only, never the store, a thread
or anything that blocks.
"""

from __future__ import annotations

import functools
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IResolver
from twisted.names import common, dns, error, resolve
from zope.interface import implementer

from dyndns_plugin.registry import Registry


class NotReady(Exception):
    """The registry is not loaded yet; answer SERVFAIL, not a wrong NXDOMAIN."""


_ADDRESS_TYPES = {dns.A: (4,), dns.AAAA: (6,), dns.ALL_RECORDS: (4, 6)}
#: What an ACME challenge name answers (L{dyndns_plugin.acme}).
_TXT_TYPES = (dns.TXT, dns.ALL_RECORDS)


def name_key(name: bytes) -> str | None:
    """Lower-case text form of a query name, or None if it is not ASCII."""
    try:
        return name.decode("ascii").lower().rstrip(".")
    except UnicodeDecodeError:
        return None


@implementer(IResolver)
class DynDNSResolver(common.ResolverBase):
    """
    An L{IResolver} in front of other authorities. A user's names (main,
    additional, wildcard aliases) get their current addresses with the
    user's TTL, its ACME challenge names their TXT values; a name with no current address of the asked family, an
    unknown or disabled user, or another query type fails with
    L{error.DomainError} so the next resolver in the chain is asked.
    """

    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry

    def owns(self, name: bytes) -> bool:
        """True if C{name} is one of an active user's names."""
        key = name_key(name)
        return key is not None and self.registry.owner_of(key) is not None

    def _lookup(
        self, name: bytes, cls: int, type: int, timeout: object = None
    ) -> defer.Deferred[tuple[list[dns.RRHeader], list[dns.RRHeader], list[dns.RRHeader]]]:
        if not self.registry.loaded:
            return defer.fail(NotReady("user registry not loaded yet"))
        versions = _ADDRESS_TYPES.get(type)
        key = name_key(name)
        if type in _TXT_TYPES and cls in (dns.IN, dns.ANY) and key is not None:
            challenge = self.registry.challenge(key)
            if challenge is not None:
                ttl = self.registry.txt_ttl
                return defer.succeed(
                    (
                        [
                            dns.RRHeader(name, dns.TXT, dns.IN, ttl, dns.Record_TXT(value.encode(), ttl=ttl), auth=True)
                            for value in challenge[1]
                        ],
                        [],
                        [],
                    )
                )
        answer = None
        if versions is not None and cls in (dns.IN, dns.ANY) and key is not None:
            answer = self.registry.answer(key)
        if answer is None or versions is None:
            return defer.fail(error.DomainError(name))
        records = []
        for address in answer.addresses:
            if address.version not in versions:
                continue
            if address.version == 4:
                payload: dns.Record_A | dns.Record_AAAA = dns.Record_A(str(address), answer.ttl)
                rtype = dns.A
            else:
                payload = dns.Record_AAAA(str(address), answer.ttl)
                rtype = dns.AAAA
            records.append(dns.RRHeader(name, rtype, dns.IN, answer.ttl, payload, auth=True))
        if not records:
            return defer.fail(error.DomainError(name))
        return defer.succeed((records, [], []))

    def lookupZone(self, name: bytes, timeout: object = None) -> defer.Deferred[object]:  # type: ignore[override]
        # Zone transfers are served by the transfer module, not the chain.
        return defer.fail(error.DomainError(name))


def quiet_query(resolver: Any, query: dns.Query, timeout: object = None) -> defer.Deferred[Any]:
    """
    C{resolver.query(query)} without the debug line L{common.ResolverBase}
    logs for every query of a type it has no lookup method for (anyone can
    send those: a line per packet). Resolvers with their own C{query} are
    asked as they are.
    """
    if type(resolver).query not in _QUIET:
        return resolver.query(query, timeout)  # type: ignore[no-any-return]
    method = resolver.typeToMethod.get(query.type)
    if method is None:
        return defer.maybeDeferred(resolver._lookup, query.name.name, dns.IN, query.type, timeout)
    return defer.maybeDeferred(method, query.name.name, timeout)


class QuietResolverChain(resolve.ResolverChain):
    """
    Twisted's L{resolve.ResolverChain} (each resolver in turn until one
    answers or fails authoritatively) asking through L{quiet_query}.
    """

    def query(self, query: dns.Query, timeout: object = None) -> defer.Deferred[Any]:  # type: ignore[override]
        return quiet_query(self, query, timeout)

    def _lookup(self, name: bytes, cls: int, type: int, timeout: object) -> defer.Deferred[Any]:  # type: ignore[override]
        if not self.resolvers:
            return defer.fail(error.DomainError())
        q = dns.Query(name, type, cls)
        d = quiet_query(self.resolvers[0], q, timeout)
        for r in self.resolvers[1:]:
            d = d.addErrback(resolve.FailureHandler(functools.partial(quiet_query, r), q, timeout))
        return d


#: The C{query} methods L{quiet_query} may bypass.
_QUIET = (common.ResolverBase.query, QuietResolverChain.query)
