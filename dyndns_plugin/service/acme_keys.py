"""
L{AcmeKeys}: users' scoped ACME keys, the one place that makes, lists,
revokes and matches them (the CLI, the admin API, C{/acme-dns/register}
and the adapter seam all come here). Keys live in the store
(L{IAcmeKeyStore}), only as the SHA-256 of their secret, and are read at
each check: a revoked key stops working at once, in every process.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime

from dyndns_plugin.acme import matching_key, new_key, validate_label
from dyndns_plugin.store import AcmeKey, IAcmeKeyStore, StoreError


class AcmeKeys:
    """The scoped ACME keys of C{store}'s users (none if the store keeps none)."""

    def __init__(self, store: Any, clock: IReactorTime) -> None:
        self.store, self.clock = store, clock

    def _keys(self) -> Any:
        if not IAcmeKeyStore.providedBy(self.store):
            raise StoreError("this store keeps no scoped ACME keys")
        return IAcmeKeyStore(self.store)

    async def of(self, user_id: str) -> list[AcmeKey]:
        """C{user_id}'s keys, oldest first."""
        if not IAcmeKeyStore.providedBy(self.store):
            return []
        return list(await self._keys().acme_keys(user_id))

    async def add(self, user_id: str, label: str = "") -> tuple[AcmeKey, str]:
        """
        A new key for C{user_id} (L{NoSuchUser} if unknown; a bad label is a
        L{ValidationError}), durable; and its secret, which is shown once.
        """
        key, secret = new_key(validate_label(label), self.clock.seconds())
        await self._keys().add_acme_key(user_id, key)
        return key, secret

    async def revoke(self, user_id: str, key_id: str) -> bool:
        """Revoke a key, durably; whether it was there."""
        return bool(await self._keys().remove_acme_key(user_id, key_id))

    async def match(self, user_id: str, secret: str) -> AcmeKey | None:
        """The user's key whose secret C{secret} is, if any."""
        return matching_key(await self.of(user_id), secret)
