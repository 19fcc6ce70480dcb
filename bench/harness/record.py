"""
The JSON record every benchmark writes (bench/results/<name>.json): the
machine, the code version, the parameters, the figures and the ratios to the
reference measured in the same run; and L{main}, the frame every script runs
in (hard timeout, temporary directory, every child stopped by PID).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable

import dns.version

import twisted
from bench.harness.procs import BenchError, Processes
from bench.harness.users import REPO

RESULTS = os.path.join(REPO, "bench", "results")


def machine(tools: dict[str, str] | None = None) -> dict[str, Any]:
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),  # MemTotal
        "kernel": platform.release(),
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "dnspython": dns.version.version,
        "sqlite": sqlite3.sqlite_version,
        **(tools or {}),
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    }


def code_version() -> dict[str, Any]:
    """The commit the server ran: the checkout's HEAD (L{server.export_code} gives another)."""

    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", REPO, *argv], capture_output=True, text=True, timeout=30).stdout.strip()

    dirty = bool(git("status", "--porcelain", "--", "dyndns_plugin"))
    return {"commit": git("rev-parse", "--short", "HEAD") or "?", "source": "checkout", "uncommitted_changes": dirty}


#: A script's options: C{{"--users": (64, "help")}} or C{(default, help, metavar)}, C{"-d --duration"} for
#: two names; the type is the default's (False: a flag, None: a string).
Options = dict[str, tuple[Any, ...]]


def parser_of(options: Options) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    for flags, (default, text, *metavar) in options.items():
        if default is False:
            parser.add_argument(*flags.split(), help=text, action="store_true")
        else:
            kind, name = str if default is None else type(default), metavar[0] if metavar else None
            parser.add_argument(*flags.split(), help=text, default=default, type=kind, metavar=name)
    return parser


def _num(value: Any) -> str:
    """8.0 as 8 (an option's float default beside its int short value)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def main(
    name: str,
    doc: str,
    options: Options | argparse.ArgumentParser,
    run: Callable[[argparse.Namespace, Processes, str, float], dict[str, Any]],
    short: dict[str, Any],
    timeout: int,
    tools: dict[str, str] | None = None,
) -> int:
    """
    Parse the arguments (plus C{--short}: the C{short} parameters, marked
    "short run" in the record), run C{run(args, procs, tmp, deadline)} under
    a hard timeout, and write what it returns (C{figures}, C{ratios},
    C{problems}, C{details}, C{plot}, C{code}) as the record. Exit status 1
    if there are problems.
    """
    parser = options if isinstance(options, argparse.ArgumentParser) else parser_of(options)
    shortened = ", ".join(
        f"{k.replace('_', '-')} {_num(v)} instead of {_num(parser.get_default(k))}" for k, v in short.items()
    )
    parser.add_argument("--short", action="store_true", help="small parameters, a few minutes at most: " + shortened)
    parser.add_argument("--timeout", type=int, default=timeout, help="hard limit, seconds")
    parser.add_argument("--record", default=os.path.join(RESULTS, f"{name}.json"), help="the JSON record's path")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.description = doc.strip().split("\n\n")[0]
    args = parser.parse_args()
    if args.short:
        vars(args).update(short)
    deadline = time.monotonic() + args.timeout

    def alarm(_signum: int, _frame: object) -> None:
        # SystemExit, not an Exception: asyncio would log one raised in a callback and go on.
        raise SystemExit(f"BENCHMARK FAILED: exceeded --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.alarm(args.timeout + 5)
    info = machine(tools)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tmp = tempfile.mkdtemp(prefix=f"dyndns-{name}-")
    procs = Processes()
    try:
        out = run(args, procs, tmp, deadline)
    except BenchError as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        procs.stop_all()
        if args.keep:
            print(f"(kept {tmp})")
        else:
            subprocess.run(["rm", "-rf", tmp], check=False)
    record = {
        "benchmark": name,
        "date": started,
        "short_run": args.short and "short run: " + shortened,
        "command": "python -m bench." + name + "".join(" " + shlex.quote(a) for a in sys.argv[1:]),
        "machine": info,
        "code": out.pop("code", None) or code_version(),
        "parameters": {k: v for k, v in vars(args).items() if k not in ("record", "keep", "timeout")},
        "figures": out.pop("figures"),
        "ratios": out.pop("ratios", {}),
        "problems": out.pop("problems", []),
        "plot": out.pop("plot", None),
        "details": out,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.record)), exist_ok=True)
    with open(args.record, "w") as f:
        f.write(json.dumps(record, indent=1, default=str) + "\n")
    for problem in record["problems"][:20]:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print(f"record: {os.path.relpath(args.record)}")
    return 1 if record["problems"] else 0
