"""
Helpers for the integration tests: a real C{twistd -n dyndns} process on a
temporary configuration, the C{dyndns} CLI as a subprocess, C{dig} with its
output parsed, raw HTTP exchanges, C{curl}, and the real C{ddclient} inside a
loopback guard.

Everything talks to 127.0.0.1 only, every subprocess call has a timeout, and
every long-running process is stopped (SIGTERM, then SIGKILL) in the test's
cleanup.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
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

from twisted.trial.unittest import SkipTest

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
#: Bound for one raw HTTP exchange (connect, send, read to the end).
HTTP_TIMEOUT = 10.0
#: Bound for one curl run (curl itself gives up after --max-time 10).
CURL_TIMEOUT = 20.0
#: Bound for one ddclient run (its own timeout= is 10 s per connection).
DDCLIENT_TIMEOUT = 30.0
#: Bound for the loopback guard's own checks (unshare -m true, cat).
GUARD_TIMEOUT = 10.0


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
    http_listen: Sequence[str] = (),
    base_url: str | None = None,
    extra_http: str = "",
) -> str:
    """
    A configuration in C{directory}: suffix dyn.example.com, DNS on
    127.0.0.1:C{port}, an SQLite store in the same folder, poll interval
    0.2 s, and host zones C{(origin, file)}. With C{http_listen} (Twisted
    endpoint strings, see L{http_endpoint}) there is an C{[http]} section
    with those listeners, C{base_url} and the lines C{extra_http}.
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
    if http_listen or base_url is not None or extra_http:
        lines += [
            "[http]",
            f"listen = [{', '.join(_toml_string(e) for e in http_listen)}]",
        ]
        if base_url is not None:
            lines.append(f"base_url = {_toml_string(base_url)}")
        lines += [extra_http, ""]
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def _toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text)


def http_endpoint(port: int, key: str | None = None, cert: str | None = None) -> str:
    """
    The Twisted endpoint string for HTTP on 127.0.0.1:C{port}, or HTTPS with
    the PEM files C{key} and C{cert}.
    """
    if key is None or cert is None:
        return f"tcp:{port}:interface=127.0.0.1"
    for path in (key, cert):
        if ":" in path or "\\" in path:
            raise ValueError(f"{path!r}: endpoint strings would need escaping")
    return f"ssl:{port}:privateKey={key}:certKey={cert}:interface=127.0.0.1"


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

    @param http_ports: HTTP(S) ports of the configuration; L{start} also
        waits until each accepts connections.
    """

    def __init__(self, config: str, port: int, http_ports: Sequence[int] = ()) -> None:
        self.config = os.path.abspath(config)
        self.port = port
        self.http_ports = tuple(http_ports)
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
        # HTTP listeners (if any) must accept connections too.
        assert self.process is not None
        probe = f"probe-not-a-user.{SUFFIX}"
        deadline = started + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"twistd exited with {self.process.returncode}:\n{self.read_log()}"
                )
            if _query_status(self.port, probe) in (
                dns.rcode.NXDOMAIN, dns.rcode.NOERROR
            ) and all(_accepts(p) for p in self.http_ports):
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


def _accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:C{port}."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def start_twistd(
    testcase, config: str, port: int, http_ports: Sequence[int] = ()
) -> Twistd:
    """Start a L{Twistd} that the test's cleanup stops."""
    server = Twistd(config, port, http_ports)
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


# -- HTTP over a raw socket


@attrs.frozen
class HTTPResponse:
    """One HTTP response as it came off the wire."""

    version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        """The first value of header C{name} (any case), or None."""
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def parse_http_response(data: bytes) -> HTTPResponse:
    """
    Split a complete response (status line, CRLF headers, body) as read
    until the server closed. AssertionError if it is not HTTP at all.
    """
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError(f"no end of headers in the response: {data[:500]!r}")
    lines = head.decode("iso-8859-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        raise AssertionError(f"not an HTTP status line: {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise AssertionError(f"malformed header line {line!r}")
        headers.append((name.strip(), value.strip()))
    return HTTPResponse(version, int(code), reason, tuple(headers), body, data)


def http_exchange(
    port: int, request: bytes, tls: ssl.SSLContext | None = None
) -> HTTPResponse:
    """
    Send C{request} exactly as given to 127.0.0.1:C{port} (over TLS with
    C{tls}, checking the certificate for 127.0.0.1), read until the server
    closes, and parse the answer. The whole exchange is bounded by
    HTTP_TIMEOUT; the request must ask for the connection to close
    (HTTP/1.0, or C{Connection: close}).
    """
    deadline = time.monotonic() + HTTP_TIMEOUT
    sock: socket.socket = socket.create_connection(("127.0.0.1", port), timeout=HTTP_TIMEOUT)
    try:
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(request)
        chunks: list[bytes] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no complete answer within {HTTP_TIMEOUT} s: {b''.join(chunks)[:500]!r}")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    return parse_http_response(b"".join(chunks))


def request_credentials(request: bytes) -> tuple[str, str] | None:
    """The user and password of a raw request's C{Authorization: Basic}, if any."""
    head = request.partition(b"\r\n\r\n")[0].decode("iso-8859-1")
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        scheme, _, token = value.strip().partition(" ")
        if name.strip().lower() == "authorization" and scheme.lower() == "basic":
            user, _, password = base64.b64decode(token).decode("utf-8").partition(":")
            return user, password
    return None


def gnudip_tcp_from(
    port: int, source: str, user: str, password: str, address: str, timeout: float = 10.0
) -> tuple[str, bytes]:
    """
    One GnuDIP TCP exchange (code 0 with C{address}) from C{source}, a
    127.0.0.x address: read the salt, send the line, read the reply until the
    server closes. Returns (salt, reply).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as s:
        data = b""
        while b"\n" not in data:
            chunk = s.recv(1024)
            if not chunk:
                raise AssertionError(f"closed before the salt: {data!r}")
            data += chunk
        salt = data.partition(b"\n")[0].decode()
        md5 = hashlib.md5(password.encode()).hexdigest()
        proof = hashlib.md5(f"{md5}.{salt}".encode()).hexdigest()
        s.sendall(f"{user}:{proof}:{SUFFIX}:0:{address}\n".encode())
        reply = b""
        while chunk := s.recv(1024):
            reply += chunk
    return salt, reply


def basic_request(path: str, user: str, password: str, host: str = "127.0.0.1") -> bytes:
    """A minimal HTTP/1.0 GET with Basic credentials, as inadyn sends it."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return (
        f"GET {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Basic {token}\r\n"
        "User-Agent: dyndns-tests\r\n\r\n"
    ).encode()


# -- TLS


def make_certificate(directory: str) -> tuple[str, str]:
    """
    A fresh self-signed P-256 key and certificate for 127.0.0.1 and
    localhost (valid from a day ago for two days) in C{directory}; returns
    (key path, certificate path), both PEM.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path = os.path.join(directory, "server.key")
    cert_path = os.path.join(directory, "server.crt")
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
    os.chmod(key_path, 0o600)
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def client_tls(cert: str) -> ssl.SSLContext:
    """A client context that trusts only C{cert} (and checks the host)."""
    return ssl.create_default_context(cafile=cert)


# -- curl


def _loopback_url(url: str) -> bool:
    return url.startswith(("http://127.0.0.1:", "https://127.0.0.1:"))


def run_curl(*args: str) -> tuple[int, HTTPResponse | None, str]:
    """
    C{curl -sS -i} with C{args} (one URL, which must be on 127.0.0.1; no
    proxy from the environment is ever used). Returns (exit code, the parsed
    response or None, stderr).
    """
    program = require_tool("curl", "curl")
    urls = [a for a in args if "://" in a]
    if len(urls) != 1 or not _loopback_url(urls[0]):
        raise ValueError(f"curl only ever talks to 127.0.0.1, got {urls!r}")
    done = subprocess.run(
        [program, "-sS", "-i", "--http1.1", "--max-time", "10", "--noproxy", "*", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=CURL_TIMEOUT,
        check=False,
    )
    response = parse_http_response(done.stdout) if done.stdout else None
    return done.returncode, response, done.stderr.decode("utf-8", "replace")


# -- the loopback guard and ddclient


def _unavailable(message: str) -> None:
    """Skip (locally) or fail (in CI, DYNDNS_REQUIRE_TOOLS=1), like require_tool."""
    if os.environ.get("DYNDNS_REQUIRE_TOOLS") == "1":
        raise AssertionError(message + " and DYNDNS_REQUIRE_TOOLS=1")
    raise SkipTest(message)


_guard_problem: list[str | None] = []

_GUARD_SCRIPT = (
    'mount --bind "$1/hosts" /etc/hosts && '
    'mount --bind "$1/resolv.conf" /etc/resolv.conf && '
    'shift && exec "$@"'
)
GUARD_HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
GUARD_RESOLV = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"


def _guard_check() -> str | None:
    """Why the loopback guard cannot run here, or None if it can."""
    if not _guard_problem:
        unshare = shutil.which("unshare")
        if os.geteuid() != 0:
            problem: str | None = "the loopback guard needs root (unshare -m, mount --bind)"
        elif unshare is None:
            problem = "the loopback guard needs unshare (Debian package util-linux)"
        else:
            try:
                done = subprocess.run(
                    [unshare, "-m", "true"], capture_output=True, text=True,
                    stdin=subprocess.DEVNULL, timeout=GUARD_TIMEOUT, check=False,
                )
                problem = None if done.returncode == 0 else (
                    f"unshare -m does not work here: {done.stderr.strip()}"
                )
            except subprocess.TimeoutExpired:
                problem = "unshare -m true did not finish"
        _guard_problem.append(problem)
    return _guard_problem[0]


def require_loopback_guard() -> None:
    """Skip (locally) or fail (in CI) unless the loopback guard works here."""
    problem = _guard_check()
    if problem is not None:
        _unavailable(problem)


def guarded(directory: str, command: Sequence[str]) -> list[str]:
    """
    C{command} run inside the loopback guard (see ../shared/clients/lib.sh
    C{run_guarded}): a private mount namespace in which /etc/resolv.conf
    names only 127.0.0.1 and /etc/hosts only knows localhost, so a client
    that falls back to a public server by name can only reach this machine.
    The guard's files go to C{directory}/guard. Call
    L{require_loopback_guard} first.
    """
    folder = os.path.join(os.path.abspath(directory), "guard")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "hosts"), "w") as f:
        f.write(GUARD_HOSTS)
    with open(os.path.join(folder, "resolv.conf"), "w") as f:
        f.write(GUARD_RESOLV)
    unshare = shutil.which("unshare") or "unshare"
    return [unshare, "-m", "--", "sh", "-c", _GUARD_SCRIPT, "sh", folder, *command]


def run_ddclient(
    directory: str,
    server_port: int,
    login: str,
    password: str,
    hosts: Sequence[str],
    *,
    ip: str | None = None,
    web: str | None = None,
) -> tuple[int, str]:
    """
    Run the real ddclient once (C{-daemon=0 -foreground -force}, protocol
    dyndns2, no SSL) against 127.0.0.1:C{server_port} inside the loopback
    guard, with C{use=ip, ip=IP} or C{use=web, web=URL} (a 127.0.0.1 URL).
    Its configuration and cache live in C{directory} (fresh for each run).
    Returns (exit code, everything it printed).
    """
    program = require_tool("ddclient", "ddclient")
    require_loopback_guard()
    if (ip is None) == (web is None):
        raise ValueError("give exactly one of ip and web")
    if web is not None and not web.startswith("http://127.0.0.1:"):
        raise ValueError(f"web={web!r}: ddclient only ever talks to 127.0.0.1")
    if any(c in login + password for c in "'\\\n") or not login:
        raise ValueError("ddclient.conf cannot carry this login/password")
    os.makedirs(directory, exist_ok=True)
    conf = os.path.join(directory, "ddclient.conf")
    cache = os.path.join(directory, "ddclient.cache")
    if os.path.exists(cache):
        os.unlink(cache)
    lines = [
        "daemon=0",
        "timeout=10",
        "ssl=no",
        "protocol=dyndns2",
        f"use=ip, ip={ip}" if ip is not None else f"use=web, web={web}",
        f"server=127.0.0.1:{server_port}",
        "script=/nic/update",
        f"login={login}",
        f"password='{password}'",
        ",".join(hosts),
    ]
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(conf, 0o600)
    command = guarded(directory, [
        program, "-daemon=0", "-foreground", "-verbose", "-noquiet", "-force",
        "-file", conf, "-cache", cache,
    ])
    done = subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=DDCLIENT_TIMEOUT,
        check=False,
        cwd=directory,
    )
    return done.returncode, done.stdout


__all__ = [
    "DigResult",
    "GUARD_HOSTS",
    "GUARD_RESOLV",
    "HTTPResponse",
    "Record",
    "SUFFIX",
    "Twistd",
    "basic_request",
    "cli_ok",
    "client_tls",
    "dig",
    "free_port",
    "guarded",
    "http_endpoint",
    "http_exchange",
    "make_certificate",
    "parse_dig",
    "parse_http_response",
    "request_credentials",
    "require_loopback_guard",
    "run_curl",
    "run_ddclient",
    "run_cli",
    "run_twistd_help",
    "run_twistd_once",
    "start_twistd",
    "twistd_command",
    "wait_for",
    "write_config",
]
