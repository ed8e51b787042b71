#!/usr/bin/env python3
"""librdkafka (through confluent-kafka) keeps producing and consuming while partition leaders
move under it, and nothing acknowledged is lost, duplicated or reordered.

    leader_moves.py --bootstrap HOST:PORT[,...] --topic T --partitions P --records N
                    [--seconds S] [--timeout S] [--client-log PATH]

The topic must already exist with P partitions, empty; the caller (tests/leader_moves.rs) creates
it and moves its leaders while this runs. An idempotent acks=all producer sends N keyed records
(each value carries its sequence number), paced over about S seconds so that many leader moves
fall inside the run, while a consumer thread reads every partition with assign() from offset 0
(no group, no commits). Once every record is delivered and read, the shared checks of
compat_common.py compare the three views: every acknowledged record read exactly once and
intact, per-partition order is send order, offsets contiguous from 0, delivery-report offsets
equal consumer offsets, ListOffsets latest equals what was delivered. Delivery errors, fatal
client errors and errors surfaced to the consumer fail the run.

What librdkafka went through is reported, not judged: from its debug log, the produce and
fetch errors per error code (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, ...), the leader
updates it applied, its KIP-320 offset validations (OffsetForLeaderEpoch) and any producer epoch
bump; from its statistics, the Produce, Fetch, Metadata and ListOffsets requests it sent.
--client-log keeps the whole debug log of both handles for a post-mortem.

Two lines on stdout, flushed at once, tell the caller when records are in flight:
`leader_moves: producing` before the first record is handed to the producer and
`leader_moves: produced` once the last delivery report has come back.

Exits 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import confluent_kafka
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from compat_common import (
    Checks,
    ConsumedRecord,
    Deadline,
    Delivery,
    Peer,
    SentRecord,
    check_deliveries,
    check_roundtrip,
    check_watermarks,
    first_timestamp_for_run,
    make_records,
    run_main,
)

CLIENT = f"confluent-kafka {confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]}), leader moves"

TIMESTAMP_TYPES = {
    confluent_kafka.TIMESTAMP_CREATE_TIME: "create",
    confluent_kafka.TIMESTAMP_LOG_APPEND_TIME: "log_append",
    confluent_kafka.TIMESTAMP_NOT_AVAILABLE: "unknown",
}

# The stdout lines a caller waits for (see the module docstring).
MARK_PRODUCING = "leader_moves: producing"
MARK_PRODUCED = "leader_moves: produced"

# What librdkafka's debug log says about the moves (contexts "msg" for the producer, "fetch"
# for the consumer, "topic" for both); each match is one event, counted by kind and detail.
LOG_EVENTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    # A produce request's partition failed; the detail is the error text (rd_kafka_err2str).
    ("produce error", re.compile(r"MessageSet with \d+ message\(s\) .*? encountered error: (.+?) \(actions")),
    # A fetch's partition failed; the detail is the error name. _PARTITION_EOF is no error.
    ("fetch error", re.compile(r"Fetch failed at offset \d+ \(leader epoch -?\d+\): (?!_PARTITION_EOF)(\w+)")),
    # The client learnt a partition's new leader (from Metadata or a KIP-951 answer).
    ("leader update applied", re.compile(r"\[\d+\]: applying leader-id update")),
    # The idempotent producer got a producer id and epoch from InitProducerId.
    ("producer id acquired", re.compile(r"Acquired PID")),
    # The idempotent producer bumped its epoch itself and restarted sequences at 0 (librdkafka
    # does so after a batch failed for a sequence gap that an earlier failed request caused).
    ("producer epoch bumped", re.compile(r"bumped epoch to")),
    # KIP-320: after a leader change the consumer asks OffsetForLeaderEpoch whether its position
    # is still in the log; "truncat"/"failed" would mean the broker's answer made it doubt so.
    (
        "offset validation",
        re.compile(r"(querying broker for epoch validation|validation succeeded|validation failed|truncat\w*)"),
    ),
)

# librdkafka's error texts (as in "encountered error: ...") back to the error names.
ERROR_NAMES: dict[str, str] = {}
for _name in dir(KafkaError):
    _code = getattr(KafkaError, _name)
    if _name.isupper() and isinstance(_code, int):
        ERROR_NAMES.setdefault(KafkaError(_code).str(), KafkaError(_code).name())

# How many log lines of each kind to keep verbatim for the report.
SAMPLES_KEPT = 3


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--topic", required=True, help="an existing, empty topic")
    parser.add_argument("--partitions", type=int, required=True, help="partitions of the topic")
    parser.add_argument("--records", type=int, required=True, help="records to produce")
    parser.add_argument("--seconds", type=float, default=5.0, help="spread the records over about this long")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed for each wait")
    parser.add_argument(
        "--client-log", default=None, help="write every librdkafka log line and the last statistics here"
    )
    args = parser.parse_args(argv)
    if args.records < 1 or args.partitions < 1 or args.seconds < 0 or args.timeout <= 0:
        parser.error("--records and --partitions must be at least 1, --seconds >= 0, --timeout > 0")
    return args


def mark(line: str) -> None:
    print(line, flush=True)


class Sink:
    """Where --client-log sends every librdkafka log line of both handles (nowhere without it)."""

    def __init__(self, path: str | None) -> None:
        self.file = open(path, "w", encoding="utf-8") if path else None  # noqa: SIM115 - closed by close()
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def write(self, name: str, line: str) -> None:
        if self.file is not None:
            with self.lock:
                self.file.write(f"{time.monotonic() - self.started:8.3f} {name}: {line}\n")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class ClientLog(logging.Handler):
    """librdkafka's log lines for one handle: counts the LOG_EVENTS they show, keeps a few
    samples of each, and keeps every warning or worse (those are printed in the report)."""

    def __init__(self, name: str, sink: Sink) -> None:
        super().__init__(logging.DEBUG)
        self.name = name
        self.sink = sink
        self.events: Counter[str] = Counter()
        self.samples: dict[str, list[str]] = defaultdict(list)
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # logging.Handler.handle() calls this holding the handler's own lock.
        line = record.getMessage()
        self.sink.write(self.name, line)
        for kind, pattern in LOG_EVENTS:
            found = pattern.search(line)
            if found is None:
                continue
            if pattern.groups:
                event = f"{kind}: {ERROR_NAMES.get(found.group(1), found.group(1))}"
            else:
                event = kind
            self.events[event] += 1
            if len(self.samples[event]) < SAMPLES_KEPT:
                self.samples[event].append(line)
        if record.levelno >= logging.WARNING and len(self.warnings) < 50:
            self.warnings.append(line)

    def logger(self) -> logging.Logger:
        logger = logging.getLogger(f"librdkafka.{self.name}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(self)
        return logger


class ClientStats:
    """The last statistics JSON of one handle: counters since it started, per broker."""

    def __init__(self) -> None:
        self.last: dict[str, Any] = {}
        self.lock = threading.Lock()

    def on_stats(self, raw: str) -> None:
        stats = json.loads(raw)
        with self.lock:
            self.last = stats

    def requests(self, api: str) -> int:
        with self.lock:
            return sum(b.get("req", {}).get(api, 0) for b in self.last.get("brokers", {}).values())


class ClientErrors:
    """error_cb: every error the client reported outside a message, by name; fatal ones fail."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.fatal: list[str] = []
        self.samples: list[str] = []
        self.lock = threading.Lock()

    def on_error(self, error: KafkaError) -> None:
        with self.lock:
            self.counts[error.name()] += 1
            if len(self.samples) < 10:
                self.samples.append(str(error))
            if error.fatal():
                self.fatal.append(str(error))


def base_config(args: Any, log: ClientLog, stats: ClientStats, errors: ClientErrors, debug: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": args.bootstrap,
        "allow.auto.create.topics": False,
        "socket.timeout.ms": 30_000,
        "statistics.interval.ms": 500,
        "stats_cb": stats.on_stats,
        "error_cb": errors.on_error,
        "logger": log.logger(),
        "debug": debug,
    }


def to_consumed(message: Any) -> ConsumedRecord:
    timestamp_type, timestamp = message.timestamp()
    return ConsumedRecord(
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        tuple(message.headers() or ()),
        timestamp,
        TIMESTAMP_TYPES.get(timestamp_type, "unknown"),
    )


class Reader:
    """The consumer, on its own thread from the start, reading while records are produced.

    It reads until `finish(ends)` has named each partition's end offset (known once every
    delivery report is in) and it has read up to every one of them, or until the deadline."""

    def __init__(self, args: Any, log: ClientLog, stats: ClientStats, errors: ClientErrors) -> None:
        self.args = args
        self.consumer = Consumer(
            {
                **base_config(args, log, stats, errors, "fetch,topic,metadata"),
                "group.id": f"{args.topic}-reader",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "error",
                "check.crcs": True,
                "fetch.wait.max.ms": 100,
            }
        )
        self.consumed: list[ConsumedRecord] = []
        self.message_errors: list[str] = []
        self.read_up_to: dict[int, int] = dict.fromkeys(range(args.partitions), 0)
        self.ends: dict[int, int] | None = None
        self.failure: BaseException | None = None
        self.deadline = Deadline(args.timeout * 3)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="reader", daemon=True)

    def start(self) -> None:
        self.consumer.assign([TopicPartition(self.args.topic, p, 0) for p in range(self.args.partitions)])
        self.thread.start()

    def finish(self, ends: dict[int, int], timeout: float) -> None:
        """Names the end offsets to read up to and waits (bounded) for the thread to get there."""
        self.ends = ends
        self.deadline = Deadline(timeout)
        self.thread.join(timeout + 5.0)
        self.stop.set()
        self.thread.join(5.0)

    def done(self) -> bool:
        ends = self.ends
        return ends is not None and all(self.read_up_to[p] >= end for p, end in ends.items())

    def pending(self) -> dict[int, tuple[int, int]]:
        """Partition -> (read up to, end) for partitions not read to their end."""
        ends = self.ends or {}
        return {p: (self.read_up_to[p], end) for p, end in sorted(ends.items()) if self.read_up_to[p] < end}

    def _run(self) -> None:
        try:
            while not self.stop.is_set() and not self.done() and not self.deadline.expired():
                for message in self.consumer.consume(num_messages=1000, timeout=0.2):
                    error = message.error()
                    if error is not None:
                        self.message_errors.append(f"partition {message.partition()}: {error}")
                        continue
                    self.consumed.append(to_consumed(message))
                    partition = message.partition()
                    self.read_up_to[partition] = max(self.read_up_to[partition], message.offset() + 1)
        except BaseException as error:  # noqa: BLE001 - reported by main as a failed check
            self.failure = error


def produce(
    args: Any, producer: Producer, records: list[SentRecord], deadline: Deadline
) -> tuple[dict[int, Delivery], list[str], int]:
    """Sends `records` paced over about args.seconds, serving delivery reports all along, then
    flushes. Returns the deliveries, the delivery errors and how many records were left
    undelivered by the flush."""
    deliveries: dict[int, Delivery] = {}
    errors: list[str] = []

    def reporter(index: int):
        def on_delivery(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                errors.append(f"record {index}: {error.name()} ({error})")
                return
            if index in deliveries:
                errors.append(
                    f"record {index}: a second delivery report "
                    f"(partition {message.partition()} offset {message.offset()})"
                )
                return
            deliveries[index] = Delivery(message.partition(), message.offset(), message.timestamp()[1])

        return on_delivery

    started = time.monotonic()
    rate = len(records) / args.seconds if args.seconds > 0 else None
    for position, record in enumerate(records):
        if rate is not None and position % 50 == 0:
            due = started + position / rate
            while (wait := due - time.monotonic()) > 0:
                producer.poll(min(wait, 0.05))
        while True:
            try:
                producer.produce(
                    args.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers) or None,
                    timestamp=record.timestamp_ms or 0,
                    on_delivery=reporter(record.index),
                )
                break
            except BufferError:
                if deadline.expired():
                    raise
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(max(0.1, deadline.remaining()))
    return deliveries, errors, left


# What a one-shot ListOffsets may meet while leaders move: librdkafka's get_watermark_offsets
# sends it once to the leader it knows and does not retry, so the caller does.
LEADER_ERRORS = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError._TRANSPORT,
}


def watermarks(consumer: Consumer, args: Any, retries: Counter[str]) -> tuple[dict[int, int], dict[int, int]]:
    """ListOffsets earliest and latest per partition, never from librdkafka's cache; a request
    that met a moving leader is retried (each retry counted in `retries` by error name)."""
    earliest, latest = {}, {}
    deadline = Deadline(args.timeout)
    for partition in range(args.partitions):
        while True:
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(args.topic, partition), timeout=max(0.1, deadline.remaining()), cached=False
                )
                break
            except KafkaException as error:
                code = error.args[0].code() if error.args else None
                if code not in LEADER_ERRORS or deadline.expired():
                    raise
                retries[error.args[0].name()] += 1
                time.sleep(0.05)
        earliest[partition], latest[partition] = low, high
    return earliest, latest


def end_offsets(deliveries: dict[int, Delivery], partitions: int) -> dict[int, int]:
    """Per partition, one past the highest offset a delivery report named (0 if none)."""
    ends = dict.fromkeys(range(partitions), 0)
    for delivery in deliveries.values():
        ends[delivery.partition] = max(ends[delivery.partition], delivery.offset + 1)
    return ends


def check_client_errors(
    checks: Checks, name: str, errors: ClientErrors, reader_errors: list[str] | None = None
) -> None:
    """No fatal error through error_cb; for the consumer, no error returned in place of a message."""
    checks.check(f"{name}: no fatal client error", not errors.fatal, f"fatal errors: {errors.fatal[:3]}")
    if reader_errors is not None:
        checks.check(
            f"{name}: no error surfaced with a message",
            not reader_errors,
            f"{len(reader_errors)} errors, e.g. {reader_errors[:5]}",
        )


def describe(name: str, log: ClientLog, stats: ClientStats, errors: ClientErrors, apis: Sequence[str]) -> None:
    """What the handle went through: requests sent (statistics), LOG_EVENTS, error_cb errors."""
    requests = ", ".join(f"{api} {stats.requests(api)}" for api in apis)
    events = ", ".join(f"{event} {n}" for event, n in sorted(log.events.items())) or "none"
    reported = ", ".join(f"{code} {n}" for code, n in errors.counts.most_common()) or "none"
    print(f"   {name}: requests sent: {requests}")
    print(f"   {name}: seen in its log: {events}")
    print(f"   {name}: errors reported through error_cb: {reported}")
    for event, samples in sorted(log.samples.items()):
        print(f"      e.g. {event}: {samples[0][:300]}")
    for warning in log.warnings[:10]:
        print(f"      warning: {warning[:300]}")


def main(checks: Checks) -> int:
    args = parse_args()
    peer = Peer("tidepool")
    print(f"== {CLIENT} against {args.bootstrap}, topic {args.topic} ({args.partitions} partitions)", flush=True)
    sink = Sink(args.client_log)
    producer_log, consumer_log = ClientLog("producer", sink), ClientLog("consumer", sink)
    producer_stats, consumer_stats = ClientStats(), ClientStats()
    producer_errors, consumer_errors = ClientErrors(), ClientErrors()
    producer = Producer(
        {
            **base_config(args, producer_log, producer_stats, producer_errors, "msg,topic,eos"),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(args.timeout * 1000),
        }
    )
    reader = Reader(args, consumer_log, consumer_stats, consumer_errors)
    watermark_retries: Counter[str] = Counter()
    earliest, latest = watermarks(reader.consumer, args, watermark_retries)
    checks.check(
        "list offsets (consumer watermarks): the topic is empty before producing",
        all(earliest[p] == latest[p] == 0 for p in range(args.partitions)),
        f"earliest {earliest}, latest {latest}",
    )
    reader.start()
    records = make_records("none", args.records, 0, first_timestamp_for_run(), null_keys=False)

    mark(MARK_PRODUCING)
    started = time.monotonic()
    deliveries, delivery_errors, left = produce(args, producer, records, Deadline(args.timeout + args.seconds))
    produced_s = time.monotonic() - started
    mark(MARK_PRODUCED)
    print(f"   produced {len(deliveries)}/{len(records)} records in {produced_s:.1f}s", flush=True)

    checks.check(
        "produce: no delivery errors",
        not delivery_errors,
        f"{len(delivery_errors)} delivery errors, e.g. {delivery_errors[:5]}",
    )
    checks.check("produce: flush left nothing undelivered", left == 0, f"{left} records undelivered after flush")
    check_client_errors(checks, "producer", producer_errors)
    check_deliveries(checks, records, deliveries, dict.fromkeys(range(args.partitions), 0), peer)

    ends = end_offsets(deliveries, args.partitions)
    reader.finish(ends, args.timeout)
    consumed_s = time.monotonic() - started
    if reader.failure is not None:
        checks.fail("consume: the reader ran to the end", f"{type(reader.failure).__name__}: {reader.failure}")
    checks.check(
        "consume: reached the end of every partition",
        reader.done(),
        f"partitions (read up to, end): {reader.pending()} after {args.timeout}s",
    )
    check_client_errors(checks, "consumer", consumer_errors, reader.message_errors)
    check_roundtrip(checks, records, deliveries, reader.consumed, dict.fromkeys(range(args.partitions), 0))

    earliest, latest = watermarks(reader.consumer, args, watermark_retries)
    check_watermarks(
        checks,
        "consumer watermarks",
        records,
        deliveries,
        range(args.partitions),
        earliest,
        latest,
        dict.fromkeys(range(args.partitions), 0),
    )
    reader.consumer.close()

    print(f"   consumed {len(reader.consumed)} records, all read {consumed_s:.1f}s after producing began")
    describe("producer", producer_log, producer_stats, producer_errors, ("Produce", "Metadata"))
    describe("consumer", consumer_log, consumer_stats, consumer_errors, ("Fetch", "Metadata", "ListOffsets"))
    sink.write("producer", "last statistics: " + json.dumps(producer_stats.last))
    sink.write("consumer", "last statistics: " + json.dumps(consumer_stats.last))
    sink.close()
    retried = ", ".join(f"{code} {n}" for code, n in watermark_retries.most_common()) or "none"
    print(f"   watermark (ListOffsets) requests retried after: {retried}")
    per_partition = Counter(d.partition for d in deliveries.values())
    summary = (
        f"{len(records)} records over {args.partitions} partitions "
        f"({', '.join(f'p{p}: {per_partition[p]}' for p in range(args.partitions))}), "
        f"produced in {produced_s:.1f}s, topic {args.topic}"
    )
    return checks.report(summary)


if __name__ == "__main__":
    run_main(main, CLIENT)
