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

from typing import Any

from twisted.web import http, server

from dyndns_plugin.authn import Outcome, authenticator_for, retry_header
from dyndns_plugin.model import UpdateStatus, ValidationError, normalize_name
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.web.base import AsyncResource, parse_address_list
from dyndns_plugin.web.common import (
    ClientAddressDetector,
    arg,
    args,
    basic_credentials,
    finish,
)
from dyndns_plugin.protocols.ddns import REALM

MAX_HOSTS = 20
METHOD = "dyndns2"


def _reply(
    request: server.Request, lines: list[str], code: int = http.OK,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = list(headers or ())
    if code == http.UNAUTHORIZED:
        headers.append((b"www-authenticate", REALM))
    finish(request, ("\n".join(lines) + "\n").encode("ascii"), code=code, headers=headers)


class NicUpdateResource(AsyncResource):
    """
    @param ignore_hostname: the original's behaviour (KB 66): update the
        authenticated user whatever C{hostname} says.
    """

    def __init__(
        self,
        service: DynDNSService,
        checker: Any,
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
        client_text = None if client is None else str(client)
        checked = await self.auth.password(METHOD, *credentials, client_text)
        if checked.outcome is Outcome.LOCKED:
            return _reply(request, ["abuse"], headers=[(b"retry-after", checked.retry_header())])
        if not checked.ok or checked.user_id is None:
            return _reply(request, ["badauth"], http.UNAUTHORIZED)
        user_id = checked.user_id
        user = self.service.registry.users.get(user_id)
        if user is None:
            return _reply(request, ["badauth"], http.UNAUTHORIZED)
        own = self.service.registry.updatable_names(user_id)

        raw = [h.strip() for h in (arg(request, "hostname") or "").split(",")]
        requested = [h for h in raw if h]
        if len(requested) > MAX_HOSTS:
            return _reply(request, ["numhost"])
        if not requested:
            requested = [self.service.registry.main_name(user_id)]
        verdicts: list[str | None] = []  # None: this host gets the update result
        for host in requested:
            if self.ignore_hostname:
                verdicts.append(None)
                continue
            try:
                name = normalize_name(host, "hostname")
            except ValidationError:
                verdicts.append("notfqdn")
                continue
            if "." not in name:
                verdicts.append("notfqdn")
            elif name not in own:
                verdicts.append("nohost")
            else:
                verdicts.append(None)
        if all(v is not None for v in verdicts):
            return _reply(request, [v for v in verdicts if v is not None])

        offline = arg(request, "offline")
        if offline and offline[:1] in ("Y", "y"):
            result = await self.service.set_offline(user_id, METHOD, client_text)
            shown = ",".join(str(a) for a in user.offline_addresses())
        else:
            values = [v for key in ("myip", "myipv6", "ipv6") for v in args(request, key)]
            addresses, _ = parse_address_list(values, strict=False)
            if not addresses and client is not None:
                addresses = [client]
            result = await self.service.update(user_id, addresses, None, METHOD, client_text)
            shown = ",".join(str(a) for a in addresses)
        if result.status == UpdateStatus.STORE_FAILED:
            return _reply(request, ["911"])
        if result.status == UpdateStatus.RATE_LIMITED:
            return _reply(request, ["abuse"], headers=[(b"retry-after", retry_header(result.retry_after))])
        if result.status in (UpdateStatus.NO_SUCH_USER, UpdateStatus.DISABLED):
            return _reply(request, ["badauth"], http.UNAUTHORIZED)
        if not result.ok:
            return _reply(request, ["dnserr"])
        line = f"{result.status.value} {shown}".rstrip()
        _reply(request, [line if v is None else v for v in verdicts])
