"""The TOML configuration: defaults, relative paths, and errors naming file and key."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.config import ConfigError, load_settings, parse_listen, settings_from_dict

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "dyndns.toml")


class ConfigTests(SynchronousTestCase):
    def write(self, text: str) -> str:
        folder = self.mktemp()
        os.makedirs(folder)
        path = os.path.join(folder, "dyndns.toml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def assertConfigError(self, text: str, key: str, words: str) -> ConfigError:
        path = self.write(text)
        error = self.assertRaises(ConfigError, load_settings, path)
        self.assertEqual(error.key, key)
        self.assertIn(words, error.problem)
        self.assertTrue(str(error).startswith(f"{path}: {key}: "), str(error))
        return error

    def test_example_config(self) -> None:
        """The shipped example loads and uses the documented addresses."""
        settings = load_settings(EXAMPLE)
        self.assertEqual(settings.suffix, "dyn.example.com")
        self.assertEqual(settings.dns.listen, (("127.0.0.1", 5353),))
        self.assertEqual(
            settings.store_path,
            os.path.join(os.path.dirname(os.path.abspath(EXAMPLE)), "dyndns.sqlite"),
        )

    def test_minimal_and_relative_paths(self) -> None:
        """Only the suffix is required; paths are relative to the config's folder."""
        path = self.write(
            '[service]\nsuffix = "Dyn.Example.COM."\n'
            '[[dns.zones]]\norigin = "example.org"\nfile = "zones/example.org.zone"\n'
        )
        settings = load_settings(path)
        folder = os.path.dirname(os.path.abspath(path))
        self.assertEqual(settings.suffix, "dyn.example.com")
        self.assertEqual(settings.store_path, os.path.join(folder, "dyndns.sqlite"))
        self.assertEqual(settings.dns.zones[0].file, os.path.join(folder, "zones/example.org.zone"))
        self.assertEqual(settings.dns.nameservers, ("ns1.dyn.example.com",))
        self.assertEqual(settings.dns.hostmaster, "hostmaster.dyn.example.com")

    def test_errors_name_the_key(self) -> None:
        self.assertConfigError("", "service.suffix", "required")
        self.assertConfigError('[service]\nsuffix = "com"\n', "service.suffix", "two labels")
        self.assertConfigError('[service]\nsuffix = "a..b"\n', "service.suffix", "empty label")
        self.assertConfigError('[service]\nsuffix = "a.b"\nsufix = 1\n', "service.sufix", "unknown key")
        self.assertConfigError('[service]\nsuffix = "a.b"\n[dns]\nlisten = ["nohost"]\n', "dns.listen", "HOST:PORT")
        self.assertConfigError('[service]\nsuffix = "a.b"\n[dns]\nlisten = ["1.2.3:53"]\n', "dns.listen", "")
        self.assertConfigError('[service]\nsuffix = "a.b"\n[dns]\nlisten = "127.0.0.1:53"\n', "dns.listen", "must be a list")
        self.assertConfigError('[service]\nsuffix = "a.b"\ndefault_ttl = "30"\n', "service.default_ttl", "must be a whole number")
        self.assertConfigError('[service]\nsuffix = "a.b"\nmin_ttl = 60\ndefault_ttl = 30\n', "service.default_ttl", "min_ttl")
        self.assertConfigError('[service]\nsuffix = "a.b"\n[store]\nbackend = "mysql"\n', "store.backend", "mysql")
        self.assertConfigError('[service]\nsuffix = "a.b"\n[dns.glue]\n"ns.other.org" = ["127.0.0.1"]\n', "dns.glue.ns.other.org", "only for names under")
        self.assertConfigError('[service]\nsuffix = "a.b"\n[[dns.zones]]\nfile = "x"\n', "dns.zones[0].origin", "required")
        self.assertConfigError('[service\n', "(syntax)", "")

    def test_missing_file(self) -> None:
        error = self.assertRaises(ConfigError, load_settings, "/nonexistent/dyndns.toml")
        self.assertIn("/nonexistent/dyndns.toml", str(error))

    def test_listen_forms(self) -> None:
        self.assertEqual(parse_listen("[::1]:53"), ("::1", 53))
        self.assertEqual(parse_listen(":53"), ("", 53))
        self.assertRaises(ValueError, parse_listen, "127.0.0.1:70000")
        self.assertRaises(ValueError, parse_listen, "example.org:53")

    def test_dict_input(self) -> None:
        settings = settings_from_dict({"service": {"suffix": "d.example.org", "max_ttl": 600}})
        self.assertEqual(settings.max_ttl, 600)
