"""twistd options and the service tree they build."""

from __future__ import annotations

import errno
import os
import socket

from twisted.application import internet
from twisted.internet import error
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin import tap
from dyndns_plugin.config import settings_from_dict
from dyndns_plugin.control import control_address
from dyndns_plugin.reload import ReloadOnHangup
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.memory import MemoryUserStore
from tests.tools import write_test_file


class OptionsTests(SynchronousTestCase):
    def config(self, text: str) -> str:
        return write_test_file(self, text)

    def test_no_config_is_the_embedded_default(self) -> None:
        """No --config and no $DYNDNS_CONFIG: suffix dyn.test on loopback, state in the state directory."""
        state_home = os.path.abspath(self.mktemp())
        os.makedirs(state_home)
        self.patch(os, "environ", {"XDG_STATE_HOME": state_home, "PATH": os.environ.get("PATH", "")})
        options = tap.Options()
        options.parseOptions([])
        settings = options.settings
        self.assertTrue(options.embedded_default)
        self.assertEqual(settings.suffix, "dyn.test")
        self.assertEqual(settings.dns.listen, (("127.0.0.1", 5300),))
        self.assertIsNotNone(settings.http)
        assert settings.http is not None
        self.assertEqual(settings.http.listen, ("tcp:8080:interface=127.0.0.1",))
        self.assertEqual(settings.gnudip.listen, ("tcp:3495:interface=127.0.0.1",))
        self.assertEqual(settings.admin.listen, ())  # off until credentials exist
        state = os.path.join(state_home, "dyndns")
        self.assertEqual(settings.store_path, os.path.join(state, "dyndns.sqlite"))
        self.assertTrue(os.path.isdir(state))
        self.assertEqual(os.stat(state).st_mode & 0o777, 0o700)
        summary = tap.startup_summary(settings)
        self.assertIn("127.0.0.1:5300", summary)
        self.assertIn("dyndns user add", summary)
        self.assertIn(state, summary)

    def test_dyndns_config_environment(self) -> None:
        path = self.config('[service]\nsuffix = "env.example.com"\n')
        self.patch(os, "environ", {**os.environ, "DYNDNS_CONFIG": path})
        options = tap.Options()
        options.parseOptions([])
        self.assertEqual(options.settings.suffix, "env.example.com")
        self.assertFalse(options.embedded_default)

    def test_bad_config_names_file_and_key(self) -> None:
        path = self.config('[service]\nsuffix = "dyn.example.com"\nbogus = 1\n')
        error = self.assertRaises(tap.StartupError, tap.Options().parseOptions, ["--config", path])
        self.assertEqual(error.message, f"{path}: service.bogus: unknown key")
        self.assertEqual(str(error), f"twistd dyndns: {path}: service.bogus: unknown key")

    def test_bad_postgresql_dsn(self) -> None:
        """A connection string libpq cannot parse stops twistd at once (no retry loop), without its password."""
        dsn = "postgresql://dyndns:hunter2@[::1/dyndns"
        path = self.config(f'[service]\nsuffix = "dyn.example.com"\n[store]\nbackend = "postgresql"\ndsn = "{dsn}"\n')
        error = self.assertRaises(tap.StartupError, tap.Options().parseOptions, ["--config", path])
        self.assertIn(f"{path}: store.dsn: not a connection string libpq takes (", str(error))
        self.assertNotIn("hunter2", str(error))

    def test_missing_zone_file(self) -> None:
        path = self.config(
            '[service]\nsuffix = "dyn.example.com"\n[[dns.zones]]\norigin = "example.org"\nfile = "nope.zone"\n'
        )
        error = self.assertRaises(tap.StartupError, tap.Options().parseOptions, ["--config", path])
        self.assertIn("nope.zone", str(error))

    def test_bad_zone_file(self) -> None:
        path = self.config(
            '[service]\nsuffix = "dyn.example.com"\n[[dns.zones]]\norigin = "example.org"\nfile = "bad.zone"\n'
        )
        with open(os.path.join(os.path.dirname(path), "bad.zone"), "w") as f:
            f.write("$ORIGIN example.org.\n@ IN A not-an-address\n")
        error = self.assertRaises(tap.StartupError, tap.Options().parseOptions, ["--config", path])
        self.assertIn("bad.zone", str(error))

    def test_unusable_store(self) -> None:
        path = self.config('[service]\nsuffix = "dyn.example.com"\n[store]\npath = "no/such/dir/x.sqlite"\n')
        error = self.assertRaises(tap.StartupError, tap.Options().parseOptions, ["--config", path])
        self.assertIn("x.sqlite", str(error))

    def test_service_tree(self) -> None:
        """The DynDNS service comes first, then a TCP and a UDP server per listen address."""
        path = self.config(
            '[service]\nsuffix = "dyn.example.com"\n[dns]\nlisten = ["127.0.0.1:5399", "[::1]:5399"]\n'
            "[http]\nlisten = []\n[gnudip]\nlisten = []\n"
        )
        options = tap.Options()
        options.parseOptions(["--config", path])
        top = tap.makeService(options)
        children = list(top)
        self.assertIsInstance(children[0], DynDNSService)
        # twistd's tree ends with the control socket (dyndns_plugin.control)
        # and the SIGHUP reloader (dyndns_plugin.reload).
        *listeners, control, reloader = children[1:]
        self.assertIsInstance(reloader, ReloadOnHangup)
        self.assertIsInstance(control, internet.UNIXServer)
        self.assertEqual(control.args[0], control_address(options.settings.store_path))
        servers = [(type(c).__name__, c.args[0], c.kwargs["interface"]) for c in listeners]
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


class ListenProblemTests(SynchronousTestCase):
    """What an operator reads when a listener cannot open."""

    def test_words_for_the_usual_causes(self) -> None:
        def cannot(code: int) -> Exception:
            return error.CannotListenError("127.0.0.1", 53, OSError(code, os.strerror(code)))

        self.assertIn("already in use", tap.listen_problem(cannot(errno.EADDRINUSE)))
        denied = tap.listen_problem(cannot(errno.EACCES))
        self.assertIn("permission denied", denied)
        self.assertIn("CAP_NET_BIND_SERVICE", denied)
        self.assertIn("systemd socket activation", denied)
        self.assertEqual(tap.listen_problem(cannot(errno.EADDRNOTAVAIL)), "no such local address")

    def test_embedded_service_raises_listen_error_naming_the_key(self) -> None:
        """Outside twistd -n the failure is an exception (twistd's daemon parent prints it), never an exit."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            port = taken.getsockname()[1]
            settings = settings_from_dict(
                {"dns": {"listen": [f"127.0.0.1:{port}"]}, "http": {"listen": []}, "gnudip": {"listen": []}},
                "x.toml",
                state_dir=os.path.abspath(self.mktemp()),
            )
            top = tap.build_service(settings, store=MemoryUserStore())
            failure = self.assertRaises(tap.ListenError, top.privilegedStartService)
            for child in top:
                port_object = getattr(child, "_port", None)
                if port_object is not None:
                    port_object.stopListening()
        self.assertIn(f"x.toml: dns.listen[0]: cannot listen on 127.0.0.1:{port} (UDP)", str(failure))
        self.assertIn("already in use", str(failure))
