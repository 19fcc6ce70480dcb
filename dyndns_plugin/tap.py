"""
C{twistd dyndns}: options and the service tree built from a configuration
file. L{build_service} is also the way to get the whole service in a program.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application import internet, service, strports
from twisted.internet import endpoints
from twisted.python import reflect, usage

from dyndns_plugin.auth import PasswordChecker
from dyndns_plugin.authn import Authenticator, CredentialChecker
from dyndns_plugin.config import ConfigError, Settings, load_settings
from dyndns_plugin.dns.resolver import DynDNSResolver
from dyndns_plugin.dns.server import DNSDatagramProtocol, DynDNSServerFactory
from dyndns_plugin.dns.zones import StaticZone, ZoneFileError, load_zone_file, suffix_zone
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store import IUserStore, StoreError
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.store.sqlite import SQLiteUserStore


class Options(usage.Options):
    synopsis = "--config FILE"
    longdesc = (
        "Run the DynDNS service: DNS for <user>.<suffix> names (UDP and TCP) "
        "from a TOML configuration file. See examples/dyndns.toml."
    )
    optParameters = [["config", "c", None, "The TOML configuration file."]]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config FILE is required")
        try:
            self.settings = load_settings(self["config"])
            self.zones = load_zones(self.settings)
            self.store = make_store(self.settings)
            if isinstance(self.store, SQLiteUserStore):
                self.store.check()
            check_endpoints(self.settings)
        except (ConfigError, ZoneFileError, StoreError) as e:
            raise usage.UsageError(str(e)) from None


def check_endpoints(settings: Settings) -> None:
    """
    Parse every endpoint string now (TLS files included), not at start, and
    find the sockets of every C{systemd:} listener.
    """
    from twisted.internet import reactor

    from dyndns_plugin.systemd import PassedSocketError, check_endpoint, sockets_named

    for name in settings.dns.listen_systemd:
        try:
            sockets_named(name)
        except PassedSocketError as e:
            raise ConfigError(settings.path, "dns.listen", f"'systemd:{name}': {e}") from None
    listeners = [(f"gnudip.listen[{i}]", d) for i, d in enumerate(settings.gnudip.listen)]
    if settings.http is not None:
        listeners += [(f"http.listen[{i}]", d) for i, d in enumerate(settings.http.listen)]
    listeners += [(f"admin.listen[{i}]", d) for i, d in enumerate(settings.admin.listen)]
    for key, description in listeners:
        try:
            check_endpoint(description)
            endpoints.serverFromString(reactor, description)
        except Exception as e:  # bad syntax, missing or unusable TLS files, no such passed socket
            raise ConfigError(settings.path, key, f"{description!r}: {e}") from None


def make_checker(settings: Settings, dyndns: DynDNSService, reactor: Any = None) -> CredentialChecker:
    """
    The password check every method uses: L{PasswordChecker}, or the
    callable named by C{service.auth_checker} called with the service.
    """
    if settings.auth_checker:
        module, _, name = settings.auth_checker.partition(":")
        try:
            factory = reflect.namedAny(f"{module}.{name}")
        except (ImportError, AttributeError, reflect.ObjectNotFound) as e:
            raise ConfigError(settings.path, "service.auth_checker", str(e)) from None
        checker: CredentialChecker = factory(dyndns)
        return checker
    return PasswordChecker(dyndns.registry.users, reactor)


def make_store(settings: Settings, reactor: Any = None) -> IUserStore:
    if settings.store_backend == "memory":
        return MemoryUserStore()
    return SQLiteUserStore(settings.store_path, reactor)


def load_zones(settings: Settings) -> list[StaticZone]:
    """The suffix zone's apex, then the host zones, in the order queried."""
    dns = settings.dns
    zones = [
        suffix_zone(
            settings.suffix,
            mname=dns.nameservers[0],
            rname=dns.hostmaster,
            serial=dns.serial,
            refresh=dns.refresh,
            retry=dns.retry,
            expire=dns.expire,
            minimum=dns.minimum,
            ttl=dns.soa_ttl,
            nameservers=dns.nameservers,
            glue=dns.glue,
        )
    ]
    for i, zone in enumerate(dns.zones):
        try:
            zones.append(load_zone_file(zone.file, zone.origin))
        except ZoneFileError as e:
            raise ConfigError(settings.path, f"dns.zones[{i}].file", str(e)) from None
    return zones


def make_dyndns_service(settings: Settings, store: IUserStore, reactor: Any = None) -> DynDNSService:
    return DynDNSService(
        store,
        settings.suffix,
        default_ttl=settings.default_ttl,
        min_ttl=settings.min_ttl,
        max_ttl=settings.max_ttl,
        clock=reactor,
        poll_interval=settings.poll_interval,
        reserved_names=[*settings.dns.nameservers, *settings.dns.glue],
        log_updates=settings.log_updates,
        limits=settings.limits,
    )


def make_transfer(
    settings: Settings, dyndns: DynDNSService, zones: list[StaticZone], reactor: Any = None
) -> tuple[Any, Any, Any]:
    """
    The zone publisher (serials, journal), the AXFR/IXFR handler and the
    NOTIFY sender (None without targets).
    """
    import base64
    import ipaddress

    from dyndns_plugin.dns.signing import TSIGKey, labels_of
    from dyndns_plugin.replication.notify import Notifier
    from dyndns_plugin.replication.publisher import ZonePublisher
    from dyndns_plugin.replication.transfer import TransferHandler

    dns_settings = settings.dns
    keys = {
        k.name: TSIGKey.make(labels_of(k.name), base64.b64decode(k.secret), k.algorithm)
        for k in dns_settings.transfer_keys
    }
    notifier = None
    if dns_settings.notify:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        notifier = Notifier(
            reactor,
            dns_settings.notify,
            retry=dns_settings.notify_retry,
            retries=dns_settings.notify_retries,
            key=keys.get(dns_settings.notify_key) if dns_settings.notify_key else None,
        )
    publisher = ZonePublisher(
        dyndns,
        zones,
        local_zones=dns_settings.update_local_zones,
        journal_size=dns_settings.journal_size,
        on_publish=notifier.notify if notifier is not None else None,
    )
    handler = TransferHandler(
        publisher,
        [ipaddress.ip_network(n) for n in dns_settings.transfer_allow],
        keys.values(),
    )
    return publisher, handler, notifier


def admin_resources(top_parts: dict[str, Any]) -> dict[bytes, Any]:
    """
    What the admin listener mounts beside its API: the status page and the
    Prometheus metrics (each only if its module is present).
    """
    from dyndns_plugin.metrics import Metrics, MetricsResource
    from dyndns_plugin.web.status import StatusPage, StatusScript

    metrics = Metrics()
    metrics.attach(top_parts["dyndns"], top_parts["dns_factory"], top_parts["publisher"])
    metrics.attach_connections(top_parts.get("connections", {}))
    return {
        b"status": StatusPage(),
        b"status.js": StatusScript(),
        b"metrics": MetricsResource(metrics),
    }


class _NotifierService(service.Service):
    """Opens and closes the NOTIFY sender's sockets with the application."""

    def __init__(self, notifier: Any) -> None:
        self.notifier = notifier

    def startService(self) -> None:
        super().startService()
        self.notifier.start()

    def stopService(self) -> None:
        super().stopService()
        self.notifier.stop()


def build_service(
    settings: Settings,
    store: IUserStore | None = None,
    zones: list[StaticZone] | None = None,
    reactor: Any = None,
    open_files: int | None = None,
) -> service.MultiService:
    """
    The whole service: the DynDNS service (store + registry) first, then
    the DNS listeners. Its C{dyndns} and C{dns_factory} attributes give
    access to the parts. The TCP listeners' global connection caps are
    fitted under C{open_files} (default: the current soft open-files limit).
    """
    if store is None:
        store = make_store(settings, reactor)
    if zones is None:
        zones = load_zones(settings)
    top = service.MultiService()
    dyndns = make_dyndns_service(settings, store, reactor)
    dyndns.setServiceParent(top)
    # The one authentication step (and its share of the hash pool) that
    # every update method below goes through.
    checker = Authenticator(make_checker(settings, dyndns, reactor), dyndns)
    update_handler = None
    if settings.dns.updates:
        from dyndns_plugin.protocols.dns_update import UpdateHandler

        update_handler = UpdateHandler(dyndns, [z.origin for z in zones], checker=checker)
    publisher, transfer_handler, notifier = make_transfer(settings, dyndns, zones, reactor)
    factory = DynDNSServerFactory(
        DynDNSResolver(dyndns.registry),
        zones,
        update_handler=update_handler,
        transfer_handler=transfer_handler,
        clock=dyndns.clock,
    )
    protect_dns(factory, settings, dyndns.clock)
    from dyndns_plugin.connections import build_limiters, current_open_files_limit

    if open_files is None:
        open_files = current_open_files_limit()
    limiters = build_limiters(settings, open_files, dyndns.clock)
    factory.limiter = limiters.get("dns_tcp")
    factory.tcp_idle_timeout = settings.connections.dns_tcp_idle_timeout
    factory.tcp_message_timeout = settings.connections.dns_tcp_message_timeout
    if settings.gnudip.listen:
        from dyndns_plugin.protocols.gnudip import GnuDIPFactory

        gnudip = GnuDIPFactory(
            dyndns,
            checker,
            timeout=settings.gnudip.timeout,
            max_per_source=settings.gnudip.max_connections_per_source,
            line_timeout=settings.connections.gnudip_line_timeout,
            limiter=limiters["gnudip"],
        )
        for description in settings.gnudip.listen:
            strports.service(description, gnudip).setServiceParent(top)
    if settings.http is not None:
        from dyndns_plugin.protocols.gnudip_http import SaltSigner, load_or_create_key
        from dyndns_plugin.web.site import build_site

        signer = None
        if settings.http.gnudip:
            signer = SaltSigner(
                load_or_create_key(settings.gnudip.http_key_file),
                dyndns.clock,
                settings.gnudip.salt_window,
            )
        site = build_site(
            dyndns,
            settings.http,
            checker,
            signer,
            connections=settings.connections,
            limiter=limiters.get("http"),
        )
        for description in settings.http.listen:
            strports.service(description, site).setServiceParent(top)
        top.site = site  # type: ignore[attr-defined]
    if settings.admin.listen:
        from dyndns_plugin.web.admin import build_admin_site

        admin_site = build_admin_site(
            dyndns,
            settings,
            admin_resources(
                top_parts={
                    "dyndns": dyndns,
                    "dns_factory": factory,
                    "checker": checker,
                    "publisher": publisher,
                    "connections": limiters,
                }
            ),
            reactor,
            limiter=limiters["admin"],
        )
        for description in settings.admin.listen:
            strports.service(description, admin_site).setServiceParent(top)
        top.admin_site = admin_site  # type: ignore[attr-defined]
    for host, port in settings.dns.listen:
        internet.TCPServer(port, factory, interface=host).setServiceParent(top)
        internet.UDPServer(port, DNSDatagramProtocol(factory), interface=host, maxPacketSize=65535).setServiceParent(
            top
        )
    if settings.dns.listen_systemd:
        add_passed_dns_listeners(top, settings, factory, reactor)
    if notifier is not None:
        _NotifierService(notifier).setServiceParent(top)
    top.publisher = publisher  # type: ignore[attr-defined]
    top.notifier = notifier  # type: ignore[attr-defined]
    top.dyndns = dyndns  # type: ignore[attr-defined]
    top.checker = checker  # type: ignore[attr-defined]
    top.dns_factory = factory  # type: ignore[attr-defined]
    top.connections = limiters  # type: ignore[attr-defined]
    return top


def add_passed_dns_listeners(
    top: service.MultiService, settings: Settings, factory: DynDNSServerFactory, reactor: Any
) -> None:
    """DNS on the sockets systemd passed (C{dns.listen = ["systemd:NAME"]})."""
    from dyndns_plugin.systemd import PassedDNSListener, PassedSocketError, sockets_named

    for name in settings.dns.listen_systemd:
        try:
            sockets = sockets_named(name)
        except PassedSocketError as e:
            raise ConfigError(settings.path, "dns.listen", f"'systemd:{name}': {e}") from None
        PassedDNSListener(sockets, factory, lambda: DNSDatagramProtocol(factory), reactor).setServiceParent(top)


def makeService(options: Options) -> service.MultiService:
    # The reactor thread and the SQLite writer thread hand the GIL back and
    # forth for every batch; the default 5 ms switch interval makes the
    # writer wait behind a busy reactor (bench/RESULTS.md, HTTP updates).
    sys.setswitchinterval(0.0005)
    from dyndns_plugin.connections import raise_open_files_limit

    # Every TCP listener's connection caps must fit under this limit, so
    # that a flood on one cannot take the descriptors the others need.
    open_files = raise_open_files_limit()
    top = build_service(options.settings, options.store, options.zones, open_files=open_files)
    from dyndns_plugin.reload import ReloadOnHangup

    # SIGHUP re-reads the file (systemctl reload); only here, since a
    # program that embeds build_service owns its own signals.
    ReloadOnHangup(top, options.settings).setServiceParent(top)
    return top


def protect_dns(factory: DynDNSServerFactory, settings: Settings, clock: Any) -> None:
    """
    Response rate limiting (C{[dns.rrl]}) and DNS cookies (C{[dns.cookies]})
    on the DNS factory; without a configured secret, a random one.
    """
    factory.rrl = make_rrl(settings, clock)
    factory.cookies = make_cookies(settings, clock)


def make_rrl(settings: Settings, clock: Any) -> Any:
    """The response rate limiter of C{[dns.rrl]}, or None when it is off."""
    from dyndns_plugin.dns.rrl import ResponseRateLimiter

    rrl = settings.dns_protection.rrl
    if not rrl.enabled:
        return None
    return ResponseRateLimiter(
        clock,
        responses_per_second=rrl.responses_per_second,
        slip=rrl.slip,
        ipv4_prefix=rrl.ipv4_prefix,
        ipv6_prefix=rrl.ipv6_prefix,
        exempt=rrl.exempt,
        table_size=rrl.table_size,
    )


def make_cookies(settings: Settings, clock: Any) -> Any:
    """The server cookies of C{[dns.cookies]} (a random secret if none is set), or None when off."""
    from dyndns_plugin.dns.cookies import ServerCookies, random_secret

    cookies = settings.dns_protection.cookies
    if not cookies.enabled:
        return None
    secret = cookies.secret.value if cookies.secret is not None else random_secret()
    return ServerCookies(secret, clock)
