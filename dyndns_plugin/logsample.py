"""
Bounded logging for events that untrusted input can trigger at will
(malformed packets, refused credentials, rate-limited sources): at most
C{burst} lines per C{interval} seconds per kind, and one summary line with
the number left out when the next interval begins. A flood then costs a
few lines a minute, never a line per packet; count such events in
C{/metrics} instead. With C{flush=True} the summary comes when the interval
ends even if no event of the kind follows (the audit trail must show the
count of a flood that stopped).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


class LogSampler:
    """
    C{sampler.info(kind, format, **fields)} logs like C{Logger.info} while
    C{kind} has budget left in this interval, and drops the line otherwise.

    @param clock: the reactor (C{seconds()}), so tests can use C{task.Clock}.
    @param summary_fields: fields added to every summary event (the audit
        log marks its own).
    @param flush: write a kind's summary when its interval ends (a timer of
        C{clock}), not only when the next event of the kind comes.
    """

    def __init__(
        self,
        log: Logger,
        clock: IReactorTime | None = None,
        burst: int = 10,
        interval: float = 60.0,
        summary_fields: dict[str, Any] | None = None,
        flush: bool = False,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as default_clock

            clock = default_clock  # type: ignore[assignment]
        self.log = log
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.burst = burst
        self.interval = interval
        self.summary_fields = dict(summary_fields or {})
        self.flush = flush
        #: kind -> [interval start, lines logged, lines dropped]
        self._kinds: dict[str, list[float]] = {}
        #: kind -> the pending summary of its interval (with C{flush})
        self._flushes: dict[str, IDelayedCall] = {}

    def _summary(self, kind: str, entry: list[float], now: float) -> None:
        self.log.info(
            "{dropped} more {kind} events in the last {seconds:.0f} s were not logged",
            dropped=int(entry[2]),
            kind=kind,
            seconds=now - entry[0],
            **self.summary_fields,
        )

    def _flush_kind(self, kind: str) -> None:
        """The summary of C{kind}'s interval, which has ended; the next event starts afresh."""
        self._flushes.pop(kind, None)
        entry = self._kinds.pop(kind, None)
        if entry is not None and entry[2]:
            self._summary(kind, entry, self.clock.seconds())

    def allow(self, kind: str) -> bool:
        """Whether a line of C{kind} may be written now (and count it)."""
        now = self.clock.seconds()
        entry = self._kinds.get(kind)
        if entry is None or now - entry[0] >= self.interval:
            if entry is not None and entry[2]:
                self._summary(kind, entry, now)
            pending = self._flushes.pop(kind, None)
            if pending is not None and pending.active():
                pending.cancel()
            if len(self._kinds) > 1000:  # kinds are fixed strings; stay bounded anyway
                self._kinds.clear()
            entry = self._kinds[kind] = [now, 0, 0]
        if entry[1] < self.burst:
            entry[1] += 1
            return True
        entry[2] += 1
        if self.flush and kind not in self._flushes:
            wait = max(0.0, entry[0] + self.interval - now)
            self._flushes[kind] = self.clock.callLater(wait, self._flush_kind, kind)
        return False

    def info(self, kind: str, format: str, **fields: Any) -> None:
        if self.allow(kind):
            self.log.info(format, **fields)

    def warn(self, kind: str, format: str, **fields: Any) -> None:
        if self.allow(kind):
            self.log.warn(format, **fields)
