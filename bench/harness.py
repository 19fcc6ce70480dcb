"""
Helpers shared by bench/crash_trials.py and bench/auth_flood.py only.

Everything generic (processes, ports, the base server config, DNS queries)
comes from bench/dns_qps.py like the other benchmarks; this adds what those
two need on top: running the server from an exported commit (before/after
measurements while the checkout changes under us), a C{[limits]} table that
is written only if the code under test knows it, a server with DNS, HTTP and
GnuDIP listeners and a readiness check of all three, and a small asyncio
HTTP/1.1 keep-alive client that can bind a source address.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dns_qps import write_config as write_server_config  # noqa: E402
from dns_qps import (  # noqa: E402
    BenchError,
    Processes,
    Timeout,
    addresses_in,
    free_port,
    log_tail,
    query,
    twistd,
)

SUFFIX = "dyn.example.com"
HOST = "127.0.0.1"
BASE_PATH = "/dyndns/"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- which code runs the server


def export_code(rev: str, dest: str) -> str:
    """
    C{git archive REV dyndns_plugin twisted} into C{dest}: the server then
    runs that commit (via PYTHONPATH) whatever the checkout holds meanwhile.
    Read-only for the repository. Returns the short commit id.
    """
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", rev],
                            capture_output=True, text=True, timeout=30)
    if commit.returncode != 0:
        raise BenchError(f"unknown revision {rev!r}: {commit.stderr.strip()}")
    os.makedirs(dest, exist_ok=True)
    archive = subprocess.Popen(["git", "-C", REPO, "archive", rev, "dyndns_plugin", "twisted"],
                               stdout=subprocess.PIPE)
    untar = subprocess.run(["tar", "-x", "-C", dest], stdin=archive.stdout, timeout=60)
    assert archive.stdout is not None
    archive.stdout.close()
    if archive.wait(60) != 0 or untar.returncode != 0:
        raise BenchError(f"git archive {rev} failed")
    return commit.stdout.strip()


def use_code(code_dir: str | None) -> None:
    """Children (twistd, the CLI, config checks) import dyndns_plugin from C{code_dir}."""
    if code_dir:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (code_dir, os.environ.get("PYTHONPATH")) if p)


def code_description(code_dir: str | None, commit: str | None) -> str:
    if code_dir:
        return f"commit {commit} (exported, git archive)"
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, timeout=30).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "dyndns_plugin"],
                           capture_output=True, text=True, timeout=30).stdout.strip()
    return f"checkout {head}" + (" + uncommitted changes in dyndns_plugin/" if dirty else "")


# -- the configuration


def config_error(path: str) -> str | None:
    """The code under test's verdict on a config file (None: accepted)."""
    run = subprocess.run(
        [sys.executable, "-c",
         "import sys\nfrom dyndns_plugin.config import load_settings, ConfigError\n"
         "try:\n    load_settings(sys.argv[1])\nexcept ConfigError as e:\n"
         "    print(e)\n    sys.exit(3)\n", path],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        cwd="/")  # not the checkout: "" on sys.path would come before PYTHONPATH
    if run.returncode == 0:
        return None
    return (run.stdout + run.stderr).strip() or f"exit {run.returncode}"


def write_config(tmp: str, store: str, dns_port: int, http_port: int, gnudip_port: int,
                 limits: dict[str, Any] | None, gnudip_per_source: int = 64,
                 ) -> tuple[str, str]:
    """
    The server config: DNS (with RFC 2136 UPDATE), HTTP (every method) and
    GnuDIP TCP on 127.0.0.1, plus C{[limits]} with C{limits} if the code under
    test accepts it. Returns (path, what happened to the limits table).
    """
    extra = f"""
[http]
listen = ["tcp:{http_port}:interface={HOST}"]
base_url = "http://{HOST}:{http_port}{BASE_PATH}"
timeout = 30

[http.methods]
url_auth = true
basic_auth = true
nic_update = true
remote_ip = true

[gnudip]
listen = ["tcp:{gnudip_port}:interface={HOST}"]
timeout = 30
max_connections_per_source = {gnudip_per_source}
"""
    # The shared writer may carry a [limits] table of its own (the other
    # benchmarks switch the limiter off): ours replaces it.
    path = write_server_config(tmp, "server", store, dns_port, False, extra)
    with open(path) as f:
        base = _without_table(f.read(), "limits")
    if limits is None:
        _write(path, base)
        return path, "[limits] left out: the limiter's defaults"
    _write(path, base + "\n[limits]\n"
           + "".join(f"{k} = {_toml(v)}\n" for k, v in limits.items()))
    error = config_error(path)
    if error is None:
        return path, "[limits] " + ", ".join(f"{k} = {_toml(v)}" for k, v in limits.items())
    if "limits" not in error or "unknown key" not in error:
        raise BenchError(f"the server config is not accepted: {error}")
    # The code under test predates [limits] (no limiter at all): leave it out.
    _write(path, base)
    return path, "no [limits] table (the code under test has no limiter)"


def _without_table(text: str, name: str) -> str:
    """C{text} (TOML) without the table C{[name]} (its header up to the next one)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("["):
            skipping = stripped == f"[{name}]"
        if not skipping:
            out.append(line)
    return "".join(out)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


# -- the server


class Server:
    """One C{twistd -n dyndns} with a fixed config, (re)started and killed by PID."""

    def __init__(self, procs: Processes, tmp: str, config: str, dns_port: int,
                 http_port: int, gnudip_port: int) -> None:
        self.procs = procs
        self.config = config
        self.dns_port = dns_port
        self.http_port = http_port
        self.gnudip_port = gnudip_port
        self.log = os.path.join(tmp, "server.log")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = self.procs.start(
            twistd() + [f"--logfile={self.log}", "dyndns", "--config", self.config],
            f"{self.log}.out{self.starts}")

    def wait_ready(self, name: str, deadline: float) -> float:
        """
        Until DNS answers C{name} with an address (the store is loaded), HTTP
        answers C{myip} and GnuDIP sends a salt line. Returns the seconds taken.
        """
        import dns.exception

        assert self.proc is not None
        started = time.monotonic()
        dns_ok = http_ok = gnudip_ok = False
        while not (dns_ok and http_ok and gnudip_ok):
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode}:\n"
                                 f"{log_tail(self.log)}\n"
                                 f"{log_tail(f'{self.log}.out{self.starts}')}")
            if time.monotonic() > deadline:
                raise Timeout(f"server not ready in time (dns {dns_ok}, http {http_ok}, "
                              f"gnudip {gnudip_ok}):\n{log_tail(self.log)}")
            if not dns_ok:
                try:
                    dns_ok = bool(addresses_in(query(self.dns_port, name, timeout=0.2)))
                except (dns.exception.Timeout, OSError):
                    pass
            if not http_ok:
                http_ok = _http_ready(self.http_port)
            if not gnudip_ok:
                gnudip_ok = _gnudip_ready(self.gnudip_port)
            if not (dns_ok and http_ok and gnudip_ok):
                time.sleep(0.05)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL, no clean-up of any kind (the point of a crash trial)."""
        assert self.proc is not None
        self.proc.kill()

    def reap(self) -> None:
        if self.proc is not None:
            self.proc.wait(10)
            self.procs.stop(self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc)


def _http_ready(port: int) -> bool:
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=0.5)
    try:
        conn.request("GET", BASE_PATH + "myip")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _gnudip_ready(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            return sock.recv(100).endswith(b"\n")
    except OSError:
        return False


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


# -- a small asyncio HTTP/1.1 client


class HTTPError(Exception):
    pass


class AsyncHTTP:
    """
    One keep-alive connection from C{source}, reopened when the server closes
    it; one request at a time. Only what the update resources send back is
    understood: Content-Length or chunked bodies, or a body up to the close.
    """

    def __init__(self, port: int, source: str | None = None) -> None:
        self.port = port
        self.source = source
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str] | None = None
                  ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                HOST, self.port, local_addr=(self.source, 0) if self.source else None)
        assert self.reader is not None
        lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            got = {}
            for line in header_lines:
                if ":" in line:
                    key, _, value = line.partition(":")
                    got[key.strip().lower()] = value.strip()
            if "content-length" in got:
                body = await self.reader.readexactly(int(got["content-length"]))
            elif got.get("transfer-encoding", "").lower() == "chunked":
                body = b""
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    chunk = await self.reader.readexactly(size + 2)
                    if size == 0:
                        break
                    body += chunk[:-2]
            else:
                body = await self.reader.read()
                got["connection"] = "close"
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                IndexError) as e:
            self.close()
            raise HTTPError(f"bad or cut response: {e!r}") from None
        except BaseException:
            self.close()
            raise
        if got.get("connection", "").lower() == "close":
            self.close()
        return status, got, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
