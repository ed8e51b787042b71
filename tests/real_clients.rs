//! The real-client compatibility programs (librdkafka through confluent-kafka and kcat,
//! kafka-python, the Java client) against an embedded broker. `scripts/test` runs the same
//! programs against `tidepool serve`.
//!
//! Slow and needing installed clients, so gated: `TIDEPOOL_COMPAT=1` runs them (the test
//! command sets it, with `TIDEPOOL_PYTHON` naming the project venv's interpreter). Without it
//! each test says loudly that it did not run.

use std::path::{Path, PathBuf};

use tidepool::{Broker, BrokerHandle};

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

/// The broker's log goes to the test's captured output (`RUST_LOG=info` to see it).
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// Starts a three-node broker with multi-partition defaults: clients must route to leaders.
async fn broker() -> BrokerHandle {
    init_logging();
    let config = tidepool::Config {
        default_partitions: 3,
        ..tidepool::Config::default()
    };
    Broker::builder()
        .memory()
        .nodes(3)
        .config(config)
        .start()
        .await
        .expect("broker starts")
}

/// Runs a client program to completion (the broker keeps serving on the runtime meanwhile)
/// and fails the test with its output if it fails.
async fn run(program: &str, args: Vec<String>) {
    let label = format!("{program} {}", args.join(" "));
    let output = tokio::process::Command::new(program)
        .args(&args)
        .current_dir(root())
        .output()
        .await
        .unwrap_or_else(|error| panic!("cannot start {label}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{label} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("{stdout}");
}

fn script(relative: &str) -> String {
    let path = root().join(relative);
    assert!(Path::new(&path).exists(), "{} is missing", path.display());
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_through_confluent_kafka_round_trips_every_codec() {
    if !enabled("librdkafka_through_confluent_kafka_round_trips_every_codec") {
        return;
    }
    let broker = broker().await;
    let args = vec![
        script("tests/compat/confluent_roundtrip.py"),
        "--bootstrap".into(),
        broker.bootstrap(),
    ];
    run(&python(), args).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_round_trips_every_codec() {
    if !enabled("kafka_python_round_trips_every_codec") {
        return;
    }
    let broker = broker().await;
    let args = vec![
        script("tests/compat/kafka_python_roundtrip.py"),
        "--bootstrap".into(),
        broker.bootstrap(),
    ];
    run(&python(), args).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_round_trips_every_codec() {
    if !enabled("kcat_round_trips_every_codec") {
        return;
    }
    let broker = broker().await;
    run(
        &script("tests/compat/kcat_roundtrip.sh"),
        vec!["--bootstrap".into(), broker.bootstrap()],
    )
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_java_client_round_trips_every_codec() {
    if !enabled("the_java_client_round_trips_every_codec") {
        return;
    }
    let broker = broker().await;
    run(&script("tests/java/run.sh"), vec![broker.bootstrap()]).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_alters_and_describes_topic_configs() {
    if !enabled("kafka_python_alters_and_describes_topic_configs") {
        return;
    }
    let broker = broker().await;
    let args = vec![
        script("tests/compat/configs_kafka_python.py"),
        "--bootstrap".into(),
        broker.bootstrap(),
    ];
    run(&python(), args).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_through_confluent_kafka_alters_and_describes_topic_configs() {
    if !enabled("librdkafka_through_confluent_kafka_alters_and_describes_topic_configs") {
        return;
    }
    let broker = broker().await;
    let args = vec![
        script("tests/compat/configs_confluent.py"),
        "--bootstrap".into(),
        broker.bootstrap(),
    ];
    run(&python(), args).await;
    broker.shutdown().await;
}
