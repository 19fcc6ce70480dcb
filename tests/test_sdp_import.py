"""
dyndns_plugin.sdp_import: the Simple DNS Plus plug-in's configuration and
state XML -> users and host states, on the in-memory store.

Expectations come from the sample files in tests/fixtures/sdp (see the
README there), written by hand from the plug-in's format (see sdp_import).
Broken samples are made here, from the good ones by one substitution each,
so every error test changes exactly one thing.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os

import attrs
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.config import DNSSettings, GnuDIPSettings, HTTPSettings, Settings
from dyndns_plugin.model import HostState, User
from dyndns_plugin.passwords import derived_tsig_secret, hash_password, verify_password
from dyndns_plugin.sdp_import import (
    SDPImport,
    SDPImportError,
    import_sdp,
    load,
    parse_time,
    setting_warnings,
    read_config,
    summary,
)
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.store import NameTaken
from dyndns_plugin.store.memory import MemoryUserStore

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "sdp")
CONFIG = os.path.join(FIXTURES, "config.xml")
STATE = os.path.join(FIXTURES, "state.xml")

#: The passwords of config.xml, as the XML means them (entities decoded).
PASSWORDS = {
    "alice": "alice-secret",
    "bob": "b0b pass",
    "carol": "carol-pw",
    "dave": "dave-pw",
    "erin": "erin-pw",
    "frank": "frank:pw&1",
}
ALICE_KEY = "YWxpY2UtdHNpZy1rZXktMDEyMzQ1Njc4OWFiY2RlZiE="

#: Settings that match config.xml except for GnuDIP: the original has
#: GnuDIP TCP on (we have no gnudip.listen) and HTTP GnuDIP off (ours is on
#: by default).
SETTINGS = Settings(
    path="dyndns.toml",
    suffix="dyn.example.com",
    http=HTTPSettings(
        listen=("tcp:8080:interface=127.0.0.1",),
        base_url="http://www.example.com/dyndns/",
    ),
)


def cheap_hash(password: str) -> str:
    """A real scrypt hash at the lowest cost the verifier accepts (fast tests)."""
    return hash_password(password, log2_n=10)


def utc(*fields: int) -> float:
    return datetime.datetime(*fields, tzinfo=datetime.timezone.utc).timestamp()  # type: ignore[misc]


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


class ImportTestCase(SynchronousTestCase):
    """A started service on a memory store, and a folder for broken samples."""

    def setUp(self) -> None:
        self.store = MemoryUserStore()
        self.service = DynDNSService(
            self.store, "dyn.example.com", default_ttl=30, clock=task.Clock(), poll_interval=None,
        )
        self.service.startService()
        self.successResultOf(self.service.ready)
        self.addCleanup(self.service.stopService)
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def variant(self, name: str, source: str, old: str, new: str) -> str:
        """C{source} with C{old} (which must occur once) replaced by C{new}."""
        text = read(source)
        self.assertEqual(text.count(old), 1, f"{old!r} must occur once in {source}")
        return self.write(name, text.replace(old, new))

    def run_import(
        self, config: str = CONFIG, state: str | None = STATE, replace: bool = False,
        settings: Settings = SETTINGS,
    ) -> defer.Deferred[SDPImport]:
        return defer.ensureDeferred(import_sdp(
            self.service, config, state, settings, replace,
            hasher=cheap_hash, in_thread=defer.maybeDeferred,
        ))

    def imported(self, **kwargs: object) -> SDPImport:
        return self.successResultOf(self.run_import(**kwargs))  # type: ignore[arg-type]

    def failed_import(self, **kwargs: object) -> str:
        """The message of an import that must fail with SDPImportError."""
        failure = self.failureResultOf(self.run_import(**kwargs), SDPImportError)  # type: ignore[arg-type]
        return str(failure.value)

    def stored(self) -> tuple[dict[str, User], dict[str, HostState]]:
        snapshot = self.successResultOf(self.store.load())
        return snapshot.users, snapshot.states

    def served(self, name: str, rtype: int = 4) -> tuple[str, ...] | None:
        answer = self.service.registry.answer(name)
        if answer is None:
            return None
        return tuple(str(a) for a in answer.addresses if a.version == rtype)


class ConfigMappingTests(ImportTestCase):
    """Every field of config.xml lands where it should."""

    def setUp(self) -> None:
        super().setUp()
        self.result = self.imported()
        self.users = {user.id: user for user in self.result.users}

    def test_ids_lower_cased_in_file_order(self) -> None:
        """C{ID="Erin"} becomes erin; every user of the file is imported."""
        self.assertEqual([u.id for u in self.result.users],
                         ["alice", "bob", "carol", "dave", "erin", "frank"])
        self.assertEqual(set(self.stored()[0]), set(PASSWORDS))

    def test_passwords_hashed_and_verify(self) -> None:
        """Each plain password (entities decoded: frank's C{&amp;}) verifies
        against the stored scrypt hash; no plain password is kept."""
        stored = self.stored()[0]
        for user_id, password in PASSWORDS.items():
            self.assertTrue(stored[user_id].password_hash.startswith("$scrypt$ln=10,"))
            self.assertTrue(verify_password(password, stored[user_id].password_hash), user_id)
            self.assertFalse(verify_password(password + "x", stored[user_id].password_hash))
        self.assertEqual(self.result.passwords, {})
        self.assertNotIn("b0b pass", repr(self.result))

    def test_explicit_tsig_key(self) -> None:
        """alice: TSIGKeyValue is her HMAC-MD5 secret; GnuDIP is on in the
        original, so she keeps the MD5 verifier too."""
        alice = self.users["alice"]
        self.assertEqual(
            (alice.tsig_secret, alice.tsig_algorithm, alice.tsig_from_password),
            (ALICE_KEY, "hmac-md5", False),
        )
        self.assertEqual(alice.md5_verifier, md5_hex("alice-secret"))

    def test_tsig_from_password(self) -> None:
        """No TSIGKeyValue: HMAC-MD5 with base64(MD5(password)), the original's key."""
        for user_id in ("bob", "carol", "dave", "erin", "frank"):
            user = self.users[user_id]
            self.assertEqual(
                (user.tsig_secret, user.tsig_algorithm, user.tsig_from_password),
                (None, "hmac-md5", True), user_id,
            )
            raw_md5 = hashlib.md5(PASSWORDS[user_id].encode("utf-8")).digest()
            self.assertEqual(derived_tsig_secret(user.md5_verifier),
                             base64.b64encode(raw_md5).decode())

    def test_hostnames_and_offline_ip(self) -> None:
        bob = self.users["bob"]
        self.assertEqual(bob.hostnames, ("bob.example.org", "*.bob.example.net"))
        self.assertEqual((bob.offline_ipv4, bob.offline_ipv6),
                         (ipaddress.IPv4Address("192.0.2.1"), None))
        erin = self.users["erin"]
        self.assertEqual((erin.offline_ipv4, erin.offline_ipv6),
                         (None, ipaddress.IPv6Address("2001:db8::e")))

    def test_notes_unescaped(self) -> None:
        self.assertEqual(self.users["carol"].notes, 'router & modem <rack 2> "blue" café')
        self.assertEqual(self.users["alice"].notes, "")

    def test_disabled(self) -> None:
        self.assertEqual({u.id for u in self.result.users if u.disabled}, {"dave"})

    def test_stored_equals_returned(self) -> None:
        self.assertEqual(self.stored()[0], self.users)

    def test_no_md5_for_explicit_key_without_gnudip(self) -> None:
        """With GnuDIP off in the original and here, alice (explicit key)
        keeps no MD5 verifier; bob (password-derived key) still needs it."""
        config = self.variant("config.xml", CONFIG, 'UpMeGnuDIP="true"', 'UpMeGnuDIP="false"')
        settings = attrs.evolve(SETTINGS, http=attrs.evolve(SETTINGS.http, gnudip=False))
        users = {u.id: u for u in load(config, None, settings).users}
        self.assertIsNone(users["alice"].md5_verifier)
        self.assertEqual(users["bob"].md5_verifier, md5_hex("b0b pass"))


class StateMappingTests(ImportTestCase):
    """Every field of state.xml, and what the DNS side then serves."""

    def setUp(self) -> None:
        super().setUp()
        self.result = self.imported()
        self.states = self.stored()[1]

    def test_states(self) -> None:
        V4, V6 = ipaddress.IPv4Address, ipaddress.IPv6Address
        expected = {
            "alice": HostState("alice", ipv4=V4("198.51.100.7"), ttl=60,
                               updated_at=utc(2024, 1, 1, 12, 0, 0), method="import-sdp"),
            "bob": HostState("bob", ipv4=V4("198.51.100.8"), ttl=30,
                             updated_at=utc(2024, 3, 5, 8, 30, 15) + 0.25, method="import-sdp"),
            "carol": HostState("carol", ipv4=V4("198.51.100.9"), ttl=30, offline=True,
                               updated_at=utc(2024, 2, 29, 23, 59, 59), method="import-sdp"),
            "dave": HostState("dave", ipv4=V4("198.51.100.10"), ttl=30,
                              updated_at=utc(2023, 12, 31, 0, 0, 0), method="import-sdp"),
            "erin": HostState("erin", ipv6=V6("2001:db8::7"), ttl=120,
                              updated_at=utc(2024, 4, 1, 6, 0, 0) + 0.123456,
                              method="import-sdp"),
        }
        self.assertEqual(set(self.states), set(expected), "frank has no state")
        for user_id, state in expected.items():
            got = self.states[user_id]
            self.assertAlmostEqual(got.updated_at, state.updated_at, places=6)
            self.assertEqual(attrs.evolve(got, updated_at=None),
                             attrs.evolve(state, updated_at=None))
        self.assertEqual(len(self.result.states), 5)

    def test_served(self) -> None:
        """alice and bob's names (the wildcard too) serve their state's
        address, carol is offline without offline IP (nothing), dave is
        disabled (no answer), erin has only an AAAA, frank nothing yet."""
        self.assertEqual(self.served("alice.dyn.example.com"), ("198.51.100.7",))
        self.assertEqual(self.service.registry.answer("alice.dyn.example.com").ttl, 60)
        for name in ("bob.dyn.example.com", "bob.example.org", "x.bob.example.net"):
            self.assertEqual(self.served(name), ("198.51.100.8",), name)
        self.assertEqual(self.served("carol.dyn.example.com"), ())
        self.assertIsNone(self.served("dave.dyn.example.com"))
        self.assertEqual(self.served("erin.dyn.example.com", 6), ("2001:db8::7",))
        self.assertEqual(self.served("erin.dyn.example.com", 4), ())
        self.assertEqual(self.served("frank.dyn.example.com"), ())

    def test_offline_with_offline_ip_serves_it(self) -> None:
        """An offline state for a user with an OfflineIP serves that IP."""
        state = self.variant("state.xml", STATE, 'LastUpdate="2024-03-05T08:30:15.25"',
                             'LastUpdate="2024-03-05T08:30:15.25" Offline="TRUE"')
        self.imported(state=state, replace=True)
        self.assertEqual(self.served("bob.example.org"), ("192.0.2.1",))

    def test_config_only(self) -> None:
        """Without a state file users are imported and nobody has a state."""
        store = MemoryUserStore()
        service = DynDNSService(store, "dyn.example.com", clock=task.Clock(), poll_interval=None)
        self.successResultOf(defer.ensureDeferred(service.start()))
        result = self.successResultOf(defer.ensureDeferred(import_sdp(
            service, CONFIG, None, SETTINGS, hasher=cheap_hash, in_thread=defer.maybeDeferred)))
        self.assertEqual((len(result.users), result.states), (6, ()))
        self.assertEqual(self.successResultOf(store.load()).states, {})

    def test_parse_time(self) -> None:
        """No zone is UTC; a Z or an offset is honoured; seven fraction digits are cut to six."""
        self.assertEqual(parse_time("2024-01-01T12:00:00", "s", "w"), utc(2024, 1, 1, 12, 0, 0))
        self.assertEqual(parse_time("2024-01-01T12:00:00Z", "s", "w"), utc(2024, 1, 1, 12, 0, 0))
        self.assertEqual(parse_time("2024-01-01T12:00:00+02:00", "s", "w"),
                         utc(2024, 1, 1, 10, 0, 0))
        self.assertAlmostEqual(parse_time("2024-01-01T12:00:00.9999999", "s", "w"),
                               utc(2024, 1, 1, 12, 0, 0) + 0.999999, places=6)
        for bad in ("2024-01-01", "yesterday", "2024-13-01T00:00:00"):
            with self.assertRaises(SDPImportError):
                parse_time(bad, "s", "w")


class WarningTests(SynchronousTestCase):
    """The original's method switches against our settings."""

    def warnings(self, settings: Settings, config: bytes | None = None) -> list[str]:
        with open(CONFIG, "rb") as f:
            data = f.read() if config is None else config
        return setting_warnings(read_config(data, "config.xml", settings), settings)

    def test_sample_against_matching_settings(self) -> None:
        """Only the two GnuDIP switches differ from SETTINGS."""
        warnings = self.warnings(SETTINGS)
        self.assertEqual(len(warnings), 2, warnings)
        self.assertTrue(warnings[0].startswith(
            "UpMeGnuDIP=true: GnuDIP over TCP is on in the original but off here (gnudip.listen)"))
        self.assertTrue(warnings[1].startswith(
            "UpMeHTTPGnuDIP=false: HTTP GnuDIP is off in the original but on here "
            "(http.methods.gnudip)"))

    def test_everything_differs(self) -> None:
        """No HTTP listener, TSIG off, local zones on, GnuDIP on another port."""
        settings = attrs.evolve(
            SETTINGS, http=None,
            dns=DNSSettings(updates=False, update_local_zones=True),
            gnudip=GnuDIPSettings(listen=("tcp:3496:interface=127.0.0.1",)),
        )
        text = "\n".join(self.warnings(settings))
        for switch in ("UpMeTSIG=true", "UpdateZones=false", "UpMeHTTPURL=true",
                       "UpMeHTTPBasic=true", "UpMeHTTPDynCom=true", "RemoteDetect=true",
                       "GNUDIPPort=3495"):
            self.assertIn(switch, text)
        self.assertIn("there is no [http] listener", text)
        self.assertIn("tcp:3496:interface=127.0.0.1", text)
        self.assertNotIn("UpMeGnuDIP", text)
        self.assertNotIn("UpMeHTTPGnuDIP", text, "off there, and no HTTP here")
        self.assertNotIn("BaseURL", text, "no HTTP here to compare with")

    def test_base_url(self) -> None:
        """Another path or port is a warning; the original's wildcard host
        (C{+}, C{*}) matches any host; case does not matter."""
        cases = [
            ("http://www.example.com/ddns/", True),
            ("http://www.example.com:8080/dyndns/", True),
            ("https://www.example.com/dyndns/", True),
            ("http://other.example.com/dyndns/", True),
            ("http://+:80/dyndns/", False),
            ("http://*/DynDNS/", False),
            ("HTTP://WWW.EXAMPLE.COM/dyndns/", False),
        ]
        original = read(CONFIG).encode()
        for base, differs in cases:
            config = original.replace(b"http://www.example.com/dyndns/", base.encode())
            found = [w for w in self.warnings(SETTINGS, config) if w.startswith("BaseURL=")]
            self.assertEqual(bool(found), differs, base)
            if found:
                self.assertIn("http.base_url 'http://www.example.com/dyndns/'", found[0])

    def test_summary(self) -> None:
        result = SDPImport((User("a"), User("b")), (HostState("a"),), ("one", "two"),
                           replaced=("b",))
        self.assertEqual(summary(result, ["c.xml", "s.xml"]), [
            "warning: one",
            "warning: two",
            "imported 2 users (1 replaced) and 1 states from c.xml, s.xml; 2 warnings",
        ])


class ErrorTests(ImportTestCase):
    """
    Each broken sample fails with C{FILE: where: problem} and writes
    nothing (an existing user stays exactly as it was).
    """

    def setUp(self) -> None:
        super().setUp()
        self.zed = User("zed", password_hash=cheap_hash("zed-pw"), hostnames=["zed.example.org"])
        self.successResultOf(self.service.add_user(self.zed))
        self.before = self.stored()

    def assertFails(self, expected: str, config: str = CONFIG, state: str | None = STATE) -> None:
        message = self.failed_import(config=config, state=state)
        self.assertEqual(message, expected)
        self.assertEqual(self.stored(), self.before)
        self.assertEqual(set(self.service.registry.users), {"zed"})

    def config_error(self, old: str, new: str, expected: str) -> None:
        path = self.variant("config.xml", CONFIG, old, new)
        self.assertFails(f"{path}: {expected}", config=path)

    def state_error(self, old: str, new: str, expected: str) -> None:
        path = self.variant("state.xml", STATE, old, new)
        self.assertFails(f"{path}: {expected}", state=path)

    def test_not_xml(self) -> None:
        self.config_error('<User ID="dave" Password="dave-pw" Disabled="true" />',
                          '<User ID="dave" Password="dave-pw" Disabled="true">',
                          "line 12: not well-formed XML: mismatched tag")
        self.config_error("</config>", "", "line 13: not well-formed XML: no element found")

    def test_missing_file(self) -> None:
        missing = os.path.join(self.directory, "nope.xml")
        self.assertFails(f"{missing}: file: No such file or directory", config=missing)

    def test_root_element(self) -> None:
        path = self.write("config.xml", read(CONFIG).replace("config", "settings"))
        self.assertFails(f"{path}: settings (line 2): the root element must be <config>",
                         config=path)

    def test_suffix_mismatch(self) -> None:
        self.config_error(
            'Suffix="dyn.example.com"', 'Suffix="DYN.Example.NET."',
            "config (line 2): Suffix 'dyn.example.net' is not our suffix 'dyn.example.com' "
            "(service.suffix in dyndns.toml): users would get other names",
        )

    def test_suffix_missing(self) -> None:
        self.config_error('Suffix="dyn.example.com" ', "", "config (line 2): Suffix: missing")

    def test_unknown_config_attribute(self) -> None:
        self.config_error('UpdateZones="false"', 'UpdateZones="false" Colour="blue"',
                          "config (line 2): unknown attribute 'Colour'")

    def test_bad_switch(self) -> None:
        self.config_error('UpMeTSIG="true"', 'UpMeTSIG="yes"',
                          "config (line 2): UpMeTSIG: 'yes' is not true or false")
        self.config_error('GNUDIPPort="3495"', 'GNUDIPPort="70000"',
                          "config (line 2): GNUDIPPort: '70000' is not a port number")

    def test_unknown_element(self) -> None:
        self.config_error("  <User ID=\"dave\"", "  <Group />\n  <User ID=\"dave\"",
                          "Group (line 9): unknown element in <config>")
        self.config_error("<HostName>bob.example.org</HostName>",
                          "<HostName>bob.example.org</HostName><Alias>x</Alias>",
                          "Alias (line 5): unknown element in <User>")

    def test_unknown_user_attribute(self) -> None:
        self.config_error('Password="alice-secret"', 'Password="alice-secret" Colour="red"',
                          "User 'alice' (line 3): unknown attribute 'Colour'")

    def test_bad_id(self) -> None:
        self.config_error('ID="frank"', 'ID="fr_ank"',
                          "User 'fr_ank' (line 11): ID: 'fr_ank' is not a valid user id "
                          "(1-63 characters of a-z, 0-9 and '-', not starting or ending with '-')")
        self.config_error('ID="frank" ', "", "User #6 (line 11): ID: missing")

    def test_duplicate_id(self) -> None:
        """IDs compare without case, as in the original."""
        self.config_error('ID="frank"', 'ID="ALICE"',
                          "User 'ALICE' (line 11): ID: 'alice' is already User 'alice' (line 3)")

    def test_duplicate_hostname(self) -> None:
        self.config_error('<User ID="dave" Password="dave-pw" Disabled="true" />',
                          '<User ID="dave" Password="dave-pw"><HostName>BOB.example.org.'
                          "</HostName></User>",
                          "User 'dave' (line 9): HostName: 'bob.example.org' is already a name "
                          "of user 'bob'")

    def test_bad_hostname(self) -> None:
        self.config_error("<HostName>bob.example.org</HostName>",
                          "<HostName>bob..example.org</HostName>",
                          "User 'bob' (line 4): HostName (line 5): HostName: 'bob..example.org' "
                          "has an empty label")

    def test_hostname_of_another_user_under_the_suffix(self) -> None:
        """The service's rule: below the suffix only names under one's own."""
        self.config_error("<HostName>bob.example.org</HostName>",
                          "<HostName>alice.dyn.example.com</HostName>",
                          "User 'bob': HostName: 'alice.dyn.example.com' is under the suffix "
                          "'dyn.example.com'; only names below 'bob.dyn.example.com' are "
                          "allowed there")

    def test_hostname_of_an_existing_user(self) -> None:
        self.config_error("<HostName>bob.example.org</HostName>",
                          "<HostName>zed.example.org</HostName>",
                          "User 'bob': HostName: 'zed.example.org' belongs to existing user 'zed'")

    def test_bad_offline_ip(self) -> None:
        self.config_error('OfflineIP="192.0.2.1"', 'OfflineIP="192.0.2.300"',
                          "User 'bob' (line 4): OfflineIP: '192.0.2.300' is not an IP address")

    def test_bad_tsig_key(self) -> None:
        self.config_error(ALICE_KEY, "not*base64",
                          "User 'alice' (line 3): TSIGKeyValue: not valid base64")

    def test_password_missing(self) -> None:
        self.config_error('Password="carol-pw" ', "",
                          "User 'carol' (line 8): Password: missing or empty "
                          "(the original requires one)")

    def test_bad_disabled(self) -> None:
        self.config_error('Disabled="true"', 'Disabled="1"',
                          "User 'dave' (line 9): Disabled: '1' is not true or false")

    def test_notes_too_long(self) -> None:
        self.config_error('Password="dave-pw"', f'Password="dave-pw" Notes="{"n" * 5000}"',
                          "User 'dave' (line 9): Notes: longer than 4096 characters")

    def test_bad_user_in_the_middle(self) -> None:
        """carol (3rd of 6) is broken: nobody is written, not even alice and bob."""
        self.config_error('ID="carol" Password="carol-pw"',
                          'ID="carol" Password="carol-pw" OfflineIP="nowhere"',
                          "User 'carol' (line 8): OfflineIP: 'nowhere' is not an IP address")

    def test_state_errors(self) -> None:
        self.state_error('IP="198.51.100.9"', 'IP="198.51.100"',
                         "User 'carol' (line 5): IP: '198.51.100' is not an IP address")
        self.state_error('IP="198.51.100.7"', 'IP="224.0.0.1"',
                         "User 'alice' (line 3): IP: '224.0.0.1' cannot be a host address")
        self.state_error('TTL="60"', 'TTL="sixty"',
                         "User 'alice' (line 3): TTL: 'sixty' is not a whole number")
        self.state_error('TTL="60"', 'TTL="-1"',
                         "User 'alice' (line 3): TTL: -1 is outside 0..2147483647")
        self.state_error('LastUpdate="2024-01-01T12:00:00"', 'LastUpdate="1/1/2024"',
                         "User 'alice' (line 3): LastUpdate: '1/1/2024' is not an XML date-time")
        self.state_error('Offline="true"', 'Offline="yes"',
                         "User 'carol' (line 5): Offline: 'yes' is not true or false")
        self.state_error('ID="dave"', 'ID="Bob"',
                         "User 'Bob' (line 6): ID: 'bob' is already User 'bob' (line 4)")
        self.state_error('TTL="120"', 'TTL="120" Port="1"',
                         "User 'erin' (line 7): unknown attribute 'Port'")
        self.state_error("<config>", '<config Suffix="dyn.example.com">',
                         "config (line 2): unknown attribute 'Suffix'")

    def test_state_of_unknown_user_is_a_warning(self) -> None:
        """The original skips states of users it does not have; so do we, aloud."""
        state = self.variant("state.xml", STATE, 'ID="dave"', 'ID="ghost"')
        result = self.imported(state=state)
        self.assertIn(f"{state}: User 'ghost' (line 6): no such user in the configuration; "
                      "state skipped", result.warnings)
        self.assertNotIn("ghost", self.stored()[1])
        self.assertNotIn("dave", self.stored()[1])


class HostileXMLTests(ImportTestCase):
    """A DOCTYPE is refused before any entity could be declared or expanded."""

    def assertRefused(self, text: str, line: int) -> None:
        path = self.write("config.xml", text)
        message = self.failed_import(config=path, state=None)
        self.assertEqual(message, f"{path}: line {line}: a DOCTYPE (document type declaration) "
                                  "is not allowed: the original never writes one, and it "
                                  "could declare entities")
        self.assertEqual(self.stored(), ({}, {}))

    def test_billion_laughs(self) -> None:
        entities = "".join(
            f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)
        )
        self.assertRefused(
            '<?xml version="1.0"?>\n'
            f'<!DOCTYPE config [<!ENTITY l0 "lol">{entities}]>\n'
            '<config Suffix="dyn.example.com"><User ID="a" Password="x" Notes="&l9;"/></config>\n',
            2,
        )

    def test_external_entity(self) -> None:
        self.assertRefused(
            '<?xml version="1.0"?>\n\n'
            '<!DOCTYPE config [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
            '<config Suffix="dyn.example.com"><User ID="a" Password="&xxe;"/></config>\n',
            3,
        )

    def test_external_dtd(self) -> None:
        self.assertRefused(
            '<!DOCTYPE config SYSTEM "http://127.0.0.1:9/evil.dtd">\n'
            '<config Suffix="dyn.example.com"/>\n',
            1,
        )

    def test_undeclared_entity(self) -> None:
        """Without a DOCTYPE only XML's own five entities exist."""
        path = self.write("config.xml", '<config Suffix="dyn.example.com">'
                                        '<User ID="a" Password="&secret;"/></config>')
        self.assertEqual(self.failed_import(config=path, state=None),
                         f"{path}: line 1: not well-formed XML: undefined entity")

    def test_unknown_encoding(self) -> None:
        """An encoding Python has no codec for, or a multi-byte one: an import error, not a LookupError or ValueError."""
        path = self.write("config.xml", '<?xml version="1.0" encoding="utfo16"?>\n'
                                        '<config Suffix="dyn.example.com"/>\n')
        self.assertEqual(self.failed_import(config=path, state=None),
                         f"{path}: line 1: cannot decode: unknown encoding: utfo16")
        path = self.write("config.xml", '<?xml version="1.0" encoding="u16"?>\n<config Suffix="dyn.example.com"/>\n')
        self.assertEqual(self.failed_import(config=path, state=None),
                         f"{path}: line 1: cannot decode: multi-byte encodings are not supported")


class ReplaceTests(ImportTestCase):
    """Existing users: an error naming them, or replaced with C{replace}."""

    def setUp(self) -> None:
        super().setUp()
        for user_id in ("alice", "frank", "zed"):
            user = User(user_id, password_hash=cheap_hash("old-pw"),
                        hostnames=[f"{user_id}.example.net"])
            self.successResultOf(self.service.add_user(user))
        for user_id, address in (("alice", "203.0.113.5"), ("frank", "203.0.113.6")):
            self.successResultOf(self.service.update(
                user_id, [ipaddress.ip_address(address)], None, method="test"))
        self.before = self.stored()

    def test_existing_users_are_an_error(self) -> None:
        message = self.failed_import()
        self.assertEqual(message, f"{CONFIG}: User: 2 of these users exist already: "
                                  "alice, frank (give --replace to replace them)")
        self.assertEqual(self.stored(), self.before)

    def test_replace(self) -> None:
        """alice and frank are replaced (new password, names, key); alice
        takes the state file's state, frank (none there) keeps his; zed is
        untouched."""
        result = self.imported(replace=True)
        self.assertEqual(result.replaced, ("alice", "frank"))
        users, states = self.stored()
        self.assertEqual(set(users), set(PASSWORDS) | {"zed"})
        self.assertTrue(verify_password("alice-secret", users["alice"].password_hash))
        self.assertFalse(verify_password("old-pw", users["alice"].password_hash))
        self.assertEqual(users["alice"].hostnames, ())
        self.assertEqual(users["alice"].tsig_secret, ALICE_KEY)
        self.assertEqual(str(states["alice"].ipv4), "198.51.100.7")
        self.assertEqual(states["alice"].method, "import-sdp")
        self.assertEqual((str(states["frank"].ipv4), states["frank"].method),
                         ("203.0.113.6", "test"))
        self.assertEqual(users["zed"], self.before[0]["zed"])
        self.assertEqual(self.served("alice.dyn.example.com"), ("198.51.100.7",))
        self.assertIsNone(self.served("alice.example.net"), "alice's old name is gone")

    def test_failure_inside_the_transaction_writes_nothing(self) -> None:
        """
        alice and frank swap their names: each name belongs to a user who
        is being replaced, so the checks pass, and the store refuses alice's
        new name while frank still holds it, half-way through the
        transaction. Nothing of the import is kept.
        """
        config = read(CONFIG)
        config = config.replace(
            'TSIGKeyValue="YWxpY2UtdHNpZy1rZXktMDEyMzQ1Njc4OWFiY2RlZiE=" />',
            'TSIGKeyValue="YWxpY2UtdHNpZy1rZXktMDEyMzQ1Njc4OWFiY2RlZiE=">'
            "<HostName>frank.example.net</HostName></User>",
        ).replace('Password="frank:pw&amp;1" />',
                  'Password="frank:pw&amp;1"><HostName>alice.example.net</HostName></User>')
        path = self.write("config.xml", config)
        failure = self.failureResultOf(self.run_import(config=path, replace=True), NameTaken)
        self.assertIn("frank.example.net", str(failure.value))
        self.assertEqual(self.stored(), self.before)
        self.assertEqual(self.served("frank.example.net"), ("203.0.113.6",))
