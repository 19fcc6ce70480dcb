"""
A private Docker engine for the container test, and the base image it
builds the Containerfile on.

Docker Hub may be out of reach (it is on the CI machine), so the test does
not pull C{python:slim}: it makes a stand-in with C{debootstrap} from the
Debian mirror the machine already uses (python3, pip, useradd), caches its
root file system as a tar file between runs, and C{docker import}s it into
an engine of its own: a C{dockerd} with its own data root, exec root and
Unix socket in a temporary folder, no iptables rules and no bridge (nothing
of the machine's network is changed), stopped by its PID when the test ends.

Everything here needs root (debootstrap, dockerd); a missing tool or a
non-root run skips (locally) or fails (CI) by the rule of L{tests.tools}.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Sequence

from tests.tools import require_tool, unavailable

#: The base image's name inside the private engine.
BASE_IMAGE = "dyndns-test-base:bookworm"
#: The Debian release of the base (Python 3.11, which the package supports).
SUITE = "bookworm"
#: What the base must have for the Containerfile: python (the HEALTHCHECK
#: runs C{python}), pip for C{pip install .}, and the CA list pip needs.
BASE_PACKAGES = ("python3", "python3-pip", "python-is-python3", "ca-certificates")
#: Bound for debootstrap (about two minutes from a nearby mirror).
DEBOOTSTRAP_TIMEOUT = 900.0
#: Bound for dockerd to answer on its socket, and to exit after SIGTERM.
DAEMON_TIMEOUT = 60.0
#: Bound for one quick docker command (inspect, exec, run -d, import).
DOCKER_TIMEOUT = 120.0


def require_root() -> None:
    """Skip (locally) or fail (CI) unless running as root."""
    if os.geteuid() != 0:
        unavailable("the container test needs root (dockerd, debootstrap)")


def cache_dir() -> str:
    """Where the base's tar file is kept between runs: C{$DYNDNS_TEST_CACHE}, else the user's cache folder."""
    explicit = os.environ.get("DYNDNS_TEST_CACHE")
    if explicit:
        return explicit
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "dyndns-tests")


def _deb822_mirrors(text: str) -> list[str]:
    """The URIs of the deb822 stanzas (C{*.sources}) that serve L{SUITE} with C{main}."""
    mirrors: list[str] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if (
            "deb" in fields.get("types", "").split()
            and SUITE in fields.get("suites", "").split()
            and "main" in fields.get("components", "").split()
            and fields.get("enabled", "yes").lower() != "no"
        ):
            mirrors.extend(fields.get("uris", "").split())
    return mirrors


def _one_line_mirrors(text: str) -> list[str]:
    """The URIs of the one-line entries (C{sources.list}) that serve L{SUITE} with C{main}."""
    mirrors: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] != ["deb"]:
            continue
        words = [w for w in words[1:] if not w.startswith("[")]
        if len(words) >= 3 and words[1] == SUITE and "main" in words[2:]:
            mirrors.append(words[0])
    return mirrors


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses for L{SUITE} (the one debootstrap can reach)."""
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        found = _deb822_mirrors(text) if path.endswith(".sources") else _one_line_mirrors(text)
        if found:
            return found[0]
    unavailable(f"no apt source for Debian {SUITE} main in /etc/apt (debootstrap needs a mirror)")


def _mounts_under(path: str) -> list[str]:
    """The mount points at or below C{path}, deepest first."""
    prefix = os.path.realpath(path)
    found: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: str) -> None:
    """
    Delete C{path}, first unmounting what a failed debootstrap or dockerd
    left mounted inside it; leave it (and say so) if a mount stays, so that
    nothing outside is ever deleted through a mount.
    """
    for point in _mounts_under(path):
        subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=DOCKER_TIMEOUT, check=False)
    if _mounts_under(path):
        raise RuntimeError(f"{path} still has mounts {_mounts_under(path)}; not deleting it")
    shutil.rmtree(path, ignore_errors=True)


def _fit_base(root: str) -> None:
    """
    Make the debootstrapped tree stand in for C{python:slim}: pip may
    install into the system Python (no EXTERNALLY-MANAGED marker, as in the
    official image), the machine's own extra CA certificates are trusted (so
    pip reaches PyPI however this machine does), and no apt lists are kept.
    """
    for marker in glob.glob(os.path.join(root, "usr/lib/python3*/EXTERNALLY-MANAGED")):
        os.remove(marker)
    local_cas = sorted(glob.glob("/usr/local/share/ca-certificates/**/*.crt", recursive=True))
    if local_cas:
        target = os.path.join(root, "usr/local/share/ca-certificates")
        os.makedirs(target, exist_ok=True)
        for ca in local_cas:
            shutil.copy(ca, os.path.join(target, os.path.basename(ca)))
        subprocess.run(
            ["chroot", root, "update-ca-certificates"], capture_output=True, timeout=DOCKER_TIMEOUT, check=True
        )
    for leftover in glob.glob(os.path.join(root, "var/lib/apt/lists/*")) + glob.glob(
        os.path.join(root, "var/cache/apt/archives/*.deb")
    ):
        if os.path.isfile(leftover):
            os.remove(leftover)


def base_tarball() -> str:
    """
    The root file system of the base image as a tar file: from the cache,
    or made now with debootstrap (minbase, L{BASE_PACKAGES}) and cached.
    """
    folder = cache_dir()
    tarball = os.path.join(folder, f"dyndns-test-base-{SUITE}.tar")
    if os.path.isfile(tarball):
        return tarball
    debootstrap = require_tool("debootstrap", "debootstrap")
    mirror = debian_mirror()
    os.makedirs(folder, exist_ok=True)
    work = tempfile.mkdtemp(prefix="base-", dir=folder)
    root = os.path.join(work, "root")
    try:
        done = subprocess.run(
            [debootstrap, "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES), SUITE, root, mirror],
            capture_output=True,
            text=True,
            timeout=DEBOOTSTRAP_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"debootstrap {SUITE} from {mirror} failed: {done.stdout[-2000:]}{done.stderr}")
        _fit_base(root)
        partial = tarball + ".partial"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", root, "-cf", partial, "."],
            capture_output=True,
            timeout=DEBOOTSTRAP_TIMEOUT,
            check=True,
        )
        os.replace(partial, tarball)
    finally:
        remove_tree(work)
    return tarball


class PrivateDocker:
    """
    A C{dockerd} of this test alone: data root, exec root, socket and pid
    file in C{folder}; no iptables, no IP forwarding, no bridge. Its
    client commands never read the user's C{~/.docker} (their own config
    folder here).
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.socket = os.path.join(folder, "docker.sock")
        self.docker = require_tool("docker", "docker.io")
        self.dockerd = require_tool("dockerd", "docker.io")
        self.log_path = os.path.join(folder, "dockerd.log")
        self.process: subprocess.Popen[bytes] | None = None
        self.env = dict(os.environ)
        self.env.pop("DOCKER_CONTEXT", None)
        self.env.update(
            DOCKER_HOST="unix://" + self.socket,
            DOCKER_CONFIG=os.path.join(folder, "client"),
            # The classic builder: the Debian docker.io client has it by
            # default; a newer client without buildx falls back to it too.
            DOCKER_BUILDKIT="0",
        )

    def start(self) -> None:
        """Start dockerd and wait until it answers (or fail with its log)."""
        os.makedirs(self.env["DOCKER_CONFIG"], exist_ok=True)
        daemon_config = os.path.join(self.folder, "daemon.json")
        with open(daemon_config, "w") as f:
            json.dump({}, f)
        command = [
            self.dockerd,
            "--data-root",
            os.path.join(self.folder, "data"),
            "--exec-root",
            os.path.join(self.folder, "exec"),
            "--host",
            "unix://" + self.socket,
            "--pidfile",
            os.path.join(self.folder, "dockerd.pid"),
            "--config-file",
            daemon_config,
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--bridge=none",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + DAEMON_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"dockerd exited {self.process.returncode}: {self.read_log()}")
            if self.run("version", timeout=10, check=False).returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError(f"dockerd did not answer within {DAEMON_TIMEOUT} s: {self.read_log()}")

    def read_log(self) -> str:
        """The last part of dockerd's log."""
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def run(
        self, *args: str, timeout: float = DOCKER_TIMEOUT, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run C{docker ARGS} against this engine; with C{check}, fail on a non-zero exit."""
        done = subprocess.run(
            [self.docker, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}: {done.stderr}{done.stdout}")
        return done

    def has_image(self, name: str) -> bool:
        """Whether this engine has the image C{name}."""
        return self.run("image", "inspect", name, check=False).returncode == 0

    def import_base(self) -> None:
        """Import the base image (L{base_tarball}) unless this engine already has it."""
        if not self.has_image(BASE_IMAGE):
            self.run("import", base_tarball(), BASE_IMAGE, timeout=DEBOOTSTRAP_TIMEOUT)

    def stop(self) -> None:
        """
        SIGTERM to the dockerd this object started (it stops its containers
        and its own containerd), SIGKILL if it outlives L{DAEMON_TIMEOUT}; then
        the same for a containerd of its exec root still running.
        """
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(DAEMON_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(DAEMON_TIMEOUT)
        _stop_pidfile(os.path.join(self.folder, "exec", "containerd", "containerd.pid"), b"containerd")


def _stop_pidfile(pidfile: str, name: bytes) -> None:
    """TERM (then KILL) the process C{pidfile} names, only if its command line names C{name}."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if name not in f.read():
                return
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + DAEMON_TIMEOUT
        while time.monotonic() < deadline:
            if not os.path.exists(f"/proc/{pid}"):
                return
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def nsenter_net(pid: int, command: Sequence[str]) -> list[str]:
    """C{command} run in the network namespace of process C{pid} (a container's own loopback)."""
    program = require_tool("nsenter", "util-linux")
    return [program, f"--net=/proc/{pid}/ns/net", "--", *command]
