"""
The admin listener (L{dyndns_plugin.web.admin}) on a real socket: a started
L{DynDNSService} on the memory store, the Site from L{build_admin_site} on
127.0.0.1 port 0, and a raw-bytes client in a thread.

Every answer any test here receives is checked against the OpenAPI document
(L{dyndns_plugin.web.openapi.DOCUMENT}): its status must be declared for
that path and method (or, for a method the path does not declare, be a 405
whose C{Allow} lists exactly the declared methods), its body must match the
declared schema (C{$ref}s resolved within the document), and the declared
headers must be there. L{OpenAPICoverageTests} drives one sequence of calls
that produces every declared (path, method, status) at least once.

Expected values are written out by hand from the users and updates made in
L{AdminTestCase.setUp}, never computed with the code under test. The
service runs on a L{task.Clock} so update times are known exactly.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import threading
from typing import Any, Iterable
from urllib.parse import quote, urlsplit

import attrs
import jsonschema
import openapi_spec_validator
import referencing
from referencing.jsonschema import DRAFT202012
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, reactor, task, threads
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.web import resource

from dyndns_plugin.auth import PasswordChecker
from dyndns_plugin.config import settings_from_dict
from dyndns_plugin.dns.zones import load_zone_file
from dyndns_plugin.document import export_document
from dyndns_plugin.limits import Limiter, LimitSettings
from dyndns_plugin.model import User
from dyndns_plugin.passwords import hash_password, verify_password
from dyndns_plugin.replication.publisher import ZonePublisher
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store import StoreError
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.web.admin import MAX_ADMIN_BODY, build_admin_site
from dyndns_plugin.web.openapi import DOCUMENT
from tests.dns_helpers import example_suffix_zone
from tests.web_helpers import Response, build_request, exchange, parse_response, stop_pool

SUFFIX = "dyn.example.com"
ADMIN, ADMIN_PW = "root", "admin pw: 1"
TOKEN = "k7-test-bearer-token-not-secret"
TOKEN_DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()
REALM = 'Basic realm="DynDNS admin"'

#: The service clock at setUp: 2023-11-14T22:13:20.25Z.
T0 = 1_700_000_000.25
T0_ISO = "2023-11-14T22:13:20.250000Z"
#: One minute later, when bob and erin went offline.
T1_ISO = "2023-11-14T22:14:20.250000Z"

PASSWORDS = {
    "alice": "alice-pw",
    "bob": "bob-pw",
    "carol": "carol-pw",
    "dave": "dave-pw",
    "erin": "erin-pw",
}
_HASHES = {user: hash_password(pw, log2_n=10) for user, pw in PASSWORDS.items()}
_ADMIN_HASH = hash_password(ADMIN_PW, log2_n=10)

#: Every name the users of setUp (and the tests) answer for, to compare what
#: DNS serves before and after a refused change.
ALL_NAMES = (
    "alice.dyn.example.com",
    "alice.example.org",
    "x.alice.example.net",
    "bob.dyn.example.com",
    "bob.example.org",
    "carol.dyn.example.com",
    "dave.dyn.example.com",
    "dave.example.org",
    "erin.dyn.example.com",
    "frank.dyn.example.com",
    "frank.example.org",
    "alice.example.com",
)

NO_BODY = object()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def admin_settings(**admin: Any):
    """Settings as the configuration file gives them, with an [admin] section."""
    section = {
        "listen": ["tcp:0:interface=127.0.0.1"],
        "users": {ADMIN: _ADMIN_HASH},
        "tokens": [f"sha256:{TOKEN_DIGEST}"],
        **admin,
    }
    return settings_from_dict(
        {
            "service": {"suffix": SUFFIX, "default_ttl": 30, "min_ttl": 10, "max_ttl": 3600},
            "store": {"backend": "memory"},
            "dns": {"listen": ["127.0.0.1:5353"]},
            "admin": section,
        }
    )


# -- the OpenAPI contract


def _pointer(*parts: str) -> str:
    """A URI fragment (JSON pointer) to C{parts} inside the document."""
    escaped = (p.replace("~", "~0").replace("/", "~1") for p in parts)
    return quote("/" + "/".join(escaped), safe="/~")


def walk_keys(value: Any) -> Iterable[str]:
    """Every object key anywhere in a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from walk_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_keys(item)


class OpenAPIContract:
    """
    Checks real answers against an OpenAPI 3.1 document. Schemas are
    validated with C{Draft202012Validator} at their place in the document
    (a C{$ref} to a JSON pointer into it), so the document's own
    C{#/components/...} references resolve through a C{referencing} registry.
    """

    BASE = "urn:dyndns-plugin:admin-openapi"
    METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = DRAFT202012.create_resource(document)  # Resource(contents=..., specification=...)
        self.registry = referencing.Registry().with_resource(self.BASE, resource)
        self.templates = []
        for path in document["paths"]:
            pattern = re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(path))
            self.templates.append((re.compile(f"^{pattern}$"), path))

    def declared(self) -> set[tuple[str, str, int]]:
        """Every (path, method, status) the document declares."""
        found = set()
        for path, item in self.document["paths"].items():
            for method in self.METHODS:
                for status in item.get(method, {}).get("responses", {}):
                    found.add((path, method, int(status)))
        return found

    def template(self, target: str) -> str | None:
        path = urlsplit(target).path
        for pattern, template in self.templates:
            if pattern.match(path):
                return template
        return None

    def operations(self, template: str) -> list[str]:
        item = self.document["paths"][template]
        return [m for m in self.METHODS if m in item]

    def validate(self, instance: Any, *pointer: str) -> None:
        schema = {"$ref": f"{self.BASE}#{_pointer(*pointer)}"}
        validator = jsonschema.Draft202012Validator(schema, registry=self.registry)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        if errors:
            details = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors)
            raise AssertionError(f"{'/'.join(pointer)}: {details}\n{json.dumps(instance)[:2000]}")

    def error_body(self, response: Response, head: bool = False) -> dict[str, Any] | None:
        if head:
            if response.body:
                raise AssertionError(f"an answer to HEAD with a body: {response.raw!r}")
            return None
        body = json.loads(response.body)
        self.validate(body, "components", "schemas", "Error")
        return body

    def check(
        self, method: str, target: str, response: Response, request_body: Any = NO_BODY
    ) -> tuple[str, str, int] | None:
        """
        Judge one answer; returns the (path, method, status) it exercised,
        or None for a path or method the document does not have.
        """
        template = self.template(target)
        status = response.status
        verb = method.lower()
        head = verb == "head"
        if head:
            verb = "get"
        if template is None:
            # Not part of the API: only the error form is promised.
            if status not in (401, 404):
                raise AssertionError(f"{method} {target}: {status} for a path not in the API")
            self.error_body(response, head)
            return None
        if verb not in self.operations(template):
            if status == 401:
                self.error_body(response, head)
                return None
            if status != 405:
                raise AssertionError(f"{method} {target}: {status}, expected 405 (undeclared method)")
            allowed = {m.strip().lower() for m in (response.header("allow") or "").split(",")}
            if allowed != set(self.operations(template)):
                raise AssertionError(
                    f"{method} {target}: Allow {response.header('allow')!r} but the document "
                    f"declares {self.operations(template)}"
                )
            self.error_body(response, head)
            return None
        operation = self.document["paths"][template][verb]
        declared = operation["responses"].get(str(status))
        if declared is None:
            raise AssertionError(
                f"{method} {target}: status {status} is not declared for {verb} {template} "
                f"(declared: {sorted(operation['responses'])}); body {response.body[:300]!r}"
            )
        for name in declared.get("headers", {}):
            if response.header(name) is None:
                raise AssertionError(f"{method} {target}: declared header {name} missing")
        content = declared.get("content")
        if head:
            if response.body:
                raise AssertionError(f"HEAD {target}: a body came back")
        elif content is None:
            if status == 204 and response.body:
                raise AssertionError(f"{method} {target}: 204 with a body {response.body!r}")
            if response.body:
                json.loads(response.body)  # whatever it is, it is JSON
        else:
            (media,) = content
            content_type = (response.header("content-type") or "").split(";")[0].strip()
            if content_type != media:
                raise AssertionError(f"{method} {target}: content type {content_type!r}, not {media}")
            body = json.loads(response.body)
            if "schema" in content[media]:
                self.validate(
                    body,
                    "paths",
                    template,
                    verb,
                    "responses",
                    str(status),
                    "content",
                    media,
                    "schema",
                )
            if "password" in set(walk_keys(body)):
                raise AssertionError(f"{method} {target}: a `password` field in an answer")
        if request_body is not NO_BODY and 200 <= status < 300 and "requestBody" in operation:
            # What the server accepted, the document must accept too.
            (media,) = operation["requestBody"]["content"]
            self.validate(request_body, "paths", template, verb, "requestBody", "content", media, "schema")
        return (template, verb, status)


CONTRACT = OpenAPIContract(DOCUMENT)


# -- the test case


class AdminTestCase(unittest.TestCase):
    """
    Users after setUp (service clock T0, then T0 + 60 s):

     - alice: online at 198.51.100.10 and 2001:db8::10, TTL 120, via "ddns"
       from 198.51.100.10; names alice.example.org and *.alice.example.net;
       offline IPv4 192.0.2.254.
     - bob: updated to 198.51.100.20 at T0, offline at T0+60 via "gnudip" from
       203.0.113.5; offline IPs 192.0.2.253 and 2001:db8::253; bob.example.org.
     - carol: never updated.
     - dave: online at 198.51.100.40 (T0, via "nic"), then disabled;
       dave.example.org.
     - erin: online at 198.51.100.50, offline at T0+60 via "ddns" from
       198.51.100.50; no offline IP; GnuDIP verifier.
    """

    extra: dict[bytes, Any] | None = None

    @defer.inlineCallbacks
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.store = MemoryUserStore()
        self.service = DynDNSService(
            self.store,
            SUFFIX,
            default_ttl=30,
            min_ttl=10,
            max_ttl=3600,
            clock=self.clock,
            poll_interval=None,
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)
        yield self.service.ready
        users = [
            User(
                "alice",
                password_hash=_HASHES["alice"],
                offline_ipv4="192.0.2.254",
                hostnames=["alice.example.org", "*.alice.example.net"],
            ),
            User(
                "bob",
                password_hash=_HASHES["bob"],
                offline_ipv4="192.0.2.253",
                offline_ipv6="2001:db8::253",
                hostnames=["bob.example.org"],
            ),
            User("carol", password_hash=_HASHES["carol"]),
            User("dave", password_hash=_HASHES["dave"], hostnames=["dave.example.org"]),
            User("erin", password_hash=_HASHES["erin"], md5_verifier=hashlib.md5(b"erin-pw").hexdigest()),
        ]
        for user in users:
            yield self.service.add_user(user)
        yield self.update("alice", "198.51.100.10", "2001:db8::10", ttl=120, method="ddns", client="198.51.100.10")
        yield self.update("bob", "198.51.100.20", method="nic", client="198.51.100.20")
        yield self.update("dave", "198.51.100.40", method="nic", client="198.51.100.40")
        yield self.update("erin", "198.51.100.50", method="dns-update", client="198.51.100.50")
        yield self.service.set_disabled("dave", True)
        self.clock.advance(60)
        result = yield self.service.set_offline("bob", method="gnudip", client_address="203.0.113.5")
        self.assertTrue(result.ok, result)
        result = yield self.service.set_offline("erin", method="ddns", client_address="198.51.100.50")
        self.assertTrue(result.ok, result)

        self.settings = admin_settings()
        self.site = build_admin_site(self.service, self.settings, self.extra)
        self.addCleanup(stop_pool, self.site.resource.auth.checker)
        self.port = reactor.listenTCP(0, self.site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.port_number = self.port.getHost().port
        #: (path, method, status) of every checked answer.
        self.seen: set[tuple[str, str, int]] = set()

    @defer.inlineCallbacks
    def update(self, user_id, *addresses, ttl=None, method="test", client=None):
        result = yield self.service.update(user_id, [ipaddress.ip_address(a) for a in addresses], ttl, method, client)
        self.assertTrue(result.ok, result)
        return result

    # -- the client

    @defer.inlineCallbacks
    def call(
        self,
        method: str,
        target: str,
        body: Any = NO_BODY,
        *,
        auth: str | None = "basic",
        headers: Iterable[tuple[str, str]] = (),
        content_type: str | None = "application/json",
        raw: bytes | None = None,
        check: bool = True,
    ):
        """
        One request on a new connection. C{auth}: C{"basic"} (the admin),
        C{"bearer"} (the token), None, or a literal C{Authorization} value.
        C{body} is sent as JSON (C{raw}: as given) with C{content_type}.
        The answer is checked against the HTTP rules and the OpenAPI
        document unless C{check} is false.
        """
        pairs = list(headers)
        if auth == "basic":
            pairs.append(("Authorization", basic(ADMIN, ADMIN_PW)))
        elif auth == "bearer":
            pairs.append(("Authorization", f"Bearer {TOKEN}"))
        elif auth is not None:
            pairs.append(("Authorization", auth))
        data = raw if raw is not None else (None if body is NO_BODY else json.dumps(body).encode())
        if data is not None and content_type is not None:
            pairs.append(("Content-Type", content_type))
        request = build_request(method, target, pairs, data)
        answer = yield threads.deferToThread(exchange, self.port_number, request)
        response = parse_response(answer)
        if check:
            self.assertHTTPRules(response, method)
            seen = CONTRACT.check(method, target, response, body)
            if seen is not None:
                self.seen.add(seen)
        return response

    def assertHTTPRules(self, response: Response, method: str) -> None:
        """One exact Content-Length, never chunked, never cached."""
        self.assertEqual(len(response.headers.get("content-length", [])), 1, response.raw)
        self.assertNotIn("transfer-encoding", response.headers)
        if method != "HEAD":
            length = response.header("content-length")
            assert length is not None
            self.assertEqual(int(length), len(response.body))
        self.assertEqual(response.headers.get("cache-control"), ["no-store"], response.raw)

    def json(self, response: Response) -> Any:
        return json.loads(response.body)

    def assertError(self, response: Response, status: int, field: str | None) -> dict:
        """An error answer: C{status}, JSON {error, field} with C{field}."""
        self.assertEqual(response.status, status, response.raw)
        self.assertEqual(response.header("content-type"), "application/json; charset=utf-8")
        body = self.json(response)
        self.assertEqual(set(body), {"error", "field"})
        self.assertIsInstance(body["error"], str)
        self.assertTrue(body["error"])
        self.assertEqual(body["field"], field, body)
        return body

    def assertUnauthorized(self, response: Response) -> None:
        self.assertError(response, 401, None)
        self.assertEqual(response.headers.get("www-authenticate"), [REALM])

    # -- what the server holds

    def served(self, name: str) -> tuple[str, ...] | None:
        """The addresses the registry (what DNS reads) serves for C{name}."""
        answer = self.service.registry.answer(name)
        return None if answer is None else tuple(str(a) for a in answer.addresses)

    @defer.inlineCallbacks
    def snapshot(self):
        """Everything observable: API views, registry, store, DNS answers."""
        config = yield self.call("GET", "/api/config")
        state = yield self.call("GET", "/api/state")
        stored = yield self.store.load()
        registry = self.service.registry
        return {
            "etag": config.header("etag"),
            "config": config.body,
            "state": state.body,
            "registry users": dict(registry.users),
            "registry states": dict(registry.states),
            "stored users": dict(stored.users),
            "stored states": dict(stored.states),
            "served": {name: self.served(name) for name in ALL_NAMES},
        }

    @defer.inlineCallbacks
    def assertUnchanged(self, before):
        after = yield self.snapshot()
        for key in before:
            self.assertEqual(after[key], before[key], f"{key} changed")

    def user_checker(self) -> PasswordChecker:
        """A PasswordChecker over the DynDNS users, as the update methods use."""
        checker = PasswordChecker(self.service.registry.users, reactor)
        self.addCleanup(stop_pool, checker)
        return checker

    @defer.inlineCallbacks
    def etag(self) -> Any:
        response = yield self.call("GET", "/api/config")
        self.assertEqual(response.status, 200)
        return response.header("etag")


# -- expected values, by hand

ALICE_STATE = {
    "id": "alice",
    "state": "online",
    "ipv4": "198.51.100.10",
    "ipv6": "2001:db8::10",
    "ttl": 120,
    "last_update": T0_ISO,
    "method": "ddns",
    "client_address": "198.51.100.10",
    "names": ["alice.dyn.example.com", "alice.example.org", "*.alice.example.net"],
    "txt": [],
}
BOB_STATE = {
    # Offline: the offline IPs are what DNS serves, at the default TTL.
    "id": "bob",
    "state": "offline",
    "ipv4": "192.0.2.253",
    "ipv6": "2001:db8::253",
    "ttl": 30,
    "last_update": T1_ISO,
    "method": "gnudip",
    "client_address": "203.0.113.5",
    "names": ["bob.dyn.example.com", "bob.example.org"],
    "txt": [],
}
CAROL_STATE = {
    "id": "carol",
    "state": "never",
    "ipv4": None,
    "ipv6": None,
    "ttl": None,
    "last_update": None,
    "method": None,
    "client_address": None,
    "names": ["carol.dyn.example.com"],
    "txt": [],
}
DAVE_STATE = {
    # Disabled: no answer at all, the last update is still shown.
    "id": "dave",
    "state": "disabled",
    "ipv4": None,
    "ipv6": None,
    "ttl": None,
    "last_update": T0_ISO,
    "method": "nic",
    "client_address": "198.51.100.40",
    "names": ["dave.dyn.example.com", "dave.example.org"],
    "txt": [],
}
ERIN_STATE = {
    # Offline without an offline IP: nothing is served.
    "id": "erin",
    "state": "offline",
    "ipv4": None,
    "ipv6": None,
    "ttl": None,
    "last_update": T1_ISO,
    "method": "ddns",
    "client_address": "198.51.100.50",
    "names": ["erin.dyn.example.com"],
    "txt": [],
}
STATE = {"users": [ALICE_STATE, BOB_STATE, CAROL_STATE, DAVE_STATE, ERIN_STATE]}

#: Every route with a method it serves and a body that would change things.
ROUTES = [
    ("GET", "/api/state", NO_BODY),
    ("HEAD", "/api/state", NO_BODY),
    ("GET", "/pluginstate", NO_BODY),
    ("GET", "/api/config", NO_BODY),
    ("PUT", "/api/config", {"users": {"format": "dyndns_plugin.users", "version": 1, "users": []}}),
    ("GET", "/getpluginconfig", NO_BODY),
    ("PUT", "/updatepluginconfig", {"users": {"format": "dyndns_plugin.users", "version": 1, "users": []}}),
    ("POST", "/updatepluginconfig", {"users": {"format": "dyndns_plugin.users", "version": 1, "users": []}}),
    ("GET", "/api/users/alice", NO_BODY),
    ("PUT", "/api/users/frank", {"password": "frank-pw"}),
    ("PATCH", "/api/users/alice", {"disabled": True}),
    ("DELETE", "/api/users/alice", NO_BODY),
    ("POST", "/api/users/alice/offline", {}),
    ("GET", "/api/users/alice/txt", NO_BODY),
    ("PUT", "/api/users/alice/txt/alice.dyn.example.com", {"value": "v"}),
    ("DELETE", "/api/users/alice/txt/alice.dyn.example.com", NO_BODY),
    ("GET", "/api/users/alice/acme-keys", NO_BODY),
    ("POST", "/api/users/alice/acme-keys", {"label": "x"}),
    ("DELETE", "/api/users/alice/acme-keys/00000000", NO_BODY),
    ("GET", "/api/openapi.json", NO_BODY),
    ("GET", "/no/such/path", NO_BODY),
    ("DELETE", "/api/state", NO_BODY),
]


class AuthenticationTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_every_route_needs_credentials(self):
        """
        No credentials, a wrong admin password, a DynDNS user's own
        credentials, a wrong or almost-right bearer token, another scheme or
        a malformed Basic header: 401, the JSON error, the Basic challenge,
        on every route and method; nothing changes.
        """
        # Nine wrong credentials per route from one source: the lockout
        # would answer 429 from the tenth on (AdminLockoutTests).
        self.service.limiter = Limiter(self.clock, LimitSettings(enabled=False))
        before = yield self.snapshot()
        wrong = [
            None,
            basic(ADMIN, "wrong"),
            basic(ADMIN, ADMIN_PW + " "),
            "Bearer wrong-token",
            f"Bearer {TOKEN_DIGEST}",  # the stored digest is not the token
            f"Bearer {TOKEN}x",
            f"Digest {TOKEN}",
            "Basic !!!not-base64!!!",
            "Basic " + base64.b64encode(ADMIN_PW.encode()).decode(),  # no colon
        ]
        for method, target, body in ROUTES:
            responses = yield defer.gatherResults(
                [self.call(method, target, body, auth=authorization) for authorization in wrong]
            )
            for response in responses:
                if method == "HEAD":
                    self.assertEqual(response.status, 401, response.raw)
                    self.assertEqual(response.headers.get("www-authenticate"), [REALM])
                else:
                    self.assertUnauthorized(response)
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_failures_reported_to_metrics(self):
        """
        Refused admin credentials are reported as auth failures of method
        C{admin} (the metrics count them); a request without credentials
        (the browser's first try before the challenge) is not a failure.
        """
        failures: list[str] = []
        self.service.on_auth_failure.append(failures.append)
        yield self.call("GET", "/api/state", auth=None)
        self.assertEqual(failures, [])
        yield self.call("GET", "/api/state", auth=basic(ADMIN, "wrong"))
        yield self.call("GET", "/api/state", auth="Bearer wrong-token")
        self.assertEqual(failures, ["admin", "admin"])
        response = yield self.call("GET", "/api/state")
        self.assertEqual(response.status, 200)
        self.assertEqual(failures, ["admin", "admin"])

    @defer.inlineCallbacks
    def test_unknown_admin_name(self):
        """
        A name that is not an admin, even with the admin's password, and a
        DynDNS user's own credentials: 401, nothing changes. (Each costs a
        full-strength dummy scrypt, so only a few routes here.)
        """
        before = yield self.snapshot()
        for method, target, body in (
            ("GET", "/api/state", NO_BODY),
            ("DELETE", "/api/users/alice", NO_BODY),
            ("POST", "/api/users/alice/offline", {}),
        ):
            for authorization in (basic("nobody", ADMIN_PW), basic("alice", PASSWORDS["alice"])):
                response = yield self.call(method, target, body, auth=authorization)
                self.assertUnauthorized(response)
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_basic_and_bearer(self):
        """Basic with the admin's password and Bearer with the token both work."""
        by_basic = yield self.call("GET", "/api/state", auth="basic")
        by_bearer = yield self.call("GET", "/api/state", auth="bearer")
        lower_case = yield self.call("GET", "/api/state", auth=f"bearer {TOKEN}")
        for response in (by_basic, by_bearer, lower_case):
            self.assertEqual(response.status, 200, response.raw)
            self.assertEqual(self.json(response), STATE)

    @defer.inlineCallbacks
    def test_bearer_changes(self):
        """A change made with the bearer token takes effect."""
        response = yield self.call("POST", "/api/users/alice/offline", {}, auth="bearer")
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.254",))

    @defer.inlineCallbacks
    def test_token_only_and_users_only(self):
        """
        An admin section with only tokens refuses every Basic login; one with
        only users refuses every bearer token.
        """
        for admin, good, bad in (
            ({"users": {}}, f"Bearer {TOKEN}", basic(ADMIN, ADMIN_PW)),
            ({"tokens": []}, basic(ADMIN, ADMIN_PW), f"Bearer {TOKEN}"),
        ):
            site = build_admin_site(self.service, admin_settings(**admin))
            self.addCleanup(stop_pool, site.resource.auth.checker)
            port = reactor.listenTCP(0, site, interface="127.0.0.1")
            self.addCleanup(port.stopListening)
            number = port.getHost().port
            for authorization, status in ((good, 200), (bad, 401)):
                request = build_request("GET", "/api/state", [("Authorization", authorization)])
                response = parse_response((yield threads.deferToThread(exchange, number, request)))
                self.assertEqual(response.status, status, response.raw)

    @defer.inlineCallbacks
    def test_changed_admin_password_in_settings(self):
        """The admin hash comes from the settings: another hash, another password."""
        site = build_admin_site(
            self.service,
            admin_settings(
                users={ADMIN: hash_password("other admin pw", log2_n=10)},
                tokens=[],
            ),
        )
        self.addCleanup(stop_pool, site.resource.auth.checker)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        for password, status in ((ADMIN_PW, 401), ("other admin pw", 200)):
            request = build_request("GET", "/api/state", [("Authorization", basic(ADMIN, password))])
            raw = yield threads.deferToThread(exchange, port.getHost().port, request)
            self.assertEqual(parse_response(raw).status, status)


class StateTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_state(self):
        """
        Every user, sorted by id: online, offline with offline IPs (served,
        at the default TTL), never, disabled, offline without an address.
        """
        response = yield self.call("GET", "/api/state")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-type"), "application/json; charset=utf-8")
        self.assertEqual(self.json(response), STATE)

    def test_state_matches_dns(self):
        """What /api/state says is served is what the registry serves."""
        self.assertEqual(self.served("alice.example.org"), ("198.51.100.10", "2001:db8::10"))
        self.assertEqual(self.served("x.alice.example.net"), ("198.51.100.10", "2001:db8::10"))
        self.assertEqual(self.served("bob.example.org"), ("192.0.2.253", "2001:db8::253"))
        self.assertEqual(self.served("carol.dyn.example.com"), ())
        self.assertIsNone(self.served("dave.example.org"))
        self.assertEqual(self.served("erin.dyn.example.com"), ())

    @defer.inlineCallbacks
    def test_state_follows_updates(self):
        """A later update shows at once: address, TTL, time, method, client."""
        self.clock.advance(3600)
        yield self.update("carol", "2001:db8::c", ttl=5, method="dyndns2", client="2001:db8::c")
        response = yield self.call("GET", "/api/state")
        carol = self.json(response)["users"][2]
        self.assertEqual(
            carol,
            {
                "id": "carol",
                "state": "online",
                "ipv4": None,
                "ipv6": "2001:db8::c",
                "ttl": 10,  # clamped to min_ttl
                "last_update": "2023-11-14T23:14:20.250000Z",
                "method": "dyndns2",
                "client_address": "2001:db8::c",
                "names": ["carol.dyn.example.com"],
                "txt": [],
            },
        )

    @defer.inlineCallbacks
    def test_head(self):
        """HEAD: the headers of GET, no body."""
        get = yield self.call("GET", "/api/state")
        head = yield self.call("HEAD", "/api/state")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(head.header("content-length"), str(len(get.body)))

    @defer.inlineCallbacks
    def test_state_bytes(self):
        """The document, built a slice at a time, is byte for byte the one-piece JSON."""
        response = yield self.call("GET", "/api/state")
        self.assertEqual(response.body, json.dumps(STATE, indent=1).encode() + b"\n")

    @defer.inlineCallbacks
    def test_config_large(self):
        """
        GET /api/config of many users (over 256 KiB, built in a thread and
        written in pieces) arrives whole: the settings and the export
        document, and the ETag of that document's canonical form.
        """
        for k in range(3000):
            self.service.registry.put_user(User(id=f"bulk{k:04d}", hostnames=(f"h{k}.example.net",)))
        response = yield self.call("GET", "/api/config")
        self.assertGreater(len(response.body), 600_000)
        registry = self.service.registry
        users = export_document(registry.users.values(), registry.states)
        body = json.loads(response.body)
        self.assertEqual(body["users"], users)
        self.assertEqual(set(body), {"settings", "users"})
        # Built a slice at a time, byte for byte the one-piece JSON.
        self.assertEqual(response.body, json.dumps(body, indent=1).encode() + b"\n")
        self.assertEqual(response.header("content-length"), str(len(response.body)))
        canonical = json.dumps(users, sort_keys=True, separators=(",", ":")).encode()
        self.assertEqual(response.header("etag"), '"' + hashlib.sha256(canonical).hexdigest()[:32] + '"')

    @defer.inlineCallbacks
    def test_state_large(self):
        """A document of many writes (over 256 KiB) arrives whole, with its exact Content-Length, HEAD alike."""
        for k in range(3000):
            self.service.registry.put_user(User(id=f"bulk{k:04d}", hostnames=(f"h{k}.example.net",)))
        response = yield self.call("GET", "/api/state")
        self.assertGreater(len(response.body), 600_000)
        users = self.json(response)["users"]
        self.assertEqual([u["id"] for u in users], sorted(self.service.registry.users))
        self.assertEqual(response.body, json.dumps({"users": users}, indent=1).encode() + b"\n")
        head = yield self.call("HEAD", "/api/state")
        self.assertEqual(head.header("content-length"), str(len(response.body)))

    @defer.inlineCallbacks
    def test_state_pages(self):
        """limit and after page through the users in id order; next leads on and is null at the end."""
        ids = [entry["id"] for entry in STATE["users"]]
        counts = {"online": 0, "offline": 0, "never": 0, "disabled": 0}
        for entry in STATE["users"]:
            counts[entry["state"]] += 1
        first = self.json((yield self.call("GET", "/api/state?limit=2")))
        self.assertEqual(first, {"users": STATE["users"][:2], "next": ids[1], "counts": counts})
        second = self.json((yield self.call("GET", f"/api/state?limit=2&after={first['next']}")))
        self.assertEqual(second, {"users": STATE["users"][2:4], "next": ids[3], "counts": counts})
        last = self.json((yield self.call("GET", f"/api/state?limit=2&after={second['next']}")))
        self.assertEqual(last, {"users": STATE["users"][4:], "next": None, "counts": counts})
        exact = self.json((yield self.call("GET", f"/api/state?limit=1&after={ids[3]}")))
        self.assertEqual(exact, {"users": STATE["users"][4:], "next": None, "counts": counts})  # nothing after: no next
        between = self.json((yield self.call("GET", "/api/state?limit=10&after=b")))  # not an id
        self.assertEqual(
            between, {"users": [e for e in STATE["users"] if e["id"] > "b"], "next": None, "counts": counts}
        )
        whole = self.json((yield self.call("GET", "/api/state?limit=10000")))
        self.assertEqual(whole, {**STATE, "next": None, "counts": counts})
        # The bytes are json.dumps(..., indent=1) of that, as for the whole document.
        response = yield self.call("GET", "/api/state?limit=10000")
        self.assertEqual(response.body, json.dumps(whole, indent=1).encode() + b"\n")

    @defer.inlineCallbacks
    def test_state_page_follows_changes(self):
        """A user added between two pages shows on the later page if its id sorts after the first."""
        first = self.json((yield self.call("GET", "/api/state?limit=2")))
        yield self.call("PUT", "/api/users/zed", {"password": "zed-pw"})
        yield self.call("DELETE", "/api/users/carol")
        rest = self.json((yield self.call("GET", f"/api/state?limit=10&after={first['next']}")))
        self.assertEqual([e["id"] for e in rest["users"]], ["dave", "erin", "zed"])

    @defer.inlineCallbacks
    def test_state_bad_page(self):
        """A limit outside 1..10000 or not a number, or after without limit: 400 naming the field."""
        for query, field in (
            ("limit=0", "limit"),
            ("limit=10001", "limit"),
            ("limit=-1", "limit"),
            ("limit=two", "limit"),
            ("limit=", "limit"),
            ("after=alice", "after"),
        ):
            response = yield self.call("GET", f"/api/state?{query}")
            self.assertError(response, 400, field)

    @defer.inlineCallbacks
    def test_pluginstate_alias(self):
        """/pluginstate is /api/state."""
        response = yield self.call("GET", "/pluginstate")
        self.assertEqual(response.status, 200)
        self.assertEqual(self.json(response), STATE)


class UserTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_get_user(self):
        """One user: account data with the stored verifiers, and its state."""
        response = yield self.call("GET", "/api/users/alice")
        self.assertEqual(response.status, 200)
        self.assertEqual(
            self.json(response),
            {
                "id": "alice",
                "password_hash": _HASHES["alice"],
                "md5_verifier": None,
                "tsig_secret": None,
                "tsig_algorithm": "hmac-md5",
                "tsig_from_password": False,
                "offline_ipv4": "192.0.2.254",
                "offline_ipv6": None,
                "hostnames": ["alice.example.org", "*.alice.example.net"],
                "notes": "",
                "disabled": False,
                "state": {
                    "status": "online",
                    "ipv4": "198.51.100.10",
                    "ipv6": "2001:db8::10",
                    "ttl": 120,
                    "offline": False,
                    "updated_at": T0_ISO,
                    "method": "ddns",
                    "client_address": "198.51.100.10",
                },
            },
        )
        carol = self.json((yield self.call("GET", "/api/users/carol")))
        self.assertNotIn("state", carol)  # never updated
        dave = self.json((yield self.call("GET", "/api/users/dave")))
        self.assertTrue(dave["disabled"])
        self.assertEqual(dave["state"]["ipv4"], "198.51.100.40")

    @defer.inlineCallbacks
    def test_get_unknown(self):
        response = yield self.call("GET", "/api/users/zed")
        self.assertError(response, 404, "id")

    @defer.inlineCallbacks
    def test_put_creates(self):
        """
        PUT of a new id: 201, the user as stored (a hash, never the
        password), names served once the user updates, the password works
        with the update methods' checker.
        """
        body = {
            "password": "frank-pw",
            "hostnames": ["Frank.Example.ORG."],
            "offline_ipv4": "192.0.2.77",
            "notes": "signed up",
        }
        response = yield self.call("PUT", "/api/users/frank", body)
        self.assertEqual(response.status, 201, response.raw)
        got = self.json(response)
        self.assertEqual(got["id"], "frank")
        self.assertEqual(got["hostnames"], ["frank.example.org"])
        self.assertEqual(got["offline_ipv4"], "192.0.2.77")
        self.assertEqual(got["notes"], "signed up")
        self.assertIsNone(got["md5_verifier"])
        self.assertNotIn("state", got)
        self.assertTrue(verify_password("frank-pw", got["password_hash"]))
        stored = (yield self.store.load()).users["frank"]
        self.assertEqual(stored.password_hash, got["password_hash"])
        self.assertEqual((yield self.user_checker().check("frank", "frank-pw")), "frank")
        self.assertEqual(self.served("frank.example.org"), ())
        yield self.update("frank", "198.51.100.60")
        self.assertEqual(self.served("frank.example.org"), ("198.51.100.60",))
        again = self.json((yield self.call("GET", "/api/users/frank")))
        self.assertEqual({k: v for k, v in again.items() if k != "state"}, got)

    @defer.inlineCallbacks
    def test_passwords_hashed_off_the_reactor_thread(self):
        """A password set by PUT or by POST /api/config is hashed (scrypt, ~0.1 s) on a pool thread, not the reactor's."""
        import dyndns_plugin.document as document

        hashed_on: list[threading.Thread] = []
        real = document.hash_password

        def recording(password: str) -> str:
            hashed_on.append(threading.current_thread())
            return real(password)

        self.patch(document, "hash_password", recording)
        response = yield self.call("PUT", "/api/users/frank", {"password": "frank-pw"})
        self.assertEqual(response.status, 201, response.raw)
        config = yield self.call("GET", "/api/config")
        body = self.json(config)
        body["users"]["users"].append({"id": "hank", "password": "hank-pw"})
        response = yield self.call("PUT", "/api/config", body, headers=[("If-Match", config.header("etag"))])
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(len(hashed_on), 2)
        self.assertNotIn(threading.main_thread(), hashed_on)

    @defer.inlineCallbacks
    def test_put_creates_with_state(self):
        """A state in the body is imported with the new user and served."""
        body = {
            "password_hash": _HASHES["carol"],
            "state": {
                "ipv4": "198.51.100.61",
                "ttl": 300,
                "updated_at": "2023-01-02T03:04:05Z",
                "method": "import",
            },
        }
        response = yield self.call("PUT", "/api/users/gina", body)
        self.assertEqual(response.status, 201, response.raw)
        self.assertEqual(self.served("gina.dyn.example.com"), ("198.51.100.61",))
        entry = [u for u in self.json((yield self.call("GET", "/api/state")))["users"] if u["id"] == "gina"]
        self.assertEqual(
            entry,
            [
                {
                    "id": "gina",
                    "state": "online",
                    "ipv4": "198.51.100.61",
                    "ipv6": None,
                    "ttl": 300,
                    "last_update": "2023-01-02T03:04:05Z",
                    "method": "import",
                    "client_address": None,
                    "names": ["gina.dyn.example.com"],
                    "txt": [],
                }
            ],
        )

    @defer.inlineCallbacks
    def test_put_replaces(self):
        """
        PUT of an existing id: 200, the account replaced (old additional
        name no longer served, new one serves the user's current answer),
        the state kept.
        """
        current = self.json((yield self.call("GET", "/api/users/bob")))
        body = dict(current, hostnames=["bob.example.com"], offline_ipv6=None)
        body.pop("state")
        response = yield self.call("PUT", "/api/users/bob", body)
        self.assertEqual(response.status, 200, response.raw)
        got = self.json(response)
        self.assertEqual(got["hostnames"], ["bob.example.com"])
        self.assertIsNone(got["offline_ipv6"])
        self.assertEqual(got["state"]["status"], "offline")
        self.assertIsNone(self.served("bob.example.org"))
        self.assertEqual(self.served("bob.example.com"), ("192.0.2.253",))
        self.assertEqual((yield self.user_checker().check("bob", "bob-pw")), "bob")

    @defer.inlineCallbacks
    def test_put_id_mismatch(self):
        before = yield self.snapshot()
        response = yield self.call("PUT", "/api/users/bob", {"id": "alice", "notes": "x"})
        self.assertError(response, 400, "id")
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_put_invalid_fields(self):
        """Each invalid field: 400 naming it, nothing changed."""
        before = yield self.snapshot()
        cases = [
            ("/api/users/bob", {"hostnames": ["ok.example.org", "bad name!"]}, "hostnames"),
            ("/api/users/bob", {"hostnames": "bob.example.org"}, "hostnames"),
            ("/api/users/bob", {"hostnames": ["carol.dyn.example.com"]}, "hostnames"),
            ("/api/users/frank", {"offline_ipv4": "2001:db8::1"}, "offline_ipv4"),
            ("/api/users/frank", {"offline_ipv4": "300.1.2.3"}, "offline_ipv4"),
            ("/api/users/frank", {"offline_ipv6": "192.0.2.1"}, "offline_ipv6"),
            ("/api/users/frank", {"tsig_secret": "not base64!"}, "tsig_secret"),
            ("/api/users/frank", {"tsig_algorithm": "hmac-md4"}, "tsig_algorithm"),
            ("/api/users/frank", {"password_hash": "plain"}, "password_hash"),
            ("/api/users/frank", {"password": ""}, "password"),
            ("/api/users/frank", {"md5_verifier": "XYZ"}, "md5_verifier"),
            ("/api/users/frank", {"disabled": "yes"}, "disabled"),
            ("/api/users/frank", {"colour": "red"}, "colour"),
            ("/api/users/frank", {"state": {"ipv4": "nope"}}, "state.ipv4"),
            ("/api/users/Frank_1", {"password": "x-pw"}, "id"),
        ]
        for target, body, field in cases:
            response = yield self.call("PUT", target, body)
            self.assertError(response, 400, field)
        for raw in (b"{not json", b"[1, 2]"):
            response = yield self.call("PUT", "/api/users/frank", raw=raw)
            self.assertEqual(response.status, 400, response.raw)
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_put_name_conflict(self):
        """A name another user holds: 409, field hostnames, nothing changed."""
        before = yield self.snapshot()
        response = yield self.call("PUT", "/api/users/frank", {"hostnames": ["alice.example.org"]})
        self.assertError(response, 409, "hostnames")
        body = dict(
            self.json((yield self.call("GET", "/api/users/bob"))), hostnames=["bob.example.org", "*.alice.example.net"]
        )
        response = yield self.call("PUT", "/api/users/bob", body)
        self.assertError(response, 409, "hostnames")
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_put_415(self):
        before = yield self.snapshot()
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            response = yield self.call("PUT", "/api/users/frank", {"password": "frank-pw"}, content_type=content_type)
            self.assertError(response, 415, None)
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_patch_password(self):
        """
        A new password: the update methods accept it at once and refuse the
        old one; every other field and the state stay.
        """
        old = self.json((yield self.call("GET", "/api/users/bob")))
        response = yield self.call("PATCH", "/api/users/bob", {"password": "new bob pw"})
        self.assertEqual(response.status, 200, response.raw)
        new = self.json(response)
        self.assertNotEqual(new["password_hash"], old["password_hash"])
        self.assertEqual(
            {k: v for k, v in new.items() if k != "password_hash"},
            {k: v for k, v in old.items() if k != "password_hash"},
        )
        checker = self.user_checker()
        self.assertEqual((yield checker.check("bob", "new bob pw")), "bob")
        with self.assertRaises(UnauthorizedLogin):
            yield checker.check("bob", "bob-pw")

    @defer.inlineCallbacks
    def test_patch_password_gnudip_verifier(self):
        """
        erin uses GnuDIP (an MD5 verifier): a new password must replace the
        verifier too, or GnuDIP would keep accepting the old password and
        refuse the new one.
        """
        response = yield self.call("PATCH", "/api/users/erin", {"password": "new erin pw"})
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(self.json(response)["md5_verifier"], hashlib.md5(b"new erin pw").hexdigest())
        self.assertEqual(
            self.service.registry.users["erin"].md5_verifier,
            hashlib.md5(b"new erin pw").hexdigest(),
        )
        # Explicitly without GnuDIP: no verifier kept at all.
        response = yield self.call("PATCH", "/api/users/erin", {"password": "third pw", "gnudip": False})
        self.assertEqual(response.status, 200, response.raw)
        self.assertIsNone(self.json(response)["md5_verifier"])
        # alice never had one: a new password does not create one.
        response = yield self.call("PATCH", "/api/users/alice", {"password": "new alice pw"})
        self.assertIsNone(self.json(response)["md5_verifier"])

    @defer.inlineCallbacks
    def test_patch_fields(self):
        """Disable, add names, set notes: only those fields change."""
        response = yield self.call(
            "PATCH",
            "/api/users/alice",
            {"disabled": True, "notes": "paused", "hostnames": ["alice.example.com"]},
        )
        self.assertEqual(response.status, 200, response.raw)
        got = self.json(response)
        self.assertEqual(got["password_hash"], _HASHES["alice"])
        self.assertEqual(got["offline_ipv4"], "192.0.2.254")
        self.assertEqual(got["hostnames"], ["alice.example.com"])
        self.assertTrue(got["disabled"])
        self.assertIsNone(self.served("alice.dyn.example.com"))
        self.assertIsNone(self.served("alice.example.org"))
        state = self.json((yield self.call("GET", "/api/state")))["users"][0]
        self.assertEqual(state["state"], "disabled")
        response = yield self.call("PATCH", "/api/users/alice", {"disabled": False})
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(self.served("alice.example.com"), ("198.51.100.10", "2001:db8::10"))

    @defer.inlineCallbacks
    def test_patch_refused(self):
        """Unknown user 404; state, bad fields, id mismatch 400; conflict 409; 415."""
        before = yield self.snapshot()
        response = yield self.call("PATCH", "/api/users/zed", {"notes": "x"})
        self.assertError(response, 404, "id")
        response = yield self.call("PATCH", "/api/users/bob", {"state": None})
        self.assertError(response, 400, "state")
        response = yield self.call("PATCH", "/api/users/bob", {"hostnames": ["-bad-.example"]})
        self.assertError(response, 400, "hostnames")
        response = yield self.call("PATCH", "/api/users/bob", {"offline_ipv4": "2001:db8::9"})
        self.assertError(response, 400, "offline_ipv4")
        response = yield self.call("PATCH", "/api/users/bob", {"id": "carol"})
        self.assertError(response, 400, "id")
        response = yield self.call("PATCH", "/api/users/bob", {"hostnames": ["dave.example.org"]})
        self.assertError(response, 409, "hostnames")
        response = yield self.call("PATCH", "/api/users/bob", {"notes": "x"}, content_type=None)
        self.assertError(response, 415, None)
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_delete(self):
        """204 without a body; then 404 everywhere and no answers."""
        response = yield self.call("DELETE", "/api/users/bob")
        self.assertEqual(response.status, 204, response.raw)
        self.assertEqual(response.body, b"")
        self.assertIsNone(self.served("bob.dyn.example.com"))
        self.assertIsNone(self.served("bob.example.org"))
        self.assertNotIn("bob", (yield self.store.load()).users)
        self.assertError((yield self.call("GET", "/api/users/bob")), 404, "id")
        self.assertError((yield self.call("DELETE", "/api/users/bob")), 404, "id")
        ids = [u["id"] for u in self.json((yield self.call("GET", "/api/state")))["users"]]
        self.assertEqual(ids, ["alice", "carol", "dave", "erin"])
        # The name is free again.
        response = yield self.call("PUT", "/api/users/frank", {"hostnames": ["bob.example.org"]})
        self.assertEqual(response.status, 201, response.raw)


class OfflineTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_offline_with_offline_ip(self):
        """alice goes offline: her names serve her offline IPv4 only."""
        response = yield self.call("POST", "/api/users/alice/offline", {})
        self.assertEqual(response.status, 200, response.raw)
        expected = dict(
            ALICE_STATE,
            state="offline",
            ipv4="192.0.2.254",
            ipv6=None,
            ttl=30,
            last_update=T1_ISO,
            method="admin",
            client_address=None,
        )
        self.assertEqual(self.json(response), expected)
        for name in ("alice.dyn.example.com", "alice.example.org", "x.alice.example.net"):
            self.assertEqual(self.served(name), ("192.0.2.254",))
        state = self.json((yield self.call("GET", "/api/state")))
        self.assertEqual(state["users"][0], expected)
        # The last online addresses are kept for display.
        user = self.json((yield self.call("GET", "/api/users/alice")))
        self.assertEqual(user["state"]["ipv4"], "198.51.100.10")
        self.assertTrue(user["state"]["offline"])

    @defer.inlineCallbacks
    def test_offline_without_offline_ip(self):
        """carol (never updated, no offline IP): offline, nothing served."""
        self.assertEqual(self.served("carol.dyn.example.com"), ())
        response = yield self.call("POST", "/api/users/carol/offline", {"reason": "any object"})
        self.assertEqual(response.status, 200, response.raw)
        got = self.json(response)
        self.assertEqual((got["state"], got["ipv4"], got["ipv6"]), ("offline", None, None))
        self.assertEqual(self.served("carol.dyn.example.com"), ())
        self.assertTrue(self.service.registry.states["carol"].offline)

    @defer.inlineCallbacks
    def test_already_offline(self):
        """erin is offline already: 200, unchanged."""
        before = yield self.snapshot()
        response = yield self.call("POST", "/api/users/erin/offline", {})
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(self.json(response), ERIN_STATE)
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_refused(self):
        """Unknown user 404; not JSON 415; bad JSON 400; disabled user 409."""
        before = yield self.snapshot()
        self.assertError((yield self.call("POST", "/api/users/zed/offline", {})), 404, "id")
        for content_type in ("text/plain", None):
            response = yield self.call("POST", "/api/users/alice/offline", {}, content_type=content_type)
            self.assertError(response, 415, None)
        response = yield self.call("POST", "/api/users/alice/offline", content_type=None)
        self.assertError(response, 415, None)
        response = yield self.call("POST", "/api/users/alice/offline", raw=b"{")
        self.assertError(response, 400, None)
        response = yield self.call("POST", "/api/users/dave/offline", {})
        self.assertError(response, 409, None)
        yield self.assertUnchanged(before)


class StoreFailureTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_store_failure(self):
        """
        The store refuses every write: each change is 503 (the JSON error,
        nothing logged as a crash) and nothing changes; reads still work.
        """
        before = yield self.snapshot()
        self.store.fail_writes = StoreError("disk gone")
        etag = before["etag"]
        body = json.loads(before["config"])
        body["users"]["users"] = body["users"]["users"][:1]
        calls = [
            ("PUT", "/api/users/frank", {"password": "frank-pw"}, ()),
            ("PUT", "/api/users/bob", {"notes": "x"}, ()),
            ("PATCH", "/api/users/bob", {"notes": "x"}, ()),
            ("DELETE", "/api/users/bob", NO_BODY, ()),
            ("POST", "/api/users/carol/offline", {}, ()),
            ("PUT", "/api/config", body, [("If-Match", etag)]),
            ("POST", "/updatepluginconfig", body, [("If-Match", etag)]),
        ]
        for method, target, request_body, headers in calls:
            response = yield self.call(method, target, request_body, headers=headers)
            self.assertError(response, 503, None)
        self.store.fail_writes = None
        # The service logs the failed state write (offline); nothing else.
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)
        yield self.assertUnchanged(before)


class HealthTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_health_without_credentials(self):
        """C{GET /health} needs no credentials: 200 C{ok} while the store answers; HEAD too, without a body."""
        response = yield self.call("GET", "/health", auth=None, check=False)
        self.assertEqual((response.status, response.body), (200, b"ok\n"))
        self.assertEqual(response.header("content-type"), "text/plain; charset=utf-8")
        head = yield self.call("HEAD", "/health", auth=None, check=False)
        self.assertEqual((head.status, head.body), (200, b""))
        # Nothing else is open: the API still wants credentials.
        state = yield self.call("GET", "/api/state", auth=None, check=False)
        self.assertEqual(state.status, 401)

    @defer.inlineCallbacks
    def test_health_when_the_store_fails(self):
        """A store whose reads fail: 503, and healthy again once it answers."""
        answer = self.store.changes_since
        self.patch(self.store, "changes_since", lambda generation: defer.fail(StoreError("disk gone")))
        response = yield self.call("GET", "/health", auth=None, check=False)
        self.assertEqual((response.status, response.body), (503, b"store not answering\n"))
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)  # the poll logs the failed read
        self.patch(self.store, "changes_since", answer)
        response = yield self.call("GET", "/health", auth=None, check=False)
        self.assertEqual(response.status, 200)

    @defer.inlineCallbacks
    def test_health_only_reads(self):
        """Another method on /health: 405 with Allow, and no credentials asked."""
        response = yield self.call("POST", "/health", {}, auth=None, check=False)
        self.assertEqual((response.status, response.header("allow")), (405, "GET, HEAD"))


class ConfigTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_get(self):
        """Settings (read-only view) and the users document, with an ETag."""
        response = yield self.call("GET", "/api/config")
        self.assertEqual(response.status, 200)
        etag = response.header("etag")
        self.assertRegex(etag, r'^"[^"]+"$')
        body = self.json(response)
        settings = body["settings"]
        self.assertEqual(settings["suffix"], SUFFIX)
        self.assertEqual((settings["default_ttl"], settings["min_ttl"], settings["max_ttl"]), (30, 10, 3600))
        self.assertEqual(settings["admin"]["tokens"], [f"sha256:{TOKEN_DIGEST}"])
        self.assertEqual(settings["admin"]["users"], {ADMIN: _ADMIN_HASH})
        self.assertNotIn(TOKEN, response.text)
        users = body["users"]
        self.assertEqual((users["format"], users["version"]), ("dyndns_plugin.users", 1))
        self.assertEqual([u["id"] for u in users["users"]], ["alice", "bob", "carol", "dave", "erin"])
        bob = users["users"][1]
        self.assertEqual(
            bob["state"],
            {
                "status": "offline",
                "ipv4": "198.51.100.20",
                "ipv6": None,
                "ttl": 30,
                "offline": True,
                "updated_at": T1_ISO,
                "method": "gnudip",
                "client_address": "203.0.113.5",
            },
        )
        self.assertEqual(bob["password_hash"], _HASHES["bob"])
        again = yield self.call("GET", "/api/config")
        self.assertEqual((again.header("etag"), again.body), (etag, response.body))
        alias = yield self.call("GET", "/getpluginconfig")
        self.assertEqual(alias.status, 200)
        self.assertEqual((alias.header("etag"), alias.body), (etag, response.body))

    @defer.inlineCallbacks
    def test_etag_changes_after_every_change(self):
        """Any change of users or states gives a new ETag, never an old one."""
        seen = [(yield self.etag())]

        @defer.inlineCallbacks
        def changed(what):
            etag = yield self.etag()
            self.assertNotEqual(etag, seen[-1], f"ETag unchanged after {what}")
            seen.append(etag)

        yield self.update("carol", "198.51.100.30")
        yield changed("an update")
        self.clock.advance(1)
        yield self.update("carol", "198.51.100.31")
        yield changed("an address change")
        yield self.call("POST", "/api/users/alice/offline", {})
        yield changed("offline")
        yield self.call("PUT", "/api/users/frank", {"password_hash": _HASHES["alice"]})
        yield changed("PUT user")
        yield self.call("PATCH", "/api/users/frank", {"notes": "n"})
        yield changed("PATCH user")
        yield self.call("DELETE", "/api/users/frank")
        yield changed("DELETE user")
        # The same users and states as before frank: the same ETag (it
        # names the content, not the history).
        self.assertEqual(seen[-1], seen[3])
        yield self.service.set_disabled("carol", True)
        yield changed("disabling")
        self.assertEqual(len(set(seen)), len(seen) - 1)

    @defer.inlineCallbacks
    def test_put_without_if_match(self):
        before = yield self.snapshot()
        body = self.json((yield self.call("GET", "/api/config")))
        body["users"]["users"] = body["users"]["users"][:1]
        response = yield self.call("PUT", "/api/config", body)
        self.assertError(response, 428, "If-Match")
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_put_stale_etag(self):
        """Someone changed the users since the GET: 412 and nothing changes."""
        response = yield self.call("GET", "/api/config")
        stale, body = response.header("etag"), self.json(response)
        yield self.update("carol", "198.51.100.30")
        before = yield self.snapshot()
        body["users"]["users"] = body["users"]["users"][:2]
        for etag in (stale, '"0000"', "W/" + before["etag"], before["etag"].strip('"')):
            response = yield self.call("PUT", "/api/config", body, headers=[("If-Match", etag)])
            self.assertError(response, 412, "If-Match")
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_put_one_invalid_user(self):
        """
        One invalid user among valid ones (with a removal and an addition in
        the same document): 400 naming users.users[N].<field>, and not one of
        the other changes happened.
        """
        response = yield self.call("GET", "/api/config")
        etag, body = response.header("etag"), self.json(response)
        before = yield self.snapshot()
        users = body["users"]["users"]
        del users[1]  # bob removed
        users.append({"id": "frank", "password": "frank-pw", "hostnames": ["frank.example.org"]})
        users[0]["hostnames"] = ["alice.example.com"]
        cases = [
            (3, {"hostnames": ["fine.example.org", "bad..name"]}, "hostnames"),
            (2, {"offline_ipv4": "not an address"}, "offline_ipv4"),
            (1, {"id": "Carol!"}, "id"),
            (1, {"id": "alice"}, "id"),  # a duplicate id (the second one is named)
            (3, {"state": {"ttl": -5}}, "state.ttl"),
            (2, {"extra": 1}, "extra"),
            # Under the suffix but not below the user's own name.
            (1, {"hostnames": ["alice.dyn.example.com"]}, "hostnames"),
        ]
        for index, change, field in cases:
            document = json.loads(json.dumps(body))
            document["users"]["users"][index].update(change)
            response = yield self.call("PUT", "/api/config", document, headers=[("If-Match", etag)])
            self.assertError(response, 400, f"users.users[{index}].{field}")
            yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_put_large_document(self):
        """
        A body over 256 KiB is parsed between reactor turns: not JSON (cut
        short) is 400 with nothing changed; a user past the first slice
        of checks that breaks the name policy is named by its index; a
        good one replaces the users.
        """
        response = yield self.call("GET", "/api/config")
        etag, body = response.header("etag"), self.json(response)
        before = yield self.snapshot()
        users = body["users"]["users"]
        users += [{"id": f"bulk{k:04d}", "hostnames": [f"h{k}.example.net"], "notes": "x" * 60} for k in range(2500)]
        raw = json.dumps(body).encode()
        self.assertGreater(len(raw), 256 * 1024)
        response = yield self.call("PUT", "/api/config", raw=raw[:-1], headers=[("If-Match", etag)])
        self.assertError(response, 400, None)
        self.assertIn("not JSON", self.json(response)["error"])
        yield self.assertUnchanged(before)
        index = len(users) - 7
        bad = json.loads(raw)
        bad["users"]["users"][index]["hostnames"] = ["alice.dyn.example.com"]
        response = yield self.call("PUT", "/api/config", bad, headers=[("If-Match", etag)])
        self.assertError(response, 400, f"users.users[{index}].hostnames")
        yield self.assertUnchanged(before)
        response = yield self.call("PUT", "/api/config", body, headers=[("If-Match", etag)])
        self.assertEqual(response.status, 200, response.raw[:300])
        self.assertEqual(len(self.service.registry.users), len(users))
        self.assertEqual(self.service.registry.user("bulk2499").hostnames, ("h2499.example.net",))

    @defer.inlineCallbacks
    def test_put_bad_documents(self):
        """The document's own shape: 400 naming the place, 415 for other types."""
        etag = yield self.etag()
        before = yield self.snapshot()
        good = self.json((yield self.call("GET", "/api/config")))["users"]
        cases = [
            ([], "document"),
            ({"users": good, "colour": 1}, "colour"),
            ({"settings": {}}, "users"),
            ({"users": dict(good, format="other")}, "users.format"),
            ({"users": dict(good, version=2)}, "users.version"),
            ({"users": dict(good, users={})}, "users.users"),
        ]
        for document, field in cases:
            response = yield self.call("PUT", "/api/config", document, headers=[("If-Match", etag)])
            self.assertError(response, 400, field)
        response = yield self.call("PUT", "/api/config", raw=b'{"users": ', headers=[("If-Match", etag)])
        self.assertError(response, 400, None)
        response = yield self.call(
            "PUT",
            "/api/config",
            {"users": good},
            headers=[("If-Match", etag)],
            content_type="text/json",
        )
        self.assertError(response, 415, None)
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_put_name_conflict_atomic(self):
        """
        Two users of the document claim one name: 409, and the store rolls
        back the users it had already written.
        """
        response = yield self.call("GET", "/api/config")
        etag, body = response.header("etag"), self.json(response)
        before = yield self.snapshot()
        users = body["users"]["users"]
        users[0]["notes"] = "changed"
        users[2]["hostnames"] = ["shared.example.org"]
        users[4]["hostnames"] = ["shared.example.org"]
        response = yield self.call("PUT", "/api/config", body, headers=[("If-Match", etag)])
        self.assertError(response, 409, "users")
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_put_changed_settings(self):
        """Settings are read-only here: any difference is 400 naming it."""
        response = yield self.call("GET", "/api/config")
        etag, body = response.header("etag"), self.json(response)
        before = yield self.snapshot()
        cases = [
            (lambda s: s.update(default_ttl=99), "settings.default_ttl"),
            (lambda s: s["dns"].update(updates=False), "settings.dns"),
            (lambda s: s.update(brand_new=1), "settings.brand_new"),
            (lambda s: s.pop("suffix"), "settings.suffix"),
            (lambda s: s["admin"]["users"].update(eve=_ADMIN_HASH), "settings.admin"),
        ]
        for change, field in cases:
            document = json.loads(json.dumps(body))
            document["users"]["users"] = []  # would remove everyone
            change(document["settings"])
            response = yield self.call("PUT", "/api/config", document, headers=[("If-Match", etag)])
            self.assertError(response, 400, field)
        document = dict(body, settings=[1])
        response = yield self.call("PUT", "/api/config", document, headers=[("If-Match", etag)])
        self.assertError(response, 400, "settings")
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_put_replaces_users(self):
        """
        A good document: removed users are gone, new ones present (with a
        working password), changed names move, states kept or imported; the
        answer is the new configuration with its new ETag; DNS follows.
        """
        response = yield self.call("GET", "/api/config")
        etag, body = response.header("etag"), self.json(response)
        users = body["users"]["users"]
        del users[1]  # bob
        users[0]["hostnames"] = ["alice.example.com", "*.alice.example.net"]
        users.append(
            {
                "id": "frank",
                "password": "frank-pw",
                "hostnames": ["frank.example.org"],
                "state": {"ipv4": "198.51.100.70", "ttl": 60, "updated_at": "2024-02-03T04:05:06Z", "method": "import"},
            }
        )
        response = yield self.call("PUT", "/api/config", body, headers=[("If-Match", etag)])
        self.assertEqual(response.status, 200, response.raw)
        new_etag = response.header("etag")
        self.assertNotEqual(new_etag, etag)
        got = yield self.call("GET", "/api/config")
        self.assertEqual((got.header("etag"), got.body), (new_etag, response.body))
        listed = self.json(got)["users"]["users"]
        self.assertEqual([u["id"] for u in listed], ["alice", "carol", "dave", "erin", "frank"])
        self.assertNotIn("password", listed[4])
        # DNS: bob gone, alice's names moved, frank served from the import.
        self.assertIsNone(self.served("bob.dyn.example.com"))
        self.assertIsNone(self.served("bob.example.org"))
        self.assertIsNone(self.served("alice.example.org"))
        self.assertEqual(self.served("alice.example.com"), ("198.51.100.10", "2001:db8::10"))
        self.assertEqual(self.served("x.alice.example.net"), ("198.51.100.10", "2001:db8::10"))
        self.assertEqual(self.served("frank.example.org"), ("198.51.100.70",))
        self.assertEqual(self.service.registry.answer("frank.example.org").ttl, 60)
        stored = yield self.store.load()
        self.assertEqual(sorted(stored.users), ["alice", "carol", "dave", "erin", "frank"])
        self.assertEqual((yield self.user_checker().check("frank", "frank-pw")), "frank")
        state = self.json((yield self.call("GET", "/api/state")))["users"]
        self.assertEqual(state[1:4], [CAROL_STATE, DAVE_STATE, ERIN_STATE])
        self.assertEqual(state[4]["last_update"], "2024-02-03T04:05:06Z")
        # The old ETag is stale now.
        response = yield self.call("PUT", "/api/config", body, headers=[("If-Match", etag)])
        self.assertError(response, 412, "If-Match")

    @defer.inlineCallbacks
    def test_put_with_settings_unchanged(self):
        """The settings as read may be sent back; If-Match * skips the check."""
        body = self.json((yield self.call("GET", "/api/config")))
        body["users"]["users"] = body["users"]["users"][2:3]
        response = yield self.call("PUT", "/api/config", body, headers=[("If-Match", "*")])
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(sorted(self.service.registry.users), ["carol"])
        self.assertEqual(self.served("carol.dyn.example.com"), ())
        self.assertIsNone(self.served("alice.example.org"))

    @defer.inlineCallbacks
    def test_updatepluginconfig_alias(self):
        """PUT and POST /updatepluginconfig: PUT /api/config, same rules."""
        response = yield self.call("GET", "/getpluginconfig")
        etag, body = response.header("etag"), self.json(response)
        before = yield self.snapshot()
        body["users"]["users"] = body["users"]["users"][:3]
        response = yield self.call("POST", "/updatepluginconfig", body)
        self.assertError(response, 428, "If-Match")
        response = yield self.call("PUT", "/updatepluginconfig", body, headers=[("If-Match", '"old"')])
        self.assertError(response, 412, "If-Match")
        yield self.assertUnchanged(before)
        response = yield self.call("POST", "/updatepluginconfig", body, headers=[("If-Match", etag)])
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(sorted(self.service.registry.users), ["alice", "bob", "carol"])
        self.assertIsNone(self.served("erin.dyn.example.com"))
        etag = response.header("etag")
        body["users"]["users"] = body["users"]["users"][:1]
        response = yield self.call("PUT", "/updatepluginconfig", body, headers=[("If-Match", etag)])
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(sorted(self.service.registry.users), ["alice"])


class RoutingTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_method_not_allowed(self):
        """Other methods: 405, JSON, Allow with what the route serves."""
        cases = [
            ("POST", "/api/state", "GET"),
            ("DELETE", "/pluginstate", "GET"),
            ("DELETE", "/api/config", "GET, PUT"),
            ("POST", "/api/config", "GET, PUT"),
            ("PUT", "/getpluginconfig", "GET"),
            ("GET", "/updatepluginconfig", "PUT, POST"),
            ("POST", "/api/users/alice", "GET, PUT, PATCH, DELETE"),
            ("GET", "/api/users/alice/offline", "POST"),
            ("PUT", "/api/openapi.json", "GET"),
            ("POST", "/api/users/alice/txt", "GET"),
            ("GET", "/api/users/alice/txt/alice.dyn.example.com", "PUT, DELETE"),
            ("PUT", "/api/users/alice/acme-keys", "GET, POST"),
            ("GET", "/api/users/alice/acme-keys/00000000", "DELETE"),
        ]
        before = yield self.snapshot()
        for method, target, allow in cases:
            response = yield self.call(method, target, {})
            self.assertError(response, 405, None)
            self.assertEqual(response.header("allow"), allow)
        yield self.assertUnchanged(before)

    @defer.inlineCallbacks
    def test_unknown_paths(self):
        for target in (
            "/",
            "/api",
            "/api/users",
            "/api/users/alice/online",
            "/api/users/alice/offline/x",
            "/api/users/alice/txt/alice.dyn.example.com/x",
            "/api/state/more",
            "/status",
            "/nic/update?hostname=x",
        ):
            response = yield self.call("GET", target)
            self.assertError(response, 404, None)

    @defer.inlineCallbacks
    def test_oversized_body(self):
        """A body over the admin limit is refused with 413 before it is read."""
        request = build_request(
            "PUT",
            "/api/config",
            [
                ("Authorization", basic(ADMIN, ADMIN_PW)),
                ("Content-Type", "application/json"),
                ("Content-Length", str(MAX_ADMIN_BODY + 1)),
            ],
        )
        raw = yield threads.deferToThread(exchange, self.port_number, request)
        self.assertEqual(parse_response(raw).status, 413)
        # A large body below the limit is read and judged.
        notes = "n" * 3000
        big = {
            "users": {
                "format": "dyndns_plugin.users",
                "version": 1,
                "users": [{"id": f"u{i}", "notes": notes} for i in range(200)],
            }
        }
        response = yield self.call("PUT", "/api/config", big)
        self.assertError(response, 428, "If-Match")


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"hello admin\n"


class ExtraResourceTests(AdminTestCase):
    """C{extra} resources are mounted behind the same authentication."""

    extra = {b"hello": Hello()}

    @defer.inlineCallbacks
    def test_extra(self):
        response = yield self.call("GET", "/hello", check=False)
        self.assertEqual((response.status, response.body), (200, b"hello admin\n"))
        response = yield self.call("GET", "/hello", auth=None)
        self.assertUnauthorized(response)


#: When a value added at T1 (setUp's clock) expires: an hour later.
EXPIRES_ISO = "2023-11-14T23:14:20.250000Z"
ALICE_TXT_NAMES = [
    "_acme-challenge.alice.dyn.example.com",
    "_acme-challenge.alice.example.org",
    "_acme-challenge.alice.example.net",  # for *.alice.example.net
]


def txt_value(name: str, value: str, expires: str = EXPIRES_ISO) -> dict[str, str]:
    return {"name": name, "value": value, "expires": expires}


class AcmeTests(AdminTestCase):
    """ACME challenge values (/api/users/ID/txt) and scoped keys (/api/users/ID/acme-keys)."""

    def challenge(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        """What DNS serves at a challenge owner name: (user, values)."""
        return self.service.registry.challenge(name)

    @defer.inlineCallbacks
    def state_txt(self, user_id: str, page: str = "") -> Any:
        """The user's C{txt} in /api/state (C{page}: a query)."""
        users = self.json((yield self.call("GET", "/api/state" + page)))["users"]
        return {u["id"]: u["txt"] for u in users}.get(user_id)

    @defer.inlineCallbacks
    def test_set_and_clear(self):
        """
        PUT adds a value at the user's name (given as the name or as the
        challenge owner name, any case, a final dot or not): stored,
        served, in /api/state whole and paged; DELETE with a value removes
        that one, without one every value at the name.
        """
        listed = self.json((yield self.call("GET", "/api/users/alice/txt")))
        self.assertEqual(listed, {"id": "alice", "names": ALICE_TXT_NAMES, "txt": []})
        self.assertEqual((yield self.state_txt("alice")), [])

        response = yield self.call("PUT", "/api/users/alice/txt/alice.dyn.example.com", {"value": "token-1"})
        self.assertEqual(response.status, 200, response.raw)
        first = txt_value("_acme-challenge.alice.dyn.example.com", "token-1")
        self.assertEqual(self.json(response), {"id": "alice", "names": ALICE_TXT_NAMES, "txt": [first]})
        response = yield self.call("PUT", "/api/users/Alice/txt/_ACME-Challenge.Alice.Example.NET.", {"value": "tok-2"})
        self.assertEqual(response.status, 200, response.raw)
        second = txt_value("_acme-challenge.alice.example.net", "tok-2")
        self.assertEqual(self.json(response)["txt"], [first, second])

        self.assertEqual(self.challenge("_acme-challenge.alice.dyn.example.com"), ("alice", ("token-1",)))
        self.assertEqual(self.challenge("_acme-challenge.alice.example.net"), ("alice", ("tok-2",)))
        expires = T0 + 60 + 3600
        stored = (yield self.store.load()).states["alice"]
        self.assertEqual(
            stored.txt, (("alice.dyn.example.com", "token-1", expires), ("alice.example.net", "tok-2", expires))
        )
        # The addresses and what last changed them are untouched.
        self.assertEqual((str(stored.ipv4), stored.method), ("198.51.100.10", "ddns"))
        self.assertEqual((yield self.state_txt("alice")), [first, second])
        self.assertEqual((yield self.state_txt("alice", "?limit=1")), [first, second])
        self.assertEqual((yield self.state_txt("bob", "?limit=1&after=alice")), [])
        self.assertEqual(self.json((yield self.call("GET", "/api/users/alice/txt")))["txt"], [first, second])

        # One value goes, then every value at a name.
        yield self.call("PUT", "/api/users/alice/txt/alice.dyn.example.com", {"value": "token-3"})
        response = yield self.call("DELETE", "/api/users/alice/txt/alice.dyn.example.com?value=token-1")
        self.assertEqual(response.status, 200, response.raw)
        third = txt_value("_acme-challenge.alice.dyn.example.com", "token-3")
        self.assertEqual(self.json(response)["txt"], [second, third])
        self.assertEqual(self.challenge("_acme-challenge.alice.dyn.example.com"), ("alice", ("token-3",)))
        response = yield self.call("DELETE", "/api/users/alice/txt/_acme-challenge.alice.example.net")
        self.assertEqual(self.json(response)["txt"], [third])
        self.assertIsNone(self.challenge("_acme-challenge.alice.example.net"))
        # Nothing left to remove: 200, unchanged.
        response = yield self.call("DELETE", "/api/users/alice/txt/alice.example.net?value=tok-2")
        self.assertEqual((response.status, self.json(response)["txt"]), (200, [third]))
        yield self.call("DELETE", "/api/users/alice/txt/alice.dyn.example.com")
        self.assertEqual((yield self.store.load()).states["alice"].txt, ())
        self.assertEqual((yield self.state_txt("alice")), [])

    @defer.inlineCallbacks
    def test_values_expire(self):
        """A value leaves the store, DNS and /api/state at the end of its lifetime."""
        yield self.call("PUT", "/api/users/carol/txt/carol.dyn.example.com", {"value": "v"})
        self.assertEqual(self.challenge("_acme-challenge.carol.dyn.example.com"), ("carol", ("v",)))
        self.clock.advance(3600)
        self.assertIsNone(self.challenge("_acme-challenge.carol.dyn.example.com"))
        self.assertEqual((yield self.state_txt("carol")), [])
        self.assertEqual((yield self.store.load()).states["carol"].txt, ())

    @defer.inlineCallbacks
    def test_set_refused(self):
        """
        Not the user's name, an unknown user, a bad value or body, a fifth
        value at one name, a disabled user: the error names the field and
        nothing changes.
        """
        for value in ("a", "b", "c", "d"):
            response = yield self.call("PUT", "/api/users/bob/txt/bob.example.org", {"value": value})
            self.assertEqual(response.status, 200, response.raw)
        before = yield self.snapshot()
        body = self.assertError(
            (yield self.call("PUT", "/api/users/bob/txt/bob.example.org", {"value": "e"})), 409, "value"
        )
        self.assertIn("4 values", body["error"])
        for name in (
            "alice.dyn.example.com",  # another user's
            "_acme-challenge.alice.example.org",
            "www.bob.example.org",  # under the user's name, not the name
            "x.alice.example.net",  # covered by alice's wildcard, not its base
            "dyn.example.com",
            "_acme-challenge._acme-challenge.bob.example.org",
        ):
            response = yield self.call("PUT", f"/api/users/bob/txt/{name}", {"value": "v"})
            self.assertError(response, 404, "name")
            self.assertError((yield self.call("DELETE", f"/api/users/bob/txt/{name}")), 404, "name")
        self.assertError((yield self.call("GET", "/api/users/zed/txt")), 404, "id")
        self.assertError((yield self.call("PUT", "/api/users/zed/txt/zed.dyn.example.com", {"value": "v"})), 404, "id")
        self.assertError((yield self.call("DELETE", "/api/users/zed/txt/zed.dyn.example.com")), 404, "id")
        target = "/api/users/carol/txt/carol.dyn.example.com"
        for value in ("", "x" * 256, "caf\u00e9", "tab\there", 5, None):
            self.assertError((yield self.call("PUT", target, {"value": value})), 400, "value")
        self.assertError((yield self.call("DELETE", target + "?value=")), 400, "value")
        self.assertError((yield self.call("PUT", target, {})), 400, "value")
        self.assertError((yield self.call("PUT", target, {"value": "v", "ttl": 5})), 400, "ttl")
        self.assertError((yield self.call("PUT", target, ["v"])), 400, None)
        self.assertError((yield self.call("PUT", target, {"value": "v"}, content_type="text/plain")), 415, None)
        # dave is disabled: no changes to his values either.
        self.assertError((yield self.call("PUT", "/api/users/dave/txt/dave.example.org", {"value": "v"})), 409, None)
        yield self.assertUnchanged(before)
        # The longest value is taken.
        response = yield self.call("PUT", target, {"value": "x" * 255})
        self.assertEqual(response.status, 200, response.raw)

    @defer.inlineCallbacks
    def test_keys(self):
        """
        POST makes a key and answers its secret once; the store keeps only
        its SHA-256; the list, /api/config, /api/state and the logs never
        show the secret or the hash; DELETE revokes it.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        keys = "/api/users/alice/acme-keys"
        self.assertEqual(self.json((yield self.call("GET", keys))), {"id": "alice", "keys": []})
        response = yield self.call("POST", keys, {"label": "certbot on the NAS"})
        self.assertEqual(response.status, 201, response.raw)
        created = self.json(response)
        self.assertEqual(set(created), {"key_id", "label", "created", "secret"})
        self.assertEqual((created["label"], created["created"]), ("certbot on the NAS", T1_ISO))
        secret = created["secret"]
        self.assertGreaterEqual(len(secret), 32)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        (stored,) = yield self.store.acme_keys("alice")
        self.assertEqual(
            (stored.key_id, stored.secret_sha256, stored.label), (created["key_id"], digest, "certbot on the NAS")
        )
        self.clock.advance(1)  # listed oldest first
        second = self.json((yield self.call("POST", keys, {})))
        self.assertEqual(second["label"], "")
        self.assertNotEqual(second["secret"], secret)

        listed = yield self.call("GET", keys)
        self.assertEqual(
            self.json(listed),
            {
                "id": "alice",
                "keys": [
                    {"key_id": created["key_id"], "label": "certbot on the NAS", "created": T1_ISO},
                    {"key_id": second["key_id"], "label": "", "created": "2023-11-14T22:14:21.250000Z"},
                ],
            },
        )
        for response in (listed, (yield self.call("GET", "/api/config")), (yield self.call("GET", "/api/state"))):
            for text in (secret, digest, second["secret"]):
                self.assertNotIn(text.encode(), response.body)
        self.assertEqual((yield self.store.acme_keys("bob")), [])

        response = yield self.call("DELETE", f"{keys}/{created['key_id']}")
        self.assertEqual((response.status, response.body), (204, b""))
        self.assertEqual([k.key_id for k in (yield self.store.acme_keys("alice"))], [second["key_id"]])
        self.assertError((yield self.call("DELETE", f"{keys}/{created['key_id']}")), 404, "key_id")
        self.assertError((yield self.call("DELETE", f"/api/users/bob/acme-keys/{second['key_id']}")), 404, "key_id")
        logged = "\n".join(repr(event) for event in events)
        self.assertIn("acme-key-add", logged)  # audited
        for text in (secret, digest, second["secret"]):
            self.assertNotIn(text, logged)

    @defer.inlineCallbacks
    def test_keys_refused(self):
        """Unknown users are 404; a bad label or body 400; nothing is stored."""
        self.assertError((yield self.call("GET", "/api/users/zed/acme-keys")), 404, "id")
        self.assertError((yield self.call("POST", "/api/users/zed/acme-keys", {"label": "x"})), 404, "id")
        self.assertError((yield self.call("DELETE", "/api/users/zed/acme-keys/00000000")), 404, "id")
        keys = "/api/users/alice/acme-keys"
        for label in (5, None, "x" * 101, "line\nbreak"):
            self.assertError((yield self.call("POST", keys, {"label": label})), 400, "label")
        self.assertError((yield self.call("POST", keys, {"secret": "mine"})), 400, "secret")
        self.assertError((yield self.call("POST", keys, "label")), 400, None)
        self.assertError((yield self.call("POST", keys, {}, content_type="text/plain")), 415, None)
        self.assertEqual((yield self.store.acme_keys("alice")), [])


class OpenAPITests(AdminTestCase):
    def test_document_is_valid(self):
        openapi_spec_validator.validate(DOCUMENT)

    def test_contract_checker_refuses(self):
        """The checker itself fails on an undeclared status and a wrong body."""
        bad_status = parse_response(b"HTTP/1.1 418 Teapot\r\nContent-Length: 2\r\n\r\n{}")
        self.assertRaises(AssertionError, CONTRACT.check, "GET", "/api/state", bad_status)
        body = b'{"users": [{"id": "a"}]}'
        bad_body = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.assertRaises(AssertionError, CONTRACT.check, "GET", "/api/state", bad_body)
        error = b'{"error": "x", "field": null}'
        wrong_allow = parse_response(
            b"HTTP/1.1 405 No\r\nAllow: GET\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(error), error)
        )
        right_allow = parse_response(wrong_allow.raw.replace(b"Allow: GET", b"Allow: GET, PUT"))
        self.assertIsNone(CONTRACT.check("POST", "/api/config", right_allow))
        self.assertRaises(AssertionError, CONTRACT.check, "POST", "/api/config", wrong_allow)

    @defer.inlineCallbacks
    def test_served_document(self):
        response = yield self.call("GET", "/api/openapi.json")
        self.assertEqual(response.status, 200)
        self.assertEqual(self.json(response), DOCUMENT)


class AdminLockoutTests(AdminTestCase):
    @defer.inlineCallbacks
    def test_wrong_passwords_lock_the_source_out(self):
        """
        Ten wrong admin passwords from one source: 401 each (counted as
        failures of method admin), then 429 with Retry-After even for the
        right password and a bearer token, without a password check; after
        the lockout the right password works again.
        """
        # No refusal delay: the service runs on a task.Clock here.
        self.service.limiter = Limiter(self.clock, LimitSettings(refusal_delay=0))
        failures: list[str] = []
        locked: list[str] = []
        self.service.on_auth_failure.append(failures.append)
        self.service.on_auth_locked.append(locked.append)
        for _ in range(10):
            self.assertUnauthorized((yield self.call("GET", "/api/state", auth=basic(ADMIN, "x"))))
        self.assertEqual(failures, ["admin"] * 10)
        for auth in ("basic", "bearer"):
            response = yield self.call("GET", "/api/state", auth=auth)
            self.assertError(response, 429, None)
            self.assertEqual(response.header("retry-after"), "60")
        self.assertEqual(locked, ["admin", "admin"])
        self.clock.advance(61)
        response = yield self.call("GET", "/api/state")
        self.assertEqual(response.status, 200, response.raw)


class OpenAPICoverageTests(AdminTestCase):
    @defer.inlineCallbacks
    def attach_host_zone(self):
        """A zone publisher with the host zone example.net, which an update gave an A RRset at www."""
        folder = self.mktemp()
        os.makedirs(folder)
        path = os.path.join(folder, "example.net.zone")
        with open(path, "w") as f:
            f.write("@ 300 IN SOA ns1.example.net. h.example.net. 5 3600 600 86400 60\n@ 300 IN NS ns1.example.net.\n")
        publisher = ZonePublisher(self.service, [example_suffix_zone(1), load_zone_file(path, "example.net")])
        yield defer.ensureDeferred(publisher._load())
        self.site.resource.publisher = publisher
        yield self.set_www(publisher)
        return publisher

    @staticmethod
    def set_www(publisher: ZonePublisher) -> defer.Deferred[None]:
        www = ("www.example.net", 1)
        rrset = (("www.example.net", 1, 60, bytes([192, 0, 2, 1])),)
        return defer.ensureDeferred(publisher.update_host_zone("example.net", lambda zone, pending: {www: rrset}))

    @defer.inlineCallbacks
    def test_host_zones(self):
        """GET /api/zones lists the update's RRset; DELETE takes it back (a new serial); bad names are 404/400."""
        publisher = yield self.attach_host_zone()
        listed = self.json((yield self.call("GET", "/api/zones")))
        self.assertEqual(
            listed,
            {
                "zones": [
                    {
                        "origin": "example.net",
                        "serial": 6,
                        "updates": False,
                        "updated": [{"name": "www.example.net", "type": "A", "ttl": 60, "data": ["192.0.2.1"]}],
                    }
                ]
            },
        )
        cleared = yield self.call("DELETE", "/api/zones/example.net/WWW.example.net./A")
        self.assertEqual(self.json(cleared), {"origin": "example.net", "serial": 7, "updates": False, "updated": []})
        self.assertEqual(publisher.by_origin["example.net"].updated, {})
        self.assertError((yield self.call("DELETE", "/api/zones/example.org/www.example.org")), 404, None)
        self.assertError((yield self.call("DELETE", "/api/zones/example.net/www.example.org")), 404, None)
        self.assertError((yield self.call("DELETE", "/api/zones/example.net/www.example.net/NOPE")), 400, "type")

    @defer.inlineCallbacks
    def test_state_lists_zones_and_config_hides_zone_keys(self):
        """
        With a host zone that takes updates, /api/state (whole and paged)
        ends with the zones' updated RRsets; /api/config never shows a zone
        key's secret.
        """
        yield self.attach_host_zone()
        dns_table = {
            "listen": ["127.0.0.1:5353"],
            "zones": [
                {
                    "origin": "example.net",
                    "file": "example.net.zone",
                    "update_keys": [{"name": "dhcp", "secret": "c2VjcmV0c2VjcmV0c2VjcmV0"}],
                }
            ],
        }
        settings = attrs.evolve(self.settings, dns=settings_from_dict({"dns": dns_table}).dns)
        self.site.resource.settings = settings
        expected = [
            {
                "origin": "example.net",
                "serial": 6,
                "updates": True,
                "updated": [{"name": "www.example.net", "type": "A", "ttl": 60, "data": ["192.0.2.1"]}],
            }
        ]
        self.assertEqual(self.json((yield self.call("GET", "/api/state")))["zones"], expected)
        page = self.json((yield self.call("GET", "/api/state?limit=2")))
        self.assertEqual((page["next"], page["zones"]), ("bob", expected))
        config = yield self.call("GET", "/api/config")
        self.assertNotIn(b"c2VjcmV0c2VjcmV0c2VjcmV0", config.body)
        (zone,) = self.json(config)["settings"]["dns"]["zones"]
        self.assertEqual(zone["update_keys"][0]["name"], "dhcp")
        self.assertIsNone(zone["update_keys"][0]["secret"])

    @defer.inlineCallbacks
    def test_every_declared_response(self):
        """
        One sequence of calls that produces every (path, method, status) the
        document declares; each answer is checked against its schema on the
        way (see L{AdminTestCase.call}).
        """
        users_doc = {"format": "dyndns_plugin.users", "version": 1, "users": []}
        # 401 on every operation.
        for path, item in DOCUMENT["paths"].items():
            target = path.replace("{id}", "alice")
            for method in OpenAPIContract.METHODS:
                if method in item:
                    body = NO_BODY if method in ("get", "delete") else {}
                    yield self.call(method.upper(), target, body, auth=None)
        yield self.call("GET", "/api/state")
        yield self.call("GET", "/api/state?limit=0")
        yield self.call("GET", "/pluginstate")
        yield self.call("GET", "/pluginstate?limit=x")
        yield self.call("GET", "/api/openapi.json")
        yield self.call("GET", "/getpluginconfig")
        # Users.
        yield self.call("GET", "/api/users/alice")
        yield self.call("GET", "/api/users/zed")
        yield self.call("PUT", "/api/users/frank", {"password": "frank-pw"})
        yield self.call("PUT", "/api/users/frank", {"password": "frank-pw", "notes": "n"})
        yield self.call("PUT", "/api/users/frank", {"hostnames": ["bad name"]})
        yield self.call("PUT", "/api/users/frank", {"hostnames": ["alice.example.org"]})
        yield self.call("PUT", "/api/users/frank", {}, content_type="text/plain")
        yield self.call("PATCH", "/api/users/frank", {"notes": "m"})
        yield self.call("PATCH", "/api/users/frank", {"hostnames": ["bad name"]})
        yield self.call("PATCH", "/api/users/frank", {"hostnames": ["alice.example.org"]})
        yield self.call("PATCH", "/api/users/frank", {}, content_type="text/plain")
        yield self.call("PATCH", "/api/users/zed", {"notes": "m"})
        yield self.call("DELETE", "/api/users/frank")
        yield self.call("DELETE", "/api/users/frank")
        # Offline.
        yield self.call("POST", "/api/users/alice/offline", {})
        yield self.call("POST", "/api/users/zed/offline", {})
        yield self.call("POST", "/api/users/alice/offline", {}, content_type="text/plain")
        yield self.call("POST", "/api/users/alice/offline", raw=b"{")
        yield self.call("POST", "/api/users/dave/offline", {})
        # ACME challenge values: 200, 404 (user, then name), 400, 409 (too many, disabled), 415.
        txt = "/api/users/alice/txt"
        yield self.call("GET", txt)
        yield self.call("GET", "/api/users/zed/txt")
        for value in ("v1", "v2", "v3", "v4", "v5"):
            yield self.call("PUT", f"{txt}/alice.dyn.example.com", {"value": value})
        yield self.call("PUT", f"{txt}/alice.dyn.example.com", {"value": ""})
        yield self.call("PUT", f"{txt}/bob.dyn.example.com", {"value": "v"})
        yield self.call("PUT", "/api/users/zed/txt/zed.dyn.example.com", {"value": "v"})
        yield self.call("PUT", f"{txt}/alice.dyn.example.com", {"value": "v"}, content_type="text/plain")
        yield self.call("PUT", "/api/users/dave/txt/dave.dyn.example.com", {"value": "v"})
        yield self.call("DELETE", f"{txt}/_acme-challenge.alice.dyn.example.com?value=v1")
        yield self.call("DELETE", f"{txt}/alice.dyn.example.com?value=")
        yield self.call("DELETE", f"{txt}/bob.dyn.example.com")
        yield self.call("DELETE", "/api/users/dave/txt/dave.dyn.example.com")
        # Scoped ACME keys.
        keys = "/api/users/alice/acme-keys"
        yield self.call("GET", keys)
        yield self.call("GET", "/api/users/zed/acme-keys")
        created = self.json((yield self.call("POST", keys, {"label": "certbot"})))
        yield self.call("POST", keys, {"label": 7})
        yield self.call("POST", "/api/users/zed/acme-keys", {})
        yield self.call("POST", keys, {}, content_type="text/plain")
        yield self.call("DELETE", f"{keys}/{created['key_id']}")
        yield self.call("DELETE", f"{keys}/{created['key_id']}")
        # The configuration, and its alias with both methods.
        for method, target in (("PUT", "/api/config"), ("PUT", "/updatepluginconfig"), ("POST", "/updatepluginconfig")):
            current = yield self.call("GET", "/api/config")
            etag, body = current.header("etag"), self.json(current)
            yield self.call(method, target, body)  # 428
            yield self.call(method, target, body, headers=[("If-Match", '"stale"')])  # 412
            yield self.call(method, target, {"users": dict(users_doc, version=7)}, headers=[("If-Match", etag)])  # 400
            yield self.call(method, target, body, headers=[("If-Match", etag)], content_type="text/plain")  # 415
            conflict = json.loads(json.dumps(body))
            conflict["users"]["users"][0]["hostnames"] = ["bob.example.org"]
            yield self.call(method, target, conflict, headers=[("If-Match", etag)])  # 409
            yield self.call(method, target, body, headers=[("If-Match", etag)])  # 200
        # Host zones.
        publisher = yield self.attach_host_zone()
        yield self.call("GET", "/api/zones")
        yield self.call("DELETE", "/api/zones/example.net/www.example.net")
        yield self.set_www(publisher)
        yield self.call("DELETE", "/api/zones/example.net/www.example.net/A")
        yield self.call("DELETE", "/api/zones/example.net/www.example.net/NOPE")
        yield self.call("DELETE", "/api/zones/example.org/www.example.org")
        yield self.call("DELETE", "/api/zones/example.org/www.example.org/A")
        yield self.set_www(publisher)
        yield self.call("PUT", f"{txt}/alice.dyn.example.com", {"value": "v1"})
        # The store fails: 503 from every operation that writes.
        self.store.fail_writes = StoreError("disk gone")
        yield self.call("DELETE", "/api/zones/example.net/www.example.net")
        yield self.call("DELETE", "/api/zones/example.net/www.example.net/A")
        etag = yield self.etag()
        body = self.json((yield self.call("GET", "/api/config")))
        yield self.call("PUT", "/api/users/frank", {"password": "frank-pw"})
        yield self.call("PATCH", "/api/users/alice", {"notes": "n"})
        yield self.call("DELETE", "/api/users/alice")
        yield self.call("POST", "/api/users/carol/offline", {})
        yield self.call("PUT", "/api/users/carol/txt/carol.dyn.example.com", {"value": "v"})
        yield self.call("DELETE", f"{txt}/alice.dyn.example.com")
        yield self.call("POST", "/api/users/carol/acme-keys", {})
        yield self.call("DELETE", f"{keys}/{created['key_id']}")
        for method, target in (("PUT", "/api/config"), ("PUT", "/updatepluginconfig"), ("POST", "/updatepluginconfig")):
            yield self.call(method, target, body, headers=[("If-Match", etag)])
        self.store.fail_writes = None
        self.flushLoggedErrors(StoreError)  # the service logs the failed state write (and zone clears)
        # 429 on every operation once this source is locked out (answered at
        # once: the service runs on a task.Clock here).
        self.service.limiter = Limiter(self.clock, LimitSettings(refusal_delay=0))
        for _ in range(self.service.limiter.settings.source_failures):
            yield self.call("GET", "/api/state", auth=basic(ADMIN, "wrong"))
        for path, item in DOCUMENT["paths"].items():
            target = path.replace("{id}", "alice")
            for method in OpenAPIContract.METHODS:
                if method in item:
                    body = NO_BODY if method in ("get", "delete") else {}
                    response = yield self.call(method.upper(), target, body)
                    self.assertEqual(response.status, 429, response.raw)
        missing = CONTRACT.declared() - self.seen
        self.assertEqual(missing, set(), f"declared but never exercised: {sorted(missing)}")
