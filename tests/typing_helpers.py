"""
Typed views, for mypy, of what Twisted's annotations leave loose in the
tests. Nothing here changes what a test does: each helper returns the very
object (or number) the test used before. The global reactor is imported
when a helper is called, so importing this module installs no reactor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IListeningPort, IReactorFromThreads, IReactorUDP
from twisted.internet.protocol import ServerFactory
from twisted.logger import ILogObserver

if TYPE_CHECKING:
    from twisted.trial.unittest import SynchronousTestCase

    #: The base of a test mixin: trial's SynchronousTestCase (the base of both
    #: of trial's test cases) for the type checker, so the mixin may call
    #: C{assertEqual}, C{mktemp}, C{addCleanup}; plain C{object} at run time,
    #: so the mixin alone is never collected as tests.
    TestCaseMixin = SynchronousTestCase
else:
    TestCaseMixin = object


def threads_reactor() -> IReactorFromThreads:
    """
    The global reactor as L{IReactorFromThreads} (what the SQLite store
    takes): Twisted types C{twisted.internet.reactor} as a handful of
    interfaces only, and says to adapt it for the others.
    """
    from twisted.internet import reactor

    return IReactorFromThreads(reactor)


def udp_reactor() -> IReactorUDP:
    """The global reactor as L{IReactorUDP}; see L{threads_reactor}."""
    from twisted.internet import reactor

    return IReactorUDP(reactor)


def port_number(port: IListeningPort) -> int:
    """The TCP or UDP port number C{port} listens on (C{getHost} is typed as a bare IAddress)."""
    address = port.getHost()
    assert isinstance(address, (IPv4Address, IPv6Address)), address
    return address.port


def listen_tcp(factory: ServerFactory[Any], interface: str) -> IListeningPort:
    """
    C{reactor.listenTCP(0, factory, interface=interface)}: Twisted types the
    factory as C{ServerFactory[_ProtoWithFactory]}, which a L{Site} (a
    C{ServerFactory} of its HTTP channel) does not match, generics being
    invariant; this takes any server factory.
    """
    from twisted.internet import reactor

    return reactor.listenTCP(0, factory, interface=interface)


def log_observer(observer: Callable[[dict[str, Any]], None]) -> ILogObserver:
    """
    C{observer} itself, typed as an L{ILogObserver}: the logger accepts any
    callable of the event dictionary (such as a list's C{append}), but
    Twisted's annotations ask for a declared provider.
    """
    return cast(ILogObserver, observer)
