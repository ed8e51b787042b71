//! Consumes topics as a member of a group, printing each record and each rebalance, until
//! Ctrl-C (or `--count` records); then commits and leaves the group.
//!
//! ```text
//! cargo run -p tidepool-client --example consume -- --bootstrap 127.0.0.1:9092 --group demo \
//!     --topic demo [--topic more] [--from-beginning] [--count N]
//! ```
//!
//! Run it twice with the same group to watch the partitions split between the two.

use std::process::ExitCode;
use std::time::Duration;

use tidepool_client::{
    BoxFuture, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset,
    RebalanceListener, TopicPartition,
};
use tidepool_io::Env;

const USAGE: &str = "usage: consume [--bootstrap HOST:PORT] --group NAME --topic NAME [--topic NAME...] \
                     [--from-beginning] [--count N]";

struct Args {
    bootstrap: String,
    group: String,
    topics: Vec<String>,
    from_beginning: bool,
    count: Option<usize>,
}

fn parse() -> Option<Args> {
    let mut parsed = Args {
        bootstrap: "127.0.0.1:9092".to_string(),
        group: String::new(),
        topics: Vec::new(),
        from_beginning: false,
        count: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--from-beginning" => parsed.from_beginning = true,
            "--bootstrap" => parsed.bootstrap = args.next()?,
            "--group" => parsed.group = args.next()?,
            "--topic" => parsed.topics.push(args.next()?),
            "--count" => parsed.count = Some(args.next()?.parse().ok()?),
            _ => return None,
        }
    }
    (!parsed.group.is_empty() && !parsed.topics.is_empty()).then_some(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(args) = parse() else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Prints what each rebalance gives and takes.
struct Announce;

fn names(partitions: &[TopicPartition]) -> String {
    let names: Vec<String> = partitions.iter().map(ToString::to_string).collect();
    format!("[{}]", names.join(", "))
}

impl RebalanceListener for Announce {
    fn on_assigned<'a>(
        &'a self,
        _: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        eprintln!("assigned {}", names(partitions));
        Box::pin(std::future::ready(()))
    }

    fn on_revoked<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            eprintln!("revoked {}", names(partitions));
            // Whoever gets these partitions next starts where we stopped.
            if let Err(error) = consumer.commit_sync(None).await {
                eprintln!("commit on revocation failed: {error}");
            }
        })
    }

    fn on_lost<'a>(
        &'a self,
        _: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        eprintln!("lost {} (the group moved on without us)", names(partitions));
        Box::pin(std::future::ready(()))
    }
}

fn show(record: &ConsumerRecord) {
    let text = |bytes: &Option<bytes::Bytes>| match bytes {
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        None => "null".to_string(),
    };
    println!(
        "{}-{}@{} key={} value={}",
        record.topic,
        record.partition,
        record.offset,
        text(&record.key),
        text(&record.value)
    );
}

async fn run(args: Args) -> tidepool_client::Result<()> {
    let client = Client::connect(Env::real(), ClientConfig::new(&args.bootstrap)).await?;
    let reset = if args.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig::new(&args.group).auto_offset_reset(reset),
    )
    .await?;
    consumer.set_rebalance_listener(std::sync::Arc::new(Announce));
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).await?;

    let mut seen = 0;
    let outcome = loop {
        if args.count.is_some_and(|count| seen >= count) {
            break Ok(());
        }
        let polled = tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => break Ok(()),
            polled = consumer.poll(Duration::from_secs(1)) => polled,
        };
        match polled {
            Ok(records) => {
                seen += records.len();
                records.iter().for_each(show);
            }
            Err(error) => break Err(error),
        }
    };
    // Auto-commit commits the positions and a dynamic member leaves, so the others take over
    // its partitions at once.
    consumer.close().await?;
    client.close();
    eprintln!("consumed {seen} records");
    outcome
}
