"""
A PostgreSQL 15 server of the benchmark's own: initdb into the run's
temporary folder as user postgres (as BIND runs as bind: setpriv when we are
root), the server started by PID on a free port of 127.0.0.1 only, trusting
127.0.0.1 only. Unlike the tests' server (tests/postgres.py, fsync off), it
runs with PostgreSQL's defaults for durability (C{fsync}, C{synchronous_commit}
and C{full_page_writes} on): a commit is flushed to the disk before the
client hears of it. Also: its databases (filled with C{dyndns migrate-store}),
the CPU time of all its processes, a crash and restart (immediate shutdown,
then WAL recovery), and its stored states copied into an SQLite file of the
shape L{bench.harness.users.check_final} reads.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any

from bench.harness.meter import thread_cpu
from bench.harness.procs import HOST, BenchError, Processes, free_ports, log_tail, run_checked, wait_for
from bench.harness.users import REPO

#: Debian's PostgreSQL 15 (package postgresql).
BINARIES = "/usr/lib/postgresql/15/bin"
#: The operating-system user the server runs as when we are root (initdb refuses root).
SERVER_USER = "postgres"
#: What the record says of the server's configuration (SHOW of each).
SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "wal_level",
    "shared_buffers",
    "max_connections",
    "commit_delay",
)


def require_postgresql() -> dict[str, str]:
    """Exit, naming what to install, without the server's binaries or psycopg; else the server's version."""
    if not os.access(os.path.join(BINARIES, "postgres"), os.X_OK):
        raise SystemExit(f"missing: {BINARIES}/postgres (Debian: apt-get install postgresql-15)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise SystemExit("missing: psycopg (pip install -e '.[postgresql]')") from None
    version = run_checked([os.path.join(BINARIES, "postgres"), "--version"], 30, "postgres --version")
    return {"postgresql": version.strip().rpartition(" ")[2]}


#: What the server answers our readiness probe while it starts or recovers (FATAL, and expected).
_PROBE_REFUSED = ("the database system is starting up", "the database system is not yet accepting connections")


class PostgreSQL:
    """The server in C{tmp}/postgresql, made (initdb) and started; L{stop} it at the end."""

    def __init__(self, procs: Processes, tmp: str, deadline: float) -> None:
        self.procs, self.deadline = procs, deadline
        self.folder = os.path.join(tmp, "postgresql")
        self.data, self.log = os.path.join(self.folder, "data"), os.path.join(self.folder, "server.log")
        (self.port,) = free_ports(1)
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = self.starts = 0
        os.makedirs(self.folder)
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise BenchError(f"system user {SERVER_USER!r} missing (apt-get install postgresql-15)") from None
            os.chmod(tmp, 0o711)  # postgres may traverse, not list
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self.prefix = ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}", "--init-groups", "--"]
        initdb = [os.path.join(BINARIES, "initdb"), "-D", self.data, "-U", SERVER_USER, "-A", "trust", "-E", "UTF8"]
        run_checked(self.prefix + initdb, 120, "initdb")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:  # replaces initdb's: TCP from 127.0.0.1 only
            f.write("host all all 127.0.0.1/32 trust\n")
        self.start()

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@{HOST}:{self.port}/{database}"

    def start(self) -> None:
        """Start the server (again: same data, same port) and wait until it takes connections."""
        self.starts += 1
        argv = [os.path.join(BINARIES, "postgres"), "-D", self.data, "-p", str(self.port)]
        argv += ["-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={self.folder}"]
        self.proc = self.procs.start(self.prefix + argv, f"{self.log}.{self.starts}")
        self.pid = self.proc.pid
        wait_for(self._ready, self.deadline, "postgresql ready", self.proc, f"{self.log}.{self.starts}")

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn(), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def execute(self, statement: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """One statement in autocommit mode; its rows (none if it returns none)."""
        import psycopg

        try:
            with psycopg.connect(self.dsn(database), autocommit=True, connect_timeout=10) as conn:
                cursor = conn.execute(statement)  # type: ignore[arg-type]
                return list(cursor.fetchall()) if cursor.description else []
        except psycopg.Error as e:
            raise BenchError(f"postgresql: {statement[:60]}: {e}") from None

    def settings(self) -> dict[str, str]:
        return {name: str(self.execute(f"SHOW {name}")[0][0]) for name in SETTINGS}

    def installation(self, database: str, sqlite_store: str) -> str:
        """A new database filled by C{dyndns migrate-store} from the SQLite store; its DSN."""
        self.execute(f'CREATE DATABASE "{database}"')
        argv = [sys.executable, "-m", "dyndns_plugin.cli", "migrate-store"]
        argv += ["--from", f"sqlite:{sqlite_store}", "--to", self.dsn(database)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), REPO) if p)}
        run_checked(argv, 300, f"dyndns migrate-store into {database}", env=env, cwd="/")
        return self.dsn(database)

    def generation(self, database: str) -> int:
        """The store's commit counter (one per write transaction)."""
        return int(self.execute("SELECT value FROM meta WHERE key = 'generation'", database)[0][0])

    def pids(self) -> list[int]:
        """The server's processes: the postmaster and its children (backends, WAL writer, checkpointer...)."""
        children = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        parent = f.read().rpartition(")")[2].split()[1]
                except OSError:
                    continue
                if parent == str(self.pid):
                    children.append(int(entry))
        return [self.pid, *children]

    def crash_and_restart(self) -> float:
        """
        Immediate shutdown (SIGQUIT: every process exits at once, nothing is
        flushed, as in a crash), then start again, which replays the WAL:
        what was committed must be there. The seconds the restart took.
        """
        self._signal(signal.SIGQUIT)
        started = time.monotonic()
        self.start()
        return round(time.monotonic() - started, 2)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients disconnected, a checkpoint, exit)."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGINT)

    def _signal(self, signum: int) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BenchError(f"postgresql died during the run:\n{log_tail(f'{self.log}.{self.starts}')}")
        self.proc.send_signal(signum)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            raise BenchError(f"postgresql did not stop on signal {signum} within 30 s") from None
        self.procs.stop(self.proc)

    def log_lines(self, severities: tuple[str, ...]) -> list[str]:
        """
        The server's log lines of these severities (C{PANIC}, C{ERROR}...),
        every start's log, but the refusals of our own readiness probe while
        it starts or recovers.
        """
        found = []
        for start in range(1, self.starts + 1):
            with open(f"{self.log}.{start}", errors="replace") as f:
                found += [line.rstrip() for line in f if any(f" {s}: " in line for s in severities)]
        return [line for line in found if not any(probe in line for probe in _PROBE_REFUSED)]

    def states_as_sqlite(self, database: str, path: str) -> str:
        """
        The stored generation and host states copied into a new SQLite file
        (tables C{meta} and C{states}, the columns L{check_final} reads), so
        that one check reads either store. Its path.
        """
        (generation,) = self.execute("SELECT value FROM meta WHERE key = 'generation'", database)[0]
        rows = self.execute("SELECT user_id, ipv4, ipv6, offline, method, txt FROM states", database)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER)")
            conn.execute("CREATE TABLE states (user_id TEXT PRIMARY KEY, ipv4, ipv6, offline, method, txt)")
            conn.execute("INSERT INTO meta VALUES ('generation', ?)", (generation,))
            conn.executemany("INSERT INTO states VALUES (?, ?, ?, ?, ?, ?)", rows)
            conn.commit()
        return path


class ServerCPU:
    """CPU seconds all of the server's processes used between construction and L{read}."""

    def __init__(self, server: PostgreSQL) -> None:
        self.server = server
        self.before = self._now()

    def _now(self) -> dict[int, float]:
        return {pid: sum(thread_cpu(pid).values()) for pid in self.server.pids()}

    def read(self, leave_out: tuple[int, ...] = ()) -> dict[str, Any]:
        """
        C{cpu_s} (a process that exited meanwhile is left out, one started
        meanwhile counts whole, and so do the backends C{leave_out}: ours).
        """
        now = {pid: cpu for pid, cpu in self._now().items() if pid not in leave_out}
        used = sum(cpu - self.before.get(pid, 0.0) for pid, cpu in now.items())
        return {"cpu_s": round(used, 2), "processes": len(now), "exited": len(set(self.before) - set(now))}


class Activity:
    """
    What the server's client connections to C{database} do, sampled every
    C{every} s from pg_stat_activity on a connection of our own, between
    L{start} and L{stop}: the share of samples with a write transaction open
    (not idle), with one waiting for a lock (the generation row another
    node's transaction holds: see dyndns_plugin/store/postgresql.py), and
    with the server waiting for the client's next statement inside a
    transaction (the node's store thread is the one that is busy).
    """

    QUERY = (
        "SELECT count(*) FILTER (WHERE state <> 'idle'),"
        " count(*) FILTER (WHERE wait_event_type = 'Lock'),"
        " count(*) FILTER (WHERE starts_with(state, 'idle in transaction')"
        " OR state = 'active' AND wait_event = 'ClientRead')"
        " FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )

    def __init__(self, server: PostgreSQL, database: str, every: float = 0.02) -> None:
        self.server, self.database, self.every = server, database, every
        self.counts = [0, 0, 0, 0]  # samples, then samples with at least one of each
        self.running = False
        self.thread: threading.Thread | None = None
        self.error: str | None = None
        #: The server process that answers our samples (its CPU is not the nodes' doing).
        self.backend_pid = 0

    def start(self) -> None:
        self.running = True
        self.thread = threading.Thread(target=self._sample, name="pg_stat_activity", daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.server.dsn(self.database), autocommit=True, connect_timeout=10) as conn:
                self.backend_pid = conn.info.backend_pid
                while self.running:
                    row = conn.execute(self.QUERY.encode(), (self.database,)).fetchone()
                    assert row is not None
                    self.counts[0] += 1
                    for k, n in enumerate(row, 1):
                        self.counts[k] += n > 0
                    time.sleep(self.every)
        except psycopg.Error as e:
            self.error = str(e)

    def stop(self) -> dict[str, Any]:
        """The shares (0..1) of samples with a transaction open, waiting for a lock, waiting on the client."""
        self.running = False
        if self.thread is not None:
            self.thread.join(10)
        if self.error is not None:
            raise BenchError(f"sampling pg_stat_activity: {self.error}")
        samples = max(self.counts[0], 1)
        keys = ("transaction_open", "waiting_for_a_lock", "waiting_for_the_node")
        return {"samples": self.counts[0], **{k: round(n / samples, 3) for k, n in zip(keys, self.counts[1:])}}
