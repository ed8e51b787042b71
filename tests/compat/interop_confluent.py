#!/usr/bin/env python3
"""librdkafka (through confluent-kafka) on one side of tidepool-client: tests/client_interop.rs
drives it to check that both clients agree on every key, value, header, partition and offset.

    interop_confluent.py consume --bootstrap B --topic T --count N [--timeout S]
        reads N records from every partition of T from the beginning (assign(), no group) and
        prints one JSON line per record, in (partition, offset) order
    interop_confluent.py produce --bootstrap B --topic T [--compression C] < records.jsonl
        produces each input line {"key", "value", "headers", "partition"} (hex strings or null;
        partition null = librdkafka's murmur2_random partitioner, the Java client's rule) with
        idempotence on, and prints one JSON line per delivery report {"index", "partition",
        "offset"} in input order

Bytes travel as hex so that any byte survives JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def hex_or_none(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def bytes_or_none(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def consume(args: argparse.Namespace) -> int:
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "interop-unused",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    })
    metadata = consumer.list_topics(args.topic, timeout=10)
    partitions = sorted(metadata.topics[args.topic].partitions)
    consumer.assign([TopicPartition(args.topic, p, 0) for p in partitions])
    records = []
    deadline = time.monotonic() + args.timeout
    while len(records) < args.count and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            raise KafkaException(message.error())
        records.append({
            "partition": message.partition(),
            "offset": message.offset(),
            "key": hex_or_none(message.key()),
            "value": hex_or_none(message.value()),
            "headers": [[k, hex_or_none(v)] for k, v in (message.headers() or [])],
            "timestamp": message.timestamp()[1],
        })
    consumer.close()
    records.sort(key=lambda r: (r["partition"], r["offset"]))
    for record in records:
        print(json.dumps(record))
    if len(records) != args.count:
        print(f"read {len(records)} of {args.count} records in {args.timeout}s", file=sys.stderr)
        return 1
    return 0


def produce(args: argparse.Namespace) -> int:
    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "enable.idempotence": True,
        "partitioner": "murmur2_random",
        "compression.type": args.compression,
        "linger.ms": 5,
    })
    reports: dict[int, dict] = {}
    errors: list[str] = []

    def report(index: int):
        def on_delivery(error, message):
            if error is not None:
                errors.append(f"record {index}: {error}")
            else:
                reports[index] = {"index": index, "partition": message.partition(), "offset": message.offset()}
        return on_delivery

    count = 0
    for index, line in enumerate(sys.stdin):
        record = json.loads(line)
        extra = {}
        if record.get("partition") is not None:
            extra["partition"] = record["partition"]
        producer.produce(
            args.topic,
            key=bytes_or_none(record.get("key")),
            value=bytes_or_none(record.get("value")),
            headers=[(k, bytes_or_none(v)) for k, v in record.get("headers", [])],
            on_delivery=report(index),
            **extra,
        )
        producer.poll(0)
        count += 1
    remaining = producer.flush(60)
    for index in range(count):
        if index in reports:
            print(json.dumps(reports[index]))
    if errors or remaining or len(reports) != count:
        print(f"delivered {len(reports)} of {count}; {remaining} left; errors: {errors[:5]}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("consume")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    args = parser.parse_args()
    return consume(args) if args.mode == "consume" else produce(args)


if __name__ == "__main__":
    sys.exit(main())
