"""
ACME DNS-01 challenge values over HTTP: the acme-dns API and lego's httpreq
API, under the HTTP root (where C{<base>ddns} is). Both only ever change a
user's challenge TXT values (L{Authenticator.write_txt}), never an address.

acme-dns (U{https://github.com/joohoi/acme-dns}), C{acme.acme_dns}:

 - C{POST <base>acme-dns/update}, headers C{X-Api-User} (the user id) and
   C{X-Api-Key} (a scoped ACME key's secret; the user's password too when
   C{acme.passwords} is on), body C{{"subdomain": "<user id>", "txt":
   "<value>"}} (keys in any case: lego's goacmedns sends C{SubDomain} and
   C{Txt}). Adds the value at C{_acme-challenge.<user id>.<suffix>}, which
   keeps the two newest values (a name and its wildcard), as acme-dns does.
   C{200 {"txt": "<value>"}}; errors C{{"error": "<code>"}} with acme-dns's
   codes: 401 C{forbidden}, 400 C{malformed_json_payload},
   C{bad_subdomain}, C{bad_txt}.
 - C{POST <base>acme-dns/register} (C{acme.acme_dns_register}; off: 404):
   with the user's password (HTTP Basic, or C{X-Api-User}/C{X-Api-Key}),
   a new scoped key for that existing user; never a new user. C{201} with
   acme-dns's fields (L{AcmeDnsRegisterResource}).

lego httpreq (U{https://go-acme.github.io/lego/dns/httpreq/}),
C{acme.httpreq}, with HTTP Basic (the user id and a scoped key's secret, or
the password when C{acme.passwords} is on):

 - C{POST <base>acme/present} and C{<base>acme/cleanup}, body
   C{{"fqdn": "_acme-challenge.<name>.", "value": "<value>"}} (the final dot
   optional, any case), where C{<name>} is one of the user's challenge names
   (L{Registry.challenge_bases}: the main name, each exact additional name,
   the base of each wildcard alias); or lego's C{HTTPREQ_MODE=RAW} body
   C{{"domain": "<name>", "token": "...", "keyAuth": "<key authorization>"}},
   whose value we compute (base64url of its SHA-256, unpadded: RFC 8555
   section 8.4). C{present} adds the value (at most four per name),
   C{cleanup} removes it. 200 C{{"fqdn": ..., "value": ...}}; errors 401
   (with C{WWW-Authenticate}), 400 (a bad body, name or value), 403 (a
   name that is not the user's).

Common to both: a switched-off API answers 404 like an unknown path; only
C{POST} is allowed (405 otherwise); bodies above L{MAX_BODY} get 413; a
locked-out source gets 429 with C{Retry-After} unchecked, and every wrong
secret counts towards the lockout (the seam, L{dyndns_plugin.authn}); too
many changes: 429; a store that fails: 503. Bodies of errors are JSON
C{{"error": "<code>"}}.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from twisted.web import http, server

from dyndns_plugin.acme import (
    ACME_DNS_KEEP,
    CHALLENGE_LABEL,
    Op,
    TXTEdit,
    challenge_name,
    validate_value,
)
from dyndns_plugin.authn import (
    TOO_MANY_REQUESTS,
    Authenticator,
    AuthResult,
    CredentialChecker,
    Outcome,
    authenticator_for,
    retry_header,
)
from dyndns_plugin.methods import Method
from dyndns_plugin.model import UpdateResult, UpdateStatus, ValidationError, normalize_name, normalize_user_id
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store import NoSuchUser, StoreError
from dyndns_plugin.web.base import AsyncResource
from dyndns_plugin.web.common import ClientAddressDetector, basic_credentials, finish, header

#: Bytes of request body accepted (a real one is under 200).
MAX_BODY = 4 * 1024
#: Scoped keys C{/acme-dns/register} makes at most per user.
MAX_REGISTERED_KEYS = 20
#: The challenge for a 401 of these APIs.
REALM = b'Basic realm="DynDNS ACME"'
JSON = b"application/json"

_PREFIX = CHALLENGE_LABEL + "."


class BadBody(ValueError):
    """The body is not a JSON object (or is too deeply nested to read)."""


def json_body(raw: bytes) -> dict[str, Any]:
    """
    The JSON object in C{raw}, its keys lower-cased (Go's C{encoding/json},
    which acme-dns uses, matches keys case-insensitively: goacmedns sends
    C{SubDomain}); a key spelled in lower case wins over other spellings.
    """
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadBody("not JSON") from None
    if not isinstance(value, dict):
        raise BadBody("not a JSON object")
    found: dict[str, Any] = {}
    for key, item in value.items():
        lowered = key.lower()
        if lowered not in found or key == lowered:
            found[lowered] = item
    return found


def raw_value(key_authorization: str) -> str:
    """The TXT value of a key authorization: base64url(SHA-256), no padding (RFC 8555 section 8.4)."""
    digest = hashlib.sha256(key_authorization.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _name(value: object) -> str | None:
    """C{value} as a host name (lower case, no final dot), or None."""
    if not isinstance(value, str):
        return None
    try:
        return normalize_name(value.strip(), "fqdn")
    except ValidationError:
        return None


class _AcmeResource(AsyncResource):
    """
    What both APIs share: the switch (off: 404), C{POST} only, the body
    bound, and JSON answers. C{switch} is the L{AcmeSettings} field,
    read at every request.
    """

    switch = ""
    method: Method = Method.ACME_DNS

    def __init__(
        self,
        service: DynDNSService,
        checker: CredentialChecker | Authenticator,
        detector: ClientAddressDetector,
    ) -> None:
        super().__init__()
        self.service = service
        self.auth = authenticator_for(checker, service)
        self.detector = detector

    def enabled(self) -> bool:
        return self.service.acme.allows(self.switch)

    async def handle(self, request: server.Request) -> None:
        if not self.enabled():
            return finish(request, b"not found\n", code=http.NOT_FOUND)
        if request.method != b"POST":
            return self.error(request, http.NOT_ALLOWED, "method_not_allowed", [(b"allow", b"POST")])
        content = request.content
        raw = b""
        if content is not None:
            content.seek(0)
            raw = content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return self.error(request, http.REQUEST_ENTITY_TOO_LARGE, "payload_too_large")
        client = self.detector.detect(request)
        await self.post(request, raw, None if client is None else str(client))

    async def post(self, request: server.Request, raw: bytes, source: str | None) -> None:  # pragma: no cover
        raise NotImplementedError

    # -- answers

    def answer(
        self,
        request: server.Request,
        body: dict[str, Any],
        code: int = http.OK,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        finish(request, json.dumps(body).encode("utf-8"), JSON, code, headers or [])

    def error(
        self, request: server.Request, code: int, error: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.answer(request, {"error": error}, code, headers)

    def forbidden(self, request: server.Request) -> None:
        """Refused credentials (401)."""
        self.error(request, http.UNAUTHORIZED, "forbidden")

    def refused(self, request: server.Request, checked: AuthResult) -> bool:
        """Answer refused credentials (True), or nothing if they were right."""
        if checked.outcome is Outcome.LOCKED:
            self.error(request, TOO_MANY_REQUESTS, "too_many_requests", [(b"retry-after", checked.retry_header())])
        elif checked.outcome is Outcome.DISABLED:
            self.error(request, http.FORBIDDEN, "disabled")
        elif not checked.ok or checked.user_id is None:
            self.forbidden(request)
        else:
            return False
        return True

    def store_failed(self, request: server.Request) -> None:
        self.error(request, http.SERVICE_UNAVAILABLE, "db_error", [(b"retry-after", b"5")])

    def written(self, request: server.Request, result: UpdateResult, body: dict[str, Any]) -> None:
        """The answer to C{write_txt}'s C{result} (C{body} if it succeeded)."""
        status = result.status
        if result.ok:
            self.answer(request, body)
        elif status is UpdateStatus.BAD_TXT:
            self.error(request, http.BAD_REQUEST, "bad_txt")
        elif status is UpdateStatus.RATE_LIMITED:
            headers = [(b"retry-after", retry_header(result.retry_after))]
            self.error(request, TOO_MANY_REQUESTS, "too_many_requests", headers)
        elif status is UpdateStatus.DISABLED:
            self.error(request, http.FORBIDDEN, "disabled")
        elif status is UpdateStatus.NO_SUCH_USER:
            self.forbidden(request)
        elif status is UpdateStatus.STORE_FAILED:
            self.store_failed(request)
        else:
            self.error(request, http.INTERNAL_SERVER_ERROR, status.value)

    async def check_acme(self, request: server.Request, user: str, secret: str, source: str | None) -> str | None:
        """
        The user id if C{secret} is one of C{user}'s scoped keys (or its
        password, if allowed); else None, the refusal answered.
        """
        try:
            checked = await self.auth.check_acme(self.method, user, secret, source)
        except StoreError:
            self.store_failed(request)
            return None
        if self.refused(request, checked):
            return None
        return checked.user_id

    async def checked_body(
        self, request: server.Request, credentials: tuple[str, str] | None, raw: bytes, source: str | None
    ) -> tuple[str, dict[str, Any]] | None:
        """
        The user and the JSON object of a request whose credentials pass
        (checked first, as acme-dns does: a stranger's bad body is a 401);
        None once the error is answered.
        """
        if credentials is None:
            self.forbidden(request)
            return None
        user_id = await self.check_acme(request, credentials[0], credentials[1], source)
        if user_id is None:
            return None
        try:
            return user_id, json_body(raw)
        except BadBody as e:
            self.auth.refused(self.method, user_id, source, "badrequest", str(e))
            self.error(request, http.BAD_REQUEST, "malformed_json_payload")
            return None


class AcmeDnsUpdateResource(_AcmeResource):
    """C{POST <base>acme-dns/update}: the acme-dns API's one write."""

    switch = "acme_dns"
    method = Method.ACME_DNS

    async def post(self, request: server.Request, raw: bytes, source: str | None) -> None:
        user, secret = header(request, "x-api-user"), header(request, "x-api-key")
        checked = await self.checked_body(request, (user, secret) if user and secret else None, raw, source)
        if checked is None:
            return
        user_id, body = checked
        subdomain = body.get("subdomain")
        if not isinstance(subdomain, str) or subdomain.strip().lower() != user_id:
            self.auth.refused(self.method, user_id, source, "nohost", "subdomain is not the user's")
            return self.error(request, http.BAD_REQUEST, "bad_subdomain")
        try:
            value = validate_value(body.get("txt"))
        except ValidationError as e:
            self.auth.refused(self.method, user_id, source, "badtxt", e.message)
            return self.error(request, http.BAD_REQUEST, "bad_txt")
        edit = TXTEdit(Op.ADD, self.service.registry.main_name(user_id), value, keep=ACME_DNS_KEEP)
        result = await self.auth.write_txt(self.method, user_id, [edit], source)
        self.written(request, result, {"txt": value})


class AcmeDnsRegisterResource(_AcmeResource):
    """
    C{POST <base>acme-dns/register}: a new scoped key for an existing user,
    proven by the user's password (HTTP Basic, or C{X-Api-User} and
    C{X-Api-Key}; a scoped key cannot make another). Served only when
    both C{acme.acme_dns} and C{acme.acme_dns_register} are on. The body
    may be empty or acme-dns's C{{"allowfrom": [...]}}: a non-empty
    C{allowfrom} is refused (400 C{allowfrom_not_supported}), as we cannot
    honour it. C{201}::

        {"username": "<user id>", "password": "<key secret>",
         "fulldomain": "_acme-challenge.<user id>.<suffix>",
         "subdomain": "<user id>", "allowfrom": []}

    C{fulldomain} is what acme-dns clients tell their users to point a
    CNAME at (C{_acme-challenge.<their name>} CNAME C{<fulldomain>}), and
    the name where the TXT record lives. In acme-dns that name is
    C{<uuid>.<acme-dns domain>} itself, without a C{_acme-challenge} label;
    here the TXT lives at C{_acme-challenge.<user id>.<suffix>} (the user's
    own challenge name, which DNS-01 for the user's main name needs
    anyway), so that is C{fulldomain}. C{subdomain} is the user id: what
    C{/update} wants in its body. The secret is shown only here; only its
    SHA-256 is stored.
    """

    switch = "acme_dns"
    method = Method.ACME_DNS

    def enabled(self) -> bool:
        acme = self.service.acme
        return acme.allows("acme_dns") and acme.allows("acme_dns_register")

    async def post(self, request: server.Request, raw: bytes, source: str | None) -> None:
        credentials = basic_credentials(request)
        if credentials is None:
            user, password = header(request, "x-api-user"), header(request, "x-api-key")
            credentials = (user, password) if user and password else None
        if credentials is None:
            return self.error(request, http.UNAUTHORIZED, "forbidden", [(b"www-authenticate", REALM)])
        checked = await self.auth.password(self.method, normalize_user_id(credentials[0]), credentials[1], source)
        if self.refused(request, checked):
            return
        assert checked.user_id is not None
        user_id = checked.user_id
        if raw.strip():
            try:
                body = json_body(raw)
            except BadBody as e:
                self.auth.refused(self.method, user_id, source, "badrequest", str(e))
                return self.error(request, http.BAD_REQUEST, "malformed_json_payload")
            if body.get("allowfrom") not in (None, []):
                self.auth.refused(self.method, user_id, source, "badrequest", "allowfrom is not supported")
                return self.error(request, http.BAD_REQUEST, "allowfrom_not_supported")
        keys = self.service.acme_keys
        try:
            if len(await keys.of(user_id)) >= MAX_REGISTERED_KEYS:
                self.auth.refused(self.method, user_id, source, "badrequest", "too many ACME keys")
                return self.error(request, http.FORBIDDEN, "too_many_keys")
            key, secret = await keys.add(user_id, "acme-dns register")
        except NoSuchUser:  # removed while we checked
            return self.forbidden(request)
        except StoreError:
            return self.store_failed(request)
        self.service.audit.admin(user_id, "acme-key-add", source, "ok", user_id, method=self.method, key=key.key_id)
        main = self.service.registry.main_name(user_id)
        self.answer(
            request,
            {
                "username": user_id,
                "password": secret,
                "fulldomain": challenge_name(main),
                "subdomain": user_id,
                "allowfrom": [],
            },
            http.CREATED,
        )


class HttpreqResource(_AcmeResource):
    """
    C{POST <base>acme/present} (C{op} ADD) or C{<base>acme/cleanup}
    (C{op} REMOVE): lego's httpreq provider, both of its modes.
    """

    switch = "httpreq"
    method = Method.ACME_HTTPREQ

    def __init__(
        self,
        service: DynDNSService,
        checker: CredentialChecker | Authenticator,
        detector: ClientAddressDetector,
        op: Op,
    ) -> None:
        super().__init__(service, checker, detector)
        self.op = op

    def forbidden(self, request: server.Request) -> None:
        self.error(request, http.UNAUTHORIZED, "forbidden", [(b"www-authenticate", REALM)])

    async def post(self, request: server.Request, raw: bytes, source: str | None) -> None:
        checked = await self.checked_body(request, basic_credentials(request), raw, source)
        if checked is None:
            return
        user_id, body = checked
        try:
            base, value = self.parse(body)
        except ValidationError as e:
            self.auth.refused(self.method, user_id, source, "badrequest", e.message)
            return self.error(request, http.BAD_REQUEST, f"bad_{e.field}")
        if base not in self.service.registry.challenge_bases(user_id):
            self.auth.refused(self.method, user_id, source, "nohost", f"{challenge_name(base)} is not the user's")
            return self.error(request, http.FORBIDDEN, "not_your_name")
        result = await self.auth.write_txt(self.method, user_id, [TXTEdit(self.op, base, value)], source)
        self.written(request, result, {"fqdn": challenge_name(base) + ".", "value": value})

    @staticmethod
    def parse(body: dict[str, Any]) -> tuple[str, str]:
        """
        The name (C{<name>} of C{_acme-challenge.<name>}) and the value of
        either mode's body; a L{ValidationError} naming the bad field.
        """
        if "fqdn" in body or "value" in body:
            fqdn = _name(body.get("fqdn"))
            if fqdn is None or not fqdn.startswith(_PREFIX) or "." not in fqdn[len(_PREFIX) :]:
                raise ValidationError("fqdn", "must be _acme-challenge.<name>")
            return fqdn[len(_PREFIX) :], validate_value(body.get("value"), "value")
        # HTTPREQ_MODE=RAW: lego sends the identifier (a wildcard's without "*.").
        domain = body.get("domain")
        if isinstance(domain, str) and domain.startswith("*."):
            domain = domain[2:]
        name = _name(domain)
        if name is None or "." not in name or name.startswith(_PREFIX):
            raise ValidationError("domain", "must be a host name")
        key_authorization = body.get("keyauth")
        if not isinstance(key_authorization, str) or not key_authorization:
            raise ValidationError("keyauth", "must be the key authorization")
        return name, raw_value(key_authorization)
