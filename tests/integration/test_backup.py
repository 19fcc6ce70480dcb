"""
Backups, restores and upgrades with a real C{twistd -n dyndns}: store files
of every earlier schema version served after a start, a newer or damaged
store refused in one line, C{dyndns restore} reaching a running server, and
C{dyndns backup} taken while the server commits a steady stream of HTTP
updates.
"""

from __future__ import annotations

import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
import threading
import time
from urllib.parse import urlencode

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.store.sqlite import SCHEMA_VERSION
from tests.integration.clients import SUFFIX, get_request, http_exchange
from tests.integration.harness import (
    CHANGE_LIMIT,
    CLI_TIMEOUT,
    ServerTestCase,
    cli_ok,
    run_cli,
    run_twistd_once,
    wait_for,
)
from tests.store_versions import build_store_at_version
from tests.test_store_migrations import damage_store, schema_version

#: The store file of the harness's configuration, in the server's folder.
STORE = "users.sqlite"
#: Users the update stream writes to, in turn.
STREAM_USERS = ("ann", "ben", "cat", "dan")
#: Updates acknowledged before the backup starts, and after it ends, at least.
STREAM_MARGIN = 20
#: Bound for the whole update stream (it stops long before, once the backup is done).
STREAM_LIMIT = 5000


def stream_address(index: int) -> str:
    """The address of update number C{index}: the number can be read back from it."""
    return f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"


def stream_index(address: str) -> int:
    _, a, b, c = (int(part) for part in address.split("."))
    return (a << 16) | (b << 8) | c


def read_states(path: str) -> dict[str, str | None]:
    """User id -> stored IPv4 address, read straight from a store or backup file."""
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT user_id, ipv4 FROM states").fetchall())
    finally:
        conn.close()


def integrity(path: str) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


class UpgradeStartTests(ServerTestCase):
    """A store left by an earlier release: twistd migrates it at start and serves every user."""

    def start_on_version(self, version: int) -> None:
        self.make_server()
        path = os.path.join(self.server.directory, STORE)
        build_store_at_version(path, version)
        self.server.start()
        self.assertEqual(schema_version(path), SCHEMA_VERSION)

    def assertServesVersionRows(self) -> None:
        """The users of L{tests.store_versions}: alice online, bob disabled, carol never updated."""
        self.assertServes(f"alice.{SUFFIX}", "A", ["198.51.100.7"])
        self.assertServes(f"alice.{SUFFIX}", "AAAA", ["2001:db8::7"])
        self.assertServes("sub.alice.example.net", "A", ["198.51.100.7"])
        self.assertEqual(self.served(f"bob.{SUFFIX}", "A").data("A"), [], "bob is disabled")
        self.assertEqual(self.served(f"carol.{SUFFIX}", "A").data("A"), [], "carol never updated")
        self.assertEqual(self.server.cli("user", "list").splitlines(), ["alice", "bob (disabled)", "carol"])
        status = {row["user"]: row for row in json.loads(self.server.cli("status", "--json"))}
        self.assertEqual(status["alice"]["method"], "http")
        self.assertEqual(status["alice"]["ipv4"], "198.51.100.7")
        self.assertEqual((status["bob"]["state"], status["carol"]["state"]), ("disabled", "never"))
        bob = json.loads(self.server.cli("user", "show", "bob", "--json"))
        self.assertEqual((bob["state"]["ipv4"], bob["state"]["offline"]), ("198.51.100.8", True))

    def test_from_version_0(self) -> None:
        """An empty store file: the schema is created, the server serves (no users yet)."""
        self.start_on_version(0)
        result = self.served(f"alice.{SUFFIX}", "A")
        self.assertEqual(result.status, "NXDOMAIN", result.output)
        self.assertEqual(self.server.cli("user", "list"), "")

    def test_from_version_1(self) -> None:
        self.start_on_version(1)
        self.assertServesVersionRows()

    def test_from_version_2(self) -> None:
        self.start_on_version(2)
        self.assertServesVersionRows()

    def test_from_version_3(self) -> None:
        self.start_on_version(3)
        self.assertServesVersionRows()


class StoreRefusedAtStartTests(ServerTestCase):
    """A store twistd must not run on: it exits non-zero, the last line names the file and why."""

    def assertStartRefused(self, *expected: str) -> None:
        path = os.path.join(self.server.directory, STORE)
        with open(path, "rb") as f:
            before = f.read()
        rc, out, err = run_twistd_once(self.server.config)
        self.assertNotEqual(rc, 0, out + err)
        last = (out + err).strip().splitlines()[-1]
        for part in (path, *expected):
            self.assertIn(part, last, out + err)
        self.assertNotIn("Traceback", out + err)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before, "the refused store was changed")

    def test_newer_schema(self) -> None:
        self.make_server()
        path = os.path.join(self.server.directory, STORE)
        build_store_at_version(path, SCHEMA_VERSION)
        conn = sqlite3.connect(path)
        conn.executescript(f"PRAGMA user_version = {SCHEMA_VERSION + 1};")
        conn.close()
        self.assertStartRefused(f"schema version {SCHEMA_VERSION + 1} is newer", "upgrade dyndns_plugin")

    def test_not_a_database(self) -> None:
        self.make_server()
        with open(os.path.join(self.server.directory, STORE), "w") as f:
            f.write("not a database\n" * 100)
        self.assertStartRefused("file is not a database")

    def test_damaged(self) -> None:
        self.make_server()
        damage_store(os.path.join(self.server.directory, STORE))
        self.assertStartRefused("damaged", "restore a backup")


class RunningServerRestoreTests(ServerTestCase):
    """C{dyndns backup} and C{dyndns restore} next to a running server, as an operator uses them."""

    def update(self, user: str, password: str, address: str) -> None:
        """One HTTP update (URL authentication), which must be acknowledged OK."""
        query = urlencode({"user": user, "pw": password, "ip": address})
        response = http_exchange(self.server.http_port, get_request(f"/dyndns/ddns?{query}"))
        self.assertEqual((response.status, response.header("x-dyndns-result")), (200, "OK"), response.raw)

    def test_restore_reaches_running_server(self) -> None:
        """
        Update, back up, update again, add a user, restore: by the time the
        command returns the server serves the backed-up address and has
        forgotten the later user, without a restart; a restore without --yes
        (no terminal) changes nothing.
        """
        self.make_server(listeners=("http",), limits={"enabled": False})
        self.server.add_user("alice", "pw-alice")
        self.server.start()
        self.update("alice", "pw-alice", "192.0.2.10")
        self.assertServes(f"alice.{SUFFIX}", "A", ["192.0.2.10"])
        backup = os.path.join(self.server.directory, "before.sqlite")
        out = self.server.cli("backup", backup)
        self.assertRegex(out, rf"^backed up 1 users to {backup} \(schema version {SCHEMA_VERSION}, \d+ bytes\)\n$")

        self.update("alice", "pw-alice", "192.0.2.20")
        self.server.add_user("mallory", "pw", address=["192.0.2.66"])
        self.assertServes(f"alice.{SUFFIX}", "A", ["192.0.2.20"])
        self.assertServes(f"mallory.{SUFFIX}", "A", ["192.0.2.66"], within=CHANGE_LIMIT)

        rc, out, err = self.server.run_cli("restore", backup)
        self.assertEqual((rc, out), (1, ""), err)
        self.assertIn("--yes", err)
        self.assertEqual(self.served(f"alice.{SUFFIX}", "A").data("A"), ["192.0.2.20"])

        out = self.server.cli("restore", "--yes", backup)
        self.assertIn(f"restored 1 users from {backup}", out)
        # served before the command returned (the control socket's sync)
        self.assertServes(f"alice.{SUFFIX}", "A", ["192.0.2.10"])
        gone = self.served(f"mallory.{SUFFIX}", "A")
        self.assertEqual(gone.status, "NXDOMAIN", gone.output)
        # the server goes on taking updates on the restored store
        self.update("alice", "pw-alice", "192.0.2.30")
        self.assertServes(f"alice.{SUFFIX}", "A", ["192.0.2.30"])
        self.assertEqual(read_states(os.path.join(self.server.directory, STORE))["alice"], "192.0.2.30")

    def test_backup_during_update_stream(self) -> None:
        """
        A backup taken while the server commits one HTTP update after another
        passes integrity_check and holds, for every user, an update no older
        than the last one acknowledged before the backup started; restoring
        it makes the server serve exactly the backup.
        """
        self.make_server(listeners=("http",), limits={"enabled": False})
        for user in STREAM_USERS:
            self.server.add_user(user, f"pw-{user}")
        self.server.start()

        acknowledged: list[tuple[int, str, float]] = []  # (index, user, monotonic time of the OK)
        failures: list[BaseException] = []
        stop = threading.Event()

        def stream() -> None:
            try:
                for index in range(1, STREAM_LIMIT):
                    if stop.is_set():
                        return
                    user = STREAM_USERS[index % len(STREAM_USERS)]
                    self.update(user, f"pw-{user}", stream_address(index))
                    acknowledged.append((index, user, time.monotonic()))
            except BaseException as e:
                failures.append(e)

        writer = threading.Thread(target=stream, name="update-stream", daemon=True)
        writer.start()
        try:
            wait_for(lambda: len(acknowledged) >= STREAM_MARGIN or failures, CHANGE_LIMIT * 4)
            self.assertGreaterEqual(len(acknowledged), STREAM_MARGIN, failures)
            backup = os.path.join(self.server.directory, "during.sqlite")
            started = time.monotonic()
            self.server.cli("backup", backup)
            ended = time.monotonic()
            mark = len(acknowledged)
            wait_for(lambda: len(acknowledged) >= mark + STREAM_MARGIN or failures, CHANGE_LIMIT * 4)
            self.assertGreaterEqual(len(acknowledged), mark + STREAM_MARGIN, "the stream stalled during the backup")
        finally:
            stop.set()
            writer.join(CHANGE_LIMIT * 4)
        self.assertEqual(failures, [])

        self.assertEqual(integrity(backup), "ok")
        saved = read_states(backup)
        self.assertEqual(set(saved), set(STREAM_USERS))
        # updates go one after another: the first acknowledged after the
        # backup ended, and all later ones, were sent after its snapshot
        first_after = min(i for i, _, t in acknowledged if t > ended)
        for user in STREAM_USERS:
            sent = [i for i, u, _ in acknowledged if u == user]
            before = [i for i, u, t in acknowledged if u == user and t < started]
            in_backup = stream_index(saved[user] or "")
            self.assertIn(in_backup, sent)
            self.assertGreaterEqual(in_backup, max(before), f"{user}: an update acknowledged before the backup is lost")
            self.assertLessEqual(in_backup, first_after, f"{user}: the backup holds an update sent after it")

        self.server.cli("restore", "--yes", backup)
        for user, address in saved.items():
            self.assertServes(f"{user}.{SUFFIX}", "A", [address or ""], within=CHANGE_LIMIT)
        self.assertEqual(read_states(os.path.join(self.server.directory, STORE)), saved)


class CommandLineTests(SynchronousTestCase):
    """The two commands' answers without a server: refusals in one line with exit status 1."""

    def setUp(self) -> None:
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.config = self.write_config("sqlite")
        self.store = os.path.join(self.folder, STORE)

    def write_config(self, backend: str) -> str:
        path = os.path.join(self.folder, f"{backend}.toml")
        with open(path, "w") as f:
            f.write(f'[service]\nsuffix = "{SUFFIX}"\n[store]\nbackend = "{backend}"\npath = "{STORE}"\n')
        return path

    def assertRefused(self, config: str, *args: str) -> str:
        rc, out, err = run_cli(config, *args)
        self.assertEqual((rc, out), (1, ""), err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertTrue(err.startswith("dyndns: "), err)
        return err

    def test_memory_store(self) -> None:
        memory = self.write_config("memory")
        target = os.path.join(self.folder, "b.sqlite")
        self.assertIn('store.backend is "memory"', self.assertRefused(memory, "backup", target))
        self.assertIn('store.backend is "memory"', self.assertRefused(memory, "restore", "--yes", target))
        self.assertFalse(os.path.exists(target))

    def test_backup_overwrite_needs_force(self) -> None:
        cli_ok(self.config, "user", "add", "alice", "--password", "pw")
        target = os.path.join(self.folder, "b.sqlite")
        cli_ok(self.config, "backup", target)
        cli_ok(self.config, "user", "add", "bob", "--password", "pw")
        self.assertIn("--force", self.assertRefused(self.config, "backup", target))
        self.assertEqual(len(read_users(target)), 1)
        self.assertIn("backed up 2 users", cli_ok(self.config, "backup", "--force", target))
        self.assertEqual(read_users(target), ["alice", "bob"])

    def test_restore_of_a_non_backup_changes_nothing(self) -> None:
        cli_ok(self.config, "user", "add", "alice", "--password", "pw")
        with open(self.store, "rb") as f:
            before = f.read()
        err = self.assertRefused(self.config, "restore", "--yes", self.config)
        self.assertIn("not a dyndns backup", err)
        with open(self.store, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_terminal_confirmation(self) -> None:
        """On a terminal, restore asks: "n" keeps the store, "y" restores."""
        cli_ok(self.config, "user", "add", "alice", "--password", "pw")
        target = os.path.join(self.folder, "b.sqlite")
        cli_ok(self.config, "backup", target)
        cli_ok(self.config, "user", "remove", "alice")
        rc, output = run_on_terminal([self.config, "restore", target], "n\n")
        self.assertEqual(rc, 1, output)
        self.assertIn("[y/N]", output)
        self.assertEqual(read_users(self.store), [])
        rc, output = run_on_terminal([self.config, "restore", target], "y\n")
        self.assertEqual(rc, 0, output)
        self.assertIn("restored 1 users", output)
        self.assertEqual(read_users(self.store), ["alice"])


def read_users(path: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [user for (user,) in conn.execute("SELECT id FROM users ORDER BY id")]
    finally:
        conn.close()


def run_on_terminal(args: list[str], answer: str) -> tuple[int, str]:
    """C{dyndns --config ARGS} with a pseudo-terminal as its standard input (and output), C{answer} typed."""
    main, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "dyndns_plugin.cli", "--config", *args],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        terminal = -1
        os.write(main, answer.encode())
        chunks: list[bytes] = []
        while True:
            ready, _, _ = select.select([main], [], [], CLI_TIMEOUT)
            if not ready:
                process.kill()
                raise AssertionError(f"no output within {CLI_TIMEOUT} s: {b''.join(chunks)!r}")
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        return process.wait(CLI_TIMEOUT), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(main)
        if terminal >= 0:
            os.close(terminal)
