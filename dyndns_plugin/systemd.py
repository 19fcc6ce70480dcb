"""
Sockets passed by systemd (socket activation, C{LISTEN_FDS}): so the daemon
can serve port 53, 80 and 443 without ever running as root.

C{dns.listen = ["systemd:NAME"]} serves DNS on every passed socket whose
C{FileDescriptorName} is NAME: stream sockets as DNS over TCP, datagram
sockets as DNS over UDP (the type and address family are read from the
socket itself). The other listeners are Twisted endpoint strings and use
Twisted's own C{systemd:domain=INET:name=NAME} endpoint (see
examples/systemd/), or ours for HTTPS, C{systemd-tls:domain=INET:name=NAME:
privateKey=KEY:certKey=CERT} (L{tls_server_endpoint}: TLS with the options
of Twisted's C{ssl:} endpoint, on a passed socket). All of them read the sockets from the same place, Twisted's
parse of the environment (L{twisted_private.systemd_passed_sockets}).

When a name has no socket, L{why_missing} says why in one line: nothing
passed at all, sockets passed to another process (C{LISTEN_PID}), or only
other names.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import attrs
from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from dyndns_plugin import twisted_private

#: The socket types of the passed sockets that DNS can serve.
_KINDS: dict[int, str] = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "datagram"}
#: The address families DNS can serve on (Twisted adopts UDP in these only).
_FAMILIES: dict[int, str] = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}


class PassedSocketError(Exception):
    """A C{systemd:} listener whose sockets are not there or not usable (one line)."""


@attrs.frozen
class PassedSocket:
    """One socket systemd passed: its descriptor, name, type and family."""

    fd: int
    name: str
    kind: int
    family: int

    def describe(self) -> str:
        kind = _KINDS.get(self.kind, f"type {self.kind}")
        family = _FAMILIES.get(self.family, f"family {self.family}")
        return f"fd {self.fd} ({kind}, {family})"


def passed_sockets() -> list[PassedSocket]:
    """Every socket passed to this process, with the type and family the kernel reports."""
    found = []
    for fd, name in twisted_private.systemd_passed_sockets():
        try:
            # A duplicate to ask: closing it leaves the passed descriptor open.
            with socket.socket(fileno=os.dup(fd)) as probe:
                kind = probe.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
                family = probe.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
        except OSError as e:
            raise PassedSocketError(f"passed descriptor {fd} ({name}) is not a socket: {e.strerror}") from None
        found.append(PassedSocket(fd, name, kind, family))
    return found


def why_missing(name: str, environ: Any = None) -> str:
    """
    Why no passed socket is called C{name}: what the environment says about
    socket activation. Twisted deletes C{LISTEN_PID} and C{LISTEN_FDS} only
    when it took the sockets, so a C{LISTEN_PID} still there is another
    process's.
    """
    if environ is None:
        environ = os.environ
    pid = environ.get("LISTEN_PID")
    if pid is not None and pid != str(os.getpid()):
        return (
            f"no socket named {name!r}: LISTEN_PID={pid} is not this process ({os.getpid()}), "
            "so the sockets were passed to another one (start twistd with -n, by exec, not by a fork)"
        )
    if pid is not None:
        return f"no socket named {name!r}: LISTEN_FDS={environ.get('LISTEN_FDS', '')!r} is not a number"
    names = [n for _fd, n in twisted_private.systemd_passed_sockets()]
    if names:
        return f"no socket named {name!r} was passed (passed: {', '.join(sorted(set(names)))}); see FileDescriptorName="
    if environ.get("LISTEN_FDNAMES"):
        return (
            f"no socket named {name!r}: LISTEN_FDNAMES={environ['LISTEN_FDNAMES']!r} does not match "
            "LISTEN_FDS, so no socket was taken"
        )
    return (
        f"no socket named {name!r}: no sockets were passed (LISTEN_FDS is not set: start it through its .socket unit)"
    )


def sockets_named(name: str) -> list[PassedSocket]:
    """The passed sockets called C{name}, all usable for DNS; else L{PassedSocketError}."""
    chosen = [s for s in passed_sockets() if s.name == name]
    if not chosen:
        raise PassedSocketError(why_missing(name))
    for s in chosen:
        if s.kind not in _KINDS or s.family not in _FAMILIES:
            raise PassedSocketError(
                f"socket {name!r} {s.describe()}: DNS needs stream or datagram sockets on IPv4 or IPv6"
            )
    return chosen


def check_endpoint(description: str) -> None:
    """
    For a Twisted C{systemd:...:name=NAME} (or C{index=N}) endpoint string:
    L{PassedSocketError} saying why its socket is missing, where Twisted
    would only raise C{KeyError('NAME')} or C{IndexError}.
    """
    if not description.startswith(("systemd:", "systemd-tls:")):
        return
    for part in description.split(":")[1:]:
        key, _, value = part.partition("=")
        if key == "name" and value not in {s.name for s in passed_sockets()}:
            raise PassedSocketError(why_missing(value))
        if key == "index":
            passed = twisted_private.systemd_passed_sockets()
            if not value.isdigit() or int(value) >= len(passed):
                raise PassedSocketError(f"no passed socket has index {value} ({len(passed)} passed)")


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """Listening on C{wrapped} with TLS (C{context_factory}) in front of every connection."""

    def __init__(self, wrapped: Any, context_factory: Any) -> None:
        self.wrapped = wrapped
        self.context_factory = context_factory

    def listen(self, factory: Any) -> defer.Deferred[IListeningPort]:
        listening: defer.Deferred[IListeningPort] = self.wrapped.listen(
            TLSMemoryBIOFactory(self.context_factory, False, factory)
        )
        return listening


def tls_server_endpoint(
    reactor: Any, domain: str, index: str | None = None, name: str | None = None, **tls: str
) -> TLSServerEndpoint:
    """
    The C{systemd-tls:} endpoint: Twisted's C{systemd:} endpoint for the
    passed socket (C{domain}, C{index} or C{name}), with TLS from the
    options C{tls} as Twisted's C{ssl:} endpoint reads them.
    """
    quote = endpoints.quoteStringArgument
    socket_options = [f"domain={quote(domain)}"]
    if index is not None:
        socket_options.append(f"index={quote(index)}")
    if name is not None:
        socket_options.append(f"name={quote(name)}")
    passed = endpoints.serverFromString(reactor, "systemd:" + ":".join(socket_options))
    if "privateKey" not in tls:
        raise ValueError("systemd-tls: needs privateKey= (and certKey= if the certificate is in another file)")
    context_factory = twisted_private.ssl_server_context_factory(
        reactor, ":".join(f"{key}={quote(value)}" for key, value in tls.items())
    )
    return TLSServerEndpoint(passed, context_factory)


class PassedDNSListener(service.Service):
    """
    DNS on sockets systemd passed: each stream socket adopted as DNS over
    TCP (with C{factory}), each datagram socket as DNS over UDP (with a
    protocol from C{make_datagram_protocol}). Made non-blocking first, as
    Twisted requires; adopting duplicates the descriptor, so the passed one
    is closed once adopted, as Twisted's own C{systemd:} endpoint does.
    """

    def __init__(self, sockets: list[PassedSocket], factory: Any, make_datagram_protocol: Any, reactor: Any) -> None:
        self.sockets = sockets
        self.factory = factory
        self.make_datagram_protocol = make_datagram_protocol
        self.reactor = reactor
        self.ports: list[IListeningPort] = []

    def startService(self) -> None:
        super().startService()
        reactor = self.reactor
        if reactor is None:
            from twisted.internet import reactor
        for s in self.sockets:
            # Twisted needs it non-blocking (systemd passes blocking sockets
            # unless NonBlocking=yes), and no child of ours should inherit it.
            os.set_blocking(s.fd, False)
            os.set_inheritable(s.fd, False)
            if s.kind == socket.SOCK_STREAM:
                port = reactor.adoptStreamPort(s.fd, s.family, self.factory)
            else:
                port = reactor.adoptDatagramPort(s.fd, s.family, self.make_datagram_protocol(), maxPacketSize=65535)
            os.close(s.fd)
            self.ports.append(port)

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        ports, self.ports = self.ports, []
        return defer.DeferredList([defer.maybeDeferred(p.stopListening) for p in ports])
