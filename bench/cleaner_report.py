#!/usr/bin/env python3
"""Turns the `cleaner ...` lines of examples/cleaner.rs into a table and the Cleaner results of
BENCHMARKS.md.

Input lines: `cleaner storage=memory|disk keys=K run=R records=... bytes_before=... bytes_after=...
segments_before=... segments_after=... records_removed=... keys_kept=... fill_ms=... clean_ms=...
mb_per_s=...`. Per (storage, keys), the run with the median clean time is shown (MB/s is
bytes_before / clean time, MB = 10^6 bytes). There is no peer: librdkafka's mock cluster does not
compact.

With --write FILE, replaces the text between the two markers below in FILE (appending them if absent).
"""
import argparse
import datetime
import sys

from report import git_revision, machine, parse, write_section

BEGIN = "<!-- bench:cleaner:begin (written by scripts/bench; edit around it, not inside) -->"
END = "<!-- bench:cleaner:end -->"

STORAGE = {
    "memory": "memory",
    "disk": "disk",
}


def groups(rows):
    """(storage, keys) -> runs, in the order first seen."""
    out = {}
    for row in rows:
        if row["kind"] != "cleaner":
            continue
        out.setdefault((row["storage"], int(row["keys"])), []).append(row)
    return out


def median_run(runs):
    ordered = sorted(runs, key=lambda r: float(r["clean_ms"]))
    return ordered[(len(ordered) - 1) // 2]


def table(grouped):
    header = ("storage", "keys", "log cleaned", "records removed", "left after the pass", "segments",
              "clean pass (median)", "MB/s cleaned (median; every run)")
    rows = []
    for (storage, keys), runs in grouped.items():
        run = median_run(runs)
        before, after = int(run["bytes_before"]), int(run["bytes_after"])
        records, removed = int(run["records"]), int(run["records_removed"])
        every = ", ".join(f"{float(r['mb_per_s']):.0f}" for r in runs)
        rows.append((
            STORAGE.get(storage, storage),
            f"{keys:,}",
            f"{before / 1e6:.1f} MB, {records:,} records",
            f"{removed:,} ({removed / records * 100:.1f} %)",
            f"{after / 1e6:.1f} MB ({(1 - after / before) * 100:.1f} % smaller), {int(run['keys_kept']):,} keys",
            f"{run['segments_before']} → {run['segments_after']}",
            f"{float(run['clean_ms']) / 1000:.2f} s",
            f"**{float(run['mb_per_s']):.0f}** ({every})",
        ))
    return header, rows


def markdown(grouped, args):
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    runs = max(len(r) for r in grouped.values())
    out = [
        BEGIN,
        f"### Latest cleaner run: {today}",
        "",
        f"- Command: `{args.command}` (runs `{args.example}`)",
        f"- Machine: {machine()}; load average {args.load} when the run started",
        f"- Tidepool: commit {git_revision(args.root)}, release profile",
    ]
    if args.filesystem:
        out.append(f"- Disk runs: a fresh data directory under `target/` per run, removed after it; "
                   f"filesystem {args.filesystem}")
    out += [
        f"- Workload: one partition of a compacted topic (segment.bytes {args.segment_mib} MiB) filled with "
        f"{args.mb} MB of uncompressed batches of {args.batch_records} records, each a key drawn uniformly "
        f"from K keys and a {args.value_bytes}-byte value; rolled, then one `clean_now` pass timed; "
        f"{runs} run{'s' if runs != 1 else ''} per row, each on a fresh broker",
        "- Peer: none (librdkafka's mock cluster does not compact, so there is nothing to measure beside)",
        "",
    ]
    header, rows = table(grouped)
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    out += ["", END]
    return "\n".join(out)


def console(grouped):
    header, rows = table(grouped)
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths))]
    lines += ["  ".join(str(c).replace("**", "").ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def write(path, section):
    write_section(path, BEGIN, END, section)

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--command", required=True, help="the scripts/bench command line")
    parser.add_argument("--example", required=True, help="the examples/cleaner.rs command line")
    parser.add_argument("--load", default="unknown", help="1-minute load average at the start")
    parser.add_argument("--filesystem", default="", help="filesystem of the disk runs' data directories")
    parser.add_argument("--mb", type=int, required=True)
    parser.add_argument("--segment-mib", type=int, default=16)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--batch-records", type=int, default=500)
    parser.add_argument("--write", help="BENCHMARKS.md to update")
    parser.add_argument("--markdown", action="store_true", help="also print the markdown section")
    args = parser.parse_args()

    grouped = groups(parse(args.results))
    if not grouped:
        print("cleaner_report: no cleaner results", file=sys.stderr)
        return 1
    print(console(grouped))
    section = markdown(grouped, args)
    if args.markdown:
        print()
        print(section)
    if args.write:
        write(args.write, section)
        print(f"\nwrote the cleaner results of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
