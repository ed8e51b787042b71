#!/usr/bin/env python3
"""librdkafka (through confluent-kafka's AdminClient) against a broker's topic configs: create a
topic with configs, describe_configs (values, sources, synonyms), incremental_alter_configs
(SET, APPEND, SUBTRACT, DELETE), a refused APPEND, validate_only, the broker's configs (and a
refused broker change), and delete the topic.

    configs_confluent.py --bootstrap HOST:PORT[,...] [--peer tidepool|kafka|librdkafka-mock]
                         [--timeout S]

Exits 0 only when every check passed. Expectations (configs_common.py) are what Apache Kafka
4.3 answers; --records and --codecs are accepted for the compat table's sake and ignored.

librdkafka specifics:
- DescribeConfigs asks for synonyms; is_default is true for the DEFAULT_CONFIG source only;
- a resource's error raises KafkaException from its future, with the broker's code;
- producer-type handles (the AdminClient too) auto-create topics by default: turned off.

Matrix: reports the `admin` cell of client `librdkafka` (confluent_roundtrip.py reports it too,
for the topic, partition and offset calls): pass when every check here passed.
"""

from __future__ import annotations

from typing import Any

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

from compat_common import Cells, Checks, Deadline, parse_args, run_main, unique_topic
from configs_common import (
    ALTER_APPLIED_S,
    BROKER_DEFAULTS,
    CREATED_WITH,
    KAFKA_DEFAULTS,
    check_described,
    mock_skip,
    retry,
    shows,
)

CLIENT = f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"

CHECKS = [
    "create topic with configs",
    "describe_configs: values and sources",
    "describe_configs: synonyms",
    "incremental_alter_configs: SET and APPEND",
    "incremental_alter_configs: SUBTRACT and DELETE",
    "incremental_alter_configs: APPEND to a non-list config is INVALID_CONFIG",
    "validate_only changes nothing",
    "describe broker configs",
    "altering a broker config is INVALID_REQUEST",
    "delete topic",
]


def describe(admin: AdminClient, resource: ConfigResource, args: Any) -> dict[str, ConfigEntry]:
    """The resource's described configs by name, retried while a new topic is not known yet."""

    def attempt() -> dict[str, ConfigEntry]:
        try:
            return admin.describe_configs([resource], request_timeout=args.timeout)[resource].result()
        except KafkaException as error:
            if error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return {}
            raise

    return retry(Deadline(args.timeout), attempt, bool)


def source(entry: ConfigEntry) -> str:
    """A described entry's source by name (confluent-kafka gives the number)."""
    return ConfigSource(entry.source).name


def values(configs: dict[str, ConfigEntry]) -> dict[str, tuple[str | None, str]]:
    return {name: (entry.value, source(entry)) for name, entry in configs.items()}


def alter(
    admin: AdminClient, resource: ConfigResource, args: Any, validate_only: bool = False
) -> KafkaError | None:
    """Sends one IncrementalAlterConfigs; returns the broker's error, or None."""
    future = admin.incremental_alter_configs(
        [resource], validate_only=validate_only, request_timeout=args.timeout
    )[resource]
    try:
        future.result()
        return None
    except KafkaException as error:
        return error.args[0]


def change(name: str, operation: AlterConfigOpType, value: str | None = None) -> ConfigEntry:
    return ConfigEntry(name, value, incremental_operation=operation)


def check_created(checks: Checks, admin: AdminClient, topic: ConfigResource, args: Any) -> None:
    described = describe(admin, topic, args)
    expected = {name: (value, "DYNAMIC_TOPIC_CONFIG") for name, value in CREATED_WITH.items()}
    expected.update({name: (value, "DEFAULT_CONFIG") for name, value in KAFKA_DEFAULTS.items()})
    name = "describe_configs: values and sources"
    check_described(checks, name, values(described), expected)
    for key, entry in described.items():
        checks.check(name, not entry.is_read_only and not entry.is_sensitive, f"{key} is read-only or sensitive")
        checks.check(
            name, entry.is_default == (source(entry) == "DEFAULT_CONFIG"), f"{key}: is_default {entry.is_default}"
        )
    chain = [(s.name, s.value, source(s)) for s in described["segment.bytes"].synonyms.values()]
    checks.check(
        "describe_configs: synonyms",
        chain
        == [
            ("segment.bytes", "1048576", "DYNAMIC_TOPIC_CONFIG"),
            ("log.segment.bytes", "1073741824", "DEFAULT_CONFIG"),
        ],
        f"segment.bytes synonyms: {chain}",
    )


def check_alters(checks: Checks, admin: AdminClient, topic: str, args: Any) -> None:
    def resource(*changes: ConfigEntry) -> ConfigResource:
        return ConfigResource(ResourceType.TOPIC, topic, incremental_configs=list(changes))

    def described_once() -> dict[str, tuple[str | None, str]]:
        return values(describe(admin, ConfigResource(ResourceType.TOPIC, topic), args))

    def described() -> dict[str, tuple[str | None, str]]:
        return retry(Deadline(ALTER_APPLIED_S), described_once, shows(expected))

    expected = {name: (value, "DYNAMIC_TOPIC_CONFIG") for name, value in CREATED_WITH.items()}

    name = "incremental_alter_configs: SET and APPEND"
    error = alter(
        admin,
        resource(
            change("retention.ms", AlterConfigOpType.SET, "7200000"),
            change("cleanup.policy", AlterConfigOpType.APPEND, "delete"),
        ),
        args,
    )
    checks.check(name, error is None, f"error {error}")
    expected["retention.ms"] = ("7200000", "DYNAMIC_TOPIC_CONFIG")
    expected["cleanup.policy"] = ("compact,delete", "DYNAMIC_TOPIC_CONFIG")
    check_described(checks, name, described(), expected)

    name = "incremental_alter_configs: SUBTRACT and DELETE"
    error = alter(
        admin,
        resource(
            change("cleanup.policy", AlterConfigOpType.SUBTRACT, "compact"),
            change("segment.bytes", AlterConfigOpType.DELETE),
        ),
        args,
    )
    checks.check(name, error is None, f"error {error}")
    expected["cleanup.policy"] = ("delete", "DYNAMIC_TOPIC_CONFIG")
    expected["segment.bytes"] = ("1073741824", "DEFAULT_CONFIG")
    check_described(checks, name, described(), expected)

    name = "incremental_alter_configs: APPEND to a non-list config is INVALID_CONFIG"
    error = alter(admin, resource(change("segment.bytes", AlterConfigOpType.APPEND, "5")), args)
    checks.check(
        name,
        error is not None
        and error.code() == KafkaError.INVALID_CONFIG
        and error.str() == "Can't APPEND to key segment.bytes because its type is not LIST.",
        f"error {error}",
    )
    check_described(checks, name, described(), expected)

    name = "validate_only changes nothing"
    error = alter(admin, resource(change("retention.ms", AlterConfigOpType.SET, "1000")), args, validate_only=True)
    checks.check(name, error is None, f"error {error}")
    error = alter(admin, resource(change("retention.ms", AlterConfigOpType.SET, "x")), args, validate_only=True)
    checks.check(
        name, error is not None and error.code() == KafkaError.INVALID_CONFIG, f"a bad value is still refused: {error}"
    )
    check_described(checks, name, described(), expected)


def check_broker(checks: Checks, admin: AdminClient, args: Any) -> None:
    name = "describe broker configs"
    broker_id = min(admin.list_topics(timeout=args.timeout).brokers)
    broker = ConfigResource(ResourceType.BROKER, str(broker_id))
    configs = describe(admin, broker, args)
    expected = {key: (value, "DEFAULT_CONFIG") for key, value in BROKER_DEFAULTS.items()}
    check_described(checks, name, values(configs), expected)
    checks.check(name, "num.partitions" in configs, "num.partitions is described")

    # num.partitions cannot change at run time on Kafka either.
    name = "altering a broker config is INVALID_REQUEST"
    change_partitions = ConfigResource(
        ResourceType.BROKER,
        str(broker_id),
        incremental_configs=[change("num.partitions", AlterConfigOpType.SET, "3")],
    )
    error = alter(admin, change_partitions, args, validate_only=True)
    checks.check(
        name,
        error is not None
        and error.code() == KafkaError.INVALID_REQUEST
        and error.str() == "Cannot update these configs dynamically: [num.partitions]",
        f"error {error}",
    )


def main(checks: Checks, cells: Cells) -> int:
    args = parse_args(__doc__)
    topic = args.topic or unique_topic("configs-confluent")
    print(f"== {CLIENT} against {args.bootstrap} (peer {args.peer.name}), topic {topic}")
    if mock_skip(checks, args.peer, CHECKS):
        cells.not_applicable(f"peer {args.peer.name} cannot create topics")
        return checks.report("skipped")
    admin = AdminClient(
        {"bootstrap.servers": args.bootstrap, "socket.timeout.ms": 30_000, "allow.auto.create.topics": False}
    )
    created = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=1, config=dict(CREATED_WITH))],
        request_timeout=args.timeout,
    )
    created[topic].result()
    checks.check("create topic with configs", True)
    check_created(checks, admin, ConfigResource(ResourceType.TOPIC, topic), args)
    check_alters(checks, admin, topic, args)
    check_broker(checks, admin, args)
    admin.delete_topics([topic], request_timeout=args.timeout)[topic].result()
    checks.check("delete topic", True)
    cells.judge("admin", checks)
    return checks.report(f"topic {topic}")


if __name__ == "__main__":
    CELLS = Cells("librdkafka", ["admin"])
    run_main(lambda checks: main(checks, CELLS), CLIENT, CELLS)
