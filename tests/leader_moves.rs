//! librdkafka (through confluent-kafka) keeps producing and consuming while partition leaders
//! move every few hundred milliseconds, and nothing acknowledged is lost, duplicated or
//! reordered (idempotence on). `tests/compat/leader_moves.py` drives the client and checks the
//! records; this file runs the broker, moves the leaders under it and checks that the moves
//! really happened while records were in flight, so the test cannot pass vacuously.
//!
//! Slow and needing the project's Python venv, so gated like `tests/real_clients.rs`:
//! `TIDEPOOL_COMPAT=1` runs it (with `TIDEPOOL_PYTHON` naming the interpreter); without it
//! each test says loudly that it did not run. `RUST_LOG=info` shows the broker's log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tidepool::broker::cluster::TopicRequest;
use tidepool::broker::{Control, ControlError};
use tidepool::{Broker, BrokerHandle};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::{Mutex, watch};

const TOPIC: &str = "leader-moves";
const PARTITIONS: i32 = 6;
const NODES: i32 = 3;
/// Records the client produces, spread over `PRODUCE_SECONDS`.
const RECORDS: usize = 100_000;
const PRODUCE_SECONDS: u32 = 5;
/// The client's bound on each of its waits (flush, reading to the end).
const CLIENT_TIMEOUT_S: u32 = 30;
/// The whole client run, from spawn to exit; beyond it the client is killed and the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(50);
/// A whole scenario (client run, shutdown, restart); beyond it the watchdog ends the process.
const SCENARIO_LIMIT: Duration = Duration::from_secs(75);
/// Rounds of moves (each moves every partition) that must fall between the client's first
/// record and its last delivery report. At one round per 200–300 ms over about
/// `PRODUCE_SECONDS` there are about 20; fewer than this means the moves did not overlap the
/// run and the test proves nothing.
const ROUNDS_WHILE_PRODUCING_MIN: usize = 12;
/// In the node-bounce variant: the node taken down, and the rounds (counted while producing)
/// after which it goes down and comes back.
const BOUNCED_NODE: i32 = 2;
const DOWN_AFTER_ROUND: usize = 6;
const UP_AFTER_ROUND: usize = 10;

/// The client's stdout lines around its produce phase (see leader_moves.py).
const MARK_PRODUCING: &str = "leader_moves: producing";
const MARK_PRODUCED: &str = "leader_moves: produced";

/// One run at a time: each drives a Python client at thousands of records per second, and on a
/// small machine two at once would measure the machine rather than the broker.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

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

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
}

/// Wall-clock seconds since `start`, for the report only (nothing is decided by it).
#[allow(
    clippy::disallowed_methods,
    reason = "reports how long a real-time client run took; the test decides nothing by it"
)]
fn stopwatch() -> impl Fn() -> f64 {
    let start = std::time::Instant::now();
    move || start.elapsed().as_secs_f64()
}

/// Ends the process, saying why, if a scenario is still running after its limit. A broker
/// deadlock blocks every runtime thread on a mutex (the mover calls the control plane from the
/// test's own thread), so no tokio timer could end the test: only an OS thread outside the
/// runtime can. Disarmed when dropped, also by a panic. With `TIDEPOOL_KEEP_HUNG=1` the hung
/// process is kept for a debugger (`gdb -p PID -batch -ex 'thread apply all bt'`).
struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    #[allow(
        clippy::disallowed_methods,
        reason = "a deadlocked broker blocks every runtime thread; only an OS thread outside \
                  the runtime can still report it"
    )]
    fn arm(what: &'static str, limit: Duration) -> Watchdog {
        let disarmed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&disarmed);
        std::thread::spawn(move || {
            let step = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            while waited < limit {
                if flag.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(step);
                waited += step;
            }
            if flag.load(Ordering::Acquire) {
                return;
            }
            // Written straight to stderr: the test harness's capture dies with the process.
            let keep = std::env::var_os("TIDEPOOL_KEEP_HUNG").is_some_and(|value| value == "1");
            let _ = writeln!(
                std::io::stderr(),
                "FAILED: {what} still running after {limit:?}: the broker is probably deadlocked \
                 (pid {}; {})",
                std::process::id(),
                if keep {
                    "kept for a debugger because TIDEPOOL_KEEP_HUNG=1"
                } else {
                    "exiting; set TIDEPOOL_KEEP_HUNG=1 to keep the process for a debugger"
                }
            );
            if !keep {
                std::process::exit(1);
            }
        });
        Watchdog(disarmed)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

enum Storage {
    Memory,
    /// A fresh directory, removed when the run ends (also on panic).
    Disk(ScratchDir),
}

struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> ScratchDir {
        let path = std::env::temp_dir().join(format!(
            "tidepool-leader-moves-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the data directory");
        ScratchDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Scenario {
    name: &'static str,
    /// Names the client's log file (librdkafka's debug log), kept after the run.
    slug: &'static str,
    storage: Storage,
    /// Take `BOUNCED_NODE` down and bring it back while records are in flight.
    bounce_node: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Starting,
    Producing,
    Produced,
}

/// What the mover did, for the assertions and the report.
#[derive(Default)]
struct Moves {
    rounds: usize,
    rounds_while_producing: usize,
    moves: usize,
    moves_while_producing: usize,
    refused: Vec<String>,
    node_down_in_round: Option<usize>,
    node_up_in_round: Option<usize>,
    node_up_while_producing: bool,
}

async fn start_broker(storage: &Storage) -> BrokerHandle {
    let builder = Broker::builder()
        .nodes(NODES as usize)
        .config(tidepool::Config::default());
    let builder = match storage {
        Storage::Memory => builder.memory(),
        Storage::Disk(dir) => builder.data_dir(dir.path()),
    };
    builder.start().await.expect("broker starts")
}

fn create_topic(broker: &BrokerHandle) {
    let request = TopicRequest {
        name: TOPIC.into(),
        partitions: PARTITIONS,
        replication_factor: NODES as i16,
        ..TopicRequest::default()
    };
    broker
        .cluster()
        .create_topic(&request, false)
        .map_err(|refusal| refusal.message)
        .expect("create the topic");
}

/// The node partition `partition` moves to in round `round`: one of the two other nodes,
/// alternating, skipping a node that is down.
fn next_leader(current: i32, round: usize, partition: i32, down: Option<i32>) -> i32 {
    let step = 1 + (round + partition as usize) % 2;
    let mut candidate = current;
    for _ in 0..NODES {
        candidate = (candidate - 1 + step as i32) % NODES + 1;
        if candidate != current && Some(candidate) != down {
            return candidate;
        }
    }
    current
}

/// A partition as the broker sees it.
#[derive(Debug)]
struct PartitionEnd {
    leader: i32,
    epoch: i32,
    high_watermark: i64,
}

fn partitions(broker: &BrokerHandle) -> Vec<PartitionEnd> {
    let topic = broker.cluster().topic(TOPIC).expect("the topic exists");
    topic
        .partitions
        .iter()
        .map(|partition| {
            let state = partition.state();
            PartitionEnd {
                leader: state.leader,
                epoch: state.leader_epoch,
                high_watermark: state.log.high_watermark(),
            }
        })
        .collect()
}

/// One round: every partition's leader moves to another live node.
fn move_all(
    control: &Control,
    round: usize,
    down: Option<i32>,
    moves: &mut Moves,
    producing: bool,
) {
    for partition in 0..PARTITIONS {
        let (leader, _) = control.leader(TOPIC, partition).expect("the topic exists");
        let target = next_leader(leader, round, partition, down);
        match control.move_leader(TOPIC, partition, target) {
            Ok(_) => {
                moves.moves += 1;
                if producing {
                    moves.moves_while_producing += 1;
                }
            }
            Err(error) => moves.refused.push(format!(
                "round {round}: {TOPIC}-{partition} to {target}: {error}"
            )),
        }
    }
}

/// Milliseconds before round `round`: 200–300, varied so moves do not beat with the client's
/// own timers.
fn pause_before(round: usize) -> Duration {
    Duration::from_millis(200 + (round as u64 * 53) % 101)
}

/// Takes `BOUNCED_NODE` down after `DOWN_AFTER_ROUND` rounds while producing, and brings it
/// back after `UP_AFTER_ROUND` (or as soon as producing ended, so the cluster heals even when
/// the client was quicker than expected; the test then fails on `node_up_while_producing`).
async fn bounce(
    control: &Control,
    moves: &mut Moves,
    down: &mut Option<i32>,
    producing: bool,
) -> Result<(), ControlError> {
    let round = moves.rounds_while_producing;
    if producing
        && down.is_none()
        && moves.node_down_in_round.is_none()
        && round >= DOWN_AFTER_ROUND
    {
        control.node_down(BOUNCED_NODE).await?;
        *down = Some(BOUNCED_NODE);
        moves.node_down_in_round = Some(round);
    } else if down.is_some() && (round >= UP_AFTER_ROUND || !producing) {
        moves.node_up_while_producing = producing;
        control.node_up(BOUNCED_NODE).await?;
        *down = None;
        moves.node_up_in_round = Some(round);
    }
    Ok(())
}

/// Keeps moving leaders until `client` exits (or the run limit passes, which kills it).
async fn move_leaders_until_exit(
    control: &Control,
    client: &mut tokio::process::Child,
    phase: &watch::Receiver<Phase>,
    bounce_node: bool,
) -> (Moves, Option<std::process::ExitStatus>) {
    let mut moves = Moves::default();
    let mut down = None;
    let limit = tokio::time::sleep(RUN_LIMIT);
    tokio::pin!(limit);
    loop {
        tokio::select! {
            status = client.wait() => {
                return (moves, Some(status.expect("wait for the client")));
            }
            () = &mut limit => {
                let _ = client.kill().await;
                return (moves, None);
            }
            () = tokio::time::sleep(pause_before(moves.rounds)) => {
                let producing = *phase.borrow() == Phase::Producing;
                if bounce_node
                    && let Err(error) = bounce(control, &mut moves, &mut down, producing).await
                {
                    moves.refused.push(format!("node {BOUNCED_NODE} down/up: {error}"));
                }
                move_all(control, moves.rounds, down, &mut moves, producing);
                moves.rounds += 1;
                if producing {
                    moves.rounds_while_producing += 1;
                }
            }
        }
    }
}

async fn run(scenario: Scenario) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let _watchdog = Watchdog::arm(scenario.name, SCENARIO_LIMIT);
    init_logging();
    let elapsed = stopwatch();
    let broker = start_broker(&scenario.storage).await;
    create_topic(&broker);
    let control = broker.control();

    let client_log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("leader_moves-{}.log", scenario.slug));
    let script = root().join("tests/compat/leader_moves.py");
    assert!(script.exists(), "{} is missing", script.display());
    let args = vec![
        "-u".to_string(),
        script.display().to_string(),
        "--bootstrap".into(),
        broker.bootstrap(),
        "--topic".into(),
        TOPIC.into(),
        "--partitions".into(),
        PARTITIONS.to_string(),
        "--records".into(),
        RECORDS.to_string(),
        "--seconds".into(),
        PRODUCE_SECONDS.to_string(),
        "--timeout".into(),
        CLIENT_TIMEOUT_S.to_string(),
        "--client-log".into(),
        client_log.display().to_string(),
    ];
    let label = format!("{} {}", python(), args.join(" "));
    let mut client = tokio::process::Command::new(python())
        .args(&args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {label}: {error}"));

    // stdout is read line by line as it comes, to follow the client's phase; stderr whole.
    let (phase_tx, phase) = watch::channel(Phase::Starting);
    let stdout = client.stdout.take().expect("piped stdout");
    let stdout_task = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut text = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            match line.trim() {
                MARK_PRODUCING => {
                    let _ = phase_tx.send(Phase::Producing);
                }
                MARK_PRODUCED => {
                    let _ = phase_tx.send(Phase::Produced);
                }
                _ => {}
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut stderr = client.stderr.take().expect("piped stderr");
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let (moves, status) =
        move_leaders_until_exit(&control, &mut client, &phase, scenario.bounce_node).await;
    let final_phase = *phase.borrow();
    let stdout = stdout_task.await.expect("stdout reader");
    let stderr = stderr_task.await.expect("stderr reader");
    let run_s = elapsed();
    let before = partitions(&broker);
    let leaders: Vec<String> = before
        .iter()
        .enumerate()
        .map(|(p, end)| {
            format!(
                "p{p}: node {} epoch {} high watermark {}",
                end.leader, end.epoch, end.high_watermark
            )
        })
        .collect();
    let report = format!(
        "{name}: client {status:?} after {run_s:.1}s; {rounds} rounds of moves ({moves} moves), \
         {rounds_producing} rounds ({moves_producing} moves) while producing; node {BOUNCED_NODE} \
         down after round {down:?}, up after round {up:?}; refused moves: {refused:?}; \
         final leaders: {leaders}",
        name = scenario.name,
        rounds = moves.rounds,
        moves = moves.moves,
        rounds_producing = moves.rounds_while_producing,
        moves_producing = moves.moves_while_producing,
        down = moves.node_down_in_round,
        up = moves.node_up_in_round,
        refused = moves.refused,
        leaders = leaders.join(", "),
    );
    broker.shutdown().await;
    // On disk, a restart must find every record and no leader epoch older than before.
    let after = match &scenario.storage {
        Storage::Memory => None,
        Storage::Disk(_) => {
            let restarted = start_broker(&scenario.storage).await;
            let after = partitions(&restarted);
            restarted.shutdown().await;
            Some(after)
        }
    };
    drop(scenario.storage);

    let context = format!(
        "{report}\n--- {label}\n--- librdkafka's log: {}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
        client_log.display()
    );
    let Some(status) = status else {
        panic!(
            "the client did not finish within {RUN_LIMIT:?} (killed); phase {final_phase:?}\n{context}"
        );
    };
    assert!(status.success(), "the client failed ({status})\n{context}");
    assert_eq!(
        final_phase,
        Phase::Produced,
        "the client never said it was done producing\n{context}"
    );
    assert!(
        moves.rounds_while_producing >= ROUNDS_WHILE_PRODUCING_MIN,
        "only {} rounds of moves happened while records were in flight (at least \
         {ROUNDS_WHILE_PRODUCING_MIN} needed for the test to mean anything)\n{context}",
        moves.rounds_while_producing
    );
    assert!(
        moves.refused.is_empty(),
        "some moves were refused\n{context}"
    );
    let stored: i64 = before.iter().map(|end| end.high_watermark).sum();
    assert_eq!(
        stored, RECORDS as i64,
        "the broker holds {stored} records, the client delivered {RECORDS}\n{context}"
    );
    if let Some(after) = after {
        for (p, (old, new)) in before.iter().zip(&after).enumerate() {
            assert!(
                new.high_watermark == old.high_watermark && new.epoch >= old.epoch,
                "partition {p} after a restart from the data directory: {new:?}, before: \
                 {old:?}\n{context}"
            );
        }
    }
    if scenario.bounce_node {
        assert!(
            moves.node_down_in_round.is_some() && moves.node_up_while_producing,
            "node {BOUNCED_NODE} was not taken down and brought back while producing\n{context}"
        );
    }
    println!("{report}\n{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_survives_leader_moves_in_memory() {
    if !enabled("librdkafka_survives_leader_moves_in_memory") {
        return;
    }
    run(Scenario {
        name: "memory, leaders moving",
        slug: "memory",
        storage: Storage::Memory,
        bounce_node: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_survives_leader_moves_and_a_node_bounce_on_disk() {
    if !enabled("librdkafka_survives_leader_moves_and_a_node_bounce_on_disk") {
        return;
    }
    run(Scenario {
        name: "data directory, leaders moving, one node down and up",
        slug: "disk-bounce",
        storage: Storage::Disk(ScratchDir::new("bounce")),
        bounce_node: true,
    })
    .await;
}
