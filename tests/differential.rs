//! The differential harness: the same scripted raw Kafka protocol sessions, at pinned versions
//! so both brokers receive byte-identical requests, go to an embedded Tidepool and to the
//! Apache Kafka named by `TIDEPOOL_TEST_BOOTSTRAP` (`scripts/test differential` starts Kafka
//! 4.3.1 and sets it). Every answer is read into a tree (`differential/tree.rs`), what
//! legitimately differs is normalised away (`differential/normalise.rs`), and every remaining
//! difference is reported as `scenario / step / path: tidepool=X kafka=Y`.
//!
//! The test fails on any difference not accepted by `tests/differential/allowed.json`, and on
//! any entry of that list that matched nothing (stale). Error codes compare exactly; error
//! message wordings are reported as their own class and never fail. The full report goes to
//! stdout and to `target/differential-report.txt`; every compared answer, normalised, side by
//! side, to `target/differential-answers.json`.
//!
//! Without `TIDEPOOL_TEST_BOOTSTRAP` the test says NOT RUN and passes.

#[path = "differential/compare.rs"]
mod compare;
#[path = "differential/normalise.rs"]
mod normalise;
#[path = "differential/raw.rs"]
mod raw;
#[path = "differential/scenario.rs"]
mod scenario;
#[path = "differential/scenarios.rs"]
mod scenarios;
#[path = "differential/tree.rs"]
mod tree;

use std::path::PathBuf;

use serde_json::Value;
use tidepool::{Broker, Config};
use tidepool_io::{Clock, Entropy, SeededEntropy, SystemClock};

use compare::{ABSENT, Difference};

/// Every topic and group name starts with this and a per-run tag; names of other runs (a
/// long-running Kafka keeps them) are recognised by it and filtered from listings.
pub const RUN_MARKER: &str = "dp";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Like the Kafka of tests/java/kafka-broker.sh: no auto-creation, one partition by default,
/// no initial rebalance delay.
async fn embedded_tidepool() -> tidepool::BrokerHandle {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let config = Config {
        auto_create_topics: false,
        default_partitions: 1,
        group_initial_rebalance_delay_ms: 0,
        ..Config::default()
    };
    Broker::builder()
        .memory()
        .config(config)
        .start()
        .await
        .expect("the embedded broker starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tidepool_answers_as_apache_kafka_does() {
    let Ok(bootstrap) = std::env::var("TIDEPOOL_TEST_BOOTSTRAP") else {
        println!(
            "NOT RUN: the differential harness needs an Apache Kafka in TIDEPOOL_TEST_BOOTSTRAP \
             (scripts/test differential starts one)"
        );
        return;
    };
    let kafka = bootstrap.split(',').next().unwrap_or_default().to_owned();
    let broker = embedded_tidepool().await;
    let tidepool = broker.bootstrap();
    let prefix = format!(
        "{RUN_MARKER}{:08x}-",
        SeededEntropy::from_os().next_u64() & 0xffff_ffff
    );
    // A minute ago, whole seconds: recent enough for any retention, in the past for any
    // timestamp bound.
    let base_ms = (SystemClock::new().wall_ms() / 1000 - 60) * 1000;
    let text = std::fs::read_to_string(root().join("tests/differential/allowed.json"))
        .expect("tests/differential/allowed.json");
    let mut allowed = compare::parse_allow_list(&text);

    let mut names = Vec::new();
    let mut differences = Vec::new();
    let mut answers = serde_json::Map::new();
    for (index, scenario) in scenarios::all().iter().enumerate() {
        // Each scenario its own names: listings (groups, all topics) show only its own.
        let prefix = format!("{prefix}s{index:02}-");
        let (ours, theirs) = tokio::join!(
            scenario::run(scenario, &tidepool, &prefix, base_ms),
            scenario::run(scenario, &kafka, &prefix, base_ms),
        );
        names.push(scenario.name.to_owned());
        differences.extend(compare_runs(scenario.name, &ours, &theirs));
        answers.insert(scenario.name.to_owned(), both_answers(&ours, &theirs));
    }
    broker.shutdown().await;
    let dump = root().join("target/differential-answers.json");
    let pretty = serde_json::to_string_pretty(&answers).unwrap_or_default();
    if let Err(error) = std::fs::write(&dump, pretty) {
        println!("cannot write {}: {error}", dump.display());
    }

    let verdict = compare::report(&names, &differences, &mut allowed);
    println!("{}", verdict.report);
    let path = root().join("target/differential-report.txt");
    if let Err(error) = std::fs::write(&path, &verdict.report) {
        println!("cannot write {}: {error}", path.display());
    }
    assert_eq!(
        verdict.failures,
        0,
        "Tidepool and Apache Kafka answer differently (see the report above, or {})",
        path.display()
    );
}

/// Every compared step's normalised answers, side by side (target/differential-answers.json).
fn both_answers(ours: &[(String, Value)], theirs: &[(String, Value)]) -> Value {
    let mut steps = serde_json::Map::new();
    for (step, tree) in ours {
        steps.insert(step.clone(), serde_json::json!({ "tidepool": tree }));
    }
    for (step, tree) in theirs {
        let entry = steps
            .entry(step.clone())
            .or_insert_with(|| serde_json::json!({}));
        entry["kafka"] = tree.clone();
    }
    Value::Object(steps)
}

/// Pairs the two runs' steps by name and lists every difference.
fn compare_runs(
    scenario: &str,
    ours: &[(String, Value)],
    theirs: &[(String, Value)],
) -> Vec<Difference> {
    let mut steps: Vec<&String> = ours.iter().map(|(step, _)| step).collect();
    for (step, _) in theirs {
        if !steps.contains(&step) {
            steps.push(step);
        }
    }
    let find = |list: &[(String, Value)], step: &str| {
        list.iter()
            .find(|(name, _)| name == step)
            .map(|(_, tree)| tree.clone())
            .unwrap_or_else(|| Value::String(ABSENT.to_owned()))
    };
    let mut differences = Vec::new();
    for step in steps {
        let mut found = Vec::new();
        compare::diff(&find(ours, step), &find(theirs, step), "", &mut found);
        differences.extend(found.into_iter().map(|(path, tidepool, kafka)| Difference {
            scenario: scenario.to_owned(),
            step: step.clone(),
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path
            },
            tidepool,
            kafka,
        }));
    }
    differences
}

#[test]
fn the_allow_list_parses() {
    let text = std::fs::read_to_string(root().join("tests/differential/allowed.json"))
        .expect("tests/differential/allowed.json");
    let entries = compare::parse_allow_list(&text);
    for entry in &entries {
        assert!(!entry.path.is_empty(), "{entry:?}");
    }
}

#[test]
fn globs_match_as_documented() {
    assert!(compare::glob(
        "/api_keys/*",
        "/api_keys/Produce/max_version"
    ));
    assert!(compare::glob("*/error_message", "/topics/0/error_message"));
    assert!(compare::glob("/a/*/c/*", "/a/1/c/2"));
    assert!(!compare::glob("/a/*/c", "/a/1/d"));
    assert!(compare::glob("exact", "exact"));
    assert!(!compare::glob("exact", "exactly"));
}
