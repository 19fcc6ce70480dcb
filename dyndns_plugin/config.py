"""
The TOML configuration file -> L{Settings}.

Every key is checked: an unknown key, a wrong type or a bad value is a
L{ConfigError} that names the file, the key and the problem. Relative paths
are relative to the folder of the configuration file.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from typing import Any, Callable, TypeVar

import attrs

from dyndns_plugin import config_schema
from dyndns_plugin.acme import AcmeSettings
from dyndns_plugin.limits import LimitSettings
from dyndns_plugin.model import (
    IPAddress,
    ValidationError,
    normalize_name,
    parse_address,
    validate_tsig_algorithm,
    validate_tsig_secret,
    validate_ttl,
)
from dyndns_plugin.statedir import state_directory

T = TypeVar("T")

#: The "path" of the settings used when no configuration file is given.
EMBEDDED_DEFAULT = "(embedded default)"

#: L{_Table.get}: take the default from the schema.
_FROM_SCHEMA: Any = object()


class ConfigError(ValueError):
    def __init__(self, path: str, key: str, problem: str) -> None:
        super().__init__(f"{path}: {key}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


@attrs.frozen
class ZoneUpdateKey:
    """
    A TSIG key that may send RFC 2136 updates to one host zone. C{names}
    limits it to those names (C{"*.office.example.org"}: the names below
    one) and C{types} to those record types; empty: the whole zone, every
    type (never the apex SOA or NS, which only the zone file sets).
    """

    name: str
    algorithm: str
    secret: str
    names: tuple[str, ...] = ()
    types: tuple[int, ...] = ()


@attrs.frozen
class HostZone:
    """An operator's zone file served behind the resolver, and who may update it."""

    origin: str
    file: str
    #: Sources (CIDR) whose unsigned updates are accepted.
    allow_update: tuple[str, ...] = ()
    update_keys: tuple[ZoneUpdateKey, ...] = ()

    @property
    def updatable(self) -> bool:
        return bool(self.allow_update or self.update_keys)


@attrs.frozen
class TransferKey:
    """A TSIG key that may transfer our zones (and sign NOTIFY)."""

    name: str
    algorithm: str
    secret: str


@attrs.frozen
class DNSSettings:
    listen: tuple[tuple[str, int], ...] = (("127.0.0.1", 5300),)
    #: C{dns.listen} entries C{"systemd:NAME"}: serve DNS on the sockets systemd
    #: passed with that FileDescriptorName, so port 53 needs no root (none by default).
    listen_systemd: tuple[str, ...] = ()
    nameservers: tuple[str, ...] = ()
    hostmaster: str = ""
    serial: int = 1
    refresh: int = 3600
    retry: int = 600
    expire: int = 1209600
    minimum: int = 30
    soa_ttl: int = 3600
    glue: dict[str, tuple[IPAddress, ...]] = attrs.field(factory=dict)
    zones: tuple[HostZone, ...] = ()
    updates: bool = True
    update_local_zones: bool = False
    transfer_allow: tuple[str, ...] = ()
    transfer_keys: tuple[TransferKey, ...] = ()
    journal_size: int = 1000
    notify: tuple[tuple[str, int], ...] = ()
    notify_retry: float = 2.0
    notify_retries: int = 5
    notify_key: str | None = None


@attrs.frozen
class HTTPSettings:
    """
    The HTTP update methods. C{listen} holds Twisted endpoint strings
    (C{tcp:8080:interface=127.0.0.1}, C{ssl:8443:privateKey=k.pem:certKey=c.pem}).
    C{base_url} is the original's "Base URL for HTTP services": its path is
    where C{ddns}, C{myip} and C{checkip} live; C{/nic/update} is always at
    the root.
    """

    listen: tuple[str, ...] = ()
    base_url: str = "http://localhost/dyndns/"
    base_path: str = "/dyndns/"
    url_auth: bool = True
    basic_auth: bool = True
    nic_update: bool = True
    remote_ip: bool = True
    gnudip: bool = True
    nic_update_ignore_hostname: bool = False
    trusted_proxies: tuple[str, ...] = ()
    timeout: int = 30
    access_log: str | None = None


@attrs.frozen
class GnuDIPSettings:
    """
    GnuDIP: the TCP listeners, and for both transports the salt window and
    the key that signs HTTP salts (a file, so salts survive a restart).
    """

    listen: tuple[str, ...] = ()
    timeout: int = 30
    max_connections_per_source: int = 8
    salt_window: int = 60
    http_key_file: str = "gnudip-http.key"


@attrs.frozen
class AdminSettings:
    """
    The admin listener (JSON API, status page, metrics). C{users} maps an
    admin name to its scrypt hash (HTTP Basic); C{tokens} holds SHA-256 hex
    digests of bearer tokens. There are no default credentials.
    """

    listen: tuple[str, ...] = ()
    users: dict[str, str] = attrs.field(factory=dict)
    tokens: tuple[str, ...] = ()


@attrs.frozen
class ConnectionSettings:
    """
    C{[connections]}: caps on concurrent TCP connections per listener kind
    (per source and in total) and the deadlines that free them. The GnuDIP
    per-source cap and idle timeout stay C{gnudip.max_connections_per_source}
    and C{gnudip.timeout}; HTTP's idle timeout stays C{http.timeout}.
    """

    ipv6_prefix: int = 64
    reserved_files: int = 128
    http_max_per_source: int = 64
    http_max_total: int = 4096
    http_header_timeout: float = 10.0
    http_request_timeout: float = 30.0
    admin_max_per_source: int = 16
    admin_max_total: int = 64
    admin_idle_timeout: float = 30.0
    gnudip_max_total: int = 1024
    gnudip_line_timeout: float = 10.0
    dns_tcp_max_per_source: int = 16
    dns_tcp_max_total: int = 1024
    dns_tcp_idle_timeout: float = 30.0
    dns_tcp_message_timeout: float = 10.0


class CookieSecret:
    """
    The DNS cookie secret (16 bytes). Shown as C{(secret)}, never as its
    bytes, wherever the settings are printed or served (the admin API).
    """

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CookieSecret) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __repr__(self) -> str:
        return "(secret)"

    __str__ = __repr__


@attrs.frozen
class RRLSettings:
    """C{[dns.rrl]}: response rate limiting of UDP answers (see L{dyndns_plugin.dns.rrl})."""

    enabled: bool = True
    responses_per_second: int = 200
    slip: int = 2
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    table_size: int = 100_000


@attrs.frozen
class CookieSettings:
    """
    C{[dns.cookies]}: DNS cookies (RFC 7873, RFC 9018 server cookies).
    C{secret} None: a random secret made at start.
    """

    enabled: bool = True
    secret: CookieSecret | None = None


@attrs.frozen
class DNSProtectionSettings:
    """What protects the DNS server from abuse: C{[dns.rrl]} and C{[dns.cookies]}."""

    rrl: RRLSettings = attrs.field(factory=RRLSettings)
    cookies: CookieSettings = attrs.field(factory=CookieSettings)


#: The log formats of C{[log] format}.
LOG_FORMATS = ("text", "json")
#: The levels of C{[log] level}, most verbose first (Twisted's names).
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")


@attrs.frozen
class LogSettings:
    """
    C{[log]}: how twistd's log lines look (L{dyndns_plugin.logformat}).

    @ivar format: C{"text"}: Twisted's readable lines (the default);
        C{"json"}: one JSON object per line, every event field a key, for a
        log pipeline.
    @ivar level: the least severe level written; C{"info"} writes
        everything this package logs (it logs nothing at C{"debug"}).
    """

    format: str = "text"
    level: str = "info"


@attrs.frozen
class Settings:
    """
    Everything the configuration file says.

    @ivar path: the configuration file itself (for messages).
    """

    path: str
    suffix: str
    store_backend: str = "sqlite"
    store_path: str = "dyndns.sqlite"
    #: The PostgreSQL connection string (C{store.dsn}, or read from
    #: C{store.dsn_file}): None unless the backend is "postgresql".
    store_dsn: str | None = None
    #: Where state without a configured path lives (L{state_directory}).
    state_directory: str = ""
    default_ttl: int = 30
    min_ttl: int = 0
    max_ttl: int = 86400
    poll_interval: float = 0.5
    auth_checker: str | None = None
    log_updates: bool = False
    dns: DNSSettings = attrs.field(factory=DNSSettings)
    http: HTTPSettings | None = None
    gnudip: GnuDIPSettings = attrs.field(factory=GnuDIPSettings)
    admin: AdminSettings = attrs.field(factory=AdminSettings)
    connections: ConnectionSettings = attrs.field(factory=ConnectionSettings)
    limits: LimitSettings = attrs.field(factory=LimitSettings)
    dns_protection: DNSProtectionSettings = attrs.field(factory=DNSProtectionSettings)
    log: LogSettings = attrs.field(factory=LogSettings)
    acme: AcmeSettings = attrs.field(factory=AcmeSettings)


_KIND_NAMES = {
    int: "a whole number",
    float: "a number",
    str: "a string",
    list: "a list",
    bool: "true or false",
    dict: "a table",
}


class _Table:
    """One TOML table being read; remembers which keys were used."""

    def __init__(self, path: str, prefix: str, data: object, seen: set[str] | None = None) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, prefix or "(top)", "must be a table")
        self.path = path
        self.prefix = prefix
        self.data = data
        self.used: set[str] = set()
        #: Every schema key read, across tables (the schema test's check).
        self.seen = seen

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.path, self.key(name), problem)

    def get(self, name: str, kind: type, default: Any = _FROM_SCHEMA, required: bool = False) -> Any:
        """
        The value of key C{name}, checked to be of C{kind}; when absent, its
        default from L{dyndns_plugin.config_schema} (or C{default}).
        """
        self.used.add(name)
        schema_key = config_schema.lookup(self.key(name))  # KeyError: a key the schema does not list
        if self.seen is not None:
            self.seen.add(schema_key.path)
        if name not in self.data:
            if required:
                raise self.error(name, "is required")
            if default is _FROM_SCHEMA:
                default = None if schema_key.default is config_schema.COMPUTED else schema_key.default
            if isinstance(default, list):
                default = list(default)
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(name, f"must be {_KIND_NAMES[kind]}, not {value!r}")
        return value

    def convert(self, name: str, function: Callable[[Any], T], value: Any) -> T:
        try:
            return function(value)
        except ValidationError as e:
            raise self.error(name, e.message) from None
        except ValueError as e:
            raise self.error(name, str(e)) from None

    def table(self, name: str) -> "_Table":
        self.used.add(name)
        return _Table(self.path, self.key(name), self.data.get(name, {}), self.seen)

    def item(self, name: str, index: int, data: object) -> "_Table":
        """The C{index}-th table of the array of tables C{name}."""
        return _Table(self.path, f"{self.key(name)}[{index}]", data, self.seen)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            name = unknown[0]
            close = difflib.get_close_matches(name, config_schema.known_names(self.prefix), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.error(name, f"unknown key{hint}")


def parse_listen(value: str) -> tuple[str, int]:
    """C{"127.0.0.1:53"}, C{"[::1]:53"} or C{":53"} (every interface)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host:
        ipaddress.ip_address(host)  # raises ValueError for a non-address
    return host, port


def parse_systemd_name(value: str) -> str:
    """C{"systemd:NAME"}: NAME as systemd allows a FileDescriptorName (printable ASCII, no colon)."""
    name = value.removeprefix("systemd:")
    if not re.fullmatch(r"[!-9;-~]{1,255}", name):
        raise ValueError(f"{value!r}: NAME must be a FileDescriptorName (1-255 printable characters, no ':')")
    return name


def _positive(value: int) -> int:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def load_settings(path: str) -> Settings:
    """Read and check the configuration file at C{path}."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(path, "(file)", e.strerror or str(e)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "(syntax)", str(e)) from None
    except UnicodeDecodeError as e:  # tomllib.load decodes without catching this
        raise ConfigError(path, "(syntax)", f"not UTF-8 text: {e}") from None
    return settings_from_dict(data, path)


def default_settings(state_dir: str | None = None) -> Settings:
    """The embedded default: what C{twistd dyndns} runs with no configuration."""
    return settings_from_dict({}, EMBEDDED_DEFAULT, state_dir=state_dir)


def settings_from_dict(
    data: dict[str, Any],
    path: str = "<config>",
    *,
    state_dir: str | None = None,
    seen: set[str] | None = None,
) -> Settings:
    """
    Check C{data} (a parsed TOML document) and fill in every default.
    Relative paths are relative to the folder of C{path}; what has no path
    lands in C{state_dir} (default: L{state_directory}). C{seen} collects
    the schema keys read.
    """
    base = os.path.dirname(os.path.abspath(path)) if path != EMBEDDED_DEFAULT else os.getcwd()
    state = state_dir if state_dir is not None else state_directory()
    top = _Table(path, "", data, seen)

    service = top.table("service")
    suffix = service.convert("suffix", normalize_name, service.get("suffix", str))
    if "." not in suffix:
        raise service.error("suffix", "needs at least two labels, like dyn.example.com")
    default_ttl = service.convert("default_ttl", validate_ttl, service.get("default_ttl", int))
    min_ttl = service.convert("min_ttl", validate_ttl, service.get("min_ttl", int))
    max_ttl = service.convert("max_ttl", validate_ttl, service.get("max_ttl", int))
    if not min_ttl <= default_ttl <= max_ttl:
        raise service.error("default_ttl", f"must lie within min_ttl..max_ttl ({min_ttl}..{max_ttl})")
    poll = service.get("poll_interval", float)
    if not 0.05 <= poll <= 60:
        raise service.error("poll_interval", "must be 0.05 to 60 seconds")
    log_updates = service.get("log_updates", bool)
    auth_checker = service.get("auth_checker", str)
    if auth_checker is not None and not re.fullmatch(r"[\w.]+:[\w.]+", auth_checker):
        raise service.error("auth_checker", f'{auth_checker!r} is not "package.module:callable"')
    service.done()

    store = top.table("store")
    backend = store.get("backend", str)
    if backend not in ("sqlite", "memory", "postgresql"):
        raise store.error("backend", f"{backend!r} is not 'sqlite', 'memory' or 'postgresql'")
    store_path = store.get("path", str)
    if store_path == "":
        raise store.error("path", "must not be empty")
    store_path = os.path.join(state, "dyndns.sqlite") if store_path is None else os.path.join(base, store_path)
    store_dsn = _store_dsn(store, base, backend)
    store.done()

    dns_table = top.table("dns")
    listen_values = dns_table.get("listen", list)
    listen = []
    listen_systemd = []
    for item in listen_values:
        if not isinstance(item, str):
            raise dns_table.error("listen", 'must be a list of "HOST:PORT" or "systemd:NAME" strings')
        if item.startswith("systemd:"):
            listen_systemd.append(dns_table.convert("listen", parse_systemd_name, item))
        else:
            listen.append(dns_table.convert("listen", parse_listen, item))
    nameservers = tuple(
        dns_table.convert("nameservers", normalize_name, ns)
        for ns in dns_table.get("nameservers", list) or [f"ns1.{suffix}"]
    )
    if not nameservers:
        raise dns_table.error("nameservers", "needs at least one name server")
    hostmaster = dns_table.convert(
        "hostmaster", normalize_name, dns_table.get("hostmaster", str) or f"hostmaster.{suffix}"
    )
    timers = {
        key: dns_table.convert(key, _positive, dns_table.get(key, int, default))
        for key, default in (
            ("serial", 1),
            ("refresh", 3600),
            ("retry", 600),
            ("expire", 1209600),
            ("minimum", 30),
            ("soa_ttl", 3600),
        )
    }
    glue_table = dns_table.table("glue")
    glue: dict[str, tuple[IPAddress, ...]] = {}
    for name, addresses in glue_table.data.items():
        glue_table.used.add(name)
        key = glue_table.convert(name, normalize_name, name)
        if key != suffix and not key.endswith("." + suffix):
            raise glue_table.error(name, f"glue is only for names under {suffix}")
        if not isinstance(addresses, list):
            raise glue_table.error(name, "must be a list of addresses")
        glue[key] = tuple(glue_table.convert(name, parse_address, a) for a in addresses)
    zones = []
    for i, item in enumerate(dns_table.get("zones", list)):
        zone = dns_table.item("zones", i, item)
        origin = zone.convert("origin", normalize_name, zone.get("origin", str, required=True))
        file = zone.get("file", str, required=True)
        allow_update = tuple(zone.convert("allow_update", _network, a) for a in zone.get("allow_update", list))
        update_keys = _zone_update_keys(zone, origin)
        zone.done()
        zones.append(HostZone(origin, os.path.join(base, file), allow_update, update_keys))
    updates = dns_table.get("updates", bool)
    update_local_zones = dns_table.get("update_local_zones", bool)
    transfer = _transfer_settings(dns_table)
    dns_protection = _dns_protection_settings(dns_table)
    dns_table.done()
    http_settings = _http_settings(top, path)
    gnudip_settings = _gnudip_settings(top, base, state)
    admin_settings = _admin_settings(top)
    connection_settings = _connection_settings(top)
    limit_settings = _limit_settings(top)
    log_settings = _log_settings(top)
    acme_settings = _acme_settings(top)
    top.done()

    return Settings(
        path=path,
        suffix=suffix,
        store_backend=backend,
        store_path=store_path,
        store_dsn=store_dsn,
        state_directory=state,
        default_ttl=default_ttl,
        min_ttl=min_ttl,
        max_ttl=max_ttl,
        poll_interval=poll,
        auth_checker=auth_checker,
        log_updates=log_updates,
        dns=DNSSettings(
            listen=tuple(listen),
            listen_systemd=tuple(listen_systemd),
            nameservers=nameservers,
            hostmaster=hostmaster,
            glue=glue,
            zones=tuple(zones),
            updates=updates,
            update_local_zones=update_local_zones,
            **transfer,
            serial=timers["serial"],
            refresh=timers["refresh"],
            retry=timers["retry"],
            expire=timers["expire"],
            minimum=timers["minimum"],
            soa_ttl=timers["soa_ttl"],
        ),
        http=http_settings,
        gnudip=gnudip_settings,
        admin=admin_settings,
        connections=connection_settings,
        limits=limit_settings,
        dns_protection=dns_protection,
        log=log_settings,
        acme=acme_settings,
    )


def _acme_settings(top: _Table) -> AcmeSettings:
    """C{[acme]}: challenge TXT records and the ways to set them."""
    table = top.table("acme")
    ttl = table.convert("ttl", validate_ttl, table.get("ttl", int))
    lifetime = table.get("lifetime", int)
    if not 60 <= lifetime <= 604800:
        raise table.error("lifetime", "must be 60 to 604800 seconds")
    flags = {
        key: table.get(key, bool)
        for key in ("enabled", "rfc2136", "acme_dns", "acme_dns_register", "httpreq", "passwords")
    }
    table.done()
    return AcmeSettings(ttl=ttl, lifetime=float(lifetime), **flags)


def _log_settings(top: _Table) -> LogSettings:
    """C{[log]}: the log format and level."""
    table = top.table("log")
    format = table.get("format", str)
    if format not in LOG_FORMATS:
        raise table.error("format", f"{format!r} is not one of {', '.join(LOG_FORMATS)}")
    level = table.get("level", str)
    if level not in LOG_LEVELS:
        raise table.error("level", f"{level!r} is not one of {', '.join(LOG_LEVELS)}")
    table.done()
    return LogSettings(format=format, level=level)


def _network(value: object) -> str:
    """An address or CIDR given as a string (ip_network would take an int)."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an address or network string")
    return str(ipaddress.ip_network(value, strict=False))


def _zone_update_keys(zone: _Table, origin: str) -> tuple[ZoneUpdateKey, ...]:
    """C{update_keys} of one C{[[dns.zones]]}: TSIG keys, each optionally limited to names and types."""
    keys: list[ZoneUpdateKey] = []
    for i, item in enumerate(zone.get("update_keys", list)):
        key = zone.item("update_keys", i, item)
        name = key.convert("name", normalize_name, key.get("name", str, required=True))
        algorithm = key.convert("algorithm", validate_tsig_algorithm, key.get("algorithm", str))
        secret = key.convert("secret", validate_tsig_secret, key.get("secret", str, required=True))
        names = tuple(key.convert("names", lambda n: _policy_name(n, origin), n) for n in key.get("names", list))
        types = tuple(key.convert("types", _update_type, t) for t in key.get("types", list))
        key.done()
        if any(k.name == name for k in keys):
            raise zone.error(f"update_keys[{i}].name", f"{name!r} is given twice")
        keys.append(ZoneUpdateKey(name, algorithm, secret, names, types))
    return tuple(keys)


def _policy_name(value: object, origin: str) -> str:
    """A name (or C{*.name}: the names below it) inside the zone C{origin}."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a name")
    wildcard = value.startswith("*.")
    name = normalize_name(value[2:] if wildcard else value)
    if name != origin and not name.endswith("." + origin):
        raise ValueError(f"{value!r} is not inside {origin}")
    return f"*.{name}" if wildcard else name


#: Record types no update may add: meta and query types (RFC 6895), TSIG, OPT.
_META_TYPE_CODES = frozenset({41, 249, 250, 251, 252, 253, 254, 255})


def _update_type(value: object) -> int:
    """A record type by its name (C{"TXT"}, C{"TYPE65534"})."""
    import dns.rdatatype

    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a record type name")
    try:
        rdtype = int(dns.rdatatype.from_text(value))
    except Exception:
        raise ValueError(f"{value!r} is not a record type") from None
    if rdtype in _META_TYPE_CODES:
        raise ValueError(f"{value!r} cannot be updated")
    return rdtype


def _transfer_settings(dns_table: _Table) -> dict[str, Any]:
    """C{[dns.transfer]} (who may transfer, the journal) and C{[dns.notify]}."""
    table = dns_table.table("transfer")
    allow = tuple(table.convert("allow", _network, item) for item in table.get("allow", list))
    keys = []
    for i, item in enumerate(table.get("keys", list)):
        key = table.item("keys", i, item)
        name = key.convert("name", normalize_name, key.get("name", str, required=True))
        algorithm = key.convert("algorithm", validate_tsig_algorithm, key.get("algorithm", str))
        secret = key.convert("secret", validate_tsig_secret, key.get("secret", str, required=True))
        key.done()
        keys.append(TransferKey(name, algorithm, secret))
    journal_size = _bounded(table, "journal", 0, 1_000_000)
    table.done()
    notify = dns_table.table("notify")
    targets = []
    for item in notify.get("targets", list):
        if not isinstance(item, str):
            raise notify.error("targets", 'must be a list of "ADDRESS:PORT" strings')
        host, port = notify.convert("targets", parse_listen, item)
        if not host or port == 0:
            raise notify.error("targets", f"{item!r} needs an address and a port")
        targets.append((host, port))
    retry = notify.get("retry", float)
    if not 0.01 <= retry <= 3600:
        raise notify.error("retry", "must be 0.01 to 3600 seconds")
    retries = _bounded(notify, "retries", 0, 20)
    notify_key = notify.get("key", str)
    if notify_key is not None:
        notify_key = notify.convert("key", normalize_name, notify_key)
        if notify_key not in {k.name for k in keys}:
            raise notify.error("key", f"{notify_key!r} is not one of dns.transfer.keys")
    notify.done()
    return dict(
        transfer_allow=allow,
        transfer_keys=tuple(keys),
        journal_size=journal_size,
        notify=tuple(targets),
        notify_retry=retry,
        notify_retries=retries,
        notify_key=notify_key,
    )


def _limit_settings(top: _Table) -> LimitSettings:
    """C{[limits]}: lockout after failed logins, and the per-user change limit."""
    table = top.table("limits")

    def seconds(key: str, low: float, high: float) -> float:
        value = table.get(key, float)
        if not low <= value <= high:
            raise table.error(key, f"must be {low:g} to {high:g} seconds")
        return value

    settings = LimitSettings(
        enabled=table.get("enabled", bool),
        source_failures=_bounded(table, "source_failures", 1, 1_000_000),
        user_failures=_bounded(table, "user_failures", 1, 1_000_000),
        failure_window=seconds("failure_window", 1, 86400 * 7),
        lockout=seconds("lockout", 1, 86400),
        max_lockout=seconds("max_lockout", 1, 86400 * 7),
        ipv4_prefix=_bounded(table, "ipv4_prefix", 8, 32),
        ipv6_prefix=_bounded(table, "ipv6_prefix", 16, 128),
        exempt=tuple(table.convert("exempt", _network, item) for item in table.get("exempt", list)),
        refusal_delay=seconds("refusal_delay", 0, 60),
        source_checks=_bounded(table, "source_checks", 1, 64),
        suspect_checks=_bounded(table, "suspect_checks", 1, 64),
        source_queue=_bounded(table, "source_queue", 0, 1000),
        update_changes=_bounded(table, "update_changes", 0, 1_000_000),
        change_window=seconds("change_window", 1, 86400 * 7),
        max_tracked=_bounded(table, "max_tracked", 100, 10_000_000),
    )
    if settings.max_lockout < settings.lockout:
        raise table.error("max_lockout", "must not be shorter than lockout")
    table.done()
    return settings


def _connection_settings(top: _Table) -> ConnectionSettings:
    """C{[connections]}: connection caps and deadlines of every TCP listener."""
    table = top.table("connections")

    def seconds(key: str) -> float:
        value = table.get(key, float)
        if not 0.1 <= value <= 3600:
            raise table.error(key, "must be 0.1 to 3600 seconds")
        return value

    def count(key: str) -> int:
        return _bounded(table, key, 1, 1_000_000)

    settings = ConnectionSettings(
        ipv6_prefix=_bounded(table, "ipv6_prefix", 32, 128),
        reserved_files=_bounded(table, "reserved_files", 16, 1_000_000),
        http_max_per_source=count("http_max_per_source"),
        http_max_total=count("http_max_total"),
        http_header_timeout=seconds("http_header_timeout"),
        http_request_timeout=seconds("http_request_timeout"),
        admin_max_per_source=count("admin_max_per_source"),
        admin_max_total=count("admin_max_total"),
        admin_idle_timeout=seconds("admin_idle_timeout"),
        gnudip_max_total=count("gnudip_max_total"),
        gnudip_line_timeout=seconds("gnudip_line_timeout"),
        dns_tcp_max_per_source=count("dns_tcp_max_per_source"),
        dns_tcp_max_total=count("dns_tcp_max_total"),
        dns_tcp_idle_timeout=seconds("dns_tcp_idle_timeout"),
        dns_tcp_message_timeout=seconds("dns_tcp_message_timeout"),
    )
    if settings.http_request_timeout < settings.http_header_timeout:
        raise table.error("http_request_timeout", "must not be shorter than http_header_timeout")
    table.done()
    return settings


def _admin_settings(top: _Table) -> AdminSettings:
    from dyndns_plugin.passwords import is_password_hash

    table = top.table("admin")
    listen = _endpoints(table, "tcp:8053:interface=127.0.0.1")
    users_table = table.table("users")
    users = {}
    for name, value in users_table.data.items():
        users_table.used.add(name)
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
            raise users_table.error(name, "an admin name is lower-case letters, digits and -")
        if not isinstance(value, str) or not is_password_hash(value):
            raise users_table.error(name, "must be a hash from `dyndns hash-password`")
        users[name] = value
    tokens = []
    for item in table.get("tokens", list):
        if not isinstance(item, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", item):
            raise table.error("tokens", 'each token is "sha256:<64 hex digits>" (`dyndns make-token`)')
        tokens.append(item.removeprefix("sha256:"))
    if not users and not tokens:
        if listen and "listen" in table.data:
            raise table.error("listen", "the admin listener needs admin.users or admin.tokens (no default credentials)")
        listen = ()  # off until credentials exist
    table.done()
    return AdminSettings(listen=listen, users=users, tokens=tuple(tokens))


def _endpoints(table: _Table, example: str) -> tuple[str, ...]:
    """C{listen}: a list of Twisted endpoint strings (parsed fully at start)."""
    listen = []
    for item in table.get("listen", list):
        if not isinstance(item, str) or ":" not in item:
            raise table.error("listen", f'{item!r} is not a Twisted endpoint like "{example}"')
        listen.append(item)
    return tuple(listen)


def _bounded(table: _Table, key: str, low: int, high: int) -> int:
    value = table.get(key, int)
    if not low <= value <= high:
        raise table.error(key, f"must be {low} to {high}")
    return value


def _store_dsn(store: _Table, base: str, backend: str) -> str | None:
    """
    C{store.dsn}, or the first line of C{store.dsn_file} (a password kept
    out of the configuration): PostgreSQL's only, and then one of them.
    """
    dsn = store.get("dsn", str)
    dsn_file = store.get("dsn_file", str)
    if backend != "postgresql":
        if dsn is not None or dsn_file is not None:
            raise store.error("dsn" if dsn is not None else "dsn_file", 'only for backend = "postgresql"')
        return None
    if (dsn is None) == (dsn_file is None):
        raise store.error("dsn", 'backend "postgresql" needs store.dsn or store.dsn_file (one of them)')
    if dsn_file is not None:
        path = os.path.join(base, dsn_file)
        try:
            with open(path) as f:
                dsn = f.readline().strip()
        except OSError as e:
            raise store.error("dsn_file", f"{path}: {e.strerror}") from None
    assert dsn is not None
    if not dsn.startswith(("postgresql://", "postgres://")) and "=" not in dsn:
        raise store.error(
            "dsn", 'is not a PostgreSQL connection string ("postgresql://USER@HOST/DB" or "host=... dbname=...")'
        )
    return dsn


def _gnudip_settings(top: _Table, base: str, state: str) -> GnuDIPSettings:
    table = top.table("gnudip")
    listen = _endpoints(table, "tcp:3495:interface=127.0.0.1")
    timeout = _bounded(table, "timeout", 1, 600)
    per_source = _bounded(table, "max_connections_per_source", 1, 10000)
    window = _bounded(table, "salt_window", 5, 3600)
    key_file = table.get("http_key_file", str) or os.path.join(state, "gnudip-http.key")
    table.done()
    return GnuDIPSettings(
        listen=listen,
        timeout=timeout,
        max_connections_per_source=per_source,
        salt_window=window,
        http_key_file=os.path.join(base, key_file),
    )


def _http_settings(top: _Table, path: str) -> HTTPSettings:
    from urllib.parse import urlsplit

    table = top.table("http")
    listen = _endpoints(table, "tcp:8080:interface=127.0.0.1")
    base_url = table.get("base_url", str)
    parts = table.convert("base_url", urlsplit, base_url)  # ValueError: "http://[x]/"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise table.error("base_url", f"{base_url!r} is not an http:// or https:// URL")
    base_path = parts.path or "/"
    if not base_path.endswith("/"):
        base_path += "/"
    proxies = []
    for item in table.get("trusted_proxies", list):
        proxies.append(table.convert("trusted_proxies", lambda v: str(ipaddress.ip_network(v, strict=False)), item))
    timeout = _bounded(table, "timeout", 1, 3600)
    methods = table.table("methods")
    switches = {
        key: methods.get(key, bool, True) for key in ("url_auth", "basic_auth", "nic_update", "remote_ip", "gnudip")
    }
    methods.done()
    ignore = table.get("nic_update_ignore_hostname", bool)
    access_log = table.get("access_log", str)
    table.done()
    return HTTPSettings(
        listen=listen,
        base_url=base_url,
        base_path=base_path,
        nic_update_ignore_hostname=ignore,
        trusted_proxies=tuple(proxies),
        timeout=timeout,
        access_log=None if not access_log else os.path.join(os.path.dirname(os.path.abspath(path)), access_log),
        **switches,
    )


def _cookie_secret(value: str) -> CookieSecret:
    try:
        secret = bytes.fromhex(value)
    except ValueError:
        raise ValueError("must be hex digits (32 of them: 16 bytes)") from None
    if len(secret) != 16:
        raise ValueError(f"must be 16 bytes (32 hex digits), not {len(secret)}")
    return CookieSecret(secret)


def _dns_protection_settings(dns_table: _Table) -> DNSProtectionSettings:
    """C{[dns.rrl]} (response rate limiting) and C{[dns.cookies]}."""
    table = dns_table.table("rrl")
    enabled = table.get("enabled", bool)
    rate = _bounded(table, "responses_per_second", 1, 1_000_000)
    slip = _bounded(table, "slip", 0, 10)
    ipv4_prefix = _bounded(table, "ipv4_prefix", 8, 32)
    ipv6_prefix = _bounded(table, "ipv6_prefix", 16, 128)
    exempt = tuple(table.convert("exempt", _network, item) for item in table.get("exempt", list))
    table_size = _bounded(table, "table_size", 1, 10_000_000)
    table.done()
    cookies = dns_table.table("cookies")
    cookies_enabled = cookies.get("enabled", bool)
    secret_text = cookies.get("secret", str)
    secret = None if secret_text is None else cookies.convert("secret", _cookie_secret, secret_text)
    cookies.done()
    return DNSProtectionSettings(
        rrl=RRLSettings(
            enabled=enabled,
            responses_per_second=rate,
            slip=slip,
            ipv4_prefix=ipv4_prefix,
            ipv6_prefix=ipv6_prefix,
            exempt=exempt,
            table_size=table_size,
        ),
        cookies=CookieSettings(enabled=cookies_enabled, secret=secret),
    )
