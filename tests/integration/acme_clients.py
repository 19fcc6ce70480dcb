"""
Real ACME components for DNS-01 tests: the test CA C{pebble} (Debian
package pebble) and the clients C{certbot} with its rfc2136 plugin
(certbot, python3-certbot-dns-rfc2136) or an acme-dns auth hook
(L{certbot_acme_dns}), and C{lego} (lego) with its C{rfc2136} and
C{httpreq} providers (Debian's lego lacks its acme-dns provider).

Everything stays on this machine: pebble listens on 127.0.0.1 and asks only
the DNS server given to L{Pebble.start} (C{-dnsserver 127.0.0.1:PORT}) for
the C{_acme-challenge} TXT records; the clients talk to pebble and to that
DNS server only (lego with C{--dns.resolvers 127.0.0.1:PORT
--dns.disable-cp}, certbot's plugin with C{dns_rfc2136_server = 127.0.0.1}),
and every one of them runs inside the loopback guard of
L{tests.integration.clients} (a mount namespace whose /etc/resolv.conf names
only 127.0.0.1), without proxy variables, and with a timeout.

A missing program or a machine without the guard skips or fails the test by
the rule of L{tests.tools}.

Typical use::

    pebble = Pebble(self.mktemp())
    pebble.start(dns_port)
    self.addCleanup(pebble.stop)
    run = certbot_rfc2136(pebble, self.mktemp(), ["alice.dyn.example"], dns_port, "key.", secret, "hmac-sha256")
    run.check()
    chain = read_chain(run.certificate)
    assert_chains_to(chain, pebble.root_pem())
    self.assertEqual(certificate_names(chain[0]), ["alice.dyn.example"])
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import ssl
import subprocess
import time
import urllib.request
from typing import Mapping, Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.trial.unittest import SkipTest

from tests.integration.clients import guarded, require_loopback_guard
from tests.integration.harness import LoggedProcess
from tests.tools import free_ports, require_tool

#: Bound for pebble to answer on its directory URL after it starts.
PEBBLE_START_TIMEOUT = 20.0
#: Bound for one HTTPS request to pebble (directory, management interface).
PEBBLE_REQUEST_TIMEOUT = 5.0
#: Bound for one ACME client run (account, order, challenges, certificate).
CLIENT_TIMEOUT = 120.0
#: The contact address of every test account (pebble sends no mail).
EMAIL = "test@example.invalid"
#: The providers of lego that L{lego_command} knows (lego 4.9.1 names).
LEGO_PROVIDERS = ("rfc2136", "acme-dns", "httpreq")

#: The environment pebble runs with: no sleeping before validation, real
#: validation (never "always valid"), no random badNonce rejections, and
#: no reuse of valid authorizations (every order validates afresh).
PEBBLE_ENV = {
    "PEBBLE_VA_NOSLEEP": "1",
    "PEBBLE_VA_ALWAYS_VALID": "0",
    "PEBBLE_WFE_NONCEREJECT": "0",
    "PEBBLE_AUTHZREUSE": "0",
}

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy")


def client_environment(extra: Mapping[str, str], home: str) -> dict[str, str]:
    """
    The environment of an ACME client: ours without any proxy variable
    (a proxy would be a way off this machine), C{NO_PROXY} for loopback,
    C{HOME} in the client's own folder (no ~/.config of the machine), plus
    C{extra}.
    """
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARIABLES}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["HOME"] = home
    env.update(extra)
    return env


# -- certificates


def _write_pem(path: str, data: bytes, private: bool = False) -> None:
    with open(path, "wb") as f:
        f.write(data)
    if private:
        os.chmod(path, 0o600)


def make_ca_and_server_certificate(directory: str) -> tuple[str, str, str]:
    """
    A fresh P-256 CA and a server certificate it signs for 127.0.0.1 and
    localhost (serverAuth), both valid from a day ago for two days, in
    C{directory}. Returns (CA certificate, server key, server certificate),
    PEM paths; the CA's key is not kept.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dyndns test CA for pebble's HTTPS")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = os.path.join(directory, "https-ca.crt")
    key_path = os.path.join(directory, "https.key")
    cert_path = os.path.join(directory, "https.crt")
    _write_pem(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_pem(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        private=True,
    )
    _write_pem(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return ca_path, key_path, cert_path


def read_chain(path: str) -> list[x509.Certificate]:
    """The certificates of the PEM file C{path}, in file order (leaf first in a fullchain)."""
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The DNS names of C{cert}'s subjectAltName, sorted."""
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(san.get_values_for_type(x509.DNSName))


def assert_chains_to(chain: Sequence[x509.Certificate], root_pem: bytes) -> None:
    """
    AssertionError unless C{chain} (leaf first) is signed link by link, its
    last certificate by the root C{root_pem}, and every certificate
    (root too) is valid now.
    """
    if not chain:
        raise AssertionError("empty certificate chain")
    root = x509.load_pem_x509_certificate(root_pem)
    now = datetime.datetime.now(datetime.timezone.utc)
    links = [*chain, root]
    for cert in links:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise AssertionError(f"{cert.subject.rfc4514_string()} is not valid now")
    for child, parent in zip(links, links[1:]):
        try:
            child.verify_directly_issued_by(parent)
        except Exception as e:  # InvalidSignature, or ValueError/TypeError for a key mismatch
            raise AssertionError(
                f"{child.subject.rfc4514_string()} is not signed by {parent.subject.rfc4514_string()}: {e!r}"
            ) from e


# -- pebble


class Pebble(LoggedProcess):
    """
    A pebble (the ACME test CA) of its own in C{directory}: its
    configuration, an HTTPS certificate from a CA made for the run
    (L{ca_bundle_path}, what clients must trust), and its log
    C{pebble.log} (see L{LoggedProcess}). L{start} runs it against a DNS
    server on 127.0.0.1; whoever calls it must make sure L{stop} runs.

    Its issuing root differs on every start: L{root_pem} fetches it from the
    management interface (C{/roots/0}).
    """

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        super().__init__(os.path.join(self.directory, "pebble.log"))
        self.port, self.management_port, self.http_port, self.tls_port = free_ports(4)
        self.ca_bundle_path, self.key_path, self.cert_path = make_ca_and_server_certificate(self.directory)
        self.config_path = os.path.join(self.directory, "pebble-config.json")
        self.dns_port: int | None = None
        self.command: list[str] = []

    @property
    def directory_url(self) -> str:
        """The ACME directory URL (what clients take as C{--server})."""
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def management_url(self) -> str:
        return f"https://127.0.0.1:{self.management_port}"

    def config(self) -> dict[str, object]:
        """Pebble's JSON configuration: every listener on 127.0.0.1."""
        return {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": self.cert_path,
                "privateKey": self.key_path,
                # Where pebble would connect for http-01 and tls-alpn-01
                # (never used here: DNS-01 only).
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }

    def tls_context(self) -> ssl.SSLContext:
        """A client context that trusts only pebble's HTTPS CA."""
        return ssl.create_default_context(cafile=self.ca_bundle_path)

    def get(self, url: str) -> bytes:
        """GET C{url} (one of pebble's HTTPS URLs) and return the body."""
        if not url.startswith("https://127.0.0.1:"):
            raise ValueError(f"{url!r}: pebble is on 127.0.0.1 only")
        # No proxy, whatever the environment says.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=self.tls_context())
        )
        with opener.open(url, timeout=PEBBLE_REQUEST_TIMEOUT) as response:
            body: bytes = response.read()
            return body

    def root_pem(self, index: int = 0) -> bytes:
        """Pebble's issuing root C{index} (PEM) from the management interface."""
        return self.get(f"{self.management_url}/roots/{index}")

    def intermediate_pem(self, index: int = 0) -> bytes:
        """Pebble's intermediate C{index} (PEM) from the management interface."""
        return self.get(f"{self.management_url}/intermediates/{index}")

    def start(self, dns_port: int) -> float:
        """
        Run pebble validating against the DNS server 127.0.0.1:C{dns_port}
        (inside the loopback guard) and wait until its directory answers;
        returns the seconds that took. On failure pebble is stopped and
        AssertionError (with its log) raised.
        """
        program = require_tool("pebble", "pebble")
        require_loopback_guard()
        if self.process is not None:
            raise AssertionError("pebble is already running")
        self.dns_port = dns_port
        with open(self.config_path, "w") as f:
            json.dump(self.config(), f, indent=2)
        self.command = [program, "-config", self.config_path, "-dnsserver", f"127.0.0.1:{dns_port}"]
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                guarded(self.directory, self.command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
                env=client_environment(PEBBLE_ENV, self.directory),
            )
        try:
            return self._wait_ready(started)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        try:
            directory = json.loads(self.get(self.directory_url))
            self.get(f"{self.management_url}/roots/0")
        except (OSError, ValueError, http.client.HTTPException):
            return False
        return "newOrder" in directory

    def _wait_ready(self, started: float) -> float:
        assert self.process is not None
        deadline = started + PEBBLE_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"pebble exited with {self.process.returncode}:\n{self.read_log()}")
            if self._ready():
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"pebble did not answer within {PEBBLE_START_TIMEOUT} s:\n{self.read_log()}")


# -- running a client


@attrs.frozen
class ACMERun:
    """
    One ACME client run: the command as run (inside the guard), the
    variables it got on top of the environment, its exit code, everything it
    printed, how long it took, and the issued certificate with its chain
    (leaf first, PEM) if the file exists.
    """

    command: tuple[str, ...]
    env: Mapping[str, str]
    returncode: int
    output: str
    seconds: float
    certificate: str | None
    log: str = ""

    def check(self) -> str:
        """AssertionError (with the output) unless the run succeeded with a certificate; its path."""
        if self.returncode != 0 or self.certificate is None:
            raise AssertionError(
                f"ACME client run failed (exit {self.returncode}, certificate {self.certificate}): "
                f"{' '.join(self.command)}\n{self.output}\n{self.log}"
            )
        return self.certificate


def _run_client(
    command: Sequence[str], extra_env: Mapping[str, str], workdir: str, certificate: str, timeout: float, log: str = ""
) -> ACMERun:
    full = guarded(workdir, command)
    started = time.monotonic()
    try:
        done = subprocess.run(
            full,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=timeout,
            check=False,
            cwd=workdir,
            env=client_environment(extra_env, workdir),
        )
    except subprocess.TimeoutExpired as e:
        output = e.output if isinstance(e.output, str) else (e.output or b"").decode(errors="replace")
        raise AssertionError(f"{command[0]} did not finish within {timeout} s:\n{output}") from e
    log_text = ""
    if done.returncode != 0 and log and os.path.exists(log):
        with open(log, errors="replace") as f:
            log_text = f.read()[-20000:]
    return ACMERun(
        command=tuple(full),
        env=dict(extra_env),
        returncode=done.returncode,
        output=done.stdout,
        seconds=time.monotonic() - started,
        certificate=certificate if os.path.exists(certificate) else None,
        log=log_text,
    )


# -- certbot


#: certbot-dns-rfc2136's names of the TSIG algorithms (it looks them up
#: exactly as written: "hmac-sha256" would silently fall back to HMAC-MD5).
CERTBOT_ALGORITHMS = ("HMAC-MD5", "HMAC-SHA1", "HMAC-SHA224", "HMAC-SHA256", "HMAC-SHA384", "HMAC-SHA512")


def certbot_rfc2136_command(
    pebble: Pebble,
    workdir: str,
    domains: Sequence[str],
    dns_port: int,
    key_name: str,
    key_secret: str,
    key_algorithm: str,
    *,
    propagation_seconds: int = 1,
    cert_name: str = "acme-test",
) -> tuple[list[str], dict[str, str], str]:
    """
    The certbot run of L{certbot_rfc2136}, made but not run: writes the
    credentials file (mode 600) into C{workdir} and returns (command,
    variables added to the environment, path of the fullchain it will
    write).
    """
    program = require_tool("certbot", "certbot")
    algorithm = key_algorithm.upper().rstrip(".")
    if algorithm not in CERTBOT_ALGORITHMS:
        raise ValueError(f"certbot-dns-rfc2136 knows no TSIG algorithm {key_algorithm!r}")
    for value in (key_name, key_secret):
        if "\n" in value or not value.strip():
            raise ValueError("the credentials file cannot carry this key")
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    credentials = os.path.join(workdir, "rfc2136.ini")
    with open(os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(
            "\n".join(
                [
                    "dns_rfc2136_server = 127.0.0.1",
                    f"dns_rfc2136_port = {dns_port}",
                    f"dns_rfc2136_name = {key_name}",
                    f"dns_rfc2136_secret = {key_secret}",
                    f"dns_rfc2136_algorithm = {algorithm}",
                    "",
                ]
            )
        )
    os.chmod(credentials, 0o600)
    command, fullchain = _certbot_certonly(program, pebble, workdir, domains, cert_name)
    command += [
        "--dns-rfc2136",
        "--dns-rfc2136-credentials",
        credentials,
        "--dns-rfc2136-propagation-seconds",
        str(propagation_seconds),
    ]
    env = {"REQUESTS_CA_BUNDLE": pebble.ca_bundle_path}
    return command, env, fullchain


def _certbot_certonly(
    program: str, pebble: Pebble, workdir: str, domains: Sequence[str], cert_name: str
) -> tuple[list[str], str]:
    """C{certbot certonly} from C{pebble} for C{domains}, its folders in C{workdir}; and the fullchain's path."""
    config_dir = os.path.join(workdir, "config")
    command = [
        program,
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--no-eff-email",
        "-m",
        EMAIL,
        "--server",
        pebble.directory_url,
        "--config-dir",
        config_dir,
        "--work-dir",
        os.path.join(workdir, "work"),
        "--logs-dir",
        os.path.join(workdir, "logs"),
        "--cert-name",
        cert_name,
    ]
    for domain in domains:
        command += ["-d", domain]
    return command, os.path.join(config_dir, "live", cert_name, "fullchain.pem")


#: The acme-dns client of L{certbot_acme_dns}: certbot's manual auth hook as
#: acme-dns documents its API (POST /update with X-Api-User, X-Api-Key and
#: {"subdomain", "txt"}); acme-dns has no delete, so there is no cleanup hook.
ACME_DNS_HOOK = """#!/bin/sh
set -eu
body=$(printf '{"subdomain": "%s", "txt": "%s"}' "$ACMEDNS_SUBDOMAIN" "$CERTBOT_VALIDATION")
exec curl -sS --fail-with-body --max-time 20 -X POST "${ACMEDNS_API}update" \
    -H "X-Api-User: $ACMEDNS_USER" -H "X-Api-Key: $ACMEDNS_KEY" -d "$body"
"""


def certbot_acme_dns(
    pebble: Pebble,
    workdir: str,
    domains: Sequence[str],
    api_base: str,
    user: str,
    key: str,
    subdomain: str,
    *,
    timeout: float = CLIENT_TIMEOUT,
) -> ACMERun:
    """
    C{certbot certonly --manual} for C{domains} from C{pebble}, each
    challenge value sent to the acme-dns API at C{api_base} (ending in
    C{/}) by L{ACME_DNS_HOOK} with C{user}, C{key} and C{subdomain}, inside
    the loopback guard.
    """
    require_loopback_guard()
    program = require_tool("certbot", "certbot")
    require_tool("curl", "curl")
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    hook = os.path.join(workdir, "acme-dns-hook.sh")
    with open(hook, "w") as f:
        f.write(ACME_DNS_HOOK)
    os.chmod(hook, 0o700)
    command, fullchain = _certbot_certonly(program, pebble, workdir, domains, "acme-test")
    command += ["--manual", "--preferred-challenges", "dns", "--manual-auth-hook", hook]
    env = {
        "REQUESTS_CA_BUNDLE": pebble.ca_bundle_path,
        "ACMEDNS_API": api_base,
        "ACMEDNS_USER": user,
        "ACMEDNS_KEY": key,
        "ACMEDNS_SUBDOMAIN": subdomain,
    }
    log = os.path.join(workdir, "logs", "letsencrypt.log")
    return _run_client(command, env, workdir, fullchain, timeout, log)


def certbot_rfc2136(
    pebble: Pebble,
    workdir: str,
    domains: Sequence[str],
    dns_port: int,
    key_name: str,
    key_secret: str,
    key_algorithm: str,
    *,
    propagation_seconds: int = 1,
    timeout: float = CLIENT_TIMEOUT,
) -> ACMERun:
    """
    C{certbot certonly --dns-rfc2136} for C{domains} from C{pebble}, the
    TXT records put by TSIG-signed RFC 2136 updates (key C{key_name},
    C{key_secret}, C{key_algorithm} like C{hmac-sha256}) to
    127.0.0.1:C{dns_port}, inside the loopback guard. Its configuration,
    work and log folders are in C{workdir}. On failure the L{ACMERun} has
    the tail of certbot's log too.
    """
    require_loopback_guard()
    command, env, fullchain = certbot_rfc2136_command(
        pebble,
        workdir,
        domains,
        dns_port,
        key_name,
        key_secret,
        key_algorithm,
        propagation_seconds=propagation_seconds,
    )
    log = os.path.join(os.path.abspath(workdir), "logs", "letsencrypt.log")
    return _run_client(command, env, os.path.abspath(workdir), fullchain, timeout, log)


# -- lego


def lego_rfc2136_env(dns_port: int, key_name: str, key_secret: str, key_algorithm: str) -> dict[str, str]:
    """
    lego's rfc2136 provider for 127.0.0.1:C{dns_port} with a TSIG key
    (C{key_algorithm} like C{hmac-sha256}, given to lego as the canonical
    name with its dot, C{hmac-sha256.}; lego's default is HMAC-SHA1), and
    short waits: it solves the challenges one after the other and sleeps
    RFC2136_SEQUENCE_INTERVAL (default 60 s) between them. lego 4.9.1 finds
    the zone by SOA queries to RFC2136_NAMESERVER and sends the UPDATE
    there over UDP.
    """
    algorithm = key_algorithm.lower().rstrip(".")
    if algorithm == "hmac-md5":
        algorithm = "hmac-md5.sig-alg.reg.int"
    return {
        "RFC2136_NAMESERVER": f"127.0.0.1:{dns_port}",
        "RFC2136_TSIG_KEY": key_name,
        "RFC2136_TSIG_SECRET": key_secret,
        "RFC2136_TSIG_ALGORITHM": algorithm + ".",
        "RFC2136_TTL": "60",
        "RFC2136_DNS_TIMEOUT": "5",
        "RFC2136_POLLING_INTERVAL": "1",
        "RFC2136_PROPAGATION_TIMEOUT": "30",
        "RFC2136_SEQUENCE_INTERVAL": "1",
    }


def lego_httpreq_env(endpoint: str, username: str = "", password: str = "", mode: str = "") -> dict[str, str]:
    """
    lego's httpreq provider: POSTs JSON C{{"fqdn", "value"}} (or with
    C{mode="RAW"} C{{"domain", "token", "keyAuth"}}) to C{endpoint}/present
    and C{endpoint}/cleanup, with Basic auth when both C{username} and
    C{password} are given. C{endpoint} must be on 127.0.0.1.
    """
    if not endpoint.startswith(("http://127.0.0.1:", "https://127.0.0.1:")):
        raise ValueError(f"{endpoint!r}: lego only ever talks to 127.0.0.1")
    env = {
        "HTTPREQ_ENDPOINT": endpoint,
        "HTTPREQ_HTTP_TIMEOUT": "10",
        "HTTPREQ_POLLING_INTERVAL": "1",
        "HTTPREQ_PROPAGATION_TIMEOUT": "30",
    }
    if mode:
        env["HTTPREQ_MODE"] = mode
    if username:
        env["HTTPREQ_USERNAME"] = username
    if password:
        env["HTTPREQ_PASSWORD"] = password
    return env


#: The Go package of each provider in lego's source tree.
_LEGO_PACKAGES = {"rfc2136": "rfc2136", "acme-dns": "acmedns", "httpreq": "httpreq"}
_lego_builds: dict[str, bytes] = {}


def lego_has_provider(provider: str) -> bool:
    """
    Whether the installed lego was built with C{provider}. C{lego dnshelp}
    lists every provider of the source, but Debian builds lego without the
    ones whose libraries Debian lacks (lego 4.9.1-1 of bookworm: acme-dns
    among them, see its changelog), and such a lego exits with
    "unrecognized DNS provider" only after it has asked the CA. The Go
    binary names each package it contains, so look there.
    """
    program = require_tool("lego", "lego")
    if program not in _lego_builds:
        with open(program, "rb") as f:
            _lego_builds[program] = f.read()
    marker = f"/providers/dns/{_LEGO_PACKAGES[provider]}.NewDNSProvider".encode()
    return marker in _lego_builds[program]


def require_lego_provider(provider: str) -> None:
    """
    Skip the test unless lego has C{provider} (L{lego_has_provider}). Not
    the skip-or-fail rule of L{tests.tools}: no package install can add a
    provider to Debian's lego, so CI skips too (with this reason).
    """
    if not lego_has_provider(provider):
        raise SkipTest(f"the installed lego was built without its {provider} provider (Debian's lego lacks it)")


def lego_certificate_path(workdir: str, domains: Sequence[str]) -> str:
    """Where lego puts the certificate with its chain: named after the first domain, C{*} as C{_}."""
    return os.path.join(os.path.abspath(workdir), "lego", "certificates", domains[0].replace("*", "_") + ".crt")


def lego_command(
    pebble: Pebble, workdir: str, domains: Sequence[str], provider: str, dns_port: int
) -> tuple[list[str], dict[str, str]]:
    """
    The lego run of L{lego_run}, made but not run: (command, variables
    added to the environment besides the provider's).
    """
    if provider not in LEGO_PROVIDERS:
        raise ValueError(f"unknown lego provider {provider!r} (one of {LEGO_PROVIDERS})")
    if not domains:
        raise ValueError("no domains")
    program = require_tool("lego", "lego")
    command = [
        program,
        "--accept-tos",
        "--email",
        EMAIL,
        "--server",
        pebble.directory_url,
        "--path",
        os.path.join(os.path.abspath(workdir), "lego"),
        "--dns",
        provider,
        # Recursive queries (zone SOA, CNAME following, the propagation
        # check) go to our DNS server only, and disable-cp skips the check
        # at the authoritative servers of the NS records (port 53).
        "--dns.resolvers",
        f"127.0.0.1:{dns_port}",
        "--dns.disable-cp",
        "--dns-timeout",
        "5",
        "--http-timeout",
        "30",
    ]
    for domain in domains:
        command += ["--domains", domain]
    command.append("run")
    return command, {"LEGO_CA_CERTIFICATES": pebble.ca_bundle_path}


def lego_run(
    pebble: Pebble,
    workdir: str,
    domains: Sequence[str],
    provider: str,
    env: Mapping[str, str],
    dns_port: int,
    *,
    timeout: float = CLIENT_TIMEOUT,
) -> ACMERun:
    """
    C{lego ... run} for C{domains} from C{pebble} with the DNS provider
    C{provider} (one of L{LEGO_PROVIDERS}) configured by C{env} (see
    L{lego_rfc2136_env}, L{lego_httpreq_env}),
    resolving only at 127.0.0.1:C{dns_port}, inside the loopback guard; its
    account and certificates go to C{workdir}/lego.
    """
    require_loopback_guard()
    require_lego_provider(provider)
    command, extra = lego_command(pebble, workdir, domains, provider, dns_port)
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    return _run_client(command, {**env, **extra}, workdir, lego_certificate_path(workdir, domains), timeout)
