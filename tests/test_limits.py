"""
The limiter on a task.Clock: lockout thresholds, backoff, grouping of
sources, users locked by distributed guessing, change limits, bounded tables.
"""

from __future__ import annotations

from twisted.internet import task
from twisted.trial import unittest

from dyndns_plugin.limits import Limiter, LimitSettings


def limiter(**settings: object) -> tuple[Limiter, task.Clock]:
    clock = task.Clock()
    clock.advance(1_000_000)
    return Limiter(clock, LimitSettings(**settings)), clock  # type: ignore[arg-type]


class SourceLockoutTests(unittest.SynchronousTestCase):
    def test_locked_after_ten_failures_for_sixty_seconds(self) -> None:
        """Nine failures leave the source free; the tenth locks it for 60 s."""
        limits, clock = limiter()
        for _ in range(9):
            limits.failed("198.51.100.7", "alice")
        self.assertIsNone(limits.locked("198.51.100.7", "alice"))
        limits.failed("198.51.100.7", "alice")
        self.assertEqual(limits.locked("198.51.100.7", "alice"), 60)
        self.assertEqual(limits.locked("198.51.100.7", None), 60)
        self.assertIsNone(limits.locked("198.51.100.8", "alice"))
        clock.advance(59)
        self.assertEqual(limits.locked("198.51.100.7", "bob"), 1)
        clock.advance(1)
        self.assertIsNone(limits.locked("198.51.100.7", "alice"))

    def test_backoff_doubles_up_to_the_maximum(self) -> None:
        """After a lock, each further failure locks again for twice as long, at most an hour."""
        limits, clock = limiter()
        for _ in range(10):
            limits.failed("198.51.100.7", None)
        expected = [120, 240, 480, 960, 1920, 3600, 3600]
        for duration in expected:
            wait = limits.locked("198.51.100.7", None)
            assert wait is not None
            clock.advance(wait)
            self.assertIsNone(limits.locked("198.51.100.7", None))
            limits.failed("198.51.100.7", None)
            self.assertEqual(limits.locked("198.51.100.7", None), duration)

    def test_failures_during_a_lock_do_not_extend_it(self) -> None:
        """Checks that were running when the lock began do not push it further."""
        limits, clock = limiter()
        for _ in range(10):
            limits.failed("198.51.100.7", None)
        clock.advance(30)
        limits.failed("198.51.100.7", None)
        self.assertEqual(limits.locked("198.51.100.7", None), 30)

    def test_window_forgets_old_failures(self) -> None:
        """Nine failures, then a quiet window: nine more do not lock."""
        limits, clock = limiter()
        for _ in range(9):
            limits.failed("198.51.100.7", None)
        clock.advance(601)
        for _ in range(9):
            limits.failed("198.51.100.7", None)
        self.assertIsNone(limits.locked("198.51.100.7", None))
        self.assertFalse(limits.suspect("198.51.100.8"))
        self.assertTrue(limits.suspect("198.51.100.7"))

    def test_success_forgives_the_source(self) -> None:
        """A correct password clears the source's count."""
        limits, _ = limiter()
        for _ in range(9):
            limits.failed("198.51.100.7", "alice")
        limits.succeeded("198.51.100.7", "alice")
        self.assertFalse(limits.suspect("198.51.100.7"))
        for _ in range(9):
            limits.failed("198.51.100.7", "alice")
        self.assertIsNone(limits.locked("198.51.100.7", "alice"))

    def test_ipv6_counts_per_64(self) -> None:
        """Addresses of one /64 share a count; another /64 does not."""
        limits, _ = limiter()
        for i in range(10):
            limits.failed(f"2001:db8:1:2::{i + 1:x}", None)
        self.assertIsNotNone(limits.locked("2001:db8:1:2:ffff::1", None))
        self.assertIsNone(limits.locked("2001:db8:1:3::1", None))

    def test_ipv4_mapped_is_the_ipv4_source(self) -> None:
        limits, _ = limiter()
        for _ in range(10):
            limits.failed("::ffff:198.51.100.7", None)
        self.assertIsNotNone(limits.locked("198.51.100.7", None))

    def test_configured_prefixes(self) -> None:
        """ipv4_prefix = 24 groups a whole /24."""
        limits, _ = limiter(ipv4_prefix=24)
        for i in range(10):
            limits.failed(f"198.51.100.{i}", None)
        self.assertIsNotNone(limits.locked("198.51.100.200", None))
        self.assertIsNone(limits.locked("198.51.101.1", None))

    def test_exempt_and_unknown_sources_are_never_locked(self) -> None:
        limits, _ = limiter(exempt=("192.0.2.0/24",))
        for _ in range(50):
            limits.failed("192.0.2.9", None)
            limits.failed(None, None)
            limits.failed("not an address", None)
        self.assertIsNone(limits.locked("192.0.2.9", None))
        self.assertIsNone(limits.locked(None, None))
        self.assertEqual(limits.tracked()["sources"], 0)

    def test_disabled(self) -> None:
        limits, _ = limiter(enabled=False)
        for _ in range(50):
            limits.failed("198.51.100.7", "alice")
            limits.changed("alice")
        self.assertIsNone(limits.locked("198.51.100.7", "alice"))
        self.assertIsNone(limits.change_wait("alice"))


class UserLockoutTests(unittest.SynchronousTestCase):
    def test_distributed_guessing_locks_the_user_for_new_sources(self) -> None:
        """
        50 failures for alice from 50 sources lock alice for every source
        that never logged in as her; her own router's source stays free.
        """
        limits, clock = limiter()
        limits.succeeded("203.0.113.1", "alice")
        for i in range(50):
            limits.failed(f"198.51.100.{i}", "alice")
        self.assertEqual(limits.locked("198.51.100.200", "alice"), 60)
        self.assertIsNone(limits.locked("198.51.100.200", "bob"))
        self.assertIsNone(limits.locked("203.0.113.1", "alice"))
        clock.advance(60)
        self.assertIsNone(limits.locked("198.51.100.200", "alice"))

    def test_known_source_failures_do_not_count_for_the_user(self) -> None:
        """A router that logged in before and now has a wrong password does not lock its user."""
        limits, _ = limiter(source_failures=1000)
        limits.succeeded("203.0.113.1", "alice")
        for _ in range(60):
            limits.failed("203.0.113.1", "alice")
        self.assertIsNone(limits.locked("198.51.100.1", "alice"))


class BoundedTablesTests(unittest.SynchronousTestCase):
    def test_random_sources_stay_within_max_tracked(self) -> None:
        limits, _ = limiter(max_tracked=100)
        for i in range(5000):
            limits.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", f"user{i}")
            limits.succeeded(f"172.16.{i // 256 % 256}.{i % 256}", f"user{i}")
            limits.changed(f"user{i}")
        tracked = limits.tracked()
        self.assertLessEqual(max(tracked.values()), 101, tracked)


class ChangeLimitTests(unittest.SynchronousTestCase):
    def test_changes_per_window(self) -> None:
        """Three changes allowed in 100 s: the fourth waits until the first ages out."""
        limits, clock = limiter(update_changes=3, change_window=100)
        for _ in range(3):
            self.assertIsNone(limits.change_wait("alice"))
            limits.changed("alice")
            clock.advance(10)
        self.assertEqual(limits.change_wait("alice"), 70)
        self.assertIsNone(limits.change_wait("bob"))
        clock.advance(70)
        self.assertIsNone(limits.change_wait("alice"))

    def test_zero_is_unlimited(self) -> None:
        limits, _ = limiter(update_changes=0)
        for _ in range(1000):
            limits.changed("alice")
        self.assertIsNone(limits.change_wait("alice"))


class ConfigTests(unittest.SynchronousTestCase):
    """The [limits] table."""

    def load(self, limits: dict) -> LimitSettings:
        from dyndns_plugin.config import settings_from_dict

        return settings_from_dict({"service": {"suffix": "dyn.example.com"}, "limits": limits}, "/x/dyndns.toml").limits

    def test_defaults(self) -> None:
        self.assertEqual(self.load({}), LimitSettings())
        self.assertEqual(
            (
                LimitSettings().source_failures,
                LimitSettings().lockout,
                LimitSettings().max_lockout,
                LimitSettings().user_failures,
                LimitSettings().failure_window,
            ),
            (10, 60, 3600, 50, 600),
        )

    def test_values(self) -> None:
        settings = self.load(
            {
                "enabled": False,
                "source_failures": 3,
                "lockout": 5,
                "max_lockout": 50,
                "exempt": ["192.0.2.1", "2001:db8::/48"],
                "update_changes": 0,
            }
        )
        self.assertEqual(
            (
                settings.enabled,
                settings.source_failures,
                settings.lockout,
                settings.max_lockout,
                settings.exempt,
                settings.update_changes,
            ),
            (False, 3, 5.0, 50.0, ("192.0.2.1/32", "2001:db8::/48"), 0),
        )

    def test_errors_name_the_key(self) -> None:
        from dyndns_plugin.config import ConfigError

        for limits, key in (
            ({"nope": 1}, "limits.nope"),
            ({"source_failures": 0}, "limits.source_failures"),
            ({"lockout": "60"}, "limits.lockout"),
            ({"lockout": 100, "max_lockout": 10}, "limits.max_lockout"),
            ({"exempt": ["not a network"]}, "limits.exempt"),
            ({"ipv6_prefix": 129}, "limits.ipv6_prefix"),
            ({"update_changes": -1}, "limits.update_changes"),
        ):
            with self.assertRaises(ConfigError) as caught:
                self.load(limits)
            self.assertEqual(caught.exception.key, key, limits)
