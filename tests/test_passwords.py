"""Password verifiers: scrypt hashes, the legacy MD5 verifier, the derived TSIG key."""

import base64
import hashlib

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.passwords import (
    PasswordError,
    derived_tsig_secret,
    hash_password,
    is_password_hash,
    md5_verifier,
    verify_password,
)


class PasswordTests(SynchronousTestCase):
    def test_hash_and_verify(self) -> None:
        """A hash verifies its password only, and is salted (two hashes differ)."""
        first = hash_password("s3cret", log2_n=10)
        second = hash_password("s3cret", log2_n=10)
        self.assertNotEqual(first, second)
        self.assertTrue(first.startswith("$scrypt$ln=10,r=8,p=1$"))
        self.assertTrue(verify_password("s3cret", first))
        self.assertFalse(verify_password("s3cret!", first))
        self.assertFalse(verify_password("", first))

    def test_default_cost(self) -> None:
        """The default cost is stored in the hash (N = 2**15)."""
        self.assertIn("$scrypt$ln=15,", hash_password("pw"))

    def test_malformed_hashes_never_verify(self) -> None:
        for bad in (None, "", "plain", "$scrypt$ln=15$x$y", "$scrypt$ln=40,r=8,p=1$AAAAAAAAAAA$AAAA"):
            self.assertFalse(verify_password("pw", bad))
            self.assertFalse(is_password_hash(bad or ""))

    def test_unicode(self) -> None:
        h = hash_password("pässwörd", log2_n=10)
        self.assertTrue(verify_password("pässwörd", h))

    def test_bad_passwords(self) -> None:
        self.assertRaises(PasswordError, hash_password, "")
        self.assertRaises(PasswordError, hash_password, "x" * 1025)

    def test_md5_and_derived_tsig(self) -> None:
        """The original's TSIG key is base64 of the raw MD5 of the UTF-8 password."""
        verifier = md5_verifier("s3cret")
        self.assertEqual(verifier, hashlib.md5(b"s3cret").hexdigest())
        self.assertEqual(base64.b64decode(derived_tsig_secret(verifier)), hashlib.md5(b"s3cret").digest())
