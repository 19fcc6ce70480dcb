#!/usr/bin/env python
"""
Zone transfer benchmark: how fast a real BIND 9 secondary follows an update,
and IXFR vs AXFR on the wire (not a test).

One run:

 1. builds a SQLite store of N users (default 100,000) C{user1..userN}, each
    with an hmac-sha256 TSIG key C{userN.dyn.example.com.} and an initial
    address C{10.3.x.y}, with C{SQLiteUserStore.import_users} before the
    start (in a child process: it needs a reactor);
 2. starts ours, C{twistd -n --pidfile= dyndns}, on 127.0.0.1 and a free
    port, with C{[dns.transfer] allow = ["127.0.0.1"]} (journal 1000 steps,
    the default) and C{[dns.notify] targets = ["127.0.0.1:<BIND's port>"]};
 3. starts BIND 9 (C{named}, Debian package bind9) as a secondary of
    dyn.example.com on 127.0.0.1 and another free port, unprivileged (as user
    C{bind} via C{setpriv} when run as root), C{notify no;}, C{allow-notify
    { 127.0.0.1; }}, C{primaries { 127.0.0.1 port <ours>; }}, logging at
    C{-d 1} into a file; waits until it serves our serial and user N's
    address (its initial AXFR of the whole zone; BIND's own "Transfer
    completed" line is reported);
 4. B{latency}: C{--updates} (default 200) signed RFC 2136 UPDATEs over UDP,
    one at a time, round robin over C{--hosts} users (default 10, the last
    ones), each to an address never used before. For each: the time from
    sending the (already signed) UPDATE to its answer (NOERROR, TSIG
    verified), and to the first answer of the BIND secondary (polled over
    UDP every C{--poll} seconds, default 5 ms) that carries the new address,
    bounded by C{--limit} seconds. BIND's refresh is 3600 s, so only our
    NOTIFY makes it ask that soon. From BIND's log (ms timestamps): when the
    NOTIFY for that serial arrived and when the transfer ended, relative to
    the send. C{--pace} seconds pass between one update becoming visible and
    the next send (default 0.05). BIND delays the SOA query a NOTIFY
    triggers by its C{serial-query-rate} limiter (default 20/s; up to
    ~0.4 s here); C{--serial-query-rate N} sets it, to see the rest;
 5. B{bytes}: with BIND caught up, serial S0: an AXFR from ours over TCP
    (own client: one connection, the query, then length-prefixed messages
    read until the closing SOA; bytes = sum of DNS message lengths, without
    the 2-byte TCP prefixes; time from sending the query to the last byte);
    then C{--changes} (default 100) updates of users 1..100, one at a time,
    each waiting until our SOA shows a new serial (so each change is its own
    journal step: the worst case for IXFR, one SOA pair per step); then an
    IXFR from S0 and an AXFR at the new serial, each C{--xfr-rounds} times
    (default 3). The first AXFR and IXFR are parsed completely with
    dnspython afterwards (outside the timing) and checked: every user's A
    record in the AXFR, and in the IXFR exactly the 100 old addresses
    deleted and the 100 new ones added. For reference, the same AXFR and
    IXFR from the BIND secondary (which got the 100 changes by IXFR itself).

Everything lives in a temporary directory; every process is stopped on exit,
also on errors, and a hard C{--timeout} applies (default 300 s).

    python bench/secondary_latency.py                    # the default run (~2 min)
    python bench/secondary_latency.py --serial-query-rate 1000     # BIND not rate limited
    python bench/secondary_latency.py --users 10000 --updates 50   # quick
    python bench/secondary_latency.py --json results.json          # also write the numbers

The exit status is 1 if an update was not answered NOERROR, did not become
visible on the secondary within C{--limit}, or a transfer failed its checks.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dns_qps import (  # noqa: E402  (shared helpers of the DNS benchmark)
    BenchError,
    Processes,
    Timeout,
    addresses_in,
    free_port,
    log_problems,
    log_tail,
    note,
    query,
    twistd,
)
from dns_qps import write_config as write_server_config  # noqa: E402
from gnudip_tcp import DISTURBED, CPUMeter, noise, percentiles  # noqa: E402
from tsig_updates import (  # noqa: E402  (same keys and addresses as the TSIG benchmark)
    ALGORITHM,
    TTL,
    addresses_of,
    keyname_of,
    machine,
    secret_of,
)

SUFFIX = "dyn.example.com"
HOST = "127.0.0.1"
TYPE_SOA = 6


# -- the store (child process)


def make_store_main(path: str, count: int) -> None:
    """C{_make-store PATH COUNT}: users with a TSIG key and an initial address."""
    from twisted.internet import defer, task

    from dyndns_plugin import HostState, SQLiteUserStore, User

    async def build(reactor: Any) -> None:
        started = time.monotonic()
        users = [User(id=f"user{i}", tsig_secret=secret_of(i), tsig_algorithm=ALGORITHM)
                 for i in range(1, count + 1)]
        states = [HostState(f"user{i}", ipv4=addresses_of(i)[2], ttl=TTL, updated_at=0.0)
                  for i in range(1, count + 1)]
        store = SQLiteUserStore(path, reactor)
        await store.open()
        try:
            await store.import_users(users, states)
        finally:
            await store.close()
        print(json.dumps({"users": count, "import_s": round(time.monotonic() - started, 3)}),
              flush=True)

    task.react(lambda reactor: defer.ensureDeferred(build(reactor)))


# -- servers


def wait_until(proc: subprocess.Popen[bytes], port: int, name: str, expected: str,
               deadline: float, log: str, what: str) -> float:
    """Poll C{name} A on C{port} until it answers C{expected}; returns when."""
    import dns.exception

    while True:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise Timeout(f"{what} on port {port} not ready in time:\n{log_tail(log)}")
        try:
            if addresses_in(query(port, name, timeout=0.2)) == {expected}:
                return time.monotonic()
        except (dns.exception.Timeout, OSError):
            pass
        time.sleep(0.05)


def start_ours(procs: Processes, tmp: str, store: str, port: int, notify_port: int,
               users: int, deadline: float) -> tuple[subprocess.Popen[bytes], str, list[str], float]:
    extra = (
        "\n[dns.transfer]\n"
        'allow = ["127.0.0.1"]\n'
        "journal = 1000\n"
        "\n[dns.notify]\n"
        f'targets = ["{HOST}:{notify_port}"]\n'
        "retry = 2.0\n"
        "retries = 5\n"
    )
    config = write_server_config(tmp, "ours", store, port, False, extra)
    log = os.path.join(tmp, "ours.log")
    argv = twistd() + [f"--logfile={log}", "dyndns", "--config", config]
    started = time.monotonic()
    proc = procs.start(argv, log + ".out")
    ready = wait_until(proc, port, f"user{users}.{SUFFIX}", addresses_of(users)[2],
                       deadline, log, "our server")
    return proc, log, argv, ready - started


def write_secondary(folder: str, port: int, primary_port: int,
                    serial_query_rate: int | None = None) -> tuple[str, str]:
    conf = os.path.join(folder, "named.conf")
    extra = ""
    if serial_query_rate is not None:
        extra = f"\n    serial-query-rate {serial_query_rate};"
    with open(conf, "w") as f:
        f.write(f"""// generated by bench/secondary_latency.py: BIND secondary of {SUFFIX}
options {{
    directory "{folder}";
    pid-file none;
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ 127.0.0.1; }};
    allow-transfer {{ 127.0.0.1; }};
    notify no;
    session-keyfile none;
    managed-keys-directory "{folder}";{extra}
}};
controls {{ }};
logging {{
    channel to_stderr {{ stderr; severity dynamic; print-time yes;
                        print-category yes; print-severity yes; }};
    category default {{ to_stderr; }};
}};
zone "{SUFFIX}" {{
    type secondary;
    primaries {{ 127.0.0.1 port {primary_port}; }};
    file "{SUFFIX}.secondary.db";
    allow-notify {{ 127.0.0.1; }};
}};
""")
    return conf, os.path.join(folder, "named.log")


def start_secondary(procs: Processes, tmp: str, port: int, primary_port: int, users: int,
                    threads: int, deadline: float, serial_query_rate: int | None = None
                    ) -> tuple[subprocess.Popen[bytes], str, list[str], float]:
    folder = os.path.join(tmp, "bind")
    os.mkdir(folder)
    conf, log = write_secondary(folder, port, primary_port, serial_query_rate)
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            bind_user = pwd.getpwnam("bind")
        except KeyError:
            raise BenchError("system user 'bind' missing (apt-get install bind9)") from None
        os.chmod(tmp, 0o711)  # bind may traverse, not list
        for root, dirs, files in os.walk(folder):
            for entry in [root] + [os.path.join(root, x) for x in dirs + files]:
                os.chown(entry, bind_user.pw_uid, bind_user.pw_gid)
        prefix = ["setpriv", "--reuid=bind", "--regid=bind", "--init-groups", "--"]
    check = subprocess.run(["named-checkconf", conf], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=30)
    if check.returncode != 0:
        raise BenchError(f"named-checkconf failed:\n{check.stdout}\n{check.stderr}")
    argv = prefix + ["named", "-f", "-4", "-n", str(threads), "-d", "1", "-c", conf]
    started = time.monotonic()
    proc = procs.start(argv, log)
    ready = wait_until(proc, port, f"user{users}.{SUFFIX}", addresses_of(users)[2],
                       deadline, log, "BIND secondary")
    return proc, log, argv, ready - started


def soa_serial(port: int) -> int:
    import dns.message
    import dns.query

    response = dns.query.udp(dns.message.make_query(SUFFIX, "SOA"), HOST, port=port, timeout=2)
    for rrset in response.answer:
        if rrset.rdtype == TYPE_SOA:
            return int(rrset[0].serial)
    raise BenchError(f"no SOA from port {port}")


# -- BIND's log


_STAMP = r"(\d\d-\w{3}-\d{4} \d\d:\d\d:\d\d\.\d{3})"


def _wall(stamp: str) -> float:
    """A BIND log time stamp (local time of this machine) as epoch seconds."""
    head, ms = stamp.rsplit(".", 1)
    parsed = time.strptime(head, "%d-%b-%Y %H:%M:%S")
    return time.mktime(parsed) + int(ms) / 1000


def bind_events(log: str) -> dict[str, Any]:
    """Per serial: NOTIFY received, transfer done; and every completed transfer."""
    notified: dict[int, float] = {}
    transferred: dict[int, float] = {}
    completed = []
    requests = {"AXFR": 0, "IXFR": 0}
    try:
        with open(log, errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    for m in re.finditer(_STAMP + r" .*notify from 127\.0\.0\.1#\d+: serial (\d+)", text):
        notified.setdefault(int(m.group(2)), _wall(m.group(1)))
    for m in re.finditer(_STAMP + r" .*zone " + re.escape(SUFFIX)
                         + r"/IN: transferred serial (\d+)", text):
        transferred.setdefault(int(m.group(2)), _wall(m.group(1)))
    for m in re.finditer(r"Transfer completed: (\d+) messages, (\d+) records, (\d+) bytes, "
                         r"([\d.]+) secs \([^)]*\) \(serial (\d+)\)", text):
        completed.append({"messages": int(m.group(1)), "records": int(m.group(2)),
                          "bytes": int(m.group(3)), "secs": float(m.group(4)),
                          "serial": int(m.group(5))})
    requests["AXFR"] = len(re.findall(r"requesting AXFR", text))
    requests["IXFR"] = len(re.findall(r"requesting IXFR", text))
    return {"notified": notified, "transferred": transferred, "completed": completed,
            "requests": requests}


# -- updates


class Updater:
    """Signed UPDATEs (dnspython, UDP) to our server, one at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((HOST, port))
        self.sock.settimeout(2.0)

    def close(self) -> None:
        self.sock.close()

    def prepare(self, i: int, address: str) -> tuple[bytes, Any, Any]:
        import dns.name
        import dns.tsig
        import dns.update

        keyname = dns.name.from_text(keyname_of(i))
        key = dns.tsig.Key(keyname, secret_of(i), dns.tsig.HMAC_SHA256)
        message = dns.update.UpdateMessage(SUFFIX)
        message.replace(keyname, TTL, "A", address)
        message.use_tsig(key)
        wire = message.to_wire()
        return wire, message, {keyname: key}

    def send(self, wire: bytes) -> None:
        self.sock.send(wire)

    def answer(self, message: Any, keyring: Any) -> int:
        """The rcode of the answer to C{message}; its TSIG is verified."""
        import dns.message

        while True:
            data = self.sock.recv(65535)
            if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == message.id:
                break
        reply = dns.message.from_wire(data, keyring=keyring, request_mac=message.mac)
        return int(reply.rcode())


class Poller:
    """A queries for one name on one server (UDP), as fast as asked."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((HOST, port))
        self.sock.settimeout(0.5)
        self.queries = 0

    def close(self) -> None:
        self.sock.close()

    def addresses(self, name: str) -> set[str] | None:
        import dns.message

        q = dns.message.make_query(name, "A")
        q.flags = 0
        self.sock.send(q.to_wire())
        self.queries += 1
        try:
            while True:
                data = self.sock.recv(65535)
                if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == q.id:
                    break
        except socket.timeout:
            return None
        return addresses_in(dns.message.from_wire(data))


def latency_part(args: argparse.Namespace, ours: int, secondary: int, bind_log: str,
                 deadline: float) -> dict[str, Any]:
    updater = Updater(ours)
    poller = Poller(secondary)
    hosts = list(range(args.users - args.hosts + 1, args.users + 1))
    rows: list[dict[str, Any]] = []
    try:
        for k in range(args.updates):
            if time.monotonic() > deadline:
                raise Timeout("--timeout reached during the latency part")
            i = hosts[k % len(hosts)]
            address = f"10.77.{k >> 8 & 255}.{k & 255}"  # never used before
            name = f"user{i}.{SUFFIX}"
            wire, message, keyring = updater.prepare(i, address)
            wall = time.time()
            t0 = time.perf_counter()
            updater.send(wire)
            rcode = updater.answer(message, keyring)
            acked = time.perf_counter() - t0
            row: dict[str, Any] = {"user": i, "address": address, "rcode": rcode,
                                   "ack_s": acked, "visible_s": None, "wall": wall}
            if rcode == 0:
                limit = t0 + args.limit
                while True:
                    got = poller.addresses(name)
                    now = time.perf_counter()
                    if got == {address}:
                        row["visible_s"] = now - t0
                        break
                    if now > limit:
                        break
                    time.sleep(args.poll)
                row["serial"] = soa_serial(secondary)
            rows.append(row)
            if args.pace:
                time.sleep(args.pace)
    finally:
        updater.close()
        poller.close()
    events = bind_events(bind_log)
    for row in rows:
        serial = row.get("serial")
        if serial in events["notified"]:
            row["notify_s"] = events["notified"][serial] - row["wall"]
        if serial in events["transferred"]:
            row["transferred_s"] = events["transferred"][serial] - row["wall"]
    visible = [r["visible_s"] for r in rows if r["visible_s"] is not None]
    serials = [r.get("serial") for r in rows]
    return {
        "updates": len(rows),
        "not_noerror": sum(1 for r in rows if r["rcode"] != 0),
        "not_visible": sum(1 for r in rows if r["visible_s"] is None),
        "ack_ms": percentiles([r["ack_s"] for r in rows]),
        "visible_ms": percentiles(visible),
        "notify_ms": percentiles([r["notify_s"] for r in rows if "notify_s" in r]),
        "transferred_ms": percentiles([r["transferred_s"] for r in rows if "transferred_s" in r]),
        "visible_min_ms": 1000 * min(visible) if visible else None,
        "visible_under_100ms": sum(1 for v in visible if v < 0.1),
        "notified": sum(1 for r in rows if "notify_s" in r),
        "distinct_serials": len(set(serials)),
        "polls": poller.queries,
        "rows": [{k: v for k, v in r.items() if k != "wall"} for r in rows],
    }


def change_users(args: argparse.Namespace, ours: int) -> dict[str, Any]:
    """Users 1..C{--changes} get C{10.1.x.y}, each in its own serial."""
    updater = Updater(ours)
    serial = soa_serial(ours)
    steps = 0
    started = time.monotonic()
    try:
        for i in range(1, args.changes + 1):
            wire, message, keyring = updater.prepare(i, addresses_of(i)[0])
            updater.send(wire)
            rcode = updater.answer(message, keyring)
            if rcode != 0:
                raise BenchError(f"update of user{i} answered rcode {rcode}")
            limit = time.monotonic() + 5
            while True:
                now_serial = soa_serial(ours)
                if now_serial != serial:
                    serial = now_serial
                    steps += 1
                    break
                if time.monotonic() > limit:
                    raise Timeout(f"our serial stayed {serial} after updating user{i}")
                time.sleep(0.002)
    finally:
        updater.close()
    return {"changes": args.changes, "steps": steps, "serial": serial,
            "seconds": time.monotonic() - started}


# -- transfers


def _skip_name(wire: bytes, i: int) -> int:
    while True:
        length = wire[i]
        if length == 0:
            return i + 1
        if length & 0xC0 == 0xC0:
            return i + 2
        i += length + 1


def answer_records(message: bytes) -> list[tuple[int, int, int]]:
    """(TYPE, RDATA start, RDATA end) of every answer record."""
    qdcount, ancount = struct.unpack_from("!HH", message, 4)
    i = 12
    for _ in range(qdcount):
        i = _skip_name(message, i) + 4
    out = []
    for _ in range(ancount):
        i = _skip_name(message, i)
        rdtype, _, _, rdlength = struct.unpack_from("!HHIH", message, i)
        out.append((rdtype, i + 10, i + 10 + rdlength))
        i += 10 + rdlength
    return out


def soa_numbers(message: bytes, start: int) -> bytes:
    """SERIAL REFRESH RETRY EXPIRE MINIMUM of an SOA RDATA (never compressed)."""
    i = _skip_name(message, _skip_name(message, start))
    return message[i:i + 20]


def transfer(port: int, kind: str, serial: int | None = None,
             timeout: float = 120.0) -> dict[str, Any]:
    """
    One AXFR or IXFR over TCP, read until the closing SOA. An AXFR (or an
    IXFR answered with the whole zone) ends with the second SOA, and no
    other record is an SOA, so a message that ends with the SOA's last 20
    RDATA bytes (serial to minimum, which are never compressed) ends it: no
    record is parsed (a 100k-record zone would cost the client ~0.2 s). An
    incremental IXFR (small) is walked record by record: it ends with the
    third SOA of the current serial (opening, the last step's new SOA,
    closing). The messages are returned for checking afterwards.
    """
    import dns.message
    import dns.rrset

    q = dns.message.make_query(SUFFIX, kind)
    q.flags = 0
    if kind == "IXFR":
        q.authority.append(dns.rrset.from_text(
            f"{SUFFIX}.", 0, "IN", "SOA", f"ns1.{SUFFIX}. hostmaster.{SUFFIX}. {serial} 0 0 0 0"))
    wire = q.to_wire()
    messages: list[bytes] = []
    incremental = False
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        reader = sock.makefile("rb")
        started = time.perf_counter()
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        numbers = b""
        style: str | None = None  # "full" or "incremental", once known
        seen = 0  # SOAs of the current serial, incremental style
        while True:
            head = reader.read(2)
            if len(head) < 2:
                raise BenchError(f"{kind} from port {port}: connection closed early")
            (length,) = struct.unpack("!H", head)
            message = reader.read(length)
            if len(message) < length:
                raise BenchError(f"{kind} from port {port}: short message")
            messages.append(message)
            rcode = message[3] & 0xF
            if rcode:
                raise BenchError(f"{kind} from port {port}: rcode {rcode}")
            if style != "full":
                records = answer_records(message)
                if len(messages) == 1:
                    if not records or records[0][0] != TYPE_SOA:
                        raise BenchError(f"{kind} from port {port}: no opening SOA")
                    numbers = soa_numbers(message, records[0][1])
                    if kind == "IXFR" and struct.unpack("!I", numbers[:4])[0] == serial:
                        break  # up to date: the SOA alone
                    records = records[1:]
                    seen = 1
                    if kind == "AXFR":
                        style = "full"
                if style is None and records:
                    style = "incremental" if records[0][0] == TYPE_SOA else "full"
                if style == "incremental":
                    incremental = True
                    seen += sum(1 for rdtype, start, _ in records
                                if rdtype == TYPE_SOA and soa_numbers(message, start) == numbers)
                    if seen >= 3:
                        break
                    continue
                if style == "full" and not records:
                    continue  # the opening SOA alone
            if message.endswith(numbers):
                break
        elapsed = time.perf_counter() - started
        reader.close()
    return {"kind": kind, "serial_from": serial, "messages": len(messages),
            "bytes": sum(len(m) for m in messages), "seconds": elapsed,
            "incremental": incremental, "_wire": messages}


def records_of(messages: list[bytes]) -> list[tuple[str, str, str]]:
    """Every answer record of a transfer as (owner, type, rdata) text."""
    import dns.message
    import dns.rdatatype

    out = []
    for wire in messages:
        message = dns.message.from_wire(wire, one_rr_per_rrset=True)
        for rrset in message.answer:
            for rdata in rrset:
                out.append((rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype),
                            rdata.to_text()))
    return out


def check_axfr(result: dict[str, Any], users: int, changed: int) -> list[str]:
    records = records_of(result["_wire"])
    problems = []
    soas = [r for r in records if r[1] == "SOA"]
    if len(soas) != 2 or records[0][1] != "SOA" or records[-1][1] != "SOA":
        problems.append(f"AXFR: {len(soas)} SOA records, not at both ends")
    a = {r[0]: r[2] for r in records if r[1] == "A" and r[0].startswith("user")}
    if len(a) != users:
        problems.append(f"AXFR: {len(a)} user A records, expected {users}")
    for i in sorted({1, max(1, changed), changed + 1, users // 2, users}):
        expected = addresses_of(i)[0] if i <= changed else None
        got = a.get(f"user{i}.{SUFFIX}.")
        if got is None or (expected is not None and got != expected):
            problems.append(f"AXFR: user{i} {got}, expected {expected or 'an address'}")
    result["records"] = len(records)
    return problems


def check_ixfr(result: dict[str, Any], changed: int, steps: int) -> list[str]:
    records = records_of(result["_wire"])
    result["records"] = len(records)
    problems = []
    if not result["incremental"]:
        return [f"IXFR came as a full zone ({len(records)} records)"]
    # Opening SOA, then per step: old SOA, deletions, new SOA, additions;
    # the closing SOA.
    body = records[1:-1]
    deleted: dict[str, str] = {}
    added: dict[str, str] = {}
    section = None
    soa_pairs = 0
    for owner, rtype, rdata in body:
        if rtype == "SOA":
            section = added if section is deleted else deleted
            soa_pairs += section is deleted
            continue
        if section is None:
            return ["IXFR: a record before the first step's SOA"]
        section[owner] = rdata
    if soa_pairs != steps:
        problems.append(f"IXFR: {soa_pairs} steps, expected {steps}")
    for i in range(1, changed + 1):
        owner = f"user{i}.{SUFFIX}."
        if deleted.get(owner) != addresses_of(i)[2] or added.get(owner) != addresses_of(i)[0]:
            problems.append(f"IXFR: user{i} -{deleted.get(owner)} +{added.get(owner)}")
            break
    if len(deleted) != changed or len(added) != changed:
        problems.append(f"IXFR: {len(deleted)} deletions, {len(added)} additions, "
                        f"expected {changed} each")
    return problems


def transfer_part(args: argparse.Namespace, ours: int, secondary: int,
                  deadline: float) -> dict[str, Any]:
    out: dict[str, Any] = {"problems": []}
    s0 = soa_serial(ours)
    out["serial_before"] = s0
    note(f"AXFR from ours at serial {s0} ({args.xfr_rounds}x)")
    before = [transfer(ours, "AXFR") for _ in range(args.xfr_rounds)]
    out["problems"] += check_axfr(before[0], args.users, 0)
    note(f"{args.changes} changes (users 1..{args.changes}), each its own serial")
    out["changes"] = change_users(args, ours)
    s1 = out["changes"]["serial"]
    # BIND follows (by IXFR) before the reference transfers from it.
    limit = time.monotonic() + 30
    while soa_serial(secondary) != s1:
        if time.monotonic() > min(limit, deadline):
            raise Timeout(f"BIND did not reach serial {s1}")
        time.sleep(0.05)
    note(f"IXFR from {s0} and AXFR at {s1} from ours ({args.xfr_rounds}x each), then from BIND")
    ixfr = [transfer(ours, "IXFR", s0) for _ in range(args.xfr_rounds)]
    after = [transfer(ours, "AXFR") for _ in range(args.xfr_rounds)]
    bind_ixfr = [transfer(secondary, "IXFR", s0) for _ in range(args.xfr_rounds)]
    bind_axfr = [transfer(secondary, "AXFR") for _ in range(args.xfr_rounds)]
    out["problems"] += check_ixfr(ixfr[0], args.changes, out["changes"]["steps"])
    out["problems"] += check_axfr(after[0], args.users, args.changes)
    out["problems"] += [f"BIND {p}" for p in check_ixfr(bind_ixfr[0], args.changes,
                                                        out["changes"]["steps"])]
    out["problems"] += [f"BIND {p}" for p in check_axfr(bind_axfr[0], args.users, args.changes)]
    for label, runs in (("axfr_before", before), ("ixfr", ixfr), ("axfr_after", after),
                        ("bind_ixfr", bind_ixfr), ("bind_axfr", bind_axfr)):
        for run in runs:
            run.pop("_wire", None)
        out[label] = {
            "messages": runs[0]["messages"], "bytes": runs[0]["bytes"],
            "records": runs[0].get("records"),
            "seconds": [round(r["seconds"], 4) for r in runs],
            "best_s": min(r["seconds"] for r in runs),
        }
        if any(r["bytes"] != runs[0]["bytes"] for r in runs):
            out["problems"].append(f"{label}: byte counts differ between rounds")
    out["ratio_ixfr_axfr"] = out["ixfr"]["bytes"] / out["axfr_after"]["bytes"]
    out["serial_after"] = s1
    return out


# -- report


def ms(p: dict[str, float]) -> str:
    return (f"p50 {p['p50']:.1f} / p90 {p['p90']:.1f} / p99 {p['p99']:.1f} / "
            f"max {p['max']:.1f} ms (mean {p['mean']:.1f})")


def cpu_line(part: dict[str, Any]) -> str:
    cpu = part["cpu"]
    servers = cpu["servers"]
    return (f"CPU over {part['seconds']:.1f} s: ours {servers['ours']['cpu_s']:.2f} s, BIND "
            f"{servers['bind']['cpu_s']:.2f} s, client {cpu['client_cpu_s']:.2f} s, other "
            f"programs {cpu['other_cpu_s']:.2f} s, steal {cpu['steal_s']:.2f} s"
            + ("  DISTURBED" if part["disturbed"] else ""))


def summary(args: argparse.Namespace, info: dict[str, Any], out: dict[str, Any]) -> None:
    print()
    print("=" * 72)
    print("dyndns_plugin zone transfer benchmark (BIND 9 secondary)")
    print(f"  machine: {info['nproc']} cpus, {info['cpu']}, Linux {info['kernel']}; Python "
          f"{info['python']}, Twisted {info['twisted']}, dnspython {info['dnspython']}, "
          f"SQLite {info['sqlite']}, {info['named']}; {info['date']}; loadavg at start "
          f"{' '.join(info['loadavg_at_start'])}; code {info['code']}")
    print(f"  {args.users} users; store built in {out['store']['import_s']:.1f} s; ours ready "
          f"in {out['startup_s']['ours']:.1f} s; BIND's initial AXFR: "
          f"{out['bind_initial']} (ready {out['startup_s']['bind']:.1f} s after its start)")
    lat = out.get("latency")
    if lat:
        print(f"  latency, {lat['updates']} signed UPDATEs round robin over {args.hosts} users, "
              f"poll every {args.poll * 1000:g} ms, pace {args.pace:g} s:")
        print(f"    answer from ours:          {ms(lat['ack_ms'])}")
        print(f"    NOTIFY logged by BIND:     {ms(lat['notify_ms'])}")
        print(f"    transfer done (BIND log):  {ms(lat['transferred_ms'])}")
        print(f"    visible on the secondary:  {ms(lat['visible_ms'])}")
        if lat["visible_min_ms"] is not None:
            print(f"    visible: min {lat['visible_min_ms']:.1f} ms, {lat['visible_under_100ms']} "
                  f"of {lat['updates']} under 100 ms")
        print(f"    not NOERROR {lat['not_noerror']}, not visible within {args.limit:g} s "
              f"{lat['not_visible']}; {lat['distinct_serials']} serials, NOTIFY logged for "
              f"{lat['notified']}; BIND requests during the part: {lat['bind_requests']}")
        print(f"    {cpu_line(lat)}")
    xfr = out.get("transfers")
    if xfr:
        print(f"  transfers from ours ({args.xfr_rounds} rounds, times = send to last byte):")
        for label, text in (("axfr_before", f"AXFR at serial {xfr['serial_before']}"),
                            ("axfr_after", f"AXFR at serial {xfr['serial_after']}"),
                            ("ixfr", f"IXFR {xfr['serial_before']} -> {xfr['serial_after']} "
                                     f"({xfr['changes']['steps']} steps)"),
                            ("bind_axfr", f"BIND: AXFR at {xfr['serial_after']}"),
                            ("bind_ixfr", f"BIND: IXFR {xfr['serial_before']} -> "
                                          f"{xfr['serial_after']}")):
            r = xfr[label]
            times = ", ".join(f"{s * 1000:.1f}" for s in r["seconds"])
            print(f"    {text:<40} {r['bytes']:>10,} bytes {r['messages']:>4} msgs "
                  f"{r['records'] or 0:>7,} records  {times} ms")
        print(f"    IXFR/AXFR bytes: {xfr['ratio_ixfr_axfr']:.5f} "
              f"(AXFR is {1 / xfr['ratio_ixfr_axfr']:.0f}x larger)")
        print(f"    {cpu_line(xfr)}")
        for p in xfr["problems"]:
            print(f"    PROBLEM: {p}")
    for p in out.get("log_problems", []):
        print(f"  our log: {p}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_make-store":
        make_store_main(sys.argv[2], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000,
                        help="users in the zone (default 100000)")
    parser.add_argument("--updates", type=int, default=200,
                        help="updates timed until visible on the secondary (default 200)")
    parser.add_argument("--hosts", type=int, default=10,
                        help="users the timed updates go round (default 10)")
    parser.add_argument("--poll", type=float, default=0.005,
                        help="seconds between queries to the secondary (default 0.005)")
    parser.add_argument("--limit", type=float, default=10.0,
                        help="seconds an update may take to show on the secondary (default 10)")
    parser.add_argument("--pace", type=float, default=0.05,
                        help="seconds between one update showing and the next (default 0.05)")
    parser.add_argument("--changes", type=int, default=100,
                        help="changes between the AXFR and the IXFR (default 100)")
    parser.add_argument("--xfr-rounds", type=int, default=3,
                        help="times each transfer is timed (default 3)")
    parser.add_argument("--named-threads", type=int, default=os.cpu_count() or 2,
                        help="named -n (default: the number of CPUs, named's own default)")
    parser.add_argument("--serial-query-rate", type=int, metavar="N",
                        help="BIND's serial-query-rate (SOA queries per second; default: "
                        "not set, BIND's default 20)")
    parser.add_argument("--timeout", type=int, default=300, help="hard limit, seconds")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not 200 <= args.users <= 1_000_000:
        parser.error("--users must be 200..1000000")
    if not 1 <= args.hosts <= 100 or args.hosts > args.users - args.changes:
        parser.error("--hosts must be 1..100 and leave users 1..--changes alone")
    if not 0 <= args.updates <= 60000 or not 1 <= args.changes <= min(900, args.users // 2):
        parser.error("--updates must be 0..60000, --changes 1..900 (journal 1000)")
    if args.updates + args.changes > 1000:
        parser.error("--updates + --changes must fit the journal (1000 steps)")
    if not 1 <= args.xfr_rounds <= 10:
        parser.error("--xfr-rounds must be 1..10")
    if shutil.which("named") is None:
        parser.error("named is not installed (Debian: apt-get install bind9)")

    deadline = time.monotonic() + args.timeout

    def alarm(_signum: int, _frame: object) -> None:
        raise SystemExit(f"BENCHMARK FAILED: exceeded --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(args.timeout + 5)

    info = machine()
    tmp = tempfile.mkdtemp(prefix="dyndns-secondary-bench-")
    procs = Processes()
    out: dict[str, Any] = {"argv": {}, "startup_s": {}}
    try:
        store = os.path.join(tmp, "store.sqlite")
        note(f"building the store in {tmp}: {args.users} users with TSIG keys")
        run = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "_make-store", store, str(args.users)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
            timeout=max(10, deadline - time.monotonic()),
        )
        if run.returncode != 0:
            raise BenchError(f"building the store failed:\n{run.stdout}\n{run.stderr}")
        out["store"] = json.loads(run.stdout.strip().splitlines()[-1])
        port = free_port()
        secondary_port = free_port()
        while secondary_port == port:
            secondary_port = free_port()
        note("starting twistd dyndns (transfers to 127.0.0.1, NOTIFY to the secondary)")
        ours, our_log, argv, ready = start_ours(procs, tmp, store, port, secondary_port,
                                                args.users, deadline)
        out["argv"]["ours"], out["startup_s"]["ours"] = argv, ready
        note(f"ours: pid {ours.pid}, port {port}; starting BIND as secondary")
        named, bind_log, argv, ready = start_secondary(procs, tmp, secondary_port, port,
                                                       args.users, args.named_threads, deadline,
                                                       args.serial_query_rate)
        out["argv"]["bind"], out["startup_s"]["bind"] = argv, ready
        limit = time.monotonic() + 10
        while soa_serial(secondary_port) != soa_serial(port):
            if time.monotonic() > limit:
                raise Timeout("BIND did not reach our serial")
            time.sleep(0.05)
        first = bind_events(bind_log)["completed"]
        out["bind_initial"] = first[0] if first else None
        note(f"BIND: pid {named.pid}, port {secondary_port}, initial transfer {first[:1]}")

        if args.updates:
            note(f"latency: {args.updates} updates, each until visible on the secondary")
            before = bind_events(bind_log)["requests"]
            meter = CPUMeter({"ours": ours.pid, "bind": named.pid})
            started = time.monotonic()
            out["latency"] = latency_part(args, port, secondary_port, bind_log, deadline)
            out["latency"]["cpu"] = cpu = meter.read()
            out["latency"]["seconds"] = seconds = time.monotonic() - started
            out["latency"]["disturbed"] = noise(cpu) / seconds > DISTURBED
            after = bind_events(bind_log)["requests"]
            out["latency"]["bind_requests"] = {k: after[k] - before[k] for k in after}
        meter = CPUMeter({"ours": ours.pid, "bind": named.pid})
        started = time.monotonic()
        out["transfers"] = transfer_part(args, port, secondary_port, deadline)
        out["transfers"]["cpu"] = cpu = meter.read()
        out["transfers"]["seconds"] = seconds = time.monotonic() - started
        out["transfers"]["disturbed"] = noise(cpu) / seconds > DISTURBED
        events = bind_events(bind_log)
        out["bind_transfers"] = {
            "completed": len(events["completed"]),
            "requests": events["requests"],
            "ixfr_bytes": percentiles([c["bytes"] / 1000 for c in events["completed"][1:]]),
        }
        for label, proc in (("ours", ours), ("BIND", named)):
            if proc.poll() is not None:
                raise BenchError(f"{label} died during the run")
        out["log_problems"] = log_problems(our_log)
        signal.alarm(0)
        summary(args, info, out)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "machine": info, **out}, f, indent=2)
        lat = out.get("latency", {})
        failed = (
            lat.get("not_noerror") or lat.get("not_visible") or out["transfers"]["problems"]
            or out["log_problems"]
        )
        if failed:
            print("\nBENCHMARK INVALID: see the problems above", file=sys.stderr)
            return 1
        return 0
    except BenchError as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr)
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
