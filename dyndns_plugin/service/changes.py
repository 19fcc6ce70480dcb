"""
The last step of every committed write: the in-memory registry takes the
change, then the observers (zone publisher, tests, embedding programs) hear
of it as a L{Change}.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.logger import Logger

from dyndns_plugin.model import HostState, User
from dyndns_plugin.registry import Registry

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


class ChangeFeed:
    """Applies committed changes to the registry and tells the observers."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._observers: list[Observer] = []

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

    def user(self, user: User, source: str) -> None:
        """C{user} was added or replaced."""
        registry = self.registry
        old = registry.user(user.id)
        state = registry.state(user.id)
        registry.put_user(user)
        self._notify(Change(user.id, source, old, user, state, state))

    def removal(self, user_id: str, source: str) -> None:
        """C{user_id} was removed (nothing happens for an unknown one)."""
        registry = self.registry
        old = registry.user(user_id)
        if old is None:
            return
        state = registry.state(user_id)
        registry.remove_user(user_id)
        self._notify(Change(user_id, source, old, None, state, None))

    def state(self, state: HostState, source: str) -> None:
        """A user's host state changed (ignored for an unknown user)."""
        registry = self.registry
        user = registry.user(state.user_id)
        if user is None:
            return
        old = registry.state(state.user_id)
        registry.set_state(state)
        self._notify(Change(state.user_id, source, user, user, old, state))
