"""
The shared authentication step: locked-out sources are refused before the
checker runs, suspects share a small part of the hash pool, outcomes and
counting, and the service's change limit.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.trial import unittest

from dyndns_plugin.auth import DisabledUser
from dyndns_plugin.authn import (
    Authenticator,
    ClientUpdate,
    GnuDIPHash,
    Outcome,
    Password,
    Proven,
    UpdateOutcome,
)
from dyndns_plugin.limits import LimitSettings
from dyndns_plugin.methods import CLIENT_METHODS, Method, is_client_method
from dyndns_plugin.model import UpdateStatus, User
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.memory import MemoryUserStore


class SlowChecker:
    """A checker whose answers the test gives: every check waits in C{pending}."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, str, defer.Deferred[str]]] = []

    def check(self, user_id: str, password: str) -> defer.Deferred[str]:
        d: defer.Deferred[str] = defer.Deferred()
        self.pending.append((user_id, password, d))
        return d

    def check_gnudip(self, user_id: str, salt: str, client_hash: str) -> defer.Deferred[str]:
        return self.check(user_id, client_hash)

    def answer_all(self) -> None:
        """Answer every pending check, and those they let start."""
        while self.pending:
            self.answer_one()

    def answer_one(self) -> None:
        """Answer the oldest pending check: right for password "right"."""
        user_id, password, d = self.pending.pop(0)
        if True:
            if password == "right":
                d.callback(user_id)
            elif password == "disabled":
                d.errback(DisabledUser("disabled"))
            else:
                d.errback(UnauthorizedLogin("wrong"))


class AuthenticatorTestCase(unittest.TestCase):
    settings = LimitSettings()

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.service = DynDNSService(
            MemoryUserStore(),
            "dyn.example.com",
            clock=self.clock,
            poll_interval=None,
            limits=self.settings,
        )
        self.service.registry.put_user(User("alice"))
        self.checker = SlowChecker()
        self.auth = Authenticator(self.checker, self.service)
        self.failures: list[str] = []
        self.locked: list[str] = []
        self.service.on_auth_failure.append(self.failures.append)
        self.service.on_auth_locked.append(self.locked.append)

    def attempt(self, password: str, source: str = "198.51.100.7") -> defer.Deferred:
        return defer.ensureDeferred(self.auth.password("dyndns2", "alice", password, source))


class OutcomeTests(AuthenticatorTestCase):
    def test_outcomes(self) -> None:
        results = [self.attempt(p) for p in ("right", "wrong", "disabled")]
        self.checker.answer_all()
        ok, bad, disabled = (self.successResultOf(d) for d in results)
        self.assertEqual((ok.outcome, ok.user_id), (Outcome.OK, "alice"))
        self.assertEqual(bad.outcome, Outcome.BAD)
        self.assertEqual(disabled.outcome, Outcome.DISABLED)
        self.assertEqual(self.failures, ["dyndns2"])  # a disabled user is no guess

    def test_locked_source_is_refused_before_the_checker(self) -> None:
        """Ten wrong passwords; the eleventh attempt never reaches the checker."""
        for _ in range(10):
            d = self.attempt("wrong")
            self.checker.answer_all()
            self.assertEqual(self.successResultOf(d).outcome, Outcome.BAD)
        pending = self.attempt("right")
        self.clock.advance(0.9)
        self.assertNoResult(pending)  # the refusal comes after refusal_delay (1 s)
        self.clock.advance(0.1)
        result = self.successResultOf(pending)
        self.assertEqual(result.outcome, Outcome.LOCKED)
        self.assertEqual(result.retry_after, 59)  # counted from the answer
        self.assertEqual(result.retry_header(), b"59")
        self.assertEqual(self.checker.pending, [])
        self.assertEqual(self.locked, ["dyndns2"])
        # Another source is not affected, and the lock lifts.
        other = self.attempt("right", "198.51.100.8")
        self.checker.answer_all()
        self.assertTrue(self.successResultOf(other).ok)
        self.clock.advance(59)
        again = self.attempt("right")
        self.checker.answer_all()
        self.assertTrue(self.successResultOf(again).ok)


class FairShareTests(AuthenticatorTestCase):
    settings = LimitSettings(source_checks=2, suspect_checks=1, source_queue=2)

    def test_suspects_run_one_at_a_time_honest_sources_go_straight_through(self) -> None:
        """
        Once two sources have failed, their checks run one at a time (all
        suspects together); a source with no failures is checked at once.
        """
        for source in ("198.51.100.1", "198.51.100.2"):
            d = self.attempt("wrong", source)
            self.checker.answer_all()
            self.successResultOf(d)
        first = self.attempt("wrong", "198.51.100.1")
        second = self.attempt("wrong", "198.51.100.2")
        self.assertEqual(len(self.checker.pending), 1)
        honest = self.attempt("right", "203.0.113.5")
        self.assertEqual(len(self.checker.pending), 2)
        # The honest check is answered while the second suspect still waits.
        _, _, honest_check = self.checker.pending.pop()
        honest_check.callback("alice")
        self.assertTrue(self.successResultOf(honest).ok)
        self.assertNoResult(second)
        self.checker.answer_one()  # the first suspect; the second starts
        self.successResultOf(first)
        self.assertEqual(len(self.checker.pending), 1)
        self.checker.answer_all()
        self.assertEqual(self.successResultOf(second).outcome, Outcome.BAD)

    def test_one_source_holds_at_most_two_checks(self) -> None:
        """
        A source without failures sending five checks at once: two run, two
        wait, the fifth is told to retry; another source is not held up.
        """
        attempts = [self.attempt("wrong", "198.51.100.1") for _ in range(4)]
        fifth = self.attempt("wrong", "198.51.100.1")
        self.clock.advance(1)
        refused = self.successResultOf(fifth)
        self.assertEqual((refused.outcome, refused.retry_header()), (Outcome.LOCKED, b"1"))
        self.assertEqual(len(self.checker.pending), 2)
        honest = self.attempt("right", "203.0.113.5")
        self.assertEqual(len(self.checker.pending), 3)
        _, _, honest_check = self.checker.pending.pop()
        honest_check.callback("alice")
        self.assertTrue(self.successResultOf(honest).ok)
        self.checker.answer_all()
        for d in attempts:
            self.assertEqual(self.successResultOf(d).outcome, Outcome.BAD)
        self.assertEqual(self.auth.gate.busy(), {"running": 0, "suspects": 0, "waiting": 0})

    def test_a_full_queue_is_told_to_retry(self) -> None:
        """Beyond source_queue waiting checks per source: LOCKED, retry in a second, no hash."""
        d = self.attempt("wrong")
        self.checker.answer_all()
        self.successResultOf(d)
        running = self.attempt("wrong")
        waiting = [self.attempt("wrong"), self.attempt("wrong")]
        fourth = self.attempt("right")
        self.clock.advance(1)
        refused = self.successResultOf(fourth)
        self.assertEqual((refused.outcome, refused.retry_header()), (Outcome.LOCKED, b"1"))
        self.assertEqual(len(self.checker.pending), 1)
        for _ in range(3):
            self.checker.answer_all()
        for d in [running, *waiting]:
            self.assertEqual(self.successResultOf(d).outcome, Outcome.BAD)

    def test_waiting_checks_of_a_source_locked_meanwhile_are_refused(self) -> None:
        """Checks queued behind the one that locks the source never run."""
        for _ in range(9):
            d = self.attempt("wrong")
            self.checker.answer_all()
            self.successResultOf(d)
        tenth = self.attempt("wrong")
        queued = self.attempt("right")
        self.checker.answer_all()
        self.assertEqual(self.successResultOf(tenth).outcome, Outcome.BAD)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(queued).outcome, Outcome.LOCKED)
        self.assertEqual(self.checker.pending, [])


class ChangeLimitTests(unittest.TestCase):
    """The service refuses a client's change over the limit; nochg and admins are not limited."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.store = MemoryUserStore()
        self.service = DynDNSService(
            self.store,
            "dyn.example.com",
            clock=self.clock,
            poll_interval=None,
            limits=LimitSettings(update_changes=2, change_window=600),
        )
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.successResultOf(self.service.add_user(User("alice")))

    def update(self, address: str, method: str = "dyndns2") -> UpdateStatus:
        result = self.successResultOf(self.service.update("alice", [ipaddress.ip_address(address)], None, method))
        return result.status

    def test_limit(self) -> None:
        self.assertEqual(self.update("192.0.2.1"), UpdateStatus.GOOD)
        self.assertEqual(self.update("192.0.2.1"), UpdateStatus.NOCHG)
        self.assertEqual(self.update("192.0.2.2"), UpdateStatus.GOOD)
        self.assertEqual(self.update("192.0.2.2"), UpdateStatus.NOCHG)  # nochg still answered
        result = self.successResultOf(
            self.service.update("alice", [ipaddress.ip_address("192.0.2.3")], None, "gnudip-tcp")
        )
        self.assertEqual(result.status, UpdateStatus.RATE_LIMITED)
        self.assertEqual(result.retry_after, 600)
        offline = self.successResultOf(self.service.set_offline("alice", "http-url"))
        self.assertEqual(offline.status, UpdateStatus.RATE_LIMITED)
        # The last good address stays served, in memory and in the store.
        answer = self.service.registry.answer("alice.dyn.example.com")
        assert answer is not None
        self.assertEqual([str(a) for a in answer.addresses], ["192.0.2.2"])
        self.assertEqual(str(self.store._states["alice"].ipv4), "192.0.2.2")
        # The CLI and the admin API are not limited.
        self.assertEqual(self.update("192.0.2.4", "cli"), UpdateStatus.GOOD)
        self.clock.advance(600)
        self.assertEqual(self.update("192.0.2.5"), UpdateStatus.GOOD)


class SeamTests(unittest.TestCase):
    """
    L{Authenticator.update}: one L{ClientUpdate} is authenticated, its names
    checked against the user's own, and written through the service.
    """

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.service = DynDNSService(
            MemoryUserStore(),
            "dyn.example.com",
            clock=self.clock,
            poll_interval=None,
        )
        self.successResultOf(defer.ensureDeferred(self.service.start()))
        self.successResultOf(self.service.add_user(User("alice", hostnames=["alice.example.org"])))
        self.checker = SlowChecker()
        self.auth = Authenticator(self.checker, self.service)
        self.failures: list[str] = []
        self.service.on_auth_failure.append(self.failures.append)

    def run_update(self, request: ClientUpdate) -> UpdateOutcome:
        d = defer.ensureDeferred(self.auth.update(request))
        self.checker.answer_all()
        return self.successResultOf(d)

    def request(self, **fields) -> ClientUpdate:  # type: ignore[no-untyped-def]
        values: dict[str, Any] = dict(
            method=Method.DYNDNS2,
            user_id="alice",
            credential=Password("right"),
            source="198.51.100.7",
            addresses=(ipaddress.ip_address("192.0.2.1"),),
        )
        values.update(fields)
        return ClientUpdate(**values)

    def test_method_names_unchanged(self) -> None:
        """The enum's values are the names logs, stored states and metrics always had."""
        self.assertEqual(
            [str(m) for m in CLIENT_METHODS],
            [
                "http-url",
                "http-basic",
                "dyndns2",
                "gnudip-tcp",
                "gnudip-http",
                "dns-update",
                "acme-dns",
                "acme-httpreq",
            ],
        )
        self.assertEqual((Method.ADMIN, Method.CLI), ("admin", "cli"))
        self.assertTrue(is_client_method("dyndns2"))
        self.assertFalse(is_client_method(Method.ADMIN))

    def test_update_writes_with_the_method(self) -> None:
        outcome = self.run_update(self.request())
        self.assertTrue(outcome.auth.ok)
        assert outcome.result is not None
        self.assertEqual(outcome.result.status, UpdateStatus.GOOD)
        state = self.service.registry.state("alice")
        assert state is not None
        self.assertEqual((state.method, state.client_address), ("dyndns2", "198.51.100.7"))

    def test_wrong_password_writes_nothing(self) -> None:
        outcome = self.run_update(self.request(credential=Password("wrong")))
        self.assertEqual((outcome.auth.outcome, outcome.result), (Outcome.BAD, None))
        self.assertEqual(self.failures, ["dyndns2"])
        self.assertIsNone(self.service.registry.state("alice"))

    def test_foreign_names(self) -> None:
        """Names that are not the user's are reported; with none of its own, nothing is written."""
        outcome = self.run_update(self.request(names=("bob.dyn.example.com", "alice.example.org")))
        self.assertEqual(outcome.foreign, {"bob.dyn.example.com"})
        assert outcome.result is not None
        self.assertEqual(outcome.result.status, UpdateStatus.GOOD)
        outcome = self.run_update(
            self.request(
                names=("bob.dyn.example.com",),
                addresses=(ipaddress.ip_address("192.0.2.2"),),
            )
        )
        self.assertEqual((outcome.foreign, outcome.result), ({"bob.dyn.example.com"}, None))
        self.assertEqual(
            self.service.registry.answer("alice.dyn.example.com").addresses,  # type: ignore[union-attr]
            (ipaddress.ip_address("192.0.2.1"),),
        )

    def test_gnudip_hash_goes_to_check_gnudip(self) -> None:
        outcome = self.run_update(self.request(method=Method.GNUDIP_TCP, credential=GnuDIPHash("salt", "right")))
        self.assertTrue(outcome.auth.ok)
        self.assertEqual(self.service.registry.state("alice").method, "gnudip-tcp")  # type: ignore[union-attr]

    def test_proven_exact_and_offline(self) -> None:
        """A proven credential is not checked again; exact sets both families; offline goes offline."""
        both = (ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("2001:db8::1"))
        self.run_update(self.request(addresses=both))
        outcome = self.run_update(
            self.request(
                method=Method.DNS_UPDATE,
                credential=Proven(),
                exact=True,
                ttl=60,
                addresses=(ipaddress.ip_address("2001:db8::2"),),
            )
        )
        self.assertEqual(self.checker.pending, [])
        assert outcome.result is not None
        self.assertEqual(outcome.result.status, UpdateStatus.GOOD)
        state = self.service.registry.state("alice")
        assert state is not None
        self.assertEqual((state.ipv4, str(state.ipv6), state.ttl), (None, "2001:db8::2", 60))
        self.run_update(self.request(offline=True))
        self.assertTrue(self.service.registry.state("alice").offline)  # type: ignore[union-attr]
