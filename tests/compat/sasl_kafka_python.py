#!/usr/bin/env python3
"""kafka-python (its own protocol code, SCRAM included) logging in to a broker that requires
SASL, as it does to Apache Kafka's SASL_PLAINTEXT listener.

    sasl_kafka_python.py --bootstrap HOST:PORT --user NAME --password PASSWORD [--scenario NAME ...]

- roundtrip-<MECHANISM>: a producer and a group consumer log in with PLAIN, SCRAM-SHA-256 or
  SCRAM-SHA-512; every record produced is consumed, in order, and the offsets committed.
- wrong-password-<MECHANISM>, unknown-user-<MECHANISM>: bootstrapping fails within its timeout
  and the client logs SaslAuthenticationFailedError (error 58) with Kafka's message; kafka-python
  treats the refusal as a failed bootstrap connection (and retries it), against Kafka too.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from control_common import expect
from sasl_common import (
    AUTH_FAILURE_WITHIN_S, MECHANISMS, ROUND_TRIP_WITHIN_S, UNKNOWN_USER, authentication_message,
    expect_values, parse_args, run, unique, values,
)

args = parse_args(__doc__ or "")


def conf(mechanism: str, user: str | None = None, password: str | None = None) -> dict[str, Any]:
    return {
        "bootstrap_servers": args.bootstrap,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user or args.user,
        "sasl_plain_password": password or args.password,
        "client_id": f"sasl-kafka-python-{mechanism.lower()}",
    }


def roundtrip(mechanism: str) -> None:
    topic = unique("kafka-python", mechanism)
    producer = KafkaProducer(**conf(mechanism), acks="all")
    try:
        for value in values(topic):
            producer.send(topic, key=b"k", value=value)
        producer.flush(timeout=ROUND_TRIP_WITHIN_S)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        topic, **conf(mechanism), group_id=topic, auto_offset_reset="earliest",
        enable_auto_commit=False, consumer_timeout_ms=int(ROUND_TRIP_WITHIN_S * 1000),
    )
    try:
        got = []
        for message in consumer:
            got.append(message.value)
            if len(got) == len(values(topic)):
                break
        expect_values(got, topic)
        consumer.commit()
        committed = consumer.committed(TopicPartition(topic, 0))
        expect(committed == len(got), f"committed offset {committed}")
    finally:
        consumer.close()


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def refused(mechanism: str, user: str, password: str) -> None:
    """Bootstraps with bad credentials until kafka-python has logged the refusal. Each attempt
    must fail; one may fail with only "socket disconnected": kafka-python 3.0.12 drops an answer
    that arrives in the same read as the close (`_sock_recv`), which Kafka's close causes too."""
    captured = _Captured()
    logger = logging.getLogger("kafka")
    logger.addHandler(captured)
    logger.setLevel(logging.INFO)
    deadline = time.monotonic() + AUTH_FAILURE_WITHIN_S
    try:
        while True:
            try:
                producer = KafkaProducer(**conf(mechanism, user, password), bootstrap_timeout_ms=3000)
            except Exception:  # noqa: BLE001 - kafka-python raises KafkaTimeoutError here
                pass
            else:
                producer.close()
                raise AssertionError("kafka-python bootstrapped with bad credentials")
            said = [text for text in captured.messages if "SaslAuthenticationFailedError" in text]
            if said:
                break
            expect(time.monotonic() < deadline, f"no SaslAuthenticationFailedError logged: {captured.messages[-5:]}")
    finally:
        logger.removeHandler(captured)
    expect(authentication_message(said[0]), f"without Kafka's message: {said[0]}")


scenarios = []
for name in MECHANISMS:
    scenarios += [
        (f"roundtrip-{name}", lambda name=name: roundtrip(name)),
        (f"wrong-password-{name}", lambda name=name: refused(name, args.user, args.password + "-wrong")),
        (f"unknown-user-{name}", lambda name=name: refused(name, UNKNOWN_USER, args.password)),
    ]
run("kafka-python", scenarios, args.scenario)
