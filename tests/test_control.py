"""
The control socket (L{dyndns_plugin.control}): a change another process
committed to the store is served once C{request_sync} returns, with no poll
in between.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dyndns_plugin.control import NoServer, control_address, control_service, request, request_sync
from dyndns_plugin.dns.zones import load_zone_file
from dyndns_plugin.model import User
from dyndns_plugin.replication.publisher import ZonePublisher
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.sqlite import SQLiteUserStore
from tests.dns_helpers import example_suffix_zone


class AddressTests(SynchronousTestCase):
    def test_beside_the_store(self) -> None:
        self.assertEqual(control_address("/var/lib/dyndns/dyndns.sqlite"), "/var/lib/dyndns/dyndns.sqlite.sock")

    def test_long_path_is_an_abstract_socket_named_after_the_store(self) -> None:
        long_path = "/" + "x" * 120 + "/dyndns.sqlite"
        address = control_address(long_path)
        self.assertTrue(address.startswith("\0dyndns-"))
        self.assertEqual(address, control_address(long_path))
        self.assertNotEqual(address, control_address(long_path + "2"))

    def test_no_server(self) -> None:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        store = os.path.join(folder, "s.sqlite")
        self.assertRaises(NoServer, request_sync, store)
        # A socket file a dead server left behind: refused, which is "no server" too.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
            dead.bind(control_address(store))
        self.assertRaises(NoServer, request_sync, store)


class SyncTests(TestCase):
    """A server (no polling at all) and a second process's store on one SQLite file."""

    #: A short folder, so the socket is a file beside the store.
    long_path = False

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        if self.long_path:
            folder = os.path.abspath(os.path.join(self.mktemp(), "x" * 100))
            os.makedirs(folder)
        else:
            folder = tempfile.mkdtemp(prefix="dyndns-control-", dir="/tmp")
            self.addCleanup(shutil.rmtree, folder)
        self.path = os.path.join(folder, "users.sqlite")
        self.server = DynDNSService(SQLiteUserStore(self.path, reactor), "dyn.example.com", poll_interval=None)
        yield defer.ensureDeferred(self.server.start())
        self.listener = control_service(self.path, self.server)
        self.listener.startService()
        self.addCleanup(self.server.store.close)
        self.addCleanup(self.listener.stopService)

    @defer.inlineCallbacks
    def test_change_served_after_sync(self):  # type: ignore[no-untyped-def]
        other = DynDNSService(SQLiteUserStore(self.path, reactor), "dyn.example.com", poll_interval=None)
        yield defer.ensureDeferred(other.start())
        self.addCleanup(other.store.close)
        yield other.add_user(User(id="alice"))
        self.assertFalse(self.server.registry.has_user("alice"))  # nothing polls
        generation = yield threads.deferToThread(request_sync, self.path, 5.0)
        self.assertTrue(self.server.registry.has_user("alice"))
        self.assertGreater(generation, 0)
        yield other.remove_user("alice")
        yield threads.deferToThread(request_sync, self.path, 5.0)
        self.assertFalse(self.server.registry.has_user("alice"))

    @defer.inlineCallbacks
    def test_unknown_command_refused(self):  # type: ignore[no-untyped-def]
        def ask() -> bytes:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(control_address(self.path))
                sock.sendall(b"drop tables\n")
                return sock.recv(100)

        answer = yield threads.deferToThread(ask)
        self.assertEqual(answer, b"error unknown command\n")

    def test_socket_is_owner_only(self) -> None:
        if self.long_path:
            self.skipTest("an abstract socket has no file")
        self.assertEqual(os.stat(control_address(self.path)).st_mode & 0o777, 0o600)


class ZoneClearTests(TestCase):
    """C{zone-clear}: the server drops an update's RRsets through its zone publisher."""

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[no-untyped-def]
        folder = tempfile.mkdtemp(prefix="dyndns-control-", dir="/tmp")
        self.addCleanup(shutil.rmtree, folder)
        self.path = os.path.join(folder, "users.sqlite")
        zone_file = os.path.join(folder, "example.org.zone")
        with open(zone_file, "w") as f:
            f.write(
                "@ 300 IN SOA ns1.example.org. h.example.org. 9 1 1 1 1\n@ 300 IN NS ns1\nwww 300 IN A 192.0.2.80\n"
            )
        server = DynDNSService(SQLiteUserStore(self.path, reactor), "dyn.example.com", poll_interval=None)
        self.publisher = ZonePublisher(server, [example_suffix_zone(1), load_zone_file(zone_file, "example.org")])
        yield defer.ensureDeferred(server.start())
        self.addCleanup(server.store.close)
        listener = control_service(self.path, server, self.publisher)
        listener.startService()
        self.addCleanup(listener.stopService)
        www = (("www.example.org", 1, 60, bytes([192, 0, 2, 81])),)
        yield self.publisher.update_host_zone("example.org", lambda zone, pending: {("www.example.org", 1): www})

    @defer.inlineCallbacks
    def test_clear(self):  # type: ignore[no-untyped-def]
        zone = self.publisher.by_origin["example.org"]
        self.assertEqual((zone.serial, zone.static["www.example.org"][0][3]), (10, bytes([192, 0, 2, 81])))
        dropped = yield threads.deferToThread(request, self.path, "zone-clear example.org www.example.org 28", 5.0)
        self.assertEqual((dropped, zone.serial), (0, 10))  # no AAAA was set: nothing to do
        dropped = yield threads.deferToThread(request, self.path, "zone-clear example.org www.example.org", 5.0)
        self.assertEqual(dropped, 1)
        self.assertEqual((zone.serial, zone.static["www.example.org"][0][3]), (11, bytes([192, 0, 2, 80])))
        self.assertEqual((yield self.publisher.journal.load_zone_records()), {})
        for line, error in [
            ("zone-clear example.net www.example.net", "example.net is not a host zone of this server"),
            ("zone-clear example.org www.example.org A", "the type must be a number"),
        ]:
            failure = yield threads.deferToThread(request, self.path, line, 5.0).addErrback(lambda f: f.value)
            self.assertIsInstance(failure, OSError)
            self.assertEqual(str(failure), error)


class AbstractSocketSyncTests(SyncTests):
    """The same on a store whose path is too long for a socket file."""

    long_path = True
