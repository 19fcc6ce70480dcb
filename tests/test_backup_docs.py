"""
The systemd units in docs/backup-and-upgrade.md are valid units
(C{systemd-analyze verify}), so the page cannot drift into an example that
systemd rejects.
"""

from __future__ import annotations

import os
import re
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from tests.tools import require_tool

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "backup-and-upgrade.md")


def documented_units(text: str) -> dict[str, str]:
    """Unit name -> text of every indented block that starts with C{# /etc/systemd/system/NAME}."""
    units = {}
    for match in re.finditer(r"^    # /etc/systemd/system/(\S+)\n((?:    .*\n|\n)+?)(?=\n    #|\n\S|\Z)", text, re.M):
        units[match.group(1)] = "".join(line[4:] + "\n" for line in match.group(2).splitlines())
    return units


class BackupDocTests(SynchronousTestCase):
    def test_units_verify(self) -> None:
        systemd_analyze = require_tool("systemd-analyze", "systemd")
        with open(DOC) as f:
            units = documented_units(f.read())
        self.assertEqual(set(units), {"dyndns-backup.service", "dyndns-backup.timer"})
        self.assertIn("ExecStart=", units["dyndns-backup.service"])
        self.assertIn("OnCalendar=", units["dyndns-backup.timer"])
        folder = self.mktemp()
        os.makedirs(folder)
        paths = []
        for name, text in units.items():
            paths.append(os.path.join(folder, name))
            with open(paths[-1], "w") as f:
                f.write(text)
        done = subprocess.run(
            [systemd_analyze, "verify", *paths], capture_output=True, text=True, timeout=60, check=False
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertNotIn(folder, done.stderr, done.stderr)  # no warnings about our files either
