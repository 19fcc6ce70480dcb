"""
TSIG-signed RFC 2136 UPDATE: durable updates/s, ours vs BIND 9 (bench/tsig_updates.py).

    python -m bench.tsig_updates             # the full run (~70 s)
    python -m bench.tsig_updates --short     # 1 round of 4 s per server
    python -m bench.tsig_updates --py-spy /tmp/t.txt   # profile ours in round 1

The same load, users and keys against two servers in alternating rounds:
ours (C{twistd -n dyndns}, SQLite store: an update is on disk before it is
answered) and the reference, BIND 9 C{named} as primary of the suffix from a
zone file with the same users, an update-policy of C{grant * self * A AAAA}
and the same N hmac-sha256 keys C{userN.<suffix>.}, logging at severity info.
One asyncio UDP client here keeps one update in flight per user (N in
flight, default 64): C{update delete} + C{update add} of the user's A record
(what nsupdate sends), signed with its key; the next one goes when the
answer arrives; a user's updates alternate between two addresses. An update
unanswered for C{--retry} s counts as a timeout and is sent again.
Signing with dnspython costs ~0.5 ms of CPU, so each message is re-signed
here with a few lines of hmac (checked byte for byte against dnspython at the
start), and every 20th answer's TSIG is verified with dnspython. Per slot:
NOERROR answers/s, latency, CPU. Afterwards both servers must serve every
user's last acknowledged address, BIND's serial must have grown once per
NOERROR, and ours gets SIGKILL and its SQLite file is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import struct
import time
from typing import Any

from bench.harness import record
from bench.harness.meter import CPUMeter, Tally, percentiles, wait_quiet
from bench.harness.procs import HOST, BenchError, Processes, Timeout, free_ports, log_problems, note
from bench.harness.server import Server, addresses_in, query, soa_serial
from bench.harness.tools import Named, profile_summary, py_spy, require, stop_after, tsig_keys, version, zone_file
from bench.harness.users import (
    SUFFIX,
    TTL,
    addresses_of,
    build_store,
    check_final,
    read_generation,
    tsig_secret_of,
    users,
)

FUDGE = 300


def _wire(name: Any) -> bytes:
    return bytes(name.to_wire())


class Signer:
    """One user's update messages, built and signed by dnspython once per address,
    re-signed per send with a new ID and Time Signed (RFC 8945 4.3.3)."""

    def __init__(self, i: int) -> None:
        import dns.name
        import dns.tsig

        self.keyname = dns.name.from_text(f"user{i}.{SUFFIX}.")
        secret = tsig_secret_of(f"user{i}")
        self.key = dns.tsig.Key(self.keyname, secret, dns.tsig.HMAC_SHA256)
        self.keyring = {self.keyname: self.key}
        self._hmac = hmac.new(base64.b64decode(secret), digestmod=hashlib.sha256)
        self._alg_wire = _wire(dns.tsig.HMAC_SHA256)
        self._vars_head = (
            _wire(self.keyname.canonicalize()) + struct.pack("!HI", 255, 0) + _wire(dns.tsig.HMAC_SHA256.canonicalize())
        )
        self.templates = {a: self._template(a) for a in addresses_of(i)[:2]}

    def build(self, address: str, msg_id: int, signed: bool = True) -> bytes:
        import dns.update

        message = dns.update.UpdateMessage(SUFFIX, id=msg_id)
        message.replace(self.keyname, TTL, "A", address)
        if signed:
            message.use_tsig(self.key, fudge=FUDGE)
        return bytes(message.to_wire())

    def _template(self, address: str) -> tuple[bytes, bytes]:
        """dnspython's unsigned message and its TSIG owner name; re-signing it here
        with dnspython's ID and time must give dnspython's bytes."""
        import dns.message

        signed, unsigned = self.build(address, 4711), self.build(address, 4711, signed=False)
        if signed[:10] != unsigned[:10] or signed[12 : len(unsigned)] != unsigned[12:]:
            raise BenchError("dnspython's signed message does not start with its unsigned one")
        tsigs = dns.message.from_wire(signed, keyring=self.keyring).tsig
        assert tsigs is not None
        tsig = tsigs[0]
        template = (unsigned, signed[len(unsigned) : len(signed) - 10 - len(tsig.to_wire())])
        if self._sign(template, 4711, tsig.time_signed)[0] != signed:
            raise BenchError(f"local TSIG signing differs from dnspython's for {address}")
        return template

    def _sign(self, template: tuple[bytes, bytes], msg_id: int, now: int) -> tuple[bytes, bytes]:
        body, owner = template
        head = struct.pack("!H", msg_id) + body[2:]
        time_fudge = struct.pack("!HIH", now >> 32, now & 0xFFFFFFFF, FUDGE)
        h = self._hmac.copy()
        h.update(head)
        h.update(self._vars_head + time_fudge + b"\x00\x00\x00\x00")
        mac = h.digest()
        rdata = self._alg_wire + time_fudge + struct.pack("!H", len(mac)) + mac + struct.pack("!HHH", msg_id, 0, 0)
        arcount = struct.unpack("!H", head[10:12])[0] + 1
        return (
            head[:10]
            + struct.pack("!H", arcount)
            + head[12:]
            + owner
            + struct.pack("!HHIH", 250, 255, 0, len(rdata))
            + rdata
        ), mac

    def sign(self, address: str, msg_id: int, use_dnspython: bool) -> tuple[bytes, bytes]:
        """(wire, request MAC) for one send."""
        if use_dnspython:
            wire = self.build(address, msg_id)
            return wire, wire[-6 - 32 : -6]
        return self._sign(self.templates[address], msg_id, int(time.time()))

    def verify(self, reply: bytes, request_mac: bytes) -> str | None:
        """None if dnspython accepts the reply's TSIG, else why not."""
        import dns.message

        try:
            message = dns.message.from_wire(reply, keyring=self.keyring, request_mac=request_mac)
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        return None if message.had_tsig else "unsigned"


class UserLoad:
    __slots__ = ("i", "signer", "addresses", "turn", "acked", "last")

    def __init__(self, i: int, signer: Signer) -> None:
        self.i, self.signer, self.addresses = i, signer, addresses_of(i)[:2]
        self.turn = self.acked = 0
        self.last: str | None = None  # a timed-out update goes again: the last ack is final


class UpdateClient(asyncio.DatagramProtocol):
    """One update in flight per user; replies matched by ID."""

    def __init__(self, label: str, loads: list[UserLoad], verify_every: int, dnspython: bool) -> None:
        self.label, self.users, self.verify_every, self.dnspython = label, loads, verify_every, dnspython
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[UserLoad, float, bytes, str]] = {}
        self.next_id, self.replies, self.running, self.slot = 1, 0, False, Tally("start")
        self.verified = self.late = 0
        self.drained = asyncio.Event()  # set when nothing is in flight any more after a stop

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def send(self, user: UserLoad) -> None:
        msg_id = self.next_id
        while msg_id in self.pending:
            msg_id = (msg_id + 1) & 0xFFFF
        self.next_id = (msg_id + 1) & 0xFFFF
        address = user.addresses[user.turn % 2]
        wire, mac = user.signer.sign(address, msg_id, self.dnspython)
        self.pending[msg_id] = (user, time.perf_counter(), mac, address)
        assert self.transport is not None
        self.transport.sendto(wire)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        entry = self.pending.pop(struct.unpack("!H", data[:2])[0], None) if len(data) >= 12 else None
        slot = self.slot
        if entry is None:
            self.late += 1
            return
        user, started, mac, address = entry
        slot.latencies.append(time.perf_counter() - started)
        self.replies += 1
        rcode = data[3] & 0x0F
        if self.verify_every and self.replies % self.verify_every == 0:
            self.verified += 1
            problem = user.signer.verify(data, mac)
            if problem is not None:
                slot.count("bad TSIG", f"user{user.i} {address}: answer's TSIG: {problem}")
        if rcode == 0 and data[2] & 0x80 and struct.unpack("!H", data[10:12])[0] >= 1:
            slot.ok += 1
            user.acked, user.last, user.turn = user.acked + 1, address, user.turn + 1
        else:
            text = f"rcode {rcode}" if rcode else "NOERROR but unsigned or not a response"
            slot.count(text, f"user{user.i} {address}: {text}")
        if self.running:
            self.send(user)
        elif not self.pending:
            self.drained.set()

    def error_received(self, exc: Exception) -> None:
        self.slot.count("socket error", f"socket error: {exc}")

    def check_timeouts(self, limit: float) -> None:
        now = time.perf_counter()
        for msg_id, (user, started, _mac, address) in list(self.pending.items()):
            if now - started > limit:
                del self.pending[msg_id]
                self.slot.count("timeout", f"user{user.i} {address}: no answer in {limit} s, sent again")
                if self.running:
                    self.send(user)
        if not self.running and not self.pending:
            self.drained.set()


async def measure(
    client: UpdateClient,
    name: str,
    seconds: float,
    settle: float,
    pid: int,
    retry: float,
    spy: Any = None,
    store: str | None = None,
) -> dict[str, Any]:
    """Send for C{settle + seconds}, count the last C{seconds}, then drain."""
    client.slot, client.running = Tally(f"{name} (settle)"), True
    for user in client.users:
        client.send(user)

    async def watchdog() -> None:
        while True:
            await asyncio.sleep(0.1)
            client.check_timeouts(retry)

    dog = asyncio.create_task(watchdog())
    try:
        await asyncio.sleep(settle)
        slot = client.slot = Tally(name)
        meter, generation = CPUMeter({"server": pid}), read_generation(store) if store else 0
        spy = spy() if spy else None
        await asyncio.sleep(seconds)
        slot.seconds = time.perf_counter() - slot.started
        client.slot = Tally(f"{name} (drain)")
        cpu = meter.read()
        commits = read_generation(store) - generation if store else None
        client.running = False
        if client.pending:
            client.drained.clear()
            try:
                await asyncio.wait_for(client.drained.wait(), retry + 1)
            except asyncio.TimeoutError:
                pass  # what is still pending is stuck
        stuck = len(client.pending)
        client.pending.clear()
    finally:
        dog.cancel()
        client.running = False
    result = slot.result()
    result.update(
        server=client.label,
        cpu=cpu,
        commits=commits,
        stuck=stuck,
        spy=spy,
        drain=client.slot.other,
        server_cpu_us_per_update=round(1e6 * cpu["server"]["cpu_s"] / max(slot.ok, 1), 1),
        _latencies=slot.latencies,
    )
    note(f"{name}: {result['ok_per_s']:.0f} updates/s, p99 {result['latency_ms']['p99']} ms")
    return result


async def run_load(
    args: argparse.Namespace, servers: dict[str, tuple[int, int]], procs: Processes, deadline: float, store: str
) -> dict[str, Any]:
    """C{servers}: label -> (port, pid)."""
    loop = asyncio.get_running_loop()
    signers = [Signer(i) for i in range(1, args.users + 1)]
    clients: dict[str, UpdateClient] = {}
    for label, (port, _pid) in servers.items():
        client = clients[label] = UpdateClient(
            label, [UserLoad(i, s) for i, s in enumerate(signers, 1)], args.verify_every, args.sign == "dnspython"
        )
        await loop.create_datagram_endpoint(lambda c=client: c, remote_addr=(HOST, port))  # type: ignore[misc]
    serial_before = soa_serial(servers["reference"][0]) if "reference" in servers else None
    for label in servers:
        await measure(clients[label], f"{label} warm-up", args.warmup, 0.2, servers[label][1], args.retry)
    slots = []
    for r in range(1, args.rounds + 1):
        for label in list(servers) if r % 2 else list(servers)[::-1]:
            if time.monotonic() + args.duration + args.retry + 10 > deadline:
                raise Timeout("not enough time left for another round")
            await loop.run_in_executor(
                None, wait_quiet, min(args.wait_quiet, deadline - time.monotonic() - args.duration - 20)
            )
            spy = (
                (lambda: py_spy(procs, servers["ours"][1], args.duration, args.py_spy))
                if args.py_spy and r == 1 and label == "ours"
                else None
            )
            slots.append(
                await measure(
                    clients[label],
                    f"round {r} {label}",
                    args.duration,
                    args.settle,
                    servers[label][1],
                    args.retry,
                    spy,
                    store if label == "ours" else None,
                )
            )
            stop_after(procs, slots[-1].pop("spy"), 15)
    for client in clients.values():
        assert client.transport is not None
        client.transport.close()
    return {
        "slots": slots,
        "serial_before": serial_before,
        "verified_tsig": sum(c.verified for c in clients.values()),
        "late": sum(c.late for c in clients.values()),
        "users": {label: c.users for label, c in clients.items()},
    }


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    servers: dict[str, tuple[int, int]] = {}
    store = os.path.join(tmp, "store.sqlite")
    last = f"user{args.users}.{SUFFIX}", addresses_of(args.users)[2]
    ours = None
    if args.servers in ("both", "ours"):
        build_store(tmp, store, users(args.users, tsig=True))
        ours = Server(procs, tmp, store, "ours", log_updates=args.log_updates)
        ours.start(deadline, *last)
        servers["ours"] = (ours.dns_port, ours.pid)
    if args.servers in ("both", "reference"):
        names = [f"user{i}" for i in range(1, args.users + 1)]
        os.makedirs(os.path.join(tmp, "bind"))  # named writes its journal beside the zone
        zone = zone_file(
            os.path.join(tmp, "bind", "zone.db"), [(n, addresses_of(i)[2]) for i, n in enumerate(names, 1)]
        )
        named = Named(
            procs,
            tmp,
            free_ports(1)[0],
            tsig_keys(names, tsig_secret_of)
            + f"""
zone "{SUFFIX}" {{ type primary; file "{zone}"; update-policy {{ grant * self * A AAAA; }}; }};
""",
            args.named_threads,
        )
        named.start(*last, deadline)
        assert named.proc is not None
        servers["reference"] = (named.port, named.proc.pid)
    load = asyncio.run(run_load(args, servers, procs, deadline, store))
    slots, problems = load["slots"], []
    for label, (port, _pid) in servers.items():
        for u in load["users"][label]:
            got = addresses_in(query(port, f"user{u.i}.{SUFFIX}", timeout=2))
            if got != {u.last}:
                problems.append(f"{label}: user{u.i} served {got}, last acknowledged {u.last}")
    if "reference" in servers:
        grew = soa_serial(servers["reference"][0]) - load["serial_before"]
        acked = sum(u.acked for u in load["users"]["reference"])
        if grew != acked:
            problems.append(f"BIND's serial grew by {grew} for {acked} NOERROR answers")
    check = None
    if ours is not None:
        ours.kill()
        check = check_final(
            store, {f"user{u.i}": (set(u.addresses), u.last) for u in load["users"]["ours"]}, "dns-update"
        )
        problems += check["problems"] + log_problems(ours.log)
    problems += [
        f"{s['name']}: {s['other']}, drain {s['drain']}, stuck {s['stuck']} e.g. {s['samples'][:2]}"
        for s in slots
        if s["other"] or s["drain"] or s["stuck"]
    ]
    totals = {}
    for label in servers:
        mine = [s for s in slots if s["server"] == label]
        ok, seconds = sum(s["ok"] for s in mine), sum(s["seconds"] for s in mine)
        totals[label] = {
            "updates_per_s": round(ok / seconds),
            "latency_ms": percentiles([x for s in mine for x in s["_latencies"]]),
            "server_cpu_us_per_update": min(s["server_cpu_us_per_update"] for s in mine),
        }
    for s in slots:
        s.pop("_latencies")
    rounds = sorted({s["name"].split()[1] for s in slots}, key=int)
    per_round = {label: [s["ok_per_s"] for s in slots if s["server"] == label] for label in servers}
    ratios = {}
    if len(servers) == 2 and totals["reference"]["updates_per_s"]:
        ratios["ours/BIND durable updates/s"] = round(
            totals["ours"]["updates_per_s"] / totals["reference"]["updates_per_s"], 3
        )
    return {
        "figures": {
            **{f"{k}_{m}": v[m] for k, v in totals.items() for m in v},
            "disturbed_slots": sum(s["cpu"]["disturbed"] for s in slots),
        },
        "ratios": ratios,
        "problems": problems,
        "slots": slots,
        "check": check,
        "verified_tsig": load["verified_tsig"],
        "late_answers": load["late"],
        "profile": profile_summary(args.py_spy) if args.py_spy else None,
        "plot": {
            "title": "TSIG-signed UPDATE: durable updates per second",
            "ylabel": "updates/s",
            "groups": [f"round {r}" for r in rounds],
            "series": {("BIND 9" if k == "reference" else k): v for k, v in per_round.items()},
        },
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--users", type=int, default=64, help="users/keys = updates in flight")
    p.add_argument("-d", "--duration", type=float, default=8, help="seconds per server per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per server")
    p.add_argument("--settle", type=float, default=0.5, help="seconds not counted per slot")
    p.add_argument("--retry", type=float, default=2.0, help="seconds before a resend")
    p.add_argument("--verify-every", type=int, default=20, help="verify every Nth answer's TSIG")
    p.add_argument("--sign", choices=("local", "dnspython"), default="local")
    p.add_argument("--servers", choices=("both", "ours", "reference"), default="both")
    p.add_argument("--log-updates", action="store_true", help="our service.log_updates = true")
    p.add_argument("--named-threads", type=int, default=os.cpu_count() or 2, help="named -n")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="before each slot wait up to S seconds for an idle machine",
    )
    p.add_argument("--py-spy", metavar="FILE", help="profile ours in round 1 into FILE")
    require("named")
    return record.main(
        "tsig_updates",
        __doc__,
        p,
        run,
        {"rounds": 1, "duration": 4},
        200,
        lambda: {"named": version(["named", "-v"], r"(BIND \S+)")},
    )


if __name__ == "__main__":
    raise SystemExit(main())
