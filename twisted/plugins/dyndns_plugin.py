"""
twistd plugin: C{twistd dyndns --config FILE}, and the endpoint string
C{systemd-tls:} (TLS on a socket systemd passed, for HTTPS on port 443).

Both are lazy: L{ServiceMaker} imports L{dyndns_plugin.tap} only when the
plugin is used, and the endpoint parser imports L{dyndns_plugin.systemd} only
when a C{systemd-tls:} string is parsed, so an import problem in our package
never breaks C{twistd --help} or the endpoints of every other plugin.
"""

from typing import Any

from twisted.application.service import ServiceMaker
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer

dyndns = ServiceMaker(
    "DynDNS",
    "dyndns_plugin.tap",
    "A dynamic DNS service: <user>.<suffix> names updated by their owners.",
    "dyndns",
)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class SystemdTLSParser:
    """C{systemd-tls:domain=INET6:name=https:privateKey=KEY:certKey=CERT}."""

    prefix = "systemd-tls"

    def parseStreamServer(self, reactor: Any, *args: Any, **kwargs: Any) -> Any:
        from dyndns_plugin.systemd import tls_server_endpoint

        return tls_server_endpoint(reactor, *args, **kwargs)


systemd_tls = SystemdTLSParser()
