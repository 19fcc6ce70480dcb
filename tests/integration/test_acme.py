"""
Certificates for users' names, end to end: a real C{twistd dyndns}, the
ACME test CA pebble validating DNS-01 challenges against it, and real
clients putting the challenge TXT records there: certbot with its rfc2136
plugin and lego's rfc2136 provider (alice's TSIG key), lego's httpreq
provider (HTTP Basic with a scoped ACME key), and certbot with an acme-dns
auth hook (C{X-Api-User}/C{X-Api-Key} with a scoped key; Debian's lego is
built without its acme-dns provider, so the client is the API as acme-dns
documents it). Each issuance is checked: the certificate names exactly the
asked names and chains to this run's pebble root; the TXT records are gone
afterwards (acme-dns has no delete: its values stay until they expire);
and the user's address was never touched.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from typing import Any, ClassVar

from tests.integration.acme_clients import (
    Pebble,
    assert_chains_to,
    certbot_acme_dns,
    certbot_rfc2136,
    certificate_names,
    lego_httpreq_env,
    lego_rfc2136_env,
    lego_run,
    read_chain,
)
from tests.integration.clients import require_loopback_guard, run_curl
from tests.integration.harness import BASE_PATH, Account, Server, SharedServerTestCase, wait_for

ALGORITHM = "hmac-sha256"
SECRET = base64.b64encode(b"alice's 32-byte TSIG secret!!!!!").decode()
ADDRESS = "192.0.2.40"


class CertificateTests(SharedServerTestCase):
    """One server and one pebble for the class; a client run per test."""

    server_options: ClassVar[dict[str, Any]] = {"listeners": ("http",), "limits": {"enabled": False}}
    tools = (
        ("dig", "bind9-dnsutils"),
        ("curl", "curl"),
        ("pebble", "pebble"),
        ("certbot", "certbot"),
        ("lego", "lego"),
    )
    alice: ClassVar[Account]
    scoped_key: ClassVar[str]
    pebble: ClassVar[Pebble]
    directory: ClassVar[str]

    @classmethod
    def prepare(cls, server: Server) -> None:
        cls.alice = server.add_user("alice", "alice-pw", tsig=(ALGORITHM, SECRET), address=[ADDRESS])
        added = server.cli("acme-key", "add", "alice", "--label", "web server")
        (cls.scoped_key,) = [line.split(": ", 1)[1] for line in added.splitlines() if line.startswith("secret: ")]

    @classmethod
    def setUpClass(cls) -> None:
        require_loopback_guard()
        super().setUpClass()
        cls.directory = tempfile.mkdtemp(prefix="dyndns-acme-")
        cls.pebble = Pebble(os.path.join(cls.directory, "pebble"))
        try:
            cls.pebble.start(cls.server.port)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.pebble.stop()
        shutil.rmtree(cls.directory, ignore_errors=True)
        super().tearDownClass()

    def workdir(self, name: str) -> str:
        path = os.path.join(self.directory, name)
        os.makedirs(path, exist_ok=True)
        return path

    @property
    def domains(self) -> list[str]:
        return [self.alice.name, f"*.{self.alice.name}"]

    def assertIssued(self, certificate: str) -> None:
        chain = read_chain(certificate)
        self.assertEqual(certificate_names(chain[0]), sorted(self.domains))
        assert_chains_to(chain, self.pebble.root_pem())

    def assertCleanedUp(self) -> None:
        """No challenge TXT left (served or stored), and the address as it was."""
        challenge = f"_acme-challenge.{self.alice.name}"
        wait_for(lambda: self.served(challenge, "TXT").status == "NXDOMAIN", 5)
        self.assertServes(self.alice.name, "A", [ADDRESS])
        self.assertNotIn(challenge, self.server.cli("txt", "list", "alice"))

    def tearDown(self) -> None:
        self.server.cli("txt", "clear", "alice", self.alice.name)  # what a client left (acme-dns never deletes)

    def test_certbot_rfc2136(self) -> None:
        """certbot-dns-rfc2136 with alice's key: SOA lookups signed over TCP, TXT added and deleted."""
        key = self.alice.tsig
        assert key is not None
        run = certbot_rfc2136(
            self.pebble, self.workdir("certbot"), self.domains, self.server.port, key.name, key.secret, ALGORITHM
        )
        self.assertIssued(run.check())
        self.assertCleanedUp()

    def test_lego_rfc2136(self) -> None:
        """lego's rfc2136 provider: delete-then-add over UDP, TXT looked up at our server."""
        key = self.alice.tsig
        assert key is not None
        env = lego_rfc2136_env(self.server.port, key.name, key.secret, ALGORITHM)
        run = lego_run(self.pebble, self.workdir("lego-rfc2136"), self.domains, "rfc2136", env, self.server.port)
        self.assertIssued(run.check())
        self.assertCleanedUp()

    def test_lego_httpreq(self) -> None:
        """lego's httpreq provider with alice's scoped key: /present and /cleanup under the HTTP root."""
        endpoint = f"http://127.0.0.1:{self.server.http_port}{BASE_PATH}acme"
        env = lego_httpreq_env(endpoint, "alice", self.scoped_key)
        run = lego_run(self.pebble, self.workdir("lego-httpreq"), self.domains, "httpreq", env, self.server.port)
        self.assertIssued(run.check())
        self.assertCleanedUp()

    def test_certbot_acme_dns(self) -> None:
        """
        The acme-dns API with alice's scoped key: both values (the name and
        its wildcard) at _acme-challenge.alice at once, the two newest kept.
        """
        api = f"http://127.0.0.1:{self.server.http_port}{BASE_PATH}acme-dns/"
        run = certbot_acme_dns(
            self.pebble, self.workdir("acme-dns"), self.domains, api, "alice", self.scoped_key, "alice"
        )
        self.assertIssued(run.check())
        values = self.served(f"_acme-challenge.{self.alice.name}", "TXT").data("TXT")
        self.assertEqual(len(values), 2, values)
        self.assertServes(self.alice.name, "A", [ADDRESS])

    def test_scoped_key_cannot_move_the_address(self) -> None:
        """The scoped key is no password for the address methods."""
        url = f"http://127.0.0.1:{self.server.http_port}/nic/update?hostname={self.alice.name}&myip=192.0.2.99"
        rc, response, err = run_curl("-u", f"alice:{self.scoped_key}", url)
        self.assertEqual(rc, 0, err)
        assert response is not None
        self.assertEqual(response.body.strip(), b"badauth")
        self.assertServes(self.alice.name, "A", [ADDRESS])
