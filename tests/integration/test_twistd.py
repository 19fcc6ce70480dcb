"""
The whole service as operators run it: a real C{twistd -n dyndns} process on
a temporary configuration, users managed with the C{dyndns} CLI, and every
answer checked with dig on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import signal

from tests.integration.clients import SUFFIX, DigResult
from tests.integration.harness import (
    Server,
    ServerTestCase,
    SharedServerTestCase,
    run_twistd_help,
)

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


def write_zone(directory: str) -> str:
    lines = [ZONE] + [f'big  IN TXT "{text}"' for text in BIG_TXT]
    path = os.path.join(directory, "example.org.zone")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def prepare_site(server: Server) -> None:
    """The zone file example.org beside the configuration, and alice (set up with the CLI)."""
    write_zone(server.directory)
    server.add_user(
        "alice", "pw", hosts=["alice.example.org"], offline_ip=["192.0.2.1"], address=["198.51.100.7", "2001:db8::7"]
    )


#: The server options of both classes: the host zone example.org.
SITE = {"dns": {"zones": [{"origin": "example.org", "file": "example.org.zone"}]}}


def soa_owners(result: DigResult) -> list[str]:
    return [r.name for r in result.authority if r.type == "SOA"]


class ServedAnswersTests(SharedServerTestCase):
    """
    What a running server answers. The tests only read, so one server (with
    alice set up through the CLI before it starts) serves the whole class.
    """

    server_options = SITE

    @classmethod
    def prepare(cls, server: Server) -> None:
        prepare_site(server)

    def test_a_and_aaaa_of_user(self) -> None:
        """The addresses set with C{dyndns user update}, with the default TTL."""
        a = self.served(f"alice.{SUFFIX}", "A")
        self.assertEqual(a.status, "NOERROR", a.output)
        self.assertIn("aa", a.flags)
        self.assertEqual(a.data("A"), ["198.51.100.7"])
        self.assertEqual([r.ttl for r in a.answer], [30])
        aaaa = self.served(f"alice.{SUFFIX}", "AAAA")
        self.assertEqual(aaaa.status, "NOERROR", aaaa.output)
        self.assertIn("aa", aaaa.flags)
        self.assertEqual(aaaa.data("AAAA"), ["2001:db8::7"])

    def test_additional_name_in_host_zone(self) -> None:
        """
        alice.example.org is inside the host zone example.org but belongs to
        alice: the dynamic answer wins over the zone file, and is served
        over TCP too.
        """
        a = self.served("alice.example.org", "A")
        self.assertEqual(a.status, "NOERROR", a.output)
        self.assertEqual(a.data("A"), ["198.51.100.7"])
        aaaa = self.served("alice.example.org", "AAAA", "+tcp")
        self.assertEqual(aaaa.status, "NOERROR", aaaa.output)
        self.assertEqual(aaaa.data("AAAA"), ["2001:db8::7"])

    def test_static_name_in_host_zone(self) -> None:
        www = self.served("www.example.org", "A")
        self.assertEqual(www.status, "NOERROR", www.output)
        self.assertIn("aa", www.flags)
        self.assertEqual(www.data("A"), ["192.0.2.80"])
        self.assertEqual([r.ttl for r in www.answer], [300])

    def test_unknown_name_nxdomain(self) -> None:
        """NXDOMAIN, authoritative, with the suffix zone's SOA."""
        result = self.served(f"nobody.{SUFFIX}", "A")
        self.assertEqual(result.status, "NXDOMAIN", result.output)
        self.assertIn("aa", result.flags)
        self.assertEqual(result.answer, ())
        self.assertEqual(soa_owners(result), [f"{SUFFIX}."])
        self.assertTrue(
            result.authority[0].data.startswith(f"ns1.{SUFFIX}. hostmaster.{SUFFIX}. 1 "),
            result.authority[0].data,
        )
        in_zone = self.served("nothing.example.org", "A")
        self.assertEqual(in_zone.status, "NXDOMAIN", in_zone.output)
        self.assertIn("aa", in_zone.flags)
        self.assertEqual(soa_owners(in_zone), ["example.org."])

    def test_nodata_for_other_type_of_user(self) -> None:
        """MX of a user's name: NOERROR, no answer, the SOA, authoritative."""
        result = self.served(f"alice.{SUFFIX}", "MX")
        self.assertEqual(result.status, "NOERROR", result.output)
        self.assertIn("aa", result.flags)
        self.assertEqual(result.answer, ())
        self.assertEqual(soa_owners(result), [f"{SUFFIX}."])
        extra = self.served("alice.example.org", "MX")
        self.assertEqual(extra.status, "NOERROR", extra.output)
        self.assertEqual(extra.answer, ())
        self.assertEqual(soa_owners(extra), ["example.org."])

    def test_outside_zones_refused(self) -> None:
        """Never an open resolver: names in no zone of ours are REFUSED."""
        result = self.served("www.example.net", "A")
        self.assertEqual(result.status, "REFUSED", result.output)
        self.assertEqual(result.answer, ())
        self.assertNotIn("aa", result.flags)

    def test_suffix_apex(self) -> None:
        soa = self.served(SUFFIX, "SOA")
        self.assertEqual(soa.status, "NOERROR", soa.output)
        self.assertEqual([r.type for r in soa.answer], ["SOA"])
        ns = self.served(SUFFIX, "NS")
        self.assertEqual(ns.data("NS"), [f"ns1.{SUFFIX}."])
        glue = self.served(f"ns1.{SUFFIX}", "A")
        self.assertEqual(glue.data("A"), ["127.0.0.1"])

    def test_big_answer_truncated_over_udp(self) -> None:
        """
        The TXT set is bigger than the 1232-byte EDNS limit: over UDP the
        reply has TC and no records; over TCP it is complete.
        """
        udp = self.served("big.example.org", "TXT", "+ignore", "+notcp")
        self.assertEqual(udp.status, "NOERROR", udp.output)
        self.assertIn("tc", udp.flags)
        self.assertEqual(udp.answer, ())
        tcp = self.served("big.example.org", "TXT", "+tcp")
        self.assertEqual(tcp.status, "NOERROR", tcp.output)
        self.assertNotIn("tc", tcp.flags)
        self.assertEqual(sorted(tcp.data("TXT")), sorted(f'"{t}"' for t in BIG_TXT))
        # dig's default: UDP, then the retry over TCP that TC asks for.
        retried = self.served("big.example.org", "TXT")
        self.assertEqual(len(retried.data("TXT")), len(BIG_TXT), retried.output)

    def test_small_answer_not_truncated(self) -> None:
        """TC only when needed: a small answer fits even without EDNS."""
        result = self.served("big.example.org", "A", "+ignore", "+notcp", "+noedns")
        self.assertNotIn("tc", result.flags)
        self.assertEqual(result.data("A"), ["192.0.2.81"])


class ChangesWhileRunningTests(ServerTestCase):
    """The CLI changes users while twistd serves; DNS follows."""

    def setUp(self) -> None:
        prepare_site(self.make_server(**SITE))
        self.server.start()

    def test_user_added_visible_within_a_second(self) -> None:
        """
        C{dyndns user add} (another process writing the store) shows in DNS
        within the poll interval: the new user's name stops being NXDOMAIN
        (NODATA until it has an address), and its first address follows.
        """
        name = f"bob.{SUFFIX}"
        before = self.served(name, "A")
        self.assertEqual(before.status, "NXDOMAIN", before.output)

        self.server.cli("user", "add", "bob", "--password", "pw", "--host", "bob.example.org")
        added, add_delay = self.wait_served(name, "A", lambda r: r.status == "NOERROR")
        print(f"\nCLI user add -> dig sees bob: {add_delay:.3f} s")
        self.assertEqual(added.status, "NOERROR", added.output)
        self.assertEqual(added.answer, ())
        self.assertLessEqual(add_delay, VISIBLE_WITHIN)

        self.server.cli("user", "update", "bob", "203.0.113.9")
        updated, update_delay = self.wait_served("bob.example.org", "A", lambda r: r.data("A") == ["203.0.113.9"])
        print(f"CLI user update -> dig sees the address: {update_delay:.3f} s")
        self.assertEqual(updated.data("A"), ["203.0.113.9"], updated.output)
        self.assertLessEqual(update_delay, VISIBLE_WITHIN)

    def test_offline_serves_offline_ip(self) -> None:
        self.server.cli("user", "offline", "alice")
        a, _ = self.wait_served(f"alice.{SUFFIX}", "A", lambda r: r.data("A") == ["192.0.2.1"])
        self.assertEqual(a.data("A"), ["192.0.2.1"], a.output)
        self.assertEqual(a.status, "NOERROR")
        # No offline IPv6 is configured: the IPv6 address is not served.
        aaaa = self.served("alice.example.org", "AAAA")
        self.assertEqual(aaaa.status, "NOERROR", aaaa.output)
        self.assertEqual(aaaa.answer, ())
        # An update brings alice back online with her addresses.
        self.server.cli("user", "update", "alice", "198.51.100.8")
        back, _ = self.wait_served("alice.example.org", "AAAA", lambda r: r.data("AAAA") == ["2001:db8::7"])
        self.assertEqual(back.data("AAAA"), ["2001:db8::7"], back.output)
        self.assertEqual(self.served(f"alice.{SUFFIX}", "A").data("A"), ["198.51.100.8"])

    def test_disable_and_enable(self) -> None:
        self.server.cli("user", "disable", "alice")
        gone, _ = self.wait_served(f"alice.{SUFFIX}", "A", lambda r: r.status == "NXDOMAIN")
        self.assertEqual(gone.status, "NXDOMAIN", gone.output)
        self.assertIn("aa", gone.flags)
        self.assertEqual(soa_owners(gone), [f"{SUFFIX}."])
        extra = self.served("alice.example.org", "AAAA")
        self.assertEqual(extra.status, "NXDOMAIN", extra.output)
        self.assertEqual(soa_owners(extra), ["example.org."])

        self.server.cli("user", "enable", "alice")
        back, _ = self.wait_served("alice.example.org", "A", lambda r: r.data("A") == ["198.51.100.7"])
        self.assertEqual(back.data("A"), ["198.51.100.7"], back.output)

    def test_restart_keeps_users(self) -> None:
        """
        Stop twistd (SIGTERM: a clean exit) and start it again on the same
        configuration: every user, address and offline state is still
        served, including changes made while the first process ran.
        """
        self.server.cli("user", "add", "carol", "--password", "pw", "--offline-ip", "192.0.2.99")
        self.server.cli("user", "update", "carol", "203.0.113.20")
        self.server.cli("user", "offline", "carol")
        seen, _ = self.wait_served(f"carol.{SUFFIX}", "A", lambda r: r.data("A") == ["192.0.2.99"])
        self.assertEqual(seen.data("A"), ["192.0.2.99"], seen.output)

        # twistd exits through the signal it got (Twisted re-raises SIGTERM
        # after a clean shutdown); SIGKILL (-9) would mean a hung shutdown.
        self.assertIn(self.server.stop(), (0, -signal.SIGTERM), self.server.read_log())
        self.assertIn("Server Shut Down.", self.server.read_log())
        down = self.served(f"alice.{SUFFIX}", "A")
        self.assertIsNone(down.status, "a stopped server still answers")

        self.server.start()
        self.assertEqual(self.served(f"alice.{SUFFIX}", "A").data("A"), ["198.51.100.7"])
        self.assertEqual(self.served(f"alice.{SUFFIX}", "AAAA").data("AAAA"), ["2001:db8::7"])
        self.assertEqual(self.served("alice.example.org", "A").data("A"), ["198.51.100.7"])
        self.assertEqual(self.served(f"carol.{SUFFIX}", "A").data("A"), ["192.0.2.99"])
        self.assertEqual(self.served(f"carol.{SUFFIX}", "AAAA").answer, ())


class ConfigurationErrorTests(ServerTestCase):
    """
    A bad configuration stops twistd before it listens: exit status 1 and one
    line on standard error naming the file and the key (no usage block, no
    traceback; L{ServerTestCase.assertTwistdRefuses}).
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
        return self.assertTwistdRefuses(self.write(text), *expected)

    def test_unknown_key(self) -> None:
        self.assertRefused(
            '[service]\nsuffix = "dyn.example.com"\npoll_intervall = 1\n',
            "service.poll_intervall",
            "unknown key",
        )

    def test_bad_suffix(self) -> None:
        self.assertRefused('[service]\nsuffix = "no-dots"\n', "service.suffix")
        self.assertRefused('[service]\nsuffix = "bad..example.com"\n', "service.suffix", "empty label")

    def test_bad_listen_address(self) -> None:
        self.assertRefused(
            '[service]\nsuffix = "dyn.example.com"\n[dns]\nlisten = ["localhost:53"]\n',
            "dns.listen",
            "localhost",
        )
        self.assertRefused(
            '[service]\nsuffix = "dyn.example.com"\n[dns]\nlisten = ["127.0.0.1:99999"]\n',
            "dns.listen",
            "99999",
        )

    def test_missing_zone_file(self) -> None:
        """The message names the missing zone file and the key that names it."""
        missing = os.path.join(os.path.abspath(self.directory), "missing.zone")
        self.assertRefused(
            '[service]\nsuffix = "dyn.example.com"\n[[dns.zones]]\norigin = "example.org"\nfile = "missing.zone"\n',
            missing,
            "dns.zones[0]",
        )

    def test_bad_zone_file(self) -> None:
        """A zone file dnspython cannot parse: named with its line."""
        zone = os.path.join(os.path.abspath(self.directory), "bad.zone")
        with open(zone, "w") as f:
            f.write(ZONE + "oops IN A 300.1.2.3\n")
        config = self.write(
            '[service]\nsuffix = "dyn.example.com"\n[[dns.zones]]\norigin = "example.org"\nfile = "bad.zone"\n'
        )
        message = self.assertTwistdRefuses(config, zone)
        self.assertRegex(message, re.escape(zone) + r":\d+: ")  # with its line

    def test_help_lists_plugin(self) -> None:
        rc, out, err = run_twistd_help()
        self.assertEqual(rc, 0, err)
        commands = [line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()]
        self.assertIn("dyndns", commands, out)
