"""
The embedded default store: one SQLite file in WAL mode with
C{synchronous=FULL}, so a commit is on disk before its Deferred fires.

All SQL runs on one dedicated thread (L{dyndns_plugin.store.worker}), never
on the reactor thread. Writes that queue up while a commit is in progress are
committed together in the next transaction (group commit), each inside its
own savepoint so one failing write does not take the others with it. One
thread also means the reactor sees results in commit order, which keeps the
in-memory registry in step with the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReactorFromThreads
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
    steps_since,
)
from dyndns_plugin.store.worker import StoreWorker

T = TypeVar("T")

_SCHEMA_V1 = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('generation', 0);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    password_hash TEXT,
    md5_verifier TEXT,
    tsig_secret TEXT,
    tsig_algorithm TEXT NOT NULL,
    tsig_from_password INTEGER NOT NULL,
    offline_ipv4 TEXT,
    offline_ipv6 TEXT,
    notes TEXT NOT NULL,
    disabled INTEGER NOT NULL,
    gen INTEGER NOT NULL
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
    offline INTEGER NOT NULL,
    updated_at REAL,
    method TEXT,
    client_address TEXT,
    gen INTEGER NOT NULL
);
CREATE INDEX states_gen ON states (gen);
CREATE TABLE removed (
    user_id TEXT PRIMARY KEY,
    gen INTEGER NOT NULL
);
CREATE INDEX removed_gen ON removed (gen);
"""

#: Version 2: zone serials (never going back across restarts) and the IXFR
#: journal; C{seq} orders the steps (serials wrap around).
_SCHEMA_V2 = """
CREATE TABLE zones (
    origin TEXT PRIMARY KEY,
    serial INTEGER NOT NULL,
    digest TEXT NOT NULL
);
CREATE TABLE zone_journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    serial_from INTEGER NOT NULL,
    serial_to INTEGER NOT NULL,
    deleted TEXT NOT NULL,
    added TEXT NOT NULL
);
CREATE INDEX zone_journal_origin ON zone_journal (origin, seq);
"""

#: Version 3: TSIG replay records (the newest time accepted per key and the
#: MACs still inside the fudge window, as JSON [[time, hex MAC], ...]).
_SCHEMA_V3 = """
CREATE TABLE tsig_replay (
    key TEXT PRIMARY KEY,
    newest INTEGER NOT NULL,
    macs TEXT NOT NULL
);
"""

#: Version 4: host zones' RRsets set by RFC 2136 updates, on top of their
#: zone files (C{records}: JSON as in the journal; [] hides the file's RRset).
_SCHEMA_V4 = """
CREATE TABLE zone_records (
    origin TEXT NOT NULL,
    name TEXT NOT NULL,
    rdtype INTEGER NOT NULL,
    records TEXT NOT NULL,
    PRIMARY KEY (origin, name, rdtype)
);
"""

#: Version 5: users' ACME challenge values (C{states.txt}: JSON
#: [[name, value, expires], ...], NULL for none) and their scoped ACME
#: keys (C{acme_keys}: only a SHA-256 of each secret).
_SCHEMA_V5 = """
ALTER TABLE states ADD COLUMN txt TEXT;
CREATE TABLE acme_keys (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_id TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    label TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (user_id, key_id)
);
"""

#: MIGRATIONS[n] takes a database from schema version n to n + 1.
MIGRATIONS: list[str] = [_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5]
SCHEMA_VERSION = len(MIGRATIONS)


def _refuse_newer(conn: sqlite3.Connection, label: str) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{label}: schema version {version} is newer than this program's {SCHEMA_VERSION}; upgrade dyndns_plugin"
        )
    return int(version)


def migrate(conn: sqlite3.Connection, label: str) -> int:
    """
    Bring the database of C{conn} to L{SCHEMA_VERSION} in one transaction
    (all steps or none); return the version it had. A newer version is
    refused with L{StoreError} naming C{label} (the file): this program
    cannot know what a newer one stored.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _refuse_newer(conn, label)
        for target in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[target].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target + 1}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(version)


class _SQLiteSession:
    """The worker thread's session: one SQLite connection, a transaction per batch of writes."""

    def __init__(self, conn: sqlite3.Connection, committed: Callable[[int], None]) -> None:
        self._conn = conn
        self._committed = committed

    def read(self, function: Callable[[sqlite3.Connection], T]) -> T:
        return function(self._conn)

    def close(self) -> None:
        self._conn.close()

    def commit(self, functions: list[Callable[[sqlite3.Connection, int], Any]]) -> list[object]:
        conn = self._conn
        results: list[object] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
            (generation,) = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            for function in functions:
                conn.execute("SAVEPOINT op")
                try:
                    results.append(function(conn, generation))
                except BaseException:
                    results.append(Failure())
                    conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
            if all(isinstance(r, Failure) for r in results):
                conn.execute("ROLLBACK")  # nothing to commit: keep the generation
            else:
                conn.execute("COMMIT")
                self._committed(generation)
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = Failure(StoreError(f"sqlite: {e}"))
            results = [failure] * len(functions)
        return results


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _user_row(user: User, generation: int) -> tuple[Any, ...]:
    return (
        user.id,
        user.password_hash,
        user.md5_verifier,
        user.tsig_secret,
        user.tsig_algorithm,
        int(user.tsig_from_password),
        _text(user.offline_ipv4),
        _text(user.offline_ipv6),
        user.notes,
        int(user.disabled),
        generation,
    )


_USER_COLUMNS = (
    "id, password_hash, md5_verifier, tsig_secret, tsig_algorithm, "
    "tsig_from_password, offline_ipv4, offline_ipv6, notes, disabled"
)
_STATE_COLUMNS = "user_id, ipv4, ipv6, ttl, offline, updated_at, method, client_address, txt"
_PUT_USER = (
    f"INSERT INTO users ({_USER_COLUMNS}, gen) VALUES "
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET password_hash = excluded.password_hash, "
    "md5_verifier = excluded.md5_verifier, tsig_secret = excluded.tsig_secret, "
    "tsig_algorithm = excluded.tsig_algorithm, "
    "tsig_from_password = excluded.tsig_from_password, "
    "offline_ipv4 = excluded.offline_ipv4, offline_ipv6 = excluded.offline_ipv6, "
    "notes = excluded.notes, disabled = excluded.disabled, gen = excluded.gen"
)
#: The page cache of an import (KiB) at most; SQLite's default is 2,000.
_BULK_CACHE_KIB = 256 * 1024
_DROP_HOSTNAMES = "DELETE FROM hostnames WHERE user_id = ?"
_UNREMOVE = "DELETE FROM removed WHERE user_id = ?"
_SAVE_STATE = f"INSERT OR REPLACE INTO states ({_STATE_COLUMNS}, gen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _state_row(state: HostState, generation: int) -> tuple[Any, ...]:
    return (
        state.user_id,
        _text(state.ipv4),
        _text(state.ipv6),
        state.ttl,
        int(state.offline),
        state.updated_at,
        state.method,
        state.client_address,
        json.dumps(acme.to_json(state.txt)) if state.txt else None,
        generation,
    )


def _user_from_row(row: tuple[Any, ...], hostnames: tuple[str, ...]) -> User:
    # The store's own rows, validated when written: no second validation
    # (1,000,000 users at start-up).
    return User.trusted(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        bool(row[5]),
        stored_ipv4(row[6]),
        stored_ipv6(row[7]),
        hostnames,
        row[8],
        bool(row[9]),
    )


def _state_from_row(row: tuple[Any, ...], user_id: str | None = None) -> HostState:
    """C{user_id}: the same id string as the user's, kept once in memory."""
    return HostState.trusted(
        row[0] if user_id is None else user_id,
        stored_ipv4(row[1]),
        stored_ipv6(row[2]),
        row[3],
        bool(row[4]),
        row[5],
        row[6],
        row[7],
        _txt(row[8]),
    )


def _txt(text: str | None) -> tuple[tuple[str, str, float], ...]:
    return () if text is None else acme.from_json(json.loads(text))


def _changed_rows(conn: sqlite3.Connection, generation: int, current: int) -> Changes:
    """The users, states and removals written after C{generation} (in the caller's transaction)."""
    users = {}
    for row in conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE gen > ?", (generation,)).fetchall():
        names = conn.execute("SELECT name FROM hostnames WHERE user_id = ? ORDER BY position", (row[0],)).fetchall()
        users[row[0]] = _user_from_row(row, tuple(n for (n,) in names))
    states = {
        row[0]: _state_from_row(row)
        for row in conn.execute(f"SELECT {_STATE_COLUMNS} FROM states WHERE gen > ?", (generation,))
    }
    removed = frozenset(uid for (uid,) in conn.execute("SELECT user_id FROM removed WHERE gen > ?", (generation,)))
    return Changes(current, users, removed, states)


def _hostnames_by_user(conn: sqlite3.Connection, where: str = "", args: tuple[Any, ...] = ()) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for user_id, name in conn.execute(
        f"SELECT user_id, name FROM hostnames {where} ORDER BY user_id, position",
        args,
    ):
        names.setdefault(user_id, []).append(name)
    return names


def damage(conn: sqlite3.Connection, check: str = "integrity_check") -> str | None:
    """
    What SQLite's C{integrity_check} (or C{quick_check}) finds wrong with the
    database of C{conn}, as one line; None if it is intact.
    """
    (result,) = conn.execute(f"PRAGMA {check}(1)").fetchone()
    if result == "ok":
        return None
    return "; ".join(line for line in result.splitlines() if not line.startswith("***")) or result


def connect(path: str) -> sqlite3.Connection:
    """
    A connection to the store at C{path} as the store uses it (WAL, full
    sync, foreign keys, migrated to L{SCHEMA_VERSION}); a missing file is
    created readable by its owner only.
    """
    if path != ":memory:" and not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        _refuse_newer(conn, path)  # before anything changes the file
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=10000")
        migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


@implementer(IUserStore, IReplayStore, IZoneJournal, IAcmeKeyStore)
class SQLiteUserStore:
    """
    L{IUserStore} on one SQLite file. The file and its WAL are created
    readable by the owner only: they hold password verifiers.
    """

    #: One process owns the data (the CLI's writes are rare and polled).
    shared = False

    def __init__(self, path: str, reactor: IReactorFromThreads | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor  # type: ignore[assignment]
        self.path = path
        self._reactor: IReactorFromThreads = reactor  # type: ignore[assignment]
        self._worker: StoreWorker | None = None
        # For changes_since: the connection's data_version and the store's
        # generation at the last full look, and the newest generation this
        # process wrote itself since.
        self._data_version: int | None = None
        self._checked_generation = 0
        self._seen_generation = 0

    # -- lifecycle

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    def check(self) -> None:
        """
        Open, migrate, check (SQLite's C{quick_check}) and close the file
        synchronously, raising L{StoreError} with the reason: for start-up
        checks, before the reactor runs.
        """
        try:
            conn = self._connect()
            try:
                # a damaged file fails here, in one line, not at the first read
                problem = damage(conn, "quick_check")
            finally:
                conn.close()
            if problem is not None:
                raise StoreError(f"{self.path}: damaged ({problem}); restore a backup (dyndns restore)")
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: {e}") from None
        except OSError as e:
            raise StoreError(f"{self.path}: {e.strerror}") from None

    def open(self) -> defer.Deferred[None]:
        self._worker = StoreWorker(
            self._reactor, lambda: _SQLiteSession(self._connect(), self._note_generation), "dyndns-sqlite"
        )
        d = self._worker.start()

        def failed(failure: Failure) -> Failure:
            self._worker = None
            if failure.check(sqlite3.Error):
                return Failure(StoreError(f"{self.path}: {failure.value}"))
            return failure

        return d.addErrback(failed)

    def close(self) -> defer.Deferred[None]:
        worker, self._worker = self._worker, None
        if worker is None:
            return defer.succeed(None)
        return worker.stop()

    def _read(self, function: Callable[[sqlite3.Connection], T]) -> defer.Deferred[T]:
        if self._worker is None:
            return defer.fail(StoreError("store is not open"))
        return self._worker.submit(function, write=False)

    def _write(self, function: Callable[[sqlite3.Connection, int], T]) -> defer.Deferred[T]:
        if self._worker is None:
            return defer.fail(StoreError("store is not open"))
        return self._worker.submit(function, write=True)

    # -- reads

    def load(self) -> defer.Deferred[Snapshot]:
        def load(conn: sqlite3.Connection) -> Snapshot:
            conn.execute("BEGIN")
            try:
                (generation,) = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                names = _hostnames_by_user(conn)
                # _user_from_row and _state_from_row inlined: 1,000,000 rows each.
                user_of, state_of, v4, v6 = User.trusted, HostState.trusted, stored_ipv4, stored_ipv6
                users = {}
                for row in conn.execute(f"SELECT {_USER_COLUMNS} FROM users"):
                    user_id = row[0]
                    hostnames = names.get(user_id)
                    users[user_id] = user_of(
                        user_id,
                        row[1],
                        row[2],
                        row[3],
                        row[4],
                        bool(row[5]),
                        None if row[6] is None else v4(row[6]),
                        None if row[7] is None else v6(row[7]),
                        () if hostnames is None else tuple(hostnames),
                        row[8],
                        bool(row[9]),
                    )
                states = {}
                for row in conn.execute(f"SELECT {_STATE_COLUMNS} FROM states"):
                    user = users.get(row[0])
                    user_id = row[0] if user is None else user.id  # one id string for both
                    states[user_id] = state_of(
                        user_id,
                        None if row[1] is None else v4(row[1]),
                        None if row[2] is None else v6(row[2]),
                        row[3],
                        bool(row[4]),
                        row[5],
                        row[6],
                        row[7],
                        () if row[8] is None else _txt(row[8]),
                    )
                (self._data_version,) = conn.execute("PRAGMA data_version").fetchone()
            finally:
                conn.execute("COMMIT")
            self._checked_generation = self._seen_generation = generation
            return Snapshot(users, states, generation)

        return self._read(load)

    def load_users(self, user_ids: Iterable[str]) -> defer.Deferred[Snapshot]:
        wanted = list(dict.fromkeys(user_ids))

        def load(conn: sqlite3.Connection) -> Snapshot:
            conn.execute("BEGIN")
            try:
                (generation,) = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                users, states = {}, {}
                for user_id in wanted:
                    row = conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,)).fetchone()
                    if row is None:
                        continue
                    names = _hostnames_by_user(conn, "WHERE user_id = ?", (user_id,)).get(user_id, [])
                    user = users[user_id] = _user_from_row(row, tuple(names))
                    state = conn.execute(
                        f"SELECT {_STATE_COLUMNS} FROM states WHERE user_id = ?", (user_id,)
                    ).fetchone()
                    if state is not None:
                        states[user_id] = _state_from_row(state, user.id)
            finally:
                conn.execute("COMMIT")
            return Snapshot(users, states, generation)

        return self._read(load)

    def changes_since(self, generation: int) -> defer.Deferred[Changes]:
        def changes(conn: sqlite3.Connection) -> Changes:
            (data_version,) = conn.execute("PRAGMA data_version").fetchone()
            if data_version == self._data_version and generation >= self._checked_generation:
                # Nobody else committed since we last looked, and our own
                # writes reached the caller through their Deferreds.
                return Changes(generation=max(generation, self._seen_generation))
            conn.execute("BEGIN")
            try:
                (current,) = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                (data_version,) = conn.execute("PRAGMA data_version").fetchone()
                (changed,) = conn.execute(
                    "SELECT (SELECT count(*) FROM users WHERE gen > ?) + (SELECT count(*) FROM states WHERE gen > ?)",
                    (generation, generation),
                ).fetchone()
                # A restore or an import by another process: the tens of
                # thousands of objects made here, on this thread, made
                # collector passes that held the GIL (and the reactor) ~9 ms.
                with collector_paused() if changed > _BULK_READ else contextlib.nullcontext():
                    found = _changed_rows(conn, generation, current)
            finally:
                conn.execute("COMMIT")
            self._data_version = data_version
            self._checked_generation = current
            self._seen_generation = max(self._seen_generation, current)
            return found

        return self._read(changes)

    # -- writes

    def _note_generation(self, generation: int) -> None:
        # Runs on the worker thread right after our own commit.
        self._seen_generation = max(self._seen_generation, generation)

    @staticmethod
    def _put(conn: sqlite3.Connection, user: User, generation: int) -> None:
        for name in user.hostnames:
            row = conn.execute(
                "SELECT user_id FROM hostnames WHERE name = ? AND user_id != ?",
                (name, user.id),
            ).fetchone()
            if row is not None:
                raise NameTaken(name, row[0])
        conn.execute(_PUT_USER, _user_row(user, generation))
        conn.execute(_DROP_HOSTNAMES, (user.id,))
        conn.executemany(
            "INSERT INTO hostnames (name, user_id, position) VALUES (?, ?, ?)",
            [(name, user.id, i) for i, name in enumerate(user.hostnames)],
        )
        conn.execute(_UNREMOVE, (user.id,))

    @classmethod
    def _put_all(cls, conn: sqlite3.Connection, users: list[User], generation: int) -> None:
        """
        L{_put} of each user, in order; a run of users without hostnames
        (no name to check or write: nearly every user of a big import) in
        one C{executemany} per statement, which does the same in C.
        """
        run: list[User] = []

        def flush() -> None:
            conn.executemany(_PUT_USER, [_user_row(user, generation) for user in run])
            conn.executemany(_DROP_HOSTNAMES, [(user.id,) for user in run])
            conn.executemany(_UNREMOVE, [(user.id,) for user in run])
            run.clear()

        for user in users:
            if user.hostnames:
                flush()
                cls._put(conn, user, generation)
            else:
                run.append(user)
        flush()

    @staticmethod
    def _save(conn: sqlite3.Connection, state: HostState, generation: int) -> None:
        try:
            conn.execute(_SAVE_STATE, _state_row(state, generation))
        except sqlite3.IntegrityError:
            raise NoSuchUser(state.user_id) from None

    @classmethod
    def _save_all(cls, conn: sqlite3.Connection, states: list[HostState], generation: int) -> None:
        """L{_save} of each state in one C{executemany}; if one has no user, the first such is named."""
        try:
            conn.executemany(_SAVE_STATE, [_state_row(state, generation) for state in states])
        except sqlite3.IntegrityError:
            for state in states:  # the rows before it again: the same values
                cls._save(conn, state, generation)
            raise

    def add_user(self, user: User) -> defer.Deferred[None]:
        def add(conn: sqlite3.Connection, generation: int) -> None:
            if conn.execute("SELECT 1 FROM users WHERE id = ?", (user.id,)).fetchone():
                raise UserExists(user.id)
            self._put(conn, user, generation)

        return self._write(add)

    def put_user(self, user: User) -> defer.Deferred[None]:
        def put(conn: sqlite3.Connection, generation: int) -> None:
            self._put(conn, user, generation)

        return self._write(put)

    def remove_user(self, user_id: str) -> defer.Deferred[None]:
        def remove(conn: sqlite3.Connection, generation: int) -> None:
            if conn.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount == 0:
                raise NoSuchUser(user_id)
            conn.execute(
                "INSERT OR REPLACE INTO removed (user_id, gen) VALUES (?, ?)",
                (user_id, generation),
            )

        return self._write(remove)

    def save_state(self, state: HostState, expected: HostState | None | AnyState = ANY_STATE) -> defer.Deferred[None]:
        def save(conn: sqlite3.Connection, generation: int) -> None:
            if expected is not ANY_STATE:
                row = conn.execute(
                    f"SELECT {_STATE_COLUMNS} FROM states WHERE user_id = ?", (state.user_id,)
                ).fetchone()
                current = None if row is None else _state_from_row(row)
                if current != expected:
                    if conn.execute("SELECT 1 FROM users WHERE id = ?", (state.user_id,)).fetchone() is None:
                        raise NoSuchUser(state.user_id)
                    raise StateConflict(state.user_id, current)
            self._save(conn, state, generation)

        return self._write(save)

    def import_users(
        self, users: Iterable[User], states: Iterable[HostState], remove: Iterable[str] = ()
    ) -> defer.Deferred[None]:
        users, states, removed = list(users), list(states), list(remove)

        def import_(conn: sqlite3.Connection, generation: int) -> None:
            for user_id in removed:
                conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
                conn.execute(
                    "INSERT OR REPLACE INTO removed (user_id, gen) VALUES (?, ?)",
                    (user_id, generation),
                )
            # A big import updates four B-trees per user: with SQLite's
            # default 2 MB page cache, pages are evicted and read again
            # (~30% of the writing at 200,000 users). The cache only grows
            # as pages are touched, and is given back after.
            (cache_size,) = conn.execute("PRAGMA cache_size").fetchone()
            conn.execute(f"PRAGMA cache_size = {-_BULK_CACHE_KIB}")
            try:
                self._put_all(conn, users, generation)
                self._save_all(conn, states, generation)
            finally:
                conn.execute(f"PRAGMA cache_size = {int(cache_size)}")

        return self._write(import_)

    # -- zone serials and journals

    def load_zone_history(self, since: Mapping[str, int] | None = None) -> defer.Deferred[dict[str, ZoneHistory]]:
        d = self._read(self._load_zone_history)
        if since:  # no other node follows this store's journal: read whole, then cut
            d.addCallback(
                lambda zones: {o: h if o not in since else steps_since(h, since[o]) for o, h in zones.items()}
            )
        return d

    @staticmethod
    def _load_zone_history(conn: sqlite3.Connection) -> dict[str, ZoneHistory]:
        conn.execute("BEGIN")
        try:
            steps: dict[str, list[JournalStep]] = {}
            for origin, serial_from, serial_to, deleted, added in conn.execute(
                "SELECT origin, serial_from, serial_to, deleted, added FROM zone_journal ORDER BY seq"
            ):
                steps.setdefault(origin, []).append(
                    JournalStep(serial_from, serial_to, _rrs_from_text(deleted), _rrs_from_text(added))
                )
            return {
                origin: ZoneHistory(serial, digest, tuple(steps.get(origin, ())))
                for origin, serial, digest in conn.execute("SELECT origin, serial, digest FROM zones")
            }
        finally:
            conn.execute("COMMIT")

    def save_zone_version(
        self, origin: str, serial: int, digest: str, step: JournalStep | None, keep: int
    ) -> defer.Deferred[None]:
        def save(conn: sqlite3.Connection, generation: int) -> None:
            _save_zone_version(conn, origin, serial, digest, step, keep)

        return self._write(save)

    def load_zone_records(self) -> defer.Deferred[dict[str, dict[RRsetKey, tuple[RR, ...]]]]:
        def load(conn: sqlite3.Connection) -> dict[str, dict[RRsetKey, tuple[RR, ...]]]:
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
        rows = [(name, rdtype, None if rrs is None else _rrs_to_text(rrs)) for (name, rdtype), rrs in rrsets.items()]

        def save(conn: sqlite3.Connection, generation: int) -> None:
            for name, rdtype, records in rows:
                if records is None:
                    conn.execute(
                        "DELETE FROM zone_records WHERE origin = ? AND name = ? AND rdtype = ?", (origin, name, rdtype)
                    )
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO zone_records (origin, name, rdtype, records) VALUES (?, ?, ?, ?)",
                        (origin, name, rdtype, records),
                    )
            if serial is not None:
                _save_zone_version(conn, origin, serial, digest, step, keep)

        return self._write(save)

    # -- scoped ACME keys

    def acme_keys(self, user_id: str) -> defer.Deferred[list[AcmeKey]]:
        def read(conn: sqlite3.Connection) -> list[AcmeKey]:
            rows = conn.execute(
                "SELECT key_id, secret_sha256, label, created FROM acme_keys WHERE user_id = ? ORDER BY created, key_id",
                (user_id,),
            )
            return [AcmeKey(*row) for row in rows]

        return self._read(read)

    def add_acme_key(self, user_id: str, key: AcmeKey) -> defer.Deferred[None]:
        def add(conn: sqlite3.Connection, generation: int) -> None:
            if conn.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is None:
                raise NoSuchUser(user_id)
            conn.execute(
                "INSERT INTO acme_keys (user_id, key_id, secret_sha256, label, created) VALUES (?, ?, ?, ?, ?)",
                (user_id, key.key_id, key.secret_sha256, key.label, key.created),
            )

        return self._write(add)

    def remove_acme_key(self, user_id: str, key_id: str) -> defer.Deferred[bool]:
        def remove(conn: sqlite3.Connection, generation: int) -> bool:
            cursor = conn.execute("DELETE FROM acme_keys WHERE user_id = ? AND key_id = ?", (user_id, key_id))
            return cursor.rowcount > 0

        return self._write(remove)

    # -- TSIG replay records

    def load_replay_states(self) -> defer.Deferred[dict[str, ReplayState]]:
        def load(conn: sqlite3.Connection) -> dict[str, ReplayState]:
            return {
                key: ReplayState(newest, _macs_from_text(macs))
                for key, newest, macs in conn.execute("SELECT key, newest, macs FROM tsig_replay")
            }

        return self._read(load)

    def save_replay_state(self, key: str, state: ReplayState) -> defer.Deferred[None]:
        macs = _macs_to_text(state.macs)

        def save(conn: sqlite3.Connection, generation: int) -> None:
            conn.execute(_SAVE_REPLAY, (key, state.newest, macs))

        return self._write(save)

    def merge_replay_state(
        self, key: str, state: ReplayState, fresh: Sequence[tuple[bytes, int]], oldest: int
    ) -> defer.Deferred[tuple[set[bytes], ReplayState]]:
        fresh = list(fresh)

        def merge(conn: sqlite3.Connection, generation: int) -> tuple[set[bytes], ReplayState]:
            row = conn.execute("SELECT newest, macs FROM tsig_replay WHERE key = ?", (key,)).fetchone()
            stored = None if row is None else ReplayState(row[0], _macs_from_text(row[1]))
            refused, merged = merge_replay(stored, state, fresh, oldest)
            conn.execute(_SAVE_REPLAY, (key, merged.newest, _macs_to_text(merged.macs)))
            return refused, merged

        return self._write(merge)


_SAVE_REPLAY = (
    "INSERT INTO tsig_replay (key, newest, macs) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET newest = excluded.newest, macs = excluded.macs"
)


def _macs_to_text(macs: Iterable[tuple[int, bytes]]) -> str:
    """
    C{json.dumps([[t, m.hex()], ...])}, written out directly: a key updating
    thousands of times a second saves thousands of MACs many times a
    second, and the JSON encoder cost ~1.5 us each (hex needs no escapes).
    """
    return "[" + ", ".join([f'[{t}, "{m.hex()}"]' for t, m in macs]) + "]"


def _macs_from_text(text: str) -> tuple[tuple[int, bytes], ...]:
    return tuple((t, bytes.fromhex(m)) for t, m in json.loads(text))


#: More changed rows than this are read with the collector paused (see changes_since).
_BULK_READ = 1000
#: Records encoded by one json.dumps call (see L{_rrs_to_text}).
_RRS_PER_DUMP = 1000


def _save_zone_version(
    conn: sqlite3.Connection, origin: str, serial: int, digest: str, step: JournalStep | None, keep: int
) -> None:
    conn.execute(
        "INSERT INTO zones (origin, serial, digest) VALUES (?, ?, ?)"
        " ON CONFLICT (origin) DO UPDATE SET serial = excluded.serial,"
        " digest = excluded.digest",
        (origin, serial, digest),
    )
    if step is None:
        conn.execute("DELETE FROM zone_journal WHERE origin = ?", (origin,))
        return
    # a step stored before a failed publish is replaced, not repeated
    conn.execute(
        "DELETE FROM zone_journal WHERE origin = ? AND serial_from = ?",
        (origin, step.serial_from),
    )
    conn.execute(
        "INSERT INTO zone_journal (origin, serial_from, serial_to, deleted, added) VALUES (?, ?, ?, ?, ?)",
        (origin, step.serial_from, step.serial_to, _rrs_to_text(step.deleted), _rrs_to_text(step.added)),
    )
    conn.execute(
        "DELETE FROM zone_journal WHERE origin = ? AND seq <= ("
        " SELECT seq FROM zone_journal WHERE origin = ?"
        " ORDER BY seq DESC LIMIT 1 OFFSET ?)",
        (origin, origin, max(keep, 0)),
    )


def _rrs_to_text(rrs: tuple[RR, ...]) -> str:
    """
    C{json.dumps} of the records as lists, made a thousand records per call:
    one call holds the GIL throughout, and for the 100,000 records of a
    restore's step (on the store's thread) that kept the reactor thread
    from running for ~50 ms. The text is the same (", " between items).
    """
    rows = [[name, rdtype, ttl, rdata.hex()] for name, rdtype, ttl, rdata in rrs]
    parts = (json.dumps(rows[i : i + _RRS_PER_DUMP])[1:-1] for i in range(0, len(rows), _RRS_PER_DUMP))
    return "[" + ", ".join(parts) + "]"


def _rrs_from_text(text: str) -> tuple[RR, ...]:
    return tuple((name, rdtype, ttl, bytes.fromhex(rdata)) for name, rdtype, ttl, rdata in json.loads(text))
