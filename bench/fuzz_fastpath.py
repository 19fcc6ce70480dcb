"""
Fuzz the query fast path's reader (bench/fuzz_fastpath.py).

    python -m bench.fuzz_fastpath [--short] [--count N] [--seed S]   # ~15 s (--short: 100,000 inputs)

Feeds C{N} (default 1,000,000) inputs to
L{dyndns_plugin.dns.fastpath.plain_query_key}: plain queries built from
random names, types, flags and EDNS sizes, the same damaged (bytes changed,
cut, inserted, appended), and random byte strings. Every input must return
None or the message after its ID, and never raise. Records the counts (and
any exception) in bench/results/fuzz_fastpath.json (bench/harness/record.py).
"""

from __future__ import annotations

import argparse
import random
import struct
import time
from typing import Any, Iterator

from bench.harness import record
from dyndns_plugin.dns.fastpath import plain_query_key

_LABELS = [b"alice", b"Bob", b"www", b"dyn", b"example", b"com", b"*", b"a-b", b"x" * 63, b"\xff\x00", b"a.b"]


def _name(rnd: random.Random) -> bytes:
    out = b""
    for _ in range(rnd.randint(0, 6)):
        label = rnd.choice(_LABELS)
        out += bytes([len(label)]) + label
    return out + b"\0"


def plain_query(rnd: random.Random) -> bytes:
    """A plain query with random name, type, flags and maybe an OPT record."""
    edns = rnd.random() < 0.5
    flags = rnd.choice([0, 0x0100, 0x0110, 0x0120])
    header = struct.pack("!HHHHHH", rnd.randrange(65536), flags, 1, 0, 0, 1 if edns else 0)
    question = _name(rnd) + struct.pack("!HH", rnd.choice([1, 28, 255, 6, 16, 252, 65535]), 1)
    opt = b"\0" + struct.pack("!HHIH", 41, rnd.choice([512, 1232, 4096]), rnd.choice([0, 0x8000]), 0) if edns else b""
    return header + question + opt


def mutate(data: bytes, rnd: random.Random) -> bytes:
    """C{data} with a few bytes changed, cut, inserted or appended."""
    raw = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        kind = rnd.randrange(4)
        if kind == 0 and raw:
            raw[rnd.randrange(len(raw))] = rnd.randrange(256)
        elif kind == 1 and raw:
            del raw[rnd.randrange(len(raw)) :]
        elif kind == 2:
            raw.insert(rnd.randint(0, len(raw)), rnd.randrange(256))
        else:
            raw += rnd.randbytes(rnd.randint(1, 12))
    return bytes(raw)


def fuzz_inputs(rnd: random.Random, count: int) -> Iterator[bytes]:
    """C{count} inputs: a third plain, a third damaged plain, a third random bytes."""
    for i in range(count):
        kind = i % 3
        if kind == 0:
            yield plain_query(rnd)
        elif kind == 1:
            yield mutate(plain_query(rnd), rnd)
        else:
            yield rnd.randbytes(rnd.randint(0, 300))


def run(count: int, seed: int) -> dict[str, object]:
    """Fuzz C{count} inputs; the summary (exceptions must be 0)."""
    rnd = random.Random(seed)
    plain = exceptions = 0
    first_error = None
    started = time.perf_counter()
    for data in fuzz_inputs(rnd, count):
        try:
            key = plain_query_key(data)
        except Exception as e:  # the one thing this bench looks for
            exceptions += 1
            if first_error is None:
                first_error = f"{type(e).__name__}: {e} on {data.hex()}"
            continue
        if key is not None:
            if key != data[2:]:
                raise AssertionError("a key that is not the message after the ID")
            plain += 1
    return {
        "inputs": count,
        "seed": seed,
        "plain": plain,
        "not_plain": count - plain - exceptions,
        "exceptions": exceptions,
        "first_error": first_error,
        "seconds": round(time.perf_counter() - started, 1),
    }


def bench(args: argparse.Namespace, procs: object, tmp: str, deadline: float) -> dict[str, Any]:
    """The record: the counts as figures, a problem per exception kind."""
    summary = run(args.count, args.seed)
    problems = [f"{summary['exceptions']} exceptions, first: {summary['first_error']}"] if summary["exceptions"] else []
    return {"figures": summary, "problems": problems}


def main() -> int:
    """Run and record (bench/results/fuzz_fastpath.json); exit 1 on any exception."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1_000_000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=2026, help="random seed")
    return record.main("fuzz_fastpath", __doc__ or "", parser, bench, {"count": 100_000}, 900)


if __name__ == "__main__":
    raise SystemExit(main())
