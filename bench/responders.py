"""
The reference DNS servers bench/dns_qps.py measures ours against, besides
stock C{twistd dns}: a bare Twisted C{DatagramProtocol} answering from a dict
of ready bytes (no checks: the limit of a Twisted server on this machine),
and NSD (C{server-count: 1}, run in the foreground by PID with its own
files, installed with apt-get if missing and we are root, its system daemon
never started). Both serve the zone file of C{bench.harness.tools.zone_file}.

    python -m bench.responders ZONE PORT    # the bare responder, until SIGTERM
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
from typing import Any

#: Header after the ID of a reply to a question without (0) and with (1) RD: QR AA (RD), 1 question, 1 answer.
HEADERS = (b"\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00", b"\x85\x00\x00\x01\x00\x01\x00\x00\x00\x00")


def wire_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"


def ready_answers(zone: str) -> dict[bytes, bytes]:
    """Question section (as dnsperf sends it: no EDNS) -> the answer after the header, for every A record."""
    answers: dict[bytes, bytes] = {}
    with open(zone) as f:
        for line in f:
            fields = line.split()
            if len(fields) == 5 and fields[3] == "A":
                question = wire_name(fields[0]) + b"\0\x01\0\x01"
                rdata = socket.inet_aton(fields[4])
                answers[question] = question + b"\xc0\x0c\0\x01\0\x01" + struct.pack("!IH", int(fields[1]), 4) + rdata
    return answers


def serve_bare(zone: str, port: int) -> None:
    """Answer from the dict: the ID and the RD bit copied, anything not in it NXDOMAIN (the question echoed)."""
    from twisted.internet import protocol, reactor

    answers = ready_answers(zone)

    class Bare(protocol.DatagramProtocol):
        def datagramReceived(self, data: bytes, addr: Any) -> None:
            answer = answers.get(data[12:])
            if answer is None:  # only the readiness check's unknown name takes this
                reply = data[:2] + bytes([0x84 | data[2] & 1, 3]) + b"\0\x01\0\0\0\0\0\0" + data[12:]
            else:
                reply = data[:2] + HEADERS[data[2] & 1] + answer
            self.transport.write(reply, addr)  # type: ignore[union-attr]

    reactor.listenUDP(port, Bare(), interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


def install_nsd() -> str:
    """
    The NSD version; apt-get installs it first if missing and we are root,
    with a policy-rc.d that denies every daemon start (an existing one is
    kept), like .ci/run.
    """
    if shutil.which("nsd") is None and os.geteuid() == 0:
        policy, added = "/usr/sbin/policy-rc.d", False
        if not os.path.exists(policy):
            with open(policy, "w") as f:
                f.write("#!/bin/sh\nexit 101\n")
            os.chmod(policy, 0o755)
            added = True
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
            argv = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nsd"]
            subprocess.run(argv, check=True, env=env, timeout=600)
        finally:
            if added:
                os.remove(policy)
    if shutil.which("nsd") is None:
        raise SystemExit("missing: nsd (Debian: apt-get install nsd)")
    out = subprocess.run(["nsd", "-v"], capture_output=True, text=True, timeout=30)
    return (out.stdout + out.stderr).split("\n")[0].replace("NSD version ", "")


def nsd_config(folder: str, port: int, zone: str, origin: str) -> str:
    """An NSD config in C{folder}: one server process on 127.0.0.1:C{port}, no privilege drop, no database,
    no remote control, its pid, state and log files in C{folder}. Its path."""
    files = {k: os.path.join(folder, k) for k in ("nsd.pid", "xfrd.state", "zone.list", "nsd.log")}
    server = {
        "server-count": 1,
        "ip-address": f"127.0.0.1@{port}",
        "port": port,
        "do-ip6": "no",
        "minimal-responses": "yes",  # the answer alone, as ours, bare and stock send it
        "username": '""',
        "chroot": '""',
        "database": '""',
        "zonesdir": f'"{folder}"',
        "xfrdir": f'"{folder}"',
        "pidfile": f'"{files["nsd.pid"]}"',
        "xfrdfile": f'"{files["xfrd.state"]}"',
        "zonelistfile": f'"{files["zone.list"]}"',
        "logfile": f'"{files["nsd.log"]}"',
    }
    path = os.path.join(folder, "nsd.conf")
    with open(path, "w") as f:
        f.write("server:\n" + "".join(f"    {k}: {v}\n" for k, v in server.items()))
        f.write("remote-control:\n    control-enable: no\n")
        f.write(f'zone:\n    name: "{origin}"\n    zonefile: "{zone}"\n')
    return path


def argvs(folder: str, zone: str, ports: dict[str, int], twistd: list[str], origin: str) -> dict[str, list[str]]:
    """How to start C{bare}, C{stock} (C{twistd dns --bindzone}) and C{nsd} on 127.0.0.1, their files in C{folder}."""
    os.makedirs(folder, exist_ok=True)
    stock = [f"--logfile={folder}/stock.log", "dns", "--bindzone", zone, "--port", str(ports["stock"])]
    return {
        "bare": [sys.executable, "-m", "bench.responders", zone, str(ports["bare"])],
        "stock": twistd + stock + ["--interface", "127.0.0.1"],
        "nsd": ["nsd", "-d", "-c", nsd_config(folder, ports["nsd"], zone, origin)],
    }


def family(pid: int) -> list[int]:
    """C{pid} and its descendants (NSD's server and xfrd children)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(c) for c in f.read().split()]
    except OSError:
        return [pid]
    return [pid] + [p for c in children for p in family(c)]


if __name__ == "__main__":
    serve_bare(sys.argv[1], int(sys.argv[2]))
