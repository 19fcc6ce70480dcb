"""
L{PasswordChecker}: the answers, the cache of verified passwords, the thread
pool; and C{examples/external_auth.py}, the documented way to check
passwords somewhere else, through the real C{/nic/update}.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading

import attrs
from twisted.cred import credentials
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from dyndns_plugin import auth
from dyndns_plugin.auth import DisabledUser, PasswordChecker
from dyndns_plugin.config import Settings
from dyndns_plugin.model import User
from dyndns_plugin.passwords import hash_password, verify_password
from dyndns_plugin.tap import make_checker
from tests.web_helpers import PASSWORDS, WebTestCase, stop_pool

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")

HASHES = {user: hash_password(pw, log2_n=10) for user, pw in PASSWORDS.items()}


def users() -> dict[str, User]:
    return {
        "alice": User("alice", password_hash=HASHES["alice"]),
        "bob": User("bob", password_hash=HASHES["bob"]),
        "carol": User("carol", password_hash=HASHES["carol"], disabled=True),
        "nohash": User("nohash"),
    }


class SyncChecker(PasswordChecker):
    """Hashes on the calling thread, so a L{task.Clock} can be the reactor."""

    def _in_thread(self, function, *args):
        return defer.maybeDeferred(function, *args)


class CheckerTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.users = users()
        self.checker = SyncChecker(self.users, self.clock, cache_seconds=300)
        self.calls: list[tuple[str, str | None]] = []

        def counting(password, password_hash):
            self.calls.append((password, password_hash))
            return verify_password(password, password_hash)

        self.patch(auth, "verify_password", counting)

    def check(self, user_id: str, password: str):
        return self.checker.check(user_id, password)


class AnswerTests(CheckerTestCase):
    def test_right_password(self):
        """The right password gives the user id."""
        self.assertEqual(self.successResultOf(self.check("alice", "s3cret")), "alice")

    def test_wrong_password(self):
        """A wrong password is UnauthorizedLogin (not DisabledUser)."""
        failure = self.failureResultOf(self.check("alice", "wrong"), UnauthorizedLogin)
        self.assertFalse(failure.check(DisabledUser))

    def test_other_users_password(self):
        """Another user's password does not work."""
        self.failureResultOf(self.check("alice", "hunter2"), UnauthorizedLogin)

    def test_unknown_user(self):
        """An unknown user is UnauthorizedLogin, after a hash of the same cost."""
        self.failureResultOf(self.check("nobody", "s3cret"), UnauthorizedLogin)
        self.assertEqual(len(self.calls), 1)
        self.assertEqual(self.calls[0][1], auth._DUMMY_HASH)

    def test_empty_password(self):
        """An empty password is refused without looking at the stored hash."""
        self.failureResultOf(self.check("alice", ""), UnauthorizedLogin)
        self.assertNotIn(HASHES["alice"], [h for _, h in self.calls])

    def test_no_password_hash(self):
        """A user without a password hash cannot log in."""
        self.failureResultOf(self.check("nohash", "anything"), UnauthorizedLogin)

    def test_disabled(self):
        """A disabled user with the right password is DisabledUser."""
        self.failureResultOf(self.check("carol", "carol-pw"), DisabledUser)

    def test_disabled_wrong_password(self):
        """A disabled user with a wrong password learns nothing: plain UnauthorizedLogin."""
        failure = self.failureResultOf(self.check("carol", "wrong"), UnauthorizedLogin)
        self.assertFalse(failure.check(DisabledUser))

    def test_bytes_credentials(self):
        """C{requestAvatarId} takes twisted.cred's bytes credentials, UTF-8 passwords too."""
        self.users["bob"] = User("bob", password_hash=hash_password("pässwörd", log2_n=10))
        creds = credentials.UsernamePassword("bob".encode(), "pässwörd".encode("utf-8"))
        self.assertEqual(self.successResultOf(self.checker.requestAvatarId(creds)), "bob")

    def test_interfaces(self):
        """It is a twisted.cred checker for user name + password."""
        from twisted.cred.checkers import ICredentialsChecker

        self.assertTrue(ICredentialsChecker.providedBy(self.checker))
        self.assertEqual(self.checker.credentialInterfaces, (credentials.IUsernamePassword,))


class CacheTests(CheckerTestCase):
    def test_cached(self):
        """A second check of the same right password does not hash again."""
        self.successResultOf(self.check("alice", "s3cret"))
        self.assertEqual(len(self.calls), 1)
        self.assertEqual(self.successResultOf(self.check("alice", "s3cret")), "alice")
        self.assertEqual(len(self.calls), 1)

    def test_per_user(self):
        """The cache is per user: bob's check is not answered by alice's entry."""
        self.successResultOf(self.check("alice", "s3cret"))
        self.successResultOf(self.check("bob", "hunter2"))
        self.assertEqual(len(self.calls), 2)

    def test_wrong_never_cached(self):
        """Every wrong password costs a hash, even right after a cached right one."""
        self.successResultOf(self.check("alice", "s3cret"))
        for _ in range(3):
            self.failureResultOf(self.check("alice", "wrong"), UnauthorizedLogin)
        self.assertEqual(len(self.calls), 4)
        self.assertEqual(len(self.checker._cache), 1)

    def test_password_change(self):
        """A changed password hash drops the entry: the old password fails at once."""
        self.successResultOf(self.check("alice", "s3cret"))
        self.users["alice"] = attrs.evolve(self.users["alice"], password_hash=hash_password("new-pw", log2_n=10))
        self.failureResultOf(self.check("alice", "s3cret"), UnauthorizedLogin)
        self.assertEqual(self.successResultOf(self.check("alice", "new-pw")), "alice")
        self.assertEqual(len(self.calls), 3)

    def test_rehash_same_password(self):
        """Any edit of the hash (same password, new salt) checks again."""
        self.successResultOf(self.check("alice", "s3cret"))
        self.users["alice"] = attrs.evolve(self.users["alice"], password_hash=hash_password("s3cret", log2_n=10))
        self.successResultOf(self.check("alice", "s3cret"))
        self.assertEqual(len(self.calls), 2)

    def test_disabled_after_cache(self):
        """Disabling a user takes effect even for a cached password."""
        self.successResultOf(self.check("alice", "s3cret"))
        self.users["alice"] = attrs.evolve(self.users["alice"], disabled=True)
        self.failureResultOf(self.check("alice", "s3cret"), DisabledUser)

    def test_removed_after_cache(self):
        """A removed user cannot log in with a cached password."""
        self.successResultOf(self.check("alice", "s3cret"))
        del self.users["alice"]
        self.failureResultOf(self.check("alice", "s3cret"), UnauthorizedLogin)

    def test_expiry(self):
        """An entry is used until cache_seconds have passed, then the password is hashed again."""
        self.successResultOf(self.check("alice", "s3cret"))
        self.clock.advance(299)
        self.successResultOf(self.check("alice", "s3cret"))
        self.assertEqual(len(self.calls), 1)
        self.clock.advance(1)
        self.successResultOf(self.check("alice", "s3cret"))
        self.assertEqual(len(self.calls), 2)
        self.clock.advance(299)
        self.successResultOf(self.check("alice", "s3cret"))
        self.assertEqual(len(self.calls), 2)

    def test_no_clear_password_in_keys(self):
        """Cache keys are 32-byte HMACs: neither the password nor the user id appear in them."""
        self.successResultOf(self.check("alice", "s3cret"))
        self.successResultOf(self.check("bob", "hunter2"))
        self.assertEqual(len(self.checker._cache), 2)
        for key, value in self.checker._cache.items():
            self.assertIsInstance(key, bytes)
            self.assertEqual(len(key), 32)
            for secret in (b"s3cret", b"hunter2", b"alice", b"bob"):
                self.assertNotIn(secret, key)
            self.assertNotIn("s3cret", repr(value))
            self.assertNotIn("hunter2", repr(value))

    def test_keys_differ_per_process(self):
        """Two checkers (two processes) key the same password differently."""
        other = SyncChecker(self.users, self.clock)
        self.assertNotEqual(self.checker._cache_key("alice", "s3cret"), other._cache_key("alice", "s3cret"))

    def test_size_bound(self):
        """The cache holds at most CACHE_SIZE entries; the oldest goes first."""
        self.patch(auth, "CACHE_SIZE", 2)
        self.successResultOf(self.check("alice", "s3cret"))
        self.successResultOf(self.check("bob", "hunter2"))
        self.users["dave"] = User("dave", password_hash=HASHES["alice"])
        self.successResultOf(self.check("dave", "s3cret"))
        self.assertEqual(len(self.checker._cache), 2)
        self.assertNotIn(self.checker._cache_key("alice", "s3cret"), self.checker._cache)
        self.successResultOf(self.check("bob", "hunter2"))
        self.assertEqual(len(self.calls), 3)


class ThreadPoolTests(TestCase):
    """The real checker hashes on its own thread pool, never on the reactor thread."""

    def setUp(self):
        self.checker = PasswordChecker(users(), reactor)
        self.addCleanup(stop_pool, self.checker)

    @defer.inlineCallbacks
    def test_right_password(self):
        """The right password through the real thread pool gives the user id."""
        self.assertEqual((yield self.checker.check("alice", "s3cret")), "alice")

    @defer.inlineCallbacks
    def test_wrong_password(self):
        """A wrong password through the real thread pool is UnauthorizedLogin."""
        with self.assertRaises(UnauthorizedLogin):
            yield self.checker.check("alice", "wrong")

    @defer.inlineCallbacks
    def test_off_the_reactor_thread(self):
        """verify_password runs on a "dyndns-auth" pool thread."""
        threads_seen = []

        def recording(password, password_hash):
            threads_seen.append(threading.current_thread())
            return verify_password(password, password_hash)

        self.patch(auth, "verify_password", recording)
        yield self.checker.check("alice", "s3cret")
        with self.assertRaises(UnauthorizedLogin):
            yield self.checker.check("nobody", "x")
        self.assertEqual(len(threads_seen), 2)
        for thread in threads_seen:
            self.assertIsNot(thread, threading.main_thread())
            self.assertIn("dyndns-auth", thread.name)


# -- examples/external_auth.py


def load_example():
    spec = importlib.util.spec_from_file_location(
        "external_auth_under_test", os.path.join(EXAMPLES, "external_auth.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ExternalAuthTests(WebTestCase):
    """The example checker, plugged into the real site."""

    def make_checker(self):
        self.example = load_example()
        self.password_file = os.path.abspath(self.mktemp())
        with open(self.password_file, "w", encoding="utf-8") as f:
            f.write("# user:hash\n\n")
            f.write(f"alice:{hash_password('from-the-file', log2_n=10)}\n")
            f.write("broken line\n")
        return self.example.PasswordFileChecker(self.service.registry.users, self.password_file, reactor)

    def nic(self, user: str, password: str):
        return self.request("/nic/update?hostname=alice.dyn.example.com&myip=192.0.2.1", auth=(user, password))

    @defer.inlineCallbacks
    def test_external_password(self):
        """The file's password works through /nic/update."""
        response = yield self.nic("alice", "from-the-file")
        self.assertEqual((response.status, response.body), (200, b"good 192.0.2.1\n"))
        self.assertEqual(self.served("alice.dyn.example.com"), ("192.0.2.1",))

    @defer.inlineCallbacks
    def test_stored_password_refused(self):
        """The password stored in the service no longer works."""
        response = yield self.nic("alice", "s3cret")
        self.assertEqual((response.status, response.body), (401, b"badauth\n"))
        self.assertIsNone(self.state("alice"))

    @defer.inlineCallbacks
    def test_user_not_in_file(self):
        """A user the file does not list cannot log in, even with the stored password."""
        response = yield self.nic("bob", "hunter2")
        self.assertEqual(response.status, 401)

    @defer.inlineCallbacks
    def test_file_reloaded(self):
        """Editing the file takes effect without a restart."""
        with open(self.password_file, "w", encoding="utf-8") as f:
            f.write(f"alice:{hash_password('second', log2_n=10)}\n")
        os.utime(self.password_file, ns=(0, 10**18))
        response = yield self.nic("alice", "from-the-file")
        self.assertEqual(response.status, 401)
        response = yield self.nic("alice", "second")
        self.assertEqual(response.body, b"good 192.0.2.1\n")

    @defer.inlineCallbacks
    def test_missing_file(self):
        """A missing file refuses everyone (and says why in the log)."""
        os.remove(self.password_file)
        response = yield self.nic("alice", "from-the-file")
        self.assertEqual(response.status, 401)

    def test_read_password_file(self):
        """Comments, blank and malformed lines are skipped."""
        table = self.example.read_password_file(self.password_file)
        self.assertEqual(list(table), ["alice"])

    def test_plugged_in_by_config(self):
        """C{auth_checker = "external_auth:make_checker"} with PYTHONPATH=examples loads it."""
        self.patch(sys, "path", [EXAMPLES, *sys.path])
        self.addCleanup(sys.modules.pop, "external_auth", None)
        os.environ["DYNDNS_PASSWORD_FILE"] = self.password_file
        self.addCleanup(os.environ.pop, "DYNDNS_PASSWORD_FILE", None)
        settings = Settings(path="dyndns.toml", suffix="dyn.example.com", auth_checker="external_auth:make_checker")
        checker = make_checker(settings, self.service)
        self.addCleanup(stop_pool, checker)
        self.assertEqual(type(checker).__name__, "PasswordFileChecker")
        self.assertIsInstance(checker, PasswordChecker)
        self.assertEqual(checker.path, self.password_file)
        self.assertIs(checker.users, self.service.registry.users)
