//! Embedded start-to-ready benchmark (run by `scripts/bench`; a benchmark, never a timed test).
//!
//! Starts an in-memory broker in this process many times and measures, for each start:
//! - `start`: from calling `Broker::builder().memory().start()` to its return (listeners accept);
//! - `ready`: from the same instant to the first ApiVersions v0 answer on a new TCP connection, which
//!   is what a client waits for before it can do anything;
//! - `shutdown`: `handle.shutdown().await`.
//!
//! The first run is reported apart (`first_ready_us`): it pays one-off costs such as lazy statics and
//! the first socket of the process. Medians and p99 are nearest-rank over all runs.
//!
//! ```text
//! cargo run --release --example startup -- [RUNS]      # RUNS defaults to 200
//! ```
//!
//! The last line of output is machine-readable for `scripts/bench`:
//! `startup-embedded name=tidepool runs=200 first_ready_us=... start_median_us=... ready_p99_us=...`

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RUNS_DEFAULT: usize = 200;
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_BYTES_MAX: usize = 1 << 20;
const CORRELATION_ID: i32 = 42;

/// ApiVersions v0: size 15, api_key 18, api_version 0, correlation_id 42, client_id "bench".
const API_VERSIONS_V0: [u8; 19] = [
    0, 0, 0, 15, 0, 18, 0, 0, 0, 0, 0, 42, 0, 5, b'b', b'e', b'n', b'c', b'h',
];

/// One start of the broker, measured.
struct Sample {
    start: Duration,
    ready: Duration,
    shutdown: Duration,
}

#[tokio::main]
async fn main() -> Result<()> {
    let runs = match std::env::args().nth(1) {
        Some(text) => text
            .parse::<usize>()
            .context("RUNS must be a positive number")?,
        None => RUNS_DEFAULT,
    }
    .max(1);

    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        samples.push(start_once().await?);
    }
    report(&samples);
    Ok(())
}

// A benchmark measures real elapsed time, so it reads the real clock directly.
#[allow(
    clippy::disallowed_methods,
    reason = "a benchmark measures real elapsed time"
)]
async fn start_once() -> Result<Sample> {
    let started = Instant::now();
    let handle = tidepool::Broker::builder().memory().start().await?;
    let start = started.elapsed();
    let bootstrap = handle.bootstrap();
    let error_code = tokio::time::timeout(ROUND_TRIP_TIMEOUT, api_versions_round_trip(&bootstrap))
        .await
        .context("ApiVersions round trip timed out")??;
    let ready = started.elapsed();
    if error_code != 0 {
        bail!("ApiVersions v0 to {bootstrap} answered error code {error_code}");
    }
    let stopping = Instant::now();
    handle.shutdown().await;
    let shutdown = stopping.elapsed();
    Ok(Sample {
        start,
        ready,
        shutdown,
    })
}

/// Sends ApiVersions v0 to the first address of `bootstrap` and returns the response's error code.
async fn api_versions_round_trip(bootstrap: &str) -> Result<i16> {
    let address = bootstrap.split(',').next().unwrap_or(bootstrap).trim();
    let mut stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("connect to {address}"))?;
    stream.set_nodelay(true)?;
    stream.write_all(&API_VERSIONS_V0).await?;

    let size = usize::try_from(stream.read_i32().await?).context("negative response size")?;
    if !(6..=RESPONSE_BYTES_MAX).contains(&size) {
        bail!("ApiVersions response size {size} is out of range");
    }
    let mut body = vec![0; size];
    stream.read_exact(&mut body).await?;
    let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    if correlation_id != CORRELATION_ID {
        bail!("ApiVersions answered correlation id {correlation_id}, sent {CORRELATION_ID}");
    }
    Ok(i16::from_be_bytes([body[4], body[5]]))
}

fn report(samples: &[Sample]) {
    let first_ready = samples[0].ready;
    let start = sorted(samples.iter().map(|s| s.start));
    let ready = sorted(samples.iter().map(|s| s.ready));
    let shutdown = sorted(samples.iter().map(|s| s.shutdown));

    println!(
        "embedded start-to-ready over {} runs (nearest-rank percentiles)",
        samples.len()
    );
    println!("  first run ready  {:>9.1} us", micros(first_ready));
    for (label, values) in [
        ("start()", &start),
        ("ready", &ready),
        ("shutdown", &shutdown),
    ] {
        println!(
            "  {label:<16} median {:>9.1} us   p99 {:>9.1} us   max {:>9.1} us",
            micros(percentile(values, 50.0)),
            micros(percentile(values, 99.0)),
            micros(values[values.len() - 1]),
        );
    }
    println!(
        "startup-embedded name=tidepool runs={} first_ready_us={:.1} start_median_us={:.1} \
         start_p99_us={:.1} ready_median_us={:.1} ready_p99_us={:.1} ready_max_us={:.1} \
         shutdown_median_us={:.1}",
        samples.len(),
        micros(first_ready),
        micros(percentile(&start, 50.0)),
        micros(percentile(&start, 99.0)),
        micros(percentile(&ready, 50.0)),
        micros(percentile(&ready, 99.0)),
        micros(ready[ready.len() - 1]),
        micros(percentile(&shutdown, 50.0)),
    );
}

fn sorted(values: impl Iterator<Item = Duration>) -> Vec<Duration> {
    let mut values: Vec<Duration> = values.collect();
    values.sort_unstable();
    values
}

/// Nearest-rank percentile of a sorted, non-empty slice.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
