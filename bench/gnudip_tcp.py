"""
GnuDIP TCP: durable updates/s over the direct protocol (bench/gnudip_tcp.py).

    python -m bench.gnudip_tcp              # the full run (~40 s)
    python -m bench.gnudip_tcp --short      # 2 rounds of 4 s
    python -m bench.gnudip_tcp --py-spy /tmp/g.txt   # profile round 1

Ours, C{twistd -n dyndns} with a C{[gnudip]} TCP listener on 127.0.0.1 and
N users (default 64) with the MD5 verifier of their password and an initial
address; C{max_connections_per_source} twice the concurrency, since all the
load comes from 127.0.0.1. The load: C{--concurrency} (default 64)
connections at a time from this process on plain non-blocking sockets and
one epoll loop (an asyncio client cost ~3 times the CPU per exchange, and
the client shares the two CPUs with the server). Each slot owns its users
(one exchange per user in flight) and runs exchanges back to back: connect,
read the salt, send C{user:md5hex(md5hex(pw).salt):suffix:0:addr}, read the
reply (must be C{0}), close. A user's requests alternate between two
addresses, so each is one durable SQLite write. After a warm-up, C{--rounds}
rounds of C{--duration} s, each started afresh with C{--settle} s not
counted: updates/s, latency from connect to reply, CPU (server threads, the
client, kernel threads, interrupts, others), SQLite commits and the
kernel's listen-queue drops. Then SIGKILL, and every user must be in the
SQLite file at its last acknowledged address, via C{gnudip-tcp}.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import selectors
import socket
import time
from typing import Any

from bench.harness import record
from bench.harness.meter import CPUMeter, Tally, percentiles, wait_quiet
from bench.harness.procs import HOST, Processes, Timeout, log_problems, note
from bench.harness.server import Server
from bench.harness.tools import profile_summary, py_spy, stop_after
from bench.harness.users import (
    SUFFIX,
    addresses_of,
    build_store,
    check_final,
    md5hex,
    password_of,
    read_generation,
    users,
)


class UserLoad:
    __slots__ = ("name", "addresses", "md5pw", "turn", "acked", "last", "uncertain")

    def __init__(self, i: int) -> None:
        self.name = f"user{i}"
        self.addresses = addresses_of(i)[:2]
        self.md5pw = md5hex(password_of(self.name)).encode("ascii")
        self.turn = self.acked = 0
        self.last: str | None = None
        self.uncertain = False  # an exchange failed: it may or may not have been applied


class _Conn:
    __slots__ = ("sock", "user", "address", "started", "salt_seen", "buffer", "slot")

    def __init__(self, sock: socket.socket, user: UserLoad, address: str, slot: int) -> None:
        self.sock, self.user, self.address, self.slot = sock, user, address, slot
        self.started = time.perf_counter()
        self.salt_seen, self.buffer = False, b""


class LoadGenerator:
    """C{concurrency} slots; slot k runs the exchanges of users k, k+C, ... one at a time."""

    def __init__(self, port: int, users: list[UserLoad], concurrency: int, timeout: float) -> None:
        self.port, self.timeout, self.concurrency = port, timeout, concurrency
        self.phase, self.running = Tally("start"), False
        self.selector = selectors.DefaultSelector()
        self.inflight: dict[int, _Conn] = {}
        self.shares: list[list[UserLoad]] = [users[k::concurrency] for k in range(concurrency)]
        self.cursor = [0] * concurrency
        self.resting: list[tuple[float, int]] = []  # slots after a failure: (when, slot)

    def start(self) -> None:
        self.running = True
        for slot in range(self.concurrency):
            self._next(slot)

    def _next(self, slot: int) -> None:
        share = self.shares[slot]
        user = share[self.cursor[slot] % len(share)]
        self.cursor[slot] += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        conn = _Conn(sock, user, user.addresses[user.turn % 2], slot)
        err = sock.connect_ex((HOST, self.port))
        if err not in (0, errno.EINPROGRESS):
            self._fail(conn, "connect", OSError(err, os.strerror(err)), registered=False)
            return
        self.inflight[sock.fileno()] = conn
        self.selector.register(sock, selectors.EVENT_READ, conn)  # the salt comes first

    def _close(self, conn: _Conn) -> None:
        self.selector.unregister(conn.sock)
        del self.inflight[conn.sock.fileno()]
        conn.sock.close()

    def _fail(self, conn: _Conn, where: str, error: BaseException, registered: bool = True) -> None:
        conn.user.uncertain = True
        kind = f"{where}: {type(error).__name__}"
        self.phase.count(kind, f"{conn.user.name} {conn.address}: {kind}: {error}")
        if registered:
            self._close(conn)
        else:
            conn.sock.close()
        self.resting.append((time.perf_counter() + 0.01, conn.slot))  # a refused connect would spin

    def _readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as e:
            return self._fail(conn, "recv", e)
        if not data:
            return self._fail(
                conn, "recv", ConnectionError(f"closed before the {'reply' if conn.salt_seen else 'salt'}")
            )
        conn.buffer += data
        if not conn.salt_seen:
            line, found, conn.buffer = conn.buffer.partition(b"\n")
            if not found:
                conn.buffer = line
                return
            conn.salt_seen = True
            proof = hashlib.md5(conn.user.md5pw + b"." + line).hexdigest()
            try:
                conn.sock.send(f"{conn.user.name}:{proof}:{SUFFIX}:0:{conn.address}\n".encode())
            except OSError as e:
                return self._fail(conn, "send", e)
        if b"\n" in conn.buffer:
            self._reply(conn, conn.buffer.partition(b"\n")[0].decode("ascii", "replace").strip())
            self._close(conn)
            if self.running:
                self._next(conn.slot)

    def _reply(self, conn: _Conn, text: str) -> None:
        phase, user = self.phase, conn.user
        phase.latencies.append(time.perf_counter() - conn.started)
        if text == "0":
            phase.ok += 1
            user.acked, user.last, user.turn = user.acked + 1, conn.address, user.turn + 1
        else:
            phase.count(f"reply {text[:20]!r}", f"{user.name} {conn.address}: reply {text!r}")

    def run_until(self, end: float) -> None:
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
                for conn in [c for c in self.inflight.values() if c.started < now - self.timeout]:
                    self._fail(conn, "exchange", TimeoutError(f"no reply in {self.timeout} s"))

    def stop(self, wait: float) -> int:
        """Start nothing new; wait for the exchanges in flight. Returns those stuck."""
        self.running = False
        self.resting.clear()
        self.run_until(time.perf_counter() + wait)
        stuck = len(self.inflight)
        for conn in list(self.inflight.values()):
            conn.user.uncertain = True
            self._close(conn)
        return stuck


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    store = os.path.join(tmp, "store.sqlite")
    built = build_store(tmp, store, users(args.users, md5=True))
    server = Server(
        procs,
        tmp,
        store,
        gnudip=True,
        log_updates=args.log_updates,
        tables={"gnudip": {"max_connections_per_source": 2 * args.concurrency}},
    )
    server.start(deadline, f"user{args.users}.{SUFFIX}", addresses_of(args.users)[2])
    loads = [UserLoad(i) for i in range(1, args.users + 1)]
    gen = LoadGenerator(server.gnudip_port, loads, args.concurrency, args.exchange_timeout)
    phases = ([("warm-up", args.warmup)] if args.warmup else []) + [
        (f"round {r}", args.duration) for r in range(1, args.rounds + 1)
    ]
    results, measured, stuck = [], [], 0
    for name, seconds in phases:
        if time.monotonic() + seconds + args.settle + args.exchange_timeout + 10 > deadline:
            raise Timeout("not enough time left for another round")
        if name != "warm-up":
            wait_quiet(min(args.wait_quiet, deadline - time.monotonic() - seconds - 30))
        gen.phase = Tally(f"{name} (settle)")
        gen.start()
        gen.run_until(time.perf_counter() + args.settle)
        phase = gen.phase = Tally(name)
        meter, generation = CPUMeter({"server": server.pid}), read_generation(store)
        spy = py_spy(procs, server.pid, seconds, args.py_spy) if args.py_spy and name == "round 1" else None
        gen.run_until(phase.started + seconds)
        phase.seconds = time.perf_counter() - phase.started
        gen.phase = Tally(f"{name} (drain)")
        cpu = meter.read()
        commits = read_generation(store) - generation
        stuck += gen.stop(args.exchange_timeout + 2)
        stop_after(procs, spy, 15)
        result = phase.result()
        result.update(
            cpu=cpu,
            commits=commits,
            updates_per_commit=round(phase.ok / max(commits, 1), 2),
            server_cpu_us_per_update=round(1e6 * cpu["server"]["cpu_s"] / max(phase.ok, 1), 1),
            client_cpu_us_per_update=round(1e6 * cpu["client_s"] / max(phase.ok, 1), 1),
            drain=gen.phase.other,
        )
        results.append(result)
        if name.startswith("round"):
            measured.extend(phase.latencies)
        note(f"{name}: {result['ok_per_s']:.0f} updates/s, p99 {result['latency_ms']['p99']} ms")
    server.kill()
    check = check_final(
        store, {u.name: (set(u.addresses), None if u.uncertain else u.last) for u in loads}, "gnudip-tcp"
    )
    rounds = [r for r in results if r["name"].startswith("round")]
    problems = (
        check["problems"]
        + log_problems(server.log)
        + [f"{r['name']}: {r['other']} e.g. {r['samples'][:2]}" for r in results if r["other"]]
    )
    problems += [f"{stuck} exchanges stuck"] if stuck else []
    ok, commits = sum(r["ok"] for r in rounds), sum(r["commits"] for r in rounds)
    rate = ok / sum(r["seconds"] for r in rounds)
    return {
        "figures": {
            "durable_updates_per_s": round(rate),
            "latency_ms": percentiles(measured),
            "server_cpu_us_per_update": min(r["server_cpu_us_per_update"] for r in rounds),
            "updates_per_commit": round(ok / max(commits, 1), 2),
            "users_exact_after_sigkill": check["exact"],
            "disturbed_rounds": sum(r["cpu"]["disturbed"] for r in rounds),
        },
        "ratios": {"updates/s vs the 2,000/s target": round(rate / 2000, 3)},
        "problems": problems,
        "store": built,
        "phases": results,
        "check": check,
        "profile": profile_summary(args.py_spy) if args.py_spy else None,
        "plot": {
            "title": "GnuDIP TCP durable updates per second",
            "ylabel": "updates/s",
            "groups": [r["name"] for r in rounds],
            "series": {"ours": [r["ok_per_s"] for r in rounds]},
        },
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=64, help="users (at least --concurrency)")
    p.add_argument("-c", "--concurrency", type=int, default=64, help="connections at a time")
    p.add_argument("-d", "--duration", type=float, default=8, help="seconds per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=2, help="seconds of warm-up (0: none)")
    p.add_argument("--settle", type=float, default=0.5, help="seconds not counted per round")
    p.add_argument("--exchange-timeout", type=float, default=10, help="seconds per exchange")
    p.add_argument("--log-updates", action="store_true", help="service.log_updates = true")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="before each round wait up to S seconds for an idle machine",
    )
    p.add_argument("--py-spy", metavar="FILE", help="profile round 1 into FILE")
    return record.main("gnudip_tcp", __doc__, p, run, {"rounds": 2, "duration": 4}, 200)


if __name__ == "__main__":
    raise SystemExit(main())
