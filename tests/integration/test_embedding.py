"""
examples/embed_resolver.py as a real program: the DynDNS resolver in front of
an existing server's FileAuthority for example.org, asked with dig.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.clients import dig
from tests.integration.harness import STOP_TIMEOUT, cli_ok, stop_process, toml_document, wait_for
from tests.tools import free_port, require_tool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "embed_resolver.py")
START_TIMEOUT = 10.0


def start_example(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    """
    Run the example with C{args}; returns (process, its first stdout line)
    once it printed that line. On failure the process is stopped.
    """
    process = subprocess.Popen(
        [sys.executable, EXAMPLE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        return process, _read_line(process, START_TIMEOUT)
    except BaseException:
        stop_example(process)
        raise


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The first stdout line, or an AssertionError after C{timeout}."""
    assert process.stdout is not None and process.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise AssertionError(f"no 'listening' line within {timeout} s")
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                process.wait(STOP_TIMEOUT)
                err = process.stderr.read().decode(errors="replace")
                raise AssertionError(f"example exited with {process.returncode}: {err}")
            data += chunk
    finally:
        selector.close()
    return data.split(b"\n", 1)[0].decode()


def stop_example(process: subprocess.Popen[bytes]) -> None:
    """Stop the example (bounded) and close its pipes."""
    stop_process(process)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


class EmbedResolverExampleTests(SynchronousTestCase):
    """
    The example with its in-memory demo user. One example process serves
    every test of the class (they only read).
    """

    port: int
    process: subprocess.Popen[bytes]
    line: str

    @classmethod
    def setUpClass(cls) -> None:
        require_tool("dig", "bind9-dnsutils")
        cls.port = free_port()
        cls.process, cls.line = start_example(
            "--port", str(cls.port), "--interface", "127.0.0.1"
        )

    @classmethod
    def tearDownClass(cls) -> None:
        stop_example(cls.process)

    def test_listening_line(self) -> None:
        """The example announces exactly where it listens."""
        self.assertEqual(self.line, f"listening on 127.0.0.1:{self.port}")

    def test_dynamic_name_inside_zone(self) -> None:
        """
        demo.example.org lies inside the FileAuthority's zone but is the demo
        user's additional name: the resolver in front answers it, with the
        user's address and short TTL, authoritatively.
        """
        result = dig(self.port, "demo.example.org", "A")
        self.assertEqual(result.status, "NOERROR", result.output)
        self.assertIn("aa", result.flags)
        self.assertEqual(result.data("A"), ["192.0.2.10"])
        self.assertEqual([r.ttl for r in result.answer], [30])

    def test_main_name_of_demo_user(self) -> None:
        result = dig(self.port, "demo.dyn.example.org", "A")
        self.assertEqual(result.status, "NOERROR", result.output)
        self.assertEqual(result.data("A"), ["192.0.2.10"])

    def test_dynamic_name_nodata_for_other_family(self) -> None:
        """
        The demo user has no IPv6 address: NOERROR with no answer and the
        zone's SOA, not NXDOMAIN (the name exists).
        """
        result = dig(self.port, "demo.example.org", "AAAA")
        self.assertEqual(result.status, "NOERROR", result.output)
        self.assertEqual(result.answer, ())
        self.assertEqual([(r.name, r.type) for r in result.authority],
                         [("example.org.", "SOA")])

    def test_static_names_from_zone_file(self) -> None:
        """Names the resolver does not know fall through to the zone file."""
        www = dig(self.port, "www.example.org", "A")
        self.assertEqual(www.status, "NOERROR", www.output)
        self.assertIn("aa", www.flags)
        self.assertEqual(www.data("A"), ["192.0.2.80"])
        self.assertEqual([r.ttl for r in www.answer], [3600])
        www6 = dig(self.port, "www.example.org", "AAAA")
        self.assertEqual(www6.data("AAAA"), ["2001:db8::80"])
        mx = dig(self.port, "example.org", "MX")
        self.assertEqual(mx.status, "NOERROR", mx.output)
        self.assertEqual(mx.data("MX"), ["10 mail.example.org."])

    def test_unknown_name_in_zone_is_nxdomain(self) -> None:
        result = dig(self.port, "nothing-here.example.org", "A")
        self.assertEqual(result.status, "NXDOMAIN", result.output)
        self.assertIn("aa", result.flags)
        self.assertEqual(result.answer, ())
        self.assertEqual([(r.name, r.type) for r in result.authority],
                         [("example.org.", "SOA")])
        self.assertIn("ns1.example.org. hostmaster.example.org. 2024010101",
                      result.authority[0].data)

    def test_unknown_user_under_suffix_is_nxdomain_from_zone(self) -> None:
        """dyn.example.org is inside example.org: the zone says NXDOMAIN."""
        result = dig(self.port, "nobody.dyn.example.org", "A")
        self.assertEqual(result.status, "NXDOMAIN", result.output)
        self.assertEqual([r.type for r in result.authority], ["SOA"])

    def test_name_outside_zone_is_refused(self) -> None:
        result = dig(self.port, "www.example.com", "A")
        self.assertEqual(result.status, "REFUSED", result.output)
        self.assertEqual(result.answer, ())


class EmbedResolverWithStoreTests(SynchronousTestCase):
    """
    With C{--db}, the users come from an SQLite store that the C{dyndns} CLI
    manages, and CLI changes reach the running example.
    """

    def test_users_from_cli_store(self) -> None:
        require_tool("dig", "bind9-dnsutils")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        config = os.path.join(directory, "embed.toml")
        with open(config, "w") as f:
            f.write(toml_document({"service": {"suffix": "dyn.example.org", "poll_interval": 0.2},
                                   "store": {"path": "users.sqlite"}}))
        cli_ok(config, "user", "add", "eve", "--password", "pw", "--host", "eve.example.org")
        cli_ok(config, "user", "update", "eve", "192.0.2.44")
        port = free_port()
        process, line = start_example(
            "--port", str(port), "--db", os.path.join(directory, "users.sqlite")
        )
        self.addCleanup(stop_example, process)
        self.assertEqual(line, f"listening on 127.0.0.1:{port}")

        self.assertEqual(dig(port, "eve.example.org", "A").data("A"), ["192.0.2.44"])
        self.assertEqual(dig(port, "eve.dyn.example.org", "A").data("A"), ["192.0.2.44"])
        # No demo user when a store is given.
        self.assertEqual(dig(port, "demo.example.org", "A").status, "NXDOMAIN")
        self.assertEqual(dig(port, "www.example.org", "A").data("A"), ["192.0.2.80"])

        # The example's service polls the store (every 0.5 s by default).
        cli_ok(config, "user", "update", "eve", "192.0.2.45")
        wait_for(
            lambda: dig(port, "eve.example.org", "A").data("A") == ["192.0.2.45"], 5.0
        )
        self.assertEqual(dig(port, "eve.example.org", "A").data("A"), ["192.0.2.45"])
