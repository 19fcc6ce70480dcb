"""
ACME DNS-01 challenge values (L{dyndns_plugin.acme}): the edits, what
the registry serves and the zones publish, the answer cache, expiry, and
RFC 2136 updates of them with users' TSIG keys.
"""

from __future__ import annotations

import attrs
import dns.message
import dns.rcode
import dns.rdatatype
import dns.update
from twisted.internet import defer, task
from twisted.trial import unittest

from dyndns_plugin.acme import (
    ACME_DNS_KEEP,
    MAX_VALUES_PER_NAME,
    AcmeSettings,
    Op,
    TXTEdit,
    TXTValues,
    apply_edits,
    challenge_bases,
    matching_key,
    new_key,
    txt_rdata,
    validate_value,
    value_of_rdata,
)
from dyndns_plugin.dns.fastpath import plain_query_key
from dyndns_plugin.methods import Method
from dyndns_plugin.model import UpdateStatus, User, ValidationError
from dyndns_plugin.replication.journal import TYPE_TXT
from dyndns_plugin.replication.publisher import ZonePublisher
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.memory import MemoryUserStore
from tests.test_dns_fastpath import SUFFIX, Pair, ips, make_query
from tests.test_dns_update import (
    ALICE_SECRET,
    BOB_SECRET,
    NOERROR,
    REFUSED,
    T0,
    ZONE,
    UpdateTestsMixin,
    make_key,
    sign_at,
    update,
)

ALICE = f"alice.{SUFFIX}"
CHALLENGE = f"_acme-challenge.{ALICE}"


class EditTests(unittest.SynchronousTestCase):
    """L{apply_edits}: the values a user holds after each kind of edit."""

    def test_add_remove_clear(self) -> None:
        values = apply_edits((), [TXTEdit(Op.ADD, "a.x", "v1"), TXTEdit(Op.ADD, "b.x", "v2")], 100.0, 60.0)
        self.assertEqual(values, (("a.x", "v1", 160.0), ("b.x", "v2", 160.0)))
        values = apply_edits(values, [TXTEdit(Op.REMOVE, "a.x", "v1")], 110.0, 60.0)
        self.assertEqual(values, (("b.x", "v2", 160.0),))
        self.assertEqual(apply_edits(values, [TXTEdit(Op.CLEAR, "b.x")], 110.0, 60.0), ())

    def test_adding_again_renews(self) -> None:
        values = apply_edits((), [TXTEdit(Op.ADD, "a.x", "v1")], 100.0, 60.0)
        values = apply_edits(values, [TXTEdit(Op.ADD, "a.x", "v1")], 130.0, 60.0)
        self.assertEqual(values, (("a.x", "v1", 190.0),))

    def test_too_many(self) -> None:
        edits = [TXTEdit(Op.ADD, "a.x", f"v{i}") for i in range(MAX_VALUES_PER_NAME)]
        values = apply_edits((), edits, 0.0, 60.0)
        self.assertEqual(len(values), MAX_VALUES_PER_NAME)
        with self.assertRaises(ValidationError):
            apply_edits(values, [TXTEdit(Op.ADD, "a.x", "one more")], 0.0, 60.0)
        # another name has its own room
        self.assertEqual(len(apply_edits(values, [TXTEdit(Op.ADD, "b.x", "v")], 0.0, 60.0)), MAX_VALUES_PER_NAME + 1)

    def test_keep_drops_the_oldest(self) -> None:
        values: TXTValues = ()
        for i in range(5):
            values = apply_edits(values, [TXTEdit(Op.ADD, "a.x", f"v{i}", keep=ACME_DNS_KEEP)], float(i), 60.0)
        self.assertEqual([v[1] for v in values], ["v3", "v4"])

    def test_expired_values_go(self) -> None:
        values = apply_edits((), [TXTEdit(Op.ADD, "a.x", "v1")], 100.0, 60.0)
        self.assertEqual(apply_edits(values, [], 159.0, 60.0), values)
        self.assertEqual(apply_edits(values, [], 160.0, 60.0), ())

    def test_values(self) -> None:
        self.assertEqual(validate_value("gfj9Xq...Rg85nM"), "gfj9Xq...Rg85nM")
        for bad in ("", "x" * 256, "tab\there", "é", 5):
            with self.assertRaises(ValidationError):
                validate_value(bad)
        self.assertEqual(value_of_rdata(txt_rdata("abc")), "abc")
        for bad_rdata in (b"", b"\x03ab", b"\x01a\x01b", b"\x02\x00\x01"):
            self.assertIsNone(value_of_rdata(bad_rdata))

    def test_bases(self) -> None:
        user = User("alice", hostnames=["gw.example.org", "*.alice.dyn.example", "*.lab.example.org"])
        self.assertEqual(
            challenge_bases(user, "dyn.example"), ["alice.dyn.example", "gw.example.org", "lab.example.org"]
        )

    def test_keys(self) -> None:
        key, secret = new_key("web", 5.0)
        self.assertNotIn(secret, repr(key))
        self.assertEqual(len(secret), 40)
        other, _ = new_key("other", 6.0)
        self.assertIs(matching_key([other, key], secret), key)
        self.assertIsNone(matching_key([other, key], secret + "x"))


class ServedTests(unittest.SynchronousTestCase):
    """What DNS answers at challenge names, with and without the answer cache (L{Pair})."""

    def setUp(self) -> None:
        self.pair = Pair(self)
        self.pair.users()

    def edit(self, user: str, *edits: TXTEdit) -> None:
        result = self.pair.done(self.pair.service.edit_txt(user, edits, Method.CLI))
        self.assertEqual(result.status, UpdateStatus.GOOD, result)

    def answer(self, name: str, qtype: int) -> dns.message.Message:
        query = make_query(7, name, qtype, False, 1232, False, [])
        (wire,) = self.pair.same_udp(query)
        return dns.message.from_wire(wire)

    def txt(self, name: str) -> list[str]:
        reply = self.answer(name, dns.rdatatype.TXT)
        self.assertEqual(reply.rcode(), dns.rcode.NOERROR)
        return sorted(s.decode() for rrset in reply.answer for rdata in rrset for s in rdata.strings)

    def test_txt_served_and_removed(self) -> None:
        self.edit("alice", TXTEdit(Op.ADD, ALICE, "token-1"), TXTEdit(Op.ADD, ALICE, "token-2"))
        self.assertEqual(self.txt(CHALLENGE), ["token-1", "token-2"])
        reply = self.answer(CHALLENGE, dns.rdatatype.TXT)
        self.assertTrue(reply.flags & dns.flags.AA)
        self.assertEqual(reply.answer[0].ttl, AcmeSettings().ttl)
        any_reply = self.answer(CHALLENGE, dns.rdatatype.ANY)
        self.assertEqual({r.rdtype for r in any_reply.answer}, {dns.rdatatype.TXT})
        self.edit("alice", TXTEdit(Op.REMOVE, ALICE, "token-1"))
        self.assertEqual(self.txt(CHALLENGE), ["token-2"])

    def test_other_types_at_a_challenge_name(self) -> None:
        """NODATA with the SOA: the name exists, with TXT only (a wildcard no longer covers it)."""
        before = self.answer(CHALLENGE, dns.rdatatype.A)
        self.assertEqual([r.rdtype for r in before.answer], [dns.rdatatype.A], "alice's wildcard covers it")
        self.edit("alice", TXTEdit(Op.ADD, ALICE, "token-1"))
        reply = self.answer(CHALLENGE, dns.rdatatype.A)
        self.assertEqual((reply.rcode(), reply.answer), (dns.rcode.NOERROR, []))
        self.assertEqual([r.rdtype for r in reply.authority], [dns.rdatatype.SOA])

    def test_without_values(self) -> None:
        """Bob's challenge name holds nothing: NXDOMAIN, as before; his own name has no TXT: NODATA."""
        self.assertEqual(self.answer(f"_acme-challenge.bob.{SUFFIX}", dns.rdatatype.TXT).rcode(), dns.rcode.NXDOMAIN)
        reply = self.answer(f"bob.{SUFFIX}", dns.rdatatype.TXT)
        self.assertEqual((reply.rcode(), reply.answer), (dns.rcode.NOERROR, []))

    def test_additional_name_and_wildcard_base(self) -> None:
        self.pair.done(self.pair.service.put_user(User("bob", hostnames=["home.example.org", "*.lab.example.org"])))
        self.edit("bob", TXTEdit(Op.ADD, "home.example.org", "h1"), TXTEdit(Op.ADD, "lab.example.org", "l1"))
        self.assertEqual(self.txt("_acme-challenge.home.example.org"), ["h1"])
        self.assertEqual(self.txt("_acme-challenge.lab.example.org"), ["l1"])

    def test_disabled_user_serves_nothing(self) -> None:
        self.edit("bob", TXTEdit(Op.ADD, f"bob.{SUFFIX}", "b1"))
        self.pair.done(self.pair.service.set_disabled("bob", True))
        self.assertEqual(self.answer(f"_acme-challenge.bob.{SUFFIX}", dns.rdatatype.TXT).rcode(), dns.rcode.NXDOMAIN)

    def test_name_given_up_serves_nothing(self) -> None:
        """Values kept for a name the user no longer has are not served."""
        self.edit("bob", TXTEdit(Op.ADD, "home.example.org", "h1"))
        self.pair.done(self.pair.service.put_user(User("bob", hostnames=[])))
        reply = self.answer("_acme-challenge.home.example.org", dns.rdatatype.TXT)
        self.assertEqual(reply.answer, [])

    def test_import_keeps_the_values(self) -> None:
        """A document (which carries no challenge values) imported over a user keeps the values it holds."""
        self.edit("alice", TXTEdit(Op.ADD, ALICE, "token-1"))
        service = self.pair.service
        user, state = service.registry.user("alice"), service.registry.state("alice")
        assert user is not None and state is not None
        self.pair.done(service.import_users([user], [attrs.evolve(state, txt=())]))
        self.assertEqual(self.txt(CHALLENGE), ["token-1"])
        self.assertEqual(len(self.pair.done(service.store.load()).states["alice"].txt), 1)

    def test_wildcard_base_another_user_holds(self) -> None:
        """alice's *.home.example.org does not give her bob's _acme-challenge.home.example.org, nor at a restart."""
        service = self.pair.service
        self.pair.done(service.put_user(User("alice", hostnames=["*.home.example.org"])))
        self.assertNotIn("home.example.org", service.registry.challenge_bases("alice"))
        state = service.registry.state("alice")
        assert state is not None
        # written past the checks (an old store, a restore): still not served
        self.pair.done(service.store.save_state(attrs.evolve(state, txt=(("home.example.org", "x", 9e9),))))
        restarted = DynDNSService(service.store, SUFFIX, poll_interval=None, clock=self.pair.clock)
        self.successResultOf(defer.ensureDeferred(restarted.start()))
        self.assertIsNone(restarted.registry.challenge("_acme-challenge.home.example.org"))

    def test_cached_negative_answer_goes(self) -> None:
        """A cached NXDOMAIN at a challenge name is gone when a value is set, before the write's answer."""
        pair = self.pair
        name = f"_acme-challenge.bob.{SUFFIX}"
        query = make_query(8, name, dns.rdatatype.TXT, False, None, False, [True, False])
        before = pair.same_udp(query)
        self.assertIn(plain_query_key(query), pair.answers.entries)
        self.edit("bob", TXTEdit(Op.ADD, f"bob.{SUFFIX}", "b1"))
        after = pair.udp(pair.fast, query)
        self.assertNotEqual(after, before)
        self.assertEqual(after, pair.udp(pair.full, query))
        self.edit("bob", TXTEdit(Op.CLEAR, f"bob.{SUFFIX}"))
        self.assertEqual(pair.udp(pair.fast, query), before)

    def test_addresses_keep_the_values(self) -> None:
        self.edit("alice", TXTEdit(Op.ADD, ALICE, "token-1"))
        self.pair.done(self.pair.service.update("alice", ips("203.0.113.99")))
        self.pair.done(self.pair.service.set_offline("alice"))
        self.assertEqual(self.txt(CHALLENGE), ["token-1"])

    def test_published_in_the_zone(self) -> None:
        """The suffix zone's records hold the TXT (AXFR/IXFR), with a new serial each way."""
        pair = self.pair
        zone = pair.publisher.zones[0]
        serial = zone.serial
        self.edit("alice", TXTEdit(Op.ADD, ALICE, "token-1"))
        pair.clock.advance(1)
        self.assertNotEqual(zone.serial, serial)
        self.assertIn((CHALLENGE, TYPE_TXT, 60, txt_rdata("token-1")), list(zone.all_records()))
        self.assertIn((CHALLENGE, TYPE_TXT, 60, txt_rdata("token-1")), zone.steps[-1].added)
        self.edit("alice", TXTEdit(Op.CLEAR, ALICE))
        pair.clock.advance(1)
        self.assertNotIn(CHALLENGE, {rr[0] for rr in zone.all_records()})
        self.assertIn((CHALLENGE, TYPE_TXT, 60, txt_rdata("token-1")), zone.steps[-1].deleted)

    def test_published_in_a_host_zone_with_local_zones(self) -> None:
        """With update_local_zones, a challenge name inside a host zone is in that zone's records."""
        pair = self.pair
        publisher = ZonePublisher(pair.service, pair.zones, local_zones=True, delay=0)
        self.successResultOf(defer.ensureDeferred(publisher._load()))
        self.edit("bob", TXTEdit(Op.ADD, "home.example.org", "h1"))
        pair.clock.advance(1)
        host_zone = publisher.by_origin["example.org"]
        self.assertIn(
            ("_acme-challenge.home.example.org", TYPE_TXT, 60, txt_rdata("h1")), list(host_zone.all_records())
        )
        self.assertNotIn(
            "_acme-challenge.home.example.org", {rr[0] for rr in pair.publisher.by_origin["example.org"].all_records()}
        )

    def test_zone_filled_at_start_has_them(self) -> None:
        """A restart publishes the stored values with the same digest as the changes led to."""
        pair = self.pair
        self.edit("alice", TXTEdit(Op.ADD, ALICE, "token-1"))
        pair.clock.advance(1)
        zone = pair.publisher.zones[0]
        service = DynDNSService(pair.service.store, SUFFIX, poll_interval=None, clock=pair.clock)
        publisher = ZonePublisher(service, pair.zones, delay=0)
        self.successResultOf(defer.ensureDeferred(service.start()))
        self.assertEqual(publisher.zones[0].digest, zone.digest)
        self.assertIn(CHALLENGE, {rr[0] for rr in publisher.zones[0].all_records()})


class ExpiryTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.store = MemoryUserStore()
        self.service = DynDNSService(
            self.store, SUFFIX, clock=self.clock, poll_interval=None, acme=AcmeSettings(lifetime=600.0)
        )
        self.successResultOf(defer.ensureDeferred(self.service.start()))
        self.successResultOf(self.service.add_user(User("alice")))

    def test_values_expire_durably(self) -> None:
        self.successResultOf(self.service.edit_txt("alice", [TXTEdit(Op.ADD, ALICE, "v1")], Method.CLI))
        self.clock.advance(300)
        self.successResultOf(self.service.edit_txt("alice", [TXTEdit(Op.ADD, ALICE, "v2")], Method.CLI))
        self.clock.advance(299)
        self.assertIsNotNone(self.service.registry.challenge(CHALLENGE))
        self.clock.advance(1)  # v1's lifetime is over
        self.assertEqual(self.service.registry.challenge(CHALLENGE), ("alice", ("v2",)))
        self.assertEqual(
            self.successResultOf(self.store.load()).states["alice"].txt, (("alice." + SUFFIX, "v2", 1900.0),)
        )
        self.clock.advance(300)
        self.assertIsNone(self.service.registry.challenge(CHALLENGE))
        self.assertEqual(self.successResultOf(self.store.load()).states["alice"].txt, ())

    def test_values_stored_before_a_restart_expire(self) -> None:
        self.successResultOf(self.service.edit_txt("alice", [TXTEdit(Op.ADD, ALICE, "v1")], Method.CLI))
        self.service.stopService()
        service = DynDNSService(self.store, SUFFIX, clock=self.clock, poll_interval=None)
        self.successResultOf(defer.ensureDeferred(service.start()))
        self.clock.advance(600)
        self.assertIsNone(service.registry.challenge(CHALLENGE))
        self.assertEqual(self.successResultOf(self.store.load()).states["alice"].txt, ())

    def test_store_failure_retries(self) -> None:
        self.successResultOf(self.service.edit_txt("alice", [TXTEdit(Op.ADD, ALICE, "v1")], Method.CLI))
        self.store.fail_writes = OSError("disk gone")
        self.clock.advance(600)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.store.fail_writes = None
        self.clock.advance(30)
        self.assertIsNone(self.service.registry.challenge(CHALLENGE))


class RFC2136Tests(UpdateTestsMixin, unittest.TestCase):
    """A user's TSIG key adds and deletes TXT at its own challenge names (certbot, lego, acme.sh, knsupdate)."""

    def setUp(self):
        self.alice = make_key(f"alice.{ZONE}", ALICE_SECRET)
        self.setup(
            T0,
            [
                User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256", hostnames=["*.lab.example.org"]),
                User("bob", tsig_secret=BOB_SECRET, tsig_algorithm="hmac-md5", hostnames=["home.example.org"]),
            ],
            zones=["example.org"],
        )
        self.go_online("alice", "192.0.2.1")

    def send(self, message: dns.update.UpdateMessage, rcode: int) -> None:
        before = self.snapshot()
        wire = sign_at(message, self.alice, T0)
        answer, _ = self.reply(wire)
        self.assertSigned(answer, wire, self.alice, rcode)
        if rcode != NOERROR:
            self.assertEqual(self.snapshot(), before, "a refused update changes nothing")

    def values(self, name: str = CHALLENGE) -> tuple[str, ...]:
        found = self.service.registry.challenge(name)
        return () if found is None else found[1]

    def test_certbot_add_and_delete(self) -> None:
        """certbot-dns-rfc2136: add one TXT RR, later delete that RR."""
        message = update()
        message.add(CHALLENGE + ".", 60, "TXT", '"token-a"')
        self.send(message, NOERROR)
        message = update()
        message.add(CHALLENGE + ".", 60, "TXT", '"token-b"')
        self.send(message, NOERROR)
        self.assertEqual(self.values(), ("token-a", "token-b"))
        message = update()
        message.delete(CHALLENGE + ".", "TXT", '"token-a"')
        self.send(message, NOERROR)
        self.assertEqual(self.values(), ("token-b",))
        self.assertEqual(self.served(ALICE), ({"192.0.2.1"}, 60), "the address is untouched")

    def test_lego_delete_rrset_then_add(self) -> None:
        """lego: delete the TXT RRset, then add, in one message; a name delete clears too."""
        message = update()
        message.add(CHALLENGE + ".", 60, "TXT", '"old"')
        self.send(message, NOERROR)
        message = update()
        message.delete(CHALLENGE + ".", "TXT")
        message.add(CHALLENGE + ".", 120, "TXT", '"new"')
        self.send(message, NOERROR)
        self.assertEqual(self.values(), ("new",))
        message = update()
        message.delete(CHALLENGE + ".")
        self.send(message, NOERROR)
        self.assertEqual(self.values(), ())

    def test_wildcard_base_in_a_host_zone(self) -> None:
        message = dns.update.UpdateMessage("example.org.")
        message.add("_acme-challenge.lab.example.org.", 60, "TXT", '"lab"')
        self.send(message, NOERROR)
        self.assertEqual(self.values("_acme-challenge.lab.example.org"), ("lab",))

    def test_refused(self) -> None:
        """Each case's records (owner, type, data) in one message of its zone: REFUSED, nothing stored."""
        cases: list[tuple[str, list[tuple[str, str, str]]]] = [
            (ZONE, [(f"_acme-challenge.bob.{ZONE}", "TXT", '"x"')]),  # another user's
            ("example.org.", [("_acme-challenge.home.example.org.", "TXT", '"x"')]),  # bob's additional name
            (ZONE, [(f"_acme-challenge.www.alice.{ZONE}", "TXT", '"x"')]),  # below alice's name
            (ZONE, [(CHALLENGE + ".", "A", "192.0.2.9")]),  # another type
            (ZONE, [(f"alice.{ZONE}", "TXT", '"x"')]),  # TXT elsewhere
            (ZONE, [(CHALLENGE + ".", "TXT", '"x"'), (f"alice.{ZONE}", "A", "192.0.2.2")]),  # mixed
            (ZONE, [(CHALLENGE + ".", "TXT", '"a" "b"')]),  # two strings
            (ZONE, [(CHALLENGE + ".", "TXT", '"tab\\009"')]),  # unprintable
        ]
        for zone, records in cases:
            message = dns.update.UpdateMessage(zone)
            for owner, rdtype, rdata in records:
                message.add(owner, 60, rdtype, rdata)
            self.send(message, REFUSED)
        self.assertEqual(self.values(), ())

    def test_too_many_values(self) -> None:
        message = update()
        for i in range(MAX_VALUES_PER_NAME):
            message.add(CHALLENGE + ".", 60, "TXT", f'"v{i}"')
        self.send(message, NOERROR)
        message = update()
        message.add(CHALLENGE + ".", 60, "TXT", '"one more"')
        self.send(message, REFUSED)
        self.assertEqual(len(self.values()), MAX_VALUES_PER_NAME)

    def test_prerequisites(self) -> None:
        """RRset-exists (value dependent) and name-in-use see the challenge values."""
        message = update()
        message.add(CHALLENGE + ".", 60, "TXT", '"v1"')
        self.send(message, NOERROR)
        message = update()
        message.present(CHALLENGE + ".", "TXT", '"v1"')
        message.add(CHALLENGE + ".", 60, "TXT", '"v2"')
        self.send(message, NOERROR)
        message = update()
        message.present(CHALLENGE + ".", "TXT", '"nope"')
        message.add(CHALLENGE + ".", 60, "TXT", '"v3"')
        wire = sign_at(message, self.alice, T0)
        answer, reply = self.reply(wire)
        self.assertEqual(reply.rcode, dns.rcode.NXRRSET)
        message = update()
        message.absent(CHALLENGE + ".")
        message.add(CHALLENGE + ".", 60, "TXT", '"v3"')
        answer, reply = self.reply(sign_at(message, self.alice, T0))
        self.assertEqual(reply.rcode, dns.rcode.YXDOMAIN)
        self.assertEqual(self.values(), ("v1", "v2"))

    def test_switched_off(self) -> None:
        self.setup(
            T0,
            [User("alice", tsig_secret=ALICE_SECRET, tsig_algorithm="hmac-sha256")],
            acme=AcmeSettings(rfc2136=False),
        )
        message = update()
        message.add(CHALLENGE + ".", 60, "TXT", '"x"')
        self.send(message, REFUSED)
