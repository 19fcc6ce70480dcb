"""
ACME DNS-01 challenge records: the TXT values a user's certificate client
puts at C{_acme-challenge.<name>} for each name the user holds, and what
each way of setting them (RFC 2136, the acme-dns API, lego's httpreq, the
CLI) may do with them.

A user's values live in its L{HostState} (C{txt}), so they take the one
write path addresses take: durable before the answer, then the registry,
the zones and the answer cache. Each value is C{(name, value, expires)}:
C{name} is the user's name the challenge is for (C{alice.dyn.example} for
C{_acme-challenge.alice.dyn.example}), C{expires} when it is dropped by
itself (challenges are one-shot; a client that never cleans up leaves
nothing behind for long).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from typing import Iterable, Sequence

import attrs

from dyndns_plugin.model import User, ValidationError
from dyndns_plugin.store import AcmeKey

#: The label a DNS-01 challenge sits under (RFC 8555 section 8.4).
CHALLENGE_LABEL = "_acme-challenge"
_PREFIX = CHALLENGE_LABEL + "."
#: Values one name may hold at once: a certificate for C{name} and
#: C{*.name} needs two, a renewal running beside them two more.
MAX_VALUES_PER_NAME = 4
#: A TXT character-string holds at most 255 bytes (RFC 1035 3.3.14).
MAX_VALUE_LENGTH = 255
#: The values acme-dns keeps per name: the two most recent.
ACME_DNS_KEEP = 2
#: The longest label of a scoped key.
MAX_KEY_LABEL = 100

#: One value: (the user's name it is for, the value, when it expires).
TXTValue = tuple[str, str, float]
TXTValues = tuple[TXTValue, ...]


def challenge_name(name: str) -> str:
    """The owner name of C{name}'s challenge: C{_acme-challenge.<name>}."""
    return _PREFIX + name


def base_of(owner: str) -> str | None:
    """The name a challenge owner name is for, or None if it is not one."""
    return owner[len(_PREFIX) :] if owner.startswith(_PREFIX) else None


def challenge_bases(user: User, suffix: str) -> list[str]:
    """
    The names C{user} may hold challenges for: the main name, each exact
    additional name and the base of each wildcard alias (a certificate for
    C{*.name} is validated at C{_acme-challenge.name}).
    """
    names = [f"{user.id}.{suffix}"]
    for name in user.hostnames:
        base = name[2:] if name.startswith("*.") else name
        if base not in names:
            names.append(base)
    return names


def validate_value(value: object, field: str = "txt") -> str:
    """A challenge value: 1 to 255 printable ASCII characters (what key authorization digests are)."""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    if not value:
        raise ValidationError(field, "must not be empty")
    if len(value) > MAX_VALUE_LENGTH:
        raise ValidationError(field, f"is longer than {MAX_VALUE_LENGTH} characters")
    if not all(" " <= c <= "~" for c in value):
        raise ValidationError(field, "must be printable ASCII")
    return value


@attrs.frozen
class AcmeSettings:
    """
    C{[acme]}: challenge values, and which ways of setting them are on.

    @ivar ttl: the TTL the TXT records are served with.
    @ivar lifetime: seconds a value lives unless removed before.
    @ivar rfc2136: users' TSIG keys may add and delete them.
    @ivar acme_dns: the acme-dns API (C{POST /acme-dns/update}).
    @ivar acme_dns_register: C{POST /acme-dns/register} makes a scoped
        key for an existing user (off: 404).
    @ivar httpreq: lego's httpreq API (C{/acme/present}, C{/acme/cleanup}).
    @ivar passwords: the user's own password works on the HTTP APIs (else
        only scoped keys do).
    """

    enabled: bool = True
    ttl: int = 60
    lifetime: float = 3600.0
    rfc2136: bool = True
    acme_dns: bool = True
    acme_dns_register: bool = False
    httpreq: bool = True
    passwords: bool = True

    def allows(self, method: str) -> bool:
        """Whether challenge values are served and C{method} (C{"rfc2136"}, C{"acme_dns"}, ...) may set them."""
        return self.enabled and bool(getattr(self, method))


class Op(enum.Enum):
    """What an edit does at one name."""

    ADD = "add"  #: add the value (again: a fresh lifetime)
    REMOVE = "remove"  #: remove the value if present
    CLEAR = "clear"  #: remove every value at the name


@attrs.frozen
class TXTEdit:
    """
    One change to a user's challenge values. C{keep}: for an ADD, drop the
    oldest values beyond this many at the name (acme-dns keeps two);
    None: more than L{MAX_VALUES_PER_NAME} is an error.
    """

    op: Op
    name: str
    value: str | None = None
    keep: int | None = None


def apply_edits(current: TXTValues, edits: Sequence[TXTEdit], now: float, lifetime: float) -> TXTValues:
    """
    C{current} with C{edits} applied in order, expired values dropped;
    a L{ValidationError} if a name would hold too many values.
    """
    values = [v for v in current if v[2] > now]
    for edit in edits:
        if edit.op is Op.CLEAR:
            values = [v for v in values if v[0] != edit.name]
        elif edit.op is Op.REMOVE:
            values = [v for v in values if (v[0], v[1]) != (edit.name, edit.value)]
        else:
            assert edit.value is not None
            values = [v for v in values if (v[0], v[1]) != (edit.name, edit.value)]
            values.append((edit.name, edit.value, now + lifetime))
            at_name = [v for v in values if v[0] == edit.name]
            limit = MAX_VALUES_PER_NAME if edit.keep is None else min(edit.keep, MAX_VALUES_PER_NAME)
            if len(at_name) > limit:
                if edit.keep is None:
                    raise ValidationError(
                        "txt", f"{challenge_name(edit.name)} holds {MAX_VALUES_PER_NAME} values already"
                    )
                dropped = {id(v) for v in at_name[: len(at_name) - limit]}
                values = [v for v in values if id(v) not in dropped]
    return tuple(values)


def unexpired(current: TXTValues, now: float) -> TXTValues:
    """C{current} without the values expired at C{now}."""
    return tuple(v for v in current if v[2] > now)


def values_at(current: TXTValues, name: str) -> tuple[str, ...]:
    """The values held for C{name}, oldest first."""
    return tuple(v[1] for v in current if v[0] == name)


def names_in(current: TXTValues) -> set[str]:
    """The names that hold values."""
    return {v[0] for v in current}


def next_expiry(current: TXTValues) -> float | None:
    """When the first of C{current} expires (None: no values)."""
    return min((v[2] for v in current), default=None)


def txt_rdata(value: str) -> bytes:
    """The wire form of a value: one character-string."""
    data = value.encode("ascii")
    return bytes([len(data)]) + data


def value_of_rdata(rdata: bytes) -> str | None:
    """The value of TXT rdata holding one printable character-string; None for any other."""
    if not rdata or rdata[0] != len(rdata) - 1:
        return None
    try:
        return validate_value(rdata[1:].decode("ascii"))
    except (UnicodeDecodeError, ValidationError):
        return None


def to_json(current: TXTValues) -> list[list[object]]:
    """The store's and the admin API's form: C{[[name, value, expires], ...]}."""
    return [[name, value, expires] for name, value, expires in current]


def from_json(data: Iterable[Sequence[object]]) -> TXTValues:
    """The values of L{to_json}'s form (the store's own: not validated again)."""
    return tuple((str(name), str(value), float(expires)) for name, value, expires in data)  # type: ignore[arg-type]


# -- scoped keys


def new_key(label: str, now: float) -> tuple[AcmeKey, str]:
    """A new scoped key and its secret (shown once; only its SHA-256 is kept)."""
    secret = secrets.token_urlsafe(30)  # 40 characters, as acme-dns's keys
    key = AcmeKey(secrets.token_hex(4), _sha256(secret), label, now)
    return key, secret


def validate_label(value: object) -> str:
    """A scoped key's label: up to L{MAX_KEY_LABEL} characters, no control characters."""
    if not isinstance(value, str):
        raise ValidationError("label", "must be a string")
    if len(value) > MAX_KEY_LABEL:
        raise ValidationError("label", f"is longer than {MAX_KEY_LABEL} characters")
    if not value.isprintable():
        raise ValidationError("label", "must not hold control characters")
    return value


def matching_key(keys: Iterable[AcmeKey], secret: str) -> AcmeKey | None:
    """The key whose secret C{secret} is (compared in constant time), if any."""
    digest = _sha256(secret)
    found = None
    for key in keys:
        if hmac.compare_digest(key.secret_sha256, digest):
            found = key
    return found


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()
