#!/usr/bin/env python3
"""Turns the `peers side=SIDE run=R key=value ...` lines of `scripts/bench --only peers` (printed by
bench/go/load, one per broker start) into a table and the Peers results of BENCHMARKS.md.

Per side and figure the median over the runs is shown. Tidepool's ratio to each peer is normalised so
that higher is better for Tidepool: peer / Tidepool for times, latencies and memory, Tidepool / peer
for throughput. So 2.0× means Tidepool is twice as fast (or half the latency, or half the memory).

With --write FILE, replaces the text between the two markers below in FILE (appending them if absent).
"""
import argparse
import datetime
import statistics
import sys

from report import git_revision, machine, parse, write_section

BEGIN = "<!-- bench:peers:begin -->"
END = "<!-- bench:peers:end -->"
# Within this of 1.0 a ratio is "level": the runs of one side differ by about that much on this machine.
NOISE = 0.05

SIDES = {
    "tidepool": "Tidepool",
    "kafka": "Apache Kafka",
    "mock": "librdkafka mock cluster",
    "kfake": "franz-go kfake",
}

# (key, label, unit, higher_is_better, source): source is a field of the `peers` lines.
ROWS = [
    ("produce", "produce throughput, {p} partitions", "rate", True, "produce_rps"),
    ("consume", "consume throughput, {p} partitions", "rate", True, "consume_rps"),
    ("lat_p50", "produce latency p50", "us", False, "lat_p50_us"),
    ("lat_p99", "produce latency p99", "us", False, "lat_p99_us"),
    ("lat_p999", "produce latency p99.9", "us", False, "lat_p999_us"),
    ("e2e10_p50", "end-to-end latency p50, fetch max wait 10 ms", "us", False, "e2e10_p50_us"),
    ("e2e10_p99", "end-to-end latency p99, fetch max wait 10 ms", "us", False, "e2e10_p99_us"),
    ("e2e500_p50", "end-to-end latency p50, fetch max wait 500 ms", "us", False, "e2e500_p50_us"),
    ("e2e500_p99", "end-to-end latency p99, fetch max wait 500 ms", "us", False, "e2e500_p99_us"),
    ("ready", "time to ready (spawn → first Metadata answer)", "ms", False, "ready_ms"),
    ("idle_rss", "memory: RSS idle after start", "kib", False, "idle_rss_kib"),
    ("peak_rss", "memory: peak RSS (VmHWM) at the end of the run", "kib", False, "peak_rss_kib"),
]

# Why Tidepool is not ahead of a peer on a row, as found by investigating (BENCHMARKS.md, "Peers", where
# the investigation is told). Keyed by (row key, side), or (row key, "*") for any peer; a row that is
# behind without an entry here is reported as not investigated.
TAILS = (
    "tail latency on a shared 2-CPU machine. The p99 and p99.9 of 10,000 records (5,000 end to end) are its "
    "100 and 10 slowest, and they move by 2x between runs of the same broker (see the table of every run), "
    "so the ranking within a factor of about 1.5 changes from run to run. No broker-side cause was found: "
    "Tidepool's p50 equals the mock's; per produce request it makes one epoll_wait, one recvfrom and one "
    "sendto (strace -c of the broker over 3,000 records: 4,046 recvfrom, 4,022 sendto, 4,477 epoll_wait, 255 "
    "futex), and one tokio worker instead of two (TOKIO_WORKER_THREADS=1) moved no percentile beyond the "
    "run-to-run spread on a quiet machine"
)
CAUSES = {
    ("produce", "mock"): (
        "broker CPU on a machine whose 2 CPUs the client shares: Tidepool spends about 140 ms per million "
        "records, the mock about 90 ms, with the same page faults for storing them (about 28,000 each). In a "
        "profile of the row, the difference is Tidepool's CRC-32C check of every batch (about 19 ms per "
        "million 100-byte records, `tidepool_protocol::batch::validate`; the mock checks none), the rest "
        "spread over request parsing, producer-sequence checks and buffer copies, none above a few ms. Every "
        "broker CPU millisecond is one the client lacks; the runs "
        "of the two overlap (see the table of every run). The CRC check stays: rejecting a corrupt batch is a "
        "broker's job"
    ),
    ("produce", "*"): (
        "broker CPU on a machine whose 2 CPUs the client shares (see the cost table): every broker CPU "
        "millisecond is one the client lacks"
    ),
    ("consume", "*"): (
        "the load client's limit: the peer and Tidepool both serve faster than kgo decodes records on the "
        "CPU left to it (client CPU in the cost table is most of the row's time); Kafka sends its log files "
        "with sendfile, Tidepool copies each fetch response twice (see peak memory), which costs broker CPU "
        "but not this row"
    ),
    ("lat_p50", "*"): "level within the noise: medians a few µs apart, from runs that overlap",
    ("lat_p99", "*"): TAILS,
    ("lat_p999", "*"): TAILS,
    ("e2e10_p50", "*"): TAILS,
    ("e2e10_p99", "*"): TAILS,
    ("e2e500_p50", "*"): TAILS,
    ("e2e500_p99", "*"): TAILS,
    ("ready", "*"): (
        "the size of the executable. Both start in a few milliseconds (see the table of every run); in a "
        "profile of 20 starts most of Tidepool's CPU is the kernel mapping its code pages on first touch "
        "(`filemap_map_pages`, `next_uptodate_folio`, page faults), and Tidepool has 7.3 MB of code against the "
        "mock's 2.5 MB (`size`); its dynamic relocations cost about 60 µs (LD_DEBUG=statistics)"
    ),
    ("idle_rss", "*"): (
        "the executable's code pages, mapped from the page cache and shared with any other process running "
        "it: of Tidepool's 6-7 MiB, 3.2 MB is its own code and 0.75 MB its read-only data, while its "
        "anonymous memory is 450 KiB against the mock's 640 KiB (`/proc/PID/smaps_rollup`). A release build "
        "with `lto = \"fat\"` and `codegen-units = 1`, tried in a scratch copy, has 5.4 MB of code and idles at "
        "5.7-5.9 MiB"
    ),
    ("peak_rss", "*"): (
        "fetch responses are assembled in memory, twice: the records are copied into a per-connection "
        "scratch buffer (`handler/fetch.rs`, `read_all` into `Buffers::scratch`) and then encoded into the "
        "output buffer (`connection.rs`), where the mock and Kafka write records from storage. Since "
        "`fetch_response_bytes_max` (4 MiB of records per answer; kgo asked for up to 50 MB, 1 MiB per "
        "partition) the consume row adds tens of MiB rather than 70 (peak 142 MiB against 204 before); "
        "the rest of the gap to the mock is the produce row's stored records (both keep every byte in "
        "memory) plus those buffers. Writing records to the socket straight from the log needs the "
        "hand-written Fetch encoder noted under Throughput"
    ),
}


def fmt(value, unit, mb=None):
    if unit == "rate":
        text = f"{value / 1e6:.2f} M rec/s" if value >= 1e6 else f"{value / 1e3:.0f} k rec/s"
        return text + (f", {mb:.0f} MB/s" if mb is not None else "")
    if unit == "us":
        if value >= 1e6:
            return f"{value / 1e6:.2f} s"
        return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} µs"
    if unit == "ms":
        return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"
    if unit == "kib":
        return f"{value / 1024:.1f} MiB"
    return f"{value}"


def collect(rows):
    runs = {}
    for row in rows:
        if row["kind"] == "peers":
            runs.setdefault(row["side"], []).append(row)
    return runs


def median_of(found, field, bare=False):
    """Median over the full runs, or with bare=True over the ready-only starts."""
    values = [float(r[field]) for r in found if field in r and (("produce_rps" in r) != bare)]
    return (statistics.median(values), values) if values else (None, [])


def ratio_of(tidepool, peer, higher_is_better):
    if tidepool is None or peer is None or tidepool <= 0 or peer <= 0:
        return None
    return tidepool / peer if higher_is_better else peer / tidepool


def build(rows, args):
    runs = collect(rows)
    sides = [side for side in SIDES if side in runs]
    peers = [side for side in sides if side != "tidepool"]
    table = []
    behind = []
    for key, label, unit, higher, field in ROWS:
        label = label.format(p=args.partitions)
        # Time to ready and idle memory: the ready-only starts (no topics, nothing else running).
        bare = key in ("ready", "idle_rss")
        medians = {side: median_of(runs[side], field, bare) for side in sides}
        mbs = {}
        if unit == "rate":
            mb_field = field.replace("_rps", "_mbps")
            mbs = {side: median_of(runs[side], mb_field)[0] for side in sides}
        cells = [label]
        tidepool = medians.get("tidepool", (None, []))[0]
        cells.append(fmt(tidepool, unit, mbs.get("tidepool")) if tidepool is not None else "—")
        for side in peers:
            value = medians[side][0]
            if value is None:
                cells.append("—")
                continue
            ratio = ratio_of(tidepool, value, higher)
            text = fmt(value, unit, mbs.get(side))
            if ratio is not None:
                text += f": **{ratio:.2f}×**"
                if ratio < 1 + NOISE:
                    behind.append((key, label, side, ratio))
            cells.append(text)
        table.append(cells)
    return sides, peers, runs, table, behind


def run_details(runs, sides, args):
    """Every run's figures, and the broker CPU of the throughput rows (median)."""
    header = ["side", "starts (full + ready-only)", "produce, rec/s per run", "consume, rec/s per run",
              "produce latency p99 per run", "end-to-end p99 per run (10 ms / 500 ms)",
              "time to ready, ready-only starts", "idle RSS, ready-only starts"]
    body = []
    for side in sides:
        found = runs[side]
        full = [r for r in found if "produce_rps" in r]
        bare = [r for r in found if "produce_rps" not in r]
        ready_only = len(bare)

        def joined(field, unit, rows=full):
            return ", ".join(fmt(float(r[field]), unit) for r in rows if field in r)

        e2e = ", ".join(f"{fmt(float(r['e2e10_p99_us']), 'us')} / {fmt(float(r['e2e500_p99_us']), 'us')}"
                        for r in full if "e2e500_p99_us" in r)
        body.append([
            SIDES[side], f"{len(full)} + {ready_only}",
            ", ".join(f"{float(r['produce_rps']) / 1e6:.2f} M" for r in full),
            ", ".join(f"{float(r['consume_rps']) / 1e6:.2f} M" for r in full),
            joined("lat_p99_us", "us"), e2e,
            joined("ready_ms", "ms", bare), joined("idle_rss_kib", "kib", bare),
        ])
    return header, body


def request_details(runs, sides):
    """What the throughput rows cost: CPU of the broker (/proc/PID/stat) and of the load client (getrusage),
    the broker's minor page faults, and the requests as the client saw them (kgo's HookBrokerE2E); median
    of the runs."""
    header = ["side", "row", "broker CPU", "client CPU", "broker page faults", "requests", "mean request",
              "mean response", "mean round trip", "RSS at the end of the row"]
    body = []
    for side in sides:
        full = [r for r in runs[side] if "produce_rps" in r]

        def med(field, scale=1.0, suffix="", digits=0):
            values = [float(r[field]) for r in full if field in r]
            return f"{statistics.median(values) / scale:.{digits}f}{suffix}" if values else "—"

        def size(field):
            values = [float(r[field]) for r in full if field in r]
            if not values:
                return "—"
            value = statistics.median(values)
            return f"{value / 1e6:.2f} MB" if value >= 100_000 else f"{value / 1e3:.1f} kB"

        for row in ("produce", "consume"):
            body.append([
                SIDES[side], row, med(f"{row}_cpu_ms", suffix=" ms"), med(f"{row}_client_cpu_ms", suffix=" ms"),
                med(f"{row}_minflt"), med(f"{row}_requests"), size(f"{row}_request_bytes_mean"),
                size(f"{row}_response_bytes_mean"), med(f"{row}_round_trip_us_mean", 1e3, " ms", 1),
                med(f"{row}_end_rss_kib", 1024, " MiB", 1),
            ])
    return header, body


def markdown_table(header, body):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in body]
    return out


def markdown(rows, args):
    sides, peers, runs, table, behind = build(rows, args)
    versions = dict(v.split("=", 1) for v in args.version)
    out = [BEGIN, f"### Latest peers run: {datetime.date.today().isoformat()}", ""]
    out.append(f"- Command: `{args.command}`")
    out.append(f"- Machine: {machine()} (`nproc` {args.nproc}); load average {args.load} when the run started")
    revision = args.revision or git_revision(args.root)
    out.append(f"- Tidepool: {revision}, release profile; {versions.get('tidepool', '?')}")
    for side in peers:
        out.append(f"- {SIDES[side]}: {versions.get(side, '?')}")
    out.append(f"- Load client: {versions.get('client', '?')}")
    out.append(
        f"- Workload: throughput {args.records:,} records of {args.value_bytes} bytes (no key) over "
        f"{args.partitions} partitions, round-robin, acks=all, idempotent, linger {args.linger}, no compression, "
        f"after a warm-up of {args.warmup:,} records produced and read back; latency rows {args.rate:,} records/s "
        f"to 1 partition, linger 0: produce for {args.lat_seconds:g} s, end-to-end for {args.e2e_seconds:g} s at "
        f"each fetch max wait (fetch min bytes 1); {args.repeats} full runs per broker, each on a fresh start, "
        f"the brokers in turn (order reversed every other run); time to ready and idle memory from "
        f"{args.ready_runs} further start(s) per broker and run that do nothing else (the mock without its topics); "
        "median shown"
    )
    out.append("")
    out.append("Absolute figures (median), and Tidepool's ratio to each peer in bold, normalised so that "
               "**higher is better for Tidepool** (peer / Tidepool for latencies, times and memory; "
               "Tidepool / peer for throughput):")
    out.append("")
    header = ["row", "Tidepool", *(f"{SIDES[side]} (Tidepool ×)" for side in peers)]
    out += markdown_table(header, table)
    out.append("")
    out.append("Every run, and every ready-only start:")
    out.append("")
    out += markdown_table(*run_details(runs, sides, args))
    out.append("")
    out.append("What the throughput rows cost (median of the runs; CPU is user + system time during the row, "
               "10 ms resolution; a page fault is 4 KiB of memory touched for the first time; round trip is from "
               "writing a request to reading its response, queueing behind earlier requests on the connection "
               "included):")
    out.append("")
    out += markdown_table(*request_details(runs, sides))
    out.append("")
    if behind:
        out.append("**Where Tidepool is behind** (ratio under "
                   f"{1 + NOISE:.2f}×: behind, or level within the noise):")
        out.append("")
        # One item per cause, naming every row and peer it explains, in table order.
        grouped = {}
        for key, label, side, ratio in behind:
            cause = CAUSES.get((key, side)) or CAUSES.get((key, "*")) or "cause not investigated yet"
            rows = grouped.setdefault(cause, {})
            rows.setdefault(label, []).append(f"{SIDES[side]} {ratio:.2f}×")
        for cause, rows in grouped.items():
            named = "; ".join(f"{label} ({', '.join(peers)})" for label, peers in rows.items())
            out.append(f"- {named}: {cause}.")
    else:
        out.append(f"Tidepool is ahead of every peer on every row (every ratio at least {1 + NOISE:.2f}×).")
    out.append("")
    out.append(END)
    return "\n".join(out)


def write(path, section):
    write_section(path, BEGIN, END, section)
    print(f"wrote the peers results of {path}")

def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--revision", help="Tidepool's commit when it was built (default: git's HEAD now)")
    parser.add_argument("--load", default="?")
    parser.add_argument("--nproc", default="?")
    parser.add_argument("--records", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--linger", default="5ms")
    parser.add_argument("--rate", type=int, required=True)
    parser.add_argument("--lat-seconds", type=float, required=True)
    parser.add_argument("--e2e-seconds", type=float, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--ready-runs", type=int, required=True)
    parser.add_argument("--version", action="append", default=[], help="SIDE=TEXT, and client=TEXT")
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
