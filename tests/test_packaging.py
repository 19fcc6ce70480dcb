"""The package list in setup.cfg names every package, so `pip install .` ships them all."""

import configparser
import os

from twisted.trial.unittest import SynchronousTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PackagingTests(SynchronousTestCase):
    def test_every_package_listed(self) -> None:
        config = configparser.ConfigParser()
        config.read(os.path.join(ROOT, "setup.cfg"))
        listed = {p.strip() for p in config["options"]["packages"].split() if p.strip()}
        found = set()
        for folder, _dirs, files in os.walk(os.path.join(ROOT, "dyndns_plugin")):
            if "__init__.py" in files and "__pycache__" not in folder:
                found.add(os.path.relpath(folder, ROOT).replace(os.sep, "."))
        self.assertEqual(found - listed, set())
        self.assertIn("twisted.plugins", listed)

    def test_no_init_in_twisted_plugins(self) -> None:
        """twisted/ and twisted/plugins/ are Twisted's namespace: no __init__.py of ours."""
        for folder in ("twisted", os.path.join("twisted", "plugins")):
            self.assertFalse(os.path.exists(os.path.join(ROOT, folder, "__init__.py")))
