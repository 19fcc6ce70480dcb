"""
Password verifiers: a slow scrypt hash for everything that sees the password,
and the legacy MD5 verifier for the two protocols that cannot work without it
(GnuDIP's salted hash and the derived TSIG secret are computed from it here).

The scrypt parameters are stored in the hash string, so they can be raised
later without invalidating existing hashes.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os

#: scrypt cost: N=2**15, r=8, p=1 (32 MiB, about 0.1 s on one core).
SCRYPT_LOG2_N = 15
SCRYPT_R = 8
SCRYPT_P = 1
_PREFIX = "$scrypt$"
MAX_PASSWORD_LENGTH = 1024


class PasswordError(ValueError):
    """A password that cannot be used (empty, too long)."""


def _check(password: str) -> bytes:
    if not password:
        raise PasswordError("password: must not be empty")
    try:
        raw = password.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. "\ud800" from JSON
        raise PasswordError("password: not valid Unicode (a lone surrogate)") from None
    if len(raw) > MAX_PASSWORD_LENGTH:
        raise PasswordError(f"password: longer than {MAX_PASSWORD_LENGTH} bytes")
    return raw


def _scrypt(raw: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(raw, salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + (1 << 20), dklen=32)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, log2_n: int = SCRYPT_LOG2_N) -> str:
    """
    Return C{$scrypt$ln=15,r=8,p=1$<salt>$<hash>} for C{password}.

    Slow on purpose: call it off the reactor thread.
    """
    raw = _check(password)
    salt = os.urandom(16)
    digest = _scrypt(raw, salt, log2_n, SCRYPT_R, SCRYPT_P)
    params = f"ln={log2_n},r={SCRYPT_R},p={SCRYPT_P}"
    return f"{_PREFIX}{params}${_b64(salt)}${_b64(digest)}"


def is_password_hash(text: str) -> bool:
    """True if C{text} looks like a hash made by L{hash_password}."""
    try:
        _parse(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=64)
def _params(params: str) -> tuple[int, int, int]:
    """C{ln=15,r=8,p=1} as (15, 8, 1); nearly every hash has the same, hence the cache (an import of 1,000,000)."""
    values = dict(item.split("=", 1) for item in params.split(","))
    return int(values["ln"]), int(values["r"]), int(values["p"])


def _parse(text: str) -> tuple[int, int, int, bytes, bytes]:
    if not text.startswith(_PREFIX):
        raise ValueError("not an scrypt hash")
    try:
        params, salt, digest = text[len(_PREFIX) :].split("$")
        log2_n, r, p = _params(params)
        salt_raw, digest_raw = _unb64(salt), _unb64(digest)
    except (KeyError, ValueError) as e:
        raise ValueError(f"malformed scrypt hash: {e}") from None
    if not (10 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        raise ValueError("scrypt parameters out of range")
    if len(salt_raw) < 8 or len(digest_raw) != 32:
        raise ValueError("malformed scrypt hash")
    return log2_n, r, p, salt_raw, digest_raw


def verify_password(password: str, password_hash: str | None) -> bool:
    """
    Check C{password} against a hash from L{hash_password}, in constant time.
    A missing or malformed hash never verifies.
    """
    if not password_hash or not password:
        return False
    try:
        log2_n, r, p, salt, digest = _parse(password_hash)
    except ValueError:
        return False
    try:
        raw = password.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if len(raw) > MAX_PASSWORD_LENGTH:
        return False
    return hmac.compare_digest(_scrypt(raw, salt, log2_n, r, p), digest)


def md5_verifier(password: str) -> str:
    """
    The hex MD5 of the password: what GnuDIP checks against and what the
    password-derived TSIG key is made from. Password-equivalent for those
    protocols; keep it only for users who need them.
    """
    return hashlib.md5(_check(password)).hexdigest()


def gnudip_hash(md5_verifier: str, salt: str) -> str:
    """
    GnuDIP's proof of the password for one salt, what a client sends:
    C{md5hex(md5hex(password) + "." + salt)}, computed from the MD5 verifier.
    """
    return hashlib.md5(f"{md5_verifier}.{salt}".encode("ascii")).hexdigest()


def derived_tsig_secret(md5_hex: str) -> str:
    """
    The original plug-in's automatic TSIG secret: base64 of the raw 16-byte
    MD5 of the UTF-8 password.
    """
    return base64.b64encode(bytes.fromhex(md5_hex)).decode("ascii")
