"""
C{<base>ddns}: URL and Basic authentication, every parameter form and every
answer, against the real site on a real socket.
"""

from __future__ import annotations

import base64

from twisted.internet import defer

from dyndns_plugin.passwords import hash_password
from dyndns_plugin.store import StoreError
from tests.web_helpers import WebTestCase, basic

DDNS = "/dyndns/ddns"
REALM = 'Basic realm="DynDNS Service"'


def page(ok: bool, text: str) -> bytes:
    """The original's result page, byte for byte."""
    word, meta = ("OK", "OK") if ok else ("ERROR", "FAIL")
    return (
        f'<html><head><meta name="DynDNS-Result" content="{meta}">'
        f"<title>DynDNS update {word}</title></head>"
        f"<body><h1>{word}: {text}</h1></body></html>\n"
    ).encode()


class DdnsTestCase(WebTestCase):
    def assertPage(self, response, ok: bool, text: str) -> None:
        """A 200 result page with the meta tag and the matching header."""
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(response.body, page(ok, text))
        self.assertEqual(response.headers["x-dyndns-result"], ["OK" if ok else "FAIL"])
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8")

    def url(self, query: str, user: str = "alice", pw: str = "s3cret") -> str:
        return f"{DDNS}?user={user}&pw={pw}" + (f"&{query}" if query else "")


class URLAuthTests(DdnsTestCase):
    @defer.inlineCallbacks
    def test_good(self):
        """URL auth with an IPv4 address: the exact OK page and headers, and DNS serves it."""
        response = yield self.request(self.url("ip=192.0.2.1"))
        self.assertEqual(response.raw.split(b"\r\n", 1)[0], b"HTTP/1.1 200 OK")
        self.assertPage(response, True, "192.0.2.1")
        self.assertEqual(response.header("content-length"), str(len(page(True, "192.0.2.1"))))
        self.assertEqual(response.header("cache-control"), "private")
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.1",))
        self.assertEqual(self.state("alice").method, "http-url")

    @defer.inlineCallbacks
    def test_ipv6(self):
        """An IPv6 C{ip} sets the AAAA address."""
        response = yield self.request(self.url("ip=2001:db8::1"))
        self.assertPage(response, True, "2001:db8::1")
        self.assertEqual(self.served("alice.dyn.example.com"), ("2001:db8::1",))

    @defer.inlineCallbacks
    def test_ip_list(self):
        """A comma list of an IPv4 and an IPv6 address sets both."""
        response = yield self.request(self.url("ip=192.0.2.1,2001:db8::1"))
        self.assertPage(response, True, "192.0.2.1,2001:db8::1")
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.1", "2001:db8::1"))

    @defer.inlineCallbacks
    def test_ip_absent(self):
        """Without C{ip} the detected address (the peer) is used."""
        response = yield self.request(self.url(""))
        self.assertPage(response, True, "127.0.0.1")
        self.assertEqual(self.served("alice.dyn.example.com"), ("127.0.0.1",))
        self.assertEqual(self.state("alice").client_address, "127.0.0.1")

    @defer.inlineCallbacks
    def test_ip_empty(self):
        """An empty C{ip=} counts as absent."""
        response = yield self.request(self.url("ip="))
        self.assertPage(response, True, "127.0.0.1")
        self.assertEqual(self.served("alice.dyn.example.com"), ("127.0.0.1",))

    @defer.inlineCallbacks
    def test_invalid_ip(self):
        """An invalid C{ip} is the FAIL page "Invalid IP address" and changes nothing."""
        for value in ("999.1.1.1", "192.0.2.1,bogus", "0.0.0.0"):
            response = yield self.request(self.url(f"ip={value}"))
            self.assertPage(response, False, "Invalid IP address")
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_ttl(self):
        """A valid C{ttl} is the TTL DNS serves."""
        response = yield self.request(self.url("ip=192.0.2.1&ttl=120"))
        self.assertPage(response, True, "192.0.2.1")
        self.assertEqual(self.service.registry.answer("alice.dyn.example.com").ttl, 120)

    @defer.inlineCallbacks
    def test_ttl_default(self):
        """Without C{ttl} the service's default TTL is served."""
        yield self.request(self.url("ip=192.0.2.1"))
        self.assertEqual(self.service.registry.answer("alice.dyn.example.com").ttl, 30)

    @defer.inlineCallbacks
    def test_ttl_clamped_to_min(self):
        """A TTL below the service's minimum is raised to it."""
        response = yield self.request(self.url("ip=192.0.2.1&ttl=1"))
        self.assertPage(response, True, "192.0.2.1")
        self.assertEqual(self.service.registry.answer("alice.dyn.example.com").ttl, self.min_ttl)

    @defer.inlineCallbacks
    def test_ttl_clamped_to_max(self):
        """A TTL above the service's maximum is lowered to it."""
        response = yield self.request(self.url("ip=192.0.2.1&ttl=86400"))
        self.assertPage(response, True, "192.0.2.1")
        self.assertEqual(self.service.registry.answer("alice.dyn.example.com").ttl, self.max_ttl)

    @defer.inlineCallbacks
    def test_ttl_invalid(self):
        """A C{ttl} that is not a whole number in range is "Invalid TTL value"."""
        for value in ("x", "-1", "1.5", "99999999999"):
            response = yield self.request(self.url(f"ip=192.0.2.1&ttl={value}"))
            self.assertPage(response, False, "Invalid TTL value")
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_offline_y(self):
        """C{offline=Y} answers "OK: Offline" and DNS serves the offline IP."""
        yield self.set_state("alice", "192.0.2.1")
        response = yield self.request(self.url("offline=Y"))
        self.assertPage(response, True, "Offline")
        self.assertTrue(self.state("alice").offline)
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.254",))

    @defer.inlineCallbacks
    def test_offline_yes(self):
        """C{offline=yes} (any case, first letter Y) is offline too."""
        yield self.set_state("alice", "192.0.2.1")
        response = yield self.request(self.url("offline=yes"))
        self.assertPage(response, True, "Offline")
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.254",))

    @defer.inlineCallbacks
    def test_offline_no(self):
        """C{offline=N} is ignored: an ordinary update."""
        response = yield self.request(self.url("ip=192.0.2.1&offline=N"))
        self.assertPage(response, True, "192.0.2.1")
        self.assertFalse(self.state("alice").offline)
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.1",))

    @defer.inlineCallbacks
    def test_wrong_password(self):
        """A wrong password is the FAIL page, status 200, no challenge."""
        response = yield self.request(self.url("ip=192.0.2.1", pw="wrong"))
        self.assertPage(response, False, "Incorrect user ID or password")
        self.assertNotIn("www-authenticate", response.headers)
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_unknown_user(self):
        """An unknown user id gets the same text as a wrong password."""
        response = yield self.request(self.url("ip=192.0.2.1", user="nobody"))
        self.assertPage(response, False, "Incorrect user ID or password")

    @defer.inlineCallbacks
    def test_missing_pw(self):
        """C{user} without C{pw} is "Missing 'pw' value"."""
        response = yield self.request(f"{DDNS}?user=alice&ip=192.0.2.1")
        self.assertPage(response, False, "Missing 'pw' value")
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_empty_user(self):
        """An empty C{user=} is "Missing 'user' value"."""
        response = yield self.request(f"{DDNS}?user=&pw=s3cret&ip=192.0.2.1")
        self.assertPage(response, False, "Missing 'user' value")

    @defer.inlineCallbacks
    def test_disabled_user(self):
        """A disabled user with the right password is "User is disabled"."""
        response = yield self.request(self.url("ip=192.0.2.1", user="carol", pw="carol-pw"))
        self.assertPage(response, False, "User is disabled")
        self.assertIsNone(self.state("carol"))

    @defer.inlineCallbacks
    def test_encoded_password(self):
        """Percent-encoded passwords are decoded before the check."""
        yield self.service.edit_user("bob", password_hash=hash_password("p&ss w=rd", log2_n=10))
        response = yield self.request(self.url("ip=192.0.2.5", user="bob", pw="p%26ss+w%3Drd"))
        self.assertPage(response, True, "192.0.2.5")

    @defer.inlineCallbacks
    def test_post_form(self):
        """A POST with a form body works like the GET."""
        body = b"user=alice&pw=s3cret&ip=192.0.2.7"
        response = yield self.request(
            DDNS,
            {"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
            body=body,
        )
        self.assertPage(response, True, "192.0.2.7")
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.7",))

    @defer.inlineCallbacks
    def test_head(self):
        """HEAD answers the GET's headers and Content-Length, with no body."""
        get = yield self.request(self.url("ip=192.0.2.1"))
        head = yield self.request(self.url("ip=192.0.2.1"), method="HEAD")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(head.header("content-length"), get.header("content-length"))
        self.assertEqual(head.header("x-dyndns-result"), "OK")
        self.assertEqual(head.header("content-type"), "text/html; charset=utf-8")

    @defer.inlineCallbacks
    def test_store_failure(self):
        """When the store fails the answer is FAIL and DNS keeps the old address."""
        yield self.set_state("alice", "192.0.2.1")
        generation = self.stored_generation()
        self.store.fail_writes = StoreError("disk gone")
        response = yield self.request(self.url("ip=192.0.2.2"))
        self.assertPage(response, False, "Server error, please try again later")
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.1",))
        self.assertEqual(str(self.state("alice").ipv4), "192.0.2.1")
        self.assertEqual(self.stored_generation(), generation)
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)

    @defer.inlineCallbacks
    def test_store_failure_offline(self):
        """A store failure while going offline is FAIL and the user stays online."""
        yield self.set_state("alice", "192.0.2.1")
        self.store.fail_writes = StoreError("disk gone")
        response = yield self.request(self.url("offline=Y"))
        self.assertPage(response, False, "Server error, please try again later")
        self.assertFalse(self.state("alice").offline)
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.1",))
        self.flushLoggedErrors(StoreError)


class BasicAuthTests(DdnsTestCase):
    def assertChallenge(self, response) -> None:
        """401 with the realm, the FAIL header and no update."""
        self.assertEqual(response.status, 401, response.raw)
        self.assertEqual(response.headers["www-authenticate"], [REALM])
        self.assertEqual(response.header("x-dyndns-result"), "FAIL")
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_good(self):
        """Basic auth without C{user}: the OK page, and the update is done."""
        response = yield self.request(f"{DDNS}?ip=192.0.2.3", auth=("alice", "s3cret"))
        self.assertPage(response, True, "192.0.2.3")
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.3",))
        self.assertEqual(self.state("alice").method, "http-basic")

    @defer.inlineCallbacks
    def test_missing(self):
        """No C{user} and no Authorization header: 401 with the challenge."""
        response = yield self.request(f"{DDNS}?ip=192.0.2.3")
        self.assertChallenge(response)

    @defer.inlineCallbacks
    def test_wrong_password(self):
        """A wrong Basic password: 401."""
        response = yield self.request(f"{DDNS}?ip=192.0.2.3", auth=("alice", "nope"))
        self.assertChallenge(response)

    @defer.inlineCallbacks
    def test_unknown_user(self):
        """An unknown Basic user: 401."""
        response = yield self.request(f"{DDNS}?ip=192.0.2.3", auth=("nobody", "s3cret"))
        self.assertChallenge(response)

    @defer.inlineCallbacks
    def test_disabled_user(self):
        """A disabled user with the right Basic password: "User is disabled"."""
        response = yield self.request(f"{DDNS}?ip=192.0.2.3", auth=("carol", "carol-pw"))
        self.assertPage(response, False, "User is disabled")

    @defer.inlineCallbacks
    def test_malformed_header(self):
        """Bad base64, no colon, another scheme or an empty value: 401."""
        no_colon = base64.b64encode(b"alices3cret").decode()
        for value in ("Basic !!!not-base64!!!", f"Basic {no_colon}", "Bearer abc", "Basic"):
            response = yield self.request(f"{DDNS}?ip=192.0.2.3", {"Authorization": value})
            self.assertChallenge(response)

    @defer.inlineCallbacks
    def test_scheme_case_insensitive(self):
        """The C{basic} scheme name is case-insensitive."""
        value = basic("alice", "s3cret").replace("Basic", "bAsIc")
        response = yield self.request(f"{DDNS}?ip=192.0.2.3", {"Authorization": value})
        self.assertPage(response, True, "192.0.2.3")

    @defer.inlineCallbacks
    def test_url_user_wins(self):
        """With C{user} present, URL auth is used even if a Basic header is sent too."""
        response = yield self.request(
            self.url("ip=192.0.2.4", pw="wrong"),
            auth=("alice", "s3cret"),
        )
        self.assertPage(response, False, "Incorrect user ID or password")


class URLAuthOffTests(DdnsTestCase):
    settings = {"url_auth": False}

    @defer.inlineCallbacks
    def test_url_auth_refused(self):
        """With URL auth switched off, C{user=} gets the original's "not enabled" text."""
        response = yield self.request(self.url("ip=192.0.2.1"))
        self.assertPage(response, False, "URL authentication update method is not enabled")
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_basic_still_works(self):
        """Basic auth keeps working when only URL auth is off."""
        response = yield self.request(f"{DDNS}?ip=192.0.2.3", auth=("alice", "s3cret"))
        self.assertPage(response, True, "192.0.2.3")


class BasicAuthOffTests(DdnsTestCase):
    settings = {"basic_auth": False}

    @defer.inlineCallbacks
    def test_basic_refused(self):
        """With Basic auth off, a request without C{user} is "Missing 'user' value", no 401."""
        response = yield self.request(f"{DDNS}?ip=192.0.2.3", auth=("alice", "s3cret"))
        self.assertPage(response, False, "Missing 'user' value")
        self.assertNotIn("www-authenticate", response.headers)
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_url_auth_still_works(self):
        """URL auth keeps working when only Basic auth is off."""
        response = yield self.request(self.url("ip=192.0.2.1"))
        self.assertPage(response, True, "192.0.2.1")


class BothOffTests(DdnsTestCase):
    settings = {"url_auth": False, "basic_auth": False}

    @defer.inlineCallbacks
    def test_disabled_method(self):
        """Both switched off: 404 with the "not enabled" text, for any method form."""
        for target, auth in ((self.url("ip=192.0.2.1"), None), (f"{DDNS}?ip=192.0.2.1", ("alice", "s3cret"))):
            response = yield self.request(target, auth=auth)
            self.assertEqual(response.status, 404)
            self.assertEqual(response.body, b"HTTP update method is not enabled\n")
            self.assertEqual(response.header("content-type"), "text/plain; charset=utf-8")
        self.assertIsNone(self.state("alice"))
