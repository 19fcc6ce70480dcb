"""
L{DynDNSService}: the single write path.

Every update method (DNS UPDATE, GnuDIP, HTTP, the CLI and the admin API) is a
thin adapter that authenticates and then calls this service. Only the service
decides what an update means (validation, nochg, offline, disabled users, TTL
bounds) and only it writes: first to the store, and once the store has it,
to the in-memory registry that DNS answers from, and then to observers.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Awaitable, Callable, Iterable, Sequence

import attrs
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dyndns_plugin.limits import CLIENT_METHODS, LimitSettings, Limiter
from dyndns_plugin.model import (
    HostState,
    IPAddress,
    UpdateResult,
    UpdateStatus,
    User,
    ValidationError,
    parse_address,
    split_addresses,
)
from dyndns_plugin.registry import Registry
from dyndns_plugin.store import Changes, IUserStore, NoSuchUser, Snapshot

log = Logger()


@attrs.frozen
class Change:
    """
    One committed change, as observers see it. C{source} is C{"update"} for
    address changes by clients, C{"admin"} for user management through this
    process, and C{"store"} for changes another process (the CLI) wrote.
    """

    user_id: str
    source: str
    old_user: User | None
    new_user: User | None
    old_state: HostState | None
    new_state: HostState | None


Observer = Callable[[Change], Any]


class DynDNSService(Service):
    """
    Loads the store into the registry at start, applies every write to the
    store and then the registry, and polls the store for changes made by
    other processes.

    @ivar ready: fires once the store is loaded and the registry serves.
    """

    name = "dyndns"  # type: ignore[assignment]

    def __init__(
        self,
        store: IUserStore,
        suffix: str,
        *,
        default_ttl: int = 30,
        min_ttl: int = 0,
        max_ttl: int = 86400,
        clock: IReactorTime | None = None,
        poll_interval: float | None = 0.5,
        reserved_names: Iterable[str] = (),
        log_updates: bool = False,
        limits: LimitSettings | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as default_clock

            clock = default_clock  # type: ignore[assignment]
        self.store = store
        self.suffix = suffix
        self.default_ttl = default_ttl
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.registry = Registry(suffix, default_ttl)
        #: Lockouts and change limits, shared by every update method.
        self.limiter = Limiter(self.clock, limits)
        #: Names of the suffix zone itself (name servers, glue) that no user
        #: may take, or a sign-up could hijack the zone's own servers.
        self.reserved_names = frozenset(reserved_names)
        #: One log line per committed address change. Off by default: each
        #: user's last change (time, method, client) is stored with its state
        #: anyway, and at thousands of updates a second the line costs ~25%
        #: of the throughput (bench/RESULTS.md).
        self.log_updates = log_updates
        self.ready: defer.Deferred[None] = defer.Deferred()
        self._generation = 0
        self._observers: list[Observer] = []
        self._startup_steps: list[Callable[[], Awaitable[None]]] = []
        #: user id -> a Deferred that fires when that user's last queued
        #: write has finished (the next write waits for it).
        self._locks: dict[str, defer.Deferred[None]] = {}
        self._poll_interval = poll_interval
        self._poller: task.LoopingCall | None = None
        self._polling = False
        #: Called as C{hook(method, status, seconds)} when a client write
        #: (L{update}, L{set_addresses}, L{set_offline}) has its result:
        #: C{seconds} from the call to the result (for GOOD: to durable).
        #: Metrics subscribe here; the service itself knows none of them.
        self.on_update_result: list[Callable[[str, UpdateStatus, float], Any]] = []
        #: Called as C{hook(method)} by the adapters when credentials are
        #: refused (L{auth_failed}).
        self.on_auth_failure: list[Callable[[str], Any]] = []
        #: Called as C{hook(method)} when a request is refused unchecked
        #: because its source or user id is locked out (L{auth_locked}).
        self.on_auth_locked: list[Callable[[str], Any]] = []

    # -- lifecycle

    def startService(self) -> None:
        super().startService()
        d = defer.ensureDeferred(self.start())
        d.addErrback(lambda f: log.failure("could not load the user store", f))

    async def start(self) -> None:
        """Open and load the store, then start watching it."""
        await self.store.open()
        snapshot: Snapshot = await self.store.load()
        for user in snapshot.users.values():
            self.registry.put_user(user)
        for state in snapshot.states.values():
            if state.user_id in self.registry.users:
                self.registry.set_state(state)
        self._generation = snapshot.generation
        for step in self._startup_steps:
            await step()
        self.registry.loaded = True
        log.info(
            "loaded {count} users from the store (generation {generation})",
            count=len(snapshot.users),
            generation=snapshot.generation,
        )
        if self._poll_interval:
            self._poller = task.LoopingCall(self.poll)
            self._poller.clock = self.clock
            self._poller.start(self._poll_interval, now=False).addErrback(
                lambda f: log.failure("store polling stopped", f)
            )
        self.ready.callback(None)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        return self.store.close()

    def add_startup_step(self, step: Callable[[], Awaitable[None]]) -> None:
        """
        Run C{step()} at start, after the registry is filled and before it
        serves (the zone publisher chooses its serials there).
        """
        self._startup_steps.append(step)

    # -- observers

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call C{observer(change)} after every committed change."""
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def _notify(self, change: Change) -> None:
        for observer in list(self._observers):
            try:
                observer(change)
            except Exception:
                log.failure("observer {observer!r} failed", observer=observer)

    def _apply_user(self, user: User, source: str) -> None:
        old = self.registry.users.get(user.id)
        state = self.registry.states.get(user.id)
        self.registry.put_user(user)
        self._notify(Change(user.id, source, old, user, state, state))

    def _apply_removal(self, user_id: str, source: str) -> None:
        old = self.registry.users.get(user_id)
        if old is None:
            return
        state = self.registry.states.get(user_id)
        self.registry.remove_user(user_id)
        self._notify(Change(user_id, source, old, None, state, None))

    def _apply_state(self, state: HostState, source: str) -> None:
        user = self.registry.users.get(state.user_id)
        if user is None:
            return
        old = self.registry.states.get(state.user_id)
        self.registry.set_state(state)
        self._notify(Change(state.user_id, source, user, user, old, state))

    # -- picking up other processes' writes

    async def poll(self) -> None:
        """Apply what other processes (the CLI) committed since we looked."""
        if self._polling or not self.registry.loaded:
            return
        self._polling = True
        try:
            changes: Changes = await self.store.changes_since(self._generation)
        except Exception:
            log.failure("could not read changes from the store")
            return
        finally:
            self._polling = False
        for user_id in changes.removed:
            if user_id not in changes.users:
                self._apply_removal(user_id, "store")
        for user in changes.users.values():
            if self.registry.users.get(user.id) != user:
                self._apply_user(user, "store")
        for state in changes.states.values():
            if self.registry.states.get(state.user_id) != state:
                self._apply_state(state, "store")
        self._generation = max(self._generation, changes.generation)

    # -- serialising writes per user

    def _serialized(self, user_id: str, action: Callable[[], Any]) -> defer.Deferred[Any]:
        """
        Run C{action} after every earlier write for C{user_id} finished, so
        that two concurrent updates (say IPv4 and IPv6) both build on the
        state the other one committed.
        """
        previous = self._locks.get(user_id)
        if previous is None:
            done = defer.ensureDeferred(action())
        else:
            # Chain behind the last write for this user, whatever its outcome.
            done = defer.Deferred()
            previous.addBoth(lambda _: defer.ensureDeferred(action()).chainDeferred(done))
        tail: defer.Deferred[None] = defer.Deferred()
        self._locks[user_id] = tail

        def finished(result: object) -> object:
            if self._locks.get(user_id) is tail:
                del self._locks[user_id]
            tail.callback(None)
            return result

        return done.addBoth(finished)

    # -- hooks for metrics

    def auth_failed(self, method: str) -> None:
        """
        An adapter refused a client's credentials (a wrong password or
        GnuDIP hash, an unknown user or TSIG key, a bad signature or time).
        """
        for hook in list(self.on_auth_failure):
            try:
                hook(method)
            except Exception:
                log.failure("auth failure hook {hook!r} failed", hook=hook)

    def auth_locked(self, method: str) -> None:
        """An adapter refused a locked-out source without checking anything."""
        for hook in list(self.on_auth_locked):
            try:
                hook(method)
            except Exception:
                log.failure("lockout hook {hook!r} failed", hook=hook)

    def _rate_limited(self, user_id: str, method: str, old: HostState | None) -> UpdateResult | None:
        """RATE_LIMITED if a client's change now would exceed its user's limit."""
        if method not in CLIENT_METHODS:
            return None
        wait = self.limiter.change_wait(user_id)
        if wait is None:
            return None
        return UpdateResult(
            UpdateStatus.RATE_LIMITED, old, "too many changes, retry later", retry_after=wait
        )

    def _reported(
        self, method: str, done: defer.Deferred[UpdateResult]
    ) -> defer.Deferred[UpdateResult]:
        """Call the L{on_update_result} hooks when C{done} has its result."""
        if not self.on_update_result:
            return done
        started = self.clock.seconds()

        def report(result: UpdateResult) -> UpdateResult:
            seconds = self.clock.seconds() - started
            for hook in list(self.on_update_result):
                try:
                    hook(method, result.status, seconds)
                except Exception:
                    log.failure("update result hook {hook!r} failed", hook=hook)
            return result

        return done.addCallback(report)

    # -- the write path for clients

    def clamp_ttl(self, ttl: int | None) -> int:
        """The TTL an update gets: the default if none, else within bounds."""
        if ttl is None:
            return self.default_ttl
        return max(self.min_ttl, min(self.max_ttl, ttl))

    def _refuse_update(self, user_id: str) -> UpdateResult | None:
        """The error result if C{user_id} may not change its state now."""
        user = self.registry.users.get(user_id)
        if user is None:
            return UpdateResult(UpdateStatus.NO_SUCH_USER, None, "unknown user")
        if user.disabled:
            return UpdateResult(
                UpdateStatus.DISABLED, self.registry.states.get(user_id), "user is disabled"
            )
        return None

    def update(
        self,
        user_id: str,
        addresses: Sequence[IPAddress],
        ttl: int | None = None,
        method: str = "",
        client_address: str | None = None,
    ) -> defer.Deferred[UpdateResult]:
        """
        Point C{user_id}'s names at C{addresses} (at most one IPv4 and one
        IPv6; a family not given keeps its current address) and bring the
        user online. Fires with GOOD once durable, NOCHG if nothing would
        change (nothing is written then), or an error result.
        """

        async def action() -> UpdateResult:
            old = self.registry.states.get(user_id)
            refused = self._refuse_update(user_id)
            if refused is not None:
                return refused
            try:
                ipv4, ipv6 = split_addresses(addresses)
            except ValidationError as e:
                return UpdateResult(UpdateStatus.BAD_ADDRESS, old, e.message)
            if ipv4 is None and ipv6 is None:
                return UpdateResult(UpdateStatus.BAD_ADDRESS, old, "no address given")
            current = old or HostState(user_id)
            return await self._go_online(
                old, user_id, ipv4 or current.ipv4, ipv6 or current.ipv6,
                ttl, method, client_address,
            )

        return self._reported(method, self._serialized(user_id, action))

    def set_addresses(
        self,
        user_id: str,
        ipv4: IPAddress | None,
        ipv6: IPAddress | None,
        ttl: int | None = None,
        method: str = "",
        client_address: str | None = None,
    ) -> defer.Deferred[UpdateResult]:
        """
        Set both families exactly (None removes that family), as an RFC 2136
        UPDATE computes them; with neither address the user goes offline.
        One durable write, or none if nothing changes (NOCHG).
        """
        if ipv4 is None and ipv6 is None:
            return self.set_offline(user_id, method, client_address)

        async def action() -> UpdateResult:
            old = self.registry.states.get(user_id)
            refused = self._refuse_update(user_id)
            if refused is not None:
                return refused
            if (ipv4 is not None and ipv4.version != 4) or (ipv6 is not None and ipv6.version != 6):
                return UpdateResult(UpdateStatus.BAD_ADDRESS, old, "address of the wrong family")
            try:
                # A multicast or unspecified address is no host's (an UPDATE
                # can carry any 4 bytes of A rdata).
                for address in (ipv4, ipv6):
                    if address is not None:
                        parse_address(address)
            except ValidationError as e:
                return UpdateResult(UpdateStatus.BAD_ADDRESS, old, e.message)
            return await self._go_online(old, user_id, ipv4, ipv6, ttl, method, client_address)

        return self._reported(method, self._serialized(user_id, action))

    async def _go_online(
        self,
        old: HostState | None,
        user_id: str,
        ipv4: IPAddress | None,
        ipv6: IPAddress | None,
        ttl: int | None,
        method: str,
        client_address: str | None,
    ) -> UpdateResult:
        """Commit the online state C{ipv4}/C{ipv6}, or NOCHG if it is served already."""
        new = HostState(
            user_id=user_id,
            ipv4=ipv4,
            ipv6=ipv6,
            ttl=self.clamp_ttl(ttl),
            offline=False,
            updated_at=self.clock.seconds(),
            method=method,
            client_address=client_address,
        )
        if (
            old is not None
            and not old.offline
            and (old.ipv4, old.ipv6) == (new.ipv4, new.ipv6)
            and self.clamp_ttl(old.ttl) == new.ttl
        ):
            return UpdateResult(UpdateStatus.NOCHG, old, "no change")
        return self._rate_limited(user_id, method, old) or await self._commit_state(new, old, method)

    def set_offline(
        self, user_id: str, method: str = "", client_address: str | None = None
    ) -> defer.Deferred[UpdateResult]:
        """
        Mark C{user_id} offline: its names then answer the user's offline
        addresses, or no address. The last addresses are kept for display.
        """

        async def action() -> UpdateResult:
            old = self.registry.states.get(user_id)
            refused = self._refuse_update(user_id)
            if refused is not None:
                return refused
            if old is not None and old.offline:
                return UpdateResult(UpdateStatus.NOCHG, old, "already offline")
            limited = self._rate_limited(user_id, method, old)
            if limited is not None:
                return limited
            new = attrs.evolve(
                old or HostState(user_id, ttl=self.default_ttl),
                offline=True,
                updated_at=self.clock.seconds(),
                method=method,
                client_address=client_address,
            )
            return await self._commit_state(new, old, method)

        return self._reported(method, self._serialized(user_id, action))

    async def _commit_state(
        self, new: HostState, old: HostState | None, method: str
    ) -> UpdateResult:
        try:
            await self.store.save_state(new)
        except NoSuchUser:
            return UpdateResult(UpdateStatus.NO_SUCH_USER, None, "unknown user")
        except Exception:
            log.failure(
                "store failed; update of {user} via {method} not applied",
                user=new.user_id,
                method=method,
            )
            return UpdateResult(UpdateStatus.STORE_FAILED, old, "store failure")
        self._apply_state(new, "update")
        if method in CLIENT_METHODS:
            self.limiter.changed(new.user_id)
        if self.log_updates:
            log.info(
                "{user} {status} at {address} via {method} from {client}",
                user=new.user_id,
                status="offline" if new.offline else "online",
                address=",".join(str(a) for a in new.addresses()) or "-",
                method=method,
                client=new.client_address,
            )
        return UpdateResult(UpdateStatus.GOOD, new, "updated")

    # -- reads for other rules

    def users_at(self, address: str | IPAddress) -> list[User]:
        """
        The active DynDNS users at C{address} now, sorted by id: users that
        are not disabled, are online, and have C{address} as their current
        IPv4 or IPv6 address (an offline user's offline IP does not count).
        Several users can share one address (behind one NAT).

        For rules that treat requests from DynDNS users differently, such as
        a DNS server that filters queries from users whose C{notes} contain
        a marker (examples/notes_rule_resolver.py). It reads memory only and
        costs the same at any number of users: safe on the DNS query path.

        @param address: text or an C{ipaddress} object. An IPv4-mapped IPv6
            address (C{::ffff:192.0.2.1}, what a dual-stack socket reports
            for an IPv4 client) counts as the IPv4 address; an IPv6 zone
            (C{fe80::1%eth0}) is ignored. Text that is not an IP address
            (a UNIX socket path, say) matches nobody: the result is C{[]},
            never an exception.
        """
        if isinstance(address, str):
            try:
                address = ipaddress.ip_address(address)
            except ValueError:
                return []
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            elif address.scope_id is not None:
                address = ipaddress.IPv6Address(int(address))
        user_ids = self.registry.users_at(address)
        if not user_ids:
            return []
        users = self.registry.users
        return [users[i] for i in sorted(user_ids) if i in users]

    # -- the write path for administrators

    def check_user(self, user: User) -> None:
        """
        Refuse additional names that belong to someone else under our
        suffix: below the suffix a user may only add names inside their own
        C{<id>.<suffix>} subtree.
        """
        own = self.registry.main_name(user.id)
        if own in self.reserved_names:
            raise ValidationError("id", f"{user.id!r} is reserved: {own} is a name of the zone itself")
        for name in user.hostnames:
            bare = name[2:] if name.startswith("*.") else name
            under_suffix = bare == self.suffix or bare.endswith("." + self.suffix)
            if not under_suffix:
                continue
            inside_own = bare.endswith("." + own) or (
                bare == own and name.startswith("*.")
            )
            if not inside_own:
                raise ValidationError(
                    "hostnames",
                    f"{name!r} is under the suffix {self.suffix!r}; only names "
                    f"below {own!r} are allowed there",
                )

    def add_user(self, user: User) -> defer.Deferred[User]:
        """Create a user (UserExists, NameTaken, ValidationError)."""

        async def action() -> User:
            self.check_user(user)
            await self.store.add_user(user)
            self._apply_user(user, "admin")
            log.info("user {user} added", user=user.id)
            return user

        return self._serialized(user.id, action)

    def put_user(self, user: User) -> defer.Deferred[User]:
        """Replace an existing user's account data (NoSuchUser)."""
        return self._serialized(user.id, lambda: self._replace_user(user))

    def edit_user(self, user_id: str, **changes: Any) -> defer.Deferred[User]:
        """Change some fields of a user (NoSuchUser, ValidationError)."""

        async def action() -> User:
            user = self.registry.users.get(user_id)
            if user is None:
                raise NoSuchUser(user_id)
            return await self._replace_user(attrs.evolve(user, **changes))

        return self._serialized(user_id, action)

    async def _replace_user(self, user: User) -> User:
        if user.id not in self.registry.users:
            raise NoSuchUser(user.id)
        self.check_user(user)
        await self.store.put_user(user)
        self._apply_user(user, "admin")
        log.info("user {user} changed", user=user.id)
        return user

    def set_disabled(self, user_id: str, disabled: bool) -> defer.Deferred[User]:
        """A disabled user cannot update and its names get no answers."""
        return self.edit_user(user_id, disabled=disabled)

    def remove_user(self, user_id: str) -> defer.Deferred[None]:
        async def action() -> None:
            await self.store.remove_user(user_id)
            self._apply_removal(user_id, "admin")
            log.info("user {user} removed", user=user_id)

        return self._serialized(user_id, action)

    def import_users(
        self, users: Iterable[User], states: Iterable[HostState] = ()
    ) -> defer.Deferred[None]:
        """Add or replace many users (and states) in one transaction."""
        users, states = list(users), list(states)

        async def action() -> None:
            for user in users:
                self.check_user(user)
            await self.store.import_users(users, states)
            for user in users:
                self._apply_user(user, "admin")
            for state in states:
                self._apply_state(state, "admin")

        return defer.ensureDeferred(action())

    def replace_users(
        self, users: Iterable[User], states: Iterable[HostState] = ()
    ) -> defer.Deferred[None]:
        """
        Make C{users} the whole set of users, in one transaction: users not
        among them are removed (the admin API's configuration replace).
        """
        users, states = list(users), list(states)

        async def action() -> None:
            for user in users:
                self.check_user(user)
            keep = {user.id for user in users}
            gone = sorted(set(self.registry.users) - keep)
            await self.store.import_users(users, states, remove=gone)
            for user_id in gone:
                self._apply_removal(user_id, "admin")
            for user in users:
                self._apply_user(user, "admin")
            for state in states:
                self._apply_state(state, "admin")

        return defer.ensureDeferred(action())
