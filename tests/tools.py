"""
Helpers for tests that drive real programs (dig, twistd, dnsperf...).

A missing tool skips the test with a clear reason locally; in CI
(C{DYNDNS_REQUIRE_TOOLS=1}) it fails instead, so a missing install step
cannot hide behind a skip.
"""

from __future__ import annotations

import os
import shutil
import socket

from twisted.trial.unittest import SkipTest


def require_tool(name: str, package: str) -> str:
    """Return the path of C{name}, or skip (locally) / fail (in CI)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package {package})"
        if os.environ.get("DYNDNS_REQUIRE_TOOLS") == "1":
            raise AssertionError(message + " and DYNDNS_REQUIRE_TOOLS=1")
        raise SkipTest(message)
    return path


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 right now."""
    for _ in range(50):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            tcp.close()
            udp.close()
        return port
    raise RuntimeError("no free port")
