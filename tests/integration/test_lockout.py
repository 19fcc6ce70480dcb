"""
Lockout and change limits end to end: a real C{twistd -n dyndns} with HTTP,
GnuDIP TCP, RFC 2136 and the admin listener; guessing loops from their own
127.0.0.x sources over every method get the documented answers once the
source is locked, while an honest client on 127.0.0.3 keeps updating.

(The lock lifting after its time and the backoff are tested on a task.Clock
in tests/test_limits.py and tests/test_authn.py.)
"""

from __future__ import annotations

import base64
import json
import re
import socket
import urllib.parse

import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update
from twisted.trial.unittest import SynchronousTestCase

from tests.integration.clients import (
    SUFFIX,
    HTTPResponse,
    gdipc_meta,
    get_request,
    gnudip_login,
    gnudip_tcp,
    http_exchange,
)
from tests.integration.harness import Server, SharedServerTestCase

PASSWORD = "s3cret"
HONEST = "127.0.0.3"
ADMIN_PW = "admin-pw"
TIMEOUT = 10.0
TSIG_SECRET = base64.b64encode(b"k" * 32).decode()


def get(port: int, target: str, source: str, user: str | None = None,
        password: str | None = None) -> HTTPResponse:
    """One HTTP/1.0 GET from C{source} (a 127.0.0.x address) to 127.0.0.1:C{port}."""
    return http_exchange(port, get_request(target, user, password), source=source)


def gnudip_reply(port: int, source: str, user: str, password: str, address: str) -> bytes:
    """One GnuDIP TCP exchange (code 0 with an address); the reply line."""
    return gnudip_tcp(port, user, password, "0", address, source=source, timeout=TIMEOUT)[1]


def assertRetryAfter(testcase: SynchronousTestCase, response: HTTPResponse) -> None:
    """A Retry-After of the first lockout (60 s) less the time already gone."""
    value = response.header("retry-after")
    testcase.assertIsNotNone(value, response.raw)
    testcase.assertTrue(50 <= int(value or 0) <= 60, value)


class LockoutTests(SharedServerTestCase):
    """
    One server for the class; every attack comes from a source of its own,
    so each test sees a fresh count. alice is the honest user, bob the
    attacked one (his per-user threshold is raised in the config so that
    only the per-source lockout is at work here), carol has a change limit.
    """

    server_options = {
        "listeners": ("http", "gnudip", "admin"),
        "limits": {"user_failures": 1000, "update_changes": 20},
    }
    honest_octet = 10

    @classmethod
    def prepare(cls, server: Server) -> None:
        server.add_admin("admin", ADMIN_PW)
        for user in ("alice", "bob"):
            server.add_user(user, PASSWORD, gnudip=True, tsig=("hmac-sha256", TSIG_SECRET))
        server.add_user("carol", PASSWORD)

    # -- helpers

    def honest_update(self) -> None:
        """alice updates from 127.0.0.3 to a new address; dig sees it."""
        type(self).honest_octet += 1
        address = f"198.51.100.{self.honest_octet}"
        response = get(self.server.http_port, f"/nic/update?myip={address}", HONEST, "alice", PASSWORD)
        self.assertEqual((response.status, response.text.strip()), (200, f"good {address}"))
        self.assertEqual(self.served(f"alice.{SUFFIX}").data("A"), [address])

    def nic(self, source: str, password: str) -> HTTPResponse:
        return get(self.server.http_port, "/nic/update?myip=192.0.2.66", source, "bob", password)

    def assertBobUntouched(self) -> None:
        self.assertNotIn("192.0.2.66", self.served(f"bob.{SUFFIX}").data("A"))

    # -- one guessing loop per method

    def test_nic_update(self) -> None:
        """/nic/update: badauth (401) while counting, then abuse with Retry-After, even for the right password."""
        source = "127.0.0.21"
        for _ in range(10):
            response = self.nic(source, "wrong")
            self.assertEqual((response.status, response.text), (401, "badauth\n"))
        for password in ("wrong", PASSWORD):
            response = self.nic(source, password)
            self.assertEqual((response.status, response.text), (200, "abuse\n"))
            assertRetryAfter(self, response)
        self.assertBobUntouched()
        self.honest_update()

    def test_ddns_url(self) -> None:
        """ddns with URL auth: the FAIL page while counting, then 429 + Retry-After + FAIL."""
        source = "127.0.0.22"
        target = "/dyndns/ddns?user=bob&pw={}&ip=192.0.2.66"
        for _ in range(10):
            response = get(self.server.http_port, target.format("wrong"), source)
            self.assertEqual(response.status, 200)
            self.assertIn("ERROR: Incorrect user ID or password", response.text)
        response = get(self.server.http_port, target.format(PASSWORD), source)
        self.assertEqual(response.status, 429)
        assertRetryAfter(self, response)
        self.assertEqual(response.header("x-dyndns-result"), "FAIL")
        self.assertIn('content="FAIL"', response.text)
        self.assertBobUntouched()
        self.honest_update()

    def test_ddns_basic(self) -> None:
        """ddns with Basic auth: 401 challenges while counting, then 429."""
        source = "127.0.0.23"
        for _ in range(10):
            response = get(self.server.http_port, "/dyndns/ddns?ip=192.0.2.66", source, "bob", "wrong")
            self.assertEqual(response.status, 401)
        response = get(self.server.http_port, "/dyndns/ddns?ip=192.0.2.66", source, "bob", PASSWORD)
        self.assertEqual(response.status, 429)
        assertRetryAfter(self, response)
        self.assertBobUntouched()
        self.honest_update()

    def test_gnudip_tcp(self) -> None:
        """GnuDIP TCP: 1 for each wrong hash, then 1 (after a delay) for the right one too."""
        source = "127.0.0.24"
        for _ in range(10):
            self.assertEqual(gnudip_reply(self.server.gnudip_port, source, "bob", "wrong", "192.0.2.66"), b"1\n")
        self.assertEqual(gnudip_reply(self.server.gnudip_port, source, "bob", PASSWORD, "192.0.2.66"), b"1\n")
        self.assertBobUntouched()
        self.assertEqual(gnudip_reply(self.server.gnudip_port, HONEST, "bob", PASSWORD, "192.0.2.67"), b"0\n")
        self.assertEqual(self.served(f"bob.{SUFFIX}").data("A"), ["192.0.2.67"])
        self.honest_update()

    def test_gnudip_http(self) -> None:
        """GnuDIP over HTTP: retc 1 for wrong hashes, then retc 1 for the right one."""
        source = "127.0.0.25"

        def attempt(password: str) -> str:
            page = get(self.server.http_port, "/dyndns/gnudip", source)
            query = urllib.parse.urlencode(
                gnudip_login(gdipc_meta(page), "bob", password, "0", "192.0.2.66")
            )
            answer = get(self.server.http_port, f"/dyndns/gnudip?{query}", source).text
            return re.search(r'name="retc" content="(\d)"', answer).group(1)  # type: ignore[union-attr]

        self.assertEqual([attempt("wrong") for _ in range(10)], ["1"] * 10)
        self.assertEqual(attempt(PASSWORD), "1")
        self.assertBobUntouched()
        self.honest_update()

    def test_rfc2136(self) -> None:
        """Signed UPDATE: BADSIG for a wrong key, then REFUSED even for bob's right key."""
        source = "127.0.0.26"
        keyname = f"bob.{SUFFIX}."

        def send(secret: str) -> dns.message.Message:
            message = dns.update.UpdateMessage(SUFFIX)
            message.replace(f"bob.{SUFFIX}.", 60, "A", "192.0.2.66")
            message.use_tsig(dns.tsigkeyring.from_text({keyname: secret}), keyname,
                             algorithm="hmac-sha256")
            return dns.query.udp(message, "127.0.0.1", port=self.server.port, timeout=TIMEOUT,
                                 source=source, ignore_unexpected=True, raise_on_truncation=False)

        wrong = base64.b64encode(b"w" * 32).decode()
        for _ in range(10):
            with self.assertRaises(dns.tsig.PeerBadSignature):
                send(wrong)
        query = dns.update.UpdateMessage(SUFFIX)
        query.replace(f"bob.{SUFFIX}.", 60, "A", "192.0.2.66")
        query.use_tsig(dns.tsigkeyring.from_text({keyname: TSIG_SECRET}), keyname,
                       algorithm="hmac-sha256")
        wire = query.to_wire()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((source, 0))
            sock.settimeout(TIMEOUT)
            sock.sendto(wire, ("127.0.0.1", self.server.port))
            reply = sock.recv(65535)
        finally:
            sock.close()
        answer = dns.message.from_wire(reply, ignore_trailing=True)  # unsigned: no keyring needed
        self.assertEqual(answer.rcode(), dns.rcode.REFUSED)
        self.assertBobUntouched()
        self.honest_update()

    def test_admin(self) -> None:
        """Admin API: 401 JSON while counting, then 429 JSON with Retry-After."""
        source = "127.0.0.27"
        for _ in range(10):
            response = get(self.server.admin_port, "/api/state", source, "admin", "wrong")
            self.assertEqual(response.status, 401)
        response = get(self.server.admin_port, "/api/state", source, "admin", ADMIN_PW)
        self.assertEqual(response.status, 429)
        assertRetryAfter(self, response)
        self.assertIn("error", json.loads(response.body))
        response = get(self.server.admin_port, "/api/state", HONEST, "admin", ADMIN_PW)
        self.assertEqual(response.status, 200)
        # The lockouts of every method are in /metrics.
        metrics = get(self.server.admin_port, "/metrics", HONEST, "admin", ADMIN_PW).text
        self.assertRegex(metrics, r'dyndns_auth_locked_total\{method="admin"\} [1-9]')

    def test_failures_count_across_methods(self) -> None:
        """Five wrong passwords over /nic/update and five wrong GnuDIP hashes lock ddns too."""
        source = "127.0.0.28"
        for _ in range(5):
            self.assertEqual(self.nic(source, "wrong").status, 401)
            self.assertEqual(gnudip_reply(self.server.gnudip_port, source, "bob", "x", "192.0.2.66"), b"1\n")
        response = get(self.server.http_port, f"/dyndns/ddns?user=bob&pw={PASSWORD}", source)
        self.assertEqual(response.status, 429)

    # -- the change limit

    def test_change_limit(self) -> None:
        """carol: 20 changes are good, nochg is still answered, the 21st change is abuse; DNS keeps the last good one."""
        for i in range(20):
            response = get(self.server.http_port, f"/nic/update?myip=203.0.113.{i + 1}", HONEST,
                           "carol", PASSWORD)
            self.assertEqual(response.text, f"good 203.0.113.{i + 1}\n")
        response = get(self.server.http_port, "/nic/update?myip=203.0.113.20", HONEST, "carol", PASSWORD)
        self.assertEqual(response.text, "nochg 203.0.113.20\n")
        response = get(self.server.http_port, "/nic/update?myip=203.0.113.99", HONEST, "carol", PASSWORD)
        self.assertEqual(response.text, "abuse\n")
        self.assertIsNotNone(response.header("retry-after"))
        response = get(self.server.http_port, f"/dyndns/ddns?user=carol&pw={PASSWORD}&ip=203.0.113.98",
                       HONEST)
        self.assertEqual((response.status, response.header("x-dyndns-result")), (429, "FAIL"))
        self.assertEqual(self.served(f"carol.{SUFFIX}").data("A"), ["203.0.113.20"])
