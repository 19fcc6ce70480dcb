"""
The NOTIFY sender (L{dyndns_plugin.replication.notify.Notifier}) against real UDP
sockets on 127.0.0.1.

Time is a L{task.Clock} (the resend schedule is checked exactly, and no
test waits for it); the sockets are the real reactor's, reached through
L{LoopbackReactor}, which also binds the notifier's own socket to
127.0.0.1. The secondary is L{Secondary}, a Twisted UDP peer that records
what arrives and answers when told to. Messages are read with dnspython.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import time
from typing import Any, Callable

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import DatagramProtocol
from twisted.trial import unittest

from dyndns_plugin.dns.resolver import DynDNSResolver
from dyndns_plugin.dns.server import DynDNSServerFactory, listen_dns
from dyndns_plugin.dns.signing import TSIGKey, labels_of
from dyndns_plugin.model import User
from dyndns_plugin.replication.journal import ZoneState
from dyndns_plugin.replication.notify import Notifier
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.tap import build_service, load_zones
from tests.dns_helpers import example_suffix_zone, memory_settings
from tests.typing_helpers import udp_reactor

SUFFIX = "dyn.example.com"
HOST = "127.0.0.1"
KEY_NAME = "notify-key.example."
KEY_SECRET = base64.b64encode(b"the secret the secondaries share").decode()


class LoopbackReactor(task.Clock):
    """A clock whose C{listenUDP} opens a real socket on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        self.interfaces: list[str] = []
        self.ports: list[Any] = []

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:
        self.interfaces.append(interface)
        listening = udp_reactor().listenUDP(port, protocol, interface=HOST, maxPacketSize=maxPacketSize)
        self.ports.append(listening)
        return listening


class Secondary(DatagramProtocol):
    """A secondary: records (message, sender address); C{reply} answers each one if set."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.reply: Callable[[bytes], bytes | None] | None = None

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received.append((data, addr))
        if self.reply is not None:
            answer = self.reply(data)
            if answer is not None:
                assert self.transport is not None, "answering while listening"
                self.transport.write(answer, addr)

    def messages(self, keyring: Any = None) -> list[dns.message.Message]:
        return [dns.message.from_wire(data, keyring=keyring) for data, _ in self.received]


def acknowledge(data: bytes, ident: int | None = None, rcode: int = dns.rcode.NOERROR) -> bytes:
    """What a secondary answers to a NOTIFY: QR, opcode NOTIFY, the same ID (or C{ident})."""
    wire = bytearray(data[:12])
    wire[2] = 0x80 | (dns.opcode.NOTIFY << 3) | 0x04
    wire[3] = rcode
    wire[4:12] = b"\0\0\0\0\0\0\0\0"
    if ident is not None:
        wire[0:2] = ident.to_bytes(2, "big")
    return bytes(wire)


def make_zone(serial: int = 100) -> ZoneState:
    zone = example_suffix_zone(serial, expire=1209600, glue=False)
    return ZoneState(zone, True, 10)


@defer.inlineCallbacks
def wait_for(condition: Callable[[], bool], what: str, timeout: float = 3.0):
    """Let the real reactor run until C{condition()} (the datagrams to arrive)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        yield task.deferLater(reactor, 0.005, lambda: None)


def settle(seconds: float = 0.15) -> defer.Deferred[None]:
    """Let the real reactor run a little (to see that nothing more arrives)."""
    return task.deferLater(reactor, seconds, lambda: None)


class NotifierTests(unittest.TestCase):
    def setUp(self):
        self.reactor = LoopbackReactor()
        self.reactor.advance(time.time())
        self.secondary = Secondary()
        self.port = reactor.listenUDP(0, self.secondary, interface=HOST)
        self.addCleanup(self.port.stopListening)
        self.target = (HOST, self.port.getHost().port)

    def notifier(self, targets=None, **options: Any) -> Notifier:
        notifier = Notifier(self.reactor, targets or [self.target], **options)
        self.addCleanup(notifier.stop)
        # count what reaches the notifier's socket, to know it was seen
        self.seen = 0
        original = notifier.answer_received

        def counting(data: bytes, addr: Any) -> None:
            self.seen += 1
            original(data, addr)

        notifier.answer_received = counting  # type: ignore[method-assign]
        return notifier

    def arrived(self, count: int, secondary: Secondary | None = None) -> defer.Deferred[None]:
        secondary = secondary or self.secondary
        return wait_for(lambda: len(secondary.received) >= count, f"{count} NOTIFY messages")

    @defer.inlineCallbacks
    def test_message(self):
        """
        A NOTIFY is opcode NOTIFY with AA, not a response, the zone's SOA as
        the question (class IN) and its current SOA in the answer section,
        sent from the notifier's own socket on 127.0.0.1.
        """
        zone = make_zone(4711)
        notifier = self.notifier()
        notifier.notify(zone)
        yield self.arrived(1)
        [message] = self.secondary.messages()
        self.assertEqual(message.opcode(), dns.opcode.NOTIFY)
        self.assertTrue(message.flags & dns.flags.AA)
        self.assertFalse(message.flags & dns.flags.QR)
        self.assertEqual(message.rcode(), dns.rcode.NOERROR)
        [question] = message.question
        self.assertEqual(
            (question.name, question.rdtype, question.rdclass),
            (dns.name.from_text(SUFFIX), dns.rdatatype.SOA, dns.rdataclass.IN),
        )
        [soa] = message.answer
        self.assertEqual((soa.name, soa.rdtype, soa.ttl), (dns.name.from_text(SUFFIX), dns.rdatatype.SOA, 3600))
        self.assertEqual(soa[0].to_text(), f"ns1.{SUFFIX}. hostmaster.{SUFFIX}. 4711 3600 600 1209600 60")
        self.assertEqual((message.authority, message.additional, message.had_tsig), ([], [], False))
        self.assertEqual((notifier.sent, notifier.waiting), (1, 1))
        [interface] = self.reactor.interfaces  # one socket for the IPv4 targets
        self.assertEqual(ipaddress.ip_address(interface).version, 4)
        self.assertEqual(self.secondary.received[0][1][0], HOST)

    @defer.inlineCallbacks
    def test_resend_until_answered(self):
        """
        Unanswered, the NOTIFY is sent again after C{retry}, then after
        twice that, and so on, the same bytes each time; an answer with
        its ID from the target stops it.
        """
        notifier = self.notifier(retry=1.0, retries=5)
        notifier.notify(make_zone())
        yield self.arrived(1)
        self.reactor.advance(0.999)
        yield settle()
        self.assertEqual(len(self.secondary.received), 1, "resent too early")
        self.reactor.advance(0.001)
        yield self.arrived(2)
        self.reactor.advance(1.999)
        yield settle()
        self.assertEqual(len(self.secondary.received), 2, "the interval must double")
        self.reactor.advance(0.001)
        yield self.arrived(3)
        self.assertEqual({data for data, _ in self.secondary.received}, {self.secondary.received[0][0]})
        self.assertEqual(notifier.sent, 3)
        self.secondary.reply = acknowledge
        self.reactor.advance(4)
        yield wait_for(lambda: notifier.answered == 1, "the answer")
        self.assertEqual((notifier.waiting, notifier.given_up), (0, 0))
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.reactor.advance(1000)
        yield settle()
        self.assertEqual((len(self.secondary.received), notifier.sent), (4, 4))

    @defer.inlineCallbacks
    def test_wrong_answers_ignored(self):
        """
        Answers with another ID, from another port of the target, or that
        are not NOTIFY responses do not stop the resending; the right one does.
        """
        notifier = self.notifier(retry=1.0, retries=5)
        notifier.notify(make_zone())
        yield self.arrived(1)
        data, source = self.secondary.received[0]
        ident = int.from_bytes(data[:2], "big")
        self.port.write(acknowledge(data, ident ^ 0x5555), source)
        query_opcode = bytearray(acknowledge(data))
        query_opcode[2] &= 0x87  # opcode QUERY
        self.port.write(bytes(query_opcode), source)
        not_response = bytearray(acknowledge(data))
        not_response[2] &= 0x7F  # QR clear
        self.port.write(bytes(not_response), source)
        self.port.write(acknowledge(data)[:11], source)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind((HOST, 0))
            other.sendto(acknowledge(data), source)
            yield wait_for(lambda: self.seen == 5, "the five wrong answers")
        self.assertEqual((notifier.answered, notifier.waiting), (0, 1))
        self.reactor.advance(1.0)
        yield self.arrived(2)
        self.port.write(acknowledge(data), source)
        yield wait_for(lambda: notifier.answered == 1, "the right answer")
        self.assertEqual(notifier.waiting, 0)
        self.reactor.advance(100)
        yield settle()
        self.assertEqual(len(self.secondary.received), 2)

    @defer.inlineCallbacks
    def test_error_answer_stops(self):
        """An answer with the right ID and an error rcode still ends the retries."""
        notifier = self.notifier(retry=1.0)
        self.secondary.reply = lambda data: acknowledge(data, rcode=dns.rcode.NOTAUTH)
        notifier.notify(make_zone())
        yield wait_for(lambda: notifier.answered == 1, "the answer")
        self.assertEqual((notifier.waiting, self.reactor.getDelayedCalls()), (0, []))

    @defer.inlineCallbacks
    def test_gives_up(self):
        """
        With C{retries=3} and no answer: four messages (at 0, 1, 3 and 7
        seconds), then the notifier gives up at 15 seconds and stops waiting.
        """
        notifier = self.notifier(retry=1.0, retries=3)
        notifier.notify(make_zone())
        yield self.arrived(1)
        for step, total in ((1, 2), (2, 3), (4, 4)):
            self.reactor.advance(step)
            yield self.arrived(total)
        self.assertEqual((notifier.sent, notifier.waiting, notifier.given_up), (4, 1, 0))
        self.reactor.advance(7.999)
        self.assertEqual(notifier.given_up, 0)
        self.reactor.advance(0.001)
        self.assertEqual((notifier.sent, notifier.waiting, notifier.given_up), (4, 0, 1))
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.reactor.advance(1000)
        yield settle()
        self.assertEqual(len(self.secondary.received), 4)
        # a late answer changes nothing
        data, source = self.secondary.received[0]
        self.port.write(acknowledge(data), source)
        yield wait_for(lambda: self.seen == 1, "the late answer")
        self.assertEqual((notifier.answered, notifier.given_up), (0, 1))

    @defer.inlineCallbacks
    def test_no_retries(self):
        """C{retries=0}: one message, given up after C{retry}."""
        notifier = self.notifier(retry=0.5, retries=0)
        notifier.notify(make_zone())
        yield self.arrived(1)
        self.reactor.advance(0.5)
        self.assertEqual((notifier.sent, notifier.given_up, notifier.waiting), (1, 1, 0))

    @defer.inlineCallbacks
    def test_newer_serial_replaces(self):
        """
        A newer serial replaces the NOTIFY still waiting: it is sent at once
        with a new ID, only it is resent, and only its answer counts.
        """
        zone = make_zone(100)
        notifier = self.notifier(retry=1.0)
        notifier.notify(zone)
        yield self.arrived(1)
        zone.soa.serial = 101
        self.reactor.advance(0.5)
        notifier.notify(zone)
        yield self.arrived(2)
        first, second = self.secondary.messages()
        self.assertEqual([m.answer[0][0].serial for m in (first, second)], [100, 101])
        self.assertNotEqual(first.id, second.id)
        self.assertEqual(notifier.waiting, 1)
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1, "the old resend is cancelled")
        self.reactor.advance(1.0)  # the first one's resend time, and the second's
        yield self.arrived(3)
        yield settle()
        self.assertEqual(len(self.secondary.received), 3)
        self.assertEqual(self.secondary.messages()[2].answer[0][0].serial, 101)
        source = self.secondary.received[0][1]
        self.port.write(acknowledge(self.secondary.received[0][0]), source)
        yield wait_for(lambda: self.seen == 1, "the answer to the old serial")
        self.assertEqual((notifier.answered, notifier.waiting), (0, 1))
        self.port.write(acknowledge(self.secondary.received[1][0]), source)
        yield wait_for(lambda: notifier.answered == 1, "the answer to the new serial")
        self.assertEqual(notifier.waiting, 0)

    @defer.inlineCallbacks
    def test_targets_and_zones_apart(self):
        """Each zone and target waits for its own answer."""
        other = Secondary()
        port = reactor.listenUDP(0, other, interface=HOST)
        self.addCleanup(port.stopListening)
        notifier = self.notifier([self.target, (HOST, port.getHost().port)], retry=1.0)
        zones = [make_zone(5), make_zone(6)]
        zones[1].origin = "other.example"
        zones[1].soa.serial = 6
        other.reply = acknowledge
        for zone in zones:
            notifier.notify(zone)
        yield wait_for(lambda: notifier.answered == 2, "the other target's answers")
        yield self.arrived(2)
        self.assertEqual(notifier.waiting, 2)
        self.assertEqual(
            {m.question[0].name.to_text() for m in self.secondary.messages()}, {f"{SUFFIX}.", "other.example."}
        )
        self.reactor.advance(1.0)
        yield self.arrived(4)
        yield settle()
        self.assertEqual((len(self.secondary.received), len(other.received)), (4, 2))

    @defer.inlineCallbacks
    def test_tsig_signed(self):
        """
        With a key every NOTIFY (the resends too) carries a TSIG that
        dnspython verifies with the shared secret, and rejects with another.
        """
        key = TSIGKey.make(labels_of(KEY_NAME), base64.b64decode(KEY_SECRET), "hmac-sha256")
        notifier = self.notifier(retry=1.0, key=key)
        notifier.notify(make_zone(77))
        yield self.arrived(1)
        self.reactor.advance(1.0)
        yield self.arrived(2)
        keyring = {
            dns.name.from_text(KEY_NAME): dns.tsig.Key(KEY_NAME, base64.b64decode(KEY_SECRET), dns.tsig.HMAC_SHA256)
        }
        for message in self.secondary.messages(keyring):
            self.assertTrue(message.had_tsig)
            self.assertEqual(message.keyring.algorithm, dns.tsig.HMAC_SHA256)
            self.assertEqual(message.answer[0][0].serial, 77)
            self.assertEqual(message.opcode(), dns.opcode.NOTIFY)
        wrong = {dns.name.from_text(KEY_NAME): dns.tsig.Key(KEY_NAME, b"another secret", dns.tsig.HMAC_SHA256)}
        with self.assertRaises(dns.tsig.BadSignature):
            dns.message.from_wire(self.secondary.received[0][0], keyring=wrong)

    @defer.inlineCallbacks
    def test_stop(self):
        """stop() cancels the resends and closes the socket."""
        notifier = self.notifier(retry=1.0)
        notifier.notify(make_zone())
        yield self.arrived(1)
        notifier.stop()
        self.assertEqual((notifier.waiting, self.reactor.getDelayedCalls()), (0, []))
        yield wait_for(lambda: not self.reactor.ports[0].connected, "the socket to close")


class NotifyIntegrationTests(unittest.TestCase):
    """The notifier with our own server, and as C{build_service} wires it."""

    @defer.inlineCallbacks
    def test_our_server_acknowledges(self):
        """Our server answers our NOTIFY (NOERROR, AA): the notifier stops waiting."""
        settings = memory_settings(self)
        service = DynDNSService(MemoryUserStore(), SUFFIX, poll_interval=None)
        yield defer.ensureDeferred(service.start())
        factory = DynDNSServerFactory(DynDNSResolver(service.registry), load_zones(settings))
        udp, tcp = listen_dns(reactor, factory, 0, HOST)
        self.addCleanup(udp.stopListening)
        self.addCleanup(tcp.stopListening)
        clock = LoopbackReactor()
        notifier = Notifier(clock, [(HOST, udp.getHost().port)], retry=1.0)
        self.addCleanup(notifier.stop)
        notifier.notify(make_zone(3))
        yield wait_for(lambda: notifier.answered == 1, "our server's answer")
        self.assertEqual((notifier.sent, notifier.waiting), (1, 0))

    @defer.inlineCallbacks
    def test_build_service(self):
        """
        C{[dns.notify]} in the configuration: at start and after each
        published change the targets get a NOTIFY with the new serial,
        signed with the configured key, resent per C{retry}.
        """
        secondary = Secondary()
        port = reactor.listenUDP(0, secondary, interface=HOST)
        self.addCleanup(port.stopListening)
        settings = memory_settings(
            self,
            dns={
                "serial": 500,
                "listen": [],
                "transfer": {"keys": [{"name": KEY_NAME, "secret": KEY_SECRET}]},
                "notify": {"targets": [f"{HOST}:{port.getHost().port}"], "retry": 5, "retries": 1, "key": KEY_NAME},
            },
        )
        clock = LoopbackReactor()
        clock.advance(time.time())
        top = build_service(settings, store=MemoryUserStore(), reactor=clock)
        self.addCleanup(top.notifier.stop)
        yield defer.ensureDeferred(top.dyndns.start())
        yield wait_for(lambda: len(secondary.received) == 1, "the NOTIFY at start")
        yield top.dyndns.add_user(User("alice"))
        yield top.dyndns.update("alice", ["192.0.2.1"])
        yield top.publisher.flush()
        yield wait_for(lambda: len(secondary.received) == 2, "the NOTIFY after a change")
        keyring = {
            dns.name.from_text(KEY_NAME): dns.tsig.Key(KEY_NAME, base64.b64decode(KEY_SECRET), dns.tsig.HMAC_SHA256)
        }
        messages = secondary.messages(keyring)
        self.assertEqual([m.answer[0][0].serial for m in messages], [500, 501])
        self.assertTrue(all(m.had_tsig for m in messages))
        self.assertEqual(top.notifier.waiting, 1)
        clock.advance(5)
        yield wait_for(lambda: len(secondary.received) == 3, "the resend")
        clock.advance(10)
        self.assertEqual((top.notifier.given_up, top.notifier.waiting), (1, 0))
