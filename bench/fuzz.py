#!/usr/bin/env python3
"""
Fuzz every parser of the service in process, against the real code.

    python -m bench.fuzz --inputs 1000000 --out /tmp/fuzz-out            # every target (~30 min)
    python -m bench.fuzz --inputs 20000 --targets dns_udp,http --seed 7
    python -m bench.fuzz --replay /tmp/fuzz-out/dns_udp/<file>.bin --targets dns_udp
    python -m bench.fuzz --record-from /tmp/fuzz-out/summary.json      # -> bench/results/fuzz.json

Engine: a structure-aware mutational loop written here, seeded from the real
client captures in tests/fixtures (nsupdate, BIND, named, GnuDIP clients,
ddclient, inadyn, the original's XML) plus inputs made for each target, not
atheris or hypothesis. Why:

 - atheris installs here (a manylinux wheel), but its coverage
   instrumentation slows these Twisted-heavy targets several times, libFuzzer
   owns the process (it exits at the first crash and cannot run a dozen
   targets in one process or inside pytest), and it is not seedable for a
   deterministic test. With 2 shared cores, 1,000,000 inputs for each of 11
   targets would not fit in an afternoon.
 - hypothesis is deterministic and shrinks well, but it costs about a
   millisecond of its own per example: 11 million examples would take hours
   more, and its generators know nothing of DNS or HTTP.
 - A plain loop with a fixed seed is deterministic (tests/test_fuzz.py runs the
   same engine on the same targets with a few thousand inputs each), runs at
   the speed of the target, and knows each format: it re-signs mutated
   UPDATEs and transfer requests with a real TSIG key, fills in valid GnuDIP
   hashes, salts and HTTP credentials through placeholders ({HASH}, {AUTH},
   {GDIP}, {TOKEN}), and mutates the config as a TOML document and as a
   parsed dict. Inputs that give an answer not seen before (an RCODE, an
   HTTP status, a ConfigError key, an import error) join the corpus: a cheap
   feedback without coverage instrumentation.

What counts as a failure: any exception out of the code under test other than
the ones it documents (ConfigError, SDPImportError, ValueError from
gnudip.parse_line), a traceback logged through twisted.logger (a
``log_failure`` event), a DNS reply that dnspython cannot parse (or with the
wrong ID), an HTTP 500, a GnuDIP reply outside the protocol, and a hang: every
input runs under a SIGALRM timer (``--time-limit``, 1 s by default). Each
distinct failure (exception type and innermost frame of ours) is saved under
``--out/<target>/`` as the input that found it and a minimized copy, with the
traceback in a .txt file. Replaying a saved input runs it on a fresh world.

The world: the whole service built by C{tap.build_service} from a config with
every method on (the [limits] limiter off, as for any flood from loopback), a
memory store with a few users (passwords, TSIG keys, MD5 verifiers, offline
and disabled users, host names), a host zone, transfer keys and ACLs, the HTTP
site and the admin site, all on a C{task.Clock}; transports are
C{StringTransport}s. One stand-in: scrypt itself (C{passwords._scrypt}) is
replaced by one SHA-256 and the checker's thread pool runs inline
(C{PasswordChecker._in_thread}), so that a million wrong passwords (and
passwords set through the admin API, which hashes on the reactor thread) do
not take a day; hash formats, parsing and everything around them are real.
"""

from __future__ import annotations

import argparse
import ast
import base64
import copy
import datetime
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator

import dns.edns
import dns.message
import dns.name
import dns.opcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
SHARED_FIXTURES = os.path.join(os.path.dirname(ROOT), "shared", "fixtures")

SUFFIX = "dyn.example.com"
PASSWORDS = {"alice": "s3cret pass", "bob": "pw", "carol": "carol-pw", "eve": "eve-pw"}
ADMIN_PASSWORD = "admin pw"
ADMIN_TOKEN = "fuzz-admin-token-0123456789"
ALICE_TSIG = base64.b64encode(b"alice-tsig-key-0123456789abcdef!").decode()
XFR_SECRET = base64.b64encode(b"transfer-key-secret-0123456789ab").decode()
#: The clock's start: a fixed time, so a saved input replays the same way.
EPOCH = 1_790_000_000.0
#: Simulated seconds per input (delayed calls fire; TSIG times move on).
TICK = 0.01

HOST_ZONE = """\
$TTL 3600
@       300 IN SOA ns1.example.org. hostmaster.example.org. 2024010101 7200 900 1209600 3600
@       IN NS    ns1.example.org.
@       IN A     192.0.2.10
@       IN MX    10 mail.example.org.
ns1     IN A     192.0.2.53
mail    IN A     192.0.2.25
www     IN CNAME @
txt     IN TXT   "hello world" "second string"
home    IN A     192.0.2.99
*.wild  IN A     192.0.2.77
"""


class FuzzFailure(Exception):
    """The code under test answered wrongly (not an exception of its own)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


class Hang(BaseException):
    """Raised by the per-input timer; a BaseException so `except Exception` does not hide it."""


# -- observing twisted.logger


@implementer(ILogObserver)
class LogWatch:
    """Keeps the tracebacks logged while one input runs (log_failure events)."""

    def __init__(self) -> None:
        self.failures: list[Failure] = []
        self.events = 0

    def __call__(self, event: dict[str, Any]) -> None:
        self.events += 1
        failure = event.get("log_failure")
        if failure is not None and len(self.failures) < 8:
            self.failures.append(failure)


# -- the world: the whole service on a clock


class _FakeUDP:
    def __init__(self) -> None:
        self.written: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any = None) -> None:
        self.written.append((data, addr))


class _Transport(StringTransport):
    """StringTransport whose `connected` follows loseConnection/abortConnection."""

    @property
    def connected(self) -> bool:  # type: ignore[override]
        return not self.disconnecting

    @connected.setter
    def connected(self, value: bool) -> None:
        pass


class _Scheduler:
    """task.Cooperator scheduler run by hand, so TCP transfers finish in the input."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def __call__(self, work: Callable[[], None]) -> Any:
        self.pending.append(work)
        scheduler = self

        class _Call:
            def cancel(self) -> None:
                if work in scheduler.pending:
                    scheduler.pending.remove(work)

        return _Call()

    def drain(self, limit: int = 100_000) -> None:
        for _ in range(limit):
            if not self.pending:
                return
            self.pending.pop(0)()
        raise FuzzFailure("cooperator-runaway", "a cooperative task never ended")


def world_config(folder: str, with_limits: bool = True) -> dict[str, Any]:
    """Every method on, a host zone, transfers with a key; paths inside C{folder}."""
    from dyndns_plugin.passwords import hash_password

    admin_hash = hash_password(ADMIN_PASSWORD)
    data: dict[str, Any] = {
        "service": {"suffix": SUFFIX, "default_ttl": 30, "min_ttl": 10, "poll_interval": 60},
        "store": {"backend": "memory"},
        "dns": {
            "listen": ["127.0.0.1:5353"],
            "nameservers": [f"ns1.{SUFFIX}"],
            "glue": {f"ns1.{SUFFIX}": ["192.0.2.53", "2001:db8::53"]},
            # unsigned updates from 127.0.0.1 reach the host zone's RFC 2136 path
            "zones": [{"origin": "example.org", "file": "example.org.zone", "allow_update": ["127.0.0.1/32"]}],
            "updates": True,
            "update_local_zones": True,
            "transfer": {
                "allow": ["127.0.0.1", "::1"],
                "keys": [{"name": "xfr-key", "algorithm": "hmac-sha256", "secret": XFR_SECRET}],
            },
        },
        "http": {
            "listen": ["tcp:8080:interface=127.0.0.1"],
            "base_url": "http://127.0.0.1:8080/dyndns/",
            "trusted_proxies": ["127.0.0.2"],
            "methods": {
                "url_auth": True,
                "basic_auth": True,
                "nic_update": True,
                "remote_ip": True,
                "gnudip": True,
            },
        },
        "gnudip": {"listen": ["tcp:3495:interface=127.0.0.1"], "http_key_file": "gnudip-http.key"},
        "admin": {
            "listen": ["tcp:8053:interface=127.0.0.1"],
            "users": {"root": admin_hash},
            "tokens": ["sha256:" + hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()],
        },
    }
    if with_limits:
        data["limits"] = {"enabled": False}
        # A low rate, so that rate limiting and its TC slip are fuzzed too
        # (the clock moves 10 ms per input); a fixed cookie secret.
        data["dns"]["rrl"] = {"responses_per_second": 20, "slip": 2}
        data["dns"]["cookies"] = {"secret": "00112233445566778899aabbccddeeff"}
    return data


def _cheap_scrypt(raw: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    """The stand-in for scrypt in the fuzz world: same inputs, same size, ~1 us."""
    return hashlib.sha256(b"%d.%d.%d." % (log2_n, r, p) + salt + raw).digest()


def _inline(self: Any, function: Any, *args: Any) -> defer.Deferred[Any]:
    """PasswordChecker._in_thread without the thread (the fuzz world is one thread)."""
    return defer.maybeDeferred(function, *args)


class World:
    """The service, its protocols and sites, built once and fed inputs."""

    def __init__(self, folder: str | None = None) -> None:
        import dyndns_plugin.auth as auth_module
        from dyndns_plugin.config import ConfigError, settings_from_dict
        from dyndns_plugin.dns.signing import TSIGKey, labels_of
        from dyndns_plugin.model import User
        from dyndns_plugin.passwords import hash_password, md5_verifier
        from dyndns_plugin.store.memory import MemoryUserStore
        from dyndns_plugin.tap import build_service, load_zones
        from dyndns_plugin.twisted_private import default_cooperator, set_default_cooperator

        self._restore: list[Callable[[], None]] = []
        import dyndns_plugin.passwords as passwords_module

        original = auth_module.PasswordChecker._in_thread
        auth_module.PasswordChecker._in_thread = _inline  # type: ignore[method-assign]
        self._restore.append(lambda: setattr(auth_module.PasswordChecker, "_in_thread", original))
        scrypt = passwords_module._scrypt
        passwords_module._scrypt = _cheap_scrypt
        self._restore.append(lambda: setattr(passwords_module, "_scrypt", scrypt))
        self.scheduler = _Scheduler()
        saved_cooperator = default_cooperator()
        set_default_cooperator(task.Cooperator(scheduler=self.scheduler))
        self._restore.append(lambda: set_default_cooperator(saved_cooperator))

        if folder is None:
            folder = tempfile.mkdtemp(prefix="dyndns-fuzz-", dir=_fast_tmp())
            self._restore.append(lambda: shutil.rmtree(folder, ignore_errors=True))
        os.makedirs(folder, exist_ok=True)
        self.folder = folder
        with open(os.path.join(self.folder, "example.org.zone"), "w") as f:
            f.write(HOST_ZONE)
        self.config_path = os.path.join(self.folder, "dyndns.toml")
        config = world_config(self.folder)
        for _ in range(4):  # drop optional tables this version does not know
            try:
                settings = settings_from_dict(config, self.config_path)
                break
            except ConfigError as e:
                if e.key.startswith("limits"):
                    del config["limits"]
                elif e.key.startswith(("dns.rrl", "dns.cookies")):
                    del config["dns"][e.key.split(".")[1]]
                else:
                    raise
        self.settings = settings
        self.clock = task.Clock()
        self.clock.advance(EPOCH)
        self.store = MemoryUserStore()
        top: Any = build_service(settings, self.store, load_zones(settings), self.clock)
        self.top = top
        self.service = self.top.dyndns
        self.factory = self.top.dns_factory
        self.update_handler = self.factory.update_handler
        self.transfer_handler = self.factory.transfer_handler
        self.site = self.top.site
        self.admin_site = self.top.admin_site
        for site in (self.site, self.admin_site):
            site.reactor = self.clock
        from dyndns_plugin.protocols.gnudip import GnuDIPFactory

        self.gnudip = GnuDIPFactory(self.service, self.top.checker, timeout=30)
        self.signer = _find_signer(self.site.resource)
        self.md5 = {uid: md5_verifier(pw) for uid, pw in PASSWORDS.items()}
        hashes = {uid: hash_password(password) for uid, password in PASSWORDS.items()}
        users = [
            User(
                "alice",
                password_hash=hashes["alice"],
                md5_verifier=self.md5["alice"],
                hostnames=[f"*.alice.{SUFFIX}", "gateway.example.info"],
                tsig_secret=ALICE_TSIG,
                tsig_algorithm="hmac-sha256",
            ),
            User(
                "bob",
                password_hash=hashes["bob"],
                md5_verifier=self.md5["bob"],
                hostnames=["home.example.org"],
                tsig_from_password=True,
                tsig_algorithm="hmac-md5",
            ),
            User("carol", password_hash=hashes["carol"], md5_verifier=self.md5["carol"], offline_ipv4="192.0.2.200"),
            User("eve", password_hash=hashes["eve"], md5_verifier=self.md5["eve"]),
        ]
        self._run(self.service.start())
        for user in users:
            self._run(self.service.add_user(user))
        self._run(self.service.update("alice", ["203.0.113.5", "2001:db8::5"], ttl=120))
        self._run(self.service.update("bob", ["198.51.100.7"], ttl=60))
        self._run(self.service.update("carol", ["203.0.113.9"]))
        self._run(self.service.set_offline("carol"))
        self._run(self.service.update("eve", ["203.0.113.66"]))
        self._run(self.service.set_disabled("eve", True))
        self.settle()
        self.keys = {
            "alice": TSIGKey.make(labels_of("alice"), base64.b64decode(ALICE_TSIG), "hmac-sha256"),
            "bob": TSIGKey.make(labels_of(f"bob.{SUFFIX}"), base64.b64decode(_derived(self.md5["bob"])), "hmac-md5"),
            "xfr": TSIGKey.make(labels_of("xfr-key"), base64.b64decode(XFR_SECRET), "hmac-sha256"),
        }
        self.watch = LogWatch()
        globalLogPublisher.addObserver(self.watch)
        self._restore.append(lambda: globalLogPublisher.removeObserver(self.watch))

    def close(self) -> None:
        for undo in reversed(self._restore):
            undo()
        self._restore = []

    def _run(self, value: Any) -> Any:
        """Run a coroutine or Deferred that must finish on the clock."""
        d = defer.ensureDeferred(value) if not isinstance(value, defer.Deferred) else value
        out: list[Any] = []
        d.addBoth(out.append)
        for _ in range(100):
            if out:
                break
            self.clock.advance(TICK)
        if not out:
            raise RuntimeError("setup step did not finish")
        if isinstance(out[0], Failure):
            out[0].raiseException()
        return out[0]

    def settle(self) -> None:
        """Run what the input started: cooperative tasks, then one clock tick."""
        self.scheduler.drain()
        self.clock.advance(TICK)
        self.scheduler.drain()

    def now(self) -> int:
        return int(self.clock.seconds())


def _find_signer(root: Any) -> Any:
    """The HTTP GnuDIP salt signer somewhere in the site's resource tree."""
    from dyndns_plugin.protocols.gnudip_http import SaltSigner

    todo, seen = [root], set()
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for value in vars(node).values():
            if isinstance(value, SaltSigner):
                return value
            if isinstance(value, dict):
                todo.extend(v for v in value.values() if hasattr(v, "__dict__"))
            elif hasattr(value, "render") and hasattr(value, "__dict__"):
                todo.append(value)
    return None


def _derived(md5_hex: str) -> str:
    from dyndns_plugin.passwords import derived_tsig_secret

    return derived_tsig_secret(md5_hex)


# -- checks


def check_dns_reply(reply: bytes, query: bytes, udp_limit: int | None = None) -> int:
    """The reply must parse (dnspython) and carry the query's ID; returns its RCODE."""
    if len(reply) < 12:
        raise FuzzFailure("dns-reply-short", f"{len(reply)} bytes")
    if len(query) >= 2 and reply[:2] != query[:2]:
        raise FuzzFailure("dns-reply-id")
    try:
        message = dns.message.from_wire(reply, keyring=False)
    except Exception as e:
        raise FuzzFailure("dns-reply-unparseable", type(e).__name__) from None
    if udp_limit is not None and len(reply) > udp_limit:
        raise FuzzFailure("dns-udp-oversize", f"{len(reply)} > {udp_limit}")
    return message.rcode()


def _udp_limit(query: bytes) -> int | None:
    """The size a UDP reply to C{query} may have: 512, or its EDNS size (None: unknown)."""
    try:
        message = dns.message.from_wire(query, keyring=False, ignore_trailing=True)
    except Exception:
        return None
    if message.edns < 0:
        return 512
    return max(512, message.payload)


def _sign(wire: bytes, key: Any, now: int, fudge: int = 300) -> bytes:
    """C{wire} (no TSIG) signed with C{key}, as a client would."""
    from dyndns_plugin.dns.signing import append_tsig, tsig_rdata

    if len(wire) < 12 or wire[10:12] == b"\xff\xff":
        return wire  # no room for one more record
    mac = key.mac(wire, now, fudge)
    rdata = tsig_rdata(key.algorithm, now, fudge, mac, struct.unpack("!H", wire[:2])[0], 0, b"")
    return append_tsig(wire, key.name, rdata)


# -- mutation


INTERESTING8 = [0, 1, 2, 0x3F, 0x40, 0x7F, 0x80, 0xC0, 0xFE, 0xFF, 0x20, 0x2E, 0x0A, 0x0D, 0x25, 0x3A]
INTERESTING16 = [0, 1, 2, 0xFF, 0x100, 0x1FF, 0x200, 0x4D0, 0x7FFF, 0x8000, 0xC00C, 0xC000, 0xFFFE, 0xFFFF]


class Mutator:
    """Stacked byte-level and token mutations, libFuzzer style, from a seeded RNG."""

    def __init__(self, rng: random.Random, tokens: list[bytes], max_len: int) -> None:
        self.rng = rng
        self.tokens = tokens or [b"\x00"]
        self.max_len = max_len

    def mutate(self, data: bytes, other: bytes) -> bytes:
        rng = self.rng
        if rng.random() < 0.01:
            return rng.randbytes(rng.randrange(0, min(self.max_len, 600)))
        buf = bytearray(data)
        for _ in range(1 + min(7, int(rng.expovariate(0.6)))):
            self._one(buf, other)
        return bytes(buf[: self.max_len])

    def _one(self, buf: bytearray, other: bytes) -> None:
        rng = self.rng
        n = len(buf)
        op = rng.randrange(14)
        pos = rng.randrange(n + 1)
        if op == 0 and n:  # flip a bit
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # an interesting byte
            buf[rng.randrange(n)] = rng.choice(INTERESTING8)
        elif op == 2 and n:  # a random byte
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 3 and n >= 2:  # an interesting 16-bit value (counts, lengths, pointers)
            i = rng.randrange(n - 1)
            value = rng.choice(INTERESTING16 + [n, n - i, rng.randrange(65536)])
            buf[i : i + 2] = struct.pack("!H", value & 0xFFFF)
        elif op == 4:  # insert a token
            buf[pos:pos] = rng.choice(self.tokens)
        elif op == 5 and n:  # replace a range with a token
            end = min(n, pos + rng.randrange(1, 16))
            buf[pos:end] = rng.choice(self.tokens)
        elif op == 6 and n:  # delete a range
            end = min(n, pos + 1 + int(rng.expovariate(0.2)))
            del buf[pos:end]
        elif op == 7 and n:  # duplicate a range
            start = rng.randrange(n)
            end = min(n, start + 1 + int(rng.expovariate(0.1)))
            buf[pos:pos] = buf[start:end] * rng.choice((1, 1, 2, 8))
        elif op == 8:  # random bytes
            buf[pos:pos] = rng.randbytes(rng.randrange(1, 9))
        elif op == 9 and other:  # splice with another corpus entry
            cut = rng.randrange(len(other) + 1)
            buf[pos:] = other[cut:]
        elif op == 10 and n:  # truncate
            del buf[rng.randrange(n) :]
        elif op == 11:  # a long run (long labels, lines, values)
            buf[pos:pos] = bytes([rng.choice(b"A0.-:%&=\x00\xff\x3f\xc0")]) * rng.choice(
                (63, 64, 255, 256, 513, 1024, 5000)
            )
        elif op == 12 and n:  # arithmetic on a byte
            i = rng.randrange(n)
            buf[i] = (buf[i] + rng.choice((-2, -1, 1, 2, 16, -16))) & 0xFF
        elif op == 13 and n:  # swap two ranges
            a, b = sorted((rng.randrange(n), rng.randrange(n)))
            k = rng.randrange(1, 9)
            buf[a : a + k], buf[b : b + k] = buf[b : b + k], buf[a : a + k]


# -- targets


@dataclass
class Target:
    name: str
    parser: str
    run: Callable[[bytes], Hashable]
    seeds: list[bytes]
    tokens: list[bytes] = field(default_factory=list)
    max_len: int = 4096


DNS_TOKENS = [
    b"\xc0\x0c",
    b"\xc0\x00",
    b"\xc0\x0b",
    b"\xc0\xff",
    b"\x3f",
    b"\x40",
    b"\x80",
    b"\x00",
    b"\x01.",
    b"\x01\x00",
    b"\x05alice\x03dyn\x07example\x03com\x00",
    b"\x03dyn\x07example\x03com\x00",
    b"\x07example\x03org\x00",
    b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00",
    b"\x00\x01\x00\x01",
    b"\x00\x1c\x00\x01",
    b"\x00\xfc\x00\x01",
    b"\x00\xfb\x00\x01",
    b"\x00\x06\x00\x01",
    b"\x00\xff\x00\xff",
    b"\x00\xfa\x00\xff\x00\x00\x00\x00",
    b"\x00\x29",
    b"\x00\x0a\x00\x08",
    b"\x00\x01\x00\xfe",
    b"\x00\x01\x00\xff",
    b"\x00\x00\x00\x00",
    b"\x0bhmac-sha256\x00",
    b"\x08hmac-md5\x07sig-alg\x03reg\x03int\x00",
    b"\x05alice\x00",
    b"\x04\xc0\x00\x02\x01",
    b"\x00\x04\xc0\x00\x02\x01",
    b"\x00\x10\x20\x01\x0d\xb8" + b"\x00" * 12,
    b"\x7f\xff\xff\xff",
    b"\xff\xff\xff\xff",
]

HTTP_TOKENS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b" ",
    b"\t",
    b"?",
    b"&",
    b"=",
    b";",
    b"%",
    b"%00",
    b"%zz",
    b"%ff",
    b"%2e%2e/",
    b"/../",
    b"//",
    b"+",
    b"#",
    b"\x00",
    b"\xff",
    b"\xc3\xa9",
    b"\xed\xa0\x80",
    b"user=alice",
    b"pw=s3cret+pass",
    b"pw=",
    b"ip=",
    b"ip=203.0.113.77",
    b"ip=::1",
    b"ip=2001:db8::9",
    b"ttl=",
    b"ttl=-1",
    b"ttl=99999999999999999999",
    b"offline=Y",
    b"offline=N",
    b"myip=",
    b"myip=1.2.3.4,2001:db8::1",
    b"hostname=",
    b"hostname=alice.dyn.example.com",
    b"hostname=alice.dyn.example.com,gateway.example.info",
    b"system=dyndns",
    b"wildcard=ON",
    b"reqc=0",
    b"reqc=1",
    b"reqc=2",
    b"reqc=9",
    b"addr=",
    b"domn=",
    b"user=",
    b"pass=",
    b"salt=",
    b"time=",
    b"sign=",
    b"{GDIP}",
    b"{AUTH}",
    b"{AUTHB}",
    b"{TOKEN}",
    b"{ADMIN}",
    b"Authorization: Basic ",
    b"Authorization: Basic {AUTH}",
    b"Authorization: Bearer {TOKEN}",
    b"Authorization: Basic {ADMIN}",
    b"Authorization: Bearer ",
    b"Authorization: Digest x",
    b"X-Forwarded-For: ",
    b"X-Forwarded-For: 203.0.113.8, 127.0.0.2",
    b"X-Forwarded-For: ::1",
    b"X-Real-IP: 1.1.1.1",
    b"Client-IP: 2001:db8::1",
    b'Forwarded: for="[2001:db8::1]:80"',
    b"Forwarded: for=",
    b"Content-Length: ",
    b"Content-Length: 0",
    b"Content-Length: -1",
    b"Content-Length: 99999999999999999999",
    b"Transfer-Encoding: chunked",
    b"0\r\n\r\n",
    b"Content-Type: application/json",
    b"If-Match: ",
    b"If-Match: *",
    b"If-None-Match: ",
    b"Host: ",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Expect: 100-continue",
    b"GET ",
    b"POST ",
    b"PUT ",
    b"PATCH ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"FOO ",
    b" HTTP/1.1",
    b" HTTP/1.0",
    b" HTTP/2.0",
    b" HTTP/9",
    b"/dyndns/ddns",
    b"/nic/update",
    b"/dyndns/gnudip",
    b"/gnudip/cgi-bin/gdipupdt.cgi",
    b"/dyndns/myip",
    b"/checkip",
    b"/api/state",
    b"/api/config",
    b"/api/users/alice",
    b"/api/users/alice/offline",
    b"/api/openapi.json",
    b"/status",
    b"/status.js",
    b"/metrics",
    b"/pluginstate",
    b"/updatepluginconfig",
    b"/getpluginconfig",
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b'"\\ud800"',
    b'"\\u0000"',
    b'{"id":"x"}',
    b'"password":',
    b'"hostnames":[',
    b'"offline":',
    b'"ttl":',
    b'"disabled":',
]

TOML_TOKENS = [
    b"\n",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"=",
    b'"',
    b"'",
    b'"""',
    b"{",
    b"}",
    b",",
    b".",
    b"#",
    b"\\u0000",
    b"\\",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\x00",
    b"-1",
    b"0",
    b"1e400",
    b"nan",
    b"inf",
    b"-inf",
    b"true",
    b"false",
    b"1979-05-27T07:32:00Z",
    b"07:32:00",
    b"1979-05-27",
    b"9223372036854775807",
    b"99999999999999999999",
    b"0x7fffffff",
    b"[]",
    b"{}",
    b'[1, "a"]',
    b"[service]",
    b"[store]",
    b"[dns]",
    b"[dns.glue]",
    b"[dns.transfer]",
    b"[dns.notify]",
    b"[[dns.zones]]",
    b"[[dns.transfer.keys]]",
    b"[http]",
    b"[http.methods]",
    b"[gnudip]",
    b"[admin]",
    b"[admin.users]",
    b"[limits]",
    b"[connections]",
    b"[dns.rrl]",
    b"[dns.cookies]",
    b"suffix = ",
    b"listen = ",
    b'backend = "memory"',
    b"path = ",
    b"base_url = ",
    b"trusted_proxies = ",
    b"tokens = ",
    b"allow = ",
    b"keys = ",
    b"secret = ",
    b"algorithm = ",
    b"targets = ",
    b"origin = ",
    b"file = ",
    b"enabled = ",
    b"exempt = ",
    b"timeout = ",
    b'"127.0.0.1:53"',
    b'"[::1]:53"',
    b'"::1"',
    b'"0.0.0.0/0"',
    b'"tcp:0"',
    b'"ssl:443:privateKey=x"',
    b'"hmac-md5"',
    b'"sha256:"',
]

XML_TOKENS = [
    b"<",
    b">",
    b"/>",
    b"</",
    b'="',
    b'"',
    b"'",
    b"&amp;",
    b"&lt;",
    b"&#0;",
    b"&#x10FFFF;",
    b"&#xD800;",
    b"&undefined;",
    b"<![CDATA[",
    b"]]>",
    b"<!--",
    b"-->",
    b'<?xml version="1.0"?>',
    b'<?xml version="1.0" encoding="utf-16"?>',
    b'<!DOCTYPE config [<!ENTITY a "b">]>',
    b"<!ENTITY",
    b"<config>",
    b"</config>",
    b"<config ",
    b"<User ",
    b"</User>",
    b"<User/>",
    b"<HostName>",
    b"</HostName>",
    b"<HostName/>",
    b'ID="',
    b'Password="',
    b'TSIGKeyValue="',
    b'OfflineIP="',
    b'Notes="',
    b'Disabled="',
    b'IP="',
    b'TTL="',
    b'LastUpdate="',
    b'Offline="',
    b'Suffix="',
    b'GNUDIPPort="',
    b'BaseURL="',
    b'UpdateZones="',
    b'UpMeTSIG="',
    b'RemoteDetect="',
    b'Recursion="',
    b'xmlns="urn:x"',
    b'xmlns:a="urn:y" a:',
    b"true",
    b"false",
    b"True",
    b"1",
    b"0",
    b"-1",
    b"99999999999999999999",
    b"2024-01-01T00:00:00",
    b"0001-01-01T00:00:00",
    b"9999-12-31T23:59:59.9999999",
    b"2024-02-30T25:61:61",
    b"2024-01-01T00:00:00+14:00",
    b"2024-01-01T00:00:00Z",
    b"192.0.2.1",
    b"2001:db8::1",
    b"::ffff:1.2.3.4",
    b"*.",
    b"dyn.example.com",
    b"http://[::1",
    b"http://x:99999/",
    b"\xff",
    b"\xc3\xa9",
    b"\x00",
    b"\t",
    b"\r\n",
]


def _dns_seeds(world: World) -> list[bytes]:
    """Real captures plus queries made for this world's names, types and options."""
    seeds: list[bytes] = []
    for folder in (
        os.path.join(FIXTURES, "dns"),
        os.path.join(SHARED_FIXTURES, "dns"),
        os.path.join(FIXTURES, "tsig-knot"),
    ):
        if os.path.isdir(folder):
            for name in sorted(os.listdir(folder)):
                if name.endswith(".bin") and "response" not in name:
                    with open(os.path.join(folder, name), "rb") as f:
                        seeds.append(f.read())
    names = [
        f"alice.{SUFFIX}",
        f"x.alice.{SUFFIX}",
        "gateway.example.info",
        f"bob.{SUFFIX}",
        "home.example.org",
        f"carol.{SUFFIX}",
        f"eve.{SUFFIX}",
        f"nobody.{SUFFIX}",
        SUFFIX,
        "example.org",
        "www.example.org",
        "a.wild.example.org",
        "example.net",
        ".",
        f"ns1.{SUFFIX}",
        "ALICE.DYN.EXAMPLE.COM",
    ]
    types = ["A", "AAAA", "ANY", "SOA", "NS", "MX", "TXT", "CNAME", "PTR", "SRV", "CAA", "TYPE65535"]
    for i, name in enumerate(names):
        for j, rdtype in enumerate(types):
            if (i + j) % 3:
                continue
            kwargs: dict[str, Any] = {}
            if j % 2:
                kwargs = {"use_edns": 0, "payload": 1232 if i % 2 else 4096}
            q = dns.message.make_query(name, rdtype, **kwargs)
            q.id = 4096 + i * 16 + j
            seeds.append(q.to_wire())
    for rdtype in ("AXFR", "IXFR"):
        q = dns.message.make_query(SUFFIX, rdtype)
        if rdtype == "IXFR":
            q.authority.append(
                dns.rrset.from_text(SUFFIX + ".", 0, "IN", "SOA", f"ns1.{SUFFIX}. h.{SUFFIX}. 1 3600 600 1209600 30")
            )
        seeds.append(q.to_wire())
    q = dns.message.make_query("example.org", "SOA")
    seeds.append(q.to_wire())
    q = dns.message.make_query(
        "alice.dyn.example.com",
        "A",
        use_edns=0,
        options=[dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x01" * 8)],
    )
    seeds.append(q.to_wire())
    q = dns.message.make_query("alice.dyn.example.com", "A", use_edns=1)
    seeds.append(q.to_wire())
    notify = dns.message.make_query(SUFFIX, "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    seeds.append(notify.to_wire())
    for status in (dns.opcode.STATUS, dns.opcode.IQUERY, 3, 15):
        q = dns.message.make_query("alice.dyn.example.com", "A")
        q.set_opcode(status)  # type: ignore[arg-type]
        seeds.append(q.to_wire())
    # The crafted name of issue 14: a first label "." and four 63-byte labels.
    seeds.append(
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01." + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01"
    )
    seeds.extend(_update_bodies(world))
    return seeds


def _update_bodies(world: World) -> list[bytes]:
    """Unsigned UPDATE messages for the world's users (the harness signs them)."""
    from dyndns_plugin.dns.reader import parse_update

    bodies: list[bytes] = []
    for zone, name in (
        (SUFFIX, f"alice.{SUFFIX}"),
        (SUFFIX, f"x.alice.{SUFFIX}"),
        (f"alice.{SUFFIX}", f"alice.{SUFFIX}"),
        ("example.org", "home.example.org"),
        ("example.org", "printer.example.org"),  # the host zone's own RFC 2136 path
        (SUFFIX, f"bob.{SUFFIX}"),
        (SUFFIX, f"eve.{SUFFIX}"),
    ):
        u = dns.update.UpdateMessage(zone)
        u.replace(name, 60, "A", "203.0.113.77")
        bodies.append(u.to_wire())
        u = dns.update.UpdateMessage(zone)
        u.delete(name, "A")
        u.add(name, 30, "AAAA", "2001:db8::77")
        bodies.append(u.to_wire())
        u = dns.update.UpdateMessage(zone)
        u.present(name)
        u.absent(f"zz.{name}")
        u.present(name, "A")
        u.delete(name)
        u.add(name, 30, "TXT", "offline")
        bodies.append(u.to_wire())
    u = dns.update.UpdateMessage("example.org")  # names inside rdata, compressed against the zone
    u.add("printer.example.org", 60, "MX", "10 mail.example.org.")
    u.add("_ipp._tcp.example.org", 60, "SRV", "0 0 631 printer.example.org.")
    u.add("alias.example.org", 60, "CNAME", "printer.example.org.")
    u.delete("www.example.org", "A", "192.0.2.80")
    bodies.append(u.to_wire())
    for folder in (os.path.join(FIXTURES, "dns"),):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".bin") and "response" not in name:
                with open(os.path.join(folder, name), "rb") as f:
                    wire = f.read()
                try:
                    request = parse_update(wire)
                except Exception:
                    continue
                if request.tsig is not None:
                    arcount = request.arcount - 1
                    bodies.append(wire[:10] + struct.pack("!H", arcount) + wire[12 : request.tsig.start])
    return bodies


def _frames(stream: bytes) -> list[bytes]:
    out = []
    i = 0
    while i + 2 <= len(stream):
        size = struct.unpack("!H", stream[i : i + 2])[0]
        if i + 2 + size > len(stream):
            raise FuzzFailure("dns-tcp-partial-frame")
        out.append(stream[i + 2 : i + 2 + size])
        i += 2 + size
    if i != len(stream):
        raise FuzzFailure("dns-tcp-partial-frame")
    return out


def _raise_logged(world: World) -> None:
    if world.watch.failures:
        failure = world.watch.failures[0]
        world.watch.failures = []
        raise LoggedTraceback(failure)


class LoggedTraceback(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(f"logged traceback: {failure.type.__name__}: {failure.getErrorMessage()}")
        self.failure = failure


def make_targets(world: World) -> dict[str, Target]:
    from dyndns_plugin.dns.server import DNSDatagramProtocol

    udp = DNSDatagramProtocol(world.factory)
    udp_transport = _FakeUDP()
    udp.transport = udp_transport  # type: ignore[assignment]

    sources: list[Any] = [("192.0.2.1", 5353), ("198.51.100.1", 5353), ("127.0.0.1", 5353), ("2001:db8::1", 5353, 0, 0)]

    def dns_udp(data: bytes) -> Hashable:
        udp_transport.written = []
        udp.datagramReceived(data, sources[zlib.crc32(data) & 3])
        world.settle()
        _raise_logged(world)
        written = udp_transport.written
        if len(written) > 1:
            raise FuzzFailure("dns-udp-several-replies", str(len(written)))
        if not written:
            return ("none",)
        limit = _udp_limit(data)
        reply = written[0][0]
        return (check_dns_reply(reply, data, limit), data[2] >> 3 & 15, bool(reply[2] & 2))

    def dns_tcp(data: bytes) -> Hashable:
        proto = world.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        proto.callLater = world.clock.callLater
        transport = _Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        proto.makeConnection(transport)
        try:
            proto.dataReceived(data)
            world.settle()
            _raise_logged(world)
            frames = _frames(transport.value())
            rcodes = tuple(sorted({check_dns_reply(f, b"") for f in frames}))
            return rcodes + (len(frames) > 1,)
        finally:
            proto.connectionLost(Failure(ConnectionDone()))

    update_keys = [None, world.keys["alice"], world.keys["bob"], world.keys["xfr"]]

    def update(data: bytes) -> Hashable:
        mode = data[0] if data else 0
        wire = data[1:]
        key = update_keys[mode & 3]
        if key is not None:
            wire = _sign(wire, key, world.now() + (-400 if mode & 4 else 0))
        peer = "127.0.0.1" if mode & 8 else "192.0.2.1"
        d = defer.ensureDeferred(world.update_handler.handle_update_wire(wire, peer))
        out: list[Any] = []
        d.addBoth(out.append)
        world.settle()
        if not out:
            raise FuzzFailure("update-no-answer", "the handler did not finish")
        if isinstance(out[0], Failure):
            out[0].raiseException()
        _raise_logged(world)
        if out[0] is None:
            return ("none", mode & 7)
        return (check_dns_reply(out[0], wire), mode & 7)

    def transfer(data: bytes) -> Hashable:
        mode = data[0] if data else 0
        wire = data[1:]
        key = (None, world.keys["xfr"], world.keys["alice"], world.keys["xfr"])[mode >> 2 & 3]
        if key is not None:
            wire = _sign(wire, key, world.now() + (1000 if mode >> 2 & 3 == 3 else 0))
        udp_mode = bool(mode & 1)
        peer = ("192.0.2.1", "127.0.0.1", "::1", None)[mode >> 1 & 1 | (mode >> 4 & 2)]
        count = 0
        rcodes = set()
        for message in world.transfer_handler.answer_transfer(wire, peer, udp=udp_mode):
            count += 1
            rcodes.add(check_dns_reply(message, wire))
            if count > 10_000:
                raise FuzzFailure("transfer-runaway")
            if udp_mode and count > 1:
                raise FuzzFailure("transfer-udp-several")
        _raise_logged(world)
        return (tuple(sorted(rcodes)), min(count, 3), mode & 1)

    def gnudip(data: bytes) -> Hashable:
        from dyndns_plugin.passwords import gnudip_hash
        from dyndns_plugin.protocols.gnudip import parse_line

        try:
            parse_line(data.decode("latin-1"))
        except ValueError:
            pass
        peer = IPv4Address("TCP", "192.0.2.9", 5000)
        proto: Any = world.gnudip.buildProtocol(peer)
        if proto is None:
            raise FuzzFailure("gnudip-refused", "per-source cap not released")
        proto.callLater = world.clock.callLater
        transport = _Transport(peerAddress=peer)
        proto.makeConnection(transport)
        try:
            salt = transport.value().split(b"\n")[0].decode("ascii")
            start = len(transport.value())
            line = data.replace(b"{HASH}", gnudip_hash(world.md5["alice"], salt).encode())
            line = line.replace(b"{HASHB}", gnudip_hash(world.md5["bob"], salt).encode())
            proto.dataReceived(line)
            world.settle()
            _raise_logged(world)
            reply = transport.value()[start:]
            if reply and not re.fullmatch(rb"[012]\n|0:[0-9a-fA-F.:]+\n", reply):
                raise FuzzFailure("gnudip-bad-reply", repr(reply[:40]))
            return (reply[:1], transport.disconnecting)
        finally:
            proto.connectionLost(Failure(ConnectionDone()))

    auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode())
    authb = base64.b64encode(f"bob:{PASSWORDS['bob']}".encode())
    admin = base64.b64encode(f"root:{ADMIN_PASSWORD}".encode())

    def expand(data: bytes) -> bytes:
        if b"{" not in data:
            return data
        data = data.replace(b"{AUTH}", auth).replace(b"{AUTHB}", authb)
        data = data.replace(b"{ADMIN}", admin).replace(b"{TOKEN}", ADMIN_TOKEN.encode())
        if b"{GDIP}" in data and world.signer is not None:
            from dyndns_plugin.passwords import gnudip_hash

            salt, stamp, sign = world.signer.issue()
            sign_text = f"salt={salt}&time={stamp}&sign={sign}&pass={gnudip_hash(world.md5['alice'], salt)}"
            data = data.replace(b"{GDIP}", sign_text.encode())
        return data

    def http_target(site: Any) -> Callable[[bytes], Hashable]:
        def run(data: bytes) -> Hashable:
            data = expand(data)
            host = "127.0.0.2" if zlib.crc32(data) & 1 else "192.0.2.50"
            peer = IPv4Address("TCP", host, 40001)
            proto = site.buildProtocol(peer)
            proto.callLater = world.clock.callLater
            transport = _Transport(peerAddress=peer, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
            proto.makeConnection(transport)
            try:
                proto.dataReceived(data)
                world.settle()
                _raise_logged(world)
                statuses = re.findall(rb"HTTP/1\.[01] (\d\d\d) ", transport.value())
                if b"500" in statuses:
                    first = data.split(b"\r\n", 1)[0][:80]
                    raise FuzzFailure("http-500", repr(first))
                return tuple(statuses[:3])
            finally:
                proto.connectionLost(Failure(ConnectionDone()))

        return run

    config = _config_target(world)
    sdp = _sdp_target(world)
    dns_seeds = _dns_seeds(world)
    tcp_seeds = [struct.pack("!H", len(s)) + s for s in dns_seeds]
    tcp_seeds.append(tcp_seeds[0] + tcp_seeds[20])
    tcp_seeds.append(tcp_seeds[-3][:5])
    bodies = _update_bodies(world)
    update_seeds = [bytes([m]) + b for b in bodies for m in (0, 1, 2, 8, 9)]  # 8: unsigned from 127.0.0.1
    update_seeds += [b"\x00" + s for s in dns_seeds[:20]]
    transfer_seeds = []
    for s in dns_seeds:
        if len(s) > 12 and s[2] >> 3 & 15 == 0:
            transfer_seeds += [bytes([m]) + s for m in (0, 1, 2, 4, 6)]
    targets = [
        Target("dns_udp", "DNS query path (UDP datagrams)", dns_udp, dns_seeds, DNS_TOKENS, 4096),
        Target("dns_tcp", "DNS query path (TCP stream)", dns_tcp, tcp_seeds, DNS_TOKENS, 8192),
        Target(
            "update", "UPDATE reader + TSIG verifier (UpdateHandler.handle)", update, update_seeds, DNS_TOKENS, 4096
        ),
        Target(
            "transfer", "transfer query reader (TransferHandler.handle)", transfer, transfer_seeds, DNS_TOKENS, 4096
        ),
        Target(
            "gnudip",
            "GnuDIP line parser + GnuDIPProtocol",
            gnudip,
            _gnudip_seeds(),
            [
                b":",
                b"\n",
                b"\r\n",
                b"{HASH}",
                b"{HASHB}",
                b"alice",
                b"bob",
                b"eve",
                b"dyn.example.com",
                b"alice.dyn.example.com",
                b"0",
                b"1",
                b"2",
                b"3",
                b"-1",
                b"192.0.2.1",
                b"2001:db8::1",
                b"::ffff:1.2.3.4",
                b"0.0.0.0",
                b"\x00",
                b"\xff",
                b"\xc3\xa9",
                b" ",
                b"%",
                b"1.2.3.4.5",
                b"fe80::1%eth0",
            ],
            2048,
        ),
        Target(
            "http",
            "HTTP update site (ddns, nic/update, gnudip, myip/checkip)",
            http_target(world.site),
            _http_seeds("site"),
            HTTP_TOKENS,
            4096,
        ),
        Target(
            "admin",
            "admin site (API, status, metrics)",
            http_target(world.admin_site),
            _http_seeds("admin"),
            HTTP_TOKENS,
            4096,
        ),
        Target("config_toml", "TOML config loader (load_settings)", config[0], config[1], TOML_TOKENS, 8192),
        Target(
            "config_dict",
            "config checker (settings_from_dict, structured)",
            config[2],
            config[3],
            [struct.pack("!I", i * 2654435761 & 0xFFFFFFFF) for i in range(32)],
            64,
        ),
        Target("sdp_xml", "the original's XML import (sdp_import)", sdp[0], sdp[1], XML_TOKENS, 8192),
    ]
    return {t.name: t for t in targets}


def _gnudip_seeds() -> list[bytes]:
    seeds = [
        b"alice:{HASH}:dyn.example.com:0:203.0.113.44\n",
        b"alice:{HASH}:dyn.example.com:0\n",
        b"alice:{HASH}:dyn.example.com:1\n",
        b"alice:{HASH}:dyn.example.com:2\r\n",
        b"alice:{HASH}:dyn.example.com:0:2001:db8::44\n",
        b"bob:{HASHB}:dyn.example.com:0:198.51.100.70\n",
        b"alice:00000000000000000000000000000000:dyn.example.com:0:203.0.113.44\n",
        b"eve:{HASH}:dyn.example.com:0\n",
    ]
    folder = os.path.join(FIXTURES, "gnudip")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".transcript") and "-tcp-" in name:
            with open(os.path.join(folder, name)) as text:
                for line in text:
                    if line.startswith("C> "):
                        seeds.append(ast.literal_eval(line[3:]))  # the transcript's bytes literals
    return seeds


def _http_seeds(which: str) -> list[bytes]:
    def get(path: str, *headers: str, method: str = "GET", body: bytes = b"") -> bytes:
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:8080", *headers]
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    if which == "admin":
        token = "Authorization: Bearer {TOKEN}"
        basic = "Authorization: Basic {ADMIN}"
        user = json.dumps({"id": "zed", "password": "zed pass", "hostnames": [f"*.zed.{SUFFIX}"]}).encode()
        return [
            get("/api/state", token),
            get("/api/state", basic),
            get("/pluginstate", token),
            get("/api/config", token),
            get("/getpluginconfig", basic),
            get("/api/openapi.json", token),
            get("/api/users", token),
            get("/api/users/alice", token),
            get("/api/users/zed", token, "Content-Type: application/json", method="PUT", body=user),
            get(
                "/api/users/alice",
                token,
                "Content-Type: application/json",
                method="PATCH",
                body=b'{"notes": "n", "offline_ipv4": "192.0.2.9", "ttl": 60}',
            ),
            get("/api/users/alice/offline", token, method="POST", body=b'{"offline": true}'),
            get("/api/users/bob/offline", token, method="DELETE"),
            get("/api/users/zed", token, method="DELETE"),
            get(
                "/api/config",
                token,
                "If-Match: *",
                "Content-Type: application/json",
                method="PUT",
                body=b'{"users": []}',
            ),
            get("/updatepluginconfig", basic, method="POST", body=b"<config/>"),
            get("/status", token),
            get("/status.js"),
            get("/metrics", token),
            get("/metrics"),
            get("/api/state"),
            get("/api/state", "Authorization: Basic cm9vdDp3cm9uZw=="),
            get("/api/users/alice", token, method="OPTIONS"),
            get("/api/users/alice", token, method="HEAD"),
        ]
    seeds = [
        get("/dyndns/ddns?user=alice&pw=s3cret+pass&ip=203.0.113.20&ttl=60"),
        get("/dyndns/ddns?user=alice&pw=s3cret%20pass&offline=Y"),
        get("/dyndns/ddns?ip=2001:db8::20", "Authorization: Basic {AUTH}"),
        get("/dyndns/ddns", "Authorization: Basic {AUTH}", "X-Forwarded-For: 203.0.113.21"),
        get("/dyndns/ddns?user=eve&pw=eve-pw"),
        get("/nic/update?hostname=alice.dyn.example.com&myip=203.0.113.22", "Authorization: Basic {AUTH}"),
        get(
            "/nic/update?hostname=home.example.org,bob.dyn.example.com&myip=198.51.100.9",
            "Authorization: Basic {AUTHB}",
        ),
        get(
            "/nic/update?hostname=alice.dyn.example.com&myip=203.0.113.22&offline=YES",
            "Authorization: Basic {AUTH}",
            "Forwarded: for=203.0.113.99",
        ),
        get("/dyndns/gnudip"),
        get("/gnudip/cgi-bin/gdipupdt.cgi"),
        get("/dyndns/gnudip?{GDIP}&user=alice&domn=dyn.example.com&reqc=0&addr=203.0.113.23"),
        get("/gnudip/cgi-bin/gdipupdt.cgi?{GDIP}&user=alice&domn=dyn.example.com&reqc=2"),
        get("/dyndns/gnudip?{GDIP}&user=alice&domn=dyn.example.com&reqc=1"),
        get("/dyndns/myip", "X-Forwarded-For: 2001:db8::99"),
        get("/dyndns/checkip"),
        get("/checkip", "Client-IP: 198.51.100.1"),
        get("/nic/checkip.html"),
        get("/"),
        get("/nothing/here"),
        get("/dyndns/ddns", "Authorization: Basic {AUTH}", method="POST", body=b"ip=203.0.113.24"),
        get("/dyndns/ddns?user=alice&pw=s3cret+pass&ip=203.0.113.20", "Connection: keep-alive") + get("/dyndns/myip"),
    ]
    folder = os.path.join(FIXTURES, "http")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".raw"):
            with open(os.path.join(folder, name), "rb") as f:
                seeds.append(f.read())
    folder = os.path.join(FIXTURES, "gnudip")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".transcript") and "-http-" in name:
            with open(os.path.join(folder, name)) as text:
                for line in text:
                    if line.startswith("C> "):
                        seeds.append(ast.literal_eval(line[3:]))
    return seeds


# -- the config loader


def _toml_text(data: dict[str, Any]) -> str:
    """A small TOML writer for the seed configs (strings, numbers, booleans, lists, tables)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(v)

    def table(prefix: str, d: dict[str, Any]) -> None:
        plain = {k: v for k, v in d.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for k, v in plain.items():
            lines.append(f"{json.dumps(k)} = {value(v)}")
        for k, v in nested.items():
            table(f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k), v)

    table("", data)
    return "\n".join(lines) + "\n"


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(12 if depth < 2 else 8)
    if choice == 0:
        return rng.choice([0, 1, -1, 2**31, 2**63 - 1, -(2**63), 65535, 65536, 86401, 10**6])
    if choice == 1:
        return rng.choice([0.0, -0.0, 0.05, 1e-300, 1e300, math.inf, -math.inf, math.nan, 3.5])
    if choice == 2:
        return rng.choice([True, False])
    if choice == 3:
        return rng.choice(
            [
                "",
                " ",
                "x",
                "127.0.0.1:53",
                "[::1]:0",
                "::1",
                "0.0.0.0/0",
                "a" * 300,
                "\x00",
                "\ud7ff",
                "é",
                "..",
                "*.x",
                "tcp:0",
                "unix:/nonexistent",
                "ssl:0:privateKey=/nonexistent",
                "hmac-sha256",
                "hmac-md5",
                "md5",
                "sha256:" + "0" * 64,
                "sha256:zz",
                "memory",
                "sqlite",
                "x:y",
                "a.b:c",
                "http://[::1]:99999/",
                "AAAA",
                "$scrypt$ln=10,r=8,p=1$AA$BB",
            ]
        )
    if choice == 4:
        return datetime.datetime(1979, 5, 27, 7, 32)
    if choice == 5:
        return rng.choice([datetime.date(2024, 1, 1), datetime.time(7, 32)])
    if choice == 6:
        return rng.choice(
            ["dyn.example.com", "ns1.dyn.example.com", "example.org", "192.0.2.1", "2001:db8::1", "203.0.113.0/24"]
        )
    if choice == 7:
        return rng.randrange(-5, 100000)
    if choice in (8, 9):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        rng.choice(["name", "secret", "algorithm", "origin", "file", "x", "enabled", ""]): _random_value(rng, depth + 1)
        for _ in range(rng.randrange(4))
    }


def _paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


KNOWN_KEYS = [
    "suffix",
    "default_ttl",
    "min_ttl",
    "max_ttl",
    "poll_interval",
    "log_updates",
    "auth_checker",
    "backend",
    "path",
    "listen",
    "nameservers",
    "hostmaster",
    "serial",
    "refresh",
    "retry",
    "expire",
    "minimum",
    "soa_ttl",
    "glue",
    "zones",
    "updates",
    "update_local_zones",
    "transfer",
    "notify",
    "allow",
    "keys",
    "journal",
    "targets",
    "retries",
    "key",
    "base_url",
    "trusted_proxies",
    "timeout",
    "access_log",
    "methods",
    "url_auth",
    "basic_auth",
    "nic_update",
    "remote_ip",
    "gnudip",
    "salt_window",
    "http_key_file",
    "max_connections_per_source",
    "users",
    "tokens",
    "enabled",
    "limits",
    "connections",
    "rrl",
    "cookies",
    "responses_per_second",
    "slip",
    "ipv4_prefix",
    "ipv6_prefix",
    "exempt",
    "lockout",
    "service",
    "store",
    "dns",
    "http",
    "admin",
    "nic_update_ignore_hostname",
    "secret",
    "algorithm",
    "name",
]


def _mutate_dict(base: dict[str, Any], data: bytes) -> dict[str, Any]:
    """C{base} changed by one operation per 4 bytes of C{data} (each a seed)."""
    d = copy.deepcopy(base)
    for i in range(0, min(len(data), 64), 4):
        rng = random.Random(data[i : i + 4])
        paths = list(_paths(d))
        path = rng.choice(paths)
        parent: Any = d
        for part in path[:-1]:
            parent = parent[part]
        op = rng.randrange(5)
        if not path:
            continue
        last = path[-1]
        if op == 0:  # a new value
            parent[last] = _random_value(rng)
        elif op == 1:  # delete
            del parent[last]
        elif op == 2 and isinstance(parent[last], dict):  # a key, known or not
            parent[last][rng.choice(KNOWN_KEYS + ["unknown", "Suffix", ""])] = _random_value(rng)
        elif op == 3 and isinstance(parent[last], list):
            parent[last].append(_random_value(rng))
        else:  # the value of another key, or a list/table around it
            other = rng.choice(paths)
            node: Any = d
            for part in other:
                node = node[part]
            parent[last] = copy.deepcopy(node) if rng.random() < 0.5 else [parent[last]]
    return d


def _config_target(world: World) -> tuple[Callable, list[bytes], Callable, list[bytes]]:
    from dyndns_plugin.config import ConfigError, load_settings, settings_from_dict

    folder = tempfile.mkdtemp(prefix="dyndns-fuzz-config-", dir=_fast_tmp())
    world._restore.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    path = os.path.join(folder, "dyndns.toml")
    with open(os.path.join(folder, "example.org.zone"), "w") as zone_file:
        zone_file.write(HOST_ZONE)
    base = world_config(folder)
    seeds = [
        _toml_text(base).encode(),
        _toml_text(world_config(folder, False)).encode(),
        b'[service]\nsuffix = "dyn.example.com"\n',
        b'[service]\nsuffix = "dyn.example.com"\n[store]\nbackend = "memory"\n[http]\n',
    ]
    example = os.path.join(ROOT, "examples", "dyndns.toml")
    if os.path.exists(example):
        with open(example, "rb") as f:
            seeds.append(f.read())

    def config_toml(data: bytes) -> Hashable:
        with open(path, "wb") as f:
            f.write(data)
        try:
            load_settings(path)
        except ConfigError as e:
            return ("error", e.key)
        return ("ok",)

    def config_dict(data: bytes) -> Hashable:
        try:
            settings_from_dict(_mutate_dict(base, data), path)
        except ConfigError as e:
            return ("error", e.key)
        return ("ok",)

    dict_seeds = [b"", b"\x00\x00\x00\x01", b"\x01\x02\x03\x04\x05\x06\x07\x08"]
    return config_toml, seeds, config_dict, dict_seeds


def _fast_tmp() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


# -- the original's XML import


def _sdp_target(world: World) -> tuple[Callable, list[bytes]]:
    from dyndns_plugin.sdp_import import SDPImportError, read_config, read_state, setting_warnings

    folder = os.path.join(FIXTURES, "sdp")
    with open(os.path.join(folder, "config.xml"), "rb") as f:
        config_xml = f.read()
    with open(os.path.join(folder, "state.xml"), "rb") as f:
        state_xml = f.read()
    settings = world.settings
    users = {u.id: u for u in read_config(config_xml, "config.xml", settings).users}

    def sdp_xml(data: bytes) -> Hashable:
        mode = data[0] if data else 0
        xml = data[1:]
        try:
            if mode & 1:
                states, warnings = read_state(xml, "state.xml", users)
                return ("state", len(states) > 0, len(warnings) > 0)
            config = read_config(xml, "config.xml", settings)
            setting_warnings(config, settings)
            return ("config", len(config.users) > 0)
        except SDPImportError as e:
            return ("error", mode & 1, re.sub(r"\d+", "N", e.where)[:30], e.problem[:12])

    seeds = [
        b"\x00" + config_xml,
        b"\x01" + state_xml,
        b'\x00<config Suffix="dyn.example.com"/>',
        b"\x01<config/>",
        b"\x00" + config_xml.replace(b'<?xml version="1.0"?>', b""),
    ]
    return sdp_xml, seeds


# -- the loop


@dataclass
class Stats:
    target: str
    parser: str
    inputs: int = 0
    #: Unhandled exceptions and logged tracebacks.
    exceptions: int = 0
    #: Wrong answers: unparseable DNS, HTTP 500, a GnuDIP reply outside the protocol.
    wrong: int = 0
    hangs: int = 0
    seconds: float = 0.0
    corpus: int = 0
    unique: dict[str, int] = field(default_factory=dict)
    saved: list[str] = field(default_factory=list)
    #: The slowest input seen: (seconds, input).
    slowest: tuple[float, bytes] = (0.0, b"")

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


def _on_alarm(signum: int, frame: Any) -> None:
    global _alarmed
    _alarmed = True
    raise Hang()


_alarmed = False


def failure_key(error: BaseException) -> str:
    """Exception type and the innermost frame in our package (else the innermost)."""
    if isinstance(error, FuzzFailure):
        # The kind names the broken rule; only an unparseable reply adds
        # dnspython's complaint (sizes and request lines would split one bug
        # into many, and stop minimization).
        if error.kind == "dns-reply-unparseable":
            return f"{error.kind}:{error.detail[:40]}"
        return error.kind
    if isinstance(error, LoggedTraceback):
        failure = error.failure
        frames = [f for f in failure.frames if "dyndns_plugin" in f[1]] or failure.frames
        where = f"{os.path.basename(frames[-1][1])}:{frames[-1][2]}" if frames else "?"
        return f"logged:{failure.type.__name__}@{where}"
    tb = traceback.extract_tb(error.__traceback__)
    ours = [f for f in tb if "dyndns_plugin" in f.filename] or list(tb)
    where = f"{os.path.basename(ours[-1].filename)}:{ours[-1].lineno}" if ours else "?"
    return f"{type(error).__name__}@{where}"


def execute(target: Target, data: bytes, time_limit: float) -> tuple[str, Any]:
    """Run one input: ("ok", signature), ("hang", None) or ("fail", exception)."""
    global _alarmed
    previous = signal.getsignal(signal.SIGALRM)
    if previous is not _on_alarm:
        signal.signal(signal.SIGALRM, _on_alarm)
    _alarmed = False
    try:
        signal.setitimer(signal.ITIMER_REAL, time_limit)
        try:
            try:
                signature = target.run(data)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except Hang:
            return ("hang", None)
        except Exception as e:
            if _alarmed:
                return ("hang", None)
            return ("fail", e)
    finally:
        if previous is not _on_alarm:
            signal.signal(signal.SIGALRM, previous)
    if _alarmed:
        return ("hang", None)
    return ("ok", signature)


def minimize(target: Target, data: bytes, key: str, time_limit: float, budget: int = 1500) -> bytes:
    """Drop chunks of the input while it still fails the same way (bounded)."""
    best = data
    tries = 0
    chunk = max(1, len(best) // 2)
    while chunk >= 1 and tries < budget:
        i = 0
        changed = False
        while i < len(best) and tries < budget:
            candidate = best[:i] + best[i + chunk :]
            tries += 1
            status, value = execute(target, candidate, time_limit)
            if status == "fail" and failure_key(value) == key:
                best = candidate
                changed = True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return best


def fuzz(
    world: World | Callable[[], World],
    target_name: str,
    inputs: int,
    seed: int = 1,
    time_limit: float = 1.0,
    out: str | None = None,
    progress: Callable[[str], None] | None = None,
    max_corpus: int = 2048,
) -> Stats:
    """
    Run C{inputs} inputs through one target: its seeds first, then mutations
    of the corpus. C{world} may be a factory (a fresh world after a hang).
    """
    make_world = world if callable(world) and not isinstance(world, World) else None
    current: Any = make_world() if make_world else world
    targets = make_targets(current)
    target = targets[target_name]
    stats = Stats(target.name, target.parser)
    rng = random.Random(f"{seed}:{target_name}")
    mutator = Mutator(rng, target.tokens, target.max_len)
    corpus = list(target.seeds)
    seen: set[Hashable] = set()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    started = time.perf_counter()
    last_report = started
    try:
        for i in range(inputs):
            if i < len(target.seeds):
                data = target.seeds[i]
            else:
                data = mutator.mutate(rng.choice(corpus), rng.choice(corpus))
            began = time.perf_counter()
            status, value = execute(target, data, time_limit)
            took = time.perf_counter() - began
            if took > stats.slowest[0]:
                stats.slowest = (took, data)
            stats.inputs += 1
            if progress and not i & 1023 and time.perf_counter() - last_report > 30:
                last_report = time.perf_counter()
                progress(
                    f"{target.name}: {i + 1} inputs, {stats.exceptions} exceptions, "
                    f"{stats.wrong} wrong answers, {stats.hangs} hangs, "
                    f"{(i + 1) / (last_report - started):.0f}/s"
                )
            if status == "ok":
                if value not in seen and len(seen) < 100_000:
                    seen.add(value)
                    if len(corpus) < max_corpus:
                        corpus.append(data)
                    else:
                        corpus[rng.randrange(len(target.seeds), max_corpus)] = data
                continue
            if status == "hang":
                stats.hangs += 1
                key = "hang"
            else:
                if isinstance(value, FuzzFailure):
                    stats.wrong += 1
                else:
                    stats.exceptions += 1
                key = failure_key(value)
            stats.unique[key] = stats.unique.get(key, 0) + 1
            if stats.unique[key] == 1:
                if out is not None:
                    stats.saved.append(_save(target, data, key, value, out, time_limit))
                if progress:
                    progress(f"{target.name}: new failure {key} at input {i}")
            if status == "hang" and make_world is not None:
                current.close()
                current = make_world()
                target = make_targets(current)[target_name]
    finally:
        signal.signal(signal.SIGALRM, previous)
        stats.seconds = time.perf_counter() - started
        stats.corpus = len(corpus)
        if make_world is not None:
            current.close()
    return stats


def _save(target: Target, data: bytes, key: str, error: Any, out: str, time_limit: float) -> str:
    folder = os.path.join(out, target.name)
    os.makedirs(folder, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:60] + "-" + hashlib.sha1(data).hexdigest()[:10]
    path = os.path.join(folder, slug + ".bin")
    with open(path, "wb") as f:
        f.write(data)
    if key != "hang":
        small = minimize(target, data, key, time_limit)
        with open(os.path.join(folder, slug + ".min.bin"), "wb") as f:
            f.write(small)
    else:
        small = data
    with open(os.path.join(folder, slug + ".txt"), "w") as f:
        f.write(f"target: {target.name}\nkey: {key}\ninput: {data.hex()}\nminimized: {small.hex()}\n\n")
        if isinstance(error, LoggedTraceback):
            f.write(error.failure.getTraceback())
        elif isinstance(error, BaseException):
            f.write("".join(traceback.format_exception(error)))
    return path


def replay(target_name: str, path: str) -> int:
    with open(path, "rb") as f:
        data = f.read()
    world = World()
    try:
        target = make_targets(world)[target_name]
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        try:
            status, value = execute(target, data, 5.0)
        finally:
            signal.signal(signal.SIGALRM, previous)
    finally:
        world.close()
    print(f"{target_name} {path}: {status}")
    if status == "fail":
        if isinstance(value, LoggedTraceback):
            print(value.failure.getTraceback())
        else:
            traceback.print_exception(value)
        return 1
    return 1 if status == "hang" else 0


@implementer(ILogObserver)
def _discard(event: dict[str, Any]) -> None:
    """The only global log observer of a campaign: nothing is buffered or written."""


def record_from_summary(path: str) -> int:
    """
    A campaign's summary.json as the benchmark record bench/results/fuzz.json
    (C{python -m bench.report} renders it): per target the inputs,
    exceptions, wrong answers, hangs, inputs/s and corpus; the commit and
    date are those of the commit that added the summary, if it is in git.
    """
    import subprocess

    from bench.harness.record import RESULTS, code_version
    from bench.harness.users import REPO

    with open(path) as f:
        data = json.load(f)
    # summary.json is a list of targets; a published summary wraps it with where it ran.
    meta = data if isinstance(data, dict) else {}
    targets = meta.get("rows", data)
    log = subprocess.run(
        ["git", "-C", REPO, "log", "-1", "--format=%h %cI", "--", os.path.abspath(path)], capture_output=True, text=True
    ).stdout.split()
    inputs = {t["inputs"] for t in targets}
    record = {
        "benchmark": "fuzz",
        "date": meta.get("date") or (log[1] if log else None),
        "short_run": False,
        "command": meta.get("command") or f"python -m bench.fuzz --inputs {max(inputs)} --seed {targets[0]['seed']}",
        "machine": {"note": meta.get("machine", "not recorded in summary.json")},
        "code": {"commit": ", ".join(sorted({t["commit"] for t in targets})), "source": "per target"}
        if all("commit" in t for t in targets)
        else {"commit": log[0], "source": f"the commit that added {os.path.basename(path)}"}
        if log
        else code_version(),
        "parameters": {
            "inputs": sorted(inputs),
            "seed": targets[0]["seed"],
            "time_limit": targets[0]["time_limit"],
            "summary": os.path.basename(path),
        },
        "figures": {
            "targets": [
                {
                    k: t[k]
                    for k in (
                        "target",
                        "parser",
                        "inputs",
                        "exceptions",
                        "wrong_answers",
                        "hangs",
                        "inputs_per_second",
                        "corpus",
                        "seconds",
                        "commit",
                    )
                    if k in t
                }
                for t in targets
            ]
        },
        "found_and_fixed": meta.get("found_and_fixed", []),
        "ratios": {},
        "problems": [f"{t['target']}: {t['failures']}" for t in targets if t["failures"]],
        "plot": {
            "title": "Fuzzing: inputs per second per target",
            "ylabel": "inputs/s",
            "groups": [t["target"] for t in targets],
            "series": {"inputs/s": [t["inputs_per_second"] for t in targets]},
        },
    }
    with open(os.path.join(RESULTS, "fuzz.json"), "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(f"bench/results/fuzz.json: {len(targets)} targets")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--targets", default="", help="comma-separated (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=1.0, help="seconds per input")
    parser.add_argument("--out", default="fuzz-out", help="folder for reproducers and summary.json")
    parser.add_argument("--replay", help="run one saved input (with --targets NAME)")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument(
        "--record-from",
        metavar="SUMMARY",
        help="turn a campaign's summary.json into bench/results/fuzz.json, run nothing",
    )
    args = parser.parse_args(argv)
    if args.record_from:
        return record_from_summary(args.record_from)

    from twisted.logger import globalLogBeginner

    # No buffering of a million log events: only our watcher listens.
    globalLogBeginner.beginLoggingTo([_discard], redirectStandardIO=False)
    sys.setrecursionlimit(10_000)
    if args.replay:
        return replay(args.targets, args.replay)
    probe = World()
    names = list(make_targets(probe))
    probe.close()
    if args.list:
        print("\n".join(names))
        return 0
    chosen = [n for n in args.targets.split(",") if n] or names
    unknown = set(chosen) - set(names)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    os.makedirs(args.out, exist_ok=True)
    results = []

    def say(text: str) -> None:
        print(text, flush=True)

    print(
        "| target | parser | inputs | exceptions | wrong answers | hangs | time (s) | inputs/s | corpus |", flush=True
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for name in chosen:
        stats = fuzz(
            World,
            name,
            args.inputs,
            args.seed,
            args.time_limit,
            args.out,
            progress=lambda t: print("  " + t, file=sys.stderr, flush=True),
        )
        results.append(stats)
        print(
            f"| {stats.target} | {stats.parser} | {stats.inputs:,} | {stats.exceptions} | "
            f"{stats.wrong} | {stats.hangs} | {stats.seconds:.0f} | {stats.rate:,.0f} | "
            f"{stats.corpus} |",
            flush=True,
        )
        for key, count in sorted(stats.unique.items()):
            print(f"  failure {key}: {count} inputs", file=sys.stderr, flush=True)
        with open(os.path.join(args.out, "summary.json"), "w") as f:
            json.dump(
                [
                    {
                        "target": s.target,
                        "parser": s.parser,
                        "inputs": s.inputs,
                        "exceptions": s.exceptions,
                        "wrong_answers": s.wrong,
                        "hangs": s.hangs,
                        "seconds": round(s.seconds, 1),
                        "inputs_per_second": round(s.rate),
                        "corpus": s.corpus,
                        "failures": s.unique,
                        "saved": s.saved,
                        "seed": args.seed,
                        "time_limit": args.time_limit,
                    }
                    for s in results
                ],
                f,
                indent=2,
            )
    return 1 if any(s.exceptions or s.wrong or s.hangs for s in results) else 0


if __name__ == "__main__":
    sys.exit(main())
