"""
Zone transfers to a real secondary: BIND 9 C{named} (Debian package bind9)
as a secondary of dyn.example.com, transferring from a real C{twistd -n
dyndns} on 127.0.0.1, both on free ports.

What is checked, with C{dig} against the secondary and BIND's own log:

 - the secondary loads the zone (AXFR of the initial version) and serves our
   SOA serial and alice's address;
 - after an update (C{nsupdate} with TSIG) the new address shows on the
   secondary within L{FOLLOW_LIMIT} seconds. The zone's SOA refresh is 3600 s
   (and BIND's min-refresh-time 300 s), so only our NOTIFY can make BIND ask
   that soon; the test also requires BIND's "notify from ...: serial N" line;
 - once it holds the zone, BIND asks by IXFR and our answer is incremental
   ("got incremental response" at C{named -d 3}); no second AXFR;
 - after a restart of our server on the same SQLite store the serial it
   serves is not lower than before, and the next update reaches the secondary
   again by IXFR (the journal survived the restart);
 - with C{[dns.transfer] allow = []} and a TSIG key, an unsigned AXFR is
   refused while BIND, configured with the key (C{primaries { ... key
   "xfr"; }}), transfers; NOTIFY is signed with the same key and accepted.

BIND runs unprivileged (as user C{bind} via C{setpriv} when the tests run as
root) in a temporary directory of its own, listening on 127.0.0.1 only, with
C{notify no;}. Every wait is bounded and both servers are stopped in the
test's cleanup, also on failure.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time

from tests.integration.clients import SUFFIX, DigResult, TSIGKey, dig, replace_address
from tests.integration.harness import LoggedProcess, ServerTestCase, wait_for
from tests.tools import free_port, require_tool

ALICE_SECRET = "uDqEbya3wWm52jDZVATDeiVWvoea5kLu/xPhjpjeEOI="
XFR_SECRET = "2y8mGvYgQ4sF3tAqUwr5bN0f6XcJbZ6hLk9pV1eQm7o="
#: Bound for the secondary to follow a change (NOTIFY, SOA query, IXFR).
#: Far below BIND's refresh (3600 s, never below 300 s), so a change seen
#: in time came by NOTIFY.
FOLLOW_LIMIT = 10.0
#: Bound for named to start listening and for its first transfer.
NAMED_START = 10.0
#: Bound for one named-checkconf run.
CHECKCONF_TIMEOUT = 30.0


class SecondaryNamed(LoggedProcess):
    """
    BIND C{named -f -4 -n 1 -d 3} as the secondary of dyn.example.com on
    127.0.0.1:C{port}, transferring from 127.0.0.1:C{primary_port}
    (with TSIG key C{xfr} when C{key} is given). Its configuration, zone
    copy and log live in C{directory} (owned by user bind when we are root).
    """

    #: The zone it is the secondary of.
    zone = SUFFIX

    def __init__(self, directory: str, port: int, primary_port: int, key: tuple[str, str, str] | None = None) -> None:
        self.directory = directory
        self.port = port
        self.primary_port = primary_port
        self.key = key
        self.conf = os.path.join(directory, "named.conf")
        super().__init__(os.path.join(directory, "named.log"))

    def write_conf(self) -> None:
        keyblock = keyref = ""
        if self.key is not None:
            name, algorithm, secret = self.key
            keyblock = f'key "{name}" {{ algorithm {algorithm}; secret "{secret}"; }};'
            keyref = f' key "{name}"'
        with open(self.conf, "w") as f:
            f.write(f"""// tests/integration: BIND secondary of {self.zone}
options {{
    directory "{self.directory}";
    pid-file none;
    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    allow-query {{ 127.0.0.1; }};
    allow-transfer {{ none; }};
    notify no;
    session-keyfile none;
    managed-keys-directory "{self.directory}";
}};
controls {{ }};
logging {{
    channel to_stderr {{ stderr; severity dynamic; print-time yes;
                        print-category yes; print-severity yes; }};
    category default {{ to_stderr; }};
}};
{keyblock}
zone "{self.zone}" {{
    type secondary;
    primaries {{ 127.0.0.1 port {self.primary_port}{keyref}; }};
    file "{self.zone}.secondary.db";
    masterfile-format text;
    allow-notify {{ 127.0.0.1; }};
}};
""")

    def start(self) -> None:
        """Write the configuration, start named and wait until it answers."""
        program = require_tool("named", "bind9")
        prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                bind = pwd.getpwnam("bind")
            except KeyError:
                raise AssertionError("system user 'bind' missing (apt-get install bind9)") from None
            prefix = ["setpriv", "--reuid=bind", "--regid=bind", "--init-groups", "--"]
        self.write_conf()
        if prefix:
            for root, dirs, files in os.walk(self.directory):
                for entry in [root] + [os.path.join(root, x) for x in dirs + files]:
                    os.chown(entry, bind.pw_uid, bind.pw_gid)
        check = subprocess.run(
            ["named-checkconf", self.conf],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=CHECKCONF_TIMEOUT,
            check=False,
        )
        if check.returncode != 0:
            raise AssertionError(f"named-checkconf failed: {check.stdout}{check.stderr}")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [*prefix, program, "-f", "-4", "-n", "1", "-d", "3", "-c", self.conf],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + NAMED_START
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"named exited with {self.process.returncode}:\n{self.read_log()[-3000:]}")
            if dig(self.port, self.zone, "SOA").status is not None:
                return
            time.sleep(0.05)
        raise AssertionError(f"named did not answer within {NAMED_START} s:\n{self.read_log()[-3000:]}")


def soa_serial(result: DigResult) -> int | None:
    """The serial of the SOA in a dig answer, or None."""
    for data in result.data("SOA"):
        return int(data.split()[2])
    return None


def soa_refresh(result: DigResult) -> int | None:
    for data in result.data("SOA"):
        return int(data.split()[3])
    return None


class WithSecondary(ServerTestCase):
    """Tests that run a BIND secondary (L{SecondaryNamed}) of our server: its tools and folder."""

    tools = (
        ("named", "bind9"),
        ("named-checkconf", "bind9"),
        ("dig", "bind9-dnsutils"),
        ("nsupdate", "bind9-dnsutils"),
    )

    def setUp(self) -> None:
        self.require_tools()
        if os.geteuid() == 0:
            require_tool("setpriv", "util-linux")
        # named (as user bind) must reach its directory: a folder of its
        # own, traversable but not listable by others.
        self.named_root = tempfile.mkdtemp(prefix="dyndns-secondary-")
        self.addCleanup(shutil.rmtree, self.named_root, True)
        os.chmod(self.named_root, 0o711)
        self.secondary_port = free_port()

    @staticmethod
    def transfer_lines(named: SecondaryNamed) -> str:
        """named's log lines about transfers and NOTIFY."""
        return "\n".join(line for line in named.read_log().splitlines() if "xfer-in" in line or "notify" in line)


class SecondaryTests(WithSecondary):
    """Our server as the primary of a real BIND secondary."""

    # -- helpers

    def start_server(self, transfer: dict[str, object], notify_key: str | None = None) -> None:
        """
        Our server with the C{[dns.transfer]} settings C{transfer}, NOTIFY to
        the secondary (signed with C{notify_key}), and alice at 192.0.2.1.
        """
        notify: dict[str, object] = {
            "targets": [f"127.0.0.1:{self.secondary_port}"],
            "retry": 0.5,
            "retries": 5,
        }
        if notify_key is not None:
            notify["key"] = notify_key
        server = self.make_server(avoid_ports=[self.secondary_port], dns={"transfer": transfer, "notify": notify})
        server.add_user("alice", "alice-pw", tsig=("hmac-sha256", ALICE_SECRET), address=["192.0.2.1"])
        server.start()
        self.port = server.port

    def start_secondary(self, key: tuple[str, str, str] | None = None) -> SecondaryNamed:
        folder = os.path.join(self.named_root, "named")
        os.makedirs(folder, exist_ok=True)
        named = SecondaryNamed(folder, self.secondary_port, self.port, key)
        self.addCleanup(named.stop)
        named.start()
        return named

    def our_serial(self) -> int:
        serial = soa_serial(dig(self.port, SUFFIX, "SOA"))
        self.assertIsNotNone(serial, "our server gave no SOA")
        assert serial is not None
        return serial

    def update_alice(self, address: str) -> None:
        """nsupdate with alice's key; must succeed (exit 0, NOERROR)."""
        key = TSIGKey("hmac-sha256", f"alice.{SUFFIX}.", ALICE_SECRET)
        self.assertUpdates(key, replace_address(f"alice.{SUFFIX}", "A", address))

    def wait_new_serial(self, old: int) -> int:
        """Our server's serial once it is above C{old} (bounded)."""

        def newer() -> int | None:
            serial = soa_serial(dig(self.port, SUFFIX, "SOA"))
            return serial if serial is not None and serial > old else None

        serial, waited = wait_for(newer, 5.0, 0.05)
        self.assertIsInstance(serial, int, f"our serial did not move past {old} in {waited:.1f} s")
        assert isinstance(serial, int)
        return serial

    def assertFollows(self, named: SecondaryNamed, serial: int, address: str) -> None:
        """
        Within FOLLOW_LIMIT the secondary serves C{serial} and alice at
        C{address}.
        """

        def caught_up() -> bool:
            soa = dig(self.secondary_port, SUFFIX, "SOA")
            if soa_serial(soa) != serial:
                return False
            return dig(self.secondary_port, f"alice.{SUFFIX}", "A").data("A") == [address]

        ok, waited = wait_for(caught_up, FOLLOW_LIMIT, 0.05)
        self.assertTrue(
            ok,
            f"secondary not at serial {serial} with alice {address} after {waited:.1f} s: "
            f"SOA {dig(self.secondary_port, SUFFIX, 'SOA').data('SOA')}, "
            f"alice {dig(self.secondary_port, f'alice.{SUFFIX}', 'A').data('A')}\n" + self.transfer_lines(named),
        )
        soa = dig(self.secondary_port, SUFFIX, "SOA")
        self.assertIn("aa", soa.flags, soa.output)

    def assertNotified(self, named: SecondaryNamed, serial: int) -> None:
        """BIND logged our NOTIFY for C{serial}."""
        pattern = re.compile(rf"zone {re.escape(SUFFIX)}/IN: notify from 127\.0\.0\.1#\d+: serial {serial}\b")
        self.assertRegex(named.read_log(), pattern)

    def assertIncrementalSince(self, named: SecondaryNamed, log_offset: int, transfers: int) -> None:
        """
        Since C{log_offset} of BIND's log: at least C{transfers} completed
        transfers, each one an IXFR answered incrementally, no AXFR.
        """
        log = named.read_log()[log_offset:]
        completed = re.findall(
            rf"transfer of '{re.escape(SUFFIX)}/IN' from 127\.0\.0\.1#{self.port}: "
            r"Transfer completed",
            log,
        )
        self.assertGreaterEqual(len(completed), transfers, self.transfer_lines(named))
        self.assertGreaterEqual(log.count("requesting IXFR for serial"), len(completed), log)
        self.assertEqual(log.count("got incremental response"), len(completed), self.transfer_lines(named))
        self.assertNotIn("got nonincremental response", log)
        self.assertNotIn("requesting AXFR", log)

    # -- the tests

    def test_notify_ixfr_and_restart(self) -> None:
        """
        Address-based ACL: BIND loads the zone by AXFR, follows each update by
        NOTIFY + IXFR, also after a restart of our server (serial never
        lower, journal kept).
        """
        self.start_server({"allow": ["127.0.0.1"]})
        server = self.server
        serial0 = self.our_serial()
        ours = dig(self.port, SUFFIX, "SOA")
        self.assertEqual(soa_refresh(ours), 3600, ours.output)

        named = self.start_secondary()
        self.assertFollows(named, serial0, "192.0.2.1")
        log = named.read_log()
        self.assertIn("requesting AXFR of initial version", log)
        self.assertEqual(soa_refresh(dig(self.secondary_port, SUFFIX, "SOA")), 3600)

        # Two updates: each reaches the secondary by NOTIFY and IXFR.
        offset = len(log)
        serial = serial0
        for address in ("192.0.2.2", "192.0.2.3"):
            self.update_alice(address)
            serial = self.wait_new_serial(serial)
            self.assertFollows(named, serial, address)
            self.assertNotified(named, serial)
        self.assertIncrementalSince(named, offset, 2)

        # Restart ours on the same configuration and store.
        server.stop()
        server.start()
        restarted = self.our_serial()
        self.assertGreaterEqual(restarted, serial)
        self.assertEqual(dig(self.port, f"alice.{SUFFIX}", "A").data("A"), ["192.0.2.3"])

        offset = len(named.read_log())
        self.update_alice("192.0.2.4")
        after = self.wait_new_serial(restarted)
        self.assertGreater(after, serial)
        self.assertFollows(named, after, "192.0.2.4")
        self.assertNotified(named, after)
        self.assertIncrementalSince(named, offset, 1)

    def test_tsig_transfer_and_signed_notify(self) -> None:
        """
        Key-only ACL: unsigned AXFR is refused, BIND with the key transfers
        and follows signed NOTIFYs by signed IXFR.
        """
        self.start_server(
            {"allow": [], "keys": [{"name": "xfr", "algorithm": "hmac-sha256", "secret": XFR_SECRET}]},
            notify_key="xfr",
        )
        serial0 = self.our_serial()

        unsigned = dig(self.port, SUFFIX, "AXFR", "+tcp")
        self.assertNotIn("SOA", unsigned.data(), unsigned.output)
        self.assertIn("Transfer failed", unsigned.output + unsigned.error)
        # dig verifies the TSIG of every message of a signed transfer.
        signed = dig(self.port, SUFFIX, "AXFR", "-y", f"hmac-sha256:xfr:{XFR_SECRET}")
        self.assertRegex(signed.output, rf"(?m)^alice\.{re.escape(SUFFIX)}\.\s+\d+\s+IN\s+A\s+192\.0\.2\.1$")
        self.assertNotIn("failed", signed.output + signed.error)

        named = self.start_secondary(("xfr", "hmac-sha256", XFR_SECRET))
        self.assertFollows(named, serial0, "192.0.2.1")
        offset = len(named.read_log())

        self.update_alice("192.0.2.9")
        serial = self.wait_new_serial(serial0)
        self.assertFollows(named, serial, "192.0.2.9")
        self.assertNotified(named, serial)
        log = named.read_log()
        # BIND names the key of a signed NOTIFY it accepted, and of the
        # transfers (the SOA check before them is signed too: BIND drops an
        # unsigned answer to it with "expected a TSIG or SIG(0)").
        self.assertIn(f"received notify for zone '{SUFFIX}': TSIG 'xfr'", log[offset:])
        self.assertIn(f"transferred serial {serial0}: TSIG 'xfr'", log[:offset])
        self.assertIn(f"transferred serial {serial}: TSIG 'xfr'", log[offset:])
        self.assertNotIn("expected a TSIG", log)
        self.assertIncrementalSince(named, offset, 1)
