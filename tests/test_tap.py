"""twistd options and the service tree they build."""

from __future__ import annotations

import os

from twisted.application import internet
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin import tap
from dyndns_plugin.reload import ReloadOnHangup
from dyndns_plugin.service import DynDNSService
from tests.tools import write_test_file


class OptionsTests(SynchronousTestCase):
    def config(self, text: str) -> str:
        return write_test_file(self, text)

    def test_config_required(self) -> None:
        error = self.assertRaises(usage.UsageError, tap.Options().parseOptions, [])
        self.assertIn("--config", str(error))

    def test_bad_config_names_file_and_key(self) -> None:
        path = self.config('[service]\nsuffix = "dyn.example.com"\nbogus = 1\n')
        error = self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["--config", path])
        self.assertEqual(str(error), f"{path}: service.bogus: unknown key")

    def test_missing_zone_file(self) -> None:
        path = self.config(
            '[service]\nsuffix = "dyn.example.com"\n[[dns.zones]]\norigin = "example.org"\nfile = "nope.zone"\n'
        )
        error = self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["--config", path])
        self.assertIn("nope.zone", str(error))

    def test_bad_zone_file(self) -> None:
        path = self.config(
            '[service]\nsuffix = "dyn.example.com"\n[[dns.zones]]\norigin = "example.org"\nfile = "bad.zone"\n'
        )
        with open(os.path.join(os.path.dirname(path), "bad.zone"), "w") as f:
            f.write("$ORIGIN example.org.\n@ IN A not-an-address\n")
        error = self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["--config", path])
        self.assertIn("bad.zone", str(error))

    def test_unusable_store(self) -> None:
        path = self.config('[service]\nsuffix = "dyn.example.com"\n[store]\npath = "no/such/dir/x.sqlite"\n')
        error = self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["--config", path])
        self.assertIn("x.sqlite", str(error))

    def test_service_tree(self) -> None:
        """The DynDNS service comes first, then a TCP and a UDP server per listen address."""
        path = self.config('[service]\nsuffix = "dyn.example.com"\n[dns]\nlisten = ["127.0.0.1:5399", "[::1]:5399"]\n')
        options = tap.Options()
        options.parseOptions(["--config", path])
        top = tap.makeService(options)
        children = list(top)
        self.assertIsInstance(children[0], DynDNSService)
        # twistd's tree ends with the SIGHUP reloader (dyndns_plugin.reload).
        self.assertIsInstance(children[-1], ReloadOnHangup)
        servers = [(type(c).__name__, c.args[0], c.kwargs["interface"]) for c in children[1:-1]]
        self.assertEqual(
            servers,
            [
                ("TCPServer", 5399, "127.0.0.1"),
                ("UDPServer", 5399, "127.0.0.1"),
                ("TCPServer", 5399, "::1"),
                ("UDPServer", 5399, "::1"),
            ],
        )
        self.assertIsInstance(children[1], internet.TCPServer)
        # makeService hangs the service on the MultiService it returns (an attribute mypy cannot see)
        self.assertEqual(top.dyndns.suffix, "dyn.example.com")  # type: ignore[attr-defined]
