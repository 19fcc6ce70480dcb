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
import socket
import time
from typing import Any

from tests.integration.clients import SUFFIX, gnudip_tcp, run_curl
from tests.integration.harness import Server, SharedServerTestCase

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


class ConnectionsTestCase(SharedServerTestCase):
    """
    A twistd with every TCP listener, alice (GnuDIP too), an admin user, the
    limiter off, and the C{[connections]} settings of the class.
    """

    connections: dict[str, Any] = {}

    @classmethod
    def prepare(cls, server: Server) -> None:
        server.configure(
            gnudip={"max_connections_per_source": GNUDIP_CAP},
            limits={"enabled": False},
            connections=cls.connections,
        )
        server.add_admin("admin", ADMIN_PW)
        server.add_user("alice", PASSWORD, gnudip=True)

    def curl(self, url: str, source: str, *args: str) -> str:
        """curl C{url} from C{source}; must succeed. Returns the body."""
        rc, response, err = run_curl(*args, url, source=source)
        if rc != 0 or response is None:
            raise AssertionError(f"curl {url} failed ({rc}): {err.strip()}")
        return response.text


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


def gnudip_exchange(port: int, source: str, address: str) -> tuple[bytes, bytes]:
    """alice's GnuDIP TCP exchange (code 0 with an address): (salt line, reply)."""
    return gnudip_tcp(port, "alice", PASSWORD, "0", address, source=source)


class CapsTests(ConnectionsTestCase):
    """
    Idle connections from one host fill its per-source caps on every TCP
    listener; the next ones are closed at once; another host is served.
    """

    server_options = {"listeners": ("http", "gnudip", "admin")}
    connections = {
        "http_max_per_source": HTTP_CAP,
        "admin_max_per_source": ADMIN_CAP,
        "dns_tcp_max_per_source": DNS_CAP,
    }

    def test_flood_from_one_host_leaves_others_served(self) -> None:
        listeners = {
            "http": (self.server.http_port, HTTP_CAP),
            "admin": (self.server.admin_port, ADMIN_CAP),
            "gnudip": (self.server.gnudip_port, GNUDIP_CAP),
            "dns_tcp": (self.server.port, DNS_CAP),
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
        body = self.curl(
            f"http://127.0.0.1:{self.server.http_port}/nic/update?myip=198.51.100.7", HONEST,
            "-u", f"alice:{PASSWORD}",
        )
        self.assertEqual(body.strip(), "good 198.51.100.7")
        answer = self.served(f"alice.{SUFFIX}", "A", "+tcp", "-b", HONEST)
        self.assertEqual((answer.status, answer.data("A")), ("NOERROR", ["198.51.100.7"]))
        salt, reply = gnudip_exchange(self.server.gnudip_port, HONEST, "198.51.100.8")
        self.assertEqual((len(salt), reply), (11, b"0\n"))  # the salt and its LF
        self.assertEqual(self.served(f"alice.{SUFFIX}").data("A"), ["198.51.100.8"])
        # the attacker is still held at its caps: one more is refused at once
        for name, (port, cap) in listeners.items():
            extra = connect(port, ATTACKER)
            held.append(extra)
            self.assertEqual(closed_by_server([extra], wait=5), {extra}, name)
        metrics = self.curl(
            f"http://127.0.0.1:{self.server.admin_port}/metrics", HONEST, "-u", f"admin:{ADMIN_PW}",
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
            sockets = [connect(self.server.port, "127.0.0.4") for _ in range(DNS_CAP)]
            try:
                self.assertEqual(closed_by_server(sockets, wait=0.3), set())
            finally:
                for s in sockets:
                    s.close()
            time.sleep(0.1)  # the server sees the FINs


class DeadlineTests(ConnectionsTestCase):
    """Slow clients are closed by the deadlines, whatever their activity."""

    server_options = {"listeners": ("http", "gnudip", "admin")}
    connections = {
        "http_header_timeout": 1,
        "http_request_timeout": 2,
        "dns_tcp_message_timeout": 1,
        "gnudip_line_timeout": 1,
    }

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
        with connect(self.server.http_port, ATTACKER) as s:
            sent, received = self.drip(s, head, 0.2)
        self.assertLess(sent, len(head), "the server waited for the whole head")
        self.assertTrue(received.startswith(b"HTTP/1.1 408 "), received)
        # another host is answered meanwhile and after
        body = self.curl(f"http://127.0.0.1:{self.server.http_port}/dyndns/myip", HONEST)
        self.assertEqual(body.strip(), HONEST)

    def test_slow_dns_message_closed(self) -> None:
        """The 2-byte length of a 40-byte message, then one byte per 0.2 s: closed."""
        message = bytes(40)
        with connect(self.server.port, ATTACKER) as s:
            sent, received = self.drip(s, len(message).to_bytes(2, "big") + message, 0.2)
        self.assertLess(sent, 42)
        self.assertEqual(received, b"")
        answer = self.served(f"probe.{SUFFIX}", "A", "+tcp", "-b", HONEST)
        self.assertEqual(answer.status, "NXDOMAIN")

    def test_silent_gnudip_client_closed(self) -> None:
        """A client that never answers the salt is closed after the line deadline."""
        with connect(self.server.gnudip_port, ATTACKER) as s:
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
        salt, reply = gnudip_exchange(self.server.gnudip_port, HONEST, "198.51.100.10")
        self.assertEqual(reply, b"0\n")
