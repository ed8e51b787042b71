#!/usr/bin/env python3
"""Creates benchmark topics with a fixed partition count and waits until every partition has a leader.

rdkafka_performance cannot create topics, and auto-creation differs between brokers (librdkafka's mock
cluster auto-creates 4 partitions, Tidepool 1), so scripts/bench creates every topic explicitly with the
same layout on both sides.

    bench/create_topics.py --bootstrap HOST:PORT --partitions P TOPIC[ TOPIC...]
"""
import argparse
import sys
import time

from confluent_kafka.admin import AdminClient, NewTopic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--timeout-s", type=float, default=30.0)
    parser.add_argument("topics", nargs="+")
    args = parser.parse_args()

    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=args.partitions, replication_factor=1) for name in args.topics],
        operation_timeout=args.timeout_s,
        request_timeout=args.timeout_s,
    )
    for name, future in futures.items():
        future.result(timeout=args.timeout_s)  # raises KafkaException on failure

    deadline = time.monotonic() + args.timeout_s
    while True:
        metadata = admin.list_topics(timeout=args.timeout_s)
        missing = []
        for name in args.topics:
            topic = metadata.topics.get(name)
            if topic is None or topic.error is not None:
                missing.append(f"{name}: {'absent' if topic is None else topic.error}")
            elif len(topic.partitions) != args.partitions:
                missing.append(f"{name}: {len(topic.partitions)} partitions, want {args.partitions}")
            elif any(p.leader < 0 for p in topic.partitions.values()):
                missing.append(f"{name}: a partition has no leader")
        if not missing:
            return 0
        if time.monotonic() > deadline:
            print("create_topics: not ready: " + "; ".join(missing), file=sys.stderr)
            return 1
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
