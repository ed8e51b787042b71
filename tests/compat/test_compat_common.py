"""The checker must catch what it claims to catch: a broker that loses, duplicates, reorders or
mangles records has to fail the compat run. These tests feed compat_common hand-made broken
round trips, with no broker, and run in a fraction of a second.

    python -m unittest discover -s tests/compat -p 'test_*.py'
"""

from __future__ import annotations

import unittest
from dataclasses import replace

from compat_common import (
    NO_OFFSET,
    Checks,
    ConsumedRecord,
    Delivery,
    Peer,
    check_deliveries,
    check_roundtrip,
    make_records,
    max_timestamp_expectation,
    timestamp_probes,
)

PARTITIONS = 3


def healthy_round_trip() -> tuple[list, dict[int, Delivery], list[ConsumedRecord]]:
    """30 records over 3 partitions as a correct broker would store and return them."""
    sent = make_records("gzip", 30, 0, 1_000_000)
    deliveries: dict[int, Delivery] = {}
    next_offset = [0] * PARTITIONS
    consumed = []
    for record in sent:
        assert record.timestamp_ms is not None
        partition = record.index % PARTITIONS
        offset = next_offset[partition]
        next_offset[partition] += 1
        deliveries[record.index] = Delivery(partition, offset, record.timestamp_ms)
        consumed.append(
            ConsumedRecord(partition, offset, record.key, record.value, record.headers, record.timestamp_ms, "create")
        )
    consumed.sort(key=lambda r: (r.partition, r.offset))
    return sent, deliveries, consumed


def failures(sent, deliveries, consumed) -> dict[str, list[str]]:
    checks = Checks("self-test")
    start = {p: 0 for p in range(PARTITIONS)}
    check_deliveries(checks, sent, deliveries, start, Peer("tidepool"), partitioner=False)
    check_roundtrip(checks, sent, deliveries, consumed, start)
    return {name: checks.failed[name] for name in checks.failed_counts}


class CheckerCatchesBrokenBrokers(unittest.TestCase):
    def test_a_correct_round_trip_passes(self) -> None:
        self.assertEqual(failures(*healthy_round_trip()), {})

    def test_a_lost_record_fails(self) -> None:
        sent, deliveries, consumed = healthy_round_trip()
        broken = [r for r in consumed if not (r.partition == 1 and r.offset == 4)]
        found = failures(sent, deliveries, broken)
        self.assertIn("consume: every record sent was read", found)
        self.assertIn("consume: offsets contiguous from the start offset", found)

    def test_a_duplicated_record_fails(self) -> None:
        sent, deliveries, consumed = healthy_round_trip()
        found = failures(sent, deliveries, consumed + [consumed[0]])
        self.assertIn("consume: no record read twice", found)

    def test_reordered_duplicate_headers_fail(self) -> None:
        sent, deliveries, consumed = healthy_round_trip()
        target = next(r for r in consumed if len(r.headers) == 5)
        swapped = target.headers[:2] + (target.headers[3], target.headers[2]) + target.headers[4:]
        broken = [replace(r, headers=swapped) if r is target else r for r in consumed]
        self.assertIn("consume: headers intact, order and duplicates kept", failures(sent, deliveries, broken))

    def test_collapsed_duplicate_headers_fail(self) -> None:
        sent, deliveries, consumed = healthy_round_trip()
        target = next(r for r in consumed if len(r.headers) == 5)
        collapsed = tuple(h for h in target.headers if h != ("dup", b"first"))
        broken = [replace(r, headers=collapsed) if r is target else r for r in consumed]
        self.assertIn("consume: headers intact, order and duplicates kept", failures(sent, deliveries, broken))

    def test_a_log_append_time_or_changed_timestamp_fails(self) -> None:
        sent, deliveries, consumed = healthy_round_trip()
        broken = [replace(consumed[0], timestamp_type="log_append", timestamp_ms=5)] + consumed[1:]
        found = failures(sent, deliveries, broken)
        self.assertIn("consume: timestamp type is CreateTime", found)
        self.assertIn("consume: timestamp is the one sent", found)

    def test_swapped_records_within_a_partition_fail(self) -> None:
        sent, deliveries, consumed = healthy_round_trip()
        a, b = consumed[0], consumed[1]
        broken = [replace(b, offset=a.offset), replace(a, offset=b.offset)] + consumed[2:]
        found = failures(sent, deliveries, broken)
        self.assertIn("consume: per-partition order is send order", found)
        self.assertIn("consume: partition and offset match the delivery report", found)

    def test_a_delivery_report_offset_gap_fails(self) -> None:
        sent, deliveries, consumed = healthy_round_trip()
        deliveries[0] = Delivery(0, 7, deliveries[0].timestamp_ms)
        self.assertIn("delivery reports: offsets contiguous in send order", failures(sent, deliveries, consumed))

    def test_a_changed_key_or_value_fails(self) -> None:
        sent, deliveries, consumed = healthy_round_trip()
        broken = [replace(consumed[0], key=b"other"), replace(consumed[1], value=b"garbage")] + consumed[2:]
        found = failures(sent, deliveries, broken)
        self.assertIn("consume: key intact", found)
        self.assertIn("consume: every record read is one we sent", found)


class TimestampExpectations(unittest.TestCase):
    def test_probes_answer_first_offset_at_or_after_the_time(self) -> None:
        consumed = [ConsumedRecord(0, o, b"k", b"v", (), ts, "create") for o, ts in enumerate([10, 10, 20, 30])]
        answers = {p.timestamp_ms: p.expected_offset for p in timestamp_probes(consumed)}
        self.assertEqual(answers[0], 0)
        self.assertEqual(answers[10], 0)
        self.assertEqual(answers[11], 2)
        self.assertEqual(answers[30], 3)
        self.assertEqual(answers[31], NO_OFFSET)

    def test_max_timestamp_is_the_first_record_with_the_largest_time(self) -> None:
        consumed = [ConsumedRecord(0, o, b"k", b"v", (), ts, "create") for o, ts in enumerate([10, 40, 40, 30])]
        self.assertEqual(max_timestamp_expectation(consumed), {0: (1, 40)})


if __name__ == "__main__":
    unittest.main()
