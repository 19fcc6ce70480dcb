"""L{UserOrder}: writes of one user run one after another; bulk writes hold all their users."""

from __future__ import annotations

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.service.ordering import UserOrder


class Steps:
    """Actions that record when they start and finish when the test says so."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gates: dict[str, defer.Deferred[str]] = {}

    def action(self, name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        async def run() -> str:
            self.started.append(name)
            gate: defer.Deferred[str] = defer.Deferred()
            self.gates[name] = gate
            await gate
            if fail:
                raise ValueError(name)
            return name

        return run

    def finish(self, name: str) -> None:
        self.gates.pop(name).callback(name)


class UserOrderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.order = UserOrder()
        self.steps = Steps()

    def test_one_user_in_order(self) -> None:
        first = self.order.run("alice", self.steps.action("a1"))
        second = self.order.run("alice", self.steps.action("a2"))
        other = self.order.run("bob", self.steps.action("b1"))
        self.assertEqual(self.steps.started, ["a1", "b1"])
        self.steps.finish("a1")
        self.assertEqual(self.successResultOf(first), "a1")
        self.assertEqual(self.steps.started, ["a1", "b1", "a2"])
        self.steps.finish("a2")
        self.steps.finish("b1")
        self.assertEqual((self.successResultOf(second), self.successResultOf(other)), ("a2", "b1"))
        self.assertFalse(self.order.busy("alice") or self.order.busy("bob"))

    def test_failure_does_not_block_the_next(self) -> None:
        first = self.order.run("alice", self.steps.action("a1", fail=True))
        second = self.order.run("alice", self.steps.action("a2"))
        self.steps.finish("a1")
        self.failureResultOf(first, ValueError)
        self.steps.finish("a2")
        self.assertEqual(self.successResultOf(second), "a2")

    def test_bulk_waits_for_every_user_and_holds_them(self) -> None:
        a = self.order.run("alice", self.steps.action("a1"))
        b = self.order.run("bob", self.steps.action("b1"))
        bulk = self.order.run_all(["alice", "bob", "carol"], self.steps.action("bulk"))
        after = self.order.run("carol", self.steps.action("c1"))
        self.steps.finish("a1")
        self.assertEqual(self.steps.started, ["a1", "b1"], "the bulk write waits for bob too")
        self.steps.finish("b1")
        self.assertEqual(self.steps.started, ["a1", "b1", "bulk"])
        self.steps.finish("bulk")
        self.assertEqual(self.steps.started, ["a1", "b1", "bulk", "c1"])
        self.steps.finish("c1")
        for d, name in ((a, "a1"), (b, "b1"), (bulk, "bulk"), (after, "c1")):
            self.assertEqual(self.successResultOf(d), name)
        self.assertFalse(any(self.order.busy(u) for u in ("alice", "bob", "carol")))

    def test_bulk_without_users_runs_at_once(self) -> None:
        self.order.run("alice", self.steps.action("a1"))
        self.order.run_all([], self.steps.action("empty"))
        self.assertEqual(self.steps.started, ["a1", "empty"])
