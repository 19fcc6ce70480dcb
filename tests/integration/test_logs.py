"""
JSON logs and the audit trail of a real C{twistd dyndns}: with C{[log]
format = "json"} every line twistd writes (stdout with C{-n}, or the
C{--logfile}) is one JSON object; every update method, good and bad, and
every admin write leaves an audit event with its fields as top-level keys;
and no password, TSIG secret, admin token or GnuDIP hash (nor its base64,
hex or URL-encoded form) appears in any log file or in the access log.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import subprocess
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

from tests.integration.clients import (
    SUFFIX,
    HTTPResponse,
    TSIGKey,
    dig,
    gdipc_meta,
    gdipc_request,
    gnudip_login,
    gnudip_tcp,
    http_exchange,
    nsupdate,
    replace_address,
)
from tests.integration.harness import (
    BASE_PATH,
    STOP_TIMEOUT,
    ServerTestCase,
    free_ports,
    stop_process,
    twistd_command,
    wait_for,
    write_config,
)
from tests.tools import require_tool

ALICE_PW = "Alice-Secret-7f3a9c"
WRONG_PW = "Wrong-Secret-0b0b17"
TSIG_SECRET = base64.b64encode(b"TSIG-Secret-for-alice-5e5e5e5e").decode()
WRONG_TSIG = base64.b64encode(b"Wrong-TSIG-secret-of-alice-999").decode()
ADMIN, ADMIN_PW = "root", "Admin-Secret-91c2d4"
BOB_PW = "Bob-Secret-55aa66"


def secret_forms(secret: str) -> set[str]:
    """C{secret} as a log could show it: raw, URL-encoded, base64, hex and MD5 hex."""
    raw = secret.encode()
    return {
        secret,
        quote(secret),
        quote_plus(secret),
        base64.b64encode(raw).decode(),
        raw.hex(),
        hashlib.md5(raw).hexdigest(),
    }


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def admin_request(port: int, method: str, path: str, body: object, user: str, password: str) -> HTTPResponse:
    data = json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic(user, password)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return http_exchange(port, head.encode() + data)


def json_lines(path: str) -> list[dict[str, Any]]:
    """Every line of C{path} as JSON (json.loads fails the test on any other line)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f.read().splitlines()]


class JSONAuditTests(ServerTestCase):
    """One server per test: DNS, HTTP (with an access log), GnuDIP TCP and admin."""

    tools = (("dig", "bind9-dnsutils"), ("nsupdate", "bind9-dnsutils"))

    def get(self, path: str, user: str | None = None, password: str | None = None) -> HTTPResponse:
        lines = [f"GET {path} HTTP/1.0", "Host: 127.0.0.1", "User-Agent: dyndns-tests"]
        if user is not None and password is not None:
            lines.append(f"Authorization: Basic {basic(user, password)}")
        return http_exchange(self.server.http_port, ("\r\n".join(lines) + "\r\n\r\n").encode())

    def gnudip_http(self, password: str, addr: str) -> dict[str, str]:
        port = self.server.http_port
        path = BASE_PATH + "gnudip"
        salt = gdipc_meta(http_exchange(port, gdipc_request(path, port)))
        params = gnudip_login(salt, "alice", password, "0", addr)
        return gdipc_meta(http_exchange(port, gdipc_request(f"{path}?{urlencode(params)}", port)))

    def test_every_method_audited_in_json_without_secrets(self) -> None:
        """
        Good and bad updates by every method and admin writes: every line of
        stdout is JSON, each attempt has its audit event, and no secret (in
        any form) is in twistd's output or the access log.
        """
        server = self.make_server(
            listeners=("http", "gnudip", "admin"),
            log={"format": "json"},
            http={"access_log": "access.log"},
        )
        made = server.cli("make-token")
        token = made.split("token:", 1)[1].split()[0]
        digest = "sha256:" + hashlib.sha256(token.encode()).hexdigest()
        server.configure(admin={"tokens": [digest]})
        server.add_admin(ADMIN, ADMIN_PW)
        alice = server.add_user("alice", ALICE_PW, gnudip=True, tsig=("hmac-sha256", TSIG_SECRET))
        server.start()
        ddns = BASE_PATH + "ddns"

        def result(response: HTTPResponse) -> str | None:
            return response.header("x-dyndns-result")

        self.assertEqual(result(self.get(f"{ddns}?user=alice&pw={quote(ALICE_PW)}&ip=192.0.2.10")), "OK")
        self.assertEqual(result(self.get(f"{ddns}?user=alice&pw={quote(WRONG_PW)}&ip=192.0.2.66")), "FAIL")
        self.assertEqual(result(self.get(f"{ddns}?ip=192.0.2.11", "alice", ALICE_PW)), "OK")
        self.assertEqual(self.get(f"{ddns}?ip=192.0.2.66", "alice", WRONG_PW).status, 401)
        self.assertEqual(self.get("/nic/update?myip=192.0.2.12", "alice", ALICE_PW).text.strip(), "good 192.0.2.12")
        self.assertEqual(self.get("/nic/update?myip=192.0.2.12", "alice", ALICE_PW).text.strip(), "nochg 192.0.2.12")
        self.assertEqual(self.get("/nic/update?myip=192.0.2.66", "alice", WRONG_PW).text.strip(), "badauth")
        self.assertEqual(gnudip_tcp(server.gnudip_port, "alice", ALICE_PW, "0", "192.0.2.13")[1], b"0\n")
        self.assertEqual(gnudip_tcp(server.gnudip_port, "alice", WRONG_PW, "0", "192.0.2.66")[1], b"1\n")
        self.assertEqual(self.gnudip_http(ALICE_PW, "192.0.2.14"), {"retc": "0"})
        self.assertEqual(self.gnudip_http(WRONG_PW, "192.0.2.66"), {"retc": "1"})
        assert alice.tsig is not None
        rc, output = nsupdate(server.port, alice.tsig, replace_address(alice.name, "A", "192.0.2.15"))
        self.assertEqual(rc, 0, output)
        wrong_key = TSIGKey(alice.tsig.algorithm, alice.tsig.name, WRONG_TSIG)
        rc, output = nsupdate(server.port, wrong_key, replace_address(alice.name, "A", "192.0.2.66"))
        self.assertNotEqual(rc, 0, output)
        admin = server.admin_port
        response = admin_request(admin, "PUT", "/api/users/bob", {"password": BOB_PW}, ADMIN, ADMIN_PW)
        self.assertEqual(response.status, 201, response.raw)
        response = admin_request(admin, "PATCH", "/api/users/bob", {"password": BOB_PW + "2"}, ADMIN, ADMIN_PW)
        self.assertEqual(response.status, 200, response.raw)
        response = admin_request(admin, "POST", "/api/users/alice/offline", {}, ADMIN, ADMIN_PW)
        self.assertEqual(response.status, 200, response.raw)
        response = admin_request(admin, "DELETE", "/api/users/bob", None, ADMIN, WRONG_PW)
        self.assertEqual(response.status, 401, response.raw)
        bearer = f"DELETE /api/users/bob HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        self.assertEqual(http_exchange(admin, bearer.encode()).status, 204)
        server.cli("user", "update", "alice", "192.0.2.16")
        self.assertEqual(dig(server.port, f"alice.{SUFFIX}").status, "NOERROR")
        # The CLI's change is audited when the server's poll picks it up.
        found, _ = wait_for(lambda: '"method":"cli"' in server.read_log(), 5.0)
        self.assertTrue(found, server.read_log())
        server.stop()

        events = json_lines(server.log_path)  # every line of stdout parses
        self.assertGreater(len(events), 20)
        for event in events:
            self.assertIn("time", event)
            self.assertIn("message", event)
        audit = [e for e in events if e.get("audit") == "update"]
        seen = {(e["method"], e["result"]) for e in audit}
        for method in ("http-url", "http-basic", "dyndns2", "gnudip-tcp", "gnudip-http", "dns-update"):
            self.assertIn((method, "good"), seen, method)
            self.assertIn((method, "badauth"), seen, method)
        self.assertIn(("dyndns2", "nochg"), seen)
        self.assertIn(("cli", "good"), seen)
        self.assertIn(("admin", "good"), seen)  # the admin's offline
        nic = next(e for e in audit if e["method"] == "dyndns2" and e["result"] == "good")
        self.assertEqual(
            (nic["user"], nic["source"], nic["old_ipv4"], nic["new_ipv4"], nic["new_state"]),
            ("alice", "127.0.0.1", "192.0.2.11", "192.0.2.12", "online"),
        )
        admin_events = [e for e in events if e.get("audit") == "admin"]
        actions = {(e["action"], e["actor"], e["result"]) for e in admin_events}
        for expected in (
            ("user-add", ADMIN, "ok"),
            ("user-change", ADMIN, "ok"),
            ("user-offline", ADMIN, "ok"),
            ("user-remove", "token", "ok"),
            ("login", ADMIN, "badauth"),
        ):
            self.assertIn(expected, actions)

        logs = glob.glob(os.path.join(server.directory, "*.log*"))
        self.assertIn(os.path.join(server.directory, "access.log"), logs)
        with open(os.path.join(server.directory, "access.log")) as f:
            self.assertIn("pw=***", f.read())
        secrets = [ALICE_PW, WRONG_PW, ADMIN_PW, BOB_PW, BOB_PW + "2", token, TSIG_SECRET, WRONG_TSIG]
        forms = set().union(*(secret_forms(s) for s in secrets))
        forms |= {basic("alice", p) for p in (ALICE_PW, WRONG_PW)} | {basic(ADMIN, p) for p in (ADMIN_PW, WRONG_PW)}
        forms |= {base64.b64decode(s).hex() for s in (TSIG_SECRET, WRONG_TSIG)}
        forms |= {hashlib.md5(p.encode()).hexdigest() for p in (ALICE_PW, WRONG_PW)}
        for path in logs:
            with open(path, errors="replace") as f:
                text = f.read()
            for form in forms:
                self.assertNotIn(form, text, f"{form!r} in {path}")


class LogfileOptionTests(ServerTestCase):
    """C{twistd --logfile FILE dyndns} with C{[log] format = "json"}: the file gets the JSON lines."""

    def test_logfile_gets_json(self) -> None:
        require_tool("dig", "bind9-dnsutils")
        directory = os.path.abspath(self.mktemp())
        (port,) = free_ports(1)
        config = write_config(directory, port, log={"format": "json"})
        logfile = os.path.join(directory, "server.log")
        with open(os.path.join(directory, "stdout"), "wb") as out:
            process = subprocess.Popen(
                [*twistd_command(), "-n", "--pidfile=", f"--logfile={logfile}", "dyndns", "--config", config],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=directory,
            )
        self.addCleanup(stop_process, process)
        answered, _ = wait_for(lambda: dig(port, f"probe.{SUFFIX}").status == "NXDOMAIN", STOP_TIMEOUT * 2)
        self.assertTrue(answered, process.poll())
        stop_process(process)
        events = json_lines(logfile)
        self.assertTrue(any("loaded 0 users" in e["message"] for e in events), events)
        with open(os.path.join(directory, "stdout")) as f:
            self.assertEqual(f.read(), "")
