//! Sends numbered records to a topic and prints where each landed.
//!
//! ```text
//! cargo run -p tidepool-client --example produce -- --bootstrap 127.0.0.1:9092 --topic demo \
//!     [--count 10] [--key-prefix KEY] [--acks 0|1|all] [--compression none|gzip|snappy|lz4|zstd]
//! ```

use std::process::ExitCode;

use tidepool_client::{
    Acks, Client, ClientConfig, Compression, Producer, ProducerConfig, ProducerRecord,
};
use tidepool_io::Env;

const USAGE: &str = "usage: produce [--bootstrap HOST:PORT] [--topic NAME] [--count N] \
                     [--key-prefix KEY] [--acks 0|1|all] [--compression none|gzip|snappy|lz4|zstd]";

struct Args {
    bootstrap: String,
    topic: String,
    count: usize,
    key_prefix: Option<String>,
    acks: Acks,
    compression: Compression,
}

fn parse() -> Result<Args, String> {
    let mut parsed = Args {
        bootstrap: "127.0.0.1:9092".to_string(),
        topic: "demo".to_string(),
        count: 10,
        key_prefix: None,
        acks: Acks::All,
        compression: Compression::None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--bootstrap" => parsed.bootstrap = value,
            "--topic" => parsed.topic = value,
            "--count" => parsed.count = value.parse().map_err(|_| format!("--count {value}"))?,
            "--key-prefix" => parsed.key_prefix = Some(value),
            "--acks" => {
                parsed.acks = match value.as_str() {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    _ => return Err(format!("--acks {value}")),
                }
            }
            "--compression" => {
                parsed.compression = match value.as_str() {
                    "none" => Compression::None,
                    "gzip" => Compression::Gzip,
                    "snappy" => Compression::Snappy,
                    "lz4" => Compression::Lz4,
                    "zstd" => Compression::Zstd,
                    _ => return Err(format!("--compression {value}")),
                }
            }
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("{error}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> tidepool_client::Result<()> {
    let client = Client::connect(Env::real(), ClientConfig::new(&args.bootstrap)).await?;
    let config = ProducerConfig::default()
        .acks(args.acks)
        .compression(args.compression);
    let producer = Producer::new(client.clone(), config).await?;

    // Send everything first and await afterwards: records batch together instead of each
    // waiting for the previous one's round trip.
    let mut deliveries = Vec::with_capacity(args.count);
    for i in 0..args.count {
        let mut record = ProducerRecord::new(&args.topic, format!("record {i}"));
        if let Some(prefix) = &args.key_prefix {
            record = record.key(format!("{prefix}-{i}"));
        }
        deliveries.push(producer.send(record).await?);
    }
    let mut failed = 0;
    for (i, delivery) in deliveries.into_iter().enumerate() {
        match delivery.await {
            Ok(written) => println!(
                "record {i} -> {}-{} offset {} timestamp {}",
                written.topic, written.partition, written.offset, written.timestamp
            ),
            Err(error) => {
                failed += 1;
                eprintln!("record {i} failed: {error}");
            }
        }
    }
    producer.close().await?;
    client.close();
    if failed > 0 {
        return Err(tidepool_client::Error::Invalid(format!(
            "{failed} of {} records failed",
            args.count
        )));
    }
    Ok(())
}
