#!/usr/bin/env python3
"""kafka-python (pure Python, its own group coordinator code) consumer groups against a broker:
every scenario of groups_common.py.

    groups_kafka_python.py --bootstrap HOST:PORT[,...] [--scenario NAME ...] [--broker-command CMD]

Prints one PASS/FAIL/SKIP line per scenario; exits 0 only when none failed. With `--member SPEC`
it is one group member instead (the orchestrator starts those; see groups_common.py).

kafka-python specifics:
- KafkaConsumer(group_id=..., enable_auto_commit=False, session_timeout_ms=6000,
  heartbeat_interval_ms=1000); heartbeats come from its own thread;
- the eager assignors are its default (range, roundrobin); cooperative-sticky is
  CooperativeStickyAssignor, whose listener calls carry only the partitions added or removed;
- each poll's records are committed synchronously with commit({partition: last offset + 1});
- its member id is not public API: it is read from the coordinator's group_metadata().
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import kafka

from groups_common import Client, MemberOutput, main, stop_requested

CLIENT = f"kafka-python {kafka.__version__}"


def member(spec: dict[str, Any]) -> int:
    from kafka import KafkaConsumer
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    # Its group coordinator logs joins, rebalances and errors at INFO: kept on stderr, which the
    # orchestrator shows when a scenario fails.
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka.coordinator").setLevel(logging.INFO)
    out = MemberOutput()
    stop = stop_requested(spec, out)
    incremental = spec["assignor"] == "cooperative-sticky"
    config: dict[str, Any] = {
        "bootstrap_servers": spec["bootstrap"].split(","),
        "group_id": spec["group"],
        "client_id": spec["name"],
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": spec["session_timeout_ms"],
        "heartbeat_interval_ms": spec["heartbeat_interval_ms"],
        "max_poll_interval_ms": spec["max_poll_interval_ms"],
        "allow_auto_create_topics": False,
        "fetch_max_wait_ms": 100,
    }
    if incremental:
        config["partition_assignment_strategy"] = [CooperativeStickyAssignor]
    if spec.get("instance_id"):
        config["group_instance_id"] = spec["instance_id"]
    consumer = KafkaConsumer(**config)
    mode = "incremental" if incremental else "eager"

    def member_id() -> str | None:
        try:
            return consumer._coordinator.group_metadata().member_id
        except Exception:  # noqa: BLE001 - private API; the id is informational
            return None

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            out(ev="revoke", mode=mode, partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned: Any) -> None:
            out(ev="assign", mode=mode, partitions=sorted(tp.partition for tp in assigned), member_id=member_id())

        def on_partitions_lost(self, lost: Any) -> None:
            out(ev="lost", partitions=sorted(tp.partition for tp in lost))

    # kafka-python joins the group without waiting for its first metadata answer; a leader that
    # assigns before it arrives assigns nothing ("No partition metadata for topic") and must
    # notice the metadata change to rejoin. That client-side race made these scenarios flaky
    # under load (seen on a loaded 2-core machine), so the member learns the topic first, as an
    # application that checks its topic exists would.
    consumer.partitions_for_topic(spec["topic"])
    consumer.subscribe([spec["topic"]], listener=Listener())
    while not stop.is_set():
        batches = consumer.poll(timeout_ms=100, max_records=500)
        records = []
        offsets: dict[Any, Any] = {}
        for tp, messages in batches.items():
            for message in messages:
                records.append([message.partition, message.offset, message.value.decode()])
            offsets[tp] = OffsetAndMetadata(messages[-1].offset + 1, "", -1)
        if not records:
            continue
        out(ev="records", records=records)
        try:
            consumer.commit(offsets)
            out(ev="commit", offsets={str(tp.partition): o.offset for tp, o in offsets.items()})
        except KafkaError as error:
            out(ev="commit_error", error=f"{type(error).__name__}: {error}")
    consumer.close()
    out(ev="closed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--member":
        sys.exit(member(json.loads(sys.argv[2])))
    main(Client(name=CLIENT, member_argv=lambda spec: [sys.executable, __file__, "--member", json.dumps(spec)]))
