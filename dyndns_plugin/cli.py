"""
The C{dyndns} admin command.

It opens the same store the server uses and makes every change through
L{DynDNSService}, the one write path; a running server picks the change up
within its poll interval (0.5 s by default). Errors name the problem and exit
non-zero: 1 for a failed operation or bad configuration, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import gc
import getpass
import json
import os
import sys
from typing import Any, Callable, Sequence

from twisted.internet import defer, task

from dyndns_plugin.acme import Op, TXTEdit, TXTValue, challenge_name, validate_value, values_at
from dyndns_plugin.cli_zones import add_zone_commands
from dyndns_plugin.config import ConfigError, Settings, default_settings, load_settings
from dyndns_plugin.document import export_document, format_time, key_entry, parse_document, txt_entries, user_to_dict
from dyndns_plugin.methods import Method
from dyndns_plugin.model import (
    TSIG_ALGORITHMS,
    HostState,
    User,
    ValidationError,
    normalize_user_id,
    parse_address,
    validate_ttl,
)
from dyndns_plugin.passwords import PasswordError, hash_password, md5_verifier
from dyndns_plugin.registry import Answer
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store import StoreError
from dyndns_plugin.store.sqlite import SCHEMA_VERSION
from dyndns_plugin.tap import make_dyndns_service, make_store, version_line


class CommandError(Exception):
    """A failed command: printed as C{dyndns: <message>}, exit status 1."""


def _served(answer: Answer | None, version: int) -> str:
    """The address of C{version} DNS serves for a user now ("" for none)."""
    return " ".join(str(a) for a in answer.of_version(version)) if answer is not None else ""


#: C{dyndns status}: ipv4/ipv6 are what DNS serves now (the offline
#: addresses for an offline user, nothing for a disabled one).
STATUS_COLUMNS: dict[str, Callable[[User, HostState | None, Answer | None], str]] = {
    "user": lambda u, s, a: u.id,
    "state": lambda u, s, a: "disabled" if u.disabled else (s.status if s else "never"),
    "ipv4": lambda u, s, a: "" if u.disabled else _served(a, 4),
    "ipv6": lambda u, s, a: "" if u.disabled else _served(a, 6),
    "updated": lambda u, s, a: format_time(s.updated_at, precise=False) or "" if s else "",
    "method": lambda u, s, a: (s.method or "") if s else "",
}
_HEADINGS = {"updated": "last update"}


def _password(value: str | None, prompt: bool = True) -> str | None:
    """C{-} reads the password from standard input (one line)."""
    if value == "-":
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if value is None and prompt and sys.stdin.isatty():
        return getpass.getpass("password: ")
    return value


def _offline_ips(values: Sequence[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {"offline_ipv4": None, "offline_ipv6": None}
    for value in values:
        address = parse_address(value, "offline_ip")
        key = f"offline_ipv{address.version}"
        if fields[key] is not None:
            raise ValidationError("offline_ip", f"more than one IPv{address.version} address")
        fields[key] = address
    return fields


def _tsig_fields(args: argparse.Namespace, user: User | None) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if getattr(args, "no_tsig", False):
        return {"tsig_secret": None, "tsig_from_password": False}
    if args.tsig_secret is not None and args.tsig_from_password:
        raise ValidationError("tsig_secret", "give --tsig-secret or --tsig-from-password, not both")
    if args.tsig_secret is not None:
        fields.update(tsig_secret=args.tsig_secret, tsig_from_password=False)
    if args.tsig_from_password:
        fields.update(tsig_secret=None, tsig_from_password=True)
    if args.tsig_algorithm is not None:
        fields["tsig_algorithm"] = args.tsig_algorithm
    return fields


def _secrets(password: str, keep_md5: bool) -> dict[str, Any]:
    try:
        return {
            "password_hash": hash_password(password),
            "md5_verifier": md5_verifier(password) if keep_md5 else None,
        }
    except PasswordError as e:
        raise ValidationError("password", str(e).split(": ", 1)[-1]) from None


async def cmd_user_add(service: DynDNSService, args: argparse.Namespace) -> None:
    password = _password(args.password)
    if not password:
        raise ValidationError("password", "required (--password PW, or - to read stdin)")
    keep_md5 = args.gnudip or args.tsig_from_password
    user = User(
        id=args.id,
        hostnames=args.host,
        notes=args.notes or "",
        disabled=args.disabled,
        **_offline_ips(args.offline_ip),
        **_tsig_fields(args, None),
        **_secrets(password, keep_md5),
    )
    await service.add_user(user)
    print(f"added {user.id} ({service.registry.main_name(user.id)})")


async def cmd_user_edit(service: DynDNSService, args: argparse.Namespace) -> None:
    user = _get_user(service, args.id)
    changes: dict[str, Any] = {}
    if args.host is not None:
        changes["hostnames"] = args.host
    if args.add_host or args.remove_host:
        names = list(changes.get("hostnames", user.hostnames))
        names += args.add_host
        removing = {n.lower().rstrip(".") for n in args.remove_host}
        missing = removing - {n.lower() for n in names}
        if missing:
            raise ValidationError("hostnames", f"{sorted(missing)[0]!r} is not one of the user's names")
        changes["hostnames"] = [n for n in names if n.lower() not in removing]
    if args.offline_ip is not None:
        changes.update(_offline_ips(args.offline_ip))
    if args.notes is not None:
        changes["notes"] = args.notes
    changes.update(_tsig_fields(args, user))
    password = _password(args.password, prompt=False)
    wants_md5 = changes.get("tsig_from_password", user.tsig_from_password)
    if args.gnudip is not None:
        wants_md5 = wants_md5 or args.gnudip
    else:
        wants_md5 = wants_md5 or user.md5_verifier is not None
    if password is not None:
        changes.update(_secrets(password, wants_md5))
    elif wants_md5 and user.md5_verifier is None:
        raise ValidationError("password", "GnuDIP and password-derived TSIG need the password: give --password")
    elif not wants_md5:
        changes["md5_verifier"] = None
    if not changes:
        raise CommandError("nothing to change")
    await service.edit_user(args.id, **changes)
    print(f"changed {args.id}")


def _get_user(service: DynDNSService, user_id: str) -> User:
    user = service.registry.users.get(user_id)
    if user is None:
        raise CommandError(f"no user {user_id!r}")
    return user


async def cmd_user_list(service: DynDNSService, args: argparse.Namespace) -> None:
    for user_id in sorted(service.registry.users):
        user = service.registry.users[user_id]
        flags = " (disabled)" if user.disabled else ""
        print(f"{user_id}{flags}")


async def cmd_user_show(service: DynDNSService, args: argparse.Namespace) -> None:
    user = _get_user(service, args.id)
    state = service.registry.states.get(args.id)
    data = user_to_dict(user, state)
    if args.json:
        print(json.dumps(data, indent=2))
        return
    data["names"] = list(service.registry.names_of(user.id))
    for key in ("password_hash", "md5_verifier", "tsig_secret"):
        data[key] = "(set)" if data[key] else "(none)"
    state_data = data.pop("state", None) or {}
    for key, value in list(data.items()) + [(f"state.{k}", v) for k, v in state_data.items()]:
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key}: {'' if value is None else value}")


async def cmd_user_remove(service: DynDNSService, args: argparse.Namespace) -> None:
    _get_user(service, args.id)
    await service.remove_user(args.id)
    print(f"removed {args.id}")


async def cmd_user_enable(service: DynDNSService, args: argparse.Namespace) -> None:
    _get_user(service, args.id)
    await service.set_disabled(args.id, args.command == "disable")
    print(f"{args.command}d {args.id}")


def _print_result(result: Any) -> None:
    if not result.ok:
        raise CommandError(f"{result.status.value}: {result.message}")
    addresses = " ".join(str(a) for a in result.state.addresses())
    print(f"{result.status.value} {addresses}".rstrip())


async def cmd_user_offline(service: DynDNSService, args: argparse.Namespace) -> None:
    _get_user(service, args.id)
    result = await service.set_offline(args.id, method=Method.CLI)
    if not result.ok:
        raise CommandError(f"{result.status.value}: {result.message}")
    answer = service.registry.answer_for_user(args.id)
    served = " ".join(str(a) for a in answer.addresses) if answer is not None else ""
    print(f"{args.id} is offline: DNS serves {served or 'no address'}")


async def cmd_user_update(service: DynDNSService, args: argparse.Namespace) -> None:
    _get_user(service, args.id)
    addresses = [parse_address(a) for a in args.address]
    ttl = validate_ttl(args.ttl) if args.ttl is not None else None
    _print_result(await service.update(args.id, addresses, ttl, method=Method.CLI))


def _sorted_rows(rows: list[dict[str, str]], column: str, reverse: bool) -> list[dict[str, str]]:
    """Sort by C{column} (addresses numerically); empty values always last."""

    def key(row: dict[str, str]) -> tuple[Any, ...]:
        value = row[column]
        if column in ("ipv4", "ipv6"):
            return (parse_address(value).packed, row["user"])
        return (value, row["user"])

    filled = sorted((r for r in rows if r[column]), key=key, reverse=reverse)
    empty = sorted((r for r in rows if not r[column]), key=lambda r: r["user"])
    return filled + empty


async def cmd_status(service: DynDNSService, args: argparse.Namespace) -> None:
    rows = []
    registry = service.registry
    for user in registry.users.values():
        state, answer = registry.states.get(user.id), registry.answer_for_user(user.id)
        rows.append({key: get(user, state, answer) for key, get in STATUS_COLUMNS.items()})
    rows = _sorted_rows(rows, args.sort, args.reverse)
    if args.json:
        now = service.clock.seconds()

        def txt(user_id: str) -> list[dict[str, Any]]:
            state = registry.states.get(user_id)
            return txt_entries(state.txt, now, precise=False) if state is not None and state.txt else []

        print(json.dumps([{**row, "txt": txt(row["user"])} for row in rows], indent=2))
        return
    headings = {key: _HEADINGS.get(key, key) for key in STATUS_COLUMNS}
    widths = {k: max([len(headings[k])] + [len(r[k]) for r in rows]) for k in STATUS_COLUMNS}
    for row in [headings] + rows:
        print("  ".join(row[k].ljust(widths[k]) for k in STATUS_COLUMNS).rstrip())


def _challenge_base(service: DynDNSService, user_id: str, name: str) -> str:
    """The name C{name} (the user's name, or its C{_acme-challenge} name) sets challenge values for."""
    base = service.registry.challenge_base(user_id, name)
    if base is None:
        names = ", ".join(challenge_name(b) for b in service.registry.challenge_bases(user_id))
        raise CommandError(f"{name} is not a name {user_id} may hold ACME challenge values at ({names})")
    return base


async def cmd_txt_list(service: DynDNSService, args: argparse.Namespace) -> None:
    _get_user(service, args.id)
    state = service.registry.states.get(args.id)
    entries = txt_entries(state.txt if state is not None else (), service.clock.seconds(), precise=False)
    if args.name is not None:
        owner = challenge_name(_challenge_base(service, args.id, args.name))
        entries = [e for e in entries if e["name"] == owner]
    if args.json:
        print(json.dumps(entries, indent=2))
        return
    width = max((len(e["name"]) for e in entries), default=0)
    for e in entries:
        print(f"{e['name'].ljust(width)}  {e['value']}  {e['expires']}")


async def _edit_txt(service: DynDNSService, user_id: str, edit: TXTEdit) -> tuple[str, tuple[TXTValue, ...]]:
    """Make the edit: its status (good, nochg) and the user's values after it."""
    result = await service.edit_txt(user_id, [edit], method=Method.CLI)
    if not result.ok:
        raise CommandError(f"{result.status.value}: {result.message}")
    return result.status.value, result.state.txt if result.state is not None else ()


async def cmd_txt_set(service: DynDNSService, args: argparse.Namespace) -> None:
    _get_user(service, args.id)
    base = _challenge_base(service, args.id, args.name)
    value = validate_value(args.value, "value")
    status, values = await _edit_txt(service, args.id, TXTEdit(Op.ADD, base, value))
    expires = max((e for n, v, e in values if (n, v) == (base, value)), default=None)
    print(f"{status} {challenge_name(base)} {value} (expires {format_time(expires, precise=False)})")


async def cmd_txt_clear(service: DynDNSService, args: argparse.Namespace) -> None:
    _get_user(service, args.id)
    base = _challenge_base(service, args.id, args.name)
    if args.value is None:
        edit = TXTEdit(Op.CLEAR, base)
    else:
        edit = TXTEdit(Op.REMOVE, base, validate_value(args.value, "value"))
    status, values = await _edit_txt(service, args.id, edit)
    left = len(values_at(values, base))
    print(f"{status} {challenge_name(base)}: {left} value{'' if left == 1 else 's'} left")


async def cmd_acme_key_add(service: DynDNSService, args: argparse.Namespace) -> None:
    _get_user(service, args.id)
    key, secret = await service.acme_keys.add(args.id, args.label)
    if args.json:
        print(json.dumps({**key_entry(key, precise=False), "secret": secret}, indent=2))
    else:
        print(f"added ACME key {key.key_id} for {args.id}")
        print(f"secret: {secret}")
    print("dyndns: the secret is shown only now (the store keeps its SHA-256)", file=sys.stderr)


async def cmd_acme_key_list(service: DynDNSService, args: argparse.Namespace) -> None:
    _get_user(service, args.id)
    keys = [key_entry(key, precise=False) for key in await service.acme_keys.of(args.id)]
    if args.json:
        print(json.dumps(keys, indent=2))
        return
    for key in keys:
        print(f"{key['key_id']}  {key['created']}  {key['label']}".rstrip())


async def cmd_acme_key_revoke(service: DynDNSService, args: argparse.Namespace) -> None:
    _get_user(service, args.id)
    if not await service.acme_keys.revoke(args.id, args.key_id):
        raise CommandError(f"{args.id} has no ACME key {args.key_id!r}")
    print(f"revoked ACME key {args.key_id} of {args.id}")


async def cmd_export(service: DynDNSService, args: argparse.Namespace) -> None:
    document = export_document(service.registry.users.values(), service.registry.states)
    text = json.dumps(document, indent=2) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        print(f"exported {len(document['users'])} users to {args.output}", file=sys.stderr)


async def cmd_import(service: DynDNSService, args: argparse.Namespace) -> None:
    # A document of a million users is millions of new objects: the
    # collector's ever longer full passes would cost ~10% of the import, and
    # nothing here makes cyclic garbage worth collecting before the exit.
    collecting = gc.isenabled()
    gc.disable()
    try:
        await _import(service, args)
    finally:
        if collecting:
            gc.enable()


async def _import(service: DynDNSService, args: argparse.Namespace) -> None:
    """Read, validate and import the document (all or nothing)."""
    try:
        with sys.stdin if args.file == "-" else open(args.file) as f:  # noqa: ASYNC230 (a local file, read once by the CLI)
            data = json.load(f)
    except OSError as e:
        raise CommandError(f"{args.file}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise CommandError(f"{args.file}: not JSON: {e}") from None
    try:
        users, states = parse_document(data)
    except ValidationError as e:
        raise CommandError(f"{args.file}: {e}") from None
    await service.import_users(users, states)
    print(f"imported {len(users)} users")


async def cmd_import_sdp(service: DynDNSService, args: argparse.Namespace) -> None:
    """Users and states from the Simple DNS Plus plug-in's XML (see sdp_import)."""
    from dyndns_plugin import sdp_import

    settings = args.settings
    imported = await sdp_import.import_sdp(service, args.config_xml, args.state_xml, settings, args.replace)
    paths = [args.config_xml] + ([args.state_xml] if args.state_xml else [])
    print("\n".join(sdp_import.summary(imported, paths)))


def method_urls(settings: Settings) -> list[tuple[str, str]]:
    """
    The full URL of every enabled HTTP method, with placeholders, like the
    original's "Show full URLs" dialog.
    """
    http = settings.http
    if http is None:
        return []
    from urllib.parse import urlsplit

    parts = urlsplit(http.base_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    base = origin + http.base_path
    urls = []
    if http.url_auth:
        urls.append(
            ("HTTP, URL authentication", f"{base}ddns?user=<user-id>&pw=<password>&ip=<ip>&ttl=<ttl>&offline=<Y|N>")
        )
    if http.basic_auth:
        urls.append(
            (
                "HTTP, Basic authentication",
                f"{base}ddns?ip=<ip>&ttl=<ttl>&offline=<Y|N>  (user id and password by HTTP Basic auth)",
            )
        )
    if http.nic_update:
        urls.append(
            (
                "HTTP, Dyn.com format",
                f"{origin}/nic/update?hostname=<host-name>&myip=<ip>&offline=<YES|NO>  (HTTP Basic auth)",
            )
        )
    if http.remote_ip:
        urls.append(("Remote IP detection", f"{base}myip"))
        urls.append(("Remote IP detection, checkip.dyndns.org format", f"{base}checkip"))
    return urls


def cmd_urls(args: argparse.Namespace, settings: Settings) -> int:
    urls = method_urls(settings)
    if not urls:
        print("no HTTP update method is configured (add an [http] section)")
        return 0
    width = max(len(label) for label, _ in urls)
    for label, url in urls:
        print(f"{label.ljust(width)}  {url}")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    password = _password(args.password)
    if not password:
        raise CommandError("password: required")
    try:
        print(hash_password(password))
    except PasswordError as e:
        raise CommandError(str(e)) from None
    return 0


def cmd_make_token(args: argparse.Namespace) -> int:
    """A new random admin bearer token and the line for [admin] tokens."""
    import hashlib
    import secrets

    token = secrets.token_urlsafe(32)
    print(f"token:  {token}")
    print(f'config: tokens = ["sha256:{hashlib.sha256(token.encode()).hexdigest()}"]')
    return 0


def _sqlite_store_path(settings: Settings, verb: str) -> str:
    if settings.store_backend != "sqlite":
        raise CommandError(f'store.backend is "{settings.store_backend}": only the sqlite store can {verb}')
    return settings.store_path


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    """A consistent copy of the SQLite store, safe while the server runs (see store.backup)."""
    from dyndns_plugin.store import backup

    try:
        info = backup.backup(_sqlite_store_path(settings, "be backed up"), args.path, force=args.force)
    except (CommandError, StoreError) as e:
        print(f"dyndns: {e}", file=sys.stderr)
        return 1
    print(f"backed up {info.users} users to {info.path} (schema version {info.schema_version}, {info.size} bytes)")
    return 0


def _confirmed(question: str) -> bool:
    """Ask on the terminal; without one, only C{--yes} confirms."""
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    """
    Replace the store's users with a backup's, in one transaction; a
    running server serves them before the command returns (the control
    socket's sync runs its poll, which sees the restore: see store.backup).
    """
    from dyndns_plugin.store import backup

    try:
        store_path = _sqlite_store_path(settings, "be restored")
        if not args.yes and not _confirmed(f"replace every user of {store_path} with those of {args.path}?"):
            raise CommandError(f"restore replaces every user of {store_path}: confirm with --yes; nothing restored")
        info = backup.restore(store_path, args.path)
    except (CommandError, StoreError) as e:
        print(f"dyndns: {e}", file=sys.stderr)
        return 1
    migrated = f", migrated to {SCHEMA_VERSION}" if info.schema_version < SCHEMA_VERSION else ""
    print(
        f"restored {info.users} users from {args.path} (schema version {info.schema_version}{migrated});"
        f" they replace the {info.replaced} users the store had"
    )
    make_live(settings)  # a running server serves them before we return
    return 0


def _user_options(parser: argparse.ArgumentParser, editing: bool) -> None:
    many: dict[str, Any] = {"action": "append", "default": None if editing else []}
    parser.add_argument("--password", help="the password; - reads it from standard input")
    parser.add_argument(
        "--host",
        metavar="NAME",
        **many,
        help="an additional host name (repeat for more; *.NAME for a wildcard)"
        + ("; replaces the list" if editing else ""),
    )
    parser.add_argument("--offline-ip", metavar="IP", **many, help="address served while offline (one IPv4, one IPv6)")
    parser.add_argument("--notes", help="free text, e.g. for DNS rules")
    parser.add_argument("--tsig-secret", metavar="B64", help="explicit base64 TSIG secret")
    parser.add_argument("--tsig-algorithm", choices=TSIG_ALGORITHMS, help="TSIG algorithm (default hmac-md5)")
    parser.add_argument(
        "--tsig-from-password", action="store_true", help="TSIG secret = base64(MD5(password)), like the original"
    )
    if editing:
        parser.add_argument("--add-host", metavar="NAME", action="append", default=[])
        parser.add_argument("--remove-host", metavar="NAME", action="append", default=[])
        parser.add_argument("--no-tsig", action="store_true", help="remove the TSIG key")
        gnudip = parser.add_mutually_exclusive_group()
        gnudip.add_argument(
            "--gnudip",
            dest="gnudip",
            action="store_true",
            default=None,
            help="keep the MD5 verifier GnuDIP needs (needs --password)",
        )
        gnudip.add_argument("--no-gnudip", dest="gnudip", action="store_false", help="drop the MD5 verifier")
    else:
        parser.add_argument(
            "--gnudip", action="store_true", help="keep the MD5 verifier GnuDIP needs (password-equivalent)"
        )
        parser.add_argument("--disabled", action="store_true", help="create disabled")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dyndns",
        description="Manage the users of a dyndns_plugin service. Changes are live: a server running on the same "
        "store serves them before the command returns.",
    )
    parser.add_argument(
        "--config",
        "-c",
        default=os.environ.get("DYNDNS_CONFIG"),
        help="the TOML configuration file (default: $DYNDNS_CONFIG, else the embedded default and its state directory)",
    )
    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")

    user = commands.add_parser("user", help="add, change and remove users")
    user_commands = user.add_subparsers(dest="command", required=True, metavar="ACTION")
    add = user_commands.add_parser("add", help="add a user")
    add.add_argument("id", type=normalize_user_id)
    _user_options(add, editing=False)
    add.set_defaults(run=cmd_user_add, live=True, one_user=True)
    edit = user_commands.add_parser("edit", help="change a user")
    edit.add_argument("id", type=normalize_user_id)
    _user_options(edit, editing=True)
    edit.set_defaults(run=cmd_user_edit, live=True, one_user=True)
    user_commands.add_parser("list", help="list user ids").set_defaults(run=cmd_user_list)
    show = user_commands.add_parser("show", help="show one user")
    show.add_argument("id", type=normalize_user_id)
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=cmd_user_show, one_user=True)
    for name, run, text in (
        ("remove", cmd_user_remove, "delete a user"),
        ("enable", cmd_user_enable, "let a user update and resolve again"),
        ("disable", cmd_user_enable, "stop a user's updates and answers"),
        ("offline", cmd_user_offline, "set a user offline"),
    ):
        sub = user_commands.add_parser(name, help=text)
        sub.add_argument("id", type=normalize_user_id)
        sub.set_defaults(run=run, live=True, one_user=True)
    update = user_commands.add_parser("update", help="set a user's addresses by hand")
    update.add_argument("id", type=normalize_user_id)
    update.add_argument("address", nargs="+", help="one IPv4 and/or one IPv6 address")
    update.add_argument("--ttl", type=int)
    update.set_defaults(run=cmd_user_update, live=True, one_user=True)

    _acme_commands(commands)

    status = commands.add_parser("status", help="every user's state and addresses")
    status.add_argument("--json", action="store_true")
    status.add_argument("--sort", choices=list(STATUS_COLUMNS), default="user")
    status.add_argument("--reverse", action="store_true")
    status.set_defaults(run=cmd_status)

    export = commands.add_parser("export", help="write all users as one JSON document")
    export.add_argument("--output", "-o", metavar="FILE")
    export.set_defaults(run=cmd_export)
    import_ = commands.add_parser("import", help="add or replace users from a JSON document")
    import_.add_argument("file", help="the document (- for standard input)")
    import_.set_defaults(run=cmd_import, live=True)
    import_sdp = commands.add_parser(
        "import-sdp", help="import users and states from the Simple DNS Plus DynDNS plug-in"
    )
    import_sdp.add_argument("config_xml", metavar="CONFIG.xml", help="the plug-in's configuration")
    import_sdp.add_argument("state_xml", metavar="STATE.xml", nargs="?", help="the plug-in's state (current addresses)")
    import_sdp.add_argument("--replace", action="store_true", help="replace users that exist already (else: an error)")
    import_sdp.set_defaults(run=cmd_import_sdp, live=True)

    backup_ = commands.add_parser("backup", help="copy the SQLite store to a file (safe while the server runs)")
    backup_.add_argument("path", metavar="PATH", help="the backup file to write")
    backup_.add_argument("--force", action="store_true", help="replace PATH if it exists")
    backup_.set_defaults(run=None, settings_only=cmd_backup)
    restore = commands.add_parser(
        "restore", help="replace the store's users with a backup's (a running server serves them at its next poll)"
    )
    restore.add_argument("path", metavar="PATH", help="a file written by dyndns backup")
    restore.add_argument(
        "--yes", action="store_true", help="do not ask (required when standard input is not a terminal)"
    )
    restore.set_defaults(run=None, settings_only=cmd_restore)

    migrate = commands.add_parser(
        "migrate-store",
        help="copy a whole installation (users, states, keys, serials, journals) into an empty PostgreSQL store",
    )
    migrate.add_argument("--from", dest="source", required=True, metavar="sqlite:PATH", help="the store to copy")
    migrate.add_argument(
        "--to", dest="target", required=True, metavar="postgresql:DSN", help="the empty PostgreSQL store to fill"
    )
    migrate.set_defaults(run=None, offline_command=cmd_migrate_store)

    add_zone_commands(commands)
    urls = commands.add_parser("urls", help="print the full URL of every enabled HTTP method")
    urls.set_defaults(run=None, settings_only=cmd_urls)

    hashpw = commands.add_parser("hash-password", help="print an scrypt hash of a password")
    hashpw.add_argument("--password", help="the password; - reads standard input")
    hashpw.set_defaults(run=None)
    token = commands.add_parser("make-token", help="print a new admin bearer token and its [admin] tokens line")
    token.set_defaults(run=None, offline_command=cmd_make_token)
    init = commands.add_parser("init", help="write a commented configuration file (every key and its default)")
    init.add_argument("path", nargs="?", default="dyndns.toml", help="where (default dyndns.toml; - for stdout)")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(run=None, offline_command=cmd_init)
    return parser


def _acme_commands(commands: Any) -> None:
    """C{dyndns txt ...} and C{dyndns acme-key ...}: one user's ACME challenge values and scoped keys."""
    name_help = "the user's name the challenge is for (alice.dyn.example) or its _acme-challenge name"
    txt = commands.add_parser("txt", help="a user's ACME DNS-01 challenge values (_acme-challenge TXT records)")
    txt_commands = txt.add_subparsers(dest="command", required=True, metavar="ACTION")
    listing = txt_commands.add_parser("list", help="the values a user holds: name, value, expiry (UTC)")
    listing.add_argument("id", metavar="USER", type=normalize_user_id)
    listing.add_argument("name", metavar="NAME", nargs="?", help="only at this name (" + name_help + ")")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_txt_list, one_user=True)
    set_ = txt_commands.add_parser("set", help="add a value (again: a fresh lifetime)")
    set_.add_argument("id", metavar="USER", type=normalize_user_id)
    set_.add_argument("name", metavar="NAME", help=name_help)
    set_.add_argument("value", metavar="VALUE", help="the value (one that starts with - after --)")
    set_.set_defaults(run=cmd_txt_set, live=True, one_user=True)
    clear = txt_commands.add_parser("clear", help="remove one value, or every value at the name")
    clear.add_argument("id", metavar="USER", type=normalize_user_id)
    clear.add_argument("name", metavar="NAME", help=name_help)
    clear.add_argument("value", metavar="VALUE", nargs="?", help="only this value (default: all at NAME)")
    clear.set_defaults(run=cmd_txt_clear, live=True, one_user=True)

    key = commands.add_parser("acme-key", help="a user's scoped ACME keys (they set challenge values only)")
    key_commands = key.add_subparsers(dest="command", required=True, metavar="ACTION")
    add = key_commands.add_parser("add", help="make a key and print its secret, once")
    add.add_argument("id", metavar="USER", type=normalize_user_id)
    add.add_argument("--label", metavar="TEXT", default="", help="what the key is for")
    add.add_argument("--json", action="store_true")
    add.set_defaults(run=cmd_acme_key_add, live=True, one_user=True)
    listing = key_commands.add_parser("list", help="a user's keys: id, created (UTC), label")
    listing.add_argument("id", metavar="USER", type=normalize_user_id)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=cmd_acme_key_list, one_user=True)
    revoke = key_commands.add_parser("revoke", help="revoke a key")
    revoke.add_argument("id", metavar="USER", type=normalize_user_id)
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(run=cmd_acme_key_revoke, live=True, one_user=True)


def _run_with_service(settings: Settings, run: Callable[..., Any], args: argparse.Namespace) -> int:
    outcome: dict[str, int] = {}

    async def main(reactor: Any) -> None:
        store = make_store(settings, reactor)
        service = make_dyndns_service(settings, store, reactor)
        service._poll_interval = None  # a one-shot command does not watch the store
        # A command about one user loads that user only (user add at
        # 1,000,000 users: ~10 s of CPU beside the running server, otherwise).
        only = [args.id] if getattr(args, "one_user", False) else None
        try:
            await service.start(only_users=only)
        except StoreError as e:
            raise CommandError(str(e)) from None
        try:
            await run(service, args)
            outcome["status"] = 0
        finally:
            await service.store.close()

    def failed(failure: Any) -> None:
        error = failure.value
        if isinstance(error, (CommandError, ValidationError, StoreError, ValueError)):
            print(f"dyndns: {error}", file=sys.stderr)
            outcome["status"] = 1
        else:
            failure.printTraceback(file=sys.stderr)
            outcome["status"] = 1

    def start(reactor: Any) -> defer.Deferred[None]:
        return defer.ensureDeferred(main(reactor)).addErrback(failed)

    try:
        task.react(start)
    except SystemExit:
        pass
    return outcome.get("status", 1)


def cmd_migrate_store(args: argparse.Namespace) -> int:
    """
    L{dyndns_plugin.store.migrate}: everything from one store into an empty
    PostgreSQL one, in one transaction. Stop the server on the source first:
    what it writes after the copy read it would not move.
    """
    from dyndns_plugin.store.migrate import migrate_store, open_location

    outcome: dict[str, int] = {}

    async def main(reactor: Any) -> None:
        try:
            source = open_location(args.source, reactor)
            target = open_location(args.target, reactor)
        except StoreError as e:
            raise CommandError(str(e)) from None
        await source.open()
        try:
            await target.open()
            try:
                copied = await migrate_store(source, target)
            finally:
                await target.close()
        finally:
            await source.close()
        print(f"copied {copied.summary()}")
        outcome["status"] = 0

    def failed(failure: Any) -> None:
        if failure.check(CommandError, StoreError):
            print(f"dyndns: {failure.value}; nothing copied", file=sys.stderr)
        else:
            failure.printTraceback(file=sys.stderr)
        outcome["status"] = 1

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)).addErrback(failed))
    except SystemExit:
        pass
    return outcome.get("status", 1)


def cmd_init(args: argparse.Namespace) -> int:
    """Write the commented configuration (every key, its default, why)."""
    from dyndns_plugin.config_schema import init_config

    text = init_config()
    if args.path == "-":
        sys.stdout.write(text)
        return 0
    try:
        with open(args.path, "w" if args.force else "x") as f:
            f.write(text)
    except FileExistsError:
        raise CommandError(f"{args.path} exists (--force replaces it)") from None
    except OSError as e:
        raise CommandError(f"{args.path}: {e.strerror}") from None
    print(f"wrote {args.path}: edit it, then run twistd -n dyndns --config {args.path}")
    return 0


def make_live(settings: Settings) -> None:
    """
    Have the server running on this store (if any) serve what the command
    just wrote before the command returns (L{dyndns_plugin.control}).
    """
    from dyndns_plugin.control import NoServer, request_sync

    if settings.store_backend != "sqlite":
        return
    try:
        request_sync(settings.store_path)
    except NoServer:
        pass  # nothing runs on this store: the next server start loads it
    except OSError as e:
        print(
            f"dyndns: the change is stored, but the running server did not confirm it ({e}); "
            f"it serves it within service.poll_interval ({settings.poll_interval:g} s)",
            file=sys.stderr,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    import argcomplete

    argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    if args.run is None and getattr(args, "settings_only", None) is None:
        try:
            return int(getattr(args, "offline_command", cmd_hash_password)(args))
        except CommandError as e:
            print(f"dyndns: {e}", file=sys.stderr)
            return 1
    try:
        settings = load_settings(args.config) if args.config else default_settings()
    except ConfigError as e:
        print(f"dyndns: {e}", file=sys.stderr)
        return 1
    if getattr(args, "settings_only", None) is not None:
        return int(args.settings_only(args, settings))
    args.settings = settings
    status = _run_with_service(settings, args.run, args)
    if status == 0 and getattr(args, "live", False):
        make_live(settings)
    return status


if __name__ == "__main__":
    sys.exit(main())
