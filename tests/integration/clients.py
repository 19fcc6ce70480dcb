"""
The real clients of the integration tests, each run against 127.0.0.1 only
and each bounded by a timeout: C{dig} (its output parsed), C{nsupdate} with a
TSIG key, C{curl}, raw HTTP exchanges (from any 127.0.0.x source), GnuDIP
over TCP and over HTTP as gdipc.pl speaks them, and the real C{ddclient}
inside the loopback guard.

A missing program skips or fails the test by the rule of L{tests.tools}.
The server side (a running twistd, its configuration and users) is in
L{tests.integration.harness}.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from typing import Sequence

import attrs

from tests.test_gnudip import client_hash
from tests.tools import require_tool, unavailable

#: The suffix of every test configuration: the zone the clients update.
SUFFIX = "dyn.example.com"
#: Bound for one dig run (it retries nothing: +tries=1 +time=2).
DIG_TIMEOUT = 10.0
#: Bound for one nsupdate run (it gives up itself after -t 5, -u 2 -r 1).
NSUPDATE_TIMEOUT = 30.0
#: Bound for one raw HTTP exchange (connect, send, read to the end).
HTTP_TIMEOUT = 10.0
#: Bound for one GnuDIP TCP exchange (connect, salt, line, reply, close).
GNUDIP_TIMEOUT = 10.0
#: Bound for one curl run (curl itself gives up after --max-time 10).
CURL_TIMEOUT = 20.0
#: Bound for one ddclient run (its own timeout= is 10 s per connection).
DDCLIENT_TIMEOUT = 30.0
#: Bound for the loopback guard's own checks (unshare -m true, cat).
GUARD_TIMEOUT = 10.0


# -- dig


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
    C{error} holds dig's complaint); C{stderr} is what dig wrote there.
    """

    status: str | None
    flags: frozenset[str]
    answer: tuple[Record, ...]
    authority: tuple[Record, ...]
    output: str
    error: str = ""
    stderr: str = ""

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
            flags = frozenset(line[len(";; flags:") :].split(";", 1)[0].split())
        elif line.startswith(";; ") and line.endswith(" SECTION:"):
            current = line[3 : -len(" SECTION:")]
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


def dig(port: int, name: str, qtype: str = "A", *opts: str, through: Sequence[str] = ()) -> DigResult:
    """
    Ask 127.0.0.1:C{port} with dig (no recursion wanted, one try, two
    seconds) and parse the reply. Extra dig options (C{+tcp}, C{+ignore},
    C{+notcp}, C{+noedns}, C{-b SOURCE}...) come last, so they win.
    C{through} prefixes the command (e.g. nsenter into a container's
    network namespace, whose loopback is then the one asked).
    """
    program = require_tool("dig", "bind9-dnsutils")
    command = [
        *through,
        program,
        "@127.0.0.1",
        "-p",
        str(port),
        name,
        qtype,
        "+norec",
        "+time=2",
        "+tries=1",
        "+nocmd",
        "+nostats",
        *opts,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=DIG_TIMEOUT, check=False)
    result = attrs.evolve(parse_dig(done.stdout), stderr=done.stderr)
    if result.status is None:
        result = attrs.evolve(result, error=(done.stdout + done.stderr).strip())
    return result


# -- nsupdate


@attrs.frozen
class TSIGKey:
    """A user's TSIG key as nsupdate names it (C{key ALGORITHM:NAME SECRET})."""

    algorithm: str
    name: str
    secret: str


def replace_address(name: str, rtype: str, address: str, ttl: int = 60) -> list[str]:
    """The nsupdate commands that make C{address} the only C{rtype} of C{name}."""
    return [f"update delete {name} {rtype}", f"update add {name} {ttl} {rtype} {address}"]


def nsupdate(
    port: int, key: TSIGKey, commands: Sequence[str], *, tcp: bool = False, debug: bool = False
) -> tuple[int, str]:
    """
    Run nsupdate against 127.0.0.1:C{port}, zone L{SUFFIX}, signing with
    C{key}; C{tcp} adds C{-v}, C{debug} adds C{-D}. The key goes in on
    standard input, never on the command line. Returns (exit code, all it
    printed).
    """
    program = require_tool("nsupdate", "bind9-dnsutils")
    script = "\n".join(
        [
            f"server 127.0.0.1 {port}",
            f"zone {SUFFIX}",
            f"key {key.algorithm}:{key.name} {key.secret}",
            *commands,
            "send",
            "answer",
            "",
        ]
    )
    command = [program, *(["-D"] if debug else []), "-t", "5", "-u", "2", "-r", "1"]
    if tcp:
        command.append("-v")
    done = subprocess.run(
        command,
        input=script,
        capture_output=True,
        text=True,
        timeout=NSUPDATE_TIMEOUT,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


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


def _receive_all(sock: socket.socket, deadline: float) -> bytes:
    """Everything C{sock} sends until it closes; AssertionError past C{deadline}."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no complete answer in time: {b''.join(chunks)[:500]!r}")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def http_exchange(
    port: int, request: bytes, tls: ssl.SSLContext | None = None, source: str | None = None
) -> HTTPResponse:
    """
    Send C{request} exactly as given to 127.0.0.1:C{port} (from C{source},
    a 127.0.0.x address, if given; over TLS with C{tls}, checking the
    certificate for 127.0.0.1), read until the server closes, and parse the
    answer. The whole exchange is bounded by HTTP_TIMEOUT; the request must
    ask for the connection to close (HTTP/1.0, or C{Connection: close}).
    """
    deadline = time.monotonic() + HTTP_TIMEOUT
    sock: socket.socket = socket.create_connection(
        ("127.0.0.1", port),
        timeout=HTTP_TIMEOUT,
        source_address=(source, 0) if source is not None else None,
    )
    try:
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="127.0.0.1")
        sock.sendall(request)
        data = _receive_all(sock, deadline)
    finally:
        sock.close()
    return parse_http_response(data)


def get_request(path: str, user: str | None = None, password: str | None = None, host: str = "127.0.0.1") -> bytes:
    """
    A minimal HTTP/1.0 GET, as inadyn sends it: with Basic credentials when
    C{user} is given.
    """
    lines = [f"GET {path} HTTP/1.0", f"Host: {host}"]
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        lines.append(f"Authorization: Basic {token}")
    lines.append("User-Agent: dyndns-tests")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


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
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
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
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
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


def run_curl(*args: str, source: str | None = None) -> tuple[int, HTTPResponse | None, str]:
    """
    C{curl -sS -i} with C{args} (one URL, which must be on 127.0.0.1; no
    proxy from the environment is ever used), from the local address
    C{source} if given. Returns (exit code, the parsed response or None,
    stderr).
    """
    program = require_tool("curl", "curl")
    urls = [a for a in args if "://" in a]
    if len(urls) != 1 or not _loopback_url(urls[0]):
        raise ValueError(f"curl only ever talks to 127.0.0.1, got {urls!r}")
    interface = ["--interface", source] if source is not None else []
    done = subprocess.run(
        [program, "-sS", "-i", "--http1.1", "--max-time", "10", "--noproxy", "*", *interface, *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=CURL_TIMEOUT,
        check=False,
    )
    response = parse_http_response(done.stdout) if done.stdout else None
    return done.returncode, response, done.stderr.decode("utf-8", "replace")


# -- GnuDIP, as gdipc.pl speaks it


def gnudip_tcp(
    port: int,
    user: str,
    password: str,
    code: str,
    address: str | None = None,
    *,
    source: str | None = None,
    timeout: float = GNUDIP_TIMEOUT,
) -> tuple[bytes, bytes]:
    """
    One GnuDIP TCP exchange as gdipc.pl makes it (from C{source}, a
    127.0.0.x address, if given): read the salt line, chomp it, send
    C{user:hash:domain:code[:address]} and LF, read the reply until the
    server closes. Returns (salt line with its LF, reply).
    """
    with socket.create_connection(
        ("127.0.0.1", port),
        timeout=timeout,
        source_address=(source, 0) if source is not None else None,
    ) as s:
        data = b""
        while b"\n" not in data:
            chunk = s.recv(1024)
            if not chunk:
                raise AssertionError(f"connection closed before the salt: {data!r}")
            data += chunk
        salt_line, _, reply = data.partition(b"\n")
        fields = [user, client_hash(password, salt_line.decode("ascii")), SUFFIX, code]
        if address is not None:
            fields.append(address)
        s.sendall(":".join(fields).encode("ascii") + b"\n")
        while chunk := s.recv(1024):
            reply += chunk
    return salt_line + b"\n", reply


_GDIPC_META = re.compile(r'^<meta name="(.*)" content="(.*)">$')


def gdipc_request(target: str, port: int) -> bytes:
    """The GET gdipc.pl sends for C{target} to 127.0.0.1:C{port}."""
    return (
        f"GET {target} HTTP/1.0\r\nUser-Agent: GnuDIP/2.3.5\r\nPragma: no-cache\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    ).encode("ascii")


def gdipc_meta(response: HTTPResponse) -> dict[str, str]:
    """The meta tags gdipc.pl finds (LF-split lines, anchored regex)."""
    found = {}
    for line in response.body.decode("iso-8859-1").split("\n"):
        match = _GDIPC_META.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def gnudip_login(salt: dict[str, str], user: str, password: str, reqc: str, addr: str | None = None) -> dict[str, str]:
    """The query of the second HTTP step, answering the salt page's meta tags C{salt}."""
    params = {
        "salt": salt["salt"],
        "time": salt["time"],
        "sign": salt["sign"],
        "user": user,
        "pass": client_hash(password, salt["salt"]),
        "domn": SUFFIX,
        "reqc": reqc,
    }
    if addr is not None:
        params["addr"] = addr
    return params


# -- the loopback guard and ddclient


_guard_problem: list[str | None] = []

_GUARD_SCRIPT = (
    'mount --bind "$1/hosts" /etc/hosts && mount --bind "$1/resolv.conf" /etc/resolv.conf && shift && exec "$@"'
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
                    [unshare, "-m", "true"],
                    capture_output=True,
                    text=True,
                    stdin=subprocess.DEVNULL,
                    timeout=GUARD_TIMEOUT,
                    check=False,
                )
                problem = None if done.returncode == 0 else (f"unshare -m does not work here: {done.stderr.strip()}")
            except subprocess.TimeoutExpired:
                problem = "unshare -m true did not finish"
        _guard_problem.append(problem)
    return _guard_problem[0]


def require_loopback_guard() -> None:
    """Skip (locally) or fail (in CI) unless the loopback guard works here."""
    problem = _guard_check()
    if problem is not None:
        unavailable(problem)


def guarded(directory: str, command: Sequence[str]) -> list[str]:
    """
    C{command} run inside the loopback guard: a private mount namespace in
    which /etc/resolv.conf names only 127.0.0.1 and /etc/hosts only knows
    localhost, so a client that falls back to a public server by name can
    only reach this machine. The guard's files go to C{directory}/guard.
    Call L{require_loopback_guard} first.
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
    command = guarded(
        directory,
        [
            program,
            "-daemon=0",
            "-foreground",
            "-verbose",
            "-noquiet",
            "-force",
            "-file",
            conf,
            "-cache",
            cache,
        ],
    )
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
