"""
C{/nic/update}: the Dyn.com ("dyndns2") protocol that routers, ddclient and
inadyn speak, with Basic authentication.

One result line per requested host name, in request order: C{good <ip>} or
C{nochg <ip>} for the caller's own names, C{nohost} for names that are not
theirs, C{notfqdn} for things that are not host names; C{numhost} for more
than 20 names; C{badauth} (401) and C{911} once for the whole request; C{abuse} once
when the source is locked out after failed logins (with C{Retry-After}) or
the user changed its address too often. Error
bodies never contain C{good}, C{nochg}, C{ok}, C{true} or C{updated}:
inadyn looks for those as substrings.

Accepted and ignored (documented): C{system}, C{wildcard}, C{mx},
C{backmx}; wildcards are configured per user instead.
"""

from __future__ import annotations

from twisted.web import http, server

from dyndns_plugin.authn import (
    Authenticator,
    AuthResult,
    ClientUpdate,
    CredentialChecker,
    Outcome,
    Password,
    authenticator_for,
    retry_header,
)
from dyndns_plugin.methods import Method
from dyndns_plugin.model import IPAddress, UpdateStatus, ValidationError, normalize_name
from dyndns_plugin.protocols.ddns import REALM
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.web.base import AsyncResource, parse_address_list
from dyndns_plugin.web.common import (
    ClientAddressDetector,
    arg,
    args,
    basic_credentials,
    finish,
)

MAX_HOSTS = 20
METHOD = Method.DYNDNS2


def _reply(
    request: server.Request,
    lines: list[str],
    code: int = http.OK,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = list(headers or ())
    if code == http.UNAUTHORIZED:
        headers.append((b"www-authenticate", REALM))
    finish(request, ("\n".join(lines) + "\n").encode("ascii"), code=code, headers=headers)


def _refused(request: server.Request, checked: AuthResult) -> bool:
    """Answer refused credentials (True), or nothing if they were right."""
    if checked.outcome is Outcome.LOCKED:
        _reply(request, ["abuse"], headers=[(b"retry-after", checked.retry_header())])
        return True
    if not checked.ok or checked.user_id is None:
        _reply(request, ["badauth"], http.UNAUTHORIZED)
        return True
    return False


def _fqdn(host: str) -> str | None:
    """C{host} as a name we could own, or None (C{notfqdn})."""
    try:
        name = normalize_name(host, "hostname")
    except ValidationError:
        return None
    return name if "." in name else None


class NicUpdateResource(AsyncResource):
    """
    @param ignore_hostname: the original's behaviour (KB 66): update the
        authenticated user whatever C{hostname} says.
    """

    def __init__(
        self,
        service: DynDNSService,
        checker: CredentialChecker | Authenticator,
        detector: ClientAddressDetector,
        *,
        ignore_hostname: bool = False,
    ) -> None:
        super().__init__()
        self.service = service
        self.auth = authenticator_for(checker, service)
        self.detector = detector
        self.ignore_hostname = ignore_hostname

    async def handle(self, request: server.Request) -> None:
        credentials = basic_credentials(request)
        if credentials is None:
            return _reply(request, ["badauth"], http.UNAUTHORIZED)
        client = self.detector.detect(request)
        raw = [h.strip() for h in (arg(request, "hostname") or "").split(",")]
        requested = [h for h in raw if h]
        # One entry per requested host: its name, or None for notfqdn.
        names = [None if self.ignore_hostname else _fqdn(h) for h in requested]
        offline = (arg(request, "offline") or "")[:1] in ("Y", "y")
        addresses: list[IPAddress] = []
        if not offline:
            values = [v for key in ("myip", "myipv6", "ipv6") for v in args(request, key)]
            addresses, _ = parse_address_list(values, strict=False)
            if not addresses and client is not None:
                addresses = [client]
        update = ClientUpdate(
            METHOD,
            credentials[0],
            Password(credentials[1]),
            None if client is None else str(client),
            # None: the user's own main name, which needs no check.
            names=None if self.ignore_hostname or not requested else tuple(n for n in names if n),
            addresses=tuple(addresses),
            offline=offline,
        )
        if len(requested) > MAX_HOSTS:
            if not _refused(request, await self.auth.authenticate(update, "numhost")):
                _reply(request, ["numhost"])
            return
        outcome = await self.auth.update(update)
        if _refused(request, outcome.auth):
            return
        # None: this host gets the update result.
        verdicts = [
            "notfqdn" if not self.ignore_hostname and name is None else "nohost" if name in outcome.foreign else None
            for name in names
        ] or [None]
        result = outcome.result
        if result is None:  # no requested name is the user's
            return _reply(request, [v for v in verdicts if v is not None])
        if result.status == UpdateStatus.STORE_FAILED:
            return _reply(request, ["911"])
        if result.status == UpdateStatus.RATE_LIMITED:
            return _reply(request, ["abuse"], headers=[(b"retry-after", retry_header(result.retry_after))])
        if result.status in (UpdateStatus.NO_SUCH_USER, UpdateStatus.DISABLED):
            return _reply(request, ["badauth"], http.UNAUTHORIZED)
        if not result.ok:
            return _reply(request, ["dnserr"])
        if offline:
            user = self.service.registry.user(outcome.auth.user_id or "")
            shown = "" if user is None else ",".join(str(a) for a in user.offline_addresses())
        else:
            shown = ",".join(str(a) for a in addresses)
        line = f"{result.status.value} {shown}".rstrip()
        _reply(request, [line if v is None else v for v in verdicts])
