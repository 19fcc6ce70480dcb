"""
The image of the Containerfile, really built and run: a private dockerd
(L{tests.integration.container_engine}) builds it on a debootstrapped
stand-in for python:slim, then runs it the way compose.yaml does (read-only
root, no capabilities, no new privileges, the state in its volume) with a
configuration mounted over /etc/dyndns/dyndns.toml.

The container has no network but its own loopback (C{--network none}):
nothing it listens on is reachable from anywhere else, and the fixed ports of
the image (its HEALTHCHECK asks 127.0.0.1:8053) cannot clash with anything on
this machine. dig asks it from inside that network namespace (nsenter).

The health checks run every second instead of every 30 (C{--health-interval};
the image's own check command is unchanged) so that "healthy" comes soon.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from typing import Any, ClassVar

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.clients import SUFFIX, DigResult, dig
from tests.integration.container_engine import (
    BASE_IMAGE,
    PrivateDocker,
    nsenter_net,
    remove_tree,
    require_root,
)
from tests.integration.harness import toml_document, wait_for

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
#: The configuration the image ships (its suffix is the clients' L{SUFFIX}).
SHIPPED_CONFIG = os.path.join(ROOT, "examples", "container", "dyndns.toml")
#: The tag of the image under test, in the private engine only.
IMAGE = "dyndns-test:latest"
#: The uid the Containerfile gives its user C{dyndns}.
SERVICE_UID = 10053
#: The DNS port of the image (EXPOSE, the shipped configuration).
DNS_PORT = 5300
#: Bound for C{docker build} (a pip install from PyPI inside).
BUILD_TIMEOUT = 900.0
#: Bound for a started container to answer DNS, and for it to become healthy.
READY_LIMIT = 60.0
#: Seconds C{docker stop} waits after SIGTERM before it sends SIGKILL.
STOP_GRACE = 30


def loopback_config() -> str:
    """The shipped configuration with every listener bound to 127.0.0.1 only (as TOML)."""
    with open(SHIPPED_CONFIG, "rb") as f:
        config: dict[str, Any] = tomllib.load(f)
    config["dns"]["listen"] = [f"127.0.0.1:{DNS_PORT}"]
    for table in ("http", "gnudip"):
        config[table]["listen"] = [description + ":interface=127.0.0.1" for description in config[table]["listen"]]
    return toml_document(config)


class ContainerTests(SynchronousTestCase):
    """One private engine and one image for the class; one container serving for the first tests."""

    engine: ClassVar[PrivateDocker]
    folder: ClassVar[str]
    config_path: ClassVar[str]
    container: ClassVar[str]

    @classmethod
    def setUpClass(cls) -> None:
        require_root()
        cls.folder = tempfile.mkdtemp(prefix="dyndns-docker-")
        try:
            cls.engine = PrivateDocker(cls.folder)
            cls.engine.start()
            cls.engine.import_base()
            cls.engine.run(
                "build",
                "--network",
                "host",
                "--build-arg",
                f"BASE={BASE_IMAGE}",
                "--file",
                os.path.join(ROOT, "Containerfile"),
                "--tag",
                IMAGE,
                ROOT,
                timeout=BUILD_TIMEOUT,
            )
            cls.config_path = os.path.join(cls.folder, "dyndns.toml")
            with open(cls.config_path, "w") as f:
                f.write(loopback_config())
            os.chmod(cls.config_path, 0o644)
            cls.container = cls.start_container("dyndns-serving")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        if hasattr(cls, "engine"):
            cls.engine.stop()
        remove_tree(cls.folder)

    @classmethod
    def start_container(cls, name: str, *options: str) -> str:
        """Run the image as compose.yaml does, with the test configuration; its id once DNS answers."""
        container = cls.engine.run(
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "none",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges:true",
            "--health-interval",
            "1s",
            "--volume",
            f"{cls.config_path}:/etc/dyndns/dyndns.toml:ro",
            *options,
            IMAGE,
        ).stdout.strip()
        answered, _ = wait_for(lambda: cls.ask(container, SUFFIX, "SOA").status == "NOERROR", READY_LIMIT, 0.5)
        if not answered:
            logs = cls.engine.run("logs", container, check=False)
            raise AssertionError(f"container {name} gave no DNS answer: {logs.stdout}{logs.stderr}")
        return container

    @classmethod
    def inspect(cls, container: str, template: str) -> str:
        """C{docker inspect --format TEMPLATE} of C{container}."""
        return cls.engine.run("inspect", "--format", template, container).stdout.strip()

    @classmethod
    def ask(cls, container: str, name: str, qtype: str = "A", *opts: str) -> DigResult:
        """dig C{name} on the container's own loopback."""
        pid = int(cls.inspect(container, "{{.State.Pid}}"))
        if pid == 0:
            return DigResult(status=None, flags=frozenset(), answer=(), authority=(), output="", error="not running")
        return dig(DNS_PORT, name, qtype, *opts, through=nsenter_net(pid, []))

    def cli(self, container: str, *args: str) -> str:
        """C{dyndns --config /etc/dyndns/dyndns.toml ARGS} inside C{container} (as its user); its output."""
        return self.engine.run("exec", container, "dyndns", "--config", "/etc/dyndns/dyndns.toml", *args).stdout

    def test_answers_dns(self) -> None:
        """The container serves its zone over UDP and TCP: the SOA and NS of the configured suffix."""
        for transport in ("+notcp", "+tcp"):
            result = self.ask(self.container, SUFFIX, "SOA", transport)
            self.assertEqual(result.status, "NOERROR", result.error or result.output)
            self.assertIn("aa", result.flags)
            (soa,) = result.data("SOA")
            self.assertTrue(soa.startswith(f"ns1.{SUFFIX}. hostmaster.example.com. "), soa)
        self.assertEqual(self.ask(self.container, SUFFIX, "NS").data("NS"), [f"ns1.{SUFFIX}."])

    def test_health_check_reports_healthy(self) -> None:
        """The image's HEALTHCHECK (GET /health on the admin listener) passes: docker reports "healthy"."""
        status, _ = wait_for(
            lambda: self.inspect(self.container, "{{.State.Health.Status}}") == "healthy", READY_LIMIT, 0.5
        )
        log = self.inspect(self.container, "{{json .State.Health.Log}}")
        self.assertTrue(status, log)
        self.assertIn('"ExitCode":0', log)

    def test_cli_change_is_served(self) -> None:
        """A user added and updated with C{docker exec ... dyndns} is served by DNS when the command returns."""
        self.assertEqual(self.ask(self.container, f"carol.{SUFFIX}").status, "NXDOMAIN")
        self.assertIn("added carol", self.cli(self.container, "user", "add", "carol", "--password", "carols-pw"))
        self.assertEqual(self.cli(self.container, "user", "update", "carol", "192.0.2.44").strip(), "good 192.0.2.44")
        result = self.ask(self.container, f"carol.{SUFFIX}")
        self.assertEqual(result.data("A"), ["192.0.2.44"], result.output)
        self.cli(self.container, "user", "update", "carol", "2001:db8::44")
        self.assertEqual(self.ask(self.container, f"carol.{SUFFIX}", "AAAA").data("AAAA"), ["2001:db8::44"])

    def test_serves_as_unprivileged_user(self) -> None:
        """twistd, the container's first process, runs as the image's user, and so does docker exec."""
        pid = int(self.inspect(self.container, "{{.State.Pid}}"))
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            self.assertIn(b"twistd", f.read())
        with open(f"/proc/{pid}/status") as f:
            ids = {line.split(":")[0]: line.split()[1:] for line in f if line.startswith(("Uid:", "Gid:"))}
        self.assertEqual(ids["Uid"], [str(SERVICE_UID)] * 4)
        self.assertNotIn("0", ids["Gid"])
        self.assertEqual(self.engine.run("exec", self.container, "id", "-u").stdout.strip(), str(SERVICE_UID))

    def test_stops_cleanly_and_keeps_state(self) -> None:
        """
        C{docker stop} (SIGTERM) ends twistd with status 0 before the grace
        period's SIGKILL, and a restart serves the users kept in the volume.
        """
        container = self.start_container("dyndns-stopping")
        self.cli(container, "user", "add", "dave", "--password", "daves-pw")
        self.cli(container, "user", "update", "dave", "192.0.2.55")
        self.engine.run("stop", "--time", str(STOP_GRACE), container, timeout=STOP_GRACE + 60)
        self.assertEqual(self.inspect(container, "{{.State.Status}} {{.State.ExitCode}}"), "exited 0")
        logs = self.engine.run("logs", container)
        self.assertIn("Server Shut Down.", logs.stdout + logs.stderr)
        self.engine.run("start", container)
        answered, _ = wait_for(lambda: self.ask(container, f"dave.{SUFFIX}").data("A") == ["192.0.2.55"], READY_LIMIT)
        self.assertTrue(answered, self.ask(container, f"dave.{SUFFIX}").output)
        self.engine.run("stop", "--time", str(STOP_GRACE), container, timeout=STOP_GRACE + 60)
