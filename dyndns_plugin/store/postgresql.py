"""
The store for several nodes sharing one truth: PostgreSQL, through psycopg 3.

Why: SQLite is one file on one machine. With several dyndns nodes (in
different places, behind one set of names) every node reads and writes one
PostgreSQL database; each keeps its in-memory registry in step with the
others' writes through L{PostgreSQLUserStore.changes_since}, woken by the
change feed of L{PostgreSQLUserStore.watch} (LISTEN/NOTIFY), and one node at
a time publishes the zones (an advisory lock; the zone serials are fenced,
so two nodes that both think they publish cannot both advance one).

Durability: a write's Deferred fires only after its transaction committed
on the server, so it is as durable as the server's C{synchronous_commit}
makes a commit (by default: flushed to the server's WAL; with synchronous
standbys, on them too). The store sets no durability of its own.

All SQL runs on one worker thread (L{dyndns_plugin.store.worker}), as in the
SQLite store: reads and writes in submission order, consecutive writes in
one transaction with a savepoint each (group commit), results delivered in
commit order. The thread takes a connection from a small pool per batch, so
a connection broken by a restart of the server is replaced on the next one.

Generations: every write transaction ends with C{UPDATE meta ... RETURNING}
of the generation row, then stamps that generation on the rows it wrote
(written with L{UNSTAMPED} until then) and commits. That row lock orders the
write transactions of all nodes, so they commit in generation order, and a
read of C{gen > X} in one snapshot never misses a row that commits later
with a smaller generation. Taken last, the lock is held for two round trips
and the commit, not for all of a batch's statements and the node's Python
between them: the nodes' writes overlap until their last step.

Every psycopg error becomes L{StoreError} (C{"postgresql: <reason>"}), the
update protocols' temporary failure; connections have a connect timeout and
a statement timeout, so nothing waits for a dead server for long.

The tables live in the DSN's first schema (C{search_path}), made by the
first node that opens the database: its role needs CREATE there (since
PostgreSQL 15 only the owner has it on C{public}). Tested on PostgreSQL 15.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout
from twisted.internet import defer
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from dyndns_plugin import acme
from dyndns_plugin.collector import collector_paused
from dyndns_plugin.model import HostState, User, stored_ipv4, stored_ipv6
from dyndns_plugin.store import (
    ANY_STATE,
    RR,
    AcmeKey,
    AnyState,
    Changes,
    IAcmeKeyStore,
    IReplayStore,
    IUserStore,
    IZoneJournal,
    JournalStep,
    NameTaken,
    NoSuchUser,
    ReplayState,
    RRsetKey,
    Snapshot,
    StateConflict,
    StoreError,
    UserExists,
    ZoneHistory,
    merge_replay,
)
from dyndns_plugin.store import ZoneConflict as StoreZoneConflict
from dyndns_plugin.store.sqlite import _macs_from_text, _macs_to_text, _rrs_from_text, _rrs_to_text, _txt
from dyndns_plugin.store.worker import StoreWorker

T = TypeVar("T")

# The pool's own reports of every failed reconnection (twice a second during
# an outage, on stderr): the listener reports an outage once, and its end.
logging.getLogger("psycopg.pool").setLevel(logging.CRITICAL)

log = Logger()

#: pg_advisory_xact_lock key held while the schema is migrated ("dyns").
SCHEMA_LOCK = 0x64796E73
#: pg_try_advisory_lock key of the node that publishes the zones ("dynp").
PUBLISHER_LOCK = 0x64796E70
#: The channel of user changes: C{"<generation> <user id> <user id>..."}.
CHANGES_CHANNEL = "dyndns_changes"
#: The channel of zone versions: the zone's origin.
ZONES_CHANNEL = "dyndns_zones"
#: The generation of the rows a write transaction writes until its last step stamps the real one (see
#: the module): never a committed generation, and no transaction sees another's uncommitted rows.
UNSTAMPED = -1
_NEXT_GENERATION = b"UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value"
#: The last step's stamp of the generation (an index finds the transaction's own rows).
_STAMP = (
    "UPDATE users SET gen = {0} WHERE gen = {1}; UPDATE states SET gen = {0} WHERE gen = {1}; "
    "UPDATE removed SET gen = {0} WHERE gen = {1}; "
)
#: Longer change payloads are sent as C{"<generation> *"} (PostgreSQL takes 8,000 bytes at most).
MAX_PAYLOAD = 7000

#: Seconds to connect at most (unless the DSN says).
CONNECT_TIMEOUT = 5
#: Server-side limits of every connection (C{-c} options, unless the DSN sets them): no statement runs
#: longer than 10 s, no transaction idles for a minute with the generation row locked, and the server
#: drops a client that is gone (and the publisher lock it held) within ~10 s.
SERVER_OPTIONS = {
    "statement_timeout": "10000",
    "idle_in_transaction_session_timeout": "60000",
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "2",
}
#: libpq's TCP keepalives (unless the DSN sets them): a server gone silent is noticed within ~10 s.
CLIENT_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2", "keepalives_count": "2"}
#: Seconds the pool keeps trying to replace a lost connection before it leaves that to the next batch.
POOL_RECONNECT_TIMEOUT = 2.0
#: Seconds after a failed connection during which operations fail at once (then one tries again).
UNREACHABLE_FOR = 1.0
#: Seconds between attempts of C{open(retry_open=True)} to reach the server.
RETRY_OPEN_DELAY = 2.0
#: The listener's reconnection delay: the first, and the longest after doubling.
LISTEN_RETRY_FIRST, LISTEN_RETRY_MAX = 0.5, 5.0
#: Seconds between a listener's attempts to take the publisher lock.
LEADER_RETRY = 1.0
#: Seconds the listener waits for notifications before it looks whether it should stop.
LISTEN_POLL = 0.2
#: More changed rows than this are read with the collector paused (as the SQLite store does).
_BULK_READ = 1000
#: Rows fetched per round trip by a load's server-side cursors.
_LOAD_CHUNK = 20000


class ZoneConflict(StoreZoneConflict):
    """
    A zone version was to follow serial C{expected}, but the stored serial
    is C{current}: another node published the zone meanwhile. Nothing was
    written. (The publisher catches the store interface's L{StoreZoneConflict}.)
    """

    def __init__(self, origin: str, current: int, expected: int) -> None:
        super().__init__(f"zone {origin!r} is at serial {current}, not {expected}: another node published it")
        self.origin = origin
        self.current = current
        self.expected = expected


# -- the schema, in the steps of the SQLite store's (same tables, same content)

_SCHEMA_V1 = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('generation', 0), ('schema_version', 0);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    password_hash TEXT,
    md5_verifier TEXT,
    tsig_secret TEXT,
    tsig_algorithm TEXT NOT NULL,
    tsig_from_password BOOLEAN NOT NULL,
    offline_ipv4 TEXT,
    offline_ipv6 TEXT,
    notes BYTEA NOT NULL,
    disabled BOOLEAN NOT NULL,
    gen BIGINT NOT NULL
);
CREATE INDEX users_gen ON users (gen);
CREATE TABLE hostnames (
    name TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    position INTEGER NOT NULL
);
CREATE INDEX hostnames_user ON hostnames (user_id);
CREATE TABLE states (
    user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    ipv4 TEXT,
    ipv6 TEXT,
    ttl INTEGER,
    offline BOOLEAN NOT NULL,
    updated_at DOUBLE PRECISION,
    method TEXT,
    client_address TEXT,
    gen BIGINT NOT NULL
);
CREATE INDEX states_gen ON states (gen);
CREATE TABLE removed (
    user_id TEXT PRIMARY KEY,
    gen BIGINT NOT NULL
);
CREATE INDEX removed_gen ON removed (gen);
"""
"""Version 1: users, their names and states, and removals. C{notes} is UTF-8 in BYTEA: TEXT cannot hold NUL."""

_SCHEMA_V2 = """
CREATE TABLE zones (
    origin TEXT PRIMARY KEY,
    serial BIGINT NOT NULL,
    digest TEXT NOT NULL
);
CREATE TABLE zone_journal (
    seq BIGSERIAL PRIMARY KEY,
    origin TEXT NOT NULL,
    serial_from BIGINT NOT NULL,
    serial_to BIGINT NOT NULL,
    deleted TEXT NOT NULL,
    added TEXT NOT NULL
);
CREATE INDEX zone_journal_origin ON zone_journal (origin, seq);
"""
"""Version 2: zone serials and the IXFR journal (C{seq} orders the steps: serials wrap around)."""

_SCHEMA_V3 = """
CREATE TABLE tsig_replay (
    key TEXT PRIMARY KEY,
    newest BIGINT NOT NULL,
    macs TEXT NOT NULL
);
"""
"""Version 3: TSIG replay records (C{macs}: JSON [[time, hex MAC], ...])."""

_SCHEMA_V4 = """
CREATE TABLE zone_records (
    origin TEXT NOT NULL,
    name TEXT NOT NULL,
    rdtype INTEGER NOT NULL,
    records TEXT NOT NULL,
    PRIMARY KEY (origin, name, rdtype)
);
"""
"""Version 4: host zones' RRsets set by RFC 2136 updates (JSON as in the journal; [] hides the file's)."""

_SCHEMA_V5 = """
ALTER TABLE states ADD COLUMN txt TEXT;
CREATE TABLE acme_keys (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_id TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    label TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (user_id, key_id)
);
"""
"""Version 5: users' ACME challenge values (C{states.txt}, JSON) and scoped ACME keys."""

#: MIGRATIONS[n] takes a database from schema version n to n + 1.
MIGRATIONS: list[str] = [_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5]
SCHEMA_VERSION = len(MIGRATIONS)


def public_dsn(dsn: str) -> str:
    """C{dsn} without its password, to name the database in messages."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(a DSN that does not parse)"
    params.pop("password", None)
    return make_conninfo("", **params)


def connection_info(dsn: str) -> str:
    """
    C{dsn} with the store's connect timeout, keepalives and server options
    added, where it does not set them itself; L{StoreError} if it does not parse.
    """
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error as e:
        raise StoreError(f"postgresql: the DSN does not parse ({_reason(e)})") from None
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    for key, value in CLIENT_KEEPALIVES.items():
        params.setdefault(key, value)
    options = str(params.get("options", ""))
    added = [f"-c {name}={value}" for name, value in SERVER_OPTIONS.items() if name not in options]
    params["options"] = " ".join([*added, options]).strip()
    params.setdefault("application_name", "dyndns")
    return make_conninfo("", **params)


def _reason(error: BaseException) -> str:
    """An error's message on one line (libpq's span several)."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


def _store_error(error: psycopg.Error) -> StoreError:
    return StoreError(f"postgresql: {_reason(error)}")


def _schema_version(conn: psycopg.Connection[Any], label: str) -> int:
    (table,) = _one(conn, "SELECT to_regclass('meta') IS NOT NULL")
    if not table:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        raise StoreError(f"postgresql: {label}: a table meta without a schema version: not a dyndns database")
    return int(row[0])


def migrate(conn: psycopg.Connection[Any], label: str) -> int:
    """
    Bring the database of C{conn} to L{SCHEMA_VERSION} in one transaction
    (all steps or none), under an advisory lock so that nodes starting
    together migrate once; return the version it had. A newer version is
    refused with L{StoreError} naming C{label} (the DSN without password).
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        version = _schema_version(conn, label)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"postgresql: {label}: schema version {version} is newer than this program's {SCHEMA_VERSION};"
                " upgrade dyndns_plugin"
            )
        for target in range(version, SCHEMA_VERSION):
            conn.execute(MIGRATIONS[target].encode())
            conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (target + 1,))
    return version


def _one(conn: psycopg.Connection[Any], query: str, args: tuple[Any, ...] | None = None) -> tuple[Any, ...]:
    row = conn.execute(query.encode(), args).fetchone()
    assert row is not None, query
    return row


def _generation(conn: psycopg.Connection[Any]) -> int:
    return int(_one(conn, "SELECT value FROM meta WHERE key = 'generation'")[0])


@contextlib.contextmanager
def _snapshot(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """One read-only REPEATABLE READ transaction: every statement sees the same commits."""
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    yield
    conn.execute("COMMIT")


# -- rows


_USER_COLUMNS = (
    "id, password_hash, md5_verifier, tsig_secret, tsig_algorithm, "
    "tsig_from_password, offline_ipv4, offline_ipv6, notes, disabled"
)
_STATE_COLUMNS = "user_id, ipv4, ipv6, ttl, offline, updated_at, method, client_address, txt"
_PUT_USER = (
    f"INSERT INTO users ({_USER_COLUMNS}, gen) VALUES "
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET password_hash = excluded.password_hash, "
    "md5_verifier = excluded.md5_verifier, tsig_secret = excluded.tsig_secret, "
    "tsig_algorithm = excluded.tsig_algorithm, "
    "tsig_from_password = excluded.tsig_from_password, "
    "offline_ipv4 = excluded.offline_ipv4, offline_ipv6 = excluded.offline_ipv6, "
    "notes = excluded.notes, disabled = excluded.disabled, gen = excluded.gen"
)
_SAVE_STATE = (
    f"INSERT INTO states ({_STATE_COLUMNS}, gen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (user_id) DO UPDATE SET ipv4 = excluded.ipv4, ipv6 = excluded.ipv6, ttl = excluded.ttl, "
    "offline = excluded.offline, updated_at = excluded.updated_at, method = excluded.method, "
    "client_address = excluded.client_address, txt = excluded.txt, gen = excluded.gen"
)
_DROP_HOSTNAMES = "DELETE FROM hostnames WHERE user_id = %s"
_UNREMOVE = "DELETE FROM removed WHERE user_id = %s"
_REMOVED = "INSERT INTO removed (user_id, gen) VALUES (%s, %s) ON CONFLICT (user_id) DO UPDATE SET gen = excluded.gen"


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _user_row(user: User, generation: int) -> tuple[Any, ...]:
    return (
        user.id,
        user.password_hash,
        user.md5_verifier,
        user.tsig_secret,
        user.tsig_algorithm,
        user.tsig_from_password,
        _text(user.offline_ipv4),
        _text(user.offline_ipv6),
        user.notes.encode("utf-8"),
        user.disabled,
        generation,
    )


def _state_row(state: HostState, generation: int) -> tuple[Any, ...]:
    return (
        state.user_id,
        _text(state.ipv4),
        _text(state.ipv6),
        state.ttl,
        state.offline,
        state.updated_at,
        state.method,
        state.client_address,
        json.dumps(acme.to_json(state.txt)) if state.txt else None,
        generation,
    )


#: The conditional write of L{_saved_over}: the new state only over the expected one (its columns).
_SAVE_STATE_OVER = (
    "UPDATE states SET ipv4 = %s, ipv6 = %s, ttl = %s, offline = %s, updated_at = %s, method = %s, "
    "client_address = %s, txt = %s, gen = %s WHERE user_id = %s AND "
    "(ipv4, ipv6, ttl, offline, updated_at, method, client_address, txt) IS NOT DISTINCT FROM "
    "(%s::text, %s::text, %s::integer, %s::boolean, %s::double precision, %s::text, %s::text, %s::text)"
)
_SAVE_FIRST_STATE = (
    f"INSERT INTO states ({_STATE_COLUMNS}, gen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (user_id) DO NOTHING"
)


def _saved_over(conn: psycopg.Connection[Any], state: HostState, expected: HostState | None, generation: int) -> bool:
    """
    The common case of a conditional write in one statement (one round
    trip while the generation row is locked): C{state} written if the
    committed state is C{expected}. False: it was not (another writer
    got there, or the user is gone): the caller looks closer.
    """
    row = _state_row(state, generation)
    if expected is None:
        try:
            return conn.execute(_SAVE_FIRST_STATE.encode(), row).rowcount == 1
        except psycopg.errors.ForeignKeyViolation:
            raise NoSuchUser(state.user_id) from None
    if expected.user_id != state.user_id:
        return False
    was = _state_row(expected, generation)
    return conn.execute(_SAVE_STATE_OVER.encode(), row[1:] + (state.user_id,) + was[1:9]).rowcount == 1


def _user_from_row(row: tuple[Any, ...], hostnames: tuple[str, ...]) -> User:
    # The store's own rows, validated when written (see the SQLite store).
    return User.trusted(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        stored_ipv4(row[6]),
        stored_ipv6(row[7]),
        hostnames,
        bytes(row[8]).decode("utf-8"),
        row[9],
    )


def _state_from_row(row: tuple[Any, ...], user_id: str | None = None) -> HostState:
    """C{user_id}: the same id string as the user's, kept once in memory."""
    return HostState.trusted(
        row[0] if user_id is None else user_id,
        stored_ipv4(row[1]),
        stored_ipv6(row[2]),
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        _txt(row[8]),
    )


def _hostnames_by_user(rows: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for user_id, name in rows:
        names.setdefault(user_id, []).append(name)
    return names


# -- the worker thread's transactions


class _ChangedUsers:
    """The user ids a transaction changed, for its notification; past L{MAX_PAYLOAD} only that there were many."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.size = 0
        self.many = False

    def add(self, user_ids: Iterable[str]) -> None:
        for user_id in user_ids:
            if self.many:
                return
            if user_id not in self.ids:
                self.ids.add(user_id)
                self.size += len(user_id.encode()) + 1
                self.many = self.size > MAX_PAYLOAD

    def merge(self, other: _ChangedUsers) -> None:
        if other.many:
            self.many = True
        self.add(other.ids)

    def __bool__(self) -> bool:
        return self.many or bool(self.ids)

    def payload(self, generation: int) -> str:
        text = f"{generation} " + " ".join(sorted(self.ids))
        return f"{generation} *" if self.many or len(text.encode()) > MAX_PAYLOAD else text


class _StateSave:
    """
    A L{PostgreSQLUserStore.save_state}: on its own (L{__call__}), or, for a
    conditional one, first with the batch's others in one statement
    (L{_saved_together}): a batch of updates costs a few round trips, not
    two for each, while the generation row waits.
    """

    def __init__(self, state: HostState, expected: HostState | None | AnyState) -> None:
        self.state = state
        self.expected = expected

    def __call__(self, op: _Op) -> None:
        conn, state, expected = op.conn, self.state, self.expected
        if not isinstance(expected, AnyState) and _saved_over(conn, state, expected, op.generation):
            op.changed(state.user_id)
            return
        if not isinstance(expected, AnyState):
            # the user row too: no other writer's first state for it can come between
            if conn.execute("SELECT 1 FROM users WHERE id = %s FOR UPDATE", (state.user_id,)).fetchone() is None:
                raise NoSuchUser(state.user_id)
            row = conn.execute(
                f"SELECT {_STATE_COLUMNS} FROM states WHERE user_id = %s FOR UPDATE".encode(), (state.user_id,)
            ).fetchone()
            current = None if row is None else _state_from_row(row)
            if current != expected:
                raise StateConflict(state.user_id, current)
        try:
            conn.execute(_SAVE_STATE.encode(), _state_row(state, op.generation))
        except psycopg.errors.ForeignKeyViolation:
            raise NoSuchUser(state.user_id) from None
        op.changed(state.user_id)


def _saved_together(conn: psycopg.Connection[Any], functions: list[Any], generation: int) -> set[int]:
    """
    The conditional state writes among C{functions} (one per user), each
    made if the committed state is its expected one, in one statement for
    those over a state and one for first states: the indexes of those
    made. The others (another writer got there first, an unknown user, a
    second write of one user) are left to themselves (L{_StateSave.__call__}).
    Runs in the batch's first savepoint, which a failure rolls back.
    """
    over: dict[str, int] = {}
    first: dict[str, int] = {}
    seen: set[str] = set()
    for index, function in enumerate(functions):
        if not isinstance(function, _StateSave) or isinstance(function.expected, AnyState):
            continue
        user_id = function.state.user_id
        if user_id in seen:
            over.pop(user_id, None)
            first.pop(user_id, None)
            continue
        seen.add(user_id)
        expected = function.expected
        if expected is None:
            first[user_id] = index
        elif expected.user_id == user_id:
            over[user_id] = index
    done: set[int] = set()
    if len(over) > 1:
        rows: list[Any] = []
        for index in over.values():
            save = functions[index]
            rows.extend(_state_row(save.state, generation) + _state_row(save.expected, generation)[1:9])
        values = ", ".join([_OVER_ROW] * len(over))
        found = conn.execute((_SAVE_STATES_OVER % values).encode(), rows).fetchall()
        done.update(over[user_id] for (user_id,) in found)
    if len(first) > 1:
        rows = [value for index in first.values() for value in _state_row(functions[index].state, generation)]
        values = ", ".join([_FIRST_ROW] * len(first))
        # (a user removed meanwhile fails it whole: then each goes on its own)
        found = conn.execute((_SAVE_FIRST_STATES % values).encode(), rows).fetchall()
        done.update(first[user_id] for (user_id,) in found)
    return done


_OVER_ROW = (
    "(%s::text, %s::text, %s::text, %s::integer, %s::boolean, %s::double precision, %s::text, %s::text, %s::text,"
    " %s::bigint, %s::text, %s::text, %s::integer, %s::boolean, %s::double precision, %s::text, %s::text, %s::text)"
)
_SAVE_STATES_OVER = (
    "UPDATE states AS s SET ipv4 = v.ipv4, ipv6 = v.ipv6, ttl = v.ttl, offline = v.offline, "
    "updated_at = v.updated_at, method = v.method, client_address = v.client_address, txt = v.txt, gen = v.gen "
    "FROM (VALUES %s) AS v(user_id, ipv4, ipv6, ttl, offline, updated_at, method, client_address, txt, gen, "
    "was_ipv4, was_ipv6, was_ttl, was_offline, was_updated_at, was_method, was_client_address, was_txt) "
    "WHERE s.user_id = v.user_id AND (s.ipv4, s.ipv6, s.ttl, s.offline, s.updated_at, s.method, "
    "s.client_address, s.txt) IS NOT DISTINCT FROM (v.was_ipv4, v.was_ipv6, v.was_ttl, v.was_offline, "
    "v.was_updated_at, v.was_method, v.was_client_address, v.was_txt) RETURNING s.user_id"
)
_FIRST_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
_SAVE_FIRST_STATES = (
    f"INSERT INTO states ({_STATE_COLUMNS}, gen) VALUES %s ON CONFLICT (user_id) DO NOTHING RETURNING user_id"
)


class _Op:
    """
    One write's part of a batch: the connection, the batch's generation, and
    what the write changed (kept for the batch only if the write succeeds).
    """

    def __init__(self, conn: psycopg.Connection[Any], generation: int, batch: _Batch) -> None:
        self.conn = conn
        self.generation = generation
        self.batch = batch
        self.users = _ChangedUsers()
        self.zone_versions: dict[str, tuple[int, str]] = {}

    def changed(self, *user_ids: str) -> None:
        self.users.add(user_ids)

    def zone_version(self, origin: str) -> tuple[int, str] | None:
        """The newest (serial, digest) of C{origin} this store object wrote, committed or in this batch."""
        return self.zone_versions.get(origin) or self.batch.zone_version(origin)


class _Batch:
    """What the successful writes of one transaction changed: its notifications, and zone versions to remember."""

    def __init__(self, store: PostgreSQLUserStore) -> None:
        self.store = store
        self.users = _ChangedUsers()
        self.zone_versions: dict[str, tuple[int, str]] = {}

    def zone_version(self, origin: str) -> tuple[int, str] | None:
        return self.zone_versions.get(origin) or self.store._zone_versions.get(origin)

    def keep(self, op: _Op) -> None:
        self.users.merge(op.users)
        self.zone_versions.update(op.zone_versions)


class _PostgreSQLSession:
    """The worker thread's session: a pool of connections, one per batch, a transaction per batch of writes."""

    def __init__(self, store: PostgreSQLUserStore, pool: ConnectionPool) -> None:
        self._store = store
        self._pool = pool
        #: When a connection last failed (None: the last operation reached the server).
        self._unreachable_since: float | None = None

    def read(self, function: Callable[[psycopg.Connection[Any]], T]) -> T:
        self._refuse_while_unreachable()
        try:
            with self._pool.connection(timeout=self._store.connection_wait) as conn:
                result = function(conn)
        except psycopg.Error as e:
            raise self._error(e) from None
        self._unreachable_since = None
        return result

    def _refuse_while_unreachable(self) -> None:
        """
        Fail at once while the server was just found unreachable: every
        operation queued on this one thread would otherwise wait for a
        connection in turn, and a client's update its 911 for 10 s or more.
        """
        since = self._unreachable_since
        if since is not None and time.monotonic() - since < UNREACHABLE_FOR:
            raise StoreError(f"postgresql: {self._store.label} is unreachable")

    def _error(self, error: psycopg.Error) -> StoreError:
        if isinstance(error, PoolTimeout):
            self._unreachable_since = time.monotonic()
            wait = self._store.connection_wait
            return StoreError(f"postgresql: no connection to {self._store.label} within {wait:g} s")
        if isinstance(error, psycopg.OperationalError):
            self._unreachable_since = time.monotonic()
        return _store_error(error)

    def close(self) -> None:
        self._pool.close(timeout=CONNECT_TIMEOUT)

    @staticmethod
    def _together(conn: psycopg.Connection[Any], functions: list[Any], batch: _Batch) -> set[int]:
        """L{_saved_together}, in the first savepoint: on any error, none (each then goes on its own)."""
        try:
            done = _saved_together(conn, functions, UNSTAMPED)
        except psycopg.Error:
            conn.execute(b"ROLLBACK TO op")
            return set()
        batch.users.add(functions[index].state.user_id for index in done)
        return done

    def commit(self, functions: list[Callable[[_Op], Any]]) -> list[object]:
        try:
            self._refuse_while_unreachable()
            with self._pool.connection(timeout=self._store.connection_wait) as conn:
                results = self._commit(conn, functions)
        except psycopg.Error as e:
            return [Failure(self._error(e))] * len(functions)
        except StoreError:
            return [Failure()] * len(functions)
        self._unreachable_since = None
        return results

    def _commit(self, conn: psycopg.Connection[Any], functions: list[Callable[[_Op], Any]]) -> list[object]:
        results: list[object] = []
        # one round trip: BEGIN and the first savepoint
        conn.execute(b"BEGIN; SAVEPOINT op")
        batch = _Batch(self._store)
        together = self._together(conn, functions, batch)
        for index, function in enumerate(functions):
            if index in together:
                results.append(None)
                continue
            conn.execute(b"RELEASE op; SAVEPOINT op")
            op = _Op(conn, UNSTAMPED, batch)
            try:
                results.append(function(op))
            except psycopg.Error as e:
                results.append(Failure(_store_error(e)))
                conn.execute("ROLLBACK TO op")
            except BaseException:
                results.append(Failure())
                conn.execute("ROLLBACK TO op")
            else:
                batch.keep(op)
        if all(isinstance(r, Failure) for r in results):
            conn.execute("ROLLBACK")  # nothing to commit: no generation taken
            return results
        # The generation row, locked from here to the commit (see the module).
        cursor = conn.execute(b"RELEASE op; " + _NEXT_GENERATION)
        cursor.nextset()
        generation = int(cursor.fetchone()[0])  # type: ignore[index]
        # ours before the commit: our listener may see the notification before this thread sees the commit
        self._store._committing(generation)
        try:
            stamp = sql.SQL(_STAMP).format(sql.Literal(generation), sql.Literal(UNSTAMPED))
            if batch.users:
                # one round trip: literals, as a statement with parameters cannot go with another
                notify = sql.SQL("SELECT pg_notify({}, {}); COMMIT").format(
                    sql.Literal(CHANGES_CHANNEL), sql.Literal(batch.users.payload(generation))
                )
                conn.execute(sql.Composed([stamp, notify]))
            else:
                conn.execute(sql.Composed([stamp, sql.SQL("COMMIT")]))
        except BaseException:
            self._store._commit_failed(generation)
            raise
        self._store._committed(batch.zone_versions)
        return results


# -- the listener


def _payload_generation(payload: str) -> int:
    """The generation of a change notification (-1 if it has none: not ours)."""
    head = payload.partition(" ")[0]
    return int(head) if head.isdigit() else -1


class _Listener:
    """
    The thread that LISTENs for other nodes' changes on a connection of its
    own, and (with C{on_leader}) holds the publisher lock on it.
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        conninfo: str,
        label: str,
        on_change: Callable[[], object],
        on_zone: Callable[[str | None], object],
        on_leader: Callable[[bool], object] | None,
        own: Callable[[int], bool] = lambda generation: False,
    ) -> None:
        self._reactor = reactor
        self._own = own
        self._conninfo = conninfo
        self._label = label
        self._on_change = on_change
        self._on_zone = on_zone
        self._on_leader = on_leader
        self._stop = threading.Event()
        self._change_lock = threading.Lock()
        self._change_pending = False
        self._leader = False
        self._stopped: defer.Deferred[None] = defer.Deferred()
        self._thread = threading.Thread(target=self._run, name="dyndns-postgresql-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> defer.Deferred[None]:
        """Stop listening (and give up the publisher lock); fires when the thread is done."""
        self._stop.set()
        return self._stopped

    # -- on the reactor thread

    def _fire_change(self) -> None:
        with self._change_lock:
            self._change_pending = False
        self._on_change()

    # -- on the listener thread

    def wake(self) -> None:
        """Call C{on_change} as for a notification (from any thread)."""
        self._changed()

    def _changed(self) -> None:
        # at most one call waits on the reactor: it reads everything committed before it runs
        with self._change_lock:
            if self._change_pending:
                return
            self._change_pending = True
        self._reactor.callFromThread(self._fire_change)

    def _run(self) -> None:
        delay = LISTEN_RETRY_FIRST
        down = False
        try:
            while not self._stop.is_set():
                try:
                    conn = psycopg.connect(self._conninfo, autocommit=True)
                except psycopg.Error as e:
                    if not down:
                        self._log_down(e)
                        down = True
                    self._stop.wait(delay)
                    delay = min(delay * 2, LISTEN_RETRY_MAX)
                    continue
                try:
                    with conn:
                        conn.execute(f"LISTEN {CHANGES_CHANNEL}; LISTEN {ZONES_CHANNEL}".encode())
                        if down:
                            self._reactor.callFromThread(
                                log.info, "the change feed of PostgreSQL at {dsn} is back", dsn=self._label
                            )
                            down = False
                        delay = LISTEN_RETRY_FIRST
                        # what was committed while nobody listened
                        self._changed()
                        self._reactor.callFromThread(self._on_zone, None)
                        self._listen(conn)
                except psycopg.Error as e:
                    if self._leader:
                        self._leader = False
                        self._reactor.callFromThread(self._on_leader, False)  # type: ignore[arg-type]
                    if not self._stop.is_set():
                        self._log_down(e)
                        down = True
                        self._stop.wait(delay)
                        delay = min(delay * 2, LISTEN_RETRY_MAX)
        finally:
            self._reactor.callFromThread(self._stopped.callback, None)

    def _log_down(self, error: psycopg.Error) -> None:
        self._reactor.callFromThread(
            log.warn,
            "no change feed from PostgreSQL at {dsn} ({reason}); reconnecting",
            dsn=self._label,
            reason=_reason(error),
        )

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        next_try = 0.0
        while not self._stop.is_set():
            if self._on_leader is not None and not self._leader and time.monotonic() >= next_try:
                (taken,) = _one(conn, "SELECT pg_try_advisory_lock(%s)", (PUBLISHER_LOCK,))
                if taken:
                    self._leader = True
                    self._reactor.callFromThread(self._on_leader, True)
                else:
                    next_try = time.monotonic() + LEADER_RETRY
            for notify in conn.notifies(timeout=LISTEN_POLL):
                if notify.channel == CHANGES_CHANNEL:
                    if not self._own(_payload_generation(notify.payload)):
                        self._changed()
                elif notify.channel == ZONES_CHANNEL:
                    self._reactor.callFromThread(self._on_zone, notify.payload)


# -- the store


@implementer(IUserStore, IReplayStore, IZoneJournal, IAcmeKeyStore)
class PostgreSQLUserStore:
    """
    L{IUserStore} (and the zone journal, replay records and ACME keys) in a
    PostgreSQL database that several nodes share. C{retry_open}: C{open}
    waits for a server that is down (a service starting with its database)
    instead of failing at once (the CLI).
    """

    #: Other nodes write the same data at any time.
    shared = True

    #: Seconds a read or write waits for a connection from the pool (the server down: then StoreError).
    connection_wait = 2.0

    def __init__(self, dsn: str, reactor: IReactorFromThreads | None = None, *, retry_open: bool = False) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor  # type: ignore[assignment]
        self.dsn = dsn
        self.label = public_dsn(dsn)
        self.retry_open = retry_open
        self._reactor: IReactorFromThreads = reactor  # type: ignore[assignment]
        self._worker: StoreWorker | None = None
        self._listener: _Listener | None = None
        self._closing = threading.Event()
        # For changes_since (worker thread only): the store's generation at
        # the last full look (None: none yet), and the generations this
        # object committed since (their Deferreds told the caller).
        self._checked_generation: int | None = None
        self._own_generations: set[int] = set()
        # The (serial, digest) this object last wrote of each zone: it may
        # write a step again over its own version (a publish that failed).
        self._zone_versions: dict[str, tuple[int, str]] = {}

    # -- lifecycle

    def check(self) -> None:
        """
        Connect, migrate and disconnect synchronously, raising L{StoreError}
        with the reason on one line: for start-up checks, before the reactor runs.
        """
        conninfo = connection_info(self.dsn)
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                migrate(conn, self.label)
        except psycopg.Error as e:
            raise StoreError(f"postgresql: {self.label}: {_reason(e)}") from None

    def open(self) -> defer.Deferred[None]:
        """Connect, migrate and start the worker thread (waiting for the server with C{retry_open})."""
        self._closing.clear()
        self._worker = StoreWorker(self._reactor, self._connect, "dyndns-postgresql")
        d = self._worker.start()

        def failed(failure: Failure) -> Failure:
            self._worker = None
            return failure

        return d.addErrback(failed)

    def _connect(self) -> _PostgreSQLSession:
        """On the worker thread: migrate, then make the pool."""
        conninfo = connection_info(self.dsn)
        while True:
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    migrate(conn, self.label)
                break
            except psycopg.OperationalError as e:
                if not self.retry_open:
                    raise StoreError(f"postgresql: could not connect to {self.label} ({_reason(e)})") from None
                self._reactor.callFromThread(
                    log.warn,
                    "could not connect to PostgreSQL at {dsn} ({reason}); retrying in {delay} s",
                    dsn=self.label,
                    reason=_reason(e),
                    delay=f"{RETRY_OPEN_DELAY:g}",
                )
                if self._closing.wait(RETRY_OPEN_DELAY):
                    raise StoreError(f"postgresql: closed before {self.label} could be reached") from None
            except psycopg.Error as e:
                raise StoreError(f"postgresql: {self.label}: {_reason(e)}") from None
        pool = ConnectionPool(
            conninfo,
            kwargs={"autocommit": True},
            min_size=1,
            max_size=2,
            open=False,
            check=ConnectionPool.check_connection,
            num_workers=1,
            # The pool's reconnection backs off (1 s, 2 s, 4 s...) for this long, then the next batch
            # tries at once: a server back after a long outage is used within ~1 s, not tens of seconds.
            reconnect_timeout=POOL_RECONNECT_TIMEOUT,
            name="dyndns",
        )
        pool.open(wait=False)
        return _PostgreSQLSession(self, pool)

    def close(self) -> defer.Deferred[None]:
        """Finish pending writes, stop listening, close the connections."""
        self._closing.set()
        worker, self._worker = self._worker, None
        listener, self._listener = self._listener, None
        stopped = [w.stop() for w in (worker, listener) if w is not None]
        return defer.gatherResults(stopped).addCallback(lambda _: None)

    def watch(
        self,
        on_change: Callable[[], object],
        on_zone: Callable[[str | None], object],
        on_leader: Callable[[bool], object] | None = None,
    ) -> None:
        """
        Follow the other nodes' writes, on a connection of its own:
        C{on_change()} when another node changed users or states (then read
        L{changes_since}; bursts are coalesced; this object's own writes are
        known from their Deferreds), C{on_zone(origin)} when a
        zone got a new version. On every (re)connection, C{on_change()} and
        C{on_zone(None)} once: notifications sent while nobody listened are
        lost. With C{on_leader}, the connection also takes the publisher lock
        when it is free: C{on_leader(True)} when it has it, C{on_leader(False)}
        when the connection that held it broke. Everything is called on the
        reactor thread; L{close} stops it (and gives the lock up, without a
        call).
        """
        if self._listener is not None:
            raise StoreError("the store is already watched")
        self._listener = _Listener(
            self._reactor, connection_info(self.dsn), self.label, on_change, on_zone, on_leader, self._is_own
        )
        self._listener.start()

    def _read(self, function: Callable[[psycopg.Connection[Any]], T]) -> defer.Deferred[T]:
        if self._worker is None:
            return defer.fail(StoreError("store is not open"))
        return self._worker.submit(function, write=False)

    def _write(self, function: Callable[[_Op], T]) -> defer.Deferred[T]:
        if self._worker is None:
            return defer.fail(StoreError("store is not open"))
        return self._worker.submit(function, write=True)

    # On the worker thread, around our own commits:

    def _committing(self, generation: int) -> None:
        self._own_generations.add(generation)

    def _commit_failed(self, generation: int) -> None:
        # Another node may commit this generation now, and its notification
        # may have been taken for ours meanwhile: one poll, to be sure.
        self._own_generations.discard(generation)
        if self._listener is not None:
            self._listener.wake()

    def _committed(self, zone_versions: dict[str, tuple[int, str]]) -> None:
        self._zone_versions.update(zone_versions)

    def _is_own(self, generation: int) -> bool:
        """
        On the listener thread: whether this object committed (or is
        committing) C{generation}, and no read has passed it since.
        """
        return generation in self._own_generations

    def _checked(self, generation: int) -> None:
        """On the worker thread: everything up to C{generation} was read; older own generations are forgotten."""
        self._checked_generation = generation
        self._own_generations = {g for g in self._own_generations if g > generation}

    # -- reads

    def load(self) -> defer.Deferred[Snapshot]:
        def load(conn: psycopg.Connection[Any]) -> Snapshot:
            with _snapshot(conn):
                generation = _generation(conn)
                with conn.cursor(name="hostnames") as cursor:
                    cursor.itersize = _LOAD_CHUNK
                    names = _hostnames_by_user(
                        cursor.execute("SELECT user_id, name FROM hostnames ORDER BY user_id, position")
                    )
                users = {}
                with conn.cursor(name="users") as cursor:
                    cursor.itersize = _LOAD_CHUNK
                    for row in cursor.execute(f"SELECT {_USER_COLUMNS} FROM users".encode()):
                        hostnames = names.get(row[0])
                        users[row[0]] = _user_from_row(row, () if hostnames is None else tuple(hostnames))
                states = {}
                with conn.cursor(name="states") as cursor:
                    cursor.itersize = _LOAD_CHUNK
                    for row in cursor.execute(f"SELECT {_STATE_COLUMNS} FROM states".encode()):
                        user = users.get(row[0])
                        state = _state_from_row(row, None if user is None else user.id)
                        states[state.user_id] = state
            self._checked(generation)
            return Snapshot(users, states, generation)

        return self._read(load)

    def load_users(self, user_ids: Iterable[str]) -> defer.Deferred[Snapshot]:
        wanted = list(dict.fromkeys(user_ids))

        def load(conn: psycopg.Connection[Any]) -> Snapshot:
            with _snapshot(conn):
                generation = _generation(conn)
                names = _hostnames_by_user(
                    conn.execute(
                        "SELECT user_id, name FROM hostnames WHERE user_id = ANY(%s) ORDER BY user_id, position",
                        (wanted,),
                    )
                )
                rows = {
                    row[0]: row
                    for row in conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ANY(%s)".encode(), (wanted,))
                }
                state_rows = {
                    row[0]: row
                    for row in conn.execute(
                        f"SELECT {_STATE_COLUMNS} FROM states WHERE user_id = ANY(%s)".encode(), (wanted,)
                    )
                }
            users, states = {}, {}
            for user_id in wanted:
                if user_id not in rows:
                    continue
                user = users[user_id] = _user_from_row(rows[user_id], tuple(names.get(user_id, ())))
                if user_id in state_rows:
                    states[user_id] = _state_from_row(state_rows[user_id], user.id)
            return Snapshot(users, states, generation)

        return self._read(load)

    def changes_since(self, generation: int) -> defer.Deferred[Changes]:
        def changes(conn: psycopg.Connection[Any]) -> Changes:
            # Our own writes after the last full look reached the caller
            # through their Deferreds; a caller asking from further back
            # gets everything.
            checked = self._checked_generation
            own = self._own_generations if checked is not None and generation >= checked else set()
            with _snapshot(conn):
                current = _generation(conn)
                others = current - generation - sum(1 for g in own if generation < g <= current)
                if others <= 0:
                    found = Changes(generation=max(generation, current))
                else:
                    found = _changed_rows(conn, generation, current, sorted(own))
            self._checked(current)
            return found

        return self._read(changes)

    # -- writes

    @staticmethod
    def _put(conn: psycopg.Connection[Any], user: User, generation: int) -> None:
        if user.hostnames:
            taken = dict(
                conn.execute(
                    "SELECT name, user_id FROM hostnames WHERE name = ANY(%s) AND user_id <> %s",
                    (list(user.hostnames), user.id),
                ).fetchall()
            )
            for name in user.hostnames:
                if name in taken:
                    raise NameTaken(name, taken[name])
        conn.execute(_PUT_USER.encode(), _user_row(user, generation))
        conn.execute(_DROP_HOSTNAMES, (user.id,))
        if user.hostnames:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO hostnames (name, user_id, position) VALUES (%s, %s, %s)",
                    [(name, user.id, i) for i, name in enumerate(user.hostnames)],
                )
        conn.execute(_UNREMOVE, (user.id,))

    @classmethod
    def _put_all(cls, conn: psycopg.Connection[Any], users: list[User], generation: int) -> None:
        """L{_put} of each user, in order; runs of users without hostnames in one C{executemany} per statement."""
        run: list[User] = []

        def flush() -> None:
            if run:
                with conn.cursor() as cursor:
                    cursor.executemany(_PUT_USER.encode(), [_user_row(user, generation) for user in run])
                    cursor.executemany(_DROP_HOSTNAMES, [(user.id,) for user in run])
                    cursor.executemany(_UNREMOVE, [(user.id,) for user in run])
                run.clear()

        for user in users:
            if user.hostnames:
                flush()
                cls._put(conn, user, generation)
            else:
                run.append(user)
        flush()

    @staticmethod
    def _save_all(conn: psycopg.Connection[Any], states: list[HostState], generation: int) -> None:
        """Save the states; if one has no user, nothing is saved and the first such is named."""
        if not states:
            return
        ids = list(dict.fromkeys(state.user_id for state in states))
        found = {user_id for (user_id,) in conn.execute("SELECT id FROM users WHERE id = ANY(%s)", (ids,))}
        for user_id in ids:
            if user_id not in found:
                raise NoSuchUser(user_id)
        with conn.cursor() as cursor:
            cursor.executemany(_SAVE_STATE.encode(), [_state_row(state, generation) for state in states])

    def add_user(self, user: User) -> defer.Deferred[None]:
        def add(op: _Op) -> None:
            if op.conn.execute("SELECT 1 FROM users WHERE id = %s", (user.id,)).fetchone():
                raise UserExists(user.id)
            self._put(op.conn, user, op.generation)
            op.changed(user.id)

        return self._write(add)

    def put_user(self, user: User) -> defer.Deferred[None]:
        def put(op: _Op) -> None:
            self._put(op.conn, user, op.generation)
            op.changed(user.id)

        return self._write(put)

    def remove_user(self, user_id: str) -> defer.Deferred[None]:
        def remove(op: _Op) -> None:
            if op.conn.execute("DELETE FROM users WHERE id = %s", (user_id,)).rowcount == 0:
                raise NoSuchUser(user_id)
            op.conn.execute(_REMOVED, (user_id, op.generation))
            op.changed(user_id)

        return self._write(remove)

    def save_state(self, state: HostState, expected: HostState | None | AnyState = ANY_STATE) -> defer.Deferred[None]:
        return self._write(_StateSave(state, expected))

    def import_users(
        self, users: Iterable[User], states: Iterable[HostState], remove: Iterable[str] = ()
    ) -> defer.Deferred[None]:
        users, states, removed = list(users), list(states), list(remove)

        def import_(op: _Op) -> None:
            conn = op.conn
            if removed:
                conn.execute("DELETE FROM users WHERE id = ANY(%s)", (removed,))
                with conn.cursor() as cursor:
                    cursor.executemany(_REMOVED, [(user_id, op.generation) for user_id in removed])
            self._put_all(conn, users, op.generation)
            self._save_all(conn, states, op.generation)
            op.users.add(removed)
            op.users.add(user.id for user in users)
            op.users.add(state.user_id for state in states)

        return self._write(import_)

    # -- zone serials and journals

    def load_zone_history(self, since: Mapping[str, int] | None = None) -> defer.Deferred[dict[str, ZoneHistory]]:
        since = dict(since or {})

        def load(conn: psycopg.Connection[Any]) -> dict[str, ZoneHistory]:
            with _snapshot(conn):
                zones = list(conn.execute("SELECT origin, serial, digest FROM zones"))
                history = {}
                for origin, serial, digest in zones:
                    first = 0
                    if origin in since:
                        if since[origin] == serial:
                            history[origin] = ZoneHistory(serial, digest)
                            continue
                        (newest,) = _one(
                            conn,
                            "SELECT max(seq) FROM zone_journal WHERE origin = %s AND serial_from = %s",
                            (origin, since[origin]),
                        )
                        first = newest or 0
                    steps = conn.execute(
                        "SELECT serial_from, serial_to, deleted, added FROM zone_journal"
                        " WHERE origin = %s AND seq >= %s ORDER BY seq",
                        (origin, first),
                    )
                    history[origin] = ZoneHistory(
                        serial,
                        digest,
                        tuple(JournalStep(f, t, _rrs_from_text(d), _rrs_from_text(a)) for f, t, d, a in steps),
                    )
                return history

        return self._read(load)

    def save_zone_version(
        self, origin: str, serial: int, digest: str, step: JournalStep | None, keep: int
    ) -> defer.Deferred[None]:
        """
        As the SQLite store does, fenced: a step applies only over the
        serial it starts from (or to a zone not stored yet), or again over
        the version this object wrote itself; else L{ZoneConflict}.
        """

        def save(op: _Op) -> None:
            _save_zone_version(op, origin, serial, digest, step, keep)

        return self._write(save)

    def load_zone_records(self) -> defer.Deferred[dict[str, dict[RRsetKey, tuple[RR, ...]]]]:
        def load(conn: psycopg.Connection[Any]) -> dict[str, dict[RRsetKey, tuple[RR, ...]]]:
            zones: dict[str, dict[RRsetKey, tuple[RR, ...]]] = {}
            for origin, name, rdtype, records in conn.execute(
                "SELECT origin, name, rdtype, records FROM zone_records ORDER BY origin, name, rdtype"
            ):
                zones.setdefault(origin, {})[(name, rdtype)] = _rrs_from_text(records)
            return zones

        return self._read(load)

    def save_zone_records(
        self,
        origin: str,
        rrsets: Mapping[RRsetKey, tuple[RR, ...] | None],
        serial: int | None,
        digest: str,
        step: JournalStep | None,
        keep: int,
    ) -> defer.Deferred[None]:
        """As L{save_zone_version} for the version, fenced the same way, in the same transaction."""
        rows = [(name, rdtype, None if rrs is None else _rrs_to_text(rrs)) for (name, rdtype), rrs in rrsets.items()]

        def save(op: _Op) -> None:
            if serial is not None:  # fenced before anything is written
                _save_zone_version(op, origin, serial, digest, step, keep)
            for name, rdtype, records in rows:
                if records is None:
                    op.conn.execute(
                        "DELETE FROM zone_records WHERE origin = %s AND name = %s AND rdtype = %s",
                        (origin, name, rdtype),
                    )
                else:
                    op.conn.execute(
                        "INSERT INTO zone_records (origin, name, rdtype, records) VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT (origin, name, rdtype) DO UPDATE SET records = excluded.records",
                        (origin, name, rdtype, records),
                    )

        return self._write(save)

    # -- scoped ACME keys

    def acme_keys(self, user_id: str) -> defer.Deferred[list[AcmeKey]]:
        def read(conn: psycopg.Connection[Any]) -> list[AcmeKey]:
            rows = conn.execute(
                "SELECT key_id, secret_sha256, label, created FROM acme_keys WHERE user_id = %s"
                " ORDER BY created, key_id",
                (user_id,),
            )
            return [AcmeKey(*row) for row in rows]

        return self._read(read)

    def add_acme_key(self, user_id: str, key: AcmeKey) -> defer.Deferred[None]:
        def add(op: _Op) -> None:
            if op.conn.execute("SELECT 1 FROM users WHERE id = %s", (user_id,)).fetchone() is None:
                raise NoSuchUser(user_id)
            op.conn.execute(
                "INSERT INTO acme_keys (user_id, key_id, secret_sha256, label, created) VALUES (%s, %s, %s, %s, %s)",
                (user_id, key.key_id, key.secret_sha256, key.label, key.created),
            )

        return self._write(add)

    def remove_acme_key(self, user_id: str, key_id: str) -> defer.Deferred[bool]:
        def remove(op: _Op) -> bool:
            cursor = op.conn.execute("DELETE FROM acme_keys WHERE user_id = %s AND key_id = %s", (user_id, key_id))
            return cursor.rowcount > 0

        return self._write(remove)

    # -- TSIG replay records

    def load_replay_states(self) -> defer.Deferred[dict[str, ReplayState]]:
        def load(conn: psycopg.Connection[Any]) -> dict[str, ReplayState]:
            return {
                key: ReplayState(newest, _macs_from_text(macs))
                for key, newest, macs in conn.execute("SELECT key, newest, macs FROM tsig_replay")
            }

        return self._read(load)

    def merge_replay_state(
        self, key: str, state: ReplayState, fresh: Sequence[tuple[bytes, int]], oldest: int
    ) -> defer.Deferred[tuple[set[bytes], ReplayState]]:
        fresh = list(fresh)

        def merge(op: _Op) -> tuple[set[bytes], ReplayState]:
            row = op.conn.execute("SELECT newest, macs FROM tsig_replay WHERE key = %s FOR UPDATE", (key,)).fetchone()
            stored = None if row is None else ReplayState(row[0], _macs_from_text(row[1]))
            refused, merged = merge_replay(stored, state, fresh, oldest)
            op.conn.execute(
                "INSERT INTO tsig_replay (key, newest, macs) VALUES (%s, %s, %s)"
                " ON CONFLICT (key) DO UPDATE SET newest = excluded.newest, macs = excluded.macs",
                (key, merged.newest, _macs_to_text(merged.macs)),
            )
            return refused, merged

        return self._write(merge)

    def save_replay_state(self, key: str, state: ReplayState) -> defer.Deferred[None]:
        macs = _macs_to_text(state.macs)

        def save(op: _Op) -> None:
            op.conn.execute(
                "INSERT INTO tsig_replay (key, newest, macs) VALUES (%s, %s, %s)"
                " ON CONFLICT (key) DO UPDATE SET newest = excluded.newest, macs = excluded.macs",
                (key, state.newest, macs),
            )

        return self._write(save)

    # -- a whole installation (dyndns migrate-store)

    def install(self, installation: Any) -> defer.Deferred[None]:
        """
        Write everything of C{installation} (L{dyndns_plugin.store.migrate.Installation})
        in one transaction, into a store that holds no users and no zones
        (else L{StoreError}, nothing written): migrate-store never merges.
        """

        def install(op: _Op) -> None:
            conn = op.conn
            (users,) = _one(conn, "SELECT count(*) FROM users")
            (zones,) = _one(conn, "SELECT count(*) FROM zones")
            if users or zones:
                raise StoreError(f"postgresql: {self.label} is not empty ({users} users, {zones} zones)")
            snapshot = installation.snapshot
            self._put_all(conn, list(snapshot.users.values()), op.generation)
            self._save_all(conn, list(snapshot.states.values()), op.generation)
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO acme_keys (user_id, key_id, secret_sha256, label, created) VALUES (%s, %s, %s, %s, %s)",
                    [
                        (user_id, key.key_id, key.secret_sha256, key.label, key.created)
                        for user_id, keys in installation.acme_keys.items()
                        for key in keys
                    ],
                )
                cursor.executemany(
                    "INSERT INTO zone_records (origin, name, rdtype, records) VALUES (%s, %s, %s, %s)",
                    [
                        (origin, name, rdtype, _rrs_to_text(rrs))
                        for origin, rrsets in installation.zone_records.items()
                        for (name, rdtype), rrs in rrsets.items()
                    ],
                )
                cursor.executemany(
                    "INSERT INTO tsig_replay (key, newest, macs) VALUES (%s, %s, %s)",
                    [(key, state.newest, _macs_to_text(state.macs)) for key, state in installation.replay.items()],
                )
            for origin, history in installation.zones.items():
                conn.execute(
                    "INSERT INTO zones (origin, serial, digest) VALUES (%s, %s, %s)",
                    (origin, history.serial, history.digest),
                )
                for step in history.steps:
                    conn.execute(
                        "INSERT INTO zone_journal (origin, serial_from, serial_to, deleted, added)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        (
                            origin,
                            step.serial_from,
                            step.serial_to,
                            _rrs_to_text(step.deleted),
                            _rrs_to_text(step.added),
                        ),
                    )
            op.users.many = True

        return self._write(install)


def _changed_rows(conn: psycopg.Connection[Any], generation: int, current: int, own: list[int]) -> Changes:
    """The users, states and removals written after C{generation} but not last by us (in the caller's snapshot)."""
    changed = "gen > %s AND gen <> ALL(%s::bigint[])"
    args = (generation, own)
    (count,) = _one(
        conn,
        f"SELECT (SELECT count(*) FROM users WHERE {changed}) + (SELECT count(*) FROM states WHERE {changed})",
        args + args,
    )
    # a restore or an import by another node: tens of thousands of objects made on this thread
    with collector_paused() if count > _BULK_READ else contextlib.nullcontext():
        names = _hostnames_by_user(
            conn.execute(
                f"SELECT user_id, name FROM hostnames WHERE user_id IN (SELECT id FROM users WHERE {changed})"
                " ORDER BY user_id, position".encode(),
                args,
            )
        )
        users = {
            row[0]: _user_from_row(row, tuple(names.get(row[0], ())))
            for row in conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE {changed}".encode(), args)
        }
        states = {
            row[0]: _state_from_row(row)
            for row in conn.execute(f"SELECT {_STATE_COLUMNS} FROM states WHERE {changed}".encode(), args)
        }
        removed = frozenset(
            user_id for (user_id,) in conn.execute(f"SELECT user_id FROM removed WHERE {changed}".encode(), args)
        )
    return Changes(current, users, removed, states)


def _save_zone_version(op: _Op, origin: str, serial: int, digest: str, step: JournalStep | None, keep: int) -> None:
    conn = op.conn
    row = conn.execute("SELECT serial, digest FROM zones WHERE origin = %s FOR UPDATE", (origin,)).fetchone()
    if step is not None and row is not None and row[0] != step.serial_from:
        # a step written before a publish that failed, computed again: only over our own version
        if not (row[0] == step.serial_to and op.zone_version(origin) == (row[0], row[1])):
            raise ZoneConflict(origin, row[0], step.serial_from)
    conn.execute(
        "INSERT INTO zones (origin, serial, digest) VALUES (%s, %s, %s)"
        " ON CONFLICT (origin) DO UPDATE SET serial = excluded.serial, digest = excluded.digest",
        (origin, serial, digest),
    )
    if step is None:
        conn.execute("DELETE FROM zone_journal WHERE origin = %s", (origin,))
    else:
        # a step stored before a failed publish is replaced, not repeated
        conn.execute("DELETE FROM zone_journal WHERE origin = %s AND serial_from = %s", (origin, step.serial_from))
        conn.execute(
            "INSERT INTO zone_journal (origin, serial_from, serial_to, deleted, added) VALUES (%s, %s, %s, %s, %s)",
            (origin, step.serial_from, step.serial_to, _rrs_to_text(step.deleted), _rrs_to_text(step.added)),
        )
        conn.execute(
            "DELETE FROM zone_journal WHERE origin = %s AND seq <= ("
            " SELECT seq FROM zone_journal WHERE origin = %s"
            " ORDER BY seq DESC LIMIT 1 OFFSET %s)",
            (origin, origin, max(keep, 0)),
        )
    # sent at commit; dropped with the savepoint if this write fails after
    conn.execute("SELECT pg_notify(%s, %s)", (ZONES_CHANNEL, origin))
    op.zone_versions[origin] = (serial, digest)
