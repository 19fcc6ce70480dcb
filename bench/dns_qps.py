"""
DNS query throughput and memory per user (bench/dns_qps.py).

    python -m bench.dns_qps [--short]    # ~1 min (--short: 2 rounds of 3 s, 20,000 users for memory)

Ours, C{twistd -n dyndns} with N users (default 10,000) C{user1..userN} in a
SQLite store, each with an IPv4 address, against a reference: stock Twisted,
C{twistd -n dns --bindzone} serving the same N A records (C{DNSServerFactory}
+ C{BindAuthority}). Both must answer user1, userN and 20 random users right
and NXDOMAIN for user N+1 first. dnsperf (UDP, one random query file,
C{-c 4 -q 100}, no rate limit) runs against each in alternating rounds (ours
then the reference, then the reference then ours...) so that a slow phase of
a shared machine hits both; the ratio ours/reference is the number to read.
Per run: qps, latency, the server's CPU per query, and the CPU others used.
Memory: ours with 0 and with M users (default 100,000): (VmRSS(M) - VmRSS(0))
/ M bytes per user, and the load time.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from typing import Any

from bench.harness import record
from bench.harness.load import rounds
from bench.harness.meter import CPUMeter, rss
from bench.harness.procs import BenchError, Processes, free_ports, log_problems, note, wait_for
from bench.harness.server import Server, addresses_in, dns_ready, query, twistd
from bench.harness.tools import dnsperf, require, zone_file
from bench.harness.users import SUFFIX, build_store, initial_answer, users


def check_answers(port: int, count: int, label: str) -> None:
    """user1, userN and 20 random users answer their address, user N+1 NXDOMAIN."""
    rng = random.Random(7)
    for i in [1, count] + [rng.randint(1, count) for _ in range(20)]:
        name, address = initial_answer(i)
        response = query(port, name, timeout=2)
        if response.rcode() != 0 or addresses_in(response) != {address}:
            raise BenchError(f"{label}: user{i} answered {response.rcode()} {addresses_in(response)}")
    if query(port, f"user{count + 1}.{SUFFIX}", timeout=2).rcode() != 3:
        raise BenchError(f"{label}: user{count + 1} is not NXDOMAIN")


def qps_part(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    store, built = build_store(tmp, users(args.users), "qps")
    zone = zone_file(os.path.join(tmp, "reference.zone"), args.users)
    queries = os.path.join(tmp, "queries.txt")
    rng = random.Random(args.seed)
    with open(queries, "w") as f:
        f.writelines(f"user{rng.randint(1, args.users)}.{SUFFIX} A\n" for _ in range(10_000))
    note("starting the reference (twistd dns --bindzone) and ours (twistd dyndns)")
    ours = Server(procs, tmp, store, "ours")
    ours.start(deadline, *initial_answer(args.users))
    (ref_port,) = free_ports(1)
    ref_log = os.path.join(tmp, "reference.log")
    argv = [f"--logfile={ref_log}", "dns", "--bindzone", zone, "--port", str(ref_port), "--interface", "127.0.0.1"]
    ref = procs.start(twistd() + argv, ref_log + ".out")
    wait_for(lambda: dns_ready(ref_port, *initial_answer(args.users)), deadline, "the reference", ref, ref_log)
    check_answers(ref_port, args.users, "reference")
    check_answers(ours.dns_port, args.users, "ours")
    servers = {"ours": (ours.pid, ours.dns_port), "reference": (ref.pid, ref_port)}
    for _pid, port in servers.values():
        dnsperf(port, queries, args.warmup)
    rows: dict[int, dict[str, Any]] = {}
    for r, label in rounds(args, ["ours", "reference"], deadline, args.duration + 20):
        pid, port = servers[label]
        meter = CPUMeter({"server": pid})
        result = dnsperf(port, queries, args.duration, args.clients, args.outstanding)
        cpu = meter.read()
        result.update(cpu=cpu, cpu_us_per_query=round(1e6 * cpu["server"]["cpu_s"] / max(result["completed"], 1), 1))
        rows.setdefault(r, {})[label] = result
        note(f"round {r} {label}: {result['qps']:.0f} qps, {result['cpu_us_per_query']} us CPU/query")
    out = {
        "rounds": [{**row, "ratio": row["ours"]["qps"] / row["reference"]["qps"]} for row in rows.values()],
        "store": built,
        "rss": {label: rss(pid)["VmRSS"] for label, (pid, _p) in servers.items()},
        "log_problems": log_problems(ours.log) + log_problems(ref_log),
    }
    ours.stop()
    procs.stop(ref)
    return out


def memory_part(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, count in (("empty", 0), ("full", args.mem_users)):
        store, _built = build_store(tmp, users(count), f"mem-{label}")
        server = Server(procs, tmp, store, f"mem-{label}")
        ready = server.start(deadline, *initial_answer(count)) if count else server.start(deadline)
        time.sleep(args.settle)
        out[label] = {"users": count, "ready_s": round(ready, 3), **rss(server.pid)}
        server.stop()
    empty, full = out["empty"], out["full"]
    out["bytes_per_user"] = (full["VmRSS"] - empty["VmRSS"]) / args.mem_users
    out["peak_bytes_per_user"] = (full["VmHWM"] - empty["VmHWM"]) / args.mem_users
    out["load_s"] = full["ready_s"] - empty["ready_s"]
    return out


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    qps = qps_part(args, procs, tmp, deadline)
    mem = memory_part(args, procs, tmp, deadline) if args.mem_users else None
    rows, labels = qps["rounds"], ("ours", "reference")
    means = {k: sum(r[k]["qps"] for r in rows) / len(rows) for k in labels}
    ratios = sorted(r["ratio"] for r in rows)
    figures = {
        **{f"{k}_qps": round(means[k]) for k in labels},
        **{f"{k}_cpu_us_per_query": round(sum(r[k]["cpu_us_per_query"] for r in rows) / len(rows), 1) for k in labels},
        "completed_pct_min": min(100 * r[k]["completed"] / max(r[k]["sent"], 1) for r in rows for k in labels),
        "disturbed_runs": sum(r[k]["cpu"]["disturbed"] for r in rows for k in labels),
    }
    if mem:
        figures["bytes_per_user"] = round(mem["bytes_per_user"])
        figures["load_s_per_100k_users"] = round(mem["load_s"] * 100_000 / args.mem_users, 2)
    return {
        "figures": figures,
        "ratios": {
            "ours/reference qps (mean)": round(means["ours"] / means["reference"], 3),
            "ours/reference qps (per-round median)": round(ratios[len(ratios) // 2], 3),
        },
        "problems": qps["log_problems"],
        "qps": qps,
        "memory": mem,
        "plot": {
            "title": "DNS queries per second (dnsperf, UDP)",
            "ylabel": "queries/s",
            "groups": [f"round {i}" for i in range(1, len(rows) + 1)],
            "series": {k: [r[k]["qps"] for r in rows] for k in labels},
        },
    }


OPTIONS: record.Options = {
    "--users": (10_000, "users for the qps part"),
    "--duration": (5, "seconds per dnsperf run"),
    "--rounds": (4, "dnsperf rounds per server"),
    "--warmup": (1, "seconds of dnsperf before the rounds"),
    "--clients": (4, "dnsperf -c"),
    "--outstanding": (100, "dnsperf -q"),
    "--seed": (1, "of the query file"),
    "--mem-users": (100_000, "memory part (0: skip it)"),
    "--settle": (1.0, "seconds before reading VmRSS"),
    "--wait-quiet": (0.0, "before each dnsperf run wait up to S seconds for an idle machine", "S"),
}

if __name__ == "__main__":
    short = {"rounds": 2, "duration": 3, "mem_users": 20_000}
    raise SystemExit(record.main("dns_qps", __doc__, OPTIONS, run, short, 300, require("dnsperf")))
