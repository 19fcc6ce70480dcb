"""
What the DNS server factory hands raw messages to, typed so that a reader
and mypy both see which code answers an UPDATE and which a zone transfer.

Both take the message's wire bytes: Twisted's decoder corrupts UPDATE
messages, and a TSIG covers the exact bytes received.
"""

from __future__ import annotations

from typing import Iterator, Protocol


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
