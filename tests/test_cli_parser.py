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
