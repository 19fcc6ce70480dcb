"""
C{dyndns zone show ORIGIN} and C{dyndns zone clear ORIGIN NAME [TYPE]}: what
RFC 2136 updates set in a host zone, and taking it back.

Both read the store directly (no user is loaded: seconds at a million
users). A clear goes through the server running on the store when there is
one (its control socket), so the zone gets a new serial, its journal step
and NOTIFY like any update; with no server running it is written to the
store, and the next start serves the zone file's records there (with a new
serial: the content changed).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Awaitable, Callable

import dns.rdatatype
from twisted.internet import defer, task

from dyndns_plugin.config import ConfigError, Settings, normalize_name
from dyndns_plugin.replication.zone_records import type_text, zone_file_lines
from dyndns_plugin.store import IZoneJournal, StoreError
from dyndns_plugin.store.sqlite import SQLiteUserStore


class ZoneCommandError(Exception):
    """A refusal in one line."""


def add_zone_commands(commands: Any) -> None:
    """The C{zone} group of the C{dyndns} parser."""
    zone = commands.add_parser("zone", help="what RFC 2136 updates set in the host zones")
    actions = zone.add_subparsers(dest="command", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="the RRsets updates set in a host zone (zone-file lines)")
    show.add_argument("origin", metavar="ORIGIN", help="the host zone, e.g. example.org")
    show.set_defaults(run=None, settings_only=cmd_zone_show)
    clear = actions.add_parser("clear", help="drop what updates set at a name: the zone file's records show again")
    clear.add_argument("origin", metavar="ORIGIN", help="the host zone, e.g. example.org")
    clear.add_argument("name", metavar="NAME", help="a name in it (www.example.org, or www)")
    clear.add_argument("type", metavar="TYPE", nargs="?", help="only this record type (default: every type)")
    clear.set_defaults(run=None, settings_only=cmd_zone_clear)


def cmd_zone_show(args: argparse.Namespace, settings: Settings) -> int:
    try:
        origin = _host_zone(settings, args.origin)
        updated = _with_store(settings, lambda store: store.load_zone_records())
    except (ZoneCommandError, StoreError) as e:
        print(f"dyndns: {e}", file=sys.stderr)
        return 1
    lines = zone_file_lines(updated.get(origin, {}))
    print(f"; {origin}: {len(updated.get(origin, {}))} RRsets set by updates")
    for line in lines:
        print(line)
    return 0


def cmd_zone_clear(args: argparse.Namespace, settings: Settings) -> int:
    from dyndns_plugin.control import NoServer, request

    try:
        origin = _host_zone(settings, args.origin)
        name = _name_in(origin, args.name)
        rdtype = _type(args.type) if args.type else None
        try:
            line = f"zone-clear {origin} {name}" + (f" {rdtype}" if rdtype is not None else "")
            dropped = request(settings.store_path, line)
            where = "the server serves the zone file's records there now"
        except NoServer:
            dropped = _clear_in_store(settings, origin, name, rdtype)
            where = "no server runs on the store: the next start serves the zone file's records there"
        except OSError as e:
            raise ZoneCommandError(f"the server did not clear it: {e}") from None
    except (ZoneCommandError, StoreError) as e:
        print(f"dyndns: {e}", file=sys.stderr)
        return 1
    what = f"{type_text(rdtype)} RRset" if rdtype is not None else "RRsets"
    print(f"cleared {dropped} {what} at {name} in {origin}" + (f"; {where}" if dropped else ""))
    return 0


def _host_zone(settings: Settings, origin: str) -> str:
    if settings.store_backend != "sqlite":
        raise ZoneCommandError(f'store.backend is "{settings.store_backend}": only the sqlite store keeps zone updates')
    try:
        origin = normalize_name(origin)
    except (ConfigError, ValueError) as e:
        raise ZoneCommandError(f"{origin!r}: {e}") from None
    if origin not in {zone.origin for zone in settings.dns.zones}:
        raise ZoneCommandError(f"{origin} is not one of the host zones ([[dns.zones]]) of {settings.path}")
    return origin


def _name_in(origin: str, name: str) -> str:
    """C{name}, relative (C{www}) or not (C{www.example.org}), as a name in C{origin}."""
    absolute = name.endswith(".")
    try:
        name = normalize_name(name)
    except (ConfigError, ValueError) as e:
        raise ZoneCommandError(f"{name!r}: {e}") from None
    if name == origin or name.endswith("." + origin):
        return name
    if absolute:
        raise ZoneCommandError(f"{name} is not in {origin}")
    return f"{name}.{origin}"


def _type(text: str) -> int:
    try:
        return int(dns.rdatatype.from_text(text))
    except Exception:
        raise ZoneCommandError(f"{text!r} is not a record type") from None


def _clear_in_store(settings: Settings, origin: str, name: str, rdtype: int | None) -> int:
    async def clear(store: Any) -> int:
        updated = (await store.load_zone_records()).get(origin, {})
        keys = [k for k in updated if k[0] == name and (rdtype is None or k[1] == rdtype)]
        if keys:
            await store.save_zone_records(origin, {k: None for k in keys}, None, "", None, 0)
        return len(keys)

    return _with_store(settings, clear)


def _with_store(settings: Settings, function: Callable[[Any], Awaitable[Any]]) -> Any:
    """C{function(store)} on the opened SQLite store, on a reactor of its own; its result."""
    outcome: dict[str, Any] = {}

    async def main(reactor: Any) -> None:
        store = SQLiteUserStore(settings.store_path, reactor)
        await store.open()
        try:
            outcome["result"] = await function(IZoneJournal(store))
        finally:
            await store.close()

    def failed(failure: Any) -> None:
        outcome["error"] = failure.value

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)).addErrback(failed))
    except SystemExit:
        pass
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, (StoreError, ZoneCommandError)):
            raise error
        raise StoreError(str(error))
    return outcome["result"]
