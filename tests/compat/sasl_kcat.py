#!/usr/bin/env python3
"""kcat (librdkafka as Debian ships it, driven as a command) logging in to a broker that requires
SASL, as it does to Apache Kafka 4's SASL_PLAINTEXT listener.

    sasl_kcat.py --bootstrap HOST:PORT --user NAME --password PASSWORD [--scenario NAME ...]

- roundtrip-PLAIN: `kcat -L` lists the broker, `-P` produces lines and `-C` reads them back.
- wrong-password-PLAIN: kcat exits non-zero within its metadata timeout, printing Kafka's message.
- scram-<MECHANISM>: librdkafka 2.6.1 and later log in; older ones repeat the client nonce in
  the client-final message (fixed by confluentinc/librdkafka#4895), which Kafka 4 refuses, so
  with them kcat must fail with the authentication error, as it does against Kafka 4.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from control_common import expect
from sasl_common import authentication_message, parse_args, run, unique

args = parse_args(__doc__ or "")
KCAT = os.environ.get("KCAT", shutil.which("kcat") or "kcat")
KCAT_TIMEOUT_S = 60
METADATA_TIMEOUT_S = "5"


def librdkafka_version() -> tuple[int, ...]:
    shown = subprocess.run([KCAT, "-V"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", shown)
    expect(found is not None, f"kcat -V does not name its librdkafka: {shown}")
    return tuple(int(part) for part in found.groups())  # type: ignore[union-attr]


def kcat(mechanism: str, *arguments: str, password: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [
        KCAT, "-b", args.bootstrap, "-X", "security.protocol=SASL_PLAINTEXT",
        "-X", f"sasl.mechanisms={mechanism}", "-X", f"sasl.username={args.user}",
        "-X", f"sasl.password={password or args.password}", *arguments,
    ]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=KCAT_TIMEOUT_S, check=False)


def roundtrip_plain() -> None:
    listed = kcat("PLAIN", "-L", "-m", METADATA_TIMEOUT_S)
    expect(listed.returncode == 0 and "broker" in listed.stdout, f"kcat -L failed: {listed.stderr[-2000:]}")
    topic = unique("kcat", "plain")
    lines = [f"{topic}-{index}" for index in range(10)]
    produced = kcat("PLAIN", "-P", "-t", topic, "-p", "0", stdin="\n".join(lines) + "\n")
    expect(produced.returncode == 0, f"kcat -P failed: {produced.stderr[-2000:]}")
    consumed = kcat("PLAIN", "-C", "-t", topic, "-o", "beginning", "-e", "-c", str(len(lines)))
    expect(consumed.returncode == 0, f"kcat -C failed: {consumed.stderr[-2000:]}")
    expect(consumed.stdout.split() == lines, f"read back {consumed.stdout.split()[:3]}...")


def refused(mechanism: str, password: str) -> None:
    done = kcat(mechanism, "-L", "-m", METADATA_TIMEOUT_S, password=password)
    expect(done.returncode != 0, "kcat listed metadata without logging in")
    expect(
        "SASL authentication error" in done.stderr and authentication_message(done.stderr),
        f"kcat did not report Kafka's authentication error: {done.stderr[-2000:]}",
    )


def scram(mechanism: str) -> None:
    if librdkafka_version() >= (2, 6, 1):
        listed = kcat(mechanism, "-L", "-m", METADATA_TIMEOUT_S)
        expect(listed.returncode == 0, f"kcat -L with {mechanism} failed: {listed.stderr[-2000:]}")
    else:
        refused(mechanism, args.password)


run(
    "kcat",
    [
        ("roundtrip-PLAIN", roundtrip_plain),
        ("wrong-password-PLAIN", lambda: refused("PLAIN", args.password + "-wrong")),
        ("scram-SCRAM-SHA-256", lambda: scram("SCRAM-SHA-256")),
        ("scram-SCRAM-SHA-512", lambda: scram("SCRAM-SHA-512")),
    ],
    args.scenario,
)
