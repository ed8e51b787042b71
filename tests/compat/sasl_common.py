"""What the SASL client programs share (sasl_confluent.py, sasl_kafka_python.py, sasl_kcat.py):
their arguments, the records they send, and the scenario runner of control_common (with no
control plane to reset).

A broker for these programs requires SASL log-in (tests/sasl_clients.rs starts one, or
`tidepool serve --sasl-user NAME:PASSWORD`; Apache Kafka with a SASL_PLAINTEXT listener and
the same users serves too) and offers PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence

from control_common import expect, run_scenarios

MECHANISMS: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
RECORDS = 20
# A client told its password is wrong must say so well before this; a hang fails the scenario.
AUTH_FAILURE_WITHIN_S = 20.0
ROUND_TRIP_WITHIN_S = 60.0
UNKNOWN_USER = "mallory"


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
    parser.add_argument("--user", required=True, help="a user the broker knows")
    parser.add_argument("--password", required=True, help="that user's password")
    parser.add_argument("--scenario", action="append", default=[], help="run only these (repeatable)")
    return parser.parse_args()


def unique(kind: str, mechanism: str) -> str:
    """A topic or group name of its own per scenario and run."""
    return f"sasl-{kind}-{mechanism.lower()}-{int(time.time() * 1000) % 10_000_000}-{os.getpid()}"


def values(topic: str) -> list[bytes]:
    """The values produced to `topic`, in order."""
    return [f"{topic}-{index}".encode() for index in range(RECORDS)]


def expect_values(got: Sequence[bytes], topic: str) -> None:
    want = values(topic)
    expect(list(got) == want, f"consumed {len(got)} records, not the {len(want)} produced in order: {list(got)[:3]}...")


def authentication_message(text: str) -> bool:
    """Kafka's words for a refused log-in (PLAIN's own, or the generic one SCRAM gets)."""
    return "Authentication failed" in text


class _NoControl:
    def reset(self) -> None:
        pass


def run(client: str, scenarios: Sequence[tuple[str, Callable[[], None]]], only: Sequence[str]) -> None:
    run_scenarios(client, _NoControl(), scenarios, only)  # type: ignore[arg-type]
