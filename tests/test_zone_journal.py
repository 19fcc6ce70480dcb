"""
L{dyndns_plugin.replication.journal}: serial arithmetic, a zone's content, its
differences and digest, the serial chosen at start, and the IXFR journal.
Pure unit tests on a L{Registry} filled by hand (no service, no I/O).
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import dns.rdata
import dns.serial
from twisted.names import dns as tdns
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.dns.zones import StaticZone
from dyndns_plugin.model import HostState, User
from dyndns_plugin.registry import Registry
from dyndns_plugin.replication.journal import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_SOA,
    ZoneState,
    next_serial,
    rr_hash,
    serial_newer,
)
from dyndns_plugin.store import JournalStep, ZoneHistory
from tests.dns_helpers import example_suffix_zone

SUFFIX = "dyn.example.com"
DEFAULT_TTL = 30
TYPE_MX = 15


def make_suffix_zone(serial: int = 1000) -> StaticZone:
    return example_suffix_zone(serial, expire=1209600)


def make_host_zone(serial: int = 2000) -> StaticZone:
    """example.org: A and MX at www, A and AAAA at mail, a delegation at sub."""
    return StaticZone(
        "example.org",
        {
            b"example.org": [
                tdns.Record_SOA(
                    mname="ns1.example.org",
                    rname="hostmaster.example.org",
                    serial=serial,
                    refresh=7200,
                    retry=900,
                    expire=1209600,
                    minimum=300,
                    ttl=600,
                ),
                tdns.Record_NS("ns1.example.org", ttl=3600),
                tdns.Record_A("192.0.2.10", ttl=3600),
            ],
            b"www.example.org": [
                tdns.Record_A("192.0.2.80", ttl=3600),
                tdns.Record_MX(10, "mail.example.org", ttl=3600),
            ],
            b"mail.example.org": [tdns.Record_A("192.0.2.25", ttl=1800), tdns.Record_AAAA("2001:db8::25", ttl=1800)],
            b"sub.example.org": [tdns.Record_NS("ns.sub.example.org", ttl=3600)],
            b"ns.sub.example.org": [tdns.Record_A("192.0.2.77", ttl=3600)],
        },
    )


def registry_with(*users: tuple[User, HostState | None]) -> Registry:
    registry = Registry(SUFFIX, DEFAULT_TTL)
    for user, state in users:
        registry.put_user(user)
        if state is not None:
            registry.set_state(state)
    return registry


def loaded(
    zone: StaticZone, registry: Registry, dynamic: bool = True, keep: int = 10, history: ZoneHistory | None = None
) -> ZoneState:
    state = ZoneState(zone, dynamic, keep)
    state.load(registry, history)
    return state


def a(address: str, ttl: int, name: str) -> tuple[str, int, int, bytes]:
    ip = ipaddress.ip_address(address)
    return (name, TYPE_A if ip.version == 4 else TYPE_AAAA, ttl, ip.packed)


class SerialTests(SynchronousTestCase):
    def test_next_serial(self) -> None:
        """Plus one modulo 2**32, and 0 is skipped."""
        self.assertEqual(next_serial(1), 2)
        self.assertEqual(next_serial(2**31 - 1), 2**31)
        self.assertEqual(next_serial(2**32 - 2), 2**32 - 1)
        self.assertEqual(next_serial(2**32 - 1), 1)
        self.assertEqual(next_serial(0), 1)

    def test_serial_newer_examples(self) -> None:
        """RFC 1982 comparisons, across the wrap-around; equal is not newer."""
        self.assertTrue(serial_newer(1, 0))
        self.assertFalse(serial_newer(0, 1))
        self.assertFalse(serial_newer(7, 7))
        self.assertTrue(serial_newer(0, 2**32 - 1))
        self.assertTrue(serial_newer(5, 2**32 - 10))
        self.assertFalse(serial_newer(2**32 - 10, 5))
        self.assertTrue(serial_newer(2**31 - 1, 0))
        self.assertFalse(serial_newer(0, 2**31 - 1))
        # exactly half the space apart: undefined, so neither is newer
        self.assertFalse(serial_newer(2**31, 0))
        self.assertFalse(serial_newer(0, 2**31))

    def test_serial_newer_matches_dnspython(self) -> None:
        """serial_newer agrees with dnspython's RFC 1982 Serial on many pairs."""
        rng = random.Random(1982)
        edges = [0, 1, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 2, 2**32 - 1]
        pairs = [(x, y) for x in edges for y in edges]
        pairs += [(rng.randrange(2**32), rng.randrange(2**32)) for _ in range(2000)]
        base = rng.randrange(2**32)
        pairs += [(base, (base + d) % 2**32) for d in (1, -1, 2**31 - 1, -(2**31 - 1))]
        for x, y in pairs:
            self.assertEqual(serial_newer(x, y), dns.serial.Serial(x) > dns.serial.Serial(y), (x, y))

    def test_next_is_newer(self) -> None:
        """The next serial is always newer, including across the wrap."""
        for serial in (1, 1000, 2**31, 2**32 - 1, 2**32 - 2):
            self.assertTrue(serial_newer(next_serial(serial), serial), serial)


class ContentTests(SynchronousTestCase):
    """What a zone holds for the registry."""

    def test_suffix_zone_content(self) -> None:
        """
        Static NS and glue, then the users' names in the zone: offline users
        their offline addresses at the default TTL, never-updated, offline
        without an address, and disabled users nothing; names outside the
        zone are left out. The apex comes first.
        """
        registry = registry_with(
            (
                User("alice", hostnames=[f"*.alice.{SUFFIX}", "alice.example.net"]),
                HostState("alice", ipv4="203.0.113.5", ipv6="2001:db8::5", ttl=120),
            ),
            (User("carol", offline_ipv4="192.0.2.200"), HostState("carol", ipv4="203.0.113.9", ttl=60, offline=True)),
            (User("dave"), HostState("dave", ipv4="203.0.113.10", offline=True)),
            (User("eve", disabled=True), HostState("eve", ipv4="203.0.113.66")),
            (User("frank"), None),
        )
        zone = loaded(make_suffix_zone(), registry)
        records = list(zone.all_records())
        self.assertEqual(records[0][0], SUFFIX, "the apex first")
        self.assertEqual(len(records), len(set(records)))
        self.assertEqual(
            set(records),
            {
                (SUFFIX, 2, 3600, dns.rdata.from_text("IN", "NS", f"ns1.{SUFFIX}.").to_wire()),
                a("192.0.2.53", 3600, f"ns1.{SUFFIX}"),
                a("203.0.113.5", 120, f"alice.{SUFFIX}"),
                a("2001:db8::5", 120, f"alice.{SUFFIX}"),
                a("203.0.113.5", 120, f"*.alice.{SUFFIX}"),
                a("2001:db8::5", 120, f"*.alice.{SUFFIX}"),
                a("192.0.2.200", DEFAULT_TTL, f"carol.{SUFFIX}"),
            },
        )
        self.assertEqual(zone.serial, 1000)

    def test_host_zone_merging(self) -> None:
        """
        In a host zone a user's A replaces the file's A at that name while
        the MX stays; a user with only an A leaves the file's AAAA; names at
        or below a delegation are not the zone's.
        """
        registry = registry_with(
            (
                User("bob", hostnames=["www.example.org", "x.sub.example.org", "sub.example.org"]),
                HostState("bob", ipv4="198.51.100.7", ttl=60),
            ),
            (User("carl", hostnames=["mail.example.org"]), HostState("carl", ipv4="198.51.100.8", ttl=60)),
        )
        zone = loaded(make_host_zone(), registry)
        by_name: dict[str, set] = {}
        for record in zone.all_records():
            by_name.setdefault(record[0], set()).add(record[1:3])
        self.assertEqual(by_name["www.example.org"], {(TYPE_A, 60), (TYPE_MX, 3600)})
        self.assertEqual(by_name["mail.example.org"], {(TYPE_A, 60), (TYPE_AAAA, 1800)})
        self.assertEqual(by_name["sub.example.org"], {(2, 3600)})
        self.assertNotIn("x.sub.example.org", by_name)
        self.assertFalse(zone.contains("x.sub.example.org"))
        self.assertFalse(zone.contains("sub.example.org"))
        self.assertTrue(zone.contains("subway.example.org"))
        self.assertTrue(zone.contains("a.b.example.org"))
        self.assertFalse(zone.contains("example.net"))
        self.assertFalse(zone.contains("badexample.org"))
        # without users' names in it, the zone is the file
        static = loaded(make_host_zone(), registry, dynamic=False)
        self.assertFalse(static.contains("www.example.org"))
        self.assertIn(a("192.0.2.80", 3600, "www.example.org"), set(static.all_records()))

    def test_soa_rr(self) -> None:
        """soa_rr gives the zone's SOA, with another serial if asked; nothing else changes."""
        zone = loaded(make_suffix_zone(4242), registry_with())
        name, rdtype, ttl, rdata = zone.soa_rr()
        self.assertEqual((name, rdtype, ttl), (SUFFIX, TYPE_SOA, 3600))
        soa = dns.rdata.from_wire("IN", "SOA", rdata, 0, len(rdata))
        self.assertEqual(soa.to_text(), f"ns1.{SUFFIX}. hostmaster.{SUFFIX}. 4242 3600 600 1209600 60")
        other = zone.soa_rr(2**32 - 1)[3]
        soa = dns.rdata.from_wire("IN", "SOA", other, 0, len(other))
        self.assertEqual(soa.to_text(), f"ns1.{SUFFIX}. hostmaster.{SUFFIX}. 4294967295 3600 600 1209600 60")
        self.assertEqual(zone.serial, 4242)


class ChangeTests(SynchronousTestCase):
    """diff, apply and the digest against a zone built from scratch."""

    def check_step(self, zone: ZoneState, registry: Registry, names: set[str], make) -> None:
        """
        Publish the registry's C{names} in C{zone} as one step, and compare
        with a zone loaded from scratch: the same records, the same digest,
        and the step's deletions and additions are exactly the difference.
        """
        before = set(zone.all_records())
        deleted, added, answers = zone.diff(names, registry)
        serial = zone.serial
        step = JournalStep(serial, next_serial(serial), tuple(deleted), tuple(added))
        expected_digest = zone.digest_after(deleted, added)
        zone.apply(step, answers)
        fresh = loaded(make(), registry, keep=0)
        after = list(zone.all_records())
        self.assertEqual(len(after), len(set(after)), "a record twice")
        self.assertEqual(set(after), set(fresh.all_records()))
        self.assertEqual(zone.digest_text, fresh.digest_text)
        self.assertEqual(zone.digest_text, expected_digest)
        self.assertEqual(set(deleted), before - set(after))
        self.assertEqual(set(added), set(after) - before)
        self.assertEqual(len(deleted), len(set(deleted)))
        self.assertEqual(len(added), len(set(added)))
        self.assertEqual(zone.serial, next_serial(serial))
        self.assertEqual(zone.authority.soa[1].serial, zone.serial, "the served SOA follows")
        if deleted or added:
            self.assertEqual(zone.steps[-1], step)

    def test_random_changes(self) -> None:
        """
        Hundreds of random changes (addresses, TTLs, offline, disabled,
        new names, removals) to users of both zones: after each, diff and
        apply agree with the zone built from scratch.
        """
        rng = random.Random(6)
        for make in (make_suffix_zone, make_host_zone):
            registry = registry_with()
            zone = loaded(make(2**32 - 50), registry, keep=1000)
            users: dict[str, User] = {}
            for _round in range(300):
                uid = f"u{rng.randrange(12)}"
                i = int(uid[1:])
                old = users.get(uid)
                choice = rng.random()
                if old is None or choice < 0.15:
                    pool = [
                        f"*.w{i}.example.org",
                        f"h{i}.example.org",
                        f"x{i}.sub.example.org",
                        f"*.{uid}.{SUFFIX}",
                        f"www.{uid}.{SUFFIX}",
                        f"{uid}.example.net",
                    ]
                    if i == 0:
                        pool.append("www.example.org")
                    if i == 1:
                        pool.append("mail.example.org")
                    user = User(
                        uid,
                        hostnames=rng.sample(pool, rng.randrange(len(pool) + 1)),
                        offline_ipv4=rng.choice([None, f"192.0.2.{i + 100}"]),
                        offline_ipv6=rng.choice([None, f"2001:db8::{i + 100:x}"]),
                        disabled=rng.random() < 0.1,
                    )
                    registry.put_user(user)
                    users[uid] = user
                elif choice < 0.25:
                    registry.remove_user(uid)
                    del users[uid]
                elif choice < 0.35:
                    user = User(
                        uid,
                        hostnames=old.hostnames,
                        offline_ipv4=old.offline_ipv4,
                        offline_ipv6=old.offline_ipv6,
                        disabled=not old.disabled,
                    )
                    registry.put_user(user)
                    users[uid] = user
                else:
                    registry.set_state(
                        HostState(
                            uid,
                            ipv4=rng.choice([None, f"198.51.100.{rng.randrange(1, 4)}"]),
                            ipv6=rng.choice([None, f"2001:db8:1::{rng.randrange(1, 4)}"]),
                            ttl=rng.choice([None, 60, 120]),
                            offline=rng.random() < 0.2,
                        )
                    )
                names = {
                    f"{uid}.{SUFFIX}",
                    *(old.hostnames if old else ()),
                    *(users[uid].hostnames if uid in users else ()),
                }
                self.check_step(zone, registry, names, lambda: make(2**32 - 50))  # noqa: B023 (called at once)
            self.assertGreater(len(zone.steps), 100, "the changes must mostly change the zone")
            self.assertTrue(serial_newer(zone.serial, 2**32 - 50))
            self.assertLess(zone.serial, 2**32 - 50, "the serial wrapped around")

    def test_no_change_no_step(self) -> None:
        """A name whose answer did not change gives no difference."""
        registry = registry_with((User("alice"), HostState("alice", ipv4="192.0.2.1", ttl=60)))
        zone = loaded(make_suffix_zone(), registry)
        self.assertEqual(zone.diff([f"alice.{SUFFIX}", f"nobody.{SUFFIX}"], registry), ([], [], {}))
        registry.set_state(HostState("alice", ipv4="192.0.2.1", ttl=60, method="http"))
        deleted, added, sources = zone.diff([f"alice.{SUFFIX}"], registry)
        self.assertEqual((deleted, added), ([], []))
        # The newer state is kept in place of the old, without a journal step.
        self.assertEqual(sources, {f"alice.{SUFFIX}": registry.states["alice"]})

    def test_ttl_change(self) -> None:
        """A TTL change deletes the records with the old TTL and adds them with the new."""
        registry = registry_with((User("alice"), HostState("alice", ipv4="192.0.2.1", ttl=60)))
        zone = loaded(make_suffix_zone(), registry)
        registry.set_state(HostState("alice", ipv4="192.0.2.1", ttl=90))
        deleted, added, _ = zone.diff([f"alice.{SUFFIX}"], registry)
        self.assertEqual(
            (deleted, added), ([a("192.0.2.1", 60, f"alice.{SUFFIX}")], [a("192.0.2.1", 90, f"alice.{SUFFIX}")])
        )

    def test_static_back_when_offline(self) -> None:
        """A user of a name with a file A going offline without an address: the file's A is back."""
        registry = registry_with(
            (User("bob", hostnames=["www.example.org"]), HostState("bob", ipv4="198.51.100.7", ttl=60))
        )
        zone = loaded(make_host_zone(), registry)
        registry.set_state(HostState("bob", ipv4="198.51.100.7", ttl=60, offline=True))
        deleted, added, answers = zone.diff(["www.example.org"], registry)
        self.assertEqual(deleted, [a("198.51.100.7", 60, "www.example.org")])
        self.assertEqual(added, [a("192.0.2.80", 3600, "www.example.org")])
        self.assertEqual(answers, {"www.example.org": None})


class LoadTests(SynchronousTestCase):
    """The serial chosen at start from the stored history and the file."""

    def setUp(self) -> None:
        self.registry = registry_with(
            (User("alice"), HostState("alice", ipv4="192.0.2.1", ttl=60)),
        )
        self.digest = loaded(make_suffix_zone(), self.registry).digest_text
        self.steps = (
            JournalStep(1232, 1233, (), (a("192.0.2.9", 60, f"bob.{SUFFIX}"),)),
            JournalStep(1233, 1234, (a("192.0.2.9", 60, f"bob.{SUFFIX}"),), ()),
        )

    def load(self, file_serial: int, history: ZoneHistory | None) -> tuple[ZoneState, bool]:
        zone = ZoneState(make_suffix_zone(file_serial), True, 10)
        save = zone.load(self.registry, history)
        self.assertEqual(zone.authority.soa[1].serial, zone.serial, "the served SOA has the serial")
        return zone, save

    def test_no_history(self) -> None:
        """Never published: the file's serial, an empty journal, to be saved."""
        zone, save = self.load(1000, None)
        self.assertEqual((zone.serial, list(zone.steps), save), (1000, [], True))

    def test_same_content(self) -> None:
        """The content it was published with: the stored serial and journal, nothing to save."""
        zone, save = self.load(1000, ZoneHistory(1234, self.digest, self.steps))
        self.assertEqual((zone.serial, tuple(zone.steps), save), (1234, self.steps, False))
        self.assertEqual(zone.steps_since(1232), list(self.steps))

    def test_changed_content(self) -> None:
        """Other content (changed while we were down): the next serial, the journal dropped."""
        zone, save = self.load(1000, ZoneHistory(1234, "0" * 16, self.steps))
        self.assertEqual((zone.serial, list(zone.steps), save), (1235, [], True))
        self.assertIsNone(zone.steps_since(1233))

    def test_file_serial_newer(self) -> None:
        """A file serial newer than the stored one: the serial after the file's, journal dropped."""
        for digest in (self.digest, "0" * 16):
            zone, save = self.load(5000, ZoneHistory(1234, digest, self.steps))
            self.assertEqual((zone.serial, list(zone.steps), save), (5001, [], True), digest)

    def test_wrapped_serials(self) -> None:
        """
        RFC 1982 decides "newer": a stored serial that wrapped past 0 is newer
        than a file serial near 2**32; a changed zone at 2**32 - 1 goes to 1.
        """
        zone, save = self.load(2**32 - 100, ZoneHistory(5, self.digest, ()))
        self.assertEqual((zone.serial, save), (5, False))
        zone, save = self.load(2**32 - 100, ZoneHistory(5, "0" * 16, ()))
        self.assertEqual((zone.serial, save), (6, True))
        zone, save = self.load(2**32 - 100, ZoneHistory(2**32 - 1, "0" * 16, ()))
        self.assertEqual((zone.serial, save), (1, True))
        # 1000 is newer than 2**32 - 1 (it lies after the wrap)
        zone, save = self.load(1000, ZoneHistory(2**32 - 1, "0" * 16, ()))
        self.assertEqual((zone.serial, save), (1001, True))
        zone, save = self.load(5, ZoneHistory(2**32 - 100, self.digest, ()))
        self.assertEqual((zone.serial, save), (6, True))

    def test_digest_independent_of_order(self) -> None:
        """The digest depends on the content only, not on the order users were loaded."""
        users = [
            (User(f"u{i}", hostnames=[f"*.u{i}.{SUFFIX}"]), HostState(f"u{i}", ipv4=f"192.0.2.{i + 1}", ttl=60))
            for i in range(20)
        ]
        one = loaded(make_suffix_zone(), registry_with(*users))
        other = loaded(make_suffix_zone(), registry_with(*reversed(users)))
        self.assertEqual(one.digest_text, other.digest_text)
        changed = list(users)
        changed[3] = (changed[3][0], HostState("u3", ipv4="192.0.2.99", ttl=60))
        self.assertNotEqual(loaded(make_suffix_zone(), registry_with(*changed)).digest_text, one.digest_text)
        self.assertRegex(one.digest_text, "^[0-9a-f]{16}$")


class JournalTests(SynchronousTestCase):
    """steps_since and the bound of the journal."""

    def publish(self, zone: ZoneState, registry: Registry, address: str) -> JournalStep:
        registry.set_state(HostState("alice", ipv4=address, ttl=60))
        deleted, added, answers = zone.diff([f"alice.{SUFFIX}"], registry)
        step = JournalStep(zone.serial, next_serial(zone.serial), tuple(deleted), tuple(added))
        zone.apply(step, answers)
        return step

    def test_steps_since(self) -> None:
        """From the current serial nothing, from each journalled serial the steps since, else None."""
        registry = registry_with((User("alice"), HostState("alice", ipv4="192.0.2.1", ttl=60)))
        zone = loaded(make_suffix_zone(2**32 - 2), registry, keep=10)
        steps = [self.publish(zone, registry, f"192.0.2.{n}") for n in (2, 3, 4)]
        self.assertEqual(
            [(s.serial_from, s.serial_to) for s in steps], [(2**32 - 2, 2**32 - 1), (2**32 - 1, 1), (1, 2)]
        )
        self.assertEqual(zone.steps_since(2), [])
        self.assertEqual(zone.steps_since(1), steps[2:])
        self.assertEqual(zone.steps_since(2**32 - 1), steps[1:])
        self.assertEqual(zone.steps_since(2**32 - 2), steps)
        for unknown in (0, 3, 2**32 - 3, 1000):
            self.assertIsNone(zone.steps_since(unknown), unknown)

    def test_bounded(self) -> None:
        """Only the newest C{keep} steps are kept; with 0 none, and IXFR is then always full."""
        registry = registry_with((User("alice"), HostState("alice", ipv4="192.0.2.1", ttl=60)))
        zone = loaded(make_suffix_zone(100), registry, keep=3)
        for n in range(2, 8):
            self.publish(zone, registry, f"192.0.2.{n}")
        self.assertEqual(zone.serial, 106)
        self.assertEqual([s.serial_from for s in zone.steps], [103, 104, 105])
        self.assertIsNone(zone.steps_since(102))
        steps = zone.steps_since(103)
        assert steps is not None
        self.assertEqual(len(steps), 3)
        none = loaded(make_suffix_zone(100), registry, keep=0)
        self.publish(none, registry, "192.0.2.50")
        self.assertEqual((none.serial, list(none.steps)), (101, []))
        self.assertIsNone(none.steps_since(100))
        self.assertEqual(none.steps_since(101), [])


class FusedLoadTests(SynchronousTestCase):
    """ZoneState.load's one-pass fill equals the reference: current_answer per name, digest over all_records."""

    def test_same_as_reference(self) -> None:
        registry = registry_with(
            (User(id="alice", hostnames=("www.example.org", "*.w.example.org", "x.other.net")), None),
            (User(id="bob", hostnames=("mail.example.org", "host.sub.example.org")), None),
            (User(id="carol", offline_ipv4="192.0.2.99", hostnames=("carol.example.org",)), None),
            (User(id="dave", hostnames=("dave.example.org",)), None),
            (User(id="erin", disabled=True, hostnames=("erin.example.org",)), None),
            (User(id="frank", hostnames=("example.org",)), None),
            (User(id="henry", hostnames=("gina.dyn.example.com",)), None),  # another user's main name
            (User(id="gina"), None),
        )
        for state in (
            HostState("alice", ipv4="198.51.100.1", ipv6="2001:db8::1", ttl=60),
            HostState("bob", ipv6="2001:db8::2"),
            HostState("carol", ipv4="198.51.100.3", offline=True),
            HostState("dave", ipv4="198.51.100.4", offline=True),  # offline, no offline IP: nothing
            HostState("erin", ipv4="198.51.100.5"),
            HostState("frank", ipv4="198.51.100.6", ttl=120),
            HostState("henry", ipv4="198.51.100.8"),
            HostState("gina", ipv4="198.51.100.7"),
        ):
            registry.set_state(state)
        for zone, dynamic in ((make_suffix_zone(), True), (make_host_zone(), True), (make_host_zone(), False)):
            zone_state = loaded(zone, registry, dynamic)
            expected: dict[str, Any] = {}
            if dynamic:
                for user_id in registry.users:
                    for name in registry.names_of(user_id):
                        source = zone_state.current_source(registry, name)
                        if source is not None:
                            expected[name] = source
            self.assertEqual(zone_state.dynamic, expected)
            digest = 0
            for rr in zone_state.all_records(expected):
                digest ^= rr_hash(rr)
            self.assertEqual(zone_state.digest, digest)
        self.assertIn("www.example.org", loaded(make_host_zone(), registry).dynamic)
        self.assertIn("example.org", loaded(make_host_zone(), registry).dynamic)  # the apex, a user's name
        self.assertNotIn("host.sub.example.org", loaded(make_host_zone(), registry).dynamic)  # delegated

    def test_main_names_where_the_zone_cuts(self) -> None:
        """
        Users' main names in a suffix zone with a delegation at one of them,
        in the suffix's parent zone, and in a zone whose apex is a main
        name: the same as the reference, name by name.
        """
        registry = registry_with(
            (User(id="alice", hostnames=("www.example.org",)), HostState("alice", ipv4="198.51.100.1")),
            (User(id="bob"), HostState("bob", ipv4="198.51.100.2")),
            (User(id="henry", hostnames=("gina.dyn.example.com",)), HostState("henry", ipv4="198.51.100.8")),
            (User(id="gina"), HostState("gina", ipv4="198.51.100.7")),
        )
        suffix = make_suffix_zone()
        records = dict(suffix.records)
        records[b"bob." + SUFFIX.encode()] = [tdns.Record_NS("ns.bob.example.net", ttl=3600)]
        soa = suffix.soa[1]
        cut = StaticZone(SUFFIX, records)
        parent = StaticZone("example.com", {b"example.com": [soa, tdns.Record_NS("ns1.example.com", ttl=3600)]})
        apex = StaticZone(f"gina.{SUFFIX}", {f"gina.{SUFFIX}".encode(): [soa]})
        for zone in (cut, parent, apex):
            zone_state = loaded(zone, registry)
            expected = {}
            for user_id in registry.users:
                for name in registry.names_of(user_id):
                    source = zone_state.current_source(registry, name)
                    if source is not None:
                        expected[name] = source
            self.assertEqual(zone_state.dynamic, expected, zone.origin)
        self.assertNotIn(f"bob.{SUFFIX}", loaded(cut, registry).dynamic)  # delegated
        self.assertIn(f"alice.{SUFFIX}", loaded(cut, registry).dynamic)
        self.assertEqual(set(loaded(apex, registry).dynamic), {f"gina.{SUFFIX}"})  # held by henry
        self.assertIs(loaded(apex, registry).dynamic[f"gina.{SUFFIX}"], registry.states["henry"])
        self.assertEqual(len(loaded(parent, registry).dynamic), 4)  # the main names; www.example.org is outside
