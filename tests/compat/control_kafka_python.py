#!/usr/bin/env python3
"""kafka-python (its own protocol code) experiencing the test control plane, driven over HTTP,
and behaving as it does against Apache Kafka.

    control_kafka_python.py --bootstrap HOST:PORT[,...] --control http://HOST:PORT [--scenario NAME ...]

The broker must have 3 nodes (tests/control_clients.rs starts one). Each scenario uses topics
and groups of its own, and the control plane is reset before and after it; one line
`PASS: <scenario>` or `FAIL: <scenario>: <reason>` each, exit 1 when any failed.

- retriable_produce_errors: errors pushed on Produce are retried by the idempotent producer;
  each record is stored once; the request log shows the errors.
- partition_fetch_errors: a Fetch error on one partition only; the consumer reads everything.
- leader_moves: partition leaders move between batches in flight; nothing lost or doubled.
- version_cap_2_8, version_cap_3_0: with a release's versions advertised, kafka-python's
  api_version auto-detection names that release, and produce and consume work within it.
- coordinator_move: the group's coordinator moves; the member finds it and keeps committing.
- forced_rebalance: the rebalance listener's revoke and assign fire again.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from compat_common import Deadline
from control_common import ControlPlane, ScenarioFailed, expect, parse_args, run_scenarios, unique, wait_until

CLIENT = f"kafka-python {kafka.__version__}, control plane"

WAIT_S = 20.0

args = parse_args(__doc__ or "")
control = ControlPlane(args.control)
BOOTSTRAP = args.bootstrap.split(",")

# kafka-python logs every retried error at WARNING/ERROR; they are the point here, not news.
logging.basicConfig(level=logging.CRITICAL)

_admin: list[KafkaAdminClient] = []


def admin() -> KafkaAdminClient:
    if not _admin:
        _admin.append(KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="control-admin-kp"))
    return _admin[0]


def leaders(topic: str) -> dict[int, int]:
    """Partition -> leader, from a fresh Metadata request."""
    found = next((t for t in admin().describe_topics([topic]) if t.get("name") == topic), None)
    if found is None or found.get("error_code", 0) != 0:
        return {}
    return {p["partition_index"]: p["leader_id"] for p in found["partitions"] if p.get("leader_id", -1) >= 0}


def create_topic(name: str, partitions: int, replication: int) -> None:
    admin().create_topics({name: {"num_partitions": partitions, "replication_factor": replication}}, timeout_ms=10_000)
    wait_until(f"topic {name} in metadata", WAIT_S, lambda: len(leaders(name)) == partitions, every=0.1)


def producer(client_id: str, **extra: Any) -> KafkaProducer:
    config: dict[str, Any] = {
        "bootstrap_servers": BOOTSTRAP,
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": True,
        "retries": 20,
        "retry_backoff_ms": 50,
        "linger_ms": 5,
        "request_timeout_ms": 10_000,
        "max_block_ms": int(WAIT_S * 1000),
        "allow_auto_create_topics": False,
    }
    config.update(extra)
    return KafkaProducer(**config)


def consumer(client_id: str, **extra: Any) -> KafkaConsumer:
    config: dict[str, Any] = {
        "bootstrap_servers": BOOTSTRAP,
        "client_id": client_id,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "fetch_max_wait_ms": 100,
        "metadata_max_age_ms": 1000,
        "request_timeout_ms": 10_000,
        "allow_auto_create_topics": False,
    }
    config.update(extra)
    return KafkaConsumer(**config)


def send_all(p: KafkaProducer, topic: str, values: list[bytes], **kwargs: Any) -> None:
    futures = [p.send(topic, value=value, **kwargs) for value in values]
    p.flush(timeout=WAIT_S)
    failed = []
    for value, future in zip(values, futures, strict=True):
        try:
            future.get(timeout=WAIT_S)
        except Exception as error:  # noqa: BLE001 - every failed delivery is reported
            failed.append(f"{value!r}: {type(error).__name__}: {error}")
    expect(not failed, f"{len(failed)} deliveries failed, e.g. {failed[:3]}")


def read_all(c: KafkaConsumer, expected: int, what: str) -> list[Any]:
    records: list[Any] = []
    deadline = Deadline(WAIT_S)
    while len(records) < expected and not deadline.expired():
        for batch in c.poll(timeout_ms=200).values():
            records.extend(batch)
    expect(len(records) >= expected, f"{what}: read {len(records)} records of {expected} in {WAIT_S:.0f}s")
    return records


def check_exactly_once(records: list[Any], sent: list[bytes], what: str) -> None:
    counts = Counter(r.value for r in records)
    missing = [v for v in sent if counts[v] == 0]
    twice = [v for v, n in counts.items() if n > 1]
    unknown = [v for v in counts if v not in set(sent)]
    expect(not missing, f"{what}: {len(missing)} records never read, e.g. {missing[:3]}")
    expect(not twice, f"{what}: {len(twice)} records read more than once, e.g. {twice[:3]}")
    expect(not unknown, f"{what}: records nobody sent: {unknown[:3]}")


def assign_from_start(c: KafkaConsumer, topic: str, partitions: int) -> None:
    c.assign([TopicPartition(topic, p) for p in range(partitions)])
    c.seek_to_beginning()


def logged(since: int, client_id: str, api: str) -> list[dict[str, Any]]:
    return [e for e in control.requests(since) if e["api"] == api and e["client_id"] == client_id]


# ---------------------------------------------------------------------------------------------


def retriable_produce_errors() -> None:
    topic, cid = unique("t", "kpretry"), unique("c", "kpretry")
    create_topic(topic, 1, 3)
    p = producer(cid)
    send_all(p, topic, [b"warm-up"])
    codes = ["NOT_LEADER_OR_FOLLOWER", "REQUEST_TIMED_OUT", "NOT_ENOUGH_REPLICAS"]
    since = control.next_seq()
    control.push_errors("Produce", codes)
    sent = [f"retry-{i}".encode() for i in range(20)]
    send_all(p, topic, sent)
    p.close(timeout=5)
    c = consumer(cid + "-reader")
    assign_from_start(c, topic, 1)
    records = read_all(c, len(sent) + 1, "retriable produce errors")
    c.close()
    check_exactly_once(records, [b"warm-up", *sent], "retriable produce errors")
    produces = logged(since, cid, "Produce")
    seen = [name for e in produces for name in e["error_names"]]
    expect(seen[: len(codes)] == codes, f"the request log's Produce errors are {seen}, expected {codes} first")


def partition_fetch_errors() -> None:
    topic, cid = unique("t", "kpfetch"), unique("c", "kpfetch")
    create_topic(topic, 2, 1)
    p = producer(cid)
    sent = [f"fetch-{i}".encode() for i in range(100)]
    for partition in (0, 1):
        send_all(p, topic, sent[partition::2], partition=partition)
    p.close(timeout=5)
    since = control.next_seq()
    control.push_partition_errors(topic, 0, ["NOT_LEADER_OR_FOLLOWER", "UNKNOWN_LEADER_EPOCH"], api="Fetch")
    c = consumer(cid + "-reader")
    assign_from_start(c, topic, 2)
    records = read_all(c, len(sent), "partition fetch errors")
    c.close()
    check_exactly_once(records, sent, "partition fetch errors")
    errored = [e for e in logged(since, cid + "-reader", "Fetch") if e["error_codes"]]
    expect(len(errored) >= 2, f"expected 2 Fetch answers with a partition error, got {errored}")


def leader_moves() -> None:
    topic, cid = unique("t", "kpmoves"), unique("c", "kpmoves")
    partitions = 3
    create_topic(topic, partitions, 3)
    p = producer(cid)
    c = consumer(cid + "-reader")
    assign_from_start(c, topic, partitions)
    since = control.next_seq()
    sent: list[bytes] = []
    records: list[Any] = []
    for round_ in range(4):
        batch = [f"r{round_}-{i}".encode() for i in range(150)]
        sent.extend(batch)
        futures = [p.send(topic, value=value, key=str(i).encode()) for i, value in enumerate(batch)]
        for partition, node in leaders(topic).items():
            control.move_leader(topic, partition, node % 3 + 1)
        p.flush(timeout=WAIT_S)
        for value, future in zip(batch, futures, strict=True):
            try:
                future.get(timeout=WAIT_S)
            except Exception as error:  # noqa: BLE001
                raise ScenarioFailed(f"round {round_}: {value!r} not delivered: {error}") from error
        for got in c.poll(timeout_ms=200).values():
            records.extend(got)
    p.close(timeout=5)
    records.extend(read_all(c, len(sent) - len(records), "leader moves"))
    c.close()
    check_exactly_once(records, sent, "leader moves")
    refused = [e for e in logged(since, cid, "Produce") if "NOT_LEADER_OR_FOLLOWER" in e["error_names"]]
    print(f"  leader_moves: {len(refused)} Produce answered NOT_LEADER_OR_FOLLOWER, then followed", flush=True)


def version_cap(release: str, inferred: tuple[int, int], produce_max: int, fetch_max: int) -> None:
    name = release.replace(".", "")
    topic, cid = unique("t", f"kpcap{name}"), unique("c", f"kpcap{name}")
    create_topic(topic, 2, 1)
    control.cap_versions(release)
    since = control.next_seq()
    # api_version=None (the default): kafka-python asks ApiVersions and infers the release.
    p = producer(cid, api_version=None)
    detected = tuple(p.config["api_version"])[:2]
    expect(detected == inferred, f"the producer detected Kafka {detected} under the {release} cap, expected {inferred}")
    sent = [f"capped-{i}".encode() for i in range(50)]
    send_all(p, topic, sent)
    p.close(timeout=5)
    c = consumer(cid + "-reader", api_version=None)
    detected = tuple(c.config["api_version"])[:2]
    expect(detected == inferred, f"the consumer detected Kafka {detected} under the {release} cap, expected {inferred}")
    assign_from_start(c, topic, 2)
    records = read_all(c, len(sent), f"version cap {release}")
    c.close()
    check_exactly_once(records, sent, f"version cap {release}")
    mine = [e for e in control.requests(since) if e["client_id"].startswith(cid)]
    refused = [e for e in mine if e["outcome"] == "version above cap"]
    expect(not refused, f"requests above the cap: {refused[:3]}")
    produce = [e["version"] for e in mine if e["api"] == "Produce"]
    fetch = [e["version"] for e in mine if e["api"] == "Fetch"]
    expect(produce and max(produce) <= produce_max, f"Produce versions {sorted(set(produce))}, {release} has {produce_max}")
    expect(fetch and max(fetch) <= fetch_max, f"Fetch versions {sorted(set(fetch))}, {release} has {fetch_max}")


def knows_topic(c: KafkaConsumer, topic: str, partitions: int) -> None:
    """Waits until the consumer's metadata has `topic`. kafka-python 3.0.12 loses a rejoin when
    metadata naming the topic arrives after its first JoinGroup (so the rejoin is for a metadata
    change) and poll() times out while the SyncGroup is in flight: as leader its need_rejoin()
    is already false, the join task is never awaited again, the assignment never applied and no
    heartbeat ever sent. Joining with the topic known avoids that rejoin."""
    wanted = set(range(partitions))
    wait_until(f"the consumer to know {topic}", WAIT_S, lambda: c.partitions_for_topic(topic) == wanted, every=0.1)


def coordinator_move() -> None:
    topic, cid, group = unique("t", "kpcoord"), unique("c", "kpcoord"), unique("g", "kpcoord")
    create_topic(topic, 1, 1)
    p = producer(cid)
    c = consumer(cid + "-member", group_id=group, session_timeout_ms=6000, heartbeat_interval_ms=300)
    knows_topic(c, topic, 1)
    c.subscribe([topic])
    sent: list[bytes] = []

    def produce_and_commit(name: str) -> int:
        batch = [f"{name}-{i}".encode() for i in range(50)]
        sent.extend(batch)
        send_all(p, topic, batch)
        read = 0
        deadline = Deadline(WAIT_S)
        while read < len(batch) and not deadline.expired():
            got = sum(len(records) for records in c.poll(timeout_ms=200).values())
            if got:
                read += got
                c.commit()
        expect(read == len(batch), f"{name}: read {read} of {len(batch)}")
        return c.committed(TopicPartition(topic, 0))

    expect(produce_and_commit("before") == 50, "the first commit is not at 50")
    # The coordinator is where the member's commits were answered cleanly.
    commits = [e for e in logged(0, cid + "-member", "OffsetCommit") if not e["error_codes"]]
    old = commits[-1]["node"]
    new = old % 3 + 1
    since = control.next_seq()
    control.move_coordinator(group, new)
    committed = produce_and_commit("after")
    expect(committed == 100, f"the commit after the move is at {committed}, not 100")
    p.close(timeout=5)
    c.close()
    member = [e for e in control.requests(since) if e["client_id"] == cid + "-member"]
    expect(
        any(e["api"] == "OffsetCommit" and e["node"] == new and not e["error_codes"] for e in member),
        f"no clean OffsetCommit reached the new coordinator {new}: {[(e['api'], e['node'], e['error_names']) for e in member]}",
    )


class Listener(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.events.append(f"revoke {sorted(tp.partition for tp in revoked)}")

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.events.append(f"assign {sorted(tp.partition for tp in assigned)}")


def forced_rebalance() -> None:
    topic, cid, group = unique("t", "kprebal"), unique("c", "kprebal"), unique("g", "kprebal")
    create_topic(topic, 2, 1)
    listener = Listener()
    c = consumer(cid, group_id=group, session_timeout_ms=6000, heartbeat_interval_ms=300, max_poll_interval_ms=10_000)
    knows_topic(c, topic, 2)
    c.subscribe([topic], listener=listener)

    def poll_until(what: str, probe: Any) -> None:
        deadline = Deadline(WAIT_S)
        while not probe():
            if deadline.expired():
                raise ScenarioFailed(f"timed out waiting for {what}; callbacks so far: {listener.events}")
            c.poll(timeout_ms=100)

    poll_until("the first assignment", lambda: any(e == "assign [0, 1]" for e in listener.events))
    before = len(listener.events)
    control.force_rebalance(group)
    poll_until(
        "revoke and assign after the forced rebalance",
        lambda: any(e.startswith("revoke") for e in listener.events[before:])
        and "assign [0, 1]" in listener.events[before:],
    )
    c.close()


SCENARIOS = [
    ("retriable_produce_errors", retriable_produce_errors),
    ("partition_fetch_errors", partition_fetch_errors),
    ("leader_moves", leader_moves),
    # Kafka 2.8 and 3.0 both answer Produce up to v9 and Fetch up to v12; kafka-python tells
    # them apart by ListOffsets v7 (3.0).
    ("version_cap_2_8", lambda: version_cap("2.8", (2, 8), 9, 12)),
    ("version_cap_3_0", lambda: version_cap("3.0", (3, 0), 9, 12)),
    ("coordinator_move", coordinator_move),
    ("forced_rebalance", forced_rebalance),
]

if __name__ == "__main__":
    print(f"== {CLIENT}", flush=True)
    run_scenarios(CLIENT, control, SCENARIOS, args.scenario)
