"""
Several nodes on PostgreSQL: durable HTTP updates/s (1 node on SQLite, 1 and 2 on PostgreSQL) and cross-node visibility (bench/cluster_updates.py).

    python -m bench.cluster_updates [--short]   # ~1.5 min (--short: 5 s per setup, 200 timed updates each way: ~1 min)

Three setups, one after the other in the same run, with the same N users
(default 64, scrypt hashes at the real cost, built once as a SQLite store),
the same wrk settings in total (C{-t 2 -c 32}, bench/http_updates.lua: each
user's requests alternate between two addresses, so every C{good} is a
write) and the same duration: B{(a)} one C{twistd -n dyndns} on the SQLite
store (WAL, C{synchronous=FULL}); B{(b)} one node on PostgreSQL; B{(c)} two
nodes on one PostgreSQL database, each with its own wrk (C{-t 1 -c 16}) and a
disjoint half of the users, so no user is updated at both. PostgreSQL 15 is
our own server (initdb into the run's temporary folder, 127.0.0.1 only) with
its defaults for durability: C{fsync}, C{synchronous_commit} and
C{full_page_writes} on (the run stops if not), so a C{good} is a commit
flushed to the disk; each PostgreSQL setup gets a database of its own,
filled from the SQLite store by C{dyndns migrate-store}. Before each wrk run
every user updates once at the node that will serve it (one scrypt each: the
node's cache of verified passwords fills, the cached path is measured). After
each run the nodes get SIGKILL, PostgreSQL an immediate shutdown (SIGQUIT, as
in a crash) and a restart (WAL recovery), and the store is checked: every
user at one of its two addresses, and at exactly its last acknowledged one
when none of its requests overlapped; an answer other than C{good}, a socket
error or a lost acknowledged update stops the run. Reported per setup:
updates/s (per node in (c), summed), latency p50/p99 per wrk, commits
(acknowledged updates per commit: group commit), CPU per update of each node
process (all threads; and its main thread) and of all the PostgreSQL
server's processes (postmaster and children, from /proc), and from
pg_stat_activity sampled every 20 ms how often a write transaction was open,
waited for a lock, and waited for its node's next statement. B{Visibility}:
two fresh nodes A and B on the two-node database; C{--updates} updates, one
at a time over one keep-alive HTTP connection to A, round robin over
C{--hosts} users, each to the other of the user's two addresses; after each
C{good}, B's DNS is asked over UDP (one query at a time, C{--poll} s apart,
C{--limit} s at most, else the run stops) until it answers the new address:
the time from the acknowledgement to that answer. Then the same from B to A
with other users; the stored IXFR journal's size before and after each.
Each user's first update at a node is not timed (it pays scrypt). All
processes (nodes, PostgreSQL, wrk, this script) share the machine's CPUs,
which the record gives.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import os
import socket
import time
from typing import Any

import dns.message

from bench.harness import record
from bench.harness.meter import DISTURBED, CPUMeter, percentiles
from bench.harness.postgres import Activity, PostgreSQL, ServerCPU, require_postgresql
from bench.harness.procs import HOST, BenchError, Processes, log_problems, note
from bench.harness.server import Server, addresses_in
from bench.harness.tools import require, wrk
from bench.harness.users import SUFFIX, addresses_of, basic_auth, build_store, check_final, read_generation, users
from bench.http_updates import LUA, parse_lua_result

#: The setups' labels in the record, and their databases (None: the SQLite store).
SETUPS = {"1 node, SQLite": None, "1 node, PostgreSQL": "one_node", "2 nodes, PostgreSQL": "two_nodes"}


class Updater:
    """Updates through one node's C{/nic/update}, one at a time on one keep-alive connection."""

    def __init__(self, node: Server) -> None:
        self.node, self.connections = node, 0
        self.conn = http.client.HTTPConnection(HOST, node.http_port, timeout=10)

    def update(self, i: int, address: str) -> float:
        """User C{i} to C{address}: the C{perf_counter} at its C{good} (anything else: L{BenchError})."""
        self.connections += self.conn.sock is None
        path = f"/nic/update?hostname=user{i}.{SUFFIX}&myip={address}"
        try:
            self.conn.request("GET", path, headers={"Authorization": basic_auth(f"user{i}")})
            response = self.conn.getresponse()
            body = response.read().decode("utf-8", "replace").strip()
        except (OSError, http.client.HTTPException) as e:
            raise BenchError(f"{self.node.name}: update of user{i} to {address}: {e!r}") from None
        acked = time.perf_counter()
        if response.status != 200 or body != f"good {address}":
            raise BenchError(f"{self.node.name}: update of user{i} to {address}: {response.status} {body!r}")
        return acked


class Watcher:
    """Asks one node's DNS over UDP, one query in flight, until it answers an address."""

    def __init__(self, node: Server, pause: float) -> None:
        self.node, self.pause = node, pause
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((HOST, node.dns_port))
        self.sock.settimeout(0.05)

    def wait(self, i: int, address: str, until: float) -> tuple[float | None, int, set[str]]:
        """(the C{perf_counter} of the first answer with only C{address}, or None at C{until}; polls; last answer)."""
        wire, polls, answer = dns.message.make_query(f"user{i}.{SUFFIX}", "A").to_wire(), 0, set()
        while True:
            polls += 1
            self.sock.send(wire)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:  # lost: ask again
                data = b""
            now = time.perf_counter()
            if data:
                answer = addresses_in(dns.message.from_wire(data))
                if answer == {address}:
                    return now, polls, answer
            if now > until:
                return None, polls, answer
            time.sleep(self.pause)


def warm_up(node: Server, ids: list[int]) -> float:
    """One update per user to its third address, 4 at a time: one scrypt each, the node's cache fills."""
    started = time.monotonic()

    def one(chunk: list[int]) -> None:
        updater = Updater(node)
        for i in chunk:
            updater.update(i, addresses_of(i)[2])

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(one, [ids[k::4] for k in range(4)]))
    return round(time.monotonic() - started, 2)


def users_file(tmp: str, name: str, ids: list[int]) -> str:
    """bench/http_updates.lua's users file: id, name, Basic credentials, the two addresses."""
    path = os.path.join(tmp, f"{name}.users.tsv")
    with open(path, "w") as f:
        for i in ids:
            auth = basic_auth(f"user{i}").split()[1]
            f.write(f"user{i}\tuser{i}.{SUFFIX}\t{auth}\t{addresses_of(i)[0]}\t{addresses_of(i)[1]}\n")
    return path


def node_tables(dsn: str | None) -> dict[str, dict[str, Any]] | None:
    return None if dsn is None else {"store": {"backend": "postgresql", "dsn": dsn}}


def start_nodes(
    procs: Processes, tmp: str, store: str, names: list[str], dsn: str | None, deadline: float
) -> list[Server]:
    nodes = [Server(procs, tmp, store, name, http=True, tables=node_tables(dsn)) for name in names]
    for node in nodes:
        taken = node.start(deadline)
        note(f"{node.name} ready in {taken:.1f} s (pid {node.pid}, HTTP {node.http_port}, DNS {node.dns_port})")
    return nodes


class Meter:
    """The nodes' CPU (L{CPUMeter}) and PostgreSQL's, which is then not counted as other programs'."""

    def __init__(self, nodes: list[Server], pg: PostgreSQL | None) -> None:
        self.nodes = CPUMeter({node.name: node.pid for node in nodes})
        self.server = ServerCPU(pg) if pg else None

    def read(self, leave_out: tuple[int, ...] = ()) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Our CPU meter's reading, and PostgreSQL's but its backends C{leave_out} (our own)."""
        cpu, pg_cpu = self.nodes.read(), self.server.read(leave_out) if self.server else None
        if pg_cpu:
            cpu["others_s"] = round(max(0.0, cpu["others_s"] - pg_cpu["cpu_s"]), 2)
            cpu["disturbed"] = cpu["others_s"] + cpu["steal_s"] > DISTURBED * cpu["seconds"]
        return cpu, pg_cpu


def throughput(
    args: argparse.Namespace,
    tmp: str,
    nodes: list[Server],
    store: str,
    pg: PostgreSQL | None,
    database: str | None,
) -> dict[str, Any]:
    """One setup: each node its own wrk with its share of the connections and of the users; then the check."""
    n = len(nodes)
    shares = [list(range(1 + k * args.users // n, 1 + (k + 1) * args.users // n)) for k in range(n)]
    warm = [warm_up(node, ids) for node, ids in zip(nodes, shares)]
    files = [users_file(tmp, node.name, ids) for node, ids in zip(nodes, shares)]
    threads, connections = args.threads // n, args.connections // n
    before = pg.generation(database) if pg and database else read_generation(store)

    def one(k: int) -> dict[str, Any]:
        result = os.path.join(tmp, f"{nodes[k].name}.wrk.txt")
        url = f"http://{HOST}:{nodes[k].http_port}/nic/update"
        run = wrk(url, LUA, ["update", files[k], result, str(threads)], threads, connections, args.duration)
        return {**run, **parse_lua_result(result)}

    meter = Meter(nodes, pg)
    activity = Activity(pg, database) if pg and database else None
    if activity:
        activity.start()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        runs = list(pool.map(one, range(n)))
    cpu, pg_cpu = meter.read((activity.backend_pid,) if activity else ())
    transactions = activity.stop() if activity else None
    time.sleep(0.5)  # requests wrk gave up on at the end may still commit
    for node in nodes:
        node.kill()
    restart_s = None
    checked = store
    if pg and database:
        restart_s = pg.crash_and_restart()
        checked = pg.states_as_sqlite(database, os.path.join(tmp, f"{database}.check.sqlite"))
    journal = zone_journal(pg, database) if pg and database else None
    expected = {
        f"user{i}": (set(addresses_of(i)[:2]), run["users"].get(f"user{i}"))
        for ids, run in zip(shares, runs)
        for i in ids
    }
    check = check_final(checked, expected, "dyndns2")
    wrong = [
        f"{node.name}: {run['count']}, socket errors {run['errors']}, e.g. {run['samples'][:3]}"
        for node, run in zip(nodes, runs)
        if run["count"].get("other") or run["count"].get("nochg") or any(run["errors"].values())
    ]
    if wrong or check["problems"]:
        raise BenchError("; ".join(wrong + check["problems"][:10]))
    per_node: dict[str, Any] = {}
    good_total = 0.0
    for node, run in zip(nodes, runs):
        good = run["count"].get("good", 0)
        good_total += good
        node_cpu = cpu[node.name]
        per_node[node.name] = {
            "updates_per_s": round(good / (run["summary"]["duration_us"] / 1e6)),
            "latency_ms": {p: round(run["latency_us"][p] / 1000, 2) for p in ("p50", "p90", "p99", "max")},
            "cpu_us_per_update": round(1e6 * node_cpu["cpu_s"] / max(good, 1), 1),
            "main_thread_cpu_us_per_update": round(1e6 * node_cpu["main_thread_s"] / max(good, 1), 1),
        }
        run.pop("users")
    commits = check["generation"] - before
    out: dict[str, Any] = {
        "updates_per_s": sum(p["updates_per_s"] for p in per_node.values()),
        "nodes": per_node,
        "postgresql_cpu_us_per_update": round(1e6 * pg_cpu["cpu_s"] / max(good_total, 1), 1) if pg_cpu else None,
        "updates_per_commit": round(good_total / max(commits, 1), 2),
        "write_transactions": transactions,
        "users_exact_after_sigkill": check["exact"],
        "disturbed": cpu["disturbed"],
    }
    out.update(updates=int(good_total), commits=commits, warm_up_s=warm, restart_s=restart_s, zone_journal=journal)
    out.update(cpu=cpu, postgresql_cpu=pg_cpu, check=check, wrk=runs, node_log=node_log_errors(nodes))
    note(f"{out['updates_per_s']} updates/s, per node {per_node}")
    return out


def zone_journal(pg: PostgreSQL, database: str) -> dict[str, int]:
    """The stored IXFR journal that a following node reads whole on each serial the publisher stores."""
    steps, size = pg.execute(
        "SELECT count(*), coalesce(sum(length(deleted) + length(added)), 0) FROM zone_journal", database
    )[0]
    return {"steps": int(steps), "bytes": int(size)}


def node_log_errors(nodes: list[Server]) -> list[str]:
    """The nodes' log lines at level warn and above (the record keeps them; tracebacks are problems)."""
    found = []
    for node in nodes:
        with open(node.log, errors="replace") as f:
            found += [f"{node.name}: {line.rstrip()}" for line in f if any(f"#{w}]" in line for w in LEVELS)]
    return found


#: Twisted's log levels a node's log line is kept for (L{node_log_errors}).
LEVELS = ("warn", "error", "critical")


def visibility(
    args: argparse.Namespace, writer: Server, reader: Server, ids: list[int], pg: PostgreSQL
) -> dict[str, Any]:
    """Updates at C{writer}, one at a time; after each C{good}, C{reader}'s DNS until it answers the new address."""
    updater, watcher = Updater(writer), Watcher(reader, args.poll)

    def one(i: int, address: str) -> tuple[float, float, int]:
        sent = time.perf_counter()
        acked = updater.update(i, address)
        seen, polls, answer = watcher.wait(i, address, acked + args.limit)
        if seen is None:
            raise BenchError(
                f"user{i} -> {address}, acknowledged by {writer.name}, not served by {reader.name} "
                f"within {args.limit} s ({polls} queries; it answers {sorted(answer)})"
            )
        return acked - sent, seen - acked, polls

    for i in ids:  # the first update at this node pays scrypt: not timed
        one(i, addresses_of(i)[2])
    meter = Meter([writer, reader], pg)
    rows = []
    for k in range(args.updates):
        i = ids[k % len(ids)]
        rows.append(one(i, addresses_of(i)[k // len(ids) % 2]))  # each user: its first, second, first... address
    cpu, pg_cpu = meter.read()
    visible = [row[1] for row in rows]
    out = {
        "updates": len(rows),
        "visible_ms": percentiles(visible),
        "ack_ms": percentiles([row[0] for row in rows]),
        "visible_at_first_query": sum(row[2] == 1 for row in rows),
        "visible_under_100ms": sum(v < 0.1 for v in visible),
        "queries": sum(row[2] for row in rows),
        "http_connections": updater.connections,
        "cpu_s": {
            writer.name: cpu[writer.name]["cpu_s"],
            reader.name: cpu[reader.name]["cpu_s"],
            "postgresql": (pg_cpu or {}).get("cpu_s"),
        },
        "disturbed": cpu["disturbed"],
        "cpu": cpu,
        "visible_ms_series": [round(1000 * v, 2) for v in visible],
        "ack_ms_series": [round(1000 * row[0], 2) for row in rows],
    }
    note(f"{writer.name} -> {reader.name}: visible {out['visible_ms']}, ack {out['ack_ms']}")
    return out


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    if args.threads % 2 or args.connections % 2 or args.users < args.connections or args.users < 2 * args.hosts:
        raise BenchError("--threads and --connections must be even, --users >= --connections and >= 2 * --hosts")
    store, built = build_store(tmp, users(args.users, password=True, initial=False), "store", args.hash_cost)
    pg = PostgreSQL(procs, tmp, deadline)
    settings = pg.settings()
    if settings["fsync"] != "on" or settings["synchronous_commit"] != "on":
        raise BenchError(f"PostgreSQL is not durable: {settings}")
    note(f"PostgreSQL {settings['server_version']} on port {pg.port}: {settings}")
    dsns: dict[str, str | None] = {
        label: pg.installation(database, store) if database else None for label, database in SETUPS.items()
    }
    out: dict[str, Any] = {"store": built, "postgresql": settings}
    problems: list[str] = []
    try:
        setups: dict[str, Any] = {}
        for (label, database), names in zip(SETUPS.items(), (["sqlite"], ["pg"], ["pg1", "pg2"])):
            nodes = start_nodes(procs, tmp, store, names, dsns[label], deadline)
            note(f"{label}: wrk for {args.duration} s")
            setups[label] = throughput(args, tmp, nodes, store, pg if database else None, database)
            problems += [f"{node.name}: {line}" for node in nodes for line in log_problems(node.log)]
        a, b = start_nodes(procs, tmp, store, ["A", "B"], dsns["2 nodes, PostgreSQL"], deadline)
        hosts = list(range(1, 2 * args.hosts + 1))
        journal = {"start": zone_journal(pg, "two_nodes")}
        seen = {"A -> B": visibility(args, a, b, hosts[: args.hosts], pg)}
        journal["A -> B"] = zone_journal(pg, "two_nodes")
        seen["B -> A"] = visibility(args, b, a, hosts[args.hosts :], pg)
        journal["B -> A"] = zone_journal(pg, "two_nodes")
        out["zone_journal_during_visibility"] = journal
        for node in (a, b):
            node.stop()
            problems += [f"{node.name}: {line}" for line in log_problems(node.log)]
        with open(a.log) as log:
            out["visibility_publisher"] = "A" if "this node is now the zones' publisher" in log.read() else "B"
        out["visibility_node_log"] = node_log_errors([a, b])
    finally:
        pg.stop()
    out["postgresql_log"] = pg_log = pg.log_lines(("PANIC", "FATAL", "ERROR", "WARNING"))
    problems += [f"postgresql: {line}" for line in pg_log if "PANIC:" in line]
    one, two, lite = setups["1 node, PostgreSQL"], setups["2 nodes, PostgreSQL"], setups["1 node, SQLite"]
    figures: dict[str, Any] = {"cpus": os.cpu_count()}
    for label, s in setups.items():
        figures[label] = f = {"durable_updates_per_s": s["updates_per_s"]}
        for name, node in s["nodes"].items():
            into = f if len(s["nodes"]) == 1 else f.setdefault(name, {"updates_per_s": node["updates_per_s"]})
            into["latency_ms"] = {p: node["latency_ms"][p] for p in ("p50", "p99")}
            for key in ("cpu_us_per_update", "main_thread_cpu_us_per_update"):
                into[key] = node[key]
        if s["postgresql_cpu"]:
            f["postgresql_cpu_us_per_update"] = s["postgresql_cpu_us_per_update"]
        if s["write_transactions"]:
            f["write_transaction_share"] = {k: v for k, v in s["write_transactions"].items() if k != "samples"}
        f.update(updates_per_commit=s["updates_per_commit"], users_exact_after_sigkill=s["users_exact_after_sigkill"])
        f["disturbed"] = s["disturbed"]
    for direction, part in seen.items():
        figures[f"visible {direction} ms"] = part["visible_ms"]
        figures[f"visible {direction} under 100 ms"] = f"{part['visible_under_100ms']}/{part['updates']}"
        figures[f"visible {direction} disturbed"] = part["disturbed"]
    return {
        "figures": figures,
        "ratios": {
            "2 nodes / 1 node on PostgreSQL, updates/s (target >= 1.6)": round(
                two["updates_per_s"] / one["updates_per_s"], 3
            ),
            "1 node: PostgreSQL / SQLite, updates/s": round(one["updates_per_s"] / lite["updates_per_s"], 3),
        },
        "problems": problems,
        **out,
        "setups": setups,
        "visibility": seen,
        "plot": {
            "title": "Durable HTTP updates per second (wrk, same users and connections)",
            "ylabel": "updates/s",
            "groups": list(setups),
            "series": {"updates/s": [s["updates_per_s"] for s in setups.values()]},
        },
    }


OPTIONS: record.Options = {
    "--users": (64, "users (at least --connections), split in halves between the two nodes"),
    "-t --threads": (2, "wrk -t in total (even: each of two nodes gets half)"),
    "-c --connections": (32, "wrk -c in total (even: each of two nodes gets half)"),
    "-d --duration": (10, "seconds per wrk run"),
    "--hash-cost": (15, "scrypt cost", "LOG2_N"),
    "--updates": (1000, "updates timed until visible at the other node, each way"),
    "--hosts": (4, "users the timed updates go round, each way"),
    "--poll": (0.0002, "seconds between queries to the other node"),
    "--limit": (5.0, "seconds until visible at most"),
}

if __name__ == "__main__":
    tools = {**require("wrk"), **require_postgresql()}
    short = {"duration": 5, "updates": 200}
    raise SystemExit(record.main("cluster_updates", __doc__, OPTIONS, run, short, 600, tools))
