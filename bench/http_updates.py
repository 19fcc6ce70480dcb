#!/usr/bin/env python
"""
HTTP update throughput benchmark for dyndns_plugin (not a test).

One run measures:

 1. C{<base>myip} (GET, no authentication): requests per second and
    latency with wrk; every body must be C{127.0.0.1};
 2. durable updates per second through C{/nic/update} (dyndns2, Basic
    auth) with wrk and C{bench/http_updates.lua}: every request changes a
    user's address (each user's requests alternate between two addresses,
    each wrk thread has its own users, at least as many as it has
    connections), so every acknowledged request is one SQLite write made
    durable (WAL, C{synchronous=FULL}) before the answer is sent;
 3. the group-commit factor: updates acknowledged per SQLite commit (the
    store's C{generation} counts commits);
 4. the server's CPU time per request, split into its main (reactor)
    thread and the other threads (SQLite, password hashing).

The server is a real C{twistd -n dyndns} process with the SQLite store,
HTTP on 127.0.0.1 and a free port, and N users (default 64) C{user1..userN}
with scrypt password hashes (the default cost), created with
C{SQLiteUserStore.import_users}. Right before the update run every user sends
one update (to a third address) so that its password is in the server's
cache of verified passwords (kept 300 s), as it would be for a router that
updates often: this measures the cached path, not scrypt (each cache miss
costs ~0.1 s of CPU on one of two hashing threads).

After the update run the server is killed with SIGKILL (C{--stop term} for
a clean stop) and the SQLite file is checked: every user's address must be
one of its two benchmark addresses, and a user whose requests were never in
flight concurrently and which had nothing in flight when wrk stopped must
have exactly the address of its last acknowledged update (an acknowledged
update is committed). Every response must have been C{good}; wrk must report
no socket errors.

Everything lives in a temporary directory; every process is stopped on exit,
also on errors, and a hard C{--timeout} applies.

    python bench/http_updates.py                     # the default run (~45 s)
    python bench/http_updates.py -c 64 --users 128   # more connections
    python bench/http_updates.py --py-spy /tmp/prof.txt  # profile the update run
    python bench/http_updates.py --twistd "python wrapper.py -n --pidfile="
                                         # a patched or instrumented server
    python bench/http_updates.py --json results.json # also write the numbers

The exit status is 1 if any response or the final store state was wrong.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dns_qps import write_config as write_server_config  # noqa: E402
from dns_qps import (  # noqa: E402  (shared helpers of the DNS benchmark)
    BenchError,
    Processes,
    Timeout,
    _busy_seconds,
    _children_cpu,
    _steal_seconds,
    free_port,
    log_problems,
    log_tail,
    note,
    twistd,
    wait_quiet,
)

SUFFIX = "dyn.example.com"
HOST = "127.0.0.1"
BASE_PATH = "/dyndns/"
LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "http_updates.lua")
MAX_USERS = 65535


def password_of(i: int) -> str:
    return f"bench-password-{i}"


def addresses_of(i: int) -> tuple[str, str, str]:
    """User C{i}'s two benchmark addresses and its warm-up address."""
    hi, lo = (i >> 8) & 255, i & 255
    return f"10.1.{hi}.{lo}", f"10.2.{hi}.{lo}", f"10.3.{hi}.{lo}"


# -- building the SQLite store (in a child process: it runs a reactor)


def make_store_main(path: str, count: int, log2_n: int) -> None:
    """C{_make-store PATH COUNT LOG2_N}: users with scrypt hashes, one transaction."""
    from twisted.internet import defer, task

    from dyndns_plugin import SQLiteUserStore, User
    from dyndns_plugin.passwords import hash_password

    async def build(reactor: Any) -> None:
        started = time.monotonic()
        # hashlib.scrypt releases the GIL: hash on both CPUs.
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            hashes = list(pool.map(
                lambda i: hash_password(password_of(i), log2_n=log2_n), range(1, count + 1)
            ))
        users = [User(id=f"user{i}", password_hash=h) for i, h in enumerate(hashes, 1)]
        hashed = time.monotonic()
        store = SQLiteUserStore(path, reactor)
        await store.open()
        try:
            await store.import_users(users, [])
        finally:
            await store.close()
        print(json.dumps({"users": count, "log2_n": log2_n,
                          "hash_s": round(hashed - started, 3),
                          "import_s": round(time.monotonic() - hashed, 3)}), flush=True)

    task.react(lambda reactor: defer.ensureDeferred(build(reactor)))


# -- the server


def write_config(tmp: str, store: str, dns_port: int, http_port: int,
                 log_updates: bool = False) -> str:
    return write_server_config(tmp, "server", store, dns_port, log_updates, f"""
[http]
listen = ["tcp:{http_port}:interface={HOST}"]
base_url = "http://{HOST}:{http_port}{BASE_PATH}"
timeout = 30

[http.methods]
url_auth = true
basic_auth = true
nic_update = true
remote_ip = true
""")


def http_get(port: int, path: str, auth: str | None = None,
             timeout: float = 5.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Authorization": f"Basic {auth}"} if auth else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def basic(i: int) -> str:
    return base64.b64encode(f"user{i}:{password_of(i)}".encode()).decode("ascii")


def start_server(procs: Processes, tmp: str, store: str, deadline: float,
                 command: list[str], log_updates: bool = False,
                 ) -> tuple[subprocess.Popen[bytes], int, str, float]:
    http_port = free_port()
    dns_port = free_port()
    config = write_config(tmp, store, dns_port, http_port,
                          log_updates=log_updates)
    log = os.path.join(tmp, "server.log")
    started = time.monotonic()
    proc = procs.start(command + [f"--logfile={log}", "dyndns", "--config", config],
                       log + ".out")
    while True:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}:\n{log_tail(log)}"
                             f"\n{log_tail(log + '.out')}")
        if time.monotonic() > deadline:
            raise Timeout(f"server on port {http_port} not ready in time:\n{log_tail(log)}")
        try:
            status, _body = http_get(http_port, BASE_PATH + "myip", timeout=0.5)
            if status == 200:
                return proc, http_port, log, time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)


def warm_up(port: int, users: int, deadline: float) -> float:
    """
    One update per user to its warm-up address: fills the server's cache of
    verified passwords (one scrypt each) and makes the first benchmark
    request of every user a change. Retries a user while the server answers
    badauth, which it does until the store is loaded.
    """
    started = time.monotonic()

    def one(i: int) -> None:
        path = f"/nic/update?hostname=user{i}.{SUFFIX}&myip={addresses_of(i)[2]}"
        while True:
            status, body = http_get(port, path, basic(i), timeout=10)
            if status == 200 and body.strip() == f"good {addresses_of(i)[2]}":
                return
            if status == 401 and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            raise BenchError(f"warm-up of user{i}: {status} {body.strip()!r}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(one, i) for i in range(1, users + 1)]:
            future.result()
    return time.monotonic() - started


# -- CPU accounting


def _thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """CPU seconds (user, system) of every thread of C{pid}, by thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[float, float]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:  # the server is gone; the caller notices
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        out[int(tid)] = (int(fields[11]) / ticks, int(fields[12]) / ticks)
    return out


class CPUMeter:
    """CPU time of the server's threads, of wrk, and of everything else."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.threads = _thread_cpu(pid)
        self.busy = _busy_seconds()
        self.children = _children_cpu()
        self.steal = _steal_seconds()

    def read(self) -> dict[str, Any]:
        threads = _thread_cpu(self.pid)
        used = {tid: round(sum(cpu) - sum(self.threads.get(tid, (0.0, 0.0))), 2)
                for tid, cpu in threads.items()}
        server = sum(used.values())
        client = _children_cpu() - self.children
        main_system = threads.get(self.pid, (0.0, 0.0))[1]
        before_system = self.threads.get(self.pid, (0.0, 0.0))[1]
        return {
            "server_cpu_s": round(server, 2),
            "main_thread_cpu_s": used.get(self.pid, 0.0),
            "main_thread_system_s": round(main_system - before_system, 2),
            # the other threads by thread id, i.e. in creation order: SQLite
            # first, then the password-hash threads
            "other_threads_cpu_s": {tid: c for tid, c in sorted(used.items())
                                    if tid != self.pid and c > 0},
            "client_cpu_s": round(client, 2),
            "other_cpu_s": round(max(0.0, _busy_seconds() - self.busy - server - client), 2),
            "steal_s": round(_steal_seconds() - self.steal, 2),
        }


# -- wrk


def parse_result_file(path: str) -> dict[str, Any]:
    out: dict[str, Any] = {"status": {}, "samples": [], "users": {}, "count": {},
                           "summary": {}, "errors": {}, "latency_us": {}}
    with open(path) as f:
        for line in f:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "sample":
                out["samples"].append(rest)
            elif kind == "user":
                user_id, sent, acked, last, overlapped = rest.split()
                out["users"][user_id] = {"sent": int(sent), "acked": int(acked),
                                         "last": last, "overlapped": overlapped == "1"}
            elif kind == "status":
                code, count = rest.split()
                out["status"][code] = out["status"].get(code, 0) + int(count)
            elif kind in ("count", "summary", "errors", "latency_us"):
                key, value = rest.split()
                out[kind][key] = float(value)
    return out


def run_wrk(args: argparse.Namespace, tmp: str, url: str, lua_args: list[str],
            label: str, server_pid: int, procs: Processes, deadline: float,
            profile: str | None = None,
            prepare: Callable[[], None] | None = None) -> dict[str, Any]:
    if time.monotonic() + args.duration + 10 > deadline:
        raise Timeout(f"not enough time left for the {label} run")
    if args.wait_quiet:
        wait_quiet(min(args.wait_quiet, deadline - time.monotonic() - args.duration - 10))
    if prepare is not None:
        prepare()
        if time.monotonic() + args.duration + 10 > deadline:
            raise Timeout(f"not enough time left for the {label} run")
    result_file = os.path.join(tmp, f"{label}.wrk.txt")
    argv = ["wrk", "-t", str(args.threads), "-c", str(args.connections),
            "-d", f"{args.duration}s", "--latency", "--timeout", "5s",
            "-s", LUA, url, "--", lua_args[0], *lua_args[1:], result_file]
    if lua_args[0] == "update":
        argv.append(str(args.threads))
    note(f"{label}: {' '.join(argv)}")
    spy = None
    if profile:
        spy = procs.start(
            [args.py_spy_bin, "record", "-p", str(server_pid), "-d", str(args.duration),
             "-r", "100", "--threads", "--idle", "--format", "raw", "-o", profile],
            profile + ".log",
        )
    meter = CPUMeter(server_pid)
    started = time.monotonic()
    try:
        run = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=args.duration + 30)
    except subprocess.TimeoutExpired:
        raise Timeout(f"wrk ({label}) did not finish") from None
    elapsed = time.monotonic() - started
    cpu = meter.read()
    if spy is not None:
        try:
            spy.wait(max(5.0, args.duration + 10 - elapsed))
        except subprocess.TimeoutExpired:
            pass
        procs.stop(spy)
    if run.returncode != 0:
        raise BenchError(f"wrk exit {run.returncode}:\n{run.stdout}\n{run.stderr}")
    if not os.path.exists(result_file):
        raise BenchError(f"wrk wrote no results:\n{run.stdout}\n{run.stderr}")
    result = parse_result_file(result_file)
    m = re.search(r"Requests/sec:\s+([0-9.]+)", run.stdout)
    result["requests_per_s"] = float(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", run.stdout)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", run.stdout)
    result["socket_errors"] = m.group(1) if m else None
    result["argv"] = argv
    result["stdout"] = run.stdout
    result["cpu"] = cpu
    seconds = result["summary"]["duration_us"] / 1e6
    result["seconds"] = seconds
    result["good_per_s"] = result["count"].get("good", 0) / seconds
    requests = max(result["summary"]["requests"], 1)
    result["server_cpu_us_per_request"] = round(1e6 * cpu["server_cpu_s"] / requests, 1)
    result["main_thread_cpu_us_per_request"] = round(1e6 * cpu["main_thread_cpu_s"] / requests, 1)
    print(_indent(run.stdout), flush=True)
    return result


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.rstrip().splitlines())


# -- the store, read from outside


def read_generation(store: str) -> int:
    conn = sqlite3.connect(store, timeout=10)
    try:
        (value,) = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(value)
    finally:
        conn.close()


def check_store(store: str, users: int, wrk_users: dict[str, Any]) -> dict[str, Any]:
    """Every user's final state in the file, against what wrk saw."""
    conn = sqlite3.connect(store, timeout=10)
    try:
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
        (generation,) = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        rows = {row[0]: row[1:] for row in conn.execute(
            "SELECT user_id, ipv4, ipv6, offline, method, gen FROM states")}
    finally:
        conn.close()
    problems: list[str] = []
    exact = loose = 0
    if integrity != "ok":
        problems.append(f"integrity_check: {integrity}")
    for i in range(1, users + 1):
        user_id = f"user{i}"
        a, b, _warm = addresses_of(i)
        row = rows.get(user_id)
        seen = wrk_users.get(user_id)
        if row is None:
            problems.append(f"{user_id}: no state")
            continue
        ipv4, ipv6, offline, method, _gen = row
        if ipv4 not in (a, b) or ipv6 is not None or offline or method != "dyndns2":
            problems.append(f"{user_id}: state {row}, expected {a} or {b} via dyndns2")
            continue
        if seen is None or seen["acked"] == 0:
            problems.append(f"{user_id}: wrk acknowledged no update for this user")
            continue
        if seen["sent"] == seen["acked"] and not seen["overlapped"]:
            exact += 1
            if ipv4 != seen["last"]:
                problems.append(f"{user_id}: store has {ipv4}, last acknowledged {seen['last']}")
        else:
            loose += 1
    return {"integrity": integrity, "generation": int(generation), "problems": problems,
            "exact": exact, "loose": loose}


def count_log(log: str) -> dict[str, int]:
    """
    Lines and bytes the server logged (twistd rotates its log at 1 MB: the
    rotated files count too), and how many of the lines are access-log lines
    for /nic/update and "online at ... via dyndns2" lines of the service.
    """
    access = updates = lines = size = files = 0
    folder, name = os.path.split(log)
    for entry in sorted(os.listdir(folder)):
        if entry != name and not re.fullmatch(re.escape(name) + r"\.\d+", entry):
            continue
        path = os.path.join(folder, entry)
        files += 1
        size += os.path.getsize(path)
        with open(path, errors="replace") as f:
            for line in f:
                lines += 1
                if '"GET /nic/update' in line:
                    access += 1
                elif " online at " in line and "via dyndns2" in line:
                    updates += 1
    return {"bytes": size, "files": files, "lines": lines, "access_lines": access,
            "update_lines": updates}


# -- py-spy profile summary

#: Where a main-thread sample goes: the innermost frame that matches decides
#: (so a log call made inside the service counts as logging). Heuristic.
PROFILE_CATEGORIES = [
    ("idle (epoll wait)", [r"^EPollReactor\.doPoll$"]),  # only as the leaf
    ("logging", [r"^HTTPFactory\.log$", r"redacting_log_formatter", r"combinedLogFormatter",
                 r"^Logger\.(info|emit|failure)$", r"LoggingFile", r"LogPublisher",
                 r"FileLogObserver", r"formatEvent", r"formatTime"]),
    ("password check (cache hit)", [r"^PasswordChecker\.", r"basic_credentials",
                                    r"UsernamePassword"]),
    ("address and name parsing", [r"parse_address", r"split_addresses", r"normalize_name",
                                  r"^_Base", r"^IPv[46]Address", r"ip_address",
                                  r"ClientAddressDetector", r"_peer_address",
                                  r"_optional_address"]),
    ("registry and observers", [r"^Registry\.", r"_apply_state", r"_notify"]),
    ("store: queueing the write", [r"^SQLiteUserStore\.", r"^_Worker\.submit"]),
    ("per-user lock (DeferredLock)", [r"_ConcurrencyPrimitive", r"DeferredLock",
                                      r"_serialized"]),
    ("service logic", [r"^DynDNSService\."]),
    ("response: headers, write, finish", [r"^finish$", r"^_reply$", r"Request\.write",
                                          r"Request\.finish", r"setHeader",
                                          r"setResponseCode", r"doWrite", r"writeSomeData",
                                          r"Headers", r"_NameEncoder"]),
    ("nic/update handler", [r"^NicUpdateResource\.handle$", r"^args?$"]),
    ("resource dispatch", [r"^Request\.process$", r"getResourceFor", r"getChildForRequest",
                           r"Resource\.render", r"render_GET", r"DynDNSRequest\.process"]),
    ("HTTP parsing and connections", [r"^HTTPChannel\.", r"requestReceived", r"LineReceiver",
                                      r"parse_qs", r"Request\.__init__", r"doRead",
                                      r"dataReceived", r"gotLength", r"connectionLost",
                                      r"buildProtocol", r"doAccept"]),
    ("Deferred and coroutine machinery", [r"Deferred", r"_inlineCallbacks", r"ensureDeferred",
                                          r"maybeDeferred"]),
    ("reactor (timers, callFromThread)", [r"runUntilCurrent", r"wakeUp", r"doIteration",
                                          r"_Waker"]),
]


def profile_summary(path: str) -> dict[str, Any]:
    """
    Samples per thread of a py-spy C{--threads --idle --format raw} file,
    with the main thread's samples in L{PROFILE_CATEGORIES} and the leaf
    functions of the other threads.
    """
    patterns = [(name, [re.compile(p) for p in pats]) for name, pats in PROFILE_CATEGORIES]
    threads: dict[str, dict[str, Any]] = {}
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = stack.split(";")
            name = frames[0].partition(": ")[2] or frames[0]
            functions = [frame.split(" (")[0] for frame in frames[1:]]
            info = threads.setdefault(name, {"samples": 0, "categories": {}, "leaves": {}})
            info["samples"] += n
            leaf = functions[-1] if functions else "?"
            info["leaves"][leaf] = info["leaves"].get(leaf, 0) + n
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
    return threads


def print_profile(threads: dict[str, Any]) -> None:
    print("  py-spy profile of the server during the update run (share of samples):")
    for name, info in sorted(threads.items(), key=lambda kv: -kv[1]["samples"]):
        total = max(info["samples"], 1)
        if name == "MainThread":
            print(f"    main (reactor) thread, {total} samples:")
            for category, n in sorted(info["categories"].items(), key=lambda kv: -kv[1]):
                print(f"      {100 * n / total:5.1f}%  {category}")
        else:
            leaves = sorted(info["leaves"].items(), key=lambda kv: -kv[1])[:4]
            shown = ", ".join(f"{leaf} {100 * n / total:.0f}%" for leaf, n in leaves)
            print(f"    thread {name}: {shown}")


# -- report


def machine() -> dict[str, Any]:
    import twisted

    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "dyndns_plugin"],
                           capture_output=True, text=True).stdout.strip()
    m = re.search(r"wrk (\S+)", wrk.stdout + wrk.stderr)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "twisted": twisted.__version__,
        "sqlite": sqlite3.sqlite_version,
        "wrk": m.group(1) if m else "?",
        "commit": commit + (" + uncommitted changes in dyndns_plugin/" if dirty else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def _latency(r: dict[str, Any]) -> str:
    lat = r["latency_us"]
    return (f"p50 {lat['p50'] / 1000:.2f} ms, p90 {lat['p90'] / 1000:.2f} ms, "
            f"p99 {lat['p99'] / 1000:.2f} ms, max {lat['max'] / 1000:.1f} ms")


def _errors(r: dict[str, Any]) -> str:
    e = {k: int(v) for k, v in r["errors"].items() if v}
    return ", ".join(f"{k} {v}" for k, v in e.items()) or "none"


def _cpu(r: dict[str, Any]) -> str:
    c = r["cpu"]
    others = ", ".join(f"{v}" for v in c["other_threads_cpu_s"].values()) or "-"
    return (f"server {c['server_cpu_s']} s ({r['server_cpu_us_per_request']} us/request; "
            f"main thread {c['main_thread_cpu_s']} s (system {c['main_thread_system_s']} s) "
            f"= {r['main_thread_cpu_us_per_request']} us/request, other threads {others} s), wrk {c['client_cpu_s']} s, "
            f"others {c['other_cpu_s']} s, steal {c['steal_s']} s")


def summary(args: argparse.Namespace, info: dict[str, Any], out: dict[str, Any]) -> None:
    print()
    print("=" * 72)
    print("dyndns_plugin HTTP benchmark")
    print(f"  machine: {info['nproc']} cpus, {info['cpu']}; Python {info['python']}, "
          f"Twisted {info['twisted']}, SQLite {info['sqlite']}, wrk {info['wrk']}; "
          f"{info['date']}; loadavg at start {' '.join(info['loadavg_at_start'])}")
    print(f"  code: {info['commit']}")
    s = out["store"]
    print(f"  {s['users']} users, scrypt ln={s['log2_n']} (hashing {s['hash_s']:.1f} s); "
          f"server ready in {out['startup_s']:.2f} s; warm-up (one update per user, "
          f"fills the password cache) {out['warmup_s']:.2f} s")
    print(f"  wrk -t {args.threads} -c {args.connections} -d {args.duration}s")
    m = out.get("myip")
    if m:
        print(f"  {BASE_PATH}myip (GET, no auth): {m['requests_per_s']:.1f} requests/s; "
              f"{_latency(m)}")
        print(f"    {int(m['count'].get('good', 0))} correct bodies, "
              f"{int(m['count'].get('other', 0))} other; socket errors: {_errors(m)}")
        print(f"    cpu: {_cpu(m)}")
    u = out["update"]
    good = int(u["count"].get("good", 0))
    print(f"  /nic/update (Basic auth, every request a change): "
          f"{u['good_per_s']:.1f} durable updates/s ({u['requests_per_s']:.1f} requests/s); "
          f"{_latency(u)}")
    print(f"    responses: {good} good, {int(u['count'].get('nochg', 0))} nochg, "
          f"{int(u['count'].get('other', 0))} other; status codes "
          f"{u['status']}; socket errors: {_errors(u)}")
    for sample in u["samples"][:3]:
        print(f"    e.g. {sample}")
    print(f"    cpu: {_cpu(u)}")
    commits = out["commits"]
    if commits:
        print(f"    SQLite commits during the run: {commits} => {good / commits:.2f} "
              f"acknowledged updates per commit (group commit), "
              f"{commits / u['seconds']:.0f} commits/s")
    c = out["check"]
    print(f"  store after {'SIGKILL' if args.stop == 'kill' else 'SIGTERM'}: integrity "
          f"{c['integrity']}; {c['exact']} users exactly at their last acknowledged address, "
          f"{c['loose']} at one of their two (a request was in flight); "
          f"{len(c['problems'])} problems")
    for problem in c["problems"][:10]:
        print(f"    PROBLEM: {problem}")
    lg = out["log"]
    if lg["lines"]:
        print(f"  server log: {lg['lines']} lines, {lg['bytes'] / 2**20:.1f} MiB in "
              f"{lg['files']} files "
              f"({lg['access_lines']} access-log lines for /nic/update, "
              f"{lg['update_lines']} 'online at ... via dyndns2' lines)")
    for problem in out["log_problems"][:3]:
        print(f"  WARNING: server log: {problem}")
    hashing = list(u["cpu"]["other_threads_cpu_s"].values())[1:]  # [0] is the SQLite thread
    if sum(hashing) > 0.5:
        print(f"  WARNING: the password-hash threads used {sum(hashing):.1f} s of CPU during "
              "the update run: cache misses (scrypt), not the cached path this measures")
    noisy = [r["cpu"]["other_cpu_s"] for r in (m, u) if r]
    if noisy and max(noisy) > 0.05 * args.duration:
        print(f"  WARNING: other processes used up to {max(noisy):.1f} s of CPU during a run; "
              "the numbers are disturbed (2 cpus only)")
    if out.get("profile"):
        print_profile(out["profile"])
    print(f"  target: 2,000 durable updates/s: "
          f"{'MET' if u['good_per_s'] >= 2000 else 'NOT MET'}")
    print("=" * 72)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_make-store":
        make_store_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=64,
                        help="users user1..userN (at least --connections; default 64)")
    parser.add_argument("-t", "--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("-c", "--connections", type=int, default=32, help="wrk -c")
    parser.add_argument("-d", "--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--no-myip", action="store_true", help="skip the myip run")
    parser.add_argument("--update-log", action="store_true",
                        help="run the server with service.log_updates = true (default: the "
                             "server's default, off)")
    parser.add_argument("--hash-cost", type=int, default=15, metavar="LOG2_N",
                        help="scrypt cost of the users' hashes (default 15, the real one)")
    parser.add_argument("--stop", choices=("kill", "term"), default="kill",
                        help="how the server is stopped before the store is checked")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each wrk run wait up to this long for an idle machine")
    parser.add_argument("--py-spy", metavar="FILE",
                        help="profile the server during the update run with py-spy "
                        "(raw collapsed stacks, --threads --idle, 100 Hz) into FILE")
    parser.add_argument("--py-spy-bin", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--twistd", metavar="COMMAND",
                        help="run the server with COMMAND (e.g. a wrapper script that "
                        "patches or profiles it) instead of this Python's "
                        "'twistd -n --pidfile='; the twistd options follow it")
    parser.add_argument("--timeout", type=int, default=170, help="hard limit, seconds")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not 1 <= args.duration <= 60:
        parser.error("--duration must be 1..60")
    if not 1 <= args.threads <= args.connections:
        parser.error("need 1 <= --threads <= --connections")
    if not args.connections <= args.users <= MAX_USERS:
        parser.error(f"need --connections <= --users <= {MAX_USERS} (one user per connection)")
    if args.users < args.threads * -(-args.connections // args.threads):
        parser.error("every wrk thread needs at least as many users as connections")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    if args.py_spy and not os.access(args.py_spy_bin, os.X_OK):
        parser.error(f"py-spy not found ({args.py_spy_bin}); pip install py-spy, --py-spy-bin")

    deadline = time.monotonic() + args.timeout

    def alarm(_signum: int, _frame: object) -> None:
        raise Timeout(f"benchmark exceeded --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(args.timeout + 5)

    info = machine()
    tmp = tempfile.mkdtemp(prefix="dyndns-http-bench-")
    procs = Processes()
    out: dict[str, Any] = {}
    try:
        store = os.path.join(tmp, "store.sqlite")
        note(f"building the store in {tmp}: {args.users} users, scrypt ln={args.hash_cost}")
        run = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "_make-store", store,
             str(args.users), str(args.hash_cost)],
            capture_output=True, text=True, timeout=max(10, deadline - time.monotonic()),
        )
        if run.returncode != 0:
            raise BenchError(f"building the store failed:\n{run.stdout}\n{run.stderr}")
        out["store"] = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")][0]
        users_file = os.path.join(tmp, "users.tsv")
        with open(users_file, "w") as f:
            for i in range(1, args.users + 1):
                a, b, _warm = addresses_of(i)
                f.write(f"user{i}\tuser{i}.{SUFFIX}\t{basic(i)}\t{a}\t{b}\n")

        note("starting twistd dyndns (SQLite store, HTTP on 127.0.0.1)")
        command = shlex.split(args.twistd) if args.twistd else twistd()
        proc, port, log, ready = start_server(procs, tmp, store, deadline, command,
                                               log_updates=args.update_log)
        out["startup_s"] = ready
        note(f"server on port {port}")

        if not args.no_myip:
            out["myip"] = run_wrk(args, tmp, f"http://{HOST}:{port}{BASE_PATH}myip",
                                  ["myip", HOST], "myip", proc.pid, procs, deadline)

        def prepare() -> None:
            # Right before the run: the server forgets verified passwords
            # after 300 s, so a long --wait-quiet must not come in between.
            out["warmup_s"] = warm_up(port, args.users, deadline)
            note(f"every user updated once (warm-up {out['warmup_s']:.1f} s)")
            out["generation_before"] = read_generation(store)

        out["update"] = run_wrk(args, tmp, f"http://{HOST}:{port}/nic/update",
                                ["update", users_file], "update", proc.pid, procs,
                                deadline, profile=args.py_spy,
                                prepare=prepare)
        if proc.poll() is not None:
            raise BenchError(f"the server died during the run:\n{log_tail(log)}")
        # Requests wrk gave up on at the end may still commit: let them.
        time.sleep(0.5)
        if args.stop == "kill":
            proc.kill()
            proc.wait(5)
        procs.stop(proc)
        check = check_store(store, args.users, out["update"]["users"])
        out["check"] = check
        out["commits"] = check["generation"] - out["generation_before"]
        out["log"] = count_log(log)
        out["log_problems"] = log_problems(log)
        if args.py_spy and os.path.exists(args.py_spy):
            out["profile"] = profile_summary(args.py_spy)
        signal.alarm(0)
        summary(args, info, out)
        if args.json:
            slim = {k: v for k, v in out.items()}
            for key in ("myip", "update"):
                if key in slim:
                    slim[key] = {k: v for k, v in slim[key].items() if k != "users"}
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "machine": info, **slim}, f, indent=2)
        u = out["update"]
        failed = (check["problems"] or u["count"].get("other", 0) or u["count"].get("nochg", 0)
                  or any(u["errors"].values())
                  or (out.get("myip") and (out["myip"]["count"].get("other", 0)
                                           or any(out["myip"]["errors"].values()))))
        if failed:
            print("\nBENCHMARK INVALID: some responses or the final store state were wrong "
                  "(see above)", file=sys.stderr)
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
