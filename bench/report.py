"""
Render bench/RESULTS.md and one SVG plot per benchmark (docs/bench/) from the
JSON records in bench/results/ (the latest run of each script) and
bench/results/published/ (the full-size runs of the hand-written file, kept
verbatim). Run from the repository root: C{python -m bench.report}.
"""

from __future__ import annotations

import ast
import json
import os
import re
from typing import Any

from bench.harness.users import REPO

RESULTS = os.path.join(REPO, "bench", "results")
PLOTS = os.path.join(REPO, "docs", "bench")
ORDER = [
    "dns_qps",
    "http_updates",
    "cluster_updates",
    "gnudip_tcp",
    "tsig_updates",
    "txt_updates",
    "zone_updates",
    "secondary_latency",
    "crash_trials",
    "auth_flood",
    "rrl_cost",
    "fuzz",
    "fuzz_fastpath",
    "scale_users",
]

#: How to read each benchmark: what its numbers mean, what they do not.
READING = {
    "dns_qps": "Every server is CPU-bound (NSD in C, the others in one Python process), so read "
    "the ratios of the same run, not the qps: the machine's speed drifts by ~25% from minute to minute. "
    "Bare is a Twisted UDP server that only copies the ID into a ready answer, written through the "
    "transport (whose address checks cost ~1 us a datagram); ours sends cached answers to the socket "
    "itself, so it may pass bare. Stock is twisted.names' own server. Latency is queueing at saturation (~100 outstanding / qps). Issue 17's "
    "targets at 10,000 users: ours >= 0.6x bare, >= 2.5x stock, >= 0.4x NSD; ours at 1M users within 10% of "
    "10k, start <= 10 s, <= 1 KiB resident per user.",
    "http_updates": "The cached-password path: a router whose last update is older than 300 s "
    "pays one scrypt (~0.1 s of CPU). One process is limited to about one CPU "
    "(the GIL): the reactor thread is the limit, not SQLite; latency is queueing "
    "(connections in flight / throughput). Group commit grows when the server "
    "is busy.",
    "cluster_updates": "Every process of a setup (the nodes, PostgreSQL, wrk, the script) shares the machine's "
    "CPUs (the record's cpus). With two, the two-node setup saturates them (each node's reactor thread, "
    "PostgreSQL and wrk: the record's cpu details add up to ~1.8 CPU-seconds a second), so 2 nodes / 1 node "
    "here is two nodes contending for the same two CPUs, not what a second machine adds: the target of 1.6 "
    "assumes a CPU (or a machine) per node, which this machine does not have. Durable on both stores means "
    "flushed to the disk before the answer (PostgreSQL's fsync and synchronous_commit on). A node's store "
    "thread writes a group commit's conditional state writes in one statement (those whose expected state "
    "is not the committed one go one by one after), then one round trip takes the generation row lock, one "
    "stamps the generation and commits: write transaction share says how often (of samples of pg_stat_activity every "
    "20 ms) a transaction was open, one waited for a lock (the other node's generation row) and PostgreSQL "
    "waited for a node's next statement (a node's store thread waits for the GIL behind its reactor). A "
    "node's CPU per update in the two-node setup also pays for applying the other node's changes (every node "
    "holds every user). Visibility is the time from A's answer to the first answer of B with the new address, "
    "B asked over UDP every 0.2 ms: a change reaches B by LISTEN/NOTIFY, then a read of what changed. A "
    "follower reads only the journal steps after the serial it serves; the record gives the journal's size.",
    "gnudip_tcp": "Each exchange is a new TCP connection, so about a third of the reactor's time "
    "is Twisted's per-connection work. A maximum latency near 1 s is a SYN the "
    "kernel dropped (listen backlog 50 < 64 clients reconnecting) and retried.",
    "tsig_updates": "Both servers answer only once the update is on disk (BIND: two fsyncs per "
    "update, serially; ours: one per group commit). Read the ratio ours/BIND of "
    "the same run; BIND is not CPU-bound, ours is (the reactor thread).",
    "txt_updates": "Both servers answer only once the change is on disk: ours writes the value into the "
    "user's host state (the same group commit addresses take), BIND into its journal. Read the ratio "
    "ours/BIND of the same run; against tsig_updates (addresses), compare runs of the same session only: "
    "the machine drifts from minute to minute.",
    "zone_updates": "Both servers answer only once the update is on disk. Ours takes host-zone updates "
    "one at a time (the zone's serial and journal step are written with the records, one SQLite commit "
    "each, no group commit); a signed one also commits the key's replay record first. Read the ratios "
    "ours/BIND of the same run; the target is at least BIND's rate in both modes.",
    "secondary_latency": "The time from an UPDATE to BIND serving it is mostly BIND's own "
    "serial-query-rate limiter (default 20 SOA queries/s) after our NOTIFY; "
    "with --serial-query-rate 1000 it is under 100 ms. The times are bimodal (every other update "
    "about 10 ms, the others about 440 ms), so a p50 lands in either mode: read the count under 100 ms. "
    "ACME challenge TXT values take the same path as addresses (journal step, NOTIFY, IXFR). IXFR of "
    "100 single steps is a few percent of the AXFR's bytes.",
    "crash_trials": "Pass: no acknowledged update lost, nothing served that was neither "
    "acknowledged nor in flight, the SQLite file intact and readable by the CLI "
    "after every SIGKILL. Applied = in flight at the kill and found applied.",
    "auth_flood": "The ratio flood/undisturbed is the target (>= 0.8). A back-to-back client is "
    "the worst case; a router updates every few minutes. With the limiter, locked "
    "sources wait refusal_delay for their answer, so the flood gets few answers/s.",
    "rrl_cost": "Measured once by hand (no script): the per-query cost of response rate limiting and DNS cookies.",
    "scale_users": "The targets of issue 17 at 1,000,000 users: start <= 10 s, <= 1 KiB resident per "
    "user, import <= 60 s, no reactor stall above 10 ms. A stall is the server's longest reactor "
    "turn in a phase, metered inside it (dyndns_plugin/reactor_lag.py), with the CPU time the "
    "reactor thread used in that turn: a turn much longer than its CPU time is the thread not "
    "running (other processes on two shared CPUs, or another of our threads holding the GIL). "
    "The longest wait of a DNS client asking one query at a time (a lost query counts as 1 s) is "
    "the outside view; compare its idle floor. The idle phase has a server-side floor too: on this "
    "shared VM even turns that answer one query reach ~10 ms and ~7 ms of CPU (steal time counts as "
    "the thread's), so a turn near the idle one is the machine. Resident bytes per user are the server's VmRSS minus that of the same server on a "
    "one-user store; a user here has a scrypt hash, an MD5 verifier, an IPv4 address and a "
    "client address (~220 bytes of them are the two verifiers). The CLI's own start (it loads "
    "the store like the server) makes each `dyndns user add` take seconds at this size.",
    "fuzz": "Every parser target gets inputs from a seeded, structure-aware mutational loop; an "
    "exception, a wrong answer or a hang (1 s) is a failure. tests/test_fuzz.py runs the "
    "same engine with a few thousand inputs per target.",
}


def load(folder: str) -> dict[str, dict[str, Any]]:
    out = {}
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".json"):
                with open(os.path.join(folder, name)) as f:
                    out[name[:-5]] = json.load(f)
    return out


def script_doc(name: str) -> tuple[str, str]:
    """(title, setup) from the script's docstring: its first line, its last paragraphs."""
    path = os.path.join(REPO, "bench", f"{name}.py")
    if not os.path.exists(path):
        return "", ""
    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    paragraphs = doc.split("\n\n")
    setup = [p for p in paragraphs[1:] if not p.startswith("    ")]
    text = " ".join(" ".join(setup).split())
    text = re.sub(r"B\{([^{}]*)\}", r"**\1**", re.sub(r"[CL]\{([^{}]*)\}", r"`\1`", text))
    return paragraphs[0].strip().rstrip("."), text


def flat(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in flat(v, f"{prefix}{k} " if prefix or k else "")]
    if isinstance(value, float):
        value = f"{value:,.3f}".rstrip("0").rstrip(".")
    elif isinstance(value, int) and not isinstance(value, bool):
        value = f"{value:,}"
    return [(prefix.strip().replace("_", " "), str(value).replace("|", "\\|"))]


def table(rows: list[tuple[str, str]], head: tuple[str, str] = ("figure", "value")) -> str:
    return "\n".join([f"| {head[0]} | {head[1]} |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in rows])


def plot(name: str, spec: dict[str, Any], short: bool) -> str:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = name  # the same record gives the same file
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    groups, series = spec["groups"], spec["series"]
    if spec.get("kind") == "line":
        for label, values in series.items():
            ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
        ax.set_xlabel("update")
    else:
        width = 0.8 / max(len(series), 1)
        for k, (label, values) in enumerate(series.items()):
            ax.bar([i + k * width for i in range(len(values))], values, width, label=label)
        ax.set_xticks(
            [i + width * (len(series) - 1) / 2 for i in range(len(groups))],
            groups,
            rotation=30 if len(groups) > 6 else 0,
            ha="right" if len(groups) > 6 else "center",
        )
    ax.set_title(spec["title"] + (" (short run)" if short else ""), fontsize=10)
    ax.set_ylabel(spec["ylabel"])
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(PLOTS, exist_ok=True)
    path = os.path.join(PLOTS, f"{name}.svg")
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return os.path.relpath(path, os.path.join(REPO, "bench"))


def section(name: str, rec: dict[str, Any] | None, published: dict[str, Any] | None) -> str:
    title, setup = script_doc(name)
    title = title or (published or {}).get("title") or name
    out = [f"## {title}", ""]
    if setup:
        out += [f"**Setup.** {setup}", ""]
    if rec:
        m, code = rec["machine"], rec["code"]
        tools = ", ".join(f"{k} {m[k]}" for k in ("dnsperf", "wrk", "named", "nsd", "postgresql") if k in m)
        out += [
            f"**Latest run** ({'short run, ' if rec.get('short_run') else ''}{rec['date']}): "
            f"`{rec['command']}` on commit `{code.get('commit')}` ({code.get('source')}"
            + (", with uncommitted changes" if code.get("uncommitted_changes") else "")
            + "); "
            f"{m['cores']} × {m['cpu']}, Linux {m['kernel']}, Python {m['python']}, "
            f"Twisted {m.get('twisted')}, SQLite {m.get('sqlite')}"
            + (f", {tools}" if tools else "")
            + f"; load average at start {' '.join(m['loadavg_at_start'])}.",
            "",
        ]
        if rec.get("short_run"):
            out += [
                f"*A {rec['short_run']}* (`--short`: a few minutes at most, on a machine shared "
                "with other work): the numbers show that the benchmark runs and roughly where it "
                "stands, not the full-size result (see the published runs below).",
                "",
            ]
        out += [table(flat(rec["figures"])), ""]
        if rec.get("ratios"):
            out += [table(flat(rec["ratios"]), ("ratio (same run)", "value")), ""]
        if rec.get("plot"):
            out += [f"![{title}]({plot(name, rec['plot'], rec.get('short_run', False))})", ""]
        for problem in rec.get("problems", [])[:10]:
            out.append(f"- PROBLEM: {problem}")
        out += [""] if rec.get("problems") else []
    out += [f"**Reading.** {READING.get(name, '')}", ""]
    return "\n".join(out + published_details(published))


def published_details(published: dict[str, Any] | None) -> list[str]:
    """The hand-written full-size results, verbatim, folded."""
    if not published:
        return []
    dates = ", ".join(published["measured_on_dates"]) or "date not recorded"
    out = [
        f"<details><summary>Published full-size runs ({dates}"
        + (f"; commits {', '.join(published['commits_named'])}" if published["commits_named"] else "")
        + ", converted verbatim from the hand-written file)</summary>",
        "",
    ]
    for head, text in published["sections"].items():
        out += [f"#### {head}", "", text, ""]
    return out + ["</details>", ""]


def fuzz_section(rec: dict[str, Any], published: dict[str, Any] | None) -> str:
    rows = [
        "| target | parser | inputs | exceptions | wrong answers | hangs | inputs/s | corpus | commit |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows += [
        f"| {t['target']} | {t['parser']} | {t['inputs']:,} | {t['exceptions']} | "
        f"{t['wrong_answers']} | {t['hangs']} | {t['inputs_per_second']:,} | {t['corpus']} | "
        f"{t.get('commit', rec['code']['commit'])} |"
        for t in rec["figures"]["targets"]
    ]
    rows += (
        ["", "Found on the way and fixed (each with a regression test):", ""]
        + [
            f"- {f['target']}: {f['finding'].replace('<', '&lt;')} (fixed in `{f['fix']}`)"
            for f in rec.get("found_and_fixed", [])
        ]
        if rec.get("found_and_fixed")
        else []
    )
    title = "Fuzzing every parser in process (bench/fuzz.py)"
    return "\n".join(
        [
            f"## {title}",
            "",
            "**Setup**: the docstring of bench/fuzz.py (engine, targets, what counts as a failure).",
            "",
            f"**Run**: `{rec['command']}`, {rec['date']}, commit `{rec['code']['commit']}` "
            f"({rec['code']['source']}); machine: {rec['machine'].get('note', rec['machine'])}.",
            "",
        ]
        + rows
        + ["", f"![{title}]({plot('fuzz', rec['plot'], False)})", "", f"**Reading.** {READING['fuzz']}", ""]
        + published_details(published)
    )


def main() -> int:
    records, published = load(RESULTS), load(os.path.join(RESULTS, "published"))
    names = [n for n in ORDER if n in records or n in published]
    body = [
        "<!-- GENERATED by `python -m bench.report` from bench/results/*.json: do not edit by hand. -->",
        "# Benchmark results",
        "",
        "**This file is generated** by `python -m bench.report` from the JSON records in "
        "bench/results/ (each script writes its own: `python -m bench.<name>`), with one plot per "
        "benchmark under docs/bench/. Never edit it by hand: rerun a benchmark and the report. "
        "Measurements on loopback (127.0.0.1), not tests. The hand-written results of earlier "
        "full-size runs are kept verbatim in bench/results/published/ and shown under each "
        "benchmark. A run or round counts as *disturbed* when other programs used, or the "
        "hypervisor stole, more than 5% of one CPU meanwhile (the machine is shared).",
        "",
        "Contents:",
        "",
    ]
    titles = {n: script_doc(n)[0] or published.get(n, {}).get("title", n) for n in names}
    titles["fuzz"] = "Fuzzing every parser in process (bench/fuzz.py)"
    body += [f"{k}. [{titles[n]}](#{n.replace('_', '-')})" for k, n in enumerate(names, 1)] + [""]
    for name in names:
        body += [f'<a id="{name.replace("_", "-")}"></a>', ""]
        if name == "fuzz":
            body.append(
                fuzz_section(records["fuzz"], published.get("fuzz"))
                if "fuzz" in records
                else section(name, None, published.get("fuzz"))
            )
        else:
            body.append(section(name, records.get(name), published.get(name)))
        body += ["---", ""]
    with open(os.path.join(REPO, "bench", "RESULTS.md"), "w") as f:
        f.write("\n".join(body).rstrip("-\n") + "\n")
    print(f"bench/RESULTS.md: {len(names)} benchmarks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
