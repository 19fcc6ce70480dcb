"""
A throw-away PostgreSQL 15 server for the tests of the PostgreSQL store:
one cluster per test process, made on first use (initdb into a temporary
folder, started on a free port of 127.0.0.1) and removed at exit.

The server runs with C{fsync=off}, C{synchronous_commit=off} and
C{full_page_writes=off}: for tests only, where a crash of the machine may
lose the data (it is thrown away anyway). It trusts every connection from
127.0.0.1 and takes no other.

C{new_database(testcase)} gives each test a database of its own (dropped at
clean-up) and returns its DSN; C{cluster()} gives the server itself, which
fault tests stop and start again (same folder, same port). No binaries or no
psycopg: L{tests.tools.unavailable} (skip locally, fail in CI).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import subprocess
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from tests.tools import free_port, unavailable

#: Debian's PostgreSQL 15 (package postgresql).
BINARIES = "/usr/lib/postgresql/15/bin"
#: The operating-system user the server runs as when we are root (initdb refuses root).
SERVER_USER = "postgres"

_names = itertools.count(1)


class Cluster:
    """One PostgreSQL server in a folder of its own, on 127.0.0.1:C{port}."""

    def __init__(self, folder: str, port: int) -> None:
        self.folder = folder
        self.port = port
        self.data = os.path.join(folder, "data")
        self.running = False

    def dsn(self, dbname: str = "postgres") -> str:
        """The DSN of database C{dbname} as the superuser."""
        return f"host=127.0.0.1 port={self.port} user={SERVER_USER} dbname={dbname}"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*prefix, *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}")

    def init(self) -> None:
        self._run(os.path.join(BINARIES, "initdb"), "-D", self.data, "-U", SERVER_USER, "-A", "trust", "-E", "UTF8")
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write("host all all 127.0.0.1/32 trust\n")

    def start(self) -> None:
        """Start the server (again), with the same data and port."""
        if self.running:
            return
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.folder}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        log = os.path.join(self.folder, "server.log")
        self._run(os.path.join(BINARIES, "pg_ctl"), "start", "-w", "-D", self.data, "-l", log, "-o", options)
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """
        Stop the server: C{fast} closes every connection and shuts down
        cleanly; C{immediate} is as if it crashed, and with
        C{synchronous_commit=off} loses the commits of the last moment.
        """
        if not self.running:
            return
        self._run(os.path.join(BINARIES, "pg_ctl"), "stop", "-w", "-D", self.data, "-m", mode)
        self.running = False

    def remove(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


_cluster: Cluster | None = None


def cluster() -> Cluster:
    """The test process's server, made and started on first use (running or not after that)."""
    global _cluster
    if _cluster is not None:
        return _cluster
    if not os.path.exists(os.path.join(BINARIES, "initdb")):
        unavailable(f"PostgreSQL 15 is not installed ({BINARIES}/initdb; Debian package postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed (pip install 'psycopg[binary,pool]')")
    folder = tempfile.mkdtemp(prefix="dyndns-pg-")
    if os.geteuid() == 0:
        shutil.chown(folder, SERVER_USER, SERVER_USER)
    made = Cluster(folder, free_port())
    try:
        made.init()
        made.start()
    except BaseException:
        made.remove()
        raise
    atexit.register(made.remove)
    _cluster = made
    return made


def _admin(server: Cluster, statement: str) -> None:
    import psycopg

    with psycopg.connect(server.dsn(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def new_database(testcase: SynchronousTestCase) -> str:
    """
    A new empty database for C{testcase}, dropped at its clean-up (the
    server started again first if the test left it stopped); its DSN.
    """
    server = cluster()
    server.start()
    name = f"test_{os.getpid()}_{next(_names)}"
    _admin(server, f'CREATE DATABASE "{name}"')

    def drop() -> None:
        server.start()
        _admin(server, f'DROP DATABASE "{name}" WITH (FORCE)')

    testcase.addCleanup(drop)
    return server.dsn(name)
