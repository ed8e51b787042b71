#!/usr/bin/env python3
"""Turns the raw lines collected by scripts/bench into a table and a BENCHMARKS.md section.

Input lines are `KIND side=SIDE key=value ...` with KIND one of `throughput`, `startup-embedded`,
`startup-process`. Throughput: median of the repeats per side and workload. Start-up: the figures the
measuring tool already reduced (medians and p99 over its runs). Ratios are Tidepool / mock.

With --write FILE, replaces the text between the two markers below in FILE (appending them if absent).
"""
import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys

BEGIN = "<!-- bench:results:begin (written by scripts/bench; edit around it, not inside) -->"
END = "<!-- bench:results:end -->"

WORKLOADS = [
    ("produce-1p", "produce, 1 partition"),
    ("produce-np", "produce, {partitions} partitions"),
    ("fetch-np", "fetch, {partitions} partitions"),
]


def parse(path):
    rows = []
    with open(path) as lines:
        for line in lines:
            words = line.split()
            if not words:
                continue
            fields = dict(word.split("=", 1) for word in words[1:] if "=" in word)
            fields["kind"] = words[0]
            rows.append(fields)
    return rows


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        ram_kib = int(re.search(r"MemTotal:\s+(\d+)", info.read()).group(1))
    return f"{os.cpu_count()} CPUs ({cpu}), {ram_kib / 1024 / 1024:.1f} GiB RAM, Linux {platform.release()}"


def git_revision(root):
    try:
        revision = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return revision + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt_rate(msgs, mb):
    return f"{msgs / 1e6:.2f} M rec/s, {mb:.0f} MB/s"


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def spread(side):
    return (", ".join(f"{v / 1e6:.2f}" for v in side[2]), f"{side[3]:.0f} ms", f"{side[4]:.0f} ms")


def build(rows, args):
    """Returns (table, details, verdicts).

    table rows: (label, Tidepool, mock, ratio); details rows: (label, side, runs, broker CPU, wall).
    """
    table, details, verdicts = [], [], []
    for key, label in WORKLOADS:
        per_side = {}
        for side in ("tidepool", "mock"):
            runs = [r for r in rows if r["kind"] == "throughput" and r["side"] == side and r["workload"] == key]
            if runs:
                per_side[side] = (
                    statistics.median(float(r["msgs_per_s"]) for r in runs),
                    statistics.median(float(r["mb_per_s"]) for r in runs),
                    [float(r["msgs_per_s"]) for r in runs],
                    statistics.median(float(r["server_cpu_ms"]) for r in runs),
                    statistics.median(float(r["wall_ms"]) for r in runs),
                )
        if len(per_side) < 2:
            continue
        label = label.format(partitions=args.partitions)
        tp, mock = per_side["tidepool"], per_side["mock"]
        ratio = tp[0] / mock[0]
        table.append((label, fmt_rate(tp[0], tp[1]), fmt_rate(mock[0], mock[1]), f"**{ratio:.2f}×**"))
        details.append((label, "Tidepool", *spread(tp)))
        details.append((label, "mock", *spread(mock)))
        if ratio >= 1.05:
            verdicts.append(f"{label}: faster than the mock cluster ({ratio:.2f}×): goal met")
        elif ratio >= 0.95:
            verdicts.append(f"{label}: level with the mock cluster within the noise (±5 %, {ratio:.2f}×)")
        else:
            verdicts.append(f"{label}: slower than the mock cluster ({ratio:.2f}×): goal not met")
    for kind, label in (("startup-embedded", "start-to-ready, embedded"), ("startup-process", "start-to-ready, process")):
        found = {r["side"]: r for r in rows if r["kind"] == kind}
        if len(found) < 2:
            continue
        tp, mock = found["tidepool"], found["mock"]
        tp_median, mock_median = float(tp["ready_median_us"]), float(mock["ready_median_us"])
        table.append((
            f"{label}, {tp['runs']} starts: median / p99 (first)",
            f"{fmt_us(tp_median)} / {fmt_us(float(tp['ready_p99_us']))} ({fmt_us(float(tp['first_ready_us']))})",
            f"{fmt_us(mock_median)} / {fmt_us(float(mock['ready_p99_us']))} "
            f"({fmt_us(float(mock['first_ready_us']))})",
            f"{tp_median / mock_median:.2f}× the time",
        ))
        if kind == "startup-embedded":
            p99_ms = float(tp["ready_p99_us"]) / 1000
            verdicts.append(f"{label}: p99 {p99_ms:.2f} ms: "
                            + ("goal (< 10 ms) met" if p99_ms < 10 else "goal (< 10 ms) not met"))
    return table, details, verdicts


def console(table):
    widths = [max(len(row[i]) for row in table + [("workload", "tidepool", "mock", "ratio")]) for i in range(4)]
    header = ("workload", "tidepool", "mock", "tidepool/mock")
    lines = ["  ".join(cell.replace("**", "").ljust(w) for cell, w in zip(header, widths))]
    for row in table:
        lines.append("  ".join(cell.replace("**", "").ljust(w) for cell, w in zip(row[:4], widths)))
    return "\n".join(lines)


def markdown(table, details, verdicts, args):
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    out = [
        BEGIN,
        f"### Latest run: {today}",
        "",
        f"- Command: `{args.command}`",
        f"- Machine: {machine()}; load average {args.load} when the run started",
        f"- Tidepool: commit {git_revision(args.root)}, `target/release/tidepool serve` (release profile), "
        "in-memory storage",
        f"- Peer: {args.peer}",
        f"- Client: {args.client}",
        f"- Workload: {args.records:,} records of 100-byte values (no key), acks=all, no compression, "
        f"linger.ms=5; {args.repeats} runs per side, alternating sides, median shown; broker restarted "
        "between runs",
        "",
        "| workload | Tidepool | mock cluster | Tidepool / mock |",
        "|---|---|---|---|",
    ]
    out += [f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} |" for row in table]
    out += ["", "Against the goals:", ""]
    out += [f"- {verdict}" for verdict in verdicts]
    out += [
        "",
        "Every throughput run, and what it cost (broker CPU: user + system time of the broker process during the "
        "workload, median; client wall: the whole rdkafka_performance process including connect and close, "
        "median):",
        "",
        "| workload | side | runs, M rec/s | broker CPU | client wall |",
        "|---|---|---|---|---|",
    ]
    out += [f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} | {row[4]} |" for row in details]
    out += ["", END]
    return "\n".join(out)


def write(path, section):
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as out:
        out.write(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--load", default="unknown", help="1-minute load average at the start")
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--write", help="BENCHMARKS.md to update")
    parser.add_argument("--markdown", action="store_true", help="also print the markdown section")
    args = parser.parse_args()

    table, details, verdicts = build(parse(args.results), args)
    if not table:
        print("report: no complete pair of results", file=sys.stderr)
        return 1
    print(console(table))
    print()
    print("\n".join(verdicts))
    section = markdown(table, details, verdicts, args)
    if args.markdown:
        print()
        print(section)
    if args.write:
        write(args.write, section)
        print(f"\nwrote the results section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
