#!/usr/bin/env python3
"""Real clients against a broker under floods: librdkafka (through confluent-kafka) and
kafka-python each produce records and read them back through a consumer group.

    limits_clients.py --bootstrap HOST:PORT [--records 200] [--timeout 30]

tests/limits.rs starts `tidepool serve`, keeps a client pipelining fetches it never reads and
more long-polling fetches than may park, and runs this meanwhile. One line per client,
`PASS: <client>: ...` or `FAIL: <client>: <reason>`; exit 1 when any failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid

import confluent_kafka
import kafka
from kafka import KafkaConsumer, KafkaProducer

# Retried errors are logged by kafka-python at WARNING; the verdict is what came back.
logging.basicConfig(level=logging.CRITICAL)


def expected_values(client: str, count: int) -> list[bytes]:
    return [f"{client} record {index}".encode() for index in range(count)]


def check(read: list[bytes], expected: list[bytes]) -> str | None:
    """None when exactly the records sent were read, in order; else what differs."""
    if read == expected:
        return None
    missing = len(set(expected) - set(read))
    return f"read {len(read)} records ({missing} of {len(expected)} sent missing)"


def confluent(bootstrap: str, count: int, timeout_s: float) -> str | None:
    topic = f"limits-confluent-{uuid.uuid4().hex[:8]}"
    expected = expected_values("confluent", count)
    failures: list[str] = []
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True}
    )
    for value in expected:
        producer.produce(
            topic,
            value=value,
            on_delivery=lambda error, _msg: error and failures.append(str(error)),
        )
    remaining = producer.flush(timeout_s)
    if remaining or failures:
        return f"{remaining} undelivered, errors: {failures[:3]}"
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-group",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    consumer.subscribe([topic])
    read: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(read) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                return f"consumer error: {message.error()}"
            read.append(message.value())
    finally:
        consumer.close()
    return check(read, expected)


def kafka_python(bootstrap: str, count: int, timeout_s: float) -> str | None:
    topic = f"limits-kafka-python-{uuid.uuid4().hex[:8]}"
    expected = expected_values("kafka-python", count)
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all")
    futures = [producer.send(topic, value=value) for value in expected]
    producer.flush(timeout=timeout_s)
    for future in futures:
        future.get(timeout=timeout_s)
    producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=[bootstrap],
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
    )
    read: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(read) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                read.extend(record.value for record in records)
    finally:
        consumer.close()
    return check(read, expected)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    librdkafka = confluent_kafka.libversion()[0]
    clients = {
        f"confluent-kafka {confluent_kafka.__version__} (librdkafka {librdkafka})": confluent,
        f"kafka-python {kafka.__version__}": kafka_python,
    }
    failed = False
    for name, run in clients.items():
        started = time.monotonic()
        try:
            problem = run(args.bootstrap, args.records, args.timeout)
        except Exception as error:  # a client raising is a failed check, reported with the rest
            problem = f"{type(error).__name__}: {error}"
        took = time.monotonic() - started
        if problem is None:
            print(f"PASS: {name}: produced and consumed {args.records} records in {took:.1f} s")
        else:
            failed = True
            print(f"FAIL: {name}: {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
