#!/usr/bin/env python3
"""kcat (librdkafka as Debian ships it, driven as a command) experiencing the test control
plane, driven over HTTP, and behaving as it does against Apache Kafka.

    control_kcat.py --bootstrap HOST:PORT[,...] --control http://HOST:PORT [--scenario NAME ...]

- retriable_produce_errors: errors pushed on Produce are retried by kcat's idempotent producer;
  each line is stored once and the request log shows the errors under kcat's client id.
- closed_metadata: the broker closes the connection on kcat's first Metadata; `kcat -L` still
  lists the topic (librdkafka reconnects).
- version_cap_2_8: with Kafka 2.8's versions advertised, kcat produces and consumes within them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from control_common import ControlPlane, expect, parse_args, run_scenarios, unique

args = parse_args(__doc__ or "")
control = ControlPlane(args.control)
KCAT = os.environ.get("KCAT", shutil.which("kcat") or "kcat")
KCAT_TIMEOUT_S = 60


def kcat(*arguments: str, client_id: str, stdin: str | None = None) -> str:
    """Runs kcat against the broker; fails the scenario with its stderr when it fails."""
    command = [KCAT, "-b", args.bootstrap, "-X", f"client.id={client_id}", *arguments]
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=KCAT_TIMEOUT_S, check=False
    )
    expect(done.returncode == 0, f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def produce(topic: str, lines: list[str], client_id: str) -> None:
    kcat(
        "-P", "-t", topic, "-p", "0",
        "-X", "enable.idempotence=true", "-X", "acks=all",
        client_id=client_id, stdin="\n".join(lines) + "\n",
    )


def consume(topic: str, count: int, client_id: str) -> list[str]:
    out = kcat("-C", "-t", topic, "-o", "beginning", "-e", "-c", str(count), client_id=client_id)
    return [line for line in out.splitlines() if line]


def logged(since: int, client_id: str, api: str) -> list[dict[str, Any]]:
    return [
        entry for entry in control.requests(since)
        if entry["client_id"] == client_id and entry["api"] == api
    ]


def retriable_produce_errors() -> None:
    topic, client_id = unique("topic", "kcat-errors"), unique("client", "kcat-errors")
    # The topic first, so the errors meet the produce and not an auto-creation round.
    produce(topic, ["warm-up"], client_id)
    since = control.next_seq()
    control.push_errors("Produce", ["NOT_LEADER_OR_FOLLOWER", "REQUEST_TIMED_OUT"])
    lines = [f"line-{index}" for index in range(10)]
    produce(topic, lines, client_id)
    read = consume(topic, 11, client_id)
    expect(read == ["warm-up", *lines], f"read {read}, wanted each line once, in order")
    codes = [entry["error_codes"] for entry in logged(since, client_id, "Produce")]
    expect(codes[:2] == [[6], [7]] and codes[-1] == [], f"Produce answers seen by kcat: {codes}")


def closed_metadata() -> None:
    topic, client_id = unique("topic", "kcat-close"), unique("client", "kcat-close")
    produce(topic, ["x"], client_id)
    since = control.next_seq()
    control.intercept(api="Metadata", action="close", times=1)
    listing = kcat("-L", "-t", topic, client_id=client_id)
    expect(f'topic "{topic}"' in listing, f"kcat -L after a closed connection: {listing}")
    outcomes = [entry["outcome"] for entry in logged(since, client_id, "Metadata")]
    expect(len(outcomes) >= 2 and "close" in outcomes[0], f"Metadata requests seen: {outcomes}")


def version_cap_2_8() -> None:
    topic, client_id = unique("topic", "kcat-cap"), unique("client", "kcat-cap")
    control.cap_versions("2.8")
    since = control.next_seq()
    produce(topic, ["old-1", "old-2"], client_id)
    read = consume(topic, 2, client_id)
    expect(read == ["old-1", "old-2"], f"read {read} under the 2.8 cap")
    versions = {
        api: max((entry["version"] for entry in logged(since, client_id, api)), default=None)
        for api in ("Produce", "Fetch", "Metadata")
    }
    expect(
        versions["Produce"] is not None and versions["Produce"] <= 9
        and versions["Fetch"] is not None and versions["Fetch"] <= 12
        and versions["Metadata"] is not None and versions["Metadata"] <= 11,
        f"newest versions kcat used under the 2.8 cap: {versions}",
    )


SCENARIOS = [
    ("retriable_produce_errors", retriable_produce_errors),
    ("closed_metadata", closed_metadata),
    ("version_cap_2_8", version_cap_2_8),
]

if __name__ == "__main__":
    version = subprocess.run([KCAT, "-V"], capture_output=True, text=True, check=False).stdout.splitlines()
    print(f"== {version[0] if version else 'kcat'}, control plane", flush=True)
    run_scenarios("kcat, control plane", control, SCENARIOS, args.scenario)
