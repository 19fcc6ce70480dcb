"""
GnuDIP over HTTP: C{<base>gnudip} and any path ending in
C{/gnudip/cgi-bin/gdipupdt.cgi}.

Step 1, a GET without a query string, answers the salt page: a fresh salt,
the time, and a signature over both with a key that survives restarts, so
the server keeps no state between the steps. Step 2 carries the salt, time
and signature back with the user's hash; it is refused if the signature is
wrong, the time is in the future or older than the window (60 s), or the
salt was already used (the original and the reference server accept a
captured URL again within the window). Meta lines are LF-terminated, one
per line, exactly as the reference client's anchored regex wants them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web import server

from dyndns_plugin.authn import Authenticator, CredentialChecker, authenticator_for
from dyndns_plugin.methods import Method
from dyndns_plugin.protocols.gnudip import (
    RETC_FAILED,
    RETC_OFFLINE,
    RETC_OK,
    SALT_ALPHABET,
    SALT_LENGTH,
    GnuDIPRequest,
    make_salt,
    perform,
)
from dyndns_plugin.service import DynDNSService
from dyndns_plugin.web.base import AsyncResource
from dyndns_plugin.web.common import ClientAddressDetector, arg, finish

KEY_LENGTH = 32
METHOD = Method.GNUDIP_HTTP

_MESSAGES = {
    RETC_OK: "Successful update request",
    RETC_OFFLINE: "Successful offline request",
    RETC_FAILED: "Error: Invalid login attempt",
}


def load_or_create_key(path: str) -> bytes:
    """The signing key in C{path}, made (mode 0600) on first use."""
    try:
        with open(path, "rb") as f:
            key = f.read()
        if len(key) >= KEY_LENGTH:
            return key
    except FileNotFoundError:
        pass
    key = os.urandom(KEY_LENGTH)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


class SaltSigner:
    """Issues signed salts and checks them once (replay protection)."""

    def __init__(self, key: bytes, clock: IReactorTime, window: int = 60, salt_source: Any = make_salt) -> None:
        self.key = key
        self.clock = clock
        self.window = window
        self.salt_source = salt_source
        self._used: dict[str, float] = {}

    def sign(self, salt: str, time: str) -> str:
        mac = hmac.new(self.key, f"{salt}.{time}".encode("ascii"), hashlib.sha256)
        return mac.hexdigest()[:32]

    def issue(self) -> tuple[str, str, str]:
        salt = self.salt_source()
        time = str(int(self.clock.seconds()))
        return salt, time, self.sign(salt, time)

    def redeem(self, salt: str, time: str, sign: str) -> str | None:
        """
        None if the salt may be used now (and marks it used), else why not.
        C{time} must be ASCII digits: C{str.isdigit} also accepts e.g. U+00B2,
        which the ASCII signing cannot encode (a 500 instead of retc 1).
        """
        if (
            len(salt) != SALT_LENGTH
            or any(c not in SALT_ALPHABET for c in salt)
            or not (time.isascii() and time.isdigit() and len(time) <= 20)
            or not sign.isascii()
        ):
            return "Error: Invalid query string"
        if not hmac.compare_digest(self.sign(salt, time), sign.lower()):
            return "Error: Invalid signature"
        now = self.clock.seconds()
        issued = int(time)
        if issued > now + 1:
            return "Error: Salt time is in the future"
        if now > issued + self.window:
            return "Error: Salt value too old"
        self._prune(now)
        if salt in self._used:
            return "Error: Salt value already used"
        self._used[salt] = issued + self.window
        return None

    def _prune(self, now: float) -> None:
        expired = [s for s, until in self._used.items() if until < now]
        for salt in expired:
            del self._used[salt]


def _page(lines: list[str], message: str) -> bytes:
    meta = "".join(f"{line}\n" for line in lines)
    return (f"<html><head><title>GnuDIP Update Server</title>\n{meta}</head><body>{message}</body></html>\n").encode(
        "ascii"
    )


class GnuDIPResource(AsyncResource):
    def __init__(
        self,
        service: DynDNSService,
        checker: CredentialChecker | Authenticator,
        detector: ClientAddressDetector,
        signer: SaltSigner,
    ) -> None:
        super().__init__()
        self.service = service
        self.auth = authenticator_for(checker, service)
        self.detector = detector
        self.signer = signer

    def _answer(self, request: server.Request, retc: int, message: str, address: Any = None) -> None:
        lines = [f'<meta name="retc" content="{retc}">']
        if address is not None:
            lines.append(f'<meta name="addr" content="{address}">')
        finish(request, _page(lines, message), b"text/html")

    async def handle(self, request: server.Request) -> None:
        if b"?" not in (request.uri or b""):
            salt, time, sign = self.signer.issue()
            lines = [
                f'<meta name="salt" content="{salt}">',
                f'<meta name="time" content="{time}">',
                f'<meta name="sign" content="{sign}">',
            ]
            return finish(request, _page(lines, "Salt generated"), b"text/html")
        values = {k: arg(request, k) for k in ("salt", "time", "sign", "user", "pass", "domn", "reqc")}
        missing = [k for k, v in values.items() if not v]
        if missing or values["reqc"] not in ("0", "1", "2"):
            return self._answer(request, RETC_FAILED, "Error: Invalid query string")
        client = self.detector.detect(request)
        problem = self.signer.redeem(values["salt"], values["time"], values["sign"])  # type: ignore[arg-type]
        if problem is not None:
            # A forged, stale or replayed salt counts like a wrong password.
            self.auth.failed(METHOD, None if client is None else str(client), None)
            return self._answer(request, RETC_FAILED, problem)
        gnudip_request = GnuDIPRequest(
            user=values["user"],  # type: ignore[arg-type]
            hash=values["pass"],  # type: ignore[arg-type]
            domain=values["domn"],  # type: ignore[arg-type]
            code=int(values["reqc"]),  # type: ignore[arg-type]
            address=arg(request, "addr") or None,
        )
        outcome = await perform(
            self.service,
            self.auth,
            gnudip_request,
            values["salt"],  # type: ignore[arg-type]
            client,
            METHOD,
            peer_fallback=False,
        )
        self._answer(request, outcome.retc, _MESSAGES[outcome.retc], outcome.address)
