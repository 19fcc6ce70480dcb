"""
The admin listener: a JSON API over the users and their state, the status
page and the metrics, behind authentication; only the health check is open.

Routes (see L{openapi_document} for the full contract, which the tests check
every answer against):

    GET  /api/state[?limit=N[&after=ID]]   every user's state, or one page (alias /pluginstate)
    GET  /api/config                    settings + users, with an ETag (alias /getpluginconfig)
    PUT  /api/config                    replace all users atomically, If-Match required
                                        (alias /updatepluginconfig)
    GET|PUT|PATCH|DELETE /api/users/ID  one user (a sign-up site adds one without the rest)
    POST /api/users/ID/offline          take a user offline
    GET  /api/users/ID/txt              the user's ACME challenge values
    PUT|DELETE /api/users/ID/txt/NAME   add one value at NAME; remove one (?value=) or all
    GET|POST /api/users/ID/acme-keys    the user's scoped ACME keys; a new one (its secret shown once)
    DELETE /api/users/ID/acme-keys/KEY  revoke a key
    GET  /api/openapi.json              the OpenAPI 3.1 document
    GET  /status, /status.js, /metrics  mounted resources (status page, Prometheus)
    GET  /health                        200 "ok" when the store answers, else 503;
                                        no credentials (a container's HEALTHCHECK)

Authentication is HTTP Basic against C{[admin] users} (scrypt hashes, checked
by the same L{PasswordChecker} as every update method) or a bearer token
whose SHA-256 digest is in C{[admin] tokens}. Requests that change anything
must be C{application/json}, which a browser cannot send cross-site without
a CORS preflight we never grant (no CSRF through a logged-in browser).

C{build_admin_site(service, settings, extra)} builds the Site; C{extra}
maps paths (C{b"status"}, C{b"metrics"}) to resources mounted behind the
same authentication.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Mapping

import attrs
import dns.rdatatype
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, resource, server

from dyndns_plugin.acme import Op, TXTEdit, challenge_name, validate_value
from dyndns_plugin.audit import state_fields
from dyndns_plugin.auth import PasswordChecker
from dyndns_plugin.authn import TOO_MANY_REQUESTS, Authenticator, AuthResult, Outcome
from dyndns_plugin.config import Settings
from dyndns_plugin.document import (
    FORMAT,
    VERSION,
    format_time,
    key_entry,
    parse_document,
    txt_entries,
    user_from_dict,
    user_to_dict,
)
from dyndns_plugin.methods import Method
from dyndns_plugin.model import UpdateStatus, User, ValidationError, normalize_user_id
from dyndns_plugin.registry import Registry
from dyndns_plugin.replication.zone_records import records_view
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.service.slices import each_in_slices
from dyndns_plugin.store import NameTaken, NoSuchUser, StoreError, UserExists
from dyndns_plugin.web.common import DynDNSRequest, basic_credentials, header
from dyndns_plugin.web.jsonbody import NotJSON, parse_json_body
from dyndns_plugin.web.statelist import Pieces, PiecesProducer, encoded_entries, state_document

log = Logger()

JSON = b"application/json; charset=utf-8"
#: An admin replaces whole configurations: allow far more than an update.
MAX_ADMIN_BODY = 32 * 1024 * 1024
#: The most users one page of C{/api/state} holds (C{?limit=}).
MAX_PAGE = 10_000
REALM = "DynDNS admin"
METHOD = Method.ADMIN


class ApiError(Exception):
    def __init__(self, code: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class AdminAuth:
    """
    Who may use the admin listener: Basic credentials of C{users} (name ->
    scrypt hash) or bearer tokens whose SHA-256 hex digest is in C{tokens}.
    With a C{service}, failures count into its limiter like every update
    method's, and a locked-out source is refused (429) before any hash.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        tokens: tuple[str, ...],
        reactor: Any = None,
        service: DynDNSService | None = None,
    ) -> None:
        self.checker = PasswordChecker(
            {name: User(name, password_hash=digest) for name, digest in users.items()},
            reactor=reactor,
        )
        self.tokens = tuple(bytes.fromhex(t) for t in tokens)
        self.authn = Authenticator(self.checker, service) if service is not None else None

    async def authenticate(self, request: server.Request) -> str | AuthResult | None:
        """
        The admin's name (C{"token"} for a bearer token); None for no or
        wrong credentials; a LOCKED L{AuthResult} for a locked-out source.
        """
        source = None
        if self.authn is not None:
            source = peer_address(request)
            refused = self.authn.locked(METHOD, source, None)
            if refused is not None:
                return await self.authn.slowly(refused)
        value = header(request, "authorization") or ""
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() == "bearer":
            digest = hashlib.sha256(rest.strip().encode("utf-8", "replace")).digest()
            ok = False
            for known in self.tokens:
                ok |= hmac.compare_digest(digest, known)
            if self.authn is not None:
                if ok:
                    self.authn.succeeded(source, "token")
                else:
                    self.authn.failed(METHOD, source, None)
            return "token" if ok else None
        creds = basic_credentials(request)
        if creds is None:
            return None
        if self.authn is not None:
            checked = await self.authn.password(METHOD, creds[0], creds[1], source)
            if checked.outcome is Outcome.LOCKED:
                return checked
            return checked.user_id if checked.ok else None
        try:
            return str(await self.checker.check(*creds))
        except Exception:
            return None


def peer_address(request: server.Request) -> str | None:
    """The admin client's address as text (None if not an IP peer)."""
    peer = getattr(request.getClientAddress(), "host", None)
    return peer if isinstance(peer, str) else None


def admin_action(method: bytes, route: list[str], registry: Registry) -> tuple[str, str | None] | None:
    """
    The audited action of a request, and the user it is about (None: all
    of them); None for a read.
    """
    if method in (b"GET", b"HEAD"):
        return None
    if route in (["updatepluginconfig"], ["api", "config"]):
        return "config-replace", None
    if len(route) == 4 and route[:2] == ["api", "users"] and route[3] == "offline":
        return "user-offline", route[2]
    if len(route) in (4, 5) and route[:2] == ["api", "users"] and route[3] in ("txt", "acme-keys"):
        user_id = normalize_user_id(route[2])
        if route[3] == "txt":
            return ("txt-set" if method == b"PUT" else "txt-clear"), user_id
        return ("acme-key-add" if method == b"POST" else "acme-key-revoke"), user_id
    if len(route) == 3 and route[:2] == ["api", "users"]:
        if method == b"DELETE":
            return "user-remove", route[2]
        return ("user-change" if registry.has_user(route[2]) else "user-add"), route[2]
    if len(route) in (4, 5) and route[:2] == ["api", "zones"]:
        return "zone-clear", None
    return None


def state_entry(service: DynDNSService, user: User) -> dict[str, Any]:
    """One row of C{/api/state}: what the user's names serve now, and why."""
    registry = service.registry
    state = registry.states.get(user.id)
    answer = registry.answer_for_user(user.id)
    addresses = answer.addresses if answer is not None else ()
    v4 = [str(a) for a in addresses if a.version == 4]
    v6 = [str(a) for a in addresses if a.version == 6]
    if user.disabled:
        status = "disabled"
    else:
        status = state.status if state is not None else "never"
    return {
        "id": user.id,
        "state": status,
        "ipv4": v4[0] if v4 else None,
        "ipv6": v6[0] if v6 else None,
        "ttl": answer.ttl if answer is not None and addresses else None,
        "last_update": format_time(state.updated_at) if state is not None else None,
        "method": state.method if state is not None else None,
        "client_address": state.client_address if state is not None else None,
        "names": list(registry.names_of(user.id)),
        # Most users hold no challenge values: one check, no clock read.
        "txt": txt_entries(state.txt, service.clock.seconds()) if state is not None and state.txt else [],
    }


def settings_view(settings: Settings) -> dict[str, Any]:
    """The effective settings, read-only, with no secret in them."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, (str, int, float, bool)) or value is None:
            return value
        return str(value)

    data = plain(attrs.asdict(settings, recurse=True))
    for key in data["dns"]["transfer_keys"]:
        key["secret"] = None  # a raw secret, not a verifier
    for zone in data["dns"]["zones"]:
        for key in zone["update_keys"]:
            key["secret"] = None
    data["admin"]["tokens"] = ["sha256:" + t for t in settings.admin.tokens]
    data.pop("path", None)
    return data


class AdminResource(resource.Resource):
    """The whole admin tree as one leaf: authenticate, then route."""

    isLeaf = True

    def __init__(
        self,
        service: DynDNSService,
        settings: Settings,
        auth: AdminAuth,
        extra: Mapping[bytes, resource.Resource] | None = None,
    ) -> None:
        super().__init__()
        self.service = service
        self.settings = settings
        self.auth = auth
        self.extra = dict(extra or {})
        self._config_lock = defer.DeferredLock()
        #: The zone publisher (host zones for /api/zones and /api/state), once there is one.
        self.publisher: Any = None

    def render(self, request: server.Request) -> Any:
        d = defer.ensureDeferred(self._handle(request))
        d.addErrback(self._crashed, request)
        return server.NOT_DONE_YET

    def _crashed(self, failure: Failure, request: server.Request) -> None:
        log.failure("admin request failed", failure)
        self._json(request, {"error": "server error", "field": None}, http.INTERNAL_SERVER_ERROR)

    # -- plumbing

    def _json(
        self,
        request: server.Request,
        body: Any,
        code: int = http.OK,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        pieces: Pieces | None = None,
    ) -> None:
        """C{body} as JSON (or C{pieces}: the JSON already encoded, written piece by piece)."""
        if request.finished or getattr(request, "_disconnected", False):
            return
        if pieces is None:
            payload = b"" if code == http.NO_CONTENT else json.dumps(body, indent=1).encode() + b"\n"
            pieces = Pieces().framed(payload, b"")
        length = pieces.size
        request.setResponseCode(code)
        if length:
            request.setHeader(b"content-type", JSON)
        request.setHeader(b"content-length", b"%d" % length)
        request.setHeader(b"cache-control", b"no-store")
        for name, value in headers:
            request.setHeader(name, value)
        if request.method != b"HEAD" and pieces:
            PiecesProducer(request, pieces).start()  # finishes the request
            return
        if request.method != b"HEAD":
            request.write(pieces.head + pieces.tail)
        request.finish()

    async def _body(self, request: server.Request) -> Any:
        """The body as JSON; a large one parsed between reactor turns (L{parse_json_body})."""
        content_type = (header(request, "content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise ApiError(http.UNSUPPORTED_MEDIA_TYPE, "the body must be application/json")
        try:
            return await parse_json_body(request.content)
        except NotJSON as e:
            raise ApiError(http.BAD_REQUEST, f"the body is not JSON: {e}") from None

    async def _handle(self, request: server.Request) -> None:
        if request.path == b"/health":
            return await self._health(request)
        who = await self.auth.authenticate(request)
        if isinstance(who, AuthResult):
            self._json(
                request,
                {"error": "too many failed logins, try again later", "field": None},
                TOO_MANY_REQUESTS,
                ((b"retry-after", who.retry_header()),),
            )
            return
        if who is None:
            if header(request, "authorization") and self.auth.authn is None:
                self.service.auth_failed(METHOD)
            self._json(
                request,
                {"error": "authentication required", "field": None},
                http.UNAUTHORIZED,
                ((b"www-authenticate", f'Basic realm="{REALM}"'.encode()),),
            )
            return
        parts = [p for p in request.path.split(b"/") if p]
        route = [p.decode("utf-8", "replace") for p in parts]
        action = admin_action(request.method, route, self.service.registry)
        old = self.service.registry.state(action[1]) if action is not None and action[1] is not None else None
        try:
            if len(parts) == 1 and parts[0] in self.extra:
                await self._extra(request, self.extra[parts[0]])
                return
            await self._route(request, who, parts)
        except ApiError as e:
            self._json(request, {"error": e.message, "field": e.field}, e.code)
            if action is not None:
                self._audit(request, who, action, old, "error", status=e.code, reason=e.message)
            return
        if action is not None:
            self._audit(request, who, action, old, "ok")

    def _audit(
        self,
        request: server.Request,
        who: str,
        action: tuple[str, str | None],
        old: Any,
        result: str,
        **details: Any,
    ) -> None:
        """The audit event of an admin write: who, from where, what, on whom, and the outcome."""
        name, user_id = action
        registry = self.service.registry
        if user_id is None:
            details["users"] = len(registry.users)
        else:
            details.update(state_fields("old", old))
            details.update(state_fields("new", registry.state(user_id)))
        self.service.audit.admin(who, name, peer_address(request), result, user_id, **details)

    async def _health(self, request: server.Request) -> None:
        """
        C{GET /health}, without credentials (a health check has none): 200
        C{ok} when the store answers, 503 otherwise. It tells nothing else.
        """
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            code, body = http.NOT_ALLOWED, b"method not allowed\n"
        elif await self.service.store_answers():
            code, body = http.OK, b"ok\n"
        else:
            code, body = http.SERVICE_UNAVAILABLE, b"store not answering\n"
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(body))
        request.setHeader(b"cache-control", b"no-store")
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    async def _extra(self, request: server.Request, child: resource.Resource) -> None:
        result = child.render(request)
        if result is server.NOT_DONE_YET:
            return
        # As server.Request.render does: a Content-Length, never chunked.
        request.setHeader(b"content-length", b"%d" % len(result))
        if request.method != b"HEAD":
            request.write(result)
        request.finish()

    def _allow(self, request: server.Request, *methods: bytes) -> None:
        if request.method == b"HEAD" and b"GET" in methods:
            return
        if request.method not in methods:
            request.setHeader(b"allow", b", ".join(methods))
            raise ApiError(http.NOT_ALLOWED, f"method {request.method.decode()} not allowed here")

    async def _route(self, request: server.Request, who: str, parts: list[bytes]) -> None:
        route = [p.decode("utf-8", "replace") for p in parts]
        if route in (["api", "state"], ["pluginstate"]):
            self._allow(request, b"GET")
            return self._json(request, None, pieces=await self._state(request))
        if route == ["updatepluginconfig"]:
            self._allow(request, b"PUT", b"POST")
            return await self._replace_config(request, who)
        if route in (["api", "config"], ["getpluginconfig"]):
            if route == ["api", "config"]:
                self._allow(request, b"GET", b"PUT")
            else:
                self._allow(request, b"GET")
            if request.method == b"PUT":
                return await self._replace_config(request, who)
            etag, pieces = await self._config()
            return self._json(request, None, headers=((b"etag", etag.encode()),), pieces=pieces)
        if route == ["api", "openapi.json"]:
            self._allow(request, b"GET")
            return self._json(request, openapi_document())
        if route == ["api", "zones"]:
            self._allow(request, b"GET")
            return self._json(request, {"zones": self._zones()})
        if len(route) in (4, 5) and route[:2] == ["api", "zones"]:
            self._allow(request, b"DELETE")
            return self._json(request, await self._clear_zone_name(route[2], route[3], route[4:]))
        if len(route) in (3, 4, 5) and route[:2] == ["api", "users"]:
            user_id = normalize_user_id(route[2])
            if len(route) == 3:
                return await self._user(request, who, user_id)
            leaf = route[4] if len(route) == 5 else None
            if leaf is not None and route[3] not in ("txt", "acme-keys"):
                raise ApiError(http.NOT_FOUND, "no such resource")
            if route[3] == "txt":
                return await self._txt(request, user_id, leaf)
            if route[3] == "acme-keys":
                return await self._acme_keys(request, user_id, leaf)
            if route[3] != "offline":
                raise ApiError(http.NOT_FOUND, "no such resource")
            self._allow(request, b"POST")
            await self._body(request)
            return await self._offline(request, user_id)
        raise ApiError(http.NOT_FOUND, "no such resource")

    # -- host zones

    def _zones(self) -> list[dict[str, Any]]:
        """Each host zone: its serial, whether it takes updates, and what updates set in it."""
        publisher = self.publisher
        if publisher is None or not publisher.ready:
            return []
        updatable = {zone.origin for zone in self.settings.dns.zones if zone.updatable}
        return [
            {
                "origin": zone.origin,
                "serial": zone.serial,
                "updates": zone.origin in updatable,
                "updated": records_view(zone.updated),
            }
            for zone in publisher.zones[1:]
        ]

    async def _clear_zone_name(self, origin: str, name: str, rdtype: list[str]) -> dict[str, Any]:
        origin, name = origin.lower().rstrip("."), name.lower().rstrip(".")
        zones = {zone["origin"]: zone for zone in self._zones()}
        if origin not in zones:
            raise ApiError(http.NOT_FOUND, f"{origin} is not a host zone of this server")
        if name != origin and not name.endswith("." + origin):
            raise ApiError(http.NOT_FOUND, f"{name} is not in {origin}")
        kind = None
        if rdtype:
            try:
                kind = int(dns.rdatatype.from_text(rdtype[0]))
            except Exception:
                raise ApiError(http.BAD_REQUEST, f"{rdtype[0]!r} is not a record type", "type") from None
        try:
            await self.publisher.clear_updates(origin, name, kind)
        except Exception as e:
            log.failure("clearing {name} in {origin} failed", origin=origin, name=name)
            raise ApiError(http.SERVICE_UNAVAILABLE, f"the store failed: {e}") from None
        return {zone["origin"]: zone for zone in self._zones()}[origin]

    # -- state and config

    async def _state(self, request: server.Request) -> Pieces:
        """
        Every user, or with C{limit} (1..L{MAX_PAGE}) one page of them after
        the id C{after}, plus C{next}; built a slice per reactor turn.
        """
        limit: int | None = None
        query: dict[bytes, list[bytes]] = request.args or {}
        raw_limit, raw_after = query.get(b"limit"), query.get(b"after")
        if raw_limit is not None:
            text = raw_limit[0].decode("ascii", "replace")
            if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
                raise ApiError(http.BAD_REQUEST, f"a whole number from 1 to {MAX_PAGE}", "limit")
            limit = int(text)
        after = None if raw_after is None else raw_after[0].decode("utf-8", "replace")
        if after is not None and limit is None:
            raise ApiError(http.BAD_REQUEST, "only with limit", "after")
        users = self.service.registry.users

        def entry(user_id: str) -> dict[str, Any] | None:
            user = users.get(user_id)
            return None if user is None else state_entry(self.service, user)

        # The host zones' updated RRsets, when any zone takes updates.
        zones = self._zones if any(z.updatable for z in self.settings.dns.zones) else None
        return await state_document(self.service.registry, entry, after, limit, zones=zones)

    async def _config(self) -> tuple[str, Pieces]:
        """
        The ETag and the encoded body of C{GET /api/config}: the users are
        read and encoded a slice per reactor turn, as C{/api/state} is
        (L{encoded_entries}; seconds of work at 1,000,000 users), and the
        ETag hashes the canonical form of the same slices. A user that
        changes meanwhile shows as it is when its slice is read.
        """
        registry = self.service.registry
        users, states = registry.users, registry.states
        # The canonical form: json.dumps(export_document(...), sort_keys=True, separators=(",", ":")).
        canonical = hashlib.sha256(b'{"format":%s,"users":[' % json.dumps(FORMAT).encode())
        separator = b""

        def entry(user_id: str) -> dict[str, Any] | None:
            user = users.get(user_id)
            return None if user is None else user_to_dict(user, states.get(user_id))

        def hash_slice(entries: list[dict[str, Any]]) -> None:
            nonlocal separator
            canonical.update(separator + json.dumps(entries, sort_keys=True, separators=(",", ":"))[1:-1].encode())
            separator = b","

        body, _, _ = await encoded_entries(registry, entry, depth=2, each=hash_slice)
        canonical.update(b'],"version":%d}' % VERSION)
        # The body: json.dumps({"settings": ..., "users": export_document(...)}, indent=1).
        empty = {"settings": settings_view(self.settings), "users": {"format": FORMAT, "version": VERSION, "users": []}}
        before, after = json.dumps(empty, indent=1).rsplit("[]", 1)
        if not body:
            pieces = Pieces().framed((before + "[]" + after + "\n").encode(), b"")
        else:
            pieces = body.framed((before + "[\n").encode(), ("\n  ]" + after + "\n").encode())
        return '"' + canonical.hexdigest()[:32] + '"', pieces

    async def _replace_config(self, request: server.Request, who: str) -> None:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(http.BAD_REQUEST, "must be a JSON object", "document")
        unknown = sorted(set(body) - {"settings", "users"})
        if unknown:
            raise ApiError(http.BAD_REQUEST, "unknown field", unknown[0])
        if "users" not in body:
            raise ApiError(http.BAD_REQUEST, "is required", "users")
        if "settings" in body:
            self._check_settings(body["settings"])
        try:
            # Passwords in the document are hashed (scrypt) off the reactor thread.
            users, states = await self.auth.checker.in_pool(parse_document, body["users"])
        except ValidationError as e:
            raise ApiError(http.BAD_REQUEST, e.message, _users_field(e.field)) from None
        # The service checks again; here the field can name the user. In
        # slices of reactor time: 50,000 users took ~0.1 s.
        checked = 0

        def check(user: User) -> None:
            nonlocal checked
            self.service.check_user(user)
            checked += 1

        try:
            await each_in_slices(users, check)
        except ValidationError as e:
            raise ApiError(http.BAD_REQUEST, e.message, f"users.users[{checked}].{e.field}") from None
        expected = header(request, "if-match")
        if expected is None:
            raise ApiError(428, "If-Match with the ETag of GET /api/config is required", "If-Match")
        await self._config_lock.acquire()
        try:
            etag, _ = await self._config()
            if expected.strip() not in (etag, "*"):
                raise ApiError(
                    http.PRECONDITION_FAILED, "the configuration changed since you read it (ETag differs)", "If-Match"
                )
            try:
                await self.service.replace_users(users, states)
            except ValidationError as e:
                raise ApiError(http.BAD_REQUEST, e.message, "users." + e.field) from None
            except NameTaken as e:
                raise ApiError(http.CONFLICT, str(e), "users") from None
            except StoreError as e:
                raise ApiError(http.SERVICE_UNAVAILABLE, f"store failure: {e}") from None
            new_etag, pieces = await self._config()
        finally:
            self._config_lock.release()
        self._json(request, None, headers=((b"etag", new_etag.encode()),), pieces=pieces)

    def _check_settings(self, given: Any) -> None:
        current = settings_view(self.settings)
        if not isinstance(given, dict):
            raise ApiError(http.BAD_REQUEST, "must be an object", "settings")
        for key in sorted(set(given) | set(current)):
            if given.get(key) != current.get(key):
                raise ApiError(
                    http.BAD_REQUEST,
                    "settings are read-only here: change the configuration file and restart",
                    f"settings.{key}",
                )

    # -- one user

    async def _user(self, request: server.Request, who: str, user_id: str) -> None:
        self._allow(request, b"GET", b"PUT", b"PATCH", b"DELETE")
        registry = self.service.registry
        current = registry.users.get(user_id)
        if request.method in (b"GET", b"HEAD"):
            if current is None:
                raise ApiError(http.NOT_FOUND, f"no user {user_id!r}", "id")
            return self._json(request, self._user_body(current))
        if request.method == b"DELETE":
            try:
                await self.service.remove_user(user_id)
            except NoSuchUser:
                raise ApiError(http.NOT_FOUND, f"no user {user_id!r}", "id") from None
            except StoreError as e:
                raise ApiError(http.SERVICE_UNAVAILABLE, f"store failure: {e}") from None
            return self._json(request, None, http.NO_CONTENT)
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(http.BAD_REQUEST, "must be a JSON object", "user")
        if normalize_user_id(body.get("id", user_id)) != user_id:
            raise ApiError(http.BAD_REQUEST, "does not match the URL", "id")
        if request.method == b"PATCH":
            if current is None:
                raise ApiError(http.NOT_FOUND, f"no user {user_id!r}", "id")
            if "state" in body:
                raise ApiError(http.BAD_REQUEST, "cannot be patched (use the update methods)", "state")
            merged = user_to_dict(current)
            if "password" in body:
                # Every verifier of the old password goes: a user who had an
                # MD5 verifier (GnuDIP) gets one of the new password.
                merged.pop("password_hash")
                merged["gnudip"] = merged.pop("md5_verifier") is not None
            merged.update(body)
            body = merged
        try:
            user, state = await self.auth.checker.in_pool(user_from_dict, {**body, "id": user_id})
        except ValidationError as e:
            raise ApiError(http.BAD_REQUEST, e.message, e.field.removeprefix("user.")) from None
        try:
            code = http.CREATED if current is None else http.OK
            if state is not None:
                # the user and its state in one transaction
                await self.service.import_users([user], [state])
            elif current is None:
                await self.service.add_user(user)
            else:
                await self.service.put_user(user)
        except ValidationError as e:
            raise ApiError(http.BAD_REQUEST, e.message, e.field) from None
        except (NameTaken, UserExists) as e:
            raise ApiError(http.CONFLICT, str(e), "hostnames" if isinstance(e, NameTaken) else "id") from None
        except StoreError as e:
            raise ApiError(http.SERVICE_UNAVAILABLE, f"store failure: {e}") from None
        self._json(request, self._user_body(self.service.registry.users[user_id]), code)

    def _user_body(self, user: User) -> dict[str, Any]:
        return user_to_dict(user, self.service.registry.states.get(user.id))

    async def _offline(self, request: server.Request, user_id: str) -> None:
        user = self.service.registry.users.get(user_id)
        if user is None:
            raise ApiError(http.NOT_FOUND, f"no user {user_id!r}", "id")
        result = await self.service.set_offline(user_id, method=METHOD)
        if result.status is UpdateStatus.STORE_FAILED:
            raise ApiError(http.SERVICE_UNAVAILABLE, result.message)
        if not result.ok:
            raise ApiError(http.CONFLICT, result.message)
        self._json(request, state_entry(self.service, self.service.registry.users[user_id]))

    # -- ACME challenge values and scoped keys

    def _known_user(self, user_id: str) -> None:
        if self.service.registry.user(user_id) is None:
            raise ApiError(http.NOT_FOUND, f"no user {user_id!r}", "id")

    async def _object_body(self, request: server.Request, fields: tuple[str, ...]) -> dict[str, Any]:
        """The body: a JSON object with no field but C{fields}."""
        body = await self._body(request)
        if not isinstance(body, dict):
            raise ApiError(http.BAD_REQUEST, "must be a JSON object", None)
        unknown = sorted(set(body) - set(fields))
        if unknown:
            raise ApiError(http.BAD_REQUEST, "unknown field", unknown[0])
        return body

    def _txt_body(self, user_id: str) -> dict[str, Any]:
        """C{GET /api/users/ID/txt}: where the user may hold challenge values, and those it holds."""
        registry = self.service.registry
        state = registry.state(user_id)
        return {
            "id": user_id,
            "names": [challenge_name(base) for base in registry.challenge_bases(user_id)],
            "txt": txt_entries(state.txt, self.service.clock.seconds()) if state is not None else [],
        }

    async def _txt(self, request: server.Request, user_id: str, name: str | None) -> None:
        """
        C{/api/users/ID/txt}: GET the values; C{.../txt/NAME}: PUT
        C{{"value": ...}} adds one at NAME (the user's name, or its
        challenge owner name), DELETE removes one (C{?value=}) or all there.
        """
        if name is None:
            self._allow(request, b"GET")
            self._known_user(user_id)
            return self._json(request, self._txt_body(user_id))
        self._allow(request, b"PUT", b"DELETE")
        if request.method == b"PUT":
            body = await self._object_body(request, ("value",))
            self._known_user(user_id)
            if "value" not in body:
                raise ApiError(http.BAD_REQUEST, "is required", "value")
            value: object = body["value"]
        else:
            self._known_user(user_id)
            query: dict[bytes, list[bytes]] = request.args or {}
            raw = query.get(b"value")
            value = None if raw is None else raw[0].decode("utf-8", "replace")
        base = self.service.registry.challenge_base(user_id, name)
        if base is None:
            raise ApiError(http.NOT_FOUND, f"{name} is not a name {user_id} may hold challenge values at", "name")
        try:
            checked = None if value is None and request.method == b"DELETE" else validate_value(value, "value")
        except ValidationError as e:
            raise ApiError(http.BAD_REQUEST, e.message, "value") from None
        if request.method == b"PUT":
            edit = TXTEdit(Op.ADD, base, checked)
        else:
            edit = TXTEdit(Op.CLEAR, base) if checked is None else TXTEdit(Op.REMOVE, base, checked)
        result = await self.service.edit_txt(user_id, [edit], METHOD, peer_address(request))
        if result.status is UpdateStatus.NO_SUCH_USER:
            raise ApiError(http.NOT_FOUND, f"no user {user_id!r}", "id")
        if result.status is UpdateStatus.STORE_FAILED:
            raise ApiError(http.SERVICE_UNAVAILABLE, result.message)
        if result.status is UpdateStatus.BAD_TXT:
            raise ApiError(http.CONFLICT, result.message, "value")
        if not result.ok:
            raise ApiError(http.CONFLICT, result.message)  # disabled
        self._json(request, self._txt_body(user_id))

    async def _acme_keys(self, request: server.Request, user_id: str, key_id: str | None) -> None:
        """
        C{/api/users/ID/acme-keys}: GET lists the user's scoped keys (never
        a secret or its hash), POST C{{"label": ...}} makes one and answers
        its secret, once; C{.../acme-keys/KEY_ID}: DELETE revokes it.
        """
        if key_id is not None:
            self._allow(request, b"DELETE")
            self._known_user(user_id)
            try:
                removed = await self.service.acme_keys.revoke(user_id, key_id)
            except StoreError as e:
                raise ApiError(http.SERVICE_UNAVAILABLE, f"store failure: {e}") from None
            if not removed:
                raise ApiError(http.NOT_FOUND, f"{user_id} has no ACME key {key_id!r}", "key_id")
            return self._json(request, None, http.NO_CONTENT)
        self._allow(request, b"GET", b"POST")
        if request.method in (b"GET", b"HEAD"):
            self._known_user(user_id)
            keys = await self.service.acme_keys.of(user_id)
            return self._json(request, {"id": user_id, "keys": [key_entry(key) for key in keys]})
        body = await self._object_body(request, ("label",))
        self._known_user(user_id)
        try:
            key, secret = await self.service.acme_keys.add(user_id, body.get("label", ""))
        except ValidationError as e:
            raise ApiError(http.BAD_REQUEST, e.message, e.field) from None
        except NoSuchUser:
            raise ApiError(http.NOT_FOUND, f"no user {user_id!r}", "id") from None
        except StoreError as e:
            raise ApiError(http.SERVICE_UNAVAILABLE, f"store failure: {e}") from None
        self._json(request, {**key_entry(key), "secret": secret}, http.CREATED)


def _users_field(field: str) -> str:
    """
    A field of L{parse_document} (relative to the users document, e.g.
    C{users[3].hostnames}) as a place in the request body
    (C{users.users[3].hostnames}).
    """
    return "users" if field == "document" else f"users.{field}"


class AdminRequest(DynDNSRequest):
    """The update site's request rules, with REST methods and larger bodies."""

    max_body = MAX_ADMIN_BODY
    allowed_methods = (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE")


def build_admin_site(
    service: DynDNSService,
    settings: Settings,
    extra: Mapping[bytes, resource.Resource] | None = None,
    reactor: Any = None,
    limiter: Any = None,
    publisher: Any = None,
) -> server.Site:
    """
    The admin Site: L{AdminResource} with its auth from C{settings.admin}
    (and the zone publisher, for the host zones' routes).
    Its connections are capped by C{limiter} (by default the
    C{connections.admin_*} caps) and get the C{connections.http_*}
    deadlines and C{connections.admin_idle_timeout}.
    """
    auth = AdminAuth(settings.admin.users, settings.admin.tokens, reactor, service)
    admin = AdminResource(service, settings, auth, extra)
    admin.publisher = publisher
    from dyndns_plugin.connections import ConnectionLimiter
    from dyndns_plugin.web.channel import LimitedSite

    connections = settings.connections
    if limiter is None:
        limiter = ConnectionLimiter(
            "admin",
            connections.admin_max_per_source,
            connections.admin_max_total,
            ipv6_prefix=connections.ipv6_prefix,
            clock=reactor,
        )
    from dyndns_plugin.web.site import redacting_log_formatter

    site = LimitedSite(
        admin,
        timeout=connections.admin_idle_timeout,
        logFormatter=redacting_log_formatter,
    )
    site.requestFactory = AdminRequest
    site.displayTracebacks = False
    site.limit_connections(limiter, connections.http_header_timeout, connections.http_request_timeout)
    return site


def openapi_document() -> dict[str, Any]:
    from dyndns_plugin.web.openapi import DOCUMENT

    return DOCUMENT
