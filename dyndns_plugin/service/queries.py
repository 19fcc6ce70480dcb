"""Reads of the registry for rules outside the service (memory only, no I/O)."""

from __future__ import annotations

import ipaddress

from dyndns_plugin.model import IPAddress, User
from dyndns_plugin.registry import Registry


def users_at(registry: Registry, address: str | IPAddress) -> list[User]:
    """
    The active DynDNS users at C{address} now, sorted by id: users that
    are not disabled, are online, and have C{address} as their current
    IPv4 or IPv6 address (an offline user's offline IP does not count).
    Several users can share one address (behind one NAT).

    For rules that treat requests from DynDNS users differently, such as
    a DNS server that filters queries from users whose C{notes} contain
    a marker (examples/notes_rule_resolver.py). It reads memory only and
    costs the same at any number of users: safe on the DNS query path.

    @param address: text or an C{ipaddress} object. An IPv4-mapped IPv6
        address (C{::ffff:192.0.2.1}, what a dual-stack socket reports
        for an IPv4 client) counts as the IPv4 address; an IPv6 zone
        (C{fe80::1%eth0}) is ignored. Text that is not an IP address
        (a UNIX socket path, say) matches nobody: the result is C{[]},
        never an exception.
    """
    if isinstance(address, str):
        try:
            address = ipaddress.ip_address(address)
        except ValueError:
            return []
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address.scope_id is not None:
            address = ipaddress.IPv6Address(int(address))
    user_ids = registry.users_at(address)
    if not user_ids:
        return []
    users = registry.users
    return [users[i] for i in sorted(user_ids) if i in users]
