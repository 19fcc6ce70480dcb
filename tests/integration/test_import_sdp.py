"""
C{dyndns import-sdp} end to end: the sample plug-in files of
tests/fixtures/sdp imported by the real CLI into an SQLite store, then a real
C{twistd -n dyndns} (DNS and HTTP on 127.0.0.1) serves the imported state to
C{dig}, and the imported users update with their original credentials: the
plain password over HTTP (URL authentication and C{/nic/update} with Basic
auth) and the original's TSIG keys with the real C{nsupdate} (HMAC-MD5, key
name = user id; secret = C{TSIGKeyValue}, or base64(MD5(password)) when the
file has none).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from urllib.parse import urlencode

from tests.integration.clients import (
    SUFFIX,
    TSIGKey,
    get_request,
    http_exchange,
    replace_address,
)
from tests.integration.harness import CHANGE_LIMIT, ServerTestCase
from tests.tools import fixture_path, require_tool

FIXTURES = fixture_path("sdp")
CONFIG_XML = os.path.join(FIXTURES, "config.xml")
STATE_XML = os.path.join(FIXTURES, "state.xml")
#: From config.xml.
ALICE_KEY = "YWxpY2UtdHNpZy1rZXktMDEyMzQ1Njc4OWFiY2RlZiE="
BOB_PASSWORD = "b0b pass"
ERIN_PASSWORD = "erin-pw"
FRANK_PASSWORD = "frank:pw&1"


class ImportSDPTests(ServerTestCase):
    """A fresh configuration (DNS and HTTP on 127.0.0.1, base path C{/dyndns/}) per test."""

    #: The CLI test needs no program; the server test asks for dig and nsupdate itself.
    tools = ()

    def setUp(self) -> None:
        self.server = self.make_server(listeners=("http",))
        self.config = self.server.config
        self.base_url = f"http://127.0.0.1:{self.server.http_port}/dyndns/"

    def export(self) -> dict:
        return json.loads(self.server.cli("export"))

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.server.directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_cli_summary_errors_and_replace(self) -> None:
        """
        The summary names the warnings (the sample has GnuDIP TCP on and
        HTTP GnuDIP off, and another base URL) and the counts; a broken file
        exits 1 with FILE: where: problem and writes nothing; a second import
        needs --replace.
        """
        with open(CONFIG_XML, encoding="utf-8") as f:
            good = f.read()
        broken = self.write("broken.xml", good.replace(
            'ID="carol" Password="carol-pw"', 'ID="carol" Password="carol-pw" OfflineIP="x"'))
        empty = self.export()
        rc, out, err = self.server.run_cli("import-sdp", broken, STATE_XML)
        self.assertEqual((rc, out), (1, ""))
        self.assertEqual(err, f"dyndns: {broken}: User 'carol' (line 8): OfflineIP: "
                              "'x' is not an IP address\n")
        self.assertEqual(self.export(), empty)

        other_suffix = self.write("other.xml", good.replace(
            'Suffix="dyn.example.com"', 'Suffix="dyn.example.org"'))
        rc, out, err = self.server.run_cli("import-sdp", other_suffix)
        self.assertEqual(rc, 1)
        self.assertIn(f"{other_suffix}: config (line 2): Suffix 'dyn.example.org' is not our "
                      f"suffix '{SUFFIX}'", err)

        out = self.server.cli("import-sdp", CONFIG_XML, STATE_XML)
        self.assertEqual(out.splitlines(), [
            "warning: UpMeGnuDIP=true: GnuDIP over TCP is on in the original but off here "
            "(gnudip.listen)",
            "warning: UpMeHTTPGnuDIP=false: HTTP GnuDIP is off in the original but on here "
            "(http.methods.gnudip)",
            "warning: BaseURL='http://www.example.com/dyndns/': the original's base URL "
            f"differs from http.base_url '{self.base_url}' (clients use the old URL)",
            f"imported 6 users and 5 states from {CONFIG_XML}, {STATE_XML}; 3 warnings",
        ])
        document = self.export()
        users = {u["id"]: u for u in document["users"]}
        self.assertEqual(sorted(users), ["alice", "bob", "carol", "dave", "erin", "frank"])
        self.assertEqual(users["carol"]["notes"], 'router & modem <rack 2> "blue" café')
        self.assertEqual(users["carol"]["state"]["offline"], True)

        rc, out, err = self.server.run_cli("import-sdp", CONFIG_XML)
        self.assertEqual(rc, 1)
        self.assertEqual(err, f"dyndns: {CONFIG_XML}: User: 6 of these users exist already: "
                              "alice, bob, carol, dave, erin, frank (give --replace to "
                              "replace them)\n")
        self.assertEqual(self.export(), document)
        out = self.server.cli("import-sdp", "--replace", CONFIG_XML)
        self.assertIn(f"imported 6 users (6 replaced) and 0 states from {CONFIG_XML}; "
                      "3 warnings", out)
        after = {u["id"]: u for u in self.export()["users"]}
        self.assertEqual(after["alice"]["state"], users["alice"]["state"],
                         "replaced without a state file: the state is kept")
        self.assertNotEqual(after["alice"]["password_hash"], users["alice"]["password_hash"])

    # -- with a server

    def addresses(self, name: str, rtype: str = "A") -> list[str]:
        result = self.served(name, rtype)
        self.assertIn(result.status, ("NOERROR", "NXDOMAIN"), result.output or result.error)
        return result.data(rtype)

    def test_served_and_updated_with_original_credentials(self) -> None:
        require_tool("dig", "bind9-dnsutils")
        require_tool("nsupdate", "bind9-dnsutils")
        self.server.cli("import-sdp", CONFIG_XML, STATE_XML)
        self.server.start()

        # The state file's addresses and TTLs.
        result = self.served(f"alice.{SUFFIX}", "A")
        self.assertEqual(result.data("A"), ["198.51.100.7"], result.output)
        self.assertEqual([r.ttl for r in result.answer], [60])
        for name in (f"bob.{SUFFIX}", "bob.example.org", "www.bob.example.net"):
            self.assertEqual(self.addresses(name), ["198.51.100.8"], name)
        self.assertEqual(self.addresses(f"erin.{SUFFIX}", "AAAA"), ["2001:db8::7"])
        self.assertEqual(self.addresses(f"erin.{SUFFIX}", "A"), [])
        # carol is offline without an offline IP and frank has no state: the
        # names exist without an address; dave is disabled: no such name.
        for user_id, status in (("carol", "NOERROR"), ("frank", "NOERROR"), ("dave", "NXDOMAIN")):
            result = self.served(f"{user_id}.{SUFFIX}", "A")
            self.assertEqual((result.status, result.data("A")), (status, []), result.output)

        # HTTP, URL authentication, with frank's plain password (":" and "&").
        query = urlencode({"user": "frank", "pw": FRANK_PASSWORD, "ip": "192.0.2.61"})
        response = http_exchange(self.server.http_port, get_request(f"/dyndns/ddns?{query}"))
        self.assertEqual(response.status, 200, response.raw)
        self.assertIn("<h1>OK: 192.0.2.61</h1>", response.text)
        self.assertServes(f"frank.{SUFFIX}", "A", ["192.0.2.61"], within=CHANGE_LIMIT)

        # /nic/update with Basic authentication, erin (ID="Erin" in the file).
        response = http_exchange(self.server.http_port, get_request(
            f"/nic/update?hostname=erin.{SUFFIX}&myip=192.0.2.62", "erin", ERIN_PASSWORD))
        self.assertEqual((response.status, response.text), (200, "good 192.0.2.62\n"))
        self.assertServes(f"erin.{SUFFIX}", "A", ["192.0.2.62"], within=CHANGE_LIMIT)
        wrong = http_exchange(self.server.http_port, get_request(
            f"/nic/update?hostname=erin.{SUFFIX}&myip=192.0.2.99", "erin", "Erin-pw"))
        self.assertEqual(wrong.status, 401)

        # nsupdate, HMAC-MD5, key name = user id: bob's key is the original's
        # automatic base64(MD5(password)); alice's is her TSIGKeyValue.
        bob_secret = base64.b64encode(hashlib.md5(BOB_PASSWORD.encode()).digest()).decode()
        self.assertUpdates(TSIGKey("hmac-md5", "bob", bob_secret),
                           replace_address(f"bob.{SUFFIX}", "A", "192.0.2.63"))
        self.assertServes("bob.example.org", "A", ["192.0.2.63"], within=CHANGE_LIMIT)
        self.assertUpdates(TSIGKey("hmac-md5", "alice", ALICE_KEY),
                           replace_address(f"alice.{SUFFIX}", "A", "192.0.2.64"))
        self.assertServes(f"alice.{SUFFIX}", "A", ["192.0.2.64"], within=CHANGE_LIMIT)

        # Untouched users still show the import as their last change.
        status = {row["user"]: row for row in json.loads(self.server.cli("status", "--json"))}
        self.assertEqual((status["carol"]["state"], status["carol"]["method"]),
                         ("offline", "import-sdp"))
        self.assertEqual(status["dave"]["state"], "disabled")
        self.assertNotEqual(status["bob"]["method"], "import-sdp")
