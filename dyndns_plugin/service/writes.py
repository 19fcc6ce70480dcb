"""
Client writes: what an address update means, and its one durable write.

Only here is it decided what an update means (validation, nochg, offline,
disabled users, TTL bounds, the per-user change limit); each write runs in
its user's turn (L{UserOrder}), goes to the store first and, once the store
has it, to the registry and the observers (L{ChangeFeed}).
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine, Sequence

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dyndns_plugin.acme import TXTEdit, apply_edits
from dyndns_plugin.audit import AuditLog
from dyndns_plugin.limits import Limiter, is_client_method
from dyndns_plugin.model import (
    HostState,
    IPAddress,
    UpdateResult,
    UpdateStatus,
    ValidationError,
    parse_address,
    split_addresses,
)
from dyndns_plugin.service.changes import ChangeFeed
from dyndns_plugin.service.ordering import UserOrder
from dyndns_plugin.store import IUserStore, NoSuchUser, StateConflict

log = Logger()

#: Times a write is decided again on a newer committed state (another node
#: or process wrote the user meanwhile) before it gives up with a store error.
MAX_CONFLICTS = 5


class _Stale(Exception):
    """The state a write was decided on is no longer the committed one."""

    def __init__(self, current: HostState | None) -> None:
        self.current = current


@attrs.frozen
class TTLBounds:
    default: int = 30
    minimum: int = 0
    maximum: int = 86400

    def clamp(self, ttl: int | None) -> int:
        """The TTL an update gets: the default if none, else within bounds."""
        if ttl is None:
            return self.default
        return max(self.minimum, min(self.maximum, ttl))


class ClientWrites:
    """
    L{update}, L{set_addresses} and L{set_offline} of L{DynDNSService}.

    @ivar on_update_result: called as C{hook(method, status, seconds)} when a
        write has its result: C{seconds} from the call to the result (for
        GOOD: to durable). Metrics subscribe here; the writes know none.
    @ivar on_store_error: called as C{hook("write")} when the store failed a
        write (the client gets 911), so a failing disk shows on a dashboard
        before a user calls.
    @ivar audit: where every write's audit event goes (L{AuditLog}): one
        per call, whatever its result, with the state before and after.
    @ivar log_updates: kept for compatibility, without effect: the audit
        event of every write replaced the line it turned on.
    """

    def __init__(
        self,
        store: IUserStore,
        feed: ChangeFeed,
        order: UserOrder,
        limiter: Limiter,
        clock: IReactorTime,
        ttl: TTLBounds,
        log_updates: bool = False,
        audit: AuditLog | None = None,
    ) -> None:
        self.store = store
        self.feed = feed
        self.registry = feed.registry
        self.order = order
        self.limiter = limiter
        self.clock = clock
        self.ttl = ttl
        self.log_updates = log_updates
        self.audit = audit if audit is not None else AuditLog(clock)
        self.on_update_result: list[Callable[[str, UpdateStatus, float], Any]] = []
        self.on_store_error: list[Callable[[str], Any]] = []
        #: Whether the last write failed in the store (its failures are logged once).
        self._failing = False

    def update(
        self,
        user_id: str,
        addresses: Sequence[IPAddress],
        ttl: int | None = None,
        method: str = "",
        client_address: str | None = None,
    ) -> defer.Deferred[UpdateResult]:
        """See L{dyndns_plugin.service.core.DynDNSService.update}."""

        async def action(old: HostState | None) -> UpdateResult:
            try:
                ipv4, ipv6 = split_addresses(addresses)
            except ValidationError as e:
                return UpdateResult(UpdateStatus.BAD_ADDRESS, old, e.message)
            if ipv4 is None and ipv6 is None:
                return UpdateResult(UpdateStatus.BAD_ADDRESS, old, "no address given")
            current = old or HostState(user_id)
            return await self._go_online(
                old,
                user_id,
                ipv4 or current.ipv4,
                ipv6 or current.ipv6,
                ttl,
                method,
                client_address,
            )

        return self._in_turn(user_id, method, client_address, action)

    def set_addresses(
        self,
        user_id: str,
        ipv4: IPAddress | None,
        ipv6: IPAddress | None,
        ttl: int | None = None,
        method: str = "",
        client_address: str | None = None,
    ) -> defer.Deferred[UpdateResult]:
        """See L{dyndns_plugin.service.core.DynDNSService.set_addresses}."""
        if ipv4 is None and ipv6 is None:
            return self.set_offline(user_id, method, client_address)

        async def action(old: HostState | None) -> UpdateResult:
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

        return self._in_turn(user_id, method, client_address, action)

    def set_offline(
        self, user_id: str, method: str = "", client_address: str | None = None
    ) -> defer.Deferred[UpdateResult]:
        """See L{dyndns_plugin.service.core.DynDNSService.set_offline}."""

        async def action(old: HostState | None) -> UpdateResult:
            if old is not None and old.offline:
                return UpdateResult(UpdateStatus.NOCHG, old, "already offline")
            limited = self._rate_limited(user_id, method, old)
            if limited is not None:
                return limited
            new = attrs.evolve(
                old or HostState(user_id, ttl=self.ttl.default),
                offline=True,
                updated_at=self.clock.seconds(),
                method=method,
                client_address=client_address,
            )
            return await self._commit(new, old, method)

        return self._in_turn(user_id, method, client_address, action)

    def edit_txt(
        self,
        user_id: str,
        edits: Sequence[TXTEdit],
        lifetime: float,
        method: str = "",
        client_address: str | None = None,
    ) -> defer.Deferred[UpdateResult]:
        """
        Apply C{edits} to the user's ACME challenge values (expired ones
        go too), in the user's turn: GOOD once durable, NOCHG if nothing
        changes, BAD_TXT if a name would hold too many. The addresses, the
        status and what last changed them stay as they are.
        """

        async def action(old: HostState | None) -> UpdateResult:
            current = old or HostState(user_id)
            try:
                txt = apply_edits(current.txt, edits, self.clock.seconds(), lifetime)
            except ValidationError as e:
                return UpdateResult(UpdateStatus.BAD_TXT, old, e.message)
            if txt == current.txt:
                return UpdateResult(UpdateStatus.NOCHG, old, "no change")
            limited = self._rate_limited(user_id, method, old)
            return limited or await self._commit(attrs.evolve(current, txt=txt), old, method)

        return self._in_turn(user_id, method, client_address, action)

    # -- the steps

    def _in_turn(
        self,
        user_id: str,
        method: str,
        client_address: str | None,
        action: Callable[[HostState | None], Coroutine[Any, Any, UpdateResult]],
    ) -> defer.Deferred[UpdateResult]:
        """
        Run C{action(old state)} in C{user_id}'s turn, unless the user may not
        change its state now (unknown, disabled); the audit log and the
        hooks hear the result.
        """

        async def guarded() -> UpdateResult:
            old = self.registry.state(user_id)
            for _ in range(MAX_CONFLICTS):
                try:
                    result = self._refuse_update(user_id) or await action(old)
                    if result.status is UpdateStatus.NOCHG and self.shared:
                        result = await self._confirm_unchanged(user_id, method, old) or result
                    break
                except _Stale as stale:
                    old = stale.current
            else:
                log.warn("update of {user} via {method} gave up: its state kept changing", user=user_id, method=method)
                result = UpdateResult(UpdateStatus.STORE_FAILED, old, "too many concurrent changes")
            self.audit.update(
                user_id,
                method,
                client_address,
                result.status.value,
                old,
                result.state if result.status is UpdateStatus.GOOD else None,
                None if result.ok else result.message,
            )
            return result

        done = self.order.run(user_id, guarded)
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

    @property
    def shared(self) -> bool:
        """Do other nodes serve from the same store (so this one's memory may be behind)?"""
        return bool(getattr(self.store, "shared", False))

    async def _confirm_unchanged(self, user_id: str, method: str, seen: HostState | None) -> UpdateResult | None:
        """
        Before a NOCHG answer on a shared store: the committed state must be
        the one the answer was decided on, else it is taken (L{_Stale}) and
        the update decided again. A store that cannot tell: STORE_FAILED
        (the client tries again; it is never told its address is served).
        """
        try:
            snapshot = await self.store.load_users([user_id])
        except Exception:
            return self._store_failed(user_id, method, seen)
        if user_id not in snapshot.users:
            self.feed.removal(user_id, "store")
            raise _Stale(None)
        current = snapshot.states.get(user_id)
        if current != seen:
            self._adopt(current)
            raise _Stale(current)
        return None

    def _store_failed(self, user_id: str, method: str, old: HostState | None) -> UpdateResult:
        """
        STORE_FAILED, told to the store error hooks (the metrics count each)
        and logged with the store's failure: the first of an outage only,
        not every client's retry while a database is down.
        """
        if not self._failing:
            log.failure("store failed; update of {user} via {method} not applied", user=user_id, method=method)
            self._failing = True
        for hook in list(self.on_store_error):
            try:
                hook("write")
            except Exception:
                log.failure("store error hook {hook!r} failed", hook=hook)
        return UpdateResult(UpdateStatus.STORE_FAILED, old, "store failure")

    def _adopt(self, current: HostState | None) -> None:
        """Serve the committed state another writer left (the poll would bring it a little later)."""
        if current is not None and self.registry.state(current.user_id) != current:
            self.feed.state(current, "store")

    def _refuse_update(self, user_id: str) -> UpdateResult | None:
        """The error result if C{user_id} may not change its state now."""
        user = self.registry.user(user_id)
        if user is None:
            return UpdateResult(UpdateStatus.NO_SUCH_USER, None, "unknown user")
        if user.disabled:
            return UpdateResult(UpdateStatus.DISABLED, self.registry.state(user_id), "user is disabled")
        return None

    def _rate_limited(self, user_id: str, method: str, old: HostState | None) -> UpdateResult | None:
        """RATE_LIMITED if a client's change now would exceed its user's limit."""
        if not is_client_method(method):
            return None
        wait = self.limiter.change_wait(user_id)
        if wait is None:
            return None
        return UpdateResult(UpdateStatus.RATE_LIMITED, old, "too many changes, retry later", retry_after=wait)

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
            ttl=self.ttl.clamp(ttl),
            offline=False,
            updated_at=self.clock.seconds(),
            method=method,
            client_address=client_address,
            txt=() if old is None else old.txt,
        )
        if (
            old is not None
            and not old.offline
            and (old.ipv4, old.ipv6) == (new.ipv4, new.ipv6)
            and self.ttl.clamp(old.ttl) == new.ttl
        ):
            return UpdateResult(UpdateStatus.NOCHG, old, "no change")
        return self._rate_limited(user_id, method, old) or await self._commit(new, old, method)

    async def _commit(self, new: HostState, old: HostState | None, method: str) -> UpdateResult:
        try:
            # Only over the state it was decided on: another node's or
            # process's newer write is never overwritten unseen.
            await self.store.save_state(new, expected=old)
        except NoSuchUser:
            return UpdateResult(UpdateStatus.NO_SUCH_USER, None, "unknown user")
        except StateConflict as conflict:
            self._adopt(conflict.current)
            raise _Stale(conflict.current) from None
        except Exception:
            return self._store_failed(new.user_id, method, old)
        if self._failing:
            self._failing = False
            log.info("the store takes writes again")
        self.feed.state(new, "update")
        if is_client_method(method):
            self.limiter.changed(new.user_id)
        return UpdateResult(UpdateStatus.GOOD, new, "updated")
