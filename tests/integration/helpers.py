"""
Helpers for the integration tests: a real C{twistd -n dyndns} process on a
temporary configuration, the C{dyndns} CLI as a subprocess, and C{dig} with
its output parsed.

Everything talks to 127.0.0.1 only, every subprocess call has a timeout, and
every long-running process is stopped (SIGTERM, then SIGKILL) in the test's
cleanup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable, Sequence

import attrs
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

from tests.tools import free_port, require_tool

SUFFIX = "dyn.example.com"
#: Bound for one CLI run (a Python start-up and one store transaction).
CLI_TIMEOUT = 30.0
#: Bound for a twistd start until it answers queries from its loaded store.
START_TIMEOUT = 10.0
#: Bound for a process to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT = 10.0
#: Bound for one dig run (it retries nothing: +tries=1 +time=2).
DIG_TIMEOUT = 10.0


def twistd_command() -> list[str]:
    """
    The C{twistd} of the interpreter running the tests: the script installed
    beside it, or the same entry point through C{-c} (never a C{twistd} of
    another Python found on PATH).
    """
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    return process.returncode


@attrs.frozen
class Record:
    """One resource record line of dig output."""

    name: str
    ttl: int
    cls: str
    type: str
    data: str


@attrs.frozen
class DigResult:
    """
    What dig printed. C{status} is None when no reply arrived (then
    C{error} holds dig's complaint).
    """

    status: str | None
    flags: frozenset[str]
    answer: tuple[Record, ...]
    authority: tuple[Record, ...]
    output: str
    error: str = ""

    def data(self, rtype: str | None = None) -> list[str]:
        """The rdata of the answer records (of C{rtype}, if given)."""
        return [r.data for r in self.answer if rtype is None or r.type == rtype]


def _parse_record(line: str) -> Record:
    name, ttl, cls, rtype, *rest = line.split(None, 4)
    return Record(name, int(ttl), cls, rtype, rest[0] if rest else "")


def parse_dig(output: str) -> DigResult:
    status: str | None = None
    flags: frozenset[str] = frozenset()
    sections: dict[str, list[Record]] = {"ANSWER": [], "AUTHORITY": []}
    current: str | None = None
    for raw in output.splitlines():
        line = raw.strip()
        if "->>HEADER<<-" in line:
            for part in line.split(","):
                key, _, value = part.strip().partition(": ")
                if key == "status":
                    status = value.strip()
        elif line.startswith(";; flags:"):
            flags = frozenset(line[len(";; flags:"):].split(";", 1)[0].split())
        elif line.startswith(";; ") and line.endswith(" SECTION:"):
            current = line[3:-len(" SECTION:")]
        elif not line:
            current = None
        elif line.startswith(";"):
            continue
        elif current in sections:
            sections[current].append(_parse_record(line))
    return DigResult(
        status=status,
        flags=flags,
        answer=tuple(sections["ANSWER"]),
        authority=tuple(sections["AUTHORITY"]),
        output=output,
    )


def dig(port: int, name: str, qtype: str = "A", *opts: str) -> DigResult:
    """
    Ask 127.0.0.1:C{port} with dig (no recursion wanted, one try, two
    seconds) and parse the reply. Extra dig options (C{+tcp}, C{+ignore},
    C{+notcp}, C{+noedns}...) come last, so they win.
    """
    program = require_tool("dig", "bind9-dnsutils")
    command = [
        program, "@127.0.0.1", "-p", str(port), name, qtype,
        "+norec", "+time=2", "+tries=1", "+nocmd", "+nostats", *opts,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=DIG_TIMEOUT, check=False
    )
    result = parse_dig(done.stdout)
    if result.status is None:
        result = attrs.evolve(result, error=(done.stdout + done.stderr).strip())
    return result


def wait_for(
    predicate: Callable[[], object], timeout: float, interval: float = 0.1
) -> tuple[object, float]:
    """
    Call C{predicate} every C{interval} seconds until it returns something
    true or C{timeout} passes. Returns (last value, seconds waited).
    """
    start = time.monotonic()
    while True:
        value = predicate()
        elapsed = time.monotonic() - start
        if value or elapsed >= timeout:
            return value, elapsed
        time.sleep(interval)


# -- the CLI


def run_cli(config: str, *args: str, input: str | None = None) -> tuple[int, str, str]:
    """Run C{dyndns --config CONFIG ARGS...}; returns (rc, stdout, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "dyndns_plugin.cli", "--config", config, *args],
        capture_output=True,
        text=True,
        input=input if input is not None else "",
        timeout=CLI_TIMEOUT,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def cli_ok(config: str, *args: str, input: str | None = None) -> str:
    """Run the CLI; AssertionError (fails the test) unless it exits 0. Returns stdout."""
    rc, out, err = run_cli(config, *args, input=input)
    if rc != 0:
        raise AssertionError(f"dyndns {' '.join(args)} exited {rc}: {err.strip() or out.strip()}")
    return out


# -- configuration files


def write_config(
    directory: str,
    port: int,
    *,
    zones: Sequence[tuple[str, str]] = (),
    extra_service: str = "",
    name: str = "dyndns.toml",
) -> str:
    """
    A configuration in C{directory}: suffix dyn.example.com, DNS on
    127.0.0.1:C{port}, an SQLite store in the same folder, poll interval
    0.2 s, and host zones C{(origin, file)}.
    """
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    lines = [
        "[service]",
        f'suffix = "{SUFFIX}"',
        "poll_interval = 0.2",
        extra_service,
        "",
        "[store]",
        'backend = "sqlite"',
        'path = "users.sqlite"',
        "",
        "[dns]",
        f'listen = ["127.0.0.1:{port}"]',
        f'nameservers = ["ns1.{SUFFIX}"]',
        "",
        "[dns.glue]",
        f'"ns1.{SUFFIX}" = ["127.0.0.1"]',
        "",
    ]
    for origin, file in zones:
        lines += ["[[dns.zones]]", f'origin = "{origin}"', f'file = "{file}"', ""]
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


# -- twistd


def _query_status(port: int, name: str) -> int | None:
    """The rcode 127.0.0.1:C{port} answers for C{name} A, None on no reply."""
    query = dns.message.make_query(name, "A")
    query.flags &= ~dns.flags.RD
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.3)
    except (dns.exception.Timeout, OSError):
        return None
    return reply.rcode()


class Twistd:
    """
    A C{twistd -n --pidfile= dyndns --config FILE} child process (see
    L{twistd_command}). Its output goes to C{twistd.log} next to the
    configuration (a file, never a pipe, so a chatty server cannot block on a
    full pipe). Whoever calls L{start} must make sure L{stop} runs (see
    L{start_twistd}, which registers it as a test cleanup).
    """

    def __init__(self, config: str, port: int) -> None:
        self.config = os.path.abspath(config)
        self.port = port
        self.log_path = os.path.join(os.path.dirname(config), "twistd.log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """
        Start and wait until the store is loaded and DNS answers; returns the
        seconds that took. On failure the process is stopped and
        AssertionError (with the server's log) raised.
        """
        if self.process is not None:
            raise AssertionError("already running")
        log = open(self.log_path, "ab")
        started = time.monotonic()
        try:
            self.process = subprocess.Popen(
                [*twistd_command(), "-n", "--pidfile=", "dyndns", "--config", self.config],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=os.path.dirname(self.config),
            )
        finally:
            log.close()
        try:
            return self._wait_ready(started)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, started: float) -> float:
        # Before the store is loaded the resolver answers SERVFAIL; a name
        # under the suffix that nobody has gives NXDOMAIN once it is loaded.
        assert self.process is not None
        probe = f"probe-not-a-user.{SUFFIX}"
        deadline = started + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"twistd exited with {self.process.returncode}:\n{self.read_log()}"
                )
            if _query_status(self.port, probe) in (dns.rcode.NXDOMAIN, dns.rcode.NOERROR):
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(
            f"twistd did not answer within {START_TIMEOUT} s:\n{self.read_log()}"
        )

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT. Returns the exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        return stop_process(process)

    def read_log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def start_twistd(testcase, config: str, port: int) -> Twistd:
    """Start a L{Twistd} that the test's cleanup stops."""
    server = Twistd(config, port)
    testcase.addCleanup(server.stop)
    server.start()
    return server


def run_twistd_once(config: str, *extra: str) -> tuple[int, str, str]:
    """
    Run C{twistd -n --pidfile= dyndns --config CONFIG} expecting it to exit
    on its own (a configuration error); returns (rc, stdout, stderr). A
    twistd that keeps running is killed by the timeout and fails the test.
    """
    done = subprocess.run(
        [*twistd_command(), "-n", "--pidfile=", "dyndns",
         "--config", config, *extra],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=CLI_TIMEOUT,
        check=False,
        cwd=os.path.dirname(config) or None,
    )
    return done.returncode, done.stdout, done.stderr


def run_twistd_help() -> tuple[int, str, str]:
    done = subprocess.run(
        [*twistd_command(), "--help"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


__all__ = [
    "DigResult",
    "Record",
    "SUFFIX",
    "Twistd",
    "cli_ok",
    "dig",
    "free_port",
    "parse_dig",
    "run_cli",
    "run_twistd_help",
    "run_twistd_once",
    "start_twistd",
    "twistd_command",
    "wait_for",
    "write_config",
]
