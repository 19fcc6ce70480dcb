"""
One CPU and memory meter (the servers per thread, this process and its
children, kernel threads, interrupts, everybody else, steal), an idle-machine
wait for shared machines, and one percentile function.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any, Callable

from bench.harness.procs import note

TICK = os.sysconf("SC_CLK_TCK")
#: A run is disturbed if other programs used (or the hypervisor stole) more
#: than this share of one CPU meanwhile (two CPUs, shared with other work).
DISTURBED = 0.05


def _stat(path: str) -> tuple[str, float]:
    """(parent pid, CPU seconds user + system) from a /proc stat file; ("", 0) if gone."""
    try:
        with open(path) as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return "", 0.0
    return fields[1], (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of C{pid}, by thread id."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:  # gone: the caller notices
        return {}
    stats = {int(tid): _stat(f"/proc/{pid}/task/{tid}/stat") for tid in tids}
    return {tid: cpu for tid, (parent, cpu) in stats.items() if parent}  # a thread gone meanwhile: left out


def _system() -> dict[str, float]:
    """System-wide CPU seconds: C{task} (user+nice+system), C{irq}, C{steal}."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return {"task": sum(v[:3]) / TICK, "irq": (v[5] + v[6]) / TICK, "steal": (v[7] if len(v) > 7 else 0) / TICK}


def _client() -> float:
    """This process and its reaped children (dnsperf, wrk...)."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def _kernel_threads() -> float:
    """CPU seconds of all kernel threads (children of kthreadd: kworker, jbd2...)."""
    stats = [(pid, *_stat(f"/proc/{pid}/stat")) for pid in os.listdir("/proc") if pid.isdigit()]
    return sum(cpu for pid, parent, cpu in stats if pid == "2" or parent == "2")


def _tcp_drops() -> dict[str, int]:
    """TcpExt counters that show a listen queue overflowing."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    ext = next(
        zip(names.split(), values.split()) for names, values in zip(lines[::2], lines[1::2]) if names[:7] == "TcpExt:"
    )
    return {name: int(value) for name, value in ext if name in ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop")}


class CPUMeter:
    """CPU time used between construction and L{read}, by whom."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids, self.started = pids, time.monotonic()
        self.threads = {label: thread_cpu(pid) for label, pid in pids.items()}
        self.client, self.kernel = _client(), _kernel_threads()
        self.system, self.tcp = _system(), _tcp_drops()

    def read(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seconds": round(time.monotonic() - self.started, 3)}
        total = 0.0
        for label, pid in self.pids.items():
            now = thread_cpu(pid)
            used = {tid: cpu - self.threads[label].get(tid, 0.0) for tid, cpu in now.items()}
            server = sum(used.values())
            total += server
            out[label] = {"cpu_s": round(server, 2), "main_thread_s": round(used.get(pid, 0.0), 2), "threads": len(now)}
        client, kernel = _client() - self.client, _kernel_threads() - self.kernel
        system = {k: v - self.system[k] for k, v in _system().items()}
        out.update(
            client_s=round(client, 2),
            kernel_threads_s=round(kernel, 2),
            irq_s=round(system["irq"], 2),
            steal_s=round(system["steal"], 2),
            # what processes used beyond ours: another program, i.e. noise
            others_s=round(max(0.0, system["task"] - total - client - kernel), 2),
            tcp_drops={k: v - self.tcp.get(k, 0) for k, v in _tcp_drops().items()},
        )
        out["disturbed"] = out["others_s"] + out["steal_s"] > DISTURBED * out["seconds"]
        return out


def rss(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak) and RssAnon of C{pid}, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM", "RssAnon")}


def _wait_below(used: Callable[[], float], share: float, window: float, limit: float) -> tuple[float, float]:
    """Until C{used()} (CPU seconds) grows by less than C{share} of a CPU over C{window} s, at most
    C{limit} s: (the wait, the CPUs used over the last window)."""
    started = time.monotonic()
    while True:
        before = used()
        time.sleep(window)
        cpus = (used() - before) / window
        if cpus < share or time.monotonic() > started + limit:
            return round(time.monotonic() - started, 2), cpus


def wait_quiet(limit: float) -> None:
    """Wait (at most C{limit} s) until the machine uses < 10% of one CPU over 2 s."""
    if limit > 0 and _wait_below(lambda: _system()["task"], 0.1, 2.0, limit)[1] >= 0.1:
        note("machine still busy; measuring anyway")


def wait_idle(pid: int, limit: float) -> float:
    """Until C{pid} uses < 5% of a CPU over 0.5 s (at most C{limit}); the wait."""
    return _wait_below(lambda: sum(thread_cpu(pid).values()), 0.05, 0.5, limit)[0]


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of durations in seconds, in milliseconds (all 0 if none)."""
    ordered = sorted(seconds) or [0.0]
    n = len(ordered)
    out = {f"p{round(100 * q)}": 1000 * ordered[min(n - 1, int(q * n))] for q in (0.5, 0.9, 0.99)}
    out.update(max=1000 * ordered[-1], mean=1000 * sum(ordered) / n)
    return {k: round(v, 3) for k, v in out.items()}
