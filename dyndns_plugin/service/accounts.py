"""
Admin writes (the admin API, the CLI's import, embedding programs) and the
name policy they all obey. Each write runs in its users' turn
(L{UserOrder}): a bulk import or replace waits for, and holds back, every
write of the users it touches, as a single-user write does for its user.
"""

from __future__ import annotations

from typing import Any, Iterable

import attrs
from twisted.internet import defer
from twisted.logger import Logger

from dyndns_plugin.model import HostState, User, ValidationError
from dyndns_plugin.service.changes import ChangeFeed
from dyndns_plugin.service.ordering import UserOrder
from dyndns_plugin.service.slices import each_in_slices
from dyndns_plugin.store import IUserStore, NoSuchUser

log = Logger()


class NamePolicy:
    """
    Which names a user may hold under our suffix.

    @param reserved_names: names of the suffix zone itself (name servers,
        glue) that no user may take, or a sign-up could hijack the zone's
        own servers.
    """

    def __init__(self, suffix: str, reserved_names: Iterable[str] = ()) -> None:
        self.suffix = suffix
        self.reserved_names = frozenset(reserved_names)

    def check(self, user: User) -> None:
        """
        Refuse a reserved main name, and additional names that belong to
        someone else under our suffix: below the suffix a user may only add
        names inside their own C{<id>.<suffix>} subtree (ValidationError).
        """
        own = f"{user.id}.{self.suffix}"
        if own in self.reserved_names:
            raise ValidationError("id", f"{user.id!r} is reserved: {own} is a name of the zone itself")
        for name in user.hostnames:
            bare = name[2:] if name.startswith("*.") else name
            under_suffix = bare == self.suffix or bare.endswith("." + self.suffix)
            if not under_suffix:
                continue
            inside_own = bare.endswith("." + own) or (bare == own and name.startswith("*."))
            if not inside_own:
                raise ValidationError(
                    "hostnames",
                    f"{name!r} is under the suffix {self.suffix!r}; only names below {own!r} are allowed there",
                )


class AccountWrites:
    """The admin write path of L{dyndns_plugin.service.core.DynDNSService}."""

    def __init__(self, store: IUserStore, feed: ChangeFeed, order: UserOrder, policy: NamePolicy) -> None:
        self.store = store
        self.feed = feed
        self.registry = feed.registry
        self.order = order
        self.policy = policy

    def add_user(self, user: User) -> defer.Deferred[User]:
        """Create a user (UserExists, NameTaken, ValidationError)."""

        async def action() -> User:
            self.policy.check(user)
            await self.store.add_user(user)
            self.feed.user(user, "admin")
            log.info("user {user} added", user=user.id)
            return user

        return self.order.run(user.id, action)

    def put_user(self, user: User) -> defer.Deferred[User]:
        """Replace an existing user's account data (NoSuchUser)."""
        return self.order.run(user.id, lambda: self._replace_user(user))

    def edit_user(self, user_id: str, **changes: Any) -> defer.Deferred[User]:
        """Change some fields of a user (NoSuchUser, ValidationError)."""

        async def action() -> User:
            user = self.registry.user(user_id)
            if user is None:
                raise NoSuchUser(user_id)
            return await self._replace_user(attrs.evolve(user, **changes))

        return self.order.run(user_id, action)

    async def _replace_user(self, user: User) -> User:
        if not self.registry.has_user(user.id):
            raise NoSuchUser(user.id)
        self.policy.check(user)
        await self.store.put_user(user)
        self.feed.user(user, "admin")
        log.info("user {user} changed", user=user.id)
        return user

    def remove_user(self, user_id: str) -> defer.Deferred[None]:
        async def action() -> None:
            await self.store.remove_user(user_id)
            self.feed.removal(user_id, "admin")
            log.info("user {user} removed", user=user_id)

        return self.order.run(user_id, action)

    def import_users(self, users: Iterable[User], states: Iterable[HostState] = ()) -> defer.Deferred[None]:
        """Add or replace many users (and states) in one transaction, in their turn."""
        users, states = list(users), list(states)

        async def action() -> None:
            await each_in_slices(users, self.policy.check)
            kept = self._keeping_challenges(states)
            await self.store.import_users(users, kept)
            await self._apply(users, kept, [])

        touched = [u.id for u in users] + [s.user_id for s in states]
        return self.order.run_all(touched, action)

    def replace_users(self, users: Iterable[User], states: Iterable[HostState] = ()) -> defer.Deferred[None]:
        """
        Make C{users} the whole set of users, in one transaction: users not
        among them are removed (the admin API's configuration replace).
        It runs in the turn of every user it keeps, adds or removes.
        """
        users, states = list(users), list(states)
        keep = {user.id for user in users}
        # Users added while this waits for its turn are not removed by it.
        gone_now = sorted(set(self.registry.users) - keep)

        async def action() -> None:
            await each_in_slices(users, self.policy.check)
            gone = [u for u in gone_now if self.registry.has_user(u)]
            kept = self._keeping_challenges(states)
            await self.store.import_users(users, kept, remove=gone)
            await self._apply(users, kept, gone)

        touched = [u.id for u in users] + [s.user_id for s in states] + gone_now
        return self.order.run_all(touched, action)

    def _keeping_challenges(self, states: list[HostState]) -> list[HostState]:
        """
        C{states} from a document (which never carries ACME challenge
        values: they are short-lived) with the values their users hold now:
        an import or a configuration replace does not break a certificate
        request under way.
        """
        held = {user_id: self.registry.state(user_id) for user_id in self.registry.challenge_holders()}
        if not held:
            return states
        return [
            attrs.evolve(s, txt=held_state.txt) if (held_state := held.get(s.user_id)) is not None and not s.txt else s
            for s in states
        ]

    async def _apply(self, users: list[User], states: list[HostState], gone: list[str]) -> None:
        """The committed import in memory: in slices of reactor time for a large one (it may be 1,000,000 users)."""
        await each_in_slices(gone, lambda user_id: self.feed.removal(user_id, "admin"))
        await each_in_slices(users, lambda user: self.feed.user(user, "admin"))
        await each_in_slices(states, lambda state: self.feed.state(state, "admin"))
