"""
The HTTP connection of both our sites (public and admin): deadlines that a
slow client cannot extend, bounded heads, and a connection cap.

Twisted's L{http.HTTPChannel} has only an idle timeout, restarted by every
C{dataReceived}: a client sending one header byte a second keeps its
connection (and a file descriptor) for ever. L{DynDNSHTTPChannel} adds two
deadlines that run from the first byte of a request (for the first request,
from the connection) and are not moved by activity:

 - C{header_timeout} (default 10 s): the request line and every header;
 - C{request_timeout} (default 30 s): the whole request, body included.

Past either the client gets C{408} and the connection is closed (aborted
C{abortTimeout} seconds later if the client does not read). Between
requests of a keep-alive connection the site's idle timeout applies
(C{http.timeout}); while a request is being answered nothing runs, as in
Twisted.

Heads are bounded explicitly (Twisted's defaults are 16 KiB per line and 500
headers): a request line or header line of at most C{MAX_LENGTH} = 8 KiB
(longer: the connection is closed), request line and headers together at
most C{totalHeadersSize} = 16 KiB and C{maxHeaders} = 100 headers (more:
400). Bodies are bounded by L{dyndns_plugin.web.common.DynDNSRequest}.

HTTP/2 is not offered: the channel is HTTP/1.1 only (Twisted negotiates h2
only over TLS with the optional C{h2} package, whose flow-control floods are
another problem).
"""

from __future__ import annotations

from typing import Any

from twisted.web import http, server

from dyndns_plugin.connections import ConnectionLimiter, count_timeout
from dyndns_plugin.twisted_private import handling_request, pending_abort, set_pending_abort

HEADER_TIMEOUT = "header_timeout"
REQUEST_TIMEOUT = "request_timeout"
IDLE = "idle"

_REQUEST_TIMEOUT_REPLY = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nCache-Control: private\r\nConnection: close\r\n\r\n"
)


class DynDNSHTTPChannel(http.HTTPChannel):
    """
    L{http.HTTPChannel} with deadlines for the request head and the whole
    request that activity does not reset, explicit bounds on heads, and no
    log line per timed-out client (they are counted instead).
    """

    #: Longest request line or header line.
    MAX_LENGTH = 8192
    #: Request line and headers together.
    totalHeadersSize = 16384
    #: Headers per request.
    maxHeaders = 100
    #: Seconds a closed client that does not read gets before an abort.
    abortTimeout = 5
    #: Seconds for a request line and its headers (None: no deadline).
    header_timeout: float | None = 10.0
    #: Seconds for a whole request, body included (None: no deadline).
    request_timeout: float | None = 30.0

    _in_request = False
    _expired = False
    #: The one timer of the request being received: the head deadline
    #: until the headers are in, then the request deadline (one timer, not
    #: two: this runs for every request).
    _deadline_call: Any = None
    _deadline_reason = HEADER_TIMEOUT
    #: When the whole request is due (clock seconds), or None.
    _request_due: float | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm()

    def dataReceived(self, data: bytes) -> None:
        if self._expired:
            return
        if data and not handling_request(self):
            self._arm()
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        # Lines of a pipelined request are replayed from a buffer, not
        # through dataReceived: a new request starts its deadlines here too.
        if self._expired:
            return
        self._arm()
        super().lineReceived(line)

    def allHeadersReceived(self) -> None:
        call = self._deadline_call
        if call is not None and self.length != 0 and self._deadline_reason == HEADER_TIMEOUT:
            # A body follows: from now on the whole request's deadline.
            if self._request_due is None:
                self._deadline_call = _cancel(call)
            else:
                call.reset(max(0.0, self._request_due - call.seconds()))
                self._deadline_reason = REQUEST_TIMEOUT
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        self._in_request = False
        self._deadline_call = _cancel(self._deadline_call)
        super().allContentReceived()

    def connectionLost(self, reason: Any = None) -> None:
        self._deadline_call = _cancel(self._deadline_call)
        super().connectionLost(reason)

    def _arm(self) -> None:
        """Start the deadlines of a new request (no-op within one)."""
        if self._in_request:
            return
        self._in_request = True
        head, whole = self.header_timeout, self.request_timeout
        if head and whole and whole < head:
            head = whole
        if head:
            self._deadline_reason = HEADER_TIMEOUT
            self._deadline_call = call = self.callLater(head, self._deadline)
            self._request_due = call.getTime() - head + whole if whole else None
        elif whole:
            self._deadline_reason = REQUEST_TIMEOUT
            self._deadline_call = self.callLater(whole, self._deadline)
            self._request_due = None

    def _deadline(self) -> None:
        self._deadline_call = None
        self._expired = True
        count_timeout(self, self._deadline_reason)
        self.setTimeout(None)
        transport = self.transport
        if transport is None:
            return
        transport.write(_REQUEST_TIMEOUT_REPLY)
        self._close_then_abort()

    def timeoutConnection(self) -> None:
        """The idle timeout: as Twisted's, without a log line per client."""
        count_timeout(self, IDLE)
        self._close_then_abort()

    def _close_then_abort(self) -> None:
        if self.abortTimeout is not None and pending_abort(self) is None:
            set_pending_abort(self, self.callLater(self.abortTimeout, self.forceAbortClient))
        self.loseConnection()

    def forceAbortClient(self) -> None:
        set_pending_abort(self, None)
        self.transport.abortConnection()  # type: ignore[union-attr]


def _cancel(call: Any) -> Any:
    """Cancel C{call} if it is pending; None (the new value of its slot)."""
    if call is not None and call.active():
        call.cancel()
    return None


class LimitedSite(server.Site):
    """
    A Site of L{DynDNSHTTPChannel}s under a L{ConnectionLimiter}: over a cap
    the accepted socket is closed at once (no protocol is built).

    @ivar limiter: the caps (None: none).
    @ivar header_timeout: see L{DynDNSHTTPChannel}.
    @ivar request_timeout: see L{DynDNSHTTPChannel}.
    """

    protocol = DynDNSHTTPChannel  # type: ignore[assignment]
    limiter: ConnectionLimiter | None = None
    header_timeout: float | None = DynDNSHTTPChannel.header_timeout
    request_timeout: float | None = DynDNSHTTPChannel.request_timeout

    def buildProtocol(self, addr: Any) -> Any:
        limiter = self.limiter
        if limiter is None:
            return self._build_channel(addr)
        return limiter.build(addr, self._build_channel)

    def _build_channel(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        if channel is not None:
            channel.header_timeout = self.header_timeout
            channel.request_timeout = self.request_timeout
        return channel

    def limit_connections(
        self,
        limiter: ConnectionLimiter | None,
        header_timeout: float | None,
        request_timeout: float | None,
    ) -> "LimitedSite":
        """Set the caps and deadlines (returns the site, for chaining)."""
        self.limiter = limiter
        self.header_timeout = header_timeout
        self.request_timeout = request_timeout
        return self
