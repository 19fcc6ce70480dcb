#!/usr/bin/env python
"""
Crash trials for dyndns_plugin: SIGKILL under concurrent updates of every
kind, then check that no acknowledged update was lost (not a test).

The server is a real C{twistd -n dyndns} with the SQLite store (an update is
answered only once it is durable) in a temporary directory, DNS (with RFC
2136 UPDATE), HTTP and GnuDIP TCP on 127.0.0.1 and free ports, and the
limiter switched off (C{[limits] enabled = false}, written only if the code
knows the table). Its users, C{--users} per method, each with one kind of
secret:

  - C{httpN}: an scrypt password; even N update through C{/nic/update}
    (Basic auth, answer C{good ADDR}), odd N through C{<base>ddns?user=&pw=&ip=}
    (answer header C{X-DynDNS-Result: OK}); one keep-alive connection each;
  - C{gnudipN}: the MD5 verifier; GnuDIP direct TCP, one connection per
    update (salt, hash line, reply C{0});
  - C{tsigN}: an hmac-sha256 key named C{tsigN.dyn.example.com.}; RFC 2136
    UPDATE over UDP signed by dnspython, freshly for each message (answer
    NOERROR with a valid TSIG).

Every user has its own client coroutine (one asyncio loop in this process),
bound to its own source address (127.0.0.100 and up), sending one update
after another, each to a new address (10.<user>.<seq>), and recording every
acknowledged address and every request whose answer has not arrived.

One trial: the clients run until every user has had an update acknowledged
(the HTTP users' passwords are then in the server's cache), then for a random
C{--kill-after} seconds (default 1-3); at that instant new requests stop and
the server gets SIGKILL. It is restarted from the same files and, once DNS,
HTTP and GnuDIP answer, every user's name is queried over UDP. The answer
must be the user's latest acknowledged address, or the address of a request
sent after it whose answer never arrived (in flight at the kill, or failed:
it may or may not have been applied). Anything else counts as C{lost} (an
older address: an acknowledged update is gone) or C{wrong} (an address never
acknowledged and not in flight, a refused one, or no answer). The SQLite
file must pass C{PRAGMA integrity_check} and hold what DNS serves, and
C{dyndns status --json} must read it. The next trial runs against the
restarted server; the store carries over.

    python bench/crash_trials.py                    # 10 trials, 20 users per method
    python bench/crash_trials.py --trials 3 --users 5   # quick
    python bench/crash_trials.py --code HEAD        # the last commit, not the checkout
    python bench/crash_trials.py --json out.json    # also write the numbers

Every process is stopped by its PID on exit, the temporary directory removed,
and a hard C{--timeout} applies. The exit status is 1 if anything was lost or
wrong, or a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import hashlib
import ipaddress
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dns_qps import BenchError, Processes, Timeout, addresses_in, note, query  # noqa: E402
from gnudip_tcp import machine, md5hex  # noqa: E402
from harness import (  # noqa: E402
    BASE_PATH,
    HOST,
    SUFFIX,
    AsyncHTTP,
    Server,
    code_description,
    export_code,
    free_ports,
    use_code,
    write_config,
)

TTL = 30
METHODS = ("http", "gnudip", "tsig")
#: How long a client waits for one answer before it counts the request as
#: unanswered and goes on (only a kill should ever make one wait that long).
REQUEST_TIMEOUT = 10.0


def password_of(name: str) -> str:
    return f"crash-{name}-pw"


def secret_of(name: str) -> str:
    return base64.b64encode(hashlib.sha256(f"crash-{name}".encode()).digest()).decode()


def address_of(index: int, seq: int) -> str:
    """User C{index}'s C{seq}-th address: 10.<index>.<seq high>.<seq low>."""
    return str(ipaddress.IPv4Address((10 << 24) | (index << 16) | seq))


def seq_of(address: str) -> tuple[int, int]:
    """(user index, seq) of an address made by L{address_of}."""
    value = int(ipaddress.IPv4Address(address))
    return (value >> 16) & 255, value & 0xFFFF


# -- the store (built in a child process: it runs a reactor)


def make_store_main(path: str, per_method: int, log2_n: int) -> None:
    """C{_make-store PATH USERS LOG2_N}: the users of every method, initial addresses."""
    from twisted.internet import defer, task

    from dyndns_plugin import HostState, SQLiteUserStore, User
    from dyndns_plugin.passwords import hash_password, md5_verifier

    async def build(reactor: Any) -> None:
        names = user_names(per_method)
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            hashes = list(pool.map(lambda n: hash_password(password_of(n), log2_n=log2_n),
                                   names["http"]))
        users = [User(id=n, password_hash=h) for n, h in zip(names["http"], hashes)]
        users += [User(id=n, md5_verifier=md5_verifier(password_of(n)))
                  for n in names["gnudip"]]
        users += [User(id=n, tsig_secret=secret_of(n), tsig_algorithm="hmac-sha256")
                  for n in names["tsig"]]
        states = [HostState(u.id, ipv4=address_of(i, 0), ttl=TTL, updated_at=0.0)
                  for i, u in enumerate(users, 1)]
        store = SQLiteUserStore(path, reactor)
        await store.open()
        try:
            await store.import_users(users, states)
        finally:
            await store.close()

    task.react(lambda reactor: defer.ensureDeferred(build(reactor)))


def user_names(per_method: int) -> dict[str, list[str]]:
    return {m: [f"{m}{k}" for k in range(1, per_method + 1)] for m in METHODS}


# -- the clients


class UserLoad:
    """One user: what was acknowledged, what is unanswered, what DNS must show."""

    def __init__(self, index: int, name: str, method: str) -> None:
        self.index = index  # 1.., also the second octet of its addresses
        self.name = name
        self.method = method
        self.source = f"127.0.0.{99 + index}"
        self.seq = 0  # the last address used
        #: The latest acknowledged address (at the start: the stored one).
        self.acked = address_of(index, 0)
        self.acked_at = 0.0
        #: Requests sent after the latest acknowledged one, never answered.
        self.unanswered: list[str] = []
        #: Requests answered with a refusal: they must not be served.
        self.refused: set[str] = set()
        self.inflight: str | None = None
        self.trial_acks = 0

    def next_address(self) -> str:
        self.seq += 1
        if self.seq > 0xFFFF:
            raise BenchError(f"{self.name}: out of addresses")
        return address_of(self.index, self.seq)

    def valid(self) -> set[str]:
        return {self.acked, *self.unanswered}


class Counters:
    def __init__(self) -> None:
        self.acked = {m: 0 for m in METHODS}
        self.refused = {m: 0 for m in METHODS}
        self.errors = {m: 0 for m in METHODS}  # unanswered before the kill
        self.samples: list[str] = []

    def sample(self, text: str) -> None:
        if len(self.samples) < 8:
            self.samples.append(text)


class Load:
    """Every user's client coroutine; stopped at once by L{halt}."""

    def __init__(self, server: Server, users: list[UserLoad]) -> None:
        self.server = server
        self.users = users
        self.halted = False
        self.counters = Counters()
        self.tasks: list[asyncio.Task[None]] = []

    async def run_user(self, user: UserLoad) -> None:
        send = {"http": self._http, "gnudip": self._gnudip, "tsig": self._tsig}[user.method]
        http = AsyncHTTP(self.server.http_port, user.source) if user.method == "http" else None
        try:
            while not self.halted:
                address = user.next_address()
                user.unanswered.append(address)
                user.inflight = address
                try:
                    ok, detail = await asyncio.wait_for(send(user, address, http),
                                                        REQUEST_TIMEOUT)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # no answer: it may or may not be applied
                    user.inflight = None
                    if not self.halted:
                        self.counters.errors[user.method] += 1
                        self.counters.sample(f"{user.name} {address}: {type(e).__name__}: {e}")
                        await asyncio.sleep(0.05)
                    continue
                user.inflight = None
                if ok:
                    user.acked, user.acked_at = address, time.time()
                    user.unanswered.clear()
                    user.trial_acks += 1
                    self.counters.acked[user.method] += 1
                else:
                    user.unanswered.remove(address)
                    user.refused.add(address)
                    self.counters.refused[user.method] += 1
                    self.counters.sample(f"{user.name} {address}: refused: {detail}")
                    await asyncio.sleep(0.05)
        finally:
            if http is not None:
                http.close()

    async def _http(self, user: UserLoad, address: str, http: AsyncHTTP | None
                    ) -> tuple[bool, str]:
        assert http is not None
        if user.index % 2 == 0:
            auth = base64.b64encode(f"{user.name}:{password_of(user.name)}".encode()).decode()
            status, _h, body = await http.get(
                f"/nic/update?hostname={user.name}.{SUFFIX}&myip={address}",
                {"Authorization": f"Basic {auth}"})
            text = body.decode("utf-8", "replace").strip()
            return status == 200 and text in (f"good {address}", f"nochg {address}"), \
                f"{status} {text[:60]!r}"
        query_string = urllib.parse.urlencode(
            {"user": user.name, "pw": password_of(user.name), "ip": address})
        status, headers, body = await http.get(f"{BASE_PATH}ddns?{query_string}")
        result = headers.get("x-dyndns-result", "")
        return status == 200 and result == "OK", f"{status} {result!r}"

    async def _gnudip(self, user: UserLoad, address: str, _http: AsyncHTTP | None
                      ) -> tuple[bool, str]:
        reader, writer = await asyncio.open_connection(
            HOST, self.server.gnudip_port, local_addr=(user.source, 0))
        try:
            salt = (await reader.readuntil(b"\n")).strip()
            proof = hashlib.md5(md5hex(password_of(user.name)).encode() + b"." + salt)
            writer.write(f"{user.name}:{proof.hexdigest()}:{SUFFIX}:0:{address}\n".encode())
            reply = (await reader.readuntil(b"\n")).decode("ascii", "replace").strip()
        finally:
            writer.close()
        return reply == "0", repr(reply)

    async def _tsig(self, user: UserLoad, address: str, _http: AsyncHTTP | None
                    ) -> tuple[bool, str]:
        import dns.asyncquery
        import dns.name
        import dns.rcode
        import dns.tsig
        import dns.update

        keyname = dns.name.from_text(f"{user.name}.{SUFFIX}.")
        message = dns.update.UpdateMessage(SUFFIX)
        message.replace(keyname, TTL, "A", address)
        # Signed now, with its own time and MAC (the server keeps MACs it saw).
        message.use_tsig(dns.tsig.Key(keyname, secret_of(user.name), dns.tsig.HMAC_SHA256))
        # dnspython verifies the answer's TSIG; a bad one raises (unanswered).
        response = await dns.asyncquery.udp(message, HOST, timeout=REQUEST_TIMEOUT,
                                            port=self.server.dns_port, source=user.source)
        rcode = response.rcode()
        return rcode == dns.rcode.NOERROR, dns.rcode.to_text(rcode)

    def start(self) -> None:
        self.halted = False
        self.counters = Counters()
        for user in self.users:
            user.trial_acks = 0
            user.refused = set()
        self.tasks = [asyncio.ensure_future(self.run_user(u)) for u in self.users]

    def halt_and_kill(self) -> dict[str, int]:
        """
        No new request from now on, and SIGKILL, with no await in between (so
        no client runs in between): what is in flight now was in flight at
        the kill. Returns the count in flight per method.
        """
        self.halted = True
        inflight = {m: 0 for m in METHODS}
        for user in self.users:
            if user.inflight is not None:
                inflight[user.method] += 1
        self.server.kill()
        return inflight

    async def drain(self) -> None:
        for t in self.tasks:
            t.cancel()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                raise BenchError(f"a client failed: {r!r}")


# -- one trial


async def load_phase(load: Load, rng: random.Random, args: argparse.Namespace,
                     deadline: float) -> dict[str, Any]:
    started = time.monotonic()
    load.start()
    # Every user acknowledged once: the HTTP users' first update (scrypt) is done.
    while any(u.trial_acks == 0 for u in load.users):
        if time.monotonic() > min(deadline, started + args.warm_timeout):
            slow = [u.name for u in load.users if u.trial_acks == 0]
            load.halted = True
            await load.drain()
            raise Timeout(f"no update acknowledged within {args.warm_timeout} s for "
                          f"{len(slow)} users, e.g. {slow[:5]}; {load.counters.samples[:3]}")
        await asyncio.sleep(0.02)
    warm = time.monotonic() - started
    delay = rng.uniform(args.kill_after[0], args.kill_after[1])
    await asyncio.sleep(delay)
    inflight = load.halt_and_kill()
    killed_at = time.monotonic()
    await load.drain()
    return {"warm_s": round(warm, 2), "kill_after_s": round(delay, 2),
            "load_s": round(killed_at - started, 2), "inflight": inflight}


def check_after_restart(server: Server, users: list[UserLoad], store: str,
                        cli: bool) -> dict[str, Any]:
    """What DNS serves for every user, against what its client saw."""
    import dns.rcode

    out: dict[str, Any] = {
        "exact": {m: 0 for m in METHODS}, "inflight_applied": {m: 0 for m in METHODS},
        "lost": {m: 0 for m in METHODS}, "wrong": {m: 0 for m in METHODS}, "problems": []}
    served: dict[str, str] = {}
    for user in users:
        response = query(server.dns_port, f"{user.name}.{SUFFIX}", timeout=2)
        got = addresses_in(response)
        address = next(iter(got)) if len(got) == 1 else None
        if response.rcode() != dns.rcode.NOERROR or address is None:
            out["wrong"][user.method] += 1
            out["problems"].append(f"{user.name}: DNS answered "
                                   f"{dns.rcode.to_text(response.rcode())} {sorted(got)}")
            continue
        served[user.name] = address
        if address == user.acked:
            out["exact"][user.method] += 1
        elif address in user.unanswered:
            out["inflight_applied"][user.method] += 1
        else:
            index, seq = seq_of(address)
            if index == user.index and seq < seq_of(user.acked)[1] and address not in user.refused:
                out["lost"][user.method] += 1
                kind = "LOST: an older address than the acknowledged"
            else:
                out["wrong"][user.method] += 1
                kind = "WRONG: never acknowledged nor in flight" + (
                    " (refused)" if address in user.refused else "")
            out["problems"].append(f"{user.name}: serves {address}; {kind} {user.acked}; "
                                   f"unanswered {user.unanswered}")
        # What DNS serves becomes what the next trial starts from.
        user.acked = address
        user.unanswered = []
    out["store"] = check_store(store, served)
    out["problems"] += out["store"]["problems"]
    if cli:
        out["cli"] = check_cli(server.config, served)
        out["problems"] += out["cli"]["problems"]
    return out


def check_store(store: str, served: dict[str, str]) -> dict[str, Any]:
    """The SQLite file, read-only beside the running server: intact, and what DNS serves."""
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
    try:
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
        rows = dict(conn.execute("SELECT user_id, ipv4 FROM states").fetchall())
    finally:
        conn.close()
    problems = [] if integrity == "ok" else [f"integrity_check: {integrity}"]
    for name, address in served.items():
        if rows.get(name) != address:
            problems.append(f"{name}: store has {rows.get(name)}, DNS serves {address}")
    return {"integrity": integrity, "rows": len(rows), "problems": problems}


def check_cli(config: str, served: dict[str, str]) -> dict[str, Any]:
    """C{dyndns --config CONFIG status --json}: the admin's view of the same store."""
    script = os.path.join(os.path.dirname(sys.executable), "dyndns")
    argv = [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "dyndns_plugin.cli"]
    run = subprocess.run(argv + ["--config", config, "status", "--json"], capture_output=True,
                         text=True, timeout=60, stdin=subprocess.DEVNULL)
    if run.returncode != 0:
        return {"ok": False, "problems": [f"dyndns status: exit {run.returncode}: "
                                          f"{run.stderr.strip()[-300:]}"]}
    rows = {r["user"]: r for r in json.loads(run.stdout)}
    problems = [f"dyndns status: {name} shows {rows.get(name, {}).get('ipv4')}, "
                f"DNS serves {address}"
                for name, address in served.items() if rows.get(name, {}).get("ipv4") != address]
    return {"ok": not problems, "users": len(rows), "problems": problems}


# -- report


def _by_method(counts: dict[str, int]) -> str:
    return f"{sum(counts.values()):6d} ({' / '.join(str(counts[m]) for m in METHODS)})"


def summary(args: argparse.Namespace, info: dict[str, Any], out: dict[str, Any]) -> None:
    print()
    print("=" * 78)
    print("dyndns_plugin crash trials (SIGKILL under concurrent HTTP, GnuDIP and TSIG updates)")
    print(f"  machine: {info['nproc']} cpus, {info['cpu']}; Python {info['python']}, "
          f"Twisted {info['twisted']}, dnspython {info['dnspython']}, SQLite {info['sqlite']}; "
          f"{info['date']}; loadavg at start {' '.join(info['loadavg_at_start'])}")
    print(f"  code: {out['code']}; limiter: {out['limits']}")
    print(f"  {args.users} users per method (http: half /nic/update, half ddns; gnudip; tsig), "
          f"kill {args.kill_after[0]}-{args.kill_after[1]} s after every user's first ack; "
          f"counts are total (http / gnudip / tsig)")
    print(f"  {'trial':>5} {'load s':>6} {'acknowledged':>24} {'in flight at kill':>22} "
          f"{'applied':>7} {'lost':>4} {'wrong':>5} {'restart s':>9}  store")
    for t in out["trials"]:
        c = t["check"]
        store = "ok" if not c["store"]["problems"] else "PROBLEM"
        if "cli" in c:
            store += ", cli ok" if c["cli"]["ok"] else ", cli PROBLEM"
        print(f"  {t['trial']:5d} {t['load_s']:6.2f} {_by_method(t['acked']):>24} "
              f"{_by_method(t['inflight']):>22} {sum(c['inflight_applied'].values()):7d} "
              f"{sum(c['lost'].values()):4d} {sum(c['wrong'].values()):5d} "
              f"{t['restart_s']:9.2f}  {store}")
    tot = out["total"]
    print(f"  {'total':>5} {'':>6} {_by_method(tot['acked']):>24} "
          f"{_by_method(tot['inflight']):>22} {tot['applied']:7d} {tot['lost']:4d} "
          f"{tot['wrong']:5d}")
    print(f"  other answers: refused {_by_method(tot['refused'])}, unanswered before a kill "
          f"{_by_method(tot['errors'])}")
    for sample in out["samples"][:5]:
        print(f"    e.g. {sample}")
    for problem in out["problems"][:20]:
        print(f"  PROBLEM: {problem}")
    verdict = "PASS" if out["ok"] else "FAIL"
    print(f"  {verdict}: {tot['acked_all']} acknowledged updates over {len(out['trials'])} "
          f"SIGKILL trials, {tot['lost']} lost, {tot['wrong']} wrong")
    print("=" * 78)


# -- main


async def run_trials(args: argparse.Namespace, server: Server, users: list[UserLoad],
                     store: str, deadline: float) -> dict[str, Any]:
    rng = random.Random(args.seed)
    load = Load(server, users)
    trials = []
    samples: list[str] = []
    for trial in range(1, args.trials + 1):
        if time.monotonic() + args.kill_after[1] + 40 > deadline:
            raise Timeout(f"not enough time left for trial {trial}")
        phase = await load_phase(load, rng, args, deadline)
        counters = load.counters
        server.reap()
        server.start()
        restart = server.wait_ready(f"{users[-1].name}.{SUFFIX}", deadline)
        check = check_after_restart(server, users, store, not args.no_cli)
        t = {"trial": trial, **phase, "acked": counters.acked, "refused": counters.refused,
             "errors": counters.errors, "restart_s": round(restart, 2), "check": check}
        samples += counters.samples
        trials.append(t)
        note(f"trial {trial}: acknowledged {sum(t['acked'].values())} "
             f"({t['acked']}), in flight {t['inflight']}, applied "
             f"{sum(check['inflight_applied'].values())}, lost {sum(check['lost'].values())}, "
             f"wrong {sum(check['wrong'].values())}, restart {restart:.2f} s"
             + (f"; {len(check['problems'])} problems" if check["problems"] else ""))
    return {"trials": trials, "samples": samples}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_make-store":
        make_store_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--trials", type=int, default=10, help="SIGKILL trials (default 10)")
    parser.add_argument("--users", type=int, default=20,
                        help="users per method (default 20; at most 50)")
    parser.add_argument("--kill-after", type=float, nargs=2, default=(1.0, 3.0),
                        metavar=("MIN", "MAX"),
                        help="kill at a random moment this many seconds after every user's "
                        "first acknowledged update of the trial (default 1 3)")
    parser.add_argument("--warm-timeout", type=float, default=30,
                        help="seconds allowed for every user's first ack in a trial")
    parser.add_argument("--hash-cost", type=int, default=15, metavar="LOG2_N",
                        help="scrypt cost of the HTTP users' passwords (default 15, the real one)")
    parser.add_argument("--code", metavar="REV",
                        help="run the server from this commit (git archive into the temp dir) "
                        "instead of the checkout")
    parser.add_argument("--no-cli", action="store_true",
                        help="skip the 'dyndns status --json' check after each restart")
    parser.add_argument("--seed", type=int, default=None, help="random seed of the kill times")
    parser.add_argument("--timeout", type=int, default=600, help="hard limit, seconds")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not 1 <= args.trials <= 1000:
        parser.error("--trials must be 1..1000")
    if not 1 <= args.users <= 50:
        parser.error("--users must be 1..50 (one 127.0.0.x source per user)")
    if not 0 <= args.kill_after[0] <= args.kill_after[1] <= 60:
        parser.error("--kill-after needs 0 <= MIN <= MAX <= 60")
    if args.seed is None:
        args.seed = random.randrange(1 << 30)

    deadline = time.monotonic() + args.timeout

    def alarm(_signum: int, _frame: object) -> None:
        raise Timeout(f"benchmark exceeded --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(args.timeout + 5)

    tmp = tempfile.mkdtemp(prefix="dyndns-crash-")
    procs = Processes()
    server: Server | None = None
    try:
        code_dir = commit = None
        if args.code:
            code_dir = os.path.join(tmp, "code")
            commit = export_code(args.code, code_dir)
            use_code(code_dir)
        info = machine()
        store = os.path.join(tmp, "store.sqlite")
        note(f"building the store in {tmp}: {args.users} users per method")
        run = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "_make-store", store, str(args.users),
             str(args.hash_cost)],
            capture_output=True, text=True, timeout=max(10, deadline - time.monotonic()),
            stdin=subprocess.DEVNULL)
        if run.returncode != 0:
            raise BenchError(f"building the store failed:\n{run.stdout}\n{run.stderr}")
        dns_port, http_port, gnudip_port = free_ports(3)
        config, limits = write_config(tmp, store, dns_port, http_port, gnudip_port,
                                      {"enabled": False}, gnudip_per_source=64)
        server = Server(procs, tmp, config, dns_port, http_port, gnudip_port)
        users = [UserLoad(i, name, method) for i, (method, name) in enumerate(
            ((m, n) for m, names in user_names(args.users).items() for n in names), 1)]
        server.start()
        ready = server.wait_ready(f"{users[-1].name}.{SUFFIX}", deadline)
        note(f"server ready in {ready:.2f} s (dns {dns_port}, http {http_port}, "
             f"gnudip {gnudip_port}); {limits}; seed {args.seed}")
        result = asyncio.run(run_trials(args, server, users, store, deadline))
        server.stop()
        trials = result["trials"]
        total: dict[str, Any] = {}
        for key in ("acked", "inflight", "refused", "errors"):
            total[key] = {m: sum(t[key][m] for t in trials) for m in METHODS}
        for key in ("lost", "wrong", "inflight_applied"):
            total[key] = sum(sum(t["check"][key].values()) for t in trials)
        total["applied"] = total.pop("inflight_applied")
        total["acked_all"] = sum(total["acked"].values())
        problems = [f"trial {t['trial']}: {p}" for t in trials for p in t["check"]["problems"]]
        ok = not problems and total["lost"] == 0 and total["wrong"] == 0
        out = {"code": code_description(code_dir, commit), "limits": limits,
               "trials": trials, "total": total, "problems": problems,
               "samples": result["samples"], "ok": ok, "seed": args.seed}
        signal.alarm(0)
        summary(args, info, out)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "machine": info, **out}, f, indent=2)
        return 0 if ok else 1
    except BenchError as e:
        print(f"\nCRASH TRIALS FAILED: {e}", file=sys.stderr)
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
