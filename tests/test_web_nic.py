"""
C{/nic/update}: the Dyn.com (dyndns2) protocol, every return code and every
parameter form, against the real site on a real socket.
"""

from __future__ import annotations

from twisted.internet import defer

from dyndns_plugin.config import HTTPSettings
from dyndns_plugin.store import StoreError
from dyndns_plugin.web.site import build_resources
from tests.web_helpers import SUCCESS_WORDS, WebTestCase

ALICE = ("alice", "s3cret")
MAIN = "alice.dyn.example.com"
REALM = 'Basic realm="DynDNS Service"'


class NicTestCase(WebTestCase):
    def update(self, query: str, auth=ALICE, **kwargs):
        return self.request(f"/nic/update?{query}", auth=auth, **kwargs)

    def assertLines(self, response, *lines: str) -> None:
        """200, text/plain, exactly these LF-terminated lines."""
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(response.header("content-type"), "text/plain; charset=utf-8")
        self.assertEqual(response.body, "".join(line + "\n" for line in lines).encode())

    def assertBadauth(self, response) -> None:
        self.assertEqual(response.status, 401, response.raw)
        self.assertEqual(response.headers["www-authenticate"], [REALM])
        self.assertEqual(response.body, b"badauth\n")


class UpdateTests(NicTestCase):
    @defer.inlineCallbacks
    def test_good(self):
        """One own host and myip: C{good <ip>}, 200, text/plain; DNS serves it."""
        response = yield self.update(f"hostname={MAIN}&myip=192.0.2.1")
        self.assertEqual(response.raw.split(b"\r\n", 1)[0], b"HTTP/1.1 200 OK")
        self.assertLines(response, "good 192.0.2.1")
        self.assertEqual(self.served(MAIN), ("192.0.2.1",))
        self.assertEqual(self.state("alice").method, "dyndns2")

    @defer.inlineCallbacks
    def test_nochg(self):
        """The same address again: C{nochg <ip>}, nothing written."""
        yield self.update(f"hostname={MAIN}&myip=192.0.2.1")
        generation = self.stored_generation()
        response = yield self.update(f"hostname={MAIN}&myip=192.0.2.1")
        self.assertLines(response, "nochg 192.0.2.1")
        self.assertEqual(self.stored_generation(), generation)

    @defer.inlineCallbacks
    def test_two_own_hosts(self):
        """Two of the user's names: one line each, in request order."""
        response = yield self.update(f"hostname={MAIN},alice.example.org&myip=192.0.2.1")
        self.assertLines(response, "good 192.0.2.1", "good 192.0.2.1")
        self.assertEqual(self.served("alice.example.org"), ("192.0.2.1",))

    @defer.inlineCallbacks
    def test_host_name_normalised(self):
        """Host names are matched case-insensitively and with a trailing dot."""
        response = yield self.update("hostname=ALICE.Dyn.Example.COM.&myip=192.0.2.1")
        self.assertLines(response, "good 192.0.2.1")

    @defer.inlineCallbacks
    def test_foreign_host_in_list(self):
        """A name of another user gets C{nohost}; the user's own names are still updated."""
        response = yield self.update(f"hostname=bob.dyn.example.com,{MAIN},bob.example.org&myip=192.0.2.1")
        self.assertLines(response, "nohost", "good 192.0.2.1", "nohost")
        self.assertEqual(self.served(MAIN), ("192.0.2.1",))
        self.assertIsNone(self.state("bob"))

    @defer.inlineCallbacks
    def test_only_foreign_hosts(self):
        """Only names the user does not own: C{nohost} lines and no state change."""
        generation = self.stored_generation()
        response = yield self.update("hostname=bob.dyn.example.com,unknown.example.com&myip=192.0.2.1")
        self.assertLines(response, "nohost", "nohost")
        self.assertIsNone(self.state("alice"))
        self.assertIsNone(self.state("bob"))
        self.assertEqual(self.stored_generation(), generation)

    @defer.inlineCallbacks
    def test_wildcard_child_is_not_owned(self):
        """A name below the user's wildcard alias is not one of its update names."""
        response = yield self.update("hostname=x.alice.example.net&myip=192.0.2.1")
        self.assertLines(response, "nohost")

    @defer.inlineCallbacks
    def test_notfqdn(self):
        """A single label or a malformed name: C{notfqdn}, nothing changed."""
        for host in ("a", "bad..name", "-x.example.com"):
            response = yield self.update(f"hostname={host}&myip=192.0.2.1")
            self.assertLines(response, "notfqdn")
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_notfqdn_mixed(self):
        """C{notfqdn} for the bad name, the update for the good one, in order."""
        response = yield self.update(f"hostname=a,{MAIN}&myip=192.0.2.1")
        self.assertLines(response, "notfqdn", "good 192.0.2.1")

    @defer.inlineCallbacks
    def test_numhost(self):
        """More than 20 host names: one C{numhost} and nothing changed."""
        hosts = ",".join([MAIN] * 21)
        response = yield self.update(f"hostname={hosts}&myip=192.0.2.1")
        self.assertLines(response, "numhost")
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_twenty_hosts(self):
        """Exactly 20 host names are allowed: 20 lines."""
        hosts = ",".join([MAIN] * 20)
        response = yield self.update(f"hostname={hosts}&myip=192.0.2.1")
        self.assertLines(response, *["good 192.0.2.1"] * 20)

    @defer.inlineCallbacks
    def test_hostname_absent(self):
        """Without C{hostname} the user's main name is updated."""
        response = yield self.update("myip=192.0.2.1")
        self.assertLines(response, "good 192.0.2.1")
        self.assertEqual(self.served(MAIN), ("192.0.2.1",))

    @defer.inlineCallbacks
    def test_hostname_empty(self):
        """An empty C{hostname=} counts as absent."""
        response = yield self.update("hostname=&myip=192.0.2.1")
        self.assertLines(response, "good 192.0.2.1")

    @defer.inlineCallbacks
    def test_badauth_missing(self):
        """No Authorization header: 401, challenge, body C{badauth}."""
        response = yield self.update(f"hostname={MAIN}&myip=192.0.2.1", auth=None)
        self.assertBadauth(response)
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_badauth_wrong_password(self):
        """A wrong password: C{badauth}."""
        response = yield self.update(f"hostname={MAIN}&myip=192.0.2.1", auth=("alice", "nope"))
        self.assertBadauth(response)
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_badauth_unknown_user(self):
        """An unknown user: C{badauth}."""
        response = yield self.update(f"hostname={MAIN}&myip=192.0.2.1", auth=("nobody", "s3cret"))
        self.assertBadauth(response)

    @defer.inlineCallbacks
    def test_badauth_disabled(self):
        """A disabled user with the right password: C{badauth}."""
        response = yield self.update("hostname=carol.dyn.example.com&myip=192.0.2.1", auth=("carol", "carol-pw"))
        self.assertBadauth(response)
        self.assertIsNone(self.state("carol"))

    @defer.inlineCallbacks
    def test_badauth_malformed(self):
        """A malformed Authorization header: C{badauth}."""
        response = yield self.request("/nic/update?myip=192.0.2.1", {"Authorization": "Basic %%%"})
        self.assertBadauth(response)

    @defer.inlineCallbacks
    def test_myip_v6(self):
        """An IPv6 C{myip} sets AAAA."""
        response = yield self.update(f"hostname={MAIN}&myip=2001:db8::1")
        self.assertLines(response, "good 2001:db8::1")
        self.assertEqual(self.served(MAIN), ("2001:db8::1",))

    @defer.inlineCallbacks
    def test_myip_list(self):
        """C{myip=v4,v6} sets both and shows both."""
        response = yield self.update(f"hostname={MAIN}&myip=192.0.2.1,2001:db8::1")
        self.assertLines(response, "good 192.0.2.1,2001:db8::1")
        self.assertEqual(self.served(MAIN), ("192.0.2.1", "2001:db8::1"))

    @defer.inlineCallbacks
    def test_prefix_length_stripped(self):
        """A C{/64} suffix (FRITZ!Box prefix) is stripped."""
        response = yield self.update(f"hostname={MAIN}&myip=2001:db8::1/64")
        self.assertLines(response, "good 2001:db8::1")
        self.assertEqual(self.served(MAIN), ("2001:db8::1",))

    @defer.inlineCallbacks
    def test_myip_empty(self):
        """An empty C{myip=} uses the detected address."""
        response = yield self.update(f"hostname={MAIN}&myip=")
        self.assertLines(response, "good 127.0.0.1")
        self.assertEqual(self.served(MAIN), ("127.0.0.1",))

    @defer.inlineCallbacks
    def test_myip_absent(self):
        """No C{myip} uses the detected address."""
        response = yield self.update(f"hostname={MAIN}")
        self.assertLines(response, "good 127.0.0.1")

    @defer.inlineCallbacks
    def test_myip_invalid(self):
        """An invalid C{myip} uses the detected address, as Dyn did."""
        response = yield self.update(f"hostname={MAIN}&myip=not-an-ip")
        self.assertLines(response, "good 127.0.0.1")
        self.assertEqual(self.served(MAIN), ("127.0.0.1",))

    @defer.inlineCallbacks
    def test_myipv6(self):
        """C{myipv6} (No-IP) adds the IPv6 address to C{myip}'s IPv4."""
        response = yield self.update(f"hostname={MAIN}&myip=192.0.2.1&myipv6=2001:db8::2")
        self.assertLines(response, "good 192.0.2.1,2001:db8::2")
        self.assertEqual(self.served(MAIN), ("192.0.2.1", "2001:db8::2"))

    @defer.inlineCallbacks
    def test_ipv6_param(self):
        """C{ipv6} is accepted like C{myipv6}."""
        response = yield self.update(f"hostname={MAIN}&myip=192.0.2.1&ipv6=2001:db8::3")
        self.assertLines(response, "good 192.0.2.1,2001:db8::3")
        self.assertEqual(self.served(MAIN), ("192.0.2.1", "2001:db8::3"))

    @defer.inlineCallbacks
    def test_offline(self):
        """C{offline=YES}: C{good <offline ip>} and DNS serves the offline IP."""
        yield self.set_state("alice", "192.0.2.1")
        response = yield self.update(f"hostname={MAIN}&offline=YES")
        self.assertLines(response, "good 192.0.2.254")
        self.assertTrue(self.state("alice").offline)
        self.assertEqual(self.served(MAIN), ("192.0.2.254",))

    @defer.inlineCallbacks
    def test_offline_no(self):
        """C{offline=NO} is an ordinary update."""
        response = yield self.update(f"hostname={MAIN}&myip=192.0.2.1&offline=NO")
        self.assertLines(response, "good 192.0.2.1")
        self.assertFalse(self.state("alice").offline)

    @defer.inlineCallbacks
    def test_ignored_parameters(self):
        """C{system}, C{wildcard}, C{mx} and C{backmx} are accepted and change nothing else."""
        user = self.service.registry.users["alice"]
        response = yield self.update(
            f"system=dyndns&hostname={MAIN}&myip=192.0.2.11&wildcard=ON&mx=mx.example.net&backmx=YES"
        )
        self.assertLines(response, "good 192.0.2.11")
        self.assertEqual(self.service.registry.users["alice"], user)
        self.assertIsNone(self.served("mx.example.net"))

    @defer.inlineCallbacks
    def test_store_failure(self):
        """The store fails: C{911} once, and DNS keeps the old address."""
        yield self.set_state("alice", "192.0.2.1")
        self.store.fail_writes = StoreError("disk gone")
        response = yield self.update(f"hostname={MAIN},alice.example.org&myip=192.0.2.2")
        self.assertLines(response, "911")
        self.assertEqual(self.served(MAIN), ("192.0.2.1",))
        self.assertEqual(len(self.flushLoggedErrors(StoreError)), 1)

    @defer.inlineCallbacks
    def test_dnserr(self):
        """No usable address at all (none given, none detected): C{dnserr}."""
        nic = self.site.resource.children[b"nic"].children[b"update"]
        self.patch(nic.detector, "detect", lambda request: None)
        response = yield self.update(f"hostname={MAIN}&myip=bogus")
        self.assertLines(response, "dnserr")
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_post(self):
        """A POST with a form body works like the GET."""
        response = yield self.request(
            "/nic/update",
            {"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
            body=f"hostname={MAIN}&myip=192.0.2.9".encode(),
            auth=ALICE,
        )
        self.assertLines(response, "good 192.0.2.9")

    @defer.inlineCallbacks
    def test_head(self):
        """HEAD gives the GET's Content-Length and no body."""
        yield self.set_state("alice", "192.0.2.1")
        head = yield self.update(f"hostname={MAIN}&myip=192.0.2.1", method="HEAD")
        get = yield self.update(f"hostname={MAIN}&myip=192.0.2.1")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(get.body, b"nochg 192.0.2.1\n")
        self.assertEqual(head.header("content-length"), get.header("content-length"))
        self.assertEqual(head.header("content-type"), "text/plain; charset=utf-8")

    @defer.inlineCallbacks
    def test_error_bodies_never_look_successful(self):
        """No error body contains good, nochg, ok, true or updated in any case (inadyn)."""
        bodies = []
        for auth in (None, ("alice", "nope"), ("carol", "carol-pw")):
            bodies.append((yield self.update("myip=192.0.2.1", auth=auth)).body)
        bodies.append((yield self.update("hostname=bob.dyn.example.com")).body)
        bodies.append((yield self.update("hostname=a")).body)
        bodies.append((yield self.update("hostname=" + ",".join([MAIN] * 21))).body)
        bodies.append((yield self.request("/nic/nothing")).body)
        bodies.append((yield self.request("/nic/update", method="DELETE", check=False)).body)
        self.store.fail_writes = StoreError("disk gone")
        bodies.append((yield self.update("myip=192.0.2.77")).body)
        self.flushLoggedErrors(StoreError)
        self.store.fail_writes = None
        nic = self.site.resource.children[b"nic"].children[b"update"]
        self.patch(nic.detector, "detect", lambda request: None)
        bodies.append((yield self.update("myip=bogus")).body)
        self.assertEqual(
            bodies,
            [b"badauth\n"] * 3
            + [b"nohost\n", b"notfqdn\n", b"numhost\n", b"not found\n", b"method not allowed\n", b"911\n", b"dnserr\n"],
        )
        disabled = build_resources(self.service, HTTPSettings(nic_update=False), self.checker)
        text = disabled.children[b"nic"].children[b"update"].text.encode()
        bodies.append(text)
        for body in bodies:
            for word in SUCCESS_WORDS:
                self.assertNotIn(word, body.decode().lower(), body)


class IgnoreHostnameTests(NicTestCase):
    settings = {"nic_update_ignore_hostname": True}

    @defer.inlineCallbacks
    def test_dummy_hostname(self):
        """With the KB 66 switch, C{hostname=dummy} updates the authenticated user."""
        response = yield self.update("hostname=dummy&myip=192.0.2.1")
        self.assertLines(response, "good 192.0.2.1")
        self.assertEqual(self.served(MAIN), ("192.0.2.1",))

    @defer.inlineCallbacks
    def test_foreign_hostname(self):
        """Even another user's name updates the authenticated user, not the other one."""
        response = yield self.update("hostname=bob.dyn.example.com&myip=192.0.2.1")
        self.assertLines(response, "good 192.0.2.1")
        self.assertEqual(self.served(MAIN), ("192.0.2.1",))
        self.assertIsNone(self.state("bob"))


class DisabledTests(NicTestCase):
    settings = {"nic_update": False}

    @defer.inlineCallbacks
    def test_not_enabled(self):
        """Switched off: 404 with "Dyn.com update method is not enabled", nothing changed."""
        response = yield self.update(f"hostname={MAIN}&myip=192.0.2.1")
        self.assertEqual(response.status, 404)
        self.assertEqual(response.body, b"Dyn.com update method is not enabled\n")
        self.assertIsNone(self.state("alice"))
