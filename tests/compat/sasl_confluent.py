#!/usr/bin/env python3
"""librdkafka (through confluent-kafka) logging in to a broker that requires SASL, as it does to
Apache Kafka's SASL_PLAINTEXT listener.

    sasl_confluent.py --bootstrap HOST:PORT --user NAME --password PASSWORD [--scenario NAME ...]

- roundtrip-<MECHANISM>: a producer and a group consumer log in with PLAIN, SCRAM-SHA-256 or
  SCRAM-SHA-512; every record produced is consumed, in order, and the offsets committed.
- wrong-password-<MECHANISM>, unknown-user-<MECHANISM>: the client reports an authentication
  error (librdkafka's _AUTHENTICATION, with Kafka's message) at once instead of hanging.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer

from control_common import expect
from sasl_common import (
    AUTH_FAILURE_WITHIN_S, MECHANISMS, ROUND_TRIP_WITHIN_S, UNKNOWN_USER, authentication_message,
    expect_values, parse_args, run, unique, values,
)

args = parse_args(__doc__ or "")


def conf(mechanism: str, user: str | None = None, password: str | None = None) -> dict[str, Any]:
    return {
        "bootstrap.servers": args.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user or args.user,
        "sasl.password": password or args.password,
        "client.id": f"sasl-confluent-{mechanism.lower()}",
    }


def roundtrip(mechanism: str) -> None:
    topic = unique("confluent", mechanism)
    failures: list[Any] = []
    producer = Producer({**conf(mechanism), "acks": "all", "enable.idempotence": True})
    for value in values(topic):
        producer.produce(topic, value=value, key=b"k", on_delivery=lambda error, _: error and failures.append(error))
    left = producer.flush(ROUND_TRIP_WITHIN_S)
    expect(left == 0 and not failures, f"{left} records undelivered, errors {failures}")

    consumer = Consumer({
        **conf(mechanism), "group.id": topic, "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + ROUND_TRIP_WITHIN_S
    try:
        while len(got) < len(values(topic)) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            expect(message.error() is None, f"consume error {message.error()}")
            got.append(message.value())
        expect_values(got, topic)
        committed = consumer.commit(asynchronous=False)
        expect(committed is not None and committed[0].offset == len(got), f"committed {committed}")
    finally:
        consumer.close()


def refused(mechanism: str, user: str, password: str) -> None:
    errors: list[KafkaError] = []
    producer = Producer({**conf(mechanism, user, password), "error_cb": errors.append})
    deadline = time.monotonic() + AUTH_FAILURE_WITHIN_S
    while not any(error.code() == KafkaError._AUTHENTICATION for error in errors):
        expect(time.monotonic() < deadline, f"no authentication error in {AUTH_FAILURE_WITHIN_S}s: {errors}")
        producer.poll(0.1)
    error = next(error for error in errors if error.code() == KafkaError._AUTHENTICATION)
    expect(authentication_message(error.str()), f"error without Kafka's message: {error.str()}")


scenarios = []
for name in MECHANISMS:
    scenarios += [
        (f"roundtrip-{name}", lambda name=name: roundtrip(name)),
        (f"wrong-password-{name}", lambda name=name: refused(name, args.user, args.password + "-wrong")),
        (f"unknown-user-{name}", lambda name=name: refused(name, UNKNOWN_USER, args.password)),
    ]
run("confluent-kafka", scenarios, args.scenario)
