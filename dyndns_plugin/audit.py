"""
The audit trail: one structured log event for every update attempt (every
method, whatever the result) and every admin action, in the namespace
C{dyndns.audit}. Its fields are plain text, numbers and None, so a JSON
log line (L{dyndns_plugin.logformat}) carries each as a top-level key:

    audit      "update" (an address change or its attempt) or "admin"
    user       the user id the client named (the account, for admin actions)
    method     L{dyndns_plugin.methods.Method}: http-url, dyndns2, cli, ...
    source     the client's address (None: not known, e.g. the CLI)
    result     good, nochg, badauth, locked, disabled, nohost, abuse, ...
    old_state, old_ipv4, old_ipv6, new_state, new_ipv4, new_ipv6
               before and after: state online/offline/never, and the
               addresses served while online (None otherwise)

No secret is ever a field: the events are built from ids, addresses and
results only. Events that anyone can cause without credentials (wrong
passwords, lockouts) and floods of refused changes go through a
L{LogSampler}: a flood costs a few lines and a count, not a line each.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dyndns_plugin.logsample import LogSampler
from dyndns_plugin.model import HostState

log = Logger(namespace="dyndns.audit")

#: Lines per result kind and minute for sampled events (then a count).
SAMPLED_BURST = 20
SAMPLED_INTERVAL = 60.0

#: Results logged through the sampler: what an attacker can repeat at will.
SAMPLED_RESULTS = frozenset({"badauth", "locked", "disabled", "abuse"})

_UPDATE_FORMAT = "audit: {method} update of {user} from {source}: {result} ({old} -> {new})"
_REFUSAL_FORMAT = "audit: {method}: {reason} for {user} from {source}: {result}"
_ADMIN_FORMAT = "audit: admin {actor} from {source}: {action} {user}: {result}"
_ADMIN_REFUSAL_FORMAT = "audit: admin: {reason} for {actor} from {source}: {result}"


def state_fields(prefix: str, state: HostState | None) -> dict[str, Any]:
    """C{<prefix>_state}, C{<prefix>_ipv4} and C{<prefix>_ipv6} of C{state}."""
    if state is None:
        return {f"{prefix}_state": "never", f"{prefix}_ipv4": None, f"{prefix}_ipv6": None}
    online = not state.offline
    return {
        f"{prefix}_state": state.status,
        f"{prefix}_ipv4": str(state.ipv4) if online and state.ipv4 is not None else None,
        f"{prefix}_ipv6": str(state.ipv6) if online and state.ipv6 is not None else None,
    }


def _shown(fields: dict[str, Any], prefix: str) -> str:
    """The readable form of one side: its addresses, or its state (and its ACME challenge values, if any)."""
    addresses = [a for a in (fields[f"{prefix}_ipv4"], fields[f"{prefix}_ipv6"]) if a]
    shown = ",".join(addresses) if addresses else fields[f"{prefix}_state"]
    challenges = fields.get(f"{prefix}_txt")
    return f"{shown}, {challenges} TXT" if challenges else shown


class AuditLog:
    """
    Writes audit events. One per service (L{DynDNSService.audit}): the
    client writes, the adapter seam and the admin API share its sampler.

    @param clock: the reactor (C{seconds()}), for the sampler's intervals.
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self.sampler = LogSampler(
            log,
            clock,
            burst=SAMPLED_BURST,
            interval=SAMPLED_INTERVAL,
            summary_fields={"audit": "dropped"},
            flush=True,
        )

    def update(
        self,
        user: str | None,
        method: str,
        source: str | None,
        result: str,
        old: HostState | None = None,
        new: HostState | None = None,
        reason: str | None = None,
        sampled: bool | None = None,
    ) -> None:
        """
        One update attempt: C{old} and C{new} are the user's state before
        and after (C{new} None: unchanged). It goes through the sampler if
        C{sampled}, by default if its result is in L{SAMPLED_RESULTS}.
        """
        fields: dict[str, Any] = {
            "audit": "update",
            "user": user,
            "method": str(method),
            "source": source,
            "result": result,
            **state_fields("old", old),
            **state_fields("new", old if new is None else new),
        }
        if reason is not None:
            fields["reason"] = reason
        after = old if new is None else new
        if (old is not None and old.txt) or (after is not None and after.txt):
            # ACME challenge values (L{dyndns_plugin.acme}): how many each side holds.
            fields["old_txt"] = len(old.txt) if old is not None else 0
            fields["new_txt"] = len(after.txt) if after is not None else 0
        fields["old"] = _shown(fields, "old")
        fields["new"] = _shown(fields, "new")
        text = _UPDATE_FORMAT if reason is None else _REFUSAL_FORMAT
        if sampled or (sampled is None and result in SAMPLED_RESULTS):
            self.sampler.info(f"audit-{result}", text, **fields)
        else:
            log.info(text, **fields)

    def admin(
        self,
        actor: str | None,
        action: str,
        source: str | None,
        result: str,
        user: str | None = None,
        method: str = "admin",
        **details: Any,
    ) -> None:
        """
        One admin action (C{action}: user-add, user-change, user-remove,
        config-replace, login, ...) by C{actor} on C{user} (None: all users).
        A refused login (C{result} in L{SAMPLED_RESULTS}) is sampled.
        """
        fields: dict[str, Any] = {
            "audit": "admin",
            "actor": actor,
            "action": action,
            "user": user if user is not None else "*",
            "method": str(method),
            "source": source,
            "result": result,
            **details,
        }
        if result in SAMPLED_RESULTS:
            self.sampler.info(f"audit-admin-{result}", _ADMIN_REFUSAL_FORMAT, **{"reason": result, **fields})
        else:
            log.info(_ADMIN_FORMAT, **fields)
