#!/usr/bin/env python3
"""librdkafka (through confluent-kafka) against a broker: admin, idempotent produce with every
codec, assign()-only consume, ListOffsets and metadata, each checked record by record.

    confluent_roundtrip.py --bootstrap HOST:PORT[,...] [--records 10000] [--partitions 4]
                           [--peer tidepool|kafka|librdkafka-mock]

Exits 0 only when every check passed; prints one line per check and the reasons of failures.
The consumer never needs a group coordinator: confluent-kafka insists on a group.id, but with
assign() at explicit offsets and commits off, librdkafka never fetches or commits offsets.

Matrix cells (client `librdkafka`, tests/matrix/README.md): codec-<codec> for each codec run
(that codec's records judged alone), idempotence (every record acknowledged once, contiguous
offsets, none stored twice), admin (CreateTopics, CreatePartitions, DescribeCluster, ListOffsets,
Metadata, DeleteTopics; configs_confluent.py reports the same cell for the config calls).
"""

from __future__ import annotations

import time
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic, OffsetSpec

from compat_common import (
    IDEMPOTENCE_CHECKS,
    Cells,
    Checks,
    ConsumedRecord,
    Deadline,
    Delivery,
    SentRecord,
    TimestampProbe,
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

CLIENT = f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"
MATRIX_CLIENT = "librdkafka"
# The checks (by name prefix) behind the admin cell.
ADMIN_CHECKS = ("admin:", "list offsets", "metadata")

TIMESTAMP_TYPES = {
    confluent_kafka.TIMESTAMP_CREATE_TIME: "create",
    confluent_kafka.TIMESTAMP_LOG_APPEND_TIME: "log_append",
    confluent_kafka.TIMESTAMP_NOT_AVAILABLE: "unknown",
}


def base_config(args: Any) -> dict[str, Any]:
    """Settings every handle shares; errors are logged by librdkafka to stderr as they happen.

    Producer-type handles (the AdminClient is one) default to allow.auto.create.topics=true, so
    a Metadata request for a just-deleted topic would create it again, on Kafka as anywhere:
    every handle here turns it off, and only the mock peer's set-up turns it back on."""
    return {"bootstrap.servers": args.bootstrap, "socket.timeout.ms": 30_000, "allow.auto.create.topics": False}


def topic_partition_leaders(handle: Any, topic: str, timeout: float) -> tuple[dict[int, int], set[int], Any]:
    """Partition -> leader for `topic` from a fresh Metadata request, plus the broker ids."""
    metadata = handle.list_topics(topic, timeout=timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return {}, set(metadata.brokers), metadata
    leaders = {p.id: p.leader for p in found.partitions.values() if p.error is None}
    return leaders, set(metadata.brokers), metadata


def wait_for_partitions(handle: Any, topic: str, count: int, deadline: Deadline) -> dict[int, int]:
    """Polls metadata until `topic` shows `count` partitions, each with a leader.

    Creation is acknowledged before every broker's metadata shows it (on Kafka), so a bounded
    poll is the right wait here."""
    leaders: dict[int, int] = {}
    while not deadline.expired():
        leaders, brokers, _ = topic_partition_leaders(handle, topic, min(5.0, deadline.remaining() + 0.1))
        if len(leaders) >= count and all(leader in brokers for leader in leaders.values()):
            return leaders
        time.sleep(0.1)
    raise TimeoutError(f"topic {topic} did not show {count} partitions with leaders in time (last: {leaders})")


def prepare_topic(checks: Checks, admin: AdminClient, topic: str, args: Any) -> int:
    """Creates the topic with one partition fewer than asked, then grows it with CreatePartitions,
    so both admin calls are exercised. Returns the partition count."""
    deadline = Deadline(args.timeout)
    reason = args.peer.lacks("admin-controller")
    if reason:
        for name in ("admin: create topic", "admin: create partitions"):
            checks.skip(name, f"peer {args.peer.name}: {reason}")
        auto = Producer({**base_config(args), "allow.auto.create.topics": True})
        leaders = wait_for_partitions(auto, topic, 1, deadline)
        return len(leaders)
    initial = max(1, args.partitions - 1)
    admin.create_topics([NewTopic(topic, num_partitions=initial, replication_factor=1)], request_timeout=args.timeout)[
        topic
    ].result()
    checks.check("admin: create topic", True)
    wait_for_partitions(admin, topic, initial, deadline)
    if args.partitions > initial:
        admin.create_partitions([NewPartitions(topic, args.partitions)], request_timeout=args.timeout)[topic].result()
        checks.check("admin: create partitions", True)
        wait_for_partitions(admin, topic, args.partitions, deadline)
    return args.partitions


def check_cluster(checks: Checks, admin: AdminClient, topic: str, partitions: int, args: Any) -> None:
    """Metadata lists the partitions with known leaders; DescribeCluster agrees with Metadata."""
    leaders, brokers, metadata = topic_partition_leaders(admin, topic, args.timeout)
    check_metadata(checks, "list_topics", leaders, brokers, partitions)
    name = "admin: describe cluster agrees with metadata"
    reason = args.peer.lacks("admin-controller")
    if reason:
        checks.skip(name, f"peer {args.peer.name}: {reason}")
        return
    cluster = admin.describe_cluster(request_timeout=args.timeout).result()
    node_ids = {node.id for node in cluster.nodes}
    checks.check(
        name, node_ids == brokers, f"DescribeCluster nodes {sorted(node_ids)}, Metadata brokers {sorted(brokers)}"
    )
    checks.check(
        name,
        cluster.cluster_id == metadata.cluster_id,
        f"DescribeCluster cluster id {cluster.cluster_id!r}, Metadata {metadata.cluster_id!r}",
    )
    controller = cluster.controller.id if cluster.controller is not None else None
    checks.check(name, controller in node_ids, f"controller {controller} is not among nodes {sorted(node_ids)}")


def produce_codec(
    args: Any, topic: str, codec: str, records: list[SentRecord]
) -> tuple[dict[int, Delivery], list[str]]:
    """Sends one codec's records with an idempotent acks=all producer; waits for every report."""
    producer = Producer(
        {
            **base_config(args),
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": codec,
            "linger.ms": 5,
        }
    )
    deliveries: dict[int, Delivery] = {}
    errors: list[str] = []

    def reporter(index: int):
        def on_delivery(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                errors.append(f"{codec} record {index}: {error}")
                return
            deliveries[index] = Delivery(message.partition(), message.offset(), message.timestamp()[1])

        return on_delivery

    for record in records:
        send(producer, topic, record, reporter(record.index), Deadline(args.timeout))
    left = producer.flush(args.timeout)
    if left:
        errors.append(f"{codec}: {left} records still undelivered after {args.timeout}s flush")
    return deliveries, errors


def send(producer: Producer, topic: str, record: SentRecord, on_delivery: Any, deadline: Deadline) -> None:
    """produce(), serving delivery reports while the local queue is full."""
    while True:
        try:
            producer.produce(
                topic,
                value=record.value,
                key=record.key,
                headers=list(record.headers) or None,
                timestamp=record.timestamp_ms or 0,
                on_delivery=on_delivery,
            )
            producer.poll(0)
            return
        except BufferError:
            if deadline.expired():
                raise
            producer.poll(0.1)


def produce_all(
    checks: Checks, args: Any, topic: str
) -> tuple[list[SentRecord], dict[int, Delivery], dict[str, list[str]]]:
    """Every codec in turn, one producer each (so InitProducerId runs once per codec); also
    returns each codec's delivery errors."""
    sent: list[SentRecord] = []
    deliveries: dict[int, Delivery] = {}
    failures: dict[str, list[str]] = {}
    first_timestamp = first_timestamp_for_run()
    for codec in args.codecs:
        records = make_records(codec, args.records, len(sent), first_timestamp + len(sent))
        started = time.monotonic()
        codec_deliveries, errors = produce_codec(args, topic, codec, records)
        checks.check(f"produce ({codec}): every record acknowledged", not errors, "; ".join(errors[:5]))
        if errors:
            failures[codec] = ["; ".join(errors[:5])]
        print(
            f"   produced {len(codec_deliveries)}/{len(records)} {codec} records in {time.monotonic() - started:.1f}s"
        )
        sent.extend(records)
        deliveries.update(codec_deliveries)
    return sent, deliveries, failures


def new_consumer(args: Any, topic: str) -> Consumer:
    """An assign()-only consumer: no commits, no offset store, out-of-range is an error not a reset."""
    return Consumer(
        {
            **base_config(args),
            "group.id": f"{topic}-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "check.crcs": True,
        }
    )


def watermarks(
    consumer: Consumer, topic: str, partitions: int, timeout: float
) -> tuple[dict[int, int], dict[int, int]]:
    """ListOffsets earliest and latest per partition, never from librdkafka's cache."""
    earliest, latest = {}, {}
    for partition in range(partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout, cached=False)
        earliest[partition], latest[partition] = low, high
    return earliest, latest


def to_consumed(message: Any) -> ConsumedRecord:
    timestamp_type, timestamp = message.timestamp()
    return ConsumedRecord(
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        tuple(message.headers() or ()),
        timestamp,
        TIMESTAMP_TYPES.get(timestamp_type, "unknown"),
    )


def consume_all(
    checks: Checks, consumer: Consumer, topic: str, start: dict[int, int], end: dict[int, int], deadline: Deadline
) -> list[ConsumedRecord]:
    """Reads every partition from its start offset up to its end offset with assign()."""
    consumer.assign([TopicPartition(topic, p, offset) for p, offset in start.items()])
    pending = {p for p in start if end[p] > start[p]}
    consumed: list[ConsumedRecord] = []
    while pending and not deadline.expired():
        for message in consumer.consume(num_messages=1000, timeout=min(1.0, deadline.remaining())):
            if message.error() is not None:
                raise KafkaException(message.error())
            consumed.append(to_consumed(message))
            if message.offset() + 1 >= end[message.partition()]:
                pending.discard(message.partition())
    checks.check(
        "consume: reached the end of every partition",
        not pending,
        f"partitions {sorted(pending)} not read to their end in time; read up to "
        f"{ {p: max((r.offset for r in consumed if r.partition == p), default=None) for p in sorted(pending)} }, "
        f"end offsets { {p: end[p] for p in sorted(pending)} }",
    )
    return consumed


def probe_rounds(probes: list[TimestampProbe]) -> list[dict[int, TimestampProbe]]:
    """Splits probes into rounds keyed by partition: one request may name a partition only once."""
    rounds: list[dict[int, TimestampProbe]] = []
    for probe in probes:
        target = next((r for r in rounds if probe.partition not in r), None)
        if target is None:
            rounds.append({probe.partition: probe})
        else:
            target[probe.partition] = probe
    return rounds


def check_offsets_for_times(
    checks: Checks, consumer: Consumer, admin: AdminClient, topic: str, consumed: list[ConsumedRecord], args: Any
) -> None:
    """ListOffsets by timestamp through the consumer and the admin API, and MAX_TIMESTAMP."""
    names = ("consumer offsets_for_times", "admin list_offsets")
    reason = args.peer.lacks("offsets-for-times")
    if reason:
        for name in names:
            checks.skip(f"list offsets ({name}): by timestamp", f"peer {args.peer.name}: {reason}")
    else:
        probes = timestamp_probes(consumed)
        consumer_answers: dict[tuple[int, int], int] = {}
        admin_answers: dict[tuple[int, int], int] = {}
        for round_ in probe_rounds(probes):
            asked = [TopicPartition(topic, p, probe.timestamp_ms) for p, probe in round_.items()]
            for answer in consumer.offsets_for_times(asked, timeout=args.timeout):
                if answer.error is not None:
                    checks.fail(
                        f"list offsets ({names[0]}): by timestamp", f"partition {answer.partition}: {answer.error}"
                    )
                consumer_answers[(answer.partition, round_[answer.partition].timestamp_ms)] = answer.offset
            specs = {
                TopicPartition(topic, p): OffsetSpec.for_timestamp(probe.timestamp_ms) for p, probe in round_.items()
            }
            for tp, future in admin.list_offsets(specs, request_timeout=args.timeout).items():
                admin_answers[(tp.partition, round_[tp.partition].timestamp_ms)] = future.result().offset
        check_timestamp_lookup(checks, names[0], probes, consumer_answers)
        check_timestamp_lookup(checks, names[1], probes, admin_answers)
    check_max_timestamp(checks, admin, topic, consumed, args)


def check_max_timestamp(
    checks: Checks, admin: AdminClient, topic: str, consumed: list[ConsumedRecord], args: Any
) -> None:
    """ListOffsets MAX_TIMESTAMP (v7+) names the record with the largest timestamp."""
    name = "list offsets (admin list_offsets): max timestamp"
    reason = args.peer.lacks("max-timestamp")
    if reason:
        checks.skip(name, f"peer {args.peer.name}: {reason}")
        return
    expected = max_timestamp_expectation(consumed)
    specs = {TopicPartition(topic, p): OffsetSpec.max_timestamp() for p in expected}
    for tp, future in admin.list_offsets(specs, request_timeout=args.timeout).items():
        info = future.result()
        want = expected[tp.partition]
        checks.check(
            name,
            (info.offset, info.timestamp) == want,
            f"partition {tp.partition}: offset {info.offset} timestamp {info.timestamp}, "
            f"expected offset {want[0]} timestamp {want[1]}",
        )


def check_admin_watermarks(
    checks: Checks,
    admin: AdminClient,
    topic: str,
    sent: list[SentRecord],
    deliveries: dict[int, Delivery],
    partitions: int,
    start: dict[int, int],
    args: Any,
) -> None:
    """ListOffsets EARLIEST and LATEST through the admin API."""
    answers = {}
    for spec_name, spec in (("earliest", OffsetSpec.earliest()), ("latest", OffsetSpec.latest())):
        specs = {TopicPartition(topic, p): spec for p in range(partitions)}
        results = admin.list_offsets(specs, request_timeout=args.timeout)
        answers[spec_name] = {tp.partition: future.result().offset for tp, future in results.items()}
    check_watermarks(
        checks, "admin list_offsets", sent, deliveries, range(partitions), answers["earliest"], answers["latest"], start
    )


def delete_topic(checks: Checks, admin: AdminClient, topic: str, args: Any) -> None:
    """DeleteTopics, then Metadata must stop listing the topic."""
    name = "admin: delete topic"
    reason = args.peer.lacks("admin-controller")
    if reason:
        checks.skip(name, f"peer {args.peer.name}: {reason}")
        return
    if args.keep_topic:
        checks.skip(name, "--keep-topic given")
        return
    admin.delete_topics([topic], request_timeout=args.timeout)[topic].result()
    deadline = Deadline(args.timeout)
    while not deadline.expired():
        found = admin.list_topics(topic, timeout=min(5.0, deadline.remaining() + 0.1)).topics.get(topic)
        if found is None or (found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            checks.check(name, True)
            return
        time.sleep(0.1)
    checks.fail(name, f"topic {topic} still listed by Metadata {args.timeout}s after DeleteTopics")


def main(checks: Checks, args: Any, cells: Cells) -> int:
    topic = args.topic or unique_topic("confluent")
    print(f"== {CLIENT} against {args.bootstrap} (peer {args.peer.name}), topic {topic}")
    admin = AdminClient(base_config(args))
    partitions = prepare_topic(checks, admin, topic, args)
    check_cluster(checks, admin, topic, partitions, args)
    consumer = new_consumer(args, topic)
    earliest, latest = watermarks(consumer, topic, partitions, args.timeout)
    start = dict(earliest)
    checks.check(
        "list offsets (consumer watermarks): new topic is empty",
        all(earliest[p] == latest[p] == 0 for p in range(partitions)),
        f"before producing: earliest {earliest}, latest {latest}",
    )
    sent, deliveries, produce_failures = produce_all(checks, args, topic)
    check_deliveries(checks, sent, deliveries, start, args.peer)
    earliest, latest = watermarks(consumer, topic, partitions, args.timeout)
    check_watermarks(checks, "consumer watermarks", sent, deliveries, range(partitions), earliest, latest, start)
    check_admin_watermarks(checks, admin, topic, sent, deliveries, partitions, start, args)
    started = time.monotonic()
    consumed = consume_all(checks, consumer, topic, start, latest, Deadline(args.timeout))
    print(f"   consumed {len(consumed)} records in {time.monotonic() - started:.1f}s")
    check_roundtrip(checks, sent, deliveries, consumed, start)
    verdicts = judge_codecs(MATRIX_CLIENT, sent, deliveries, consumed, start, args.peer, produce_failures)
    for codec in args.codecs:
        cells.judge(f"codec-{codec}", verdicts[codec])
    cells.judge("idempotence", checks, IDEMPOTENCE_CHECKS)
    # Done reading: without this, each ListOffsets below queues behind a Fetch long poll on the
    # same connection (responses come in request order) and waits out fetch.wait.max.ms.
    consumer.unassign()
    check_offsets_for_times(checks, consumer, admin, topic, consumed, args)
    consumer.close()
    delete_topic(checks, admin, topic, args)
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
