"""
GnuDIP end to end: a real C{twistd -n dyndns} with a [gnudip] TCP listener
and HTTP on free ports of 127.0.0.1, users made with the C{dyndns} CLI
(C{--gnudip}), clients that behave like gdipc.pl (they read the server's
random salt and hash with it), and every result checked with dig:

 - after each successful exchange (TCP code 0 with an address, IPv4 and
   IPv6, code 0 without one, code 2, HTTP two-step code 0 and code 2) dig
   sees the new address at once;
 - after offline (TCP code 1, HTTP C{addr=0.0.0.0}) dig sees the offline IP,
   or, for a user without one, no A record (NOERROR, empty answer);
 - a failed login changes nothing; the HTTP signing key is a 0600 file and a
   salt page issued before a restart is accepted after it.
"""

from __future__ import annotations

import os
import stat
from urllib.parse import urlencode

from tests.integration.clients import (
    SUFFIX,
    DigResult,
    gdipc_meta,
    gdipc_request,
    gnudip_login,
    gnudip_tcp,
    http_exchange,
)
from tests.integration.harness import Server, SharedServerTestCase

PASSWORD = "s3cret"
OFFLINE_IP = "192.0.2.1"
REFERENCE_PATH = "/gnudip/cgi-bin/gdipupdt.cgi"
BASE_PATH = "/dyndns/gnudip"


class GnuDIPClientsTests(SharedServerTestCase):
    """
    One server for the class. alice (offline IP 192.0.2.1) and dave (no
    offline IP) are GnuDIP users. Each test first puts the user on an
    address of its own (and checks dig sees it), so every change under test
    is visible and tests do not depend on each other's order.
    """

    server_options = {"listeners": ("http", "gnudip"), "gnudip": {"timeout": 10}}

    @classmethod
    def prepare(cls, server: Server) -> None:
        server.add_user("alice", PASSWORD, gnudip=True, offline_ip=[OFFLINE_IP])
        server.add_user("dave", PASSWORD, gnudip=True)

    # -- helpers

    def tcp(self, user: str, code: str, address: str | None = None,
            password: str = PASSWORD) -> bytes:
        """A TCP exchange; checks the salt line's shape; returns the reply."""
        salt_line, reply = gnudip_tcp(self.server.gnudip_port, user, password, code, address)
        self.assertRegex(salt_line, rb"\A[A-Za-z0-9]{10}\n\Z")
        return reply

    def http(self, user: str, reqc: str, addr: str | None = None,
             path: str = REFERENCE_PATH) -> dict[str, str]:
        """Both HTTP steps as gdipc.pl makes them; the step-2 meta tags."""
        first = http_exchange(self.server.http_port, gdipc_request(path, self.server.http_port))
        self.assertEqual(first.status, 200, first.raw)
        salt = gdipc_meta(first)
        self.assertEqual(sorted(salt), ["salt", "sign", "time"], first.raw)
        params = gnudip_login(salt, user, PASSWORD, reqc, addr)
        second = http_exchange(
            self.server.http_port, gdipc_request(f"{path}?{urlencode(params)}", self.server.http_port)
        )
        self.assertEqual(second.status, 200, second.raw)
        self.assertNotIn(b"\r", second.body)
        return gdipc_meta(second)

    def assertServed(self, user: str, expected: list[str], rtype: str = "A") -> DigResult:
        """dig, once and at once (an acknowledged update is served): exactly C{expected}."""
        return self.assertServes(f"{user}.{SUFFIX}", rtype, expected)

    def put(self, user: str, address: str) -> None:
        """Put C{user} on C{address} with TCP code 0 and check dig sees it."""
        self.assertEqual(self.tcp(user, "0", address), b"0\n")
        self.assertServed(user, [address])

    # -- successful exchanges

    def test_tcp_code0_address(self) -> None:
        """TCP code 0 with an address: C{0}; dig sees it, then a second change too."""
        self.put("alice", "192.0.2.50")
        self.put("alice", "192.0.2.51")

    def test_tcp_code0_ipv6(self) -> None:
        """TCP code 0 with an IPv6 address: dig sees the AAAA; the A record stays."""
        self.put("alice", "192.0.2.52")
        self.assertEqual(self.tcp("alice", "0", "2001:db8::52"), b"0\n")
        self.assertServed("alice", ["2001:db8::52"], "AAAA")
        self.assertServed("alice", ["192.0.2.52"])

    def test_tcp_code0_without_address(self) -> None:
        """TCP code 0 without an address (ez-ipupdate): the peer, 127.0.0.1."""
        self.put("alice", "192.0.2.55")
        self.assertEqual(self.tcp("alice", "0"), b"0\n")
        self.assertServed("alice", ["127.0.0.1"])

    def test_tcp_code2(self) -> None:
        """TCP code 2: C{0:127.0.0.1}; dig sees 127.0.0.1."""
        self.put("alice", "192.0.2.60")
        self.assertEqual(self.tcp("alice", "2"), b"0:127.0.0.1\n")
        self.assertServed("alice", ["127.0.0.1"])

    def test_http_reqc0(self) -> None:
        """HTTP two steps, code 0 with addr: C{retc 0}; dig sees the address."""
        self.put("alice", "192.0.2.70")
        self.assertEqual(self.http("alice", "0", "192.0.2.71"), {"retc": "0"})
        self.assertServed("alice", ["192.0.2.71"])

    def test_http_reqc2_base_path(self) -> None:
        """HTTP code 2 on C{<base>gnudip}: C{retc 0}, C{addr 127.0.0.1}; dig sees it."""
        self.put("alice", "192.0.2.75")
        self.assertEqual(
            self.http("alice", "2", path=BASE_PATH), {"retc": "0", "addr": "127.0.0.1"}
        )
        self.assertServed("alice", ["127.0.0.1"])

    # -- offline

    def test_tcp_offline_to_offline_ip(self) -> None:
        """TCP code 1: C{2}; dig sees alice's offline IP."""
        self.put("alice", "192.0.2.80")
        self.assertEqual(self.tcp("alice", "1"), b"2\n")
        self.assertServed("alice", [OFFLINE_IP])

    def test_http_offline_zero_address(self) -> None:
        """HTTP code 0 with addr 0.0.0.0: C{retc 2}; dig sees the offline IP."""
        self.put("alice", "192.0.2.85")
        self.assertEqual(self.http("alice", "0", "0.0.0.0"), {"retc": "2"})
        self.assertServed("alice", [OFFLINE_IP])

    def test_offline_without_offline_ip(self) -> None:
        """dave has no offline IP: after code 1, NOERROR with no A record."""
        self.put("dave", "192.0.2.90")
        self.assertEqual(self.tcp("dave", "1"), b"2\n")
        result = self.assertServed("dave", [])
        self.assertEqual(result.answer, ())

    # -- failures and the key

    def test_bad_password_changes_nothing(self) -> None:
        self.put("alice", "192.0.2.95")
        self.assertEqual(self.tcp("alice", "0", "192.0.2.96", password="wrong"), b"1\n")
        self.assertEqual(self.http("alice", "7", "192.0.2.96"), {"retc": "1"})
        self.assertServed("alice", ["192.0.2.95"])

    def test_salt_survives_restart(self) -> None:
        """
        The signing key is a 0600 file beside the configuration; a salt page
        issued before a restart is accepted after it.
        """
        key = os.path.join(self.server.directory, "gnudip-http.key")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        self.put("alice", "192.0.2.100")
        first = http_exchange(self.server.http_port,
                              gdipc_request(REFERENCE_PATH, self.server.http_port))
        salt = gdipc_meta(first)
        self.server.stop()
        self.server.start()
        params = gnudip_login(salt, "alice", PASSWORD, "0", "192.0.2.101")
        second = http_exchange(
            self.server.http_port,
            gdipc_request(f"{REFERENCE_PATH}?{urlencode(params)}", self.server.http_port),
        )
        self.assertEqual(gdipc_meta(second), {"retc": "0"}, second.raw)
        self.assertServed("alice", ["192.0.2.101"])
