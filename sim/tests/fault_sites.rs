//! Crash points and buggify sites (issue 8): `FaultSites` on its own, a `SimDisk` that halts at
//! a fired point, and brokers on such disks in turmoil:
//!
//! - a point armed in the append path crashes the broker host right there; after the restart
//!   every acknowledged record is in the log once, at its offset;
//! - a workload touching every multi-write step reaches every name in
//!   `tidepool_broker::CRASH_POINTS` (no dead site), and every buggify site;
//! - with buggify on, clients cope with the broker's unusual answers and nothing
//!   acknowledged is lost or doubled.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidepool_broker::{BUGGIFY_SITES, Broker, CRASH_POINTS, Config, Sabotage, TopicConfig};
use tidepool_client::{
    Acks, Admin, Client, ClientConfig, Consumer, ConsumerConfig, KafkaCode, NewTopic, OffsetReset,
    OffsetSpec, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use tidepool_io::{Disk, Env, OpenMode, buggify, crash_point};
use tidepool_sim::env::{
    CrashReport, DISK, FaultSites, FiredPoint, RunSeed, SimDisk, SimEntropy, crash_host,
    sim_builder, sim_env,
};

const BROKER: &str = "broker";
const WORKLOAD: &str = "workload";
const PORT: u16 = 9092;
const DATA_DIR: &str = "/var/lib/tidepool";
/// How long a crashed broker host stays down, in simulation steps.
const DOWNTIME_STEPS: usize = 200;
/// Attempts at a step that a crash can interrupt.
const ATTEMPTS: u32 = 30;

// ---- FaultSites and SimDisk on their own -------------------------------------------------

#[test]
fn an_armed_point_fires_at_its_hit_once_and_hits_are_counted_per_host_and_site() {
    let sites = FaultSites::new();
    let hooked = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&hooked);
    sites.set_on_fire(Box::new(move |host: &str| {
        seen.lock().unwrap().push(host.to_owned())
    }));
    sites.arm("a", "x", 3);
    sites.arm("a", "x", 5);
    sites.arm("b", "y", 1);

    let fired: Vec<bool> = (0..6).map(|_| sites.hit("a", "x")).collect();
    assert_eq!(fired, [false, false, true, false, true, false]);
    assert!(!sites.hit("b", "x"), "another host's hits count apart");
    assert!(!sites.hit("a", "y"), "another site's hits count apart");
    assert!(sites.hit("b", "y"));
    assert!(!sites.hit("b", "y"), "a fired point is disarmed");

    let point = |host: &str, site: &str, hit| FiredPoint {
        host: host.into(),
        site: site.into(),
        hit,
    };
    assert_eq!(
        sites.take_fired(),
        [point("a", "x", 3), point("a", "x", 5), point("b", "y", 1)]
    );
    assert!(sites.take_fired().is_empty(), "taken once");
    assert_eq!(*hooked.lock().unwrap(), ["a", "a", "b"]);
    let key = |host: &str, site: &str| (host.to_owned(), site.to_owned());
    assert_eq!(
        sites.hits(),
        BTreeMap::from([
            (key("a", "x"), 6),
            (key("a", "y"), 1),
            (key("b", "x"), 1),
            (key("b", "y"), 2),
        ])
    );
    assert!(sites.armed().is_empty());

    sites.arm("a", "x", 2);
    assert!(
        !sites.hit("a", "x"),
        "a hit number already passed never fires"
    );
    assert_eq!(sites.armed().len(), 1);
    sites.disarm_all();
    assert!(sites.armed().is_empty());
}

/// The answers of `draws` buggify calls on one site, with buggify at `per_mille` from `seed`.
fn buggify_answers(seed: u64, per_mille: u32, draws: usize) -> Vec<bool> {
    let sites = FaultSites::new();
    sites.set_buggify(per_mille, Arc::new(RunSeed::new(seed).stream("buggify")));
    (0..draws)
        .map(|_| sites.buggify("broker", "site"))
        .collect()
}

#[test]
fn buggify_is_off_by_default_and_replays_from_its_seed() {
    let sites = FaultSites::new();
    assert!(!(0..100).any(|_| sites.buggify("broker", "site")));
    assert_eq!(
        sites.hits()[&("broker".to_owned(), "site".to_owned())],
        100,
        "counted even when off"
    );

    let answers = buggify_answers(5, 300, 400);
    assert_eq!(
        answers,
        buggify_answers(5, 300, 400),
        "same seed, same answers"
    );
    assert_ne!(answers, buggify_answers(6, 300, 400), "the seed reaches it");
    let yes = answers.iter().filter(|yes| **yes).count();
    assert!((80..160).contains(&yes), "{yes} of 400 at 30%");
    assert!(buggify_answers(5, 1000, 50).iter().all(|yes| *yes));
    assert!(
        !buggify_answers(5, 0, 50).iter().any(|yes| *yes),
        "0 is off"
    );
}

#[test]
fn a_disk_halts_at_a_fired_point_until_resumed() {
    let disk = SimDisk::new();
    let dir = Path::new("/data");
    disk.prepare_dir(dir).unwrap();
    crash_point!(disk, "before.attaching");
    assert!(
        !buggify!(disk, "before.attaching"),
        "no sites attached: no-op"
    );

    let sites = Arc::new(FaultSites::new());
    sites.set_buggify(1000, Arc::new(SimEntropy::new(1)));
    disk.attach_fault_sites("host", Arc::clone(&sites), Arc::new(SimEntropy::new(2)));
    assert!(buggify!(disk, "site"));
    sites.arm("host", "between.writes", 2);

    let synced = disk.open(&dir.join("synced"), OpenMode::CreateNew).unwrap();
    synced.write_at(0, b"durable").unwrap();
    synced.sync().unwrap();
    disk.sync_dir(dir).unwrap();
    let pending = disk
        .open(&dir.join("pending"), OpenMode::CreateNew)
        .unwrap();
    pending.write_at(0, b"never synced").unwrap();

    crash_point!(disk, "between.writes");
    assert_eq!(disk.halted_at(), None, "hit 1 of 2");
    crash_point!(disk, "between.writes");
    assert_eq!(disk.halted_at(), Some("between.writes"));
    let report: CrashReport = disk.take_point_crash().expect("the point crashed the disk");
    assert!(report.reverted.contains(&dir.join("pending")), "{report:?}");
    assert!(disk.take_point_crash().is_none());
    assert_eq!(sites.take_fired().len(), 1);

    // Halted: every operation fails, nothing is counted.
    let error = disk
        .open(&dir.join("synced"), OpenMode::Existing)
        .err()
        .expect("halted");
    assert!(
        error.to_string().contains("crash point between.writes"),
        "{error}"
    );
    assert!(disk.create_dir_all(&dir.join("new")).is_err());
    assert!(
        disk.rename(&dir.join("synced"), &dir.join("moved"))
            .is_err()
    );
    assert!(disk.remove_file(&dir.join("synced")).is_err());
    assert!(disk.remove_dir_all(dir).is_err());
    assert!(disk.list(dir).is_err());
    assert!(disk.sync_dir(dir).is_err());
    assert!(!disk.exists(&dir.join("synced")));
    assert!(synced.write_at(0, b"x").is_err(), "old handles fail");
    assert!(
        !buggify!(disk, "site"),
        "a halted incarnation is never buggified"
    );
    let hits_while_halted = sites.hits();
    crash_point!(disk, "between.writes");
    assert_eq!(sites.hits(), hits_while_halted);

    disk.resume();
    assert_eq!(disk.halted_at(), None);
    assert_eq!(disk.list(dir).unwrap(), ["synced"]);
    let reopened = disk.open(&dir.join("synced"), OpenMode::Existing).unwrap();
    let mut bytes = [0u8; 7];
    reopened.read_exact_at(0, &mut bytes).unwrap();
    assert_eq!(&bytes, b"durable");
    assert!(
        synced.read_at(0, &mut bytes).is_err(),
        "still the old generation"
    );
}

// ---- brokers in turmoil ------------------------------------------------------------------

/// One incarnation of the broker host; serves until the host is crashed.
async fn serve_broker(env: Env, config: Config) -> turmoil::Result {
    let _broker = Broker::builder()
        .env(env)
        .data_dir(DATA_DIR)
        .listen(SocketAddr::from(([0, 0, 0, 0], PORT)))
        .advertised_host(BROKER)
        .config(config)
        .start()
        .await?;
    std::future::pending::<()>().await;
    Ok(())
}

/// What a run did to the broker host.
#[derive(Debug)]
struct Outcome {
    fired: Vec<FiredPoint>,
    crashes: Vec<CrashReport>,
    hits: BTreeMap<(String, String), u64>,
}

/// Runs a broker host on a `SimDisk` with `sites` attached and a workload client. The driver
/// polls fired crash points after every step: it crashes the broker host, keeps it down a
/// while, resumes its disk and restarts it. The workload's own checks fail the run.
fn run<W, F>(seed: u64, config: Config, sites: Arc<FaultSites>, workload: W) -> Outcome
where
    W: FnOnce(Env) -> F,
    F: Future<Output = turmoil::Result> + 'static,
{
    try_run(seed, config, sites, workload).unwrap_or_else(|error| panic!("seed {seed}: {error}"))
}

/// Like [`run`], but a failed workload is returned as an error.
fn try_run<W, F>(
    seed: u64,
    config: Config,
    sites: Arc<FaultSites>,
    workload: W,
) -> Result<Outcome, String>
where
    W: FnOnce(Env) -> F,
    F: Future<Output = turmoil::Result> + 'static,
{
    let seed = RunSeed::new(seed);
    let disk = Arc::new(SimDisk::new());
    disk.prepare_dir(Path::new(DATA_DIR)).unwrap();
    disk.attach_fault_sites(BROKER, Arc::clone(&sites), Arc::new(seed.stream(DISK)));
    // Cut the host off the moment a point fires: its answer to the request in hand must not
    // get out, or a client would see an acknowledgement the crash then undoes.
    sites.set_on_fire(Box::new(|host: &str| turmoil::partition(host, WORKLOAD)));
    let broker_env = sim_env(BROKER, seed, Arc::clone(&disk));
    let workload_env = sim_env(WORKLOAD, seed, Arc::new(SimDisk::new()));

    let mut sim = sim_builder(seed)
        .simulation_duration(Duration::from_secs(600))
        .build();
    sim.host(BROKER, move || {
        serve_broker(broker_env.clone(), config.clone())
    });
    sim.client(WORKLOAD, workload(workload_env));

    let mut outcome = Outcome {
        fired: Vec::new(),
        crashes: Vec::new(),
        hits: BTreeMap::new(),
    };
    loop {
        if sim.step().map_err(|error| error.to_string())? {
            break;
        }
        for fired in sites.take_fired() {
            assert_eq!(fired.host, BROKER);
            crash_host(&mut sim, BROKER, &[WORKLOAD]);
            for _ in 0..DOWNTIME_STEPS {
                assert!(!sim.step().map_err(|error| error.to_string())?);
            }
            outcome
                .crashes
                .push(disk.take_point_crash().expect("the disk crashed itself"));
            disk.resume();
            sim.bounce(BROKER);
            outcome.fired.push(fired);
        }
    }
    outcome.hits = sites.hits();
    Ok(outcome)
}

/// Connects, retrying while the broker is not up (again).
async fn connect(env: &Env) -> tidepool_client::Result<Client> {
    let config = ClientConfig::new(format!("{BROKER}:{PORT}"))
        .request_timeout(Duration::from_secs(5))
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(500));
    let mut attempt = 0;
    loop {
        match Client::connect(env.clone(), config.clone()).await {
            Ok(client) => return Ok(client),
            Err(_) if attempt < 100 => {
                attempt += 1;
                env.clock.sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Creates a topic, again if a crash cut the first attempt short.
async fn create_topic(client: &Client, topic: NewTopic) -> turmoil::Result {
    let admin = Admin::new(client.clone());
    let mut attempt = 0;
    loop {
        match admin.create_topic(topic.clone()).await {
            Ok(()) => return Ok(()),
            Err(error) if error.code() == Some(KafkaCode::TOPIC_ALREADY_EXISTS) => return Ok(()),
            Err(error) if error.is_retriable() && attempt < ATTEMPTS => {
                client.sleep(client.backoff(attempt)).await;
                attempt += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

fn value(index: usize) -> Vec<u8> {
    format!("record-{index:03}").into_bytes()
}

/// Produces `count` records to partition 0 of `topic`, `window` in flight at a time, with
/// acks=all and idempotence; returns (offset, value) of each, in order. Every send must be
/// acknowledged: the idempotent producer retries through crashes and refusals.
async fn produce(
    client: &Client,
    topic: &str,
    count: usize,
    window: usize,
    key_of: impl Fn(usize) -> Vec<u8>,
) -> turmoil::Result<Vec<(i64, Vec<u8>)>> {
    let producer = Producer::new(
        client.clone(),
        ProducerConfig::default()
            .acks(Acks::All)
            .idempotence(true)
            .delivery_timeout(Duration::from_secs(120)),
    )
    .await?;
    let mut acknowledged = Vec::new();
    for chunk in (0..count).collect::<Vec<_>>().chunks(window) {
        let mut deliveries = Vec::new();
        for index in chunk {
            let record = ProducerRecord::new(topic, value(*index))
                .key(key_of(*index))
                .partition(0);
            deliveries.push((*index, producer.send(record).await?));
        }
        for (index, delivery) in deliveries {
            let metadata = delivery
                .await
                .map_err(|error| format!("record {index} not delivered: {error}"))?;
            acknowledged.push((metadata.offset, value(index)));
        }
    }
    producer.close().await?;
    Ok(acknowledged)
}

/// Every record of partition 0 of `topic` from `from` up to its high watermark, by offset,
/// retried while a crash gets in the way.
async fn read_partition(
    client: &Client,
    topic: &str,
    from: i64,
) -> turmoil::Result<BTreeMap<i64, Vec<u8>>> {
    let mut attempt = 0;
    loop {
        match read_partition_once(client, topic, from).await {
            Ok(records) => return Ok(records),
            Err(_) if attempt < ATTEMPTS => {
                client.sleep(client.backoff(attempt)).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn read_partition_once(
    client: &Client,
    topic: &str,
    from: i64,
) -> turmoil::Result<BTreeMap<i64, Vec<u8>>> {
    let partition = TopicPartition::new(topic, 0);
    let listed = Admin::new(client.clone())
        .list_offsets(BTreeMap::from([(partition.clone(), OffsetSpec::Latest)]))
        .await?;
    let end = listed[&partition].offset;
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::default().auto_offset_reset(OffsetReset::Earliest),
    )
    .await?;
    consumer.assign(vec![partition.clone()]).await?;
    consumer.seek(&partition, from).await?;
    let mut records = BTreeMap::new();
    let deadline = client.now() + Duration::from_secs(60);
    while consumer.position(&partition).unwrap_or(from) < end {
        if client.now() > deadline {
            return Err(format!("read {} records below {end}", records.len()).into());
        }
        for record in consumer.poll(Duration::from_millis(500)).await? {
            let value = record.value.map(|value| value.to_vec()).unwrap_or_default();
            records.insert(record.offset, value);
        }
    }
    consumer.close().await?;
    Ok(records)
}

/// The log holds every acknowledged record at its offset, its offsets are dense from 0, and
/// no value is stored twice.
fn check_log(stored: &BTreeMap<i64, Vec<u8>>, acknowledged: &[(i64, Vec<u8>)]) -> turmoil::Result {
    for (offset, value) in acknowledged {
        if stored.get(offset) != Some(value) {
            return Err(format!(
                "acknowledged {:?} at offset {offset}, found {:?}",
                String::from_utf8_lossy(value),
                stored
                    .get(offset)
                    .map(|found| String::from_utf8_lossy(found))
            )
            .into());
        }
    }
    let mut seen = BTreeMap::new();
    for (expected, (offset, value)) in stored.iter().enumerate() {
        if *offset != expected as i64 {
            return Err(format!("offset {offset} where {expected} was due").into());
        }
        if let Some(first) = seen.insert(value, offset) {
            return Err(format!(
                "{:?} stored twice, at {first} and {offset}",
                String::from_utf8_lossy(value)
            )
            .into());
        }
    }
    Ok(())
}

/// `flush.messages=1` (fsync before every acknowledgement), one `__consumer_offsets` partition.
fn fsync_every_append() -> Config {
    let defaults = Config::default();
    Config {
        topic_defaults: TopicConfig {
            flush_messages: 1,
            ..defaults.topic_defaults.clone()
        },
        offsets_topic_partitions: 1,
        ..defaults
    }
}

const RECORDS: usize = 40;

/// Produces RECORDS records (a few batches in flight at a time) and reads them back.
async fn produce_and_read_back(env: Env) -> turmoil::Result {
    let client = connect(&env).await?;
    create_topic(&client, NewTopic::new("points", 1, 1)).await?;
    let acknowledged = produce(&client, "points", RECORDS, 5, value).await?;
    assert_eq!(acknowledged.len(), RECORDS);
    let stored = read_partition(&client, "points", 0).await?;
    check_log(&stored, &acknowledged)?;
    assert_eq!(stored.len(), RECORDS, "every record once");
    client.close();
    Ok(())
}

/// Arms `site` at its third hit on the broker, runs the produce workload, and checks the
/// point fired once and the broker came back with every acknowledged record once.
fn crash_at_third_hit(site: &str, seed: u64) -> Outcome {
    let sites = Arc::new(FaultSites::new());
    sites.arm(BROKER, site, 3);
    let outcome = run(seed, fsync_every_append(), sites, produce_and_read_back);
    let expected = FiredPoint {
        host: BROKER.into(),
        site: site.into(),
        hit: 3,
    };
    assert_eq!(outcome.fired, [expected], "seed {seed}");
    outcome
}

#[test]
fn a_crash_between_writing_a_batch_and_syncing_it_loses_nothing_acknowledged() {
    for seed in 1..4 {
        crash_at_third_hit("log.append.written", seed);
    }
}

#[test]
fn a_crash_between_the_fsync_and_the_answer_duplicates_nothing() {
    for seed in 1..4 {
        let outcome = crash_at_third_hit("log.append.synced", seed);
        // Synced before the crash: the batch survives it, and the producer's retry must be
        // recognised as a duplicate (the log check finds a value stored twice otherwise).
        assert!(
            outcome.hits[&(BROKER.to_owned(), "log.append.synced".to_owned())]
                >= RECORDS as u64 / 5,
            "{outcome:?}"
        );
    }
}

#[test]
fn a_crash_at_a_point_replays_from_its_seed() {
    let first = crash_at_third_hit("log.append.written", 9);
    let again = crash_at_third_hit("log.append.written", 9);
    assert_eq!(first.crashes, again.crashes);
    assert_eq!(first.hits, again.hits);
}

/// The known-bad variants (`Config::sabotage`): the same crash points make the broken
/// guarantee visible, and the workload's log check catches it.
fn sabotaged_runs(
    sabotage: Sabotage,
    site: &str,
    hit: u64,
    seeds: std::ops::Range<u64>,
) -> Vec<Result<Outcome, String>> {
    seeds
        .map(|seed| {
            let sites = Arc::new(FaultSites::new());
            sites.arm(BROKER, site, hit);
            let config = Config {
                sabotage,
                ..fsync_every_append()
            };
            try_run(seed, config, sites, produce_and_read_back)
        })
        .collect()
}

#[test]
fn forgetting_producer_state_stores_a_retried_batch_twice() {
    let sabotage = Sabotage {
        forget_producer_state: true,
        ..Default::default()
    };
    for (seed, result) in sabotaged_runs(sabotage, "log.append.synced", 3, 1..4)
        .into_iter()
        .enumerate()
    {
        let error = result.err().unwrap_or_else(|| panic!("run {seed} passed"));
        assert!(error.contains("stored twice"), "run {seed}: {error}");
    }
}

#[test]
fn acknowledging_before_the_fsync_loses_acknowledged_records_in_a_crash() {
    let sabotage = Sabotage {
        ack_before_fsync: true,
        ..Default::default()
    };
    let results = sabotaged_runs(sabotage, "log.append.written", 5, 1..7);
    // Whether a crash loses the unsynced tail is the seed's choice (it may keep it all).
    let lost: Vec<&String> = results
        .iter()
        .filter_map(|result| result.as_ref().err())
        .collect();
    assert!(
        lost.iter().any(|error| error.contains("acknowledged")),
        "no run lost an acknowledged record: {results:?}"
    );
    assert!(
        lost.iter().all(|error| error.contains("acknowledged")),
        "{lost:?}"
    );
}

/// Everything the broker writes in more than one step: produce into rolling segments of a
/// plain and a compacted topic, let the cleaner compact, consume and commit in a group,
/// delete records, add a partition, delete a topic.
async fn touch_every_site(env: Env) -> turmoil::Result {
    let client = connect(&env).await?;
    let admin = Admin::new(client.clone());
    create_topic(
        &client,
        NewTopic::new("plain", 1, 1).config("segment.bytes", "400"),
    )
    .await?;
    create_topic(
        &client,
        NewTopic::new("compacted", 1, 1)
            .config("cleanup.policy", "compact")
            .config("segment.bytes", "400")
            .config("min.cleanable.dirty.ratio", "0.01"),
    )
    .await?;
    let plain = produce(&client, "plain", 30, 3, value).await?;
    produce(&client, "compacted", 30, 3, |index| {
        format!("key-{}", index % 4).into_bytes()
    })
    .await?;

    // A group consumes "plain" and commits what it read.
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::new("readers").auto_offset_reset(OffsetReset::Earliest),
    )
    .await?;
    consumer.subscribe(&["plain"]).await?;
    let mut read = 0;
    let deadline = client.now() + Duration::from_secs(60);
    while read < plain.len() {
        if client.now() > deadline {
            return Err(format!("the group read {read} of {} records", plain.len()).into());
        }
        read += consumer.poll(Duration::from_millis(500)).await?.len();
        consumer.commit_sync(None).await?;
    }
    consumer.close().await?;
    let committed = admin.list_group_offsets("readers").await?;
    assert_eq!(
        committed[&TopicPartition::new("plain", 0)],
        plain.len() as i64
    );

    // Let the cleaner (every 100 ms) compact the inactive segments.
    client.sleep(Duration::from_secs(2)).await;

    let deleted = admin
        .delete_records(BTreeMap::from([(TopicPartition::new("plain", 0), 20)]))
        .await?;
    assert_eq!(deleted[&TopicPartition::new("plain", 0)], 20);
    let left: BTreeMap<i64, Vec<u8>> = plain[20..].iter().cloned().collect();
    assert_eq!(read_partition(&client, "plain", 20).await?, left);
    admin.create_partitions("plain", 2).await?;
    let results = admin.delete_topics(&["plain"]).await?;
    assert!(results.values().all(Result::is_ok), "{results:?}");
    client.close();
    Ok(())
}

#[test]
fn a_workload_reaches_every_crash_point_and_buggify_site_of_the_broker() {
    let config = Config {
        cleaner_backoff_ms: 100,
        ..fsync_every_append()
    };
    let sites = Arc::new(FaultSites::new());
    let outcome = run(3, config, sites, touch_every_site);
    assert!(outcome.fired.is_empty());
    let missing: Vec<&str> = CRASH_POINTS
        .iter()
        .chain(BUGGIFY_SITES)
        .copied()
        .filter(|site| {
            !outcome
                .hits
                .contains_key(&(BROKER.to_owned(), (*site).to_owned()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "never reached: {missing:?}\n{:?}",
        outcome.hits
    );
}

/// With buggify on, the broker's short fetches and retriable refusals must not cost a client
/// a record, nor store one twice; a group still reads everything and commits.
async fn produce_and_consume_in_a_group(env: Env) -> turmoil::Result {
    let client = connect(&env).await?;
    create_topic(&client, NewTopic::new("buggified", 1, 1)).await?;
    let acknowledged = produce(&client, "buggified", RECORDS, 5, value).await?;
    check_log(
        &read_partition(&client, "buggified", 0).await?,
        &acknowledged,
    )?;

    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::new("buggified-readers").auto_offset_reset(OffsetReset::Earliest),
    )
    .await?;
    consumer.subscribe(&["buggified"]).await?;
    let mut read = BTreeMap::new();
    let deadline = client.now() + Duration::from_secs(120);
    while read.len() < RECORDS {
        if client.now() > deadline {
            return Err(format!("the group read {} of {RECORDS} records", read.len()).into());
        }
        for record in consumer.poll(Duration::from_millis(500)).await? {
            let value = record.value.map(|value| value.to_vec()).unwrap_or_default();
            if let Some(earlier) = read.insert(record.offset, value.clone()) {
                assert_eq!(
                    earlier, value,
                    "offset {} read twice, differently",
                    record.offset
                );
            }
        }
    }
    let mut attempt = 0;
    while let Err(error) = consumer.commit_sync(None).await {
        if attempt >= ATTEMPTS {
            return Err(format!("commit failed: {error}").into());
        }
        attempt += 1;
        let _ = consumer.poll(Duration::from_millis(100)).await?;
    }
    consumer.close().await?;
    let committed = Admin::new(client.clone())
        .list_group_offsets("buggified-readers")
        .await?;
    assert_eq!(
        committed[&TopicPartition::new("buggified", 0)],
        RECORDS as i64
    );
    client.close();
    Ok(())
}

#[test]
fn clients_cope_with_a_buggified_broker() {
    for seed in 1..3 {
        let sites = Arc::new(FaultSites::new());
        sites.set_buggify(250, Arc::new(RunSeed::new(seed).stream("buggify")));
        let outcome = run(
            seed,
            fsync_every_append(),
            sites,
            produce_and_consume_in_a_group,
        );
        for site in BUGGIFY_SITES {
            assert!(
                outcome
                    .hits
                    .contains_key(&(BROKER.to_owned(), (*site).to_owned())),
                "seed {seed}: {site} never reached: {:?}",
                outcome.hits
            );
        }
    }
}
