#!/usr/bin/env python
"""
DNS query throughput and memory benchmark for dyndns_plugin (not a test).

One run measures:

 1. qps of our server: C{twistd -n dyndns} (DynDNSResolver in front of the
    suffix zone) with N users (default 10,000) C{user1..userN}, each with an
    IPv4 address, loaded from a SQLite store built with
    C{SQLiteUserStore.import_users};
 2. qps of a baseline: Twisted's own C{twistd -n dns --bindzone} serving the
    same N A records from a zone file (stock C{DNSServerFactory} +
    C{BindAuthority}, a L{FileAuthority});
 3. both with dnsperf (UDP, same random query file, no rate limit), in
    alternating rounds (default 4 rounds of 5 s each, order ours/baseline,
    then baseline/ours, ...) so that a slow phase of a shared or virtual
    machine hits both; the ratio ours/baseline, the server CPU time per
    query, and the CPU that other processes used or the hypervisor stole
    meanwhile (noise), per round;
 4. resident memory per user: our server started with 0 and with M users
    (default 100,000), C{(VmRSS(M) - VmRSS(0)) / M}, and the load time.

Every server is a separate process on 127.0.0.1 and a free port; all of them
are stopped on exit, also on errors or timeouts. Everything lives in a
temporary directory.

    python bench/dns_qps.py                      # the default run (~55 s)
    python bench/dns_qps.py --rounds 1 --duration 10  # one dnsperf run each
    python bench/dns_qps.py --rounds 2 --mem-users 0  # quick, no memory part
    python bench/dns_qps.py --json results.json  # also write the numbers
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

SUFFIX = "dyn.example.com"
TTL = 30
HOST = "127.0.0.1"


class BenchError(Exception):
    pass


class Timeout(BenchError):
    pass


def address_of(i: int) -> str:
    """The IPv4 address of user C{i}: unique for i < 2**24."""
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def note(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- building the SQLite stores (in a child process: it runs a reactor)


def make_stores_main(specs: list[str]) -> None:
    """C{_make-stores PATH:COUNT ...}: build each store in one transaction."""
    from twisted.internet import defer, task

    from dyndns_plugin import HostState, SQLiteUserStore, User

    async def build(reactor: Any) -> None:
        for spec in specs:
            path, _, count_text = spec.rpartition(":")
            count = int(count_text)
            started = time.monotonic()
            users = [User(id=f"user{i}") for i in range(1, count + 1)]
            states = [
                HostState(f"user{i}", ipv4=address_of(i), ttl=TTL, updated_at=0.0)
                for i in range(1, count + 1)
            ]
            built = time.monotonic()
            store = SQLiteUserStore(path, reactor)
            await store.open()
            try:
                if count:
                    await store.import_users(users, states)
            finally:
                await store.close()
            done = time.monotonic()
            print(
                json.dumps(
                    {"path": path, "users": count,
                     "objects_s": round(built - started, 3),
                     "import_s": round(done - built, 3)}
                ),
                flush=True,
            )

    task.react(lambda reactor: defer.ensureDeferred(build(reactor)))


# -- processes


class Processes:
    """Every child process we start, so that all of them can be stopped."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], log_path: str) -> subprocess.Popen[bytes]:
        log = open(log_path, "wb")
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self.children.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            except ProcessLookupError:
                pass
        if proc in self.children:
            self.children.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.children):
            try:
                self.stop(proc, grace=3.0)
            except Exception as e:  # keep stopping the others
                print(f"could not stop pid {proc.pid}: {e}", file=sys.stderr)


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((HOST, 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind((HOST, port))
            except OSError:
                continue
            return port
        finally:
            udp.close()
            tcp.close()
    raise BenchError("no free port")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon... from /proc/PID/status, in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                values[key] = int(parts[0]) * 1024
    return values


def log_tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def log_problems(path: str) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return [line.rstrip() for line in f
                    if "Traceback" in line or "Unhandled" in line or "CRITICAL" in line]
    except OSError:
        return []


# -- DNS checks (dnspython)


def query(port: int, name: str, timeout: float = 0.5) -> Any:
    import dns.message
    import dns.query

    return dns.query.udp(dns.message.make_query(name, "A"), HOST, port=port, timeout=timeout)


def addresses_in(response: Any) -> set[str]:
    return {rd.address for rrset in response.answer for rd in rrset if rrset.rdtype == 1}


def wait_ready(
    proc: subprocess.Popen[bytes], port: int, users: int, deadline: float, log: str
) -> float:
    """
    Poll until the server answers for its last user (or, with no users,
    answers NXDOMAIN instead of the SERVFAIL of a registry not loaded yet).
    Returns the time it became ready (monotonic).
    """
    import dns.exception
    import dns.rcode

    name = f"user{max(users, 1)}.{SUFFIX}"
    while True:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise Timeout(f"server on port {port} not ready in time:\n{log_tail(log)}")
        try:
            response = query(port, name, timeout=0.2)
        except (dns.exception.Timeout, OSError):
            time.sleep(0.02)
            continue
        rcode = response.rcode()
        if users and rcode == dns.rcode.NOERROR and addresses_in(response) == {address_of(users)}:
            return time.monotonic()
        if not users and rcode == dns.rcode.NXDOMAIN:
            return time.monotonic()
        time.sleep(0.02)


def check_answers(port: int, users: int, samples: int, label: str) -> None:
    """A few random users must get exactly their address; a non-user NXDOMAIN."""
    import dns.rcode

    rng = random.Random(7)
    for i in [1, users] + [rng.randint(1, users) for _ in range(samples)]:
        response = query(port, f"user{i}.{SUFFIX}", timeout=2)
        got = addresses_in(response)
        if response.rcode() != dns.rcode.NOERROR or got != {address_of(i)}:
            raise BenchError(
                f"{label}: user{i} answered {dns.rcode.to_text(response.rcode())} {got}, "
                f"expected {address_of(i)}"
            )
    response = query(port, f"user{users + 1}.{SUFFIX}", timeout=2)
    if response.rcode() != dns.rcode.NXDOMAIN:
        raise BenchError(f"{label}: user{users + 1} answered {dns.rcode.to_text(response.rcode())}")


# -- servers


def write_config(tmp: str, name: str, store: str, port: int,
                 log_updates: bool = False, extra: str = "") -> str:
    """
    The server configuration every benchmark starts from (the other
    benchmarks add their listeners in C{extra}).
    """
    path = os.path.join(tmp, f"{name}.toml")
    with open(path, "w") as f:
        f.write(
            f"""[service]
suffix = "{SUFFIX}"
default_ttl = {TTL}
min_ttl = 10
max_ttl = 86400
poll_interval = 0.5
log_updates = {"true" if log_updates else "false"}

[store]
backend = "sqlite"
path = "{store}"

[limits]
# Benchmarks push thousands of changes per user a minute from loopback:
# they measure throughput, not the limiter (bench/auth_flood.py does that).
enabled = false

[dns]
listen = ["{HOST}:{port}"]
nameservers = ["ns1.{SUFFIX}"]
hostmaster = "hostmaster.{SUFFIX}"

[dns.glue]
"ns1.{SUFFIX}" = ["127.0.0.1"]
{extra}"""
        )
    return path


def write_zone(tmp: str, users: int) -> str:
    path = os.path.join(tmp, "baseline.zone")
    with open(path, "w") as f:
        f.write(f"$TTL {TTL}\n")
        f.write(
            f"{SUFFIX}. 3600 IN SOA ns1.{SUFFIX}. hostmaster.{SUFFIX}. "
            "1 3600 600 1209600 30\n"
        )
        f.write(f"{SUFFIX}. 3600 IN NS ns1.{SUFFIX}.\n")
        f.write(f"ns1.{SUFFIX}. 3600 IN A 127.0.0.1\n")
        for i in range(1, users + 1):
            f.write(f"user{i}.{SUFFIX}. {TTL} IN A {address_of(i)}\n")
    return path


def twistd() -> list[str]:
    """C{twistd -n --pidfile=} of this Python (the one dyndns_plugin is installed in)."""
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if not os.access(script, os.X_OK):
        script = shutil.which("twistd") or "twistd"
    return [script, "-n", "--pidfile="]


def start_ours(procs: Processes, tmp: str, name: str, store: str, users: int,
               deadline: float) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    config = write_config(tmp, name, store, port)
    log = os.path.join(tmp, f"{name}.log")
    started = time.monotonic()
    proc = procs.start(twistd() + [f"--logfile={log}", "dyndns", "--config", config],
                       log + ".out")
    ready = wait_ready(proc, port, users, deadline, log)
    return proc, port, ready - started


def start_baseline(procs: Processes, tmp: str, zone: str, users: int,
                   deadline: float) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    log = os.path.join(tmp, "baseline.log")
    started = time.monotonic()
    proc = procs.start(
        twistd() + [f"--logfile={log}", "dns", "--bindzone", zone,
                    "--port", str(port), "--interface", HOST],
        log + ".out",
    )
    ready = wait_ready(proc, port, users, deadline, log)
    return proc, port, ready - started


# -- dnsperf


def write_queries(tmp: str, users: int, lines: int, seed: int) -> str:
    path = os.path.join(tmp, "queries.txt")
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(lines):
            f.write(f"user{rng.randint(1, users)}.{SUFFIX} A\n")
    return path


_NUMBER = r"([0-9.]+)"


def parse_dnsperf(output: str) -> dict[str, Any]:
    def find(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, output)

    result: dict[str, Any] = {}
    m = find(r"Queries sent:\s+(\d+)")
    if m:
        result["sent"] = int(m.group(1))
    m = find(r"Queries completed:\s+(\d+) \(" + _NUMBER + r"%\)")
    if m:
        result["completed"] = int(m.group(1))
        result["completed_pct"] = float(m.group(2))
    m = find(r"Queries lost:\s+(\d+)")
    if m:
        result["lost"] = int(m.group(1))
    m = find(r"Response codes:\s+(.*)")
    if m:
        result["rcodes"] = {k: int(v) for k, v in re.findall(r"([A-Z]+) (\d+)", m.group(1))}
    m = find(r"Average packet size:\s+request (\d+), response (\d+)")
    if m:
        result["request_bytes"] = int(m.group(1))
        result["response_bytes"] = int(m.group(2))
    m = find(r"Queries per second:\s+" + _NUMBER)
    if m:
        result["qps"] = float(m.group(1))
    m = find(r"Average Latency \(s\):\s+" + _NUMBER + r" \(min " + _NUMBER + r", max " + _NUMBER)
    if m:
        result["latency_avg_ms"] = float(m.group(1)) * 1000
        result["latency_min_ms"] = float(m.group(2)) * 1000
        result["latency_max_ms"] = float(m.group(3)) * 1000
    m = find(r"Latency StdDev \(s\):\s+" + _NUMBER)
    if m:
        result["latency_stddev_ms"] = float(m.group(1)) * 1000
    if "qps" not in result or "completed" not in result:
        raise BenchError(f"could not parse dnsperf output:\n{output}")
    return result


def dnsperf(port: int, queries: str, seconds: float, clients: int, outstanding: int,
            max_qps: int) -> dict[str, Any]:
    argv = ["dnsperf", "-s", HOST, "-p", str(port), "-d", queries,
            "-l", str(seconds), "-c", str(clients), "-q", str(outstanding), "-t", "2"]
    if max_qps:
        argv += ["-Q", str(max_qps)]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Timeout("dnsperf did not finish") from None
    if run.returncode != 0:
        raise BenchError(f"dnsperf exit {run.returncode}:\n{run.stdout}\n{run.stderr}")
    result = parse_dnsperf(run.stdout)
    result["argv"] = " ".join(argv)
    return result


# -- the benchmark


def qps_part(args: argparse.Namespace, procs: Processes, tmp: str, store: str,
             deadline: float) -> dict[str, Any]:
    zone = write_zone(tmp, args.users)
    queries = write_queries(tmp, args.users, args.query_lines, args.seed)
    out: dict[str, Any] = {"rounds": []}

    note("starting the baseline (twistd dns --bindzone) and our server (twistd dyndns)")
    base_proc, base_port, base_ready = start_baseline(procs, tmp, zone, args.users, deadline)
    ours_proc, ours_port, ours_ready = start_ours(procs, tmp, "ours", store, args.users, deadline)
    out["startup_s"] = {"baseline": round(base_ready, 2), "ours": round(ours_ready, 2)}
    check_answers(base_port, args.users, 20, "baseline")
    check_answers(ours_port, args.users, 20, "ours")
    note(f"both answer correctly (baseline port {base_port}, ours port {ours_port})")

    servers = {"ours": (ours_proc, ours_port), "baseline": (base_proc, base_port)}
    if args.warmup:
        for label, (_proc, port) in servers.items():
            dnsperf(port, queries, args.warmup, args.clients, args.outstanding, args.max_qps)
    for r in range(args.rounds):
        order = ["ours", "baseline"] if r % 2 == 0 else ["baseline", "ours"]
        row: dict[str, Any] = {}
        for label in order:
            proc, port = servers[label]
            if time.monotonic() + args.duration + 5 > deadline:
                raise Timeout("not enough time left for dnsperf")
            if args.wait_quiet:
                wait_quiet(min(args.wait_quiet, deadline - time.monotonic() - args.duration - 10))
            note(f"round {r + 1}: dnsperf against {label} for {args.duration} s")
            before = _cpu_seconds(proc.pid)
            busy, children, steal = _busy_seconds(), _children_cpu(), _steal_seconds()
            row[label] = dnsperf(port, queries, args.duration, args.clients,
                                 args.outstanding, args.max_qps)
            server_cpu = _cpu_seconds(proc.pid) - before
            dnsperf_cpu = _children_cpu() - children
            row[label]["server_cpu_s"] = round(server_cpu, 2)
            row[label]["dnsperf_cpu_s"] = round(dnsperf_cpu, 2)
            # CPU used by anything else on the machine meanwhile: noise.
            row[label]["other_cpu_s"] = round(
                max(0.0, _busy_seconds() - busy - server_cpu - dnsperf_cpu), 2
            )
            row[label]["steal_s"] = round(_steal_seconds() - steal, 2)
            row[label]["cpu_us_per_query"] = round(
                1e6 * row[label]["server_cpu_s"] / max(row[label]["completed"], 1), 1
            )
            _print_dnsperf(label, row[label])
        row["ratio"] = row["ours"]["qps"] / row["baseline"]["qps"]
        out["rounds"].append(row)
    for label in ("ours", "baseline"):
        out[f"{label}_qps_mean"] = sum(r[label]["qps"] for r in out["rounds"]) / args.rounds
    out["ratio_of_means"] = out["ours_qps_mean"] / out["baseline_qps_mean"]
    ratios = sorted(r["ratio"] for r in out["rounds"])
    middle = len(ratios) // 2
    out["ratio_median"] = (
        ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2
    )
    out["ratio_min"], out["ratio_max"] = ratios[0], ratios[-1]
    out["rss"] = {label: proc_status(proc.pid)["VmRSS"] for label, (proc, _p) in servers.items()}
    for label, (proc, _port) in servers.items():
        if proc.poll() is not None:
            raise BenchError(f"{label} server died during the run")
        procs.stop(proc)
    out["log_problems"] = {
        "ours": log_problems(os.path.join(tmp, "ours.log")),
        "baseline": log_problems(os.path.join(tmp, "baseline.log")),
    }
    return out


def _cpu_fields() -> list[int]:
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:]]


def _busy_seconds() -> float:
    """CPU time all CPUs spent busy (not idle, not stolen), system wide."""
    user, nice, system, _idle, _iowait, irq, softirq = _cpu_fields()[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _steal_seconds() -> float:
    """CPU time the hypervisor gave to other guests (a VM's noise)."""
    fields = _cpu_fields()
    return fields[7] / os.sysconf("SC_CLK_TCK") if len(fields) > 7 else 0.0


def wait_quiet(limit: float, window: float = 2.0) -> None:
    """
    Wait (at most C{limit} seconds) until the machine is idle: less than 10%
    of one CPU busy over C{window} seconds (our idle servers use ~0).
    """
    end = time.monotonic() + max(0.0, limit)
    while True:
        busy = _busy_seconds()
        time.sleep(window)
        used = _busy_seconds() - busy
        if used < 0.1 * window:
            return
        if time.monotonic() > end:
            note(f"machine still busy ({used / window:.1f} CPUs); measuring anyway")
            return


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # utime, stime are fields 14 and 15 (1-based); after the ")" they are 12, 13.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _print_dnsperf(label: str, r: dict[str, Any]) -> None:
    rcodes = ", ".join(f"{k} {v}" for k, v in r.get("rcodes", {}).items())
    print(
        f"    {label:8} {r['qps']:9.1f} qps  completed {r['completed']}/{r.get('sent')} "
        f"({r['completed_pct']:.2f}%)  latency avg {r.get('latency_avg_ms', 0):.2f} ms "
        f"max {r.get('latency_max_ms', 0):.1f} ms  [{rcodes}]  server cpu {r['server_cpu_s']} s "
        f"({r['cpu_us_per_query']} us/query), dnsperf cpu {r['dnsperf_cpu_s']} s, "
        f"other cpu {r['other_cpu_s']} s, steal {r['steal_s']} s",
        flush=True,
    )


def memory_part(args: argparse.Namespace, procs: Processes, tmp: str, store_big: str,
                deadline: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, store, users in (
        ("empty", os.path.join(tmp, "empty.sqlite"), 0),
        ("full", store_big, args.mem_users),
    ):
        note(f"memory: starting our server with {users} users")
        proc, port, ready = start_ours(procs, tmp, f"mem-{label}", store, users, deadline)
        time.sleep(args.settle)  # let start-up garbage be collected / polling start
        if users:
            check_answers(port, users, 5, f"memory ({users} users)")
        status = proc_status(proc.pid)
        out[label] = {
            "users": users,
            "ready_s": round(ready, 3),
            "VmRSS": status["VmRSS"],
            "VmHWM": status["VmHWM"],
            "RssAnon": status.get("RssAnon"),
        }
        procs.stop(proc)
    empty, full = out["empty"], out["full"]
    out["bytes_per_user"] = (full["VmRSS"] - empty["VmRSS"]) / args.mem_users
    out["peak_bytes_per_user"] = (full["VmHWM"] - empty["VmHWM"]) / args.mem_users
    out["load_s"] = full["ready_s"] - empty["ready_s"]
    return out


def machine() -> dict[str, Any]:
    import twisted

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    version = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True)
    dnsperf_version = re.search(r"Version ([\d.]+)", version.stdout + version.stderr)
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "twisted": twisted.__version__,
        "dnsperf": dnsperf_version.group(1) if dnsperf_version else "?",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def summary(args: argparse.Namespace, info: dict[str, Any], stores: list[dict[str, Any]],
            qps: dict[str, Any] | None, mem: dict[str, Any] | None) -> None:
    print()
    print("=" * 72)
    print("dyndns_plugin DNS benchmark")
    print(f"  machine: {info['nproc']} cpus, {info['cpu']}; Python {info['python']}, "
          f"Twisted {info['twisted']}, dnsperf {info['dnsperf']}; {info['date']}; "
          f"loadavg at start {' '.join(info['loadavg_at_start'])}")
    for s in stores:
        print(f"  store {os.path.basename(s['path'])}: {s['users']} users, import_users "
              f"{s['import_s']:.2f} s (+{s['objects_s']:.2f} s building objects)")
    if qps is not None:
        print(f"  qps ({args.users} users, {args.query_lines} random queries, dnsperf UDP "
              f"-c {args.clients} -q {args.outstanding} -l {args.duration}"
              f"{' -Q %d' % args.max_qps if args.max_qps else ', unlimited rate'}):")
        for i, row in enumerate(qps["rounds"], 1):
            o, b = row["ours"], row["baseline"]
            print(f"    round {i}: ours {o['qps']:8.1f} qps ({o['latency_avg_ms']:.2f} ms, "
                  f"{o['completed_pct']:.2f}%, {o['cpu_us_per_query']} us cpu/q)   "
                  f"baseline {b['qps']:8.1f} qps ({b['latency_avg_ms']:.2f} ms, "
                  f"{b['completed_pct']:.2f}%, {b['cpu_us_per_query']} us cpu/q)   "
                  f"ratio {row['ratio']:.3f}")
        print(f"    mean: ours {qps['ours_qps_mean']:.1f} qps, baseline "
              f"{qps['baseline_qps_mean']:.1f} qps => ours/baseline "
              f"{qps['ratio_of_means']:.3f} (per-round ratios: median "
              f"{qps['ratio_median']:.3f}, {qps['ratio_min']:.3f}..{qps['ratio_max']:.3f})")
        print(f"    start-up to first answer: ours {qps['startup_s']['ours']} s, "
              f"baseline {qps['startup_s']['baseline']} s")
        print(f"    RSS after the run: ours {qps['rss']['ours'] / 2**20:.1f} MiB, "
              f"baseline {qps['rss']['baseline'] / 2**20:.1f} MiB")
        noisy = [r[k]["other_cpu_s"] for r in qps["rounds"] for k in ("ours", "baseline")]
        if max(noisy) > 0.05 * args.duration:
            print(f"    WARNING: other processes used up to {max(noisy):.1f} s of CPU during "
                  "a dnsperf run; the numbers are disturbed (2 cpus only)")
        for label, problems in qps["log_problems"].items():
            if problems:
                print(f"    WARNING: {label} log has {len(problems)} error lines, e.g. {problems[0]}")
    if mem is not None:
        e, f = mem["empty"], mem["full"]
        print(f"  memory (our server, VmRSS after load + {args.settle} s):")
        print(f"    0 users: {e['VmRSS'] / 2**20:.1f} MiB (peak {e['VmHWM'] / 2**20:.1f} MiB); "
              f"{f['users']} users: {f['VmRSS'] / 2**20:.1f} MiB "
              f"(peak {f['VmHWM'] / 2**20:.1f} MiB)")
        print(f"    => {mem['bytes_per_user']:.0f} bytes/user resident "
              f"({mem['peak_bytes_per_user']:.0f} bytes/user at peak)")
        print(f"    start-up to first answer: 0 users {e['ready_s']:.2f} s, {f['users']} users "
              f"{f['ready_s']:.2f} s => load of {f['users']} users ~{mem['load_s']:.2f} s")
    print("=" * 72)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_make-stores":
        make_stores_main(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000, help="users for the qps part")
    parser.add_argument("--duration", type=int, default=5, help="seconds per dnsperf run")
    parser.add_argument("--rounds", type=int, default=4,
                        help="dnsperf rounds per server (the order alternates)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up (0: none)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each dnsperf run wait up to this long for the "
                        "machine to be idle (for shared machines)")
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    parser.add_argument("--outstanding", type=int, default=100, help="dnsperf -q")
    parser.add_argument("--max-qps", type=int, default=0, help="dnsperf -Q (0: unlimited)")
    parser.add_argument("--query-lines", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mem-users", type=int, default=100_000,
                        help="users for the memory part (0: skip it)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds to wait after load before reading VmRSS")
    parser.add_argument("--no-qps", action="store_true", help="skip the qps part")
    parser.add_argument("--timeout", type=int, default=180, help="hard limit, seconds")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not 1 <= args.duration <= 120:
        parser.error("--duration must be 1..120")
    if args.users < 1 or args.mem_users < 0 or args.rounds < 1:
        parser.error("--users and --rounds must be >= 1, --mem-users >= 0")
    if shutil.which("dnsperf") is None:
        parser.error("dnsperf is not installed (Debian: apt-get install dnsperf)")

    deadline = time.monotonic() + args.timeout

    def alarm(_signum: int, _frame: object) -> None:
        raise Timeout(f"benchmark exceeded --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(args.timeout + 5)

    info = machine()
    tmp = tempfile.mkdtemp(prefix="dyndns-bench-")
    procs = Processes()
    qps = mem = None
    try:
        specs = []
        if not args.no_qps:
            specs.append(f"{os.path.join(tmp, 'qps.sqlite')}:{args.users}")
        if args.mem_users:
            specs.append(f"{os.path.join(tmp, 'mem.sqlite')}:{args.mem_users}")
        note(f"building stores in {tmp}: {', '.join(s.rpartition(':')[2] for s in specs)} users")
        run = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "_make-stores", *specs],
            capture_output=True, text=True, timeout=max(10, deadline - time.monotonic()),
        )
        if run.returncode != 0:
            raise BenchError(f"building the stores failed:\n{run.stdout}\n{run.stderr}")
        stores = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        if not args.no_qps:
            qps = qps_part(args, procs, tmp, os.path.join(tmp, "qps.sqlite"), deadline)
        if args.mem_users:
            mem = memory_part(args, procs, tmp, os.path.join(tmp, "mem.sqlite"), deadline)
        signal.alarm(0)
        summary(args, info, stores, qps, mem)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "machine": info, "stores": stores,
                           "qps": qps, "memory": mem}, f, indent=2)
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
