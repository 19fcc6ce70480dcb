"""The TOML configuration: defaults, relative paths, and errors naming file and key."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.config import ConfigError, LogSettings, load_settings, parse_listen, settings_from_dict
from dyndns_plugin.statedir import state_directory
from tests.tools import write_test_file
from tests.typing_helpers import TestCaseMixin

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "dyndns.toml")


class ConfigFileMixin(TestCaseMixin):
    """Writing a config file for the test, and the checks of a file the loader refuses."""

    def write(self, text: str) -> str:
        return write_test_file(self, text)

    def assertConfigError(self, text: str, key: str, words: str) -> ConfigError:
        path = self.write(text)
        error = self.assertRaises(ConfigError, load_settings, path)
        self.assertEqual(error.key, key)
        self.assertIn(words, error.problem)
        self.assertTrue(str(error).startswith(f"{path}: {key}: "), str(error))
        return error


class ConfigTests(ConfigFileMixin, SynchronousTestCase):
    def test_example_config(self) -> None:
        """The shipped example loads and uses the documented addresses."""
        settings = load_settings(EXAMPLE)
        self.assertEqual(settings.suffix, "dyn.example.com")
        self.assertEqual(settings.dns.listen, (("127.0.0.1", 5300),))
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
        self.assertEqual(settings.store_path, os.path.join(state_directory(), "dyndns.sqlite"))
        self.assertEqual(settings.dns.zones[0].file, os.path.join(folder, "zones/example.org.zone"))
        self.assertEqual(settings.dns.nameservers, ("ns1.dyn.example.com",))
        self.assertEqual(settings.dns.hostmaster, "hostmaster.dyn.example.com")

    def test_relative_store_path_is_beside_the_config(self) -> None:
        path = self.write('[store]\npath = "data/users.sqlite"\n[gnudip]\nhttp_key_file = "k.key"\n')
        folder = os.path.dirname(os.path.abspath(path))
        settings = load_settings(path)
        self.assertEqual(settings.store_path, os.path.join(folder, "data/users.sqlite"))
        self.assertEqual(settings.gnudip.http_key_file, os.path.join(folder, "k.key"))

    def test_errors_name_the_key(self) -> None:
        self.assertConfigError('[service]\nsuffix = "com"\n', "service.suffix", "two labels")
        self.assertConfigError('[service]\nsuffix = "a..b"\n', "service.suffix", "empty label")
        self.assertConfigError(
            '[service]\nsuffix = "a.b"\nsufix = 1\n', "service.sufix", "unknown key (did you mean 'suffix'?)"
        )
        self.assertConfigError('[service]\nsuffix = "a.b"\n[dns]\nlisten = ["nohost"]\n', "dns.listen", "HOST:PORT")
        self.assertConfigError('[service]\nsuffix = "a.b"\n[dns]\nlisten = ["1.2.3:53"]\n', "dns.listen", "")
        self.assertConfigError(
            '[service]\nsuffix = "a.b"\n[dns]\nlisten = "127.0.0.1:53"\n', "dns.listen", "must be a list"
        )
        self.assertConfigError(
            '[service]\nsuffix = "a.b"\ndefault_ttl = "30"\n', "service.default_ttl", "must be a whole number"
        )
        self.assertConfigError(
            '[service]\nsuffix = "a.b"\nmin_ttl = 60\ndefault_ttl = 30\n', "service.default_ttl", "min_ttl"
        )
        self.assertConfigError('[service]\nsuffix = "a.b"\n[store]\nbackend = "mysql"\n', "store.backend", "mysql")
        self.assertConfigError(
            '[service]\nsuffix = "a.b"\n[dns.glue]\n"ns.other.org" = ["127.0.0.1"]\n',
            "dns.glue.ns.other.org",
            "only for names under",
        )
        self.assertConfigError(
            '[service]\nsuffix = "a.b"\n[[dns.zones]]\nfile = "x"\n', "dns.zones[0].origin", "required"
        )
        self.assertConfigError("[service\n", "(syntax)", "")

    def test_missing_file(self) -> None:
        error = self.assertRaises(ConfigError, load_settings, "/nonexistent/dyndns.toml")
        self.assertIn("/nonexistent/dyndns.toml", str(error))

    def test_listen_forms(self) -> None:
        self.assertEqual(parse_listen("[::1]:53"), ("::1", 53))
        self.assertEqual(parse_listen(":53"), ("", 53))
        self.assertRaises(ValueError, parse_listen, "127.0.0.1:70000")
        self.assertRaises(ValueError, parse_listen, "example.org:53")

    def test_listen_systemd(self) -> None:
        """
        C{"systemd:NAME"} entries of dns.listen name passed sockets; they sit
        beside HOST:PORT entries, and a NAME systemd could not give is refused.
        """
        settings = settings_from_dict(
            {"service": {"suffix": "d.example.org"}, "dns": {"listen": ["systemd:dns", "[::1]:5300", "systemd:dns6"]}}
        )
        self.assertEqual(settings.dns.listen, (("::1", 5300),))
        self.assertEqual(settings.dns.listen_systemd, ("dns", "dns6"))
        only = settings_from_dict({"service": {"suffix": "d.example.org"}, "dns": {"listen": ["systemd:dns"]}})
        self.assertEqual(only.dns.listen, ())
        for bad in ("systemd:", "systemd:a:b", "systemd:a b", "systemd:" + "x" * 256):
            self.assertConfigError(
                f'[service]\nsuffix = "a.b"\n[dns]\nlisten = ["{bad}"]\n', "dns.listen", "FileDescriptorName"
            )

    def test_dict_input(self) -> None:
        settings = settings_from_dict({"service": {"suffix": "d.example.org", "max_ttl": 600}})
        self.assertEqual(settings.max_ttl, 600)


SUFFIX_ONLY = '[service]\nsuffix = "a.b"\n'
SECRET = "c2VjcmV0IG9mIHRoZSBzZWNvbmRhcnk="


class PostgreSQLConfigTests(ConfigFileMixin, SynchronousTestCase):
    """store.backend = "postgresql" takes its connection string from store.dsn or store.dsn_file, one of them."""

    def test_dsn(self) -> None:
        dsn = "postgresql://dyndns@127.0.0.1:5432/dyndns"
        settings = load_settings(self.write(SUFFIX_ONLY + f'[store]\nbackend = "postgresql"\ndsn = "{dsn}"\n'))
        self.assertEqual((settings.store_backend, settings.store_dsn), ("postgresql", dsn))

    def test_dsn_file(self) -> None:
        """The file's first line, relative to the config's folder: a password stays out of the config."""
        path = self.write(SUFFIX_ONLY + '[store]\nbackend = "postgresql"\ndsn_file = "db.dsn"\n')
        with open(os.path.join(os.path.dirname(path), "db.dsn"), "w") as f:
            f.write("postgresql://dyndns:s3cret@db.internal/dyndns\nignored\n")
        self.assertEqual(load_settings(path).store_dsn, "postgresql://dyndns:s3cret@db.internal/dyndns")

    def test_refused(self) -> None:
        backend = SUFFIX_ONLY + '[store]\nbackend = "postgresql"\n'
        self.assertConfigError(backend, "store.dsn", "needs store.dsn or store.dsn_file")
        both = backend + 'dsn = "postgresql://a/b"\ndsn_file = "x"\n'
        self.assertConfigError(both, "store.dsn", "one of them")
        self.assertConfigError(backend + 'dsn = "mysql:x"\n', "store.dsn", "not a PostgreSQL connection string")
        self.assertConfigError(backend + 'dsn_file = "missing.dsn"\n', "store.dsn_file", "No such file")
        sqlite = SUFFIX_ONLY + '[store]\ndsn = "postgresql://a/b"\n'
        self.assertConfigError(sqlite, "store.dsn", 'only for backend = "postgresql"')


class TransferConfigTests(ConfigFileMixin, SynchronousTestCase):
    """C{[dns] update_local_zones}, C{[dns.transfer]} and C{[dns.notify]}."""

    def test_transfer_defaults(self) -> None:
        """Without the tables: no transfers allowed, no NOTIFY, a journal of 1000."""
        dns = load_settings(self.write(SUFFIX_ONLY)).dns
        self.assertEqual(
            (dns.update_local_zones, dns.transfer_allow, dns.transfer_keys, dns.journal_size),
            (False, (), (), 1000),
        )
        self.assertEqual((dns.notify, dns.notify_retry, dns.notify_retries, dns.notify_key), ((), 2.0, 5, None))

    def test_transfer_and_notify(self) -> None:
        """Every key read and normalised: networks, key names and algorithms, targets."""
        dns = load_settings(
            self.write(
                SUFFIX_ONLY
                + f"""
[dns]
update_local_zones = true
[dns.transfer]
allow = ["192.0.2.0/24", "2001:db8::1", "10.1.2.3/8"]
journal = 50
[[dns.transfer.keys]]
name = "Xfr.Example.COM."
algorithm = "HMAC-SHA512"
secret = "{SECRET}"
[[dns.transfer.keys]]
name = "other.example"
secret = "{SECRET}"
[dns.notify]
targets = ["192.0.2.53:53", "[2001:db8::53]:5353"]
retry = 3
retries = 0
key = "xfr.example.com"
"""
            )
        ).dns
        self.assertTrue(dns.update_local_zones)
        self.assertEqual(dns.transfer_allow, ("192.0.2.0/24", "2001:db8::1/128", "10.0.0.0/8"))
        self.assertEqual(dns.journal_size, 50)
        self.assertEqual(
            [(k.name, k.algorithm, k.secret) for k in dns.transfer_keys],
            [
                ("xfr.example.com", "hmac-sha512", SECRET),
                ("other.example", "hmac-sha256", SECRET),
            ],
        )
        self.assertEqual(dns.notify, (("192.0.2.53", 53), ("2001:db8::53", 5353)))
        self.assertEqual((dns.notify_retry, dns.notify_retries, dns.notify_key), (3.0, 0, "xfr.example.com"))
        self.assertIsInstance(dns.notify_retry, float)

    def test_transfer_errors(self) -> None:
        """Each bad value names its key and the problem."""
        key = f'[[dns.transfer.keys]]\nname = "k.example"\nsecret = "{SECRET}"\n'
        cases = [
            ('[dns]\nupdate_local_zones = "yes"\n', "dns.update_local_zones", "true or false"),
            ("[dns.transfer]\nalow = []\n", "dns.transfer.alow", "unknown key"),
            ('[dns.transfer]\nallow = "192.0.2.0/24"\n', "dns.transfer.allow", "must be a list"),
            ('[dns.transfer]\nallow = ["192.0.2.0/33"]\n', "dns.transfer.allow", "192.0.2.0/33"),
            ('[dns.transfer]\nallow = ["localhost"]\n', "dns.transfer.allow", "localhost"),
            ("[dns.transfer]\nallow = [5]\n", "dns.transfer.allow", "not an address or network"),
            ("[dns.transfer]\njournal = -1\n", "dns.transfer.journal", "0 to 1000000"),
            ("[dns.transfer]\njournal = 1000001\n", "dns.transfer.journal", "0 to 1000000"),
            (
                f'[[dns.transfer.keys]]\nname = "k"\nsecret = "{SECRET}"\nalgorithm = "hmac-sha3"\n',
                "dns.transfer.keys[0].algorithm",
                "hmac-sha3",
            ),
            ('[[dns.transfer.keys]]\nname = "k"\nsecret = "not base64!"\n', "dns.transfer.keys[0].secret", "base64"),
            ('[[dns.transfer.keys]]\nname = "k"\nsecret = ""\n', "dns.transfer.keys[0].secret", "empty"),
            ('[[dns.transfer.keys]]\nname = "k"\n', "dns.transfer.keys[0].secret", "required"),
            (f'[[dns.transfer.keys]]\nsecret = "{SECRET}"\n', "dns.transfer.keys[0].name", "required"),
            (
                f'[[dns.transfer.keys]]\nname = "a..b"\nsecret = "{SECRET}"\n',
                "dns.transfer.keys[0].name",
                "empty label",
            ),
            (
                key + f'[[dns.transfer.keys]]\nname = "k2"\nsecret = "{SECRET}"\nscret = 1\n',
                "dns.transfer.keys[1].scret",
                "unknown key",
            ),
            ("[dns.notify]\ntarget = []\n", "dns.notify.target", "unknown key"),
            ('[dns.notify]\ntargets = ["192.0.2.53"]\n', "dns.notify.targets", "HOST:PORT"),
            ('[dns.notify]\ntargets = [":53"]\n', "dns.notify.targets", "needs an address and a port"),
            ('[dns.notify]\ntargets = ["192.0.2.53:0"]\n', "dns.notify.targets", "needs an address and a port"),
            ('[dns.notify]\ntargets = ["ns1.example.org:53"]\n', "dns.notify.targets", ""),
            ("[dns.notify]\ntargets = [53]\n", "dns.notify.targets", "must be a list"),
            ("[dns.notify]\nretry = 0\n", "dns.notify.retry", "0.01 to 3600"),
            ('[dns.notify]\nretry = "2"\n', "dns.notify.retry", "must be a number"),
            ("[dns.notify]\nretries = 21\n", "dns.notify.retries", "0 to 20"),
            ('[dns.notify]\nkey = "k.example"\n', "dns.notify.key", "not one of dns.transfer.keys"),
            (key + '[dns.notify]\nkey = "other.example"\n', "dns.notify.key", "not one of dns.transfer.keys"),
        ]
        for text, where, words in cases:
            self.assertConfigError(SUFFIX_ONLY + text, where, words)
        # the key given with another case and a final dot is the same key
        settings = load_settings(self.write(SUFFIX_ONLY + key + '[dns.notify]\nkey = "K.Example."\n'))
        self.assertEqual(settings.dns.notify_key, "k.example")

    def test_make_transfer(self) -> None:
        """The settings become the handler's networks and keys and the notifier's options."""
        from twisted.internet import task

        from dyndns_plugin.dns.signing import labels_of
        from dyndns_plugin.service import DynDNSService
        from dyndns_plugin.store.memory import MemoryUserStore
        from dyndns_plugin.tap import load_zones, make_transfer

        settings = load_settings(
            self.write(
                SUFFIX_ONLY
                + f"""
[dns.transfer]
allow = ["192.0.2.0/24"]
journal = 7
[[dns.transfer.keys]]
name = "k.example"
algorithm = "hmac-sha1"
secret = "{SECRET}"
[dns.notify]
targets = ["192.0.2.53:5300"]
retry = 0.5
retries = 2
key = "k.example"
"""
            )
        )
        clock = task.Clock()
        service = DynDNSService(MemoryUserStore(), settings.suffix, clock=clock, poll_interval=None)
        publisher, handler, notifier = make_transfer(settings, service, load_zones(settings), clock)
        self.assertEqual(publisher.journal_size, 7)
        self.assertTrue(handler.allowed("192.0.2.9"))
        self.assertFalse(handler.allowed("127.0.0.1"))
        [key] = handler.keys.values()
        self.assertEqual(
            (key.name, key.secret, key.digest), (labels_of("k.example"), b"secret of the secondary", "sha1")
        )
        self.assertEqual((notifier.targets, notifier.retry, notifier.retries), ([("192.0.2.53", 5300)], 0.5, 2))
        self.assertIs(notifier.key, key)
        notified: list[object] = []
        notifier.notify = notified.append
        publisher.on_publish(publisher.zones[0])
        self.assertEqual(notified, [publisher.zones[0]])
        # a node that follows another's publications notifies nobody (the publisher did)
        publisher.follow()
        publisher.on_publish(publisher.zones[0])
        self.assertEqual(notified, [publisher.zones[0]])
        # without targets there is no notifier
        plain = load_settings(self.write(SUFFIX_ONLY))
        service = DynDNSService(MemoryUserStore(), plain.suffix, clock=clock, poll_interval=None)
        self.assertIsNone(make_transfer(plain, service, load_zones(plain), clock)[2])


class LogSettingsTests(SynchronousTestCase):
    """C{[log]}: format and level, checked."""

    def test_defaults_and_values(self) -> None:
        base = {"service": {"suffix": "d.example.org"}}
        self.assertEqual(settings_from_dict(base).log, LogSettings())
        chosen = settings_from_dict({**base, "log": {"format": "json", "level": "warn"}}).log
        self.assertEqual((chosen.format, chosen.level), ("json", "warn"))

    def test_bad_values(self) -> None:
        base = {"service": {"suffix": "d.example.org"}}
        for table, key in (({"format": "xml"}, "log.format"), ({"level": "loud"}, "log.level"), ({"x": 1}, "log.x")):
            with self.assertRaises(ConfigError) as caught:
                settings_from_dict({**base, "log": table})
            self.assertEqual(caught.exception.key, key)
