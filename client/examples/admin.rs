//! Creates a topic, prints its configs that are not defaults, and lists the cluster's groups.
//!
//! ```text
//! cargo run -p tidepool-client --example admin -- --bootstrap 127.0.0.1:9092 [--topic NAME]
//! ```

use std::process::ExitCode;

use tidepool_client::{Admin, Client, ClientConfig, ConfigResource, KafkaCode, NewTopic};
use tidepool_io::Env;

#[tokio::main]
async fn main() -> ExitCode {
    let mut bootstrap = "127.0.0.1:9092".to_string();
    let mut topic = "tidepool-admin-example".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--bootstrap", Some(value)) => bootstrap = value,
            ("--topic", Some(value)) => topic = value,
            _ => {
                eprintln!("usage: admin [--bootstrap HOST:PORT] [--topic NAME]");
                return ExitCode::FAILURE;
            }
        }
    }
    match run(&bootstrap, &topic).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(bootstrap: &str, topic: &str) -> tidepool_client::Result<()> {
    let client = Client::connect(Env::real(), ClientConfig::new(bootstrap)).await?;
    let admin = Admin::new(client);

    let wanted = NewTopic::new(topic, 3, -1).config("retention.ms", "3600000");
    match admin.create_topic(wanted).await {
        Ok(()) => println!("created {topic} with 3 partitions"),
        // Running the example twice is fine.
        Err(error) if error.code() == Some(KafkaCode::TOPIC_ALREADY_EXISTS) => {
            println!("{topic} exists already")
        }
        Err(error) => return Err(error),
    }

    println!("configs of {topic} that are not defaults:");
    for entry in admin
        .describe_configs(ConfigResource::Topic(topic.to_string()))
        .await?
        .into_iter()
        .filter(|entry| !entry.is_default)
    {
        let value = entry.value.as_deref().unwrap_or("(sensitive)");
        println!("  {} = {value} ({})", entry.name, entry.source.name());
    }

    let groups = admin.list_groups().await?;
    println!("{} consumer group(s)", groups.len());
    for group in groups {
        let state = group.state.as_deref().unwrap_or("?");
        println!("  {} [{state}]", group.group_id);
    }
    admin.client().close();
    Ok(())
}
