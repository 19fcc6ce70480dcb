"""Which `dyndns` commands load one user only (the rest read the whole store)."""

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.cli import build_parser

ONE_USER = [
    ["user", "add", "alice", "--password", "x"],
    ["user", "edit", "alice", "--notes", "n"],
    ["user", "show", "alice"],
    ["user", "remove", "alice"],
    ["user", "enable", "alice"],
    ["user", "disable", "alice"],
    ["user", "offline", "alice"],
    ["user", "update", "alice", "192.0.2.1"],
    ["txt", "list", "alice"],
    ["txt", "list", "alice", "alice.dyn.example"],
    ["txt", "set", "alice", "alice.dyn.example", "value"],
    ["txt", "clear", "alice", "alice.dyn.example"],
    ["txt", "clear", "alice", "_acme-challenge.alice.dyn.example", "value"],
    ["acme-key", "add", "alice", "--label", "certbot"],
    ["acme-key", "list", "alice"],
    ["acme-key", "revoke", "alice", "1a2b3c4d"],
]
WHOLE_STORE = [["user", "list"], ["status"], ["export"], ["import", "-"]]


class OneUserCommandTests(SynchronousTestCase):
    def test_one_user_commands(self) -> None:
        parser = build_parser()
        for argv in ONE_USER:
            args = parser.parse_args(argv)
            self.assertTrue(getattr(args, "one_user", False), argv)
            self.assertEqual(args.id, "alice")
        for argv in WHOLE_STORE:
            self.assertFalse(getattr(parser.parse_args(argv), "one_user", False), argv)

    def test_live_commands(self) -> None:
        """The writes tell a running server (make_live); the reads do not."""
        parser = build_parser()
        for argv in ONE_USER:
            live = getattr(parser.parse_args(argv), "live", False)
            self.assertEqual(live, argv[1] not in ("show", "list"), argv)

    def test_value_after_double_dash(self) -> None:
        """A challenge value may start with - (base64url): after --."""
        args = build_parser().parse_args(["txt", "set", "alice", "alice.dyn.example", "--", "-abc"])
        self.assertEqual((args.id, args.name, args.value), ("alice", "alice.dyn.example", "-abc"))
