"""
The HTTP resource tree and site: C{<base>ddns}, C{<base>myip},
C{<base>checkip}, the ACME challenge APIs C{<base>acme-dns/update},
C{<base>acme-dns/register}, C{<base>acme/present} and C{<base>acme/cleanup}
(L{dyndns_plugin.protocols.acme_http}), and at the root C{/nic/update},
C{/nic/checkip.html} and C{/checkip} (so a router's "dyndns.org" setting
works whatever the base).

L{build_resources} gives the tree to mount in an existing site;
L{build_site} wraps it in a L{server.Site} with our request rules and an
access log that never writes a password.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.web import http, resource, server

from dyndns_plugin.acme import Op
from dyndns_plugin.authn import Authenticator, CredentialChecker, authenticator_for
from dyndns_plugin.config import ConnectionSettings, HTTPSettings
from dyndns_plugin.connections import ConnectionLimiter
from dyndns_plugin.protocols.acme_http import AcmeDnsRegisterResource, AcmeDnsUpdateResource, HttpreqResource
from dyndns_plugin.protocols.ddns import DdnsResource
from dyndns_plugin.protocols.gnudip_http import GnuDIPResource, SaltSigner
from dyndns_plugin.protocols.myip import CheckIPResource, DisabledMethod, MyIPResource
from dyndns_plugin.protocols.nic import NicUpdateResource
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.web.channel import LimitedSite
from dyndns_plugin.web.common import ClientAddressDetector, DynDNSRequest, finish

#: Query parameters whose values never reach a log (compared decoded and
#: lower-cased, so C{p%77=} is C{pw=}): passwords, GnuDIP hashes and salt
#: signatures, and anything named like a token or key.
SECRET_PARAMS = frozenset(
    {b"pw", b"pwd", b"pass", b"password", b"passwd", b"sign", b"signature", b"token", b"secret", b"key", b"hash"}
)
_USERINFO = re.compile(rb"(//[^/?#@:]*:)[^/?#@]*@")
_QUERY_ITEM = re.compile(rb"[^&;]+")


class NotFound(resource.Resource):
    """
    Any unknown path: 404 through L{finish}, like every other answer
    (Twisted's C{NoResource} is deprecated and warns on every use).
    """

    isLeaf = True

    def render(self, request: server.Request) -> Any:
        finish(request, b"not found\n", code=http.NOT_FOUND)
        return server.NOT_DONE_YET


class Folder(resource.Resource):
    """
    A path segment with children; itself answers 404 like any unknown path.
    C{suffix_routes} serve any request whose path ends with a given suffix
    (GnuDIP clients have C{.../gnudip/cgi-bin/gdipupdt.cgi} under any prefix).
    """

    def __init__(self) -> None:
        super().__init__()
        self.suffix_routes: list[tuple[bytes, resource.Resource]] = []

    def render(self, request: server.Request) -> Any:
        return NotFound().render(request)

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        for suffix, target in self.suffix_routes:
            if request.path.endswith(suffix):
                return target
        return NotFound()


def _mount(root: resource.Resource, path: str) -> resource.Resource:
    """The folder for C{path} under C{root}, made as needed."""
    node = root
    for segment in [s for s in path.split("/") if s]:
        child = node.children.get(segment.encode())
        if child is None:
            child = Folder()
            node.putChild(segment.encode(), child)
        node = child
    return node


def build_resources(
    service: DynDNSService,
    settings: HTTPSettings,
    checker: CredentialChecker | Authenticator,
    root: resource.Resource | None = None,
    salt_signer: SaltSigner | None = None,
) -> resource.Resource:
    """
    Put every HTTP method into C{root} (a new L{Folder} by default).
    GnuDIP over HTTP needs a L{SaltSigner}; without one it is not served.
    """
    if root is None:
        root = Folder()
    auth = authenticator_for(checker, service)  # one for every method here
    detector = ClientAddressDetector(settings.trusted_proxies)
    if settings.gnudip and salt_signer is not None:
        gnudip: resource.Resource = GnuDIPResource(service, auth, detector, salt_signer)
    else:
        gnudip = DisabledMethod("GnuDIP HTTP update method is not enabled")
    _mount(root, settings.base_path).putChild(b"gnudip", gnudip)
    if isinstance(root, Folder):
        root.suffix_routes.append((b"/gnudip/cgi-bin/gdipupdt.cgi", gnudip))
    base = _mount(root, settings.base_path)
    ddns: resource.Resource
    if settings.url_auth or settings.basic_auth:
        ddns = DdnsResource(
            service,
            auth,
            detector,
            url_auth=settings.url_auth,
            basic_auth=settings.basic_auth,
        )
    else:
        ddns = DisabledMethod("HTTP update method is not enabled")
    base.putChild(b"ddns", ddns)
    # The ACME APIs read their switches (service.acme) at each request: off, 404.
    acme_dns = _mount(base, "acme-dns")
    acme_dns.putChild(b"update", AcmeDnsUpdateResource(service, auth, detector))
    acme_dns.putChild(b"register", AcmeDnsRegisterResource(service, auth, detector))
    httpreq = _mount(base, "acme")
    httpreq.putChild(b"present", HttpreqResource(service, auth, detector, Op.ADD))
    httpreq.putChild(b"cleanup", HttpreqResource(service, auth, detector, Op.REMOVE))
    if settings.remote_ip:
        base.putChild(b"myip", MyIPResource(detector))
        base.putChild(b"checkip", CheckIPResource(detector))
        _mount(root, "/nic").putChild(b"checkip.html", CheckIPResource(detector))
        root.putChild(b"checkip", CheckIPResource(detector))
    else:
        disabled = DisabledMethod("Remote IP detection is not enabled")
        for node, name in ((base, b"myip"), (base, b"checkip"), (root, b"checkip")):
            node.putChild(name, disabled)
    nic = _mount(root, "/nic")
    if settings.nic_update:
        nic.putChild(
            b"update",
            NicUpdateResource(
                service,
                auth,
                detector,
                ignore_hostname=settings.nic_update_ignore_hostname,
            ),
        )
    else:
        nic.putChild(b"update", DisabledMethod("Dyn.com update method is not enabled"))
    return root


def redact_uri(uri: bytes) -> bytes:
    """
    C{uri} with the values of L{SECRET_PARAMS} in its query and the password
    of a C{//user:password@} replaced by C{***}.
    """
    uri = _USERINFO.sub(rb"\1***@", uri)
    path, mark, query = uri.partition(b"?")
    if not mark:
        return uri

    def redact(item: re.Match[bytes]) -> bytes:
        name, equals, _ = item.group().partition(b"=")
        decoded = unquote_to_bytes(name.replace(b"+", b" ")).strip().lower()
        return name + b"=***" if equals and decoded in SECRET_PARAMS else item.group()

    return path + mark + _QUERY_ITEM.sub(redact, query)


class _RedactedRequest:
    """What the access log formatter sees of a request: its URI and Referer redacted."""

    def __init__(self, request: server.Request) -> None:
        self._request = request

    @property
    def uri(self) -> bytes:
        return redact_uri(self._request.uri or b"")

    def getHeader(self, name: bytes) -> bytes | None:
        value = self._request.getHeader(name)
        if value is not None and name.lower() == b"referer":
            return redact_uri(value)
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def redacting_log_formatter(timestamp: str, request: server.Request) -> str:
    """Combined log format with secrets in the URI and Referer replaced by *** (L{redact_uri})."""
    return http.combinedLogFormatter(timestamp, _RedactedRequest(request))


class DynDNSSite(LimitedSite):
    """
    A Site whose access log goes to its own file (C{http.access_log}), or
    nowhere: by default Twisted writes one line per request into the main
    log, which at thousands of updates a second costs more than the update.
    Its connections are capped and have deadlines (L{LimitedSite}).
    """

    def log(self, request: http.Request) -> None:
        if self.logPath:
            super().log(request)


def build_site(
    service: DynDNSService,
    settings: HTTPSettings,
    checker: CredentialChecker | Authenticator,
    salt_signer: SaltSigner | None = None,
    connections: ConnectionSettings | None = None,
    limiter: ConnectionLimiter | None = None,
) -> server.Site:
    """
    The public site. Its connections are capped by C{limiter} (by default
    one made from C{connections}, the C{[connections]} defaults if None,
    with the C{http_*} caps) and get the C{http_*} deadlines; the idle
    timeout between requests is C{settings.timeout}.
    """
    if connections is None:
        connections = ConnectionSettings()
    if limiter is None:
        limiter = ConnectionLimiter(
            "http",
            connections.http_max_per_source,
            connections.http_max_total,
            ipv6_prefix=connections.ipv6_prefix,
            clock=service.clock,
        )
    site = DynDNSSite(
        build_resources(service, settings, checker, salt_signer=salt_signer),
        logPath=settings.access_log,
        timeout=settings.timeout,
        logFormatter=redacting_log_formatter,
    )
    site.requestFactory = DynDNSRequest
    site.displayTracebacks = False
    site.limit_connections(limiter, connections.http_header_timeout, connections.http_request_timeout)
    return site
