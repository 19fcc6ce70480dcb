"""
GnuDIP: the shared logic and the direct TCP protocol.

 - byte-exact replays of every TCP transcript of a real client
   (tests/fixtures/gnudip/*.transcript: gdipc.pl, ez-ipupdate, FreedomBox)
   against the real listener on 127.0.0.1, the salt made injectable;
 - L{GnuDIPProtocol} on a C{StringTransport} with a C{task.Clock}: the salt
   line, line endings, the idle timeout and line limit (both abort), every
   request code and every way a login fails, the per-source cap.

The fixture helpers here (L{load_transcript}, L{load_meta},
L{transcript_names}, L{client_hash}) are shared with test_web_gnudip.py and
the integration tests.
"""

from __future__ import annotations

import ast
import hashlib
import ipaddress
import json
import os
import socket
import time
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, reactor, task, threads
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest

from dyndns_plugin.auth import DisabledUser, PasswordChecker
from dyndns_plugin.protocols.gnudip import (
    SALT_ALPHABET,
    GnuDIPFactory,
    GnuDIPRequest,
    make_salt,
    parse_line,
)
from dyndns_plugin.model import User
from dyndns_plugin.passwords import gnudip_hash, hash_password, md5_verifier
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.memory import MemoryUserStore

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "gnudip")
SALT = "XLCDgXvzSo"
SUFFIX = "dyn.example.com"
MAIN = f"alice.{SUFFIX}"
PASSWORDS = {"alice": "s3cret", "bob": "hunter2", "carol": "carol-pw", "dave": "dave-pw"}
#: alice's offline address (dave has none).
OFFLINE_IP = "192.0.2.1"
#: Where alice is parked before an exchange, so every change is visible.
PARKED = "203.0.113.1"
#: Bound for one exchange with the real listener.
TIMEOUT = 5.0

_HASHES = {user: hash_password(pw, log2_n=10) for user, pw in PASSWORDS.items()}


# -- fixtures


def load_transcript(name: str) -> list[tuple[str, bytes]]:
    """The steps of C{name}.transcript: (C{"C"} or C{"S"}, the exact bytes)."""
    steps = []
    with open(os.path.join(FIXTURES, name + ".transcript"), encoding="ascii") as f:
        for line in f.read().splitlines():
            direction, sep, literal = line.partition("> ")
            value = ast.literal_eval(literal)
            if not sep or direction not in ("C", "S") or not isinstance(value, bytes):
                raise AssertionError(f"{name}: bad transcript line {line!r}")
            steps.append((direction, value))
    return steps


def load_meta(name: str) -> dict[str, Any]:
    """What the capture server recorded for C{name} (its .json)."""
    with open(os.path.join(FIXTURES, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


def transcript_names(mode: str) -> list[str]:
    """Every transcript whose .json says C{mode} (C{"tcp"} or C{"http"})."""
    names = sorted(n[: -len(".transcript")] for n in os.listdir(FIXTURES) if n.endswith(".transcript"))
    return [n for n in names if load_meta(n)["mode"] == mode]


def md5hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def client_hash(password: str, salt: str) -> str:
    """What a GnuDIP client sends, computed here independently of the code under test."""
    return md5hex(md5hex(password) + "." + salt)


def make_users() -> list[User]:
    """
    alice: GnuDIP, offline IP 192.0.2.1; bob: no MD5 verifier; carol:
    GnuDIP but disabled; dave: GnuDIP, no offline IP.
    """
    def user(name: str, **kwargs: Any) -> User:
        return User(name, password_hash=_HASHES[name], **kwargs)

    return [
        user("alice", md5_verifier=md5_verifier(PASSWORDS["alice"]), offline_ipv4=OFFLINE_IP),
        user("bob"),
        user("carol", md5_verifier=md5_verifier(PASSWORDS["carol"]), disabled=True),
        user("dave", md5_verifier=md5_verifier(PASSWORDS["dave"])),
    ]


def start_service(testcase: unittest.SynchronousTestCase) -> DynDNSService:
    """A started service on a memory store with L{make_users}; stopped in cleanup."""
    service = DynDNSService(MemoryUserStore(), SUFFIX, default_ttl=30, poll_interval=None)
    service.startService()
    testcase.addCleanup(service.stopService)
    testcase.successResultOf(service.ready)
    for user in make_users():
        testcase.successResultOf(service.add_user(user))
    return service


class GnuDIPTestMixin:
    """The registry views both test classes use."""

    service: DynDNSService

    def served(self, name: str = MAIN) -> tuple[str, ...] | None:
        answer = self.service.registry.answer(name)
        return None if answer is None else tuple(str(a) for a in answer.addresses)

    def park(self, user_id: str = "alice", *addresses: str) -> None:
        result = self.successResultOf(  # type: ignore[attr-defined]
            self.service.update(
                user_id, [ipaddress.ip_address(a) for a in addresses or (PARKED,)], None, "test"
            )
        )
        self.assertTrue(result.ok, result)  # type: ignore[attr-defined]


# -- the shared logic


class SharedLogicTests(unittest.SynchronousTestCase):
    def test_salt_shape(self) -> None:
        """Ten characters of [A-Za-z0-9], different each time."""
        salts = {make_salt() for _ in range(200)}
        self.assertEqual(len(salts), 200)
        for salt in salts:
            self.assertRegex(salt, r"\A[A-Za-z0-9]{10}\Z")
        # 2,000 characters: every one of the 62 shows up (else: p < 1e-12)
        self.assertEqual(set("".join(salts)), set(SALT_ALPHABET))
        self.assertEqual(len(SALT_ALPHABET), 62)

    def test_hash_vectors(self) -> None:
        """The spec's vector (password C{secret}) and the fixtures' (C{s3cret})."""
        self.assertEqual(md5_verifier("secret"), "5ebe2294ecd0e0f08eab7690d2a6ee69")
        self.assertEqual(
            gnudip_hash(md5_verifier("secret"), SALT), "5967f3487d31d882260d94cc1e482f5e"
        )
        self.assertEqual(
            gnudip_hash(md5_verifier("s3cret"), SALT), "0536369fe04342fc3d73a3440af4cce1"
        )

    def test_fixtures_consistent(self) -> None:
        """Every TCP fixture's hash is s3cret's for its salt; its C> line is its raw line."""
        names = transcript_names("tcp")
        self.assertEqual(len(names), 8)
        for name in names:
            meta = load_meta(name)
            self.assertEqual(meta["salt"], SALT)
            self.assertEqual(meta["expected_hash"], client_hash("s3cret", SALT))
            client = [data for direction, data in load_transcript(name) if direction == "C"]
            self.assertEqual(client, [meta["raw_client_line"].encode("ascii") + b"\n"])

    def test_check_gnudip(self) -> None:
        """
        The checker itself: the right hash gives the user id; a wrong one, a
        user without verifier, a disabled user (even with the right hash)
        or a non-ASCII hash fail as unauthorized.
        """
        users = {u.id: u for u in make_users()}
        checker = PasswordChecker(users, reactor)
        good = client_hash("s3cret", SALT)
        self.assertEqual(self.successResultOf(checker.check_gnudip("alice", SALT, good)), "alice")
        self.assertEqual(
            self.successResultOf(checker.check_gnudip("alice", SALT, good.upper())), "alice"
        )
        failures = [
            ("alice", SALT, client_hash("wrong", SALT)),
            ("alice", "AAAAAAAAAA", good),
            ("bob", SALT, client_hash(PASSWORDS["bob"], SALT)),
            ("mallory", SALT, good),
            ("alice", SALT, good[:-1] + "\u00e9"),
        ]
        for user_id, salt, hash_ in failures:
            self.failureResultOf(checker.check_gnudip(user_id, salt, hash_), UnauthorizedLogin)
        carol = checker.check_gnudip("carol", SALT, client_hash(PASSWORDS["carol"], SALT))
        self.failureResultOf(carol, DisabledUser)

    def test_parse_line(self) -> None:
        """Fields in order; an IPv6 address keeps its colons; code 0 without address."""
        self.assertEqual(
            parse_line("alice:h:dyn.example.com:0:192.0.2.7"),
            GnuDIPRequest("alice", "h", "dyn.example.com", 0, "192.0.2.7"),
        )
        self.assertEqual(
            parse_line("alice:h:dyn.example.com:0:2001:db8::5").address, "2001:db8::5"
        )
        self.assertIsNone(parse_line("alice:h:dyn.example.com:0").address)
        self.assertIsNone(parse_line("alice:h:dyn.example.com:2:").address)
        self.assertEqual(parse_line("alice:h:dyn.example.com:1\r\n").code, 1)

    def test_parse_line_refuses(self) -> None:
        """Too few fields, an unknown or empty code: ValueError."""
        for line in ("", "hello", "a:b:c", "a:b:c:3", "a:b:c:", "a:b:c:01", "a:b:c:-1"):
            with self.assertRaises(ValueError, msg=line):
                parse_line(line)


# -- the real listener, real clients' bytes


def tcp_exchange(port: int, line: bytes | None) -> tuple[bytes, bytes]:
    """
    Connect to 127.0.0.1:C{port}, read up to the first LF (the salt line),
    send C{line} (if any) and read until the server closes. Returns (the
    salt line, everything after it). A reset instead of a close raises.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        data = b""
        while b"\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                return data, b""
            data += chunk
        first, _, rest = data.partition(b"\n")
        if line is not None:
            s.sendall(line)
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return first + b"\n", rest
            rest += chunk


class TranscriptReplayTests(GnuDIPTestMixin, unittest.TestCase):
    """
    The real L{GnuDIPFactory} on 127.0.0.1 port 0 with the transcripts'
    salt; a raw socket (in a thread) sends the client's bytes and must get
    exactly the server's.
    """

    #: Every TCP transcript must be replayed by a test below.
    REPLAYED = {
        "gdipc-tcp-reqc0-addr",
        "gdipc-tcp-reqc0-sockaddr",
        "gdipc-tcp-reqc1-offline",
        "gdipc-tcp-reqc2-auto",
        "gdipc-tcp-badpass",
        "ezipupdate-tcp-reqc0-noaddr",
        "ezipupdate-tcp-reqc1-offline",
        "freedombox-tcp-reqc2",
    }

    def setUp(self) -> None:
        self.service = start_service(self)
        self.checker = PasswordChecker(self.service.registry.users, reactor)
        self.factory = GnuDIPFactory(
            self.service, self.checker, timeout=TIMEOUT, max_per_source=2,
            salt_source=lambda: SALT,
        )
        self.port: Any = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.port_number = self.port.getHost().port  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def wait_released(self):
        """Until the server has seen every connection end (bounded)."""
        for _ in range(int(TIMEOUT / 0.01)):
            if not self.factory._per_source:
                return
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.fail(f"connections not released: {self.factory._per_source}")

    @defer.inlineCallbacks
    def replay(self, name: str):
        steps = load_transcript(name)
        meta = load_meta(name)
        self.assertEqual([d for d, _ in steps], ["S", "C", "S"], name)
        self.park()
        before = self.service.registry.states["alice"]
        salt_line, reply = yield threads.deferToThread(tcp_exchange, self.port_number, steps[1][1])
        self.assertEqual(salt_line, steps[0][1])
        self.assertEqual(reply, steps[2][1])
        yield self.wait_released()
        state = self.service.registry.states["alice"]
        if meta["reply"] == "1":
            self.assertEqual(state, before)
            self.assertEqual(self.served(), (PARKED,))
        elif meta["reply"] == "2":
            self.assertTrue(state.offline)
            self.assertEqual(self.served(), (OFFLINE_IP,))
            self.assertEqual(state.method, "gnudip-tcp")
        else:
            self.assertFalse(state.offline)
            self.assertEqual(self.served(), (meta["registered_address"],))
            self.assertEqual(state.method, "gnudip-tcp")
            self.assertEqual(state.client_address, "127.0.0.1")
        return state

    def test_every_transcript_replayed(self) -> None:
        """No TCP fixture is left out of the replays below."""
        self.assertEqual(set(transcript_names("tcp")), self.REPLAYED)
        for name in self.REPLAYED:
            self.assertTrue(callable(getattr(self, "test_" + name.replace("-", "_"))), name)

    def test_gdipc_tcp_reqc0_addr(self):
        """gdipc.pl, code 0 with an address: C{0}, the address is served."""
        return self.replay("gdipc-tcp-reqc0-addr")

    def test_gdipc_tcp_reqc0_sockaddr(self):
        """gdipc.pl, code 0 with its own socket address: C{0}, 127.0.0.1 served."""
        return self.replay("gdipc-tcp-reqc0-sockaddr")

    def test_gdipc_tcp_reqc1_offline(self):
        """gdipc.pl, code 1: C{2}, the offline IP is served."""
        return self.replay("gdipc-tcp-reqc1-offline")

    def test_gdipc_tcp_reqc2_auto(self):
        """gdipc.pl, code 2: C{0:127.0.0.1}, the peer's address is served."""
        return self.replay("gdipc-tcp-reqc2-auto")

    def test_gdipc_tcp_badpass(self):
        """gdipc.pl, wrong password: C{1}, nothing changes."""
        return self.replay("gdipc-tcp-badpass")

    def test_ezipupdate_tcp_reqc0_noaddr(self):
        """ez-ipupdate, code 0 without an address: C{0}, the peer's address is served."""
        return self.replay("ezipupdate-tcp-reqc0-noaddr")

    def test_ezipupdate_tcp_reqc1_offline(self):
        """ez-ipupdate, code 1: C{2}, the offline IP is served."""
        return self.replay("ezipupdate-tcp-reqc1-offline")

    def test_freedombox_tcp_reqc2(self):
        """FreedomBox, code 2: C{0:127.0.0.1}."""
        return self.replay("freedombox-tcp-reqc2")

    @defer.inlineCallbacks
    def test_random_salt(self):
        """Without an injected salt each connection gets a fresh 10-character one and a bare LF."""
        self.factory.salt_source = make_salt
        first, rest = yield threads.deferToThread(tcp_exchange, self.port_number, b"\n")
        second, _ = yield threads.deferToThread(tcp_exchange, self.port_number, b"\n")
        self.assertRegex(first, rb"\A[A-Za-z0-9]{10}\n\Z")
        self.assertRegex(second, rb"\A[A-Za-z0-9]{10}\n\Z")
        self.assertNotEqual(first, second)
        self.assertEqual(rest, b"1\n")
        yield self.wait_released()

    @defer.inlineCallbacks
    def test_cap_per_source_real_listener(self):
        """
        With C{max_per_source=2} a third concurrent connection from
        127.0.0.1 is closed without a salt; once one ends, a new one is served.
        """
        def scenario() -> tuple[bytes, bytes]:
            held = [socket.create_connection(("127.0.0.1", self.port_number), timeout=TIMEOUT)
                    for _ in range(2)]
            try:
                for s in held:
                    self.assertEqual(s.recv(100), SALT.encode() + b"\n")
                with socket.create_connection(("127.0.0.1", self.port_number), timeout=TIMEOUT) as s:
                    try:
                        refused = s.recv(100)
                    except ConnectionResetError:
                        refused = b""
                held.pop().close()
                # The server must notice that close before it admits another.
                for _ in range(int(TIMEOUT / 0.02)):
                    salt, _ = tcp_exchange(self.port_number, b"\n")
                    if salt:
                        break
                    time.sleep(0.02)
                return refused, salt
            finally:
                for s in held:
                    s.close()

        refused, salt = yield threads.deferToThread(scenario)
        self.assertEqual(refused, b"")
        self.assertEqual(salt, SALT.encode() + b"\n")
        yield self.wait_released()


# -- the protocol on a StringTransport


class RecordingTransport(StringTransport):
    """A C{StringTransport} that records an abort (not only a close)."""

    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


def line(user: str = "alice", code: str = "0", address: str | None = None, *,
         password: str | None = None, salt: str = SALT, domain: str = SUFFIX,
         hash_: str | None = None, end: bytes = b"\n") -> bytes:
    """A request line as a client builds it."""
    if hash_ is None:
        hash_ = client_hash(password or PASSWORDS.get(user, "x"), salt)
    fields = [user, hash_, domain, code] + ([address] if address is not None else [])
    return ":".join(fields).encode("utf-8") + end


class ProtocolTests(GnuDIPTestMixin, unittest.SynchronousTestCase):
    """L{GnuDIPProtocol} on a L{RecordingTransport}; time is a C{task.Clock}."""

    def setUp(self) -> None:
        self.service = start_service(self)
        self.store: Any = self.service.store
        self.checker = PasswordChecker(self.service.registry.users, reactor)
        self.clock = task.Clock()
        self.factory = GnuDIPFactory(
            self.service, self.checker, timeout=30, max_per_source=3,
            salt_source=lambda: SALT,
        )
        self.park()

    def connect(self, peer: str = "127.0.0.1", port: int = 40000):
        address: Any = (IPv6Address if ":" in peer else IPv4Address)("TCP", peer, port)
        proto: Any = self.factory.buildProtocol(address)
        self.assertIsNotNone(proto)
        proto.callLater = self.clock.callLater
        transport = RecordingTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 3495), peerAddress=address
        )
        proto.makeConnection(transport)
        return proto, transport

    def ask(self, data: bytes, peer: str = "127.0.0.1") -> bytes:
        """
        Connect, send C{data}; what the server wrote after the salt line. It
        must close; the connection then ends.
        """
        proto, transport = self.connect(peer)
        self.assertEqual(transport.value(), SALT.encode() + b"\n")
        transport.clear()
        proto.dataReceived(data)
        self.assertTrue(transport.disconnecting, "the server must close after its reply")
        self.assertFalse(transport.aborted, "a reply is followed by a close, not an abort")
        proto.connectionLost(Failure(ConnectionDone()))
        return transport.value()

    def assertUnchanged(self) -> None:
        state = self.service.registry.states["alice"]
        self.assertFalse(state.offline)
        self.assertEqual(state.method, "test")
        self.assertEqual(self.served(), (PARKED,))

    # -- the salt and line endings

    def test_salt_bare_lf(self) -> None:
        """On connect: the salt and one LF, nothing else (a CRLF breaks gdipc.pl)."""
        proto, transport = self.connect()
        self.assertEqual(transport.value(), b"XLCDgXvzSo\n")
        self.assertFalse(transport.disconnecting)

    def test_lf_line(self) -> None:
        self.assertEqual(self.ask(line(address="192.0.2.7")), b"0\n")
        self.assertEqual(self.served(), ("192.0.2.7",))

    def test_crlf_line(self) -> None:
        """A CRLF-terminated line is accepted; the CR is not part of the last field."""
        self.assertEqual(self.ask(line(address="192.0.2.7", end=b"\r\n")), b"0\n")
        self.assertEqual(self.served(), ("192.0.2.7",))
        self.assertEqual(self.ask(line(code="1", end=b"\r\n")), b"2\n")
        self.assertEqual(self.served(), (OFFLINE_IP,))

    def test_line_in_pieces(self) -> None:
        """A line that arrives in several segments is one request."""
        proto, transport = self.connect()
        data = line(address="192.0.2.7")
        for i in range(len(data)):
            proto.dataReceived(data[i:i + 1])
        self.assertEqual(transport.value(), SALT.encode() + b"\n0\n")

    def test_only_first_line(self) -> None:
        """Two lines in one segment: one reply, only the first is carried out."""
        data = line(address="192.0.2.7") + line(address="192.0.2.8")
        self.assertEqual(self.ask(data), b"0\n")
        self.assertEqual(self.served(), ("192.0.2.7",))

    def test_later_line_ignored(self) -> None:
        """A line after the reply (a separate segment) is ignored too."""
        proto, transport = self.connect()
        proto.dataReceived(line(address="192.0.2.7"))
        proto.dataReceived(line(code="1"))
        self.assertEqual(transport.value(), SALT.encode() + b"\n0\n")
        self.assertEqual(self.served(), ("192.0.2.7",))

    # -- time and size limits

    def test_idle_timeout_aborts(self) -> None:
        """Nothing sent: at exactly the configured 30 s the connection is aborted, no reply."""
        proto, transport = self.connect()
        self.clock.advance(29.75)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.25)
        self.assertTrue(transport.aborted)
        self.assertEqual(transport.value(), SALT.encode() + b"\n")
        self.assertUnchanged()

    def test_never_sends_configured_timeout(self) -> None:
        """The timeout is the factory's: with 7 s, a silent client is aborted at 7 s."""
        self.factory.timeout = 7
        proto, transport = self.connect()
        self.clock.advance(6.5)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.5)
        self.assertTrue(transport.aborted)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_slow_drip_does_not_extend(self) -> None:
        """Bytes that never make a line do not reset the timer: aborted at 30 s after connect."""
        proto, transport = self.connect()
        for _ in range(3):
            self.clock.advance(9.5)
            proto.dataReceived(b"a")
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1.5)
        self.assertTrue(transport.aborted)
        self.assertEqual(transport.value(), SALT.encode() + b"\n")

    def test_reply_unread_aborted_at_timeout(self) -> None:
        """
        After the reply the close is polite; a peer that never reads cannot
        stall it beyond the timeout: it is aborted then.
        """
        proto, transport = self.connect()
        proto.dataReceived(line(address="192.0.2.7"))
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.aborted)
        self.clock.advance(30)
        self.assertTrue(transport.aborted)

    def test_connection_lost_cancels_timer(self) -> None:
        """A connection that ends leaves no timer behind."""
        proto, transport = self.connect()
        proto.dataReceived(line(address="192.0.2.7"))
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_long_line_aborted(self) -> None:
        """600 bytes without an LF: aborted at once, no reply, nothing changed."""
        proto, transport = self.connect()
        proto.dataReceived(b"a" * 600)
        self.assertTrue(transport.aborted)
        self.assertEqual(transport.value(), SALT.encode() + b"\n")
        self.assertUnchanged()

    def test_long_terminated_line_aborted(self) -> None:
        """A 600-byte line with its LF (a valid request padded out): aborted, not carried out."""
        proto, transport = self.connect()
        valid = line(address="192.0.2.7", end=b"")
        proto.dataReceived(valid + b" " * (600 - len(valid)) + b"\n")
        self.assertTrue(transport.aborted)
        self.assertEqual(transport.value(), SALT.encode() + b"\n")
        self.assertUnchanged()

    def test_line_limit_boundary(self) -> None:
        """512 bytes is still a line (answered C{1}); 513 without an end is aborted."""
        self.assertEqual(self.ask(b"x" * 512 + b"\n"), b"1\n")
        proto, transport = self.connect()
        proto.dataReceived(b"x" * 513)
        self.assertTrue(transport.aborted)

    # -- malformed requests and failed logins

    def test_garbage(self) -> None:
        """Anything that is not user:hash:domain:code[:addr] gets C{1}."""
        for data in (b"hello\n", b"\n", b"\r\n", b"a:b:c\n", b"\xff\xfe:\x00:x:0\n",
                     line(code=""), line(code="01"), line(code="-1")):
            self.assertEqual(self.ask(data), b"1\n", data)
        self.assertUnchanged()

    def test_unknown_code(self) -> None:
        self.assertEqual(self.ask(line(code="3")), b"1\n")
        self.assertUnchanged()

    def test_wrong_hash(self) -> None:
        """Wrong password, another salt's hash, a hash that is not hex: C{1}."""
        for data in (
            line(address="192.0.2.7", password="wrong"),
            line(address="192.0.2.7", salt="AAAAAAAAAA"),
            line(address="192.0.2.7", hash_="x" * 32),
            line(address="192.0.2.7", hash_=""),
            line(address="192.0.2.7", hash_=md5_verifier("s3cret")),
        ):
            self.assertEqual(self.ask(data), b"1\n", data)
        self.assertUnchanged()

    def test_hash_any_case(self) -> None:
        """The hex hash is compared case-insensitively."""
        upper = client_hash("s3cret", SALT).upper()
        self.assertEqual(self.ask(line(address="192.0.2.7", hash_=upper)), b"0\n")

    def test_unknown_user(self) -> None:
        self.assertEqual(self.ask(line("mallory", address="192.0.2.7", password="s3cret")), b"1\n")

    def test_wrong_domain(self) -> None:
        """Neither the suffix nor alice's full name: C{1}, even with the right hash."""
        for domain in ("example.com", "bob.dyn.example.com", "dyn.example.co", "",
                       "x.alice.dyn.example.com", "dyn.example.com.evil"):
            self.assertEqual(self.ask(line(address="192.0.2.7", domain=domain)), b"1\n", domain)
        self.assertUnchanged()

    def test_full_domain(self) -> None:
        """The full C{alice.dyn.example.com} (Simple DNS Plus style) is accepted, in any case."""
        self.assertEqual(self.ask(line(address="192.0.2.7", domain=MAIN)), b"0\n")
        self.assertEqual(self.served(), ("192.0.2.7",))
        self.assertEqual(self.ask(line(address="192.0.2.8", domain="ALICE.Dyn.Example.COM")), b"0\n")
        self.assertEqual(self.served(), ("192.0.2.8",))

    def test_user_name_any_case(self) -> None:
        self.assertEqual(self.ask(line("ALICE", address="192.0.2.7", password="s3cret")), b"0\n")
        self.assertEqual(self.served(), ("192.0.2.7",))

    def test_no_md5_verifier(self) -> None:
        """bob has no MD5 verifier: GnuDIP cannot log him in, C{1}."""
        self.park("bob")
        self.assertEqual(self.ask(line("bob", address="192.0.2.7")), b"1\n")
        self.assertEqual(self.served("bob.dyn.example.com"), (PARKED,))

    def test_disabled_user(self) -> None:
        """carol is disabled: C{1} even with the right hash, no state."""
        self.assertEqual(self.ask(line("carol", address="192.0.2.7")), b"1\n")
        self.assertIsNone(self.service.registry.states.get("carol"))

    def test_failed_login_logged_without_secrets(self) -> None:
        """A failed login is logged with the user's name, never the hash or the verifier."""
        events: list[dict] = []
        observer: Any = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        wrong = client_hash("wrong", SALT)
        self.assertEqual(self.ask(line(address="192.0.2.7", hash_=wrong)), b"1\n")
        text = "\n".join(formatEvent(e) for e in events)
        self.assertIn("alice", text)
        self.assertIn("failed login", text)
        for secret in (wrong, md5_verifier("s3cret"), client_hash("s3cret", SALT)):
            self.assertNotIn(secret, text)
            self.assertNotIn(secret, repr(events))

    # -- request codes

    def test_code0_address(self) -> None:
        self.assertEqual(self.ask(line(address="192.0.2.7")), b"0\n")
        state = self.service.registry.states["alice"]
        self.assertEqual((str(state.ipv4), state.method, state.client_address),
                         ("192.0.2.7", "gnudip-tcp", "127.0.0.1"))

    def test_code0_same_address(self) -> None:
        """The address it already has: still C{0}."""
        self.assertEqual(self.ask(line(address=PARKED)), b"0\n")
        self.assertEqual(self.served(), (PARKED,))

    def test_code0_without_address_uses_peer(self) -> None:
        """Code 0 without an address registers the peer's (ez-ipupdate relies on it)."""
        self.assertEqual(self.ask(line(), peer="198.51.100.4"), b"0\n")
        self.assertEqual(self.served(), ("198.51.100.4",))
        self.assertEqual(self.ask(line(address=""), peer="198.51.100.5"), b"0\n")
        self.assertEqual(self.served(), ("198.51.100.5",))

    def test_code0_zero_address_is_offline(self) -> None:
        """C{0:0.0.0.0} means offline: C{2}, the offline IP is served."""
        self.assertEqual(self.ask(line(address="0.0.0.0")), b"2\n")
        self.assertTrue(self.service.registry.states["alice"].offline)
        self.assertEqual(self.served(), (OFFLINE_IP,))

    def test_code0_bad_address(self) -> None:
        """An address that is none, or not a host's: C{1}, nothing changed."""
        for address in ("300.1.1.1", "not-an-ip", "224.0.0.1", "::", "192.0.2.1/24"):
            self.assertEqual(self.ask(line(address=address)), b"1\n", address)
        self.assertUnchanged()

    def test_code0_ipv6(self) -> None:
        """An IPv6 address in code 0 updates AAAA (our extension); the A record stays."""
        self.assertEqual(self.ask(line(address="2001:db8::5")), b"0\n")
        self.assertEqual(self.served(), (PARKED, "2001:db8::5"))
        self.assertEqual(str(self.service.registry.states["alice"].ipv6), "2001:db8::5")

    def test_code1_offline(self) -> None:
        """Code 1: C{2}; the offline IP is served (and nothing for a user without one)."""
        self.assertEqual(self.ask(line(code="1")), b"2\n")
        self.assertEqual(self.served(), (OFFLINE_IP,))
        self.park("dave")
        self.assertEqual(self.ask(line("dave", code="1")), b"2\n")
        self.assertEqual(self.served("dave.dyn.example.com"), ())

    def test_code1_already_offline(self) -> None:
        """Offline twice: C{2} both times."""
        self.assertEqual(self.ask(line(code="1")), b"2\n")
        self.assertEqual(self.ask(line(code="1")), b"2\n")

    def test_code2_peer(self) -> None:
        """Code 2 registers the peer's address and returns it."""
        self.assertEqual(self.ask(line(code="2"), peer="198.51.100.9"), b"0:198.51.100.9\n")
        self.assertEqual(self.served(), ("198.51.100.9",))
        # again, unchanged: still the address
        self.assertEqual(self.ask(line(code="2"), peer="198.51.100.9"), b"0:198.51.100.9\n")

    def test_code2_ignores_given_address(self) -> None:
        """Code 2 registers what the server sees, whatever the line says."""
        self.assertEqual(self.ask(line(code="2", address="192.0.2.7"), peer="198.51.100.9"),
                         b"0:198.51.100.9\n")
        self.assertEqual(self.served(), ("198.51.100.9",))

    def test_code2_ipv6_peer(self) -> None:
        """Code 2 from an IPv6 peer updates AAAA and returns the IPv6 address."""
        self.assertEqual(self.ask(line(code="2"), peer="2001:db8::9"), b"0:2001:db8::9\n")
        self.assertEqual(self.served(), (PARKED, "2001:db8::9"))

    def test_code2_mapped_peer(self) -> None:
        """An IPv4-mapped peer (dual-stack listener) is its IPv4 address."""
        self.assertEqual(self.ask(line(code="2"), peer="::ffff:198.51.100.9"), b"0:198.51.100.9\n")
        self.assertEqual(self.served(), ("198.51.100.9",))

    def test_store_failure(self) -> None:
        """If the store cannot write, the client gets C{1}, never C{0}."""
        self.store.fail_writes = OSError("disk full")
        self.assertEqual(self.ask(line(address="192.0.2.7")), b"1\n")
        self.assertEqual(self.ask(line(code="1")), b"1\n")
        self.flushLoggedErrors(OSError)
        self.assertUnchanged()

    # -- the per-source cap

    def test_cap_per_source(self) -> None:
        """
        max_per_source=3: the fourth concurrent connection from one address
        is refused (None), another address is not; a lost connection frees
        its place.
        """
        first = [self.connect("192.0.2.50", 40000 + i) for i in range(3)]
        self.assertIsNone(self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.50", 40010)))
        other, _ = self.connect("192.0.2.51")
        proto, transport = first[0]
        proto.connectionLost(Failure(ConnectionDone()))
        again = self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.50", 40011))
        self.assertIsNotNone(again)
        self.assertIsNone(self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.50", 40012)))
        # a second connectionLost of the same protocol must not free another place
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.50", 40013)))

    def test_cap_released_after_abort(self) -> None:
        """Aborted (timeout) connections free their places once lost."""
        conns = [self.connect("192.0.2.50", 40000 + i) for i in range(3)]
        self.clock.advance(30)
        for proto, transport in conns:
            self.assertTrue(transport.aborted)
            proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.factory._per_source, {})
        self.assertIsNotNone(self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.50", 40010)))
