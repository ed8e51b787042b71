#!/usr/bin/env python3
"""kafkajs 2.2 (Node) against a broker: admin, idempotent produce with every codec, a read of
everything back, ListOffsets and metadata, topic configs, group administration and the
compaction scenario, each checked here with compat_common.py's checks. kafkajs_roundtrip.mjs
drives kafkajs and writes down what it answered; this program makes the records, runs it, and
judges.

    kafkajs_roundtrip.py --bootstrap HOST:PORT[,...] [--records 10000] [--partitions 4]
                         [--peer tidepool|kafka] [--timeout S]

Needs kafkajs and its codec plugins in tests/compat/node_modules (`npm ci` in tests/compat;
scripts/test setup does it) and `node` on PATH or in $TIDEPOOL_NODE. Exits 0 only when every
check passed.

What runs (see kafkajs_roundtrip.mjs for the kafkajs side and its quirks):
1. admin: createTopics (partitions - 1), createPartitions, fetchTopicMetadata, describeCluster,
   fetchTopicOffsets before and after producing;
2. per codec, 10,000 records (keys, one in 101 null; binary values; headers with a repeated name
   and an empty value; explicit CreateTime timestamps) from an idempotent producer
   (idempotent: true, maxInFlightRequests: 1, acks -1), each record's offset from its send's
   base offset; all read back by a one-member group from the beginning and checked record by
   record: codecs none and gzip are kafkajs's own, snappy, lz4 and zstd come from the plugins
   kafkajs-snappy, kafkajs-lz4 and @sensejs/kafkajs-zstd-support (@kafkajs/zstd, kafkajs's own
   zstd plugin, does not build with Node 18+: its cppzst 2.0.6 is compiled as C++11, and Node's
   headers need C++17);
3. fetchTopicOffsetsByTimestamp for timestamps before, at, between and after the records
   (kafkajs answers the end offset where Kafka answers -1, and that is what is expected);
4. the reader's group: listGroups, describeGroups (Empty, no members), fetchOffsets (the end
   offsets it committed), deleteGroups, listGroups again;
5. configs: createTopics with configs, describeConfigs (values, sources), alterConfigs with
   validateOnly (nothing changes), alterConfigs (the legacy AlterConfigs: the configs given
   replace every dynamic config of the topic, the others fall back to their defaults), a bad
   value refused with INVALID_CONFIG;
6. the compaction scenario of tests/matrix/README.md, judged by compaction_matrix.py (before any
   topic is deleted: a kafkajs producer cannot send once a topic it sent to is gone);
7. deleteTopics (all three topics), and listTopics stops naming them.

Matrix cells (client `kafkajs`): codec-<codec>, idempotence, admin (steps 1, 3-5, 7),
compaction. A codec plugin that does not load fails its codec cell, with the error: the plugins
are in package.json, so that is a broken install (`npm ci`), not something kafkajs lacks.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import compaction_matrix as compaction
from compat_common import (
    IDEMPOTENCE_CHECKS,
    NO_OFFSET,
    Cells,
    Checks,
    ConsumedRecord,
    Delivery,
    SentRecord,
    check_deliveries,
    check_metadata,
    check_roundtrip,
    check_timestamp_lookup,
    check_watermarks,
    first_timestamp_for_run,
    judge_codecs,
    make_records,
    parse_args,
    run_main,
    timestamp_probes,
    unique_topic,
)
from configs_common import CREATED_WITH, KAFKA_DEFAULTS, check_described

HERE = Path(__file__).resolve().parent
PROGRAM = HERE / "kafkajs_roundtrip.mjs"
MATRIX_CLIENT = "kafkajs"

# kafkajs's configSource numbers (DescribeConfigs v1+) by Kafka's ConfigSource names.
CONFIG_SOURCES = {
    0: "UNKNOWN",
    1: "DYNAMIC_TOPIC_CONFIG",
    2: "DYNAMIC_BROKER_CONFIG",
    3: "DYNAMIC_DEFAULT_BROKER_CONFIG",
    4: "STATIC_BROKER_CONFIG",
    5: "DEFAULT_CONFIG",
    6: "DYNAMIC_BROKER_LOGGER_CONFIG",
}
# AlterConfigs (not incremental) with only this: the topic's other dynamic configs go back to
# their defaults.
ALTERED = {"retention.ms": "7200000"}
AFTER_ALTER = {
    "retention.ms": ("7200000", "DYNAMIC_TOPIC_CONFIG"),
    "cleanup.policy": ("delete", "DEFAULT_CONFIG"),
    "segment.bytes": ("1073741824", "DEFAULT_CONFIG"),
}


def kafkajs_version() -> str:
    path = HERE / "node_modules" / "kafkajs" / "package.json"
    try:
        return json.loads(path.read_text())["version"]
    except OSError:
        sys.exit(f"kafkajs is not installed ({path} missing): run `npm ci` in {HERE} (scripts/test setup does)")


def node() -> str:
    found = os.environ.get("TIDEPOOL_NODE") or shutil.which("node")
    if not found:
        sys.exit("node is not on PATH (set TIDEPOOL_NODE, or install Node.js; scripts/test setup does)")
    return found


CLIENT = f"kafkajs {kafkajs_version()}"


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def write_records(path: Path, records: list[SentRecord]) -> None:
    with path.open("w") as out:
        for r in records:
            line = {
                "index": r.index,
                "codec": r.codec,
                "key": b64(r.key),
                "value": b64(r.value),
                "headers": [[name, b64(value)] for name, value in r.headers],
                "timestamp": r.timestamp_ms,
            }
            out.write(json.dumps(line) + "\n")


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def to_consumed(event: dict[str, Any]) -> ConsumedRecord:
    return ConsumedRecord(
        event["partition"],
        event["offset"],
        unb64(event["key"]),
        unb64(event["value"]),
        tuple((name, unb64(value)) for name, value in event["headers"]),
        event["timestamp"],
        event["timestamp_type"],
    )


def run_node(plan: dict[str, Any], out_file: Path, timeout: float) -> tuple[int | None, str]:
    """Runs the Node program; answers its one question (the timestamps to look up) from what it
    has read so far. Returns its exit status (None: killed after `timeout`) and stderr's tail."""
    process = subprocess.Popen(
        [node(), str(PROGRAM), json.dumps(plan)],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    stderr: list[str] = []
    readers = [threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)]  # type: ignore[arg-type]
    readers[0].start()
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        process.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        assert process.stdout is not None and process.stdin is not None
        for line in process.stdout:
            event = json.loads(line)
            if event.get("ev") == "probes":
                consumed = [to_consumed(e) for e in read_events(out_file) if e["t"] == "consumed"]
                times = sorted({probe.timestamp_ms for probe in timestamp_probes(consumed)})
                process.stdin.write(json.dumps(times) + "\n")
                process.stdin.flush()
        status = process.wait()
    finally:
        timer.cancel()
    readers[0].join(5)
    for line in stderr[-15:]:
        print(f"   node | {line.rstrip()}")
    return (None if expired.is_set() else status), "".join(stderr[-5:])


class Answers:
    """The Node program's calls by name (the last of each name) and its other events."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.calls: dict[str, dict[str, Any]] = {}
        for event in events:
            if event["t"] == "call":
                self.calls[event["name"]] = event

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["t"] == kind]

    def result(self, checks: Checks, check: str, name: str) -> Any:
        """The call's result; a missing or failed call fails `check` and gives None."""
        call = self.calls.get(name)
        if call is None:
            checks.fail(check, f"{name} was not called (the run stopped before it)")
            return None
        if not checks.check(check, call["ok"], f"{name} failed: {call.get('error')}"):
            return None
        return call.get("result")


def judge_admin_topic(checks: Checks, answers: Answers, args: Any) -> tuple[dict[int, int], dict[int, int]]:
    """Steps 1 and the offsets: returns the earliest and latest offsets after producing."""
    created = answers.result(checks, "admin: createTopics", "admin.createTopics")
    checks.check("admin: createTopics", created is None or created is True, f"createTopics answered {created!r}")
    if args.partitions > 1:
        answers.result(checks, "admin: createPartitions", "admin.createPartitions")
    metadata = answers.result(checks, "admin: fetchTopicMetadata", "admin.fetchTopicMetadata")
    cluster = answers.result(checks, "admin: describeCluster", "admin.describeCluster")
    brokers = {b["nodeId"] for b in (cluster or {}).get("brokers", [])}
    if cluster is not None:
        checks.check(
            "admin: describeCluster",
            cluster.get("controller") in brokers and bool(cluster.get("clusterId")),
            f"controller {cluster.get('controller')}, brokers {sorted(brokers)}, "
            f"cluster id {cluster.get('clusterId')!r}",
        )
    if metadata is not None:
        partitions = metadata["topics"][0]["partitions"]
        leaders = {p["partitionId"]: p["leader"] for p in partitions}
        check_metadata(checks, "admin.fetchTopicMetadata", leaders, brokers, args.partitions)
    before = answers.result(checks, "admin: fetchTopicOffsets", "admin.fetchTopicOffsets (before producing)")
    if before is not None:
        checks.check(
            "admin: fetchTopicOffsets",
            all(int(p["low"]) == int(p["high"]) == 0 for p in before) and len(before) == args.partitions,
            f"a new topic: {before}",
        )
    after = answers.result(checks, "admin: fetchTopicOffsets", "admin.fetchTopicOffsets (after producing)") or []
    return {int(p["partition"]): int(p["low"]) for p in after}, {int(p["partition"]): int(p["high"]) for p in after}


def judge_offsets_by_time(
    checks: Checks, answers: Answers, consumed: list[ConsumedRecord], latest: dict[int, int]
) -> None:
    """kafkajs answers the end offset where Kafka answers -1 (no record at or after the time)."""
    probes = timestamp_probes(consumed)
    got: dict[tuple[int, int], int] = {}
    for timestamp in sorted({p.timestamp_ms for p in probes}):
        answer = answers.result(
            checks, "admin: fetchTopicOffsetsByTimestamp", f"admin.fetchTopicOffsetsByTimestamp {timestamp}"
        )
        for entry in answer or []:
            got[(int(entry["partition"]), timestamp)] = int(entry["offset"])
    expected = [
        p if p.expected_offset != NO_OFFSET else type(p)(p.partition, p.timestamp_ms, latest.get(p.partition, -1), None)
        for p in probes
    ]
    check_timestamp_lookup(checks, "admin.fetchTopicOffsetsByTimestamp", expected, got)


def judge_groups(checks: Checks, answers: Answers, group: str, topic: str, latest: dict[int, int]) -> None:
    listed = answers.result(checks, "admin: listGroups", "admin.listGroups")
    if listed is not None:
        mine = [g for g in listed["groups"] if g["groupId"] == group]
        checks.check(
            "admin: listGroups",
            len(mine) == 1 and mine[0].get("protocolType") == "consumer",
            f"the reader's group {group}: {mine}",
        )
    described = answers.result(checks, "admin: describeGroups", "admin.describeGroups")
    if described is not None:
        found = described["groups"][0] if described.get("groups") else {}
        checks.check(
            "admin: describeGroups",
            found.get("groupId") == group
            and found.get("errorCode") == 0
            and found.get("state") == "Empty"
            and found.get("members") == []
            and found.get("protocolType") == "consumer",
            f"described {json.dumps(found)[:300]}",
        )
    fetched = answers.result(checks, "admin: fetchOffsets", "admin.fetchOffsets")
    if fetched is not None:
        committed = {
            int(p["partition"]): int(p["offset"]) for t in fetched if t["topic"] == topic for p in t["partitions"]
        }
        checks.check(
            "admin: fetchOffsets",
            committed == latest,
            f"committed {dict(sorted(committed.items()))}, the reader committed the end offsets {latest}",
        )
    deleted = answers.result(checks, "admin: deleteGroups", "admin.deleteGroups")
    if deleted is not None:
        checks.check(
            "admin: deleteGroups",
            [(d.get("groupId"), d.get("errorCode")) for d in deleted] == [(group, 0)],
            f"answered {deleted}",
        )
    after = answers.result(checks, "admin: listGroups after deleteGroups", "admin.listGroups (after deleteGroups)")
    if after is not None:
        checks.check(
            "admin: listGroups after deleteGroups",
            all(g["groupId"] != group for g in after["groups"]),
            f"{group} still listed",
        )


def described(answer: list[dict[str, Any]] | None) -> dict[str, tuple[str | None, str]]:
    return {e["configName"]: (e["configValue"], CONFIG_SOURCES.get(e["configSource"], "?")) for e in answer or []}


def judge_configs(checks: Checks, answers: Answers) -> None:
    answers.result(checks, "admin: createTopics with configs", "admin.createTopics (with configs)")
    created = {name: (value, "DYNAMIC_TOPIC_CONFIG") for name, value in CREATED_WITH.items()}
    created.update({name: (value, "DEFAULT_CONFIG") for name, value in KAFKA_DEFAULTS.items()})
    name = "admin: describeConfigs: values and sources"
    answer = answers.result(checks, name, "admin.describeConfigs (created)")
    if answer is not None:
        check_described(checks, name, described(answer), created)
        for entry in answer:
            checks.check(
                name,
                entry["isDefault"] == (CONFIG_SOURCES.get(entry["configSource"]) == "DEFAULT_CONFIG"),
                f"{entry['configName']}: isDefault {entry['isDefault']}, source {entry['configSource']}",
            )
    name = "admin: alterConfigs validateOnly changes nothing"
    answers.result(checks, name, "admin.alterConfigs (validateOnly)")
    answer = answers.result(checks, name, "admin.describeConfigs (after validateOnly)")
    if answer is not None:
        check_described(checks, name, described(answer), created)
    name = "admin: alterConfigs replaces the topic's dynamic configs"
    answers.result(checks, name, "admin.alterConfigs")
    answer = answers.result(checks, name, "admin.describeConfigs (altered)")
    if answer is not None:
        check_described(checks, name, described(answer), AFTER_ALTER)
    bad = answers.calls.get("admin.alterConfigs (a bad value)")
    checks.check(
        "admin: alterConfigs refuses a bad value with INVALID_CONFIG",
        bad is not None and not bad["ok"] and "INVALID_CONFIG" in bad.get("error", ""),
        f"answered {bad}",
    )


def judge_delete(checks: Checks, answers: Answers) -> None:
    answers.result(checks, "admin: deleteTopics", "admin.deleteTopics")
    listed = answers.result(checks, "admin: deleteTopics", "admin.listTopics (after deleteTopics)")
    if listed is not None:
        checks.check("admin: deleteTopics", listed == [], f"still listed by listTopics: {listed}")


def judge_compaction(checks: Checks, cells: Cells, answers: Answers) -> None:
    name = "compaction: each key once, its latest value at its offset"
    found = answers.of("compaction")
    if not found:
        failed = [c for n, c in answers.calls.items() if n.startswith("compaction") and not c["ok"]]
        reason = f"{failed[0]['name']}: {failed[0]['error']}" if failed else "the scenario did not finish"
        checks.fail(name, reason)
        cells.report("compaction", False, reason)
        return
    result = found[-1]
    print(f"   compaction: {result['rounds']} reads from offset 0 in {result['seconds']:.1f} s")
    read = [compaction.Read(o, unb64(k), unb64(v)) for o, k, v in (result["read"] or [])]
    if result["read"] is None:
        failures = ["a read from offset 0 did not reach the roll record in time"]
    else:
        failures = compaction.judge(compaction.plan(), result["offsets"], result["roll_offset"], read)
    for failure in failures:
        checks.fail(name, failure)
    if not failures:
        checks.check(name, True)
    cells.report("compaction", not failures, failures[0] if failures else "")


def main(checks: Checks, args: Any, cells: Cells) -> int:
    topic = args.topic or unique_topic("kafkajs")
    print(f"== {CLIENT} against {args.bootstrap} (peer {args.peer.name}), topic {topic}")
    reason = args.peer.lacks("admin-controller")
    if reason:
        checks.skip("everything", f"peer {args.peer.name}: {reason}")
        cells.not_applicable(f"peer {args.peer.name} cannot create topics")
        return checks.report("skipped")
    first_timestamp = first_timestamp_for_run()
    sent: list[SentRecord] = []
    for codec in args.codecs:
        sent.extend(make_records(codec, args.records, len(sent), first_timestamp + len(sent)))
    with tempfile.TemporaryDirectory(prefix="tidepool-kafkajs-") as work:
        records_file = Path(work) / "records.jsonl"
        out_file = Path(work) / "answers.jsonl"
        write_records(records_file, sent)
        plan = {
            "bootstrap": args.bootstrap,
            "topic": topic,
            "partitions": args.partitions,
            "codecs": args.codecs,
            "records_file": str(records_file),
            "out_file": str(out_file),
            "timeout_ms": int(args.timeout * 1000),
            "configs_topic": f"{topic}-configs",
            "configs": CREATED_WITH,
            "altered": list(ALTERED.items()),
            "compaction": {
                "topic": f"{topic}-compaction",
                "configs": compaction.TOPIC_CONFIGS,
                "plan": [[b64(k), b64(v)] for k, v in compaction.plan()],
                "roll_key": b64(compaction.ROLL_KEY),
                "roll_value": b64(b"roll"),
                "roll_after_ms": int(compaction.ROLL_AFTER_S * 1000),
                "keys": compaction.KEYS,
                "wait_ms": int(compaction.WAIT_S * 1000),
            },
        }
        status, stderr_tail = run_node(plan, out_file, timeout=max(300.0, args.timeout * 3))
        answers = Answers(read_events(out_file))
    checks.check(
        "node kafkajs_roundtrip.mjs exits 0",
        status == 0,
        f"exit status {'none (killed at the time limit)' if status is None else status}; {stderr_tail.strip()[-300:]}",
    )
    if "run completed" in answers.calls:
        checks.fail("run completed", answers.calls["run completed"]["error"])

    earliest, latest = judge_admin_topic(checks, answers, args)
    available = {e["codec"]: e for e in answers.of("codec")}
    deliveries = {e["index"]: Delivery(e["partition"], e["offset"]) for e in answers.of("delivery")}
    consumed = [to_consumed(e) for e in answers.of("consumed")]
    ran = [r for r in sent if available.get(r.codec, {}).get("available")]
    produce_failures: dict[str, list[str]] = defaultdict(list)
    for codec in args.codecs:
        if codec not in available:
            produce_failures[codec].append("the run stopped before this codec")
        elif available[codec]["available"]:
            call = answers.calls.get(f"producer.send ({codec})")
            if not checks.check(f"produce ({codec}): every record acknowledged", bool(call and call["ok"]), f"{call}"):
                produce_failures[codec].append(f"producer.send failed: {call and call.get('error')}")
        else:
            checks.fail(f"codec plugin ({codec}) loads", available[codec]["reason"])
            produce_failures[codec].append(available[codec]["reason"])
    start = {p: 0 for p in range(args.partitions)}
    check_deliveries(checks, ran, deliveries, start, args.peer)
    partitions = range(args.partitions)
    check_watermarks(checks, "admin.fetchTopicOffsets", ran, deliveries, partitions, earliest, latest, start)
    answers.result(checks, "consume: reached the end of every partition", "consumer: read every partition to its end")
    check_roundtrip(checks, ran, deliveries, consumed, start)
    verdicts = judge_codecs(MATRIX_CLIENT, ran, deliveries, consumed, start, args.peer, produce_failures)
    for codec in args.codecs:
        if codec in verdicts:
            cells.judge(f"codec-{codec}", verdicts[codec])
        else:
            cells.report(f"codec-{codec}", False, "; ".join(produce_failures[codec]) or "no record of it was produced")
    cells.judge("idempotence", checks, IDEMPOTENCE_CHECKS + ("node kafkajs_roundtrip.mjs",))

    judge_offsets_by_time(checks, answers, consumed, latest)
    judge_groups(checks, answers, f"{topic}-reader", topic, latest)
    judge_configs(checks, answers)
    judge_delete(checks, answers)
    cells.judge("admin", checks, ("admin", "metadata", "list offsets", "node kafkajs_roundtrip.mjs", "run completed"))
    judge_compaction(checks, cells, answers)
    codecs_run = ", ".join(codec for codec in args.codecs if available.get(codec, {}).get("available"))
    summary = f"{len(ran)} records ({args.records} per codec run: {codecs_run}), {args.partitions} partitions, topic {topic}"
    return checks.report(summary)


if __name__ == "__main__":
    ARGS = parse_args(__doc__)
    CELLS = Cells(MATRIX_CLIENT, [f"codec-{c}" for c in ARGS.codecs] + ["idempotence", "admin", "compaction"])
    run_main(lambda checks: main(checks, ARGS, CELLS), CLIENT, CELLS)
