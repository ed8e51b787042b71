//! Real clients logging in to a broker that requires SASL (issue 12): librdkafka through
//! confluent-kafka, kafka-python and kcat, driven by tests/compat/sasl_confluent.py,
//! sasl_kafka_python.py and sasl_kcat.py. Each logs in with PLAIN, SCRAM-SHA-256 and
//! SCRAM-SHA-512, produces and consumes, and reports a wrong password as an authentication
//! error instead of hanging.
//!
//! Gated like tests/control_clients.rs: `TIDEPOOL_COMPAT=1` runs them, with `TIDEPOOL_PYTHON`
//! naming the project venv's interpreter. Without it each test says loudly that it did not run.

mod support;

use std::time::Duration;

use support::{enabled, init_logging, run_python_program};
use tidepool::Broker;
use tidepool::broker::SaslConfig;

/// A program that hangs fails the test instead of holding it; each program's waits are shorter.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(300);
const USER: &str = "tidepool-user";
const PASSWORD: &str = "tidepool-password";

/// Runs one program against a three-node broker requiring SASL (so clients log in to every
/// node they reach, group coordinators included) and fails with its output unless every
/// scenario passed.
async fn run(program: &str) {
    init_logging();
    let sasl = SaslConfig::all_mechanisms()
        .with_user(USER, PASSWORD)
        .expect("a valid user");
    let broker = Broker::builder()
        .memory()
        .nodes(3)
        .sasl(sasl)
        .start()
        .await
        .expect("broker starts");
    let args = [
        "--bootstrap".into(),
        broker.bootstrap(),
        "--user".into(),
        USER.into(),
        "--password".into(),
        PASSWORD.into(),
    ];
    run_python_program(program, &args, PROGRAM_TIMEOUT).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_logs_in_with_plain_and_scram_and_reports_a_wrong_password() {
    if !enabled("librdkafka_logs_in_with_plain_and_scram_and_reports_a_wrong_password") {
        return;
    }
    run("tests/compat/sasl_confluent.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_logs_in_with_plain_and_scram_and_reports_a_wrong_password() {
    if !enabled("kafka_python_logs_in_with_plain_and_scram_and_reports_a_wrong_password") {
        return;
    }
    run("tests/compat/sasl_kafka_python.py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_logs_in_with_plain_and_fails_scram_as_against_kafka_4() {
    if !enabled("kcat_logs_in_with_plain_and_fails_scram_as_against_kafka_4") {
        return;
    }
    run("tests/compat/sasl_kcat.py").await;
}
