"""The users document shared by export/import and (later) the admin API."""

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.document import export_document, format_time, parse_document, parse_time
from dyndns_plugin.model import ValidationError
from dyndns_plugin.passwords import verify_password
from tests.store_conformance import ALICE, ALICE_STATE, BOB


class DocumentTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """export -> parse gives back the same users and states."""
        document = export_document([BOB, ALICE], {"alice": ALICE_STATE})
        self.assertEqual([u["id"] for u in document["users"]], ["alice", "bob"])
        users, states = parse_document(document)
        self.assertEqual(users, [ALICE, BOB])
        self.assertEqual(states, [ALICE_STATE])

    def test_plain_password_is_hashed(self) -> None:
        """A plain password is accepted on input and stored only as verifiers."""
        users, _ = parse_document(
            {
                "format": "dyndns_plugin.users",
                "version": 1,
                "users": [{"id": "carol", "password": "pw", "gnudip": True}],
            }
        )
        self.assertTrue(verify_password("pw", users[0].password_hash))
        self.assertEqual(users[0].md5_verifier, hashlib.md5(b"pw").hexdigest())

    def test_errors_name_the_place(self) -> None:
        base = {"format": "dyndns_plugin.users", "version": 1}
        cases = [
            ({**base, "users": [{"id": "ok"}, {"id": "-bad"}]}, "users[1].id"),
            ({**base, "users": [{"id": "ok", "hostnames": ["a..b"]}]}, "users[0].hostnames"),
            ({**base, "users": [{"id": "ok", "colour": "red"}]}, "users[0].colour"),
            ({**base, "users": [{"id": "ok", "state": {"ipv4": "300.1.1.1"}}]}, "users[0].state.ipv4"),
            ({**base, "users": [{"id": "ok"}, {"id": "ok"}]}, "users[1].id"),
            ({**base, "users": [{"id": "ok", "password_hash": "plain"}]}, "users[0].password_hash"),
            ({**base, "version": 2, "users": []}, "version"),
            ({"users": []}, "format"),
        ]
        for document, field in cases:
            error = self.assertRaises(ValidationError, parse_document, document)
            self.assertEqual(error.field, field)

    def test_times(self) -> None:
        self.assertEqual(format_time(1700000000), "2023-11-14T22:13:20Z")
        self.assertEqual(format_time(1700000000.5), "2023-11-14T22:13:20.500000Z")
        self.assertEqual(format_time(1700000000.5, precise=False), "2023-11-14T22:13:20Z")
        self.assertEqual(parse_time("2023-11-14T22:13:20Z", "t"), 1700000000)
        self.assertEqual(parse_time("2023-11-14T22:13:20", "t"), 1700000000)
        self.assertRaises(ValidationError, parse_time, "yesterday", "t")
