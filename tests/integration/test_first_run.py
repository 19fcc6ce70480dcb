"""
A new user's first run and an operator's first mistakes, as real processes:
C{twistd -n dyndns} with no configuration at all, CLI changes that are live
before the command returns, C{dyndns init}, C{--version}, and a listener
that cannot open (port in use, port 53 without privilege, a bad
certificate) or a store that cannot: one line, exit status 1.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tomllib
from typing import Any

from dyndns_plugin.config import settings_from_dict
from tests.integration.clients import SUFFIX, dig, run_curl
from tests.integration.harness import (
    START_TIMEOUT,
    ServerTestCase,
    _answers,
    run_twistd_once,
    stop_process,
    twistd_command,
    wait_for,
    write_config,
)
from tests.tools import free_port, require_tool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: The embedded default's fixed ports (DNS, HTTP, GnuDIP) on 127.0.0.1.
DEFAULT_PORTS = {"dns": 5300, "http": 8080, "gnudip": 3495}


def port_taken(port: int) -> bool:
    """Whether 127.0.0.1:C{port} is in use for TCP (or UDP, for DNS)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return True
                raise
    return False


def cli(env: dict[str, str], cwd: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The C{dyndns} command in C{cwd} with C{env} (no --config)."""
    return subprocess.run(
        [sys.executable, "-m", "dyndns_plugin.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


class EmbeddedDefaultTests(ServerTestCase):
    """C{twistd -n dyndns} and C{dyndns} with no configuration find each other."""

    def start_default(self) -> tuple[str, dict[str, str], str]:
        """twistd -n dyndns with no configuration in a new folder: (folder, its environment, its output)."""
        self.require_tools()
        busy = [name for name, port in DEFAULT_PORTS.items() if port_taken(port)]
        if busy:
            self.skipTest(f"the embedded default's ports are in use here: {busy}")
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        env = {k: v for k, v in os.environ.items() if k not in ("DYNDNS_CONFIG", "STATE_DIRECTORY", "XDG_STATE_HOME")}
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        log_path = os.path.join(folder, "twistd.log")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [*twistd_command(), "-n", "dyndns"],  # the README's command, pid file and all
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=folder,
                env=env,
            )
        self.addCleanup(stop_process, process)
        ready, _ = wait_for(lambda: _answers(DEFAULT_PORTS["dns"], "nobody.dyn.test"), START_TIMEOUT)
        with open(log_path) as f:
            output = f.read()
        self.assertTrue(ready, output)
        return folder, env, output

    def test_readme_walkthrough_says_what_it_does(self) -> None:
        """The README's walkthrough, pasted as one block: every command prints what its comment says."""
        require_tool("curl", "curl")
        folder, env, _ = self.start_default()
        with open(os.path.join(ROOT, "README.md")) as f:
            steps = walkthrough_steps(f.read())
        self.assertGreaterEqual(len([s for s in steps if s[1] is not None]), 10)
        marker = "=== dyndns walkthrough step ==="
        script = "".join(f"{command}\necho '{marker}' $?\n" for command, _ in steps)
        done = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, env=env, cwd=folder, timeout=120, check=False
        )
        # stdout is: output 0, marker, status 0, output 1, marker, status 1, ...
        parts = done.stdout.split(marker)
        self.assertEqual(len(parts), len(steps) + 1, done.stdout + done.stderr)
        for i, (command, expected) in enumerate(steps):
            printed = parts[0] if i == 0 else parts[i].split("\n", 1)[1]
            status = parts[i + 1].split("\n", 1)[0].strip()
            self.assertEqual(status, "0", f"{command}: exit status {status}\n{done.stderr}")
            if expected is not None:
                self.assertEqual(printed.strip(), expected, f"{command}\n{done.stderr}")

    def test_serves_at_once_and_cli_finds_the_same_store(self) -> None:
        folder, env, output = self.start_default()
        # The block that says where everything is.
        state = os.path.join(folder, "dyndns-state")
        for part in ("127.0.0.1:5300", "tcp:8080:interface=127.0.0.1", "tcp:3495:interface=127.0.0.1", state):
            self.assertIn(part, output)
        self.assertIn("dyndns user add", output)
        self.assertTrue(os.path.isfile(os.path.join(state, "dyndns.sqlite")))
        # twistd's pid file goes to the state directory, not the current folder.
        self.assertTrue(os.path.isfile(os.path.join(state, "twistd.pid")))
        self.assertFalse(os.path.exists(os.path.join(folder, "twistd.pid")))
        # The CLI in the same folder, with no configuration, changes what this server serves.
        added = cli(env, folder, "user", "add", "Alice", "--password", "s3cret")
        self.assertEqual(added.returncode, 0, added.stderr)
        self.assertEqual(added.stdout.strip(), "added alice (alice.dyn.test)")
        updated = cli(env, folder, "user", "update", "alice", "198.51.100.7")
        self.assertEqual(updated.returncode, 0, updated.stderr)
        self.assertEqual(dig(DEFAULT_PORTS["dns"], "alice.dyn.test", "A").data("A"), ["198.51.100.7"])
        # HTTP updates on 8080 and GnuDIP on 3495.
        require_tool("curl", "curl")
        rc, response, err = run_curl(
            "-u", "alice:s3cret", "http://127.0.0.1:8080/nic/update?hostname=alice.dyn.test&myip=198.51.100.8"
        )
        self.assertEqual(rc, 0, err)
        assert response is not None
        self.assertEqual(response.body.strip(), b"good 198.51.100.8")
        with socket.create_connection(("127.0.0.1", DEFAULT_PORTS["gnudip"]), timeout=5) as gnudip:
            self.assertTrue(gnudip.recv(64))  # the salt


def walkthrough_steps(readme: str) -> list[tuple[str, str | None]]:
    """
    The commands of the README's walkthrough, each with the output its
    comment promises (None: no comment, only exit status 0 is checked).
    """
    section = readme.split("## A five-minute walkthrough", 1)[1].split("\n## ", 1)[0]
    steps: list[tuple[str, str | None]] = []
    for block in section.split("```sh\n")[1:]:
        for line in block.split("```", 1)[0].splitlines():
            command, sep, expected = line.partition("  # ")
            if command.strip():
                steps.append((command.strip(), expected.strip() if sep else None))
    return steps


class LiveCommandTests(ServerTestCase):
    """
    The server polls the store only once a minute here, so a change that is
    served at once was made live by the CLI through the control socket.
    """

    def test_change_served_before_the_command_returns(self) -> None:
        server = self.make_server(service={"suffix": SUFFIX, "poll_interval": 60})
        server.start()
        server.add_user("alice", "pw", offline_ip=["192.0.2.1"])
        name = f"alice.{SUFFIX}"
        for i in range(1, 6):
            address = f"198.51.100.{i}"
            server.cli("user", "update", "alice", address)
            self.assertEqual(self.served(name, "A").data("A"), [address])
        out = server.cli("user", "offline", "alice")
        self.assertEqual(out.strip(), "alice is offline: DNS serves 192.0.2.1")
        self.assertEqual(self.served(name, "A").data("A"), ["192.0.2.1"])
        server.cli("user", "disable", "alice")
        self.assertEqual(self.served(name, "A").status, "NXDOMAIN")
        server.cli("user", "remove", "alice")
        self.assertEqual(self.served(name, "A").status, "NXDOMAIN")
        self.assertIn("ControlFactory starting on", server.read_log())  # the control socket

    def test_status_shows_what_dns_serves(self) -> None:
        server = self.make_server()
        server.start()
        server.add_user("bob", "pw", offline_ip=["192.0.2.9"], address=["198.51.100.9"])
        server.cli("user", "offline", "bob")
        rows = json.loads(server.cli("status", "--json"))
        self.assertEqual([(r["user"], r["state"], r["ipv4"]) for r in rows], [("bob", "offline", "192.0.2.9")])
        self.assertEqual(self.served(f"bob.{SUFFIX}", "A").data("A"), ["192.0.2.9"])


class StartupErrorTests(ServerTestCase):
    """What stops the start is one line naming the key, with exit status 1."""

    def config(self, **overrides: Any) -> str:
        folder = os.path.abspath(self.mktemp())
        return write_config(folder, free_port(), **overrides)

    def test_port_in_use(self) -> None:
        port = free_port()
        config = write_config(os.path.abspath(self.mktemp()), port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", port))
            line = self.assertTwistdRefuses(config, "dns.listen[0]", f"127.0.0.1:{port}", "already in use")
        self.assertIn("(UDP)", line)

    def test_http_port_in_use(self) -> None:
        port = free_port()
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", port))
            taken.listen()
            self.assertTwistdRefuses(
                self.config(http={"listen": [f"tcp:{port}:interface=127.0.0.1"]}), "http.listen[0]", "already in use"
            )

    def test_port_53_without_privilege(self) -> None:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            if int(f.read()) <= 53:
                self.skipTest("this kernel lets anyone bind port 53")
        if os.geteuid() == 0:
            self.skipTest("run as root: port 53 is allowed (the message is checked in test_tap)")
        self.assertTwistdRefuses(self.config(dns={"listen": ["127.0.0.1:53"]}), "dns.listen[0]", "permission denied")

    def test_bad_certificate(self) -> None:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        with open(os.path.join(folder, "bad.pem"), "w") as f:
            f.write("not a certificate\n")
        config = write_config(
            folder, free_port(), http={"listen": [f"ssl:{free_port()}:privateKey=bad.pem:certKey=bad.pem"]}
        )
        self.assertTwistdRefuses(config, "http.listen[0]", "bad.pem")

    def test_unreadable_store(self) -> None:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(folder, "users.sqlite"))  # a folder where the store file should be
        config = write_config(folder, free_port())
        self.assertTwistdRefuses(config, "users.sqlite")

    def test_misspelt_key(self) -> None:
        self.assertTwistdRefuses(self.config(dns={"rrl": {"slipp": 1}}), "dns.rrl.slipp", "did you mean 'slip'?")


class InitAndVersionTests(ServerTestCase):
    def test_init_writes_a_config_twistd_runs(self) -> None:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "dyndns.toml")
        env = dict(os.environ)
        done = cli(env, folder, "init", path)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn(path, done.stdout)
        with open(path, "rb") as binary:
            data = tomllib.load(binary)
        self.assertEqual(data.pop("service"), {"suffix": "dyn.test"})  # the one key not commented out

        def keys(table: dict) -> list[str]:
            return [k for k, v in table.items() if not isinstance(v, dict)] + [
                k for v in table.values() if isinstance(v, dict) for k in keys(v)
            ]

        self.assertEqual(keys(data), [])
        again = cli(env, folder, "init", path)
        self.assertEqual(again.returncode, 1)
        self.assertIn("exists", again.stderr)
        # Edited to free ports, it starts (the server check is the harness's readiness wait).
        dns_port = free_port()
        with open(path) as f:
            text = f.read()
        text = text.replace('# listen = ["127.0.0.1:5300"]', f'listen = ["127.0.0.1:{dns_port}"]')
        text = text.replace('# listen = ["tcp:8080:interface=127.0.0.1"]', "listen = []")
        text = text.replace('# listen = ["tcp:3495:interface=127.0.0.1"]', "listen = []")
        text = text.replace('# path = "<state directory>/dyndns.sqlite"', 'path = "users.sqlite"')
        with open(path, "w") as f:
            f.write(text)
        settings = settings_from_dict(tomllib.loads(text), path)
        self.assertEqual(settings.dns.listen, (("127.0.0.1", dns_port),))
        self.assertEqual(settings.store_path, os.path.join(folder, "users.sqlite"))
        process = subprocess.Popen(
            [*twistd_command(), "-n", "--pidfile=", "dyndns", "--config", path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=folder,
        )
        self.addCleanup(stop_process, process)
        ready, _ = wait_for(lambda: _answers(dns_port, "nobody.dyn.test"), START_TIMEOUT)
        self.assertTrue(ready)

    def test_version(self) -> None:
        from dyndns_plugin import __version__

        done = cli(dict(os.environ), os.getcwd(), "--version")
        self.assertEqual(done.returncode, 0)
        self.assertTrue(done.stdout.startswith(f"dyndns_plugin {__version__} (Twisted "), done.stdout)
        rc, out, err = run_twistd_once("unused.toml", "--version")
        self.assertEqual(rc, 0, err)
        self.assertIn(f"dyndns_plugin {__version__}", out)

    def test_completion(self) -> None:
        """argcomplete completes the CLI's commands (bash: register-python-argcomplete dyndns)."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        out_file = os.path.join(folder, "completions")
        line = "dyndns us"
        env = {
            **os.environ,
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_IFS": "\n",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": out_file,
        }
        dyndns = shutil.which("dyndns", path=os.path.dirname(sys.executable)) or "dyndns"
        subprocess.run([dyndns], env=env, capture_output=True, timeout=60, check=False)
        with open(out_file) as f:
            self.assertEqual(f.read().split(), ["user"])
