"""The matrix cells the compat programs report (tests/matrix/README.md) say what happened: a
codec's cell fails for that codec's records alone, a cell a program promised is never left out,
and a groups cell combines its scenarios as groups_common.py says. No broker; run with the other
checker self-tests:

    python -m unittest discover -s tests/compat -p 'test_*.py'
"""

from __future__ import annotations

import json
import os
import tempfile
import unittest
from dataclasses import dataclass, replace

from compat_common import Cells, Checks, ConsumedRecord, Delivery, Peer, judge_codecs, make_records
from groups_common import MATRIX_CELLS, Client, cell_verdict, report_cells

PARTITIONS = 2


def healthy(codecs: tuple[str, ...] = ("none", "lz4", "zstd"), per_codec: int = 20):
    """Codecs produced one after another over 2 partitions, stored and read back correctly."""
    sent = []
    for codec in codecs:
        sent.extend(make_records(codec, per_codec, len(sent), 1_000_000 + len(sent)))
    deliveries: dict[int, Delivery] = {}
    consumed = []
    next_offset = [0] * PARTITIONS
    for record in sent:
        partition = record.index % PARTITIONS
        offset = next_offset[partition]
        next_offset[partition] += 1
        deliveries[record.index] = Delivery(partition, offset, record.timestamp_ms)
        consumed.append(
            ConsumedRecord(partition, offset, record.key, record.value, record.headers, record.timestamp_ms, "create")
        )
    return sent, deliveries, consumed


def verdicts(sent, deliveries, consumed, failures=None) -> dict[str, bool]:
    judged = judge_codecs(
        "self-test", sent, deliveries, consumed, {p: 0 for p in range(PARTITIONS)}, Peer("tidepool"),
        failures or {}, partitioner=False,
    )
    return {codec: checks.ok for codec, checks in judged.items()}


class CodecCells(unittest.TestCase):
    def test_a_healthy_run_passes_every_codec(self) -> None:
        self.assertEqual(verdicts(*healthy()), {"none": True, "lz4": True, "zstd": True})

    def test_a_mangled_record_fails_only_its_codec(self) -> None:
        sent, deliveries, consumed = healthy()
        victim = next(i for i, r in enumerate(consumed) if r.value and b"|lz4|" in r.value)
        consumed[victim] = replace(consumed[victim], value=b"garbage")
        self.assertEqual(verdicts(sent, deliveries, consumed), {"none": True, "lz4": False, "zstd": True})

    def test_a_lost_record_fails_only_its_codec(self) -> None:
        sent, deliveries, consumed = healthy()
        lost = next(i for i, r in enumerate(consumed) if r.value and b"|zstd|" in r.value)
        del consumed[lost]
        self.assertEqual(verdicts(sent, deliveries, consumed), {"none": True, "lz4": True, "zstd": False})

    def test_a_wrong_header_fails_only_its_codec(self) -> None:
        sent, deliveries, consumed = healthy()
        victim = next(i for i, r in enumerate(consumed) if r.value and b"|none|" in r.value and r.headers)
        consumed[victim] = replace(consumed[victim], headers=tuple(reversed(consumed[victim].headers)))
        self.assertEqual(verdicts(sent, deliveries, consumed), {"none": False, "lz4": True, "zstd": True})

    def test_a_refused_produce_fails_its_codec(self) -> None:
        result = verdicts(*healthy(), failures={"lz4": ["UNSUPPORTED_COMPRESSION_TYPE"]})
        self.assertEqual(result, {"none": True, "lz4": False, "zstd": True})


class CellReports(unittest.TestCase):
    def setUp(self) -> None:
        handle, self.path = tempfile.mkstemp(suffix=".jsonl")
        os.close(handle)
        self.saved = os.environ.get("TIDEPOOL_MATRIX")
        os.environ["TIDEPOOL_MATRIX"] = self.path

    def tearDown(self) -> None:
        if self.saved is None:
            os.environ.pop("TIDEPOOL_MATRIX", None)
        else:
            os.environ["TIDEPOOL_MATRIX"] = self.saved
        os.unlink(self.path)

    def lines(self) -> list[dict[str, str]]:
        with open(self.path) as matrix:
            return [json.loads(line) for line in matrix]

    def test_cells_left_open_fail_with_the_reason(self) -> None:
        cells = Cells("kcat", ["codec-none", "idempotence", "admin"])
        cells.report("admin", "skip", "kcat has no admin API")
        checks = Checks("self-test")
        checks.check("consume: no record read twice", False, "record 7 read again")
        cells.judge("idempotence", checks, ("consume:",))
        cells.close("aborted by TimeoutError")
        self.assertEqual(
            [(line["scenario"], line["result"], line["detail"]) for line in self.lines()],
            [
                ("admin", "skip", "kcat has no admin API"),
                ("idempotence", "fail", "consume: no record read twice: record 7 read again"),
                ("codec-none", "fail", "aborted by TimeoutError"),
            ],
        )
        with self.assertRaises(ValueError):
            cells.report("admin", True)

    def test_a_cell_judges_only_the_checks_named(self) -> None:
        cells = Cells("librdkafka", ["admin"])
        checks = Checks("self-test")
        checks.check("consume: key intact", False, "not an admin check")
        checks.check("admin: create topic", True)
        cells.judge("admin", checks, ("admin:",))
        self.assertEqual([line["result"] for line in self.lines()], ["pass"])


@dataclass
class FakeRun:
    scenario: str
    checks: Checks
    skipped: str | None = None
    client_lacks: bool = False


def run(scenario: str, failure: str | None = None, skipped: str | None = None, lacks: bool = False) -> FakeRun:
    checks = Checks(scenario)
    checks.check("every record read", failure is None, failure or "")
    return FakeRun(scenario, checks, skipped, lacks)


class GroupCells(unittest.TestCase):
    def test_every_groups_scenario_but_static_membership_is_in_a_cell(self) -> None:
        covered = {s for scenarios in MATRIX_CELLS.values() for s in scenarios}
        self.assertEqual(
            covered,
            {"exactly_once", "member_leaves", "member_killed", "cooperative_sticky", "commit_resume",
             "resume_after_broker_restart"},
        )

    def test_verdicts(self) -> None:
        passed = [run("exactly_once"), run("member_leaves"), run("member_killed")]
        self.assertEqual(cell_verdict(passed), ("pass", ""))
        failed = [run("exactly_once"), run("member_leaves", failure="3 records skipped"), run("member_killed")]
        self.assertEqual(cell_verdict(failed), ("fail", "member_leaves: every record read: 3 records skipped"))
        lacking = [run("cooperative_sticky", skipped="kafkajs: eager only", lacks=True)]
        self.assertEqual(cell_verdict(lacking), ("skip", "kafkajs: eager only"))
        harness = [run("commit_resume"), run("resume_after_broker_restart", skipped="needs --broker-command")]
        self.assertEqual(cell_verdict(harness)[0], "fail")

    def test_matrix_ids_of_the_groups_programs(self) -> None:
        names = {
            "confluent-kafka 2.16.1 (librdkafka 2.16.0)": "librdkafka",
            "kafka-python 3.0.12": "kafka-python",
            "kafkajs 2.2.4": "kafkajs",
            "kcat 1.7.1 (librdkafka 2.0.2)": "kcat",
            "aiokafka 0.14.0": "aiokafka",
        }
        for name, client in names.items():
            self.assertEqual(Client(name=name, member_argv=lambda spec: []).matrix_id(), client)

    def test_a_cell_is_reported_only_when_all_its_scenarios_ran(self) -> None:
        printed: list[str] = []
        import groups_common

        original = groups_common.matrix.report
        groups_common.matrix.report = lambda client, scenario, result, detail="": printed.append(scenario)
        try:
            client = Client(name="kafkajs 2.2.4", member_argv=lambda spec: [])
            report_cells(client, [run("exactly_once"), run("member_leaves"), run("member_killed"), run("commit_resume")])
        finally:
            groups_common.matrix.report = original
        self.assertEqual(printed, ["group-rebalance"])


if __name__ == "__main__":
    unittest.main()
