"""
Several nodes on one PostgreSQL database: two (or three) real C{twistd -n
dyndns} processes with C{store.backend = "postgresql"} on one throw-away
database of the test cluster (L{tests.postgres}), driven by real clients
(curl, nsupdate, dig, the C{dyndns} CLI) and a real BIND secondary.

What is checked, every answer asked of the node it is about:

 - a dyndns2 update (curl, Basic auth) through node A is served by B's DNS
   within L{VISIBLE_LIMIT} seconds, though B polls only every
   L{SHARED_POLL} seconds: the store's change notification carried it (the
   time taken is printed);
 - an nsupdate (TSIG) of a user's name at B is served at A;
 - C{dyndns user add} with A's configuration: both nodes serve the new name
   without a restart;
 - after updates through both nodes their SOA serials, AXFRs and an IXFR
   from the older serial are the same;
 - a BIND secondary whose primary is the follower loads the zone and has an
   update made through the publisher within L{FOLLOW_LIMIT} seconds (the
   zone's refresh is an hour, so NOTIFY brought it);
 - 20 concurrent dyndns2 updates of one user alternating between the nodes
   are all answered C{good} or C{nochg}, and afterwards both nodes serve the
   address the database holds;
 - kill -9 of the publishing node of three: the others keep answering and
   accepting updates, serve every update answered C{good} before the kill,
   and one takes over publishing (a new serial for a change, at both)
   within L{TAKEOVER_LIMIT} seconds; the same while updates stream through
   both of two nodes: every last C{good} is kept;
 - RFC 2136 updates of a host zone (its zone key) at the follower and at the
   publisher: both nodes serve both records under one serial;
 - PostgreSQL stopped and started under running nodes: updates answer C{911}
   (nsupdate SERVFAIL, GnuDIP C{1}) meanwhile and DNS keeps the old address;
   afterwards the nodes reconnect on their own (an update through A is
   C{good} and served at B);
 - a node started while PostgreSQL is down says it retries, and serves once
   PostgreSQL is back.

The tests of one class share two nodes where they do not disturb
them; the fault tests make their own nodes and database. Everything listens
on 127.0.0.1 only, every wait is bounded, and every process is stopped in
the clean-up. L{tests.postgres} gives a database per test only; the
database the shared class needs is made here (L{class_database}).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, Callable, ClassVar, Iterable, Sequence
from urllib.parse import urlencode

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.clients import (
    SUFFIX,
    DigResult,
    HTTPResponse,
    dig,
    gnudip_tcp,
    nsupdate,
    replace_address,
    run_curl,
)
from tests.integration.harness import (
    STOP_TIMEOUT,
    Account,
    Server,
    twistd_command,
    wait_for,
)
from tests.integration.test_host_zone_updates import (
    FILE_SERIAL,
    ORIGIN,
    ZONE_KEY,
    nsupdate_zone,
    write_zone,
    zone_serial,
    zone_settings,
)
from tests.integration.test_secondary import SecondaryNamed, soa_serial
from tests.postgres import cluster, new_database
from tests.tools import free_port, require_tool

#: The poll interval of the shared nodes: longer than L{VISIBLE_LIMIT}, so a
#: change seen sooner at the other node came by the store's notification.
SHARED_POLL = 3.0
#: The poll interval of the fault tests' nodes.
FAULT_POLL = 0.5
#: Bound for a change made at one node to show at another (functional, generous).
VISIBLE_LIMIT = 2.0
#: Bound for a change to show where a poll or a catch-up may be what brings it.
CHANGE_LIMIT = 10.0
#: Bound for a node to take over publishing after the publisher died.
TAKEOVER_LIMIT = 10.0
#: Bound for the nodes to work again after PostgreSQL is back.
RECONNECT_LIMIT = 15.0
#: Bound for the BIND secondary to follow a change (its refresh is 3600 s).
FOLLOW_LIMIT = 10.0
#: What the publisher logs when it gets the publisher's lock (dyndns_plugin/replication/publisher.py).
NOW_PUBLISHER = "this node is now the zones' publisher"
NO_LONGER_PUBLISHER = "this node is no longer the zones' publisher"
#: What a node starting while PostgreSQL is down logs (dyndns_plugin/store/postgresql.py, open()).
RETRYING = re.compile(r"could not connect to PostgreSQL at .* \(.*\); retrying in \d+ s")
#: The programs every test here needs.
TOOLS = (("dig", "bind9-dnsutils"), ("nsupdate", "bind9-dnsutils"), ("curl", "curl"))

ERIN_SECRET = "uDqEbya3wWm52jDZVATDeiVWvoea5kLu/xPhjpjeEOI="
BOB_SECRET = "xW1vSmqfBjv1sYfTP7E3mQm8cQ9HgVj3J0k6m2bq8ZI="


# -- the database of a class


def _admin(statement: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(cluster().dsn(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(name)))


_class_databases = itertools.count(1)


def class_database() -> tuple[str, Callable[[], None]]:
    """
    A new empty database of the test cluster for a whole class (what
    L{new_database} gives a single test): its DSN, and what drops it (the
    server started again first if a test left it stopped).
    """
    server = cluster()
    server.start()
    name = f"cluster_{os.getpid()}_{next(_class_databases)}"
    _admin("CREATE DATABASE {}", name)

    def drop() -> None:
        server.start()
        _admin("DROP DATABASE {} WITH (FORCE)", name)

    return server.dsn(name), drop


# -- nodes


def node_options(dsn: str, poll: float, avoid: Iterable[int] = (), notify_port: int | None = None) -> dict[str, Any]:
    """
    The L{Server} keywords of one node: an HTTP listener, the PostgreSQL
    store on C{dsn} (the base's SQLite C{path} stays, unused), polling every
    C{poll} seconds, no lockout or change limit (the tests update fast and in
    parallel from one address), transfers allowed from 127.0.0.1 and NOTIFY
    to 127.0.0.1:C{notify_port} if given.
    """
    dns: dict[str, Any] = {"transfer": {"allow": ["127.0.0.1"]}}
    if notify_port is not None:
        dns["notify"] = {"targets": [f"127.0.0.1:{notify_port}"], "retry": 0.5, "retries": 5}
    return {
        "listeners": ("http",),
        "avoid_ports": list(avoid),
        "store": {"backend": "postgresql", "dsn": dsn},
        "service": {"poll_interval": poll},
        "limits": {"enabled": False},
        "dns": dns,
    }


def node_ports(nodes: Iterable[Server]) -> list[int]:
    """Every port of C{nodes} (for the next node to avoid)."""
    return [p for n in nodes for p in (n.port, *n.ports.values())]


def publishes(node: Server) -> bool:
    """Whether C{node}'s log says it is the zones' publisher now."""
    log = node.read_log()
    return log.rfind(NOW_PUBLISHER) > log.rfind(NO_LONGER_PUBLISHER)


def launch(node: Server) -> None:
    """
    Start C{node}'s twistd without waiting for it to serve (L{Server.start}
    waits for the store, which may be down); stopped by C{node.stop}.
    """
    if node.process is not None:
        raise AssertionError("already running")
    with open(node.log_path, "ab") as log:
        node.process = subprocess.Popen(
            [*twistd_command(), "-n", "--pidfile=", "dyndns", "--config", node.config],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=node.directory,
        )


def kill(node: Server) -> None:
    """SIGKILL C{node} and reap it: no clean shutdown, its connections just drop."""
    assert node.process is not None
    node.process.send_signal(signal.SIGKILL)
    node.process.wait(STOP_TIMEOUT)
    node.process = None


# -- what the nodes answer


def transfer(port: int, qtype: str) -> list[str]:
    """
    The records of a zone transfer of L{SUFFIX} (C{AXFR} or C{IXFR=N}) from
    127.0.0.1:C{port}, in order, each with its fields joined by one space;
    AssertionError if dig reports a failure.
    """
    result = dig(port, SUFFIX, qtype)
    if "failed" in result.output + result.stderr:
        raise AssertionError(f"{qtype} from {port} failed:\n{result.output}{result.stderr}")
    return [" ".join(line.split()) for line in result.output.splitlines() if line.strip() and not line.startswith(";")]


def steps(records: Sequence[str]) -> list[list[str]]:
    """
    An IXFR answer cut at each SOA (a step's deleted and added parts each
    start with one), each part sorted: the same steps whatever the order of
    records within a part.
    """
    parts: list[list[str]] = []
    for record in records:
        if record.split()[3] == "SOA" or not parts:
            parts.append([])
        parts[-1].append(record)
    return [sorted(p) for p in parts]


def serial_at(port: int) -> int | None:
    return soa_serial(dig(port, SUFFIX, "SOA"))


def nic_update(node: Server, account: Account, address: str) -> HTTPResponse:
    """
    A dyndns2 C{/nic/update} with curl (Basic auth) through C{node}; curl
    must succeed (within its own C{--max-time}, 10 s).
    """
    url = f"http://127.0.0.1:{node.http_port}/nic/update?" + urlencode({"hostname": account.name, "myip": address})
    rc, response, err = run_curl("-u", f"{account.id}:{account.password}", url)
    if rc != 0 or response is None:
        raise AssertionError(f"curl exited {rc}: {err}")
    return response


class ClusterTestCase(SynchronousTestCase):
    """The tools, and assertions about what nodes serve."""

    tools: ClassVar[tuple[tuple[str, str], ...]] = TOOLS

    @classmethod
    def require_tools(cls) -> None:
        for program, package in cls.tools:
            require_tool(program, package)

    def wait_addresses(
        self, node: Server, name: str, expected: list[str], within: float, rtype: str = "A"
    ) -> tuple[DigResult, float]:
        """dig C{node} every 20 ms until it serves exactly C{expected} (NOERROR) or C{within} passed."""
        last: list[DigResult] = []

        def probe() -> bool:
            last[:] = [dig(node.port, name, rtype)]
            return last[0].status == "NOERROR" and last[0].data(rtype) == expected

        _, waited = wait_for(probe, within, interval=0.02)
        return last[0], waited

    def assertServes(self, node: Server, name: str, expected: list[str], within: float = 0.0) -> float:
        """C{node} serves C{name} A as exactly C{expected}, at once or within C{within} s; the seconds it took."""
        result, waited = self.wait_addresses(node, name, expected, within)
        self.assertEqual(result.status, "NOERROR", f"{node.directory}: {result.output or result.error}")
        self.assertEqual(result.data("A"), expected, f"{node.directory} after {waited:.2f} s: {result.output}")
        return waited

    def assertGood(self, response: HTTPResponse, address: str) -> None:
        self.assertEqual((response.status, response.text), (200, f"good {address}\n"), response.raw)

    def wait_same_serial(self, nodes: Sequence[Server], above: int | None = None, within: float = CHANGE_LIMIT) -> int:
        """
        The SOA serial all C{nodes} serve, once they serve the same one (above
        C{above}, if given) for two looks in a row; fails after C{within} s.
        """
        seen: list[tuple[int | None, ...]] = []

        def same() -> int | None:
            serials = tuple(serial_at(n.port) for n in nodes)
            seen.append(serials)
            serial = serials[0]
            if serial is None or any(s != serial for s in serials) or (above is not None and serial <= above):
                return None
            return serial if len(seen) > 1 and seen[-2] == serials else None

        serial, waited = wait_for(same, within, interval=0.1)
        self.assertIsNotNone(serial, f"no common serial (above {above}) after {waited:.1f} s: last {seen[-3:]}")
        assert isinstance(serial, int)
        return serial

    def wait_publisher(self, nodes: Sequence[Server], within: float = TAKEOVER_LIMIT) -> Server:
        """The one of C{nodes} that logs it publishes (bounded); fails if none, or several."""
        found, waited = wait_for(lambda: [n for n in nodes if n.process is not None and publishes(n)], within)
        self.assertEqual(len(found), 1, f"publishers after {waited:.1f} s: {[n.directory for n in found]}")
        return found[0]


# -- the shared nodes


class TwoNodesTests(ClusterTestCase):
    """
    Nodes A and B (started in that order) on one database, polling every
    L{SHARED_POLL} s, each notifying 127.0.0.1:C{secondary_port} (where the
    secondary test runs BIND); users alice (dyndns2), bob (TSIG), erin and
    frank (for the serial and transfer checks), grace (concurrent updates),
    heidi (the secondary's check), each at a first address.
    """

    a: ClassVar[Server]
    b: ClassVar[Server]
    folder: ClassVar[str]
    drop: ClassVar[Callable[[], None]]
    secondary_port: ClassVar[int]
    users: ClassVar[dict[str, Account]]

    @classmethod
    def setUpClass(cls) -> None:
        cls.require_tools()
        dsn, cls.drop = class_database()
        cls.folder = tempfile.mkdtemp(prefix="dyndns-cluster-")
        cls.secondary_port = free_port()
        started: list[Server] = []
        try:
            cls.a = Server(
                os.path.join(cls.folder, "a"),
                **node_options(dsn, SHARED_POLL, [cls.secondary_port], cls.secondary_port),
            )
            cls.b = Server(
                os.path.join(cls.folder, "b"),
                **node_options(dsn, SHARED_POLL, [cls.secondary_port, *node_ports([cls.a])], cls.secondary_port),
            )
            cls.users = {
                "alice": cls.a.add_user("alice", "alice-pw", address=["192.0.2.1"]),
                "bob": cls.a.add_user("bob", "bob-pw", tsig=("hmac-sha256", BOB_SECRET), address=["192.0.2.2"]),
                "erin": cls.a.add_user("erin", "erin-pw", tsig=("hmac-sha256", ERIN_SECRET), address=["192.0.2.5"]),
                "frank": cls.a.add_user("frank", "frank-pw", address=["192.0.2.6"]),
                "grace": cls.a.add_user("grace", "grace-pw", address=["192.0.2.7"]),
                "heidi": cls.a.add_user("heidi", "heidi-pw", address=["192.0.2.8"]),
            }
            for node in (cls.a, cls.b):
                started.append(node)
                node.start()
        except BaseException:
            for node in started:
                node.stop()
            shutil.rmtree(cls.folder, ignore_errors=True)
            cls.drop()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            for node in (cls.a, cls.b):
                node.stop()
        finally:
            shutil.rmtree(cls.folder, ignore_errors=True)
            cls.drop()

    def test_http_update_at_a_served_at_b(self) -> None:
        """
        curl's C{/nic/update} through A answers C{good}, and B's DNS serves
        the address within VISIBLE_LIMIT (B polls every SHARED_POLL s only:
        the change notification brought it); A serves it too.
        """
        alice = self.users["alice"]
        self.assertServes(self.b, alice.name, ["192.0.2.1"])
        response = nic_update(self.a, alice, "192.0.2.11")
        answered = time.monotonic()
        self.assertGood(response, "192.0.2.11")
        result, _ = self.wait_addresses(self.b, alice.name, ["192.0.2.11"], VISIBLE_LIMIT)
        seen = time.monotonic() - answered
        print(f"\ncluster: dyndns2 update through A served by B {seen * 1000:.0f} ms after A answered good")
        self.assertEqual(result.data("A"), ["192.0.2.11"], f"B after {seen:.2f} s: {result.output}")
        self.assertLess(seen, VISIBLE_LIMIT)
        self.assertServes(self.a, alice.name, ["192.0.2.11"])

    def test_nsupdate_at_b_served_at_a(self) -> None:
        """
        A TSIG-signed RFC 2136 UPDATE of bob's name at B succeeds (NOERROR),
        and A serves the new address (the time is printed).
        """
        bob = self.users["bob"]
        assert bob.tsig is not None
        self.assertServes(self.a, bob.name, ["192.0.2.2"])
        rc, output = nsupdate(self.b.port, bob.tsig, replace_address(bob.name, "A", "192.0.2.22"))
        answered = time.monotonic()
        self.assertEqual(rc, 0, output)
        self.assertIn("status: NOERROR", output)
        result, _ = self.wait_addresses(self.a, bob.name, ["192.0.2.22"], VISIBLE_LIMIT)
        seen = time.monotonic() - answered
        print(f"\ncluster: nsupdate at B served by A {seen * 1000:.0f} ms after B answered NOERROR")
        self.assertEqual(result.data("A"), ["192.0.2.22"], f"A after {seen:.2f} s: {result.output}")
        self.assertServes(self.b, bob.name, ["192.0.2.22"])

    def test_cli_user_add_served_by_both(self) -> None:
        """
        C{dyndns user add} and C{user update} with A's configuration (the CLI
        writes to the database, no node is told): both nodes, which answered
        NXDOMAIN for the name before, serve it within VISIBLE_LIMIT.
        """
        name = f"dave.{SUFFIX}"
        for node in (self.a, self.b):
            self.assertEqual(dig(node.port, name, "A").status, "NXDOMAIN")
        self.a.add_user("dave", "dave-pw", address=["192.0.2.4"])
        added = time.monotonic()
        for node, label in ((self.b, "B"), (self.a, "A")):
            result, _ = self.wait_addresses(node, name, ["192.0.2.4"], VISIBLE_LIMIT)
            seen = time.monotonic() - added
            print(f"\ncluster: user added with the CLI served by {label} {seen * 1000:.0f} ms after the CLI exited")
            self.assertEqual(result.data("A"), ["192.0.2.4"], f"{label} after {seen:.2f} s: {result.output}")

    def test_same_serial_axfr_and_ixfr(self) -> None:
        """
        After updates through both nodes (dyndns2 at A and B, nsupdate at B)
        A and B serve the same SOA serial, above the one before; their AXFRs
        hold the same records (and the updates); an IXFR from the serial
        before gives the same steps at both, and is incremental (the old
        serial's SOA follows the new one).
        """
        erin, frank = self.users["erin"], self.users["frank"]
        assert erin.tsig is not None
        before = self.wait_same_serial([self.a, self.b])
        self.assertGood(nic_update(self.a, frank, "192.0.2.61"), "192.0.2.61")
        self.assertGood(nic_update(self.b, erin, "192.0.2.51"), "192.0.2.51")
        rc, output = nsupdate(self.b.port, erin.tsig, replace_address(erin.name, "A", "192.0.2.52"))
        self.assertEqual(rc, 0, output)
        self.assertGood(nic_update(self.b, frank, "192.0.2.62"), "192.0.2.62")
        for node in (self.a, self.b):
            self.assertServes(node, erin.name, ["192.0.2.52"], VISIBLE_LIMIT)
            self.assertServes(node, frank.name, ["192.0.2.62"], VISIBLE_LIMIT)
        after = self.wait_same_serial([self.a, self.b], above=before)

        axfr_a, axfr_b = (transfer(n.port, "AXFR") for n in (self.a, self.b))
        self.assertEqual(sorted(axfr_a), sorted(axfr_b))
        self.assertRegex(axfr_a[0], rf"^{re.escape(SUFFIX)}\. \d+ IN SOA \S+ \S+ {after} ")
        self.assertIn(f"erin.{SUFFIX}. 60 IN A 192.0.2.52", axfr_a)  # nsupdate's TTL
        self.assertIn(f"frank.{SUFFIX}. 30 IN A 192.0.2.62", axfr_a)

        ixfr_a, ixfr_b = (transfer(n.port, f"IXFR={before}") for n in (self.a, self.b))
        self.assertEqual(steps(ixfr_a), steps(ixfr_b))
        self.assertGreater(len(ixfr_a), 2, ixfr_a)
        self.assertEqual([r.split()[6] for r in ixfr_a[:2]], [str(after), str(before)], ixfr_a)

    def test_secondary_of_the_follower(self) -> None:
        """
        A BIND secondary whose only primary is the follower (not the
        publisher) loads the zone at the follower's serial, and after a
        dyndns2 update through the publisher serves heidi's new address and
        the new serial within FOLLOW_LIMIT s (the zone's refresh is 3600 s).
        """
        require_tool("named", "bind9")
        require_tool("named-checkconf", "bind9")
        if os.geteuid() == 0:
            require_tool("setpriv", "util-linux")
        heidi = self.users["heidi"]
        publisher = self.wait_publisher([self.a, self.b])
        follower = self.b if publisher is self.a else self.a
        self.wait_same_serial([self.a, self.b])
        root = tempfile.mkdtemp(prefix="dyndns-secondary-")
        self.addCleanup(shutil.rmtree, root, True)
        os.chmod(root, 0o711)
        folder = os.path.join(root, "named")
        os.makedirs(folder)
        named = SecondaryNamed(folder, self.secondary_port, follower.port)
        self.addCleanup(named.stop)
        named.start()

        def follows(serial: int | None, address: str) -> Callable[[], bool]:
            def check() -> bool:
                return serial_at(self.secondary_port) == serial and dig(self.secondary_port, heidi.name, "A").data(
                    "A"
                ) == [address]

            return check

        loaded = serial_at(follower.port)
        ok, waited = wait_for(follows(loaded, "192.0.2.8"), FOLLOW_LIMIT)
        self.assertTrue(ok, f"secondary not at {loaded} after {waited:.1f} s:\n{named.read_log()[-3000:]}")

        self.assertGood(nic_update(publisher, heidi, "192.0.2.81"), "192.0.2.81")
        updated = time.monotonic()
        serial = self.wait_same_serial([self.a, self.b], above=loaded)
        ok, waited = wait_for(follows(serial, "192.0.2.81"), FOLLOW_LIMIT)
        seen = time.monotonic() - updated
        print(f"\ncluster: BIND secondary of the follower has the update {seen * 1000:.0f} ms after the publisher")
        log = named.read_log()
        lines = "\n".join(line for line in log.splitlines() if "xfer-in" in line or "notify" in line)
        self.assertTrue(
            ok,
            f"secondary not at serial {serial} with heidi 192.0.2.81 after {seen:.1f} s: "
            f"SOA {dig(self.secondary_port, SUFFIX, 'SOA').data('SOA')}\n{lines}",
        )
        # the publisher's NOTIFY (from its own port, not the follower's) made BIND ask the follower
        self.assertRegex(log, rf"zone {re.escape(SUFFIX)}/IN: notify from 127\.0\.0\.1#\d+: serial {serial}\b")
        self.assertIn(f"requesting IXFR from 127.0.0.1#{follower.port}", log)

    def test_concurrent_updates_through_both(self) -> None:
        """
        20 dyndns2 updates of grace, each with its own address, alternating
        between A and B, all sent at once from 20 threads: every answer is
        C{good} or C{nochg} with the address sent (none lost as 911), and
        afterwards both nodes serve one address, the one the database holds
        (C{dyndns user show --json}), which is one of those sent.
        """
        grace = self.users["grace"]
        addresses = [f"192.0.2.{100 + i}" for i in range(20)]

        def send(i: int) -> HTTPResponse:
            return nic_update((self.a, self.b)[i % 2], grace, addresses[i])

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(addresses)) as pool:
            responses = list(pool.map(send, range(len(addresses))))
        for address, response in zip(addresses, responses):
            self.assertEqual(response.status, 200, response.raw)
            self.assertRegex(response.text, rf"^(good|nochg) {re.escape(address)}\n$")

        words = [r.text.split()[0] for r in responses]
        stored = json.loads(self.a.cli("user", "show", "grace", "--json"))["state"]["ipv4"]
        print(
            f"\ncluster: 20 concurrent updates through A and B: {words.count('good')} good, "
            f"{words.count('nochg')} nochg; the database holds {stored}"
        )
        self.assertIn(stored, addresses)
        for node in (self.a, self.b):
            self.assertServes(node, grace.name, [stored], CHANGE_LIMIT)
        # and they stay there (no late change of either node)
        time.sleep(0.5)
        for node in (self.a, self.b):
            self.assertServes(node, grace.name, [stored])
        self.assertEqual(json.loads(self.b.cli("user", "show", "grace", "--json"))["state"]["ipv4"], stored)


# -- faults


class FaultTests(ClusterTestCase):
    """Nodes of a test's own, on a database of its own, that the test disturbs."""

    def setUp(self) -> None:
        self.require_tools()
        self.dsn = new_database(self)
        self.nodes: list[Server] = []

    def make_node(self, **overrides: Any) -> Server:
        """A node (not started) on this test's database, stopped in the clean-up."""
        options = node_options(self.dsn, FAULT_POLL, node_ports(self.nodes))
        options.update(overrides)
        node = Server(self.mktemp(), **options)
        self.addCleanup(node.stop)
        self.nodes.append(node)
        return node

    def test_publisher_killed(self) -> None:
        """
        Three nodes; after updates through each, the publisher is killed
        with SIGKILL right after it answered C{good} for one more: the two
        others keep answering DNS and serve every update answered C{good}
        before the kill (at any node, the last one too); one of them logs
        that it publishes now, and a change through either of them gets a
        new serial that both serve, within TAKEOVER_LIMIT s of the kill;
        their AXFRs agree.
        """
        first = self.make_node()
        users = {u: first.add_user(u, f"{u}-pw", address=["192.0.2.1"]) for u in ("ann", "ben", "cid")}
        nodes = [first, self.make_node(), self.make_node()]
        for node in nodes:
            node.start()
        publisher = self.wait_publisher(nodes)
        others = [n for n in nodes if n is not publisher]
        good: dict[str, str] = {}
        for i, (node, user) in enumerate(zip(itertools.cycle(nodes), itertools.islice(itertools.cycle(users), 9))):
            address = f"192.0.2.{10 + i}"
            self.assertGood(nic_update(node, users[user], address), address)
            good[user] = address
        self.wait_same_serial(nodes)
        self.assertGood(nic_update(publisher, users["ann"], "192.0.2.50"), "192.0.2.50")
        good["ann"] = "192.0.2.50"
        kill(publisher)
        killed = time.monotonic()

        for node in others:
            for user, address in good.items():
                self.assertServes(node, users[user].name, [address], CHANGE_LIMIT)
        new = self.wait_publisher(others, TAKEOVER_LIMIT)
        took_over = time.monotonic() - killed
        # the new publisher has published what the old one may not have (ann's last change)
        serial = self.wait_same_serial(others, within=TAKEOVER_LIMIT)
        self.assertGood(nic_update(others[0], users["ben"], "192.0.2.99"), "192.0.2.99")
        after = self.wait_same_serial(others, above=serial, within=TAKEOVER_LIMIT)
        published = time.monotonic() - killed
        print(
            f"\ncluster: after kill -9 of the publisher (node {nodes.index(publisher) + 1}), "
            f"node {nodes.index(new) + 1} publishes {took_over:.2f} s later; "
            f"a change is at serial {after} (from {serial}) at both {published:.2f} s after the kill"
        )
        self.assertLess(published, TAKEOVER_LIMIT)
        self.assertGood(nic_update(others[1], users["cid"], "192.0.2.98"), "192.0.2.98")
        self.wait_same_serial(others, above=after)
        for node in others:
            self.assertServes(node, users["ben"].name, ["192.0.2.99"], CHANGE_LIMIT)
            self.assertServes(node, users["cid"].name, ["192.0.2.98"], CHANGE_LIMIT)
            self.assertServes(node, users["ann"].name, ["192.0.2.50"])
        self.assertEqual(*(sorted(transfer(n.port, "AXFR")) for n in others))

    def test_publisher_killed_under_load(self) -> None:
        """
        Kill -9 of the publisher while updates stream in through both nodes
        (one thread per user, alternating nodes, each waiting for its
        answer): the survivor keeps answering them, and afterwards serves,
        and the database holds, every user's last update answered C{good},
        at whichever node; it publishes a new serial by itself.
        """
        first = self.make_node()
        names = ("ann", "ben", "cid", "dan")
        users = {u: first.add_user(u, f"{u}-pw", address=["192.0.2.1"]) for u in names}
        survivor_ = self.make_node()
        nodes = [first, survivor_]
        for node in nodes:
            node.start()
        publisher = self.wait_publisher(nodes)
        survivor = survivor_ if publisher is first else first
        before = self.wait_same_serial(nodes)
        killed_at: list[float] = []
        last_good: dict[str, str] = {}
        answers: dict[str, list[str]] = {u: [] for u in names}

        def stream(index: int, user: str) -> None:
            for i in range(400):
                if killed_at and time.monotonic() - killed_at[0] > 1.0:
                    return
                node = nodes[i % 2] if not killed_at else survivor
                address = f"203.0.113.{(i % 250) + 1}" if index % 2 else f"198.51.100.{(i % 250) + 1}"
                try:
                    response = nic_update(node, users[user], address)
                except AssertionError:  # the killed node's connection
                    answers[user].append("refused")
                    continue
                answers[user].append(response.text.strip())
                if response.text.startswith("good") or response.text.startswith("nochg"):
                    last_good[user] = address

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
            running = [pool.submit(stream, i, u) for i, u in enumerate(names)]
            time.sleep(0.7)
            kill(publisher)
            killed_at.append(time.monotonic())
            for future in running:
                future.result()
        counts = {u: len(a) for u, a in answers.items()}
        print(f"\ncluster: under load, answers per user {counts}; after the kill every user kept updating")
        for got in answers.values():  # never a 911 or another error: only the killed node's dropped connections
            self.assertEqual(set(got) - {"refused"} - {a for a in got if a.startswith(("good", "nochg"))}, set(), got)
        for user, address in last_good.items():
            self.assertServes(survivor, users[user].name, [address], CHANGE_LIMIT)
            stored = json.loads(survivor.cli("user", "show", user, "--json"))
            self.assertEqual(stored["state"]["ipv4"], address, stored)
        self.assertEqual(len(last_good), len(names))
        self.wait_publisher([survivor], TAKEOVER_LIMIT)
        self.wait_same_serial([survivor], above=before, within=TAKEOVER_LIMIT)

    def test_host_zone_updates_at_every_node(self) -> None:
        """
        RFC 2136 updates of a host zone (its zone key) at the follower and
        at the publisher, one after the other: each answers NOERROR, both
        nodes then serve both records under one SOA serial (each update took
        the next one in the store, the other node replayed it).
        """
        dns = {"transfer": {"allow": ["127.0.0.1"]}, "zones": [zone_settings()]}
        nodes = [self.make_node(dns=dns), self.make_node(dns=dns)]
        for node in nodes:
            write_zone(node)
            node.start()
        publisher = self.wait_publisher(nodes)
        follower = nodes[1] if publisher is nodes[0] else nodes[0]
        for node, name, address in ((follower, "one", "192.0.2.101"), (publisher, "two", "192.0.2.102")):
            rc, output = nsupdate_zone(node.port, [f"update add {name}.{ORIGIN} 300 A {address}"], key=ZONE_KEY)
            self.assertEqual(rc, 0, output)
            self.assertIn("status: NOERROR", output)
        for node in nodes:
            self.assertServes(node, f"one.{ORIGIN}", ["192.0.2.101"], CHANGE_LIMIT)
            self.assertServes(node, f"two.{ORIGIN}", ["192.0.2.102"], CHANGE_LIMIT)

        def same_serial() -> int | None:
            serials = {zone_serial(node.port) for node in nodes}
            return serials.pop() if len(serials) == 1 else None

        serial, _ = wait_for(same_serial, CHANGE_LIMIT, interval=0.1)
        self.assertIsNotNone(serial)
        self.assertGreaterEqual(serial, FILE_SERIAL + 2)

    def test_postgresql_restarted(self) -> None:
        """
        PostgreSQL stopped under two running nodes: a dyndns2 update at
        either answers C{911}, never C{good}, a TSIG-signed nsupdate
        SERVFAIL, a GnuDIP TCP update C{1}, and both keep serving the old
        address; started again (the nodes untouched), updates through A are
        C{good} within RECONNECT_LIMIT s (911 until then), B serves the new
        address, and the nodes publish a new serial together.
        """
        a = self.make_node(listeners=("http", "gnudip"))
        user = a.add_user("ann", "ann-pw", gnudip=True, tsig_from_password=True, address=["192.0.2.1"])
        b = self.make_node(listeners=("http", "gnudip"))
        for node in (a, b):
            node.start()
        self.wait_publisher([a, b])
        before = self.wait_same_serial([a, b])
        server = cluster()
        server.stop()
        self.addCleanup(server.start)
        stopped = time.monotonic()

        def during(node: Server, address: str) -> tuple[HTTPResponse, float]:
            asked = time.monotonic()
            # within curl's usual 10 s: the store fails at once while the server is unreachable
            return nic_update(node, user, address), time.monotonic() - asked

        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            pending = [pool.submit(during, node, address) for node, address in ((a, "192.0.2.2"), (b, "192.0.2.3"))]
            # DNS answers from memory while the updates wait for the store
            for node in (a, b):
                self.assertServes(node, user.name, ["192.0.2.1"])
            outcomes = [p.result() for p in pending]
        for label, (response, took) in zip("AB", outcomes):
            print(
                f"\ncluster: update at {label} with PostgreSQL down answered {response.text.strip()!r} in {took:.2f} s"
            )
            self.assertEqual((response.status, response.text), (200, "911\n"), response.raw)
        assert user.tsig is not None
        rc, output = nsupdate(b.port, user.tsig, replace_address(user.name, "A", "192.0.2.5"))
        self.assertNotEqual(rc, 0, output)
        self.assertIn("SERVFAIL", output)
        _, reply = gnudip_tcp(a.gnudip_port, user.id, user.password, "0", "192.0.2.6")
        self.assertEqual(reply, b"1\n")
        for node in (a, b):
            self.assertServes(node, user.name, ["192.0.2.1"])
            self.assertEqual(serial_at(node.port), before)
        print(f"cluster: PostgreSQL down for {time.monotonic() - stopped:.2f} s")
        server.start()
        back = time.monotonic()

        answers: list[str] = []

        def update() -> bool:
            answers.append(nic_update(a, user, "192.0.2.4").text)
            return answers[-1] == "good 192.0.2.4\n"

        ok, waited = wait_for(update, RECONNECT_LIMIT, interval=0.2)
        print(f"cluster: after PostgreSQL is back, A answered good {waited:.2f} s later (answers: {answers})")
        self.assertTrue(ok, answers)
        self.assertEqual(set(answers[:-1]) - {"911\n"}, set(), answers)
        self.assertServes(b, user.name, ["192.0.2.4"], RECONNECT_LIMIT)
        print(f"cluster: B serves it {time.monotonic() - back:.2f} s after PostgreSQL is back")
        self.wait_same_serial([a, b], above=before, within=RECONNECT_LIMIT)

    def test_started_while_postgresql_is_down(self) -> None:
        """
        A node started while PostgreSQL is down stays up, logs that it
        cannot connect and retries (the words of the store's open()), serves
        no user then; once PostgreSQL is started it serves the stored
        address and takes updates.
        """
        node = self.make_node()
        user = node.add_user("ann", "ann-pw", address=["192.0.2.1"])
        server = cluster()
        server.stop()
        self.addCleanup(server.start)
        launch(node)
        retrying, waited = wait_for(lambda: RETRYING.search(node.read_log()), CHANGE_LIMIT)
        self.assertTrue(retrying, f"no retry message after {waited:.1f} s:\n{node.read_log()}")
        assert node.process is not None
        self.assertIsNone(node.process.poll(), node.read_log())
        # nothing loaded yet: the resolver's answer before the store is loaded
        self.assertEqual(dig(node.port, user.name, "A").status, "SERVFAIL")
        server.start()
        back = time.monotonic()
        self.assertServes(node, user.name, ["192.0.2.1"], RECONNECT_LIMIT)
        print(f"\ncluster: a node started with PostgreSQL down serves {time.monotonic() - back:.2f} s after it is back")
        self.assertGood(nic_update(node, user, "192.0.2.2"), "192.0.2.2")
        self.assertServes(node, user.name, ["192.0.2.2"], CHANGE_LIMIT)
