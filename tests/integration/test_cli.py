"""
The C{dyndns} admin command as a real subprocess against a temporary
configuration and SQLite store (no server running).

Every CLI run starts a Python process, so related checks are grouped into one
test. Bad input is checked for three things: a non-zero exit, a message that
names the problem, and a store left exactly as it was (the output of
C{dyndns export} before and after is identical).
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import shutil
import stat
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.passwords import is_password_hash, verify_password
from tests.integration.clients import SUFFIX
from tests.integration.harness import cli_ok, run_cli, write_config

TSIG_SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
#: Not a port anything listens on: the CLI never opens the DNS listeners.
UNUSED_PORT = 5399


def new_config(directory: str) -> str:
    return write_config(os.path.abspath(directory), UNUSED_PORT)


def document(*users: dict) -> str:
    return json.dumps({"format": "dyndns_plugin.users", "version": 1, "users": list(users)})


def write_file(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


class CommandTests(SynchronousTestCase):
    """Every command, on a fresh store per test."""

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.config = new_config(self.directory)

    def show(self, user_id: str) -> dict:
        return json.loads(cli_ok(self.config, "user", "show", user_id, "--json"))

    def test_user_lifecycle(self) -> None:
        """add, list, show (JSON and text), edit, update, offline, enable,
        disable, remove: each does what it says and says what it did."""
        out = cli_ok(
            self.config,
            "user",
            "add",
            "alice",
            "--password",
            "pw",
            "--host",
            "alice.example.org",
            "--host",
            "*.alice.example.net",
            "--offline-ip",
            "192.0.2.1",
            "--offline-ip",
            "2001:db8::1",
            "--notes",
            "home router",
            "--tsig-secret",
            TSIG_SECRET,
            "--tsig-algorithm",
            "hmac-sha256",
        )
        self.assertEqual(out, f"added alice (alice.{SUFFIX})\n")
        # The password from standard input; GnuDIP keeps the MD5 verifier.
        out = cli_ok(self.config, "user", "add", "bob", "--password", "-", "--gnudip", "--disabled", input="s3cret\n")
        self.assertEqual(out, f"added bob (bob.{SUFFIX})\n")
        self.assertEqual(cli_ok(self.config, "user", "list"), "alice\nbob (disabled)\n")

        alice = self.show("alice")
        self.assertEqual(alice["hostnames"], ["alice.example.org", "*.alice.example.net"])
        self.assertEqual((alice["offline_ipv4"], alice["offline_ipv6"]), ("192.0.2.1", "2001:db8::1"))
        self.assertEqual(alice["notes"], "home router")
        self.assertEqual((alice["tsig_secret"], alice["tsig_algorithm"]), (TSIG_SECRET, "hmac-sha256"))
        self.assertTrue(is_password_hash(alice["password_hash"]), alice["password_hash"])
        self.assertTrue(verify_password("pw", alice["password_hash"]))
        self.assertIsNone(alice["md5_verifier"])  # no GnuDIP: no MD5 kept
        self.assertNotIn("state", alice)
        bob = self.show("bob")
        self.assertTrue(bob["disabled"])
        self.assertTrue(verify_password("s3cret", bob["password_hash"]))
        self.assertEqual(bob["md5_verifier"], hashlib.md5(b"s3cret").hexdigest())

        # The text form lists every name and hides the secrets.
        text = cli_ok(self.config, "user", "show", "alice")
        self.assertIn(f"names: alice.{SUFFIX}, alice.example.org, *.alice.example.net\n", text)
        self.assertIn("password_hash: (set)\n", text)
        self.assertIn("tsig_secret: (set)\n", text)
        self.assertIn("md5_verifier: (none)\n", text)
        self.assertNotIn(TSIG_SECRET, text)
        self.assertNotIn(alice["password_hash"], text)

        out = cli_ok(
            self.config,
            "user",
            "edit",
            "alice",
            "--add-host",
            "www.alice.example.org",
            "--remove-host",
            "alice.example.org",
            "--notes",
            "office",
            "--offline-ip",
            "192.0.2.2",
        )
        self.assertEqual(out, "changed alice\n")
        out = cli_ok(self.config, "user", "update", "alice", "198.51.100.7", "2001:db8::7", "--ttl", "120")
        self.assertEqual(out, "good 198.51.100.7 2001:db8::7\n")
        out = cli_ok(self.config, "user", "update", "alice", "2001:db8::7", "198.51.100.7", "--ttl", "120")
        self.assertEqual(out, "nochg 198.51.100.7 2001:db8::7\n")
        out = cli_ok(self.config, "user", "offline", "alice")
        # What DNS serves now (the offline IPv4), not the last online address.
        self.assertEqual(out, "alice is offline: DNS serves 192.0.2.2\n")

        alice = self.show("alice")
        self.assertEqual(alice["hostnames"], ["*.alice.example.net", "www.alice.example.org"])
        self.assertEqual(alice["notes"], "office")
        # --offline-ip replaces the list: the IPv6 offline address is gone.
        self.assertEqual((alice["offline_ipv4"], alice["offline_ipv6"]), ("192.0.2.2", None))
        # The TSIG key and password were not touched by the edit.
        self.assertEqual(alice["tsig_secret"], TSIG_SECRET)
        self.assertTrue(verify_password("pw", alice["password_hash"]))
        state = alice["state"]
        self.assertEqual(
            (state["status"], state["offline"], state["ipv4"], state["ipv6"], state["ttl"], state["method"]),
            ("offline", True, "198.51.100.7", "2001:db8::7", 120, "cli"),
        )
        self.assertRegex(state["updated_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

        # A disabled user cannot update; enabling lets it.
        rc, out, err = run_cli(self.config, "user", "update", "bob", "203.0.113.1")
        self.assertEqual((rc, out), (1, ""))
        self.assertIn("disabled", err)
        self.assertEqual(cli_ok(self.config, "user", "enable", "bob"), "enabled bob\n")
        self.assertEqual(cli_ok(self.config, "user", "update", "bob", "203.0.113.1"), "good 203.0.113.1\n")
        self.assertEqual(cli_ok(self.config, "user", "disable", "alice"), "disabled alice\n")
        self.assertEqual(cli_ok(self.config, "user", "remove", "bob"), "removed bob\n")
        self.assertEqual(cli_ok(self.config, "user", "list"), "alice (disabled)\n")

    def test_status(self) -> None:
        """status as a table and as JSON, sorted by any column, reversed."""
        cli_ok(
            self.config,
            "import",
            write_file(
                self.directory,
                "users.json",
                document(
                    {
                        "id": "anna",
                        "password": "a",
                        "state": {"ipv4": "203.0.113.5", "updated_at": "2024-05-01T10:00:00Z", "method": "http"},
                    },
                    {
                        "id": "bert",
                        "password": "b",
                        "offline_ipv4": "192.0.2.200",
                        "state": {
                            "ipv4": "192.0.2.7",
                            "ipv6": "2001:db8::b",
                            "offline": True,
                            "updated_at": "2024-05-03T10:00:00Z",
                            "method": "gnudip",
                        },
                    },
                    {"id": "cleo", "password": "c"},
                    {
                        "id": "dora",
                        "password": "d",
                        "disabled": True,
                        "state": {"ipv4": "198.51.100.1", "updated_at": "2024-05-02T10:00:00Z", "method": "dns-update"},
                    },
                ),
            ),
        )
        rows = json.loads(cli_ok(self.config, "status", "--json"))
        self.assertEqual([r["user"] for r in rows], ["anna", "bert", "cleo", "dora"])
        self.assertEqual(
            rows[0],
            {
                "user": "anna",
                "state": "online",
                "ipv4": "203.0.113.5",
                "ipv6": "",
                "updated": "2024-05-01T10:00:00Z",
                "method": "http",
                "txt": [],
            },
        )
        self.assertEqual([r["state"] for r in rows], ["online", "offline", "never", "disabled"])
        # The addresses are what DNS serves: bert is offline, so his offline
        # IPv4 and no IPv6 (not his last online addresses); dora is disabled.
        self.assertEqual((rows[1]["ipv4"], rows[1]["ipv6"]), ("192.0.2.200", ""))
        self.assertEqual((rows[3]["ipv4"], rows[3]["ipv6"]), ("", ""))

        by_ip = json.loads(cli_ok(self.config, "status", "--json", "--sort", "ipv4"))
        # Users without an address sort last.
        self.assertEqual([r["user"] for r in by_ip], ["bert", "anna", "cleo", "dora"])
        by_time = json.loads(cli_ok(self.config, "status", "--json", "--sort", "updated", "--reverse"))
        self.assertEqual([r["user"] for r in by_time if r["updated"]], ["bert", "dora", "anna"])
        self.assertEqual(len(by_time), 4)

        table = cli_ok(self.config, "status", "--sort", "state").splitlines()
        self.assertEqual(table[0].split(), ["user", "state", "ipv4", "ipv6", "last", "update", "method"])
        self.assertEqual([line.split()[0] for line in table[1:]], ["dora", "cleo", "bert", "anna"])
        self.assertIn("2024-05-03T10:00:00Z", table[3])

    def test_acme(self) -> None:
        """
        txt set, list, clear and acme-key add, list, revoke on the SQLite
        store; status --json shows the values.
        """
        cli_ok(self.config, "user", "add", "alice", "--password", "pw", "--host", "*.alice.example.net")
        owner = f"_acme-challenge.alice.{SUFFIX}"
        out = cli_ok(self.config, "txt", "set", "alice", f"alice.{SUFFIX}", "--", "-token-1")
        self.assertTrue(out.startswith(f"good {owner} -token-1 (expires "), out)
        cli_ok(self.config, "txt", "set", "alice", "_acme-challenge.alice.example.net.", "token-2")
        lines = cli_ok(self.config, "txt", "list", "alice").splitlines()
        self.assertEqual(
            [line.split()[:2] for line in lines],
            [[owner, "-token-1"], ["_acme-challenge.alice.example.net", "token-2"]],
        )
        (row,) = json.loads(cli_ok(self.config, "status", "--json"))
        self.assertEqual(
            [(t["name"], t["value"]) for t in row["txt"]],
            [(owner, "-token-1"), ("_acme-challenge.alice.example.net", "token-2")],
        )
        self.assertTrue(row["txt"][0]["expires"].endswith("Z"), row)
        self.assertEqual(cli_ok(self.config, "txt", "clear", "alice", owner), f"good {owner}: 0 values left\n")
        self.assertEqual(len(cli_ok(self.config, "txt", "list", "alice").splitlines()), 1)

        rc, out, err = run_cli(self.config, "acme-key", "add", "alice", "--label", "lego")
        self.assertEqual(rc, 0, err)
        self.assertIn("shown only now", err)
        key_id = out.splitlines()[0].split()[3]
        secret = out.splitlines()[1].removeprefix("secret: ")
        listing = cli_ok(self.config, "acme-key", "list", "alice")
        self.assertEqual(listing.split()[0::2], [key_id, "lego"])
        self.assertNotIn(secret, listing)
        self.assertNotIn(hashlib.sha256(secret.encode()).hexdigest(), listing)
        self.assertEqual(
            cli_ok(self.config, "acme-key", "revoke", "alice", key_id), f"revoked ACME key {key_id} of alice\n"
        )
        self.assertEqual(cli_ok(self.config, "acme-key", "list", "alice"), "")

    def test_export_import_round_trip(self) -> None:
        """
        export -> import into a second, fresh store -> export gives the same
        document, secrets and states included; importing it again (from
        standard input) replaces users with identical ones.
        """
        cli_ok(
            self.config,
            "user",
            "add",
            "alice",
            "--password",
            "pw",
            "--host",
            "alice.example.org",
            "--host",
            "*.alice.example.net",
            "--offline-ip",
            "192.0.2.1",
            "--tsig-secret",
            TSIG_SECRET,
            "--tsig-algorithm",
            "hmac-sha512",
            "--notes",
            "note",
        )
        cli_ok(self.config, "user", "add", "bob", "--password", "pw2", "--tsig-from-password")
        cli_ok(
            self.config,
            "import",
            write_file(
                self.directory,
                "more.json",
                document(
                    {
                        "id": "carol",
                        "password": "x",
                        "gnudip": True,
                        "disabled": True,
                        "state": {
                            "ipv4": "192.0.2.9",
                            "offline": True,
                            "ttl": 60,
                            "updated_at": "2024-01-02T03:04:05Z",
                            "method": "http",
                            "client_address": "192.0.2.100",
                        },
                    },
                ),
            ),
        )
        cli_ok(self.config, "user", "update", "alice", "198.51.100.7", "2001:db8::7")
        exported = cli_ok(self.config, "export")
        data = json.loads(exported)
        self.assertEqual([u["id"] for u in data["users"]], ["alice", "bob", "carol"])
        self.assertEqual(data["users"][1]["md5_verifier"], hashlib.md5(b"pw2").hexdigest())
        self.assertTrue(data["users"][1]["tsig_from_password"])
        self.assertEqual(data["users"][2]["state"]["client_address"], "192.0.2.100")

        # --output writes a private file and says so on stderr.
        path = os.path.join(self.directory, "backup.json")
        rc, out, err = run_cli(self.config, "export", "--output", path)
        self.assertEqual((rc, out), (0, ""))
        self.assertIn(f"exported 3 users to {path}", err)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            self.assertEqual(f.read(), exported)

        other = new_config(os.path.abspath(self.mktemp()))
        self.assertEqual(cli_ok(other, "import", path), "imported 3 users\n")
        self.assertEqual(cli_ok(other, "export"), exported)
        self.assertEqual(cli_ok(other, "import", "-", input=exported), "imported 3 users\n")
        self.assertEqual(cli_ok(other, "export"), exported)
        # The imported password hashes still verify.
        self.assertTrue(
            verify_password("pw", json.loads(cli_ok(other, "user", "show", "alice", "--json"))["password_hash"])
        )

    def test_hash_password(self) -> None:
        first = cli_ok(self.config, "hash-password", "--password", "pw").strip()
        self.assertTrue(is_password_hash(first), first)
        self.assertTrue(verify_password("pw", first))
        self.assertFalse(verify_password("pW", first))
        second = cli_ok(self.config, "hash-password", "--password", "-", input="pw\n").strip()
        self.assertTrue(verify_password("pw", second))
        self.assertNotEqual(first, second)  # salted
        rc, out, err = run_cli(self.config, "hash-password", "--password", "-", input="\n")
        self.assertEqual((rc, out), (1, ""))
        self.assertIn("password", err)


class BadInputTests(SynchronousTestCase):
    """
    Bad input: exit status 1, a message naming the problem, and the store
    untouched. Every test starts from a copy of one template store holding
    alice (with alice.example.org and an address) and bob.
    """

    template: str
    baseline: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.template = tempfile.mkdtemp(prefix="dyndns-cli-")
        try:
            config = new_config(cls.template)
            cli_ok(
                config,
                "import",
                write_file(
                    cls.template,
                    "users.json",
                    document(
                        {
                            "id": "alice",
                            "password": "pw",
                            "hostnames": ["alice.example.org"],
                            "offline_ipv4": "192.0.2.1",
                            "state": {"ipv4": "198.51.100.7", "updated_at": "2024-01-01T00:00:00Z", "method": "cli"},
                        },
                        {"id": "bob", "password": "pw", "tsig_secret": TSIG_SECRET},
                    ),
                ),
            )
            cls.baseline = cli_ok(config, "export")
        except BaseException:
            shutil.rmtree(cls.template, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.template, ignore_errors=True)

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        for path in glob.glob(os.path.join(self.template, "*")):
            shutil.copy(path, self.directory)
        self.config = os.path.join(self.directory, "dyndns.toml")

    def assertRejected(self, *args: str, expect: tuple[str, ...], input: str | None = None) -> str:
        """The command fails with status 1 and a message holding C{expect}."""
        rc, out, err = run_cli(self.config, *args, input=input)
        self.assertEqual(rc, 1, f"dyndns {' '.join(args)}: {out}{err}")
        self.assertEqual(out, "")
        self.assertTrue(err.startswith("dyndns: "), err)
        self.assertNotIn("Traceback", err)
        for part in expect:
            self.assertIn(part, err)
        return err

    def assertUntouched(self) -> None:
        self.assertEqual(cli_ok(self.config, "export"), self.baseline)

    def test_template(self) -> None:
        """The template really holds the two users (so 'untouched' means something)."""
        users = json.loads(self.baseline)["users"]
        self.assertEqual([u["id"] for u in users], ["alice", "bob"])
        self.assertEqual(users[0]["state"]["ipv4"], "198.51.100.7")

    def test_invalid_user_id(self) -> None:
        self.assertRejected(
            "user", "add", "Bad_Id", "--password", "pw", expect=("id:", "'bad_id'", "not a valid user id")
        )
        # Ids are case-insensitive: Carol is carol, lowercased on input (not refused).
        self.assertEqual(
            cli_ok(self.config, "user", "add", "Carol", "--password", "pw"), "added carol (carol.dyn.example.com)\n"
        )
        self.assertEqual(json.loads(cli_ok(self.config, "user", "show", "CAROL", "--json"))["id"], "carol")
        cli_ok(self.config, "user", "remove", "CaRoL")
        self.assertRejected("user", "add", "carol-", "--password", "pw", expect=("'carol-'", "not a valid user id"))
        self.assertUntouched()

    def test_invalid_host_name(self) -> None:
        self.assertRejected(
            "user",
            "add",
            "carol",
            "--password",
            "pw",
            "--host",
            "bad..example.org",
            expect=("hostnames", "'bad..example.org'", "empty label"),
        )
        self.assertRejected(
            "user", "edit", "alice", "--add-host", "sp ace.example.org", expect=("hostnames", "'sp ace.example.org'")
        )
        # Under the suffix, only names below the user's own name.
        self.assertRejected(
            "user",
            "add",
            "carol",
            "--password",
            "pw",
            "--host",
            f"www.alice.{SUFFIX}",
            expect=("hostnames", f"www.alice.{SUFFIX}", f"carol.{SUFFIX}"),
        )
        self.assertUntouched()

    def test_invalid_address(self) -> None:
        self.assertRejected("user", "update", "alice", "300.1.2.3", expect=("'300.1.2.3' is not an IP address",))
        self.assertRejected("user", "update", "alice", "192.0.2.5", "192.0.2.6", expect=("at most one IPv4",))
        self.assertRejected(
            "user",
            "add",
            "carol",
            "--password",
            "pw",
            "--offline-ip",
            "not-an-ip",
            expect=("offline_ip", "'not-an-ip' is not an IP address"),
        )
        self.assertUntouched()

    def test_bad_tsig_secret(self) -> None:
        self.assertRejected(
            "user",
            "add",
            "carol",
            "--password",
            "pw",
            "--tsig-secret",
            "not*base64!",
            expect=("tsig_secret", "not valid base64"),
        )
        self.assertRejected("user", "edit", "bob", "--tsig-secret", "abc", expect=("tsig_secret", "not valid base64"))
        self.assertUntouched()

    def test_duplicate_user(self) -> None:
        self.assertRejected("user", "add", "alice", "--password", "other", expect=("'alice'", "already exists"))
        self.assertUntouched()

    def test_taken_host_name(self) -> None:
        self.assertRejected(
            "user",
            "add",
            "carol",
            "--password",
            "pw",
            "--host",
            "Alice.Example.org.",
            expect=("'alice.example.org'", "belongs to user 'alice'"),
        )
        self.assertRejected(
            "user",
            "edit",
            "bob",
            "--add-host",
            "alice.example.org",
            expect=("'alice.example.org'", "belongs to user 'alice'"),
        )
        self.assertUntouched()

    def test_unknown_user(self) -> None:
        for command in (
            ["show", "nobody"],
            ["edit", "nobody", "--notes", "x"],
            ["remove", "nobody"],
            ["update", "nobody", "192.0.2.1"],
        ):
            self.assertRejected("user", *command, expect=("no user 'nobody'",))
        self.assertUntouched()

    def test_acme_refused(self) -> None:
        """A challenge name that is not the user's, an unknown user or key: status 1, nothing written."""
        self.assertRejected(
            "txt",
            "set",
            "alice",
            "_acme-challenge.bob.dyn.example.com",
            "v",
            expect=("_acme-challenge.bob.dyn.example.com is not a name alice may hold ACME challenge values at",),
        )
        self.assertRejected("txt", "set", "nobody", "nobody.dyn.example.com", "v", expect=("no user 'nobody'",))
        self.assertRejected("acme-key", "revoke", "alice", "00000000", expect=("alice has no ACME key '00000000'",))
        self.assertRejected("acme-key", "add", "nobody", expect=("no user 'nobody'",))
        self.assertEqual(cli_ok(self.config, "txt", "list", "alice"), "")
        self.assertEqual(cli_ok(self.config, "acme-key", "list", "alice"), "")

    def test_missing_password(self) -> None:
        self.assertRejected("user", "add", "carol", expect=("password", "required"))
        self.assertUntouched()

    def test_import_with_one_bad_entry(self) -> None:
        """A document with one bad entry imports nothing, and says which one."""
        path = write_file(
            self.directory,
            "bad.json",
            document(
                {"id": "carol", "password": "pw"},
                {"id": "dave", "password": "pw", "hostnames": ["ok.example.org", "-bad.example.org"]},
            ),
        )
        self.assertRejected("import", path, expect=(path, "users[1].hostnames", "-bad.example.org"))
        self.assertUntouched()

    def test_import_conflicting_with_store(self) -> None:
        """
        Valid on its own, but the second entry takes alice's name: the whole
        import is rolled back (carol is not added either).
        """
        path = write_file(
            self.directory,
            "conflict.json",
            document(
                {"id": "carol", "password": "pw"},
                {"id": "dave", "password": "pw", "hostnames": ["alice.example.org"]},
            ),
        )
        self.assertRejected("import", path, expect=("alice.example.org",))
        self.assertUntouched()

    def test_import_not_a_document(self) -> None:
        path = write_file(self.directory, "garbage.json", "{not json")
        self.assertRejected("import", path, expect=(path, "not JSON"))
        wrong = write_file(self.directory, "wrong.json", json.dumps({"users": []}))
        self.assertRejected("import", wrong, expect=(wrong, "format"))
        self.assertUntouched()

    def test_bad_configuration(self) -> None:
        """A broken configuration file is named with its key; nothing opened."""
        broken = write_file(self.directory, "broken.toml", '[service]\nsuffix = "dyn.example.com"\nsufix = "x"\n')
        rc, out, err = run_cli(broken, "user", "list")
        self.assertEqual((rc, out), (1, ""))
        self.assertIn(f"{broken}: service.sufix: unknown key", err)
        missing = os.path.join(self.directory, "nothing.toml")
        rc, out, err = run_cli(missing, "user", "list")
        self.assertEqual((rc, out), (1, ""))
        self.assertIn(missing, err)


class ZoneCommandTests(SynchronousTestCase):
    """C{dyndns zone show} and C{zone clear} on a store no server runs on."""

    def test_show_and_clear(self) -> None:
        """
        show lists what updates set (zone-file lines, a hidden RRset as a
        comment); clear drops one type, then a whole name, and says how many;
        bad zones, names and types are refused and change nothing.
        """
        import sqlite3

        from dyndns_plugin.store.sqlite import connect

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        write_file(
            directory, "example.org.zone", "@ 300 IN SOA ns1.example.org. h.example.org. 1 1 1 1 1\n@ 300 IN NS ns1\n"
        )
        zones = [{"origin": "example.org", "file": "example.org.zone", "allow_update": ["127.0.0.2"]}]
        config = write_config(directory, UNUSED_PORT, dns={"zones": zones})
        conn = connect(os.path.join(directory, "users.sqlite"))
        rows = [
            ("www.example.org", 1, '[["www.example.org", 1, 60, "c0000201"], ["www.example.org", 1, 60, "c0000202"]]'),
            ("www.example.org", 16, '[["www.example.org", 16, 60, "0568656c6c6f"]]'),
            ("old.example.org", 15, "[]"),
        ]
        conn.executemany("INSERT INTO zone_records VALUES ('example.org', ?, ?, ?)", rows)
        conn.close()
        shown = cli_ok(config, "zone", "show", "example.org")
        self.assertEqual(
            shown.splitlines(),
            [
                "; example.org: 3 RRsets set by updates",
                "; old.example.org. MX: deleted (hides the zone file's)",
                "www.example.org. 60 IN A 192.0.2.1",
                "www.example.org. 60 IN A 192.0.2.2",
                'www.example.org. 60 IN TXT "hello"',
            ],
        )
        for args, message in [
            (("zone", "show", "example.net"), "example.net is not one of the host zones"),
            (("zone", "clear", "example.org", "www.example.net."), "www.example.net is not in example.org"),
            (("zone", "clear", "example.org", "www", "NOPE"), "'NOPE' is not a record type"),
        ]:
            rc, out, err = run_cli(config, *args)
            self.assertEqual(rc, 1, (args, out))
            self.assertIn(message, err)
        self.assertEqual(cli_ok(config, "zone", "show", "example.org"), shown)
        out = cli_ok(config, "zone", "clear", "example.org", "www", "TXT")
        self.assertIn("cleared 1 TXT RRset at www.example.org in example.org", out)
        self.assertIn("no server runs on the store", out)
        out = cli_ok(config, "zone", "clear", "example.org", "WWW.example.org.")
        self.assertIn("cleared 1 RRsets at www.example.org", out)
        self.assertIn(
            "cleared 0 RRsets at nothing.example.org", cli_ok(config, "zone", "clear", "example.org", "nothing")
        )
        conn = sqlite3.connect(os.path.join(directory, "users.sqlite"))
        self.assertEqual(
            conn.execute("SELECT name, rdtype, records FROM zone_records").fetchall(), [("old.example.org", 15, "[]")]
        )
        conn.close()
