"""
Shared helpers for the HTTP tests: a started L{DynDNSService} on the memory
store with a few users, the real site from L{build_site} listening on
127.0.0.1 port 0, and a raw-bytes client that runs in a thread
(C{deferToThread}) so the reactor keeps serving while it waits.

Every response the helper reads is checked against the rules every answer
must follow: a C{Content-Length} that matches the body (never chunked) and
C{Cache-Control: private}.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
from typing import Any, Iterable, Mapping

import attrs
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from dyndns_plugin.auth import PasswordChecker
from dyndns_plugin.config import HTTPSettings
from dyndns_plugin.model import HostState, User
from dyndns_plugin.passwords import hash_password
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.web.site import build_site
from tests.typing_helpers import listen_tcp, port_number

SUFFIX = "dyn.example.com"
HOST = "127.0.0.1"
#: Bound for one raw exchange.
TIMEOUT = 5.0

PASSWORDS = {"alice": "s3cret", "bob": "hunter2", "carol": "carol-pw"}
#: scrypt with N=2**10: the real code path, fast enough for tests.
_HASHES = {user: hash_password(pw, log2_n=10) for user, pw in PASSWORDS.items()}

#: The words an error body must never contain (inadyn matches substrings).
SUCCESS_WORDS = ("good", "nochg", "ok", "true", "updated")


def make_users() -> list[User]:
    """
    alice: offline IP 192.0.2.254, names alice.example.org and a wildcard;
    bob: bob.example.org; carol: disabled.
    """
    return [
        User(
            "alice",
            password_hash=_HASHES["alice"],
            offline_ipv4="192.0.2.254",
            hostnames=["alice.example.org", "*.alice.example.net"],
        ),
        User("bob", password_hash=_HASHES["bob"], hostnames=["bob.example.org"]),
        User("carol", password_hash=_HASHES["carol"], disabled=True),
    ]


def basic(user: str, password: str) -> str:
    """An C{Authorization} header value for HTTP Basic."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


@attrs.frozen
class Response:
    """A parsed raw HTTP response. Header names are lower-case."""

    status: int
    reason: str
    headers: dict[str, list[str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return None if not values else values[-1]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def parse_response(raw: bytes) -> Response:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"no complete response head in {raw!r}")
    lines = head.decode("iso-8859-1").split("\r\n")
    version, code, reason = (lines[0].split(" ", 2) + [""])[:3]
    if not version.startswith("HTTP/1."):
        raise AssertionError(f"bad status line {lines[0]!r}")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise AssertionError(f"bad header line {line!r}")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return Response(int(code), reason, headers, body, raw)


def exchange(port: int, data: bytes, timeout: float = TIMEOUT) -> bytes:
    """
    Send C{data} on a new connection and read until the server closes it
    (every request we build says C{Connection: close}). A reset after some
    bytes arrived returns what arrived.
    """
    chunks: list[bytes] = []
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(data)
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                if chunks:
                    break
                raise
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def build_request(
    method: str,
    target: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    version: str = "HTTP/1.1",
) -> bytes:
    """A request with C{Host} and C{Connection: close} first."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    lines = [f"{method} {target} {version}", f"Host: {HOST}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in pairs]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + (body or b"")


class WebTestCase(unittest.TestCase):
    """
    A started service on a memory store, users from L{make_users}, and the
    site on a real TCP port. Subclasses change the HTTP settings through
    C{settings}, a dict of L{HTTPSettings} fields.
    """

    settings: dict[str, Any] = {}
    #: TTL bounds of the service.
    default_ttl = 30
    min_ttl = 10
    max_ttl = 3600

    @defer.inlineCallbacks
    def setUp(self):
        self.store = MemoryUserStore()
        self.service = DynDNSService(
            self.store,
            SUFFIX,
            default_ttl=self.default_ttl,
            min_ttl=self.min_ttl,
            max_ttl=self.max_ttl,
            poll_interval=None,
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)
        yield self.service.ready
        for user in make_users():
            yield self.service.add_user(user)
        self.checker = self.make_checker()
        self.addCleanup(stop_pool, self.checker)
        self.start_site(HTTPSettings(**{"base_path": "/dyndns/", **self.settings}))

    def make_checker(self) -> PasswordChecker:
        return PasswordChecker(self.service.registry.users, reactor)

    def start_site(self, settings: HTTPSettings) -> None:
        self.site = build_site(self.service, settings, self.checker)
        self.port = listen_tcp(self.site, HOST)
        self.addCleanup(self.port.stopListening)
        self.port_number = port_number(self.port)

    # -- the raw client

    @defer.inlineCallbacks
    def send(self, data: bytes, check: bool = True, method: str = "GET"):
        """Send raw bytes; the parsed L{Response}, checked unless told not to."""
        raw = yield threads.deferToThread(exchange, self.port_number, data)
        response = parse_response(raw)
        if check:
            self.assertResponseRules(response, head=method == "HEAD")
        return response

    def request(
        self,
        target: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        method: str = "GET",
        body: bytes | None = None,
        auth: tuple[str, str] | None = None,
        check: bool = True,
    ) -> defer.Deferred[Response]:
        """One request; C{auth} adds a Basic C{Authorization} header."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        if auth is not None:
            pairs.append(("Authorization", basic(*auth)))
        return self.send(build_request(method, target, pairs, body), check, method)

    def assertResponseRules(self, response: Response, head: bool = False) -> None:
        """Content-Length present and (except for HEAD) exact; Cache-Control: private."""
        self.assertEqual(
            len(response.headers.get("content-length", [])),
            1,
            f"one Content-Length expected: {response.raw!r}",
        )
        self.assertNotIn("transfer-encoding", response.headers)
        self.assertEqual(response.headers.get("cache-control"), ["private"], response.raw)
        if not head:
            length = response.header("content-length")
            assert length is not None
            self.assertEqual(int(length), len(response.body))

    # -- the registry

    def served(self, name: str) -> tuple[str, ...] | None:
        """The addresses DNS serves for C{name} now (None: no answer)."""
        answer = self.service.registry.answer(name)
        return None if answer is None else tuple(str(a) for a in answer.addresses)

    def state(self, user_id: str) -> HostState | None:
        return self.service.registry.states.get(user_id)

    @defer.inlineCallbacks
    def set_state(self, user_id: str, *addresses: str):
        """Put C{user_id} online at C{addresses} through the service."""
        result = yield self.service.update(user_id, [ipaddress.ip_address(a) for a in addresses], None, "test")
        self.assertTrue(result.ok, result)
        return result

    def stored_generation(self) -> int:
        return self.successResultOf(self.store.load()).generation


def stop_pool(checker: PasswordChecker) -> None:
    """Stop the checker's hashing threads (the reactor never shuts down in tests)."""
    pool = getattr(checker, "_pool", None)
    if pool is not None:
        pool.stop()
