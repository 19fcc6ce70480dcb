"""
Moving a whole installation from one store to another (C{dyndns
migrate-store}, from the SQLite file of one node to the PostgreSQL database
of several): users, host states with their challenge values, scoped ACME
keys, zone serials and IXFR journals, host-zone records and TSIG replay
records. The target takes all of it in one transaction or none of it, and
only when it is empty: nothing is merged into another installation.

The serials and journals move too, so secondaries keep transferring by IXFR
from the serial they hold, and the replay records, so a TSIG message already
accepted is not accepted again by the new store.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import attrs

from dyndns_plugin.store import RR, AcmeKey, IUserStore, ReplayState, RRsetKey, Snapshot, StoreError, ZoneHistory


@attrs.frozen
class Installation:
    """Everything a store holds, read from one store to be written to another."""

    snapshot: Snapshot
    acme_keys: Mapping[str, list[AcmeKey]]
    zones: Mapping[str, ZoneHistory]
    zone_records: Mapping[str, Mapping[RRsetKey, tuple[RR, ...]]]
    replay: Mapping[str, ReplayState]

    def summary(self) -> str:
        steps = sum(len(history.steps) for history in self.zones.values())
        keys = sum(len(keys) for keys in self.acme_keys.values())
        return (
            f"{len(self.snapshot.users)} users, {len(self.snapshot.states)} host states, {keys} ACME keys, "
            f"{len(self.zones)} zones with {steps} journal steps, "
            f"{sum(len(r) for r in self.zone_records.values())} host-zone RRsets, {len(self.replay)} TSIG replay records"
        )


async def read_installation(store: Any) -> Installation:
    """Everything C{store} (open) holds."""
    snapshot = await store.load()
    keys: dict[str, list[AcmeKey]] = {}
    for user_id in snapshot.users:
        found = await store.acme_keys(user_id)
        if found:
            keys[user_id] = found
    return Installation(
        snapshot,
        keys,
        await store.load_zone_history(),
        await store.load_zone_records(),
        await store.load_replay_states(),
    )


def open_location(location: str, reactor: Any) -> IUserStore:
    """
    The store at C{location}: C{sqlite:PATH} or C{postgresql:DSN} (also a
    bare C{postgresql://...} URL). Not opened yet.
    """
    kind, sep, where = location.partition(":")
    if kind == "sqlite" and sep and where:
        from dyndns_plugin.store.sqlite import SQLiteUserStore

        if not os.path.isfile(where):
            raise StoreError(f"{where}: no such SQLite store")
        return SQLiteUserStore(where, reactor)
    if kind in ("postgresql", "postgres") and sep and where:
        from dyndns_plugin.store.postgresql import PostgreSQLUserStore

        dsn = location if where.startswith("//") else where
        return PostgreSQLUserStore(dsn, reactor)
    raise StoreError(f"{location!r} is not sqlite:PATH or postgresql:DSN")


async def migrate_store(source: Any, target: Any) -> Installation:
    """
    Copy everything from C{source} to C{target} (both open), which must be
    empty and able to take a whole installation in one transaction
    (C{install}). Returns what was copied.
    """
    install = getattr(target, "install", None)
    if install is None:
        raise StoreError("the target must be a PostgreSQL store (postgresql:DSN)")
    installation = await read_installation(source)
    await install(installation)
    return installation
