"""
The status page and its script as HTTP resources on a real socket: methods,
headers, the Content-Security-Policy and what the markup and script may not
contain. The page's behaviour in a browser is tested in
tests/integration/test_status_page.py.
"""

from __future__ import annotations

import base64
import hashlib
import re

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest
from twisted.web import resource, server

from dyndns_plugin.web.common import DynDNSRequest
from dyndns_plugin.web.status import (
    CONTENT_SECURITY_POLICY,
    SCRIPT,
    StatusPage,
    StatusScript,
)
from tests.web_helpers import HOST, build_request, exchange, parse_response

SECURITY_HEADERS = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class StatusResourceTests(unittest.TestCase):
    request_factory: type[server.Request] = server.Request
    #: Methods the resource itself refuses (the request class may refuse others first).
    refused_methods: tuple[str, ...] = ("POST", "PUT", "DELETE", "PATCH")

    def setUp(self):
        root = resource.Resource()
        root.putChild(b"status", StatusPage())
        root.putChild(b"status.js", StatusScript())
        root.putChild(b"mounted", StatusPage(api_base="/admin/api/", script_url="/admin/s.js"))
        site = server.Site(root)
        site.requestFactory = self.request_factory
        self.port = reactor.listenTCP(0, site, interface=HOST)
        self.addCleanup(self.port.stopListening)

    @defer.inlineCallbacks
    def request(self, method: str, target: str, body: bytes | None = None):
        raw = yield threads.deferToThread(exchange, self.port.getHost().port, build_request(method, target, body=body))
        return parse_response(raw)

    def assertSecurityHeaders(self, response) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.assertEqual(response.headers.get(name), [value], name)

    @defer.inlineCallbacks
    def test_page(self):
        """GET: the HTML page, its length, the policy and the security headers."""
        response = yield self.request("GET", "/status")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-type"), "text/html; charset=utf-8")
        self.assertEqual(int(response.header("content-length")), len(response.body))
        self.assertEqual(response.header("content-security-policy"), CONTENT_SECURITY_POLICY)
        self.assertSecurityHeaders(response)
        self.assertTrue(response.text.startswith("<!DOCTYPE html>"))
        self.assertIn('<meta name="dyndns-api" content="/api/">', response.text)
        self.assertIn('<script src="/status.js" defer></script>', response.text)

    @defer.inlineCallbacks
    def test_script(self):
        """GET status.js: the script as JavaScript, with the same headers."""
        response = yield self.request("GET", "/status.js")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-type"), "text/javascript; charset=utf-8")
        self.assertEqual(response.body, SCRIPT.encode())
        self.assertSecurityHeaders(response)

    @defer.inlineCallbacks
    def test_head(self):
        """HEAD: the GET headers with no body."""
        get = yield self.request("GET", "/status")
        head = yield self.request("HEAD", "/status")
        self.assertEqual(head.status, 200)
        self.assertEqual(head.body, b"")
        self.assertEqual(head.header("content-length"), str(len(get.body)))
        self.assertSecurityHeaders(head)

    @defer.inlineCallbacks
    def test_other_methods(self):
        """Anything but GET and HEAD: 405 with Allow."""
        for target in ("/status", "/status.js"):
            for method in self.refused_methods:
                response = yield self.request(method, target, body=b"{}")
                self.assertEqual(response.status, 405, (method, target))
                self.assertEqual(response.header("allow"), "GET, HEAD")
                self.assertEqual(response.header("cache-control"), "no-store")

    @defer.inlineCallbacks
    def test_policy_allows_exactly_the_inline_style(self):
        """
        The style hash in the policy is the hash of the page's one inline
        style sheet; the policy allows no inline script and no other origin.
        """
        response = yield self.request("GET", "/status")
        styles = re.findall(r"<style>(.*?)</style>", response.text, re.S)
        self.assertEqual(len(styles), 1)
        digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
        policy = dict((d.split(" ", 1) + [""])[:2] for d in response.header("content-security-policy").split("; "))
        self.assertEqual(policy["style-src"], f"'sha256-{digest}'")
        self.assertEqual(policy["default-src"], "'none'")
        self.assertEqual(policy["script-src"], "'self'")
        self.assertEqual(policy["connect-src"], "'self'")
        self.assertEqual(policy["frame-ancestors"], "'none'")
        self.assertNotIn("unsafe", response.header("content-security-policy"))

    @defer.inlineCallbacks
    def test_markup_is_static(self):
        """No inline script, no handler attribute, nothing from elsewhere."""
        response = yield self.request("GET", "/status")
        text = response.text
        self.assertEqual(re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", text), [])
        self.assertEqual(re.findall(r"\son[a-z]+\s*=", text, re.I), [])
        self.assertEqual(re.findall(r"(?:https?:)?//", text.replace("<!DOCTYPE html>", "")), [])
        self.assertNotIn("style=", text)

    def test_script_only_writes_text(self):
        """The script never turns strings into markup or code."""
        for banned in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            'setTimeout("',
            "http:",
            "https:",
        ):
            self.assertNotIn(banned, SCRIPT)
        self.assertIn("textContent", SCRIPT)

    @defer.inlineCallbacks
    def test_mounted_elsewhere(self):
        """api_base and script_url are written into the page, escaped."""
        response = yield self.request("GET", "/mounted")
        self.assertIn('<meta name="dyndns-api" content="/admin/api/">', response.text)
        self.assertIn('<script src="/admin/s.js" defer></script>', response.text)
        page = StatusPage(api_base='/a"b<c/').body.decode()
        self.assertIn('content="/a&quot;b&lt;c/"', page)

    def test_bad_arguments(self):
        """Only same-origin absolute paths; the API base ends with a slash."""
        for kwargs in (
            {"api_base": "api/"},
            {"api_base": "//evil.example/"},
            {"api_base": "https://evil.example/"},
            {"api_base": "/api"},
            {"script_url": "status.js"},
            {"script_url": "//evil.example/x.js"},
            {"poll_interval_ms": 10},
        ):
            self.assertRaises(ValueError, StatusPage, **kwargs)


class StatusInDynDNSRequestTests(StatusResourceTests):
    """The same under our request class, which marks every answer private first."""

    request_factory = DynDNSRequest
    refused_methods = ("POST",)
