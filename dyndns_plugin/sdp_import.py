"""
Migration from the Simple DNS Plus "DynDNS Service" plug-in: its
configuration XML (users, host names, offline IPs, TSIG keys, the update
method switches) and its state XML (each user's current IP, TTL, last update
and offline flag) become our users and host states. C{dyndns import-sdp}
is the command. The formats are the plug-in's own, as its public source
(github.com/jhsoftware/sdnspi-DynDns) writes them; the samples in
tests/fixtures/sdp show them, and docs/migrating-from-sdp.md says what
is read.

Mapping, per C{<User>} of the configuration:

 - C{ID} -> C{User.id}, lower-cased (the original's ids are DNS labels,
   compared without case);
 - C{Password} (plain text in the original) -> an scrypt C{password_hash};
 - no C{TSIGKeyValue}: the original's key is base64(MD5(password)), HMAC-MD5
   only (the plug-in's source), so the user keeps C{md5_verifier(password)} with
   C{tsig_from_password=True} and C{tsig_algorithm="hmac-md5"};
   C{TSIGKeyValue="b64"}: C{tsig_secret}, HMAC-MD5. The MD5 verifier is also
   kept for users with an explicit key when GnuDIP (TCP or HTTP) is on in
   the original or here, since GnuDIP can only check MD5(password); it is
   password-equivalent for those protocols (docs/security.md);
 - C{OfflineIP} -> C{offline_ipv4} or C{offline_ipv6};
 - C{<HostName>} children -> C{hostnames} (C{*.name}: a wildcard alias);
 - C{Notes}, C{Disabled} -> C{notes}, C{disabled}.

Per C{<User>} of the state: C{IP} -> C{ipv4} or C{ipv6}; C{TTL} (the
original omits it when it is 30) -> C{ttl}; C{LastUpdate} (an XML date-time
of "unspecified" kind holding UTC) -> C{updated_at}; C{Offline="true"} ->
C{offline}; C{method} is C{"import-sdp"}. A state for a user the
configuration does not have is skipped with a warning (the original skips it
too). Users imported with C{--replace} keep their current state unless the
state file has one for them.

The configuration's C{Suffix} must be ours. The original's method switches
(C{UpMe...}, C{RemoteDetect}, C{GNUDIPPort}, C{BaseURL}, C{UpdateZones}) are
compared with our settings and every difference is a warning: our settings
live in the TOML file and are never changed here.

Everything is validated before anything is written, and then all users and
states go to the store in one transaction: an error anywhere writes
nothing. Errors read C{FILE: where: problem}, where is the element and its
line.

Parsing safety: the files are parsed with the standard library's expat
parser feeding an C{xml.etree.ElementTree.TreeBuilder}, with a document type
declaration refused outright (the original never writes one). With no DTD
there are no entity declarations, so no entity expansion ("billion
laughs"), no external entities and no external DTD fetches; an undefined
entity reference is expat's own well-formedness error. This is stricter than
defusedxml's defaults (which accept a DTD without entities) and needs no
extra dependency, and driving expat directly gives line numbers for the
error messages, which ElementTree's own parser does not keep. Input files
are bounded to L{MAX_FILE_SIZE} bytes.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, TypeVar
from urllib.parse import urlsplit
from xml.etree import ElementTree
from xml.parsers import expat

import attrs

from dyndns_plugin.config import Settings
from dyndns_plugin.methods import Method
from dyndns_plugin.model import (
    HostState,
    User,
    ValidationError,
    normalize_name,
    parse_address,
    validate_tsig_secret,
    validate_ttl,
    validate_user_id,
)
from dyndns_plugin.passwords import hash_password, md5_verifier

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from dyndns_plugin.service import DynDNSService

T = TypeVar("T")

#: The C{method} of every imported host state.
METHOD = Method.IMPORT_SDP
#: The original's TTL when a state has none.
DEFAULT_TTL = 30
#: Larger files are refused (about 100 bytes per user and state line).
MAX_FILE_SIZE = 64 * 1024 * 1024

_CONFIG_BOOLEANS = {
    # attribute: the original's default when it is absent (MyConfig.vb)
    "UpdateZones": False,
    "UpMeTSIG": True,
    "UpMeGnuDIP": False,
    "UpMeHTTPURL": False,
    "UpMeHTTPBasic": False,
    "UpMeHTTPGnuDIP": False,
    "UpMeHTTPDynCom": False,
    "RemoteDetect": False,
}
_CONFIG_ATTRIBUTES = {"Suffix", "GNUDIPPort", "BaseURL", *_CONFIG_BOOLEANS}
#: Options of plug-in 5.1 that the original reads no more either.
_OBSOLETE_ATTRIBUTES = {"Recursion", "DNSBLWhitelist", "DNSBLDomain"}
_USER_ATTRIBUTES = {"ID", "Password", "TSIGKeyValue", "OfflineIP", "Notes", "Disabled"}
_STATE_ATTRIBUTES = {"ID", "IP", "TTL", "LastUpdate", "Offline"}


class SDPImportError(ValueError):
    """A file that cannot be imported: C{FILE: where: problem}."""

    def __init__(self, path: str, where: str, problem: str) -> None:
        super().__init__(f"{path}: {where}: {problem}")
        self.path = path
        self.where = where
        self.problem = problem


class _Refused(Exception):
    """Raised from an expat handler for a construct we do not accept."""


@attrs.frozen
class SDPImport:
    """
    What a configuration (and state) file hold, validated and ready to store.

    @ivar passwords: the plain passwords by user id until L{hash_users}
        replaces them with the users' hashes (then empty).
    @ivar replaced: ids of imported users that exist in the store already
        (filled in by L{check_against}).
    """

    users: tuple[User, ...]
    states: tuple[HostState, ...]
    warnings: tuple[str, ...] = ()
    passwords: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    replaced: tuple[str, ...] = ()


@attrs.frozen
class SDPConfig:
    """
    A parsed configuration file. C{users} have no password hash yet;
    C{passwords} holds the plain passwords until L{hash_users}.
    """

    path: str
    suffix: str
    switches: Mapping[str, str]
    users: tuple[User, ...]
    passwords: Mapping[str, str] = attrs.field(repr=False)
    warnings: tuple[str, ...] = ()


# -- XML


@attrs.frozen
class _Document:
    root: ElementTree.Element
    lines: Mapping[int, int]

    def line(self, element: ElementTree.Element) -> int:
        return self.lines.get(id(element), 0)


def _config_root(data: bytes, path: str) -> tuple[_Document, Any, str]:
    """The parsed file, its root element (which must be <config>) and its place for messages."""
    document = parse_xml(data, path)
    root = document.root
    top = f"config (line {document.line(root)})"
    if root.tag != "config":
        raise SDPImportError(path, f"{root.tag} (line {document.line(root)})", "the root element must be <config>")
    return document, root, top


def parse_xml(data: bytes, path: str) -> _Document:
    """
    Parse C{data} with expat into ElementTree elements, remembering each
    element's line. A DOCTYPE (and so any entity declaration) is refused.
    """
    if len(data) > MAX_FILE_SIZE:
        raise SDPImportError(path, "file", f"larger than {MAX_FILE_SIZE} bytes")
    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate()
    lines: dict[int, int] = {}

    def start(tag: str, attributes: dict[str, str]) -> None:
        element = builder.start(tag, attributes)
        lines[id(element)] = parser.CurrentLineNumber

    def refuse(*_args: object) -> int:
        raise _Refused(
            "a DOCTYPE (document type declaration) is not allowed: "
            "the original never writes one, and it could declare entities"
        )

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(data, True)
    except _Refused as e:
        raise SDPImportError(path, f"line {parser.CurrentLineNumber}", str(e)) from None
    except expat.ExpatError as e:
        raise SDPImportError(path, f"line {e.lineno}", f"not well-formed XML: {expat.ErrorString(e.code)}") from None
    except (LookupError, ValueError) as e:
        # <?xml encoding="..."?> names a codec Python lacks (LookupError) or
        # a multi-byte one expat cannot use (ValueError)
        raise SDPImportError(path, f"line {parser.CurrentLineNumber}", f"cannot decode: {e}") from None
    root = builder.close()
    return _Document(root, lines)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        raise SDPImportError(path, "file", e.strerror or str(e)) from None
    return data


def _boolean(value: str, path: str, where: str, name: str) -> bool:
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise SDPImportError(path, where, f"{name}: {value!r} is not true or false")
    return text == "true"


def _check_children(
    document: _Document,
    element: ElementTree.Element,
    path: str,
    where: str,
    allowed: Iterable[str],
) -> None:
    names = set(allowed)
    text = (element.text or "").strip()
    if text:
        raise SDPImportError(path, where, f"unexpected text {text[:40]!r}")
    for child in element:
        if child.tag not in names:
            raise SDPImportError(
                path,
                f"{child.tag} (line {document.line(child)})",
                f"unknown element in <{element.tag}>",
            )
        tail = (child.tail or "").strip()
        if tail:
            raise SDPImportError(path, where, f"unexpected text {tail[:40]!r}")


def _check_attributes(element: ElementTree.Element, path: str, where: str, allowed: Iterable[str]) -> None:
    unknown = sorted(set(element.attrib) - set(allowed))
    if unknown:
        raise SDPImportError(path, where, f"unknown attribute {unknown[0]!r}")


def _where(document: _Document, element: ElementTree.Element, index: int) -> str:
    user_id = element.get("ID")
    label = repr(user_id) if user_id else f"#{index}"
    return f"User {label} (line {document.line(element)})"


# -- the configuration


#: Our field names -> the original's attribute names, for messages.
_XML_NAMES = {
    "id": "ID",
    "notes": "Notes",
    "hostnames": "HostName",
    "tsig_secret": "TSIGKeyValue",
    "offline_ipv4": "OfflineIP",
    "offline_ipv6": "OfflineIP",
    "ipv4": "IP",
    "ipv6": "IP",
    "ttl": "TTL",
    "password": "Password",
}


def _field(path: str, where: str, name: str | None, function: Callable[[], T]) -> T:
    """
    C{function()}, with a L{ValidationError} or L{PasswordError} turned into
    an L{SDPImportError} naming the attribute C{name} (None: the attribute
    the error names).
    """
    try:
        return function()
    except ValidationError as e:
        label = name or _XML_NAMES.get(e.field, e.field)
        raise SDPImportError(path, where, f"{label}: {e.message}") from None
    except ValueError as e:
        label = name or "value"
        raise SDPImportError(path, where, f"{label}: {str(e).split(': ', 1)[-1]}") from None


def gnudip_here(settings: Settings) -> bool:
    """Whether our settings serve GnuDIP (TCP, or HTTP on a listener)."""
    http = settings.http
    return bool(settings.gnudip.listen) or bool(http is not None and http.listen and http.gnudip)


def read_config(data: bytes, path: str, settings: Settings) -> SDPConfig:
    """
    Parse and validate a configuration file. The users come back without a
    password hash (see L{hash_users}): validating is fast, hashing is not.
    """
    document, root, top = _config_root(data, path)
    warnings: list[str] = []
    for name in sorted(set(root.attrib) & _OBSOLETE_ATTRIBUTES):
        warnings.append(f"{path}: config: {name} ignored (an option of plug-in 5.1, which the original ignores too)")
    _check_attributes(root, path, top, _CONFIG_ATTRIBUTES | _OBSOLETE_ATTRIBUTES)
    _check_children(document, root, path, top, ["User"])
    if "Suffix" not in root.attrib:
        raise SDPImportError(path, top, "Suffix: missing")
    suffix = _field(path, top, "Suffix", lambda: normalize_name(root.attrib["Suffix"]))
    if suffix != settings.suffix:
        raise SDPImportError(
            path,
            top,
            f"Suffix {suffix!r} is not our suffix {settings.suffix!r} "
            f"(service.suffix in {settings.path}): users would get other names",
        )
    switches: dict[str, str] = {}
    for name, default in _CONFIG_BOOLEANS.items():
        value = root.get(name)
        flag = default if value is None else _boolean(value, path, top, name)
        switches[name] = "true" if flag else "false"
    port = root.get("GNUDIPPort", "3495")
    if not re.fullmatch(r"\s*\d{1,5}\s*", port) or not 0 < int(port) < 65536:
        raise SDPImportError(path, top, f"GNUDIPPort: {port!r} is not a port number")
    switches["GNUDIPPort"] = str(int(port))
    switches["BaseURL"] = root.get("BaseURL", "")
    original_gnudip = switches["UpMeGnuDIP"] == "true" or switches["UpMeHTTPGnuDIP"] == "true"
    keep_md5 = original_gnudip or gnudip_here(settings)

    users: list[User] = []
    passwords: dict[str, str] = {}
    where_of: dict[str, str] = {}
    name_owner: dict[str, str] = {}
    for index, element in enumerate(root, 1):
        where = _where(document, element, index)
        user, password = _read_user(document, element, path, where, keep_md5)
        if user.id in where_of:
            raise SDPImportError(path, where, f"ID: {user.id!r} is already {where_of[user.id]}")
        for name in user.hostnames:
            owner = name_owner.setdefault(name, user.id)
            if owner != user.id:
                raise SDPImportError(path, where, f"HostName: {name!r} is already a name of user {owner!r}")
        where_of[user.id] = where
        users.append(user)
        passwords[user.id] = password
    return SDPConfig(path, suffix, switches, tuple(users), passwords, tuple(warnings))


def _read_user(
    document: _Document, element: ElementTree.Element, path: str, where: str, keep_md5: bool
) -> tuple[User, str]:
    _check_attributes(element, path, where, _USER_ATTRIBUTES)
    _check_children(document, element, path, where, ["HostName"])
    attributes = element.attrib
    if "ID" not in attributes:
        raise SDPImportError(path, where, "ID: missing")
    user_id = _field(path, where, "ID", lambda: validate_user_id(attributes["ID"].strip().lower()))
    password = attributes.get("Password", "")
    if not password:
        raise SDPImportError(path, where, "Password: missing or empty (the original requires one)")
    md5 = _field(path, where, "Password", lambda: md5_verifier(password))
    fields: dict[str, object] = {"id": user_id, "tsig_algorithm": "hmac-md5"}
    key = attributes.get("TSIGKeyValue")
    if key is None:
        fields.update(md5_verifier=md5, tsig_from_password=True)
    else:
        fields["tsig_secret"] = _field(path, where, "TSIGKeyValue", lambda: validate_tsig_secret(key.strip()))
        fields["md5_verifier"] = md5 if keep_md5 else None
    offline = attributes.get("OfflineIP", "").strip()
    if offline:
        address = _field(path, where, "OfflineIP", lambda: parse_address(offline, "OfflineIP"))
        fields[f"offline_ipv{address.version}"] = address
    names = []
    for child in element:
        child_where = f"{where}: HostName (line {document.line(child)})"
        _check_attributes(child, path, child_where, ())
        if len(child):
            raise SDPImportError(path, child_where, "unexpected element inside <HostName>")
        text = child.text or ""
        names.append(_field(path, child_where, "HostName", lambda: normalize_name(text, "HostName", wildcard=True)))  # noqa: B023 (_field calls it at once)
    fields["hostnames"] = names
    fields["notes"] = attributes.get("Notes", "")
    disabled = attributes.get("Disabled")
    fields["disabled"] = disabled is not None and _boolean(disabled, path, where, "Disabled")
    user = _field(path, where, None, lambda: User(**fields))  # type: ignore[arg-type]
    return user, password


# -- the state


def parse_time(value: str, path: str, where: str) -> float:
    """
    An XML date-time as .NET writes it (C{2024-01-01T12:00:00}, up to seven
    fraction digits, usually no zone): a time without a zone is UTC.
    """
    text = value.strip()
    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?", text)
    moment = None
    if match:
        head, fraction, zone = match.groups()
        micro = (fraction or ".0")[1:7].ljust(6, "0")
        zone = "+00:00" if zone in (None, "Z") else zone
        try:
            moment = datetime.datetime.fromisoformat(f"{head}.{micro}{zone}")
        except ValueError:
            moment = None
    if moment is None:
        raise SDPImportError(path, where, f"LastUpdate: {value!r} is not an XML date-time")
    return moment.timestamp()


def read_state(data: bytes, path: str, users: Mapping[str, User]) -> tuple[tuple[HostState, ...], tuple[str, ...]]:
    """
    Parse and validate a state file for C{users} (by id). Returns the states
    and the warnings (states of users that C{users} does not have).
    """
    document, root, top = _config_root(data, path)
    _check_attributes(root, path, top, ())
    _check_children(document, root, path, top, ["User"])
    states: dict[str, HostState] = {}
    seen: dict[str, str] = {}
    warnings: list[str] = []
    for index, element in enumerate(root, 1):
        where = _where(document, element, index)
        _check_attributes(element, path, where, _STATE_ATTRIBUTES)
        _check_children(document, element, path, where, ())
        attributes = element.attrib
        if "ID" not in attributes:
            raise SDPImportError(path, where, "ID: missing")
        user_id = _field(
            path,
            where,
            "ID",
            lambda: validate_user_id(attributes["ID"].strip().lower()),  # noqa: B023 (_field calls it at once)
        )
        if user_id in seen:
            raise SDPImportError(path, where, f"ID: {user_id!r} is already {seen[user_id]}")
        seen[user_id] = where
        fields: dict[str, object] = {"user_id": user_id, "method": METHOD}
        ip = attributes.get("IP", "").strip()
        if ip:
            address = _field(path, where, "IP", lambda: parse_address(ip, "IP"))  # noqa: B023 (_field calls it at once)
            fields[f"ipv{address.version}"] = address
        ttl = attributes.get("TTL")
        fields["ttl"] = DEFAULT_TTL if ttl is None else _field(path, where, "TTL", lambda: validate_ttl(ttl, "TTL"))  # noqa: B023 (_field calls it at once)
        last = attributes.get("LastUpdate")
        if last is not None:
            fields["updated_at"] = parse_time(last, path, where)
        offline = attributes.get("Offline")
        fields["offline"] = offline is not None and _boolean(offline, path, where, "Offline")
        state = _field(path, where, None, lambda: HostState(**fields))  # type: ignore[arg-type]  # noqa: B023 (_field calls it at once)
        if user_id not in users:
            warnings.append(f"{path}: {where}: no such user in the configuration; state skipped")
            continue
        states[user_id] = state
    return tuple(states.values()), tuple(warnings)


# -- settings


def _endpoint_port(description: str) -> int | None:
    """The port of a Twisted server endpoint string (C{tcp:3495:...})."""
    parts = description.split(":")
    for part in parts[1:]:
        value = part.split("=", 1)[1] if part.startswith("port=") else part
        if value.isdigit():
            return int(value)
    return None


def _origin(url: str) -> tuple[str, str | None, int | None, str]:
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. "http://[not-an-address]/": differs from any URL of ours
        return "", None, None, url
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443}.get(scheme)
    host = (parts.hostname or "").lower()
    return scheme, None if host in ("", "+", "*") else host, port, parts.path.lower() or "/"


def setting_warnings(config: SDPConfig, settings: Settings) -> list[str]:
    """
    Every method switch of the original that differs from our settings, as
    a sentence naming the original's attribute and our key.
    """
    http = settings.http
    http_on = http is not None and bool(http.listen)
    no_http = "there is no [http] listener" if not http_on else ""

    def http_flag(key: str) -> tuple[bool, str]:
        if not http_on:
            return False, no_http
        return bool(getattr(http, key)), f"http.methods.{key}"

    ours: dict[str, tuple[str, tuple[bool, str]]] = {
        "UpMeTSIG": ("DNS UPDATE with TSIG", (settings.dns.updates, "dns.updates")),
        "UpMeGnuDIP": ("GnuDIP over TCP", (bool(settings.gnudip.listen), "gnudip.listen")),
        "UpMeHTTPURL": ("HTTP with URL authentication", http_flag("url_auth")),
        "UpMeHTTPBasic": ("HTTP with Basic authentication", http_flag("basic_auth")),
        "UpMeHTTPGnuDIP": ("HTTP GnuDIP", http_flag("gnudip")),
        "UpMeHTTPDynCom": ("HTTP Dyn.com format (/nic/update)", http_flag("nic_update")),
        "RemoteDetect": ("remote IP detection", http_flag("remote_ip")),
        "UpdateZones": (
            "updating host records in local zones",
            (settings.dns.update_local_zones, "dns.update_local_zones"),
        ),
    }
    warnings = []
    switches = config.switches
    for name, (label, (here, key)) in ours.items():
        there = switches[name] == "true"
        if there != here:
            warnings.append(
                f"{name}={switches[name]}: {label} is {'on' if there else 'off'} in the "
                f"original but {'on' if here else 'off'} here ({key})"
            )
    if switches["UpMeGnuDIP"] == "true" and settings.gnudip.listen:
        gnudip_port = int(switches["GNUDIPPort"])
        if gnudip_port not in [_endpoint_port(d) for d in settings.gnudip.listen]:
            warnings.append(
                f"GNUDIPPort={gnudip_port}: the original listens on TCP port {gnudip_port}, here "
                f"gnudip.listen is {', '.join(settings.gnudip.listen)}"
            )
    base_in_use = any(switches[n] == "true" for n in ("UpMeHTTPURL", "UpMeHTTPBasic", "UpMeHTTPGnuDIP", "RemoteDetect"))
    if base_in_use and http_on and http is not None:
        scheme, host, port, path = _origin(switches["BaseURL"])
        o_scheme, o_host, o_port, o_path = _origin(http.base_url)
        if (scheme, port, path) != (o_scheme, o_port, o_path) or host not in (None, o_host):
            warnings.append(
                f"BaseURL={switches['BaseURL']!r}: the original's base URL differs from "
                f"http.base_url {http.base_url!r} (clients use the old URL)"
            )
    return warnings


# -- putting it together


def hash_users(
    imported: SDPImport, hasher: Callable[[str], str] = hash_password, workers: int | None = None
) -> SDPImport:
    """
    The import with every user's scrypt hash, computed on a few threads
    (hashlib's scrypt releases the GIL), and the plain passwords dropped.
    Slow: not on the reactor thread.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    passwords = [imported.passwords[user.id] for user in imported.users]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        hashes = list(pool.map(hasher, passwords))
    users = tuple(attrs.evolve(u, password_hash=h) for u, h in zip(imported.users, hashes))
    return attrs.evolve(imported, users=users, passwords={})


def load(config_path: str, state_path: str | None, settings: Settings) -> SDPImport:
    """
    Read, validate and convert both files (the state file is optional).
    The users have no password hashes yet: L{check_against}, then
    L{hash_users}. Blocking (file reads).
    """
    config = read_config(_read(config_path), config_path, settings)
    states: tuple[HostState, ...] = ()
    warnings = list(config.warnings)
    if state_path is not None:
        by_id = {user.id: user for user in config.users}
        states, state_warnings = read_state(_read(state_path), state_path, by_id)
        warnings += state_warnings
    warnings += setting_warnings(config, settings)
    return SDPImport(config.users, states, tuple(warnings), config.passwords)


def check_against(
    imported: SDPImport,
    users: Mapping[str, User],
    check_user: Callable[[User], None],
    path: str,
    replace: bool,
) -> SDPImport:
    """
    Check the import against the users the store has now: existing ids
    need C{replace}; names may not belong to a user who is not imported;
    C{check_user} (the service's rules, e.g. names under the suffix) must
    accept each user. Returns C{imported} with C{replaced} filled in.
    """
    imported_ids = {user.id for user in imported.users}
    existing = sorted(imported_ids & set(users))
    if existing and not replace:
        raise SDPImportError(
            path,
            "User",
            f"{len(existing)} of these users exist already: {', '.join(existing)} (give --replace to replace them)",
        )
    owners = {name: user.id for user in users.values() if user.id not in imported_ids for name in user.hostnames}
    for user in imported.users:
        where = f"User {user.id!r}"
        for name in user.hostnames:
            if name in owners:
                raise SDPImportError(path, where, f"HostName: {name!r} belongs to existing user {owners[name]!r}")
        try:
            check_user(user)
        except ValidationError as e:
            field = _XML_NAMES.get(e.field, e.field)
            raise SDPImportError(path, where, f"{field}: {e.message}") from None
    return attrs.evolve(imported, replaced=tuple(existing))


async def import_sdp(
    service: DynDNSService,
    config_path: str,
    state_path: str | None,
    settings: Settings,
    replace: bool = False,
    *,
    hasher: Callable[[str], str] = hash_password,
    in_thread: Callable[..., Deferred[Any]] | None = None,
) -> SDPImport:
    """
    The whole import: read and validate both files, check them against the
    service's users, hash the passwords, and write every user and state in
    one store transaction. The blocking steps run through C{in_thread}
    (default: C{deferToThread}). Returns what was imported.
    """
    if in_thread is None:
        from twisted.internet import threads

        in_thread = threads.deferToThread
    imported: SDPImport = await in_thread(load, config_path, state_path, settings)
    imported = check_against(imported, service.registry.users, service.check_user, config_path, replace)
    imported = await in_thread(hash_users, imported, hasher)
    await service.import_users(imported.users, imported.states)
    return imported


def summary(imported: SDPImport, paths: Sequence[str]) -> list[str]:
    """The lines C{dyndns import-sdp} prints."""
    lines = [f"warning: {w}" for w in imported.warnings]
    replaced = f" ({len(imported.replaced)} replaced)" if imported.replaced else ""
    lines.append(
        f"imported {len(imported.users)} users{replaced} and {len(imported.states)} "
        f"states from {', '.join(paths)}; {len(imported.warnings)} warnings"
    )
    return lines


__all__ = [
    "METHOD",
    "SDPConfig",
    "SDPImport",
    "SDPImportError",
    "check_against",
    "hash_users",
    "import_sdp",
    "load",
    "parse_xml",
    "read_config",
    "read_state",
    "setting_warnings",
    "summary",
]
