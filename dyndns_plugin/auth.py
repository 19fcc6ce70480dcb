"""
Authentication: the one hook every update method and the admin API use.

L{PasswordChecker} is a C{twisted.cred} L{ICredentialsChecker} for
user name + password. Subclass it and override L{PasswordChecker.check_password}
(or give the service any other checker for L{IUsernamePassword}) to
authenticate against an external source; see C{examples/external_auth.py}.

scrypt is slow on purpose (~0.1 s), and routers update often, so a verified
password is remembered for a short time: the cache key is an HMAC, under a
per-process random key, of the user id and the password, and each entry
remembers the stored hash it was checked against, so a password change (or
any edit of the hash) drops it at once. Failed attempts are never cached:
every wrong password costs a full scrypt. Hashes run on a small dedicated
thread pool, never on the reactor thread.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Callable, TypeVar

from twisted.cred import credentials, error
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from dyndns_plugin.model import User
from dyndns_plugin.passwords import gnudip_hash, verify_password

log = Logger()

T = TypeVar("T")

#: How long a verified password is remembered (seconds).
CACHE_SECONDS = 300.0
#: At most this many remembered passwords; the oldest go first.
CACHE_SIZE = 100_000


class DisabledUser(error.UnauthorizedLogin):
    """The credentials are right but the account is disabled."""


@implementer(ICredentialsChecker)
class PasswordChecker:
    """
    Checks a user id and password against the users the service knows.
    C{requestAvatarId} fires with the user id, or fails with
    L{error.UnauthorizedLogin} (L{DisabledUser} for a disabled account).

    @param users: a mapping user id -> L{User} (the service's registry).
    """

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(
        self,
        users: Any,
        reactor: Any = None,
        cache_seconds: float = CACHE_SECONDS,
        threads_max: int = 2,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.users = users
        self.reactor: IReactorTime = reactor
        self.cache_seconds = cache_seconds
        self._key = os.urandom(32)
        self._cache: dict[bytes, tuple[str, float]] = {}
        self._pool: ThreadPool | None = None
        self._threads_max = threads_max

    # -- the hook

    def check_password(self, user: User, password: str) -> defer.Deferred[bool]:
        """
        Whether C{password} is C{user}'s password. Override this to ask an
        external source; the default checks the stored scrypt hash, with the
        short-lived cache of verified passwords.
        """
        if user.password_hash is None:
            return defer.succeed(False)
        key = self._cache_key(user.id, password)
        hit = self._cache.get(key)
        now = self.reactor.seconds()
        if hit is not None and hit[0] == user.password_hash and hit[1] > now:
            return defer.succeed(True)
        stored = user.password_hash

        def remember(ok: bool) -> bool:
            if ok:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = (stored, now + self.cache_seconds)
            else:
                self._cache.pop(key, None)
            return ok

        return self._in_thread(verify_password, password, stored).addCallback(remember)

    # -- twisted.cred

    def requestAvatarId(self, creds: Any) -> defer.Deferred[str]:  # type: ignore[override]
        username = creds.username
        password = creds.password
        if isinstance(username, bytes):
            username = username.decode("utf-8", "replace")
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        user = self.users.get(username)
        if user is None or not password:
            # Spend about the time a real check takes, so a wrong user id
            # is not told apart from a wrong password by timing.
            return self._in_thread(verify_password, "x", _DUMMY_HASH).addCallback(lambda _: _unauthorized())

        def checked(ok: bool) -> str:
            if not ok:
                raise error.UnauthorizedLogin("incorrect user id or password")
            if user.disabled:
                raise DisabledUser("user is disabled")
            return user.id

        return self.check_password(user, password).addCallback(checked)

    def check_gnudip(self, user_id: str, salt: str, client_hash: str) -> defer.Deferred[str]:
        """
        GnuDIP's proof of the password: C{md5hex(md5hex(password) + "." +
        salt)}, checked in constant time against the user's MD5 verifier.
        Fires with the user id, or fails like L{requestAvatarId}. Override it
        together with L{check_password} if passwords live elsewhere (GnuDIP
        then needs the external source to provide the MD5 verifier).
        """
        user = self.users.get(user_id)
        if user is None or user.md5_verifier is None or not client_hash.isascii():
            return defer.fail(error.UnauthorizedLogin("no GnuDIP verifier for this user"))
        expected = gnudip_hash(user.md5_verifier, salt)
        if not hmac.compare_digest(expected, client_hash.strip().lower()):
            return defer.fail(error.UnauthorizedLogin("incorrect GnuDIP hash"))
        if user.disabled:
            return defer.fail(DisabledUser("user is disabled"))
        return defer.succeed(user.id)

    def check(self, user_id: str, password: str) -> defer.Deferred[str]:
        """Convenience: C{requestAvatarId} for plain strings."""
        return self.requestAvatarId(credentials.UsernamePassword(user_id.encode("utf-8"), password.encode("utf-8")))

    # -- internals

    def _cache_key(self, user_id: str, password: str) -> bytes:
        message = user_id.encode() + b"\x00" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def in_pool(self, function: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """
        C{function(*args)} on this checker's thread pool: for other password
        work that must not block the reactor (hashing a password an admin
        sets costs one scrypt, ~0.1 s).
        """
        return self._in_thread(function, *args)

    def _in_thread(self, function: Any, *args: Any) -> defer.Deferred[Any]:
        if self._pool is None:
            self._pool = ThreadPool(0, self._threads_max, name="dyndns-auth")
            self._pool.start()
            reactor: IReactorThreads = self.reactor  # type: ignore[assignment]
            reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)  # type: ignore[attr-defined]
        return threads.deferToThreadPool(self.reactor, self._pool, function, *args)  # type: ignore[arg-type]


def _unauthorized() -> str:
    raise error.UnauthorizedLogin("incorrect user id or password")


_DUMMY_HASH = "$scrypt$ln=15,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
