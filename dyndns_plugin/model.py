"""
Value types of the service and the validation of everything a user can type.

Everything here is an immutable attrs value: the service replaces values, it
never mutates them, so the DNS path can hold a reference without locks.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import re
import socket
import sys
from typing import Iterable, Sequence, Union

import attrs

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

#: TSIG algorithms a user key may use: the ones dnspython implements,
#: including the truncated forms of RFC 8945 section 6.
TSIG_ALGORITHMS = (
    "hmac-md5",
    "hmac-sha1",
    "hmac-sha224",
    "hmac-sha256",
    "hmac-sha256-128",
    "hmac-sha384",
    "hmac-sha384-192",
    "hmac-sha512",
    "hmac-sha512-256",
)

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63
MAX_NOTES_LENGTH = 4096
MAX_HOSTNAMES = 100
MAX_TTL = 2**31 - 1

_USER_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_LABEL = re.compile(r"^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)$")
_new = object.__new__
_from_bytes = int.from_bytes


class ValidationError(ValueError):
    """
    A value a person or a client supplied is not acceptable.

    @ivar field: the name of the offending field, for messages that name it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def normalize_user_id(value: str) -> str:
    """
    User ids are case-insensitive, like the DNS names they are part of:
    every path (CLI, admin API, import, every update method) lowercases an
    id on input, so C{Alice} and C{alice} are the same user.
    """
    return value.strip().lower() if isinstance(value, str) else value


def validate_user_id(value: str) -> str:
    """
    Return C{value} if it is a valid user id: one DNS label of C{a-z 0-9 -},
    1-63 characters, no leading or trailing hyphen.
    """
    if not isinstance(value, str) or not _USER_ID.match(value):
        raise ValidationError(
            "id",
            f"{value!r} is not a valid user id (1-63 characters of a-z, 0-9 and '-', not starting or ending with '-')",
        )
    return value


def normalize_name(value: str, field: str = "name", wildcard: bool = False) -> str:
    """
    Validate a host name per RFC 1035 (253 characters, 63 per label) and
    return it lower-cased without a trailing dot.

    @param wildcard: allow a leading C{*.} label (a wildcard alias).
    """
    if not isinstance(value, str):
        raise ValidationError(field, f"{value!r} is not a host name")
    name = value.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValidationError(field, "empty host name")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(field, f"{value!r} is longer than {MAX_NAME_LENGTH} characters")
    labels = name.split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            raise ValidationError(field, f"{value!r}: a wildcard needs a parent of two labels or more")
    for label in labels:
        if not label:
            raise ValidationError(field, f"{value!r} has an empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise ValidationError(field, f"{value!r} has a label longer than {MAX_LABEL_LENGTH}")
        if not _LABEL.match(label):
            raise ValidationError(
                field,
                f"{value!r}: label {label!r} may hold only a-z, 0-9, '-' and '_', and may not start or end with '-'",
            )
    return name


def parse_address(value: object, field: str = "address") -> IPAddress:
    """
    Parse an IPv4 or IPv6 address; IPv4-mapped IPv6 addresses become IPv4.
    """
    if type(value) is ipaddress.IPv4Address:
        # Already parsed (the write path passes objects along): only the
        # host-address checks, on the integer (0.0.0.0 and 224.0.0.0/4).
        number = int(value)
        if number == 0 or number >> 28 == 14:
            raise ValidationError(field, f"{value!r} cannot be a host address")
        return value
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address: IPAddress = value
    else:
        text = str(value).strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        if ":" not in text:
            # A dotted quad: the C parser (as strict: four decimal octets, no
            # leading zeros) instead of ipaddress's Python one, ~4x faster
            # (an import of 1,000,000 users parses as many).
            try:
                number = _from_bytes(socket.inet_pton(socket.AF_INET, text))
            except (OSError, ValueError):
                pass  # ipaddress says what is wrong
            else:
                if number == 0 or number >> 28 == 14:
                    raise ValidationError(field, f"{value!r} cannot be a host address")
                fast = _new(ipaddress.IPv4Address)
                fast._ip = number  # type: ignore[attr-defined]
                return fast
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ValidationError(field, f"{value!r} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast:
        raise ValidationError(field, f"{value!r} cannot be a host address")
    return address


def validate_tsig_secret(value: str) -> str:
    """
    Return C{value} if it is strict base64 of at least one byte.
    """
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ValidationError("tsig_secret", "not valid base64") from None
    if not raw:
        raise ValidationError("tsig_secret", "empty secret")
    return value


def validate_tsig_algorithm(value: str) -> str:
    name = value.lower().rstrip(".")
    if name not in TSIG_ALGORITHMS:
        raise ValidationError(
            "tsig_algorithm",
            f"{value!r} is not one of {', '.join(TSIG_ALGORITHMS)}",
        )
    return sys.intern(name)


def validate_ttl(value: object, field: str = "ttl") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise ValidationError(field, f"{value!r} is not a whole number") from None
    if not 0 <= value <= MAX_TTL:
        raise ValidationError(field, f"{value} is outside 0..{MAX_TTL}")
    return value


def _hostnames(values: Iterable[str]) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(normalize_name(v, "hostnames", True) for v in values))
    if len(names) > MAX_HOSTNAMES:
        raise ValidationError("hostnames", f"at most {MAX_HOSTNAMES} names per user")
    return names


def _optional_address(version: int, field: str):
    def convert(value: object) -> IPAddress | None:
        if value is None or value == "":
            return None
        address = parse_address(value, field)
        if address.version != version:
            raise ValidationError(field, f"{value!r} is not an IPv{version} address")
        return address

    return convert


def _offline_ipv4(value: object) -> ipaddress.IPv4Address | None:
    return _optional_address(4, "offline_ipv4")(value)  # type: ignore[return-value]


def _offline_ipv6(value: object) -> ipaddress.IPv6Address | None:
    return _optional_address(6, "offline_ipv6")(value)  # type: ignore[return-value]


def _state_ipv4(value: object) -> ipaddress.IPv4Address | None:
    return _optional_address(4, "ipv4")(value)  # type: ignore[return-value]


def _state_ipv6(value: object) -> ipaddress.IPv6Address | None:
    return _optional_address(6, "ipv6")(value)  # type: ignore[return-value]


def _notes(value: str) -> str:
    if len(value) > MAX_NOTES_LENGTH:
        raise ValidationError("notes", f"longer than {MAX_NOTES_LENGTH} characters")
    return value


@attrs.frozen
class User:
    """
    An account: who may update which names, and with which secrets.

    Secrets are kept only as verifiers. C{md5_verifier} is the hex MD5 of the
    password; GnuDIP and the password-derived TSIG key need it, and it is
    password-equivalent for those protocols, so it is kept only for users that
    use one of them (C{None} otherwise).

    @ivar hostnames: additional names in any domain; C{*.name} is a wildcard
        alias that answers for every name below C{name}.
    """

    id: str = attrs.field(converter=normalize_user_id, validator=lambda _i, _a, v: validate_user_id(v))
    password_hash: str | None = None
    md5_verifier: str | None = attrs.field(default=None)
    tsig_secret: str | None = attrs.field(
        default=None,
        converter=lambda v: None if v in (None, "") else validate_tsig_secret(v),
    )
    tsig_algorithm: str = attrs.field(default="hmac-md5", converter=validate_tsig_algorithm)
    tsig_from_password: bool = False
    offline_ipv4: ipaddress.IPv4Address | None = attrs.field(default=None, converter=_offline_ipv4)
    offline_ipv6: ipaddress.IPv6Address | None = attrs.field(default=None, converter=_offline_ipv6)
    hostnames: tuple[str, ...] = attrs.field(default=(), converter=_hostnames)
    notes: str = attrs.field(default="", converter=_notes)
    disabled: bool = False

    @md5_verifier.validator
    def _check_md5(self, _attribute: object, value: str | None) -> None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{32}", value):
            raise ValidationError("md5_verifier", "must be 32 lower-case hex digits")

    def __attrs_post_init__(self) -> None:
        if self.tsig_from_password and self.md5_verifier is None:
            raise ValidationError(
                "tsig_from_password",
                "a password-derived TSIG key needs the MD5 verifier of the password",
            )
        if self.tsig_from_password and self.tsig_secret is not None:
            raise ValidationError("tsig_secret", "give either a TSIG secret or tsig_from_password, not both")

    def offline_addresses(self) -> tuple[IPAddress, ...]:
        return tuple(a for a in (self.offline_ipv4, self.offline_ipv6) if a is not None)

    @classmethod
    def trusted(
        cls,
        id: str,
        password_hash: str | None,
        md5_verifier: str | None,
        tsig_secret: str | None,
        tsig_algorithm: str,
        tsig_from_password: bool,
        offline_ipv4: ipaddress.IPv4Address | None,
        offline_ipv6: ipaddress.IPv6Address | None,
        hostnames: tuple[str, ...],
        notes: str,
        disabled: bool,
    ) -> User:
        """
        A user from values this program validated before (a store's own
        rows), without validating them again: loading 1,000,000 users
        through the checks costs seconds of start-up.
        """
        user = _new(cls)
        (
            set_id,
            set_hash,
            set_md5,
            set_secret,
            set_algorithm,
            set_derived,
            set_v4,
            set_v6,
            set_names,
            set_notes,
            set_off,
        ) = _USER_SETTERS
        set_id(user, id)
        set_hash(user, password_hash)
        set_md5(user, md5_verifier)
        set_secret(user, tsig_secret)
        set_algorithm(user, sys.intern(tsig_algorithm))
        set_derived(user, tsig_from_password)
        set_v4(user, offline_ipv4)
        set_v6(user, offline_ipv6)
        set_names(user, hostnames)
        set_notes(user, notes)
        set_off(user, disabled)
        return user


def _slot_setters(cls: type) -> tuple:
    """The slot descriptors' setters in field order: the cheapest way to fill a frozen slotted instance."""
    return tuple(cls.__dict__[a.name].__set__ for a in attrs.fields(cls))


_USER_SETTERS = _slot_setters(User)


def stored_ipv4(text: str | None) -> ipaddress.IPv4Address | None:
    """An IPv4 address as this program wrote it (dotted quad), parsed ~8x faster than C{ip_address}."""
    if text is None:
        return None
    # IPv4Address(text) parses in Python; the packed form skips that, and
    # the constructor too (its one slot, _ip, set directly: ~4x faster).
    address = _new(ipaddress.IPv4Address)
    address._ip = _from_bytes(socket.inet_aton(text))  # type: ignore[attr-defined]
    return address


def stored_ipv6(text: str | None) -> ipaddress.IPv6Address | None:
    """An IPv6 address as this program wrote it."""
    return None if text is None else ipaddress.IPv6Address(socket.inet_pton(socket.AF_INET6, text))


@attrs.frozen
class HostState:
    """
    Where a user's names point now, and what last changed that.

    A user that never updated has no addresses. An offline user keeps its last
    addresses (so the status page can show them) but they are not served.
    """

    user_id: str
    ipv4: ipaddress.IPv4Address | None = attrs.field(default=None, converter=_state_ipv4)
    ipv6: ipaddress.IPv6Address | None = attrs.field(default=None, converter=_state_ipv6)
    ttl: int | None = None
    offline: bool = False
    updated_at: float | None = None
    method: str | None = None
    client_address: str | None = None
    #: ACME DNS-01 challenge values, C{(name, value, expires)}, oldest
    #: first (L{dyndns_plugin.acme}); they do not change the status.
    txt: tuple[tuple[str, str, float], ...] = ()

    def addresses(self) -> tuple[IPAddress, ...]:
        return tuple(a for a in (self.ipv4, self.ipv6) if a is not None)

    @property
    def status(self) -> str:
        """C{online}, C{offline} or C{never} (no update yet)."""
        if self.offline:
            return "offline"
        return "online" if self.addresses() else "never"

    @classmethod
    def trusted(
        cls,
        user_id: str,
        ipv4: ipaddress.IPv4Address | None,
        ipv6: ipaddress.IPv6Address | None,
        ttl: int | None,
        offline: bool,
        updated_at: float | None,
        method: str | None,
        client_address: str | None,
        txt: tuple[tuple[str, str, float], ...] = (),
    ) -> HostState:
        """A state from values validated before (see L{User.trusted}); C{method} is interned."""
        state = _new(cls)
        set_id, set_v4, set_v6, set_ttl, set_offline, set_at, set_method, set_client, set_txt = _STATE_SETTERS
        set_id(state, user_id)
        set_v4(state, ipv4)
        set_v6(state, ipv6)
        set_ttl(state, ttl)
        set_offline(state, offline)
        set_at(state, updated_at)
        set_method(state, None if method is None else sys.intern(method))
        set_client(state, client_address)
        set_txt(state, txt)
        return state


_STATE_SETTERS = _slot_setters(HostState)


class UpdateStatus(enum.Enum):
    """The outcome of a write through L{DynDNSService}."""

    GOOD = "good"
    NOCHG = "nochg"
    NO_SUCH_USER = "nohost"
    DISABLED = "disabled"
    BAD_ADDRESS = "badaddress"
    STORE_FAILED = "911"
    #: The user changed its address too often (L{dyndns_plugin.limits}).
    RATE_LIMITED = "abuse"
    #: An ACME challenge edit a name cannot take (L{dyndns_plugin.acme}).
    BAD_TXT = "badtxt"

    @property
    def ok(self) -> bool:
        return self in (UpdateStatus.GOOD, UpdateStatus.NOCHG)


@attrs.frozen
class UpdateResult:
    """
    What L{DynDNSService.update} decided. C{state} is the state after the
    call (for errors: the unchanged state, if the user exists).
    """

    status: UpdateStatus
    state: HostState | None = None
    message: str = ""
    #: For RATE_LIMITED: seconds until a change may succeed.
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status.ok


def split_addresses(
    addresses: Sequence[IPAddress],
) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
    """
    Split a list of addresses into one IPv4 and one IPv6 address; more than
    one of a family is an error (a name has one address per family here).
    """
    v4: list[ipaddress.IPv4Address] = []
    v6: list[ipaddress.IPv6Address] = []
    for address in addresses:
        address = parse_address(address)
        if isinstance(address, ipaddress.IPv4Address):
            v4.append(address)
        else:
            v6.append(address)
    if len(set(v4)) > 1 or len(set(v6)) > 1:
        raise ValidationError("address", "at most one IPv4 and one IPv6 address")
    return (v4[0] if v4 else None, v6[0] if v6 else None)
