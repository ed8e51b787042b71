"""What the aiokafka programs (aiokafka_roundtrip.py, aiokafka_admin.py, groups_aiokafka.py,
compaction_clients.py) share: the client's name, admin calls that wait for the broker to agree,
and the reading of aiokafka's raw admin responses.

aiokafka's AIOKafkaAdminClient returns the protocol responses themselves for most calls
(CreateTopics, DeleteTopics, DescribeConfigs, AlterConfigs, DescribeGroups): errors are error
codes in them, not exceptions, so every caller here turns them into checks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiokafka
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from compat_common import Deadline

CLIENT = f"aiokafka {aiokafka.__version__}"
MATRIX_CLIENT = "aiokafka"

# ConsumerRecord.timestamp_type: 0 CreateTime, 1 LogAppendTime.
TIMESTAMP_TYPES = {0: "create", 1: "log_append"}

# DescribeConfigs config_source codes (KIP-226), by the names Kafka's clients print.
CONFIG_SOURCES = {
    0: "UNKNOWN",
    1: "DYNAMIC_TOPIC_CONFIG",
    2: "DYNAMIC_BROKER_CONFIG",
    3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
    4: "STATIC_BROKER_CONFIG",
    5: "DEFAULT_CONFIG",
    6: "DYNAMIC_BROKER_LOGGER_CONFIG",
}


def servers(bootstrap: str) -> list[str]:
    return bootstrap.split(",")


def topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    """(topic, error code, message) of every topic a CreateTopics/CreatePartitions/DeleteTopics
    response refused."""
    rows = getattr(response, "topic_errors", None)
    if rows is None:
        rows = response.topic_error_codes
    errors = []
    for row in rows:
        name, code = row[0], row[1]
        message = row[2] if len(row) > 2 else None
        if code:
            errors.append((name, code, message))
    return errors


async def partition_leaders(admin: AIOKafkaAdminClient, topic: str) -> dict[int, int]:
    """Partition -> leader from a fresh Metadata request; empty while the topic is unknown.
    (aiokafka's describe_topics asks with allow_auto_topic_creation=true: only for topics that
    exist.)"""
    found = [t for t in await admin.describe_topics([topic]) if t["topic"] == topic]
    if not found or found[0]["error_code"]:
        return {}
    return {p["partition"]: p["leader"] for p in found[0]["partitions"] if not p["error_code"]}


async def wait_for_partitions(
    admin: AIOKafkaAdminClient, topic: str, count: int, deadline: Deadline
) -> dict[int, int]:
    """Polls metadata until `topic` shows `count` partitions, each with a leader (creation is
    acknowledged before every broker's metadata shows it on Kafka)."""
    leaders: dict[int, int] = {}
    while not deadline.expired():
        leaders = await partition_leaders(admin, topic)
        if len(leaders) >= count and all(leader >= 0 for leader in leaders.values()):
            return leaders
        await asyncio.sleep(0.1)
    raise TimeoutError(f"topic {topic} did not show {count} partitions with leaders in time (last: {leaders})")


async def create_topic(
    admin: AIOKafkaAdminClient, topic: str, partitions: int, timeout: float, configs: dict[str, str] | None = None
) -> None:
    """CreateTopics, raising on a refusal, then waits until Metadata shows every partition led."""
    response = await admin.create_topics(
        [NewTopic(topic, partitions, 1, topic_configs=dict(configs or {}))], timeout_ms=int(timeout * 1000)
    )
    errors = topic_errors(response)
    if errors:
        raise RuntimeError(f"CreateTopics refused: {errors}")
    await wait_for_partitions(admin, topic, partitions, Deadline(timeout))


async def delete_topic(admin: AIOKafkaAdminClient, topic: str, timeout: float) -> str | None:
    """DeleteTopics, then waits until Metadata (all topics: no auto-creation) stops listing it.
    Returns what went wrong, or None."""
    response = await admin.delete_topics([topic], timeout_ms=int(timeout * 1000))
    errors = topic_errors(response)
    if errors:
        return f"DeleteTopics refused: {errors}"
    deadline = Deadline(timeout)
    while not deadline.expired():
        if topic not in await admin.list_topics():
            return None
        await asyncio.sleep(0.1)
    return f"topic {topic} still listed by Metadata {timeout}s after DeleteTopics"
