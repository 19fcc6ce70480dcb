"""
The audit trail: the service's writes give one event each with the state
before and after, refusals at the seam give sampled events, and a flood of
wrong passwords costs far fewer lines than attempts but reports its count.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet import defer, task
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from dyndns_plugin.acme import Op, TXTEdit
from dyndns_plugin.audit import SAMPLED_BURST, SAMPLED_INTERVAL
from dyndns_plugin.authn import Authenticator
from dyndns_plugin.limits import LimitSettings
from dyndns_plugin.model import User
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.memory import MemoryUserStore
from tests.test_authn import SlowChecker


class AuditTestCase(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.service = DynDNSService(
            MemoryUserStore(),
            "dyn.example.com",
            clock=self.clock,
            poll_interval=None,
            # No lockout: every attempt of the flood reaches the checker.
            limits=LimitSettings(enabled=False, refusal_delay=0),
        )
        self.successResultOf(defer.ensureDeferred(self.service.start()))
        self.successResultOf(self.service.add_user(User("alice")))
        self.events: list[dict[str, Any]] = []
        observer: Any = self.events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def audit(self, kind: str = "update") -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("audit") == kind]


class WriteAuditTests(AuditTestCase):
    def update(self, address: str, source: str = "192.0.2.200") -> None:
        self.successResultOf(self.service.update("alice", [ipaddress.ip_address(address)], None, "dyndns2", source))

    def test_good_nochg_offline(self) -> None:
        """Each write: its result, the source, and the addresses before and after."""
        self.update("192.0.2.1")
        self.update("192.0.2.2")
        self.update("192.0.2.2")
        self.successResultOf(self.service.set_offline("alice", "admin"))
        fields = [
            (e["method"], e["source"], e["result"], e["old_state"], e["old_ipv4"], e["new_state"], e["new_ipv4"])
            for e in self.audit()
        ]
        self.assertEqual(
            fields,
            [
                ("dyndns2", "192.0.2.200", "good", "never", None, "online", "192.0.2.1"),
                ("dyndns2", "192.0.2.200", "good", "online", "192.0.2.1", "online", "192.0.2.2"),
                ("dyndns2", "192.0.2.200", "nochg", "online", "192.0.2.2", "online", "192.0.2.2"),
                ("admin", None, "good", "online", "192.0.2.2", "offline", None),
            ],
        )
        self.assertIn(
            "audit: dyndns2 update of alice from 192.0.2.200: good (192.0.2.1 -> 192.0.2.2)",
            [formatEvent(e) for e in self.events],
        )

    def test_challenge_values(self) -> None:
        """An ACME challenge edit says how many values the user holds before and after; address events keep their form."""
        self.update("192.0.2.1")
        name = "alice.dyn.example.com"
        self.successResultOf(self.service.edit_txt("alice", [TXTEdit(Op.ADD, name, "v1")], "acme-dns", "192.0.2.9"))
        self.successResultOf(self.service.edit_txt("alice", [TXTEdit(Op.CLEAR, name)], "dns-update", "192.0.2.9"))
        first, added, cleared = self.audit()
        self.assertNotIn("new_txt", first)
        self.assertEqual((added["method"], added["old_txt"], added["new_txt"]), ("acme-dns", 0, 1))
        self.assertEqual((cleared["old_txt"], cleared["new_txt"]), (1, 0))
        self.assertIn(
            "audit: acme-dns update of alice from 192.0.2.9: good (192.0.2.1 -> 192.0.2.1, 1 TXT)",
            [formatEvent(e) for e in self.events],
        )

    def test_unknown_user(self) -> None:
        d = self.service.update("nobody", [ipaddress.ip_address("192.0.2.1")], None, "cli")
        self.successResultOf(d)
        (event,) = self.audit()
        self.assertEqual((event["user"], event["result"], event["reason"]), ("nobody", "nohost", "unknown user"))


class FloodTests(AuditTestCase):
    def test_wrong_password_flood_is_sampled_with_a_count(self) -> None:
        """
        500 wrong passwords in one interval: SAMPLED_BURST audit lines, then,
        when the interval ends (with no further attempt), one line that
        counts the rest.
        """
        checker = SlowChecker()
        auth = Authenticator(checker, self.service)
        flood = 500
        for _ in range(flood):
            d = defer.ensureDeferred(auth.password("dyndns2", "alice", "wrong", "203.0.113.9"))
            checker.answer_all()
            self.assertFalse(self.successResultOf(d).ok)
        refused = [e for e in self.audit() if e["result"] == "badauth"]
        self.assertEqual(len(refused), SAMPLED_BURST)
        self.assertEqual(refused[0]["source"], "203.0.113.9")
        self.assertEqual(self.audit("dropped"), [])
        self.clock.advance(SAMPLED_INTERVAL)
        (summary,) = self.audit("dropped")
        self.assertEqual((summary["kind"], summary["dropped"]), ("audit-badauth", flood - SAMPLED_BURST))
        self.assertLess(len(self.events), flood // 10)
        # The next interval logs again.
        d = defer.ensureDeferred(auth.password("dyndns2", "alice", "wrong", "203.0.113.9"))
        checker.answer_all()
        self.successResultOf(d)
        self.assertEqual(len([e for e in self.audit() if e["result"] == "badauth"]), SAMPLED_BURST + 1)
