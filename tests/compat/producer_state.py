"""An idempotent producer's own state after its flush, for the idempotence cell of the matrix
(kafka_python_roundtrip.py, aiokafka_roundtrip.py): it holds a producer id (InitProducerId was
answered), and its next sequence number per partition is the number of records acknowledged
there (each record takes one sequence number; a retried batch keeps its numbers). Both clients
keep this state privately; the programs read it from there.

The checks are named `idempotence: ...` (STATE_CHECKS), judged with compat_common's
IDEMPOTENCE_CHECKS.
"""

from __future__ import annotations

from collections import defaultdict

from compat_common import Checks, Delivery

STATE_CHECKS: tuple[str, ...] = ("idempotence:",)


def check_producer_state(
    checks: Checks, codec: str, producer_id: int | None, sequences: dict[int, int], deliveries: dict[int, Delivery]
) -> None:
    """`sequences`: the producer's next sequence number per partition it wrote to; `deliveries`:
    the records it had acknowledged."""
    checks.check(
        "idempotence: the producer got a producer id (InitProducerId)",
        producer_id is not None and producer_id >= 0,
        f"{codec} producer: producer id {producer_id}",
    )
    acknowledged: dict[int, int] = defaultdict(int)
    for delivery in deliveries.values():
        acknowledged[delivery.partition] += 1
    checks.check(
        "idempotence: sequence numbers advanced by the records acknowledged",
        {p: s for p, s in sequences.items() if s} == dict(acknowledged),
        f"{codec} producer: next sequence per partition {dict(sorted(sequences.items()))}, "
        f"records acknowledged {dict(sorted(acknowledged.items()))}",
    )
