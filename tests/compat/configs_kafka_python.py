#!/usr/bin/env python3
"""kafka-python's KafkaAdminClient (its own protocol code) against a broker's topic configs:
create a topic with configs, describe them (values, sources, synonyms), alter them with
AlterConfigs and IncrementalAlterConfigs, reset one, check validate_only and a refused value,
describe the broker's configs, and delete the topic.

    configs_kafka_python.py --bootstrap HOST:PORT[,...] [--peer tidepool|kafka|librdkafka-mock]
                            [--timeout S]

Matrix: reports the `admin` cell of client `kafka-python` (kafka_python_roundtrip.py reports it
too, for the topic, partition and offset calls): pass when every check here passed.

Exits 0 only when every check passed. Expectations (configs_common.py) are what Apache Kafka
4.3 answers; --records and --codecs are accepted for the compat table's sake and ignored.

kafka-python specifics:
- describe_configs filters client-side: 'modified' (its default) keeps configs whose source is
  not a default one, 'all' keeps everything;
- alter_configs uses IncrementalAlterConfigs when the broker offers it; with incremental=False
  it sends AlterConfigs and first re-adds every modified config it describes, since AlterConfigs
  replaces the whole set;
- alter_configs(raise_on_unknown=True) refuses names the broker does not describe as dynamic
  (read_only false) before sending anything.
"""

from __future__ import annotations

from typing import Any

import kafka
from kafka.admin import ConfigResource, KafkaAdminClient, NewTopic

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

CLIENT = f"kafka-python {kafka.__version__}"

CHECKS = [
    "create topic with configs",
    "describe: values and sources",
    "describe: synonyms",
    "describe: modified only (kafka-python's default filter)",
    "alter_configs (AlterConfigs)",
    "alter_configs (IncrementalAlterConfigs: SET, APPEND)",
    "reset_configs (IncrementalAlterConfigs: DELETE)",
    "validate_only changes nothing",
    "a bad value is INVALID_CONFIG",
    "describe broker configs",
    "delete topic",
]


def describe(admin: KafkaAdminClient, topic: str, args: Any, **options: Any) -> dict[str, dict[str, Any]]:
    """The topic's described configs by name, retried while the topic is not known yet."""

    def attempt() -> dict[str, dict[str, Any]]:
        try:
            return admin.describe_configs([ConfigResource("TOPIC", topic)], **options)["topic"][topic]
        except kafka.errors.UnknownTopicOrPartitionError:
            return {}

    return retry(Deadline(args.timeout), attempt, bool)


def values(configs: dict[str, dict[str, Any]]) -> dict[str, tuple[str | None, str]]:
    return {name: (config["value"], config["config_source"]) for name, config in configs.items()}


def alter(admin: KafkaAdminClient, topic: str, configs: dict[str, Any], **options: Any) -> str:
    """The broker's answer for the topic: 'OK' or the error as kafka-python prints it."""
    return admin.alter_configs([ConfigResource("TOPIC", topic, configs=configs)], **options)["topic"][topic]


def check_created(checks: Checks, admin: KafkaAdminClient, topic: str, args: Any) -> None:
    described = describe(admin, topic, args, config_filter="all", include_synonyms=True)
    expected = {name: (value, "DYNAMIC_TOPIC_CONFIG") for name, value in CREATED_WITH.items()}
    expected.update({name: (value, "DEFAULT_CONFIG") for name, value in KAFKA_DEFAULTS.items()})
    check_described(checks, "describe: values and sources", values(described), expected)
    checks.check(
        "describe: values and sources",
        not any(config["read_only"] or config["is_sensitive"] for config in described.values()),
        "topic configs are neither read-only nor sensitive",
    )
    chain = [(s["name"], s["value"], s["source"]) for s in described["segment.bytes"]["synonyms"]]
    checks.check(
        "describe: synonyms",
        chain
        == [
            ("segment.bytes", "1048576", "DYNAMIC_TOPIC_CONFIG"),
            ("log.segment.bytes", "1073741824", "DEFAULT_CONFIG"),
        ],
        f"segment.bytes synonyms: {chain}",
    )
    modified = describe(admin, topic, args)
    checks.check(
        "describe: modified only (kafka-python's default filter)",
        sorted(modified) == sorted(CREATED_WITH),
        f"modified configs: {sorted(modified)}, expected {sorted(CREATED_WITH)}",
    )


def settled(admin: KafkaAdminClient, topic: str, args: Any, expected: dict) -> dict[str, tuple[str | None, str]]:
    """The topic's configs once they show `expected` (see ALTER_APPLIED_S), else as they are."""
    return retry(
        Deadline(ALTER_APPLIED_S), lambda: values(describe(admin, topic, args, config_filter="all")), shows(expected)
    )


def check_alters(checks: Checks, admin: KafkaAdminClient, topic: str, args: Any) -> None:
    name = "alter_configs (AlterConfigs)"
    answer = alter(admin, topic, {"retention.ms": "7200000"}, incremental=False)
    checks.check(name, answer == "OK", f"answer {answer}")
    expected = {name: (value, "DYNAMIC_TOPIC_CONFIG") for name, value in CREATED_WITH.items()}
    expected["retention.ms"] = ("7200000", "DYNAMIC_TOPIC_CONFIG")
    check_described(checks, name, settled(admin, topic, args, expected), expected)

    name = "alter_configs (IncrementalAlterConfigs: SET, APPEND)"
    answer = alter(admin, topic, {"cleanup.policy": ("APPEND", "delete"), "min.cleanable.dirty.ratio": "0.25"})
    checks.check(name, answer == "OK", f"answer {answer}")
    expected["cleanup.policy"] = ("compact,delete", "DYNAMIC_TOPIC_CONFIG")
    expected["min.cleanable.dirty.ratio"] = ("0.25", "DYNAMIC_TOPIC_CONFIG")
    check_described(checks, name, settled(admin, topic, args, expected), expected)

    name = "reset_configs (IncrementalAlterConfigs: DELETE)"
    answer = admin.reset_configs([ConfigResource("TOPIC", topic, configs=["segment.bytes"])])["topic"][topic]
    checks.check(name, answer == "OK", f"answer {answer}")
    expected["segment.bytes"] = ("1073741824", "DEFAULT_CONFIG")
    check_described(checks, name, settled(admin, topic, args, expected), expected)

    name = "validate_only changes nothing"
    answer = alter(admin, topic, {"retention.ms": "1000"}, validate_only=True)
    checks.check(name, answer == "OK", f"answer {answer}")
    answer = alter(admin, topic, {"retention.ms": "1000"}, validate_only=True, incremental=False)
    checks.check(name, answer == "OK", f"answer (AlterConfigs) {answer}")
    check_described(checks, name, settled(admin, topic, args, expected), expected)

    name = "a bad value is INVALID_CONFIG"
    answer = alter(admin, topic, {"retention.ms": "abc"})
    want = (
        "[Error 40] InvalidConfigurationError: "
        "Invalid value abc for configuration retention.ms: Not a number of type LONG"
    )
    checks.check(name, answer == want, f"answer {answer!r}")
    answer = alter(admin, topic, {"no.such.config": "1"}, raise_on_unknown=False)
    want = "[Error 40] InvalidConfigurationError: Unknown topic config name: no.such.config"
    checks.check(name, answer == want, f"answer {answer!r}")
    try:
        alter(admin, topic, {"no.such.config": "1"})
        checks.fail(name, "raise_on_unknown=True did not refuse an unknown name")
    except ValueError:
        checks.check(name, True)
    check_described(checks, name, settled(admin, topic, args, expected), expected)


def check_broker(checks: Checks, admin: KafkaAdminClient) -> None:
    name = "describe broker configs"
    broker_id = admin.describe_cluster()["brokers"][0]["broker_id"]
    described = admin.describe_configs([ConfigResource("BROKER", str(broker_id))], config_filter="all")
    configs = described["broker"][str(broker_id)]
    expected = {key: (value, "DEFAULT_CONFIG") for key, value in BROKER_DEFAULTS.items()}
    check_described(checks, name, values(configs), expected)
    checks.check(name, "num.partitions" in configs, "num.partitions is described")


def main(checks: Checks, cells: Cells) -> int:
    args = parse_args(__doc__)
    topic = args.topic or unique_topic("configs-kafka-python")
    print(f"== {CLIENT} against {args.bootstrap} (peer {args.peer.name}), topic {topic}")
    if mock_skip(checks, args.peer, CHECKS):
        cells.close(f"peer {args.peer.name} cannot create topics: the config calls were not run")
        return checks.report("skipped")
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap.split(","), request_timeout_ms=30_000)
    admin.create_topics(
        [NewTopic(topic, 1, 1, topic_configs=dict(CREATED_WITH))], timeout_ms=int(args.timeout * 1000)
    )
    checks.check("create topic with configs", True)
    check_created(checks, admin, topic, args)
    check_alters(checks, admin, topic, args)
    check_broker(checks, admin)
    admin.delete_topics([topic], timeout_ms=int(args.timeout * 1000))
    checks.check("delete topic", True)
    admin.close()
    cells.judge("admin", checks)
    return checks.report(f"topic {topic}")


if __name__ == "__main__":
    CELLS = Cells("kafka-python", ["admin"])
    run_main(lambda checks: main(checks, CELLS), CLIENT, CELLS)
