#!/usr/bin/env python
"""
Honest HTTP updates during a wrong-password flood (not a test).

Issue 14's benchmark: during a wrong-password flood from 64 connections on
other 127.0.0.x sources, an honest client's HTTP updates should keep >= 80%
of their undisturbed rate, with p99 < 100 ms.

The server is a real C{twistd -n dyndns} with the SQLite store (an update is
answered once durable), DNS, HTTP and GnuDIP on 127.0.0.1 and free ports,
and the limiter at its defaults except C{update_changes = 0} (no per-user
change limit, so that the honest client's changes are not refused; the
C{[limits]} table is left out for code that predates it). Users (scrypt
hashes at the real cost, built with bench/http_updates.py's store maker):
C{user1} the honest client, C{user2} the flood's target, C{user3...} fresh
users for the uncached probe.

 - The honest client: one keep-alive C{http.client.HTTPConnection} from
   127.0.0.2, C{/nic/update} with the right password, one request after
   another (or paced, C{--honest-rate}), alternating two addresses (every update is a real change, i.e. a
   durable write); its password is verified once before the first phase, so
   it is in the server's cache of verified passwords (as for a router that
   updates every few minutes).
 - The flood: C{--flood-connections} (default 64) keep-alive connections,
   each bound to its own source 127.0.0.10, .11, ..., continuously sending
   C{/nic/update} for C{user2} with a new wrong password each time, from a
   separate process (non-blocking sockets, one selector: a few
   microseconds of CPU per request, far less than the server spends);
   answers are counted by their first word (C{badauth}, C{abuse}, ...).
 - Phases of C{--duration} seconds, back to back: C{--rounds} times
   undisturbed then flood (the flood process is started for each flood
   phase and stopped after it; C{--settle} seconds after its start are not
   counted), then the uncached probe: C{--uncached} fresh users, one first
   update each from 127.0.0.3, once undisturbed and once during the flood
   (each needs one scrypt: the issue measured p50 1.06 s during a flood).

Reported: the honest update rate and latency (p50, p90, p99, max) per
phase and over all undisturbed and all flood phases, the ratio flood /
undisturbed rate (target >= 0.8) and the flood p99 (target < 100 ms), the
flood's answers by kind and rate, and CPU time of the server and the flood.

    python bench/auth_flood.py                 # the checkout (~60 s)
    python bench/auth_flood.py --code HEAD     # the last commit, not the checkout
    python bench/auth_flood.py --code 5d4d1cf  # "before": no limiter
    python bench/auth_flood.py --rounds 1 -d 5 # quick
    python bench/auth_flood.py --json out.json # also write the numbers

Every process is stopped by its PID on exit, the temporary directory removed,
and a hard C{--timeout} applies. The exit status is 1 if the honest client got
a wrong answer or an error; missing the targets is reported, not an error.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dns_qps import BenchError, Processes, Timeout, note, wait_quiet  # noqa: E402
from gnudip_tcp import CPUMeter, machine, percentiles, thread_cpu  # noqa: E402
from harness import (  # noqa: E402
    HOST,
    SUFFIX,
    Server,
    code_description,
    export_code,
    free_ports,
    use_code,
    write_config,
)
from http_updates import basic  # noqa: E402  (user i's Basic credentials)

HONEST = 1
VICTIM = 2
HONEST_SOURCE = "127.0.0.2"
PROBE_SOURCE = "127.0.0.3"
FLOOD_FIRST_SOURCE = 10


def honest_addresses() -> tuple[str, str]:
    return "10.20.0.1", "10.20.0.2"


# -- the flood (a child process)


def flood_main(port: int, first: int, count: int, victim: int, limit: float,
               out_path: str) -> None:
    """
    C{_flood PORT FIRST COUNT VICTIM LIMIT OUT}: C{count} keep-alive
    connections from 127.0.0.FIRST.. sending wrong passwords for user
    C{victim} until stdin closes (or C{limit} seconds), then the counts as
    JSON into OUT.
    """
    host_header = f"Host: {HOST}:{port}\r\n".encode()
    path = f"/nic/update?hostname=user{victim}.{SUFFIX}&myip=10.99.0.1".encode()
    selector = selectors.DefaultSelector()
    counts: dict[str, int] = {}
    statuses: dict[str, int] = {}
    state = {"sent": 0, "answered": 0, "connects": 0, "errors": 0}
    first_answer: list[float] = []
    guesses = [0]

    def request() -> bytes:
        guesses[0] += 1
        auth = base64.b64encode(f"user{victim}:guess-{guesses[0]}".encode())
        state["sent"] += 1
        return (b"GET " + path + b" HTTP/1.1\r\n" + host_header
                + b"Authorization: Basic " + auth + b"\r\n\r\n")

    class Conn:
        __slots__ = ("source", "sock", "buffer", "connected")

        def __init__(self, source: str) -> None:
            self.source = source
            self.sock: socket.socket | None = None
            self.buffer = b""
            self.connected = False

    def open_conn(conn: Conn) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((conn.source, 0))
        sock.connect_ex((HOST, port))
        conn.sock, conn.buffer, conn.connected = sock, b"", False
        state["connects"] += 1
        selector.register(sock, selectors.EVENT_WRITE, conn)

    def reopen(conn: Conn) -> None:
        if conn.sock is not None:
            selector.unregister(conn.sock)
            conn.sock.close()
            conn.sock = None
        if running[0]:
            open_conn(conn)

    def answered(conn: Conn) -> bool:
        """One whole response in the buffer: count it, drop it. True if found."""
        head_end = conn.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        head = conn.buffer[:head_end].decode("latin-1")
        lines = head.split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in
                  (line.partition(":") for line in lines[1:])}
        start = head_end + 4
        if "content-length" in fields:
            end = start + int(fields["content-length"])
            if len(conn.buffer) < end:
                return False
            body = conn.buffer[start:end]
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            stop = conn.buffer.find(b"\r\n0\r\n\r\n", start)
            if stop < 0:
                return False
            end = stop + 7
            size_end = conn.buffer.find(b"\r\n", start)
            body = conn.buffer[size_end + 2:stop]
        else:
            return False  # body up to the close: handled at EOF
        conn.buffer = conn.buffer[end:]
        status = lines[0].split()[1]
        word = (body.split() or [b"(empty)"])[0].decode("latin-1")[:20]
        counts[word] = counts.get(word, 0) + 1
        statuses[status] = statuses.get(status, 0) + 1
        state["answered"] += 1
        if not first_answer:
            first_answer.append(time.monotonic())
        if fields.get("connection", "").lower() == "close":
            reopen(conn)
        elif conn.sock is not None:
            conn.sock.send(request())
        return True

    running = [True]
    conns = [Conn(f"127.0.0.{first + i}") for i in range(count)]
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, None)
    for conn in conns:
        open_conn(conn)
    print("ready", flush=True)
    started = time.monotonic()
    end = started + limit
    while running[0] and time.monotonic() < end:
        for key, _events in selector.select(0.2):
            conn = key.data
            if conn is None:  # stdin closed: stop
                running[0] = False
                break
            sock = conn.sock
            if sock is None:
                continue
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
                    if conn.buffer:
                        state["errors"] += 1
                    reopen(conn)
                    continue
                conn.buffer += data
                while conn.sock is sock and answered(conn):
                    pass
            except OSError:
                state["errors"] += 1
                reopen(conn)
                time.sleep(0.001)
    seconds = time.monotonic() - started
    for conn in conns:
        if conn.sock is not None:
            conn.sock.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(out_path, "w") as f:
        json.dump({"seconds": seconds, "answers": counts, "statuses": statuses, **state,
                   "first_answer_s": (first_answer[0] - started) if first_answer else None,
                   "cpu_s": usage.ru_utime + usage.ru_stime}, f)


class Flood:
    """The flood process(es) of one phase."""

    def __init__(self, procs: Processes, tmp: str, port: int, connections: int,
                 processes: int, limit: float, label: str) -> None:
        self.procs = procs
        self.children: list[tuple[subprocess.Popen[bytes], str]] = []
        per = -(-connections // processes)
        first = FLOOD_FIRST_SOURCE
        for k in range(processes):
            n = min(per, FLOOD_FIRST_SOURCE + connections - first)
            if n <= 0:
                break
            out = os.path.join(tmp, f"flood-{label}-{k}.json")
            with open(out + ".err", "wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, os.path.abspath(__file__), "_flood", str(port),
                     str(first), str(n), str(VICTIM), str(limit), out],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                    start_new_session=True)
            procs.children.append(proc)  # stopped by PID on any exit
            self.children.append((proc, out))
            first += n

    def wait_ready(self, deadline: float) -> None:
        for proc, out in self.children:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != b"ready":
                raise BenchError(f"flood process failed: {line!r} {_read(out + '.err')}")
            if time.monotonic() > deadline:
                raise Timeout("flood not ready in time")

    def stop(self) -> dict[str, Any]:
        total: dict[str, Any] = {"answers": {}, "statuses": {}, "sent": 0, "answered": 0,
                                 "connects": 0, "errors": 0, "cpu_s": 0.0, "seconds": 0.0}
        for proc, _out in self.children:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc, out in self.children:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
            self.procs.stop(proc)
            try:
                with open(out) as f:
                    r = json.load(f)
            except (OSError, ValueError):
                raise BenchError(f"flood process wrote no result: {_read(out + '.err')}") \
                    from None
            for key in ("answers", "statuses"):
                for k, v in r[key].items():
                    total[key][k] = total[key].get(k, 0) + v
            for key in ("sent", "answered", "connects", "errors", "cpu_s"):
                total[key] += r[key]
            total["seconds"] = max(total["seconds"], r["seconds"])
        return total


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-2000:]
    except OSError:
        return ""


# -- the honest client


class Honest:
    """
    One keep-alive connection from 127.0.0.2; user1's updates back to back,
    or paced at C{rate} a second (a schedule: a late answer is not made up
    for by a burst).
    """

    def __init__(self, port: int, rate: float = 0.0) -> None:
        self.port = port
        self.interval = 1.0 / rate if rate else 0.0
        self.conn: http.client.HTTPConnection | None = None
        self.turn = 0
        self.auth = {"Authorization": f"Basic {basic(HONEST)}"}

    def update(self) -> tuple[float, str]:
        """One update; (latency, answer)."""
        address = honest_addresses()[self.turn % 2]
        path = f"/nic/update?hostname=user{HONEST}.{SUFFIX}&myip={address}"
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    HOST, self.port, timeout=30, source_address=(HONEST_SOURCE, 0))
            self.conn.request("GET", path, headers=self.auth)
            response = self.conn.getresponse()
            body = response.read().decode("utf-8", "replace").strip()
            if response.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            return time.perf_counter() - started, f"error {type(e).__name__}"
        latency = time.perf_counter() - started
        if body == f"good {address}":
            self.turn += 1
            return latency, "good"
        return latency, body[:40] or f"status {response.status}"

    def run(self, seconds: float) -> dict[str, Any]:
        # A fresh connection per phase: the server may have closed an idle
        # one between phases (its HTTP timeout), which is no failure of it.
        self.close()
        latencies: list[float] = []
        answers: dict[str, int] = {}
        started = time.perf_counter()
        end = started + seconds
        due = started
        while time.perf_counter() < end:
            if self.interval:
                due = max(due + self.interval, time.perf_counter())
                time.sleep(max(0.0, due - time.perf_counter()))
            latency, answer = self.update()
            answers[answer] = answers.get(answer, 0) + 1
            if answer == "good":
                latencies.append(latency)
        elapsed = time.perf_counter() - started
        return {"seconds": round(elapsed, 3), "good": answers.get("good", 0),
                "rate": answers.get("good", 0) / elapsed, "answers": answers,
                "latency_ms": percentiles(latencies), "latencies": latencies}

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def probe_uncached(port: int, users: list[int]) -> dict[str, Any]:
    """One first update per fresh user (its password not cached: one scrypt)."""
    latencies: list[float] = []
    answers: dict[str, int] = {}
    for i in users:
        conn = http.client.HTTPConnection(HOST, port, timeout=60,
                                          source_address=(PROBE_SOURCE, 0))
        started = time.perf_counter()
        try:
            conn.request("GET", f"/nic/update?hostname=user{i}.{SUFFIX}&myip=10.30.0.{i % 250}",
                         headers={"Authorization": f"Basic {basic(i)}"})
            body = conn.getresponse().read().decode("utf-8", "replace").strip()
            answer = "good" if body.startswith("good ") else body[:40]
        except (OSError, http.client.HTTPException) as e:
            answer = f"error {type(e).__name__}"
        finally:
            conn.close()
        answers[answer] = answers.get(answer, 0) + 1
        if answer == "good":
            latencies.append(time.perf_counter() - started)
    return {"answers": answers, "latency_ms": percentiles(latencies), "count": len(users)}


# -- the run


def run_phases(args: argparse.Namespace, procs: Processes, tmp: str, server: Server,
               deadline: float) -> dict[str, Any]:
    assert server.proc is not None
    honest = Honest(server.http_port, args.honest_rate)
    while True:  # verifies the password once: cached from now on
        latency, answer = honest.update()
        if answer == "good":
            break
        if time.monotonic() > deadline or not answer.startswith("badauth"):
            raise BenchError(f"the honest client's first update: {answer}")
        time.sleep(0.1)  # the store may still be loading
    note(f"honest client's first update (scrypt): {1000 * latency:.0f} ms")
    phases: list[dict[str, Any]] = []
    plan = [kind for _ in range(args.rounds) for kind in ("quiet", "flood")]
    fresh = list(range(VICTIM + 1, VICTIM + 1 + 2 * args.uncached))
    if args.uncached:
        plan += ["quiet-uncached", "flood-uncached"]
    for n, kind in enumerate(plan, 1):
        if time.monotonic() + args.duration + args.settle + 30 > deadline:
            raise Timeout(f"not enough time left for phase {n}")
        flood = None
        meter = None
        if args.wait_quiet:
            wait_quiet(min(args.wait_quiet, deadline - time.monotonic() - args.duration - 40))
        if kind.startswith("flood"):
            flood = Flood(procs, tmp, server.http_port, args.flood_connections,
                          args.flood_processes, args.duration + args.settle + 60, str(n))
            flood.wait_ready(deadline)
        try:
            time.sleep(args.settle)
            meter = CPUMeter({"server": server.proc.pid})
            if kind.endswith("uncached"):
                users, fresh = fresh[:args.uncached], fresh[args.uncached:]
                result: dict[str, Any] = {"probe": probe_uncached(server.http_port, users)}
            else:
                result = honest.run(args.duration)
            cpu = meter.read()
        finally:
            flood_result = flood.stop() if flood is not None else None
        result.update(phase=n, kind=kind, cpu=cpu, flood=flood_result)
        if flood is not None:
            # Guesses the server accepted before the flood stopped may still
            # queue for the hash threads: let them finish before the next phase.
            result["drain_s"] = wait_server_idle(server.proc.pid, deadline)
        if server.proc.poll() is not None:
            raise BenchError("the server died during the run")
        phases.append(result)
        _print_phase(result)
    honest.close()
    return {"phases": phases, "first_update_ms": 1000 * latency}


def wait_server_idle(pid: int, deadline: float, window: float = 0.5,
                     limit: float = 60.0) -> float:
    """Until the server uses < 5% of a CPU over C{window} s; returns the wait."""
    started = time.monotonic()
    end = min(deadline - 30, started + limit)
    while time.monotonic() < end:
        before = sum(thread_cpu(pid).values())
        time.sleep(window)
        if sum(thread_cpu(pid).values()) - before < 0.05 * window:
            break
    return round(time.monotonic() - started, 2)


def _print_phase(r: dict[str, Any]) -> None:
    s = r["cpu"]["servers"]["server"]
    text = f"    phase {r['phase']} {r['kind']:15}"
    if "probe" in r:
        p = r["probe"]
        lat = p["latency_ms"]
        text += (f" uncached first updates: {p['answers']}, p50 {lat['p50']:.0f} ms, "
                 f"max {lat['max']:.0f} ms")
    else:
        lat = r["latency_ms"]
        other = {k: v for k, v in r["answers"].items() if k != "good"}
        text += (f" honest {r['rate']:7.1f} updates/s, p50 {lat['p50']:.2f} ms, "
                 f"p99 {lat['p99']:.2f} ms, max {lat['max']:.1f} ms"
                 + (f", other answers {other}" if other else ""))
    text += f"; server cpu {s['cpu_s']} s"
    f = r.get("flood")
    if f:
        text += (f"; flood {f['answered'] / max(f['seconds'], 1e-9):.0f} answers/s "
                 f"{f['answers']} status {f['statuses']}, {f['errors']} errors, "
                 f"{f['connects']} connects, cpu {f['cpu_s']:.2f} s; server busy "
                 f"{r['drain_s']} s after the flood stopped")
    print(text, flush=True)


def combine(phases: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    chosen = [p for p in phases if p["kind"] == kind]
    latencies = [x for p in chosen for x in p["latencies"]]
    seconds = sum(p["seconds"] for p in chosen)
    good = sum(p["good"] for p in chosen)
    return {"phases": len(chosen), "good": good, "seconds": round(seconds, 2),
            "rate": good / seconds if seconds else 0.0,
            "latency_ms": percentiles(latencies)}


def summary(args: argparse.Namespace, info: dict[str, Any], out: dict[str, Any]) -> None:
    q, f = out["quiet"], out["flood"]
    print()
    print("=" * 78)
    print("dyndns_plugin: honest HTTP updates during a wrong-password flood")
    print(f"  machine: {info['nproc']} cpus, {info['cpu']}; Python {info['python']}, "
          f"Twisted {info['twisted']}, SQLite {info['sqlite']}; {info['date']}; "
          f"loadavg at start {' '.join(info['loadavg_at_start'])}")
    print(f"  code: {out['code']}; limiter: {out['limits']}")
    pace = f"paced at {args.honest_rate:g}/s" if args.honest_rate else "back to back"
    print(f"  honest: user{HONEST} from {HONEST_SOURCE}, /nic/update keep-alive, {pace}, "
          f"every update a change; flood: {args.flood_connections} keep-alive connections "
          f"from 127.0.0.{FLOOD_FIRST_SOURCE}-{FLOOD_FIRST_SOURCE + args.flood_connections - 1}"
          f" ({args.flood_processes} process(es)), wrong passwords for user{VICTIM}")
    print(f"  {args.rounds} x ({args.duration} s undisturbed, {args.duration} s flood), "
          f"{args.settle} s settle before each (not counted)")
    print(f"  {'':12} {'updates/s':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, r in (("undisturbed", q), ("flood", f)):
        lat = r["latency_ms"]
        print(f"  {label:12} {r['rate']:10.1f} {lat['p50']:8.2f} {lat['p90']:8.2f} "
              f"{lat['p99']:8.2f} {lat['max']:8.1f}")
    ratio = out["ratio"]
    print(f"  ratio flood / undisturbed: {ratio:.3f} (target >= 0.8: "
          f"{'MET' if ratio >= 0.8 else 'NOT MET'}); flood p99 {f['latency_ms']['p99']:.1f} ms "
          f"(target < 100 ms: {'MET' if f['latency_ms']['p99'] < 100 else 'NOT MET'})")
    fl = out["flood_total"]
    print(f"  flood answers: {fl['answered']} in {fl['seconds']:.1f} s "
          f"({fl['answered'] / max(fl['seconds'], 1e-9):.0f}/s): {fl['answers']}; "
          f"HTTP status {fl['statuses']}; {fl['errors']} connection errors, "
          f"{fl['connects']} connects; flood cpu {fl['cpu_s']:.1f} s "
          f"({1e6 * fl['cpu_s'] / max(fl['answered'], 1):.0f} us/answer), server cpu during "
          f"the flood phases {out['server_cpu_flood_s']:.1f} s "
          f"({1e6 * out['server_cpu_flood_s'] / max(fl['answered'], 1):.0f} us/answer)")
    for p in out["phases"]:
        if "probe" in p:
            lat = p["probe"]["latency_ms"]
            print(f"  uncached first update ({p['kind']}): {p['probe']['count']} users, "
                  f"p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms, max {lat['max']:.0f} ms, "
                  f"answers {p['probe']['answers']}")
    other = {k: v for p in out["phases"] if "answers" in p
             for k, v in p["answers"].items() if k != "good"}
    if other:
        print(f"  WARNING: the honest client got other answers: {other}")
    print("=" * 78)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_flood":
        a = sys.argv[2:]
        flood_main(int(a[0]), int(a[1]), int(a[2]), int(a[3]), float(a[4]), a[5])
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("-d", "--duration", type=float, default=8,
                        help="seconds per phase (default 8)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="undisturbed + flood phase pairs (default 3)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds after a phase starts (and its flood connected) that "
                        "are not counted (default 1)")
    parser.add_argument("--honest-rate", type=float, default=0, metavar="PER_SECOND",
                        help="pace the honest client at this many updates a second "
                        "(default 0: back to back, i.e. as fast as the server answers)")
    parser.add_argument("--flood-connections", type=int, default=64,
                        help="flood connections, one source each from 127.0.0.10 (default 64)")
    parser.add_argument("--flood-processes", type=int, default=1,
                        help="processes sharing the flood connections (default 1)")
    parser.add_argument("--uncached", type=int, default=8,
                        help="fresh users per uncached-probe phase (0: no probe; default 8)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each phase wait up to this long for an idle machine "
                        "(for shared machines)")
    parser.add_argument("--hash-cost", type=int, default=15, metavar="LOG2_N",
                        help="scrypt cost of the users' passwords (default 15, the real one)")
    parser.add_argument("--code", metavar="REV",
                        help="run the server from this commit (git archive into the temp dir) "
                        "instead of the checkout")
    parser.add_argument("--timeout", type=int, default=300, help="hard limit, seconds")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not 1 <= args.duration <= 120 or not 1 <= args.rounds <= 20:
        parser.error("--duration must be 1..120, --rounds 1..20")
    if not 1 <= args.flood_connections <= 240:
        parser.error("--flood-connections must be 1..240 (127.0.0.10-249)")
    if not 1 <= args.flood_processes <= args.flood_connections:
        parser.error("--flood-processes must be 1..--flood-connections")
    if not 0 <= args.uncached <= 100:
        parser.error("--uncached must be 0..100")

    deadline = time.monotonic() + args.timeout

    def alarm(_signum: int, _frame: object) -> None:
        raise Timeout(f"benchmark exceeded --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(args.timeout + 5)

    tmp = tempfile.mkdtemp(prefix="dyndns-flood-")
    procs = Processes()
    try:
        code_dir = commit = None
        if args.code:
            code_dir = os.path.join(tmp, "code")
            commit = export_code(args.code, code_dir)
            use_code(code_dir)
        info = machine()
        store = os.path.join(tmp, "store.sqlite")
        users = VICTIM + 2 * args.uncached
        note(f"building the store in {tmp}: {users} users, scrypt ln={args.hash_cost}")
        run = subprocess.run(
            [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                          "http_updates.py"),
             "_make-store", store, str(users), str(args.hash_cost)],
            capture_output=True, text=True, timeout=max(10, deadline - time.monotonic()),
            stdin=subprocess.DEVNULL)
        if run.returncode != 0:
            raise BenchError(f"building the store failed:\n{run.stdout}\n{run.stderr}")
        dns_port, http_port, gnudip_port = free_ports(3)
        config, limits = write_config(tmp, store, dns_port, http_port, gnudip_port,
                                      {"update_changes": 0})
        server = Server(procs, tmp, config, dns_port, http_port, gnudip_port)
        server.start()
        # No user has an address yet: wait for HTTP and GnuDIP, and DNS for the
        # suffix's own record (ns1 glue).
        ready = server.wait_ready(f"ns1.{SUFFIX}", deadline)
        note(f"server ready in {ready:.2f} s (http {http_port}); {limits}")
        out = run_phases(args, procs, tmp, server, deadline)
        server.stop()
        phases = out["phases"]
        out["quiet"] = combine(phases, "quiet")
        out["flood"] = combine(phases, "flood")
        out["ratio"] = out["flood"]["rate"] / max(out["quiet"]["rate"], 1e-9)
        floods = [p["flood"] for p in phases if p["kind"] == "flood"]
        out["flood_total"] = {
            "answered": sum(x["answered"] for x in floods),
            "seconds": sum(x["seconds"] for x in floods),
            "errors": sum(x["errors"] for x in floods),
            "connects": sum(x["connects"] for x in floods),
            "cpu_s": sum(x["cpu_s"] for x in floods),
            "answers": _sum_dicts([x["answers"] for x in floods]),
            "statuses": _sum_dicts([x["statuses"] for x in floods]),
        }
        out["server_cpu_flood_s"] = sum(p["cpu"]["servers"]["server"]["cpu_s"]
                                        for p in phases if p["kind"] == "flood")
        out["code"] = code_description(code_dir, commit)
        out["limits"] = limits
        signal.alarm(0)
        summary(args, info, out)
        if args.json:
            for p in phases:
                p.pop("latencies", None)
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "machine": info, **out}, f, indent=2)
        bad = [k for p in phases if "answers" in p for k in p["answers"] if k != "good"]
        return 1 if bad else 0
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


def _sum_dicts(items: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for item in items:
        for k, v in item.items():
            total[k] = total.get(k, 0) + v
    return total


if __name__ == "__main__":
    sys.exit(main())
