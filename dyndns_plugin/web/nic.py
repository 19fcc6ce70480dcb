"""
C{/nic/update}: the Dyn.com ("dyndns2") protocol that routers, ddclient and
inadyn speak, with Basic authentication.

One result line per requested host name, in request order: C{good <ip>} or
C{nochg <ip>} for the caller's own names, C{nohost} for names that are not
theirs, C{notfqdn} for things that are not host names; C{numhost} for more
than 20 names; C{badauth} (401) and C{911} once for the whole request. Error
bodies never contain C{good}, C{nochg}, C{ok}, C{true} or C{updated}:
inadyn looks for those as substrings.

Accepted and ignored (documented): C{system}, C{wildcard}, C{mx},
C{backmx}; wildcards are configured per user instead.
"""

from __future__ import annotations

from twisted.cred.error import UnauthorizedLogin
from twisted.web import http, server

from dyndns_plugin.auth import DisabledUser, PasswordChecker
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
from dyndns_plugin.web.ddns import REALM

MAX_HOSTS = 20


def _reply(request: server.Request, lines: list[str], code: int = http.OK) -> None:
    headers = [(b"www-authenticate", REALM)] if code == http.UNAUTHORIZED else []
    finish(request, ("\n".join(lines) + "\n").encode("ascii"), code=code, headers=headers)


class NicUpdateResource(AsyncResource):
    """
    @param ignore_hostname: the original's behaviour (KB 66): update the
        authenticated user whatever C{hostname} says.
    """

    def __init__(
        self,
        service: DynDNSService,
        checker: PasswordChecker,
        detector: ClientAddressDetector,
        *,
        ignore_hostname: bool = False,
    ) -> None:
        super().__init__()
        self.service = service
        self.checker = checker
        self.detector = detector
        self.ignore_hostname = ignore_hostname

    async def handle(self, request: server.Request) -> None:
        credentials = basic_credentials(request)
        if credentials is None:
            return _reply(request, ["badauth"], http.UNAUTHORIZED)
        try:
            user_id = await self.checker.check(*credentials)
        except UnauthorizedLogin as e:
            if not isinstance(e, DisabledUser):
                self.service.auth_failed("dyndns2")
            return _reply(request, ["badauth"], http.UNAUTHORIZED)
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

        client = self.detector.detect(request)
        client_text = None if client is None else str(client)
        offline = arg(request, "offline")
        if offline and offline[:1] in ("Y", "y"):
            result = await self.service.set_offline(user_id, "dyndns2", client_text)
            shown = ",".join(str(a) for a in user.offline_addresses())
        else:
            values = [v for key in ("myip", "myipv6", "ipv6") for v in args(request, key)]
            addresses, _ = parse_address_list(values, strict=False)
            if not addresses and client is not None:
                addresses = [client]
            result = await self.service.update(user_id, addresses, None, "dyndns2", client_text)
            shown = ",".join(str(a) for a in addresses)
        if result.status == UpdateStatus.STORE_FAILED:
            return _reply(request, ["911"])
        if result.status in (UpdateStatus.NO_SUCH_USER, UpdateStatus.DISABLED):
            return _reply(request, ["badauth"], http.UNAUTHORIZED)
        if not result.ok:
            return _reply(request, ["dnserr"])
        line = f"{result.status.value} {shown}".rstrip()
        _reply(request, [line if v is None else v for v in verdicts])
