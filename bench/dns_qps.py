"""
DNS query throughput, memory per user and start-up time, against three references (bench/dns_qps.py).

    python -m bench.dns_qps [--short] [--sizes 10000]    # ~8 min (--short: 2 rounds of 3 s, ~5 min; 10k: ~1 min)

For N users C{user1..userN} (C{--sizes}: 10,000 and 1,000,000) with an IPv4 address each: ours, C{twistd -n
dyndns} on a SQLite store, and the same A records (one zone file) served by B{bare}, a Twisted
C{DatagramProtocol} answering from a dict of ready bytes with no checks, through C{transport.write},
B{stock}, C{twistd -n dns --bindzone}, and B{nsd}, NSD with C{server-count: 1} and its own files
(bench/responders.py; apt-get installs NSD if missing, never starting its daemon). Each must answer user1, userN
and 20 random users right and NXDOMAIN for user N+1 first. dnsperf (UDP, 10,000 random queries, C{-c 4 -q 100})
runs against each in alternating rounds (ours, bare, stock, nsd, then the reverse...): read the ratios
ours/reference of the same run. Per run: qps, latency, CPU per query (all of NSD's processes). Ours: start-up
(to answering userN) and resident bytes per user, (VmRSS(N) - VmRSS(0)) / N after C{--settle} s, before queries.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from functools import partial
from typing import Any

from bench.harness import record
from bench.harness.load import rounds
from bench.harness.meter import CPUMeter, rss
from bench.harness.procs import BenchError, Processes, free_ports, log_problems, note, wait_for
from bench.harness.server import Server, addresses_in, dns_ready, query, twistd
from bench.harness.tools import dnsperf, require, zone_file
from bench.harness.users import REPO, SUFFIX, build_store, initial_answer, users
from bench.responders import argvs, family, install_nsd

SERVERS = ["ours", "bare", "stock", "nsd"]


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


def references(procs: Processes, tmp: str, zone: str, count: int, deadline: float) -> dict[str, Any]:
    """Start bare, stock and nsd one after the other: label -> (process, port, seconds to answer userN)."""
    ports, out, folder = dict(zip(SERVERS[1:], free_ports(3))), {}, os.path.join(tmp, f"references-{count}")
    for label, argv in argvs(folder, zone, ports, twistd(), SUFFIX).items():
        log, port = f"{folder}/{label}.out", ports[label]
        proc = procs.start(argv, log, cwd=REPO)
        ready = wait_for(partial(dns_ready, port, *initial_answer(count)), deadline, label, proc, log)
        out[label] = (proc, port, ready)
    return out


def size_part(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float, count: int) -> dict[str, Any]:
    store, built = build_store(tmp, users(count), f"qps-{count}")
    zone = zone_file(os.path.join(tmp, f"reference-{count}.zone"), count)
    queries = os.path.join(tmp, f"queries-{count}.txt")
    with open(queries, "w") as f:
        f.writelines(f"user{i}.{SUFFIX} A\n" for i in random.Random(args.seed).choices(range(1, count + 1), k=10_000))
    note(f"{count:,} users: starting ours, then bare, stock and nsd")
    ours = Server(procs, tmp, store, f"ours-{count}")
    ready = ours.start(deadline, *initial_answer(count))
    time.sleep(args.settle)
    memory = rss(ours.pid)
    started = {"ours": (ours.proc, ours.dns_port, ready), **references(procs, tmp, zone, count, deadline)}
    servers = {label: (family(proc.pid), port) for label, (proc, port, _took) in started.items()}
    for label, (_pids, port) in servers.items():
        check_answers(port, count, label)
        dnsperf(port, queries, args.warmup)
    rows: dict[int, dict[str, Any]] = {}
    for r, label in rounds(args, SERVERS, deadline, args.duration + 20):
        pids, port = servers[label]
        meter = CPUMeter({str(pid): pid for pid in pids})
        result = dnsperf(port, queries, args.duration, args.clients, args.outstanding)
        cpu = meter.read()
        cpu_us = 1e6 * sum(cpu[str(pid)]["cpu_s"] for pid in pids) / max(result["completed"], 1)
        result.update(cpu=cpu, cpu_us_per_query=round(cpu_us, 1))
        rows.setdefault(r, {})[label] = result
        note(f"{count:,} users, round {r} {label}: {result['qps']:.0f} qps, {result['cpu_us_per_query']} us CPU/query")
    out = {
        "users": count,
        "store": built,
        "ready_s": {label: round(took, 3) for label, (_p, _port, took) in started.items()},
        "ours_rss": memory,
        "rounds": [{**r, **{f"ours/{k}": r["ours"]["qps"] / r[k]["qps"] for k in SERVERS[1:]}} for r in rows.values()],
        "log_problems": log_problems(ours.log) + log_problems(f"{tmp}/references-{count}/stock.log"),
    }
    ours.stop()
    procs.stop_all()  # the references
    return out


def figures_of(part: dict[str, Any], empty: dict[str, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A size's figures (means over the rounds, ours' memory and start-up) and ratios (mean, per-round median)."""
    rows, count = part["rounds"], part["users"]
    means = {k: sum(r[k]["qps"] for r in rows) / len(rows) for k in SERVERS}
    figures = {
        **{f"{k}_qps": round(means[k]) for k in SERVERS},
        **{f"{k}_cpu_us_per_query": round(sum(r[k]["cpu_us_per_query"] for r in rows) / len(rows), 1) for k in SERVERS},
        "completed_pct_min": min(100 * r[k]["completed"] / max(r[k]["sent"], 1) for r in rows for k in SERVERS),
        "disturbed_runs": sum(r[k]["cpu"]["disturbed"] for r in rows for k in SERVERS),
        "ours_start_s": part["ready_s"]["ours"],
        "ours_resident_bytes_per_user": round((part["ours_rss"]["VmRSS"] - empty["VmRSS"]) / count),
    }
    median = {k: sorted(r[f"ours/{k}"] for r in rows)[len(rows) // 2] for k in SERVERS[1:]}
    ratios = {f"ours/{k} qps": {"mean": means["ours"] / means[k], "per-round median": median[k]} for k in SERVERS[1:]}
    return figures, {k: {how: round(v, 3) for how, v in r.items()} for k, r in ratios.items()}


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    empty_server = Server(procs, tmp, build_store(tmp, [], "empty")[0], "empty")
    empty_server.start(deadline)
    time.sleep(args.settle)
    empty = rss(empty_server.pid)
    empty_server.stop()
    parts = [size_part(args, procs, tmp, deadline, int(n)) for n in args.sizes.split(",")]
    figures, ratios = ({f"{p['users']:,} users": figures_of(p, empty)[i] for p in parts} for i in (0, 1))
    if len(parts) > 1:
        first, last = (f"{p['users']:,} users" for p in (parts[0], parts[-1]))
        ratios[f"ours qps at {last} / at {first}"] = round(figures[last]["ours_qps"] / figures[first]["ours_qps"], 3)
    return {
        "figures": figures,
        "ratios": ratios,
        "problems": [p for part in parts for p in part.pop("log_problems")],
        "sizes": parts,
        "empty_rss": empty,
        "plot": {
            **{"title": "DNS queries per second (dnsperf, UDP)", "ylabel": "queries/s"},
            "groups": [f"{p['users']:,} users, round {i}" for p in parts for i in range(1, len(p["rounds"]) + 1)],
            "series": {k: [r[k]["qps"] for p in parts for r in p["rounds"]] for k in SERVERS},
        },
    }


OPTIONS: record.Options = {
    "--sizes": ("10000,1000000", "user counts, comma-separated"),
    "--duration": (5, "seconds per dnsperf run"),
    "--rounds": (4, "dnsperf rounds per server"),
    "--warmup": (1, "seconds of dnsperf before the rounds"),
    "--clients": (4, "dnsperf -c"),
    "--outstanding": (100, "dnsperf -q"),
    "--seed": (1, "of the query file"),
    "--settle": (1.0, "seconds before reading VmRSS"),
    "--wait-quiet": (0.0, "before each dnsperf run wait up to S seconds for an idle machine", "S"),
}

if __name__ == "__main__":
    short = {"rounds": 2, "duration": 3}
    tools = {**require("dnsperf"), "nsd": install_nsd()}
    raise SystemExit(record.main("dns_qps", __doc__, OPTIONS, run, short, 900, tools))
