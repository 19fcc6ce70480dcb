"""Sorting of `dyndns status` rows (the CLI itself runs as a subprocess in tests/integration)."""

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.cli import _sorted_rows


def row(user: str, ipv4: str = "", updated: str = "") -> dict[str, str]:
    return {"user": user, "state": "", "ipv4": ipv4, "ipv6": "", "updated": updated, "method": ""}


class SortTests(SynchronousTestCase):
    def test_addresses_sort_numerically(self) -> None:
        rows = [row("a", "10.0.0.1"), row("b", "9.9.9.9"), row("c"), row("d", "192.0.2.1")]
        self.assertEqual([r["user"] for r in _sorted_rows(rows, "ipv4", False)], ["b", "a", "d", "c"])

    def test_empty_values_last_even_reversed(self) -> None:
        rows = [row("a", updated="2024"), row("b"), row("c", updated="2025")]
        self.assertEqual([r["user"] for r in _sorted_rows(rows, "updated", True)], ["c", "a", "b"])
