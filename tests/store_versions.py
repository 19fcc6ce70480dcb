"""
SQLite store files as earlier releases left them, for the migration tests:
L{build_store_at_version} applies C{MIGRATIONS[:n]} and fills the tables of
version C{n} with rows written the way that version wrote them (users with
names, secrets and offline addresses, online and offline states, a removal
tombstone, zone serials and journal steps, TSIG replay records, host-zone
RRsets, ACME challenge values and scoped keys); the
C{expected_*} functions say what the current code must read from such a
file.
"""

from __future__ import annotations

import os
import sqlite3

from dyndns_plugin.model import HostState, User
from dyndns_plugin.store import RR, AcmeKey, JournalStep, ReplayState, ZoneHistory
from dyndns_plugin.store.sqlite import MIGRATIONS

#: The generation the files were left at.
GENERATION = 7

#: Rows of the version 1 tables (columns in table order).
_V1_ROWS: list[tuple[str, list[tuple[object, ...]]]] = [
    (
        "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                "alice",
                "$scrypt$ln=14,r=8,p=1$c2FsdA$aGFzaA",
                "5f4dcc3b5aa765d61d8327deb882cf99",
                "c2VjcmV0",
                "hmac-sha256",
                0,
                "192.0.2.1",
                "2001:db8::1",
                "family",
                0,
                3,
            ),
            ("bob", "$scrypt$ln=14,r=8,p=1$c2FsdA$Ym9i", None, None, "hmac-md5", 0, None, None, "", 1, 4),
            ("carol", None, "0d107d09f5bbe40cade3de5c71e9e9b7", None, "hmac-md5", 1, "192.0.2.3", None, "", 0, 5),
        ],
    ),
    (
        "INSERT INTO hostnames VALUES (?, ?, ?)",
        [
            ("alice.example.org", "alice", 0),
            ("*.alice.example.net", "alice", 1),
            ("bob.example.org", "bob", 0),
        ],
    ),
    (
        "INSERT INTO states (user_id, ipv4, ipv6, ttl, offline, updated_at, method, client_address, gen)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ("alice", "198.51.100.7", "2001:db8::7", 60, 0, 1700000000.5, "http", "203.0.113.9", 6),
            ("bob", "198.51.100.8", None, None, 1, 1700000100.0, "gnudip", "203.0.113.10", 7),
        ],
    ),
    ("INSERT INTO removed VALUES (?, ?)", [("dave", 2)]),
    ("UPDATE meta SET value = ? WHERE key = 'generation'", [(GENERATION,)]),
]

_V2_ROWS: list[tuple[str, list[tuple[object, ...]]]] = [
    ("INSERT INTO zones VALUES (?, ?, ?)", [("dyn.example.com", 4294967295, "d1"), ("example.org", 12, "d2")]),
    (
        "INSERT INTO zone_journal (origin, serial_from, serial_to, deleted, added) VALUES (?, ?, ?, ?, ?)",
        [
            (
                "dyn.example.com",
                4294967294,
                4294967295,
                '[["alice.dyn.example.com", 1, 60, "c6336406"]]',
                '[["alice.dyn.example.com", 1, 60, "c6336407"]]',
            ),
            ("example.org", 11, 12, "[]", '[["bob.example.org", 1, 30, "c6336408"]]'),
        ],
    ),
]

_V3_ROWS: list[tuple[str, list[tuple[object, ...]]]] = [
    ("INSERT INTO tsig_replay VALUES (?, ?, ?)", [("alice.dyn.example.com.", 1700000000, '[[1700000000, "00ff"]]')]),
]

_V4_ROWS: list[tuple[str, list[tuple[object, ...]]]] = [
    (
        "INSERT INTO zone_records VALUES (?, ?, ?, ?)",
        [
            ("example.org", "pc1.example.org", 1, '[["pc1.example.org", 1, 300, "c0000215"]]'),
            ("example.org", "www.example.org", 16, "[]"),
        ],
    ),
]

_V5_ROWS: list[tuple[str, list[tuple[object, ...]]]] = [
    (
        "UPDATE states SET txt = ? WHERE user_id = ?",
        [('[["alice.dyn.example.com", "tok-1", 1700003600.5], ["alice.example.org", "tok-2", 1700003601.0]]', "alice")],
    ),
    (
        "INSERT INTO acme_keys VALUES (?, ?, ?, ?, ?)",
        [("alice", "0a1b2c3d", "ab" * 32, "web server", 1700000000.0)],
    ),
]

#: The rows each version added, by the version that added them.
ROWS_BY_VERSION = {1: _V1_ROWS, 2: _V2_ROWS, 3: _V3_ROWS, 4: _V4_ROWS, 5: _V5_ROWS}


def build_store_at_version(path: str, version: int) -> None:
    """
    A store file at schema C{version} with that version's rows; version 0 is
    an empty file (what a first start found before any schema existed).
    """
    if version == 0:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        return
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for script in MIGRATIONS[:version]:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
        for added_in in range(1, version + 1):
            for sql, rows in ROWS_BY_VERSION[added_in]:
                conn.executemany(sql, rows)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    finally:
        conn.close()


def expected_users(version: int) -> dict[str, User]:
    if version < 1:
        return {}
    return {
        "alice": User(
            "alice",
            password_hash="$scrypt$ln=14,r=8,p=1$c2FsdA$aGFzaA",
            md5_verifier="5f4dcc3b5aa765d61d8327deb882cf99",
            tsig_secret="c2VjcmV0",
            tsig_algorithm="hmac-sha256",
            offline_ipv4="192.0.2.1",
            offline_ipv6="2001:db8::1",
            hostnames=["alice.example.org", "*.alice.example.net"],
            notes="family",
        ),
        "bob": User(
            "bob", password_hash="$scrypt$ln=14,r=8,p=1$c2FsdA$Ym9i", hostnames=["bob.example.org"], disabled=True
        ),
        "carol": User(
            "carol", md5_verifier="0d107d09f5bbe40cade3de5c71e9e9b7", tsig_from_password=True, offline_ipv4="192.0.2.3"
        ),
    }


def expected_states(version: int) -> dict[str, HostState]:
    if version < 1:
        return {}
    return {
        "alice": HostState(
            "alice",
            ipv4="198.51.100.7",
            ipv6="2001:db8::7",
            ttl=60,
            offline=False,
            updated_at=1700000000.5,
            method="http",
            client_address="203.0.113.9",
            txt=(
                (("alice.dyn.example.com", "tok-1", 1700003600.5), ("alice.example.org", "tok-2", 1700003601.0))
                if version >= 5
                else ()
            ),
        ),
        "bob": HostState(
            "bob",
            ipv4="198.51.100.8",
            offline=True,
            updated_at=1700000100.0,
            method="gnudip",
            client_address="203.0.113.10",
        ),
    }


def expected_generation(version: int) -> int:
    return GENERATION if version >= 1 else 0


def expected_zone_history(version: int) -> dict[str, ZoneHistory]:
    if version < 2:
        return {}
    return {
        "dyn.example.com": ZoneHistory(
            4294967295,
            "d1",
            (
                JournalStep(
                    4294967294,
                    4294967295,
                    (("alice.dyn.example.com", 1, 60, bytes.fromhex("c6336406")),),
                    (("alice.dyn.example.com", 1, 60, bytes.fromhex("c6336407")),),
                ),
            ),
        ),
        "example.org": ZoneHistory(
            12, "d2", (JournalStep(11, 12, (), (("bob.example.org", 1, 30, bytes.fromhex("c6336408")),)),)
        ),
    }


def expected_replay_states(version: int) -> dict[str, ReplayState]:
    if version < 3:
        return {}
    return {"alice.dyn.example.com.": ReplayState(1700000000, ((1700000000, b"\x00\xff"),))}


def expected_zone_records(version: int) -> dict[str, dict[tuple[str, int], tuple[RR, ...]]]:
    if version < 4:
        return {}
    return {
        "example.org": {
            ("pc1.example.org", 1): (("pc1.example.org", 1, 300, bytes.fromhex("c0000215")),),
            ("www.example.org", 16): (),
        }
    }


def expected_acme_keys(version: int) -> dict[str, list[AcmeKey]]:
    if version < 5:
        return {}
    return {"alice": [AcmeKey("0a1b2c3d", "ab" * 32, "web server", 1700000000.0)]}
