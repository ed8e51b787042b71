#!/usr/bin/env python3
"""kafka-python (pure Python, its own protocol code) against a broker: admin, idempotent produce
with every codec, assign()-only consume, ListOffsets and metadata, checked record by record.

    kafka_python_roundtrip.py --bootstrap HOST:PORT[,...] [--records 10000] [--partitions 4]
                              [--peer tidepool|kafka|librdkafka-mock]

Exits 0 only when every check passed. The consumer has group_id=None, so it never looks for a
group coordinator; it reads with assign() and seek() from explicit offsets.

Matrix cells (client `kafka-python`, tests/matrix/README.md): codec-<codec> for each codec run
(that codec's records judged alone), idempotence (every record acknowledged once, contiguous
offsets, none stored twice; and each producer's own state: a producer id, sequence numbers
advanced by exactly the records acknowledged, see producer_state.py), admin (CreateTopics,
CreatePartitions, DescribeCluster, Metadata, ListOffsets, DeleteTopics; configs_kafka_python.py
reports the same cell for the config calls).
"""

from __future__ import annotations

import time
from typing import Any

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, OffsetSpec
from kafka.codec import has_lz4, has_snappy, has_zstd

from compat_common import (
    IDEMPOTENCE_CHECKS,
    NO_OFFSET,
    Cells,
    Checks,
    ConsumedRecord,
    Deadline,
    Delivery,
    SentRecord,
    check_deliveries,
    check_metadata,
    check_roundtrip,
    check_timestamp_lookup,
    check_watermarks,
    first_timestamp_for_run,
    judge_codecs,
    make_records,
    max_timestamp_expectation,
    parse_args,
    run_main,
    timestamp_probes,
    unique_topic,
)
from producer_state import STATE_CHECKS, check_producer_state

CLIENT = f"kafka-python {kafka.__version__}"
MATRIX_CLIENT = "kafka-python"
# The checks (by name prefix) behind the admin cell.
ADMIN_CHECKS = ("admin:", "list offsets", "metadata")

# kafka-python names "no compression" None; the other codecs by their Kafka names.
COMPRESSION_TYPES = {"none": None, "gzip": "gzip", "snappy": "snappy", "lz4": "lz4", "zstd": "zstd"}
CODEC_AVAILABLE = {"none": True, "gzip": True, "snappy": has_snappy(), "lz4": has_lz4(), "zstd": has_zstd()}

# timestamp_type in a ConsumerRecord: 0 CreateTime, 1 LogAppendTime, -1 none (magic 0).
TIMESTAMP_TYPES = {0: "create", 1: "log_append"}


def base_config(args: Any) -> dict[str, Any]:
    """Settings every handle shares. Against the mock cluster only, the protocol is pinned to
    Kafka 2.3's versions, since kafka-python cannot decode the mock's newer ApiVersions answer."""
    config: dict[str, Any] = {"bootstrap_servers": args.bootstrap.split(","), "request_timeout_ms": 30_000}
    if args.peer.lacks("api-versions-v3"):
        config["api_version"] = (2, 3)
    return config


def partition_leaders(admin: KafkaAdminClient, topic: str) -> dict[int, int]:
    """Partition -> leader from a fresh Metadata request; empty while the topic is unknown."""
    topics = admin.describe_topics([topic])
    found = next((t for t in topics if t.get("name") == topic), None)
    if found is None or found.get("error_code", 0) != 0:
        return {}
    return {p["partition_index"]: p["leader_id"] for p in found["partitions"] if p.get("error_code", 0) == 0}


def broker_ids(admin: KafkaAdminClient) -> set[int]:
    return {b["broker_id"] for b in admin.describe_cluster()["brokers"]}


def wait_for_partitions(admin: KafkaAdminClient, topic: str, count: int, deadline: Deadline) -> dict[int, int]:
    """Polls metadata until `topic` shows `count` partitions, each with a leader (creation is
    acknowledged before every broker's metadata shows it on Kafka)."""
    leaders: dict[int, int] = {}
    while not deadline.expired():
        leaders = partition_leaders(admin, topic)
        if len(leaders) >= count and all(leader >= 0 for leader in leaders.values()):
            return leaders
        time.sleep(0.1)
    raise TimeoutError(f"topic {topic} did not show {count} partitions with leaders in time (last: {leaders})")


def auto_create(args: Any, topic: str) -> int:
    """Lets the broker auto-create `topic`: a producer's metadata wait asks for it with
    allow_auto_topic_creation (the mock's only way to make a topic)."""
    producer = KafkaProducer(**base_config(args), max_block_ms=int(args.timeout * 1000))
    try:
        return len(producer.partitions_for(topic))
    finally:
        producer.close(timeout=args.timeout)


def prepare_topic(checks: Checks, admin: KafkaAdminClient, topic: str, args: Any) -> int:
    """CreateTopics with one partition fewer than asked, then CreatePartitions to the full count."""
    deadline = Deadline(args.timeout)
    reason = args.peer.lacks("admin-controller")
    if reason:
        for name in ("admin: create topic", "admin: create partitions"):
            checks.skip(name, f"peer {args.peer.name}: {reason}")
        return auto_create(args, topic)
    initial = max(1, args.partitions - 1)
    admin.create_topics(
        {topic: {"num_partitions": initial, "replication_factor": 1}}, timeout_ms=int(args.timeout * 1000)
    )
    checks.check("admin: create topic", True)
    wait_for_partitions(admin, topic, initial, deadline)
    if args.partitions > initial:
        admin.create_partitions({topic: args.partitions}, timeout_ms=int(args.timeout * 1000))
        checks.check("admin: create partitions", True)
        wait_for_partitions(admin, topic, args.partitions, deadline)
    return args.partitions


def check_cluster(checks: Checks, admin: KafkaAdminClient, topic: str, partitions: int, args: Any) -> None:
    """Metadata (describe_topics) lists every partition with a leader that DescribeCluster names."""
    cluster = admin.describe_cluster()
    brokers = {b["broker_id"] for b in cluster["brokers"]}
    check_metadata(checks, "describe_topics", partition_leaders(admin, topic), brokers, partitions)
    name = "admin: describe cluster names a controller among the brokers"
    reason = args.peer.lacks("admin-controller")
    if reason:
        checks.skip(name, f"peer {args.peer.name}: {reason}")
        return
    checks.check(
        name,
        cluster.get("controller_id") in brokers,
        f"controller {cluster.get('controller_id')}, brokers {sorted(brokers)}",
    )


def produce_codec(
    checks: Checks, args: Any, topic: str, codec: str, records: list[SentRecord]
) -> tuple[dict[int, Delivery], list[str]]:
    """Sends one codec's records with an idempotent acks=all producer, resolves every future and
    checks the producer's idempotence state (producer id, sequence numbers) before closing it."""
    producer = KafkaProducer(
        **base_config(args), enable_idempotence=True, acks="all", compression_type=COMPRESSION_TYPES[codec], linger_ms=5
    )
    futures = [
        (
            record.index,
            producer.send(
                topic,
                value=record.value,
                key=record.key,
                headers=list(record.headers),
                timestamp_ms=record.timestamp_ms,
            ),
        )
        for record in records
    ]
    producer.flush(timeout=args.timeout)
    deliveries: dict[int, Delivery] = {}
    errors: list[str] = []
    for index, future in futures:
        if not future.is_done:
            errors.append(f"{codec} record {index}: not acknowledged after {args.timeout}s flush")
        elif future.failed():
            errors.append(f"{codec} record {index}: {future.exception!r}")
        else:
            metadata = future.value
            deliveries[index] = Delivery(metadata.partition, metadata.offset, metadata.timestamp)
    manager = producer._transaction_manager  # private: kafka-python has no public view of it
    sequences = {
        p: manager.sequence_number(TopicPartition(topic, p)) for p in {d.partition for d in deliveries.values()}
    }
    check_producer_state(checks, codec, manager.producer_id_and_epoch.producer_id, sequences, deliveries)
    producer.close(timeout=args.timeout)
    return deliveries, errors


def produce_all(
    checks: Checks, args: Any, topic: str
) -> tuple[list[SentRecord], dict[int, Delivery], dict[str, list[str]]]:
    """Every codec in turn, one producer each (so InitProducerId runs once per codec); also
    returns each codec's produce failures."""
    sent: list[SentRecord] = []
    deliveries: dict[int, Delivery] = {}
    failures: dict[str, list[str]] = {}
    first_timestamp = first_timestamp_for_run()
    for codec in args.codecs:
        if not checks.check(
            f"produce ({codec}): codec library installed",
            CODEC_AVAILABLE[codec],
            f"kafka-python cannot {codec}: install its library (see requirements.txt)",
        ):
            failures[codec] = [f"kafka-python cannot {codec}: its library is not installed"]
            continue
        records = make_records(codec, args.records, len(sent), first_timestamp + len(sent))
        started = time.monotonic()
        codec_deliveries, errors = produce_codec(checks, args, topic, codec, records)
        checks.check(f"produce ({codec}): every record acknowledged", not errors, "; ".join(errors[:5]))
        if errors:
            failures[codec] = ["; ".join(errors[:5])]
        print(
            f"   produced {len(codec_deliveries)}/{len(records)} {codec} records in {time.monotonic() - started:.1f}s"
        )
        sent.extend(records)
        deliveries.update(codec_deliveries)
    return sent, deliveries, failures


def new_consumer(args: Any) -> KafkaConsumer:
    """No group, no commits; an out-of-range position raises instead of silently resetting."""
    return KafkaConsumer(
        **base_config(args), group_id=None, enable_auto_commit=False, auto_offset_reset="none", check_crcs=True
    )


def watermarks(
    consumer: KafkaConsumer, topic: str, partitions: int, args: Any
) -> tuple[dict[int, int], dict[int, int]]:
    """ListOffsets earliest and latest per partition."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    timeout_ms = int(args.timeout * 1000)
    earliest = consumer.beginning_offsets(tps, timeout_ms=timeout_ms)
    latest = consumer.end_offsets(tps, timeout_ms=timeout_ms)
    return {tp.partition: o for tp, o in earliest.items()}, {tp.partition: o for tp, o in latest.items()}


def to_consumed(record: Any) -> ConsumedRecord:
    return ConsumedRecord(
        record.partition,
        record.offset,
        record.key,
        record.value,
        tuple(record.headers or ()),
        record.timestamp,
        TIMESTAMP_TYPES.get(record.timestamp_type, "unknown"),
    )


def consume_all(
    checks: Checks, consumer: KafkaConsumer, topic: str, start: dict[int, int], end: dict[int, int], deadline: Deadline
) -> list[ConsumedRecord]:
    """Reads every partition from its start offset to its end offset with assign() and seek()."""
    tps = [TopicPartition(topic, p) for p in start]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, start[tp.partition])
    pending = {p for p in start if end[p] > start[p]}
    consumed: list[ConsumedRecord] = []
    while pending and not deadline.expired():
        batches = consumer.poll(timeout_ms=int(min(1.0, deadline.remaining()) * 1000), max_records=2000)
        for tp, records in batches.items():
            consumed.extend(to_consumed(r) for r in records)
            if records and records[-1].offset + 1 >= end[tp.partition]:
                pending.discard(tp.partition)
    checks.check(
        "consume: reached the end of every partition",
        not pending,
        f"partitions {sorted(pending)} not read to their end in time; positions "
        f"{ {p: consumer.position(TopicPartition(topic, p)) for p in sorted(pending)} }, "
        f"end offsets { {p: end[p] for p in sorted(pending)} }",
    )
    return consumed


def check_offsets_for_times(
    checks: Checks,
    consumer: KafkaConsumer,
    admin: KafkaAdminClient,
    topic: str,
    consumed: list[ConsumedRecord],
    args: Any,
) -> None:
    """ListOffsets by timestamp through the consumer, and MAX_TIMESTAMP through the admin API."""
    name = "list offsets (consumer offsets_for_times): by timestamp"
    reason = args.peer.lacks("offsets-for-times")
    if reason:
        checks.skip(name, f"peer {args.peer.name}: {reason}")
    else:
        probes = timestamp_probes(consumed)
        answers: dict[tuple[int, int], int] = {}
        for probe in probes:
            tp = TopicPartition(topic, probe.partition)
            found = consumer.offsets_for_times({tp: probe.timestamp_ms}, timeout_ms=int(args.timeout * 1000))[tp]
            answers[(probe.partition, probe.timestamp_ms)] = NO_OFFSET if found is None else found.offset
        check_timestamp_lookup(checks, "consumer offsets_for_times", probes, answers)
    check_max_timestamp(checks, admin, topic, consumed, args)


def check_max_timestamp(
    checks: Checks, admin: KafkaAdminClient, topic: str, consumed: list[ConsumedRecord], args: Any
) -> None:
    """ListOffsets MAX_TIMESTAMP (v7+, KIP-734) names the record with the largest timestamp."""
    name = "list offsets (admin list_partition_offsets): max timestamp"
    reason = args.peer.lacks("max-timestamp")
    if reason:
        checks.skip(name, f"peer {args.peer.name}: {reason}")
        return
    expected = max_timestamp_expectation(consumed)
    answers = admin.list_partition_offsets({TopicPartition(topic, p): OffsetSpec.MAX_TIMESTAMP for p in expected})
    for tp, answer in sorted(answers.items()):
        want = expected[tp.partition]
        checks.check(
            name,
            (answer.offset, answer.timestamp) == want,
            f"partition {tp.partition}: offset {answer.offset} timestamp {answer.timestamp}, "
            f"expected offset {want[0]} timestamp {want[1]}",
        )


def delete_topic(checks: Checks, admin: KafkaAdminClient, topic: str, args: Any) -> None:
    """DeleteTopics, then Metadata must stop listing the topic."""
    name = "admin: delete topic"
    reason = args.peer.lacks("admin-controller")
    if reason:
        checks.skip(name, f"peer {args.peer.name}: {reason}")
        return
    if args.keep_topic:
        checks.skip(name, "--keep-topic given")
        return
    admin.delete_topics([topic], timeout_ms=int(args.timeout * 1000))
    deadline = Deadline(args.timeout)
    while not deadline.expired():
        if topic not in admin.list_topics():
            checks.check(name, True)
            return
        time.sleep(0.1)
    checks.fail(name, f"topic {topic} still listed by Metadata {args.timeout}s after DeleteTopics")


def main(checks: Checks, args: Any, cells: Cells) -> int:
    topic = args.topic or unique_topic("kafka-python")
    print(f"== {CLIENT} against {args.bootstrap} (peer {args.peer.name}), topic {topic}")
    admin = KafkaAdminClient(**base_config(args))
    partitions = prepare_topic(checks, admin, topic, args)
    check_cluster(checks, admin, topic, partitions, args)
    consumer = new_consumer(args)
    earliest, latest = watermarks(consumer, topic, partitions, args)
    start = dict(earliest)
    checks.check(
        "list offsets (consumer): new topic is empty",
        all(earliest[p] == latest[p] == 0 for p in range(partitions)),
        f"before producing: earliest {earliest}, latest {latest}",
    )
    sent, deliveries, produce_failures = produce_all(checks, args, topic)
    check_deliveries(checks, sent, deliveries, start, args.peer)
    earliest, latest = watermarks(consumer, topic, partitions, args)
    check_watermarks(
        checks, "consumer beginning/end_offsets", sent, deliveries, range(partitions), earliest, latest, start
    )
    started = time.monotonic()
    consumed = consume_all(checks, consumer, topic, start, latest, Deadline(args.timeout))
    print(f"   consumed {len(consumed)} records in {time.monotonic() - started:.1f}s")
    check_roundtrip(checks, sent, deliveries, consumed, start)
    verdicts = judge_codecs(MATRIX_CLIENT, sent, deliveries, consumed, start, args.peer, produce_failures)
    for codec in args.codecs:
        if codec in verdicts:
            cells.judge(f"codec-{codec}", verdicts[codec])
        else:  # nothing was sent (its library is missing)
            cells.report(f"codec-{codec}", False, "; ".join(produce_failures.get(codec, ["nothing produced"])))
    cells.judge("idempotence", checks, IDEMPOTENCE_CHECKS + STATE_CHECKS)
    check_offsets_for_times(checks, consumer, admin, topic, consumed, args)
    consumer.close()
    delete_topic(checks, admin, topic, args)
    admin.close()
    cells.judge("admin", checks, ADMIN_CHECKS)
    summary = (
        f"{len(sent)} records ({args.records} per codec: {', '.join(args.codecs)}), "
        f"{partitions} partitions, topic {topic}"
    )
    return checks.report(summary)


if __name__ == "__main__":
    ARGS = parse_args(__doc__)
    CELLS = Cells(MATRIX_CLIENT, [f"codec-{codec}" for codec in ARGS.codecs] + ["idempotence", "admin"])
    run_main(lambda checks: main(checks, ARGS, CELLS), CLIENT, CELLS)
