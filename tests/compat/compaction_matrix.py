"""The compaction scenario of the compatibility matrix (tests/matrix/README.md), judged once.

A client program creates the topic with `TOPIC_CONFIGS`, produces `plan()` in order (then, after
`ROLL_AFTER_S`, the `ROLL_KEY` record), and reads the partition from offset 0 to its end every
second until `settled()` says each key appears once (at most `WAIT_S`). `judge()` compares the
last read with what the delivery reports said and returns the failed checks (empty: pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

KEYS = 20
UPDATES = 200
TOMBSTONED = 5
PARTITIONS = 1
ROLL_KEY = b"roll"
ROLL_AFTER_S = 1.5
WAIT_S = 60.0

TOPIC_CONFIGS: dict[str, str] = {
    "cleanup.policy": "compact",
    "segment.ms": "1000",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "600000",
}


def key_name(index: int) -> bytes:
    return f"key-{index:02d}".encode()


def plan() -> list[tuple[bytes, bytes | None]]:
    """Updates round-robin over the keys, then a tombstone for the first TOMBSTONED keys."""
    records: list[tuple[bytes, bytes | None]] = []
    for update in range(UPDATES):
        key = key_name(update % KEYS)
        records.append((key, key + f"=v{update // KEYS}".encode()))
    for index in range(TOMBSTONED):
        records.append((key_name(index), None))
    return records


@dataclass(frozen=True)
class Read:
    offset: int
    key: bytes | None
    value: bytes | None


def settled(read: Sequence[Read]) -> bool:
    """Each of the KEYS keys appears exactly once: the cleaner has passed over the first segment."""
    counts: dict[bytes, int] = {}
    for record in read:
        if record.key is not None and record.key != ROLL_KEY:
            counts[record.key] = counts.get(record.key, 0) + 1
    return len(counts) == KEYS and all(count == 1 for count in counts.values())


def judge(produced: Sequence[tuple[bytes, bytes | None]], offsets: Sequence[int], roll_offset: int,
          read: Sequence[Read]) -> list[str]:
    """produced/offsets: the plan and the offset each delivery report named, in produce order."""
    failures: list[str] = []
    if len(offsets) != len(produced):
        return [f"{len(offsets)} delivery reports for {len(produced)} records"]
    latest: dict[bytes, tuple[int, bytes | None]] = {}
    for (key, value), offset in zip(produced, offsets):
        latest[key] = (offset, value)
    if not settled(read):
        failures.append(f"not compacted within {WAIT_S:.0f} s: {len(read)} records read, "
                        f"keys not yet unique")
    previous = -1
    for record in read:
        if record.offset <= previous:
            failures.append(f"offset {record.offset} after {previous}: offsets must increase")
        previous = record.offset
    seen = {record.key: record for record in read}
    for key, (offset, value) in sorted(latest.items()):
        record = seen.get(key)
        if record is None:
            failures.append(f"{key!r} is gone; its last record was at offset {offset}")
        elif (record.offset, record.value) != (offset, value):
            failures.append(f"{key!r} read as {record.value!r} at {record.offset}, "
                            f"expected {value!r} at {offset}")
    if len(read) >= len(produced) + 1:
        failures.append(f"{len(read)} records read of {len(produced) + 1} produced: nothing removed")
    if not read or read[-1].key != ROLL_KEY or read[-1].offset != roll_offset:
        failures.append(f"the last record read is not the roll record at offset {roll_offset}")
    return failures[:10]
