"""
Honest HTTP updates during a wrong-password flood (bench/auth_flood.py).

    python -m bench.auth_flood                 # the checkout (~60 s)
    python -m bench.auth_flood --short         # 1 round of 4 s, 2 uncached users
    python -m bench.auth_flood --code 5d4d1cf  # "before": a commit without the limiter

Issue 14's target: during a wrong-password flood from 64 connections on other
127.0.0.x sources, an honest client's HTTP updates keep >= 80% of their
undisturbed rate, with p99 < 100 ms. Ours runs with HTTP, the limiter at its
defaults except C{update_changes = 0} (left out for code that predates
C{[limits]}), users with scrypt hashes at the real cost: C{user1} the honest
client, C{user2} the flood's target, C{user3...} fresh users for the
uncached probe. The honest client: one keep-alive connection from
127.0.0.2, C{/nic/update} with the right password, one request after
another (or paced, C{--honest-rate}), alternating two addresses; its
password is verified once first (cached, as for a router). The flood: 64
keep-alive connections from 127.0.0.10 and up, in a child process (one
selector, a few microseconds of CPU per request), sending C{/nic/update}
for C{user2} with a new wrong password each time; answers counted by their
first word. C{--rounds} times an undisturbed phase then a flood phase, then
the uncached probe: fresh users' first updates (one scrypt each), once
undisturbed and once during the flood. The reference is the undisturbed
rate measured in the same run.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import time
from typing import Any

from bench.harness import record
from bench.harness.meter import CPUMeter, percentiles, wait_idle, wait_quiet
from bench.harness.procs import HOST, BenchError, Processes, log_tail, note
from bench.harness.server import Server, export_code
from bench.harness.users import REPO, SUFFIX, basic_auth, build_store, users

HONEST, VICTIM = "user1", "user2"
HONEST_SOURCE, PROBE_SOURCE, FLOOD_FIRST_SOURCE = "127.0.0.2", "127.0.0.3", 10


def flood_main(port: int, count: int, limit: float, out_path: str) -> None:
    """C{_flood PORT COUNT LIMIT OUT}: wrong passwords from C{count} keep-alive
    connections until stdin closes (or C{limit} s), then the counts as JSON into OUT."""
    path = f"/nic/update?hostname={VICTIM}.{SUFFIX}&myip=10.99.0.1"
    selector = selectors.DefaultSelector()
    counts: dict[str, int] = {}
    state = {"sent": 0, "answered": 0, "connects": 0, "errors": 0}

    def request() -> bytes:
        state["sent"] += 1
        auth = base64.b64encode(f"{VICTIM}:guess-{state['sent']}".encode()).decode()
        return (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Basic {auth}\r\n\r\n").encode()

    class Conn:
        def __init__(self, source: str) -> None:
            self.source, self.buffer, self.connected = source, b"", False
            self.sock: socket.socket | None = None

        def open(self) -> None:
            if self.sock is not None:
                selector.unregister(self.sock)
                self.sock.close()
            self.sock = sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.bind((self.source, 0))
            sock.connect_ex((HOST, port))
            self.buffer, self.connected = b"", False
            state["connects"] += 1
            selector.register(sock, selectors.EVENT_WRITE, self)

        def answered(self) -> bool:
            """One whole response in the buffer: count it, drop it, send the next."""
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return False
            lines = self.buffer[:head_end].decode("latin-1").split("\r\n")
            fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
            end = head_end + 4 + int(fields.get("content-length", 0))
            if len(self.buffer) < end:
                return False
            word = (self.buffer[head_end + 4 : end].split() or [b"(empty)"])[0].decode("latin-1")[:20]
            counts[word] = counts.get(word, 0) + 1
            state["answered"] += 1
            self.buffer = self.buffer[end:]
            if fields.get("connection", "").lower() == "close":
                self.open()
            elif self.sock is not None:
                self.sock.send(request())
            return True

    conns = [Conn(f"127.0.0.{FLOOD_FIRST_SOURCE + i}") for i in range(count)]
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
    for conn in conns:
        conn.open()
    print("ready", flush=True)
    started = time.monotonic()
    running = True
    while running and time.monotonic() < started + limit:
        for key, _events in selector.select(0.2):
            conn = key.data
            if conn is None:  # stdin closed: stop
                running = False
                break
            sock = conn.sock
            try:
                if not conn.connected:
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, os.strerror(err))
                    conn.connected = True
                    selector.modify(sock, selectors.EVENT_READ, conn)
                    sock.send(request())
                    continue
                data = sock.recv(65536)
                if not data:
                    state["errors"] += bool(conn.buffer)
                    conn.open()
                    continue
                conn.buffer += data
                while conn.sock is sock and conn.answered():
                    pass
            except OSError:
                state["errors"] += 1
                conn.open()
                time.sleep(0.001)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(out_path, "w") as f:
        json.dump(
            {
                "seconds": time.monotonic() - started,
                "answers": counts,
                **state,
                "cpu_s": usage.ru_utime + usage.ru_stime,
            },
            f,
        )


class Flood:
    """The flood process of one phase (stopped by PID on any exit)."""

    def __init__(self, procs: Processes, tmp: str, port: int, connections: int, limit: float, label: str) -> None:
        self.procs, self.out = procs, os.path.join(tmp, f"flood-{label}.json")
        self.proc = procs.start(
            [sys.executable, "-m", "bench.auth_flood", "_flood", str(port), str(connections), str(limit), self.out],
            self.out + ".err",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
        )

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise BenchError(f"flood process failed: {line!r} {log_tail(self.out + '.err')}")

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
        self.procs.stop(self.proc)
        try:
            with open(self.out) as f:
                return dict(json.load(f))
        except (OSError, ValueError):
            raise BenchError(f"flood wrote no result: {log_tail(self.out + '.err')}") from None


class Honest:
    """user1's updates over one keep-alive connection, back to back or paced at C{rate}/s."""

    def __init__(self, port: int, rate: float = 0.0) -> None:
        self.port, self.interval, self.turn = port, 1.0 / rate if rate else 0.0, 0
        self.conn: http.client.HTTPConnection | None = None

    def update(self) -> tuple[float, str]:
        address = ("10.20.0.1", "10.20.0.2")[self.turn % 2]
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=30, source_address=(HONEST_SOURCE, 0))
            self.conn.request(
                "GET",
                f"/nic/update?hostname={HONEST}.{SUFFIX}&myip={address}",
                headers={"Authorization": basic_auth(HONEST)},
            )
            response = self.conn.getresponse()
            body = response.read().decode("utf-8", "replace").strip()
            if response.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return time.perf_counter() - started, f"error {type(e).__name__}"
        if body == f"good {address}":
            self.turn += 1
            return time.perf_counter() - started, "good"
        return time.perf_counter() - started, body[:40] or f"status {response.status}"

    def run(self, seconds: float) -> dict[str, Any]:
        self.close()  # the server may have closed an idle one between phases
        latencies: list[float] = []
        answers: dict[str, int] = {}
        started = due = time.perf_counter()
        while time.perf_counter() < started + seconds:
            if self.interval:
                due = max(due + self.interval, time.perf_counter())
                time.sleep(max(0.0, due - time.perf_counter()))
            latency, answer = self.update()
            answers[answer] = answers.get(answer, 0) + 1
            if answer == "good":
                latencies.append(latency)
        elapsed = time.perf_counter() - started
        return {
            "seconds": round(elapsed, 3),
            "good": len(latencies),
            "rate": len(latencies) / elapsed,
            "answers": answers,
            "latency_ms": percentiles(latencies),
            "_latencies": latencies,
        }

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def probe_uncached(port: int, fresh: list[str]) -> dict[str, Any]:
    """One first update per fresh user (its password not cached: one scrypt)."""
    latencies: list[float] = []
    answers: dict[str, int] = {}
    for k, user in enumerate(fresh):
        conn = http.client.HTTPConnection(HOST, port, timeout=60, source_address=(PROBE_SOURCE, 0))
        started = time.perf_counter()
        try:
            conn.request(
                "GET",
                f"/nic/update?hostname={user}.{SUFFIX}&myip=10.30.0.{k + 1}",
                headers={"Authorization": basic_auth(user)},
            )
            body = conn.getresponse().read().decode("utf-8", "replace").strip()
            answer = "good" if body.startswith("good ") else body[:40]
        except (OSError, http.client.HTTPException) as e:
            answer = f"error {type(e).__name__}"
        finally:
            conn.close()
        answers[answer] = answers.get(answer, 0) + 1
        if answer == "good":
            latencies.append(time.perf_counter() - started)
    return {"answers": answers, "latency_ms": percentiles(latencies), "count": len(fresh)}


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    code = export_code(args.code, os.path.join(tmp, "code")) if args.code else None
    store, _built = build_store(
        tmp, users(2 + 2 * args.uncached, password=True, initial=False), "store", args.hash_cost
    )
    server = Server(procs, tmp, store, http=True, gnudip=True, limits={"update_changes": 0})
    server.start(deadline)
    honest = Honest(server.http_port, args.honest_rate)
    while (answer := honest.update())[1] != "good":  # verifies the password once: cached
        if time.monotonic() > deadline or not answer[1].startswith("badauth"):
            raise BenchError(f"the honest client's first update: {answer}")
        time.sleep(0.1)  # the store may still be loading
    fresh = [f"user{i}" for i in range(3, 3 + 2 * args.uncached)]
    plan = [k for _ in range(args.rounds) for k in ("quiet", "flood")]
    plan += ["quiet-uncached", "flood-uncached"] if args.uncached else []
    phases = []
    for n, kind in enumerate(plan, 1):
        if time.monotonic() + args.duration + args.settle + 30 > deadline:
            raise BenchError(f"not enough time left for phase {n}")
        wait_quiet(min(args.wait_quiet, deadline - time.monotonic() - args.duration - 40))
        flood = (
            Flood(procs, tmp, server.http_port, args.flood_connections, args.duration + args.settle + 60, str(n))
            if kind.startswith("flood")
            else None
        )
        try:
            if flood:
                flood.wait_ready()
            time.sleep(args.settle)
            meter = CPUMeter({"server": server.pid})
            result: dict[str, Any]
            if kind.endswith("uncached"):
                result = {"probe": probe_uncached(server.http_port, fresh[: args.uncached])}
                fresh = fresh[args.uncached :]
            else:
                result = honest.run(args.duration)
            result["cpu"] = meter.read()
        finally:
            result_flood = flood.stop() if flood else None
        # Guesses accepted before the flood stopped may still queue for the hash threads.
        result.update(phase=n, kind=kind, flood=result_flood, drain_s=wait_idle(server.pid, 60) if flood else 0)
        phases.append(result)
        note(
            f"phase {n} {kind}: "
            + (
                f"{result['rate']:.0f} updates/s, p99 {result['latency_ms']['p99']} ms"
                if "rate" in result
                else f"uncached {result['probe']['latency_ms']}"
            )
        )
    honest.close()
    server.stop()

    def combine(kind: str) -> dict[str, Any]:
        chosen = [p for p in phases if p["kind"] == kind]
        good, seconds = sum(p["good"] for p in chosen), sum(p["seconds"] for p in chosen)
        return {
            "updates_per_s": round(good / seconds, 1),
            "latency_ms": percentiles([x for p in chosen for x in p.pop("_latencies")]),
        }

    quiet, flooded = combine("quiet"), combine("flood")
    floods = [p["flood"] for p in phases if p["kind"] == "flood"]
    probes = {p["kind"]: p["probe"]["latency_ms"] for p in phases if "probe" in p}
    other = {k: v for p in phases for k, v in p.get("answers", {}).items() if k != "good"}
    return {
        "figures": {
            "undisturbed": quiet,
            "flood": flooded,
            "flood_answers_per_s": round(sum(f["answered"] for f in floods) / sum(f["seconds"] for f in floods)),
            "uncached_first_update_ms": probes,
        },
        "ratios": {
            "flood/undisturbed honest updates/s (target >= 0.8)": round(
                flooded["updates_per_s"] / max(quiet["updates_per_s"], 1e-9), 3
            )
        },
        "problems": [f"the honest client got other answers: {other}"] if other else [],
        "code": code,
        "limits": server.limits,
        "phases": phases,
        "plot": {
            "title": "Honest HTTP updates per second, undisturbed and during a flood",
            "ylabel": "updates/s",
            "groups": [f"{p['kind']} {p['phase']}" for p in phases if "rate" in p],
            "series": {"honest client": [p["rate"] for p in phases if "rate" in p]},
        },
    }


def main() -> int:
    if sys.argv[1:2] == ["_flood"]:
        a = sys.argv[2:]
        flood_main(int(a[0]), int(a[1]), float(a[2]), a[3])
        return 0
    p = argparse.ArgumentParser()
    p.add_argument("-d", "--duration", type=float, default=8, help="seconds per phase")
    p.add_argument("--rounds", type=int, default=3, help="undisturbed + flood phase pairs")
    p.add_argument("--settle", type=float, default=1.0, help="seconds not counted per phase")
    p.add_argument(
        "--honest-rate", type=float, default=0, metavar="PER_S", help="pace the honest client (default: back to back)"
    )
    p.add_argument("--flood-connections", type=int, default=64, help="one source each, 1..240")
    p.add_argument("--uncached", type=int, default=8, help="fresh users per uncached probe")
    p.add_argument("--hash-cost", type=int, default=15, metavar="LOG2_N", help="scrypt cost")
    p.add_argument("--code", metavar="REV", help="run the server from this commit (git archive)")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="before each phase wait up to S seconds for an idle machine",
    )
    return record.main("auth_flood", __doc__, p, run, {"rounds": 1, "duration": 4, "uncached": 2}, 300)


if __name__ == "__main__":
    raise SystemExit(main())
