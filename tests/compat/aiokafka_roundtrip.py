#!/usr/bin/env python3
"""aiokafka (asyncio, its own protocol code) against a broker: admin, idempotent produce with
every codec, assign()-only consume, ListOffsets and metadata, checked record by record; then
committed offsets read back and resumed from by a new group member.

    aiokafka_roundtrip.py --bootstrap HOST:PORT[,...] [--records 10000] [--partitions 4]
                          [--peer tidepool|kafka]

Exits 0 only when every check passed. The round-trip consumer has group_id=None, so it never
looks for a group coordinator; it reads with assign() and seek() from explicit offsets.

Commits, on the same topic afterwards: a consumer joins a fresh group (subscribe, the default
round-robin assignor), commits chosen offsets with metadata, and reads them back with
committed() and the admin client's list_consumer_group_offsets (OffsetFetch); it leaves, and a
new member of the group (auto_offset_reset=none, so a missing commit is an error) must start
every partition exactly at its committed offset and read on to the end; its commit of its
positions is read back as the log end offsets.

Matrix cells (client `aiokafka`, tests/matrix/README.md): codec-<codec> for each codec run
(that codec's records judged alone), idempotence (every record acknowledged once, contiguous
offsets, none stored twice; each producer's producer id and sequence numbers, producer_state.py),
admin (CreateTopics, CreatePartitions, Metadata, ListOffsets, DeleteTopics; aiokafka_admin.py
reports the same cell for the rest of the admin client), commits (the checks above).

aiokafka specifics: producers take one compression_type each (the codecs need cramjam);
send() returns a future once the record is queued; its ListOffsets stops at v5, so there is no
MAX_TIMESTAMP lookup (that check is SKIP); the producer's idempotence state (producer id,
sequence numbers) is private (_txn_manager) and read from there.

Delivery timestamps are not compared (the records' timestamps are, as the consumer reads them):
aiokafka 0.14 hands every record of a batch the timestamp of the batch's first record.
MessageBatch.done() resolves the futures in a loop that replaces the broker's -1
(log_append_time of a CreateTime topic) with the record's own timestamp by assigning to the
loop's shared `timestamp` variable, so from the second record on the -1 test fails and the first
record's time is reported. A client bug, seen against Apache Kafka as well.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from aiokafka_common import (
    CLIENT,
    MATRIX_CLIENT,
    TIMESTAMP_TYPES,
    delete_topic,
    partition_leaders,
    servers,
    topic_errors,
    wait_for_partitions,
)
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
    parse_args,
    run_main,
    timestamp_probes,
    unique_topic,
)
from producer_state import STATE_CHECKS, check_producer_state

# The checks (by name prefix) behind the admin and commits cells.
ADMIN_CHECKS = ("admin:", "list offsets", "metadata")
COMMITS_CHECKS = ("commits:",)

# aiokafka names "no compression" None; the other codecs by their Kafka names.
COMPRESSION_TYPES = {"none": None, "gzip": "gzip", "snappy": "snappy", "lz4": "lz4", "zstd": "zstd"}


def base_config(args: Any) -> dict[str, Any]:
    return {"bootstrap_servers": servers(args.bootstrap), "request_timeout_ms": 30_000}


async def prepare_topic(checks: Checks, admin: AIOKafkaAdminClient, topic: str, args: Any) -> int:
    """CreateTopics with one partition fewer than asked, then CreatePartitions to the full count."""
    deadline = Deadline(args.timeout)
    initial = max(1, args.partitions - 1)
    response = await admin.create_topics(
        [NewTopic(topic, initial, 1)], timeout_ms=int(args.timeout * 1000),
    )
    errors = topic_errors(response)
    checks.check("admin: create topic", not errors, f"CreateTopics answered {errors}")
    await wait_for_partitions(admin, topic, initial, deadline)
    if args.partitions > initial:
        # create_partitions raises on a refusal.
        await admin.create_partitions({topic: NewPartitions(args.partitions)}, timeout_ms=int(args.timeout * 1000))
        checks.check("admin: create partitions", True)
        await wait_for_partitions(admin, topic, args.partitions, deadline)
    return args.partitions


async def check_cluster(checks: Checks, admin: AIOKafkaAdminClient, topic: str, partitions: int) -> None:
    """Metadata lists every partition with a leader among the brokers; the controller is one."""
    cluster = await admin.describe_cluster()
    brokers = {b["node_id"] for b in cluster["brokers"]}
    check_metadata(checks, "describe_topics", await partition_leaders(admin, topic), brokers, partitions)
    checks.check(
        "admin: describe cluster names a controller among the brokers",
        cluster.get("controller_id") in brokers,
        f"controller {cluster.get('controller_id')}, brokers {sorted(brokers)}",
    )


async def produce_codec(
    checks: Checks, args: Any, topic: str, codec: str, records: list[SentRecord]
) -> tuple[dict[int, Delivery], list[str]]:
    """Sends one codec's records with an idempotent acks=all producer, awaits every future and
    checks the producer's idempotence state before stopping it."""
    producer = AIOKafkaProducer(
        **base_config(args),
        enable_idempotence=True,
        acks="all",
        compression_type=COMPRESSION_TYPES[codec],
        linger_ms=5,
    )
    await producer.start()
    deliveries: dict[int, Delivery] = {}
    errors: list[str] = []
    try:
        futures = []
        for record in records:
            future = await producer.send(
                topic,
                value=record.value,
                key=record.key,
                headers=list(record.headers),
                timestamp_ms=record.timestamp_ms,
            )
            futures.append((record.index, future))
        await asyncio.wait_for(producer.flush(), args.timeout)
        for index, future in futures:
            if not future.done():
                errors.append(f"{codec} record {index}: not acknowledged after {args.timeout}s flush")
            elif future.exception() is not None:
                errors.append(f"{codec} record {index}: {future.exception()!r}")
            else:
                metadata = future.result()
                # Timestamp None: not compared (see the module docstring, "delivery timestamps").
                deliveries[index] = Delivery(metadata.partition, metadata.offset, None)
        manager = producer._txn_manager  # private: aiokafka has no public view of it
        partitions = {d.partition for d in deliveries.values()}
        sequences = {p: manager.sequence_number(TopicPartition(topic, p)) for p in partitions}
        check_producer_state(checks, codec, manager.producer_id, sequences, deliveries)
    finally:
        await producer.stop()
    return deliveries, errors


async def produce_all(
    checks: Checks, args: Any, topic: str
) -> tuple[list[SentRecord], dict[int, Delivery], dict[str, list[str]]]:
    """Every codec in turn, one producer each (so InitProducerId runs once per codec); also
    returns each codec's produce failures."""
    sent: list[SentRecord] = []
    deliveries: dict[int, Delivery] = {}
    failures: dict[str, list[str]] = {}
    first_timestamp = first_timestamp_for_run()
    for codec in args.codecs:
        records = make_records(codec, args.records, len(sent), first_timestamp + len(sent))
        started = time.monotonic()
        try:
            codec_deliveries, errors = await produce_codec(checks, args, topic, codec, records)
        except (KafkaError, RuntimeError, asyncio.TimeoutError) as error:
            codec_deliveries, errors = {}, [f"{codec} producer failed: {type(error).__name__}: {error}"]
        checks.check(f"produce ({codec}): every record acknowledged", not errors, "; ".join(errors[:5]))
        if errors:
            failures[codec] = ["; ".join(errors[:5])]
        print(
            f"   produced {len(codec_deliveries)}/{len(records)} {codec} records in {time.monotonic() - started:.1f}s"
        )
        sent.extend(records)
        deliveries.update(codec_deliveries)
    return sent, deliveries, failures


async def watermarks(
    consumer: AIOKafkaConsumer, topic: str, partitions: int
) -> tuple[dict[int, int], dict[int, int]]:
    """ListOffsets earliest and latest per partition."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    earliest = await consumer.beginning_offsets(tps)
    latest = await consumer.end_offsets(tps)
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


async def consume_all(
    checks: Checks,
    consumer: AIOKafkaConsumer,
    topic: str,
    start: dict[int, int],
    end: dict[int, int],
    deadline: Deadline,
) -> list[ConsumedRecord]:
    """Reads every partition from its start offset to its end offset with assign() and seek()."""
    tps = [TopicPartition(topic, p) for p in start]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, start[tp.partition])
    pending = {p for p in start if end[p] > start[p]}
    consumed: list[ConsumedRecord] = []
    while pending and not deadline.expired():
        batches = await consumer.getmany(timeout_ms=int(min(1.0, deadline.remaining()) * 1000), max_records=2000)
        for tp, records in batches.items():
            consumed.extend(to_consumed(r) for r in records)
            if records and records[-1].offset + 1 >= end[tp.partition]:
                pending.discard(tp.partition)
    positions = {p: await consumer.position(TopicPartition(topic, p)) for p in sorted(pending)}
    checks.check(
        "consume: reached the end of every partition",
        not pending,
        f"partitions {sorted(pending)} not read to their end in time; positions {positions}, "
        f"end offsets { {p: end[p] for p in sorted(pending)} }",
    )
    consumer.unsubscribe()
    return consumed


async def check_offsets_for_times(
    checks: Checks, consumer: AIOKafkaConsumer, topic: str, consumed: list[ConsumedRecord]
) -> None:
    """ListOffsets by timestamp through the consumer (one partition per call, as the probes are)."""
    probes = timestamp_probes(consumed)
    answers: dict[tuple[int, int], int] = {}
    for probe in probes:
        tp = TopicPartition(topic, probe.partition)
        found = (await consumer.offsets_for_times({tp: probe.timestamp_ms}))[tp]
        answers[(probe.partition, probe.timestamp_ms)] = NO_OFFSET if found is None else found.offset
    check_timestamp_lookup(checks, "consumer offsets_for_times", probes, answers)
    checks.skip(
        "list offsets: max timestamp",
        "aiokafka 0.14 sends ListOffsets up to v5 and has no MAX_TIMESTAMP (v7) lookup",
    )


# ---------------------------------------------------------------------------------------------
# Commits


def group_consumer(args: Any, group: str, reset: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **base_config(args),
        group_id=group,
        client_id=f"{group}-member",
        enable_auto_commit=False,
        auto_offset_reset=reset,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        fetch_max_wait_ms=100,
    )


async def wait_assigned(consumer: AIOKafkaConsumer, tps: set[TopicPartition], deadline: Deadline) -> dict:
    """Polls (which drives the group join) until the consumer owns `tps`; returns what it read."""
    read: dict[TopicPartition, list[Any]] = {}
    while consumer.assignment() != tps:
        if deadline.expired():
            raise TimeoutError(f"assignment {sorted(consumer.assignment())} is not {sorted(tps)} in time")
        for tp, records in (await consumer.getmany(timeout_ms=200)).items():
            read.setdefault(tp, []).extend(records)
    return read


async def check_commits(
    checks: Checks, admin: AIOKafkaAdminClient, topic: str, latest: dict[int, int], args: Any
) -> None:
    """Commit chosen offsets, read them back, resume from them in a new member of the group."""
    group = f"{topic}-commits"
    tps = {TopicPartition(topic, p) for p in latest}
    # Somewhere inside each partition, never at a poll boundary by design.
    chosen = {TopicPartition(topic, p): min(end, end // 3 + 7 * p + 1) for p, end in latest.items()}
    first = group_consumer(args, group, "earliest")
    await first.start()
    try:
        first.subscribe([topic])
        await wait_assigned(first, tps, Deadline(args.timeout))
        await first.commit({tp: OffsetAndMetadata(o, f"aiokafka-{tp.partition}") for tp, o in chosen.items()})
        checks.check("commits: commit() of explicit offsets with metadata", True)
        for tp, offset in sorted(chosen.items()):
            got = await first.committed(tp)
            checks.check(
                "commits: committed() reads back each committed offset",
                got == offset,
                f"partition {tp.partition}: committed() {got}, committed {offset}",
            )
    finally:
        await first.stop()  # LeaveGroup
    fetched = await admin.list_consumer_group_offsets(group, partitions=sorted(tps))
    want = {tp: (o, f"aiokafka-{tp.partition}") for tp, o in chosen.items()}
    got = {tp: (m.offset, m.metadata) for tp, m in fetched.items()}
    checks.check(
        "commits: admin list_consumer_group_offsets (OffsetFetch) gives offsets and metadata",
        got == want,
        f"OffsetFetch {sorted(got.items())}, committed {sorted(want.items())}",
    )
    second = group_consumer(args, group, "none")
    await second.start()
    try:
        second.subscribe([topic])
        deadline = Deadline(args.timeout)
        read = await wait_assigned(second, tps, deadline)
        positions_done = {tp for tp in tps if chosen[tp] >= latest[tp.partition]}
        while positions_done != tps and not deadline.expired():
            for tp, records in (await second.getmany(timeout_ms=200)).items():
                read.setdefault(tp, []).extend(records)
            positions_done = {tp for tp in tps if await second.position(tp) >= latest[tp.partition]}
        for tp in sorted(tps):
            offsets = [r.offset for r in read.get(tp, [])]
            expected = list(range(chosen[tp], latest[tp.partition]))
            checks.check(
                "commits: a new member resumes exactly at the committed offsets and reads to the end",
                offsets == expected,
                f"partition {tp.partition}: read offsets {offsets[:3]}..{offsets[-2:]} ({len(offsets)}), "
                f"expected {chosen[tp]}..{latest[tp.partition] - 1}",
            )
        await second.commit()
        for tp in sorted(tps):
            got_offset = await second.committed(tp)
            checks.check(
                "commits: commit() of the positions, read back as the log end offsets",
                got_offset == latest[tp.partition],
                f"partition {tp.partition}: committed() {got_offset}, log end {latest[tp.partition]}",
            )
    finally:
        await second.stop()


# ---------------------------------------------------------------------------------------------


async def roundtrip(checks: Checks, args: Any, cells: Cells) -> int:
    topic = args.topic or unique_topic("aiokafka")
    print(f"== {CLIENT} against {args.bootstrap} (peer {args.peer.name}), topic {topic}")
    admin = AIOKafkaAdminClient(**base_config(args))
    await admin.start()
    consumer = AIOKafkaConsumer(
        **base_config(args), group_id=None, enable_auto_commit=False, auto_offset_reset="none", check_crcs=True
    )
    await consumer.start()
    try:
        partitions = await prepare_topic(checks, admin, topic, args)
        await check_cluster(checks, admin, topic, partitions)
        earliest, latest = await watermarks(consumer, topic, partitions)
        start = dict(earliest)
        checks.check(
            "list offsets (consumer): new topic is empty",
            all(earliest[p] == latest[p] == 0 for p in range(partitions)),
            f"before producing: earliest {earliest}, latest {latest}",
        )
        sent, deliveries, produce_failures = await produce_all(checks, args, topic)
        check_deliveries(checks, sent, deliveries, start, args.peer)
        earliest, latest = await watermarks(consumer, topic, partitions)
        check_watermarks(
            checks, "consumer beginning/end_offsets", sent, deliveries, range(partitions), earliest, latest, start
        )
        started = time.monotonic()
        consumed = await consume_all(checks, consumer, topic, start, latest, Deadline(args.timeout))
        print(f"   consumed {len(consumed)} records in {time.monotonic() - started:.1f}s")
        check_roundtrip(checks, sent, deliveries, consumed, start)
        verdicts = judge_codecs(MATRIX_CLIENT, sent, deliveries, consumed, start, args.peer, produce_failures)
        for codec in args.codecs:
            cells.judge(f"codec-{codec}", verdicts[codec])
        cells.judge("idempotence", checks, IDEMPOTENCE_CHECKS + STATE_CHECKS)
        await check_offsets_for_times(checks, consumer, topic, consumed)
        try:
            await check_commits(checks, admin, topic, latest, args)
        except (KafkaError, TimeoutError, asyncio.TimeoutError) as error:
            checks.fail("commits: scenario ran to the end", f"{type(error).__name__}: {error}")
        cells.judge("commits", checks, COMMITS_CHECKS)
        if args.keep_topic:
            checks.skip("admin: delete topic", "--keep-topic given")
        else:
            problem = await delete_topic(admin, topic, args.timeout)
            checks.check("admin: delete topic", problem is None, problem or "")
        cells.judge("admin", checks, ADMIN_CHECKS)
    finally:
        await consumer.stop()
        await admin.close()
    summary = (
        f"{len(sent)} records ({args.records} per codec: {', '.join(args.codecs)}), "
        f"{partitions} partitions, topic {topic}"
    )
    return checks.report(summary)


def main(checks: Checks, args: Any, cells: Cells) -> int:
    if args.peer.lacks("admin-controller"):
        cells.close(f"peer {args.peer.name} cannot create topics: nothing was run")
        checks.skip("run", f"peer {args.peer.name}: {args.peer.lacks('admin-controller')}")
        return checks.report("skipped")
    return asyncio.run(roundtrip(checks, args, cells))


if __name__ == "__main__":
    ARGS = parse_args(__doc__)
    CELLS = Cells(MATRIX_CLIENT, [f"codec-{codec}" for codec in ARGS.codecs] + ["idempotence", "admin", "commits"])
    run_main(lambda checks: main(checks, ARGS, CELLS), CLIENT, CELLS)
