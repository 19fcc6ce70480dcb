"""
Bounded logging for events that untrusted input can trigger at will
(malformed packets, refused credentials, rate-limited sources): at most
C{burst} lines per C{interval} seconds per kind, and one summary line with
the number left out when the next interval begins. A flood then costs a
few lines a minute, never a line per packet; count such events in
C{/metrics} instead.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger


class LogSampler:
    """
    C{sampler.info(kind, format, **fields)} logs like C{Logger.info} while
    C{kind} has budget left in this interval, and drops the line otherwise.

    @param clock: the reactor (C{seconds()}), so tests can use C{task.Clock}.
    """

    def __init__(
        self,
        log: Logger,
        clock: IReactorTime | None = None,
        burst: int = 10,
        interval: float = 60.0,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as default_clock

            clock = default_clock  # type: ignore[assignment]
        self.log = log
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.burst = burst
        self.interval = interval
        #: kind -> [interval start, lines logged, lines dropped]
        self._kinds: dict[str, list[float]] = {}

    def allow(self, kind: str) -> bool:
        """Whether a line of C{kind} may be written now (and count it)."""
        now = self.clock.seconds()
        entry = self._kinds.get(kind)
        if entry is None or now - entry[0] >= self.interval:
            if entry is not None and entry[2]:
                self.log.info(
                    "{dropped} more {kind} events in the last {seconds:.0f} s were not logged",
                    dropped=int(entry[2]),
                    kind=kind,
                    seconds=now - entry[0],
                )
            if len(self._kinds) > 1000:  # kinds are fixed strings; stay bounded anyway
                self._kinds.clear()
            entry = self._kinds[kind] = [now, 0, 0]
        if entry[1] < self.burst:
            entry[1] += 1
            return True
        entry[2] += 1
        return False

    def info(self, kind: str, format: str, **fields: Any) -> None:
        if self.allow(kind):
            self.log.info(format, **fields)

    def warn(self, kind: str, format: str, **fields: Any) -> None:
        if self.allow(kind):
            self.log.warn(format, **fields)
