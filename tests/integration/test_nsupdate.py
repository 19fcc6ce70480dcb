"""
RFC 2136 UPDATE end to end: the real C{nsupdate} (bind9-dnsutils) against a
real C{twistd -n dyndns} on a free port of 127.0.0.1, users made with the
C{dyndns} CLI, every result checked with C{dig}.

nsupdate verifies the TSIG of our replies itself: with C{-D} it prints
"tsig verification successful" for a reply that verifies, and complains
("expected a TSIG", "tsig verify failure", "TSIG error") otherwise; the
tests require the first and none of the others, for NOERROR and for the
signed errors (REFUSED, YXDOMAIN) alike. C{-v} makes nsupdate use TCP.
Every nsupdate run is bounded by its own C{-t}/C{-u}/C{-r} and by a
subprocess timeout.
"""

from __future__ import annotations

import attrs

from tests.integration.clients import SUFFIX, nsupdate, replace_address
from tests.integration.harness import ServerTestCase

ALICE_SECRET = "uDqEbya3wWm52jDZVATDeiVWvoea5kLu/xPhjpjeEOI="
BOB_SECRET = "im0YbgVkPaSjZVgiP9dmHQ=="
CAROL_SECRET = (
    "BBEukoNbAWn6u8b7iF9mCrt/KFeCLUzrLgy+hWb3vzCApXWItEbaWvABp7+PzG/EapOA1aox+AlS683bcKPLSA=="
)
DAVE_PASSWORD = "dave-pa55"
CAROL_OFFLINE_IP = "192.0.2.200"
#: What nsupdate prints when a reply's TSIG is missing or does not verify.
TSIG_COMPLAINTS = ("TSIG error", "expected a TSIG", "tsig verify failure")


class NsupdateTests(ServerTestCase):
    """
    A server with alice (hmac-sha256), bob (hmac-md5), carol (hmac-sha512,
    offline IP) and dave (hmac-md5 from his password), all never updated.
    """

    tools = (("nsupdate", "bind9-dnsutils"), ("dig", "bind9-dnsutils"))

    def setUp(self):
        server = self.make_server()
        self.keys = {
            "alice": server.add_user("alice", "alice-pw", tsig=("hmac-sha256", ALICE_SECRET)).tsig,
            "bob": server.add_user("bob", "bob-pw", tsig=("hmac-md5", BOB_SECRET)).tsig,
            "carol": server.add_user("carol", "carol-pw", tsig=("hmac-sha512", CAROL_SECRET),
                                     offline_ip=[CAROL_OFFLINE_IP]).tsig,
            "dave": server.add_user("dave", DAVE_PASSWORD, tsig_from_password=True).tsig,
        }
        server.start()

    def nsupdate(self, user: str, commands: list[str], tcp: bool = False,
                 key_name: str | None = None, secret: str | None = None) -> tuple[int, str]:
        """
        Run nsupdate (C{-D}) with C{user}'s key (named C{<user>.<suffix>.}
        unless C{key_name}; its secret unless C{secret}) on C{commands};
        returns (exit code, all it printed).
        """
        key = self.keys[user]
        key = attrs.evolve(key, name=key_name or key.name, secret=secret or key.secret)
        return nsupdate(self.server.port, key, commands, tcp=tcp, debug=True)

    def assertReply(self, output: str, status: str) -> None:
        """nsupdate got a reply with C{status} and verified its TSIG."""
        self.assertIn("Reply from update query:", output)
        reply = output.split("Reply from update query:", 1)[1]
        self.assertIn(f"status: {status}", reply)
        self.assertIn("TSIG PSEUDOSECTION", reply)
        self.assertIn("tsig verification successful", output)
        for complaint in TSIG_COMPLAINTS:
            self.assertNotIn(complaint.lower(), output.lower())

    def update(self, user: str, commands: list[str], tcp: bool = False, **kwargs: str) -> None:
        """An nsupdate run that must succeed: exit 0, NOERROR, TSIG verified."""
        rc, output = self.nsupdate(user, commands, tcp, **kwargs)
        self.assertEqual(rc, 0, output)
        self.assertReply(output, "NOERROR")

    def assertServes(self, name: str, rtype: str, data: list[str], ttl: int | None = None) -> None:
        result = super().assertServes(name, rtype, data)
        self.assertIn("aa", result.flags)
        if ttl is not None:
            self.assertEqual([r.ttl for r in result.answer], [ttl] * len(data))

    def set_address(self, user: str, rtype: str, address: str, ttl: int = 60) -> list[str]:
        return replace_address(f"{user}.{SUFFIX}", rtype, address, ttl)

    def test_hmac_sha256_udp_a(self):
        """hmac-sha256 over UDP sets alice's A; dig sees it with the update's TTL."""
        self.update("alice", self.set_address("alice", "A", "192.0.2.7", ttl=120))
        self.assertServes(f"alice.{SUFFIX}", "A", ["192.0.2.7"], ttl=120)
        self.assertServes(f"alice.{SUFFIX}", "AAAA", [])

    def test_hmac_sha256_tcp_aaaa(self):
        """hmac-sha256 over TCP sets alice's AAAA; dig over TCP sees it."""
        self.update("alice", self.set_address("alice", "AAAA", "2001:db8::7"), tcp=True)
        result = self.served(f"alice.{SUFFIX}", "AAAA", "+tcp")
        self.assertEqual(result.data("AAAA"), ["2001:db8::7"], result.output)

    def test_hmac_md5_udp_and_tcp(self):
        """hmac-md5 (bob) over UDP for A, then over TCP for AAAA: both served."""
        self.update("bob", self.set_address("bob", "A", "192.0.2.8"))
        self.update("bob", self.set_address("bob", "AAAA", "2001:db8::8"), tcp=True)
        self.assertServes(f"bob.{SUFFIX}", "A", ["192.0.2.8"], ttl=60)
        self.assertServes(f"bob.{SUFFIX}", "AAAA", ["2001:db8::8"], ttl=60)

    def test_hmac_sha512_tcp_and_udp(self):
        """hmac-sha512 (carol) A and AAAA in one message over TCP, then A again over UDP."""
        self.update("carol", [
            *self.set_address("carol", "A", "192.0.2.10"),
            *self.set_address("carol", "AAAA", "2001:db8::10"),
        ], tcp=True)
        self.assertServes(f"carol.{SUFFIX}", "A", ["192.0.2.10"])
        self.assertServes(f"carol.{SUFFIX}", "AAAA", ["2001:db8::10"])
        self.update("carol", self.set_address("carol", "A", "192.0.2.11"))
        self.assertServes(f"carol.{SUFFIX}", "A", ["192.0.2.11"])
        self.assertServes(f"carol.{SUFFIX}", "AAAA", ["2001:db8::10"])

    def test_short_key_name_password_derived(self):
        """dave's key C{dave.}, secret base64(MD5(password)), hmac-md5: accepted."""
        self.update("dave", self.set_address("dave", "A", "192.0.2.12"), key_name="dave.")
        self.assertServes(f"dave.{SUFFIX}", "A", ["192.0.2.12"])

    def test_delete_rrsets_takes_offline(self):
        """Deleting alice's A and AAAA RRsets takes her offline: dig sees no address."""
        self.update("alice", [
            *self.set_address("alice", "A", "192.0.2.7"),
            *self.set_address("alice", "AAAA", "2001:db8::7"),
        ])
        self.assertServes(f"alice.{SUFFIX}", "A", ["192.0.2.7"])
        self.update("alice", [f"update delete alice.{SUFFIX} A"], tcp=True)
        self.assertServes(f"alice.{SUFFIX}", "A", [])
        self.assertServes(f"alice.{SUFFIX}", "AAAA", ["2001:db8::7"])
        self.update("alice", [f"update delete alice.{SUFFIX} AAAA"])
        self.assertServes(f"alice.{SUFFIX}", "A", [])
        self.assertServes(f"alice.{SUFFIX}", "AAAA", [])
        status = self.server.cli("status")
        [line] = [line for line in status.splitlines() if line.split()[:1] == ["alice"]]
        self.assertIn("offline", line)

    def test_delete_name_offline_ip(self):
        """C{update delete NAME} takes carol offline: dig sees her offline IP."""
        self.update("carol", self.set_address("carol", "A", "192.0.2.10"))
        self.assertServes(f"carol.{SUFFIX}", "A", ["192.0.2.10"])
        self.update("carol", [f"update delete carol.{SUFFIX}"], tcp=True)
        self.assertServes(f"carol.{SUFFIX}", "A", [CAROL_OFFLINE_IP])

    def test_foreign_name_refused_signed(self):
        """alice's key for bob's name: REFUSED, signed (nsupdate verifies it), bob unchanged."""
        self.update("bob", self.set_address("bob", "A", "192.0.2.8"))
        rc, output = self.nsupdate("alice", self.set_address("bob", "A", "192.0.2.66"))
        self.assertNotEqual(rc, 0)
        self.assertReply(output, "REFUSED")
        self.assertServes(f"bob.{SUFFIX}", "A", ["192.0.2.8"])

    def test_prerequisite_failed_signed(self):
        """C{prereq nxdomain} for alice's own name: YXDOMAIN, signed, nothing changed."""
        rc, output = self.nsupdate("alice", [
            f"prereq nxdomain alice.{SUFFIX}",
            *self.set_address("alice", "A", "192.0.2.7"),
        ])
        self.assertNotEqual(rc, 0)
        self.assertReply(output, "YXDOMAIN")
        self.assertServes(f"alice.{SUFFIX}", "A", [])

    def test_wrong_secret(self):
        """A wrong secret: nsupdate reports BADSIG, nothing changes."""
        rc, output = self.nsupdate("alice", self.set_address("alice", "A", "192.0.2.66"),
                                   secret=BOB_SECRET)
        self.assertNotEqual(rc, 0)
        reply = output.split("Reply from update query:", 1)[1]
        self.assertIn("status: NOTAUTH", reply)
        self.assertIn("BADSIG", reply)
        self.assertServes(f"alice.{SUFFIX}", "A", [])
