"""What every real-client round trip shares: the records we send, the checks we run, the report.

Each client program (confluent_roundtrip.py, kafka_python_roundtrip.py, kcat_roundtrip.sh) only
drives its own client; the judgement of what came back lives here, once, so that a record
accepted by one client's test is accepted by every other's for the same reason.

Layout:
- `Peer` names the brokers we run against and the gaps of the ones that are not Kafka.
- `SentRecord`, `Delivery`, `ConsumedRecord`: what was produced, what the producer was told,
  what the consumer read.
- `make_records` builds a codec's records: unique values, keys, headers with a repeated key,
  explicit CreateTime timestamps that grow by one millisecond per record.
- `Checks` collects every failed check with a reason and prints the summary.
- `check_roundtrip` compares the three views; `timestamp_probes` derives ListOffsets-by-time
  questions and their answers from what was read.
- `Cells` reports a program's cells of the compatibility matrix (tests/matrix/README.md);
  `judge_codecs` gives each codec its own verdict (the codec-* cells) and `IDEMPOTENCE_CHECKS`
  names the checks behind the idempotence cell.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import matrix

CODECS: tuple[str, ...] = ("none", "gzip", "snappy", "lz4", "zstd")

# ListOffsets' answer when no record has a timestamp at or after the one asked for.
NO_OFFSET = -1

# What a peer other than Kafka itself is known to lack. A check listed here is reported as
# SKIPPED with the reason, and only when the run names that peer with --peer.
PEER_GAPS: dict[str, dict[str, str]] = {
    "tidepool": {},
    "kafka": {},
    "librdkafka-mock": {
        "admin-controller": "its Metadata names controller id 0, which is no broker, so "
        "CreateTopics/CreatePartitions/DeleteTopics/DescribeCluster never find a controller; "
        "topics are auto-created with the mock's 4 partitions instead",
        "delivery-timestamp": "its ProduceResponse reports log_append_time_ms=1234 for "
        "CreateTime topics, so delivery reports carry timestamp 1234",
        "offsets-for-times": "ListOffsets by timestamp answers offset -1 for every timestamp",
        "max-timestamp": "ListOffsets MAX_TIMESTAMP is not implemented",
        "api-versions-v3": "its ApiVersions answer to v3/v4 requests is undecodable by "
        "kafka-python, so kafka-python is pinned to api_version=(2, 3)",
    },
}

# Timestamps sit a little in the past: inside Kafka's default retention (7 days) and far from
# log.message.timestamp.after.max.ms (1 hour in Kafka 4), so real Kafka accepts them too.
TIMESTAMP_BASE_AGE_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class Peer:
    """The broker under test; knows which checks it cannot pass and why."""

    name: str

    def lacks(self, gap: str) -> str | None:
        """Returns the reason this peer cannot pass checks named `gap`, or None."""
        return PEER_GAPS[self.name].get(gap)


@dataclass(frozen=True)
class SentRecord:
    """One record as handed to the producer, in send order (index = position in that order)."""

    index: int
    codec: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None  # None: the client stamps the record itself (kcat)
    timestamp_window_ms: tuple[int, int] | None = None  # bounds of a client-stamped time


@dataclass(frozen=True)
class Delivery:
    """What the producer's delivery report said about one record."""

    partition: int
    offset: int
    timestamp_ms: int | None = None  # None when the client does not report it


@dataclass(frozen=True)
class ConsumedRecord:
    """One record as the consumer returned it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int
    timestamp_type: str  # "create", "log_append" or "unknown"


@dataclass
class Checks:
    """Collects check outcomes by name; a check fails when any single assertion under it fails.

    Reasons are kept (a few per check) so that the report says what went wrong, not only that
    something did.
    """

    client: str
    reasons_kept_max: int = 8
    passed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    failed_counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def _note(self, name: str) -> None:
        if name not in self.order:
            self.order.append(name)

    def check(self, name: str, ok: bool, reason: str = "") -> bool:
        """Records one assertion under check `name`; returns `ok` so callers can branch."""
        self._note(name)
        if ok:
            self.passed[name] += 1
        else:
            self.failed_counts[name] += 1
            if len(self.failed[name]) < self.reasons_kept_max:
                self.failed[name].append(reason)
        return ok

    def fail(self, name: str, reason: str) -> None:
        """Records a failed check, e.g. a client call that raised."""
        self.check(name, False, reason)

    def skip(self, name: str, reason: str) -> None:
        """Records a check not run, with the reason; never silent."""
        self._note(name)
        self.skipped[name] = reason

    @property
    def ok(self) -> bool:
        return not self.failed_counts

    def first_failure(self, prefixes: Iterable[str] | None = None) -> str | None:
        """The first failed check (in the order checks were first made) whose name starts with
        one of `prefixes` (any check without), as "name: first reason"; None when none failed."""
        wanted = tuple(prefixes) if prefixes is not None else ("",)
        for name in self.order:
            if self.failed_counts.get(name) and name.startswith(wanted):
                reasons = self.failed.get(name) or [""]
                return f"{name}: {reasons[0]}" if reasons[0] else name
        return None

    def report(self, summary: str) -> int:
        """Prints one line per check and a verdict; returns the process exit code."""
        print(f"== {self.client}: {summary}")
        for name in self.order:
            if self.failed_counts.get(name):
                print(f"  FAIL {name}: {self.failed_counts[name]} failed, {self.passed[name]} passed")
                for reason in self.failed[name]:
                    print(f"       - {reason}")
                hidden = self.failed_counts[name] - len(self.failed[name])
                if hidden > 0:
                    print(f"       - ... and {hidden} more")
            elif name in self.skipped:
                print(f"  SKIP {name}: {self.skipped[name]}")
            else:
                print(f"  ok   {name} ({self.passed[name]} assertions)")
        failed = sum(1 for name in self.order if self.failed_counts.get(name))
        verdict = "PASS" if self.ok else "FAIL"
        print(f"== {self.client}: {verdict} ({len(self.order) - failed} checks ok or skipped, {failed} failed)")
        sys.stdout.flush()
        return 0 if self.ok else 1


class Deadline:
    """A point in monotonic time that bounds a wait loop, so no wait is unbounded."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.at


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line every compat program shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--records", type=int, default=10_000, help="records per codec (default 10000)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the test topic")
    parser.add_argument("--topic", default=None, help="topic name (default: unique per run)")
    parser.add_argument("--codecs", default=",".join(CODECS), help="comma-separated subset of " + ",".join(CODECS))
    parser.add_argument(
        "--peer",
        default="tidepool",
        choices=sorted(PEER_GAPS),
        help="the broker under test; only librdkafka-mock tolerates known gaps, each reported as SKIP",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds allowed for each wait")
    parser.add_argument("--keep-topic", action="store_true", help="do not delete the topic at the end")
    args = parser.parse_args(argv)
    codecs = [c for c in args.codecs.split(",") if c]
    unknown = [c for c in codecs if c not in CODECS]
    if unknown or not codecs:
        parser.error(f"unknown codecs {unknown}; choose from {CODECS}")
    if args.records < 1 or args.partitions < 1:
        parser.error("--records and --partitions must be at least 1")
    args.codecs = codecs
    args.peer = Peer(args.peer)
    return args


def unique_topic(client: str) -> str:
    """A topic name unique to this run, so reruns against a long-lived broker never collide."""
    return f"compat-{client}-{int(time.time() * 1000)}-{os.getpid()}"


def now_ms() -> int:
    return int(time.time() * 1000)


def record_value(index: int, codec: str, text_only: bool) -> bytes:
    """A value unique to `index`, of varying length, compressible, and (unless `text_only`)
    containing every byte value somewhere in the run, so codecs and framing see real bytes."""
    prefix = f"{index:07d}|{codec}|".encode()
    filler_len = (index * 37) % 240
    if text_only:
        filler = (b"tidepool-" * 30)[:filler_len]
    else:
        filler = bytes((index + i) % 256 for i in range(filler_len))
    return prefix + filler


def make_records(
    codec: str,
    count: int,
    first_index: int,
    first_timestamp_ms: int | None,
    text_only: bool = False,
    null_keys: bool = True,
    varied_headers: bool = True,
) -> list[SentRecord]:
    """Builds one codec's records.

    Keys repeat (so the partitioner's same-key-same-partition rule is exercised); one key in 101
    is null when the client can send null keys. Headers carry the codec and index, two values
    under the same key `dup` (order must survive), and an empty value; one record in 7 has no
    headers at all. Timestamps grow by 1 ms per record so a ListOffsets-by-time answer is exact.
    """
    records = []
    for n in range(count):
        index = first_index + n
        key = None if (null_keys and index % 101 == 0) else f"key-{index % 1013}".encode()
        headers: tuple[tuple[str, bytes], ...] = (
            ("codec", codec.encode()),
            ("index", str(index).encode()),
            ("dup", b"first"),
            ("dup", b"second"),
            ("empty", b""),
        )
        if varied_headers and index % 7 == 3:
            headers = ()
        timestamp = None if first_timestamp_ms is None else first_timestamp_ms + n
        records.append(SentRecord(index, codec, key, record_value(index, codec, text_only), headers, timestamp))
    return records


def first_timestamp_for_run() -> int:
    """The CreateTime of the first record of a run."""
    return now_ms() - TIMESTAMP_BASE_AGE_MS


def sent_by_partition(sent: Sequence[SentRecord], deliveries: dict[int, Delivery]) -> dict[int, list[SentRecord]]:
    """Send order per partition, the partition being the one the delivery report named."""
    by_partition: dict[int, list[SentRecord]] = defaultdict(list)
    for record in sent:
        delivery = deliveries.get(record.index)
        if delivery is not None:
            by_partition[delivery.partition].append(record)
    return by_partition


def check_deliveries(
    checks: Checks,
    sent: Sequence[SentRecord],
    deliveries: dict[int, Delivery],
    start_offsets: dict[int, int],
    peer: Peer,
    partitioner: bool = True,
) -> None:
    """Every record got a delivery report; per partition, reported offsets follow send order and
    are contiguous from the partition's start offset; reported timestamps are the ones sent.
    With `partitioner`, the client chose partitions by key, so each key must have kept to one."""
    missing = [r.index for r in sent if r.index not in deliveries]
    checks.check(
        "delivery reports: one per record",
        not missing,
        f"{len(missing)} records have no successful delivery report, e.g. indexes {missing[:5]}",
    )
    for partition, records in sorted(sent_by_partition(sent, deliveries).items()):
        expected = start_offsets.get(partition, 0)
        for record in records:
            offset = deliveries[record.index].offset
            if not checks.check(
                "delivery reports: offsets contiguous in send order",
                offset == expected,
                f"partition {partition}: record {record.index} reported offset {offset}, expected {expected}",
            ):
                break
            expected += 1
    if partitioner:
        check_partitioner(checks, sent, deliveries)
    check_delivery_timestamps(checks, sent, deliveries, peer)


def check_partitioner(checks: Checks, sent: Sequence[SentRecord], deliveries: dict[int, Delivery]) -> None:
    """Records with the same key went to the same partition."""
    keyed_partitions: dict[bytes, set[int]] = defaultdict(set)
    for record in sent:
        if record.key is not None and record.index in deliveries:
            keyed_partitions[record.key].add(deliveries[record.index].partition)
    split = {k: sorted(v) for k, v in keyed_partitions.items() if len(v) > 1}
    checks.check(
        "partitioner: one partition per key",
        not split,
        f"{len(split)} keys landed in several partitions, e.g. {list(split.items())[:3]}",
    )


def check_delivery_timestamps(
    checks: Checks, sent: Sequence[SentRecord], deliveries: dict[int, Delivery], peer: Peer
) -> None:
    """For a CreateTime topic Kafka answers log_append_time -1, so the client reports the time it sent."""
    name = "delivery reports: timestamp is the CreateTime sent"
    reported = [
        (r, deliveries[r.index])
        for r in sent
        if r.index in deliveries and deliveries[r.index].timestamp_ms is not None and r.timestamp_ms is not None
    ]
    if not reported:
        return
    reason = peer.lacks("delivery-timestamp")
    if reason:
        checks.skip(name, f"peer {peer.name}: {reason}")
        return
    for record, delivery in reported:
        checks.check(
            name,
            delivery.timestamp_ms == record.timestamp_ms,
            f"record {record.index}: delivery report timestamp {delivery.timestamp_ms}, sent {record.timestamp_ms}",
        )


def check_roundtrip(
    checks: Checks,
    sent: Sequence[SentRecord],
    deliveries: dict[int, Delivery],
    consumed: Sequence[ConsumedRecord],
    start_offsets: dict[int, int],
) -> None:
    """Every record was read exactly once, intact, in send order per partition, at the offset the
    delivery report gave, with contiguous offsets from the start offset."""
    by_value = {r.value: r for r in sent}
    seen: set[int] = set()
    next_offset = dict(start_offsets)
    last_index: dict[int, int] = {}
    for record in consumed:
        expected = by_value.get(record.value or b"")
        if not checks.check(
            "consume: every record read is one we sent",
            expected is not None,
            f"partition {record.partition} offset {record.offset}: unknown value {(record.value or b'')[:40]!r}",
        ):
            continue
        assert expected is not None
        checks.check(
            "consume: no record read twice",
            expected.index not in seen,
            f"record {expected.index} read again at partition {record.partition} offset {record.offset}",
        )
        seen.add(expected.index)
        check_offsets(checks, record, expected, deliveries, next_offset, last_index)
        check_content(checks, record, expected)
    missing = [r.index for r in sent if r.index not in seen]
    checks.check(
        "consume: every record sent was read",
        not missing,
        f"{len(missing)} of {len(sent)} records never read, e.g. indexes {missing[:5]}",
    )


def check_offsets(
    checks: Checks,
    record: ConsumedRecord,
    expected: SentRecord,
    deliveries: dict[int, Delivery],
    next_offset: dict[int, int],
    last_index: dict[int, int],
) -> None:
    """Offsets are contiguous per partition, order is send order, and the delivery report agrees."""
    partition = record.partition
    want = next_offset.get(partition, 0)
    checks.check(
        "consume: offsets contiguous from the start offset",
        record.offset == want,
        f"partition {partition}: read offset {record.offset}, expected {want}",
    )
    next_offset[partition] = record.offset + 1
    previous = last_index.get(partition)
    checks.check(
        "consume: per-partition order is send order",
        previous is None or expected.index > previous,
        f"partition {partition} offset {record.offset}: record {expected.index} after record {previous}",
    )
    last_index[partition] = expected.index
    delivery = deliveries.get(expected.index)
    if delivery is not None:
        checks.check(
            "consume: partition and offset match the delivery report",
            (delivery.partition, delivery.offset) == (partition, record.offset),
            f"record {expected.index}: delivery report said partition {delivery.partition} "
            f"offset {delivery.offset}, consumer read it at partition {partition} offset {record.offset}",
        )


def check_content(checks: Checks, record: ConsumedRecord, expected: SentRecord) -> None:
    """Key, headers (order and repeats), timestamp and timestamp type are what was sent."""
    where = f"record {expected.index} (partition {record.partition} offset {record.offset})"
    checks.check(
        "consume: key intact", record.key == expected.key, f"{where}: key {record.key!r}, sent {expected.key!r}"
    )
    checks.check(
        "consume: headers intact, order and duplicates kept",
        record.headers == expected.headers,
        f"{where}: headers {list(record.headers)}, sent {list(expected.headers)}",
    )
    checks.check(
        "consume: timestamp type is CreateTime",
        record.timestamp_type == "create",
        f"{where}: timestamp type {record.timestamp_type}",
    )
    if expected.timestamp_ms is not None:
        checks.check(
            "consume: timestamp is the one sent",
            record.timestamp_ms == expected.timestamp_ms,
            f"{where}: timestamp {record.timestamp_ms}, sent {expected.timestamp_ms}",
        )
    elif expected.timestamp_window_ms is not None:
        low, high = expected.timestamp_window_ms
        checks.check(
            "consume: client-stamped timestamp within the produce window",
            low <= record.timestamp_ms <= high,
            f"{where}: timestamp {record.timestamp_ms} outside the produce window [{low}, {high}]",
        )


def check_watermarks(
    checks: Checks,
    source: str,
    sent: Sequence[SentRecord],
    deliveries: dict[int, Delivery],
    partitions: Iterable[int],
    earliest: dict[int, int],
    latest: dict[int, int],
    start_offsets: dict[int, int],
) -> None:
    """ListOffsets earliest is the start offset and latest is start + records delivered there."""
    counts: dict[int, int] = defaultdict(int)
    for record in sent:
        if record.index in deliveries:
            counts[deliveries[record.index].partition] += 1
    for partition in partitions:
        start = start_offsets.get(partition, 0)
        checks.check(
            f"list offsets ({source}): earliest",
            earliest.get(partition) == start,
            f"partition {partition}: earliest {earliest.get(partition)}, expected {start}",
        )
        want = start + counts[partition]
        checks.check(
            f"list offsets ({source}): latest",
            latest.get(partition) == want,
            f"partition {partition}: latest {latest.get(partition)}, expected {want} "
            f"({counts[partition]} records delivered)",
        )


@dataclass(frozen=True)
class TimestampProbe:
    """A ListOffsets-by-timestamp question and the answer Kafka gives: the first offset whose
    timestamp is at or after `timestamp_ms`, or NO_OFFSET when there is none."""

    partition: int
    timestamp_ms: int
    expected_offset: int
    expected_timestamp_ms: int | None


def timestamp_probes(consumed: Sequence[ConsumedRecord]) -> list[TimestampProbe]:
    """Probes per partition: before everything, exact times at the start, a third, two thirds and
    the end, between two records when there is a gap, and after everything."""
    by_partition: dict[int, list[ConsumedRecord]] = defaultdict(list)
    for record in consumed:
        by_partition[record.partition].append(record)
    probes = []
    for partition, records in sorted(by_partition.items()):
        records.sort(key=lambda r: r.offset)
        times = {0, records[-1].timestamp_ms + 1}
        for position in (0, len(records) // 3, 2 * len(records) // 3, len(records) - 1):
            times.add(records[position].timestamp_ms)
            times.add(records[position].timestamp_ms + 1)
        for ts in sorted(times):
            first = next((r for r in records if r.timestamp_ms >= ts), None)
            probes.append(
                TimestampProbe(
                    partition, ts, first.offset if first else NO_OFFSET, first.timestamp_ms if first else None
                )
            )
    return probes


def max_timestamp_expectation(consumed: Sequence[ConsumedRecord]) -> dict[int, tuple[int, int]]:
    """Per partition, (offset, timestamp) of the record with the largest timestamp (the first
    such record when several share it), which ListOffsets MAX_TIMESTAMP returns."""
    best: dict[int, ConsumedRecord] = {}
    for record in consumed:
        current = best.get(record.partition)
        if (
            current is None
            or record.timestamp_ms > current.timestamp_ms
            or (record.timestamp_ms == current.timestamp_ms and record.offset < current.offset)
        ):
            best[record.partition] = record
    return {p: (r.offset, r.timestamp_ms) for p, r in best.items()}


def check_timestamp_lookup(
    checks: Checks, source: str, probes: Sequence[TimestampProbe], answers: dict[tuple[int, int], int]
) -> None:
    """Compares ListOffsets-by-timestamp answers ((partition, timestamp) -> offset) to the probes."""
    for probe in probes:
        got = answers.get((probe.partition, probe.timestamp_ms))
        checks.check(
            f"list offsets ({source}): by timestamp",
            got == probe.expected_offset,
            f"partition {probe.partition} timestamp {probe.timestamp_ms}: offset {got}, "
            f"expected {probe.expected_offset}",
        )


def check_metadata(
    checks: Checks,
    source: str,
    partition_leaders: dict[int, int],
    broker_ids: set[int],
    expected_partitions: int | None,
) -> None:
    """The topic has the partitions we asked for, each led by a broker the metadata lists."""
    if expected_partitions is not None:
        checks.check(
            f"metadata ({source}): partition count",
            len(partition_leaders) == expected_partitions,
            f"{len(partition_leaders)} partitions, expected {expected_partitions}",
        )
    checks.check(
        f"metadata ({source}): partitions numbered 0..n-1",
        sorted(partition_leaders) == list(range(len(partition_leaders))),
        f"partition ids {sorted(partition_leaders)}",
    )
    for partition, leader in sorted(partition_leaders.items()):
        checks.check(
            f"metadata ({source}): every partition has a known leader",
            leader in broker_ids,
            f"partition {partition}: leader {leader}, brokers {sorted(broker_ids)}",
        )


# ---------------------------------------------------------------------------------------------
# The compatibility matrix (tests/matrix/README.md).

# The checks (by name prefix) behind the idempotence cell: every record acknowledged once, the
# acknowledged offsets contiguous per partition in send order, each record stored once and where
# its acknowledgement said.
IDEMPOTENCE_CHECKS: tuple[str, ...] = (
    "produce (",
    "delivery reports: one per record",
    "delivery reports: offsets contiguous in send order",
    "consume: every record sent was read",
    "consume: no record read twice",
    "consume: offsets contiguous from the start offset",
    "consume: partition and offset match the delivery report",
)


class Cells:
    """The matrix cells one program covers for one client (`client`: an id of
    tests/matrix/scenarios.json). Each is reported once; `close` reports every cell still open as
    failed, with the reason (the program ended, or raised, before judging it), so that a cell the
    program promised is never left out."""

    def __init__(self, client: str, scenarios: Iterable[str]) -> None:
        self.client = client
        self.open: list[str] = list(scenarios)

    def report(self, scenario: str, result: bool | str, detail: str = "") -> None:
        if scenario not in self.open:
            raise ValueError(f"matrix cell {self.client}/{scenario} is not open (reported twice?)")
        self.open.remove(scenario)
        if result is False and not detail:
            detail = "failed"
        matrix.report(self.client, scenario, result, " ".join(detail.split())[:400])

    def judge(self, scenario: str, checks: Checks, prefixes: Iterable[str] | None = None) -> None:
        """Passes the cell when no check (of those named by `prefixes`) failed; otherwise fails
        it with the first failure."""
        failure = checks.first_failure(prefixes)
        self.report(scenario, failure is None, failure or "")

    def close(self, reason: str) -> None:
        for scenario in list(self.open):
            self.report(scenario, False, reason)

    def not_applicable(self, reason: str) -> None:
        """Reports nothing: for a peer that is no matrix column (the librdkafka mock cluster),
        where the program cannot run at all."""
        print(f"MATRIX {self.client}: {', '.join(self.open)} not reported: {reason}", flush=True)
        self.open.clear()


def codec_ranges(
    sent: Sequence[SentRecord], deliveries: dict[int, Delivery]
) -> dict[str, dict[int, tuple[int, int]]]:
    """Per codec and partition, [first, last + 1) of the offsets its delivery reports named."""
    ranges: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    for record in sent:
        delivery = deliveries.get(record.index)
        if delivery is None:
            continue
        low, high = ranges[record.codec].get(delivery.partition, (delivery.offset, delivery.offset + 1))
        ranges[record.codec][delivery.partition] = (min(low, delivery.offset), max(high, delivery.offset + 1))
    return ranges


def judge_codecs(
    client: str,
    sent: Sequence[SentRecord],
    deliveries: dict[int, Delivery],
    consumed: Sequence[ConsumedRecord],
    start_offsets: dict[int, int],
    peer: Peer,
    produce_failures: dict[str, list[str]],
    partitioner: bool = True,
) -> dict[str, Checks]:
    """One verdict per codec (the codec-* cells), judged as the whole run is but on that codec's
    records alone: its delivery reports, and what was read of it, from where its records start in
    each partition (codecs are produced one after another, so each owns a run of offsets).

    A record read is the codec's when its value is one of the codec's records, or, when its value
    is unknown (mangled), when its offset lies in the codec's run. A gap or overlap between two
    codecs' runs is judged by the idempotence cell (the whole run's contiguity), not here."""
    ranges = codec_ranges(sent, deliveries)
    codec_of_value = {record.value: record.codec for record in sent}
    codecs = list(dict.fromkeys(record.codec for record in sent))
    verdicts: dict[str, Checks] = {}
    for codec in codecs:
        checks = Checks(f"{client} {codec}")
        for failure in produce_failures.get(codec, []):
            checks.fail(f"produce ({codec}): every record acknowledged", failure)
        own = [record for record in sent if record.codec == codec]
        starts = {p: low for p, (low, _) in ranges.get(codec, {}).items()}
        for partition, offset in start_offsets.items():
            starts.setdefault(partition, offset)

        def belongs(record: ConsumedRecord, codec: str = codec) -> bool:
            owner = codec_of_value.get(record.value or b"")
            if owner is not None:
                return owner == codec
            low, high = ranges.get(codec, {}).get(record.partition, (0, -1))
            return low <= record.offset < high

        mine = [record for record in consumed if belongs(record)]
        check_deliveries(checks, own, deliveries, starts, peer, partitioner=partitioner)
        check_roundtrip(checks, own, deliveries, mine, starts)
        verdicts[codec] = checks
    return verdicts


def run_main(main: Callable[[Checks], int], client: str, cells: Cells | None = None) -> None:
    """Runs a program's main(checks). An exception escaping it (a client call that raised or
    timed out) is a failed check with its reason, reported with every check made before it; the
    matrix cells in `cells` not judged by then are reported failed with that reason."""
    checks = Checks(client)
    reason = "the program ended before judging this cell"
    try:
        code = main(checks)
    except KeyboardInterrupt:
        checks.fail("run completed", "interrupted")
        code = checks.report("interrupted")
        reason = "interrupted before this cell was judged"
    except Exception as error:  # noqa: BLE001 - any client error is a test failure, said loudly
        traceback.print_exc()
        checks.fail("run completed", f"aborted by {type(error).__name__}: {error}")
        code = checks.report(f"aborted by {type(error).__name__}")
        reason = f"aborted by {type(error).__name__}: {error}"
    if cells is not None:
        cells.close(reason)
    sys.exit(code)
