"""
The systemd example (examples/systemd/): C{systemd-analyze verify} accepts
its units, and the units and its configuration agree on every socket name.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.config import load_settings
from tests.tools import require_tool

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "systemd")
SERVICE = "dyndns.service"
SOCKETS = ("dyndns.socket", "dyndns-http.socket", "dyndns-https.socket")
#: Where the example installs twistd (a virtual environment in /opt/dyndns).
INSTALLED_TWISTD = "/opt/dyndns/bin/twistd"


def read_unit(name: str) -> configparser.ConfigParser:
    """A unit file as sections of keys (a repeated key keeps its last value)."""
    unit = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    with open(os.path.join(EXAMPLE, name)) as f:
        unit.read_file(f)
    return unit


def local_twistd() -> str:
    """An existing executable to stand in for the installed twistd: ours, or this Python."""
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    return script if os.access(script, os.X_OK) else sys.executable


class VerifyTests(SynchronousTestCase):
    def verify(self, edit: str = "") -> subprocess.CompletedProcess[str]:
        """
        C{systemd-analyze verify} on a copy of the units whose ExecStart runs
        an existing twistd (verify checks that the program exists), with
        C{edit} appended to the service's [Service] section.
        """
        analyze = require_tool("systemd-analyze", "systemd")
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        for name in (SERVICE, *SOCKETS):
            shutil.copy(os.path.join(EXAMPLE, name), folder)
        service = os.path.join(folder, SERVICE)
        with open(service) as f:
            text = f.read()
        self.assertIn(f"ExecStart={INSTALLED_TWISTD} ", text)
        text = text.replace(f"ExecStart={INSTALLED_TWISTD} ", f"ExecStart={local_twistd()} ")
        text = text.replace("[Install]", edit + "\n[Install]")
        with open(service, "w") as f:
            f.write(text)
        return subprocess.run(
            [analyze, "verify", "--man=no", *(os.path.join(folder, n) for n in (SERVICE, *SOCKETS))],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
            cwd=folder,
        )

    def test_units_verify(self) -> None:
        """The service and its three sockets verify with no warning at all."""
        done = self.verify()
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertEqual(done.stdout + done.stderr, "")

    def test_verify_catches_a_mistake(self) -> None:
        """The check above can fail: an unknown key in the service is reported."""
        done = self.verify("NoSuchHardening=yes")
        self.assertIn("Unknown key 'NoSuchHardening'", done.stderr)


class ExampleAgreesTests(SynchronousTestCase):
    def test_names_match_the_configuration(self) -> None:
        """
        Every C{systemd:} name in examples/systemd/dyndns.toml is the
        FileDescriptorName of a socket unit the service takes (Sockets=), and
        every such socket is served.
        """
        settings = load_settings(os.path.join(EXAMPLE, "dyndns.toml"))
        assert settings.http is not None
        names = {u: read_unit(u)["Socket"]["FileDescriptorName"] for u in SOCKETS}
        self.assertEqual(read_unit(SERVICE)["Service"]["Sockets"].split(), list(SOCKETS))
        for unit in SOCKETS:
            self.assertEqual(read_unit(unit)["Socket"]["Service"], SERVICE)
        used = list(settings.dns.listen_systemd)
        for description in settings.http.listen:
            options = dict(part.partition("=")[::2] for part in description.split(":")[1:])
            used.append(options["name"])
        self.assertEqual(settings.dns.listen, ())
        self.assertEqual(sorted(used), sorted(names.values()))

    def test_writes_only_in_the_state_directory(self) -> None:
        """
        Everything the service writes (store, GnuDIP key, access log) is in
        /var/lib/dyndns, the only folder ProtectSystem=strict leaves it
        (StateDirectory=dyndns).
        """
        settings = load_settings(os.path.join(EXAMPLE, "dyndns.toml"))
        assert settings.http is not None
        service = read_unit(SERVICE)["Service"]
        self.assertEqual((service["StateDirectory"], service["ProtectSystem"]), ("dyndns", "strict"))
        for path in (settings.store_path, settings.gnudip.http_key_file, settings.http.access_log):
            self.assertEqual(os.path.dirname(str(path)), "/var/lib/dyndns")
