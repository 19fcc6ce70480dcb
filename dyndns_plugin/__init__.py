"""
dyndns_plugin: a self-hosted dynamic DNS service on Twisted Names.

The public API for embedding the service in your own Twisted program:

    store = SQLiteUserStore("users.sqlite")
    service = DynDNSService(store, "dyn.example.com")
    resolver = DynDNSResolver(service.registry)      # put it in front of your authorities
    factory = DynDNSServerFactory(resolver, [your_file_authority])
    listen_dns(reactor, factory, 53)

Zone transfers for your own zones: ZonePublisher(service, zones) keeps their
serials and journal, TransferHandler(publisher, networks, keys) answers
AXFR/IXFR (pass it as DynDNSServerFactory(..., transfer_handler=...)), and
Notifier(reactor, targets) sends NOTIFY (ZonePublisher(on_publish=notifier.notify)).

Rules for DynDNS users: service.users_at(address) lists the active users whose
names point at a client's address now (memory only, safe per DNS query), so a
server can treat their queries differently, e.g. by their notes; see
examples/notes_rule_resolver.py.

See examples/embed_resolver.py and the README.
"""

from dyndns_plugin.config import ConfigError, Settings, load_settings
from dyndns_plugin.dns.resolver import DynDNSResolver
from dyndns_plugin.dns.server import (
    DNSDatagramProtocol,
    DNSStreamProtocol,
    DynDNSServerFactory,
    listen_dns,
)
from dyndns_plugin.dns.zones import StaticZone, load_zone_file
from dyndns_plugin.model import HostState, UpdateResult, UpdateStatus, User, ValidationError
from dyndns_plugin.registry import Registry
from dyndns_plugin.replication.notify import Notifier
from dyndns_plugin.replication.publisher import ZonePublisher
from dyndns_plugin.replication.transfer import TransferHandler
from dyndns_plugin.service import Change, DynDNSService
from dyndns_plugin.store import IUserStore, StoreError
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.store.sqlite import SQLiteUserStore
from dyndns_plugin.tap import build_service
from dyndns_plugin.version import __version__

__all__ = [
    "__version__",
    "Change",
    "ConfigError",
    "DNSDatagramProtocol",
    "DNSStreamProtocol",
    "DynDNSResolver",
    "DynDNSServerFactory",
    "DynDNSService",
    "HostState",
    "IUserStore",
    "MemoryUserStore",
    "Notifier",
    "Registry",
    "SQLiteUserStore",
    "Settings",
    "StaticZone",
    "StoreError",
    "TransferHandler",
    "UpdateResult",
    "UpdateStatus",
    "User",
    "ValidationError",
    "ZonePublisher",
    "build_service",
    "listen_dns",
    "load_settings",
    "load_zone_file",
]
