#!/usr/bin/env python3
"""Turns the raw lines collected by scripts/bench into a table and a BENCHMARKS.md section.

Input lines are `KIND side=SIDE key=value ...` with KIND one of `throughput`, `startup-embedded`,
`startup-process`, and `KIND key=value ...` for `fsync-probe`. SIDE is `mock` or a Tidepool storage
variant: `tidepool` (memory), `tidepool-disk`, `tidepool-fsync` (disk with flush.messages=1).
Throughput: median of the repeats per side and workload. Start-up (in-memory broker only): the figures
the measuring tool already reduced (medians and p99 over its runs). Ratios are Tidepool / mock.

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


# Tidepool's sides in scripts/bench: one per storage variant, in table order.
VARIANTS = [
    ("tidepool", "memory"),
    ("tidepool-disk", "disk"),
    ("tidepool-fsync", "disk + flush.messages=1"),
]


def fmt_rate(msgs, mb):
    return f"{msgs / 1e6:.2f} M rec/s, {mb:.0f} MB/s"


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def summarise(runs):
    """Medians of one side's runs of one workload."""
    return {
        "msgs": statistics.median(float(r["msgs_per_s"]) for r in runs),
        "mb": statistics.median(float(r["mb_per_s"]) for r in runs),
        "runs": [float(r["msgs_per_s"]) for r in runs],
        "cpu": statistics.median(float(r["server_cpu_ms"]) for r in runs),
        "wall": statistics.median(float(r["wall_ms"]) for r in runs),
        "records": int(statistics.median(int(r["records"]) for r in runs)),
    }


def side_records(rows, side):
    counts = sorted({int(r["records"]) for r in rows if r["kind"] == "throughput" and r["side"] == side})
    return counts[0] if len(counts) == 1 else None


def column_label(rows, side, name, args):
    label = f"Tidepool, {name}"
    records = side_records(rows, side)
    if records is not None and records != args.records:
        label += f" (N = {records:,})"
    return label


def verdict(ratio, goal):
    if ratio >= 1.05:
        text = f"faster than the mock cluster ({ratio:.2f}×)"
        return text + (": goal met" if goal else "")
    if ratio >= 0.95:
        return f"level with the mock cluster within the noise (±5 %, {ratio:.2f}×)"
    text = f"slower than the mock cluster ({ratio:.2f}×)"
    return text + (": goal not met" if goal else "")


def build(rows, args):
    """Returns (variants, throughput, startup, details, verdicts).

    variants: the (side, column label) pairs present; throughput rows: (label, mock, one cell per
    variant); startup rows: (label, Tidepool, mock, ratio); details rows: (label, side, records, runs,
    broker CPU, wall).
    """
    present = [(side, column_label(rows, side, name, args)) for side, name in VARIANTS
               if any(r["kind"] == "throughput" and r["side"] == side for r in rows)]
    throughput, details, verdicts = [], [], []
    for key, label in WORKLOADS:
        label = label.format(partitions=args.partitions)
        per_side = {}
        for side in [side for side, _ in present] + ["mock"]:
            runs = [r for r in rows if r["kind"] == "throughput" and r["side"] == side and r["workload"] == key]
            if runs:
                per_side[side] = summarise(runs)
        if "mock" not in per_side or len(per_side) < 2:
            continue
        mock = per_side["mock"]
        cells = []
        for side, column in present:
            if side not in per_side:
                cells.append("–")
                continue
            tp = per_side[side]
            ratio = tp["msgs"] / mock["msgs"]
            cells.append(f"{fmt_rate(tp['msgs'], tp['mb'])}: **{ratio:.2f}×**")
            name = dict(VARIANTS)[side]
            if side == "tidepool":
                verdicts.append(f"{label}, memory: {verdict(ratio, goal=True)}")
            else:
                verdicts.append(f"{label}, {name}: {verdict(ratio, goal=False)}")
        throughput.append((label, fmt_rate(mock["msgs"], mock["mb"]), *cells))
        for side, name in [(side, f"Tidepool, {dict(VARIANTS)[side]}") for side, _ in present] + [("mock", "mock")]:
            if side in per_side:
                summary = per_side[side]
                details.append((label, name, f"{summary['records']:,}",
                                ", ".join(f"{v / 1e6:.2f}" for v in summary["runs"]),
                                f"{summary['cpu']:.0f} ms", f"{summary['wall']:.0f} ms"))
    startup = []
    for kind, label in (("startup-embedded", "start-to-ready, embedded"), ("startup-process", "start-to-ready, process")):
        found = {r["side"]: r for r in rows if r["kind"] == kind}
        if "tidepool" not in found or "mock" not in found:
            continue
        tp, mock = found["tidepool"], found["mock"]
        tp_median, mock_median = float(tp["ready_median_us"]), float(mock["ready_median_us"])
        startup.append((
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
    return present, throughput, startup, details, verdicts


def text_table(header, rows):
    rows = [tuple(cell.replace("**", "") for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header] + rows)


def throughput_header(present):
    return ("workload", "mock cluster", *(f"{column} (× mock)" for _, column in present))


STARTUP_HEADER = ("start-up (in-memory broker)", "Tidepool", "mock cluster", "Tidepool / mock")


def console(present, throughput, startup):
    parts = []
    if throughput:
        parts.append(text_table(throughput_header(present), throughput))
    if startup:
        parts.append(text_table(STARTUP_HEADER, startup))
    return "\n\n".join(parts)


def markdown_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def fsync_probe(rows):
    probes = [r for r in rows if r["kind"] == "fsync-probe"]
    parts = []
    for probe in probes:
        size = int(probe["bytes"])
        size_text = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"
        parts.append(f"{size_text}: median {fmt_us(float(probe['median_us']))}, p90 {fmt_us(float(probe['p90_us']))}")
    return "; ".join(parts)


def markdown(rows, present, throughput, startup, details, verdicts, args):
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    storage = {
        "tidepool": "memory (`serve`, in-memory storage)",
        "tidepool-disk": "disk (`serve --data-dir DIR`, fsync left to the kernel as with Kafka's default "
                         "flush.messages)",
        "tidepool-fsync": "disk + flush.messages=1 (`serve --data-dir DIR --flush-messages 1`: every "
                          "partition a produce request appends to is fsynced before the answer)",
    }
    out = [
        BEGIN,
        f"### Latest run: {today}",
        "",
        f"- Command: `{args.command}`",
        f"- Machine: {machine()}; load average {args.load} when the run started",
        f"- Tidepool: commit {git_revision(args.root)}, `target/release/tidepool` (release profile); storage: "
        + "; ".join(storage[side] for side, _ in present),
    ]
    if args.filesystem and any(side != "tidepool" for side, _ in present):
        line = (f"- Data directories: a fresh DIR under `target/` per broker start, removed when it stops; "
                f"filesystem {args.filesystem}")
        probe = fsync_probe(rows)
        if probe:
            line += f"; fsync after appending (bench/fsync_probe.py) {probe}"
        out.append(line)
    out += [
        f"- Peer: {args.peer}",
        f"- Client: {args.client}",
        f"- Workload: N = {args.records:,} records of 100-byte values (no key) unless the column says "
        f"otherwise, acks=all, no compression, linger.ms=5; {args.repeats} run{'s' if args.repeats != 1 else ''} per side, sides in turn "
        "(order reversed every other run), median shown; broker restarted between runs",
        "",
    ]
    if throughput:
        out += ["Throughput, and each Tidepool variant's ratio to the mock cluster (records/s):", ""]
        out += markdown_table(throughput_header(present), throughput)
        out.append("")
    if startup:
        out += markdown_table(STARTUP_HEADER, startup)
        out.append("")
    out += ["Against the goals (set for the in-memory broker; the disk variants have none):", ""]
    out += [f"- {verdict}" for verdict in verdicts]
    if details:
        out += [
            "",
            "Every throughput run, and what it cost (broker CPU: user + system time of the broker process during "
            "the workload, median; client wall: the whole rdkafka_performance process including connect and "
            "close, median):",
            "",
        ]
        out += markdown_table(("workload", "side", "records", "runs, M rec/s", "broker CPU", "client wall"), details)
    out += ["", END]
    return "\n".join(out)


def write_section(path, begin, end, section):
    """Replaces the text from `begin` to `end` in the file at `path` with `section` (which carries
    both markers), or appends it when the markers are absent."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as out:
        out.write(text)


def write(path, section):
    write_section(path, BEGIN, END, section)

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--load", default="unknown", help="1-minute load average at the start")
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--filesystem", default="", help="filesystem of the disk variants' data directories")
    parser.add_argument("--peer", required=True)
    parser.add_argument("--client", required=True)
    parser.add_argument("--write", help="BENCHMARKS.md to update")
    parser.add_argument("--markdown", action="store_true", help="also print the markdown section")
    args = parser.parse_args()

    rows = parse(args.results)
    present, throughput, startup, details, verdicts = build(rows, args)
    if not throughput and not startup:
        print("report: no complete pair of results", file=sys.stderr)
        return 1
    print(console(present, throughput, startup))
    print()
    print("\n".join(verdicts))
    section = markdown(rows, present, throughput, startup, details, verdicts, args)
    if args.markdown:
        print()
        print(section)
    if args.write:
        write(args.write, section)
        print(f"\nwrote the results section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
