"""What the topic-config programs (configs_kafka_python.py, configs_confluent.py) expect of a
broker, once: the topic they create, the defaults and sources Apache Kafka 4.3 reports, and the
check that compares a description with them.

Expectations were taken from Apache Kafka 4.3.1 started by tests/java/kafka-broker.sh (no log.*
settings, so every broker-level value is Kafka's built-in default) and hold for a Tidepool
started with its defaults. Sources are Kafka's ConfigSource names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from compat_common import Checks, Deadline

# Created with these; segment.bytes is Kafka 4's minimum (Tidepool accepts smaller ones).
CREATED_WITH = {"cleanup.policy": "compact", "retention.ms": "3600000", "segment.bytes": "1048576"}

# Topic configs left at Kafka's default on a broker configured with none.
KAFKA_DEFAULTS = {
    "compression.type": "producer",
    "delete.retention.ms": "86400000",
    "flush.messages": "9223372036854775807",
    "index.interval.bytes": "4096",
    "max.compaction.lag.ms": "9223372036854775807",
    "max.message.bytes": "1048588",
    "message.timestamp.type": "CreateTime",
    "min.cleanable.dirty.ratio": "0.5",
    "min.compaction.lag.ms": "0",
    "retention.bytes": "-1",
    "segment.ms": "604800000",
}

# Broker configs behind topic configs, at Kafka's defaults (DEFAULT_CONFIG on both peers).
# Not log.retention.ms, log.roll.ms or log.flush.interval.ms: Kafka leaves those unset (null)
# and derives the value from log.retention.hours and friends; Tidepool reports the value.
BROKER_DEFAULTS = {
    "log.segment.bytes": "1073741824",
    "log.cleanup.policy": "delete",
    "log.cleaner.min.cleanable.ratio": "0.5",
    "log.cleaner.delete.retention.ms": "86400000",
    "message.max.bytes": "1048588",
    "log.message.timestamp.type": "CreateTime",
    "log.index.interval.bytes": "4096",
}

T = TypeVar("T")


def check_described(
    checks: Checks,
    name: str,
    described: dict[str, tuple[str | None, str]],
    expected: dict[str, tuple[str, str]],
) -> None:
    """`described` and `expected` map config name -> (value, source name)."""
    for key, want in expected.items():
        got = described.get(key)
        checks.check(name, got == want, f"{key}: expected {want}, described {got}")


def retry(deadline: Deadline, attempt: Callable[[], T], ready: Callable[[T], bool]) -> T:
    """Calls `attempt` until `ready` accepts its result or the deadline passes (Kafka answers
    UNKNOWN_TOPIC_OR_PARTITION for a moment after CreateTopics, until its metadata catches
    up); returns the last result."""
    while True:
        result = attempt()
        if ready(result) or deadline.expired():
            return result
        time.sleep(0.1)


# Kafka answers an alter once its controller committed it and applies it from the metadata log a
# moment later, so a describe straight after may still show the old value: read-backs wait this
# long for what they expect (Tidepool applies before answering, so it shows at once).
ALTER_APPLIED_S = 5.0


def shows(expected: dict[str, tuple[str, str]]) -> Callable[[dict[str, tuple[str | None, str]]], bool]:
    """Whether described configs (name -> (value, source)) show every expected pair."""
    return lambda described: all(described.get(key) == want for key, want in expected.items())


def mock_skip(checks: Checks, peer: Any, names: list[str]) -> bool:
    """The mock cluster cannot create topics (no controller), so nothing here can run."""
    reason = peer.lacks("admin-controller")
    if not reason:
        return False
    for name in names:
        checks.skip(name, f"peer {peer.name}: {reason}")
    return True
