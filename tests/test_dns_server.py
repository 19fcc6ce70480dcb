"""
Wire behaviour of the DNS server (L{dyndns_plugin.dns.server}) on real UDP
and TCP sockets on 127.0.0.1, with dnspython as the client.

dnspython's blocking C{dns.query.udp}/C{dns.query.tcp} and raw sockets run in
the reactor's thread pool (C{deferToThread}), so the server keeps running on
the reactor thread while the client waits.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.update
from twisted.internet import defer, reactor, task, threads
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from dyndns_plugin.dns import server as dns_server
from dyndns_plugin.dns.resolver import DynDNSResolver
from dyndns_plugin.dns.server import DynDNSServerFactory
from dyndns_plugin.model import HostState, User
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.tap import load_zones
from tests.dns_helpers import listen_dns, memory_settings, serve_dns
from tests.typing_helpers import TestCaseMixin

SUFFIX = "dyn.example.com"
HOST = "127.0.0.1"
#: How long a raw client waits before it decides that no reply is coming.
NO_REPLY_WAIT = 0.5
#: Timeout of every query that expects a reply.
TIMEOUT = 3.0

#: One TXT string of 200 bytes; eight of them make an RRset of about 1.7 KB.
LONG = "x" * 200

#: The records of example.org that the transfer tests serve too.
ZONE_HEAD = """\
$TTL 3600
@       300 IN SOA ns1.example.org. hostmaster.example.org. 2024010101 7200 900 1209600 3600
@       IN NS    ns1.example.org.
@       IN A     192.0.2.10
@       IN MX    10 mail.example.org.
ns1     IN A     192.0.2.53
mail    IN A     192.0.2.25
www     IN CNAME @
txt     IN TXT   "hello world" "second string"
home    IN A     192.0.2.99
home    IN MX    20 mail.example.org.
"""
HOST_ZONE = (
    ZONE_HEAD
    + f'medium  IN TXT   "{LONG}" "{LONG}" "{LONG}"\n'
    + "".join(f'big     IN TXT   "{i}{LONG}"\n' for i in range(8))
)


def query(name, rdtype="A", rdclass="IN", **kwargs):
    return dns.message.make_query(name, rdtype, rdclass, **kwargs)


def header(data: bytes) -> tuple[int, int, int, int, int, int, int]:
    """(id, flags1, flags2, qd, an, ns, ar) of a raw DNS message."""
    return struct.unpack("!HBBHHHH", data[:12])


def raw_udp(port: int, data: bytes, wait: float = TIMEOUT) -> bytes | None:
    """Send C{data} in one datagram; the reply, or None after C{wait}."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(wait)
        s.sendto(data, (HOST, port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


def _recv_exactly(s: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = s.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def raw_tcp(port: int, data: bytes, replies: int) -> list[bytes | None]:
    """
    Send C{data} (already length-prefixed) on one connection and read up to
    C{replies} length-prefixed messages; None stands for a closed connection.
    """
    out: list[bytes | None] = []
    with socket.create_connection((HOST, port), timeout=TIMEOUT) as s:
        s.sendall(data)
        for _ in range(replies):
            try:
                prefix = _recv_exactly(s, 2)
            except ConnectionResetError:
                prefix = None
            if prefix is None:
                out.append(None)
                break
            out.append(_recv_exactly(s, struct.unpack("!H", prefix)[0]))
    return out


def framed(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def addresses(response: dns.message.Message, rdtype: str) -> set[str]:
    """The addresses of C{rdtype} in the answer section."""
    wanted = dns.rdatatype.from_text(rdtype)
    return {rd.address for rrset in response.answer if rrset.rdtype == wanted for rd in rrset}


class ServerTestsMixin(TestCaseMixin):
    """
    A server with the suffix zone, the host zone C{example.org} and users:

      - alice: 203.0.113.5 / 2001:db8::5, TTL 120, C{*.alice.<suffix>} and
        C{gateway.example.info};
      - bob: 198.51.100.7, TTL 60, C{home.example.org} (also in the host zone);
      - carol: offline, offline IP 192.0.2.200 (last address 203.0.113.9);
      - dave: offline, no offline IP;
      - eve: had 203.0.113.66, then disabled.
    """

    #: Start the service (load the store) before serving.
    start_service = True

    @defer.inlineCallbacks
    def setUp(self):
        settings = memory_settings(
            self,
            dns={
                "minimum": 60,
                "soa_ttl": 3600,
                "glue": {f"ns1.{SUFFIX}": ["192.0.2.53", "2001:db8::53"]},
                "zones": [{"origin": "example.org", "file": "example.org.zone"}],
            },
            files={"example.org.zone": HOST_ZONE},
        )
        self.store = MemoryUserStore()
        self.service = DynDNSService(self.store, SUFFIX, poll_interval=None)
        if self.start_service:
            yield defer.ensureDeferred(self.service.start())
            yield self.add_users()
        self.factory = DynDNSServerFactory(DynDNSResolver(self.service.registry), load_zones(settings))
        self.port = serve_dns(self, self.factory, HOST)

    @defer.inlineCallbacks
    def add_users(self):
        s = self.service
        yield s.add_user(User("alice", hostnames=[f"*.alice.{SUFFIX}", "gateway.example.info"]))
        result = yield s.update("alice", ["203.0.113.5", "2001:db8::5"], ttl=120)
        self.assertTrue(result.ok)
        yield s.add_user(User("bob", hostnames=["home.example.org"]))
        yield s.update("bob", ["198.51.100.7"], ttl=60)
        yield s.add_user(User("carol", offline_ipv4="192.0.2.200"))
        yield s.update("carol", ["203.0.113.9"])
        yield s.set_offline("carol")
        yield s.add_user(User("dave"))
        yield s.update("dave", ["203.0.113.10"])
        yield s.set_offline("dave")
        yield s.add_user(User("eve"))
        yield s.update("eve", ["203.0.113.66"])
        yield s.set_disabled("eve", True)

    # -- clients

    def udp(self, message, **kwargs):
        return threads.deferToThread(dns.query.udp, message, HOST, timeout=TIMEOUT, port=self.port, **kwargs)

    def tcp(self, message, **kwargs):
        return threads.deferToThread(dns.query.tcp, message, HOST, timeout=TIMEOUT, port=self.port, **kwargs)

    def raw_udp(self, data, wait=TIMEOUT):
        return threads.deferToThread(raw_udp, self.port, data, wait)

    def raw_tcp(self, data, replies=1):
        return threads.deferToThread(raw_tcp, self.port, data, replies)

    # -- assertions

    def assertRcode(self, response, rcode):
        self.assertEqual(dns.rcode.to_text(response.rcode()), dns.rcode.to_text(rcode))

    def assertFlag(self, response, flag, present=True):
        self.assertEqual(bool(response.flags & flag), present, dns.flags.to_text(response.flags))

    def assertNegative(self, response, rcode, zone, ttl):
        """An authoritative negative answer with the zone's SOA and C{ttl}."""
        self.assertRcode(response, rcode)
        self.assertFlag(response, dns.flags.AA)
        self.assertEqual(response.answer, [])
        self.assertEqual(len(response.authority), 1)
        soa = response.authority[0]
        self.assertEqual(soa.rdtype, dns.rdatatype.SOA)
        self.assertEqual(soa.name, dns.name.from_text(zone))
        self.assertEqual(soa.ttl, ttl)


class AnswerTests(ServerTestsMixin, unittest.TestCase):
    """Answers for users' names and for the static zones."""

    @defer.inlineCallbacks
    def test_a(self):
        """A user's main name answers its IPv4 address with AA and the user's TTL."""
        r = yield self.udp(query(f"alice.{SUFFIX}", "A"))
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertFlag(r, dns.flags.AA)
        self.assertFlag(r, dns.flags.QR)
        self.assertEqual(addresses(r, "A"), {"203.0.113.5"})
        self.assertEqual(addresses(r, "AAAA"), set())
        self.assertEqual(r.answer[0].ttl, 120)

    @defer.inlineCallbacks
    def test_aaaa(self):
        """AAAA answers the IPv6 address only, with AA and the user's TTL."""
        r = yield self.udp(query(f"alice.{SUFFIX}", "AAAA"))
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertFlag(r, dns.flags.AA)
        self.assertEqual(addresses(r, "AAAA"), {"2001:db8::5"})
        self.assertEqual(addresses(r, "A"), set())
        self.assertEqual(r.answer[0].ttl, 120)

    @defer.inlineCallbacks
    def test_case_insensitive(self):
        """Names match regardless of case, and the answer echoes the asked case."""
        r = yield self.udp(query("ALIce.Dyn.Example.COM", "A"))
        self.assertEqual(addresses(r, "A"), {"203.0.113.5"})
        self.assertEqual(r.answer[0].name.to_text(), "ALIce.Dyn.Example.COM.")

    @defer.inlineCallbacks
    def test_any(self):
        """ANY answers both the A and the AAAA record."""
        r = yield self.tcp(query(f"alice.{SUFFIX}", "ANY"))
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertFlag(r, dns.flags.AA)
        self.assertEqual(addresses(r, "A"), {"203.0.113.5"})
        self.assertEqual(addresses(r, "AAAA"), {"2001:db8::5"})

    @defer.inlineCallbacks
    def test_wildcard_alias(self):
        """C{*.alice.<suffix>} answers names two labels below alice."""
        r = yield self.udp(query(f"x.y.alice.{SUFFIX}", "A"))
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertFlag(r, dns.flags.AA)
        self.assertEqual(addresses(r, "A"), {"203.0.113.5"})
        self.assertEqual(r.answer[0].name, dns.name.from_text(f"x.y.alice.{SUFFIX}"))

    @defer.inlineCallbacks
    def test_additional_name_other_domain(self):
        """An additional name outside every zone of ours answers the user's address."""
        r = yield self.udp(query("gateway.example.info", "AAAA"))
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertFlag(r, dns.flags.AA)
        self.assertEqual(addresses(r, "AAAA"), {"2001:db8::5"})

    @defer.inlineCallbacks
    def test_offline_with_offline_ip(self):
        """An offline user answers its offline IP, not its last address."""
        r = yield self.udp(query(f"carol.{SUFFIX}", "A"))
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertEqual(addresses(r, "A"), {"192.0.2.200"})
        self.assertEqual(r.answer[0].ttl, self.service.default_ttl)

    @defer.inlineCallbacks
    def test_apex_soa(self):
        """SOA at the suffix apex comes from the settings, with AA."""
        r = yield self.udp(query(SUFFIX, "SOA"))
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertFlag(r, dns.flags.AA)
        [rrset] = r.answer
        self.assertEqual(rrset.ttl, 3600)
        [soa] = rrset
        self.assertEqual(soa.mname, dns.name.from_text(f"ns1.{SUFFIX}"))
        self.assertEqual(soa.rname, dns.name.from_text(f"hostmaster.{SUFFIX}"))
        self.assertEqual(soa.minimum, 60)

    @defer.inlineCallbacks
    def test_apex_ns_with_glue(self):
        """NS at the apex names ns1, with its glue A and AAAA in ADDITIONAL."""
        r = yield self.udp(query(SUFFIX, "NS"))
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertFlag(r, dns.flags.AA)
        [rrset] = r.answer
        self.assertEqual([rd.target for rd in rrset], [dns.name.from_text(f"ns1.{SUFFIX}")])
        glue = {rd.address for rrset in r.additional for rd in rrset}
        self.assertEqual(glue, {"192.0.2.53", "2001:db8::53"})

    @defer.inlineCallbacks
    def test_glue_a(self):
        """The name server's own name answers its glue address."""
        r = yield self.udp(query(f"ns1.{SUFFIX}", "A"))
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertFlag(r, dns.flags.AA)
        self.assertEqual(addresses(r, "A"), {"192.0.2.53"})

    @defer.inlineCallbacks
    def test_rd_clear_copied(self):
        """A query without RD gets a response without RD."""
        q = query(f"alice.{SUFFIX}", "A")
        q.flags &= ~dns.flags.RD
        r = yield self.udp(q)
        self.assertFlag(r, dns.flags.RD, False)
        self.assertEqual(addresses(r, "A"), {"203.0.113.5"})

    @defer.inlineCallbacks
    def test_rd_set_copied(self):
        """A query with RD gets a response with RD (and no RA: not a resolver)."""
        q = query(f"alice.{SUFFIX}", "A")
        q.flags |= dns.flags.RD
        r = yield self.udp(q)
        self.assertFlag(r, dns.flags.RD)
        self.assertFlag(r, dns.flags.RA, False)

    @defer.inlineCallbacks
    def test_rd_copied_on_negative(self):
        """RD is copied into negative answers as well."""
        q = query(f"nobody.{SUFFIX}", "A")
        q.flags |= dns.flags.RD
        r = yield self.udp(q)
        self.assertRcode(r, dns.rcode.NXDOMAIN)
        self.assertFlag(r, dns.flags.RD)

    @defer.inlineCallbacks
    def test_tcp_two_queries_one_connection(self):
        """Two queries pipelined on one TCP connection get two answers."""
        q1 = query(f"alice.{SUFFIX}", "A")
        q2 = query(f"bob.{SUFFIX}", "A")
        replies = yield self.raw_tcp(framed(q1.to_wire()) + framed(q2.to_wire()), 2)
        self.assertEqual(len(replies), 2)
        self.assertNotIn(None, replies)
        responses = {}
        for wire in replies:
            r = dns.message.from_wire(wire)
            responses[r.id] = r
        self.assertEqual(set(responses), {q1.id, q2.id})
        self.assertTrue(q1.is_response(responses[q1.id]))
        self.assertTrue(q2.is_response(responses[q2.id]))
        self.assertEqual(addresses(responses[q1.id], "A"), {"203.0.113.5"})
        self.assertEqual(addresses(responses[q2.id], "A"), {"198.51.100.7"})


class NegativeTests(ServerTestsMixin, unittest.TestCase):
    """NXDOMAIN, NODATA and REFUSED."""

    @defer.inlineCallbacks
    def test_nxdomain_under_suffix(self):
        """
        An unknown name under the suffix is NXDOMAIN with AA and the suffix
        SOA, whose TTL is min(SOA minimum 60, SOA TTL 3600).
        """
        r = yield self.udp(query(f"nobody.{SUFFIX}", "A"))
        self.assertNegative(r, dns.rcode.NXDOMAIN, SUFFIX, 60)
        [soa] = r.authority[0]
        self.assertEqual(soa.mname, dns.name.from_text(f"ns1.{SUFFIX}"))

    @defer.inlineCallbacks
    def test_nodata_known_user_mx(self):
        """A user's name asked MX is NODATA: NOERROR, no answer, AA, suffix SOA."""
        r = yield self.udp(query(f"alice.{SUFFIX}", "MX"))
        self.assertNegative(r, dns.rcode.NOERROR, SUFFIX, 60)

    @defer.inlineCallbacks
    def test_nodata_wildcard_alias_mx(self):
        """A wildcard alias asked MX is NODATA, not NXDOMAIN."""
        r = yield self.udp(query(f"x.alice.{SUFFIX}", "MX"))
        self.assertNegative(r, dns.rcode.NOERROR, SUFFIX, 60)

    @defer.inlineCallbacks
    def test_nodata_offline_without_ip(self):
        """An offline user without offline IP asked A is NODATA with the SOA."""
        r = yield self.udp(query(f"dave.{SUFFIX}", "A"))
        self.assertNegative(r, dns.rcode.NOERROR, SUFFIX, 60)

    @defer.inlineCallbacks
    def test_nodata_missing_family(self):
        """A user without an IPv6 address asked AAAA is NODATA."""
        r = yield self.udp(query(f"bob.{SUFFIX}", "AAAA"))
        self.assertNegative(r, dns.rcode.NOERROR, SUFFIX, 60)

    @defer.inlineCallbacks
    def test_nodata_apex(self):
        """The apex asked MX is NODATA with the SOA at its negative TTL (60, not 3600)."""
        r = yield self.udp(query(SUFFIX, "MX"))
        self.assertNegative(r, dns.rcode.NOERROR, SUFFIX, 60)

    @defer.inlineCallbacks
    def test_disabled_user(self):
        """A disabled user's name is NXDOMAIN although it had an address."""
        r = yield self.udp(query(f"eve.{SUFFIX}", "A"))
        self.assertNegative(r, dns.rcode.NXDOMAIN, SUFFIX, 60)

    @defer.inlineCallbacks
    def test_refused_outside_zones(self):
        """A name in no zone of ours is REFUSED (never an open resolver)."""
        r = yield self.udp(query("www.example.net", "A"))
        self.assertRcode(r, dns.rcode.REFUSED)
        self.assertEqual(r.answer, [])
        self.assertEqual(r.authority, [])
        self.assertFlag(r, dns.flags.AA, False)


class HostZoneTests(ServerTestsMixin, unittest.TestCase):
    """The operator's zone file C{example.org} behind the resolver."""

    @defer.inlineCallbacks
    def test_soa_ns_mx(self):
        """The host zone's SOA, NS and MX answer with AA."""
        r = yield self.udp(query("example.org", "SOA"))
        self.assertFlag(r, dns.flags.AA)
        [soa] = r.answer[0]
        self.assertEqual(soa.serial, 2024010101)
        r = yield self.udp(query("example.org", "NS"))
        self.assertFlag(r, dns.flags.AA)
        self.assertEqual([rd.target.to_text() for rd in r.answer[0]], ["ns1.example.org."])
        r = yield self.udp(query("example.org", "MX"))
        self.assertFlag(r, dns.flags.AA)
        self.assertEqual(
            [(rd.preference, rd.exchange.to_text()) for rd in r.answer[0]],
            [(10, "mail.example.org.")],
        )

    @defer.inlineCallbacks
    def test_txt_with_spaces(self):
        """TXT strings keep their spaces and stay separate strings."""
        r = yield self.udp(query("txt.example.org", "TXT"))
        self.assertRcode(r, dns.rcode.NOERROR)
        [rd] = r.answer[0]
        self.assertEqual(rd.strings, (b"hello world", b"second string"))

    @defer.inlineCallbacks
    def test_cname_at(self):
        """C{www CNAME @} points at the apex, and an A query follows it."""
        r = yield self.udp(query("www.example.org", "CNAME"))
        [rd] = r.answer[0]
        self.assertEqual(rd.target, dns.name.from_text("example.org"))
        r = yield self.udp(query("www.example.org", "A"))
        self.assertRcode(r, dns.rcode.NOERROR)
        cname = r.find_rrset(r.answer, dns.name.from_text("www.example.org"), dns.rdataclass.IN, dns.rdatatype.CNAME)
        self.assertEqual(cname[0].target, dns.name.from_text("example.org"))
        apex = r.find_rrset(r.answer, dns.name.from_text("example.org"), dns.rdataclass.IN, dns.rdatatype.A)
        self.assertEqual({rd.address for rd in apex}, {"192.0.2.10"})

    @defer.inlineCallbacks
    def test_nxdomain_host_zone(self):
        """
        An unknown name in the host zone is NXDOMAIN with AA and the host
        zone's SOA, TTL min(SOA minimum 3600, SOA TTL 300).
        """
        r = yield self.udp(query("nothing.example.org", "A"))
        self.assertNegative(r, dns.rcode.NXDOMAIN, "example.org", 300)

    @defer.inlineCallbacks
    def test_nodata_host_zone(self):
        """A host-zone name asked a type it lacks is NODATA, SOA TTL min(3600, 300)."""
        r = yield self.udp(query("txt.example.org", "A"))
        self.assertNegative(r, dns.rcode.NOERROR, "example.org", 300)

    @defer.inlineCallbacks
    def test_user_name_in_host_zone(self):
        """A host-zone name that is a user's additional name: dynamic A, zone's MX."""
        r = yield self.udp(query("home.example.org", "A"))
        self.assertFlag(r, dns.flags.AA)
        self.assertEqual(addresses(r, "A"), {"198.51.100.7"})
        self.assertEqual(r.answer[0].ttl, 60)
        r = yield self.udp(query("home.example.org", "MX"))
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertFlag(r, dns.flags.AA)
        self.assertEqual(
            [(rd.preference, rd.exchange.to_text()) for rd in r.answer[0]],
            [(20, "mail.example.org.")],
        )
        r = yield self.udp(query("home.example.org", "AAAA"))
        self.assertNegative(r, dns.rcode.NOERROR, "example.org", 300)


class TruncationTests(ServerTestsMixin, unittest.TestCase):
    """UDP answers larger than the client's limit are truncated with TC."""

    @defer.inlineCallbacks
    def test_tc_without_edns(self):
        """An answer over 512 bytes to a query without EDNS: TC and no records."""
        r = yield self.udp(query("medium.example.org", "TXT", use_edns=False))
        self.assertFlag(r, dns.flags.TC)
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertEqual(r.answer, [])
        self.assertEqual(r.edns, -1)
        self.assertEqual(len(r.question), 1)

    @defer.inlineCallbacks
    def test_edns_raises_limit(self):
        """With EDNS payload 4096 the same ~600-byte answer fits in UDP."""
        r = yield self.udp(query("medium.example.org", "TXT", use_edns=0, payload=4096))
        self.assertFlag(r, dns.flags.TC, False)
        self.assertEqual(r.answer[0][0].strings, (LONG.encode(),) * 3)
        self.assertEqual(r.edns, 0)
        self.assertEqual(r.payload, 1232)

    @defer.inlineCallbacks
    def test_tc_with_edns_above_1232(self):
        """EDNS payload 4096 is capped at 1232: a ~1.7 KB answer is truncated."""
        r = yield self.udp(query("big.example.org", "TXT", use_edns=0, payload=4096))
        self.assertFlag(r, dns.flags.TC)
        self.assertEqual(r.answer, [])
        self.assertEqual(r.edns, 0)

    @defer.inlineCallbacks
    def test_tcp_full_answer(self):
        """The query truncated over UDP gets the whole RRset over TCP."""
        r = yield self.tcp(query("big.example.org", "TXT", use_edns=False))
        self.assertFlag(r, dns.flags.TC, False)
        [rrset] = r.answer
        self.assertEqual(
            sorted(rd.strings[0] for rd in rrset),
            sorted(f"{i}{LONG}".encode() for i in range(8)),
        )


class RefusalTests(ServerTestsMixin, unittest.TestCase):
    """Zone transfers, other classes and malformed questions."""

    @defer.inlineCallbacks
    def test_axfr_udp(self):
        """AXFR over UDP is REFUSED with no records."""
        r = yield self.udp(query(SUFFIX, "AXFR"))
        self.assertRcode(r, dns.rcode.REFUSED)
        self.assertEqual(r.answer, [])

    @defer.inlineCallbacks
    def test_axfr_tcp(self):
        """AXFR over TCP is REFUSED (no transfer support configured)."""
        r = yield self.tcp(query("example.org", "AXFR"))
        self.assertRcode(r, dns.rcode.REFUSED)
        self.assertEqual(r.answer, [])

    @defer.inlineCallbacks
    def test_ixfr_udp(self):
        """IXFR over UDP is REFUSED."""
        r = yield self.udp(query(SUFFIX, "IXFR"))
        self.assertRcode(r, dns.rcode.REFUSED)
        self.assertEqual(r.answer, [])

    @defer.inlineCallbacks
    def test_ixfr_tcp(self):
        """IXFR over TCP is REFUSED."""
        r = yield self.tcp(query(SUFFIX, "IXFR"))
        self.assertRcode(r, dns.rcode.REFUSED)
        self.assertEqual(r.answer, [])

    @defer.inlineCallbacks
    def test_chaos_class(self):
        """A CHAOS-class query (version.bind) is REFUSED."""
        r = yield self.udp(query("version.bind", "TXT", "CH"))
        self.assertRcode(r, dns.rcode.REFUSED)
        self.assertEqual(r.answer, [])

    @defer.inlineCallbacks
    def test_chaos_class_user_name(self):
        """CHAOS class is REFUSED even for a user's name."""
        r = yield self.udp(query(f"alice.{SUFFIX}", "A", "CH"))
        self.assertRcode(r, dns.rcode.REFUSED)
        self.assertEqual(r.answer, [])

    @defer.inlineCallbacks
    def test_two_questions(self):
        """A query with two questions is FORMERR, the questions not echoed."""
        q = query(f"alice.{SUFFIX}", "A")
        q.find_rrset(
            q.question,
            dns.name.from_text(f"bob.{SUFFIX}"),
            dns.rdataclass.IN,
            dns.rdatatype.A,
            create=True,
            force_unique=True,
        )
        self.assertEqual(len(q.question), 2)
        r = yield self.udp(q)
        self.assertRcode(r, dns.rcode.FORMERR)
        self.assertEqual(r.answer, [])
        self.assertEqual(r.question, [])

    @defer.inlineCallbacks
    def test_edns_version_1(self):
        """EDNS version 1 gets BADVERS (extended rcode 16) with an EDNS 0 OPT."""
        r = yield self.udp(query(f"alice.{SUFFIX}", "A", use_edns=1))
        self.assertEqual(r.rcode(), dns.rcode.BADVERS)
        self.assertEqual(r.rcode(), 16)
        self.assertEqual(r.edns, 0)
        self.assertEqual(r.answer, [])


class OpcodeTests(ServerTestsMixin, unittest.TestCase):
    """Opcodes other than QUERY."""

    def make_update(self):
        u = dns.update.UpdateMessage(SUFFIX)
        u.replace("alice", 60, "A", "192.0.2.1")
        return u

    @defer.inlineCallbacks
    def assertUpdateRefused(self, send):
        u = self.make_update()
        r = yield send(u)
        self.assertEqual(r.id, u.id)
        self.assertFlag(r, dns.flags.QR)
        self.assertEqual(r.opcode(), dns.opcode.UPDATE)
        self.assertRcode(r, dns.rcode.NOTIMP)
        answer = self.service.registry.answer(f"alice.{SUFFIX}")
        self.assertEqual([str(a) for a in answer.addresses], ["203.0.113.5", "2001:db8::5"])

    def test_update_udp(self):
        """An UPDATE over UDP gets NOTIMP, same ID, QR, opcode UPDATE; nothing changes."""
        return self.assertUpdateRefused(self.udp)

    def test_update_tcp(self):
        """An UPDATE over TCP gets NOTIMP, same ID, QR, opcode UPDATE; nothing changes."""
        return self.assertUpdateRefused(self.tcp)

    @defer.inlineCallbacks
    def assertNotImplemented(self, opcode):
        q = query("example.org", "SOA")
        q.set_opcode(opcode)
        r = yield self.udp(q)
        self.assertEqual(r.id, q.id)
        self.assertFlag(r, dns.flags.QR)
        self.assertEqual(r.opcode(), opcode)
        self.assertRcode(r, dns.rcode.NOTIMP)
        self.assertEqual(r.answer, [])

    @defer.inlineCallbacks
    def test_notify(self):
        """
        NOTIFY for one of our zones (we are its primary) is acknowledged:
        NOERROR, AA, QR, opcode NOTIFY, the question echoed; for a zone we
        do not serve NOTAUTH without AA. Over UDP and TCP.
        """
        for send in (self.udp, self.tcp):
            for zone, rcode, aa in (
                (SUFFIX, dns.rcode.NOERROR, True),
                ("example.org", dns.rcode.NOERROR, True),
                ("example.net", dns.rcode.NOTAUTH, False),
            ):
                q = query(zone, "SOA")
                q.set_opcode(dns.opcode.NOTIFY)
                q.flags |= dns.flags.AA
                r = yield send(q)
                self.assertEqual(r.id, q.id)
                self.assertFlag(r, dns.flags.QR)
                self.assertEqual(r.opcode(), dns.opcode.NOTIFY)
                self.assertRcode(r, rcode)
                self.assertEqual(bool(r.flags & dns.flags.AA), aa, zone)
                self.assertEqual(r.question, q.question)
                self.assertEqual(r.answer, [])

    def test_status(self):
        """STATUS gets a reply with QR, opcode STATUS and NOTIMP."""
        return self.assertNotImplemented(dns.opcode.STATUS)

    def test_iquery(self):
        """IQUERY (inverse query) gets a reply with QR, opcode IQUERY and NOTIMP."""
        return self.assertNotImplemented(dns.opcode.IQUERY)

    @defer.inlineCallbacks
    def test_unassigned_opcode(self):
        """An unassigned opcode (3) gets QR, the same opcode and NOTIMP."""
        wire = bytearray(query("example.org", "SOA").to_wire())
        wire[2] = (wire[2] & 0x87) | (3 << 3)
        data = yield self.raw_udp(bytes(wire))
        self.assertIsNotNone(data)
        ident, flags1, flags2, *_ = header(data)
        self.assertEqual(ident, header(bytes(wire))[0])
        self.assertTrue(flags1 & 0x80)
        self.assertEqual((flags1 >> 3) & 0xF, 3)
        self.assertEqual(flags2 & 0xF, dns.rcode.NOTIMP)


class MalformedTests(ServerTestsMixin, unittest.TestCase):
    """Garbage and responses: no crash, FORMERR or silence, and service goes on."""

    @defer.inlineCallbacks
    def assertStillServing(self, transport="udp"):
        send = self.udp if transport == "udp" else self.tcp
        r = yield send(query(f"alice.{SUFFIX}", "A"))
        self.assertEqual(addresses(r, "A"), {"203.0.113.5"})

    @defer.inlineCallbacks
    def test_response_not_answered_udp(self):
        """A response (QR=1) sent to the server gets no reply; service goes on."""
        q = query(f"alice.{SUFFIX}", "A")
        q.flags |= dns.flags.QR
        data = yield self.raw_udp(q.to_wire(), NO_REPLY_WAIT)
        self.assertIsNone(data)
        yield self.assertStillServing()

    @defer.inlineCallbacks
    def test_response_not_answered_tcp(self):
        """A response (QR=1) on TCP gets no reply: the connection is closed."""
        q = query(f"alice.{SUFFIX}", "A")
        q.flags |= dns.flags.QR
        replies = yield self.raw_tcp(framed(q.to_wire()))
        self.assertEqual(replies, [None])
        yield self.assertStillServing("tcp")

    @defer.inlineCallbacks
    def test_short_header_udp(self):
        """A 5-byte datagram (a truncated header) gets no reply; service goes on."""
        data = yield self.raw_udp(b"\x12\x34\x01\x00\x00", NO_REPLY_WAIT)
        self.assertIsNone(data)
        yield self.assertStillServing()

    @defer.inlineCallbacks
    def test_missing_question_udp(self):
        """A header claiming one question but carrying none: FORMERR, same ID."""
        data = yield self.raw_udp(struct.pack("!HBBHHHH", 0xBEEF, 0x01, 0, 1, 0, 0, 0))
        self.assertIsNotNone(data)
        ident, flags1, flags2, qd, an, ns, ar = header(data)
        self.assertEqual(ident, 0xBEEF)
        self.assertTrue(flags1 & 0x80)
        self.assertTrue(flags1 & 0x01)  # RD copied
        self.assertEqual(flags2 & 0xF, dns.rcode.FORMERR)
        self.assertEqual((qd, an, ns, ar), (0, 0, 0, 0))
        yield self.assertStillServing()

    @defer.inlineCallbacks
    def test_compression_loop_udp(self):
        """A question name whose pointer points at itself: FORMERR; service goes on."""
        packet = struct.pack("!HBBHHHH", 0x4242, 0, 0, 1, 0, 0, 0)
        packet += b"\xc0\x0c" + struct.pack("!HH", 1, 1)
        data = yield self.raw_udp(packet)
        self.assertIsNotNone(data)
        ident, flags1, flags2, *_ = header(data)
        self.assertEqual(ident, 0x4242)
        self.assertTrue(flags1 & 0x80)
        self.assertEqual(flags2 & 0xF, dns.rcode.FORMERR)
        yield self.assertStillServing()

    @defer.inlineCallbacks
    def test_missing_question_tcp(self):
        """Over TCP, a header without its question: FORMERR with the same ID."""
        packet = struct.pack("!HBBHHHH", 0x5151, 0, 0, 1, 0, 0, 0)
        [data] = yield self.raw_tcp(framed(packet))
        self.assertIsNotNone(data)
        ident, flags1, flags2, *_ = header(data)
        self.assertEqual(ident, 0x5151)
        self.assertTrue(flags1 & 0x80)
        self.assertEqual(flags2 & 0xF, dns.rcode.FORMERR)
        yield self.assertStillServing("tcp")

    @defer.inlineCallbacks
    def test_garbage_tcp(self):
        """Over TCP, a 3-byte message closes the connection; a new one works."""
        replies = yield self.raw_tcp(framed(b"\xff\xfe\xfd"))
        self.assertEqual(replies, [None])
        yield self.assertStillServing("tcp")

    @defer.inlineCallbacks
    def test_garbage_then_query_tcp(self):
        """Over TCP, FORMERR for garbage and then an answer on the same connection."""
        garbage = struct.pack("!HBBHHHH", 0x6161, 0, 0, 1, 0, 0, 0) + b"\x3f" + b"\xff" * 10
        q = query(f"alice.{SUFFIX}", "A")
        first, second = yield self.raw_tcp(framed(garbage) + framed(q.to_wire()), 2)
        self.assertEqual(header(first)[0], 0x6161)
        self.assertEqual(header(first)[2] & 0xF, dns.rcode.FORMERR)
        self.assertEqual(addresses(dns.message.from_wire(second), "A"), {"203.0.113.5"})


class NotLoadedTests(ServerTestsMixin, unittest.TestCase):
    """Before the service has loaded the store."""

    start_service = False

    @defer.inlineCallbacks
    def test_servfail_until_loaded(self):
        """Before the registry is loaded a user query is SERVFAIL; after, it answers."""
        yield self.store.add_user(User("alice"))
        yield self.store.save_state(HostState("alice", ipv4="203.0.113.5", ttl=90))
        self.assertFalse(self.service.registry.loaded)
        r = yield self.udp(query(f"alice.{SUFFIX}", "A"))
        self.assertRcode(r, dns.rcode.SERVFAIL)
        self.assertEqual(r.answer, [])
        yield defer.ensureDeferred(self.service.start())
        r = yield self.udp(query(f"alice.{SUFFIX}", "A"))
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertEqual(addresses(r, "A"), {"203.0.113.5"})
        self.assertEqual(r.answer[0].ttl, 90)


class WaitsForLoadTests(ServerTestsMixin, unittest.TestCase):
    """
    A UDP port of a server that knows when the users are loaded
    (C{when_loaded}, as twistd dyndns sets it) answers the first batch it
    reads meanwhile (SERVFAIL) and then reads nothing until they are: a
    query flood during the load would otherwise pass the GIL to and from
    the loading thread at every system call.
    """

    start_service = False

    @defer.inlineCallbacks
    def test_reads_again_once_loaded(self):
        yield self.store.add_user(User("alice"))
        yield self.store.save_state(HostState("alice", ipv4="203.0.113.5", ttl=90))
        factory = DynDNSServerFactory(DynDNSResolver(self.service.registry), [])
        factory.when_loaded = self.service.when_loaded
        udp, tcp = listen_dns(reactor, factory, 0, HOST)
        self.addCleanup(udp.stopListening)
        self.addCleanup(tcp.stopListening)
        port = udp.getHost().port
        self.assertIn(udp, reactor.getReaders())
        r = yield threads.deferToThread(dns.query.udp, query(f"alice.{SUFFIX}", "A"), HOST, timeout=TIMEOUT, port=port)
        self.assertRcode(r, dns.rcode.SERVFAIL)
        self.assertNotIn(udp, reactor.getReaders())
        # Sent while the port does not read: kept in the socket's buffer.
        waiting = threads.deferToThread(dns.query.udp, query(f"alice.{SUFFIX}", "A"), HOST, timeout=TIMEOUT, port=port)
        yield defer.ensureDeferred(self.service.start())
        self.assertIn(udp, reactor.getReaders())
        self.assertIsNone(self.service.when_loaded())
        r = yield waiting
        self.assertRcode(r, dns.rcode.NOERROR)
        self.assertEqual(addresses(r, "A"), {"203.0.113.5"})

    def test_without_when_loaded_reading_goes_on(self):
        """Embedded without the hook: SERVFAIL meanwhile, as before, and the port keeps reading."""
        self.assertIsNone(self.factory.when_loaded)
        udp = [
            p
            for p in reactor.getReaders()
            if getattr(p, "protocol", None) is not None and getattr(p.protocol, "controller", None) is self.factory
        ]
        self.assertEqual(len(udp), 1)
        return self.udp(query(f"alice.{SUFFIX}", "A")).addCallback(
            lambda r: (self.assertRcode(r, dns.rcode.SERVFAIL), self.assertIn(udp[0], reactor.getReaders()))
        )


class ReadBudgetTests(ServerTestsMixin, unittest.TestCase):
    """
    One read of a UDP port answers datagrams for at most C{READ_BUDGET},
    then gives the reactor back; the rest are answered in the next turns.
    """

    def queued(self, count: int) -> socket.socket:
        """A client that has sent C{count} queries, waiting in our port's buffer (the reactor is not running)."""
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(client.close)
        client.bind((HOST, 0))
        for i in range(count):
            message = query(f"alice.{SUFFIX}", "A")
            message.id = i
            client.sendto(message.to_wire(), (HOST, self.port))
        client.setblocking(False)
        return client

    @staticmethod
    def answered(client: socket.socket) -> list[int]:
        ids = []
        while True:
            try:
                ids.append(struct.unpack("!H", client.recv(4096)[:2])[0])
            except BlockingIOError:
                return ids

    def port_of_the_factory(self):
        (udp,) = [
            p for p in reactor.getReaders() if getattr(getattr(p, "protocol", None), "controller", None) is self.factory
        ]
        return udp

    def test_a_read_answers_what_fits_in_the_budget(self):
        self.patch(dns_server, "READ_BUDGET", 60.0)  # a slow machine may take 2 ms for 20
        client = self.queued(20)
        self.port_of_the_factory().doRead()
        self.assertEqual(self.answered(client), list(range(20)))

    @defer.inlineCallbacks
    def test_a_spent_budget_ends_the_read(self):
        self.patch(dns_server, "READ_BUDGET", 0.0)
        client = self.queued(20)
        udp = self.port_of_the_factory()
        udp.doRead()
        self.assertEqual(self.answered(client), [0], "one datagram, then the turn is over")
        self.assertEqual(udp.maxThroughput, 0)
        udp.doRead()  # not a new turn yet: nothing read
        self.assertEqual(self.answered(client), [])
        ids: list[int] = []
        for _ in range(200):  # the next turns read on, one datagram each
            yield task.deferLater(reactor, 0, lambda: None)
            ids += self.answered(client)
            if len(ids) == 19:
                break
        self.assertEqual(ids, list(range(1, 20)))
        yield task.deferLater(reactor, 0, lambda: None)
        self.assertEqual(udp.maxThroughput, type(udp).maxThroughput, "the next read may take a full budget")


class CachedSendTests(unittest.SynchronousTestCase):
    """Answers from the cache go straight to the port's socket; a datagram the kernel cannot take now is lost, not an error."""

    class Socket:
        def __init__(self, error: OSError | None = None) -> None:
            self.error = error
            self.sent: list[tuple[bytes, Any]] = []

        def sendto(self, data: bytes, address: Any) -> int:
            if self.error is not None:
                raise self.error
            self.sent.append((data, address))
            return len(data)

    class Port:
        def __init__(self, sock: Any) -> None:
            self.socket = sock
            self.written: list[tuple[bytes, Any]] = []

        def write(self, data: bytes, address: Any) -> None:
            self.written.append((data, address))

    def protocol(self, sock: Any) -> tuple[Any, Any]:
        protocol = dns_server.DNSDatagramProtocol(DynDNSServerFactory(None, []))
        port = self.Port(sock)
        protocol.transport = port
        protocol.startProtocol()
        return protocol, port

    def test_sent_on_the_socket(self) -> None:
        sock = self.Socket()
        protocol, port = self.protocol(sock)
        protocol._send(b"answer", ("192.0.2.1", 53))
        self.assertEqual((sock.sent, port.written), ([(b"answer", ("192.0.2.1", 53))], []))

    def test_lost_when_the_kernel_cannot_take_it(self) -> None:
        import errno

        for error in (BlockingIOError(errno.EAGAIN, "full"), ConnectionRefusedError(), OSError(errno.ENOBUFS, "no")):
            protocol, port = self.protocol(self.Socket(error))
            protocol._send(b"answer", ("192.0.2.1", 53))
            self.assertEqual(port.written, [])
        protocol, port = self.protocol(self.Socket(InterruptedError()))
        protocol._send(b"answer", ("192.0.2.1", 53))
        self.assertEqual(port.written, [(b"answer", ("192.0.2.1", 53))], "interrupted: once more, through the port")
        protocol, _ = self.protocol(self.Socket(OSError(errno.EBADF, "closed")))
        self.assertRaises(OSError, protocol._send, b"answer", ("192.0.2.1", 53))


class StreamReadBudgetTests(ServerTestsMixin, unittest.TestCase):
    """Pipelined TCP queries are answered a budget a reactor turn; the connection stops reading meanwhile."""

    class Turns:
        """A reactor's timed calls, run a turn at a time (what is called later in a turn runs in the next)."""

        def __init__(self) -> None:
            self.pending: list[Any] = []

        def callLater(self, delay: float, function: Any, *args: Any) -> None:
            self.pending.append(lambda: function(*args))

        def advance(self, _: float = 0) -> None:
            calls, self.pending = self.pending, []
            for call in calls:
                call()

    def connect(self) -> tuple[Any, StringTransport, Turns]:
        turns = self.Turns()
        protocol = self.factory.buildProtocol(("127.0.0.1", 5353))
        protocol.idleTimeout = protocol.messageTimeout = None
        transport = StringTransport()
        transport.reactor = turns  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        self.addCleanup(protocol.connectionLost, None)
        return protocol, transport, turns

    @staticmethod
    def answers(transport: StringTransport) -> list[int]:
        data, ids = transport.value(), []
        while data:
            (length,) = struct.unpack("!H", data[:2])
            ids.append(struct.unpack("!H", data[2:4])[0])
            data = data[2 + length :]
        return ids

    def pipelined(self, count: int) -> bytes:
        messages = []
        for i in range(count):
            message = query(f"alice.{SUFFIX}", "A")
            message.id = i
            messages.append(framed(message.to_wire()))
        return b"".join(messages)

    def test_spent_budget_pauses_the_connection(self) -> None:
        self.patch(dns_server, "READ_BUDGET", 0.0)
        protocol, transport, clock = self.connect()
        protocol.dataReceived(self.pipelined(5))
        self.assertEqual(self.answers(transport), [0])
        self.assertEqual(transport.producerState, "paused")
        for turn in range(1, 5):
            clock.advance(0)
            self.assertEqual(self.answers(transport), list(range(turn + 1)))
        clock.advance(0)
        self.assertEqual(transport.producerState, "producing", "read on once all is answered")

    def test_within_the_budget_all_at_once(self) -> None:
        self.patch(dns_server, "READ_BUDGET", 60.0)
        protocol, transport, clock = self.connect()
        protocol.dataReceived(self.pipelined(20))
        self.assertEqual(self.answers(transport), list(range(20)))
        self.assertEqual(transport.producerState, "producing")


class WhenLoadedTests(unittest.TestCase):
    def test_fires_when_loading_fails_too(self):
        """A store that cannot be read still lets the UDP ports read (and answer SERVFAIL)."""

        class Broken(MemoryUserStore):
            def load(self):
                return defer.fail(OSError("disk gone"))

        service = DynDNSService(Broken(), SUFFIX, poll_interval=None)
        waiting = service.when_loaded()
        self.assertIsNotNone(waiting)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertIsNone(self.successResultOf(waiting))
        self.assertIsNone(service.when_loaded())
        self.assertFalse(service.registry.loaded)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
