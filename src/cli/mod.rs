//! `tidepool topics ...` and `tidepool groups ...`: administration of any Kafka-compatible
//! cluster through tidepool-client's admin. Results go to stdout as plain aligned tables;
//! errors go to stderr and the exit status is 1 (see `main`).

mod datetime;
mod groups;
mod sasl;
mod sim;
mod table;
mod topics;

use clap::{Args, Subcommand};

pub use sasl::SaslArgs;
pub use sim::{SimArgs, sim};
use tidepool_client::{Admin, Client, ClientConfig};
use tidepool_io::Env;

/// How to reach the cluster; every admin command takes it.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Kafka bootstrap address(es), `HOST:PORT[,HOST:PORT...]`.
    #[arg(long, global = true, default_value = "127.0.0.1:9092")]
    bootstrap: String,
}

#[derive(Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// List every topic with its partition count and replication factor.
    List,
    /// Show a topic's partitions (leader, replicas, offsets) and its non-default configs.
    Describe { topic: String },
    /// Create a topic and wait until every partition has a leader.
    Create {
        topic: String,
        /// Partitions (default: the broker's num.partitions).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config, `NAME=VALUE`; repeatable.
        #[arg(long = "config", value_name = "NAME=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// Delete a topic and its records.
    Delete { topic: String },
    /// Set and remove topic configs, all in one request: either all apply or none.
    AlterConfig {
        topic: String,
        /// Configs to set, `NAME=VALUE`.
        #[arg(value_name = "NAME=VALUE", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// A config to remove, so it returns to its default; repeatable.
        #[arg(long = "delete-config", value_name = "NAME")]
        delete: Vec<String>,
    },
}

#[derive(Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(Subcommand)]
enum GroupsCommand {
    /// List every consumer group with its state.
    List,
    /// Show a group's state, assignor, members with their partitions, and per partition the
    /// committed offset, the end offset and the lag.
    Describe { group: String },
    /// Move an inactive group's committed offsets (refused while the group has members).
    ResetOffsets(groups::ResetArgs),
}

/// `NAME=VALUE`, split at the first `=` (values may contain `=`).
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

async fn connect(connection: &Connection) -> anyhow::Result<Admin> {
    let config = ClientConfig::new(&connection.bootstrap).client_id("tidepool-cli");
    let client = Client::connect(Env::real(), config).await?;
    Ok(Admin::new(client))
}

pub async fn topics(args: TopicsArgs) -> anyhow::Result<()> {
    let admin = connect(&args.connection).await?;
    let outcome = match args.command {
        TopicsCommand::List => topics::list(&admin).await,
        TopicsCommand::Describe { topic } => topics::describe(&admin, &topic).await,
        TopicsCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let partitions = partitions.unwrap_or(-1);
            let replication_factor = replication_factor.unwrap_or(-1);
            topics::create(&admin, &topic, partitions, replication_factor, configs).await
        }
        TopicsCommand::Delete { topic } => topics::delete(&admin, &topic).await,
        TopicsCommand::AlterConfig { topic, set, delete } => {
            topics::alter_config(&admin, &topic, set, delete).await
        }
    };
    admin.client().close();
    outcome
}

pub async fn groups(args: GroupsArgs) -> anyhow::Result<()> {
    let admin = connect(&args.connection).await?;
    let outcome = match args.command {
        GroupsCommand::List => groups::list(&admin).await,
        GroupsCommand::Describe { group } => groups::describe(&admin, &group).await,
        GroupsCommand::ResetOffsets(reset) => groups::reset_offsets(&admin, reset).await,
    };
    admin.client().close();
    outcome
}
