"""
What every HTTP method shares: remote IP detection (C{myip}, C{checkip}),
the client address behind trusted proxies, the request rules (absolute-form
request lines, methods, sizes, Content-Length and Cache-Control on every
answer), the access log without passwords, and the resource tree.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import address, defer, reactor, threads
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import resource, server
from twisted.web.test.requesthelper import DummyRequest

from dyndns_plugin.config import HTTPSettings
from dyndns_plugin.protocols.myip import MyIPResource
from dyndns_plugin.web import common
from dyndns_plugin.web.common import ClientAddressDetector, DynDNSRequest, basic_credentials
from dyndns_plugin.web.site import build_resources, build_site, redacting_log_formatter
from tests.web_helpers import (
    HOST,
    WebTestCase,
    basic,
    build_request,
    exchange,
    parse_response,
)

ALICE = ("alice", "s3cret")
MAIN = "alice.dyn.example.com"
CHECKIP = b"<html><head><title>Current IP Check</title></head><body>Current IP Address: 127.0.0.1</body></html>\r\n"


def dummy_request(peer: str = "127.0.0.1", headers: dict[str, str] | None = None) -> DummyRequest:
    """A DummyRequest from C{peer} with C{headers}."""
    kind = address.IPv6Address if ":" in peer else address.IPv4Address
    request = DummyRequest([b""])
    request.client = kind("TCP", peer, 4711)
    for name, value in (headers or {}).items():
        request.requestHeaders.addRawHeader(name.encode(), value.encode())
    return request


class Theirs(resource.Resource):
    """A page of the embedding application."""

    isLeaf = True

    def render_GET(self, request):
        return b"theirs"


# -- remote IP detection


class RemoteIPTests(WebTestCase):
    @defer.inlineCallbacks
    def test_myip(self):
        """C{<base>myip} answers the peer address alone, as text/plain."""
        response = yield self.request("/dyndns/myip")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"127.0.0.1")
        self.assertEqual(response.header("content-type"), "text/plain; charset=utf-8")

    @defer.inlineCallbacks
    def test_checkip_paths(self):
        """C{<base>checkip}, C{/checkip} and C{/nic/checkip.html} answer Dyn's exact page."""
        for path in ("/dyndns/checkip", "/checkip", "/nic/checkip.html"):
            response = yield self.request(path)
            self.assertEqual(response.status, 200, path)
            self.assertEqual(response.body, CHECKIP, path)
            self.assertEqual(response.header("content-type"), "text/html")
            self.assertEqual(response.header("content-length"), str(len(CHECKIP)))

    @defer.inlineCallbacks
    def test_post_and_head(self):
        """POST answers like GET; HEAD gives the same length without the body."""
        post = yield self.request("/checkip", method="POST", body=b"")
        self.assertEqual(post.body, CHECKIP)
        head = yield self.request("/checkip", method="HEAD")
        self.assertEqual((head.status, head.body), (200, b""))
        self.assertEqual(head.header("content-length"), str(len(CHECKIP)))

    @defer.inlineCallbacks
    def test_no_update(self):
        """Asking for the address changes nobody's state."""
        yield self.request("/dyndns/myip", auth=ALICE)
        self.assertIsNone(self.state("alice"))

    def test_no_client_address(self):
        """Without an IP peer (a UNIX socket) the answer is 400, not a crash."""
        request = DummyRequest([b""])
        request.client = address.UNIXAddress(b"/tmp/sock")
        request.method = b"GET"
        MyIPResource(ClientAddressDetector()).render(request)
        self.assertEqual(request.responseCode, 400)
        self.assertEqual(b"".join(request.written), b"no client address\n")
        self.assertEqual(request.finished, 1)


class RemoteIPOffTests(WebTestCase):
    settings = {"remote_ip": False}

    @defer.inlineCallbacks
    def test_not_found(self):
        """With remote IP detection off every detection path is 404."""
        for path in ("/dyndns/myip", "/dyndns/checkip", "/checkip", "/nic/checkip.html"):
            response = yield self.request(path)
            self.assertEqual(response.status, 404, path)
            self.assertNotIn(b"127.0.0.1", response.body)

    @defer.inlineCallbacks
    def test_updates_still_work(self):
        """Only detection is off: updates still use the detected address."""
        response = yield self.request(f"/nic/update?hostname={MAIN}", auth=ALICE)
        self.assertEqual(response.body, b"good 127.0.0.1\n")


# -- the client address


class NoTrustedProxyTests(WebTestCase):
    """The default: no proxy is trusted, so no header is believed."""

    @defer.inlineCallbacks
    def test_update_ignores_forwarded_for(self):
        """X-Forwarded-For from an untrusted peer is ignored: the update uses the peer."""
        response = yield self.request(
            f"/nic/update?hostname={MAIN}",
            {"X-Forwarded-For": "1.2.3.4"},
            auth=ALICE,
        )
        self.assertEqual(response.body, b"good 127.0.0.1\n")
        self.assertEqual(self.served(MAIN), ("127.0.0.1",))

    @defer.inlineCallbacks
    def test_every_header_ignored(self):
        """Forwarded, X-Real-IP and Client-IP are ignored too."""
        for name, value in (
            ("X-Forwarded-For", "1.2.3.4"),
            ("Forwarded", "for=1.2.3.4"),
            ("X-Real-IP", "1.2.3.4"),
            ("Client-IP", "1.2.3.4"),
        ):
            response = yield self.request("/dyndns/myip", {name: value})
            self.assertEqual(response.body, b"127.0.0.1", name)


class TrustedProxyTests(WebTestCase):
    """The peer, 127.0.0.1, is a trusted proxy."""

    settings = {"trusted_proxies": ("127.0.0.1/32",)}

    @defer.inlineCallbacks
    def myip(self, headers):
        response = yield self.request("/dyndns/myip", headers)
        return response.body.decode()

    @defer.inlineCallbacks
    def test_update_uses_forwarded_for(self):
        """An update without myip uses the address the trusted proxy reports."""
        response = yield self.request(
            f"/nic/update?hostname={MAIN}",
            {"X-Forwarded-For": "1.2.3.4"},
            auth=ALICE,
        )
        self.assertEqual(response.body, b"good 1.2.3.4\n")
        self.assertEqual(self.served(MAIN), ("1.2.3.4",))
        self.assertEqual(self.state("alice").client_address, "1.2.3.4")

    @defer.inlineCallbacks
    def test_ddns_uses_forwarded_for(self):
        """C{<base>ddns} without C{ip} uses it too."""
        response = yield self.request(
            "/dyndns/ddns?user=alice&pw=s3cret",
            {"X-Forwarded-For": "1.2.3.4"},
        )
        self.assertIn(b"<h1>OK: 1.2.3.4</h1>", response.body)

    @defer.inlineCallbacks
    def test_checkip_uses_forwarded_for(self):
        """checkip shows the address the trusted proxy reports."""
        response = yield self.request("/checkip", {"X-Forwarded-For": "1.2.3.4"})
        self.assertIn(b"Current IP Address: 1.2.3.4</body>", response.body)

    @defer.inlineCallbacks
    def test_last_public_address(self):
        """The last public address wins; private, loopback and link-local entries are skipped."""
        found = yield self.myip({"X-Forwarded-For": "5.6.7.8, 1.2.3.4, 10.0.0.1, 192.168.1.1, 169.254.0.9, 127.0.0.1"})
        self.assertEqual(found, "1.2.3.4")

    @defer.inlineCallbacks
    def test_garbage_entries_skipped(self):
        """Entries that are not addresses are skipped."""
        found = yield self.myip({"X-Forwarded-For": "1.2.3.4, unknown, , 999.1.1.1"})
        self.assertEqual(found, "1.2.3.4")

    @defer.inlineCallbacks
    def test_last_header_line(self):
        """Of two X-Forwarded-For lines the proxy's own (the last) is read, not the client's."""
        found = yield self.myip([("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "1.2.3.4")])
        self.assertEqual(found, "1.2.3.4")

    @defer.inlineCallbacks
    def test_forwarded_ipv6(self):
        """C{Forwarded: for="[v6]:port"} (RFC 7239) is parsed."""
        found = yield self.myip({"Forwarded": 'for="[2a00:1450:4001::1]:4711";proto=http'})
        self.assertEqual(found, "2a00:1450:4001::1")

    @defer.inlineCallbacks
    def test_forwarded_ipv4_port(self):
        """C{Forwarded: for=v4:port}, several elements: the last public one."""
        found = yield self.myip({"Forwarded": "for=5.6.7.8, For=1.2.3.4:80;by=10.0.0.1, for=10.1.1.1"})
        self.assertEqual(found, "1.2.3.4")

    @defer.inlineCallbacks
    def test_x_real_ip(self):
        """X-Real-IP is used."""
        self.assertEqual((yield self.myip({"X-Real-IP": "1.2.3.5"})), "1.2.3.5")

    @defer.inlineCallbacks
    def test_client_ip(self):
        """Client-IP is used."""
        self.assertEqual((yield self.myip({"Client-IP": "1.2.3.6"})), "1.2.3.6")

    @defer.inlineCallbacks
    def test_ipv4_mapped(self):
        """An IPv4-mapped IPv6 address in a header is the IPv4 address."""
        self.assertEqual((yield self.myip({"X-Forwarded-For": "::ffff:1.2.3.7"})), "1.2.3.7")

    @defer.inlineCallbacks
    def test_all_private(self):
        """A header with only private addresses: the peer."""
        found = yield self.myip({"X-Forwarded-For": "10.0.0.1, 192.168.0.1, 172.16.0.1, ::1, fe80::1"})
        self.assertEqual(found, "127.0.0.1")

    @defer.inlineCallbacks
    def test_no_header(self):
        """No proxy header at all: the peer."""
        self.assertEqual((yield self.myip({})), "127.0.0.1")

    @defer.inlineCallbacks
    def test_undecodable_header(self):
        """A header that is not UTF-8 is skipped (no 500, no traceback)."""
        data = b"GET /dyndns/myip HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Forwarded-For: \xff\xfe1.2.3.4\r\n\r\n"
        response = yield self.send(data)
        self.assertEqual((response.status, response.body), (200, b"127.0.0.1"))
        self.assertEqual(self.flushLoggedErrors(), [])


class DetectorTests(SynchronousTestCase):
    """L{ClientAddressDetector} on fake requests."""

    def test_untrusted_peer(self):
        """An untrusted peer is the answer, whatever its headers say."""
        detector = ClientAddressDetector(["10.0.0.0/8"])
        request = dummy_request("127.0.0.1", {"x-forwarded-for": "1.2.3.4"})
        self.assertEqual(str(detector.detect(request)), "127.0.0.1")

    def test_trusted_entries_skipped(self):
        """Entries inside a trusted network (a proxy chain) are skipped."""
        detector = ClientAddressDetector(["127.0.0.1/32", "1.2.3.0/24"])
        request = dummy_request("127.0.0.1", {"x-forwarded-for": "5.6.7.8, 1.2.3.4"})
        self.assertEqual(str(detector.detect(request)), "5.6.7.8")

    def test_mapped_peer(self):
        """An IPv4-mapped peer (dual-stack socket) is its IPv4 address, and can be trusted."""
        detector = ClientAddressDetector(["127.0.0.1/32"])
        request = dummy_request("::ffff:127.0.0.1", {"x-real-ip": "1.2.3.4"})
        self.assertEqual(str(detector.detect(request)), "1.2.3.4")
        self.assertEqual(str(ClientAddressDetector().detect(request)), "127.0.0.1")

    def test_forwarded_first(self):
        """Forwarded is read before X-Forwarded-For when both are present."""
        detector = ClientAddressDetector(["127.0.0.1/32"])
        request = dummy_request("127.0.0.1", {"forwarded": "for=1.2.3.4", "x-forwarded-for": "5.6.7.8"})
        self.assertEqual(str(detector.detect(request)), "1.2.3.4")

    def test_forwarded_parsing(self):
        """Quoted IPv6 with port, IPv4 with port, obfuscated and unknown nodes."""
        request = dummy_request(
            headers={
                "forwarded": 'for="[2001:db8::1]:4711", for=192.0.2.43:80;proto=https, '
                "for=_hidden, for=unknown, by=1.2.3.4"
            }
        )
        self.assertEqual(
            common._header_addresses(request),
            ["2001:db8::1", "192.0.2.43", "_hidden", "unknown"],
        )

    def test_no_ip_peer(self):
        """A peer without an IP address (UNIX socket) gives None."""
        request = DummyRequest([b""])
        request.client = address.UNIXAddress(b"/tmp/s")
        self.assertIsNone(ClientAddressDetector(["127.0.0.1/32"]).detect(request))

    def test_basic_credentials(self):
        """Basic credentials: password with a colon kept, garbage refused."""
        self.assertEqual(
            basic_credentials(dummy_request(headers={"authorization": basic("bob", "a:b")})),
            ("bob", "a:b"),
        )
        for value in ("Basic", "Digest x", "Basic ***", "Basic \u00e9"):
            self.assertIsNone(basic_credentials(dummy_request(headers={"authorization": value})))
        self.assertIsNone(basic_credentials(dummy_request()))


# -- request rules


class RequestRuleTests(WebTestCase):
    @defer.inlineCallbacks
    def test_absolute_form(self):
        """An absolute-form request line (old inadyn) is served like its path."""
        data = (
            f"GET http://members.dyndns.org/nic/update?hostname={MAIN}&myip=192.0.2.1 HTTP/1.0\r\n"
            f"Host: members.dyndns.org\r\nAuthorization: {basic(*ALICE)}\r\n"
            "User-Agent: inadyn/1.96.2\r\n\r\n"
        ).encode()
        response = yield self.send(data)
        self.assertEqual(response.raw.split(b"\r\n", 1)[0], b"HTTP/1.0 200 OK")
        self.assertEqual(response.body, b"good 192.0.2.1\n")
        self.assertEqual(self.served(MAIN), ("192.0.2.1",))

    @defer.inlineCallbacks
    def test_absolute_form_https_userinfo(self):
        """C{https://user:pw@host/path} is reduced to the path too."""
        data = build_request(
            "GET",
            "HTTPS://alice:s3cret@members.dyndns.org:443/dyndns/myip",
        )
        response = yield self.send(data)
        self.assertEqual((response.status, response.body), (200, b"127.0.0.1"))

    @defer.inlineCallbacks
    def test_absolute_form_without_path(self):
        """C{http://host?query} and C{http://host} become C{/}: 404, not a crash."""
        for target in ("http://members.dyndns.org?x=1", "http://members.dyndns.org"):
            response = yield self.send(build_request("GET", target))
            self.assertEqual(response.status, 404, target)

    @defer.inlineCallbacks
    def test_other_methods(self):
        """DELETE, PUT, OPTIONS and PATCH: 405 with Allow, and nothing is updated."""
        for method in ("DELETE", "PUT", "OPTIONS", "PATCH"):
            for path in (f"/nic/update?hostname={MAIN}&myip=192.0.2.1", "/dyndns/myip", "/nowhere"):
                response = yield self.request(path, method=method, auth=ALICE)
                self.assertEqual(response.status, 405, (method, path))
                self.assertEqual(response.headers["allow"], ["GET, HEAD, POST"])
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_unknown_paths(self):
        """Unknown paths, folders themselves and the root: 404 with a Content-Length."""
        for path in ("/", "/nope", "/dyndns", "/dyndns/", "/dyndns/nope", "/nic", "/nic/nope/deeper", "/dyndns/ddnsx"):
            response = yield self.request(path)
            self.assertEqual(response.status, 404, path)
            self.assertEqual(response.body, b"not found\n", path)

    @defer.inlineCallbacks
    def test_unknown_path_head(self):
        """HEAD of an unknown path: 404, Content-Length, no body."""
        response = yield self.request("/nope", method="HEAD")
        self.assertEqual((response.status, response.body), (404, b""))
        self.assertEqual(response.header("content-length"), "10")

    @defer.inlineCallbacks
    def test_body_limit(self):
        """A body of exactly 16 KiB is accepted."""
        form = f"hostname={MAIN}&myip=192.0.2.1&pad=".encode()
        body = form + b"x" * (16 * 1024 - len(form))
        response = yield self.request(
            "/nic/update",
            {"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
            body=body,
            auth=ALICE,
        )
        self.assertEqual(response.body, b"good 192.0.2.1\n")

    @defer.inlineCallbacks
    def test_body_too_large(self):
        """A declared body over 16 KiB: 413 at once, and the server keeps serving."""
        data = build_request("POST", "/nic/update", [("Content-Length", "16385")])
        response = yield self.send(data)
        self.assertEqual(response.status, 413)
        self.assertEqual(response.body, b"")
        self.assertIsNone(self.state("alice"))
        after = yield self.request("/dyndns/myip")
        self.assertEqual(after.body, b"127.0.0.1")

    @defer.inlineCallbacks
    def test_chunked_body_too_large(self):
        """A chunked body that grows over 16 KiB: 413, and the server keeps serving."""
        chunk = b"x" * (16 * 1024 + 1)
        data = build_request("POST", "/nic/update", [("Transfer-Encoding", "chunked")])
        data += b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        response = yield self.send(data)
        self.assertEqual(response.status, 413)
        after = yield self.request("/dyndns/myip")
        self.assertEqual(after.body, b"127.0.0.1")

    @defer.inlineCallbacks
    def test_headers_too_large(self):
        """A header section over Twisted's 16 KiB: 400, and the server keeps serving."""
        headers = [(f"X-Filler-{i}", "a" * 1000) for i in range(20)]
        response = yield self.send(build_request("GET", "/dyndns/myip", headers), check=False)
        self.assertEqual(response.status, 400)
        after = yield self.request("/dyndns/myip")
        self.assertEqual(after.body, b"127.0.0.1")

    @defer.inlineCallbacks
    def test_header_line_too_long(self):
        """One header line over 16 KiB: the connection is dropped, the server keeps serving."""
        data = build_request("GET", "/dyndns/myip", [("X-Big", "a" * 20000)])
        raw = yield threads.deferToThread(exchange, self.port_number, data)
        self.assertNotIn(b"200 OK", raw)
        after = yield self.request("/dyndns/myip")
        self.assertEqual(after.body, b"127.0.0.1")

    @defer.inlineCallbacks
    def test_undecodable_authorization(self):
        """An Authorization header that is not UTF-8: badauth (401), not a 500."""
        data = (
            b"GET /nic/update?myip=192.0.2.1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: Basic \xff\xfe\r\n\r\n"
        )
        response = yield self.send(data)
        self.assertEqual((response.status, response.body), (401, b"badauth\n"))
        data = data.replace(b"/nic/update?myip", b"/dyndns/ddns?ip")
        response = yield self.send(data)
        self.assertEqual(response.status, 401)
        self.assertEqual(self.flushLoggedErrors(), [])

    @defer.inlineCallbacks
    def test_handler_crash(self):
        """A bug in a handler is a plain 500 with the same rules, and is logged."""
        nic = self.site.resource.children[b"nic"].children[b"update"]

        def broken(request):
            raise RuntimeError("bug")

        self.patch(nic.detector, "detect", broken)
        response = yield self.request(f"/nic/update?hostname={MAIN}", auth=ALICE)
        self.assertEqual((response.status, response.body), (500, b"server error\n"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


# -- the access log


class AccessLogTests(WebTestCase):
    def formatted(self, uri: bytes) -> str:
        request: Any = dummy_request("192.0.2.9")  # a stand-in for the Request the formatter is given
        request.uri = uri
        request.code = 200
        request.sentLength = 15
        line = redacting_log_formatter("[01/Jan/2026:00:00:00 +0000]", request)
        self.assertEqual(request.uri, uri)  # the request itself is left alone
        return line

    def test_pw_redacted(self):
        """C{pw=s3cret} becomes C{pw=***}; nothing else changes."""
        line = self.formatted(b"/dyndns/ddns?user=alice&pw=s3cret&ip=192.0.2.1")
        self.assertIn('"GET /dyndns/ddns?user=alice&pw=***&ip=192.0.2.1 HTTP/1.0" 200 15', line)
        self.assertNotIn("s3cret", line)

    def test_other_secret_names(self):
        """C{PW}, C{password}, C{pass}, C{passwd} and C{sign}, first or later, any separator."""
        for uri in (
            b"/x?PW=s3cret",
            b"/x?a=1;password=s3cret",
            b"/x?pass=s3cret&b=2",
            b"/x?user=a&passwd=s3cret",
            b"/gnudip?sign=s3cret",
            b"/x?pw=s3cret&pw=s3cret",
        ):
            line = self.formatted(uri)
            self.assertNotIn("s3cret", line, uri)
            self.assertIn("***", line, uri)

    def test_similar_names_kept(self):
        """Parameters that only end in C{pw} are not secrets."""
        self.assertIn("xpw=visible", self.formatted(b"/x?xpw=visible"))

    def test_encoded_names_redacted(self):
        """A name the query parser decodes to a secret's (C{p%77}, C{Pass+}) is redacted too."""
        for uri in (b"/dyndns/ddns?user=a&p%77=s3cret", b"/x?Pass+=s3cret", b"/x?%50W=s3cret", b"/x?token=s3cret"):
            line = self.formatted(uri)
            self.assertNotIn("s3cret", line, uri)
            self.assertIn("=***", line, uri)

    def test_userinfo_redacted(self):
        """An absolute URI's C{user:password@}: the password goes, the user stays."""
        line = self.formatted(b"http://alice:s3cret@members.dyndns.org/nic/update?myip=192.0.2.2")
        self.assertNotIn("s3cret", line)
        self.assertIn("//alice:***@members.dyndns.org/nic/update?myip=192.0.2.2", line)

    def test_referer_redacted(self):
        """A Referer carrying a password (a status page link) is redacted like the URI."""
        request: Any = dummy_request("192.0.2.9", {"Referer": "http://h/dyndns/ddns?user=a&pw=s3cret"})
        request.uri = b"/"
        request.code = 200
        request.sentLength = 0
        line = redacting_log_formatter("[01/Jan/2026:00:00:00 +0000]", request)
        self.assertNotIn("s3cret", line)
        self.assertIn('"http://h/dyndns/ddns?user=a&pw=***"', line)

    @defer.inlineCallbacks
    def test_real_access_log(self):
        """Through the real site the access log never holds the password."""
        path = os.path.abspath(self.mktemp())
        site = build_site(self.service, HTTPSettings(base_path="/dyndns/"), self.checker)
        site.logPath = path
        port = reactor.listenTCP(0, site, interface=HOST)
        self.port_number = port.getHost().port
        try:
            yield self.request("/dyndns/ddns?user=alice&pw=s3cret&ip=192.0.2.1")
            yield self.send(
                build_request(
                    "GET",
                    "http://alice:s3cret@members.dyndns.org/nic/update?myip=192.0.2.2",
                    [("Authorization", basic(*ALICE))],
                )
            )
        finally:
            yield port.stopListening()
        with open(path, encoding="utf-8") as f:
            log = f.read()
        self.assertEqual(len(log.splitlines()), 2, log)
        self.assertIn("pw=***", log)
        self.assertIn('"GET /nic/update?myip=192.0.2.2 HTTP/1.1"', log)
        self.assertNotIn("s3cret", log)
        self.assertNotIn(basic(*ALICE).split()[1], log)


# -- the resource tree


class SiteTreeTests(WebTestCase):
    @defer.inlineCallbacks
    def test_other_base_path(self):
        """Another base path moves ddns/myip/checkip; /nic/update and /checkip stay at the root."""
        self.start_site(HTTPSettings(base_path="/a/b/"))
        for path, status in (
            ("/a/b/myip", 200),
            ("/a/b/checkip", 200),
            ("/checkip", 200),
            ("/nic/checkip.html", 200),
            ("/dyndns/myip", 404),
            ("/a/myip", 404),
        ):
            response = yield self.request(path)
            self.assertEqual(response.status, status, path)
        response = yield self.request("/a/b/ddns?user=alice&pw=s3cret&ip=192.0.2.1")
        self.assertIn(b"<h1>OK: 192.0.2.1</h1>", response.body)
        response = yield self.request("/nic/update?myip=192.0.2.2", auth=ALICE)
        self.assertEqual(response.body, b"good 192.0.2.2\n")

    @defer.inlineCallbacks
    def test_root_base_path(self):
        """A base path of C{/} puts everything at the root."""
        self.start_site(HTTPSettings(base_path="/"))
        response = yield self.request("/myip")
        self.assertEqual(response.body, b"127.0.0.1")
        response = yield self.request("/ddns?user=alice&pw=s3cret&ip=192.0.2.1")
        self.assertIn(b"<h1>OK: 192.0.2.1</h1>", response.body)

    @defer.inlineCallbacks
    def test_mount_in_existing_site(self):
        """L{build_resources} adds the methods to someone else's tree and keeps theirs."""
        root = resource.Resource()
        root.putChild(b"index", Theirs())
        self.assertIs(
            build_resources(self.service, HTTPSettings(base_path="/dyndns/"), self.checker, root),
            root,
        )
        self.assertEqual(sorted(root.children), [b"checkip", b"dyndns", b"index", b"nic"])
        port = reactor.listenTCP(0, server.Site(root), interface=HOST)
        self.addCleanup(port.stopListening)
        self.port_number = port.getHost().port
        # A plain Site: our request rules (Cache-Control) are not there.
        for path, body in (("/index", b"theirs"), ("/dyndns/myip", b"127.0.0.1")):
            response = yield self.request(path, check=False)
            self.assertEqual(response.body, body)
            self.assertEqual(response.header("content-length"), str(len(body)))

    def test_site_settings(self):
        """The site uses our request class, hides tracebacks and takes the timeout."""
        site = build_site(self.service, HTTPSettings(timeout=7), self.checker)
        self.assertIs(site.requestFactory, DynDNSRequest)
        self.assertFalse(site.displayTracebacks)
        self.assertEqual(site.timeOut, 7)

    def test_parse_response_helper(self):
        """The test helper parses repeated headers into lists (sanity of the harness)."""
        response = parse_response(b"HTTP/1.1 200 OK\r\nA: 1\r\na: 2\r\n\r\nxy")
        self.assertEqual((response.status, response.headers, response.body), (200, {"a": ["1", "2"]}, b"xy"))
