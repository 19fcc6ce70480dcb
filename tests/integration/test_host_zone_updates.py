"""
RFC 2136 UPDATE of a host zone (C{[[dns.zones]]} with C{allow_update} and
C{update_keys}) end to end: the real C{nsupdate} (bind9-dnsutils) against a
real C{twistd -n dyndns} on a free port of 127.0.0.1, every result checked
with C{dig}, and a real BIND C{named} as the zone's secondary.

The zone example.org comes from the zone file L{ZONE}; unsigned updates are
accepted from 127.0.0.2 only (nsupdate's C{local}); the zone key
C{zone-key} may change anything, C{office-key} only A and TXT below
office.example.org. What is checked:

 - an accepted update is served and its serial (exactly one more than
   before) published by the time nsupdate has its answer, so every check
   follows nsupdate without waiting; a refused or failed one changes
   neither records nor serial;
 - unsigned: 127.0.0.2 adds and deletes RRs, 127.0.0.3 is REFUSED;
 - signed, over UDP and TCP (C{-v}): nsupdate verifies our signed answers
   (C{-D} prints "tsig verification successful"); a key's C{names}/C{types}
   refuse what is outside them; a wrong secret is BADSIG;
 - prerequisites (C{prereq yxrrset}/C{nxrrset}) gate an update; a failing
   one answers NXRRSET or YXRRSET;
 - a user's name, the apex SOA and NS are not the updater's: REFUSED (adds)
   or ignored (apex deletes); a CNAME beside other data is ignored;
 - a BIND secondary follows each update by our NOTIFY and an incremental
   IXFR (BIND's own log says so, at C{named -d 3});
 - a restart of twistd serves the same zone (every record, the serial) and
   still answers IXFR from a serial of before the restart.

Every nsupdate and dig run is bounded by its own timeouts and a subprocess
timeout, every wait by a limit; servers are stopped by PID in cleanups.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any, Sequence

from tests.integration.clients import NSUPDATE_TIMEOUT, DigResult, TSIGKey, dig
from tests.integration.harness import Server, ServerTestCase, SharedServerTestCase, wait_for
from tests.integration.test_secondary import FOLLOW_LIMIT, SecondaryNamed, WithSecondary, soa_serial
from tests.tools import require_tool

ORIGIN = "example.org"
#: The zone file's serial: the zone starts there.
FILE_SERIAL = 2024010101
ZONE = f"""\
$ORIGIN {ORIGIN}.
$TTL 300
@     IN SOA ns1.{ORIGIN}. hostmaster.{ORIGIN}. {FILE_SERIAL} 3600 600 1209600 60
      IN NS  ns1.{ORIGIN}.
ns1   IN A   192.0.2.53
www   IN A   192.0.2.80
pool  IN A   192.0.2.90
pool  IN A   192.0.2.91
old   IN A   192.0.2.99
old   IN TXT "from the file"
"""
#: Sources of unsigned updates: nsupdate's C{local} address.
ALLOWED_SOURCE = "127.0.0.2"
OTHER_SOURCE = "127.0.0.3"
ZONE_KEY = TSIGKey("hmac-sha256", "zone-key", "q1Ovs3Qm6cYlH9QnFiBKa0mTv2G6DqBvTzv4tBOd9kA=")
OFFICE_KEY = TSIGKey("hmac-sha512", "office-key", "cm9vbS1mb3ItdGhlLW9mZmljZS1rZXktMDEyMzQ1Njc4OQ==")
WRONG_SECRET = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC0wMTIzNDU="
#: What nsupdate prints when a reply's TSIG is missing or does not verify.
TSIG_COMPLAINTS = ("TSIG error", "expected a TSIG", "tsig verify failure")


def zone_settings(**extra: Any) -> dict[str, Any]:
    """The C{[[dns.zones]]} entry of example.org: who may update it (C{extra} added)."""
    return {
        "origin": ORIGIN,
        "file": f"{ORIGIN}.zone",
        "allow_update": [f"{ALLOWED_SOURCE}/32"],
        "update_keys": [
            {"name": ZONE_KEY.name, "algorithm": ZONE_KEY.algorithm, "secret": ZONE_KEY.secret},
            {
                "name": OFFICE_KEY.name,
                "algorithm": OFFICE_KEY.algorithm,
                "secret": OFFICE_KEY.secret,
                "names": [f"*.office.{ORIGIN}"],
                "types": ["A", "TXT"],
            },
        ],
        **extra,
    }


def write_zone(server: Server) -> None:
    with open(os.path.join(server.directory, f"{ORIGIN}.zone"), "w") as f:
        f.write(ZONE)


def nsupdate_zone(
    port: int,
    commands: Sequence[str],
    *,
    local: str | None = None,
    key: TSIGKey | None = None,
    tcp: bool = False,
) -> tuple[int, str]:
    """
    nsupdate (C{-D}) against 127.0.0.1:C{port} for zone example.org, from
    C{local} (a 127.0.0.x source) if given, signed with C{key} if given
    (the key on standard input); C{tcp} adds C{-v}. Returns (exit code, all
    it printed).
    """
    program = require_tool("nsupdate", "bind9-dnsutils")
    script = [f"server 127.0.0.1 {port}"]
    if local is not None:
        script.append(f"local {local}")
    script.append(f"zone {ORIGIN}")
    if key is not None:
        script.append(f"key {key.algorithm}:{key.name} {key.secret}")
    script += [*commands, "send", "answer", ""]
    command = [program, "-D", "-t", "5", "-u", "2", "-r", "1", *(["-v"] if tcp else [])]
    done = subprocess.run(
        command, input="\n".join(script), capture_output=True, text=True, timeout=NSUPDATE_TIMEOUT, check=False
    )
    return done.returncode, done.stdout + done.stderr


def reply_part(output: str) -> str:
    """What nsupdate -D printed of the reply (AssertionError if it got none)."""
    if "Reply from update query:" not in output:
        raise AssertionError(f"nsupdate got no reply:\n{output}")
    return output.split("Reply from update query:", 1)[1]


def zone_serial(port: int) -> int:
    """example.org's SOA serial as 127.0.0.1:C{port} serves it (AssertionError if none)."""
    result = dig(port, ORIGIN, "SOA")
    serial = soa_serial(result)
    if serial is None:
        raise AssertionError(f"no SOA for {ORIGIN}: {result.output or result.error}")
    return serial


def transfer_records(result: DigResult) -> list[str]:
    """The records of a dig AXFR/IXFR, one normalised line each, in the order sent."""
    return [" ".join(line.split()) for line in result.output.splitlines() if line.strip() and not line.startswith(";")]


class HostZoneUpdateTests(SharedServerTestCase):
    """
    One server for the class: example.org (L{ZONE}) updatable by 127.0.0.2
    and the keys of L{zone_settings}, and alice, whose additional name
    alice.example.org is inside it. Each test uses names of its own and
    counts serials from what it finds, so the tests share the server in any
    order.
    """

    tools = (("nsupdate", "bind9-dnsutils"), ("dig", "bind9-dnsutils"))
    server_options = {"dns": {"zones": [zone_settings()]}}

    @classmethod
    def prepare(cls, server: Server) -> None:
        write_zone(server)
        server.add_user("alice", "alice-pw", hosts=[f"alice.{ORIGIN}"], address=["198.51.100.7"])

    # -- helpers

    def serial(self) -> int:
        return zone_serial(self.server.port)

    def update(self, commands: Sequence[str], **options: Any) -> str:
        """An nsupdate run that must succeed: exit 0, NOERROR (its TSIG verified when signed)."""
        rc, output = nsupdate_zone(self.server.port, commands, **options)
        self.assertEqual(rc, 0, output)
        self.assertReply(output, "NOERROR", signed=options.get("key") is not None)
        return output

    def refused(self, commands: Sequence[str], status: str, **options: Any) -> str:
        """An nsupdate run that must fail with C{status}: exit not 0, that RCODE in the reply."""
        rc, output = nsupdate_zone(self.server.port, commands, **options)
        self.assertNotEqual(rc, 0, output)
        self.assertReply(output, status, signed=options.get("key") is not None)
        return output

    def assertReply(self, output: str, status: str, signed: bool) -> None:
        """nsupdate got a reply with C{status}; signed and verified, or unsigned, as the request."""
        reply = reply_part(output)
        self.assertIn(f"status: {status}", reply, output)
        if signed:
            self.assertIn("TSIG PSEUDOSECTION", reply, output)
            self.assertIn("tsig verification successful", output)
            for complaint in TSIG_COMPLAINTS:
                self.assertNotIn(complaint.lower(), output.lower())
        else:
            self.assertNotIn("TSIG PSEUDOSECTION", reply, output)

    def assertServes(
        self, name: str, rtype: str, expected: list[str], within: float = 0.0, *, ttl: int | None = None
    ) -> DigResult:
        """
        The harness's check, with RRsets in any order, the AA flag and, if
        given, every answer's C{ttl}.
        """
        result, _ = self.wait_served(
            name, rtype, lambda r: r.status == "NOERROR" and sorted(r.data(rtype)) == sorted(expected), within
        )
        self.assertEqual(result.status, "NOERROR", result.output or result.error)
        self.assertEqual(sorted(result.data(rtype)), sorted(expected), result.output)
        self.assertIn("aa", result.flags, result.output)
        if ttl is not None:
            self.assertEqual([r.ttl for r in result.answer], [ttl] * len(expected), result.output)
        return result

    def assertNoName(self, name: str) -> None:
        result = self.served(name, "ANY")
        self.assertEqual(result.status, "NXDOMAIN", result.output or result.error)

    # -- unsigned updates by source address

    def test_unsigned_from_allowed_source(self) -> None:
        """
        127.0.0.2 adds A and TXT RRs, then deletes one A RR and one RR of
        the zone file's RRset: served at once, one serial per update.
        """
        host = f"host1.{ORIGIN}"
        serial = self.serial()
        self.assertGreaterEqual(serial, FILE_SERIAL)
        self.update(
            [
                f"update add {host} 300 A 192.0.2.11",
                f"update add {host} 300 A 192.0.2.12",
                f'update add {host} 600 TXT "hello from nsupdate"',
            ],
            local=ALLOWED_SOURCE,
        )
        self.assertEqual(self.serial(), serial + 1)
        self.assertServes(host, "A", ["192.0.2.11", "192.0.2.12"], ttl=300)
        self.assertServes(host, "TXT", ['"hello from nsupdate"'], ttl=600)

        self.update([f"update delete {host} A 192.0.2.11"], local=ALLOWED_SOURCE)
        self.assertEqual(self.serial(), serial + 2)
        self.assertServes(host, "A", ["192.0.2.12"])
        self.assertServes(host, "TXT", ['"hello from nsupdate"'])

        # One RR of the file's RRset pool A.
        self.assertServes(f"pool.{ORIGIN}", "A", ["192.0.2.90", "192.0.2.91"])
        self.update([f"update delete pool.{ORIGIN} A 192.0.2.90"], local=ALLOWED_SOURCE, tcp=True)
        self.assertEqual(self.serial(), serial + 3)
        self.assertServes(f"pool.{ORIGIN}", "A", ["192.0.2.91"])

        # Deleting what is not there changes nothing: no new serial.
        self.update([f"update delete {host} A 192.0.2.99"], local=ALLOWED_SOURCE)
        self.assertEqual(self.serial(), serial + 3)
        self.assertServes(host, "A", ["192.0.2.12"])

    def test_unsigned_from_other_source_refused(self) -> None:
        """127.0.0.3 is not in allow_update: REFUSED (over UDP and TCP), nothing changes."""
        serial = self.serial()
        for tcp in (False, True):
            self.refused(
                [f"update add intruder.{ORIGIN} 300 A 192.0.2.66", f"update delete www.{ORIGIN} A"],
                "REFUSED",
                local=OTHER_SOURCE,
                tcp=tcp,
            )
        # 127.0.0.1 (nsupdate's default source here) is not allowed either.
        self.refused([f"update add intruder.{ORIGIN} 300 A 192.0.2.66"], "REFUSED")
        self.assertEqual(self.serial(), serial)
        self.assertNoName(f"intruder.{ORIGIN}")
        self.assertServes(f"www.{ORIGIN}", "A", ["192.0.2.80"])

    # -- signed updates with the zone's keys

    def test_zone_key_udp_and_tcp(self) -> None:
        """
        zone-key (from 127.0.0.1, not an allowed source) over UDP and over
        TCP: accepted, answers signed; it may change any type, a file's
        RRset too.
        """
        serial = self.serial()
        self.update([f"update add keyed.{ORIGIN} 120 A 192.0.2.21"], key=ZONE_KEY)
        self.assertEqual(self.serial(), serial + 1)
        self.assertServes(f"keyed.{ORIGIN}", "A", ["192.0.2.21"], ttl=120)

        self.update(
            [f"update add keyed.{ORIGIN} 120 AAAA 2001:db8::21", f"update delete old.{ORIGIN} TXT"],
            key=ZONE_KEY,
            tcp=True,
        )
        self.assertEqual(self.serial(), serial + 2)
        self.assertServes(f"keyed.{ORIGIN}", "AAAA", ["2001:db8::21"])
        self.assertServes(f"keyed.{ORIGIN}", "A", ["192.0.2.21"])
        self.assertServes(f"old.{ORIGIN}", "TXT", [])
        self.assertServes(f"old.{ORIGIN}", "A", ["192.0.2.99"])

    def test_limited_key_inside_and_outside(self) -> None:
        """
        office-key: A and TXT below office.example.org are accepted; another
        name, the name office.example.org itself, or another type: REFUSED,
        signed, and nothing of the message is applied.
        """
        serial = self.serial()
        pc = f"pc1.office.{ORIGIN}"
        self.update([f"update add {pc} 300 A 192.0.2.41", f'update add {pc} 300 TXT "desk 1"'], key=OFFICE_KEY)
        self.assertEqual(self.serial(), serial + 1)
        self.assertServes(pc, "A", ["192.0.2.41"])
        self.assertServes(pc, "TXT", ['"desk 1"'])

        outside = [
            [f"update add pc1.{ORIGIN} 300 A 192.0.2.42"],
            [f"update add office.{ORIGIN} 300 A 192.0.2.42"],
            [f"update add {pc} 300 AAAA 2001:db8::41"],
            # one allowed and one forbidden change: the whole message is refused
            [
                f"update add pc2.office.{ORIGIN} 300 A 192.0.2.43",
                f"update add pc2.office.{ORIGIN} 300 AAAA 2001:db8::43",
            ],
            [f"update delete {pc}"],
        ]
        for tcp, commands in zip((False, True, False, True, False), outside):
            self.refused(commands, "REFUSED", key=OFFICE_KEY, tcp=tcp)
        self.assertEqual(self.serial(), serial + 1)
        self.assertNoName(f"pc1.{ORIGIN}")
        self.assertNoName(f"office.{ORIGIN}")
        self.assertNoName(f"pc2.office.{ORIGIN}")
        self.assertServes(pc, "AAAA", [])
        self.assertServes(pc, "A", ["192.0.2.41"])

    def test_wrong_secret(self) -> None:
        """A zone key's name with a wrong secret: NOTAUTH/BADSIG (unsigned), nsupdate fails, nothing changes."""
        serial = self.serial()
        for tcp in (False, True):
            rc, output = nsupdate_zone(
                self.server.port,
                [f"update add forged.{ORIGIN} 300 A 192.0.2.66", f"update delete www.{ORIGIN} A"],
                key=TSIGKey(ZONE_KEY.algorithm, ZONE_KEY.name, WRONG_SECRET),
                tcp=tcp,
            )
            self.assertNotEqual(rc, 0, output)
            reply = reply_part(output)
            self.assertIn("status: NOTAUTH", reply, output)
            self.assertIn("BADSIG", reply, output)
        self.assertEqual(self.serial(), serial)
        self.assertNoName(f"forged.{ORIGIN}")
        self.assertServes(f"www.{ORIGIN}", "A", ["192.0.2.80"])

    # -- prerequisites

    def test_prerequisites_gate_the_update(self) -> None:
        """
        prereq yxrrset/nxrrset that hold: the delete-then-add replaces the
        RRset; the same prerequisites no longer holding: YXRRSET/NXRRSET,
        nothing changes.
        """
        name = f"pre.{ORIGIN}"
        serial = self.serial()
        self.update([f"prereq nxrrset {name} A", f"update add {name} 300 A 192.0.2.30"], local=ALLOWED_SOURCE)
        self.assertEqual(self.serial(), serial + 1)
        self.assertServes(name, "A", ["192.0.2.30"])

        replace = [f"update delete {name} A", f"update add {name} 300 A 192.0.2.31"]
        self.update(
            [f"prereq yxrrset {name} A 192.0.2.30", f"prereq nxrrset {name} AAAA", *replace],
            key=ZONE_KEY,
        )
        self.assertEqual(self.serial(), serial + 2)
        self.assertServes(name, "A", ["192.0.2.31"])

        # The same message again: its value-dependent prerequisite fails.
        self.refused(
            [f"prereq yxrrset {name} A 192.0.2.30", f"prereq nxrrset {name} AAAA", *replace],
            "NXRRSET",
            key=ZONE_KEY,
        )
        # The A RRset exists now.
        self.refused(
            [f"prereq nxrrset {name} A", f"update add {name} 300 A 192.0.2.32"], "YXRRSET", local=ALLOWED_SOURCE
        )
        # No RRset at all at a missing name.
        missing = f"missing.{ORIGIN}"
        self.refused(
            [f"prereq yxrrset {missing} A", f"update add {missing} 300 A 192.0.2.33"],
            "NXRRSET",
            local=ALLOWED_SOURCE,
            tcp=True,
        )
        self.assertEqual(self.serial(), serial + 2)
        self.assertServes(name, "A", ["192.0.2.31"])
        self.assertNoName(missing)

    # -- what updates may not change

    def test_users_name_and_apex_records(self) -> None:
        """
        alice's name alice.example.org: REFUSED, even with zone-key. Adding
        an apex NS or SOA: REFUSED. Deleting the apex NS: ignored (NOERROR,
        no new serial).
        """
        serial = self.serial()
        soa = dig(self.server.port, ORIGIN, "SOA").data("SOA")
        self.refused([f"update add alice.{ORIGIN} 300 A 192.0.2.66"], "REFUSED", local=ALLOWED_SOURCE)
        self.refused([f'update add alice.{ORIGIN} 300 TXT "not hers"'], "REFUSED", key=ZONE_KEY)
        self.refused([f"update add {ORIGIN} 300 NS ns2.{ORIGIN}"], "REFUSED", local=ALLOWED_SOURCE)
        self.refused(
            [f"update add {ORIGIN} 300 SOA ns1.{ORIGIN}. hostmaster.{ORIGIN}. {serial + 100} 60 60 60 60"],
            "REFUSED",
            key=ZONE_KEY,
        )
        self.update([f"update delete {ORIGIN} NS"], local=ALLOWED_SOURCE)
        self.assertEqual(self.serial(), serial)
        self.assertEqual(dig(self.server.port, ORIGIN, "SOA").data("SOA"), soa)
        self.assertServes(ORIGIN, "NS", [f"ns1.{ORIGIN}."])
        self.assertServes(f"alice.{ORIGIN}", "A", ["198.51.100.7"])
        self.assertServes(f"alice.{ORIGIN}", "TXT", [])

    def test_cname_beside_other_data_ignored(self) -> None:
        """
        A CNAME at a name with an A, or an A at a name with a CNAME: ignored
        (RFC 2136 3.4.2.2), NOERROR, no new serial.
        """
        serial = self.serial()
        self.update([f"update add www.{ORIGIN} 300 CNAME ns1.{ORIGIN}."], local=ALLOWED_SOURCE)
        self.assertEqual(self.serial(), serial)
        self.assertServes(f"www.{ORIGIN}", "A", ["192.0.2.80"])
        self.assertServes(f"www.{ORIGIN}", "CNAME", [])

        alias = f"alias.{ORIGIN}"
        self.update([f"update add {alias} 300 CNAME www.{ORIGIN}."], local=ALLOWED_SOURCE)
        self.assertEqual(self.serial(), serial + 1)
        self.assertServes(alias, "CNAME", [f"www.{ORIGIN}."])
        self.update([f"update add {alias} 300 A 192.0.2.66"], local=ALLOWED_SOURCE)
        self.assertEqual(self.serial(), serial + 1)
        self.assertServes(alias, "CNAME", [f"www.{ORIGIN}."])


class HostZoneRestartTests(ServerTestCase):
    """A restart of twistd on the same configuration and SQLite store."""

    tools = (("nsupdate", "bind9-dnsutils"), ("dig", "bind9-dnsutils"))

    def test_restart_keeps_every_change(self) -> None:
        """
        After adds, RR and RRset deletes (of the file's records too), the
        restarted server transfers the same zone (every record and the
        serial), and an IXFR from before the restart still answers
        incrementally; the next update takes the next serial.
        """
        server = self.make_server(dns={"zones": [zone_settings()], "transfer": {"allow": ["127.0.0.1"]}})
        write_zone(server)
        server.start()
        port = server.port
        self.assertEqual(zone_serial(port), FILE_SERIAL)
        updates: list[tuple[dict[str, Any], list[str]]] = [
            (
                {"local": ALLOWED_SOURCE},
                [
                    f"update add host1.{ORIGIN} 300 A 192.0.2.11",
                    f"update add host1.{ORIGIN} 300 A 192.0.2.12",
                    f'update add host1.{ORIGIN} 600 TXT "kept"',
                ],
            ),
            ({"key": ZONE_KEY}, [f"update delete pool.{ORIGIN} A 192.0.2.90", f"update delete old.{ORIGIN}"]),
            ({"key": OFFICE_KEY, "tcp": True}, [f"update add pc1.office.{ORIGIN} 60 A 192.0.2.41"]),
            ({"local": ALLOWED_SOURCE}, [f"update delete host1.{ORIGIN} A 192.0.2.11"]),
        ]
        for options, commands in updates:
            rc, output = nsupdate_zone(port, commands, **options)
            self.assertEqual(rc, 0, output)
            self.assertIn("status: NOERROR", reply_part(output))
        serial = zone_serial(port)
        self.assertEqual(serial, FILE_SERIAL + len(updates))
        before = dig(port, ORIGIN, "AXFR")
        records = transfer_records(before)
        expected = {
            f"host1.{ORIGIN}. 300 IN A 192.0.2.12",
            f'host1.{ORIGIN}. 600 IN TXT "kept"',
            f"pool.{ORIGIN}. 300 IN A 192.0.2.91",
            f"pc1.office.{ORIGIN}. 60 IN A 192.0.2.41",
            f"www.{ORIGIN}. 300 IN A 192.0.2.80",
        }
        self.assertEqual(expected - set(records), set(), before.output)
        for gone in (f"old.{ORIGIN}.", f"host1.{ORIGIN}. 300 IN A 192.0.2.11", f"pool.{ORIGIN}. 300 IN A 192.0.2.90"):
            self.assertFalse([r for r in records if r.startswith(gone)], before.output)

        server.stop()
        server.start()
        self.assertEqual(zone_serial(port), serial)
        after = dig(port, ORIGIN, "AXFR")
        self.assertEqual(sorted(transfer_records(after)), sorted(records), after.output)
        self.assertEqual(dig(port, f"host1.{ORIGIN}", "A").data("A"), ["192.0.2.12"])
        self.assertEqual(dig(port, f"old.{ORIGIN}", "A").status, "NXDOMAIN")

        # The journal survived: IXFR from two serials back is incremental
        # (starts with the current SOA, then the SOA it starts from).
        ixfr = dig(port, ORIGIN, f"IXFR={serial - 2}")
        soas = [r.split()[6] for r in transfer_records(ixfr) if r.split()[3:4] == ["SOA"]]
        self.assertEqual(
            soas,
            [str(serial), str(serial - 2), str(serial - 1), str(serial - 1), str(serial), str(serial)],
            ixfr.output,
        )
        self.assertIn(f"host1.{ORIGIN}. 300 IN A 192.0.2.11", transfer_records(ixfr), ixfr.output)

        rc, output = nsupdate_zone(port, [f"update add after.{ORIGIN} 300 A 192.0.2.50"], local=ALLOWED_SOURCE)
        self.assertEqual(rc, 0, output)
        self.assertEqual(zone_serial(port), serial + 1)
        self.assertEqual(dig(port, f"after.{ORIGIN}", "A").data("A"), ["192.0.2.50"])


class HostZoneNamed(SecondaryNamed):
    """L{SecondaryNamed} for example.org instead of the users' zone."""

    zone = ORIGIN


class HostZoneSecondaryTests(WithSecondary):
    """Our server as the primary of example.org for a real BIND secondary."""

    def assertFollows(self, named: SecondaryNamed, serial: int, name: str, rtype: str, expected: list[str]) -> None:
        """Within FOLLOW_LIMIT the secondary serves C{serial} and C{name} C{rtype} as C{expected}."""

        def caught_up() -> bool:
            if soa_serial(dig(self.secondary_port, ORIGIN, "SOA")) != serial:
                return False
            return sorted(dig(self.secondary_port, name, rtype).data(rtype)) == sorted(expected)

        ok, waited = wait_for(caught_up, FOLLOW_LIMIT, 0.05)
        self.assertTrue(
            ok,
            f"secondary not at serial {serial} with {name} {rtype} {expected} after {waited:.1f} s: "
            f"SOA {dig(self.secondary_port, ORIGIN, 'SOA').data('SOA')}, "
            f"{name} {dig(self.secondary_port, name, rtype).data(rtype)}\n" + self.transfer_lines(named),
        )
        self.assertIn("aa", dig(self.secondary_port, name, rtype).flags)

    def test_secondary_follows_by_notify_and_ixfr(self) -> None:
        """
        BIND loads example.org by AXFR, then follows two updates (unsigned,
        then signed; an add and an RR delete) each by our NOTIFY and an
        incremental IXFR, never a second AXFR. The zone's refresh is 3600 s,
        so only NOTIFY makes BIND ask within FOLLOW_LIMIT.
        """
        server = self.make_server(
            avoid_ports=[self.secondary_port],
            dns={
                "zones": [zone_settings()],
                "transfer": {"allow": ["127.0.0.1"]},
                "notify": {"targets": [f"127.0.0.1:{self.secondary_port}"], "retry": 0.5, "retries": 5},
            },
        )
        write_zone(server)
        server.start()
        serial0 = zone_serial(server.port)

        folder = os.path.join(self.named_root, "named")
        os.makedirs(folder)
        named = HostZoneNamed(folder, self.secondary_port, server.port)
        self.addCleanup(named.stop)
        named.start()
        self.assertFollows(named, serial0, f"pool.{ORIGIN}", "A", ["192.0.2.90", "192.0.2.91"])
        log = named.read_log()
        self.assertIn("requesting AXFR of initial version", log)
        offset = len(log)

        steps: list[tuple[dict[str, Any], list[str], str, str, list[str]]] = [
            (
                {"local": ALLOWED_SOURCE},
                [f"update add new.{ORIGIN} 300 A 192.0.2.60", f'update add new.{ORIGIN} 300 TXT "via ixfr"'],
                f"new.{ORIGIN}",
                "A",
                ["192.0.2.60"],
            ),
            ({"key": ZONE_KEY}, [f"update delete pool.{ORIGIN} A 192.0.2.90"], f"pool.{ORIGIN}", "A", ["192.0.2.91"]),
        ]
        serial = serial0
        for options, commands, name, rtype, expected in steps:
            rc, output = nsupdate_zone(server.port, commands, **options)
            self.assertEqual(rc, 0, output)
            self.assertIn("status: NOERROR", reply_part(output))
            self.assertEqual(zone_serial(server.port), serial + 1)
            serial += 1
            self.assertFollows(named, serial, name, rtype, expected)
            self.assertRegex(
                named.read_log(), rf"zone {re.escape(ORIGIN)}/IN: notify from 127\.0\.0\.1#\d+: serial {serial}\b"
            )
        self.assertEqual(dig(self.secondary_port, f"new.{ORIGIN}", "TXT").data("TXT"), ['"via ixfr"'])

        log = named.read_log()[offset:]
        completed = re.findall(
            rf"transfer of '{re.escape(ORIGIN)}/IN' from 127\.0\.0\.1#{server.port}: Transfer completed", log
        )
        self.assertGreaterEqual(len(completed), 2, self.transfer_lines(named))
        self.assertGreaterEqual(log.count("requesting IXFR for serial"), len(completed), log)
        self.assertEqual(log.count("got incremental response"), len(completed), self.transfer_lines(named))
        self.assertNotIn("got nonincremental response", log)
        self.assertNotIn("requesting AXFR", log)
