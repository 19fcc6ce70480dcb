"""
The private Twisted APIs we depend on (L{dyndns_plugin.twisted_private})
still exist and still do what we use them for; no other module of the
package touches a private Twisted name. If a Twisted upgrade fails here,
adapt that one function (or the subclass overriding that hook), nothing else.
"""

from __future__ import annotations

import ast
import inspect
import os
import struct
from io import BytesIO
from pathlib import Path
from typing import Iterator

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.names import dns
from twisted.protocols import basic
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http, http_headers

from dyndns_plugin import twisted_private as tp

PACKAGE = Path(tp.__file__).resolve().parent


class DNSTests(SynchronousTestCase):
    def test_edns_message_round_trip(self) -> None:
        """An EDNS query encodes with its OPT record and decodes back into EDNS fields."""
        query = tp.EDNSMessage(id=7, recDes=True, ednsVersion=0, maxSize=1232, dnssecOK=True)
        query.queries = [dns.Query(b"host.example.org", dns.AAAA, dns.IN)]
        plain = tp.message_from_edns(query)
        self.assertIsInstance(plain, dns.Message)
        self.assertEqual([r.type for r in plain.additional], [dns.OPT])
        decoded = dns.Message()
        decoded.fromStr(plain.toStr())
        message = tp.edns_from_message(decoded)
        self.assertIsInstance(message, tp.EDNSMessage)
        self.assertEqual(
            (message.id, message.recDes, message.ednsVersion, message.maxSize, message.dnssecOK),
            (7, True, 0, 1232, True),
        )
        self.assertEqual(message.queries, [dns.Query(b"host.example.org", dns.AAAA, dns.IN)])
        self.assertEqual(message.additional, [])

    def test_edns_message_without_edns(self) -> None:
        """A message without OPT has ednsVersion None, and encodes without one."""
        decoded = dns.Message()
        decoded.fromStr(dns.Message(id=3).toStr())
        message = tp.edns_from_message(decoded)
        self.assertIsNone(message.ednsVersion)
        self.assertEqual(tp.message_from_edns(message).additional, [])

    def test_opt_variable_option(self) -> None:
        """One option: code, length, data on the wire, inside an OPT record."""
        option = tp.opt_variable_option(10, b"12345678")
        out = BytesIO()
        option.encode(out)
        self.assertEqual(out.getvalue(), struct.pack("!HH", 10, 8) + b"12345678")
        header = dns._OPTHeader(options=[option])  # how the server's answer carries it
        self.assertEqual(header.options, [option])

    def test_is_subdomain_of(self) -> None:
        """The name itself and names below it, without case; not a sibling that shares a suffix."""
        self.assertTrue(tp.is_subdomain_of(b"example.org", b"example.org"))
        self.assertTrue(tp.is_subdomain_of(b"a.b.Example.ORG", b"example.org"))
        self.assertTrue(tp.is_subdomain_of(b"anything", b""))
        self.assertFalse(tp.is_subdomain_of(b"badexample.org", b"example.org"))
        self.assertFalse(tp.is_subdomain_of(b"example.org", b"a.example.org"))

    def test_unprocessed_length(self) -> None:
        """What a DNS TCP protocol holds of an incomplete message, length prefix included."""
        protocol = basic.Int16StringReceiver()  # what DNSProtocol (DNS over TCP) is
        self.assertIsInstance(dns.DNSProtocol(controller=None), basic.Int16StringReceiver)
        protocol.makeConnection(StringTransport())
        self.assertEqual(tp.unprocessed_length(protocol), 0)
        protocol.dataReceived(b"\x00\x10abc")
        self.assertEqual(tp.unprocessed_length(protocol), 5)


class HTTPTests(SynchronousTestCase):
    def channel(self) -> tuple[http.HTTPChannel, StringTransport, task.Clock]:
        clock = task.Clock()
        channel = http.HTTPChannel()
        channel.callLater = clock.callLater  # type: ignore[method-assign,assignment]
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport, clock

    def test_spell_header(self) -> None:
        """Twisted then writes the header name in our spelling (the ddns module sets X-DynDNS-Result)."""
        import dyndns_plugin.protocols.ddns  # noqa: F401  (sets the spelling at import)

        self.addCleanup(http_headers._NameEncoder._caseMappings.pop, b"X-Dyndns-Test", None)
        self.assertTrue(tp.spell_header(b"X-Dyndns-Test", b"X-DynDNS-Test"))
        encoder = http_headers._NameEncoder()
        self.assertEqual(encoder.encode(b"x-dyndns-test"), b"X-DynDNS-Test")
        self.assertEqual(encoder.encode(b"x-dyndns-result"), b"X-DynDNS-Result")

    def test_respond_bad_request(self) -> None:
        """400 Bad Request, and the connection closes."""
        channel, transport, _clock = self.channel()
        tp.respond_bad_request(channel)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 Bad Request\r\n"), transport.value())
        self.assertTrue(transport.disconnecting)

    def test_handling_request(self) -> None:
        """False between requests, True while a received request is not answered."""
        channel, _transport, _clock = self.channel()
        self.assertFalse(tp.handling_request(channel))
        channel.dataReceived(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
        self.assertTrue(tp.handling_request(channel))  # http.Request.process leaves it unanswered
        channel.requests[-1].finish()
        self.assertFalse(tp.handling_request(channel))

    def test_pending_abort(self) -> None:
        """None at first; a timer we set is the channel's, and connectionLost cancels it."""
        channel, _transport, clock = self.channel()
        self.assertIsNone(tp.pending_abort(channel))
        call = clock.callLater(5, channel.forceAbortClient)
        tp.set_pending_abort(channel, call)
        self.assertIs(tp.pending_abort(channel), call)
        channel.connectionLost(None)
        self.assertFalse(call.active())
        self.assertIsNone(tp.pending_abort(channel))

    def test_force_abort_clears_pending_abort(self) -> None:
        """Twisted's own abort forgets the timer too (our channel relies on the same contract)."""
        channel, transport, clock = self.channel()
        tp.set_pending_abort(channel, clock.callLater(5, channel.forceAbortClient))
        clock.advance(5)
        self.assertIsNone(tp.pending_abort(channel))
        self.assertTrue(transport.disconnecting)


class CooperatorTests(SynchronousTestCase):
    def test_default_cooperator(self) -> None:
        """task.cooperate runs on the cooperator we set."""
        saved = tp.default_cooperator()
        self.assertIsInstance(saved, task.Cooperator)
        self.addCleanup(tp.set_default_cooperator, saved)
        steps: list[int] = []

        def work() -> Iterator[None]:
            steps.append(1)
            yield None

        clock = task.Clock()
        tp.set_default_cooperator(task.Cooperator(scheduler=lambda step: clock.callLater(0, step)))
        task.cooperate(work())
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0)
        self.assertEqual(steps, [1])


class SystemdTests(SynchronousTestCase):
    def test_systemd_passed_sockets(self) -> None:
        """
        The descriptors and names Twisted's C{systemd:} endpoint parser read
        from the environment, in order and with repeated names (a DNS socket
        unit passes UDP and TCP under one name); its endpoints use the same.
        """
        from twisted.internet import endpoints
        from twisted.python.systemd import ListenFDs

        environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "3", "LISTEN_FDNAMES": "dns:dns:http"}
        parsed = ListenFDs.fromEnvironment(environ)
        self.assertNotIn("LISTEN_FDS", environ)  # why we must ask Twisted, not the environment
        self.patch(endpoints._SystemdParser, "_sddaemon", parsed)
        self.assertEqual(tp.systemd_passed_sockets(), [(3, "dns"), (4, "dns"), (5, "http")])
        endpoint = endpoints.serverFromString(task.Clock(), "systemd:domain=INET:name=http")
        self.assertEqual(endpoint.fileno, 5)  # type: ignore[attr-defined]

    def test_ssl_server_context_factory(self) -> None:
        """The TLS context of an C{ssl:} endpoint's options: our key and certificate, its errors."""
        from OpenSSL import SSL

        from tests.integration.clients import make_certificate

        folder = self.mktemp()
        os.makedirs(folder)
        key, cert = make_certificate(folder)
        factory = tp.ssl_server_context_factory(task.Clock(), f"privateKey={key}:certKey={cert}")
        context = factory.getContext()
        self.assertIsInstance(context, SSL.Context)
        context.check_privatekey()  # raises unless the key matches the loaded certificate
        self.assertRaises(FileNotFoundError, tp.ssl_server_context_factory, task.Clock(), "privateKey=/nonexistent.pem")


class HookTests(SynchronousTestCase):
    def test_overridden_hooks(self) -> None:
        """Every private hook our subclasses override exists, with the parameters we rely on."""
        for cls, name, parameters in tp.OVERRIDDEN_HOOKS:
            self.assertTrue(hasattr(cls, name), f"{cls.__module__}.{cls.__qualname__}.{name} is gone")
            if parameters is not None:
                signature = inspect.signature(getattr(cls, name))
                self.assertEqual(tuple(signature.parameters), parameters, f"{cls.__qualname__}.{name}")

    def test_message_factory_is_used(self) -> None:
        """DNSServerFactory builds its responses with C{_messageFactory} (our server sets EDNSMessage)."""
        from twisted.names import server

        class Factory(server.DNSServerFactory):
            _messageFactory = tp.EDNSMessage  # type: ignore[assignment]

        response = Factory()._responseFromMessage(tp.EDNSMessage(id=9))
        self.assertIsInstance(response, tp.EDNSMessage)
        self.assertEqual(response.id, 9)


def _private_twisted_uses(package: Path) -> list[str]:
    """
    Every place outside twisted_private.py that reaches a private Twisted
    name: C{from twisted... import _x}, C{<twisted module>._x}, or C{obj._x}
    for a name the package itself never defines (so it can only be Twisted's),
    except the hooks of L{OVERRIDDEN_HOOKS}.
    """
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(package.rglob("*.py"))}
    ours: set[str] = {name for _cls, name, _params in tp.OVERRIDDEN_HOOKS}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                ours.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                ours.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                ours.add(node.id)
            elif isinstance(node, ast.arg):
                ours.add(node.arg)
    found = []
    for path, tree in trees.items():
        if path.name == "twisted_private.py":
            continue
        twisted_names: set[str] = set()
        other_modules: set[str] = set()  # e.g. sys: its private names (sys._current_frames) are not Twisted's
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "twisted":
                for alias in node.names:
                    twisted_names.add(alias.asname or alias.name)
                    if alias.name.startswith("_"):
                        found.append(f"{path.name}:{node.lineno}: imports {node.module}.{alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    bound = (alias.asname or alias.name).split(".")[0]
                    (twisted_names if alias.name.split(".")[0] == "twisted" else other_modules).add(bound)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
                continue
            receiver = node.value
            if isinstance(receiver, ast.Name) and receiver.id in twisted_names:
                found.append(f"{path.name}:{node.lineno}: {receiver.id}.{node.attr}")
            elif isinstance(receiver, ast.Name) and receiver.id in other_modules:
                continue
            elif node.attr not in ours:
                found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    return found


class OnlyThroughTheWrapperTests(SynchronousTestCase):
    def test_no_private_twisted_name_elsewhere(self) -> None:
        """The package reaches private Twisted names only through twisted_private."""
        self.assertEqual(_private_twisted_uses(PACKAGE), [])

    def test_finds_private_uses(self) -> None:
        """The check sees the three ways in."""
        package = Path(self.mktemp())
        package.mkdir()
        (package / "twisted_private.py").write_text("from twisted.names import dns\nX = dns._EDNSMessage\n")
        (package / "server.py").write_text(
            "from twisted.names import dns\n"
            "from twisted.web.http_headers import _NameEncoder\n"
            "import sys\n"
            "def size(protocol):\n"
            "    return len(protocol._unprocessed), dns._isSubdomainOf(b'a', b''), sys._current_frames()\n"
        )
        self.assertEqual(
            _private_twisted_uses(package),
            [
                "server.py:2: imports twisted.web.http_headers._NameEncoder",
                "server.py:5: ._unprocessed",
                "server.py:5: dns._isSubdomainOf",
            ],
        )
