//! Real clients experiencing the test control plane (issue 11): librdkafka through
//! confluent-kafka, kafka-python and kcat, driven by tests/compat/control_confluent.py,
//! control_kafka_python.py and control_kcat.py, which reach the control plane only over HTTP.
//! Each program checks that its client behaves as with Kafka — retriable errors retried, leader
//! moves followed, a forced rebalance seen, a node down survived, an old release's versions
//! negotiated.
//!
//! Slow and needing installed clients, so gated like tests/real_clients.rs: `TIDEPOOL_COMPAT=1`
//! runs them, with `TIDEPOOL_PYTHON` naming the project venv's interpreter. Without it each
//! test says loudly that it did not run.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{enabled, init_logging, run_python_program};
use tidepool::{Broker, BrokerHandle};

/// A program that hangs (a client stuck on a fault it never recovers from) fails the test
/// instead of holding it; each program's own waits are far shorter.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(180);

/// Three nodes, since the programs take one down, move leaders and coordinators between them
/// and create replication-factor-3 topics; and the control plane over HTTP beside them.
async fn broker() -> (BrokerHandle, SocketAddr) {
    init_logging();
    let config = tidepool::Config {
        default_partitions: 3,
        ..tidepool::Config::default()
    };
    let broker = Broker::builder()
        .memory()
        .nodes(3)
        .config(config)
        .start()
        .await
        .expect("broker starts");
    let (control, _server) =
        tidepool::control::start("127.0.0.1:0".parse().unwrap(), broker.control())
            .await
            .expect("control server starts");
    (broker, control)
}

/// Runs one control program against the broker and fails the test with its output unless it
/// passed every scenario.
async fn run(program: &str) {
    let (broker, control) = broker().await;
    let args = [
        "--bootstrap".into(),
        broker.bootstrap(),
        "--control".into(),
        format!("http://{control}"),
    ];
    run_python_program(program, &args, PROGRAM_TIMEOUT).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_through_confluent_kafka_experiences_every_control_operation() {
    if !enabled("librdkafka_through_confluent_kafka_experiences_every_control_operation") {
        return;
    }
    run("tests/compat/control_confluent.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_retries_follows_rebalances_and_negotiates_capped_versions() {
    if !enabled("kafka_python_retries_follows_rebalances_and_negotiates_capped_versions") {
        return;
    }
    run("tests/compat/control_kafka_python.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_retries_reconnects_and_negotiates_a_capped_version() {
    if !enabled("kcat_retries_reconnects_and_negotiates_a_capped_version") {
        return;
    }
    run("tests/compat/control_kcat.py").await;
}
