"""
C{dyndns txt ...}, C{dyndns acme-key ...} and the C{txt} of C{dyndns status
--json}, run in-process against a memory store: a "server" service loaded
with every user, and per command a second service on the same store that
loads the command's user only, as the CLI's does (L{cli._run_with_service}).
The subprocess runs (exit status, stderr) are in tests/integration/test_cli.py.
"""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import redirect_stderr, redirect_stdout

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.cli import CommandError, build_parser
from dyndns_plugin.model import User, ValidationError
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.memory import MemoryUserStore

SUFFIX = "dyn.example"
#: The clock: 2023-11-14T22:13:20Z; values added now expire an hour later.
T0 = 1_700_000_000
EXPIRES = "2023-11-14T23:13:20Z"
ALICE = "_acme-challenge.alice.dyn.example"


class CLITestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.store = MemoryUserStore()
        self.server = self.service()
        self.successResultOf(defer.ensureDeferred(self.server.start()))
        for user in (
            User("alice", hostnames=["alice.example.org", "*.alice.example.net"]),
            User("bob", hostnames=["bob.example.org"]),
            User("dave", disabled=True),
        ):
            self.successResultOf(self.server.add_user(user))
        self.stderr = io.StringIO()

    def service(self) -> DynDNSService:
        service = DynDNSService(self.store, SUFFIX, clock=self.clock, poll_interval=None)
        self.addCleanup(service.challenge_expiry.stop)
        return service

    def dyndns(self, *argv: str) -> str:
        """Run one command as the CLI does; its standard output."""
        args = build_parser().parse_args(argv)
        cli = self.service()
        only = [args.id] if getattr(args, "one_user", False) else None
        self.successResultOf(defer.ensureDeferred(cli.start(only_users=only)))
        out = io.StringIO()
        with redirect_stdout(out), redirect_stderr(self.stderr):
            self.successResultOf(defer.ensureDeferred(args.run(cli, args)))
        return out.getvalue()

    def refused(self, error: type[Exception], *argv: str) -> str:
        """Run a command that fails; the message (what the CLI prints after C{dyndns: })."""
        args = build_parser().parse_args(argv)
        cli = self.service()
        self.successResultOf(defer.ensureDeferred(cli.start(only_users=[args.id])))
        with redirect_stdout(io.StringIO()):
            failure = self.failureResultOf(defer.ensureDeferred(args.run(cli, args)), error)
        return str(failure.value)

    def served(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        """What the running server serves at a challenge name once it polled the store."""
        self.successResultOf(defer.ensureDeferred(self.server.poll()))
        return self.server.registry.challenge(name)


class TXTCommandTests(CLITestCase):
    def test_set_list_clear(self) -> None:
        """
        set adds a value at the user's name (given as the name or its
        challenge owner name, any case, a final dot or not), which a
        running server serves after its poll; list shows name, value,
        expiry; clear removes one value or all at the name.
        """
        self.assertEqual(self.dyndns("txt", "list", "alice"), "")
        out = self.dyndns("txt", "set", "alice", "alice.dyn.example", "token-1")
        self.assertEqual(out, f"good {ALICE} token-1 (expires {EXPIRES})\n")
        self.assertEqual(self.served(ALICE), ("alice", ("token-1",)))
        self.clock.advance(60)
        out = self.dyndns("txt", "set", "Alice", "_ACME-Challenge.Alice.Example.NET.", "--", "-tok-2")
        self.assertEqual(out, "good _acme-challenge.alice.example.net -tok-2 (expires 2023-11-14T23:14:20Z)\n")
        self.dyndns("txt", "set", "alice", "alice.dyn.example", "--", "-token-3")
        self.assertEqual(self.served(ALICE), ("alice", ("token-1", "-token-3")))
        self.assertEqual(
            self.dyndns("txt", "list", "alice"),
            f"{ALICE}  token-1  {EXPIRES}\n"
            "_acme-challenge.alice.example.net  -tok-2  2023-11-14T23:14:20Z\n"
            f"{ALICE}  -token-3  2023-11-14T23:14:20Z\n",
        )
        self.assertEqual(
            json.loads(self.dyndns("txt", "list", "alice", "alice.example.net", "--json")),
            [{"name": "_acme-challenge.alice.example.net", "value": "-tok-2", "expires": "2023-11-14T23:14:20Z"}],
        )
        self.assertEqual(self.dyndns("txt", "list", "alice", "alice.example.org"), "")
        # The same value again: a fresh lifetime.
        self.clock.advance(60)
        out = self.dyndns("txt", "set", "alice", ALICE, "token-1")
        self.assertEqual(out, f"good {ALICE} token-1 (expires 2023-11-14T23:15:20Z)\n")

        self.assertEqual(self.dyndns("txt", "clear", "alice", ALICE, "token-1"), f"good {ALICE}: 1 value left\n")
        self.assertEqual(self.served(ALICE), ("alice", ("-token-3",)))
        self.assertEqual(self.dyndns("txt", "clear", "alice", ALICE, "token-1"), f"nochg {ALICE}: 1 value left\n")
        self.assertEqual(self.dyndns("txt", "clear", "alice", "alice.dyn.example."), f"good {ALICE}: 0 values left\n")
        self.assertIsNone(self.served(ALICE))
        stored = self.successResultOf(self.store.load()).states["alice"].txt
        self.assertEqual(stored, (("alice.example.net", "-tok-2", T0 + 60 + 3600),))
        # Challenge values are no address update: the last update stays none.
        self.assertIsNone(self.successResultOf(self.store.load()).states["alice"].updated_at)

    def test_refused(self) -> None:
        """
        A name that is not the user's, an unknown or disabled user, a bad
        value, a fifth value at one name: an error naming the problem, and
        nothing written.
        """
        for value in ("a", "b", "c", "d"):
            self.dyndns("txt", "set", "bob", "bob.example.org", value)
        before = self.successResultOf(self.store.load())
        message = self.refused(CommandError, "txt", "set", "bob", "bob.example.org", "e")
        self.assertEqual(message, "badtxt: _acme-challenge.bob.example.org holds 4 values already")
        for name in ("alice.dyn.example", "www.bob.example.org", "x.alice.example.net", "_acme-challenge.dyn.example"):
            for argv in (("set", "bob", name, "v"), ("clear", "bob", name), ("list", "bob", name)):
                message = self.refused(CommandError, "txt", *argv)
                self.assertEqual(
                    message,
                    f"{name} is not a name bob may hold ACME challenge values at "
                    "(_acme-challenge.bob.dyn.example, _acme-challenge.bob.example.org)",
                )
        self.assertEqual(self.refused(CommandError, "txt", "set", "zed", "zed.dyn.example", "v"), "no user 'zed'")
        self.assertEqual(self.refused(CommandError, "txt", "list", "zed"), "no user 'zed'")
        message = self.refused(CommandError, "txt", "set", "dave", "dave.dyn.example", "v")
        self.assertEqual(message, "disabled: user is disabled")
        for value in ("caf\u00e9", "x" * 256, ""):
            message = self.refused(ValidationError, "txt", "set", "alice", "alice.dyn.example", value)
            self.assertTrue(message.startswith("value: "), message)
        self.assertEqual(self.successResultOf(self.store.load()), before)


class StatusTests(CLITestCase):
    def test_status_json_shows_values(self) -> None:
        """Each user's row in status --json has its values (none: an empty list); the table is as before."""
        self.dyndns("txt", "set", "alice", "alice.example.org", "v1")
        rows = json.loads(self.dyndns("status", "--json"))
        self.assertEqual(
            [(r["user"], r["txt"]) for r in rows],
            [
                ("alice", [{"name": "_acme-challenge.alice.example.org", "value": "v1", "expires": EXPIRES}]),
                ("bob", []),
                ("dave", []),
            ],
        )
        self.assertEqual(
            self.dyndns("status").splitlines()[0].split(), ["user", "state", "ipv4", "ipv6", "last", "update", "method"]
        )
        # Expired values are not shown, even before the server drops them.
        self.clock.advance(3600)
        self.assertEqual(json.loads(self.dyndns("status", "--json"))[0]["txt"], [])
        self.assertEqual(self.dyndns("txt", "list", "alice"), "")


class AcmeKeyCommandTests(CLITestCase):
    def test_add_list_revoke(self) -> None:
        """
        add prints the key id and its secret once and stores only the
        secret's SHA-256; list shows id, creation time and label, never the
        secret or the hash; revoke removes the key.
        """
        out = self.dyndns("acme-key", "add", "alice", "--label", "certbot on the NAS")
        first, second_line = out.splitlines()
        self.assertTrue(first.startswith("added ACME key ") and first.endswith(" for alice"), first)
        key_id = first.split()[3]
        self.assertTrue(second_line.startswith("secret: "), second_line)
        secret = second_line.removeprefix("secret: ")
        self.assertGreaterEqual(len(secret), 32)
        self.assertEqual(self.stderr.getvalue(), "dyndns: the secret is shown only now (the store keeps its SHA-256)\n")
        (key,) = self.successResultOf(self.store.acme_keys("alice"))
        self.assertEqual(key.key_id, key_id)
        self.assertEqual(key.secret_sha256, hashlib.sha256(secret.encode()).hexdigest())
        self.assertEqual((key.label, key.created), ("certbot on the NAS", T0))

        self.clock.advance(1)
        added = json.loads(self.dyndns("acme-key", "add", "alice", "--json"))
        self.assertEqual(set(added), {"key_id", "label", "created", "secret"})
        self.assertEqual((added["label"], added["created"]), ("", "2023-11-14T22:13:21Z"))

        listing = self.dyndns("acme-key", "list", "alice")
        self.assertEqual(
            listing, f"{key_id}  2023-11-14T22:13:20Z  certbot on the NAS\n{added['key_id']}  2023-11-14T22:13:21Z\n"
        )
        listed = self.dyndns("acme-key", "list", "alice", "--json")
        self.assertEqual(
            json.loads(listed),
            [
                {"key_id": key_id, "label": "certbot on the NAS", "created": "2023-11-14T22:13:20Z"},
                {"key_id": added["key_id"], "label": "", "created": "2023-11-14T22:13:21Z"},
            ],
        )
        for text in (secret, key.secret_sha256, added["secret"]):
            self.assertNotIn(text, listing + listed)
        self.assertEqual(self.dyndns("acme-key", "list", "bob"), "")

        self.assertEqual(self.dyndns("acme-key", "revoke", "alice", key_id), f"revoked ACME key {key_id} of alice\n")
        self.assertEqual([k.key_id for k in self.successResultOf(self.store.acme_keys("alice"))], [added["key_id"]])
        message = self.refused(CommandError, "acme-key", "revoke", "alice", key_id)
        self.assertEqual(message, f"alice has no ACME key {key_id!r}")
        message = self.refused(CommandError, "acme-key", "revoke", "bob", added["key_id"])
        self.assertEqual(message, f"bob has no ACME key {added['key_id']!r}")

    def test_refused(self) -> None:
        """Unknown users and bad labels: an error, no key."""
        self.assertEqual(self.refused(CommandError, "acme-key", "add", "zed"), "no user 'zed'")
        self.assertEqual(self.refused(CommandError, "acme-key", "list", "zed"), "no user 'zed'")
        self.assertEqual(self.refused(CommandError, "acme-key", "revoke", "zed", "00000000"), "no user 'zed'")
        message = self.refused(ValidationError, "acme-key", "add", "alice", "--label", "x" * 101)
        self.assertEqual(message, "label: is longer than 100 characters")
        self.assertEqual(self.successResultOf(self.store.acme_keys("alice")), [])
