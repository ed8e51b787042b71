"""Consumer-group scenarios shared by every client: the orchestrator, the member protocol, the checks.

Each client program (groups_confluent.py, groups_kafka_python.py, groups_kafkajs.py) only knows
how to run one group member of its client; everything else lives here once, so a scenario
passed by one client is judged by the same rules as every other's.

Members run as separate processes (the orchestrator must be able to SIGKILL and restart one),
started as `<client program> --member '<json spec>'` (or the Node program for kafkajs). A member
subscribes to one topic in one group, with enable.auto.commit off, auto.offset.reset earliest,
session.timeout.ms 6000 and heartbeat.interval.ms 1000 unless the scenario says otherwise, and
talks JSON lines:

    stdout, one object per line, flushed at once:
      {"ev": "assign", "mode": "eager"|"incremental", "partitions": [..], "member_id": ".."}
      {"ev": "revoke", "mode": "eager"|"incremental", "partitions": [..]}
      {"ev": "lost", "partitions": [..]}
      {"ev": "records", "records": [[partition, offset, "value"], ..]}  printed BEFORE the commit
      {"ev": "commit", "offsets": {"partition": next_offset, ..}}       after a synchronous commit
      {"ev": "commit_error", "error": ".."}  a refused commit (allowed only around rebalances)
      {"ev": "error", "error": ".."}         a client error: fails the scenario
      {"ev": "warning", "warning": ".."}     something the client recovered from: reported
      {"ev": "closed"}                       after a clean close
    stdin: the line "stop" (or end of file): close the consumer cleanly (LeaveGroup unless
      static) and exit 0. A member whose spec says "hold" prints {"ev": "held"} once started
      and creates its consumer only when stdin says "go".

"eager" assign/revoke carry the member's whole new/old assignment; "incremental" ones (the
cooperative protocol) only the partitions added/removed. Records are reported before they are
committed, so a member killed between the two makes records show up twice (allowed where a
member fails) and never makes a committed record look unread.

The orchestrator produces with an idempotent confluent-kafka producer (record i goes to
partition i mod 6; values `<tag>:<i>`; these scenarios test consumers, not producers),
administers through confluent-kafka's AdminClient (CreateTopics, DescribeGroups, ListGroups,
DeleteGroups, DeleteTopics), reads committed offsets (OffsetFetch) through a confluent-kafka
Consumer that never subscribes (see Admin.committed), and judges:

    exactly_once                3 members, 6 partitions: the group settles at 2 partitions each,
                                DescribeGroups/ListGroups agree; records produced then are each
                                read exactly once; committed offsets = log end; the emptied
                                group can be deleted
    member_leaves               a member closes (LeaveGroup) while records flow: its partitions
                                move to the others well before its session timeout (30 s here)
                                could expire; no record skipped (duplicates reported)
    member_killed               a member is SIGKILLed: its partitions stay put until its session
                                (6 s) can have expired, then move within session timeout + 5 s;
                                no record skipped
    cooperative_sticky          cooperative-sticky assignor: a third member joining takes
                                partitions only by incremental revocation (the others keep the
                                rest, never revoked); a member leaving hands its partitions over
                                with no revocation elsewhere; protocol named in DescribeGroups
    static_membership           group.instance.id on every member; one is SIGKILLed and restarted
                                at once (its replacement process waits, started, for the kill):
                                it gets its old partitions back under a new member id, the
                                others see no rebalance at all for the next session timeout + 3 s,
                                DescribeGroups stays Stable with the same instances
    commit_resume               manual commits; all members stop; more records; new members
                                resume exactly at the committed offsets (nothing re-read, nothing
                                missing)
    resume_after_broker_restart the same with the broker restarted in between (--broker-command,
                                below): committed offsets survive it (OffsetFetch after restart)

--broker-command "CMD ARGS": a broker the orchestrator itself starts, stops and starts again, for
resume_after_broker_restart only (every other scenario uses --bootstrap). CMD must print
`... ready bootstrap=HOST:PORT[,...]` as its first stdout line, serve until SIGTERM (or until
its stdin closes), and keep its data across runs (Tidepool: `tidepool serve --listen
127.0.0.1:0 --data-dir DIR` with DIR fresh before the first start; Kafka:
tests/compat/kafka_restartable.sh DIR). Without it that scenario is reported SKIP with the reason.

Scenarios run in parallel (one thread each, own topic and group); each prints one PASS, FAIL
or SKIP line, failures with their reasons and the tail of each member's stderr.

Matrix cells (tests/matrix/README.md), reported for the program's client when every scenario of
a cell was run (MATRIX_CELLS): group-rebalance <- exactly_once, member_leaves, member_killed (each
member on the client's default assignor, eager for every client here: librdkafka
"range,roundrobin", kafka-python range and round robin, kafkajs round robin, kcat librdkafka's);
group-cooperative <- cooperative_sticky; commits <- commit_resume, resume_after_broker_restart. A
cell fails with the first failure of the first failed scenario; a scenario the client lacks makes
its cell a skip with the client's reason; one not run for want of --broker-command fails it.
static_membership is in no cell.
"""

from __future__ import annotations

import argparse
import faulthandler
import itertools
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import matrix
from compat_common import Checks

PARTITIONS = 6
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
# Bounds a rebalance (librdkafka and kafka-python send max.poll.interval.ms as the rebalance
# timeout); far above anything a scenario needs, far below the clients' 300 s default.
MAX_POLL_INTERVAL_MS = 30_000
# member_leaves: a session timeout so long that partitions moving quickly can only be LeaveGroup.
LEAVE_SESSION_TIMEOUT_MS = 30_000
LEAVE_MOVE_MAX_S = 10.0
# member_killed: partitions move after session timeout - one heartbeat interval at the earliest
# (the last heartbeat may have been that old at the kill), at the latest after the session
# timeout plus this slack (a heartbeat to learn of the rebalance, JoinGroup, SyncGroup).
KILL_SLACK_S = 5.0
KILL_EARLIEST_S = (SESSION_TIMEOUT_MS - HEARTBEAT_INTERVAL_MS) / 1000 - 1.0
# static_membership: how long the other members must stay untouched after the restart.
STATIC_QUIET_S = SESSION_TIMEOUT_MS / 1000 + 3.0

SCENARIOS: tuple[str, ...] = (
    "exactly_once",
    "member_leaves",
    "member_killed",
    "cooperative_sticky",
    "static_membership",
    "commit_resume",
    "resume_after_broker_restart",
)

# Cells of the compatibility matrix (tests/matrix/scenarios.json) and the scenarios behind each.
MATRIX_CELLS: dict[str, tuple[str, ...]] = {
    "group-rebalance": ("exactly_once", "member_leaves", "member_killed"),
    "group-cooperative": ("cooperative_sticky",),
    "commits": ("commit_resume", "resume_after_broker_restart"),
}

# A client's matrix id from the start of its name, when the program does not name it.
MATRIX_CLIENT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("confluent-kafka", "librdkafka"),
    ("kafka-python", "kafka-python"),
    ("aiokafka", "aiokafka"),
    ("kafkajs", "kafkajs"),
    ("kcat", "kcat"),
)


@dataclass(frozen=True)
class Client:
    """What a client program tells the orchestrator: its name, how to start one member, and the
    scenarios it cannot run at all (a client feature that does not exist), with the reason."""

    name: str
    member_argv: Callable[[dict[str, Any]], list[str]]
    unsupported: dict[str, str] = field(default_factory=dict)
    # Extra environment for member processes.
    env: dict[str, str] = field(default_factory=dict)
    # The client's id in tests/matrix/scenarios.json; None: from the start of `name`.
    matrix_client: str | None = None
    # Whether members report their own commits ({"ev": "commit"}): a client that commits by
    # itself (kcat: librdkafka's auto-commit) cannot, and its commits are judged by OffsetFetch.
    reports_commits: bool = True

    def matrix_id(self) -> str:
        if self.matrix_client:
            return self.matrix_client
        for prefix, client in MATRIX_CLIENT_PREFIXES:
            if self.name.lower().startswith(prefix):
                return client
        raise ValueError(f"no matrix client id for {self.name!r}: set Client.matrix_client")


def member_spec(
    bootstrap: str,
    topic: str,
    group: str,
    name: str,
    *,
    instance_id: str | None = None,
    assignor: str = "default",
    session_timeout_ms: int = SESSION_TIMEOUT_MS,
    hold: bool = False,
    scenario: str = "",
) -> dict[str, Any]:
    """The JSON a member program receives; every client maps it onto its own configuration."""
    return {
        "bootstrap": bootstrap,
        "topic": topic,
        "group": group,
        "name": name,
        "instance_id": instance_id,
        "assignor": assignor,  # "default" (the client's eager default) or "cooperative-sticky"
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
        "max_poll_interval_ms": max(MAX_POLL_INTERVAL_MS, session_timeout_ms),
        # Start the process (interpreter, client library) but create the consumer only on "go":
        # a restart then takes the client's time to join, not the time to start a program.
        "hold": hold,
        # The scenario the member takes part in, for a client whose member must differ in one
        # (groups_kcat.py); the others ignore it.
        "scenario": scenario,
    }


# ---------------------------------------------------------------------------------------------
# Waiting.


def wait_until(condition: Callable[[], Any], timeout: float, poll: float = 0.05) -> Any:
    """Polls `condition` until it returns something truthy (returned) or `timeout` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)


# ---------------------------------------------------------------------------------------------
# Member processes.


@dataclass
class Event:
    at: float  # time.monotonic() when the orchestrator read the line
    ev: dict[str, Any]


# Every child process started, so that SIGTERM/SIGINT (e.g. `timeout` in scripts/test) can end
# them before this process goes: brokers run in their own session and would outlive it.
_CHILDREN: set[Any] = set()
_CHILDREN_LOCK = threading.Lock()


def _register(child: Any) -> None:
    with _CHILDREN_LOCK:
        _CHILDREN.add(child)


def _on_termination(signum: int, _frame: Any) -> None:
    print(f"== interrupted by signal {signum}: stopping members and brokers", flush=True)
    with _CHILDREN_LOCK:
        children = list(_CHILDREN)
    for child in children:
        if isinstance(child, Member):
            child.process.kill()
    for child in children:
        if isinstance(child, BrokerProcess):
            child.stop(15)
    os._exit(128 + signum)


class Member:
    """One member process and everything it reported, in order, stamped on arrival."""

    def __init__(self, client: Client, spec: dict[str, Any]) -> None:
        self.name: str = spec["name"]
        self.spec = spec
        self.lock = threading.Lock()
        self.events: list[Event] = []
        self.assignment: set[int] = set()
        self.records: list[tuple[int, int, str]] = []
        self.commits: dict[int, int] = {}
        self.member_id: str | None = None
        self.errors: list[str] = []
        self.commit_errors: list[str] = []
        self.warnings: list[str] = []
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self.closed = threading.Event()
        self.held = threading.Event()
        self.killed_at: float | None = None
        env = dict(os.environ)
        env.update(client.env)
        self.process = subprocess.Popen(
            client.member_argv(spec),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        _register(self)
        self.started_at = time.monotonic()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                with self.lock:
                    self.stderr_tail.append(f"(stdout, not JSON) {line}")
                continue
            self._apply(Event(time.monotonic(), ev))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self.lock:
                self.stderr_tail.append(line.rstrip())

    def _apply(self, event: Event) -> None:
        ev = event.ev
        kind = ev.get("ev")
        with self.lock:
            self.events.append(event)
            partitions = set(ev.get("partitions") or [])
            if kind == "assign":
                if ev.get("mode") == "incremental":
                    self.assignment |= partitions
                else:
                    self.assignment = partitions
                if ev.get("member_id"):
                    self.member_id = ev["member_id"]
            elif kind == "revoke":
                if ev.get("mode") == "incremental":
                    self.assignment -= partitions
                else:
                    self.assignment = set()
            elif kind == "lost":
                self.assignment -= partitions if partitions else set(self.assignment)
            elif kind == "records":
                self.records.extend((int(p), int(o), str(v)) for p, o, v in ev["records"])
            elif kind == "commit":
                for p, o in ev["offsets"].items():
                    self.commits[int(p)] = int(o)
            elif kind == "commit_error":
                self.commit_errors.append(str(ev.get("error")))
            elif kind == "error":
                self.errors.append(str(ev.get("error")))
            elif kind == "warning":
                self.warnings.append(str(ev.get("warning")))
            elif kind == "closed":
                self.closed.set()
            elif kind == "held":
                self.held.set()

    # Views, each a consistent copy.

    def current(self) -> set[int]:
        with self.lock:
            return set(self.assignment)

    def consumed(self) -> list[tuple[int, int, str]]:
        with self.lock:
            return list(self.records)

    def event_count(self) -> int:
        with self.lock:
            return len(self.events)

    def events_since(self, index: int, kinds: Iterable[str] = ("assign", "revoke", "lost")) -> list[Event]:
        wanted = set(kinds)
        with self.lock:
            return [e for e in self.events[index:] if e.ev.get("ev") in wanted]

    def alive(self) -> bool:
        return self.process.poll() is None

    # Control.

    def stop(self, timeout: float = 30.0) -> int | None:
        """Asks for a clean close; returns the exit status, or None if it did not exit in time
        (then it is killed)."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.write("stop\n")
            self.process.stdin.flush()
            self.process.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def go(self) -> None:
        """Lets a member started with hold=True create its consumer."""
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        """SIGKILL: no LeaveGroup, no commit, no goodbye."""
        if self.process.poll() is None:
            self.killed_at = time.monotonic()
            self.process.kill()
        self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)

    def describe(self) -> str:
        with self.lock:
            return (
                f"{self.name}: assignment {sorted(self.assignment)}, {len(self.records)} records, "
                f"exit {self.process.poll()}, errors {self.errors[:3]}"
            )


def settled(members: Sequence[Member], partitions: int = PARTITIONS) -> dict[str, set[int]] | None:
    """The members' assignments when they are disjoint, cover every partition and each member has
    one (every member has joined the latest generation); None otherwise."""
    view = {m.name: m.current() for m in members}
    union: set[int] = set()
    for assigned in view.values():
        if not assigned or union & assigned:
            return None
        union |= assigned
    return view if union == set(range(partitions)) else None


def wait_settled(members: Sequence[Member], timeout: float) -> dict[str, set[int]] | None:
    """Waits for `settled`; gives up at once when one of the members has exited."""
    deadline = time.monotonic() + timeout
    while True:
        view = settled(members)
        if view is not None or time.monotonic() >= deadline or not all(m.alive() for m in members):
            return view
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Producing, with confluent-kafka (not the client under test: these scenarios test consumers).


class Source:
    """Produces records `<tag>:<i>` to partition i mod PARTITIONS, remembering where each landed."""

    def __init__(self, bootstrap: str, topic: str, tag: str, logger: logging.Logger) -> None:
        self.topic = topic
        self.tag = tag
        self.logger = logger
        self.lock = threading.Lock()
        self.next_index = 0
        self.delivered: dict[str, tuple[int, int]] = {}
        self.errors: list[str] = []
        self._stream: threading.Thread | None = None
        self._stop = threading.Event()
        self.producer: Any = None
        self.open(bootstrap)

    def open(self, bootstrap: str) -> None:
        """A new producer handle (after close(), e.g. for a restarted broker); what was delivered
        before stays known and record numbers go on."""
        from confluent_kafka import Producer

        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "allow.auto.create.topics": False,
                "logger": self.logger,
            }
        )

    def close(self, timeout: float = 30.0) -> None:
        """Stops any stream, waits for outstanding deliveries and destroys the handle."""
        if self.producer is None:
            return
        try:
            self.stop_stream(timeout)
        finally:
            self.producer = None

    def _on_delivery(self, error: Any, message: Any) -> None:
        with self.lock:
            if error is not None:
                self.errors.append(f"{message.value()!r}: {error}")
            else:
                self.delivered[message.value().decode()] = (message.partition(), message.offset())

    def _send(self, count: int) -> None:
        for _ in range(count):
            with self.lock:
                index = self.next_index
                self.next_index += 1
            value = f"{self.tag}:{index}"
            while True:
                try:
                    self.producer.produce(
                        self.topic, value=value.encode(), partition=index % PARTITIONS, on_delivery=self._on_delivery
                    )
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)

    def produce(self, count: int, timeout: float = 60.0) -> None:
        """Produces `count` records and waits for every delivery report."""
        self._send(count)
        left = self.producer.flush(timeout)
        if left:
            raise TimeoutError(f"{left} records not delivered within {timeout}s")

    def start_stream(self, per_tick: int = 20, tick_s: float = 0.05) -> None:
        """Keeps producing in the background (about per_tick/tick_s records a second)."""
        self._stop.clear()

        def run() -> None:
            while not self._stop.is_set():
                self._send(per_tick)
                self._stop.wait(tick_s)

        self._stream = threading.Thread(target=run, daemon=True)
        self._stream.start()

    def stop_stream(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._stream is not None:
            self._stream.join()
            self._stream = None
        left = self.producer.flush(timeout)
        if left:
            raise TimeoutError(f"{left} records not delivered within {timeout}s")

    def produced(self) -> dict[str, tuple[int, int]]:
        with self.lock:
            return dict(self.delivered)

    def end_offsets(self) -> dict[int, int]:
        """Per partition, one past the last delivered offset (0 when nothing was delivered)."""
        ends = {p: 0 for p in range(PARTITIONS)}
        for partition, offset in self.produced().values():
            ends[partition] = max(ends[partition], offset + 1)
        return ends


# ---------------------------------------------------------------------------------------------
# Administration, with confluent-kafka's AdminClient.


class Admin:
    def __init__(self, bootstrap: str, logger: logging.Logger) -> None:
        from confluent_kafka.admin import AdminClient

        self.bootstrap = bootstrap
        self.logger = logger
        self.client = AdminClient(
            {"bootstrap.servers": bootstrap, "allow.auto.create.topics": False, "logger": logger}
        )

    def create_topic(self, topic: str, timeout: float) -> None:
        from confluent_kafka.admin import NewTopic

        futures = self.client.create_topics([NewTopic(topic, PARTITIONS, 1)], operation_timeout=timeout)
        futures[topic].result(timeout)
        # Creation is acknowledged before every broker's metadata shows it (on Kafka).
        def visible() -> bool:
            found = self.client.list_topics(topic, timeout=5).topics.get(topic)
            return found is not None and found.error is None and len(found.partitions) == PARTITIONS

        if not wait_until(visible, timeout, poll=0.1):
            raise TimeoutError(f"topic {topic} not visible with {PARTITIONS} partitions in time")

    def delete_topic(self, topic: str, timeout: float) -> None:
        self.client.delete_topics([topic], operation_timeout=timeout)[topic].result(timeout)

    def describe_group(self, group: str, timeout: float = 15.0) -> Any:
        return self.client.describe_consumer_groups([group], request_timeout=timeout)[group].result(timeout)

    def list_groups(self, timeout: float = 15.0) -> dict[str, Any]:
        result = self.client.list_consumer_groups(request_timeout=timeout).result(timeout)
        return {g.group_id: g for g in result.valid}

    def committed(self, group: str, topic: str, timeout: float = 30.0) -> dict[int, int]:
        """OffsetFetch for every partition; retried while the coordinator is loading or moving
        (as after a broker restart). Partitions without a committed offset are left out.

        Asked through a Consumer that never subscribes (so it never joins the group), not the
        AdminClient: librdkafka 2.16's admin ListConsumerGroupOffsets crashes the process
        (SIGSEGV in rd_kafka_cgrp_op called from rd_kafka_handle_OffsetFetch, an admin handle
        having no consumer group) when the answer carries a retriable error such as
        COORDINATOR_LOAD_IN_PROGRESS, which Kafka sends right after a restart."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "allow.auto.create.topics": False,
                "logger": self.logger,
            }
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    answer = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
                    errors = [tp for tp in answer if tp.error is not None]
                    if not errors:
                        return {tp.partition: tp.offset for tp in answer if tp.offset >= 0}
                    failure: Exception = RuntimeError(
                        f"partition errors {[(tp.partition, str(tp.error)) for tp in errors]}"
                    )
                except KafkaException as error:
                    failure = error
                if time.monotonic() >= deadline:
                    raise failure
                time.sleep(0.5)
        finally:
            consumer.close()

    def delete_group(self, group: str, timeout: float = 15.0) -> None:
        self.client.delete_consumer_groups([group], request_timeout=timeout)[group].result(timeout)


# ---------------------------------------------------------------------------------------------
# Judging what was read.


def check_reads(
    checks: Checks,
    produced: dict[str, tuple[int, int]],
    members: Sequence[Member],
    exactly_once: bool,
    notes: list[str],
    label: str = "records",
) -> None:
    """Every read record is one produced, at the partition and offset its delivery report named;
    every produced record was read; with `exactly_once`, none twice (otherwise duplicates are
    counted in `notes`, as the rebalance of a failing member allows)."""
    at = {where: value for value, where in produced.items()}
    counts: Counter[tuple[int, int]] = Counter()
    for member in members:
        for partition, offset, value in member.consumed():
            counts[(partition, offset)] += 1
            expected = at.get((partition, offset))
            checks.check(
                f"{label}: every record read is one produced, where it was produced",
                expected == value,
                f"{member.name} read {value!r} at partition {partition} offset {offset}, "
                f"produced there: {expected!r}",
            )
    missing = sorted(where for where in at if counts[where] == 0)
    checks.check(
        f"{label}: none skipped",
        not missing,
        f"{len(missing)} of {len(at)} produced records never read, e.g. (partition, offset) {missing[:6]}",
    )
    twice = sorted((where, n) for where, n in counts.items() if n > 1 and where in at)
    if exactly_once:
        checks.check(
            f"{label}: none read twice",
            not twice,
            f"{len(twice)} records read more than once, e.g. ((partition, offset), times) {twice[:6]}",
        )
    elif twice:
        notes.append(
            f"{len(twice)} records read twice (allowed where a member fails or the group rebalances), "
            f"e.g. {twice[:3]}"
        )


def all_read(produced: Callable[[], dict[str, tuple[int, int]]], members: Sequence[Member]) -> bool:
    wanted = set(produced().values())
    seen: set[tuple[int, int]] = set()
    for member in members:
        seen.update((p, o) for p, o, _ in member.consumed())
    return wanted <= seen


def wait_all_read(source: Source, members: Sequence[Member], timeout: float) -> bool:
    return bool(wait_until(lambda: all_read(source.produced, members), timeout, poll=0.1))


def assignments_text(view: dict[str, set[int]] | None) -> str:
    if view is None:
        return "not settled"
    return ", ".join(f"{name}={sorted(parts)}" for name, parts in sorted(view.items()))


# ---------------------------------------------------------------------------------------------
# One scenario run.


class BrokerProcess:
    """A broker the orchestrator starts and stops itself (see --broker-command)."""

    READY = re.compile(r"ready bootstrap=(\S+)")

    def __init__(self, argv: list[str], log_path: str) -> None:
        self.argv = argv
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        _register(self)

    def start(self, timeout: float) -> str:
        log = open(self.log_path, "a")
        log.write(f"=== starting {shlex.join(self.argv)}\n")
        log.flush()
        self.process = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
        )
        log.close()
        first: list[str] = []
        stdout = self.process.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: first.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not first or not first[0]:
            self.stop(10)
            raise RuntimeError(f"broker command printed no ready line within {timeout}s (log {self.log_path})")
        found = self.READY.search(first[0])
        if not found:
            self.stop(10)
            raise RuntimeError(f"broker command's first line is not '... ready bootstrap=...': {first[0]!r}")
        process = self.process
        threading.Thread(target=lambda: process.stdout.read(), daemon=True).start()  # type: ignore[union-attr]
        return found.group(1)

    def stop(self, timeout: float = 60.0) -> int | None:
        """Closes its stdin and sends SIGTERM; kills its process group if it does not exit."""
        process = self.process
        if process is None:
            return None
        self.process = None
        try:
            assert process.stdin is not None
            process.stdin.close()
        except OSError:
            pass
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
            return None


RUN_NUMBERS = itertools.count(1)  # topic and group names stay unique when a scenario repeats


class DequeHandler(logging.Handler):
    def __init__(self, lines: deque[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class Run:
    """One scenario: its own topic, group, members and verdict."""

    def __init__(self, client: Client, scenario: str, bootstrap: str, args: argparse.Namespace) -> None:
        self.client = client
        self.scenario = scenario
        self.bootstrap = bootstrap
        self.args = args
        self.timeout: float = args.timeout
        stamp = f"{int(time.time() * 1000)}-{os.getpid()}-{next(RUN_NUMBERS)}"
        slug = re.sub(r"[^a-z0-9]+", "-", client.name.lower()).strip("-")[:24]
        self.topic = f"groups-{slug}-{scenario}-{stamp}"
        self.group = f"group-{slug}-{scenario}-{stamp}"
        self.tag = f"{scenario}-{stamp}"
        self.checks = Checks(f"{client.name}: {scenario}")
        self.notes: list[str] = []
        self.members: list[Member] = []
        self.started = time.monotonic()
        self.seconds = 0.0
        self.skipped: str | None = None
        self.client_lacks = False  # skipped because the client lacks the feature (not the harness)
        self.broker: BrokerProcess | None = None
        self._admin: Admin | None = None
        self._source: Source | None = None
        # librdkafka's log lines of our own handles: shown with a failure, not on every run.
        self.client_log: deque[str] = deque(maxlen=30)
        self.logger = logging.getLogger(f"groups.{scenario}.{stamp}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(DequeHandler(self.client_log))

    # Helpers used by the scenarios.

    @property
    def admin(self) -> Admin:
        if self._admin is None:
            self._admin = Admin(self.bootstrap, self.logger)
        return self._admin

    @property
    def source(self) -> Source:
        if self._source is None:
            self._source = Source(self.bootstrap, self.topic, self.tag, self.logger)
        return self._source

    def close_handles(self) -> None:
        """Destroys the admin and producer handles (before the broker stops)."""
        if self._source is not None:
            self._source.close()
        self._admin = None

    def reconnect(self, bootstrap: str) -> None:
        """New handles for a broker that came back (maybe on another address)."""
        self.close_handles()
        self.bootstrap = bootstrap
        if self._source is not None:
            self._source.open(bootstrap)

    def member(self, name: str, **options: Any) -> Member:
        spec = member_spec(self.bootstrap, self.topic, self.group, name, scenario=self.scenario, **options)
        member = Member(self.client, spec)
        self.members.append(member)
        return member

    def check(self, name: str, ok: bool, reason: str = "") -> bool:
        return self.checks.check(name, ok, reason)

    def require(self, name: str, ok: bool, reason: str = "") -> None:
        """A check the rest of the scenario depends on: failing it ends the scenario."""
        if not self.check(name, ok, reason):
            raise ScenarioAbort(name)

    def settle(self, members: Sequence[Member], what: str, timeout: float | None = None) -> dict[str, set[int]]:
        view = wait_settled(members, timeout or self.timeout)
        self.require(
            what,
            view is not None,
            f"no settled assignment within {timeout or self.timeout}s: "
            + "; ".join(m.describe() for m in members),
        )
        assert view is not None
        return view

    def stop_members(self, members: Sequence[Member], what: str = "members close cleanly") -> None:
        for member in members:
            status = member.stop()
            self.check(
                what,
                status == 0 and member.closed.is_set(),
                f"{member.name}: exit status {status}, closed line {'seen' if member.closed.is_set() else 'missing'}",
            )

    def check_no_member_errors(self, members: Sequence[Member] | None = None, rebalancing: bool = False) -> None:
        """No client errors at all; no refused commits either, unless `rebalancing`: a commit sent
        while the group rebalances may be refused (ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS, ...),
        as Kafka does, and the records are then read again by the next owner."""
        refused: Counter[str] = Counter()
        for member in self.members if members is None else members:
            with member.lock:
                errors = list(member.errors)
                commit_errors = list(member.commit_errors)
                warnings = list(member.warnings)
            if warnings:
                self.notes.append(f"{member.name} recovered from: {'; '.join(warnings[:2])}")
            self.check("members report no client errors", not errors, f"{member.name}: {errors[:4]}")
            if rebalancing:
                refused.update(commit_errors)
            else:
                self.check("no commit refused", not commit_errors, f"{member.name}: {commit_errors[:4]}")
        if refused:
            self.notes.append(
                f"{sum(refused.values())} commits refused during the rebalance (allowed): "
                + ", ".join(f"{n}x {error}" for error, n in refused.most_common(3))
            )

    def check_committed(self, expected: dict[int, int], what: str) -> dict[int, int]:
        committed = self.admin.committed(self.group, self.topic)
        self.check(
            what,
            committed == expected,
            f"OffsetFetch says {dict(sorted(committed.items()))}, expected {dict(sorted(expected.items()))}",
        )
        return committed

    def check_described(self, view: dict[str, set[int]], state: str, protocol: str | None = None) -> Any:
        """DescribeGroups: state, member count and the assignment of each member as the members
        themselves were told (matched as a multiset of partition sets)."""
        description = self.admin.describe_group(self.group)
        got_state = description.state.name
        self.check("DescribeGroups: state", got_state == state, f"state {got_state}, expected {state}")
        described = sorted(
            sorted(tp.partition for tp in m.assignment.topic_partitions if tp.topic == self.topic)
            for m in description.members
        )
        told = sorted(sorted(parts) for parts in view.values())
        self.check(
            "DescribeGroups: members and their assignments",
            described == told,
            f"described {described}, members were told {told}",
        )
        if protocol is not None:
            self.check(
                "DescribeGroups: assignor",
                description.partition_assignor == protocol,
                f"assignor {description.partition_assignor!r}, expected {protocol!r}",
            )
        return description

    def finish(self) -> None:
        for member in self.members:
            if member.alive():
                member.kill()
        if self.broker is None and not self.args.keep_topics and self.skipped is None:
            try:
                self.admin.delete_topic(self.topic, 30)
            except Exception as error:  # noqa: BLE001 - cleanup only, reported as a note
                self.notes.append(f"could not delete topic {self.topic}: {error}")
        try:
            self.close_handles()
        except Exception as error:  # noqa: BLE001 - cleanup only, reported as a note
            self.notes.append(f"could not close the producer: {error}")
        if self.broker is not None:
            self.broker.stop()
        self.seconds = time.monotonic() - self.started

    def report(self) -> bool:
        if self.skipped is not None:
            print(f"SKIP {self.scenario}: {self.skipped}")
            return True
        verdict = "PASS" if self.checks.ok else "FAIL"
        print(f"{verdict} {self.scenario} ({self.seconds:.1f} s){': ' + '; '.join(self.notes) if self.notes else ''}")
        for name in self.checks.order:
            if self.checks.failed_counts.get(name):
                print(f"     FAIL {name}")
                for reason in self.checks.failed[name]:
                    print(f"          - {reason}")
                hidden = self.checks.failed_counts[name] - len(self.checks.failed[name])
                if hidden > 0:
                    print(f"          - ... and {hidden} more")
            elif self.args.verbose:
                print(f"     ok   {name} ({self.checks.passed[name]} assertions)")
        if not self.checks.ok:
            if self.client_log:
                print("     orchestrator's librdkafka log (last lines):")
                for line in self.client_log:
                    print(f"          | {line}")
            for member in self.members:
                with member.lock:
                    tail = list(member.stderr_tail)[-20:]
                print(f"     {member.describe()}")
                for line in tail:
                    print(f"          | {line}")
        return self.checks.ok


class ScenarioAbort(Exception):
    """A required check failed; the scenario cannot go on (the check carries the reason)."""


# ---------------------------------------------------------------------------------------------
# Scenarios.


def scenario_exactly_once(run: Run) -> None:
    run.admin.create_topic(run.topic, run.timeout)
    members = [run.member(f"m{i}") for i in (1, 2, 3)]
    view = run.settle(members, "group settles with 3 members over 6 partitions")
    run.check(
        "assignment balanced: 2 partitions each",
        all(len(parts) == 2 for parts in view.values()),
        assignments_text(view),
    )
    marks = {m.name: m.event_count() for m in members}
    run.check_described(view, "STABLE")
    listed = run.admin.list_groups()
    run.check(
        "ListGroups names the group, Stable",
        run.group in listed and listed[run.group].state.name == "STABLE",
        f"listed: {listed[run.group].state.name if run.group in listed else 'absent'}",
    )
    run.source.produce(3000)
    read = wait_all_read(run.source, members, run.timeout)
    run.check("every record read in time", read, "; ".join(m.describe() for m in members))
    time.sleep(0.5)  # a late duplicate would arrive now
    for member in members:
        events = member.events_since(marks[member.name])
        run.check(
            "no rebalance once settled",
            not events,
            f"{member.name} got {[(e.ev['ev'], e.ev.get('partitions')) for e in events]}",
        )
    run.stop_members(members)
    produced = run.source.produced()
    check_reads(run.checks, produced, members, exactly_once=True, notes=run.notes)
    for member in members:
        owned = view[member.name]
        foreign = sorted({p for p, _, _ in member.consumed()} - owned)
        run.check(
            "each member read only its own partitions",
            not foreign,
            f"{member.name} owned {sorted(owned)} but read from {foreign}",
        )
    run.check_committed(run.source.end_offsets(), "committed offsets (OffsetFetch) = log end offsets")
    run.check_no_member_errors()
    description = run.admin.describe_group(run.group)
    run.check(
        "DescribeGroups after every member left: Empty, no members",
        description.state.name == "EMPTY" and not description.members,
        f"state {description.state.name}, {len(description.members)} members",
    )
    run.admin.delete_group(run.group)
    run.check("DeleteGroups deletes the emptied group", True)
    listed = run.admin.list_groups()
    run.check("ListGroups no longer names the deleted group", run.group not in listed, "still listed")


def scenario_member_leaves(run: Run) -> None:
    run.admin.create_topic(run.topic, run.timeout)
    options = {"session_timeout_ms": LEAVE_SESSION_TIMEOUT_MS}
    members = [run.member(f"m{i}", **options) for i in (1, 2, 3)]
    view = run.settle(members, "group settles with 3 members over 6 partitions")
    run.source.start_stream()
    time.sleep(1.5)
    leaver = members[2]
    survivors = members[:2]
    left_at = time.monotonic()
    status = leaver.stop()
    run.check("the leaving member closes cleanly", status == 0 and leaver.closed.is_set(), f"exit status {status}")
    after = wait_settled(survivors, max(0.0, left_at + LEAVE_MOVE_MAX_S - time.monotonic()))
    moved_s = time.monotonic() - left_at
    run.require(
        f"LeaveGroup: the leaver's partitions move to the others within {LEAVE_MOVE_MAX_S:.0f} s "
        f"(session timeout {LEAVE_SESSION_TIMEOUT_MS // 1000} s)",
        after is not None,
        f"after {moved_s:.1f} s: " + "; ".join(m.describe() for m in survivors),
    )
    assert after is not None
    run.notes.append(f"partitions moved {moved_s:.1f} s after the leave")
    run.check(
        "the leaver's partitions went to the survivors",
        view[leaver.name] <= after[survivors[0].name] | after[survivors[1].name],
        f"leaver had {sorted(view[leaver.name])}; now {assignments_text(after)}",
    )
    time.sleep(1.0)
    run.source.stop_stream()
    read = wait_all_read(run.source, survivors + [leaver], run.timeout)
    run.check("every record read in time", read, "; ".join(m.describe() for m in members))
    run.stop_members(survivors)
    check_reads(run.checks, run.source.produced(), members, exactly_once=False, notes=run.notes)
    run.check_no_member_errors(rebalancing=True)


def scenario_member_killed(run: Run) -> None:
    run.admin.create_topic(run.topic, run.timeout)
    members = [run.member(f"m{i}") for i in (1, 2, 3)]
    view = run.settle(members, "group settles with 3 members over 6 partitions")
    run.source.start_stream()
    time.sleep(1.5)
    victim = members[2]
    survivors = members[:2]
    victim.kill()
    assert victim.killed_at is not None
    latest = SESSION_TIMEOUT_MS / 1000 + KILL_SLACK_S
    after = wait_settled(survivors, latest)
    moved_s = time.monotonic() - victim.killed_at
    run.require(
        f"the killed member's partitions move within session timeout + {KILL_SLACK_S:.0f} s ({latest:.0f} s)",
        after is not None,
        f"after {moved_s:.1f} s: " + "; ".join(m.describe() for m in survivors),
    )
    assert after is not None
    run.notes.append(f"partitions moved {moved_s:.1f} s after SIGKILL")
    # When did the survivors first hear of a rebalance? Not before the session could expire:
    # a classic group keeps a member whose connection closed until its session times out.
    first_change = min(
        (e.at for m in survivors for e in m.events_since(0) if e.at > victim.killed_at), default=time.monotonic()
    )
    run.check(
        f"the killed member keeps its partitions until its session can have expired (>= {KILL_EARLIEST_S:.0f} s)",
        first_change - victim.killed_at >= KILL_EARLIEST_S,
        f"the survivors' assignment changed {first_change - victim.killed_at:.1f} s after the kill",
    )
    run.check(
        "the killed member's partitions went to the survivors",
        view[victim.name] <= after[survivors[0].name] | after[survivors[1].name],
        f"victim had {sorted(view[victim.name])}; now {assignments_text(after)}",
    )
    time.sleep(1.0)
    run.source.stop_stream()
    read = wait_all_read(run.source, members, run.timeout)
    run.check("every record read in time", read, "; ".join(m.describe() for m in members))
    run.stop_members(survivors)
    check_reads(run.checks, run.source.produced(), members, exactly_once=False, notes=run.notes)
    run.check_no_member_errors(rebalancing=True)


def scenario_cooperative_sticky(run: Run) -> None:
    run.admin.create_topic(run.topic, run.timeout)
    options = {"assignor": "cooperative-sticky"}
    first = [run.member(f"m{i}", **options) for i in (1, 2)]
    before = run.settle(first, "two members settle over 6 partitions")
    run.source.start_stream()
    time.sleep(1.0)
    marks = {m.name: m.event_count() for m in first}
    joiner = run.member("m3", **options)
    members = first + [joiner]
    after = run.settle(members, "a third member joins: the group settles with 3 members")
    time.sleep(1.0)  # a (wrong) extra rebalance would show now
    after = settled(members) or after
    run.check(
        "assignment balanced: 2 partitions each",
        all(len(parts) == 2 for parts in after.values()),
        assignments_text(after),
    )
    for member in first:
        events = member.events_since(marks[member.name])
        modes = {e.ev.get("mode") for e in events if e.ev["ev"] in ("assign", "revoke")}
        run.check(
            "the rebalance is incremental (cooperative protocol)",
            modes <= {"incremental"},
            f"{member.name} got {[(e.ev['ev'], e.ev.get('mode'), e.ev.get('partitions')) for e in events]}",
        )
        revoked = set().union(*(set(e.ev.get("partitions") or []) for e in events if e.ev["ev"] in ("revoke", "lost")))
        kept = before[member.name] & after[member.name]
        run.check(
            "existing members keep their other partitions: only those moving are revoked",
            not (revoked & kept) and revoked == before[member.name] - after[member.name],
            f"{member.name} had {sorted(before[member.name])}, revoked {sorted(revoked)}, "
            f"now {sorted(after[member.name])}",
        )
        run.check(
            "existing members gain nothing when a member joins",
            after[member.name] <= before[member.name],
            f"{member.name} had {sorted(before[member.name])}, now {sorted(after[member.name])}",
        )
    run.check_described(after, "STABLE", protocol="cooperative-sticky")
    marks = {m.name: m.event_count() for m in first}
    left_at = time.monotonic()
    status = joiner.stop()
    run.check("the third member closes cleanly", status == 0, f"exit status {status}")
    final = run.settle(first, "after the third member leaves, the two settle over 6 partitions")
    run.notes.append(f"partitions moved {time.monotonic() - left_at:.1f} s after the leave")
    for member in first:
        events = member.events_since(marks[member.name])
        run.check(
            "a member leaving revokes nothing from the others",
            not [e for e in events if e.ev["ev"] in ("revoke", "lost")],
            f"{member.name} got {[(e.ev['ev'], e.ev.get('mode'), e.ev.get('partitions')) for e in events]}",
        )
        run.check(
            "the remaining members keep what they had",
            after[member.name] <= final[member.name],
            f"{member.name} had {sorted(after[member.name])}, now {sorted(final[member.name])}",
        )
    time.sleep(0.5)
    run.source.stop_stream()
    read = wait_all_read(run.source, members, run.timeout)
    run.check("every record read in time", read, "; ".join(m.describe() for m in members))
    run.stop_members(first)
    check_reads(run.checks, run.source.produced(), members, exactly_once=False, notes=run.notes)
    run.check_no_member_errors(rebalancing=True)


def scenario_static_membership(run: Run) -> None:
    run.admin.create_topic(run.topic, run.timeout)

    def instance(i: int) -> str:
        return f"{run.tag}-instance-{i}"

    # m1 first, alone, so it leads the group (the leader keeps leading while it rejoins); the
    # member restarted is m3, a follower.
    m1 = run.member("m1", instance_id=instance(1))
    run.settle([m1], "the first static member gets every partition")
    m2 = run.member("m2", instance_id=instance(2))
    m3 = run.member("m3", instance_id=instance(3))
    view = run.settle([m1, m2, m3], "group settles with 3 static members over 6 partitions")
    run.source.start_stream()
    time.sleep(1.0)
    described = run.check_described(view, "STABLE")
    old_ids = {m.group_instance_id: m.member_id for m in described.members}
    run.check(
        "DescribeGroups names each member's group.instance.id",
        set(old_ids) == {instance(1), instance(2), instance(3)},
        f"instances {sorted(map(str, old_ids))}",
    )
    # The replacement process is started beforehand and held, so that the restart window is the
    # client's own (create the consumer, find the coordinator, join) however loaded the machine.
    m3b = run.member("m3-restarted", instance_id=instance(3), hold=True)
    run.require(
        "the replacement member process starts",
        m3b.held.wait(run.timeout),
        m3b.describe(),
    )
    marks = {m.name: m.event_count() for m in (m1, m2)}
    m3.kill()
    assert m3.killed_at is not None
    m3b.go()
    got = wait_until(lambda: m3b.current(), SESSION_TIMEOUT_MS / 1000)
    run.require(
        "the restarted static member gets an assignment within the session timeout",
        bool(got),
        m3b.describe(),
    )
    run.notes.append(f"restarted member assigned {time.monotonic() - m3.killed_at:.1f} s after SIGKILL")
    run.check(
        "the restarted static member gets its old partitions back",
        got == view["m3"],
        f"had {sorted(view['m3'])}, got {sorted(got or [])}",
    )
    time.sleep(max(0.0, m3.killed_at + STATIC_QUIET_S - time.monotonic()))
    for member in (m1, m2):
        events = member.events_since(marks[member.name])
        run.check(
            f"no rebalance: the other members see no revocation or assignment for {STATIC_QUIET_S:.0f} s",
            not events,
            f"{member.name} got (seconds after the kill, event, partitions) "
            f"{[(round(e.at - m3.killed_at, 1), e.ev['ev'], e.ev.get('partitions')) for e in events]}",
        )
    now = {"m1": m1.current(), "m2": m2.current(), "m3": m3b.current()}
    described = run.check_described(now, "STABLE")
    new_ids = {m.group_instance_id: m.member_id for m in described.members}
    run.check(
        "DescribeGroups: the same three instances",
        set(new_ids) == set(old_ids),
        f"before {sorted(map(str, old_ids))}, after {sorted(map(str, new_ids))}",
    )
    run.check(
        "the restarted instance has a new member id, the others keep theirs",
        new_ids.get(instance(3)) != old_ids.get(instance(3))
        and all(new_ids.get(instance(i)) == old_ids.get(instance(i)) for i in (1, 2)),
        f"before {old_ids}, after {new_ids}",
    )
    run.source.stop_stream()
    members = [m1, m2, m3, m3b]
    read = wait_all_read(run.source, members, run.timeout)
    run.check("every record read in time", read, "; ".join(m.describe() for m in members))
    run.stop_members([m1, m2, m3b])
    check_reads(run.checks, run.source.produced(), members, exactly_once=False, notes=run.notes)
    run.check_no_member_errors()


def resume_phase_one(run: Run, records: int) -> dict[int, int]:
    """Three members read `records` records with manual commits, then all close."""
    members = [run.member(f"m{i}") for i in (1, 2, 3)]
    run.settle(members, "group settles with 3 members over 6 partitions")
    run.source.produce(records)
    read = wait_all_read(run.source, members, run.timeout)
    run.check("first run: every record read in time", read, "; ".join(m.describe() for m in members))
    run.stop_members(members, "first run: members close cleanly")
    run.check_no_member_errors(members)
    check_reads(run.checks, run.source.produced(), members, exactly_once=True, notes=run.notes, label="first run")
    ends = run.source.end_offsets()
    if not run.client.reports_commits:
        run.notes.append("members report no commits (the client commits by itself): judged by OffsetFetch")
        return ends
    told: dict[int, int] = {}
    for member in members:
        told.update(member.commits)
    run.check(
        "first run: the members' last commits are the log end offsets",
        told == ends,
        f"members committed {dict(sorted(told.items()))}, log ends {ends}",
    )
    return ends


def resume_phase_two(run: Run, committed: dict[int, int], records: int) -> None:
    """More records; new members resume at `committed`: nothing re-read, nothing missing."""
    produced_before = run.source.produced()
    run.source.produce(records)
    members = [run.member(f"r{i}") for i in (1, 2, 3)]
    produced = run.source.produced()
    fresh = {value: where for value, where in produced.items() if value not in produced_before}
    read = wait_until(lambda: all_read(lambda: fresh, members), run.timeout, poll=0.1)
    run.check("second run: every new record read in time", bool(read), "; ".join(m.describe() for m in members))
    run.settle(members, "second run: group settles with 3 members")
    time.sleep(0.5)
    run.stop_members(members, "second run: members close cleanly")
    reread = sorted(
        {(p, o) for m in members for p, o, _ in m.consumed() if o < committed.get(p, 0)}
    )
    run.check(
        "second run: nothing below the committed offsets is read again",
        not reread,
        f"{len(reread)} records re-read, e.g. (partition, offset) {reread[:6]}",
    )
    firsts: dict[int, int] = {}
    for member in members:
        for p, o, _ in member.consumed():
            firsts[p] = min(o, firsts.get(p, o))
    run.check(
        "second run: each partition resumes exactly at its committed offset",
        firsts == {p: committed.get(p, 0) for p in range(PARTITIONS)},
        f"first offsets read {dict(sorted(firsts.items()))}, committed {dict(sorted(committed.items()))}",
    )
    check_reads(run.checks, fresh, members, exactly_once=False, notes=run.notes, label="second run")
    run.check_committed(run.source.end_offsets(), "second run: committed offsets = log end offsets")
    # The second group forms while records wait, so commits may race its rebalances.
    run.check_no_member_errors(members, rebalancing=True)


def scenario_commit_resume(run: Run) -> None:
    run.admin.create_topic(run.topic, run.timeout)
    ends = resume_phase_one(run, 1800)
    committed = run.check_committed(ends, "committed offsets (OffsetFetch) = log end offsets")
    resume_phase_two(run, committed, 1800)


def scenario_resume_after_broker_restart(run: Run) -> None:
    assert run.broker is not None
    run.admin.create_topic(run.topic, run.timeout)
    ends = resume_phase_one(run, 1800)
    run.check_committed(ends, "before the restart: committed offsets (OffsetFetch) = log end offsets")
    run.close_handles()
    status = run.broker.stop()
    run.require("the broker stops cleanly", status == 0, f"exit status {status} (log {run.broker.log_path})")
    bootstrap = run.broker.start(run.timeout)
    run.notes.append(f"broker restarted, now at {bootstrap}")
    run.reconnect(bootstrap)
    committed = run.check_committed(ends, "after the restart: committed offsets (OffsetFetch) survive")
    resume_phase_two(run, committed, 1800)


SCENARIO_FUNCTIONS: dict[str, Callable[[Run], None]] = {
    "exactly_once": scenario_exactly_once,
    "member_leaves": scenario_member_leaves,
    "member_killed": scenario_member_killed,
    "cooperative_sticky": scenario_cooperative_sticky,
    "static_membership": scenario_static_membership,
    "commit_resume": scenario_commit_resume,
    "resume_after_broker_restart": scenario_resume_after_broker_restart,
}


def run_scenario(run: Run) -> None:
    try:
        if run.scenario in run.client.unsupported:
            run.skipped = f"{run.client.name}: {run.client.unsupported[run.scenario]}"
            run.client_lacks = True
            return
        if run.scenario == "resume_after_broker_restart":
            if not run.args.broker_command:
                run.skipped = "needs --broker-command (a broker this program may stop and start again)"
                return
            log_path = os.path.join(run.args.log_dir, f"broker-{run.tag}.log")
            run.broker = BrokerProcess(shlex.split(run.args.broker_command), log_path)
            run.bootstrap = run.broker.start(run.timeout)
        SCENARIO_FUNCTIONS[run.scenario](run)
    except ScenarioAbort:
        pass
    except Exception as error:  # noqa: BLE001 - any client or broker error fails the scenario, loudly
        run.checks.fail("scenario ran to the end", f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
    finally:
        run.finish()


# ---------------------------------------------------------------------------------------------
# Command line.


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", help="HOST:PORT[,...] of the broker under test")
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="run only this scenario (repeatable; default: all)"
    )
    parser.add_argument(
        "--broker-command", help="a broker to start, stop and start again, for resume_after_broker_restart (see above)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed for each wait (default 60)")
    parser.add_argument("--sequential", action="store_true", help="one scenario at a time")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the scenario topics")
    parser.add_argument("--log-dir", default=None, help="where broker-command logs go (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="also list the checks that passed")
    # Accepted for symmetry with the round-trip programs (scripts/test passes them).
    parser.add_argument("--peer", default="tidepool", help="name of the broker under test (only reported)")
    args = parser.parse_args(argv)
    scenarios = args.scenario or list(SCENARIOS)
    if not args.bootstrap and any(s != "resume_after_broker_restart" for s in scenarios):
        parser.error("--bootstrap is required (every scenario but resume_after_broker_restart uses it)")
    if args.log_dir is None:
        import tempfile

        args.log_dir = tempfile.mkdtemp(prefix="tidepool-groups-")
    os.makedirs(args.log_dir, exist_ok=True)
    args.scenarios = scenarios
    return args


def cell_verdict(runs: Sequence[Run]) -> tuple[str, str]:
    """(result, detail) of one matrix cell from the runs of its scenarios."""
    for run in runs:
        if run.skipped is None and not run.checks.ok:
            return "fail", f"{run.scenario}: {run.checks.first_failure()}"
    harness = [run for run in runs if run.skipped is not None and not run.client_lacks]
    if harness:
        return "fail", f"{harness[0].scenario} not run: {harness[0].skipped}"
    lacking = [run for run in runs if run.skipped is not None]
    if lacking and len(lacking) == len(runs):
        return "skip", "; ".join(dict.fromkeys(run.skipped or "" for run in lacking))
    if lacking:
        return "pass", "not run, the client lacks them: " + "; ".join(f"{r.scenario} ({r.skipped})" for r in lacking)
    return "pass", ""


def report_cells(client: Client, runs: Sequence[Run]) -> None:
    """Reports each matrix cell whose scenarios all ran in this program (see MATRIX_CELLS)."""
    by_scenario = {run.scenario: run for run in runs}
    for cell, scenarios in MATRIX_CELLS.items():
        if not all(scenario in by_scenario for scenario in scenarios):
            print(f"   (matrix cell {cell} not reported: needs the scenarios {', '.join(scenarios)})")
            continue
        result, detail = cell_verdict([by_scenario[scenario] for scenario in scenarios])
        matrix.report(client.matrix_id(), cell, result, " ".join(detail.split())[:400])


def main(client: Client, argv: Sequence[str] | None = None) -> None:
    faulthandler.enable()  # a crash inside a client library names the threads' stacks
    signal.signal(signal.SIGTERM, _on_termination)
    signal.signal(signal.SIGINT, _on_termination)
    args = parse_args(argv)
    print(f"== {client.name} consumer groups against {args.bootstrap or '(broker command only)'} (peer {args.peer})")
    sys.stdout.flush()
    started = time.monotonic()
    runs = [Run(client, scenario, args.bootstrap or "", args) for scenario in args.scenarios]
    if args.sequential:
        for run in runs:
            run_scenario(run)
    else:
        threads = [threading.Thread(target=run_scenario, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    ok = True
    for run in runs:
        ok = run.report() and ok
    report_cells(client, runs)
    passed = sum(1 for r in runs if r.skipped is None and r.checks.ok)
    skipped = sum(1 for r in runs if r.skipped is not None)
    print(
        f"== {client.name}: {'PASS' if ok else 'FAIL'} ({passed} passed, {len(runs) - passed - skipped} failed, "
        f"{skipped} skipped, {time.monotonic() - started:.1f} s)"
    )
    sys.stdout.flush()
    sys.exit(0 if ok else 1)


# ---------------------------------------------------------------------------------------------
# Member-side helpers for the Python clients.


class MemberOutput:
    """JSON lines on stdout, whole and flushed, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, **event: Any) -> None:
        line = json.dumps(event, separators=(",", ":"))
        with self.lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def stop_requested(spec: dict[str, Any], out: MemberOutput) -> threading.Event:
    """Watches stdin; returns an event set when it says "stop" or closes (the orchestrator went
    away). A member started with "hold" prints {"ev": "held"} and waits here for "go" first."""
    stop = threading.Event()
    go = threading.Event()

    def watch() -> None:
        for line in sys.stdin:
            if line.strip() == "go":
                go.set()
            if line.strip() == "stop":
                break
        stop.set()
        go.set()

    threading.Thread(target=watch, daemon=True).start()
    if spec.get("hold"):
        out(ev="held")
        go.wait()
    return stop
