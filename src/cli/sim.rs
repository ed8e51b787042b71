//! `tidepool sim`: deterministic simulation campaigns for researchers (issue 8 item 8).
//!
//! `tidepool sim --seeds 0..200 [--variant NAME] [--out DIR]` runs the scenario of every seed
//! (a 3-node broker, producers, a consumer group and a reader, faults during the safety phase,
//! then heal and drain), judges each history, and ends with one line:
//! `sim: N scenarios, M anomalous, trace=HEX`. The exit status is 1 when any scenario is
//! anomalous. The first failing scenario is shrunk, written to `DIR/<trace>.json` with its
//! history and report, and drawn as a timeline in `DIR/<trace>.html`.
//! `--keep-histories` also writes every scenario's history (JSON lines) to
//! `DIR/histories/<seed>.jsonl`; `DIR/campaign.jsonl` always gets one line per scenario.
//! `tidepool sim --replay FILE` runs a written failure again.
//!
//! `--pipeline` (implied by the pipeline's variants) runs pipeline scenarios instead: broker,
//! collector, stages with their store, HTTP client; judged per event id
//! (`tidepool_sim::pipeline::check`). Failures are written the same way, without a timeline.
//!
//! `--gateway` (implied by `--variant gateway-no-forwarding`) runs gateway scenarios: broker,
//! gateway nodes joining, leaving and crashing, the orders service's responders on their store,
//! HTTP clients; judged per request (`tidepool_sim::gateway::check`). Failures are written the
//! same way, marked `"system": "gateway"`.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tidepool_sim::campaign::{
    CampaignResult, FAILURES_DIR, Failure, hex, replay, run_campaign_keeping, shrink_seed,
    write_failure,
};
use tidepool_sim::gateway::campaign::{
    GatewayFailure, run_gateway_campaign, shrink_gateway_seed, write_gateway_failure,
};
use tidepool_sim::gateway::{GatewayOutcome, GatewayScenario, run_gateway};
use tidepool_sim::pipeline::campaign::{
    PipelineFailure, run_pipeline_campaign, shrink_pipeline_seed, write_pipeline_failure,
};
use tidepool_sim::pipeline::{PipelineOutcome, PipelineScenario, run_pipeline};
use tidepool_sim::report::report_html;
use tidepool_sim::runner::RunOutcome;
use tidepool_sim::scenario::{Scenario, Variant};

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Seeds to run, `START..END` (END excluded).
    #[arg(long, default_value = "0..100", value_parser = parse_seeds)]
    seeds: Range<u64>,
    /// A known-bad variant to switch on: none, ack-before-fsync,
    /// client-commit-before-process, forget-producer-state; or the pipeline's
    /// commit-before-process, non-idempotent-consumer, no-outbox (these imply --pipeline);
    /// or the gateway's gateway-no-forwarding (implies --gateway).
    #[arg(long, default_value = "none", value_parser = parse_variant)]
    variant: Variant,
    /// Run pipeline scenarios (collector, stages, store, outbox relay over the broker) instead
    /// of broker-and-client ones.
    #[arg(long, conflicts_with = "gateway")]
    pipeline: bool,
    /// Run gateway scenarios (gateway nodes joining, leaving and crashing, the orders service,
    /// HTTP clients over the broker) instead of broker-and-client ones.
    #[arg(long)]
    gateway: bool,
    /// Where failures, the campaign summary and the timeline go.
    #[arg(long, default_value = FAILURES_DIR)]
    out: PathBuf,
    /// Simulations run at once (each is single-threaded); default: the machine's cores.
    #[arg(long)]
    threads: Option<usize>,
    /// Runs spent shrinking the first failure (0: keep it as generated).
    #[arg(long, default_value_t = 300)]
    shrink_budget: usize,
    /// Also write every scenario's history to `DIR/histories/<seed>.jsonl`.
    #[arg(long)]
    keep_histories: bool,
    /// Run a failure written by an earlier campaign again, instead of a campaign.
    #[arg(long)]
    replay: Option<PathBuf>,
}

fn parse_seeds(text: &str) -> Result<Range<u64>, String> {
    let (start, end) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not START..END"))?;
    let parse = |part: &str| {
        part.trim()
            .parse::<u64>()
            .map_err(|error| format!("{part:?} in {text:?}: {error}"))
    };
    let (start, end) = (parse(start)?, parse(end)?);
    if end <= start {
        return Err(format!("{text:?} is empty: END must be above START"));
    }
    Ok(start..end)
}

fn parse_variant(text: &str) -> Result<Variant, String> {
    Variant::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = Variant::ALL.iter().map(|variant| variant.name()).collect();
        format!("unknown variant {text:?}; one of {}", names.join(", "))
    })
}

/// Whether a replay reproduced the recorded trace; a difference is expected once the code
/// under test changed (a fixed bug changes the run).
fn print_replayed_trace(trace: &str, recorded: &str) {
    if trace == recorded {
        println!("trace {trace} matches the recording");
    } else {
        println!("trace {trace} differs from the recording ({recorded})");
    }
}

/// Runs the command; `Ok(false)` means something anomalous was found (exit status 1).
pub fn sim(args: SimArgs) -> anyhow::Result<bool> {
    if let Some(path) = &args.replay {
        return replay_file(path);
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if args.pipeline && args.variant != Variant::None && !args.variant.is_pipeline() {
        anyhow::bail!(
            "variant {} breaks the broker or its clients, not the pipeline; drop --pipeline",
            args.variant
        );
    }
    if args.gateway && args.variant != Variant::None && !args.variant.is_gateway() {
        anyhow::bail!(
            "variant {} does not break the gateway; drop --gateway",
            args.variant
        );
    }
    let bar = progress_bar(args.seeds.end - args.seeds.start);
    if args.gateway || args.variant.is_gateway() {
        return gateway_campaign(&args, threads, &bar);
    }
    if args.pipeline || args.variant.is_pipeline() {
        return pipeline_campaign(&args, threads, &bar);
    }
    let histories = args.out.join("histories");
    if args.keep_histories {
        std::fs::create_dir_all(&histories)
            .with_context(|| format!("creating {}", histories.display()))?;
    }
    let keep = args.keep_histories.then_some(histories.as_path());
    let result = run_campaign_keeping(
        args.seeds.clone(),
        args.variant,
        threads,
        keep,
        &|_, scenario| {
            bar.inc(1);
            if scenario.anomalous {
                bar.println(format!("seed {}: {}", scenario.seed, scenario.summary));
            }
        },
    );
    bar.finish_and_clear();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_summary(&args.out, &args, &result)?;
    if let Some((scenario, outcome)) = &result.first_failure {
        report_failure(&args, scenario, outcome)?;
    }
    println!(
        "sim: {} scenarios, {} anomalous, trace={}",
        result.results.len(),
        result.anomalous(),
        hex(result.trace())
    );
    Ok(result.anomalous() == 0)
}

fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} scenarios ({per_sec}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn pipeline_campaign(args: &SimArgs, threads: usize, bar: &ProgressBar) -> anyhow::Result<bool> {
    let result =
        run_pipeline_campaign(args.seeds.clone(), args.variant, threads, &|_, scenario| {
            bar.inc(1);
            if scenario.anomalous {
                bar.println(format!("seed {}: {}", scenario.seed, scenario.summary));
            }
        });
    bar.finish_and_clear();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_summary(&args.out, args, &result)?;
    if let Some((scenario, outcome)) = &result.first_failure {
        let (scenario, outcome) = shrunk_or_kept(
            args,
            (scenario, outcome),
            (scenario.seed, scenario.schedule.len()),
            || shrink_pipeline_seed(scenario.seed, args.variant, args.shrink_budget),
            |(shrunk, shrunk_outcome)| (shrunk.schedule.len(), shrunk_outcome.is_anomalous()),
        );
        let path = write_pipeline_failure(&args.out, &scenario, args.variant, &outcome)
            .with_context(|| format!("writing into {}", args.out.display()))?;
        print_pipeline_failure(&scenario, &outcome);
        eprintln!("replay: tidepool sim --replay {}", path.display());
    }
    println!(
        "sim: {} scenarios, {} anomalous, trace={}",
        result.results.len(),
        result.anomalous(),
        hex(result.trace())
    );
    Ok(result.anomalous() == 0)
}

fn gateway_campaign(args: &SimArgs, threads: usize, bar: &ProgressBar) -> anyhow::Result<bool> {
    let result = run_gateway_campaign(args.seeds.clone(), args.variant, threads, &|_, scenario| {
        bar.inc(1);
        if scenario.anomalous {
            bar.println(format!("seed {}: {}", scenario.seed, scenario.summary));
        }
    });
    bar.finish_and_clear();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_summary(&args.out, args, &result)?;
    if let Some((scenario, outcome)) = &result.first_failure {
        let (scenario, outcome) = shrunk_or_kept(
            args,
            (scenario, outcome),
            (scenario.seed, scenario.schedule.len()),
            || shrink_gateway_seed(scenario.seed, args.variant, args.shrink_budget),
            |(shrunk, shrunk_outcome)| (shrunk.schedule.len(), shrunk_outcome.is_anomalous()),
        );
        let path = write_gateway_failure(&args.out, &scenario, args.variant, &outcome)
            .with_context(|| format!("writing into {}", args.out.display()))?;
        print_gateway_failure(&scenario, &outcome);
        eprintln!("replay: tidepool sim --replay {}", path.display());
    }
    println!(
        "sim: {} scenarios, {} anomalous, trace={}",
        result.results.len(),
        result.anomalous(),
        hex(result.trace())
    );
    Ok(result.anomalous() == 0)
}

/// The schedule and the checker's witnesses of a failing gateway run, on stderr.
fn print_gateway_failure(scenario: &GatewayScenario, outcome: &GatewayOutcome) {
    eprintln!("first failure: {}", scenario.describe());
    eprintln!("{}", outcome.summary());
    for step in &scenario.schedule {
        eprintln!(
            "{:>6} ms  {}",
            outcome.started_ms + step.at_ms,
            serde_json::to_string(&step.action).unwrap_or_default()
        );
    }
    for (at_ms, fault) in &outcome.faults {
        eprintln!("{at_ms:>6} ms  fault: {fault}");
    }
    print_witnesses(&outcome.report.anomalies);
}

/// Each anomaly kind's first witnesses, on stderr.
fn print_witnesses(anomalies: &std::collections::BTreeMap<String, Vec<String>>) {
    for (kind, witnesses) in anomalies {
        for witness in witnesses.iter().take(5) {
            eprintln!("{kind}: {witness}");
        }
        if witnesses.len() > 5 {
            eprintln!("{kind}: ... {} more", witnesses.len() - 5);
        }
    }
}

/// The schedule and the checker's witnesses of a failing pipeline run, on stderr.
fn print_pipeline_failure(scenario: &PipelineScenario, outcome: &PipelineOutcome) {
    eprintln!("first failure: {}", scenario.describe());
    eprintln!("{}", outcome.summary());
    for step in &scenario.schedule {
        eprintln!(
            "{:>6} ms  {}",
            step.at_ms,
            serde_json::to_string(&step.action).unwrap_or_default()
        );
    }
    for (at_ms, fault) in &outcome.faults {
        eprintln!("{at_ms:>6} ms  fault: {fault}");
    }
    print_witnesses(&outcome.report.anomalies);
}

/// `DIR/campaign.jsonl`: one line per scenario (seed, trace, verdict).
fn write_summary<S, O>(
    out: &Path,
    args: &SimArgs,
    result: &CampaignResult<S, O>,
) -> anyhow::Result<()> {
    let mut text = String::new();
    for scenario in &result.results {
        let line = serde_json::json!({
            "seed": scenario.seed,
            "variant": args.variant.name(),
            "trace": hex(scenario.trace),
            "anomalous": scenario.anomalous,
            "summary": scenario.summary,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    let path = out.join("campaign.jsonl");
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The first failure shrunk within the budget, or as generated when shrinking is off or its
/// result no longer fails. `seed_steps` describes the failure; `judge` gives a candidate's
/// step count and whether it still fails.
fn shrunk_or_kept<S: Clone, O: Clone>(
    args: &SimArgs,
    (scenario, outcome): (&S, &O),
    (seed, steps): (u64, usize),
    shrink: impl FnOnce() -> (S, O, usize),
    judge: impl Fn((&S, &O)) -> (usize, bool),
) -> (S, O) {
    if args.shrink_budget == 0 {
        return (scenario.clone(), outcome.clone());
    }
    eprintln!(
        "shrinking seed {seed} ({steps} steps), at most {} runs...",
        args.shrink_budget
    );
    let (shrunk, shrunk_outcome, runs) = shrink();
    let (shrunk_steps, still_fails) = judge((&shrunk, &shrunk_outcome));
    if !still_fails {
        return (scenario.clone(), outcome.clone());
    }
    eprintln!("shrunk to {shrunk_steps} steps in {runs} runs");
    (shrunk, shrunk_outcome)
}

/// Shrinks the first failure, writes it with its timeline and prints how to replay it.
fn report_failure(args: &SimArgs, scenario: &Scenario, outcome: &RunOutcome) -> anyhow::Result<()> {
    let (scenario, outcome) = shrunk_or_kept(
        args,
        (scenario, outcome),
        (scenario.seed, scenario.schedule.len()),
        || shrink_seed(scenario.seed, args.variant, args.shrink_budget),
        |(shrunk, shrunk_outcome)| (shrunk.schedule.len(), shrunk_outcome.is_anomalous()),
    );
    let path = write_failure(&args.out, &scenario, args.variant, &outcome)
        .with_context(|| format!("writing into {}", args.out.display()))?;
    let html = path.with_extension("html");
    let mut summary = vec![scenario.describe(), outcome.summary()];
    summary.extend(scenario.schedule.iter().map(|step| {
        format!(
            "{:>6} ms  {}",
            step.at_ms,
            serde_json::to_string(&step.action).unwrap_or_default()
        )
    }));
    let page = report_html(
        &format!("tidepool sim: seed {} ({})", scenario.seed, args.variant),
        &outcome.history,
        &outcome.report.anomalies,
        &summary,
    );
    std::fs::write(&html, page).with_context(|| format!("writing {}", html.display()))?;
    eprintln!("first failure: {}", outcome.summary());
    eprintln!("timeline: {}", html.display());
    eprintln!("replay: tidepool sim --replay {}", path.display());
    Ok(())
}

fn replay_file(path: &Path) -> anyhow::Result<bool> {
    if let Some(failure) = GatewayFailure::read(path)? {
        let outcome = run_gateway(&failure.scenario, failure.variant);
        let trace = hex(outcome.trace);
        println!("{}", failure.scenario.describe());
        println!("{}", outcome.summary());
        print_replayed_trace(&trace, &failure.trace);
        println!(
            "sim: 1 scenarios, {} anomalous, trace={trace}",
            u8::from(outcome.is_anomalous())
        );
        return Ok(!outcome.is_anomalous());
    }
    if let Some(failure) = PipelineFailure::read(path)? {
        let outcome = run_pipeline(&failure.scenario, failure.variant);
        let trace = hex(outcome.trace);
        println!("{}", failure.scenario.describe());
        println!("{}", outcome.summary());
        print_replayed_trace(&trace, &failure.trace);
        println!(
            "sim: 1 scenarios, {} anomalous, trace={trace}",
            u8::from(outcome.is_anomalous())
        );
        return Ok(!outcome.is_anomalous());
    }
    let failure = Failure::read(path)?;
    let outcome = replay(&failure);
    let trace = hex(outcome.trace);
    println!("{}", failure.scenario.describe());
    println!("{}", outcome.summary());
    print_replayed_trace(&trace, &failure.trace);
    println!(
        "sim: 1 scenarios, {} anomalous, trace={trace}",
        u8::from(outcome.is_anomalous())
    );
    Ok(!outcome.is_anomalous())
}
