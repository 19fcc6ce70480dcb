"""
Backups and restores of the SQLite store, for C{dyndns backup} and
C{dyndns restore}; both are safe while a server runs on the store.

A backup is SQLite's online backup API copying the store in one step (one
read transaction: a consistent snapshot, which in WAL mode does not stop the
server's writes) into a temporary file beside the target, which is then
switched to a rollback journal (one self-contained file, no C{-wal}) and
renamed into place: there is never a half-written backup under the target's
name.

A restore first copies the backup into a temporary file beside the store and
checks and migrates that copy (the user's file is only read): an SQLite
file, C{integrity_check} ok, our tables with our columns for its schema
version, a version no newer than ours. Only then does it touch the store,
in one write transaction (all or nothing, like any other write, and the
server's writes wait for it):

 - the user data (users, names, states with their ACME challenge values,
   scoped ACME keys) is replaced by the backup's, every
   row stamped with a generation above both the store's and the backup's;
 - a tombstone (the C{removed} table) marks each user the store had and the
   backup has not, and each user whose state the backup lacks: a running
   server's poll (L{IUserStore.changes_since}) then sees every restored row
   as new, drops what it holds for the tombstoned users, and serves the
   restored data without a restart;
 - zone serials and journals are the store's where it has them (what the
   secondaries saw; a restore must never take a serial back) and the
   backup's for zones the store never published (a restore on a new
   machine); TSIG replay records keep the newer of the two per key;
 - host zones' updated RRsets likewise are the store's for every zone it
   has any for, and the backup's for the others (served from the server's
   next start: they are zone data, which a running server does not poll).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile

import attrs

from dyndns_plugin.store import StoreError
from dyndns_plugin.store.sqlite import (
    _STATE_COLUMNS,
    _USER_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    connect,
    damage,
    migrate,
)

#: The first 16 bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"

#: What a restore does with each table of the current schema (a test checks
#: that every table is named here, so a new migration cannot forget it).
USER_TABLES = ("users", "hostnames", "states", "acme_keys")
KEPT_TABLES = ("meta", "removed", "zones", "zone_journal", "tsig_replay", "zone_records")


class BackupError(StoreError):
    """A backup or restore refused or failed; the message is one line."""


@attrs.frozen
class BackupInfo:
    """What a backup file holds: its users, schema version and size in bytes."""

    path: str
    users: int
    schema_version: int
    size: int


@attrs.frozen
class RestoreInfo:
    """
    A finished restore: the users restored, the users the store had before,
    the backup's schema version, and the store's generation after it.
    """

    users: int
    replaced: int
    schema_version: int
    generation: int


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _temporary_beside(path: str) -> str:
    """A new empty file (mode 0600) in C{path}'s folder, for an atomic rename."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    return temporary


def _remove(*paths: str) -> None:
    for path in paths:
        for name in (path, path + "-journal", path + "-wal", path + "-shm"):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass


def _fsync_folder(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(source_path: str, target: sqlite3.Connection) -> None:
    """
    The whole of C{source_path} into C{target} in one backup step (one
    snapshot), left as one self-contained file (no WAL beside it).
    """
    source = _connect(source_path)
    try:
        source.backup(target)
    finally:
        source.close()
    target.execute("PRAGMA journal_mode=DELETE")


def _describe(conn: sqlite3.Connection, path: str) -> BackupInfo:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    (users,) = conn.execute("SELECT COUNT(*) FROM users").fetchone()
    return BackupInfo(path, users, version, os.path.getsize(path))


def backup(store_path: str, destination: str, force: bool = False) -> BackupInfo:
    """
    Copy the store at C{store_path} to C{destination}: consistent while a
    server writes, and atomic (a temporary file renamed). An existing
    C{destination} is refused unless C{force}.
    """
    if not os.path.isfile(store_path):
        raise BackupError(f"{store_path}: no store there (nothing to back up)")
    if os.path.isdir(destination):
        raise BackupError(f"{destination}: is a folder; give a file name")
    if os.path.exists(destination) and not force:
        raise BackupError(f"{destination}: exists; give --force to replace it")
    try:
        temporary = _temporary_beside(destination)
    except OSError as e:
        raise BackupError(f"{destination}: {e.strerror}") from None
    try:
        target = _connect(temporary)
        try:
            _copy(store_path, target)
            problem = damage(target)
            if problem is not None:
                raise BackupError(f"{store_path}: damaged ({problem}); no backup written")
            _describe(target, temporary)  # it is ours: it has users
        finally:
            target.close()
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        if force:
            os.replace(temporary, destination)
        else:
            os.link(temporary, destination)  # fails if someone made it meanwhile
            os.unlink(temporary)
        _fsync_folder(destination)
    except sqlite3.Error as e:
        raise BackupError(f"{store_path}: {e}") from None
    except FileExistsError:
        raise BackupError(f"{destination}: exists; give --force to replace it") from None
    except OSError as e:
        raise BackupError(f"{destination}: {e.strerror}") from None
    finally:
        _remove(temporary)
    conn = _connect(destination)
    try:
        return _describe(conn, destination)
    finally:
        conn.close()


def _schema_at(version: int) -> dict[str, list[str]]:
    """Table name -> column names of a database at schema C{version}."""
    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS[:version]:
            conn.executescript(script)
        return _schema_of(conn)
    finally:
        conn.close()


def _schema_of(conn: sqlite3.Connection, database: str = "main") -> dict[str, list[str]]:
    tables = conn.execute(
        f"SELECT name FROM {database}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return {name: [column[1] for column in conn.execute(f"PRAGMA {database}.table_info({name})")] for (name,) in tables}


def check_backup(conn: sqlite3.Connection, path: str) -> int:
    """
    Whether the database of C{conn} (a copy of C{path}) is a dyndns store we
    can take: intact, with our tables at its schema version, no newer than
    ours. Returns that version; refuses with L{BackupError}.
    """
    problem = damage(conn)
    if problem is not None:
        raise BackupError(f"{path}: damaged ({problem}); nothing restored")
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise BackupError(
            f"{path}: schema version {version} is newer than this program's {SCHEMA_VERSION}; "
            "upgrade dyndns_plugin to restore it; nothing restored"
        )
    if version < 1 or _schema_of(conn) != _schema_at(version):
        raise BackupError(f"{path}: not a dyndns backup (its tables are not a dyndns store's); nothing restored")
    if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
        raise BackupError(f"{path}: damaged (names or states of missing users); nothing restored")
    return int(version)


def _read_header(path: str) -> None:
    try:
        with open(path, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise BackupError(f"{path}: {e.strerror}") from None
    if header != SQLITE_HEADER:
        raise BackupError(f"{path}: not a dyndns backup (not an SQLite database); nothing restored")


def _checked_copy(backup_path: str, store_path: str) -> tuple[str, int]:
    """
    The backup copied beside the store, checked and migrated to our schema:
    (the copy's path, the backup's schema version). The backup is only read.
    """
    _read_header(backup_path)
    try:
        copy = _temporary_beside(store_path)
    except OSError as e:
        raise BackupError(f"{store_path}: {e.strerror}") from None
    try:
        conn = _connect(copy)
        try:
            _copy(backup_path, conn)
            version = check_backup(conn, backup_path)
            migrate(conn, backup_path)
        finally:
            conn.close()
    except sqlite3.Error as e:
        _remove(copy)
        raise BackupError(f"{backup_path}: not a dyndns backup ({e}); nothing restored") from None
    except BaseException:
        _remove(copy)
        raise
    return copy, version


def _ids(conn: sqlite3.Connection, query: str) -> set[str]:
    return {row[0] for row in conn.execute(query)}


def _replace(conn: sqlite3.Connection) -> RestoreInfo:
    """
    Inside the write transaction: the attached C{restored} database's user
    data replaces the store's (see the module docstring for the rules).
    """
    (live,) = conn.execute("SELECT value FROM main.meta WHERE key = 'generation'").fetchone()
    (theirs,) = conn.execute("SELECT value FROM restored.meta WHERE key = 'generation'").fetchone()
    generation = max(live, theirs) + 1
    had_users = _ids(conn, "SELECT id FROM main.users")
    had_states = _ids(conn, "SELECT user_id FROM main.states")
    users = _ids(conn, "SELECT id FROM restored.users")
    states = _ids(conn, "SELECT user_id FROM restored.states")

    conn.execute("DELETE FROM main.hostnames")
    conn.execute("DELETE FROM main.states")
    conn.execute("DELETE FROM main.acme_keys")
    conn.execute("DELETE FROM main.users")
    conn.execute(
        f"INSERT INTO main.users ({_USER_COLUMNS}, gen) SELECT {_USER_COLUMNS}, ? FROM restored.users",
        (generation,),
    )
    conn.execute(
        "INSERT INTO main.hostnames (name, user_id, position) SELECT name, user_id, position FROM restored.hostnames"
    )
    conn.execute(
        f"INSERT INTO main.states ({_STATE_COLUMNS}, gen) SELECT {_STATE_COLUMNS}, ? FROM restored.states",
        (generation,),
    )
    conn.execute(
        "INSERT INTO main.acme_keys (user_id, key_id, secret_sha256, label, created)"
        " SELECT user_id, key_id, secret_sha256, label, created FROM restored.acme_keys"
    )
    conn.execute("DELETE FROM main.removed WHERE user_id IN (SELECT id FROM main.users)")
    conn.executemany(
        "INSERT OR REPLACE INTO main.removed (user_id, gen) VALUES (?, ?)",
        [(user_id, generation) for user_id in sorted((had_users - users) | ((had_states - states) & users))],
    )
    conn.execute(
        "INSERT INTO main.zones (origin, serial, digest) SELECT origin, serial, digest FROM restored.zones"
        " WHERE origin NOT IN (SELECT origin FROM main.zones)"
    )
    conn.execute(
        "INSERT INTO main.zone_journal (origin, serial_from, serial_to, deleted, added)"
        " SELECT origin, serial_from, serial_to, deleted, added FROM restored.zone_journal"
        " WHERE origin NOT IN (SELECT origin FROM main.zone_journal) ORDER BY seq"
    )
    conn.execute(
        "INSERT INTO main.zone_records (origin, name, rdtype, records)"
        " SELECT origin, name, rdtype, records FROM restored.zone_records"
        " WHERE origin NOT IN (SELECT origin FROM main.zone_records)"
    )
    conn.execute(
        "INSERT INTO main.tsig_replay (key, newest, macs) SELECT key, newest, macs FROM restored.tsig_replay"
        " WHERE true ON CONFLICT (key) DO UPDATE SET newest = excluded.newest, macs = excluded.macs"
        " WHERE excluded.newest > tsig_replay.newest"
    )
    conn.execute("UPDATE main.meta SET value = ? WHERE key = 'generation'", (generation,))
    if conn.execute("PRAGMA main.foreign_key_check").fetchone() is not None:
        raise BackupError("the restored names or states do not match its users; nothing restored")
    return RestoreInfo(len(users), len(had_users), 0, generation)


def restore(store_path: str, backup_path: str) -> RestoreInfo:
    """
    Replace the store's user data with the backup's, in one transaction,
    after checking and migrating a copy of the backup. A store that does not
    exist yet is created. Refusals raise L{BackupError}, store unchanged.
    """
    copy, version = _checked_copy(backup_path, store_path)
    try:
        try:
            conn = connect(store_path)  # created or migrated as at start
        except sqlite3.Error as e:
            raise BackupError(f"{store_path}: {e}") from None
        try:
            conn.execute("ATTACH DATABASE ? AS restored", (copy,))
            conn.execute("BEGIN IMMEDIATE")
            try:
                info = _replace(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("DETACH DATABASE restored")
        except sqlite3.Error as e:
            raise BackupError(f"{store_path}: {e}; nothing restored") from None
        finally:
            conn.close()
    finally:
        _remove(copy)
    return attrs.evolve(info, schema_version=version)
