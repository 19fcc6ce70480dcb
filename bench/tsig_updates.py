#!/usr/bin/env python
"""
TSIG-signed RFC 2136 UPDATE throughput benchmark: dyndns_plugin vs BIND 9
(not a test).

One run measures, with the same load generator, the same users and the same
keys, two servers in alternating rounds:

 1. ours: a real C{twistd -n dyndns} with the SQLite store (WAL,
    C{synchronous=FULL}: an update is on disk before it is answered) and
    DNS on 127.0.0.1 and a free port; N users (default 64) C{user1..userN}
    with their own hmac-sha256 TSIG secret and an initial address, written
    with C{SQLiteUserStore.import_users} before the start;
 2. BIND 9 (C{named}, Debian package bind9) as the primary of
    C{dyn.example.com} on 127.0.0.1 and a free port, from a zone file with
    the same users and initial addresses, with C{update-policy { grant *
    self * A AAAA; };} and the same N keys named C{userN.dyn.example.com.}
    (C{self}: the key name is the owner name; ours accepts that key name
    too), run unprivileged (as user C{bind} via C{setpriv} when started as
    root) with its directory, journal and log in the temporary directory;
 3. the load: one asyncio UDP client in this process with one update in
    flight per user (N in flight): each message is C{zone dyn.example.com},
    C{update delete userN.dyn.example.com A} + C{update add
    userN.dyn.example.com 30 A <addr>} (what nsupdate sends), TSIG-signed
    with the user's key; the next update of a user is sent as soon as its
    answer arrives. A user's updates alternate between two addresses
    (neither is its initial one), so every update is a real change. Replies
    are matched by ID; an update not answered within C{--retry} seconds is
    counted as a timeout and sent again (new ID, fresh signature);
 4. after a warm-up of each server, C{--rounds} rounds of C{--duration}
    seconds per server, the order alternating (ours then BIND, then BIND
    then ours, ...) so that a slow phase of the shared machine hits both;
    each slot starts afresh (optionally after waiting for an idle machine,
    C{--wait-quiet}) with C{--settle} seconds not counted and ends by
    waiting for every answer in flight: NOERROR answers per second, latency
    from send to answer (p50/p90/p99/max), answers other than NOERROR,
    timeouts, the server's CPU time (all threads), the client's, kernel
    threads' and interrupts', and everybody else's (other programs; a slot
    where they used, or the hypervisor stole, more than 5% of a CPU is
    marked DISTURBED);
 5. afterwards every user must be served (A query) at the address of its last
    acknowledged update by both servers; BIND's SOA serial must have grown by
    exactly the number of NOERROR answers (it grows once per applied change);
    then our server is killed with SIGKILL and its SQLite file checked (every
    user at its last acknowledged address, via C{dns-update}).

The messages are built with dnspython (C{dns.update.UpdateMessage},
C{use_tsig(dns.tsig.Key(...))}, C{to_wire()}): one template per user and
address. Signing every message with dnspython costs ~0.4-0.7 ms of CPU, which
on two shared CPUs would slow the servers down, so by default each message
gets its ID, Time Signed and MAC (RFC 8945 section 4.3.3, HMAC-SHA256 over
the message and the TSIG variables) from a few lines of C{hmac} here; at the
start every template is re-signed that way with its own ID and time and must
come out byte-identical to dnspython's, and every C{--verify-every}-th answer
is parsed and its TSIG verified with dnspython (C{--sign dnspython} signs
every message with dnspython instead).

Both servers log at their defaults: ours with C{service.log_updates} false
(C{--log-updates}: a line per update), BIND at severity info, i.e. its
"updating zone" lines, into a file in the temporary directory. BIND runs as
C{named -f -4 -n <CPUs> -c <tmp>/bind/named.conf} (C{--named-threads}).

Everything lives in a temporary directory; every process is stopped on exit,
also on errors, and a hard C{--timeout} applies.

    python bench/tsig_updates.py                     # the default run (~70 s)
    python bench/tsig_updates.py --wait-quiet 20     # on a shared machine
    python bench/tsig_updates.py --rounds 1 -d 5     # quick
    python bench/tsig_updates.py --py-spy /tmp/t.txt # profile ours in round 1
    python bench/tsig_updates.py --json results.json # also write the numbers

The exit status is 1 if any answer, timeout or final state was wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import pwd
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dns_qps import write_config as write_server_config  # noqa: E402
from dns_qps import (  # noqa: E402  (shared helpers of the DNS benchmark)
    BenchError,
    Processes,
    Timeout,
    free_port,
    log_problems,
    log_tail,
    note,
    query,
    twistd,
    wait_quiet,
)
from gnudip_tcp import (  # noqa: E402  (shared with the GnuDIP benchmark)
    _LOGGING,
    _REACTOR,
    DISTURBED,
    CPUMeter,
    noise,
    check_store,
    percentiles,
    print_profile,
    profile_summary,
    read_generation,
)
from gnudip_tcp import machine as base_machine  # noqa: E402

SUFFIX = "dyn.example.com"
HOST = "127.0.0.1"
TTL = 30
FUDGE = 300
MAX_USERS = 65535
ALGORITHM = "hmac-sha256"


#: Where a main-thread sample of our server goes (see
#: L{gnudip_tcp.profile_summary}: the innermost matching frame decides).
TSIG_CATEGORIES: list[tuple[str, list[str]]] = [
    ("idle (epoll wait)", [r"^EPollReactor\.doPoll "]),
    ("logging (a line per update)", _LOGGING),
    ("parsing the request (dns.message.from_wire)", [r"^from_wire \(message\.py\)"]),
    ("TSIG check (dns.tsig.validate)", [r"^validate \(tsig\.py\)"]),
    ("key lookup (key_for: new Key and Name objects)", [r"^UpdateHandler\.key_for"]),
    ("the answer: build, sign, append TSIG (_signed)",
     [r"^UpdateHandler\._(signed|plain|tsig_error|response) ", r"^_with_tsig "]),
    ("service: set_addresses, registry, hand-off to SQLite",
     [r"^DynDNSService\.", r"^Registry\.", r"^SQLiteUserStore\.", r"^_Worker\.submit"]),
    ("RFC 2136 checks and mapping (rest of UpdateHandler)", [r"^UpdateHandler\."]),
    ("UDP receive, dispatch and send", [r"\(udp\.py\)", r"^DNSDatagramProtocol",
                                        r"handleUpdateWire", r"writeWire"]),
    ("Deferred/coroutine machinery", [r"\(defer\.py\)"]),
    ("reactor: timers, thread wake-ups", _REACTOR),
]


def secret_of(i: int) -> str:
    """User C{i}'s TSIG secret (base64 of 32 bytes; fixed, so runs repeat)."""
    return base64.b64encode(hashlib.sha256(f"tsig-bench-{i}".encode()).digest()).decode()


def addresses_of(i: int) -> tuple[str, str, str]:
    """User C{i}'s two benchmark addresses and its initial address."""
    hi, lo = (i >> 8) & 255, i & 255
    return f"10.1.{hi}.{lo}", f"10.2.{hi}.{lo}", f"10.3.{hi}.{lo}"


def keyname_of(i: int) -> str:
    return f"user{i}.{SUFFIX}."


# -- our server


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


def write_our_config(tmp: str, store: str, port: int, log_updates: bool = False) -> str:
    return write_server_config(tmp, "ours", store, port, log_updates)


def wait_answer(proc: subprocess.Popen[bytes], port: int, name: str, expected: str,
                deadline: float, log: str) -> None:
    """Poll until C{name} answers C{expected} (the zone or store is loaded)."""
    import dns.exception

    from dns_qps import addresses_in

    while True:
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise Timeout(f"server on port {port} not ready in time:\n{log_tail(log)}")
        try:
            if addresses_in(query(port, name, timeout=0.2)) == {expected}:
                return
        except (dns.exception.Timeout, OSError):
            pass
        time.sleep(0.05)


def start_ours(procs: Processes, tmp: str, store: str, users: int, deadline: float,
               command: list[str], log_updates: bool = False
               ) -> tuple[subprocess.Popen[bytes], int, str, list[str], float]:
    port = free_port()
    config = write_our_config(tmp, store, port, log_updates)
    log = os.path.join(tmp, "ours.log")
    argv = command + [f"--logfile={log}", "dyndns", "--config", config]
    started = time.monotonic()
    proc = procs.start(argv, log + ".out")
    wait_answer(proc, port, f"user{users}.{SUFFIX}", addresses_of(users)[2], deadline, log)
    return proc, port, log, argv, time.monotonic() - started


# -- BIND


def write_bind(folder: str, port: int, users: int) -> tuple[str, str]:
    """named.conf and the zone file in C{folder}; returns (conf, log)."""
    log = os.path.join(folder, "named.log")
    zone = os.path.join(folder, f"{SUFFIX}.db")
    with open(zone, "w") as f:
        f.write(f"$TTL {TTL}\n")
        f.write(f"{SUFFIX}. 3600 IN SOA ns1.{SUFFIX}. hostmaster.{SUFFIX}. "
                "1 3600 600 1209600 30\n")
        f.write(f"{SUFFIX}. 3600 IN NS ns1.{SUFFIX}.\n")
        f.write(f"ns1.{SUFFIX}. 3600 IN A 127.0.0.1\n")
        for i in range(1, users + 1):
            f.write(f"user{i}.{SUFFIX}. {TTL} IN A {addresses_of(i)[2]}\n")
    keys = "".join(
        f'key "{keyname_of(i)}" {{ algorithm {ALGORITHM}; secret "{secret_of(i)}"; }};\n'
        for i in range(1, users + 1)
    )
    conf = os.path.join(folder, "named.conf")
    with open(conf, "w") as f:
        f.write(
            f"""// generated by bench/tsig_updates.py: BIND primary for {SUFFIX}
options {{
    directory "{folder}";
    pid-file none;
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ 127.0.0.0/8; }};
    allow-transfer {{ none; }};
    notify no;
    session-keyfile none;
    managed-keys-directory "{folder}";
}};
controls {{ }};
logging {{
    channel to_file {{ file "{log}"; severity info; print-time yes;
                      print-category yes; print-severity yes; }};
    category default {{ to_file; }};
}};
{keys}
zone "{SUFFIX}" {{
    type primary;
    file "{zone}";
    update-policy {{ grant * self * A AAAA; }};
}};
"""
        )
    return conf, log


def start_bind(procs: Processes, tmp: str, users: int, threads: int, deadline: float
               ) -> tuple[subprocess.Popen[bytes], int, str, list[str], float]:
    folder = os.path.join(tmp, "bind")
    os.mkdir(folder)
    port = free_port()
    conf, log = write_bind(folder, port, users)
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
    check = subprocess.run(["named-checkconf", "-z", conf], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=30)
    if check.returncode != 0:
        raise BenchError(f"named-checkconf failed:\n{check.stdout}\n{check.stderr}")
    argv = prefix + ["named", "-f", "-4", "-n", str(threads), "-c", conf]
    started = time.monotonic()
    proc = procs.start(argv, os.path.join(tmp, "named.out"))
    wait_answer(proc, port, f"user{users}.{SUFFIX}", addresses_of(users)[2], deadline,
                os.path.join(tmp, "named.out"))
    return proc, port, log, argv, time.monotonic() - started


def soa_serial(port: int) -> int:
    import dns.message
    import dns.query
    import dns.rdatatype

    response = dns.query.udp(dns.message.make_query(SUFFIX, "SOA"), HOST, port=port, timeout=2)
    for rrset in response.answer:
        if rrset.rdtype == dns.rdatatype.SOA:
            return int(rrset[0].serial)
    raise BenchError(f"no SOA from port {port}")


# -- messages


def _wire(name: Any) -> bytes:
    """A dnspython name in uncompressed wire form."""
    data = name.to_wire()
    assert data is not None
    return bytes(data)


class Signer:
    """
    The update messages of one user, built and signed by dnspython once per
    address, re-signed per send with a new ID and Time Signed.
    """

    def __init__(self, i: int) -> None:
        import dns.name
        import dns.tsig

        self.keyname = dns.name.from_text(keyname_of(i))
        self.key = dns.tsig.Key(self.keyname, secret_of(i), dns.tsig.HMAC_SHA256)
        self.keyring = {self.keyname: self.key}
        algorithm = dns.tsig.HMAC_SHA256
        self._hmac = hmac.new(base64.b64decode(secret_of(i)), digestmod=hashlib.sha256)
        self._alg_wire = _wire(algorithm)
        # The TSIG variables of RFC 8945 4.3.3 before the time.
        self._vars_head = (_wire(self.keyname.canonicalize()) + struct.pack("!HI", 255, 0)
                           + _wire(algorithm.canonicalize()))
        self.templates: dict[str, tuple[bytes, bytes]] = {}
        for address in addresses_of(i)[:2]:
            self.templates[address] = self._template(address)

    def build(self, address: str, msg_id: int, signed: bool = True) -> bytes:
        """The message, signed by dnspython (C{use_tsig}, C{to_wire})."""
        import dns.update

        message = dns.update.UpdateMessage(SUFFIX, id=msg_id)
        message.replace(self.keyname, TTL, "A", address)
        if signed:
            message.use_tsig(self.key, fudge=FUDGE)
        return message.to_wire()

    def _template(self, address: str) -> tuple[bytes, bytes]:
        """
        dnspython's unsigned message and its (possibly compressed) TSIG
        owner name: dnspython appends the TSIG record to the unsigned
        message and raises ARCOUNT.
        """
        import dns.message

        msg_id = 4711
        signed = self.build(address, msg_id)
        unsigned = self.build(address, msg_id, signed=False)
        if signed[:10] != unsigned[:10] or signed[12:len(unsigned)] != unsigned[12:]:
            raise BenchError(f"dnspython's signed message for {address} does not start "
                             "with its unsigned one")
        parsed = dns.message.from_wire(signed, keyring=self.keyring)
        assert parsed.tsig is not None
        tsig = parsed.tsig[0]
        owner = signed[len(unsigned):len(signed) - 10 - len(tsig.to_wire())]
        template = (unsigned, owner)
        # Self-check: re-signed here with dnspython's ID and time, the message
        # must be byte-identical to dnspython's.
        again, _mac = self._sign(template, msg_id, tsig.time_signed)
        if again != signed:
            raise BenchError(f"local TSIG signing differs from dnspython's for {address}:\n"
                             f"{again.hex()}\n{signed.hex()}")
        return template

    def _sign(self, template: tuple[bytes, bytes], msg_id: int, now: int) -> tuple[bytes, bytes]:
        body, owner = template
        head = struct.pack("!H", msg_id) + body[2:]
        time_fudge = struct.pack("!HIH", now >> 32, now & 0xFFFFFFFF, FUDGE)
        h = self._hmac.copy()
        h.update(head)
        h.update(self._vars_head + time_fudge + b"\x00\x00\x00\x00")
        mac = h.digest()
        rdata = (self._alg_wire + time_fudge + struct.pack("!H", len(mac)) + mac
                 + struct.pack("!HHH", msg_id, 0, 0))
        arcount = struct.unpack("!H", head[10:12])[0] + 1
        wire = (head[:10] + struct.pack("!H", arcount) + head[12:] + owner
                + struct.pack("!HHIH", 250, 255, 0, len(rdata)) + rdata)
        return wire, mac

    def sign(self, address: str, msg_id: int) -> tuple[bytes, bytes]:
        """(wire, request MAC) for one send."""
        return self._sign(self.templates[address], msg_id, int(time.time()))

    def sign_dnspython(self, address: str, msg_id: int) -> tuple[bytes, bytes]:
        wire = self.build(address, msg_id)
        # The MAC is the last thing before Original ID, Error, Other Len (0).
        mac = wire[-6 - 32:-6]
        return wire, mac

    def verify(self, reply: bytes, request_mac: bytes) -> str | None:
        """None if dnspython accepts the reply's TSIG, else the reason."""
        import dns.message

        try:
            message = dns.message.from_wire(reply, keyring=self.keyring,
                                            request_mac=request_mac)
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        if not message.had_tsig:
            return "unsigned"
        return None


# -- the load generator


class Slot:
    """What one server answered while one measuring slot was current."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ok = 0
        self.latencies: list[float] = []
        self.rcodes: dict[str, int] = {}
        self.timeouts = 0
        self.late = 0
        self.bad_tsig = 0
        self.verified = 0
        self.samples: list[str] = []
        self.started = time.perf_counter()
        self.seconds = 0.0
        self.extra: dict[str, Any] = {}

    def sample(self, text: str) -> None:
        if len(self.samples) < 5:
            self.samples.append(text)

    def result(self) -> dict[str, Any]:
        return {
            "name": self.name, "seconds": round(self.seconds, 3), "ok": self.ok,
            "ok_per_s": self.ok / self.seconds if self.seconds else 0.0,
            "latency_ms": percentiles(self.latencies), "rcodes": self.rcodes,
            "timeouts": self.timeouts, "late": self.late, "bad_tsig": self.bad_tsig,
            "verified": self.verified, "samples": self.samples, **self.extra,
        }


class UserLoad:
    __slots__ = ("i", "name", "signer", "addresses", "turn", "acked", "last", "inflight",
                 "uncertain")

    def __init__(self, i: int, signer: Signer) -> None:
        self.i = i
        self.name = f"user{i}"
        # A timed-out update is sent again with the same address, so the
        # last acknowledged address is always the final one.
        self.uncertain = False
        self.signer = signer
        self.addresses = addresses_of(i)[:2]
        self.turn = 0
        self.acked = 0
        self.last: str | None = None
        self.inflight: int | None = None  # the message ID


class UpdateClient(asyncio.DatagramProtocol):
    """One user's update in flight at a time, per user; replies matched by ID."""

    def __init__(self, label: str, users: list[UserLoad], verify_every: int,
                 use_dnspython: bool) -> None:
        self.label = label
        self.users = users
        self.verify_every = verify_every
        self.use_dnspython = use_dnspython
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, tuple[UserLoad, float, bytes, str]] = {}
        self.next_id = 1
        self.running = False
        self.slot = Slot("start")
        self.replies = 0
        self.sent = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def send(self, user: UserLoad) -> None:
        msg_id = self.next_id
        while msg_id in self.pending:
            msg_id = (msg_id + 1) & 0xFFFF
        self.next_id = (msg_id + 1) & 0xFFFF
        address = user.addresses[user.turn % 2]
        if self.use_dnspython:
            wire, mac = user.signer.sign_dnspython(address, msg_id)
        else:
            wire, mac = user.signer.sign(address, msg_id)
        user.inflight = msg_id
        self.pending[msg_id] = (user, time.perf_counter(), mac, address)
        self.sent += 1
        assert self.transport is not None
        self.transport.sendto(wire)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 12:
            return
        msg_id = struct.unpack("!H", data[:2])[0]
        entry = self.pending.pop(msg_id, None)
        slot = self.slot
        if entry is None:
            slot.late += 1
            return
        user, started, mac, address = entry
        user.inflight = None
        slot.latencies.append(time.perf_counter() - started)
        self.replies += 1
        rcode = data[3] & 0x0F
        if self.verify_every and self.replies % self.verify_every == 0:
            problem = user.signer.verify(data, mac)
            slot.verified += 1
            if problem is not None:
                slot.bad_tsig += 1
                slot.sample(f"user{user.i} {address}: answer's TSIG: {problem}")
        if rcode == 0 and data[2] & 0x80 and struct.unpack("!H", data[10:12])[0] >= 1:
            slot.ok += 1
            user.acked += 1
            user.last = address
            user.turn += 1
        else:
            import dns.rcode

            try:
                text = dns.rcode.to_text(dns.rcode.Rcode(rcode))
            except ValueError:
                text = str(rcode)
            if rcode == 0:
                text = "NOERROR but unsigned or not a response"
            slot.rcodes[text] = slot.rcodes.get(text, 0) + 1
            slot.sample(f"user{user.i} {address}: {text}")
        if self.running:
            self.send(user)

    def error_received(self, exc: Exception) -> None:
        self.slot.sample(f"socket error: {exc}")

    def check_timeouts(self, limit: float) -> None:
        now = time.perf_counter()
        expired = [(msg_id, entry) for msg_id, entry in self.pending.items()
                   if now - entry[1] > limit]
        for msg_id, (user, _started, _mac, address) in expired:
            del self.pending[msg_id]
            user.inflight = None
            self.slot.timeouts += 1
            self.slot.sample(f"user{user.i} {address}: no answer in {limit} s, sent again")
            if self.running:
                self.send(user)  # the same address again: a retransmission


async def measure(client: UpdateClient, name: str, seconds: float, settle: float,
                  pid: int, retry: float, spy: Any = None,
                  store: str | None = None) -> dict[str, Any]:
    """Send for C{settle + seconds}, count the last C{seconds}, then drain."""
    loop = asyncio.get_running_loop()
    client.slot = Slot(f"{name} (settle)")
    client.running = True
    for user in client.users:
        client.send(user)

    async def watchdog() -> None:
        while True:
            await asyncio.sleep(0.1)
            client.check_timeouts(retry)

    dog = asyncio.create_task(watchdog())
    try:
        await asyncio.sleep(settle)
        slot = Slot(name)
        meter = CPUMeter({client.label: pid})
        generation = read_generation(store) if store else 0
        if spy is not None:
            spy()
        client.slot = slot
        await asyncio.sleep(seconds)
        slot.seconds = time.perf_counter() - slot.started
        client.slot = Slot(f"{name} (drain)")
        cpu = meter.read()
        if store:
            slot.extra["commits"] = read_generation(store) - generation
        client.running = False
        end = loop.time() + retry + 1
        while client.pending and loop.time() < end:
            await asyncio.sleep(0.01)
        drain = client.slot
        stuck = len(client.pending)
        for msg_id, (user, _s, _m, _a) in list(client.pending.items()):
            user.inflight = None
            del client.pending[msg_id]
    finally:
        dog.cancel()
        client.running = False
    s = cpu["servers"][client.label]
    slot.extra.update({
        "server": client.label,
        "cpu": cpu,
        "server_cpu_us_per_update": round(1e6 * s["cpu_s"] / max(slot.ok, 1), 1),
        "client_cpu_us_per_update": round(1e6 * cpu["client_cpu_s"] / max(slot.ok, 1), 1),
        "drain": {"ok": drain.ok, "rcodes": drain.rcodes, "timeouts": drain.timeouts,
                  "stuck": stuck},
    })
    result = slot.result()
    result["_latencies"] = slot.latencies
    _print_slot(result)
    return result


def _print_slot(r: dict[str, Any]) -> None:
    lat, cpu = r["latency_ms"], r["cpu"]
    s = cpu["servers"][r["server"]]
    print(f"    {r['name']:18} {r['ok_per_s']:8.1f} updates/s ({r['ok']} in "
          f"{r['seconds']:.2f} s); latency p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms, "
          f"max {lat['max']:.1f} ms; other rcodes {r['rcodes'] or 0}, timeouts "
          f"{r['timeouts']}, bad TSIG {r['bad_tsig']}/{r['verified']}; server cpu "
          f"{s['cpu_s']} s ({r['server_cpu_us_per_update']} us/update, main thread "
          f"{s['main_thread_cpu_s']} s, {s['threads']} threads), "
          f"{'%d commits, ' % r['commits'] if 'commits' in r else ''}client "
          f"{cpu['client_cpu_s']} s, kernel threads {cpu['kernel_threads_cpu_s']} s, "
          f"irq {cpu['irq_cpu_s']} s, others {cpu['other_cpu_s']} s, steal {cpu['steal_s']} s",
          flush=True)


def _py_spy_starter(args: argparse.Namespace, procs: Processes, pid: int) -> Any:
    def start() -> None:
        procs.start([args.py_spy_bin, "record", "-p", str(pid), "-d", str(int(args.duration)),
                     "-r", "100", "--threads", "--idle", "--format", "raw", "-o", args.py_spy],
                    args.py_spy + ".log")

    return start


async def run_load(args: argparse.Namespace, servers: dict[str, tuple[int, int]],
                   procs: Processes, deadline: float, store: str) -> dict[str, Any]:
    """C{servers}: label -> (port, pid)."""
    loop = asyncio.get_running_loop()
    signers = [Signer(i) for i in range(1, args.users + 1)]
    note(f"{args.users} users' messages built and signed by dnspython; local re-signing "
         "checked byte for byte")
    clients: dict[str, UpdateClient] = {}
    for label, (port, _pid) in servers.items():
        users = [UserLoad(i, signer) for i, signer in enumerate(signers, 1)]
        client = UpdateClient(label, users, args.verify_every, args.sign == "dnspython")
        await loop.create_datagram_endpoint(
            lambda c=client: c, remote_addr=(HOST, port)  # type: ignore[misc]
        )
        clients[label] = client
    slots: list[dict[str, Any]] = []
    warm: list[dict[str, Any]] = []
    labels = list(servers)
    serial_before = soa_serial(servers["bind"][0]) if "bind" in servers else None
    if args.warmup:
        for label in labels:
            warm.append(await measure(clients[label], f"{label} warm-up", args.warmup, 0.2,
                                      servers[label][1], args.retry))
    for r in range(1, args.rounds + 1):
        order = labels if r % 2 else labels[::-1]
        for label in order:
            if time.monotonic() + args.duration + args.retry + 10 > deadline:
                raise Timeout("not enough time left for another round")
            if args.wait_quiet:
                await loop.run_in_executor(None, wait_quiet, min(
                    args.wait_quiet, deadline - time.monotonic() - args.duration - 20))
            spy = None
            if args.py_spy and r == 1 and label == "ours":
                spy = _py_spy_starter(args, procs, servers["ours"][1])
            slots.append(await measure(clients[label], f"round {r} {label}", args.duration,
                                       args.settle, servers[label][1], args.retry, spy,
                                       store if label == "ours" else None))
    for client in clients.values():
        assert client.transport is not None
        client.transport.close()
    out: dict[str, Any] = {"warmup": warm, "slots": slots, "serial_before": serial_before}
    out["users"] = {label: client.users for label, client in clients.items()}
    out["totals"] = {}
    for label in labels:
        mine = [s for s in slots if s["server"] == label]
        ok = sum(s["ok"] for s in mine)
        seconds = sum(s["seconds"] for s in mine)
        latencies = [x for s in mine for x in s["_latencies"]]
        out["totals"][label] = {
            "ok": ok, "seconds": seconds, "ok_per_s": ok / seconds,
            "latency_ms": percentiles(latencies),
        }
    for s in warm + slots:
        s.pop("_latencies", None)
    return out


def check_served(port: int, users: list[UserLoad], label: str) -> list[str]:
    problems = []
    from dns_qps import addresses_in

    for user in users:
        got = addresses_in(query(port, f"user{user.i}.{SUFFIX}", timeout=2))
        if got != {user.last}:
            problems.append(f"{label}: user{user.i} served {got}, last acknowledged {user.last}")
    return problems


# -- report


def machine() -> dict[str, Any]:
    info = base_machine()
    version = subprocess.run(["named", "-v"], capture_output=True, text=True)
    info["named"] = (version.stdout or version.stderr).strip()
    return info


def summary(args: argparse.Namespace, info: dict[str, Any], out: dict[str, Any]) -> None:
    print()
    print("=" * 72)
    print("dyndns_plugin TSIG UPDATE benchmark (ours vs BIND)")
    print(f"  machine: {info['nproc']} cpus, {info['cpu']}, Linux {info['kernel']}; Python "
          f"{info['python']}, Twisted {info['twisted']}, dnspython {info['dnspython']}, "
          f"SQLite {info['sqlite']}, {info['named']}; {info['date']}; loadavg at start "
          f"{' '.join(info['loadavg_at_start'])}; code {info['code']}")
    for label, argv in out["argv"].items():
        print(f"  {label}: {' '.join(shlex.quote(a) for a in argv)}")
    print(f"  {args.users} users, {ALGORITHM} keys userN.{SUFFIX}., {args.users} updates in "
          f"flight (one per user), UDP; signing: {args.sign}; every "
          f"{args.verify_every}th answer's TSIG verified with dnspython; our log_updates "
          f"{'true' if args.log_updates else 'false'}")
    print(f"  per round ({args.duration:g} s per server, after {args.settle:g} s of settling):")
    rounds = sorted({s["name"].split()[1] for s in out["slots"]}, key=int)
    ratios = []
    for r in rounds:
        row = {s["server"]: s for s in out["slots"] if s["name"].split()[1] == r}
        parts = []
        for label in ("ours", "bind"):
            s = row.get(label)
            if s is None:
                continue
            lat = s["latency_ms"]
            disturbed = noise(s["cpu"]) > DISTURBED * s["seconds"]
            busy = ""
            if label == "ours":
                main = s["cpu"]["servers"]["ours"]["main_thread_cpu_s"]
                busy = f", main thread {100 * main / s['seconds']:.0f}% busy"
            parts.append(f"{label} {s['ok_per_s']:7.1f}/s (p50 {lat['p50']:.2f} ms, p99 "
                         f"{lat['p99']:.2f} ms, cpu {s['server_cpu_us_per_update']} us/upd"
                         f"{busy}{', DISTURBED' if disturbed else ''})")
        if "ours" in row and "bind" in row:
            ratio = row["ours"]["ok_per_s"] / max(row["bind"]["ok_per_s"], 1e-9)
            ratios.append(ratio)
            parts.append(f"ratio {ratio:.3f}")
        print(f"    round {r}: " + "   ".join(parts))
    t = out["totals"]
    for label in t:
        lat = t[label]["latency_ms"]
        print(f"  {label}: {t[label]['ok_per_s']:.1f} durable updates/s over all rounds "
              f"({t[label]['ok']} in {t[label]['seconds']:.1f} s); latency p50 "
              f"{lat['p50']:.2f} ms, p90 {lat['p90']:.2f} ms, p99 {lat['p99']:.2f} ms, max "
              f"{lat['max']:.1f} ms")
    if "ours" in t and "bind" in t:
        ratio = t["ours"]["ok_per_s"] / t["bind"]["ok_per_s"]
        ratios.sort()
        shown = ", ".join(f"{x:.3f}" for x in ratios)
        print(f"  ours/BIND = {ratio:.3f} (per-round ratios {shown})")
    every = out["warmup"] + out["slots"]
    rcodes: dict[str, int] = {}
    for s in every:
        for source in (s["rcodes"], s["drain"]["rcodes"]):
            for k, v in source.items():
                rcodes[k] = rcodes.get(k, 0) + v
    timeouts = sum(s["timeouts"] + s["drain"]["timeouts"] for s in every)
    late = sum(s["late"] for s in every)
    bad = sum(s["bad_tsig"] for s in every)
    verified = sum(s["verified"] for s in every)
    print(f"  answers other than NOERROR: {rcodes or 0}; timeouts (sent again): {timeouts}; "
          f"late answers: {late}; answers' TSIG verified: {verified}, bad: {bad}")
    for s in every:
        for sample in s["samples"][:2]:
            print(f"    e.g. ({s['name']}) {sample}")
    if out.get("serial"):
        sr = out["serial"]
        verdict = "OK" if sr["grew"] == sr["acknowledged"] else "MISMATCH"
        print(f"  BIND SOA serial grew by {sr['grew']} for {sr['acknowledged']} NOERROR "
              f"answers (one per applied change: {verdict})")
    c = out.get("check")
    if c:
        print(f"  ours, store after SIGKILL: integrity {c['integrity']}; {c['exact']} users "
              f"exactly at their last acknowledged address; {len(c['problems'])} problems")
        for problem in c["problems"][:5]:
            print(f"    PROBLEM: {problem}")
    for problem in out["served_problems"][:10]:
        print(f"  PROBLEM: {problem}")
    if not out["served_problems"]:
        print("  both servers serve every user's last acknowledged address")
    for problem in out["log_problems"][:3]:
        print(f"  WARNING: our server's log: {problem}")
    noisy = [noise(s["cpu"]) for s in out["slots"]]
    if noisy and max(noisy) > DISTURBED * args.duration:
        print(f"  WARNING: other processes used or the hypervisor stole up to "
              f"{max(noisy):.1f} s of CPU during a slot; the numbers are disturbed")
    if out.get("profile"):
        print_profile(out["profile"])
    if "ours" in t:
        rate = t["ours"]["ok_per_s"]
        verdict = "MET" if rate >= 2000 else "NOT MET"
        print(f"  target: 2,000 durable updates/s: {verdict}", end="")
        if "bind" in t:
            print(f"; at least BIND's rate: "
                  f"{'MET' if rate >= t['bind']['ok_per_s'] else 'NOT MET'}", end="")
        print()
    print("=" * 72)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_make-store":
        make_store_main(sys.argv[2], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=64,
                        help="users/keys; also the updates in flight (default 64)")
    parser.add_argument("-d", "--duration", type=float, default=8,
                        help="seconds per server per round (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--warmup", type=float, default=2,
                        help="seconds of warm-up per server (default 2)")
    parser.add_argument("--settle", type=float, default=0.5,
                        help="seconds of load before each counted slot (default 0.5)")
    parser.add_argument("--retry", type=float, default=2.0,
                        help="seconds without an answer before an update counts as a "
                        "timeout and is sent again (default 2)")
    parser.add_argument("--verify-every", type=int, default=20,
                        help="verify every Nth answer's TSIG with dnspython (0: none)")
    parser.add_argument("--sign", choices=("local", "dnspython"), default="local",
                        help="sign each message locally (default; checked against "
                        "dnspython) or with dnspython's to_wire (slow client)")
    parser.add_argument("--servers", choices=("both", "ours", "bind"), default="both")
    parser.add_argument("--log-updates", action="store_true",
                        help="our service.log_updates = true (a log line per update; "
                        "default false, the server's default; BIND logs its updates "
                        "at its default severity info either way)")
    parser.add_argument("--named-threads", type=int, default=os.cpu_count() or 2,
                        help="named -n (default: the number of CPUs, named's own default)")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="before each counted slot wait up to this long for an idle "
                        "machine (a shared machine: other agents' runs)")
    parser.add_argument("--py-spy", metavar="FILE",
                        help="profile our server during round 1 with py-spy (raw collapsed "
                        "stacks, --threads --idle, 100 Hz) into FILE")
    parser.add_argument("--py-spy-bin", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--twistd", metavar="COMMAND",
                        help="run our server with COMMAND instead of this Python's "
                        "'twistd -n --pidfile='; the twistd options follow it")
    parser.add_argument("--timeout", type=int, default=170, help="hard limit, seconds")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not 1 <= args.duration <= 60 or not 1 <= args.rounds <= 10:
        parser.error("--duration must be 1..60 and --rounds 1..10")
    if not 1 <= args.users <= min(MAX_USERS, 4096):
        parser.error("--users must be 1..4096")
    if args.servers != "ours" and shutil.which("named") is None:
        parser.error("named is not installed (Debian: apt-get install bind9)")
    if args.py_spy and not os.access(args.py_spy_bin, os.X_OK):
        parser.error(f"py-spy not found ({args.py_spy_bin}); pip install py-spy, --py-spy-bin")

    deadline = time.monotonic() + args.timeout

    def alarm(_signum: int, _frame: object) -> None:
        # SystemExit, not an Exception: asyncio would log an Exception raised
        # inside one of its callbacks and carry on.
        raise SystemExit(f"BENCHMARK FAILED: exceeded --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(args.timeout + 5)

    info = machine()
    tmp = tempfile.mkdtemp(prefix="dyndns-tsig-bench-")
    procs = Processes()
    out: dict[str, Any] = {"argv": {}, "startup_s": {}}
    try:
        servers: dict[str, tuple[int, int]] = {}
        started: dict[str, subprocess.Popen[bytes]] = {}
        store = os.path.join(tmp, "store.sqlite")
        log = os.path.join(tmp, "ours.log")
        if args.servers in ("both", "ours"):
            note(f"building the store in {tmp}: {args.users} users with TSIG keys")
            run = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "_make-store", store,
                 str(args.users)],
                capture_output=True, text=True, stdin=subprocess.DEVNULL,
                timeout=max(10, deadline - time.monotonic()),
            )
            if run.returncode != 0:
                raise BenchError(f"building the store failed:\n{run.stdout}\n{run.stderr}")
            note("starting twistd dyndns (SQLite store, DNS on 127.0.0.1)")
            command = shlex.split(args.twistd) if args.twistd else twistd()
            proc, port, log, argv, ready = start_ours(procs, tmp, store, args.users,
                                                      deadline, command, args.log_updates)
            servers["ours"] = (port, proc.pid)
            started["ours"] = proc
            out["argv"]["ours"], out["startup_s"]["ours"] = argv, ready
            note(f"ours: pid {proc.pid}, port {port}")
        if args.servers in ("both", "bind"):
            note("starting BIND named as primary (update-policy grant * self * A AAAA)")
            proc, port, _blog, argv, ready = start_bind(procs, tmp, args.users,
                                                        args.named_threads, deadline)
            servers["bind"] = (port, proc.pid)
            started["bind"] = proc
            out["argv"]["bind"], out["startup_s"]["bind"] = argv, ready
            note(f"BIND: pid {proc.pid}, port {port}")
        load = asyncio.run(run_load(args, servers, procs, deadline, store))
        out.update({k: v for k, v in load.items() if k != "users"})
        for label, proc in started.items():
            if proc.poll() is not None:
                raise BenchError(f"{label} died during the run")
        out["served_problems"] = []
        for label, (port, _pid) in servers.items():
            out["served_problems"] += check_served(port, load["users"][label], label)
        if "bind" in servers:
            acknowledged = sum(u.acked for u in load["users"]["bind"])
            grew = soa_serial(servers["bind"][0]) - load["serial_before"]
            out["serial"] = {"grew": grew, "acknowledged": acknowledged}
        if "ours" in servers:
            started["ours"].kill()
            started["ours"].wait(5)
            procs.stop(started["ours"])
            out["check"] = check_store(store, load["users"]["ours"], "dns-update")
            out["log_problems"] = log_problems(log)
        else:
            out["log_problems"] = []
        if args.py_spy and os.path.exists(args.py_spy):
            out["profile"] = profile_summary(args.py_spy, TSIG_CATEGORIES)
        signal.alarm(0)
        summary(args, info, out)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"args": vars(args), "machine": info, **out}, f, indent=2)
        every = out["warmup"] + out["slots"]
        failed = (
            out["served_problems"]
            or (out.get("check") and out["check"]["problems"])
            or (out.get("serial") and out["serial"]["grew"] != out["serial"]["acknowledged"])
            or any(s["rcodes"] or s["drain"]["rcodes"] or s["timeouts"] or s["bad_tsig"]
                   or s["drain"]["stuck"] for s in every)
        )
        if failed:
            print("\nBENCHMARK INVALID: some answers or final states were wrong (see above)",
                  file=sys.stderr)
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
