//! The `tidepool` command line: `tidepool serve` runs a broker until SIGINT or SIGTERM;
//! `tidepool topics ...` and `tidepool groups ...` administer any Kafka-compatible cluster.

mod cli;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tidepool::{Broker, Config};

#[derive(Parser)]
#[command(
    name = "tidepool",
    version,
    about = "A Kafka-compatible broker for tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker. Prints `tidepool ready bootstrap=HOST:PORT[,...]` on stdout once every
    /// node accepts connections (followed by `sasl=MECHANISMS` when log-in is required);
    /// logs go to stderr.
    Serve(ServeArgs),
    /// List, describe, create, delete topics and alter their configs.
    Topics(cli::TopicsArgs),
    /// List and describe consumer groups, and reset their offsets.
    Groups(cli::GroupsArgs),
    /// Run a broker with the ingestion pipeline beside it (the collector and the enrichment,
    /// analytics and persister stages with the outbox relay) and the request-response gateway
    /// with its example services (orders, customer, basket). Prints
    /// `tidepool up ready bootstrap=HOST:PORT collector=http://HOST:PORT gateway=http://HOST:PORT`
    /// once serving.
    Up(UpArgs),
    /// Run deterministic simulation scenarios (seeded faults, checked histories). Prints
    /// `sim: N scenarios, M anomalous, trace=HEX` last; exits 1 if any was anomalous.
    Sim(cli::SimArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address of the first node; further nodes take the following ports (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Number of broker nodes in this process.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Host name to advertise in metadata instead of the listen IP.
    #[arg(long)]
    advertised_host: Option<String>,
    /// Partitions of auto-created topics (Kafka's num.partitions).
    #[arg(long, default_value_t = 1)]
    default_partitions: i32,
    /// Do not create unknown topics on Metadata and Produce.
    #[arg(long)]
    no_auto_create_topics: bool,
    /// Keep topics and records in this directory (recovered on start) instead of in memory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Default `flush.messages` of topics: fsync after this many records (1: before every
    /// acknowledgement, so acknowledged records survive a crash).
    #[arg(long)]
    flush_messages: Option<u64>,
    /// Default `flush.ms` of topics: fsync once unflushed records are this old.
    #[arg(long)]
    flush_ms: Option<i64>,
    /// Kafka's `group.initial.rebalance.delay.ms` (default 0 here; Kafka's is 3000).
    #[arg(long)]
    group_initial_rebalance_delay_ms: Option<u64>,
    /// Smallest session timeout a consumer may ask for (`group.min.session.timeout.ms`).
    #[arg(long)]
    group_min_session_timeout_ms: Option<u64>,
    /// How often compacted topics are checked for cleaning (Kafka's `log.cleaner.backoff.ms`,
    /// default 15000).
    #[arg(long)]
    cleaner_backoff_ms: Option<u64>,
    /// Serve the test control plane over HTTP here (fault injection, request log; see
    /// README "Control plane"); the ready line then ends with `control=http://HOST:PORT`.
    #[arg(long)]
    control: Option<SocketAddr>,
    #[command(flatten)]
    limits: Box<LimitArgs>,
    #[command(flatten)]
    sasl: cli::SaslArgs,
}

/// Bounds of `tidepool serve` (each defaults to `Config::default()`'s); what exceeding each
/// one does is in the README's reliability table.
#[derive(clap::Args)]
struct LimitArgs {
    /// Open connections per node; further connections are closed at once (default 1024).
    #[arg(long)]
    connections_max: Option<usize>,
    /// Answers a connection holds unwritten before it stops reading (default 256).
    #[arg(long)]
    in_flight_requests_max: Option<usize>,
    /// Fetches parked waiting for data; beyond it a fetch answers at once (default 4096).
    #[arg(long)]
    parked_fetches_max: Option<usize>,
    /// Longest a fetch waits for data, whatever its max_wait_ms (default 30000).
    #[arg(long)]
    fetch_wait_ms_max: Option<u64>,
    /// Topics; more is refused with POLICY_VIOLATION (default 10000).
    #[arg(long)]
    topics_max: Option<usize>,
    /// Partitions across all topics; more is refused with INVALID_PARTITIONS (default 100000).
    #[arg(long)]
    partitions_max: Option<usize>,
    /// Consumer groups; a new one beyond it gets COORDINATOR_NOT_AVAILABLE (default 10000).
    #[arg(long)]
    groups_max: Option<usize>,
    /// Members per group (`group.max.size`); more get GROUP_MAX_SIZE_REACHED (default 1000).
    #[arg(long)]
    group_members_max: Option<usize>,
}

impl LimitArgs {
    fn apply(&self, config: &mut Config) {
        let fields = [
            (self.connections_max, &mut config.connections_max),
            (
                self.in_flight_requests_max,
                &mut config.in_flight_requests_max,
            ),
            (self.parked_fetches_max, &mut config.parked_fetches_max),
            (self.topics_max, &mut config.topics_max),
            (self.partitions_max, &mut config.partitions_max),
            (self.groups_max, &mut config.groups_max),
            (self.group_members_max, &mut config.group_members_max),
        ];
        for (given, field) in fields {
            if let Some(value) = given {
                *field = value;
            }
        }
        if let Some(wait_ms) = self.fetch_wait_ms_max {
            config.fetch_wait_ms_max = wait_ms;
        }
    }
}

#[derive(clap::Args)]
struct UpArgs {
    /// Address of the broker's first node; further nodes take the following ports.
    #[arg(long, default_value = "127.0.0.1:9092")]
    listen: SocketAddr,
    /// Number of broker nodes in this process.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Where the collector's HTTP server listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    collector: SocketAddr,
    /// Where the request-response gateway's HTTP server listens (`/api/{service}/...`).
    #[arg(long, default_value = "127.0.0.1:8081")]
    gateway: SocketAddr,
    /// Where the test control plane's HTTP server listens (README "Control plane").
    #[arg(long, default_value = "127.0.0.1:8082")]
    control: SocketAddr,
    /// Keep the broker's log and the pipeline's store (`DIR/pipeline/store.redb`) in this
    /// directory, recovered on start; without it both live in memory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Partitions of the pipeline's topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A broker logs its life at info; an admin command's output is its answer, so only
    // warnings join it on stderr.
    let default_level = match cli.command {
        Command::Serve(_) | Command::Up(_) => "info",
        Command::Topics(_) | Command::Groups(_) => "warn",
        // Simulated brokers log the faults they are put through; the verdicts are the output.
        Command::Sim(_) => "off",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    let command = match cli.command {
        // Simulations bring their own (turmoil) runtimes.
        Command::Sim(args) => {
            if !cli::sim(args)? {
                std::process::exit(1);
            }
            return Ok(());
        }
        command => command,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let admin = match command {
        Command::Serve(args) => return runtime.block_on(serve(args)),
        Command::Up(args) => return runtime.block_on(up(args)),
        Command::Topics(args) => runtime.block_on(cli::topics(args)),
        Command::Groups(args) => runtime.block_on(cli::groups(args)),
        Command::Sim(_) => Ok(()),
    };
    if let Err(error) = admin {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config {
        default_partitions: args.default_partitions,
        auto_create_topics: !args.no_auto_create_topics,
        ..Config::default()
    };
    if let Some(flush_messages) = args.flush_messages {
        config.topic_defaults.flush_messages = flush_messages.max(1);
    }
    if let Some(flush_ms) = args.flush_ms {
        config.topic_defaults.flush_ms = flush_ms.max(0);
    }
    if let Some(delay_ms) = args.group_initial_rebalance_delay_ms {
        config.group_initial_rebalance_delay_ms = delay_ms;
    }
    if let Some(minimum_ms) = args.group_min_session_timeout_ms {
        config.group_min_session_timeout_ms = minimum_ms;
    }
    if let Some(backoff_ms) = args.cleaner_backoff_ms {
        config.cleaner_backoff_ms = backoff_ms;
    }
    args.limits.apply(&mut config);
    let mut builder = Broker::builder()
        .nodes(args.nodes)
        .listen(args.listen)
        .config(config);
    builder = match args.data_dir {
        Some(path) => builder.data_dir(path),
        None => builder.memory(),
    };
    if let Some(host) = args.advertised_host {
        builder = builder.advertised_host(host);
    }
    // The ready line names the mechanisms, so a reader sees at once that clients must log in.
    let mut sasl_note = String::new();
    if let Some(sasl) = args.sasl.config()? {
        let names: Vec<&str> = sasl.mechanisms().iter().map(|m| m.name()).collect();
        sasl_note = format!(" sasl={}", names.join(","));
        builder = builder.sasl(sasl);
    }
    // Handlers go in before the ready line: a SIGTERM sent as soon as a caller reads it must
    // stop the broker cleanly, not kill it.
    let signals = Signals::install()?;
    let broker = builder.start().await?;
    let control = match args.control {
        Some(address) => {
            let (bound, server) = tidepool::control::start(address, broker.control()).await?;
            Some((bound, server))
        }
        None => None,
    };
    match &control {
        Some((bound, _)) => println!(
            "tidepool ready bootstrap={} control=http://{bound}{sasl_note}",
            broker.bootstrap()
        ),
        None => println!("tidepool ready bootstrap={}{sasl_note}", broker.bootstrap()),
    }
    signals.wait().await;
    tracing::info!("signal received, shutting down");
    if let Some((_, server)) = control {
        server.abort();
    }
    broker.shutdown().await;
    Ok(())
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let config = Config {
        auto_create_topics: false,
        ..Config::default()
    };
    let mut builder = Broker::builder()
        .nodes(args.nodes)
        .listen(args.listen)
        .config(config);
    let env = tidepool_io::Env::real();
    let store = match &args.data_dir {
        Some(dir) => {
            builder = builder.data_dir(dir.join("broker"));
            let disk: std::sync::Arc<dyn tidepool_io::Disk> =
                std::sync::Arc::new(tidepool_io::StdDisk);
            tidepool_pipeline::store::Store::open(disk, &dir.join("pipeline").join("store.redb"))?
        }
        None => {
            builder = builder.memory();
            tidepool_pipeline::store::Store::memory()?
        }
    };
    let signals = Signals::install()?;
    let broker = builder.start().await?;
    let mut pipeline_config = tidepool_pipeline::app::PipelineConfig::new(broker.bootstrap());
    pipeline_config.collector_listen = args.collector;
    pipeline_config.topics.partitions = args.partitions;
    let pipeline =
        tidepool_pipeline::app::start(env.clone(), pipeline_config, store.clone(), Vec::new())
            .await?;
    let gateway = Shop::start(env, &broker.bootstrap(), store, args.gateway).await?;
    let (control, control_server) =
        tidepool::control::start(args.control, broker.control()).await?;
    println!(
        "tidepool up ready bootstrap={} collector=http://{} gateway=http://{} control=http://{control}",
        broker.bootstrap(),
        pipeline.collector_addr,
        gateway.address
    );
    signals.wait().await;
    tracing::info!("signal received, shutting down");
    control_server.abort();
    gateway.shutdown().await;
    pipeline.shutdown().await;
    broker.shutdown().await;
    Ok(())
}

/// The gateway node of `tidepool up` and the example services behind it, on the pipeline's
/// store (each service keeps its own keys there; the pipeline's outbox relay publishes the
/// orders' events), and the order validator.
struct Shop {
    address: SocketAddr,
    gateway: tidepool_gateway::Gateway,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    responders: Vec<tokio::task::JoinHandle<()>>,
}

impl Shop {
    const DEPLOYMENT: &str = "tidepool";
    const SERVICE_PARTITIONS: i32 = 3;

    async fn start(
        env: tidepool_io::Env,
        bootstrap: &str,
        store: tidepool_pipeline::store::Store,
        listen: SocketAddr,
    ) -> anyhow::Result<Shop> {
        use std::sync::Arc;
        use tidepool_gateway::services::{
            BasketService, CustomerService, OrderValidator, OrdersService, ValidatorConfig,
        };
        use tidepool_gateway::{
            GatewayConfig, GatewayMetrics, Responder, ResponderConfig, ServiceHandler,
        };

        let client = tidepool_client::Client::connect(
            env.clone(),
            tidepool_client::ClientConfig::new(bootstrap),
        )
        .await?;
        let admin = tidepool_client::Admin::new(client.clone());
        let services: Vec<(&str, Arc<dyn ServiceHandler>)> = vec![
            (
                "orders",
                Arc::new(OrdersService::new(store.clone(), Arc::clone(&env.clock))),
            ),
            (
                "customer",
                Arc::new(CustomerService::new(store.clone(), Arc::clone(&env.clock))),
            ),
            (
                "basket",
                Arc::new(BasketService::new(store, Arc::clone(&env.clock))),
            ),
        ];
        // Before any order: the pipeline's outbox relay publishes each order's events there, and
        // the validator reads them.
        tidepool_gateway::topics::ensure_topic(
            &admin,
            tidepool_gateway::services::orders::EVENTS_TOPIC,
            Self::SERVICE_PARTITIONS,
            1,
        )
        .await?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut responders = Vec::new();
        let validator =
            OrderValidator::start(env.clone(), bootstrap, ValidatorConfig::default()).await?;
        let validator_stopped = stopped.clone();
        responders.push(tokio::spawn(async move {
            if let Err(error) = validator.run(validator_stopped).await {
                tracing::error!(%error, "order validator stopped");
            }
        }));
        for (name, handler) in services {
            let topic = tidepool_gateway::topics::request_topic(name);
            tidepool_gateway::topics::ensure_topic(&admin, &topic, Self::SERVICE_PARTITIONS, 1)
                .await?;
            let responder = Responder::start(
                env.clone(),
                bootstrap,
                ResponderConfig::new(name),
                handler,
                GatewayMetrics::new(),
            )
            .await?;
            let stopped = stopped.clone();
            responders.push(tokio::spawn(async move {
                if let Err(error) = responder.run(stopped).await {
                    tracing::error!(service = name, %error, "responder stopped");
                }
            }));
        }
        client.close();

        let listener = tokio::net::TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let mut config = GatewayConfig::new(Self::DEPLOYMENT, "gateway-1");
        config.advertised_address = Some(address.to_string());
        let gateway = tidepool_gateway::Gateway::start(env, bootstrap, config).await?;
        let server = tokio::spawn(gateway.serve(listener));
        Ok(Shop {
            address,
            gateway,
            server,
            stop,
            responders,
        })
    }

    async fn shutdown(self) {
        self.gateway.shutdown().await;
        let _ = self.server.await;
        let _ = self.stop.send(true);
        for responder in self.responders {
            let _ = responder.await;
        }
    }
}

/// SIGTERM and SIGINT, caught.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
