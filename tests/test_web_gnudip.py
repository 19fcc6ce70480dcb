"""
GnuDIP over HTTP, against the real site on 127.0.0.1 port 0:

 - the reference client's (gdipc.pl) captured requests replayed byte for
   byte (tests/fixtures/gnudip/gdipc-http-*.transcript): the salt page with
   the salt injected and the clock at the capture's time, then the update
   with our signature substituted for the capture server's;
 - every branch of step 2: signature, time window (future, too old, the
   exact edge), replayed salt, salt shape, missing parameters, request
   codes, logins; the mount points, HEAD, the switch, and the signing key
   that survives a restart.

Replies are read the way gdipc.pl reads them: split on LF, each line matched
against its anchored C{^<meta name="(.*)" content="(.*)">$}.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import stat
from typing import Any
from urllib.parse import urlencode

from twisted.internet import defer, reactor, task
from twisted.logger import formatEvent, globalLogPublisher

from dyndns_plugin.auth import PasswordChecker
from dyndns_plugin.config import HTTPSettings
from dyndns_plugin.passwords import md5_verifier
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store.memory import MemoryUserStore
from dyndns_plugin.protocols.gnudip_http import KEY_LENGTH, SaltSigner, load_or_create_key
from dyndns_plugin.web.site import build_site
from tests.test_gnudip import (
    MAIN,
    OFFLINE_IP,
    PARKED,
    PASSWORDS,
    SALT,
    SUFFIX,
    client_hash,
    load_meta,
    load_transcript,
    make_users,
    transcript_names,
)
from tests.web_helpers import HOST, WebTestCase, stop_pool

#: The capture's salt time (gdipc-http-*-1.json C{time_value}).
CAPTURE_TIME = 1795295585
CAPTURE_SIGN = "30434abfe63f1659f27bec8ab91f80d1"
PATH = "/gnudip/cgi-bin/gdipupdt.cgi"
BASE_PATH = "/dyndns/gnudip"
#: gdipc.pl's reading of a reply line (after chomp, which strips only LF).
GDIPC_META = re.compile(r'^<meta name="(.*)" content="(.*)">$')
TITLE = "<html><head><title>GnuDIP Update Server</title>"


def gdipc_meta(body: bytes) -> list[tuple[str, str]]:
    """The (name, content) pairs gdipc.pl finds, in order."""
    found = []
    for line in body.decode("iso-8859-1").split("\n"):
        match = GDIPC_META.match(line)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def meta_lines(body: bytes) -> list[str]:
    """Every line that starts like a name meta tag, exactly as sent."""
    return [line for line in body.decode("iso-8859-1").split("\n") if line.startswith("<meta name=")]


def gdipc_request(target: str) -> bytes:
    """A request exactly as gdipc.pl 2.3.5 sends it (HTTP/1.0, its headers)."""
    return (
        f"GET {target} HTTP/1.0\r\nUser-Agent: GnuDIP/2.3.5\r\nPragma: no-cache\r\n"
        f"Host: {HOST}\r\n\r\n"
    ).encode("ascii")


class GnuDIPWebTestCase(WebTestCase):
    """
    The site with GnuDIP on, users from L{tests.test_gnudip.make_users},
    alice parked on L{PARKED}; the signer's clock is a C{task.Clock} at the
    capture's time and its salts are L{SALT} unless a test says otherwise.
    """

    window = 60

    def setUp(self) -> None:  # type: ignore[override]
        self.store = MemoryUserStore()
        self.service = DynDNSService(self.store, SUFFIX, default_ttl=30, poll_interval=None)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.successResultOf(self.service.ready)
        for user in make_users():
            self.successResultOf(self.service.add_user(user))
        result = self.successResultOf(
            self.service.update("alice", [ipaddress.ip_address(PARKED)], None, "test")
        )
        self.assertTrue(result.ok)
        self.checker = PasswordChecker(self.service.registry.users, reactor)
        self.addCleanup(stop_pool, self.checker)
        self.clock = task.Clock()
        self.clock.advance(CAPTURE_TIME)
        self.key = os.urandom(KEY_LENGTH)
        self.salts = [SALT]
        self.signer = SaltSigner(self.key, self.clock, self.window, salt_source=self.next_salt)
        self.start_site(HTTPSettings(**{"base_path": "/dyndns/", **self.settings}))

    def next_salt(self) -> str:
        return self.salts.pop(0) if len(self.salts) > 1 else self.salts[0]

    def start_site(self, settings: HTTPSettings, signer: Any = "default") -> None:
        self.site = build_site(
            self.service, settings, self.checker, self.signer if signer == "default" else signer
        )
        self.port: Any = reactor.listenTCP(0, self.site, interface=HOST)  # type: ignore[arg-type]
        self.addCleanup(self.port.stopListening)
        self.port_number = self.port.getHost().port  # type: ignore[attr-defined]

    # -- the two steps

    @defer.inlineCallbacks
    def salt_page(self, path: str = PATH, method: str = "GET"):
        """Step 1; returns (response, {name: content}) as gdipc.pl reads it."""
        if method == "GET":
            response = yield self.send(gdipc_request(path))
        else:
            response = yield self.request(path, method=method)
        self.assertEqual(response.status, 200, response.raw)
        return response, dict(gdipc_meta(response.body))

    def query(self, salt: str = SALT, time: str | int = CAPTURE_TIME, sign: str | None = None,
              user: str = "alice", password: str | None = None, domn: str = SUFFIX,
              reqc: str = "0", addr: str | None = None, pass_: str | None = None,
              drop: tuple[str, ...] = ()) -> str:
        """A step-2 query in gdipc.pl's order; C{sign} defaults to a valid one."""
        time = str(time)
        params = {
            "salt": salt,
            "time": time,
            "sign": self.sign(salt, time) if sign is None else sign,
            "user": user,
            "pass": pass_ if pass_ is not None else client_hash(password or PASSWORDS.get(user, "x"), salt),
            "domn": domn,
            "reqc": reqc,
        }
        if addr is not None:
            params["addr"] = addr
        for name in drop:
            del params[name]
        return urlencode(params)

    def sign(self, salt: str, time: str) -> str:
        """The signer's sign; for text it cannot sign, the same MAC over UTF-8."""
        try:
            return self.signer.sign(salt, time)
        except UnicodeEncodeError:
            mac = hmac.new(self.key, f"{salt}.{time}".encode("utf-8"), hashlib.sha256)
            return mac.hexdigest()[:32]

    @defer.inlineCallbacks
    def update(self, query: str, path: str = PATH, headers: Any = ()):
        """Step 2; returns (response, meta pairs). Always 200 and LF-only HTML."""
        if headers:
            response = yield self.request(f"{path}?{query}", headers=headers)
        else:
            response = yield self.send(gdipc_request(f"{path}?{query}"))
        self.assertEqual(response.status, 200, response.raw)
        self.assertTrue(response.header("content-type").startswith("text/html"), response.raw)
        self.assertNotIn(b"\r", response.body)
        return response, gdipc_meta(response.body)

    @defer.inlineCallbacks
    def two_steps(self, path: str = PATH, advance: float = 2, **kwargs: Any):
        """Step 1 on C{path}, C{advance} seconds, step 2 with what step 1 gave."""
        _, meta = yield self.salt_page(path)
        self.clock.advance(advance)
        result = yield self.update(
            self.query(salt=meta["salt"], time=meta["time"], sign=meta["sign"], **kwargs), path
        )
        return result

    # -- checks

    def served(self, name: str = MAIN) -> tuple[str, ...] | None:
        answer = self.service.registry.answer(name)
        return None if answer is None else tuple(str(a) for a in answer.addresses)

    def assertRetc(self, result: Any, retc: str, message: str | None = None,
                   addr: str | None = None) -> None:
        """Exactly the C{retc} line (and C{addr} line) gdipc.pl reads; the message in the body."""
        response, meta = result
        expected = [("retc", retc)] + ([("addr", addr)] if addr is not None else [])
        self.assertEqual(meta, expected, response.body)
        self.assertEqual(
            meta_lines(response.body),
            [f'<meta name="{name}" content="{value}">' for name, value in expected],
        )
        if message is not None:
            self.assertIn(message, response.text)

    def assertUnchanged(self) -> None:
        state = self.service.registry.states["alice"]
        self.assertEqual((state.method, state.offline), ("test", False))
        self.assertEqual(self.served(), (PARKED,))


class TranscriptReplayTests(GnuDIPWebTestCase):
    """gdipc.pl's captured requests, byte for byte."""

    PAIRS = ("gdipc-http-reqc0-addr", "gdipc-http-reqc2-auto")

    def test_every_transcript_replayed(self) -> None:
        """Every HTTP fixture belongs to a pair replayed below."""
        names = set(transcript_names("http"))
        self.assertEqual(names, {f"{p}-{i}" for p in self.PAIRS for i in (1, 2)})

    @defer.inlineCallbacks
    def replay_salt_page(self, name: str):
        """Step 1: the capture's request; the meta lines exactly as the reference's, our sign."""
        steps = load_transcript(name)
        meta = load_meta(name)
        self.assertEqual([d for d, _ in steps], ["C", "S"])
        self.assertEqual((meta["salt"], meta["time_value"], meta["sign"]),
                         (SALT, str(CAPTURE_TIME), CAPTURE_SIGN))
        response = yield self.send(steps[0][1])
        self.assertEqual(response.status, 200, response.raw)
        self.assertTrue(response.header("content-type").startswith("text/html"))
        ours = self.signer.sign(SALT, str(CAPTURE_TIME))
        self.assertRegex(ours, r"\A[0-9a-f]{32}\Z")
        self.assertNotEqual(ours, CAPTURE_SIGN)
        reference = steps[1][1].partition(b"\r\n\r\n")[2]
        expected = [
            line.replace(CAPTURE_SIGN, ours) for line in meta_lines(reference)
        ]
        self.assertEqual(expected, [
            f'<meta name="salt" content="{SALT}">',
            f'<meta name="time" content="{CAPTURE_TIME}">',
            f'<meta name="sign" content="{ours}">',
        ])
        self.assertEqual(meta_lines(response.body), expected)
        self.assertEqual(
            gdipc_meta(response.body),
            [("salt", SALT), ("time", str(CAPTURE_TIME)), ("sign", ours)],
        )
        lines = response.body.decode("ascii").split("\n")
        self.assertEqual(lines[0], reference.decode("ascii").split("\n")[0])
        self.assertEqual(lines[0], TITLE)
        self.assertEqual(lines[1:4], expected)
        self.assertNotIn(b"\r", response.body)
        self.assertIn("Salt generated", response.text)
        return ours

    @defer.inlineCallbacks
    def replay_update(self, name: str, ours: str):
        """Step 2: the capture's request with our sign; the reference's meta lines exactly."""
        steps = load_transcript(name)
        meta = load_meta(name)
        request = steps[0][1]
        self.assertEqual(request.count(f"sign={CAPTURE_SIGN}".encode()), 1)
        response = yield self.send(request.replace(CAPTURE_SIGN.encode(), ours.encode()))
        self.assertEqual(response.status, 200, response.raw)
        reference = steps[1][1].partition(b"\r\n\r\n")[2]
        self.assertEqual(meta_lines(response.body), meta_lines(reference))
        self.assertEqual(gdipc_meta(response.body), gdipc_meta(reference))
        self.assertEqual(response.body.decode("ascii").split("\n")[0], TITLE)
        self.assertNotIn(b"\r", response.body)
        self.assertIn("Successful update request", response.text)
        state = self.service.registry.states["alice"]
        self.assertEqual(self.served(), (meta["registered_address"],))
        self.assertEqual((state.method, state.client_address), ("gnudip-http", "127.0.0.1"))

    @defer.inlineCallbacks
    def test_gdipc_http_reqc0_addr(self):
        """gdipc.pl -a 192.0.2.7: the salt page, then C{retc 0}; 192.0.2.7 is served."""
        ours = yield self.replay_salt_page("gdipc-http-reqc0-addr-1")
        self.clock.advance(3)
        yield self.replay_update("gdipc-http-reqc0-addr-2", ours)

    @defer.inlineCallbacks
    def test_gdipc_http_reqc2_auto(self):
        """gdipc.pl with code 2: C{retc 0} and C{addr 127.0.0.1}; 127.0.0.1 is served."""
        ours = yield self.replay_salt_page("gdipc-http-reqc2-auto-1")
        self.clock.advance(3)
        yield self.replay_update("gdipc-http-reqc2-auto-2", ours)


class SaltPageTests(GnuDIPWebTestCase):
    @defer.inlineCallbacks
    def test_fresh_salts(self):
        """With the real salt source each salt page has a new salt, signed for the clock's time."""
        self.signer.salt_source = SaltSigner(b"", self.clock).salt_source
        _, first = yield self.salt_page()
        self.clock.advance(1)
        _, second = yield self.salt_page()
        for meta in (first, second):
            self.assertRegex(meta["salt"], r"\A[A-Za-z0-9]{10}\Z")
            self.assertEqual(meta["sign"], self.signer.sign(meta["salt"], meta["time"]))
        self.assertNotEqual(first["salt"], second["salt"])
        self.assertEqual((first["time"], second["time"]), (str(CAPTURE_TIME), str(CAPTURE_TIME + 1)))

    @defer.inlineCallbacks
    def test_salt_page_changes_nothing(self):
        """Step 1 does not consume the salt or touch any state."""
        yield self.salt_page()
        yield self.salt_page()
        self.assertUnchanged()
        result = yield self.update(self.query(addr="192.0.2.7"))
        self.assertRetc(result, "0")

    @defer.inlineCallbacks
    def test_head(self):
        """HEAD of the salt page: 200, the GET's length, no body."""
        get, _ = yield self.salt_page()
        head = yield self.request(PATH, method="HEAD")
        self.assertEqual(head.status, 200, head.raw)
        self.assertEqual(head.body, b"")
        self.assertEqual(int(head.header("content-length")), len(get.body))
        head = yield self.request(BASE_PATH, method="HEAD")
        self.assertEqual(head.status, 200, head.raw)


class PathTests(GnuDIPWebTestCase):
    @defer.inlineCallbacks
    def check_path(self, path: str, salt: str, address: str):
        self.salts = [salt]
        result = yield self.two_steps(path, addr=address)
        self.assertRetc(result, "0", "Successful update request")
        self.assertEqual(self.served(), (address,))

    def test_reference_path(self):
        return self.check_path(PATH, "AAAAAAAAA1", "192.0.2.11")

    def test_any_prefix(self):
        """Any path ending in /gnudip/cgi-bin/gdipupdt.cgi."""
        return self.check_path("/anything/gnudip/cgi-bin/gdipupdt.cgi", "AAAAAAAAA2", "192.0.2.12")

    def test_deep_prefix(self):
        return self.check_path("/a/b/c/gnudip/cgi-bin/gdipupdt.cgi", "AAAAAAAAA3", "192.0.2.13")

    def test_base_path(self):
        """C{<base>gnudip}."""
        return self.check_path(BASE_PATH, "AAAAAAAAA4", "192.0.2.14")

    @defer.inlineCallbacks
    def test_other_paths_not_found(self):
        for path in ("/gnudip/cgi-bin/gdipupdt.cgi/x", "/gnudip/cgi-bin/other.cgi",
                     "/dyndns/gnudipx", "/gnudip"):
            response = yield self.request(path)
            self.assertEqual(response.status, 404, path)


class SignAndTimeTests(GnuDIPWebTestCase):
    @defer.inlineCallbacks
    def test_wrong_sign(self):
        """A sign changed in one digit, empty-looking, or made with another key: C{retc 1}."""
        good = self.signer.sign(SALT, str(CAPTURE_TIME))
        flipped = good[:-1] + ("0" if good[-1] != "0" else "1")
        other = SaltSigner(os.urandom(KEY_LENGTH), self.clock).sign(SALT, str(CAPTURE_TIME))
        for sign in (flipped, other, good[:31], "x" * 32, "\u00e9" * 32):
            result = yield self.update(self.query(sign=sign, addr="192.0.2.7"))
            self.assertRetc(result, "1")
        self.assertUnchanged()
        result = yield self.update(self.query(sign=flipped, addr="192.0.2.7"))
        self.assertRetc(result, "1", "Error: Invalid signature")

    @defer.inlineCallbacks
    def test_sign_for_other_time(self):
        """The sign binds the time: a sign for another time is refused."""
        sign = self.signer.sign(SALT, str(CAPTURE_TIME - 5))
        result = yield self.update(self.query(sign=sign, addr="192.0.2.7"))
        self.assertRetc(result, "1", "Invalid signature")
        self.assertUnchanged()

    @defer.inlineCallbacks
    def test_sign_any_case(self):
        sign = self.signer.sign(SALT, str(CAPTURE_TIME)).upper()
        result = yield self.update(self.query(sign=sign, addr="192.0.2.7"))
        self.assertRetc(result, "0")

    @defer.inlineCallbacks
    def test_time_in_future(self):
        """A (validly signed) time 10 s ahead of the server's clock: C{retc 1}."""
        result = yield self.update(self.query(time=CAPTURE_TIME + 10, addr="192.0.2.7"))
        self.assertRetc(result, "1", "future")
        self.assertUnchanged()

    @defer.inlineCallbacks
    def test_time_too_old(self):
        """Step 2 more than the window (60 s) after step 1: C{retc 1} "too old"."""
        result = yield self.two_steps(advance=61, addr="192.0.2.7")
        self.assertRetc(result, "1", "Error: Salt value too old")
        self.assertUnchanged()

    @defer.inlineCallbacks
    def test_time_window_edge(self):
        """Exactly 60 s after step 1 is still inside the window."""
        result = yield self.two_steps(advance=60, addr="192.0.2.7")
        self.assertRetc(result, "0")
        self.assertEqual(self.served(), ("192.0.2.7",))

    @defer.inlineCallbacks
    def test_time_not_a_number(self):
        """Not ASCII digits (U+00B2 and Arabic-Indic digits pass str.isdigit): C{retc 1}, never a 500."""
        for time in ("abc", "-5", "1.5", "", "\u00b2", "\u0661\u0662", "1" * 5000):
            result = yield self.update(self.query(time=time, addr="192.0.2.7"))
            self.assertRetc(result, "1")
        self.assertUnchanged()

    @defer.inlineCallbacks
    def test_replayed_salt(self):
        """
        The same step-2 URL twice: the second is refused as already used,
        even though it is inside the window and correctly signed.
        """
        target = self.query(addr="192.0.2.7")
        result = yield self.update(target)
        self.assertRetc(result, "0")
        yield self.service.update("alice", [ipaddress.ip_address(PARKED)], None, "test")
        self.clock.advance(5)
        result = yield self.update(target)
        self.assertRetc(result, "1", "Error: Salt value already used")
        self.assertUnchanged()

    @defer.inlineCallbacks
    def test_salt_used_by_other_reqc(self):
        """A used salt cannot be used again with other parameters either."""
        result = yield self.update(self.query(addr="192.0.2.7"))
        self.assertRetc(result, "0")
        result = yield self.update(self.query(reqc="1"))
        self.assertRetc(result, "1", "already used")
        self.assertFalse(self.service.registry.states["alice"].offline)

    @defer.inlineCallbacks
    def test_other_salt_after_use(self):
        """Using one salt does not block the next one."""
        self.salts = ["AAAAAAAAA1", "AAAAAAAAA2"]
        result = yield self.two_steps(addr="192.0.2.7")
        self.assertRetc(result, "0")
        result = yield self.two_steps(addr="192.0.2.8")
        self.assertRetc(result, "0")
        self.assertEqual(self.served(), ("192.0.2.8",))

    @defer.inlineCallbacks
    def test_used_salts_forgotten_after_window(self):
        """The used-salt memory does not grow without bound: expired salts are pruned."""
        for i in range(5):
            self.salts = [f"AAAAAAAAB{i}"]
            result = yield self.two_steps(addr=f"192.0.2.{20 + i}", advance=0)
            self.assertRetc(result, "0")
        self.assertEqual(len(self.signer._used), 5)
        self.clock.advance(120)
        self.salts = ["AAAAAAAAC0"]
        result = yield self.two_steps(addr="192.0.2.30", advance=0)
        self.assertRetc(result, "0")
        self.assertEqual(list(self.signer._used), ["AAAAAAAAC0"])

    @defer.inlineCallbacks
    def test_salt_shape(self):
        """
        Salts of the wrong length or alphabet are refused even when signed
        and hashed correctly (so the shape check is what refuses them).
        """
        for salt in ("XLCDgXvzS", "XLCDgXvzSoo", "XLCDgXvz-o", "XLCDgXvz o", "XLCDgXvz\u00e9o"):
            result = yield self.update(self.query(salt=salt, addr="192.0.2.7"))
            self.assertRetc(result, "1", "Error: Invalid query string")
        self.assertUnchanged()


class ConfiguredWindowTests(GnuDIPWebTestCase):
    window = 10

    @defer.inlineCallbacks
    def test_window(self):
        """salt_window = 10: 10 s is fine, 11 s too old."""
        self.salts = ["AAAAAAAAA1", "AAAAAAAAA2"]
        result = yield self.two_steps(advance=10, addr="192.0.2.7")
        self.assertRetc(result, "0")
        result = yield self.two_steps(advance=11, addr="192.0.2.8")
        self.assertRetc(result, "1", "too old")
        self.assertEqual(self.served(), ("192.0.2.7",))


class ParameterTests(GnuDIPWebTestCase):
    @defer.inlineCallbacks
    def test_missing_parameter(self):
        """Each required parameter missing, or empty: C{retc 1}, nothing changed."""
        for name in ("salt", "time", "sign", "user", "pass", "domn", "reqc"):
            result = yield self.update(self.query(addr="192.0.2.7", drop=(name,)))
            self.assertRetc(result, "1", "Invalid query string")
            empty = self.query(addr="192.0.2.7", drop=(name,)) + f"&{name}="
            result = yield self.update(empty)
            self.assertRetc(result, "1")
        result = yield self.update("")
        self.assertRetc(result, "1")
        self.assertUnchanged()
        # none of them used up the salt
        result = yield self.update(self.query(addr="192.0.2.7"))
        self.assertRetc(result, "0")

    @defer.inlineCallbacks
    def test_reqc0(self):
        """Code 0 with an address: C{retc 0}, no addr line; the address is served."""
        result = yield self.two_steps(addr="192.0.2.7")
        self.assertRetc(result, "0", "Successful update request")
        self.assertEqual(self.served(), ("192.0.2.7",))

    @defer.inlineCallbacks
    def test_reqc0_ipv6(self):
        result = yield self.two_steps(addr="2001:db8::7")
        self.assertRetc(result, "0")
        self.assertEqual(self.served(), (PARKED, "2001:db8::7"))

    @defer.inlineCallbacks
    def test_reqc0_without_addr(self):
        """Code 0 without (or with an empty) addr: C{retc 1}; HTTP does not use the peer."""
        self.salts = ["AAAAAAAAA1", "AAAAAAAAA2"]
        result = yield self.two_steps()
        self.assertRetc(result, "1")
        result = yield self.two_steps(addr="")
        self.assertRetc(result, "1")
        self.assertUnchanged()

    @defer.inlineCallbacks
    def test_reqc0_bad_addr(self):
        self.salts = ["AAAAAAAAA1", "AAAAAAAAA2"]
        for addr in ("300.1.1.1", "224.0.0.1"):
            result = yield self.two_steps(addr=addr)
            self.assertRetc(result, "1")
        self.assertUnchanged()

    @defer.inlineCallbacks
    def test_reqc0_zero_addr_offline(self):
        """Code 0 with addr 0.0.0.0 is offline: C{retc 2}, the offline IP is served."""
        result = yield self.two_steps(addr="0.0.0.0")
        self.assertRetc(result, "2", "Successful offline request")
        self.assertTrue(self.service.registry.states["alice"].offline)
        self.assertEqual(self.served(), (OFFLINE_IP,))

    @defer.inlineCallbacks
    def test_reqc1(self):
        """Code 1: C{retc 2}; the offline IP is served."""
        result = yield self.two_steps(reqc="1")
        self.assertRetc(result, "2", "Successful offline request")
        self.assertEqual(self.served(), (OFFLINE_IP,))
        self.assertEqual(self.service.registry.states["alice"].method, "gnudip-http")

    @defer.inlineCallbacks
    def test_reqc2(self):
        """Code 2: C{retc 0} and the addr line with the address the server sees."""
        result = yield self.two_steps(reqc="2")
        self.assertRetc(result, "0", "Successful update request", addr="127.0.0.1")
        self.assertEqual(self.served(), ("127.0.0.1",))

    @defer.inlineCallbacks
    def test_reqc2_header_not_believed(self):
        """Without trusted proxies an X-Forwarded-For header changes nothing."""
        _, meta = yield self.salt_page()
        query = self.query(salt=meta["salt"], time=meta["time"], sign=meta["sign"], reqc="2")
        result = yield self.update(query, headers=[("X-Forwarded-For", "8.8.8.8")])
        self.assertRetc(result, "0", addr="127.0.0.1")

    @defer.inlineCallbacks
    def test_unknown_reqc(self):
        for reqc in ("3", "x", "01"):
            result = yield self.update(self.query(reqc=reqc, addr="192.0.2.7"))
            self.assertRetc(result, "1")
        self.assertUnchanged()

    @defer.inlineCallbacks
    def test_wrong_password(self):
        """Wrong password: C{retc 1} "Invalid login", nothing changed."""
        result = yield self.two_steps(addr="192.0.2.7", password="wrong")
        self.assertRetc(result, "1", "Error: Invalid login attempt")
        self.assertUnchanged()

    @defer.inlineCallbacks
    def test_other_failed_logins(self):
        """Unknown user, wrong domain, no MD5 verifier, disabled user: C{retc 1}."""
        cases = [
            {"user": "mallory", "password": "s3cret"},
            {"domn": "example.com"},
            {"domn": "bob.dyn.example.com"},
            {"user": "bob"},
            {"user": "carol"},
            {"pass_": md5_verifier("s3cret")},
        ]
        self.salts = [f"AAAAAAAAA{i}" for i in range(len(cases))] + ["AAAAAAAAAZ"]
        for case in cases:
            result = yield self.two_steps(addr="192.0.2.7", **case)
            self.assertRetc(result, "1")
        self.assertUnchanged()
        self.assertIsNone(self.service.registry.states.get("bob"))
        self.assertIsNone(self.service.registry.states.get("carol"))

    @defer.inlineCallbacks
    def test_full_domain(self):
        result = yield self.two_steps(addr="192.0.2.7", domn=MAIN)
        self.assertRetc(result, "0")
        self.assertEqual(self.served(), ("192.0.2.7",))

    @defer.inlineCallbacks
    def test_secrets_not_logged(self):
        """Neither the access log nor the failed-login message contains pass or sign."""
        events: list[dict] = []
        observer: Any = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        wrong = client_hash("wrong", SALT)
        sign = self.signer.sign(SALT, str(CAPTURE_TIME))
        result = yield self.update(self.query(pass_=wrong, addr="192.0.2.7"))
        self.assertRetc(result, "1")
        text = "\n".join(formatEvent(e) for e in events)
        self.assertIn("failed login for alice", text)
        for secret in (wrong, sign, md5_verifier("s3cret")):
            self.assertNotIn(secret, text)


class DisabledTests(GnuDIPWebTestCase):
    settings = {"gnudip": False}

    @defer.inlineCallbacks
    def test_not_enabled(self):
        """gnudip = false: 404 "not enabled" on every GnuDIP path, both steps."""
        for target in (PATH, BASE_PATH, "/x/gnudip/cgi-bin/gdipupdt.cgi",
                       f"{PATH}?{self.query(addr='192.0.2.7')}"):
            response = yield self.request(target)
            self.assertEqual(response.status, 404, target)
            self.assertEqual(response.body, b"GnuDIP HTTP update method is not enabled\n")
        self.assertUnchanged()

    @defer.inlineCallbacks
    def test_no_signer(self):
        """Without a salt signer GnuDIP is not served either."""
        self.start_site(HTTPSettings(base_path="/dyndns/"), signer=None)
        response = yield self.request(PATH)
        self.assertEqual(response.status, 404)
        self.assertIn(b"not enabled", response.body)


class KeyTests(GnuDIPWebTestCase):
    def test_key_file(self) -> None:
        """Made on first use (0600, 32 bytes), the same when loaded again; another file, another key."""
        path = self.mktemp()
        first = load_or_create_key(path)
        self.assertEqual(len(first), KEY_LENGTH)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(load_or_create_key(path), first)
        self.assertNotEqual(load_or_create_key(self.mktemp()), first)

    def test_short_key_replaced(self) -> None:
        """A truncated key file is replaced by a full key."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"short")
        key = load_or_create_key(path)
        self.assertEqual(len(key), KEY_LENGTH)
        self.assertEqual(load_or_create_key(path), key)

    @defer.inlineCallbacks
    def test_salt_survives_restart(self):
        """
        A salt page issued before a restart (a new SaltSigner on the
        reloaded key) is accepted after it; with another key it is not.
        """
        path = self.mktemp()
        before = SaltSigner(load_or_create_key(path), self.clock, salt_source=lambda: SALT)
        salt, time, sign = before.issue()
        self.clock.advance(5)
        after = SaltSigner(load_or_create_key(path), self.clock)
        stranger = SaltSigner(os.urandom(KEY_LENGTH), self.clock)
        self.assertIsNotNone(stranger.redeem(salt, time, sign))
        self.assertIsNone(after.redeem(salt, time, sign))
        # and through the site: one restarted on the same key file accepts it
        self.signer = SaltSigner(load_or_create_key(path), self.clock)
        self.start_site(HTTPSettings(base_path="/dyndns/"))
        salt2 = "AAAAAAAAR1"
        result = yield self.update(
            self.query(salt=salt2, time=time, sign=before.sign(salt2, time), addr="192.0.2.7")
        )
        self.assertRetc(result, "0")
        self.assertEqual(self.served(), ("192.0.2.7",))
