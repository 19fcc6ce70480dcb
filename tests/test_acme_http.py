"""
The ACME HTTP APIs (L{dyndns_plugin.protocols.acme_http}): acme-dns's
C{/acme-dns/update} and C{/acme-dns/register}, lego's httpreq
C{/acme/present} and C{/acme/cleanup}, every answer, against the real site
on a real socket; and the seam's C{check_acme}.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from typing import Any

import attrs
from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.acme import AcmeSettings, new_key
from dyndns_plugin.limits import Limiter, LimitSettings
from dyndns_plugin.protocols import acme_http
from dyndns_plugin.protocols.acme_http import AcmeDnsUpdateResource, BadBody, HttpreqResource, json_body, raw_value
from dyndns_plugin.store import StoreError
from tests.web_helpers import SUFFIX, WebTestCase

UPDATE = "/dyndns/acme-dns/update"
REGISTER = "/dyndns/acme-dns/register"
PRESENT = "/dyndns/acme/present"
CLEANUP = "/dyndns/acme/cleanup"
MAIN = f"alice.{SUFFIX}"
CHALLENGE = f"_acme-challenge.{MAIN}"
#: Key authorization digests as ACME clients compute them: 43 characters.
V1 = "LHDhK3oGRvkiefQnx7OOczTY5Tic_xZ6HcMOc_gmtoM"
V2 = "a" * 43
V3 = "b" * 43
REALM = 'Basic realm="DynDNS ACME"'


class AcmeTestCase(WebTestCase):
    """The web test setup with a scoped key for alice and carol (disabled)."""

    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.key = yield self.add_key("alice")
        self.carol_key = yield self.add_key("carol")

    @defer.inlineCallbacks
    def add_key(self, user_id: str):
        key, secret = new_key("test", 0.0)
        yield self.store.add_acme_key(user_id, key)
        return secret

    def set_acme(self, **changes: Any) -> None:
        """Change C{[acme]}: the resources read it at every request."""
        self.service.acme = attrs.evolve(self.service.acme, **changes)

    def lock_after(self, failures: int) -> None:
        """Lock a source out after C{failures} failures, refusals answered at once."""
        self.service.limiter = Limiter(reactor, LimitSettings(source_failures=failures, refusal_delay=0))

    def post(
        self,
        target: str,
        body: Any,
        headers: list[tuple[str, str]] | None = None,
        auth: tuple[str, str] | None = None,
        method: str = "POST",
        check: bool = True,
    ):
        """POST C{body} (JSON unless bytes) to C{target}."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        pairs = [("Content-Type", "application/json"), *(headers or [])]
        return self.request(target, pairs, method=method, body=data, auth=auth, check=check)

    def values(self, name: str = CHALLENGE) -> tuple[str, ...]:
        """The values DNS serves at C{name} now."""
        found = self.service.registry.challenge(name)
        return () if found is None else found[1]

    def assertJSON(self, response, status: int, body: Any) -> None:
        self.assertEqual(response.status, status, response.raw)
        self.assertEqual(response.header("content-type"), "application/json", response.raw)
        self.assertEqual(json.loads(response.body), body)

    def assertError(self, response, status: int, error: str) -> None:
        self.assertJSON(response, status, {"error": error})


# -- acme-dns


class AcmeDnsUpdateTests(AcmeTestCase):
    def update(self, body: Any, user: str = "alice", key: str | None = None, **kwargs: Any):
        headers = [("X-Api-User", user), ("X-Api-Key", self.key if key is None else key)]
        return self.post(UPDATE, body, headers, **kwargs)

    @defer.inlineCallbacks
    def test_update(self):
        """A scoped key sets the value: 200 {"txt"}, served at the user's challenge name before the answer."""
        seen = []
        answer = AcmeDnsUpdateResource.answer

        def spy(resource, request, body, code=200, headers=None):
            seen.append(self.service.registry.challenge(CHALLENGE))
            answer(resource, request, body, code, headers)

        self.patch(AcmeDnsUpdateResource, "answer", spy)
        response = yield self.update({"subdomain": "alice", "txt": V1})
        self.assertJSON(response, 200, {"txt": V1})
        self.assertEqual(seen, [("alice", (V1,))])
        self.assertEqual(self.values(), (V1,))
        stored = self.successResultOf(self.store.load()).states["alice"]
        self.assertEqual([(n, v) for n, v, _ in stored.txt], [(MAIN, V1)])

    @defer.inlineCallbacks
    def test_goacmedns_capitals(self):
        """lego's goacmedns sends C{SubDomain} and C{Txt}: keys match in any case."""
        response = yield self.update({"SubDomain": "alice", "Txt": V1})
        self.assertJSON(response, 200, {"txt": V1})
        self.assertEqual(self.values(), (V1,))

    @defer.inlineCallbacks
    def test_any_content_type(self):
        """The body is JSON whatever C{Content-Type} says (C{curl -d} sends a form type)."""
        body = json.dumps({"subdomain": "alice", "txt": V1}).encode()
        headers = [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Api-User", "alice"),
            ("X-Api-Key", self.key),
        ]
        response = yield self.request(UPDATE, headers, method="POST", body=body)
        self.assertJSON(response, 200, {"txt": V1})

    @defer.inlineCallbacks
    def test_keeps_two_newest(self):
        """As acme-dns: the two most recent values (a name and its wildcard), the oldest dropped."""
        for value in (V1, V2, V3):
            response = yield self.update({"subdomain": "alice", "txt": value})
            self.assertJSON(response, 200, {"txt": value})
        self.assertEqual(self.values(), (V2, V3))

    @defer.inlineCallbacks
    def test_same_value_again(self):
        """The same value again: 200 (nochg)."""
        yield self.update({"subdomain": "alice", "txt": V1})
        response = yield self.update({"subdomain": "alice", "txt": V1})
        self.assertJSON(response, 200, {"txt": V1})
        self.assertEqual(self.values(), (V1,))

    @defer.inlineCallbacks
    def test_addresses_untouched(self):
        """A scoped key changes the challenge values only: addresses and status stay."""
        yield self.set_state("alice", "192.0.2.1")
        response = yield self.update({"subdomain": "ALICE", "txt": V1})
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(self.served(MAIN), ("192.0.2.1",))
        self.assertEqual(self.state("alice").method, "test")

    @defer.inlineCallbacks
    def test_password(self):
        """The user's password works while C{acme.passwords} is on, not after."""
        response = yield self.update({"subdomain": "alice", "txt": V1}, key="s3cret")
        self.assertJSON(response, 200, {"txt": V1})
        self.set_acme(passwords=False)
        response = yield self.update({"subdomain": "alice", "txt": V2}, key="s3cret")
        self.assertError(response, 401, "forbidden")
        response = yield self.update({"subdomain": "alice", "txt": V2})
        self.assertJSON(response, 200, {"txt": V2})

    @defer.inlineCallbacks
    def test_forbidden(self):
        """A wrong key, another user's key, an unknown user, missing headers: 401 forbidden."""
        bob_key = yield self.add_key("bob")
        for user, key in (("alice", "wrong"), ("alice", bob_key), ("nobody", self.key), ("alice", "")):
            response = yield self.update({"subdomain": user, "txt": V1}, user=user, key=key)
            self.assertError(response, 401, "forbidden")
        response = yield self.post(UPDATE, {"subdomain": "alice", "txt": V1})
        self.assertError(response, 401, "forbidden")
        self.assertEqual(self.values(), ())

    @defer.inlineCallbacks
    def test_disabled(self):
        """A disabled user's right key: 403, nothing set."""
        response = yield self.update({"subdomain": "carol", "txt": V1}, user="carol", key=self.carol_key)
        self.assertError(response, 403, "disabled")
        self.assertEqual(self.values(f"_acme-challenge.carol.{SUFFIX}"), ())

    @defer.inlineCallbacks
    def test_bad_subdomain(self):
        """A subdomain that is not the authenticated user's id (or none): 400 bad_subdomain."""
        for body in ({"subdomain": "bob", "txt": V1}, {"txt": V1}, {"subdomain": 1, "txt": V1}):
            response = yield self.update(body)
            self.assertError(response, 400, "bad_subdomain")
        self.assertEqual(self.values(f"_acme-challenge.bob.{SUFFIX}"), ())
        self.assertEqual(self.values(), ())

    @defer.inlineCallbacks
    def test_bad_txt(self):
        """Empty, too long, not printable ASCII, not a string, missing: 400 bad_txt."""
        for txt in ("", "x" * 256, "caf\u00e9", "a\nb", 5, None):
            response = yield self.update({"subdomain": "alice", "txt": txt})
            self.assertError(response, 400, "bad_txt")
        self.assertEqual(self.values(), ())

    @defer.inlineCallbacks
    def test_malformed_json(self):
        """A body that is not JSON, or not a JSON object: 400 malformed_json_payload."""
        for body in (b"", b"not json", b"[1, 2]", b'"alice"', b"null", b"\xff\xfe", b"[" * 3000):
            response = yield self.update(body)
            self.assertError(response, 400, "malformed_json_payload")

    @defer.inlineCallbacks
    def test_malformed_json_unauthenticated(self):
        """Credentials come first: a stranger's bad body is 401, not 400."""
        response = yield self.update(b"not json", key="wrong")
        self.assertError(response, 401, "forbidden")

    @defer.inlineCallbacks
    def test_too_large(self):
        """Bodies over 4 KiB: 413 (over the site's 16 KiB the request is cut off with 413 too)."""
        padded = {"subdomain": "alice", "txt": V1, "pad": "x" * acme_http.MAX_BODY}
        response = yield self.update(padded)
        self.assertError(response, 413, "payload_too_large")
        response = yield self.update({"subdomain": "alice", "txt": V1, "pad": "x" * 20000}, check=False)
        self.assertEqual(response.status, 413)
        self.assertEqual(self.values(), ())

    @defer.inlineCallbacks
    def test_other_methods(self):
        """GET and HEAD: 405 with C{Allow: POST}."""
        for method in ("GET", "HEAD"):
            response = yield self.request(UPDATE, method=method)
            self.assertEqual(response.status, 405, response.raw)
            self.assertEqual(response.header("allow"), "POST")

    @defer.inlineCallbacks
    def test_switched_off(self):
        """C{acme.acme_dns} off, or C{acme.enabled} off: 404 as an unknown path."""
        self.set_acme(acme_dns=False)
        response = yield self.update({"subdomain": "alice", "txt": V1})
        self.assertEqual((response.status, response.body), (404, b"not found\n"))
        self.set_acme(acme_dns=True, enabled=False)
        response = yield self.update({"subdomain": "alice", "txt": V1})
        self.assertEqual(response.status, 404)
        response = yield self.request("/dyndns/acme-dns/", method="POST", body=b"")
        self.assertEqual(response.status, 404)
        self.assertEqual(self.values(), ())

    @defer.inlineCallbacks
    def test_lockout(self):
        """Wrong keys count: once locked, even the right key gets 429 with Retry-After, unchecked."""
        self.lock_after(3)
        reads = []
        keys = self.store.acme_keys
        self.patch(self.store, "acme_keys", lambda user_id: reads.append(user_id) or keys(user_id))
        for _ in range(3):
            response = yield self.update({"subdomain": "alice", "txt": V1}, key="wrong")
            self.assertError(response, 401, "forbidden")
        self.assertEqual(reads, ["alice"] * 3)
        response = yield self.update({"subdomain": "alice", "txt": V1})
        self.assertError(response, 429, "too_many_requests")
        self.assertGreaterEqual(int(response.header("retry-after") or 0), 1)
        self.assertEqual(reads, ["alice"] * 3)  # refused unchecked
        self.assertEqual(self.values(), ())

    @defer.inlineCallbacks
    def test_rate_limited(self):
        """The user's change limit: 429 with Retry-After."""
        self.service.limiter = Limiter(reactor, LimitSettings(update_changes=1))
        response = yield self.update({"subdomain": "alice", "txt": V1})
        self.assertEqual(response.status, 200, response.raw)
        response = yield self.update({"subdomain": "alice", "txt": V2})
        self.assertError(response, 429, "too_many_requests")
        self.assertIsNotNone(response.header("retry-after"))
        self.assertEqual(self.values(), (V1,))

    @defer.inlineCallbacks
    def test_store_fails(self):
        """The store fails the write: 503 db_error, nothing served."""
        self.store.fail_writes = StoreError("disk gone")
        response = yield self.update({"subdomain": "alice", "txt": V1})
        self.store.fail_writes = None
        self.assertError(response, 503, "db_error")
        self.assertEqual(self.values(), ())
        self.flushLoggedErrors(StoreError)

    @defer.inlineCallbacks
    def test_key_store_fails(self):
        """The store cannot read the keys: 503 db_error, not a 500 or a counted failure."""

        def failing(user_id):
            return defer.fail(StoreError("disk gone"))

        self.patch(self.store, "acme_keys", failing)
        response = yield self.update({"subdomain": "alice", "txt": V1})
        self.assertError(response, 503, "db_error")
        self.assertIsNone(self.service.limiter.locked("127.0.0.1", "alice"))


class ScopedKeyLimitTests(AcmeTestCase):
    """A scoped key is no password: the address update methods refuse it."""

    @defer.inlineCallbacks
    def test_nic_update_refuses_key(self):
        """C{/nic/update} with a scoped key as the password: 401 badauth, no address."""
        response = yield self.request("/nic/update?myip=192.0.2.9", auth=("alice", self.key))
        self.assertEqual(response.status, 401, response.raw)
        self.assertEqual(response.body, b"badauth\n")
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_ddns_refuses_key(self):
        """C{<base>ddns} with a scoped key (URL or Basic): refused, no address."""
        response = yield self.request(f"/dyndns/ddns?user=alice&pw={self.key}&ip=192.0.2.9")
        self.assertIn(b"Incorrect user ID or password", response.body)
        response = yield self.request("/dyndns/ddns?ip=192.0.2.9", auth=("alice", self.key))
        self.assertEqual(response.status, 401, response.raw)
        self.assertIsNone(self.state("alice"))


class AcmeDnsRegisterTests(AcmeTestCase):
    @defer.inlineCallbacks
    def setUp(self):
        yield super().setUp()
        self.set_acme(acme_dns_register=True)

    def register(self, body: Any = b"", auth: tuple[str, str] | None = ("alice", "s3cret"), **kwargs: Any):
        return self.post(REGISTER, body, auth=auth, **kwargs)

    @defer.inlineCallbacks
    def test_off_by_default(self):
        """C{acme.acme_dns_register} is off by default: 404, no key made."""
        self.set_acme(acme_dns_register=AcmeSettings().acme_dns_register)
        response = yield self.register()
        self.assertEqual((response.status, response.body), (404, b"not found\n"))
        self.assertEqual(len(self.successResultOf(self.store.acme_keys("alice"))), 1)

    @defer.inlineCallbacks
    def test_off_with_acme_dns(self):
        """Register is part of the acme-dns API: with it off, 404."""
        self.set_acme(acme_dns=False)
        response = yield self.register()
        self.assertEqual(response.status, 404)

    @defer.inlineCallbacks
    def test_register(self):
        """With the password: 201, acme-dns's fields, a new key for the same user that then works."""
        response = yield self.register()
        self.assertEqual(response.status, 201, response.raw)
        self.assertEqual(response.header("content-type"), "application/json")
        body = json.loads(response.body)
        secret = body.pop("password")
        self.assertEqual(
            body,
            {"username": "alice", "fulldomain": CHALLENGE, "subdomain": "alice", "allowfrom": []},
        )
        self.assertEqual(len(secret), 40)
        keys = self.successResultOf(self.store.acme_keys("alice"))
        self.assertEqual(len(keys), 2)
        self.assertNotIn(secret, repr(keys))
        self.assertEqual(sorted(self.service.registry.users), ["alice", "bob", "carol"])
        headers = [("X-Api-User", body["username"]), ("X-Api-Key", secret)]
        response = yield self.post(UPDATE, {"subdomain": body["subdomain"], "txt": V1}, headers)
        self.assertJSON(response, 200, {"txt": V1})
        self.assertEqual(self.values(body["fulldomain"]), (V1,))
        self.set_acme(passwords=False)  # the new key, not the password
        response = yield self.post(PRESENT, {"fqdn": CHALLENGE + ".", "value": V2}, auth=("alice", secret))
        self.assertEqual(response.status, 200, response.raw)

    @defer.inlineCallbacks
    def test_register_api_headers(self):
        """The password in acme-dns's headers works too; an empty allowfrom is fine."""
        headers = [("X-Api-User", "Alice"), ("X-Api-Key", "s3cret")]
        response = yield self.register({"allowfrom": []}, auth=None, headers=headers)
        self.assertEqual(response.status, 201, response.raw)
        self.assertEqual(json.loads(response.body)["username"], "alice")

    @defer.inlineCallbacks
    def test_scoped_key_cannot_register(self):
        """A scoped key makes no more keys: 401."""
        response = yield self.register(auth=("alice", self.key))
        self.assertError(response, 401, "forbidden")
        response = yield self.register(auth=None, headers=[("X-Api-User", "alice"), ("X-Api-Key", self.key)])
        self.assertError(response, 401, "forbidden")
        self.assertEqual(len(self.successResultOf(self.store.acme_keys("alice"))), 1)

    @defer.inlineCallbacks
    def test_refused(self):
        """No credentials or a wrong password: 401 with a challenge; an unknown user never gets one made."""
        response = yield self.register(auth=None)
        self.assertError(response, 401, "forbidden")
        self.assertEqual(response.header("www-authenticate"), REALM)
        for auth in (("alice", "wrong"), ("nobody", "s3cret")):
            response = yield self.register(auth=auth)
            self.assertError(response, 401, "forbidden")
        self.assertEqual(self.successResultOf(self.store.acme_keys("nobody")), [])

    @defer.inlineCallbacks
    def test_disabled(self):
        """A disabled user: 403."""
        response = yield self.register(auth=("carol", "carol-pw"))
        self.assertError(response, 403, "disabled")

    @defer.inlineCallbacks
    def test_bad_bodies(self):
        """Not a JSON object: 400 malformed_json_payload; an allowfrom we cannot honour: 400."""
        response = yield self.register(b"[]")
        self.assertError(response, 400, "malformed_json_payload")
        response = yield self.register({"allowfrom": ["192.0.2.0/24"]})
        self.assertError(response, 400, "allowfrom_not_supported")
        response = yield self.register(b"x" * (acme_http.MAX_BODY + 1))
        self.assertEqual(response.status, 413)
        self.assertEqual(len(self.successResultOf(self.store.acme_keys("alice"))), 1)

    @defer.inlineCallbacks
    def test_key_cap(self):
        """At most MAX_REGISTERED_KEYS keys per user: then 403 too_many_keys."""
        for _ in range(acme_http.MAX_REGISTERED_KEYS - 1):
            yield self.add_key("alice")
        response = yield self.register()
        self.assertError(response, 403, "too_many_keys")

    @defer.inlineCallbacks
    def test_store_fails(self):
        """The store fails the key write: 503 db_error."""
        self.store.fail_writes = StoreError("disk gone")
        response = yield self.register()
        self.store.fail_writes = None
        self.assertError(response, 503, "db_error")

    @defer.inlineCallbacks
    def test_lockout(self):
        """Wrong passwords count, as everywhere: then 429 unchecked."""
        self.lock_after(2)
        for _ in range(2):
            response = yield self.register(auth=("alice", "wrong"))
            self.assertEqual(response.status, 401)
        response = yield self.register()
        self.assertError(response, 429, "too_many_requests")


# -- lego httpreq


class HttpreqTests(AcmeTestCase):
    def call(self, target: str, body: Any, auth: tuple[str, str] | None = None, **kwargs: Any):
        return self.post(target, body, auth=("alice", self.key) if auth is None else auth, **kwargs)

    def present(self, fqdn: str, value: str, **kwargs: Any):
        return self.call(PRESENT, {"fqdn": fqdn, "value": value}, **kwargs)

    def cleanup(self, fqdn: str, value: str, **kwargs: Any):
        return self.call(CLEANUP, {"fqdn": fqdn, "value": value}, **kwargs)

    @defer.inlineCallbacks
    def test_present_cleanup(self):
        """present adds the value at the main name (served before the answer), cleanup removes it."""
        seen = []
        answer = HttpreqResource.answer

        def spy(resource, request, body, code=200, headers=None):
            seen.append(self.values())
            answer(resource, request, body, code, headers)

        self.patch(HttpreqResource, "answer", spy)
        response = yield self.present(CHALLENGE + ".", V1)
        self.assertJSON(response, 200, {"fqdn": CHALLENGE + ".", "value": V1})
        self.assertEqual(seen, [(V1,)])
        response = yield self.present(CHALLENGE + ".", V2)
        self.assertEqual(self.values(), (V1, V2))
        response = yield self.cleanup(CHALLENGE + ".", V1)
        self.assertJSON(response, 200, {"fqdn": CHALLENGE + ".", "value": V1})
        self.assertEqual(self.values(), (V2,))

    @defer.inlineCallbacks
    def test_fqdn_forms(self):
        """The fqdn in any case, with or without the final dot."""
        response = yield self.present(CHALLENGE.upper(), V1)
        self.assertEqual(response.status, 200, response.raw)
        response = yield self.cleanup(f"_ACME-Challenge.Alice.{SUFFIX}.", V1)
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(self.values(), ())

    @defer.inlineCallbacks
    def test_wildcard_base(self):
        """The base of a wildcard alias (C{*.alice.example.net}): its challenge name works."""
        name = "_acme-challenge.alice.example.net"
        response = yield self.present(name + ".", V1)
        self.assertJSON(response, 200, {"fqdn": name + ".", "value": V1})
        self.assertEqual(self.values(name), (V1,))
        response = yield self.cleanup(name + ".", V1)
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(self.values(name), ())

    @defer.inlineCallbacks
    def test_additional_name(self):
        """An exact additional name (C{alice.example.org})."""
        name = "_acme-challenge.alice.example.org"
        response = yield self.present(name, V1)
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(self.values(name), (V1,))
        yield self.cleanup(name, V1)
        self.assertEqual(self.values(name), ())

    @defer.inlineCallbacks
    def test_cleanup_absent(self):
        """Cleaning up a value that is not there: 200 (nothing to do)."""
        response = yield self.cleanup(CHALLENGE, V1)
        self.assertEqual(response.status, 200, response.raw)

    @defer.inlineCallbacks
    def test_not_the_users(self):
        """Another user's names, a name below a wildcard, a stranger's: 403, nothing set."""
        for name in (
            f"_acme-challenge.bob.{SUFFIX}",
            "_acme-challenge.bob.example.org",
            "_acme-challenge.x.alice.example.net",
            "_acme-challenge.example.com",
        ):
            response = yield self.present(name + ".", V1)
            self.assertError(response, 403, "not_your_name")
            self.assertEqual(self.values(name), ())

    @defer.inlineCallbacks
    def test_bad_fqdn(self):
        """Not a challenge name, not a name, not a string: 400."""
        for fqdn in (MAIN + ".", "_acme-challenge.", "_acme-challenge.com", "bad..name", "a b", 7, None):
            response = yield self.present(fqdn, V1)
            self.assertError(response, 400, "bad_fqdn")

    @defer.inlineCallbacks
    def test_bad_value(self):
        """A value that is no challenge value: 400."""
        for value in ("", "x" * 256, "caf\u00e9", None):
            response = yield self.present(CHALLENGE, value)
            self.assertError(response, 400, "bad_value")
        self.assertEqual(self.values(), ())

    @defer.inlineCallbacks
    def test_too_many_values(self):
        """At most four values per name: the fifth is 400 bad_txt."""
        values = [c * 43 for c in "abcde"]
        for value in values[:4]:
            response = yield self.present(CHALLENGE, value)
            self.assertEqual(response.status, 200, response.raw)
        response = yield self.present(CHALLENGE, values[4])
        self.assertError(response, 400, "bad_txt")
        self.assertEqual(self.values(), tuple(values[:4]))

    @defer.inlineCallbacks
    def test_raw_mode(self):
        """HTTPREQ_MODE=RAW: the value is base64url(SHA-256(keyAuth)), unpadded, at _acme-challenge.<domain>."""
        key_authorization = "token-123.thumbprint-456"
        value = raw_value(key_authorization)
        body = {"domain": "alice.example.net", "token": "token-123", "keyAuth": key_authorization}
        response = yield self.call(PRESENT, body)
        self.assertJSON(response, 200, {"fqdn": "_acme-challenge.alice.example.net.", "value": value})
        self.assertEqual(self.values("_acme-challenge.alice.example.net"), (value,))
        wildcard = {**body, "domain": "*.alice.example.net"}
        response = yield self.call(CLEANUP, wildcard)
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(self.values("_acme-challenge.alice.example.net"), ())

    @defer.inlineCallbacks
    def test_raw_mode_refusals(self):
        """RAW bodies: a foreign domain is 403, a bad domain or key authorization 400."""
        response = yield self.call(PRESENT, {"domain": "bob.example.org", "token": "t", "keyAuth": "k"})
        self.assertError(response, 403, "not_your_name")
        for domain in ("", "bad..name", "com", f"_acme-challenge.{MAIN}", None):
            response = yield self.call(PRESENT, {"domain": domain, "token": "t", "keyAuth": "k"})
            self.assertError(response, 400, "bad_domain")
        for key_authorization in ("", None, 5):
            response = yield self.call(PRESENT, {"domain": MAIN, "token": "t", "keyAuth": key_authorization})
            self.assertError(response, 400, "bad_keyauth")

    @defer.inlineCallbacks
    def test_credentials(self):
        """Missing or wrong Basic credentials: 401 with WWW-Authenticate."""
        response = yield self.post(PRESENT, {"fqdn": CHALLENGE, "value": V1})
        self.assertError(response, 401, "forbidden")
        self.assertEqual(response.header("www-authenticate"), REALM)
        for auth in (("alice", "wrong"), ("bob", self.key), ("nobody", self.key)):
            response = yield self.present(CHALLENGE, V1, auth=auth)
            self.assertError(response, 401, "forbidden")
            self.assertEqual(response.header("www-authenticate"), REALM)
        self.assertEqual(self.values(), ())

    @defer.inlineCallbacks
    def test_password(self):
        """The password works while C{acme.passwords} is on, and not after."""
        response = yield self.present(CHALLENGE, V1, auth=("alice", "s3cret"))
        self.assertEqual(response.status, 200, response.raw)
        self.set_acme(passwords=False)
        response = yield self.present(CHALLENGE, V2, auth=("alice", "s3cret"))
        self.assertError(response, 401, "forbidden")
        self.assertEqual(self.values(), (V1,))

    @defer.inlineCallbacks
    def test_disabled(self):
        """A disabled user's key: 403."""
        name = f"_acme-challenge.carol.{SUFFIX}"
        response = yield self.present(name, V1, auth=("carol", self.carol_key))
        self.assertError(response, 403, "disabled")

    @defer.inlineCallbacks
    def test_bodies(self):
        """Not a JSON object: 400; over 4 KiB: 413."""
        for body in (b"", b"{", b"[]", b"42"):
            response = yield self.call(PRESENT, body)
            self.assertError(response, 400, "malformed_json_payload")
        response = yield self.call(PRESENT, {"fqdn": CHALLENGE, "value": V1, "pad": "x" * 5000})
        self.assertError(response, 413, "payload_too_large")
        self.assertEqual(self.values(), ())

    @defer.inlineCallbacks
    def test_other_methods(self):
        """GET: 405 with C{Allow: POST}."""
        response = yield self.request(CLEANUP, auth=("alice", self.key))
        self.assertError(response, 405, "method_not_allowed")
        self.assertEqual(response.header("allow"), "POST")

    @defer.inlineCallbacks
    def test_switched_off(self):
        """C{acme.httpreq} off: both paths 404; acme-dns is unaffected."""
        self.set_acme(httpreq=False)
        for target in (PRESENT, CLEANUP):
            response = yield self.call(target, {"fqdn": CHALLENGE, "value": V1})
            self.assertEqual((response.status, response.body), (404, b"not found\n"))
        headers = [("X-Api-User", "alice"), ("X-Api-Key", self.key)]
        response = yield self.post(UPDATE, {"subdomain": "alice", "txt": V1}, headers)
        self.assertEqual(response.status, 200, response.raw)

    @defer.inlineCallbacks
    def test_lockout(self):
        """Wrong keys lock the source: then 429 with Retry-After, even for the right key."""
        self.lock_after(2)
        for _ in range(2):
            response = yield self.present(CHALLENGE, V1, auth=("alice", "wrong"))
            self.assertEqual(response.status, 401)
        response = yield self.present(CHALLENGE, V1)
        self.assertError(response, 429, "too_many_requests")
        self.assertIsNotNone(response.header("retry-after"))
        self.assertEqual(self.values(), ())

    @defer.inlineCallbacks
    def test_addresses_untouched(self):
        """present and cleanup never touch the addresses."""
        yield self.set_state("alice", "192.0.2.1", "2001:db8::1")
        yield self.present(CHALLENGE, V1)
        yield self.cleanup(CHALLENGE, V1)
        state = self.state("alice")
        self.assertEqual(state.addresses(), (ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("2001:db8::1")))


# -- units


class UnitTests(SynchronousTestCase):
    def test_raw_value(self):
        """RFC 8555 section 8.4: base64url of the SHA-256 of the key authorization, no padding."""
        digest = hashlib.sha256(b"abc.def").digest()
        self.assertEqual(raw_value("abc.def"), base64.urlsafe_b64encode(digest).decode().rstrip("="))
        self.assertEqual(len(raw_value("abc.def")), 43)

    def test_json_body_keys(self):
        """Keys in any case; the lower-case spelling wins over another."""
        self.assertEqual(json_body(b'{"SubDomain": "a", "TXT": "v"}'), {"subdomain": "a", "txt": "v"})
        self.assertEqual(json_body(b'{"txt": "low", "Txt": "cap"}'), {"txt": "low"})
        self.assertEqual(json_body(b'{"Txt": "cap", "txt": "low"}'), {"txt": "low"})
        for raw in (b"", b"[]", b"nope", b"[" * 5000):
            self.assertRaises(BadBody, json_body, raw)


class CheckAcmeTests(AcmeTestCase):
    """The seam's C{check_acme}, directly."""

    @defer.inlineCallbacks
    def test_outcomes(self):
        """A key: OK (the id as stored); a wrong one: BAD and counted; a disabled user's: DISABLED."""
        auth = self.site.resource.children[b"dyndns"].children[b"acme"].children[b"present"].auth
        checked = yield defer.ensureDeferred(auth.check_acme("acme-httpreq", "ALICE", self.key, "192.0.2.7"))
        self.assertEqual((checked.outcome.value, checked.user_id), ("ok", "alice"))
        checked = yield defer.ensureDeferred(auth.check_acme("acme-httpreq", "alice", "nope", "192.0.2.7"))
        self.assertEqual(checked.outcome.value, "bad")
        checked = yield defer.ensureDeferred(auth.check_acme("acme-httpreq", "carol", self.carol_key, "192.0.2.7"))
        self.assertEqual(checked.outcome.value, "disabled")
        self.set_acme(passwords=False)
        checked = yield defer.ensureDeferred(auth.check_acme("acme-httpreq", "alice", "s3cret", "192.0.2.7"))
        self.assertEqual(checked.outcome.value, "bad")
