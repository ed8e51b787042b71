#!/usr/bin/env python3
"""The matrix's compaction scenario (tests/matrix/README.md) through kafka-python and aiokafka,
judged by compaction_matrix.py: no cleaner is driven from here, the broker's own cleaner (every
second in the test run) must do the work.

    compaction_clients.py --bootstrap HOST:PORT[,...] [--peer tidepool|kafka]
                          [--client kafka-python|aiokafka ...] [--timeout S] [--records N]

Per client (both by default, at once, each on its own topic): create a 1-partition topic with
compaction_matrix.TOPIC_CONFIGS through the client's admin API (kafka-python KafkaAdminClient,
aiokafka AIOKafkaAdminClient), produce compaction_matrix.plan() with an idempotent acks=all
producer, wait ROLL_AFTER_S, produce the `roll` record, then every second read the partition from
offset 0 to its end offset (assign() and seek(), no group) until each key appears once (at most
WAIT_S), judge the last read, and delete the topic. Reports the cell `compaction` of each client;
exits 0 only when every client passed.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import traceback
from collections.abc import Callable, Sequence

from compat_common import PEER_GAPS, Cells, Checks, Deadline, unique_topic
from compaction_matrix import (
    PARTITIONS,
    ROLL_AFTER_S,
    ROLL_KEY,
    TOPIC_CONFIGS,
    WAIT_S,
    Read,
    judge,
    plan,
    settled,
)

CLIENTS = ("kafka-python", "aiokafka")
ROLL_VALUE = b"roll"


class Outcome:
    """What one client's run found: the plan's offsets, the roll offset, the reads."""

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.roll_offset = -1
        self.read: list[Read] = []
        self.passes = 0
        self.settled_after_s: float | None = None


def read_loop(read_once: Callable[[], list[Read]], outcome: Outcome) -> None:
    """Reads the whole partition once a second until it has settled or WAIT_S has passed."""
    started = time.monotonic()
    deadline = Deadline(WAIT_S)
    while True:
        tick = time.monotonic()
        outcome.read = read_once()
        outcome.passes += 1
        if settled(outcome.read):
            outcome.settled_after_s = time.monotonic() - started
            return
        if deadline.expired():
            return
        time.sleep(max(0.0, min(deadline.remaining(), 1.0 - (time.monotonic() - tick))))


# ---------------------------------------------------------------------------------------------
# kafka-python


def run_kafka_python(bootstrap: str, topic: str, timeout: float, outcome: Outcome) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    servers = bootstrap.split(",")
    admin = KafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=30_000)
    try:
        admin.create_topics(
            [NewTopic(topic, PARTITIONS, 1, topic_configs=dict(TOPIC_CONFIGS))], timeout_ms=int(timeout * 1000)
        )
        deadline = Deadline(timeout)
        while True:
            found = [t for t in admin.describe_topics([topic]) if t.get("name") == topic and not t.get("error_code")]
            if found and all(p["leader_id"] >= 0 for p in found[0]["partitions"]) and found[0]["partitions"]:
                break
            if deadline.expired():
                raise TimeoutError(f"topic {topic} has no leader {timeout}s after CreateTopics")
            time.sleep(0.1)
        producer = KafkaProducer(
            bootstrap_servers=servers, enable_idempotence=True, acks="all", linger_ms=5, request_timeout_ms=30_000
        )
        try:
            futures = [producer.send(topic, key=key, value=value, partition=0) for key, value in plan()]
            producer.flush(timeout=timeout)
            outcome.offsets = [future.get(timeout=timeout).offset for future in futures]
            time.sleep(ROLL_AFTER_S)
            outcome.roll_offset = producer.send(topic, key=ROLL_KEY, value=ROLL_VALUE, partition=0).get(timeout).offset
        finally:
            producer.close(timeout=timeout)
        consumer = KafkaConsumer(
            bootstrap_servers=servers, group_id=None, enable_auto_commit=False, auto_offset_reset="none"
        )
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])

        def read_once() -> list[Read]:
            end = consumer.end_offsets([tp], timeout_ms=int(timeout * 1000))[tp]
            consumer.seek(tp, 0)
            read: list[Read] = []
            pass_deadline = Deadline(timeout)
            while consumer.position(tp) < end:
                if pass_deadline.expired():
                    raise TimeoutError(f"read stopped at offset {consumer.position(tp)} of {end}")
                for record in consumer.poll(timeout_ms=500).get(tp, []):
                    read.append(Read(record.offset, record.key, record.value))
            return read

        try:
            read_loop(read_once, outcome)
        finally:
            consumer.close()
        admin.delete_topics([topic], timeout_ms=int(timeout * 1000))
    finally:
        admin.close()


# ---------------------------------------------------------------------------------------------
# aiokafka


async def run_aiokafka_async(bootstrap: str, topic: str, timeout: float, outcome: Outcome) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from aiokafka_common import create_topic, delete_topic

    servers = bootstrap.split(",")
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, request_timeout_ms=30_000)
    await admin.start()
    try:
        await create_topic(admin, topic, PARTITIONS, timeout, TOPIC_CONFIGS)
        producer = AIOKafkaProducer(
            bootstrap_servers=servers, enable_idempotence=True, acks="all", linger_ms=5, request_timeout_ms=30_000
        )
        await producer.start()
        try:
            futures = [await producer.send(topic, key=key, value=value, partition=0) for key, value in plan()]
            outcome.offsets = [(await asyncio.wait_for(future, timeout)).offset for future in futures]
            await asyncio.sleep(ROLL_AFTER_S)
            roll = await producer.send_and_wait(topic, key=ROLL_KEY, value=ROLL_VALUE, partition=0)
            outcome.roll_offset = roll.offset
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=servers, group_id=None, enable_auto_commit=False, auto_offset_reset="none"
        )
        await consumer.start()
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        try:
            started = time.monotonic()
            deadline = Deadline(WAIT_S)
            while True:
                tick = time.monotonic()
                end = (await consumer.end_offsets([tp]))[tp]
                consumer.seek(tp, 0)
                read: list[Read] = []
                pass_deadline = Deadline(timeout)
                while await consumer.position(tp) < end:
                    if pass_deadline.expired():
                        raise TimeoutError(f"read stopped at offset {await consumer.position(tp)} of {end}")
                    batches = await consumer.getmany(tp, timeout_ms=500)
                    read.extend(Read(r.offset, r.key, r.value) for r in batches.get(tp, []))
                outcome.read = read
                outcome.passes += 1
                if settled(read):
                    outcome.settled_after_s = time.monotonic() - started
                    break
                if deadline.expired():
                    break
                await asyncio.sleep(max(0.0, min(deadline.remaining(), 1.0 - (time.monotonic() - tick))))
        finally:
            await consumer.stop()
        problem = await delete_topic(admin, topic, timeout)
        if problem:
            raise RuntimeError(problem)
    finally:
        await admin.close()


def run_aiokafka(bootstrap: str, topic: str, timeout: float, outcome: Outcome) -> None:
    asyncio.run(run_aiokafka_async(bootstrap, topic, timeout, outcome))


RUNNERS: dict[str, Callable[[str, str, float, Outcome], None]] = {
    "kafka-python": run_kafka_python,
    "aiokafka": run_aiokafka,
}


# ---------------------------------------------------------------------------------------------


PRINT_LOCK = threading.Lock()  # clients run at once; each one's report stays in one piece


def run_client(client: str, args: argparse.Namespace, results: dict[str, Checks]) -> None:
    """One client's scenario, judged and reported."""
    checks = Checks(f"{client} compaction")
    topic = unique_topic(f"compaction-{client}")
    outcome = Outcome()
    cells = Cells(client, ["compaction"])
    started = time.monotonic()
    try:
        RUNNERS[client](args.bootstrap, topic, args.timeout, outcome)
        checks.check("scenario ran to the end (create, produce, read, delete topic)", True)
    except Exception as error:  # noqa: BLE001 - a client or broker error fails the scenario, loudly
        with PRINT_LOCK:
            print(f"== {client} compaction: {type(error).__name__} raised\n{traceback.format_exc()}", flush=True)
        checks.fail("scenario ran to the end (create, produce, read, delete topic)", f"{type(error).__name__}: {error}")
    if outcome.roll_offset >= 0:
        failures = judge(plan(), outcome.offsets, outcome.roll_offset, outcome.read)
        name = "compacted read: each key once, latest value at its offset, offsets increasing, roll last"
        if failures:
            for failure in failures:
                checks.fail(name, failure)
        else:
            checks.check(name, True)
    with PRINT_LOCK:
        settled_text = (
            f"settled after {outcome.settled_after_s:.1f} s" if outcome.settled_after_s is not None else "never settled"
        )
        checks.report(
            f"topic {topic}: {len(outcome.offsets)} records + roll at {outcome.roll_offset}, "
            f"{outcome.passes} reads, last read {len(outcome.read)} records, {settled_text}, "
            f"{time.monotonic() - started:.1f} s"
        )
        cells.judge("compaction", checks)
    results[client] = checks


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--peer", default="tidepool", choices=sorted(PEER_GAPS), help="the broker under test")
    parser.add_argument("--client", action="append", choices=CLIENTS, help="only this client (repeatable)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed for each client call")
    parser.add_argument("--records", type=int, help="accepted for scripts/test's sake and ignored (the plan is fixed)")
    args = parser.parse_args(argv)
    args.clients = args.client or list(CLIENTS)
    return args


def main() -> int:
    args = parse_args()
    print(f"== compaction scenario ({', '.join(args.clients)}) against {args.bootstrap} (peer {args.peer})", flush=True)
    if args.peer == "librdkafka-mock":
        print("SKIP: the mock cluster cannot create topics (no controller) and has no cleaner")
        return 0
    results: dict[str, Checks] = {}
    threads = [threading.Thread(target=run_client, args=(client, args, results)) for client in args.clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    missing = [client for client in args.clients if client not in results]
    for client in missing:
        Cells(client, ["compaction"]).close("the program's thread for this client died (see its traceback)")
    ok = not missing and all(checks.ok for checks in results.values())
    print(f"== compaction scenario: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
