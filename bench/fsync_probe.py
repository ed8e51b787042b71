#!/usr/bin/env python3
"""What an fsync costs on the filesystem of the broker's data directory, for the table's context.

Appends BYTES to a fresh file in DIR and fsyncs, RUNS times (the first few are warm-up and dropped), and
prints one line of key=value figures in microseconds (nearest-rank median and p90), e.g.

    fsync-probe bytes=1048576 runs=50 median_us=1257 p90_us=2507

A produce request with flush.messages=1 costs the broker about one such append and fsync per partition
it names. The file is removed afterwards.

    bench/fsync_probe.py --dir target/tidepool-bench-data.XXXX --bytes 1048576 --runs 50
"""
import argparse
import math
import os
import sys
import tempfile
import time

WARM_UP = 5


def nearest_rank(sorted_values, fraction):
    return sorted_values[max(0, math.ceil(fraction * len(sorted_values)) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--bytes", type=int, default=1 << 20)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    data = os.urandom(args.bytes)
    fd, path = tempfile.mkstemp(prefix="fsync-probe.", dir=args.dir)
    try:
        times = []
        for run in range(WARM_UP + args.runs):
            os.write(fd, data)
            start = time.perf_counter()
            os.fsync(fd)
            if run >= WARM_UP:
                times.append((time.perf_counter() - start) * 1e6)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    print(f"fsync-probe bytes={args.bytes} runs={args.runs} median_us={nearest_rank(times, 0.5):.0f} "
          f"p90_us={nearest_rank(times, 0.9):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
