"""
L{DynDNSService}: the single write path, and the service's lifecycle.

Every update method (DNS UPDATE, GnuDIP, HTTP, the CLI and the admin API) is a
thin adapter that goes through the adapter seam (L{dyndns_plugin.authn}) and
then calls this service. Every write runs in its user's turn
(L{dyndns_plugin.service.ordering}), goes first to the store, and once the store has
it, to the in-memory registry that DNS answers from, and then to observers
(L{dyndns_plugin.service.changes}). The jobs live in their own modules: client
writes in L{dyndns_plugin.service.writes}, admin writes and the name policy in
L{dyndns_plugin.service.accounts}, reads in L{dyndns_plugin.service.queries}; this module
loads the store at start, polls it for other processes' writes, and holds
the parts together behind one object.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Any, Awaitable, Callable, Iterable, Sequence

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dyndns_plugin.acme import AcmeSettings, TXTEdit
from dyndns_plugin.audit import AuditLog
from dyndns_plugin.collector import collector_paused
from dyndns_plugin.limits import Limiter, LimitSettings
from dyndns_plugin.methods import Method
from dyndns_plugin.model import HostState, IPAddress, UpdateResult, UpdateStatus, User
from dyndns_plugin.registry import Registry
from dyndns_plugin.service.accounts import AccountWrites, NamePolicy
from dyndns_plugin.service.acme_keys import AcmeKeys
from dyndns_plugin.service.challenges import ChallengeExpiry
from dyndns_plugin.service.changes import Change, ChangeFeed, Observer
from dyndns_plugin.service.ordering import UserOrder
from dyndns_plugin.service.queries import users_at
from dyndns_plugin.service.slices import AT_ONCE, each_in_slices
from dyndns_plugin.service.writes import ClientWrites, TTLBounds
from dyndns_plugin.store import Changes, IUserStore, Snapshot, StoreError

__all__ = ["Change", "DynDNSService", "Observer"]

log = Logger()

#: From this many users the loaded registry is frozen out of the garbage
#: collector (gc.freeze): a full collection over millions of objects stalls
#: the reactor, and loaded users live until they change anyway.
FREEZE_AT = 10_000


class DynDNSService(Service):
    """
    Loads the store into the registry at start, applies every write to the
    store and then the registry, and polls the store for changes made by
    other processes.

    @ivar ready: fires once the store is loaded and the registry serves.
    @ivar limiter: lockouts and change limits, shared by every update method
        (L{dyndns_plugin.authn}) and the client writes.
    @ivar audit: the audit trail (L{AuditLog}) of every update attempt and
        admin action, shared by the client writes, the adapter seam and the
        admin API; changes another process (the CLI) committed are audited
        when the poll picks them up.
    @ivar on_update_result: called as C{hook(method, status, seconds)} when a
        client write (L{update}, L{set_addresses}, L{set_offline}) has its
        result: C{seconds} from the call to the result (for GOOD: to
        durable). Metrics subscribe here; the service itself knows none.
    @ivar on_auth_failure: called as C{hook(method)} when an adapter refused
        credentials (L{auth_failed}).
    @ivar on_auth_locked: called as C{hook(method)} when a request is refused
        unchecked because its source or user id is locked out (L{auth_locked}).
    @ivar on_store_error: called as C{hook(operation)} when the store failed
        a client write (C{"write"}) or a poll for other processes' changes
        (C{"poll"}).
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
        acme: AcmeSettings | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor as default_clock

            clock = default_clock  # type: ignore[assignment]
        self.store = store
        self.suffix = suffix
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.acme = acme if acme is not None else AcmeSettings()
        self.registry = Registry(suffix, default_ttl, self.acme.ttl)
        self.registry.challenges_served = self.acme.enabled
        limiter = Limiter(self.clock, limits)
        self.ready: defer.Deferred[None] = defer.Deferred()
        self._load_waiters: list[defer.Deferred[None]] | None = []
        self.feed = ChangeFeed(self.registry)
        self.order = UserOrder()
        self.policy = NamePolicy(suffix, reserved_names)
        self.audit = AuditLog(self.clock)
        self.writes = ClientWrites(
            store,
            self.feed,
            self.order,
            limiter,
            self.clock,
            TTLBounds(default_ttl, min_ttl, max_ttl),
            log_updates,
            self.audit,
        )
        self.accounts = AccountWrites(store, self.feed, self.order, self.policy)
        self.on_update_result: list[Callable[[str, UpdateStatus, float], Any]] = self.writes.on_update_result
        self.on_auth_failure: list[Callable[[str], Any]] = []
        self.on_auth_locked: list[Callable[[str], Any]] = []
        self.on_store_error: list[Callable[[str], Any]] = self.writes.on_store_error
        self._generation = 0
        self._startup_steps: list[Callable[[], Awaitable[None]]] = []
        self._poll_interval = poll_interval
        self._poller: task.LoopingCall | None = None
        self._polling = False
        self._poll_again = False
        self._poll_failing = False
        #: Set once the service stops: the store closes, nothing more is written.
        self.stopped = False
        self._poll_waiters: list[defer.Deferred[None]] = []
        #: Users' scoped ACME keys (L{AcmeKeys}).
        self.acme_keys = AcmeKeys(store, self.clock)
        self.challenge_expiry = ChallengeExpiry(
            self.registry, self.clock, lambda user_id: self.edit_txt(user_id, (), Method.ACME_EXPIRY)
        )
        self.feed.subscribe(self.challenge_expiry.changed)

    # -- settings, read from the parts that use them

    @property
    def limiter(self) -> Limiter:
        return self.writes.limiter

    @limiter.setter
    def limiter(self, limiter: Limiter) -> None:
        self.writes.limiter = limiter

    @property
    def default_ttl(self) -> int:
        return self.writes.ttl.default

    @property
    def min_ttl(self) -> int:
        return self.writes.ttl.minimum

    @property
    def max_ttl(self) -> int:
        return self.writes.ttl.maximum

    @property
    def reserved_names(self) -> frozenset[str]:
        return self.policy.reserved_names

    @property
    def log_updates(self) -> bool:
        """Without effect: the audit trail logs every write (see L{ClientWrites})."""
        return self.writes.log_updates

    @log_updates.setter
    def log_updates(self, value: bool) -> None:
        self.writes.log_updates = value

    # -- lifecycle

    def startService(self) -> None:
        super().startService()
        d = defer.ensureDeferred(self.start())
        d.addErrback(lambda f: log.failure("could not load the user store", f))
        d.addBoth(lambda _: self._loading_ended())

    def when_loaded(self) -> defer.Deferred[None] | None:
        """
        None once the users are loaded (or loading failed); until then a
        Deferred that fires when that happens (the UDP DNS ports wait for
        it: L{dyndns_plugin.dns.server.DNSDatagramProtocol}).
        """
        if self._load_waiters is None:
            return None
        waiting: defer.Deferred[None] = defer.Deferred()
        self._load_waiters.append(waiting)
        return waiting

    def _loading_ended(self) -> None:
        waiters, self._load_waiters = self._load_waiters, None
        for waiting in waiters or ():
            waiting.callback(None)

    async def start(self, only_users: Sequence[str] | None = None) -> None:
        """
        Open and load the store, then start watching it. With C{only_users}:
        just those users (a CLI command about one user: a second, not the
        ten a full load takes at 1,000,000 users; it writes through the
        same checks, none of which reads other users).
        """
        await self.store.open()
        # Millions of new objects would set off ever longer full collections
        # while loading (a third of the start-up at 1,000,000 users); once
        # loaded, they are frozen out of the collector (from FREEZE_AT users:
        # below, a full pass is short), whose full passes would otherwise
        # stall the reactor for a second at that size.
        collecting = gc.isenabled()
        gc.disable()
        try:
            snapshot: Snapshot = await (self.store.load() if only_users is None else self.store.load_users(only_users))
            self.registry.load(snapshot.users, snapshot.states)
            count, self._generation = len(snapshot.users), snapshot.generation
            del snapshot  # its maps: ~100 MB at 1,000,000 users
            if count >= FREEZE_AT:
                # Before collecting again: the first young collection would
                # otherwise walk every object made while it was off (0.7 s
                # of start-up at 1,000,000 users).
                gc.freeze()
        finally:
            if collecting:
                gc.enable()
        for step in self._startup_steps:
            await step()
        if count >= FREEZE_AT:
            # After the start-up steps too: what they build (the replay
            # window, the publisher's zone) lives as long as the users, and
            # left in the collector it made every full pass 15-45 ms of
            # reactor time at 1,000,000 users (bench/scale_users.py).
            gc.freeze()
        self.registry.loaded = True
        if only_users is None:
            self.challenge_expiry.start()
        log.info(
            "loaded {count} users from the store (generation {generation})",
            count=count,
            generation=self._generation,
        )
        if self._poll_interval:
            self._poller = task.LoopingCall(self.poll)
            self._poller.clock = self.clock
            self._poller.start(self._poll_interval, now=False).addErrback(
                lambda f: log.failure("store polling stopped", f)
            )
        self.ready.callback(None)
        self._loading_ended()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self.stopped = True
        self.challenge_expiry.stop()
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        return self.store.close()

    def add_startup_step(self, step: Callable[[], Awaitable[None]]) -> None:
        """
        Run C{step()} at start, after the registry is filled and before it
        serves (the zone publisher chooses its serials there).
        """
        self._startup_steps.append(step)

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call C{observer(change)} after every committed change."""
        return self.feed.subscribe(observer)

    # -- picking up other processes' writes

    async def poll(self) -> bool:
        """
        Apply what other processes (the CLI) committed since we looked;
        False if the store could not be read (logged, and counted).
        """
        if self._polling or not self.registry.loaded:
            self._poll_again = self._polling
            return True
        self._polling = True
        try:
            try:
                changes: Changes = await self.store.changes_since(self._generation)
            except Exception:
                if not self._poll_failing:  # once per outage, not every poll_interval
                    log.failure("could not read changes from the store; trying again every poll")
                self._poll_failing = True
                self._call(self.on_store_error, "poll", "store error hook {hook!r} failed")
                return False
            if self._poll_failing:
                self._poll_failing = False
                log.info("reading changes from the store works again")
            await self._apply_changes(changes)
            self._generation = max(self._generation, changes.generation)
            return True
        finally:
            # Until the changes are applied (in slices, for many): a sync()
            # waiting for this poll then sees them all.
            self._polling = False
            waiting, self._poll_waiters = self._poll_waiters, []
            for d in waiting:
                self.clock.callLater(0, d.callback, None)  # type: ignore[attr-defined]
            if self._poll_again:
                # asked while this poll read: what it was asked for may be newer
                self._poll_again = False
                self.clock.callLater(0, self.poll_soon)  # type: ignore[attr-defined]

    def poll_soon(self) -> None:
        """
        Poll now: another node committed (the store's notification). One
        poll at a time; asked during one, another follows it.
        """
        defer.ensureDeferred(self.poll())

    async def _apply_changes(self, changes: Changes) -> None:
        registry = self.registry
        # On a shared store the node that wrote a change audited it; every
        # other node auditing it again would multiply the audit log.
        audited = not getattr(self.store, "shared", False)
        audit = self.audit

        def removed(user_id: str) -> None:
            # removed, or replaced wholesale by a restore (see Changes)
            if (user_id not in changes.users or user_id not in changes.states) and registry.has_user(user_id):
                self.feed.removal(user_id, "store")
                if audited:
                    audit.admin(None, "user-remove", None, "ok", user_id, method="store")

        def user_changed(user: User) -> None:
            if registry.user(user.id) != user:
                action = "user-change" if registry.has_user(user.id) else "user-add"
                self.feed.user(user, "store")
                if audited:
                    audit.admin(None, action, None, "ok", user.id, method="store")

        def state_changed(state: HostState) -> None:
            old = registry.state(state.user_id)
            if old != state and registry.has_user(state.user_id):
                self.feed.state(state, "store")
                if audited:
                    audit.update(state.user_id, state.method or "store", state.client_address, "good", old, state)

        # A restore or a CLI import can bring a million changes: in slices,
        # with the collector paused from the first to the last (between
        # two of them a young collection walked the read's 50,000 states:
        # a 58 ms turn), and what they made frozen after.
        large = len(changes.removed) + len(changes.users) + len(changes.states) > AT_ONCE
        with collector_paused() if large else contextlib.nullcontext():
            await each_in_slices(list(changes.removed), removed)
            await each_in_slices(list(changes.users.values()), user_changed)
            await each_in_slices(list(changes.states.values()), state_changed)

    async def sync(self) -> int:
        """
        Apply every change committed to the store before this call (the
        control socket's C{sync}: a CLI change served before the CLI
        returns); the store generation reached.
        """
        if not self.registry.loaded:
            loaded: defer.Deferred[None] = defer.Deferred()

            def now_loaded(result: None) -> None:
                loaded.callback(None)
                return result

            self.ready.addCallback(now_loaded)
            await loaded
        while self._polling:  # a poll in flight may have read before the caller's commit
            finished: defer.Deferred[None] = defer.Deferred()
            self._poll_waiters.append(finished)
            await finished
        if not await self.poll():
            raise StoreError("the store could not be read")
        return self._generation

    async def store_answers(self, within: float = 5.0) -> bool:
        """
        Whether the store answers a read within C{within} seconds, once
        loaded: the admin listener's C{GET /health}, for a container's or a
        load balancer's health check.
        """
        if not self.registry.loaded:
            return False
        try:
            # Through the poll (never changes_since directly: a read that
            # consumed changes would hide them from the next poll).
            read = defer.ensureDeferred(self.sync())
            read.addTimeout(within, self.clock)
            await read
        except Exception:
            return False
        return True

    # -- hooks for metrics

    def auth_failed(self, method: str) -> None:
        """
        An adapter refused a client's credentials (a wrong password or
        GnuDIP hash, an unknown user or TSIG key, a bad signature or time).
        """
        self._call(self.on_auth_failure, method, "auth failure hook {hook!r} failed")

    def auth_locked(self, method: str) -> None:
        """An adapter refused a locked-out source without checking anything."""
        self._call(self.on_auth_locked, method, "lockout hook {hook!r} failed")

    @staticmethod
    def _call(hooks: list[Callable[[str], Any]], argument: str, failed: str) -> None:
        for hook in list(hooks):
            try:
                hook(argument)
            except Exception:
                log.failure(failed, hook=hook)

    # -- client writes (L{ClientWrites})

    def clamp_ttl(self, ttl: int | None) -> int:
        """The TTL an update gets: the default if none, else within bounds."""
        return self.writes.ttl.clamp(ttl)

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
        return self.writes.update(user_id, addresses, ttl, method, client_address)

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
        return self.writes.set_addresses(user_id, ipv4, ipv6, ttl, method, client_address)

    def set_offline(
        self, user_id: str, method: str = "", client_address: str | None = None
    ) -> defer.Deferred[UpdateResult]:
        """
        Mark C{user_id} offline: its names then answer the user's offline
        addresses, or no address. The last addresses are kept for display.
        """
        return self.writes.set_offline(user_id, method, client_address)

    def edit_txt(
        self, user_id: str, edits: Sequence[TXTEdit], method: str = "", client_address: str | None = None
    ) -> defer.Deferred[UpdateResult]:
        """
        Change C{user_id}'s ACME challenge values (L{dyndns_plugin.acme}):
        each lives C{acme.lifetime} seconds unless removed before. Fires
        with GOOD once durable, NOCHG, or an error result (BAD_TXT: a name
        would hold too many values).
        """
        return self.writes.edit_txt(user_id, edits, self.acme.lifetime, method, client_address)

    # -- reads (L{dyndns_plugin.service.queries})

    def users_at(self, address: str | IPAddress) -> list[User]:
        """The active users at C{address} now (L{dyndns_plugin.service.queries.users_at}): memory only."""
        return users_at(self.registry, address)

    # -- admin writes and name policy (L{AccountWrites}, L{NamePolicy})

    def check_user(self, user: User) -> None:
        """Refuse names under our suffix that are not C{user}'s (L{NamePolicy.check})."""
        self.policy.check(user)

    def add_user(self, user: User) -> defer.Deferred[User]:
        """Create a user (UserExists, NameTaken, ValidationError)."""
        return self.accounts.add_user(user)

    def put_user(self, user: User) -> defer.Deferred[User]:
        """Replace an existing user's account data (NoSuchUser)."""
        return self.accounts.put_user(user)

    def edit_user(self, user_id: str, **changes: Any) -> defer.Deferred[User]:
        """Change some fields of a user (NoSuchUser, ValidationError)."""
        return self.accounts.edit_user(user_id, **changes)

    def set_disabled(self, user_id: str, disabled: bool) -> defer.Deferred[User]:
        """A disabled user cannot update and its names get no answers."""
        return self.accounts.edit_user(user_id, disabled=disabled)

    def remove_user(self, user_id: str) -> defer.Deferred[None]:
        return self.accounts.remove_user(user_id)

    def import_users(self, users: Iterable[User], states: Iterable[HostState] = ()) -> defer.Deferred[None]:
        """Add or replace many users (and states) in one transaction."""
        return self.accounts.import_users(users, states)

    def replace_users(self, users: Iterable[User], states: Iterable[HostState] = ()) -> defer.Deferred[None]:
        """
        Make C{users} the whole set of users, in one transaction: users not
        among them are removed (the admin API's configuration replace).
        """
        return self.accounts.replace_users(users, states)
