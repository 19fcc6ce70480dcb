"""
The seams of the DNS server, typed so that a reader and mypy both see what
crosses them: what the factory's routing point and its handlers need from
the UDP or TCP protocol a message came in on (L{MessageChannel}), and what
the factory hands raw messages to (L{UpdateWireHandler},
L{TransferWireHandler}).

The handlers take the message's wire bytes: Twisted's decoder corrupts
UPDATE messages, and a TSIG covers the exact bytes received.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Protocol, TypeVar

if TYPE_CHECKING:
    from dyndns_plugin.dns.fastpath import CachedAnswer
    from dyndns_plugin.twisted_private import EDNSMessage

#: The sender of a UDP message, C{(host, port)}: every UDP answer goes back to it.
UDPAddress = tuple[str, int]
#: What a channel wants back with each write: a L{UDPAddress} on UDP, None
#: on TCP (the connection is the address).
AddressT = TypeVar("AddressT", contravariant=True)


class MessageChannel(Protocol[AddressT]):
    """
    The protocol a DNS message arrived on, as the factory's C{dispatch} and
    handlers use it (L{dyndns_plugin.dns.server.DNSDatagramProtocol} is a
    C{MessageChannel[UDPAddress]}, L{dyndns_plugin.dns.server.DNSStreamProtocol}
    a C{MessageChannel[None]}). Every answer goes out through one of the
    three writes, each with the address the message came with, so UDP can
    rate limit and truncate where TCP frames.
    """

    def peer_host(self, address: AddressT) -> str | None:
        """The sender's IP address as text (None: not an IP peer)."""
        ...

    def is_open(self) -> bool:
        """Can answers still be written (False once a TCP connection is gone)?"""
        ...

    def writeMessage(self, message: EDNSMessage, address: AddressT) -> None:
        """A full-path answer, encoded here."""
        ...

    def writeCached(self, ident: bytes, answer: CachedAnswer, address: AddressT) -> None:
        """A cached answer under the query's 2-byte C{ident}."""
        ...

    def writeWire(self, wire: bytes, address: AddressT) -> None:
        """An answer already in wire form (UPDATE, transfers, raw errors)."""
        ...


class UpdateWireHandler(Protocol):
    """Answers RFC 2136 UPDATE messages (L{dyndns_plugin.protocols.dns_update.UpdateHandler})."""

    async def handle_update_wire(self, wire: bytes, peer: str | None) -> bytes | None:
        """The reply to one UPDATE (None: send nothing)."""
        ...


class TransferWireHandler(Protocol):
    """
    Answers AXFR/IXFR queries and TSIG-signed SOA queries
    (L{dyndns_plugin.replication.transfer.TransferHandler}).
    """

    def answer_transfer(self, wire: bytes, peer: str | None, udp: bool) -> Iterator[bytes]:
        """The answer's messages, in order (over UDP at most one)."""
        ...
