"""
Socket activation as systemd does it: the test binds the sockets (DNS UDP
and TCP on one port, HTTP), L{tests.integration.socket_activate} moves them
to descriptors 3.. with C{LISTEN_FDS}, C{LISTEN_FDNAMES} and C{LISTEN_PID}
and execs twistd, which never binds anything itself. dig and curl then talk
to the passed sockets; a missing or foreign socket is refused in one line
naming the config key.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from tests.integration.clients import SUFFIX, run_curl
from tests.integration.harness import (
    CLI_TIMEOUT,
    REFUSAL_LIMIT,
    Server,
    ServerTestCase,
    twistd_command,
)

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "socket_activate.py")


def bound(kind: int, port: int) -> socket.socket:
    """A socket of C{kind} bound to 127.0.0.1:C{port}, listening if it is a stream socket."""
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    if kind == socket.SOCK_STREAM:
        sock.listen(64)
    return sock


class SocketActivationTests(ServerTestCase):
    tools = (("dig", "bind9-dnsutils"), ("curl", "curl"))

    def passed_sockets(self, server: Server) -> list[tuple[str, socket.socket]]:
        """
        DNS (UDP and TCP, both named C{dns}) on the server's DNS port,
        C{http} and C{https} on its HTTP and HTTPS ports, bound by the test,
        as the .socket units of examples/systemd would.
        """
        sockets = [
            ("dns", bound(socket.SOCK_DGRAM, server.port)),
            ("dns", bound(socket.SOCK_STREAM, server.port)),
            ("http", bound(socket.SOCK_STREAM, server.http_port)),
            ("https", bound(socket.SOCK_STREAM, server.https_port)),
        ]
        for _name, sock in sockets:
            self.addCleanup(sock.close)
        return sockets

    def launcher(self, sockets: list[tuple[str, socket.socket]], *options: str) -> list[str]:
        return [sys.executable, LAUNCHER, *options, *(f"{name}={s.fileno()}" for name, s in sockets), "--"]

    def make_activated_server(self) -> Server:
        server = self.make_server(listeners=("http", "https"))
        server.configure(
            dns={"listen": ["systemd:dns"]},
            http={
                "listen": [
                    "systemd:domain=INET:name=http",
                    f"systemd-tls:domain=INET:name=https:privateKey={server.key}:certKey={server.cert}",
                ]
            },
        )
        return server

    def test_serves_on_passed_sockets(self) -> None:
        """
        DNS over UDP and over TCP, an HTTP update and an HTTPS update
        (C{systemd-tls:}) with curl, all through the sockets the test bound,
        and each update served by DNS as soon as it was acknowledged.
        """
        server = self.make_activated_server()
        server.add_user("alice", "secret-pw", address=["192.0.2.10"])
        sockets = self.passed_sockets(server)
        server.start(self.launcher(sockets), pass_fds=[s.fileno() for _n, s in sockets])
        for _name, sock in sockets:
            sock.close()  # only twistd holds them now
        self.assertServes(f"alice.{SUFFIX}", "A", ["192.0.2.10"])
        tcp = self.served(f"alice.{SUFFIX}", "A", "+tcp")
        self.assertEqual(tcp.status, "NOERROR", tcp.output)
        self.assertEqual(tcp.data("A"), ["192.0.2.10"])
        rc, response, err = run_curl(
            f"http://127.0.0.1:{server.http_port}/dyndns/ddns?user=alice&pw=secret-pw&ip=198.51.100.20"
        )
        self.assertEqual(rc, 0, err)
        assert response is not None
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(response.header("x-dyndns-result"), "OK", response.raw)
        self.assertServes(f"alice.{SUFFIX}", "A", ["198.51.100.20"])
        self.assertEqual(self.served(f"alice.{SUFFIX}", "A", "+tcp").data("A"), ["198.51.100.20"])
        assert server.cert is not None
        rc, response, err = run_curl(
            "--cacert",
            server.cert,
            "-u",
            "alice:secret-pw",
            f"https://127.0.0.1:{server.https_port}/nic/update?hostname=alice.{SUFFIX}&myip=198.51.100.21",
        )
        self.assertEqual(rc, 0, err)  # curl verified our certificate: TLS on the passed socket
        assert response is not None
        self.assertEqual((response.status, response.text.strip()), (200, "good 198.51.100.21"), response.raw)
        self.assertServes(f"alice.{SUFFIX}", "A", ["198.51.100.21"])
        log = server.read_log()
        self.assertNotIn("Traceback", log)

    def refusal(self, server: Server, launcher: list[str], pass_fds: list[int]) -> str:
        """twistd (through C{launcher}) exits non-zero on its own; its last line."""
        started = time.monotonic()
        done = subprocess.run(
            [*launcher, *twistd_command(), "-n", "--pidfile=", "dyndns", "--config", server.config],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=CLI_TIMEOUT,
            check=False,
            cwd=server.directory,
            pass_fds=pass_fds,
        )
        self.assertNotEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertLess(time.monotonic() - started, REFUSAL_LIMIT)
        self.assertNotIn("Traceback", done.stdout + done.stderr)
        line = (done.stdout + done.stderr).strip().splitlines()[-1]
        self.assertIn(server.config, line)
        return line

    def test_no_socket_of_that_name(self) -> None:
        """C{systemd:nope}: refused naming dns.listen, the name, and the names that were passed."""
        server = self.make_activated_server()
        server.configure(dns={"listen": ["systemd:nope"]})
        sockets = self.passed_sockets(server)
        line = self.refusal(server, self.launcher(sockets), [s.fileno() for _n, s in sockets])
        self.assertIn("dns.listen: 'systemd:nope': no socket named 'nope' was passed (passed: dns, http, https)", line)

    def test_tls_needs_a_key(self) -> None:
        """C{systemd-tls:} without privateKey: refused naming http.listen[1] and what is missing."""
        server = self.make_activated_server()
        server.configure(http={"listen": ["systemd:domain=INET:name=http", "systemd-tls:domain=INET:name=https"]})
        sockets = self.passed_sockets(server)
        line = self.refusal(server, self.launcher(sockets), [s.fileno() for _n, s in sockets])
        self.assertIn("http.listen[1]: 'systemd-tls:domain=INET:name=https': systemd-tls: needs privateKey=", line)

    def test_no_http_socket_of_that_name(self) -> None:
        """A Twisted C{systemd:} endpoint whose name was not passed: refused naming http.listen[0]."""
        server = self.make_activated_server()
        server.configure(http={"listen": ["systemd:domain=INET:name=web"]})
        sockets = self.passed_sockets(server)
        line = self.refusal(server, self.launcher(sockets), [s.fileno() for _n, s in sockets])
        self.assertIn("http.listen[0]: 'systemd:domain=INET:name=web': no socket named 'web' was passed", line)

    def test_sockets_for_another_process(self) -> None:
        """C{LISTEN_PID} of another process: refused, saying so, naming dns.listen."""
        server = self.make_activated_server()
        sockets = self.passed_sockets(server)
        line = self.refusal(server, self.launcher(sockets, "--wrong-pid"), [s.fileno() for _n, s in sockets])
        self.assertIn("dns.listen: 'systemd:dns': no socket named 'dns': LISTEN_PID=", line)
        self.assertIn("is not this process", line)

    def test_nothing_passed(self) -> None:
        """No socket activation at all: refused, saying LISTEN_FDS is not set."""
        server = self.make_activated_server()
        line = self.refusal(server, [], [])
        self.assertIn("dns.listen: 'systemd:dns': no socket named 'dns': no sockets were passed", line)
