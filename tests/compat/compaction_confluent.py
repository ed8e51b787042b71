#!/usr/bin/env python3
"""Log compaction seen by real clients: librdkafka (through confluent-kafka) writes a compacted
topic, and both it and kcat read back what the cleaner left.

    compaction_confluent.py --bootstrap HOST:PORT[,...] --topic T --phase produce
                            [--state FILE] [--partitions 3] [--keys 1000] [--updates 100000]
                            [--tombstones 100] [--segment-bytes 131072] [--delete-retention-ms 2000]
                            [--compression none|gzip|snappy|lz4|zstd]
    compaction_confluent.py --bootstrap HOST:PORT[,...] --topic T --phase verify [--state FILE]
                            [--expect-tombstones | --expect-no-tombstones] [--no-kcat]

produce: creates T with cleanup.policy=compact, a small segment.bytes (many segments), a small
delete.retention.ms and the default min.cleanable.dirty.ratio; writes --updates keyed records
over --keys keys (idempotent, acks=all), then a tombstone for every tenth key (--tombstones of
them), each after that key's last update; and saves what a reader must find afterwards to the
state file (JSON: per key, the partition, offset and value of its last record; per partition,
the high watermark).

verify: reads every partition from offset 0 with assign() (no group), through confluent-kafka
and then through kcat (`kcat -C -o beginning -e -J`), and checks each read:
- per partition, offsets strictly increase, and some are missing (the cleaner removed records);
- every record has a key, and every key appears exactly once: a live key with its latest value,
  in the partition and at the offset its last delivery report named;
- a deleted key is there once, as a tombstone at its offset (--expect-tombstones), or not at all
  (--expect-no-tombstones); with neither, either is accepted;
- the low watermark is still 0 and the high watermark what the producer left;
- a read from an offset the cleaner removed (inside the widest gap) starts at the next record.

The caller makes every record cleanable and runs the cleaner between the phases: it rolls every
partition after produce (the active segment is never cleaned, and would still hold older values)
and writes nothing more. tests/compaction_clients.rs does that against an embedded broker.
Exits 0 only when every check passed; prints one line per check with the reasons of failures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from compat_common import Checks, Deadline, run_main

CLIENT = f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
VALUE_BYTES = 100
SEED = 20_240_917


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--phase", required=True, choices=("produce", "verify"))
    parser.add_argument("--state", help="the expectation file (default: TMPDIR/tidepool-compaction-TOPIC.json)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=100_000)
    parser.add_argument("--tombstones", type=int, default=100, help="keys deleted (every tenth key by default)")
    parser.add_argument("--segment-bytes", type=int, default=128 * 1024)
    parser.add_argument("--delete-retention-ms", type=int, default=2000)
    parser.add_argument("--compression", default="none", choices=CODECS)
    expect = parser.add_mutually_exclusive_group()
    expect.add_argument("--expect-tombstones", action="store_true", help="every deleted key is still a tombstone")
    expect.add_argument("--expect-no-tombstones", action="store_true", help="no deleted key is left at all")
    parser.add_argument("--no-kcat", action="store_true", help="skip the kcat read (reported as SKIP)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for each wait")
    args = parser.parse_args()
    if args.keys < 1 or args.updates < args.keys or not 0 <= args.tombstones <= args.keys:
        parser.error("need 1 <= --keys <= --updates and 0 <= --tombstones <= --keys")
    if args.state is None:
        args.state = os.path.join(tempfile.gettempdir(), f"tidepool-compaction-{args.topic}.json")
    return args


def base_config(args: Any) -> dict[str, Any]:
    """Settings every handle shares. Auto-creation off: a typo must not make a new topic."""
    return {"bootstrap.servers": args.bootstrap, "socket.timeout.ms": 30_000, "allow.auto.create.topics": False}


def key_name(index: int) -> str:
    return f"key-{index:05d}"


def value_of(key: str, update: int) -> bytes:
    """VALUE_BYTES bytes naming the key and the update, so a stale value is recognisable."""
    head = f"{key}|update-{update:07d}|".encode()
    filler = bytes(0x61 + (update + i) % 26 for i in range(VALUE_BYTES - len(head)))
    return head + filler


def deleted_keys(keys: int, tombstones: int) -> list[str]:
    """Every tenth key (3, 13, 23, ...) when there are 10x as many keys as tombstones; else spread."""
    step = max(1, keys // max(1, tombstones))
    return [key_name((i * step + min(3, step - 1)) % keys) for i in range(tombstones)]


@dataclass(frozen=True)
class Send:
    key: str
    value: bytes | None  # None: a tombstone
    update: int  # -1 for a tombstone


def plan(args: Any) -> list[Send]:
    """The records in send order: every key once (shuffled), then random keys; each deleted
    key's tombstone at a random place after its last update."""
    rng = random.Random(SEED)
    keys = [key_name(i) for i in range(args.keys)]
    first = keys[:]
    rng.shuffle(first)
    order = first + [rng.choice(keys) for _ in range(args.updates - args.keys)]
    sends = [Send(key, value_of(key, i), i) for i, key in enumerate(order)]
    last_update = {key: i for i, key in enumerate(order)}
    # Insert the tombstones from the back so earlier positions stay valid.
    inserts = sorted(
        ((rng.randint(last_update[key] + 1, len(order)), key) for key in deleted_keys(args.keys, args.tombstones)),
        reverse=True,
    )
    for position, key in inserts:
        sends.insert(position, Send(key, None, -1))
    return sends


def create_topic(args: Any) -> None:
    admin = AdminClient(base_config(args))
    config = {
        "cleanup.policy": "compact",
        "segment.bytes": str(args.segment_bytes),
        "delete.retention.ms": str(args.delete_retention_ms),
    }
    future = admin.create_topics(
        [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1, config=config)],
        request_timeout=args.timeout,
    )[args.topic]
    future.result()
    deadline = Deadline(args.timeout)
    while not deadline.expired():
        found = admin.list_topics(args.topic, timeout=5).topics.get(args.topic)
        if found is not None and found.error is None and len(found.partitions) == args.partitions:
            if all(p.leader >= 0 for p in found.partitions.values()):
                return
        time.sleep(0.1)
    raise TimeoutError(f"{args.topic} did not show {args.partitions} partitions with leaders in time")


def produce(checks: Checks, args: Any) -> int:
    create_topic(args)
    checks.check("admin: create compacted topic", True)
    sends = plan(args)
    producer = Producer(
        {
            **base_config(args),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # Batches well under segment.bytes, so segments fill with many batches.
            "batch.size": max(1024, min(64 * 1024, args.segment_bytes // 4)),
            "compression.type": args.compression,
        }
    )
    deliveries: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def reporter(index: int):
        def on_delivery(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                errors.append(f"record {index} ({sends[index].key}): {error}")
            else:
                deliveries[index] = (message.partition(), message.offset())

        return on_delivery

    started = time.monotonic()
    deadline = Deadline(args.timeout)
    for index, send in enumerate(sends):
        while True:
            try:
                producer.produce(args.topic, key=send.key.encode(), value=send.value, on_delivery=reporter(index))
                break
            except BufferError:
                if deadline.expired():
                    raise
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(args.timeout)
    print(f"   produced {len(deliveries)}/{len(sends)} records in {time.monotonic() - started:.1f}s")
    checks.check("produce: every record acknowledged", not errors and not left, f"{left} undelivered; {errors[:5]}")

    # With idempotence, a partition's offsets follow send order, one offset per record.
    by_partition: dict[int, list[int]] = {}
    for index in range(len(sends)):
        if index in deliveries:
            partition, offset = deliveries[index]
            by_partition.setdefault(partition, []).append(offset)
    for partition, offsets in sorted(by_partition.items()):
        checks.check(
            "produce: offsets contiguous from 0 in send order per partition",
            offsets == list(range(len(offsets))),
            f"partition {partition}: first offsets {offsets[:5]}, {len(offsets)} records, last {offsets[-1]}",
        )
    keys: dict[str, dict[str, Any]] = {}
    for index, send in enumerate(sends):
        if index not in deliveries:
            continue
        partition, offset = deliveries[index]
        previous = keys.get(send.key)
        checks.check(
            "produce: records of one key share a partition",
            previous is None or previous["partition"] == partition,
            f"{send.key}: partitions {previous and previous['partition']} and {partition}",
        )
        keys[send.key] = {
            "partition": partition,
            "offset": offset,
            "value": None if send.value is None else send.value.decode(),
        }
    state = {
        "topic": args.topic,
        "partitions": args.partitions,
        "records": len(sends),
        "updates": args.updates,
        "tombstones": args.tombstones,
        "high_watermarks": {str(p): len(offsets) for p, offsets in by_partition.items()},
        "keys": keys,
    }
    with open(args.state, "w") as out:
        json.dump(state, out)
    live = sum(1 for entry in keys.values() if entry["value"] is not None)
    print(
        f"   {len(sends)} records over {len(keys)} keys: {live} live, {len(keys) - live} deleted; "
        f"per partition {dict(sorted((p, len(o)) for p, o in by_partition.items()))}; state in {args.state}"
    )
    return checks.report(f"produce phase, topic {args.topic}")


@dataclass(frozen=True)
class Read:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def read_with_confluent(args: Any, partitions: int, deadline: Deadline) -> tuple[list[Read], dict, dict, set]:
    """Reads every partition from offset 0 to its end (partition EOF at the high watermark).
    Returns the records, the watermarks (low, high) and the partitions not read to their end."""
    consumer = Consumer(
        {
            **base_config(args),
            "group.id": f"{args.topic}-verify",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "enable.partition.eof": True,
            "check.crcs": True,
        }
    )
    watermarks = {}
    for partition in range(partitions):
        watermarks[partition] = consumer.get_watermark_offsets(
            TopicPartition(args.topic, partition), timeout=args.timeout, cached=False
        )
    consumer.assign([TopicPartition(args.topic, p, 0) for p in range(partitions)])
    pending = set(range(partitions))
    reads: list[Read] = []
    while pending and not deadline.expired():
        for message in consumer.consume(num_messages=1000, timeout=min(1.0, deadline.remaining())):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if message.offset() >= watermarks[message.partition()][1]:
                        pending.discard(message.partition())
                    continue
                raise KafkaException(error)
            reads.append(Read(message.partition(), message.offset(), message.key(), message.value()))
    consumer.close()
    return reads, watermarks, pending


def read_with_kcat(args: Any, deadline: Deadline) -> tuple[list[Read], str]:
    """`kcat -C -o beginning -e -J` over every partition; returns the records and kcat's version."""
    version = subprocess.run(["kcat", "-V"], capture_output=True, text=True, check=False).stdout
    version_line = next((line for line in version.splitlines() if line.startswith("Version")), "kcat")
    command = ["kcat", "-C", "-b", args.bootstrap, "-t", args.topic, "-o", "beginning", "-e", "-J", "-q"]
    command += ["-X", "check.crcs=true", "-X", "allow.auto.create.topics=false"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=max(1.0, deadline.remaining()))
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}: {done.stderr[-2000:]}")
    reads = []
    for line in done.stdout.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        key = record.get("key")
        payload = record.get("payload")
        reads.append(
            Read(
                record["partition"],
                record["offset"],
                None if key is None else key.encode(),
                None if payload is None else payload.encode(),
            )
        )
    return reads, version_line


def check_read(checks: Checks, reader: str, reads: list[Read], state: dict, args: Any) -> None:
    """The checks every reader's view must pass (see the module docstring)."""
    expected: dict[str, dict[str, Any]] = state["keys"]
    highs = {int(p): h for p, h in state["high_watermarks"].items()}
    by_partition: dict[int, list[Read]] = {}
    for read in reads:
        by_partition.setdefault(read.partition, []).append(read)
    for partition, records in sorted(by_partition.items()):
        offsets = [r.offset for r in records]
        increasing = all(a < b for a, b in zip(offsets, offsets[1:]))
        checks.check(f"{reader}: offsets strictly increase per partition", increasing, f"partition {partition}")
        high = highs.get(partition, 0)
        checks.check(
            f"{reader}: offsets within the partition, with gaps",
            bool(offsets) and offsets[0] >= 0 and offsets[-1] < high and len(offsets) < high,
            f"partition {partition}: {len(offsets)} records at offsets {offsets[0]}..{offsets[-1]}, "
            f"high watermark {high}",
        )
    seen: dict[str, list[Read]] = {}
    for read in reads:
        checks.check(f"{reader}: every record has a key", read.key is not None, f"{read}")
        if read.key is not None:
            seen.setdefault(read.key.decode(errors="replace"), []).append(read)
    unknown = sorted(set(seen) - set(expected))
    checks.check(f"{reader}: no key that was never written", not unknown, f"keys {unknown[:5]}")
    stale: list[str] = []
    duplicated: list[str] = []
    missing: list[str] = []
    misplaced: list[str] = []
    tombstones_left: list[str] = []
    tombstones_missing: list[str] = []
    live = deleted = 0
    for key, want in sorted(expected.items()):
        found = seen.get(key, [])
        if want["value"] is None:
            deleted += 1
            if args.expect_no_tombstones and found:
                tombstones_left.append(f"{key} at {[(r.partition, r.offset) for r in found]}")
                continue
            if not found:
                if args.expect_tombstones:
                    tombstones_missing.append(key)
                continue
        else:
            live += 1
            if not found:
                missing.append(key)
                continue
        if len(found) > 1:
            duplicated.append(f"{key} x{len(found)} at {[(r.partition, r.offset) for r in found[:4]]}...")
            continue
        read = found[0]
        if (read.partition, read.offset) != (want["partition"], want["offset"]):
            misplaced.append(
                f"{key} at {read.partition}/{read.offset}, delivered at {want['partition']}/{want['offset']}"
            )
        got = None if read.value is None else read.value.decode(errors="replace")
        if got != want["value"]:
            stale.append(f"{key}: {got!r:.60}, latest {want['value']!r:.60}")
    checks.check(f"{reader}: every live key present ({live})", not missing, f"{len(missing)} missing: {missing[:5]}")
    checks.check(f"{reader}: exactly one record per key", not duplicated, f"{len(duplicated)}: {duplicated[:3]}")
    checks.check(f"{reader}: each key's latest value", not stale, f"{len(stale)} stale or wrong: {stale[:3]}")
    checks.check(
        f"{reader}: each record at its delivered partition and offset",
        not misplaced,
        f"{len(misplaced)}: {misplaced[:3]}",
    )
    if args.expect_tombstones:
        checks.check(
            f"{reader}: every deleted key still a tombstone ({deleted})",
            not tombstones_missing,
            f"{len(tombstones_missing)} gone: {tombstones_missing[:5]}",
        )
    elif args.expect_no_tombstones:
        checks.check(
            f"{reader}: every deleted key gone ({deleted})",
            not tombstones_left,
            f"{len(tombstones_left)} left: {tombstones_left[:3]}",
        )
    present_deleted = sum(1 for key, want in expected.items() if want["value"] is None and key in seen)
    print(
        f"   {reader}: {len(reads)} records, {live - len(missing)}/{live} live keys, "
        f"{present_deleted}/{deleted} tombstones, partitions {sorted(by_partition)}"
    )


def gap_probes(reads: list[Read]) -> dict[int, tuple[int, int]]:
    """Per partition, an offset the cleaner removed (the middle of the widest gap between two
    records read) and the offset of the next record, which a read from there must start at."""
    by_partition: dict[int, list[int]] = {}
    for read in reads:
        by_partition.setdefault(read.partition, []).append(read.offset)
    probes = {}
    for partition, offsets in sorted(by_partition.items()):
        gaps = [(b - a, a, b) for a, b in zip(offsets, offsets[1:]) if b - a > 1]
        if gaps:
            _, before, after = max(gaps)
            probes[partition] = ((before + after) // 2, after)
    return probes


def check_gap_reads_confluent(checks: Checks, args: Any, probes: dict[int, tuple[int, int]]) -> None:
    """assign() at a removed offset: the first record delivered is the next one kept, as on Kafka
    (a committed offset may point into a gap)."""
    name = "confluent-kafka: a read from a removed offset starts at the next record"
    for partition, (removed, following) in sorted(probes.items()):
        consumer = Consumer(
            {
                **base_config(args),
                "group.id": f"{args.topic}-gap",
                "enable.auto.commit": False,
                "auto.offset.reset": "error",
            }
        )
        consumer.assign([TopicPartition(args.topic, partition, removed)])
        deadline = Deadline(args.timeout)
        first = None
        while first is None and not deadline.expired():
            message = consumer.poll(min(1.0, deadline.remaining()))
            if message is None:
                continue
            if message.error() is not None:
                raise KafkaException(message.error())
            first = message.offset()
        consumer.close()
        checks.check(
            name, first == following, f"partition {partition}: from {removed}, got {first}, expected {following}"
        )


def check_gap_reads_kcat(checks: Checks, args: Any, probes: dict[int, tuple[int, int]]) -> None:
    """The same with `kcat -C -p P -o OFFSET -c 1`."""
    name = "kcat: a read from a removed offset starts at the next record"
    for partition, (removed, following) in sorted(probes.items()):
        command = ["kcat", "-C", "-b", args.bootstrap, "-t", args.topic, "-p", str(partition), "-o", str(removed)]
        command += ["-c", "1", "-e", "-J", "-q", "-X", "allow.auto.create.topics=false"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        first = json.loads(lines[0])["offset"] if done.returncode == 0 and lines else None
        checks.check(
            name,
            first == following,
            f"partition {partition}: from {removed}, got {first}, expected {following} "
            f"(exit {done.returncode}: {done.stderr[-300:]})",
        )


def verify(checks: Checks, args: Any) -> int:
    with open(args.state) as source:
        state = json.load(source)
    partitions = state["partitions"]
    highs = {int(p): h for p, h in state["high_watermarks"].items()}
    started = time.monotonic()
    reads, watermarks, pending = read_with_confluent(args, partitions, Deadline(args.timeout))
    print(f"   confluent-kafka read {len(reads)} records in {time.monotonic() - started:.1f}s")
    checks.check(
        "confluent-kafka: read every partition to its end",
        not pending,
        f"partitions {sorted(pending)} not at EOF in time; watermarks {watermarks}",
    )
    for partition, (low, high) in sorted(watermarks.items()):
        checks.check(
            "list offsets: low watermark 0, high watermark unchanged by cleaning",
            (low, high) == (0, highs.get(partition, 0)),
            f"partition {partition}: ({low}, {high}), expected (0, {highs.get(partition, 0)})",
        )
    check_read(checks, "confluent-kafka", reads, state, args)
    probes = gap_probes(reads)
    check_gap_reads_confluent(checks, args, probes)
    if args.no_kcat:
        checks.skip("kcat: read", "--no-kcat given")
    elif shutil.which("kcat") is None:
        checks.fail("kcat: read", "kcat is not installed (apt-get install kcat), and --no-kcat was not given")
    else:
        started = time.monotonic()
        kcat_reads, version = read_with_kcat(args, Deadline(args.timeout))
        print(f"   {version}: read {len(kcat_reads)} records in {time.monotonic() - started:.1f}s")
        checks.check("kcat: read", True)
        check_read(checks, "kcat", kcat_reads, state, args)
        check_gap_reads_kcat(checks, args, probes)
    if args.expect_tombstones:
        expectation = "tombstones expected"
    elif args.expect_no_tombstones:
        expectation = "no tombstones expected"
    else:
        expectation = "tombstones may or may not be left"
    return checks.report(f"verify phase, topic {args.topic} ({expectation})")


def main(checks: Checks) -> int:
    args = parse_args()
    print(f"== {CLIENT} against {args.bootstrap}, topic {args.topic}, phase {args.phase}")
    return produce(checks, args) if args.phase == "produce" else verify(checks, args)


if __name__ == "__main__":
    run_main(main, CLIENT)
