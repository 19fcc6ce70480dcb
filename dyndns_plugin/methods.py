"""
The update methods, by the one name each has in logs, stored host states
and the C{method} label of the metrics.

A L{Method} is a C{str} (an C{enum.StrEnum}), so a stored state, a log line
or a metrics label shows the same text as before there was an enum, and an
embedding program may still pass any string of its own.
"""

from __future__ import annotations

import enum


class Method(enum.StrEnum):
    #: C{<base>ddns} with C{user} and C{pw} in the URL.
    HTTP_URL = "http-url"
    #: C{<base>ddns} with HTTP Basic authentication.
    HTTP_BASIC = "http-basic"
    #: C{/nic/update}, the Dyn.com protocol.
    DYNDNS2 = "dyndns2"
    GNUDIP_TCP = "gnudip-tcp"
    GNUDIP_HTTP = "gnudip-http"
    #: TSIG-signed RFC 2136 UPDATE.
    DNS_UPDATE = "dns-update"
    #: The HTTP admin API.
    ADMIN = "admin"
    #: The C{dyndns} command line tool.
    CLI = "cli"
    #: States migrated from the original plug-in (C{dyndns import-sdp}).
    IMPORT_SDP = "import-sdp"
    #: ACME challenge values by the acme-dns API (C{/acme-dns/update}).
    ACME_DNS = "acme-dns"
    #: ACME challenge values by lego's httpreq API (C{/acme/present}, C{/acme/cleanup}).
    ACME_HTTPREQ = "acme-httpreq"
    #: ACME challenge values that reached the end of their lifetime.
    ACME_EXPIRY = "acme-expiry"


#: The update methods of clients: their changes count against a user's
#: change limit (the admin API and the CLI do not), and metrics export
#: their counters from the start.
CLIENT_METHODS: tuple[Method, ...] = (
    Method.HTTP_URL,
    Method.HTTP_BASIC,
    Method.DYNDNS2,
    Method.GNUDIP_TCP,
    Method.GNUDIP_HTTP,
    Method.DNS_UPDATE,
    Method.ACME_DNS,
    Method.ACME_HTTPREQ,
)


def is_client_method(method: str) -> bool:
    """Whether a write by C{method} is a client's (rate limited)."""
    return method in _CLIENT_SET


_CLIENT_SET = frozenset(CLIENT_METHODS)
