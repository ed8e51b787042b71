#!/usr/bin/env python3
"""librdkafka (through confluent-kafka) experiencing every operation of the test control plane,
driven over HTTP, and behaving as it does against Apache Kafka.

    control_confluent.py --bootstrap HOST:PORT[,...] --control http://HOST:PORT [--scenario NAME ...]

The broker must have 3 nodes (tests/control_clients.rs starts one). Each scenario uses topics
and groups of its own, and the control plane is reset before and after it; one line
`PASS: <scenario>` or `FAIL: <scenario>: <reason>` each, exit 1 when any failed.

- retriable_produce_errors: errors pushed on Produce are retried by the idempotent producer;
  each record is stored once; the request log shows the errors.
- partition_fetch_errors: a Fetch error on one partition only; the consumer reads everything.
- delayed_produce: an interception delaying Produce shows as delivery latency.
- dropped_produce: a Produce never answered is timed out and retried; stored once.
- closed_metadata: the connection closed on a Metadata request; the client reconnects.
- round_trip: a node's round-trip delay slows the partitions it leads, not the others.
- node_down: a node of a replication-factor-3 topic crashes and comes back; nothing is lost.
- leader_moves: partition leaders move while records are produced and consumed.
- coordinator_move: the group's coordinator moves; the group keeps committing.
- forced_rebalance: the consumer's revoke and assign callbacks fire again.
- version_cap: with Kafka 2.8's versions the client negotiates Produce <= 9 and Fetch <= 12.
- version_cap_mid_stream: the cap lands on running clients (a rolling downgrade): their
  connections are closed on the next request above it, they renegotiate; nothing lost.
- roll_and_clean: a compacted topic rolled and cleaned; a reader sees the latest value per key.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from compat_common import Deadline
from control_common import ControlPlane, ScenarioFailed, expect, parse_args, run_scenarios, unique, wait_until

CLIENT = f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]}), control plane"

# Each wait is bounded well under the whole run's budget (~60 s for every scenario).
WAIT_S = 20.0

args = parse_args(__doc__ or "")
control = ControlPlane(args.control)


_admin: list[AdminClient] = []


def admin() -> AdminClient:
    """One admin client for the run: a handle dropped while its futures are pending fails them
    with _DESTROY."""
    if not _admin:
        _admin.append(AdminClient({"bootstrap.servers": args.bootstrap, "client.id": "control-admin"}))
    return _admin[0]


def create_topic(name: str, partitions: int, replication: int, configs: dict[str, str] | None = None) -> None:
    futures = admin().create_topics(
        [NewTopic(name, partitions, replication, config=configs or {})], operation_timeout=10, request_timeout=10
    )
    futures[name].result(timeout=WAIT_S)
    # Metadata may lag CreateTopics' answer a moment on any broker; wait until every partition
    # has a leader so the first produce is not spent on discovery.
    wait_until(f"topic {name} in metadata", WAIT_S, lambda: len(leaders(name)) == partitions, every=0.1)


def leaders(topic: str) -> dict[int, int]:
    """Partition -> leader node, from Metadata."""
    found = admin().list_topics(topic, timeout=10).topics.get(topic)
    if found is None or found.error is not None:
        return {}
    return {p.id: p.leader for p in found.partitions.values() if p.leader >= 0}


def producer(client_id: str, **extra: Any) -> Producer:
    config: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 30_000,
        "retry.backoff.ms": 50,
        "allow.auto.create.topics": False,
    }
    config.update(extra)
    return Producer(config)


def consumer(client_id: str, group: str | None = None, **extra: Any) -> Consumer:
    config: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap,
        "client.id": client_id,
        "group.id": group or unique("unused", client_id),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        "allow.auto.create.topics": False,
        "topic.metadata.refresh.interval.ms": 1000,
    }
    config.update(extra)
    return Consumer(config)


class Deliveries:
    """Delivery reports: successes by value, failures with their error."""

    def __init__(self) -> None:
        self.ok: dict[bytes, tuple[int, int]] = {}
        self.failed: list[str] = []
        self.latency: dict[bytes, float] = {}
        self.sent_at: dict[bytes, float] = {}

    def send(self, p: Producer, topic: str, value: bytes, partition: int | None = None, key: bytes | None = None) -> None:
        self.sent_at[value] = time.monotonic()
        kwargs: dict[str, Any] = {"value": value, "key": key, "on_delivery": self.report}
        if partition is not None:
            kwargs["partition"] = partition
        p.produce(topic, **kwargs)
        p.poll(0)

    def report(self, error: KafkaError | None, message: Any) -> None:
        value = message.value()
        if error is not None:
            self.failed.append(f"{value!r}: {error}")
            return
        self.ok[value] = (message.partition(), message.offset())
        self.latency[value] = time.monotonic() - self.sent_at.get(value, time.monotonic())

    def flush(self, p: Producer, expected: int) -> None:
        remaining = p.flush(WAIT_S)
        expect(not self.failed, f"delivery failed: {self.failed[:5]}")
        expect(remaining == 0, f"{remaining} records still undelivered after {WAIT_S:.0f}s")
        expect(len(self.ok) == expected, f"{len(self.ok)} records delivered, expected {expected}")


def read_all(c: Consumer, expected: int, what: str, seconds: float = WAIT_S) -> list[Any]:
    """Reads until `expected` records came back; an error surfaced to the application fails,
    as the faults here are ones a client against Kafka handles silently."""
    records: list[Any] = []
    deadline = Deadline(seconds)
    while len(records) < expected and not deadline.expired():
        for message in c.consume(num_messages=500, timeout=0.2):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise ScenarioFailed(f"{what}: the consumer was handed an error: {error}")
            records.append(message)
    expect(len(records) >= expected, f"{what}: read {len(records)} records of {expected} in {seconds:.0f}s")
    return records


def check_exactly_once(records: list[Any], sent: list[bytes], what: str) -> None:
    """Every value sent read once and nothing else; offsets per partition strictly increase."""
    counts = Counter(m.value() for m in records)
    missing = [v for v in sent if counts[v] == 0]
    twice = [v for v, n in counts.items() if n > 1]
    unknown = [v for v in counts if v not in set(sent)]
    expect(not missing, f"{what}: {len(missing)} records never read, e.g. {missing[:3]}")
    expect(not twice, f"{what}: {len(twice)} records read more than once, e.g. {twice[:3]}")
    expect(not unknown, f"{what}: records nobody sent: {unknown[:3]}")
    last: dict[int, int] = {}
    for m in records:
        expect(
            m.offset() > last.get(m.partition(), -1),
            f"{what}: partition {m.partition()} offset {m.offset()} after {last.get(m.partition())}",
        )
        last[m.partition()] = m.offset()


def assign_from_start(c: Consumer, topic: str, partitions: int) -> None:
    c.assign([TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in range(partitions)])


def produce_logged(since: int, client_id: str, api: str = "Produce") -> list[dict[str, Any]]:
    return [e for e in control.requests(since) if e["api"] == api and e["client_id"] == client_id]


def experienced(since: int, prefix: str) -> str:
    """What the clients named `prefix…` were answered with since `since`: error names by API,
    and connections closed or cut off; for the report, the checks being on the outcome."""
    seen: Counter[str] = Counter()
    for e in control.requests(since):
        if not e["client_id"].startswith(prefix):
            continue
        for name in e["error_names"]:
            seen[f"{e['api']} {name}"] += 1
        if e["outcome"] not in ("handled", "pending: handled"):
            seen[f"{e['api']} {e['outcome']}"] += 1
    return ", ".join(f"{what} x{n}" for what, n in sorted(seen.items())) or "nothing"


# ---------------------------------------------------------------------------------------------


def retriable_produce_errors() -> None:
    topic, cid = unique("t", "retry"), unique("c", "retry")
    create_topic(topic, 1, 3)
    codes = ["NOT_LEADER_OR_FOLLOWER", "REQUEST_TIMED_OUT", "NOT_ENOUGH_REPLICAS", "LEADER_NOT_AVAILABLE"]
    since = control.next_seq()
    control.push_errors("Produce", codes)
    p = producer(cid)
    d = Deliveries()
    sent = [f"retry-{i}".encode() for i in range(20)]
    for value in sent:
        d.send(p, topic, value)
    d.flush(p, len(sent))
    c = consumer(cid + "-reader")
    assign_from_start(c, topic, 1)
    records = read_all(c, len(sent), "retriable produce errors")
    c.close()
    check_exactly_once(records, sent, "retriable produce errors")
    logged = produce_logged(since, cid)
    seen = [name for e in logged for name in e["error_names"]]
    expect(seen[: len(codes)] == codes, f"the request log's Produce errors are {seen}, expected {codes} first")
    expect(
        any(e["error_codes"] == [] and e["outcome"] == "handled" for e in logged),
        f"no Produce was handled after the errors: {logged}",
    )


def partition_fetch_errors() -> None:
    topic, cid = unique("t", "fetcherr"), unique("c", "fetcherr")
    create_topic(topic, 2, 1)
    p = producer(cid)
    d = Deliveries()
    sent = [f"fetch-{i}".encode() for i in range(200)]
    for i, value in enumerate(sent):
        d.send(p, topic, value, partition=i % 2)
    d.flush(p, len(sent))
    since = control.next_seq()
    control.push_partition_errors(
        topic, 0, ["NOT_LEADER_OR_FOLLOWER", "UNKNOWN_LEADER_EPOCH", "NOT_LEADER_OR_FOLLOWER"], api="Fetch"
    )
    c = consumer(cid + "-reader")
    assign_from_start(c, topic, 2)
    records = read_all(c, len(sent), "partition fetch errors")
    c.close()
    check_exactly_once(records, sent, "partition fetch errors")
    fetches = produce_logged(since, cid + "-reader", api="Fetch")
    errored = [e for e in fetches if e["error_codes"]]
    expect(len(errored) >= 3, f"expected 3 Fetch answers with a partition error, log: {fetches}")


def delayed_produce() -> None:
    topic, cid = unique("t", "delay"), unique("c", "delay")
    create_topic(topic, 1, 1)
    p = producer(cid, **{"linger.ms": 0})
    d = Deliveries()
    d.send(p, topic, b"warm-up")
    d.flush(p, 1)
    delay_ms = 600
    id_ = control.intercept(api="Produce", action="delay", delay_ms=delay_ms)
    d.send(p, topic, b"delayed")
    d.flush(p, 2)
    latency = d.latency[b"delayed"]
    expect(latency * 1000 >= delay_ms, f"delivered after {latency * 1000:.0f} ms, the delay was {delay_ms} ms")
    observed = control.observed(id_)
    expect(len(observed) == 1 and observed[0]["client_id"] == cid, f"the interception observed {observed}")
    control.remove_interception(id_)
    d.send(p, topic, b"prompt")
    d.flush(p, 3)
    expect(
        d.latency[b"prompt"] * 1000 < delay_ms,
        f"still {d.latency[b'prompt'] * 1000:.0f} ms after the interception was removed",
    )


def dropped_produce() -> None:
    topic, cid = unique("t", "drop"), unique("c", "drop")
    create_topic(topic, 1, 1)
    # librdkafka times the request out after request.timeout.ms, disconnects (the connection's
    # state is unknown), and retries the batch with the same sequence numbers.
    p = producer(cid, **{"linger.ms": 0, "request.timeout.ms": 1500, "socket.timeout.ms": 1500})
    d = Deliveries()
    d.send(p, topic, b"warm-up")
    d.flush(p, 1)
    since = control.next_seq()
    id_ = control.intercept(api="Produce", action="drop", times=1)
    d.send(p, topic, b"dropped once")
    d.flush(p, 2)
    latency = d.latency[b"dropped once"]
    expect(latency >= 1.5, f"delivered after {latency:.2f}s, before the dropped request timed out (1.5s)")
    c = consumer(cid + "-reader")
    assign_from_start(c, topic, 1)
    records = read_all(c, 2, "dropped produce")
    c.close()
    check_exactly_once(records, [b"warm-up", b"dropped once"], "dropped produce")
    logged = produce_logged(since, cid)
    outcomes = [e["outcome"] for e in logged]
    expect(
        len(logged) >= 2 and "drop" in outcomes[0] and outcomes[-1] == "handled",
        f"the request log's Produce outcomes are {outcomes}",
    )
    control.remove_interception(id_)  # used up already; 404 is fine


def closed_metadata() -> None:
    topic, cid = unique("t", "close"), unique("c", "close")
    create_topic(topic, 1, 1)
    since = control.next_seq()
    control.intercept(api="Metadata", action="close", times=1)
    p = producer(cid)
    d = Deliveries()
    d.send(p, topic, b"after a reconnect")
    d.flush(p, 1)
    logged = produce_logged(since, cid, api="Metadata")
    expect(
        logged and "close" in logged[0]["outcome"],
        f"the first Metadata of the producer was not closed: {[e['outcome'] for e in logged]}",
    )
    expect(any(e["outcome"] == "handled" for e in logged[1:]), "no Metadata was answered after the close")


def round_trip() -> None:
    topic, cid = unique("t", "rtt"), unique("c", "rtt")
    create_topic(topic, 3, 1)
    led = leaders(topic)
    slow_partition = 0
    slow_node = led[slow_partition]
    fast = [partition for partition, node in led.items() if node != slow_node]
    expect(bool(fast), f"every partition is led by node {slow_node}: {led}")
    p = producer(cid, **{"linger.ms": 0})
    d = Deliveries()
    for partition in led:
        d.send(p, topic, f"warm-up-{partition}".encode(), partition=partition)
    d.flush(p, len(led))
    delay_ms = 700
    control.round_trip(slow_node, delay_ms)
    d.send(p, topic, b"slow", partition=slow_partition)
    d.flush(p, len(led) + 1)
    d.send(p, topic, b"fast", partition=fast[0])
    d.flush(p, len(led) + 2)
    expect(d.latency[b"slow"] * 1000 >= delay_ms, f"node {slow_node}: {d.latency[b'slow'] * 1000:.0f} ms")
    expect(
        d.latency[b"fast"] * 1000 < delay_ms,
        f"node {led[fast[0]]} has no delay, yet took {d.latency[b'fast'] * 1000:.0f} ms",
    )
    control.round_trip(slow_node, 0)


def node_down() -> None:
    topic, cid = unique("t", "down"), unique("c", "down")
    create_topic(topic, 3, 3)
    victim = leaders(topic)[0]
    p = producer(cid)
    c = consumer(cid + "-reader")
    assign_from_start(c, topic, 3)
    d = Deliveries()
    sent: list[bytes] = []
    records: list[Any] = []

    def phase(name: str, count: int) -> None:
        for i in range(count):
            value = f"{name}-{i}".encode()
            sent.append(value)
            d.send(p, topic, value, key=str(i).encode())
        d.flush(p, len(sent))
        records.extend(read_all(c, len(sent) - len(records), f"node down: {name}"))

    phase("before", 300)
    since = control.next_seq()
    control.node_down(victim)
    try:
        now_led = leaders(topic)
        expect(victim not in now_led.values(), f"node {victim} is down yet leads {now_led}")
        phase("while-down", 300)
    finally:
        control.node_up(victim)
    phase("after", 300)
    c.close()
    check_exactly_once(records, sent, "node down")
    print(f"  node_down: node {victim} went down; error answers the clients met: {experienced(since, cid)}", flush=True)


def leader_moves() -> None:
    topic, cid = unique("t", "moves"), unique("c", "moves")
    partitions = 3
    create_topic(topic, partitions, 3)
    p = producer(cid)
    c = consumer(cid + "-reader")
    assign_from_start(c, topic, partitions)
    since = control.next_seq()
    d = Deliveries()
    sent: list[bytes] = []
    records: list[Any] = []
    moves = 0
    for round_ in range(4):
        for i in range(250):
            value = f"r{round_}-{i}".encode()
            sent.append(value)
            d.send(p, topic, value, key=str(i).encode())
        # Leaders move while that batch is in flight and the consumer is mid-read.
        for partition, node in leaders(topic).items():
            control.move_leader(topic, partition, node % 3 + 1)
            moves += 1
        for message in c.consume(num_messages=500, timeout=0.2):
            if message.error() is None:
                records.append(message)
    d.flush(p, len(sent))
    records.extend(read_all(c, len(sent) - len(records), "leader moves"))
    c.close()
    check_exactly_once(records, sent, "leader moves")
    expect(moves >= 4 * partitions, f"only {moves} leader moves were made")
    print(f"  leader_moves: {moves} moves; error answers the clients met: {experienced(since, cid)}", flush=True)


def group_consumer(cid: str, group: str) -> Consumer:
    return consumer(cid, group, **{"session.timeout.ms": 6000, "heartbeat.interval.ms": 300, "max.poll.interval.ms": 10_000})


def coordinator_move() -> None:
    topic, cid, group = unique("t", "coord"), unique("c", "coord"), unique("g", "coord")
    create_topic(topic, 1, 1)
    p = producer(cid)
    d = Deliveries()
    c = group_consumer(cid + "-member", group)
    c.subscribe([topic])
    sent: list[bytes] = []

    def produce_and_commit(name: str, count: int) -> int:
        for i in range(count):
            value = f"{name}-{i}".encode()
            sent.append(value)
            d.send(p, topic, value)
        d.flush(p, len(sent))
        deadline = Deadline(WAIT_S)
        read = 0
        while read < count and not deadline.expired():
            batch = [m for m in c.consume(num_messages=500, timeout=0.2) if m.error() is None]
            if batch:
                read += len(batch)
                c.commit(asynchronous=False)
        expect(read == count, f"{name}: read {read} of {count}")
        committed = c.committed([TopicPartition(topic, 0)], timeout=10)[0]
        expect(committed.error is None, f"{name}: committed() failed: {committed.error}")
        return committed.offset

    expect(produce_and_commit("before", 100) == 100, "the first commit is not at 100")
    described = admin().describe_consumer_groups([group])[group].result(timeout=10)
    old = described.coordinator.id
    new = old % 3 + 1
    since = control.next_seq()
    control.move_coordinator(group, new)
    expect(produce_and_commit("after", 100) == 200, "the commit after the move is not at 200")
    c.close()
    member = [e for e in control.requests(since) if e["client_id"] == cid + "-member"]
    refused = [e for e in member if "NOT_COORDINATOR" in e["error_names"]]
    expect(
        bool(refused) and all(e["node"] == old for e in refused),
        f"the member never heard NOT_COORDINATOR from the old coordinator {old}: {refused}",
    )
    commits = [e for e in member if e["api"] == "OffsetCommit"]
    expect(
        any(e["node"] == new and not e["error_codes"] for e in commits),
        f"no clean OffsetCommit reached the new coordinator {new}: {commits}",
    )


def forced_rebalance() -> None:
    topic, cid, group = unique("t", "rebal"), unique("c", "rebal"), unique("g", "rebal")
    create_topic(topic, 2, 1)
    events: list[str] = []
    c = group_consumer(cid, group)
    c.subscribe(
        [topic],
        on_assign=lambda _c, parts: events.append(f"assign {sorted(tp.partition for tp in parts)}"),
        on_revoke=lambda _c, parts: events.append(f"revoke {sorted(tp.partition for tp in parts)}"),
    )

    def poll_until(what: str, probe: Any) -> None:
        deadline = Deadline(WAIT_S)
        while not probe():
            if deadline.expired():
                raise ScenarioFailed(f"timed out waiting for {what}; callbacks so far: {events}")
            c.poll(0.1)

    poll_until("the first assignment", lambda: any(e.startswith("assign") for e in events))
    before = len(events)
    control.force_rebalance(group)
    poll_until(
        "revoke and assign after the forced rebalance",
        lambda: "assign [0, 1]" in events[before:],
    )
    c.close()
    # An eager member gives up everything before rejoining, then gets it all back.
    after = events[before:]
    expect(
        after[:2] == ["revoke [0, 1]", "assign [0, 1]"],
        f"callbacks after the forced rebalance: {after} (all of them: {events})",
    )


def version_cap() -> None:
    topic, cid = unique("t", "cap"), unique("c", "cap")
    create_topic(topic, 2, 1)
    control.cap_versions("2.8")
    since = control.next_seq()
    p = producer(cid)
    d = Deliveries()
    sent = [f"capped-{i}".encode() for i in range(100)]
    for value in sent:
        d.send(p, topic, value)
    d.flush(p, len(sent))
    c = consumer(cid + "-reader")
    assign_from_start(c, topic, 2)
    records = read_all(c, len(sent), "version cap")
    c.close()
    check_exactly_once(records, sent, "version cap")
    # Created under the cap, the clients never send a version above it.
    refused = [e for e in control.requests(since) if e["client_id"].startswith(cid) and e["outcome"] == "version above cap"]
    expect(not refused, f"requests above the cap: {refused[:3]}")
    check_capped(since, "2.8", 9, 12)


def check_capped(since: int, release: str, produce_max: int, fetch_max: int) -> None:
    """Every Produce and Fetch handled since `since` (any client's) is within the release's
    versions."""
    log = control.requests(since)
    produce = [e["version"] for e in log if e["api"] == "Produce" and e["outcome"] == "handled"]
    fetch = [e["version"] for e in log if e["api"] == "Fetch" and e["outcome"] == "handled"]
    expect(bool(produce), "no Produce was handled under the cap")
    expect(bool(fetch), "no Fetch was handled under the cap")
    expect(max(produce) <= produce_max, f"Produce versions {sorted(set(produce))}, Kafka {release} answers up to {produce_max}")
    expect(max(fetch) <= fetch_max, f"Fetch versions {sorted(set(fetch))}, Kafka {release} answers up to {fetch_max}")


def version_cap_mid_stream() -> None:
    """A rolling downgrade: connections negotiated with the newest versions meet the cap. Kafka
    closes a connection whose request has a version it does not know; librdkafka reconnects,
    asks ApiVersions again and resends what was in flight, each record stored once."""
    topic, cid = unique("t", "capmid"), unique("c", "capmid")
    create_topic(topic, 2, 1)
    p = producer(cid)
    c = consumer(cid + "-reader")
    assign_from_start(c, topic, 2)
    d = Deliveries()
    sent: list[bytes] = []
    records: list[Any] = []

    def phase(name: str) -> None:
        for i in range(100):
            value = f"{name}-{i}".encode()
            sent.append(value)
            d.send(p, topic, value)
        d.flush(p, len(sent))
        records.extend(read_all(c, len(sent) - len(records), f"version cap mid-stream: {name}"))

    phase("uncapped")
    before = control.next_seq()
    control.cap_versions("2.8")
    # The consumer long-polls all along: a Fetch admitted before the cap is answered at its
    # version, so judge versions from the first request logged once the cap is in place.
    since = control.next_seq()
    phase("capped")
    check_capped(since, "2.8", 9, 12)
    closed = [e for e in control.requests(before) if e["client_id"].startswith(cid) and e["outcome"] == "version above cap"]
    expect(bool(closed), "no request of the running clients met the cap (were they already capped?)")
    lifted = control.next_seq()
    control.cap_versions(None)
    phase("lifted")
    c.close()
    check_exactly_once(records, sent, "version cap mid-stream")
    # Lifting the cap closes nothing: the clients keep the versions they negotiated under it.
    after = [e for e in control.requests(lifted) if e["client_id"].startswith(cid)]
    closed = [e for e in after if e["outcome"] == "version above cap"]
    expect(bool(after) and not closed, f"after lifting the cap, requests were refused: {closed[:3]}")


def roll_and_clean() -> None:
    topic, cid = unique("t", "compact"), unique("c", "compact")
    create_topic(topic, 1, 1, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"})
    p = producer(cid)
    d = Deliveries()
    latest: dict[bytes, bytes] = {}
    for version in range(5):
        for key in range(10):
            value = f"k{key}-v{version}".encode()
            latest[str(key).encode()] = value
            d.send(p, topic, value, key=str(key).encode())
    d.flush(p, 50)
    control.roll(topic, 0)
    report = control.clean(topic, 0)
    expect(report.get("cleaned"), f"the cleaner did nothing: {report}")
    c = consumer(cid + "-reader")
    assign_from_start(c, topic, 1)
    records = read_all(c, len(latest), "compaction")
    # Anything beyond the latest values would show up within a moment; give it one.
    records += [m for m in c.consume(num_messages=100, timeout=1.0) if m.error() is None]
    c.close()
    got = {m.key(): m.value() for m in records}
    expect(len(records) == len(latest), f"read {len(records)} records, expected one per key ({len(latest)})")
    expect(got == latest, f"read {got}, expected the latest per key {latest}")


SCENARIOS = [
    ("retriable_produce_errors", retriable_produce_errors),
    ("partition_fetch_errors", partition_fetch_errors),
    ("delayed_produce", delayed_produce),
    ("dropped_produce", dropped_produce),
    ("closed_metadata", closed_metadata),
    ("round_trip", round_trip),
    ("node_down", node_down),
    ("leader_moves", leader_moves),
    ("coordinator_move", coordinator_move),
    ("forced_rebalance", forced_rebalance),
    ("version_cap", version_cap),
    ("version_cap_mid_stream", version_cap_mid_stream),
    ("roll_and_clean", roll_and_clean),
]

if __name__ == "__main__":
    print(f"== {CLIENT}", flush=True)
    run_scenarios(CLIENT, control, SCENARIOS, args.scenario)
