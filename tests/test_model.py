"""Validation of user ids, host names, addresses, secrets and users."""

import ipaddress
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.model import (
    HostState,
    User,
    ValidationError,
    normalize_name,
    normalize_user_id,
    parse_address,
    split_addresses,
    stored_ipv4,
    stored_ipv6,
    validate_tsig_algorithm,
    validate_ttl,
    validate_user_id,
)


class UserIdTests(SynchronousTestCase):
    def test_valid_ids(self) -> None:
        """Lower-case letters, digits and inner hyphens, 1 to 63 characters."""
        for value in ("a", "alice", "x1", "a-b", "0", "a" * 63):
            self.assertEqual(validate_user_id(value), value)

    def test_invalid_ids(self) -> None:
        """Anything that is not one lower-case DNS label is refused."""
        for value in ("", "-a", "a-", "Alice", "a.b", "a_b", "a" * 64, "ä", " a", 7):
            with self.assertRaises(ValidationError) as caught:
                validate_user_id(value)  # type: ignore[arg-type]
            self.assertEqual(caught.exception.field, "id")

    def test_ids_are_case_insensitive(self) -> None:
        """Every path lowercases an id on input: a User, and a client's update at the seam."""
        from dyndns_plugin.authn import ClientUpdate, Password
        from dyndns_plugin.methods import Method

        self.assertEqual(normalize_user_id(" Alice "), "alice")
        self.assertEqual(User(id="ALICE").id, "alice")
        update = ClientUpdate(Method.DYNDNS2, "Alice", Password("pw"))
        self.assertEqual(update.user_id, "alice")
        self.assertRaises(ValidationError, User, id="Al ice")


class HostNameTests(SynchronousTestCase):
    def test_normalized(self) -> None:
        """Names are lower-cased and lose their trailing dot."""
        self.assertEqual(normalize_name("WWW.Example.ORG."), "www.example.org")

    def test_lengths(self) -> None:
        """253 characters per name and 63 per label are the limits."""
        label = "a" * 63
        name = ".".join([label, label, label, "b" * 61])  # 253 characters
        self.assertEqual(len(name), 253)
        self.assertEqual(normalize_name(name), name)
        self.assertRaises(ValidationError, normalize_name, name + "b")
        self.assertRaises(ValidationError, normalize_name, "a" * 64 + ".example.org")

    def test_bad_labels(self) -> None:
        """Empty labels, hyphens at the edges and odd characters fail."""
        for value in ("a..b", ".a", "-a.example.org", "a-.example.org", "a b.org", "a/b.org", ""):
            self.assertRaises(ValidationError, normalize_name, value)

    def test_wildcards(self) -> None:
        """A leading *. is allowed only where wildcards are, with a parent of 2+ labels."""
        self.assertEqual(normalize_name("*.Alice.example.org", wildcard=True), "*.alice.example.org")
        self.assertRaises(ValidationError, normalize_name, "*.example.org")
        self.assertRaises(ValidationError, normalize_name, "*.org", wildcard=True)
        self.assertRaises(ValidationError, normalize_name, "a.*.example.org", wildcard=True)


class AddressTests(SynchronousTestCase):
    def test_v4_and_v6(self) -> None:
        self.assertEqual(parse_address("192.0.2.1"), ipaddress.IPv4Address("192.0.2.1"))
        self.assertEqual(parse_address("[2001:DB8::1]"), ipaddress.IPv6Address("2001:db8::1"))

    def test_mapped_v4_becomes_v4(self) -> None:
        """::ffff:a.b.c.d is the IPv4 address, not an AAAA."""
        self.assertEqual(parse_address("::ffff:192.0.2.9"), ipaddress.IPv4Address("192.0.2.9"))

    def test_refused(self) -> None:
        """Garbage, the unspecified address and multicast are not host addresses."""
        for value in ("", "1.2.3", "1.2.3.256", "example.org", "0.0.0.0", "::", "224.0.0.1", "ff02::1"):
            self.assertRaises(ValidationError, parse_address, value)

    def test_split(self) -> None:
        """At most one address per family."""
        v4, v6 = split_addresses([parse_address("2001:db8::1"), parse_address("192.0.2.1")])
        self.assertEqual((str(v4), str(v6)), ("192.0.2.1", "2001:db8::1"))
        self.assertRaises(
            ValidationError,
            split_addresses,
            [parse_address("192.0.2.1"), parse_address("192.0.2.2")],
        )


class SecretAndTTLTests(SynchronousTestCase):
    def test_tsig_algorithms(self) -> None:
        self.assertEqual(validate_tsig_algorithm("HMAC-SHA256."), "hmac-sha256")
        self.assertRaises(ValidationError, validate_tsig_algorithm, "hmac-sha3")

    def test_tsig_secret(self) -> None:
        """A TSIG secret must be strict, non-empty base64."""
        self.assertEqual(User("a", tsig_secret="c2VjcmV0").tsig_secret, "c2VjcmV0")
        for bad in ("not base64!", "abc", "===="):
            self.assertRaises(ValidationError, User, "a", tsig_secret=bad)

    def test_ttl(self) -> None:
        self.assertEqual(validate_ttl("60"), 60)
        for bad in ("x", -1, 2**31, True):
            self.assertRaises(ValidationError, validate_ttl, bad)


class UserTests(SynchronousTestCase):
    def test_fields_are_validated(self) -> None:
        """Constructing a user validates every field and names the bad one."""
        cases: dict[str, dict[str, Any]] = {
            "hostnames": dict(hostnames=["bad..name"]),
            "offline_ipv4": dict(offline_ipv4="2001:db8::1"),
            "offline_ipv6": dict(offline_ipv6="192.0.2.1"),
            "md5_verifier": dict(md5_verifier="xyz"),
            "notes": dict(notes="n" * 5000),
        }
        for field, kwargs in cases.items():
            with self.assertRaises(ValidationError) as caught:
                User("alice", **kwargs)
            self.assertEqual(caught.exception.field, field)

    def test_hostnames_deduplicated_and_normalized(self) -> None:
        user = User("alice", hostnames=["A.example.org.", "a.example.org", "*.B.example.org"])
        self.assertEqual(user.hostnames, ("a.example.org", "*.b.example.org"))

    def test_derived_tsig_needs_md5(self) -> None:
        """A password-derived TSIG key cannot exist without the MD5 verifier."""
        self.assertRaises(ValidationError, User, "alice", tsig_from_password=True)
        User("alice", tsig_from_password=True, md5_verifier="0" * 32)
        self.assertRaises(
            ValidationError,
            User,
            "alice",
            tsig_from_password=True,
            md5_verifier="0" * 32,
            tsig_secret="c2VjcmV0",
        )

    def test_state_status(self) -> None:
        self.assertEqual(HostState("a").status, "never")
        self.assertEqual(HostState("a", ipv4="192.0.2.1").status, "online")
        self.assertEqual(HostState("a", ipv4="192.0.2.1", offline=True).status, "offline")


class TrustedConstructorTests(SynchronousTestCase):
    """The store's loader builds values without validating them again."""

    def test_user_equals_validated(self) -> None:
        """Every field lands where the validating constructor puts it (a new field must be added to both)."""
        fields: dict[str, Any] = dict(
            id="alice",
            password_hash="$scrypt$x",
            md5_verifier="0" * 32,
            tsig_secret="c2VjcmV0",
            tsig_algorithm="hmac-sha256",
            tsig_from_password=False,
            offline_ipv4=ipaddress.IPv4Address("192.0.2.9"),
            offline_ipv6=ipaddress.IPv6Address("2001:db8::9"),
            hostnames=("a.example.org", "*.b.example.org"),
            notes="n",
            disabled=True,
        )
        self.assertEqual(User.trusted(**fields), User(**fields))
        self.assertEqual(len(fields), len(User.__attrs_attrs__))

    def test_state_equals_validated(self) -> None:
        fields: dict[str, Any] = dict(
            user_id="alice",
            ipv4=ipaddress.IPv4Address("192.0.2.1"),
            ipv6=ipaddress.IPv6Address("2001:db8::1"),
            ttl=60,
            offline=True,
            updated_at=12.5,
            method="ddns",
            client_address="192.0.2.7",
            txt=(("alice.dyn.example", "v1", 99.5),),
        )
        self.assertEqual(HostState.trusted(**fields), HostState(**fields))
        self.assertEqual(len(fields), len(HostState.__attrs_attrs__))

    def test_stored_addresses(self) -> None:
        """The fast parsers give addresses equal (and hashing equal) to ip_address's, and None for None."""
        for text in ("10.1.2.3", "0.0.0.1", "255.255.255.255", "192.0.2.200"):
            address = stored_ipv4(text)
            self.assertEqual(address, ipaddress.ip_address(text))
            self.assertEqual(hash(address), hash(ipaddress.ip_address(text)))
            self.assertEqual(str(address), text)
        self.assertEqual(stored_ipv6("2001:db8::1"), ipaddress.ip_address("2001:db8::1"))
        self.assertIsNone(stored_ipv4(None))
        self.assertIsNone(stored_ipv6(None))


class FastAddressParsingTests(SynchronousTestCase):
    """parse_address's dotted-quad path accepts and refuses exactly what ipaddress does."""

    def test_same_verdicts(self) -> None:
        texts = [
            "192.0.2.1", "10.0.0.255", "255.255.255.255", "1.2.3.4", " 198.51.100.7 ", "[192.0.2.9]",
            "01.2.3.4", "1.02.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.-4", "+1.2.3.4", "1.2.3.4\x00",
            "\u0661.2.3.4", "1.2.3.\uff14", "a.b.c.d", "", ".", "1..2.3", "1.2.3.4 5", "0x1.2.3.4", "1e1.2.3.4",
            "0.0.0.0", "224.0.0.1", "239.255.255.255", "223.255.255.255", "240.0.0.1", "127.0.0.1", "0.0.0.1",
        ]  # fmt: skip
        for text in texts:
            try:
                reference = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
            except ValueError:
                reference = None
            if reference is None or reference.is_unspecified or reference.is_multicast:
                with self.assertRaises(ValidationError, msg=repr(text)):
                    parse_address(text)
            else:
                address = parse_address(text)
                self.assertEqual(address, reference, repr(text))
                self.assertEqual(hash(address), hash(reference))
                self.assertIs(type(address), ipaddress.IPv4Address)
                self.assertEqual(str(address), str(reference))
