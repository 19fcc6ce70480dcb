"""
The admin listener in a real C{twistd -n dyndns}: an C{[admin]} section with
an admin whose hash comes from C{dyndns hash-password} and a bearer token
from C{dyndns make-token}; users made and taken offline through the JSON API
with curl, updated through the update listener (C{/nic/update} with Basic
authentication, C{<base>ddns?user=&pw=}), and every change checked with dig.

Also: the two listeners serve their own things only, and an admin listener
without credentials keeps twistd from starting, with a message that says so.
Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from urllib.parse import urlencode

from tests.integration.clients import (
    SUFFIX,
    HTTPResponse,
    get_request,
    http_exchange,
    run_curl,
)
from tests.integration.harness import BASE_PATH as BASE
from tests.integration.harness import (
    CHANGE_LIMIT,
    Server,
    ServerTestCase,
    SharedServerTestCase,
)

ADMIN, ADMIN_PW = "root", "admin pw 7"
REALM = 'Basic realm="DynDNS admin"'


def admin_settings(users: dict[str, str], tokens: list[str]) -> dict[str, object]:
    """The C{[admin]} credentials: C{users} (name -> hash) and C{tokens} (digests), if any."""
    settings: dict[str, object] = {}
    if tokens:
        settings["tokens"] = tokens
    if users:
        settings["users"] = users
    return settings


class AdminListenerTests(SharedServerTestCase):
    """
    One server for the class: DNS, an update listener (HTTP, base path
    /dyndns/) and the admin listener, each on its own 127.0.0.1 port. Each
    test works on users of its own.
    """

    tools = (("dig", "bind9-dnsutils"), ("curl", "curl"))
    server_options = {"listeners": ("http", "admin")}
    token: str

    @classmethod
    def prepare(cls, server: Server) -> None:
        digest = server.cli("hash-password", "--password", ADMIN_PW).strip()
        made = server.cli("make-token")
        cls.token = re.search(r"^token:\s+(\S+)$", made, re.M).group(1)
        line = re.search(r"^config:\s+tokens = \[\"(sha256:[0-9a-f]{64})\"\]$", made, re.M)
        # The line make-token prints is the digest of the token it prints.
        assert line.group(1) == "sha256:" + hashlib.sha256(cls.token.encode()).hexdigest()
        server.configure(admin=admin_settings({ADMIN: digest}, [line.group(1)]))

    # -- helpers

    def admin(self, method: str, path: str, body: object = None, *extra: str) -> HTTPResponse:
        """curl to the admin listener as the admin (Basic), a JSON body if given."""
        args = ["-X", method, "-u", f"{ADMIN}:{ADMIN_PW}", *extra]
        if body is not None:
            # From a file: a body may hold URLs, and run_curl takes one URL only.
            path_of_body = os.path.join(self.server.directory, "body.json")
            with open(path_of_body, "w") as f:
                json.dump(body, f)
            args += ["-H", "Content-Type: application/json", "--data-binary", f"@{path_of_body}"]
        rc, response, err = run_curl(*args, f"http://127.0.0.1:{self.server.admin_port}{path}")
        self.assertEqual(rc, 0, err)
        assert response is not None
        return response

    def json(self, response: HTTPResponse) -> object:
        self.assertEqual(response.header("content-type"), "application/json; charset=utf-8")
        return json.loads(response.body)

    def state_of(self, user_id: str) -> dict:
        response = self.admin("GET", "/api/state")
        self.assertEqual(response.status, 200, response.raw)
        entries = [u for u in self.json(response)["users"] if u["id"] == user_id]
        self.assertEqual(len(entries), 1, entries)
        return entries[0]

    def assertServed(self, name: str, rtype: str, expected: list[str]) -> None:
        """dig until C{name} serves exactly C{expected} (bounded by CHANGE_LIMIT)."""
        self.assertServes(name, rtype, expected, within=CHANGE_LIMIT)

    # -- tests

    def test_add_update_offline(self) -> None:
        """
        PUT /api/users/zoe creates zoe (201) with a password and an offline
        IP; before any update her name has no address. zoe updates through
        /nic/update with Basic authentication: /api/state shows her online
        at that address from 127.0.0.1 and dig serves it, for her additional
        name too. POST .../offline: the state says offline and dig serves
        the offline IP.
        """
        main = f"zoe.{SUFFIX}"
        response = self.admin("PUT", "/api/users/zoe", {
            "password": "zoe pw", "hostnames": ["www.zoe.dyn.example.com"],
            "offline_ipv4": "192.0.2.99",
        })
        self.assertEqual(response.status, 201, response.raw)
        created = self.json(response)
        self.assertEqual(created["hostnames"], ["www.zoe.dyn.example.com"])
        self.assertNotIn("zoe pw", response.text)
        self.assertEqual(self.state_of("zoe")["state"], "never")
        self.assertServed(main, "A", [])

        update = http_exchange(self.server.http_port, get_request(
            f"/nic/update?hostname={main}&myip=198.51.100.77", "zoe", "zoe pw"
        ))
        self.assertEqual((update.status, update.body), (200, b"good 198.51.100.77\n"), update.raw)
        state = self.state_of("zoe")
        self.assertEqual(
            {k: state[k] for k in ("state", "ipv4", "ipv6", "ttl", "client_address", "names")},
            {"state": "online", "ipv4": "198.51.100.77", "ipv6": None, "ttl": 30,
             "client_address": "127.0.0.1", "names": [main, "www.zoe.dyn.example.com"]},
        )
        self.assertIsNotNone(state["method"])
        self.assertRegex(state["last_update"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        self.assertServed(main, "A", ["198.51.100.77"])
        self.assertServed("www.zoe.dyn.example.com", "A", ["198.51.100.77"])

        response = self.admin("POST", "/api/users/zoe/offline", {})
        self.assertEqual(response.status, 200, response.raw)
        entry = self.json(response)
        self.assertEqual((entry["state"], entry["ipv4"], entry["method"]),
                         ("offline", "192.0.2.99", "admin"))
        self.assertEqual(self.state_of("zoe")["state"], "offline")
        self.assertServed(main, "A", ["192.0.2.99"])

    def test_url_auth_update_then_offline_without_address(self) -> None:
        """
        yann (no offline IP, made through the API) updates through
        <base>ddns?user=&pw=&ip=; offline through the API: dig answers
        NOERROR without an address.
        """
        main = f"yann.{SUFFIX}"
        response = self.admin("PUT", "/api/users/yann", {"password": "yann:pw"})
        self.assertEqual(response.status, 201, response.raw)
        query = urlencode({"user": "yann", "pw": "yann:pw", "ip": "198.51.100.78,2001:db8::78"})
        update = http_exchange(self.server.http_port, get_request(f"{BASE}ddns?{query}"))
        self.assertEqual(update.status, 200, update.raw)
        self.assertEqual(update.header("x-dyndns-result"), "OK", update.raw)
        state = self.state_of("yann")
        self.assertEqual((state["state"], state["ipv4"], state["ipv6"]),
                         ("online", "198.51.100.78", "2001:db8::78"))
        self.assertServed(main, "A", ["198.51.100.78"])
        self.assertServed(main, "AAAA", ["2001:db8::78"])

        response = self.admin("POST", "/api/users/yann/offline", {})
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(self.json(response)["ipv4"], None)
        self.assertServed(main, "A", [])
        self.assertServed(main, "AAAA", [])
        # Removing yann: the name is gone (NXDOMAIN under the suffix).
        response = self.admin("DELETE", "/api/users/yann")
        self.assertEqual((response.status, response.body), (204, b""))
        result, _ = self.wait_served(main, "A", lambda r: r.status == "NXDOMAIN")
        self.assertEqual(result.status, "NXDOMAIN", result.output)

    def test_bearer_token_and_config(self) -> None:
        """
        The token from make-token works as a bearer token; the configuration
        comes with an ETag, and a PUT without If-Match is refused (428).
        """
        url = f"http://127.0.0.1:{self.server.admin_port}/api/config"
        rc, response, err = run_curl("-H", f"Authorization: Bearer {self.token}", url)
        self.assertEqual(rc, 0, err)
        self.assertEqual(response.status, 200, response.raw)
        self.assertRegex(response.header("etag") or "", r'^"[^"]+"$')
        body = self.json(response)
        self.assertEqual(body["settings"]["suffix"], SUFFIX)
        self.assertNotIn(self.token, response.text)
        refused = self.admin("PUT", "/api/config", body)
        self.assertEqual(refused.status, 428, refused.raw)
        self.assertEqual(self.json(refused)["field"], "If-Match")
        rc, response, err = run_curl("-H", f"Authorization: Bearer {self.token}x", url)
        self.assertEqual(response.status, 401, response.raw)

    def test_listeners_are_separate(self) -> None:
        """
        The update listener does not serve the admin API (404, even with the
        admin's credentials); the admin listener wants its own credentials
        first and does not serve the update methods.
        """
        for path in ("/api/state", "/api/config", "/pluginstate"):
            response = http_exchange(self.server.http_port, get_request(path, ADMIN, ADMIN_PW))
            self.assertEqual(response.status, 404, response.raw)
            self.assertNotIn(b'"users"', response.body)
        response = http_exchange(self.server.admin_port, get_request("/api/state"))
        self.assertEqual(response.status, 401, response.raw)
        self.assertEqual(response.header("www-authenticate"), REALM)
        self.assertEqual(json.loads(response.body)["error"], "authentication required")
        for path in ("/nic/update?hostname=x&myip=192.0.2.1", f"{BASE}ddns", f"{BASE}myip"):
            response = http_exchange(self.server.admin_port, get_request(path, ADMIN, ADMIN_PW))
            self.assertEqual(response.status, 404, response.raw)
        # A DynDNS user's credentials open nothing on the admin listener.
        response = self.admin("PUT", "/api/users/xena", {"password": "xena pw"})
        self.assertEqual(response.status, 201, response.raw)
        response = http_exchange(self.server.admin_port, get_request("/api/state", "xena", "xena pw"))
        self.assertEqual(response.status, 401, response.raw)


class AdminConfigurationTests(ServerTestCase):
    """An admin listener without credentials, or with a bad one, stops twistd."""

    tools = ()

    def assertRefused(self, admin: dict[str, object], *expected: str) -> str:
        server = self.make_server(listeners=("admin",), admin=admin)
        return self.assertTwistdRefuses(server.config, *expected)

    def test_listener_without_credentials(self) -> None:
        self.assertRefused(
            admin_settings({}, []),
            "admin.listen", "needs admin.users or admin.tokens",
        )

    def test_plain_password_instead_of_hash(self) -> None:
        self.assertRefused(
            admin_settings({ADMIN: ADMIN_PW}, []),
            f"admin.users.{ADMIN}", "hash-password",
        )

    def test_token_instead_of_digest(self) -> None:
        self.assertRefused(
            admin_settings({}, ["not-a-digest"]),
            "admin.tokens", "make-token",
        )
