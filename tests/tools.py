"""
Helpers for tests that drive real programs (dig, twistd, dnsperf...): the
skip-or-fail rule, free ports, the fixtures folder and files for a test.

The rule, kept here and nowhere else: a missing tool (or anything else a
test needs from the machine) skips the test with a clear reason locally; in
CI (C{DYNDNS_REQUIRE_TOOLS=1}) it fails instead, so a missing install step
cannot hide behind a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
from typing import Iterable, NoReturn

from twisted.trial.unittest import SkipTest, SynchronousTestCase


def fixture_path(*parts: str) -> str:
    """The path of C{parts} under tests/fixtures."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", *parts)


def write_test_file(testcase: SynchronousTestCase, text: str, name: str = "dyndns.toml") -> str:
    """C{text} as the file C{name} in a fresh folder of C{testcase}; its path."""
    folder = testcase.mktemp()
    os.makedirs(folder)
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def unavailable(message: str) -> NoReturn:
    """Skip (locally) or fail (in CI, C{DYNDNS_REQUIRE_TOOLS=1}) with C{message}."""
    if os.environ.get("DYNDNS_REQUIRE_TOOLS") == "1":
        raise AssertionError(message + " and DYNDNS_REQUIRE_TOOLS=1")
    raise SkipTest(message)


def require_tool(name: str, package: str) -> str:
    """Return the path of C{name}, or skip (locally) / fail (in CI)."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (Debian package {package})")
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


def free_ports(count: int, avoid: Iterable[int] = ()) -> list[int]:
    """C{count} different free ports (L{free_port}), none of them in C{avoid}."""
    taken = set(avoid)
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in taken:
            taken.add(port)
            ports.append(port)
    return ports
