"""
SIGHUP re-reads the configuration file (C{systemctl reload dyndns}).

What can change in a running server is applied at once (L{LIVE_KEYS}: TTL
bounds, update logging, the lockout and change limits, admin credentials,
DNS rate limiting and cookies); every other key that changed is logged, one
line each, as needing a restart, and keeps its old value until then. A new
file that does not load is logged in one line naming the key, and the
server keeps running on the configuration it has. docs/reload.md lists both.
"""

from __future__ import annotations

import signal
from typing import Any

import attrs
from twisted.application import service
from twisted.logger import Logger

from dyndns_plugin.config import EMBEDDED_DEFAULT, ConfigError, Settings, load_settings

log = Logger()

#: Config keys applied to a running server (a key, or a table ending in ".").
#: C{service.min_ttl}/C{max_ttl} only while C{default_ttl} stays (a new
#: default would change every published answer and zone serial). The
#: limits' check gate (C{source_checks}, C{suspect_checks}, C{source_queue})
#: is sized at start.
LIVE_KEYS = (
    "service.min_ttl",
    "service.max_ttl",
    "service.log_updates",
    "limits.",
    "admin.users",
    "admin.tokens",
    "dns.rrl.",
    "dns.cookies.",
)
_GATE_KEYS = ("limits.source_checks", "limits.suspect_checks", "limits.source_queue")

#: Settings attributes under their names in the file (the rest are TABLE.NAME).
_TOP_KEYS = {
    "suffix": "service.suffix",
    "store_backend": "store.backend",
    "store_path": "store.path",
    "default_ttl": "service.default_ttl",
    "min_ttl": "service.min_ttl",
    "max_ttl": "service.max_ttl",
    "poll_interval": "service.poll_interval",
    "auth_checker": "service.auth_checker",
    "log_updates": "service.log_updates",
    "dns_protection": "dns",
}
_HTTP_METHODS = ("url_auth", "basic_auth", "nic_update", "remote_ip", "gnudip")


def config_keys(settings: Settings) -> dict[str, Any]:
    """Every setting under the key the file gives it (C{dns.rrl.slip}, C{http.methods.gnudip})."""
    keys: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        for field in attrs.fields(type(value)):
            name = field.name
            if prefix == "":
                if name == "path":
                    continue
                key = _TOP_KEYS.get(name, name)
            elif prefix == "http" and name in _HTTP_METHODS:
                key = f"http.methods.{name}"
            elif prefix == "dns" and name == "listen_systemd":
                key = "dns.listen"
            else:
                key = f"{prefix}.{name}"
            item = getattr(value, name)
            if attrs.has(type(item)):
                walk(key, item)
            elif key in keys:  # dns.listen: HOST:PORT and systemd: entries
                keys[key] = (keys[key], item)
            else:
                keys[key] = item

    walk("", settings)
    return keys


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """The config keys whose values differ, in sorted order."""
    before, after = config_keys(old), config_keys(new)
    return sorted(k for k in before.keys() | after.keys() if before.get(k, None) != after.get(k, None))


def is_live(key: str, old: Settings, new: Settings) -> bool:
    """Whether a change of C{key} from C{old} to C{new} is applied without a restart."""
    if key in _GATE_KEYS:
        return False
    if key in ("service.min_ttl", "service.max_ttl") and old.default_ttl != new.default_ttl:
        return False
    return any(key == live or (live.endswith(".") and key.startswith(live)) for live in LIVE_KEYS)


def live_part(old: Settings, new: Settings) -> Settings:
    """C{old} with the live keys of C{new}: what the server runs on after a reload."""
    changed = {k for k in changed_keys(old, new) if is_live(k, old, new)}
    result = old
    if {"service.min_ttl", "service.max_ttl"} & changed:
        result = attrs.evolve(result, min_ttl=new.min_ttl, max_ttl=new.max_ttl)
    if "service.log_updates" in changed:
        result = attrs.evolve(result, log_updates=new.log_updates)
    if any(k.startswith("limits.") for k in changed):
        gate = {name: getattr(old.limits, name) for name in ("source_checks", "suspect_checks", "source_queue")}
        result = attrs.evolve(result, limits=attrs.evolve(new.limits, **gate))
    if {"admin.users", "admin.tokens"} & changed:
        result = attrs.evolve(result, admin=attrs.evolve(old.admin, users=new.admin.users, tokens=new.admin.tokens))
    if any(k.startswith(("dns.rrl.", "dns.cookies.")) for k in changed):
        result = attrs.evolve(result, dns_protection=new.dns_protection)
    return result


class ReloadOnHangup(service.Service):
    """
    Re-reads C{settings.path} on SIGHUP and applies it to the service tree
    C{top} (what L{dyndns_plugin.tap.build_service} made). Only C{twistd
    dyndns} installs this: an embedding program owns its signals.
    """

    def __init__(self, top: Any, settings: Settings, reactor: Any = None) -> None:
        self.top = top
        self.settings = settings
        self.reactor = reactor
        self._previous_handler: Any = None

    def startService(self) -> None:
        super().startService()
        if self.reactor is None:
            from twisted.internet import reactor

            self.reactor = reactor
        self._previous_handler = signal.signal(signal.SIGHUP, self._hangup)

    def stopService(self) -> None:
        super().stopService()
        if self._previous_handler is not None:
            signal.signal(signal.SIGHUP, self._previous_handler)
            self._previous_handler = None

    def _hangup(self, signum: int, frame: Any) -> None:
        # A signal handler may interrupt the reactor anywhere: do the work
        # in the reactor's own turn.
        self.reactor.callFromThread(self.reload)

    def reload(self) -> Settings:
        """Read the file again and apply what can change live; the settings now in force."""
        path = self.settings.path
        if path == EMBEDDED_DEFAULT:
            log.info("reload: no configuration file (the embedded default): nothing to read again")
            return self.settings
        try:
            new = load_settings(path)
        except ConfigError as e:
            log.error(
                "reload: {path}: {key}: {problem}; still running on the previous configuration",
                path=e.path,
                key=e.key,
                problem=e.problem,
            )
            return self.settings
        old = self.settings
        applied = live_part(old, new)
        self.apply(old, applied)
        self.settings = applied
        for key in changed_keys(applied, new):
            log.warn("reload: {key} changed; it takes effect after a restart", key=key)
        live = changed_keys(old, applied)
        log.info(
            "reload: {path} read; applied: {keys}",
            path=path,
            keys=", ".join(live) if live else "nothing changed that applies live",
        )
        return applied

    def apply(self, old: Settings, new: Settings) -> None:
        """Put the live settings of C{new} into the running parts."""
        from dyndns_plugin.service.writes import TTLBounds

        dyndns = self.top.dyndns
        dyndns.writes.ttl = TTLBounds(dyndns.writes.ttl.default, new.min_ttl, new.max_ttl)
        dyndns.log_updates = new.log_updates
        if new.limits != old.limits:
            dyndns.limiter.reconfigure(new.limits)
        factory = self.top.dns_factory
        if new.dns_protection.rrl != old.dns_protection.rrl:
            from dyndns_plugin.dns.protection import make_rrl

            factory.rrl = make_rrl(new, dyndns.clock)
        if new.dns_protection.cookies != old.dns_protection.cookies:
            from dyndns_plugin.dns.protection import make_cookies

            factory.cookies = make_cookies(new, dyndns.clock)
        admin_site = getattr(self.top, "admin_site", None)
        if admin_site is not None:
            resource = admin_site.resource
            if new.admin != old.admin:
                from dyndns_plugin.web.admin import AdminAuth

                resource.auth = AdminAuth(new.admin.users, new.admin.tokens, self.reactor, dyndns)
            resource.settings = new
