#!/usr/bin/env python3
"""aiokafka (asyncio, its own group coordinator code) consumer groups against a broker: every
scenario of groups_common.py but cooperative_sticky, which aiokafka cannot do.

    groups_aiokafka.py --bootstrap HOST:PORT[,...] [--scenario NAME ...] [--broker-command CMD]

Prints one PASS/FAIL/SKIP line per scenario; exits 0 only when none failed. With `--member SPEC`
it is one group member instead (the orchestrator starts those; see groups_common.py), running
its own asyncio event loop.

aiokafka specifics:
- AIOKafkaConsumer(group_id=..., enable_auto_commit=False, session_timeout_ms=6000,
  heartbeat_interval_ms=1000, rebalance_timeout_ms=max.poll.interval.ms as librdkafka and
  kafka-python send it; aiokafka's own default is the session timeout); heartbeats come from a
  task of the member's event loop, which getmany() never blocks;
- the default assignor is aiokafka's RoundRobinPartitionAssignor (eager); aiokafka has range,
  round robin and sticky assignors but only the eager protocol: its coordinator revokes the
  whole assignment before every JoinGroup (_on_join_prepare) and has no incremental
  (cooperative) rebalance, so cooperative_sticky is SKIP;
- a rebalance listener's on_partitions_revoked runs before every join, the first one too (with
  no partitions); there is no on_partitions_lost;
- each getmany()'s records are committed with commit({partition: last offset + 1}); a commit
  of partitions no longer assigned raises IllegalStateError, reported as a refused commit;
- a static member (group_instance_id) sends no LeaveGroup when it stops, as in Kafka's client;
- its member id is not public API: it is read from the coordinator (consumer._coordinator).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from typing import Any

import aiokafka

from groups_common import Client, MemberOutput, main, stop_requested

CLIENT = f"aiokafka {aiokafka.__version__}"
NO_COOPERATIVE = (
    "aiokafka 0.14 has only the eager rebalance protocol: its group coordinator revokes every "
    "partition before each JoinGroup and has no cooperative-sticky (incremental) assignor"
)


async def run_member(spec: dict[str, Any], out: MemberOutput, stop: threading.Event) -> int:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.abc import ConsumerRebalanceListener
    from aiokafka.errors import KafkaError
    from aiokafka.structs import OffsetAndMetadata

    if spec["assignor"] != "default":
        out(ev="error", error=f"assignor {spec['assignor']!r}: {NO_COOPERATIVE}")
        return 2
    config: dict[str, Any] = {
        "bootstrap_servers": spec["bootstrap"].split(","),
        "group_id": spec["group"],
        "client_id": spec["name"],
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": spec["session_timeout_ms"],
        "heartbeat_interval_ms": spec["heartbeat_interval_ms"],
        "max_poll_interval_ms": spec["max_poll_interval_ms"],
        "rebalance_timeout_ms": spec["max_poll_interval_ms"],
        "fetch_max_wait_ms": 100,
    }
    if spec.get("instance_id"):
        config["group_instance_id"] = spec["instance_id"]
    consumer = AIOKafkaConsumer(**config)

    def member_id() -> str | None:
        try:
            return consumer._coordinator.member_id
        except Exception:  # noqa: BLE001 - private API; the id is informational
            return None

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            out(ev="revoke", mode="eager", partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned: Any) -> None:
            out(ev="assign", mode="eager", partitions=sorted(tp.partition for tp in assigned), member_id=member_id())

    await consumer.start()
    consumer.subscribe([spec["topic"]], listener=Listener())
    while not stop.is_set():
        try:
            batches = await consumer.getmany(timeout_ms=100, max_records=500)
        except KafkaError as error:
            out(ev="error", error=f"getmany: {type(error).__name__}: {error}")
            await asyncio.sleep(0.1)
            continue
        records = []
        offsets: dict[Any, Any] = {}
        for tp, messages in batches.items():
            if not messages:
                continue
            for message in messages:
                records.append([message.partition, message.offset, message.value.decode()])
            offsets[tp] = OffsetAndMetadata(messages[-1].offset + 1, "")
        if not records:
            continue
        out(ev="records", records=records)
        try:
            await consumer.commit(offsets)
            out(ev="commit", offsets={str(tp.partition): o.offset for tp, o in offsets.items()})
        except KafkaError as error:
            out(ev="commit_error", error=f"{type(error).__name__}: {error}")
    await consumer.stop()
    out(ev="closed")
    return 0


def member(spec: dict[str, Any]) -> int:
    # Its coordinator logs joins, assignments and errors at INFO: kept on stderr, which the
    # orchestrator shows when a scenario fails.
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka.consumer.group_coordinator").setLevel(logging.INFO)
    out = MemberOutput()
    stop = stop_requested(spec, out)  # waits for "go" first when the spec says "hold"
    return asyncio.run(run_member(spec, out, stop))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--member":
        sys.exit(member(json.loads(sys.argv[2])))
    main(
        Client(
            name=CLIENT,
            member_argv=lambda spec: [sys.executable, __file__, "--member", json.dumps(spec)],
            unsupported={"cooperative_sticky": NO_COOPERATIVE},
        )
    )
