//! A throughput tool for tidepool-client shaped like librdkafka's `rdkafka_performance`, so
//! `scripts/bench --only client` runs both with the same arguments against the same broker and
//! parses one summary format.
//!
//! ```sh
//! cargo run --release -p tidepool-client --example perf -- -P -t TOPIC [-p PARTITION] -s 100 -c 1000000 -a -1 -b HOST:PORT [-X linger.ms=5] [-z lz4]
//! cargo run --release -p tidepool-client --example perf -- -C -t TOPIC -p 0 -p 1 ... -o 0 -c 1000000 -e -b HOST:PORT
//! ```
//!
//! Produce: N records of S bytes (keyless: sticky partitioning, or all to `-p`), timed from the
//! first send to the last delivery report. Consume: assign() the given partitions at `-o`, no
//! group, timed from the first record to the N-th, as rdkafka_performance times them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tidepool_client::{
    Acks, Client, ClientConfig, Compression, Consumer, ConsumerConfig, DeliveryFuture, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};
use tidepool_io::Env;

#[derive(Debug)]
struct Args {
    produce: bool,
    topic: String,
    partitions: Vec<i32>,
    size: usize,
    count: u64,
    acks: Acks,
    bootstrap: String,
    linger: Duration,
    batch_bytes: Option<usize>,
    compression: Compression,
    offset: i64,
}

fn usage() -> ! {
    eprintln!(
        "usage: perf (-P|-C) -t TOPIC [-p PARTITION]... [-s BYTES] [-c COUNT] [-a ACKS] [-o OFFSET] [-e] \
         [-z none|gzip|snappy|lz4|zstd] [-X linger.ms=N] [-X batch.size=N] -b HOST:PORT"
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut args = Args {
        produce: true,
        topic: String::new(),
        partitions: Vec::new(),
        size: 100,
        count: 100_000,
        acks: Acks::All,
        bootstrap: "127.0.0.1:9092".into(),
        linger: Duration::from_millis(5),
        batch_bytes: None,
        compression: Compression::None,
        offset: 0,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().unwrap_or_else(|| usage());
        match word.as_str() {
            "-P" => args.produce = true,
            "-C" => args.produce = false,
            "-t" => args.topic = value(),
            "-p" => args
                .partitions
                .push(value().parse().unwrap_or_else(|_| usage())),
            "-s" => args.size = value().parse().unwrap_or_else(|_| usage()),
            "-c" => args.count = value().parse().unwrap_or_else(|_| usage()),
            "-b" => args.bootstrap = value(),
            "-o" => args.offset = value().parse().unwrap_or_else(|_| usage()),
            "-e" => {}
            "-a" => {
                args.acks = match value().as_str() {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "-1" | "all" => Acks::All,
                    _ => usage(),
                }
            }
            "-z" => {
                args.compression = match value().as_str() {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    _ => usage(),
                }
            }
            "-X" => {
                let setting = value();
                let (name, number) = setting.split_once('=').unwrap_or_else(|| usage());
                let number: u64 = number.parse().unwrap_or_else(|_| usage());
                match name {
                    "linger.ms" => args.linger = Duration::from_millis(number),
                    "batch.size" => args.batch_bytes = Some(number as usize),
                    // Settings of librdkafka's partitioner that ours has no knob for.
                    "sticky.partitioning.linger.ms" => {}
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    if args.topic.is_empty() {
        usage();
    }
    args
}

#[allow(
    clippy::disallowed_methods,
    reason = "a benchmark measures real elapsed time"
)]
fn start_timer() -> Instant {
    Instant::now()
}

async fn produce(client: Client, args: &Args) -> anyhow::Result<()> {
    let mut config = ProducerConfig::default()
        .acks(args.acks)
        .idempotence(args.acks == Acks::All)
        .linger(args.linger)
        .compression(args.compression);
    if let Some(bytes) = args.batch_bytes {
        config = config.batch_bytes(bytes);
    }
    let producer = Producer::new(client, config).await?;
    let value = Bytes::from(vec![b'x'; args.size]);
    // Deliveries are awaited in order by a second task, as delivery reports arrive in
    // rdkafka_performance, so the sender never waits on them and memory stays bounded.
    let (pending, mut reports) = tokio::sync::mpsc::channel::<DeliveryFuture>(1 << 16);
    let collector = tokio::spawn(async move {
        let (mut delivered, mut failed, mut last_offset) = (0u64, 0u64, -1i64);
        while let Some(delivery) = reports.recv().await {
            match delivery.await {
                Ok(metadata) => {
                    delivered += 1;
                    last_offset = metadata.offset;
                }
                Err(error) => {
                    failed += 1;
                    if failed <= 5 {
                        eprintln!("delivery failed: {error}");
                    }
                }
            }
        }
        (delivered, failed, last_offset)
    });
    let started = start_timer();
    for _ in 0..args.count {
        let mut record = ProducerRecord::new(&args.topic, value.clone());
        if let Some(&partition) = args.partitions.first() {
            record = record.partition(partition);
        }
        let delivery = producer.send(record).await?;
        if pending.send(delivery).await.is_err() {
            anyhow::bail!("the delivery collector stopped");
        }
    }
    drop(pending);
    let (delivered, failed, last_offset) = collector.await?;
    let elapsed = started.elapsed();
    producer.close().await?;
    let ms = elapsed.as_millis().max(1);
    let bytes = args.count * args.size as u64;
    println!(
        "% {} messages produced ({bytes} bytes), {delivered} delivered (offset {last_offset}, {failed} failed) in {ms}ms: {} msgs/s and {:.2} MB/s",
        args.count,
        u128::from(delivered) * 1000 / ms,
        bytes as f64 / 1e6 / elapsed.as_secs_f64(),
    );
    if failed > 0 {
        anyhow::bail!("{failed} deliveries failed");
    }
    Ok(())
}

async fn consume(client: Client, args: &Args) -> anyhow::Result<()> {
    let consumer = Consumer::new(client, ConsumerConfig::default().auto_commit(false)).await?;
    let partitions: Vec<TopicPartition> = args
        .partitions
        .iter()
        .map(|&partition| TopicPartition::new(&args.topic, partition))
        .collect();
    consumer.assign(partitions.clone()).await?;
    for partition in &partitions {
        consumer.seek(partition, args.offset).await?;
    }
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut started = None;
    let deadline = start_timer() + Duration::from_secs(60 + args.count / 5_000);
    while count < args.count {
        if start_timer() > deadline {
            anyhow::bail!(
                "consumed {count} of {} records before the deadline",
                args.count
            );
        }
        let records = consumer.poll(Duration::from_millis(500)).await?;
        if !records.is_empty() && started.is_none() {
            started = Some(start_timer());
        }
        for record in &records {
            count += 1;
            bytes += record.value.as_ref().map_or(0, |v| v.len() as u64);
        }
    }
    let elapsed = started.map_or(Duration::from_millis(1), |s| s.elapsed());
    consumer.close().await?;
    let ms = elapsed.as_millis().max(1);
    println!(
        "% {count} messages ({bytes} bytes) consumed in {ms}ms: {} msgs/s ({:.2} MB/s)",
        u128::from(count) * 1000 / ms,
        bytes as f64 / 1e6 / elapsed.as_secs_f64(),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse();
    let client = Client::connect(Env::real(), ClientConfig::new(&args.bootstrap)).await?;
    if args.produce {
        produce(client, &args).await
    } else {
        consume(client, &args).await
    }
}
