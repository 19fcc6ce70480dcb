"""
Crafted questions (issue 14 item 5): each gets FORMERR without the bad
question echoed, over UDP and over TCP on real sockets, and nothing raises
out of the server: on TCP the answers to the valid queries before and
after it on the same connection still come. No log line per packet: the
events are counted (C{factory.bad_input}, in /metrics) and at most a
sample is logged. Plus unit tests of the raw-wire helpers.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import dns.message
import dns.rcode
from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from dyndns_plugin.dns.wire import (
    find_option,
    header_reply,
    questions_ok,
    truncate_wire,
)
from tests.test_dns_server import SUFFIX, ServerTestsMixin, addresses, framed, header
from tests.typing_helpers import log_observer

QTYPE_A = struct.pack("!HH", 1, 1)


def label(text: bytes) -> bytes:
    return bytes((len(text),)) + text


def message(ident: int, body: bytes, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HBBHHHH", ident, 0x01, 0, qd, an, ns, ar) + body


#: name -> (packet body after the header, QDCOUNT, (an, ns, ar), question echoed in the reply)
CASES: dict[str, tuple[bytes, int, tuple[int, int, int], bool]] = {
    # A 64-byte label: its length byte 0x40 is the obsolete extended label type.
    "label_64_bytes": (label(b"a" * 64) + label(b"com") + b"\0" + QTYPE_A, 1, (0, 0, 0), False),
    "label_type_0x40": (b"\x41\x01" + b"\xff" * 8 + b"\0" + QTYPE_A, 1, (0, 0, 0), False),
    "label_type_0x80": (b"\x80" + b"b" * 128 + b"\0" + QTYPE_A, 1, (0, 0, 0), False),
    "name_over_255": (label(b"c" * 63) * 4 + b"\0" + QTYPE_A, 1, (0, 0, 0), False),
    # The packet: Twisted's Name.encode raised ValueError on it.
    "dot_label_then_four_63": (label(b".") + label(b"d" * 63) * 4 + b"\0" + QTYPE_A, 1, (0, 0, 0), False),
    "dot_inside_label": (
        label(b"a.b") + label(b"dyn") + label(b"example") + label(b"com") + b"\0" + QTYPE_A,
        1,
        (0, 0, 0),
        False,
    ),
    "compression_loop": (b"\xc0\x0c" + QTYPE_A, 1, (0, 0, 0), False),
    "pointer_forward": (b"\xc0\x12" + QTYPE_A + label(b"com") + b"\0", 1, (0, 0, 0), False),
    "pointer_into_header": (b"\xc0\x02" + QTYPE_A, 1, (0, 0, 0), False),
    "truncated_name": (label(b"alice") + b"\x03dy", 1, (0, 0, 0), False),
    "truncated_type": (label(b"alice") + b"\0\0", 1, (0, 0, 0), False),
    "qdcount_0": (b"", 0, (0, 0, 0), False),
    "qdcount_2": (
        label(b"alice") + label(b"dyn") + label(b"example") + label(b"com") + b"\0" + QTYPE_A + b"\xc0\x0c" + QTYPE_A,
        2,
        (0, 0, 0),
        False,
    ),
    # 129 root questions (found by bench/fuzz.py): echoing them made a 657-byte UDP reply.
    "qdcount_129": (b"\0\0\0\0\0" * 129, 129, (0, 0, 0), False),
    "huge_counts": (
        label(b"alice") + label(b"dyn") + label(b"example") + label(b"com") + b"\0" + QTYPE_A,
        1,
        (65535, 65535, 65535),
        False,
    ),
    "qdcount_65535": (label(b"alice") + b"\0" + QTYPE_A, 65535, (0, 0, 0), False),
}


class LogCapture:
    """Every log event while it is attached."""

    def __init__(self, testcase: unittest.TestCase) -> None:
        self.events: list[dict[str, Any]] = []
        observer = log_observer(self.events.append)
        globalLogPublisher.addObserver(observer)
        testcase.addCleanup(globalLogPublisher.removeObserver, observer)


class BadNameTestsMixin(ServerTestsMixin):
    def assertFormerr(self, data: bytes | None, ident: int, echoed: bool) -> None:
        self.assertIsNotNone(data, "no reply")
        assert data is not None
        got_id, flags1, flags2, qd, an, ns, ar = header(data)
        self.assertEqual(got_id, ident)
        self.assertTrue(flags1 & 0x80)  # QR
        self.assertEqual(flags2 & 0xF, dns.rcode.FORMERR)
        self.assertEqual((an, ns, ar), (0, 0, 0))
        if not echoed:
            self.assertEqual(qd, 0)
            self.assertEqual(len(data), 12)

    @defer.inlineCallbacks
    def check_udp(self, case: str):
        body, qd, (an, ns, ar), echoed = CASES[case]
        data = yield self.raw_udp(message(0x7A7A, body, qd, an, ns, ar))
        self.assertFormerr(data, 0x7A7A, echoed)
        r = yield self.udp(dns.message.make_query(f"alice.{SUFFIX}", "A"))
        self.assertEqual(addresses(r, "A"), {"203.0.113.5"})

    @defer.inlineCallbacks
    def check_tcp(self, case: str):
        """A valid query, the crafted one, a valid one: three answers on one connection."""
        body, qd, (an, ns, ar), echoed = CASES[case]
        before = dns.message.make_query(f"alice.{SUFFIX}", "A")
        after = dns.message.make_query(f"bob.{SUFFIX}", "A")
        stream = framed(before.to_wire()) + framed(message(0x7B7B, body, qd, an, ns, ar)) + framed(after.to_wire())
        first, bad, last = yield self.raw_tcp(stream, 3)
        self.assertEqual(addresses(dns.message.from_wire(first), "A"), {"203.0.113.5"})
        self.assertFormerr(bad, 0x7B7B, echoed)
        self.assertEqual(addresses(dns.message.from_wire(last), "A"), {"198.51.100.7"})


def _make(case: str, transport: str) -> Callable[[Any], Any]:
    def test(self: Any) -> Any:
        return getattr(self, f"check_{transport}")(case)

    test.__name__ = f"test_{transport}_{case}"
    test.__doc__ = f"{case.replace('_', ' ')} over {transport.upper()}: FORMERR, the server goes on."
    return test


class BadNameTests(BadNameTestsMixin, unittest.TestCase):
    """Every crafted question over UDP and TCP."""

    for _case in CASES:
        for _transport in ("udp", "tcp"):
            locals()[f"test_{_transport}_{_case}"] = _make(_case, _transport)
    del _case, _transport

    @defer.inlineCallbacks
    def test_counted_not_logged(self):
        """A flood of bad names: every one counted, at most a sample logged."""
        capture = LogCapture(self)
        body = CASES["dot_label_then_four_63"][0]
        for i in range(40):
            yield self.raw_udp(message(i, body))
        self.assertEqual(self.factory.bad_input["bad_name"], 40)
        lines = [e for e in capture.events if e.get("log_namespace", "").startswith("dyndns_plugin")]
        self.assertLessEqual(len(lines), 10)
        self.assertGreaterEqual(len(lines), 1)

    @defer.inlineCallbacks
    def test_malformed_messages_counted_not_logged(self):
        capture = LogCapture(self)
        good = message(1, CASES["huge_counts"][0], 1, 65535, 65535, 65535)
        for _i in range(30):
            data = yield self.raw_udp(good)
            self.assertFormerr(data, 1, False)
        self.assertEqual(self.factory.bad_input["malformed"], 30)
        self.assertLessEqual(len(capture.events), 10)

    @defer.inlineCallbacks
    def test_unknown_type_not_logged(self):
        """Twisted's resolvers log a debug line per query of an unknown type; ours do not."""
        capture = LogCapture(self)
        for name in (f"alice.{SUFFIX}", "www.example.org", "nowhere.example.net"):
            r = yield self.udp(dns.message.make_query(name, "TYPE65280"))
            self.assertIn(r.rcode(), (dns.rcode.NOERROR, dns.rcode.REFUSED, dns.rcode.NXDOMAIN))
        self.assertEqual(capture.events, [])

    @defer.inlineCallbacks
    def test_encoding_failure_is_servfail(self):
        """An answer that cannot be encoded: SERVFAIL (header only), counted, nothing unhandled."""
        resolver = self.factory.resolver.resolvers[0]

        def broken(name, cls, type, timeout=None):
            from twisted.names import dns as tdns

            bad = tdns.RRHeader(b"." + b"x" * 300, tdns.A, tdns.IN, 60, tdns.Record_A("192.0.2.1"))
            return defer.succeed(([bad], [], []))

        self.patch(resolver, "_lookup", broken)
        for send in (self.udp, self.tcp):
            r = yield send(dns.message.make_query(f"alice.{SUFFIX}", "A"))
            self.assertEqual(r.rcode(), dns.rcode.SERVFAIL)
        self.assertEqual(self.factory.bad_input["error"], 2)
        # Logged (a sample: the first few of their kind), not raised.
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)


class WireHelperTests(unittest.SynchronousTestCase):
    """The raw-wire helpers the server uses before and instead of Twisted's decoder."""

    def test_questions_ok(self) -> None:
        for case, (body, qd, counts, _echoed) in CASES.items():
            if case in ("qdcount_0", "qdcount_2", "qdcount_129", "huge_counts"):
                self.assertTrue(questions_ok(message(1, body, qd, *counts)), case)
            else:
                self.assertFalse(questions_ok(message(1, body, qd, *counts)), case)

    def test_questions_ok_valid_names(self) -> None:
        for name in (".", "a", "alice.dyn.example.com", "x" * 63 + ".example", "_srv._tcp.Example.COM"):
            self.assertTrue(questions_ok(dns.message.make_query(name, "A").to_wire()), name)
        longest = ".".join(["a" * 63] * 3 + ["b" * 61])  # 255 bytes on the wire
        self.assertTrue(questions_ok(dns.message.make_query(longest, "A").to_wire()))
        self.assertFalse(questions_ok(message(1, label(b"a" * 63) * 3 + label(b"b" * 62) + b"\0" + QTYPE_A)))

    def test_backward_pointer_in_second_question(self) -> None:
        body = label(b"alice") + b"\0" + QTYPE_A + label(b"www") + b"\xc0\x0c" + QTYPE_A
        self.assertTrue(questions_ok(message(1, body, 2)))

    def test_header_reply(self) -> None:
        reply = header_reply(0xABCD, 4, True, dns.rcode.SERVFAIL)
        self.assertEqual(header(reply), (0xABCD, 0x80 | (4 << 3) | 1, 2, 0, 0, 0, 0))

    def test_find_option(self) -> None:
        rdata = struct.pack("!HH", 8, 2) + b"xy" + struct.pack("!HH", 10, 3) + b"abc"
        self.assertEqual(find_option(rdata, 10), b"abc")
        self.assertIsNone(find_option(rdata, 12))
        self.assertIsNone(find_option(b"", 10))
        self.assertRaises(ValueError, find_option, rdata + b"\0", 10)
        self.assertRaises(ValueError, find_option, struct.pack("!HH", 10, 9) + b"abc", 10)

    def test_truncate_wire(self) -> None:
        query = dns.message.make_query("zone.example", "SOA")
        response = dns.message.make_response(query)
        response.answer.append(dns.rrset.from_text("zone.example.", 60, "IN", "A", "192.0.2.1"))
        cut = truncate_wire(response.to_wire())
        parsed = dns.message.from_wire(cut)
        self.assertTrue(parsed.flags & dns.flags.TC)
        self.assertEqual(parsed.answer, [])
        self.assertTrue(query.is_response(parsed))
        self.assertEqual(header(truncate_wire(header_reply(7, 5, False, 1)))[1:4], (0x80 | (5 << 3) | 0x02, 1, 0))
