"""
A short, seeded run of bench/fuzz.py: every parser target gets a few thousand
inputs (its real-client seeds, then deterministic mutations) against the real
code, and must raise nothing undocumented, log no traceback, answer every DNS
message parseably, never answer HTTP 500 and never hang. The full campaign
(1,000,000 inputs per target) is a benchmark: see bench/RESULTS.md.

Also here: a regression test for each crash the fuzzer found, and tests that
the harness itself notices crashes, logged tracebacks and hangs, and that its
seeds reach the code behind authentication (so a green run means something).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from typing import Any

from twisted.trial import unittest

from dyndns_plugin.config import ConfigError, load_settings, settings_from_dict

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "fuzz.py")
_spec = importlib.util.spec_from_file_location("dyndns_bench_fuzz", _PATH)
assert _spec is not None and _spec.loader is not None
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["dyndns_bench_fuzz"] = fuzz
_spec.loader.exec_module(fuzz)

#: Inputs per target in the test suite (the benchmark runs 1,000,000).
INPUTS = 3000
SEED = 14
#: Generous per-input bound: the machine is shared; a hang is seconds long.
TIME_LIMIT = 5.0


class WorldTestCase(unittest.SynchronousTestCase):
    """A fuzz world (the whole service on a clock) per test."""

    def setUp(self) -> None:
        self.world = fuzz.World(self.mktemp())
        self.addCleanup(self.world.close)


class SeededFuzzTests(WorldTestCase):
    """Each target, a few thousand seeded inputs: no failure of any kind."""

    def check(self, name: str) -> None:
        out = self.mktemp()
        stats = fuzz.fuzz(self.world, name, INPUTS, seed=SEED, time_limit=TIME_LIMIT, out=out)
        self.assertEqual(stats.inputs, INPUTS)
        details = {key: count for key, count in stats.unique.items()}
        saved = "\n".join(stats.saved)
        self.assertEqual(stats.exceptions, 0, f"{name}: {details}; reproducers:\n{saved}")
        self.assertEqual(stats.wrong, 0, f"{name}: {details}; reproducers:\n{saved}")
        self.assertEqual(stats.hangs, 0, f"{name}: hangs; reproducers:\n{saved}")
        # The corpus grew: inputs reached answers the seeds did not give.
        self.assertGreater(stats.corpus, len(fuzz.make_targets(self.world)[name].seeds))

    def test_dns_udp(self) -> None:
        self.check("dns_udp")

    def test_dns_tcp(self) -> None:
        self.check("dns_tcp")

    def test_update(self) -> None:
        self.check("update")

    def test_transfer(self) -> None:
        self.check("transfer")

    def test_gnudip(self) -> None:
        self.check("gnudip")

    def test_http(self) -> None:
        self.check("http")

    def test_admin(self) -> None:
        self.check("admin")

    def test_config_toml(self) -> None:
        self.check("config_toml")

    def test_config_dict(self) -> None:
        self.check("config_dict")

    def test_sdp_xml(self) -> None:
        self.check("sdp_xml")


class SeedTests(WorldTestCase):
    """The seeds get past authentication and parsing to the real work."""

    def signatures(self, name: str) -> set:
        target = fuzz.make_targets(self.world)[name]
        out = set()
        for seed in target.seeds:
            status, value = fuzz.execute(target, seed, TIME_LIMIT)
            self.assertEqual(status, "ok", f"{name} seed {seed[:60]!r}: {value!r}")
            out.add(value)
        return out

    def test_dns(self) -> None:
        rcodes = {s[0] for s in self.signatures("dns_udp") if s != ("none",)}
        self.assertTrue({0, 3, 5}.issubset(rcodes), rcodes)  # answers, NXDOMAIN, REFUSED

    def test_update_signed_with_user_keys(self) -> None:
        signatures = self.signatures("update")
        self.assertIn((0, 1), signatures)  # alice's key: NOERROR
        self.assertIn((0, 2), signatures)  # bob's password-derived key: NOERROR
        self.assertIn((5, 0), signatures)  # unsigned: REFUSED

    def test_transfer(self) -> None:
        signatures = self.signatures("transfer")
        self.assertTrue(any(s[0] == (0,) for s in signatures), signatures)

    def test_gnudip(self) -> None:
        self.assertIn((b"0", True), self.signatures("gnudip"))

    def test_http(self) -> None:
        statuses = {s for sig in self.signatures("http") for s in sig}
        self.assertTrue({b"200", b"401", b"404"}.issubset(statuses), statuses)

    def test_admin(self) -> None:
        statuses = {s for sig in self.signatures("admin") for s in sig}
        self.assertTrue({b"200", b"201", b"204", b"401"}.issubset(statuses), statuses)

    def test_config_and_import(self) -> None:
        self.assertIn(("ok",), self.signatures("config_toml"))
        self.assertIn(("config", True), self.signatures("sdp_xml"))
        self.assertIn(("state", True, False), self.signatures("sdp_xml"))


class HarnessTests(unittest.SynchronousTestCase):
    """The loop notices what it is for: exceptions, logged tracebacks, hangs."""

    def target(self, run: Any) -> Any:
        return fuzz.Target("planted", "planted", run, [b"hello world", b"xyz"], [b"BOOM"], 256)

    def run_planted(self, run, inputs=3000, time_limit=1.0):
        target = self.target(run)
        original = fuzz.make_targets
        self.patch(fuzz, "make_targets", lambda world: {"planted": target} if world is None else original(world))
        out = self.mktemp()
        return fuzz.fuzz(None, "planted", inputs, seed=1, time_limit=time_limit, out=out), out

    def test_exception_found_saved_and_minimized(self) -> None:
        def run(data: bytes):
            if b"BOOM" in data:
                raise KeyError("planted")
            return len(data) % 3

        stats, out = self.run_planted(run)
        self.assertGreater(stats.exceptions, 0)
        self.assertEqual(list(stats.unique), [next(iter(stats.unique))])
        self.assertTrue(next(iter(stats.unique)).startswith("KeyError@"))
        folder = os.path.join(out, "planted")
        minimized = [f for f in os.listdir(folder) if f.endswith(".min.bin")]
        self.assertEqual(len(minimized), 1)
        with open(os.path.join(folder, minimized[0]), "rb") as f:
            self.assertEqual(f.read(), b"BOOM")

    def test_wrong_answer_counted_apart(self) -> None:
        def run(data: bytes):
            if b"BOOM" in data:
                raise fuzz.FuzzFailure("http-500", repr(data[:20]))
            return 0

        stats, _ = self.run_planted(run)
        self.assertGreater(stats.wrong, 0)
        self.assertEqual(stats.exceptions, 0)
        self.assertEqual(list(stats.unique), ["http-500"])

    def test_logged_traceback_is_a_failure(self) -> None:
        from twisted.logger import Logger

        watch = fuzz.LogWatch()
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(watch)
        self.addCleanup(globalLogPublisher.removeObserver, watch)
        log = Logger()

        class World:
            pass

        world: Any = World()
        world.watch = watch

        def run(data: bytes):
            if data.startswith(b"x"):
                try:
                    1 / 0  # noqa: B018 (raises on purpose)
                except ZeroDivisionError:
                    log.failure("planted")
            fuzz._raise_logged(world)
            return 0

        target = self.target(run)
        status, error = fuzz.execute(target, b"xyz", 1.0)
        self.assertEqual(status, "fail")
        self.assertTrue(fuzz.failure_key(error).startswith("logged:ZeroDivisionError@"))
        self.assertEqual(fuzz.execute(target, b"hello", 1.0)[0], "ok")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_hang_is_bounded(self) -> None:
        def run(data: bytes):
            if data == b"xyz":
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    pass
            return 0

        stats, _ = self.run_planted(run, inputs=2, time_limit=0.2)
        self.assertEqual(stats.hangs, 1)
        self.assertEqual(stats.inputs, 2)

    def test_hang_hidden_by_a_broad_except_still_counts(self) -> None:
        def run(data: bytes):
            try:
                while True:
                    pass
            except Exception:
                return 0

        self.assertEqual(fuzz.execute(self.target(run), b"x", 0.1)[0], "hang")


class RegressionTests(unittest.SynchronousTestCase):
    """One test per crash the fuzzer found (inputs minimized by bench/fuzz.py)."""

    def test_config_file_not_utf8(self) -> None:
        # config_toml: UnicodeDecodeError out of load_settings (tomllib.load
        # decodes the bytes without turning the error into TOMLDecodeError).
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b'[service]\nsuffix = "dyn.example.com"\n# \x80\n')
        with self.assertRaises(ConfigError) as caught:
            load_settings(path)
        self.assertEqual(caught.exception.key, "(syntax)")
        self.assertIn("UTF-8", caught.exception.problem)

    def test_config_base_url_bracketed_host(self) -> None:
        # config_toml: ValueError out of urlsplit for a bracketed host that
        # is not an address.
        for url in ("http://[dns.glue]/", "http://[::1/", "https://[zz]:80/x/"):
            with self.assertRaises(ConfigError) as caught:
                settings_from_dict({"service": {"suffix": "dyn.example.com"}, "http": {"base_url": url}})
            self.assertEqual(caught.exception.key, "http.base_url", url)

    def test_sdp_base_url_bracketed_host(self) -> None:
        # sdp_xml: ValueError out of setting_warnings for BaseURL="http://[zz]/";
        # now the differing base URL is a warning like any other.
        from dyndns_plugin.sdp_import import read_config, setting_warnings

        settings = settings_from_dict(
            {
                "service": {"suffix": "dyn.example.com"},
                "store": {"backend": "memory"},
                "http": {"listen": ["tcp:8080:interface=127.0.0.1"], "base_url": "http://127.0.0.1:8080/dyndns/"},
            },
            "/nonexistent/dyndns.toml",
        )
        xml = (
            b'<config Suffix="dyn.example.com" UpMeHTTPURL="true" BaseURL="http://[zz]/">'
            b'<User ID="a" Password="p"/></config>'
        )
        config = read_config(xml, "config.xml", settings)
        warnings = setting_warnings(config, settings)
        self.assertTrue(any(w.startswith("BaseURL='http://[zz]/'") for w in warnings), warnings)


class HTTPRegressionTests(WorldTestCase):
    """Crashes the fuzzer found on the HTTP sites, replayed through the real Site."""

    def test_post_content_type_with_a_line_break(self) -> None:
        # http/admin: a POST whose Content-Type holds a byte str.splitlines
        # breaks at (here RS, 0x1e) made Twisted's form parsing raise
        # ValueError in the email package: a logged traceback per request
        # and the connection dropped. Now 400 Bad Request.
        targets = fuzz.make_targets(self.world)
        for name in ("http", "admin"):
            for ctype in (b"\x1en", b"text/plain\x0bx", b"a\x85b", b"a\x1cb\x1d"):
                data = (
                    b"POST /dyndns/ddns HTTP/1.1\r\nHost: x\r\nContent-Type: "
                    + ctype
                    + b"\r\nContent-Length: 7\r\n\r\nip=1.2."
                )
                status, value = fuzz.execute(targets[name], data, TIME_LIMIT)
                self.assertEqual((status, value), ("ok", (b"400",)), (name, ctype))
        # The minimized input, as saved.
        data = bytes.fromhex(
            "504f5354202f20485454502f312e310d0a483a0d0a436f6e74656e742d547970653a1e6e0d0a"
            "436f6e74656e742d4c656e6774683a370d0a0d0a32372e302e302e"
        )
        self.assertEqual(fuzz.execute(targets["admin"], data, TIME_LIMIT), ("ok", (b"400",)))

    def test_post_form_still_parsed(self) -> None:
        targets = fuzz.make_targets(self.world)
        body = b"user=alice&pw=s3cret+pass&ip=203.0.113.31"
        data = (
            b"POST /dyndns/ddns HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        ) + body
        self.assertEqual(fuzz.execute(targets["http"], data, TIME_LIMIT), ("ok", (b"200",)))
        self.assertEqual(str(self.world.service.registry.states["alice"].ipv4), "203.0.113.31")

    def test_admin_password_with_a_lone_surrogate(self) -> None:
        # admin: PUT /api/users/<id> with a password holding a lone surrogate
        # (json.loads of bytes decodes with surrogatepass; "\ud800" escapes
        # do the same): UnicodeEncodeError in passwords._check, a logged
        # traceback and no answer. Now 400 like any other unusable password.
        targets = fuzz.make_targets(self.world)
        data = bytes.fromhex(
            "505554206170692f75736572732f7a656420485454502f312e310d0a483a0d0a417574686f72697a61"
            "74696f6e3a426561726572207b544f4b454e7d0d0a436f6e74656e742d547970653a6170706c6963"
            "6174696f6e2f6a736f6e0d0a436f6e74656e742d4c656e6774683a37370d0a0d0a7b226964223a20"
            "227a6564222c202270617373776f7264223a20227a6564207061734141414141414141414141414141"
            "414141414141414141414141414141404141414141eda080414141416e227d"
        )
        self.assertEqual(fuzz.execute(targets["admin"], data, TIME_LIMIT), ("ok", (b"400",)))
        body = b'{"id": "zed", "password": "a\\ud800b"}'
        data = (
            b"PUT /api/users/zed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        ) + body
        self.assertEqual(fuzz.execute(targets["admin"], data, TIME_LIMIT), ("ok", (b"400",)))
        self.assertNotIn("zed", self.world.service.registry.users)

    def test_verify_password_with_a_lone_surrogate(self) -> None:
        from dyndns_plugin.passwords import PasswordError, hash_password, verify_password

        with self.assertRaises(PasswordError):
            hash_password("a\ud800")
        self.assertFalse(verify_password("a\ud800", hash_password("a")))
