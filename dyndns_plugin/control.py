"""
The local control socket: how a C{dyndns} command makes its change live.

The command writes the store as always, then asks the server running on the
same store (if any) to read the store's changes now, and waits for its
answer, so that DNS serves the change before the command returns instead of
at the server's next poll. The socket sits beside the store
(C{<store path>.sock}, mode 0600 in the store's folder); a path too long for
a Unix socket uses an abstract socket named after the store instead.

Protocol: one line C{sync}, answered C{ok <generation>} once the server has
applied every change committed before the line arrived, or C{error <why>};
or C{zone-clear <origin> <name> [<type number>]}, answered C{ok <RRsets
dropped>} once the host zone serves its file's records there again (with a
new serial, like any change of the zone), or C{error <why>}.
"""

from __future__ import annotations

import hashlib
import os
import socket
from typing import Any

from twisted.application import internet
from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

log = Logger()

#: A Unix socket path is at most 107 bytes on Linux (108 with its NUL).
_MAX_PATH = 100


def control_address(store_path: str) -> str:
    """The socket of the server on C{store_path} (a path, or a NUL-led abstract name)."""
    path = os.path.abspath(store_path) + ".sock"
    if len(os.fsencode(path)) <= _MAX_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(os.path.abspath(store_path))).hexdigest()[:32]
    return f"\0dyndns-{digest}"


class _ControlProtocol(LineOnlyReceiver):
    """One client: a few short lines, then it closes."""

    MAX_LENGTH = 600  # a zone-clear line holds two names of up to 253 bytes
    delimiter = b"\n"

    def __init__(self, dyndns: Any, publisher: Any = None) -> None:
        self.dyndns = dyndns
        self.publisher = publisher

    def lineReceived(self, line: bytes) -> None:
        words = line.decode("ascii", "replace").split()
        if words == ["sync"]:
            d = defer.ensureDeferred(self.dyndns.sync())
            d.addCallback(lambda generation: self.sendLine(b"ok %d" % generation))
            d.addErrback(self._failed, "sync")
            return
        if words[:1] == ["zone-clear"] and len(words) in (3, 4) and self.publisher is not None:
            if len(words) == 4 and not words[3].isdigit():
                self.sendLine(b"error the type must be a number")
                return
            rdtype = int(words[3]) if len(words) == 4 else None
            d = defer.ensureDeferred(self.publisher.clear_updates(words[1], words[2], rdtype))
            d.addCallback(lambda dropped: self.sendLine(b"ok %d" % dropped))
            d.addErrback(self._zone_failed, words[1])
            return
        self.sendLine(b"error unknown command")
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _zone_failed(self, failure: Any, origin: str) -> None:
        if failure.check(KeyError):
            self.sendLine(f"error {origin} is not a host zone of this server".encode())
            return
        self._failed(failure, "zone-clear")

    def _failed(self, failure: Any, command: str) -> None:
        log.failure("control socket: {command} failed", failure, command=command)
        self.sendLine(f"error {command} failed".encode())

    def lineLengthExceeded(self, line: bytes) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]


class ControlFactory(protocol.Factory):
    """Serves the control socket for one L{DynDNSService}."""

    def __init__(self, dyndns: Any, publisher: Any = None) -> None:
        self.dyndns = dyndns
        self.publisher = publisher

    def buildProtocol(self, addr: Any) -> _ControlProtocol:
        return _ControlProtocol(self.dyndns, self.publisher)


def control_service(store_path: str, dyndns: Any, publisher: Any = None) -> internet.UNIXServer:
    """The listener; C{wantPID} replaces a socket a dead server left behind."""
    address = control_address(store_path)
    abstract = address.startswith("\0")
    return internet.UNIXServer(address, ControlFactory(dyndns, publisher), mode=0o600, wantPID=not abstract)


class NoServer(Exception):
    """No server runs on this store (nothing listens on its control socket)."""


def request_sync(store_path: str, timeout: float = 10.0) -> int:
    """
    Ask the server on C{store_path} to apply the store's changes now; the
    store generation it reached. Raises L{NoServer} if none listens, and
    C{OSError} (C{TimeoutError}) if it does not answer in time.
    """
    return request(store_path, "sync", timeout)


def request(store_path: str, line: str, timeout: float = 10.0) -> int:
    """
    Send one command line to the server on C{store_path}; the number of its
    C{ok} answer. L{NoServer} if none listens; C{OSError} for an error
    answer (its text) or none in time.
    """
    address = control_address(store_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError):
            raise NoServer(address) from None
        sock.sendall(line.encode("ascii") + b"\n")
        answer = b""
        while not answer.endswith(b"\n") and len(answer) < 256:
            chunk = sock.recv(256)
            if not chunk:
                break
            answer += chunk
    words = answer.decode("ascii", "replace").split()
    if len(words) == 2 and words[0] == "ok" and words[1].isdigit():
        return int(words[1])
    if words[:1] == ["error"]:
        raise OSError(" ".join(words[1:]))
    raise OSError(f"the server answered {answer!r}")
