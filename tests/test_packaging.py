"""
The package list in setup.cfg names every package, so `pip install .` ships
them all; the LICENSE is the MIT text the metadata names, and the sdist and
the wheel really carry it.
"""

import configparser
import fnmatch
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

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
            owners = [
                i for i in range(len(rel) - 1, 0, -1) if os.path.exists(os.path.join(ROOT, *rel[:i], "__init__.py"))
            ]
            package = ".".join(rel[: owners[0]])
            inside = "/".join(rel[owners[0] :])
            self.assertTrue(
                any(fnmatch.fnmatch(inside, p) for p in patterns.get(package, [])),
                f"{'/'.join(rel)} is not in setup.cfg [options.package_data] {package}",
            )

    def test_no_init_in_twisted_plugins(self) -> None:
        """twisted/ and twisted/plugins/ are Twisted's namespace: no __init__.py of ours."""
        for folder in ("twisted", os.path.join("twisted", "plugins")):
            self.assertFalse(os.path.exists(os.path.join(ROOT, folder, "__init__.py")))


def _metadata() -> configparser.SectionProxy:
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    return config["metadata"]


class LicenseTests(SynchronousTestCase):
    def test_license_is_mit_as_the_metadata_says(self) -> None:
        metadata = _metadata()
        self.assertEqual(metadata["license"], "MIT")
        self.assertIn("License :: OSI Approved :: MIT License", metadata["classifiers"])
        self.assertEqual(metadata["license_files"].split(), ["LICENSE"])
        with open(os.path.join(ROOT, "LICENSE")) as f:
            text = f.read()
        self.assertTrue(text.startswith("MIT License\n"))
        self.assertIn(f"Copyright (c) 2026 {metadata['author']}\n", text)
        self.assertIn("Permission is hereby granted, free of charge", text)
        self.assertIn('THE SOFTWARE IS PROVIDED "AS IS"', text)

    def test_sdist_and_wheel_carry_the_license(self) -> None:
        """
        Build both from a copy of the tracked files (the work tree gets no
        build/ or egg-info) with the installed setuptools, offline.
        """
        if not os.path.isdir(os.path.join(ROOT, ".git")) and not os.path.isfile(os.path.join(ROOT, ".git")):
            self.skipTest("not a git checkout: the tracked files are unknown")
        tracked = subprocess.run(
            ["git", "-C", ROOT, "ls-files", "-z"], capture_output=True, check=True, timeout=30
        ).stdout.split(b"\0")
        source = os.path.abspath(self.mktemp())
        for name in tracked:
            path = name.decode()
            if path and os.path.isfile(os.path.join(ROOT, path)):
                os.makedirs(os.path.join(source, os.path.dirname(path)), exist_ok=True)
                shutil.copy2(os.path.join(ROOT, path), os.path.join(source, path))
        out = os.path.join(source, "out")
        os.makedirs(out)
        build = (
            # build_meta rewrites sys.argv, so the folder is read first.
            "import sys; from setuptools import build_meta as b; out = sys.argv[1]; "
            "s = b.build_sdist(out); w = b.build_wheel(out); print('built', s, w)"
        )
        done = subprocess.run(
            [sys.executable, "-c", build, out], cwd=source, capture_output=True, text=True, timeout=300, check=False
        )
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        built = [line.split() for line in done.stdout.splitlines() if line.startswith("built ")]
        self.assertEqual(len(built), 1, done.stdout[-2000:])
        sdist_name, wheel_name = built[0][1:]
        with open(os.path.join(ROOT, "LICENSE"), "rb") as f:
            license_text = f.read()
        with tarfile.open(os.path.join(out, sdist_name)) as sdist:
            top = sdist_name.removesuffix(".tar.gz")
            member = sdist.extractfile(f"{top}/LICENSE")
            assert member is not None
            self.assertEqual(member.read(), license_text)
        with zipfile.ZipFile(os.path.join(out, wheel_name)) as wheel:
            in_dist_info = [n for n in wheel.namelist() if ".dist-info/" in n and n.endswith("LICENSE")]
            self.assertEqual(len(in_dist_info), 1, wheel.namelist())
            self.assertEqual(wheel.read(in_dist_info[0]), license_text)
            metadata = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        self.assertIn("License: MIT", metadata)
