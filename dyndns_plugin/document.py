"""
The users document: one JSON form of users and their states, independent of
the settings. C{dyndns export} writes it, C{dyndns import} reads it, and the
admin API uses the same shapes.

Secrets appear only as their stored verifiers. On input, a C{password} field
(plain text) may stand instead of the verifiers; it is hashed here.
"""

from __future__ import annotations

import datetime
from typing import Any, Iterable, Mapping

from dyndns_plugin.acme import TXTValues, challenge_name
from dyndns_plugin.model import HostState, User, ValidationError, validate_ttl
from dyndns_plugin.passwords import (
    PasswordError,
    hash_password,
    is_password_hash,
    md5_verifier,
)
from dyndns_plugin.store import AcmeKey

FORMAT = "dyndns_plugin.users"
VERSION = 1

_USER_FIELDS = {
    "id",
    "password",
    "password_hash",
    "md5_verifier",
    "gnudip",
    "tsig_secret",
    "tsig_algorithm",
    "tsig_from_password",
    "offline_ipv4",
    "offline_ipv6",
    "hostnames",
    "notes",
    "disabled",
    "state",
}
_STATE_FIELDS = {
    "ipv4",
    "ipv6",
    "ttl",
    "offline",
    "updated_at",
    "method",
    "client_address",
}


def format_time(seconds: float | None, precise: bool = True) -> str | None:
    """ISO 8601 in UTC; with microseconds when C{precise} and non-zero."""
    if seconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    spec = "auto" if precise else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def parse_time(value: str | None, field: str) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(field, f"{value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def user_to_dict(user: User, state: HostState | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": user.id,
        "password_hash": user.password_hash,
        "md5_verifier": user.md5_verifier,
        "tsig_secret": user.tsig_secret,
        "tsig_algorithm": user.tsig_algorithm,
        "tsig_from_password": user.tsig_from_password,
        "offline_ipv4": _text(user.offline_ipv4),
        "offline_ipv6": _text(user.offline_ipv6),
        "hostnames": list(user.hostnames),
        "notes": user.notes,
        "disabled": user.disabled,
    }
    if state is not None:
        data["state"] = state_to_dict(state)
    return data


def state_to_dict(state: HostState) -> dict[str, Any]:
    return {
        "status": state.status,
        "ipv4": _text(state.ipv4),
        "ipv6": _text(state.ipv6),
        "ttl": state.ttl,
        "offline": state.offline,
        "updated_at": format_time(state.updated_at),
        "method": state.method,
        "client_address": state.client_address,
    }


def _expect(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """C{data[key]} (None if missing) if of C{kind}; the field named C{<where>.<key>} only on error."""
    value = data.get(key)
    if value is not None and not isinstance(value, kind):
        raise ValidationError(f"{where}.{key}", f"has the wrong type ({type(value).__name__})")
    return value


def user_from_dict(data: object, where: str = "user") -> tuple[User, HostState | None]:
    """
    Build a validated user (and state, if given) from its document form.
    Errors are L{ValidationError}s whose field names the place, e.g.
    C{users[3].hostnames}.
    """
    if not isinstance(data, dict):
        raise ValidationError(where, "must be an object")
    unknown = sorted(set(data) - _USER_FIELDS)
    if unknown:
        raise ValidationError(f"{where}.{unknown[0]}", "unknown field")

    def field(name: str) -> str:
        return f"{where}.{name}"

    password = _expect(data, "password", str, where)
    password_hash = _expect(data, "password_hash", str, where)
    verifier = _expect(data, "md5_verifier", str, where)
    if password is not None:
        try:
            password_hash = hash_password(password)
            wants_md5 = bool(data.get("gnudip")) or bool(data.get("tsig_from_password"))
            verifier = md5_verifier(password) if wants_md5 else verifier
        except PasswordError as e:
            raise ValidationError(field("password"), str(e).split(": ", 1)[-1]) from None
    if password_hash is not None and not is_password_hash(password_hash):
        raise ValidationError(field("password_hash"), "is not a hash made by dyndns_plugin")
    values = {
        "id": _expect(data, "id", str, where) or "",
        "tsig_secret": _expect(data, "tsig_secret", str, where),
        "tsig_algorithm": _expect(data, "tsig_algorithm", str, where) or "hmac-md5",
        "tsig_from_password": bool(_expect(data, "tsig_from_password", bool, where)),
        "offline_ipv4": _expect(data, "offline_ipv4", str, where),
        "offline_ipv6": _expect(data, "offline_ipv6", str, where),
        "hostnames": _expect(data, "hostnames", list, where) or [],
        "notes": _expect(data, "notes", str, where) or "",
        "disabled": bool(_expect(data, "disabled", bool, where)),
    }
    try:
        user = User(password_hash=password_hash, md5_verifier=verifier, **values)
    except ValidationError as e:
        raise ValidationError(field(e.field), e.message) from None
    state = None
    if data.get("state") is not None:
        state = state_from_dict(user.id, data["state"], field("state"))
    return user, state


def state_from_dict(user_id: str, data: object, where: str = "state") -> HostState:
    if not isinstance(data, dict):
        raise ValidationError(where, "must be an object")
    unknown = sorted(set(data) - _STATE_FIELDS - {"status"})
    if unknown:
        raise ValidationError(f"{where}.{unknown[0]}", "unknown field")
    ttl = data.get("ttl")
    values = {key: _expect(data, key, str, where) for key in ("ipv4", "ipv6", "updated_at", "method", "client_address")}
    offline = bool(_expect(data, "offline", bool, where))
    try:
        return HostState(
            user_id=user_id,
            ipv4=values["ipv4"],
            ipv6=values["ipv6"],
            ttl=None if ttl is None else validate_ttl(ttl),
            offline=offline,
            updated_at=parse_time(values["updated_at"], "updated_at"),
            method=values["method"],
            client_address=values["client_address"],
        )
    except ValidationError as e:
        raise ValidationError(f"{where}.{e.field}", e.message) from None


def export_document(users: Iterable[User], states: Mapping[str, HostState]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "users": [user_to_dict(user, states.get(user.id)) for user in sorted(users, key=lambda u: u.id)],
    }


def parse_document(data: object) -> tuple[list[User], list[HostState]]:
    """
    Validate a whole users document. Duplicate ids are an error, so an
    import is all or nothing.
    """
    if not isinstance(data, dict):
        raise ValidationError("document", "must be a JSON object")
    if data.get("format") != FORMAT:
        raise ValidationError("format", f"must be {FORMAT!r}")
    if data.get("version") != VERSION:
        raise ValidationError("version", f"version {data.get('version')!r} is not {VERSION}")
    entries = data.get("users")
    if not isinstance(entries, list):
        raise ValidationError("users", "must be a list")
    users: list[User] = []
    states: list[HostState] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        user, state = user_from_dict(entry, f"users[{i}]")
        if user.id in seen:
            raise ValidationError(f"users[{i}].id", f"duplicate id {user.id!r}")
        seen.add(user.id)
        users.append(user)
        if state is not None:
            states.append(state)
    return users, states


# -- ACME challenge values and scoped keys, as the admin API and the CLI show them


def txt_entries(values: TXTValues, now: float, precise: bool = True) -> list[dict[str, Any]]:
    """
    A user's challenge values not expired at C{now}, oldest first, each as
    C{{"name": <challenge owner name>, "value": ..., "expires": <ISO 8601>}}.
    """
    return [
        {"name": challenge_name(name), "value": value, "expires": format_time(expires, precise)}
        for name, value, expires in values
        if expires > now
    ]


def key_entry(key: AcmeKey, precise: bool = True) -> dict[str, Any]:
    """A scoped ACME key as it is listed: never its secret or its hash."""
    return {"key_id": key.key_id, "label": key.label, "created": format_time(key.created, precise)}
