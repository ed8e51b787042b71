"""What the control-plane client programs share (control_confluent.py, control_kafka_python.py):
the control plane over HTTP with nothing but the standard library, and the scenario runner.

A scenario is a function that drives a real client through one fault and raises
`ScenarioFailed` (or any exception) when the client did not behave as it does against Kafka.
The runner resets the control plane before each, prints `PASS: <scenario>` or
`FAIL: <scenario>: <reason>`, and the program exits non-zero when any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from compat_common import Deadline

# Every HTTP call to the control plane is answered at once (node down/up included), so a slow one
# is a hang worth failing on.
HTTP_TIMEOUT_S = 10.0


class ScenarioFailed(AssertionError):
    """The client did not experience the fault as it would with Kafka; the message says how."""


def expect(ok: bool, reason: str) -> None:
    if not ok:
        raise ScenarioFailed(reason)


class ControlPlane:
    """The broker's control plane (src/control.rs) at `base`, e.g. http://127.0.0.1:8080."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def call(self, method: str, path: str, body: Any = None, ok: Sequence[int] = (200, 201)) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        answer = json.loads(raw) if raw else None
        if status not in ok:
            raise ScenarioFailed(f"control plane: {method} {path} {body} answered {status}: {answer}")
        return answer

    def reset(self) -> None:
        self.call("POST", "/reset")

    def push_errors(self, api: str, errors: list[Any], node: int | None = None) -> None:
        body: dict[str, Any] = {"api": api, "errors": errors}
        if node is not None:
            body["node"] = node
        self.call("POST", "/errors", body)

    def push_partition_errors(self, topic: str, partition: int, errors: list[Any], api: str | None = None) -> None:
        body: dict[str, Any] = {"topic": topic, "partition": partition, "errors": errors}
        if api is not None:
            body["api"] = api
        self.call("POST", "/partition-errors", body)

    def intercept(self, **rule: Any) -> int:
        return int(self.call("POST", "/interceptions", rule)["id"])

    def remove_interception(self, id_: int) -> None:
        self.call("DELETE", f"/interceptions/{id_}", ok=(200, 404))

    def observed(self, id_: int) -> list[dict[str, Any]]:
        return self.call("GET", f"/interceptions/{id_}/observed")

    def round_trip(self, node: int, delay_ms: int) -> None:
        self.call("PUT", f"/nodes/{node}/round-trip", {"delay_ms": delay_ms})

    def node_down(self, node: int) -> None:
        self.call("POST", f"/nodes/{node}/down")

    def node_up(self, node: int) -> None:
        self.call("POST", f"/nodes/{node}/up")

    def move_leader(self, topic: str, partition: int, node: int) -> int:
        return int(self.call("POST", f"/partitions/{topic}/{partition}/leader", {"node": node})["leader_epoch"])

    def move_coordinator(self, group: str, node: int) -> None:
        self.call("POST", f"/groups/{group}/coordinator", {"node": node})

    def force_rebalance(self, group: str) -> None:
        self.call("POST", f"/groups/{group}/rebalance")

    def cap_versions(self, release: str | None) -> None:
        self.call("PUT", "/version-cap", {"release": release})

    def roll(self, topic: str, partition: int) -> None:
        self.call("POST", f"/partitions/{topic}/{partition}/roll")

    def clean(self, topic: str, partition: int) -> dict[str, Any]:
        return self.call("POST", f"/partitions/{topic}/{partition}/clean")

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        return self.call("GET", f"/requests?since={since}")

    def next_seq(self) -> int:
        """The seq the next request logged will get: pass it to `requests` to see only what
        follows."""
        log = self.requests()
        return log[-1]["seq"] + 1 if log else 0

    def actions(self) -> list[dict[str, Any]]:
        return self.call("GET", "/actions")


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...] of a 3-node broker")
    parser.add_argument("--control", required=True, help="the control plane, http://HOST:PORT")
    parser.add_argument("--scenario", action="append", default=[], help="run only these (repeatable)")
    return parser.parse_args()


def unique(kind: str, scenario: str) -> str:
    """A topic or group name of its own per scenario and run."""
    return f"ctl-{kind}-{scenario}-{int(time.time() * 1000) % 10_000_000}-{os.getpid()}"


def wait_until(what: str, seconds: float, probe: Callable[[], bool], every: float = 0.05) -> None:
    """Polls `probe` until it is true; fails saying `what` was awaited when `seconds` pass."""
    deadline = Deadline(seconds)
    while not probe():
        if deadline.expired():
            raise ScenarioFailed(f"timed out after {seconds:.0f}s waiting for {what}")
        time.sleep(every)


def run_scenarios(
    client: str,
    control: ControlPlane,
    scenarios: Sequence[tuple[str, Callable[[], None]]],
    only: Sequence[str] = (),
) -> None:
    """Runs each scenario after a reset of the control plane; exits 1 when any failed."""
    known = [name for name, _ in scenarios]
    unknown = [name for name in only if name not in known]
    if unknown:
        print(f"unknown scenarios {unknown}; known: {known}", file=sys.stderr)
        sys.exit(2)
    failed = []
    started = time.monotonic()
    for name, scenario in scenarios:
        if only and name not in only:
            continue
        control.reset()
        began = time.monotonic()
        try:
            scenario()
        except Exception as error:  # noqa: BLE001 - every failure is reported with its reason
            traceback.print_exc()
            failed.append(name)
            print(f"FAIL: {name}: {type(error).__name__}: {error}", flush=True)
        else:
            print(f"PASS: {name} ({time.monotonic() - began:.1f}s)", flush=True)
        finally:
            # A scenario that failed half-way must not leave its faults to the next one.
            try:
                control.reset()
            except Exception as error:  # noqa: BLE001
                print(f"reset after {name} failed: {error}", file=sys.stderr)
    total = time.monotonic() - started
    if failed:
        print(f"== {client}: {len(failed)} scenario(s) failed: {', '.join(failed)} ({total:.1f}s)", flush=True)
        sys.exit(1)
    print(f"== {client}: every scenario passed ({total:.1f}s)", flush=True)
