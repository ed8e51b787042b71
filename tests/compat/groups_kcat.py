#!/usr/bin/env python3
"""kcat (1.7.1 on librdkafka 2.0.2) consumer groups against a broker: every scenario of
groups_common.py, each member a `kcat -G` process.

    groups_kcat.py --bootstrap HOST:PORT[,...] [--scenario NAME ...] [--broker-command CMD]

Prints one PASS/FAIL/SKIP line per scenario; exits 0 only when none failed. With `--member SPEC`
it is one group member instead: a small wrapper that runs kcat and turns what kcat prints into
groups_common.py's member protocol.

kcat specifics:
- `kcat -G GROUP TOPIC -J -u` is librdkafka's KafkaConsumer: subscribe, a rebalance callback
  that prints every assignment and revocation on stderr (`% Group G rebalanced (memberid M):
  assigned: T [0], T [3]`; with the cooperative protocol `... incremental assignment of 2
  partition(s) (memberid M, COOPERATIVE rebalance protocol): T [0], T [3]`, and `assignment
  lost` when the session was lost), one JSON object per record on stdout;
- everything else is librdkafka configuration (-X): session.timeout.ms, heartbeat.interval.ms,
  max.poll.interval.ms, auto.offset.reset=earliest (no -o, which would override the committed
  offsets), partition.assignment.strategy=cooperative-sticky, group.instance.id. The default
  assignors are librdkafka's eager "range,roundrobin";
- kcat commits by itself (librdkafka's auto-commit every 5 s, and on revocation and close) and
  says nothing about it, so members report no commits: the scenarios judge the committed offsets
  with OffsetFetch (Client.reports_commits=False);
- kcat 1.7.1 loses a record when it is stopped while records flow: a record that
  rd_kafka_consumer_poll returns after SIGTERM is dropped unprinted (its consume callback returns
  at once once the run flag is down), but librdkafka has already stored its offset, and the
  close commits it, so the next owner starts after it. kcat cannot turn auto-commit off either:
  `-X enable.auto.commit=false` lands on the topic-level legacy alias of that name (kcat tries
  the topic configuration first), which the KafkaConsumer ignores. In the two scenarios that
  stop a member gracefully while records are produced (member_leaves, cooperative_sticky) the
  members therefore run with enable.auto.offset.store=false (a global property, so it does
  apply): nothing is stored, nothing committed, the next owner starts from the earliest offset
  (records read twice, which those scenarios allow) and the rebalance itself is what is judged.
  Everywhere else (exactly_once, commit_resume, ...) members stop only once everything was read,
  and commit;
- SIGTERM makes kcat close its consumer (LeaveGroup unless static, final commit) and exit 0:
  that is "stop". The wrapper starts kcat with PR_SET_PDEATHSIG=SIGKILL, so SIGKILL of the
  member (the wrapper) kills kcat at once too, as member_killed and static_membership need;
- a non-fatal client error is a `% ERROR: ...` line (reported as a warning); kcat exits 1 on a
  fatal one or a consume error (reported as an error).
"""

from __future__ import annotations

import ctypes
import json
import re
import signal
import subprocess
import sys
import threading
from typing import Any

from groups_common import Client, MemberOutput, main, stop_requested

PR_SET_PDEATHSIG = 1
# Scenarios where a member is stopped while records flow (see above): no offsets stored there.
NO_COMMIT_SCENARIOS = frozenset({"member_leaves", "cooperative_sticky"})

EAGER = re.compile(r"^% Group \S+ rebalanced \(memberid (\S*)\): (assigned|revoked): (.*)$")
INCREMENTAL = re.compile(
    r"^% Group \S+ rebalanced: incremental (assignment|revoke) of \d+ partition\(s\) "
    r"\(memberid (\S*?)(, assignment lost)?, \w+ rebalance protocol\): (.*)$"
)
PARTITION = re.compile(r"\[(\d+)\]")


def kcat_version() -> str:
    try:
        banner = subprocess.run(["kcat", "-V"], capture_output=True, text=True, timeout=10).stdout
    except FileNotFoundError:
        raise SystemExit("kcat is not installed (apt-get install kcat; scripts/test setup does)") from None
    found = re.search(r"^Version (\S+) .*librdkafka (\S+)", banner, re.MULTILINE)
    return f"kcat {found.group(1)} (librdkafka {found.group(2)})" if found else "kcat"


def die_with_parent() -> None:
    """In the kcat child, before exec: SIGKILL when the wrapper dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def kcat_argv(spec: dict[str, Any]) -> list[str]:
    settings = {
        "client.id": spec["name"],
        "auto.offset.reset": "earliest",
        "session.timeout.ms": spec["session_timeout_ms"],
        "heartbeat.interval.ms": spec["heartbeat_interval_ms"],
        "max.poll.interval.ms": spec["max_poll_interval_ms"],
        "allow.auto.create.topics": "false",
        "fetch.wait.max.ms": 100,
    }
    if spec.get("scenario") in NO_COMMIT_SCENARIOS:
        settings["enable.auto.offset.store"] = "false"
    if spec["assignor"] == "cooperative-sticky":
        settings["partition.assignment.strategy"] = "cooperative-sticky"
    if spec.get("instance_id"):
        settings["group.instance.id"] = spec["instance_id"]
    argv = ["kcat", "-b", spec["bootstrap"], "-G", spec["group"], "-J", "-u"]
    for name, value in settings.items():
        argv += ["-X", f"{name}={value}"]
    return argv + [spec["topic"]]


def member(spec: dict[str, Any]) -> int:
    out = MemberOutput()
    stop = stop_requested(spec, out)
    kcat = subprocess.Popen(
        kcat_argv(spec),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        preexec_fn=die_with_parent,
    )

    def records() -> None:
        assert kcat.stdout is not None
        for line in kcat.stdout:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
                out(ev="records", records=[[message["partition"], message["offset"], message["payload"]]])
            except (ValueError, KeyError) as error:
                out(ev="error", error=f"kcat printed something that is not a record ({error}): {line.strip()[:200]}")

    def rebalances() -> None:
        assert kcat.stderr is not None
        for line in kcat.stderr:
            line = line.rstrip("\n")
            print(line, file=sys.stderr, flush=True)
            eager = EAGER.match(line)
            incremental = INCREMENTAL.match(line)
            if eager:
                member_id, what, listed = eager.groups()
                partitions = sorted(int(p) for p in PARTITION.findall(listed))
                if what == "assigned":
                    out(ev="assign", mode="eager", partitions=partitions, member_id=member_id)
                else:
                    out(ev="revoke", mode="eager", partitions=partitions)
            elif incremental:
                what, member_id, lost, listed = incremental.groups()
                partitions = sorted(int(p) for p in PARTITION.findall(listed))
                if what == "assignment":
                    out(ev="assign", mode="incremental", partitions=partitions, member_id=member_id)
                elif lost:
                    out(ev="lost", partitions=partitions)
                else:
                    out(ev="revoke", mode="incremental", partitions=partitions)
            elif line.startswith("% ERROR:"):
                if line.endswith(": terminating"):
                    out(ev="error", error=line[2:])
                else:
                    out(ev="warning", warning=line[2:])

    readers = [threading.Thread(target=records, daemon=True), threading.Thread(target=rebalances, daemon=True)]
    for reader in readers:
        reader.start()
    # Until "stop": kcat exiting by itself is a failure.
    while not stop.wait(0.1):
        if kcat.poll() is not None:
            for reader in readers:
                reader.join(5)
            out(ev="error", error=f"kcat exited by itself with status {kcat.returncode}")
            return 1
    kcat.send_signal(signal.SIGTERM)
    try:
        status = kcat.wait(30)
    except subprocess.TimeoutExpired:
        kcat.kill()
        out(ev="error", error="kcat did not exit within 30 s of SIGTERM")
        return 1
    for reader in readers:
        reader.join(5)
    if status != 0:
        out(ev="error", error=f"kcat exited with status {status} after SIGTERM")
        return 1
    out(ev="closed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--member":
        sys.exit(member(json.loads(sys.argv[2])))
    main(
        Client(
            name=kcat_version(),
            member_argv=lambda spec: [sys.executable, __file__, "--member", json.dumps(spec)],
            reports_commits=False,
        )
    )
