#!/usr/bin/env python3
"""The compaction scenario of the compatibility matrix (tests/matrix/README.md) with kcat 1.7.1
(librdkafka 2.0.2): records produced and read by kcat, judged by compaction_matrix.py; reports
the cell `kcat` / `compaction`.

    kcat_compaction.py --bootstrap HOST:PORT[,...] [--peer tidepool|kafka] [--timeout S]

kcat cannot create topics, so the compacted topic is created (and deleted) with confluent-kafka's
AdminClient, as in kcat_roundtrip.sh; everything else is kcat:
- produce: `kcat -P -p 0 -K '\\t' -Z -l FILE` with enable.idempotence=true and acks=all, one line
  `key<TAB>value` per record and `key<TAB>` for a tombstone (-Z sends an empty value as null); the
  n-th delivery line of `-v -v` is the n-th record's (one partition, in order);
- read: `kcat -C -p 0 -o beginning -e -J` every second until each key appears once (-J gives a
  tombstone's payload as null).

Exits 0 only when every check passed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence

import compaction_matrix as scenario
from compat_common import Cells, Checks, parse_args, run_main, unique_topic
from confluent_compaction import Produce, Read, base_config, run_scenario
from kcat_support import DELIVERY_LINE


def kcat_version() -> str:
    try:
        banner = subprocess.run(["kcat", "-V"], capture_output=True, text=True, timeout=10).stdout
    except FileNotFoundError:
        raise SystemExit("kcat is not installed (apt-get install kcat; scripts/test setup does)") from None
    found = re.search(r"^Version (\S+) .*librdkafka (\S+)", banner, re.MULTILINE)
    return f"kcat {found.group(1)} (librdkafka {found.group(2)})" if found else "kcat"


CLIENT = kcat_version()


def kcat_produce(bootstrap: str, topic: str, timeout: float, work: str) -> Produce:
    batches = iter(range(1_000_000))

    def produce(records: Sequence[tuple[bytes, bytes | None]]) -> list[int]:
        path = os.path.join(work, f"in-{next(batches)}.txt")
        with open(path, "wb") as out:
            for key, value in records:
                assert b"\t" not in key and b"\n" not in key + (value or b"")
                out.write(key + b"\t" + (value or b"") + b"\n")
        # -Z makes the empty value of a tombstone line null; a non-empty value stays as it is.
        assert all(value is None or value for _, value in records)
        argv = [
            "kcat", "-P", "-b", bootstrap, "-t", topic, "-p", "0", "-K", "\t", "-Z",
            "-X", "enable.idempotence=true", "-X", "acks=all", "-v", "-v", "-l", path,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        reports = [int(m.group(2)) for m in map(DELIVERY_LINE.search, done.stderr.splitlines()) if m]
        if done.returncode != 0 or len(reports) != len(records):
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise RuntimeError(
                f"kcat -P exit status {done.returncode}, {len(reports)} delivery lines "
                f"for {len(records)} records: {tail}"
            )
        return reports

    return produce


def kcat_read(bootstrap: str, topic: str, timeout: float) -> Read:
    def read(end: int) -> list[scenario.Read]:
        argv = ["kcat", "-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e", "-J"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise RuntimeError(f"kcat -C exit status {done.returncode}: {tail}")
        records = []
        for line in done.stdout.splitlines():
            if not line.strip():
                continue
            message = json.loads(line)
            key, payload = message.get("key"), message.get("payload")
            records.append(
                scenario.Read(
                    message["offset"],
                    None if key is None else key.encode(),
                    None if payload is None else payload.encode(),
                )
            )
        if not records or records[-1].offset + 1 < end:
            raise RuntimeError(f"kcat -C -e stopped before offset {end} ({len(records)} records)")
        return records

    return read


def main(checks: Checks, cells: Cells) -> int:
    from confluent_kafka.admin import AdminClient

    args = parse_args(__doc__)
    topic = args.topic or unique_topic("compaction-kcat")
    print(f"== {CLIENT} compaction against {args.bootstrap} (peer {args.peer.name}), topic {topic}")
    reason = args.peer.lacks("admin-controller")
    if reason:
        checks.skip("everything", f"peer {args.peer.name}: {reason}")
        cells.not_applicable(f"peer {args.peer.name} cannot create topics")
        return checks.report("skipped")
    admin = AdminClient(base_config(args.bootstrap))
    with tempfile.TemporaryDirectory(prefix="tidepool-kcat-compaction-") as work:
        produce = kcat_produce(args.bootstrap, topic, args.timeout, work)
        read = kcat_read(args.bootstrap, topic, args.timeout)
        run_scenario(checks, cells, admin, topic, produce, read, args.timeout)
    return checks.report(f"topic {topic}")


if __name__ == "__main__":
    CELLS = Cells("kcat", ["compaction"])
    run_main(lambda checks: main(checks, CELLS), CLIENT, CELLS)
