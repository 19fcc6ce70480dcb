"""
Zone transfers: update-to-secondary latency and IXFR vs AXFR bytes (bench/secondary_latency.py).

    python -m bench.secondary_latency [--short]   # ~3 min (--short: 20,000 users, 50 updates of each kind)
    python -m bench.secondary_latency --serial-query-rate 1000   # BIND not rate limited

Ours, C{twistd -n dyndns} with N users (default 100,000), each with a TSIG
key and an initial address, transfers allowed to 127.0.0.1 (journal 1000
steps) and NOTIFY to a real BIND 9 secondary on another port (C{notify no},
refresh 3600 s: only our NOTIFY makes it ask), which first takes the whole
zone by AXFR. B{Latency}: C{--updates} signed UPDATEs, one at a time, round
robin over the last C{--hosts} users, each to an address never used before;
for each, the time from the send to our answer and to the first answer of
the secondary (polled every 5 ms) with the new address, and from BIND's log
when its NOTIFY arrived and its transfer ended. Then the same for ACME
challenge values: C{--updates} TXT updates, what lego sends to present a
DNS-01 challenge (C{update delete _acme-challenge.userN.<suffix> TXT} +
C{update add} of a 43-character value never used before), each timed until
the secondary serves that value. BIND delays the SOA query a NOTIFY
triggers by its C{serial-query-rate} limiter (default 20/s).
B{Bytes}: an AXFR from ours; C{--changes} updates of users 1..100, each its
own serial (its own journal step: the worst case for IXFR); an IXFR from
the first serial and an AXFR at the new one, each timed C{--xfr-rounds}
times and checked with dnspython (every user in the AXFR; the IXFR deletes
the old and adds the new addresses); the same from the BIND secondary as the
reference.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import struct
import time
from datetime import datetime
from typing import Any, Callable

import dns.message
import dns.rdatatype
import dns.rrset

from bench.harness import record
from bench.harness.meter import CPUMeter, percentiles
from bench.harness.procs import HOST, BenchError, Processes, free_ports, log_problems, note, wait_for
from bench.harness.server import Server, dns_ready, query, soa_serial
from bench.harness.tools import Named, require
from bench.harness.tsig import Signer, challenge_signer
from bench.harness.users import SUFFIX, addresses_of, build_store, challenge_of, initial_answer, token_of, users

_STAMP = r"(\d\d-\w{3}-\d{4} \d\d:\d\d:\d\d\.\d{3})"  # BIND's log time (local), to the ms


def bind_events(log: str) -> dict[str, Any]:
    """Per serial: NOTIFY received, transfer done; and every completed transfer."""
    with open(log, errors="replace") as f:
        text = f.read()
    events: dict[str, Any] = {"notified": {}, "transferred": {}}
    notify, transferred = r"notify from 127\.0\.0\.1#\d+: serial", f"zone {re.escape(SUFFIX)}/IN: transferred serial"
    for key, pattern in (("notified", notify), ("transferred", transferred)):
        for m in re.finditer(_STAMP + r" .*" + pattern + r" (\d+)", text):
            events[key].setdefault(int(m.group(2)), datetime.strptime(m.group(1), "%d-%b-%Y %H:%M:%S.%f").timestamp())
    done = r"Transfer completed: (\d+) messages, (\d+) records, (\d+) bytes, ([\d.]+) secs"
    keys = ("messages", "records", "bytes", "secs")
    events["completed"] = [
        {k: float(v) if k == "secs" else int(v) for k, v in zip(keys, m)} for m in re.findall(done, text)
    ]
    return events


def updater(port: int, txt: bool = False) -> Callable[[int, str], tuple[int, float, float]]:
    """
    Signed UPDATEs to our server, one at a time: C{update(i, value)} ->
    (rcode, wall clock, perf_counter); the value is user C{i}'s address, or
    with C{txt} its ACME challenge value.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((HOST, port))
    sock.settimeout(2.0)
    return lambda i, value: (challenge_signer(i, [value]) if txt else Signer(i)).send(sock, value)


def latency_part(
    args: argparse.Namespace, ours: int, secondary: int, bind_log: str, deadline: float, txt: bool = False
) -> dict[str, Any]:
    """Updates to values never used before (C{txt}: challenge values), each timed until the secondary serves it."""
    update, polls = updater(ours, txt), 0
    rows: list[dict[str, Any]] = []
    for k in range(args.updates):
        if time.monotonic() > deadline:
            raise BenchError("--timeout reached during the latency part")
        i = args.users - k % args.hosts  # the last --hosts users
        value = token_of(f"latency-{k}") if txt else f"10.77.{k >> 8 & 255}.{k & 255}"
        owner, rdtype = (challenge_of(i), "TXT") if txt else (f"user{i}.{SUFFIX}", "A")
        rcode, wall, t0 = update(i, value)
        row: dict[str, Any] = {"rcode": rcode, "ack_s": time.perf_counter() - t0, "visible_s": None, "wall": wall}
        while rcode == 0:
            now, polls = time.perf_counter(), polls + 1
            if dns_ready(secondary, owner, value, rdtype):
                row["visible_s"] = now - t0
            if row["visible_s"] is not None or now > t0 + args.limit:
                break
            time.sleep(args.poll)
        row["serial"] = soa_serial(secondary)
        rows.append(row)
        time.sleep(args.pace)
    events = bind_events(bind_log)
    lag = {
        k: [events[k][r["serial"]] - r["wall"] for r in rows if r["serial"] in events[k]]
        for k in ("notified", "transferred")
    }
    seen = [r["visible_s"] for r in rows if r["visible_s"] is not None]
    return {
        "updates": len(rows),
        "not_noerror": sum(r["rcode"] != 0 for r in rows),
        "not_visible": len(rows) - len(seen),
        "ack_ms": percentiles([r["ack_s"] for r in rows]),
        "visible_ms": percentiles(seen),
        "notify_ms": percentiles(lag["notified"]),
        "transferred_ms": percentiles(lag["transferred"]),
        "visible_under_100ms": sum(v < 0.1 for v in seen),
        "polls": polls,
        "visible_s": [round(v, 4) for v in seen],
    }


def change_users(args: argparse.Namespace, ours: int) -> int:
    """Users 1..C{--changes} get their first address, each in its own serial; the last serial."""
    update = updater(ours)
    for i in range(1, args.changes + 1):
        serial = soa_serial(ours)
        rcode, _wall, _t0 = update(i, addresses_of(i)[0])
        if rcode != 0:
            raise BenchError(f"update of user{i} answered rcode {rcode}")
        wait_for(lambda: soa_serial(ours) != serial, time.monotonic() + 5, f"user{i}'s serial")  # noqa: B023 (called at once)
    return soa_serial(ours)


def transfer(port: int, kind: str, serial: int = 0) -> dict[str, Any]:
    """
    One AXFR, or IXFR from C{serial}, over TCP until the closing SOA, found
    without parsing (a 100k-record zone would cost the client ~0.2 s): the
    current SOA's 20 numbers (asked over UDP first) stand twice in a full
    transfer, once in an up-to-date IXFR, three times in an incremental one,
    which also holds the numbers of the SOA at C{serial}.
    """
    soa = query(port, SUFFIX, "SOA", timeout=2).answer[0][0]
    numbers = struct.pack("!5I", soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum)
    q = dns.message.make_query(SUFFIX, kind)
    q.flags = 0
    if kind == "IXFR":  # only the serial counts (RFC 1995 3)
        q.authority.append(dns.rrset.from_text(f"{SUFFIX}.", 0, "IN", "SOA", f". . {serial} 0 0 0 0"))
    wire = q.to_wire()
    messages: list[bytes] = []
    seen, incremental = 0, False
    with socket.create_connection((HOST, port), timeout=120) as sock, sock.makefile("rb") as reader:
        started = time.perf_counter()
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        while seen < (1 if soa.serial == serial else 3 if incremental else 2):
            head = reader.read(2)
            message = reader.read(struct.unpack("!H", head)[0]) if len(head) == 2 else b""
            if not message or message[3] & 0xF:
                raise BenchError(f"{kind} from port {port}: cut or rcode {message[3:4]!r}")
            messages.append(message)
            seen += message.count(numbers)
            incremental = incremental or kind == "IXFR" and struct.pack("!I", serial) + numbers[4:] in message
        elapsed = time.perf_counter() - started
    return {
        "messages": len(messages),
        "bytes": sum(len(m) for m in messages),
        "seconds": elapsed,
        "incremental": incremental,
        "_wire": messages,
    }


def records_of(messages: list[bytes]) -> list[tuple[str, str, str]]:
    return [
        (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rd.to_text())
        for wire in messages
        for rrset in dns.message.from_wire(wire, one_rr_per_rrset=True).answer
        for rd in rrset
    ]


def check_axfr(result: dict[str, Any], count: int, changed: int) -> list[str]:
    records = records_of(result["_wire"])
    problems = []
    if [r[1] for r in records].count("SOA") != 2 or records[0][1] != "SOA" or records[-1][1] != "SOA":
        problems.append("AXFR: not exactly two SOA records at both ends")
    a = {r[0]: r[2] for r in records if r[1] == "A" and r[0].startswith("user")}
    if len(a) != count:
        problems.append(f"AXFR: {len(a)} user A records, expected {count}")
    for i in sorted({1, max(1, changed), changed + 1, count // 2, count}):
        got = a.get(f"user{i}.{SUFFIX}.")
        if got is None or (i <= changed and got != addresses_of(i)[0]):
            problems.append(f"AXFR: user{i} {got}")
    result["records"] = len(records)
    return problems


def check_ixfr(result: dict[str, Any], changed: int) -> list[str]:
    """Opening SOA, per step (one per change): old SOA, deletions, new SOA, additions; the closing SOA."""
    records = records_of(result["_wire"])
    result["records"] = len(records)
    if not result["incremental"]:
        return [f"IXFR came as a full zone ({len(records)} records)"]
    if records[0][1] != "SOA" or records[-1][1] != "SOA":
        return ["IXFR: not an SOA at both ends"]
    deleted: dict[str, str] = {}
    added: dict[str, str] = {}
    section, pairs = None, 0
    for owner, rtype, rdata in records[1:-1]:
        if rtype == "SOA":
            section = added if section is deleted else deleted
            pairs += section is deleted
        elif section is None:
            return ["IXFR: a record before the first step's SOA"]
        else:
            section[owner] = rdata
    problems = [] if pairs == changed else [f"IXFR: {pairs} steps, expected {changed}"]
    owners = {i: f"user{i}.{SUFFIX}." for i in range(1, changed + 1)}
    wrong = [i for i, o in owners.items() if (deleted.get(o), added.get(o)) != (addresses_of(i)[2], addresses_of(i)[0])]
    if wrong or len(deleted) != changed or len(added) != changed:
        problems.append(f"IXFR: {len(deleted)} deletions, {len(added)} additions, wrong {wrong[:3]}")
    return problems


def transfer_part(args: argparse.Namespace, ours: int, secondary: int, deadline: float) -> dict[str, Any]:
    s0 = soa_serial(ours)
    runs: dict[str, list[dict[str, Any]]] = {"axfr_before": [transfer(ours, "AXFR") for _ in range(args.xfr_rounds)]}
    serial = change_users(args, ours)  # BIND follows by IXFR first:
    wait_for(lambda: soa_serial(secondary) == serial, min(deadline, time.monotonic() + 30), f"BIND at serial {serial}")
    for label, port in (("ixfr", ours), ("axfr_after", ours), ("bind_ixfr", secondary), ("bind_axfr", secondary)):
        runs[label] = [transfer(port, "IXFR" if "ixfr" in label else "AXFR", s0) for _ in range(args.xfr_rounds)]
    problems = check_axfr(runs["axfr_before"][0], args.users, 0)
    for prefix, ixfr, axfr in (("", "ixfr", "axfr_after"), ("BIND ", "bind_ixfr", "bind_axfr")):
        found = check_ixfr(runs[ixfr][0], args.changes) + check_axfr(runs[axfr][0], args.users, args.changes)
        problems += [prefix + p for p in found]
    out: dict[str, Any] = {"problems": problems, "steps": args.changes}
    for label, rs in runs.items():
        if any(r["bytes"] != rs[0]["bytes"] for r in rs):
            problems.append(f"{label}: byte counts differ between rounds")
        out[label] = {k: rs[0].get(k) for k in ("messages", "bytes", "records")}
        out[label]["best_s"] = round(min(r["seconds"] for r in rs), 4)
    return out


def run(args: argparse.Namespace, procs: Processes, tmp: str, deadline: float) -> dict[str, Any]:
    store, built = build_store(tmp, users(args.users, tsig=True))
    (bind_port,) = free_ports(1)
    xfr = {"allow": ["127.0.0.1"], "journal": 1000}
    notify = {"targets": [f"{HOST}:{bind_port}"], "retry": 2.0, "retries": 5}
    ours = Server(procs, tmp, store, "ours", tables={"dns.transfer": xfr, "dns.notify": notify})
    ours.start(deadline, *initial_answer(args.users))
    rate = f"\n    serial-query-rate {args.serial_query_rate};" if args.serial_query_rate else ""
    primaries = f"primaries {{ 127.0.0.1 port {ours.dns_port}; }}; allow-notify {{ 127.0.0.1; }}"
    zone = f'zone "{SUFFIX}" {{ type secondary; {primaries}; file "{SUFFIX}.secondary.db"; }};\n'
    named = Named(procs, tmp, bind_port, zone, args.named_threads, initial_answer(args.users), deadline, rate, debug=1)
    wait_for(lambda: soa_serial(bind_port) == soa_serial(ours.dns_port), deadline, "BIND's first transfer")
    initial = bind_events(named.log)["completed"][:1]
    note(f"BIND secondary caught up: {initial}")
    pids = {"ours": ours.pid, "bind": named.pid}
    latencies: dict[str, dict[str, Any]] = {}
    for kind in ("address", "txt"):
        meter = CPUMeter(pids)
        latencies[kind] = latency_part(args, ours.dns_port, bind_port, named.log, deadline, kind == "txt")
        latencies[kind]["cpu"] = meter.read()
    latency, txt = latencies["address"], latencies["txt"]
    meter = CPUMeter(pids)
    transfers = transfer_part(args, ours.dns_port, bind_port, deadline)
    transfers["cpu"] = meter.read()
    ours.stop()
    problems = transfers.pop("problems") + log_problems(ours.log)
    problems += [
        f"latency: {part[k]} {kind} updates {k.replace('_', ' ')}"
        for kind, part in latencies.items()
        for k in ("not_noerror", "not_visible")
        if part[k]
    ]
    ratio = transfers["ixfr"]["bytes"] / transfers["axfr_after"]["bytes"]
    visible = {kind: part.pop("visible_s") for kind, part in latencies.items()}
    return {
        "figures": {
            "visible_on_secondary_ms": latency["visible_ms"],
            "update_ack_ms": latency["ack_ms"],
            "visible_under_100ms": f"{latency['visible_under_100ms']}/{latency['updates']}",
            "txt_visible_on_secondary_ms": txt["visible_ms"],
            "txt_update_ack_ms": txt["ack_ms"],
            "txt_visible_under_100ms": f"{txt['visible_under_100ms']}/{txt['updates']}",
            "axfr_bytes": transfers["axfr_after"]["bytes"],
            "axfr_s": transfers["axfr_after"]["best_s"],
            "bind_axfr_s": transfers["bind_axfr"]["best_s"],
            "ixfr_bytes": transfers["ixfr"]["bytes"],
        },
        "ratios": {
            "IXFR/AXFR bytes (ours)": round(ratio, 5),
            "ours/BIND AXFR time": round(transfers["axfr_after"]["best_s"] / transfers["bind_axfr"]["best_s"], 3),
        },
        "problems": problems,
        "store": built,
        "bind_initial_transfer": initial,
        "latency": latency,
        "txt_latency": txt,
        "transfers": transfers,
        "plot": {
            "title": "Update to BIND secondary: time until visible",
            "ylabel": "ms",
            "groups": [f"#{k}" for k in range(1, max(map(len, visible.values())) + 1)],
            "series": {f"{kind}: ours -> BIND": [1000 * v for v in vs] for kind, vs in visible.items()},
            "kind": "line",
        },
    }


OPTIONS: record.Options = {
    "--users": (100_000, "users in the zone"),
    "--updates": (200, "updates timed until visible, of each kind (address, TXT)"),
    "--hosts": (10, "users the timed updates go round"),
    "--poll": (0.005, "seconds between polls of BIND"),
    "--limit": (10.0, "seconds until visible at most"),
    "--pace": (0.05, "seconds between updates"),
    "--changes": (100, "changes between AXFR and IXFR"),
    "--xfr-rounds": (3, "times each transfer is timed"),
    "--named-threads": (os.cpu_count() or 2, "named -n"),
    "--serial-query-rate": (0, "BIND's (0: its default, 20)", "N"),
}

if __name__ == "__main__":
    short = {"users": 20_000, "updates": 50, "xfr_rounds": 2}
    raise SystemExit(record.main("secondary_latency", __doc__, OPTIONS, run, short, 500, require("named")))
