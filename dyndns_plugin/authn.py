"""
The adapter seam: the one entry every update protocol goes through (ddns URL
and Basic, /nic/update, GnuDIP over TCP and HTTP, RFC 2136 TSIG, the ACME
HTTP APIs through L{Authenticator.check_acme}; the admin API uses its
authentication step). An adapter parses its protocol into a
L{ClientUpdate}, calls L{Authenticator.update} (authenticate, then the name
ownership check, then the service write) and renders the L{UpdateOutcome}
in its protocol's words. The lockout, the fair share of the hash pool,
failure counting, metrics hooks, the audit events of refusals (bounded:
L{dyndns_plugin.audit}), name ownership and the method name (L{Method})
live here once; the service's writes audit everything after. The per-user
change limit is the service's: only the write itself can tell a change
from a C{nochg}.

A request from a locked-out source is refused before any password hash is
computed. Each source may run at most C{limits.source_checks} password
checks at once, and sources that failed recently ("suspects") at most
C{limits.suspect_checks} all together (L{CheckGate}); a source without
failures is never queued behind them, so a wrong-password flood cannot make
an honest router wait for the hash pool.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol, Sequence

import attrs
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import task

from dyndns_plugin.acme import TXTEdit
from dyndns_plugin.auth import DisabledUser
from dyndns_plugin.checkgate import CheckGate
from dyndns_plugin.limits import Limiter
from dyndns_plugin.methods import Method
from dyndns_plugin.model import IPAddress, UpdateResult, UpdateStatus, normalize_user_id

if TYPE_CHECKING:
    from dyndns_plugin.service import DynDNSService

#: HTTP's status for a locked-out source (Twisted names no constant for it).
TOO_MANY_REQUESTS = 429

#: Seconds a client told "busy" (its source's queue of checks is full)
#: should wait.
BUSY_RETRY = 1.0


class Outcome(enum.Enum):
    OK = "ok"
    #: Wrong user id, password, hash, key or signature.
    BAD = "bad"
    #: The right credentials of a disabled user.
    DISABLED = "disabled"
    #: Refused unchecked: the source (or user id) is locked out.
    LOCKED = "locked"


@attrs.frozen
class AuthResult:
    outcome: Outcome
    user_id: str | None = None
    #: For LOCKED: seconds until a retry may succeed.
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def retry_header(self) -> bytes:
        return retry_header(self.retry_after)


def retry_header(seconds: float | None) -> bytes:
    """A C{Retry-After} value: whole seconds, rounded up, at least 1."""
    return b"%d" % max(1, -int(-(seconds or 1) // 1))


class CredentialChecker(Protocol):
    """
    What checks a client's secret (L{dyndns_plugin.auth.PasswordChecker}, or
    a replacement): each fires with the user id, or fails with
    C{UnauthorizedLogin} (L{DisabledUser} for a disabled user).
    """

    def check(self, user_id: str, password: str) -> Awaitable[Any]: ...

    def check_gnudip(self, user_id: str, salt: str, client_hash: str) -> Awaitable[Any]: ...


# -- the request every update protocol builds


@attrs.frozen
class Password:
    """A user id's password (ddns, /nic/update)."""

    secret: str = attrs.field(repr=False)


@attrs.frozen
class GnuDIPHash:
    """C{md5hex(md5hex(password) + "." + salt)} for a salt we issued."""

    salt: str
    hash: str = attrs.field(repr=False)


@attrs.frozen
class Proven:
    """
    Credentials the adapter checked itself (a TSIG MAC: cheap, and bound to
    the wire bytes), having told the seam through L{Authenticator.locked},
    L{Authenticator.failed} and L{Authenticator.succeeded}.
    """


Credential = Password | GnuDIPHash | Proven


@attrs.frozen
class ClientUpdate:
    """
    One client's update request, whatever protocol carried it.

    @ivar source: the client's address as text (None: unknown, never locked
        or counted).
    @ivar names: the names the client asked to update (lower-case, no final
        dot); None for "the user's own", which needs no ownership check.
    @ivar addresses: at most one IPv4 and one IPv6 address. Without
        C{exact} a family not given keeps its address; with C{exact} (RFC
        2136) a family not given is removed, and none at all is offline.
    @ivar offline: take the user offline (C{addresses} is ignored).
    @ivar ttl: the requested TTL (the service clamps it), None: default.
    """

    method: Method
    user_id: str = attrs.field(converter=normalize_user_id)
    credential: Credential
    source: str | None = None
    names: tuple[str, ...] | None = None
    addresses: tuple[IPAddress, ...] = ()
    offline: bool = False
    exact: bool = False
    ttl: int | None = None


@attrs.frozen
class UpdateOutcome:
    """
    What the seam did with a L{ClientUpdate}.

    @ivar auth: the authentication result; nothing else happened unless ok.
    @ivar foreign: the requested names that are not the user's to update.
    @ivar result: the service's answer; None if nothing was written (refused
        credentials, or no requested name was the user's).
    """

    auth: AuthResult
    foreign: frozenset[str] = frozenset()
    result: UpdateResult | None = None


class Authenticator:
    """
    The seam: L{update} for a whole request, and its steps for adapters that
    need them one at a time (TSIG checks its own MAC).

    @param checker: the password checker (L{CredentialChecker}).
    @param service: the service, whose L{Limiter} every adapter shares and
        whose hooks count failures and lockouts in metrics.
    """

    def __init__(self, checker: CredentialChecker, service: "DynDNSService") -> None:
        self.checker = checker
        self.service = service
        settings = service.limiter.settings
        self.gate = CheckGate(settings.source_checks, settings.suspect_checks, settings.source_queue)

    @property
    def limiter(self) -> Limiter:
        return self.service.limiter

    # -- the whole request

    async def update(self, request: ClientUpdate) -> UpdateOutcome:
        """Authenticate C{request}, check its names, and write it through the service."""
        checked = await self.check(request)
        if not checked.ok or checked.user_id is None:
            return UpdateOutcome(checked)
        user_id = checked.user_id
        if not self.service.registry.has_user(user_id):  # removed while we checked
            self.refused(request.method, user_id, request.source, "nohost", "unknown user")
            return UpdateOutcome(checked, result=UpdateResult(UpdateStatus.NO_SUCH_USER, None, "unknown user"))
        foreign: frozenset[str] = frozenset()
        if request.names is not None:
            own = self.own_names(user_id)
            foreign = frozenset(n for n in request.names if n not in own)
            if not any(n in own for n in request.names):
                self.refused(request.method, user_id, request.source, "nohost", "no requested name is the user's")
                return UpdateOutcome(checked, foreign)
        if user_id != request.user_id:  # the checker's spelling of the id
            request = attrs.evolve(request, user_id=user_id)
        return UpdateOutcome(checked, foreign, await self.write(request))

    async def authenticate(self, request: ClientUpdate, problem: str = "badrequest") -> AuthResult:
        """
        Only the authentication step, for a request the adapter will refuse
        anyway once the client is known (a bad TTL or address): a wrong
        password must still count, and be answered as one. An authenticated
        request is audited as refused with the result C{problem}.
        """
        checked = await self.check(request)
        if checked.ok:
            self.refused(request.method, checked.user_id, request.source, problem)
        return checked

    async def check(self, request: ClientUpdate) -> AuthResult:
        """Check C{request}'s credential (refusals are counted and audited)."""
        credential = request.credential
        if isinstance(credential, Password):
            return await self.password(request.method, request.user_id, credential.secret, request.source)
        if isinstance(credential, GnuDIPHash):
            return await self.gnudip(request.method, request.user_id, credential.salt, credential.hash, request.source)
        return AuthResult(Outcome.OK, request.user_id)

    def own_names(self, user_id: str) -> set[str]:
        """
        The names C{user_id}'s own update may name: the main name and the
        exact additional names (not the names a wildcard alias covers).
        """
        return self.service.registry.updatable_names(user_id)

    async def write(self, request: ClientUpdate) -> UpdateResult:
        """The service call for an authenticated C{request}."""
        service = self.service
        if request.offline:
            return await service.set_offline(request.user_id, request.method, request.source)
        if request.exact:
            ipv4 = next((a for a in request.addresses if a.version == 4), None)
            ipv6 = next((a for a in request.addresses if a.version == 6), None)
            return await service.set_addresses(request.user_id, ipv4, ipv6, request.ttl, request.method, request.source)
        return await service.update(
            request.user_id, list(request.addresses), request.ttl, request.method, request.source
        )

    async def write_txt(self, method: str, user_id: str, edits: Sequence[TXTEdit], source: str | None) -> UpdateResult:
        """The service call that changes an authenticated user's ACME challenge values."""
        return await self.service.edit_txt(user_id, edits, method, source)

    # -- the steps, for adapters that check credentials themselves (TSIG)

    def locked(self, method: str, source: str | None, user_id: str | None) -> AuthResult | None:
        """A LOCKED result if C{source} may not try now, else None."""
        wait = self.limiter.locked(source, user_id)
        if wait is None:
            return None
        self.service.auth_locked(method)
        self.refused(method, user_id, source, "locked", f"locked out for {wait:.0f} s")
        return AuthResult(Outcome.LOCKED, user_id, wait)

    async def slowly(self, result: AuthResult) -> AuthResult:
        """
        C{result} after C{limits.refusal_delay} seconds: a locked-out client
        that asks again at once on the same connection (HTTP keep-alive, a
        guessing loop) gets one refusal a second, so its refusals, cheap as
        they are, cannot take the reactor from everyone else.
        """
        delay = self.limiter.settings.refusal_delay
        if delay <= 0:
            return result
        await task.deferLater(self.service.clock, delay, lambda: None)  # type: ignore[arg-type]
        # Retry-After counts from when the answer leaves, not from the check.
        return attrs.evolve(result, retry_after=max(0.0, (result.retry_after or 0) - delay))

    def failed(self, method: str, source: str | None, user_id: str | None) -> AuthResult:
        """Count a refused credential; the BAD result."""
        # Only existing accounts are worth a per-user count (and memory).
        known = user_id if user_id in self.service.registry.users else None
        self.limiter.failed(source, known)
        self.service.auth_failed(method)
        self.refused(method, user_id, source, "badauth", "failed login")
        return AuthResult(Outcome.BAD, user_id)

    def refused(
        self, method: str, user_id: str | None, source: str | None, result: str, reason: str | None = None
    ) -> None:
        """
        The audit event of a request refused before (or instead of) the
        service's write: C{result} is the refusal (badauth, locked, disabled,
        nohost, badaddress, ...), sampled: a client can repeat any of
        these at will. An admin login is an admin event.
        """
        audit = self.service.audit
        if method == Method.ADMIN:
            audit.admin(user_id, "login", source, result, reason=reason)
            return
        state = self.service.registry.state(user_id) if user_id is not None else None
        audit.update(user_id, method, source, result, state, reason=reason, sampled=True)

    def succeeded(self, source: str | None, user_id: str) -> AuthResult:
        self.limiter.succeeded(source, user_id)
        return AuthResult(Outcome.OK, user_id)

    # -- whole checks

    async def password(self, method: str, user_id: str, password: str, source: str | None) -> AuthResult:
        """Check a user id and password (ddns, /nic/update, admin)."""
        return await self._check(method, user_id, source, lambda: self.checker.check(user_id, password))

    async def check_acme(self, method: str, user_id: str, secret: str, source: str | None) -> AuthResult:
        """
        Check the secret of a request to an ACME HTTP API (acme-dns,
        httpreq): one of the user's scoped ACME keys (L{AcmeKey}: a SHA-256
        compare, no hash pool), or, when C{acme.passwords} is on, the user's
        password (the usual check). Lockouts, the check gate and failure
        counting are those of every other method: a locked-out source is
        refused unchecked, and a wrong secret counts. A scoped key's
        L{AuthResult} is OK like a password's; what it may do is the
        adapter's to limit (the ACME adapters only ever call L{write_txt}).
        A failing store read raises (the adapter answers "try later").
        """
        user_id = normalize_user_id(user_id)
        passwords = self.service.acme.passwords

        async def check() -> str:
            user = self.service.registry.user(user_id)
            if user is not None and secret:
                if await self.service.acme_keys.match(user_id, secret) is not None:
                    if user.disabled:
                        raise DisabledUser("user is disabled")
                    return user.id
            if passwords:
                return str(await self.checker.check(user_id, secret))
            raise UnauthorizedLogin("incorrect user id or ACME key")

        return await self._check(method, user_id, source, check)

    async def gnudip(self, method: str, user_id: str, salt: str, client_hash: str, source: str | None) -> AuthResult:
        """Check a GnuDIP salted hash (TCP and HTTP)."""
        return await self._check(
            method,
            user_id,
            source,
            lambda: self.checker.check_gnudip(user_id, salt, client_hash),
        )

    async def _check(
        self,
        method: str,
        user_id: str,
        source: str | None,
        check: Callable[[], Awaitable[Any]],
    ) -> AuthResult:
        refused = self.locked(method, source, user_id)
        if refused is not None:
            return await self.slowly(refused)
        key = self.limiter.source_key(source)
        suspect = key is not None and self.limiter.suspect(source)
        if key is not None:
            if not await self.gate.enter(key, suspect):
                self.service.auth_locked(method)
                self.refused(method, user_id, source, "locked", "too many checks at once from this source")
                return await self.slowly(AuthResult(Outcome.LOCKED, user_id, BUSY_RETRY))
            # The source may have been locked while it waited.
            refused = self.locked(method, source, user_id)
            if refused is not None:
                self.gate.leave(key, suspect)
                return await self.slowly(refused)
        try:
            checked = await check()
        except DisabledUser:
            self.refused(method, user_id, source, "disabled", "user is disabled")
            return AuthResult(Outcome.DISABLED, user_id)
        except UnauthorizedLogin:
            return self.failed(method, source, user_id)
        finally:
            if key is not None:
                self.gate.leave(key, suspect)
        return self.succeeded(source, str(checked))


def authenticator_for(checker: CredentialChecker | Authenticator, service: "DynDNSService") -> Authenticator:
    """C{checker} if it is an L{Authenticator}, else one around it."""
    if isinstance(checker, Authenticator):
        return checker
    return Authenticator(checker, service)
