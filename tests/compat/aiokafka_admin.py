#!/usr/bin/env python3
"""aiokafka's AIOKafkaAdminClient against a broker: everything it offers.

    aiokafka_admin.py --bootstrap HOST:PORT[,...] [--peer tidepool|kafka] [--timeout S]

- create_topics: a topic with configs; the same again (TOPIC_ALREADY_EXISTS); validate_only
  (answered, nothing created);
- create_partitions: 3 -> 4, Metadata shows 4; 4 -> 2 refused (INVALID_PARTITIONS);
- describe_configs: values and sources (configs_common.py: what Apache Kafka 4.3 answers),
  synonyms, a named subset; the broker's configs;
- alter_configs (AlterConfigs, which replaces the topic's whole set): the configs left out go
  back to their defaults; a bad value and an unknown name refused with INVALID_CONFIG and
  Kafka's messages, changing nothing;
- describe_cluster, describe_topics, list_topics (Metadata);
- list_consumer_groups, describe_consumer_groups, find_coordinator,
  list_consumer_group_offsets: a group with one aiokafka member that committed (Stable, the
  roundrobin protocol, the member's client id and its assignment), then Empty once it left;
- delete_records: the low watermark moves (ListOffsets earliest agrees);
- delete_topics: Metadata stops listing the topic; deleting it again is UNKNOWN_TOPIC_OR_PARTITION.

Exits 0 only when every check passed and reports the matrix cell aiokafka/admin (with
aiokafka_roundtrip.py's admin checks). --records and --codecs are accepted and ignored.

aiokafka specifics: most admin calls return the raw protocol response (errors are error codes
in it); create_partitions and delete_records raise instead. It has no IncrementalAlterConfigs,
DeleteGroups, ListOffsets or DescribeCluster (describe_cluster is a Metadata request).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.errors import KafkaError

from aiokafka_common import (
    CLIENT,
    CONFIG_SOURCES,
    MATRIX_CLIENT,
    create_topic,
    delete_topic,
    partition_leaders,
    servers,
    topic_errors,
    wait_for_partitions,
)
from compat_common import Cells, Checks, Deadline, parse_args, run_main, unique_topic
from configs_common import ALTER_APPLIED_S, BROKER_DEFAULTS, CREATED_WITH, KAFKA_DEFAULTS, check_described, shows

TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_CONFIG = 40
UNKNOWN_TOPIC_OR_PARTITION = 3


async def describe(
    admin: AIOKafkaAdminClient, resource: ConfigResource, synonyms: bool = False
) -> tuple[int, dict[str, dict[str, Any]]]:
    """(error code, configs by name) for one resource."""
    responses = await admin.describe_configs([resource], include_synonyms=synonyms)
    for response in responses:
        for error_code, _message, _rtype, _name, entries in response.resources:
            configs = {}
            for name, value, read_only, source, sensitive, synonym_rows in entries:
                configs[name] = {
                    "value": value,
                    "source": CONFIG_SOURCES.get(source, str(source)),
                    "read_only": read_only,
                    "sensitive": sensitive,
                    "synonyms": [(s[0], s[1], CONFIG_SOURCES.get(s[2], str(s[2]))) for s in synonym_rows],
                }
            return error_code, configs
    raise RuntimeError("DescribeConfigs answered no resource")


async def describe_topic(admin: AIOKafkaAdminClient, topic: str, timeout: float, **options: Any) -> dict[str, Any]:
    """The topic's configs, retried while the topic is not known yet (Kafka, just after creating)."""
    deadline = Deadline(timeout)
    while True:
        code, configs = await describe(admin, ConfigResource("TOPIC", topic, **options), synonyms=True)
        if code == 0 or deadline.expired():
            if code:
                raise RuntimeError(f"DescribeConfigs for {topic}: error {code}")
            return configs
        await asyncio.sleep(0.1)


def values(configs: dict[str, dict[str, Any]]) -> dict[str, tuple[str | None, str]]:
    return {name: (c["value"], c["source"]) for name, c in configs.items()}


async def settled(admin: AIOKafkaAdminClient, topic: str, timeout: float, expected: dict) -> dict:
    """The topic's configs once they show `expected` (see ALTER_APPLIED_S), else as they are."""
    deadline, ready = Deadline(ALTER_APPLIED_S), shows(expected)
    current = values(await describe_topic(admin, topic, timeout))
    while not ready(current) and not deadline.expired():
        await asyncio.sleep(0.1)
        current = values(await describe_topic(admin, topic, timeout))
    return current


async def alter(admin: AIOKafkaAdminClient, topic: str, configs: dict[str, str]) -> tuple[int, str | None]:
    """AlterConfigs for the topic: (error code, error message)."""
    responses = await admin.alter_configs([ConfigResource("TOPIC", topic, configs=configs)])
    for response in responses:
        for error_code, message, _rtype, name in response.resources:
            if name == topic:
                return error_code, message
    raise RuntimeError("AlterConfigs answered nothing for the topic")


async def check_topics(checks: Checks, admin: AIOKafkaAdminClient, topic: str, args: Any) -> None:
    name = "create_topics: a topic with configs"
    await create_topic(admin, topic, 3, args.timeout, CREATED_WITH)
    checks.check(name, True)
    response = await admin.create_topics([NewTopic(topic, 3, 1)])
    errors = topic_errors(response)
    checks.check(
        "create_topics: an existing name is TOPIC_ALREADY_EXISTS",
        [(t, c) for t, c, _ in errors] == [(topic, TOPIC_ALREADY_EXISTS)],
        f"answer {errors}",
    )
    name = "create_topics: validate_only answers and creates nothing"
    probe = f"{topic}-validate-only"
    response = await admin.create_topics([NewTopic(probe, 2, 1)], validate_only=True)
    checks.check(name, not topic_errors(response), f"answer {topic_errors(response)}")
    await asyncio.sleep(0.5)
    listed = await admin.list_topics()
    checks.check(name, probe not in listed, f"{probe} is listed after a validate_only CreateTopics")

    name = "create_partitions: 3 -> 4, Metadata shows 4 led partitions"
    await admin.create_partitions({topic: NewPartitions(4)})
    leaders = await wait_for_partitions(admin, topic, 4, Deadline(args.timeout))
    cluster = await admin.describe_cluster()
    brokers = {b["node_id"] for b in cluster["brokers"]}
    checks.check(name, sorted(leaders) == [0, 1, 2, 3], f"partitions {sorted(leaders)}")
    checks.check(name, set(leaders.values()) <= brokers, f"leaders {leaders}, brokers {sorted(brokers)}")
    checks.check(
        "describe_cluster: the controller is a listed broker",
        cluster.get("controller_id") in brokers,
        f"controller {cluster.get('controller_id')}, brokers {sorted(brokers)}",
    )
    name = "create_partitions: fewer partitions is INVALID_PARTITIONS"
    try:
        await admin.create_partitions({topic: NewPartitions(2)})
        checks.fail(name, "create_partitions(4 -> 2) was accepted")
    except KafkaError as error:
        checks.check(name, getattr(error, "errno", None) == INVALID_PARTITIONS, f"raised {error!r}")
    checks.check(name, len(await partition_leaders(admin, topic)) == 4, "partition count changed")


async def check_configs(checks: Checks, admin: AIOKafkaAdminClient, topic: str, args: Any) -> None:
    described = await describe_topic(admin, topic, args.timeout)
    expected = {name: (value, "DYNAMIC_TOPIC_CONFIG") for name, value in CREATED_WITH.items()}
    expected.update({name: (value, "DEFAULT_CONFIG") for name, value in KAFKA_DEFAULTS.items()})
    name = "describe_configs: values and sources"
    check_described(checks, name, values(described), expected)
    checks.check(
        name,
        not any(c["read_only"] or c["sensitive"] for c in described.values()),
        "topic configs are neither read-only nor sensitive",
    )
    chain = described.get("segment.bytes", {}).get("synonyms")
    checks.check(
        "describe_configs: synonyms",
        chain
        == [
            ("segment.bytes", "1048576", "DYNAMIC_TOPIC_CONFIG"),
            ("log.segment.bytes", "1073741824", "DEFAULT_CONFIG"),
        ],
        f"segment.bytes synonyms: {chain}",
    )
    subset = await describe_topic(admin, topic, args.timeout, configs={"retention.ms": None, "segment.ms": None})
    checks.check(
        "describe_configs: named configs only",
        values(subset) == {"retention.ms": ("3600000", "DYNAMIC_TOPIC_CONFIG"), "segment.ms": expected["segment.ms"]},
        f"described {values(subset)}",
    )

    name = "alter_configs (AlterConfigs): replaces the topic's set, the rest back to defaults"
    # cleanup.policy delete: the records produced later have no key, and DeleteRecords is
    # refused on compacted topics.
    code, message = await alter(admin, topic, {"cleanup.policy": "delete", "retention.ms": "7200000"})
    checks.check(name, code == 0, f"answer {code} {message!r}")
    expected["cleanup.policy"] = ("delete", "DYNAMIC_TOPIC_CONFIG")
    expected["retention.ms"] = ("7200000", "DYNAMIC_TOPIC_CONFIG")
    expected["segment.bytes"] = ("1073741824", "DEFAULT_CONFIG")
    check_described(checks, name, await settled(admin, topic, args.timeout, expected), expected)

    name = "alter_configs: a bad value or an unknown name is INVALID_CONFIG and changes nothing"
    code, message = await alter(admin, topic, {"cleanup.policy": "delete", "retention.ms": "abc"})
    want = "Invalid value abc for configuration retention.ms: Not a number of type LONG"
    checks.check(name, (code, message) == (INVALID_CONFIG, want), f"answer {code} {message!r}")
    code, message = await alter(admin, topic, {"no.such.config": "1"})
    want = "Unknown topic config name: no.such.config"
    checks.check(name, (code, message) == (INVALID_CONFIG, want), f"answer {code} {message!r}")
    check_described(checks, name, await settled(admin, topic, args.timeout, expected), expected)

    name = "describe_configs: the broker's configs"
    broker_id = (await admin.describe_cluster())["brokers"][0]["node_id"]
    code, configs = await describe(admin, ConfigResource("BROKER", str(broker_id)))
    checks.check(name, code == 0, f"error {code}")
    check_described(
        checks, name, values(configs), {key: (value, "DEFAULT_CONFIG") for key, value in BROKER_DEFAULTS.items()}
    )


async def described_group(admin: AIOKafkaAdminClient, group: str) -> tuple:
    """(error code, state, protocol type, protocol, members) of one group, members as
    (member id, client id, partitions assigned)."""
    for response in await admin.describe_consumer_groups([group]):
        for error_code, name, state, protocol_type, protocol, members, *_ in response.groups:
            if name != group:
                continue
            rows = []
            for member_id, client_id, _host, _metadata, assignment in members:
                partitions = ConsumerProtocol.ASSIGNMENT.decode(assignment).partitions() if assignment else []
                rows.append((member_id, client_id, sorted(tp.partition for tp in partitions)))
            return error_code, state, protocol_type, protocol, rows
    raise RuntimeError(f"DescribeGroups answered nothing for {group}")


async def check_groups(checks: Checks, admin: AIOKafkaAdminClient, topic: str, args: Any) -> None:
    config = {"bootstrap_servers": servers(args.bootstrap), "request_timeout_ms": 30_000}
    producer = AIOKafkaProducer(**config, enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=f"admin-{i}".encode(), partition=i % 4) for i in range(40)]
        await asyncio.wait_for(asyncio.gather(*futures), args.timeout)  # raises a refusal
    finally:
        await producer.stop()
    group = f"{topic}-group"
    client_id = f"{group}-member"
    consumer = AIOKafkaConsumer(
        **config,
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    tps = {TopicPartition(topic, p) for p in range(4)}
    try:
        consumer.subscribe([topic])
        deadline = Deadline(args.timeout)
        read = 0
        while read < 40 and not deadline.expired():
            batches = await consumer.getmany(timeout_ms=200)
            read += sum(len(records) for records in batches.values())
        checks.check("a group member reads what was produced", read == 40, f"read {read} of 40 records")
        await consumer.commit()
        name = "list_consumer_groups: names the group with protocol type consumer"
        listed = await admin.list_consumer_groups()
        checks.check(name, (group, "consumer") in [tuple(g[:2]) for g in listed], f"listed {listed}")
        name = "describe_consumer_groups: Stable, roundrobin, the member and its assignment"
        code, state, protocol_type, protocol, members = await described_group(admin, group)
        checks.check(
            name,
            (code, state, protocol_type, protocol) == (0, "Stable", "consumer", "roundrobin"),
            f"error {code}, state {state!r}, protocol type {protocol_type!r}, protocol {protocol!r}",
        )
        checks.check(
            name,
            [(m[1], m[2]) for m in members] == [(client_id, [0, 1, 2, 3])]
            and members[0][0] == consumer._coordinator.member_id,
            f"members {members}, the consumer's member id {consumer._coordinator.member_id}",
        )
        name = "find_coordinator: a listed broker"
        coordinator = await admin.find_coordinator(group)
        brokers = {b["node_id"] for b in (await admin.describe_cluster())["brokers"]}
        checks.check(name, coordinator in brokers, f"coordinator {coordinator}, brokers {sorted(brokers)}")
        name = "list_consumer_group_offsets: the member's commits"
        offsets = await admin.list_consumer_group_offsets(group)
        checks.check(
            name,
            {tp: m.offset for tp, m in offsets.items()} == {tp: 10 for tp in tps},
            f"OffsetFetch {sorted(offsets.items())}",
        )
    finally:
        await consumer.stop()
    name = "describe_consumer_groups: Empty once the member left"
    deadline = Deadline(args.timeout)
    described = await described_group(admin, group)
    while described[1] != "Empty" and not deadline.expired():
        await asyncio.sleep(0.2)
        described = await described_group(admin, group)
    code, state, _, _, members = described
    checks.check(name, (code, state, members) == (0, "Empty", []), f"described {described}")

    name = "delete_records: the low watermark moves, ListOffsets earliest agrees"
    tp = TopicPartition(topic, 0)
    low = await admin.delete_records({tp: RecordsToDelete(4)}, timeout_ms=int(args.timeout * 1000))
    checks.check(name, low == {tp: 4}, f"answer {low}")
    reader = AIOKafkaConsumer(**config, group_id=None, enable_auto_commit=False)
    await reader.start()
    try:
        earliest = await reader.beginning_offsets([tp])
        checks.check(name, earliest == {tp: 4}, f"earliest {earliest}")
    finally:
        await reader.stop()


async def run(checks: Checks, args: Any) -> None:
    topic = args.topic or unique_topic("admin-aiokafka")
    print(f"== {CLIENT} against {args.bootstrap} (peer {args.peer.name}), topic {topic}")
    admin = AIOKafkaAdminClient(bootstrap_servers=servers(args.bootstrap), request_timeout_ms=30_000)
    await admin.start()
    try:
        await check_topics(checks, admin, topic, args)
        await check_configs(checks, admin, topic, args)
        await check_groups(checks, admin, topic, args)
        name = "delete_topics: Metadata stops listing the topic; a second delete is UNKNOWN_TOPIC_OR_PARTITION"
        problem = await delete_topic(admin, topic, args.timeout)
        checks.check(name, problem is None, problem or "")
        errors = topic_errors(await admin.delete_topics([topic]))
        checks.check(name, [(t, c) for t, c, _ in errors] == [(topic, UNKNOWN_TOPIC_OR_PARTITION)], f"answer {errors}")
    finally:
        await admin.close()


def main(checks: Checks, cells: Cells) -> int:
    args = parse_args(__doc__)
    if args.peer.lacks("admin-controller"):
        cells.close(f"peer {args.peer.name} cannot create topics: the admin calls were not run")
        checks.skip("run", f"peer {args.peer.name}: {args.peer.lacks('admin-controller')}")
        return checks.report("skipped")
    asyncio.run(run(checks, args))
    cells.judge("admin", checks)
    return checks.report("admin API")


if __name__ == "__main__":
    CELLS = Cells(MATRIX_CLIENT, ["admin"])
    run_main(lambda checks: main(checks, CELLS), CLIENT, CELLS)
