"""
The benchmark users and their secrets, and ONE store builder for all of them.

A user is a dict: C{id}, and any of C{password} (an scrypt hash is stored),
C{md5} (the GnuDIP MD5 verifier of the password), C{tsig} (an hmac-sha256
key named C{<id>.<suffix>.}), C{ipv4} (an initial address). The store is
written with C{SQLiteUserStore.import_users} in a child process
(C{python -m bench.harness.users SPEC.json STORE}), since it runs a reactor.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import time
from typing import Any

from twisted.internet import defer, task

from bench.harness.procs import BenchError, run_checked
from dyndns_plugin import HostState, SQLiteUserStore, User
from dyndns_plugin.passwords import hash_password, md5_verifier

SUFFIX = "dyn.example.com"
TTL = 30
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def password_of(user_id: str) -> str:
    return f"bench-{user_id}-pw"


def basic_auth(user_id: str) -> str:
    """The value of an C{Authorization: Basic} header for C{user_id}."""
    return "Basic " + base64.b64encode(f"{user_id}:{password_of(user_id)}".encode()).decode()


def tsig_secret_of(user_id: str) -> str:
    """Base64 of 32 bytes, fixed so that runs repeat."""
    return base64.b64encode(hashlib.sha256(f"tsig-{user_id}".encode()).digest()).decode()


def addresses_of(i: int) -> tuple[str, str, str]:
    """User C{i}'s two benchmark addresses (unique below 65536) and its initial one (below 2**22)."""
    hi, lo = (i >> 8) & 255, i & 255
    return f"10.1.{hi}.{lo}", f"10.2.{hi}.{lo}", f"10.{3 + (i >> 16)}.{hi}.{lo}"


def challenge_of(i: int) -> str:
    """User C{i}'s ACME DNS-01 challenge name (RFC 8555 8.4): C{_acme-challenge.user<i>.<suffix>}."""
    return f"_acme-challenge.user{i}.{SUFFIX}"


def token_of(seed: str) -> str:
    """A challenge value as ACME clients send them: 43 characters of unpadded base64url (a SHA-256 digest)."""
    return base64.urlsafe_b64encode(hashlib.sha256(seed.encode()).digest()).decode().rstrip("=")


def tokens_of(i: int) -> tuple[str, str]:
    """User C{i}'s two benchmark challenge values."""
    return token_of(f"user{i}-a"), token_of(f"user{i}-b")


def initial_answer(i: int) -> tuple[str, str]:
    """User C{i}'s name and initial address: what a server answers once its store is loaded."""
    return f"user{i}.{SUFFIX}", addresses_of(i)[2]


def users(count: int, prefix: str = "user", *, initial: bool = True, **secrets: bool) -> list[dict[str, Any]]:
    """C{<prefix>1..N} with C{secrets} (C{password}, C{md5}, C{tsig}), initial address C{addresses_of(i)[2]}."""
    ipv4 = (lambda i: {"ipv4": addresses_of(i)[2]}) if initial else (lambda i: {})
    return [{"id": f"{prefix}{i}", **secrets, **ipv4(i)} for i in range(1, count + 1)]


def build_store(
    tmp: str, specs: list[dict[str, Any]], name: str = "store", hash_cost: int = 15
) -> tuple[str, dict[str, Any]]:
    """Write C{specs} into a new SQLite store C{tmp/<name>.sqlite}: its path and the builder's timings."""
    path, spec_file = os.path.join(tmp, f"{name}.sqlite"), os.path.join(tmp, f"{name}.users.json")
    with open(spec_file, "w") as f:
        json.dump({"hash_cost": hash_cost, "users": specs}, f)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), REPO) if p)}
    argv = [sys.executable, "-m", "bench.harness.users", spec_file, path]
    out = run_checked(argv, 600, "building the store", env=env, cwd=tmp)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"the store builder printed nothing:\n{out}")
    return path, dict(json.loads(lines[-1]))


def read_generation(store: str) -> int:
    """The store's commit counter (group commit: acknowledged updates per commit)."""
    return int(read_states(store, integrity=False)[1])


def read_states(store: str, integrity: bool = True) -> tuple[str, int, dict[str, tuple]]:
    """(integrity_check, generation, user id -> (ipv4, ipv6, offline, method, txt)), read-only."""
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)) as conn:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0] if integrity else "-"
        (gen,) = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        rows = {
            r[0]: tuple(r[1:]) for r in conn.execute("SELECT user_id, ipv4, ipv6, offline, method, txt FROM states")
        }
    return str(check), int(gen), rows


def challenge_values(txt: str | None, user_id: str) -> list[str]:
    """The ACME challenge values a state's C{txt} column holds for the user's own name, oldest first."""
    return [value for name, value, _expires in json.loads(txt or "[]") if name == f"{user_id}.{SUFFIX}"]


def check_final(
    store: str, expected: dict[str, tuple[set[str], str | None]], method: str | None, txt: bool = False
) -> dict[str, Any]:
    """
    Every user's final state in the file against what its client saw:
    C{expected} maps a user id to (addresses it may have, the exact one it
    must have or None when a request was in flight at the end). With
    C{txt}: the one challenge value at the user's own name instead of its
    address, which must be its initial one (a user C{user<i>}).
    """
    integrity, generation, rows = read_states(store)
    problems = [] if integrity == "ok" else [f"integrity_check: {integrity}"]
    exact = loose = 0
    for user_id, (allowed, last) in expected.items():
        row = rows.get(user_id)
        value = row and (row[0] if not txt else "/".join(challenge_values(row[4], user_id)))
        initial = row and (not txt or row[0] == addresses_of(int(user_id.removeprefix("user")))[2])
        if row is None or value not in allowed or not initial or row[1] is not None or row[2] or row[3] != method:
            problems.append(f"{user_id}: state {row}, expected one of {sorted(allowed)} via {method}")
        elif last is None:
            loose += 1
        elif value != last:
            problems.append(f"{user_id}: store has {value}, last acknowledged {last}")
        else:
            exact += 1
    return {"integrity": integrity, "generation": generation, "exact": exact, "loose": loose, "problems": problems}


def _build(spec_file: str, path: str) -> None:
    with open(spec_file) as f:
        spec = json.load(f)
    specs, cost = spec["users"], spec["hash_cost"]
    started = time.monotonic()
    # hashlib.scrypt releases the GIL: hash on every CPU; no future per user without a password (1M: ~20 s).
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        passwords = [password_of(s["id"]) for s in specs if s.get("password")]
        hashes = iter(list(pool.map(lambda p: hash_password(p, log2_n=cost), passwords)))
    hashed = time.monotonic()
    records = []
    for s in specs:
        fields: dict[str, Any] = {"password_hash": next(hashes)} if s.get("password") else {}
        if s.get("md5"):
            fields["md5_verifier"] = md5_verifier(password_of(s["id"]))
        if s.get("tsig"):
            fields.update(tsig_secret=tsig_secret_of(s["id"]), tsig_algorithm="hmac-sha256")
        records.append(User(id=s["id"], **fields))
    states = [HostState(s["id"], ipv4=s["ipv4"], ttl=TTL, updated_at=0.0) for s in specs if s.get("ipv4")]

    async def write(reactor: Any) -> None:
        store = SQLiteUserStore(path, reactor)
        await store.open()
        try:
            if records:
                await store.import_users(records, states)
        finally:
            await store.close()
        took = {"hash_s": round(hashed - started, 3), "import_s": round(time.monotonic() - hashed, 3)}
        print(json.dumps({"users": len(records), "hash_cost": cost, **took}), flush=True)

    task.react(lambda reactor: defer.ensureDeferred(write(reactor)))


if __name__ == "__main__":
    _build(sys.argv[1], sys.argv[2])
