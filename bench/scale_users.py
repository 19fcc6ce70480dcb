"""
One million users: start-up, memory, import and reactor stalls (bench/scale_users.py).

    python -m bench.scale_users [--short]   # ~5 min at 1,000,000 users (--short: 100,000)

B{Store}: C{--users} users (each a password hash, an MD5 verifier and an
initial IPv4 address, like a real import) written by direct SQL in one
transaction (the harness's C{build_store} hashes every password: hours at
this size), then flushed to disk (C{sync}: a server restarts on a store at
rest). B{Start}: C{twistd -n dyndns} on that store, from the exec to the
first correct answer for the last user; B{memory}: resident bytes per user,
(VmRSS with the users - VmRSS of the same server on an empty store) / users,
each read C{--settle} s after the server answered: the measure
bench/dns_qps.py reports too: (VmRSS(N) - VmRSS(empty store)) / N. B{Stalls}: one client
sends DNS queries one at a time (1 s timeout) the whole while and records the
longest wait for an answer, first with nothing else going on (the floor:
the client and the machine), then while curl fetches C{/metrics},
C{/api/state} pages, the whole C{/api/state} (streamed), the whole
C{/api/config} (built in a thread), the status page, while another process
changes 50,000 users' addresses in one transaction (direct SQL, as a restore
or an import would; the server's poll applies them in slices), and while the
CLI adds two users (the server's poll picks them up). A wait above
10 ms there is a stall of the reactor thread (or the machine: compare the
floor). The server also meters its own reactor turns
(L{dyndns_plugin.reactor_lag}, C{DYNDNS_BENCH_LAG_LOG}): the longest turn
of the reactor thread in each phase, with the CPU time that thread used
in it (the rest: not running, another process on the core or another of
our threads holding the GIL), is the stall as the server saw it, apart
from the client's share. Its log, with the stacks of turns over 10 ms, is
kept as C{scale_users-reactor-turns.log} in the temporary folder. B{Import}: C{dyndns import} of a document of C{--users} users with
password hashes into an empty store, timed end to end.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

from bench.harness import record
from bench.harness.meter import rss
from bench.harness.procs import HOST, Processes, free_ports, note, wait_for
from bench.harness.server import Server, dns_ready
from bench.harness.users import SUFFIX, TTL, addresses_of, initial_answer
from dyndns_plugin.reactor_lag import LOG_VARIABLE, STACKS_VARIABLE, longest_turn_ms
from dyndns_plugin.store.sqlite import connect

ADMIN_TOKEN = "scale-bench-admin-token-0123456789"
#: Stand-ins of the stored verifiers, the lengths of real ones: loading them costs the same.
_HASH = "$scrypt$ln=15,r=8,p=1$%s$%s"


def password_hash_of(i: int) -> str:
    salt = base64.b64encode(i.to_bytes(16, "big")).decode().rstrip("=")
    return _HASH % (salt, base64.b64encode(hashlib.sha256(b"%d" % i).digest()).decode().rstrip("="))


def md5_of(i: int) -> str:
    return hashlib.md5(b"%d" % i).hexdigest()


def bulk_store(path: str, count: int) -> float:
    """C{count} users, with verifiers and initial addresses, by direct SQL in one transaction: seconds taken."""
    started = time.monotonic()
    conn = connect(path)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO users (id, password_hash, md5_verifier, tsig_secret, tsig_algorithm, tsig_from_password,"
            " offline_ipv4, offline_ipv6, notes, disabled, gen) VALUES (?, ?, ?, NULL, 'hmac-md5', 0, NULL, NULL,"
            " '', 0, 1)",
            ((f"user{i}", password_hash_of(i), md5_of(i)) for i in range(1, count + 1)),
        )
        conn.executemany(
            "INSERT INTO states (user_id, ipv4, ipv6, ttl, offline, updated_at, method, client_address, gen)"
            " VALUES (?, ?, NULL, ?, 0, ?, 'ddns', ?, 1)",
            # the client's address is the user's own (a router updating itself): one string per user
            ((f"user{i}", addresses_of(i)[2], TTL, 1.7e9 + i, addresses_of(i)[2]) for i in range(1, count + 1)),
        )
        conn.execute("UPDATE meta SET value = 1 WHERE key = 'generation'")
        conn.execute("COMMIT")
    finally:
        conn.close()
    return time.monotonic() - started


def bulk_change(path: str, count: int) -> tuple[str, str]:
    """
    Users 1..C{count} move to new addresses in one transaction by another
    process, as a restore or an import would write them: the name and
    address of the last, once the server's poll has applied them all.
    """
    conn = connect(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        (generation,) = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        generation += 1
        conn.executemany(
            "UPDATE states SET ipv4 = ?, method = 'restore', gen = ? WHERE user_id = ?",
            ((addresses_of(i)[0], generation, f"user{i}") for i in range(1, count + 1)),
        )
        conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (generation,))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return f"user{count}.{SUFFIX}", addresses_of(count)[0]


def import_document(path: str, count: int) -> None:
    """The C{dyndns import} document of the same users (verifiers given, no plain passwords)."""
    with open(path, "w") as f:
        f.write('{"format": "dyndns_plugin.users", "version": 1, "users": [\n')
        for i in range(1, count + 1):
            user: dict[str, Any] = {"id": f"user{i}", "password_hash": password_hash_of(i), "md5_verifier": md5_of(i)}
            user["state"] = {"ipv4": addresses_of(i)[2], "ttl": TTL}
            f.write(json.dumps(user) + (",\n" if i < count else "\n"))
        f.write("]}\n")


class StallProbe(threading.Thread):
    """DNS queries one at a time, for the longest wait for an answer (and the count of lost ones)."""

    def __init__(self, port: int, name: str, lag_log: str) -> None:
        super().__init__(daemon=True)
        self.lag_log = lag_log  # the server's own long reactor turns (dyndns_plugin/reactor_lag.py)
        self.port, self.stop_now = port, threading.Event()
        header = struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 0)
        self.question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0\0\1\0\1"
        self.header = header
        self.waits: list[float] = []
        self.lost = 0

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.connect((HOST, self.port))
            qid = 0
            while not self.stop_now.is_set():
                qid = (qid + 1) & 0xFFFF
                sent = time.perf_counter()
                sock.send(struct.pack("!H", qid) + self.header[2:] + self.question)
                try:
                    while struct.unpack("!H", sock.recv(4096)[:2])[0] != qid:
                        pass
                except TimeoutError:
                    self.lost += 1
                    continue
                self.waits.append(time.perf_counter() - sent)

    def during(self, action: Callable[[], Any]) -> tuple[dict[str, Any], Any]:
        """
        Run C{action} while probing: (longest wait ms, the server's longest
        reactor turn ms, queries, lost), and what C{action} returned.
        """
        start, lost = len(self.waits), self.lost
        began = time.monotonic()
        result = action()
        ended = time.monotonic()
        took = ended - began
        time.sleep(0.2)  # a turn is written when the next one starts
        turn = longest_turn_ms(self.lag_log, began, ended)  # None: no turn of 1 ms or more
        waits = self.waits[start:]
        lost_now = self.lost - lost
        longest = max([*waits, 1.0] if lost_now else waits, default=None)  # a lost query waited 1 s at least
        figures = {
            "longest_wait_ms": None if longest is None else round(1000 * longest, 2),
            "longest_server_turn_ms": round(turn[0], 2) if turn is not None else 0.0,
            "its_cpu_ms": round(turn[1], 2) if turn is not None else 0.0,
            "most_cpu_in_a_turn_ms": round(turn[2], 2) if turn is not None else 0.0,
            "queries": len(waits),
            "lost": lost_now,
            "action_s": round(took, 3),
        }
        return figures, result


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    problems: list[str] = []
    count = args.users
    store, empty = os.path.join(tmp, "store.sqlite"), os.path.join(tmp, "empty.sqlite")
    note(f"building a store of {count} users")
    built_s = bulk_store(store, count)
    bulk_store(empty, 0)
    # A server restarts on a store at rest: the builder's ~300 MB of dirty
    # pages (synchronous=OFF) are written out first, not during the timed
    # start (measured: 9.6 s to the first answer with them pending, 8.2-8.6 s
    # without, on the same store).
    os.sync()
    token = hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()
    (admin_port,) = free_ports(1)
    admin = {"listen": [f"tcp:{admin_port}:interface={HOST}"], "tokens": [f"sha256:{token}"]}

    def server_on(path: str, name: str) -> Server:
        return Server(procs, tmp, path, name, tables={"admin": admin})

    baseline = server_on(empty, "empty")
    baseline.start(deadline)
    time.sleep(args.settle)
    rss_empty = rss(baseline.pid)
    baseline.stop()

    server = server_on(store, "big")
    name, address = initial_answer(count)
    note(f"starting on {count} users")
    lag_log = os.path.join(tmp, "big-reactor-turns.log")
    os.environ.update({LOG_VARIABLE: lag_log, STACKS_VARIABLE: "10"})
    try:
        start_s = server.start(deadline, name, address)
    finally:
        del os.environ[LOG_VARIABLE], os.environ[STACKS_VARIABLE]
    time.sleep(args.settle)
    rss_loaded = rss(server.pid)
    per_user = (rss_loaded["VmRSS"] - rss_empty["VmRSS"]) / count  # the same measure as bench/dns_qps.py
    headers_line = f"Authorization: Bearer {ADMIN_TOKEN}"

    def get(path: str) -> int:
        # curl, not this process: reading 250 MB here would hold the GIL the probe thread needs.
        argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "-H", headers_line]
        done = subprocess.run([*argv, f"http://{HOST}:{admin_port}{path}"], capture_output=True, text=True, timeout=600)
        status, size = (done.stdout.split() + ["0", "0"])[:2]
        if status != "200":
            problems.append(f"GET {path}: {status} {done.stderr[:200]}")
        return int(size)

    def cli_adds() -> None:
        for k in range(1, 3):
            argv = [sys.executable, "-m", "dyndns_plugin.cli", "--config", server.config, "user", "add"]
            subprocess.run([*argv, f"added{k}"], check=False, capture_output=True, timeout=300, cwd=tmp)

    probe = StallProbe(server.dns_port, name, lag_log)
    probe.start()
    stalls: dict[str, Any] = {}
    try:
        stalls["idle (floor)"], _ = probe.during(lambda: time.sleep(3.0))
        stalls["/metrics x5"], _ = probe.during(lambda: [get("/metrics") for _ in range(5)])
        stalls["/api/state?limit=1000 x5"], _ = probe.during(
            lambda: [get(f"/api/state?limit=1000&after=user{k}") for k in range(5)]
        )
        stalls["/api/state (all, streamed)"], size = probe.during(lambda: get("/api/state"))
        stalls["/api/config (all)"], config_size = probe.during(lambda: get("/api/config"))
        stalls["/status x3"], _ = probe.during(lambda: [get("/status") for _ in range(3)])
        changed = min(50_000, count)

        def changes_applied() -> None:
            last, address = bulk_change(store, changed)
            wait_for(lambda: dns_ready(server.dns_port, last, address), deadline, "the poll's changes", None, "")

        stalls[f"{changed:,} changes by another process (poll)"], _ = probe.during(changes_applied)
        stalls["CLI user add x2 (poll)"], _ = probe.during(cli_adds)
    finally:
        probe.stop_now.set()
        probe.join(5)
    server.stop()
    loaded = [k for k, v in stalls.items() if not k.startswith("idle")]
    longest_wait = max((stalls[k]["longest_wait_ms"] or 0.0) for k in loaded)
    longest = max(stalls[k]["longest_server_turn_ms"] for k in loaded)
    most_cpu = max(stalls[k]["most_cpu_in_a_turn_ms"] for k in loaded)
    shutil.copyfile(lag_log, os.path.join(tempfile.gettempdir(), "scale_users-reactor-turns.log"))

    document = os.path.join(tmp, "import.json")
    import_document(document, count)
    fresh = os.path.join(tmp, "fresh.sqlite")
    config = os.path.join(tmp, "import.toml")
    with open(config, "w") as f:
        f.write(f'[service]\nsuffix = "{SUFFIX}"\n[store]\nbackend = "sqlite"\npath = "{fresh}"\n')
    note(f"dyndns import of {count} users")
    began = time.monotonic()
    argv = [sys.executable, "-m", "dyndns_plugin.cli", "--config", config, "import", document]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=max(60, deadline - time.monotonic()), cwd=tmp)
    import_s = time.monotonic() - began
    if done.returncode != 0:
        problems.append(f"dyndns import failed: {done.stderr[-500:]}")
    figures = {
        "users": count,
        "store_build_s": round(built_s, 1),
        "start_to_first_answer_s": round(start_s, 2),
        "rss_mib": round(rss_loaded["VmRSS"] / 2**20, 1),
        "rss_empty_store_mib": round(rss_empty["VmRSS"] / 2**20, 1),
        "rss_bytes_per_user": round(per_user),
        "longest_reactor_stall_ms": longest,
        "longest_reactor_turn_cpu_ms": most_cpu,
        "longest_dns_wait_ms": longest_wait,
        "idle_floor_ms": stalls["idle (floor)"]["longest_wait_ms"],
        "idle_longest_server_turn_ms": stalls["idle (floor)"]["longest_server_turn_ms"],
        "full_state_bytes": size,
        "full_config_bytes": config_size,
        "import_s": round(import_s, 1),
        "import_document_mib": round(os.path.getsize(document) / 2**20, 1),
    }
    targets = {
        "start <= 10 s": start_s <= 10,
        "<= 1 KiB per user": per_user <= 1024,
        "import <= 60 s": import_s <= 60,
        "stall <= 10 ms": longest <= 10,
    }
    return {
        "figures": figures,
        "ratios": {"targets met": ", ".join(k for k, v in targets.items() if v) or "none"},
        "problems": problems,
        "stalls": stalls,
        "targets": targets,
    }


OPTIONS: record.Options = {
    "--users": (1_000_000, "users in the store"),
    "--settle": (1.0, "seconds before reading VmRSS (as bench/dns_qps.py)"),
}

if __name__ == "__main__":
    raise SystemExit(record.main("scale_users", __doc__, OPTIONS, run, {"users": 100_000}, 1800))
