"""
Real HTTP clients against a real C{twistd -n dyndns} with an HTTP and an
HTTPS listener on 127.0.0.1, users made with the C{dyndns} CLI, and every
change checked with dig:

 - replays, byte for byte, of every request the real ddclient 3.10 and
   inadyn 2.10 sent (tests/fixtures/http/*.raw), each reply judged the way
   that client judges it (see the C{.client.log} beside each fixture);
 - the real ddclient (Debian 3.10) inside the loopback guard: one host, two
   hosts in one request, IPv6, and C{use=web} with our C{/checkip};
 - curl: C{<base>ddns} with URL and Basic authentication and C{/nic/update}
   with C{-u}, over HTTP and over HTTPS with a certificate made for the run.

Nothing leaves 127.0.0.1: the server listens there only, curl is told to use
no proxy, and ddclient (which falls back to public servers on some errors)
runs where /etc/resolv.conf and /etc/hosts know only this machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from urllib.parse import urlencode

from tests.integration.clients import (
    GUARD_HOSTS,
    GUARD_RESOLV,
    GUARD_TIMEOUT,
    SUFFIX,
    DigResult,
    HTTPResponse,
    client_tls,
    get_request,
    guarded,
    http_exchange,
    request_credentials,
    require_loopback_guard,
    run_curl,
    run_ddclient,
)
from tests.integration.harness import BASE_PATH as BASE
from tests.integration.harness import (
    CHANGE_LIMIT,
    Server,
    ServerTestCase,
    SharedServerTestCase,
    wait_for,
)
from tests.tools import fixture_path

FIXTURES = fixture_path("http")

#: alice's password is whatever the fixture being replayed says (see
#: L{HTTPClientsTests.ensure_password}); the others are fixed.
BOB, BOB_PW = "bob", "pw"
CAROL, CAROL_PW = "carol", "carol-pw"
DORA, DORA_PW = "dora", "d0ra pass"  # ddclient
ERIN, ERIN_PW = "erin", "erin:pw 1"  # curl (a colon in a Basic password)
USERS = [
    ("alice", "secret", []),
    (BOB, BOB_PW, []),
    (CAROL, CAROL_PW, []),
    (DORA, DORA_PW, ["dora.example.org"]),
    (ERIN, ERIN_PW, []),
]

#: Addresses a user is parked on (with the CLI) before an update, so that
#: every update under test is a change and dig can tell it happened.
PARKED_V4 = "203.0.113.1"
PARKED_V6 = "2001:db8:ffff::1"

_IPV4 = r"(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)"


# -- how the real clients read a reply


def ddclient_verdicts(response: HTTPResponse, hosts: list[str]) -> dict[str, str]:
    """
    ddclient 3.10's reading of a dyndns2 reply (C{nic_dyndns2_update} and
    C{header_ok}): a status other than 2xx fails every host; otherwise each
    body line, lowercased, belongs to the next host in request order and its
    first word is that host's status. C{good} is success, C{nochg} success
    with a warning; anything else, or no line, fails the host.
    """
    if not 200 <= response.status < 300:
        return {host: f"HTTP {response.status}" for host in hosts}
    lines = response.body.decode("utf-8", "replace").lower().split("\n")
    return {
        host: (lines[i].split(" ")[0] if i < len(lines) else "(no line)")
        for i, host in enumerate(hosts)
    }


def ddclient_web_address(response: HTTPResponse) -> str | None:
    """
    The address ddclient 3.10 takes from a C{use=web} page without
    C{web-skip}: the first IPv4 anywhere in the reply, headers included.
    """
    found = re.search(rf"(?:\b|_)({_IPV4})(?:\b|_)", response.raw.decode("iso-8859-1"))
    return found.group(1) if found else None


#: inadyn 2.10's default C{ddns-response} strings.
INADYN_OK = ("ok", "good", "true", "updated", "success", "nochg")


def inadyn_success(response: HTTPResponse) -> bool:
    """inadyn 2.10: status 200 and the body contains, in any case, one of L{INADYN_OK}."""
    body = response.body.decode("utf-8", "replace").lower()
    return response.status == 200 and any(word in body for word in INADYN_OK)


def inadyn_checkip_address(response: HTTPResponse) -> str | None:
    """inadyn 2.10's checkip: the first address found anywhere in the body."""
    found = re.search(rf"({_IPV4}|[0-9a-fA-F]*:[0-9a-fA-F:]+)", response.text)
    return found.group(1) if response.status == 200 and found else None


class HTTPClientsTests(SharedServerTestCase):
    """
    One server for the whole class: HTTP on one port, HTTPS (certificate
    made for the run) on another, base URL path C{/dyndns/}. Each test
    first parks the user it updates on L{PARKED_V4}/L{PARKED_V6} with the
    CLI and waits until dig shows it, so tests do not depend on each other's
    order.
    """

    server_options = {"listeners": ("http", "https"), "http": {"access_log": "access.log"}}
    passwords: dict[str, str]

    @classmethod
    def prepare(cls, server: Server) -> None:
        cls.passwords = {}
        for user, password, extra in USERS:
            server.add_user(user, password, hosts=extra)
            cls.passwords[user] = password

    # -- helpers

    def workdir(self, name: str) -> str:
        path = os.path.join(self.server.directory, "work", name)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    def ensure_password(self, user: str, password: str) -> None:
        """
        Make C{password} C{user}'s password (with the CLI) unless it already
        is, and wait until the server accepts it: a C{/nic/update} for a name
        nobody owns answers C{nohost} (and changes nothing) once the
        credentials are right, C{badauth} before.
        """
        if self.passwords.get(user) == password:
            return
        self.server.cli("user", "edit", user, "--password", password)
        self.passwords[user] = password
        probe = get_request("/nic/update?hostname=probe.example.net", user, password)
        answers: list[HTTPResponse] = []

        def accepted() -> bool:
            answers[:] = [http_exchange(self.server.http_port, probe)]
            return answers[0].status == 200

        ok, waited = wait_for(accepted, CHANGE_LIMIT, interval=0.1)
        self.assertTrue(ok, f"new password of {user} not accepted after {waited:.1f} s: {answers}")
        self.assertEqual(answers[0].body, b"nohost\n")

    def park(self, user: str, *names: str) -> None:
        """
        Set C{user}'s addresses to the parked ones and wait until dig shows
        both (one of them may already be parked from before, so waiting for
        one could end before the server has read the change).
        """
        self.server.cli("user", "update", user, PARKED_V4, PARKED_V6)
        for name in names or (f"{user}.{SUFFIX}",):
            results: list[DigResult] = []

            def parked() -> bool:
                results[:] = [self.served(name, "A"), self.served(name, "AAAA")]
                return (
                    results[0].data("A") == [PARKED_V4]
                    and results[1].data("AAAA") == [PARKED_V6]
                )

            ok, waited = wait_for(parked, CHANGE_LIMIT, interval=0.1)
            self.assertTrue(
                ok, f"{name} not parked after {waited:.1f} s: {[r.output for r in results]}"
            )

    def assertAddresses(self, name: str, rtype: str, expected: list[str]) -> DigResult:
        """dig (once, at once: an acknowledged update is served) shows C{expected}."""
        return self.assertServes(name, rtype, expected)

    def assertParked(self, name: str) -> None:
        self.assertAddresses(name, "A", [PARKED_V4])
        self.assertAddresses(name, "AAAA", [PARKED_V6])

    def assertComplete(self, response: HTTPResponse) -> None:
        """
        What every reply must be for every client: a Content-Length that
        matches the body (ddclient cannot read chunked bodies), never
        chunked, and C{Cache-Control: private}.
        """
        self.assertIsNone(response.header("transfer-encoding"), response.raw)
        self.assertEqual(response.header_values("content-length"), [str(len(response.body))], response.raw)
        self.assertEqual(response.header("cache-control"), "private", response.raw)

    def replay(self, name: str, tls: bool = False) -> HTTPResponse:
        """
        Send the fixture C{name} byte for byte (after giving its user the
        password of its Authorization header) to the HTTP port, or with
        C{tls} to the HTTPS port; the reply must be complete.
        """
        with open(os.path.join(FIXTURES, name), "rb") as f:
            raw = f.read()
        credentials = request_credentials(raw)
        if credentials is not None:
            self.ensure_password(*credentials)
        if tls:
            response = http_exchange(self.server.https_port, raw, client_tls(self.server.cert))
        else:
            response = http_exchange(self.server.http_port, raw)
        self.assertComplete(response)
        return response

    def assertDdclientGood(self, response: HTTPResponse, hosts: list[str], ip: str) -> None:
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(response.header("content-type"), "text/plain; charset=utf-8")
        self.assertEqual(ddclient_verdicts(response, hosts), {h: "good" for h in hosts}, response.raw)
        self.assertEqual(response.text, "".join(f"good {ip}\n" for _ in hosts))

    # -- replays: ddclient 3.10

    def test_every_fixture_is_replayed(self) -> None:
        """Each .raw file in tests/fixtures/http/ is sent by a test of this class."""
        fixtures = sorted(f for f in os.listdir(FIXTURES) if f.endswith(".raw"))
        self.assertGreaterEqual(len(fixtures), 12)
        with open(os.path.abspath(__file__), encoding="utf-8") as f:
            source = f.read()
        replayed = set(re.findall(r'self\.replay\("([^"]+)"', source))
        self.assertEqual(sorted(set(fixtures) - replayed), [])
        self.assertEqual(sorted(replayed - set(fixtures)), [])

    def test_replay_ddclient_dyndns2(self) -> None:
        """
        ddclient, protocol dyndns2, one host, a password with a space
        (C{alice:s3cret pass}): C{good 192.0.2.7}, which ddclient reports
        as C{SUCCESS}; dig serves the address.
        """
        self.park("alice")
        response = self.replay("ddclient-dyndns2.raw")
        self.assertDdclientGood(response, [f"alice.{SUFFIX}"], "192.0.2.7")
        self.assertAddresses(f"alice.{SUFFIX}", "A", ["192.0.2.7"])

    def test_replay_ddclient_dyndns2_ipv6(self) -> None:
        """ddclient with C{myip=2001:db8::7}: C{good 2001:db8::7}, the AAAA changes, the A stays."""
        self.park("alice")
        response = self.replay("ddclient-dyndns2-ipv6.raw")
        self.assertDdclientGood(response, [f"alice.{SUFFIX}"], "2001:db8::7")
        self.assertAddresses(f"alice.{SUFFIX}", "AAAA", ["2001:db8::7"])

    def test_replay_ddclient_dyndns2_wildcard_mx(self) -> None:
        """
        ddclient with C{wildcard=ON&mx=..&backmx=YES}: accepted and ignored
        (documented), so C{good}, and no wildcard appears.
        """
        self.park("alice")
        response = self.replay("ddclient-dyndns2-wildcard-mx.raw")
        self.assertDdclientGood(response, [f"alice.{SUFFIX}"], "192.0.2.7")
        self.assertAddresses(f"alice.{SUFFIX}", "A", ["192.0.2.7"])
        below = self.served(f"www.alice.{SUFFIX}", "A")
        self.assertEqual(below.status, "NXDOMAIN", below.output)

    def test_replay_ddclient_dyndns2_2hosts(self) -> None:
        """
        ddclient, two hosts in one request, as bob:
        C{hostname=bob.dyn.example.com,carol.dyn.example.com}. The capture
        server let bob update both; here carol.dyn.example.com is user
        carol's own name, which bob cannot own (names under the suffix are
        only C{<id>.<suffix>} and below), so the protocol-correct answer is
        one line per host in order, C{good 192.0.2.8} then C{nohost}:
        ddclient reports success for bob and failure for carol, and carol's
        address does not move. (With C{nic_update_ignore_hostname} both
        succeed: L{IgnoreHostnameTests}.)
        """
        self.park(BOB)
        self.park(CAROL)
        response = self.replay("ddclient-dyndns2-2hosts.raw")
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(response.text, "good 192.0.2.8\nnohost\n")
        self.assertEqual(
            ddclient_verdicts(response, [f"bob.{SUFFIX}", f"carol.{SUFFIX}"]),
            {f"bob.{SUFFIX}": "good", f"carol.{SUFFIX}": "nohost"},
        )
        self.assertAddresses(f"bob.{SUFFIX}", "A", ["192.0.2.8"])
        self.assertParked(f"carol.{SUFFIX}")

    def test_replay_ddclient_dyndns1_https(self) -> None:
        """
        ddclient, protocol dyndns1 (always HTTPS in 3.10), replayed over our
        HTTPS listener: C{/nic/dyndns?action=edit...} is not one of our
        methods, so the protocol-correct answer is a complete 404
        (Content-Length, no chunks); ddclient's C{header_ok} fails it and
        nothing changes.
        """
        self.park("alice")
        response = self.replay("ddclient-dyndns1-https.raw", tls=True)
        self.assertEqual(response.status, 404, response.raw)
        self.assertNotEqual(ddclient_verdicts(response, ["x"])["x"], "good")
        self.assertParked(f"alice.{SUFFIX}")

    def test_replay_ddclient_web_checkip(self) -> None:
        """
        ddclient C{use=web}: C{GET /checkip} answers checkip.dyndns.org's
        page, from which ddclient takes 127.0.0.1 (the peer; the capture
        server said 198.51.100.9); then the captured update with
        C{myip=198.51.100.9} is C{good}.
        """
        self.park("alice")
        page = self.replay("ddclient-web-checkip-1.raw")
        self.assertEqual(page.status, 200, page.raw)
        self.assertEqual(page.header("content-type"), "text/html")
        self.assertEqual(
            page.text,
            "<html><head><title>Current IP Check</title></head>"
            "<body>Current IP Address: 127.0.0.1</body></html>\r\n",
        )
        self.assertEqual(ddclient_web_address(page), "127.0.0.1")
        self.assertParked(f"alice.{SUFFIX}")
        response = self.replay("ddclient-web-checkip-2.raw")
        self.assertDdclientGood(response, [f"alice.{SUFFIX}"], "198.51.100.9")
        self.assertAddresses(f"alice.{SUFFIX}", "A", ["198.51.100.9"])

    # -- replays: inadyn 2.10

    def test_replay_inadyn_custom(self) -> None:
        """
        inadyn, custom provider, HTTP/1.0, C{Host: 127.0.0.1} without the
        port, C{alice:s3cret pass}: 200 and C{good 192.0.2.7}, which inadyn
        counts as success.
        """
        self.park("alice")
        response = self.replay("inadyn-custom.raw")
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(response.text, "good 192.0.2.7\n")
        self.assertTrue(inadyn_success(response))
        self.assertAddresses(f"alice.{SUFFIX}", "A", ["192.0.2.7"])

    def test_replay_inadyn_custom_ipv6(self) -> None:
        """inadyn with C{myip=2001%3adb8%3a%3a7} (percent-encoded colons): C{good 2001:db8::7}."""
        self.park("alice")
        response = self.replay("inadyn-custom-ipv6.raw")
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(response.text, "good 2001:db8::7\n")
        self.assertTrue(inadyn_success(response))
        self.assertAddresses(f"alice.{SUFFIX}", "AAAA", ["2001:db8::7"])

    def test_replay_inadyn_custom_checkip(self) -> None:
        """
        inadyn's custom checkip (C{GET /checkip}, HTTP/1.0): inadyn takes
        the first address in the body, 127.0.0.1; then the captured update
        (C{myip=198.51.100.9}) is C{good}.
        """
        self.park("alice")
        page = self.replay("inadyn-custom-checkip-1.raw")
        self.assertEqual(page.version, "HTTP/1.0")
        self.assertEqual(inadyn_checkip_address(page), "127.0.0.1")
        response = self.replay("inadyn-custom-checkip-2.raw")
        self.assertEqual(response.text, "good 198.51.100.9\n")
        self.assertTrue(inadyn_success(response))
        self.assertAddresses(f"alice.{SUFFIX}", "A", ["198.51.100.9"])

    def test_replay_inadyn_custom_urlauth(self) -> None:
        """
        inadyn with a custom path C{/update?user=..&password=..&hostname=..}:
        not one of our endpoints (URL authentication is C{<base>ddns?user=&pw=},
        here C{/dyndns/ddns}), so the protocol-correct answer is a complete
        404 (Content-Length), which inadyn counts as a failure; nothing
        changes.
        """
        self.park("alice")
        response = self.replay("inadyn-custom-urlauth.raw")
        self.assertEqual(response.status, 404, response.raw)
        self.assertFalse(inadyn_success(response))
        self.assertParked(f"alice.{SUFFIX}")

    def test_replay_inadyn_provider_dyndns_org(self) -> None:
        """
        inadyn's built-in C{default@dyndns.org} (C{Host: members.dyndns.org},
        C{wildcard=ON}): the router-style "dyndns.org" setting works, C{good}.
        """
        self.park("alice")
        response = self.replay("inadyn-provider-dyndns.org.raw")
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(response.text, "good 192.0.2.7\n")
        self.assertTrue(inadyn_success(response))
        self.assertAddresses(f"alice.{SUFFIX}", "A", ["192.0.2.7"])

    # -- the real ddclient, inside the loopback guard

    def test_loopback_guard(self) -> None:
        """
        Inside the guard /etc/resolv.conf names only 127.0.0.1 and /etc/hosts
        knows only localhost; outside, both files are untouched.
        """
        require_loopback_guard()
        with open("/etc/resolv.conf", "rb") as f:
            resolv_before = f.read()
        done = subprocess.run(
            guarded(self.workdir("guard"), ["cat", "/etc/resolv.conf", "/etc/hosts"]),
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
            timeout=GUARD_TIMEOUT, check=False,
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout, GUARD_RESOLV + GUARD_HOSTS)
        with open("/etc/resolv.conf", "rb") as f:
            self.assertEqual(f.read(), resolv_before)

    def assertDdclientSuccess(self, output: str, host: str, ip: str) -> None:
        pattern = rf"(?m)^SUCCESS: +updating {re.escape(host)}: good: IP address set to {re.escape(ip)}$"
        self.assertRegex(output, pattern)

    def test_ddclient_one_host(self) -> None:
        """ddclient (use=ip) updates one host: it reports SUCCESS, dig serves the address."""
        self.park(DORA)
        rc, output = run_ddclient(
            self.workdir("ddclient-one"), self.server.http_port, DORA, DORA_PW,
            [f"dora.{SUFFIX}"], ip="192.0.2.61",
        )
        self.assertEqual(rc, 0, output)
        self.assertDdclientSuccess(output, f"dora.{SUFFIX}", "192.0.2.61")
        self.assertNotIn("FAILED", output)
        self.assertAddresses(f"dora.{SUFFIX}", "A", ["192.0.2.61"])

    def test_ddclient_two_hosts_in_one_request(self) -> None:
        """
        ddclient groups dora.dyn.example.com and dora's additional name
        dora.example.org into one request; both lines are C{good}, both
        names serve the address.
        """
        hosts = [f"dora.{SUFFIX}", "dora.example.org"]
        self.park(DORA, *hosts)
        rc, output = run_ddclient(
            self.workdir("ddclient-two"), self.server.http_port, DORA, DORA_PW,
            hosts, ip="192.0.2.62",
        )
        self.assertEqual(rc, 0, output)
        sent = re.findall(r"(?m)^SENDING: +GET (/nic/update\S*)", output)
        self.assertEqual(
            sent, [f"/nic/update?system=dyndns&hostname={','.join(hosts)}&myip=192.0.2.62"], output
        )
        for host in hosts:
            self.assertDdclientSuccess(output, host, "192.0.2.62")
            self.assertAddresses(host, "A", ["192.0.2.62"])
        self.assertNotIn("FAILED", output)

    def test_ddclient_ipv6(self) -> None:
        """ddclient with C{ip=2001:db8::77}: SUCCESS, dig serves the AAAA."""
        self.park(DORA)
        rc, output = run_ddclient(
            self.workdir("ddclient-v6"), self.server.http_port, DORA, DORA_PW,
            [f"dora.{SUFFIX}"], ip="2001:db8::77",
        )
        self.assertEqual(rc, 0, output)
        self.assertIn("&myip=2001:db8::77 HTTP/1.1", output)
        self.assertDdclientSuccess(output, f"dora.{SUFFIX}", "2001:db8::77")
        self.assertAddresses(f"dora.{SUFFIX}", "AAAA", ["2001:db8::77"])

    def test_ddclient_use_web_checkip(self) -> None:
        """
        ddclient C{use=web, web=http://127.0.0.1:PORT/checkip} learns
        127.0.0.1 from our checkip page and sends it; dig serves it.
        """
        self.park(DORA)
        rc, output = run_ddclient(
            self.workdir("ddclient-web"), self.server.http_port, DORA, DORA_PW,
            [f"dora.{SUFFIX}"], web=f"http://127.0.0.1:{self.server.http_port}/checkip",
        )
        self.assertEqual(rc, 0, output)
        self.assertRegex(output, r"(?m)^SENDING: +GET /checkip HTTP/1.1$")
        self.assertRegex(output, rf"(?m)^INFO: +setting IP address to 127\.0\.0\.1 for dora\.{re.escape(SUFFIX)}$")
        self.assertDdclientSuccess(output, f"dora.{SUFFIX}", "127.0.0.1")
        self.assertAddresses(f"dora.{SUFFIX}", "A", ["127.0.0.1"])

    # -- curl

    def url(self, path: str, tls: bool = False, **query: str) -> str:
        if tls:
            base = f"https://127.0.0.1:{self.server.https_port}"
        else:
            base = f"http://127.0.0.1:{self.server.http_port}"
        return base + path + ("?" + urlencode(query) if query else "")

    def curl(self, *args: str) -> HTTPResponse:
        rc, response, err = run_curl(*args)
        self.assertEqual(rc, 0, err)
        assert response is not None
        self.assertComplete(response)
        return response

    def assertDdnsResult(self, response: HTTPResponse, ok: bool, text: str) -> None:
        """The original's result page and our C{X-DynDNS-Result} header."""
        word, meta = ("OK", "OK") if ok else ("ERROR", "FAIL")
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(response.header("x-dyndns-result"), meta, response.raw)
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8")
        self.assertIn(f'<meta name="DynDNS-Result" content="{meta}">', response.text)
        self.assertIn(f"<h1>{word}: {text}</h1>", response.text)

    def assertChallenge(self, response: HTTPResponse) -> None:
        self.assertEqual(response.status, 401, response.raw)
        self.assertEqual(response.header("www-authenticate"), 'Basic realm="DynDNS Service"')
        self.assertEqual(response.header("x-dyndns-result"), "FAIL")

    def test_curl_url_auth_http(self) -> None:
        """
        C{/dyndns/ddns?user=&pw=&ip=v4,v6} over HTTP: the OK page with both
        addresses, and dig serves both; a wrong password gives the ERROR
        page (200, FAIL) and changes nothing.
        """
        self.park(ERIN)
        wrong = self.curl(self.url(f"{BASE}ddns", user=ERIN, pw="nope", ip="192.0.2.99"))
        self.assertDdnsResult(wrong, False, "Incorrect user ID or password")
        self.assertParked(f"erin.{SUFFIX}")
        response = self.curl(
            self.url(f"{BASE}ddns", user=ERIN, pw=ERIN_PW, ip="192.0.2.71,2001:db8::71")
        )
        self.assertDdnsResult(response, True, "192.0.2.71,2001:db8::71")
        self.assertAddresses(f"erin.{SUFFIX}", "A", ["192.0.2.71"])
        self.assertAddresses(f"erin.{SUFFIX}", "AAAA", ["2001:db8::71"])
        # The access log shows the requests, never the passwords in them.
        with open(os.path.join(self.server.directory, "access.log"), errors="replace") as f:
            log = f.read()
        self.assertNotIn(ERIN_PW, self.server.read_log())
        self.assertIn(f"user={ERIN}&pw=***&ip=192.0.2.71", log)
        for secret in ("pw=nope", urlencode({"pw": ERIN_PW}), ERIN_PW):
            self.assertNotIn(secret, log)

    def test_curl_basic_auth_http(self) -> None:
        """
        C{/dyndns/ddns?ip=} with C{curl -u} over HTTP (the password holds a
        colon): OK; without credentials or with a wrong password, 401 with
        the Basic challenge, and nothing changes.
        """
        self.park(ERIN)
        self.assertChallenge(self.curl(self.url(f"{BASE}ddns", ip="192.0.2.99")))
        self.assertChallenge(
            self.curl("-u", f"{ERIN}:wrong", self.url(f"{BASE}ddns", ip="192.0.2.99"))
        )
        self.assertParked(f"erin.{SUFFIX}")
        response = self.curl("-u", f"{ERIN}:{ERIN_PW}", self.url(f"{BASE}ddns", ip="192.0.2.72"))
        self.assertDdnsResult(response, True, "192.0.2.72")
        self.assertAddresses(f"erin.{SUFFIX}", "A", ["192.0.2.72"])

    def test_curl_url_auth_https(self) -> None:
        """
        URL authentication over HTTPS (curl trusts only the certificate made
        for this run), with C{ttl=120}: OK, and dig serves the address with
        that TTL.
        """
        self.park(ERIN)
        response = self.curl(
            "--cacert", self.server.cert,
            self.url(f"{BASE}ddns", tls=True, user=ERIN, pw=ERIN_PW, ip="192.0.2.73", ttl="120"),
        )
        self.assertDdnsResult(response, True, "192.0.2.73")
        result = self.assertAddresses(f"erin.{SUFFIX}", "A", ["192.0.2.73"])
        self.assertEqual([r.ttl for r in result.answer], [120])

    def test_curl_basic_auth_https(self) -> None:
        """
        Basic authentication over HTTPS without C{ip}: the server uses the
        address it sees (127.0.0.1) and dig serves it.
        """
        self.park(ERIN)
        response = self.curl(
            "--cacert", self.server.cert, "-u", f"{ERIN}:{ERIN_PW}", self.url(f"{BASE}ddns", tls=True)
        )
        self.assertDdnsResult(response, True, "127.0.0.1")
        self.assertAddresses(f"erin.{SUFFIX}", "A", ["127.0.0.1"])

    def test_curl_https_checks_the_certificate(self) -> None:
        """
        Without C{--cacert} curl refuses our self-signed certificate (exit
        60), so the HTTPS tests really verify it; nothing changes.
        """
        self.park(ERIN)
        rc, response, err = run_curl(
            self.url(f"{BASE}ddns", tls=True, user=ERIN, pw=ERIN_PW, ip="192.0.2.99")
        )
        self.assertEqual(rc, 60, err)
        self.assertIsNone(response)
        self.assertParked(f"erin.{SUFFIX}")

    def test_curl_nic_update(self) -> None:
        """
        C{/nic/update} with C{curl -u}: C{good}, then C{nochg} for the same
        address, C{good} for an IPv6 over HTTPS; a wrong password is 401
        C{badauth} with the challenge. dig follows each change.
        """
        self.park(ERIN)
        host = f"erin.{SUFFIX}"
        bad = self.curl("-u", f"{ERIN}:wrong", self.url("/nic/update", hostname=host, myip="192.0.2.99"))
        self.assertEqual((bad.status, bad.text), (401, "badauth\n"))
        self.assertEqual(bad.header("www-authenticate"), 'Basic realm="DynDNS Service"')
        self.assertParked(host)
        credentials = f"{ERIN}:{ERIN_PW}"
        first = self.curl("-u", credentials, self.url("/nic/update", hostname=host, myip="192.0.2.75"))
        self.assertEqual((first.status, first.text), (200, "good 192.0.2.75\n"))
        self.assertEqual(first.header("content-type"), "text/plain; charset=utf-8")
        self.assertAddresses(host, "A", ["192.0.2.75"])
        again = self.curl("-u", credentials, self.url("/nic/update", hostname=host, myip="192.0.2.75"))
        self.assertEqual((again.status, again.text), (200, "nochg 192.0.2.75\n"))
        secure = self.curl(
            "--cacert", self.server.cert, "-u", credentials,
            self.url("/nic/update", tls=True, hostname=host, myip="2001:db8::75"),
        )
        self.assertEqual((secure.status, secure.text), (200, "good 2001:db8::75\n"))
        self.assertAddresses(host, "AAAA", ["2001:db8::75"])


class IgnoreHostnameTests(ServerTestCase):
    """
    C{nic_update_ignore_hostname = true} (the original's KB 66 behaviour):
    the two-host ddclient request updates bob whatever C{hostname} says, and
    both lines are C{good}, as ddclient wants.
    """

    def test_replay_ddclient_dyndns2_2hosts(self) -> None:
        """Both lines C{good 192.0.2.8}; bob's name moves, carol's does not."""
        server = self.make_server(listeners=("http",), http={"nic_update_ignore_hostname": True})
        server.add_user(BOB, BOB_PW)
        server.add_user(CAROL, CAROL_PW, address=[PARKED_V4])
        server.start()
        with open(os.path.join(FIXTURES, "ddclient-dyndns2-2hosts.raw"), "rb") as f:
            raw = f.read()
        self.assertEqual(request_credentials(raw), (BOB, BOB_PW))
        response = http_exchange(server.http_port, raw)
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(response.header("content-length"), str(len(response.body)))
        self.assertEqual(response.text, "good 192.0.2.8\ngood 192.0.2.8\n")
        hosts = [f"bob.{SUFFIX}", f"carol.{SUFFIX}"]
        self.assertEqual(ddclient_verdicts(response, hosts), {h: "good" for h in hosts})
        bob = self.served(f"bob.{SUFFIX}", "A")
        self.assertEqual(bob.data("A"), ["192.0.2.8"], bob.output)
        carol = self.served(f"carol.{SUFFIX}", "A")
        self.assertEqual(carol.data("A"), [PARKED_V4], carol.output)
