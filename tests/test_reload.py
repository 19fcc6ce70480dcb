"""Which configuration keys a reload (SIGHUP) applies live, and which wait for a restart."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.config import Settings, settings_from_dict
from dyndns_plugin.reload import changed_keys, config_keys, is_live, live_part

SUFFIX = "dyn.example.org"


def settings(**tables: dict[str, object]) -> Settings:
    document: dict[str, object] = {"http": {"listen": ["tcp:8080"]}, **tables}
    document["service"] = {"suffix": SUFFIX, **tables.get("service", {})}
    return settings_from_dict(document)


class ConfigKeysTests(SynchronousTestCase):
    def test_keys_as_the_file_names_them(self) -> None:
        """Keys are those of the TOML file, not of the Python settings."""
        keys = config_keys(settings())
        for key in ("service.suffix", "store.path", "dns.listen", "dns.rrl.slip", "dns.cookies.secret"):
            self.assertIn(key, keys)
        self.assertIn("http.methods.gnudip", keys)
        self.assertIn("limits.lockout", keys)
        self.assertNotIn("path", keys)
        self.assertNotIn("dns_protection.rrl.slip", keys)

    def test_changed_and_live(self) -> None:
        """
        A limit and an RRL value apply live, the check-gate sizes and the
        suffix do not; min/max TTL only while default_ttl stays.
        """
        old = settings()
        new = settings(
            service={"suffix": "dyn.example.net", "max_ttl": 600},
            limits={"lockout": 120.0, "source_checks": 3},
            dns={"rrl": {"slip": 3}},
        )
        changed = changed_keys(old, new)
        # The name server and hostmaster defaults follow the suffix.
        restart = ["dns.hostmaster", "dns.nameservers", "limits.source_checks", "service.suffix"]
        self.assertEqual(changed, sorted(restart + ["dns.rrl.slip", "limits.lockout", "service.max_ttl"]))
        live = [k for k in changed if is_live(k, old, new)]
        self.assertEqual(live, ["dns.rrl.slip", "limits.lockout", "service.max_ttl"])
        applied = live_part(old, new)
        self.assertEqual(changed_keys(applied, new), restart)
        self.assertEqual(applied.suffix, "dyn.example.org")
        new_default = settings(service={"default_ttl": 60, "max_ttl": 600})
        self.assertFalse(is_live("service.max_ttl", old, new_default))
        self.assertEqual(changed_keys(live_part(old, new_default), old), [])
