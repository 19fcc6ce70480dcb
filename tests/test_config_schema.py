"""
The configuration schema is the one source of every key's default: the
parser reads exactly its keys with its defaults, and C{dyndns init} and
docs/configuration.md are rendered from it and current.
"""

from __future__ import annotations

import os
import re
import tomllib

import attrs
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin import config_schema
from dyndns_plugin.config import EMBEDDED_DEFAULT, ConfigError, default_settings, settings_from_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: A configuration that reaches the keys inside arrays of tables too.
WITH_ARRAYS = {
    "dns": {
        "zones": [
            {
                "origin": "example.org",
                "file": "example.org.zone",
                "update_keys": [{"name": "dhcp", "secret": "c2VjcmV0c2VjcmV0c2VjcmV0"}],
            }
        ],
        "transfer": {"keys": [{"name": "xfr", "secret": "c2VjcmV0c2VjcmV0c2VjcmV0"}]},
    }
}


class SchemaTests(SynchronousTestCase):
    def test_parser_reads_every_schema_key(self) -> None:
        seen: set[str] = set()
        settings_from_dict(WITH_ARRAYS, seen=seen)
        documented = {key.path for key in config_schema.KEYS}
        self.assertEqual(documented - seen, set(), "keys in the schema the parser never reads")
        arrays = {t.path for t in config_schema.TABLES if t.kind == "array"}
        self.assertEqual(seen - documented - arrays, set(), "keys the parser reads that the schema lacks")

    def test_schema_defaults_are_the_parsers(self) -> None:
        """Every plain default, written out, gives the settings of an empty file."""
        state = os.path.abspath(self.mktemp())
        written: dict[str, dict] = {}
        for key in config_schema.KEYS:
            if key.default is config_schema.UNSET or key.default is config_schema.COMPUTED:
                continue
            if key.path == "admin.listen":  # given explicitly, it needs credentials (test_admin_listener...)
                continue
            if key.table in {t.path for t in config_schema.TABLES if t.kind == "array"}:
                continue
            table = written
            for part in key.table.split("."):
                table = table.setdefault(part, {})
            table[key.name] = key.default
        self.assertEqual(
            settings_from_dict(written, "same.toml", state_dir=state),
            settings_from_dict({}, "same.toml", state_dir=state),
        )

    def test_init_config_uncommented_is_the_default(self) -> None:
        """dyndns init's file parses; with every commented default uncommented it means the same."""
        text = config_schema.init_config()
        state = os.path.abspath(self.mktemp())
        default = settings_from_dict({}, "init.toml", state_dir=state)
        self.assertEqual(settings_from_dict(tomllib.loads(text), "init.toml", state_dir=state), default)
        self.assertEqual(attrs.evolve(default, path=EMBEDDED_DEFAULT), default_settings(state))
        uncommented = []
        in_array = False
        for line in text.splitlines():
            if line.startswith("# [[") or line.startswith("# [dns.glue]") or line.startswith("# [admin.users]"):
                in_array = True
                continue
            if line.startswith("["):
                in_array = False
            match = re.fullmatch(r"# (\w+) = (.*)", line)
            explicit_admin = match is not None and match.group(1) == "listen" and "8053" in match.group(2)
            if (
                match
                and not in_array
                and not explicit_admin
                and "<" not in match.group(2)
                and not match.group(2).startswith("(")
            ):
                line = f"{match.group(1)} = {match.group(2)}"
            uncommented.append(line)
        parsed = tomllib.loads("\n".join(uncommented))
        self.assertGreater(sum(len(v) for v in parsed.values() if isinstance(v, dict)), 60)
        self.assertEqual(settings_from_dict(parsed, "init.toml", state_dir=state), default)

    def test_every_key_has_a_why(self) -> None:
        for key in config_schema.KEYS:
            self.assertTrue(key.why.strip(), key.path)
            self.assertIn(key.table, {t.path for t in config_schema.TABLES}, key.path)

    def test_reference_is_current(self) -> None:
        with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
            current = f.read()
        self.assertEqual(
            current,
            config_schema.reference_markdown(),
            "docs/configuration.md is stale: python -m dyndns_plugin.config_reference > docs/configuration.md",
        )

    def test_misspelt_keys_get_a_suggestion(self) -> None:
        cases = [
            ({"dns": {"rrl": {"slipp": 1}}}, "dns.rrl.slipp", "did you mean 'slip'?"),
            ({"servce": {}}, "servce", "did you mean 'service'?"),
            ({"dns": {"zones": [{"origin": "a.b", "file": "f", "fil": 1}]}}, "dns.zones[0].fil", "'file'"),
            ({"limits": {"zzz": 1}}, "limits.zzz", "unknown key"),
        ]
        for data, key, problem in cases:
            error = self.assertRaises(ConfigError, settings_from_dict, data, "x.toml")
            self.assertEqual(error.key, key)
            self.assertIn(problem, error.problem)
        error = self.assertRaises(ConfigError, settings_from_dict, {"limits": {"zzz": 1}}, "x.toml")
        self.assertNotIn("did you mean", str(error))

    def test_admin_listener_waits_for_credentials(self) -> None:
        """The default admin endpoint is off without credentials; an explicit one is an error."""
        self.assertEqual(settings_from_dict({}).admin.listen, ())
        tokens = {"tokens": ["sha256:" + "0" * 64]}
        self.assertEqual(settings_from_dict({"admin": tokens}).admin.listen, ("tcp:8053:interface=127.0.0.1",))
        error = self.assertRaises(ConfigError, settings_from_dict, {"admin": {"listen": ["tcp:9:interface=::1"]}})
        self.assertEqual(error.key, "admin.listen")

    def test_state_directory_holds_what_has_no_path(self) -> None:
        state = os.path.abspath(self.mktemp())
        settings = settings_from_dict({}, "/etc/dyndns/dyndns.toml", state_dir=state)
        self.assertEqual(settings.store_path, os.path.join(state, "dyndns.sqlite"))
        self.assertEqual(settings.gnudip.http_key_file, os.path.join(state, "gnudip-http.key"))
        self.assertEqual(settings.state_directory, state)
