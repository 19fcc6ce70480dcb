"""
One closed-loop load generator (non-blocking sockets, one selector loop in
this process: an asyncio client cost ~3 times the CPU per exchange, and the
client shares the two CPUs with the server), the measured phase around it
(settle, count, drain: rate, latency, CPU, SQLite commits) and the order of
alternating rounds against several servers.
"""

from __future__ import annotations

import argparse
import selectors
import time
from typing import Any, Iterator, Sequence

from bench.harness.meter import CPUMeter, percentiles, wait_quiet
from bench.harness.procs import BenchError, note
from bench.harness.tools import py_spy
from bench.harness.users import addresses_of, read_generation


class Tally:
    """What completes while one phase of a load is current: successes with their
    latencies, and every other outcome by kind (with a few samples)."""

    def __init__(self, name: str) -> None:
        self.name, self.ok, self.started, self.seconds = name, 0, time.perf_counter(), 0.0
        self.latencies: list[float] = []
        self.other: dict[str, int] = {}
        self.samples: list[str] = []

    def count(self, kind: str, sample: str = "") -> None:
        self.other[kind] = self.other.get(kind, 0) + 1
        if sample and len(self.samples) < 5:
            self.samples.append(sample)


class User:
    """
    One user of a load: its updates alternate between two addresses (or
    C{values}: other values of the record its updates change); what was
    acknowledged.
    """

    __slots__ = ("i", "name", "addresses", "secret", "acked", "last", "uncertain")

    def __init__(self, i: int, secret: Any = None, values: Sequence[str] = ()) -> None:
        self.i, self.name, self.secret = i, f"user{i}", secret
        self.addresses = tuple(values) or addresses_of(i)[:2]
        self.acked = 0  # also the turn: its next update goes to addresses[acked % 2]
        self.last: str | None = None
        self.uncertain = False  # a request failed: it may or may not have been applied

    def expected(self) -> tuple[set[str], str | None]:
        """For L{check_final}: the addresses it may have, the one it must have (None: either)."""
        return set(self.addresses), None if self.uncertain else self.last


class Load:
    """
    One request in flight per slot (C{slots}): subclasses L{send} it, handle a
    ready socket (L{readable}) and give up on old ones (L{expire}, every 0.1 s).
    C{inflight}: key -> object with a C{started}; answers count in C{phase}.
    """

    def __init__(self, timeout: float, label: str = "ours") -> None:
        self.timeout, self.label, self.phase, self.running = timeout, label, Tally("start"), False
        self.selector = selectors.DefaultSelector()
        self.inflight: dict[int, Any] = {}
        self.slots: list[Any] = []

    def start(self) -> None:
        self.running = True
        for slot in self.slots:
            self.send(slot)

    def send(self, slot: Any) -> None:
        raise NotImplementedError

    def readable(self, key: selectors.SelectorKey) -> None:
        raise NotImplementedError

    def expire(self, now: float) -> None:
        raise NotImplementedError

    def answered(self, user: User, address: str, started: float, error: str = "") -> None:
        """One answer: acknowledged if no C{error}."""
        self.phase.latencies.append(time.perf_counter() - started)
        if error:
            self.phase.count(error, f"{user.name} {address}: {error}")
        else:
            self.phase.ok += 1
            user.acked, user.last = user.acked + 1, address

    def abandon(self) -> None:
        """Forget what is still in flight after a stop."""
        self.inflight.clear()

    def run_until(self, end: float) -> None:
        check = time.perf_counter() + 0.1
        while (now := time.perf_counter()) < end and (self.running or self.inflight):
            for key, _events in self.selector.select(min(end - now, 0.05)):
                self.readable(key)
            if now >= check:
                check = now + 0.1
                self.expire(now)

    def stop(self, wait: float) -> int:
        """Start nothing new; wait for the requests in flight. Returns those stuck."""
        self.running = False
        self.run_until(time.perf_counter() + wait)
        stuck = len(self.inflight)
        self.abandon()
        return stuck


def measure(
    load: Load, name: str, seconds: float, settle: float, pid: int, store: str | None = None, spy: Any = None
) -> dict[str, Any]:
    """
    Run C{load} for C{settle + seconds}, count the last C{seconds} (CPU, and
    SQLite commits if C{store}; L{py_spy} if C{spy}), then drain.
    """
    load.phase = Tally(f"{name} (settle)")
    load.start()
    load.run_until(time.perf_counter() + settle)
    phase = load.phase = Tally(name)
    meter, generation = CPUMeter({"server": pid}), read_generation(store) if store else 0
    with py_spy(spy, pid, seconds):
        load.run_until(phase.started + seconds)
        phase.seconds = time.perf_counter() - phase.started
        load.phase = Tally(f"{name} (drain)")
        cpu = meter.read()
        commits: int | None = read_generation(store) - generation if store else None
        stuck = load.stop(load.timeout + 2)
    ok = max(phase.ok, 1)
    result = dict(
        name=name,
        seconds=round(phase.seconds, 3),
        ok=phase.ok,
        ok_per_s=phase.ok / phase.seconds,
        latency_ms=percentiles(phase.latencies),
        other=phase.other,
        samples=phase.samples,
        server=load.label,
        cpu=cpu,
        commits=commits,
        updates_per_commit=round(phase.ok / max(commits, 1), 2) if commits is not None else None,
        server_cpu_us_per_update=round(1e6 * cpu["server"]["cpu_s"] / ok, 1),
        client_cpu_us_per_update=round(1e6 * cpu["client_s"] / ok, 1),
        stuck=stuck,
        drain=load.phase.other,
        _latencies=phase.latencies,
    )
    note(f"{name}: {result['ok_per_s']:.0f} updates/s, p99 {result['latency_ms']['p99']} ms")
    return result


def rounds(args: argparse.Namespace, labels: list[str], deadline: float, needs: float) -> Iterator[tuple[int, str]]:
    """
    (round, label) for C{args.rounds} rounds, the order alternating (so that
    a slow phase of a shared machine hits every server), each after waiting
    up to C{args.wait_quiet} s for an idle machine if C{needs} s are left.
    """
    for r in range(1, args.rounds + 1):
        for label in labels if r % 2 else labels[::-1]:
            if time.monotonic() + needs + 10 > deadline:
                raise BenchError("not enough time left for another round")
            wait_quiet(min(args.wait_quiet, deadline - time.monotonic() - needs - 20))
            yield r, label


def summary(slots: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the measured slots: updates/s, latency, the least server CPU per update, slots disturbed."""
    ok, seconds = sum(s["ok"] for s in slots), sum(s["seconds"] for s in slots)
    return {
        "updates_per_s": round(ok / seconds),
        "latency_ms": percentiles([x for s in slots for x in s["_latencies"]]),
        "server_cpu_us_per_update": min(s["server_cpu_us_per_update"] for s in slots),
        "disturbed": sum(s["cpu"]["disturbed"] for s in slots),
    }


def slot_problems(slots: list[dict[str, Any]]) -> list[str]:
    """Every slot's failed requests, those answered after it and those stuck; its latencies dropped."""
    for s in slots:
        del s["_latencies"]
    return [
        f"{s['name']}: {s['other']}, drain {s['drain']}, stuck {s['stuck']} e.g. {s['samples'][:2]}"
        for s in slots
        if s["other"] or s["drain"] or s["stuck"]
    ]
