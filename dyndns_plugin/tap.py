"""
C{twistd dyndns}: options and the service tree built from a configuration
file. L{build_service} is also the way to get the whole service in a program.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application import internet, service, strports
from twisted.internet import endpoints
from twisted.logger import ILogObserver, Logger
from twisted.python import reflect, usage

from dyndns_plugin.auth import PasswordChecker
from dyndns_plugin.authn import Authenticator, CredentialChecker
from dyndns_plugin.config import ConfigError, LogSettings, Settings, default_settings, load_settings
from dyndns_plugin.dns.fastpath import attach_answer_cache
from dyndns_plugin.dns.protection import protect_dns
from dyndns_plugin.dns.resolver import DynDNSResolver
from dyndns_plugin.dns.server import DNSDatagramProtocol, DynDNSServerFactory
from dyndns_plugin.dns.zones import StaticZone, ZoneFileError, load_zone_file, suffix_zone
from dyndns_plugin.logformat import register_on, twistd_observer
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.statedir import ensure_state_directory
from dyndns_plugin.store import IUserStore, StoreError
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.store.sqlite import SQLiteUserStore
from dyndns_plugin.version import __version__

log = Logger()


class StartupError(SystemExit):
    """
    The service cannot start: printed as one line (C{twistd dyndns: FILE:
    key: problem}) with exit status 1, no usage block and no traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"twistd dyndns: {message}")
        self.message = message


log = Logger()


class Options(usage.Options):
    synopsis = "[--config FILE]"
    longdesc = (
        "Run the DynDNS service: <user>.<suffix> names answered by DNS (UDP and TCP) and updated by their owners "
        "over RFC 2136 UPDATE, HTTP (ddns, /nic/update, GnuDIP) and GnuDIP TCP. With no configuration it serves "
        "suffix dyn.test on loopback (DNS 127.0.0.1:5300, HTTP 127.0.0.1:8080, GnuDIP 127.0.0.1:3495) from a "
        "store in its state directory; `dyndns init FILE` writes a configuration to edit. "
        f"Version {__version__}."
    )
    optParameters = [["config", "c", None, "The TOML configuration file (default: $DYNDNS_CONFIG, else none)."]]

    def opt_version(self) -> None:
        """Print the package's version and exit."""
        print(version_line())
        sys.exit(0)

    def postOptions(self) -> None:
        path = self["config"] or os.environ.get("DYNDNS_CONFIG") or None
        try:
            self.settings = load_settings(path) if path else default_settings()
            self.embedded_default = path is None
            self.zones = load_zones(self.settings)
            self.store = make_store(self.settings, retry_open=True)
            if isinstance(self.store, SQLiteUserStore):
                self.store.check()
            elif self.settings.store_backend == "postgresql":
                check_dsn(self.settings)
            check_endpoints(self.settings)
        except (ConfigError, ZoneFileError) as e:
            raise StartupError(str(e)) from None
        except StoreError as e:
            raise StartupError(f"{self.settings.path}: store.path: {e}") from None


def version_line() -> str:
    """C{dyndns_plugin 0.1.0 (Twisted 26.10.0, Python 3.11.7)}."""
    import platform

    import twisted

    return f"dyndns_plugin {__version__} (Twisted {twisted.__version__}, Python {platform.python_version()})"


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


def check_dsn(settings: Settings) -> None:
    """A PostgreSQL connection string that libpq cannot parse, or no psycopg: a start-up error, not a retry loop."""
    try:
        from psycopg import conninfo
    except ImportError:
        raise StartupError(
            'store.backend = "postgresql" needs psycopg: pip install "dyndns_plugin[postgresql]"'
        ) from None
    dsn = settings.store_dsn or ""
    try:
        conninfo.conninfo_to_dict(dsn)
    except Exception as e:
        # libpq quotes the string, password and all: not into a log
        reason = str(e).strip().replace(dsn, "...") if dsn else str(e).strip()
        raise StartupError(f"{settings.path}: store.dsn: not a connection string libpq takes ({reason})") from None


def join_cluster(top: service.MultiService, dyndns: DynDNSService, publisher: Any) -> None:
    """
    Several nodes on one shared store (PostgreSQL): this node follows the
    zones' publisher until it holds the publisher's lock, polls at once
    when another node commits, and takes the stored serials when another
    publishes (notifications, with a catch-up on every reconnection and a
    read every few seconds in case one was missed).
    """
    store: Any = dyndns.store
    publisher.follow()

    def zone_published(origin: str | None) -> None:
        publisher.catch_up()

    async def watch() -> None:
        store.watch(dyndns.poll_soon, zone_published, publisher.set_leading)

    dyndns.add_startup_step(watch)
    internet.TimerService(CATCH_UP_EVERY, zone_published, None).setServiceParent(top)


#: Seconds the publisher waits before it sends NOTIFY, for the followers to take the serial.
FOLLOWERS_CATCH_UP = 0.25
#: Seconds between a follower's reads of the stored serials, notified or not.
CATCH_UP_EVERY = 5.0


def make_store(settings: Settings, reactor: Any = None, retry_open: bool = False) -> IUserStore:
    """The configured store; the state directory is made if the store is in it."""
    if settings.store_backend == "memory":
        return MemoryUserStore()
    if settings.store_backend == "postgresql":
        from dyndns_plugin.store.postgresql import PostgreSQLUserStore

        assert settings.store_dsn is not None
        # The server waits for a database that is down (and says so); the
        # CLI (retry_open=False) fails at once.
        return PostgreSQLUserStore(settings.store_dsn, reactor, retry_open=retry_open)
    make_state_directory_for(settings, settings.store_path)
    return SQLiteUserStore(settings.store_path, reactor)


def make_state_directory_for(settings: Settings, path: str) -> None:
    """Make the state directory if C{path} (a file the service writes) is in it."""
    folder = os.path.dirname(path)
    if settings.state_directory and folder == settings.state_directory:
        try:
            ensure_state_directory(folder)
        except OSError as e:
            raise StoreError(f"{folder}: cannot make the state directory: {e.strerror}") from None


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
        acme=settings.acme,
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

    def notify(zone: Any) -> None:
        # Several nodes on one store: only the publishing node notifies,
        # once per serial, a moment after it stored it: a secondary whose
        # primary is a follower asks that node for the serial at once, and
        # the follower takes it from the store within tens of milliseconds.
        if notifier is None or not publisher.leading:
            return
        if getattr(dyndns.store, "shared", False):
            dyndns.clock.callLater(FOLLOWERS_CATCH_UP, notifier.notify, zone)
        else:
            notifier.notify(zone)

    publisher = ZonePublisher(
        dyndns,
        zones,
        local_zones=dns_settings.update_local_zones,
        journal_size=dns_settings.journal_size,
        on_publish=notify if notifier is not None else None,
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


class DynDNSApplication(service.MultiService):
    """
    The service tree C{build_service} returns. A listener that cannot open
    (port in use, a low port without privilege, a bad certificate) stops
    the start with one line naming its configuration key.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self._listeners: dict[int, tuple[str, str]] = {}
        #: twistd -n: a listener that cannot open ends the process with one
        #: line on standard error (else L{ListenError} is raised).
        self.exit_on_listen_error = False
        #: Under twistd, the observer C{[log]} asks for; registered on the
        #: application this service joins, where twistd's logger looks for
        #: one (L{dyndns_plugin.logformat}).
        self.log_observer: ILogObserver | None = None

    def setServiceParent(self, parent: Any) -> None:
        if self.log_observer is not None:
            register_on(parent, self.log_observer)
        super().setServiceParent(parent)

    def add_listener(self, listener: service.Service, key: str, where: str) -> None:
        """Add C{listener}, opened from configuration key C{key}, listening C{where}."""
        listener.setServiceParent(self)
        self._listeners[id(listener)] = (key, where)

    def privilegedStartService(self) -> None:
        for child in self:
            try:
                child.privilegedStartService()
            except Exception as e:
                self._listen_failed(child, e)

    def startService(self) -> None:
        service.Service.startService(self)
        for child in self:
            try:
                child.startService()
            except Exception as e:  # a listener that opens only here
                self._listen_failed(child, e)

    def _listen_failed(self, child: service.IService, error: Exception) -> None:
        if id(child) not in self._listeners:
            raise error
        key, where = self._listeners[id(child)]
        message = f"{self.settings.path}: {key}: cannot listen on {where}: {listen_problem(error)}"
        log.critical("{message}", message=message)
        if self.exit_on_listen_error:
            # twistd -n has sent sys.stderr to the log by now: the one line
            # goes to the real standard error, and nothing else does.
            print(f"twistd dyndns: {message}", file=sys.__stderr__, flush=True)
            raise SystemExit(1)
        raise ListenError(message) from error


class ListenError(Exception):
    """A listener could not open (L{DynDNSApplication}); the message names its key."""


def listen_problem(error: Exception) -> str:
    """What went wrong opening a listener, in words an operator can act on."""
    import errno

    cause = getattr(error, "socketError", None) or error
    code = getattr(cause, "errno", None)
    if code == errno.EADDRINUSE:
        return "the address is already in use (another server, or another dyndns on the same store)"
    if code == errno.EACCES:
        return (
            "permission denied (ports below 1024 need root, CAP_NET_BIND_SERVICE or systemd socket activation; "
            "see docs/production.md)"
        )
    if code == errno.EADDRNOTAVAIL:
        return "no such local address"
    text = getattr(cause, "strerror", None) or str(cause)
    return text.strip().rstrip(".")


def build_service(
    settings: Settings,
    store: IUserStore | None = None,
    zones: list[StaticZone] | None = None,
    reactor: Any = None,
    open_files: int | None = None,
) -> DynDNSApplication:
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
    top = DynDNSApplication(settings)
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
    if getattr(store, "shared", False):
        join_cluster(top, dyndns, publisher)
    if update_handler is not None:
        transfer_handler.query_keys = update_handler.query_key
    if update_handler is not None and any(z.updatable for z in settings.dns.zones):
        from dyndns_plugin.replication.host_updates import HostZoneUpdates

        update_handler.host_zones = HostZoneUpdates(settings.dns.zones, publisher, dyndns.registry)
    factory = DynDNSServerFactory(
        DynDNSResolver(dyndns.registry),
        zones,
        update_handler=update_handler,
        transfer_handler=transfer_handler,
        clock=dyndns.clock,
    )
    protect_dns(factory, settings, dyndns.clock)
    attach_answer_cache(factory, dyndns, publisher)
    factory.when_loaded = dyndns.when_loaded
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
        for i, description in enumerate(settings.gnudip.listen):
            top.add_listener(strports.service(description, gnudip), f"gnudip.listen[{i}]", description)
    if settings.http is not None:
        from dyndns_plugin.protocols.gnudip_http import SaltSigner, load_or_create_key
        from dyndns_plugin.web.site import build_site

        signer = None
        if settings.http.gnudip:
            make_state_directory_for(settings, settings.gnudip.http_key_file)
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
        for i, description in enumerate(settings.http.listen):
            top.add_listener(strports.service(description, site), f"http.listen[{i}]", description)
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
            publisher=publisher,
        )
        for i, description in enumerate(settings.admin.listen):
            top.add_listener(strports.service(description, admin_site), f"admin.listen[{i}]", description)
        top.admin_site = admin_site  # type: ignore[attr-defined]
    for i, (host, port) in enumerate(settings.dns.listen):
        where = f"{host or '*'}:{port}"
        top.add_listener(internet.TCPServer(port, factory, interface=host), f"dns.listen[{i}]", f"{where} (TCP)")
        udp = internet.UDPServer(port, DNSDatagramProtocol(factory), interface=host, maxPacketSize=65535)
        top.add_listener(udp, f"dns.listen[{i}]", f"{where} (UDP)")
    if settings.dns.listen_systemd:
        add_passed_dns_listeners(top, settings, factory, reactor)
    if isinstance(store, SQLiteUserStore):
        from dyndns_plugin.control import control_address, control_service

        top.add_listener(control_service(store.path, dyndns, publisher), "store.path", control_address(store.path))
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


def makeService(options: Options) -> DynDNSApplication:
    # The reactor thread and the SQLite writer thread hand the GIL back and
    # forth for every batch; the default 5 ms switch interval makes the
    # writer wait behind a busy reactor (bench/RESULTS.md, HTTP updates).
    sys.setswitchinterval(0.0005)
    from twisted.internet import reactor

    from dyndns_plugin.connections import raise_open_files_limit
    from dyndns_plugin.reactor_lag import install_from_environment

    # Benchmarks only: DYNDNS_BENCH_LAG_LOG records the reactor's long turns.
    install_from_environment(reactor)

    # Every TCP listener's connection caps must fit under this limit, so
    # that a flood on one cannot take the descriptors the others need.
    open_files = raise_open_files_limit()
    top = build_service(options.settings, options.store, options.zones, open_files=open_files)
    twistd_options = getattr(options, "parent", None)
    if twistd_options is not None:
        keep_pidfile_in_state_directory(twistd_options, options.settings)
    top.exit_on_listen_error = bool(twistd_options is not None and twistd_options.get("nodaemon"))
    chosen = options.settings.log
    top.log_observer = twistd_observer(chosen, twistd_options)
    if twistd_options is not None and top.log_observer is None and chosen != LogSettings():
        flag = "--logger" if twistd_options.get("logger") else "--syslog"
        log.warn("[log] is not used: twistd's {flag} decides the log output", flag=flag)
    if getattr(options, "embedded_default", False):
        print(startup_summary(options.settings), flush=True)
    from dyndns_plugin.reload import ReloadOnHangup

    # SIGHUP re-reads the file (systemctl reload); only here, since a
    # program that embeds build_service owns its own signals.
    ReloadOnHangup(top, options.settings).setServiceParent(top)
    return top


def keep_pidfile_in_state_directory(twistd_options: Any, settings: Settings) -> None:
    """
    twistd writes C{twistd.pid} into the current folder unless told
    otherwise; put it in the state directory instead (an explicit
    C{--pidfile} stays as given).
    """
    if twistd_options.get("pidfile") not in ("twistd.pid", os.path.abspath("twistd.pid")):
        return
    if not settings.state_directory:
        return
    try:
        ensure_state_directory(settings.state_directory)
    except OSError:
        return  # no state directory to be had: twistd's default stays
    twistd_options["pidfile"] = os.path.join(settings.state_directory, "twistd.pid")


def startup_summary(settings: Settings) -> str:
    """
    The block printed when the service starts on its embedded default:
    where everything is, and how to add the first user.
    """
    dns = ", ".join(f"{host or '*'}:{port}" for host, port in settings.dns.listen) or "off"
    http = ", ".join(settings.http.listen) if settings.http and settings.http.listen else "off"
    gnudip = ", ".join(settings.gnudip.listen) or "off"
    admin = ", ".join(settings.admin.listen) or "off (no admin.users or admin.tokens in a config)"
    first_host, first_port = settings.dns.listen[0] if settings.dns.listen else ("127.0.0.1", 53)
    lines = [
        f"dyndns_plugin {__version__}: no --config, so the embedded default (loopback only):",
        f"  suffix    {settings.suffix}",
        f"  DNS       {dns} (UDP and TCP)",
        f"  HTTP      {http}  (dyndns urls: every update URL)",
        f"  GnuDIP    {gnudip}",
        f"  admin     {admin}",
        f"  state     {settings.state_directory} (store {os.path.basename(settings.store_path)})",
        "Add the first user (in this folder, or with the same XDG_STATE_HOME):",
        "  dyndns user add alice --password 's3cret'",
        "  dyndns user update alice 198.51.100.7",
        f"  dig @{first_host or '127.0.0.1'} -p {first_port} +short alice.{settings.suffix}",
        "A configuration to edit: dyndns init dyndns.toml, then twistd -n dyndns --config dyndns.toml",
    ]
    return "\n".join(lines)
