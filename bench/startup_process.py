#!/usr/bin/env python3
"""Process start-to-ready: spawn a broker command, wait for its ready line, then do one ApiVersions round trip.

Each run: spawn (fork + exec) -> the line `<PREFIX>bootstrap=HOST:PORT` on stdout ("ready line") -> a new
TCP connection answers ApiVersions v0 ("ready") -> SIGTERM -> exit ("stop"). Prints one line of key=value
figures in microseconds (medians and p99 over the runs, nearest rank), e.g.

    startup-process name=tidepool runs=20 line_median_us=... ready_median_us=... ready_p99_us=...

    bench/startup_process.py --name tidepool --runs 20 -- target/release/tidepool serve --listen 127.0.0.1:0
"""
import argparse
import math
import signal
import socket
import struct
import subprocess
import sys
import time

API_VERSIONS_V0 = struct.pack(">ihhih", 15, 18, 0, 42, 5) + b"bench"


def api_versions_round_trip(bootstrap: str) -> int:
    """Returns the ApiVersions error code of the first broker in a bootstrap list."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(API_VERSIONS_V0)
        header = read_exactly(sock, 10)
        size, correlation_id, error_code = struct.unpack(">iih", header)
        if correlation_id != 42 or size < 6:
            raise RuntimeError(f"bad ApiVersions response header {header!r}")
        read_exactly(sock, size - 6)
        return error_code


def read_exactly(sock: socket.socket, count: int) -> bytes:
    chunks = []
    while count > 0:
        chunk = sock.recv(min(count, 1 << 16))
        if not chunk:
            raise RuntimeError("connection closed before the whole ApiVersions response arrived")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def percentile(sorted_values, p):
    rank = max(1, min(len(sorted_values), math.ceil(p / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def one_run(command, marker):
    start = time.perf_counter_ns()
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline().decode(errors="replace").strip()
        line_ns = time.perf_counter_ns() - start
        if marker not in line:
            raise RuntimeError(f"{command[0]}: expected a line containing {marker!r}, got {line!r}")
        error_code = api_versions_round_trip(line.split(marker, 1)[1].split()[0])
        ready_ns = time.perf_counter_ns() - start
        if error_code != 0:
            print(f"warning: ApiVersions v0 answered error code {error_code}", file=sys.stderr)
        stop_start = time.perf_counter_ns()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        stop_ns = time.perf_counter_ns() - stop_start
        return line_ns, ready_ns, stop_ns
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--marker", default="bootstrap=", help="text just before HOST:PORT in the ready line")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    results = [one_run(command, args.marker) for _ in range(max(1, args.runs))]
    first_ready_us = results[0][1] / 1e3
    figures = {}
    for index, label in enumerate(("line", "ready", "stop")):
        values = sorted(r[index] / 1e3 for r in results)
        figures[f"{label}_median_us"] = percentile(values, 50)
        figures[f"{label}_p99_us"] = percentile(values, 99)
    fields = " ".join(f"{k}={v:.1f}" for k, v in figures.items())
    print(f"startup-process name={args.name} runs={len(results)} first_ready_us={first_ready_us:.1f} {fields}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
