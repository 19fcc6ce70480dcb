"""
Drivers for the real tools the benchmarks use: dnsperf, wrk, BIND named (as
primary or secondary, run unprivileged as user bind) and py-spy.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from typing import Any, Iterator

from bench.harness.procs import HOST, BenchError, Processes, run_checked, wait_for
from bench.harness.server import dns_ready
from bench.harness.users import SUFFIX, TTL, addresses_of

#: How each tool says its version (for the record): the command and a pattern.
VERSIONS = {
    "dnsperf": (["dnsperf", "-h"], r"Version ([\d.]+)"),
    "wrk": (["wrk", "-v"], r"wrk (\S+)"),
    "named": (["named", "-v"], r"(BIND \S+)"),
}


def require(*tools: str) -> dict[str, str]:
    """Exit, naming the Debian packages, if a tool is missing; else the tools' versions."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        packages = " ".join({"named": "bind9"}.get(t, t) for t in missing)
        raise SystemExit(f"missing: {', '.join(missing)} (Debian: apt-get install {packages})")
    runs = {t: subprocess.run(VERSIONS[t][0], capture_output=True, text=True) for t in tools}
    found = {t: re.search(VERSIONS[t][1], run.stdout + run.stderr) for t, run in runs.items()}
    return {t: m.group(1) if m else "?" for t, m in found.items()}


def dnsperf(port: int, queries: str, seconds: float, clients: int = 4, outstanding: int = 100) -> dict[str, Any]:
    """One dnsperf run over UDP; its summary as numbers."""
    argv = f"dnsperf -s {HOST} -p {port} -d {queries} -l {seconds} -c {clients} -q {outstanding} -t 2".split()
    out = run_checked(argv, seconds + 30, "dnsperf")
    fields = {
        "sent": r"Queries sent:\s+(\d+)",
        "completed": r"Queries completed:\s+(\d+)",
        "lost": r"Queries lost:\s+(\d+)",
        "qps": r"Queries per second:\s+([0-9.]+)",
        "latency_avg_s": r"Average Latency \(s\):\s+([0-9.]+)",
        "latency_max_s": r"Average Latency \(s\):.*max ([0-9.]+)",
        "response_bytes": r"Average packet size:.*response (\d+)",
    }
    result: dict[str, Any] = {k: float(m.group(1)) for k, p in fields.items() if (m := re.search(p, out))}
    m = re.search(r"Response codes:\s+(.*)", out)
    result["rcodes"] = {k: int(v) for k, v in re.findall(r"([A-Z]+) (\d+)", m.group(1))} if m else {}
    if "qps" not in result or "completed" not in result:
        raise BenchError(f"could not parse dnsperf output:\n{out}")
    return result


def wrk(url: str, script: str, script_args: list[str], threads: int, connections: int, seconds: int) -> dict[str, Any]:
    """One wrk run with a Lua script; requests/s and socket errors from its output."""
    argv = ["wrk", *f"-t {threads} -c {connections} -d {seconds}s --latency --timeout 5s -s".split(), script]
    argv += [url, "--", *script_args]
    out = run_checked(argv, seconds + 30, "wrk")
    m = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "argv": argv,
        "requests_per_s": float(m.group(1)) if m else None,
        "socket_errors": errors.group(1) if errors else None,
        "stdout": out,
    }


_OPTIONS = """options {{
    directory "{folder}";
    pid-file none;
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ 127.0.0.0/8; }};
    allow-transfer {{ 127.0.0.1; }};
    notify no;
    session-keyfile none;
    managed-keys-directory "{folder}";{extra}
}};
controls {{ }};
logging {{
    channel to_file {{ file "{log}"; severity dynamic; print-time yes;
                      print-category yes; print-severity yes; }};
    category default {{ to_file; }};
}};
"""


def zone_file(path: str, count: int, zone: str = SUFFIX, host: str = "user") -> str:
    """A zone file: SOA, NS, ns1, and C{<host>1..<host>N} (users 1..C{count}) at their initial address."""
    with open(path, "w") as f:
        f.write(f"$TTL {TTL}\n{zone}. 3600 IN SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 1209600 30\n")
        f.write(f"{zone}. 3600 IN NS ns1.{zone}.\nns1.{zone}. 3600 IN A 127.0.0.1\n")
        f.writelines(f"{host}{i}.{zone}. {TTL} IN A {addresses_of(i)[2]}\n" for i in range(1, count + 1))
    return path


class Named:
    """
    BIND 9 with C{body} (keys, the zone) after the common options, in
    C{tmp}/bind, as user bind via setpriv when we are root; logging at
    C{-d debug} into a file there. Started, and ready once C{name} answers
    C{expect} (C{ready}: that name and address).
    """

    def __init__(
        self,
        procs: Processes,
        tmp: str,
        port: int,
        body: str,
        threads: int,
        ready: tuple[str, str],
        deadline: float,
        options: str = "",
        debug: int = 0,
    ) -> None:
        self.port, folder = port, os.path.join(tmp, "bind")
        os.makedirs(folder, exist_ok=True)
        self.log, conf = os.path.join(folder, "named.log"), os.path.join(folder, "named.conf")
        with open(conf, "w") as f:
            f.write(_OPTIONS.format(folder=folder, port=port, log=self.log, extra=options) + body)
        prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                bind = pwd.getpwnam("bind")
            except KeyError:
                raise BenchError("system user 'bind' missing (apt-get install bind9)") from None
            os.chmod(tmp, 0o711)  # bind may traverse, not list
            for root, dirs, files in os.walk(folder):
                for entry in [root] + [os.path.join(root, x) for x in dirs + files]:
                    os.chown(entry, bind.pw_uid, bind.pw_gid)
            prefix = ["setpriv", "--reuid=bind", "--regid=bind", "--init-groups", "--"]
        run_checked(["named-checkconf", "-z", conf], 60, "named-checkconf")
        argv = prefix + ["named", "-f", "-4", "-n", str(threads), "-d", str(debug), "-c", conf]
        self.proc = procs.start(argv, os.path.join(tmp, "named.out"))
        self.pid = self.proc.pid
        wait_for(lambda: dns_ready(port, *ready), deadline, "named", self.proc, self.log)


@contextlib.contextmanager
def py_spy(spy: tuple[Processes, str] | None, pid: int, seconds: float) -> Iterator[None]:
    """
    If C{spy} (the processes, a file): sample C{pid} for C{seconds} (100 Hz,
    every thread, idle too) into the file (raw stacks) from the start of the
    block, and after it let py-spy finish (15 s at most).
    """
    if spy is None:
        yield
        return
    binary = shutil.which("py-spy")
    if binary is None:
        raise BenchError("py-spy not found (pip install py-spy)")
    argv = [binary, *f"record -p {pid} -d {int(seconds)} -r 100 --threads --idle --format raw -o".split(), spy[1]]
    proc = spy[0].start(argv, spy[1] + ".log")
    yield
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        pass
    spy[0].stop(proc)


def profile_summary(path: str, top: int = 12) -> dict[str, dict[str, float]]:
    """Per thread, the share of samples of its C{top} innermost functions."""
    leaves: dict[str, Counter[str]] = defaultdict(Counter)
    with open(path) as f:
        for stack, _, count in (line.rstrip("\n").rpartition(" ") for line in f):
            frames = stack.split(";")
            leaf = frames[-1].split(" (")[0] if frames[1:] else "?"
            if stack:
                leaves[frames[0].partition(": ")[2] or frames[0]][leaf] += int(count)
    return {t: {leaf: round(n / c.total(), 3) for leaf, n in c.most_common(top)} for t, c in leaves.items()}
