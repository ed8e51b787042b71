#!/usr/bin/env python3
"""Starts librdkafka's mock cluster (the peer we measure against) and keeps it running.

librdkafka starts the mock cluster inside any client configured with `test.mock.num.brokers`;
it listens on loopback ports that other processes can reach. Prints one line
`mock ready bootstrap=HOST:PORT[,...]` on stdout, then serves until stdin closes or SIGTERM.

    scripts/mock-cluster.py [--brokers N]
"""
import argparse
import signal
import sys

from confluent_kafka import Producer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brokers", type=int, default=1)
    args = parser.parse_args()
    holder = Producer({"bootstrap.servers": "unused:9092", "test.mock.num.brokers": args.brokers})
    metadata = holder.list_topics(timeout=10)
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in sorted(metadata.brokers.values(), key=lambda b: b.id))
    print(f"mock ready bootstrap={bootstrap}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        sys.stdin.read()  # returns when the parent closes our stdin
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
