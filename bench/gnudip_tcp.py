"""
GnuDIP TCP: durable updates/s over the direct protocol (bench/gnudip_tcp.py).

    python -m bench.gnudip_tcp [--short] [--py-spy FILE]   # ~40 s (--short: 2 rounds of 4 s)

Ours, C{twistd -n dyndns} with a C{[gnudip]} TCP listener on 127.0.0.1 and
N users (default 64) with the MD5 verifier of their password and an initial
address; C{max_connections_per_source} twice the concurrency, since all the
load comes from 127.0.0.1. The load (bench/harness/load.py): C{--concurrency}
(default 64) connections at a time, each slot owning its users (one
exchange per user in flight) and running exchanges back to back: connect,
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
import itertools
import os
import selectors
import socket
import time
from typing import Any, Iterator

from bench.harness import record
from bench.harness.load import Load, User, measure, rounds, slot_problems, summary
from bench.harness.procs import HOST, Processes, log_problems
from bench.harness.server import Server
from bench.harness.tools import profile_summary
from bench.harness.users import SUFFIX, build_store, check_final, initial_answer, password_of, users
from dyndns_plugin.passwords import md5_verifier


class _Conn:
    __slots__ = ("sock", "user", "address", "started", "salt_seen", "buffer", "slot")

    def __init__(self, sock: socket.socket, user: User, address: str, slot: Iterator[User]) -> None:
        self.sock, self.user, self.address, self.slot = sock, user, address, slot
        self.started, self.salt_seen, self.buffer = time.perf_counter(), False, b""


class GnuDIPLoad(Load):
    """C{concurrency} slots; slot k runs the exchanges of users k, k+C, ... one at a time."""

    def __init__(self, port: int, users: list[User], concurrency: int, timeout: float) -> None:
        super().__init__(timeout)
        self.port, self.slots = port, [itertools.cycle(users[k::concurrency]) for k in range(concurrency)]
        self.resting: list[Iterator[User]] = []  # slots after a failure: started again at the next expire()

    def send(self, slot: Iterator[User]) -> None:
        user, sock = next(slot), socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        conn = self.inflight[sock.fileno()] = _Conn(sock, user, user.addresses[user.acked % 2], slot)
        self.selector.register(sock, selectors.EVENT_READ, conn)  # the salt comes first
        err = sock.connect_ex((HOST, self.port))
        if err not in (0, errno.EINPROGRESS):
            self._fail(conn, "connect", OSError(err, os.strerror(err)))

    def _close(self, conn: _Conn) -> None:
        self.selector.unregister(conn.sock)
        del self.inflight[conn.sock.fileno()]
        conn.sock.close()

    def _fail(self, conn: _Conn, where: str, error: BaseException) -> None:
        conn.user.uncertain = True
        kind = f"{where}: {type(error).__name__}"
        self.phase.count(kind, f"{conn.user.name} {conn.address}: {kind}: {error}")
        self._close(conn)
        self.resting.append(conn.slot)  # a refused connect would spin

    def readable(self, key: selectors.SelectorKey) -> None:
        conn = key.data
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as e:
            return self._fail(conn, "recv", e)
        if not data:
            awaited = "reply" if conn.salt_seen else "salt"
            return self._fail(conn, "recv", ConnectionError(f"closed before the {awaited}"))
        conn.buffer += data
        if not conn.salt_seen:
            line, found, rest = conn.buffer.partition(b"\n")
            if not found:
                return
            conn.salt_seen, conn.buffer = True, rest
            proof = hashlib.md5(conn.user.secret + b"." + line).hexdigest()
            try:
                conn.sock.send(f"{conn.user.name}:{proof}:{SUFFIX}:0:{conn.address}\n".encode())
            except OSError as e:
                return self._fail(conn, "send", e)
        if b"\n" in conn.buffer:
            text = conn.buffer.partition(b"\n")[0].decode("ascii", "replace").strip()
            self.answered(conn.user, conn.address, conn.started, "" if text == "0" else f"reply {text[:20]!r}")
            self._close(conn)
            if self.running:
                self.send(conn.slot)

    def expire(self, now: float) -> None:
        resting, self.resting = self.resting, []
        for slot in resting if self.running else []:
            self.send(slot)
        for conn in [c for c in self.inflight.values() if c.started < now - self.timeout]:
            self._fail(conn, "exchange", TimeoutError(f"no reply in {self.timeout} s"))

    def abandon(self) -> None:
        self.resting.clear()
        for conn in list(self.inflight.values()):
            conn.user.uncertain = True
            self._close(conn)


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    store, built = build_store(tmp, users(args.users, md5=True))
    tables = {"gnudip": {"max_connections_per_source": 2 * args.concurrency}}
    server = Server(procs, tmp, store, gnudip=True, tables=tables)
    server.start(deadline, *initial_answer(args.users))
    loads = [User(i, md5_verifier(password_of(f"user{i}")).encode()) for i in range(1, args.users + 1)]
    gen = GnuDIPLoad(server.gnudip_port, loads, args.concurrency, args.exchange_timeout)
    results = [measure(gen, "warm-up", args.warmup, args.settle, server.pid, store)] if args.warmup else []
    for r, _label in rounds(args, ["ours"], deadline, args.duration + args.settle + args.exchange_timeout):
        spy = (procs, args.py_spy) if args.py_spy and r == 1 else None
        results.append(measure(gen, f"round {r}", args.duration, args.settle, server.pid, store, spy))
    server.kill()
    check = check_final(store, {u.name: u.expected() for u in loads}, "gnudip-tcp")
    measured = [r for r in results if r["name"].startswith("round")]
    total = summary(measured)
    problems = check["problems"] + log_problems(server.log) + slot_problems(results)
    ok, commits = sum(r["ok"] for r in measured), sum(r["commits"] for r in measured)
    return {
        "figures": {
            "durable_updates_per_s": total["updates_per_s"],
            "latency_ms": total["latency_ms"],
            "server_cpu_us_per_update": total["server_cpu_us_per_update"],
            "updates_per_commit": round(ok / max(commits, 1), 2),
            "users_exact_after_sigkill": check["exact"],
            "disturbed_rounds": total["disturbed"],
        },
        "ratios": {"updates/s vs the 2,000/s target": round(total["updates_per_s"] / 2000, 3)},
        "problems": problems,
        "store": built,
        "phases": results,
        "check": check,
        "profile": profile_summary(args.py_spy) if args.py_spy else None,
        "plot": {
            "title": "GnuDIP TCP durable updates per second",
            "ylabel": "updates/s",
            "groups": [r["name"] for r in measured],
            "series": {"ours": [r["ok_per_s"] for r in measured]},
        },
    }


OPTIONS: record.Options = {
    "--users": (64, "users (at least --concurrency)"),
    "-c --concurrency": (64, "connections at a time"),
    "-d --duration": (8.0, "seconds per round"),
    "--rounds": (3, "rounds"),
    "--warmup": (2.0, "seconds of warm-up (0: none)"),
    "--settle": (0.5, "seconds not counted per round"),
    "--exchange-timeout": (10.0, "seconds per exchange"),
    "--wait-quiet": (0.0, "before each round wait up to S seconds for an idle machine", "S"),
    "--py-spy": (None, "profile round 1 into FILE", "FILE"),
}

if __name__ == "__main__":
    raise SystemExit(record.main("gnudip_tcp", __doc__, OPTIONS, run, {"rounds": 2, "duration": 4}, 200))
