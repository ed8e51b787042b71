//! Adding a consumer group to a running pipeline needs no change to the collector or the other
//! stages: this stage counts events per type in its own group, next to whatever already reads
//! `events.raw`.
//!
//! ```sh
//! tidepool up &                                   # broker, collector, the three stages
//! cargo run -p tidepool-pipeline --example new_stage -- 127.0.0.1:9092
//! curl -X POST localhost:8080/v1/events -d '{"id":"a1","tenant":"acme","type":"click","timestamp":1714564800000,"payload":{}}'
//! ```
//!
//! It reads from the beginning (a new group starts at the earliest offset), prints each event
//! type's count as it changes, and stops on Ctrl-C, leaving its group. Failing events would go
//! through `events.retry` and `events.dlq` like the shipped stages'.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tidepool_client::{BoxFuture, Client, ClientConfig, Producer};
use tidepool_io::Env;
use tidepool_pipeline::app::pipeline_producer_config;
use tidepool_pipeline::metrics::PipelineMetrics;
use tidepool_pipeline::runtime::{Handler, HandlerError, Incoming, Stage, StageConfig};
use tidepool_pipeline::stages::parse_event;

/// Counts events per type. Kept in memory: this example's effect needs no idempotence, since
/// a recount after a redelivery is harmless for a display. A stage whose effect matters keeps
/// it in the store with `Store::apply_effect`, keyed by event id.
struct TypeCounter {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Handler for TypeCounter {
    fn handle<'a>(&'a self, incoming: &'a Incoming) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let event = parse_event(incoming)?;
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let count = counts.entry(event.kind.clone()).or_default();
            *count += 1;
            println!("{}: {count}", event.kind);
            Ok(())
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".to_owned());
    let client = Client::connect(Env::real(), ClientConfig::new(bootstrap)).await?;
    let producer = Producer::new(client.clone(), pipeline_producer_config()).await?;
    let handler = Arc::new(TypeCounter {
        counts: Mutex::new(BTreeMap::new()),
    });
    let stage = Stage::new(
        client.clone(),
        producer.clone(),
        StageConfig::new("type-counter"),
        handler,
        PipelineMetrics::new(),
    )
    .await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(stage.run(stopped));
    tokio::signal::ctrl_c().await?;
    let _ = stop.send(true);
    running.await??;
    producer.close().await?;
    client.close();
    Ok(())
}
