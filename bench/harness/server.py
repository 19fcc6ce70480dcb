"""
Our server under test: its config from keyword overrides, C{twistd -n dyndns}
started by PID and ready when DNS answers (and HTTP and GnuDIP, if on), and
which code it runs (the checkout, or a commit exported with git archive).
Also the small DNS and HTTP probes the benchmarks check answers with.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
from typing import Any

import dns.exception
import dns.message
import dns.query

from bench.harness.procs import HOST, BenchError, Processes, free_ports, log_tail, run_checked, wait_for
from bench.harness.users import REPO, SUFFIX, TTL

BASE_PATH = "/dyndns/"


def twistd() -> list[str]:
    """C{twistd -n --pidfile=} of this Python (the one dyndns_plugin is installed in)."""
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if not os.access(script, os.X_OK):
        script = shutil.which("twistd") or "twistd"
    return [script, "-n", "--pidfile="]


def export_code(rev: str, dest: str) -> dict[str, str]:
    """
    C{git archive REV dyndns_plugin twisted} into C{dest} and put it first on
    the children's PYTHONPATH: the server runs that commit whatever the
    checkout holds meanwhile. Returns the record's C{code}.
    """
    commit = run_checked(["git", "-C", REPO, "rev-parse", "--short", rev], 30, f"revision {rev!r}").strip()
    os.makedirs(dest, exist_ok=True)
    tar = os.path.join(dest, "code.tar")
    run_checked(["git", "-C", REPO, "archive", "-o", tar, rev, "dyndns_plugin", "twisted"], 60, f"git archive {rev}")
    run_checked(["tar", "-x", "-C", dest, "-f", tar], 60, f"unpacking {tar}")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (dest, os.environ.get("PYTHONPATH")) if p)
    return {"commit": commit, "source": "git archive"}


def config_error(path: str) -> str | None:
    """The code under test's verdict on a config file (None: accepted)."""
    check = "import sys\nfrom dyndns_plugin.config import load_settings, ConfigError\n"
    check += "try:\n    load_settings(sys.argv[1])\nexcept ConfigError as e:\n    sys.exit(str(e))\n"
    # cwd: not the checkout, "" on sys.path would come before PYTHONPATH
    run = subprocess.run([sys.executable, "-c", check, path], capture_output=True, text=True, timeout=60, cwd="/")
    if run.returncode == 0:
        return None
    return (run.stdout + run.stderr).strip() or f"exit {run.returncode}"


def toml_tables(tables: dict[str, dict[str, Any]]) -> str:
    """TOML of these tables."""
    return "".join(
        f"\n[{name}]\n" + "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in t.items())
        for name, t in tables.items()
    )


def toml_value(value: Any) -> str:
    """JSON, which TOML reads alike, but a dict as an inline table."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return "[" + ", ".join(map(toml_value, value)) + "]" if isinstance(value, list) else json.dumps(value)


def query(port: int, name: str, rdtype: str = "A", timeout: float = 0.5) -> Any:
    return dns.query.udp(dns.message.make_query(name, rdtype), HOST, port=port, timeout=timeout)


def addresses_in(response: Any) -> set[str]:
    return {rd.address for rrset in response.answer for rd in rrset if rrset.rdtype == 1}


def values_in(response: Any, rdtype: str = "A") -> set[str]:
    """The A addresses in an answer, or (C{rdtype} TXT) its TXT values, each record's strings joined."""
    if rdtype != "TXT":
        return addresses_in(response)
    return {b"".join(rd.strings).decode() for rrset in response.answer for rd in rrset if rrset.rdtype == 16}


def soa_serial(port: int, zone: str = SUFFIX) -> int:
    for rrset in query(port, zone, "SOA", timeout=2).answer:
        if rrset.rdtype == 6:
            return int(rrset[0].serial)
    raise BenchError(f"no SOA from port {port}")


def http_get(port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, str]:
    with contextlib.closing(http.client.HTTPConnection(HOST, port, timeout=timeout)) as conn:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")


def dns_ready(port: int, name: str, expect: str | None, rdtype: str = "A") -> bool:
    """C{name} answers C{expect} (see L{values_in}); with C{expect} None: any answer but SERVFAIL (loaded)."""
    try:
        response = query(port, name, rdtype, timeout=0.2)
    except (dns.exception.Timeout, OSError):
        return False
    return response.rcode() != 2 if expect is None else values_in(response, rdtype) == {expect}


class Server:
    """
    One C{twistd -n dyndns}: DNS on 127.0.0.1 (with RFC 2136 UPDATE), HTTP
    and GnuDIP TCP if asked, the limiter off unless C{limits} is given (left
    out if the code under test predates C{[limits]}), C{tables} merged in.
    """

    def __init__(
        self,
        procs: Processes,
        tmp: str,
        store: str,
        name: str = "server",
        *,
        http: bool = False,
        gnudip: bool = False,
        limits: dict[str, Any] | None = None,
        tables: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.procs, self.name, self.http, self.gnudip = procs, name, http, gnudip
        self.dns_port, self.http_port, self.gnudip_port = free_ports(3)
        self.config, self.log = os.path.join(tmp, f"{name}.toml"), os.path.join(tmp, f"{name}.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = self.pid = 0
        service = dict(suffix=SUFFIX, default_ttl=TTL, min_ttl=10, max_ttl=86400, poll_interval=0.5)
        config: dict[str, dict[str, Any]] = {
            "service": service,
            "store": {"backend": "sqlite", "path": store},
            "dns": dict(
                listen=[f"{HOST}:{self.dns_port}"], nameservers=[f"ns1.{SUFFIX}"], hostmaster=f"hostmaster.{SUFFIX}"
            ),
            "dns.glue": {f"ns1.{SUFFIX}": ["127.0.0.1"]},
        }
        # HTTP and GnuDIP off unless asked (their defaults are fixed ports); the salt key beside the config.
        config["http"], config["gnudip"] = {"listen": []}, {"listen": [], "http_key_file": f"{name}-gnudip.key"}
        if http:
            url = f"http://{HOST}:{self.http_port}{BASE_PATH}"
            config["http"] = {"listen": [f"tcp:{self.http_port}:interface={HOST}"], "base_url": url, "timeout": 30}
            config["http.methods"] = dict.fromkeys(("url_auth", "basic_auth", "nic_update", "remote_ip"), True)
        if gnudip:
            listen = [f"tcp:{self.gnudip_port}:interface={HOST}"]
            config["gnudip"].update(listen=listen, timeout=30, max_connections_per_source=64)
        for table, body in (tables or {}).items():
            config.setdefault(table, {}).update(body)
        base = toml_tables(config)
        # Benchmarks push thousands of changes a minute from loopback: they
        # measure throughput, not the limiter (bench/auth_flood.py does that).
        limits = {"enabled": False} if limits is None else limits
        with open(self.config, "w") as f:
            f.write(base + toml_tables({"limits": limits}))
        self.limits = "[limits] " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in limits.items())
        error = config_error(self.config)
        if error is not None:
            if "limits" not in error or "unknown key" not in error:
                raise BenchError(f"the server config is not accepted: {error}")
            with open(self.config, "w") as f:  # code from before the limiter
                f.write(base)
            self.limits = "no [limits] table (the code under test has no limiter)"

    def start(self, deadline: float, name: str = f"ns1.{SUFFIX}", expect: str | None = None) -> float:
        """Start and wait until ready (see L{dns_ready}); returns the seconds taken."""
        self.starts += 1
        out = f"{self.log}.out{self.starts}"
        self.proc = self.procs.start(twistd() + [f"--logfile={self.log}", "dyndns", "--config", self.config], out)
        self.pid = self.proc.pid

        def ready() -> bool:
            try:
                if self.http and http_get(self.http_port, BASE_PATH + "myip", timeout=0.5)[0] != 200:
                    return False
                if self.gnudip:  # the salt line
                    with socket.create_connection((HOST, self.gnudip_port), timeout=0.5) as sock:
                        if not sock.recv(100).endswith(b"\n"):
                            return False
            except OSError:
                return False
            return dns_ready(self.dns_port, name, expect)

        taken = wait_for(ready, deadline, f"{self.name} ready", self.proc, self.log)
        # From 20,000 users the zones are filled after DNS answers: memory is read after that.
        wait_for(lambda: "users' names" in open(self.log).read(), deadline, "zones filled", self.proc, self.log)
        return taken

    def kill(self) -> None:
        """SIGKILL, no clean-up of any kind."""
        assert self.proc is not None
        self.proc.kill()
        self.procs.stop(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} died during the run:\n{log_tail(self.log)}")
            self.procs.stop(self.proc)
