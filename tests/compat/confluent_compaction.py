#!/usr/bin/env python3
"""The compaction scenario of the compatibility matrix (tests/matrix/README.md) with librdkafka
through confluent-kafka: a compacted topic, 200 updates over 20 keys and 5 tombstones from an
idempotent acks=all producer, a `roll` record 1.5 s later, then reads from offset 0 with
assign() every second until the broker's own cleaner has left each key once (at most 60 s);
judged by compaction_matrix.py. Reports the cell `librdkafka` / `compaction`.

    confluent_compaction.py --bootstrap HOST:PORT[,...] [--peer tidepool|kafka] [--timeout S]

Exits 0 only when every check passed. The brokers must look for dirty logs often (`tidepool
serve --cleaner-backoff-ms 1000`, `log.cleaner.backoff.ms=1000` in tests/java/kafka-broker.sh),
or the wait runs out.

`run_scenario` is the scenario once for every client that has no admin API of its own:
kcat_compaction.py gives it kcat's produce and read, and the topic is made and deleted here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import compaction_matrix as scenario
from compat_common import Cells, Checks, Deadline, parse_args, run_main, unique_topic

CLIENT = f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"

# produce(records) -> the offset each delivery report named, in the order given.
Produce = Callable[[Sequence[tuple[bytes, bytes | None]]], list[int]]
# read(end) -> every record of partition 0 from offset 0 up to (not including) `end`.
Read = Callable[[int], list[scenario.Read]]


def base_config(bootstrap: str) -> dict[str, Any]:
    """No auto-creation: a Metadata request for a just-deleted topic must not create it again."""
    return {"bootstrap.servers": bootstrap, "socket.timeout.ms": 30_000, "allow.auto.create.topics": False}


def create_topic(admin: AdminClient, topic: str, timeout: float) -> None:
    """CreateTopics with the scenario's configs, then waits until Metadata shows its leader."""
    new = NewTopic(topic, num_partitions=scenario.PARTITIONS, replication_factor=1, config=dict(scenario.TOPIC_CONFIGS))
    admin.create_topics([new], request_timeout=timeout)[topic].result()
    deadline = Deadline(timeout)
    while not deadline.expired():
        metadata = admin.list_topics(topic, timeout=min(5.0, deadline.remaining() + 0.1))
        found = metadata.topics.get(topic)
        if found is not None and found.error is None and len(found.partitions) == scenario.PARTITIONS:
            if all(p.leader in metadata.brokers for p in found.partitions.values()):
                return
        time.sleep(0.1)
    raise TimeoutError(f"topic {topic} has no leader in Metadata {timeout}s after CreateTopics")


def delete_topic(admin: AdminClient, topic: str, timeout: float) -> None:
    admin.delete_topics([topic], request_timeout=timeout)[topic].result()


def run_scenario(
    checks: Checks, cells: Cells, admin: AdminClient, topic: str, produce: Produce, read: Read, timeout: float
) -> None:
    """The scenario, judged into `checks` and reported as `cells`' compaction cell."""
    create_topic(admin, topic, timeout)
    checks.check("create the compacted topic", True)
    produced = scenario.plan()
    offsets = produce(produced)
    print(f"   produced {len(offsets)} records (offsets {offsets[:1]}..{offsets[-1:]})")
    time.sleep(scenario.ROLL_AFTER_S)
    roll = produce([(scenario.ROLL_KEY, b"roll")])
    checks.check("produce the roll record", len(roll) == 1, f"{len(roll)} delivery reports")
    roll_offset = roll[0] if roll else -1
    started = time.monotonic()
    records: list[scenario.Read] = []
    rounds = 0
    while True:
        rounds += 1
        records = read(roll_offset + 1)
        if scenario.settled(records) or time.monotonic() - started >= scenario.WAIT_S:
            break
        time.sleep(1.0)
    print(f"   read {len(records)} records after {time.monotonic() - started:.1f} s ({rounds} reads from offset 0)")
    failures = scenario.judge(produced, offsets, roll_offset, records)
    for failure in failures:
        checks.fail("compaction: each key once, its latest value at its offset", failure)
    if not failures:
        checks.check("compaction: each key once, its latest value at its offset", True)
    cells.report("compaction", not failures, failures[0] if failures else "")
    delete_topic(admin, topic, timeout)
    checks.check("delete the topic", True)


def confluent_produce(bootstrap: str, topic: str, timeout: float) -> Produce:
    producer = Producer({**base_config(bootstrap), "enable.idempotence": True, "acks": "all", "linger.ms": 5})

    def produce(records: Sequence[tuple[bytes, bytes | None]]) -> list[int]:
        offsets: list[int | None] = [None] * len(records)
        errors: list[str] = []

        def reporter(index: int) -> Callable[[Any, Any], None]:
            def on_delivery(error: KafkaError | None, message: Any) -> None:
                if error is not None:
                    errors.append(f"record {index}: {error}")
                else:
                    offsets[index] = message.offset()

            return on_delivery

        for index, (key, value) in enumerate(records):
            producer.produce(topic, key=key, value=value, partition=0, on_delivery=reporter(index))
            producer.poll(0)
        left = producer.flush(timeout)
        if left or errors:
            raise RuntimeError(f"{left} records undelivered after {timeout}s; errors {errors[:3]}")
        return [offset for offset in offsets if offset is not None]

    return produce


def confluent_read(bootstrap: str, topic: str, timeout: float) -> Read:
    consumer = Consumer(
        {
            **base_config(bootstrap),
            "group.id": f"{topic}-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
        }
    )

    def read(end: int) -> list[scenario.Read]:
        consumer.assign([TopicPartition(topic, 0, 0)])
        records: list[scenario.Read] = []
        deadline = Deadline(timeout)
        try:
            while not deadline.expired() and (not records or records[-1].offset + 1 < end):
                for message in consumer.consume(num_messages=500, timeout=min(1.0, deadline.remaining())):
                    if message.error() is not None:
                        raise KafkaException(message.error())
                    records.append(scenario.Read(message.offset(), message.key(), message.value()))
        finally:
            consumer.unassign()
        if not records or records[-1].offset + 1 < end:
            raise TimeoutError(f"partition 0 not read up to offset {end} within {timeout}s ({len(records)} records)")
        return records

    return read


def main(checks: Checks, cells: Cells) -> int:
    args = parse_args(__doc__)
    topic = args.topic or unique_topic("compaction-confluent")
    print(f"== {CLIENT} compaction against {args.bootstrap} (peer {args.peer.name}), topic {topic}")
    reason = args.peer.lacks("admin-controller")
    if reason:
        checks.skip("everything", f"peer {args.peer.name}: {reason}")
        cells.not_applicable(f"peer {args.peer.name} cannot create topics")
        return checks.report("skipped")
    admin = AdminClient(base_config(args.bootstrap))
    produce = confluent_produce(args.bootstrap, topic, args.timeout)
    read = confluent_read(args.bootstrap, topic, args.timeout)
    run_scenario(checks, cells, admin, topic, produce, read, args.timeout)
    return checks.report(f"topic {topic}")


if __name__ == "__main__":
    CELLS = Cells("librdkafka", ["compaction"])
    run_main(lambda checks: main(checks, CELLS), CLIENT, CELLS)
