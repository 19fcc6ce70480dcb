"""
Every private Twisted API this project depends on, in one place.

Twisted does not promise to keep these: a release may rename or change any
of them without a deprecation. So no other module of the package touches a
private Twisted name; they call the functions here, and
tests/test_twisted_private.py checks each one (and the signature of each
private hook our subclasses override, L{OVERRIDDEN_HOOKS}) against the
installed Twisted, so an upgrade that changes one fails there, by name.

Why each is needed:

 - L{EDNSMessage} (C{dns._EDNSMessage}): Twisted's only message class that
   reads and writes EDNS (the OPT record); its C{DNSServerFactory} builds
   responses of the class it is given as C{_messageFactory}. The server
   decodes and encodes through its plain C{dns.Message} form
   (C{_fromMessage}, C{_toMessage}) to keep the COOKIE option and to write
   answers longer than 512 bytes.
 - L{opt_variable_option} (C{dns._OPTVariableOption}): an EDNS option in
   an OPT record (our COOKIE answer).
 - L{is_subdomain_of} (C{dns._isSubdomainOf}): which of our zones holds a
   name, with Twisted's own name comparison.
 - L{spell_header} (C{http_headers._NameEncoder._caseMappings}): the
   spelling Twisted writes a header name in (C{X-DynDNS-Result}, not
   C{X-Dyndns-Result}).
 - L{respond_bad_request}, L{handling_request}, L{pending_abort} and
   L{set_pending_abort} (C{HTTPChannel}'s C{_respondToBadRequestAndDisconnect},
   C{_handlingRequest}, C{_abortingCall}): our HTTP channel's request
   deadlines and its refusal of a malformed POST.
 - L{unprocessed_length} (C{IntNStringReceiver._unprocessed}): how much of
   an incomplete DNS-over-TCP message is buffered, for its deadline.
 - L{default_cooperator}, L{set_default_cooperator} (C{task._theCooperator}):
   bench/fuzz.py runs the service's cooperative tasks on its own scheduler.
 - L{ssl_server_context_factory} (C{SSL4ServerEndpoint._sslContextFactory}):
   the TLS options of an C{ssl:} endpoint string, so C{systemd-tls:} takes
   exactly the options (privateKey, certKey, extraCertChain, dhParameters,
   ...) and checks of Twisted's own C{ssl:} endpoint.
 - L{systemd_passed_sockets} (C{endpoints._SystemdParser._sddaemon} and
   C{ListenFDs._names}): the sockets systemd passed, as Twisted read them
   when C{twisted.internet.endpoints} was imported (it then deletes
   C{LISTEN_PID} and C{LISTEN_FDS} from the environment, so nobody can read
   them again); the names in order, since C{inheritedNamedDescriptors}
   keeps only one descriptor per name and a DNS socket unit passes two
   (UDP and TCP) under one name.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import endpoints, task
from twisted.internet.interfaces import IDelayedCall
from twisted.names import authority, common, dns, resolve, server
from twisted.protocols import basic
from twisted.web import http, http_headers

#: Twisted's EDNS-aware DNS message (C{twisted.names.dns._EDNSMessage}).
EDNSMessage = dns._EDNSMessage

#: Private (underscore) hooks of Twisted classes that our subclasses
#: override, with the parameters we rely on: (class, attribute, parameters
#: or None for a class attribute). C{_lookup} is the hook Twisted's
#: resolvers are meant to implement, C{_responseFromMessage} and
#: C{_messageFactory} shape every answer of C{DNSServerFactory}.
OVERRIDDEN_HOOKS: tuple[tuple[type, str, tuple[str, ...] | None], ...] = (
    (common.ResolverBase, "_lookup", ("self", "name", "cls", "type", "timeout")),
    (resolve.ResolverChain, "_lookup", ("self", "name", "cls", "type", "timeout")),
    (authority.FileAuthority, "_lookup", ("self", "name", "cls", "type", "timeout")),
    (
        server.DNSServerFactory,
        "_responseFromMessage",
        ("self", "message", "rCode", "answers", "authority", "additional"),
    ),
    (server.DNSServerFactory, "_messageFactory", None),
)


def edns_from_message(message: dns.Message) -> Any:
    """
    The L{EDNSMessage} for a decoded plain message (its OPT record read into
    fields). Typed Any, as Twisted does: the server adds attributes of its own.
    """
    return dns._EDNSMessage._fromMessage(message)


def message_from_edns(message: dns._EDNSMessage) -> Any:
    """The plain message an L{EDNSMessage} encodes as (its EDNS fields as an OPT record)."""
    return message._toMessage()


def opt_variable_option(code: int, data: bytes) -> Any:
    """One EDNS option (code and data) for the C{options} of an OPT record."""
    return dns._OPTVariableOption(code, data)


def is_subdomain_of(name: bytes, origin: bytes) -> bool:
    """True if C{name} is C{origin} or below it (case-insensitive)."""
    return bool(dns._isSubdomainOf(name, origin))


def spell_header(usual: bytes, spelling: bytes) -> bool:
    """
    Make Twisted write the header it would spell C{usual} (each word
    capitalized) as C{spelling}. Cosmetic (header names are
    case-insensitive), so a Twisted without the hook is no error here:
    False then, and the test of this module fails instead.
    """
    try:
        http_headers._NameEncoder._caseMappings[usual] = spelling
    except (AttributeError, TypeError):  # pragma: no cover - a Twisted that changed it
        return False
    return True


def respond_bad_request(channel: http.HTTPChannel) -> None:
    """Answer 400 Bad Request on C{channel} and close it, as Twisted does for a malformed request."""
    channel._respondToBadRequestAndDisconnect()


def handling_request(channel: http.HTTPChannel) -> bool:
    """True while C{channel} has a request whose answer is not finished (data then waits in a buffer)."""
    return bool(channel._handlingRequest)


def pending_abort(channel: http.HTTPChannel) -> IDelayedCall | None:
    """The timer that will abort C{channel} if its transport does not close in time, or None."""
    call: IDelayedCall | None = channel._abortingCall
    return call


def set_pending_abort(channel: http.HTTPChannel, call: IDelayedCall | None) -> None:
    """Set that timer; C{HTTPChannel.connectionLost} cancels it if the connection closes first."""
    channel._abortingCall = call  # type: ignore[assignment]


def unprocessed_length(protocol: basic.IntNStringReceiver) -> int:
    """Bytes C{protocol} holds of a message not yet complete (its length prefix included)."""
    return len(protocol._unprocessed)


def default_cooperator() -> task.Cooperator:
    """The cooperator behind C{task.cooperate} and C{task.coiterate} (the fuzzer swaps in its own)."""
    cooperator: task.Cooperator = task._theCooperator
    return cooperator


def set_default_cooperator(cooperator: task.Cooperator) -> None:
    """Replace the cooperator behind C{task.cooperate} and C{task.coiterate}."""
    task._theCooperator = cooperator


def systemd_passed_sockets() -> list[tuple[int, str]]:
    """
    (descriptor, C{FileDescriptorName}) of every socket systemd passed to
    this process, in order: what the C{systemd:} endpoints of Twisted see.
    """
    listen_fds = endpoints._SystemdParser._sddaemon
    return list(zip(listen_fds.inheritedDescriptors(), listen_fds._names))


def ssl_server_context_factory(reactor: Any, options: str) -> Any:
    """
    The context factory Twisted's C{ssl:} endpoint makes from C{options}
    (the part after C{ssl:PORT:}); its errors are the C{ssl:} endpoint's.
    """
    return endpoints.serverFromString(reactor, "ssl:0:" + options)._sslContextFactory
