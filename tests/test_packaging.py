"""The package list in setup.cfg names every package, so `pip install .` ships them all."""

import configparser
import fnmatch
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

    def test_every_data_file_listed(self) -> None:
        """Every file of the package that is not Python matches a package_data pattern of its package."""
        config = configparser.ConfigParser()
        config.read(os.path.join(ROOT, "setup.cfg"))
        patterns = {
            package: [p.strip() for p in value.replace("\n", ",").split(",") if p.strip()]
            for package, value in config["options.package_data"].items()
        }
        data_files = []
        for folder, dirs, files in os.walk(os.path.join(ROOT, "dyndns_plugin")):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            data_files += [os.path.join(folder, f) for f in files if not f.endswith((".py", ".pyc", ".typed"))]
        self.assertTrue(data_files, "the package has data files (the status page's CSS and JS)")
        for path in data_files:
            rel = os.path.relpath(path, ROOT).split(os.sep)
            owners = [i for i in range(len(rel) - 1, 0, -1)
                      if os.path.exists(os.path.join(ROOT, *rel[:i], "__init__.py"))]
            package = ".".join(rel[: owners[0]])
            inside = "/".join(rel[owners[0]:])
            self.assertTrue(
                any(fnmatch.fnmatch(inside, p) for p in patterns.get(package, [])),
                f"{'/'.join(rel)} is not in setup.cfg [options.package_data] {package}",
            )

    def test_no_init_in_twisted_plugins(self) -> None:
        """twisted/ and twisted/plugins/ are Twisted's namespace: no __init__.py of ours."""
        for folder in ("twisted", os.path.join("twisted", "plugins")):
            self.assertFalse(os.path.exists(os.path.join(ROOT, folder, "__init__.py")))
