//! Real clients logging in to a broker that requires SASL (issue 12): librdkafka through
//! confluent-kafka, kafka-python and kcat, driven by tests/compat/sasl_confluent.py,
//! sasl_kafka_python.py and sasl_kcat.py. Each logs in with PLAIN, SCRAM-SHA-256 and
//! SCRAM-SHA-512, produces and consumes, and reports a wrong password as an authentication
//! error instead of hanging.
//!
//! Gated like tests/control_clients.rs: `TIDEPOOL_COMPAT=1` runs them, with `TIDEPOOL_PYTHON`
//! naming the project venv's interpreter. Without it each test says loudly that it did not run.

use std::path::PathBuf;
use std::time::Duration;

use tidepool::Broker;
use tidepool::broker::SaslConfig;

/// A program that hangs fails the test instead of holding it; each program's waits are shorter.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(300);
const USER: &str = "tidepool-user";
const PASSWORD: &str = "tidepool-password";

fn enabled(test: &str) -> bool {
    if std::env::var_os("TIDEPOOL_COMPAT").is_some_and(|value| value == "1") {
        return true;
    }
    eprintln!("NOT RUN: {test} needs TIDEPOOL_COMPAT=1 and the clients scripts/test installs");
    false
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> String {
    std::env::var("TIDEPOOL_PYTHON")
        .unwrap_or_else(|_| root().join(".venv/bin/python").display().to_string())
}

/// Runs one program against a three-node broker requiring SASL (so clients log in to every
/// node they reach, group coordinators included) and fails with its output unless every
/// scenario passed.
async fn run(program: &str) {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
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
    let script = root().join(program);
    assert!(script.exists(), "{} is missing", script.display());
    let args = [
        script.display().to_string(),
        "--bootstrap".into(),
        broker.bootstrap(),
        "--user".into(),
        USER.into(),
        "--password".into(),
        PASSWORD.into(),
    ];
    let label = format!("{} {}", python(), args.join(" "));
    let child = tokio::process::Command::new(python())
        .args(&args)
        .current_dir(root())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PROGRAM_TIMEOUT, child)
        .await
        .unwrap_or_else(|_| panic!("{label} did not finish in {PROGRAM_TIMEOUT:?}"))
        .unwrap_or_else(|error| panic!("cannot start {label}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{label} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("{stdout}");
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
