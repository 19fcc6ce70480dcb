#!/usr/bin/env python
"""
GnuDIP TCP update throughput benchmark for dyndns_plugin (not a test).

One run measures durable updates per second and the exchange latency of the
GnuDIP direct TCP protocol under many concurrent connections:

 1. the server is a real C{twistd -n dyndns} process with the SQLite store
    (WAL, C{synchronous=FULL}: an acknowledged update is on disk), a
    C{[gnudip]} TCP listener on 127.0.0.1 and a free port, and N users
    (default 64) C{user1..userN} with the MD5 verifier of their password
    (C{User(md5_verifier=md5_verifier(pw))}) and an initial address, written
    with C{SQLiteUserStore.import_users} before the start;
    C{gnudip.max_connections_per_source} is set to twice the concurrency,
    since all the load comes from 127.0.0.1;
 2. the load is C{--concurrency} (default 64) connections at a time from
    this process (plain non-blocking sockets and one epoll loop: an asyncio
    client needed ~3 times the CPU per exchange, and the client shares the
    two CPUs with the server). Each connection slot owns its users (one
    exchange in flight per user) and runs exchanges back to back: connect,
    read the salt line, send
    C{user:md5hex(md5hex(pw).salt):dyn.example.com:0:<addr>\\n}, read the
    reply line, close. A user's requests alternate between two addresses
    (neither is its initial one), so every request is a real change, i.e.
    one durable SQLite write; the reply must be C{0};
 3. a warm-up, then C{--rounds} rounds of C{--duration} seconds, each
    started afresh (optionally after waiting for an idle machine,
    C{--wait-quiet}) with C{--settle} seconds not counted: exchanges
    completed per second, latency from connect to reply (p50/p90/p99/max),
    replies other than C{0} and connection errors, the server's CPU time
    (main thread and the others), the client's, kernel threads' and
    interrupts', and everybody else's (other programs; a round where they
    used, or the hypervisor stole, more than 5% of a CPU is marked
    DISTURBED), SQLite commits (the
    group-commit factor), and the kernel's listen-queue overflow counters
    (system-wide);
 4. afterwards the server is killed with SIGKILL and the SQLite file is
    checked: every user must be at the address of its last acknowledged
    update (one exchange per user at a time, so the last one acknowledged is
    the last one sent), via C{gnudip-tcp}.

The server runs with its defaults otherwise: C{service.log_updates} false
(C{--log-updates} turns the per-update log line on), the listen backlog
Twisted's 50 (C{--backlog N}).

Everything lives in a temporary directory; every process is stopped on exit,
also on errors, and a hard C{--timeout} applies.

    python bench/gnudip_tcp.py                        # the default run (~40 s)
    python bench/gnudip_tcp.py --wait-quiet 30        # on a shared machine
    python bench/gnudip_tcp.py -c 128 --users 256     # more connections
    python bench/gnudip_tcp.py --py-spy /tmp/g.txt    # profile round 1 with py-spy
    python bench/gnudip_tcp.py --json results.json    # also write the numbers

The exit status is 1 if any reply, connection or the final store state was
wrong.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import re
import resource
import shlex
import shutil
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dns_qps import write_config as write_server_config  # noqa: E402
from dns_qps import (  # noqa: E402  (shared helpers of the DNS benchmark)
    BenchError,
    Processes,
    Timeout,
    addresses_in,
    free_port,
    log_problems,
    log_tail,
    note,
    query,
    twistd,
    wait_quiet,
)

SUFFIX = "dyn.example.com"
HOST = "127.0.0.1"
MAX_USERS = 65535
#: A round is disturbed if other processes used (or the hypervisor stole)
#: more than this share of one CPU meanwhile (two CPUs, shared machine).
DISTURBED = 0.05


def noise(cpu: dict[str, Any]) -> float:
    """CPU seconds that other programs used or the hypervisor stole."""
    return float(cpu["other_cpu_s"]) + float(cpu["steal_s"])


def password_of(i: int) -> str:
    return f"gnudip-bench-{i}"


def addresses_of(i: int) -> tuple[str, str, str]:
    """User C{i}'s two benchmark addresses and its initial address."""
    hi, lo = (i >> 8) & 255, i & 255
    return f"10.1.{hi}.{lo}", f"10.2.{hi}.{lo}", f"10.3.{hi}.{lo}"


def md5hex(text: str) -> str:
    return hashlib.md5(text.encode("ascii")).hexdigest()


# -- building the SQLite store (in a child process: it runs a reactor)


def make_store_main(path: str, count: int) -> None:
    """C{_make-store PATH COUNT}: GnuDIP users with an initial address."""
    from twisted.internet import defer, task

    from dyndns_plugin import HostState, SQLiteUserStore, User
    from dyndns_plugin.passwords import md5_verifier

    async def build(reactor: Any) -> None:
        started = time.monotonic()
        users = [User(id=f"user{i}", md5_verifier=md5_verifier(password_of(i)))
                 for i in range(1, count + 1)]
        states = [HostState(f"user{i}", ipv4=addresses_of(i)[2], ttl=30, updated_at=0.0)
                  for i in range(1, count + 1)]
        store = SQLiteUserStore(path, reactor)
        await store.open()
        try:
            await store.import_users(users, states)
        finally:
            await store.close()
        print(json.dumps({"users": count, "import_s": round(time.monotonic() - started, 3)}),
              flush=True)

    task.react(lambda reactor: defer.ensureDeferred(build(reactor)))


def build_store(tmp: str, store: str, users: int, deadline: float, argv0: str) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, argv0, "_make-store", store, str(users)],
        capture_output=True, text=True, timeout=max(10, deadline - time.monotonic()),
        stdin=subprocess.DEVNULL,
    )
    if run.returncode != 0:
        raise BenchError(f"building the store failed:\n{run.stdout}\n{run.stderr}")
    return [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")][0]


# -- the server


def write_config(tmp: str, store: str, dns_port: int, gnudip_port: int,
                 per_source: int, backlog: int = 0, log_updates: bool = False) -> str:
    endpoint = f"tcp:{gnudip_port}:interface={HOST}"
    if backlog:
        endpoint += f":backlog={backlog}"
    return write_server_config(tmp, "server", store, dns_port, log_updates, f"""
[gnudip]
listen = ["{endpoint}"]
timeout = 30
max_connections_per_source = {per_source}
""")


def wait_dns_ready(proc: subprocess.Popen[bytes], port: int, name: str, expected: str,
                   deadline: float, log: str) -> None:
    """Poll until C{name} answers C{expected}: the store is loaded."""
    import dns.exception

    while True:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}:\n{log_tail(log)}"
                             f"\n{log_tail(log + '.out')}")
        if time.monotonic() > deadline:
            raise Timeout(f"server on port {port} not ready in time:\n{log_tail(log)}")
        try:
            if addresses_in(query(port, name, timeout=0.2)) == {expected}:
                return
        except (dns.exception.Timeout, OSError):
            pass
        time.sleep(0.05)


def start_server(procs: Processes, tmp: str, store: str, users: int, per_source: int,
                 deadline: float, command: list[str], backlog: int = 0,
                 log_updates: bool = False
                 ) -> tuple[subprocess.Popen[bytes], int, str, list[str], float]:
    dns_port = free_port()
    gnudip_port = free_port()
    config = write_config(tmp, store, dns_port, gnudip_port, per_source, backlog,
                          log_updates)
    log = os.path.join(tmp, "server.log")
    argv = command + [f"--logfile={log}", "dyndns", "--config", config]
    started = time.monotonic()
    proc = procs.start(argv, log + ".out")
    wait_dns_ready(proc, dns_port, f"user{users}.{SUFFIX}", addresses_of(users)[2],
                   deadline, log)
    return proc, gnudip_port, log, argv, time.monotonic() - started


# -- CPU and kernel counters


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of C{pid}, by thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def cpu_stat() -> dict[str, float]:
    """
    System-wide CPU seconds from /proc/stat: C{task} (user + nice + system:
    time charged to processes and kernel threads), C{irq} (hard and soft
    interrupts), C{steal}.
    """
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    return {"task": (user + nice + system) / ticks, "irq": (irq + softirq) / ticks,
            "steal": steal / ticks}


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def kernel_threads_cpu() -> float:
    """CPU seconds of all kernel threads (children of kthreadd: kworker, jbd2...)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if pid == "2" or fields[1] == "2":
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def tcp_counters() -> dict[str, int]:
    """TcpExt counters that show a listen queue overflowing (SYNs dropped)."""
    wanted = ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPTimeouts")
    out: dict[str, int] = {}
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if not names.startswith("TcpExt:"):
            continue
        for name, value in zip(names.split()[1:], values.split()[1:]):
            if name in wanted:
                out[name] = int(value)
    return out


class CPUMeter:
    """
    CPU time of one or more servers (per thread), of this process (the
    client), and of everything else on the machine.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.threads = {label: thread_cpu(pid) for label, pid in pids.items()}
        self.client = self_cpu()
        self.kernel = kernel_threads_cpu()
        self.stat = cpu_stat()
        self.tcp = tcp_counters()

    def read(self) -> dict[str, Any]:
        out: dict[str, Any] = {"servers": {}}
        total = 0.0
        for label, pid in self.pids.items():
            before = self.threads[label]
            now = thread_cpu(pid)
            used = {tid: cpu - before.get(tid, 0.0) for tid, cpu in now.items()}
            server = sum(used.values())
            total += server
            out["servers"][label] = {
                "cpu_s": round(server, 2),
                "main_thread_cpu_s": round(used.get(pid, 0.0), 2),
                "other_threads_cpu_s": round(server - used.get(pid, 0.0), 2),
                "threads": len(now),
            }
        client = self_cpu() - self.client
        kernel = kernel_threads_cpu() - self.kernel
        stat = {k: v - self.stat[k] for k, v in cpu_stat().items()}
        out["client_cpu_s"] = round(client, 2)
        # Kernel threads (I/O completion, journaling, softirq threads) and
        # interrupts (disk completions of fsync, loopback packets) work for
        # the servers; what processes used beyond the servers and the client
        # is another program: noise.
        out["kernel_threads_cpu_s"] = round(kernel, 2)
        out["irq_cpu_s"] = round(stat["irq"], 2)
        out["other_cpu_s"] = round(max(0.0, stat["task"] - total - client - kernel), 2)
        out["steal_s"] = round(stat["steal"], 2)
        tcp = tcp_counters()
        out["tcp"] = {k: v - self.tcp.get(k, 0) for k, v in tcp.items()}
        return out


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of C{values} (seconds) in milliseconds."""
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float:
        return 1000 * ordered[min(n - 1, int(q * n))]

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99),
            "max": 1000 * ordered[-1], "mean": 1000 * sum(ordered) / n}


# -- the load generator


class Phase:
    """What completes while a phase (warm-up, a round, the drain) is current."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ok = 0
        self.latencies: list[float] = []
        self.replies: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.samples: list[str] = []
        self.started = time.perf_counter()
        self.seconds = 0.0
        self.extra: dict[str, Any] = {}

    def error(self, kind: str, sample: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if len(self.samples) < 5:
            self.samples.append(sample)

    def result(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
            "ok_per_s": self.ok / self.seconds if self.seconds else 0.0,
            "latency_ms": percentiles(self.latencies),
            "replies": self.replies,
            "errors": self.errors,
            "samples": self.samples,
            **self.extra,
        }


class UserLoad:
    """One user's benchmark state: whose turn, what was acknowledged."""

    __slots__ = ("i", "name", "addresses", "md5pw", "turn", "sent", "acked", "last",
                 "uncertain")

    def __init__(self, i: int) -> None:
        self.i = i
        self.name = f"user{i}"
        a, b, _initial = addresses_of(i)
        self.addresses = (a, b)
        self.md5pw = md5hex(password_of(i)).encode("ascii")
        self.turn = 0
        self.sent = 0
        self.acked = 0
        self.last: str | None = None
        self.uncertain = False


class _Conn:
    """One exchange in flight: a non-blocking socket and where it stands."""

    __slots__ = ("sock", "user", "address", "started", "salt_seen", "buffer", "slot")

    def __init__(self, sock: socket.socket, user: UserLoad, address: str, slot: int) -> None:
        self.sock = sock
        self.user = user
        self.address = address
        self.started = time.perf_counter()
        self.salt_seen = False
        self.buffer = b""
        self.slot = slot


class LoadGenerator:
    """
    C{concurrency} connections at a time, on plain non-blocking sockets and
    one epoll selector (an asyncio client costs ~3 times the CPU per
    exchange, and the client shares the two CPUs with the server). Slot k
    runs the exchanges of users k, k + C, k + 2C, ... one after another, so
    one exchange per user is in flight.
    """

    def __init__(self, port: int, users: list[UserLoad], concurrency: int,
                 exchange_timeout: float) -> None:
        self.port = port
        self.users = users
        self.concurrency = concurrency
        self.exchange_timeout = exchange_timeout
        self.phase = Phase("start")
        self.running = False
        self.selector = selectors.DefaultSelector()
        self.inflight: dict[int, _Conn] = {}  # by fd
        self.shares: list[list[UserLoad]] = [[] for _ in range(concurrency)]
        for k, user in enumerate(users):
            self.shares[k % concurrency].append(user)
        self.cursor = [0] * concurrency
        #: Slots whose last exchange failed: (when to go on, slot).
        self.resting: list[tuple[float, int]] = []

    def start(self) -> None:
        self.running = True
        for slot in range(self.concurrency):
            self._next(slot)

    def _next(self, slot: int) -> None:
        share = self.shares[slot]
        user = share[self.cursor[slot] % len(share)]
        self.cursor[slot] += 1
        address = user.addresses[user.turn % 2]
        user.sent += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        conn = _Conn(sock, user, address, slot)
        err = sock.connect_ex((HOST, self.port))
        if err not in (0, errno.EINPROGRESS):
            self._fail(conn, "connect", OSError(err, os.strerror(err)), registered=False)
            return
        self.inflight[sock.fileno()] = conn
        # The salt is the first thing to read; a failed connect shows as an
        # error when reading.
        self.selector.register(sock, selectors.EVENT_READ, conn)

    def _finish(self, conn: _Conn) -> None:
        self.selector.unregister(conn.sock)
        del self.inflight[conn.sock.fileno()]
        conn.sock.close()
        if self.running:
            self._next(conn.slot)

    def _fail(self, conn: _Conn, where: str, error: BaseException,
              registered: bool = True) -> None:
        # It may or may not have been applied: the user's final state is one
        # of its two addresses, not necessarily this one.
        conn.user.uncertain = True
        kind = f"{where}: {type(error).__name__}"
        self.phase.error(kind, f"{conn.user.name} {conn.address}: {kind}: {error}")
        if registered:
            self.selector.unregister(conn.sock)
            del self.inflight[conn.sock.fileno()]
        conn.sock.close()
        # Go on after a short pause, not at once (a refused connect would spin).
        self.resting.append((time.perf_counter() + 0.01, conn.slot))

    def _readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as e:
            self._fail(conn, "recv", e)
            return
        if not data:
            state = "reply" if conn.salt_seen else "salt"
            self._fail(conn, "recv", ConnectionError(
                f"closed before the {state} (got {conn.buffer[:40]!r})"))
            return
        conn.buffer += data
        if not conn.salt_seen:
            line, found, rest = conn.buffer.partition(b"\n")
            if not found:
                return
            conn.salt_seen, conn.buffer = True, rest
            user = conn.user
            proof = hashlib.md5(user.md5pw + b"." + line).hexdigest()
            try:
                conn.sock.send(f"{user.name}:{proof}:{SUFFIX}:0:{conn.address}\n".encode())
            except OSError as e:
                self._fail(conn, "send", e)
                return
        if conn.salt_seen and b"\n" in conn.buffer:
            self._reply(conn, conn.buffer.partition(b"\n")[0])
            self._finish(conn)

    def _reply(self, conn: _Conn, reply: bytes) -> None:
        phase = self.phase
        phase.latencies.append(time.perf_counter() - conn.started)
        user = conn.user
        text = reply.decode("ascii", "replace").strip()
        if text == "0":
            phase.ok += 1
            user.acked += 1
            user.last = conn.address
            user.turn += 1
        else:
            phase.replies[text] = phase.replies.get(text, 0) + 1
            if len(phase.samples) < 5:
                phase.samples.append(f"{user.name} {conn.address}: reply {text!r}")

    def run_until(self, end: float) -> None:
        """Serve the sockets until C{end} (perf_counter), or until idle."""
        check = time.perf_counter() + 0.1
        while True:
            now = time.perf_counter()
            if now >= end or not (self.running or self.inflight):
                return
            for key, _events in self.selector.select(min(end - now, 0.05)):
                self._readable(key.data)
            if self.resting and self.running:
                due = [slot for when, slot in self.resting if when <= now]
                self.resting = [(w, k) for w, k in self.resting if w > now]
                for slot in due:
                    self._next(slot)
            if now >= check:
                check = now + 0.1
                limit = now - self.exchange_timeout
                for conn in [c for c in self.inflight.values() if c.started < limit]:
                    self._fail(conn, "exchange", TimeoutError(
                        f"no reply in {self.exchange_timeout} s"))

    def stop(self, wait: float) -> int:
        """Start nothing new; wait for the exchanges in flight. Returns those stuck."""
        self.running = False
        self.resting.clear()
        self.run_until(time.perf_counter() + wait)
        stuck = len(self.inflight)
        for conn in list(self.inflight.values()):
            self.selector.unregister(conn.sock)
            conn.sock.close()
        self.inflight.clear()
        return stuck


def read_generation(store: str) -> int:
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
    try:
        (value,) = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(value)
    finally:
        conn.close()


def run_load(args: argparse.Namespace, port: int, server_pid: int, store: str,
             procs: Processes, deadline: float) -> dict[str, Any]:
    """
    The warm-up and the rounds, each a slot of its own: (wait for a quiet
    machine,) start every connection, C{--settle} seconds not counted, the
    counted seconds, then stop and let every exchange in flight finish.
    """
    users = [UserLoad(i) for i in range(1, args.users + 1)]
    gen = LoadGenerator(port, users, args.concurrency, args.exchange_timeout)
    phases = [("warm-up", args.warmup)] if args.warmup else []
    phases += [(f"round {r}", args.duration) for r in range(1, args.rounds + 1)]
    results = []
    drained: list[dict[str, Any]] = []
    measured: list[float] = []
    stuck = 0
    for name, seconds in phases:
        if time.monotonic() + seconds + args.settle + args.exchange_timeout + 10 > deadline:
            raise Timeout("not enough time left for another round")
        if args.wait_quiet and name != "warm-up":
            wait_quiet(min(args.wait_quiet, deadline - time.monotonic() - seconds - 30))
        gen.phase = Phase(f"{name} (settle)")
        spy = None
        try:
            gen.start()
            gen.run_until(time.perf_counter() + args.settle)
            phase = Phase(name)
            meter = CPUMeter({"ours": server_pid})
            generation = read_generation(store)
            if name == "round 1" and args.py_spy:
                spy = procs.start(
                    [args.py_spy_bin, "record", "-p", str(server_pid), "-d",
                     str(int(seconds)), "-r", "100", "--threads", "--idle", "--format", "raw",
                     "-o", args.py_spy], args.py_spy + ".log")
            gen.phase = phase
            gen.run_until(phase.started + seconds)
            phase.seconds = time.perf_counter() - phase.started
            gen.phase = Phase(f"{name} (drain)")
            cpu = meter.read()
            phase.extra["commits"] = read_generation(store) - generation
        finally:
            drain = gen.phase
            stuck += gen.stop(args.exchange_timeout + 2)
            if spy is not None:
                try:
                    spy.wait(15)
                except subprocess.TimeoutExpired:
                    pass
                procs.stop(spy)
        drained.append(drain.result())
        phase.extra["cpu"] = cpu
        s = cpu["servers"]["ours"]
        phase.extra["server_cpu_us_per_update"] = round(1e6 * s["cpu_s"] / max(phase.ok, 1), 1)
        phase.extra["main_cpu_us_per_update"] = round(
            1e6 * s["main_thread_cpu_s"] / max(phase.ok, 1), 1)
        phase.extra["client_cpu_us_per_update"] = round(
            1e6 * cpu["client_cpu_s"] / max(phase.ok, 1), 1)
        result = phase.result()
        results.append(result)
        if name.startswith("round"):
            measured.extend(phase.latencies)
        _print_phase(result)
    return {"phases": results, "drained": drained, "users": users,
            "all_latency_ms": percentiles(measured), "stuck_workers": stuck}


def _print_phase(r: dict[str, Any]) -> None:
    lat, cpu = r["latency_ms"], r["cpu"]
    s = cpu["servers"]["ours"]
    tcp = ", ".join(f"{k} {v}" for k, v in cpu["tcp"].items() if v) or "none"
    print(f"    {r['name']:8} {r['ok_per_s']:8.1f} updates/s ({r['ok']} in {r['seconds']:.2f} s); "
          f"latency p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, max {lat['max']:.1f} ms; "
          f"other replies {r['replies'] or 0}, errors {r['errors'] or 0}; "
          f"{r['commits']} commits; server cpu {s['cpu_s']} s "
          f"(main {s['main_thread_cpu_s']}, other threads {s['other_threads_cpu_s']}), "
          f"client {cpu['client_cpu_s']} s, kernel threads {cpu['kernel_threads_cpu_s']} s, "
          f"irq {cpu['irq_cpu_s']} s, others {cpu['other_cpu_s']} s, steal {cpu['steal_s']} s; "
          f"tcp drops: {tcp}",
          flush=True)


# -- the store, read from outside


def check_store(store: str, users: list[UserLoad], method: str) -> dict[str, Any]:
    """Every user's final state in the file against what the client saw."""
    conn = sqlite3.connect(store, timeout=10)
    try:
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
        rows = {row[0]: row[1:] for row in conn.execute(
            "SELECT user_id, ipv4, ipv6, offline, method FROM states")}
    finally:
        conn.close()
    problems: list[str] = []
    exact = loose = 0
    if integrity != "ok":
        problems.append(f"integrity_check: {integrity}")
    for user in users:
        row = rows.get(user.name)
        if row is None:
            problems.append(f"{user.name}: no state")
            continue
        ipv4, ipv6, offline, got_method = row
        if user.acked == 0:
            problems.append(f"{user.name}: no update was acknowledged")
            continue
        if ipv4 not in user.addresses or ipv6 is not None or offline or got_method != method:
            problems.append(f"{user.name}: state {row}, expected one of {user.addresses} "
                            f"via {method}")
        elif user.uncertain:
            loose += 1
        else:
            exact += 1
            if ipv4 != user.last:
                problems.append(f"{user.name}: store has {ipv4}, last acknowledged {user.last}")
    return {"integrity": integrity, "problems": problems, "exact": exact, "loose": loose}


# -- py-spy profile summary


_LOGGING = [r"^Logger\.(info|emit|failure|debug|warn|error) ", r"^LogPublisher",
            r"^FileLogObserver", r"formatEvent", r"^formatTime ", r"LogFile\.write",
            r"^BaseLogFile", r"^LoggingFile", r"^_legacyObserver"]
_REACTOR = [r"runUntilCurrent", r"_Waker", r"wakeUp", r"callFromThread", r"doIteration",
            r"^EPollReactor\."]

#: Where a main-thread sample of the GnuDIP server goes: walking from the
#: innermost frame outwards, the first frame that matches a category decides
#: (so a log call made inside the service counts as logging). Heuristic.
GNUDIP_CATEGORIES: list[tuple[str, list[str]]] = [
    ("idle (epoll wait)", [r"^EPollReactor\.doPoll "]),  # only as the innermost frame
    ("logging (a line per update)", _LOGGING),
    ("salt (make_salt: 10 x secrets.choice)", [r"^make_salt"]),
    ("GnuDIP hash check", [r"check_gnudip", r"^gnudip_hash"]),
    ("service: update, registry, hand-off to SQLite",
     [r"^DynDNSService\.", r"^Registry\.", r"^SQLiteUserStore\.", r"^_Worker\.submit"]),
    ("parsing the request line and addresses",
     [r"^parse_line", r"^parse_address", r"^_peer ", r"^ip_address "]),
    ("TCP accept and protocol set-up",
     [r"^Port\.doRead \(tcp", r"^Server\.__init__", r"buildProtocol", r"connectionMade"]),
    ("epoll (de)registration per connection, TCP close",
     [r"^EPollReactor\.(_add|_remove|addReader|addWriter|removeReader|removeWriter) ",
      r"connectionLost", r"_closeSocket", r"loseConnection", r"_disconnectSelectable",
      r"stopReading", r"stopWriting", r"startReading", r"startWriting", r"pauseProducing"]),
    ("TCP read and write", [r"^Connection\.doRead", r"doWrite", r"writeSomeData",
                            r"^FileDescriptor\.write", r"dataReceived"]),
    ("Deferred/coroutine machinery", [r"\(defer\.py\)"]),
    ("reactor: dispatch, timers, thread wake-ups", _REACTOR),
]


_DNSPYTHON = re.compile(r"\((?:[^()]*/)?dns/[^/()]*:\d+\)$")


def profile_summary(path: str, categories: list[tuple[str, list[str]]],
                    top: int = 25) -> dict[str, Any]:
    """
    From a py-spy C{--threads --idle --format raw} file: per thread, the
    number of samples, the functions of dyndns_plugin and dnspython by
    inclusive share (each function counted once per stack), all functions by
    own (innermost) share, and for the main thread the shares of
    C{categories}.
    """
    patterns = [(label, [re.compile(p) for p in pats]) for label, pats in categories]
    threads: dict[str, dict[str, Any]] = {}
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = stack.split(";")
            name = frames[0].partition(": ")[2] or frames[0]
            functions = [_short(frame) for frame in frames[1:]]
            info = threads.setdefault(name, {"samples": 0, "inclusive": {}, "leaves": {},
                                             "categories": {}})
            info["samples"] += n
            leaf = functions[-1] if functions else "?"
            info["leaves"][leaf] = info["leaves"].get(leaf, 0) + n
            # Inclusive shares of the functions of dyndns_plugin and dnspython
            # (the Twisted frames around them are on nearly every stack).
            for function in {_short(frame) for frame in frames[1:]
                             if "dyndns_plugin/" in frame or _DNSPYTHON.search(frame)}:
                info["inclusive"][function] = info["inclusive"].get(function, 0) + n
            if name != "MainThread":
                continue
            category = "other"
            for depth, function in enumerate(reversed(functions)):
                found = next((label for label, pats in patterns
                              if (depth == 0 or not label.startswith("idle"))
                              and any(p.search(function) for p in pats)), None)
                if found:
                    category = found
                    break
            info["categories"][category] = info["categories"].get(category, 0) + n
    for info in threads.values():
        for key in ("inclusive", "leaves", "categories"):
            info[key] = dict(sorted(info[key].items(), key=lambda kv: -kv[1])[:top])
    return threads


def _short(frame: str) -> str:
    """C{func (path/to/module.py:123)} -> C{func (module.py)}."""
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not m:
        return frame
    return f"{m.group(1)} ({m.group(2).rpartition('/')[2]})"


def print_profile(threads: dict[str, Any], top: int = 15) -> None:
    print("  py-spy profile of our server during round 1 (100 Hz; share of each thread's "
          "samples):")
    for name, info in sorted(threads.items(), key=lambda kv: -kv[1]["samples"]):
        total = max(info["samples"], 1)
        print(f"    thread {name}, {total} samples")
        if info["categories"]:
            print("      by category (innermost matching frame decides):")
            for category, n in info["categories"].items():
                print(f"        {100 * n / total:5.1f}%  {category}")
            print("      functions of dyndns_plugin and dnspython, inclusive:")
            for function, n in list(info["inclusive"].items())[:top]:
                print(f"        {100 * n / total:5.1f}%  {function}")
        leaves = ", ".join(f"{fn} {100 * n / total:.0f}%"
                           for fn, n in list(info["leaves"].items())[:6])
        print(f"      innermost frames: {leaves}")


# -- report


def code_version() -> str:
    """The commit of the checkout, and whether dyndns_plugin/ differs from it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "dyndns_plugin"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return f"{head or '?'}{' + local changes in dyndns_plugin/' if dirty else ''}"


def machine() -> dict[str, Any]:
    import dns.version
    import twisted

    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "code": code_version(),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "twisted": twisted.__version__,
        "dnspython": dns.version.version,
        "sqlite": sqlite3.sqlite_version,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def summary(args: argparse.Namespace, info: dict[str, Any], out: dict[str, Any]) -> None:
    print()
    print("=" * 72)
    print("dyndns_plugin GnuDIP TCP benchmark")
    print(f"  machine: {info['nproc']} cpus, {info['cpu']}, Linux {info['kernel']}; Python "
          f"{info['python']}, Twisted {info['twisted']}, SQLite {info['sqlite']}; "
          f"{info['date']}; loadavg at start {' '.join(info['loadavg_at_start'])}; "
          f"code {info['code']}")
    print(f"  server: {' '.join(shlex.quote(a) for a in out['argv'])}")
    print(f"  {args.users} users, {args.concurrency} concurrent connections (one exchange "
          f"in flight per user), max_connections_per_source {out['per_source']}, listen "
          f"backlog {args.backlog or 'not set (50)'}, log_updates "
          f"{'true' if args.log_updates else 'false'}; server ready in "
          f"{out['startup_s']:.2f} s")
    rounds = [p for p in out["phases"] if p["name"].startswith("round")]
    drops: dict[str, int] = {}
    for r in rounds:
        for k, v in r["cpu"]["tcp"].items():
            drops[k] = drops.get(k, 0) + v
    if drops.get("ListenOverflows"):
        print(f"  kernel: the listen queue overflowed {drops['ListenOverflows']} times during "
              f"the rounds (SYNs dropped; the client retries after 1 s: the ~1 s max latency)")
    for r in rounds:
        lat, cpu = r["latency_ms"], r["cpu"]
        disturbed = noise(cpu) > DISTURBED * r["seconds"]
        print(f"  {r['name']}{' (DISTURBED)' if disturbed else ''}: "
              f"{r['ok_per_s']:.1f} durable updates/s; latency p50 "
              f"{lat['p50']:.2f} ms, p90 {lat['p90']:.2f} ms, p99 {lat['p99']:.2f} ms, max "
              f"{lat['max']:.1f} ms; {r['ok'] / max(r['commits'], 1):.1f} updates/commit; "
              f"server cpu {r['server_cpu_us_per_update']} us/update (main thread "
              f"{r['main_cpu_us_per_update']}, busy "
              f"{100 * cpu['servers']['ours']['main_thread_cpu_s'] / r['seconds']:.0f}%), "
              f"client {r['client_cpu_us_per_update']} us/update; others "
              f"{cpu['other_cpu_s']} s, steal {cpu['steal_s']} s")
    total_ok = sum(r["ok"] for r in rounds)
    total_s = sum(r["seconds"] for r in rounds)
    all_lat = out["all_latency_ms"]
    print(f"  all rounds: {total_ok / total_s:.1f} durable updates/s ({total_ok} in "
          f"{total_s:.1f} s); latency p50 {all_lat['p50']:.2f} ms, p99 {all_lat['p99']:.2f} ms")
    quiet = [r for r in rounds if noise(r["cpu"]) <= DISTURBED * r["seconds"]]
    if quiet and len(quiet) < len(rounds):
        q_ok = sum(r["ok"] for r in quiet)
        q_s = sum(r["seconds"] for r in quiet)
        print(f"  undisturbed rounds only: {q_ok / q_s:.1f} durable updates/s "
              f"({len(quiet)} of {len(rounds)} rounds)")
    bad_replies = sum(sum(p["replies"].values()) for p in out["phases"] + out["drained"])
    errors = sum(sum(p["errors"].values()) for p in out["phases"] + out["drained"])
    print(f"  replies other than 0: {bad_replies}; connection errors/timeouts: {errors}")
    for p in out["phases"] + out["drained"]:
        for sample in p["samples"][:3]:
            print(f"    e.g. ({p['name']}) {sample}")
    c = out["check"]
    print(f"  store after SIGKILL: integrity {c['integrity']}; {c['exact']} users exactly at "
          f"their last acknowledged address, {c['loose']} at one of their two (an exchange "
          f"failed); {len(c['problems'])} problems")
    for problem in c["problems"][:10]:
        print(f"    PROBLEM: {problem}")
    for problem in out["log_problems"][:3]:
        print(f"  WARNING: server log: {problem}")
    noisy = [noise(r["cpu"]) for r in rounds]
    if noisy and max(noisy) > DISTURBED * args.duration:
        print(f"  WARNING: other processes used or the hypervisor stole up to "
              f"{max(noisy):.1f} s of CPU during a round; the numbers are disturbed")
    if out.get("profile"):
        print_profile(out["profile"])
    rate = total_ok / total_s
    print(f"  target: 1,500 durable updates/s: {'MET' if rate >= 1500 else 'NOT MET'}")
    print("=" * 72)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_make-store":
        make_store_main(sys.argv[2], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=64,
                        help="users user1..userN (at least --concurrency; default 64)")
    parser.add_argument("-c", "--concurrency", type=int, default=64,
                        help="concurrent connections (default 64)")
    parser.add_argument("-d", "--duration", type=float, default=10, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up")
    parser.add_argument("--settle", type=float, default=0.5,
                        help="seconds of load before each counted round (default 0.5)")
    parser.add_argument("--exchange-timeout", type=float, default=10,
                        help="seconds one exchange may take before it counts as a timeout")
    parser.add_argument("--per-source", type=int, default=0,
                        help="gnudip.max_connections_per_source (default: 2 x concurrency)")
    parser.add_argument("--log-updates", action="store_true",
                        help="service.log_updates = true (a log line per update; "
                        "default false, the server's default)")
    parser.add_argument("--backlog", type=int, default=0,
                        help="listen backlog of the GnuDIP endpoint (':backlog=N'; default: "
                        "none given, i.e. Twisted's 50)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each round wait up to this long for an idle machine "
                        "(a shared machine: other agents' runs)")
    parser.add_argument("--py-spy", metavar="FILE",
                        help="profile the server during round 1 with py-spy (raw collapsed "
                        "stacks, --threads --idle, 100 Hz) into FILE")
    parser.add_argument("--py-spy-bin", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--twistd", metavar="COMMAND",
                        help="run the server with COMMAND instead of this Python's "
                        "'twistd -n --pidfile='; the twistd options follow it")
    parser.add_argument("--timeout", type=int, default=170, help="hard limit, seconds")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not 1 <= args.duration <= 60 or not 1 <= args.rounds <= 10:
        parser.error("--duration must be 1..60 and --rounds 1..10")
    if not 1 <= args.concurrency <= args.users <= MAX_USERS:
        parser.error(f"need 1 <= --concurrency <= --users <= {MAX_USERS}")
    per_source = args.per_source or max(8, 2 * args.concurrency)
    if not 1 <= per_source <= 10000:
        parser.error("--per-source must be 1..10000")
    if args.py_spy and not os.access(args.py_spy_bin, os.X_OK):
        parser.error(f"py-spy not found ({args.py_spy_bin}); pip install py-spy, --py-spy-bin")

    deadline = time.monotonic() + args.timeout

    def alarm(_signum: int, _frame: object) -> None:
        raise Timeout(f"benchmark exceeded --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(args.timeout + 5)

    info = machine()
    tmp = tempfile.mkdtemp(prefix="dyndns-gnudip-bench-")
    procs = Processes()
    out: dict[str, Any] = {"per_source": per_source}
    try:
        store = os.path.join(tmp, "store.sqlite")
        note(f"building the store in {tmp}: {args.users} GnuDIP users")
        out["store"] = build_store(tmp, store, args.users, deadline, os.path.abspath(__file__))
        note("starting twistd dyndns (SQLite store, GnuDIP TCP on 127.0.0.1)")
        command = shlex.split(args.twistd) if args.twistd else twistd()
        proc, port, log, argv, ready = start_server(procs, tmp, store, args.users,
                                                    per_source, deadline, command,
                                                    args.backlog, args.log_updates)
        out["argv"], out["startup_s"] = argv, ready
        note(f"server pid {proc.pid}, GnuDIP on {HOST}:{port}")
        note(f"load: {args.concurrency} connections, warm-up {args.warmup} s, "
             f"{args.rounds} x {args.duration} s")
        load = run_load(args, port, proc.pid, store, procs, deadline)
        out.update({k: v for k, v in load.items() if k != "users"})
        if proc.poll() is not None:
            raise BenchError(f"the server died during the run:\n{log_tail(log)}")
        proc.kill()
        proc.wait(5)
        procs.stop(proc)
        out["check"] = check_store(store, load["users"], "gnudip-tcp")
        out["log_problems"] = log_problems(log)
        if args.py_spy and os.path.exists(args.py_spy):
            out["profile"] = profile_summary(args.py_spy, GNUDIP_CATEGORIES)
        signal.alarm(0)
        summary(args, info, out)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "machine": info, **out}, f, indent=2)
        phases = load["phases"] + load["drained"]
        failed = (out["check"]["problems"] or load["stuck_workers"]
                  or any(p["replies"] or p["errors"] for p in phases))
        if failed:
            print("\nBENCHMARK INVALID: some replies, connections or the final store state "
                  "were wrong (see above)", file=sys.stderr)
            return 1
        return 0
    except BenchError as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        procs.stop_all()
        if args.keep:
            print(f"(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
