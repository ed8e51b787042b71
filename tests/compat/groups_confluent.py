#!/usr/bin/env python3
"""librdkafka (through confluent-kafka) consumer groups against a broker: every scenario of
groups_common.py (exactly once with 3 members on 6 partitions, a member leaving, a member
killed, cooperative-sticky, static membership, commit and resume, resume after a broker restart).

    groups_confluent.py --bootstrap HOST:PORT[,...] [--scenario NAME ...] [--broker-command CMD]

Prints one PASS/FAIL/SKIP line per scenario; exits 0 only when none failed. With `--member SPEC`
it is one group member instead (the orchestrator starts those; see groups_common.py).

librdkafka specifics:
- the eager assignors are librdkafka's default "range,roundrobin"; cooperative-sticky is
  `partition.assignment.strategy=cooperative-sticky`, whose callbacks carry only the partitions
  added or removed (confluent-kafka applies them itself when the callback does not);
- commit() without arguments commits the offsets stored by consume() (one past each record
  returned), synchronously with asynchronous=False;
- a static member (group.instance.id) sends no LeaveGroup when it closes, a dynamic one does.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import confluent_kafka

from groups_common import Client, MemberOutput, main, stop_requested

CLIENT = f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})"


def member(spec: dict[str, Any]) -> int:
    from confluent_kafka import Consumer, KafkaException

    out = MemberOutput()
    stop = stop_requested(spec, out)
    config: dict[str, Any] = {
        "bootstrap.servers": spec["bootstrap"],
        "group.id": spec["group"],
        "client.id": spec["name"],
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": spec["session_timeout_ms"],
        "heartbeat.interval.ms": spec["heartbeat_interval_ms"],
        "max.poll.interval.ms": spec["max_poll_interval_ms"],
        "allow.auto.create.topics": False,
        "fetch.wait.max.ms": 100,
        "error_cb": lambda error: print(f"error_cb: {error}", file=sys.stderr, flush=True),
    }
    if spec["assignor"] == "cooperative-sticky":
        config["partition.assignment.strategy"] = "cooperative-sticky"
    if spec.get("instance_id"):
        config["group.instance.id"] = spec["instance_id"]
    consumer = Consumer(config)

    # confluent-kafka does not expose rd_kafka_rebalance_protocol(); the assignor decides it.
    incremental = spec["assignor"] == "cooperative-sticky"

    def mode() -> str:
        return "incremental" if incremental else "eager"

    def on_assign(c: Any, partitions: list[Any]) -> None:
        out(ev="assign", mode=mode(), partitions=sorted(p.partition for p in partitions), member_id=c.memberid())

    def on_revoke(c: Any, partitions: list[Any]) -> None:
        out(ev="revoke", mode=mode(), partitions=sorted(p.partition for p in partitions))

    def on_lost(c: Any, partitions: list[Any]) -> None:
        out(ev="lost", partitions=sorted(p.partition for p in partitions))

    consumer.subscribe([spec["topic"]], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    while not stop.is_set():
        messages = consumer.consume(num_messages=500, timeout=0.1)
        records = []
        for message in messages:
            if message.error() is not None:
                out(ev="error", error=str(message.error()))
                continue
            records.append([message.partition(), message.offset(), message.value().decode()])
        if not records:
            continue
        out(ev="records", records=records)
        try:
            committed = consumer.commit(asynchronous=False) or []
            # Partitions with nothing consumed since they were assigned come back with offset
            # -1001 (none stored): nothing was committed for them.
            offsets = {str(tp.partition): tp.offset for tp in committed if tp.error is None and tp.offset >= 0}
            out(ev="commit", offsets=offsets)
        except KafkaException as error:
            out(ev="commit_error", error=str(error))
    consumer.close()
    out(ev="closed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--member":
        sys.exit(member(json.loads(sys.argv[2])))
    main(Client(name=CLIENT, member_argv=lambda spec: [sys.executable, __file__, "--member", json.dumps(spec)]))
