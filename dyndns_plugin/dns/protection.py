"""
The DNS server's abuse protection built from the settings: response rate
limiting (C{[dns.rrl]}) and DNS cookies (C{[dns.cookies]}); used at start
(L{dyndns_plugin.tap}) and again on reload (L{dyndns_plugin.reload}).
"""

from __future__ import annotations

from typing import Any

from dyndns_plugin.config import Settings
from dyndns_plugin.dns.server import DynDNSServerFactory


def protect_dns(factory: DynDNSServerFactory, settings: Settings, clock: Any) -> None:
    """
    Response rate limiting (C{[dns.rrl]}) and DNS cookies (C{[dns.cookies]})
    on the DNS factory; without a configured secret, a random one.
    """
    factory.rrl = make_rrl(settings, clock)
    factory.cookies = make_cookies(settings, clock)


def make_rrl(settings: Settings, clock: Any) -> Any:
    """The response rate limiter of C{[dns.rrl]}, or None when it is off."""
    from dyndns_plugin.dns.rrl import ResponseRateLimiter

    rrl = settings.dns_protection.rrl
    if not rrl.enabled:
        return None
    return ResponseRateLimiter(
        clock,
        responses_per_second=rrl.responses_per_second,
        slip=rrl.slip,
        ipv4_prefix=rrl.ipv4_prefix,
        ipv6_prefix=rrl.ipv6_prefix,
        exempt=rrl.exempt,
        table_size=rrl.table_size,
    )


def make_cookies(settings: Settings, clock: Any) -> Any:
    """The server cookies of C{[dns.cookies]} (a random secret if none is set), or None when off."""
    from dyndns_plugin.dns.cookies import ServerCookies, random_secret

    cookies = settings.dns_protection.cookies
    if not cookies.enabled:
        return None
    secret = cookies.secret.value if cookies.secret is not None else random_secret()
    return ServerCookies(secret, clock)
