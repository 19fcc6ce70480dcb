"""
Where the service keeps its state (the SQLite store, the GnuDIP HTTP key,
the control socket) when the configuration does not say.

The same rule for the server and the C{dyndns} command, so that both find
the same store with no configuration at all: systemd's C{$STATE_DIRECTORY}
(C{StateDirectory=} in the unit), else C{$XDG_STATE_HOME/dyndns}, else
C{./dyndns-state} in the current folder.
"""

from __future__ import annotations

import os
from typing import Mapping

#: The folder name under C{$XDG_STATE_HOME}.
APP_NAME = "dyndns"
#: The fallback, relative to the current folder.
LOCAL_FOLDER = "dyndns-state"


def state_directory(environ: Mapping[str, str] | None = None) -> str:
    """The absolute path of the state directory (not created here)."""
    env = os.environ if environ is None else environ
    systemd = env.get("STATE_DIRECTORY", "")
    if systemd:
        # systemd passes one path per StateDirectory= entry, colon-separated.
        return os.path.abspath(systemd.split(":")[0])
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and os.path.isabs(xdg):  # the XDG spec: relative values are invalid
        return os.path.join(xdg, APP_NAME)
    return os.path.abspath(LOCAL_FOLDER)


def ensure_state_directory(path: str) -> None:
    """Create the folder (owner-only: it holds secrets) if it is missing."""
    os.makedirs(path, mode=0o700, exist_ok=True)
