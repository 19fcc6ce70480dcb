"""
C{<base>ddns}: the original plug-in's own HTTP method.

URL authentication (C{?user=ID&pw=PW}) or, when C{user} is absent, HTTP
Basic authentication; optional C{ip} (IPv4, IPv6 or a comma list of both),
C{ttl} and C{offline=Y...}. The answer is the original's HTML page with the
C{DynDNS-Result} meta tag, plus the C{X-DynDNS-Result} header the original
documents but never sends.
"""

from __future__ import annotations

import html

import attrs
from twisted.web import http, server

from dyndns_plugin.authn import (
    TOO_MANY_REQUESTS,
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
from dyndns_plugin.model import IPAddress, UpdateStatus, ValidationError, validate_ttl
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.twisted_private import spell_header
from dyndns_plugin.web.base import AsyncResource, parse_address_list
from dyndns_plugin.web.common import (
    ClientAddressDetector,
    arg,
    args,
    basic_credentials,
    finish,
)

REALM = b'Basic realm="DynDNS Service"'


# Send the header as the original documents it, C{X-DynDNS-Result}: Twisted
# would write C{X-Dyndns-Result} (names are case-insensitive, so this is cosmetic).
spell_header(b"X-Dyndns-Result", b"X-DynDNS-Result")

_ERRORS = {
    UpdateStatus.NO_SUCH_USER: "Unknown user ID",
    UpdateStatus.DISABLED: "User is disabled",
    UpdateStatus.BAD_ADDRESS: "Invalid IP address",
    UpdateStatus.STORE_FAILED: "Server error, please try again later",
    UpdateStatus.RATE_LIMITED: "Too many updates, please try again later",
}


def result_page(ok: bool, text: str) -> bytes:
    """
    The original's page. Only C{<>&} are escaped: quotes need none in a text
    node, and the original shows C{Missing 'user' value} as is.
    """
    word = "OK" if ok else "ERROR"
    meta = "OK" if ok else "FAIL"
    return (
        "<html><head>"
        f'<meta name="DynDNS-Result" content="{meta}">'
        f"<title>DynDNS update {word}</title></head>"
        f"<body><h1>{word}: {html.escape(text, quote=False)}</h1></body></html>\n"
    ).encode("utf-8")


class DdnsResource(AsyncResource):
    """The URL-auth and Basic-auth update method (each can be switched off)."""

    def __init__(
        self,
        service: DynDNSService,
        checker: CredentialChecker | Authenticator,
        detector: ClientAddressDetector,
        *,
        url_auth: bool = True,
        basic_auth: bool = True,
    ) -> None:
        super().__init__()
        self.service = service
        self.auth = authenticator_for(checker, service)
        self.detector = detector
        self.url_auth = url_auth
        self.basic_auth = basic_auth

    def answer(self, request: server.Request, ok: bool, text: str) -> None:
        finish(
            request,
            result_page(ok, text),
            b"text/html; charset=utf-8",
            headers=[(b"x-dyndns-result", b"OK" if ok else b"FAIL")],
        )

    def too_many(self, request: server.Request, text: str, seconds: float | None) -> None:
        """429 with C{Retry-After} and the FAIL page and header."""
        finish(
            request,
            result_page(False, text),
            b"text/html; charset=utf-8",
            TOO_MANY_REQUESTS,
            headers=[(b"x-dyndns-result", b"FAIL"), (b"retry-after", retry_header(seconds))],
        )

    def challenge(self, request: server.Request) -> None:
        body = b"<html><head><title>Unauthorized</title></head><body><h1>Unauthorized</h1></body></html>\n"
        finish(
            request,
            body,
            b"text/html; charset=utf-8",
            http.UNAUTHORIZED,
            headers=[(b"www-authenticate", REALM), (b"x-dyndns-result", b"FAIL")],
        )

    def refused(self, request: server.Request, checked: AuthResult, basic: bool) -> bool:
        """Answer refused credentials (True), or nothing if they were right."""
        if checked.outcome is Outcome.LOCKED:
            self.too_many(request, "Too many failed logins, please try again later", checked.retry_after)
        elif checked.outcome is Outcome.DISABLED:
            self.answer(request, False, "User is disabled")
        elif not checked.ok or checked.user_id is None:
            if basic:
                self.challenge(request)
            else:
                self.answer(request, False, "Incorrect user ID or password")
        else:
            return False
        return True

    async def handle(self, request: server.Request) -> None:
        user = arg(request, "user")
        if user is not None:
            if not self.url_auth:
                return self.answer(request, False, "URL authentication update method is not enabled")
            password = arg(request, "pw")
            if not user:
                return self.answer(request, False, "Missing 'user' value")
            if password is None:
                return self.answer(request, False, "Missing 'pw' value")
            method = Method.HTTP_URL
        else:
            if not self.basic_auth:
                return self.answer(request, False, "Missing 'user' value")
            credentials = basic_credentials(request)
            if credentials is None:
                return self.challenge(request)
            user, password = credentials
            method = Method.HTTP_BASIC
        client = self.detector.detect(request)
        update = ClientUpdate(method, user, Password(password), None if client is None else str(client))
        offline = arg(request, "offline")
        problem = None  # told only to a client whose credentials are right
        if offline and offline[:1] in ("Y", "y"):
            update = attrs.evolve(update, offline=True)
        else:
            ttl = None
            ttl_text = arg(request, "ttl")
            addresses: list[IPAddress] = []
            if ttl_text:
                try:
                    ttl = validate_ttl(ttl_text)
                except ValidationError:
                    problem = "Invalid TTL value"
            if problem is None:
                try:
                    addresses, _ = parse_address_list(args(request, "ip"), strict=True)
                except ValidationError:
                    problem = "Invalid IP address"
            if problem is None and not addresses:
                if client is None:
                    problem = "Invalid IP address"
                addresses = [] if client is None else [client]
            update = attrs.evolve(update, addresses=tuple(addresses), ttl=ttl)
        basic = method is Method.HTTP_BASIC
        if problem is not None:
            word = "badttl" if problem == "Invalid TTL value" else "badaddress"
            if not self.refused(request, await self.auth.authenticate(update, word), basic):
                self.answer(request, False, problem)
            return
        outcome = await self.auth.update(update)
        if self.refused(request, outcome.auth, basic):
            return
        result = outcome.result
        assert result is not None  # no names asked: the write always runs
        if result.status == UpdateStatus.RATE_LIMITED:
            return self.too_many(request, _ERRORS[result.status], result.retry_after)
        if not result.ok:
            return self.answer(request, False, _ERRORS.get(result.status, result.message))
        if update.offline:
            return self.answer(request, True, "Offline")
        self.answer(request, True, ",".join(str(a) for a in update.addresses))
