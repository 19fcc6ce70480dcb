"""
Helpers for unit tests that run the real DNS server factory: serve it on a
free port of 127.0.0.1 for one test (listeners and TCP connections closed in
the test's cleanup), in-memory settings, and a started service with alice
online.

Clients run in the reactor's thread pool (C{deferToThread}) so the server
keeps running on the reactor thread while they wait.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Generator, Mapping

from twisted.internet import defer, reactor
from twisted.internet.testing import waitUntilAllDisconnected
from twisted.trial import unittest

from dyndns_plugin import DynDNSService, MemoryUserStore, Settings, User, listen_dns
from dyndns_plugin.config import settings_from_dict
from dyndns_plugin.dns.zones import StaticZone, suffix_zone

SUFFIX = "dyn.example.com"
HOST = "127.0.0.1"


def example_suffix_zone(serial: int, *, expire: int = 86400, glue: bool = True) -> StaticZone:
    """The suffix zone the unit tests use: C{ns1.<suffix>}, with its glue 192.0.2.53 unless C{glue} is false."""
    return suffix_zone(
        SUFFIX,
        mname=f"ns1.{SUFFIX}",
        rname=f"hostmaster.{SUFFIX}",
        serial=serial,
        refresh=3600,
        retry=600,
        expire=expire,
        minimum=60,
        ttl=3600,
        nameservers=[f"ns1.{SUFFIX}"],
        glue={f"ns1.{SUFFIX}": [ipaddress.ip_address("192.0.2.53")]} if glue else {},
    )


def disconnect(factory: Any) -> defer.Deferred[None]:
    """Close every TCP connection of C{factory}; fires once all are gone."""
    connections = list(factory.connections)
    for proto in connections:
        proto.transport.loseConnection()
    return waitUntilAllDisconnected(reactor, connections)


def serve_dns(testcase: unittest.SynchronousTestCase, factory: Any, host: str = HOST) -> int:
    """
    Serve C{factory} on UDP and TCP on one free port of C{host} until the
    end of C{testcase} (its cleanup closes the connections, then the
    listeners); returns the port.
    """
    udp, tcp = listen_dns(reactor, factory, 0, host)
    testcase.addCleanup(udp.stopListening)
    testcase.addCleanup(tcp.stopListening)
    testcase.addCleanup(disconnect, factory)
    port: int = udp.getHost().port
    testcase.assertEqual(tcp.getHost().port, port)
    return port


def memory_settings(
    testcase: unittest.SynchronousTestCase, dns: Mapping[str, Any] | None = None, files: Mapping[str, str] | None = None
) -> Settings:
    """
    Settings with the suffix, the memory store and the C{[dns]} table
    C{dns}, as if read from a file in a fresh folder of the test, beside
    the C{files} (name -> text) written there first.
    """
    folder = testcase.mktemp()
    os.makedirs(folder)
    for name, text in (files or {}).items():
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)
    tables: dict[str, Any] = {"service": {"suffix": SUFFIX}, "store": {"backend": "memory"}}
    if dns is not None:
        tables["dns"] = dns
    return settings_from_dict(tables, os.path.join(folder, "dyndns.toml"))


@defer.inlineCallbacks
def service_with_alice(address: str = "203.0.113.5") -> Generator[Any, Any, DynDNSService]:
    """A started service on the memory store: alice, online at C{address}."""
    service = DynDNSService(MemoryUserStore(), SUFFIX, poll_interval=None)
    yield defer.ensureDeferred(service.start())
    yield service.add_user(User("alice"))
    yield service.update("alice", [ipaddress.ip_address(address)])
    return service
