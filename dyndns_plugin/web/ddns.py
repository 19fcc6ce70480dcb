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

from twisted.cred.error import UnauthorizedLogin
from twisted.web import http, server

from dyndns_plugin.auth import DisabledUser, PasswordChecker
from dyndns_plugin.model import UpdateStatus, ValidationError, validate_ttl
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.web.base import AsyncResource, parse_address_list
from dyndns_plugin.web.common import (
    ClientAddressDetector,
    arg,
    args,
    basic_credentials,
    finish,
)

REALM = b'Basic realm="DynDNS Service"'


def _spell_result_header() -> None:
    """
    Send the header as the original documents it, C{X-DynDNS-Result}:
    Twisted would write C{X-Dyndns-Result} (names are case-insensitive, so
    this is cosmetic; the hook is private, hence the guard).
    """
    try:
        from twisted.web.http_headers import _NameEncoder

        _NameEncoder._caseMappings[b"X-Dyndns-Result"] = b"X-DynDNS-Result"
    except (ImportError, AttributeError, TypeError):  # pragma: no cover
        pass


_spell_result_header()

_ERRORS = {
    UpdateStatus.NO_SUCH_USER: "Unknown user ID",
    UpdateStatus.DISABLED: "User is disabled",
    UpdateStatus.BAD_ADDRESS: "Invalid IP address",
    UpdateStatus.STORE_FAILED: "Server error, please try again later",
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
        checker: PasswordChecker,
        detector: ClientAddressDetector,
        *,
        url_auth: bool = True,
        basic_auth: bool = True,
    ) -> None:
        super().__init__()
        self.service = service
        self.checker = checker
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

    def challenge(self, request: server.Request) -> None:
        body = b"<html><head><title>Unauthorized</title></head><body><h1>Unauthorized</h1></body></html>\n"
        finish(
            request, body, b"text/html; charset=utf-8", http.UNAUTHORIZED,
            headers=[(b"www-authenticate", REALM), (b"x-dyndns-result", b"FAIL")],
        )

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
            method = "http-url"
        else:
            if not self.basic_auth:
                return self.answer(request, False, "Missing 'user' value")
            credentials = basic_credentials(request)
            if credentials is None:
                return self.challenge(request)
            user, password = credentials
            method = "http-basic"
        try:
            user_id = await self.checker.check(user, password)
        except DisabledUser:
            return self.answer(request, False, "User is disabled")
        except UnauthorizedLogin:
            self.service.auth_failed(method)
            if method == "http-basic":
                return self.challenge(request)
            return self.answer(request, False, "Incorrect user ID or password")

        client = self.detector.detect(request)
        client_text = None if client is None else str(client)
        offline = arg(request, "offline")
        if offline and offline[:1] in ("Y", "y"):
            result = await self.service.set_offline(user_id, method, client_text)
            if result.ok:
                return self.answer(request, True, "Offline")
            return self.answer(request, False, _ERRORS.get(result.status, result.message))

        ttl = None
        ttl_text = arg(request, "ttl")
        if ttl_text:
            try:
                ttl = validate_ttl(ttl_text)
            except ValidationError:
                return self.answer(request, False, "Invalid TTL value")
        try:
            addresses, _ = parse_address_list(args(request, "ip"), strict=True)
        except ValidationError:
            return self.answer(request, False, "Invalid IP address")
        if not addresses:
            if client is None:
                return self.answer(request, False, "Invalid IP address")
            addresses = [client]
        result = await self.service.update(user_id, addresses, ttl, method, client_text)
        if not result.ok:
            return self.answer(request, False, _ERRORS.get(result.status, result.message))
        self.answer(request, True, ",".join(str(a) for a in addresses))
