"""The consumer-group judgements of groups_common.py catch what they are meant to catch: records
skipped, read twice, read at the wrong place or unknown; assignments that overlap, leave a
partition out or leave a member empty. Run by scripts/test with the other checker self-tests:

    python -m unittest discover -s tests/compat -p 'test_*.py'
"""

from __future__ import annotations

import unittest
from dataclasses import dataclass, field

from compat_common import Checks
from groups_common import PARTITIONS, check_reads, settled


@dataclass
class FakeMember:
    name: str
    records: list[tuple[int, int, str]] = field(default_factory=list)
    assignment: set[int] = field(default_factory=set)

    def consumed(self) -> list[tuple[int, int, str]]:
        return list(self.records)

    def current(self) -> set[int]:
        return set(self.assignment)


def produced(count: int) -> dict[str, tuple[int, int]]:
    """Record i at partition i mod PARTITIONS, offset i // PARTITIONS, as the Source produces."""
    return {f"t:{i}": (i % PARTITIONS, i // PARTITIONS) for i in range(count)}


def reads(values: dict[str, tuple[int, int]]) -> list[tuple[int, int, str]]:
    return [(p, o, v) for v, (p, o) in values.items()]


class CheckReadsTest(unittest.TestCase):
    def judge(self, members: list[FakeMember], exactly_once: bool, count: int = 60) -> tuple[Checks, list[str]]:
        checks = Checks("self-test")
        notes: list[str] = []
        check_reads(checks, produced(count), members, exactly_once=exactly_once, notes=notes)  # type: ignore[arg-type]
        return checks, notes

    def test_everything_read_once_passes(self) -> None:
        everything = reads(produced(60))
        members = [FakeMember("a", everything[:30]), FakeMember("b", everything[30:])]
        checks, notes = self.judge(members, exactly_once=True)
        self.assertTrue(checks.ok, checks.failed)
        self.assertEqual(notes, [])

    def test_a_skipped_record_fails_both_modes(self) -> None:
        everything = reads(produced(60))
        for exactly_once in (True, False):
            checks, _ = self.judge([FakeMember("a", everything[1:])], exactly_once)
            self.assertIn("records: none skipped", checks.failed)

    def test_a_duplicate_fails_exactly_once_and_is_noted_otherwise(self) -> None:
        everything = reads(produced(60))
        members = [FakeMember("a", everything), FakeMember("b", everything[5:7])]
        checks, _ = self.judge(members, exactly_once=True)
        self.assertIn("records: none read twice", checks.failed)
        checks, notes = self.judge(members, exactly_once=False)
        self.assertTrue(checks.ok, checks.failed)
        self.assertTrue(notes and notes[0].startswith("2 records read twice"), notes)

    def test_a_record_at_the_wrong_place_or_unknown_fails(self) -> None:
        everything = reads(produced(60))
        p, o, v = everything[10]
        moved = everything[:10] + [(p, o + 1, v)] + everything[11:]
        checks, _ = self.judge([FakeMember("a", moved)], exactly_once=False)
        self.assertIn("records: every record read is one produced, where it was produced", checks.failed)
        checks, _ = self.judge([FakeMember("a", everything + [(0, 999, "t:999")])], exactly_once=False)
        self.assertIn("records: every record read is one produced, where it was produced", checks.failed)


class SettledTest(unittest.TestCase):
    def test_disjoint_cover_with_every_member_assigned(self) -> None:
        members = [
            FakeMember("a", assignment={0, 1}),
            FakeMember("b", assignment={2, 3}),
            FakeMember("c", assignment={4, 5}),
        ]
        self.assertEqual(settled(members), {"a": {0, 1}, "b": {2, 3}, "c": {4, 5}})  # type: ignore[arg-type]

    def test_overlap_gap_or_empty_member_is_not_settled(self) -> None:
        overlap = [FakeMember("a", assignment={0, 1, 2}), FakeMember("b", assignment={2, 3, 4, 5})]
        gap = [FakeMember("a", assignment={0, 1}), FakeMember("b", assignment={2, 3, 4})]
        empty = [FakeMember("a", assignment=set(range(PARTITIONS))), FakeMember("b")]
        for members in (overlap, gap, empty):
            self.assertIsNone(settled(members))  # type: ignore[arg-type]


if __name__ == "__main__":
    unittest.main()
