"""
Bounded connections end to end: a real C{twistd -n dyndns} with HTTP, the
admin listener, GnuDIP TCP and DNS (UDP + TCP), attacked with idle and slow
connections from 127.0.0.2 while an honest client on 127.0.0.3 keeps being
served: an HTTP update (curl), a DNS-over-TCP answer (dig +tcp) and a GnuDIP
salt and reply.

The caps, deadlines and their release are unit-tested on a task.Clock in
tests/test_connections.py.
"""

from __future__ import annotations

import select
import shutil
import socket
import subprocess
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.helpers import (
    gnudip_tcp_from,
    CURL_TIMEOUT,
    SUFFIX,
    Twistd,
    cli_ok,
    dig,
    http_endpoint,
    write_config,
)
from tests.tools import free_port, require_tool

PASSWORD = "s3cret"
ATTACKER = "127.0.0.2"
HONEST = "127.0.0.3"
ADMIN_PW = "admin-pw"
#: Bound for one socket operation of the test's own clients.
TIMEOUT = 10.0
#: Caps of the test configuration (per source).
HTTP_CAP, ADMIN_CAP, GNUDIP_CAP, DNS_CAP = 12, 4, 6, 8
#: Connections the attacker opens beyond each cap.
EXTRA = 5


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def start_server(testcase: type, extra: str) -> None:
    """
    A twistd with every TCP listener (ports on C{testcase}), alice (GnuDIP
    too), an admin user, the limiter off, and the lines C{extra}.
    """
    require_tool("dig", "bind9-dnsutils")
    testcase.directory = tempfile.mkdtemp(prefix="dyndns-connections-")
    try:
        (testcase.port, testcase.http_port, testcase.gnudip_port,
         testcase.admin_port) = free_ports(4)
        testcase.config = write_config(
            testcase.directory, testcase.port,
            http_listen=[http_endpoint(testcase.http_port)],
            base_url=f"http://127.0.0.1:{testcase.http_port}/dyndns/",
        )
        admin_hash = cli_ok(testcase.config, "hash-password", "--password", ADMIN_PW).strip()
        with open(testcase.config, "a") as f:
            f.write(
                "\n[gnudip]\n"
                f'listen = ["tcp:{testcase.gnudip_port}:interface=127.0.0.1"]\n'
                f"max_connections_per_source = {GNUDIP_CAP}\n"
                "\n[admin]\n"
                f'listen = ["tcp:{testcase.admin_port}:interface=127.0.0.1"]\n'
                f'users = {{ admin = "{admin_hash}" }}\n'
                "\n[limits]\n"
                "enabled = false\n"
                + extra
            )
        cli_ok(testcase.config, "user", "add", "alice", "--password", PASSWORD, "--gnudip")
        testcase.server = Twistd(
            testcase.config, testcase.port,
            [testcase.http_port, testcase.gnudip_port, testcase.admin_port],
        )
        testcase.server.start()
    except BaseException:
        shutil.rmtree(testcase.directory, ignore_errors=True)
        raise


def connect(port: int, source: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0))
    return s


def closed_by_server(
    sockets: list[socket.socket], wait: float = 1.0, expect: int | None = None
) -> set[socket.socket]:
    """
    The sockets the server closed (EOF or reset) within C{wait} seconds, or
    once C{expect} are closed and 0.3 s more passed (a loaded machine may be
    slow to close them; more than expected are still seen). Anything they
    sent first (a GnuDIP salt) is read and ignored.
    """
    closed: set[socket.socket] = set()
    deadline = time.monotonic() + wait
    while True:
        if expect is not None and len(closed) >= expect:
            deadline = min(deadline, time.monotonic() + 0.3)
            expect = None
        left = deadline - time.monotonic()
        open_ = [s for s in sockets if s not in closed]
        if left <= 0 or not open_:
            return closed
        readable, _, _ = select.select(open_, [], [], left)
        for s in readable:
            try:
                if not s.recv(4096):
                    closed.add(s)
            except OSError:
                closed.add(s)


def gnudip_exchange(port: int, source: str, address: str) -> tuple[str, bytes]:
    """alice's GnuDIP TCP exchange (code 0 with an address): (salt, reply)."""
    return gnudip_tcp_from(port, source, "alice", PASSWORD, address)


def curl(url: str, source: str, *args: str) -> str:
    program = require_tool("curl", "curl")
    done = subprocess.run(
        [program, "-sS", "--max-time", "10", "--interface", source, *args, url],
        capture_output=True, text=True, timeout=CURL_TIMEOUT, check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"curl {url} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


class CapsTests(SynchronousTestCase):
    """
    Idle connections from one host fill its per-source caps on every TCP
    listener; the next ones are closed at once; another host is served.
    """

    directory: str
    config: str
    server: Twistd
    port: int
    http_port: int
    gnudip_port: int
    admin_port: int

    @classmethod
    def setUpClass(cls) -> None:
        start_server(cls, (
            "\n[connections]\n"
            f"http_max_per_source = {HTTP_CAP}\n"
            f"admin_max_per_source = {ADMIN_CAP}\n"
            f"dns_tcp_max_per_source = {DNS_CAP}\n"
        ))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)

    def test_flood_from_one_host_leaves_others_served(self) -> None:
        listeners = {
            "http": (self.http_port, HTTP_CAP),
            "admin": (self.admin_port, ADMIN_CAP),
            "gnudip": (self.gnudip_port, GNUDIP_CAP),
            "dns_tcp": (self.port, DNS_CAP),
        }
        held: list[socket.socket] = []
        self.addCleanup(lambda: [s.close() for s in held])
        opened: dict[str, list[socket.socket]] = {}
        for name, (port, cap) in listeners.items():
            opened[name] = [connect(port, ATTACKER) for _ in range(cap + EXTRA)]
            held += opened[name]
        closed = closed_by_server(held, wait=10, expect=EXTRA * len(listeners))
        for name, sockets in opened.items():
            refused = closed.intersection(sockets)
            self.assertEqual(
                (len(sockets) - len(refused), len(refused)),
                (listeners[name][1], EXTRA),
                f"{name}: connections held and refused from one host",
            )
        still_open = [s for s in held if s.fileno() != -1]
        # the honest host: an HTTP update, a DNS-over-TCP answer, GnuDIP
        body = curl(
            f"http://127.0.0.1:{self.http_port}/nic/update?myip=198.51.100.7", HONEST,
            "-u", f"alice:{PASSWORD}",
        )
        self.assertEqual(body.strip(), "good 198.51.100.7")
        answer = dig(self.port, f"alice.{SUFFIX}", "A", "+tcp", "-b", HONEST)
        self.assertEqual((answer.status, answer.data("A")), ("NOERROR", ["198.51.100.7"]))
        salt, reply = gnudip_exchange(self.gnudip_port, HONEST, "198.51.100.8")
        self.assertEqual((len(salt), reply), (10, b"0\n"))
        self.assertEqual(dig(self.port, f"alice.{SUFFIX}").data("A"), ["198.51.100.8"])
        # the attacker is still held at its caps: one more is refused at once
        for name, (port, cap) in listeners.items():
            extra = connect(port, ATTACKER)
            held.append(extra)
            self.assertEqual(closed_by_server([extra], wait=5), {extra}, name)
        metrics = curl(
            f"http://127.0.0.1:{self.admin_port}/metrics", HONEST, "-u", f"admin:{ADMIN_PW}",
        )
        for name in listeners:
            self.assertIn(
                f'dyndns_connections_refused_total{{listener="{name}",reason="per_source"}} '
                f"{EXTRA + 1}.0",
                metrics,
            )
        self.assertIn(f'dyndns_connections_open{{listener="http"}} {HTTP_CAP}.0', metrics)
        self.assertTrue(still_open)

    def test_released_places_are_reused(self) -> None:
        """Closed connections give their places back: the host can connect again."""
        for _ in range(2):
            sockets = [connect(self.port, "127.0.0.4") for _ in range(DNS_CAP)]
            try:
                self.assertEqual(closed_by_server(sockets, wait=0.3), set())
            finally:
                for s in sockets:
                    s.close()
            time.sleep(0.1)  # the server sees the FINs


class DeadlineTests(SynchronousTestCase):
    """Slow clients are closed by the deadlines, whatever their activity."""

    directory: str
    config: str
    server: Twistd
    port: int
    http_port: int
    gnudip_port: int
    admin_port: int

    @classmethod
    def setUpClass(cls) -> None:
        start_server(cls, (
            "\n[connections]\n"
            "http_header_timeout = 1\n"
            "http_request_timeout = 2\n"
            "dns_tcp_message_timeout = 1\n"
            "gnudip_line_timeout = 1\n"
        ))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)

    def drip(self, s: socket.socket, data: bytes, every: float) -> tuple[int, bytes]:
        """
        Send C{data} one byte every C{every} seconds until done or the server
        closes; returns (bytes sent, what the server sent).
        """
        received = b""
        for i in range(len(data)):
            try:
                s.sendall(data[i:i + 1])
            except OSError:
                return i, received
            readable, _, _ = select.select([s], [], [], every)
            if readable:
                try:
                    chunk = s.recv(4096)
                except OSError:
                    return i + 1, received
                if not chunk:
                    return i + 1, received
                received += chunk
        return len(data), received

    def test_slow_http_head_closed(self) -> None:
        """One byte per 0.2 s of a 90-byte head (18 s): 408 and closed long before its end."""
        head = (
            b"GET /nic/update?myip=198.51.100.9 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"User-Agent: slow-client/1.0\r\n\r\n"
        )
        with connect(self.http_port, ATTACKER) as s:
            sent, received = self.drip(s, head, 0.2)
        self.assertLess(sent, len(head), "the server waited for the whole head")
        self.assertTrue(received.startswith(b"HTTP/1.1 408 "), received)
        # another host is answered meanwhile and after
        body = curl(f"http://127.0.0.1:{self.http_port}/dyndns/myip", HONEST)
        self.assertEqual(body.strip(), HONEST)

    def test_slow_dns_message_closed(self) -> None:
        """The 2-byte length of a 40-byte message, then one byte per 0.2 s: closed."""
        message = bytes(40)
        with connect(self.port, ATTACKER) as s:
            sent, received = self.drip(s, len(message).to_bytes(2, "big") + message, 0.2)
        self.assertLess(sent, 42)
        self.assertEqual(received, b"")
        answer = dig(self.port, f"probe.{SUFFIX}", "A", "+tcp", "-b", HONEST)
        self.assertEqual(answer.status, "NXDOMAIN")

    def test_silent_gnudip_client_closed(self) -> None:
        """A client that never answers the salt is closed after the line deadline."""
        with connect(self.gnudip_port, ATTACKER) as s:
            s.settimeout(TIMEOUT)
            data = b""
            while True:
                try:
                    chunk = s.recv(1024)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                data += chunk
        self.assertEqual(len(data), 11, data)  # the salt line, then the close
        salt, reply = gnudip_exchange(self.gnudip_port, HONEST, "198.51.100.10")
        self.assertEqual(reply, b"0\n")
