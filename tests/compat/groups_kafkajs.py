#!/usr/bin/env python3
"""kafkajs (Node) consumer groups against a broker: the scenarios of groups_common.py that
kafkajs can take part in, each member a `node groups_kafkajs.mjs` process.

    groups_kafkajs.py --bootstrap HOST:PORT[,...] [--scenario NAME ...] [--broker-command CMD]

Needs kafkajs in tests/compat/node_modules: `npm ci` in tests/compat (scripts/test setup does it;
the version is pinned in package.json and package-lock.json). `node` comes from PATH, or from
$TIDEPOOL_NODE. Prints one PASS/FAIL/SKIP line per scenario; exits 0 only when none failed.
cooperative_sticky and static_membership are SKIP: kafkajs has neither (so its matrix cell
group-cooperative is a skip, with that reason; see groups_common.py for the cells).
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from groups_common import Client, main

HERE = os.path.dirname(os.path.abspath(__file__))
MEMBER = os.path.join(HERE, "groups_kafkajs.mjs")


def kafkajs_version() -> str:
    path = os.path.join(HERE, "node_modules", "kafkajs", "package.json")
    try:
        with open(path) as package:
            return json.load(package)["version"]
    except OSError:
        sys.exit(f"kafkajs is not installed ({path} missing): run `npm ci` in {HERE} (scripts/test setup does)")


def node() -> str:
    found = os.environ.get("TIDEPOOL_NODE") or shutil.which("node")
    if not found:
        sys.exit("node is not on PATH (set TIDEPOOL_NODE, or install Node.js; scripts/test setup does)")
    return found


if __name__ == "__main__":
    binary = node()
    main(
        Client(
            name=f"kafkajs {kafkajs_version()}",
            member_argv=lambda spec: [binary, MEMBER, json.dumps(spec)],
            unsupported={
                "cooperative_sticky": "kafkajs implements only the eager rebalance protocol",
                "static_membership": "kafkajs has no static membership (group.instance.id)",
            },
            env={"KAFKAJS_NO_PARTITIONER_WARNING": "1"},
        )
    )
