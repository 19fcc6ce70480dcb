"""
Crash trials: SIGKILL under concurrent HTTP, GnuDIP and TSIG updates (bench/crash_trials.py).

    python -m bench.crash_trials                 # 10 trials, 20 users per method
    python -m bench.crash_trials --short         # 3 trials, 10 users per method
    python -m bench.crash_trials --code HEAD     # the last commit, not the checkout

Ours, C{twistd -n dyndns} with DNS (RFC 2136 UPDATE), HTTP and GnuDIP TCP,
the limiter off, and C{--users} users per method: C{httpN} (scrypt password;
even N through C{/nic/update}, odd N through C{<base>ddns}, one keep-alive
connection each), C{gnudipN} (MD5 verifier, one connection per update),
C{tsigN} (hmac-sha256 key, UPDATE over UDP signed by dnspython). Every user
has its own client coroutine bound to its own source (127.0.0.100 and up),
sending one update after another, each to a new address. One trial: the
clients run until every user has an acknowledged update (the HTTP passwords
are then cached), then for a random 1-3 s; at that instant new requests stop
and the server gets SIGKILL. Restarted from the same files, every user's
name must answer its latest acknowledged address or that of a request whose
answer never came (in flight at the kill). An older address is C{lost}; an
address never acknowledged nor in flight is C{wrong}. The SQLite file must
pass C{PRAGMA integrity_check} and hold what DNS serves, and C{dyndns status
--json} must read it. The store carries over to the next trial.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import os
import random
import subprocess
import sys
import time
import urllib.parse
from typing import Any

from bench.harness import record
from bench.harness.procs import HOST, BenchError, Processes, note
from bench.harness.server import BASE_PATH, Server, addresses_in, export_code, query
from bench.harness.users import (
    SUFFIX,
    TTL,
    basic_auth,
    build_store,
    password_of,
    read_states,
    tsig_secret_of,
    users,
)
from dyndns_plugin.passwords import md5_verifier

METHODS = ("http", "gnudip", "tsig")
REQUEST_TIMEOUT = 10.0  # only a kill should ever make a client wait that long


def address_of(index: int, seq: int) -> str:
    return str(ipaddress.IPv4Address((10 << 24) | (index << 16) | seq))


def seq_of(address: str) -> tuple[int, int]:
    value = int(ipaddress.IPv4Address(address))
    return (value >> 16) & 255, value & 0xFFFF


class AsyncHTTP:
    """One keep-alive HTTP/1.1 connection from C{source}, reopened when closed."""

    def __init__(self, port: int, source: str) -> None:
        self.port, self.source = port, source
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port, local_addr=(self.source, 0))
        assert self.reader is not None
        lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        self.writer.write(
            ("\r\n".join(lines + [f"{k}: {v}" for k, v in headers.items()]) + "\r\n\r\n").encode("latin-1")
        )
        try:
            head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            got = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in head[1:])}
            body = await self.reader.readexactly(int(got.get("content-length", 0)))
        except BaseException:
            self.close()
            raise
        if got.get("connection", "").lower() == "close":
            self.close()
        return int(head[0].split()[1]), got, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class UserLoad:
    """One user: what was acknowledged, what is unanswered, what DNS must show."""

    def __init__(self, index: int, name: str, method: str) -> None:
        self.index, self.name, self.method = index, name, method
        self.source = f"127.0.0.{99 + index}"
        self.seq = 0
        self.acked = address_of(index, 0)
        self.unanswered: list[str] = []  # sent after the latest ack, never answered
        self.refused: set[str] = set()
        self.inflight: str | None = None
        self.trial_acks = 0


class Load:
    """Every user's client coroutine; stopped at once by L{halt_and_kill}."""

    def __init__(self, server: Server, loads: list[UserLoad]) -> None:
        self.server, self.users, self.halted = server, loads, False
        self.tasks: list[asyncio.Task[None]] = []
        self.counts: dict[str, dict[str, int]] = {}
        self.samples: list[str] = []

    def _count(self, kind: str, method: str, sample: str | None = None) -> None:
        self.counts[kind][method] += 1
        if sample and len(self.samples) < 8:
            self.samples.append(sample)

    async def run_user(self, user: UserLoad) -> None:
        send = {"http": self._http, "gnudip": self._gnudip, "tsig": self._tsig}[user.method]
        http = AsyncHTTP(self.server.http_port, user.source) if user.method == "http" else None
        try:
            while not self.halted:
                user.seq += 1
                address = address_of(user.index, user.seq)
                user.unanswered.append(address)
                user.inflight = address
                try:
                    ok, detail = await asyncio.wait_for(send(user, address, http), REQUEST_TIMEOUT)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # no answer: it may or may not be applied
                    user.inflight = None
                    if not self.halted:
                        self._count("errors", user.method, f"{user.name} {address}: {e!r}")
                        await asyncio.sleep(0.05)
                    continue
                user.inflight = None
                if ok:
                    user.acked, user.unanswered = address, []
                    user.trial_acks += 1
                    self._count("acked", user.method)
                else:
                    user.unanswered.remove(address)
                    user.refused.add(address)
                    self._count("refused", user.method, f"{user.name} {address}: {detail}")
                    await asyncio.sleep(0.05)
        finally:
            if http is not None:
                http.close()

    async def _http(self, user: UserLoad, address: str, http: Any) -> tuple[bool, str]:
        if user.index % 2 == 0:
            status, _h, body = await http.get(
                f"/nic/update?hostname={user.name}.{SUFFIX}&myip={address}", {"Authorization": basic_auth(user.name)}
            )
            text = body.decode("utf-8", "replace").strip()
            return status == 200 and text in (f"good {address}", f"nochg {address}"), text[:60]
        query_string = urllib.parse.urlencode({"user": user.name, "pw": password_of(user.name), "ip": address})
        status, headers, _body = await http.get(f"{BASE_PATH}ddns?{query_string}", {})
        return status == 200 and headers.get("x-dyndns-result") == "OK", f"{status}"

    async def _gnudip(self, user: UserLoad, address: str, _http: Any) -> tuple[bool, str]:
        reader, writer = await asyncio.open_connection(HOST, self.server.gnudip_port, local_addr=(user.source, 0))
        try:
            salt = (await reader.readuntil(b"\n")).strip()
            proof = hashlib.md5(md5_verifier(password_of(user.name)).encode() + b"." + salt).hexdigest()
            writer.write(f"{user.name}:{proof}:{SUFFIX}:0:{address}\n".encode())
            reply = (await reader.readuntil(b"\n")).decode("ascii", "replace").strip()
        finally:
            writer.close()
        return reply == "0", repr(reply)

    async def _tsig(self, user: UserLoad, address: str, _http: Any) -> tuple[bool, str]:
        import dns.asyncquery
        import dns.name
        import dns.tsig
        import dns.update

        keyname = dns.name.from_text(f"{user.name}.{SUFFIX}.")
        message = dns.update.UpdateMessage(SUFFIX)
        message.replace(keyname, TTL, "A", address)
        message.use_tsig(dns.tsig.Key(keyname, tsig_secret_of(user.name), dns.tsig.HMAC_SHA256))
        response = await dns.asyncquery.udp(
            message, HOST, timeout=REQUEST_TIMEOUT, port=self.server.dns_port, source=user.source
        )
        return response.rcode() == 0, str(response.rcode())  # a bad TSIG raises: unanswered

    def start(self) -> None:
        self.halted = False
        self.counts = {k: dict.fromkeys(METHODS, 0) for k in ("acked", "refused", "errors")}
        for user in self.users:
            user.trial_acks, user.refused = 0, set()
        self.tasks = [asyncio.ensure_future(self.run_user(u)) for u in self.users]

    def halt_and_kill(self) -> dict[str, int]:
        """No new request, then SIGKILL, with no await between: what is in flight now
        was in flight at the kill."""
        self.halted = True
        inflight = dict.fromkeys(METHODS, 0)
        for user in self.users:
            inflight[user.method] += user.inflight is not None
        self.server.kill()
        return inflight

    async def drain(self) -> None:
        for t in self.tasks:
            t.cancel()
        for r in await asyncio.gather(*self.tasks, return_exceptions=True):
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                raise BenchError(f"a client failed: {r!r}")


def check_after_restart(server: Server, loads: list[UserLoad], store: str, cli: bool) -> dict[str, Any]:
    out: dict[str, Any] = {k: dict.fromkeys(METHODS, 0) for k in ("exact", "applied", "lost", "wrong")}
    problems, served = [], {}
    for user in loads:
        response = query(server.dns_port, f"{user.name}.{SUFFIX}", timeout=2)
        got = addresses_in(response)
        address = next(iter(got)) if len(got) == 1 and response.rcode() == 0 else None
        if address == user.acked:
            kind = "exact"
        elif address in user.unanswered:
            kind = "applied"
        elif (
            address
            and seq_of(address)[0] == user.index
            and address not in user.refused
            and seq_of(address)[1] < seq_of(user.acked)[1]
        ):
            kind = "lost"
        else:
            kind = "wrong"
        out[kind][user.method] += 1
        if kind in ("lost", "wrong"):
            problems.append(
                f"{user.name}: serves {sorted(got)}: {kind.upper()}; acknowledged "
                f"{user.acked}, unanswered {user.unanswered}"
            )
        if address:
            served[user.name] = address
            user.acked, user.unanswered = address, []  # where the next trial starts from
    integrity, _gen, rows = read_states(store)
    problems += [] if integrity == "ok" else [f"integrity_check: {integrity}"]
    problems += [
        f"{n}: store has {rows.get(n, ('-',))[0]}, DNS serves {a}"
        for n, a in served.items()
        if rows.get(n, ("-",))[0] != a
    ]
    if cli:
        run = subprocess.run(
            [sys.executable, "-m", "dyndns_plugin.cli", "--config", server.config, "status", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            cwd="/",
        )
        if run.returncode != 0:
            problems.append(f"dyndns status: exit {run.returncode}: {run.stderr.strip()[-300:]}")
        else:
            shown = {r["user"]: r.get("ipv4") for r in json.loads(run.stdout)}
            problems += [
                f"dyndns status: {n} shows {shown.get(n)}, DNS serves {a}"
                for n, a in served.items()
                if shown.get(n) != a
            ]
    out["problems"] = problems
    return out


async def run_trials(
    args: argparse.Namespace, server: Server, loads: list[UserLoad], store: str, deadline: float
) -> list[dict[str, Any]]:
    rng, load, trials = random.Random(args.seed), Load(server, loads), []
    for trial in range(1, args.trials + 1):
        if time.monotonic() + args.kill_after[1] + 40 > deadline:
            raise BenchError(f"not enough time left for trial {trial}")
        started = time.monotonic()
        load.start()
        while any(u.trial_acks == 0 for u in loads):  # the HTTP users' scrypt is done
            if time.monotonic() > min(deadline, started + 30):
                raise BenchError(f"not every user got an update acknowledged: {load.samples[:3]}")
            await asyncio.sleep(0.02)
        delay = rng.uniform(*args.kill_after)
        await asyncio.sleep(delay)
        inflight = load.halt_and_kill()
        await load.drain()
        restart = server.start(deadline, f"{loads[-1].name}.{SUFFIX}")
        check = check_after_restart(server, loads, store, not args.no_cli)
        trials.append(
            {
                "trial": trial,
                "kill_after_s": round(delay, 2),
                "inflight": inflight,
                **load.counts,
                "restart_s": round(restart, 2),
                "check": check,
                "samples": load.samples[:4],
            }
        )
        note(
            f"trial {trial}: acknowledged {load.counts['acked']}, in flight {inflight}, "
            f"lost {sum(check['lost'].values())}, wrong {sum(check['wrong'].values())}"
        )
        load.samples = []
    return trials


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    code = export_code(args.code, os.path.join(tmp, "code")) if args.code else None
    specs = [
        u for m in METHODS for u in users(args.users, m, password=m == "http", md5=m == "gnudip", tsig=m == "tsig")
    ]
    loads = [UserLoad(i, s["id"], s["id"].rstrip("0123456789")) for i, s in enumerate(specs, 1)]
    for spec, user in zip(specs, loads):
        spec["ipv4"] = user.acked
    store, _built = build_store(tmp, specs, "store", args.hash_cost)
    server = Server(procs, tmp, store, http=True, gnudip=True)
    server.start(deadline, f"{loads[-1].name}.{SUFFIX}", loads[-1].acked)
    trials = asyncio.run(run_trials(args, server, loads, store, deadline))
    server.stop()
    total = {k: sum(sum(t[k].values()) for t in trials) for k in ("acked", "inflight", "refused", "errors")}
    total.update({k: sum(sum(t["check"][k].values()) for t in trials) for k in ("applied", "lost", "wrong")})
    return {
        "figures": {"trials": len(trials), **total},
        "code": code,
        "limits": server.limits,
        "ratios": {"lost/acknowledged": total["lost"] / max(total["acked"], 1)},
        "problems": [f"trial {t['trial']}: {p}" for t in trials for p in t["check"]["problems"]],
        "trials": trials,
        "plot": {
            "title": "Crash trials: updates acknowledged before each SIGKILL, and lost",
            "ylabel": "updates",
            "groups": [f"trial {t['trial']}" for t in trials],
            "series": {
                "acknowledged": [sum(t["acked"].values()) for t in trials],
                "in flight at the kill": [sum(t["inflight"].values()) for t in trials],
                "lost or wrong": [sum(t["check"]["lost"].values()) + sum(t["check"]["wrong"].values()) for t in trials],
            },
        },
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=10, help="SIGKILL trials")
    p.add_argument("--users", type=int, default=20, help="users per method (at most 50)")
    p.add_argument(
        "--kill-after",
        type=float,
        nargs=2,
        default=(1.0, 3.0),
        metavar=("MIN", "MAX"),
        help="seconds after every user's first ack of the trial",
    )
    p.add_argument("--hash-cost", type=int, default=15, metavar="LOG2_N", help="scrypt cost")
    p.add_argument("--code", metavar="REV", help="run the server from this commit (git archive)")
    p.add_argument("--no-cli", action="store_true", help="skip the 'dyndns status --json' check")
    p.add_argument("--seed", type=int, default=random.randrange(1 << 30), help="of the kill times")
    return record.main("crash_trials", __doc__, p, run, {"trials": 3, "users": 10}, 600)


if __name__ == "__main__":
    raise SystemExit(main())
