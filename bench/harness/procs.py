"""Child processes (stopped by PID, never by name), free ports and log files."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Callable

HOST = "127.0.0.1"


class BenchError(Exception):
    """The benchmark could not measure (a server died, a check failed to run...)."""


def note(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Processes:
    """Every child we start, so that all of them are stopped on any exit."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], log_path: str, **popen: object) -> subprocess.Popen[bytes]:
        with open(log_path, "wb") as log:
            options: dict = {"stdin": subprocess.DEVNULL, "stdout": log, "stderr": subprocess.STDOUT, **popen}
            proc = subprocess.Popen(argv, start_new_session=True, **options)
        self.children.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        if proc.poll() is None:
            try:
                proc.terminate()
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.children:
            self.children.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.children):
            try:
                self.stop(proc, grace=3.0)
            except Exception as e:  # keep stopping the others
                print(f"could not stop pid {proc.pid}: {e}", file=sys.stderr)


def free_ports(count: int) -> list[int]:
    """C{count} distinct ports free for both UDP and TCP on 127.0.0.1."""
    ports: set[int] = set()
    for _ in range(50 * count):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp,
        ):
            udp.bind((HOST, 0))
            port = udp.getsockname()[1]
            try:
                tcp.bind((HOST, port))
            except OSError:
                continue
        ports.add(port)
        if len(ports) == count:
            return list(ports)
    raise BenchError("no free port")


def _lines(path: str) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return f.readlines()
    except OSError:
        return []


def log_tail(path: str, lines: int = 30) -> str:
    return "".join(_lines(path)[-lines:]) or "(no log)"


def log_problems(path: str) -> list[str]:
    """Tracebacks and critical lines of a server log."""
    return [line.rstrip() for line in _lines(path) if any(w in line for w in ("Traceback", "Unhandled", "CRITICAL"))]


def wait_for(
    ready: Callable[[], bool], deadline: float, what: str, proc: subprocess.Popen[bytes] | None = None, log: str = ""
) -> float:
    """Poll C{ready} until true (every 2 ms, doubling up to 50 ms); C{proc}, if given, must live (C{log}'s
    tail says why not). The seconds it took."""
    started, pause = time.monotonic(), 0.002
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what}: the server exited with {proc.returncode}:\n{log_tail(log)}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: not in time" + (f":\n{log_tail(log)}" if log else ""))
        time.sleep(pause)
        pause = min(2 * pause, 0.05)
    return time.monotonic() - started


def run_checked(argv: list[str], timeout: float, what: str, **kwargs: object) -> str:
    """Run a short command; its stdout, or a BenchError with its output."""
    try:
        run = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} did not finish in {timeout:.0f} s") from None
    if run.returncode != 0:
        raise BenchError(f"{what}: exit {run.returncode}\n{run.stdout}\n{run.stderr}")
    return str(run.stdout)
