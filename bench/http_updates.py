"""
HTTP updates: durable updates/s through /nic/update, and myip (bench/http_updates.py).

    python -m bench.http_updates [--short] [--py-spy FILE]   # ~45 s (--short: 5 s per wrk run)

Ours, C{twistd -n dyndns} with HTTP on 127.0.0.1 and N users (default 64)
with scrypt password hashes at the real cost. wrk (C{-t 2 -c 32}) first GETs
C{<base>myip} (every body must be 127.0.0.1), then sends C{/nic/update} with
Basic auth through bench/http_updates.lua: each user's requests alternate
between two addresses, so every C{good} answer is one SQLite write made
durable (WAL, C{synchronous=FULL}) before the answer. Right before, every
user updates once, which puts its password in the server's cache of verified
passwords, as for a router that updates often: the cached path is measured,
not scrypt. Afterwards the server gets SIGKILL and the SQLite file is
checked: every user at one of its two addresses, and at exactly its last
acknowledged one when none of its requests overlapped. Reported: updates/s,
latency, SQLite commits (acknowledged updates per commit: group commit), CPU
per request (main thread and the others).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import time
from typing import Any

from bench.harness import record
from bench.harness.meter import CPUMeter, wait_quiet
from bench.harness.procs import BenchError, Processes, log_problems, note
from bench.harness.server import BASE_PATH, Server, http_get
from bench.harness.tools import profile_summary, py_spy, require, wrk
from bench.harness.users import SUFFIX, addresses_of, basic_auth, build_store, check_final, read_generation, users

LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "http_updates.lua")


def parse_lua_result(path: str) -> dict[str, Any]:
    """The file bench/http_updates.lua writes in done(); per user, the address the store must hold (None: either)."""
    out: dict[str, Any] = {k: {} for k in ("status", "users", "count", "summary", "errors", "latency_us")}
    out["samples"] = []
    with open(path) as f:
        for line in f:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "sample":
                out["samples"].append(rest)
            elif kind == "user":
                user_id, sent, acked, last, overlapped = rest.split()
                out["users"][user_id] = last if int(acked) and sent == acked and overlapped == "0" else None
            elif kind in out:
                key, value = rest.split()
                out[kind][key] = out[kind].get(key, 0) + float(value)
    return out


def warm_up(port: int, count: int) -> float:
    """One update per user to its third address (one scrypt each: the cache fills)."""
    started = time.monotonic()

    def one(i: int) -> None:
        address = addresses_of(i)[2]
        path = f"/nic/update?hostname=user{i}.{SUFFIX}&myip={address}"
        status, body = http_get(port, path, {"Authorization": basic_auth(f"user{i}")}, 10)
        if status != 200 or body.strip() != f"good {address}":
            raise BenchError(f"warm-up of user{i}: {status} {body.strip()!r}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(1, count + 1)))
    return time.monotonic() - started


def wrk_run(
    args: argparse.Namespace, tmp: str, server: Server, label: str, path: str, lua_args: list[str], procs: Processes
) -> dict[str, Any]:
    result_file = os.path.join(tmp, f"{label}.txt")
    spy = (procs, args.py_spy) if args.py_spy and label == "update" else None
    meter = CPUMeter({"server": server.pid})
    lua_args = [label, *lua_args, result_file] + ([str(args.threads)] if label == "update" else [])
    with py_spy(spy, server.pid, args.duration):
        url = f"http://127.0.0.1:{server.http_port}{path}"
        run = wrk(url, LUA, lua_args, args.threads, args.connections, args.duration)
        cpu = meter.read()
    result = {**run, **parse_lua_result(result_file), "cpu": cpu}
    requests = max(result["summary"]["requests"], 1)
    seconds = result["summary"]["duration_us"] / 1e6
    result.update(
        good_per_s=result["count"].get("good", 0) / seconds,
        server_cpu_us_per_request=round(1e6 * cpu["server"]["cpu_s"] / requests, 1),
        main_thread_cpu_us_per_request=round(1e6 * cpu["server"]["main_thread_s"] / requests, 1),
    )
    note(f"{label}: {result['good_per_s']:.0f} good/s, {result['requests_per_s']} requests/s")
    return result


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    store, built = build_store(tmp, users(args.users, password=True, initial=False), "store", args.hash_cost)
    users_file = os.path.join(tmp, "users.tsv")
    with open(users_file, "w") as f:
        for i in range(1, args.users + 1):
            auth = basic_auth(f"user{i}").split()[1]
            f.write(f"user{i}\tuser{i}.{SUFFIX}\t{auth}\t{addresses_of(i)[0]}\t{addresses_of(i)[1]}\n")
    server = Server(procs, tmp, store, http=True)
    server.start(deadline)
    out: dict[str, Any] = {"store": built}
    wait_quiet(args.wait_quiet)
    out["myip"] = wrk_run(args, tmp, server, "myip", BASE_PATH + "myip", ["127.0.0.1"], procs)
    wait_quiet(args.wait_quiet)
    out["warmup_s"] = warm_up(server.http_port, args.users)
    before = read_generation(store)
    u = out["update"] = wrk_run(args, tmp, server, "update", "/nic/update", [users_file], procs)
    time.sleep(0.5)  # requests wrk gave up on at the end may still commit
    server.kill()
    expected = {f"user{i}": (set(addresses_of(i)[:2]), u["users"].get(f"user{i}")) for i in range(1, args.users + 1)}
    check = out["check"] = check_final(store, expected, "dyndns2")
    commits = check["generation"] - before
    good = u["count"].get("good", 0)
    problems = check["problems"] + log_problems(server.log)
    for label in ("myip", "update"):
        r = out[label]
        if r["count"].get("other") or r["count"].get("nochg") or any(r["errors"].values()):
            problems.append(f"{label}: {r['count']} errors {r['errors']} e.g. {r['samples'][:2]}")
        r.pop("users", None)
    if args.py_spy:
        out["profile"] = profile_summary(args.py_spy)
    return {
        "figures": {
            "durable_updates_per_s": round(u["good_per_s"]),
            "update_latency_ms": {k: round(u["latency_us"][k] / 1000, 2) for k in ("p50", "p90", "p99", "max")},
            "myip_requests_per_s": round(out["myip"]["requests_per_s"] or 0),
            "updates_per_commit": round(good / max(commits, 1), 2),
            "server_cpu_us_per_update": u["server_cpu_us_per_request"],
            "main_thread_cpu_us_per_update": u["main_thread_cpu_us_per_request"],
            "users_exact_after_sigkill": check["exact"],
            "disturbed": u["cpu"]["disturbed"],
        },
        "ratios": {"updates/s vs the 2,000/s target": round(u["good_per_s"] / 2000, 3)},
        "problems": problems,
        **out,
        "plot": {
            "title": "HTTP requests per second (wrk)",
            "ylabel": "per second",
            "groups": ["myip (GET)", "/nic/update (durable)"],
            "series": {"ours": [out["myip"]["requests_per_s"] or 0, u["good_per_s"]]},
        },
    }


OPTIONS: record.Options = {
    "--users": (64, "users (at least --connections)"),
    "-t --threads": (2, "wrk -t"),
    "-c --connections": (32, "wrk -c"),
    "-d --duration": (10, "seconds per wrk run"),
    "--hash-cost": (15, "scrypt cost", "LOG2_N"),
    "--wait-quiet": (0.0, "before each wrk run wait up to S seconds for an idle machine", "S"),
    "--py-spy": (None, "profile the update run into FILE", "FILE"),
}

if __name__ == "__main__":
    raise SystemExit(record.main("http_updates", __doc__, OPTIONS, run, {"duration": 5}, 200, require("wrk")))
