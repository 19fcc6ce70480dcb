"""
Host-zone RFC 2136 UPDATE, unsigned and TSIG-signed: durable updates/s, ours vs BIND 9 (bench/zone_updates.py).

    python -m bench.zone_updates [--short]   # ~2 min (--short: 1 round of 4 s per server and mode)

The same host zone C{example.org} from the same zone file (SOA, NS and N
hosts C{h1..hN} with an A record each) on two servers in alternating rounds:
ours (C{twistd -n dyndns}, no users, the zone in C{[[dns.zones]]} with
C{allow_update = ["127.0.0.2/32"]} and one hmac-sha256 key in
C{update_keys}; an update is one SQLite transaction of its RRsets, the new
serial and the IXFR journal step before it is answered) and the reference,
BIND 9 C{named} as primary of the zone with the same key and an
C{allow-update} of 127.0.0.2 and C{key zone-key}, logging at severity info.
Two modes, each against both servers: B{unsigned} (the client's socket bound
to 127.0.0.2) and B{signed} (from 127.0.0.1, with the zone key). One UDP
client per server and mode (bench/harness/tsig.py) keeps one update in
flight per host (N in flight, default 64): C{update delete hN.example.org A}
+ C{update add hN.example.org 30 A addr}, a host's addresses alternating
across both modes, the next update when the answer arrives; one unanswered
for C{--retry} s counts as a timeout and is sent again. Every 20th signed
answer's TSIG is verified with dnspython. Afterwards both servers must serve
every host's last acknowledged address, with the zone's serial grown once
per NOERROR for BIND and at least once, at most once per NOERROR for ours
(updates that arrive while a write is under way share the next write and
its serial); ours then gets SIGKILL and must serve the same, with the same
serial, after a restart.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
from typing import Any

from bench.harness import record
from bench.harness.load import User, measure, rounds, slot_problems, summary
from bench.harness.procs import Processes, free_ports, log_problems
from bench.harness.server import Server, addresses_in, query, soa_serial
from bench.harness.tools import Named, require, zone_file
from bench.harness.tsig import Signer, UpdateClient
from bench.harness.users import addresses_of, build_store, tsig_secret_of

ZONE, KEY, SOURCE = "example.org", "zone-key", "127.0.0.2"
MODES, SERVERS = ("unsigned", "signed"), ("ours", "reference")


def served(port: int, hosts: list[User]) -> list[str]:
    """Hosts not served at their last acknowledged address."""
    return [
        f"h{u.i} served {got}, last acknowledged {u.last}"
        for u in hosts
        if (got := addresses_in(query(port, f"h{u.i}.{ZONE}", timeout=2))) != {u.last}
    ]


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    first = (f"h1.{ZONE}", addresses_of(1)[2])
    zone = zone_file(os.path.join(tmp, f"{ZONE}.zone"), args.hosts, ZONE, "h")
    key = {"name": KEY, "algorithm": "hmac-sha256", "secret": tsig_secret_of(KEY)}
    host_zone = {"origin": ZONE, "file": zone, "allow_update": [f"{SOURCE}/32"], "update_keys": [key]}
    store, _built = build_store(tmp, [])
    ours = Server(procs, tmp, store, "ours", tables={"dns": {"zones": [host_zone]}})
    ours.start(deadline, *first)
    os.makedirs(os.path.join(tmp, "bind"))  # named writes its journal beside its copy
    bind_zone = shutil.copy(zone, os.path.join(tmp, "bind", f"{ZONE}.zone"))
    body = f'key "{KEY}" {{ algorithm hmac-sha256; secret "{key["secret"]}"; }};\n'
    body += f'zone "{ZONE}" {{ type primary; file "{bind_zone}"; allow-update {{ {SOURCE}; key {KEY}; }}; }};\n'
    named = Named(procs, tmp, free_ports(1)[0], body, args.named_threads, first, deadline)
    servers = {"ours": (ours.dns_port, ours.pid, store), "reference": (named.port, named.pid, None)}
    signers = [Signer(i, f"h{i}.{ZONE}", ZONE, (KEY, key["secret"])) for i in range(1, args.hosts + 1)]
    clients: dict[str, UpdateClient] = {}
    for server, (port, _pid, _store) in servers.items():
        unsigned = UpdateClient(f"unsigned {server}", port, signers, args, signed=False, source=SOURCE)
        signed = UpdateClient(f"signed {server}", port, signers, args)
        signed.users = signed.slots = unsigned.users  # a host's turn (its next address) across both modes
        clients.update({unsigned.label: unsigned, signed.label: signed})
    serials = {server: soa_serial(port, ZONE) for server, (port, _pid, _s) in servers.items()}
    for label, client in clients.items():
        measure(client, f"{label} warm-up", args.warmup, 0.2, servers[label.split()[1]][1])
    slots = []
    labels = [f"{mode} {server}" for mode in MODES for server in SERVERS]
    for r, label in rounds(args, labels, deadline, args.duration + args.retry):
        _port, pid, sqlite = servers[label.split()[1]]
        slots.append(
            {"round": r, **measure(clients[label], f"round {r} {label}", args.duration, args.settle, pid, sqlite)}
        )
    problems, grown = [], {}
    for server, (port, _pid, _s) in servers.items():
        hosts = clients[f"signed {server}"].users
        grew, acked = grown[server] = soa_serial(port, ZONE) - serials[server], sum(u.acked for u in hosts)
        problems += [f"{server}: {p}" for p in served(port, hosts)]
        # BIND: a serial per update; ours: one per write, which several updates may share.
        fits = grew == acked if server == "reference" else 0 < grew <= acked
        problems += [] if fits else [f"{server}: serial grew by {grew} for {acked} NOERROR answers"]
    serial = soa_serial(ours.dns_port, ZONE)
    ours.kill()
    ours.start(deadline, f"h1.{ZONE}")
    problems += [f"ours after SIGKILL: {p}" for p in served(ours.dns_port, clients["signed ours"].users)]
    if (restarted := soa_serial(ours.dns_port, ZONE)) != serial:
        problems.append(f"ours after SIGKILL: serial {restarted}, {serial} before")
    problems += [p for log in sorted(glob.glob(ours.log + "*")) for p in log_problems(log)]  # it rotates
    totals = {label: summary([s for s in slots if s["server"] == label]) for label in labels}
    problems += slot_problems(slots)
    rates = {(s["round"], s["server"]): s["ok_per_s"] for s in slots}
    ratios = {
        m: totals[f"{m} ours"]["updates_per_s"] / max(totals[f"{m} reference"]["updates_per_s"], 1) for m in MODES
    }
    return {
        "figures": {
            **{f"{k.replace(' ', '_')}_{m}": v[m] for k, v in totals.items() for m in v if m != "disturbed"},
            "disturbed_slots": sum(t["disturbed"] for t in totals.values()),
        },
        "ratios": {f"ours/BIND {m} updates/s": round(ratio, 3) for m, ratio in ratios.items()},
        "problems": problems,
        "slots": slots,
        "serial_grew_and_noerror": grown,
        "verified_tsig": sum(c.verified for c in clients.values()),
        "late_answers": sum(c.late for c in clients.values()),
        "plot": {
            "title": "Host-zone UPDATE: durable updates per second",
            "ylabel": "updates/s",
            "groups": [f"round {r} {m}" for r in range(1, args.rounds + 1) for m in MODES],
            "series": {
                name: [rates[r, f"{m} {server}"] for r in range(1, args.rounds + 1) for m in MODES]
                for name, server in (("ours", "ours"), ("BIND 9", "reference"))
            },
        },
    }


OPTIONS: record.Options = {
    "--hosts": (64, "hosts = updates in flight"),
    "-d --duration": (8.0, "seconds per server and mode per round"),
    "--rounds": (3, "rounds"),
    "--warmup": (2.0, "seconds of warm-up per server and mode"),
    "--settle": (0.5, "seconds not counted per slot"),
    "--retry": (2.0, "seconds before a resend"),
    "--verify-every": (20, "verify every Nth signed answer's TSIG"),
    "--named-threads": (os.cpu_count() or 2, "named -n"),
    "--wait-quiet": (0.0, "before each slot wait up to S seconds for an idle machine", "S"),
}

if __name__ == "__main__":
    short = {"rounds": 1, "duration": 4}
    raise SystemExit(record.main("zone_updates", __doc__, OPTIONS, run, short, 300, require("named")))
