"""
pytest runs this project's trial-style tests. trial's C{mktemp()} makes its
folders relative to the working directory (trial itself would chdir into
_trial_temp first), so each session runs in a temporary folder of its own,
removed at the end. Tests therefore find project files through C{__file__},
never through the working directory.
"""

import os
import shutil
import tempfile

_state = {}


def pytest_configure(config):
    # --ignore paths are matched during collection, after the chdir below:
    # make them absolute while the working directory is still the caller's.
    for option in ("ignore", "ignore_glob"):
        paths = getattr(config.option, option, None)
        if paths:
            setattr(config.option, option, [os.path.abspath(p) for p in paths])


def pytest_sessionstart(session):
    _state["old"] = os.getcwd()
    _state["tmp"] = tempfile.mkdtemp(prefix="dyndns-tests-")
    os.chdir(_state["tmp"])


def pytest_sessionfinish(session, exitstatus):
    os.chdir(_state.get("old", "/"))
    if "tmp" in _state:
        shutil.rmtree(_state["tmp"], ignore_errors=True)
