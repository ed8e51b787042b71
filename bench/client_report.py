#!/usr/bin/env python3
"""Turns the `throughput side=librdkafka|tidepool-client ...` lines of `scripts/bench --only client`
into a table and the Client results of BENCHMARKS.md.

Both clients ran against the same freshly started Tidepool (`serve`, in memory) in the same run,
with the same records and settings; per (client, workload) the median run is shown, and the ratio
of tidepool-client's median to librdkafka's (the issue's goal: at least 0.80).

With --write FILE, replaces the text between the two markers below in FILE (appending them if absent).
"""
import argparse
import datetime
import statistics
import sys

from report import git_revision, machine, parse, write_section

BEGIN = "<!-- bench:client:begin (written by scripts/bench; edit around it, not inside) -->"
END = "<!-- bench:client:end -->"
GOAL = 0.80
WORKLOADS = [
    ("produce-1p", "produce, 1 partition"),
    ("produce-np", "produce, {p} partitions"),
    ("fetch-np", "consume, {p} partitions (assign, from offset 0)"),
]
CLIENTS = [("librdkafka", "librdkafka (rdkafka_performance)"), ("tidepool-client", "tidepool-client (examples/perf.rs)")]


def medians(rows):
    runs = {}
    for row in rows:
        if row["kind"] != "throughput":
            continue
        runs.setdefault((row["side"], row["workload"]), []).append(row)
    out = {}
    for key, found in runs.items():
        rates = sorted(int(r["msgs_per_s"]) for r in found)
        out[key] = (statistics.median(rates), rates, statistics.median(float(r["mb_per_s"]) for r in found))
    return out


def table(rows, partitions):
    found = medians(rows)
    header = ["workload", *(label + " rec/s (median; runs)" for _, label in CLIENTS), "ratio (ours / librdkafka)"]
    body = []
    verdicts = []
    for workload, label in WORKLOADS:
        cells = [label.format(p=partitions)]
        values = []
        for side, _ in CLIENTS:
            if (side, workload) not in found:
                cells.append("—")
                values.append(None)
                continue
            median, rates, mb = found[(side, workload)]
            cells.append(f"**{median:,.0f}** ({', '.join(f'{r:,}' for r in rates)}); {mb:.1f} MB/s")
            values.append(median)
        if None in values:
            cells.append("—")
        else:
            ratio = values[1] / values[0]
            cells.append(f"**{ratio:.2f}**")
            verdicts.append((label.format(p=partitions), ratio))
        body.append(cells)
    return header, body, verdicts


def markdown(rows, args):
    header, body, verdicts = table(rows, args.partitions)
    out = [BEGIN, f"### Latest client run: {datetime.date.today().isoformat()}", ""]
    out.append(f"- Command: `{args.command}`")
    out.append(f"- Machine: {machine()}; load average {args.load} when the run started")
    out.append(f"- Tidepool: {git_revision(args.root)}, release profile; `tidepool serve` in memory, one node, fresh per run")
    out.append(
        f"- Workload: {args.records:,} records of 100 bytes, acks=all (idempotent on both sides), linger 5 ms; "
        f"{args.repeats} runs per client, the clients alternating order each run; each client writes its own topics"
    )
    out.append(f"- Peer: {args.peer}")
    out.append("")
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    for cells in body:
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    missed = [label for label, ratio in verdicts if ratio < GOAL]
    if missed:
        out.append(f"Goal (at least {GOAL:.2f} of librdkafka's throughput) **not met** for: {', '.join(missed)}.")
    else:
        out.append(f"Goal (at least {GOAL:.2f} of librdkafka's throughput) met for every workload measured.")
    out.append("")
    out.append(END)
    return "\n".join(out)


def write(path, section):
    write_section(path, BEGIN, END, section)
    print(f"wrote the client results of {path}")

def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--load", default="?")
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--write")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = parse(args.results)
    section = markdown(rows, args)
    if args.write:
        write(args.write, section)
    else:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
