"""
DNS abuse protection in a real C{twistd -n dyndns}: response rate limiting
with real UDP from several 127.0.x.y sources (Linux routes all of 127/8 to
lo), the TC slip as dig shows it (truncated, then dig's own retry over
TCP), DNS cookies against C{dig +cookie}, a verified cookie and TCP not
limited, and a flood of crafted names costing no traceback and a bounded
number of log lines.

The server's configuration: C{[dns.rrl]} at 2 responses a second, slip 2,
no exempt networks (so 127.0.0.1, which the start-up probe uses, is limited
like any source; the tests use other /24s so their flows are their own).
Counts of limited responses depend on how fast the queries arrive, so the
assertions bound them loosely; nothing here measures time.
"""

from __future__ import annotations

import re
import select
import socket
import struct
import time

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode

from tests.integration.clients import SUFFIX, dig
from tests.integration.harness import Server, SharedServerTestCase

RATE = 2
NAME = f"alice.{SUFFIX}"
ALICE = "198.51.100.7"


def send_bursts(port: int, bursts: list[tuple[str, int]], name: str = NAME, quiet: float = 0.5,
                limit: float = 5.0) -> list[list[dns.message.Message]]:
    """
    Send each burst (C{count} queries from C{source}) in turn without
    waiting, then collect the replies of each source until none came for
    C{quiet} seconds (at most C{limit} seconds in all).
    """
    sockets = []
    try:
        for source, count in bursts:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(s)
            s.bind((source, 0))
            for _ in range(count):
                query = dns.message.make_query(name, "A")
                query.flags &= ~dns.flags.RD
                s.sendto(query.to_wire(), ("127.0.0.1", port))
        replies: list[list[dns.message.Message]] = [[] for _ in sockets]
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ready, _, _ = select.select(sockets, [], [], quiet)
            if not ready:
                break
            for s in ready:
                replies[sockets.index(s)].append(dns.message.from_wire(s.recv(65535)))
        return replies
    finally:
        for s in sockets:
            s.close()


def send_burst(source: str, port: int, count: int, name: str = NAME, quiet: float = 0.5,
               limit: float = 5.0) -> list[dns.message.Message]:
    """L{send_bursts} from one source."""
    return send_bursts(port, [(source, count)], name, quiet, limit)[0]


def dig_from(source: str, port: int, *opts: str) -> str:
    """What dig printed asking for alice's A from C{source} (one second, one try)."""
    result = dig(port, NAME, "A", "-b", source, "+time=1", *opts)
    return result.output + result.stderr


def with_cookie(cookie: bytes) -> dns.message.Message:
    query = dns.message.make_query(
        NAME, "A", use_edns=0, options=[dns.edns.GenericOption(dns.edns.COOKIE, cookie)]
    )
    query.flags &= ~dns.flags.RD
    return query


def cookie_of(response: dns.message.Message) -> bytes | None:
    for option in response.options:
        if option.otype == dns.edns.COOKIE:
            return option.to_wire()
    return None


class AbuseTests(SharedServerTestCase):
    """One server for the class; each test uses sources in its own /24."""

    server_options = {"dns": {
        "rrl": {"responses_per_second": RATE, "slip": 2, "exempt": []},
        "cookies": {"secret": "e5e973e5a6b2a43f48e7dc849e37bfcf"},
    }}

    @classmethod
    def prepare(cls, server: Server) -> None:
        server.add_user("alice", "pw", address=[ALICE])

    def test_burst_limited_with_slip(self) -> None:
        """
        40 queries at once from 127.0.1.2: a few answered, the limited ones
        half truncated (TC, no records) and half dropped; another /24 is
        answered meanwhile, and another address of the same /24 is limited.
        """
        replies, same_net, other_net = send_bursts(
            self.server.port, [("127.0.1.2", 40), ("127.0.1.3", 1), ("127.0.2.2", 1)]
        )
        full = [r for r in replies if not r.flags & dns.flags.TC]
        slipped = [r for r in replies if r.flags & dns.flags.TC]
        self.assertGreaterEqual(len(full), 1)
        self.assertLessEqual(len(full), 12)
        self.assertGreaterEqual(len(slipped), 10)
        self.assertLess(len(replies), 35)  # the rest were dropped
        for r in full:
            self.assertEqual([rd.address for rrset in r.answer for rd in rrset], [ALICE])
        for r in slipped:
            self.assertEqual((r.rcode(), r.answer, r.authority), (dns.rcode.NOERROR, [], []))
        # The same /24's bucket is empty: dropped or truncated, never answered.
        self.assertTrue(all(r.flags & dns.flags.TC and not r.answer for r in same_net), same_net)
        self.assertEqual(len(other_net), 1)
        self.assertFalse(other_net[0].flags & dns.flags.TC)
        self.assertEqual(len(other_net[0].answer), 1)

    def test_dig_shows_the_slip_and_retries_over_tcp(self) -> None:
        """
        dig -b 127.0.5.5 +ignore on a drained flow gets the truncated reply
        (flags qr aa tc, no answer); without +ignore dig retries over TCP
        and gets the address.
        """
        source = "127.0.5.5"
        truncated = retried = None
        for _ in range(6):
            send_burst(source, self.server.port, 10, quiet=0.2)
            out = dig_from(source, self.server.port, "+ignore")
            flags = re.search(r";; flags: ([a-z ]*);", out)
            if flags and "tc" in flags.group(1).split():
                truncated = out
                break
        self.assertIsNotNone(truncated, "dig never saw a truncated reply")
        self.assertRegex(truncated, r"ANSWER: 0,")
        for _ in range(6):
            send_burst(source, self.server.port, 10, quiet=0.2)
            out = dig_from(source, self.server.port)
            if "Truncated, retrying in TCP mode" in out:
                retried = out
                break
        self.assertIsNotNone(retried, "dig never retried over TCP")
        self.assertIn(ALICE, retried)
        self.assertNotRegex(retried.split("retrying in TCP mode", 1)[1], r"flags: [a-z ]*\btc\b")

    def test_dig_cookie(self) -> None:
        """
        dig +cookie: our answer carries a 16-byte server cookie that dig
        calls good; sent back with +cookie=..., it verifies and comes back
        the same; from another address it does not verify (a new one).
        """
        out = dig_from("127.0.3.2", self.server.port, "+cookie")
        match = re.search(r"; COOKIE: ([0-9a-f]{48}) \(good\)", out)
        self.assertIsNotNone(match, out)
        cookie = match.group(1)
        self.assertEqual(cookie[16:24], "01000000")  # version 1, reserved
        out = dig_from("127.0.3.2", self.server.port, f"+cookie={cookie}")
        self.assertRegex(out, rf"; COOKIE: {cookie} \(good\)")
        self.assertIn(ALICE, out)
        out = dig_from("127.0.3.3", self.server.port, f"+cookie={cookie}")
        match = re.search(r"; COOKIE: ([0-9a-f]{48})", out)
        self.assertIsNotNone(match, out)
        self.assertEqual(match.group(1)[:16], cookie[:16])
        self.assertNotEqual(match.group(1), cookie)

    def test_valid_cookie_not_limited(self) -> None:
        """A source that proved its address with our cookie gets every answer."""
        source = "127.0.4.2"
        first = dns.query.udp(with_cookie(b"\x01" * 8), "127.0.0.1", port=self.server.port,
                              source=source, timeout=2)
        cookie = cookie_of(first)
        self.assertEqual(len(cookie), 24)
        send_burst(source, self.server.port, 20, quiet=0.2)  # drained without a cookie
        for _ in range(20):
            reply = dns.query.udp(with_cookie(cookie), "127.0.0.1", port=self.server.port,
                                  source=source, timeout=2)
            self.assertFalse(reply.flags & dns.flags.TC)
            self.assertEqual(len(reply.answer), 1)

    def test_tcp_not_limited(self) -> None:
        source = "127.0.6.2"
        send_burst(source, self.server.port, 20, quiet=0.2)
        for _ in range(10):
            query = dns.message.make_query(NAME, "A")
            reply = dns.query.tcp(query, "127.0.0.1", port=self.server.port, source=source, timeout=3)
            self.assertEqual(len(reply.answer), 1)

    def test_crafted_names_flood(self) -> None:
        """
        300 copies of the issue's packet (a first label "." then four
        63-byte labels): FORMERR each (within the limit), no traceback, a
        bounded sample in the log; then normal answers from elsewhere.
        """
        body = b"\x01." + (b"\x3f" + b"d" * 63) * 4 + b"\0" + struct.pack("!HH", 1, 1)
        replies = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.7.2", 0))
            for i in range(300):
                s.sendto(struct.pack("!HBBHHHH", i, 1, 0, 1, 0, 0, 0) + body, ("127.0.0.1", self.server.port))
            while select.select([s], [], [], 0.5)[0]:
                data = s.recv(65535)
                self.assertEqual(data[3] & 0xF, dns.rcode.FORMERR)
                self.assertEqual(struct.unpack("!H", data[4:6])[0], 0)  # no question echoed
                replies += 1
        self.assertGreaterEqual(replies, 1)
        self.assertLess(replies, 300)  # errors are rate limited too
        reply = dns.query.udp(dns.message.make_query(NAME, "A"), "127.0.0.1", port=self.server.port,
                              source="127.0.8.2", timeout=2)
        self.assertEqual(len(reply.answer), 1)
        log = self.server.read_log()
        self.assertNotIn("Traceback", log)
        self.assertLessEqual(log.count("FORMERR for a message"), 10)
