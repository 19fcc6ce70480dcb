"""
The integration-test harness: a real C{twistd -n dyndns} on a temporary
configuration, with its ports, its log, its users, and the C{dyndns} CLI
run against it. The real clients that talk to it are in
L{tests.integration.clients}; the skip-or-fail rule for missing programs
(C{DYNDNS_REQUIRE_TOOLS=1}) is in L{tests.tools}.

The tests are trial-style C{SynchronousTestCase}s (pytest runs them), so the
harness is a pair of base classes rather than pytest fixtures:

 - L{SharedServerTestCase}: one server for the whole class. The class says
   what it needs in C{server_options} (the keyword arguments of L{Server})
   and C{tools}; its C{prepare(server)} class method adds users or more
   configuration before the server starts::

       class MyTests(SharedServerTestCase):
           server_options = {"listeners": ("http",), "limits": {"enabled": False}}

           @classmethod
           def prepare(cls, server):
               server.add_user("alice", "pw", gnudip=True)

           def test_it(self):
               self.assertServes(f"alice.{SUFFIX}", "A", [])

 - L{ServerTestCase}: a server per test, made (not started) by
   C{self.make_server(...)} and stopped in the test's cleanup.

Both give C{self.server}, dig through it (C{served}, C{wait_served},
C{assertServes}), C{assertUpdates} (nsupdate must succeed) and
C{assertTwistdRefuses} (a configuration twistd must refuse).

Users: L{Server.add_user} makes one with the CLI (password, GnuDIP verifier,
TSIG key given or derived from the password, offline IPs, more names, a
first address) and returns its L{Account}, whose C{tsig} is the key nsupdate
signs with; L{Server.add_admin} adds a user of the admin listener.

A L{Server}'s configuration is this
harness's base (suffix L{SUFFIX}, DNS on a free port of 127.0.0.1, an SQLite
store beside the file, polling every 0.2 s) with keyword overrides of the
TOML: a keyword names a top-level table, a dict value is merged into that
table (nested dicts into its subtables), anything else replaces the value::

    Server(folder, listeners=("http", "gnudip"), gnudip={"timeout": 10},
           dns={"rrl": {"responses_per_second": 2}})

Everything talks to 127.0.0.1 only, every subprocess call has a timeout, and
every server is stopped (SIGTERM, then SIGKILL) by its test's cleanup.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence

import attrs
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
from twisted.trial.unittest import SynchronousTestCase

from tests.integration.clients import SUFFIX, DigResult, TSIGKey, dig, make_certificate, nsupdate
from tests.tools import free_ports, require_tool

#: Bound for one CLI run (a Python start-up and one store transaction).
CLI_TIMEOUT = 30.0
#: Bound for a twistd start until it answers queries from its loaded store.
START_TIMEOUT = 10.0
#: Bound for a process to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT = 10.0
#: Bound for a change (an update, a CLI write seen by polling) to show in DNS.
CHANGE_LIMIT = 5.0
#: Bound for a configuration error to stop twistd.
REFUSAL_LIMIT = 20.0
#: The listeners a L{Server} can have besides DNS.
LISTENERS = ("http", "https", "gnudip", "admin")
#: The path of the base URL of a server with an HTTP listener.
BASE_PATH = "/dyndns/"


# -- processes


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


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.1) -> tuple[Any, float]:
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


def run_twistd_once(config: str, *extra: str) -> tuple[int, str, str]:
    """
    Run C{twistd -n --pidfile= dyndns --config CONFIG} expecting it to exit
    on its own (a configuration error); returns (rc, stdout, stderr). A
    twistd that keeps running is killed by the timeout and fails the test.
    """
    done = subprocess.run(
        [*twistd_command(), "-n", "--pidfile=", "dyndns", "--config", config, *extra],
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


# -- configuration files


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: object) -> str:
    """A TOML value: JSON's string escapes are TOML's; dicts in lists are inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml_document(document: Mapping[str, Any]) -> str:
    """C{document} (tables as dicts, tables of tables nested) as TOML text."""
    lines: list[str] = []

    def table(path: list[str], values: Mapping[str, Any]) -> None:
        lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        for key, value in values.items():
            if not isinstance(value, Mapping):
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        lines.append("")
        for key, value in values.items():
            if isinstance(value, Mapping):
                table([*path, key], value)

    for name, values in document.items():
        table([name], values)
    return "\n".join(lines)


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """C{base} with C{overrides}: dicts merged key by key, anything else replaced."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def endpoint(port: int, key: str | None = None, cert: str | None = None) -> str:
    """
    The Twisted endpoint string for TCP on 127.0.0.1:C{port}, or TLS with
    the PEM files C{key} and C{cert}.
    """
    if key is None or cert is None:
        return f"tcp:{port}:interface=127.0.0.1"
    for path in (key, cert):
        if ":" in path or "\\" in path:
            raise ValueError(f"{path!r}: endpoint strings would need escaping")
    return f"ssl:{port}:privateKey={key}:certKey={cert}:interface=127.0.0.1"


def base_settings(port: int) -> dict[str, Any]:
    """
    The harness's base configuration: suffix L{SUFFIX}, DNS on
    127.0.0.1:C{port}, an SQLite store beside the file, poll interval 0.2 s,
    and no HTTP or GnuDIP listener (their defaults are fixed ports) unless
    an override adds one; the GnuDIP HTTP key beside the file too.
    """
    return {
        "service": {"suffix": SUFFIX, "poll_interval": 0.2},
        "http": {"listen": []},
        "gnudip": {"listen": [], "http_key_file": "gnudip-http.key"},
        "store": {"backend": "sqlite", "path": "users.sqlite"},
        "dns": {
            "listen": [f"127.0.0.1:{port}"],
            "nameservers": [f"ns1.{SUFFIX}"],
            "glue": {f"ns1.{SUFFIX}": ["127.0.0.1"]},
        },
    }


def write_config(directory: str, port: int, name: str = "dyndns.toml", **overrides: Any) -> str:
    """L{base_settings} with C{overrides} (see L{merge}) as C{directory}/C{name}; its path."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(toml_document(merge(base_settings(port), overrides)))
    return path


# -- the server


def _answers(port: int, name: str) -> bool:
    """
    Whether 127.0.0.1:C{port} gives NXDOMAIN or NOERROR for C{name} A (before
    the store is loaded the resolver answers SERVFAIL).
    """
    query = dns.message.make_query(name, "A")
    query.flags &= ~dns.flags.RD
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.3)
    except (dns.exception.Timeout, OSError):
        return False
    return reply.rcode() in (dns.rcode.NXDOMAIN, dns.rcode.NOERROR)


def _accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:C{port}."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


class LoggedProcess:
    """
    A child process whose output goes to the file C{log_path} (never a pipe,
    so a chatty process cannot block on a full pipe); L{stop} ends it.
    """

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

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


@attrs.frozen
class Account:
    """A user that L{Server.add_user} made: its id, password and TSIG key (if any)."""

    id: str
    password: str
    tsig: TSIGKey | None = None

    @property
    def name(self) -> str:
        """The user's main name, C{<id>.<suffix>}."""
        return f"{self.id}.{SUFFIX}"


class Server(LoggedProcess):
    """
    A C{twistd -n --pidfile= dyndns --config FILE} with its folder: the
    configuration (see L{write_config}; rewritten by L{configure}), its SQLite
    store, the free ports of DNS (C{port}) and of each of C{listeners} (any
    of L{LISTENERS}; C{https} gets a certificate made for the run, C{http} a
    base URL with C{base_path} unless it is None), and the log C{twistd.log}
    (see L{LoggedProcess}). Whoever calls L{start} must make sure L{stop}
    runs.
    """

    def __init__(
        self,
        directory: str,
        *,
        listeners: Sequence[str] = (),
        base_path: str | None = BASE_PATH,
        avoid_ports: Iterable[int] = (),
        **overrides: Any,
    ) -> None:
        unknown = set(listeners) - set(LISTENERS)
        if unknown:
            raise ValueError(f"unknown listeners {sorted(unknown)}")
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.port, *ports = free_ports(1 + len(listeners), avoid_ports)
        self.ports = dict(zip(listeners, ports))
        self.key = self.cert = None
        if "https" in self.ports:
            self.key, self.cert = make_certificate(self.directory)
        self.overrides: dict[str, Any] = {}
        self.config = os.path.join(self.directory, "dyndns.toml")
        super().__init__(os.path.join(self.directory, "twistd.log"))
        self.configure(**merge(self._listener_settings(base_path), overrides))

    def _listener_settings(self, base_path: str | None) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        web = [
            endpoint(self.ports[name], *((self.key, self.cert) if name == "https" else ()))
            for name in ("http", "https")
            if name in self.ports
        ]
        if web:
            settings["http"] = {"listen": web}
            if base_path is not None and "http" in self.ports:
                settings["http"]["base_url"] = f"http://127.0.0.1:{self.http_port}{base_path}"
        for name in ("gnudip", "admin"):
            if name in self.ports:
                settings[name] = {"listen": [endpoint(self.ports[name])]}
        return settings

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    @property
    def https_port(self) -> int:
        return self.ports["https"]

    @property
    def gnudip_port(self) -> int:
        return self.ports["gnudip"]

    @property
    def admin_port(self) -> int:
        return self.ports["admin"]

    def configure(self, **overrides: Any) -> None:
        """Merge C{overrides} into the configuration and write it again."""
        self.overrides = merge(self.overrides, overrides)
        write_config(self.directory, self.port, **self.overrides)

    # -- the CLI and users

    def cli(self, *args: str, input: str | None = None) -> str:
        """C{dyndns ARGS} on this configuration; must exit 0. Returns stdout."""
        return cli_ok(self.config, *args, input=input)

    def run_cli(self, *args: str, input: str | None = None) -> tuple[int, str, str]:
        return run_cli(self.config, *args, input=input)

    def add_user(
        self,
        user_id: str,
        password: str,
        *,
        gnudip: bool = False,
        tsig: tuple[str, str] | None = None,
        tsig_from_password: bool = False,
        offline_ip: Sequence[str] = (),
        hosts: Sequence[str] = (),
        address: Sequence[str] = (),
    ) -> Account:
        """
        C{dyndns user add}: with the GnuDIP verifier (C{gnudip}), a TSIG key
        (C{tsig}, (algorithm, secret), or the one derived from the password),
        offline IPs and additional names; then C{dyndns user update} to
        C{address} if given.
        """
        args = ["user", "add", user_id, "--password", password]
        key = None
        if gnudip:
            args.append("--gnudip")
        if tsig is not None:
            args += ["--tsig-secret", tsig[1], "--tsig-algorithm", tsig[0]]
            key = TSIGKey(tsig[0], f"{user_id}.{SUFFIX}.", tsig[1])
        if tsig_from_password:
            args.append("--tsig-from-password")
            secret = base64.b64encode(hashlib.md5(password.encode()).digest()).decode()
            key = TSIGKey("hmac-md5", f"{user_id}.{SUFFIX}.", secret)
        for ip in offline_ip:
            args += ["--offline-ip", ip]
        for host in hosts:
            args += ["--host", host]
        self.cli(*args)
        if address:
            self.cli("user", "update", user_id, *address)
        return Account(user_id, password, key)

    def add_admin(self, name: str, password: str, digest: str | None = None) -> None:
        """An admin user (its hash from C{dyndns hash-password} unless C{digest})."""
        if digest is None:
            digest = self.cli("hash-password", "--password", password).strip()
        self.configure(admin={"users": {name: digest}})

    # -- the process

    def start(self, launcher: Sequence[str] = (), pass_fds: Sequence[int] = ()) -> float:
        """
        Start and wait until the store is loaded, DNS answers and every
        listener accepts connections; returns the seconds that took. On
        failure the process is stopped and AssertionError (with the log)
        raised. A C{launcher} command runs twistd (its arguments follow),
        with the descriptors C{pass_fds} inherited.
        """
        if self.process is not None:
            raise AssertionError("already running")
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*launcher, *twistd_command(), "-n", "--pidfile=", "dyndns", "--config", self.config],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
                pass_fds=pass_fds,
            )
        try:
            return self._wait_ready(started)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, started: float) -> float:
        assert self.process is not None
        probe = f"probe-not-a-user.{SUFFIX}"
        deadline = started + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited with {self.process.returncode}:\n{self.read_log()}")
            if _answers(self.port, probe) and all(_accepts(p) for p in self.ports.values()):
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"twistd did not answer within {START_TIMEOUT} s:\n{self.read_log()}")


# -- the base classes


class ServerTestCase(SynchronousTestCase):
    """
    Tests that drive a L{Server}: L{make_server} makes one per test (stopped
    in the test's cleanup); the assertions ask C{self.server} with dig.
    """

    #: (program, Debian package) every test of the class needs.
    tools: ClassVar[tuple[tuple[str, str], ...]] = (("dig", "bind9-dnsutils"),)
    server: Server

    @classmethod
    def require_tools(cls) -> None:
        for program, package in cls.tools:
            require_tool(program, package)

    def make_server(self, **options: Any) -> Server:
        """A L{Server} (not started) in a folder of this test: C{options} as L{Server} takes them."""
        self.require_tools()
        self.server = Server(self.mktemp(), **options)
        self.addCleanup(self.server.stop)
        return self.server

    def served(self, name: str, rtype: str = "A", *opts: str) -> DigResult:
        """dig C{self.server} for C{name} C{rtype}."""
        return dig(self.server.port, name, rtype, *opts)

    def wait_served(
        self, name: str, rtype: str, accept: Callable[[DigResult], object], within: float = CHANGE_LIMIT
    ) -> tuple[DigResult, float]:
        """
        dig every 0.1 s until C{accept(result)} or C{within} seconds passed;
        returns (last result, seconds waited).
        """
        last: list[DigResult] = []

        def probe() -> bool:
            last[:] = [self.served(name, rtype)]
            return bool(accept(last[0]))

        _, elapsed = wait_for(probe, within, interval=0.1)
        return last[0], elapsed

    def assertServes(self, name: str, rtype: str, expected: list[str], within: float = 0.0) -> DigResult:
        """
        dig shows C{name} with exactly C{expected} (NOERROR): at once, or
        asked again until it does for at most C{within} seconds.
        """
        result, _ = self.wait_served(name, rtype, lambda r: r.status == "NOERROR" and r.data(rtype) == expected, within)
        self.assertEqual(result.status, "NOERROR", result.output or result.error)
        self.assertEqual(result.data(rtype), expected, result.output)
        return result

    def assertUpdates(self, key: TSIGKey, commands: Sequence[str], **options: bool) -> str:
        """
        nsupdate (see L{nsupdate}, C{options} too) with C{key} on C{commands}
        succeeds: exit 0 and a NOERROR reply. Returns all it printed.
        """
        rc, output = nsupdate(self.server.port, key, commands, **options)
        self.assertEqual(rc, 0, output)
        self.assertIn("status: NOERROR", output)
        return output

    def assertTwistdRefuses(self, config: str, *expected: str) -> str:
        """
        twistd on C{config} exits with status 1 within REFUSAL_LIMIT, having
        printed exactly one line on standard error (no usage block, no
        traceback) that names C{config} and each of C{expected}; returns it.
        """
        started = time.monotonic()
        rc, out, err = run_twistd_once(config)
        self.assertEqual(rc, 1, out + err)
        self.assertNotIn("Traceback", out + err)
        self.assertNotIn("Usage:", out + err)
        lines = err.strip().splitlines()
        self.assertEqual(len(lines), 1, out + err)
        message = lines[0]
        self.assertTrue(message.startswith("twistd dyndns: "), message)
        for part in (config, *expected):
            self.assertIn(part, message, out + err)
        self.assertLess(time.monotonic() - started, REFUSAL_LIMIT)
        return message


class SharedServerTestCase(ServerTestCase):
    """
    One started L{Server} for the whole class: made from C{server_options}
    in a temporary folder, given users and more configuration by
    L{prepare}, stopped and removed after the last test.
    """

    server_options: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def prepare(cls, server: Server) -> None:
        """Add users or configuration before the server starts (nothing by default)."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.require_tools()
        directory = tempfile.mkdtemp(prefix="dyndns-integration-")
        try:
            cls.server = Server(directory, **cls.server_options)
            cls.prepare(cls.server)
            cls.server.start()
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.server.stop()
        shutil.rmtree(cls.server.directory, ignore_errors=True)
