"""
The whole service as operators run it: a real C{twistd -n dyndns} process on
a temporary configuration, users managed with the C{dyndns} CLI, and every
answer checked with dig on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import time

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.helpers import (
    SUFFIX,
    DigResult,
    Twistd,
    cli_ok,
    dig,
    run_twistd_help,
    run_twistd_once,
    start_twistd,
    wait_for,
    write_config,
)
from tests.tools import free_port, require_tool

#: The TXT records of big.example.org: together far above the 1232-byte
#: EDNS UDP limit, each string within the 255-byte character-string limit.
BIG_TXT = [f"record-{i:02d}-" + "x" * 180 for i in range(12)]

ZONE = """\
$ORIGIN example.org.
$TTL 300
@    IN SOA ns1.example.org. hostmaster.example.org. 7 3600 600 1209600 60
     IN NS  ns1.example.org.
ns1  IN A   192.0.2.53
www  IN A   192.0.2.80
big  IN A   192.0.2.81
"""

#: How long a change written by the CLI may take to show in DNS: the poll
#: interval of the test configuration is 0.2 s.
VISIBLE_WITHIN = 1.0
#: How long the polling loops look before giving up (so a slow change is
#: reported with its real delay rather than as "not found").
POLL_LIMIT = 5.0


def write_zone(directory: str) -> str:
    lines = [ZONE] + [f'big  IN TXT "{text}"' for text in BIG_TXT]
    path = os.path.join(directory, "example.org.zone")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def make_site(directory: str) -> tuple[str, int]:
    """Zone file + configuration in C{directory}; returns (config, port)."""
    os.makedirs(directory, exist_ok=True)
    write_zone(directory)
    port = free_port()
    config = write_config(directory, port, zones=[("example.org", "example.org.zone")])
    return config, port


def add_alice(config: str) -> None:
    cli_ok(config, "user", "add", "alice", "--password", "pw",
           "--host", "alice.example.org", "--offline-ip", "192.0.2.1")
    cli_ok(config, "user", "update", "alice", "198.51.100.7", "2001:db8::7")


def soa_owners(result: DigResult) -> list[str]:
    return [r.name for r in result.authority if r.type == "SOA"]


def wait_dig(
    port: int, name: str, qtype: str, accept, timeout: float = POLL_LIMIT
) -> tuple[DigResult, float]:
    """dig every 0.1 s until C{accept(result)}; returns (last result, seconds)."""
    last: list[DigResult] = []

    def probe() -> bool:
        last[:] = [dig(port, name, qtype)]
        return bool(accept(last[0]))

    _, elapsed = wait_for(probe, timeout, interval=0.1)
    return last[0], elapsed


class ServedAnswersTests(SynchronousTestCase):
    """
    What a running server answers. The tests only read, so one server (with
    alice set up through the CLI before it starts) serves the whole class.
    """

    directory: str
    config: str
    port: int
    server: Twistd

    @classmethod
    def setUpClass(cls) -> None:
        require_tool("dig", "bind9-dnsutils")
        cls.directory = tempfile.mkdtemp(prefix="dyndns-twistd-")
        try:
            cls.config, cls.port = make_site(cls.directory)
            add_alice(cls.config)
            cls.server = Twistd(cls.config, cls.port)
            cls.server.start()
        except BaseException:
            shutil.rmtree(cls.directory, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)

    def test_a_and_aaaa_of_user(self) -> None:
        """The addresses set with C{dyndns user update}, with the default TTL."""
        a = dig(self.port, f"alice.{SUFFIX}", "A")
        self.assertEqual(a.status, "NOERROR", a.output)
        self.assertIn("aa", a.flags)
        self.assertEqual(a.data("A"), ["198.51.100.7"])
        self.assertEqual([r.ttl for r in a.answer], [30])
        aaaa = dig(self.port, f"alice.{SUFFIX}", "AAAA")
        self.assertEqual(aaaa.status, "NOERROR", aaaa.output)
        self.assertIn("aa", aaaa.flags)
        self.assertEqual(aaaa.data("AAAA"), ["2001:db8::7"])

    def test_additional_name_in_host_zone(self) -> None:
        """
        alice.example.org is inside the host zone example.org but belongs to
        alice: the dynamic answer wins over the zone file, and is served
        over TCP too.
        """
        a = dig(self.port, "alice.example.org", "A")
        self.assertEqual(a.status, "NOERROR", a.output)
        self.assertEqual(a.data("A"), ["198.51.100.7"])
        aaaa = dig(self.port, "alice.example.org", "AAAA", "+tcp")
        self.assertEqual(aaaa.status, "NOERROR", aaaa.output)
        self.assertEqual(aaaa.data("AAAA"), ["2001:db8::7"])

    def test_static_name_in_host_zone(self) -> None:
        www = dig(self.port, "www.example.org", "A")
        self.assertEqual(www.status, "NOERROR", www.output)
        self.assertIn("aa", www.flags)
        self.assertEqual(www.data("A"), ["192.0.2.80"])
        self.assertEqual([r.ttl for r in www.answer], [300])

    def test_unknown_name_nxdomain(self) -> None:
        """NXDOMAIN, authoritative, with the suffix zone's SOA."""
        result = dig(self.port, f"nobody.{SUFFIX}", "A")
        self.assertEqual(result.status, "NXDOMAIN", result.output)
        self.assertIn("aa", result.flags)
        self.assertEqual(result.answer, ())
        self.assertEqual(soa_owners(result), [f"{SUFFIX}."])
        self.assertTrue(
            result.authority[0].data.startswith(f"ns1.{SUFFIX}. hostmaster.{SUFFIX}. 1 "),
            result.authority[0].data,
        )
        in_zone = dig(self.port, "nothing.example.org", "A")
        self.assertEqual(in_zone.status, "NXDOMAIN", in_zone.output)
        self.assertIn("aa", in_zone.flags)
        self.assertEqual(soa_owners(in_zone), ["example.org."])

    def test_nodata_for_other_type_of_user(self) -> None:
        """MX of a user's name: NOERROR, no answer, the SOA, authoritative."""
        result = dig(self.port, f"alice.{SUFFIX}", "MX")
        self.assertEqual(result.status, "NOERROR", result.output)
        self.assertIn("aa", result.flags)
        self.assertEqual(result.answer, ())
        self.assertEqual(soa_owners(result), [f"{SUFFIX}."])
        extra = dig(self.port, "alice.example.org", "MX")
        self.assertEqual(extra.status, "NOERROR", extra.output)
        self.assertEqual(extra.answer, ())
        self.assertEqual(soa_owners(extra), ["example.org."])

    def test_outside_zones_refused(self) -> None:
        """Never an open resolver: names in no zone of ours are REFUSED."""
        result = dig(self.port, "www.example.net", "A")
        self.assertEqual(result.status, "REFUSED", result.output)
        self.assertEqual(result.answer, ())
        self.assertNotIn("aa", result.flags)

    def test_suffix_apex(self) -> None:
        soa = dig(self.port, SUFFIX, "SOA")
        self.assertEqual(soa.status, "NOERROR", soa.output)
        self.assertEqual([r.type for r in soa.answer], ["SOA"])
        ns = dig(self.port, SUFFIX, "NS")
        self.assertEqual(ns.data("NS"), [f"ns1.{SUFFIX}."])
        glue = dig(self.port, f"ns1.{SUFFIX}", "A")
        self.assertEqual(glue.data("A"), ["127.0.0.1"])

    def test_big_answer_truncated_over_udp(self) -> None:
        """
        The TXT set is bigger than the 1232-byte EDNS limit: over UDP the
        reply has TC and no records; over TCP it is complete.
        """
        udp = dig(self.port, "big.example.org", "TXT", "+ignore", "+notcp")
        self.assertEqual(udp.status, "NOERROR", udp.output)
        self.assertIn("tc", udp.flags)
        self.assertEqual(udp.answer, ())
        tcp = dig(self.port, "big.example.org", "TXT", "+tcp")
        self.assertEqual(tcp.status, "NOERROR", tcp.output)
        self.assertNotIn("tc", tcp.flags)
        self.assertEqual(sorted(tcp.data("TXT")), sorted(f'"{t}"' for t in BIG_TXT))
        # dig's default: UDP, then the retry over TCP that TC asks for.
        retried = dig(self.port, "big.example.org", "TXT")
        self.assertEqual(len(retried.data("TXT")), len(BIG_TXT), retried.output)

    def test_small_answer_not_truncated(self) -> None:
        """TC only when needed: a small answer fits even without EDNS."""
        result = dig(self.port, "big.example.org", "A", "+ignore", "+notcp", "+noedns")
        self.assertNotIn("tc", result.flags)
        self.assertEqual(result.data("A"), ["192.0.2.81"])


class ChangesWhileRunningTests(SynchronousTestCase):
    """The CLI changes users while twistd serves; DNS follows."""

    def setUp(self) -> None:
        require_tool("dig", "bind9-dnsutils")
        self.config, self.port = make_site(os.path.abspath(self.mktemp()))
        add_alice(self.config)
        self.server = start_twistd(self, self.config, self.port)

    def test_user_added_visible_within_a_second(self) -> None:
        """
        C{dyndns user add} (another process writing the store) shows in DNS
        within the poll interval: the new user's name stops being NXDOMAIN
        (NODATA until it has an address), and its first address follows.
        """
        name = f"bob.{SUFFIX}"
        before = dig(self.port, name, "A")
        self.assertEqual(before.status, "NXDOMAIN", before.output)

        cli_ok(self.config, "user", "add", "bob", "--password", "pw",
               "--host", "bob.example.org")
        added, add_delay = wait_dig(self.port, name, "A", lambda r: r.status == "NOERROR")
        print(f"\nCLI user add -> dig sees bob: {add_delay:.3f} s")
        self.assertEqual(added.status, "NOERROR", added.output)
        self.assertEqual(added.answer, ())
        self.assertLessEqual(add_delay, VISIBLE_WITHIN)

        cli_ok(self.config, "user", "update", "bob", "203.0.113.9")
        updated, update_delay = wait_dig(
            self.port, "bob.example.org", "A", lambda r: r.data("A") == ["203.0.113.9"]
        )
        print(f"CLI user update -> dig sees the address: {update_delay:.3f} s")
        self.assertEqual(updated.data("A"), ["203.0.113.9"], updated.output)
        self.assertLessEqual(update_delay, VISIBLE_WITHIN)

    def test_offline_serves_offline_ip(self) -> None:
        cli_ok(self.config, "user", "offline", "alice")
        a, _ = wait_dig(self.port, f"alice.{SUFFIX}", "A",
                        lambda r: r.data("A") == ["192.0.2.1"])
        self.assertEqual(a.data("A"), ["192.0.2.1"], a.output)
        self.assertEqual(a.status, "NOERROR")
        # No offline IPv6 is configured: the IPv6 address is not served.
        aaaa = dig(self.port, "alice.example.org", "AAAA")
        self.assertEqual(aaaa.status, "NOERROR", aaaa.output)
        self.assertEqual(aaaa.answer, ())
        # An update brings alice back online with her addresses.
        cli_ok(self.config, "user", "update", "alice", "198.51.100.8")
        back, _ = wait_dig(self.port, "alice.example.org", "AAAA",
                           lambda r: r.data("AAAA") == ["2001:db8::7"])
        self.assertEqual(back.data("AAAA"), ["2001:db8::7"], back.output)
        self.assertEqual(dig(self.port, f"alice.{SUFFIX}", "A").data("A"), ["198.51.100.8"])

    def test_disable_and_enable(self) -> None:
        cli_ok(self.config, "user", "disable", "alice")
        gone, _ = wait_dig(self.port, f"alice.{SUFFIX}", "A",
                           lambda r: r.status == "NXDOMAIN")
        self.assertEqual(gone.status, "NXDOMAIN", gone.output)
        self.assertIn("aa", gone.flags)
        self.assertEqual(soa_owners(gone), [f"{SUFFIX}."])
        extra = dig(self.port, "alice.example.org", "AAAA")
        self.assertEqual(extra.status, "NXDOMAIN", extra.output)
        self.assertEqual(soa_owners(extra), ["example.org."])

        cli_ok(self.config, "user", "enable", "alice")
        back, _ = wait_dig(self.port, "alice.example.org", "A",
                           lambda r: r.data("A") == ["198.51.100.7"])
        self.assertEqual(back.data("A"), ["198.51.100.7"], back.output)

    def test_restart_keeps_users(self) -> None:
        """
        Stop twistd (SIGTERM: a clean exit) and start it again on the same
        configuration: every user, address and offline state is still
        served, including changes made while the first process ran.
        """
        cli_ok(self.config, "user", "add", "carol", "--password", "pw",
               "--offline-ip", "192.0.2.99")
        cli_ok(self.config, "user", "update", "carol", "203.0.113.20")
        cli_ok(self.config, "user", "offline", "carol")
        seen, _ = wait_dig(self.port, f"carol.{SUFFIX}", "A",
                           lambda r: r.data("A") == ["192.0.2.99"])
        self.assertEqual(seen.data("A"), ["192.0.2.99"], seen.output)

        # twistd exits through the signal it got (Twisted re-raises SIGTERM
        # after a clean shutdown); SIGKILL (-9) would mean a hung shutdown.
        self.assertIn(self.server.stop(), (0, -signal.SIGTERM), self.server.read_log())
        self.assertIn("Server Shut Down.", self.server.read_log())
        down = dig(self.port, f"alice.{SUFFIX}", "A")
        self.assertIsNone(down.status, "a stopped server still answers")

        self.server.start()
        self.assertEqual(dig(self.port, f"alice.{SUFFIX}", "A").data("A"), ["198.51.100.7"])
        self.assertEqual(dig(self.port, f"alice.{SUFFIX}", "AAAA").data("AAAA"),
                         ["2001:db8::7"])
        self.assertEqual(dig(self.port, "alice.example.org", "A").data("A"), ["198.51.100.7"])
        self.assertEqual(dig(self.port, f"carol.{SUFFIX}", "A").data("A"), ["192.0.2.99"])
        self.assertEqual(dig(self.port, f"carol.{SUFFIX}", "AAAA").answer, ())


class ConfigurationErrorTests(SynchronousTestCase):
    """
    A bad configuration stops twistd before it listens, with a message naming
    the file and the key. twistd itself prints usage errors (after the usage
    text) on standard output, so both streams are searched.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def write(self, text: str) -> str:
        path = os.path.join(self.directory, "broken.toml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def assertRefused(self, text: str, *expected: str) -> str:
        config = self.write(text)
        started = time.monotonic()
        rc, out, err = run_twistd_once(config)
        self.assertNotEqual(rc, 0, out + err)
        message = (out + err).strip().splitlines()[-1]
        for part in (config, *expected):
            self.assertIn(part, message, out + err)
        self.assertLess(time.monotonic() - started, 20)
        return message

    def test_unknown_key(self) -> None:
        self.assertRefused(
            '[service]\nsuffix = "dyn.example.com"\npoll_intervall = 1\n',
            "service.poll_intervall", "unknown key",
        )

    def test_bad_suffix(self) -> None:
        self.assertRefused('[service]\nsuffix = "no-dots"\n', "service.suffix")
        self.assertRefused('[service]\nsuffix = "bad..example.com"\n', "service.suffix",
                           "empty label")

    def test_bad_listen_address(self) -> None:
        self.assertRefused(
            '[service]\nsuffix = "dyn.example.com"\n[dns]\nlisten = ["localhost:53"]\n',
            "dns.listen", "localhost",
        )
        self.assertRefused(
            '[service]\nsuffix = "dyn.example.com"\n[dns]\nlisten = ["127.0.0.1:99999"]\n',
            "dns.listen", "99999",
        )

    def test_missing_zone_file(self) -> None:
        """The message names the missing zone file and the key that names it."""
        missing = os.path.join(os.path.abspath(self.directory), "missing.zone")
        self.assertRefused(
            '[service]\nsuffix = "dyn.example.com"\n'
            '[[dns.zones]]\norigin = "example.org"\nfile = "missing.zone"\n',
            missing, "dns.zones[0]",
        )

    def test_bad_zone_file(self) -> None:
        """A zone file dnspython cannot parse: named with its line."""
        zone = os.path.join(os.path.abspath(self.directory), "bad.zone")
        with open(zone, "w") as f:
            f.write(ZONE + "oops IN A 300.1.2.3\n")
        config = self.write('[service]\nsuffix = "dyn.example.com"\n'
                            '[[dns.zones]]\norigin = "example.org"\nfile = "bad.zone"\n')
        rc, out, err = run_twistd_once(config)
        self.assertNotEqual(rc, 0, out + err)
        message = (out + err).strip().splitlines()[-1]
        self.assertIn(zone, message)
        self.assertRegex(message, re.escape(zone) + r":\d+: ")  # with its line

    def test_help_lists_plugin(self) -> None:
        rc, out, err = run_twistd_help()
        self.assertEqual(rc, 0, err)
        commands = [line.split()[0] for line in out.splitlines()
                    if line.startswith("    ") and line.split()]
        self.assertIn("dyndns", commands, out)
