"""
Authenticating DynDNS users against an external password file.

The users themselves (their ids, names, offline IPs, disabled flag) still
live in the DynDNS store, managed with the C{dyndns} CLI; only the password
check asks somewhere else. Here that is an htpasswd-like text file, one user
per line::

    # user:hash  (hash made by dyndns_plugin.passwords.hash_password)
    alice:$scrypt$ln=15,r=8,p=1$...$...

Make a hash with::

    python -c 'import getpass; from dyndns_plugin.passwords import hash_password; print(hash_password(getpass.getpass()))'

The file is read again whenever its modification time changes, so editing it
takes effect without a restart. A user missing from the file cannot log in,
whatever the store says.

How to plug it in
=================

In the service's configuration::

    [service]
    auth_checker = "external_auth:make_checker"

and start C{twistd} with this folder on the module path and the file named
in the environment::

    PYTHONPATH=examples DYNDNS_PASSWORD_FILE=/etc/dyndns/passwords \\
        twistd -n dyndns --config examples/dyndns.toml

C{make_checker(service)} is called once with the L{DynDNSService}; every
update method (C{<base>ddns}, C{/nic/update}, and GnuDIP and the admin API
later) then checks passwords through the checker it returns.

Writing your own
================

Subclass L{PasswordChecker} and override C{check_password(user, password)}:
it gets the L{User} from the store and the password the client sent, and
returns a Deferred that fires with True or False. Everything else (unknown
users, disabled users, the 401 answers) stays the same. Never block the
reactor: slow work (a hash, a network call) goes to a thread or uses an
asynchronous client (LDAP with ldaptor, HTTP with treq...). Overriding
C{check_password} also replaces the built-in cache of verified passwords;
add your own if the external check is slow.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger

from dyndns_plugin.auth import PasswordChecker
from dyndns_plugin.model import User
from dyndns_plugin.passwords import verify_password

log = Logger()

#: The environment variable that names the password file.
ENVIRONMENT_VARIABLE = "DYNDNS_PASSWORD_FILE"


def read_password_file(path: str) -> dict[str, str]:
    """C{user -> hash} from C{user:hash} lines; blank lines and C{#} comments skipped."""
    table: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, password_hash = line.partition(":")
            if not sep or not user or not password_hash:
                log.warn("{path}:{number}: not user:hash, skipped", path=path, number=number)
                continue
            table[user.strip()] = password_hash.strip()
    return table


class PasswordFileChecker(PasswordChecker):
    """
    Passwords come from the file at C{path}, not from the store.

    @param users: the service's users (C{service.registry.users}).
    """

    def __init__(self, users: Any, path: str, reactor: Any = None) -> None:
        super().__init__(users, reactor)
        self.path = path
        self._mtime: int | None = None
        self._hashes: dict[str, str] = {}

    def hashes(self) -> dict[str, str]:
        """The file's table, read again if the file changed."""
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError as e:
            log.error("cannot read {path}: {error}", path=self.path, error=e)
            return {}
        if mtime != self._mtime:
            self._hashes = read_password_file(self.path)
            self._mtime = mtime
        return self._hashes

    def check_password(self, user: User, password: str) -> defer.Deferred[bool]:
        stored = self.hashes().get(user.id)
        if stored is None:
            return defer.succeed(False)
        # scrypt is slow on purpose: never on the reactor thread.
        return threads.deferToThread(verify_password, password, stored)


def make_checker(service: Any) -> PasswordFileChecker:
    """The C{auth_checker} factory: called with the L{DynDNSService}."""
    path = os.environ.get(ENVIRONMENT_VARIABLE, "passwords")
    return PasswordFileChecker(service.registry.users, os.path.abspath(path), service.clock)
