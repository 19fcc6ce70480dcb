"""
NOTIFY (RFC 1996) to the configured secondaries after every new serial.

Twisted never sends NOTIFY. This sends one UDP message per zone and target
(opcode NOTIFY, AA, the zone's SOA question and the new SOA as a hint),
optionally TSIG-signed, and sends it again with a doubling interval until
the target answers with the same ID, at most C{retries} times. A newer
serial replaces a NOTIFY still waiting for its answer.
"""

from __future__ import annotations

import ipaddress
import secrets
import struct
from typing import Any, Sequence

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from dyndns_plugin.dns.signing import TSIGKey, append_tsig, tsig_rdata
from dyndns_plugin.replication.journal import ZoneState

log = Logger()

OPCODE_NOTIFY = 4
FUDGE = 300


class _Socket(DatagramProtocol):
    def __init__(self, notifier: "Notifier") -> None:
        self.notifier = notifier

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.notifier.answer_received(data, addr)


class _Pending:
    def __init__(self, origin: str, serial: int, ident: int, message: bytes) -> None:
        self.origin = origin
        self.serial = serial
        self.ident = ident
        self.message = message
        self.tries = 0
        self.call: Any = None


class Notifier:
    """
    Sends NOTIFY for zones to C{targets} (C{(host, port)}).

    @param retry: seconds before the first resend; doubles each time.
    @param key: sign every NOTIFY with this TSIG key.
    """

    def __init__(
        self,
        reactor: Any,
        targets: Sequence[tuple[str, int]],
        *,
        retry: float = 2.0,
        retries: int = 5,
        key: TSIGKey | None = None,
    ) -> None:
        self.reactor = reactor
        self.targets = [(str(ipaddress.ip_address(host)), port) for host, port in targets]
        self.retry = retry
        self.retries = retries
        self.key = key
        self._ports: dict[int, Any] = {}
        self._pending: dict[tuple[str, tuple[str, int]], _Pending] = {}
        self.sent = 0
        self.answered = 0
        self.given_up = 0
        self._stopped = False

    def start(self) -> None:
        if self._ports or self._stopped:
            return
        for version in {ipaddress.ip_address(host).version for host, _ in self.targets}:
            interface = "::" if version == 6 else "0.0.0.0"
            self._ports[version] = self.reactor.listenUDP(0, _Socket(self), interface=interface)

    def stop(self) -> None:
        self._stopped = True
        for pending in self._pending.values():
            if pending.call is not None and pending.call.active():
                pending.call.cancel()
        self._pending.clear()
        for port in self._ports.values():
            port.stopListening()
        self._ports.clear()

    # -- sending

    def notify(self, zone: ZoneState) -> None:
        """Tell every target about the zone's current serial."""
        self.start()
        for target in self.targets:
            old = self._pending.pop((zone.origin, target), None)
            if old is not None and old.call is not None and old.call.active():
                old.call.cancel()
            ident = secrets.randbits(16)
            pending = _Pending(zone.origin, zone.serial, ident, self._message(zone, ident))
            self._pending[(zone.origin, target)] = pending
            self._send(pending, target)

    def _message(self, zone: ZoneState, ident: int) -> bytes:
        labels = zone.origin.encode("ascii").split(b".") if zone.origin else []
        name = b"".join(bytes((len(label),)) + label for label in labels) + b"\0"
        _, rdtype, ttl, rdata = zone.soa_rr()
        flags = (OPCODE_NOTIFY << 11) | 0x0400
        message = (
            struct.pack("!HHHHHH", ident, flags, 1, 1, 0, 0)
            + name
            + struct.pack("!HH", 6, 1)
            + b"\xc0\x0c"
            + struct.pack("!HHIH", rdtype, 1, ttl, len(rdata))
            + rdata
        )
        if self.key is not None:
            now = int(self.reactor.seconds())
            mac = self.key.mac(message, now, FUDGE)
            algorithm = self.key.algorithm
            message = append_tsig(message, self.key.name, tsig_rdata(algorithm, now, FUDGE, mac, ident, 0, b""))
        return message

    def _send(self, pending: _Pending, target: tuple[str, int]) -> None:
        port = self._ports.get(ipaddress.ip_address(target[0]).version)
        if port is None:
            return
        try:
            port.write(pending.message, target)
        except OSError as e:
            log.warn("NOTIFY to {target} failed: {error}", target=target, error=e)
        self.sent += 1
        if pending.tries >= self.retries:
            pending.call = self.reactor.callLater(self.retry * 2**pending.tries, self._give_up, pending, target)
        else:
            pending.call = self.reactor.callLater(self.retry * 2**pending.tries, self._resend, pending, target)

    def _resend(self, pending: _Pending, target: tuple[str, int]) -> None:
        if self._pending.get((pending.origin, target)) is not pending:
            return
        pending.tries += 1
        self._send(pending, target)

    def _give_up(self, pending: _Pending, target: tuple[str, int]) -> None:
        if self._pending.get((pending.origin, target)) is pending:
            del self._pending[(pending.origin, target)]
            self.given_up += 1
            log.warn(
                "NOTIFY of {zone} serial {serial} to {target}: no answer after {tries} tries",
                zone=pending.origin,
                serial=pending.serial,
                target=target,
                tries=pending.tries + 1,
            )

    # -- answers

    def answer_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 12:
            return
        ident, flags = struct.unpack("!HH", data[:4])
        if not flags & 0x8000 or (flags >> 11) & 0xF != OPCODE_NOTIFY:
            return
        target = (str(ipaddress.ip_address(addr[0].split("%")[0])), addr[1])
        for (origin, pending_target), pending in list(self._pending.items()):
            if pending_target == target and pending.ident == ident:
                del self._pending[(origin, pending_target)]
                if pending.call is not None and pending.call.active():
                    pending.call.cancel()
                self.answered += 1
                rcode = flags & 0xF
                if rcode:
                    log.warn("NOTIFY of {zone} to {target}: rcode {rcode}", zone=origin, target=target, rcode=rcode)
                return

    @property
    def waiting(self) -> int:
        return len(self._pending)
