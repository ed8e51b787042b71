#!/usr/bin/env python3
"""The parts of the kcat round trip that kcat cannot do: make and delete the topic (kcat has no
admin mode; confluent-kafka's admin API does it), write kcat's input files, turn kcat's output
(delivery lines, JSON records, -Q and -L answers) into the shared checks.

kcat_roundtrip.sh calls it; nothing here talks to the broker except `create` and `delete`.

    kcat_support.py create  --bootstrap B --topic T --partitions N --peer P --timeout S
    kcat_support.py inputs  --dir D --records N --partitions N --codecs a,b
    kcat_support.py probes  --dir D --topic T
    kcat_support.py verify  --dir D --topic T --partitions N --codecs a,b --records N --peer P
    kcat_support.py delete  --bootstrap B --topic T --timeout S
    kcat_support.py abandon --codecs a,b --reason TEXT

`verify` also reports the round trip's cells of the compatibility matrix (client `kcat`):
codec-<codec> per codec (that codec's records judged alone), idempotence (the producer runs with
enable.idempotence=true, acks=all: every record acknowledged once, contiguous offsets, none
stored twice) and admin, a skip: kcat has no admin API. `abandon` reports them failed when the
round trip stopped before `verify` could judge them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from compat_common import (
    CODECS,
    IDEMPOTENCE_CHECKS,
    PEER_GAPS,
    Cells,
    Checks,
    ConsumedRecord,
    Deadline,
    Delivery,
    Peer,
    SentRecord,
    TimestampProbe,
    check_deliveries,
    check_metadata,
    check_roundtrip,
    check_timestamp_lookup,
    check_watermarks,
    judge_codecs,
    make_records,
    timestamp_probes,
)

# kcat -v -v prints one line per delivery report, in report order (send order per partition).
DELIVERY_LINE = re.compile(r"Message delivered to partition (\d+) \(offset (-?\d+)\)")
KCAT_HEADERS = (("dup", b"first"), ("dup", b"second"), ("empty", b""))
KCAT_TIMESTAMP_TYPES = {"create": "create", "logappend": "log_append"}
MATRIX_CLIENT = "kcat"
NO_ADMIN = (
    "kcat has no admin API: it lists metadata (-L) and queries offsets (-Q) only, and cannot create, "
    "alter or delete topics or configs"
)


def round_trip_cells(codecs: list[str]) -> Cells:
    return Cells(MATRIX_CLIENT, [f"codec-{codec}" for codec in codecs] + ["idempotence", "admin"])


def kcat_records(codec: str, count: int, first_index: int) -> list[SentRecord]:
    """Text records kcat can send: one line each, `key<TAB>value`, no null keys; every record of
    an invocation carries the same -H headers, so the codec header plus the fixed ones."""
    records = make_records(codec, count, first_index, None, text_only=True, null_keys=False, varied_headers=False)
    headers = (("codec", codec.encode()),) + KCAT_HEADERS
    return [SentRecord(r.index, r.codec, r.key, r.value, headers, None) for r in records]


def planned_records(codecs: list[str], per_codec: int, partitions: int) -> dict[tuple[str, int], list[SentRecord]]:
    """Records per (codec, partition): a codec's records go round-robin over the partitions, each
    partition's share sent by one kcat -p invocation (so its delivery lines map to its lines)."""
    plan: dict[tuple[str, int], list[SentRecord]] = defaultdict(list)
    first_index = 0
    for codec in codecs:
        for record in kcat_records(codec, per_codec, first_index):
            plan[(codec, record.index % partitions)].append(record)
        first_index += per_codec
    return plan


def write_inputs(args: argparse.Namespace) -> int:
    """Writes in-<codec>-<partition>.txt files and prints their names with codec and partition."""
    directory = Path(args.dir)
    plan = planned_records(args.codecs, args.records, args.partitions)
    # Codecs run in the order given, which is index order, so send order per partition is index order.
    for codec, partition in ((c, p) for c in args.codecs for p in range(args.partitions) if (c, p) in plan):
        records = plan[(codec, partition)]
        path = directory / f"in-{codec}-{partition}.txt"
        with path.open("wb") as out:
            for record in records:
                assert record.key is not None and b"\t" not in record.key + record.value
                out.write(record.key + b"\t" + record.value + b"\n")
        print(f"{codec} {partition} {path}")
    return 0


def admin_client(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    # No auto-creation: a Metadata request for a just-deleted topic must not create it again.
    return AdminClient({"bootstrap.servers": bootstrap, "allow.auto.create.topics": False})


def wait_for_partitions(handle: Any, topic: str, count: int, deadline: Deadline) -> int:
    """Polls metadata until `topic` has at least `count` partitions with leaders; returns the count."""
    seen = 0
    while not deadline.expired():
        metadata = handle.list_topics(topic, timeout=min(5.0, deadline.remaining() + 0.1))
        found = metadata.topics.get(topic)
        if found is not None and found.error is None:
            leaders = [p.leader for p in found.partitions.values() if p.error is None]
            seen = len(leaders)
            if seen >= count and all(leader in metadata.brokers for leader in leaders):
                return seen
        time.sleep(0.1)
    raise TimeoutError(f"topic {topic} did not show {count} partitions with leaders in time (saw {seen})")


def create_topic(args: argparse.Namespace) -> int:
    """Creates the topic (CreateTopics; the mock peer: auto-creation) and prints its partition count."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    deadline = Deadline(args.timeout)
    if Peer(args.peer).lacks("admin-controller"):
        producer = Producer({"bootstrap.servers": args.bootstrap, "allow.auto.create.topics": True})
        print(wait_for_partitions(producer, args.topic, 1, deadline))
        return 0
    admin = admin_client(args.bootstrap)
    admin.create_topics(
        [NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)], request_timeout=args.timeout
    )[args.topic].result()
    print(wait_for_partitions(admin, args.topic, args.partitions, deadline))
    return 0


def delete_topic(args: argparse.Namespace) -> int:
    """DeleteTopics, then waits until Metadata no longer lists the topic."""
    from confluent_kafka import KafkaError

    admin = admin_client(args.bootstrap)
    admin.delete_topics([args.topic], request_timeout=args.timeout)[args.topic].result()
    deadline = Deadline(args.timeout)
    while not deadline.expired():
        found = admin.list_topics(args.topic, timeout=min(5.0, deadline.remaining() + 0.1)).topics.get(args.topic)
        if found is None or (found.error is not None and found.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            return 0
        time.sleep(0.1)
    print(f"topic {args.topic} still listed {args.timeout}s after DeleteTopics", file=sys.stderr)
    return 1


def read_consumed(path: Path) -> list[ConsumedRecord]:
    """Parses kcat -C -J output: one JSON object per line, headers as [name, value, name, value...]."""
    consumed = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        message = json.loads(line)
        flat = message.get("headers") or []
        headers = tuple(
            (flat[i], None if flat[i + 1] is None else flat[i + 1].encode()) for i in range(0, len(flat), 2)
        )
        key = message.get("key")
        payload = message.get("payload")
        consumed.append(
            ConsumedRecord(
                message["partition"],
                message["offset"],
                None if key is None else key.encode(),
                None if payload is None else payload.encode(),
                headers,
                message["ts"],
                KCAT_TIMESTAMP_TYPES.get(message.get("tstype"), "unknown"),
            )
        )
    return consumed


def read_deliveries(
    directory: Path, plan: dict[tuple[str, int], list[SentRecord]], checks: Checks
) -> dict[int, Delivery]:
    """Maps the n-th delivery line of each (codec, partition) invocation to its n-th record."""
    deliveries: dict[int, Delivery] = {}
    for (codec, partition), records in sorted(plan.items()):
        log = directory / f"dr-{codec}-{partition}.log"
        lines = [DELIVERY_LINE.search(line) for line in log.read_text(errors="replace").splitlines()]
        reports = [(int(m.group(1)), int(m.group(2))) for m in lines if m]
        checks.check(
            f"produce ({codec}): a delivery line per record",
            len(reports) == len(records),
            f"partition {partition}: {len(reports)} delivery lines for {len(records)} records (see {log})",
        )
        for record, (reported_partition, offset) in zip(records, reports, strict=False):  # counts checked above
            deliveries[record.index] = Delivery(reported_partition, offset)
    return deliveries


def read_windows(directory: Path) -> dict[tuple[str, int], tuple[int, int]]:
    """(codec, partition) -> wall-clock ms before and after its kcat invocation."""
    windows = {}
    for line in (directory / "windows.txt").read_text().splitlines():
        codec, partition, before, after = line.split()
        windows[(codec, int(partition))] = (int(before), int(after))
    return windows


def with_windows(
    plan: dict[tuple[str, int], list[SentRecord]], windows: dict[tuple[str, int], tuple[int, int]]
) -> list[SentRecord]:
    """Records in index order, each carrying the time window its invocation ran in."""
    sent: list[SentRecord] = []
    for key, records in plan.items():
        window = windows.get(key)
        sent.extend(SentRecord(r.index, r.codec, r.key, r.value, r.headers, None, window) for r in records)
    return sorted(sent, key=lambda r: r.index)


def read_query(path: Path, topic: str) -> dict[int, int]:
    """Parses kcat -Q -J: {topic: {"topic": T, "<p>": {"partition": p, "offset": o}}}."""
    answer = json.loads(path.read_text() or "{}").get(topic, {})
    return {v["partition"]: v["offset"] for k, v in answer.items() if k != "topic" and isinstance(v, dict)}


def write_probes(args: argparse.Namespace) -> int:
    """Prints rounds of -Q arguments, one line per kcat -Q call (a partition at most once each)."""
    consumed = read_consumed(Path(args.dir) / "consumed.jsonl")
    rounds: list[list[TimestampProbe]] = []
    for probe in timestamp_probes(consumed):
        target = next((r for r in rounds if all(o.partition != probe.partition for o in r)), None)
        if target is None:
            rounds.append([probe])
        else:
            target.append(probe)
    (Path(args.dir) / "probes.json").write_text(json.dumps([[p.__dict__ for p in r] for r in rounds]))
    for number, round_ in enumerate(rounds):
        print(number, " ".join(f"{args.topic}:{p.partition}:{p.timestamp_ms}" for p in round_))
    return 0


def verify_timestamps(checks: Checks, directory: Path, topic: str, peer: Peer) -> None:
    """kcat -Q by timestamp answers the first offset at or after each probe's time."""
    name = "list offsets (kcat -Q): by timestamp"
    reason = peer.lacks("offsets-for-times")
    if reason:
        checks.skip(name, f"peer {peer.name}: {reason}")
        return
    rounds = json.loads((directory / "probes.json").read_text())
    answers: dict[tuple[int, int], int] = {}
    probes = []
    for number, round_ in enumerate(rounds):
        answer = read_query(directory / f"query-ts-{number}.json", topic)
        for raw in round_:
            probe = TimestampProbe(**raw)
            probes.append(probe)
            if probe.partition in answer:
                answers[(probe.partition, probe.timestamp_ms)] = answer[probe.partition]
    check_timestamp_lookup(checks, "kcat -Q", probes, answers)


def verify_metadata(checks: Checks, directory: Path, topic: str, partitions: int | None) -> None:
    """kcat -L -J lists the partitions, each led by a listed broker."""
    metadata = json.loads((directory / "metadata.json").read_text())
    brokers = {b["id"] for b in metadata.get("brokers", [])}
    found: dict[str, Any] = next((t for t in metadata.get("topics", []) if t.get("topic") == topic), {})
    checks.check(
        "metadata (kcat -L): topic listed without error",
        bool(found) and "error" not in found,
        f"topic entry {found or 'missing'}",
    )
    leaders = {p["partition"]: p["leader"] for p in found.get("partitions", []) if "error" not in p}
    check_metadata(checks, "kcat -L", leaders, brokers, partitions)


def read_steps(checks: Checks, path: Path) -> dict[str, list[str]]:
    """Reports the kcat invocations themselves: lines `ok|fail|skip<TAB>step<TAB>detail`; returns
    the failed `kcat -P (<codec>)` invocations' details by codec."""
    failed_produce: dict[str, list[str]] = defaultdict(list)
    if not path.exists():
        return failed_produce
    for line in path.read_text().splitlines():
        status, step, detail = (line.split("\t") + ["", ""])[:3]
        if status == "skip":
            checks.skip(step, detail)
        else:
            checks.check(step, status == "ok", detail)
        found = re.match(r"kcat -P \((\w+)\)", step)
        if found and status == "fail":
            failed_produce[found.group(1)].append(f"{step}: {detail}")
    return failed_produce


def verify(args: argparse.Namespace) -> int:
    """Judges the whole kcat run from the files kcat_roundtrip.sh left in --dir."""
    directory = Path(args.dir)
    peer = Peer(args.peer)
    checks = Checks(f"kcat ({args.kcat_version})")
    cells = round_trip_cells(args.codecs)
    try:
        return judge(args, directory, peer, checks, cells)
    finally:
        cells.close("kcat_support.py verify stopped before judging this cell (see its traceback)")


def judge(args: argparse.Namespace, directory: Path, peer: Peer, checks: Checks, cells: Cells) -> int:
    plan = planned_records(args.codecs, args.records, args.partitions)
    deliveries = read_deliveries(directory, plan, checks)
    sent = with_windows(plan, read_windows(directory))
    start = {p: 0 for p in range(args.partitions)}
    verify_metadata(checks, directory, args.topic, args.partitions)
    check_deliveries(checks, sent, deliveries, start, peer, partitioner=False)
    for record in sent:
        if record.index in deliveries:
            checks.check(
                "produce: delivery report names the partition given with -p",
                deliveries[record.index].partition == record.index % args.partitions,
                f"record {record.index}: reported partition {deliveries[record.index].partition}",
            )
    earliest = read_query(directory / "query-earliest.json", args.topic)
    latest = read_query(directory / "query-latest.json", args.topic)
    check_watermarks(checks, "kcat -Q", sent, deliveries, range(args.partitions), earliest, latest, start)
    consumed = read_consumed(directory / "consumed.jsonl")
    check_roundtrip(checks, sent, deliveries, consumed, start)
    verify_timestamps(checks, directory, args.topic, peer)
    failed_produce = read_steps(checks, directory / "steps.tsv")
    verdicts = judge_codecs(MATRIX_CLIENT, sent, deliveries, consumed, start, peer, failed_produce, partitioner=False)
    for codec in args.codecs:
        cells.judge(f"codec-{codec}", verdicts[codec])
    cells.judge("idempotence", checks, IDEMPOTENCE_CHECKS + ("kcat -P",))
    cells.report("admin", "skip", NO_ADMIN)
    summary = (
        f"{len(sent)} records ({args.records} per codec: {', '.join(args.codecs)}), "
        f"{args.partitions} partitions, topic {args.topic}"
    )
    return checks.report(summary)


def abandon(args: argparse.Namespace) -> int:
    """The round trip stopped before `verify`: its cells fail with the reason (admin is a skip
    whatever happened: kcat has none)."""
    cells = round_trip_cells(args.codecs)
    cells.report("admin", "skip", NO_ADMIN)
    cells.close(args.reason)
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["create", "inputs", "probes", "verify", "delete", "abandon"])
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic")
    parser.add_argument("--dir")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--codecs", default=",".join(CODECS))
    parser.add_argument("--peer", default="tidepool", choices=sorted(PEER_GAPS))
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--kcat-version", default="kcat")
    parser.add_argument("--reason", default="the round trip stopped early")
    args = parser.parse_args(argv)
    args.codecs = [c for c in args.codecs.split(",") if c]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    commands = {
        "create": create_topic,
        "inputs": write_inputs,
        "probes": write_probes,
        "verify": verify,
        "delete": delete_topic,
        "abandon": abandon,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
