//! What the root package's real-client tests share: the `TIDEPOOL_COMPAT` gate, the project
//! venv's interpreter, and running one client program to completion with a deadline.

use std::path::PathBuf;
use std::time::Duration;

/// Whether the slow real-client tests run (`TIDEPOOL_COMPAT=1`, as scripts/test sets it);
/// without it a test says loudly that it did not run.
pub fn enabled(test: &str) -> bool {
    if std::env::var_os("TIDEPOOL_COMPAT").is_some_and(|value| value == "1") {
        return true;
    }
    eprintln!("NOT RUN: {test} needs TIDEPOOL_COMPAT=1 and the clients scripts/test installs");
    false
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `TIDEPOOL_PYTHON`, else the project venv's interpreter.
pub fn python() -> String {
    std::env::var("TIDEPOOL_PYTHON")
        .unwrap_or_else(|_| root().join(".venv/bin/python").display().to_string())
}

pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// Runs `program` (relative to the repository) with the venv's Python and `args`, from the
/// repository root; fails the test with its output unless it exits 0 within `timeout`, and
/// prints what it printed.
pub async fn run_python_program(program: &str, args: &[String], timeout: Duration) {
    let script = root().join(program);
    assert!(script.exists(), "{} is missing", script.display());
    let mut command_line = vec![script.display().to_string()];
    command_line.extend(args.iter().cloned());
    let label = format!("{} {}", python(), command_line.join(" "));
    let child = tokio::process::Command::new(python())
        .args(&command_line)
        .current_dir(root())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, child)
        .await
        .unwrap_or_else(|_| panic!("{label} did not finish in {timeout:?}"))
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
