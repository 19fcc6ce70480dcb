"""
RFC 2136 UPDATE of host zones (L{dyndns_plugin.replication.host_updates}):
the whole service built from its configuration (C{[[dns.zones]]} with
C{allow_update} and C{update_keys}), updates made with dnspython and handed
to the server's UPDATE handler as a source address would send them, and the
zone then read back three ways: the handler's answers, the zone publisher's
serial and journal, and real DNS queries to the server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.update
from twisted.internet import defer, threads
from twisted.trial import unittest

from dyndns_plugin.config import settings_from_dict
from dyndns_plugin.model import User
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.store.sqlite import SQLiteUserStore
from dyndns_plugin.tap import build_service
from tests.dns_helpers import serve_dns
from tests.test_dns_server import HOST
from tests.typing_helpers import threads_reactor

SUFFIX = "dyn.example.com"
ZONE = "example.org"
REVERSE = "2.0.192.in-addr.arpa"
ALLOWED, OTHER = "127.0.0.2", "127.0.0.3"
OFFICE_SECRET = base64.b64encode(b"office key secret, 32 bytes long").decode()
ADMIN_SECRET = base64.b64encode(b"admin key secret, 32 bytes long!").decode()
ZONE_FILE = """$TTL 300
@ IN SOA ns1.example.org. hostmaster.example.org. 100 3600 600 86400 60
@ IN NS ns1.example.org.
@ IN NS ns2.example.org.
ns1 IN A 192.0.2.53
ns2 IN A 192.0.2.54
www IN A 192.0.2.80
www IN TXT "from the file"
mail IN MX 10 mx.example.org.
"""
REVERSE_FILE = """$TTL 300
@ IN SOA ns1.example.org. hostmaster.example.org. 7 3600 600 86400 60
@ IN NS ns1.example.org.
"""


def key(name: str, secret: str) -> dict[dns.name.Name, dns.tsig.Key]:
    return {dns.name.from_text(name): dns.tsig.Key(name, base64.b64decode(secret), dns.tsig.HMAC_SHA256)}


class HostZoneUpdateTests(unittest.TestCase):
    """Updates of a host zone through the built service's UPDATE handler."""

    timeout = 30

    def configure(self, folder: str, store: str = "memory") -> Any:
        tables: dict[str, Any] = {
            "service": {"suffix": SUFFIX},
            "store": {"backend": store, "path": os.path.join(folder, "store.sqlite")},
            "dns": {
                "listen": [],
                "zones": [
                    {
                        "origin": ZONE,
                        "file": "example.org.zone",
                        "allow_update": [f"{ALLOWED}/32"],
                        "update_keys": [
                            {"name": "office", "secret": OFFICE_SECRET, "names": ["*.office.example.org"]},
                            {"name": "admin", "secret": ADMIN_SECRET, "types": ["A", "TXT", "CNAME"]},
                        ],
                    },
                    {
                        "origin": REVERSE,
                        "file": "reverse.zone",
                        "allow_update": [f"{ALLOWED}/32"],
                        # the same key name as the forward zone's, with its own secret
                        "update_keys": [{"name": "office", "secret": ADMIN_SECRET}],
                    },
                ],
            },
        }
        return settings_from_dict(tables, os.path.join(folder, "dyndns.toml"))

    @defer.inlineCallbacks
    def start(self, folder: str | None = None, store: Any = None):
        if folder is None:
            folder = self.mktemp()
            os.makedirs(folder)
            for name, text in (("example.org.zone", ZONE_FILE), ("reverse.zone", REVERSE_FILE)):
                with open(os.path.join(folder, name), "w") as f:
                    f.write(text)
        self.folder = folder
        settings = self.configure(folder, "sqlite" if isinstance(store, SQLiteUserStore) else "memory")
        self.store = store if store is not None else MemoryUserStore()
        top: Any = build_service(settings, store=self.store)
        yield defer.ensureDeferred(top.dyndns.start())
        self.addCleanup(self.stop_once, top)
        yield top.publisher.when_ready()
        self.top = top
        self.handler = top.dns_factory.update_handler
        self.zone = top.publisher.by_origin[ZONE]
        self.port = serve_dns(self, top.dns_factory)
        return top

    def setUp(self):
        return self.start()

    def stop_once(self, top: Any) -> defer.Deferred[None] | None:
        """Stop the service (its poll, its store) unless a test already did."""
        if getattr(top, "stopped", False):
            return None
        top.stopped = True
        top.dyndns.running = True  # started by start(), not startService()
        return defer.maybeDeferred(top.dyndns.stopService)

    def send(self, message: dns.message.Message, peer: str = ALLOWED) -> defer.Deferred[dns.message.Message]:
        wire = message.to_wire()
        keyring = None
        if message.keyring is not None:
            keyring = message.keyring

        def parsed(answer: bytes) -> dns.message.Message:
            return dns.message.from_wire(answer, keyring=keyring, request_mac=message.mac if keyring else b"")

        return defer.ensureDeferred(self.handler.handle_update_wire(wire, peer)).addCallback(parsed)

    def query(self, name: str, rdtype: str, tcp: bool = False) -> defer.Deferred[dns.message.Message]:
        q = dns.message.make_query(name, rdtype)
        send = dns.query.tcp if tcp else dns.query.udp
        return threads.deferToThread(send, q, HOST, timeout=5, port=self.port)

    @defer.inlineCallbacks
    def answer_texts(self, name: str, rdtype: str):
        reply = yield self.query(name, rdtype)
        return sorted(
            rd.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset
        )

    # -- who may update

    @defer.inlineCallbacks
    def test_allowed_source_adds_records(self):
        """Unsigned from an allowed source: NOERROR, served at once, one serial, one journal step."""
        m = dns.update.UpdateMessage(ZONE)
        m.add("host1", 120, "A", "192.0.2.11")
        m.add("host1", 120, "TXT", '"hello world"')
        m.add("host1", 120, "MX", "5 mail.example.org.")  # the exchange is compressed against the zone
        m.add("alias", 120, "CNAME", "www.example.org.")
        reply = yield self.send(m)
        self.assertEqual(reply.rcode(), dns.rcode.NOERROR)
        self.assertEqual((yield self.answer_texts("host1.example.org", "A")), ["192.0.2.11"])
        self.assertEqual((yield self.answer_texts("host1.example.org", "TXT")), ['"hello world"'])
        self.assertEqual((yield self.answer_texts("host1.example.org", "MX")), ["5 mail.example.org."])
        cname = yield self.query("alias.example.org", "A")
        self.assertEqual([r.rdtype for r in cname.answer], [dns.rdatatype.CNAME, dns.rdatatype.A])
        self.assertEqual(self.zone.serial, 101)
        (step,) = self.zone.steps
        self.assertEqual((step.serial_from, step.serial_to, step.deleted), (100, 101, ()))
        self.assertEqual(len(step.added), 4)
        stored = yield self.store.load_zone_records()
        self.assertEqual(
            set(stored[ZONE]),
            {("host1.example.org", 1), ("host1.example.org", 16), ("host1.example.org", 15), ("alias.example.org", 5)},
        )
        soa = yield self.query(ZONE, "SOA")
        self.assertEqual(soa.answer[0][0].serial, 101)

    @defer.inlineCallbacks
    def test_other_source_refused(self):
        """Unsigned from a source not in allow_update: REFUSED, nothing changes."""
        m = dns.update.UpdateMessage(ZONE)
        m.add("host1", 120, "A", "192.0.2.11")
        reply = yield self.send(m, peer=OTHER)
        self.assertEqual(reply.rcode(), dns.rcode.REFUSED)
        self.assertEqual(self.zone.serial, 100)
        self.assertEqual((yield self.store.load_zone_records()), {})
        # the same source may update the reverse zone it is allowed for, and not the suffix zone
        m = dns.update.UpdateMessage(SUFFIX)
        m.add("x", 60, "A", "192.0.2.1")
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.REFUSED)

    @defer.inlineCallbacks
    def test_zone_key_signed(self):
        """A zone key: accepted and answered signed; its names and types limits hold (REFUSED, signed)."""
        ring = key("admin", ADMIN_SECRET)
        m = dns.update.UpdateMessage(ZONE, keyring=ring)
        m.replace("www", 60, "A", "192.0.2.81")
        reply = yield self.send(m, peer=OTHER)
        self.assertEqual(reply.rcode(), dns.rcode.NOERROR)
        self.assertTrue(reply.had_tsig)
        self.assertEqual((yield self.answer_texts("www.example.org", "A")), ["192.0.2.81"])
        m = dns.update.UpdateMessage(ZONE, keyring=ring)
        m.add("www", 60, "MX", "10 mx.example.org.")  # not one of its types
        reply = yield self.send(m, peer=OTHER)
        self.assertEqual(reply.rcode(), dns.rcode.REFUSED)
        self.assertTrue(reply.had_tsig)
        office = key("office", OFFICE_SECRET)
        m = dns.update.UpdateMessage(ZONE, keyring=office)
        m.add("pc1.office", 60, "A", "192.0.2.21")
        self.assertEqual((yield self.send(m, peer=OTHER)).rcode(), dns.rcode.NOERROR)
        m = dns.update.UpdateMessage(ZONE, keyring=office)
        m.add("pc1", 60, "A", "192.0.2.21")  # outside *.office.example.org
        self.assertEqual((yield self.send(m, peer=OTHER)).rcode(), dns.rcode.REFUSED)
        self.assertEqual(self.zone.serial, 102)
        # a zone key never reaches the suffix zone's users, nor another host zone
        yield self.top.dyndns.add_user(User("alice"))
        m = dns.update.UpdateMessage(SUFFIX, keyring=ring)
        m.add(f"alice.{SUFFIX}.", 60, "A", "192.0.2.1")
        self.assertEqual((yield self.send(m, peer=OTHER)).rcode(), dns.rcode.REFUSED)
        m = dns.update.UpdateMessage("example.net", keyring=ring)
        m.add("x.example.net.", 60, "A", "192.0.2.1")
        self.assertEqual((yield self.send(m, peer=OTHER)).rcode(), dns.rcode.NOTAUTH)
        m = dns.update.UpdateMessage(REVERSE, keyring=ring)
        m.add("9", 60, "PTR", "x.example.org.")
        self.assertEqual((yield self.send(m, peer=OTHER)).rcode(), dns.rcode.REFUSED)
        # one key name in two zones: each zone's own secret
        m = dns.update.UpdateMessage(REVERSE, keyring=key("office", ADMIN_SECRET))
        m.add("9", 60, "PTR", "pc1.office.example.org.")
        reply = yield self.send(m, peer=OTHER)
        self.assertEqual((reply.rcode(), reply.had_tsig), (dns.rcode.NOERROR, True))
        m = dns.update.UpdateMessage(REVERSE, keyring=office)  # the forward zone's secret
        m.add("10", 60, "PTR", "pc2.office.example.org.")
        answer = yield self.handler.handle_update_wire(m.to_wire(), OTHER)
        self.assertEqual(dns.message.from_wire(answer, keyring=False).tsig_error, dns.rcode.BADSIG)
        self.assertEqual(self.top.dyndns.registry.answer(f"alice.{SUFFIX}").addresses, ())

    @defer.inlineCallbacks
    def test_metrics(self):
        """dyndns_zone_updates_total counts each host-zone update by zone and RCODE."""
        from dyndns_plugin.metrics import Metrics

        metrics = Metrics()
        metrics.attach(self.top.dyndns, self.top.dns_factory, self.top.publisher)
        m = dns.update.UpdateMessage(ZONE)
        m.add("host1", 60, "A", "192.0.2.11")
        for _ in range(2):
            yield self.send(m)
        m = dns.update.UpdateMessage(ZONE)
        m.add(ZONE + ".", 60, "NS", "ns9.example.org.")
        yield self.send(m)
        text = metrics.render().decode()
        self.assertIn('dyndns_zone_updates_total{result="noerror",zone="example.org"} 2.0', text)
        self.assertIn('dyndns_zone_updates_total{result="refused",zone="example.org"} 1.0', text)

    @defer.inlineCallbacks
    def test_wrong_secret(self):
        """A zone key's name with the wrong secret: BADSIG, unsigned, nothing changes."""
        m = dns.update.UpdateMessage(ZONE, keyring=key("admin", OFFICE_SECRET))
        m.add("host1", 60, "A", "192.0.2.1")
        answer = yield self.handler.handle_update_wire(m.to_wire(), OTHER)
        reply = dns.message.from_wire(answer, keyring=False)
        self.assertEqual(reply.rcode(), dns.rcode.NOTAUTH)
        self.assertEqual(reply.tsig_error, dns.rcode.BADSIG)
        self.assertEqual(self.zone.serial, 100)

    @defer.inlineCallbacks
    def test_users_name_refused(self):
        """A user's additional name inside the host zone is the user's: REFUSED."""
        yield self.top.dyndns.add_user(User("bob", hostnames=["bob.example.org"]))
        m = dns.update.UpdateMessage(ZONE)
        m.add("bob", 60, "A", "192.0.2.9")
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.REFUSED)
        self.assertEqual(self.zone.serial, 100)

    # -- RFC 2136 section 3.2 and 3.4

    @defer.inlineCallbacks
    def test_prerequisites(self):
        """All five prerequisite forms, against the file's and the updated records."""
        cases = [
            ("present", ("www", "ANY"), dns.rcode.NOERROR),
            ("present", ("nowhere", "ANY"), dns.rcode.NXDOMAIN),
            ("absent", ("www", "ANY"), dns.rcode.YXDOMAIN),
            ("absent", ("nowhere", "ANY"), dns.rcode.NOERROR),
            ("present", ("www", "TXT"), dns.rcode.NOERROR),
            ("present", ("www", "AAAA"), dns.rcode.NXRRSET),
            ("absent", ("www", "A"), dns.rcode.YXRRSET),
            ("absent", ("www", "AAAA"), dns.rcode.NOERROR),
            ("present", ("www", "A", "192.0.2.80"), dns.rcode.NOERROR),
            ("present", ("www", "A", "192.0.2.81"), dns.rcode.NXRRSET),
            ("present", ("WWW", "TXT", '"from the file"'), dns.rcode.NOERROR),
            ("present", ("mail", "MX", "10 MX.example.org."), dns.rcode.NOERROR),
        ]
        for kind, args, rcode in cases:
            m = dns.update.UpdateMessage(ZONE)
            getattr(m, kind)(*args)
            m.add("marker", 60, "TXT", f'"{kind} {args}"')
            reply = yield self.send(m)
            self.assertEqual(dns.rcode.to_text(reply.rcode()), dns.rcode.to_text(rcode), (kind, args))
        self.assertEqual(self.zone.serial, 100 + sum(1 for *_, r in cases if r == dns.rcode.NOERROR))

    @defer.inlineCallbacks
    def test_deletes(self):
        """Delete RR, RRset and name; the apex SOA and NS stay (3.4.2.3/4); a hidden file RRset stays hidden."""
        m = dns.update.UpdateMessage(ZONE)
        m.delete("www", "TXT")
        m.delete("mail")
        m.delete(ZONE + ".")  # every RRset at the apex but SOA and NS
        m.delete(ZONE + ".", "NS", "ns1.example.org.")
        m.delete(ZONE + ".", "NS", "ns2.example.org.")  # the last NS: ignored
        m.delete(ZONE + ".", "SOA")
        reply = yield self.send(m)
        self.assertEqual(reply.rcode(), dns.rcode.NOERROR)
        self.assertEqual((yield self.answer_texts("www.example.org", "TXT")), [])
        self.assertEqual((yield self.answer_texts("www.example.org", "A")), ["192.0.2.80"])
        self.assertEqual((yield self.query("mail.example.org", "MX")).rcode(), dns.rcode.NXDOMAIN)
        self.assertEqual((yield self.answer_texts(ZONE, "NS")), ["ns2.example.org."])
        self.assertEqual(len((yield self.query(ZONE, "SOA")).answer), 1)
        stored = yield self.store.load_zone_records()
        self.assertEqual(stored[ZONE][("www.example.org", 16)], ())
        self.assertEqual(stored[ZONE][("mail.example.org", 15)], ())
        deleted = {(rr[0], rr[1]) for rr in self.zone.steps[-1].deleted}
        self.assertEqual(deleted, {("www.example.org", 16), ("mail.example.org", 15), (ZONE, 2)})

    @defer.inlineCallbacks
    def test_add_rules(self):
        """CNAME and other data exclude each other; one TTL per RRset; the apex SOA/NS are the file's."""
        m = dns.update.UpdateMessage(ZONE)
        m.add("www", 60, "CNAME", "elsewhere.example.net.")  # www has data: ignored
        m.add("www", 30, "A", "192.0.2.82")  # joins the file's A; the RRset takes TTL 30
        m.add("www", 30, "A", "192.0.2.80")  # a duplicate: nothing new
        m.add("c", 60, "CNAME", "one.example.net.")
        m.add("c", 60, "CNAME", "two.example.net.")  # replaces the CNAME
        m.add("c", 60, "A", "192.0.2.1")  # a CNAME is there: ignored
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.NOERROR)
        reply = yield self.query("www.example.org", "A")
        self.assertEqual(sorted(rd.to_text() for rd in reply.answer[0]), ["192.0.2.80", "192.0.2.82"])
        self.assertEqual(reply.answer[0].ttl, 30)
        self.assertEqual((yield self.answer_texts("www.example.org", "CNAME")), [])
        self.assertEqual((yield self.answer_texts("c.example.org", "CNAME")), ["two.example.net."])
        # an RR of a class-IN-only type deleted by its data (class NONE in the message)
        m = dns.update.UpdateMessage(ZONE)
        m.add("_sip._udp", 60, "SRV", "10 5 5060 sip1.example.org.")
        m.add("_sip._udp", 60, "SRV", "20 5 5060 sip2.example.org.")
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.NOERROR)
        m = dns.update.UpdateMessage(ZONE)
        m.delete("_sip._udp", "SRV", "10 5 5060 SIP1.example.org.")
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.NOERROR)
        self.assertEqual((yield self.answer_texts("_sip._udp.example.org", "SRV")), ["20 5 5060 sip2.example.org."])
        for rdtype, data in (("SOA", "ns1.example.org. h.example.org. 999 1 1 1 1"), ("NS", "ns9.example.org.")):
            m = dns.update.UpdateMessage(ZONE)
            m.add(ZONE + ".", 60, rdtype, data)
            self.assertEqual((yield self.send(m)).rcode(), dns.rcode.REFUSED, rdtype)
        self.assertEqual(self.zone.serial, 103)

    @defer.inlineCallbacks
    def test_bad_updates(self):
        """NOTAUTH, NOTZONE, FORMERR (rdata that does not read as its type): each answered, nothing half-applied."""
        m = dns.update.UpdateMessage("example.net")
        m.add("x", 60, "A", "192.0.2.1")
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.NOTAUTH)
        m = dns.update.UpdateMessage(ZONE)
        m.add("ok", 60, "A", "192.0.2.1")
        m.add("x.example.net.", 60, "A", "192.0.2.1")
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.NOTZONE)
        bad = (("MX", b"\x00"), ("A", b"\x01\x02\x03\x04\x05"), ("TXT", b"\x09ab"), ("MINFO", b"\x07offline"))
        for rdtype, data in bad:  # (dnspython takes any MINFO bytes; the query side cannot serve these)
            m = dns.update.UpdateMessage(ZONE)
            m.add("ok", 60, "A", "192.0.2.1")
            generic = dns.rdata.GenericRdata(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), data)
            m.add("bad", 60, generic)
            self.assertEqual((yield self.send(m)).rcode(), dns.rcode.FORMERR, rdtype)
        self.assertEqual(self.zone.serial, 100)
        self.assertEqual((yield self.answer_texts("ok.example.org", "A")), [])

    @defer.inlineCallbacks
    def test_large_messages(self):
        """
        A ~40 KB update (1,500 records, as over TCP) is applied whole, or,
        with one bad record at its end, not at all.
        """
        m = dns.update.UpdateMessage(ZONE)
        for i in range(1500):
            m.add(f"bulk{i}", 60, "TXT", f'"record {i}"')
        m.add("x.example.net.", 60, "A", "192.0.2.1")  # outside the zone
        self.assertGreater(len(m.to_wire()), 30_000)
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.NOTZONE)
        self.assertEqual((self.zone.serial, (yield self.store.load_zone_records())), (100, {}))
        m = dns.update.UpdateMessage(ZONE)
        for i in range(1500):
            m.add(f"bulk{i}", 60, "TXT", f'"record {i}"')
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.NOERROR)
        self.assertEqual((yield self.answer_texts("bulk1499.example.org", "TXT")), ['"record 1499"'])
        self.assertEqual(len((yield self.store.load_zone_records())[ZONE]), 1500)
        self.assertEqual(self.zone.serial, 101)

    @defer.inlineCallbacks
    def test_store_failure(self):
        """A failed write: SERVFAIL, and neither queries nor the serial change."""
        self.store.fail_writes = OSError("disk full")
        m = dns.update.UpdateMessage(ZONE)
        m.add("host1", 60, "A", "192.0.2.11")
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.SERVFAIL)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(self.zone.serial, 100)
        self.assertEqual((yield self.answer_texts("host1.example.org", "A")), [])

    @defer.inlineCallbacks
    def test_cached_negative_answer_dropped(self):
        """A name answered NXDOMAIN (and cached) is served as soon as an update adds it."""
        for _ in range(2):
            self.assertEqual((yield self.query("late.example.org", "A")).rcode(), dns.rcode.NXDOMAIN)
        m = dns.update.UpdateMessage(ZONE)
        m.add("late", 60, "A", "192.0.2.77")
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.NOERROR)
        self.assertEqual((yield self.answer_texts("late.example.org", "A")), ["192.0.2.77"])

    @defer.inlineCallbacks
    def test_updates_sent_together(self):
        """
        Updates that arrive together are each checked after the ones before
        them, as one by one; a refused one changes nothing. On the SQLite
        store those that arrive while a write is under way share the next
        write and its serial.
        """
        first = dns.update.UpdateMessage(ZONE)
        first.absent("x")
        first.add("x", 60, "A", "192.0.2.1")
        again = dns.update.UpdateMessage(ZONE)
        again.absent("x")  # x is in use by then
        again.add("x", 60, "A", "192.0.2.9")
        replace = dns.update.UpdateMessage(ZONE)
        replace.present("x", "A", "192.0.2.1")
        replace.replace("x", 60, "A", "192.0.2.2")
        others = []
        for name in ("p", "q"):
            m = dns.update.UpdateMessage(ZONE)
            m.add(name, 60, "TXT", f'"{name}"')
            others.append(m)
        replies = yield defer.gatherResults([self.send(m) for m in (first, again, replace, *others)])
        self.assertEqual(
            [r.rcode() for r in replies], [dns.rcode.NOERROR, dns.rcode.YXDOMAIN] + [dns.rcode.NOERROR] * 3
        )
        self.assertEqual((yield self.answer_texts("x.example.org", "A")), ["192.0.2.2"])
        self.assertEqual((yield self.answer_texts("q.example.org", "TXT")), ['"q"'])
        batched = isinstance(self.store, SQLiteUserStore)
        self.assertEqual(self.zone.serial, 102 if batched else 104)
        last = self.zone.steps[-1]
        self.assertEqual(len(last.added), 3 if batched else 1)

    # -- what Windows clients and DHCP servers send

    @defer.inlineCallbacks
    def test_windows_registration(self):
        """
        SOA discovery of the name (authority SOA names the zone), then the
        client's two tries: "name not in use" (fails once it exists), then
        "no CNAME; replace the A"; and the PTR in the reverse zone.
        """
        reply = yield self.query("winpc.example.org", "SOA")
        self.assertEqual(reply.rcode(), dns.rcode.NXDOMAIN)
        self.assertEqual(reply.authority[0].name, dns.name.from_text(ZONE))
        self.assertEqual(reply.authority[0].rdtype, dns.rdatatype.SOA)
        for expected in (dns.rcode.NOERROR, dns.rcode.YXDOMAIN):
            m = dns.update.UpdateMessage(ZONE)
            m.absent("winpc")
            m.add("winpc", 1200, "A", "192.0.2.33")
            self.assertEqual((yield self.send(m)).rcode(), expected)
        m = dns.update.UpdateMessage(ZONE)
        m.absent("winpc", "CNAME")
        m.delete("winpc", "A")
        m.add("winpc", 1200, "A", "192.0.2.34")
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.NOERROR)
        self.assertEqual((yield self.answer_texts("winpc.example.org", "A")), ["192.0.2.34"])
        m = dns.update.UpdateMessage(REVERSE)
        m.delete("34", "PTR")
        m.add("34", 1200, "PTR", "winpc.example.org.")
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.NOERROR)
        self.assertEqual((yield self.answer_texts("34.2.0.192.in-addr.arpa", "PTR")), ["winpc.example.org."])
        self.assertEqual(self.top.publisher.by_origin[REVERSE].serial, 8)


class RestartTests(HostZoneUpdateTests):
    """The same tests on the SQLite store, and a restart that keeps every change."""

    def setUp(self):
        folder = self.mktemp()
        os.makedirs(folder)
        for name, text in (("example.org.zone", ZONE_FILE), ("reverse.zone", REVERSE_FILE)):
            with open(os.path.join(folder, name), "w") as f:
                f.write(text)
        store = SQLiteUserStore(os.path.join(folder, "store.sqlite"), threads_reactor())
        return self.start(folder, store)

    def test_store_failure(self):
        raise unittest.SkipTest("the memory store's fail_writes")

    def stop(self) -> defer.Deferred[None] | None:
        return self.stop_once(self.top)

    @defer.inlineCallbacks
    def test_restart_keeps_changes(self):
        """
        After a restart the updated RRsets and the serial are as they were;
        a zone file edited meanwhile shows where no update set the RRset,
        and the update wins where one did.
        """
        m = dns.update.UpdateMessage(ZONE)
        m.replace("www", 60, "A", "192.0.2.81")
        m.add("host1", 60, "AAAA", "2001:db8::1")
        self.assertEqual((yield self.send(m)).rcode(), dns.rcode.NOERROR)
        yield self.stop()
        with open(os.path.join(self.folder, "example.org.zone"), "a") as f:
            f.write('new IN TXT "added to the file"\nwww IN A 192.0.2.99\n')
        yield self.start(self.folder, SQLiteUserStore(os.path.join(self.folder, "store.sqlite"), threads_reactor()))
        self.assertEqual((yield self.answer_texts("www.example.org", "A")), ["192.0.2.81"])
        self.assertEqual((yield self.answer_texts("host1.example.org", "AAAA")), ["2001:db8::1"])
        self.assertEqual((yield self.answer_texts("new.example.org", "TXT")), ['"added to the file"'])
        # the file changed: a new serial past the stored one
        self.assertEqual(self.zone.serial, 102)
