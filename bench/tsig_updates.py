"""
TSIG-signed RFC 2136 UPDATE: durable updates/s, ours vs BIND 9 (bench/tsig_updates.py).

    python -m bench.tsig_updates [--short] [--py-spy FILE]   # ~70 s (--short: 1 round of 4 s per server)

The same load, users and keys against two servers in alternating rounds:
ours (C{twistd -n dyndns}, SQLite store: an update is on disk before it is
answered) and the reference, BIND 9 C{named} as primary of the suffix from a
zone file with the same users, an update-policy of C{grant * self * A AAAA}
and the same N hmac-sha256 keys C{userN.<suffix>.}, logging at severity info.
One UDP client (bench/harness/tsig.py) keeps one update in flight per user
(N in flight, default 64): C{update delete} + C{update add} of the user's A
record (what nsupdate sends), signed with its key (bench/harness/tsig.py);
the next one goes when the answer arrives; a user's updates alternate
between two addresses. An update unanswered for C{--retry} s counts as a
timeout and is sent again. Every 20th answer's TSIG is verified with
dnspython. Per slot: NOERROR answers/s, latency, CPU. Afterwards both
servers must serve every user's last acknowledged address, BIND's serial
must have grown once per NOERROR, and ours gets SIGKILL and its SQLite file
is checked. (bench/txt_updates.py runs the same with ACME challenge TXT
updates.)
"""

from __future__ import annotations

import argparse
import functools
import os
from typing import Any

from bench.harness import record
from bench.harness.load import measure, rounds, slot_problems, summary
from bench.harness.procs import Processes, free_ports, log_problems
from bench.harness.server import Server, query, soa_serial, values_in
from bench.harness.tools import Named, profile_summary, require, zone_file
from bench.harness.tsig import Signer, UpdateClient, challenge_signer, tsig_keys
from bench.harness.users import SUFFIX, build_store, check_final, initial_answer, users


def served(port: int, signer: Signer) -> set[str]:
    """What the server on C{port} serves at the signer's owner name, of its type."""
    return values_in(query(port, signer.owner.to_text(), signer.rdtype, timeout=2), signer.rdtype)


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float, txt: bool = False) -> dict[str, Any]:
    """The benchmark; C{txt}: each update sets the user's ACME challenge value instead of its address."""
    store, _built = build_store(tmp, users(args.users, tsig=True))
    ours = Server(procs, tmp, store, "ours")
    ours.start(deadline, *initial_answer(args.users))
    os.makedirs(os.path.join(tmp, "bind"))  # named writes its journal beside the zone
    zone = zone_file(os.path.join(tmp, "bind", "zone.db"), args.users)
    rules = "grant * self * A AAAA;" + (" grant * selfsub * TXT;" if txt else "")
    policy = f'zone "{SUFFIX}" {{ type primary; file "{zone}"; update-policy {{ {rules} }}; }};\n'
    keys = tsig_keys([f"user{i}" for i in range(1, args.users + 1)])
    named = Named(procs, tmp, free_ports(1)[0], keys + policy, args.named_threads, initial_answer(args.users), deadline)
    servers = {"ours": (ours.dns_port, ours.pid, store), "reference": (named.port, named.pid, None)}
    signers = [challenge_signer(i) if txt else Signer(i) for i in range(1, args.users + 1)]
    clients = {label: UpdateClient(label, port, signers, args) for label, (port, _pid, _s) in servers.items()}
    serial_before = soa_serial(named.port)
    for label, client in clients.items():
        measure(client, f"{label} warm-up", args.warmup, 0.2, servers[label][1])
    slots = []
    for r, label in rounds(args, list(servers), deadline, args.duration + args.retry):
        spy = (procs, args.py_spy) if args.py_spy and r == 1 and label == "ours" else None
        _port, pid, sqlite = servers[label]
        slots.append(measure(clients[label], f"round {r} {label}", args.duration, args.settle, pid, sqlite, spy))
    problems = [
        f"{label}: {u.secret.owner} {u.secret.rdtype} served {got}, last acknowledged {u.last}"
        for label, (port, _pid, _s) in servers.items()
        for u in clients[label].users
        if (got := served(port, u.secret)) != {u.last}
    ]
    grew = soa_serial(named.port) - serial_before
    acked = sum(u.acked for u in clients["reference"].users)
    if grew != acked:
        problems.append(f"BIND's serial grew by {grew} for {acked} NOERROR answers")
    ours.kill()
    expected = {u.name: u.expected() for u in clients["ours"].users}
    check = check_final(store, expected, None if txt else "dns-update", txt)  # an import sets no method
    problems += check["problems"] + log_problems(ours.log)
    totals = {label: summary([s for s in slots if s["server"] == label]) for label in servers}
    problems += slot_problems(slots)
    per_round = {label: [s["ok_per_s"] for s in slots if s["server"] == label] for label in servers}
    ratio = totals["ours"]["updates_per_s"] / max(totals["reference"]["updates_per_s"], 1)
    return {
        "figures": {
            **{f"{k}_{m}": v[m] for k, v in totals.items() for m in v if m != "disturbed"},
            "disturbed_slots": sum(t["disturbed"] for t in totals.values()),
        },
        "ratios": {"ours/BIND durable updates/s": round(ratio, 3)},
        "problems": problems,
        "slots": slots,
        "check": check,
        "verified_tsig": sum(c.verified for c in clients.values()),
        "late_answers": sum(c.late for c in clients.values()),
        "profile": profile_summary(args.py_spy) if args.py_spy else None,
        "plot": {
            "title": f"TSIG-signed UPDATE{' of ACME challenge TXT' if txt else ''}: durable updates per second",
            "ylabel": "updates/s",
            "groups": [f"round {r}" for r in range(1, args.rounds + 1)],
            "series": {("BIND 9" if k == "reference" else k): v for k, v in per_round.items()},
        },
    }


OPTIONS: record.Options = {
    "--users": (64, "users/keys = updates in flight"),
    "-d --duration": (8.0, "seconds per server per round"),
    "--rounds": (3, "rounds"),
    "--warmup": (2.0, "seconds of warm-up per server"),
    "--settle": (0.5, "seconds not counted per slot"),
    "--retry": (2.0, "seconds before a resend"),
    "--verify-every": (20, "verify every Nth answer's TSIG"),
    "--named-threads": (os.cpu_count() or 2, "named -n"),
    "--wait-quiet": (0.0, "before each slot wait up to S seconds for an idle machine", "S"),
    "--py-spy": (None, "profile ours in round 1 into FILE", "FILE"),
}

SHORT = {"rounds": 1, "duration": 4}


def main(name: str, doc: str | None, txt: bool = False) -> int:
    """The script C{bench.<name>}: L{run} (ACME challenge updates if C{txt}), recorded in bench/results/<name>.json."""
    return record.main(name, doc or "", OPTIONS, functools.partial(run, txt=txt), SHORT, 200, require("named"))


if __name__ == "__main__":
    raise SystemExit(main("tsig_updates", __doc__))
